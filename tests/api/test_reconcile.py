#!/usr/bin/env python3
"""test_reconcile.py - reconciliation of a gateway settlement file with the ledger, end to end.

Customers top up through the sandbox gateway (approved at once, approved later by callback,
declined, waiting for a 3-D Secure answer), withdraw to a bank account, and a merchant pays its
balance out; their operations (and the gateway references the API now shows) make a settlement
file. A file that agrees with Coffer answers no mismatch, through POST /v1/admin/reconcile and
through `coffer reconcile FILE` run beside the serving process (exit 0); a file with one
mismatch of every kind (missing on either side, amount, currency, status, type, reference,
duplicated) answers exactly those, with their lines, from both (exit 1). The window (from, to)
and its one-day margin decide what is compared. Then as an attacker would: other roles (403),
no session (401), unknown fields, malformed files (the line named), windows, bodies past the
bound (413) and at it, more rows than allowed, the CLI on a missing or broken file (exit 2),
and the CLI racing live top-ups. `coffer verify` ends every test.

Usage: test_reconcile.py --bin build/coffer --src . [test names...]
"""

import concurrent.futures
import http.client
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import (IBAN, add_card_id, call, customer, email, expect,  # noqa: E402
                         operation, topup, wait_op)

ENV = {"COFFER_CURRENCIES": "USD,EUR", "COFFER_SANDBOX_LATENCY_MS": "20",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
HEADER = "reference,op_id,type,amount_minor,currency,status"
PATH = "/v1/admin/reconcile"
BODY_MAX = 6 * 1024 * 1024  # API_RECONCILE_BODY_BYTES_MAX
LISTED_MAX = 1000           # API_RECONCILE_LISTED_MAX
ROWS_MAX = 100000           # RECONCILE_ROWS_MAX

CARD_OK, CARD_DECLINED, CARD_3DS = "4242424242424242", "4000000000000002", "4000000000003220"
CARD_ASYNC_OK = "4000000000000077"


def merchant(srv, name):
    return ph.merchant(srv, name, fee_bps=0)


def reconcile(srv, csv, token=None, **window):
    body = dict(csv=csv, **window)
    return call(srv, "POST", PATH, body, token=token or srv.token)


def cli(srv, text, *args, raw=None):
    """Runs `coffer reconcile FILE` on the server's data; returns (exit code, stdout, stderr)."""
    path = os.path.join(srv.root, "settlement-%d.csv" % next(ph.SEQ))
    with open(path, "wb") as f:
        f.write(raw if raw is not None else text.encode())
    r = subprocess.run([srv.bin, "reconcile", path, "--data", srv.data] + srv.db_args() +
                       list(args), capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def csv_of(rows, crlf=False):
    """A file: the header and rows (tuples), fields quoted when they need it."""
    def field(v):
        v = str(v)
        return '"%s"' % v.replace('"', '""') if any(c in v for c in ',"\r\n') else v
    end = "\r\n" if crlf else "\n"
    return end.join([HEADER] + [",".join(field(v) for v in r) for r in rows]) + end


def api_set(answer):
    """The answer's mismatches as sorted (kind, op_id, reference, line) tuples."""
    return sorted((m["kind"], m.get("op_id", ""), m.get("reference", ""), m.get("line", 0))
                  for m in answer["mismatches"])


LINE_RE = re.compile(r"^([a-z_]+)((?: [a-z_]+=\S+)*)$")


def cli_set(stdout):
    """The CLI's mismatch lines as the same tuples, and its summary line."""
    out, summary = [], None
    for line in stdout.splitlines():
        if line.startswith("reconcile: "):
            summary = line
            continue
        m = LINE_RE.match(line)
        check(m is not None, "a CLI line of an unexpected shape: %r" % line)
        kv = dict(p.split("=", 1) for p in m.group(2).split())
        out.append((m.group(1), kv.get("op_id", ""), kv.get("reference", ""),
                    int(kv.get("line", 0))))
    check(summary is not None, "no summary line in %r" % stdout[-500:])
    return sorted(out), summary


def raw_post(srv, body):
    """POSTs JSON bytes as they are; returns (status, decoded answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    try:
        conn.request("POST", PATH, body, {"Content-Type": "application/json",
                                          "Authorization": "Bearer " + srv.token})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def failed_op_id(res):
    """The operation id in a failed top-up's problem detail ("operation top_... failed")."""
    body = expect(res, 402, "payment_declined", "a declined top-up")
    m = re.search(r"\b(top_[0-9A-Z]+)\b", body.get("detail", ""))
    check(m is not None, "no operation id in %r" % body)
    return m.group(1)


# ------------------------------------------------------------------------------------------------


def world(srv):
    """Gateway operations of every shape; returns {name: operation} (ids, amounts, references)."""
    c1 = customer(srv)
    ok = add_card_id(srv, c1, CARD_OK)
    ops = {"t1": expect(topup(srv, c1, 1000, ok), 201, what="top-up"),
           "t2": expect(topup(srv, c1, 2500, ok), 201, what="top-up")}
    # a customer gets at most five codes an hour: the others go to another customer
    c2 = customer(srv)
    late = add_card_id(srv, c2, CARD_ASYNC_OK)
    pending = expect(topup(srv, c2, 700, late), 202, what="top-up by callback")
    ops["t3"] = wait_op(srv, c2.token, pending["id"], "completed")
    pending = expect(topup(srv, c2, 650, late), 202, what="top-up by callback")
    ops["t6"] = wait_op(srv, c2.token, pending["id"], "completed")
    ops["t4"] = {"id": failed_op_id(topup(srv, c2, 400, add_card_id(srv, c2, CARD_DECLINED))),
                 "amount_minor": 400}
    ops["t5"] = expect(topup(srv, c2, 300, add_card_id(srv, c2, CARD_3DS)), 202,
                       what="3-D Secure")
    check_eq(ops["t5"]["status"], "action_required", "a challenge left unanswered")
    v = ih.step_up(srv.port, c1.token, "withdrawal", admin_token=srv.token, login=c1.login,
                   amount_minor=1200, currency="USD", payee=IBAN)
    ops["w1"] = expect(call(srv, "POST", "/v1/me/withdrawals",
                            {"amount_minor": 1200, "currency": "USD", "bank_account": IBAN,
                             "verification": v}, token=c1.token, key=new_key("wdr")), 201,
                       what="withdrawal")
    m = merchant(srv, "Ledger Lane Cafe")
    code = expect(call(srv, "POST", "/v1/merchant/qr", {"amount_minor": 800}, token=m["token"]),
                  201, what="qr")["payload"]
    expect(call(srv, "POST", "/v1/me/payments", {"payload": code}, token=c1.token,
                key=new_key("pay")), 201, what="payment")
    ops["p1"] = expect(call(srv, "POST", "/v1/merchant/payouts", {}, token=m["token"],
                            key=new_key("pyo")), 201, what="payout")
    check_eq(ops["p1"]["amount_minor"], 800, "the payout")
    # the references the gateway gave: shown for every operation it answered
    for name, token in (("t3", c2.token), ("t4", c2.token), ("t5", c2.token),
                        ("t6", c2.token)):
        got = operation(srv, token, ops[name]["id"])
        check(got.get("gateway_reference", "").startswith("sbx_"),
              "%s shows its gateway reference: %s" % (name, got))
        ops[name]["gateway_reference"] = got["gateway_reference"]
    return ops


def ref(ops, name, invented):
    """The operation's gateway reference when Coffer knows it, else one the gateway made up
    (an operation whose gateway never answered has none)."""
    return ops[name].get("gateway_reference") or invented


def good_rows(ops):
    """What the gateway settled, exactly as Coffer has it (t5 is still waiting: not in it)."""
    return [(ref(ops, "t1", "gw,ref;1"), ops["t1"]["id"], "charge", 1000, "USD", "settled"),
            (ref(ops, "t2", "gw-t2"), ops["t2"]["id"], "charge", 2500, "USD", "settled"),
            (ops["t3"]["gateway_reference"], "", "charge", 700, "USD", "settled"),  # by reference
            (ops["t6"]["gateway_reference"], ops["t6"]["id"], "charge", 650, "USD", "settled"),
            (ref(ops, "t4", "gw-t4"), ops["t4"]["id"], "charge", 400, "USD", "failed"),
            (ref(ops, "w1", "gw-w1"), ops["w1"]["id"], "payout", 1200, "USD", "settled"),
            (ref(ops, "p1", "gw-p1"), ops["p1"]["id"], "payout", 800, "USD", "settled")]


def test_reconcile_end_to_end(ctx):
    """A file that agrees answers nothing; one of every mismatch answers exactly those, through
    the API and the CLI beside the running server; the window decides what is compared."""
    srv = ctx.server(env=ENV)
    ops = world(srv)
    good = csv_of(good_rows(ops), crlf=True)
    ans = expect(reconcile(srv, "\ufeff" + good), 200, what="a file that agrees")
    check_eq((ans["rows"], ans["matched"], ans["mismatches_total"], ans["mismatches"],
              ans["truncated"]), (7, 7, 0, [], False), "nothing to report")
    check_eq(ans["operations"], 8, "every gateway operation (the waiting one too)")
    check_eq((ans["from"], ans["to"]), (None, None), "the whole history by default")
    check_eq(set(ans["counts"]), {"missing_in_coffer", "missing_in_gateway", "duplicated",
                                  "type_differs", "reference_differs", "currency_differs",
                                  "amount_differs", "status_differs"}, "every kind counted")
    check(all(v == 0 for v in ans["counts"].values()), "all zero: %s" % ans["counts"])
    rc, out, err = cli(srv, good)
    check_eq((rc, err), (0, ""), "the CLI on a file that agrees: %s" % out)
    check(out.startswith("reconcile: 7 rows, 8 operations") and "7 matched, 0 mismatches" in out,
          "the CLI's summary: %r" % out)

    r = good_rows(ops)
    unknown = "top_00000000ZZZZZ"
    bad_rows = [
        (r[0][0], ops["t1"]["id"], "charge", 999, "USD", "settled"),            # 2 amount
        (ops["t3"]["gateway_reference"], "", "charge", 700, "EUR", "settled"),   # 3 currency
        (ops["t6"]["gateway_reference"] + "x", ops["t6"]["id"], "charge", 650, "USD",
         "settled"),                                                              # 4 reference
        (ref(ops, "t4", "gw-t4"), ops["t4"]["id"], "charge", 400, "USD", "settled"),  # 5 status
        (ops["t5"]["gateway_reference"], "", "charge", 300, "USD", "settled"),   # 6 status
        (r[5][0], ops["w1"]["id"], "charge", 1200, "USD", "settled"),           # 7 type
        r[6],                                                                     # 8 matched
        ("gw-p1-again", ops["p1"]["id"], "payout", 800, "USD", "settled"),      # 9 duplicated
        ("gw-ghost", unknown, "charge", 5, "USD", "settled"),                   # 10 missing
    ]                                                                             # t2: missing
    expected = sorted([
        ("amount_differs", ops["t1"]["id"], r[0][0], 2),
        ("currency_differs", ops["t3"]["id"], ops["t3"]["gateway_reference"], 3),
        ("reference_differs", ops["t6"]["id"], ops["t6"]["gateway_reference"] + "x", 4),
        ("status_differs", ops["t4"]["id"], ref(ops, "t4", "gw-t4"), 5),
        ("status_differs", ops["t5"]["id"], ops["t5"]["gateway_reference"], 6),
        ("type_differs", ops["w1"]["id"], r[5][0], 7),
        ("duplicated", ops["p1"]["id"], "gw-p1-again", 9),
        ("missing_in_coffer", unknown, "gw-ghost", 10),
        ("missing_in_gateway", ops["t2"]["id"], ops["t2"].get("gateway_reference", ""), 0),
    ])
    bad = csv_of(bad_rows)
    ans = expect(reconcile(srv, bad), 200, what="a file with every mismatch")
    check_eq(api_set(ans), expected, "the API's mismatches")
    check_eq((ans["rows"], ans["matched"], ans["mismatches_total"], ans["truncated"]),
             (9, 1, 9, False), "the API's counts")
    check_eq(ans["counts"], {"missing_in_coffer": 1, "missing_in_gateway": 1, "duplicated": 1,
                             "type_differs": 1, "reference_differs": 1, "currency_differs": 1,
                             "amount_differs": 1, "status_differs": 2}, "counts by kind")
    first = ans["mismatches"][0]
    check_eq((first["kind"], first["gateway_amount_minor"], first["coffer_amount_minor"],
              first["gateway_status"], first["coffer_status"], first["coffer_type"]),
             ("amount_differs", 999, 1000, "settled", "completed", "topup"), "both sides shown")
    status = [m for m in ans["mismatches"] if m.get("op_id") == ops["t5"]["id"]][0]
    check_eq(status["coffer_status"], "action_required", "a top-up still waiting")
    missing = ans["mismatches"][-1]
    check_eq((missing["kind"], missing["coffer_amount_minor"], "gateway_amount_minor" in missing,
              "line" in missing), ("missing_in_gateway", 2500, False, False), "Coffer's side only")
    rc, out, err = cli(srv, bad)
    check_eq(rc, 1, "the CLI's exit on mismatches (%s)" % err)
    got, summary = cli_set(out)
    check_eq(got, expected, "the CLI's mismatches")
    check("9 rows" in summary and "1 matched, 9 mismatches" in summary and
          "status_differs 2" in summary, "the CLI's summary: %r" % summary)

    # the window: today holds everything; a window from tomorrow holds nothing of it, and a row
    # naming an operation outside it (and its margin) is missing_in_coffer
    today = time.strftime("%Y-%m-%d", time.gmtime())
    later = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3 * 86400))
    much_later = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 10 * 86400))
    ans = expect(reconcile(srv, good, **{"from": today}), 200, what="from today")
    check_eq((ans["matched"], ans["mismatches_total"]), (7, 0), "today's window")
    check(ans["from"].startswith(today + "T00:00:00") and ans["to"] is None, "the window shown")
    ans = expect(reconcile(srv, good, **{"from": later, "to": much_later}), 200, what="later")
    check_eq((ans["operations"], ans["matched"], ans["counts"]["missing_in_coffer"],
              ans["mismatches_total"]), (0, 0, 7, 7), "nothing of today in a later window")
    rc, out, _err = cli(srv, good, "--from", later, "--to", much_later)
    check_eq(rc, 1, "the CLI with a later window")
    check_eq(len(cli_set(out)[0]), 7, "the CLI with a later window")
    # a window that ends before today: the operations are in its margin (named ones match), and
    # none of them can be missing_in_gateway
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    ans = expect(reconcile(srv, csv_of(good_rows(ops)[:1]), **{"from": yesterday, "to": today}),
                 200, what="yesterday")
    check_eq((ans["operations"], ans["matched"], ans["mismatches_total"]), (8, 1, 0),
             "operations of the margin: matched when named, never missing")
    srv.check_verify()


