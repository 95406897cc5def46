#!/usr/bin/env python3
"""test_max_balance.py - a KYC tier's maximum balance is atomic: the ledger refuses a credit
that would take a capped wallet past it, in the same step as the credit.

With KYC enforcement on and tier 0 capped at 10000 EUR, a customer's wallet holds 6000: five
customers send it 3000 at once and exactly one send completes, the others fail with
limit_exceeded (403) and move nothing; the wallet never passes the cap; a send exactly up to the
cap passes and one more minor unit does not; replaying a refused send answers the same refusal.
Pending inflows count: while a top-up waits for its 3-D Secure challenge (its hold credits the
wallet pending), a send and a second top-up that the stored balance alone would let through
are refused by the ledger and recorded failed with limit_exceeded; answering the challenge
posts the first top-up up to the cap. A top-up beyond the cap is refused and one up to it
passes. A send held for review and approved once the payee is at its cap fails with
limit_exceeded and the payer gets its money back. With enforcement off nothing is capped. `coffer verify` after every test.

Usage: test_max_balance.py --bin build/coffer --src . [test names...]
"""

import concurrent.futures
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import call, expect, balance  # noqa: E402

CAP = 10000
ENV = {"COFFER_CURRENCIES": "EUR", "COFFER_DEFAULT_CURRENCY": "EUR",
       "COFFER_STEP_UP_AMOUNT_MINOR": "1000000",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789",
       "COFFER_KYC_ENFORCE": "1",
       "COFFER_KYC_LIMITS": "tier0 * max_balance=%d single=5000 daily_out=100000 "
                            "monthly_out=1000000" % CAP,
       "COFFER_KYC_FEATURES": "tier0 topup,receive,payment,send"}
CARD_3DS = "4000000000003220"
SENDERS = 5


def shared(ctx):
    return ph.shared(ctx, ENV)


def verification(srv, cust, to_login, amount):
    return ih.step_up(srv.port, cust.token, "send", admin_token=srv.token, login=cust.login,
                      amount_minor=amount, currency="EUR", payee=to_login)


def send(srv, cust, to_login, amount, key=None, v=None):
    body = {"to": to_login, "amount_minor": amount, "currency": "EUR",
            "verification": v or verification(srv, cust, to_login, amount)}
    return call(srv, "POST", "/v1/me/sends", body, token=cust.token, key=key or new_key("snd"))


def topup(srv, cust, amount, card, key=None):
    return call(srv, "POST", "/v1/me/topups",
                {"amount_minor": amount, "currency": "EUR", "card_id": card},
                token=cust.token, key=key or new_key("top"))


def account(srv, acct):
    return srv.client().account(acct)


def activity(srv, cust):
    return expect(call(srv, "GET", "/v1/me/activity", token=cust.token), 200,
                  what="activity")["data"]


def capped_payee(srv, held):
    """A tier-0 customer whose EUR wallet holds `held` (an admin transfer, not capped)."""
    payee = ph.customer(srv, "Rosa Recipient")
    acct = ph.wallet(srv, payee.token, "EUR")
    if held > 0:
        ph.fund_account(srv, acct, held, "EUR")
    return payee, acct


