/*
 * pay_customer.c - a customer's money movement: scanning a merchant's QR code (a quote),
 * paying it, quoting and sending money to a person, their handle, their activity; and the
 * merchant's refunds and activity, which are the same operations seen from the other side.
 *
 * Every paying route takes an Idempotency-Key and follows one shape: check and price the
 * request, check its step-up, record the operation (payments_op_begin; a repeated key answers
 * the stored operation), take what must be used once (a dynamic QR code, a quote), run the
 * ledger legs, answer the outcome.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/pay.h"
#include "api/pay_fx.h"
#include "api/risk_freeze.h"
#include "api/risk_monitor.h"
#include "api/risk_screening.h"
#include "core/clock.h"
#include "money/currency.h"
#include "money/fee.h"
#include "money/fx.h"
#include "money/money.h"
#include "payments/emvco.h"

#define ACTIVITY_PAGE_MAX 100
#define ACTIVITY_PAGE_DEFAULT 50

/* SHA-256 of what a quote prices, so the payment that uses it must price the same thing. */
static void quote_binding(const char *kind, const char *payee, const char *code, int64_t amount,
                          const char *currency, uint8_t out[HASH_BYTES])
{
    char text[256];
    int n = snprintf(text, sizeof(text), "%s|%s|%s|%lld|%s", kind, payee, code, (long long)amount,
                     currency);
    CF_ASSERT(n > 0 && (size_t)n < sizeof(text));
    hash_sha256(text, (size_t)n, out);
}

static enum cf_err quote_issue(struct api *api, const char *user_id,
                               const uint8_t binding[HASH_BYTES], int64_t amount,
                               const char *currency, int64_t fee, struct pay_quote *q)
{
    memset(q, 0, sizeof(*q));
    payments_id_new("quo_", q->id);
    snprintf(q->user_id, sizeof(q->user_id), "%s", user_id);
    memcpy(q->binding, binding, HASH_BYTES);
    q->amount_minor = amount;
    snprintf(q->currency, sizeof(q->currency), "%s", currency);
    snprintf(q->credit_currency, sizeof(q->credit_currency), "%s", currency);
    q->fee_minor = fee;
    q->credit_minor = amount;
    q->expires_at_us = api_pay_now_us() + api->pay.quote_ttl_s * 1000000;
    return payments_quote_put(api->payments, q);
}

static json_t *quote_json(const struct pay_quote *q, int64_t total)
{
    char exp[40];
    cf_time_format_rfc3339(q->expires_at_us, exp, sizeof(exp));
    return json_pack("{s:s,s:I,s:s,s:I,s:I,s:s}", "quote_id", q->id, "amount_minor",
                     (json_int_t)q->amount_minor, "currency", q->currency, "fee_minor",
                     (json_int_t)q->fee_minor, "total_minor", (json_int_t)total, "expires_at", exp);
}

/* The step-up rule: above the configured amount, or (when new_payee_counts: sends to people)
 * to someone never paid before. payee is who is paid (a user or merchant id); the challenge is
 * bound to bound_to, what the payer named them by (the phone, email or @handle of a send, which
 * is all the payer knows; the merchant id of a payment). Paying a merchant for the first time needs
 * none below the amount, as at a till. */
static enum cf_err step_up(struct http_request *req, const char *action, const char *payee,
                           const char *bound_to, int64_t amount, const char *currency,
                           const struct identity_verification *v, const char *idem,
                           bool new_payee_counts, bool *new_payee_out)
{
    struct api *api = req->app;
    const struct api_principal *p = api_principal(req);
    bool known = false;
    enum cf_err err = identity_payee_known(api->identity, &p->user, payee, &known);
    if (err != CF_OK)
        return err;
    *new_payee_out = !known;
    if ((known || !new_payee_counts) &&
        amount <= identity_config_get(api->identity)->step_up_amount_minor)
        return CF_OK;
    struct identity_action a = {
        .action = action, .amount_minor = amount, .currency = currency, .payee = bound_to};
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    return identity_challenge_consume(api->identity, &ctx, &p->user, &a, v, idem);
}

/* A request whose key made an operation before is answered from it: CF_OK when answered,
 * CF_ERR_NOT_FOUND when the key is new, another error to answer. */
static enum cf_err op_replayed(struct http_request *req, struct http_response *resp,
                               const char *viewer)
{
    struct pay_op op;
    enum cf_err err = api_pay_op_stored(req, &op);
    if (err != CF_OK)
        return err;
    api_pay_op_run_reply(req, resp, &op, viewer);
    return CF_OK;
}

/* Marks op failed before any money moved (a used QR code, a stale quote) and answers err. */
static void op_fail_reply(struct http_request *req, struct http_response *resp, struct pay_op *op,
                          enum cf_err err)
{
    struct api *api = req->app;
    struct pay_op_update u = {.status = PAY_STATUS_FAILED, .error = cf_err_code(err)};
    cf_best_effort(payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PROCESSING, &u,
                                      api_pay_now_us()));
    api_problem(req, resp, err, NULL);
}

