/*
 * pay_fx.c - exchange rates and conversions; see pay_fx.h.
 *
 * A conversion follows the shape of every paying route (pay_customer.c): answer a repeated
 * Idempotency-Key from its operation; otherwise take the quote for a fresh operation id, price
 * it again from the quote's own numbers (the same exact arithmetic, so the same result), open
 * the wallets, record the operation, run its legs, answer the outcome. The quote is taken before
 * the operation is recorded because the request names nothing but the quote: a crash in between
 * leaves the quote used by an operation that never existed (nothing moved; the customer asks
 * for a new quote).
 */
#include "api/pay_fx.h"

#include <stdio.h>
#include <string.h>

#include "api/risk_monitor.h"
#include "core/clock.h"
#include "money/currency.h"
#include "money/fx.h"
#include "money/money.h"

/* 100% in basis points. */
#define FX_BPS_WHOLE 10000

/* The longest "line N" detail of a refused rates file, NUL included. */
#define FX_BAD_LINE_DETAIL_BYTES 48

static void audit(struct http_request *req, const char *action, const char *target,
                  const char *detail)
{
    struct api *api = req->app;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    cf_best_effort(
        identity_audit(api->identity, &ctx, api_actor(req), action, target, "ok", detail));
}

/* A rate's text ("0.9213") into buf (FX_RATE_TEXT_BYTES_MAX). */
static void rate_text(int64_t rate_e9, char buf[FX_RATE_TEXT_BYTES_MAX])
{
    int n = fx_rate_format(rate_e9, buf, FX_RATE_TEXT_BYTES_MAX);
    CF_ASSERT(n > 0);
}

/* A currency code field: known to currency_find, copied into out. */
static enum cf_err currency_field(json_t *root, const char *key, char out[MONEY_CODE_BYTES_MAX + 1])
{
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_string(root, key, true, MONEY_CODE_BYTES_MAX, &s, &n);
    if (err != CF_OK)
        return err;
    if (currency_find(s, n) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    snprintf(out, MONEY_CODE_BYTES_MAX + 1, "%.*s", (int)n, s);
    return CF_OK;
}

/* Rates --------------------------------------------------------------------------------------- */

static json_t *rate_json(const struct fx_rate *r, int64_t updated_at_us)
{
    char text[FX_RATE_TEXT_BYTES_MAX];
    rate_text(r->rate_e9, text);
    json_t *o = json_pack("{s:s,s:s,s:s}", "base", r->base, "quote", r->quote, "rate", text);
    if (o != NULL && updated_at_us > 0) {
        char at[40];
        cf_time_format_rfc3339(updated_at_us, at, sizeof(at));
        json_object_set_new(o, "updated_at", json_string(at));
    }
    return o;
}

/* Writes the checked rates in one transaction, all with the same time: all or none. */
static enum cf_err rates_store(struct api *api, struct arena *arena, const struct fx_rate *rates,
                               size_t n, int64_t now)
{
    CF_ASSERT(n >= 1 && n <= FX_RATES_MAX);
    struct pay_rate *rows = arena_calloc(arena, n, sizeof(*rows));
    if (rows == NULL)
        return CF_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        CF_ASSERT(rates[i].rate_e9 >= 1 && rates[i].rate_e9 <= FX_RATE_E9_MAX);
        snprintf(rows[i].base, sizeof(rows[i].base), "%s", rates[i].base);
        snprintf(rows[i].quote, sizeof(rows[i].quote), "%s", rates[i].quote);
        rows[i].rate_e9 = rates[i].rate_e9;
    }
    return payments_rates_put(api->payments, rows, n, now);
}

/* {base, quote, rate}: checked as one line of a rates file is. */
static enum cf_err rate_decode(json_t *root, struct fx_rate *out, const char **detail)
{
    static const char *const fields[] = {"base", "quote", "rate", NULL};
    struct fx_rate r;
    memset(&r, 0, sizeof(r));
    enum cf_err err = api_json_fields(root, fields, detail);
    if (err != CF_OK)
        return err;
    *detail = "base";
    if ((err = currency_field(root, "base", r.base)) != CF_OK)
        return err;
    *detail = "quote";
    if ((err = currency_field(root, "quote", r.quote)) != CF_OK)
        return err;
    if (strcmp(r.base, r.quote) == 0)
        return CF_ERR_INVALID_FIELD;
    *detail = "rate";
    const char *s = NULL;
    size_t n = 0;
    if ((err = api_json_string(root, "rate", true, FX_RATE_TEXT_BYTES_MAX, &s, &n)) != CF_OK ||
        (err = fx_rate_parse(s, n, &r.rate_e9)) != CF_OK)
        return err;
    *detail = NULL;
    *out = r;
    return CF_OK;
}

