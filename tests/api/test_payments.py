#!/usr/bin/env python3
"""test_payments.py - money movement end to end over HTTP: merchant onboarding and fee
schedules, merchant-presented EMVCo QR codes (static and dynamic) scanned, quoted and paid,
refunds (partial, over the capture, concurrent), sends to a phone, an email or a handle with a
masked recipient name and a fee, quotes that expire or do not match, races (one dynamic code
paid twice at once, two sends overdrawing a wallet at once), activity with filters and cursors,
and `coffer verify` after every test.

Usage: test_payments.py --bin build/coffer --src . [test names...]
"""

import concurrent.futures
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import (IBAN, PASSWORD, RUN, add_card, balance, call, customer,  # noqa: E402
                         email, expect, fund, merchant, pay, qr, topup, wait_op, wallet)

ENV = {"COFFER_CURRENCIES": "USD,EUR", "COFFER_SEND_FEE_BPS": "100",
       "COFFER_SEND_FEE_FIXED_MINOR": "5", "COFFER_QUOTE_TTL_S": "10",
       "COFFER_SANDBOX_LATENCY_MS": "50", "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
SECRET = ENV["COFFER_GATEWAY_SECRET"].encode()


def shared(ctx):
    return ph.shared(ctx, ENV)


def admin(srv):
    return srv.token


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def with_crc(body):
    """Recomputes the CRC of a payload whose fields were changed (a forger's payload)."""
    head = body[:-4]
    return head + "%04X" % crc16(head.encode())


def verified(srv):
    srv.check_verify()


# ------------------------------------------------------------------------------------------------


def test_onboarding_and_fees(ctx):
    """Admins set a merchant's payment profile (validated) and the fee schedule; merchants read
    their profile and balance; customers cannot do either."""
    srv = shared(ctx)
    made = expect(call(srv, "POST", "/v1/admin/merchants",
                       {"legal_name": "Lamp Shop Ltd", "display_name": "Lamp Shop",
                        "owner": {"login": email("lamp"), "password": PASSWORD, "name": "Lou"}},
                       token=admin(srv)), 201)
    path = "/v1/admin/merchants/%s/profile" % made["merchant_id"]
    good = {"mcc": "5732", "country": "GB", "city": "Leeds", "currency": "USD",
            "bank_account": "GB82 WEST 1234 5698 7654 32"}
    for field, value, code in (("mcc", "57a2", "invalid_field"), ("country", "gb", "invalid_field"),
                               ("city", "", "invalid_field"), ("currency", "XXX", "unknown_currency"),
                               ("bank_account", "GB00WEST12345698765432", "invalid_bank_account"),
                               ("fee_bps", 10001, "invalid_field")):
        body = expect(call(srv, "POST", path, dict(good, **{field: value}), token=admin(srv)), 400,
                      code, "profile with a bad %s" % field)
        check_eq(body.get("detail"), field, "detail of a refused profile")
    cust = customer(srv)
    expect(call(srv, "POST", path, good, token=cust.token), 403, "forbidden", "customer onboarding")
    expect(call(srv, "POST", "/v1/admin/merchants/mer_0000000000001/profile", good,
                token=admin(srv)), 404, "not_found", "profile of no merchant")
    got = expect(call(srv, "POST", path, good, token=admin(srv)), 200)
    check_eq(got["bank_account_last4"], "5432", "only the last four digits come back")
    check("bank_account" not in got and "WEST" not in str(got), "the IBAN is never returned")
    expect(call(srv, "POST", path, dict(good, currency="EUR"), token=admin(srv)), 409, "conflict",
           "changing the settlement currency")

    expect(call(srv, "POST", "/v1/admin/fees", {"mcc": "5732", "bps": 250, "fixed_minor": 10},
                token=admin(srv)), 200)
    expect(call(srv, "POST", "/v1/admin/fees", {"mcc": "5732", "bps": -1}, token=admin(srv)), 400,
           "invalid_field")
    fees = expect(call(srv, "GET", "/v1/admin/fees", token=admin(srv)), 200)
    check({"mcc": "5732", "bps": 250, "fixed_minor": 10} in fees["data"], "fee row listed")
    expect(call(srv, "POST", "/v1/admin/fees", {"mcc": "5732", "bps": 1}, token=cust.token), 403)

    verified(srv)


def test_qr_payments(ctx):
    """A customer scans a static code (typing the amount) and a dynamic one; sees the
    merchant's name, the amount and the fee; pays; the merchant's fee goes to fee revenue in the
    same transfer; a dynamic code is used once; a retried request answers the same payment."""
    srv = shared(ctx)
    m = merchant(srv, mcc="5814", fee_bps=150, fee_fixed=20, name="Quay Coffee")
    cust = customer(srv)
    acct = fund(srv, cust.token, 50000)

    static = qr(srv, m)
    check_eq(static["dynamic"], False, "a code without an amount is static")
    check(static["payload"].startswith("000201010211"), "static point of initiation")
    check(static["svg"].startswith("<svg") or "<svg" in static["svg"][:200], "the code as SVG")
    scan = expect(call(srv, "POST", "/v1/me/qr/scan",
                       {"payload": static["payload"], "amount_minor": 1250}, token=cust.token), 200)
    check_eq((scan["merchant"]["name"], scan["amount_minor"], scan["fee_minor"],
              scan["total_minor"], scan["currency"]), ("Quay Coffee", 1250, 0, 1250, "USD"),
             "what the customer sees before paying")
    expect(call(srv, "POST", "/v1/me/qr/scan", {"payload": static["payload"]}, token=cust.token),
           400, "invalid_amount", "a static code without the typed amount")

    key = new_key("pay")
    paid = expect(pay(srv, cust.token, static["payload"], 1250, key=key, quote=scan["quote_id"]),
                  201, what="static payment")
    check_eq((paid["type"], paid["status"], paid["amount_minor"], paid["direction"]),
             ("payment", "completed", 1250, "out"), "the payment")
    again = expect(pay(srv, cust.token, static["payload"], 1250, key=key, quote=scan["quote_id"]),
                   201, what="the same request again")
    check_eq(again["id"], paid["id"], "a retry answers the first payment")
    expect(pay(srv, cust.token, static["payload"], 1300, key=key), 422, "idempotency_key_reused")
    expect(pay(srv, cust.token, static["payload"], 1250, quote=scan["quote_id"]), 422,
           "quote_expired", "a quote used twice")
    fee = (1250 * 150 + 5000) // 10000 + 20
    check_eq(balance(srv, m["account"]), 1250 - fee, "the merchant's balance is net of its fee")
    check_eq(balance(srv, acct), 50000 - 1250, "the customer paid the amount only")
    tr = srv.client().transfer(paid["transfer_id"])
    check_eq((tr["debit_account_id"], tr["credit_account_id"], tr["amount"]),
             (acct, m["account"], 1250), "the payment's transfer: customer to merchant")

    dyn = qr(srv, m, amount_minor=4200, reference="order-77")
    check(dyn["payload"].startswith("000201010212"), "dynamic point of initiation")
    scan = expect(call(srv, "POST", "/v1/me/qr/scan", {"payload": dyn["payload"]},
                       token=cust.token), 200)
    check_eq((scan["amount_minor"], scan["reference"]), (4200, "order-77"), "dynamic code's scan")
    expect(call(srv, "POST", "/v1/me/qr/scan", {"payload": dyn["payload"], "amount_minor": 1},
                token=cust.token), 400, "invalid_field", "a different amount for a dynamic code")
    paid = expect(pay(srv, cust.token, dyn["payload"]), 201, what="dynamic payment")
    check_eq(paid["reference"], dyn["id"], "the payment names its code")
    expect(pay(srv, cust.token, dyn["payload"]), 422, "qr_expired", "a dynamic code used again")

    poor = customer(srv)
    dyn2 = qr(srv, m, amount_minor=999)
    expect(pay(srv, poor.token, dyn2["payload"]), 422, "insufficient_funds", "a payment too big")
    fund(srv, poor.token, 999)
    expect(pay(srv, poor.token, dyn2["payload"]), 201, what="the code is free again after a "
           "failed payment")
    verified(srv)


def test_tampered_codes(ctx):
    """Corrupted or forged payloads are refused with a clear reason, and move nothing."""
    srv = shared(ctx)
    m = merchant(srv, name="Tamper Tea")
    cust = customer(srv)
    fund(srv, cust.token, 10000)
    dyn = qr(srv, m, amount_minor=500)
    p = dyn["payload"]
    flipped = p[:30] + ("X" if p[30] != "X" else "Y") + p[31:]
    for bad, what in ((flipped, "one character changed"), (p[:-1], "truncated"),
                      (p[:-4] + "0000", "wrong crc"), (p + "00", "data after the crc"),
                      ("hello", "not a payload"), ("", "empty")):
        status, body, _ = call(srv, "POST", "/v1/me/qr/scan", {"payload": bad}, token=cust.token)
        check(status == 400 and body.get("code") in ("invalid_qr", "invalid_field",
                                                       "missing_field"),
              "%s: expected a 400, got %d %s" % (what, status, body))
    # a forger changes the amount and fixes the CRC: the code no longer matches its record
    forged = with_crc(p.replace("54045.00", "54041.00"))
    check(forged != p, "the forged payload differs")
    body = expect(call(srv, "POST", "/v1/me/qr/scan", {"payload": forged}, token=cust.token), 400,
                  "invalid_qr", "a forged amount")
    check("record" in body.get("detail", ""), "the reason names the mismatch: %s" % body)
    expect(pay(srv, cust.token, forged), 400, "invalid_qr", "paying a forged code")
    verified(srv)


def test_refunds(ctx):
    """Partial refunds up to the captured amount, never more, also when sent at once; the
    merchant gets its fee's share back with each refund."""
    srv = shared(ctx)
    m = merchant(srv, fee_bps=200, name="Refund Books")
    cust = customer(srv)
    acct = fund(srv, cust.token, 10000)
    dyn = qr(srv, m, amount_minor=1000)
    paid = expect(pay(srv, cust.token, dyn["payload"]), 201)
    path = "/v1/merchant/payments/%s/refund" % paid["id"]
    r1 = expect(call(srv, "POST", path, {"amount_minor": 300}, token=m["token"], key=new_key()),
                201, what="first partial refund")
    check_eq((r1["type"], r1["amount_minor"], r1["fee_minor"], r1["payment_id"]),
             ("refund", 300, 6, paid["id"]), "the refund and its fee share")
    expect(call(srv, "POST", path, {"amount_minor": 701}, token=m["token"], key=new_key()), 422,
           "refund_exceeds_captured", "refunding more than is left")
    other = customer(srv)
    expect(call(srv, "POST", path, {"amount_minor": 1}, token=other.token, key=new_key()), 403,
           "forbidden", "a customer refunding")
    m2 = merchant(srv, name="Other Shop")
    expect(call(srv, "POST", path, {"amount_minor": 1}, token=m2["token"], key=new_key()), 404,
           what="another merchant's payment")

    # 700 left: seven refunds of 150 at once, only four fit
    def refund(_):
        return call(srv, "POST", path, {"amount_minor": 150}, token=m["token"], key=new_key())[0]
    with concurrent.futures.ThreadPoolExecutor(7) as pool:
        codes = sorted(pool.map(refund, range(7)))
    check_eq(codes.count(201), 4, "refunds that fit: %s" % codes)
    check_eq(codes.count(422), 3, "refunds refused: %s" % codes)
    rest = expect(call(srv, "POST", path, {}, token=m["token"], key=new_key()), 201,
                  what="the rest")
    check_eq(rest["amount_minor"], 100, "refund without an amount takes what is left")
    check_eq(balance(srv, acct), 10000, "the customer has everything back")
    check_eq(balance(srv, m["account"]), 0, "the merchant kept nothing, fee included")
    verified(srv)


def test_sends(ctx):
    """A customer sends money to a phone, an email or a handle: the quote shows the masked name
    and the fee; the executed send matches the accepted quote or is refused."""
    srv = shared(ctx)
    alice = customer(srv, name="Alice Smith")
    bob_login = "+447700900%03d" % random.randrange(1000)
    bob = ih.register_customer(srv.port, srv.token, bob_login, name="Bob Stone")
    acct = fund(srv, alice.token, 100000)
    handle = "bob%s" % RUN
    got = expect(call(srv, "POST", "/v1/me/handle", {"handle": "@" + handle.upper()},
                      token=bob.token), 200)
    check_eq(got["handle"], "@" + handle, "handles are lower-cased")
    expect(call(srv, "POST", "/v1/me/handle", {"handle": handle}, token=alice.token), 409,
           "conflict", "a taken handle")
    expect(call(srv, "POST", "/v1/me/handle", {"handle": "a b"}, token=alice.token), 400,
           "invalid_field", "a malformed handle")

    for to in (bob_login, "@" + handle):
        q = expect(call(srv, "POST", "/v1/me/quotes",
                        {"to": to, "amount_minor": 2000, "currency": "USD"}, token=alice.token),
                   200, what="quote to " + to)
        check_eq((q["recipient"]["name"], q["fee_minor"], q["total_minor"]),
                 ("B*** S.", 25, 2025), "the quote")
    expect(call(srv, "POST", "/v1/me/quotes", {"to": email("nobody"), "amount_minor": 1,
                                               "currency": "USD"}, token=alice.token), 404,
           "recipient_not_found")
    expect(call(srv, "POST", "/v1/me/quotes", {"to": alice.login, "amount_minor": 1,
                                               "currency": "USD"}, token=alice.token), 422,
           "same_account", "a send to oneself")
    expect(call(srv, "POST", "/v1/me/quotes", {"to": bob_login, "amount_minor": 1,
                                               "currency": "JPY"}, token=alice.token), 400,
           "unknown_currency", "a currency not on offer")

    body = {"to": "@" + handle, "amount_minor": 2000, "currency": "USD", "note": "lunch",
            "quote_id": q["quote_id"]}
    expect(call(srv, "POST", "/v1/me/sends", body, token=alice.token, key=new_key()), 403,
           "step_up_required", "a first send to a new payee")
    # the step-up is bound to the recipient as the sender named them
    v = ih.step_up(srv.port, alice.token, "send", admin_token=srv.token, login=alice.login,
                   amount_minor=2025, currency="USD", payee="@" + handle)
    key = new_key("send")
    sent = expect(call(srv, "POST", "/v1/me/sends", dict(body, verification=v),
                       token=alice.token, key=key), 201, what="send")
    check_eq((sent["type"], sent["amount_minor"], sent["fee_minor"], sent["note"]),
             ("send", 2000, 25, "lunch"), "the send")
    check_eq(balance(srv, acct), 100000 - 2025, "the sender paid amount and fee")
    again = expect(call(srv, "POST", "/v1/me/sends", dict(body, verification=v),
                        token=alice.token, key=key), 201)
    check_eq(again["id"], sent["id"], "a retried send answers the first")
    bob_view = expect(call(srv, "GET", "/v1/me/operations/" + sent["id"], token=bob.token), 200)
    check_eq((bob_view["direction"], bob_view["counterparty"]), ("in", alice.user_id),
             "the recipient sees it as money in")
    eve = customer(srv)
    expect(call(srv, "POST", "/v1/me/operations/" + sent["id"], token=eve.token), 405)
    expect(call(srv, "GET", "/v1/me/operations/" + sent["id"], token=eve.token), 404,
           "not_found", "someone else's operation")

    # a known payee below the step-up amount needs no verification; an expired quote is refused
    q = expect(call(srv, "POST", "/v1/me/quotes",
                    {"to": bob_login, "amount_minor": 100, "currency": "USD"}, token=alice.token),
               200)
    expect(call(srv, "POST", "/v1/me/sends", {"to": bob_login, "amount_minor": 101,
                                              "currency": "USD", "quote_id": q["quote_id"]},
                token=alice.token, key=new_key()), 422, "quote_expired", "another amount")
    time.sleep(11)
    expect(call(srv, "POST", "/v1/me/sends", {"to": bob_login, "amount_minor": 100,
                                              "currency": "USD", "quote_id": q["quote_id"]},
                token=alice.token, key=new_key()), 422, "quote_expired", "an expired quote")
    plain = expect(call(srv, "POST", "/v1/me/sends", {"to": bob_login, "amount_minor": 100,
                                                      "currency": "USD"}, token=alice.token,
                        key=new_key()), 201, what="a send without a quote")
    check("note" not in plain, "a send without a note has none: %s" % plain)
    # a failed attempt to pay Bob is Alice's business only
    failed = call(srv, "POST", "/v1/me/sends", {"to": bob_login, "amount_minor": 10**9,
                                                "currency": "USD"}, token=alice.token,
                  key=new_key())
    check_eq(failed[0], 403, "a big send needs a step-up")
    v = ih.step_up(srv.port, alice.token, "send", admin_token=srv.token, login=alice.login,
                   amount_minor=10**9 + 10**7 + 5, currency="USD", payee=bob_login)
    failed = expect(call(srv, "POST", "/v1/me/sends",
                         {"to": bob_login, "amount_minor": 10**9, "currency": "USD",
                          "verification": v}, token=alice.token, key=new_key()), 422,
                    "insufficient_funds", "a send beyond the balance")
    mine = expect(call(srv, "GET", "/v1/me/activity?type=send", token=alice.token), 200)["data"]
    failed_ops = [o for o in mine if o.get("error") == "insufficient_funds"]
    check_eq(len(failed_ops), 1, "the sender sees the failed send")
    check_eq(failed_ops[0]["status"], "failed", "its status")
    theirs = expect(call(srv, "GET", "/v1/me/activity?type=send", token=bob.token), 200)["data"]
    check(all(o["status"] == "completed" for o in theirs), "the recipient sees no failed send")
    expect(call(srv, "GET", "/v1/me/operations/" + failed_ops[0]["id"], token=bob.token), 404,
           "not_found", "the recipient reading the failed send")
    verified(srv)


def test_races(ctx):
    """One dynamic code paid by two customers at once: one payment. Two sends that together
    overdraw a wallet, at once: one send."""
    srv = shared(ctx)
    m = merchant(srv, name="Race Cafe")
    a, b = customer(srv), customer(srv)
    fund(srv, a.token, 5000)
    fund(srv, b.token, 5000)
    for _ in range(3):
        dyn = qr(srv, m, amount_minor=700)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            codes = sorted(f.result()[0] for f in
                           [pool.submit(pay, srv, c.token, dyn["payload"]) for c in (a, b)])
        check_eq(codes, [201, 422], "two payers of one code")

    rich = customer(srv)
    acct = fund(srv, rich.token, 1000)
    dest = customer(srv)
    wallet(srv, dest.token)
    # a first small send makes dest a known payee (the first send needs step-up)
    v = ih.step_up(srv.port, rich.token, "send", admin_token=srv.token, login=rich.login,
                   amount_minor=15, currency="USD", payee=dest.login)
    expect(call(srv, "POST", "/v1/me/sends", {"to": dest.login, "amount_minor": 10,
                                              "currency": "USD", "verification": v},
                token=rich.token, key=new_key()), 201)

    def send(_):
        return call(srv, "POST", "/v1/me/sends", {"to": dest.login, "amount_minor": 600,
                                                  "currency": "USD"}, token=rich.token,
                    key=new_key())[0]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(send, range(2)))
    check_eq(codes, [201, 422], "two sends overdrawing one wallet")
    check(balance(srv, acct) >= 0, "the wallet never went below zero")
    verified(srv)


