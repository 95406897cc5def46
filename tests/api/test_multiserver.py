#!/usr/bin/env python3
"""test_multiserver.py - several `coffer serve` processes on ONE PostgreSQL database.

Needs COFFER_TEST_PG_URL (the PostgreSQL pass of `make test` sets it); without it every test
FAILS, since this script is only registered in that pass. Each test makes its own fresh
database on the test cluster (harness.pg_create_db) and drops it at the end. All servers get
the same COFFER_OPERATOR_TOKEN: the token file is only written by a server that generates one.
Once they are up, the first server bootstraps the admin and every server is driven with that
admin's one session (sessions live in the database), so idempotency keys, which belong to the
caller, are shared by all of them.

  * test_start_together: three servers started at the same moment on an empty database all come
    up (migrations run once under their lock) and share the operator token: it creates the admin
    on one server, every other server then answers 409 already_bootstrapped, and the admin's
    session serves on all three.
  * test_account_visible_everywhere: an account created on server A is at once readable, listed
    and usable on B and C; a freeze on one server stops debits on another right away (nothing
    is cached across batches).
  * test_load_with_kill9: threads send keyed transfers spread over three servers, retrying the
    same key and body on another server after a connection error or a 503; one server gets
    SIGKILL mid-load while the other two keep serving. Afterwards `coffer verify --db` is ok,
    money is conserved per currency, no no_overdraft account is below zero, balances equal
    the acknowledged transfers exactly, every acknowledged transfer is there once (GET by id on
    a survivor, once in each of its accounts' histories, re-POST of its key and body answers
    the same bytes) and no transfer exists that nobody was told about.
  * test_same_key_two_servers: the same Idempotency-Key and body sent to every server at the
    same moment (threads released by a barrier) is applied once: every 201 carries the same
    bytes (so the same id), the others are 409 idempotency_key_in_flight; the account moves
    once. The same key with different bodies at once: exactly one applies.

Usage: COFFER_TEST_PG_URL=... test_multiserver.py --bin build/coffer --src . [test names...]
"""

import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (check, check_eq, make_account, make_source, new_key,  # noqa: E402
                     run_threads)

TRANSFERS = "/v1/ledger/transfers"
ACCOUNTS = "/v1/ledger/accounts"
TOKEN = "cft_multiserver_%016x" % random.getrandbits(64)
RETRY_CODES_503 = ("storage_unavailable", "storage_conflict", "overloaded", "shutting_down")


def require_pg():
    check(harness.PG_URL, "COFFER_TEST_PG_URL is not set: test_multiserver.py runs only against "
                          "PostgreSQL (scripts/pg-cluster.sh start DIR; "
                          "COFFER_TEST_PG_URL=$(cat DIR/url))")


class Fleet:
    """n servers sharing one fresh database; close() stops them and drops the database."""

    def __init__(self, ctx, n=3, together=False):
        require_pg()
        self.url, self.name = harness.pg_create_db()
        self.servers = [harness.Server(ctx.bin, log_level="warn", db=self.url,
                                       env={"COFFER_OPERATOR_TOKEN": TOKEN}, bootstrap=False)
                        for _ in range(n)]
        try:
            if together:
                barrier = threading.Barrier(n)

                def start(i):
                    barrier.wait()
                    self.servers[i].start()

                run_threads(n, start)
            else:
                for s in self.servers:
                    s.start()
            # one admin for the whole fleet, created on the first server
            self.admin = self.servers[0].bootstrap()
            for s in self.servers[1:]:
                s.use_admin(self.admin)
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for s in self.servers:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - best effort, the drop below must still run
                pass
        if self.name is not None:
            harness.pg_drop_db(self.name)
            self.name = None


# ------------------------------------------------------------------------------------------------