/* Merchant QR codes --------------------------------------------------------------------------- */

/* What a scanned code asks for, checked against Coffer's own records, and its price in the
 * customer's currency when they pay from another one (pay_fx.h, "Payments across
 * currencies"). */
struct scan {
    struct pay_merchant merchant;
    struct pay_qr qr; /* dynamic codes */
    bool dynamic;
    int64_t amount_minor; /* the merchant's price, in its currency */
    int64_t fee_minor;    /* the merchant's: the customer pays none */
    char pay_currency[MONEY_CODE_BYTES_MAX + 1];
    bool fx;                     /* pay_currency is not the merchant's */
    int64_t mid_rate_e9;         /* fx only */
    struct api_fx_payment price; /* fx only */
};

/* The dynamic code e names, checked against its record and the amount the payer typed. */
static enum cf_err scan_dynamic(struct api *api, const struct emvco_mpm *e, int64_t amount_in,
                                struct scan *s, const char **detail)
{
    *detail = "unknown payment code";
    enum cf_err err = payments_qr_get(api->payments, e->code_id, &s->qr);
    if (err != CF_OK)
        return err == CF_ERR_NOT_FOUND ? CF_ERR_INVALID_QR : err;
    *detail = "the code does not match its record";
    if (strcmp(s->qr.merchant_id, s->merchant.merchant_id) != 0 ||
        s->qr.amount_minor != e->amount_minor || strcmp(s->qr.currency, s->merchant.currency) != 0)
        return CF_ERR_INVALID_QR;
    *detail = "the amount is set by the code";
    if (amount_in != 0 && amount_in != s->qr.amount_minor)
        return CF_ERR_INVALID_FIELD;
    *detail = "the code has expired or was used";
    if (s->qr.used_by[0] != '\0' || s->qr.expires_at_us <= api_pay_now_us())
        return CF_ERR_QR_EXPIRED;
    s->amount_minor = s->qr.amount_minor;
    return CF_OK;
}

/* Parses the payload and matches it with the merchant and code it names; pay_currency (NULL:
 * the merchant's) is the wallet the customer pays from. */
static enum cf_err scan_resolve(struct api *api, const char *payload, size_t len, int64_t amount_in,
                                const char *pay_currency, struct scan *s, const char **detail)
{
    struct emvco_mpm e;
    memset(s, 0, sizeof(*s));
    enum cf_err err = emvco_mpm_parse(payload, len, NULL, -1, &e, detail);
    if (err != CF_OK)
        return err;
    *detail = "the code is not a Coffer merchant's code";
    if (e.merchant_id[0] == '\0')
        return CF_ERR_INVALID_QR;
    err = payments_merchant_get(api->payments, e.merchant_id, false, &s->merchant);
    if (err != CF_OK)
        return err == CF_ERR_NOT_FOUND ? CF_ERR_INVALID_QR : err;
    const struct currency *c = currency_find(s->merchant.currency, strlen(s->merchant.currency));
    *detail = "the code's currency is not the merchant's";
    if (c == NULL || c->numeric != (int)strtol(e.currency_numeric, NULL, 10))
        return CF_ERR_INVALID_QR;
    s->dynamic = e.dynamic;
    if (e.dynamic) {
        if ((err = scan_dynamic(api, &e, amount_in, s, detail)) != CF_OK)
            return err;
    } else {
        *detail = "amount_minor: a static code needs the amount typed by the payer";
        if (amount_in <= 0)
            return CF_ERR_INVALID_AMOUNT;
        s->amount_minor = amount_in;
    }
    snprintf(s->pay_currency, sizeof(s->pay_currency), "%s",
             pay_currency != NULL ? pay_currency : s->merchant.currency);
    *detail = "pay_currency";
    if (!api_pay_currency_offered(api, s->pay_currency))
        return CF_ERR_UNKNOWN_CURRENCY;
    s->fx = strcmp(s->pay_currency, s->merchant.currency) != 0;
    *detail = NULL;
    return api_pay_merchant_fee(api, &s->merchant, s->amount_minor, &s->fee_minor);
}

/* Prices an fx scan at mid_rate_e9 (0: the current rate) and the spread setting. */
static enum cf_err scan_price(struct api *api, struct scan *s, int64_t mid_rate_e9,
                              const char **detail)
{
    if (!s->fx)
        return CF_OK;
    enum cf_err err = CF_OK;
    *detail = "no rate is set from pay_currency to the merchant's currency";
    if (mid_rate_e9 == 0 && (err = payments_rate_get(api->payments, s->pay_currency,
                                                     s->merchant.currency, &mid_rate_e9)) != CF_OK)
        return err;
    *detail = "amount_minor";
    if ((err = api_pay_fx_for_credit(s->pay_currency, s->merchant.currency, s->amount_minor,
                                     mid_rate_e9, api->pay.fx_spread_bps, &s->price)) != CF_OK)
        return err;
    s->mid_rate_e9 = mid_rate_e9;
    *detail = NULL;
    return CF_OK;
}