def test_activity(ctx):
    """Activity: newest first, filters by type, currency and dates, cursor pages."""
    srv = shared(ctx)
    m = merchant(srv, name="Activity Deli")
    cust = customer(srv)
    fund(srv, cust.token, 100000)
    for amount in (101, 102, 103, 104, 105):
        expect(pay(srv, cust.token, qr(srv, m, amount_minor=amount)["payload"]), 201)
    page = expect(call(srv, "GET", "/v1/me/activity?limit=2&type=payment", token=cust.token), 200)
    check_eq([o["amount_minor"] for o in page["data"]], [105, 104], "first page, newest first")
    seen = [o["amount_minor"] for o in page["data"]]
    while page["next_cursor"]:
        page = expect(call(srv, "GET", "/v1/me/activity?limit=2&type=payment&cursor="
                           + page["next_cursor"], token=cust.token), 200)
        seen += [o["amount_minor"] for o in page["data"]]
    check_eq(seen, [105, 104, 103, 102, 101], "every page once")
    check_eq(expect(call(srv, "GET", "/v1/me/activity?currency=EUR", token=cust.token), 200)
             ["data"], [], "no EUR activity")
    check_eq(expect(call(srv, "GET", "/v1/me/activity?to=2000-01-01", token=cust.token), 200)
             ["data"], [], "nothing before 2000")
    for bad, code in (("type=gift", "invalid_field"), ("from=yesterday", "invalid_field"),
                      ("limit=0", "invalid_page_size"), ("cursor=%%%", "invalid_cursor"),
                      ("currency=ZZZ", "unknown_currency")):
        expect(call(srv, "GET", "/v1/me/activity?" + bad, token=cust.token), 400, code, bad)
    mine = expect(call(srv, "GET", "/v1/merchant/activity?limit=100", token=m["token"]), 200)
    check_eq(sorted(o["amount_minor"] for o in mine["data"]), [101, 102, 103, 104, 105],
             "the merchant's activity")
    check(all(o["direction"] == "in" for o in mine["data"]), "money in, for the merchant")
    verified(srv)