static void admin_rate_set_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct fx_rate r;
    int64_t now = api_pay_now_us();
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = rate_decode(root, &r, &detail);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err,
                              detail); /* detail may point into root: copied first */
        json_decref(root);
        return;
    }
    json_decref(root);
    if ((err = rates_store(api, req->arena, &r, 1, now)) != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    char pair[2 * MONEY_CODE_BYTES_MAX + 2], text[FX_RATE_TEXT_BYTES_MAX];
    snprintf(pair, sizeof(pair), "%s/%s", r.base, r.quote);
    rate_text(r.rate_e9, text);
    audit(req, "rates.set", pair, text);
    api_reply_object(req, resp, 200, rate_json(&r, now));
}

enum http_action api_admin_rate_set(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, admin_rate_set_run);
}

/* {text}: parsed whole into rates (FX_RATES_MAX rows) before anything is written. */
static enum cf_err rates_file_decode(struct http_request *req, struct fx_rate *rates, size_t *n_out,
                                     const char **detail)
{
    static const char *const fields[] = {"text", NULL};
    json_t *root = NULL;
    const char *text = NULL;
    size_t len = 0, bad_line = 0;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK && (err = api_json_fields(root, fields, detail)) != CF_OK)
        *detail = arena_strndup(req->arena, *detail, strlen(*detail)); /* outlives root */
    if (err == CF_OK &&
        (err = api_json_string(root, "text", true, HTTP_BODY_BYTES_MAX, &text, &len)) != CF_OK)
        *detail = "text";
    if (err == CF_OK)
        err = fx_rates_parse(text, len, rates, FX_RATES_MAX, n_out, &bad_line);
    json_decref(root);
    if (err != CF_OK && bad_line > 0) {
        char *d = arena_alloc(req->arena, FX_BAD_LINE_DETAIL_BYTES);
        if (d != NULL)
            snprintf(d, FX_BAD_LINE_DETAIL_BYTES, "text: line %zu", bad_line);
        *detail = d;
    } else if (err == CF_OK && *n_out == 0) {
        err = CF_ERR_INVALID_FIELD;
        *detail = "text: the file holds no rates";
    }
    return err;
}

static void admin_rates_load_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct fx_rate *rates = arena_calloc(req->arena, FX_RATES_MAX, sizeof(*rates));
    const char *detail = NULL;
    size_t n = 0;
    int64_t now = api_pay_now_us();
    enum cf_err err = rates == NULL ? CF_ERR_NOMEM : rates_file_decode(req, rates, &n, &detail);
    if (err == CF_OK)
        err = rates_store(api, req->arena, rates, n, now);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    char count[32];
    snprintf(count, sizeof(count), "%zu pairs", n);
    audit(req, "rates.load", "rates", count);
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, rate_json(&rates[i], now));
    api_reply_object(req, resp, 200, json_pack("{s:I,s:o}", "loaded", (json_int_t)n, "data", data));
}

enum http_action api_admin_rates_load(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, admin_rates_load_run);
}

/* Every rate (at most FX_RATES_MAX), by base then quote. */
static enum cf_err rates_collect(struct api *api, struct arena *arena, json_t *data)
{
    CF_ASSERT(json_is_array(data));
    struct pay_rate *rows = arena_calloc(arena, FX_RATES_MAX, sizeof(*rows));
    size_t n = 0;
    enum cf_err err =
        rows == NULL ? CF_ERR_NOMEM : payments_rates_list(api->payments, rows, FX_RATES_MAX, &n);
    CF_ASSERT(err != CF_OK || n <= FX_RATES_MAX);
    for (size_t i = 0; i < n && err == CF_OK; i++) {
        if (rows[i].rate_e9 < 1 || rows[i].rate_e9 > FX_RATE_E9_MAX)
            return CF_ERR_CORRUPT; /* every writer checks the range */
        struct fx_rate r;
        memset(&r, 0, sizeof(r));
        snprintf(r.base, sizeof(r.base), "%s", rows[i].base);
        snprintf(r.quote, sizeof(r.quote), "%s", rows[i].quote);
        r.rate_e9 = rows[i].rate_e9;
        json_array_append_new(data, rate_json(&r, rows[i].updated_at_us));
    }
    return err;
}

