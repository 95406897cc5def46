#!/usr/bin/env python3
"""Sets up the merchant QR payment benchmark on a running server: an admin (bootstrapped with
the operator token), a merchant with a payment profile and a fee (150 bps + 10 minor units), N
registered customers with funded USD wallets, and the merchant's static EMVCo code.

Usage: setup_payments.py BASE_URL OPERATOR_TOKEN N OUT_FILE [RULES]
Writes one line per customer to OUT_FILE (mode 0600): "<session token> <payload>". With RULES,
also stores that many monitoring rules (comparisons, in-lists, velocity features) that the
benchmark's payments never match: every payment is scored against all of them and allowed.
"""
import http.client
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "api"))

import identity_helpers as ih  # noqa: E402


# Realistic shapes, thresholds no benchmark payment reaches (%d: the rule's number).
RULES = [
    ('kind == "payment" and amount_minor > 1000000%d', "block"),
    ("count_1m_user > 100%d", "review"),
    ('sum_24h_user > 10000000000%d and currency == "USD"', "block"),
    ("payee_new and amount_minor > 500000%d", "challenge"),
    ("mcc in [7995, 6051, 60%02d] and hour_utc < 24", "review"),
    ("device_new and count_1h_device > 50%d", "challenge"),
    ("kyc_tier == 0 and sum_1h_user > 1000000000%d", "block"),
    ("count_24h_payee > 100000000%d", "review"),
    ("account_age_s < 60 and amount_minor > 10000000%d", "review"),
    ('not (currency in ["USD", "EUR"]) and amount_minor > %d', "block"),
]


def main():
    args = sys.argv[1:]
    if len(args) not in (4, 5):
        sys.exit("usage: setup_payments.py BASE_URL OPERATOR_TOKEN N OUT_FILE [RULES]")
    base, operator_token, n, out = args[0], args[1], int(args[2]), args[3]
    rules_n = int(args[4]) if len(args) == 5 else 0
    u = urllib.parse.urlparse(base)
    if u.scheme != "http" or u.port is None or u.hostname not in ("127.0.0.1", "localhost"):
        sys.exit("setup failed: BASE_URL must be http://127.0.0.1:PORT, not %s" % base)
    admin = ih.bootstrap_admin(u.port, operator_token).token

    def call(method, path, body=None, token=admin, key=None, want=(200, 201)):
        status, data, _h = ih.call(u.port, method, path, body, token=token, key=key)
        if status not in want:
            sys.exit("setup failed: %s %s: %s %s" % (method, path, status, data))
        return data

    for i in range(rules_n):
        cond, action = RULES[i % len(RULES)]
        call("POST", "/v1/risk/rules", {"id": "bench_%02d" % i, "condition": cond % (i,),
                                        "action": action, "reason": "bench_%02d" % i},
             key="bench-rule-%d" % i)
    owner = "bench.owner@example.org"
    m = call("POST", "/v1/admin/merchants",
             {"legal_name": "Bench Coffee Ltd", "display_name": "Bench Coffee",
              "owner": {"login": owner, "password": ih.DEFAULT_PASSWORD, "name": "Ben Owner"}})
    call("POST", "/v1/admin/merchants/%s/profile" % m["merchant_id"],
         {"mcc": "5814", "country": "GB", "city": "London", "currency": "USD",
          "bank_account": "GB82WEST12345698765432", "fee_bps": 150, "fee_fixed_minor": 10})
    owner_token = call("POST", "/v1/auth/sign-in",
                       {"login": owner, "password": ih.DEFAULT_PASSWORD}, token=None)["token"]
    payload = call("POST", "/v1/merchant/qr", None, token=owner_token)["payload"]
    bank = call("POST", "/v1/ledger/accounts", {"currency": "USD", "normal": "debit",
                                                "kind": "system"}, key="bench-bank")["id"]
    lines, items = [], []
    for i in range(n):
        cust = ih.register_customer(u.port, admin, "bench.c%d@example.org" % i)
        acct = call("POST", "/v1/me/accounts", {"currency": "USD"}, token=cust.token)["id"]
        items.append({"debit_account_id": bank, "credit_account_id": acct, "amount": 10**12,
                      "currency": "USD", "code": "fund", "idempotency_key": "fund-%d" % i})
        lines.append("%s %s" % (cust.token, payload))
    res = call("POST", "/v1/ledger/transfers/batch", {"transfers": items})
    if any(x["status"] == "error" for x in res["data"]):
        sys.exit("funding failed: %s" % res["data"])
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