# ------------------------------------------------------------------------------------------------
# Funding through the sandbox gateway

CARD_OK, CARD_DECLINED, CARD_POOR = "4242424242424242", "4000000000000002", "4000000000009995"
CARD_3DS, CARD_TIMEOUT = "4000000000003220", "4000000000000119"
CARD_ASYNC_OK, CARD_ASYNC_NO = "4000000000000077", "4000000000000085"
BANK_ASYNC_OK = "DE89370400440532013000"


def test_cards(ctx):
    """The card vault: numbers checked (Luhn, length, expiry, security code), saved behind a
    step-up, shown only as brand, last four and expiry; the same card twice is one card."""
    srv = shared(ctx)
    cust = customer(srv)
    expect(call(srv, "POST", "/v1/me/cards", {"number": CARD_OK, "exp_month": 12,
                                              "exp_year": 2031, "cvc": "123"}, token=cust.token),
           403, "step_up_required", "a card without a step-up")
    for number, year, cvc, detail in (("4242424242424241", 2031, "123", "number"),
                                      ("4242", 2031, "123", "number"),
                                      (CARD_OK, 2020, "123", "exp_month"),
                                      (CARD_OK, 2031, "12", "cvc")):
        body = expect(call(srv, "POST", "/v1/me/cards",
                           {"number": number, "exp_month": 12, "exp_year": year, "cvc": cvc},
                           token=cust.token), 400, "invalid_card", "card %s" % detail)
        check_eq(body.get("detail"), detail, "the refused part")
    card = add_card(srv, cust, "4242 4242 4242 4242")
    check_eq((card["brand"], card["last4"], card["exp_month"], card["exp_year"]),
             ("visa", "4242", 12, 2031), "the saved card")
    check(CARD_OK not in str(card) and "cvc" not in card, "no number, no security code")
    again = add_card(srv, cust, CARD_OK, expect_status=200)
    check_eq(again["id"], card["id"], "the same card saved twice")
    listed = expect(call(srv, "GET", "/v1/me/cards", token=cust.token), 200)["data"]
    check_eq([c["id"] for c in listed], [card["id"]], "the customer's cards")
    other = customer(srv)
    check_eq(expect(call(srv, "GET", "/v1/me/cards", token=other.token), 200)["data"], [],
             "someone else's cards")
    expect(call(srv, "POST", "/v1/me/cards/%s/remove" % card["id"], {}, token=other.token), 404)
    expect(topup(srv, other, 100, card=card["id"]), 400, "invalid_card", "someone else's card")
    expect(call(srv, "POST", "/v1/me/cards/%s/remove" % card["id"], {}, token=cust.token), 200)
    check_eq(expect(call(srv, "GET", "/v1/me/cards", token=cust.token), 200)["data"], [],
             "a removed card")
    expect(topup(srv, cust, 100, card=card["id"]), 400, "invalid_card", "a removed card")


