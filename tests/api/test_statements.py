#!/usr/bin/env python3
"""test_statements.py - history export, monthly statements, settlement reports and scheduled
daily payouts, end to end over HTTP: the CSV export's columns, escaping (RFC 4180 and
spreadsheet formulas) and filters; a statement's opening, money in, money out, fees and closing
balance against the ledger (closing == the next month's opening == the live balance); a
merchant's settlement report after payments, a refund and payouts; daily payouts made once per
period, also across restarts; other people's reports and statements; `coffer verify` after
every test.

Usage: test_statements.py --bin build/coffer --src . [test names...]
"""

import calendar
import concurrent.futures
import csv
import datetime
import http.client
import io
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import identity_helpers as ih  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import (add_card_id, balance, call, customer, expect, fund,  # noqa: E402
                         sign_in, wallet)

ENV = {"COFFER_CURRENCIES": "USD,EUR", "COFFER_SEND_FEE_BPS": "100",
       "COFFER_SEND_FEE_FIXED_MINOR": "5", "COFFER_SANDBOX_LATENCY_MS": "50",
       "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789",
       "COFFER_PAYOUT_PERIOD_S": "3600"}
CARD_OK, CARD_3DS = "4242424242424242", "4000000000003220"
HEADER = ["created_at", "id", "type", "status", "direction", "counterparty", "amount", "fee",
          "currency", "reference", "note"]


