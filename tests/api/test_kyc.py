#!/usr/bin/env python3
"""test_kyc.py - know your customer end to end over HTTP: tiers, submissions, the staff's review.

A fresh customer is at tier 0 and sees its limits (the server's kyc_limits in EUR, the defaults
in USD) and features (no withdrawals). Details raise a customer whose login is a phone number
(verified by a code at registration) to tier 1, never one whose login is an email; the answer
masks the ID number. Documents: a bad type, bytes that are not of the type given, an unknown
kind, bad base64 (unpadded, line breaks, the URL alphabet, unused bits set), a document over
4 MiB decoded (413) and a body over the route's limit (413) are refused; a seventh document is
refused (409); a 4 MiB document comes back to staff byte for byte with its content type. Submit
needs an identity document; a pending submission takes no change. The staff queue lists it
(risk, admin, support, auditors) without personal data; support reads the details but cannot
decide; risk approves (tier 2, the customer sees it and its new limits, a notice goes to the
phone without the reason) or rejects (the customer sees the customer-facing reason or a fixed
sentence, never the staff reason; the tier stays 1; the next draft starts from the details).
Decisions replay by Idempotency-Key and refuse a key reused; six analysts deciding at once
decide once. Customers cannot use the staff routes; staff routes answer 404 for anyone who is
not a customer and for another customer's document. The ID number and a document's bytes are
not in the database file in plaintext. Audit lines: kyc.submit, kyc.details_read,
kyc.document_read, kyc.approve, kyc.reject, never with personal data. A server whose kyc
settings are malformed or name an unknown currency refuses to start. `coffer verify` after each.

Usage: test_kyc.py --bin build/coffer --src . [test names...]
"""

import base64
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402

ENV = {"COFFER_CURRENCIES": "USD,EUR",
       "COFFER_KYC_LIMITS": "tier0 EUR max_balance=20000 single=6000; tier2 * max_balance=none",
       "COFFER_KYC_FEATURES": "tier1 topup,receive,payment,send,request,conversion"}
RUN = "%05x" % random.getrandbits(20)
SEQ = [0]
ID_NUMBER = "C01X00T47"
STAFF_REASON = "Passport scan cropped; MRZ unreadable, checked with supervisor"
SECRET_WORD = "supervisor"  # a word of STAFF_REASON that must never reach the customer
CUSTOMER_REASON = "Please upload a sharper photo of your passport's photo page."
MiB = 1024 * 1024
DOC_MAX = 4 * MiB
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PDF = b"%PDF-1.7\n" + b"x" * 64


def seq():
    SEQ[0] += 1
    return SEQ[0]


def email(tag):
    return "%s.%s.%d@example.org" % (tag, RUN, seq())


def phone():
    return "+44770%07d" % random.randrange(10 ** 7)


def call(srv, method, path, body=None, token=None, key=None):
    return ih.call(srv.port, method, path, body, token=token, key=key)


def expect(res, status, code=None, what="request"):
    got, body, _h = res
    check(got == status, "%s: expected %d%s, got %d: %s"
          % (what, status, " " + code if code else "", got, str(body)[:600]))
    if code is not None:
        check(isinstance(body, dict) and body.get("code") == code,
              "%s: expected problem code %r, got %s" % (what, code, str(body)[:300]))
    return body