def test_topups(ctx):
    """Top-ups through the sandbox: approved, declined, short of funds, a 3-D Secure challenge,
    a timeout, and confirmations that arrive later by callback."""
    srv = shared(ctx)
    cust = customer(srv)
    acct = wallet(srv, cust.token)
    ok = add_card(srv, cust, CARD_OK)["id"]
    key = new_key("top")
    done = expect(topup(srv, cust, 5000, card=ok, key=key), 201, what="approved top-up")
    check_eq((done["type"], done["status"], done["direction"]), ("topup", "completed", "in"),
             "the top-up")
    check_eq(balance(srv, acct), 5000, "the wallet after a top-up")
    again = expect(topup(srv, cust, 5000, card=ok, key=key), 201)
    check_eq(again["id"], done["id"], "a retried top-up")
    check_eq(balance(srv, acct), 5000, "a retry credits nothing twice")

    for number, what in ((CARD_DECLINED, "declined"), (CARD_POOR, "insufficient funds")):
        card = add_card(srv, cust, number)["id"]
        expect(topup(srv, cust, 700, card=card), 402, "payment_declined", what)
    check_eq(balance(srv, acct), 5000, "declines move nothing")
    check_eq(srv.client().account(acct)["credits_pending"], 0, "and hold nothing")

    # a customer gets at most five codes an hour (registration took one): a second customer
    cust = customer(srv)
    acct = wallet(srv, cust.token)
    card = add_card(srv, cust, CARD_3DS)["id"]
    waiting = expect(topup(srv, cust, 300, card=card), 202, what="3-D Secure")
    check_eq(waiting["status"], "action_required", "a challenge to answer")
    check("reference" in waiting["challenge"], "the challenge's reference")
    path = "/v1/me/topups/%s/challenge" % waiting["id"]
    other = customer(srv)
    expect(call(srv, "POST", path, {"code": "123456"}, token=other.token), 404, "not_found",
           "someone else's challenge")
    expect(call(srv, "POST", path, {"code": "000000"}, token=cust.token), 402, "payment_declined",
           "a wrong answer")
    expect(call(srv, "POST", path, {"code": "123456"}, token=cust.token), 402, "payment_declined",
           "a second answer gets the first one's outcome, not a second try")
    waiting = expect(topup(srv, cust, 300, card=card), 202)
    expect(call(srv, "POST", "/v1/me/topups/%s/challenge" % waiting["id"], {"code": "123456"},
                token=cust.token), 201, what="the right answer")
    check_eq(balance(srv, acct), 300, "after the challenge")

    card = add_card(srv, cust, CARD_TIMEOUT)["id"]
    expect(topup(srv, cust, 100, card=card), 502, "gateway_unavailable", "a gateway timeout")
    check_eq(srv.client().account(acct)["credits_pending"], 0, "a timed-out hold is voided")

    card = add_card(srv, cust, CARD_ASYNC_OK)["id"]
    pending = expect(topup(srv, cust, 400, card=card), 202, what="answer by callback")
    check_eq(pending["status"], "pending", "waiting for the callback")
    wait_op(srv, cust.token, pending["id"], "completed")
    card = add_card(srv, cust, CARD_ASYNC_NO)["id"]
    pending = expect(topup(srv, cust, 400, card=card), 202)
    failed = wait_op(srv, cust.token, pending["id"], "failed")
    check_eq(failed["error"], "payment_declined", "declined by callback")
    pending = expect(topup(srv, cust, 250, bank=BANK_ASYNC_OK), 202, what="a bank top-up")
    wait_op(srv, cust.token, pending["id"], "completed")
    check_eq(balance(srv, acct), 950, "after the callbacks")
    check_eq(srv.client().account(acct)["credits_pending"], 0, "no hold left")
    verified(srv)