/* What the customer pays, in pay_currency. */
static int64_t scan_debit(const struct scan *s)
{
    return s->fx ? s->price.debit_minor : s->amount_minor;
}

/* A quote of a payment binds to the code, the price and, across currencies, the wallet's
 * currency and the spread setting (the mid rate is the quote's own). */
static void scan_binding(const struct api *api, const struct scan *s, uint8_t out[HASH_BYTES])
{
    char kind[48] = "payment";
    if (s->fx)
        snprintf(kind, sizeof(kind), "payment|%s|%lld", s->pay_currency,
                 (long long)api->pay.fx_spread_bps);
    quote_binding(kind, s->merchant.merchant_id, s->dynamic ? s->qr.id : "static",
                  s->amount_minor, s->merchant.currency, out);
}

/* Stores the quote the scan shows: the customer's side, the merchant's, and the mid rate. */
static enum cf_err scan_quote_issue(struct api *api, const char *user_id, const struct scan *s,
                                    struct pay_quote *q)
{
    memset(q, 0, sizeof(*q));
    payments_id_new("quo_", q->id);
    snprintf(q->user_id, sizeof(q->user_id), "%s", user_id);
    scan_binding(api, s, q->binding);
    q->amount_minor = scan_debit(s);
    snprintf(q->currency, sizeof(q->currency), "%s", s->pay_currency);
    q->credit_minor = s->amount_minor;
    snprintf(q->credit_currency, sizeof(q->credit_currency), "%s", s->merchant.currency);
    q->rate_e9 = s->fx ? s->mid_rate_e9 : 0;
    q->expires_at_us = api_pay_now_us() + api->pay.quote_ttl_s * 1000000;
    return payments_quote_put(api->payments, q);
}

/* The scan's answer: the quote, the merchant, and across currencies the customer's price. */
static json_t *scan_json(const struct pay_quote *q, const struct scan *s)
{
    char exp[40];
    cf_time_format_rfc3339(q->expires_at_us, exp, sizeof(exp));
    json_t *o = json_pack("{s:s,s:I,s:s,s:I,s:I,s:s,s:s}", "quote_id", q->id, "amount_minor",
                          (json_int_t)s->amount_minor, "currency", s->merchant.currency,
                          "fee_minor", (json_int_t)0, "total_minor", (json_int_t)scan_debit(s),
                          "total_currency", s->pay_currency, "expires_at", exp);
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "merchant",
                        json_pack("{s:s,s:s,s:s,s:s}", "id", s->merchant.merchant_id, "name",
                                  s->merchant.display_name, "city", s->merchant.city, "mcc",
                                  s->merchant.mcc));
    json_object_set_new(o, "dynamic", json_boolean(s->dynamic));
    if (s->dynamic && s->qr.reference[0] != '\0')
        json_object_set_new(o, "reference", json_string(s->qr.reference));
    if (s->fx) {
        char rate[FX_RATE_TEXT_BYTES_MAX], mid[FX_RATE_TEXT_BYTES_MAX];
        int rate_len = fx_rate_format(s->price.rate_e9, rate, sizeof(rate));
        int mid_len = fx_rate_format(s->mid_rate_e9, mid, sizeof(mid));
        CF_ASSERT(rate_len > 0 && mid_len > 0); /* FX_RATE_TEXT_BYTES_MAX always suffices */
        json_object_set_new(o, "rate", json_string(rate));
        json_object_set_new(o, "mid_rate", json_string(mid));
        json_object_set_new(o, "spread_minor", json_integer(s->price.spread_minor));
    }
    return o;
}

/* The optional quote_id, copied out of the request's JSON. */
static enum cf_err quote_id_read(json_t *root, char buf[PAY_ID_BYTES_MAX], const char **out)
{
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_string(root, "quote_id", false, PAY_ID_BYTES_MAX - 1, &s, &n);
    if (err != CF_OK || s == NULL)
        return err;
    snprintf(buf, PAY_ID_BYTES_MAX, "%.*s", (int)n, s);
    *out = buf;
    return CF_OK;
}

/* {payload, amount_minor?, pay_currency?, quote_id?, verification?} */
struct pay_body {
    const char *payload; /* in the request's JSON: valid until it is freed */
    size_t payload_len;
    int64_t amount_minor;
    const char *pay_currency; /* NULL or pay_currency_buf */
    char pay_currency_buf[MONEY_CODE_BYTES_MAX + 1];
    const char *quote_id; /* NULL or quote_buf */
    char quote_buf[PAY_ID_BYTES_MAX];
    struct identity_verification v;
};