static void rates_list_run(struct http_request *req, struct http_response *resp)
{
    json_t *data = json_array();
    enum cf_err err = data == NULL ? CF_ERR_NOMEM : rates_collect(req->app, req->arena, data);
    if (err != CF_OK) {
        json_decref(data);
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200, json_pack("{s:o}", "data", data));
}

enum http_action api_rates_list(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, rates_list_run);
}

/* Pricing ------------------------------------------------------------------------------------- */

/* A conversion's price (pay_fx.h, "Rounding"). */
struct fx_price {
    char from[MONEY_CODE_BYTES_MAX + 1];
    char to[MONEY_CODE_BYTES_MAX + 1];
    int64_t amount_minor;
    int64_t mid_rate_e9;
    int64_t spread_bps;
    int64_t rate_e9; /* the customer's */
    int64_t credit_minor;
    int64_t spread_minor;
};

/* Both currencies on offer and different. */
static enum cf_err price_check_pair(const struct api *api, const struct fx_price *p,
                                    const char **detail)
{
    *detail = "from_currency";
    if (!api_pay_currency_offered(api, p->from))
        return CF_ERR_UNKNOWN_CURRENCY;
    *detail = "to_currency";
    if (!api_pay_currency_offered(api, p->to))
        return CF_ERR_UNKNOWN_CURRENCY;
    if (strcmp(p->from, p->to) == 0)
        return CF_ERR_SAME_ACCOUNT;
    *detail = NULL;
    return CF_OK;
}

/* Fills rate_e9, credit_minor and spread_minor of p from its amount, pair, mid rate and spread. */
static enum cf_err price_compute(struct fx_price *p, const char **detail)
{
    CF_ASSERT(p->amount_minor > 0 && p->mid_rate_e9 >= 1 && p->mid_rate_e9 <= FX_RATE_E9_MAX);
    CF_ASSERT(p->spread_bps >= 0 && p->spread_bps <= FX_SPREAD_BPS_MAX);
    const struct currency *from = currency_find(p->from, strlen(p->from));
    const struct currency *to = currency_find(p->to, strlen(p->to));
    CF_ASSERT(from != NULL && to != NULL); /* checked by the caller */
    int64_t rate = 0, credit = 0, mid = 0, spread = 0;
    enum cf_err err = money_mul_bps_half_even(p->mid_rate_e9, FX_BPS_WHOLE - p->spread_bps, &rate);
    if (err != CF_OK)
        return err;
    *detail = "the rate less the spread rounds to zero";
    if (rate < 1)
        return CF_ERR_NO_RATE;
    *detail = "amount_minor";
    if ((err = fx_convert(p->amount_minor, from->scale, to->scale, rate, 0, &credit)) != CF_OK ||
        (err = fx_convert(p->amount_minor, from->scale, to->scale, p->mid_rate_e9, 0, &mid)) !=
            CF_OK)
        return err;
    *detail = "amount_minor: worth less than one minor unit of to_currency";
    if (credit < 1)
        return CF_ERR_INVALID_AMOUNT;
    if ((err = money_sub(mid, credit, &spread)) != CF_OK)
        return err;
    CF_ASSERT(rate <= p->mid_rate_e9 && spread >= 0); /* fx_convert is monotone in the rate */
    p->rate_e9 = rate;
    p->credit_minor = credit;
    p->spread_minor = spread;
    *detail = NULL;
    return CF_OK;
}

enum cf_err api_pay_fx_for_credit(const char *from, const char *to, int64_t credit_minor,
                                  int64_t mid_rate_e9, int64_t spread_bps,
                                  struct api_fx_payment *out)
{
    CF_ASSERT(credit_minor > 0 && mid_rate_e9 >= 1 && mid_rate_e9 <= FX_RATE_E9_MAX);
    CF_ASSERT(spread_bps >= 0 && spread_bps <= FX_SPREAD_BPS_MAX);
    const struct currency *f = currency_find(from, strlen(from));
    const struct currency *t = currency_find(to, strlen(to));
    CF_ASSERT(f != NULL && t != NULL && f != t); /* checked by the caller */
    int64_t rate = 0, debit = 0, mid = 0, spread = 0;
    enum cf_err err = money_mul_bps_half_even(mid_rate_e9, FX_BPS_WHOLE - spread_bps, &rate);
    if (err != CF_OK)
        return err;
    if (rate < 1)
        return CF_ERR_NO_RATE;
    if ((err = fx_convert_for_target(credit_minor, f->scale, t->scale, rate, 0, &debit)) != CF_OK ||
        (err = fx_convert(debit, f->scale, t->scale, mid_rate_e9, 0, &mid)) != CF_OK ||
        (err = money_sub(mid, credit_minor, &spread)) != CF_OK)
        return err;
    CF_ASSERT(debit >= 1 && spread >= 0); /* mid >= the customer's conversion >= credit */
    out->rate_e9 = rate;
    out->debit_minor = debit;
    out->spread_minor = spread;
    return CF_OK;
}

