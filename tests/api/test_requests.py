#!/usr/bin/env python3
"""test_requests.py - payment requests and bill splits end to end over HTTP: a customer asks
another for money (a phone, an email or a handle), sees the payer's masked name only; the payer
sees the requester, the fee and the total, and pays (a send with the send fee, above the step-up
amount only with a verification bound to it), declines, or lets it expire; the requester
cancels. Splits share a total exactly. Then as an attacker: other people's requests, the wrong
party, replays, concurrent payments of one request (one payment), payments racing a cancel,
payments after a decline, a cancel or the expiry, malformed input; and kill -9 while payments
race (each request still paid at most once, every key answering as before). `coffer verify`
after each.

Usage: test_requests.py --bin build/coffer --src . [test names...]
"""

import concurrent.futures
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import RUN, call, email, expect  # noqa: E402

STEP_UP = 50000
ENV = {"COFFER_CURRENCIES": "USD,EUR", "COFFER_SEND_FEE_BPS": "100",
       "COFFER_SEND_FEE_FIXED_MINOR": "5", "COFFER_STEP_UP_AMOUNT_MINOR": str(STEP_UP)}


def shared(ctx):
    return ph.shared(ctx, ENV)


class Customer:
    def __init__(self, c, account):
        self.user_id, self.token, self.login = c.user_id, c.token, c.login
        self.account = account  # the USD wallet


def customer(srv, name="Carla Customer", login=None, balance=0):
    """A customer with a USD wallet holding balance (moved from an admin funding account)."""
    c = ih.register_customer(srv.port, srv.token, login or email("cust"), name=name)
    cust = Customer(c, ph.wallet(srv, c.token))
    if balance:
        fund(srv, cust, balance)
    return cust


def fund(srv, cust, amount):
    ph.fund_account(srv, cust.account, amount, "USD")


def balance(srv, cust):
    return ph.balance(srv, cust.account)