def test_callbacks(ctx):
    """Forged, stale, duplicate, late and out-of-order callbacks change nothing."""
    srv = shared(ctx)
    cust = customer(srv)
    acct = wallet(srv, cust.token)
    done = expect(topup(srv, cust, 1000, bank="GB82WEST12345698765432"), 201)
    fields = {"event_id": "evt_test%s" % RUN, "op_id": done["id"], "reference": "sbx_x",
              "outcome": "declined", "amount_minor": "1000", "currency": "USD",
              "created_at": str(int(time.time()))}
    expect(ph.callback(srv, b"not-the-secret-at-all", fields), 401, "bad_signature", "forged")
    expect(ph.callback(srv, SECRET, fields, t=int(time.time()) - 3600), 401, "bad_signature",
           "stale")
    got = expect(ph.callback(srv, SECRET, fields), 200, what="a late callback")
    check_eq(got["status"], "ignored", "a callback for a finished top-up")
    got = expect(ph.callback(srv, SECRET, fields), 200, what="the same event again")
    check_eq(got["status"], "duplicate", "a repeated event")
    check_eq(wait_op(srv, cust.token, done["id"], "completed")["status"], "completed",
             "the top-up stands")
    check_eq(balance(srv, acct), 1000, "nothing moved")
    status, _b, _h = ih.call(srv.port, "POST", "/v1/gateway/callbacks", {"event_id": "x"})
    check_eq(status, 415, "a JSON body on the form route")
    # a callback with another amount for a pending top-up is ignored; the real one settles it
    pending = expect(topup(srv, cust, 600, bank=BANK_ASYNC_OK), 202)
    forged = dict(fields, event_id="evt_amt%s" % RUN, op_id=pending["id"], outcome="approved",
                  amount_minor="60000")
    check_eq(expect(ph.callback(srv, SECRET, forged), 200)["status"], "ignored", "a wrong amount")
    wait_op(srv, cust.token, pending["id"], "completed")
    check_eq(balance(srv, acct), 1600, "the real callback credited once")
    verified(srv)