def raw(srv, method, path, data=None, token=None, headers=None):
    """A request with a raw body; (status, body bytes, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    h = {"Authorization": "Bearer " + token} if token else {}
    if data is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    try:
        conn.request(method, path, data, h)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.headers
    finally:
        conn.close()


def shared(ctx):
    if ctx._shared is None:
        ctx._shared = harness.Server(ctx.bin, env=ENV).start()
    return ctx._shared


def customer(srv, name="Carla Customer", with_phone=True):
    login = phone() if with_phone else email("cust")
    return ih.register_customer(srv.port, srv.token, login, name=name)


def staff(srv, role):
    return ih.create_staff(srv.port, srv.token, email(role), role)


def me(srv, cust):
    return expect(call(srv, "GET", "/v1/me/kyc", token=cust.token), 200, what="GET /v1/me/kyc")


DETAILS = {"legal_name": "Ada Augusta King", "id_type": "passport", "id_number": ID_NUMBER,
           "date_of_birth": "1985-12-10", "country": "GB", "nationality": "IE"}


def details(srv, cust, body=None):
    return call(srv, "POST", "/v1/me/kyc/details", DETAILS if body is None else body,
                token=cust.token)


def jpeg(n, seed=0):
    """n bytes that start as a JPEG does."""
    return b"\xff\xd8\xff\xe0" + random.Random(seed).randbytes(n - 4)


def upload(srv, cust, content, kind="passport", content_type="image/jpeg", text=None):
    body = {"kind": kind, "content_type": content_type,
            "content": text if text is not None else base64.b64encode(content).decode()}
    return call(srv, "POST", "/v1/me/kyc/documents", body, token=cust.token)


def submit(srv, cust):
    return call(srv, "POST", "/v1/me/kyc/submit", {}, token=cust.token)


def decide(srv, token, user_id, decision, key=None, **extra):
    body = {"decision": decision, "reason": STAFF_REASON}
    body.update(extra)
    return call(srv, "POST", "/v1/risk/kyc/%s/decision" % user_id, body, token=token,
                key=key or new_key("kyc"))


def staff_view(srv, token, user_id):
    return expect(call(srv, "GET", "/v1/risk/kyc/" + user_id, token=token), 200,
                  what="staff view of " + user_id)


def queue(srv, token, state="pending", limit=100, cursor=None):
    q = {"state": state, "limit": limit}
    if cursor:
        q["cursor"] = cursor
    return expect(call(srv, "GET", "/v1/risk/kyc?" + urllib.parse.urlencode(q), token=token), 200,
                  what="the queue")


def queued_users(srv, token, state="pending"):
    return [s["user_id"] for s in queue(srv, token, state)["data"]]


def audit(srv, action, target):
    q = urllib.parse.urlencode({"action": action, "target": target})
    return expect(call(srv, "GET", "/v1/audit?" + q, token=srv.token), 200, what="audit")["data"]


def limits_by_currency(view):
    return {lim["currency"]: lim for lim in view["limits"]}


def ready(srv, cust, docs=(("passport", 3000),)):
    """Details, documents and a submission: the customer's submission is pending."""
    expect(details(srv, cust), 200, what="details")
    for i, (kind, n) in enumerate(docs):
        expect(upload(srv, cust, jpeg(n, i), kind=kind), 201, what="upload " + kind)
    return expect(submit(srv, cust), 200, what="submit")


# ------------------------------------------------------------------------------------------------


def test_tier0_limits(ctx):
    """A fresh customer is at tier 0, with the configured EUR limits, the default USD ones, and
    top-up, receive and payment open only; a customer without a verified phone stays at 0."""
    srv = shared(ctx)
    cust = customer(srv, "Tia Zero", with_phone=False)
    got = me(srv, cust)
    check_eq((got["tier"], got["state"], got["phone_verified"], got["reason"], got["submission"]),
             (0, "none", False, None, None), "a fresh customer")
    lim = limits_by_currency(got)
    check_eq(sorted(lim), ["EUR", "USD"], "limits in every currency on offer")
    check_eq((lim["EUR"]["max_balance_minor"], lim["EUR"]["max_single_minor"],
              lim["EUR"]["daily_out_minor"], lim["EUR"]["monthly_out_minor"]),
             (20000, 6000, 10000, 25000), "EUR: the server's row over the * row")
    check_eq((lim["USD"]["max_balance_minor"], lim["USD"]["max_single_minor"]), (15000, 5000),
             "USD: the defaults")
    check_eq(got["features"], ["topup", "receive", "payment"], "tier 0's features")
    got = expect(details(srv, cust), 200, what="details without a phone")
    check_eq((got["tier"], got["phone_verified"]), (0, False), "an email login stays at tier 0")
    check_eq(got["submission"]["state"], "draft", "a draft")
    srv.check_verify()


