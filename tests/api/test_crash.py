#!/usr/bin/env python3
"""test_crash.py - kill -9 under load, restart, and check that nothing acknowledged was lost.

Each cycle: several threads send transfers (single, two-leg, and batches of 2-20 items, each
request with a unique Idempotency-Key and each batch item with its own key) and record every
success with its key, body, transfer ids and the exact bytes answered.
After 1-2 s the server (our own PID) gets SIGKILL. With the server down, `coffer verify` must
be ok. After a restart on the same data directory:
  * every acknowledged transfer exists exactly once: GET by id matches amount and accounts, it
    appears once in the account histories, and re-POSTing its key and body answers the very
    same bytes (so the same id) instead of a new transfer;
  * requests that were in flight when the server died resolve to a success when retried;
  * money is conserved: per currency sum(debits_posted) == sum(credits_posted), and balances
    agree with the acknowledged transfers.
Three cycles on the same data directory.

Usage: test_crash.py --bin build/coffer --src . [test names...]
"""

import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (check, check_eq, fund, make_account, make_source, new_key,  # noqa: E402
                     run_threads)

TRANSFERS = "/v1/ledger/transfers"
BATCH = "/v1/ledger/transfers/batch"
CYCLES = 3
LOAD_THREADS = 6
FUNDING = 10 ** 9


class Record:
    """One keyed POST: its path and body, and when acknowledged, the exact answer, the
    transfer ids it created and the legs they stand for."""

    def __init__(self, key, body, path=TRANSFERS):
        self.key = key
        self.body = body
        self.path = path
        self.raw = None
        self.ids = []
        self.legs = []

    def acknowledge(self, raw):
        """Records a success answer; False when its shape is wrong."""
        parsed = harness.json.loads(raw)
        self.raw = raw
        if self.path == BATCH:
            items = parsed["data"]
            if len(items) != len(self.body["transfers"]) or \
                    any(r["status"] not in ("created", "exists") for r in items):
                return False
            self.ids = [r["transfer"]["id"] for r in items]
            self.legs = list(self.body["transfers"])
        elif "legs" in parsed:
            self.ids = [x["id"] for x in parsed["legs"]]
            self.legs = self.body["legs"]
        else:
            self.ids = [parsed["id"]]
            self.legs = [self.body]
        return len(self.ids) == len(self.legs)


def ok_status(rec):
    return 200 if rec.path == BATCH else 201


def load(srv, customers, merchants, stop, acked, unknown, lock, seed):
    rnd = random.Random(seed)
    cl = srv.client(retry=False, timeout=10)
    try:
        while not stop.is_set():
            d = rnd.choice(customers)
            dice = rnd.random()
            path = TRANSFERS
            if dice < 0.08:
                path = BATCH
                body = {"transfers": [
                    {"debit_account_id": rnd.choice(customers),
                     "credit_account_id": rnd.choice(merchants), "amount": rnd.randint(1, 900),
                     "currency": "USD", "idempotency_key": new_key("item")}
                    for _ in range(rnd.randint(2, 20))]}
            elif dice < 0.3:
                m1, m2 = rnd.sample(merchants, 2)
                body = {"legs": [
                    {"debit_account_id": d, "credit_account_id": m1,
                     "amount": rnd.randint(1, 5000), "currency": "USD"},
                    {"debit_account_id": d, "credit_account_id": m2,
                     "amount": rnd.randint(1, 50), "currency": "USD", "code": "fee"}]}
            else:
                body = {"debit_account_id": d, "credit_account_id": rnd.choice(merchants),
                        "amount": rnd.randint(1, 5000), "currency": "USD"}
            rec = Record(new_key("crash"), body, path)
            try:
                status, _h, raw = cl.raw("POST", path, body, key=rec.key)
            except (OSError, harness.http.client.HTTPException):
                with lock:
                    unknown.append(rec)  # sent, never answered: may or may not be applied
                return
            if status != ok_status(rec):
                with lock:
                    unknown.append(rec)
                if status >= 500 or status == 409:
                    continue  # shutting down / storage / in flight: resolved after restart
                raise harness.TestFailure("load: %s %d %r" % (path, status, raw[:300]))
            if not rec.acknowledge(raw):
                raise harness.TestFailure("load: %s answered %r" % (path, raw[:300]))
            with lock:
                acked.append(rec)
    finally:
        cl.close()