def fee_of(amount):
    """The send fee of ENV (money/fee.h): 100 bps rounded half up, 5 fixed, at most the
    amount."""
    return min((amount * 100 + 5000) // 10000 + 5, amount)


def ask(srv, who, frm, amount, currency="USD", **extra):
    body = dict({"from": frm, "amount_minor": amount, "currency": currency}, **extra)
    return call(srv, "POST", "/v1/me/requests", body, token=who.token)


def asked(srv, who, frm, amount, **extra):
    return expect(ask(srv, who, frm, amount, **extra), 201, what="request")


def pay(srv, who, req_id, key=None, body=None):
    return call(srv, "POST", "/v1/me/requests/%s/pay" % req_id, body, token=who.token,
                key=key or new_key("rqp"))


def get(srv, who, req_id):
    return call(srv, "GET", "/v1/me/requests/" + req_id, token=who.token)


def status_of(srv, who, req_id):
    return expect(get(srv, who, req_id), 200, what="request read")["status"]


def listing(srv, who, query=""):
    return expect(call(srv, "GET", "/v1/me/requests" + query, token=who.token), 200,
                  what="list " + query)


def split(srv, who, people, total, currency="USD", **extra):
    body = dict({"participants": people, "total_minor": total, "currency": currency}, **extra)
    return call(srv, "POST", "/v1/me/requests/split", body, token=who.token)


# ------------------------------------------------------------------------------------------------


def test_request_and_view(ctx):
    """A request to a phone, an email or a handle; what each side sees; bad input refused with
    the field named."""
    srv = shared(ctx)
    alice = customer(srv, name="Alice Smith")
    bob_phone = "+447700900%03d" % random.randrange(1000)
    bob = customer(srv, name="Bob Stone", login=bob_phone)
    handle = "bob%s" % RUN
    expect(call(srv, "POST", "/v1/me/handle", {"handle": handle}, token=bob.token), 200)
    for frm in (bob_phone, bob.login, "@" + handle):
        made = asked(srv, alice, frm, 1500, note="pizza")
        check_eq((made["direction"], made["status"], made["amount_minor"], made["currency"],
                  made["note"], made["payer"]), ("outgoing", "pending", 1500, "USD", "pizza",
                                                 {"name": "B*** S."}), "the request")
        check(made["id"].startswith("req_"), "a request id: %s" % made["id"])
        check(bob.user_id not in str(made) and bob_phone not in str(made)
              and "payment_id" not in made and "fee_minor" not in made,
              "the requester sees the payer's masked name only: %s" % made)
    seen = expect(get(srv, bob, made["id"]), 200)
    check_eq((seen["direction"], seen["requester"], seen["fee_minor"], seen["total_minor"],
              seen["note"]),
             ("incoming", {"id": alice.user_id, "name": "A*** S."}, fee_of(1500),
              1500 + fee_of(1500), "pizza"), "the payer's view")
    check(alice.login not in str(seen), "no login of the requester: %s" % seen)
    check_eq(expect(get(srv, alice, made["id"]), 200), made, "the requester reads it back")
    check(seen["expires_at"] > seen["created_at"], "expires after it was made")

    for body, status, code, detail in (
            ({"from": email("nobody"), "amount_minor": 1, "currency": "USD"}, 404,
             "recipient_not_found", "from"),
            ({"from": alice.login, "amount_minor": 1, "currency": "USD"}, 422, "same_account",
             "from"),
            ({"from": bob.login, "amount_minor": 0, "currency": "USD"}, 400, "invalid_amount",
             "amount_minor"),
            ({"from": bob.login, "amount_minor": -5, "currency": "USD"}, 400, "invalid_amount",
             "amount_minor"),
            ({"from": bob.login, "amount_minor": "5", "currency": "USD"}, 400, "invalid_field",
             "amount_minor"),
            ({"from": bob.login, "amount_minor": 5, "currency": "JPY"}, 400, "unknown_currency",
             "currency"),
            ({"from": bob.login, "amount_minor": 5}, 400, "unknown_currency", "currency"),
            ({"amount_minor": 5, "currency": "USD"}, 400, "missing_field", "from"),
            ({"from": bob.login, "amount_minor": 5, "currency": "USD", "note": "x" * 140}, 400,
             "invalid_field", "note"),
            ({"from": bob.login, "amount_minor": 5, "currency": "USD", "expires_in_s": 0}, 400,
             "invalid_field", "expires_in_s"),
            ({"from": bob.login, "amount_minor": 5, "currency": "USD",
              "expires_in_s": 31 * 86400}, 400, "invalid_field", "expires_in_s"),
            ({"from": bob.login, "amount_minor": 5, "currency": "USD", "payer": "x"}, 400,
             "unknown_field", "payer")):
        got = expect(call(srv, "POST", "/v1/me/requests", body, token=alice.token), status, code,
                     "request %s" % body)
        check_eq(got.get("detail"), detail, "the refused field of %s" % body)
    expect(call(srv, "POST", "/v1/me/requests", [1, 2], token=alice.token), 400, "invalid_json")
    srv.check_verify()


def test_pay(ctx):
    """The payer pays: a send with the fee on top, named after the request; the request is
    paid; a retry answers the same send; nothing is paid twice; the wrong party is refused."""
    srv = shared(ctx)
    alice = customer(srv, name="Alice Payee")
    bob = customer(srv, name="Bob Payer", balance=10000)
    made = asked(srv, alice, bob.login, 2500, note="concert")
    key = new_key("rqp")
    expect(pay(srv, alice, made["id"], key=new_key()), 409, "conflict", "the requester paying")
    sent = expect(pay(srv, bob, made["id"], key=key), 201, what="pay")
    check_eq((sent["type"], sent["status"], sent["direction"], sent["amount_minor"],
              sent["fee_minor"], sent["reference"], sent["counterparty"], sent["note"]),
             ("send", "completed", "out", 2500, fee_of(2500), made["id"], alice.user_id,
              "concert"), "the send that pays it")
    check_eq(balance(srv, bob), 10000 - 2500 - fee_of(2500), "the payer paid amount and fee")
    check_eq(balance(srv, alice), 2500, "the requester got the amount")
    again = expect(pay(srv, bob, made["id"], key=key), 201, what="the same payment again")
    check_eq(again["id"], sent["id"], "a retry answers the first send")
    check_eq(balance(srv, bob), 10000 - 2500 - fee_of(2500), "a retry charges nothing")
    for who in (alice, bob):
        got = expect(get(srv, who, made["id"]), 200)
        check_eq((got["status"], got["payment_id"]), ("paid", sent["id"]),
                 "the paid request as its %s sees it" % ("requester" if who is alice else "payer"))
    check("fee_minor" not in expect(get(srv, bob, made["id"]), 200), "no price on a paid request")
    body = expect(pay(srv, bob, made["id"]), 409, "conflict", "paying twice")
    check_eq(body.get("detail"), "the request is paid", "why")
    expect(call(srv, "POST", "/v1/me/requests/%s/decline" % made["id"], token=bob.token), 409,
           "conflict", "declining a paid request")
    expect(call(srv, "POST", "/v1/me/requests/%s/cancel" % made["id"], token=alice.token), 409,
           "conflict", "cancelling a paid request")
    op = expect(call(srv, "GET", "/v1/me/operations/" + sent["id"], token=alice.token), 200)
    check_eq((op["direction"], op["amount_minor"]), ("in", 2500), "the requester's activity")
    # the key of that payment on another request: refused
    other = asked(srv, alice, bob.login, 100)
    expect(pay(srv, bob, other["id"], key=key), 422, "idempotency_key_reused")
    expect(call(srv, "POST", "/v1/me/requests/%s/pay" % other["id"], token=bob.token), 400,
           "idempotency_key_missing")
    check_eq(expect(pay(srv, bob, other["id"], body={"amount_minor": 1}), 400, "unknown_field")
             .get("detail"), "amount_minor", "an unknown member of a payment")
    check_eq(status_of(srv, bob, other["id"]), "pending", "refused payments change nothing")
    check_eq(balance(srv, bob), 10000 - 2500 - fee_of(2500), "and move nothing")
    srv.check_verify()


def test_insufficient_funds(ctx):
    """A payment the wallet cannot cover fails (422) and the request stays payable."""
    srv = shared(ctx)
    alice = customer(srv)
    poor = customer(srv, balance=300)
    made = asked(srv, alice, poor.login, 400)
    key = new_key("rqp")
    expect(pay(srv, poor, made["id"], key=key), 422, "insufficient_funds", "a payment too big")
    got = expect(get(srv, poor, made["id"]), 200)
    check_eq((got["status"], "payment_id" in got), ("pending", False), "still pending")
    expect(pay(srv, poor, made["id"], key=key), 422, "insufficient_funds", "its retry")
    check_eq(balance(srv, poor), 300, "nothing moved")
    fund(srv, poor, 200)
    sent = expect(pay(srv, poor, made["id"]), 201, what="paid once funded")
    check_eq(balance(srv, poor), 500 - 400 - fee_of(400), "paid once")
    check_eq(status_of(srv, alice, made["id"]), "paid", "then paid")
    check_eq(expect(get(srv, alice, made["id"]), 200)["payment_id"], sent["id"], "by that send")
    srv.check_verify()


def test_concurrent_pays(ctx):
    """Several payments of one request at once, each with its own key: one payment, the others
    409; the payer is charged once. A payment racing a cancel: one of them wins, consistently."""
    srv = shared(ctx)
    alice = customer(srv)
    bob = customer(srv, balance=100000)
    for _ in range(4):
        made = asked(srv, alice, bob.login, 700)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            res = list(pool.map(lambda _i: pay(srv, bob, made["id"]), range(4)))
        codes = sorted(r[0] for r in res)
        check_eq(codes, [201, 409, 409, 409], "four payments of one request")
        for status, body, _h in res:
            if status == 409:
                check_eq(body.get("code"), "conflict", "the losers' code")
    paid = 4 * (700 + fee_of(700))
    check_eq(balance(srv, bob), 100000 - paid, "charged once per request")
    check_eq(balance(srv, alice), 4 * 700, "credited once per request")
    for _ in range(6):
        made = asked(srv, alice, bob.login, 300)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            p = pool.submit(pay, srv, bob, made["id"])
            c = pool.submit(call, srv, "POST", "/v1/me/requests/%s/cancel" % made["id"], None,
                            alice.token)
            ps, cs = p.result()[0], c.result()[0]
        final = status_of(srv, alice, made["id"])
        check((ps, cs, final) in ((201, 409, "paid"), (409, 200, "cancelled")),
              "a payment racing a cancel: pay %d, cancel %d, then %s" % (ps, cs, final))
        if final == "paid":
            paid += 300 + fee_of(300)
    check_eq(balance(srv, bob), 100000 - paid, "the payer paid exactly the paid requests")
    srv.check_verify()


def test_closed_and_expired(ctx):
    """Declined, cancelled and expired requests cannot be paid; each party closes only its own
    side; closing again answers the same."""
    srv = shared(ctx)
    alice = customer(srv)
    bob = customer(srv, balance=5000)
    declined = asked(srv, alice, bob.login, 100)
    path = "/v1/me/requests/%s/" % declined["id"]
    body = expect(call(srv, "POST", path + "decline", token=alice.token), 409, "conflict",
                  "the requester declining")
    check_eq(body.get("detail"), "only the payer can decline a request", "why")
    got = expect(call(srv, "POST", path + "decline", token=bob.token), 200, what="decline")
    check_eq((got["status"], got["direction"]), ("declined", "incoming"), "declined")
    check_eq(expect(call(srv, "POST", path + "decline", {}, token=bob.token), 200)["status"],
             "declined", "declining again")
    check_eq(expect(call(srv, "POST", path + "decline", {"reason": "no"}, token=bob.token), 400,
                    "unknown_field").get("detail"), "reason", "an unknown member of a decline")
    check_eq(expect(pay(srv, bob, declined["id"]), 409, "conflict").get("detail"),
             "the request was declined", "paying a declined request")
    check_eq(expect(call(srv, "POST", path + "cancel", token=alice.token), 409).get("detail"),
             "the request was declined", "cancelling a declined request")

    cancelled = asked(srv, alice, bob.login, 100)
    path = "/v1/me/requests/%s/" % cancelled["id"]
    check_eq(expect(call(srv, "POST", path + "cancel", token=bob.token), 409).get("detail"),
             "only the requester can cancel a request", "the payer cancelling")
    check_eq(expect(call(srv, "POST", path + "cancel", token=alice.token), 200)["status"],
             "cancelled", "cancel")
    check_eq(expect(pay(srv, bob, cancelled["id"]), 409, "conflict").get("detail"),
             "the request was cancelled", "paying a cancelled request")
    expect(call(srv, "POST", path + "decline", token=bob.token), 409, "conflict")

    short = asked(srv, alice, bob.login, 100, expires_in_s=1)
    check_eq(status_of(srv, bob, short["id"]), "pending", "not yet expired")
    time.sleep(1.2)
    check_eq(status_of(srv, bob, short["id"]), "expired", "expired")
    check_eq(expect(pay(srv, bob, short["id"]), 409, "conflict").get("detail"),
             "the request has expired", "paying an expired request")
    expect(call(srv, "POST", "/v1/me/requests/%s/decline" % short["id"], token=bob.token), 409,
           "conflict", "declining an expired request")
    ids = [r["id"] for r in listing(srv, bob, "?status=expired")["data"]]
    check_eq(ids, [short["id"]], "listed as expired")
    check(short["id"] not in [r["id"] for r in listing(srv, bob, "?status=pending")["data"]],
          "not listed as pending")
    check_eq(balance(srv, bob), 5000, "nothing was paid")
    srv.check_verify()


def test_split(ctx):
    """A bill split: one request per participant, the shares add up exactly; refused whole
    when a participant is unknown, listed twice, or the requester."""
    srv = shared(ctx)
    alice = customer(srv, name="Alice Host")
    bob = customer(srv, name="Bob Guest", balance=5000)
    carol = customer(srv, name="Carol Guest", balance=5000)
    got = expect(split(srv, alice, [bob.login, carol.login], 1000, include_self=True,
                       note="dinner"), 201, what="split with self")
    amounts = [r["amount_minor"] for r in got["requests"]]
    check_eq((amounts, got["self_share_minor"], got["total_minor"]), ([334, 333], 333, 1000),
             "1000 among three: the extra unit to the first participant")
    check_eq(sum(amounts) + got["self_share_minor"], 1000, "the shares add up")
    check(all(r["split_id"] == got["split_id"] and r["note"] == "dinner"
              and r["status"] == "pending" for r in got["requests"]), "one split")
    check_eq([r["payer"]["name"] for r in got["requests"]], ["B*** G.", "C*** G."], "in order")
    got = expect(split(srv, alice, [bob.login, carol.login, "@nobody" + RUN], 1001), 404,
                 "recipient_not_found")
    check_eq(got.get("detail"), "participants[2]", "the unknown participant")
    for total, n in ((1001, 2), (7, 3), (100, 7), (5, 5)):
        people = [customer(srv).login for _ in range(n)]
        got = expect(split(srv, alice, people, total), 201, what="split of %d" % total)
        amounts = [r["amount_minor"] for r in got["requests"]]
        check_eq(sum(amounts), total, "%d among %d adds up" % (total, n))
        check(max(amounts) - min(amounts) <= 1 and amounts == sorted(amounts, reverse=True),
              "equal shares, the remainder first: %s" % amounts)
        check_eq(got["self_share_minor"], 0, "no share of the requester's")
    before = len(listing(srv, alice, "?direction=outgoing&limit=100")["data"])
    for people, total, status, code, detail in (
            ([bob.login, carol.login, bob.login], 900, 400, "invalid_field",
             "participants[2]: listed twice"),
            ([bob.login, "@" + "x" * 3 + RUN], 900, 404, "recipient_not_found",
             "participants[1]"),
            ([alice.login], 900, 422, "same_account", "participants[0]"),
            ([], 900, 400, "invalid_field", "participants"),
            ([bob.login] * 21, 900, 400, "invalid_field", "participants"),
            ([bob.login, 5], 900, 400, "invalid_field", "participants[1]"),
            ([bob.login, carol.login], 1, 400, "invalid_amount",
             "total_minor: less than one minor unit a person"),
            ([bob.login], 0, 400, "invalid_amount", "total_minor")):
        got = expect(split(srv, alice, people, total), status, code, "split %s" % people)
        check_eq(got.get("detail"), detail, "the refused part")
    expect(split(srv, alice, [bob.login], 100, include_self="yes"), 400, "invalid_field")
    check_eq(expect(split(srv, alice, [bob.login], 100, tip_minor=5), 400, "unknown_field")
             .get("detail"), "tip_minor", "an unknown member of a split")
    expect(call(srv, "POST", "/v1/me/requests/split", {"total_minor": 5, "currency": "USD"},
                token=alice.token), 400, "missing_field")
    after = len(listing(srv, alice, "?direction=outgoing&limit=100")["data"])
    check_eq(after, before, "a refused split makes no request")
    # each participant pays their own request
    got = expect(split(srv, alice, [bob.login, carol.login], 99), 201)
    for who, r in zip((bob, carol), got["requests"]):
        expect(pay(srv, who, r["id"]), 201, what="a participant pays")
        check_eq(balance(srv, who), 5000 - r["amount_minor"] - fee_of(r["amount_minor"]),
                 "each paid their share")
    srv.check_verify()


def test_step_up(ctx):
    """Above the step-up amount, a payment needs a verification for a send of its total to the
    requester; one for another amount or payee is refused."""
    srv = shared(ctx)
    alice = customer(srv)
    bob = customer(srv, balance=200000)
    made = asked(srv, alice, bob.login, STEP_UP)  # the total is above: the fee is on top
    total = STEP_UP + fee_of(STEP_UP)
    check_eq(expect(get(srv, bob, made["id"]), 200)["total_minor"], total, "what to approve")
    expect(pay(srv, bob, made["id"]), 403, "step_up_required", "a big payment, unverified")
    wrong = ih.step_up(srv.port, bob.token, "send", admin_token=srv.token, login=bob.login,
                       amount_minor=total - 1, currency="USD", payee=alice.user_id)
    expect(pay(srv, bob, made["id"], body={"verification": wrong}), 422, "invalid_code",
           "a verification for another amount")
    v = ih.step_up(srv.port, bob.token, "send", admin_token=srv.token, login=bob.login,
                   amount_minor=total, currency="USD", payee=alice.user_id)
    key = new_key("rqp")
    sent = expect(pay(srv, bob, made["id"], key=key, body={"verification": v}), 201,
                  what="a verified payment")
    again = expect(pay(srv, bob, made["id"], key=key, body={"verification": v}), 201)
    check_eq(again["id"], sent["id"], "its retry")
    check_eq(balance(srv, bob), 200000 - total, "paid once")
    small = asked(srv, alice, bob.login, STEP_UP // 2)
    expect(pay(srv, bob, small["id"]), 201, what="below the step-up amount, no verification")
    srv.check_verify()


def test_list(ctx):
    """Lists: both directions, filters, cursor pages, bad parameters."""
    srv = shared(ctx)
    alice, bob = customer(srv), customer(srv, balance=1000)
    out = [asked(srv, alice, bob.login, a)["id"] for a in (11, 12, 13, 14, 15)]
    inc = asked(srv, bob, alice.login, 16)["id"]
    expect(call(srv, "POST", "/v1/me/requests/%s/cancel" % out[0], token=alice.token), 200)
    expect(pay(srv, bob, out[1]), 201)
    page = listing(srv, alice, "?limit=2")
    seen = [r["id"] for r in page["data"]]
    while page["next_cursor"]:
        page = listing(srv, alice, "?limit=2&cursor=" + page["next_cursor"])
        seen += [r["id"] for r in page["data"]]
    check_eq(seen, [inc] + out[::-1], "every page once, newest first")
    check_eq([r["id"] for r in listing(srv, alice, "?direction=incoming")["data"]], [inc],
             "incoming")
    check_eq([r["id"] for r in listing(srv, alice, "?direction=outgoing&status=pending")["data"]],
             out[:1:-1], "outgoing and pending")
    check_eq([r["id"] for r in listing(srv, bob, "?status=paid")["data"]], [out[1]], "paid")
    check_eq([r["id"] for r in listing(srv, alice, "?status=cancelled")["data"]], [out[0]],
             "cancelled")
    check_eq(listing(srv, customer(srv))["data"], [], "a stranger's list")
    for bad, code in (("direction=sideways", "invalid_field"), ("status=paying", "invalid_field"),
                      ("limit=0", "invalid_page_size"), ("limit=101", "invalid_page_size"),
                      ("limit=x", "invalid_page_size"), ("cursor=%%%", "invalid_cursor")):
        body = expect(call(srv, "GET", "/v1/me/requests?" + bad, token=alice.token), 400, code,
                      bad)
        check(body.get("detail") == bad.split("=")[0], "detail of %s: %s" % (bad, body))
    srv.check_verify()


def test_other_peoples_requests(ctx):
    """A stranger gets 404 for someone else's request, exactly as for an unknown id, on every
    route, and changes nothing; staff and merchants may not call the routes."""
    srv = shared(ctx)
    alice, bob = customer(srv), customer(srv, balance=1000)
    eve = customer(srv, balance=1000)
    made = asked(srv, alice, bob.login, 50, note="private")
    for suffix, method in (("", "GET"), ("/pay", "POST"), ("/decline", "POST"),
                           ("/cancel", "POST")):
        mine = call(srv, method, "/v1/me/requests/" + made["id"] + suffix, token=eve.token,
                    key=new_key())
        unknown = call(srv, method, "/v1/me/requests/req_0000000000ZZZ" + suffix,
                       token=eve.token, key=new_key())
        expect(mine, 404, "not_found", "eve %s %s" % (method, suffix))
        check_eq(mine[1], unknown[1], "someone else's request answers as an unknown one")
        check("private" not in str(mine[1]), "nothing of the request leaks")
    expect(call(srv, "POST", "/v1/me/requests/x/pay", token=eve.token, key=new_key()), 404)
    check_eq(expect(get(srv, bob, made["id"]), 200)["status"], "pending", "unchanged")
    check_eq(balance(srv, eve), 1000, "eve paid nothing")
    check_eq(listing(srv, eve)["data"], [], "eve lists nothing of theirs")
    expect(call(srv, "GET", "/v1/me/requests", token=srv.token), 403, "forbidden", "an admin")
    srv.check_verify()


def test_crash_during_payments(ctx):
    """kill -9 while payments of many requests race, restart: every key answers as before (an
    acknowledged payment is still there, under the same id), each request is paid at most once,
    by the send its answers name, and every payer paid exactly the requests that are paid."""
    srv = ctx.server(env=ENV)
    alice = customer(srv)
    payers = [customer(srv, balance=100000) for _ in range(3)]
    reqs = [(p, asked(srv, alice, p.login, 500)["id"]) for p in payers for _ in range(5)]
    attempts = [(p, r, new_key("crash")) for p, r in reqs for _ in range(3)]
    random.shuffle(attempts)

    def attempt(a):
        try:
            return pay(srv, a[0], a[1], key=a[2])[:2]
        except OSError:  # the crash cut it off
            return None, None
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(attempt, a) for a in attempts]
        time.sleep(random.uniform(0.02, 0.2))
        srv.kill9()
        before = [f.result() for f in futures]
    srv.start()
    paid_by = {}
    for a, (st, body) in zip(attempts, before):
        st2, body2 = pay(srv, a[0], a[1], key=a[2])[:2]
        if st is not None and st in (201, 409, 422):
            check_eq((st2, body2.get("id")), (st, body.get("id")),
                     "a retry after the crash answers as before")
        if st2 == 201:
            check(paid_by.setdefault(a[1], body2["id"]) == body2["id"],
                  "request %s paid by two sends: %s, %s" % (a[1], paid_by[a[1]], body2["id"]))
    for p, r in reqs:
        got = expect(get(srv, alice, r), 200)
        check_eq(got["status"] == "paid", r in paid_by, "request %s: %s" % (r, got))
        if r in paid_by:
            check_eq(got["payment_id"], paid_by[r], "the send that paid %s" % r)
    for p in payers:
        n = sum(1 for q, r in reqs if q is p and r in paid_by)
        check_eq(balance(srv, p), 100000 - n * (500 + fee_of(500)), "a payer's balance")
        sends = [o for o in expect(call(srv, "GET", "/v1/me/activity?limit=100", token=p.token),
                                   200)["data"] if o["status"] == "completed"]
        check_eq(sorted(o["reference"] for o in sends),
                 sorted(r for q, r in reqs if q is p and r in paid_by), "one send per paid request")
    srv.check_verify()


TESTS = [
    test_request_and_view,
    test_pay,
    test_insufficient_funds,
    test_concurrent_pays,
    test_closed_and_expired,
    test_split,
    test_step_up,
    test_list,
    test_other_peoples_requests,
    test_crash_during_payments,
]

if __name__ == "__main__":
    harness.main(TESTS)
