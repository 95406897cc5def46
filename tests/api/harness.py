"""harness.py - shared helpers for Coffer's black-box API tests (Python 3 standard library only).

A test script builds a list of test functions, each taking a Context, and calls main(tests).
The runner parses `--bin PATH --src PATH` (CMake passes both), runs every test (or those named
on the command line), prints "PASS name" / "FAIL name: reason", ends with "N passed, M failed"
and exits non-zero on any failure.

Servers are started with Server(bin).start(): a fresh temporary directory (removed by close()),
a free loopback port, readiness by polling /healthz, the operator token read from
DATA/operator.token (or the COFFER_OPERATOR_TOKEN it was started with). stop() sends SIGTERM and
waits; only if the process hangs is SIGKILL sent, and only ever to the PID of the process this
harness started. Server(bin, args=[...]) adds serve flags; with tls_context=an ssl.SSLContext it
polls and talks HTTPS instead of HTTP; listen_host replaces 127.0.0.1 in --listen (readiness is
still polled on 127.0.0.1).

The operator token can only create the first admin, so on its first start over a fresh database
a Server bootstraps one (identity_helpers.bootstrap_admin: sign-in and TOTP enrolment included):
srv.operator_token is the raw operator token, srv.admin the Staff tuple and srv.token the
admin's session token, which Client sends by default. A restart over the same data keeps that
session (sessions live in the database). Several servers over one database share one admin:
bootstrap on the first, hand its Staff to the others with Server(..., admin=first.admin) or
srv.use_admin(staff). Server(..., bootstrap=False) starts without creating an admin (then
srv.token is None until srv.bootstrap() or srv.use_admin()).
"""

import argparse
import atexit
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import identity_helpers  # noqa: E402

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 30.0

ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    """assert that survives python -O and carries a message."""
    if not cond:
        raise TestFailure(msg)


def check_eq(actual, expected, what):
    if actual != expected:
        raise TestFailure("%s: expected %r, got %r" % (what, expected, actual))


def id_number(text):
    """The number inside an id such as acct_0000000000001 or tr_000000000000Z."""
    code = text.rsplit("_", 1)[-1]
    n = 0
    for ch in code:
        n = n * 32 + ID_ALPHABET.index(ch)
    return n


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_key_counter = itertools.count(1)
_key_prefix = "t%08x" % random.getrandbits(32)


def new_key(tag="k"):
    """A fresh Idempotency-Key, unique within this run (and, with the random prefix, across)."""
    return "%s-%s-%d" % (_key_prefix, tag, next(_key_counter))


# ------------------------------------------------------------------------------------------------
# Server process


# With COFFER_TEST_PG_URL set (the PostgreSQL pass of `make test`), every Server gets a fresh
# database on that cluster unless it is handed one to share (several servers, one database).
PG_URL = os.environ.get("COFFER_TEST_PG_URL")
_db_counter = [0]