def check_acked(srv, records, customers, merchants, recheck):
    """Every acknowledged record exists exactly once; `recheck` ones are also re-POSTed."""
    c = srv.client()
    # histories of every account, once
    seen = {}
    for acct in customers + merchants:
        for e in c.history(acct):
            seen.setdefault(e["id"], []).append((acct, e))
    for rec in records:
        for tr_id, leg in zip(rec.ids, rec.legs):
            where = seen.get(tr_id)
            check(where is not None, "acknowledged transfer %s (key %s) is gone after the crash"
                  % (tr_id, rec.key))
            check_eq(sorted(a for a, _ in where),
                     sorted([leg["debit_account_id"], leg["credit_account_id"]]),
                     "%s appears once in each of its two accounts' histories" % tr_id)
            e = where[0][1]
            check_eq((e["debit_account_id"], e["credit_account_id"], e["amount"], e["status"]),
                     (leg["debit_account_id"], leg["credit_account_id"], leg["amount"],
                      "posted"), "transfer %s after restart" % tr_id)
    errors = []
    lock = threading.Lock()

    def worker(i):
        cl = srv.client()
        try:
            for rec in recheck[i::4]:
                for tr_id, leg in zip(rec.ids, rec.legs):
                    tr = cl.transfer(tr_id)
                    if (tr["amount"], tr["debit_account_id"], tr["credit_account_id"]) != (
                            leg["amount"], leg["debit_account_id"], leg["credit_account_id"]):
                        with lock:
                            errors.append("GET %s: %s" % (tr_id, tr))
                st, _h, raw = cl.raw("POST", rec.path, rec.body, key=rec.key)
                if st != ok_status(rec) or raw != rec.raw:
                    with lock:
                        errors.append("re-POST of key %s: %d %r (first answer %r)"
                                      % (rec.key, st, raw[:160], rec.raw[:160]))
        finally:
            cl.close()

    run_threads(4, worker)
    check(not errors, "%d acknowledged transfers misbehave after restart:\n  %s"
          % (len(errors), "\n  ".join(errors[:10])))
    c.close()
    return seen


def resolve_unknown(srv, unknown):
    """Requests without an answer are retried with their key: each ends as one 201."""
    c = srv.client()
    done = []
    for rec in unknown:
        st, _h, raw = c.raw("POST", rec.path, rec.body, key=rec.key)
        check(st == ok_status(rec), "retry of unanswered key %s after restart: %d %r"
              % (rec.key, st, raw[:300]))
        check(rec.acknowledge(raw), "retry of %s answered %r" % (rec.key, raw[:300]))
        st2, _h, raw2 = c.raw("POST", rec.path, rec.body, key=rec.key)
        check_eq((st2, raw2), (st, raw), "second retry of key %s" % rec.key)
        done.append(rec)
    c.close()
    return done


def check_money(srv, customers, merchants, records):
    c = srv.client()
    accounts = c.all_accounts()
    harness.check_conservation(accounts)
    by_id = {a["id"]: a for a in accounts}
    out = {a: 0 for a in customers}
    into = {a: 0 for a in merchants}
    for rec in records:
        for leg in rec.legs:
            out[leg["debit_account_id"]] += leg["amount"]
            into[leg["credit_account_id"]] += leg["amount"]
    for a in customers:
        check_eq(by_id[a]["balance"], FUNDING - out[a], "customer %s balance" % a)
    for a in merchants:
        check_eq(by_id[a]["balance"], into[a], "merchant %s balance" % a)
    for a in accounts:
        check(a["debits_pending"] == 0 and a["credits_pending"] == 0, "stray hold on " + a["id"])
    c.close()


def test_kill9_under_load(ctx):
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    customers = [make_account(c)["id"] for _ in range(4)]
    merchants = [make_account(c, kind="merchant")["id"] for _ in range(4)]
    for a in customers:
        fund(c, src, a, FUNDING)
    c.close()
    all_records = []
    rnd = random.Random()
    for cycle in range(CYCLES):
        stop = threading.Event()
        lock = threading.Lock()
        acked, unknown = [], []
        threads = [threading.Thread(target=load, daemon=True,
                                    args=(srv, customers, merchants, stop, acked, unknown, lock,
                                          rnd.random()))
                   for _ in range(LOAD_THREADS)]
        errors = []

        def guard(t):
            try:
                t()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        for t in threads:
            t.run = (lambda f: (lambda: guard(f)))(t.run)
            t.start()
        delay = rnd.uniform(1.0, 2.0)
        time.sleep(delay)
        check(srv.running(), "server died under load: %s" % srv.crashed())
        srv.kill9()
        stop.set()
        for t in threads:
            t.join(timeout=20)
            check(not t.is_alive(), "a load thread hangs after the kill")
        check(not errors, "load thread: %s" % (errors[:1],))
        check(acked, "cycle %d: nothing acknowledged in %.1f s" % (cycle, delay))
        rc, out = srv.verify()
        check(rc == 0 and out.startswith("ok:"),
              "cycle %d: coffer verify after kill -9 (exit %d): %s" % (cycle, rc, out[:2000]))
        srv.start()
        check_acked(srv, all_records + acked, customers, merchants, acked)
        all_records.extend(acked)
        all_records.extend(resolve_unknown(srv, unknown))
        check_acked(srv, all_records, customers, merchants, [])
        check_money(srv, customers, merchants, all_records)
        print("  cycle %d: killed after %.2f s, %d acknowledged, %d unanswered; %s"
              % (cycle + 1, delay, len(acked), len(unknown), out.strip()[:60]), flush=True)
    check_eq(srv.stop(), 0, "clean stop at the end")
    srv.check_verify()


