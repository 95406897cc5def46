#!/usr/bin/env python3
"""test_rules.py - the monitoring rules' staff routes end to end over HTTP: a risk analyst
creates a rule (version 1), reads the set and the rule with its history, updates it (version 2),
disables it by flipping only its flag (recorded as a disable), deletes it and creates it again
(the versions go on); the set version grows by one per change and the server's active set
follows every answer; every change writes its audit line (risk.rule_create, ...: the rule id,
versions and the condition). Conditions that do not compile are refused with the field and the
column ("condition: column 1: unknown feature"), as are bad actions, ids, reasons, unknown and
missing members; nothing is stored then. Replays with a key answer the version they made; the
key with another body is refused. Customers and merchants get 403 everywhere; support and
auditors read but do not write; admins write. A 201st live rule is refused until one is
deleted. Eight analysts creating one id at once make one rule. The feature registry lists every
feature with its type. The dry run answers its shape over an empty window (nothing recorded
yet), refuses windows and limits out of range and conditions that do not compile, and is
audited; the decision list and detail refuse malformed filters and unknown operations. Sends
scored by a review rule show in the decision log (filters, pages, the staff detail with the
features and the rule's text as it was when it decided, the view audited) and a dry run over
them counts and samples what a candidate catches, within its limit. Two servers on one
PostgreSQL database: a rule made on one is run by the other within the poll period (skipped on
SQLite). A server with monitoring off serves the routes too. `coffer verify` after every test.

Usage: test_rules.py --bin build/coffer --src . [test names...]
"""

import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import call, customer, email, expect, merchant  # noqa: E402