def test_send_race(ctx):
    """Five sends of 3000 at once into a wallet holding 6000 under a cap of 10000: exactly one
    completes; the others answer limit_exceeded and move nothing."""
    srv = shared(ctx)
    payee, acct = capped_payee(srv, 6000)
    senders = [ph.customer(srv, "Sam Sender %d" % i) for i in range(SENDERS)]
    wallets = [ph.fund(srv, s.token, 5000, "EUR") for s in senders]
    # every step-up is answered before the race, so the sends leave together
    vs = [verification(srv, s, payee.login, 3000) for s in senders]
    keys = [new_key("snd") for _ in senders]
    gate = threading.Barrier(SENDERS)

    def go(i):
        gate.wait()
        return send(srv, senders[i], payee.login, 3000, key=keys[i], v=vs[i])
    with concurrent.futures.ThreadPoolExecutor(SENDERS) as pool:
        results = list(pool.map(go, range(SENDERS)))
    statuses = sorted(r[0] for r in results)
    check_eq(statuses, [201] + [403] * (SENDERS - 1), "exactly one send fits under the cap")
    for status, body, _h in results:
        if status == 403:
            check_eq(body.get("code"), "limit_exceeded", "the refusal's code: %s" % body)
    check_eq(balance(srv, acct), 9000, "the wallet took one send")
    check_eq(account(srv, acct)["credits_pending"], 0, "and holds nothing pending")
    winner = [i for i, r in enumerate(results) if r[0] == 201][0]
    fee = results[winner][1]["fee_minor"]
    for i, w in enumerate(wallets):
        check_eq(balance(srv, w), 5000 - 3000 - fee if i == winner else 5000,
                 "sender %d's wallet" % i)

    # a refused send replayed with its key answers the same refusal and moves nothing
    loser = [i for i, r in enumerate(results) if r[0] == 403][0]
    again = send(srv, senders[loser], payee.login, 3000, key=keys[loser], v=vs[loser])
    expect(again, 403, "limit_exceeded", "a refused send replayed")
    won = send(srv, senders[winner], payee.login, 3000, key=keys[winner], v=vs[winner])
    check_eq((won[0], won[1].get("id")), (201, results[winner][1]["id"]),
             "the winner replayed answers its operation")
    check_eq(balance(srv, acct), 9000, "replays credit nothing")

    # up to the cap exactly, then not one minor unit more (one step-up code per send, and a
    # customer gets few an hour: the sends come from different senders)
    losers = [i for i, r in enumerate(results) if r[0] == 403]
    expect(send(srv, senders[losers[0]], payee.login, 1000), 201, what="a send up to the cap")
    check_eq(balance(srv, acct), CAP, "the wallet is at its cap")
    expect(send(srv, senders[losers[1]], payee.login, 1), 403, "limit_exceeded", "one unit over")
    check_eq(balance(srv, acct), CAP, "never above the cap")
    # the capped customer spends and then has room again: the cap is on the balance
    other = ph.customer(srv, "Otto Other")
    expect(send(srv, payee, other.login, 2500), 201, what="the capped customer sends")
    room = CAP - balance(srv, acct)
    check(room >= 2500, "spending made room: %d" % room)
    expect(send(srv, senders[losers[2]], payee.login, room), 201, what="exactly the room again")
    check_eq(balance(srv, acct), CAP, "at the cap again")
    srv.check_verify()


def test_pending_inflow(ctx):
    """A top-up waiting for its challenge holds 3000 pending in a wallet of 6000 under a cap of
    10000: a send of 3000 and a second top-up of 3000 pass the quick check (the stored balance
    has room) but the ledger counts the pending inflow and refuses them (failed,
    limit_exceeded); the first top-up's challenge answered posts it."""
    srv = shared(ctx)
    payee, acct = capped_payee(srv, 6000)
    card = ph.add_card_id(srv, payee, CARD_3DS)
    waiting = expect(topup(srv, payee, 3000, card), 202, what="a top-up waiting for 3-D Secure")
    check_eq(waiting["status"], "action_required", "the challenge is open")
    check_eq((balance(srv, acct), account(srv, acct)["credits_pending"]), (6000, 3000),
             "the hold credits the wallet pending")

    sender = ph.customer(srv, "Sid Sender")
    src = ph.fund(srv, sender.token, 5000, "EUR")
    key = new_key("snd")
    v = verification(srv, sender, payee.login, 3000)
    expect(send(srv, sender, payee.login, 3000, key=key, v=v), 403, "limit_exceeded",
           "a send with the pending top-up counted")
    check_eq(balance(srv, src), 5000, "the refused send moved nothing")
    failed = [o for o in activity(srv, sender) if o["type"] == "send"]
    check_eq([(o["status"], o.get("error")) for o in failed], [("failed", "limit_exceeded")],
             "the ledger refused it: the operation is recorded failed")
    expect(send(srv, sender, payee.login, 3000, key=key, v=v), 403, "limit_exceeded",
           "the refused send replayed")
    check_eq(len([o for o in activity(srv, sender) if o["type"] == "send"]), 1,
             "a replay records nothing new")

    expect(topup(srv, payee, 3000, card), 403, "limit_exceeded",
           "a second top-up with the first one pending")
    tops = [o for o in activity(srv, payee) if o["type"] == "topup"]
    check_eq(sorted((o["status"], o.get("error")) for o in tops),
             [("action_required", None), ("failed", "limit_exceeded")],
             "the second top-up's hold was refused by the ledger")
    check_eq((balance(srv, acct), account(srv, acct)["credits_pending"]), (6000, 3000),
             "nothing more is held")

    expect(call(srv, "POST", "/v1/me/topups/%s/challenge" % waiting["id"], {"code": "123456"},
                token=payee.token), 201, what="the challenge answered")
    check_eq((balance(srv, acct), account(srv, acct)["credits_pending"]), (9000, 0),
             "the first top-up posted")
    srv.check_verify()


