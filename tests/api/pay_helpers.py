"""pay_helpers.py - helpers shared by Coffer's money-movement API tests (test_payments.py,
test_fx.py, test_requests.py, test_paycode.py, test_reconcile.py, test_statements.py,
test_review_gateway.py).

One copy of what those scripts all need: unique logins (email), JSON requests and their checks
(call, expect), the shared server of a script with that script's environment (shared), people
and money (customer, wallet, fund, fund_account, balance, merchant, sign_in), merchant QR codes
and their payment (qr, pay), cards, top-ups and operations (add_card, add_card_id, topup,
operation, wait_op), the gateway's signed callbacks (callback). A script keeps here only what
more than one script uses; its own special helpers stay in it. Python 3 standard library only,
beside harness.py and identity_helpers.py.
"""

import hashlib
import hmac
import http.client
import itertools
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402

PASSWORD = ih.DEFAULT_PASSWORD
IBAN = "GB82WEST12345698765432"

SEQ = itertools.count(1)                 # numbers logins (and anything else) uniquely in a run
RUN = "%05x" % random.getrandbits(20)   # tells one run's logins and handles from another's


def email(tag):
    return "%s.%s.%d@example.org" % (tag, RUN, next(SEQ))


def call(srv, method, path, body=None, token=None, key=None, headers=None):
    return ih.call(srv.port, method, path, body, token=token, key=key, headers=headers)


def expect(res, status, code=None, what="request"):
    got, body, _h = res
    check(got == status, "%s: expected %d%s, got %d: %s"
          % (what, status, " " + code if code else "", got, str(body)[:600]))
    if code is not None:
        check(isinstance(body, dict) and body.get("code") == code,
              "%s: expected problem code %r, got %s" % (what, code, str(body)[:300]))
    return body


def shared(ctx, env):
    """The context's shared server, started with env (the calling script's settings)."""
    if ctx._shared is None:
        ctx._shared = harness.Server(ctx.bin, env=env).start()
    return ctx._shared


# -- people and money ----------------------------------------------------------------------------


def customer(srv, name="Carla Customer", tag="cust"):
    return ih.register_customer(srv.port, srv.token, email(tag), name=name)


def wallet(srv, token, currency="USD"):
    return expect(call(srv, "POST", "/v1/me/accounts", {"currency": currency}, token=token), 201,
                  what="wallet open")["id"]


_sources = {}


def fund_account(srv, acct, amount, currency="USD"):
    """Moves amount into acct from an admin funding account (one per server and currency; a
    ledger transfer, not a payment operation)."""
    client = srv.client()
    if (srv.port, currency) not in _sources:
        _sources[(srv.port, currency)] = harness.make_source(client, currency)["id"]
    harness.fund(client, _sources[(srv.port, currency)], acct, amount, currency)


def fund(srv, token, amount, currency="USD"):
    """Opens a wallet for the customer and moves amount into it; returns the wallet's id."""
    acct = wallet(srv, token, currency)
    fund_account(srv, acct, amount, currency)
    return acct


def balance(srv, acct):
    return srv.client().account(acct)["balance"]


def sign_in(srv, login, what="sign-in"):
    return expect(call(srv, "POST", "/v1/auth/sign-in", {"login": login, "password": PASSWORD}),
                  200, what=what)["token"]


def new_merchant(srv, name, mcc="5812", currency="USD", **fields):
    """Creates a merchant with an owner (login email("owner")) and gives it a payment profile:
    mcc, London, currency, IBAN, then fields. Returns (merchant id, owner login, profile)."""
    owner_login = email("owner")
    made = expect(call(srv, "POST", "/v1/admin/merchants",
                       {"legal_name": name + " Ltd", "display_name": name,
                        "owner": {"login": owner_login, "password": PASSWORD,
                                  "name": "Olive Owner"}}, token=srv.token), 201,
                  what="merchant create")
    profile = {"mcc": mcc, "country": "GB", "city": "London", "currency": currency,
               "bank_account": IBAN}
    profile.update(fields)
    got = expect(call(srv, "POST", "/v1/admin/merchants/%s/profile" % made["merchant_id"],
                      profile, token=srv.token), 200, what="merchant profile")
    return made["merchant_id"], owner_login, got


def merchant(srv, name="Harbour Cafe", mcc="5812", fee_bps=None, fee_fixed=None, currency="USD"):
    """A merchant with an owner session and a payment profile (fees left to the server's
    defaults when None)."""
    fees = {}
    if fee_bps is not None:
        fees["fee_bps"] = fee_bps
    if fee_fixed is not None:
        fees["fee_fixed_minor"] = fee_fixed
    merchant_id, owner_login, got = new_merchant(srv, name, mcc=mcc, currency=currency, **fees)
    return {"id": merchant_id, "token": sign_in(srv, owner_login, what="owner sign-in"),
            "account": got["account"]}


# -- merchant-presented QR codes -----------------------------------------------------------------


def qr(srv, m, **body):
    return expect(call(srv, "POST", "/v1/merchant/qr", body or None, token=m["token"]), 201,
                  what="qr create")


def pay(srv, token, payload, amount=None, key=None, quote=None, verification=None):
    body = {"payload": payload}
    if amount is not None:
        body["amount_minor"] = amount
    if quote is not None:
        body["quote_id"] = quote
    if verification is not None:
        body["verification"] = verification
    return call(srv, "POST", "/v1/me/payments", body, token=token, key=key or new_key("pay"))


# -- cards, top-ups and operations ---------------------------------------------------------------


def add_card(srv, cust, number, exp_year=2031, cvc="123", expect_status=201):
    """Adds a card behind a card_add step-up; returns the answer's body."""
    v = ih.step_up(srv.port, cust.token, "card_add", admin_token=srv.token, login=cust.login)
    return expect(call(srv, "POST", "/v1/me/cards",
                       {"number": number, "exp_month": 12, "exp_year": exp_year, "cvc": cvc,
                        "verification": v}, token=cust.token), expect_status, what="card add")


def add_card_id(srv, cust, number):
    """Adds a card (201); returns its id."""
    return add_card(srv, cust, number)["id"]


def topup(srv, cust, amount, card=None, bank=None, key=None):
    body = {"amount_minor": amount, "currency": "USD"}
    if card is not None:
        body["card_id"] = card
    if bank is not None:
        body["bank_account"] = bank
    return call(srv, "POST", "/v1/me/topups", body, token=cust.token, key=key or new_key("top"))


def operation(srv, token, op_id):
    return expect(call(srv, "GET", "/v1/me/operations/" + op_id, token=token), 200,
                  what="operation " + op_id)


def wait_op(srv, token, op_id, status, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while True:
        got = operation(srv, token, op_id)
        if got["status"] == status or time.monotonic() > deadline:
            check_eq(got["status"], status, "operation %s" % op_id)
            return got
        time.sleep(0.05)


# -- the gateway ---------------------------------------------------------------------------------


def callback(srv, secret, fields, t=None):
    """POSTs the gateway callback `fields` to srv signed with secret (bytes) at t (default now),
    as the gateway signs one: (status, JSON body or None, headers), for expect."""
    body = "&".join("%s=%s" % kv for kv in fields.items())
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret, ("%d." % t).encode() + body.encode(), hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("POST", "/v1/gateway/callbacks", body,
                     {"Content-Type": "application/x-www-form-urlencoded",
                      "Coffer-Signature": "t=%d,v1=%s" % (t, mac)})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None, resp.headers
    finally:
        conn.close()
