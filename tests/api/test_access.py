#!/usr/bin/env python3
"""test_access.py - who may call what: the cross-user access matrix over every route.

Two customers, A and B, each with a funded account and a payment of their own (to a third
customer, C, so neither history names the other). Then every route printed by `coffer routes`
is walked; a route this file does not know how to call fails the walk, so a new route must be
added to ROUTES below together with the check that suits it:

  - as A, with B's ids (account, transfer, session, user, challenge, login change) in the path or
    the body: 404 (or the refusal a foreign id gets, never a 200), and nothing of B's (ids,
    login, name) in any answer A gets; B's state unchanged afterwards;
  - for routes without ids, A sees A's data only;
  - merchant routes: two merchants, M1 and M2, each with an owner and a staff user. Customers
    get 403 on every /v1/merchant route; M1's staff get 403 on the owner routes; M1's owner sees
    and manages M1 only: M2's user ids answer exactly as unknown ones (404), nothing of M2's
    (ids, names, logins) shows in any answer an M1 user gets, and M2 is unchanged afterwards;
  - every non-public route without a token, with a malformed or pending (second factor due)
    token: 401; with the token of a role the route does not admit: 403; with the operator
    token anything but /v1/bootstrap: 403.

Usage: test_access.py --bin build/coffer --src . [test names...]
"""

import json
import os
import random
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402

PASSWORD = ih.DEFAULT_PASSWORD
ROLES = ("customer", "merchant", "support", "risk", "admin", "auditor")
UNKNOWN = {"accounts": "acct_00000000ZZZZZ", "transfers": "tr_00000000ZZZZZ",
           "sessions": "ses_00000000ZZZZZ", "users": "usr_00000000ZZZZZ"}
_run = "%05x" % random.getrandbits(20)


def email(tag):
    return "%s.%s@example.org" % (tag, _run)


# ------------------------------------------------------------------------------------------------
# Calling the server


def admin_of(srv):
    """The server's first admin; bootstraps one when the harness did not."""
    admin = getattr(srv, "admin", None)
    if admin is None:
        operator = srv.token
        admin = ih.bootstrap_admin(srv.port, operator, tls_context=srv.tls_context)
        srv.operator_token = operator
        srv.admin = admin
        srv.token = admin.token
    return admin


def call(srv, method, path, body=None, token=None, key=None, auth=None):
    """(status, parsed body, headers). auth: a raw Authorization header instead of a token."""
    headers = {"Authorization": auth} if auth is not None else None
    if method == "POST" and key is None:
        key = new_key("acc")
    return ih.call(srv.port, method, path, body, token=token, key=key, headers=headers,
                   tls_context=srv.tls_context)


def expect(res, status, code=None, what="request"):
    got, body, _h = res
    check(got == status, "%s: expected %d%s, got %d: %s"
          % (what, status, " " + code if code else "", got, str(body)[:500]))
    if code is not None:
        check(isinstance(body, dict) and body.get("code") == code,
              "%s: expected problem code %r, got %s" % (what, code, str(body)[:300]))
    return body


def outbox_codes(srv, login):
    return ih.outbox_codes(srv.port, admin_of(srv).token, login, tls_context=srv.tls_context)


def load_routes(bin_path):
    out = subprocess.run([bin_path, "routes"], capture_output=True, text=True, timeout=30,
                         stdin=subprocess.DEVNULL)
    check(out.returncode == 0, "coffer routes failed: %s" % out.stderr)
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split()
        check(len(parts) == 4, "unexpected `coffer routes` line: %r" % line)
        rows.append((parts[0], parts[1], frozenset(parts[2].split(","))))
    check(len(rows) >= 20, "too few routes: %s" % out.stdout)
    return rows


def fill(path, ids):
    """The path with each {id} replaced by the id of the collection named before it."""
    parts = path.split("/")
    for i, p in enumerate(parts):
        if p == "{id}":
            parts[i] = ids[parts[i - 1]]
    return "/".join(parts)


# ------------------------------------------------------------------------------------------------
# The world: customers A, B, C with accounts and payments; staff of every role


class Person:
    def __init__(self, cust, name):
        self.user_id = cust.user_id
        self.token = cust.token
        self.login = cust.login
        self.password = cust.password
        self.name = name
        self.sessions = []   # session ids
        self.account = None
        self.funding = None  # transfer id: the admin's deposit
        self.payment = None  # transfer id: the payment to C