def test_start_together(ctx):
    with Fleet(ctx, 3, together=True) as f:
        for s in f.servers:
            check_eq(s.operator_token, TOKEN,
                     "operator token of a server started with COFFER_OPERATOR_TOKEN")
            check_eq(s.token, f.admin.token, "the fleet's admin session")
        for s in f.servers[1:]:
            st, body, _h = harness.identity_helpers.call(
                s.port, "POST", "/v1/bootstrap",
                {"login": "late-%d@coffer.test" % s.port,
                 "password": harness.identity_helpers.DEFAULT_PASSWORD, "name": "Late Admin"},
                token=TOKEN)
            check(st == 409 and isinstance(body, dict)
                  and body.get("code") == "already_bootstrapped",
                  "bootstrap on port %d after the first server made the admin: %d %s"
                  % (s.port, st, body))
        ids = []
        for s in f.servers:
            c = s.client()
            ids.append(make_account(c)["id"])
            c.close()
        check_eq(len(set(ids)), 3, "distinct account ids from three servers")
        for s in f.servers:
            c = s.client()
            check_eq(sorted(a["id"] for a in c.all_accounts()), sorted(ids),
                     "accounts listed on port %d" % s.port)
            c.close()
        for s in f.servers:
            check_eq(s.stop(), 0, "clean stop")
        f.servers[0].check_verify()


def test_account_visible_everywhere(ctx):
    with Fleet(ctx, 3) as f:
        a, b, c = (s.client() for s in f.servers)
        clients = [a, b, c]
        src = make_source(c)["id"]
        m = make_account(a, kind="merchant")["id"]
        expect = {}  # id -> balance
        merchant = 0
        for r in range(12):
            ca, cb, cc = clients[r % 3], clients[(r + 1) % 3], clients[(r + 2) % 3]
            acct = make_account(ca, owner="vis-%d" % r)
            aid = acct["id"]
            # readable and listed on another server at once
            got = cb.account(aid)
            check_eq((got["id"], got["owner"], got["balance"]), (aid, "vis-%d" % r, 0),
                     "round %d: account created on one server, read on another" % r)
            check(aid in {x["id"] for x in cc.all_accounts()},
                  "round %d: a new account is missing from another server's list" % r)
            # usable on a third server at once (a stale cache would not know it)
            harness.transfer(cc, src, aid, 1000 + r)
            harness.transfer(cb, aid, m, 100)
            merchant += 100
            # an overdraft on the freshly funded account is refused wherever it is tried
            st, _h, p = ca.post(TRANSFERS, {"debit_account_id": aid, "credit_account_id": m,
                                            "amount": 10 ** 6, "currency": "USD"})
            check(st == 422 and p.get("code") == "insufficient_funds",
                  "round %d: overdraft of a funded account on another server: %d %s"
                  % (r, st, p))
            expect[aid] = 900 + r
            for cl in clients:
                check_eq(cl.account(aid)["balance"], expect[aid],
                         "round %d: balance seen on every server" % r)
            # a freeze on one server stops debits on another at once
            cb.ok(200, "POST", ACCOUNTS + "/" + aid + "/freeze", None, key=new_key())
            st, _h, p = cc.post(TRANSFERS, {"debit_account_id": aid, "credit_account_id": m,
                                            "amount": 1, "currency": "USD"})
            check(st == 422 and p.get("code") == "account_frozen",
                  "round %d: debit on server C right after a freeze on server B: %d %s"
                  % (r, st, p))
            cc.ok(200, "POST", ACCOUNTS + "/" + aid + "/unfreeze", None, key=new_key())
            harness.transfer(ca, aid, m, 1)
            merchant += 1
            expect[aid] -= 1
        for cl in clients:
            check_eq(cl.account(m)["balance"], merchant, "merchant seen on port %d" % cl.port)
            for aid, bal in expect.items():
                check_eq(cl.account(aid)["balance"], bal, "%s on port %d" % (aid, cl.port))
        harness.check_conservation(a.all_accounts())
        for cl in clients:
            cl.close()
        for s in f.servers:
            check_eq(s.stop(), 0, "clean stop")
        f.servers[0].check_verify()


# ------------------------------------------------------------------------------------------------
# load over three servers, one killed