def test_topup_beyond_cap(ctx):
    """A top-up that would pass the cap is refused and holds nothing; one up to the cap
    passes; the wallet's owner is the only one who sees either."""
    srv = shared(ctx)
    payee, acct = capped_payee(srv, 6000)
    card = ph.add_card_id(srv, payee, "4242424242424242")
    expect(topup(srv, payee, 4001, card), 403, "limit_exceeded", "a top-up past the cap")
    check_eq((balance(srv, acct), account(srv, acct)["credits_pending"]), (6000, 0),
             "the refused top-up moved and held nothing")
    done = expect(topup(srv, payee, 4000, card), 201, what="a top-up up to the cap")
    check_eq(done["status"], "completed", "the top-up")
    check_eq(balance(srv, acct), CAP, "at the cap")
    stranger = ph.customer(srv, "Eve Stranger")
    expect(call(srv, "GET", "/v1/me/operations/" + done["id"], token=stranger.token), 404,
           "not_found", "someone else's top-up")
    srv.check_verify()


def test_review_approved_past_cap(ctx):
    """A send held for review carries the payee's ceiling on its row: filled up to the cap
    meanwhile, the payee cannot take it when an analyst approves; the send fails with
    limit_exceeded and the payer gets the money back."""
    srv = shared(ctx)
    analyst = ih.create_staff(srv.port, srv.token, ph.email("risk"), "risk")
    rule_id = "review_3333_%s" % ph.RUN
    expect(call(srv, "POST", "/v1/risk/rules",
                {"id": rule_id, "condition": 'kind == "send" and amount_minor == 3333',
                 "action": "review", "reason": "manual_check"}, token=analyst.token,
                key=new_key("rule")), 201, what="a review rule")
    try:
        payee, acct = capped_payee(srv, 6000)
        sender = ph.customer(srv, "Rhea Reviewed")
        src = ph.fund(srv, sender.token, 5000, "EUR")
        held = expect(send(srv, sender, payee.login, 3333), 202, what="a send under review")
        check_eq(held["status"], "pending", "held for an analyst")
        ph.fund_account(srv, acct, 4000, "EUR")  # the wallet reaches its cap meanwhile
        got = expect(call(srv, "POST", "/v1/risk/reviews/%s/decision" % held["id"],
                          {"decision": "approve", "reason": "known customer"},
                          token=analyst.token, key=new_key("rev")), 200, what="approve")
        check_eq((got["status"], got.get("error")), ("failed", "limit_exceeded"),
                 "the ledger refused the approved send")
        check_eq(balance(srv, acct), CAP, "the payee took nothing past the cap")
        check_eq((balance(srv, src), account(srv, src)["available"]), (5000, 5000),
                 "the payer got the money back")
    finally:
        expect(call(srv, "POST", "/v1/risk/rules/%s/delete" % rule_id, token=analyst.token,
                    key=new_key("rule")), 200, what="rule delete")
    srv.check_verify()


def test_kyc_off_uncapped(ctx):
    """With KYC enforcement off there is no ceiling: a wallet takes a send past the tier's
    maximum balance."""
    env = dict(ENV, COFFER_KYC_ENFORCE="0")
    srv = harness.Server(ctx.bin, env=env).start()
    try:
        payee, acct = capped_payee(srv, 9000)
        sender = ph.customer(srv, "Una Uncapped")
        ph.fund(srv, sender.token, 5000, "EUR")
        expect(send(srv, sender, payee.login, 3000), 201, what="a send past the tier's cap")
        check_eq(balance(srv, acct), 12000, "no ceiling without enforcement")
        srv.check_verify()
    finally:
        srv.stop()


TESTS = [
    test_send_race,
    test_pending_inflow,
    test_topup_beyond_cap,
    test_review_approved_past_cap,
    test_kyc_off_uncapped,
]

if __name__ == "__main__":
    harness.main(TESTS)
