#!/usr/bin/env python3
"""test_freeze.py - freezing and unfreezing customers' and merchants' accounts end to end over
HTTP: a risk analyst freezes a customer with money in two currencies (every wallet frozen in the
ledger), who then cannot send, pay, withdraw or convert (the ledger refuses: account_frozen,
nothing moves, the operation is recorded failed and its problem never shows the staff reason),
but still receives a send (blocks_incoming false), in a new currency too (the wallet is opened
frozen); blocks_incoming refuses sends, top-ups, refunds and request payments to the party
before anything is recorded; unfreezing restores everything. A frozen merchant is paid but
cannot pay out or refund. Replays with the same key, a second freeze (409), an unfreeze of a
party not frozen (409), unknown parties (404), malformed reasons (400), customers, merchants and
support writing (403), support and auditors reading, the list and its cursor, the audit lines
(risk.freeze, risk.unfreeze: never the reason), the server's freeze_blocks_incoming default,
concurrent freezes of one party (one wins), and `coffer verify` after every test.

Usage: test_freeze.py --bin build/coffer --src . [test names...]
"""

import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import IBAN, call, customer, email, expect, fund, merchant, pay, qr  # noqa: E402

ENV = {"COFFER_CURRENCIES": "USD,EUR,GBP", "COFFER_SANDBOX_LATENCY_MS": "50",
       "COFFER_FX_SPREAD_BPS": "0",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
REASON = "Chargebacks on three cards within an hour; customer says her phone was stolen"
SECRET_WORD = "chargebacks"  # a word of REASON that must never leave the staff routes
NOBODY = "usr_0000000000001"


def shared(ctx):
    return ph.shared(ctx, ENV)


def staff(srv, role):
    return ih.create_staff(srv.port, srv.token, email(role), role)


def freeze(srv, token, party, reason=REASON, blocks=None, key=None, body=None):
    if body is None:
        body = {"reason": reason}
        if blocks is not None:
            body["blocks_incoming"] = blocks
    return call(srv, "POST", "/v1/risk/parties/%s/freeze" % party, body, token=token,
                key=key or new_key("frz"))


def unfreeze(srv, token, party, reason="Cards returned by the bank; cleared", key=None):
    return call(srv, "POST", "/v1/risk/parties/%s/unfreeze" % party, {"reason": reason},
                token=token, key=key or new_key("ufz"))


def freeze_view(srv, token, party):
    return expect(call(srv, "GET", "/v1/risk/parties/%s/freeze" % party, token=token), 200,
                  what="freeze view")


def wallets(srv, cust):
    """The customer's wallets as they see them: currency -> account."""
    got = expect(call(srv, "GET", "/v1/me/accounts", token=cust.token), 200, what="my accounts")
    return {a["currency"]: a for a in got["data"]}


def ledger(srv, acct):
    return srv.client().account(acct)


def send(srv, frm, to, amount, currency="USD"):
    """A send, with a step-up (bound to the recipient's login, amount and currency) only when
    the server asks for one: codes sent to one login are limited per hour."""
    body = {"to": to.login, "amount_minor": amount, "currency": currency}
    res = call(srv, "POST", "/v1/me/sends", body, token=frm.token, key=new_key("snd"))
    if res[0] != 403 or res[1].get("code") != "step_up_required":
        return res
    v = ih.step_up(srv.port, frm.token, "send", admin_token=srv.token, login=frm.login,
                   amount_minor=amount, currency=currency, payee=to.login)
    return call(srv, "POST", "/v1/me/sends", dict(body, verification=v), token=frm.token,
                key=new_key("snd"))


def convert(srv, cust, frm, to, amount):
    q = expect(call(srv, "POST", "/v1/me/conversions/quote",
                    {"from_currency": frm, "to_currency": to, "amount_minor": amount},
                    token=cust.token), 200, what="conversion quote")
    return call(srv, "POST", "/v1/me/conversions", {"quote_id": q["quote_id"]}, token=cust.token,
                key=new_key("cnv"))


def withdraw(srv, cust, amount, currency="USD"):
    v = ih.step_up(srv.port, cust.token, "withdrawal", admin_token=srv.token, login=cust.login,
                   amount_minor=amount, currency=currency, payee=IBAN)
    return call(srv, "POST", "/v1/me/withdrawals",
                {"amount_minor": amount, "currency": currency, "bank_account": IBAN,
                 "verification": v}, token=cust.token, key=new_key("wdr"))


def activity(srv, token):
    return expect(call(srv, "GET", "/v1/me/activity?limit=100", token=token), 200)["data"]


def audit(srv, action, target):
    q = urllib.parse.urlencode({"action": action, "target": target})
    return expect(call(srv, "GET", "/v1/audit?" + q, token=srv.token), 200, what="audit")["data"]


def refused_frozen(res, what):
    """A 422 account_frozen whose problem says nothing of the staff's reason."""
    body = expect(res, 422, "account_frozen", what)
    check(SECRET_WORD not in str(body).lower(), "%s: the reason leaked: %s" % (what, body))
    return body


# ------------------------------------------------------------------------------------------------


def test_customer_freeze(ctx):
    """A frozen customer keeps receiving but cannot move money out, in any currency; a wallet
    opened while frozen is frozen; unfreezing restores it all; every change is audited."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    alice, bob = customer(srv, "Alice Frost"), customer(srv, "Bob Payer")
    a_usd = fund(srv, alice.token, 10000, "USD")
    a_eur = fund(srv, alice.token, 5000, "EUR")
    fund(srv, bob.token, 3000, "USD")
    fund(srv, bob.token, 900, "GBP")
    m = merchant(srv, fee_bps=0, name="Frost Cafe")
    expect(call(srv, "POST", "/v1/admin/rates", {"base": "EUR", "quote": "USD", "rate": "1"},
                token=srv.token), 200, what="a rate")

    key = new_key("frz")
    got = expect(freeze(srv, risk.token, alice.user_id, key=key), 200, what="freeze")
    check_eq((got["party"], got["frozen"], got["freeze"]["type"], got["freeze"]["by"],
              got["freeze"]["blocks_incoming"], got["freeze"]["reason"]),
             (alice.user_id, True, "freeze", risk.user_id, False, REASON), "the freeze")
    check_eq(sorted((a["id"], a["frozen"]) for a in got["accounts"]),
             sorted([(a_usd, True), (a_eur, True)]), "both wallets frozen")
    for acct in (a_usd, a_eur):
        check_eq(ledger(srv, acct)["frozen"], True, "the ledger's flag on " + acct)
    again = expect(freeze(srv, risk.token, alice.user_id, key=key), 200, what="replay")
    check_eq(again["freeze"]["id"], got["freeze"]["id"], "a replay answers the same freeze")
    body = expect(freeze(srv, risk.token, alice.user_id, reason="again"), 409, "conflict",
                  "a second freeze")
    check("frozen already" in body.get("detail", ""), "the conflict says why: %s" % body)

    # out: the ledger refuses, the operation is failed, nothing moves
    before = activity(srv, alice.token)
    refused_frozen(send(srv, alice, bob, 100), "a frozen customer's send")
    refused_frozen(pay(srv, alice.token, qr(srv, m, amount_minor=250)["payload"]),
                   "a frozen customer's payment")
    refused_frozen(withdraw(srv, alice, 100), "a frozen customer's withdrawal")
    refused_frozen(convert(srv, alice, "EUR", "USD", 1000), "a frozen customer's conversion")
    after = activity(srv, alice.token)
    ops = after[:len(after) - len(before)]  # newest first
    check_eq(sorted((o["type"], o["status"], o.get("error")) for o in ops),
             sorted([("send", "failed", "account_frozen"),
                     ("payment", "failed", "account_frozen"),
                     ("withdrawal", "failed", "account_frozen"),
                     ("conversion", "failed", "account_frozen")]), "the refused operations")
    check_eq((ledger(srv, a_usd)["balance"], ledger(srv, a_eur)["balance"]), (10000, 5000),
             "nothing left the frozen wallets")
    check_eq(ledger(srv, m["account"])["balance"], 0, "the merchant got nothing")

    # in: a send still arrives, in a new currency too (the wallet is opened frozen)
    expect(send(srv, bob, alice, 500), 201, what="a send to a frozen customer")
    expect(send(srv, bob, alice, 200, "GBP"), 201, what="a send in a currency alice lacks")
    mine = wallets(srv, alice)
    check_eq((mine["USD"]["balance"], mine["GBP"]["balance"], mine["GBP"]["frozen"]),
             (10500, 200, True), "received, and the new GBP wallet is frozen")
    refused_frozen(send(srv, alice, bob, 50, "GBP"), "a send from the new wallet")
    view = freeze_view(srv, risk.token, alice.user_id)
    check_eq(len(view["accounts"]), 3, "the view lists the new wallet")
    check(all(a["frozen"] for a in view["accounts"]), "all three frozen: %s" % view["accounts"])

    # unfreeze: everything works again
    ukey = new_key("ufz")
    un = expect(unfreeze(srv, risk.token, alice.user_id, key=ukey), 200, what="unfreeze")
    check_eq((un["frozen"], un["unfreeze"]["type"], un["unfreeze"]["freeze_id"]),
             (False, "unfreeze", got["freeze"]["id"]), "the unfreeze")
    check(not any(a["frozen"] for a in un["accounts"]), "every wallet open: %s" % un["accounts"])
    check_eq(expect(unfreeze(srv, risk.token, alice.user_id, key=ukey), 200)["unfreeze"]["id"],
             un["unfreeze"]["id"], "an unfreeze replayed")
    expect(unfreeze(srv, risk.token, alice.user_id), 409, "conflict", "unfreezing an unfrozen")
    expect(send(srv, alice, bob, 100), 201, what="a send after the unfreeze")
    expect(send(srv, alice, bob, 50, "GBP"), 201, what="a send from the GBP wallet")
    expect(convert(srv, alice, "EUR", "USD", 1000), 201, what="a conversion after the unfreeze")
    check_eq(ledger(srv, a_usd)["balance"], 10500 - 100 + 1000, "the USD wallet after it")
    check_eq(ledger(srv, a_eur)["balance"], 4000, "the EUR wallet after it")

    # staff see the history with the reasons; the audit has the lines without them
    view = freeze_view(srv, risk.token, alice.user_id)
    check_eq((view["frozen"], view["freeze"], [e["type"] for e in view["history"]]),
             (False, None, ["unfreeze", "freeze"]), "the history")
    check_eq(view["history"][1]["reason"], REASON, "the freeze's reason, for staff")
    for action, event in (("risk.freeze", got["freeze"]), ("risk.unfreeze", un["unfreeze"])):
        lines = audit(srv, action, alice.user_id)
        check_eq(len(lines), 1, "one %s line" % action)
        check_eq((lines[0]["actor"], lines[0]["outcome"]), (risk.user_id, "ok"), action)
        check(event["id"] in lines[0]["detail"], "%s names its event" % action)
        check(SECRET_WORD not in str(lines).lower() and "cleared" not in str(lines).lower(),
              "no reason in the audit: %s" % lines)
    deadline = time.monotonic() + 5  # reads are audited through the background queue
    while len(audit(srv, "staff.risk.freeze_view", alice.user_id)) < 2 and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    check_eq(len(audit(srv, "staff.risk.freeze_view", alice.user_id)), 2, "the reads are audited")
    srv.check_verify()


def test_blocks_incoming(ctx):
    """With blocks_incoming nothing reaches the party: sends, top-ups, refunds and request
    payments are refused before anything is recorded; the unfreeze lifts it."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    carol, dave = customer(srv, "Carol Blocked"), customer(srv, "Dave Sender")
    c_usd = fund(srv, carol.token, 2000)
    fund(srv, dave.token, 5000)
    m = merchant(srv, fee_bps=0, name="Blocked Books")
    paid = expect(pay(srv, carol.token, qr(srv, m, amount_minor=300)["payload"]), 201)
    asked = expect(call(srv, "POST", "/v1/me/requests",
                        {"from": dave.login, "amount_minor": 400, "currency": "USD"},
                        token=carol.token), 201, what="carol asks dave")

    got = expect(freeze(srv, risk.token, carol.user_id, blocks=True), 200, what="freeze")
    check_eq(got["freeze"]["blocks_incoming"], True, "blocks incoming")
    d_before, c_before = activity(srv, dave.token), activity(srv, carol.token)
    refused_frozen(send(srv, dave, carol, 100), "a send to a party that takes nothing")
    refused_frozen(ph.topup(srv, carol, 100, bank=IBAN), "a top-up of that party")
    refused_frozen(call(srv, "POST", "/v1/merchant/payments/%s/refund" % paid["id"], {},
                        token=m["token"], key=new_key("rfd")), "a refund to that party")
    refused_frozen(call(srv, "POST", "/v1/me/requests/%s/pay" % asked["id"], None,
                        token=dave.token, key=new_key("rqp")), "paying that party's request")
    check_eq(activity(srv, dave.token), d_before, "nothing was recorded for the payer")
    check_eq(activity(srv, carol.token), c_before, "nothing was recorded for the payee")
    check_eq(ledger(srv, c_usd)["balance"], 1700, "nothing arrived")
    check_eq(ledger(srv, m["account"])["balance"], 300, "the refund did not leave")

    expect(unfreeze(srv, risk.token, carol.user_id), 200, what="unfreeze")
    expect(send(srv, dave, carol, 100), 201, what="a send after the unfreeze")
    expect(call(srv, "POST", "/v1/me/requests/%s/pay" % asked["id"], None, token=dave.token,
                key=new_key("rqp")), 201, what="the request paid after the unfreeze")
    expect(call(srv, "POST", "/v1/merchant/payments/%s/refund" % paid["id"], {},
                token=m["token"], key=new_key("rfd")), 201, what="the refund after it")
    check_eq(ledger(srv, c_usd)["balance"], 1700 + 100 + 400 + 300, "everything arrived")
    srv.check_verify()


def test_merchant_freeze(ctx):
    """A frozen merchant is still paid (its fee-free payments) but cannot pay out or refund; a
    merchant charging a fee cannot be paid either (the fee leaves its account); a merchant
    without a payment profile cannot be frozen."""
    srv = shared(ctx)
    admin = srv.token
    cust = customer(srv, "Mia Merchantpayer")
    fund(srv, cust.token, 10000)
    m = merchant(srv, fee_bps=0, name="Frozen Fish")
    paid = expect(pay(srv, cust.token, qr(srv, m, amount_minor=1500)["payload"]), 201)

    got = expect(freeze(srv, admin, m["id"], reason="Sanctions list hit, pending review"), 200,
                 what="an admin freezes a merchant")
    check_eq([(a["id"], a["frozen"]) for a in got["accounts"]], [(m["account"], True)],
             "the merchant's account")
    refused_frozen(call(srv, "POST", "/v1/merchant/payouts", {}, token=m["token"],
                        key=new_key("pyo")), "a frozen merchant's payout")
    refused_frozen(call(srv, "POST", "/v1/merchant/payments/%s/refund" % paid["id"], {},
                        token=m["token"], key=new_key("rfd")), "a frozen merchant's refund")
    expect(pay(srv, cust.token, qr(srv, m, amount_minor=500)["payload"]), 201,
           what="paying a frozen merchant")
    check_eq(ledger(srv, m["account"])["balance"], 2000, "paid in, nothing out")

    fee_m = merchant(srv, fee_bps=100, name="Fee Frost")
    expect(freeze(srv, admin, fee_m["id"]), 200)
    refused_frozen(pay(srv, cust.token, qr(srv, fee_m, amount_minor=500)["payload"]),
                   "paying a frozen merchant whose fee leaves its account")

    made = expect(call(srv, "POST", "/v1/admin/merchants",
                       {"legal_name": "Not Yet Ltd", "display_name": "Not Yet",
                        "owner": {"login": email("ny"), "password": ph.PASSWORD, "name": "N"}},
                       token=admin), 201)
    body = expect(freeze(srv, admin, made["merchant_id"]), 409, "conflict",
                  "a merchant without a payment profile")
    check("payment profile" in body.get("detail", ""), "the detail says why: %s" % body)

    expect(unfreeze(srv, admin, m["id"]), 200, what="unfreeze")
    expect(call(srv, "POST", "/v1/merchant/payouts", {}, token=m["token"], key=new_key("pyo")),
           201, what="the payout after the unfreeze")
    check_eq(ledger(srv, m["account"])["balance"], 0, "paid out")
    srv.check_verify()


def test_access_and_input(ctx):
    """Only risk and admin write; support and auditors read; customers and merchants neither;
    unknown parties are 404; reasons and bodies are checked strictly."""
    srv = shared(ctx)
    risk, support, auditor = staff(srv, "risk"), staff(srv, "support"), staff(srv, "auditor")
    cust, other = customer(srv, "Cora Access"), customer(srv, "Otto Other")
    m = merchant(srv, name="Access Arcade")
    party = cust.user_id
    for who, what in ((cust.token, "the customer herself"), (other.token, "another customer"),
                      (m["token"], "a merchant"), (support.token, "support"),
                      (auditor.token, "an auditor")):
        expect(freeze(srv, who, party), 403, "forbidden", "%s freezing" % what)
        expect(unfreeze(srv, who, party), 403, "forbidden", "%s unfreezing" % what)
    for who, what in ((cust.token, "the customer"), (m["token"], "a merchant")):
        expect(call(srv, "GET", "/v1/risk/parties/%s/freeze" % party, token=who), 403,
               "forbidden", "%s reading" % what)
        expect(call(srv, "GET", "/v1/risk/freezes", token=who), 403, "forbidden", what)
    for bad in (NOBODY, "mer_0000000000001", risk.user_id, "acct_0000000000001", "nobody"):
        expect(freeze(srv, risk.token, bad), 404, "not_found", "freezing %s" % bad)
        expect(call(srv, "GET", "/v1/risk/parties/%s/freeze" % bad, token=risk.token), 404,
               "not_found", "reading %s" % bad)

    cases = (({}, 400, "missing_field", "reason"),
             ({"reason": ""}, 400, "invalid_field", "reason: 1 to 500 characters"),
             ({"reason": "x" * 501}, 400, "invalid_field", "reason: 1 to 500 characters"),
             ({"reason": "é" * 501}, 400, "invalid_field", "reason: 1 to 500 characters"),
             ({"reason": "bell\u0007"}, 400, "invalid_field", "reason: no control characters"),
             ({"reason": 7}, 400, "invalid_field", None),
             ({"reason": "ok", "blocks_incoming": "yes"}, 400, "invalid_field", "blocks_incoming"),
             ({"reason": "ok", "note": "x"}, 400, "unknown_field", "note"))
    for body, status, code, detail in cases:
        got = expect(freeze(srv, risk.token, party, body=body), status, code, "body %s" % body)
        if detail is not None:
            check_eq(got.get("detail"), detail, "the detail of %s" % str(body)[:40])
    expect(call(srv, "POST", "/v1/risk/parties/%s/freeze" % party, {"reason": "ok"},
                token=risk.token), 400, "idempotency_key_missing", "no key")
    expect(call(srv, "POST", "/v1/risk/parties/%s/unfreeze" % party, {"reason": "ok",
                                                                       "blocks_incoming": True},
                token=risk.token, key=new_key()), 400, "unknown_field", "unfreeze's fields")
    check_eq(freeze_view(srv, risk.token, party)["history"], [], "the refusals recorded nothing")

    key = new_key("frz")
    long_reason = "é" * 500  # 500 characters of two bytes: allowed
    expect(freeze(srv, risk.token, party, reason=long_reason, key=key), 200, what="500 chars")
    expect(freeze(srv, risk.token, party, reason="another text", key=key), 422,
           "idempotency_key_reused", "the key with another body")
    expect(freeze(srv, risk.token, other.user_id, reason=long_reason, key=key), 422,
           "idempotency_key_reused", "the key for another party")
    for who in (support.token, auditor.token, risk.token, srv.token):
        view = freeze_view(srv, who, party)
        check_eq((view["frozen"], view["freeze"]["reason"]), (True, long_reason), "staff read")
    expect(unfreeze(srv, risk.token, party, reason="x" * 501), 400, "invalid_field")
    expect(unfreeze(srv, risk.token, party), 200, what="unfreeze")
    srv.check_verify()


def test_list(ctx):
    """GET /v1/risk/freezes pages through the current freezes, newest first, without reasons."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    people = [customer(srv, "List Person %d" % i) for i in range(5)]
    for p in people:
        expect(freeze(srv, risk.token, p.user_id), 200)
    expect(unfreeze(srv, risk.token, people[1].user_id), 200)
    seen, cursor = [], None
    while True:
        q = "?limit=2" + ("&cursor=" + cursor if cursor else "")
        page = expect(call(srv, "GET", "/v1/risk/freezes" + q, token=risk.token), 200)
        check(len(page["data"]) <= 2, "a page holds at most the limit")
        for item in page["data"]:
            check("reason" not in item, "the list shows no reason: %s" % item)
            check_eq(item["type"], "freeze", "a list item is a freeze")
        seen += [i["party"] for i in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [p for p in seen if p in {x.user_id for x in people}]
    want = [p.user_id for p in reversed(people) if p is not people[1]]
    check_eq(mine, want, "newest first, each once, the unfrozen one absent")
    expect(call(srv, "GET", "/v1/risk/freezes?limit=101", token=risk.token), 400,
           "invalid_page_size")
    expect(call(srv, "GET", "/v1/risk/freezes?cursor=!!", token=risk.token), 400,
           "invalid_cursor")
    for p in people:
        if p is not people[1]:
            expect(unfreeze(srv, risk.token, p.user_id), 200)
    srv.check_verify()


def test_concurrent_freezes(ctx):
    """Six analysts freezing one customer at once: one freeze, five conflicts, every wallet
    frozen; then six unfreezing at once: one unfreeze, every wallet open."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    cust = customer(srv, "Rita Race")
    accts = [fund(srv, cust.token, 100, c) for c in ("USD", "EUR", "GBP")]
    for path, ok_what in (("freeze", "freeze"), ("unfreeze", "unfreeze")):
        results = [None] * 6

        def run(i):
            results[i] = call(srv, "POST", "/v1/risk/parties/%s/%s" % (cust.user_id, path),
                              {"reason": "race %d" % i}, token=risk.token, key=new_key("race"))

        harness.run_threads(6, run)
        statuses = sorted(r[0] for r in results)
        check_eq(statuses, [200] + [409] * 5, "one %s wins" % ok_what)
        frozen = path == "freeze"
        for acct in accts:
            check_eq(ledger(srv, acct)["frozen"], frozen, "%s after the %s race" % (acct, path))
    check_eq(len(freeze_view(srv, risk.token, cust.user_id)["history"]), 2, "two events")
    srv.check_verify()


def test_default_blocks_incoming(ctx):
    """freeze_blocks_incoming = 1 makes a freeze without the field block incoming money; the
    field still decides when given."""
    srv = harness.Server(ctx.bin, env=dict(ENV, COFFER_FREEZE_BLOCKS_INCOMING="1")).start()
    a, b = customer(srv, "Default Dana"), customer(srv, "Default Dora")
    fund(srv, b.token, 1000)
    got = expect(freeze(srv, srv.token, a.user_id), 200)
    check_eq(got["freeze"]["blocks_incoming"], True, "the server's default")
    refused_frozen(send(srv, b, a, 10), "a send to a party frozen by default")
    expect(unfreeze(srv, srv.token, a.user_id), 200)
    got = expect(freeze(srv, srv.token, a.user_id, blocks=False), 200)
    check_eq(got["freeze"]["blocks_incoming"], False, "the request's choice")
    expect(send(srv, b, a, 10), 201, what="a send the freeze lets in")
    srv.check_verify()


TESTS = [
    test_customer_freeze,
    test_blocks_incoming,
    test_merchant_freeze,
    test_access_and_input,
    test_list,
    test_concurrent_freezes,
    test_default_blocks_incoming,
]

if __name__ == "__main__":
    harness.main(TESTS)