def get_raw(srv, path, token):
    """A GET whose answer is not JSON: (status, bytes, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer " + token})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.headers
    finally:
        conn.close()


def export(srv, path, token):
    """The CSV export at path, parsed: (header, rows, raw text)."""
    status, raw, headers = get_raw(srv, path, token)
    check(status == 200, "export %s: %d %s" % (path, status, raw[:300]))
    check_eq(headers.get("Content-Type"), "text/csv; charset=utf-8", "the export's type")
    text = raw.decode("utf-8")
    check(text.endswith("\r\n"), "RFC 4180 lines end in CRLF")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], rows[1:], text


def shared(ctx):
    return ph.shared(ctx, ENV)


def merchant(srv, fee_bps=0, daily=False, name="Harbour Cafe"):
    """A merchant with an owner session and a payment profile."""
    merchant_id, owner_login, got = ph.new_merchant(srv, name, fee_bps=fee_bps,
                                                    payouts_daily=daily)
    check_eq(got["payouts_daily"], daily, "the daily payout flag")
    return {"id": merchant_id, "token": sign_in(srv, owner_login),
            "account": got["account"], "login": owner_login}


def pay(srv, token, m, amount, status=201):
    code = ph.qr(srv, m, amount_minor=amount)
    return expect(ph.pay(srv, token, code["payload"]), status, what="payment of %d" % amount)


def topup(srv, cust, amount, card, status):
    return expect(ph.topup(srv, cust, amount, card), status, what="top-up")


def send(srv, frm, to, amount, note=None, first=False):
    body = {"to": to.login, "amount_minor": amount, "currency": "USD"}
    if note is not None:
        body["note"] = note
    if first:  # the step-up is bound to the payee as the payer named them
        fee = amount // 100 + 5
        body["verification"] = ih.step_up(srv.port, frm.token, "send", admin_token=srv.token,
                                          login=frm.login, amount_minor=amount + fee,
                                          currency="USD", payee=to.login)
    return expect(call(srv, "POST", "/v1/me/sends", body, token=frm.token, key=new_key("send")),
                  201, what="send")


def payout(srv, m, amount=None):
    body = {} if amount is None else {"amount_minor": amount}
    return expect(call(srv, "POST", "/v1/merchant/payouts", body, token=m["token"],
                       key=new_key("pyo")), 201, what="payout")


def this_month():
    t = time.gmtime()
    return t.tm_year, t.tm_mon


def month_text(year, mon, delta=0):
    n = year * 12 + (mon - 1) + delta
    return "%04d-%02d" % (n // 12, n % 12 + 1)


def statement(srv, token, month, who="me"):
    return expect(call(srv, "GET", "/v1/%s/statements/%s" % (who, month), token=token), 200,
                  what="statement %s" % month)


def only_currency(stmt, currency="USD"):
    found = [c for c in stmt["currencies"] if c["currency"] == currency]
    check_eq(len(found), 1, "one %s part in %s" % (currency, json.dumps(stmt)[:300]))
    return found[0]


def check_arithmetic(part, what):
    check_eq(part["opening_balance_minor"] + part["money_in_minor"] - part["money_out_minor"]
             - part["fees_minor"], part["closing_balance_minor"], "%s: opening + in - out - fees"
             % what)


def parse_time(text):
    return calendar.timegm(datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
                           .timetuple()) + int(text[20:26]) / 1e6


def payouts_of(srv, m):
    got = expect(call(srv, "GET", "/v1/merchant/activity?type=payout&limit=100",
                      token=m["token"]), 200)
    return list(reversed(got["data"]))  # oldest first


def wait_payouts(srv, m, n, timeout_s):
    deadline = time.monotonic() + timeout_s
    while True:
        got = payouts_of(srv, m)
        settled = all(o["status"] in ("completed", "failed") for o in got)
        if (len(got) >= n and settled) or time.monotonic() > deadline:
            check_eq(len(got), n, "payouts of %s after waiting" % m["id"])
            return got
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------


def test_export_csv(ctx):
    """The CSV export: header, one row per operation newest first, amounts in major units, the
    viewer's direction and counterparty, RFC 4180 quoting of a note holding a comma, a quote and
    a newline, a leading '=' neutralized; filters; each side sees its own export only."""
    srv = shared(ctx)
    alice, bob = customer(srv, "Alice Smith"), customer(srv, "Bob Stone")
    fund(srv, alice.token, 100000)
    wallet(srv, bob.token)
    m = merchant(srv, fee_bps=150, name="Export Deli")
    note = '=HYPERLINK("http://x"), lunch\nthanks'
    sent = send(srv, alice, bob, 2000, note=note, first=True)
    paid = pay(srv, alice.token, m, 1234)
    plain = send(srv, alice, bob, 5, note="-5 for @bob")

    header, rows, text = export(srv, "/v1/me/activity/export", alice.token)
    check_eq(header, HEADER, "the header row")
    check_eq([r[1] for r in rows], [plain["id"], paid["id"], sent["id"]], "rows, newest first")
    row = rows[2]
    check_eq(row[2:10], ["send", "completed", "out", bob.user_id, "20.00", "0.25", "USD", ""],
             "the send's row")
    check_eq(row[10], "'" + note, "the note: unescaped by a CSV reader, with its apostrophe")
    check(parse_time(row[0]) <= time.time() + 1, "created_at is a time")
    check('"\'=HYPERLINK(""http://x""), lunch\nthanks"' in text,
          "the note is quoted, its quotes doubled, its formula neutralized")
    check_eq(rows[0][10], "'-5 for @bob", "a note starting with '-' is neutralized too")
    check_eq(rows[1][2:10], ["payment", "completed", "out", m["id"], "12.34", "0.19", "USD",
                             paid["reference"]], "the payment's row (fee: the merchant's)")
    check_eq(len(text.split("\r\n")), 1 + 3 + 1, "a header and three rows: the note's newline "
             "is inside quotes")

    _h, rows, _t = export(srv, "/v1/me/activity/export?type=send", alice.token)
    check_eq([r[1] for r in rows], [plain["id"], sent["id"]], "type filter")
    _h, rows, _t = export(srv, "/v1/me/activity/export?currency=EUR", alice.token)
    check_eq(rows, [], "currency filter")
    _h, rows, _t = export(srv, "/v1/me/activity/export?to=2000-01-01", alice.token)
    check_eq(rows, [], "date filter (to)")
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    _h, rows, _t = export(srv, "/v1/me/activity/export?from=" + tomorrow, alice.token)
    check_eq(rows, [], "date filter (from)")
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 60))
    _h, rows, _t = export(srv, "/v1/me/activity/export?type=payment&from=" + today, alice.token)
    check_eq([r[1] for r in rows], [paid["id"]], "filters together")
    for bad, code, detail in (("type=gift", "invalid_field", "type"),
                              ("from=yesterday", "invalid_field", "from"),
                              ("to=2026-13-01", "invalid_field", "to"),
                              ("currency=ZZZ", "unknown_currency", "currency")):
        body = expect(call(srv, "GET", "/v1/me/activity/export?" + bad, token=alice.token), 400,
                      code, bad)
        check_eq(body.get("detail"), detail, "detail of " + bad)

    _h, rows, _t = export(srv, "/v1/me/activity/export", bob.token)
    check_eq([(r[1], r[4], r[5]) for r in rows],
             [(plain["id"], "in", alice.user_id), (sent["id"], "in", alice.user_id)],
             "the recipient's export: money in from alice")
    _h, rows, _t = export(srv, "/v1/merchant/activity/export", m["token"])
    check_eq([(r[1], r[4], r[5], r[6], r[7]) for r in rows],
             [(paid["id"], "in", alice.user_id, "12.34", "0.19")], "the merchant's export")
    eve = customer(srv)
    _h, rows, _t = export(srv, "/v1/me/activity/export", eve.token)
    check_eq(rows, [], "someone else's export holds nothing of alice")
    expect(call(srv, "GET", "/v1/merchant/activity/export", token=alice.token), 403, "forbidden",
           "a customer on the merchant's export")
    expect(call(srv, "GET", "/v1/me/activity/export", token=m["token"]), 403, "forbidden",
           "a merchant on the customer's export")
    expect(call(srv, "GET", "/v1/me/activity/export"), 401, what="no session")
    expect(call(srv, "POST", "/v1/me/activity/export", {}, token=alice.token), 405)
    srv.check_verify()


def test_statement_arithmetic(ctx):
    """A customer's month: a ledger funding, a card top-up, a send with its fee, a payment; a
    failed payment and a top-up waiting for 3-D Secure move nothing. Opening + in - out - fees =
    closing; closing == the next month's opening == the live balance; the previous month
    closes where this one opens."""
    srv = shared(ctx)
    cust, bob = customer(srv), customer(srv)
    acct = fund(srv, cust.token, 5000)
    wallet(srv, bob.token)
    m = merchant(srv, fee_bps=100, name="Statement Shop")
    ok = add_card_id(srv, cust, CARD_OK)
    top = topup(srv, cust, 3000, ok, 201)
    sent = send(srv, cust, bob, 2000, first=True)
    paid = pay(srv, cust.token, m, 1000)
    pay(srv, cust.token, m, 99999, status=422)  # insufficient funds: a failed operation
    waiting = topup(srv, cust, 300, add_card_id(srv, cust, CARD_3DS), 202)
    check_eq(waiting["status"], "action_required", "a top-up waiting for its challenge")

    year, mon = this_month()
    now = month_text(year, mon)
    part = only_currency(statement(srv, cust.token, now))
    check_eq((part["opening_balance_minor"], part["money_in_minor"], part["money_out_minor"],
              part["fees_minor"], part["closing_balance_minor"]), (0, 8000, 3000, 25, 4975),
             "opening, in (funding and top-up), out (send and payment), fees, closing")
    check_arithmetic(part, "this month")
    check_eq(part["account"], acct, "the wallet")
    live = balance(srv, acct)
    check_eq(part["closing_balance_minor"], live, "closing == the live balance")
    check_eq(sorted(o["id"] for o in part["operations"]),
             sorted([top["id"], sent["id"], paid["id"]]), "the completed operations")
    check(all(o["status"] == "completed" for o in part["operations"]), "completed only")
    check_eq([(o["id"], o["status"]) for o in part["pending"]],
             [(waiting["id"], "action_required")], "the waiting top-up is listed apart")
    check_eq(part["failed_n"], 1, "the failed payment is counted, not listed")
    stmt = statement(srv, cust.token, now)
    check_eq(stmt["complete"], False, "the current month is not complete")
    check_eq((stmt["month"], stmt["from"][:10]), (now, now + "-01"), "the month's bounds")

    nxt = only_currency(statement(srv, cust.token, month_text(year, mon, 1)))
    check_eq(nxt["opening_balance_minor"], part["closing_balance_minor"],
             "closing(m) == opening(m + 1)")
    check_eq((nxt["money_in_minor"], nxt["money_out_minor"], nxt["fees_minor"],
              nxt["closing_balance_minor"], nxt["operations"]), (0, 0, 0, live, []),
             "nothing happened next month yet")
    prev = only_currency(statement(srv, cust.token, month_text(year, mon, -1)))
    check_eq((prev["opening_balance_minor"], prev["closing_balance_minor"]), (0, 0),
             "the month before")
    check_eq(prev["closing_balance_minor"], part["opening_balance_minor"],
             "closing(m - 1) == opening(m)")
    old = statement(srv, cust.token, "2001-01")
    check_eq(old["complete"], True, "a past month is complete")

    bob_part = only_currency(statement(srv, bob.token, now))
    check_eq((bob_part["money_in_minor"], bob_part["closing_balance_minor"]), (2000, 2000),
             "the recipient's statement")
    mp = only_currency(statement(srv, m["token"], now, who="merchant"))
    check_eq((mp["money_in_minor"], mp["fees_minor"], mp["money_out_minor"],
              mp["closing_balance_minor"]), (1000, 10, 0, 990), "the merchant's statement")
    check_eq(mp["closing_balance_minor"], balance(srv, m["account"]), "the merchant's live balance")

    eve = customer(srv)
    check_eq(statement(srv, eve.token, now)["currencies"], [], "someone else sees nothing")
    for bad in ("2026-13", "2026-1", "26-11", "abcd-ef", "1969-12", "2026-11-01", "2026-00"):
        body = expect(call(srv, "GET", "/v1/me/statements/" + bad, token=cust.token), 400,
                      "invalid_field", "month " + bad)
        check_eq(body.get("detail"), "month", "detail of month " + bad)
    expect(call(srv, "GET", "/v1/merchant/statements/" + now, token=cust.token), 403,
           "forbidden", "a customer on the merchant's statement")
    expect(call(srv, "GET", "/v1/me/statements/" + now, token=m["token"]), 403, "forbidden")
    srv.check_verify()


def test_settlement_report(ctx):
    """A merchant's settlement report per payout: the payments, refunds and fees recorded since
    its previous payout; gross, fees, refunds, net, the payout and what it carried over; another
    merchant's payout is not found."""
    srv = shared(ctx)
    m = merchant(srv, fee_bps=200, name="Report Books")
    cust = customer(srv)
    fund(srv, cust.token, 100000)
    p1 = pay(srv, cust.token, m, 1000)
    p2 = pay(srv, cust.token, m, 2000)
    r1 = expect(call(srv, "POST", "/v1/merchant/payments/%s/refund" % p2["id"],
                     {"amount_minor": 500}, token=m["token"], key=new_key()), 201, what="refund")
    check_eq((r1["fee_minor"], balance(srv, m["account"])), (10, 2450), "before the payout")
    out1 = payout(srv, m)
    check_eq(out1["amount_minor"], 2450, "the whole balance paid out")

    rep = expect(call(srv, "GET", "/v1/merchant/payouts/%s/report" % out1["id"],
                      token=m["token"]), 200, what="report")
    check_eq((rep["gross_minor"], rep["fees_minor"], rep["refunds_minor"], rep["net_minor"],
              rep["payout_minor"], rep["carried_over_minor"], rep["previous_payout_id"],
              rep["currency"]), (3000, 50, 500, 2450, 2450, 0, None, "USD"),
             "the first report")
    check_eq(sorted(o["id"] for o in rep["operations"]), sorted([p1["id"], p2["id"], r1["id"]]),
             "the report's operations")
    check_eq(rep["payout"]["id"], out1["id"], "the report's payout")

    p3 = pay(srv, cust.token, m, 700)
    out2 = payout(srv, m, 300)
    rep = expect(call(srv, "GET", "/v1/merchant/payouts/%s/report" % out2["id"],
                      token=m["token"]), 200)
    check_eq((rep["gross_minor"], rep["fees_minor"], rep["refunds_minor"], rep["net_minor"],
              rep["payout_minor"], rep["carried_over_minor"], rep["previous_payout_id"]),
             (700, 14, 0, 686, 300, -386, out1["id"]), "a partial payout leaves part of the net")
    check_eq([o["id"] for o in rep["operations"]], [p3["id"]], "only what came after payout 1")
    out3 = payout(srv, m)
    rep = expect(call(srv, "GET", "/v1/merchant/payouts/%s/report" % out3["id"],
                      token=m["token"]), 200)
    check_eq((rep["gross_minor"], rep["net_minor"], rep["payout_minor"],
              rep["carried_over_minor"], rep["previous_payout_id"], rep["operations"]),
             (0, 0, 386, 386, out2["id"], []), "a payout of what was carried over")
    # the first report does not change with later activity
    again = expect(call(srv, "GET", "/v1/merchant/payouts/%s/report" % out1["id"],
                        token=m["token"]), 200)
    check_eq((again["gross_minor"], again["net_minor"]), (3000, 2450), "reports are stable")

    year, mon = this_month()
    mp = only_currency(statement(srv, m["token"], month_text(year, mon), who="merchant"))
    check_eq((mp["money_in_minor"], mp["money_out_minor"], mp["fees_minor"],
              mp["closing_balance_minor"]), (3700, 500 + 2450 + 300 + 386, 64, 0),
             "the merchant's month: payments in; refund and payouts out; net fees")
    check_arithmetic(mp, "the merchant's month")

    other = merchant(srv, name="Nosy Stall")
    for path in ("/v1/merchant/payouts/%s/report" % out1["id"],
                 "/v1/merchant/payouts/%s/report" % p1["id"],
                 "/v1/merchant/payouts/pyo_nothing/report"):
        expect(call(srv, "GET", path, token=other["token"]), 404, "not_found", path)
    expect(call(srv, "GET", "/v1/merchant/payouts/%s/report" % p1["id"], token=m["token"]), 404,
           "not_found", "a payment is not a payout")
    expect(call(srv, "GET", "/v1/merchant/payouts/%s/report" % out1["id"], token=cust.token),
           403, "forbidden", "a customer")
    srv.check_verify()