def test_sigterm_under_load(ctx):
    """A clean stop under load answers or refuses every request; nothing acknowledged is lost."""
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    customers = [make_account(c)["id"] for _ in range(3)]
    merchants = [make_account(c, kind="merchant")["id"] for _ in range(3)]
    for a in customers:
        fund(c, src, a, FUNDING)
    c.close()
    stop = threading.Event()
    lock = threading.Lock()
    acked, unknown, errors = [], [], []

    def run(i):
        try:
            load(srv, customers, merchants, stop, acked, unknown, lock, 99 + i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    rc = srv.stop()
    stop.set()
    for t in threads:
        t.join(timeout=20)
        check(not t.is_alive(), "a load thread hangs after the stop")
    check(not errors, "load thread: %s" % (errors[:1],))
    check_eq(rc, 0, "exit code of SIGTERM under load (None: it hung and was killed)")
    check(acked, "nothing acknowledged")
    srv.check_verify()
    srv.start()
    check_acked(srv, acked, customers, merchants, acked)
    records = acked + resolve_unknown(srv, unknown)
    check_money(srv, customers, merchants, records)
    print("  %d acknowledged, %d unanswered or refused while stopping"
          % (len(acked), len(unknown)), flush=True)
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def test_holds_across_crash(ctx):
    """Holds survive kill -9; one whose timeout passes while the server is down expires after
    the restart, and the others can still be posted and voided."""
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    a = make_account(c)["id"]
    m = make_account(c, kind="merchant")["id"]
    fund(c, src, a, 10000)
    keep = harness.transfer(c, a, m, 1000, pending=True)
    short = harness.transfer(c, a, m, 500, pending=True, timeout_s=1)
    t_short = time.monotonic()
    part = harness.transfer(c, a, m, 700, pending=True)
    c.ok(200, "POST", TRANSFERS + "/" + part["id"] + "/post", {"amount": 200}, key=new_key())
    check_eq(c.account(a)["available"], 10000 - 1000 - 500 - 200, "available before the crash")
    c.close()
    srv.kill9()
    srv.check_verify()
    time.sleep(max(0.0, 1.5 - (time.monotonic() - t_short)))
    srv.start()
    c = srv.client()
    check_eq(c.transfer(keep["id"])["status"], "pending", "hold after the crash")
    check_eq(c.transfer(part["id"])["status"], "posted", "posted hold after the crash")
    deadline = time.monotonic() + 3.0
    while c.transfer(short["id"])["status"] != "expired":
        check(time.monotonic() < deadline, "a hold past its timeout did not expire after restart")
        time.sleep(0.1)
    acct = c.account(a)
    check_eq((acct["balance"], acct["available"], acct["debits_pending"]),
             (9800, 8800, 1000), "wallet after restart and expiry")
    status, _h, pb = c.post(TRANSFERS + "/" + short["id"] + "/post")
    check(status == 409 and pb.get("code") == "transfer_expired", "post of an expired hold: %d %s"
          % (status, pb))
    c.ok(200, "POST", TRANSFERS + "/" + keep["id"] + "/post", {"amount": 1000}, key=new_key())
    acct = c.account(a)
    check_eq((acct["balance"], acct["available"], acct["debits_pending"]), (8800, 8800, 0),
             "wallet after posting the kept hold")
    check_eq(c.account(m)["balance"], 1200, "merchant")
    harness.check_conservation(c.all_accounts())
    c.close()
    rc = srv.stop()
    check(rc == 0, "clean stop: exit %s, stderr: %s" % (rc, srv.stderr_tail()))
    srv.check_verify()


TESTS = [test_kill9_under_load, test_sigterm_under_load, test_holds_across_crash]

if __name__ == "__main__":
    harness.main(TESTS)