/* The optional pay_currency, a known code, copied into b. */
static enum cf_err pay_currency_read(json_t *root, struct pay_body *b)
{
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_string(root, "pay_currency", false, MONEY_CODE_BYTES_MAX, &s, &n);
    if (err != CF_OK || s == NULL)
        return err;
    if (currency_find(s, n) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    snprintf(b->pay_currency_buf, sizeof(b->pay_currency_buf), "%.*s", (int)n, s);
    b->pay_currency = b->pay_currency_buf;
    return CF_OK;
}

static enum cf_err pay_body_decode(json_t *root, bool full, struct pay_body *b, const char **detail)
{
    static const char *const scan_fields[] = {"payload", "amount_minor", "pay_currency", NULL};
    static const char *const pay_fields[] = {"payload",  "amount_minor", "pay_currency",
                                             "quote_id", "verification", NULL};
    memset(b, 0, sizeof(*b));
    enum cf_err err = api_json_fields(root, full ? pay_fields : scan_fields, detail);
    if (err != CF_OK)
        return err;
    *detail = "payload";
    if ((err = api_json_string(root, "payload", true, EMVCO_PAYLOAD_BYTES_MAX, &b->payload,
                               &b->payload_len)) != CF_OK)
        return err;
    *detail = "amount_minor";
    if ((err = api_json_int(root, "amount_minor", false, &b->amount_minor)) != CF_OK)
        return err;
    if (b->amount_minor < 0)
        return CF_ERR_INVALID_AMOUNT;
    *detail = "pay_currency";
    if ((err = pay_currency_read(root, b)) != CF_OK)
        return err;
    if (full) {
        *detail = "quote_id";
        if ((err = quote_id_read(root, b->quote_buf, &b->quote_id)) != CF_OK)
            return err;
        *detail = "verification";
        if ((err = api_json_verification(root, &b->v)) != CF_OK)
            return err;
    }
    *detail = NULL;
    return CF_OK;
}

static void qr_scan_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct pay_body b;
    struct scan s;
    struct pay_quote q;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = pay_body_decode(root, false, &b, &detail);
    if (err == CF_OK)
        err = scan_resolve(api, b.payload, b.payload_len, b.amount_minor, b.pay_currency, &s,
                           &detail);
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK)
        err = scan_price(api, &s, 0, &detail);
    if (err == CF_OK)
        err = scan_quote_issue(api, api_pay_me_id(req), &s, &q);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    json_t *o = scan_json(&q, &s);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

enum http_action api_me_qr_scan(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, qr_scan_run);
}

/* Takes the payment's quote for op (when the payer named one) and prices the scan: at the
 * quote's rate, which must still give the debit it showed, else at the current rate. */
static enum cf_err payment_quote_take(struct http_request *req, const struct pay_body *b,
                                      struct scan *s, const struct pay_op *op,
                                      const char **detail)
{
    struct api *api = req->app;
    struct pay_quote q;
    memset(&q, 0, sizeof(q));
    enum cf_err err = CF_OK;
    if (b->quote_id != NULL) {
        uint8_t binding[HASH_BYTES];
        scan_binding(api, s, binding);
        *detail = "quote_id";
        if ((err = payments_quote_claim(api->payments, b->quote_id, api_pay_me_id(req), binding,
                                        op->id, api_pay_now_us(), &q)) != CF_OK)
            return err;
    }
    err = scan_price(api, s, s->fx ? q.rate_e9 : 0, detail);
    if (err == CF_OK && b->quote_id != NULL && q.amount_minor != scan_debit(s))
        err = CF_ERR_QUOTE_EXPIRED; /* not the price the customer accepted */
    if (err != CF_OK && b->quote_id != NULL)
        cf_best_effort(payments_quote_release(api->payments, b->quote_id, op->id));
    return err;
}

/* The payment of a scan: the customer's side, the merchant's, the fee and the spread. */
static enum cf_err payment_op(struct http_request *req, const struct scan *s,
                              const struct pay_body *b, struct pay_op *op)
{
    struct api *api = req->app;
    snprintf(op->payer, sizeof(op->payer), "%s", api_pay_me_id(req));
    snprintf(op->payee, sizeof(op->payee), "%s", s->merchant.merchant_id);
    op->payee_account = s->merchant.account_id;
    op->amount_minor = scan_debit(s);
    snprintf(op->currency, sizeof(op->currency), "%s", s->pay_currency);
    snprintf(op->credit_currency, sizeof(op->credit_currency), "%s", s->merchant.currency);
    op->credit_minor = s->amount_minor;
    op->fee_minor = s->fee_minor;
    if (s->fx) {
        op->rate_e9 = s->price.rate_e9;
        op->spread_minor = s->price.spread_minor;
    }
    if (b->quote_id != NULL)
        snprintf(op->quote_id, sizeof(op->quote_id), "%s", b->quote_id);
    snprintf(op->reference, sizeof(op->reference), "%s", s->dynamic ? s->qr.id : "static");
    return api_pay_wallet(api, req->arena, api_pay_me_id(req), op->currency, true,
                          &op->payer_account);
}

