#!/usr/bin/env python3
"""test_fx.py - exchange rates and currency conversion end to end over HTTP: rates set one by
one and loaded from a file (a malformed file is refused whole, naming its line), rates read by
any signed-in user, conversion quotes (rate after the spread, mid rate, fee 0, total, expiry)
and conversions that execute exactly the quote as one three-leg transfer through the FX
liquidity accounts with the spread booked as revenue; the balances of the wallets, the
liquidity and the revenue accounts add up exactly, across currencies of different scales;
expired, used, foreign and mismatched quotes, missing rates, the same currency, currencies not
on offer, amounts worth nothing, insufficient funds, idempotent retries, races on one quote,
a spread changed under a quote; cross-currency merchant payments (the customer pays the
smallest amount of their currency that buys the merchant's price, the spread and the merchant's
fee in the merchant's currency, one transfer) and their refunds (partial refunds give back
exactly what was paid at the payment's own rate); and `coffer verify` after every test.

Usage: test_fx.py --bin build/coffer --src . [test names...]
"""

import concurrent.futures
import http.client
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import pay_helpers as ph  # noqa: E402
from harness import check, check_eq, new_key  # noqa: E402
from pay_helpers import call, expect, fund  # noqa: E402

SPREAD_BPS = 50
QUOTE_TTL_S = 10  # the configuration's least
ENV = {"COFFER_CURRENCIES": "USD,EUR,JPY", "COFFER_FX_SPREAD_BPS": str(SPREAD_BPS),
       "COFFER_QUOTE_TTL_S": "60", "COFFER_GATEWAY_SECRET": "test-gateway-secret-0123456789"}
SCALE = {"USD": 2, "EUR": 2, "JPY": 0, "GBP": 2}


def shared(ctx):
    return ph.shared(ctx, ENV)


def customer(srv, name="Felix Fx"):
    return ph.customer(srv, name, tag="fx")


def set_rate(srv, base, quote, rate):
    return expect(call(srv, "POST", "/v1/admin/rates", {"base": base, "quote": quote,
                                                        "rate": rate}, token=srv.token),
                  200, what="rate %s %s %s" % (base, quote, rate))


def quote(srv, token, frm, to, amount):
    return call(srv, "POST", "/v1/me/conversions/quote",
                {"from_currency": frm, "to_currency": to, "amount_minor": amount}, token=token)


def convert(srv, token, quote_id, key=None):
    return call(srv, "POST", "/v1/me/conversions", {"quote_id": quote_id}, token=token,
                key=key or new_key("cnv"))


def balances(srv):
    """{(owner, currency): balance} of every ledger account (system accounts by name)."""
    out = {}
    for a in srv.client().all_accounts():
        k = (a.get("owner") or a["id"], a["currency"])
        out[k] = out.get(k, 0) + a["balance"]
    return out


def moved(before, after):
    """{(owner, currency): change} of the balances that changed."""
    keys = set(before) | set(after)
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys
            if after.get(k, 0) != before.get(k, 0)}


def delta(before, after, owner, currency):
    return after.get((owner, currency), 0) - before.get((owner, currency), 0)


# Rounding, as pay_fx.h documents it --------------------------------------------------------------


def rate_e9(text):
    whole, _, frac = text.partition(".")
    return int(whole) * 10**9 + int((frac + "0" * 9)[:9])


def half_even_div(n, d):
    q, r = divmod(n, d)
    if 2 * r > d or (2 * r == d and q % 2 == 1):
        q += 1
    return q


def expected_price(amount, frm, to, mid_text, spread_bps=SPREAD_BPS):
    """(customer rate_e9, credit, spread) in exact integers."""
    mid = rate_e9(mid_text)
    rate = half_even_div(mid * (10000 - spread_bps), 10000)
    den = 10**9 * 10**SCALE[frm]
    credit = amount * rate * 10**SCALE[to] // den
    mid_credit = amount * mid * 10**SCALE[to] // den
    return rate, credit, mid_credit - credit