def test_export_limit(ctx):
    """More operations than one export may hold: 422 asking for a narrower range, and each half
    of the range exports; the month's statement lists the newest STATEMENT_OPERATIONS_MAX
    (flagged as truncated) while its totals stay whole."""
    srv = shared(ctx)
    rich, dest = customer(srv), customer(srv)
    acct = fund(srv, rich.token, 10 ** 9)
    wallet(srv, dest.token)
    send(srv, rich, dest, 100, first=True)  # 100 + 6 with its fee

    def one(_):
        return call(srv, "POST", "/v1/me/sends", {"to": dest.login, "amount_minor": 1,
                                                  "currency": "USD"},
                    token=rich.token, key=new_key("s"))[0]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(one, range(5000)))
        time.sleep(1.1)  # the halves are one second apart: from/to take whole seconds
        mid = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        time.sleep(1.1)
        codes += list(pool.map(one, range(5000)))
    check_eq(set(codes), {201}, "ten thousand sends")

    body = expect(call(srv, "GET", "/v1/me/activity/export", token=rich.token), 422,
                  "range_too_large", "an export of 10001 operations")
    check("narrower" in body.get("detail", ""), "the detail asks for a narrower range")
    _h, rows, _t = export(srv, "/v1/me/activity/export?to=" + mid, rich.token)
    check_eq(len(rows), 5001, "the first half")
    _h, rows, _t = export(srv, "/v1/me/activity/export?from=" + mid, rich.token)
    check_eq(len(rows), 5000, "the second half")
    check_eq(len(set(r[1] for r in rows)), 5000, "each operation once")

    year, mon = this_month()
    part = only_currency(statement(srv, rich.token, month_text(year, mon)))
    check_eq((len(part["operations"]), part["operations_truncated"]), (10000, True),
             "the statement lists the newest ten thousand")
    fee_each = 1  # 1% of 1 rounds to 0, plus the fixed 5, lowered to the amount
    check_eq((part["money_out_minor"], part["fees_minor"]), (100 + 10000, 6 + 10000 * fee_each),
             "the totals count every send")
    check_eq(part["closing_balance_minor"], balance(srv, acct), "and add up to the balance")
    check_arithmetic(part, "a long month")
    srv.check_verify()