/* What a conversion quote binds to: the customer and the spread setting it was priced under. */
static void price_binding(const char *user_id, int64_t spread_bps, uint8_t out[HASH_BYTES])
{
    char text[PAY_PARTY_BYTES_MAX + 48];
    int n = snprintf(text, sizeof(text), "conversion|%s|%lld", user_id, (long long)spread_bps);
    CF_ASSERT(n > 0 && (size_t)n < sizeof(text));
    hash_sha256(text, (size_t)n, out);
}

/* Quotes -------------------------------------------------------------------------------------- */

/* {from_currency, to_currency, amount_minor} */
static enum cf_err quote_decode(json_t *root, struct fx_price *p, const char **detail)
{
    static const char *const fields[] = {"from_currency", "to_currency", "amount_minor", NULL};
    memset(p, 0, sizeof(*p));
    enum cf_err err = api_json_fields(root, fields, detail);
    if (err != CF_OK)
        return err;
    *detail = "from_currency";
    if ((err = currency_field(root, "from_currency", p->from)) != CF_OK)
        return err;
    *detail = "to_currency";
    if ((err = currency_field(root, "to_currency", p->to)) != CF_OK)
        return err;
    *detail = "amount_minor";
    if ((err = api_json_int(root, "amount_minor", true, &p->amount_minor)) != CF_OK)
        return err;
    if (p->amount_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    *detail = NULL;
    return CF_OK;
}

/* Prices p at the current mid rate and spread setting and stores the quote in q. */
static enum cf_err quote_issue(struct api *api, const char *user_id, struct fx_price *p,
                               struct pay_quote *q, const char **detail)
{
    CF_ASSERT(user_id[0] != '\0' && p->amount_minor > 0); /* decoded by the caller */
    enum cf_err err = price_check_pair(api, p, detail);
    if (err != CF_OK)
        return err;
    *detail = "no rate is set from from_currency to to_currency";
    if ((err = payments_rate_get(api->payments, p->from, p->to, &p->mid_rate_e9)) != CF_OK)
        return err;
    p->spread_bps = api->pay.fx_spread_bps;
    if ((err = price_compute(p, detail)) != CF_OK)
        return err;
    memset(q, 0, sizeof(*q));
    payments_id_new("quo_", q->id);
    snprintf(q->user_id, sizeof(q->user_id), "%s", user_id);
    price_binding(user_id, p->spread_bps, q->binding);
    q->amount_minor = p->amount_minor;
    snprintf(q->currency, sizeof(q->currency), "%s", p->from);
    q->credit_minor = p->credit_minor;
    snprintf(q->credit_currency, sizeof(q->credit_currency), "%s", p->to);
    q->rate_e9 = p->mid_rate_e9; /* the customer's rate and the spread follow from it */
    q->expires_at_us = api_pay_now_us() + api->pay.quote_ttl_s * 1000000;
    CF_ASSERT(q->credit_minor >= 1 && strcmp(q->currency, q->credit_currency) != 0);
    return payments_quote_put(api->payments, q);
}

static json_t *quote_json(const struct pay_quote *q, const struct fx_price *p)
{
    char exp[40], rate[FX_RATE_TEXT_BYTES_MAX], mid[FX_RATE_TEXT_BYTES_MAX];
    cf_time_format_rfc3339(q->expires_at_us, exp, sizeof(exp));
    rate_text(p->rate_e9, rate);
    rate_text(p->mid_rate_e9, mid);
    json_t *o = json_pack("{s:s,s:I,s:s,s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s}", "quote_id", q->id,
                          "amount_minor", (json_int_t)p->amount_minor, "currency", p->from,
                          "credit_minor", (json_int_t)p->credit_minor, "credit_currency", p->to,
                          "rate", rate, "mid_rate", mid, "spread_bps", (json_int_t)p->spread_bps,
                          "spread_minor", (json_int_t)p->spread_minor, "fee_minor", (json_int_t)0,
                          "total_minor", (json_int_t)p->amount_minor, "expires_at", exp);
    return o;
}

static void conversion_quote_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct fx_price p;
    struct pay_quote q;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK && (err = quote_decode(root, &p, &detail)) != CF_OK && detail != NULL)
        detail = arena_strndup(req->arena, detail, strlen(detail)); /* may point into root */
    json_decref(root);
    if (err == CF_OK)
        err = quote_issue(api, api_pay_me_id(req), &p, &q, &detail);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    api_reply_object(req, resp, 200, quote_json(&q, &p));
}

