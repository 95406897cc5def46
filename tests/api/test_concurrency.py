#!/usr/bin/env python3
"""test_concurrency.py - many clients at once against one Coffer server.

  * 32 threads, each on its own keep-alive connection, drain one no_overdraft wallet into
    several merchants with random small amounts: every acknowledged transfer is in the balances,
    the wallet never goes below zero, every refusal is insufficient_funds.
  * The same Idempotency-Key sent by 8 threads at once: the transfer is applied once; the others
    get the stored answer or 409 idempotency_key_in_flight.
  * Concurrent holds posted and voided on one wallet, and concurrent account creation.
  * `coffer verify` is ok afterwards.

Usage: test_concurrency.py --bin build/coffer --src . [test names...]
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
ACCOUNTS = "/v1/ledger/accounts"
BATCH = "/v1/ledger/transfers/batch"


def post_final(client, path, body, key, tries=200):
    """POSTs until the answer is final: 409 in_flight and 503 are retried with the same key."""
    for _ in range(tries):
        status, h, parsed = client.request("POST", path, body, key=key)
        code = parsed.get("code") if isinstance(parsed, dict) else None
        if status == 409 and code == "idempotency_key_in_flight":
            time.sleep(0.01)
            continue
        if status == 503 and code in ("overloaded", "storage_unavailable"):
            time.sleep(0.05)
            continue
        return status, h, parsed
    raise harness.TestFailure("%s with key %s: still not final after %d tries" % (path, key, tries))


def test_drain_one_wallet(ctx):
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    wallet = make_account(c, kind="customer")["id"]
    merchants = [make_account(c, kind="merchant")["id"] for _ in range(5)]
    funding = 1000 * 100  # 1000.00 USD in minor units
    fund(c, src, wallet, funding)
    threads_n, attempts = 32, 60
    lock = threading.Lock()
    acked = []       # (transfer id, merchant, amount)
    refused = []     # problem codes of 4xx answers
    unexpected = []

    def worker(i):
        rnd = random.Random(1000 + i)
        cl = srv.client()
        try:
            for j in range(attempts):
                m = rnd.choice(merchants)
                amount = rnd.randint(1, 1000)
                body = {"debit_account_id": wallet, "credit_account_id": m, "amount": amount,
                        "currency": "USD"}
                status, _h, parsed = post_final(cl, TRANSFERS, body, new_key("w%d-%d" % (i, j)))
                with lock:
                    if status == 201:
                        acked.append((parsed["id"], m, amount))
                    elif status == 422:
                        refused.append(parsed.get("code"))
                    else:
                        unexpected.append((status, parsed))
        finally:
            cl.close()

    t0 = time.monotonic()
    run_threads(threads_n, worker)
    elapsed = time.monotonic() - t0
    check(not unexpected, "unexpected answers: %s" % unexpected[:5])
    check_eq(len(acked) + len(refused), threads_n * attempts, "answers")
    others = [x for x in refused if x != "insufficient_funds"]
    check(not others, "422s that are not insufficient_funds: %s" % others[:10])
    check(refused, "the wallet never ran dry: the test did not reach the limit")
    check(acked, "no transfer succeeded")
    check_eq(len({a[0] for a in acked}), len(acked), "distinct transfer ids")
    spent = sum(a[2] for a in acked)
    w = c.account(wallet)
    check_eq(w["balance"], funding - spent, "wallet balance == funding - acknowledged")
    check(w["balance"] >= 0 and w["available"] >= 0, "wallet below zero: %s" % w)
    check_eq((w["debits_pending"], w["available"]), (0, w["balance"]), "no holds")
    for m in merchants:
        exp = sum(a[2] for a in acked if a[1] == m)
        got = c.account(m)
        check_eq((got["credits_posted"], got["balance"]), (exp, exp), "merchant %s" % m)
    hist = c.history(wallet)
    check_eq(len(hist), 1 + len(acked), "wallet history length")
    check_eq({e["id"] for e in hist if e["debit_account_id"] == wallet}, {a[0] for a in acked},
             "wallet history holds exactly the acknowledged transfers")
    harness.check_conservation(c.all_accounts())
    print("  %d transfers acknowledged, %d refused in %.1f s"
          % (len(acked), len(refused), elapsed), flush=True)
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def test_same_key_many_threads(ctx):
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    wallet = make_account(c)["id"]
    m = make_account(c, kind="merchant")["id"]
    fund(c, src, wallet, 100000)
    rounds, threads_n = 25, 8
    clients = [srv.client() for _ in range(threads_n)]
    for cl in clients:
        cl.ok(200, "GET", "/healthz")  # open the connections before the race
    answers_seen = {}
    for r in range(rounds):
        key = new_key("same%d" % r)
        body = {"debit_account_id": wallet, "credit_account_id": m, "amount": 7 + r,
                "currency": "USD"}
        before = c.account(wallet)["balance"]
        barrier = threading.Barrier(threads_n)
        results = [None] * threads_n

        def worker(i):
            barrier.wait()
            st, _h, raw = clients[i].raw("POST", TRANSFERS, body, key=key)
            results[i] = (st, raw)

        run_threads(threads_n, worker)
        created = [raw for st, raw in results if st == 201]
        check(created, "round %d: no 201 among %s" % (r, [s for s, _ in results]))
        check_eq(len(set(created)), 1, "round %d: all 201 answers byte-equal" % r)
        for st, raw in results:
            if st != 201:
                check(st == 409 and b'"idempotency_key_in_flight"' in raw,
                      "round %d: a concurrent duplicate got %d %r" % (r, st, raw[:200]))
        for st, _raw in results:
            answers_seen[st] = answers_seen.get(st, 0) + 1
        # afterwards the key answers the stored response
        st, _h, raw = c.raw("POST", TRANSFERS, body, key=key)
        check_eq((st, raw), (201, created[0]), "round %d: replay after the race" % r)
        check_eq(c.account(wallet)["balance"], before - body["amount"],
                 "round %d: the balance moved once" % r)
    check_eq(len(c.history(wallet)), 1 + rounds, "one transfer per key")
    print("  answers over %d rounds: %s" % (rounds, answers_seen), flush=True)

    # the same key with different bodies at once: exactly one applied
    for r in range(10):
        key = new_key("diff%d" % r)
        before = c.account(wallet)["balance"]
        barrier = threading.Barrier(threads_n)
        results = [None] * threads_n

        def worker2(i):
            body = {"debit_account_id": wallet, "credit_account_id": m, "amount": 100 + i,
                    "currency": "USD"}
            barrier.wait()
            st, _h, parsed = clients[i].request("POST", TRANSFERS, body, key=key)
            results[i] = (st, parsed)

        run_threads(threads_n, worker2)
        winners = [(i, p) for i, (st, p) in enumerate(results) if st == 201]
        check_eq(len(winners), 1, "round %d: transfers created for one key (%s)"
                 % (r, [s for s, _ in results]))
        for st, p in results:
            if st != 201:
                check(st in (409, 422) and p.get("code") in ("idempotency_key_in_flight",
                                                             "idempotency_key_reused"),
                      "round %d: a conflicting request got %d %s" % (r, st, p))
        check_eq(c.account(wallet)["balance"], before - (100 + winners[0][0]),
                 "round %d: the balance moved once" % r)
    for cl in clients:
        cl.close()
    harness.check_conservation(c.all_accounts())
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def test_concurrent_holds(ctx):
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    wallet = make_account(c)["id"]
    merchants = [make_account(c, kind="merchant")["id"] for _ in range(3)]
    funding = 50000
    fund(c, src, wallet, funding)
    lock = threading.Lock()
    posted = {m: 0 for m in merchants}
    stats = {"held": 0, "refused": 0, "posted": 0, "voided": 0}
    problems = []

    def worker(i):
        rnd = random.Random(7000 + i)
        cl = srv.client()
        try:
            for _ in range(12):
                m = rnd.choice(merchants)
                amount = rnd.randint(100, 2000)
                status, _h, p = post_final(cl, TRANSFERS, {
                    "debit_account_id": wallet, "credit_account_id": m, "amount": amount,
                    "currency": "USD", "pending": True}, new_key("hold"))
                if status == 422:
                    with lock:
                        stats["refused"] += 1
                        if p.get("code") != "insufficient_funds":
                            problems.append(p)
                    continue
                if status != 201:
                    with lock:
                        problems.append((status, p))
                    continue
                with lock:
                    stats["held"] += 1
                if rnd.random() < 0.6:
                    part = rnd.randint(1, amount)
                    st, _h, r = post_final(cl, TRANSFERS + "/" + p["id"] + "/post",
                                           {"amount": part}, new_key("post"))
                    with lock:
                        if st == 200 and r["posted_amount"] == part:
                            posted[m] += part
                            stats["posted"] += 1
                        else:
                            problems.append((st, r))
                else:
                    st, _h, r = post_final(cl, TRANSFERS + "/" + p["id"] + "/void", None,
                                           new_key("void"))
                    with lock:
                        if st == 200 and r["status"] == "voided":
                            stats["voided"] += 1
                        else:
                            problems.append((st, r))
        finally:
            cl.close()

    run_threads(16, worker)
    check(not problems, "unexpected answers: %s" % problems[:5])
    w = c.account(wallet)
    total = sum(posted.values())
    check_eq((w["balance"], w["available"], w["debits_pending"]),
             (funding - total, funding - total, 0), "wallet after the holds")
    for m in merchants:
        got = c.account(m)
        check_eq((got["balance"], got["credits_pending"]), (posted[m], 0), "merchant " + m)
    harness.check_conservation(c.all_accounts())
    print("  holds: %s" % stats, flush=True)
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def test_concurrent_account_creation(ctx):
    srv = ctx.server(log_level="warn")
    lock = threading.Lock()
    made = []

    def worker(i):
        cl = srv.client()
        try:
            for j in range(10):
                a = make_account(cl, kind=random.choice(["customer", "merchant"]),
                                 owner="t%d-%d" % (i, j))
                with lock:
                    made.append((a["id"], a["owner"]))
        finally:
            cl.close()

    run_threads(16, worker)
    c = srv.client()
    listed = c.all_accounts(limit=37)
    check_eq(len(listed), 160, "listed accounts")
    check_eq(sorted((a["id"], a["owner"]) for a in listed), sorted(made),
             "every created account listed once, with its owner")
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def race(clients, fn):
    """Runs fn(i, client) on one thread per client, released together; returns the results."""
    results = [None] * len(clients)
    barrier = threading.Barrier(len(clients))

    def worker(i):
        barrier.wait()
        results[i] = fn(i, clients[i])

    run_threads(len(clients), worker)
    return results


def test_post_void_race(ctx):
    """Posts and voids of one hold at once: exactly one wins, the rest get a 409."""
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    wallet = make_account(c)["id"]
    m = make_account(c, kind="merchant")["id"]
    fund(c, src, wallet, 100000)
    clients = [srv.client() for _ in range(8)]
    for cl in clients:
        cl.ok(200, "GET", "/healthz")
    posted_total = 0
    for r in range(20):
        hold = harness.transfer(c, wallet, m, 100 + r, pending=True)["id"]

        def act(i, cl):
            if i % 2:
                return cl.post(TRANSFERS + "/" + hold + "/post", {"amount": 10 + i})
            return cl.post(TRANSFERS + "/" + hold + "/void")

        res = race(clients, act)
        wins = [i for i, (st, _h, _p) in enumerate(res) if st == 200]
        check_eq(len(wins), 1, "round %d: winners among %s" % (r, [x[0] for x in res]))
        w = wins[0]
        final = c.transfer(hold)
        check_eq(final["status"], "posted" if w % 2 else "voided", "round %d: final status" % r)
        loser_code = "transfer_already_posted" if w % 2 else "transfer_already_voided"
        for i, (st, _h, p) in enumerate(res):
            if i != w:
                check(st == 409 and p.get("code") == loser_code,
                      "round %d: loser %d got %d %s (winner %d)" % (r, i, st, p, w))
        if w % 2:
            posted_total += 10 + w
            check_eq(final["posted_amount"], 10 + w, "round %d: posted amount" % r)
    for cl in clients:
        cl.close()
    acct = c.account(wallet)
    check_eq((acct["balance"], acct["available"], acct["debits_pending"]),
             (100000 - posted_total, 100000 - posted_total, 0), "wallet after the races")
    check_eq(c.account(m)["balance"], posted_total, "merchant after the races")
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def test_batch_item_key_race(ctx):
    """The same batch item key in batches sent at once: one created, the others exist."""
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    wallet = make_account(c)["id"]
    m = make_account(c, kind="merchant")["id"]
    fund(c, src, wallet, 100000)
    clients = [srv.client() for _ in range(8)]
    for cl in clients:
        cl.ok(200, "GET", "/healthz")
    for r in range(15):
        k = new_key("item%d" % r)
        item = {"debit_account_id": wallet, "credit_account_id": m, "amount": 9,
                "currency": "USD", "idempotency_key": k}
        res = race(clients, lambda i, cl: cl.request(
            "POST", BATCH, {"transfers": [dict(item, idempotency_key=new_key("other")), item]}))
        for st, _h, p in res:
            check_eq(st, 200, "round %d: batch status" % r)
        shared = [p["data"][1] for _st, _h, p in res]
        check_eq(sorted(x["status"] for x in shared), ["created"] + ["exists"] * 7,
                 "round %d: statuses of the shared item" % r)
        check_eq(len({x["transfer"]["id"] for x in shared}), 1, "round %d: one transfer" % r)
    check_eq(c.account(wallet)["balance"], 100000 - 15 * 9 * 9, "wallet after the races")
    for cl in clients:
        cl.close()
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def test_freeze_is_immediate(ctx):
    """Once a freeze is acknowledged, no debit sent afterwards succeeds; once an unfreeze is,
    debits succeed again. Transfers keep flowing from other threads the whole time."""
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    wallet = make_account(c)["id"]
    m = make_account(c, kind="merchant")["id"]
    fund(c, src, wallet, 10 ** 7)
    stop = threading.Event()
    log = []
    lock = threading.Lock()

    def worker(i):
        cl = srv.client()
        try:
            while not stop.is_set():
                t_send = time.monotonic()
                st, _h, p = cl.post(TRANSFERS, {"debit_account_id": wallet,
                                                "credit_account_id": m, "amount": 3,
                                                "currency": "USD"})
                t_recv = time.monotonic()
                with lock:
                    log.append((t_send, t_recv, st, p.get("code") if st != 201 else None))
        finally:
            cl.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t_freeze_sent = time.monotonic()
    c.ok(200, "POST", ACCOUNTS + "/" + wallet + "/freeze", None, key=new_key())
    t_frozen = time.monotonic()
    time.sleep(0.3)
    t_unfreeze_sent = time.monotonic()
    c.ok(200, "POST", ACCOUNTS + "/" + wallet + "/unfreeze", None, key=new_key())
    t_unfrozen = time.monotonic()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    ok = 0
    for t_send, t_recv, st, code in log:
        check(st == 201 or (st == 422 and code == "account_frozen"),
              "unexpected answer %d %s" % (st, code))
        if t_frozen < t_send and t_recv < t_unfreeze_sent:
            check(st == 422, "a debit sent after the freeze was acknowledged succeeded")
        if t_recv < t_freeze_sent or t_send > t_unfrozen:
            check(st == 201, "a debit while not frozen was refused: %s" % code)
        ok += st == 201
    during = [x for x in log if t_frozen < x[0] and x[1] < t_unfreeze_sent]
    check(during, "no debit was tried while the account was frozen")
    check_eq(c.account(wallet)["balance"], 10 ** 7 - 3 * ok, "wallet == funding - acknowledged")
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def test_expiry_races_post(ctx):
    """Posts sent around a hold's expiry: each hold ends either posted (the post got 200) or
    expired (the post got 409 transfer_expired), and the balances agree."""
    srv = ctx.server(log_level="warn")
    c = srv.client()
    src = make_source(c)["id"]
    wallet = make_account(c)["id"]
    m = make_account(c, kind="merchant")["id"]
    fund(c, src, wallet, 100000)
    holds = []
    for i in range(12):
        holds.append((harness.transfer(c, wallet, m, 1000, pending=True, timeout_s=1)["id"],
                      time.monotonic()))
    results = {}

    def worker(i):
        cl = srv.client()
        try:
            hold, t_made = holds[i]
            time.sleep(max(0.0, t_made + 0.85 + 0.025 * i - time.monotonic()))
            st, _h, p = cl.post(TRANSFERS + "/" + hold + "/post", {"amount": 400})
            results[hold] = (st, p)
        finally:
            cl.close()

    run_threads(len(holds), worker)
    deadline = time.monotonic() + 3.0
    posted = 0
    outcome = {}
    for hold, _t in holds:
        st, p = results[hold]
        if st == 200:
            outcome["posted"] = outcome.get("posted", 0) + 1
            check_eq(p["status"], "posted", "post answer")
            check_eq(c.transfer(hold)["status"], "posted", "a posted hold stays posted")
            posted += 400
        else:
            outcome["expired"] = outcome.get("expired", 0) + 1
            check(st == 409 and p.get("code") == "transfer_expired",
                  "post near expiry: %d %s" % (st, p))
            while c.transfer(hold)["status"] != "expired":
                check(time.monotonic() < deadline, "hold %s never expired" % hold)
                time.sleep(0.05)
    acct = c.account(wallet)
    check_eq((acct["balance"], acct["available"], acct["debits_pending"]),
             (100000 - posted, 100000 - posted, 0), "wallet after the holds ended")
    check_eq(c.account(m)["balance"], posted, "merchant")
    print("  outcomes: %s" % outcome, flush=True)
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


TESTS = [
    test_drain_one_wallet,
    test_same_key_many_threads,
    test_concurrent_holds,
    test_concurrent_account_creation,
    test_post_void_race,
    test_batch_item_key_race,
    test_freeze_is_immediate,
    test_expiry_races_post,
]

if __name__ == "__main__":
    harness.main(TESTS)
