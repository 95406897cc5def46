#!/usr/bin/env python3
"""test_outage.py - the PostgreSQL cluster goes away under a running server, then comes back.

Needs COFFER_TEST_PG_URL and --pg-state (the cluster's state directory, scripts/pg-cluster.sh);
without them every test FAILS, since this script is only registered in the PostgreSQL pass.
The cluster is stopped with `scripts/pg-cluster.sh pause STATE` and started again with `resume`
(always resumed, even when a test fails).

  * test_outage_under_load: load threads send keyed transfers continuously and a reader thread
    polls /healthz and an account. The cluster is paused for ~3 s, twice. While it is down every
    answer is a 503 problem+json with code storage_unavailable or storage_conflict (never
    another 5xx, never a hang past the client timeout) and the server process stays up. After
    resume the server recovers by itself within 10 s (201s again, /healthz 200). Every request
    answered 503 is retried with its key and body and ends as one 201 (applied once, or a replay
    of what committed before the connection dropped). Then: every acknowledged transfer is
    there exactly once (GET by id, once in each account's history, re-POST replays the same
    bytes), no unacknowledged transfer exists, balances equal the acknowledged transfers,
    money is conserved, `coffer verify` is ok and the server stops cleanly.
  * test_outage_idle: the same with an idle server: requests during the outage get 503 at once;
    a second after resume the first write gets 201 and the first reads 200 (lost connections are
    reset by the next use, not by a restart of coffer).

Usage: COFFER_TEST_PG_URL=... test_outage.py --bin build/coffer --src . --pg-state DIR
"""

import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_eq, make_account, make_source, new_key  # noqa: E402

TRANSFERS = "/v1/ledger/transfers"
CLIENT_TIMEOUT_S = 10.0
OUTAGE_S = 3.0
RECOVERY_S = 10.0
OUTAGE_CODES = ("storage_unavailable", "storage_conflict")
FUNDING = 10 ** 9


class Cluster:
    """pause/resume of the test cluster; resume() is safe to call when not paused."""

    def __init__(self, ctx):
        check(harness.PG_URL, "COFFER_TEST_PG_URL is not set: test_outage.py runs only against "
                              "PostgreSQL (scripts/pg-cluster.sh start DIR; "
                              "COFFER_TEST_PG_URL=$(cat DIR/url))")
        check(ctx.args.pg_state, "--pg-state DIR (the cluster's state directory) is required")
        check(os.path.exists(os.path.join(ctx.args.pg_state, "cluster")),
              "--pg-state %s holds no cluster" % ctx.args.pg_state)
        src = ctx.src or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        self.script = os.path.join(src, "scripts", "pg-cluster.sh")
        check(os.path.exists(self.script), "no %s (pass --src)" % self.script)
        self.state = ctx.args.pg_state
        self.paused = False

    def _run(self, cmd):
        r = subprocess.run(["bash", self.script, cmd, self.state], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=90)
        check(r.returncode == 0, "pg-cluster.sh %s failed (%d): %s"
              % (cmd, r.returncode, (r.stdout + r.stderr)[-1000:]))

    def pause(self):
        self.paused = True  # set first: a pause that fails half-way is still resumed
        self._run("pause")

    def resume(self):
        if self.paused:
            self._run("resume")
            self.paused = False


def problem_code(headers, raw):
    """(Content-Type, the problem's code or None)."""
    ctype = headers.get("Content-Type", "") or ""
    if "problem+json" not in ctype:
        return ctype, None
    try:
        return ctype, harness.json.loads(raw).get("code")
    except ValueError:
        return ctype, None


