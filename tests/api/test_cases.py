#!/usr/bin/env python3
"""test_cases.py - AML scenarios turned into cases, and case management, end to end over HTTP.

The server runs with low AML thresholds (USD: large 100.00, so structuring's band is 80.00 to
99.99; fan-in from 3 senders; the timer off, so POST /v1/risk/aml/sweep runs the sweep). A
customer who sends three payments just under the threshold to three people is found by the
sweep: exactly one case, subject that customer, scenario structuring, the three sends as
evidence; sweeping again changes nothing, and a fourth send in the band joins the same case.
A customer with ordinary activity stays quiet. A customer paid by three people gets a fan-in
case. The lifecycle: assign (to a risk analyst; not to a customer), notes, a linked operation
as evidence (not one of someone else, not twice), replays and reused keys, the decision freeze
(the subject then cannot send: account_frozen; the case is closed and read-only), clear, and
report (the report turns final). The suspicious-activity report in JSON and CSV carries the
reporting entity, the case, the subject's identity, the timeline with amounts, currencies and
counterparties, totals per currency, the notes and the decision; its export is audited as a
personal-data read, and no audit line carries a note or a reason. Customers and merchants get
403, support and auditors read but cannot write, unknown and malformed case ids answer 404.
A second server with a one-second timer opens a case with nobody calling the sweep, and stops
cleanly. `coffer verify` after every test.

Usage: test_cases.py --bin build/coffer --src . [test names...]
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
from pay_helpers import call, customer, email, expect, fund, merchant, pay, qr  # noqa: E402

OPERATOR = "Coffer Test Payments Ltd"
ENV = {"COFFER_CURRENCIES": "USD,EUR", "COFFER_SANDBOX_LATENCY_MS": "50",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789",
       "COFFER_MONITORING": "off",
       "COFFER_AML_CURRENCIES": "USD:10000,EUR:10000",
       "COFFER_AML_FAN_IN_COUNT_MIN": "3",
       "COFFER_AML_SWEEP_PERIOD_S": "0",
       "COFFER_OPERATOR_NAME": OPERATOR}
NOTE = "Called the customer: says the sends repay a private loan; no paperwork offered"
NOTE_WORD = "paperwork"  # a word of NOTE that must never reach the audit log
REASON = "Sends kept just under the reporting threshold; reported to the FIU"
BAND = 9000  # in structuring's band: 80% to 100% of 10000
UNKNOWN_CASE = "cas_0000000000001"
KYC = {"legal_name": "Stella Anne Structurer", "id_type": "passport", "id_number": "P1234567",
       "date_of_birth": "1988-04-12", "country": "GB"}


def shared(ctx):
    return ph.shared(ctx, ENV)


def staff(srv, role):
    return ih.create_staff(srv.port, srv.token, email(role), role, name="Rae %s" % role.title())


def send(srv, frm, to, amount, currency="USD"):
    """A send, with a step-up (bound to the recipient, amount and currency) only when asked."""
    body = {"to": to.login, "amount_minor": amount, "currency": currency}
    res = call(srv, "POST", "/v1/me/sends", body, token=frm.token, key=new_key("snd"))
    if res[0] != 403 or res[1].get("code") != "step_up_required":
        return res
    v = ih.step_up(srv.port, frm.token, "send", admin_token=srv.token, login=frm.login,
                   amount_minor=amount, currency=currency, payee=to.login)
    return call(srv, "POST", "/v1/me/sends", dict(body, verification=v), token=frm.token,
                key=new_key("snd"))


def sent(srv, frm, to, amount, currency="USD"):
    return expect(send(srv, frm, to, amount, currency), 201, what="a send")["id"]


def sweep(srv, token=None):
    got = expect(call(srv, "POST", "/v1/risk/aml/sweep", None, token=token or srv.token), 200,
                 what="sweep")
    for field in ("operations", "subjects", "alerts", "cases_opened", "subjects_skipped"):
        check(isinstance(got.get(field), int), "sweep answers %s: %s" % (field, got))
    check_eq(got["subjects_skipped"], 0, "no subject failed its scan")
    return got


def cases_of(srv, subject, token=None, **filters):
    q = urllib.parse.urlencode(dict(filters, subject=subject))
    return expect(call(srv, "GET", "/v1/risk/cases?" + q, token=token or srv.token), 200,
                  what="case list")["data"]


def case(srv, case_id, token=None):
    return expect(call(srv, "GET", "/v1/risk/cases/" + case_id, token=token or srv.token), 200,
                  what="case")


def write(srv, token, case_id, action, body, key=None):
    return call(srv, "POST", "/v1/risk/cases/%s/%s" % (case_id, action), body, token=token,
                key=key or new_key(action))


def audit(srv, action, target):
    q = urllib.parse.urlencode({"action": action, "target": target})
    return expect(call(srv, "GET", "/v1/audit?" + q, token=srv.token), 200, what="audit")["data"]


def structurer(srv):
    """A funded customer who sends three amounts in the band to three people; returns the
    customer, the people and the send ids."""
    s = customer(srv, "Stella Structurer")
    fund(srv, s.token, 100000)
    people = [customer(srv, "Payee %d" % i) for i in range(3)]
    ids = [sent(srv, s, p, BAND + 100 * i) for i, p in enumerate(people)]
    return s, people, ids


# ------------------------------------------------------------------------------------------------


def test_structuring_opens_one_case(ctx):
    """Three sends just under the threshold open exactly one case with them as evidence; the
    payees and an ordinary customer stay quiet; sweeping again adds nothing; a fourth send in
    the band joins the same open case."""
    srv = shared(ctx)
    s, people, ids = structurer(srv)
    quiet = customer(srv, "Olive Ordinary")
    fund(srv, quiet.token, 50000)
    m = merchant(srv, fee_bps=0, name="Corner Shop")
    expect(pay(srv, quiet.token, qr(srv, m, amount_minor=1250)["payload"]), 201, what="shopping")
    sent(srv, quiet, people[0], 2000)
    sent(srv, quiet, people[1], 500)

    got = sweep(srv)
    check(got["cases_opened"] >= 1 and got["operations"] >= 6, "the sweep saw them: %s" % got)
    found = cases_of(srv, s.user_id)
    check_eq(len(found), 1, "one case for the structurer")
    c = found[0]
    check_eq((c["kind"], c["scenario"], c["status"], c["subject"], c["evidence_count"],
              c["decision"], c["assignee"]),
             ("aml", "structuring", "open", s.user_id, 3, None, None), "the case")
    check("currency=USD" in c["detail"] and "count=3" in c["detail"], "detail: %s" % c["detail"])
    full = case(srv, c["id"])
    check_eq(sorted(e["operation_id"] for e in full["evidence"]), sorted(ids), "the evidence")
    for e in full["evidence"]:
        op = e["operation"]
        check_eq((op["type"], op["status"], op["direction"], op["currency"], e["by"]),
                 ("send", "completed", "out", "USD", "aml"), "an evidence operation's facts")
        check(op["counterparty"] in {p.user_id for p in people}, "counterparty: %s" % op)
    check_eq([ev["type"] for ev in full["events"]], ["opened"], "the events")
    for who in people + [quiet]:
        check_eq(cases_of(srv, who.user_id), [], "no case for %s" % who.user_id)
    check_eq(cases_of(srv, m["id"]), [], "no case for the shop")

    again = sweep(srv)
    check_eq(again["cases_opened"], 0, "a second sweep opens nothing")
    check_eq(len(cases_of(srv, s.user_id)), 1, "still one case")
    check_eq(case(srv, c["id"])["evidence_count"], 3, "and no evidence twice")

    fourth = sent(srv, s, customer(srv, "Payee 4"), BAND + 500)
    sweep(srv)
    after = cases_of(srv, s.user_id)
    check_eq((len(after), after[0]["id"], after[0]["evidence_count"]), (1, c["id"], 4),
             "the fourth send joined the open case")
    full = case(srv, c["id"])
    check(fourth in [e["operation_id"] for e in full["evidence"]], "the fourth send is evidence")
    check_eq([ev["type"] for ev in full["events"]], ["opened", "alert_added"], "the events")
    srv.check_verify()


def test_fan_in(ctx):
    """Three people sending to one customer within the window: a fan-in case."""
    srv = shared(ctx)
    hub = customer(srv, "Hugo Hub")
    senders = [customer(srv, "Sender %d" % i) for i in range(3)]
    ops = []
    for i, p in enumerate(senders):
        fund(srv, p.token, 5000)
        ops.append(sent(srv, p, hub, 1000 + i))
    sweep(srv)
    found = cases_of(srv, hub.user_id, scenario="fan_in")
    check_eq(len(found), 1, "one fan-in case")
    full = case(srv, found[0]["id"])
    check_eq(sorted(e["operation_id"] for e in full["evidence"]), sorted(ops), "its evidence")
    check(all(e["operation"]["direction"] == "in" for e in full["evidence"]), "money came in")
    for p in senders:
        check_eq(cases_of(srv, p.user_id), [], "no case for a sender")
    check_eq(cases_of(srv, hub.user_id, scenario="structuring"), [], "no other scenario")
    srv.check_verify()


def test_lifecycle_and_freeze(ctx):
    """Assign, notes, evidence, replays, then freeze: the subject cannot send; the case is
    closed and read-only; every change audited without notes or reasons."""
    srv = shared(ctx)
    risk, other = staff(srv, "risk"), staff(srv, "risk")
    s, people, ids = structurer(srv)
    extra = sent(srv, s, people[0], 700)  # outside the band: not found by the sweep
    stranger = customer(srv, "Sam Stranger")
    fund(srv, stranger.token, 3000)
    not_hers = sent(srv, stranger, people[1], 300)
    sweep(srv, risk.token)
    cid = cases_of(srv, s.user_id, token=risk.token)[0]["id"]

    key = new_key("assign")
    got = expect(write(srv, risk.token, cid, "assign", {"assignee": other.user_id}, key=key), 200,
                 what="assign")
    check_eq((got["case"]["assignee"], got["event"]["type"], got["event"]["assignee"],
              got["event"]["by"]), (other.user_id, "assigned", other.user_id, risk.user_id),
             "the assignment")
    again = expect(write(srv, risk.token, cid, "assign", {"assignee": other.user_id}, key=key),
                   200, what="replay")
    check_eq(again["event"], got["event"], "a replay answers the same event")
    expect(write(srv, risk.token, cid, "assign", {"assignee": risk.user_id}, key=key), 422,
           "idempotency_key_reused", "the key with another body")
    body = expect(write(srv, risk.token, cid, "assign", {"assignee": s.user_id}), 400,
                  "invalid_field", "assigning to a customer")
    check(body["detail"].startswith("assignee"), "detail: %s" % body)
    check_eq(cases_of(srv, s.user_id, assignee=other.user_id)[0]["id"], cid, "filter assignee")
    check_eq(cases_of(srv, s.user_id, assignee="none"), [], "not unassigned any more")

    note = expect(write(srv, other.token, cid, "notes", {"text": NOTE}), 201, what="note")
    check_eq(note["event"]["type"], "note_added", "note event")
    for bad, detail in (({"text": ""}, "text: 1 to 2000 characters"),
                        ({"text": "x" * 2001}, "text: 1 to 2000 characters"),
                        ({"text": "bell\u0007"}, "text: no control characters"),
                        ({"text": "ok", "extra": 1}, "extra")):
        got = expect(write(srv, other.token, cid, "notes", bad), 400, what="bad note %s" % bad)
        check_eq(got.get("detail"), detail, "the detail of %s" % str(bad)[:30])
    expect(call(srv, "POST", "/v1/risk/cases/%s/notes" % cid, {"text": "no key"},
                token=other.token), 400, "idempotency_key_missing", "no key")

    ev = expect(write(srv, other.token, cid, "evidence", {"operation_id": extra}), 201,
                what="evidence")
    check_eq((ev["event"]["operation_id"], ev["case"]["evidence_count"]), (extra, 4), "linked")
    expect(write(srv, other.token, cid, "evidence", {"operation_id": extra}), 409, "conflict",
           "the same operation twice")
    expect(write(srv, other.token, cid, "evidence", {"operation_id": ids[0]}), 409, "conflict",
           "an operation the sweep linked")
    got = expect(write(srv, other.token, cid, "evidence", {"operation_id": not_hers}), 400,
                 "invalid_field", "someone else's operation")
    check("subject" in got["detail"], "detail: %s" % got)
    expect(write(srv, other.token, cid, "evidence", {"operation_id": "snd_00000000ZZZZZ"}), 400,
           "invalid_field", "an unknown operation")

    full = case(srv, cid, token=other.token)
    check_eq([(n["text"], n["by"]) for n in full["notes"]], [(NOTE, other.user_id)], "notes")
    check_eq([e["type"] for e in full["events"]],
             ["opened", "assigned", "note_added", "evidence_added"], "events so far")

    dkey = new_key("decide")
    for bad in ({"decision": "ignore", "reason": "x"}, {"decision": "freeze"},
                {"decision": "freeze", "reason": ""}):
        expect(write(srv, other.token, cid, "decision", bad), 400, what="bad decision %s" % bad)
    decided = expect(write(srv, other.token, cid, "decision",
                           {"decision": "freeze", "reason": REASON}, key=dkey), 200, what="freeze")
    check_eq((decided["case"]["status"], decided["case"]["decision"], decided["case"]["reason"],
              decided["case"]["decided_by"]), ("closed", "freeze", REASON, other.user_id),
             "the decision")
    frozen = expect(call(srv, "GET", "/v1/risk/parties/%s/freeze" % s.user_id,
                         token=risk.token), 200, what="freeze view")
    check_eq((frozen["frozen"], frozen["freeze"]["reason"]), (True, REASON), "frozen, why")
    body = expect(send(srv, s, people[2], 100), 422, "account_frozen", "the subject sends")
    check(NOTE_WORD not in str(body) and "FIU" not in str(body), "nothing leaks: %s" % body)
    expect(send(srv, people[2], s, 100), 201, what="the subject still receives")
    replay = expect(write(srv, other.token, cid, "decision",
                          {"decision": "freeze", "reason": REASON}, key=dkey), 200, what="replay")
    check_eq(replay["event"], decided["event"], "the decision replays")
    for action, body in (("assign", {"assignee": None}), ("notes", {"text": "late"}),
                         ("evidence", {"operation_id": ids[1]}),
                         ("decision", {"decision": "clear", "reason": "changed my mind"})):
        got = expect(write(srv, risk.token, cid, action, body), 409, "conflict",
                     "%s on a closed case" % action)
        check(action == "evidence" or got["detail"] == "the case is closed", "detail: %s" % got)
    check_eq(cases_of(srv, s.user_id, status="closed")[0]["decision"], "freeze", "filter status")

    lines = []
    for action in ("case.assign", "case.note", "case.evidence", "case.decide"):
        got = audit(srv, action, cid)
        check(len(got) >= 1, "an audit line %s" % action)
        lines += got
    check_eq(audit(srv, "case.decide", cid)[0]["actor"], other.user_id, "who decided")
    check(all(NOTE_WORD not in str(l) and "FIU" not in str(l) for l in lines),
          "no note or reason in the audit: %s" % lines)
    check_eq(len(audit(srv, "risk.freeze", s.user_id)), 1, "the freeze is audited too")
    expect(call(srv, "POST", "/v1/risk/parties/%s/unfreeze" % s.user_id, {"reason": "test done"},
                token=risk.token, key=new_key("ufz")), 200, what="unfreeze")
    srv.check_verify()


def test_clear_and_report(ctx):
    """clear closes a case and freezes nothing; report makes the report final; the report in
    JSON and CSV has the facts; the export is audited as a personal-data read."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    hub = customer(srv, "Clara Clearable")
    senders = [customer(srv, "Giver %d" % i) for i in range(3)]
    for p in senders:
        fund(srv, p.token, 5000)
        sent(srv, p, hub, 1500)
    s, people, ids = structurer(srv)
    expect(call(srv, "POST", "/v1/me/kyc/details", KYC, token=s.token), 200, what="kyc details")
    sweep(srv, risk.token)
    fan = cases_of(srv, hub.user_id, token=risk.token)[0]["id"]
    cid = cases_of(srv, s.user_id, token=risk.token)[0]["id"]

    expect(write(srv, risk.token, fan, "decision",
                 {"decision": "clear", "reason": "A birthday collection"}), 200, what="clear")
    check_eq(case(srv, fan)["decision"], "clear", "cleared")
    view = expect(call(srv, "GET", "/v1/risk/parties/%s/freeze" % hub.user_id, token=risk.token),
                  200, what="freeze view")
    check_eq(view["frozen"], False, "clear freezes nothing")
    sweep(srv, risk.token)
    check_eq(len(cases_of(srv, hub.user_id, token=risk.token)), 1, "a cleared case stays closed")

    expect(write(srv, risk.token, cid, "notes", {"text": NOTE}), 201, what="note")
    draft = expect(call(srv, "GET", "/v1/risk/cases/%s/report" % cid, token=risk.token), 200,
                   what="draft report")
    check_eq(draft["status"], "draft", "before the decision")
    expect(write(srv, risk.token, cid, "decision", {"decision": "report", "reason": REASON}), 200,
           what="report")
    rep = expect(call(srv, "GET", "/v1/risk/cases/%s/report?format=json" % cid,
                      token=risk.token), 200, what="final report")
    check_eq((rep["report"], rep["status"], rep["reporting_entity"]["name"]),
             ("suspicious_activity_report", "final", OPERATOR), "the report")
    check_eq((rep["case"]["id"], rep["case"]["scenario"], rep["case"]["decision"],
              rep["case"]["decision_reason"], rep["case"]["decided_by"]),
             (cid, "structuring", "report", REASON, risk.user_id), "the case in it")
    check_eq((rep["subject"]["id"], rep["subject"]["type"], rep["subject"]["name"],
              rep["subject"]["contact"]),
             (s.user_id, "customer", "Stella Structurer", s.login), "the subject")
    check_eq((rep["subject"]["legal_name"], rep["subject"]["date_of_birth"],
              rep["subject"]["country"], rep["subject"]["kyc_verified"]),
             (KYC["legal_name"], KYC["date_of_birth"], KYC["country"], False),
             "the identity facts from KYC")
    acts = rep["activity"]
    check_eq(sorted(a["operation_id"] for a in acts), sorted(ids), "the timeline's operations")
    check_eq([a["amount_minor"] for a in acts], [BAND, BAND + 100, BAND + 200], "by date")
    check(all(a["currency"] == "USD" and a["direction"] == "out" and a["date"] for a in acts),
          "currencies, directions, dates: %s" % acts)
    check_eq([a["counterparty"] for a in acts], [p.user_id for p in people], "counterparties")
    check_eq(rep["totals"], [{"currency": "USD", "operations": 3, "in_minor": 0,
                              "out_minor": 3 * BAND + 300}], "totals")
    check_eq([(n["text"], n["by"]) for n in rep["notes"]], [(NOTE, risk.user_id)], "notes")

    status, text, headers = call(srv, "GET", "/v1/risk/cases/%s/report?format=csv" % cid,
                                 token=risk.token)
    check_eq(status, 200, "csv report")
    check(headers.get("Content-Type", "").startswith("text/csv"), "csv type: %s" % headers)
    check(isinstance(text, str), "csv is text")
    for fact in ("report,status,final", "report,reporting_entity," + OPERATOR,
                 "case,id," + cid, "case,decision,report", "subject,name,Stella Structurer",
                 "subject,contact," + s.login, "subject,date_of_birth,1988-04-12",
                 "subject,country,GB", "case,decision_reason," + REASON,
                 "date,operation_id,type,direction,amount,currency,counterparty",
                 ",%s,send,out,90.00,USD,%s" % (ids[0], people[0].user_id),
                 "USD,3,0.00,273.00", NOTE):
        check(fact in text, "the csv has %r:\n%s" % (fact, text))
    expect(call(srv, "GET", "/v1/risk/cases/%s/report?format=pdf" % cid, token=risk.token), 400,
           "invalid_field", "an unknown format")

    exports = audit(srv, "case.report_export", s.user_id)
    check_eq(len(exports), 3, "every export audited, by the subject")
    check(all(cid in e["detail"] and e["actor"] == risk.user_id for e in exports),
          "each names the case: %s" % exports)
    check(any("format csv" in e["detail"] for e in exports), "and the format")
    srv.check_verify()