def test_details(ctx):
    """Details raise a phone customer to tier 1 (limits and features follow); the answer masks
    the ID number; malformed details are refused, naming the field, and change nothing."""
    srv = shared(ctx)
    cust = customer(srv, "Ada King")
    check_eq(me(srv, cust)["phone_verified"], True, "a phone login is a verified phone")
    bad = [({k: v for k, v in DETAILS.items() if k != "id_number"}, 400, "missing_field",
            "id_number"),
           (dict(DETAILS, extra="x"), 400, "unknown_field", "extra"),
           (dict(DETAILS, country="UK"), 400, "invalid_field", "country"),
           (dict(DETAILS, country="gb"), 400, "invalid_field", "country"),
           (dict(DETAILS, nationality="XX"), 400, "invalid_field", "nationality"),
           (dict(DETAILS, date_of_birth="2031-01-01"), 400, "invalid_field", "date_of_birth"),
           (dict(DETAILS, date_of_birth="1985-02-30"), 400, "invalid_field", "date_of_birth"),
           (dict(DETAILS, id_type="selfie"), 400, "invalid_field", "id_type"),
           (dict(DETAILS, id_number="C01X<script>"), 400, "invalid_field", "id_number"),
           (dict(DETAILS, legal_name="x" * 141), 400, "invalid_field", "legal_name"),
           (dict(DETAILS, legal_name="Ada\u202eKing"), 400, "invalid_field", "legal_name"),
           (dict(DETAILS, legal_name=12), 400, "invalid_field", "legal_name"),
           (dict(DETAILS, id_number="9" * 41), 400, "invalid_field", "id_number")]
    for body, status, code, field in bad:
        got = expect(details(srv, cust, body), status, code, "details %s" % field)
        check(got.get("detail", "").startswith(field), "the detail names %s: %s" % (field, got))
    st, body, _h = raw(srv, "POST", "/v1/me/kyc/details", b"{not json", token=cust.token)
    check_eq((st, json.loads(body)["code"]), (400, "invalid_json"), "not JSON")
    got = me(srv, cust)
    check_eq((got["tier"], got["submission"]), (0, None), "nothing recorded")

    got = expect(details(srv, cust), 200, what="details")
    check_eq((got["tier"], got["state"]), (1, "none"), "tier 1, nothing submitted yet")
    d = got["submission"]["details"]
    check_eq((d["legal_name"], d["id_type"], d["date_of_birth"], d["country"], d["nationality"],
              d["id_number_hint"]),
             ("Ada Augusta King", "passport", "1985-12-10", "GB", "IE", "***T47"), "my details")
    check(ID_NUMBER not in json.dumps(got), "the full ID number is not shown: %s" % got)
    lim = limits_by_currency(got)
    check_eq((lim["USD"]["max_single_minor"], lim["EUR"]["max_single_minor"]), (100000, 100000),
             "tier 1's limits")
    check("withdrawal" not in got["features"] and "send" in got["features"],
          "tier 1's configured features: %s" % got["features"])
    got = expect(details(srv, cust, dict(DETAILS, legal_name="Ada King")), 200, what="again")
    check_eq(got["submission"]["details"]["legal_name"], "Ada King", "details replaced")
    srv.check_verify()


def test_documents(ctx):
    """Uploads: type, bytes, base64 and sizes checked; six at most; staff get the bytes back."""
    srv = shared(ctx)
    cust = customer(srv, "Dora Docs")
    risk = staff(srv, "risk")
    refusals = [
        (upload(srv, cust, b"GIF89a" + b"\0" * 40, content_type="image/png"), 400,
         "invalid_field", "content:"),
        (upload(srv, cust, PNG, content_type="image/jpeg"), 400, "invalid_field", "content:"),
        (upload(srv, cust, PNG, content_type="image/gif"), 400, "invalid_field", "content_type"),
        (upload(srv, cust, PNG, kind="visa", content_type="image/png"), 400, "invalid_field",
         "kind"),
        (upload(srv, cust, b"", text="iVBORw0KGgo"), 400, "invalid_field", "content:"),
        (upload(srv, cust, b"", text=base64.encodebytes(PNG * 3).decode()), 400,
         "invalid_field", "content:"),
        (upload(srv, cust, b"", text=base64.urlsafe_b64encode(b"\xff\xd8\xff" + b"\xfb" * 61)
                .decode()), 400, "invalid_field", "content:"),
        (upload(srv, cust, b"", text="Zh=="), 400, "invalid_field", "content:"),
        (upload(srv, cust, b"\xff\xd8\xff"), 400, "invalid_field", "content:"),
        (upload(srv, cust, jpeg(DOC_MAX + 1)), 413, "payload_too_large", "content:"),
    ]
    for i, (res, status, code, field) in enumerate(refusals):
        got = expect(res, status, code, "upload refusal %d" % i)
        check(got.get("detail", "").startswith(field), "refusal %d's detail: %s" % (i, got))
    big = b"{\"kind\":\"selfie\",\"content_type\":\"image/jpeg\",\"content\":\"" + \
        b"A" * (6 * MiB) + b"\"}"
    st, body, _h = raw(srv, "POST", "/v1/me/kyc/documents", big, token=cust.token)
    check_eq((st, json.loads(body)["code"]), (413, "payload_too_large"), "a body over 6 MiB")
    check_eq(me(srv, cust)["submission"], None, "no refused upload made a draft")

    largest = jpeg(DOC_MAX, 7)
    made = [expect(upload(srv, cust, largest, kind="passport"), 201, what="a 4 MiB document")]
    made.append(expect(upload(srv, cust, PNG, kind="selfie", content_type="image/png"), 201))
    made.append(expect(upload(srv, cust, PDF, kind="proof_of_address",
                              content_type="application/pdf"), 201))
    check_eq((made[0]["size_bytes"], made[0]["kind"], made[0]["content_type"]),
             (DOC_MAX, "passport", "image/jpeg"), "the document's description")
    for i in range(3):
        expect(upload(srv, cust, jpeg(100, i), kind="id_card"), 201, what="upload %d" % (i + 4))
    expect(upload(srv, cust, jpeg(100, 9)), 409, "conflict", "a seventh document")
    listed = me(srv, cust)["submission"]["documents"]
    check_eq([d["id"] for d in listed[:3]], [m["id"] for m in made], "my documents, in order")

    for doc, content, ctype in ((made[0], largest, "image/jpeg"), (made[1], PNG, "image/png"),
                                (made[2], PDF, "application/pdf")):
        st, body, h = raw(srv, "GET", "/v1/risk/kyc/%s/documents/%s" % (cust.user_id, doc["id"]),
                          token=risk.token)
        check_eq((st, h.get("Content-Type"), len(body)), (200, ctype, len(content)),
                 "staff read " + doc["id"])
        check(body == content, "the document comes back byte for byte")
    lines = audit(srv, "kyc.document_read", cust.user_id)
    check_eq(sorted(a["detail"] for a in lines), sorted(m["id"] for m in made),
             "one audit line per document read")
    check(all(a["actor"] == risk.user_id for a in lines), "read by the analyst")
    srv.check_verify()