def test_daily_payouts(ctx):
    """With a three-second period, a daily merchant's balance is paid out once per period
    (money that arrives after a period's payout waits for the next one); a merchant without
    the flag is never paid out; the scheduler stops at once at shutdown."""
    period = 3
    srv = ctx.server(env=dict(ENV, COFFER_PAYOUT_PERIOD_S=str(period)))
    m = merchant(srv, daily=True, name="Daily Bakery")
    manual = merchant(srv, daily=False, name="Manual Bakery")
    cust = customer(srv)
    fund(srv, cust.token, 100000)
    pay(srv, cust.token, manual, 500)
    pay(srv, cust.token, m, 1000)
    first = wait_payouts(srv, m, 1, 3 * period)[0]
    check_eq((first["amount_minor"], first["status"]), (1000, "completed"), "the first payout")
    check_eq(balance(srv, m["account"]), 0, "paid out")
    pay(srv, cust.token, m, 700)
    got = wait_payouts(srv, m, 2, 3 * period)
    check_eq((got[1]["amount_minor"], got[1]["status"]), (700, "completed"), "the next payout")
    periods = [int(parse_time(o["created_at"])) // period for o in got]
    check(periods[1] > periods[0], "one payout per period: %s" % periods)
    pay(srv, cust.token, m, 300)
    got = wait_payouts(srv, m, 3, 3 * period)
    periods = [int(parse_time(o["created_at"])) // period for o in got]
    check_eq(len(set(periods)), 3, "three payouts in three periods: %s" % periods)
    time.sleep(period + 0.5)
    check_eq(len(payouts_of(srv, m)), 3, "nothing more with a zero balance")
    check_eq(payouts_of(srv, manual), [], "no scheduled payout without the flag")
    check_eq(balance(srv, manual["account"]), 500, "the other merchant keeps its balance")
    rep = expect(call(srv, "GET", "/v1/merchant/payouts/%s/report" % got[2]["id"],
                      token=m["token"]), 200)
    check_eq((rep["gross_minor"], rep["net_minor"], rep["payout_minor"],
              rep["previous_payout_id"]), (300, 300, 300, got[1]["id"]),
             "a scheduled payout's report")
    srv.check_verify()
    t0 = time.monotonic()
    check_eq(srv.stop(), 0, "clean exit")
    check(time.monotonic() - t0 < 5, "the scheduler stops promptly")


def test_daily_payout_restart(ctx):
    """A restart in the same period never pays a merchant twice: the payout's key is the
    merchant and the period. The one-hour period's run at start pays a balance that arrived
    since; money that arrives after it waits for the next hour, across a restart too."""
    period = 3600
    left = period - time.time() % period
    if left < 60:  # the test must stay inside one period
        time.sleep(left + 1)
    srv = ctx.server(env=dict(ENV, COFFER_PAYOUT_PERIOD_S=str(period)))
    m = merchant(srv, daily=True, name="Hourly Bakery")
    cust = customer(srv)
    fund(srv, cust.token, 100000)
    pay(srv, cust.token, m, 1000)
    wait_run(srv)
    check_eq(payouts_of(srv, m), [], "the run at start came before the merchant")

    srv.restart()
    m["token"] = sign_in(srv, m["login"])
    wait_run(srv)
    got = wait_payouts(srv, m, 1, 10)
    check_eq((got[0]["amount_minor"], got[0]["status"]), (1000, "completed"),
             "the run at start paid the balance")
    pay(srv, cust.token, m, 500)

    t0 = time.monotonic()
    srv.restart()
    check(time.monotonic() - t0 < 15, "a sleeping scheduler does not hold up the restart")
    wait_run(srv)
    m["token"] = sign_in(srv, m["login"])
    check_eq(len(payouts_of(srv, m)), 1, "no second payout in the same period")
    check_eq(balance(srv, m["account"]), 500, "the new money waits for the next period")
    srv.check_verify()


def wait_run(srv, timeout_s=10):
    """Waits for the scheduler's run at start (its log line) in the current log."""
    deadline = time.monotonic() + timeout_s
    while "daily payouts ran" not in srv.stderr_tail(1 << 20):
        check(time.monotonic() < deadline, "no 'daily payouts ran' line: %s" % srv.stderr_tail())
        time.sleep(0.05)


def runs_logged(srv):
    return srv.stderr_tail(1 << 22).count('"daily payouts ran"')


def wait_runs(srv, n, timeout_s):
    """Waits until n more scheduler runs have been logged."""
    target = runs_logged(srv) + n
    deadline = time.monotonic() + timeout_s
    while runs_logged(srv) < target:
        check(time.monotonic() < deadline, "fewer than %d runs in %s s" % (n, timeout_s))
        time.sleep(0.05)


def held_lines(srv, mid):
    return [l for l in srv.stderr_tail(1 << 22).splitlines()
            if '"daily payout held"' in l and mid in l]


def test_daily_payout_held(ctx):
    """A daily merchant that is frozen, or blocked by a sanctions screening hit, is skipped by
    the scheduler: no payout operation (no failed one either) while the hold lasts, one info
    line per run naming the merchant only; after the unfreeze or the clear the next period pays
    out. The merchant cannot lift its own hold."""
    period = 2
    srv = ctx.server(env=dict(ENV, COFFER_PAYOUT_PERIOD_S=str(period)))
    frozen = merchant(srv, daily=True, name="Icebox Bakery")
    reason = "Chargeback pattern under review by the risk desk"
    expect(call(srv, "POST", "/v1/risk/parties/%s/freeze" % frozen["id"], {"reason": reason},
                token=srv.token, key=new_key("frz")), 200, what="freeze")
    expect(call(srv, "POST", "/v1/risk/parties/%s/unfreeze" % frozen["id"], {"reason": "mine"},
                token=frozen["token"], key=new_key("ufz")), 403, "forbidden",
           "the merchant unfreezing itself")
    expect(call(srv, "POST", "/v1/risk/lists",
                {"name": "watch_payouts", "kind": "simple",
                 "content": "id,name\nP-1,Quincey Pemberton Holdings\n"},
                token=srv.token, key=new_key("lst")), 201, what="a list")
    blocked = merchant(srv, daily=True, name="Quincey Pemberton Holdings")
    cust = customer(srv)
    fund(srv, cust.token, 100000)
    pay(srv, cust.token, frozen, 1000)
    pay(srv, cust.token, blocked, 800)
    wait_runs(srv, 2, 4 * period)
    for m, amount in ((frozen, 1000), (blocked, 800)):
        check_eq(payouts_of(srv, m), [], "no payout operation while %s is held" % m["id"])
        check_eq(balance(srv, m["account"]), amount, "the balance stays")
        lines = held_lines(srv, m["id"])
        check(len(lines) >= 2, "a held line per run: %s" % lines)
        check("Chargeback" not in " ".join(lines), "no reason in the log")
    ran = [l for l in srv.stderr_tail(1 << 22).splitlines() if '"daily payouts ran"' in l]
    check('"held":"2"' in ran[-1], "the run counts both as held: %s" % ran[-1])

    expect(call(srv, "POST", "/v1/risk/parties/%s/unfreeze" % frozen["id"],
                {"reason": "Chargebacks explained"}, token=srv.token, key=new_key("ufz")), 200,
           what="unfreeze")
    got = wait_payouts(srv, frozen, 1, 3 * period)
    check_eq((got[0]["amount_minor"], got[0]["status"]), (1000, "completed"),
             "the next period pays the unfrozen merchant")
    check_eq(payouts_of(srv, blocked), [], "the blocked merchant is still held")
    expect(call(srv, "POST", "/v1/risk/parties/%s/screening/clear" % blocked["id"],
                {"reason": "Different company, registry checked"}, token=srv.token,
                key=new_key("scl")), 200, what="clear")
    got = wait_payouts(srv, blocked, 1, 3 * period)
    check_eq((got[0]["amount_minor"], got[0]["status"]), (800, "completed"),
             "the next period pays the cleared merchant")
    check_eq(len(payouts_of(srv, frozen)), 1, "the unfrozen merchant was paid once")
    srv.check_verify()


TESTS = [
    test_export_csv,
    test_statement_arithmetic,
    test_settlement_report,
    test_export_limit,
    test_daily_payouts,
    test_daily_payout_restart,
    test_daily_payout_held,
]

if __name__ == "__main__":
    harness.main(TESTS)