def test_withdrawals_and_payouts(ctx):
    """A customer withdraws to a bank account (always with a step-up); a merchant's owner pays
    the balance out to the merchant's bank account; staff may not."""
    srv = shared(ctx)
    cust = customer(srv)
    acct = fund(srv, cust.token, 9000)
    body = {"amount_minor": 4000, "currency": "USD", "bank_account": "GB82WEST12345698765432"}
    expect(call(srv, "POST", "/v1/me/withdrawals", body, token=cust.token, key=new_key()), 403,
           "step_up_required", "a withdrawal without a step-up")
    v = ih.step_up(srv.port, cust.token, "withdrawal", admin_token=srv.token, login=cust.login,
                   amount_minor=4000, currency="USD", payee="GB82WEST12345698765432")
    out = expect(call(srv, "POST", "/v1/me/withdrawals", dict(body, verification=v),
                      token=cust.token, key=new_key()), 201, what="withdrawal")
    check_eq((out["type"], out["status"], out["direction"]), ("withdrawal", "completed", "out"),
             "the withdrawal")
    check_eq(balance(srv, acct), 5000, "after the withdrawal")
    v = ih.step_up(srv.port, cust.token, "withdrawal", admin_token=srv.token, login=cust.login,
                   amount_minor=9999, currency="USD", payee="GB82WEST12345698765432")
    expect(call(srv, "POST", "/v1/me/withdrawals", dict(body, amount_minor=9999, verification=v),
                token=cust.token, key=new_key()), 422, "insufficient_funds",
           "more than the balance")

    m = merchant(srv, fee_bps=0, name="Payout Bakery")
    expect(pay(srv, cust.token, qr(srv, m, amount_minor=1500)["payload"]), 201)
    paid = expect(call(srv, "POST", "/v1/merchant/payouts", {}, token=m["token"], key=new_key()),
                  201, what="payout of the whole balance")
    check_eq((paid["type"], paid["amount_minor"]), ("payout", 1500), "the payout")
    check_eq(balance(srv, m["account"]), 0, "the merchant's balance after the payout")
    expect(call(srv, "POST", "/v1/merchant/payouts", {}, token=m["token"], key=new_key()), 422,
           "insufficient_funds", "nothing left to pay out")
    verified(srv)