def test_approve(ctx):
    """Submit, queue, support reads but cannot decide, risk approves: tier 2 for the customer,
    replays by key, audit lines and a notice without the reason."""
    srv = shared(ctx)
    cust = customer(srv, "Amelia Approved")
    risk, support, auditor = staff(srv, "risk"), staff(srv, "support"), staff(srv, "auditor")
    expect(details(srv, cust), 200)
    expect(upload(srv, cust, PNG, kind="selfie", content_type="image/png"), 201)
    body = expect(submit(srv, cust), 409, "conflict", "submit without an identity document")
    check("identity document" in body.get("detail", ""), "why: %s" % body)
    expect(upload(srv, cust, jpeg(5000, 3)), 201)
    got = expect(submit(srv, cust), 200, what="submit")
    check_eq((got["state"], got["submission"]["state"], got["tier"]), ("pending", "pending", 1),
             "pending review")
    sub_id = got["submission"]["id"]
    expect(submit(srv, cust), 409, "conflict", "submitting twice")
    expect(details(srv, cust), 409, "conflict", "details while pending")
    expect(upload(srv, cust, PNG, kind="selfie", content_type="image/png"), 409, "conflict",
           "a document while pending")
    check_eq(len(audit(srv, "kyc.submit", cust.user_id)), 1, "kyc.submit")

    for who in (risk, support, auditor, srv):
        items = queue(srv, who.token)["data"]
        mine = [i for i in items if i["user_id"] == cust.user_id]
        check_eq(len(mine), 1, "the queue lists the submission")
        check_eq((mine[0]["submission_id"], mine[0]["state"], mine[0]["documents_n"]),
                 (sub_id, "pending", 2), "the queue's item")
        text = json.dumps(items)
        check("Ada" not in text and ID_NUMBER not in text, "no personal data in the queue")
    view = staff_view(srv, support.token, cust.user_id)
    cur = view["current"]
    check_eq((view["tier"], view["state"], cur["id"], cur["details"]["id_number"],
              cur["details"]["legal_name"], len(cur["documents"])),
             (1, "pending", sub_id, ID_NUMBER, "Ada Augusta King", 2), "support's view")
    check_eq([e["type"] for e in view["history"]],
             ["submit", "document", "document", "details"], "the history")
    check_eq(audit(srv, "kyc.details_read", cust.user_id)[0]["actor"], support.user_id,
             "support's read is audited")
    expect(call(srv, "GET", "/v1/risk/kyc/" + cust.user_id, token=auditor.token), 403,
           "forbidden", "auditors do not open personal data")
    expect(decide(srv, support.token, cust.user_id, "approve"), 403, "forbidden",
           "support deciding")

    key = new_key("approve")
    got = expect(decide(srv, risk.token, cust.user_id, "approve", key=key, submission_id=sub_id,
                        customer_reason="Welcome aboard."), 200, what="approve")
    check_eq((got["decision"], got["tier"], got["state"], got["submission_id"], got["decided_by"],
              got["replayed"]), ("approve", 2, "approved", sub_id, risk.user_id, False),
             "the approval")
    again = expect(decide(srv, risk.token, cust.user_id, "approve", key=key,
                          submission_id=sub_id, customer_reason="Welcome aboard."), 200,
                   what="replay")
    check_eq((again["id"], again["replayed"], again["tier"]), (got["id"], True, 2), "a replay")
    expect(decide(srv, risk.token, cust.user_id, "reject", key=key), 422,
           "idempotency_key_reused", "the key for another request")
    expect(decide(srv, risk.token, cust.user_id, "reject"), 409, "conflict",
           "deciding again with a new key")

    mine = me(srv, cust)
    check_eq((mine["tier"], mine["state"], mine["reason"]), (2, "approved", "Welcome aboard."),
             "the customer sees the outcome")
    check(SECRET_WORD not in json.dumps(mine), "the staff reason never reaches the customer")
    lim = limits_by_currency(mine)
    check_eq((lim["USD"]["max_balance_minor"], lim["USD"]["max_single_minor"]), (None, 2500000),
             "tier 2's limits (no balance limit configured)")
    check("withdrawal" in mine["features"], "tier 2 opens withdrawals")
    expect(details(srv, cust), 409, "conflict", "details at tier 2")
    check_eq(queued_users(srv, risk.token).count(cust.user_id), 0, "no longer queued")
    check(cust.user_id in queued_users(srv, risk.token, "approved"), "in the approved list")

    lines = audit(srv, "kyc.approve", cust.user_id)
    check_eq(len(lines), 1, "one kyc.approve line (the replay writes none)")
    check_eq((lines[0]["actor"], lines[0]["detail"]),
             (risk.user_id, "event %s submission %s" % (got["id"], sub_id)), "the line")
    everything = json.dumps([audit(srv, a, cust.user_id) for a in
                             ("kyc.submit", "kyc.details_read", "kyc.approve")])
    for mark in (ID_NUMBER, "Ada", SECRET_WORD, "Welcome"):
        check(mark not in everything, "the audit log holds no %r" % mark)
    notes = expect(call(srv, "GET", "/v1/admin/outbox?to=" + urllib.parse.quote(cust.login),
                        token=srv.token), 200)["data"]
    check(any("approved" in n["body"] for n in notes), "the customer is told: %s" % notes)
    check(not any("Welcome" in n["body"] for n in notes), "without the reason")
    srv.check_verify()


