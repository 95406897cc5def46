#!/usr/bin/env python3
"""test_api.py - drives a real Coffer server over HTTP: accounts, transfers, pending holds,
freezes, history, batches, idempotency, input validation (with the ledger unchanged after
every rejected request), routing, auth (staff sessions by role; the operator token is refused
on the ledger), idempotency keys per caller, metrics, and `coffer verify` at the end.

Most tests share one server and create their own accounts; the restart test has its own.
Usage: test_api.py --bin build/coffer --src . [test names...]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (check, check_eq, fund, id_number, make_account, make_source,  # noqa: E402
                     new_key, transfer)

ACCOUNTS = "/v1/ledger/accounts"
TRANSFERS = "/v1/ledger/transfers"
BATCH = "/v1/ledger/transfers/batch"
UNKNOWN_ACCT = "acct_00000000ZZZZZ"  # well formed, never created in these tests


def problem_check(status, headers, body, exp_status, exp_code, what):
    check(status == exp_status, "%s: expected %d %s, got %d: %s"
          % (what, exp_status, exp_code, status, str(body)[:400]))
    ctype = headers.get("Content-Type", "")
    check(ctype.startswith("application/problem+json"),
          "%s: content type %r is not application/problem+json" % (what, ctype))
    check(isinstance(body, dict), "%s: problem body is not an object: %r" % (what, body))
    if isinstance(exp_code, (set, tuple, list)):
        check(body.get("code") in exp_code, "%s: code %r not in %r"
              % (what, body.get("code"), sorted(exp_code)))
    else:
        check_eq(body.get("code"), exp_code, what + ": problem code")
    check_eq(body.get("status"), exp_status, what + ": problem status field")


def setup_wallets(c, amount=1000, currency="USD"):
    """A funding source, a funded customer wallet and an empty merchant account."""
    src = make_source(c, currency)
    a = make_account(c, currency=currency, kind="customer")
    m = make_account(c, currency=currency, kind="merchant")
    if amount:
        fund(c, src, a, amount, currency)
    return src["id"], a["id"], m["id"]


def snapshot(c, ids):
    """Everything a rejected request must not change: every account (with its totals and
    flags), and the history length of the accounts involved."""
    return {"accounts": c.all_accounts(),
            "history": {i: len(c.history(i)) for i in ids}}


def check_unchanged(before, after, what):
    if before == after:
        return
    b_acc = {a["id"]: a for a in before["accounts"]}
    a_acc = {a["id"]: a for a in after["accounts"]}
    diffs = []
    for k in sorted(set(b_acc) | set(a_acc)):
        if b_acc.get(k) != a_acc.get(k):
            diffs.append("%s: %s -> %s" % (k, b_acc.get(k), a_acc.get(k)))
    for k in before["history"]:
        if before["history"][k] != after["history"].get(k):
            diffs.append("history of %s: %d -> %s entries"
                         % (k, before["history"][k], after["history"].get(k)))
    raise harness.TestFailure("%s changed the ledger: %s" % (what, "; ".join(diffs)[:1500]))


# ------------------------------------------------------------------------------------------------
# public endpoints, auth, routing, request ids, metrics


def test_healthz_without_token(ctx):
    c = ctx.shared().client()
    status, h, body = c.get("/healthz", token=None)
    check_eq(status, 200, "GET /healthz without a token")
    check_eq(body, {"status": "ok"}, "healthz body")
    check(h.get("X-Request-Id"), "healthz answer has no X-Request-Id")


# Every route that needs a staff session, with a body good enough to reach authorization.
STAFF_ROUTES = [("GET", ACCOUNTS, None), ("GET", "/metrics", None),
                ("POST", ACCOUNTS, {"currency": "USD"}), ("POST", TRANSFERS, {"amount": 1})]
READ_ROUTES = [r for r in STAFF_ROUTES if r[0] == "GET"]
WRITE_ROUTES = [r for r in STAFF_ROUTES if r[0] == "POST"]


def check_answers(c, routes, auth, exp_status, exp_code, what):
    """Every (method, path, body) in routes, sent with the Authorization header auth, must get
    exp_status (a problem exp_code unless exp_status is 2xx); a 401 must say Bearer."""
    for method, path, body in routes:
        status, h, pb = c.request(method, path, body, token=auth,
                                  key=new_key() if method == "POST" else None)
        where = "%s %s with %s" % (method, path, what)
        if exp_status < 300:
            check_eq(status, exp_status, where + ": " + str(pb)[:300])
            continue
        problem_check(status, h, pb, exp_status, exp_code, where)
        if exp_status == 401:
            check(h.get("WWW-Authenticate", "").startswith("Bearer"),
                  "401 without WWW-Authenticate: Bearer (%s)" % where)


def test_auth_required(ctx):
    srv = ctx.shared()
    c = srv.client()
    before = snapshot(c, [])
    session, operator = srv.token, srv.operator_token
    check(session.startswith("cfs_") and session != operator,
          "srv.token is a session token, not the operator token")
    # a session token with one character changed: well formed, but no such session
    forged = session[:-1] + ("A" if session[-1] != "A" else "B")
    cases = [
        ("no token", None),
        ("wrong token", "Bearer cft_" + "0" * 64),
        ("forged session token", "Bearer " + forged),
        ("empty bearer", "Bearer "),
        ("basic scheme", "Basic " + session),
        ("basic scheme, operator token", "Basic " + operator),
        ("token without scheme", session),
        ("operator token without scheme", operator),
        ("token with a suffix", "Bearer " + session + "x"),
        ("operator token with a suffix", "Bearer " + operator + "x"),
    ]
    for what, auth in cases:
        check_answers(c, STAFF_ROUTES + [("GET", "/v1/ledger/currencies", None)], auth, 401,
                      "unauthorized", what)
    # The operator token is genuine but may only create the first admin: 403 everywhere else,
    # whatever the spelling of the scheme.
    for scheme in ["Bearer ", "bearer "]:
        check_answers(c, STAFF_ROUTES, scheme + operator, 403, "forbidden",
                      "the operator token (%r)" % scheme)
    status, h, pb = c.post("/v1/bootstrap", {"login": "second-admin@coffer.test",
                                             "password": harness.identity_helpers.DEFAULT_PASSWORD,
                                             "name": "Second Admin"},
                           key=None, token="Bearer " + operator)
    problem_check(status, h, pb, 409, "already_bootstrapped", "a second bootstrap")
    check_unchanged(before, snapshot(c, []), "unauthorized requests")
    # the admin's session works, and the scheme is case-insensitive (RFC 9110)
    for scheme in ["Bearer ", "bearer ", "BEARER "]:
        status, _h, _b = c.get(ACCOUNTS + "?limit=1", token=scheme + session)
        check_eq(status, 200, "admin session with scheme %r" % scheme)
    # staff who may read the ledger read it but cannot write; a customer can do neither
    ih = harness.identity_helpers
    tag = new_key("auth")
    readers = {}
    for role in ["auditor", "support", "risk"]:
        staff = ih.create_staff(srv.port, session, "%s-%s@coffer.test" % (role, tag), role)
        readers[role] = staff
        check_answers(c, READ_ROUTES, "Bearer " + staff.token, 200, None, "a %s session" % role)
        check_answers(c, WRITE_ROUTES, "bearer " + staff.token, 403, "forbidden",
                      "a %s session" % role)
    customer = ih.register_customer(srv.port, session, "customer-%s@coffer.test" % tag)
    check_answers(c, STAFF_ROUTES, "Bearer " + customer.token, 403, "forbidden",
                  "a customer session")
    status, _h, _b = c.get("/v1/ledger/currencies", token="Bearer " + customer.token)
    check_eq(status, 200, "currencies with a customer session")
    # a session that signed out is no longer a token
    auditor = "Bearer " + readers["auditor"].token
    c.ok(200, "POST", "/v1/auth/sign-out", {}, token=auditor)
    check_answers(c, STAFF_ROUTES, auditor, 401, "unauthorized", "a signed-out session")
    check_unchanged(before, snapshot(c, []), "requests refused by role")
    c.close()


def test_routing_404_405(ctx):
    c = ctx.shared().client()
    for path in ["/v1/nope", "/v1/ledger/accounts/acct_0000000000001/bogus", "/", "/v2/ledger/accounts",
                 "/v1/ledger/transfers/tr_0000000000001/post/extra"]:
        status, h, body = c.get(path)
        problem_check(status, h, body, 404, "not_found", "GET " + path)
    cases = [
        ("DELETE", ACCOUNTS, {"GET", "POST"}),
        ("PUT", ACCOUNTS, {"GET", "POST"}),
        ("GET", TRANSFERS, {"POST"}),
        ("POST", "/v1/ledger/accounts/acct_0000000000001", {"GET"}),
        ("GET", "/v1/ledger/accounts/acct_0000000000001/freeze", {"POST"}),
        ("POST", "/healthz", {"GET"}),
        ("POST", "/metrics", {"GET"}),
        ("PATCH", "/v1/ledger/transfers/tr_0000000000001", {"GET"}),
    ]
    for method, path, allowed in cases:
        status, h, body = c.request(method, path, b"{}" if method != "GET" else None,
                                    key=new_key())
        problem_check(status, h, body, 405, "method_not_allowed", "%s %s" % (method, path))
        allow = {m.strip() for m in (h.get("Allow") or "").split(",") if m.strip()}
        check_eq(allow, allowed, "Allow header of %s %s" % (method, path))


def test_request_id_echo(ctx):
    c = ctx.shared().client()
    for path, exp in [("/healthz", 200), (ACCOUNTS + "?limit=1", 200), ("/v1/nope", 404)]:
        status, h, _b = c.get(path, headers={"X-Request-Id": "test-req_42abc"})
        check_eq(status, exp, "GET " + path)
        check_eq(h.get("X-Request-Id"), "test-req_42abc", "echoed X-Request-Id on " + path)
    status, h, _b = c.post(ACCOUNTS, {"currency": "ZZZ"}, headers={"X-Request-Id": "rid-post-1"})
    check_eq(status, 400, "bad account create")
    check_eq(h.get("X-Request-Id"), "rid-post-1", "X-Request-Id echoed on a 400")
    # without one (or with an unusable one) the server makes one up
    ids = set()
    for given in [None, "has space", "x" * 65, "semi;colon"]:
        hdrs = {"X-Request-Id": given} if given is not None else None
        _s, h, _b = c.get("/healthz", headers=hdrs)
        rid = h.get("X-Request-Id")
        check(rid and rid != given, "request id %r: answer carries %r" % (given, rid))
        ids.add(rid)
    check_eq(len(ids), 4, "generated request ids are distinct")


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def test_metrics(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 500)
    fund(c, a, m, 120)
    status, h, text = c.get("/metrics")
    check_eq(status, 200, "GET /metrics")
    check(h.get("Content-Type", "").startswith("text/plain"), "metrics content type")
    for name in ["coffer_http_requests_total", "coffer_ledger_commit_seconds",
                 "coffer_ledger_total_minor"]:
        check(("\n" + name) in ("\n" + text), "/metrics lacks " + name)
    mt = parse_metrics(text)
    creates = [v for k, v in mt.items() if k.startswith("coffer_http_requests_total{")
               and 'route="transfer_create"' in k and 'status="2xx"' in k]
    check(creates and creates[0] >= 2, "no 2xx transfer_create count in /metrics")
    check(any(k.startswith("coffer_ledger_commit_seconds_bucket") for k in mt),
          "no commit histogram buckets")
    # the per-currency totals agree with the accounts and balance out
    accounts = c.all_accounts()
    totals = harness.currency_totals(accounts)
    for cur, (dp, cp, dpe, cpe) in totals.items():
        for label, v in [("debits_posted", dp), ("credits_posted", cp),
                         ("debits_pending", dpe), ("credits_pending", cpe)]:
            key = 'coffer_ledger_total_minor{currency="%s",total="%s"}' % (cur, label)
            check(key in mt, "/metrics lacks " + key)
            check_eq(int(mt[key]), v, key)
    harness.check_conservation(accounts)
    status, h, body = c.get("/metrics", token=None)
    problem_check(status, h, body, 401, "unauthorized", "/metrics without a token")
    # any staff role that reads the ledger reads the metrics; the operator token does not
    srv = ctx.shared()
    auditor = harness.identity_helpers.create_staff(srv.port, srv.token,
                                                    new_key("metrics") + "@coffer.test",
                                                    "auditor")
    status, h, text = c.get("/metrics", token="Bearer " + auditor.token)
    check_eq(status, 200, "GET /metrics as an auditor")
    check_eq({k: v for k, v in parse_metrics(text).items()
              if k.startswith("coffer_ledger_total_minor")},
             {k: v for k, v in mt.items() if k.startswith("coffer_ledger_total_minor")},
             "ledger totals seen by an auditor")
    status, h, body = c.get("/metrics", token="Bearer " + srv.operator_token)
    problem_check(status, h, body, 403, "forbidden", "/metrics with the operator token")


def test_currencies(ctx):
    c = ctx.shared().client()
    body = c.ok(200, "GET", "/v1/ledger/currencies")
    codes = {x["code"]: x for x in body["data"]}
    check("USD" in codes and codes["USD"]["minor_units"] == 2, "USD with 2 minor units listed")
    check("EUR" in codes, "EUR listed")
    check_eq(body["next_cursor"], None, "currencies next_cursor")


# ------------------------------------------------------------------------------------------------
# accounts


def test_account_create_get_defaults(ctx):
    c = ctx.shared().client()
    cust = make_account(c, owner="user-1", metadata={"tier": "gold", "n": 3})
    check(cust["id"].startswith("acct_"), "account id prefix")
    check_eq(cust["currency"], "USD", "currency")
    check_eq(cust["kind"], "customer", "kind")
    check_eq(cust["normal"], "credit", "a customer is credit-normal by default")
    check_eq(cust["no_overdraft"], True, "customer default no_overdraft")
    check_eq(cust["frozen"], False, "frozen")
    check_eq(cust["owner"], "user-1", "owner")
    check_eq(cust["metadata"], {"n": 3, "tier": "gold"}, "metadata")
    for k in ["debits_posted", "credits_posted", "debits_pending", "credits_pending",
              "balance", "available"]:
        check_eq(cust[k], 0, k)
    got = c.account(cust["id"])
    check_eq(got, cust, "GET account equals the create answer")
    merch = make_account(c, kind="merchant")
    check_eq(merch["no_overdraft"], True, "merchant default no_overdraft")
    sysa = make_account(c, kind="system", normal="debit")
    check_eq(sysa["no_overdraft"], False, "system default no_overdraft")
    check_eq(sysa["normal"], "debit", "normal")
    cust2 = make_account(c, kind="customer", no_overdraft=False, currency="EUR")
    check_eq(cust2["no_overdraft"], False, "explicit no_overdraft false")
    check_eq(cust2["currency"], "EUR", "EUR account")
    # unknown and malformed ids
    for path in [ACCOUNTS + "/" + UNKNOWN_ACCT, ACCOUNTS + "/acct_123", ACCOUNTS + "/tr_0000000000001"]:
        status, h, body = c.get(path)
        problem_check(status, h, body, 404, "account_not_found", "GET " + path)


def test_account_list_pagination(ctx):
    c = ctx.shared().client()
    created = [make_account(c, owner="page-%02d" % i)["id"] for i in range(25)]
    seen, pages, cursor = [], [], None
    while True:
        path = ACCOUNTS + "?limit=10" + ("&cursor=" + cursor if cursor else "")
        page = c.ok(200, "GET", path)
        check(len(page["data"]) <= 10, "page larger than limit=10")
        pages.append(len(page["data"]))
        seen.extend(a["id"] for a in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        check(len(page["data"]) == 10, "a non-final page has %d items" % len(page["data"]))
        check(len(pages) < 1000, "pagination does not end")
    check_eq(len(seen), len(set(seen)), "no duplicate ids across pages")
    nums = [id_number(i) for i in seen]
    check(nums == sorted(nums), "accounts are listed in id order")
    check_eq(nums, list(range(nums[0], nums[0] + len(nums))), "no gaps between listed ids")
    check_eq(nums[0], 1, "the list starts at the first account")
    check(set(created) <= set(seen), "some created accounts were not listed")
    pos = [seen.index(i) for i in created]
    check(pos == sorted(pos), "created accounts listed in creation order")
    # the whole list in one page agrees, and an exact-size page has no next cursor
    full = c.ok(200, "GET", ACCOUNTS + "?limit=1000")
    check_eq([a["id"] for a in full["data"]], seen, "limit=1000 listing")
    n = len(seen)
    exact = c.ok(200, "GET", ACCOUNTS + "?limit=%d" % n)
    check_eq(len(exact["data"]), n, "limit=total size")
    check_eq(exact["next_cursor"], None, "next_cursor when the page holds exactly all")
    short = c.ok(200, "GET", ACCOUNTS + "?limit=%d" % (n - 1))
    check(short["next_cursor"] is not None, "next_cursor when one item is left")
    last = c.ok(200, "GET", ACCOUNTS + "?limit=10&cursor=" + short["next_cursor"])
    check_eq([a["id"] for a in last["data"]], [seen[-1]], "page after limit=total-1")
    check_eq(last["next_cursor"], None, "final next_cursor")
    # listed accounts equal what GET answers
    for acct_id in created[:3]:
        check_eq(c.account(acct_id), next(a for a in full["data"] if a["id"] == acct_id),
                 "listed account equals GET")


def test_page_params_invalid(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 10)
    for base in [ACCOUNTS, ACCOUNTS + "/" + a + "/transfers"]:
        for q in ["limit=0", "limit=5000", "limit=1001", "limit=abc", "limit=-1", "limit=",
                  "limit=1.5", "limit=99999999999999999999"]:
            status, h, body = c.get(base + "?" + q)
            problem_check(status, h, body, 400, "invalid_page_size", "GET %s?%s" % (base, q))
        for q in ["cursor=!!!", "cursor=abc", "cursor=" + "Z" * 40, "cursor=acct_0000000000001",
                  "cursor=%00"]:
            status, h, body = c.get(base + "?" + q)
            problem_check(status, h, body, 400, "invalid_cursor", "GET %s?%s" % (base, q))
        check_eq(len(c.ok(200, "GET", base + "?limit=1000")["data"]) >= 1, True,
                 "limit=1000 is accepted")
        c.ok(200, "GET", base + "?limit=1")


# ------------------------------------------------------------------------------------------------
# transfers


def test_transfer_single(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    tr = transfer(c, a, m, 250, code="p2p", metadata={"order": "o-1"})
    check(tr["id"].startswith("tr_"), "transfer id prefix")
    check_eq((tr["type"], tr["status"]), ("transfer", "posted"), "type/status")
    check_eq((tr["debit_account_id"], tr["credit_account_id"]), (a, m), "accounts")
    check_eq((tr["amount"], tr["currency"], tr["code"]), (250, "USD", "p2p"), "amount")
    check_eq(tr["metadata"], {"order": "o-1"}, "metadata")
    check_eq(tr["group_id"], tr["id"], "a single transfer is its own group")
    check_eq(c.transfer(tr["id"]), tr, "GET transfer equals the create answer")
    aa, mm, ss = c.account(a), c.account(m), c.account(src)
    check_eq((aa["balance"], aa["available"], aa["debits_posted"], aa["credits_posted"]),
             (750, 750, 250, 1000), "customer totals")
    check_eq((mm["balance"], mm["available"], mm["credits_posted"]), (250, 250, 250),
             "merchant totals")
    check_eq((ss["balance"], ss["debits_posted"]), (1000, 1000), "source totals")
    for path in [TRANSFERS + "/tr_00000000ZZZZZ", TRANSFERS + "/tr_1", TRANSFERS + "/" + a]:
        status, h, body = c.get(path)
        problem_check(status, h, body, 404, "transfer_not_found", "GET " + path)
    # insufficient funds on a no_overdraft wallet
    status, h, body = c.post(TRANSFERS, {"debit_account_id": a, "credit_account_id": m,
                                         "amount": 751, "currency": "USD"})
    problem_check(status, h, body, 422, "insufficient_funds", "overdraft")
    transfer(c, a, m, 750)  # exactly the balance is fine
    check_eq(c.account(a)["balance"], 0, "drained to zero")


def test_multileg_atomic(ctx):
    c = ctx.shared().client()
    src, a, m1 = setup_wallets(c, 1000)
    m2 = make_account(c, kind="merchant")["id"]
    ids = [src, a, m1, m2]
    before = snapshot(c, ids)
    # second leg overdraws: nothing of the first leg may stay
    status, h, body = c.post(TRANSFERS, {"legs": [
        {"debit_account_id": a, "credit_account_id": m1, "amount": 600, "currency": "USD"},
        {"debit_account_id": a, "credit_account_id": m2, "amount": 600, "currency": "USD"}]})
    problem_check(status, h, body, 422, "insufficient_funds", "legs with an overdrawing 2nd leg")
    check_unchanged(before, snapshot(c, ids), "a failed multi-leg transfer")
    # second leg names an unknown account
    status, h, body = c.post(TRANSFERS, {"legs": [
        {"debit_account_id": a, "credit_account_id": m1, "amount": 10, "currency": "USD"},
        {"debit_account_id": a, "credit_account_id": UNKNOWN_ACCT, "amount": 10,
         "currency": "USD"}]})
    problem_check(status, h, body, 404, "account_not_found", "legs with an unknown account")
    check_unchanged(before, snapshot(c, ids), "a multi-leg transfer with an unknown account")
    # second leg invalid at decode time
    status, h, body = c.post(TRANSFERS, {"legs": [
        {"debit_account_id": a, "credit_account_id": m1, "amount": 10, "currency": "USD"},
        {"debit_account_id": a, "credit_account_id": m2, "amount": 0, "currency": "USD"}]})
    problem_check(status, h, body, 400, "invalid_amount", "legs with amount 0")
    check_unchanged(before, snapshot(c, ids), "a multi-leg transfer with a bad leg")
    # a good one: payment + fee
    body = c.ok(201, "POST", TRANSFERS, {"legs": [
        {"debit_account_id": a, "credit_account_id": m1, "amount": 600, "currency": "USD"},
        {"debit_account_id": a, "credit_account_id": m2, "amount": 15, "currency": "USD",
         "code": "fee"}]}, key=new_key())
    check_eq(len(body["legs"]), 2, "two legs answered")
    check_eq({leg["group_id"] for leg in body["legs"]}, {body["group_id"]}, "one group id")
    check_eq(body["group_id"], body["legs"][0]["id"], "group id is the first leg")
    check_eq([leg["amount"] for leg in body["legs"]], [600, 15], "leg amounts")
    for leg in body["legs"]:
        check_eq(c.transfer(leg["id"]), leg, "GET leg")
    check_eq(c.account(a)["balance"], 385, "payer after the legs")
    check_eq(c.account(m1)["balance"], 600, "merchant 1")
    check_eq(c.account(m2)["balance"], 15, "merchant 2")
    # more than 16 legs
    legs = [{"debit_account_id": a, "credit_account_id": m1, "amount": 1, "currency": "USD"}
            ] * 17
    before = snapshot(c, ids)
    status, h, body = c.post(TRANSFERS, {"legs": legs})
    problem_check(status, h, body, 400, "too_many_legs", "17 legs")
    check_unchanged(before, snapshot(c, ids), "17 legs")


def test_pending_post_partial(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    p = transfer(c, a, m, 500, pending=True)
    check_eq((p["type"], p["status"]), ("pending", "pending"), "pending transfer")
    aa, mm = c.account(a), c.account(m)
    check_eq((aa["balance"], aa["available"], aa["debits_pending"]), (1000, 500, 500),
             "payer while held")
    check_eq((mm["balance"], mm["available"], mm["credits_pending"]), (0, 0, 500),
             "payee while held")
    # a hold counts against available: 600 more does not fit
    status, h, body = c.post(TRANSFERS, {"debit_account_id": a, "credit_account_id": m,
                                         "amount": 600, "currency": "USD"})
    problem_check(status, h, body, 422, "insufficient_funds", "spending held funds")
    # more than held
    status, h, body = c.post(TRANSFERS + "/" + p["id"] + "/post", {"amount": 501})
    problem_check(status, h, body, 422, "amount_exceeds_pending", "post more than held")
    posted = c.ok(200, "POST", TRANSFERS + "/" + p["id"] + "/post", {"amount": 300},
                  key=new_key())
    check_eq((posted["id"], posted["status"], posted["posted_amount"]), (p["id"], "posted", 300),
             "post answer")
    check(posted["resolution_id"], "resolution_id set")
    res = c.transfer(posted["resolution_id"])
    check_eq((res["type"], res["amount"], res["pending_id"]), ("post_pending", 300, p["id"]),
             "resolution entry")
    check_eq(c.transfer(p["id"])["status"], "posted", "GET pending after post")
    aa, mm = c.account(a), c.account(m)
    check_eq((aa["balance"], aa["available"], aa["debits_pending"], aa["debits_posted"]),
             (700, 700, 0, 300), "payer after a partial post")
    check_eq((mm["balance"], mm["available"], mm["credits_pending"]), (300, 300, 0),
             "payee after a partial post")
    before = snapshot(c, [a, m])
    for body in [None, {}, {"amount": 100}]:
        status, h, pb = c.post(TRANSFERS + "/" + p["id"] + "/post", body)
        problem_check(status, h, pb, 409, "transfer_already_posted", "double post %r" % body)
    status, h, pb = c.post(TRANSFERS + "/" + p["id"] + "/void")
    problem_check(status, h, pb, 409, "transfer_already_posted", "void after post")
    check_unchanged(before, snapshot(c, [a, m]), "double post")
    # full post with no body
    p2 = transfer(c, a, m, 200, pending=True)
    full = c.ok(200, "POST", TRANSFERS + "/" + p2["id"] + "/post", None, key=new_key())
    check_eq(full["posted_amount"], 200, "post without amount posts all")
    check_eq(c.account(a)["balance"], 500, "payer after full post")
    # posting something that is not a hold
    plain = transfer(c, a, m, 1)
    status, h, pb = c.post(TRANSFERS + "/" + plain["id"] + "/post")
    problem_check(status, h, pb, 409, "transfer_not_pending", "post of a posted transfer")
    status, h, pb = c.post(TRANSFERS + "/tr_00000000ZZZZZ/post")
    problem_check(status, h, pb, 404, "transfer_not_found", "post of an unknown transfer")
    status, h, pb = c.post(TRANSFERS + "/nonsense/void")
    problem_check(status, h, pb, 404, "transfer_not_found", "void of a malformed id")


def test_pending_void(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    p = transfer(c, a, m, 400, pending=True)
    check_eq(c.account(a)["available"], 600, "available while held")
    v = c.ok(200, "POST", TRANSFERS + "/" + p["id"] + "/void", None, key=new_key())
    check_eq((v["id"], v["status"]), (p["id"], "voided"), "void answer")
    check_eq(c.transfer(v["resolution_id"])["type"], "void_pending", "void entry")
    aa, mm = c.account(a), c.account(m)
    check_eq((aa["balance"], aa["available"], aa["debits_pending"]), (1000, 1000, 0),
             "payer after void")
    check_eq((mm["balance"], mm["credits_pending"]), (0, 0), "payee after void")
    before = snapshot(c, [a, m])
    status, h, pb = c.post(TRANSFERS + "/" + p["id"] + "/post", {"amount": 100})
    problem_check(status, h, pb, 409, "transfer_already_voided", "post after void")
    status, h, pb = c.post(TRANSFERS + "/" + p["id"] + "/void")
    problem_check(status, h, pb, 409, "transfer_already_voided", "void after void")
    status, h, pb = c.post(TRANSFERS + "/" + p["id"] + "/void", {"amount": 5})
    problem_check(status, h, pb, 400, "unknown_field", "void with an amount")
    check_unchanged(before, snapshot(c, [a, m]), "post/void after void")


def test_pending_expires(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    status, h, pb = c.post(TRANSFERS, {"debit_account_id": a, "credit_account_id": m,
                                       "amount": 5, "currency": "USD", "timeout_s": 5})
    problem_check(status, h, pb, 400, "invalid_timeout", "timeout_s without pending")
    for t in [-1, 2592001, "1", 1.5]:
        status, h, pb = c.post(TRANSFERS, {"debit_account_id": a, "credit_account_id": m,
                                           "amount": 5, "currency": "USD", "pending": True,
                                           "timeout_s": t})
        problem_check(status, h, pb, 400, "invalid_timeout", "timeout_s %r" % (t,))
    t0 = time.monotonic()
    p = transfer(c, a, m, 300, pending=True, timeout_s=1)
    check(p["expires_at"] is not None, "expires_at set")
    check_eq(c.account(a)["available"], 700, "available while held")
    status_now = None
    while time.monotonic() - t0 < 3.5:
        status_now = c.transfer(p["id"])["status"]
        if status_now == "expired":
            break
        time.sleep(0.1)
    check_eq(status_now, "expired", "status of a 1 s hold after %.1f s" % (time.monotonic() - t0))
    got = c.transfer(p["id"])
    check(got["resolution_id"], "expired hold has a resolution_id")
    check_eq(c.transfer(got["resolution_id"])["type"], "expire_pending", "expiry entry")
    aa, mm = c.account(a), c.account(m)
    check_eq((aa["balance"], aa["available"], aa["debits_pending"]), (1000, 1000, 0),
             "payer after expiry")
    check_eq((mm["balance"], mm["credits_pending"]), (0, 0), "payee after expiry")
    for act, body in [("post", {"amount": 1}), ("void", None)]:
        status, h, pb = c.post(TRANSFERS + "/" + p["id"] + "/" + act, body)
        problem_check(status, h, pb, 409, "transfer_expired", act + " after expiry")


def test_freeze_unfreeze(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    held = transfer(c, a, m, 100, pending=True)
    fr = c.ok(200, "POST", ACCOUNTS + "/" + a + "/freeze", None, key=new_key())
    check_eq((fr["id"], fr["frozen"]), (a, True), "freeze answer")
    check_eq(c.account(a)["frozen"], True, "GET after freeze")
    before = snapshot(c, [a, m])
    status, h, pb = c.post(TRANSFERS, {"debit_account_id": a, "credit_account_id": m,
                                       "amount": 10, "currency": "USD"})
    problem_check(status, h, pb, 422, "account_frozen", "debit of a frozen account")
    status, h, pb = c.post(TRANSFERS, {"debit_account_id": a, "credit_account_id": m,
                                       "amount": 10, "currency": "USD", "pending": True})
    problem_check(status, h, pb, 422, "account_frozen", "hold on a frozen account")
    status, h, pb = c.post(TRANSFERS + "/" + held["id"] + "/post")
    problem_check(status, h, pb, 422, "account_frozen", "posting a hold of a frozen account")
    status, h, pb = c.post(TRANSFERS, {"legs": [
        {"debit_account_id": src, "credit_account_id": m, "amount": 10, "currency": "USD"},
        {"debit_account_id": a, "credit_account_id": m, "amount": 10, "currency": "USD"}]})
    problem_check(status, h, pb, 422, "account_frozen", "a leg debiting a frozen account")
    check_unchanged(before, snapshot(c, [a, m]), "debits of a frozen account")
    status, h, pb = c.post(ACCOUNTS + "/" + a + "/freeze", {"reason": "x"})
    problem_check(status, h, pb, 400, "unknown_field", "freeze with a field")
    status, h, pb = c.post(ACCOUNTS + "/" + UNKNOWN_ACCT + "/freeze")
    problem_check(status, h, pb, 404, "account_not_found", "freeze of an unknown account")
    un = c.ok(200, "POST", ACCOUNTS + "/" + a + "/unfreeze", {}, key=new_key())
    check_eq(un["frozen"], False, "unfreeze answer")
    transfer(c, a, m, 10)
    c.ok(200, "POST", TRANSFERS + "/" + held["id"] + "/post", None, key=new_key())
    aa = c.account(a)
    check_eq((aa["balance"], aa["available"], aa["frozen"]), (890, 890, False),
             "after unfreeze")


def test_account_history(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    made = [transfer(c, a, m, i + 1)["id"] for i in range(14)]
    hold = transfer(c, a, m, 5, pending=True)["id"]
    made.append(hold)
    all_h = c.history(a)
    check_eq(len(all_h), 16, "history length (funding + 15)")
    seqs = [id_number(e["id"]) for e in all_h]
    check(seqs == sorted(seqs, reverse=True), "history is newest first")
    check_eq([e["id"] for e in all_h[:15]], list(reversed(made)), "history order")
    for e in all_h:
        check(a in (e["debit_account_id"], e["credit_account_id"]), "foreign entry in history")
    seen, cursor, pages = [], None, 0
    while True:
        path = ACCOUNTS + "/" + a + "/transfers?limit=4" + ("&cursor=" + cursor if cursor else "")
        page = c.ok(200, "GET", path)
        pages += 1
        seen.extend(e["id"] for e in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        check_eq(len(page["data"]), 4, "non-final history page size")
        check(pages < 100, "history pagination does not end")
    check_eq(seen, [e["id"] for e in all_h], "paged history equals the full history")
    check_eq(pages, 4, "pages of 4 over 16 entries")
    exact = c.ok(200, "GET", ACCOUNTS + "/" + a + "/transfers?limit=16")
    check_eq(exact["next_cursor"], None, "exact-size history page has no next_cursor")
    check_eq(c.history(m)[0]["id"], hold, "merchant history newest first")
    status, h, pb = c.get(ACCOUNTS + "/" + UNKNOWN_ACCT + "/transfers")
    problem_check(status, h, pb, 404, "account_not_found", "history of an unknown account")
    fresh = make_account(c)["id"]
    empty = c.ok(200, "GET", ACCOUNTS + "/" + fresh + "/transfers")
    check_eq((empty["data"], empty["next_cursor"]), ([], None), "empty history")


# ------------------------------------------------------------------------------------------------
# batch


def test_batch(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    e = make_account(c, currency="EUR")["id"]
    keys = [new_key("item") for _ in range(6)]

    def item(k, debit, credit, amount, cur="USD"):
        return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
                "currency": cur, "idempotency_key": k}

    items = [item(keys[0], a, m, 100),
             item(keys[1], a, m, 5000),               # insufficient funds
             item(keys[2], a, UNKNOWN_ACCT, 10),      # unknown account
             item(keys[3], a, m, 200),
             item(keys[4], a, a, 10),                 # same account
             item(keys[5], a, e, 10)]                 # currency mismatch
    res = c.ok(200, "POST", BATCH, {"transfers": items}, key=None)
    data = res["data"]
    check_eq(len(data), 6, "one result per item")
    check_eq([r["status"] for r in data], ["created", "error", "error", "created", "error",
                                           "error"], "item statuses")
    check_eq([r["error"]["code"] for r in data if r["status"] == "error"],
             ["insufficient_funds", "account_not_found", "same_account", "currency_mismatch"],
             "item error codes")
    for i in (0, 3):
        tr = data[i]["transfer"]
        check_eq((tr["amount"], tr["idempotency_key"]), (items[i]["amount"], keys[i]),
                 "item %d transfer" % i)
        check_eq(c.transfer(tr["id"]), tr, "GET item %d transfer" % i)
    check(id_number(data[0]["transfer"]["id"]) < id_number(data[3]["transfer"]["id"]),
          "items applied in order")
    check_eq(c.account(a)["balance"], 700, "payer after the batch")
    check_eq(c.account(m)["balance"], 300, "payee after the batch")
    # replay of item keys: same content exists, other content is a reused key
    items2 = [item(keys[0], a, m, 100), item(keys[3], a, m, 999), item(new_key("item"), a, m, 50)]
    res2 = c.ok(200, "POST", BATCH, {"transfers": items2}, key=None)["data"]
    check_eq([r["status"] for r in res2], ["exists", "error", "created"], "replay statuses")
    check_eq(res2[0]["transfer"]["id"], data[0]["transfer"]["id"], "existing item id")
    check_eq(res2[0]["transfer"], data[0]["transfer"], "existing item answer")
    check_eq(res2[1]["error"]["code"], "idempotency_key_reused", "item key reused")
    check_eq(c.account(a)["balance"], 650, "payer after the replay batch")
    check_eq(len(c.history(a)), 4, "payer history after the batches")
    # the same item key twice in one batch: the second is the first; other content is refused
    kd = new_key("dup")
    res3 = c.ok(200, "POST", BATCH, {"transfers": [item(kd, a, m, 5), item(kd, a, m, 5),
                                                   item(kd, a, m, 6)]}, key=None)["data"]
    check_eq([r["status"] for r in res3], ["created", "exists", "error"], "in-batch duplicates")
    check_eq(res3[1]["transfer"]["id"], res3[0]["transfer"]["id"], "in-batch duplicate id")
    check_eq(res3[2]["error"]["code"], "idempotency_key_reused", "in-batch key reuse")
    check_eq(c.account(a)["balance"], 645, "payer after in-batch duplicates")
    # header key on the batch: byte-equal replay
    hk = new_key("batch")
    body = {"transfers": [item(new_key("item"), a, m, 7)]}
    s1, h1, raw1 = c.raw("POST", BATCH, body, key=hk)
    s2, h2, raw2 = c.raw("POST", BATCH, body, key=hk)
    check_eq((s1, s2), (200, 200), "keyed batch statuses")
    check_eq(raw2, raw1, "keyed batch replay body")
    check_eq(c.account(a)["balance"], 638, "payer after a keyed batch replay")
    # whole-request errors leave the ledger alone
    before = snapshot(c, [a, m])
    bad = [({"transfers": [{"debit_account_id": a, "credit_account_id": m, "amount": 1,
                            "currency": "USD"}]}, 400, "idempotency_key_missing"),
           ({"transfers": [item("has space", a, m, 1)]}, 400, "idempotency_key_invalid"),
           ({"transfers": [item("", a, m, 1)]}, 400, "idempotency_key_invalid"),
           ({"transfers": [item(new_key(), a, m, 1), item(new_key(), a, m, 0)]}, 400,
            "invalid_amount"),
           ({"transfers": []}, 400, "invalid_field"),
           ({"transfers": {}}, 400, "invalid_field"),
           ({"transfers": [1]}, 400, "invalid_field"),
           ({}, 400, "invalid_field"),
           ({"transfers": [item(new_key(), a, m, 1)], "x": 1}, 400, "unknown_field"),
           ({"transfers": [dict(item(new_key(), a, m, 1), extra=1)]}, 400, "unknown_field")]
    for b, st, code in bad:
        status, h, pb = c.post(BATCH, b, key=None)
        problem_check(status, h, pb, st, code, "batch %s" % str(b)[:120])
    check_unchanged(before, snapshot(c, [a, m]), "rejected batches")


# ------------------------------------------------------------------------------------------------
# idempotency


def test_idempotency(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    body = {"debit_account_id": a, "credit_account_id": m, "amount": 123, "currency": "USD"}
    k = new_key("idem")
    s1, h1, raw1 = c.raw("POST", TRANSFERS, body, key=k)
    check_eq(s1, 201, "first POST")
    s2, h2, raw2 = c.raw("POST", TRANSFERS, body, key=k)
    check_eq(s2, s1, "replay status")
    check_eq(raw2, raw1, "replay body (byte-equal)")
    check_eq(h2.get("Content-Type"), h1.get("Content-Type"), "replay content type")
    c2 = ctx.shared().client()  # another connection sees the same stored answer
    s3, _h3, raw3 = c2.raw("POST", TRANSFERS, body, key=k)
    check_eq((s3, raw3), (s1, raw1), "replay on another connection")
    check_eq(c.account(a)["balance"], 877, "the transfer applied once")
    check_eq(len(c.history(a)), 2, "one transfer in the history")
    # same key, different body (also: same JSON spelled differently is a different body)
    before = snapshot(c, [a, m])
    for other in [dict(body, amount=124), dict(body, credit_account_id=src),
                  {"currency": "USD", "debit_account_id": a, "credit_account_id": m,
                   "amount": 123}]:
        status, h, pb = c.post(TRANSFERS, other, key=k)
        problem_check(status, h, pb, 422, "idempotency_key_reused", "key reused: %s" % other)
    # same key on another route
    status, h, pb = c.post(ACCOUNTS, {"currency": "USD"}, key=k)
    problem_check(status, h, pb, 422, "idempotency_key_reused", "key reused on another route")
    check_unchanged(before, snapshot(c, [a, m]), "reused keys")
    # missing and invalid keys
    for path, b in [(TRANSFERS, body), (ACCOUNTS, {"currency": "USD"}),
                    (ACCOUNTS + "/" + a + "/freeze", None)]:
        status, h, pb = c.post(path, b, key=None)
        problem_check(status, h, pb, 400, "idempotency_key_missing", "no key on " + path)
        for bad in ["", "has space", "x" * 129, "tab\tkey", "caf\u00e9"]:
            hdr = bad.encode("utf-8").decode("latin-1")
            status, h, pb = c.post(path, b, key=hdr)
            if bad == "" and status == 400 and pb.get("code") == "idempotency_key_missing":
                continue  # an empty header may be treated as absent
            problem_check(status, h, pb, 400, "idempotency_key_invalid",
                          "key %r on %s" % (bad, path))
    check_eq(c.account(a)["frozen"], False, "unkeyed freeze did nothing")
    c.ok(201, "POST", TRANSFERS, body, key="x" * 128)  # 128 is the longest allowed
    # a request refused before it ran (a 400) does not use up its key
    kf = new_key("fix")
    status, h, pb = c.post(TRANSFERS, dict(body, amount=0), key=kf)
    problem_check(status, h, pb, 400, "invalid_amount", "bad amount")
    fixed = c.ok(201, "POST", TRANSFERS, dict(body, amount=2), key=kf)
    check_eq(fixed["amount"], 2, "the corrected request ran under the same key")
    # account create replay: same account, no second one
    ka = new_key("acct")
    acct1 = c.raw("POST", ACCOUNTS, {"currency": "EUR", "owner": "idem"}, key=ka)
    n_before = len(c.all_accounts())
    acct2 = c.raw("POST", ACCOUNTS, {"currency": "EUR", "owner": "idem"}, key=ka)
    check_eq((acct2[0], acct2[2]), (acct1[0], acct1[2]), "account create replay")
    check_eq(len(c.all_accounts()), n_before, "no second account")
    # post/void replay
    p = transfer(c, a, m, 10, pending=True)
    kp = new_key("post")
    r1 = c.raw("POST", TRANSFERS + "/" + p["id"] + "/post", {"amount": 4}, key=kp)
    r2 = c.raw("POST", TRANSFERS + "/" + p["id"] + "/post", {"amount": 4}, key=kp)
    check_eq(r1[0], 200, "post")
    check_eq((r2[0], r2[2]), (r1[0], r1[2]), "post replay (not 409 already posted)")


def test_idempotency_per_principal(ctx):
    """Idempotency keys belong to the caller: the same key sent by another admin is a request of
    its own (it never gets the first admin's stored answer, nor a 422 for a different body)."""
    srv = ctx.shared()
    c = srv.client()
    other = harness.identity_helpers.create_staff(srv.port, srv.token,
                                                  new_key("admin2") + "@coffer.test", "admin")
    c2 = harness.Client(srv.port, other.token)
    src, a, m = setup_wallets(c, 1000)
    body = {"debit_account_id": a, "credit_account_id": m, "amount": 100, "currency": "USD"}
    k = new_key("scope")
    s1, _h, raw1 = c.raw("POST", TRANSFERS, body, key=k)
    check_eq(s1, 201, "first admin's POST")
    s2, _h, raw2 = c2.raw("POST", TRANSFERS, body, key=k)
    check_eq(s2, 201, "the same key and body from another admin")
    check(harness.json.loads(raw2)["id"] != harness.json.loads(raw1)["id"],
          "another admin got the first admin's stored answer: %r" % raw2[:200])
    check_eq(c.account(a)["balance"], 800, "both admins' transfers applied")
    # each one's replay is their own stored answer
    check_eq(c.raw("POST", TRANSFERS, body, key=k)[::2], (s1, raw1), "first admin's replay")
    check_eq(c2.raw("POST", TRANSFERS, body, key=k)[::2], (s2, raw2), "second admin's replay")
    # a different body under a key only the other admin used is no reuse
    k2 = new_key("scope")
    c2.ok(201, "POST", TRANSFERS, dict(body, amount=7), key=k2)
    third = c.ok(201, "POST", TRANSFERS, dict(body, amount=5), key=k2)
    check_eq(third["amount"], 5, "the first admin's request under the other's key")
    status, h, pb = c.post(TRANSFERS, dict(body, amount=6), key=k2)
    problem_check(status, h, pb, 422, "idempotency_key_reused", "reuse within one admin")
    check_eq(c.account(a)["balance"], 788, "balance after the scoped keys")
    check_eq(len(c.history(a)), 5, "history after the scoped keys")
    c.close()
    c2.close()


def test_idempotent_replay_repeated(ctx):
    """The same keyed request sent again and again: every answer is the stored one."""
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    body = {"debit_account_id": a, "credit_account_id": m, "amount": 1, "currency": "USD"}
    k = new_key("rep")
    s1, _h, raw1 = c.raw("POST", TRANSFERS, body, key=k)
    check_eq(s1, 201, "first POST")
    for i in range(200):
        s, _h, raw = c.raw("POST", TRANSFERS, body, key=k)
        check(s == s1 and raw == raw1, "replay %d: %d %r" % (i, s, raw[:200]))
    check_eq(c.account(a)["balance"], 999, "applied once after 200 replays")


def test_retry_after_client_disconnect(ctx):
    """A client that gives up on a keyed POST (closes the connection before the answer) and
    retries with the same key and body must get the stored answer: the key may be in flight
    for a moment, but not forever."""
    srv = ctx.server()
    c = srv.client()
    src, a, m = setup_wallets(c, 100000)
    body = {"debit_account_id": a, "credit_account_id": m, "amount": 1, "currency": "USD"}
    data = harness.json.dumps(body, separators=(",", ":")).encode()  # what Client sends
    rounds = 20
    keys = [new_key("gone") for _ in range(rounds)]
    for k in keys:
        sk = harness.socket.create_connection(("127.0.0.1", srv.port))
        sk.sendall(b"POST " + TRANSFERS.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Authorization: Bearer " + srv.token.encode() + b"\r\n"
                   b"Content-Type: application/json\r\nIdempotency-Key: " + k.encode() +
                   b"\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
        sk.close()  # gone before the answer
    deadline = time.monotonic() + 2.0
    stuck, ids = [], set()
    for k in keys:
        while True:
            status, h, pb = c.post(TRANSFERS, body, key=k)
            if not (status == 409 and pb.get("code") == "idempotency_key_in_flight"):
                break
            if time.monotonic() > deadline:
                stuck.append(k)
                break
            time.sleep(0.05)
        if k in stuck:
            continue
        check_eq(status, 201, "retry of key %s after the client went away: %s" % (k, pb))
        again = c.post(TRANSFERS, body, key=k)
        check_eq((again[0], again[2]), (status, pb), "second retry of key %s" % k)
        ids.add(pb["id"])
    check(not stuck, "%d of %d keys still answer 409 idempotency_key_in_flight 2 s after their "
          "clients disconnected (the transfer itself was applied; balance moved %d times): %s"
          % (len(stuck), rounds, 100000 - c.account(a)["balance"], stuck[:3]))
    check_eq(len(ids), rounds, "one transfer per key")
    check_eq(c.account(a)["balance"], 100000 - rounds, "each transfer applied once")
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def test_idempotency_survives_restart(ctx):
    srv = ctx.server()
    c = srv.client()
    src, a, m = setup_wallets(c, 1000)
    body = {"debit_account_id": a, "credit_account_id": m, "amount": 321, "currency": "USD",
            "metadata": {"note": "restart"}}
    k = new_key("restart")
    s1, _h, raw1 = c.raw("POST", TRANSFERS, body, key=k)
    check_eq(s1, 201, "first POST")
    ka = new_key("acct")
    sa, _h, rawa = c.raw("POST", ACCOUNTS, {"currency": "USD"}, key=ka)
    check_eq(sa, 201, "account create")
    sf, _h, rawf = c.raw("POST", TRANSFERS, dict(body, amount=10 ** 6), key=k + "-fail")
    check_eq(sf, 422, "insufficient funds")
    c.close()
    check_eq(srv.stop(), 0, "clean stop exit code")
    srv.check_verify()
    srv.start()
    c = srv.client()
    s2, _h, raw2 = c.raw("POST", TRANSFERS, body, key=k)
    check_eq((s2, raw2), (s1, raw1), "replay after restart")
    s2a, _h, raw2a = c.raw("POST", ACCOUNTS, {"currency": "USD"}, key=ka)
    check_eq((s2a, raw2a), (sa, rawa), "account create replay after restart")
    check_eq(c.account(a)["balance"], 679, "transfer applied once across the restart")
    check_eq(len(c.history(a)), 2, "history after restart")
    status, h, pb = c.post(TRANSFERS, dict(body, amount=1), key=k)
    problem_check(status, h, pb, 422, "idempotency_key_reused", "reuse after restart")
    s3, _h, raw3 = c.raw("POST", TRANSFERS, dict(body, amount=10 ** 6), key=k + "-fail")
    check(s3 == 422 and b"insufficient_funds" in raw3,
          "a keyed failure after restart: %d %r" % (s3, raw3[:200]))
    c.close()
    check_eq(srv.stop(), 0, "clean stop exit code")
    srv.check_verify()


# ------------------------------------------------------------------------------------------------
# bad input: every one is a 4xx problem and the ledger is unchanged


def nested(depth):
    s = "1"
    for _ in range(depth):
        s = '{"a":' + s + "}"
    return s


def test_bad_inputs_leave_ledger_unchanged(ctx):
    srv = ctx.shared()
    c = srv.client()
    src, a, m = setup_wallets(c, 1000)
    e = make_account(c, currency="EUR")["id"]
    fund(c, make_source(c, "EUR"), e, 50, "EUR")
    p = transfer(c, a, m, 100, pending=True)["id"]
    ids = [src, a, m, e]

    def tr(**kw):
        b = {"debit_account_id": a, "credit_account_id": m, "amount": 10, "currency": "USD"}
        b.update(kw)
        return b

    def tr_raw(amount_text):
        return ('{"debit_account_id":"%s","credit_account_id":"%s","amount":%s,'
                '"currency":"USD"}' % (a, m, amount_text)).encode()

    def without(k):
        b = tr()
        del b[k]
        return b

    big_meta = tr(metadata={"blob": "x" * (70 * 1024)})
    T, A = TRANSFERS, ACCOUNTS
    # (what, method, path, body, extra request kwargs, status, code)
    cases = [
        ("malformed json", "POST", T, b'{"debit_account_id": ', {}, 400, "invalid_json"),
        ("trailing garbage", "POST", T, b'{} x', {}, 400, "invalid_json"),
        ("single quotes", "POST", T, b"{'amount': 1}", {}, 400, "invalid_json"),
        ("empty body", "POST", T, b"", {}, 400, "invalid_json"),
        ("array body", "POST", T, b"[1,2]", {}, 400, "invalid_json"),
        ("string body", "POST", T, b'"transfer"', {}, 400, "invalid_json"),
        ("number body", "POST", T, b"100", {}, 400, "invalid_json"),
        ("null body", "POST", T, b"null", {}, 400, "invalid_json"),
        ("account id as number", "POST", T, tr(debit_account_id=1), {}, 400, "invalid_field"),
        ("credit id as object", "POST", T, tr(credit_account_id={}), {}, 400, "invalid_field"),
        ("pending as string", "POST", T, tr(pending="yes"), {}, 400, "invalid_field"),
        ("metadata as string", "POST", T, tr(metadata="note"), {}, 400, "invalid_field"),
        ("metadata as array", "POST", T, tr(metadata=[1]), {}, 400, "invalid_field"),
        ("code as number", "POST", T, tr(code=5), {}, 400, "invalid_field"),
        ("code with upper case", "POST", T, tr(code="P2P"), {}, 400, "invalid_field"),
        ("currency as number", "POST", T, tr(currency=840), {}, 400,
         {"invalid_field", "unknown_currency"}),
        ("unknown field", "POST", T, tr(memo="hi"), {}, 400, "unknown_field"),
        ("missing amount", "POST", T, without("amount"), {}, 400, "missing_field"),
        ("missing debit", "POST", T, without("debit_account_id"), {}, 400, "missing_field"),
        ("missing currency", "POST", T, without("currency"), {}, 400, "missing_field"),
        ("duplicate keys", "POST", T, tr_raw('10,"amount":10'), {}, 400, "invalid_json"),
        ("duplicate keys, other values", "POST", T, tr_raw('10,"amount":20'), {}, 400,
         "invalid_json"),
        ("invalid utf-8 bytes", "POST", T,
         b'{"debit_account_id":"' + a.encode() + b'","credit_account_id":"' + m.encode()
         + b'","amount":10,"currency":"USD","metadata":{"n":"\xc3\x28\xff"}}', {}, 400,
         "invalid_json"),
        ("overlong utf-8", "POST", T,
         b'{"debit_account_id":"' + a.encode() + b'","credit_account_id":"' + m.encode()
         + b'","amount":10,"currency":"USD","code":"a\xc0\xafb"}', {}, 400, "invalid_json"),
        ("json nested 50 deep in metadata", "POST", T,
         tr_raw('10,"metadata":' + nested(50)), {}, 400, "json_too_deep"),
        ("json nested 50 deep arrays", "POST", T, b"[" * 50 + b"]" * 50, {}, 400,
         "json_too_deep"),
        ("metadata nested 9 deep", "POST", T, tr_raw('10,"metadata":' + nested(9)), {}, 400,
         "json_too_deep"),
        ("amount 0", "POST", T, tr(amount=0), {}, 400, "invalid_amount"),
        ("amount -0", "POST", T, tr_raw("-0"), {}, 400, "invalid_amount"),
        ("NUL escape in a string", "POST", T, tr(code="a\u0000b"), {}, 400,
         {"invalid_json", "invalid_field"}),
        ("lone surrogate escape", "POST", T, tr_raw('10,"code":"\\ud800"'), {}, 400,
         "invalid_json"),
        ("metadata over 1024 bytes", "POST", T, tr(metadata={"m": "x" * 1100}), {}, 400,
         "invalid_field"),
        ("amount -5", "POST", T, tr(amount=-5), {}, 400, "invalid_amount"),
        ("amount 1.5", "POST", T, tr_raw("1.5"), {}, 400, "invalid_amount"),
        ("amount 1e2", "POST", T, tr_raw("1e2"), {}, 400, "invalid_amount"),
        ("amount 100.0", "POST", T, tr_raw("100.0"), {}, 400, "invalid_amount"),
        ("amount as string", "POST", T, tr(amount="100"), {}, 400, "invalid_amount"),
        ("amount true", "POST", T, tr(amount=True), {}, 400, "invalid_amount"),
        ("amount null", "POST", T, tr(amount=None), {}, 400,
         {"invalid_amount", "missing_field"}),
        ("amount 2^63", "POST", T, tr_raw(str(2 ** 63)), {}, 400, "invalid_amount"),
        ("amount 2^64", "POST", T, tr_raw(str(2 ** 64)), {}, 400, "invalid_amount"),
        ("amount -2^63-1", "POST", T, tr_raw(str(-2 ** 63 - 1)), {}, 400, "invalid_amount"),
        ("amount 2^63-1 overflows the totals", "POST", T,
         tr(debit_account_id=src, credit_account_id=a, amount=2 ** 63 - 1), {}, 422,
         "amount_overflow"),
        ("unknown currency", "POST", T, tr(currency="ZZZ"), {}, 400, "unknown_currency"),
        ("empty currency", "POST", T, tr(currency=""), {}, 400, "unknown_currency"),
        ("overlong currency", "POST", T, tr(currency="USDUSDUSDUSDUSD"), {}, 400,
         "unknown_currency"),
        ("currency mismatch with the accounts", "POST", T, tr(currency="EUR"), {}, 422,
         "currency_mismatch"),
        ("accounts in different currencies", "POST", T, tr(credit_account_id=e), {}, 422,
         "currency_mismatch"),
        ("accounts in different currencies (EUR)", "POST", T,
         tr(debit_account_id=e, credit_account_id=m, currency="EUR"), {}, 422,
         "currency_mismatch"),
        ("unknown credit account", "POST", T, tr(credit_account_id=UNKNOWN_ACCT), {}, 404,
         "account_not_found"),
        ("unknown debit account", "POST", T, tr(debit_account_id=UNKNOWN_ACCT), {}, 404,
         "account_not_found"),
        ("malformed id (short)", "POST", T, tr(debit_account_id="acct_123"), {}, 400,
         "invalid_id"),
        ("malformed id (wrong prefix)", "POST", T, tr(credit_account_id="tr_0000000000001"), {},
         400, "invalid_id"),
        ("malformed id (bad letter)", "POST", T, tr(credit_account_id="acct_000000000000U"), {},
         400, "invalid_id"),
        ("malformed id (zero)", "POST", T, tr(credit_account_id="acct_0000000000000"), {}, 400,
         "invalid_id"),
        ("malformed id (lower case)", "POST", T, tr(credit_account_id=UNKNOWN_ACCT.lower()),
         {}, 400, "invalid_id"),
        ("malformed id (more than 64 bits)", "POST", T,
         tr(credit_account_id="acct_G000000000000"), {}, 400, "invalid_id"),
        ("malformed id (all Z)", "POST", T, tr(credit_account_id="acct_" + "Z" * 13), {}, 400,
         "invalid_id"),
        ("same debit and credit", "POST", T, tr(credit_account_id=a), {}, 422, "same_account"),
        ("insufficient funds", "POST", T, tr(amount=10 ** 9), {}, 422, "insufficient_funds"),
        ("oversize body", "POST", T, big_meta, {}, 413, "payload_too_large"),
        ("oversize garbage body", "POST", T, b"x" * (65 * 1024 + 1), {}, 413,
         "payload_too_large"),
        ("text/plain", "POST", T, tr(), {"content_type": "text/plain"}, 415,
         "unsupported_media_type"),
        ("no content type", "POST", T, tr(), {"content_type": None}, 415,
         "unsupported_media_type"),
        ("form content type", "POST", T, tr(),
         {"content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ("application/jsonx", "POST", T, tr(), {"content_type": "application/jsonx"}, 415,
         "unsupported_media_type"),
        ("no idempotency key", "POST", T, tr(), {"key": None}, 400, "idempotency_key_missing"),
        ("legs not an array", "POST", T, {"legs": {}}, {}, 400, "invalid_field"),
        ("legs empty", "POST", T, {"legs": []}, {}, 400, "invalid_field"),
        ("legs and other fields", "POST", T, dict(tr(), legs=[tr()]), {}, 400, "unknown_field"),
        ("leg with unknown field", "POST", T, {"legs": [tr(), tr(x=1)]}, {}, 400,
         "unknown_field"),
        ("leg not an object", "POST", T, {"legs": [tr(), 5]}, {}, 400, "invalid_field"),
        ("post: amount 0", "POST", T + "/" + p + "/post", {"amount": 0}, {}, 400,
         "invalid_amount"),
        ("post: amount -1", "POST", T + "/" + p + "/post", {"amount": -1}, {}, 400,
         "invalid_amount"),
        ("post: amount as string", "POST", T + "/" + p + "/post", {"amount": "5"}, {}, 400,
         "invalid_amount"),
        ("post: amount 2^63", "POST", T + "/" + p + "/post", ('{"amount":%d}' % 2 ** 63)
         .encode(), {}, 400, "invalid_amount"),
        ("post: more than held", "POST", T + "/" + p + "/post", {"amount": 101}, {}, 422,
         "amount_exceeds_pending"),
        ("post: unknown field", "POST", T + "/" + p + "/post", {"amount": 1, "x": 1}, {}, 400,
         "unknown_field"),
        ("post: malformed json", "POST", T + "/" + p + "/post", b"{", {}, 400, "invalid_json"),
        ("post: text/plain", "POST", T + "/" + p + "/post", b"{}",
         {"content_type": "text/plain"}, 415, "unsupported_media_type"),
        ("post: unknown transfer", "POST", T + "/tr_00000000ZZZZZ/post", None, {}, 404,
         "transfer_not_found"),
        ("account: unknown kind", "POST", A, {"currency": "USD", "kind": "bogus"}, {}, 400,
         "invalid_field"),
        ("account: unknown normal", "POST", A, {"currency": "USD", "normal": "sideways"}, {},
         400, "invalid_field"),
        ("account: no currency", "POST", A, {"kind": "customer"}, {}, 400, "missing_field"),
        ("account: unknown currency", "POST", A, {"currency": "ZZZ"}, {}, 400,
         "unknown_currency"),
        ("account: no_overdraft as string", "POST", A, {"currency": "USD", "no_overdraft": "y"},
         {}, 400, "invalid_field"),
        ("account: owner too long", "POST", A, {"currency": "USD", "owner": "o" * 200}, {}, 400,
         "invalid_field"),
        ("account: metadata too big", "POST", A,
         {"currency": "USD", "metadata": {"m": "x" * 2000}}, {}, 400, "invalid_field"),
        ("account: unknown field", "POST", A, {"currency": "USD", "balance": 100}, {}, 400,
         "unknown_field"),
        ("account: frozen is not an input", "POST", A, {"currency": "USD", "frozen": True}, {},
         400, "unknown_field"),
        ("account: oversize", "POST", A, {"currency": "USD", "owner": "x" * (70 * 1024)}, {},
         413, "payload_too_large"),
        ("account: non-object", "POST", A, b"[]", {}, 400, "invalid_json"),
        ("freeze: body with a field", "POST", A + "/" + a + "/freeze", {"frozen": True}, {},
         400, "unknown_field"),
        ("freeze: malformed json", "POST", A + "/" + a + "/freeze", b"{", {}, 400,
         "invalid_json"),
        ("unknown path", "POST", "/v1/ledger/payments", tr(), {}, 404, "not_found"),
        ("wrong method", "PUT", T, tr(), {}, 405, "method_not_allowed"),
        ("no token", "POST", T, tr(), {"token": None}, 401, "unauthorized"),
        ("wrong token", "POST", T, tr(), {"token": "Bearer nope-nope-nope-nope"}, 401,
         "unauthorized"),
        ("operator token", "POST", T, tr(), {"token": "Bearer " + srv.operator_token}, 403,
         "forbidden"),
    ]
    failures = []
    for what, method, path, body, kw, exp_status, exp_code in cases:
        kw = dict(kw)
        if "key" not in kw and method == "POST":
            kw["key"] = new_key("bad")
        try:
            before = snapshot(c, ids)
            status, h, pb = c.request(method, path, body, **kw)
            problem_check(status, h, pb, exp_status, exp_code, what)
            check_unchanged(before, snapshot(c, ids), what)
        except AssertionError as err:
            failures.append(str(err))
    check(not failures, "%d of %d bad inputs misbehaved:\n  %s"
          % (len(failures), len(cases), "\n  ".join(failures)))
    # and the good request those were variations of still works
    transfer(c, a, m, 10)
    check_eq(c.account(a)["balance"], 990, "a good transfer after the bad ones")


# ------------------------------------------------------------------------------------------------
# last: the shared server's ledger balances out and verifies


def test_request_edges(ctx):
    """Accepted spellings and sizes at the edges of what the API takes."""
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 1000)
    body = {"debit_account_id": a, "credit_account_id": m, "amount": 1, "currency": "USD"}
    for ctype in ["application/json; charset=utf-8", "application/json;charset=UTF-8",
                  "Application/JSON"]:
        status, _h, pb = c.post(TRANSFERS, body, content_type=ctype)
        check_eq(status, 201, "content type %r: %s" % (ctype, pb))
    # metadata just under its limit is fine; the stored text is compact with sorted keys
    meta = {"z": 1, "a": "x" * 900}
    tr = transfer(c, a, m, 1, metadata=meta)
    check_eq(tr["metadata"], meta, "metadata round trip")
    # a body sent chunked is read whole, and its size is still bounded
    conn = harness.http.client.HTTPConnection("127.0.0.1", ctx.shared().port, timeout=30)
    try:
        parts = [b'{"debit_account_id":"' + a.encode() + b'",',
                 b'"credit_account_id":"' + m.encode() + b'","amount":1,', b'"currency":"USD"}']
        hdrs = {"Authorization": "Bearer " + c.token, "Content-Type": "application/json",
                "Idempotency-Key": new_key()}
        conn.request("POST", TRANSFERS, body=iter(parts), headers=hdrs, encode_chunked=True)
        r = conn.getresponse()
        raw = r.read()
        check_eq(r.status, 201, "chunked transfer: %r" % raw[:200])
        before = snapshot(c, [a, m])
        big = [b'{"debit_account_id":"' + a.encode() + b'","metadata":{"m":"'] + \
            [b"x" * 8192] * 9 + [b'"}}']
        hdrs["Idempotency-Key"] = new_key()
        conn.request("POST", TRANSFERS, body=iter(big), headers=hdrs, encode_chunked=True)
        r = conn.getresponse()
        raw = r.read()
        check_eq(r.status, 413, "oversize chunked body: %r" % raw[:200])
        check_unchanged(before, snapshot(c, [a, m]), "oversize chunked body")
    finally:
        conn.close()
    check_eq(c.account(a)["balance"], 995, "payer after the edge requests")
    # a cursor past the end gives an empty last page
    last = c.all_accounts()[-1]["id"]
    page = c.ok(200, "GET", ACCOUNTS + "?limit=10&cursor=" + last.split("_")[1])
    check_eq((page["data"], page["next_cursor"]), ([], None), "page after the last account")


def test_batch_limits(ctx):
    c = ctx.shared().client()
    src, a, m = setup_wallets(c, 10 ** 6)
    n = 8190  # the documented maximum
    items = [{"debit_account_id": a, "credit_account_id": m, "amount": 3, "currency": "USD",
              "idempotency_key": new_key("big"), "metadata": {"order": "o-%d" % i}}
             for i in range(n)]
    hk = new_key("bigbatch")
    st, _h, raw = c.raw("POST", BATCH, {"transfers": items}, key=hk)
    check_eq(st, 200, "a batch of %d items" % n)
    res = harness.json.loads(raw)["data"]
    check_eq(len(res), n, "results of a full batch")
    check_eq({r["status"] for r in res}, {"created"}, "all created")
    ids = [id_number(r["transfer"]["id"]) for r in res]
    check_eq(ids, list(range(ids[0], ids[0] + n)), "consecutive ids in item order")
    check_eq(res[17]["transfer"]["metadata"], {"order": "o-17"}, "item metadata")
    st2, _h, raw2 = c.raw("POST", BATCH, {"transfers": items}, key=hk)
    check(st2 == 200 and raw2 == raw, "replay of a full keyed batch is byte-equal")
    res3 = c.ok(200, "POST", BATCH, {"transfers": items}, key=None)["data"]
    check_eq({r["status"] for r in res3}, {"exists"}, "unkeyed resend: every item exists")
    check_eq(c.account(a)["balance"], 10 ** 6 - 3 * n, "payer after the full batch")
    before = snapshot(c, [a, m])
    item = {"debit_account_id": a, "credit_account_id": m, "amount": 1, "currency": "USD"}
    too_many = [dict(item, idempotency_key="k%d" % i) for i in range(n + 1)]
    status, h, pb = c.post(BATCH, {"transfers": too_many}, key=None)
    problem_check(status, h, pb, 400, "batch_too_large", "%d items" % (n + 1))
    too_big = [dict(item, idempotency_key="k%d" % i, metadata={"m": "x" * 600})
               for i in range(n)]
    status, h, pb = c.post(BATCH, {"transfers": too_big}, key=None)
    problem_check(status, h, pb, 413, "payload_too_large", "a batch body over 4 MiB")
    check_unchanged(before, snapshot(c, [a, m]), "oversized batches")


def test_metrics_with_huge_totals(ctx):
    """Each account may hold up to 2^63-1 minor units; per-currency totals over all accounts
    can then exceed int64. /metrics must keep answering (or the ledger must refuse the transfer
    that would make a currency total overflow): it must never turn into a permanent 503."""
    srv = ctx.server()
    c = srv.client()
    big = 2 ** 63 - 1
    accepted = []
    for _ in range(2):
        s_id, a_id = make_source(c)["id"], make_account(c)["id"]
        status, h, pb = c.post(TRANSFERS, {"debit_account_id": s_id, "credit_account_id": a_id,
                                           "amount": big, "currency": "USD"})
        check(status == 201 or (status == 422 and pb.get("code") == "amount_overflow"),
              "transfer of 2^63-1 from a fresh source: %d %s" % (status, pb))
        if status == 201:
            accepted.append(big)
    status, h, text = c.get("/metrics")
    check(status == 200, "GET /metrics after %d transfers of 2^63-1 (currency totals %d): "
          "expected 200, got %d: %s" % (len(accepted), sum(accepted), status, str(text)[:300]))
    mt = parse_metrics(text)
    key = 'coffer_ledger_total_minor{currency="USD",total="credits_posted"}'
    check(key in mt, "/metrics lacks " + key)
    check(abs(mt[key] - sum(accepted)) <= sum(accepted) * 1e-12, "%s = %r, accounts say %d"
          % (key, mt[key], sum(accepted)))
    c.close()
    check_eq(srv.stop(), 0, "clean stop")
    srv.check_verify()


def test_zz_conservation_and_verify(ctx):
    srv = ctx.shared()
    c = srv.client()
    accounts = c.all_accounts()
    check(len(accounts) > 50, "the earlier tests created accounts")
    harness.check_conservation(accounts)
    for acct in accounts:
        check(acct["debits_posted"] >= 0 and acct["credits_posted"] >= 0, "negative total")
        if acct["no_overdraft"]:
            check(acct["available"] >= 0, "%s: no_overdraft account below zero" % acct["id"])
    c.close()
    check_eq(srv.stop(), 0, "exit code of a SIGTERM stop")
    out = srv.check_verify()
    check("%d accounts" % len(accounts) in out, "verify counts the accounts: " + out)


TESTS = [
    test_healthz_without_token,
    test_auth_required,
    test_routing_404_405,
    test_request_id_echo,
    test_currencies,
    test_account_create_get_defaults,
    test_account_list_pagination,
    test_page_params_invalid,
    test_transfer_single,
    test_multileg_atomic,
    test_pending_post_partial,
    test_pending_void,
    test_pending_expires,
    test_freeze_unfreeze,
    test_account_history,
    test_batch,
    test_idempotency,
    test_idempotency_per_principal,
    test_idempotent_replay_repeated,
    test_retry_after_client_disconnect,
    test_idempotency_survives_restart,
    test_bad_inputs_leave_ledger_unchanged,
    test_request_edges,
    test_batch_limits,
    test_metrics,
    test_metrics_with_huge_totals,
    test_zz_conservation_and_verify,
]

if __name__ == "__main__":
    harness.main(TESTS)