enum http_action api_me_conversion_quote(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, conversion_quote_run);
}

/* Conversions --------------------------------------------------------------------------------- */

/* A conversion as JSON: the operation, its customer rate and its quote. */
static void conversion_reply(struct http_request *req, struct http_response *resp,
                             const struct pay_op *op)
{
    CF_ASSERT(op->kind == PAY_KIND_CONVERSION); /* checked by the callers */
    if (op->status == PAY_STATUS_FAILED) {
        api_pay_outcome_reply(req, resp, op, api_pay_me_id(req)); /* the stored error */
        return;
    }
    json_t *o = api_pay_op_json(op, api_pay_me_id(req));
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    char rate[FX_RATE_TEXT_BYTES_MAX];
    if (op->rate_e9 >= 1 && op->rate_e9 <= FX_RATE_E9_MAX) {
        rate_text(op->rate_e9, rate);
        json_object_set_new(o, "rate", json_string(rate));
    }
    json_object_set_new(o, "quote_id", json_string(op->quote_id));
    api_reply_object(req, resp, op->status == PAY_STATUS_COMPLETED ? 201 : 202, o);
}

/* Runs op unless it is finished, gives the quote back when it failed, and answers. */
static void conversion_run_reply(struct http_request *req, struct http_response *resp,
                                 struct pay_op *op)
{
    struct api *api = req->app;
    enum cf_err err = CF_OK;
    if (op->status == PAY_STATUS_PROCESSING)
        err = api_pay_execute(api, req->arena, op);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL); /* the ledger never answered: a retry finishes it */
        return;
    }
    if (op->status == PAY_STATUS_FAILED)
        cf_best_effort(payments_quote_release(api->payments, op->quote_id, op->id));
    conversion_reply(req, resp, op);
}

/* A request whose key made a conversion before is answered from it: CF_OK when answered,
 * CF_ERR_NOT_FOUND when the key is new, another error to answer. */
static enum cf_err conversion_replayed(struct http_request *req, struct http_response *resp)
{
    struct pay_op op;
    enum cf_err err = api_pay_op_stored(req, &op);
    if (err == CF_OK &&
        (op.kind != PAY_KIND_CONVERSION || strcmp(op.payer, api_pay_me_id(req)) != 0))
        err = CF_ERR_IDEM_KEY_REUSED;
    if (err != CF_OK)
        return err;
    conversion_run_reply(req, resp, &op);
    return CF_OK;
}

