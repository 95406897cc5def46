#!/usr/bin/env python3
"""test_identity.py - identity end to end over HTTP: registration with a code, the password
rules, sign-in and its throttling, sessions, password change and reset, TOTP with recovery codes
(and a limit on second-factor guesses), code rate limits, login change, staff enrolment and
roles, the operator token's single power, step-up challenges bound to one action, export and
closure with crypto-shredding, the audit API, merchant organisations with owner and staff
rights, `coffer verify` over the audit chain (and a tampered row), and a scan of every byte on
disk for personal data in the clear.

Most tests share one server and register their own people; the tamper and the plaintext-scan
tests run their own. Usage: test_identity.py --bin build/coffer --src . [test names...]
"""

import calendar
import itertools
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
import unicodedata
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402

PASSWORD = ih.DEFAULT_PASSWORD
STEP_UP_LIMIT = 100000  # minor units; above it a transfer needs step-up (server default)

_seq = itertools.count(1)
_run = "%05x" % random.getrandbits(20)
_phone_base = random.randrange(0, 500)


def email(tag):
    """A fresh, already normalized email login."""
    return "%s.%s.%d@example.org" % (tag, _run, next(_seq))


def phone():
    """A fresh phone login in E.164 form (drama range numbers)."""
    return "+447700900%03d" % ((_phone_base + next(_seq)) % 1000)


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


def operator_token(srv):
    admin_of(srv)
    return srv.operator_token


def call(srv, method, path, body=None, token=None, key=None, headers=None):
    """(status, parsed body, headers)."""
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


def outbox(srv, login):
    """Messages sent to login, newest first."""
    path = "/v1/admin/outbox?to=" + urllib.parse.quote(login)
    return expect(call(srv, "GET", path, token=admin_of(srv).token), 200, what="outbox")["data"]


def codes_in(messages):
    out = []
    for m in messages:
        found = ih.CODE_RE.search(m["body"])
        if found:
            out.append(found.group(1))
    return out


def other_code(code):
    return "%06d" % ((int(code) + 1) % 1000000)


def register(srv, login=None, password=PASSWORD, name="Carla Customer"):
    login = login or email("cust")
    return ih.register_customer(srv.port, admin_of(srv).token, login, password=password,
                                name=name, tls_context=srv.tls_context)


def sign_in(srv, login, password, device=None):
    body = {"login": login, "password": password}
    if device is not None:
        body["device"] = device
    return call(srv, "POST", "/v1/auth/sign-in", body)


def session(srv, login, password, device=None):
    """Signs a person without a second factor in; returns the sign-in answer."""
    body = expect(sign_in(srv, login, password, device), 200, what="sign-in of " + login)
    check(body.get("mfa_required") is False and body.get("token", "").startswith("cfs_"),
          "sign-in without a second factor gave no session: %s" % body)
    return body


def me(srv, token):
    return call(srv, "GET", "/v1/me", token=token)


def alive(srv, token):
    return me(srv, token)[0] == 200


def step_up(srv, cust, action, **kw):
    """A verification for a person without TOTP (the code read from the outbox)."""
    return ih.step_up(srv.port, cust.token, action, admin_token=admin_of(srv).token,
                      login=cust.login, tls_context=srv.tls_context, **kw)


def challenge(srv, token, action, **kw):
    body = {"action": action}
    body.update(kw)
    return expect(call(srv, "POST", "/v1/me/challenges", body, token=token), 201,
                  what="challenge " + action)