class Rec:
    """One keyed POST with its final answer: 201 (raw bytes, ids, legs) or a 422 code."""

    def __init__(self, key, body):
        self.key = key
        self.body = body
        self.status = None
        self.raw = None
        self.code = None
        self.ids = []
        self.legs = body["legs"] if "legs" in body else [body]
        self.retries = 0

    def acknowledge(self, raw):
        parsed = harness.json.loads(raw)
        self.status = 201
        self.raw = raw
        if "legs" in self.body:
            self.ids = [x["id"] for x in parsed["legs"]]
        else:
            self.ids = [parsed["id"]]
        return len(self.ids) == len(self.legs)


class Pool:
    """The servers the load may use, and per-thread clients to them."""

    def __init__(self, servers):
        self.servers = list(servers)
        self.dead = set()
        self.lock = threading.Lock()

    def alive(self):
        with self.lock:
            return [s for s in self.servers if s not in self.dead]


def send_until_final(pool, clients, rec, rnd, deadline, stats, lock):
    """POSTs rec, on any live server, until the answer is final (201 or 422) or the deadline
    passes. Connection errors, 503 and 409 in_flight are retried with the same key and body,
    each time on a server picked at random (so often another one)."""
    while time.monotonic() < deadline:
        alive = pool.alive()
        if not alive:
            raise harness.TestFailure("no server left")
        srv = rnd.choice(alive)
        cl = clients.get(srv)
        if cl is None:
            cl = clients[srv] = harness.Client(srv.port, srv.token, retry=False, timeout=15)
        try:
            st, h, raw = cl.raw("POST", TRANSFERS, rec.body, key=rec.key)
        except (OSError, harness.http.client.HTTPException):
            cl.close()
            rec.retries += 1
            with lock:
                stats["conn_errors"] += 1
            time.sleep(0.01)
            continue
        ctype = h.get("Content-Type", "") or ""
        if st == 201:
            if not rec.acknowledge(raw):
                raise harness.TestFailure("201 of key %s has the wrong shape: %r"
                                          % (rec.key, raw[:300]))
            return True
        code = None
        if "json" in ctype:
            try:
                code = harness.json.loads(raw).get("code")
            except ValueError:
                pass
        if st == 503 and code in RETRY_CODES_503:
            check("application/problem+json" in ctype,
                  "503 without problem+json: %r %r" % (ctype, raw[:200]))
            rec.retries += 1
            with lock:
                stats["503:" + code] = stats.get("503:" + code, 0) + 1
            time.sleep(0.02)
            continue
        if st == 409 and code == "idempotency_key_in_flight":
            rec.retries += 1
            with lock:
                stats["409_in_flight"] += 1
            time.sleep(0.01)
            continue
        if st == 422 and code == "insufficient_funds":
            rec.status, rec.raw, rec.code = st, raw, code
            return True
        raise harness.TestFailure("POST %s key %s on port %d: unexpected %d %r"
                                  % (TRANSFERS, rec.key, srv.port, st, raw[:300]))
    return False


def load_worker(i, pool, customers, merchants, stop, done, unknown, lock, stats, seed):
    rnd = random.Random(seed)
    clients = {}
    try:
        while not stop.is_set():
            # the poor wallets (the last three) are picked less often than the rich ones
            d = rnd.choice(customers[:3] if rnd.random() < 0.75 else customers[3:])
            dice = rnd.random()
            if dice < 0.15:
                m1, m2 = rnd.sample(merchants, 2)
                body = {"legs": [
                    {"debit_account_id": d, "credit_account_id": m1,
                     "amount": rnd.randint(1, 3000), "currency": "USD"},
                    {"debit_account_id": d, "credit_account_id": m2,
                     "amount": rnd.randint(1, 50), "currency": "USD", "code": "fee"}]}
            elif dice < 0.3:
                other = rnd.choice([x for x in customers if x != d])
                body = {"debit_account_id": d, "credit_account_id": other,
                        "amount": rnd.randint(1, 3000), "currency": "USD"}
            else:
                body = {"debit_account_id": d, "credit_account_id": rnd.choice(merchants),
                        "amount": rnd.randint(1, 3000), "currency": "USD"}
            rec = Rec(new_key("ms%d" % i), body)
            final = send_until_final(pool, clients, rec, rnd, time.monotonic() + 20.0, stats,
                                     lock)
            with lock:
                (done if final else unknown).append(rec)
    finally:
        for cl in clients.values():
            cl.close()