def test_reject(ctx):
    """A rejection keeps tier 1 and tells the customer the customer-facing reason (or a fixed
    sentence), never the staff's; the next draft starts from the latest details."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    cust = customer(srv, "Rita Rejected")
    sub = ready(srv, cust)["submission"]["id"]
    got = expect(decide(srv, risk.token, cust.user_id, "reject",
                        customer_reason=CUSTOMER_REASON), 200, what="reject")
    check_eq((got["tier"], got["state"]), (1, "rejected"), "rejected")
    mine = me(srv, cust)
    check_eq((mine["tier"], mine["state"], mine["reason"]), (1, "rejected", CUSTOMER_REASON),
             "the customer's view")
    check(SECRET_WORD not in json.dumps(mine), "never the staff reason: %s" % mine)
    view = staff_view(srv, risk.token, cust.user_id)
    check_eq((view["latest"]["reason"], view["latest"]["customer_reason"]),
             (STAFF_REASON, CUSTOMER_REASON), "staff see both reasons")
    check(cust.user_id in queued_users(srv, risk.token, "rejected"), "in the rejected list")
    check_eq(audit(srv, "kyc.reject", cust.user_id)[0]["actor"], risk.user_id, "kyc.reject")

    # the next draft: the details carried over, no documents, the rejection still shown
    doc = expect(upload(srv, cust, jpeg(4000, 5), kind="driving_licence"), 201)
    check(doc["submission_id"] != sub, "a new submission")
    mine = me(srv, cust)
    check_eq((mine["state"], mine["reason"], mine["submission"]["state"],
              mine["submission"]["details"]["legal_name"], len(mine["submission"]["documents"])),
             ("rejected", CUSTOMER_REASON, "draft", "Ada Augusta King", 1), "a new draft")
    expect(submit(srv, cust), 200, what="submit again")
    expect(decide(srv, risk.token, cust.user_id, "reject"), 200, what="reject without a reason")
    mine = me(srv, cust)
    check("not approved" in mine["reason"], "a fixed sentence: %s" % mine["reason"])
    check_eq(mine["tier"], 1, "still tier 1")
    srv.check_verify()


def lower(srv, token, user_id, tier, key=None, **extra):
    body = {"tier": tier, "reason": STAFF_REASON}
    body.update(extra)
    return call(srv, "POST", "/v1/risk/kyc/%s/tier" % user_id, body, token=token,
                key=key or new_key("kyc"))


def test_lower(ctx):
    """Staff lower an approved customer's tier with a reason: the limits fall at once, the
    customer sees the customer-facing reason only, may submit again, and an approval raises
    them again; a customer lowered to 0 stays there whatever details they put until staff
    approve; raising, support staff, bad bodies and a reused key are refused; replays by key."""
    srv = shared(ctx)
    cust = customer(srv, "Lars Lowered")
    risk, support = staff(srv, "risk"), staff(srv, "support")
    ready(srv, cust)
    expect(decide(srv, risk.token, cust.user_id, "approve"), 200, what="approve")
    check_eq(me(srv, cust)["tier"], 2, "approved")
    expect(lower(srv, support.token, cust.user_id, 1), 403, "forbidden", "support lowers")
    expect(lower(srv, cust.token, cust.user_id, 1), 403, "forbidden", "the customer lowers")
    expect(lower(srv, risk.token, cust.user_id, 2), 400, "invalid_field", "tier 2 is no lowering")
    expect(lower(srv, risk.token, cust.user_id, -1), 400, "invalid_field", "a negative tier")
    expect(lower(srv, risk.token, cust.user_id, "1"), 400, "invalid_field", "a string tier")
    expect(call(srv, "POST", "/v1/risk/kyc/%s/tier" % cust.user_id, {"reason": STAFF_REASON},
                token=risk.token, key=new_key("kyc")), 400, "missing_field", "no tier")
    expect(lower(srv, risk.token, cust.user_id, 1, extra_field=1), 400, "unknown_field",
           "an unknown field")
    expect(lower(srv, risk.token, cust.user_id, 1, reason=""), 400, "invalid_field", "no reason")
    key = new_key("kyc")
    got = expect(lower(srv, risk.token, cust.user_id, 1, key=key,
                       customer_reason="Your passport has expired; please upload a new one."),
                 200, what="lower to 1")
    check_eq((got["tier"], got["replayed"], got["reason"]), (1, False, STAFF_REASON), "lowered")
    again = expect(lower(srv, risk.token, cust.user_id, 1, key=key,
                         customer_reason="Your passport has expired; please upload a new one."),
                   200, what="the same request again")
    check_eq((again["id"], again["replayed"]), (got["id"], True), "a replay")
    expect(lower(srv, risk.token, cust.user_id, 0, key=key), 422, "idempotency_key_reused",
           "the key for another lowering")
    expect(lower(srv, risk.token, cust.user_id, 1), 409, "conflict", "at tier 1 already")
    view = me(srv, cust)
    check_eq(view["tier"], 1, "the customer sees tier 1")
    check(SECRET_WORD not in str(view), "the customer never sees the staff reason")
    check_eq(len(audit(srv, "kyc.lower", cust.user_id)), 1, "one audit line for two requests")
    hist = staff_view(srv, risk.token, cust.user_id)["history"]
    check_eq((hist[0]["type"], hist[0]["tier"], hist[0]["reason"]), ("lower", 1, STAFF_REASON),
             "the history shows the lowering to staff")
    check_eq(view["lowered"]["reason"], "Your passport has expired; please upload a new one.",
             "the customer reads why")
    # verified again: a new submission and an approval raise them to 2
    ready(srv, cust)
    expect(decide(srv, risk.token, cust.user_id, "approve"), 200, what="approve again")
    view = me(srv, cust)
    check_eq((view["tier"], view["lowered"]), (2, None), "approved again, nothing lowered")
    # lowered to 0: new details do not raise them to 1 by themselves
    expect(lower(srv, risk.token, cust.user_id, 0), 200, what="lower to 0")
    expect(details(srv, cust), 200, what="details after the lowering")
    view = me(srv, cust)
    check_eq(view["tier"], 0, "the automatic raise to 1 is held")
    check("verify again" in view["lowered"]["reason"], "a default reason: %s" % view["lowered"])
    fresh = customer(srv, "Nora Never")
    expect(lower(srv, risk.token, fresh.user_id, 0), 409, "conflict", "a customer at 0")
    expect(decide(srv, risk.token, cust.user_id, "approve", key=key), 422,
           "idempotency_key_reused", "a lowering's key for a decision")


def test_access(ctx):
    """Customers get 403 on every staff route; staff routes answer 404 for ids that are not
    customers and for another customer's document; decisions check their input."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    a, b = customer(srv, "Alice Access"), customer(srv, "Bob Access")
    ready(srv, b)
    b_doc = me(srv, b)["submission"]["documents"][0]["id"]
    expect(details(srv, a), 200)
    a_doc = expect(upload(srv, a, jpeg(300, 1)), 201)["id"]
    staff_paths = [("GET", "/v1/risk/kyc"), ("GET", "/v1/risk/kyc/" + b.user_id),
                   ("GET", "/v1/risk/kyc/%s/documents/%s" % (b.user_id, b_doc)),
                   ("POST", "/v1/risk/kyc/%s/decision" % b.user_id)]
    for method, path in staff_paths:
        body = {"decision": "approve", "reason": "mine"} if method == "POST" else None
        got = expect(call(srv, method, path, body, token=a.token, key=new_key("x")), 403,
                     "forbidden", "A on " + path)
        check(b.user_id not in json.dumps(got) and ID_NUMBER not in json.dumps(got), "no leak")
    check_eq(staff_view(srv, risk.token, b.user_id)["state"], "pending", "B unchanged")

    unknown = "usr_00000000ZZZZZ"
    for who in (unknown, "usr_x", risk.user_id, srv.admin.user_id):
        for method, path in (("GET", "/v1/risk/kyc/" + who),
                             ("GET", "/v1/risk/kyc/%s/documents/%s" % (who, b_doc)),
                             ("POST", "/v1/risk/kyc/%s/decision" % who)):
            body = {"decision": "approve", "reason": "x"} if method == "POST" else None
            expect(call(srv, method, path, body, token=risk.token, key=new_key("u")), 404,
                   "not_found", "%s %s" % (method, path))
    # B's document under A's id, an unknown one, a malformed one: alike
    for doc in (b_doc, "kyd_00000000ZZZZZ", "kyd_x", "x"):
        expect(call(srv, "GET", "/v1/risk/kyc/%s/documents/%s" % (a.user_id, doc),
                    token=risk.token), 404, "not_found", "document " + doc)
    st, _b, _h = raw(srv, "GET", "/v1/risk/kyc/%s/documents/%s" % (a.user_id, a_doc),
                     token=risk.token)
    check_eq(st, 200, "A's own document under A's id")

    path = "/v1/risk/kyc/%s/decision" % b.user_id
    for body, status, code in (({"decision": "maybe", "reason": "x"}, 400, "invalid_field"),
                               ({"decision": "approve"}, 400, "missing_field"),
                               ({"decision": "approve", "reason": ""}, 400, "invalid_field"),
                               ({"decision": "approve", "reason": "x", "note": 1}, 400,
                                "unknown_field"),
                               ({"decision": "approve", "reason": "x",
                                 "customer_reason": "y" * 281}, 400, "invalid_field"),
                               ({"decision": "approve", "reason": "x",
                                 "submission_id": "kys_00000000ZZZZZ"}, 409, "conflict")):
        expect(call(srv, "POST", path, body, token=risk.token, key=new_key("bad")), status, code,
               "decision %s" % body)
    expect(call(srv, "POST", path, {"decision": "approve", "reason": "x"}, token=risk.token),
           400, "idempotency_key_missing", "a decision without a key")
    expect(decide(srv, risk.token, a.user_id, "approve"), 409, "conflict",
           "A has a draft, nothing pending")
    for bad in ("state=draft", "state=bogus", "limit=101", "limit=0", "cursor=!!"):
        got = call(srv, "GET", "/v1/risk/kyc?" + bad, token=risk.token)
        check_eq(got[0], 400, "the queue with " + bad)
    check_eq(staff_view(srv, risk.token, b.user_id)["state"], "pending", "B still pending")
    srv.check_verify()