class World:
    def __init__(self, ctx):
        self.srv = srv = ctx.shared()
        self.admin = admin = admin_of(srv)
        self.client = harness.Client(srv.port, admin.token, tls_context=srv.tls_context)
        self.source = harness.make_source(self.client, "EUR")["id"]
        self.routes = load_routes(ctx.bin)
        self.a = self.person("alice", "Alyssa Aardvark")
        self.b = self.person("bob", "Barnaby Bumblewick")
        self.c = self.person("carol", "Cressida Culpepper")
        for p in (self.a, self.b, self.c):
            p.account = expect(call(srv, "POST", "/v1/me/accounts", {"currency": "EUR"},
                                    token=p.token), 201, what="open account")["id"]
        for p in (self.a, self.b):
            p.funding = harness.fund(self.client, self.source, p.account, 100000, "EUR")["id"]
            v = self.verification(p, "transfer", amount_minor=1000, currency="EUR",
                                  payee=self.c.account)
            p.payment = expect(call(srv, "POST", "/v1/me/transfers",
                                    {"from_account": p.account, "to_account": self.c.account,
                                     "amount_minor": 1000, "currency": "EUR",
                                     "verification": v}, token=p.token),
                               201, what="payment to C")["id"]
        # B's second session, and a verification B has not used yet
        second = expect(call(srv, "POST", "/v1/auth/sign-in",
                             {"login": self.b.login, "password": PASSWORD, "device": "b-2"}),
                        200, what="B's second sign-in")
        self.b.token2 = second["token"]
        self.b.sessions.append(second["session_id"])
        self.b_export = self.verification(self.b, "data_export")
        # B's pending login change (its code, sent to the new login, is read by the admin)
        self.b_new_login = email("bob-new")
        v = self.verification(self.b, "login_change", payee=self.b_new_login)
        change = expect(call(srv, "POST", "/v1/me/login",
                             {"new_login": self.b_new_login, "verification": v},
                             token=self.b.token), 202, what="B starts a login change")
        self.b_change = {"change_id": change["change_id"],
                         "code": outbox_codes(srv, self.b_new_login)[0]}
        # staff of every role, and a merchant
        self.tokens = {"customer": self.a.token, "admin": admin.token}
        for role in ("support", "risk", "auditor"):
            self.tokens[role] = ih.create_staff(srv.port, admin.token, email(role), role,
                                                tls_context=srv.tls_context).token
        merchant = self.person("merchant", "Mervyn Merchant")
        expect(call(srv, "POST", "/v1/admin/users/%s/role" % merchant.user_id,
                    {"role": "merchant"}, token=admin.token), 200, what="make a merchant")
        signed = expect(call(srv, "POST", "/v1/auth/sign-in",
                             {"login": merchant.login, "password": PASSWORD}), 200,
                        what="merchant sign-in")
        check_eq(signed.get("role"), "merchant", "merchant role")
        self.tokens["merchant"] = signed["token"]
        # a sign-in waiting for its second factor (a staff member who has not enrolled)
        pending = email("pending")
        expect(call(srv, "POST", "/v1/admin/staff",
                    {"login": pending, "password": PASSWORD, "name": "Penny Pending",
                     "role": "support"}, token=admin.token), 201, what="staff create")
        self.pending_token = expect(call(srv, "POST", "/v1/auth/sign-in",
                                         {"login": pending, "password": PASSWORD}),
                                    200, what="pending sign-in")["mfa_token"]
        self.b_ids = {"accounts": self.b.account, "transfers": self.b.payment,
                      "sessions": self.b.sessions[0], "users": self.b.user_id}
        # everything of B's that must never show in an answer to A
        self.b_marks = [self.b.user_id, self.b.account, self.b.payment, self.b.funding,
                        self.b.login, self.b.name, self.b_new_login,
                        self.b_export["challenge_id"], self.b_change["change_id"]]
        self.b_marks += self.b.sessions
        self.b_marks = [m for m in self.b_marks if m]
        self.b_before = self.b_state()

    def person(self, tag, name):
        login = email(tag)
        cust = ih.register_customer(self.srv.port, self.admin.token, login, name=name,
                                    tls_context=self.srv.tls_context)
        p = Person(cust, name)
        listed = expect(call(self.srv, "GET", "/v1/me/sessions", token=p.token), 200)["data"]
        p.sessions = [s["session_id"] for s in listed]
        return p

    def verification(self, p, action, **kw):
        return ih.step_up(self.srv.port, p.token, action, admin_token=self.admin.token,
                          login=p.login, tls_context=self.srv.tls_context, **kw)

    def b_state(self):
        """What A must not be able to change: B's profile, accounts and sessions."""
        prof = expect(call(self.srv, "GET", "/v1/me", token=self.b.token), 200,
                      what="B's profile")
        prof.pop("last_seen_at", None)
        accts = expect(call(self.srv, "GET", "/v1/me/accounts", token=self.b.token), 200,
                       what="B's accounts")["data"]
        sessions = expect(call(self.srv, "GET", "/v1/me/sessions", token=self.b.token), 200,
                          what="B's sessions")["data"]
        return {"profile": prof, "accounts": accts,
                "sessions": sorted(s["session_id"] for s in sessions)}

    def check_b_unchanged(self, what):
        now = self.b_state()
        check(now == self.b_before, "%s changed B's state:\n  before %s\n  after  %s"
              % (what, self.b_before, now))
        check(call(self.srv, "GET", "/v1/me", token=self.b.token2)[0] == 200,
              "%s ended B's second session" % what)

    def as_a(self, method, path, body=None, token=None, key=None):
        """A request by A (or with token), whose answer must hold nothing of B's."""
        res = call(self.srv, method, path, body, token=token or self.a.token, key=key)
        self.no_leak("%s %s" % (method, path), res[1])
        return res

    def no_leak(self, what, body):
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        low = (text or "").lower()
        for mark in self.b_marks:
            check(mark.lower() not in low,
                  "%s: the answer to A holds B's %r: %s" % (what, mark, text[:600]))

    # -- merchants ---------------------------------------------------------------------------

    def merchants(self):
        """M1 and M2, each with an owner and a staff user (made on first use)."""
        if getattr(self, "m1", None) is None:
            self.m1 = Merchant(self, "m1", "Gannet and Gull Provisions Ltd", "Gannet Gull",
                               "Odile Gannetworth", "Silas Gullbrook")
            self.m2 = Merchant(self, "m2", "Quillon Quay Hardware GmbH", "Quillon Quay",
                               "Quentin Quillsby", "Sabine Quaystone")
            self.m2_marks = self.m2.marks()
            self.m2_before = self.m2.state(self.srv)
        return self.m1, self.m2

    def as_m1(self, who, method, path, body=None):
        """A request by an M1 user (who: "owner" or "staff"), whose answer holds nothing of M2's
        and nothing of B's."""
        res = call(self.srv, method, path, body, token=getattr(self.m1, who).token)
        self.m_no_leak("M1's %s: %s %s" % (who, method, path), res[1])
        self.no_leak("M1's %s: %s %s" % (who, method, path), res[1])
        return res

    def m_no_leak(self, what, body):
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        low = (text or "").lower()
        for mark in self.m2_marks:
            check(mark.lower() not in low,
                  "%s: the answer holds M2's %r: %s" % (what, mark, text[:600]))

    def check_m2_unchanged(self, what):
        now = self.m2.state(self.srv)
        check(now == self.m2_before, "%s changed M2:\n  before %s\n  after  %s"
              % (what, self.m2_before, now))


