"""identity_helpers.py - signing in to Coffer from tests and benchmarks (standard library only).

Coffer has no all-powerful token: the operator token only creates the first admin, staff must
enrol TOTP on their first sign-in, and customers register with a code sent through the
development outbox. These helpers do those dances over plain http.client:

    totp(secret_b32, t=None)                       RFC 6238 code (SHA-1, 6 digits, 30 s)
    bootstrap_admin(port, operator_token, ...)     -> Staff(user_id, token, secret, recovery)
    staff_sign_in(port, login, password, secret)   -> session token (waits for a fresh TOTP step)
    create_staff(port, admin_token, login, role)   -> Staff, signed in and enrolled
    register_customer(port, admin_token, login)    -> Customer(user_id, token, login, password)
    outbox_codes(port, admin_token, login)         -> the six-digit codes sent there, newest first
    step_up(port, token, action, ...)              -> {"challenge_id", "code"} for a verification

tls_context (an ssl.SSLContext) makes every call HTTPS.
"""

import base64
import collections
import hashlib
import hmac
import http.client
import json
import re
import struct
import time
import urllib.parse

DEFAULT_PASSWORD = "Rainy-Harbour-Lantern-42"
ADMIN_LOGIN = "admin@coffer.test"

Staff = collections.namedtuple("Staff", "user_id token secret recovery login password")
Customer = collections.namedtuple("Customer", "user_id token login password")

# TOTP steps already used per secret: Coffer accepts a step once per user.
_used_steps = {}


def totp(secret_b32, t=None, step=30, digits=6):
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if t is None else t) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    value = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % (10 ** digits)
    return "%0*d" % (digits, value)


def fresh_totp(secret_b32):
    """A code for a step not used yet with this secret (waits up to one step when needed)."""
    while True:
        step = int(time.time() // 30)
        if _used_steps.get(secret_b32, -1) < step:
            _used_steps[secret_b32] = step
            return totp(secret_b32, t=step * 30)  # the step decided above, not a later one
        # the server accepts one step either side: the next step's code works at once
        if _used_steps.get(secret_b32, -1) == step:
            _used_steps[secret_b32] = step + 1
            return totp(secret_b32, t=(step + 1) * 30)
        time.sleep(max(0.05, (step + 1) * 30 - time.time() + 0.05))


def call(port, method, path, body=None, token=None, headers=None, tls_context=None, key=None):
    """One request; returns (status, parsed JSON or text, headers)."""
    if tls_context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=tls_context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = "Bearer " + token
    if key:
        h["Idempotency-Key"] = key
    h.update(headers or {})
    try:
        conn.request(method, path, data, h)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return resp.status, parsed, resp.headers
    finally:
        conn.close()


def _expect(result, status, what):
    got, body, _h = result
    if got != status:
        raise AssertionError("%s: expected %d, got %d: %s" % (what, status, got, str(body)[:300]))
    return body


def _finish_enrolment(port, mfa_token, tls_context):
    enrol = _expect(call(port, "POST", "/v1/auth/sign-in/enrol", {"mfa_token": mfa_token},
                         tls_context=tls_context), 200, "enrol")
    secret = enrol["secret"]
    done = _expect(call(port, "POST", "/v1/auth/sign-in/mfa",
                        {"mfa_token": mfa_token, "code": fresh_totp(secret)},
                        tls_context=tls_context), 200, "first TOTP")
    return secret, done


def bootstrap_admin(port, operator_token, login=ADMIN_LOGIN, password=DEFAULT_PASSWORD,
                    name="Test Admin", tls_context=None):
    """Creates the first admin with the operator token, signs in and enrols TOTP."""
    created = _expect(call(port, "POST", "/v1/bootstrap",
                           {"login": login, "password": password, "name": name},
                           token=operator_token, tls_context=tls_context), 201, "bootstrap")
    return _first_sign_in(port, created["user_id"], login, password, tls_context)


def _first_sign_in(port, user_id, login, password, tls_context):
    first = _expect(call(port, "POST", "/v1/auth/sign-in",
                         {"login": login, "password": password}, tls_context=tls_context),
                    200, "staff sign-in")
    if not first.get("enrolment_required"):
        raise AssertionError("a new staff member must enrol: %s" % first)
    secret, done = _finish_enrolment(port, first["mfa_token"], tls_context)
    return Staff(user_id, done["token"], secret, done.get("recovery_codes", []), login, password)


def staff_sign_in(port, login, password, secret, tls_context=None):
    """Signs an enrolled staff member in again; returns the session token."""
    first = _expect(call(port, "POST", "/v1/auth/sign-in", {"login": login, "password": password},
                         tls_context=tls_context), 200, "sign-in")
    done = _expect(call(port, "POST", "/v1/auth/sign-in/mfa",
                        {"mfa_token": first["mfa_token"], "code": fresh_totp(secret)},
                        tls_context=tls_context), 200, "sign-in TOTP")
    return done["token"]


def create_staff(port, admin_token, login, role, password=DEFAULT_PASSWORD, name="Staff Member",
                 tls_context=None):
    created = _expect(call(port, "POST", "/v1/admin/staff",
                           {"login": login, "password": password, "name": name, "role": role},
                           token=admin_token, tls_context=tls_context), 201, "staff create")
    return _first_sign_in(port, created["user_id"], login, password, tls_context)


CODE_RE = re.compile(r"\b(\d{6})\b")


def outbox_codes(port, admin_token, login, tls_context=None):
    """The six-digit codes sent to login through the development outbox, newest first."""
    body = _expect(call(port, "GET", "/v1/admin/outbox?to=" + urllib.parse.quote(login),
                        token=admin_token, tls_context=tls_context), 200, "outbox")
    codes = []
    for m in body["data"]:
        found = CODE_RE.search(m["body"])
        if found:
            codes.append(found.group(1))
    return codes


def register_customer(port, admin_token, login, password=DEFAULT_PASSWORD, name="Carla Customer",
                      device="test", tls_context=None):
    """Registers and verifies a customer (reading the code from the outbox as an admin)."""
    reg = _expect(call(port, "POST", "/v1/auth/register",
                       {"login": login, "password": password, "name": name},
                       tls_context=tls_context), 202, "register")
    code = outbox_codes(port, admin_token, login, tls_context)[0]
    done = _expect(call(port, "POST", "/v1/auth/register/verify",
                        {"registration_id": reg["registration_id"], "code": code,
                         "device": device}, tls_context=tls_context), 201, "register verify")
    return Customer(done["user_id"], done["token"], login, password)


def step_up(port, token, action, admin_token=None, login=None, amount_minor=None, currency=None,
            payee=None, totp_secret=None, tls_context=None):
    """Creates a challenge bound to the action and answers it: with a TOTP code when the user
    has TOTP (totp_secret), else with the code sent to login (read by admin_token)."""
    body = {"action": action}
    if amount_minor is not None:
        body["amount_minor"] = amount_minor
    if currency is not None:
        body["currency"] = currency
    if payee is not None:
        body["payee"] = payee
    chl = _expect(call(port, "POST", "/v1/me/challenges", body, token=token,
                       tls_context=tls_context), 201, "challenge")
    if chl["method"] == "totp":
        code = fresh_totp(totp_secret)
    else:
        code = outbox_codes(port, admin_token, login, tls_context)[0]
    return {"challenge_id": chl["challenge_id"], "code": code}