def pg_create_db():
    """Creates a fresh database on the test cluster; returns (url, name)."""
    _db_counter[0] += 1
    name = "coffer_api_%d_%d" % (os.getpid(), _db_counter[0])
    subprocess.run(["psql", PG_URL, "-qAtc", "CREATE DATABASE %s" % name], check=True,
                   capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    return PG_URL.rsplit("/", 1)[0] + "/" + name, name


def pg_drop_db(name):
    subprocess.run(["psql", PG_URL, "-qAtc", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name],
                   capture_output=True, stdin=subprocess.DEVNULL, timeout=60)


class Server:
    """One coffer server process over a data directory it may outlive (restart keeps it)."""

    def __init__(self, bin_path, root=None, log_level="info", env=None, db=None, args=None,
                 tls_context=None, listen_host="127.0.0.1", admin=None, bootstrap=True):
        self.db = db
        self.db_name = None
        if db is None and PG_URL:
            self.db, self.db_name = pg_create_db()
        self.bin = bin_path
        self.owns_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="coffer-api-test-")
        self.data = os.path.join(self.root, "data")
        self.log_level = log_level
        self.extra_env = env or {}
        self.extra_args = list(args or [])
        self.tls_context = tls_context
        self.listen_host = listen_host
        self.proc = None
        self.port = None
        self.operator_token = None
        self.admin = None  # identity_helpers.Staff of the admin whose session self.token is
        self.token = None  # that admin's session token (what Client sends by default)
        self.auto_bootstrap = bootstrap
        if admin is not None:
            self.use_admin(admin)
        self.starts = 0
        _live_servers.add(self)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self):
        check(self.proc is None, "server already running")
        last_err = None
        for _attempt in range(3):  # a port taken between free_port() and bind is retried
            try:
                self._start_once()
                break
            except TestFailure as e:
                last_err = e
                if self.proc is not None and self.proc.poll() is None:
                    self._terminate()
                self.proc = None
        else:
            raise last_err
        # Outside the retries: a second attempt would meet the admin the first one created.
        if self.admin is None and self.auto_bootstrap:
            self.bootstrap()
        return self

    def _start_once(self):
        self.starts += 1
        self.port = free_port()
        env = dict(os.environ)
        env.pop("COFFER_CONFIG", None)
        env.pop("COFFER_DATA", None)
        env.pop("COFFER_LISTEN", None)
        for name in ("COFFER_TLS_CERT", "COFFER_TLS_KEY", "COFFER_INSECURE_HTTP"):
            env.pop(name, None)
        env["COFFER_LOG_LEVEL"] = self.log_level
        # KYC tier limits are on by default; tests that are not about them turn them off
        env["COFFER_KYC_ENFORCE"] = "0"
        env.update(self.extra_env)
        self.stdout_path = os.path.join(self.root, "stdout.%d.log" % self.starts)
        self.stderr_path = os.path.join(self.root, "stderr.%d.log" % self.starts)
        # Logs go to files, never to pipes nobody reads (a full pipe would block the server).
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [self.bin, "serve", "--data", self.data, "--listen",
                 "%s:%d" % (self.listen_host, self.port)] + self.db_args() + self.extra_args,
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise TestFailure("server exited with %s during start: %s"
                                  % (self.proc.returncode, self.stderr_tail()))
            if self._healthz_ok():
                break
            if time.monotonic() > deadline:
                raise TestFailure("server not ready after %.0f s: %s"
                                  % (READY_TIMEOUT_S, self.stderr_tail()))
            time.sleep(0.05)
        # The banner is printed right after the listener starts; give it a moment.
        while "coffer: serving on" not in self.stdout_text():
            if time.monotonic() > deadline:
                raise TestFailure("no 'coffer: serving on' line on stdout")
            time.sleep(0.02)
        token_file = os.path.join(self.data, "operator.token")
        if "COFFER_OPERATOR_TOKEN" in self.extra_env and not os.path.exists(token_file):
            self.operator_token = self.extra_env["COFFER_OPERATOR_TOKEN"]
        else:
            with open(token_file) as f:
                self.operator_token = f.read().strip()
        check(self.operator_token, "empty operator token")

    # -- identity ---------------------------------------------------------------------------

    def bootstrap(self):
        """Creates the first admin with the operator token (signed in, TOTP enrolled) and makes
        its session this server's token; returns the Staff tuple."""
        check(self.running(), "bootstrap on a stopped server")
        try:
            staff = identity_helpers.bootstrap_admin(self.port, self.operator_token,
                                                     tls_context=self.tls_context)
        except AssertionError as e:
            raise TestFailure("bootstrapping the first admin failed: %s" % e)
        self.use_admin(staff)
        return staff

    def use_admin(self, staff):
        """Acts as an existing admin (bootstrapped on another server over the same database)."""
        self.admin = staff
        self.token = staff.token

    def _healthz_ok(self):
        conn = _connection(self.port, 2, self.tls_context)
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _terminate(self):
        """SIGTERM our own process; SIGKILL it (by its PID) only if it hangs."""
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return None
        return proc.returncode

    def stop(self):
        """Clean stop; returns the exit code (None when it had to be killed)."""
        if self.proc is None:
            return 0
        rc = self._terminate()
        self.proc = None
        return rc

    def kill9(self):
        """Crash the server: SIGKILL to the PID we started."""
        check(self.proc is not None, "kill9 on a stopped server")
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def db_args(self):
        return ["--db", self.db] if self.db else []

    def close(self):
        try:
            if self.proc is not None:
                self.stop()
            if self.db_name is not None:
                pg_drop_db(self.db_name)
                self.db_name = None
        finally:
            if self.owns_root and not os.environ.get("COFFER_TEST_KEEP"):
                shutil.rmtree(self.root, ignore_errors=True)
            elif self.owns_root:
                print("kept %s" % self.root, flush=True)
            _live_servers.discard(self)

    # -- helpers ----------------------------------------------------------------------------

    def client(self, **kw):
        kw.setdefault("tls_context", self.tls_context)
        return Client(self.port, self.token, **kw)

    def verify(self):
        """Runs `coffer verify` on the data directory; returns (exit code, stdout + stderr)."""
        r = subprocess.run([self.bin, "verify", "--data", self.data] + self.db_args(),
                           capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout + r.stderr

    def check_verify(self):
        rc, out = self.verify()
        check(rc == 0 and out.startswith("ok:"),
              "coffer verify failed (exit %d): %s" % (rc, out.strip()[:2000]))
        return out

    def crashed(self):
        """A description when the process ended without being asked to, else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        rc = self.proc.returncode
        fatal = [l for l in self.stderr_tail(20000).splitlines()
                 if '"fatal"' in l or '"error"' in l or "assert" in l.lower()]
        return "server (pid %d) exited with %s%s" % (
            self.proc.pid, "signal %d" % -rc if rc < 0 else "code %d" % rc,
            (": " + " | ".join(fatal[-3:])) if fatal else "")

    def stdout_text(self):
        try:
            with open(self.stdout_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stderr_tail(self, n=2000):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


_live_servers = set()
atexit.register(lambda: _close_all_servers())


def _close_all_servers():
    for s in list(_live_servers):
        try:
            s.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# ------------------------------------------------------------------------------------------------
# HTTP client


def _connection(port, timeout, tls_context=None):
    """A connection to 127.0.0.1:port: HTTPS when given an ssl.SSLContext, else plain HTTP."""
    if tls_context is not None:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                           context=tls_context)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


class Client:
    """A keep-alive client. get/post/request return (status, headers, parsed body).

    The parsed body is the decoded JSON for JSON answers, else the text. The raw bytes of the last
    answer are in self.last_raw. With retry=True a request that fails because the server closed
    an idle connection is sent once more on a new connection (safe for GETs and keyed POSTs).
    """

    def __init__(self, port, token, retry=True, timeout=HTTP_TIMEOUT_S, tls_context=None):
        self.port = port
        self.tls_context = tls_context
        self.token = token
        self.retry = retry
        self.timeout = timeout
        self.conn = None
        self.last_raw = b""

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _connect(self):
        if self.conn is None:
            self.conn = _connection(self.port, self.timeout, self.tls_context)
        return self.conn

    def raw(self, method, path, body=None, headers=None, key=None, token=True,
            content_type="application/json"):
        """Returns (status, headers, raw bytes). body: bytes, str, or a JSON-able object."""
        if body is not None and not isinstance(body, (bytes, bytearray)):
            if not isinstance(body, str):
                body = json.dumps(body, separators=(",", ":"))
            body = body.encode("utf-8")
        h = {}
        if token is True:
            h["Authorization"] = "Bearer " + self.token
        elif token:
            h["Authorization"] = token
        if body is not None and content_type is not None:
            h["Content-Type"] = content_type
        if key is not None:
            h["Idempotency-Key"] = key
        if headers:
            h.update(headers)
        attempts = 2 if self.retry else 1
        for attempt in range(attempts):
            conn = self._connect()
            try:
                conn.request(method, path, body=body, headers=h)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                self.last_raw = data
                return resp.status, resp.headers, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine):
                self.close()
                if attempt + 1 >= attempts:
                    raise
            except Exception:
                self.close()
                raise
        raise AssertionError("unreachable")

    def request(self, method, path, body=None, **kw):
        status, headers, data = self.raw(method, path, body, **kw)
        ctype = headers.get("Content-Type", "") or ""
        parsed = data.decode("utf-8", errors="replace")
        if "json" in ctype and data:
            try:
                parsed = json.loads(data)
            except ValueError as e:
                raise TestFailure("%s %s: answer is not JSON (%s): %r"
                                  % (method, path, e, data[:200]))
        return status, headers, parsed

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, key="auto", **kw):
        if key == "auto":
            key = new_key()
        return self.request("POST", path, body, key=key, **kw)

    # -- convenience ------------------------------------------------------------------------

    def ok(self, expected, method, path, body=None, **kw):
        """Request that must answer `expected`; returns the parsed body."""
        status, _h, parsed = self.request(method, path, body, **kw)
        check(status == expected, "%s %s: expected %d, got %d: %s"
              % (method, path, expected, status, str(parsed)[:500]))
        return parsed

    def account(self, acct_id):
        return self.ok(200, "GET", "/v1/ledger/accounts/" + acct_id)

    def transfer(self, tr_id):
        return self.ok(200, "GET", "/v1/ledger/transfers/" + tr_id)

    def all_accounts(self, limit=1000):
        out, cursor = [], None
        while True:
            path = "/v1/ledger/accounts?limit=%d" % limit
            if cursor:
                path += "&cursor=" + cursor
            page = self.ok(200, "GET", path)
            out.extend(page["data"])
            cursor = page["next_cursor"]
            if cursor is None:
                return out

    def history(self, acct_id, limit=1000):
        out, cursor = [], None
        while True:
            path = "/v1/ledger/accounts/%s/transfers?limit=%d" % (acct_id, limit)
            if cursor:
                path += "&cursor=" + cursor
            page = self.ok(200, "GET", path)
            out.extend(page["data"])
            cursor = page["next_cursor"]
            if cursor is None:
                return out


def make_account(client, currency="USD", kind="customer", normal=None, no_overdraft=None,
                 owner=None, metadata=None, key=None):
    body = {"currency": currency, "kind": kind}
    if normal is not None:
        body["normal"] = normal
    if no_overdraft is not None:
        body["no_overdraft"] = no_overdraft
    if owner is not None:
        body["owner"] = owner
    if metadata is not None:
        body["metadata"] = metadata
    status, _h, acct = client.post("/v1/ledger/accounts", body, key=key or new_key("acct"))
    check(status == 201, "account create: expected 201, got %d: %s" % (status, acct))
    return acct


def make_source(client, currency="USD"):
    """A debit-normal system account without overdraft protection: the funding source."""
    return make_account(client, currency=currency, kind="system", normal="debit")


def transfer(client, debit, credit, amount, currency="USD", key=None, expect=201, **extra):
    body = {"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
            "currency": currency}
    body.update(extra)
    status, _h, tr = client.post("/v1/ledger/transfers", body, key=key or new_key("tr"))
    check(status == expect, "transfer %s -> %s %d: expected %d, got %d: %s"
          % (debit, credit, amount, expect, status, tr))
    return tr


def fund(client, source, dest, amount, currency="USD"):
    """Moves amount from the source account (an id or an account dict) into dest."""
    if isinstance(source, dict):
        source = source["id"]
    if isinstance(dest, dict):
        dest = dest["id"]
    return transfer(client, source, dest, amount, currency)


def currency_totals(accounts):
    """{currency: [debits_posted, credits_posted, debits_pending, credits_pending]}"""
    t = {}
    for a in accounts:
        s = t.setdefault(a["currency"], [0, 0, 0, 0])
        s[0] += a["debits_posted"]
        s[1] += a["credits_posted"]
        s[2] += a["debits_pending"]
        s[3] += a["credits_pending"]
    return t


def check_conservation(accounts):
    for cur, (dp, cp, dpe, cpe) in currency_totals(accounts).items():
        check(dp == cp, "%s: sum(debits_posted) %d != sum(credits_posted) %d" % (cur, dp, cp))
        check(dpe == cpe, "%s: sum(debits_pending) %d != sum(credits_pending) %d"
              % (cur, dpe, cpe))


def run_threads(n, target, *args):
    """Runs target(i, *args) on n threads; re-raises the first exception of any thread."""
    errors = []

    def wrap(i):
        try:
            target(i, *args)
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            errors.append((i, e, traceback.format_exc()))

    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        i, e, tb = errors[0]
        raise TestFailure("thread %d failed: %s\n%s" % (i, e, tb))


# ------------------------------------------------------------------------------------------------
# Runner


class Context:
    def __init__(self, args):
        self.bin = os.path.abspath(args.bin)
        self.src = os.path.abspath(args.src) if args.src else None
        self.args = args
        self._shared = None

    def server(self, **kw):
        """A new server, started; closed by the runner after the test if still open."""
        return Server(self.bin, **kw).start()

    def shared(self):
        """One server shared by the tests of a script (they create their own accounts)."""
        if self._shared is None:
            self._shared = Server(self.bin).start()
        return self._shared

    def close(self):
        if self._shared is not None:
            self._shared.close()
            self._shared = None


def main(tests):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="path of the coffer binary")
    ap.add_argument("--src", default=None, help="source tree (unused by most tests)")
    ap.add_argument("--pg-state", default=None,
                    help="the test cluster's state directory (scripts/pg-cluster.sh), for tests "
                         "that stop and start the database")
    ap.add_argument("only", nargs="*", help="run only these tests")
    args = ap.parse_args()
    check(os.access(args.bin, os.X_OK), "not an executable: %s" % args.bin)

    def on_signal(signum, _frame):
        _close_all_servers()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    ctx = Context(args)
    passed = failed = 0
    t_all = time.monotonic()
    try:
        for fn in tests:
            name = fn.__name__
            if args.only and name not in args.only:
                continue
            before = set(_live_servers)
            reason = None
            try:
                fn(ctx)
            except Exception as e:  # noqa: BLE001 - every failure is reported, then we go on
                reason = str(e) or type(e).__name__
                if not isinstance(e, AssertionError):
                    reason = "%s: %s\n%s" % (type(e).__name__, reason, traceback.format_exc())
            # A server that died under a test fails that test, whatever it asserted.
            deaths = [s.crashed() for s in list(_live_servers) if s.crashed()]
            if deaths:
                reason = (reason + "\n  " if reason else "") + "\n  ".join(deaths)
            for s in set(_live_servers) - before:
                if s is not ctx._shared:
                    s.close()
            if ctx._shared is not None and ctx._shared.crashed():
                ctx._shared.proc = None
                try:
                    ctx._shared.start()  # later tests go on over the same data
                except Exception as e:  # noqa: BLE001
                    reason = (reason or "") + "\n  restart of the shared server failed: %s" % e
                    ctx._shared.close()
                    ctx._shared = None
            if reason is None:
                passed += 1
                print("PASS %s" % name, flush=True)
            else:
                failed += 1
                print("FAIL %s: %s" % (name, reason), flush=True)
    finally:
        ctx.close()
        _close_all_servers()
    print("(%.1f s)" % (time.monotonic() - t_all), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)