class MerchantUser:
    def __init__(self, user_id, login, name, token):
        self.user_id = user_id
        self.login = login
        self.name = name
        self.token = token


class Merchant:
    """A merchant organisation with an owner (made by the admin) and a staff user (added by the
    owner), both signed in."""

    def __init__(self, w, tag, legal, display, owner_name, staff_name):
        srv = w.srv
        self.legal, self.display = legal, display
        login = email(tag + "-owner")
        made = expect(call(srv, "POST", "/v1/admin/merchants",
                           {"legal_name": legal, "display_name": display,
                            "owner": {"login": login, "password": PASSWORD, "name": owner_name}},
                           token=w.admin.token), 201, what="create merchant " + tag)
        self.id = made["merchant_id"]
        self.owner = MerchantUser(made["owner_user_id"], login, owner_name,
                                  merchant_sign_in(srv, login))
        login = email(tag + "-staff")
        added = expect(call(srv, "POST", "/v1/merchant/users",
                            {"login": login, "password": PASSWORD, "name": staff_name,
                             "right": "staff"}, token=self.owner.token), 201,
                       what="%s's owner adds staff" % tag)
        self.staff = MerchantUser(added["user_id"], login, staff_name,
                                  merchant_sign_in(srv, login))

    def marks(self):
        """What must never show in an answer to another merchant's user."""
        return [self.id, self.legal, self.display] + [
            x for u in (self.owner, self.staff) for x in (u.user_id, u.login, u.name)]

    def state(self, srv):
        """The merchant as its owner and its staff see it, and whether their sessions live."""
        return {
            "owner": expect(call(srv, "GET", "/v1/merchant", token=self.owner.token), 200,
                            what="the merchant as its owner sees it"),
            "staff": expect(call(srv, "GET", "/v1/merchant", token=self.staff.token), 200,
                            what="the merchant as its staff sees it"),
            "users": expect(call(srv, "GET", "/v1/merchant/users", token=self.owner.token), 200,
                            what="the merchant's users")["data"],
        }


def merchant_sign_in(srv, login):
    signed = expect(call(srv, "POST", "/v1/auth/sign-in", {"login": login, "password": PASSWORD}),
                    200, what="merchant sign-in")
    check(signed.get("mfa_required") is False and signed.get("role") == "merchant",
          "a merchant user's sign-in: %s" % signed)
    return signed["token"]


def world(ctx):
    w = getattr(ctx, "_access_world", None)
    if w is None or w.srv is not ctx._shared:
        w = World(ctx)
        ctx._access_world = w
    return w


# ------------------------------------------------------------------------------------------------
# A's check per route. Each takes (world, method, path, scope).


def _need_customer(scope, path):
    check("customer" in scope, "%s no longer admits customers: update its check" % path)


def foreign_id(w, method, path, scope, code, body=None):
    """A route naming a resource by id: B's id answers exactly as an unknown id does."""
    _need_customer(scope, path)
    ids = dict(w.b_ids)
    st, b_body, _h = w.as_a(method, fill(path, ids), body)
    st_unknown, u_body, _h = w.as_a(method, fill(path, UNKNOWN), body)
    check(st == 404 and b_body.get("code") == code,
          "A %s %s with B's id: expected 404 %s, got %d %s"
          % (method, path, code, st, str(b_body)[:300]))
    check(st_unknown == 404 and b_body == u_body,
          "A %s %s: B's id answers %r, an unknown id %d %r"
          % (method, path, b_body, st_unknown, u_body))
    st, _b, _h = w.as_a(method, fill(path, dict(ids, accounts="acct_bogus", transfers="tr_!",
                                               sessions="ses_", users="usr_x")), body)
    check(st == 404, "A %s %s with a malformed id: expected 404, got %d" % (method, path, st))


def own_id_ok(w, method, path, ids):
    st, body, _h = w.as_a(method, fill(path, ids))
    check(st == 200, "A %s %s with A's own id: expected 200, got %d %s"
          % (method, path, st, str(body)[:300]))
    return body


def r_me_account(w, method, path, scope):
    foreign_id(w, method, path, scope, "account_not_found")
    body = own_id_ok(w, method, path, {"accounts": w.a.account})
    check_eq((body["id"], body["owner"]), (w.a.account, w.a.user_id), "A's own account")


def r_me_account_transfers(w, method, path, scope):
    foreign_id(w, method, path, scope, "account_not_found")
    body = own_id_ok(w, method, path, {"accounts": w.a.account})
    check_eq({t["id"] for t in body["data"]}, {w.a.funding, w.a.payment}, "A's history")


