#!/usr/bin/env python3
"""Creates a funding account and N funded customer accounts for the HTTP benchmarks.

Usage: setup_accounts.py BASE_URL TOKEN N OUT_FILE
Writes one customer account id per line to OUT_FILE.
"""
import http.client
import json
import sys
import urllib.parse


def main():
    base, token, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port)

    def post(path, body, key=None):
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        conn.request("POST", path, json.dumps(body), headers)
        r = conn.getresponse()
        data = json.loads(r.read())
        if r.status >= 300:
            sys.exit("setup failed: %s %s" % (r.status, data))
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