def test_queue_pages(ctx):
    """The queue pages oldest submitted first with its cursor, each submission once."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    people = [customer(srv, "Pat Page %d" % i) for i in range(5)]
    for p in people:
        ready(srv, p)
    seen, cursor = [], None
    while True:
        page = queue(srv, risk.token, limit=2, cursor=cursor)
        seen += [i["user_id"] for i in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [u for u in seen if u in {p.user_id for p in people}]
    check_eq(mine, [p.user_id for p in people], "oldest first, each once")
    check_eq(len(seen), len(set(seen)), "no submission twice")
    for p in people:
        expect(decide(srv, risk.token, p.user_id, "approve"), 200)
    srv.check_verify()


def test_concurrent_decisions(ctx):
    """Six analysts deciding one submission at once: one decision, five conflicts."""
    srv = shared(ctx)
    risk = staff(srv, "risk")
    cust = customer(srv, "Connie Current")
    ready(srv, cust)
    results = [None] * 6

    def run(i):
        results[i] = decide(srv, risk.token, cust.user_id, "approve" if i % 2 else "reject")

    harness.run_threads(6, run)
    check_eq(sorted(r[0] for r in results), [200] + [409] * 5, "one decision wins")
    winner = [r[1] for r in results if r[0] == 200][0]
    check_eq(me(srv, cust)["tier"], winner["tier"], "the winner's outcome holds")
    check_eq(len([e for e in staff_view(srv, risk.token, cust.user_id)["history"]
                  if e["type"] in ("approve", "reject")]), 1, "one decision event")
    srv.check_verify()


def test_sealed_in_database(ctx):
    """The ID number, the legal name and a document's bytes are not in the database files."""
    srv = shared(ctx)
    if srv.db:
        print("  (PostgreSQL: the file check is for SQLite)")
        return
    cust = customer(srv, "Sealed Sally")
    number = "SEAL%06d" % random.randrange(10 ** 6)
    expect(details(srv, cust, dict(DETAILS, id_number=number, legal_name="Zephyrine Quarrington")),
           200)
    marker = b"KYC-PLAINTEXT-MARKER-" + RUN.encode()
    expect(upload(srv, cust, b"\xff\xd8\xff\xe0" + marker * 200), 201)
    check_eq(me(srv, cust)["tier"], 1, "details given")
    for name in ("identity.db", "identity.db-wal"):
        path = os.path.join(srv.data, name)
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        check(number.encode() not in data, "the ID number is in %s in plaintext" % name)
        check(b"Zephyrine" not in data, "the legal name is in %s in plaintext" % name)
        check(marker not in data, "the document is in %s in plaintext" % name)
    check(os.path.exists(os.path.join(srv.data, "identity.db")), "the database file exists")
    srv.check_verify()


