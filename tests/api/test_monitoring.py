#!/usr/bin/env python3
"""test_monitoring.py - real-time monitoring of money movements end to end over HTTP: rules a
risk analyst writes decide before anything is recorded; block answers the customer a safe
message and moves nothing while staff see the rule; velocity counts movements per customer;
challenge asks for a step-up bound to the payment; review holds the payer's money until an
analyst approves (the payee is paid) or declines (the money comes back); decisions feed dry
runs; and the KYC tier limits: a closed feature, the single-payment limit, and a daily limit
that two payments sent at once cannot both pass. `coffer verify` after every test.

Usage: test_monitoring.py --bin build/coffer --src . [test names...]
"""

import concurrent.futures
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import call, expect, fund, balance  # noqa: E402

ENV = {"COFFER_CURRENCIES": "EUR", "COFFER_DEFAULT_CURRENCY": "EUR",
       "COFFER_CLIENT_COUNTRY_HEADER": "X-Client-Country",
       "COFFER_STEP_UP_AMOUNT_MINOR": "1000000",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
# Limits on, with a small daily limit at tier 0 so a race can be set up.
LIMITS_ENV = dict(ENV, COFFER_KYC_ENFORCE="1",
                  COFFER_KYC_LIMITS="tier0 * max_balance=1000000 single=3000 daily_out=5000 "
                                    "monthly_out=100000",
                  COFFER_KYC_FEATURES="tier0 topup,receive,payment")
RUN = "%06d" % random.randrange(10**6)


def shared(ctx):
    return ph.shared(ctx, ENV)


def analyst(srv):
    if not hasattr(srv, "_analyst"):
        srv._analyst = ih.create_staff(srv.port, srv.token, "risk%s@example.test" % RUN, "risk")
    return srv._analyst


def rule(srv, rule_id, condition, action, reason):
    return expect(call(srv, "POST", "/v1/risk/rules",
                       {"id": rule_id, "condition": condition, "action": action,
                        "reason": reason}, token=analyst(srv).token, key=new_key("rule")),
                  201, what="rule %s" % rule_id)


def drop(srv, rule_id):
    expect(call(srv, "POST", "/v1/risk/rules/%s/delete" % rule_id, token=analyst(srv).token,
                key=new_key("rule")), 200, what="rule delete")


def decision(srv, op_id):
    return expect(call(srv, "GET", "/v1/risk/decisions/" + op_id, token=analyst(srv).token),
                  200, what="decision")


def send(srv, cust, to_login, amount, key=None):
    v = ih.step_up(srv.port, cust.token, "send", admin_token=srv.token, login=cust.login,
                   amount_minor=amount, currency="EUR", payee=to_login)
    return call(srv, "POST", "/v1/me/sends", {"to": to_login, "amount_minor": amount,
                                                  "currency": "EUR", "verification": v},
                token=cust.token, key=key or new_key("snd"))


def activity_ids(srv, token):
    return [o["id"] for o in expect(call(srv, "GET", "/v1/me/activity", token=token),
                                    200)["data"]]


def shop_and_customer(srv, shop, name, funds, rule_args):
    """A EUR merchant with its static QR code, a customer funded with `funds` EUR and the rule
    `rule_args` (id, condition, action, reason): (merchant, customer, static code)."""
    m = ph.merchant(srv, name=shop, currency="EUR")
    cust = ph.customer(srv, name)
    fund(srv, cust.token, funds, "EUR")
    rule(srv, *rule_args)
    return m, cust, ph.qr(srv, m)


def other_pays(srv, static, name, what):
    """A fresh customer pays 100 of static: a rule on someone else's counts lets it through."""
    other = ph.customer(srv, name)
    fund(srv, other.token, 1000, "EUR")
    expect(ph.pay(srv, other.token, static["payload"], amount=100), 201, what=what)


def test_block_and_allow(ctx):
    """A block rule refuses a large send with a safe message and records nothing the customer
    sees; staff see the rule that decided; a small send goes through; deleting the rule lets
    the large one pass."""
    srv = shared(ctx)
    rule(srv, "big_send" + RUN, 'kind == "send" and amount_minor > 50000', "block",
         "large_send")
    alice = ph.customer(srv, "Alice Monitored")
    bob = ph.customer(srv, "Bob Payee")
    acct = fund(srv, alice.token, 100000, "EUR")
    before = balance(srv, acct)
    got = expect(send(srv, alice, bob.login, 60000), 403, "risk_blocked", "a blocked send")
    check("big_send" not in str(got) and "large_send" not in str(got),
          "the customer is not told which rule: %s" % got)
    check_eq(balance(srv, acct), before, "nothing moved")
    check_eq(activity_ids(srv, alice.token), [], "nothing recorded for the customer")
    listed = expect(call(srv, "GET", "/v1/risk/decisions?action=block&party=" + alice.user_id,
                         token=analyst(srv).token), 200)["data"]
    check_eq(len(listed), 1, "the block is in the decision log")
    d = decision(srv, listed[0]["operation_id"])
    check_eq([(m["rule_id"], m["reason"]) for m in d["matches"]],
             [("big_send" + RUN, "large_send")], "staff see the rule and reason")
    expect(call(srv, "GET", "/v1/risk/decisions", token=alice.token), 403, "forbidden",
           "customers do not read decisions")
    done = expect(send(srv, alice, bob.login, 5000), 201, what="a small send")
    check_eq(decision(srv, done["id"])["action"], "allow", "the allowed send is logged too")
    drop(srv, "big_send" + RUN)
    expect(send(srv, alice, bob.login, 60000), 201, what="the large send once the rule is gone")
    srv.check_verify()


def test_velocity(ctx):
    """count_1h_user counts a customer's movements in the hour: the fourth payment within it
    is refused by a rule that allows three."""
    srv = shared(ctx)
    _, cust, static = shop_and_customer(
        srv, "Velocity Shop", "Vera Velocity", 50000,
        ("pay_velocity" + RUN, 'kind == "payment" and count_1h_user >= 3', "block", "velocity"))
    for i in range(3):
        expect(ph.pay(srv, cust.token, static["payload"], amount=100 + i), 201,
               what="payment %d" % i)
    expect(ph.pay(srv, cust.token, static["payload"], amount=100), 403, "risk_blocked",
           "the fourth payment in the hour")
    other_pays(srv, static, "Otto Other", "another customer is counted apart")
    drop(srv, "pay_velocity" + RUN)
    srv.check_verify()


def test_failed_signins(ctx):
    """failed_signins_24h counts a customer's wrong passwords: after two, a rule that blocks on
    them refuses the customer's payment, while another customer pays."""
    srv = shared(ctx)
    _, cust, static = shop_and_customer(
        srv, "Sign-in Shop", "Fay Failed", 5000,
        ("failed_signins" + RUN, 'kind == "payment" and failed_signins_24h >= 2', "block",
         "takeover_suspected"))
    expect(ph.pay(srv, cust.token, static["payload"], amount=100), 201, what="before")
    for _ in range(2):
        expect(call(srv, "POST", "/v1/auth/sign-in",
                    {"login": cust.login, "password": "not the password"}), 401,
               "invalid_credentials", "a wrong password")
    expect(ph.pay(srv, cust.token, static["payload"], amount=100), 403, "risk_blocked",
           "after two failed sign-ins")
    other_pays(srv, static, "Gil Good", "someone else")
    drop(srv, "failed_signins" + RUN)
    srv.check_verify()


def test_client_country(ctx):
    """ip_country comes from the configured proxy header: a rule on it blocks a payment that
    says KP, and lets the same customer pay without it; a malformed value counts as unknown."""
    srv = shared(ctx)
    _, cust, static = shop_and_customer(
        srv, "Country Corner", "Kim Country", 5000,
        ("country_kp" + RUN, 'kind == "payment" and ip_country == "KP"', "block",
         "sanctioned_country"))

    def pay_from(country):
        headers = {"X-Client-Country": country} if country else None
        return call(srv, "POST", "/v1/me/payments",
                    {"payload": static["payload"], "amount_minor": 100}, token=cust.token,
                    key=new_key("pay"), headers=headers)
    expect(pay_from("KP"), 403, "risk_blocked", "a payment from KP")
    expect(pay_from("kp1"), 201, what="a malformed country is unknown")
    expect(pay_from(None), 201, what="no country header")
    drop(srv, "country_kp" + RUN)
    srv.check_verify()


def test_country_mismatch(ctx):
    """home_country is the country of residence the customer's KYC details name: a rule on
    country_mismatch blocks a payment from another country, lets one from home through, says
    nothing for a customer who gave no details, and follows the details when they change."""
    srv = shared(ctx)
    m = ph.merchant(srv, name="Travel Shop", currency="EUR")
    cust = ph.customer(srv, "Tove Traveller")
    quiet = ph.customer(srv, "Nils Nodetails")
    for c in (cust, quiet):
        fund(srv, c.token, 5000, "EUR")
    rule(srv, "mismatch" + RUN, 'kind == "payment" and country_mismatch', "block", "travel")
    static = ph.qr(srv, m)

    def pay_from(who, country):
        return call(srv, "POST", "/v1/me/payments",
                    {"payload": static["payload"], "amount_minor": 100}, token=who.token,
                    key=new_key("pay"), headers={"X-Client-Country": country})

    def put_country(country):
        expect(call(srv, "POST", "/v1/me/kyc/details",
                    {"legal_name": "Tove Traveller", "id_type": "passport",
                     "id_number": "T0V3%s" % RUN, "date_of_birth": "1990-02-03",
                     "country": country}, token=cust.token), 200, what="details")
    expect(pay_from(cust, "SE"), 201, what="no details yet: home unknown")
    put_country("SE")
    expect(pay_from(cust, "SE"), 201, what="a payment from home")
    blocked = expect(pay_from(cust, "FR"), 403, "risk_blocked", "a payment from abroad")
    check("travel" not in str(blocked), "the customer does not see the rule's reason")
    expect(pay_from(quiet, "FR"), 201, what="a customer without details")
    mine = expect(call(srv, "GET", "/v1/risk/decisions?action=block&party=" + cust.user_id,
                       token=analyst(srv).token), 200)["data"]
    check_eq(len(mine), 1, "one blocked decision")
    f = decision(srv, mine[0]["operation_id"])["features"]
    check(f["home_country"] == "SE" and f["ip_country"] == "FR" and f["country_mismatch"],
          "staff see both countries: %s" % f)
    put_country("FR")  # moved: the next payment reads the new details at once
    expect(pay_from(cust, "FR"), 201, what="from the new home")
    expect(pay_from(cust, "SE"), 403, "risk_blocked", "from the old one")
    drop(srv, "mismatch" + RUN)
    srv.check_verify()


def test_challenge(ctx):
    """A challenge rule asks for a step-up even below the step-up amount; with one bound to the
    payment it goes through."""
    srv = shared(ctx)
    m, cust, _ = shop_and_customer(
        srv, "Challenge Cafe", "Chloe Challenged", 10000,
        ("night_pay" + RUN, 'kind == "payment" and amount_minor >= 2500', "challenge",
         "step_up_asked"))
    code = ph.qr(srv, m, amount_minor=2500)
    key = new_key("pay")
    expect(ph.pay(srv, cust.token, code["payload"], key=key), 403, "step_up_required",
           "the challenge")
    v = ih.step_up(srv.port, cust.token, "payment", admin_token=srv.token, login=cust.login,
                   amount_minor=2500, currency="EUR", payee=m["id"])
    expect(ph.pay(srv, cust.token, code["payload"], key=key, verification=v), 201,
           what="answered")
    drop(srv, "night_pay" + RUN)
    srv.check_verify()


def test_review(ctx):
    """A review rule holds the sender's money (pending, the payee sees nothing); approving pays
    the payee, declining gives the money back; support cannot decide; deciding twice answers
    the same."""
    srv = shared(ctx)
    rule(srv, "review_send" + RUN, 'kind == "send" and amount_minor >= 7000', "review",
         "manual_check")
    sender = ph.customer(srv, "Rita Reviewed")
    payee = ph.customer(srv, "Paul Payee")
    src = fund(srv, sender.token, 20000, "EUR")
    held = expect(send(srv, sender, payee.login, 7000), 202, what="a send under review")
    check_eq(held["status"], "pending", "held for an analyst")
    check_eq((balance(srv, src), srv.client().account(src)["available"]), (20000, 13000),
             "the sender's money is held, not yet gone")
    check(held["id"] not in activity_ids(srv, payee.token), "the payee sees nothing yet")
    support = ih.create_staff(srv.port, srv.token, "support%s@example.test" % RUN, "support")
    path = "/v1/risk/reviews/%s/decision" % held["id"]
    expect(call(srv, "POST", path, {"decision": "approve", "reason": "known customer"},
                token=support.token, key=new_key("rev")), 403, "forbidden", "support deciding")
    expect(call(srv, "POST", path, {"decision": "maybe", "reason": "x"},
                token=analyst(srv).token, key=new_key("rev")), 400, "invalid_field",
           "an unknown decision")
    key = new_key("rev")
    ok = expect(call(srv, "POST", path, {"decision": "approve", "reason": "known customer"},
                     token=analyst(srv).token, key=key), 200, what="approve")
    check_eq(ok["status"], "completed", "approved and paid")
    again = expect(call(srv, "POST", path, {"decision": "approve", "reason": "known customer"},
                        token=analyst(srv).token, key=key), 200, what="the same request again")
    check_eq(again["status"], "completed", "a repeat answers the same")
    check(held["id"] in activity_ids(srv, payee.token), "the payee sees the send")
    pay_acct = ph.wallet(srv, payee.token, "EUR")
    check_eq(balance(srv, pay_acct), 7000, "the payee was paid")
    check_eq(decision(srv, held["id"])["review"], "approved", "the review state")

    held2 = expect(send(srv, sender, payee.login, 8000), 202, what="another send under review")
    path2 = "/v1/risk/reviews/%s/decision" % held2["id"]
    no = expect(call(srv, "POST", path2, {"decision": "decline", "reason": "mule pattern"},
                     token=analyst(srv).token, key=new_key("rev")), 200, what="decline")
    check_eq((no["status"], no["error"]), ("failed", "risk_blocked"), "declined")
    check_eq((balance(srv, src), srv.client().account(src)["available"]), (13000, 13000),
             "the declined money came back")
    expect(call(srv, "POST", path2, {"decision": "approve", "reason": "changed my mind"},
                token=analyst(srv).token, key=new_key("rev")), 409, "conflict",
           "a decided review cannot be decided otherwise")
    small = expect(send(srv, sender, payee.login, 100), 201, what="a send not under review")
    expect(call(srv, "POST", "/v1/risk/reviews/%s/decision" % small["id"],
                {"decision": "approve", "reason": "x"}, token=analyst(srv).token,
                key=new_key("rev")), 404, "not_found", "an operation not under review")
    drop(srv, "review_send" + RUN)

    # a payment of a merchant's dynamic code, declined: the code may be paid again
    rule(srv, "review_pay" + RUN, 'kind == "payment" and amount_minor == 4321', "review",
         "manual_check")
    m = ph.merchant(srv, name="Review Market", currency="EUR")
    code = ph.qr(srv, m, amount_minor=4321)
    held3 = expect(ph.pay(srv, sender.token, code["payload"]), 202, what="a payment under review")
    expect(call(srv, "POST", "/v1/me/qr/scan", {"payload": code["payload"]}, token=sender.token),
           422, "qr_expired", "the code is taken while the payment is held")
    expect(call(srv, "POST", "/v1/risk/reviews/%s/decision" % held3["id"],
                {"decision": "decline", "reason": "card testing"}, token=analyst(srv).token,
                key=new_key("rev")), 200, what="decline the payment")
    expect(call(srv, "POST", "/v1/me/qr/scan", {"payload": code["payload"]}, token=sender.token),
           200, what="the code is free again")
    drop(srv, "review_pay" + RUN)
    srv.check_verify()


def test_dry_run_over_decisions(ctx):
    """The decisions recorded by real payments feed a dry run of a new rule."""
    srv = shared(ctx)
    m = ph.merchant(srv, name="Dry Run Deli", currency="EUR")
    cust = ph.customer(srv, "Dora Dry")
    fund(srv, cust.token, 100000, "EUR")
    static = ph.qr(srv, m)
    for amount in (111, 222, 7777, 8888):
        expect(ph.pay(srv, cust.token, static["payload"], amount=amount), 201)
    got = expect(call(srv, "POST", "/v1/risk/rules/dry-run",
                      {"condition": 'kind == "payment" and mcc == 5812 and amount_minor > 7000',
                       "action": "review"}, token=analyst(srv).token), 200, what="dry run")
    check(got["matched"] >= 2 and got["by_action"]["review"] == got["matched"],
          "the dry run caught the large payments: %s" % got)
    caught = {s["amount_minor"] for s in got["samples"]}
    check({7777, 8888} <= caught and not caught & {111, 222},
          "the samples are the large payments: %s" % caught)
    srv.check_verify()


def test_kyc_limits(ctx):
    """With the limits on: a tier-0 customer cannot send (closed at the tier), cannot pay above
    the single-payment limit, and two payments sent at once cannot both pass a daily limit that
    has room for one; nothing moves for the refused ones."""
    srv = harness.Server(ctx.bin, env=LIMITS_ENV).start()
    try:
        m = ph.merchant(srv, name="Limits Shop", currency="EUR")
        cust = ph.customer(srv, "Lena Limited")
        other = ph.customer(srv, "Olaf Other")
        acct = fund(srv, cust.token, 20000, "EUR")
        expect(send(srv, cust, other.login, 100), 403, "limit_exceeded", "sending at tier 0")
        static = ph.qr(srv, m)
        expect(ph.pay(srv, cust.token, static["payload"], amount=3001), 403, "limit_exceeded",
               "above the single-payment limit")
        expect(ph.pay(srv, cust.token, static["payload"], amount=2000), 201, what="within")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            codes = sorted(pool.map(
                lambda _: ph.pay(srv, cust.token, static["payload"], amount=2000)[0], range(4)))
        check_eq(codes, [201, 403, 403, 403], "one more fits today's 5000, not two")
        check_eq(balance(srv, acct), 20000 - 4000, "only the payments that passed moved money")
        srv.check_verify()
    finally:
        srv.stop()


TESTS = [
    test_block_and_allow,
    test_velocity,
    test_failed_signins,
    test_client_country,
    test_country_mismatch,
    test_challenge,
    test_review,
    test_dry_run_over_decisions,
    test_kyc_limits,
]

if __name__ == "__main__":
    harness.main(TESTS)
