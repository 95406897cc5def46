#!/usr/bin/env python3
"""test_paycode.py - customer-presented payment codes and merchant holds end to end over HTTP.

A customer registers a device behind a step-up and is shown its secret once; the codes are
computed here exactly as src/crypto/paycode.c does (HMAC-SHA-256 over "coffer.paycode.v1", the
device number and the 30 s step, dynamic truncation to 7 digits) and agree with the server's
own current code. Merchants charge codes (fee to fee revenue, balances, a refund), and every
refusal is 422 invalid_paycode: a replay, two charges of one code at once (exactly one wins),
an older code after a newer one, codes outside the window, over the device's limit, in another
currency, of a revoked device, forged; failed guesses are throttled per merchant (429) and per
device. Holds: placed with a code, read, captured in part (the fee on the captured amount),
released, expired (refused by the ledger and read as expired), raced, and another merchant's
hold answers 404. `coffer verify` runs after every test.

Usage: test_paycode.py --bin build/coffer --src . [test names...]
"""

import base64
import concurrent.futures
import hashlib
import hmac
import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import PASSWORD, call, email, expect, fund  # noqa: E402

ENV = {"COFFER_CURRENCIES": "USD,EUR", "COFFER_SANDBOX_LATENCY_MS": "50",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
STEP_S = 30
MERCHANT_FAILURES_MAX = 20  # PAY_PAYCODE_MERCHANT_FAILURES_MAX
DEVICE_FAILURES_MAX = 10    # PAY_PAYCODE_DEVICE_FAILURES_MAX


def shared(ctx):
    return ph.shared(ctx, ENV)


# -- people and money ----------------------------------------------------------------------------


def customer(srv, name="Pat Payer"):
    return ph.customer(srv, name)


def account(srv, acct):
    return srv.client().account(acct)


def merchant(srv, fee_bps=0, fee_fixed=0, currency="USD", name="Till Shop"):
    """A merchant with an owner session, a staff session and a payment profile."""
    m = ph.merchant(srv, name, fee_bps=fee_bps, fee_fixed=fee_fixed, currency=currency)
    staff_login = email("staff")
    expect(call(srv, "POST", "/v1/merchant/users",
                {"login": staff_login, "password": PASSWORD, "name": "Sam Staff",
                 "right": "staff"}, token=m["token"]), 201, what="staff add")
    m["staff"] = ph.sign_in(srv, staff_login, what="request")
    return m


# -- codes, computed as src/crypto/paycode.c does -----------------------------------------------


def b32decode(text):
    return base64.b32decode(text + "=" * (-len(text) % 8))


def code_at(secret, device, step):
    msg = b"coffer.paycode.v1" + struct.pack(">Q", device) + struct.pack(">Q", step)
    mac = hmac.new(secret, msg, hashlib.sha256).digest()
    off = mac[31] & 0x0F
    value = (int.from_bytes(mac[off:off + 4], "big") & 0x7FFFFFFF) % 10 ** 7
    return "28%09d%07d" % (device, value)


def step_now():
    return int(time.time()) // STEP_S


def settle_step():
    """Waits out the last second of a step, so a test's codes stay on the steps it computed."""
    if time.time() % STEP_S > STEP_S - 2:
        time.sleep(STEP_S - time.time() % STEP_S + 0.1)


class Device:
    def __init__(self, body):
        self.number = body["device_number"]
        self.secret = b32decode(body["secret"])
        self.body = body

    def code(self, step):
        return code_at(self.secret, self.number, step)


def add_device(srv, cust, label="Phone", limit=None, currency=None, expect_status=201):
    body = {"label": label}
    kw = {"amount_minor": limit if limit is not None else 0}
    if limit is not None:
        body["limit_minor"] = limit
    if currency is not None:
        body["currency"] = currency
        kw["currency"] = currency
    body["verification"] = ih.step_up(srv.port, cust.token, "paycode_device",
                                      admin_token=srv.token, login=cust.login, **kw)
    got = expect(call(srv, "POST", "/v1/me/paycode/devices", body, token=cust.token),
                 expect_status, what="device add")
    return Device(got) if expect_status == 201 else got


def charge(srv, token, code, amount, key=None):
    return call(srv, "POST", "/v1/merchant/paycode-charges", {"code": code, "amount_minor": amount},
                token=token, key=key or new_key("chg"))


def hold(srv, token, code, amount, expires_in_s=None, key=None):
    body = {"code": code, "amount_minor": amount}
    if expires_in_s is not None:
        body["expires_in_s"] = expires_in_s
    return call(srv, "POST", "/v1/merchant/holds", body, token=token, key=key or new_key("hld"))


def capture(srv, token, hold_id, amount=None, key=None):
    body = {"amount_minor": amount} if amount is not None else None
    return call(srv, "POST", "/v1/merchant/holds/%s/capture" % hold_id, body, token=token,
                key=key or new_key("cap"))


def release(srv, token, hold_id, key=None):
    return call(srv, "POST", "/v1/merchant/holds/%s/release" % hold_id, None, token=token,
                key=key or new_key("rel"))


def fee_of(amount, bps, fixed=0):
    return min(amount, (amount * bps + 5000) // 10000 + fixed)


# ------------------------------------------------------------------------------------------------


def test_devices(ctx):
    """Devices are registered behind a step-up bound to their limit, show their secret once,
    compute the same codes here as the server, are listed and revoked by their owner only."""
    srv = shared(ctx)
    cust = customer(srv)
    path = "/v1/me/paycode/devices"
    expect(call(srv, "POST", path, {"label": "Phone", "limit_minor": 5000}, token=cust.token),
           403, "step_up_required", "a device without a step-up")
    for body, code, detail in (({"limit_minor": 5000}, "missing_field", "label"),
                               ({"label": ""}, "invalid_field", "label"),
                               ({"label": "x" * 41}, "invalid_field", "label"),
                               ({"label": "tab\there"}, "invalid_field", "label"),
                               ({"label": "P", "limit_minor": 0}, "invalid_amount", "limit_minor"),
                               ({"label": "P", "limit_minor": -5}, "invalid_amount", "limit_minor"),
                               ({"label": "P", "limit_minor": "5"}, "invalid_field", "limit_minor"),
                               ({"label": "P", "currency": "XYZ"}, "unknown_currency", "currency"),
                               ({"label": "P", "currency": "JPY"}, "unknown_currency", "currency"),
                               ({"label": "P", "colour": "red"}, "unknown_field", "colour")):
        got = expect(call(srv, "POST", path, body, token=cust.token), 400, code, str(body))
        check_eq(got.get("detail"), detail, "detail of a refused device %s" % body)
    # a verification bound to another limit is refused, and the device is not made
    v = ih.step_up(srv.port, cust.token, "paycode_device", admin_token=srv.token,
                   login=cust.login, amount_minor=100)
    expect(call(srv, "POST", path, {"label": "Phone", "limit_minor": 99999, "verification": v},
                token=cust.token), 422, "invalid_code", "a verification for another limit")

    dev = add_device(srv, cust, label="Anna's phone", limit=5000)
    body = dev.body
    check(1 <= dev.number <= 999999999, "device number in range: %s" % body)
    check_eq(len(dev.secret), 32, "a 256-bit secret")
    check_eq((body["label"], body["limit_minor"], body["currency"], body["status"],
              body["step_s"], body["digits"], body["secret_encoding"]),
             ("Anna's phone", 5000, "USD", "active", 30, 18, "base32"), "the new device")
    # the server's own current code is the one computed here
    for _ in range(3):
        st = step_now()
        cur = expect(call(srv, "GET", "/v1/me/paycode/current?device=%d" % dev.number,
                          token=cust.token), 200)
        if cur["step"] == st:
            break
    check_eq(cur["code"], dev.code(cur["step"]), "the server's code and this test's agree")
    check(cur["code"].startswith("28%09d" % dev.number), "prefix and device number")
    check("<svg" in cur["svg"] and "script" not in cur["svg"], "the code as a QR in SVG")
    plain = add_device(srv, cust, label="Watch")
    check_eq((plain.body["limit_minor"], plain.body["currency"]), (100000, "USD"),
             "a device without limit or currency: the step-up amount, the default currency")
    check(plain.number != dev.number, "two devices, two numbers")

    listed = expect(call(srv, "GET", path, token=cust.token), 200)["data"]
    check_eq(sorted(d["device_number"] for d in listed), sorted([dev.number, plain.number]),
             "the customer's devices")
    check(all("secret" not in d for d in listed), "a listing never shows a secret")
    other = customer(srv, name="Otto Other")
    check_eq(expect(call(srv, "GET", path, token=other.token), 200)["data"], [],
             "someone else's devices")
    for p in ("/v1/me/paycode/devices/%d/revoke" % dev.number,
              "/v1/me/paycode/devices/0/revoke", "/v1/me/paycode/devices/abc/revoke",
              "/v1/me/paycode/devices/1234567890/revoke"):
        expect(call(srv, "POST", p, {}, token=other.token), 404, "not_found", "revoke " + p)
    for q in ("device=%d" % dev.number, "device=0", "device=-1", "device=%20"):
        expect(call(srv, "GET", "/v1/me/paycode/current?" + q, token=other.token), 404,
               "not_found", "current code " + q)
    expect(call(srv, "GET", "/v1/me/paycode/current", token=cust.token), 400, "missing_field")
    m = merchant(srv, name="Device Deli")
    expect(call(srv, "GET", path, token=m["token"]), 403, "forbidden", "a merchant's devices")

    got = expect(call(srv, "POST", "/v1/me/paycode/devices/%d/revoke" % plain.number, {},
                      token=cust.token), 200, what="revoke")
    check_eq(got["status"], "revoked", "revoked device")
    check("revoked_at" in got, "revocation time")
    expect(call(srv, "POST", "/v1/me/paycode/devices/%d/revoke" % plain.number, {},
                token=cust.token), 404, "not_found", "a second revocation")
    expect(call(srv, "GET", "/v1/me/paycode/current?device=%d" % plain.number,
                token=cust.token), 404, "not_found", "a revoked device's code")
    listed = {d["device_number"]: d["status"]
              for d in expect(call(srv, "GET", path, token=cust.token), 200)["data"]}
    check_eq(listed, {dev.number: "active", plain.number: "revoked"}, "after the revocation")
    srv.check_verify()


def test_charges(ctx):
    """A merchant (owner or staff) charges a code: the customer pays the amount, the merchant
    gets it net of its fee, a retry answers the same charge, and every reuse is refused."""
    srv = shared(ctx)
    m = merchant(srv, fee_bps=150, fee_fixed=20, name="Quay Coffee")
    cust = customer(srv)
    acct = fund(srv, cust.token, 50000)
    dev = add_device(srv, cust, limit=5000)
    settle_step()
    s = step_now()

    key = new_key("chg")
    paid = expect(charge(srv, m["staff"], dev.code(s - 1), 1250, key=key), 201,
                  what="a charge by the merchant's staff")
    fee = fee_of(1250, 150, 20)
    check_eq((paid["type"], paid["status"], paid["amount_minor"], paid["fee_minor"],
              paid["currency"], paid["direction"], paid["counterparty"], paid["reference"]),
             ("payment", "completed", 1250, fee, "USD", "in", cust.user_id, "paycode"),
             "the charge")
    check(paid["id"].startswith("pay_") and paid["transfer_id"].startswith("tr_"), "ids")
    again = expect(charge(srv, m["staff"], dev.code(s - 1), 1250, key=key), 201, what="retry")
    check_eq(again["id"], paid["id"], "a retry answers the same charge")
    expect(charge(srv, m["staff"], dev.code(s - 1), 1300, key=key), 422,
           "idempotency_key_reused", "the key with another amount")
    expect(charge(srv, m["token"], dev.code(s - 1), 1250), 422, "invalid_paycode",
           "the same code with a new key")
    check_eq(account(srv, acct)["balance"], 50000 - 1250, "the customer paid once")
    check_eq(account(srv, m["account"])["balance"], 1250 - fee, "the merchant got it net of fee")
    seen = expect(call(srv, "GET", "/v1/me/operations/" + paid["id"], token=cust.token), 200)
    check_eq((seen["direction"], seen["counterparty"], seen["amount_minor"]),
             ("out", m["id"], 1250), "the charge as the customer sees it")

    # over the limit: refused, and the code is not used up by the refusal
    expect(charge(srv, m["token"], dev.code(s), 5001), 422, "invalid_paycode", "over the limit")
    expect(charge(srv, m["token"], dev.code(s), 5000), 201, what="at the limit")
    # an older code, never used, after a newer one; codes outside the window; forged codes
    second = add_device(srv, cust, label="Tablet", limit=5000)
    expect(charge(srv, m["token"], second.code(s + 1), 10), 201, what="a newer code first")
    expect(charge(srv, m["token"], second.code(s), 10), 422, "invalid_paycode",
           "an older code after a newer one")
    for st, what in ((s - 4, "90 s too old"), (s + 3, "from the future")):
        expect(charge(srv, m["token"], dev.code(st), 10), 422, "invalid_paycode", what)
    good = dev.code(s + 1)
    for bad, what in ((good[:-1] + str((int(good[-1]) + 1) % 10), "a wrong digit"),
                      ("27" + good[2:], "another prefix"), (good[:-1], "17 digits"),
                      (good + "0", "19 digits"), ("28000000000" + good[11:], "device 0"),
                      ("28" + "%09d" % ((dev.number % 999999999) + 1) + good[11:],
                       "another device's number"), ("", "empty"), ("x" * 18, "letters")):
        expect(charge(srv, m["token"], bad, 10), 422, "invalid_paycode", what)
    for body, code, detail in (({"amount_minor": 10}, "missing_field", "code"),
                               ({"code": 280000000001234567, "amount_minor": 10},
                                "invalid_field", "code"),
                               ({"code": good, "amount_minor": 0}, "invalid_amount",
                                "amount_minor"),
                               ({"code": good}, "missing_field", "amount_minor"),
                               ({"code": good, "amount_minor": 1, "tip": 1}, "unknown_field",
                                "tip"),
                               ({"code": "2" * 65, "amount_minor": 1}, "invalid_field", "code")):
        got = expect(call(srv, "POST", "/v1/merchant/paycode-charges", body, token=m["token"],
                          key=new_key()), 400, code, str(body))
        check_eq(got.get("detail"), detail, "detail of %s" % body)
    expect(call(srv, "POST", "/v1/merchant/paycode-charges", {"code": good, "amount_minor": 10},
                token=m["token"]), 400, "idempotency_key_missing")
    expect(call(srv, "POST", "/v1/merchant/paycode-charges", {"code": good, "amount_minor": 10},
                token=cust.token, key=new_key()), 403, "forbidden", "a customer charging")
    # the refusals above did not use the newest code up
    paid2 = expect(charge(srv, m["token"], good, 700), 201, what="the next code")
    check_eq(account(srv, acct)["balance"], 50000 - 1250 - 5000 - 10 - 700, "after four charges")

    # a charge is a payment: the merchant can refund it
    refund = expect(call(srv, "POST", "/v1/merchant/payments/%s/refund" % paid2["id"],
                         {"amount_minor": 200}, token=m["token"], key=new_key()), 201)
    check_eq((refund["type"], refund["payment_id"]), ("refund", paid2["id"]), "refund")
    check_eq(account(srv, acct)["balance"], 50000 - 1250 - 5000 - 10 - 700 + 200,
             "after the refund")
    srv.check_verify()


def test_refusals(ctx):
    """A code in another currency, of a revoked device, or for more than the wallet holds is
    refused; a refused charge still uses its code; nothing moves."""
    srv = shared(ctx)
    usd = merchant(srv, name="Dollar Diner")
    eur = merchant(srv, currency="EUR", name="Euro Eatery")
    cust = customer(srv)
    acct = fund(srv, cust.token, 3000)
    dev = add_device(srv, cust, limit=10000, currency="USD")
    settle_step()
    s = step_now()
    expect(charge(srv, eur["token"], dev.code(s - 1), 100), 422, "invalid_paycode",
           "a USD device at a EUR merchant")
    expect(charge(srv, usd["token"], dev.code(s - 1), 3001), 422, "insufficient_funds",
           "more than the wallet holds")
    expect(charge(srv, usd["token"], dev.code(s - 1), 100), 422, "invalid_paycode",
           "the code of a refused charge")
    check_eq(account(srv, acct)["balance"], 3000, "nothing moved")
    check_eq(account(srv, usd["account"])["balance"], 0, "the merchant got nothing")
    poor = customer(srv)
    pdev = add_device(srv, poor, limit=10000)
    expect(charge(srv, usd["token"], pdev.code(s), 100), 422, "insufficient_funds",
           "a customer without a wallet")
    expect(call(srv, "POST", "/v1/me/paycode/devices/%d/revoke" % dev.number, {},
                token=cust.token), 200)
    expect(charge(srv, usd["token"], dev.code(s), 100), 422, "invalid_paycode",
           "a revoked device's code")
    expect(hold(srv, usd["token"], dev.code(s + 1), 100), 422, "invalid_paycode",
           "a revoked device's hold")
    check_eq(account(srv, acct)["balance"], 3000, "still nothing moved")
    srv.check_verify()


def test_races(ctx):
    """One code submitted many times at once, with different keys, by one or two merchants:
    exactly one charge goes through, every other answers invalid_paycode."""
    srv = shared(ctx)
    m1 = merchant(srv, name="Race One")
    m2 = merchant(srv, name="Race Two")
    cust = customer(srv)
    acct = fund(srv, cust.token, 100000)
    dev = add_device(srv, cust, limit=1000)
    settle_step()
    s = step_now()
    total = 0
    for i, st in enumerate((s - 1, s, s + 1)):
        code = dev.code(st)
        tokens = [m1["token"], m1["staff"], m2["token"], m2["staff"]] * 2

        def attempt(tok, code=code, i=i):
            return charge(srv, tok, code, 100 + i)
        with concurrent.futures.ThreadPoolExecutor(len(tokens)) as pool:
            results = list(pool.map(attempt, tokens))
        codes = sorted(r[0] for r in results)
        check_eq(codes.count(201), 1, "round %d: exactly one charge: %s" % (i, codes))
        for st_, body, _h in results:
            check(st_ == 201 or (st_ == 422 and body.get("code") == "invalid_paycode"),
                  "round %d: a loser answers invalid_paycode: %d %s" % (i, st_, body))
        total += 100 + i
    check_eq(account(srv, acct)["balance"], 100000 - total, "one charge per code")
    check_eq(account(srv, m1["account"])["balance"] + account(srv, m2["account"])["balance"],
             total, "the merchants got one charge per code")
    srv.check_verify()


def test_throttling(ctx):
    """Guesses are counted: a merchant past its failures gets 429 (even for a good code), and a
    device number past its failures refuses its own good codes to everybody for a while."""
    srv = shared(ctx)
    cust = customer(srv)
    fund(srv, cust.token, 10000)
    target = add_device(srv, cust, label="Targeted", limit=1000)
    spare = add_device(srv, cust, label="Spare", limit=1000)
    settle_step()
    s = step_now()
    # one merchant guesses at the target device until the device locks
    guesser = merchant(srv, name="Guess Works")
    real = target.code(s)
    for i in range(DEVICE_FAILURES_MAX):
        wrong = real[:11] + "%07d" % ((int(real[11:]) + 1 + i) % 10 ** 7)
        expect(charge(srv, guesser["token"], wrong, 10), 422, "invalid_paycode", "guess %d" % i)
    honest = merchant(srv, name="Honest Hut")
    expect(charge(srv, honest["token"], real, 10), 422, "invalid_paycode",
           "the locked device's good code, at another merchant")
    expect(charge(srv, honest["token"], spare.code(s), 10), 201, what="another device works")
    # the same merchant keeps guessing (unknown devices now) until it is throttled itself
    for i in range(MERCHANT_FAILURES_MAX - DEVICE_FAILURES_MAX):
        expect(charge(srv, guesser["token"], "28%09d%07d" % (random.randint(1, 999999999), i),
                      10), 422, "invalid_paycode", "guess at unknown devices %d" % i)
    status, body, headers = charge(srv, guesser["token"], spare.code(s + 1), 10)
    check(status == 429 and body.get("code") == "too_many_attempts",
          "a throttled merchant: %d %s" % (status, body))
    check_eq(headers.get("Retry-After"), "600", "Retry-After of a throttled merchant")
    expect(hold(srv, guesser["token"], spare.code(s + 1), 10), 429, "too_many_attempts",
           "holds are throttled too")
    expect(charge(srv, honest["token"], spare.code(s + 1), 10), 201,
           what="the code the throttled merchant could not use")
    srv.check_verify()


def test_holds(ctx):
    """A hold is placed with a code, read, captured in part (the fee on what is captured),
    retried, and refused a second capture or a release; another hold is released."""
    srv = shared(ctx)
    m = merchant(srv, fee_bps=200, name="Harbour Hotel")
    cust = customer(srv)
    acct = fund(srv, cust.token, 100000)
    dev = add_device(srv, cust, limit=60000)
    settle_step()
    s = step_now()
    key = new_key("hld")
    placed = expect(hold(srv, m["staff"], dev.code(s - 1), 50000, key=key), 201, what="hold")
    check_eq((placed["type"], placed["status"], placed["state"], placed["amount_minor"],
              placed["held_minor"], placed["fee_minor"], placed["counterparty"]),
             ("hold", "pending", "held", 50000, 50000, 0, cust.user_id), "the hold")
    check(placed["id"].startswith("hld_") and placed["hold_transfer_id"].startswith("tr_"), "ids")
    left = harness_time(placed["expires_at"]) - time.time()
    check(7 * 86400 - 60 < left <= 7 * 86400, "a hold lasts a week by default: %s" % left)
    again = expect(hold(srv, m["staff"], dev.code(s - 1), 50000, key=key), 201, what="retry")
    check_eq(again["id"], placed["id"], "a retried hold")
    a = account(srv, acct)
    check_eq((a["balance"], a["available"], a["debits_pending"]), (100000, 50000, 50000),
             "the customer's wallet while held")
    expect(call(srv, "GET", "/v1/merchant/holds/" + placed["id"], token=m["token"]), 200)
    seen = expect(call(srv, "GET", "/v1/me/operations/" + placed["id"], token=cust.token), 200)
    check_eq((seen["type"], seen["status"], seen["direction"]), ("hold", "pending", "out"),
             "the hold as the customer sees it")

    expect(capture(srv, m["token"], placed["id"], 50001), 422, "amount_exceeds_pending")
    expect(capture(srv, m["token"], placed["id"], 0), 400, "invalid_amount")
    expect(call(srv, "POST", "/v1/merchant/holds/%s/capture" % placed["id"], {"amount": 5},
                token=m["token"], key=new_key()), 400, "unknown_field")
    ckey = new_key("cap")
    done = expect(capture(srv, m["token"], placed["id"], 32000, key=ckey), 200, what="capture")
    fee = fee_of(32000, 200)
    check_eq((done["state"], done["status"], done["amount_minor"], done["captured_minor"],
              done["held_minor"], done["fee_minor"]),
             ("captured", "completed", 32000, 32000, 50000, fee), "the partial capture")
    check(done["fee_transfer_id"].startswith("tr_"), "the fee's transfer")
    again = expect(capture(srv, m["token"], placed["id"], 32000, key=ckey), 200, what="retry")
    check_eq((again["state"], again["captured_minor"]), ("captured", 32000), "a retried capture")
    expect(capture(srv, m["token"], placed["id"], 1000, key=ckey), 422, "idempotency_key_reused")
    expect(capture(srv, m["token"], placed["id"], 1000), 409, "transfer_already_posted",
           "a second capture")
    expect(release(srv, m["token"], placed["id"]), 409, "transfer_already_posted",
           "releasing a captured hold")
    a = account(srv, acct)
    check_eq((a["balance"], a["available"], a["debits_pending"]), (68000, 68000, 0),
             "the customer paid what was captured; the rest is free again")
    check_eq(account(srv, m["account"])["balance"], 32000 - fee, "the merchant, net of fee")
    fees = srv.client().transfer(done["fee_transfer_id"])
    check_eq((fees["amount"], fees["debit_account_id"]), (fee, m["account"]), "the fee transfer")
    seen = expect(call(srv, "GET", "/v1/me/operations/" + placed["id"], token=cust.token), 200)
    check_eq((seen["status"], seen["amount_minor"]), ("completed", 32000), "the customer's view")

    # a second hold, released; then it can be neither captured nor released again
    other = expect(hold(srv, m["token"], dev.code(s), 20000), 201, what="second hold")
    check_eq(account(srv, acct)["available"], 48000, "held again")
    rkey = new_key("rel")
    gone = expect(release(srv, m["token"], other["id"], key=rkey), 200, what="release")
    check_eq((gone["state"], gone["status"], gone["error"]),
             ("released", "failed", "transfer_already_voided"), "the released hold")
    expect(release(srv, m["token"], other["id"], key=rkey), 200, what="a retried release")
    expect(release(srv, m["token"], other["id"]), 409, "transfer_already_voided",
           "a second release")
    expect(capture(srv, m["token"], other["id"]), 409, "transfer_already_voided",
           "capturing a released hold")
    a = account(srv, acct)
    check_eq((a["balance"], a["available"], a["debits_pending"]), (68000, 68000, 0),
             "a release gives everything back")

    # a full capture without a body, and a hold over the limit or the balance
    third = expect(hold(srv, m["token"], dev.code(s + 1), 1000), 201)
    full = expect(capture(srv, m["token"], third["id"]), 200, what="a full capture")
    check_eq((full["captured_minor"], full["fee_minor"]), (1000, fee_of(1000, 200)), "full")
    big = add_device(srv, cust, label="Card-sized", limit=100000)
    s = step_now()
    expect(hold(srv, m["token"], big.code(s), 100001), 422, "invalid_paycode", "over the limit")
    expect(hold(srv, m["token"], big.code(s), 67001), 422, "insufficient_funds",
           "more than is available")
    expect(hold(srv, m["token"], big.code(s), 100), 422, "invalid_paycode",
           "the code of a refused hold")
    activity = expect(call(srv, "GET", "/v1/merchant/activity?type=hold", token=m["token"]),
                      200)["data"]
    check({placed["id"], third["id"]} <= {o["id"] for o in activity},
          "the merchant's captured holds in its activity: %s" % activity)
    srv.check_verify()


def harness_time(text):
    """Seconds since the epoch of an RFC 3339 UTC time such as 2026-01-02T03:04:05.678Z."""
    import calendar
    base, _, frac = text.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs + (float("0." + frac) if frac else 0.0)


def test_hold_expiry(ctx):
    """A hold past its expiry cannot be captured (the ledger answers transfer_expired) nor
    released, reads as expired, and its money is free again."""
    srv = shared(ctx)
    m = merchant(srv, fee_bps=100, name="Fuel Stop")
    cust = customer(srv)
    acct = fund(srv, cust.token, 10000)
    dev = add_device(srv, cust, limit=5000)
    settle_step()
    s = step_now()
    for body, detail in (({"expires_in_s": 0}, "expires_in_s"),
                         ({"expires_in_s": 2592001}, "expires_in_s")):
        body.update(code=dev.code(s - 1), amount_minor=100)
        got = expect(call(srv, "POST", "/v1/merchant/holds", body, token=m["token"],
                          key=new_key()), 400, "invalid_field")
        check_eq(got.get("detail"), detail, "detail")
    first = expect(hold(srv, m["token"], dev.code(s - 1), 3000, expires_in_s=2), 201)
    second = expect(hold(srv, m["token"], dev.code(s), 2000, expires_in_s=2), 201)
    left = harness_time(first["expires_at"]) - time.time()
    check(0 < left <= 2.5, "a short hold's expiry: %s" % left)
    check_eq(account(srv, acct)["available"], 5000, "both held")
    time.sleep(max(0.0, harness_time(second["expires_at"]) - time.time()) + 0.3)
    # the first is captured without being read first: the ledger refuses it
    expect(capture(srv, m["token"], first["id"], 1000), 409, "transfer_expired",
           "capturing an expired hold")
    got = expect(call(srv, "GET", "/v1/merchant/holds/" + first["id"], token=m["token"]), 200)
    check_eq((got["state"], got["status"], got["error"]),
             ("expired", "failed", "transfer_expired"), "an expired hold, after the capture")
    got = expect(call(srv, "GET", "/v1/merchant/holds/" + second["id"], token=m["token"]), 200)
    check_eq((got["state"], got["status"]), ("expired", "failed"), "an expired hold, read")
    expect(release(srv, m["token"], second["id"]), 409, "transfer_expired",
           "releasing an expired hold")
    expect(capture(srv, m["token"], second["id"]), 409, "transfer_expired",
           "capturing it after all")
    seen = expect(call(srv, "GET", "/v1/me/operations/" + second["id"], token=cust.token), 200)
    check_eq((seen["status"], seen["error"]), ("failed", "transfer_expired"), "customer's view")
    deadline = time.monotonic() + 5
    while account(srv, acct)["debits_pending"] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    a = account(srv, acct)
    check_eq((a["balance"], a["available"], a["debits_pending"]), (10000, 10000, 0),
             "the ledger released both holds")
    check_eq(account(srv, m["account"])["balance"], 0, "the merchant got nothing")
    srv.check_verify()


def test_hold_access_and_races(ctx):
    """Another merchant's holds (and other operations) answer as unknown ones, and change
    nothing; two captures at once, or a capture and a release, leave one winner."""
    srv = shared(ctx)
    m1 = merchant(srv, name="Inn One")
    m2 = merchant(srv, name="Inn Two")
    cust = customer(srv)
    acct = fund(srv, cust.token, 50000)
    dev = add_device(srv, cust, limit=20000)
    settle_step()
    s = step_now()
    h = expect(hold(srv, m1["token"], dev.code(s - 1), 10000), 201)
    paid = expect(charge(srv, m1["token"], dev.code(s), 100), 201)
    unknown = "hld_00000000ZZZZZ"
    for what, hid in (("M1's hold", h["id"]), ("an unknown hold", unknown),
                      ("M1's charge", paid["id"]), ("a malformed id", "hld_x")):
        for method, path, body in (("GET", "/v1/merchant/holds/%s" % hid, None),
                                   ("POST", "/v1/merchant/holds/%s/capture" % hid, None),
                                   ("POST", "/v1/merchant/holds/%s/release" % hid, None)):
            got = expect(call(srv, method, path, body, token=m2["token"],
                              key=new_key() if method == "POST" else None), 404, "not_found",
                         "M2: %s %s (%s)" % (method, path, what))
            check(h["id"] not in str(got) and cust.user_id not in str(got), "nothing leaks")
    expect(call(srv, "GET", "/v1/merchant/holds/" + paid["id"], token=m1["token"]), 404,
           "not_found", "a charge is no hold")
    expect(call(srv, "GET", "/v1/merchant/holds/" + h["id"], token=cust.token), 403, "forbidden",
           "the customer on a merchant route")
    got = expect(call(srv, "GET", "/v1/merchant/holds/" + h["id"], token=m1["staff"]), 200)
    check_eq(got["state"], "held", "M2 changed nothing")

    # two captures at once: one 200, one 409; the hold is captured once
    def cap(i):
        return capture(srv, m1["token"] if i % 2 else m1["staff"], h["id"], 4000 + i)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(cap, range(4)))
    codes = sorted(r[0] for r in results)
    check_eq(codes.count(200), 1, "one capture wins: %s" % codes)
    check(all(r[0] == 200 or (r[0] == 409 and r[1]["code"] in ("conflict",
                                                                "transfer_already_posted"))
              for r in results), "the others are refused: %s" % [r[1] for r in results])
    won = [r[1] for r in results if r[0] == 200][0]
    check_eq(account(srv, acct)["balance"], 50000 - 100 - won["captured_minor"], "captured once")

    # a capture and a release at once: exactly one of them wins
    h2 = expect(hold(srv, m1["token"], dev.code(s + 1), 5000), 201)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda f: f(), (lambda: capture(srv, m1["token"], h2["id"]),
                                                lambda: release(srv, m1["staff"], h2["id"]))))
    check_eq(sorted(r[0] for r in results), [200, 409], "capture or release: %s"
             % [r[1] for r in results])
    a = account(srv, acct)
    check_eq(a["debits_pending"], 0, "nothing left held")
    srv.check_verify()


TESTS = [
    test_devices,
    test_charges,
    test_refusals,
    test_races,
    test_throttling,
    test_holds,
    test_hold_expiry,
    test_hold_access_and_races,
]

if __name__ == "__main__":
    harness.main(TESTS)