def test_bad_config(ctx):
    """kyc_limits / kyc_features that do not parse, or name an unknown currency, stop the
    server before it serves, with a message naming the setting."""
    cases = [({"COFFER_KYC_LIMITS": "tier3 * single=1"}, "kyc_limits"),
             ({"COFFER_KYC_LIMITS": "tier0 * single=-5"}, "kyc_limits"),
             ({"COFFER_KYC_LIMITS": "tier0 ZZZ single=5"}, "unknown currency ZZZ"),
             ({"COFFER_KYC_FEATURES": "tier0 teleport"}, "kyc_features")]
    for env_extra, message in cases:
        root = tempfile.mkdtemp(prefix="coffer-kyc-cfg-")
        env = dict(os.environ)
        env.pop("COFFER_CONFIG", None)
        env.update(env_extra)
        try:
            out = subprocess.run([ctx.bin, "serve", "--data", os.path.join(root, "data"),
                                  "--listen", "127.0.0.1:%d" % harness.free_port()],
                                 capture_output=True, text=True, timeout=30, env=env,
                                 stdin=subprocess.DEVNULL)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        check(out.returncode != 0, "%s: the server started" % env_extra)
        check(message in out.stderr, "%s: stderr names it: %s" % (env_extra, out.stderr[-400:]))


TESTS = [
    test_tier0_limits,
    test_details,
    test_documents,
    test_approve,
    test_reject,
    test_lower,
    test_access,
    test_queue_pages,
    test_concurrent_decisions,
    test_sealed_in_database,
    test_bad_config,
]

if __name__ == "__main__":
    harness.main(TESTS)