def test_no_card_numbers_at_rest(ctx):
    """Card numbers and bank accounts are never stored, logged or backed up in the clear: the
    database files (with their -wal), the server's logs and a backup are searched for them."""
    saved = harness.PG_URL
    harness.PG_URL = None  # files to search: SQLite even in the PostgreSQL pass
    try:
        srv = harness.Server(ctx.bin, env=ENV, log_level="debug").start()
    finally:
        harness.PG_URL = saved
    cust = customer(srv)
    numbers = [CARD_OK, CARD_3DS, "5555555555554444"]
    for number in numbers:
        card = add_card(srv, cust, " ".join(number[i:i + 4] for i in range(0, 16, 4)))
        status, body, _h = topup(srv, cust, 100, card=card["id"])
        check(status in (201, 202), "top-up with %s: %d %s" % (card["last4"], status, body))
    iban_in, iban_out = "DE89370400440532013000", "NL91ABNA0417164300"
    expect(topup(srv, cust, 100, bank=iban_in), 202)
    v = ih.step_up(srv.port, cust.token, "withdrawal", admin_token=srv.token, login=cust.login,
                   amount_minor=50, currency="USD", payee=iban_out)
    status, _b, _h = call(srv, "POST", "/v1/me/withdrawals",
                          {"amount_minor": 50, "currency": "USD", "bank_account": iban_out,
                           "verification": v}, token=cust.token, key=new_key())
    check(status in (201, 202), "withdrawal: %d" % status)
    merchant(srv, name="Scan Shop")  # its IBAN is IBAN
    backup = os.path.join(srv.root, "backup")
    r = subprocess.run([ctx.bin, "backup", "--data", srv.data, "--out", backup],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "coffer backup failed: %s %s" % (r.stdout, r.stderr))
    needles = []
    for n in numbers:
        needles += [n, " ".join(n[i:i + 4] for i in range(0, 16, 4)), n[:12], n[4:]]
    for iban in (iban_in, iban_out, IBAN):
        needles += [iban, iban[4:], " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))]

    controls = []

    def scan():
        hits, files = [], 0
        del controls[:]
        for top, _dirs, names in os.walk(srv.root):
            for name in names:
                path = os.path.join(top, name)
                with open(path, "rb") as f:
                    data = f.read()
                files += 1
                hits += ["%s: %s" % (os.path.relpath(path, srv.root), n) for n in needles
                         if n.encode() in data or n.encode("utf-16-le") in data]
                if b"Scan Shop" in data:  # a business name, stored in the clear: the scan sees
                    controls.append("Scan Shop")
        check(files >= 6, "the scan read too few files: %d" % files)
        check(controls, "the scan did not find the merchant's name, stored in the clear: it "
              "reads nothing")
        return hits
    live = scan()
    check(any(name.endswith("-wal") for _t, _d, names in os.walk(srv.root) for name in names),
          "the live scan saw a -wal file")
    srv.check_verify()
    check_eq(srv.stop(), 0, "server exit code")
    found = live + scan()
    check(not found, "card numbers or IBANs in the clear: %s" % found[:20])


def test_crash_recovery(ctx):
    """kill -9 while customers pay merchants and send to each other: after the restart every
    acknowledged operation is there, completed, and answers the same to its key; operations cut
    off half way are finished or failed, never doubled; the ledger agrees with the operations."""
    srv = harness.Server(ctx.bin, env=ENV).start()
    m = merchant(srv, fee_bps=100, name="Crash Cafe")
    payers = [customer(srv) for _ in range(4)]
    for c in payers:
        fund(srv, c.token, 10**6)
    static = qr(srv, m)["payload"]
    acked, lock, stop = {}, __import__("threading").Lock(), []

    def worker(c, n):
        for i in range(n):
            if stop:
                return
            key = new_key("crash")
            try:
                status, body, _h = pay(srv, c.token, static, 100 + i, key=key)
            except OSError:
                return
            if status == 201:
                with lock:
                    acked[key] = (c, body["id"], body["amount_minor"])
    threads = [__import__("threading").Thread(target=worker, args=(c, 400)) for c in payers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill9()
    stop.append(True)
    for t in threads:
        t.join()
    check(len(acked) >= 20, "too few payments before the crash: %d" % len(acked))
    srv.start()
    for key, (c, op_id, amount) in acked.items():
        got = expect(call(srv, "GET", "/v1/me/operations/" + op_id, token=c.token), 200,
                     what="an acknowledged payment after the crash")
        check_eq((got["status"], got["amount_minor"]), ("completed", amount), op_id)
        again = expect(pay(srv, c.token, static, amount, key=key), 201, what="its key again")
        check_eq(again["id"], op_id, "the same key answers the same payment")
    # every payment the merchant sees is completed, and its balance is their sum less fees
    ops = expect(call(srv, "GET", "/v1/merchant/activity?limit=100", token=m["token"]), 200)
    total = fees = 0
    page = ops
    while True:
        for o in page["data"]:
            check_eq(o["status"], "completed", "the merchant sees completed payments only")
            total += o["amount_minor"]
            fees += o["fee_minor"]
        if not page["next_cursor"]:
            break
        page = expect(call(srv, "GET", "/v1/merchant/activity?limit=100&cursor="
                           + page["next_cursor"], token=m["token"]), 200)
    check(total >= sum(a for _c, _i, a in acked.values()), "acknowledged payments are counted")
    check_eq(balance(srv, m["account"]), total - fees, "the ledger agrees with the operations")
    srv.check_verify()


TESTS = [
    test_onboarding_and_fees,
    test_qr_payments,
    test_tampered_codes,
    test_refunds,
    test_sends,
    test_races,
    test_activity,
    test_cards,
    test_topups,
    test_callbacks,
    test_withdrawals_and_payouts,
    test_no_card_numbers_at_rest,
    test_crash_recovery,
]

if __name__ == "__main__":
    harness.main(TESTS)