def test_merchant_report(ctx):
    """A payment at the threshold is a large transaction for the payer and for the merchant;
    the merchant's report names its legal and display names, country and city."""
    srv = shared(ctx)
    cust = customer(srv, "Larry Large")
    fund(srv, cust.token, 20000)
    m = merchant(srv, fee_bps=0, name="Big Ticket")
    paid = expect(pay(srv, cust.token, qr(srv, m, amount_minor=10000)["payload"]), 201,
                  what="a payment at the threshold")["id"]
    sweep(srv)
    for who, direction in ((cust.user_id, "out"), (m["id"], "in")):
        found = cases_of(srv, who, scenario="large_transaction")
        check_eq(len(found), 1, "a large-transaction case for %s" % who)
        check_eq(found[0]["priority"], "high", "large transactions come first")
        check("direction=%s" % direction in found[0]["detail"], "detail: %s" % found[0])
    cid = cases_of(srv, m["id"])[0]["id"]
    rep = expect(call(srv, "GET", "/v1/risk/cases/%s/report" % cid, token=srv.token), 200,
                 what="the merchant's report")
    check_eq({k: rep["subject"][k] for k in ("type", "name", "display_name", "country", "city")},
             {"type": "merchant", "name": "Big Ticket Ltd", "display_name": "Big Ticket",
              "country": "GB", "city": "London"}, "the merchant's facts")
    check_eq([(a["operation_id"], a["direction"], a["amount_minor"], a["counterparty"])
              for a in rep["activity"]], [(paid, "in", 10000, cust.user_id)], "the payment")
    check_eq(rep["totals"], [{"currency": "USD", "operations": 1, "in_minor": 10000,
                              "out_minor": 0}], "totals")
    srv.check_verify()


