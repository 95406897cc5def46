#!/usr/bin/env python3
"""test_tls.py - HTTPS for `coffer serve` and the development certificates of `coffer cert`.

  * `coffer cert --out DIR [--host NAME ...]` writes DIR/cert.pem (0644) and DIR/key.pem (0600):
    X.509 v3, CN = the first host, subjectAltName localhost, 127.0.0.1, ::1 and the hosts, 90
    days; it refuses to overwrite and rejects a malformed host;
  * `coffer serve --tls-cert --tls-key` answers over TLS (verified against cert.pem as the CA,
    server name "localhost"), with Strict-Transport-Security and nosniff on every answer; a
    plain-HTTP request to that port gets no HTTP answer; TLS 1.1 is refused, TLS 1.2 accepted;
  * plain HTTP carries nosniff but no HSTS;
  * serve refuses (exit 2, a message, nothing listening) a non-loopback address without TLS
    unless --insecure-http (or COFFER_INSECURE_HTTP=1) is given, a certificate without its key
    (or the reverse), a key file that group or others may read, and a key that does not belong
    to the certificate; COFFER_TLS_CERT / COFFER_TLS_KEY and the config file's tls_cert /
    tls_key / insecure_http work like the flags.

Every process is started by this script and stopped by its PID (harness.Server, or
subprocess.run for the runs that must exit on their own).
Usage: test_tls.py --bin build/coffer --src . [test names...]
"""

import atexit
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_eq, free_port, new_key  # noqa: E402

HSTS = "max-age=31536000; includeSubDomains"
RUN_TIMEOUT_S = 30
VALIDITY_DAYS = 90

_tmp_root = tempfile.mkdtemp(prefix="coffer-tls-test-")
atexit.register(lambda: shutil.rmtree(_tmp_root, ignore_errors=True))
_cert_dir = [None]


def tmp_dir(tag):
    return tempfile.mkdtemp(prefix=tag + "-", dir=_tmp_root)