class Log:
    """Every answer the load saw: (t_send, t_recv, kind, status, code, ctype, rec)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []
        self.errors = []   # exceptions: hangs, dropped connections, wrong shapes
        self.acked = []    # Recs answered 201
        self.failed = []   # Recs answered 503, to retry with their key

    def add(self, *entry):
        with self.lock:
            self.entries.append(entry)


class Rec:
    def __init__(self, key, body):
        self.key = key
        self.body = body
        self.raw = None
        self.ids = []
        self.legs = body["legs"] if "legs" in body else [body]
        self.first_status = None

    def acknowledge(self, raw):
        parsed = harness.json.loads(raw)
        self.raw = raw
        self.ids = [x["id"] for x in parsed["legs"]] if "legs" in parsed else [parsed["id"]]
        check(len(self.ids) == len(self.legs), "201 of key %s: %r" % (self.key, raw[:300]))


def writer_load(i, srv, customers, merchants, stop, log):
    rnd = random.Random(1000 + i)
    cl = srv.client(timeout=CLIENT_TIMEOUT_S)
    try:
        while not stop.is_set():
            d = rnd.choice(customers)
            if rnd.random() < 0.2:
                m1, m2 = rnd.sample(merchants, 2)
                body = {"legs": [
                    {"debit_account_id": d, "credit_account_id": m1,
                     "amount": rnd.randint(1, 5000), "currency": "USD"},
                    {"debit_account_id": d, "credit_account_id": m2,
                     "amount": rnd.randint(1, 50), "currency": "USD", "code": "fee"}]}
            else:
                body = {"debit_account_id": d, "credit_account_id": rnd.choice(merchants),
                        "amount": rnd.randint(1, 5000), "currency": "USD"}
            rec = Rec(new_key("out%d" % i), body)
            t_send = time.monotonic()
            try:
                st, h, raw = cl.raw("POST", TRANSFERS, body, key=rec.key)
            except Exception as e:  # noqa: BLE001 - a hang or a dropped connection
                with log.lock:
                    log.errors.append("POST key %s sent at +%.2f s: no answer: %s: %s"
                                      % (rec.key, t_send, type(e).__name__, e))
                    log.failed.append(rec)  # outcome unknown: resolved after the outage
                cl.close()
                time.sleep(0.05)
                continue
            t_recv = time.monotonic()
            ctype, code = problem_code(h, raw)
            rec.first_status = st
            log.add(t_send, t_recv, "POST", st, code, ctype, rec)
            if st == 201:
                try:
                    rec.acknowledge(raw)
                except Exception as e:  # noqa: BLE001
                    with log.lock:
                        log.errors.append(str(e))
                    continue
                with log.lock:
                    log.acked.append(rec)
            else:
                with log.lock:
                    log.failed.append(rec)
                if st == 503:
                    time.sleep(0.02)  # do not spin while the database is away
    finally:
        cl.close()


def reader_load(srv, acct, stop, log):
    cl = srv.client(timeout=CLIENT_TIMEOUT_S)
    try:
        while not stop.is_set():
            for kind, path in (("GET healthz", "/healthz"),
                               ("GET account", "/v1/ledger/accounts/" + acct)):
                t_send = time.monotonic()
                try:
                    st, h, raw = cl.raw("GET", path)
                except Exception as e:  # noqa: BLE001
                    with log.lock:
                        log.errors.append("GET %s sent at +%.2f s: no answer: %s: %s"
                                          % (path, t_send, type(e).__name__, e))
                    cl.close()
                    continue
                ctype, code = problem_code(h, raw)
                log.add(t_send, time.monotonic(), kind, st, code, ctype, None)
            time.sleep(0.02)
    finally:
        cl.close()


def check_outage_answer(entry, what):
    _ts, _tr, kind, st, code, ctype, rec = entry
    check(st == 503, "%s: %s answered %d %s (expected 503)%s"
          % (what, kind, st, code, " key %s" % rec.key if rec else ""))
    check("application/problem+json" in ctype, "%s: %s 503 with Content-Type %r"
          % (what, kind, ctype))
    check(code in OUTAGE_CODES, "%s: %s 503 with code %r (expected one of %s)"
          % (what, kind, code, OUTAGE_CODES))


def setup_accounts(srv):
    c = srv.client()
    src = make_source(c)["id"]
    customers = [make_account(c)["id"] for _ in range(4)]
    merchants = [make_account(c, kind="merchant")["id"] for _ in range(4)]
    for a in customers:
        harness.fund(c, src, a, FUNDING)
    c.close()
    return src, customers, merchants


def post_until_final(cl, rec, deadline):
    while True:
        st, h, raw = cl.raw("POST", TRANSFERS, rec.body, key=rec.key)
        _ct, code = problem_code(h, raw)
        if (st == 503 and code in OUTAGE_CODES) or \
                (st == 409 and code == "idempotency_key_in_flight"):
            check(time.monotonic() < deadline, "key %s: still %d %s long after the outage"
                  % (rec.key, st, code))
            time.sleep(0.1)
            continue
        return st, raw


def test_outage_under_load(ctx):
    cluster = Cluster(ctx)
    srv = ctx.server(log_level="warn")
    src, customers, merchants = setup_accounts(srv)
    log = Log()
    stop = threading.Event()
    threads = [threading.Thread(target=writer_load, args=(i, srv, customers, merchants, stop,
                                                          log), daemon=True) for i in range(4)]
    threads.append(threading.Thread(target=reader_load, args=(srv, customers[0], stop, log),
                                    daemon=True))
    cycles = []  # (t_pause_begin, t_paused, t_resume_begin, t_resumed, t_recovered)
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        for cycle in range(2):
            check(srv.running(), "server died before the outage: %s" % srv.crashed())
            t_pause_begin = time.monotonic()
            cluster.pause()
            t_paused = time.monotonic()
            time.sleep(OUTAGE_S)
            check(srv.running(), "the server exited while the database was down: %s"
                  % srv.crashed())
            t_resume_begin = time.monotonic()
            cluster.resume()
            t_resumed = time.monotonic()
            # recovery by itself: /healthz 200 and the load's POSTs answered 201 again
            probe = srv.client(timeout=CLIENT_TIMEOUT_S)
            t_recovered = None
            while time.monotonic() < t_resumed + RECOVERY_S:
                st, _h, _p = probe.raw("GET", "/healthz")
                with log.lock:
                    new_201 = any(e[0] > t_resumed and e[3] == 201 and e[2] == "POST"
                                  for e in log.entries[-200:])
                if st == 200 and new_201:
                    t_recovered = time.monotonic()
                    break
                time.sleep(0.05)
            probe.close()
            check(t_recovered is not None,
                  "cycle %d: no recovery within %.0f s of the cluster's resume (healthz %d)"
                  % (cycle + 1, RECOVERY_S, st))
            cycles.append((t_pause_begin, t_paused, t_resume_begin, t_resumed, t_recovered))
            time.sleep(1.0)  # load after the recovery
        stop.set()
        for t in threads:
            t.join(timeout=CLIENT_TIMEOUT_S + 5)
            check(not t.is_alive(), "a load thread hangs")
    finally:
        stop.set()
        cluster.resume()
    check(srv.running(), "server died: %s" % srv.crashed())
    check(not log.errors, "%d requests without a proper answer (hang past %.0f s or dropped "
                          "connection):\n  %s" % (len(log.errors), CLIENT_TIMEOUT_S,
                                                  "\n  ".join(log.errors[:10])))

    # every answer: 201/200, or a 503 problem+json storage_*; inside an outage only 503s
    outage_503 = 0
    for e in log.entries:
        t_send, t_recv, kind, st, code, ctype, rec = e
        ok = st == 503 or (kind == "POST" and st == 201) or (kind != "POST" and st == 200)
        check(ok, "%s answered %d %s (only success or 503 are expected)%s"
              % (kind, st, code, " key %s" % rec.key if rec else ""))
        if st == 503:
            check_outage_answer(e, "an answer")
        for (_pb, t_paused, t_rb, _tr, _trec) in cycles:
            if t_send > t_paused + 0.2 and t_recv < t_rb:
                check_outage_answer(e, "during the outage")
                outage_503 += 1
        check(t_recv - t_send < CLIENT_TIMEOUT_S, "%s took %.1f s" % (kind, t_recv - t_send))
    check(outage_503 > 0, "no request was answered during the outage: it was not observed")

    c = srv.client()
    # every 503'd key retried with the same body: one 201 each, and a second retry replays
    deadline = time.monotonic() + 20
    replays = 0
    # the highest transfer number acknowledged during the load: a retried key answered with a
    # lower one had committed although its first answer was a 503 (COMMIT cut by the outage)
    load_max = max(harness.id_number(i) for r in log.acked for i in r.ids)
    committed_anyway = 0
    for rec in log.failed:
        st, raw = post_until_final(c, rec, deadline)
        check_eq(st, 201, "retry of key %s (first answer %s) after the outage: %r"
                 % (rec.key, rec.first_status, raw[:300]))
        rec.acknowledge(raw)
        committed_anyway += harness.id_number(rec.ids[0]) < load_max
        st2, raw2 = post_until_final(c, rec, deadline)
        check_eq((st2, raw2), (201, raw), "second retry of key %s" % rec.key)
        log.acked.append(rec)
    acked = log.acked
    check(acked, "nothing acknowledged")

    # every acknowledged transfer exactly once; nothing else
    seen = {}
    for acct in customers + merchants:
        for e in c.history(acct):
            seen.setdefault(e["id"], []).append(acct)
    acked_ids = {}
    for rec in acked:
        for tr_id, leg in zip(rec.ids, rec.legs):
            check(tr_id not in acked_ids, "transfer id %s acknowledged for two keys (%s, %s)"
                  % (tr_id, acked_ids.get(tr_id), rec.key))
            acked_ids[tr_id] = rec.key
            tr = c.transfer(tr_id)
            check_eq((tr["debit_account_id"], tr["credit_account_id"], tr["amount"],
                      tr["status"]),
                     (leg["debit_account_id"], leg["credit_account_id"], leg["amount"],
                      "posted"), "transfer %s (key %s)" % (tr_id, rec.key))
            check_eq(sorted(seen.get(tr_id, [])),
                     sorted([leg["debit_account_id"], leg["credit_account_id"]]),
                     "histories holding %s (key %s)" % (tr_id, rec.key))
    funding_ids = {e["id"] for a in customers for e in c.history(a)
                   if e["debit_account_id"] == src}
    phantoms = set(seen) - set(acked_ids) - funding_ids
    check(not phantoms, "%d transfers exist that no client was told about: %s"
          % (len(phantoms), sorted(phantoms)[:10]))
    for rec in acked:
        if rec.first_status != 201:
            continue  # already replayed twice above
        st, raw = post_until_final(c, rec, deadline)
        check_eq((st, raw), (201, rec.raw), "re-POST of acknowledged key %s" % rec.key)
        replays += 1

    # money
    accounts = c.all_accounts()
    harness.check_conservation(accounts)
    by_id = {a["id"]: a for a in accounts}
    bal = {a: (FUNDING if a in customers else 0) for a in customers + merchants}
    for rec in acked:
        for leg in rec.legs:
            bal[leg["debit_account_id"]] -= leg["amount"]
            bal[leg["credit_account_id"]] += leg["amount"]
    for a, expected in bal.items():
        check_eq(by_id[a]["balance"], expected, "balance of %s == acknowledged transfers" % a)
    for a in accounts:
        if a["no_overdraft"]:
            check(a["available"] >= 0, "no_overdraft account below zero: %s" % a)
    c.close()
    for n, (pb, tp, rb, tr, trec) in enumerate(cycles):
        print("  cycle %d: pause took %.1f s, down %.1f s, resume took %.1f s, recovered %.2f s "
              "after resume" % (n + 1, tp - pb, rb - tp, tr - rb, trec - tr), flush=True)
    statuses = {}
    for e in log.entries:
        k = "%s %d%s" % (e[2], e[3], " " + e[4] if e[4] else "")
        statuses[k] = statuses.get(k, 0) + 1
    print("  answers: %s; %d keys retried after a 503 (%d of them had committed), "
          "%d acknowledged re-POSTed" % (statuses, len(log.failed), committed_anyway, replays),
          flush=True)
    srv.check_verify()
    check_eq(srv.stop(), 0, "clean stop after the outages")
    srv.check_verify()


def test_outage_idle(ctx):
    cluster = Cluster(ctx)
    srv = ctx.server(log_level="warn")
    src, customers, merchants = setup_accounts(srv)
    c = srv.client(timeout=CLIENT_TIMEOUT_S)
    for _ in range(3):  # warm several reader connections
        c.account(customers[0])
    body = {"debit_account_id": customers[0], "credit_account_id": merchants[0], "amount": 77,
            "currency": "USD"}
    key = new_key("idle")
    try:
        cluster.pause()
        time.sleep(0.5)
        for what, method, path, b, k in (
                ("POST transfer", "POST", TRANSFERS, body, key),
                ("GET account", "GET", "/v1/ledger/accounts/" + customers[0], None, None),
                ("GET healthz", "GET", "/healthz", None, None),
                ("POST transfer again", "POST", TRANSFERS, body, key)):
            t0 = time.monotonic()
            st, h, raw = c.raw(method, path, b, key=k)
            ctype, code = problem_code(h, raw)
            check_outage_answer((t0, time.monotonic(), what, st, code, ctype, None),
                                "idle server, database down")
            check(time.monotonic() - t0 < CLIENT_TIMEOUT_S, "%s took too long" % what)
        time.sleep(1.5)
        check(srv.running(), "the server exited while the database was down: %s"
              % srv.crashed())
        cluster.resume()
    finally:
        cluster.resume()
    # past the reconnect backoff, the first use of each connection reconnects by itself
    time.sleep(1.0)
    st, h, raw = c.raw("POST", TRANSFERS, body, key=key)
    check_eq(st, 201, "first write a second after the database came back: %r" % raw[:300])
    tr = harness.json.loads(raw)
    for i in range(4):
        st, _h, p = c.get("/v1/ledger/accounts/" + customers[0])
        check_eq(st, 200, "read %d a second after the database came back: %s" % (i, p))
        check_eq(p["balance"], FUNDING - 77, "balance after the outage")
    st, _h, _p = c.get("/healthz")
    check_eq(st, 200, "/healthz after the database came back")
    check_eq(c.transfer(tr["id"])["amount"], 77, "the transfer after the outage")
    st2, _h, raw2 = c.raw("POST", TRANSFERS, body, key=key)
    check_eq((st2, raw2), (201, raw), "replay of the key that got 503 during the outage")
    check_eq(len(c.history(customers[0])), 2, "funding + one transfer")
    harness.check_conservation(c.all_accounts())
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


TESTS = [test_outage_under_load, test_outage_idle]

if __name__ == "__main__":
    if not harness.PG_URL:
        print("test_outage.py: COFFER_TEST_PG_URL is not set; every test will FAIL",
              file=sys.stderr, flush=True)
    harness.main(TESTS)