def test_access(ctx):
    """Customers and merchants 403 everywhere; support and auditors read, never write; unknown
    and malformed ids 404; list parameters checked."""
    srv = shared(ctx)
    risk, support, auditor = staff(srv, "risk"), staff(srv, "support"), staff(srv, "auditor")
    s, _people, ids = structurer(srv)
    sweep(srv, risk.token)
    cid = cases_of(srv, s.user_id, token=risk.token)[0]["id"]
    m = merchant(srv, name="Access Bakery")
    reads = ["/v1/risk/cases", "/v1/risk/cases/" + cid, "/v1/risk/cases/%s/report" % cid]
    writes = [("assign", {"assignee": risk.user_id}), ("notes", {"text": "x"}),
              ("evidence", {"operation_id": ids[0]}), ("decision", {"decision": "clear",
                                                                    "reason": "x"})]
    for who, what in ((s.token, "the subject"), (m["token"], "a merchant")):
        for path in reads:
            expect(call(srv, "GET", path, token=who), 403, "forbidden", "%s GET %s" % (what, path))
        for action, body in writes:
            expect(write(srv, who, cid, action, body), 403, "forbidden", "%s %s" % (what, action))
        expect(call(srv, "POST", "/v1/risk/aml/sweep", None, token=who), 403, "forbidden", what)
    for who, what in ((support.token, "support"), (auditor.token, "an auditor")):
        for path in reads:
            expect(call(srv, "GET", path, token=who), 200, what="%s GET %s" % (what, path))
        for action, body in writes:
            expect(write(srv, who, cid, action, body), 403, "forbidden", "%s %s" % (what, action))
        expect(call(srv, "POST", "/v1/risk/aml/sweep", None, token=who), 403, "forbidden", what)
    for bad in (UNKNOWN_CASE, "cas_nonsense", s.user_id, "x"):
        expect(call(srv, "GET", "/v1/risk/cases/" + bad, token=risk.token), 404, "not_found",
               "case %s" % bad)
        expect(call(srv, "GET", "/v1/risk/cases/%s/report" % bad, token=risk.token), 404,
               "not_found", "report %s" % bad)
        for action, body in writes:
            expect(write(srv, risk.token, bad, action, body), 404, "not_found",
                   "%s on %s" % (action, bad))
    for q, detail in (("status=pending", "status: open or closed"),
                      ("kind=fraud", "kind: aml, sanctions, monitoring or manual"),
                      ("subject=acct_0000000000001", "subject: a customer's or merchant's id"),
                      ("assignee=bob", "assignee: a staff user's id, or none"),
                      ("scenario=Fan%20In", "scenario"), ("from=yesterday", "from"),
                      ("limit=101", "limit: 1 to 100")):
        got = expect(call(srv, "GET", "/v1/risk/cases?" + q, token=risk.token), 400,
                     what="list with %s" % q)
        check_eq(got.get("detail"), detail, "the detail of %s" % q)
    expect(call(srv, "GET", "/v1/risk/cases?cursor=!!", token=risk.token), 400, "invalid_cursor")
    expect(call(srv, "POST", "/v1/risk/aml/sweep", {}, token=risk.token), 200, what="{} body")
    got = expect(call(srv, "POST", "/v1/risk/aml/sweep", {"now": 1}, token=risk.token), 400,
                 "unknown_field", "a sweep with a field")
    check_eq(got.get("detail"), "now", "the unknown field named")
    check_eq(case(srv, cid, token=risk.token)["status"], "open", "nothing changed the case")
    srv.check_verify()


