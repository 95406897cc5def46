#!/usr/bin/env python3
"""test_review_gateway.py - review for movements through the gateway, and scored refunds, end to
end over HTTP.

A merchant payout a `review` rule matches is `pending` with its money held on its way out and
the gateway is not asked (no gateway reference, and a signed callback for it changes nothing,
nor does a restart); an analyst approves (paid out, once, however often the decision is
repeated) or declines (the money is available again, `risk_blocked`). A top-up from a saved
card under review is `pending` with nothing held and the card not charged (a card the gateway
would decline stays pending); approve charges it (3-D Secure goes to the customer), decline
moves nothing. A top-up from or a withdrawal to a bank account waits the same way, its account
kept sealed with the operation until the decision uses or drops it. Refunds are scored under the merchant: a block rule refuses
one (nothing recorded, nothing reserved), so does a challenge (the route offers no step-up),
a review rule holds the merchant's amount less the
fee share it gets back; decline makes the amount refundable again, approve pays the customer.
Support, customers and merchants cannot decide. `coffer verify` after every test.

Usage: test_review_gateway.py --bin build/coffer --src . [test names...]
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import IBAN, add_card_id, call, customer, expect, fund, pay, qr, topup  # noqa: E402

ENV = {"COFFER_CURRENCIES": "USD", "COFFER_DEFAULT_CURRENCY": "USD",
       "COFFER_SANDBOX_LATENCY_MS": "10", "COFFER_STEP_UP_AMOUNT_MINOR": "1000000",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
SECRET = ENV["COFFER_GATEWAY_SECRET"].encode()
RUN = "%06d" % random.randrange(10**6)
CARD_OK, CARD_DECLINED, CARD_3DS = "4242424242424242", "4000000000000002", "4000000000003220"


def shared(ctx):
    return ph.shared(ctx, ENV)


def analyst(srv):
    if not hasattr(srv, "_analyst"):
        srv._analyst = ih.create_staff(srv.port, srv.token, "gwrisk%s@example.test" % RUN, "risk")
    return srv._analyst


def rule(srv, rule_id, condition, action):
    expect(call(srv, "POST", "/v1/risk/rules",
                {"id": rule_id + RUN, "condition": condition, "action": action,
                 "reason": "manual_check"}, token=analyst(srv).token, key=new_key("rule")),
           201, what="rule %s" % rule_id)


def drop(srv, rule_id):
    expect(call(srv, "POST", "/v1/risk/rules/%s/delete" % (rule_id + RUN),
                token=analyst(srv).token, key=new_key("rule")), 200, what="rule delete")


def decide(srv, op_id, decision, token=None, key=None):
    return call(srv, "POST", "/v1/risk/reviews/%s/decision" % op_id,
                {"decision": decision, "reason": "checked by hand"},
                token=token or analyst(srv).token, key=key or new_key("rev"))


def review_state(srv, op_id):
    return expect(call(srv, "GET", "/v1/risk/decisions/" + op_id, token=analyst(srv).token),
                  200, what="decision")["review"]


def expect_kept(srv, op_id, want, what):
    """On SQLite: whether the operation keeps a bank account is want, and no database file holds
    the account number in the clear. (On PostgreSQL the answers of the API say the rest.)"""
    if not harness.PG_URL:
        check_eq(bank_kept(srv, op_id), want, what)


def bank_kept(srv, op_id):
    import sqlite3
    path = [os.path.join(srv.data, f) for f in os.listdir(srv.data) if f.endswith(".db")]
    kept = None
    for db in path:
        with open(db, "rb") as f:
            check(IBAN.encode() not in f.read(), "no account number in the clear in %s" % db)
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
        try:
            row = con.execute("SELECT bank_sealed FROM pay_ops WHERE id = ?", (op_id,)).fetchone()
        except sqlite3.OperationalError:
            row = None  # not the payments database
        con.close()
        if row is not None:
            kept = row[0] is not None
    check(kept is not None, "the operation %s is in a database" % op_id)
    return kept


def drop_kept(srv, op_id):
    """On SQLite: the operation keeps no bank account, as after a crash between its record and
    the keep. False on PostgreSQL (not done)."""
    if harness.PG_URL:
        return False
    import sqlite3
    for db in [os.path.join(srv.data, f) for f in os.listdir(srv.data) if f.endswith(".db")]:
        con = sqlite3.connect(db, timeout=30)
        try:
            n = con.execute("UPDATE pay_ops SET bank_sealed = NULL WHERE id = ?", (op_id,)).rowcount
            con.commit()
        except sqlite3.OperationalError:
            n = 0  # not the payments database
        con.close()
        if n == 1:
            return True
    check(False, "the operation %s is in a database" % op_id)
    return False


def account(srv, acct):
    a = srv.client().account(acct)
    return a["balance"], a["available"]


def payout(srv, m, amount, key=None):
    return call(srv, "POST", "/v1/merchant/payouts", {"amount_minor": amount}, token=m["token"],
                key=key or new_key("pyo"))


def test_payout_review(ctx):
    """A payout under review: held, not sent, a forged-by-the-gateway callback and a restart
    change nothing; only the risk team decides; approve pays out once, decline gives back."""
    srv = shared(ctx)
    rule(srv, "payout_review", 'kind == "payout" and amount_minor >= 5000', "review")
    m = ph.merchant(srv, name="Review Payouts", fee_bps=0)
    cust = customer(srv, "Paula Payer")
    fund(srv, cust.token, 20000)
    expect(pay(srv, cust.token, qr(srv, m, amount_minor=12000)["payload"]), 201)
    held = expect(payout(srv, m, 5000), 202, what="a payout under review")
    check_eq(held["status"], "pending", "held for an analyst")
    check("gateway_reference" not in held, "the gateway was not asked: %s" % held)
    check_eq(account(srv, m["account"]), (12000, 7000), "the payout's money is held")
    check_eq(review_state(srv, held["id"]), "pending", "waiting in the decision log")

    # a callback the gateway signed for it (it never asked): ignored
    got = expect(ph.callback(srv, SECRET, {"event_id": "evt_rv%s" % RUN, "op_id": held["id"],
                                           "reference": "sbx_forged", "outcome": "approved",
                                           "amount_minor": "5000", "currency": "USD",
                                           "created_at": str(int(time.time()))}),
                 200, what="a callback for it")
    check_eq(got["status"], "ignored", "the callback changed nothing")
    srv.restart()  # recovery at start must not send it either
    got = expect(call(srv, "GET", "/v1/merchant/activity", token=m["token"]), 200)["data"]
    mine = [o for o in got if o["id"] == held["id"]]
    check(len(mine) == 1 and mine[0]["status"] == "pending" and
          "gateway_reference" not in mine[0], "still pending and unsent: %s" % mine)
    check_eq(account(srv, m["account"]), (12000, 7000), "still held")

    support = ih.create_staff(srv.port, srv.token, "gwsup%s@example.test" % RUN, "support")
    for who, token in (("support", support.token), ("a customer", cust.token),
                       ("the merchant", m["token"])):
        expect(decide(srv, held["id"], "approve", token=token), 403, "forbidden",
               "%s deciding" % who)
    expect(call(srv, "POST", "/v1/risk/reviews/%s/decision" % held["id"],
                {"decision": "approve", "reason": "x", "extra": 1}, token=analyst(srv).token,
                key=new_key("rev")), 400, what="an unknown field")
    check_eq(account(srv, m["account"]), (12000, 7000), "refused deciders moved nothing")

    key = new_key("rev")
    ok = expect(decide(srv, held["id"], "approve", key=key), 200, what="approve")
    check_eq(ok["status"], "completed", "paid out")
    check("gateway_reference" in ok, "the gateway was asked once approved")
    check_eq(account(srv, m["account"]), (7000, 7000), "the payout left")
    again = expect(decide(srv, held["id"], "approve", key=key), 200, what="the same request")
    other = expect(decide(srv, held["id"], "approve"), 200, what="the same decision, new key")
    check_eq((again["status"], other["status"], other["gateway_reference"]),
             ("completed", "completed", ok["gateway_reference"]), "repeats answer the same")
    check_eq(account(srv, m["account"]), (7000, 7000), "paid out once")
    expect(decide(srv, held["id"], "decline"), 409, "conflict", "the other decision")

    no = expect(payout(srv, m, 6000), 202, what="another payout under review")
    check_eq(account(srv, m["account"]), (7000, 1000), "held")
    declined = expect(decide(srv, no["id"], "decline"), 200, what="decline")
    check_eq((declined["status"], declined["error"]), ("failed", "risk_blocked"), "declined")
    check("gateway_reference" not in declined, "never sent")
    check_eq(account(srv, m["account"]), (7000, 7000), "the money is available again")
    check_eq(expect(decide(srv, no["id"], "decline"), 200)["status"], "failed",
             "a repeated decline")
    check_eq(review_state(srv, no["id"]), "declined", "the review state")
    small = expect(payout(srv, m, 1000), 201, what="a payout below the rule")
    expect(decide(srv, small["id"], "approve"), 404, "not_found", "not under review")
    drop(srv, "payout_review")
    srv.check_verify()


def test_topup_review(ctx):
    """A top-up from a saved card under review: nothing held, the card not charged; approve
    charges it (a 3-D Secure card asks the customer), decline moves nothing; a bank top-up and
    a withdrawal to a bank account wait too, their account kept sealed until used."""
    srv = shared(ctx)
    rule(srv, "topup_review", 'kind == "topup" and amount_minor >= 7000', "review")
    cust = customer(srv, "Tina Topup")
    acct = ph.wallet(srv, cust.token, "USD")
    ok_card = add_card_id(srv, cust, CARD_OK)
    held = expect(topup(srv, cust, 7000, card=ok_card), 202, what="a top-up under review")
    check_eq(held["status"], "pending", "held for an analyst")
    check("gateway_reference" not in held, "the card was not charged")
    check_eq((account(srv, acct), srv.client().account(acct)["credits_pending"]), ((0, 0), 0),
             "nothing held")
    bad = expect(topup(srv, cust, 7100, card=add_card_id(srv, cust, CARD_DECLINED)), 202,
                 what="a card the gateway would decline, under review")
    check_eq(ph.operation(srv, cust.token, bad["id"])["status"], "pending",
             "not declined: the gateway never saw it")
    key = new_key("rev")
    done = expect(decide(srv, held["id"], "approve", key=key), 200, what="approve")
    check_eq(done["status"], "completed", "charged once approved")
    check_eq(account(srv, acct), (7000, 7000), "credited")
    expect(decide(srv, held["id"], "approve", key=key), 200, what="the same request again")
    check_eq(account(srv, acct), (7000, 7000), "credited once")
    got = expect(decide(srv, bad["id"], "approve"), 200, what="approve the declined card")
    check_eq((got["status"], got["error"]), ("failed", "payment_declined"), "the card's answer")
    no = expect(topup(srv, cust, 8000, card=ok_card), 202)
    declined = expect(decide(srv, no["id"], "decline"), 200, what="decline")
    check_eq((declined["status"], declined["error"]), ("failed", "risk_blocked"), "declined")
    check_eq((account(srv, acct), srv.client().account(acct)["credits_pending"]),
             ((7000, 7000), 0), "nothing moved, nothing held")

    three = expect(topup(srv, cust, 9000, card=add_card_id(srv, cust, CARD_3DS)), 202)
    asked = expect(decide(srv, three["id"], "approve"), 200, what="approve a 3-D Secure card")
    check_eq(asked["status"], "action_required", "the issuer's challenge goes to the customer")
    stranger = customer(srv, "Sam Stranger")
    path = "/v1/me/topups/%s/challenge" % three["id"]
    expect(call(srv, "POST", path, {"code": "123456"}, token=stranger.token), 404, "not_found",
           "someone else's challenge")
    expect(call(srv, "POST", path, {"code": "123456"}, token=cust.token), 201, what="answered")
    check_eq(account(srv, acct), (16000, 16000), "the challenged top-up arrived")

    from_bank = expect(topup(srv, cust, 7000, bank=IBAN), 202, what="a bank top-up under review")
    check_eq(from_bank["status"], "pending", "waits with its account kept sealed")
    expect_kept(srv, from_bank["id"], True, "the account is kept, sealed")
    done = expect(decide(srv, from_bank["id"], "approve"), 200, what="approve the bank top-up")
    check(done["status"] in ("completed", "processing"), "sent once approved: %s" % done)
    expect_kept(srv, from_bank["id"], False, "the account is forgotten once used")
    lost = expect(topup(srv, cust, 7000, bank=IBAN), 202, what="a bank top-up under review")
    if drop_kept(srv, lost["id"]):  # as a crash between its record and the keep leaves it
        expect(decide(srv, lost["id"], "approve"), 409, "conflict", "approve with no account")
        check_eq(review_state(srv, lost["id"]), "pending", "a refused approval is not recorded")
    declined = expect(decide(srv, lost["id"], "decline"), 200, what="decline it instead")
    check_eq((declined["status"], declined["error"]), ("failed", "risk_blocked"), "declined")
    drop(srv, "topup_review")

    rule(srv, "withdrawal_review", 'kind == "withdrawal" and amount_minor >= 3000', "review")
    before = account(srv, acct)

    def withdraw(amount):
        v = ih.step_up(srv.port, cust.token, "withdrawal", admin_token=srv.token,
                       login=cust.login, amount_minor=amount, currency="USD", payee=IBAN)
        return call(srv, "POST", "/v1/me/withdrawals",
                    {"amount_minor": amount, "currency": "USD", "bank_account": IBAN,
                     "verification": v}, token=cust.token, key=new_key("wdr"))
    out = expect(withdraw(3000), 202, what="a withdrawal to a bank account under review")
    check_eq(out["status"], "pending", "held for an analyst")
    check("gateway_reference" not in out, "the bank was not paid")
    check_eq(account(srv, acct), (before[0], before[1] - 3000), "its money held on its way out")
    sent = expect(decide(srv, out["id"], "approve"), 200, what="approve the withdrawal")
    check_eq(sent["status"], "completed", "paid out once approved")
    check_eq(account(srv, acct), (before[0] - 3000, before[1] - 3000), "the money left")
    expect_kept(srv, out["id"], False, "the account is forgotten once used")
    no = expect(withdraw(4000), 202, what="another withdrawal under review")
    declined = expect(decide(srv, no["id"], "decline"), 200, what="decline the withdrawal")
    check_eq((declined["status"], declined["error"]), ("failed", "risk_blocked"), "declined")
    expect_kept(srv, no["id"], False, "a declined one forgets its account")
    check_eq(account(srv, acct), (before[0] - 3000, before[1] - 3000), "the money came back")
    drop(srv, "withdrawal_review")
    srv.check_verify()


def test_refund_scored(ctx):
    """Refunds are scored under the merchant: blocked or challenged (nothing reserved), held
    for review (the merchant's amount less its fee share), declined (refundable again) and
    approved (the customer is paid)."""
    srv = shared(ctx)
    m = ph.merchant(srv, name="Refund Review Shop", fee_bps=200)
    cust = customer(srv, "Rory Refunded")
    acct = fund(srv, cust.token, 10000)
    paid = expect(pay(srv, cust.token, qr(srv, m, amount_minor=5000)["payload"]), 201)
    check_eq(account(srv, m["account"]), (4900, 4900), "the merchant got 5000 less 100 fee")
    path = "/v1/merchant/payments/%s/refund" % paid["id"]
    rule(srv, "refund_block", 'kind == "refund" and amount_minor > 3000', "block")
    rule(srv, "refund_review", 'kind == "refund" and amount_minor == 1500', "review")
    rule(srv, "refund_challenge", 'kind == "refund" and amount_minor == 700', "challenge")

    def refund(amount):
        return call(srv, "POST", path, {"amount_minor": amount}, token=m["token"],
                    key=new_key("rfd"))

    expect(refund(4000), 403, "risk_blocked", "a large refund")
    check_eq(ph.operation(srv, cust.token, paid["id"])["refunded_minor"], 0, "nothing reserved")
    check_eq(account(srv, m["account"]), (4900, 4900), "nothing moved")
    expect(refund(700), 403, "risk_blocked", "a challenge no one here can answer blocks")
    check_eq(ph.operation(srv, cust.token, paid["id"])["refunded_minor"], 0, "nothing reserved")
    blocked = expect(call(srv, "GET", "/v1/risk/decisions?action=block&party=" + m["id"],
                          token=analyst(srv).token), 200)["data"]
    check(len(blocked) == 1 and blocked[0]["kind"] == "refund",
          "the block is logged under the merchant: %s" % blocked)

    held = expect(refund(1500), 202, what="a refund under review")
    check_eq((held["status"], held["fee_minor"]), ("pending", 30), "held, fee share priced")
    check_eq(account(srv, m["account"]), (4900, 4900 - 1470), "the merchant's 1500 less 30 held")
    check(held["id"] not in [o["id"] for o in expect(
        call(srv, "GET", "/v1/me/activity", token=cust.token), 200)["data"]],
        "the customer sees nothing yet")
    check_eq(ph.operation(srv, cust.token, paid["id"])["refunded_minor"], 1500, "reserved")
    declined = expect(decide(srv, held["id"], "decline"), 200, what="decline")
    check_eq((declined["status"], declined["error"]), ("failed", "risk_blocked"), "declined")
    check_eq(ph.operation(srv, cust.token, paid["id"])["refunded_minor"], 0,
             "the declined refund's amount is refundable again")
    check_eq(account(srv, m["account"]), (4900, 4900), "the merchant's money is back")

    again = expect(refund(1500), 202, what="another refund under review")
    key = new_key("rev")
    ok = expect(decide(srv, again["id"], "approve", key=key), 200, what="approve")
    check_eq(ok["status"], "completed", "refunded")
    expect(decide(srv, again["id"], "approve", key=key), 200, what="repeated")
    check_eq(ph.balance(srv, acct), 10000 - 5000 + 1500, "the customer got 1500 once")
    check_eq(account(srv, m["account"]), (3430, 3430), "the merchant paid 1500 less 30")
    expect(refund(3000), 201, what="the rest, below the block rule")
    check_eq((ph.balance(srv, acct), account(srv, m["account"])), (9500, (490, 490)),
             "the payment refunded but 500")
    drop(srv, "refund_block")
    drop(srv, "refund_review")
    drop(srv, "refund_challenge")
    srv.check_verify()


TESTS = [
    test_payout_review,
    test_topup_review,
    test_refund_scored,
]

if __name__ == "__main__":
    harness.main(TESTS)
