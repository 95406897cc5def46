#!/usr/bin/env python3
"""Signs in as an admin and creates a funding account and N funded customer accounts for the HTTP
benchmarks.

Usage: setup_accounts.py BASE_URL OPERATOR_TOKEN N ACCOUNTS_FILE SESSION_FILE

The operator token can only create the first admin, so this bootstraps one on a fresh server
(sign-in and TOTP enrolment included, tests/api/identity_helpers.py) and does the setup with the
admin's session. Writes one customer account id per line to ACCOUNTS_FILE and the admin's session
token to SESSION_FILE (mode 0600): the benchmark load sends it as COFFER_TOKEN. Several servers
over one database share that session (it lives in the database).
"""
import http.client
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "api"))

import identity_helpers  # noqa: E402


def main():
    args = sys.argv[1:]
    if len(args) != 5:
        sys.exit("usage: setup_accounts.py BASE_URL OPERATOR_TOKEN N ACCOUNTS_FILE SESSION_FILE")
    base, operator_token, n, out, session_out = args[0], args[1], int(args[2]), args[3], args[4]
    u = urllib.parse.urlparse(base)
    if u.scheme != "http" or u.port is None or u.hostname not in ("127.0.0.1", "localhost"):
        sys.exit("setup failed: BASE_URL must be http://127.0.0.1:PORT, not %s" % base)
    try:
        session = identity_helpers.bootstrap_admin(u.port, operator_token).token
    except AssertionError as e:
        sys.exit("setup failed: bootstrapping the admin: %s" % e)
    fd = os.open(session_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(session + "\n")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def post(path, body, key=None):
        headers = {"Authorization": "Bearer " + session, "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        conn.request("POST", path, json.dumps(body), headers)
        r = conn.getresponse()
        data = json.loads(r.read())
        if r.status >= 300:
            sys.exit("setup failed: POST %s: %s %s" % (path, r.status, data))
        return data

    bank = post("/v1/ledger/accounts", {"currency": "USD", "normal": "debit", "kind": "system"},
                "setup-bank")["id"]
    ids = [post("/v1/ledger/accounts", {"currency": "USD"}, "setup-acct-%d" % i)["id"]
           for i in range(n)]
    items = [{"debit_account_id": bank, "credit_account_id": a, "amount": 10**12,
              "currency": "USD", "code": "fund", "idempotency_key": "fund-%s" % a} for a in ids]
    for i in range(0, len(items), 1000):
        res = post("/v1/ledger/transfers/batch", {"transfers": items[i:i + 1000]})
        bad = [x for x in res["data"] if x["status"] == "error"]
        if bad:
            sys.exit("funding failed: %s" % bad[0])
    with open(out, "w") as f:
        f.write("\n".join(ids) + "\n")


if __name__ == "__main__":
    main()