/* Records the payment of scan s: quote taken and priced, step-up checked; on any refusal the
 * quote is given back. *replay when the key's operation was recorded meanwhile. */
static enum cf_err payment_start(struct http_request *req, const struct pay_body *b,
                                 struct scan *s, struct pay_op *op, bool *replay, bool *new_payee,
                                 const char **detail)
{
    struct api *api = req->app;
    enum cf_err err = api_pay_op_open(req, PAY_KIND_PAYMENT, op);
    if (err != CF_OK || (err = payment_quote_take(req, b, s, op, detail)) != CF_OK)
        return err;
    err = payment_op(req, s, b, op);
    if (err == CF_OK)
        err = step_up(req, "payment", s->merchant.merchant_id, s->merchant.merchant_id,
                      op->amount_minor, op->currency, &b->v, op->idem, false, new_payee);
    struct api_risk_ctx rc = {.req = req,
                              .step_up_action = "payment",
                              .bound_to = s->merchant.merchant_id,
                              .v = &b->v,
                              .fresh = true,
                              .payee_seen = *new_payee ? API_RISK_PAYEE_NEW : API_RISK_PAYEE_KNOWN,
                              .mcc = strtol(s->merchant.mcc, NULL, 10)};
    if (err == CF_OK)
        err = api_pay_op_record(api, &rc, op, replay);
    if ((err != CF_OK || *replay) && b->quote_id != NULL)
        cf_best_effort(payments_quote_release(api->payments, b->quote_id, op->id));
    return err;
}

static void me_pay_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct pay_body b;
    struct scan s;
    struct pay_op op;
    bool replay = false, new_payee = false;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = pay_body_decode(root, true, &b, &detail);
    if (err == CF_OK && (err = op_replayed(req, resp, api_pay_me_id(req))) == CF_ERR_NOT_FOUND)
        err = CF_OK;
    else if (err == CF_OK) {
        json_decref(root);
        return; /* answered from the stored operation */
    }
    if (err == CF_OK)
        err = scan_resolve(api, b.payload, b.payload_len, b.amount_minor, b.pay_currency, &s,
                           &detail);
    detail = api_detail_keep(req, detail); /* it may point into root */
    if (err == CF_OK) /* a merchant frozen with blocks_incoming takes nothing */
        err = api_risk_party_check_incoming(api, s.merchant.merchant_id);
    if (err == CF_OK) /* b.v points into root: freed after */
        err = payment_start(req, &b, &s, &op, &replay, &new_payee, &detail);
    json_decref(root);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    if (!replay && s.dynamic &&
        (err = payments_qr_claim(api->payments, s.qr.id, op.id, api_pay_now_us())) != CF_OK) {
        if (b.quote_id != NULL)
            cf_best_effort(payments_quote_release(api->payments, b.quote_id, op.id));
        op_fail_reply(req, resp, &op, err);
        return;
    }
    api_pay_op_run_reply(req, resp, &op, api_pay_me_id(req));
    if (op.status == PAY_STATUS_FAILED && s.dynamic)
        cf_best_effort(payments_qr_release(api->payments, s.qr.id, op.id));
    if (op.status == PAY_STATUS_COMPLETED && new_payee)
        cf_best_effort(
            identity_payee_add(api->identity, &api_principal(req)->user, s.merchant.merchant_id));
}

enum http_action api_me_pay(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_pay_run);
}

/* People paying people -------------------------------------------------------------------------
 */

/* {to, amount_minor, currency, note?, quote_id?, verification?} */
struct send_body {
    char to[IDENTITY_LOGIN_BYTES_MAX + 1];
    int64_t amount_minor;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    char note[PAY_NOTE_BYTES_MAX];
    const char *quote_id; /* NULL or quote_buf */
    char quote_buf[PAY_ID_BYTES_MAX];
    struct identity_verification v;
};

