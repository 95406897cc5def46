#!/usr/bin/env python3
"""test_screening.py - sanctions and watchlist screening end to end over HTTP: a risk analyst
loads the simple CSV list and the OFAC SDN pair (tests/data/risk) through the API; a customer who
registers under a transliteration of a listed name is hit (a high-priority sanctions case opens
with the hits as evidence, the block is set, the party's view shows it), an innocent one is
clear; a merchant onboarded under a listed entity's name is hit; loading a changed list
re-screens existing customers in the background (the status shows the run); a staff clear lifts
the block (audited, replayable, never the reason in the audit) and the same hit does not block
again while a new entry does; a name the matcher cannot screen is held for review; the ad-hoc
screen answers hits without storing anything; lists survive a restart (rebuilt from the stored
bytes); malformed lists are refused with the line; authorization (customers, merchants and
support cannot write, auditors and support read, unknown parties 404); the customer's name is
never stored by screening; with PostgreSQL, a list loaded on one server is used by another
sharing its database. `coffer verify` after every test. The hooks other files call are
tested too: a case decided clear lifts the block; withdrawals and payouts are held; KYC details
and first payees are screened.

Usage: test_screening.py --bin build/coffer --src . [test names...]
"""

import base64
import glob
import os
import sqlite3
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import call, customer, email, expect, new_merchant  # noqa: E402