def expected_payment(credit, frm, to, mid_text, spread_bps=SPREAD_BPS):
    """(customer rate_e9, debit, spread) of paying credit in `to` from `frm` (pay_fx.h)."""
    mid = rate_e9(mid_text)
    rate = half_even_div(mid * (10000 - spread_bps), 10000)
    den = 10**9 * 10**SCALE[frm]
    debit = -(-credit * den // (rate * 10**SCALE[to]))  # ceiling
    assert debit * rate * 10**SCALE[to] // den >= credit
    assert (debit - 1) * rate * 10**SCALE[to] // den < credit
    return rate, debit, debit * mid * 10**SCALE[to] // den - credit


def rate_text(e9):
    whole, frac = divmod(e9, 10**9)
    frac_s = ("%09d" % frac).rstrip("0")
    return "%d.%s" % (whole, frac_s) if frac_s else "%d" % whole


# ------------------------------------------------------------------------------------------------


def test_rates(ctx):
    """An admin sets a rate (checked field by field) and loads a rates file (refused whole when
    one line is bad, the line named); any signed-in user reads the rates; others may not write
    them; each change leaves an audit line."""
    srv = shared(ctx)
    got = set_rate(srv, "USD", "EUR", "0.92130")
    check_eq((got["base"], got["quote"], got["rate"]), ("USD", "EUR", "0.9213"),
             "a rate comes back in its shortest text")
    check(got.get("updated_at", "").endswith("Z"), "the rate has its time: %s" % got)
    good = {"base": "USD", "quote": "EUR", "rate": "0.9213"}
    for field, value, code in (("base", "XXX", "unknown_currency"),
                               ("quote", "ZZZ", "unknown_currency"),
                               ("quote", "USD", "invalid_field"),
                               ("rate", "0", "invalid_field"), ("rate", "-1", "invalid_field"),
                               ("rate", "1e3", "invalid_field"), ("rate", "0.9213x", "invalid_field"),
                               ("rate", "1.0000000001", "invalid_field"),
                               ("rate", 0.92, "invalid_field"), ("rate", "", "invalid_field"),
                               ("rate", "01.5", "invalid_field"), ("base", None, "missing_field")):
        body = dict(good, **{field: value})
        if value is None:
            del body[field]
        got = expect(call(srv, "POST", "/v1/admin/rates", body, token=srv.token), 400, code,
                     "a rate with %s=%r" % (field, value))
        check_eq(got.get("detail"), field, "detail of a refused rate")
    expect(call(srv, "POST", "/v1/admin/rates", dict(good, extra=1), token=srv.token), 400,
           "unknown_field")
    cust = customer(srv)
    expect(call(srv, "POST", "/v1/admin/rates", good, token=cust.token), 403, "forbidden",
           "a customer setting a rate")
    expect(call(srv, "POST", "/v1/admin/rates/load", {"text": "USD EUR 9"}, token=cust.token),
           403, "forbidden", "a customer loading rates")
    expect(call(srv, "GET", "/v1/rates"), 401, "unauthorized", "rates without a session")

    text = ("# rates of the day\nUSD EUR 0.95\r\nEUR USD 1.0500\n\n"
            "USD JPY 150.25   # with a comment\n\tJPY USD 0.0066\n")
    got = expect(call(srv, "POST", "/v1/admin/rates/load", {"text": text}, token=srv.token), 200,
                 what="rates load")
    check_eq(got["loaded"], 4, "pairs loaded")
    check_eq([(r["base"], r["quote"], r["rate"]) for r in got["data"]],
             [("USD", "EUR", "0.95"), ("EUR", "USD", "1.05"), ("USD", "JPY", "150.25"),
              ("JPY", "USD", "0.0066")], "the loaded pairs")

    def listed(token):
        rows = expect(call(srv, "GET", "/v1/rates", token=token), 200, what="rates list")["data"]
        check(all(r.get("updated_at", "").endswith("Z") for r in rows),
              "every rate has its time: %s" % rows)
        check_eq(rows, sorted(rows, key=lambda r: (r["base"], r["quote"])), "rates in order")
        return {(r["base"], r["quote"]): r["rate"] for r in rows}

    set_rate(srv, "GBP", "USD", "1.27")  # GBP is not on offer: merchants may settle in it
    before = listed(cust.token)
    check_eq(before.get(("USD", "EUR")), "0.95", "a customer reads the loaded rate")
    check_eq(before.get(("GBP", "USD")), "1.27", "a pair outside the offer is listed too")
    check(("JPY", "EUR") not in before, "a pair never set is not listed")
    for bad, line, code in (("USD EUR 0.96\nEUR USD abc\n", 2, "invalid_field"),
                            ("USD EUR 0.96\n# fine\nUSD XXX 1.5\n", 3, "unknown_currency"),
                            ("USD EUR 0.96\nUSD EUR 0.97\n", 2, "invalid_field"),
                            ("USD EUR 0.96\nEUR EUR 1\n", 2, "invalid_field"),
                            ("USD EUR 0.96 1\n", 1, "invalid_field"),
                            ("USD EUR 0.96\nUSD\n", 2, "invalid_field"),
                            ("USD EUR -0.96\n", 1, "invalid_field")):
        got = expect(call(srv, "POST", "/v1/admin/rates/load", {"text": bad}, token=srv.token),
                     400, code, "a malformed rates file")
        check_eq(got.get("detail"), "text: line %d" % line, "the bad line is named")
    expect(call(srv, "POST", "/v1/admin/rates/load", {"text": "# nothing\n\n"}, token=srv.token),
           400, "invalid_field", "a file without rates")
    expect(call(srv, "POST", "/v1/admin/rates/load", {"text": 5}, token=srv.token), 400,
           "invalid_field", "text that is not a string")
    expect(call(srv, "POST", "/v1/admin/rates/load", {"txt": "USD EUR 1"}, token=srv.token), 400,
           "unknown_field")
    check_eq(listed(srv.token), before, "refused files changed no rate")
    rows = expect(call(srv, "GET", "/v1/audit?action=rates.load", token=srv.token), 200)["data"]
    check(len(rows) >= 1, "the load is audited: %s" % rows[:3])
    rows = expect(call(srv, "GET", "/v1/audit?action=rates.set", token=srv.token), 200)["data"]
    check(len(rows) >= 1, "the rate set is audited: %s" % rows[:3])
    srv.check_verify()


def test_conversion(ctx):
    """A customer quotes and converts USD to EUR: the credit is floor(amount x rate shown), one
    transfer moves the wallet's USD into FX liquidity, pays the EUR out of liquidity and books
    the spread as revenue; every currency's movements sum to zero. A retry with the same key
    answers the same conversion; the quote cannot be used twice or by someone else."""
    srv = shared(ctx)
    set_rate(srv, "USD", "EUR", "0.9213")
    cust = customer(srv)
    usd = fund(srv, cust.token, 25000, "USD")
    q = expect(quote(srv, cust.token, "USD", "EUR", 10000), 200, what="quote")
    rate, credit, spread = expected_price(10000, "USD", "EUR", "0.9213")
    check_eq((q["amount_minor"], q["currency"], q["credit_minor"], q["credit_currency"],
              q["fee_minor"], q["total_minor"], q["spread_bps"], q["mid_rate"], q["rate"],
              q["spread_minor"]),
             (10000, "USD", credit, "EUR", 0, 10000, SPREAD_BPS, "0.9213", rate_text(rate),
              spread), "what the customer sees before converting")
    check_eq((credit, spread), (9166, 47), "the documented example")
    check(q["quote_id"].startswith("quo_") and q["expires_at"].endswith("Z"), "quote id, expiry")

    other = customer(srv, "Olga Other")
    fund(srv, other.token, 100000, "USD")
    expect(convert(srv, other.token, q["quote_id"]), 422, "quote_expired",
           "someone else's quote")

    before = balances(srv)
    key = new_key("cnv")
    done = expect(convert(srv, cust.token, q["quote_id"], key), 201, what="conversion")
    check_eq((done["type"], done["status"], done["amount_minor"], done["currency"],
              done["credit_minor"], done["credit_currency"], done["fee_minor"], done["rate"],
              done["quote_id"], done["direction"]),
             ("conversion", "completed", 10000, "USD", credit, "EUR", 0, rate_text(rate),
              q["quote_id"], "out"), "the conversion")
    check(done["id"].startswith("cnv_"), "a conversion id")
    after = balances(srv)
    me = cust.user_id
    check_eq(delta(before, after, me, "USD"), -10000, "the USD wallet paid the amount")
    check_eq(delta(before, after, me, "EUR"), credit, "the EUR wallet got the credit")
    check_eq(delta(before, after, "system:fx_liquidity", "USD"), 10000, "USD liquidity")
    check_eq(delta(before, after, "system:fx_liquidity", "EUR"), -(credit + spread),
             "EUR liquidity paid the mid amount")
    check_eq(delta(before, after, "system:fx_revenue", "EUR"), spread, "the spread is revenue")
    for cur in ("USD", "EUR", "JPY"):
        check_eq(sum(v - before.get(k, 0) for k, v in after.items() if k[1] == cur), 0,
                 "%s movements sum to zero" % cur)

    # one transfer: every leg carries the conversion's group
    client = srv.client()
    legs = []
    for owner, cur in ((me, "EUR"), ("system:fx_revenue", "EUR"), ("system:fx_liquidity", "USD")):
        acct = [a for a in client.all_accounts() if a.get("owner") == owner
                and a["currency"] == cur][0]
        legs += [e for e in client.history(acct["id"]) if e.get("group_id") == done["transfer_id"]]
    check_eq(sorted(e["code"] for e in legs),
             ["conversion", "conversion_credit", "conversion_spread"], "the legs of one transfer")

    again = expect(convert(srv, cust.token, q["quote_id"], key), 201, what="the same request")
    check_eq(again["id"], done["id"], "a retry answers the first conversion")
    check_eq(balances(srv), after, "a retry moves nothing")
    q2 = expect(quote(srv, cust.token, "USD", "EUR", 500), 200)
    expect(convert(srv, cust.token, q2["quote_id"], key), 422, "idempotency_key_reused",
           "the key with another quote")
    expect(convert(srv, cust.token, q["quote_id"]), 422, "quote_expired", "a quote used twice")

    op = expect(call(srv, "GET", "/v1/me/operations/" + done["id"], token=cust.token), 200)
    check_eq((op["type"], op["credit_minor"]), ("conversion", credit), "the operation")
    expect(call(srv, "GET", "/v1/me/operations/" + done["id"], token=other.token), 404,
           "not_found", "someone else's conversion")
    acts = expect(call(srv, "GET", "/v1/me/activity?type=conversion", token=cust.token),
                  200)["data"]
    check_eq([a["id"] for a in acts], [done["id"]], "the conversion in the activity")

    # the other way, into the wallet that now exists, after the rate moved: the quote holds
    set_rate(srv, "EUR", "USD", "1.0854")
    q3 = expect(quote(srv, cust.token, "EUR", "USD", 3001), 200)
    set_rate(srv, "EUR", "USD", "2")
    r3, c3, s3 = expected_price(3001, "EUR", "USD", "1.0854")
    got = expect(convert(srv, cust.token, q3["quote_id"]), 201, what="conversion back")
    check_eq((got["credit_minor"], q3["credit_minor"], q3["spread_minor"], got["rate"]),
             (c3, c3, s3, rate_text(r3)), "the quoted rate holds after the rate moved")
    check_eq(balances(srv)[(me, "USD")], 15000 + c3, "the USD wallet after both conversions")
    check(usd, "wallet")
    srv.check_verify()


def test_scales(ctx):
    """Conversions between currencies of different scales (USD cents, JPY yen) round down for
    the customer and never book a negative spread; an amount worth less than one minor unit of
    the target is refused."""
    srv = shared(ctx)
    set_rate(srv, "USD", "JPY", "150.25")
    set_rate(srv, "JPY", "USD", "0.0066")
    cust = customer(srv)
    fund(srv, cust.token, 100000, "USD")
    fund(srv, cust.token, 50000, "JPY")
    for frm, to, mid, amount in (("USD", "JPY", "150.25", 1234), ("USD", "JPY", "150.25", 1),
                                 ("JPY", "USD", "0.0066", 777), ("JPY", "USD", "0.0066", 152)):
        rate, credit, spread = expected_price(amount, frm, to, mid)
        q = expect(quote(srv, cust.token, frm, to, amount), 200, what="%s %s" % (frm, amount))
        check_eq((q["credit_minor"], q["spread_minor"], q["rate"]),
                 (credit, spread, rate_text(rate)), "price of %d %s in %s" % (amount, frm, to))
        check(spread >= 0 and credit >= 1, "rounding keeps the spread >= 0")
        before = balances(srv)
        expect(convert(srv, cust.token, q["quote_id"]), 201, what="conversion %s" % frm)
        after = balances(srv)
        check_eq((delta(before, after, cust.user_id, frm), delta(before, after, cust.user_id, to),
                  delta(before, after, "system:fx_revenue", to)), (-amount, credit, spread),
                 "balances after %d %s" % (amount, frm))
    got = expect(quote(srv, cust.token, "JPY", "USD", 1), 400, "invalid_amount",
                 "one yen is worth less than a cent")
    check("amount_minor" in got.get("detail", ""), "the detail names the amount: %s" % got)
    srv.check_verify()


def test_refusals(ctx):
    """Missing rates, the same currency, currencies not on offer, bad amounts and fields,
    foreign or mismatched quotes, a missing key, insufficient funds (the quote is given back),
    and roles that may not convert: each refused with its code, nothing moved."""
    srv = shared(ctx)
    cust = customer(srv)
    usd = fund(srv, cust.token, 1000, "USD")
    set_rate(srv, "USD", "EUR", "0.9213")
    before = balances(srv)
    expect(quote(srv, cust.token, "JPY", "EUR", 100), 422, "no_rate", "no JPY to EUR rate")
    set_rate(srv, "USD", "JPY", "150.25")
    expect(quote(srv, cust.token, "USD", "JPY", 2**63 - 1), 422, "amount_overflow",
           "a credit beyond 64 bits")
    got = expect(quote(srv, cust.token, "USD", "USD", 100), 422, "same_account", "USD to USD")
    check_eq(got.get("detail"), "to_currency", "detail of the same currency")
    for body, code, detail in (
            ({"from_currency": "XXX", "to_currency": "EUR", "amount_minor": 1},
             "unknown_currency", "from_currency"),
            ({"from_currency": "USD", "to_currency": "GBP", "amount_minor": 1},
             "unknown_currency", "to_currency"),
            ({"from_currency": "USD", "to_currency": "EUR", "amount_minor": 0},
             "invalid_amount", "amount_minor"),
            ({"from_currency": "USD", "to_currency": "EUR", "amount_minor": -5},
             "invalid_amount", "amount_minor"),
            ({"from_currency": "USD", "to_currency": "EUR", "amount_minor": "10"},
             "invalid_field", "amount_minor"),
            ({"from_currency": "USD", "to_currency": "EUR", "amount_minor": 1.5},
             "invalid_field", "amount_minor"),
            ({"from_currency": "USD", "to_currency": "EUR"}, "missing_field", "amount_minor"),
            ({"from_currency": "USD", "to_currency": "EUR", "amount_minor": 1, "fee": 0},
             "unknown_field", "fee")):
        got = expect(call(srv, "POST", "/v1/me/conversions/quote", body, token=cust.token), 400,
                     code, "quote %s" % body)
        check_eq(got.get("detail"), detail, "detail of a refused quote")

    q = expect(quote(srv, cust.token, "USD", "EUR", 800), 200)
    expect(call(srv, "POST", "/v1/me/conversions", {"quote_id": q["quote_id"]},
                token=cust.token), 400, "idempotency_key_missing", "no Idempotency-Key")
    expect(call(srv, "POST", "/v1/me/conversions", {"quote_id": q["quote_id"], "x": 1},
                token=cust.token, key=new_key()), 400, "unknown_field")
    expect(convert(srv, cust.token, "quo_AAAAAAAAAAAAA"), 422, "quote_expired", "an unknown quote")
    expect(convert(srv, cust.token, "x" * 200), 400, "invalid_field", "an overlong quote id")
    # a send's quote is not a conversion's
    friend = customer(srv, "Fred Friend")
    sendq = expect(call(srv, "POST", "/v1/me/quotes", {"to": friend.login, "amount_minor": 100,
                                                       "currency": "USD"}, token=cust.token),
                   200, what="send quote")
    expect(convert(srv, cust.token, sendq["quote_id"]), 422, "quote_expired",
           "a send's quote used for a conversion")
    check_eq(moved(before, balances(srv)), {}, "refusals moved nothing")

    big = expect(quote(srv, cust.token, "USD", "EUR", 5000), 200)
    key = new_key("poor")
    expect(convert(srv, cust.token, big["quote_id"], key), 422, "insufficient_funds",
           "a conversion larger than the wallet")
    expect(convert(srv, cust.token, big["quote_id"], key), 422, "insufficient_funds",
           "its retry answers the same")
    check_eq(moved(before, balances(srv)), {}, "a failed conversion moved nothing")
    fund(srv, cust.token, 4000, "USD")
    done = expect(convert(srv, cust.token, big["quote_id"]), 201,
                  what="the quote again after funding, with a new key")
    check_eq(done["credit_minor"], big["credit_minor"], "the quoted credit")

    nowallet = customer(srv, "Nina Nowallet")
    set_rate(srv, "EUR", "USD", "1.0854")
    q = expect(quote(srv, nowallet.token, "EUR", "USD", 100), 200,
               what="a quote needs no wallet")
    expect(convert(srv, nowallet.token, q["quote_id"]), 422, "insufficient_funds",
           "nothing to convert from")
    expect(call(srv, "POST", "/v1/me/conversions/quote",
                {"from_currency": "USD", "to_currency": "EUR", "amount_minor": 1},
                token=srv.token), 403, "forbidden", "an admin quoting a conversion")
    expect(call(srv, "POST", "/v1/me/conversions", {"quote_id": "quo_AAAAAAAAAAAAA"},
                token=srv.token, key=new_key()), 403, "forbidden", "an admin converting")
    check(usd, "wallet")
    srv.check_verify()


def test_races(ctx):
    """One quote sent at once under different keys converts once; the same key sent at once
    converts once."""
    srv = shared(ctx)
    set_rate(srv, "USD", "EUR", "0.9213")
    cust = customer(srv)
    fund(srv, cust.token, 50000, "USD")
    q = expect(quote(srv, cust.token, "USD", "EUR", 1000), 200)
    before = balances(srv)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        res = list(ex.map(lambda _i: convert(srv, cust.token, q["quote_id"]), range(8)))
    codes = sorted((s, b.get("code", "")) for s, b, _h in res)
    check_eq(codes.count((201, "")), 1, "one conversion of one quote: %s" % codes)
    check(all(c == (422, "quote_expired") for c in codes if c[0] != 201),
          "the others are refused: %s" % codes)
    check_eq(delta(before, balances(srv), cust.user_id, "USD"), -1000, "converted once")

    q = expect(quote(srv, cust.token, "USD", "EUR", 700), 200)
    key = new_key("same")
    before = balances(srv)
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        res = list(ex.map(lambda _i: convert(srv, cust.token, q["quote_id"], key), range(6)))
    ok = [b["id"] for s, b, _h in res if s == 201]
    check(len(ok) >= 1 and len(set(ok)) == 1, "one key, one conversion: %s"
          % [(s, b.get("code") or b.get("id")) for s, b, _h in res])
    check(all(s in (201, 409, 422) for s, _b, _h in res), "the others wait or are refused: %s"
          % [(s, b) for s, b, _h in res])
    check_eq(delta(before, balances(srv), cust.user_id, "USD"), -700, "converted once")
    again = expect(convert(srv, cust.token, q["quote_id"], key), 201, what="a later retry")
    check_eq(again["id"], ok[0], "the key answers its conversion")
    srv.check_verify()


def test_expiry_and_spread_change(ctx):
    """A quote refused after its expiry, and one priced before the spread setting changed
    (a restart with another fx_spread_bps) refused too; a fresh quote then uses the new
    spread."""
    srv = ctx.server(env=dict(ENV, COFFER_QUOTE_TTL_S=str(QUOTE_TTL_S)))
    set_rate(srv, "USD", "EUR", "0.9213")
    cust = customer(srv)
    fund(srv, cust.token, 10000, "USD")
    old = expect(quote(srv, cust.token, "USD", "EUR", 1000), 200)
    srv.extra_env["COFFER_FX_SPREAD_BPS"] = "120"
    srv.restart()
    expect(convert(srv, cust.token, old["quote_id"]), 422, "quote_expired",
           "a quote priced under another spread")
    t0 = time.monotonic()
    q = expect(quote(srv, cust.token, "USD", "EUR", 1000), 200)
    _rate, credit, spread = expected_price(1000, "USD", "EUR", "0.9213", 120)
    check_eq((q["spread_bps"], q["credit_minor"], q["spread_minor"]), (120, credit, spread),
             "the new spread prices new quotes")
    time.sleep(max(0.0, QUOTE_TTL_S + 0.3 - (time.monotonic() - t0)))
    expect(convert(srv, cust.token, q["quote_id"]), 422, "quote_expired", "an expired quote")
    q = expect(quote(srv, cust.token, "USD", "EUR", 1000), 200)
    expect(convert(srv, cust.token, q["quote_id"]), 201, what="a fresh quote")
    srv.check_verify()


def scan(srv, token, payload, **body):
    body["payload"] = payload
    return call(srv, "POST", "/v1/me/qr/scan", body, token=token)


def fx_pay(srv, token, payload, key=None, **body):
    body["payload"] = payload
    return call(srv, "POST", "/v1/me/payments", body, token=token, key=key or new_key("pay"))


def test_fx_payment_and_refunds(ctx):
    """A customer with dollars pays a merchant that settles in euros: the scan shows the euro
    price and the dollar total at the rate after the spread; paying with the quote after the
    rate moved pays exactly that total in one transfer (wallet -> USD liquidity, EUR liquidity
    -> merchant, EUR liquidity -> FX revenue, merchant -> fee revenue). Partial refunds in euros
    give back dollars at the payment's own rate, summing exactly to what was paid, with the
    spread and the fee."""
    srv = shared(ctx)
    set_rate(srv, "USD", "EUR", "0.9213")
    m = ph.merchant(srv, name="Cafe Euro", fee_bps=150, currency="EUR")
    cust = customer(srv, "Paula Payer")
    fund(srv, cust.token, 10000, "USD")
    code = ph.qr(srv, m, amount_minor=2500, reference="order-77")
    rate, debit, spread = expected_payment(2500, "USD", "EUR", "0.9213")
    q = expect(scan(srv, cust.token, code["payload"], pay_currency="USD"), 200, what="scan")
    check_eq((q["amount_minor"], q["currency"], q["total_minor"], q["total_currency"],
              q["rate"], q["mid_rate"], q["spread_minor"], q["fee_minor"]),
             (2500, "EUR", debit, "USD", rate_text(rate), "0.9213", spread, 0),
             "the customer's price before paying")
    check_eq((debit, spread), (2728, 13), "the documented example")
    plain = expect(scan(srv, cust.token, code["payload"]), 200, what="scan in euros")
    check_eq((plain["total_minor"], plain["total_currency"], "rate" in plain),
             (2500, "EUR", False), "without pay_currency the merchant's currency is paid")
    expect(fx_pay(srv, cust.token, code["payload"], quote_id=q["quote_id"]), 422,
           "quote_expired", "the fx quote paying in euros")

    set_rate(srv, "USD", "EUR", "0.5")  # the quote's rate holds
    before = balances(srv)
    key = new_key("pay")
    paid = expect(fx_pay(srv, cust.token, code["payload"], key, pay_currency="USD",
                         quote_id=q["quote_id"]), 201, what="fx payment")
    fee = (2500 * 150 + 5000) // 10000
    check_eq((paid["amount_minor"], paid["currency"], paid["credit_minor"],
              paid["credit_currency"], paid["fee_minor"], paid["fee_currency"], paid["rate"]),
             (debit, "USD", 2500, "EUR", fee, "EUR", rate_text(rate)), "the payment")
    after = balances(srv)
    me, mer = cust.user_id, m["id"]
    check_eq(moved(before, after), {
        (me, "USD"): -debit, ("system:fx_liquidity", "USD"): debit,
        ("system:fx_liquidity", "EUR"): -(2500 + spread), ("system:fx_revenue", "EUR"): spread,
        (mer, "EUR"): 2500 - fee, ("system:fee_revenue", "EUR"): fee}, "what moved")
    again = expect(fx_pay(srv, cust.token, code["payload"], key, pay_currency="USD",
                          quote_id=q["quote_id"]), 201, what="the same request")
    check_eq((again["id"], balances(srv)), (paid["id"], after), "a retry moves nothing")
    seen = expect(call(srv, "GET", "/v1/merchant/activity", token=m["token"]), 200)["data"][0]
    check_eq((seen["id"], seen["credit_minor"], seen["credit_currency"], seen["direction"]),
             (paid["id"], 2500, "EUR", "in"), "the merchant sees the euros it received")
    for token, want in ((m["token"], "25.00,0.%02d,EUR" % fee),
                        (cust.token, "%d.%02d,0.00,USD" % divmod(debit, 100))):
        path = "/v1/%s/activity/export" % ("merchant" if token == m["token"] else "me")
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.request("GET", path, headers={"Authorization": "Bearer " + token})
        text = conn.getresponse().read().decode()
        conn.close()
        row = [line for line in text.split("\r\n") if paid["id"] in line]
        check(len(row) == 1 and (",%s," % want) in row[0], "the CSV row shows the viewer's side: "
              "%s in %s" % (want, row))

    path = "/v1/merchant/payments/%s/refund" % paid["id"]
    r1 = expect(call(srv, "POST", path, {"amount_minor": 1000}, token=m["token"],
                     key=new_key()), 201, what="partial refund")
    check_eq((r1["amount_minor"], r1["currency"], r1["credit_minor"], r1["credit_currency"],
              r1["fee_minor"]),
             (1000, "EUR", debit * 1000 // 2500, "USD", fee * 1000 // 2500),
             "the refund in euros gives dollars back at the payment's rate")
    expect(call(srv, "POST", path, {"amount_minor": 1501}, token=m["token"], key=new_key()),
           422, "refund_exceeds_captured", "more than the merchant received")
    rest = expect(call(srv, "POST", path, {}, token=m["token"], key=new_key()), 201,
                  what="the rest")
    check_eq((rest["amount_minor"], r1["credit_minor"] + rest["credit_minor"]), (1500, debit),
             "the refunds sum exactly to what was paid")
    check_eq(moved(before, balances(srv)), {}, "everything is back where it was")
    srv.check_verify()


def test_fx_payment_static_and_refusals(ctx):
    """A static code paid from yen at the current rate (no quote), rounded up to whole yen;
    refusals change nothing: a currency not on offer, no rate for the pair, a malformed
    currency, too little money, a quote for another wallet currency."""
    srv = shared(ctx)
    set_rate(srv, "JPY", "EUR", "0.0061")
    m = ph.merchant(srv, name="Wine Bar", fee_bps=0, currency="EUR")
    cust = customer(srv, "Yuki Yen")
    fund(srv, cust.token, 5000, "JPY")
    static = ph.qr(srv, m)
    rate, debit, spread = expected_payment(1234, "JPY", "EUR", "0.0061")
    before = balances(srv)
    paid = expect(fx_pay(srv, cust.token, static["payload"], amount_minor=1234,
                         pay_currency="JPY"), 201, what="static fx payment")
    check_eq((paid["amount_minor"], paid["currency"], paid["credit_minor"]),
             (debit, "JPY", 1234), "whole yen for the euro price")
    check_eq(moved(before, balances(srv))[(cust.user_id, "JPY")], -debit, "the yen paid")
    check_eq(moved(before, balances(srv))[("system:fx_revenue", "EUR")], spread, "spread")

    poor = customer(srv, "Pat Poor")
    fund(srv, poor.token, 100, "EUR")
    sushi = ph.qr(srv, ph.merchant(srv, name="Sushi Bar", fee_bps=0, currency="JPY"))
    before = balances(srv)
    for body, status, code_, what in (
            ({"pay_currency": "GBP"}, 400, "unknown_currency", "a currency not on offer"),
            ({"pay_currency": "usd"}, 400, "unknown_currency", "a malformed currency"),
            ({"pay_currency": 7}, 400, "invalid_field", "a currency that is not a string")):
        expect(fx_pay(srv, cust.token, static["payload"], amount_minor=100, **body), status,
               code_, what)
    expect(fx_pay(srv, poor.token, sushi["payload"], amount_minor=500, pay_currency="EUR"),
           422, "no_rate", "no EUR -> JPY rate")
    set_rate(srv, "EUR", "JPY", "160")
    expect(fx_pay(srv, poor.token, sushi["payload"], amount_minor=500, pay_currency="EUR"),
           422, "insufficient_funds", "too little in the wallet")
    q = expect(scan(srv, poor.token, sushi["payload"], amount_minor=50, pay_currency="EUR"), 200)
    check_eq((q["total_minor"], q["total_currency"]),
             (expected_payment(50, "EUR", "JPY", "160")[1], "EUR"),
             "50 yen in euro cents, rounded up")
    expect(fx_pay(srv, poor.token, sushi["payload"], amount_minor=50, pay_currency="JPY",
                  quote_id=q["quote_id"]), 422, "quote_expired", "a quote for another wallet")
    check_eq(moved(before, balances(srv)), {}, "refusals moved nothing")
    srv.check_verify()


TESTS = [
    test_rates,
    test_conversion,
    test_scales,
    test_refusals,
    test_races,
    test_expiry_and_spread_change,
    test_fx_payment_and_refunds,
    test_fx_payment_static_and_refusals,
]

if __name__ == "__main__":
    harness.main(TESTS)