def clean_env(extra=None):
    """The caller's environment without any COFFER_* setting that would change serve."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("COFFER_") or k == "COFFER_TEST_KEEP"}
    env["COFFER_LOG_LEVEL"] = "info"
    env.update(extra or {})
    return env


def run(ctx, args, env=None):
    """Runs the coffer binary to completion; returns (exit code, stdout, stderr)."""
    r = subprocess.run([ctx.bin] + args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                       stdin=subprocess.DEVNULL, env=clean_env(env))
    return r.returncode, r.stdout, r.stderr


def dev_cert(ctx):
    """One certificate pair for the whole script: (cert path, key path)."""
    if _cert_dir[0] is None:
        d = os.path.join(tmp_dir("cert"), "tls")
        rc, out, err = run(ctx, ["cert", "--out", d])
        check(rc == 0, "coffer cert failed (exit %d): %s" % (rc, err))
        _cert_dir[0] = d
    return os.path.join(_cert_dir[0], "cert.pem"), os.path.join(_cert_dir[0], "key.pem")


def client_context(ctx, minimum=None, maximum=None):
    """Verifies the server against the development certificate, as its own CA."""
    cert, _key = dev_cert(ctx)
    c = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert)
    if minimum is not None:
        c.minimum_version = minimum
    if maximum is not None:
        c.maximum_version = maximum
    return c


def tls_server(ctx):
    cert, key = dev_cert(ctx)
    return harness.Server(ctx.bin, args=["--tls-cert", cert, "--tls-key", key],
                          tls_context=client_context(ctx)).start()


def https_get(port, context, path="/healthz"):
    """GET over TLS with server_hostname "localhost"; returns (status, headers, TLS version)."""
    conn = http.client.HTTPSConnection("localhost", port, timeout=10, context=context)
    conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                    server_hostname="localhost")
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.headers, conn.sock.version()
    finally:
        conn.close()


def port_closed(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def refused(ctx, args, expect_in, env=None, what="", host="127.0.0.1"):
    """serve on host:(a free port) with these flags must exit 2 with expect_in on stderr and
    leave the port closed."""
    port = free_port()
    data = os.path.join(tmp_dir("refuse"), "data")
    listen = ["--listen", "%s:%d" % (host, port)]
    rc, out, err = run(ctx, ["serve", "--data", data] + listen + args, env)
    check_eq(rc, 2, "%s: exit code (stderr: %s)" % (what, err.strip()))
    check(expect_in in err, "%s: stderr lacks %r: %s" % (what, expect_in, err.strip()))
    check("serving on" not in out, "%s: announced serving: %s" % (what, out))
    check(port_closed(port), "%s: something listens on port %d" % (what, port))


# ------------------------------------------------------------------------------------------------
# coffer cert


def test_cert_files(ctx):
    d = os.path.join(tmp_dir("cert-files"), "out")
    rc, out, err = run(ctx, ["cert", "--out", d, "--host", "wallet.example.test",
                             "--host", "10.0.0.7", "--host", "localhost"])
    check(rc == 0, "coffer cert failed (exit %d): %s" % (rc, err))
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    check(cert in out and key in out, "output does not say where the files are: %s" % out)
    check_eq(os.stat(cert).st_mode & 0o777, 0o644, "cert.pem mode")
    check_eq(os.stat(key).st_mode & 0o777, 0o600, "key.pem mode")
    with open(key) as f:
        check(f.read().startswith("-----BEGIN PRIVATE KEY-----"), "key.pem is not a PKCS#8 key")
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        print("note: this Python cannot decode certificates; contents not checked", flush=True)
        return
    info = decode(cert)
    check_eq(info["version"], 3, "X.509 version")
    check_eq(info["subject"], ((("commonName", "wallet.example.test"),),), "subject")
    check_eq(info["issuer"], info["subject"], "issuer (self-signed)")
    check_eq(list(info["subjectAltName"]),
             [("DNS", "localhost"), ("IP Address", "127.0.0.1"),
              ("IP Address", "0:0:0:0:0:0:0:1"), ("DNS", "wallet.example.test"),
              ("IP Address", "10.0.0.7")], "subjectAltName")
    days = (ssl.cert_time_to_seconds(info["notAfter"]) -
            ssl.cert_time_to_seconds(info["notBefore"])) / 86400
    check_eq(days, VALIDITY_DAYS, "validity in days")
    check(abs(ssl.cert_time_to_seconds(info["notBefore"]) - time.time()) < 300,
          "notBefore is not now: %s" % info["notBefore"])
    serial = int(info["serialNumber"], 16)
    check(0 < serial < 2 ** 128 and serial.bit_length() > 64,
          "serial is not a random 128-bit number: %x" % serial)
    rc, _out, err = run(ctx, ["cert", "--out", os.path.join(tmp_dir("cert-cn"), "d")])
    check(rc == 0, "coffer cert without --host failed: %s" % err)


def test_cert_refuses_overwrite(ctx):
    d = os.path.join(tmp_dir("cert-overwrite"), "out")
    rc, _out, err = run(ctx, ["cert", "--out", d])
    check(rc == 0, "first coffer cert failed: %s" % err)
    with open(os.path.join(d, "cert.pem"), "rb") as f:
        cert_before = f.read()
    with open(os.path.join(d, "key.pem"), "rb") as f:
        key_before = f.read()
    rc, _out, err = run(ctx, ["cert", "--out", d, "--host", "other.test"])
    check(rc != 0, "second coffer cert into the same directory succeeded")
    check("exists" in err, "no 'exists' in the refusal: %s" % err)
    os.remove(os.path.join(d, "cert.pem"))  # the key alone still blocks a new pair
    rc, _out, err = run(ctx, ["cert", "--out", d])
    check(rc != 0 and "key.pem" in err, "a lone key.pem was not protected: %s" % err)
    with open(os.path.join(d, "key.pem"), "rb") as f:
        check(f.read() == key_before, "key.pem was changed")
    check(not os.path.exists(os.path.join(d, "cert.pem")), "cert.pem was written beside the key")
    check(len(cert_before) > 0, "empty cert.pem")


def test_cert_bad_arguments(ctx):
    base = tmp_dir("cert-bad")
    for args, what in ((["--host", "a b"], "host with a space"),
                       (["--host", "-leading.test"], "label starting with '-'"),
                       (["--host", "x" * 65], "host of 65 characters"),
                       (["--bogus"], "unknown flag")):
        d = os.path.join(base, "d%d" % len(os.listdir(base)))
        rc, _out, err = run(ctx, ["cert", "--out", d] + args)
        check_eq(rc, 2, "%s: exit code (stderr: %s)" % (what, err.strip()))
        check(not os.path.exists(os.path.join(d, "key.pem")), "%s: wrote a key" % what)
    rc, _out, err = run(ctx, ["cert"])
    check(rc == 2 and "--out" in err, "cert without --out: exit %d: %s" % (rc, err))
    rc, out, _err = run(ctx, ["--help"])
    check(rc == 0 and "cert" in out, "the usage text does not list cert")
    rc, out, _err = run(ctx, ["cert", "--help"])
    check(rc == 0 and "--out DIR" in out and "--host" in out, "cert --help: %s" % out)


# ------------------------------------------------------------------------------------------------
# serve over TLS


def test_https_healthz(ctx):
    srv = tls_server(ctx)
    check("coffer: serving on https://" in srv.stdout_text(),
          "banner does not say https: %s" % srv.stdout_text())
    status, headers, version = https_get(srv.port, client_context(ctx))
    check_eq(status, 200, "GET /healthz over TLS")
    check_eq(headers.get("Strict-Transport-Security"), HSTS, "Strict-Transport-Security")
    check_eq(headers.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options")
    check(version in ("TLSv1.2", "TLSv1.3"), "negotiated %s" % version)
    # Errors (problem+json) and the write path (suspend and resume) travel over TLS as well.
    c = srv.client()
    status, headers, _body = c.get("/v1/ledger/accounts", token=False)
    check_eq(status, 401, "GET without a token over TLS")
    check_eq(headers.get("Strict-Transport-Security"), HSTS, "HSTS on an error answer")
    status, headers, body = c.post("/v1/ledger/accounts", {"currency": "USD"},
                                   key=new_key("tls"))
    check(status < 500 and isinstance(body, dict), "POST over TLS: %d %s" % (status, body))
    check_eq(headers.get("Strict-Transport-Security"), HSTS, "HSTS on a POST answer")
    c.close()
    check_eq(srv.stop(), 0, "exit code of a SIGTERM stop")


def test_plain_http_to_tls_port_fails(ctx):
    srv = tls_server(ctx)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    status = None
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    except (http.client.HTTPException, OSError):
        pass
    finally:
        conn.close()
    check(status is None, "plain HTTP to the TLS port got an HTTP answer: %s" % status)
    status, _h, _v = https_get(srv.port, client_context(ctx))
    check_eq(status, 200, "TLS after a plain-HTTP attempt")


def tls11_contexts(ctx):
    """(client, server) contexts that speak TLS 1.1 only, or None when the local OpenSSL will
    not (the version is deprecated; Debian disables it below security level 0)."""
    cert, key = dev_cert(ctx)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client = client_context(ctx, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1)
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.minimum_version = server.maximum_version = ssl.TLSVersion.TLSv1_1
        for c in (client, server):
            c.set_ciphers("DEFAULT:@SECLEVEL=0")
        server.load_cert_chain(cert, key)
    except (ValueError, ssl.SSLError):
        return None
    return client, server


def tls11_works_locally(client, server):
    """Whether this Python can complete a TLS 1.1 handshake with itself, so that a failure
    against coffer means coffer refused."""
    listener = socket.create_server(("127.0.0.1", 0))
    result = []

    def accept():
        conn, _addr = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as s:
                result.append(s.version())
        except (ssl.SSLError, OSError):
            conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        with client.wrap_socket(socket.create_connection(listener.getsockname(), timeout=10),
                                server_hostname="localhost") as s:
            ok = s.version() == "TLSv1.1"
    except (ssl.SSLError, OSError):
        ok = False
    t.join(10)
    listener.close()
    return ok and result == ["TLSv1.1"]


def test_tls11_refused_tls12_accepted(ctx):
    srv = tls_server(ctx)
    status, _h, version = https_get(
        srv.port, client_context(ctx, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2))
    check_eq((status, version), (200, "TLSv1.2"), "a TLS 1.2-only client")
    pair = tls11_contexts(ctx)
    if pair is None or not tls11_works_locally(*pair):
        print("note: the local OpenSSL will not speak TLS 1.1; that subcheck is skipped",
              flush=True)
        return
    try:
        version = https_get(srv.port, pair[0])[2]
    except (ssl.SSLError, ConnectionError, http.client.HTTPException):
        return  # refused, as it must be
    raise harness.TestFailure("a TLS 1.1 handshake with coffer succeeded (%s)" % version)


def test_plain_http_nosniff_without_hsts(ctx):
    srv = ctx.server()
    check("coffer: serving on http://" in srv.stdout_text(), "banner does not say http")
    status, headers, _body = srv.client().get("/healthz", token=False)
    check_eq(status, 200, "GET /healthz")
    check_eq(headers.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options")
    check(headers.get("Strict-Transport-Security") is None, "HSTS over plain HTTP")


def test_tls_from_environment(ctx):
    cert, key = dev_cert(ctx)
    srv = harness.Server(ctx.bin, env={"COFFER_TLS_CERT": cert, "COFFER_TLS_KEY": key},
                         tls_context=client_context(ctx)).start()
    check("serving on https://" in srv.stdout_text(), "COFFER_TLS_* did not turn TLS on")


def test_tls_from_config_file(ctx):
    cert, key = dev_cert(ctx)
    path = os.path.join(tmp_dir("config"), "coffer.conf")
    with open(path, "w") as f:
        f.write("# TLS from the config file\ntls_cert = %s\ntls_key = %s\n" % (cert, key))
    srv = harness.Server(ctx.bin, args=["--config", path],
                         tls_context=client_context(ctx)).start()
    check("serving on https://" in srv.stdout_text(), "tls_cert/tls_key did not turn TLS on")
    srv.close()
    with open(path, "w") as f:
        f.write("insecure_http = yes\n")
    srv = harness.Server(ctx.bin, listen_host="0.0.0.0", args=["--config", path]).start()
    check("serving on http://0.0.0.0:" in srv.stdout_text(), "insecure_http = yes ignored")


# ------------------------------------------------------------------------------------------------
# refusals


def test_public_listen_without_tls_refused(ctx):
    refused(ctx, [], "not a loopback address", what="0.0.0.0 without TLS", host="0.0.0.0")
    refused(ctx, [], "not a loopback address", what=":: without TLS", host="[::]")
    refused(ctx, [], "not a loopback address", env={"COFFER_INSECURE_HTTP": "0"},
            what="COFFER_INSECURE_HTTP=0", host="0.0.0.0")


def test_public_listen_insecure_http_starts(ctx):
    srv = harness.Server(ctx.bin, listen_host="0.0.0.0", args=["--insecure-http"]).start()
    check("not loopback" in srv.stderr_tail(1 << 16), "no warning logged: %s" % srv.stderr_tail())
    check_eq(srv.client().get("/healthz", token=False)[0], 200, "GET /healthz")
    check_eq(srv.stop(), 0, "exit code of a SIGTERM stop")
    srv = harness.Server(ctx.bin, listen_host="0.0.0.0",
                         env={"COFFER_INSECURE_HTTP": "1"}).start()
    check_eq(srv.stop(), 0, "COFFER_INSECURE_HTTP=1: exit code of a SIGTERM stop")


def test_cert_without_key_refused(ctx):
    cert, key = dev_cert(ctx)
    refused(ctx, ["--tls-cert", cert], "--tls-key", what="--tls-cert alone")
    refused(ctx, ["--tls-key", key], "--tls-cert", what="--tls-key alone")
    refused(ctx, [], "--tls-key", env={"COFFER_TLS_CERT": cert}, what="COFFER_TLS_CERT alone")


def test_key_readable_by_others_refused(ctx):
    cert, key = dev_cert(ctx)
    loose = os.path.join(tmp_dir("loose"), "key.pem")
    shutil.copyfile(key, loose)
    os.chmod(loose, 0o644)
    refused(ctx, ["--tls-cert", cert, "--tls-key", loose], "chmod 600", what="key mode 0644")
    os.chmod(loose, 0o640)
    refused(ctx, ["--tls-cert", cert, "--tls-key", loose], "chmod 600", what="key mode 0640")


def test_mismatched_or_bad_pem_refused(ctx):
    cert, key = dev_cert(ctx)
    other = os.path.join(tmp_dir("other"), "tls")
    rc, _out, err = run(ctx, ["cert", "--out", other])
    check(rc == 0, "coffer cert failed: %s" % err)
    refused(ctx, ["--tls-cert", cert, "--tls-key", os.path.join(other, "key.pem")],
            "does not belong", what="key of another certificate")
    refused(ctx, ["--tls-cert", key, "--tls-key", key], "no PEM certificate",
            what="a key given as the certificate")
    refused(ctx, ["--tls-cert", cert, "--tls-key", os.path.join(other, "missing.pem")],
            "cannot open", what="missing key file")


TESTS = [
    test_cert_files,
    test_cert_refuses_overwrite,
    test_cert_bad_arguments,
    test_https_healthz,
    test_plain_http_to_tls_port_fails,
    test_tls11_refused_tls12_accepted,
    test_plain_http_nosniff_without_hsts,
    test_tls_from_environment,
    test_tls_from_config_file,
    test_public_listen_without_tls_refused,
    test_public_listen_insecure_http_starts,
    test_cert_without_key_refused,
    test_key_readable_by_others_refused,
    test_mismatched_or_bad_pem_refused,
]

if __name__ == "__main__":
    harness.main(TESTS)