def test_list_pages(ctx):
    """The list pages newest first, each case once, and filters by kind, scenario and time."""
    srv = shared(ctx)
    subjects = [structurer(srv)[0] for _ in range(3)]
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    sweep(srv)
    seen, cursor = [], None
    while True:
        q = "/v1/risk/cases?kind=aml&scenario=structuring&status=open&limit=2&from=" + before
        page = expect(call(srv, "GET", q + ("&cursor=" + cursor if cursor else ""),
                           token=srv.token), 200, what="page")
        check(len(page["data"]) <= 2, "at most the limit")
        seen += [c["subject"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [x for x in seen if x in {s.user_id for s in subjects}]
    check_eq(mine, [s.user_id for s in reversed(subjects)], "newest first, each once")
    check_eq(len(seen), len(set(seen)), "no case twice")
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    got = expect(call(srv, "GET", "/v1/risk/cases?from=" + future, token=srv.token), 200)
    check_eq(got["data"], [], "nothing created in the future")
    srv.check_verify()


def test_timer(ctx):
    """With aml_sweep_period_s = 1 the server opens the case by itself, and stops cleanly."""
    srv = harness.Server(ctx.bin, env=dict(ENV, COFFER_AML_SWEEP_PERIOD_S="1")).start()
    s, _people, _ids = structurer(srv)
    deadline = time.monotonic() + 20
    while not cases_of(srv, s.user_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    found = cases_of(srv, s.user_id)
    check_eq([(c["scenario"], c["evidence_count"]) for c in found], [("structuring", 3)],
             "the timer's sweep opened the case")
    srv.check_verify()
    check_eq(srv.stop(), 0, "a clean stop with the timer running")


if __name__ == "__main__":
    harness.main([test_structuring_opens_one_case, test_fan_in, test_lifecycle_and_freeze,
                  test_clear_and_report, test_merchant_report, test_access, test_list_pages, test_timer])