def test_reconcile_refusals(ctx):
    """Roles, malformed bodies and files, windows, bounds; the CLI's errors; the CLI racing
    live top-ups."""
    srv = ctx.server(env=ENV)
    good = csv_of([("gw-1", "top_00000000ZZZZZ", "charge", 1, "USD", "settled")])
    cust = customer(srv)
    expect(reconcile(srv, good, token=cust.token), 403, "forbidden", "a customer")
    m = merchant(srv, "Refusal Bakery")
    expect(reconcile(srv, good, token=m["token"]), 403, "forbidden", "a merchant")
    for role in ("support", "risk"):
        staff = ih.create_staff(srv.port, srv.token, email(role), role)
        expect(reconcile(srv, good, token=staff.token), 403, "forbidden", role)
    auditor = ih.create_staff(srv.port, srv.token, email("auditor"), "auditor")
    ans = expect(reconcile(srv, good, token=auditor.token), 200, what="an auditor")
    check_eq(api_set(ans), [("missing_in_coffer", "top_00000000ZZZZZ", "gw-1", 2)], "answer")
    status, _b, _h = ih.call(srv.port, "POST", PATH, {"csv": good})
    check_eq(status, 401, "no session")
    status, _b, _h = ih.call(srv.port, "POST", PATH, {"csv": good}, token="cft_not_a_session")
    check_eq(status, 401, "a token that is no session")
    expect(call(srv, "GET", PATH, token=srv.token), 405, "method_not_allowed", "GET")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("POST", PATH, "csv=x", {"Content-Type": "application/x-www-form-urlencoded",
                                             "Authorization": "Bearer " + srv.token})
        check_eq(conn.getresponse().status, 415, "a form body")
    finally:
        conn.close()

    def refused(body, code, detail, what):
        got = expect(call(srv, "POST", PATH, body, token=srv.token), 400, code, what)
        check(detail in got.get("detail", ""), "%s: detail %r lacks %r"
              % (what, got.get("detail"), detail))

    refused({"csv": good, "since": "2026-01-01"}, "unknown_field", "since", "an unknown field")
    refused({"from": "2026-01-01"}, "missing_field", "csv", "no file")
    refused({"csv": 42}, "invalid_field", "csv", "a file that is no string")
    refused({"csv": ""}, "invalid_field", "csv: line 1: the file is empty", "an empty file")
    refused({"csv": "reference,op_id,type,amount,currency,status\n"}, "invalid_field",
            "csv: line 1: the header must be " + HEADER, "a wrong header")
    refused({"csv": HEADER + ",note\n"}, "invalid_field", "line 1: more than 6 columns",
            "an extra column in the header")
    refused({"csv": good + "gw-2,,charge,1,USD,settled,x\n"}, "invalid_field",
            "csv: line 3: more than 6 columns", "an extra column")
    refused({"csv": good + '"gw\n3",,charge,1,USD,settled\n'}, "invalid_field",
            "csv: line 3: reference", "a line break in a reference")
    refused({"csv": good + "\n\ngw-4,,charge,1.50,USD,settled\n"}, "invalid_field",
            "csv: line 5: amount_minor", "a decimal amount, after blank lines")
    refused({"csv": good + 'gw-5,,charge,1,USD,"settled\n'}, "invalid_field",
            "csv: line 3: a quoted field is never closed", "an open quote")
    refused({"csv": good, "from": "01/11/2026"}, "invalid_field", "from: ", "a bad from")
    refused({"csv": good, "from": "2026-11-02", "to": "2026-11-01"}, "invalid_field",
            "to: to must come after from", "an empty window")
    refused({"csv": good, "to": 20261101}, "invalid_field", "to", "a number for a date")

    # bounds: rows, then bytes (the route's own limit), and a body right at it
    many = HEADER + "\n" + "".join("g%d,,charge,1,USD,settled\n" % i for i in range(ROWS_MAX + 1))
    refused({"csv": many}, "invalid_field", "csv: line %d: more than %d rows"
            % (ROWS_MAX + 2, ROWS_MAX), "one row too many")
    row = "r" * 63 + ",,charge,1,USD,settled\n"  # 87 bytes in JSON (its line feed is two)
    enc = lambda t: len(json.dumps(t)) - 2  # noqa: E731 - bytes of t inside a JSON string
    room = BODY_MAX - len(json.dumps({"csv": ""})) - enc(HEADER + "\n")
    n_rows = room // enc(row)
    first = row if (room - n_rows * enc(row)) % 2 == 0 else row[1:]  # blank lines are 2 bytes
    text = HEADER + "\n" + first + row * (n_rows - 1)
    text += "\n" * ((BODY_MAX - len(json.dumps({"csv": text}))) // 2)  # skipped
    body = json.dumps({"csv": text}).encode()
    check_eq(len(body), BODY_MAX, "a body of exactly the route's limit")
    status, got = raw_post(srv, body)
    check_eq(status, 200, "a body at the limit: %s" % str(got)[:300])
    check_eq((got["rows"], got["mismatches_total"], len(got["mismatches"]), got["truncated"],
              got["counts"]["duplicated"] + got["counts"]["missing_in_coffer"]),
             (n_rows, n_rows, LISTED_MAX, True, n_rows), "a big answer, cut to its first ones")
    status, got = raw_post(srv, json.dumps({"csv": text + "\n"}).encode())
    check_eq((status, got.get("code")), (413, "payload_too_large"), "two bytes past the limit")

    # the CLI: a missing file, a broken one, a bad flag (exit 2, a message naming the line)
    rc, _out, err = cli(srv, None, raw=b"")
    check(rc == 2 and "line 1" in err, "an empty file: %d %r" % (rc, err))
    path = os.path.join(srv.root, "nowhere.csv")
    r = subprocess.run([srv.bin, "reconcile", path, "--data", srv.data] + srv.db_args(),
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    check(r.returncode == 2 and "cannot open" in r.stderr, "a missing file: %r" % r.stderr)
    rc, _out, err = cli(srv, good + "gw-9,,charge,-5,USD,settled\n")
    check(rc == 2 and "line 3: amount_minor" in err, "a negative amount: %d %r" % (rc, err))
    rc, _out, err = cli(srv, good, "--from", "yesterday")
    check(rc == 2 and "--from" in err, "a bad --from: %d %r" % (rc, err))
    rc, _out, err = cli(srv, None, raw=b"x" * (16 * 1024 * 1024 + 1))
    check(rc == 2 and "larger than" in err, "a file past 16 MiB: %d %r" % (rc, err))

    # the CLI beside the server while customers top up: both finish, nothing is locked out
    buyers = [(c, add_card_id(srv, c, CARD_OK)) for c in (customer(srv), customer(srv))]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        tops = [pool.submit(topup, srv, c, 100 + i, card)
                for i in range(6) for c, card in buyers]
        runs = [pool.submit(cli, srv, good) for _ in range(3)]
        for f in tops:
            expect(f.result(), 201, what="a top-up beside the CLI")
        for f in runs:
            rc, out, err = f.result()
            check(rc == 1 and "missing_in_coffer" in out, "the CLI beside top-ups: %d %r %r"
                  % (rc, out[-300:], err))
    ans = expect(reconcile(srv, good), 200, what="after the race")
    check_eq(ans["counts"]["missing_in_gateway"], 12, "every top-up of the race, unnamed")
    audit = expect(call(srv, "GET", "/v1/audit?action=payments.reconcile&limit=1000",
                        token=srv.token), 200, what="audit")["data"]
    actors = {a["actor"] for a in audit}
    check({"cli", srv.admin.user_id, auditor.user_id} <= actors,
          "reconciliations are audited, by whom: %s" % actors)
    check(any(a["detail"].startswith("rows=1 ") for a in audit), "with what: %s" % audit[:2])
    srv.check_verify()


TESTS = [
    test_reconcile_end_to_end,
    test_reconcile_refusals,
]

if __name__ == "__main__":
    harness.main(TESTS)