def r_me_transfer(w, method, path, scope):
    foreign_id(w, method, path, scope, "transfer_not_found")
    st, body, _h = w.as_a(method, fill(path, {"transfers": w.b.funding}))
    check(st == 404 and body.get("code") == "transfer_not_found",
          "A reading B's deposit: %d %s" % (st, body))
    body = own_id_ok(w, method, path, {"transfers": w.a.payment})
    check_eq(body["id"], w.a.payment, "A's own payment")


def r_session_revoke(w, method, path, scope):
    _need_customer(scope, path)
    for sid in w.b.sessions:
        st, body, _h = w.as_a(method, fill(path, {"sessions": sid}))
        _st, unknown, _h = w.as_a(method, fill(path, UNKNOWN))
        check(st == 404 and body == unknown,
              "A revoking B's session %s: expected the unknown-session 404, got %d %s (unknown: "
              "%s)" % (sid, st, body, unknown))
    w.check_b_unchanged("A revoking B's sessions")


def r_me_transfer_create(w, method, path, scope):
    _need_customer(scope, path)
    before = w.client.account(w.b.account)["balance"]
    for frm, what in ((w.b.account, "B's account"), (UNKNOWN["accounts"], "an unknown account")):
        st, body, _h = w.as_a(method, path, {"from_account": frm, "to_account": w.a.account,
                                             "amount_minor": 100, "currency": "EUR"})
        check(st == 404 and body.get("code") == "account_not_found",
              "A paying from %s: expected 404 account_not_found, got %d %s" % (what, st, body))
    # even with a verification A made for it
    v = w.verification(w.a, "transfer", amount_minor=100, currency="EUR", payee=w.a.account)
    st, body, _h = w.as_a(method, path, {"from_account": w.b.account, "to_account": w.a.account,
                                         "amount_minor": 100, "currency": "EUR",
                                         "verification": v})
    check(st == 404, "A paying from B's account with a verification: %d %s" % (st, body))
    check_eq(w.client.account(w.b.account)["balance"], before, "B's balance")


def r_me(w, method, path, scope):
    _need_customer(scope, path)
    body = expect(w.as_a(method, path), 200)
    check_eq((body["user_id"], body["login"], body["name"]), (w.a.user_id, w.a.login, w.a.name),
             "A's profile")


def r_me_sessions(w, method, path, scope):
    _need_customer(scope, path)
    data = expect(w.as_a(method, path), 200)["data"]
    current = [s["session_id"] for s in data if s["current"]]
    check(len(current) == 1 and current[0] in w.a.sessions,
          "A's session list must show A's session as the current one: %s" % data)


def r_me_accounts(w, method, path, scope):
    _need_customer(scope, path)
    data = expect(w.as_a(method, path), 200)["data"]
    check(data and all(a["owner"] == w.a.user_id for a in data)
          and w.a.account in {a["id"] for a in data},
          "A's account list: %s" % data)


def r_me_account_open(w, method, path, scope):
    _need_customer(scope, path)
    body = expect(w.as_a(method, path, {"currency": "USD"}), 201, what="A opens a USD account")
    check_eq(body["owner"], w.a.user_id, "owner of A's new account")
    w.check_b_unchanged("A opening an account")


def r_challenge(w, method, path, scope):
    _need_customer(scope, path)
    body = expect(w.as_a(method, path, {"action": "transfer", "amount_minor": 5,
                                        "currency": "EUR", "payee": w.b.account}), 201)
    check(body["challenge_id"].startswith("chl_") and set(body) <= {
        "challenge_id", "method", "expires_at"}, "challenge answer: %s" % body)
    # the next one serves A's own export (r_export): codes per person and hour are few
    body = expect(w.as_a(method, path, {"action": "data_export"}), 201)
    w.a_export = {"challenge_id": body["challenge_id"],
                  "code": outbox_codes(w.srv, w.a.login)[0]}


def r_password(w, method, path, scope):
    _need_customer(scope, path)
    st, body, _h = w.as_a(method, path, {"current_password": PASSWORD,
                                         "new_password": "Borrowed-Verification-99",
                                         "verification": w.b_export})
    check(st == 422 and body.get("code") == "invalid_code",
          "A changing the password with B's verification: %d %s" % (st, body))
    expect(call(w.srv, "POST", "/v1/auth/sign-in", {"login": w.a.login, "password": PASSWORD}),
           200, what="A's password is unchanged")
    w.check_b_unchanged("A's password change")


def r_login(w, method, path, scope):
    _need_customer(scope, path)
    expect(w.as_a(method, path, {"new_login": w.b.login}), 403, "step_up_required",
           "A taking B's login without step-up")
    v = w.verification(w.a, "login_change", payee=w.b.login)
    body = expect(w.as_a(method, path, {"new_login": w.b.login, "verification": v}), 202,
                  what="A asking for B's login")  # looks like any other login: nothing learned
    check_eq(sorted(body), ["change_id", "status"], "login change answer")
    expect(w.as_a("POST", "/v1/me/login/confirm",
                  {"change_id": body["change_id"], "code": "000000"}), 422, "invalid_code",
           "A confirming B's login without its code")
    check_eq(expect(call(w.srv, "GET", "/v1/me", token=w.a.token), 200)["login"], w.a.login,
             "A's login")
    w.check_b_unchanged("A asking for B's login")