static enum cf_err send_body_decode(json_t *root, bool full, struct send_body *b,
                                    const char **detail)
{
    static const char *const quote_fields[] = {"to", "amount_minor", "currency", NULL};
    static const char *const send_fields[] = {"to",       "amount_minor", "currency", "note",
                                              "quote_id", "verification", NULL};
    memset(b, 0, sizeof(*b));
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_fields(root, full ? send_fields : quote_fields, detail);
    if (err != CF_OK)
        return err;
    *detail = "to";
    if ((err = api_json_string(root, "to", true, sizeof(b->to) - 1, &s, &n)) != CF_OK)
        return err;
    snprintf(b->to, sizeof(b->to), "%.*s", (int)n, s);
    *detail = "amount_minor";
    if ((err = api_json_int(root, "amount_minor", true, &b->amount_minor)) != CF_OK)
        return err;
    if (b->amount_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    *detail = "currency";
    if (api_json_string(root, "currency", true, MONEY_CODE_BYTES_MAX, &s, &n) != CF_OK ||
        currency_find(s, n) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    snprintf(b->currency, sizeof(b->currency), "%.*s", (int)n, s);
    if (full) {
        *detail = "note";
        s = NULL; /* the note is optional: s must not keep the currency */
        if ((err = api_json_string(root, "note", false, PAY_NOTE_BYTES_MAX - 1, &s, &n)) != CF_OK)
            return err;
        if (s != NULL)
            snprintf(b->note, sizeof(b->note), "%.*s", (int)n, s);
        *detail = "quote_id";
        if ((err = quote_id_read(root, b->quote_buf, &b->quote_id)) != CF_OK)
            return err;
        *detail = "verification";
        if ((err = api_json_verification(root, &b->v)) != CF_OK)
            return err;
    }
    *detail = NULL;
    return CF_OK;
}

/* The recipient and the fee of a send. */
struct send_price {
    struct identity_recipient to;
    int64_t fee_minor;
    uint8_t binding[HASH_BYTES];
};

static enum cf_err send_price(struct http_request *req, const struct send_body *b,
                              struct send_price *out, const char **detail)
{
    struct api *api = req->app;
    *detail = "to";
    enum cf_err err = identity_recipient_find(api->identity, b->to, &out->to);
    if (err != CF_OK)
        return err;
    if (strcmp(out->to.user_id, api_pay_me_id(req)) == 0)
        return CF_ERR_SAME_ACCOUNT;
    *detail = "currency";
    if (!api_pay_currency_offered(api, b->currency))
        return CF_ERR_UNKNOWN_CURRENCY;
    struct fee_rule r = {.bps = api->pay.send_fee_bps,
                         .fixed_minor = api->pay.send_fee_fixed_minor};
    *detail = "amount_minor";
    if ((err = fee_compute(&r, b->amount_minor, &out->fee_minor)) != CF_OK)
        return err;
    quote_binding("send", out->to.user_id, "-", b->amount_minor, b->currency, out->binding);
    *detail = NULL;
    return CF_OK;
}

static void me_quote_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct send_body b;
    struct send_price p;
    struct pay_quote q;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = send_body_decode(root, false, &b, &detail);
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK)
        err = send_price(req, &b, &p, &detail);
    int64_t total = 0;
    if (err == CF_OK)
        err = money_add(b.amount_minor, p.fee_minor, &total);
    if (err == CF_OK)
        err = quote_issue(api, api_pay_me_id(req), p.binding, b.amount_minor, b.currency,
                          p.fee_minor, &q);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    json_t *o = quote_json(&q, total);
    json_object_set_new(o, "recipient", json_pack("{s:s}", "name", p.to.masked_name));
    api_reply_object(req, resp, 200, o);
}

enum http_action api_me_quote(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_quote_run);
}

static enum cf_err send_op(struct http_request *req, const struct send_body *b,
                           const struct send_price *p, struct pay_op *op)
{
    struct api *api = req->app;
    enum cf_err err = api_pay_op_open(req, PAY_KIND_SEND, op);
    if (err != CF_OK)
        return err;
    snprintf(op->payer, sizeof(op->payer), "%s", api_pay_me_id(req));
    snprintf(op->payee, sizeof(op->payee), "%s", p->to.user_id);
    op->amount_minor = b->amount_minor;
    op->credit_minor = b->amount_minor;
    snprintf(op->currency, sizeof(op->currency), "%s", b->currency);
    snprintf(op->credit_currency, sizeof(op->credit_currency), "%s", b->currency);
    op->fee_minor = p->fee_minor;
    snprintf(op->note, sizeof(op->note), "%s", b->note);
    if (b->quote_id != NULL)
        snprintf(op->quote_id, sizeof(op->quote_id), "%s", b->quote_id);
    err = api_pay_wallet(api, req->arena, op->payer, op->currency, true, &op->payer_account);
    if (err == CF_OK)
        err = api_pay_wallet(api, req->arena, op->payee, op->currency, true, &op->payee_account);
    return err;
}