ENV = {"COFFER_SANDBOX_LATENCY_MS": "50",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
REASON = "Namesake: other date of birth, other nationality; passport checked by phone"
SECRET_WORD = "namesake"  # a word of REASON that must never reach the audit log
NOBODY = "usr_0000000000001"
RUN_TIMEOUT_S = 30


def shared(ctx):
    return ph.shared(ctx, ENV)


def staff(srv, role):
    return ih.create_staff(srv.port, srv.token, email(role), role)


def data_file(ctx, name):
    with open(os.path.join(ctx.src, "tests", "data", "risk", name), encoding="utf-8",
              newline="") as f:
        return f.read()


def load(srv, token, name, kind, content, alt=None, key=None, body=None):
    if body is None:
        body = {"name": name, "kind": kind, "content": content}
        if alt is not None:
            body["alt_content"] = alt
    return call(srv, "POST", "/v1/risk/lists", body, token=token, key=key or new_key("lst"))


def load_ok(srv, token, name, kind, content, alt=None):
    return expect(load(srv, token, name, kind, content, alt), 201, what="load " + name)


def load_test_lists(ctx, srv, token):
    """The SDN pair as ofac_sdn and simple.csv as internal (each loaded once per server)."""
    if getattr(srv, "_screening_lists", False):
        return
    load_ok(srv, token, "ofac_sdn", "sdn", data_file(ctx, "sdn.csv"), data_file(ctx, "alt.csv"))
    load_ok(srv, token, "internal", "simple", data_file(ctx, "simple.csv"))
    srv._screening_lists = True


def view(srv, token, party):
    return expect(call(srv, "GET", "/v1/risk/parties/%s/screening" % party, token=token), 200,
                  what="screening view")


def clear(srv, token, party, reason=REASON, key=None):
    return call(srv, "POST", "/v1/risk/parties/%s/screening/clear" % party, {"reason": reason},
                token=token, key=key or new_key("scl"))


def status(srv, token):
    return expect(call(srv, "GET", "/v1/risk/screening/status", token=token), 200,
                  what="status")


def wait_run(srv, token, runs_before):
    """Waits for a re-screening started after runs_before runs to finish; returns its status."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        st = status(srv, token)["rescreening"]
        if st["runs"] > runs_before and st["state"] == "idle" and not st["queued"]:
            check(not st["aborted"], "the run reached its end: %s" % st)
            return st
        check(time.monotonic() < deadline, "no re-screening finished in time: %s" % st)
        time.sleep(0.05)


def audit(srv, action, target):
    q = urllib.parse.urlencode({"action": action, "target": target})
    return expect(call(srv, "GET", "/v1/audit?" + q, token=srv.token), 200, what="audit")["data"]


def cases_of(srv, subject):
    q = urllib.parse.urlencode({"subject": subject, "kind": "sanctions"})
    return expect(call(srv, "GET", "/v1/risk/cases?" + q, token=srv.token), 200,
                  what="cases")["data"]


def refs(v):
    return sorted(h["ref"] for h in v["screening"]["hits"])


# ------------------------------------------------------------------------------------------------


def test_lists_and_registration(ctx):
    """Both layouts load through the API; a transliterated listed name registering is hit, held
    and put in a case; an innocent customer is clear; the customer's name is not stored."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    sdn, alt = data_file(ctx, "sdn.csv"), data_file(ctx, "alt.csv")
    key = new_key("lst")
    got = expect(load(srv, risk.token, "ofac_sdn", "sdn", sdn, alt, key=key), 201, what="sdn")
    check_eq((got["name"], got["kind"], got["entries"], got["changed"], got["rescreen_queued"],
              got["loaded_by"], got["alt_bytes"] > 0, len(got["version"])),
             ("ofac_sdn", "sdn", 39, True, True, risk.user_id, True, 16), "the SDN load")
    again = expect(load(srv, risk.token, "ofac_sdn", "sdn", sdn, alt, key=key), 201,
                   what="a replay")
    check_eq((again["load_id"], again["rescreen_queued"]), (got["load_id"], False),
             "a replay answers the same load and queues nothing")
    expect(load(srv, risk.token, "ofac_sdn", "sdn", sdn, key=key), 422, "idempotency_key_reused",
           "the key with another body")
    simple = load_ok(srv, risk.token, "internal", "simple", data_file(ctx, "simple.csv"))
    check_eq((simple["entries"], simple["alt_bytes"]), (16, 0), "the simple load")
    srv._screening_lists = True
    lists = expect(call(srv, "GET", "/v1/risk/lists", token=risk.token), 200, what="lists")
    mine = {l["name"]: l for l in lists["data"]}
    check_eq((mine["ofac_sdn"]["entries"], mine["internal"]["entries"],
              mine["ofac_sdn"]["version"]), (39, 16, got["version"]), "the lists")
    active = {l["name"]: l["entries"] for l in lists["active"]["lists"]}
    check_eq((active.get("ofac_sdn"), active.get("internal")), (39, 16), "the lists in memory")
    check_eq(lists["active"]["seq"], lists["seq"], "memory follows the store")
    check(audit(srv, "risk.list_load", "ofac_sdn"), "the load is audited")

    # a transliteration of HADDAD, Mohammed Yusuf and of Сергей Иванович Кузнецов
    hit = customer(srv, "Mohamed Youssef Haddad")
    v = view(srv, risk.token, hit.user_id)
    check_eq((v["screening"]["outcome"], v["screening"]["trigger"], v["block"]["blocked"]),
             ("hit", "registration", True), "the registration's screening")
    check("ofac_sdn-90001" in refs(v), "the SDN entry is hit: %s" % refs(v))
    top = v["screening"]["hits"][0]
    check_eq((top["list"], top["entry_id"], top["matched_name"] in
              ("HADDAD, Mohammed Yusuf", "HADDAD, Muhammad Yousef")), ("ofac_sdn", "90001", True),
             "the best hit names the listed name that matched")
    check(top["score"] >= 850, "scored at the threshold or above: %s" % top)
    check_eq({l["name"] for l in v["screening"]["lists"]}, {"ofac_sdn", "internal"},
             "screened against both lists")
    cases = cases_of(srv, hit.user_id)
    check_eq(len(cases), 1, "one sanctions case")
    c = cases[0]
    check_eq((c["status"], c["priority"], c["scenario"], c["dedup_key"], v["block"]["case_id"]),
             ("open", "high", "sanctions_hit", "sanctions:" + hit.user_id, c["id"]),
             "the case, named by the block")
    full = expect(call(srv, "GET", "/v1/risk/cases/" + c["id"], token=risk.token), 200)
    check("ofac_sdn-90001" in [e["operation_id"] for e in full["evidence"]],
          "the hit is the case's evidence: %s" % full["evidence"])
    lines = audit(srv, "risk.screening_block", hit.user_id)
    check_eq(len(lines), 1, "one block line")
    check("haddad" not in str(lines).lower(), "no name in the audit: %s" % lines)

    cyr = customer(srv, "Sergey Ivanovich Kuznetsov")
    v = view(srv, risk.token, cyr.user_id)
    check("internal-C-006" in refs(v), "the Cyrillic entry is hit: %s" % refs(v))
    check(v["block"]["blocked"], "and blocked")

    ok = customer(srv, "Penelope Quartermaine")
    v = view(srv, risk.token, ok.user_id)
    check_eq((v["screening"]["outcome"], v["screening"]["hits"], v["block"]["blocked"],
              cases_of(srv, ok.user_id)), ("clear", [], False, []), "an innocent customer")

    # screening stores ids, never the customer's name (SQLite only: the file is at hand)
    dbs = glob.glob(os.path.join(srv.data, "*.db"))
    if not harness.PG_URL and dbs:
        for path in dbs:
            con = sqlite3.connect(path)
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND name LIKE 'risk_scr%'"):
                text = str(con.execute("SELECT * FROM %s" % table).fetchall())
                for word in ("Youssef", "Penelope", "Quartermaine", "Sergey Ivanovich"):
                    check(word not in text, "%s holds a customer's name" % table)
            con.close()
    srv.check_verify()


def test_merchant_onboarding(ctx):
    """A merchant onboarded under a listed entity's name is hit; another is clear."""
    srv = shared(ctx)
    load_test_lists(ctx, srv, srv.token)
    mid, _owner, _profile = new_merchant(srv, "Orient Star Trading")
    v = view(srv, srv.token, mid)
    check_eq((v["screening"]["outcome"], v["screening"]["trigger"], v["block"]["blocked"]),
             ("hit", "merchant_onboarding", True), "the onboarding's screening")
    check("ofac_sdn-90101" in refs(v), "the entity is hit: %s" % refs(v))
    check_eq(len(cases_of(srv, mid)), 1, "a case for the merchant")
    other, _o, _p = new_merchant(srv, "Bluebell Bakery")
    v = view(srv, srv.token, other)
    check_eq((v["screening"]["outcome"], v["block"]["blocked"]), ("clear", False),
             "an innocent merchant")
    srv.check_verify()


def test_rescreen_on_list_change(ctx):
    """A changed list re-screens existing customers in the background; an unchanged reload
    queues nothing; a manual run works too."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    load_test_lists(ctx, srv, risk.token)
    who = customer(srv, "Wilhelmina Thistlewood")
    check_eq(view(srv, risk.token, who.user_id)["screening"]["outcome"], "clear", "clear at first")
    base = "id,name,date_of_birth\nW-1,Rudolf Ironsmith,1950\n"
    load_ok(srv, risk.token, "watch_extra", "simple", base)
    runs = status(srv, risk.token)["rescreening"]["runs"]
    got = load_ok(srv, risk.token, "watch_extra", "simple", base + "W-2,Thistlewood Wilhelmina,\n")
    check_eq((got["changed"], got["rescreen_queued"], got["entries"]), (True, True, 2),
             "a changed list")
    st = wait_run(srv, risk.token, runs)
    check(st["screened"] >= 1 and st["not_clear"] >= 1, "the run screened people: %s" % st)
    v = view(srv, risk.token, who.user_id)
    check_eq((v["screening"]["outcome"], v["screening"]["trigger"], v["block"]["blocked"]),
             ("hit", "rescreen", True), "re-screened and held")
    check("watch_extra-W-2" in refs(v), "the new entry: %s" % refs(v))

    same = load_ok(srv, risk.token, "watch_extra", "simple", base + "W-2,Thistlewood Wilhelmina,\n")
    check_eq((same["changed"], same["rescreen_queued"]), (False, False), "the same bytes again")

    runs = status(srv, risk.token)["rescreening"]["runs"]
    expect(call(srv, "POST", "/v1/risk/screening/run", {"now": True}, token=risk.token), 400,
           "unknown_field", "a run takes no fields")
    expect(call(srv, "POST", "/v1/risk/screening/run", {}, token=risk.token), 202, what="run")
    st = wait_run(srv, risk.token, runs)
    check_eq((st["why"], st["blocked"]), ("manual", 0), "a manual run blocks no one new")
    check(audit(srv, "risk.screening_run", "screening"), "the run is audited")
    srv.check_verify()


def test_clear_block(ctx):
    """A staff clear lifts the block once; the same hits do not block again, a new entry
    does; the reason is kept for staff and never audited."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    load_test_lists(ctx, srv, risk.token)
    p = customer(srv, "Aleksandr Sergeyevich Volkov")
    check(view(srv, risk.token, p.user_id)["block"]["blocked"], "blocked at registration")
    key = new_key("scl")
    got = expect(clear(srv, risk.token, p.user_id, key=key), 200, what="clear")
    check_eq((got["blocked"], got["clear"]["type"], got["clear"]["by"], got["clear"]["reason"]),
             (False, "clear", risk.user_id, REASON), "the clear")
    again = expect(clear(srv, risk.token, p.user_id, key=key), 200, what="a replayed clear")
    check_eq(again["clear"]["id"], got["clear"]["id"], "the replay answers the same clear")
    expect(clear(srv, risk.token, p.user_id, reason="other", key=key), 422,
           "idempotency_key_reused", "the key for another request")
    body = expect(clear(srv, risk.token, p.user_id), 409, "conflict", "clearing twice")
    check("not blocked" in body.get("detail", ""), "the conflict says why: %s" % body)

    runs = status(srv, risk.token)["rescreening"]["runs"]
    expect(call(srv, "POST", "/v1/risk/screening/run", token=risk.token), 202)
    wait_run(srv, risk.token, runs)
    v = view(srv, risk.token, p.user_id)
    check_eq((v["screening"]["outcome"], v["block"]["blocked"]), ("hit", False),
             "the reviewed hit stays reviewed")
    check_eq([e["type"] for e in v["history"]], ["clear", "block"], "the history, newest first")
    check_eq(v["history"][0]["reason"], REASON, "staff read the reason")
    lines = audit(srv, "risk.screening_clear", p.user_id)
    check_eq(len(lines), 1, "one clear line")
    check(SECRET_WORD not in str(lines).lower(), "no reason in the audit: %s" % lines)

    runs = status(srv, risk.token)["rescreening"]["runs"]
    load_ok(srv, risk.token, "watch_volkov", "simple", "id,name\nV-9,Volkov Aleksandr\n")
    wait_run(srv, risk.token, runs)
    v = view(srv, risk.token, p.user_id)
    check(v["block"]["blocked"], "a new entry blocks again: %s" % v)
    check("watch_volkov-V-9" in refs(v), "the new entry: %s" % refs(v))
    srv.check_verify()


def test_unscreenable_name(ctx):
    """A name of more words than the matcher takes is held for review, never clear."""
    srv = shared(ctx)
    load_test_lists(ctx, srv, srv.token)
    words = "Ann Bob Cid Dan Eve Fay Gus Hal Ivy Jon Kit Lou Max Ned Oma Pia Quin"
    p = customer(srv, words)
    v = view(srv, srv.token, p.user_id)
    check_eq((v["screening"]["outcome"], v["screening"]["unscreenable"], v["block"]["blocked"]),
             ("review", 1, True), "held for review")
    check_eq([c["scenario"] for c in cases_of(srv, p.user_id)], ["sanctions_unscreenable"],
             "its case")
    srv.check_verify()


def test_adhoc(ctx):
    """The ad-hoc screen answers hits with the entry's facts, stores nothing, is audited
    without the name, and refuses what it cannot screen."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    load_test_lists(ctx, srv, risk.token)
    got = expect(call(srv, "POST", "/v1/risk/screen",
                      {"name": "Alexander Volkov", "date_of_birth": "1970"}, token=risk.token),
                 200, what="ad hoc")
    sdn_hits = [h for h in got["hits"] if h["list"] == "ofac_sdn"]
    check(sdn_hits, "hits: %s" % got)
    check_eq(got["hits"], sorted(got["hits"], key=lambda h: -h["score"]), "best first")
    top = sdn_hits[0]
    check_eq((top["list"], top["entry_id"], top["name"], top["type"], top["date_of_birth"],
              top["program"]),
             ("ofac_sdn", "90003", "VOLKOV, Aleksandr Sergeyevich", "individual", "agree",
              "TEST-B"), "the best hit")
    check_eq(got["threshold"], 850, "the default threshold")
    none = expect(call(srv, "POST", "/v1/risk/screen", {"name": "Zebulon Featherstonehaugh"},
                       token=risk.token), 200)
    check_eq((none["hits"], none["hits_total"]), ([], 0), "nothing for an unlisted name")
    lines = audit(srv, "risk.screen_adhoc", "screening")
    check(len(lines) >= 2 and "volkov" not in str(lines).lower(), "audited, no name: %s" % lines)
    for body, detail in (({"name": "X", "date_of_birth": "70"}, "date_of_birth"),
                         ({"name": "X", "date_of_birth": "1970-13"}, "date_of_birth"),
                         ({"name": ""}, "name"),
                         ({"name": "a " * 17}, "name"),
                         ({"name": "X", "extra": 1}, "extra")):
        res = call(srv, "POST", "/v1/risk/screen", body, token=risk.token)
        check(res[0] == 400 and detail in res[1].get("detail", ""), "%s: %s" % (body, res[1]))
    srv.check_verify()


def test_malformed_lists(ctx):
    """Malformed lists are refused with the line and leave the lists as they were."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    before = expect(call(srv, "GET", "/v1/risk/lists", token=risk.token), 200)["seq"]
    bad_csv = "id,name\nA,Good Name\nB,\"broken\"quote\n"
    body = expect(load(srv, risk.token, "bad_one", "simple", bad_csv), 400, "invalid_field",
                  "a bad CSV line")
    check_eq(body.get("detail", "")[:16], "content: line 3 ", "the line: %s" % body)
    sdn = data_file(ctx, "sdn.csv")
    body = expect(load(srv, risk.token, "bad_sdn", "sdn", sdn, "90001,1,\"aka\",\"A\"\n99999,2,"
                       "\"aka\",\"Nobody\",-0- \n"), 400, "invalid_field", "a bad alias file")
    check(body.get("detail", "").startswith("alt_content: line 1"), "the alias line: %s" % body)
    cases = [({"name": "x", "kind": "simple", "content": "id,name\nA,B\n", "alt_content": "x"},
              "alt_content"),
             ({"name": "x", "kind": "pdf", "content": "a"}, "kind"),
             ({"name": "Bad Name", "kind": "simple", "content": "name\nA\n"}, "name"),
             ({"name": "x", "kind": "simple"}, "content"),
             ({"name": "x", "kind": "simple", "content": "name\nA\n", "more": 1}, "more"),
             ({"name": "x", "kind": "simple", "content": 7}, "content")]
    for b, detail in cases:
        res = load(srv, risk.token, None, None, None, body=b)
        check(res[0] == 400 and detail in res[1].get("detail", ""), "%s: %s" % (b, res[1]))
    res = call(srv, "POST", "/v1/risk/lists", {"name": "x", "kind": "simple", "content": "a"},
               token=risk.token)
    expect(res, 400, "idempotency_key_missing", "no key")
    big = "name\n" + ("A" * 100 + "\n") * (7 * 1024 * 1024 // 101 + 10)
    expect(load(srv, risk.token, "big", "simple", big), 413, "payload_too_large", "a list too big")
    check_eq(expect(call(srv, "GET", "/v1/risk/lists", token=risk.token), 200)["seq"], before,
             "nothing stored")
    srv.check_verify()


def test_restart_keeps_lists(ctx):
    """A restart rebuilds the lists from the stored bytes; blocks stay."""
    srv = harness.Server(ctx.bin, env=ENV).start()
    load_test_lists(ctx, srv, srv.token)
    p = customer(srv, "Dragan Petrovic")
    check(view(srv, srv.token, p.user_id)["block"]["blocked"], "blocked")
    before = status(srv, srv.token)["active"]
    srv.restart()
    after = status(srv, srv.token)["active"]
    check_eq(after, before, "the same lists in memory after a restart")
    check(view(srv, srv.token, p.user_id)["block"]["blocked"], "still blocked")
    got = expect(call(srv, "POST", "/v1/risk/screen", {"name": "Dragan Petrovich"},
                      token=srv.token), 200)
    check_eq(got["hits"][0]["entry_id"], "90007", "screening works after the restart")
    srv.check_verify()


def test_threshold_setting(ctx):
    """screening_threshold tunes the hit score; out of range refuses to start."""
    srv = harness.Server(ctx.bin, env=dict(ENV, COFFER_SCREENING_THRESHOLD="990")).start()
    load_test_lists(ctx, srv, srv.token)
    got = expect(call(srv, "POST", "/v1/risk/screen", {"name": "Mohamed Youssef Haddad"},
                      token=srv.token), 200)
    check_eq((got["threshold"], got["hits"]), (990, []), "a variant below a strict threshold")
    exact = expect(call(srv, "POST", "/v1/risk/screen", {"name": "Mohammed Yusuf Haddad"},
                        token=srv.token), 200)
    check_eq(exact["hits"][0]["entry_id"], "90001", "the exact name still hits")
    srv.check_verify()
    srv.close()
    bad = harness.Server(ctx.bin, env=dict(ENV, COFFER_SCREENING_THRESHOLD="100"))
    try:
        bad.start()
        check(False, "a threshold of 100 was accepted")
    except harness.TestFailure as e:
        check("screening_threshold" in str(e), "the refusal names the setting: %s" % e)
    finally:
        bad.close()


def test_two_servers(ctx):
    """Servers on one database (PostgreSQL): a list loaded on one is screened against by the
    other within its poll interval; a hit on one is seen and held on the other."""
    url, name = harness.pg_create_db()
    a = b = None
    try:
        key = "1:" + base64.b64encode(os.urandom(32)).decode()  # one master key for both
        env = dict(ENV, COFFER_OPERATOR_TOKEN="cfo_screening_fleet_token_0123456789abcdef",
                   COFFER_MASTER_KEYS=key)
        a = harness.Server(ctx.bin, env=env, db=url).start()
        b = harness.Server(ctx.bin, env=env, db=url, admin=a.admin).start()
        load_ok(a, a.token, "fleet", "simple", "id,name\nF-1,Ottoline Marchbanks\n")
        deadline = time.monotonic() + 15  # API_SCREENING_POLL_MS and a margin
        while True:
            got = expect(call(b, "POST", "/v1/risk/screen", {"name": "Ottoline Marchbanks"},
                              token=b.token), 200)
            if got["hits"]:
                break
            check(time.monotonic() < deadline, "the other server never took the list")
            time.sleep(0.2)
        check_eq(got["hits"][0]["ref"], "fleet-F-1", "the other server screens against it")
        p = customer(b, "Ottoline Marchbanks")
        check(view(a, a.token, p.user_id)["block"]["blocked"], "a hit on one, held on both")
        a.check_verify()
    finally:
        for srv in (b, a):
            if srv is not None:
                srv.close()
        harness.pg_drop_db(name)


def test_access(ctx):
    """Customers and merchants get 403; support and auditors read; support cannot write;
    unknown and non-party ids answer 404."""
    srv = shared(ctx)
    load_test_lists(ctx, srv, srv.token)
    risk, support, auditor = staff(srv, "risk"), staff(srv, "support"), staff(srv, "auditor")
    p = customer(srv, "Mohammed Yusuf Haddad")
    m_id, owner, _ = new_merchant(srv, "Access Test Shop")
    m_token = ph.sign_in(srv, owner)
    reads = ["/v1/risk/lists", "/v1/risk/screening/status",
             "/v1/risk/parties/%s/screening" % p.user_id]
    for token, role in ((p.token, "customer"), (m_token, "merchant")):
        for path in reads:
            expect(call(srv, "GET", path, token=token), 403, "forbidden",
                   "%s GET %s" % (role, path))
        expect(load(srv, token, "x", "simple", "name\nA\n"), 403, "forbidden", role + " load")
        expect(clear(srv, token, p.user_id), 403, "forbidden", role + " clear")
        expect(call(srv, "POST", "/v1/risk/screen", {"name": "A"}, token=token), 403,
               "forbidden", role + " screen")
        expect(call(srv, "POST", "/v1/risk/screening/run", token=token), 403, "forbidden",
               role + " run")
    for token, role in ((support.token, "support"), (auditor.token, "auditor")):
        for path in reads:
            expect(call(srv, "GET", path, token=token), 200, what="%s GET %s" % (role, path))
        expect(load(srv, token, "x", "simple", "name\nA\n"), 403, "forbidden", role + " load")
        expect(clear(srv, token, p.user_id), 403, "forbidden", role + " clear")
        expect(call(srv, "POST", "/v1/risk/screen", {"name": "A"}, token=token), 403,
               "forbidden", role + " screen")
    check(view(srv, risk.token, p.user_id)["block"]["blocked"], "support could not clear")
    for bad in (NOBODY, risk.user_id, "usr_bad", "acct_0000000000001", "mer_0000000000001"):
        expect(call(srv, "GET", "/v1/risk/parties/%s/screening" % bad, token=risk.token), 404,
               "not_found", "view of " + bad)
        expect(clear(srv, risk.token, bad), 404, "not_found", "clear of " + bad)
    check_eq(view(srv, risk.token, m_id)["party"], m_id, "a merchant's view")
    deadline = time.monotonic() + 5  # queued lines are appended within IDENTITY_AUDITQ_FLUSH_MS
    while not audit(srv, "staff.risk.screening_view", p.user_id):
        check(time.monotonic() < deadline, "views are audited")
        time.sleep(0.05)
    srv.check_verify()


# -- the hooks in risk_cases.c (a case decided clear), pay.c (withdrawals and payouts),
# pay_customer.c and risk_kyc.c (first payees, KYC details)


def withdraw(srv, cust, amount):
    v = ih.step_up(srv.port, cust.token, "withdrawal", admin_token=srv.token, login=cust.login,
                   amount_minor=amount, currency="USD", payee=ph.IBAN)
    return call(srv, "POST", "/v1/me/withdrawals",
                {"amount_minor": amount, "currency": "USD", "bank_account": ph.IBAN,
                 "verification": v}, token=cust.token, key=new_key("wdr"))


def test_case_clear_lifts_block(ctx):
    """Deciding a customer's sanctions case "clear" lifts the block it set, once."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    load_test_lists(ctx, srv, risk.token)
    p = customer(srv, "Rustam Karimov")
    v = view(srv, risk.token, p.user_id)
    check(v["block"]["blocked"] and v["block"]["case_id"], "blocked, with its case: %s" % v)
    cid = v["block"]["case_id"]
    key = new_key("dec")
    body = {"decision": "clear", "reason": REASON}
    expect(call(srv, "POST", "/v1/risk/cases/%s/decision" % cid, body, token=risk.token, key=key),
           200, what="decision")
    v = view(srv, risk.token, p.user_id)
    check_eq((v["block"]["blocked"], v["history"][0]["type"], v["history"][0]["case_id"]),
             (False, "clear", cid), "the case's clear lifted the block")
    expect(call(srv, "POST", "/v1/risk/cases/%s/decision" % cid, body, token=risk.token, key=key),
           200, what="the decision replayed")
    check_eq(len(view(srv, risk.token, p.user_id)["history"]), 2, "one clear, not two")
    lines = audit(srv, "risk.screening_clear", p.user_id)
    check(len(lines) == 1 and cid in str(lines), "audited with the case: %s" % lines)
    srv.check_verify()


def test_payouts_held(ctx):
    """A blocked customer cannot withdraw and a blocked merchant cannot pay out (403
    risk_blocked, nothing about lists); after a clear both can."""
    srv = shared(ctx)
    load_test_lists(ctx, srv, srv.token)
    p = customer(srv, "Tariq Abu Bakr")
    ph.fund(srv, p.token, 5000)
    body = expect(withdraw(srv, p, 100), 403, "risk_blocked", "a blocked customer's withdrawal")
    check("list" not in str(body).lower() and "sanction" not in str(body).lower(),
          "the refusal tips nobody off: %s" % body)
    expect(clear(srv, srv.token, p.user_id), 200)
    res = withdraw(srv, p, 100)
    check(res[0] in (201, 202), "a withdrawal after the clear: %s" % (res[:2],))

    m = ph.merchant(srv, name="Al-Noor Exchange")
    buyer = customer(srv, "Quentin Buyer")
    ph.fund(srv, buyer.token, 5000)
    expect(ph.pay(srv, buyer.token, ph.qr(srv, m, amount_minor=500)["payload"]), 201,
           what="a payment to the merchant")
    expect(call(srv, "POST", "/v1/merchant/payouts", {"amount_minor": 100}, token=m["token"],
                key=new_key("pyo")), 403, "risk_blocked", "a blocked merchant's payout")
    expect(clear(srv, srv.token, m["id"]), 200)
    expect(call(srv, "POST", "/v1/merchant/payouts", {"amount_minor": 100}, token=m["token"],
                key=new_key("pyo")), 201, what="a payout after the clear")
    srv.check_verify()


def test_kyc_and_payee(ctx):
    """KYC details with a listed legal name are hit (trigger kyc); a first send screens the
    recipient (trigger payee)."""
    srv = shared(ctx)
    load_test_lists(ctx, srv, srv.token)
    p = customer(srv, "Lena Ordinary")
    kyc = {"legal_name": "Yelena Viktorovna Smirnova", "id_type": "passport",
           "id_number": "X1234567", "date_of_birth": "1974-05-01", "country": "GB"}
    expect(call(srv, "POST", "/v1/me/kyc/details", kyc, token=p.token), 200, what="kyc details")
    v = view(srv, srv.token, p.user_id)
    check_eq((v["screening"]["trigger"], v["block"]["blocked"]), ("kyc", True), "the KYC hit")
    check("ofac_sdn-90024" in refs(v), "the entry: %s" % refs(v))

    payer, payee = customer(srv, "Paula Payer"), customer(srv, "Ramon Recipient")
    ph.fund(srv, payer.token, 5000)
    v = ih.step_up(srv.port, payer.token, "send", admin_token=srv.token, login=payer.login,
                   amount_minor=100, currency="USD", payee=payee.login)
    expect(call(srv, "POST", "/v1/me/sends", {"to": payee.login, "amount_minor": 100,
                                              "currency": "USD", "verification": v},
                token=payer.token, key=new_key("snd")), 201, what="a first send")
    check_eq(view(srv, srv.token, payee.user_id)["screening"]["trigger"], "payee",
             "the recipient screened as a new payee")
    srv.check_verify()


def forget_screenings(srv, subjects):
    """With the server stopped: removes the subjects' screening rows, as if they had registered
    before screening was deployed (the register does not know them)."""
    check(not srv.running(), "forget the screenings of a stopped server")
    quoted = ", ".join("'%s'" % s for s in subjects)  # ids the server made: usr_ and base32
    sql = "DELETE FROM risk_screenings WHERE subject IN (%s)" % quoted
    if srv.db:
        subprocess.run(["psql", srv.db, "-qAtc", sql], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=60)
        return
    deleted = 0
    for path in glob.glob(os.path.join(srv.data, "*.db")):
        con = sqlite3.connect(path)
        if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'risk_screenings'").fetchone():
            deleted += con.execute(sql).rowcount
            con.commit()
        con.close()
    check_eq(deleted, len(subjects), "screening rows forgotten")


def test_rescreen_unregistered_customers(ctx):
    """Customers who registered before screening existed and never gave KYC details (the
    register does not know them) are re-screened too, each exactly once per run: the listed
    one is hit, put in a case and held; the clean one stays clear."""
    srv = harness.Server(ctx.bin, env=ENV).start()
    try:
        listed = customer(srv, "Bartholomew Quillfeather")
        clean = customer(srv, "Cordelia Ravensworth")
        ph.fund(srv, listed.token, 5000)
        srv.stop()
        forget_screenings(srv, [listed.user_id, clean.user_id])
        srv.start()
        for who in (listed, clean):
            check_eq(view(srv, srv.token, who.user_id)["screening"], None,
                     "never screened, as before screening existed")
        runs = status(srv, srv.token)["rescreening"]["runs"]
        load_ok(srv, srv.token, "watch_legacy", "simple",
                "id,name\nL-1,Quillfeather Bartholomew\n")
        st = wait_run(srv, srv.token, runs)
        check_eq((st["screened"], st["not_clear"], st["blocked"], st["errors"]), (2, 1, 1, 0),
                 "both customers screened once, one held: %s" % st)
        v = view(srv, srv.token, listed.user_id)
        check_eq((v["screening"]["outcome"], v["screening"]["trigger"], v["block"]["blocked"]),
                 ("hit", "rescreen", True), "the listed customer is hit and held")
        check_eq(refs(v), ["watch_legacy-L-1"], "the entry")
        cases = cases_of(srv, listed.user_id)
        check_eq([(c["scenario"], c["status"]) for c in cases], [("sanctions_hit", "open")],
                 "a case for the hit")
        check_eq(v["block"]["case_id"], cases[0]["id"], "the block names the case")
        expect(withdraw(srv, listed, 100), 403, "risk_blocked", "the listed customer's withdrawal")
        v = view(srv, srv.token, clean.user_id)
        check_eq((v["screening"]["outcome"], v["screening"]["trigger"], v["block"]["blocked"],
                  cases_of(srv, clean.user_id)), ("clear", "rescreen", False, []),
                 "the clean customer stays clear")

        # both are in the register now: a run screens each once, not once per walk
        runs = st["runs"]
        expect(call(srv, "POST", "/v1/risk/screening/run", {}, token=srv.token), 202, what="run")
        st = wait_run(srv, srv.token, runs)
        check_eq((st["screened"], st["blocked"]), (2, 0), "each once again, nobody new: %s" % st)
        check(view(srv, srv.token, listed.user_id)["block"]["blocked"], "still held")
        srv.check_verify()
    finally:
        srv.close()


AFTER_HOOKS = [test_case_clear_lifts_block, test_payouts_held, test_kyc_and_payee]

TESTS = [
    test_lists_and_registration,
    test_merchant_onboarding,
    test_rescreen_on_list_change,
    test_clear_block,
    test_unscreenable_name,
    test_adhoc,
    test_malformed_lists,
    test_restart_keeps_lists,
    test_threshold_setting,
    test_access,
    test_rescreen_unregistered_customers,
] + ([test_two_servers] if harness.PG_URL else []) + AFTER_HOOKS

if __name__ == "__main__":
    harness.main(TESTS)