def next_totp(secret):
    """A TOTP code for a step this secret has not used yet, without waiting when the server's
    window (one step either side) still has one: steps now-1, now and now+1 give three codes per
    30 s. The steps used are shared with identity_helpers.fresh_totp."""
    used = ih._used_steps
    while True:
        now = time.time()
        n = int(now // 30)
        lowest = n - 1 if (n + 1) * 30 - now > 3 else n  # step n-1 only while far from a change
        step = max(used.get(secret, -1) + 1, lowest)
        if step <= n + 1:
            used[secret] = step
            return ih.totp(secret, t=step * 30)
        time.sleep(max(0.05, (step - 1) * 30 - now + 0.1))


def wrong_totp(secret):
    """A six-digit code that no step of the server's window accepts."""
    now = time.time()
    valid = {ih.totp(secret, t=now + d * 30) for d in (-2, -1, 0, 1, 2)}
    for i in itertools.count():
        code = "%06d" % ((123456 + 7919 * i) % 1000000)
        if code not in valid:
            return code


def staff_session(srv, login, password, secret):
    first = expect(sign_in(srv, login, password), 200, what="staff sign-in")
    check(first.get("mfa_required") is True, "staff sign-in must ask for TOTP: %s" % first)
    done = expect(call(srv, "POST", "/v1/auth/sign-in/mfa",
                       {"mfa_token": first["mfa_token"], "code": next_totp(secret)}), 200,
                  what="staff TOTP")
    return done


def admin_client(srv):
    return harness.Client(srv.port, admin_of(srv).token, tls_context=srv.tls_context)


def open_account(srv, cust, currency="EUR"):
    return expect(call(srv, "POST", "/v1/me/accounts", {"currency": currency}, token=cust.token),
                  201, what="open %s account" % currency)


def pay(srv, cust, from_id, to_id, amount, currency="EUR", verification=None, key=None):
    body = {"from_account": from_id, "to_account": to_id, "amount_minor": amount,
            "currency": currency}
    if verification is not None:
        body["verification"] = verification
    return call(srv, "POST", "/v1/me/transfers", body, token=cust.token, key=key or new_key("p2p"))


class Money:
    """The admin's funding source per currency on one server."""

    def __init__(self, srv):
        self.srv = srv
        self.client = admin_client(srv)
        self.sources = {}

    def source(self, currency):
        if currency not in self.sources:
            self.sources[currency] = harness.make_source(self.client, currency)["id"]
        return self.sources[currency]

    def fund(self, acct_id, amount, currency="EUR"):
        return harness.fund(self.client, self.source(currency), acct_id, amount, currency)

    def account(self, acct_id):
        return self.client.account(acct_id)

    def payee(self, currency="EUR"):
        """A plain ledger account to pay into."""
        return harness.make_account(self.client, currency=currency, kind="customer")["id"]


_money = {}


def money(srv):
    if srv not in _money:
        _money[srv] = Money(srv)
    return _money[srv]


def load_routes(bin_path):
    out = subprocess.run([bin_path, "routes"], capture_output=True, text=True, timeout=30,
                         stdin=subprocess.DEVNULL)
    check(out.returncode == 0, "coffer routes failed: %s" % out.stderr)
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split()
        check(len(parts) == 4, "unexpected `coffer routes` line: %r" % line)
        rows.append((parts[0], parts[1], set(parts[2].split(","))))
    return rows


def rfc3339_s(text):
    """Seconds since the epoch of "2026-01-02T03:04:05.123456Z"."""
    base, _, frac = text.rstrip("Z").partition(".")
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def audit(srv, token=None, **params):
    q = urllib.parse.urlencode(params)
    return call(srv, "GET", "/v1/audit" + ("?" + q if q else ""),
                token=token or admin_of(srv).token)


# ------------------------------------------------------------------------------------------------
# Registration and sign-in


def test_registration(ctx):
    srv = ctx.shared()
    login = email("reg")
    name = "Rhoda Registrant"
    first = expect(call(srv, "POST", "/v1/auth/register",
                        {"login": login, "password": PASSWORD, "name": name}), 202,
                   what="register")
    check_eq(sorted(first), ["registration_id", "status"], "registration answer fields")
    check(first["registration_id"].startswith("reg_"), "registration id: %s" % first)
    codes = codes_in(outbox(srv, login))
    check_eq(len(codes), 1, "codes sent for one registration")
    code = codes[0]
    verify = "/v1/auth/register/verify"
    expect(call(srv, "POST", verify, {"registration_id": first["registration_id"],
                                      "code": other_code(code)}),
           422, "invalid_code", "verify with a wrong code")
    done = expect(call(srv, "POST", verify, {"registration_id": first["registration_id"],
                                             "code": code, "device": "phone"}),
                  201, what="verify with the right code")
    check(done["token"].startswith("cfs_") and done["user_id"].startswith("usr_")
          and done["role"] == "customer" and done["mfa_required"] is False,
          "registration did not open a customer session: %s" % done)
    profile = expect(me(srv, done["token"]), 200, what="GET /v1/me after registration")
    check_eq((profile["login"], profile["name"], profile["user_id"]),
             (login, name, done["user_id"]), "profile after registration")
    expect(call(srv, "POST", verify, {"registration_id": first["registration_id"], "code": code}),
           422, "invalid_code", "the same code a second time")

    # The login is taken now: the same answer, a notice instead of a code.
    before = outbox(srv, login)
    again = expect(call(srv, "POST", "/v1/auth/register",
                        {"login": login.upper(), "password": PASSWORD, "name": "Someone Else"}),
                   202, what="register a taken login")
    check_eq(sorted(again), sorted(first), "fields of the answer for a taken login")
    check_eq(again["status"], first["status"], "status text for a taken login")
    check(again["registration_id"].startswith("reg_")
          and again["registration_id"] != first["registration_id"],
          "a taken login still gets its own registration id: %s" % again)
    after = outbox(srv, login)
    new = after[:len(after) - len(before)]
    check_eq(len(new), 1, "messages sent to a taken login")
    check(not codes_in(new), "a code was sent for a taken login: %s" % new)
    for guess in (code, "000000"):
        expect(call(srv, "POST", verify, {"registration_id": again["registration_id"],
                                          "code": guess}),
               422, "invalid_code", "verifying the registration of a taken login")
    check(alive(srv, done["token"]), "the first user's session must survive")

    # A phone login, typed with spaces, is normalized.
    number = phone()
    typed = "%s %s %s %s" % (number[:3], number[3:7], number[7:10], number[10:])
    reg = expect(call(srv, "POST", "/v1/auth/register",
                      {"login": typed, "password": PASSWORD, "name": "Phoebe Phone"}), 202,
                 what="register a phone")
    sms = outbox(srv, number)
    check(sms and sms[0]["channel"] == "sms", "no SMS to %s: %s" % (number, sms))
    done = expect(call(srv, "POST", verify, {"registration_id": reg["registration_id"],
                                             "code": codes_in(sms)[0]}), 201,
                  what="verify a phone registration")
    check_eq(expect(me(srv, done["token"]), 200)["login"], number, "normalized phone login")


def test_password_rules(ctx):
    srv = ctx.shared()
    login = email("pwrules")

    def reg(password, who=login, name="Pat Policy"):
        return call(srv, "POST", "/v1/auth/register",
                    {"login": who, "password": password, "name": name})

    weak = [
        ("too short", "Sh0rt-pw!ok"),  # 11 characters
        ("dictionary", "password12345"),
        ("dictionary, capitalized", "Sunshine2024!"),
        ("one character repeated", "aaaaaaaaaaaaaaaa"),
        ("containing the login", "x9-" + login + "-9x"),
        ("containing the login in capitals", "Q7" + login.upper() + "!"),
        ("129 characters", "Zq9-" * 32 + "k"),
        ("a control character", "Rainy-Harbour\x07Lantern-42"),
    ]
    for what, password in weak:
        body = expect(reg(password), 400, "weak_password", "password " + what)
        check(body.get("detail"), "weak_password without a reason (%s): %s" % (what, body))
    number = phone()
    expect(reg("Call-me-" + number + "-now", who=number), 400, "weak_password",
           "a password containing the phone login")
    check_eq(outbox(srv, login), [], "codes sent for refused registrations")

    # 12 and 128 characters, Unicode included, are accepted (NFKC-stable text).
    twelve = "Grüße-Ωψ-7☕x"
    check_eq(len(twelve), 12, "length of the 12-character password")
    rnd = random.Random(20240611)
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-_.üßΩψжé☕中"
    long_pw = "".join(rnd.choice(alphabet) for _ in range(128))
    check_eq(len(long_pw), 128, "length of the 128-character password")
    for pw in (twelve, long_pw):
        check_eq(unicodedata.normalize("NFKC", pw), pw, "test password is NFKC")
        who = email("pwok")
        cust = register(srv, who, password=pw, name="Una Unicode")
        session(srv, who, pw)
        # the same text typed in decomposed form is the same password
        session(srv, who, unicodedata.normalize("NFD", pw))
        expect(sign_in(srv, who, pw[:-1]), 401, "invalid_credentials", "a prefix of it")
        check(alive(srv, cust.token), "session after Unicode sign-ins")


def test_sign_in(ctx):
    srv = ctx.shared()
    cust = register(srv, name="Simone Signin")
    ok = session(srv, cust.login, PASSWORD, device="laptop")
    check(ok["session_id"].startswith("ses_") and ok["user_id"] == cust.user_id
          and ok["role"] == "customer" and ok["token_type"] == "Bearer" and ok["expires_at"],
          "sign-in answer: %s" % ok)
    check(ok["token"] != cust.token, "every sign-in opens a new session")
    session(srv, cust.login.upper(), PASSWORD)  # logins are case-insensitive
    answers = []
    for what, login, password in [
            ("wrong password", cust.login, PASSWORD + "x"),
            ("unknown login", email("nobody"), PASSWORD),
            ("unknown phone", phone(), PASSWORD),
            ("malformed login", "not a login", PASSWORD)]:
        st, body, h = sign_in(srv, login, password)
        check_eq(st, 401, "sign-in with " + what)
        answers.append((what, body, h.get("Content-Type")))
    for what, body, ctype in answers[1:]:
        check(body == answers[0][1] and ctype == answers[0][2],
              "%s answers differently from a wrong password: %r vs %r"
              % (what, body, answers[0][1]))
    check_eq(answers[0][1].get("code"), "invalid_credentials", "sign-in failure code")


def test_throttling(ctx):
    srv = ctx.shared()
    victim = register(srv, name="Theo Throttled")
    bystander = register(srv, name="Bea Bystander")
    for i in range(5):
        expect(sign_in(srv, victim.login, "Wrong-Password-%d-xyz" % i), 401,
               "invalid_credentials", "failure %d" % (i + 1))
    # From here each failure must wait 2^(failures-5) s from the last one; a 429 answers until
    # then. Fail twice more (waiting out any 429) to have a delay of at least 4 s.
    failures, saw_429, deadline = 5, 0, time.monotonic() + 30
    while failures < 7:
        check(time.monotonic() < deadline, "throttling test takes too long")
        st, body, h = sign_in(srv, victim.login, "Wrong-Password-again-%d" % failures)
        if st == 429:
            saw_429 += 1
            retry = int(h.get("Retry-After", "0"))
            check(1 <= retry <= 900, "Retry-After %r outside 1..900" % h.get("Retry-After"))
            time.sleep(retry)
            continue
        check_eq(st, 401, "a wrong password while not throttled")
        failures += 1
    st, body, h = sign_in(srv, victim.login, PASSWORD)
    check(st == 429 and body.get("code") == "too_many_attempts",
          "right password during the delay after 7 failures: expected 429 too_many_attempts, "
          "got %d %s" % (st, body))
    retry = h.get("Retry-After")
    check(retry is not None and retry.isdigit() and 1 <= int(retry) <= 900,
          "429 without a Retry-After of 1..900 s: %r" % retry)
    # the throttle is per login: another login from the same address signs in
    session(srv, bystander.login, PASSWORD)
    # a password reset by code clears the throttle
    reset = expect(call(srv, "POST", "/v1/auth/password/reset", {"login": victim.login}), 202)
    code = codes_in(outbox(srv, victim.login))[0]
    expect(call(srv, "POST", "/v1/auth/password/reset/confirm",
                {"reset_id": reset["reset_id"], "code": code,
                 "new_password": "Quiet-Meadow-Falcon-77"}), 200, what="reset confirm")
    session(srv, victim.login, "Quiet-Meadow-Falcon-77")


# ------------------------------------------------------------------------------------------------
# Sessions and credentials


def test_sign_out(ctx):
    srv = ctx.shared()
    cust = register(srv, name="Otto Signout")
    other = session(srv, cust.login, PASSWORD)["token"]
    expect(me(srv, other), 200, what="GET /v1/me before sign-out")
    body = expect(call(srv, "POST", "/v1/auth/sign-out", token=other), 200, what="sign-out")
    check(body.get("status"), "sign-out answer: %s" % body)
    expect(me(srv, other), 401, "unauthorized", "GET /v1/me after sign-out")
    expect(call(srv, "POST", "/v1/auth/sign-out", token=other), 401, "unauthorized",
           "signing out twice")
    check(alive(srv, cust.token), "sign-out ended another session of the same person")


def test_sessions(ctx):
    srv = ctx.shared()
    cust = register(srv, name="Sasha Sessions")
    s2 = session(srv, cust.login, PASSWORD, device="tablet")
    s3 = session(srv, cust.login, PASSWORD, device="work laptop")
    listed = expect(call(srv, "GET", "/v1/me/sessions", token=cust.token), 200)["data"]
    ids = {s["session_id"] for s in listed}
    check({s2["session_id"], s3["session_id"]} <= ids and len(ids) == 3,
          "sessions list: %s" % listed)
    current = [s for s in listed if s["current"]]
    check(len(current) == 1 and current[0]["session_id"] not in (s2["session_id"],
                                                                 s3["session_id"]),
          "exactly the caller's session is current: %s" % listed)
    devices = {s["session_id"]: s["device"] for s in listed}
    check_eq((devices[s2["session_id"]], devices[s3["session_id"]]), ("tablet", "work laptop"),
             "devices")
    for s in listed:
        check(s["ip"] == "127.0.0.1" and s["expires_at"] and s["created_at"]
              and s["last_seen_at"], "session fields: %s" % s)

    path = "/v1/me/sessions/%s/revoke" % s2["session_id"]
    body = expect(call(srv, "POST", path, token=cust.token), 200, what="revoke one session")
    check_eq(body.get("session_id"), s2["session_id"], "revoked session id")
    expect(me(srv, s2["token"]), 401, "unauthorized", "revoked session")
    check(alive(srv, s3["token"]) and alive(srv, cust.token), "other sessions survive a revoke")
    expect(call(srv, "POST", path, token=cust.token), 404, what="revoking it again")
    expect(call(srv, "POST", "/v1/me/sessions/ses_0000000000000/revoke", token=cust.token), 404,
           what="revoking an unknown session")
    expect(call(srv, "POST", "/v1/me/sessions/not-an-id/revoke", token=cust.token), 404,
           what="revoking a malformed session id")

    body = expect(call(srv, "POST", "/v1/me/sessions/revoke-others", token=cust.token), 200,
                  what="revoke-others")
    check_eq(body.get("revoked"), 1, "sessions ended by revoke-others")
    expect(me(srv, s3["token"]), 401, "unauthorized", "session after revoke-others")
    check(alive(srv, cust.token), "revoke-others ended the caller's own session")
    listed = expect(call(srv, "GET", "/v1/me/sessions", token=cust.token), 200)["data"]
    check(len(listed) == 1 and listed[0]["current"], "sessions left: %s" % listed)


def test_password_change(ctx):
    srv = ctx.shared()
    cust = register(srv, name="Paula Change")
    other = session(srv, cust.login, PASSWORD)["token"]
    new_pw = "Violet-Canyon-Drum-93"
    path = "/v1/me/password"
    expect(call(srv, "POST", path, {"current_password": PASSWORD, "new_password": new_pw},
                token=cust.token), 403, "step_up_required", "password change without step-up")
    v = step_up(srv, cust, "password_change")
    st, body, _h = call(srv, "POST", path, {"current_password": "Not-The-Password-1",
                                            "new_password": new_pw, "verification": v},
                        token=cust.token)
    check(400 <= st < 500 and st != 403 and body.get("code") == "invalid_credentials",
          "password change with a wrong current password: %d %s" % (st, body))
    expect(call(srv, "POST", path, {"current_password": PASSWORD, "new_password": "password12345",
                                    "verification": v}, token=cust.token),
           400, "weak_password", "changing to a weak password")
    # a verification bound to another action does not do
    wrong_action = step_up(srv, cust, "data_export")
    expect(call(srv, "POST", path, {"current_password": PASSWORD, "new_password": new_pw,
                                    "verification": wrong_action}, token=cust.token),
           422, "invalid_code", "password change with a data_export verification")
    check(alive(srv, other), "failed changes must not end sessions")
    expect(call(srv, "POST", path, {"current_password": PASSWORD, "new_password": new_pw,
                                    "verification": v}, token=cust.token),
           200, what="password change")
    expect(me(srv, other), 401, "unauthorized", "another session after a password change")
    check(alive(srv, cust.token), "the session that changed the password must survive")
    expect(sign_in(srv, cust.login, PASSWORD), 401, "invalid_credentials", "the old password")
    session(srv, cust.login, new_pw)
    expect(call(srv, "POST", path, {"current_password": new_pw, "new_password": PASSWORD,
                                    "verification": v}, token=cust.token),
           422, "invalid_code", "reusing the password-change verification")


def test_password_reset(ctx):
    srv = ctx.shared()
    cust = register(srv, name="Rory Reset")
    other = session(srv, cust.login, PASSWORD)["token"]
    start = expect(call(srv, "POST", "/v1/auth/password/reset", {"login": cust.login}), 202)
    check(start["reset_id"].startswith("rst_"), "reset id: %s" % start)
    nobody = email("noreset")
    unknown = expect(call(srv, "POST", "/v1/auth/password/reset", {"login": nobody}), 202)
    check(sorted(unknown) == sorted(start) and unknown["status"] == start["status"],
          "reset of an unknown login answers differently: %s vs %s" % (unknown, start))
    check_eq(outbox(srv, nobody), [], "messages to an unknown login")
    code = codes_in(outbox(srv, cust.login))[0]
    confirm = "/v1/auth/password/reset/confirm"
    new_pw = "Amber-Glacier-Kettle-58"
    expect(call(srv, "POST", confirm, {"reset_id": start["reset_id"], "code": other_code(code),
                                       "new_password": new_pw}),
           422, "invalid_code", "reset with a wrong code")
    expect(call(srv, "POST", confirm, {"reset_id": unknown["reset_id"], "code": code,
                                       "new_password": new_pw}),
           422, "invalid_code", "the unknown login's reset id")
    expect(call(srv, "POST", confirm, {"reset_id": start["reset_id"], "code": code,
                                       "new_password": "short"}),
           400, "weak_password", "reset to a weak password")
    check(alive(srv, cust.token) and alive(srv, other), "failed resets must not end sessions")
    expect(call(srv, "POST", confirm, {"reset_id": start["reset_id"], "code": code,
                                       "new_password": new_pw}), 200, what="reset")
    expect(me(srv, cust.token), 401, "unauthorized", "first session after a reset")
    expect(me(srv, other), 401, "unauthorized", "second session after a reset")
    expect(sign_in(srv, cust.login, PASSWORD), 401, "invalid_credentials", "old password")
    session(srv, cust.login, new_pw)
    expect(call(srv, "POST", confirm, {"reset_id": start["reset_id"], "code": code,
                                       "new_password": "Another-Fine-Password-1"}),
           422, "invalid_code", "the reset code a second time")


def test_totp(ctx):
    srv = ctx.shared()
    cust = register(srv, name="Tomas Totp")
    enrol = expect(call(srv, "POST", "/v1/me/mfa/totp", token=cust.token), 200, what="enrol")
    secret = enrol["secret"]
    check(re.fullmatch(r"[A-Z2-7]{16,}", secret), "TOTP secret is not base32: %r" % secret)
    uri = urllib.parse.urlparse(enrol["otpauth_uri"])
    query = urllib.parse.parse_qs(uri.query)
    label = urllib.parse.unquote(uri.path.lstrip("/"))
    check(uri.scheme == "otpauth" and uri.netloc == "totp", "otpauth URI: %s" % uri.geturl())
    check(label.endswith(cust.login) and query.get("secret") == [secret]
          and query.get("issuer") == ["Coffer"],
          "otpauth URI label/secret/issuer: %s" % enrol["otpauth_uri"])
    for name, want in (("algorithm", "SHA1"), ("digits", "6"), ("period", "30")):
        check(query.get(name, [want]) == [want], "otpauth %s: %s" % (name, query.get(name)))
    check(enrol["qr_svg"].startswith("<svg"), "qr_svg: %r" % enrol["qr_svg"][:80])
    check_eq((enrol["digits"], enrol["period"], enrol["algorithm"]), (6, 30, "SHA1"),
             "TOTP parameters")
    check(expect(me(srv, cust.token), 200)["totp_enabled"] is False,
          "TOTP is on before confirmation")
    session(srv, cust.login, PASSWORD)  # not yet a second factor

    expect(call(srv, "POST", "/v1/me/mfa/totp/confirm", {"code": wrong_totp(secret)},
                token=cust.token), 422, "invalid_code", "confirm with a wrong code")
    done = expect(call(srv, "POST", "/v1/me/mfa/totp/confirm", {"code": next_totp(secret)},
                       token=cust.token), 200, what="confirm")
    recovery = done["recovery_codes"]
    check(done["totp_enabled"] is True and len(recovery) == 10 and len(set(recovery)) == 10,
          "confirm answer: %s" % done)
    check(expect(me(srv, cust.token), 200)["totp_enabled"] is True, "TOTP on after confirm")

    def start():
        first = expect(sign_in(srv, cust.login, PASSWORD), 200, what="sign-in with TOTP on")
        check(first["mfa_required"] is True and first.get("enrolment_required") is False
              and "token" not in first and first["mfa_token"],
              "sign-in must stop at the second factor: %s" % first)
        check_eq(sorted(first["methods"]), ["recovery_code", "totp"], "second-factor methods")
        return first["mfa_token"]

    def mfa(token, **kw):
        body = {"mfa_token": token}
        body.update(kw)
        return call(srv, "POST", "/v1/auth/sign-in/mfa", body)

    pending = start()
    expect(me(srv, pending), 401, "unauthorized", "the mfa token as a session token")
    expect(mfa(pending, code=wrong_totp(secret)), 422, "invalid_code", "a wrong TOTP code")
    code = next_totp(secret)
    full = expect(mfa(pending, code=code), 200, what="TOTP sign-in")
    check(full["token"].startswith("cfs_") and full["user_id"] == cust.user_id,
          "TOTP sign-in answer: %s" % full)
    check(alive(srv, full["token"]), "session after the second factor")
    expect(mfa(pending, code=code), 401, what="the spent mfa token again")
    pending = start()
    expect(mfa(pending, code=code), 422, "invalid_code", "the same TOTP code twice")
    # the failed attempt left the pending sign-in usable: finish it with a recovery code
    expect(mfa(pending, recovery_code=recovery[0]), 200, what="recovery code")
    pending = start()
    expect(mfa(pending, recovery_code=recovery[0]), 422, "invalid_code",
           "a recovery code twice")
    expect(mfa(pending, recovery_code=recovery[1]), 200, what="another recovery code")

    # Turning TOTP off needs a step-up answered with TOTP.
    expect(call(srv, "POST", "/v1/me/mfa/totp/disable", token=cust.token), 403,
           "step_up_required", "disable without step-up")
    chl = challenge(srv, cust.token, "mfa_change")
    check_eq(chl["method"], "totp", "step-up method of a TOTP user")
    expect(call(srv, "POST", "/v1/me/mfa/totp/disable",
                {"verification": {"challenge_id": chl["challenge_id"],
                                  "code": next_totp(secret)}}, token=cust.token),
           200, what="disable TOTP")
    session(srv, cust.login, PASSWORD)


def test_second_factor_guessing_is_limited(ctx):
    """A pending sign-in must not take unlimited TOTP guesses: with 3 codes valid out of 10^6
    and a 300 s token renewable with the password, unlimited guesses break the second factor."""
    srv = ctx.shared()
    cust = register(srv, name="Gus Guessed")
    enrol = expect(call(srv, "POST", "/v1/me/mfa/totp", token=cust.token), 200)
    secret = enrol["secret"]
    expect(call(srv, "POST", "/v1/me/mfa/totp/confirm", {"code": next_totp(secret)},
                token=cust.token), 200, what="confirm")
    first = expect(sign_in(srv, cust.login, PASSWORD), 200)
    valid = {ih.totp(secret, t=time.time() + d * 30) for d in (-2, -1, 0, 1, 2, 3)}
    guesses = [c for c in ("%06d" % (314159 + 2718 * i) for i in range(40)) if c not in valid]
    answers = []
    for code in guesses[:20]:
        st, body, _h = call(srv, "POST", "/v1/auth/sign-in/mfa",
                            {"mfa_token": first["mfa_token"], "code": code})
        check(st != 200, "a wrong TOTP code signed in: %s" % body)
        answers.append(st)
    st, body, _h = call(srv, "POST", "/v1/auth/sign-in/mfa",
                        {"mfa_token": first["mfa_token"], "code": next_totp(secret)})
    check(st != 200, "after 20 wrong TOTP codes on one pending sign-in (answers %s) the right "
          "code still signs in: second-factor guesses are not limited (expected the pending "
          "sign-in to die after a few wrong codes, as step-up challenges do after 5)"
          % sorted(set(answers)))


def test_code_rate_limits(ctx):
    srv = ctx.shared()
    login = email("ratelimit")
    for i in range(5):
        expect(call(srv, "POST", "/v1/auth/register",
                    {"login": login, "password": PASSWORD, "name": "Rita Ratelimit"}), 202,
               what="registration %d" % (i + 1))
    st, body, h = call(srv, "POST", "/v1/auth/register",
                       {"login": login, "password": PASSWORD, "name": "Rita Ratelimit"})
    check(st == 429 and body.get("code") == "rate_limited" and h.get("Retry-After"),
          "a sixth code to one login within the hour: expected 429 rate_limited with "
          "Retry-After, got %d %s" % (st, body))
    check_eq(len(codes_in(outbox(srv, login))), 5, "codes sent to one login")
    cust = register(srv, name="Stella Stepup")
    for i in range(5):
        challenge(srv, cust.token, "data_export")
    st, body, h = call(srv, "POST", "/v1/me/challenges", {"action": "data_export"},
                       token=cust.token)
    check(st == 429 and body.get("code") == "rate_limited" and h.get("Retry-After"),
          "a sixth step-up code within the hour: expected 429 rate_limited, got %d %s"
          % (st, body))
    expect(call(srv, "POST", "/v1/me/challenges", {"action": "launch_missiles"},
                token=cust.token), 400, "invalid_field", "a challenge for an unknown action")


def test_login_change(ctx):
    srv = ctx.shared()
    cust = register(srv, name="Lena Loginchange")
    other = session(srv, cust.login, PASSWORD)["token"]
    taken = register(srv, name="Tara Taken")
    new_login = email("lena-new")
    expect(call(srv, "POST", "/v1/me/login", {"new_login": new_login}, token=cust.token), 403,
           "step_up_required", "login change without step-up")
    elsewhere = step_up(srv, cust, "login_change", payee=email("elsewhere"))
    expect(call(srv, "POST", "/v1/me/login", {"new_login": new_login, "verification": elsewhere},
                token=cust.token), 422, "invalid_code", "a verification for another new login")
    v = step_up(srv, cust, "login_change", payee=new_login)
    started = expect(call(srv, "POST", "/v1/me/login", {"new_login": new_login,
                                                        "verification": v},
                          token=cust.token), 202, what="login change")
    code = codes_in(outbox(srv, new_login))[0]
    confirm = "/v1/me/login/confirm"
    expect(call(srv, "POST", confirm, {"change_id": started["change_id"],
                                       "code": other_code(code)}, token=cust.token),
           422, "invalid_code", "confirm with a wrong code")
    check(alive(srv, other), "a failed confirmation ended a session")
    expect(call(srv, "POST", confirm, {"change_id": started["change_id"], "code": code},
                token=taken.token), 422, "invalid_code", "someone else confirming the change")
    expect(call(srv, "POST", confirm, {"change_id": started["change_id"], "code": code},
                token=cust.token), 200, what="confirm")
    check_eq(expect(me(srv, cust.token), 200)["login"], new_login, "login after the change")
    expect(me(srv, other), 401, "unauthorized", "another session after a login change")
    expect(sign_in(srv, cust.login, PASSWORD), 401, "invalid_credentials", "the old login")
    session(srv, new_login, PASSWORD)
    notice = outbox(srv, cust.login)[0]
    check(not codes_in([notice]) and "login" in notice["body"].lower(),
          "the old login was not told of the change: %s" % notice)
    # a login someone else holds is refused at confirmation, by the one who holds the code
    v = step_up(srv, cust._replace(login=new_login), "login_change", payee=taken.login)
    started = expect(call(srv, "POST", "/v1/me/login", {"new_login": taken.login,
                                                        "verification": v},
                          token=cust.token), 202, what="asking for a taken login")
    code = codes_in(outbox(srv, taken.login))[0]
    expect(call(srv, "POST", confirm, {"change_id": started["change_id"], "code": code},
                token=cust.token), 409, "login_taken", "confirming a taken login")
    session(srv, taken.login, PASSWORD)
    check_eq(expect(me(srv, cust.token), 200)["login"], new_login, "login after the refusal")


# ------------------------------------------------------------------------------------------------
# Staff, roles, the operator token


def test_staff_enrolment(ctx):
    srv = ctx.shared()
    admin = admin_of(srv)
    login = email("support")
    created = expect(call(srv, "POST", "/v1/admin/staff",
                          {"login": login, "password": PASSWORD, "name": "Stan Staff",
                           "role": "support"}, token=admin.token), 201, what="staff create")
    check(created["user_id"].startswith("usr_") and created["role"] == "support",
          "staff create answer: %s" % created)
    first = expect(sign_in(srv, login, PASSWORD), 200, what="first staff sign-in")
    check(first["mfa_required"] is True and first["enrolment_required"] is True
          and first["methods"] == ["totp"] and "token" not in first and "role" not in first,
          "a new staff member must enrol before anything: %s" % first)
    pending = first["mfa_token"]
    for method, path in (("GET", "/v1/me"), ("GET", "/v1/ledger/accounts"),
                         ("GET", "/v1/admin/users/" + created["user_id"]),
                         ("POST", "/v1/auth/sign-out")):
        expect(call(srv, method, path, token=pending), 401, "unauthorized",
               "%s %s with an enrolment token" % (method, path))
    expect(call(srv, "POST", "/v1/auth/sign-in/mfa", {"mfa_token": pending, "code": "123456"}),
           403, "mfa_enrolment_required", "a code before enrolling")
    enrol = expect(call(srv, "POST", "/v1/auth/sign-in/enrol", {"mfa_token": pending}), 200,
                   what="enrol")
    check(enrol["qr_svg"].startswith("<svg") and enrol["otpauth_uri"].startswith("otpauth://totp/"),
          "enrolment material: %s" % {k: str(v)[:60] for k, v in enrol.items()})
    secret = enrol["secret"]
    expect(call(srv, "POST", "/v1/auth/sign-in/mfa",
                {"mfa_token": pending, "code": wrong_totp(secret)}),
           422, "invalid_code", "a wrong first code")
    done = expect(call(srv, "POST", "/v1/auth/sign-in/mfa",
                       {"mfa_token": pending, "code": next_totp(secret)}), 200,
                  what="first code")
    check(done["role"] == "support" and done["token"].startswith("cfs_")
          and len(done.get("recovery_codes", [])) == 10,
          "enrolment answer: %s" % done)
    profile = expect(me(srv, done["token"]), 200)
    check(profile["role"] == "support" and profile["totp_enabled"] is True,
          "staff profile: %s" % profile)
    expect(call(srv, "POST", "/v1/auth/sign-in/enrol", {"mfa_token": pending}), 401,
           what="enrolling again with the spent token")
    expect(call(srv, "POST", "/v1/me/mfa/totp/disable", token=done["token"]), 403, "forbidden",
           "staff turning TOTP off")
    # enrolled: the next sign-in asks for TOTP (not enrolment)
    again = staff_session(srv, login, PASSWORD, secret)
    check_eq(again["role"], "support", "role after the second sign-in")
    for role in ("customer", "merchant", "overlord"):
        expect(call(srv, "POST", "/v1/admin/staff",
                    {"login": email("notstaff"), "password": PASSWORD, "name": "Nope",
                     "role": role}, token=admin.token),
               400, "invalid_field", "staff create with role " + role)
    expect(call(srv, "POST", "/v1/admin/staff",
                {"login": login, "password": PASSWORD, "name": "Dup", "role": "risk"},
                token=admin.token), 409, "login_taken", "staff create with a taken login")


def test_operator_token(ctx):
    srv = ctx.shared()
    admin = admin_of(srv)
    op = operator_token(srv)
    cust = register(srv, name="Olga Operatorless")
    body = {"login": email("second-admin"), "password": PASSWORD, "name": "Second Admin"}
    expect(call(srv, "POST", "/v1/bootstrap", body, token=op), 409, "already_bootstrapped",
           "a second bootstrap")
    expect(call(srv, "POST", "/v1/bootstrap", body), 401, "unauthorized", "bootstrap without token")
    expect(call(srv, "POST", "/v1/bootstrap", body, token=admin.token), 403, "forbidden",
           "bootstrap with an admin session")
    expect(call(srv, "POST", "/v1/bootstrap", body, token=cust.token), 403, "forbidden",
           "bootstrap with a customer session")
    for method, path, req in [("GET", "/v1/ledger/accounts", None),
                              ("POST", "/v1/ledger/accounts", {"currency": "EUR"}),
                              ("GET", "/v1/ledger/currencies", None),
                              ("POST", "/v1/ledger/transfers", {}),
                              ("GET", "/v1/me", None), ("GET", "/v1/audit", None),
                              ("GET", "/v1/admin/outbox?to=" + cust.login, None),
                              ("POST", "/v1/admin/staff", dict(body, role="admin")),
                              ("GET", "/metrics", None)]:
        expect(call(srv, method, path, req, token=op, key=new_key("op")), 403, "forbidden",
               "%s %s with the operator token" % (method, path))
    st, _b, _h = sign_in(srv, body["login"], PASSWORD)
    check_eq(st, 401, "the refused bootstrap created nobody")


def test_roles(ctx):
    srv = ctx.shared()
    admin = admin_of(srv)
    m = money(srv)
    cust = register(srv, name="Cora Customer")
    acct = open_account(srv, cust)
    tr = m.fund(acct["id"], 500)
    staff = {"admin": admin}
    for role in ("support", "risk", "auditor", "admin"):
        key = role if role != "admin" else "admin2"
        staff[key] = ih.create_staff(srv.port, admin.token, email(role), role,
                                     tls_context=srv.tls_context)
    ids = {"accounts": acct["id"], "transfers": tr["id"], "users": cust.user_id,
           "sessions": "ses_0000000000000", "statements": "2026-11"}

    def fill(path):
        """Known ids where this test has them; a well-formed unknown one elsewhere (a 404 is
        an answer too: what matters here is that it is not a 401 or 403)."""
        parts = path.split("/")
        for i, p in enumerate(parts):
            if p == "{id}":
                parts[i] = ids.get(parts[i - 1], "zz_0000000000001")
        return "/".join(parts)

    tokens = {name: s.token for name, s in staff.items()}
    tokens["customer"] = cust.token
    role_of = {"admin2": "admin"}
    gets = [(p, scope) for method, p, scope in load_routes(ctx.bin)
            if method == "GET" and "public" not in scope]
    check(len(gets) >= 10, "too few GET routes: %s" % gets)
    for who, token in tokens.items():
        role = role_of.get(who, who)
        for path, scope in gets:
            url = fill(path)
            if path == "/v1/admin/outbox":
                url += "?to=" + urllib.parse.quote(cust.login)
            st, body, _h = call(srv, "GET", url, token=token)
            if role in scope:
                check(st not in (401, 403) and st < 500,
                      "%s may GET %s (scope %s) but got %d: %s"
                      % (who, path, ",".join(sorted(scope)), st, str(body)[:200]))
            else:
                check(st == 403, "%s must get 403 on GET %s (scope %s), got %d: %s"
                      % (who, path, ",".join(sorted(scope)), st, str(body)[:200]))
    # writes: only admins
    for who, token in tokens.items():
        is_admin = role_of.get(who, who) == "admin"
        st, body, _h = call(srv, "POST", "/v1/ledger/accounts", {}, token=token,
                            key=new_key("roles"))
        check(st == (400 if is_admin else 403),
              "%s POST /v1/ledger/accounts with an empty body: %d %s" % (who, st, body))
        st, body, _h = call(srv, "POST", "/v1/admin/staff", {}, token=token)
        check(st == (400 if is_admin else 403),
              "%s POST /v1/admin/staff with an empty body: %d %s" % (who, st, body))
        st, body, _h = call(srv, "POST", "/v1/me/export", {}, token=token)
        want = "step_up_required" if who == "customer" else "forbidden"
        check(st == 403 and body.get("code") == want,
              "%s POST /v1/me/export: expected 403 %s, got %d %s" % (who, want, st, body))
    # the second admin is a full admin
    made = expect(call(srv, "POST", "/v1/ledger/accounts", {"currency": "EUR"},
                       token=staff["admin2"].token, key=new_key("admin2")), 201,
                  what="second admin creates an account")
    check(made["id"].startswith("acct_"), "account made by the second admin: %s" % made)

    # A role change ends that user's sessions; the new role applies at the next sign-in.
    sup = staff["support"]
    body = expect(call(srv, "POST", "/v1/admin/users/%s/role" % sup.user_id, {"role": "risk"},
                       token=admin.token), 200, what="role change")
    check_eq((body["user_id"], body["role"]), (sup.user_id, "risk"), "role change answer")
    expect(me(srv, sup.token), 401, "unauthorized", "a session from before the role change")
    check(alive(srv, admin.token) and alive(srv, staff["auditor"].token),
          "a role change ended someone else's session")
    fresh = staff_session(srv, sup.login, sup.password, sup.secret)
    check_eq(fresh["role"], "risk", "role at the next sign-in")
    check_eq(expect(me(srv, fresh["token"]), 200)["role"], "risk", "role in /v1/me")
    expect(call(srv, "POST", "/v1/admin/users/%s/role" % admin.user_id, {"role": "auditor"},
                token=admin.token), 409, what="an admin changing their own role")
    expect(call(srv, "POST", "/v1/admin/users/%s/role" % sup.user_id, {"role": "wizard"},
                token=admin.token), 400, "invalid_field", "an unknown role")
    expect(call(srv, "POST", "/v1/admin/users/usr_0000000000000/role", {"role": "risk"},
                token=admin.token), 404, what="role change of an unknown user")
    expect(call(srv, "POST", "/v1/admin/users/%s/role" % sup.user_id, {"role": "admin"},
                token=staff["auditor"].token), 403, "forbidden", "an auditor changing roles")


# ------------------------------------------------------------------------------------------------
# Step-up, export, closure


def test_step_up_binding(ctx):
    srv = ctx.shared()
    m = money(srv)
    payer = register(srv, name="Pia Payer")
    eur = open_account(srv, payer, "EUR")["id"]
    usd = open_account(srv, payer, "USD")["id"]
    m.fund(eur, 1000000)
    m.fund(usd, 100000, "USD")
    a, b = m.payee(), m.payee()

    def balance(acct):
        return m.account(acct)["balance"]

    # X: 100 EUR to A (A never paid before, so step-up is due)
    x = step_up(srv, payer, "transfer", amount_minor=10000, currency="EUR", payee=a)
    expect(pay(srv, payer, eur, a, 100000, verification=x), 422, "invalid_code",
           "1000 EUR to A with a challenge for 100")
    expect(pay(srv, payer, eur, b, 10000, verification=x), 422, "invalid_code",
           "100 EUR to B with a challenge for A")
    expect(pay(srv, payer, usd, a, 10000, "USD", verification=x), 422, "invalid_code",
           "100 USD to A with a challenge for EUR")
    expect(pay(srv, payer, eur, a, 10000), 403, "step_up_required",
           "100 EUR to a new payee without verification")
    expect(pay(srv, payer, eur, a, 10000,
               verification={"challenge_id": x["challenge_id"], "code": other_code(x["code"])}),
           422, "invalid_code", "the right challenge with a wrong code")
    check_eq((balance(a), balance(b)), (0, 0), "payee balances after refused transfers")
    done = expect(pay(srv, payer, eur, a, 10000, verification=x), 201,
                  what="the transfer the challenge was made for")
    check_eq(done["amount"], 10000, "amount paid")
    check_eq(balance(a), 10000, "A's balance")

    # Y: 2000 EUR to A (above the limit: step-up even for a known payee)
    big = 2 * STEP_UP_LIMIT
    expect(pay(srv, payer, eur, a, big), 403, "step_up_required",
           "a transfer above the limit without verification")
    y = step_up(srv, payer, "transfer", amount_minor=big, currency="EUR", payee=a)
    key = new_key("stepup")
    first = expect(pay(srv, payer, eur, a, big, verification=y, key=key), 201,
                   what="large transfer")
    retry = expect(pay(srv, payer, eur, a, big, verification=y, key=key), 201,
                   what="the same request retried with its key")
    check_eq(retry, first, "answer to the retried request")
    check_eq(balance(a), 10000 + big, "A's balance after a retried transfer")
    expect(pay(srv, payer, eur, a, big, verification=y), 422, "invalid_code",
           "the used challenge on a new request")
    check_eq(balance(a), 10000 + big, "A's balance after a reused challenge")
    # a known payee below the limit needs nothing
    expect(pay(srv, payer, eur, a, 500), 201, what="small transfer to a known payee")

    # Z: five wrong codes kill a challenge
    z = step_up(srv, payer, "transfer", amount_minor=10000, currency="EUR", payee=b)
    wrong = {"challenge_id": z["challenge_id"], "code": other_code(z["code"])}
    for i in range(5):
        expect(pay(srv, payer, eur, b, 10000, verification=wrong), 422, "invalid_code",
               "wrong code %d" % (i + 1))
    expect(pay(srv, payer, eur, b, 10000, verification=z), 422, "invalid_code",
           "the right code after five wrong ones")
    check_eq(balance(b), 0, "B's balance")
    # another person's challenge is not mine
    thief = register(srv, name="Theo Thief")
    t_acct = open_account(srv, thief)["id"]
    m.fund(t_acct, 50000)
    mine = step_up(srv, payer, "transfer", amount_minor=10000, currency="EUR", payee=b)
    expect(pay(srv, thief, t_acct, b, 10000, verification=mine), 422, "invalid_code",
           "someone else's challenge")
    expect(pay(srv, payer, eur, b, 10000, verification=mine), 201,
           what="the owner uses the challenge after the refused theft")


def test_export(ctx):
    srv = ctx.shared()
    m = money(srv)
    cust = register(srv, name="Edda Exporter")
    acct = open_account(srv, cust)["id"]
    funding = m.fund(acct, 10000)
    payee = m.payee()
    v = step_up(srv, cust, "transfer", amount_minor=2500, currency="EUR", payee=payee)
    paid = expect(pay(srv, cust, acct, payee, 2500, verification=v), 201, what="payment")
    expect(call(srv, "POST", "/v1/me/export", token=cust.token), 403, "step_up_required",
           "export without step-up")
    wrong = step_up(srv, cust, "account_close")
    expect(call(srv, "POST", "/v1/me/export", {"verification": wrong}, token=cust.token), 422,
           "invalid_code", "export with an account_close verification")
    v = step_up(srv, cust, "data_export")
    doc = expect(call(srv, "POST", "/v1/me/export", {"verification": v}, token=cust.token), 200,
                 what="export")
    check_eq(doc.get("format"), "coffer-export-v1", "export format")
    prof = doc["profile"]
    check_eq((prof["user_id"], prof["login"], prof["name"], prof["role"]),
             (cust.user_id, cust.login, "Edda Exporter", "customer"), "exported profile")
    check(doc.get("sessions"), "export has no sessions")
    accounts = {a["id"]: a for a in doc["accounts"]}
    check_eq(sorted(accounts), [acct], "exported accounts")
    check_eq(accounts[acct]["balance"], 7500, "exported balance")
    check_eq(accounts[acct]["owner"], cust.user_id, "exported owner")
    history = {t["id"] for t in accounts[acct]["transfers"]}
    check(history == {funding["id"], paid["id"]}, "exported transfers: %s" % history)
    expect(call(srv, "POST", "/v1/me/export", {"verification": v}, token=cust.token), 422,
           "invalid_code", "the export verification a second time")


def test_close(ctx):
    srv = ctx.shared()
    m = money(srv)
    name = "Corwin Closer"
    cust = register(srv, name=name)
    acct = open_account(srv, cust)["id"]
    funding = m.fund(acct, 5000)
    other = session(srv, cust.login, PASSWORD)["token"]
    expect(call(srv, "POST", "/v1/me/close", token=cust.token), 409, "balance_not_zero",
           "close with money left")
    v = step_up(srv, cust, "account_close")
    expect(call(srv, "POST", "/v1/me/close", {"verification": v}, token=cust.token), 409,
           "balance_not_zero", "close with money left and a verification")
    payee = m.payee()
    out = step_up(srv, cust, "transfer", amount_minor=5000, currency="EUR", payee=payee)
    paid = expect(pay(srv, cust, acct, payee, 5000, verification=out), 201, what="pay out")
    expect(call(srv, "POST", "/v1/me/close", token=cust.token), 403, "step_up_required",
           "close at zero without step-up")
    body = expect(call(srv, "POST", "/v1/me/close", {"verification": v}, token=cust.token), 200,
                  what="close")
    check_eq(body.get("status"), "closed", "close answer")
    for tok in (cust.token, other):
        expect(me(srv, tok), 401, "unauthorized", "a session after closing")
    wrong = sign_in(srv, email("never"), PASSWORD)
    closed = sign_in(srv, cust.login, PASSWORD)
    check(closed[0] == 401 and closed[1] == wrong[1],
          "sign-in after closing must look like an unknown login: %d %s" % closed[:2])
    # the ledger keeps the history under the pseudonymous id
    a = m.account(acct)
    check(a["owner"] == cust.user_id and a["balance"] == 0 and a["frozen"] is True,
          "closed customer's account: %s" % a)
    history = {t["id"] for t in m.client.history(acct)}
    check_eq(history, {funding["id"], paid["id"]}, "history after closing")
    admin = admin_of(srv)
    st, view, _h = call(srv, "GET", "/v1/admin/users/" + cust.user_id, token=admin.token)
    check_eq(st, 200, "admin view of a closed user")
    raw = json.dumps(view, ensure_ascii=False)
    check(view.get("closed") is True and view.get("user_id") == cust.user_id,
          "admin view of a closed user: %s" % view)
    check(cust.login not in raw and name not in raw and not view.get("login")
          and not view.get("name"), "personal data left after closing: %s" % raw)
    # the login is free again: a new person may register it
    again = register(srv, cust.login, name="Another Corwin")
    check(again.user_id != cust.user_id, "re-registration reused the closed user id")
    audit_rows = expect(audit(srv, actor=cust.user_id, action="privacy.close"), 200)["data"]
    check_eq(len(audit_rows), 1, "privacy.close audit records")
    # Nothing may arrive any more: money paid into a closed account could never leave it.
    st, body, _h = call(srv, "POST", "/v1/ledger/transfers",
                        {"debit_account_id": m.source("EUR"), "credit_account_id": acct,
                         "amount": 1, "currency": "EUR"}, token=admin.token,
                        key=new_key("closed"))
    check(st == 422 and body.get("code") == "account_closed",
          "a deposit into a closed customer's account must be refused (422 account_closed), "
          "got %d %s" % (st, str(body)[:200]))


# ------------------------------------------------------------------------------------------------
# Merchant organisations


def test_merchants(ctx):
    """An admin creates a merchant with its first owner; owners add and remove owner or staff
    users; staff read their merchant but manage no one; a removed user keeps no rights."""
    srv = ctx.shared()
    admin = admin_of(srv)
    t0 = int(time.time())
    owner_login = email("m-owner")
    req = {"legal_name": "Harbour Lantern Trading Ltd", "display_name": "Harbour Lantern",
           "owner": {"login": owner_login, "password": PASSWORD, "name": "Olive Owner"}}
    cust = register(srv, name="Cyril Customer")
    expect(call(srv, "POST", "/v1/admin/merchants", req, token=cust.token), 403, "forbidden",
           "a customer creating a merchant")
    for bad, code, detail in (
            (dict(req, legal_name=""), "invalid_field", "legal_name"),
            (dict(req, display_name="Tab\there"), "invalid_field", "display_name"),
            ({k: v for k, v in req.items() if k != "owner"}, "missing_field", "owner"),
            (dict(req, owner=dict(req["owner"], login="not a login")), "invalid_field", "login")):
        body = expect(call(srv, "POST", "/v1/admin/merchants", bad, token=admin.token), 400, code,
                      "merchant with a bad %s" % detail)
        check_eq(body.get("detail"), detail, "detail of a refused merchant")
    made = expect(call(srv, "POST", "/v1/admin/merchants", req, token=admin.token), 201,
                  what="merchant create")
    check_eq(sorted(made), ["merchant_id", "owner_user_id"], "merchant create answer")
    mid, owner_id = made["merchant_id"], made["owner_user_id"]
    check(re.fullmatch(r"mer_[0-9A-HJKMNP-TV-Z]{13}", mid), "merchant id %r" % mid)
    check(re.fullmatch(r"usr_[0-9A-HJKMNP-TV-Z]{13}", owner_id), "owner id %r" % owner_id)
    expect(call(srv, "POST", "/v1/admin/merchants", req, token=admin.token), 409, "login_taken",
           "a second merchant with the same owner login")

    # the owner signs in without a second factor, as a merchant
    signed = session(srv, owner_login, PASSWORD)
    check_eq((signed["role"], signed["user_id"]), ("merchant", owner_id), "owner sign-in")
    owner = signed["token"]
    got = expect(call(srv, "GET", "/v1/merchant", token=owner), 200, what="owner's merchant")
    check_eq({k: got.get(k) for k in ("merchant_id", "legal_name", "display_name", "right")},
             {"merchant_id": mid, "legal_name": req["legal_name"],
              "display_name": req["display_name"], "right": "owner"}, "owner's merchant")
    check(abs(rfc3339_s(got["created_at"]) - t0) < 120, "created_at %r" % got["created_at"])

    # the owner adds a staff user and a second owner
    staff_login, owner2_login = email("m-staff"), email("m-owner2")
    added = {}
    for login, name, right in ((staff_login, "Stan Staff", "staff"),
                               (owner2_login, "Opal Owner", "owner")):
        body = expect(call(srv, "POST", "/v1/merchant/users",
                           {"login": login, "password": PASSWORD, "name": name, "right": right},
                           token=owner), 201, what="owner adds a %s" % right)
        check_eq(body.get("right"), right, "right of the added user")
        added[right] = body["user_id"]
    body = expect(call(srv, "POST", "/v1/merchant/users",
                       {"login": email("m-x"), "password": PASSWORD, "name": "Max Manager",
                        "right": "manager"}, token=owner), 400, "invalid_field", "right manager")
    check_eq(body.get("detail"), "right", "detail of an unknown right")
    expect(call(srv, "POST", "/v1/merchant/users",
                {"login": staff_login, "password": PASSWORD, "name": "Stan Again",
                 "right": "staff"}, token=owner), 409, "login_taken", "adding a taken login")
    staff_id, owner2_id = added["staff"], added["owner"]
    listed = expect(call(srv, "GET", "/v1/merchant/users", token=owner), 200,
                    what="owner lists users")["data"]
    want = sorted([{"user_id": owner_id, "right": "owner", "login": owner_login,
                    "name": "Olive Owner"},
                   {"user_id": staff_id, "right": "staff", "login": staff_login,
                    "name": "Stan Staff"},
                   {"user_id": owner2_id, "right": "owner", "login": owner2_login,
                    "name": "Opal Owner"}], key=lambda u: u["user_id"])
    check_eq(listed, want, "the merchant's users")

    # staff see their merchant but manage no one
    staff = session(srv, staff_login, PASSWORD)
    check_eq(staff["role"], "merchant", "staff role")
    got = expect(call(srv, "GET", "/v1/merchant", token=staff["token"]), 200,
                 what="staff's merchant")
    check_eq((got["merchant_id"], got["right"]), (mid, "staff"), "staff's merchant")
    expect(call(srv, "GET", "/v1/merchant/users", token=staff["token"]), 403, "forbidden",
           "staff listing users")
    sneaky = email("m-sneaky")
    expect(call(srv, "POST", "/v1/merchant/users",
                {"login": sneaky, "password": PASSWORD, "name": "Sneaky Pete",
                 "right": "owner"}, token=staff["token"]), 403, "forbidden", "staff adding a user")
    expect(sign_in(srv, sneaky, PASSWORD), 401, "invalid_credentials",
           "the user staff tried to add")
    owner2 = session(srv, owner2_login, PASSWORD)["token"]
    for target in (owner2_id, owner_id):
        expect(call(srv, "POST", "/v1/merchant/users/%s/remove" % target, token=staff["token"]),
               403, "forbidden", "staff removing an owner")
    check(alive(srv, owner2) and alive(srv, owner), "staff's refused removal ended a session")
    got = expect(call(srv, "GET", "/v1/merchant", token=owner2), 200, what="second owner")
    check_eq((got["merchant_id"], got["right"]), (mid, "owner"), "second owner's merchant")

    # the owner removes the staff user: their session ends, and so do their rights
    body = expect(call(srv, "POST", "/v1/merchant/users/%s/remove" % staff_id, token=owner),
                  200, what="owner removes staff")
    check_eq(body, {"user_id": staff_id, "status": "removed"}, "remove answer")
    expect(me(srv, staff["token"]), 401, "unauthorized", "the removed user's session")
    again = session(srv, staff_login, PASSWORD)["token"]
    for method, path in (("GET", "/v1/merchant"), ("GET", "/v1/merchant/users")):
        expect(call(srv, method, path, token=again), 403, "forbidden",
               "%s %s by a removed user" % (method, path))
    expect(call(srv, "POST", "/v1/merchant/users/%s/remove" % staff_id, token=owner), 404,
           "not_found", "removing the removed user again")
    for bogus in ("usr_00000000ZZZZZ", "usr_0000000000000", "usr_x", mid):
        expect(call(srv, "POST", "/v1/merchant/users/%s/remove" % bogus, token=owner), 404,
               "not_found", "removing %s" % bogus)
    # an owner cannot remove themself; another owner can
    expect(call(srv, "POST", "/v1/merchant/users/%s/remove" % owner_id, token=owner), 409,
           "conflict", "an owner removing themself")
    check(alive(srv, owner), "the refused self-removal ended the owner's session")
    listed = expect(call(srv, "GET", "/v1/merchant/users", token=owner2), 200,
                    what="second owner lists users")["data"]
    check_eq(sorted(u["user_id"] for u in listed), sorted([owner_id, owner2_id]),
             "users after the removal")

    # the audit log names ids only
    for action, actor, target in (("merchant.create", admin.user_id, mid),
                                  ("merchant.user_add", owner_id, staff_id),
                                  ("merchant.user_add", owner_id, owner2_id),
                                  ("merchant.user_remove", owner_id, staff_id)):
        rows = expect(audit(srv, action=action, target=target), 200)["data"]
        check(len(rows) == 1 and rows[0]["actor"] == actor and rows[0]["outcome"] == "ok",
              "%s of %s by %s: %s" % (action, target, actor, rows))
    rows = expect(audit(srv, action="merchant.", limit=1000, **{"from": t0}), 200)["data"]
    raw = json.dumps(rows, ensure_ascii=False)
    for secret in (PASSWORD, owner_login, staff_login, "Olive Owner", "Stan Staff"):
        check(secret not in raw, "%r in the merchant audit records" % secret)


# ------------------------------------------------------------------------------------------------
# Audit


def test_audit(ctx):
    srv = ctx.shared()
    t0 = int(time.time())
    cust = register(srv, name="Aude Audited")
    expect(sign_in(srv, cust.login, "Not-My-Password-9"), 401, "invalid_credentials")
    tok = session(srv, cust.login, PASSWORD)["token"]
    expect(call(srv, "POST", "/v1/auth/sign-out", token=tok), 200)
    t1 = int(time.time()) + 1

    rows = expect(audit(srv, actor=cust.user_id, limit=1000), 200)["data"]
    check(rows and all(r["actor"] == cust.user_id for r in rows), "actor filter: %s" % rows)
    actions = [r["action"] for r in rows]
    for want in ("auth.register_verify", "auth.sign_in", "auth.sign_out"):
        check(want in actions, "%s missing from the person's audit records: %s" % (want, actions))
    for r in rows:
        check(re.fullmatch(r"[0-9a-f]{64}", r["hash"]) and r["seq"] > 0 and r["ip"],
              "audit record fields: %s" % r)
    raw = json.dumps(rows, ensure_ascii=False)
    check(PASSWORD not in raw and cust.login not in raw and "Aude Audited" not in raw,
          "personal data or a password in the audit log: %s" % raw[:500])

    rows = expect(audit(srv, action="auth.", limit=1000, **{"from": t0}), 200)["data"]
    check(rows and all(r["action"].startswith("auth.") for r in rows),
          "action prefix filter: %s" % [r["action"] for r in rows])
    check({"auth.sign_in", "auth.register", "auth.sign_out"} <= {r["action"] for r in rows},
          "auth. prefix misses actions")
    rows = expect(audit(srv, action="auth.sign_in", limit=1000), 200)["data"]
    check(rows and all(r["action"] == "auth.sign_in" for r in rows), "exact action filter")
    rows = expect(audit(srv, action="auth", limit=1000), 200)["data"]
    check(all(r["action"] == "auth" for r in rows), "'auth' without a dot is not a prefix")

    rows = expect(audit(srv, outcome="failed", limit=1000), 200)["data"]
    check(rows and all(r["outcome"] == "failed" for r in rows), "outcome filter")
    mine = expect(audit(srv, outcome="failed", actor=cust.user_id), 200)["data"]
    check(len(mine) == 1 and mine[0]["action"] == "auth.sign_in"
          and mine[0]["target"] == cust.user_id,
          "the one failed sign-in of the person: %s" % mine)

    rows = expect(audit(srv, **{"from": t0, "to": t1, "limit": 1000}), 200)["data"]
    check(rows, "nothing in the time range")
    for r in rows:
        at = rfc3339_s(r["at"])
        check(t0 <= at < t1, "record at %s outside [%d, %d)" % (r["at"], t0, t1))
    check(cust.user_id in {r["actor"] for r in rows}, "the person's records are in the range")
    everything = expect(audit(srv, limit=1000), 200)["data"]
    outside = [r for r in everything if not t0 <= rfc3339_s(r["at"]) < t1]
    check(not {r["seq"] for r in outside} & {r["seq"] for r in rows},
          "records outside the range were returned")
    later = expect(audit(srv, **{"from": t1 + 3600}), 200)
    check(later["data"] == [] and later["next_cursor"] is None, "future range: %s" % later)
    for bad in ({"from": "yesterday"}, {"to": "-5"}, {"limit": "0"}, {"cursor": "%%%"}):
        st, body, _h = audit(srv, **bad)
        check_eq(st, 400, "audit with %s" % bad)

    # paging: the pages together are the unpaged list (allowing for records appended since)
    for filt in ({"from": t0}, {"from": t0, "action": "auth."}):
        paged, cursor, pages = [], None, 0
        while True:
            params = dict(filt, limit=2)
            if cursor:
                params["cursor"] = cursor
            page = expect(audit(srv, **params), 200)
            check(len(page["data"]) <= 2, "page larger than its limit")
            paged.extend(page["data"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            check(pages < 200, "paging does not end")
        whole = expect(audit(srv, **dict(filt, limit=1000)), 200)["data"]
        seqs = [r["seq"] for r in paged]
        check(seqs == sorted(set(seqs)), "paged seqs not strictly increasing")
        check(pages >= 3 and whole[:len(paged)] == paged,
              "paged audit (%s, %d pages) differs from the unpaged list" % (filt, pages))

    # only auditors and admins read it
    sup = ih.create_staff(srv.port, admin_of(srv).token, email("aud-support"), "support",
                          tls_context=srv.tls_context)
    aud = ih.create_staff(srv.port, admin_of(srv).token, email("auditor"), "auditor",
                          tls_context=srv.tls_context)
    expect(audit(srv, token=sup.token), 403, "forbidden", "support reading the audit log")
    expect(audit(srv, token=cust.token), 403, "forbidden", "a customer reading the audit log")
    rows = expect(audit(srv, token=aud.token, actor=cust.user_id), 200)["data"]
    check(rows, "the auditor sees the records")


def test_zz_verify_shared(ctx):
    """Last: the shared server's ledger and audit chain check out."""
    srv = ctx.shared()
    out = srv.check_verify()
    check("audit log" in out and "chain intact" in out, "verify says nothing of the audit log: %s"
          % out)


# ------------------------------------------------------------------------------------------------
# Tampering and plaintext on disk (own servers)


def sqlite_server(ctx, **kw):
    """A server over SQLite files even in the PostgreSQL pass."""
    saved = harness.PG_URL
    harness.PG_URL = None
    try:
        srv = harness.Server(ctx.bin, **kw)
    finally:
        harness.PG_URL = saved
    return srv.start()


def test_audit_tamper(ctx):
    srv = ctx.server()
    admin_of(srv)
    cust = register(srv, name="Tilda Tamper")
    expect(sign_in(srv, cust.login, "Wrong-Wrong-Wrong-1"), 401)
    session(srv, cust.login, PASSWORD)
    srv.check_verify()
    check_eq(srv.stop(), 0, "server exit code")
    out = srv.check_verify()
    check("audit log" in out, "verify output has no audit line: %s" % out)

    def sql(statement):
        if srv.db:
            r = subprocess.run(["psql", srv.db, "-qAtc", statement], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
            check(r.returncode == 0, "psql: %s" % r.stderr)
            return r.stdout.strip()
        db = sqlite3.connect(os.path.join(srv.data, "identity.db"))
        try:
            cur = db.execute(statement)
            rows = cur.fetchall()
            db.commit()
            return "\n".join("|".join(str(c) for c in row) for row in rows)
        finally:
            db.close()

    n = int(sql("SELECT COUNT(*) FROM id_audit"))
    check(n >= 5, "too few audit records: %d" % n)
    seq = n // 2
    detail = sql("SELECT detail FROM id_audit WHERE seq = %d" % seq)
    sql("UPDATE id_audit SET detail = detail || ' (edited)' WHERE seq = %d" % seq)
    rc, out = srv.verify()
    check(rc == 1, "verify must fail on a tampered audit row (exit %d): %s" % (rc, out))
    bad = [line for line in out.splitlines() if "FAILED" in line]
    check(bad and "audit log" in bad[0] and str(seq) in bad[0],
          "verify must name the audit log and record %d: %s" % (seq, out))
    sql("UPDATE id_audit SET detail = '%s' WHERE seq = %d" % (detail.replace("'", "''"), seq))
    srv.check_verify()
    # deleting the last record is caught by the head row
    sql("DELETE FROM id_audit WHERE seq = %d" % n)
    rc, out = srv.verify()
    check(rc == 1 and "audit log" in out, "verify after deleting the last record: %s" % out)


def _variants(text):
    """The byte strings a text may be stored as: UTF-8 of its case and normalization forms."""
    forms = set()
    for cased in (text, text.lower(), text.upper(), text.title(), text.casefold()):
        for nf in ("NFC", "NFD", "NFKC", "NFKD"):
            forms.add(unicodedata.normalize(nf, cased))
    return {b for b in (f.encode("utf-8") for f in forms) if len(b) >= 4}


def _log_text_without_times(data):
    """A log file's text with each JSON line's timestamp dropped (microseconds look like
    codes)."""
    lines = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(obj, dict):
            obj.pop("ts", None)
        lines.append(json.dumps(obj, ensure_ascii=False))
    return "\n".join(lines)


def test_no_plaintext_at_rest(ctx):
    srv = sqlite_server(ctx, log_level="debug")
    admin = admin_of(srv)
    m = Money(srv)
    people = [
        ("Zebulon Quattlebaum", "zebulon.q@example.org", "Kestrel-Orchard-Violin-314"),
        ("Philippa Oyelaran-Brück", "+447700900777", "Lichen-Harpoon-Saffron-271"),
        ("Ðorđe Ærøskøbing 中村", "dorde.nakamura@example.org", "Quokka-Tundra-Bellows-161"),
    ]
    secrets = [pw for _n, _l, pw in people]
    codes = []
    custs = []
    for name, login, pw in people:
        cust = register(srv, login, password=pw, name=name)
        codes.extend(codes_in(outbox(srv, login)))
        custs.append(cust)
    zeb, phil, dorde = custs
    # sign-ins, good and bad
    for cust in custs:
        expect(sign_in(srv, cust.login, cust.password + "!"), 401)
        session(srv, cust.login, cust.password, device="scan device")
    # money and step-ups
    z_acct = open_account(srv, zeb)["id"]
    p_acct = open_account(srv, phil)["id"]
    d_acct = open_account(srv, dorde)["id"]
    m.fund(z_acct, 20000)
    v = step_up(srv, zeb, "transfer", amount_minor=1500, currency="EUR", payee=p_acct)
    codes.append(v["code"])
    expect(pay(srv, zeb, z_acct, p_acct, 1500, verification=v), 201, what="payment")
    v = step_up(srv, phil, "data_export")
    codes.append(v["code"])
    expect(call(srv, "POST", "/v1/me/export", {"verification": v}, token=phil.token), 200)
    # TOTP for Zebulon (the otpauth URI names the login; it must not be stored)
    enrol = expect(call(srv, "POST", "/v1/me/mfa/totp", token=zeb.token), 200)
    secrets.append(enrol["secret"])
    done = expect(call(srv, "POST", "/v1/me/mfa/totp/confirm",
                       {"code": next_totp(enrol["secret"])}, token=zeb.token), 200)
    secrets.extend(done["recovery_codes"])
    first = expect(sign_in(srv, zeb.login, zeb.password), 200)
    expect(call(srv, "POST", "/v1/auth/sign-in/mfa",
                {"mfa_token": first["mfa_token"], "recovery_code": done["recovery_codes"][0]}),
           200)
    # a password reset (by SMS)
    reset = expect(call(srv, "POST", "/v1/auth/password/reset", {"login": phil.login}), 202)
    code = codes_in(outbox(srv, phil.login))[0]
    codes.append(code)
    new_pw = "Marigold-Sextant-Pylon-828"
    secrets.append(new_pw)
    expect(call(srv, "POST", "/v1/auth/password/reset/confirm",
                {"reset_id": reset["reset_id"], "code": code, "new_password": new_pw}), 200)
    session(srv, phil.login, new_pw)
    # staff look the people up
    for cust in custs:
        expect(call(srv, "GET", "/v1/admin/users/" + cust.user_id, token=admin.token), 200)
    # Ðorđe closes his account (zero balance)
    v = step_up(srv, dorde, "account_close")
    codes.append(v["code"])
    expect(call(srv, "POST", "/v1/me/close", {"verification": v}, token=dorde.token), 200,
           what="close")
    check(m.account(d_acct)["owner"] == dorde.user_id, "closed account keeps its owner id")
    codes = sorted(set(codes))
    check(len(codes) >= 7, "codes collected: %s" % codes)

    backup = os.path.join(srv.root, "backup")
    r = subprocess.run([ctx.bin, "backup", "--data", srv.data, "--out", backup],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "coffer backup failed: %s %s" % (r.stdout, r.stderr))
    check(os.path.exists(os.path.join(backup, "identity.db"))
          and os.path.exists(os.path.join(backup, "coffer.db")), "backup files missing")
    # Scan twice: while the server runs (its -wal and -shm files are live), then stopped.
    needles = _needles(people, secrets)
    live = _scan(srv.root, needles, codes)
    srv.check_verify()
    check_eq(srv.stop(), 0, "server exit code")
    srv.check_verify()
    stopped = _scan(srv.root, needles, codes)
    found = live + [h for h in stopped if h not in live]
    check(not found, "plaintext found at rest (%d hits):\n  %s"
          % (len(found), "\n  ".join(found[:30])))


def _needles(people, secrets):
    """{bytes: what} to look for: names, name parts, logins and their pieces in every case and
    normalization form, and the passwords and TOTP material as they were typed."""
    words = []
    for name, login, _pw in people:
        words.append(name)
        words.extend(w for w in re.split(r"[\s\-]+", name) if len(w) >= 2)
        words.append(login)
        if "@" in login:
            words.append(login.split("@")[0])
        else:
            national = "0" + login[3:]
            words.extend([login.lstrip("+"), login[3:], national,
                          "%s %s" % (national[:5], national[5:]),
                          "%s %s %s" % (login[:3], login[3:7], login[7:])])
    needles = {}
    for w in words:
        for v in _variants(w):
            needles.setdefault(v, w)
    for s in secrets:
        needles.setdefault(s.encode("utf-8"), "a password or TOTP secret or recovery code")
    return needles


def _scan(root, needles, codes):
    """Every byte of every file under root (data directory, backups, server logs): the hits of
    needles (ASCII ones case-insensitively), and of the one-time codes in the logs."""
    ascii_needles = {n.lower(): w for n, w in needles.items() if n.isascii()}
    other_needles = {n: w for n, w in needles.items() if not n.isascii()}
    files = []
    for top, _dirs, names in os.walk(root):
        files.extend(os.path.join(top, fn) for fn in names)
    seen = {os.path.basename(f) for f in files}
    check({"coffer.db", "identity.db"} <= seen, "data files not found: %s" % sorted(seen))
    check(any(f.endswith(".log") for f in files), "no server log files under %s" % root)
    found = []
    control = False
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:  # a -wal or -shm file removed meanwhile
            continue
        rel = os.path.relpath(path, root)
        low = data.lower()
        # positive control: a device name is stored in the clear; the scan must see it
        control = control or b"scan device" in data
        for n, w in ascii_needles.items():
            at = low.find(n)
            if at >= 0:
                found.append("%s: %r (from %r) at %d: %r"
                             % (rel, n, w, at, data[max(0, at - 40):at + len(n) + 40]))
        for n, w in other_needles.items():
            at = data.find(n)
            if at >= 0:
                found.append("%s: %r (from %r) at %d" % (rel, n, w, at))
        if path.endswith(".log"):
            text = _log_text_without_times(data)
            for code in codes:
                hit = re.search(r"(?<![0-9A-Za-z])%s(?![0-9A-Za-z])" % code, text)
                if hit:
                    found.append("%s: one-time code %s in a log: %r"
                                 % (rel, code, text[max(0, hit.start() - 80):hit.end() + 40]))
    check(control, "the scan did not see the device name stored in the clear: it reads nothing")
    return found


TESTS = [
    test_registration,
    test_password_rules,
    test_sign_in,
    test_throttling,
    test_sign_out,
    test_sessions,
    test_password_change,
    test_password_reset,
    test_totp,
    test_second_factor_guessing_is_limited,
    test_code_rate_limits,
    test_login_change,
    test_staff_enrolment,
    test_operator_token,
    test_roles,
    test_step_up_binding,
    test_export,
    test_close,
    test_audit,
    test_merchants,
    test_zz_verify_shared,
    test_audit_tamper,
    test_no_plaintext_at_rest,
]

if __name__ == "__main__":
    harness.main(TESTS)
