#!/usr/bin/env python3
"""test_velocity_restart.py - the velocity counters survive a restart: they are rebuilt at start
from the decision log's counted movements of the last day, so a customer who waits for a deploy
does not get a clean slate. A rule `count_1h_user >= 2 -> block`: two payments pass, the server
restarts on the same data, the third is blocked, and its decision shows the customer's, the
device's (the same session) and the address's counts restored. A blocked movement is never
counted (before or after a restart), a challenge counts only once answered, another customer
starts from zero, and a second restart restores the same. The decision log holds no raw client address or session id: on SQLite the
decisions table is read from the database file, and the device and address keys are 32-digit
pseudonyms (the session id it must not hold is checked to be in the sessions table, so the
search can find it). `coffer verify` at the end.

Usage: test_velocity_restart.py --bin build/coffer --src . [test names...]
"""

import os
import random
import re
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import call, expect, fund  # noqa: E402

ENV = {"COFFER_CURRENCIES": "EUR", "COFFER_DEFAULT_CURRENCY": "EUR",
       "COFFER_STEP_UP_AMOUNT_MINOR": "1000000",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
RUN = "%06d" % random.randrange(10**6)
PSEUDONYM = re.compile(r"^[di]:[0-9a-f]{32}\|EUR$")


def rule(srv, analyst, rule_id, condition, action, reason):
    return expect(call(srv, "POST", "/v1/risk/rules",
                       {"id": rule_id, "condition": condition, "action": action,
                        "reason": reason}, token=analyst.token, key=new_key("rule")),
                  201, what="rule %s" % rule_id)


def decisions_of(srv, analyst, party, action=None):
    q = "/v1/risk/decisions?party=" + party + ("&action=" + action if action else "")
    return expect(call(srv, "GET", q, token=analyst.token), 200)["data"]


def features(srv, analyst, op_id):
    return expect(call(srv, "GET", "/v1/risk/decisions/" + op_id, token=analyst.token),
                  200, what="decision")["features"]


def session_id(srv, token):
    data = expect(call(srv, "GET", "/v1/me/sessions", token=token), 200)["data"]
    current = [s["session_id"] for s in data if s["current"]]
    check_eq(len(current), 1, "one current session")
    return current[0]


def restored_lines(srv):
    text = srv.stdout_text() + srv.stderr_tail(10**6)  # this start's logs only
    return re.findall(r'"velocity restored from the decision log","movements":"(\d+)"', text)


def check_no_raw_data(srv, secrets):
    """The decisions table (read from the SQLite file) holds none of secrets, and its device
    and IP keys are pseudonyms."""
    db = os.path.join(srv.data, "identity.db")
    check(os.path.exists(db), "the service database is %s" % db)
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        rows = con.execute("SELECT * FROM risk_decisions").fetchall()
        keys = con.execute("SELECT key_device, key_ip FROM risk_decisions").fetchall()
        sessions = con.execute("SELECT id FROM id_sessions").fetchall()
    finally:
        con.close()
    check(len(rows) >= 4, "the decisions are there: %d" % len(rows))
    dump = repr(rows)
    for s in secrets:
        check(s not in dump, "%r is stored raw in risk_decisions" % s)
    # the search can fail: the session id is where it belongs
    check(any(secrets[0] in repr(r) for r in sessions), "the session id is in id_sessions")
    for kd, ki in keys:
        check(PSEUDONYM.match(kd), "device key %r is a pseudonym" % kd)
        check(PSEUDONYM.match(ki), "IP key %r is a pseudonym" % ki)


def test_counts_survive_restart(ctx):
    """Two payments, a restart, and the third is blocked by count_1h_user >= 2; blocked
    payments never count; another customer is apart; nothing raw in the log."""
    srv = harness.Server(ctx.bin, env=ENV).start()
    try:
        analyst = ih.create_staff(srv.port, srv.token, "risk%s@example.test" % RUN, "risk")
        m = ph.merchant(srv, name="Restart Shop", currency="EUR")
        static = ph.qr(srv, m)
        rule(srv, analyst, "restart_velocity" + RUN,
             'kind == "payment" and count_1h_user >= 2', "block", "velocity")
        rule(srv, analyst, "restart_big" + RUN, 'kind == "payment" and amount_minor > 50000',
             "block", "large_payment")
        vera = ph.customer(srv, "Vera Restart")
        carl = ph.customer(srv, "Carl Blocked")
        fund(srv, vera.token, 50000, "EUR")
        fund(srv, carl.token, 90000, "EUR")
        for i in range(2):
            expect(ph.pay(srv, vera.token, static["payload"], amount=100 + i), 201,
                   what="payment %d" % i)
        # Carl: one payment, and a blocked one that must not count after the restart
        expect(ph.pay(srv, carl.token, static["payload"], amount=100), 201, what="carl's first")
        expect(ph.pay(srv, carl.token, static["payload"], amount=60000), 403, "risk_blocked",
               "carl's large payment")
        # Chloe: a challenge left unanswered (never counted), then answered (counted once the
        # step-up is taken, though the decision was written before)
        rule(srv, analyst, "restart_challenge" + RUN,
             'kind == "payment" and amount_minor == 2500', "challenge", "step_up_asked")
        chloe = ph.customer(srv, "Chloe Challenged")
        fund(srv, chloe.token, 10000, "EUR")
        code = ph.qr(srv, m, amount_minor=2500)
        key = new_key("pay")
        expect(ph.pay(srv, chloe.token, code["payload"], key=key), 403, "step_up_required",
               "the challenge")
        v = ih.step_up(srv.port, chloe.token, "payment", admin_token=srv.token,
                       login=chloe.login, amount_minor=2500, currency="EUR", payee=m["id"])
        expect(ph.pay(srv, chloe.token, code["payload"], key=key, verification=v), 201,
               what="the answered challenge")
        vera_session = session_id(srv, vera.token)

        srv.restart()
        check(restored_lines(srv)[-1:] == ["4"],
              "the start restored the 4 counted payments: %s" % restored_lines(srv))
        expect(ph.pay(srv, vera.token, static["payload"], amount=100), 403, "risk_blocked",
               "the third payment after the restart")
        blocked = decisions_of(srv, analyst, vera.user_id, "block")
        check_eq(len(blocked), 1, "the third payment's block is logged")
        f = features(srv, analyst, blocked[0]["operation_id"])
        check_eq((f["count_1h_user"], f["sum_1h_user"], f["count_24h_user"]), (2, 201, 2),
                 "the customer's counts restored")
        check_eq(f["count_1h_device"], 2, "the same session's count restored (same pseudonym)")
        check_eq(f["count_1h_ip"], 4, "the address's count restored (Vera 2, Carl 1, Chloe 1: "
                 "all on 127.0.0.1)")
        check_eq(f["count_1h_payee"], 4, "the shop's counts restored (Vera 2, Carl 1, Chloe 1)")
        # Carl's blocked payment was not counted: his second small one passes
        ok = expect(ph.pay(srv, carl.token, static["payload"], amount=100), 201,
                    what="carl after the restart")
        check_eq(features(srv, analyst, ok["id"])["count_1h_user"], 1,
                 "a blocked payment is not restored")
        # Chloe's answered challenge counted, her unanswered one not
        ok = expect(ph.pay(srv, chloe.token, static["payload"], amount=100), 201,
                    what="chloe after the restart")
        check_eq(features(srv, analyst, ok["id"])["count_1h_user"], 1,
                 "only the answered challenge is restored")
        # another customer starts from zero
        otto = ph.customer(srv, "Otto Apart")
        fund(srv, otto.token, 1000, "EUR")
        ok = expect(ph.pay(srv, otto.token, static["payload"], amount=100), 201, what="otto")
        check_eq(features(srv, analyst, ok["id"])["count_24h_user"], 0, "otto starts at zero")

        # a second restart: Vera is still at 2 (her block did not count), Carl now at 2
        srv.restart()
        check(restored_lines(srv)[-1:] == ["7"],
              "the second start restored 7 counted payments: %s" % restored_lines(srv))
        expect(ph.pay(srv, vera.token, static["payload"], amount=100), 403, "risk_blocked",
               "still blocked after a second restart")
        expect(ph.pay(srv, carl.token, static["payload"], amount=100), 403, "risk_blocked",
               "carl's two counted payments block his third")

        if harness.PG_URL:
            print("SKIP raw-data check: the database is PostgreSQL", flush=True)
        else:
            check_no_raw_data(srv, [vera_session, "127.0.0.1"])
        srv.check_verify()
    finally:
        srv.stop()


TESTS = [
    test_counts_survive_restart,
]

if __name__ == "__main__":
    harness.main(TESTS)