ENV = {"COFFER_CURRENCIES": "USD,EUR", "COFFER_SANDBOX_LATENCY_MS": "50",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
BIG_EUR = 'currency == "EUR" and amount_minor > 100000'
SEQ = iter(range(1, 1000000))


def shared(ctx):
    return ph.shared(ctx, ENV)


def staff(srv, role):
    return ih.create_staff(srv.port, srv.token, email(role), role)


def rule_id(tag="r"):
    """A rule id unique in the run ([a-z0-9_])."""
    return "%s_%s_%d" % (tag, ph.RUN, next(SEQ))


def create(srv, token, rid, condition=BIG_EUR, action="review", reason="large_amount",
           key=None, **extra):
    body = dict({"id": rid, "condition": condition, "action": action, "reason": reason}, **extra)
    return call(srv, "POST", "/v1/risk/rules", body, token=token, key=key or new_key("rc"))


def update(srv, token, rid, condition=BIG_EUR, action="review", reason="large_amount", key=None,
           **extra):
    body = dict({"condition": condition, "action": action, "reason": reason}, **extra)
    return call(srv, "POST", "/v1/risk/rules/" + rid, body, token=token, key=key or new_key("ru"))


def delete(srv, token, rid, key=None, body=None):
    return call(srv, "POST", "/v1/risk/rules/%s/delete" % rid, body, token=token,
                key=key or new_key("rd"))


def rules(srv, token):
    return expect(call(srv, "GET", "/v1/risk/rules", token=token), 200, what="the rules")


def rule(srv, token, rid):
    return expect(call(srv, "GET", "/v1/risk/rules/" + rid, token=token), 200, what="a rule")


def dry_run(srv, token, body):
    return call(srv, "POST", "/v1/risk/rules/dry-run", body, token=token)


def audit(srv, action, target=None):
    q = {"action": action}
    if target is not None:
        q["target"] = target
    got = expect(call(srv, "GET", "/v1/audit?" + urllib.parse.urlencode(q), token=srv.token),
                 200, what="audit")
    return got["data"]


# ------------------------------------------------------------------------------------------------


def test_rule_life(ctx):
    """Create, read, update, disable, delete, create again: versions, set versions, the active
    set, replays and the audit lines."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    rid = rule_id("big")
    before = rules(srv, risk.token)["set_version"]

    key = new_key("rc")
    got = expect(create(srv, risk.token, rid, key=key, description="large euro amounts"), 201,
                 what="create")
    r = got["rule"]
    check_eq((r["id"], r["version"], r["condition"], r["action"], r["reason"], r["description"],
              r["enabled"], r["change"], r["changed_by"]),
             (rid, 1, BIG_EUR, "review", "large_amount", "large euro amounts", True, "create",
              risk.user_id), "the first version")
    check_eq(got["set_version"], before + 1, "the set version grew by one")
    check_eq(got["active_set_version"], got["set_version"], "the server runs the new set")
    check_eq(r["set_version"], got["set_version"], "the version records its set version")
    replay = expect(create(srv, risk.token, rid, key=key, description="large euro amounts"), 201,
                    what="a replay")
    check_eq(replay["rule"], r, "a replay answers the same version")
    expect(create(srv, risk.token, rid, key=key, description="other"), 422,
           "idempotency_key_reused", "the key with another body")
    body = expect(create(srv, risk.token, rid), 409, "conflict", "creating a live id")
    check_eq(body.get("detail"), "id: exists", "the conflict's detail")

    listed = rules(srv, risk.token)
    check_eq((listed["set_version"], listed["active_set_version"]),
             (got["set_version"], got["set_version"]), "the list's versions")
    mine = [x for x in listed["data"] if x["id"] == rid]
    check_eq(mine, [r], "the list shows the rule")
    ids = [x["id"] for x in listed["data"]]
    check_eq(ids, sorted(ids), "the list is sorted by id")

    v2 = expect(update(srv, risk.token, rid, condition=BIG_EUR + " and payee_new",
                       action="block", reason="large_new_payee"), 200, what="update")
    check_eq((v2["rule"]["version"], v2["rule"]["change"], v2["rule"]["action"],
              v2["rule"]["description"], v2["rule"]["enabled"], v2["set_version"]),
             (2, "update", "block", "", True, got["set_version"] + 1),
             "the second version (a description left out is none)")
    v3 = expect(update(srv, risk.token, rid, condition=BIG_EUR + " and payee_new",
                       action="block", reason="large_new_payee", enabled=False), 200,
                what="disable by update")
    check_eq((v3["rule"]["version"], v3["rule"]["change"], v3["rule"]["enabled"]),
             (3, "disable", False), "only the flag changed: a disable")
    v4 = expect(update(srv, risk.token, rid, condition="payee_new", action="challenge",
                       reason="new_payee"), 200, what="update of a disabled rule")
    check_eq((v4["rule"]["version"], v4["rule"]["change"], v4["rule"]["enabled"]),
             (4, "update", False), "enabled left out keeps the flag")

    dkey = new_key("rd")
    gone = expect(delete(srv, risk.token, rid, key=dkey), 200, what="delete")
    check_eq((gone["rule"]["version"], gone["rule"]["change"], gone["active_set_version"]),
             (5, "delete", gone["set_version"]), "the delete")
    check_eq(expect(delete(srv, risk.token, rid, key=dkey), 200, what="a replayed delete"),
             gone, "a replayed delete")
    expect(delete(srv, risk.token, rid), 404, "not_found", "deleting a deleted rule")
    expect(update(srv, risk.token, rid), 404, "not_found", "updating a deleted rule")
    check(rid not in [x["id"] for x in rules(srv, risk.token)["data"]], "gone from the set")
    view = rule(srv, risk.token, rid)
    check_eq((view["live"], view["rule"]), (False, None), "a deleted rule")
    check_eq([(h["version"], h["change"]) for h in view["history"]],
             [(5, "delete"), (4, "update"), (3, "disable"), (2, "update"), (1, "create")],
             "the history, newest first")
    check_eq([h["set_version"] for h in view["history"]],
             sorted([h["set_version"] for h in view["history"]], reverse=True),
             "set versions grow along the history")

    again = expect(create(srv, risk.token, rid, condition="device_new", action="challenge",
                          reason="new_device"), 201, what="create again")
    check_eq(again["rule"]["version"], 6, "versions never restart")
    view = rule(srv, risk.token, rid)
    check_eq((view["live"], view["rule"]["version"], len(view["history"])), (True, 6, 6),
             "live again")

    lines = audit(srv, "risk.rule_create", rid)
    check_eq(len(lines), 2, "two creates audited (the replay is not)")
    check_eq(lines[0]["actor"], risk.user_id, "the audit's actor")
    check("condition " + BIG_EUR in lines[0]["detail"] and "version 1" in lines[0]["detail"],
          "the audit detail: %s" % lines[0]["detail"])
    for action, n in (("risk.rule_update", 2), ("risk.rule_disable", 1), ("risk.rule_delete", 1)):
        check_eq(len(audit(srv, action, rid)), n, "audit lines of " + action)
    expect(delete(srv, risk.token, rid, body={}), 200, what="delete with {}")
    srv.check_verify()


def test_compile_errors(ctx):
    """Refusals name the field and, for the condition, the column; they store nothing."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    rid = rule_id("bad")
    cases = [
        ({"condition": "amout_minor > 5"}, "invalid_field", "condition: column 1: unknown feature"),
        ({"condition": "amount_minor > 5 and currency == 5"}, "invalid_field",
         "condition: column 34: text feature: expected a string"),
        ({"condition": 'kind == "sned"'}, "invalid_field", "condition: column 9: unknown kind"),
        ({"condition": "amount_minor = 5"}, "invalid_field",
         "condition: column 14: = is not an operator: use =="),
        ({"condition": ""}, "invalid_field", "condition: empty condition"),
        ({"condition": "(" * 40 + "payee_new" + ")" * 40}, "invalid_field", None),
        ({"condition": "payee_new or " * 100 + "payee_new"}, "invalid_field", None),
        ({"action": "deny"}, "invalid_field", "action: must be allow, challenge, review or block"),
        ({"reason": "Large Amount"}, "invalid_field",
         "reason: must be 1 to 40 characters of a-z, 0-9 and _"),
        ({"id": "Bad-Id"}, "invalid_field", "id: must be 1 to 40 characters of a-z, 0-9 and _"),
        ({"id": "x" * 41}, "invalid_field", "id: must be 1 to 40 characters of a-z, 0-9 and _"),
        ({"description": "bell\u0007"}, "invalid_field", None),
        ({"enabled": "yes"}, "invalid_field", "enabled"),
        ({"condition": 5}, "invalid_field", "condition"),
        ({"extra": 1}, "unknown_field", None),
    ]
    for change, code, detail in cases:
        body = dict({"id": rid, "condition": "payee_new", "action": "review", "reason": "r"},
                    **change)
        got = expect(call(srv, "POST", "/v1/risk/rules", body, token=risk.token,
                          key=new_key("bad")), 400, code, "create %s" % str(change)[:60])
        if detail is not None:
            check_eq(got.get("detail"), detail, "the detail of %s" % str(change)[:60])
    for missing in ("id", "condition", "action", "reason"):
        body = {"id": rid, "condition": "payee_new", "action": "review", "reason": "r"}
        del body[missing]
        expect(call(srv, "POST", "/v1/risk/rules", body, token=risk.token, key=new_key("m")),
               400, "missing_field", "without " + missing)
    expect(call(srv, "POST", "/v1/risk/rules",
                {"id": rid, "condition": "payee_new", "action": "review", "reason": "r"},
                token=risk.token), 400, "idempotency_key_missing", "no key")
    expect(call(srv, "GET", "/v1/risk/rules/" + rid, token=risk.token), 404, "not_found",
           "nothing was stored")

    # an update refused keeps the rule as it was; an update may not rename
    expect(create(srv, risk.token, rid, condition="payee_new"), 201)
    got = expect(update(srv, risk.token, rid, condition="amount_minor > \"5\""), 400,
                 "invalid_field", "a bad update")
    check_eq(got.get("detail"), "condition: column 16: integer feature: expected an integer",
             "the update's detail")
    expect(update(srv, risk.token, rid, id="other"), 400, "unknown_field", "id in an update")
    expect(delete(srv, risk.token, rid, body={"why": "x"}), 400, "unknown_field",
           "a delete's body")
    view = rule(srv, risk.token, rid)
    check_eq((view["rule"]["version"], view["rule"]["condition"]), (1, "payee_new"),
             "the refusals changed nothing")
    expect(call(srv, "GET", "/v1/risk/rules/NOT-AN-ID", token=risk.token), 404, "not_found")
    expect(update(srv, risk.token, "NOT-AN-ID"), 404, "not_found", "update of a malformed id")
    expect(delete(srv, risk.token, "NOT-AN-ID"), 404, "not_found", "delete of a malformed id")
    expect(delete(srv, risk.token, rid), 200)
    srv.check_verify()


def test_access(ctx):
    """Customers and merchants: 403 everywhere. Support and auditors read; risk and admin
    write."""
    srv = shared(ctx)
    risk, support, auditor = staff(srv, "risk"), staff(srv, "support"), staff(srv, "auditor")
    cust = customer(srv, "Rules Reader")
    m = merchant(srv, name="Rules Shop")
    rid = rule_id("acc")
    expect(create(srv, risk.token, rid), 201)
    reads = ["/v1/risk/rules", "/v1/risk/rules/" + rid, "/v1/risk/features",
             "/v1/risk/decisions", "/v1/risk/decisions/op_nope"]
    writes = [("/v1/risk/rules", {"id": rule_id("w"), "condition": "payee_new",
                                  "action": "review", "reason": "r"}),
              ("/v1/risk/rules/" + rid, {"condition": "payee_new", "action": "review",
                                         "reason": "r"}),
              ("/v1/risk/rules/%s/delete" % rid, None),
              ("/v1/risk/rules/dry-run", {"condition": "payee_new", "action": "review"})]
    for who, token in (("customer", cust.token), ("merchant", m["token"])):
        for path in reads:
            expect(call(srv, "GET", path, token=token), 403, "forbidden", "%s GET %s" % (who, path))
        for path, body in writes:
            expect(call(srv, "POST", path, body, token=token, key=new_key()), 403, "forbidden",
                   "%s POST %s" % (who, path))
    for who, token in (("support", support.token), ("auditor", auditor.token)):
        for path in reads[:3]:
            expect(call(srv, "GET", path, token=token), 200, what="%s GET %s" % (who, path))
        expect(call(srv, "GET", reads[4], token=token), 404, "not_found", who + " unknown op")
        for path, body in writes:
            expect(call(srv, "POST", path, body, token=token, key=new_key()), 403, "forbidden",
                   "%s POST %s" % (who, path))
    expect(call(srv, "GET", "/v1/risk/rules"), 401, what="no token")
    check_eq(rule(srv, risk.token, rid)["rule"]["version"], 1, "nobody changed it")
    got = expect(update(srv, srv.token, rid, action="block"), 200, what="an admin's update")
    check_eq(got["rule"]["changed_by"] != risk.user_id, True, "changed by the admin")
    expect(delete(srv, srv.token, rid), 200, what="an admin's delete")
    srv.check_verify()


def test_features(ctx):
    """The registry: every feature of docs/RISK.md with its type and a line of doc."""
    srv = shared(ctx)
    support = staff(srv, "support")
    got = expect(call(srv, "GET", "/v1/risk/features", token=support.token), 200)
    names = {f["name"]: f["type"] for f in got["data"]}
    check_eq(len(got["data"]), 38, "14 features and 24 velocity figures")
    check_eq((names["amount_minor"], names["currency"], names["payee_new"],
              names["count_1m_user"], names["sum_24h_payee"]),
             ("integer", "text", "boolean", "integer", "integer"), "some types")
    check(all(f["doc"] for f in got["data"]), "every feature has a doc line")
    check_eq(got["actions"], ["allow", "challenge", "review", "block"], "the actions")
    srv.check_verify()


def test_limit(ctx):
    """At most 200 live rules; deleting one makes room. Every rule is in the active set."""
    srv = ctx.server(env=ENV)
    risk = staff(srv, "risk")
    results = [None] * 200

    def make(i):
        results[i] = create(srv, risk.token, "lim_%03d" % i, condition="amount_minor < 0",
                            action="allow", reason="never")

    harness.run_threads(8, lambda t: [make(i) for i in range(t, 200, 8)])
    check_eq(sorted(r[0] for r in results), [201] * 200, "200 rules")
    check_eq(sorted(r[1]["set_version"] for r in results), list(range(1, 201)),
             "each change its own set version")
    got = expect(create(srv, risk.token, "lim_200"), 409, "conflict", "a 201st rule")
    check_eq(got.get("detail"), "id: at most 200 live rules", "the limit's detail")
    expect(delete(srv, risk.token, "lim_000"), 200)
    expect(create(srv, risk.token, "lim_200"), 201, what="room again")
    listed = rules(srv, risk.token)
    check_eq((len(listed["data"]), listed["set_version"], listed["active_set_version"]),
             (200, 202, 202), "the set")
    srv.check_verify()


def test_concurrent_creates(ctx):
    """Eight analysts creating one id at once: one rule, seven conflicts."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    rid = rule_id("race")
    results = [None] * 8

    def run(i):
        results[i] = create(srv, risk.token, rid, reason="race_%d" % i)

    harness.run_threads(8, run)
    check_eq(sorted(r[0] for r in results), [201] + [409] * 7, "one create wins")
    view = rule(srv, risk.token, rid)
    check_eq(len(view["history"]), 1, "one version")
    expect(delete(srv, risk.token, rid), 200)
    srv.check_verify()


def test_dry_run(ctx):
    """A dry run's shape over an empty window, its bounds, its compile errors, its audit."""
    srv = ctx.server(env=ENV)  # nothing recorded yet
    risk = staff(srv, "risk")
    got = expect(dry_run(srv, risk.token, {"condition": BIG_EUR, "action": "review"}), 200,
                 what="a dry run")
    check_eq((got["examined"], got["matched"], got["samples"], got["window_s"], got["limit"],
              got["limit_reached"]), (0, 0, [], 7 * 86400, 10000, False), "an empty window")
    check_eq(got["by_action"], {"allow": 0, "challenge": 0, "review": 0, "block": 0},
             "the counts by action")
    check("since" in got, "the window's start: %s" % got)
    got = expect(dry_run(srv, srv.token, {"condition": "payee_new", "action": "block",
                                          "reason": "try_it", "window_s": 90 * 86400,
                                          "limit": 100000}), 200, what="the widest dry run")
    check_eq((got["window_s"], got["limit"]), (90 * 86400, 100000), "the bounds taken")
    bad = [
        ({"window_s": 0}, "window_s: 1 to 7776000 (90 days)"),
        ({"window_s": 90 * 86400 + 1}, "window_s: 1 to 7776000 (90 days)"),
        ({"limit": 0}, "limit: 1 to 100000"),
        ({"limit": 100001}, "limit: 1 to 100000"),
        ({"condition": "amout_minor > 5"}, "condition: column 1: unknown feature"),
        ({"action": "maybe"}, "action: must be allow, challenge, review or block"),
        ({"reason": "Not A Code"}, "reason: must be 1 to 40 characters of a-z, 0-9 and _"),
    ]
    for change, detail in bad:
        body = dict({"condition": "payee_new", "action": "review"}, **change)
        res = expect(dry_run(srv, risk.token, body), 400, "invalid_field", str(change))
        check_eq(res.get("detail"), detail, "the detail of %s" % change)
    expect(dry_run(srv, risk.token, {"condition": "payee_new", "action": "review", "id": "x"}),
           400, "unknown_field", "a dry run takes no id")
    expect(dry_run(srv, risk.token, {"action": "review"}), 400, "missing_field", "no condition")
    lines = audit(srv, "risk.rule_dry_run")
    check_eq(len(lines), 2, "two dry runs audited")
    check("condition " + BIG_EUR in lines[0]["detail"] and "examined 0" in lines[0]["detail"],
          "the dry run's audit detail: %s" % lines[0]["detail"])
    check_eq(rules(srv, risk.token)["set_version"], 0, "a dry run stores no rule")
    srv.check_verify()


def test_decisions_routes(ctx):
    """The decision list's filters and bounds; an unknown operation."""
    srv = ctx.server(env=ENV)
    risk = staff(srv, "risk")
    for q in ("", "?action=review&review=pending", "?action=block&party=usr_0000000000001",
              "?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&limit=100"):
        got = expect(call(srv, "GET", "/v1/risk/decisions" + q, token=risk.token), 200,
                     what="decisions" + q)
        check_eq((got["data"], got["next_cursor"]), ([], None), "nothing recorded yet")
    for q, code in (("?action=deny", "invalid_field"), ("?review=maybe", "invalid_field"),
                    ("?from=yesterday", "invalid_field"), ("?to=2020-13-01", "invalid_field"),
                    ("?party=", "invalid_field"), ("?limit=101", "invalid_page_size"),
                    ("?limit=0", "invalid_page_size"), ("?cursor=!!", "invalid_cursor")):
        expect(call(srv, "GET", "/v1/risk/decisions" + q, token=risk.token), 400, code,
               "decisions" + q)
    expect(call(srv, "GET", "/v1/risk/decisions/op_0000000000001", token=risk.token), 404,
           "not_found", "an unknown operation")
    srv.check_verify()


def send(srv, frm, to, amount, currency="USD"):
    """A send, with a step-up (bound to the payee, amount and currency) when the server asks."""
    body = {"to": to.login, "amount_minor": amount, "currency": currency}
    res = call(srv, "POST", "/v1/me/sends", body, token=frm.token, key=new_key("snd"))
    if res[0] != 403 or res[1].get("code") != "step_up_required":
        return res
    v = ih.step_up(srv.port, frm.token, "send", admin_token=srv.token, login=frm.login,
                   amount_minor=amount, currency=currency, payee=to.login)
    return call(srv, "POST", "/v1/me/sends", dict(body, verification=v), token=frm.token,
                key=new_key("snd"))


def test_decisions_of_payments(ctx):
    """Sends scored by the active set show in the decision log (the list, its filters, the
    staff detail with the rule's text as it was) and a dry run replays them."""
    srv = ctx.server(env=ENV)
    risk, support = staff(srv, "risk"), staff(srv, "support")
    alice, bob = customer(srv, "Alice Scored"), customer(srv, "Bob Scored")
    ph.fund(srv, alice.token, 10000)
    made = expect(create(srv, risk.token, "big_send", condition='kind == "send" and '
                         'amount_minor > 500', action="review", reason="big_send",
                         description="sends over 5.00"), 201)
    check(send(srv, alice, bob, 600)[0] in (200, 201, 202), "the big send was taken")
    expect(send(srv, alice, bob, 100), 201, what="a small send")
    expect(update(srv, risk.token, "big_send", condition='kind == "send" and amount_minor > 50',
                  action="review", reason="big_send"), 200, what="a later version")

    got = expect(call(srv, "GET", "/v1/risk/decisions", token=support.token), 200)
    sends = [d for d in got["data"] if d["kind"] == "send"]
    check_eq([(d["amount_minor"], d["action"], d["review"], d["party"]) for d in sends],
             [(100, "allow", "none", alice.user_id), (600, "review", "pending", alice.user_id)],
             "both sends, newest first")
    check_eq(sends[1]["matches"], [{"rule_id": "big_send", "reason": "big_send",
                                    "action": "review"}], "the match")
    check_eq(sends[1]["set_version"], made["set_version"], "scored by the set of the time")
    check("features" not in sends[1], "the list shows no features")
    pending = expect(call(srv, "GET", "/v1/risk/decisions?action=review&review=pending&party=" +
                          alice.user_id, token=risk.token), 200)["data"]
    check_eq([d["operation_id"] for d in pending], [sends[1]["operation_id"]], "the filters")
    page = expect(call(srv, "GET", "/v1/risk/decisions?limit=1", token=risk.token), 200)
    check(page["next_cursor"] is not None, "a next page")
    nxt = expect(call(srv, "GET", "/v1/risk/decisions?limit=1&cursor=" + page["next_cursor"],
                      token=risk.token), 200)
    check(nxt["data"][0]["operation_id"] != page["data"][0]["operation_id"], "the next page")

    detail = expect(call(srv, "GET", "/v1/risk/decisions/" + sends[1]["operation_id"],
                         token=support.token), 200)
    check_eq(detail["matches"][0]["rule"], {"version": 1, "description": "sends over 5.00",
                                           "condition": 'kind == "send" and amount_minor > 500'},
             "the rule as it was when it decided")
    check_eq((detail["features"]["amount_minor"], detail["features"]["kind"],
              detail["features"]["currency"]), (600, "send", "USD"), "the features")
    check_eq(list(detail["features"])[:3], ["amount_minor", "currency", "kind"],
             "the registry's order")
    check(detail["customer_message"] and "big_send" not in detail["customer_message"],
          "the customer's message names no rule")
    deadline = time.monotonic() + 5  # the view's line is queued, appended within moments
    while not audit(srv, "staff.risk.decision_view", sends[1]["operation_id"]):
        check(time.monotonic() < deadline, "the decision view is audited")
        time.sleep(0.05)

    dry = expect(dry_run(srv, risk.token, {"condition": 'kind == "send" and amount_minor < 200',
                                           "action": "block"}), 200)
    check_eq((dry["matched"], dry["by_action"]["block"]), (1, 1), "the small send caught")
    check(dry["examined"] >= 2, "every recorded decision examined: %s" % dry)
    check_eq([(x["operation_id"], x["amount_minor"], x["currency"], x["kind"], x["decided"])
              for x in dry["samples"]],
             [(sends[0]["operation_id"], 100, "USD", "send", "allow")], "the sample")
    one = expect(dry_run(srv, risk.token, {"condition": "amount_minor >= 0", "action": "review",
                                           "limit": 1}), 200)
    check_eq((one["examined"], one["limit_reached"]), (1, True), "the limit")
    srv.check_verify()


def test_two_servers(ctx):
    """Two servers on one PostgreSQL database: a rule made on one is run by the other within
    the poll period (API_RISK_RULES_POLL_MS, 2 s), without a request to it. PostgreSQL only."""
    if not harness.PG_URL:
        print("  (skipped: COFFER_TEST_PG_URL is not set)")
        return
    url, name = harness.pg_create_db()
    token = "cft_rules_test_%s" % ph.RUN
    servers = [harness.Server(ctx.bin, db=url, env=dict(ENV, COFFER_OPERATOR_TOKEN=token),
                              bootstrap=False) for _ in range(2)]
    try:
        for s in servers:
            s.start()
        admin = servers[0].bootstrap()
        servers[1].use_admin(admin)
        a, b = servers
        got = expect(create(a, a.token, rule_id("fleet"), condition="device_new"), 201)
        deadline = time.monotonic() + 6
        while rules(b, b.token)["active_set_version"] != got["set_version"]:
            check(time.monotonic() < deadline, "the other server picked the change up")
            time.sleep(0.1)
        check_eq(rules(b, b.token)["set_version"], got["set_version"], "one store")
        for s in servers:
            s.check_verify()
    finally:
        for s in servers:
            s.close()
        harness.pg_drop_db(name)


def test_monitoring_off(ctx):
    """monitoring = off: the server starts and the rules can still be edited."""
    srv = ctx.server(env=dict(ENV, COFFER_MONITORING="off"))
    rid = rule_id("off")
    got = expect(create(srv, srv.token, rid, condition="payee_new"), 201, what="create")
    check_eq(got["active_set_version"], 1, "the set is kept up to date all the same")
    srv.check_verify()


def test_base_version(ctx):
    """Two analysts edit one rule from the version they read: the first change wins, the second
    (its base_version stale) answers 409 and changes nothing, so the rule is the first's; a
    change to another rule leaves a base current; the same key replays; racing updates from one
    base make one version; malformed bases are refused; without a base the last change wins."""
    srv = shared(ctx)
    alice, bob = staff(srv, "risk"), staff(srv, "risk")
    rid, other = rule_id("base"), rule_id("base")
    got = expect(create(srv, alice.token, rid, base_version=0), 201, what="create from 0")
    check_eq(got["rule"]["version"], 1, "version 1")
    base = rule(srv, bob.token, rid)["rule"]["version"]  # both analysts read version 1
    expect(create(srv, alice.token, other), 201, what="another rule")  # moves the set version
    key = new_key("ru")
    first = expect(update(srv, alice.token, rid, reason="alice_edit", base_version=base, key=key),
                   200, what="the first analyst's edit")
    check_eq(first["rule"]["version"], 2, "the first edit made version 2")
    set_before = rules(srv, bob.token)["set_version"]
    body = expect(update(srv, bob.token, rid, action="block", reason="bob_edit",
                         base_version=base), 409, "conflict", "the second analyst's stale edit")
    check(body.get("detail", "").startswith("base_version: "), "the detail names it: %s" % body)
    view = rule(srv, bob.token, rid)
    check_eq((view["rule"]["version"], view["rule"]["reason"], view["rule"]["action"],
              view["rule"]["changed_by"], len(view["history"])),
             (2, "alice_edit", "review", alice.user_id, 2), "the rule is the first analyst's")
    check_eq(rules(srv, bob.token)["set_version"], set_before, "nothing was recorded")
    check_eq(len(audit(srv, "risk.rule_update", rid)), 1, "one update audited")
    again = expect(update(srv, alice.token, rid, reason="alice_edit", base_version=base, key=key),
                   200, what="the first edit replayed")
    check_eq(again["rule"]["version"], 2, "a replay answers its version despite the stale base")

    expect(delete(srv, bob.token, rid, body={"base_version": 1}), 409, "conflict",
           "a delete from a stale base")
    for bad in (-1, "2", 2.5, 1 << 40, True):
        res = update(srv, bob.token, rid, base_version=bad)
        check(res[0] == 400 and "base_version" in res[1].get("detail", ""),
              "base_version %r: %s" % (bad, res[1]))
    expect(delete(srv, bob.token, rid, body={"base_version": 2, "extra": 1}), 400,
           "unknown_field", "a delete with an unknown member")
    results = [None] * 6

    def run(i):
        results[i] = update(srv, alice.token if i % 2 else bob.token, rid, reason="race_%d" % i,
                            base_version=2)

    harness.run_threads(6, run)
    check_eq(sorted(r[0] for r in results), [200] + [409] * 5, "one racing edit wins")
    winner = [r[1] for r in results if r[0] == 200][0]
    view = rule(srv, bob.token, rid)
    check_eq((view["rule"]["version"], view["rule"]["reason"]), (3, winner["rule"]["reason"]),
             "the winner's edit, once")
    expect(update(srv, bob.token, rid, reason="no_base"), 200, what="without a base")
    check_eq(rule(srv, bob.token, rid)["rule"]["version"], 4, "the last change wins")
    expect(delete(srv, bob.token, rid, body={"base_version": 4}), 200, what="a delete from 4")
    expect(delete(srv, alice.token, other), 200)
    srv.check_verify()


TESTS = [
    test_rule_life,
    test_compile_errors,
    test_access,
    test_features,
    test_limit,
    test_concurrent_creates,
    test_dry_run,
    test_decisions_routes,
    test_decisions_of_payments,
    test_two_servers,
    test_monitoring_off,
    test_base_version,
]

if __name__ == "__main__":
    harness.main(TESTS)