def test_load_with_kill9(ctx):
    with Fleet(ctx, 3) as f:
        c0 = f.servers[0].client()
        src = make_source(c0)["id"]
        # rich wallets never run dry; poor ones do, so overdraft protection is exercised across
        # servers (each writer re-reads the balance inside the global write lock)
        funding = {}
        customers = []
        for j in range(6):
            cl = f.servers[j % 3].client()
            a = make_account(cl)["id"]
            funding[a] = 10 ** 9 if j < 3 else 40000
            harness.transfer(cl, src, a, funding[a])
            customers.append(a)
            cl.close()
        merchants = []
        for j in range(4):
            cl = f.servers[j % 3].client()
            merchants.append(make_account(cl, kind="merchant")["id"])
            cl.close()
        pool = Pool(f.servers)
        stop = threading.Event()
        lock = threading.Lock()
        done, unknown, errors = [], [], []
        stats = {"conn_errors": 0, "409_in_flight": 0}
        threads_n = 12

        def run(i):
            try:
                load_worker(i, pool, customers, merchants, stop, done, unknown, lock, stats,
                            random.random())
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append("thread %d: %s" % (i, e))

        threads = [threading.Thread(target=run, args=(i,), daemon=True)
                   for i in range(threads_n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(1.5)
        victim = f.servers[1]
        survivors = [f.servers[0], f.servers[2]]
        for s in f.servers:
            check(s.running(), "server died under load: %s" % s.crashed())
        with lock:
            before_kill = len(done)
        victim.kill9()
        with pool.lock:
            pool.dead.add(victim)
        t_kill = time.monotonic()
        time.sleep(2.0)
        with lock:
            after_kill = len(done) - before_kill
        stop.set()
        for t in threads:
            t.join(timeout=40)
            check(not t.is_alive(), "a load thread hangs")
        check(not errors, "load: %s" % errors[:3])
        for s in survivors:
            check(s.running(), "a surviving server died: %s" % s.crashed())
        check(before_kill > 0, "nothing answered before the kill")
        check(after_kill > 0, "the two surviving servers answered nothing in the 2 s after "
                              "the kill")

        # anything that never got a final answer is resolved now, with its key, on a survivor
        cl = survivors[0].client(timeout=15)
        rnd = random.Random()
        for rec in unknown:
            check(send_until_final(Pool(survivors), {}, rec, rnd, time.monotonic() + 20, stats,
                                   lock), "key %s still has no final answer" % rec.key)
            done.append(rec)
        acked = [r for r in done if r.status == 201]
        refused = [r for r in done if r.status == 422]
        check(acked, "no transfer acknowledged")

        # every acknowledged transfer: GET by id on a survivor matches its leg
        problems = []

        def get_worker(i):
            cli = survivors[i % 2].client()
            try:
                for rec in acked[i::4]:
                    for tr_id, leg in zip(rec.ids, rec.legs):
                        st, _h, tr = cli.get(TRANSFERS + "/" + tr_id)
                        if st != 200 or (tr["debit_account_id"], tr["credit_account_id"],
                                         tr["amount"], tr["status"]) != (
                                leg["debit_account_id"], leg["credit_account_id"],
                                leg["amount"], "posted"):
                            with lock:
                                problems.append("GET %s (key %s): %d %s"
                                                % (tr_id, rec.key, st, str(tr)[:200]))
            finally:
                cli.close()

        run_threads(4, get_worker)
        check(not problems, "%d acknowledged transfers wrong on the survivors:\n  %s"
              % (len(problems), "\n  ".join(problems[:10])))

        # exactly once: every acknowledged id once in each of its two accounts' histories, and
        # no transfer in any history that was not acknowledged (funding aside)
        seen = {}
        for acct in customers + merchants:
            for e in cl.history(acct):
                seen.setdefault(e["id"], []).append(acct)
        acked_ids = {}
        for rec in acked:
            for tr_id, leg in zip(rec.ids, rec.legs):
                check(tr_id not in acked_ids, "transfer id %s acknowledged twice (keys %s, %s)"
                      % (tr_id, acked_ids.get(tr_id), rec.key))
                acked_ids[tr_id] = rec.key
                check_eq(sorted(seen.get(tr_id, [])),
                         sorted([leg["debit_account_id"], leg["credit_account_id"]]),
                         "histories holding transfer %s (key %s)" % (tr_id, rec.key))
        funding_ids = {e["id"] for a in customers for e in cl.history(a)
                       if e["debit_account_id"] == src}
        phantoms = set(seen) - set(acked_ids) - funding_ids
        check(not phantoms, "%d transfers exist that no client was told about: %s"
              % (len(phantoms), sorted(phantoms)[:10]))

        # re-POST of every acknowledged key and body, to a survivor: the very same answer
        def repost_worker(i):
            cli = survivors[(i + 1) % 2].client()
            try:
                for rec in acked[i::6]:
                    st, _h, raw = cli.raw("POST", TRANSFERS, rec.body, key=rec.key)
                    if st != 201 or raw != rec.raw:
                        with lock:
                            problems.append("re-POST key %s: %d %r (first answer %r)"
                                            % (rec.key, st, raw[:160], rec.raw[:160]))
            finally:
                cli.close()

        run_threads(6, repost_worker)
        check(not problems, "%d re-POSTs did not replay:\n  %s"
              % (len(problems), "\n  ".join(problems[:10])))

        # money: exact balances, conservation, no overdraft
        accounts = cl.all_accounts()
        harness.check_conservation(accounts)
        by_id = {a["id"]: a for a in accounts}
        bal = {a: funding.get(a, 0) for a in customers + merchants}
        for rec in acked:
            for leg in rec.legs:
                bal[leg["debit_account_id"]] -= leg["amount"]
                bal[leg["credit_account_id"]] += leg["amount"]
        for a, expected in bal.items():
            check_eq(by_id[a]["balance"], expected,
                     "balance of %s == funding + acknowledged transfers" % a)
        for a in accounts:
            if a["no_overdraft"]:
                check(a["available"] >= 0 and a["balance"] >= 0,
                      "no_overdraft account below zero: %s" % a)
        for r in refused:
            check_eq(r.code, "insufficient_funds", "refusal code")
        cl.close()
        c0.close()

        print("  %d acknowledged, %d refused (%d answered before the kill, %d in the 2 s "
              "after), "
              "%d resolved after the load; retries: %s; %.1f s"
              % (len(acked), len(refused), before_kill, after_kill, len(unknown), stats,
                 time.monotonic() - t0), flush=True)
        check(any(r.code == "insufficient_funds" for r in refused),
              "no wallet ran dry: overdraft protection across servers was not exercised")
        survivors[0].check_verify()  # while the other survivor still runs
        for s in survivors:
            check_eq(s.stop(), 0, "clean stop of a survivor")
        out = victim.check_verify()
        print("  verify: %s" % out.strip()[:100], flush=True)


# ------------------------------------------------------------------------------------------------


def post_final(cl, body, key, tries=200):
    """Re-sends a 503 (storage) answer with the same key until it is something else."""
    for _ in range(tries):
        st, h, raw = cl.raw("POST", TRANSFERS, body, key=key)
        if st == 503 and any(c.encode() in raw for c in RETRY_CODES_503):
            time.sleep(0.05)
            continue
        return st, h, raw
    raise harness.TestFailure("key %s: still 503 after %d tries" % (key, tries))


def test_same_key_two_servers(ctx):
    with Fleet(ctx, 3) as f:
        c = f.servers[0].client()
        src = make_source(c)["id"]
        wallet = make_account(c)["id"]
        m = make_account(c, kind="merchant")["id"]
        harness.transfer(c, src, wallet, 10 ** 6)
        # two clients per server: six requests at once, each server seeing two of them
        clients = [f.servers[i % 3].client() for i in range(6)]
        for cl in clients:
            cl.ok(200, "GET", "/healthz")  # open the connections before the race
        answers = {}
        rounds = 20
        balance = 10 ** 6
        for r in range(rounds):
            key = new_key("x%d" % r)
            body = {"debit_account_id": wallet, "credit_account_id": m, "amount": 10 + r,
                    "currency": "USD"}
            barrier = threading.Barrier(len(clients))
            results = [None] * len(clients)

            def worker(i):
                barrier.wait()
                results[i] = post_final(clients[i], body, key)

            run_threads(len(clients), worker)
            created = [raw for st, _h, raw in results if st == 201]
            check(created, "round %d: no 201 among %s" % (r, [x[0] for x in results]))
            check_eq(len(set(created)), 1,
                     "round %d: distinct 201 answers (one transfer id expected)" % r)
            for i, (st, _h, raw) in enumerate(results):
                answers[st] = answers.get(st, 0) + 1
                if st != 201:
                    check(st == 409 and b'"idempotency_key_in_flight"' in raw,
                          "round %d: a concurrent duplicate on port %d got %d %r"
                          % (r, clients[i].port, st, raw[:200]))
            # every server replays the stored answer afterwards
            for s in f.servers:
                cl = s.client()
                st, _h, raw = cl.raw("POST", TRANSFERS, body, key=key)
                check_eq((st, raw), (201, created[0]),
                         "round %d: replay on port %d after the race" % (r, s.port))
                cl.close()
            balance -= body["amount"]
            check_eq(c.account(wallet)["balance"], balance, "round %d: moved exactly once" % r)
        print("  same body, %d rounds: answers %s" % (rounds, answers), flush=True)

        # the same key with a different body on each server at once: exactly one applies
        per_server = clients[:3]
        for r in range(10):
            key = new_key("y%d" % r)
            barrier = threading.Barrier(len(per_server))
            results = [None] * len(per_server)

            def worker2(i):
                body = {"debit_account_id": wallet, "credit_account_id": m, "amount": 100 + i,
                        "currency": "USD"}
                barrier.wait()
                st, _h, raw = post_final(per_server[i], body, key)
                results[i] = (st, raw)

            run_threads(len(per_server), worker2)
            winners = [i for i, (st, _raw) in enumerate(results) if st == 201]
            check_eq(len(winners), 1, "round %d: 201s for one key with three bodies (%s)"
                     % (r, [(st, raw[:120]) for st, raw in results]))
            for st, raw in results:
                if st != 201:
                    check(st in (409, 422) and (b'"idempotency_key_reused"' in raw
                                                or b'"idempotency_key_in_flight"' in raw),
                          "round %d: a conflicting body got %d %r" % (r, st, raw[:200]))
            balance -= 100 + winners[0]
            check_eq(c.account(wallet)["balance"], balance, "round %d: moved exactly once" % r)
        check_eq(len(c.history(wallet)), 1 + rounds + 10, "one transfer per key")
        harness.check_conservation(c.all_accounts())
        for cl in clients:
            cl.close()
        c.close()
        for s in f.servers:
            check_eq(s.stop(), 0, "clean stop")
        f.servers[0].check_verify()


TESTS = [test_start_together, test_account_visible_everywhere, test_load_with_kill9,
         test_same_key_two_servers]

if __name__ == "__main__":
    if not harness.PG_URL:
        print("test_multiserver.py: COFFER_TEST_PG_URL is not set; every test will FAIL",
              file=sys.stderr, flush=True)
    harness.main(TESTS)