def r_login_confirm(w, method, path, scope):
    """Last but two: B finally confirms its own change, which ends B's other sessions."""
    _need_customer(scope, path)
    st, body, _h = w.as_a(method, path, w.b_change)
    check(st == 422 and body.get("code") == "invalid_code",
          "A confirming B's login change with its right code: expected 422 invalid_code, got "
          "%d %s" % (st, body))
    check_eq(expect(call(w.srv, "GET", "/v1/me", token=w.a.token), 200)["login"], w.a.login,
             "A's login after confirming B's change")
    w.check_b_unchanged("A confirming B's login change")
    expect(call(w.srv, "POST", path, w.b_change, token=w.b.token), 200,
           what="B confirms its own change after A's attempt")
    check_eq(expect(call(w.srv, "GET", "/v1/me", token=w.b.token), 200)["login"],
             w.b_new_login, "B's new login")


def r_totp_begin(w, method, path, scope):
    _need_customer(scope, path)
    body = expect(w.as_a(method, path), 200)
    label = urllib.parse.unquote(urllib.parse.urlparse(body["otpauth_uri"]).path)
    check(label.endswith(w.a.login), "A's enrolment names %r" % label)
    w.check_b_unchanged("A's TOTP enrolment")


def r_totp_confirm(w, method, path, scope):
    _need_customer(scope, path)
    st, body, _h = w.as_a(method, path, {"code": "000000"})
    check(st in (409, 422), "A confirming TOTP with a made-up code: %d %s" % (st, body))
    w.check_b_unchanged("A's TOTP confirmation")


def r_totp_disable(w, method, path, scope):
    _need_customer(scope, path)
    expect(w.as_a(method, path, {"verification": w.b_export}), 409, "conflict",
           "A turning off a TOTP A does not have")
    w.check_b_unchanged("A's TOTP disable")


def r_export(w, method, path, scope):
    _need_customer(scope, path)
    expect(w.as_a(method, path, {"verification": w.b_export}), 422, "invalid_code",
           "A exporting with B's verification")
    v = getattr(w, "a_export", None) or w.verification(w.a, "data_export")
    doc = expect(w.as_a(method, path, {"verification": v}), 200, what="A's export")
    check_eq(doc["profile"]["user_id"], w.a.user_id, "exported user")
    check(all(a["owner"] == w.a.user_id for a in doc["accounts"]), "exported accounts")
    # B's verification survived A's attempt
    doc = expect(call(w.srv, method, path, {"verification": w.b_export}, token=w.b.token), 200,
                 what="B's export with B's verification")
    check_eq(doc["profile"]["user_id"], w.b.user_id, "B's export")


def r_close(w, method, path, scope):
    _need_customer(scope, path)
    expect(w.as_a(method, path, {"verification": w.b_export}), 409, "balance_not_zero",
           "A closing with money left")
    w.check_b_unchanged("A's close")


def r_currencies(w, method, path, scope):
    _need_customer(scope, path)
    expect(w.as_a(method, path), 200)


def r_revoke_others(w, method, path, scope):
    """Second to last: ends A's other sessions."""
    _need_customer(scope, path)
    extra = expect(call(w.srv, "POST", "/v1/auth/sign-in",
                        {"login": w.a.login, "password": PASSWORD}), 200)["token"]
    expect(w.as_a(method, path), 200)
    check_eq(call(w.srv, "GET", "/v1/me", token=extra)[0], 401, "A's other session")
    check_eq(call(w.srv, "GET", "/v1/me", token=w.a.token)[0], 200, "A's own session")
    check(call(w.srv, "GET", "/v1/me", token=w.b.token)[0] == 200,
          "A's revoke-others ended B's session")


def r_sign_out(w, method, path, scope):
    """Last: A signs out of an extra session."""
    _need_customer(scope, path)
    extra = expect(call(w.srv, "POST", "/v1/auth/sign-in",
                        {"login": w.a.login, "password": PASSWORD}), 200)["token"]
    expect(w.as_a(method, path, token=extra), 200)
    check_eq(call(w.srv, "GET", "/v1/me", token=extra)[0], 401, "A's signed-out session")
    check_eq(call(w.srv, "GET", "/v1/me", token=w.a.token)[0], 200, "A's other session")
    check(call(w.srv, "GET", "/v1/me", token=w.b.token)[0] == 200, "A's sign-out ended B's")


def r_staff(w, method, path, scope):
    """A staff route: a customer gets 403 whatever the id."""
    check("customer" not in scope, "%s now admits customers: give it a cross-user check" % path)
    for ids in (w.b_ids, UNKNOWN):
        expect(w.as_a(method, fill(path, ids), {} if method == "POST" else None), 403,
               "forbidden", "A %s %s" % (method, path))


def r_bootstrap(w, method, path, scope):
    check_eq(set(scope), {"operator"}, "scope of %s" % path)
    body = {"login": email("boot"), "password": PASSWORD, "name": "Boot Strap"}
    expect(w.as_a(method, path, body), 403, "forbidden", "A bootstrapping")
    expect(call(w.srv, method, path, body, token=w.srv.operator_token), 409,
           "already_bootstrapped", "a second bootstrap")


def r_healthz(w, method, path, scope):
    expect(w.as_a(method, path), 200)


def r_register(w, method, path, scope):
    taken = expect(w.as_a(method, path, {"login": w.b.login, "password": PASSWORD,
                                         "name": "Not Barnaby"}), 202)
    fresh = expect(w.as_a(method, path, {"login": email("fresh"), "password": PASSWORD,
                                         "name": "Fresh Face"}), 202)
    check(sorted(taken) == sorted(fresh) and taken["status"] == fresh["status"],
          "registering B's login answers differently: %s vs %s" % (taken, fresh))
    w.check_b_unchanged("registering B's login")


def r_register_verify(w, method, path, scope):
    expect(w.as_a(method, path, {"registration_id": "reg_00000000ZZZZZ", "code": "123456"}),
           422, "invalid_code", "verifying an unknown registration")