/* A decoded send (b->v points into the request's JSON, alive for the call). */
static void send_execute(struct http_request *req, struct http_response *resp,
                         const struct send_body *sb, enum cf_err err, const char *detail)
{
    struct api *api = req->app;
    const struct send_body b = *sb;
    struct send_price p;
    struct pay_op op;
    bool replay = false, new_payee = false;
    if (err == CF_OK && (err = op_replayed(req, resp, api_pay_me_id(req))) == CF_ERR_NOT_FOUND)
        err = CF_OK;
    else if (err == CF_OK)
        return;
    if (err == CF_OK)
        err = send_price(req, &b, &p, &detail);
    int64_t total = 0;
    if (err == CF_OK)
        err = money_add(b.amount_minor, p.fee_minor, &total);
    if (err == CF_OK) /* a payee frozen with blocks_incoming takes nothing */
        err = api_risk_party_check_incoming(api, p.to.user_id);
    if (err == CF_OK)
        err = send_op(req, &b, &p, &op);
    if (err == CF_OK)
        err = step_up(req, "send", p.to.user_id, b.to, total, b.currency, &b.v, op.idem, true,
                      &new_payee);
    if (err == CF_OK && new_payee) /* a first payee is screened (a hit holds their payouts) */
        cf_best_effort(api_risk_screen_party(api, req->arena, p.to.user_id, NULL, NULL, NULL,
                                             "payee", NULL));
    struct api_risk_ctx rc = {.req = req,
                              .step_up_action = "send",
                              .bound_to = b.to,
                              .v = &b.v,
                              .step_up_amount_minor = total,
                              .fresh = true,
                              .payee_seen = new_payee ? API_RISK_PAYEE_NEW : API_RISK_PAYEE_KNOWN};
    if (err == CF_OK)
        err = api_pay_op_record(api, &rc, &op, &replay);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    if (!replay && b.quote_id != NULL) {
        struct pay_quote q;
        err = payments_quote_claim(api->payments, b.quote_id, api_pay_me_id(req), p.binding, op.id,
                                   api_pay_now_us(), &q);
        if (err == CF_OK && q.fee_minor != p.fee_minor)
            err = CF_ERR_QUOTE_EXPIRED; /* the fee changed since the quote */
        if (err != CF_OK) {
            op_fail_reply(req, resp, &op, err);
            return;
        }
    }
    api_pay_op_run_reply(req, resp, &op, api_pay_me_id(req));
    if (op.status == PAY_STATUS_COMPLETED && new_payee)
        cf_best_effort(identity_payee_add(api->identity, &api_principal(req)->user, op.payee));
}

static void me_send_run(struct http_request *req, struct http_response *resp)
{
    json_t *root = NULL;
    const char *detail = NULL;
    struct send_body b;
    memset(&b, 0, sizeof(b));
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = send_body_decode(root, true, &b, &detail);
    send_execute(req, resp, &b, err,
                 detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL);
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
}

enum http_action api_me_send(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_send_run);
}

static void me_handle_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"handle", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *text = NULL;
    size_t len = 0;
    char handle[IDENTITY_HANDLE_BYTES_MAX];
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && (err = api_json_string(root, "handle", true, 64, &text, &len)) != CF_OK)
        detail = "handle";
    char copy[65];
    if (err == CF_OK)
        snprintf(copy, sizeof(copy), "%.*s", (int)len, text);
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_handle_set(api->identity, &ctx, &api_principal(req)->user, copy, handle);
        detail = err == CF_ERR_CONFLICT ? "the handle is taken" : "handle";
    }
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    char at[IDENTITY_HANDLE_BYTES_MAX + 1];
    snprintf(at, sizeof(at), "@%s", handle);
    api_reply_object(req, resp, 200, json_pack("{s:s}", "handle", at));
}

enum http_action api_me_handle(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_handle_run);
}

/* Activity ------------------------------------------------------------------------------------- */

/* Reads the filter (api_pay_filter_read), cursor and limit. */
static enum cf_err activity_filter(struct http_request *req, struct pay_filter *f,
                                   size_t *limit_out, const char **detail)
{
    const char *cursor = http_request_query(req, "cursor");
    const char *limit = http_request_query(req, "limit");
    enum cf_err err = api_pay_filter_read(req, f, detail);
    if (err != CF_OK)
        return err;
    *detail = "cursor";
    if (cursor != NULL && cursor_parse(cursor, strlen(cursor), &f->before_row) != CF_OK)
        return CF_ERR_INVALID_CURSOR;
    *detail = "limit: 1 to 100";
    long n = ACTIVITY_PAGE_DEFAULT;
    if (limit != NULL &&
        (strlen(limit) < 1 || strlen(limit) > 3 || strspn(limit, "0123456789") != strlen(limit)))
        return CF_ERR_INVALID_PAGE_SIZE;
    if (limit != NULL)
        n = strtol(limit, NULL, 10);
    if (n < 1 || n > ACTIVITY_PAGE_MAX)
        return CF_ERR_INVALID_PAGE_SIZE;
    *limit_out = (size_t)n;
    *detail = NULL;
    return CF_OK;
}