/* The operation of claimed quote q: priced again from its own numbers, wallets opened. */
static enum cf_err conversion_op(struct http_request *req, const struct pay_quote *q,
                                 struct pay_op *op, const char **detail)
{
    struct api *api = req->app;
    struct fx_price p;
    CF_ASSERT(q->id[0] != '\0' && op->id[0] != '\0' && op->idem[0] != '\0');
    memset(&p, 0, sizeof(p));
    snprintf(p.from, sizeof(p.from), "%s", q->currency);
    snprintf(p.to, sizeof(p.to), "%s", q->credit_currency);
    p.amount_minor = q->amount_minor;
    p.mid_rate_e9 = q->rate_e9;
    p.spread_bps = api->pay.fx_spread_bps; /* the binding held it equal to the quote's */
    enum cf_err err = price_check_pair(api, &p, detail);
    if (err == CF_OK)
        err = price_compute(&p, detail);
    if (err == CF_OK && (p.credit_minor != q->credit_minor || q->fee_minor != 0))
        err = CF_ERR_QUOTE_EXPIRED; /* not what the customer accepted: refuse */
    if (err != CF_OK)
        return err;
    op->kind = PAY_KIND_CONVERSION;
    snprintf(op->payer, sizeof(op->payer), "%s", api_pay_me_id(req));
    snprintf(op->payee, sizeof(op->payee), "%s", api_pay_me_id(req));
    op->amount_minor = p.amount_minor;
    snprintf(op->currency, sizeof(op->currency), "%s", p.from);
    op->credit_minor = p.credit_minor;
    snprintf(op->credit_currency, sizeof(op->credit_currency), "%s", p.to);
    op->rate_e9 = p.rate_e9;
    CF_ASSERT(op->rate_e9 >= 1 && op->credit_minor >= 1 && op->fee_minor == 0);
    snprintf(op->quote_id, sizeof(op->quote_id), "%s", q->id);
    snprintf(op->reference, sizeof(op->reference), PAY_FX_SPREAD_REF "%lld",
             (long long)p.spread_minor);
    *detail = "from_currency: no wallet in this currency";
    err = api_pay_wallet(api, req->arena, op->payer, op->currency, false, &op->payer_account);
    if (err == CF_ERR_NOT_FOUND)
        return CF_ERR_INSUFFICIENT_FUNDS; /* nothing to convert from */
    *detail = NULL;
    if (err == CF_OK)
        err = api_pay_wallet(api, req->arena, op->payee, op->credit_currency, true,
                             &op->payee_account);
    return err;
}

/* Takes the quote for a fresh operation and records it; *replay when the key's operation was
 * recorded meanwhile (the quote is then given back and *op is that operation). */
static enum cf_err conversion_start(struct http_request *req, const char *quote_id,
                                    struct pay_op *op, bool *replay, const char **detail)
{
    struct api *api = req->app;
    uint8_t binding[HASH_BYTES];
    struct pay_quote q;
    CF_ASSERT(quote_id != NULL && replay != NULL);
    enum cf_err err = api_pay_op_open(req, PAY_KIND_CONVERSION, op);
    if (err != CF_OK)
        return err;
    price_binding(api_pay_me_id(req), api->pay.fx_spread_bps, binding);
    *detail = "quote_id";
    if ((err = payments_quote_claim(api->payments, quote_id, api_pay_me_id(req), binding, op->id,
                                    api_pay_now_us(), &q)) != CF_OK)
        return err;
    err = conversion_op(req, &q, op, detail);
    if (err == CF_OK)
        err = api_pay_op_record(api, &(struct api_risk_ctx){.req = req, .fresh = true}, op,
                                replay); /* conversion_replayed just looked */
    if (err != CF_OK || *replay)
        cf_best_effort(payments_quote_release(api->payments, q.id, op->id));
    CF_ASSERT(err != CF_OK || op->kind == PAY_KIND_CONVERSION);
    return err;
}

/* {quote_id} into quote_id (PAY_ID_BYTES_MAX). */
static enum cf_err conversion_decode(struct http_request *req, char *quote_id, const char **detail)
{
    static const char *const fields[] = {"quote_id", NULL};
    json_t *root = NULL;
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK && (err = api_json_fields(root, fields, detail)) != CF_OK)
        *detail = arena_strndup(req->arena, *detail, strlen(*detail)); /* outlives root */
    if (err == CF_OK &&
        (err = api_json_string(root, "quote_id", true, PAY_ID_BYTES_MAX - 1, &s, &n)) != CF_OK)
        *detail = "quote_id";
    if (err == CF_OK)
        snprintf(quote_id, PAY_ID_BYTES_MAX, "%.*s", (int)n, s);
    json_decref(root);
    return err;
}

static void conversion_run(struct http_request *req, struct http_response *resp)
{
    char quote_id[PAY_ID_BYTES_MAX];
    const char *detail = NULL;
    struct pay_op op;
    bool replay = false;
    enum cf_err err = conversion_decode(req, quote_id, &detail);
    if (err == CF_OK) {
        err = conversion_replayed(req, resp);
        if (err == CF_OK)
            return; /* answered from the stored operation */
        if (err == CF_ERR_NOT_FOUND)
            err = CF_OK;
    }
    if (err == CF_OK)
        err = conversion_start(req, quote_id, &op, &replay, &detail);
    if (err == CF_ERR_QUOTE_EXPIRED && conversion_replayed(req, resp) == CF_OK)
        return; /* a request with the same key, run at the same time, took the quote */
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    conversion_run_reply(req, resp, &op);
}

enum http_action api_me_conversion(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, conversion_run);
}