def r_sign_in(w, method, path, scope):
    wrong = w.as_a(method, path, {"login": w.b.login, "password": "Not-Barnabys-Password-1"})
    unknown = w.as_a(method, path, {"login": email("nobody"), "password": "Not-Barnabys-1"})
    check(wrong[0] == 401 and wrong[1] == unknown[1],
          "a wrong password for B answers unlike an unknown login: %s vs %s"
          % (wrong[1], unknown[1]))


def r_sign_in_mfa(w, method, path, scope):
    for token in (w.b.token, w.a.token):
        st, body, _h = w.as_a(method, path, {"mfa_token": token, "code": "123456"})
        check(st == 401, "a session token as an mfa token: %d %s" % (st, body))


def r_sign_in_enrol(w, method, path, scope):
    st, body, _h = w.as_a(method, path, {"mfa_token": w.b.token})
    check(st == 401, "enrolling TOTP with B's session token: %d %s" % (st, body))
    w.check_b_unchanged("enrolling with B's token")


def r_reset(w, method, path, scope):
    taken = expect(w.as_a(method, path, {"login": w.b.login}), 202)
    unknown = expect(w.as_a(method, path, {"login": email("noone")}), 202)
    check(sorted(taken) == sorted(unknown) and taken["status"] == unknown["status"],
          "a reset for B answers unlike one for nobody: %s vs %s" % (taken, unknown))
    w.b_reset_id = taken["reset_id"]


def r_reset_confirm(w, method, path, scope):
    reset_id = getattr(w, "b_reset_id", None)
    if reset_id is None:
        reset_id = expect(call(w.srv, "POST", "/v1/auth/password/reset", {"login": w.b.login}),
                          202)["reset_id"]
    expect(w.as_a(method, path, {"reset_id": reset_id, "code": "000000",
                                 "new_password": "Hijacked-Password-123"}),
           422, "invalid_code", "A guessing B's reset code")
    signed = expect(call(w.srv, "POST", "/v1/auth/sign-in",
                         {"login": w.b.login, "password": PASSWORD}),
                    200, what="B's password is unchanged")
    expect(call(w.srv, "POST", "/v1/auth/sign-out", token=signed["token"]), 200)
    w.check_b_unchanged("A guessing B's reset code")


# Merchant routes: customers get 403; M1's staff get 403 on owner routes; M1's owner sees and
# manages M1 only, and M2's user ids answer as unknown ones. Nothing of M2's in M1's answers.


def _merchant_route(w, scope, path):
    check("merchant" in scope and "customer" not in scope,
          "%s no longer admits merchants only: update its check" % path)
    return w.merchants()


def _forbidden(res, what):
    expect(res, 403, "forbidden", what)


def r_merchant_create(w, method, path, scope):
    """An admin route: customers and merchant owners get 403 and create nothing."""
    r_staff(w, method, path, scope)
    m1, _m2 = w.merchants()
    login = email("m-refused")
    body = {"legal_name": "Refused Ltd", "display_name": "Refused",
            "owner": {"login": login, "password": PASSWORD, "name": "Rufus Refused"}}
    _forbidden(w.as_a(method, path, body), "A creating a merchant")
    _forbidden(w.as_m1("owner", method, path, body), "M1's owner creating a merchant")
    expect(call(w.srv, "POST", "/v1/auth/sign-in", {"login": login, "password": PASSWORD}), 401,
           "invalid_credentials", "the owner of a refused merchant")