static void activity_reply(struct http_request *req, struct http_response *resp, const char *party)
{
    struct api *api = req->app;
    struct pay_filter f = {.party = party};
    size_t limit = 0, n = 0;
    const char *detail = NULL;
    struct pay_op *ops = arena_calloc(req->arena, ACTIVITY_PAGE_MAX + 1, sizeof(*ops));
    enum cf_err err = ops == NULL ? CF_ERR_NOMEM : activity_filter(req, &f, &limit, &detail);
    if (err == CF_OK)
        err = payments_ops_list(api->payments, &f, ops, limit + 1, &n);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n && i < limit; i++)
        json_array_append_new(data, api_pay_op_json(&ops[i], party));
    json_t *o = json_pack("{s:o}", "data", data);
    if (n > limit) {
        char c[ID_TEXT_BYTES_MAX];
        cursor_format(ops[limit - 1].row, c);
        json_object_set_new(o, "next_cursor", json_string(c));
    } else {
        json_object_set_new(o, "next_cursor", json_null());
    }
    api_reply_object(req, resp, 200, o);
}

static void me_activity_run(struct http_request *req, struct http_response *resp)
{
    activity_reply(req, resp, api_pay_me_id(req));
}

enum http_action api_me_activity(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_activity_run);
}

static void me_operation_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct pay_op op;
    enum cf_err err = payments_op_get(api->payments, req->params[0], &op);
    if (err == CF_OK && !payments_op_visible(&op, api_pay_me_id(req)))
        err = CF_ERR_NOT_FOUND;
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_pay_op_reply(req, resp, 200, &op, api_pay_me_id(req));
}

enum http_action api_me_operation(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_operation_run);
}

/* The merchant's side ---------------------------------------------------------------------------
 */

static void merchant_activity_run(struct http_request *req, struct http_response *resp)
{
    struct pay_merchant m;
    enum cf_err err = api_pay_merchant_mine(req, &m);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    activity_reply(req, resp, m.merchant_id);
}

enum http_action api_merchant_activity(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_activity_run);
}

/* The refund of amount (0: what is left) of payment, in the merchant's currency; payments
 * prices its shares (fee by the policy, and across currencies the customer's amount and the
 * spread) under the payment's lock. */
static enum cf_err refund_op(struct http_request *req, const struct pay_merchant *m,
                             const struct pay_op *payment, int64_t amount, struct pay_op *op)
{
    struct api *api = req->app;
    enum cf_err err = api_pay_op_open(req, PAY_KIND_REFUND, op);
    if (err != CF_OK)
        return err;
    int64_t left = payment->credit_minor - payment->refunded_minor;
    if (amount == 0)
        amount = left;
    if (amount <= 0 || amount > left)
        return CF_ERR_REFUND_EXCEEDS;
    snprintf(op->payer, sizeof(op->payer), "%s", m->merchant_id);
    snprintf(op->payee, sizeof(op->payee), "%s", payment->payer);
    op->payer_account = m->account_id;
    op->payee_account = payment->payer_account;
    op->amount_minor = amount;
    op->credit_minor = amount; /* priced again by payments_op_begin across currencies */
    op->return_fee = api->pay.refund_returns_fee;
    op->rate_e9 = payment->rate_e9;
    snprintf(op->currency, sizeof(op->currency), "%s", payment->credit_currency);
    snprintf(op->credit_currency, sizeof(op->credit_currency), "%s", payment->currency);
    snprintf(op->parent_id, sizeof(op->parent_id), "%s", payment->id);
    snprintf(op->reference, sizeof(op->reference), "%s", payment->reference);
    return CF_OK;
}

static void merchant_refund_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"amount_minor", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct pay_merchant m;
    struct pay_op payment, op;
    int64_t amount = 0;
    bool replay = false;
    enum cf_err err = api_pay_merchant_mine(req, &m);
    if (err == CF_OK && req->body_len > 0 &&
        (err = api_json_object(req, &root, &detail)) == CF_OK &&
        (err = api_json_fields(root, fields, &detail)) == CF_OK &&
        (err = api_json_int(root, "amount_minor", false, &amount)) != CF_OK)
        detail = "amount_minor";
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK && amount < 0)
        err = CF_ERR_INVALID_AMOUNT;
    if (err == CF_OK && (err = op_replayed(req, resp, m.merchant_id)) == CF_ERR_NOT_FOUND)
        err = CF_OK;
    else if (err == CF_OK)
        return;
    if (err == CF_OK)
        err = payments_op_get(api->payments, req->params[0], &payment);
    if (err == CF_OK &&
        (payment.kind != PAY_KIND_PAYMENT || strcmp(payment.payee, m.merchant_id) != 0))
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK) /* a customer frozen with blocks_incoming takes nothing, refunds too */
        err = api_risk_party_check_incoming(api, payment.payer);
    if (err == CF_OK)
        err = refund_op(req, &m, &payment, amount, &op);
    if (err == CF_OK)
        err = api_pay_op_record(api, &(struct api_risk_ctx){.req = req, .fresh = true}, &op,
                                &replay); /* reserves the amount on the payment */
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    api_pay_op_run_reply(req, resp, &op, m.merchant_id);
}

enum http_action api_merchant_refund(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_refund_run);
}
