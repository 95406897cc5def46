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
  - payments: M1 and M2 are onboarded (a payment profile in USD); A pays M1, B pays M2 (which
    refunds part of it), B has a handle and sends money to C, A sends money to C. A's operation
    ids, quotes, Idempotency-Keys and verifications get B nothing and B's get A nothing: another
    customer's operation answers 404 as an unknown one and shows in no one else's activity, a
    quote or a verification works for its own customer only (and still works for them after
    the other's attempt), a replayed key meets the caller's own requests only, a handle cannot
    be taken; a quote to B shows B's masked name only. M1's users see M1's profile, codes,
    activity and payments only; M2's payment ids answer M1's refunds as unknown ones, and M2's
    balance and payments are unchanged afterwards;
  - every non-public route without a token, with a malformed or pending (second factor due)
    token: 401; with the token of a role the route does not admit: 403; with the operator
    token anything but /v1/bootstrap: 403.

Usage: test_access.py --bin build/coffer --src . [test names...]
"""

import http.client
import json
import os
import random
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402

PASSWORD = ih.DEFAULT_PASSWORD
ROLES = ("customer", "merchant", "support", "risk", "admin", "auditor")
UNKNOWN = {"accounts": "acct_00000000ZZZZZ", "transfers": "tr_00000000ZZZZZ",
           "sessions": "ses_00000000ZZZZZ", "users": "usr_00000000ZZZZZ",
           "operations": "pay_00000000ZZZZZ", "payments": "pay_00000000ZZZZZ",
           "merchants": "mer_00000000ZZZZZ", "cards": "card_00000000ZZZZZ",
           "topups": "top_00000000ZZZZZ", "payouts": "pyo_00000000ZZZZZ"}
UNKNOWN_QUOTE = "quo_00000000ZZZZZ"
PAY_CURRENCY = "USD"  # on offer by default (sends need it); the EUR histories stay as they are
PROFILE = {"mcc": "5812", "country": "GB", "city": "London", "currency": PAY_CURRENCY,
           "bank_account": "GB82WEST12345698765432"}
A_SEND = 250   # A's send to C (its step-up is asked for in r_challenge)
CARD_3DS = "4000000000003220"         # the sandbox asks for a 3-D Secure code (123456)
BANK_OK = PROFILE["bank_account"]     # the sandbox approves it at once
B_SEND = 120   # B's send to C (r_me_send)
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
        self.usd = None      # the USD wallet the payment routes use
        self.handle = None
        self.card = None
        self.ops = []        # payment operation ids this person is a party to


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
        self.pay_setup()
        self.b_ids = {"accounts": self.b.account, "transfers": self.b.payment,
                      "sessions": self.b.sessions[0], "users": self.b.user_id,
                      "operations": self.b.pay_m2, "payments": self.b.pay_m2,
                      "merchants": self.m2.id, "cards": self.b.card, "topups": self.b.topup,
                      "payouts": min(o for o in self.m2.ops if o.startswith("pyo_"))}
        # everything of B's that must never show in an answer to A
        self.b_marks = [self.b.user_id, self.b.account, self.b.payment, self.b.funding,
                        self.b.login, self.b.name, self.b_new_login,
                        self.b_export["challenge_id"], self.b_change["change_id"],
                        self.b.usd, self.b.handle[1:], self.b.card, self.b_topup_ref]
        self.b_marks += self.b.sessions + self.b.ops
        self.b_marks = [m for m in self.b_marks if m]
        requests_setup(self)  # B's and A's payment requests (r_requests_*)
        paycode_setup(self)  # D's payment-code devices, M1's and M2's holds (r_paycode_*)
        risk_freeze_setup(self)  # B as a party of the freeze routes (r_risk_freeze_*)
        cases_setup(self)  # E's large send opens a case for the case routes (r_cases_*)
        rules_setup(self)  # a rule, and B's scored payment, for the rules routes (r_rules_*)
        self.b_ids["reviews"] = self.b.pay_m2  # B's payment: not under review (r_risk_review)
        kyc_setup(self)  # B's pending KYC submission, A's draft (r_kyc_*)
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

    def pay_setup(self):
        """The payment side of the world: M1 and M2 onboarded in USD with a static code each;
        USD wallets for A, B and C (A's and B's funded); A pays M1; B pays M2 with a dynamic code
        and M2 refunds part of it; B takes a handle. B's sends are made in r_me_send, A's send
        there too (A's step-up allowance of codes is spent by the other checks but one)."""
        srv, admin = self.srv, self.admin
        m1, m2 = self.merchants()
        expect(call(srv, "GET", "/v1/merchant/profile", token=m1.owner.token), 409, "conflict",
               "a merchant's profile before onboarding")
        for m in (m1, m2):
            got = expect(call(srv, "POST", "/v1/admin/merchants/%s/profile" % m.id,
                              dict(PROFILE, city=m.city), token=admin.token), 200,
                         what="onboard " + m.display)
            m.account = got["account"]
            m.static = expect(call(srv, "POST", "/v1/merchant/qr", token=m.owner.token), 201,
                              what="%s's static code" % m.display)["payload"]
        source = harness.make_source(self.client, PAY_CURRENCY)["id"]
        for p in (self.a, self.b, self.c):
            p.usd = expect(call(srv, "POST", "/v1/me/accounts", {"currency": PAY_CURRENCY},
                                token=p.token), 201, what="open a USD wallet")["id"]
        for p in (self.a, self.b):
            harness.fund(self.client, source, p.usd, 50000, PAY_CURRENCY)
        dyn = self.qr(m1, 300)
        self.a.pay_m1 = expect(call(srv, "POST", "/v1/me/payments", {"payload": dyn["payload"]},
                                    token=self.a.token), 201, what="A pays M1")["id"]
        self.a.ops.append(self.a.pay_m1)
        m1.ops.add(self.a.pay_m1)
        # B's payment to M2, with the key and body A replays later
        dyn = self.qr(m2, 400, "b-order")
        m2.qr_ids.append(dyn["id"])
        self.b_paid_code = dyn["payload"]
        self.b_pay = (new_key("b-pay"), {"payload": dyn["payload"]})
        self.b.pay_m2 = expect(call(srv, "POST", "/v1/me/payments", self.b_pay[1],
                                    token=self.b.token, key=self.b_pay[0]), 201,
                               what="B pays M2")["id"]
        path = "/v1/merchant/payments/%s/refund" % self.b.pay_m2
        self.m2_refund = (new_key("m2-refund"), path, {"amount_minor": 100})
        refund = expect(call(srv, "POST", path, self.m2_refund[2], token=m2.owner.token,
                             key=self.m2_refund[0]), 201, what="M2 refunds part of B's payment")
        self.b.ops += [self.b.pay_m2, refund["id"]]
        m2.ops.update([self.b.pay_m2, refund["id"]])
        self.b.handle = "@bob_" + _run
        expect(call(srv, "POST", "/v1/me/handle", {"handle": self.b.handle}, token=self.b.token),
               200, what="B's handle")
        # B's saved card, and B's top-up with it waiting for its 3-D Secure code
        v = self.verification(self.b, "card_add")
        self.b.card = expect(call(srv, "POST", "/v1/me/cards",
                                  {"number": CARD_3DS, "exp_month": 12, "exp_year": 2031,
                                   "cvc": "123", "verification": v}, token=self.b.token),
                             201, what="B saves a card")["id"]
        self.b_topup = (new_key("b-top"), {"amount_minor": 700, "currency": PAY_CURRENCY,
                                           "card_id": self.b.card})
        top = expect(call(srv, "POST", "/v1/me/topups", self.b_topup[1], token=self.b.token,
                          key=self.b_topup[0]), 202, what="B's top-up")
        check_eq(top["status"], "action_required", "B's top-up waits for its code")
        self.b.topup, self.b_topup_ref = top["id"], top["challenge"]["reference"]
        self.b.ops.append(top["id"])
        # A's top-up from a bank account
        self.a.topup = expect(call(srv, "POST", "/v1/me/topups",
                                   {"amount_minor": 1000, "currency": PAY_CURRENCY,
                                    "bank_account": BANK_OK}, token=self.a.token), 201,
                              what="A's top-up")["id"]
        self.a.ops.append(self.a.topup)
        # M2's payout, whose key and body M1 replays
        self.m2_payout = (new_key("m2-payout"), {"amount_minor": 50})
        payout = expect(call(srv, "POST", "/v1/merchant/payouts", self.m2_payout[1],
                             token=m2.owner.token, key=self.m2_payout[0]), 201,
                        what="M2's payout")
        m2.ops.add(payout["id"])
        self.m2_marks += [m2.account, m2.city, m2.static] + m2.qr_ids + sorted(m2.ops)
        self.m2_before = m2.state(srv)

    def qr(self, m, amount, reference=None):
        body = {"amount_minor": amount}
        if reference:
            body["reference"] = reference
        return expect(call(self.srv, "POST", "/v1/merchant/qr", body, token=m.owner.token), 201,
                      what="a dynamic code of " + m.display)

    def b_own(self, what, fn):
        """B (or M2) acting on its own behalf inside a check: everything A did before is checked
        first, then B's and M2's state is taken again."""
        self.check_b_unchanged("A, before " + what)
        self.check_m2_unchanged("A or M1, before " + what)
        out = fn()
        self.b_before = self.b_state()
        self.m2_before = self.m2.state(self.srv)
        return out

    def b_mark(self, *marks):
        self.b_marks += [m for m in marks if m]

    def b_state(self):
        """What A must not be able to change: B's profile, accounts, sessions and payments."""
        prof = expect(call(self.srv, "GET", "/v1/me", token=self.b.token), 200,
                      what="B's profile")
        prof.pop("last_seen_at", None)
        accts = expect(call(self.srv, "GET", "/v1/me/accounts", token=self.b.token), 200,
                       what="B's accounts")["data"]
        sessions = expect(call(self.srv, "GET", "/v1/me/sessions", token=self.b.token), 200,
                          what="B's sessions")["data"]
        activity = expect(call(self.srv, "GET", "/v1/me/activity?limit=100",
                               token=self.b.token), 200, what="B's activity")["data"]
        cards = expect(call(self.srv, "GET", "/v1/me/cards", token=self.b.token), 200,
                       what="B's cards")["data"]
        return {"profile": prof, "accounts": accts,
                "sessions": sorted(s["session_id"] for s in sessions),
                "activity": activity, "cards": cards}

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
                               "Odile Gannetworth", "Silas Gullbrook", "London")
            self.m2 = Merchant(self, "m2", "Quillon Quay Hardware GmbH", "Quillon Quay",
                               "Quentin Quillsby", "Sabine Quaystone", "Quillhaven")
            self.m2_marks = self.m2.marks()
            self.m2_before = self.m2.state(self.srv)
        return self.m1, self.m2

    def as_m1(self, who, method, path, body=None, key=None):
        """A request by an M1 user (who: "owner" or "staff"), whose answer holds nothing of M2's
        and nothing of B's."""
        res = call(self.srv, method, path, body, token=getattr(self.m1, who).token, key=key)
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

    def __init__(self, w, tag, legal, display, owner_name, staff_name, city):
        srv = w.srv
        self.legal, self.display, self.city = legal, display, city
        self.account = None  # the ledger account of its payment profile, once onboarded
        self.static = None   # its static QR payload
        self.qr_ids = []     # its dynamic codes
        self.ops = set()     # payment operations it is a party to
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
            "profile": self.account and expect(
                call(srv, "GET", "/v1/merchant/profile", token=self.owner.token), 200,
                what="the merchant's payment profile and balance"),
            # its own payments and refunds (customers' new attempts to pay it may be added)
            "ops": self.account and sorted(
                (o["id"], o["status"], o["amount_minor"], o.get("refunded_minor"))
                for o in expect(call(srv, "GET", "/v1/merchant/activity?limit=100",
                                     token=self.owner.token), 200,
                                what="the merchant's activity")["data"] if o["id"] in self.ops),
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
    # bound to a send to C (named by login), which r_me_send makes with it (A has no other code
    # to spare)
    body = expect(w.as_a(method, path, {"action": "send", "amount_minor": A_SEND,
                                        "currency": PAY_CURRENCY, "payee": w.c.login}), 201)
    check(body["challenge_id"].startswith("chl_") and set(body) <= {
        "challenge_id", "method", "expires_at"}, "challenge answer: %s" % body)
    w.a_send = {"challenge_id": body["challenge_id"], "code": outbox_codes(w.srv, w.a.login)[0]}
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


def _staff_only(w, method, path, body=None, roles=(), key_tag=None):
    """A, M1's owner and each of roles get 403 on path with B's ids and with unknown ones (each
    request with a new Idempotency-Key of key_tag, when given)."""
    def key():
        return new_key(key_tag) if key_tag else None
    w.merchants()
    for ids in (w.b_ids, UNKNOWN):
        url = fill(path, ids)
        _forbidden(w.as_a(method, url, body, key=key()), "A %s %s" % (method, path))
        _forbidden(w.as_m1("owner", method, url, body, key=key()), "M1's owner on %s" % path)
        for role in roles:
            _forbidden(call(w.srv, method, url, body, token=w.tokens[role], key=key()),
                       "%s on %s %s" % (role, method, path))


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


# Payments. A customer's operations, quotes, keys and verifications are theirs alone; M1's users
# see M1's payments only. The world holds A's payment to M1, B's payment to M2 and M2's partial
# refund of it, B's handle, and each merchant's static code (World.pay_setup).


def _problem_eq(res, unknown, what):
    """res answers exactly as the unknown id's request did (a 4xx, never a 200)."""
    st, body = res[0], res[1]
    check(st == unknown[0] and body == unknown[1] and 400 <= st < 500,
          "%s: expected the answer an unknown id gets (%d %s), got %d %s"
          % (what, unknown[0], unknown[1], st, str(body)[:300]))


def _ids(data):
    return {o["id"] for o in data}


def _others(w, token, method, path, body=None, key=None):
    """A request by someone other than A (B or C), whose answer must hold nothing of A's."""
    res = call(w.srv, method, path, body, token=token, key=key)
    text = json.dumps(res[1], ensure_ascii=False).lower()
    for mark in [w.a.user_id, w.a.login, w.a.name, w.a.usd, w.a.account] + list(w.a.ops):
        check(mark.lower() not in text,
              "%s %s: an answer to another customer holds A's %r: %s"
              % (method, path, mark, text[:600]))
    return res


def r_me_handle(w, method, path, scope):
    """B's handle cannot be taken by A, in any spelling; A's own handle changes nothing of B's."""
    _need_customer(scope, path)
    for h in (w.b.handle, w.b.handle.upper(), w.b.handle[1:]):
        expect(w.as_a(method, path, {"handle": h}), 409, "conflict", "A taking B's handle %s" % h)
    w.check_b_unchanged("A taking B's handle")
    mine = "@alice_" + _run
    check_eq(expect(w.as_a(method, path, {"handle": mine.upper()}), 200,
                    what="A takes a free handle"), {"handle": mine}, "A's handle")
    # and B cannot take A's: B's own handle survives the refused change
    expect(call(w.srv, method, path, {"handle": mine}, token=w.b.token), 409, "conflict",
           "B taking A's handle")
    for to, name in ((w.b.handle, "B*** B."), (mine, "A*** A.")):
        q = expect(call(w.srv, "POST", "/v1/me/quotes",
                        {"to": to, "amount_minor": 1, "currency": PAY_CURRENCY},
                        token=w.c.token), 200, what="C's quote to %s" % to)
        check_eq(q["recipient"], {"name": name}, "whom %s names" % to)
    w.check_b_unchanged("A setting a handle")


def r_me_quote(w, method, path, scope):
    """A quote to B shows B's masked name and nothing else of B's; B's ids, and the logins of
    merchant users and staff, answer as a login nobody has."""
    _need_customer(scope, path)
    body = {"amount_minor": 500, "currency": PAY_CURRENCY}
    for to in (w.b.login, w.b.login.upper(), w.b.handle, w.b.handle.upper()):
        q = expect(w.as_a(method, path, dict(body, to=to)), 200, what="A's quote to B (%s)" % to)
        check_eq(sorted(q), ["amount_minor", "currency", "expires_at", "fee_minor", "quote_id",
                             "recipient", "total_minor"], "the members of a quote")
        check_eq(q["recipient"], {"name": "B*** B."}, "B as a quote shows B")
    unknown = w.as_a(method, path, dict(body, to=email("nobody-pays")))
    check(unknown[0] == 404 and unknown[1].get("code") == "recipient_not_found",
          "a quote to nobody: %d %s" % unknown[:2])
    m1, m2 = w.m1, w.m2
    for what, to in (("B's user id", w.b.user_id), ("B's account", w.b.usd),
                     ("B's handle without its @", w.b.handle[1:]),
                     ("M1's owner", m1.owner.login), ("M2's staff", m2.staff.login),
                     ("a support user", email("support")), ("A", w.a.login)):
        st, got, _h = w.as_a(method, path, dict(body, to=to))
        if to == w.a.login:
            check(st == 422 and got.get("code") == "same_account", "A's quote to A: %d %s"
                  % (st, got))
            continue
        _problem_eq((st, got), unknown, "A's quote to %s" % what)
    w.check_b_unchanged("A's quotes to B")


def r_me_qr_scan(w, method, path, scope):
    """A scan shows the merchant's public details only; the code B paid is used, and says
    nothing of B."""
    _need_customer(scope, path)
    m1 = w.m1
    q = expect(w.as_a(method, path, {"payload": m1.static, "amount_minor": 150}), 200,
               what="A scans M1's static code")
    check_eq(q["merchant"], {"id": m1.id, "name": m1.display, "city": m1.city,
                             "mcc": PROFILE["mcc"]}, "the merchant a scan shows")
    check_eq((q["amount_minor"], q["currency"], q["dynamic"]), (150, PAY_CURRENCY, False),
             "A's scan")
    expect(w.as_a(method, path, {"payload": w.b_paid_code}), 422, "qr_expired",
           "A scanning the code B paid")
    expect(w.as_a(method, path, {"payload": w.m2.static}), 400, "invalid_amount",
           "a static code without the amount")
    w.check_b_unchanged("A's scans")


def r_me_payment(w, method, path, scope):
    """B's quote, paid code, Idempotency-Key and verification get A nothing; B's quote still
    pays for B afterwards."""
    _need_customer(scope, path)
    m1, m2 = w.m1, w.m2
    srv = w.srv
    bq = expect(call(srv, "POST", "/v1/me/qr/scan", {"payload": m2.static, "amount_minor": 90},
                     token=w.b.token), 200, what="B scans M2's static code")["quote_id"]
    w.b_mark(bq)
    before = w.client.account(w.b.usd)["balance"]
    b_body = {"payload": m2.static, "amount_minor": 90, "quote_id": bq}
    unknown = w.as_a(method, path, dict(b_body, quote_id=UNKNOWN_QUOTE))
    check(unknown[0] == 422 and unknown[1].get("code") == "quote_expired",
          "A paying with an unknown quote: %d %s" % unknown[:2])
    _problem_eq(w.as_a(method, path, b_body), unknown, "A paying with B's quote")
    # B's key and B's request, as A: A's keys are A's own, and B's code is used
    key, body = w.b_pay
    expect(w.as_a(method, path, body, key=key), 422, "qr_expired",
           "A replaying B's payment (B's key and body)")
    # above the step-up amount with B's verification
    expect(w.as_a(method, path, {"payload": m1.static, "amount_minor": 100001,
                                 "verification": w.b_export}), 422, "invalid_code",
           "A paying with B's verification")
    check_eq(w.client.account(w.b.usd)["balance"], before, "B's balance")
    w.check_b_unchanged("A paying with B's quote, key and verification")
    w.check_m2_unchanged("A paying M2 with B's quote")
    # B's quote survived A's attempts
    paid = w.b_own("B pays with its quote", lambda: expect(
        call(srv, method, path, b_body, token=w.b.token), 201, what="B pays with its quote"))
    check_eq((paid["amount_minor"], paid["counterparty"]), (90, m2.id), "B's payment")
    w.b.ops.append(paid["id"])
    w.b_mark(paid["id"])
    m2.ops.add(paid["id"])
    w.m2_marks.append(paid["id"])
    w.m2_before = m2.state(srv)


def r_me_send(w, method, path, scope):
    """A's send to C; B's verification, quote and key get A nothing, and then make B's own
    send to C."""
    _need_customer(scope, path)
    srv, a, b, c = w.srv, w.a, w.b, w.c
    bq = expect(call(srv, "POST", "/v1/me/quotes",
                     {"to": c.login, "amount_minor": B_SEND, "currency": PAY_CURRENCY},
                     token=b.token), 200, what="B's quote to C")["quote_id"]
    bv = w.verification(b, "send", amount_minor=B_SEND, currency=PAY_CURRENCY, payee=c.login)
    w.b_mark(bq, bv["challenge_id"])
    b_key = new_key("b-send")
    b_body = {"to": c.login, "amount_minor": B_SEND, "currency": PAY_CURRENCY,
              "note": "from B to C", "quote_id": bq, "verification": bv}
    before = w.client.account(b.usd)["balance"]
    # C is new to A: B's verification (with B's quote, key and body) is refused
    expect(w.as_a(method, path, b_body, key=b_key), 422, "invalid_code",
           "A sending with B's verification")
    v = getattr(w, "a_send", None) or w.verification(a, "send", amount_minor=A_SEND,
                                                     currency=PAY_CURRENCY, payee=c.login)
    sent = expect(w.as_a(method, path, {"to": c.login, "amount_minor": A_SEND,
                                        "currency": PAY_CURRENCY, "verification": v}), 201,
                  what="A sends to C")
    check_eq((sent["type"], sent["direction"], sent["amount_minor"], sent["counterparty"]),
             ("send", "out", A_SEND, c.user_id), "A's send")
    a.send = sent["id"]
    a.ops.append(sent["id"])
    # C is a payee A knows now: a small send needs no step-up, so B's quote itself is tried
    small = {"to": c.login, "amount_minor": B_SEND, "currency": PAY_CURRENCY}
    unknown = w.as_a(method, path, dict(small, quote_id=UNKNOWN_QUOTE))
    check(unknown[0] == 422 and unknown[1].get("code") == "quote_expired",
          "A sending with an unknown quote: %d %s" % unknown[:2])
    _problem_eq(w.as_a(method, path, dict(small, quote_id=bq)), unknown,
                "A sending with B's quote")
    _problem_eq(w.as_a(method, path, dict(small, quote_id=bq), key=b_key), unknown,
                "A sending with B's quote and B's key")
    # B's ids are no recipients
    nobody = w.as_a(method, path, {"to": email("nobody-sends"), "amount_minor": 1,
                                   "currency": PAY_CURRENCY})
    check(nobody[0] == 404 and nobody[1].get("code") == "recipient_not_found",
          "a send to nobody: %d %s" % nobody[:2])
    for what, to in (("B's user id", b.user_id), ("B's account", b.usd)):
        _problem_eq(w.as_a(method, path, {"to": to, "amount_minor": 1,
                                          "currency": PAY_CURRENCY}), nobody,
                    "A sending to %s" % what)
    check_eq(w.client.account(b.usd)["balance"], before, "B's balance")
    w.check_b_unchanged("A sending with B's quote, key and verification")
    # B's verification, quote and key survived: B's send to C goes through
    sent = w.b_own("B's send to C", lambda: expect(
        call(srv, method, path, b_body, token=b.token, key=b_key), 201, what="B sends to C"))
    check_eq((sent["amount_minor"], sent["counterparty"], sent.get("note")),
             (B_SEND, c.user_id, "from B to C"), "B's send")
    b.send = sent["id"]
    b.ops.append(sent["id"])
    w.b_mark(sent["id"])
    # each sees its own send, C sees both as money in, neither sees the other's
    expect(_others(w, b.token, "GET", "/v1/me/operations/" + a.send), 404, "not_found",
           "B reading A's send")
    expect(w.as_a("GET", "/v1/me/operations/" + b.send), 404, "not_found", "A reading B's send")
    for op, payer in ((a.send, a.user_id), (b.send, b.user_id)):
        got = expect(call(srv, "GET", "/v1/me/operations/" + op, token=c.token), 200,
                     what="C reading a send to C")
        check_eq((got["direction"], got["counterparty"]), ("in", payer), "a send as C sees it")


def r_me_operation(w, method, path, scope):
    """B's operations (payments, sends, refunds) answer A exactly as unknown ones; A's answer B
    the same way."""
    _need_customer(scope, path)
    unknown = w.as_a(method, fill(path, UNKNOWN))
    check(unknown[0] == 404 and unknown[1].get("code") == "not_found",
          "A reading an unknown operation: %d %s" % unknown[:2])
    for op in w.b.ops:
        _problem_eq(w.as_a(method, fill(path, {"operations": op})), unknown,
                    "A reading B's operation %s" % op)
    for bad in ("pay_x", "snd_", w.b.payment, w.m2.id, "rfd_" + w.b.pay_m2[4:]):
        st, body, _h = w.as_a(method, fill(path, {"operations": bad}))
        check(st == 404, "A reading operation %r: expected 404, got %d %s" % (bad, st, body))
    for op in w.a.ops:
        got = expect(w.as_a(method, fill(path, {"operations": op})), 200,
                     what="A reading A's own operation")
        check_eq((got["id"], got["direction"]), (op, "in" if op == w.a.topup else "out"),
                 "A's own operation")
    b_unknown = _others(w, w.b.token, method, fill(path, UNKNOWN))
    for op in w.a.ops:
        _problem_eq(_others(w, w.b.token, method, fill(path, {"operations": op})), b_unknown,
                    "B reading A's operation %s" % op)
    w.check_b_unchanged("A reading B's operations")


def r_me_activity(w, method, path, scope):
    """A's activity lists A's operations and none of B's, whatever the filter or cursor; B's
    lists none of A's."""
    _need_customer(scope, path)
    a_ops, b_ops = set(w.a.ops), set(w.b.ops)
    data = expect(w.as_a(method, path + "?limit=100"), 200, what="A's activity")["data"]
    check(a_ops <= _ids(data), "A's activity lacks A's operations: %s" % (a_ops - _ids(data)))
    for q in ("type=payment", "type=send", "type=refund", "type=topup", "type=withdrawal",
              "currency=" + PAY_CURRENCY,
              "from=2000-01-01", "limit=1"):
        data = expect(w.as_a(method, path + "?" + q), 200, what="A's activity ?" + q)["data"]
        check(not _ids(data) & b_ops, "A's activity ?%s lists B's operations" % q)
    # B's cursor pages A's activity only
    page = expect(call(w.srv, method, path + "?limit=1", token=w.b.token), 200)
    check(page["next_cursor"], "B's activity has more than one operation: %s" % page)
    data = expect(w.as_a(method, path + "?limit=100&cursor=" + page["next_cursor"]), 200,
                  what="A's activity from B's cursor")["data"]
    check(not _ids(data) & b_ops, "A's activity from B's cursor lists B's operations")
    data = expect(_others(w, w.b.token, method, path + "?limit=100"), 200,
                  what="B's activity")["data"]
    check(b_ops <= _ids(data) and not _ids(data) & a_ops,
          "B's activity: %s (B's %s, A's %s)" % (sorted(_ids(data)), b_ops, a_ops))
    w.check_b_unchanged("A reading activity")


def r_merchant_profile(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    _forbidden(w.as_a(method, path), "A reading a merchant's payment profile")
    _forbidden(call(w.srv, method, path, token=w.tokens["merchant"]),
               "a merchant user of no merchant")
    for who in ("owner", "staff"):
        body = expect(w.as_m1(who, method, path), 200, what="M1's %s reads M1's profile" % who)
        check_eq((body["merchant_id"], body["account"], body["display_name"], body["city"]),
                 (m1.id, m1.account, m1.display, m1.city), "M1's profile as its %s sees it" % who)
        check("bank_account" not in body and PROFILE["bank_account"][4:] not in json.dumps(body),
              "the profile shows the bank account: %s" % body)
    check_eq(expect(call(w.srv, method, path, token=m2.owner.token), 200)["merchant_id"], m2.id,
             "M2's profile as its owner sees it")


def r_merchant_qr(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    _forbidden(w.as_a(method, path, {"amount_minor": 100}), "A making a merchant's code")
    _forbidden(call(w.srv, method, path, {"amount_minor": 100}, token=w.tokens["merchant"]),
               "a merchant user of no merchant making a code")
    for who in ("owner", "staff"):
        code = expect(w.as_m1(who, method, path, {"amount_minor": 222, "reference": who}), 201,
                      what="M1's %s makes a code" % who)
        scan = expect(w.as_a("POST", "/v1/me/qr/scan", {"payload": code["payload"]}), 200,
                      what="A scans M1's code")
        check_eq((scan["merchant"]["id"], scan["amount_minor"]), (m1.id, 222),
                 "the code M1's %s made" % who)
    expect(w.as_m1("owner", method, path, {"amount_minor": 5, "merchant_id": m2.id}), 400,
           "unknown_field", "M1's owner making a code for M2")
    w.check_m2_unchanged("M1 making codes")


def r_merchant_activity(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    _forbidden(w.as_a(method, path), "A reading a merchant's activity")
    _forbidden(call(w.srv, method, path, token=w.tokens["merchant"]),
               "a merchant user of no merchant")
    for who in ("owner", "staff"):
        for q in ("limit=100", "type=payment", "type=refund", "currency=" + PAY_CURRENCY):
            data = expect(w.as_m1(who, method, path + "?" + q), 200,
                          what="M1's %s reads M1's activity ?%s" % (who, q))["data"]
            check(not _ids(data) & m2.ops, "M1's activity lists M2's operations")
    data = expect(w.as_m1("owner", method, path + "?limit=100"), 200)["data"]
    check(m1.ops <= _ids(data), "M1's activity lacks its payments: %s" % (m1.ops - _ids(data)))
    page = expect(call(w.srv, method, path + "?limit=1", token=m2.owner.token), 200)
    check(page["next_cursor"], "M2's activity has more than one operation: %s" % page)
    data = expect(w.as_m1("owner", method, path + "?limit=100&cursor=" + page["next_cursor"]),
                  200, what="M1's activity from M2's cursor")["data"]
    check(not _ids(data) & m2.ops, "M1's activity from M2's cursor lists M2's operations")
    w.check_m2_unchanged("M1 reading its activity")


def r_merchant_refund(w, method, path, scope):
    """M2's payments (and anything else not M1's) answer M1's refunds as unknown ids; then M1
    refunds part of A's payment."""
    m1, m2 = _merchant_route(w, scope, path)
    body = {"amount_minor": 1}
    for ids in (w.b_ids, UNKNOWN, {"payments": w.a.pay_m1}):
        _forbidden(w.as_a(method, fill(path, ids), body), "A refunding a payment")
    _forbidden(call(w.srv, method, fill(path, {"payments": w.a.pay_m1}), body,
                    token=w.tokens["merchant"]), "a merchant user of no merchant refunding")
    for who in ("owner", "staff"):
        unknown = w.as_m1(who, method, fill(path, UNKNOWN), body)
        check(unknown[0] == 404 and unknown[1].get("code") == "not_found",
              "M1's %s refunding an unknown payment: %d %s" % ((who,) + unknown[:2]))
        for what, pid in [("M2's payment %s" % op, op) for op in sorted(m2.ops)] + [
                ("A's send", w.a.send), ("B's send", w.b.send), ("a malformed id", "pay_x"),
                ("B's transfer", w.b.payment)]:
            _problem_eq(w.as_m1(who, method, fill(path, {"payments": pid}), body), unknown,
                        "M1's %s refunding %s" % (who, what))
        # M2's key and M2's request: M1's keys are M1's own
        key, rpath, rbody = w.m2_refund
        _problem_eq(w.as_m1(who, method, rpath, rbody, key=key), unknown,
                    "M1's %s replaying M2's refund" % who)
    w.check_m2_unchanged("M1 refunding M2's payments")
    w.check_b_unchanged("M1 refunding B's payment")
    refund = expect(w.as_m1("owner", method, fill(path, {"payments": w.a.pay_m1}),
                            {"amount_minor": 50}), 201, what="M1 refunds part of A's payment")
    check_eq((refund["type"], refund["payment_id"], refund["amount_minor"], refund["direction"]),
             ("refund", w.a.pay_m1, 50, "out"), "M1's refund")
    m1.ops.add(refund["id"])
    got = expect(w.as_a("GET", "/v1/me/operations/" + refund["id"]), 200,
                 what="A reading M1's refund to A")
    check_eq((got["direction"], got["counterparty"]), ("in", m1.id), "the refund as A sees it")
    w.a.ops.append(refund["id"])
    expect(_others(w, w.b.token, "GET", "/v1/me/operations/" + refund["id"]), 404, "not_found",
           "B reading M1's refund to A")
    w.check_m2_unchanged("M1 refunding A's payment")


def r_merchant_profile_set(w, method, path, scope):
    """An admin route: customers and merchant owners get 403 and change no profile."""
    r_staff(w, method, path, scope)
    body = dict(PROFILE, city="Hijacked", bank_account="DE89370400440532013000")
    for mid in (w.m2.id, w.m1.id):
        _forbidden(w.as_a(method, fill(path, {"merchants": mid}), body),
                   "A setting a merchant's profile")
        _forbidden(w.as_m1("owner", method, fill(path, {"merchants": mid}), body),
                   "M1's owner setting %s's profile" % mid)
    w.check_m2_unchanged("M1 setting M2's profile")
    check_eq(expect(call(w.srv, "GET", "/v1/merchant/profile", token=w.m1.owner.token),
                    200)["city"], w.m1.city, "M1's city")


def r_fee_set(w, method, path, scope):
    """An admin route: customers and merchant owners get 403 and set no fee."""
    r_staff(w, method, path, scope)
    before = expect(call(w.srv, "GET", "/v1/admin/fees", token=w.admin.token), 200)
    for res, who in ((w.as_a(method, path, {"mcc": PROFILE["mcc"], "bps": 0}), "A"),
                     (w.as_m1("owner", method, path, {"mcc": PROFILE["mcc"], "bps": 0}),
                      "M1's owner")):
        _forbidden(res, "%s setting a fee" % who)
    check_eq(expect(call(w.srv, "GET", "/v1/admin/fees", token=w.admin.token), 200), before,
             "the fee schedule")


# Funding through the gateway. The world holds B's saved card and B's top-up with it, waiting
# for its 3-D Secure code; A's top-up from a bank account; M2's payout.


def _form_call(srv, path, body, headers):
    """A raw POST (the gateway's form-encoded callbacks)."""
    if srv.tls_context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=60,
                                           context=srv.tls_context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        conn.request("POST", path, body.encode(), headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return resp.status, parsed, resp.headers
    finally:
        conn.close()


def r_me_cards(w, method, path, scope):
    _need_customer(scope, path)
    check_eq(expect(w.as_a(method, path), 200, what="A's cards")["data"], [], "A's cards")
    data = expect(call(w.srv, method, path, token=w.b.token), 200, what="B's cards")["data"]
    check_eq([c["id"] for c in data], [w.b.card], "B's cards")


def r_me_card_add(w, method, path, scope):
    """A cannot save a card with B's verification (nor without one)."""
    _need_customer(scope, path)
    card = {"number": CARD_3DS, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    expect(w.as_a(method, path, card), 403, "step_up_required", "A saving B's card number")
    expect(w.as_a(method, path, dict(card, verification=w.b_export)), 422, "invalid_code",
           "A saving a card with B's verification")
    check_eq(expect(w.as_a("GET", "/v1/me/cards"), 200)["data"], [], "A's cards")
    w.check_b_unchanged("A saving a card with B's verification")


def r_me_card_remove(w, method, path, scope):
    foreign_id(w, method, path, scope, "not_found", {})
    w.check_b_unchanged("A removing B's card")


def r_me_topup(w, method, path, scope):
    """B's card answers A as an unknown card does, also under B's key and body."""
    _need_customer(scope, path)
    body = {"amount_minor": 100, "currency": PAY_CURRENCY}
    unknown = w.as_a(method, path, dict(body, card_id=UNKNOWN["cards"]))
    check(unknown[0] == 400 and unknown[1].get("code") == "invalid_card",
          "A topping up from an unknown card: %d %s" % unknown[:2])
    _problem_eq(w.as_a(method, path, dict(body, card_id=w.b.card)), unknown,
                "A topping up from B's card")
    key, b_body = w.b_topup
    _problem_eq(w.as_a(method, path, b_body, key=key), unknown,
                "A replaying B's top-up (B's key and body)")
    w.check_b_unchanged("A topping up from B's card")


def r_me_topup_challenge(w, method, path, scope):
    """B's top-up answers A as an unknown one, even with the right code; B answers it after."""
    foreign_id(w, method, path, scope, "not_found", {"code": "123456"})
    done = expect(w.as_a(method, fill(path, {"topups": w.a.topup}), {"code": "123456"}), 201,
                  what="A answering A's own finished top-up: its outcome")
    check_eq((done["id"], done["status"]), (w.a.topup, "completed"), "A's finished top-up")
    w.check_b_unchanged("A answering B's 3-D Secure challenge")
    done = w.b_own("B answers its challenge", lambda: expect(
        call(w.srv, method, fill(path, w.b_ids), {"code": "123456"}, token=w.b.token), 201,
        what="B answers its own challenge"))
    check_eq((done["id"], done["status"]), (w.b.topup, "completed"), "B's top-up")


def r_me_withdrawal(w, method, path, scope):
    """A cannot withdraw with B's verification (nor without one); nothing moves."""
    _need_customer(scope, path)
    before = w.client.account(w.a.usd)["balance"]
    body = {"amount_minor": 100, "currency": PAY_CURRENCY, "bank_account": BANK_OK}
    expect(w.as_a(method, path, body), 403, "step_up_required", "A withdrawing")
    expect(w.as_a(method, path, dict(body, verification=w.b_export)), 422, "invalid_code",
           "A withdrawing with B's verification")
    check_eq(w.client.account(w.a.usd)["balance"], before, "A's balance")
    w.check_b_unchanged("A withdrawing with B's verification")


def r_gateway_callback(w, method, path, scope):
    """Public, and the signature is the only credential: A's forged callbacks for B's top-up
    answer as ones for an unknown operation, and change nothing."""
    check_eq(set(scope), {"public"}, "scope of %s" % path)
    t = int(time.time())
    fields = "event_id=evt_%s000000000000000000000&op_id=%%s&reference=%s&outcome=approved" \
             "&amount_minor=700&currency=%s&created_at=%d" % (_run, w.b_topup_ref, PAY_CURRENCY, t)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for what, headers in (("no signature", {}),
                          ("a made-up signature", {"Coffer-Signature": "t=%d,v1=%s" % (t, "0" * 64)}),
                          ("A's session token", {"Authorization": "Bearer " + w.a.token})):
        unknown = _form_call(w.srv, path, fields % UNKNOWN["topups"], dict(form, **headers))
        check(unknown[0] == 401 and unknown[1].get("code") == "bad_signature",
              "a callback with %s: %d %s" % (what, unknown[0], unknown[1]))
        res = _form_call(w.srv, path, fields % w.b.topup, dict(form, **headers))
        w.no_leak("POST %s" % path, res[1])
        _problem_eq(res, unknown, "A's callback for B's top-up with %s" % what)
    w.check_b_unchanged("A's forged callbacks")


def r_merchant_payout(w, method, path, scope):
    """Owners only; M1's owner pays out M1's money, also under M2's key and body."""
    m1, m2 = _merchant_route(w, scope, path)
    key, body = w.m2_payout
    _forbidden(w.as_a(method, path, body), "A paying a merchant out")
    _forbidden(call(w.srv, method, path, body, token=w.tokens["merchant"]),
               "a merchant user of no merchant paying out")
    _forbidden(w.as_m1("staff", method, path, body, key=key), "M1's staff paying out")
    w.check_m2_unchanged("M1's staff paying out")
    before = w.client.account(m1.account)["balance"]
    out = expect(w.as_m1("owner", method, path, body, key=key), 201,
                 what="M1's owner pays out (with M2's key and body)")
    check(out["id"] not in m2.ops and out["type"] == "payout" and out["direction"] == "out",
          "M1's payout: %s" % out)
    m1.ops.add(out["id"])
    check_eq(w.client.account(m1.account)["balance"], before - body["amount_minor"],
             "M1's balance after its payout")
    w.check_m2_unchanged("M1 paying out")


# Exchange rates and conversions (test_fx.py covers them in depth). This server offers USD only,
# so conversions are refused before pricing; what matters here is whose quotes and keys work.


def r_fx_rate_write(w, method, path, scope):
    """An admin route: customers and merchant owners get 403 and change no rate."""
    r_staff(w, method, path, scope)
    body = ({"base": "USD", "quote": "EUR", "rate": "1.5"} if path.endswith("/rates")
            else {"text": "USD EUR 1.5\n"})
    before = expect(call(w.srv, "GET", "/v1/rates", token=w.admin.token), 200)
    _forbidden(w.as_a(method, path, body), "A writing rates")
    _forbidden(w.as_m1("owner", method, path, body), "M1's owner writing rates")
    check_eq(expect(call(w.srv, "GET", "/v1/rates", token=w.admin.token), 200), before,
             "the rates after refused writes")


def r_fx_rates_list(w, method, path, scope):
    """The rates are the same for everyone and hold nothing of anyone's."""
    _need_customer(scope, path)
    mine = expect(w.as_a(method, path), 200, what="A reads the rates")
    check(isinstance(mine.get("data"), list), "the rates: %s" % mine)
    for who, token in (("B", w.b.token), ("M1's owner", w.m1.owner.token),
                       ("an auditor", w.tokens["auditor"])):
        check_eq(expect(call(w.srv, method, path, token=token), 200, what=who + " reads rates"),
                 mine, "the rates %s reads" % who)


def r_fx_conversion_quote(w, method, path, scope):
    """A quote prices A's own request only; a currency not on offer and the same currency are
    refused with the field named."""
    _need_customer(scope, path)
    body = {"from_currency": PAY_CURRENCY, "to_currency": "EUR", "amount_minor": 100}
    got = expect(w.as_a(method, path, body), 400, "unknown_currency",
                 "A's conversion quote into a currency not on offer")
    check_eq(got.get("detail"), "to_currency", "the field refused")
    expect(w.as_a(method, path, dict(body, to_currency=PAY_CURRENCY)), 422, "same_account",
           "A's conversion quote into the same currency")
    w.check_b_unchanged("A's conversion quotes")


def r_fx_conversion(w, method, path, scope):
    """B's quote and B's Idempotency-Key get A nothing: they answer A exactly as an unknown
    quote does, and B's quote is still B's afterwards."""
    _need_customer(scope, path)
    srv, b, c = w.srv, w.b, w.c
    bq = expect(call(srv, "POST", "/v1/me/quotes",
                     {"to": c.login, "amount_minor": 10, "currency": PAY_CURRENCY},
                     token=b.token), 200, what="B's quote")["quote_id"]
    w.b_mark(bq)
    b_key = new_key("b-cnv")
    unknown = w.as_a(method, path, {"quote_id": UNKNOWN_QUOTE})
    check(unknown[0] == 422 and unknown[1].get("code") == "quote_expired",
          "A converting with an unknown quote: %d %s" % unknown[:2])
    _problem_eq(w.as_a(method, path, {"quote_id": bq}), unknown, "A converting with B's quote")
    _problem_eq(w.as_a(method, path, {"quote_id": bq}, key=b_key), unknown,
                "A converting with B's quote and key")
    w.check_b_unchanged("A converting with B's quote and key")
    # the quote is still B's: B's send with it goes through (C is a payee B knows by now)
    sent = w.b_own("B sends with its quote", lambda: expect(
        call(srv, "POST", "/v1/me/sends", {"to": c.login, "amount_minor": 10,
                                           "currency": PAY_CURRENCY, "quote_id": bq},
             token=b.token), 201, what="B's send with its quote"))
    b.ops.append(sent["id"])
    w.b_mark(sent["id"])


# History export, statements and settlement reports (test_statements.py covers them in depth):
# A's export and statement hold A's operations and accounts only, B's hold none of A's; M1's
# hold M1's only; M2's payouts answer M1's report requests exactly as unknown ids do.


def _this_month():
    return time.strftime("%Y-%m", time.gmtime())


def _csv_ids(text):
    """The operation ids (second column) of a CSV export."""
    import csv
    import io
    check(isinstance(text, str) and text.startswith("created_at,id,"),
          "not a CSV export: %s" % str(text)[:200])
    return {row[1] for row in list(csv.reader(io.StringIO(text, newline="")))[1:]}


def _accounts_of(w, token):
    return {a["id"] for a in expect(call(w.srv, "GET", "/v1/me/accounts", token=token), 200,
                                    what="accounts")["data"]}


def r_statements_me_export(w, method, path, scope):
    _need_customer(scope, path)
    b_ops = set(w.b.ops)
    for q in ("", "?type=payment", "?currency=" + PAY_CURRENCY, "?from=2000-01-01"):
        ids = _csv_ids(expect(w.as_a(method, path + q), 200, what="A's export" + q))
        check(not ids & b_ops, "A's export%s lists B's operations" % q)
    ids = _csv_ids(expect(w.as_a(method, path), 200, what="A's export"))
    check({w.a.pay_m1, w.a.topup} <= ids, "A's export lacks A's operations: %s" % ids)
    ids = _csv_ids(expect(_others(w, w.b.token, method, path), 200, what="B's export"))
    check(b_ops <= ids and not ids & set(w.a.ops), "B's export: %s" % sorted(ids))
    w.check_b_unchanged("A exporting")


def r_statements_me_statement(w, method, path, scope):
    _need_customer(scope, path)
    url = path.replace("{month}", _this_month())
    got = expect(w.as_a(method, url), 200, what="A's statement")
    check_eq({c["account"] for c in got["currencies"]}, _accounts_of(w, w.a.token),
             "the accounts of A's statement")
    listed = {o["id"] for c in got["currencies"] for o in c["operations"] + c["pending"]}
    check({w.a.pay_m1, w.a.topup} <= listed and not listed & set(w.b.ops),
          "A's statement lists %s" % sorted(listed))
    got = expect(_others(w, w.b.token, method, url), 200, what="B's statement")
    check_eq({c["account"] for c in got["currencies"]}, _accounts_of(w, w.b.token),
             "the accounts of B's statement")
    bad = w.as_a(method, path.replace("{month}", "2026-13"))
    check(bad[0] == 400 and bad[1].get("detail") == "month", "a bad month: %d %s" % bad[:2])
    w.check_b_unchanged("A reading statements")


def r_statements_merchant_export(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    _forbidden(w.as_a(method, path), "A exporting a merchant's history")
    _forbidden(call(w.srv, method, path, token=w.tokens["merchant"]),
               "a merchant user of no merchant")
    for who in ("owner", "staff"):
        for q in ("", "?type=payment", "?currency=" + PAY_CURRENCY):
            ids = _csv_ids(expect(w.as_m1(who, method, path + q), 200,
                                  what="M1's %s exports%s" % (who, q)))
            check(not ids & m2.ops, "M1's export lists M2's operations")
            check(w.a.pay_m1 in ids, "M1's export lacks A's payment to M1: %s" % ids)
    ids = _csv_ids(expect(call(w.srv, method, path, token=m2.owner.token), 200))
    check(m2.ops <= ids and w.a.pay_m1 not in ids, "M2's export: %s" % sorted(ids))
    w.check_m2_unchanged("M1 exporting")


def r_statements_merchant_statement(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    url = path.replace("{month}", _this_month())
    _forbidden(w.as_a(method, url), "A reading a merchant's statement")
    _forbidden(call(w.srv, method, url, token=w.tokens["merchant"]),
               "a merchant user of no merchant")
    for who in ("owner", "staff"):
        got = expect(w.as_m1(who, method, url), 200, what="M1's %s reads M1's statement" % who)
        check_eq([c["account"] for c in got["currencies"]], [m1.account], "M1's account only")
        ops = {o["id"] for c in got["currencies"] for o in c["operations"] + c["pending"]}
        check(w.a.pay_m1 in ops and not ops & m2.ops, "M1's statement lists %s" % sorted(ops))
    got = expect(call(w.srv, method, url, token=m2.owner.token), 200)
    check_eq([c["account"] for c in got["currencies"]], [m2.account], "M2's account only")
    w.check_m2_unchanged("M1 reading statements")


def r_statements_payout_report(w, method, path, scope):
    """M2's payout (and any id that is not M1's payout) answers M1 as an unknown id; M1's own
    payout's report is M1's."""
    m1, m2 = _merchant_route(w, scope, path)
    unknown_id = {"payouts": "pyo_00000000ZZZZZ"}
    for ids in (w.b_ids, unknown_id):
        _forbidden(w.as_a(method, fill(path, ids)), "A reading a settlement report")
    _forbidden(call(w.srv, method, fill(path, unknown_id), token=w.tokens["merchant"]),
               "a merchant user of no merchant")
    mine = expect(w.as_m1("owner", "POST", "/v1/merchant/payouts", {"amount_minor": 10}), 201,
                  what="M1's own payout")
    m1.ops.add(mine["id"])
    for who in ("owner", "staff"):
        unknown = w.as_m1(who, method, fill(path, unknown_id))
        check(unknown[0] == 404 and unknown[1].get("code") == "not_found",
              "M1's %s reading an unknown payout's report: %d %s" % ((who,) + unknown[:2]))
        for what, pid in [("M2's operation %s" % op, op) for op in sorted(m2.ops)] + [
                ("A's payment", w.a.pay_m1), ("B's top-up", w.b.topup), ("pyo_x", "pyo_x")]:
            _problem_eq(w.as_m1(who, method, fill(path, {"payouts": pid})), unknown,
                        "M1's %s reading the report of %s" % (who, what))
        got = expect(w.as_m1(who, method, fill(path, {"payouts": mine["id"]})), 200,
                     what="M1's %s reads M1's report" % who)
        check_eq((got["payout"]["id"], got["payout_minor"]), (mine["id"], 10), "M1's report")
    m2_payout = w.b_ids["payouts"]
    got = expect(call(w.srv, method, fill(path, {"payouts": m2_payout}), token=m2.owner.token),
                 200, what="M2 reads its own report")
    check_eq(got["payout"]["id"], m2_payout, "M2's report")
    w.check_m2_unchanged("M1 reading settlement reports")
    w.check_b_unchanged("A and M1 reading settlement reports")


# Payment requests (test_requests.py covers them in depth). B asked C for money and C asked B;
# A is a party to neither: B's request ids answer A exactly as unknown ones, on every route, show
# in none of A's lists, and B's requests are unchanged afterwards. A's own requests work for A.

UNKNOWN["requests"] = "req_00000000ZZZZZ"


def _ask(w, who, frm, amount, note=None):
    body = {"from": frm.login, "amount_minor": amount, "currency": PAY_CURRENCY}
    if note:
        body["note"] = note
    return expect(call(w.srv, "POST", "/v1/me/requests", body, token=who.token), 201,
                  what="a payment request")["id"]


def requests_setup(w):
    """B's requests (B asks C; C asks B) and A's (A asks C; C asks A twice), made once."""
    w.b_req_out = _ask(w, w.b, w.c, 300, note="b-req-" + _run)
    w.b_req_in = _ask(w, w.c, w.b, 200)
    w.a_req_out = _ask(w, w.a, w.c, 310)
    w.a_req_in = [_ask(w, w.c, w.a, 120), _ask(w, w.c, w.a, 130)]
    w.b_ids["requests"] = w.b_req_out
    w.b_mark(w.b_req_out, w.b_req_in, "b-req-" + _run)


def _b_requests(w):
    """B's two requests as B sees them."""
    return [expect(call(w.srv, "GET", "/v1/me/requests/" + r, token=w.b.token), 200,
                   what="B reads its request")
            for r in (w.b_req_out, w.b_req_in)]


def _b_requests_pending(w, what):
    got = _b_requests(w)
    check_eq([r["status"] for r in got], ["pending", "pending"], "B's requests after " + what)


def r_requests_create(w, method, path, scope):
    """A asking B shows B's masked name only; B's ids are no one to ask."""
    _need_customer(scope, path)
    body = {"amount_minor": 5, "currency": PAY_CURRENCY}
    made = expect(w.as_a(method, path, dict(body, **{"from": w.b.handle})), 201,
                  what="A asks B")
    check_eq(made["payer"], {"name": "B*** B."}, "B as A's request shows B")
    unknown = w.as_a(method, path, dict(body, **{"from": email("nobody-asked")}))
    check(unknown[0] == 404 and unknown[1].get("code") == "recipient_not_found",
          "a request of nobody: %d %s" % unknown[:2])
    for what, frm in (("B's user id", w.b.user_id), ("B's account", w.b.usd),
                      ("B's request", w.b_req_out)):
        _problem_eq(w.as_a(method, path, dict(body, **{"from": frm})), unknown,
                    "A asking %s" % what)
    w.check_b_unchanged("A's requests")


def r_requests_split(w, method, path, scope):
    _need_customer(scope, path)
    made = expect(w.as_a(method, path, {"participants": [w.c.login, w.b.handle],
                                        "total_minor": 9, "currency": PAY_CURRENCY}), 201,
                  what="A splits with C and B")
    check_eq([r["amount_minor"] for r in made["requests"]], [5, 4], "the shares")
    unknown = w.as_a(method, path, {"participants": [email("nobody-split")], "total_minor": 9,
                                    "currency": PAY_CURRENCY})
    _problem_eq(w.as_a(method, path, {"participants": [w.b.user_id], "total_minor": 9,
                                      "currency": PAY_CURRENCY}), unknown,
                "A splitting with B's user id")
    w.check_b_unchanged("A's split")


def r_requests_list(w, method, path, scope):
    _need_customer(scope, path)
    mine = set()
    for q in ("", "?direction=incoming", "?direction=outgoing&status=pending"):
        mine |= _ids(expect(w.as_a(method, path + q), 200, what="A's requests " + q)["data"])
    check({w.a_req_out, *w.a_req_in} <= mine, "A's own requests are listed: %s" % mine)
    check(not {w.b_req_out, w.b_req_in} & mine, "B's requests in A's list")
    b_list = _ids(expect(call(w.srv, method, path, token=w.b.token), 200)["data"])
    check({w.b_req_out, w.b_req_in} <= b_list and not {w.a_req_out, *w.a_req_in} & b_list,
          "B's list holds B's requests only")


def r_requests_get(w, method, path, scope):
    foreign_id(w, method, path, scope, "not_found")
    foreign_id_of(w, method, path, w.b_req_in)
    body = own_id_ok(w, method, path, {"requests": w.a_req_out})
    check_eq((body["id"], body["direction"]), (w.a_req_out, "outgoing"), "A's own request")


def foreign_id_of(w, method, path, req_id, body=None):
    """B's request req_id answers A exactly as an unknown one."""
    unknown = w.as_a(method, fill(path, UNKNOWN), body)
    _problem_eq(w.as_a(method, fill(path, {"requests": req_id}), body), unknown,
                "A %s %s with B's request %s" % (method, path, req_id))


def r_requests_pay(w, method, path, scope):
    """A cannot pay (so cannot mark paid) B's requests; A pays a request made of A."""
    foreign_id(w, method, path, scope, "not_found")
    foreign_id_of(w, method, path, w.b_req_in)
    _b_requests_pending(w, "A paying them")
    sent = expect(w.as_a(method, fill(path, {"requests": w.a_req_in[0]})), 201,
                  what="A pays C's request")
    check_eq((sent["type"], sent["reference"], sent["counterparty"]),
             ("send", w.a_req_in[0], w.c.user_id), "A's payment")
    w.a.ops.append(sent["id"])
    w.check_b_unchanged("A paying B's requests")


def r_requests_decline(w, method, path, scope):
    foreign_id(w, method, path, scope, "not_found")
    foreign_id_of(w, method, path, w.b_req_in)
    _b_requests_pending(w, "A declining them")
    got = expect(w.as_a(method, fill(path, {"requests": w.a_req_in[1]})), 200,
                 what="A declines C's request")
    check_eq(got["status"], "declined", "A's decline")


def r_requests_cancel(w, method, path, scope):
    foreign_id(w, method, path, scope, "not_found")
    foreign_id_of(w, method, path, w.b_req_in)
    _b_requests_pending(w, "A cancelling them")
    got = expect(w.as_a(method, fill(path, {"requests": w.a_req_out})), 200,
                 what="A cancels A's request")
    check_eq(got["status"], "cancelled", "A's cancel")


# Reconciliation: a staff route over every party's gateway operations (test_reconcile.py covers it
# in depth).


def r_reconcile(w, method, path, scope):
    """Admins and auditors only: A and M1's owner naming B's top-up and M2's payout get 403 and
    learn nothing; the staff who may call it see operations, amounts and gateway references, and
    never a customer's or a merchant's login, name or user id."""
    r_staff(w, method, path, scope)
    check_eq(set(scope), {"admin", "auditor"}, "scope of %s" % path)
    _m1, m2 = w.merchants()
    payout = w.b_ids["payouts"]
    listed = expect(call(w.srv, "GET", "/v1/merchant/activity?type=payout",
                         token=m2.owner.token), 200)["data"]
    payout_ref = [o for o in listed if o["id"] == payout][0]["gateway_reference"]
    body = {"csv": "reference,op_id,type,amount_minor,currency,status\n"
                   "%s,%s,charge,700,%s,settled\n"
                   "%s,%s,payout,50,%s,settled\n"
                   % (w.b_topup_ref, w.b.topup, PAY_CURRENCY, payout_ref, payout, PAY_CURRENCY)}
    _forbidden(w.as_a(method, path, body), "A reconciling B's top-up")
    _forbidden(w.as_m1("owner", method, path, body), "M1's owner reconciling M2's payout")
    for role in ("admin", "auditor"):
        got = expect(call(w.srv, method, path, body, token=w.tokens[role]), 200,
                     what="%s reconciling" % role)
        named = {m.get("op_id"): m for m in got["mismatches"] if "line" in m}
        check_eq(sorted(named), [w.b.topup], "%s: only B's top-up (still waiting) differs" % role)
        check_eq((named[w.b.topup]["kind"], named[w.b.topup]["coffer_status"]),
                 ("status_differs", "action_required"), "B's top-up as %s sees it" % role)
        text = json.dumps(got)
        for mark in [w.b.user_id, w.b.login, w.b.name] + m2.marks():
            check(mark not in text, "%s's answer names %r" % (role, mark))
    w.check_b_unchanged("reconciling B's top-up")
    w.check_m2_unchanged("reconciling M2's payout")


# Customer-presented payment codes (test_paycode.py covers them in depth). D, a customer who is
# no party to anything else, has two devices; M2 charged D's code and holds part of D's wallet;
# M1 holds D's money twice. A's requests with D's device number, D's verification, or M2's
# hold, charge and Idempotency-Keys answer as unknown ones and change nothing; M1's users see
# and move M1's holds only. A has no step-up left for a device of its own: its positive paths
# are in test_paycode.py.

UNKNOWN["devices"] = "999999999"
UNKNOWN["holds"] = "hld_00000000ZZZZZ"
DUMMY_PAYCODE = "280000000011234567"  # well formed; refused before it is looked at


def _paycode(secret, device, step):
    """The code of a device at a step, computed as src/crypto/paycode.c does."""
    import hashlib
    import hmac
    import struct
    msg = b"coffer.paycode.v1" + struct.pack(">Q", device) + struct.pack(">Q", step)
    mac = hmac.new(secret, msg, hashlib.sha256).digest()
    off = mac[31] & 0x0F
    return "28%09d%07d" % (device, (int.from_bytes(mac[off:off + 4], "big") & 0x7FFFFFFF)
                           % 10 ** 7)


def _paycode_device(w, person):
    import base64
    v = w.verification(person, "paycode_device")
    got = expect(call(w.srv, "POST", "/v1/me/paycode/devices", {"label": "D's phone",
                                                                "verification": v},
                      token=person.token), 201, what="D registers a device")
    secret = base64.b32decode(got["secret"] + "=" * (-len(got["secret"]) % 8))
    return {"number": got["device_number"], "secret": secret, "last": 0}


def paycode_code(w):
    """A fresh code of one of D's devices: a step in the server's window, after the device's
    last used one (waiting for the next step when every device used the window up)."""
    while True:
        now = int(time.time()) // 30
        for dev in w.d_devices:
            step = max(dev["last"] + 1, now - 1)
            if step <= now + 1:
                dev["last"] = step
                return _paycode(dev["secret"], dev["number"], step)
        time.sleep(30 - time.time() % 30 + 0.1)


def paycode_setup(w):
    """D with two devices and a funded USD wallet; M2's charge and hold of D's money; M1's two
    holds (captured and released by the checks)."""
    srv = w.srv
    m1, m2 = w.merchants()
    w.d = w.person("dora", "Dorothea Devicewright")
    usd = expect(call(srv, "POST", "/v1/me/accounts", {"currency": PAY_CURRENCY},
                      token=w.d.token), 201, what="D's USD wallet")["id"]
    harness.fund(w.client, harness.make_source(w.client, PAY_CURRENCY)["id"], usd, 20000,
                 PAY_CURRENCY)
    w.d_devices = [_paycode_device(w, w.d), _paycode_device(w, w.d)]
    w.d_verification = w.verification(w.d, "paycode_device")  # spent by r_paycode_device_add
    w.m2_charge = (new_key("m2-chg"), {"code": paycode_code(w), "amount_minor": 150})
    w.m2_charge_id = expect(call(srv, "POST", "/v1/merchant/paycode-charges", w.m2_charge[1],
                                 token=m2.owner.token, key=w.m2_charge[0]), 201,
                            what="M2 charges D's code")["id"]
    w.m2_hold = (new_key("m2-hld"), {"code": paycode_code(w), "amount_minor": 900})
    w.m2_hold_id = expect(call(srv, "POST", "/v1/merchant/holds", w.m2_hold[1],
                               token=m2.owner.token, key=w.m2_hold[0]), 201,
                          what="M2 holds D's money")["id"]
    w.m1_holds = [expect(call(srv, "POST", "/v1/merchant/holds",
                              {"code": paycode_code(w), "amount_minor": 700},
                              token=m1.staff.token, key=new_key("m1-hld")), 201,
                         what="M1 holds D's money")["id"] for _ in range(2)]
    w.b_ids["devices"] = str(w.d_devices[0]["number"])
    w.b_ids["holds"] = w.m2_hold_id
    w.m2_marks += [w.m2_charge_id, w.m2_hold_id]
    w.m2_before = m2.state(srv)


def _m2_paycode_state(w):
    """M2's hold and charge as M2 sees them: A and M1 must not change them."""
    m2 = w.m2
    hold = expect(call(w.srv, "GET", "/v1/merchant/holds/" + w.m2_hold_id,
                       token=m2.owner.token), 200, what="M2 reads its hold")
    acts = expect(call(w.srv, "GET", "/v1/merchant/activity?limit=100", token=m2.owner.token),
                  200, what="M2's activity")["data"]
    charge = [(o["status"], o["amount_minor"]) for o in acts if o["id"] == w.m2_charge_id]
    return (hold["state"], hold["amount_minor"], hold["held_minor"], charge)


def _d_devices(w):
    return expect(call(w.srv, "GET", "/v1/me/paycode/devices", token=w.d.token), 200,
                  what="D's devices")["data"]


def r_paycode_device_add(w, method, path, scope):
    """D's verification makes no device for A, and still makes D's own afterwards."""
    _need_customer(scope, path)
    before = _d_devices(w)
    expect(w.as_a(method, path, {"label": "A's phone"}), 403, "step_up_required",
           "A's device without a step-up")
    expect(w.as_a(method, path, {"label": "A's phone", "verification": w.d_verification}), 422,
           "invalid_code", "A's device with D's verification")
    check_eq(_d_devices(w), before, "D's devices after A's attempts")
    check_eq(expect(w.as_a("GET", path), 200)["data"], [], "A has no devices")
    made = expect(call(w.srv, method, path, {"label": "D's watch",
                                             "verification": w.d_verification},
                       token=w.d.token), 201, what="D's verification, used by D")
    check_eq(len(_d_devices(w)), len(before) + 1, "D's new device")
    check("secret" in made, "the secret, shown once")
    w.check_b_unchanged("A's device attempts")


def r_paycode_devices(w, method, path, scope):
    _need_customer(scope, path)
    got = expect(w.as_a(method, path), 200, what="A's devices")["data"]
    check_eq(got, [], "A's devices")
    numbers = {d["device_number"] for d in _d_devices(w)}
    check({dev["number"] for dev in w.d_devices} <= numbers, "D's devices: %s" % numbers)
    check(all("secret" not in d for d in _d_devices(w)), "a listing shows no secret")


def r_paycode_device_revoke(w, method, path, scope):
    """D's device answers A exactly as an unknown one, and stays active."""
    _need_customer(scope, path)
    unknown = w.as_a(method, fill(path, UNKNOWN), {})
    check(unknown[0] == 404 and unknown[1].get("code") == "not_found",
          "A revoking an unknown device: %d %s" % unknown[:2])
    for dev in w.d_devices:
        _problem_eq(w.as_a(method, fill(path, {"devices": str(dev["number"])}), {}), unknown,
                    "A revoking D's device")
    for bad in ("0", "x", "-1", "0001x", "1000000000", w.b.user_id):
        st, body, _h = w.as_a(method, fill(path, {"devices": bad}), {})
        check(st == 404, "A revoking device %r: expected 404, got %d %s" % (bad, st, body))
    check(all(d["status"] == "active" for d in _d_devices(w)), "D's devices stay active")
    w.check_b_unchanged("A revoking devices")


def r_paycode_current(w, method, path, scope):
    """D's device's current code answers A exactly as an unknown device's; D gets it."""
    _need_customer(scope, path)
    unknown = w.as_a(method, path + "?device=" + UNKNOWN["devices"])
    check(unknown[0] == 404 and unknown[1].get("code") == "not_found",
          "A's code of an unknown device: %d %s" % unknown[:2])
    dev = w.d_devices[0]
    _problem_eq(w.as_a(method, path + "?device=%d" % dev["number"]), unknown,
                "A asking D's device's code")
    got = expect(call(w.srv, method, path + "?device=%d" % dev["number"], token=w.d.token), 200,
                 what="D's current code")
    check_eq(got["code"], _paycode(dev["secret"], dev["number"], got["step"]), "D's code")


def _paycode_merchant_refusals(w, method, path, body):
    _forbidden(w.as_a(method, path, body), "A on %s" % path)
    _forbidden(call(w.srv, method, path, body, token=w.tokens["merchant"], key=new_key()),
               "a merchant user of no merchant on %s" % path)


def r_paycode_charge(w, method, path, scope):
    """M2's key and request get M1 no charge (the code is used, and the key is M1's own)."""
    m1, m2 = _merchant_route(w, scope, path)
    before = _m2_paycode_state(w)
    _paycode_merchant_refusals(w, method, path, {"code": DUMMY_PAYCODE, "amount_minor": 1})
    key, body = w.m2_charge
    expect(w.as_m1("owner", method, path, body, key=key), 422, "invalid_paycode",
           "M1 replaying M2's charge")
    got = expect(w.as_m1("staff", method, path, {"code": paycode_code(w), "amount_minor": 40}),
                 201, what="M1 charges D's code")
    check_eq((got["type"], got["counterparty"], got["amount_minor"]),
             ("payment", w.d.user_id, 40), "M1's charge")
    m1.ops.add(got["id"])
    check_eq(_m2_paycode_state(w), before, "M2's hold and charge")
    w.check_m2_unchanged("M1 charging codes")


def r_paycode_hold_create(w, method, path, scope):
    """M2's hold request, replayed by M1, holds nothing."""
    m1, m2 = _merchant_route(w, scope, path)
    before = _m2_paycode_state(w)
    _paycode_merchant_refusals(w, method, path, {"code": DUMMY_PAYCODE, "amount_minor": 1})
    key, body = w.m2_hold
    expect(w.as_m1("owner", method, path, body, key=key), 422, "invalid_paycode",
           "M1 replaying M2's hold")
    check_eq(_m2_paycode_state(w), before, "M2's hold and charge")
    w.check_m2_unchanged("M1 placing holds")


def _paycode_m1_foreign(w, method, path, body=None):
    """M2's hold, M2's charge, M1's own charge-like ids and malformed ids answer M1's users as
    an unknown hold."""
    for who in ("owner", "staff"):
        unknown = w.as_m1(who, method, fill(path, UNKNOWN), body)
        check(unknown[0] == 404 and unknown[1].get("code") == "not_found",
              "M1's %s on an unknown hold: %d %s" % ((who,) + unknown[:2]))
        for what, hid in (("M2's hold", w.m2_hold_id), ("M2's charge", w.m2_charge_id),
                          ("A's payment to M1", w.a.pay_m1), ("a malformed id", "hld_x")):
            _problem_eq(w.as_m1(who, method, fill(path, {"holds": hid}), body), unknown,
                        "M1's %s on %s" % (who, what))


def r_paycode_hold_get(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    _paycode_merchant_refusals(w, method, fill(path, {"holds": w.m2_hold_id}), None)
    _paycode_m1_foreign(w, method, path)
    for who in ("owner", "staff"):
        got = expect(w.as_m1(who, method, fill(path, {"holds": w.m1_holds[0]})), 200,
                     what="M1's %s reads M1's hold" % who)
        check_eq((got["state"], got["counterparty"]), ("held", w.d.user_id), "M1's hold")
    w.check_m2_unchanged("M1 reading holds")


def r_paycode_hold_capture(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    before = _m2_paycode_state(w)
    _paycode_merchant_refusals(w, method, fill(path, {"holds": w.m2_hold_id}), {})
    _paycode_m1_foreign(w, method, path, {"amount_minor": 100})
    check_eq(_m2_paycode_state(w), before, "M2's hold after M1's captures")
    got = expect(w.as_m1("staff", method, fill(path, {"holds": w.m1_holds[0]}),
                         {"amount_minor": 500}), 200, what="M1 captures its hold")
    check_eq((got["state"], got["captured_minor"]), ("captured", 500), "M1's capture")
    m1.ops.add(w.m1_holds[0])
    w.check_m2_unchanged("M1 capturing holds")


def r_paycode_hold_release(w, method, path, scope):
    m1, m2 = _merchant_route(w, scope, path)
    before = _m2_paycode_state(w)
    _paycode_merchant_refusals(w, method, fill(path, {"holds": w.m2_hold_id}), {})
    _paycode_m1_foreign(w, method, path, {})
    check_eq(_m2_paycode_state(w), before, "M2's hold after M1's releases")
    got = expect(w.as_m1("owner", method, fill(path, {"holds": w.m1_holds[1]}), {}), 200,
                 what="M1 releases its hold")
    check_eq(got["state"], "released", "M1's release")
    w.check_m2_unchanged("M1 releasing holds")


# Account freezes (test_freeze.py covers them in depth). Staff routes: customers and merchants get
# 403 with B's id or an unknown one and freeze nothing; support and auditors read but do not
# write; a freeze (of C, undone at once) and a read work for the staff who may.

UNKNOWN["parties"] = "usr_00000000ZZZZZ"


def risk_freeze_setup(w):
    w.b_ids["parties"] = w.b.user_id


def _risk_freeze_state(w, party):
    got = expect(call(w.srv, "GET", "/v1/risk/parties/%s/freeze" % party,
                      token=w.tokens["risk"]), 200, what="a freeze view")
    return got["frozen"], len(got["history"])


def _risk_freeze_refusals(w, method, path):
    _staff_only(w, method, path, {"reason": "access check"} if method == "POST" else None)


def r_risk_freeze_write(w, method, path, scope):
    """Risk and admin only: A, M1's owner, support and auditors freeze or unfreeze nothing of
    B's; risk freezes C and unfreezes C again."""
    check_eq(set(scope), {"risk", "admin"}, "scope of %s" % path)
    before = _risk_freeze_state(w, w.b.user_id)
    _risk_freeze_refusals(w, method, path)
    for role in ("support", "auditor"):
        _forbidden(call(w.srv, method, fill(path, w.b_ids), {"reason": "access check"},
                        token=w.tokens[role]), "%s on %s" % (role, path))
    check_eq(_risk_freeze_state(w, w.b.user_id), before, "B's freeze state")
    c = "/v1/risk/parties/%s/" % w.c.user_id
    expect(call(w.srv, "POST", c + "freeze", {"reason": "access check"}, token=w.tokens["risk"]),
           200, what="risk freezes C")
    expect(call(w.srv, "POST", c + "unfreeze", {"reason": "access check done"},
                token=w.tokens["risk"]), 200, what="risk unfreezes C")
    expect(call(w.srv, method, fill(path, UNKNOWN), {"reason": "access check"},
                token=w.tokens["risk"]), 404, "not_found", "risk on an unknown party")
    w.check_b_unchanged("freezes tried on B")


def r_risk_freeze_read(w, method, path, scope):
    """Staff read (B's freeze view, the list); A and M1's owner get 403."""
    check_eq(set(scope), {"support", "risk", "admin", "auditor"}, "scope of %s" % path)
    _risk_freeze_refusals(w, method, path)
    for role in ("support", "risk", "admin", "auditor"):
        expect(call(w.srv, method, fill(path, w.b_ids), token=w.tokens[role]), 200,
               what="%s reading %s" % (role, path))
    if "{id}" in path:
        expect(call(w.srv, method, fill(path, UNKNOWN), token=w.tokens["risk"]), 404,
               "not_found", "an unknown party's freeze")
    w.check_b_unchanged("reading freezes")


# Risk cases (test_cases.py covers them in depth). E sends F 10,000.00 USD, a large transaction
# by the default thresholds, and the sweep opens E's case; no case is B's (customers never see
# cases). Customers and merchants get 403 on every case route with E's case id or an unknown
# one; support and auditors read but do not write; risk reads, writes and decides last.

UNKNOWN["cases"] = "cas_00000000ZZZZZ"


def cases_setup(w):
    srv, risk = w.srv, w.tokens["risk"]
    e, f = w.person("erin", "Erin Large"), w.person("fred", "Fred Receiver")
    usd = expect(call(srv, "POST", "/v1/me/accounts", {"currency": "USD"}, token=e.token), 201,
                 what="E's USD wallet")["id"]
    harness.fund(w.client, harness.make_source(w.client, "USD")["id"], usd, 1000100, "USD")
    w.e_ops = []
    for amount in (1000000, 100):
        v = w.verification(e, "send", amount_minor=amount, currency="USD", payee=f.login)
        w.e_ops.append(expect(call(srv, "POST", "/v1/me/sends",
                                   {"to": f.login, "amount_minor": amount, "currency": "USD",
                                    "verification": v}, token=e.token, key=new_key("snd")),
                              201, what="E's send")["id"])
    expect(call(srv, "POST", "/v1/risk/aml/sweep", None, token=risk), 200, what="sweep")
    q = "/v1/risk/cases?subject=%s&scenario=large_transaction" % e.user_id
    found = expect(call(srv, "GET", q, token=risk), 200, what="E's cases")["data"]
    check_eq(len(found), 1, "E's large send opened one case")
    w.b_ids["cases"] = found[0]["id"]


def r_cases_read(w, method, path, scope):
    """Staff read the case, its report and the list; customers and merchants get 403; an
    unknown case 404."""
    check_eq(set(scope), {"support", "risk", "admin", "auditor"}, "scope of %s" % path)
    _staff_only(w, method, path)
    for role in ("support", "risk", "admin", "auditor"):
        expect(call(w.srv, method, fill(path, w.b_ids), token=w.tokens[role]), 200,
               what="%s reading %s" % (role, path))
    if "{id}" in path:
        expect(call(w.srv, method, fill(path, UNKNOWN), token=w.tokens["risk"]), 404,
               "not_found", "an unknown case")
    w.check_b_unchanged("reading cases")


_CASE_WRITES = {"assign": (lambda w: {"assignee": w.admin.user_id}, 200),
                "notes": (lambda w: {"text": "access check"}, 201),
                "evidence": (lambda w: {"operation_id": w.e_ops[1]}, 201),
                "decision": (lambda w: {"decision": "clear", "reason": "access check"}, 200)}


def r_cases_write(w, method, path, scope):
    """Risk and admin only; the write works for risk on E's case, an unknown case is 404."""
    check_eq(set(scope), {"risk", "admin"}, "scope of %s" % path)
    body, status = _CASE_WRITES[path.rsplit("/", 1)[1]]
    _staff_only(w, method, path, body(w), ("support", "auditor"))
    expect(call(w.srv, method, fill(path, UNKNOWN), body(w), token=w.tokens["risk"],
                key=new_key("case")), 404, "not_found", "an unknown case")
    expect(call(w.srv, method, fill(path, w.b_ids), body(w), token=w.tokens["risk"],
                key=new_key("case")), status, what="risk on %s" % path)
    w.check_b_unchanged("case writes")


def r_cases_sweep(w, method, path, scope):
    check_eq(set(scope), {"risk", "admin"}, "scope of %s" % path)
    _staff_only(w, method, path, None, ("support", "auditor"))
    got = expect(call(w.srv, method, path, token=w.tokens["risk"]), 200, what="sweep")
    check_eq(got["subjects_skipped"], 0, "the sweep scanned everyone")
    w.check_b_unchanged("sweeps")


# Monitoring rules and decisions (test_rules.py covers them in depth). Staff routes: customers
# and merchants get 403 with B's ids or unknown ones; support and auditors read but do not write;
# risk and admin write. B's payment to M2 was scored, so its decision is B's id for the decision
# detail; the rule made here never matches (amount_minor < 0), so it changes no payment.

UNKNOWN["rules"] = "no_such_rule_zz"
UNKNOWN["decisions"] = "pay_00000000ZZZZZ"


def rules_setup(w):
    w.b_ids["rules"] = "access_rule_%s" % _run
    expect(call(w.srv, "POST", "/v1/risk/rules",
                {"id": w.b_ids["rules"], "condition": "amount_minor < 0", "action": "allow",
                 "reason": "never"}, token=w.tokens["risk"], key=new_key("rule")), 201,
           what="the access check's rule")
    w.b_ids["decisions"] = w.b.pay_m2


def _rules_state(w):
    got = expect(call(w.srv, "GET", "/v1/risk/rules/" + w.b_ids["rules"], token=w.tokens["risk"]),
                 200, what="the access rule")
    return got["rule"], len(got["history"])


_RULE_BODY = {"condition": "amount_minor < 0", "action": "allow", "reason": "never"}


def _rules_body(path):
    if path == "/v1/risk/rules":
        return dict(_RULE_BODY, id="access_tmp_%s" % _run)
    if path.endswith("/dry-run"):
        return {"condition": "payee_new", "action": "review"}
    return None if path.endswith("/delete") else dict(_RULE_BODY)


def r_rules_read(w, method, path, scope):
    """Staff read the rules, the features, the decisions and B's decision; customers and
    merchants get 403; an unknown rule or operation 404."""
    check_eq(set(scope), {"support", "risk", "admin", "auditor"}, "scope of %s" % path)
    _staff_only(w, method, path, key_tag="rule")
    for role in ("support", "risk", "admin", "auditor"):
        expect(call(w.srv, method, fill(path, w.b_ids), token=w.tokens[role]), 200,
               what="%s reading %s" % (role, path))
    if "{id}" in path:
        expect(call(w.srv, method, fill(path, UNKNOWN), token=w.tokens["risk"]), 404,
               "not_found", "an unknown one on %s" % path)
    w.check_b_unchanged("reading rules and decisions")


def r_rules_write(w, method, path, scope):
    """Risk and admin only: A, M1's owner, support and auditors change no rule; risk's writes
    work (a temporary rule is made and deleted); an unknown rule is 404."""
    check_eq(set(scope), {"risk", "admin"}, "scope of %s" % path)
    body = _rules_body(path)
    before = _rules_state(w)
    _staff_only(w, method, path, body, ("support", "auditor"), "rule")
    check_eq(_rules_state(w), before, "the rule after the refusals")
    risk = w.tokens["risk"]
    if "{id}" in path:
        expect(call(w.srv, method, fill(path, UNKNOWN), body, token=risk, key=new_key("rule")),
               404, "not_found", "risk on an unknown rule")
        tmp = "access_tmp_%s" % _run
        expect(call(w.srv, "POST", "/v1/risk/rules", dict(_RULE_BODY, id=tmp), token=risk,
                    key=new_key("rule")), 201, what="a temporary rule")
        expect(call(w.srv, method, fill(path, {"rules": tmp}), body, token=risk,
                    key=new_key("rule")), 200, what="risk on %s" % path)
        if not path.endswith("/delete"):
            expect(call(w.srv, "POST", "/v1/risk/rules/%s/delete" % tmp, None, token=risk,
                        key=new_key("rule")), 200, what="the temporary rule deleted")
    elif path.endswith("/dry-run"):
        expect(call(w.srv, method, path, body, token=risk), 200, what="risk's dry run")
    else:
        expect(call(w.srv, method, path, body, token=risk, key=new_key("rule")), 201,
               what="risk creates a rule")
        expect(call(w.srv, "POST", "/v1/risk/rules/%s/delete" % body["id"], None, token=risk,
                    key=new_key("rule")), 200, what="and deletes it")
    w.check_b_unchanged("rule writes")


# --- routes: reviews. An analyst's decision on a movement monitoring held: risk and admin only;
# an operation not under review (B's payment) answers as an unknown one, and nothing changes.

UNKNOWN["reviews"] = "snd_00000000ZZZZZ"


def r_risk_review(w, method, path, scope):
    """Risk and admin decide; A, M1's owner, support and auditors get 403; B's payment, which
    is not under review, answers 404 like an unknown operation and stays as it was."""
    check_eq(set(scope), {"risk", "admin"}, "scope of %s" % path)
    body = {"decision": "decline", "reason": "access check"}
    _staff_only(w, method, path, body, ("support", "auditor"))
    for ids in (w.b_ids, UNKNOWN):
        expect(call(w.srv, method, fill(path, ids), body, token=w.tokens["risk"],
                    key=new_key("rev")), 404, "not_found", "risk on an operation not under review")
    w.check_b_unchanged("review decisions tried on B's payment")


# --- routes: kyc. The customer routes name no one else: A's answers are A's own and hold nothing
# of B's (B has a pending submission, A a draft). Staff routes: customers and merchants get 403
# with B's id or an unknown one; a document of B's under A's id answers 404 like an unknown one;
# support reads, risk decides (A's submission), and B's submission stays as it was.

UNKNOWN["kyc"] = "usr_00000000ZZZZZ"
KYC_B_NUMBER = "BNUM77ZZQ1"


def _kyc_b64(tag):
    import base64
    return base64.b64encode(b"\xff\xd8\xff\xe0" + tag.encode() * 8).decode()


def kyc_setup(w):
    """B's details (an ID number and legal name only B has), passport and pending submission;
    A's draft (details and a passport)."""
    for p, number, name in ((w.b, KYC_B_NUMBER, "Barnabas Quigglesworth"),
                            (w.a, "AN0MBER42", "Alyssa Aardvark")):
        expect(call(w.srv, "POST", "/v1/me/kyc/details",
                    {"legal_name": name, "id_type": "passport", "id_number": number,
                     "date_of_birth": "1990-01-31", "country": "GB"}, token=p.token), 200,
               what="KYC details")
        expect(call(w.srv, "POST", "/v1/me/kyc/documents",
                    {"kind": "passport", "content_type": "image/jpeg",
                     "content": _kyc_b64(p.user_id)}, token=p.token), 201, what="a passport")
    got = expect(call(w.srv, "POST", "/v1/me/kyc/submit", {}, token=w.b.token), 200,
                 what="B submits")
    w.kyc_b_sub = got["submission"]["id"]
    w.kyc_b_doc = got["submission"]["documents"][0]["id"]
    w.b_ids["kyc"] = w.b.user_id
    w.b_marks += [KYC_B_NUMBER, "Quigglesworth", w.kyc_b_sub, w.kyc_b_doc]
    w.kyc_b_before = _kyc_b_view(w)


def _kyc_b_view(w):
    got = expect(call(w.srv, "GET", "/v1/risk/kyc/" + w.b.user_id, token=w.tokens["risk"]), 200,
                 what="B's KYC record")
    return got["tier"], got["state"], got["current"]["id"], got["current"]["documents_n"]


def _kyc_b_unchanged(w, what):
    check_eq(_kyc_b_view(w), w.kyc_b_before, "B's KYC record after " + what)


def _kyc_doc_path(path, user, doc):
    return fill(path, {"kyc": user}).replace("{doc_id}", doc)


def r_kyc_me(w, method, path, scope):
    """A's own tier, draft and documents; nothing of B's."""
    _need_customer(scope, path)
    got = expect(w.as_a(method, path), 200, what="A's KYC")
    check_eq((got["tier"], got["submission"]["state"]), (0, "draft"), "A's own draft")
    check("AN0MBER42" not in json.dumps(got), "A's ID number is masked even to A")


def r_kyc_details(w, method, path, scope):
    _need_customer(scope, path)
    got = expect(w.as_a(method, path, {"legal_name": "Alyssa Aardvark", "id_type": "id_card",
                                       "id_number": "AN0MBER42", "date_of_birth": "1990-01-31",
                                       "country": "FR"}), 200, what="A's details")
    check_eq(got["submission"]["details"]["country"], "FR", "A's own details changed")
    _kyc_b_unchanged(w, "A's details")


def r_kyc_document(w, method, path, scope):
    _need_customer(scope, path)
    got = expect(w.as_a(method, path, {"kind": "selfie", "content_type": "image/jpeg",
                                       "content": _kyc_b64("selfie")}), 201, what="A's upload")
    check(got["submission_id"] != w.kyc_b_sub, "A's document goes to A's draft")
    _kyc_b_unchanged(w, "A's upload")


def r_kyc_submit(w, method, path, scope):
    _need_customer(scope, path)
    got = expect(w.as_a(method, path, {}), 200, what="A submits")
    check_eq(got["state"], "pending", "A's own submission")
    _kyc_b_unchanged(w, "A's submit")


def _kyc_refusals(w, method, path, body=None):
    m1, _m2 = w.merchants()
    for ids in (w.b_ids, UNKNOWN):
        url = _kyc_doc_path(path, ids["kyc"], w.kyc_b_doc)
        _forbidden(w.as_a(method, url, body), "A on %s" % url)
        _forbidden(w.as_m1("owner", method, url, body), "M1's owner on %s" % url)


def r_kyc_queue(w, method, path, scope):
    """Staff list the queue (no personal data in it); customers and merchants get 403."""
    check_eq(set(scope), {"support", "risk", "admin", "auditor"}, "scope of %s" % path)
    _kyc_refusals(w, method, path)
    for role in ("support", "auditor"):
        got = expect(call(w.srv, method, path, token=w.tokens[role]), 200, what=role + " lists")
        check(w.b.user_id in {i["user_id"] for i in got["data"]}, "B is queued")
        check(KYC_B_NUMBER not in json.dumps(got), "no ID number in the queue")


def r_kyc_staff_read(w, method, path, scope):
    """Support, risk, admin read B's record and document; B's document under A's id answers as
    an unknown one; customers and merchants get 403."""
    check_eq(set(scope), {"support", "risk", "admin"}, "scope of %s" % path)
    _kyc_refusals(w, method, path)
    document = "{doc_id}" in path
    got = call(w.srv, method, _kyc_doc_path(path, w.b.user_id, w.kyc_b_doc),
               token=w.tokens["support"])
    check_eq(got[0], 200, "support reads B's %s" % ("document" if document else "record"))
    if document:
        unknown = call(w.srv, method, _kyc_doc_path(path, w.a.user_id, "kyd_00000000ZZZZZ"),
                       token=w.tokens["risk"])
        check(unknown[0] == 404 and unknown[1].get("code") == "not_found",
              "an unknown document: %d %s" % unknown[:2])
        _problem_eq(call(w.srv, method, _kyc_doc_path(path, w.a.user_id, w.kyc_b_doc),
                         token=w.tokens["risk"]), unknown, "B's document under A's id")
    _kyc_b_unchanged(w, "staff reads")


def r_kyc_decision(w, method, path, scope):
    """Risk and admin decide: risk approves A's submission; B's id with A's submission id is a
    conflict and decides nothing; customers, merchants and support get 403."""
    check_eq(set(scope), {"risk", "admin"}, "scope of %s" % path)
    body = {"decision": "approve", "reason": "access check"}
    _kyc_refusals(w, method, path, body)
    _forbidden(call(w.srv, method, fill(path, w.b_ids), body, token=w.tokens["support"],
                    key=new_key("kyc")), "support deciding")
    a_sub = expect(call(w.srv, "GET", "/v1/me/kyc", token=w.a.token), 200)["submission"]["id"]
    expect(call(w.srv, method, fill(path, w.b_ids), dict(body, submission_id=a_sub),
                token=w.tokens["risk"], key=new_key("kyc")), 409, "conflict",
           "B's id with A's submission")
    got = expect(call(w.srv, method, fill(path, {"kyc": w.a.user_id}),
                      dict(body, submission_id=a_sub), token=w.tokens["risk"],
                      key=new_key("kyc")), 200, what="risk approves A")
    check_eq((got["user_id"], got["tier"]), (w.a.user_id, 2), "A approved")
    _kyc_b_unchanged(w, "decisions")
    w.check_b_unchanged("KYC decisions")


def r_kyc_lower(w, method, path, scope):
    """Risk and admin lower a tier: customers, merchants and support get 403; B's id lowers
    nothing of A's (B is at tier 0: a conflict); risk lowers A (approved by r_kyc_decision)."""
    check_eq(set(scope), {"risk", "admin"}, "scope of %s" % path)
    body = {"tier": 1, "reason": "access check"}
    _kyc_refusals(w, method, path, body)
    _forbidden(call(w.srv, method, fill(path, w.b_ids), body, token=w.tokens["support"],
                    key=new_key("kyc")), "support lowering")
    expect(call(w.srv, method, fill(path, w.b_ids), body, token=w.tokens["risk"],
                key=new_key("kyc")), 409, "conflict", "B is at tier 0")
    got = expect(call(w.srv, method, fill(path, {"kyc": w.a.user_id}), body,
                      token=w.tokens["risk"], key=new_key("kyc")), 200, what="risk lowers A")
    check_eq((got["user_id"], got["tier"]), (w.a.user_id, 1), "A lowered")
    _kyc_b_unchanged(w, "lowerings")
    w.check_b_unchanged("KYC lowerings")


# --- routes: screening. Sanctions lists and screenings (test_screening.py covers them in depth):
# customers and merchants get 403 with B's id or an unknown one; support and auditors read but
# do not write; risk loads a list that names no one here, runs a re-screening, screens ad hoc and
# finds B not blocked (clearing B is a conflict that changes nothing); an unknown party is 404.

_SCREENING_LIST = {"name": "access_list", "kind": "simple",
                   "content": "name\nAccesstest Nobodyish Zzyzx\n"}


def _screening_body(path):
    if path == "/v1/risk/lists":
        return _SCREENING_LIST
    if path == "/v1/risk/screen":
        return {"name": "Accesstest Nobodyish Zzyzx"}
    if path.endswith("/clear"):
        return {"reason": "access check"}
    return None


def r_screening_read(w, method, path, scope):
    """Staff read the lists, the status and B's screening; A and M1's owner get 403; an unknown
    party is 404."""
    check_eq(set(scope), {"support", "risk", "admin", "auditor"}, "scope of %s" % path)
    _staff_only(w, method, path, key_tag="scr")
    for role in ("support", "risk", "admin", "auditor"):
        expect(call(w.srv, method, fill(path, w.b_ids), token=w.tokens[role]), 200,
               what="%s reading %s" % (role, path))
    if "{id}" in path:
        got = expect(call(w.srv, method, fill(path, w.b_ids), token=w.tokens["risk"]), 200)
        check_eq((got["party"], got["block"]["blocked"]), (w.b.user_id, False), "B's view")
        expect(call(w.srv, method, fill(path, UNKNOWN), token=w.tokens["risk"]), 404,
               "not_found", "an unknown party's screening")
    w.check_b_unchanged("reading screenings")


def r_screening_write(w, method, path, scope):
    """Risk and admin only: A, M1's owner, support and auditors load, run, clear and screen
    nothing; risk's calls work and leave B as it was."""
    check_eq(set(scope), {"risk", "admin"}, "scope of %s" % path)
    risk, body = w.tokens["risk"], _screening_body(path)
    _staff_only(w, method, path, body, ("support", "auditor"), "scr")
    if path == "/v1/risk/lists":
        expect(call(w.srv, method, path, body, token=risk, key=new_key("scr")), 201,
               what="risk loads a list")
    elif path.endswith("/run"):
        expect(call(w.srv, method, path, token=risk), 202, what="risk runs a re-screening")
    elif path.endswith("/clear"):
        expect(call(w.srv, method, fill(path, w.b_ids), body, token=risk, key=new_key("scr")),
               409, "conflict", "B is not blocked")
        expect(call(w.srv, method, fill(path, UNKNOWN), body, token=risk, key=new_key("scr")),
               404, "not_found", "an unknown party")
    else:
        got = expect(call(w.srv, method, path, body, token=risk), 200, what="risk screens")
        check(isinstance(got.get("hits"), list), "an ad-hoc answer: %s" % got)
    w.check_b_unchanged("screening writes")


# (check, order): routes run in increasing order; state-changing ones last.
ROUTES = {
    "GET /v1/me/kyc": (r_kyc_me, 1),
    "POST /v1/me/kyc/details": (r_kyc_details, 2),
    "POST /v1/me/kyc/documents": (r_kyc_document, 2),
    "POST /v1/me/kyc/submit": (r_kyc_submit, 3),
    "GET /v1/risk/kyc": (r_kyc_queue, 1),
    "GET /v1/risk/kyc/{id}": (r_kyc_staff_read, 1),
    "GET /v1/risk/kyc/{id}/documents/{doc_id}": (r_kyc_staff_read, 1),
    "POST /v1/risk/kyc/{id}/decision": (r_kyc_decision, 4),
    "POST /v1/risk/kyc/{id}/tier": (r_kyc_lower, 5),
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
    "POST /v1/me/handle": (r_me_handle, 2),
    "POST /v1/me/quotes": (r_me_quote, 1),
    "POST /v1/me/sends": (r_me_send, 2),
    "POST /v1/me/qr/scan": (r_me_qr_scan, 1),
    "POST /v1/me/payments": (r_me_payment, 2),
    "GET /v1/me/activity": (r_me_activity, 3),
    "GET /v1/me/operations/{id}": (r_me_operation, 3),
    "POST /v1/admin/merchants/{id}/profile": (r_merchant_profile_set, 1),
    "GET /v1/admin/fees": (r_staff, 0),
    "POST /v1/admin/fees": (r_fee_set, 1),
    "GET /v1/merchant/profile": (r_merchant_profile, 1),
    "POST /v1/merchant/qr": (r_merchant_qr, 1),
    "GET /v1/merchant/activity": (r_merchant_activity, 3),
    "POST /v1/merchant/payments/{id}/refund": (r_merchant_refund, 4),
    "POST /v1/gateway/callbacks": (r_gateway_callback, 1),
    "GET /v1/me/cards": (r_me_cards, 0),
    "POST /v1/me/cards": (r_me_card_add, 2),
    "POST /v1/me/cards/{id}/remove": (r_me_card_remove, 2),
    "POST /v1/me/topups": (r_me_topup, 2),
    "POST /v1/me/topups/{id}/challenge": (r_me_topup_challenge, 2),
    "POST /v1/me/withdrawals": (r_me_withdrawal, 2),
    "POST /v1/merchant/payouts": (r_merchant_payout, 4),
    "POST /v1/admin/rates": (r_fx_rate_write, 1),
    "POST /v1/admin/rates/load": (r_fx_rate_write, 1),
    "GET /v1/rates": (r_fx_rates_list, 1),
    "POST /v1/me/conversions/quote": (r_fx_conversion_quote, 1),
    "POST /v1/me/conversions": (r_fx_conversion, 4),
    "GET /v1/me/activity/export": (r_statements_me_export, 3),
    "GET /v1/me/statements/{month}": (r_statements_me_statement, 3),
    "GET /v1/merchant/activity/export": (r_statements_merchant_export, 3),
    "GET /v1/merchant/statements/{month}": (r_statements_merchant_statement, 3),
    "GET /v1/merchant/payouts/{id}/report": (r_statements_payout_report, 3),
    "POST /v1/me/requests": (r_requests_create, 1),
    "GET /v1/me/requests": (r_requests_list, 1),
    "POST /v1/me/requests/split": (r_requests_split, 1),
    "GET /v1/me/requests/{id}": (r_requests_get, 1),
    "POST /v1/me/requests/{id}/pay": (r_requests_pay, 2),
    "POST /v1/me/requests/{id}/decline": (r_requests_decline, 2),
    "POST /v1/me/requests/{id}/cancel": (r_requests_cancel, 3),
    "POST /v1/admin/reconcile": (r_reconcile, 0),
    "POST /v1/me/paycode/devices": (r_paycode_device_add, 2),
    "GET /v1/me/paycode/devices": (r_paycode_devices, 1),
    "POST /v1/me/paycode/devices/{id}/revoke": (r_paycode_device_revoke, 1),
    "GET /v1/me/paycode/current": (r_paycode_current, 1),
    "POST /v1/merchant/paycode-charges": (r_paycode_charge, 2),
    "POST /v1/merchant/holds": (r_paycode_hold_create, 2),
    "GET /v1/merchant/holds/{id}": (r_paycode_hold_get, 1),
    "POST /v1/merchant/holds/{id}/capture": (r_paycode_hold_capture, 4),
    "POST /v1/merchant/holds/{id}/release": (r_paycode_hold_release, 4),
    "POST /v1/risk/reviews/{id}/decision": (r_risk_review, 1),
    "POST /v1/risk/parties/{id}/freeze": (r_risk_freeze_write, 1),
    "POST /v1/risk/parties/{id}/unfreeze": (r_risk_freeze_write, 1),
    "GET /v1/risk/parties/{id}/freeze": (r_risk_freeze_read, 1),
    "GET /v1/risk/freezes": (r_risk_freeze_read, 1),
    "GET /v1/risk/cases": (r_cases_read, 1),
    "GET /v1/risk/cases/{id}": (r_cases_read, 1),
    "GET /v1/risk/cases/{id}/report": (r_cases_read, 1),
    "POST /v1/risk/cases/{id}/assign": (r_cases_write, 1),
    "POST /v1/risk/cases/{id}/notes": (r_cases_write, 1),
    "POST /v1/risk/cases/{id}/evidence": (r_cases_write, 1),
    "POST /v1/risk/cases/{id}/decision": (r_cases_write, 2),
    "POST /v1/risk/aml/sweep": (r_cases_sweep, 1),
    "GET /v1/risk/features": (r_rules_read, 1),
    "GET /v1/risk/rules": (r_rules_read, 1),
    "GET /v1/risk/rules/{id}": (r_rules_read, 1),
    "POST /v1/risk/rules": (r_rules_write, 1),
    "POST /v1/risk/rules/dry-run": (r_rules_write, 1),
    "POST /v1/risk/rules/{id}": (r_rules_write, 1),
    "POST /v1/risk/rules/{id}/delete": (r_rules_write, 1),
    "GET /v1/risk/decisions": (r_rules_read, 1),
    "GET /v1/risk/decisions/{id}": (r_rules_read, 1),
    "POST /v1/risk/lists": (r_screening_write, 1),
    "GET /v1/risk/lists": (r_screening_read, 1),
    "POST /v1/risk/screening/run": (r_screening_write, 1),
    "GET /v1/risk/screening/status": (r_screening_read, 1),
    "GET /v1/risk/parties/{id}/screening": (r_screening_read, 1),
    "POST /v1/risk/parties/{id}/screening/clear": (r_screening_write, 1),
    "POST /v1/risk/screen": (r_screening_write, 1),
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