def r_merchant_get(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    _forbidden(w.as_a(method, path), "A reading a merchant")
    _forbidden(call(w.srv, method, path, token=w.tokens["merchant"]),
               "a merchant user of no merchant")
    for who, right in (("owner", "owner"), ("staff", "staff")):
        body = expect(w.as_m1(who, method, path), 200, what="M1's %s reads M1" % who)
        check_eq((body["merchant_id"], body["legal_name"], body["display_name"], body["right"]),
                 (m1.id, m1.legal, m1.display, right), "M1 as its %s sees it" % who)
    check_eq(expect(call(w.srv, method, path, token=m2.owner.token), 200)["merchant_id"], m2.id,
             "M2 as its owner sees it")


def r_merchant_users(w, method, path, scope):
    m1, _m2 = _merchant_route(w, scope, path)
    _forbidden(w.as_a(method, path), "A listing a merchant's users")
    _forbidden(w.as_m1("staff", method, path), "M1's staff listing M1's users")
    _forbidden(call(w.srv, method, path, token=w.tokens["merchant"]),
               "a merchant user of no merchant listing users")
    data = expect(w.as_m1("owner", method, path), 200, what="M1's owner lists M1's users")["data"]
    check_eq(sorted((u["user_id"], u["right"]) for u in data),
             sorted([(m1.owner.user_id, "owner"), (m1.staff.user_id, "staff")]), "M1's users")


def r_merchant_user_add(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    for who, res in (("A", lambda b: w.as_a(method, path, b)),
                     ("M1's staff", lambda b: w.as_m1("staff", method, path, b))):
        login = email("m-add-refused")
        _forbidden(res({"login": login, "password": PASSWORD, "name": "Nora Nobody",
                        "right": "owner"}), "%s adding a merchant user" % who)
        expect(call(w.srv, "POST", "/v1/auth/sign-in", {"login": login, "password": PASSWORD}),
               401, "invalid_credentials", "the user %s tried to add" % who)
    # M2's users cannot be taken over by adding their login to M1
    for u in (m2.owner, m2.staff):
        st, body, _h = w.as_m1("owner", method, path, {"login": u.login, "password": PASSWORD,
                                                       "name": "Taken Over", "right": "owner"})
        check(st == 409 and body.get("code") == "login_taken",
              "M1's owner adding M2's login: expected 409 login_taken, got %d %s" % (st, body))
    w.check_m2_unchanged("M1's owner adding M2's logins")
    login = email("m1-extra")
    added = expect(w.as_m1("owner", method, path, {"login": login, "password": PASSWORD,
                                                   "name": "Ezra Extra", "right": "staff"}),
                   201, what="M1's owner adds staff")
    m1.extra = added["user_id"]
    data = expect(w.as_m1("owner", "GET", "/v1/merchant/users"), 200)["data"]
    check(m1.extra in {u["user_id"] for u in data}, "M1's new staff is not listed: %s" % data)
    w.check_m2_unchanged("M1's owner adding staff")


def r_merchant_user_remove(w, method, path, scope):
    """Ends M1's staff user's sessions: runs after the other merchant checks."""
    m1, m2 = _merchant_route(w, scope, path)
    unknown = fill(path, UNKNOWN)
    for ids in (w.b_ids, UNKNOWN):
        _forbidden(w.as_a(method, fill(path, ids)), "A removing a merchant user")
    for target in (m1.owner, m2.owner, m2.staff):
        _forbidden(w.as_m1("staff", method, fill(path, {"users": target.user_id})),
                   "M1's staff removing %s" % target.user_id)
    _forbidden(w.as_m1("staff", method, unknown), "M1's staff removing an unknown user")
    _st, unknown_body, _h = w.as_m1("owner", method, unknown)
    check_eq(unknown_body.get("code"), "not_found", "M1's owner removing an unknown user")
    for what, user_id in (("M2's owner", m2.owner.user_id), ("M2's staff", m2.staff.user_id),
                          ("B", w.b.user_id), ("a malformed id", "usr_x")):
        st, body, _h = w.as_m1("owner", method, fill(path, {"users": user_id}))
        check(st == 404 and body == unknown_body,
              "M1's owner removing %s: expected the unknown-user 404, got %d %s (unknown: %s)"
              % (what, st, body, unknown_body))
    w.check_m2_unchanged("M1's owner removing M2's users")
    w.check_b_unchanged("M1's owner removing B")
    expect(w.as_m1("owner", method, fill(path, {"users": m1.owner.user_id})), 409, "conflict",
           "M1's owner removing themself")
    body = expect(w.as_m1("owner", method, fill(path, {"users": m1.staff.user_id})), 200,
                  what="M1's owner removes M1's staff")
    check_eq(body, {"user_id": m1.staff.user_id, "status": "removed"}, "remove answer")
    check_eq(call(w.srv, "GET", "/v1/me", token=m1.staff.token)[0], 401,
             "the removed staff user's session")
    check_eq(call(w.srv, "GET", "/v1/me", token=m1.owner.token)[0], 200, "M1's owner's session")
    w.check_m2_unchanged("M1's owner removing M1's staff")


# (check, order): routes run in increasing order; state-changing ones last.
ROUTES = {
    "GET /healthz": (r_healthz, 0),
    "GET /metrics": (r_staff, 0),
    "GET /v1/ledger/currencies": (r_currencies, 0),
    "POST /v1/ledger/accounts": (r_staff, 0),
    "GET /v1/ledger/accounts": (r_staff, 0),
    "GET /v1/ledger/accounts/{id}": (r_staff, 0),
    "POST /v1/ledger/accounts/{id}/freeze": (r_staff, 0),
    "POST /v1/ledger/accounts/{id}/unfreeze": (r_staff, 0),
    "GET /v1/ledger/accounts/{id}/transfers": (r_staff, 0),
    "POST /v1/ledger/transfers": (r_staff, 0),
    "POST /v1/ledger/transfers/batch": (r_staff, 0),
    "GET /v1/ledger/transfers/{id}": (r_staff, 0),
    "POST /v1/ledger/transfers/{id}/post": (r_staff, 0),
    "POST /v1/ledger/transfers/{id}/void": (r_staff, 0),
    "POST /v1/auth/register": (r_register, 1),
    "POST /v1/auth/register/verify": (r_register_verify, 1),
    "POST /v1/auth/sign-in": (r_sign_in, 1),
    "POST /v1/auth/sign-in/mfa": (r_sign_in_mfa, 1),
    "POST /v1/auth/sign-in/enrol": (r_sign_in_enrol, 1),
    "POST /v1/auth/password/reset": (r_reset, 1),
    "POST /v1/auth/password/reset/confirm": (r_reset_confirm, 2),
    "GET /v1/me": (r_me, 0),
    "GET /v1/me/sessions": (r_me_sessions, 0),
    "POST /v1/me/sessions/{id}/revoke": (r_session_revoke, 1),
    "POST /v1/me/challenges": (r_challenge, 1),
    "POST /v1/me/password": (r_password, 1),
    "POST /v1/me/login": (r_login, 1),
    "POST /v1/me/mfa/totp": (r_totp_begin, 1),
    "POST /v1/me/mfa/totp/confirm": (r_totp_confirm, 2),
    "POST /v1/me/mfa/totp/disable": (r_totp_disable, 2),
    "POST /v1/me/export": (r_export, 3),
    "POST /v1/me/close": (r_close, 1),
    "GET /v1/me/accounts": (r_me_accounts, 0),
    "POST /v1/me/accounts": (r_me_account_open, 1),
    "GET /v1/me/accounts/{id}": (r_me_account, 0),
    "GET /v1/me/accounts/{id}/transfers": (r_me_account_transfers, 0),
    "POST /v1/me/transfers": (r_me_transfer_create, 1),
    "GET /v1/me/transfers/{id}": (r_me_transfer, 0),
    "POST /v1/me/login/confirm": (r_login_confirm, 7),
    "POST /v1/me/sessions/revoke-others": (r_revoke_others, 8),
    "POST /v1/auth/sign-out": (r_sign_out, 9),
    "POST /v1/bootstrap": (r_bootstrap, 1),
    "POST /v1/admin/staff": (r_staff, 0),
    "GET /v1/admin/users/{id}": (r_staff, 0),
    "POST /v1/admin/users/{id}/role": (r_staff, 0),
    "GET /v1/admin/outbox": (r_staff, 0),
    "GET /v1/audit": (r_staff, 0),
    "POST /v1/admin/merchants": (r_merchant_create, 0),
    "GET /v1/merchant": (r_merchant_get, 0),
    "GET /v1/merchant/users": (r_merchant_users, 0),
    "POST /v1/merchant/users": (r_merchant_user_add, 1),
    "POST /v1/merchant/users/{id}/remove": (r_merchant_user_remove, 5),
}


# ------------------------------------------------------------------------------------------------
# Tests


def test_every_route_is_known(ctx):
    routes = load_routes(ctx.bin)
    unknown = ["%s %s" % (m, p) for m, p, _s in routes if "%s %s" % (m, p) not in ROUTES]
    check(not unknown, "routes test_access.py does not know how to call (add them to ROUTES "
          "with a cross-user check): %s" % unknown)
    served = {"%s %s" % (m, p) for m, p, _s in routes}
    stale = sorted(set(ROUTES) - served)
    check(not stale, "ROUTES lists routes the server no longer has: %s" % stale)


def _non_public(w):
    return [(m, p, s) for m, p, s in w.routes if "public" not in s]


def test_no_token_401(ctx):
    w = world(ctx)
    bad = [("no token", None),
           ("a malformed session token", "Bearer cfs_" + "A" * 43),
           ("an empty bearer", "Bearer "),
           ("a sign-in waiting for its second factor", "Bearer " + w.pending_token),
           ("the session token under another scheme", "Basic " + w.a.token)]
    for method, path, _scope in _non_public(w):
        url = fill(path, w.b_ids)
        for what, auth in bad:
            st, body, h = call(w.srv, method, url, {} if method == "POST" else None, auth=auth)
            check(st == 401 and isinstance(body, dict) and body.get("code") == "unauthorized",
                  "%s %s with %s: expected 401 unauthorized, got %d %s"
                  % (method, path, what, st, str(body)[:200]))
            check(h.get("WWW-Authenticate", "").startswith("Bearer"),
                  "%s %s: a 401 without WWW-Authenticate: Bearer" % (method, path))
    w.check_b_unchanged("requests without a valid token")


def test_operator_token_403(ctx):
    w = world(ctx)
    op = w.srv.operator_token
    admin = {"login": email("op-admin"), "password": PASSWORD, "name": "Operator Made"}
    for method, path, scope in _non_public(w):
        body = None
        if method == "POST":
            body = admin if "operator" in scope else {}
        st, body, _h = call(w.srv, method, fill(path, w.b_ids), body, token=op)
        if "operator" in scope:
            check(st == 409 and body.get("code") == "already_bootstrapped",
                  "operator token on %s %s: expected 409, got %d %s" % (method, path, st, body))
        else:
            check(st == 403 and body.get("code") == "forbidden",
                  "operator token on %s %s: expected 403 forbidden, got %d %s"
                  % (method, path, st, str(body)[:200]))


def test_role_matrix_403(ctx):
    w = world(ctx)
    checked = 0
    for method, path, scope in _non_public(w):
        for role in ROLES:
            if role in scope:
                continue
            st, body, _h = call(w.srv, method, fill(path, w.b_ids),
                                {} if method == "POST" else None, token=w.tokens[role])
            check(st == 403 and body.get("code") == "forbidden",
                  "%s on %s %s (admits %s): expected 403 forbidden, got %d %s"
                  % (role, method, path, ",".join(sorted(scope)), st, str(body)[:200]))
            if role == "customer":
                w.no_leak("%s %s" % (method, path), body)
            checked += 1
    check(checked >= 40, "too few forbidden combinations checked: %d" % checked)
    w.check_b_unchanged("forbidden requests")


def test_cross_user_walk(ctx):
    w = world(ctx)
    todo = []
    for method, path, scope in w.routes:
        name = "%s %s" % (method, path)
        check(name in ROUTES, "route %s is not in test_access.py's ROUTES: add it with a "
              "cross-user check" % name)
        fn, order = ROUTES[name]
        todo.append((order, name, fn, method, path, scope))
    failures = []
    for _order, name, fn, method, path, scope in sorted(todo, key=lambda t: (t[0], t[1])):
        try:
            fn(w, method, path, scope)
        except AssertionError as e:
            failures.append("%s: %s" % (name, e))
    check(not failures, "%d route checks failed:\n  %s" % (len(failures), "\n  ".join(failures)))


def test_zz_verify(ctx):
    ctx.shared().check_verify()


TESTS = [
    test_every_route_is_known,
    test_no_token_401,
    test_operator_token_403,
    test_role_matrix_403,
    test_cross_user_walk,
    test_zz_verify,
]

if __name__ == "__main__":
    harness.main(TESTS)
