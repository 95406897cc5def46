/*
 * pay_merchant.c - merchants' payment side: the admin's onboarding profile and fee schedule,
 * and the merchant's own routes (profile and balance, QR codes, activity, refunds).
 */
#include <stdio.h>
#include <string.h>

#include "api/pay.h"
#include "api/risk_screening.h"
#include "core/clock.h"
#include "crypto/qrsvg.h"
#include "gateway/card.h"
#include "money/currency.h"
#include "money/fee.h"
#include "payments/emvco.h"

#define QR_TTL_S_MAX (7 * 24 * 3600)
#define PAY_FEES_LIST_MAX 200

/* A string field of exactly the shape wanted: n digits, n upper-case letters, printable text. */
static bool all_digits(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

static bool all_upper(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    }
    return true;
}

static bool printable(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    }
    return true;
}

/* Reads a required string field into out (out_bytes, NUL included). */
static enum cf_err field_text(json_t *root, const char *key, bool required, char *out,
                              size_t out_bytes)
{
    const char *s = NULL;
    size_t len = 0;
    enum cf_err err = api_json_string(root, key, required, out_bytes - 1, &s, &len);
    if (err != CF_OK)
        return err;
    if (s != NULL)
        snprintf(out, out_bytes, "%.*s", (int)len, s);
    return CF_OK;
}

/* Onboarding --------------------------------------------------------------------------------- */

static enum cf_err profile_decode(json_t *root, struct pay_merchant *m, const char **detail)
{
    static const char *const fields[] = {
        "mcc",     "country",         "city",          "currency",     "bank_account",
        "fee_bps", "fee_fixed_minor", "payouts_daily", "display_name", NULL};
    enum cf_err err = api_json_fields(root, fields, detail);
    if (err != CF_OK)
        return err;
    const char *names[] = {"mcc", "country", "city", "currency", "bank_account", "display_name"};
    char *outs[] = {m->mcc, m->country, m->city, m->currency, m->bank_account, m->display_name};
    size_t sizes[] = {sizeof(m->mcc),      sizeof(m->country),      sizeof(m->city),
                      sizeof(m->currency), sizeof(m->bank_account), sizeof(m->display_name)};
    for (size_t i = 0; i < 6; i++) {
        *detail = names[i];
        if ((err = field_text(root, names[i], i < 5, outs[i], sizes[i])) != CF_OK)
            return err;
    }
    m->fee_bps = -1;
    *detail = "fee_bps";
    if ((err = api_json_int(root, "fee_bps", false, &m->fee_bps)) != CF_OK)
        return err;
    *detail = "fee_fixed_minor";
    if ((err = api_json_int(root, "fee_fixed_minor", false, &m->fee_fixed_minor)) != CF_OK)
        return err;
    *detail = "payouts_daily";
    if ((err = api_json_bool(root, "payouts_daily", &m->payouts_daily)) != CF_OK)
        return err;
    *detail = !all_digits(m->mcc, 4)                        ? "mcc"
              : !all_upper(m->country, 2)                   ? "country"
              : !printable(m->city, PAY_CITY_BYTES_MAX - 1) ? "city"
              : (m->display_name[0] != '\0' &&
                 !printable(m->display_name, PAY_MERCHANT_NAME_BYTES_MAX - 1))
                  ? "display_name"
              : m->fee_bps < -1 || m->fee_bps > FEE_BPS_MAX ? "fee_bps"
              : m->fee_fixed_minor < 0                      ? "fee_fixed_minor"
                                                            : NULL;
    if (*detail != NULL)
        return CF_ERR_INVALID_FIELD;
    *detail = "currency";
    if (currency_find(m->currency, strlen(m->currency)) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    *detail = "bank_account";
    char iban[CARD_IBAN_BYTES];
    _Static_assert(CARD_IBAN_BYTES <= sizeof(m->bank_account), "an IBAN fits the profile");
    if ((err = card_iban_normalize(m->bank_account, strlen(m->bank_account), iban)) != CF_OK)
        return err;
    snprintf(m->bank_account, sizeof(m->bank_account), "%s", iban);
    *detail = NULL;
    return CF_OK;
}

/* The merchant's ledger account in its settlement currency, opened once. */
static enum cf_err merchant_account(struct api *api, struct arena *arena, const char *merchant_id,
                                    const char *currency, uint64_t *id_out)
{
    char key[IDEM_STORED_KEY_BYTES_MAX];
    snprintf(key, sizeof(key), "%s:merchant-account:%s", merchant_id, currency);
    struct api_account_spec s = {.owner = merchant_id,
                                 .currency = currency,
                                 .kind = LEDGER_KIND_MERCHANT,
                                 .normal = LEDGER_NORMAL_CREDIT,
                                 .flags = LEDGER_ACCOUNT_NO_OVERDRAFT,
                                 .key = key};
    return api_pay_account_create(api, arena, &s, id_out);
}

static json_t *profile_json(const struct pay_merchant *m)
{
    char acct[ID_TEXT_BYTES_MAX];
    id_format(ID_PREFIX_ACCOUNT, m->account_id, acct);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:b}", "merchant_id", m->merchant_id,
                     "display_name", m->display_name, "mcc", m->mcc, "country", m->country, "city",
                     m->city, "currency", m->currency, "bank_account_last4", m->bank_last4,
                     "account", acct, "fee_bps", (json_int_t)m->fee_bps, "fee_fixed_minor",
                     (json_int_t)m->fee_fixed_minor, "payouts_daily", m->payouts_daily);
}

static void admin_profile_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct pay_merchant m, old;
    memset(&m, 0, sizeof(m));
    json_t *root = NULL;
    const char *detail = NULL;
    struct identity_merchant im;
    enum cf_err err = identity_merchant_get(api->identity, req->params[0], &im);
    if (err == CF_OK)
        err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = profile_decode(root, &m, &detail);
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK) {
        snprintf(m.merchant_id, sizeof(m.merchant_id), "%s", im.merchant_id);
        if (m.display_name[0] == '\0') /* the organisation's name, cut to what a QR code holds */
            snprintf(m.display_name, sizeof(m.display_name), "%.25s", im.display_name);
        if (!printable(m.display_name, PAY_MERCHANT_NAME_BYTES_MAX - 1)) {
            err = CF_ERR_INVALID_FIELD; /* EMVCo names are printable ASCII: give one */
            detail = "display_name";
        }
        snprintf(m.bank_last4, sizeof(m.bank_last4), "%s",
                 m.bank_account + strlen(m.bank_account) - 4);
        enum cf_err e = payments_merchant_get(api->payments, m.merchant_id, false, &old);
        if (e == CF_OK && strcmp(old.currency, m.currency) != 0) {
            err = CF_ERR_CONFLICT;
            detail = "the settlement currency cannot change once set";
        } else if (e != CF_OK && e != CF_ERR_NOT_FOUND) {
            err = e;
        }
    }
    if (err == CF_OK)
        err = merchant_account(api, req->arena, m.merchant_id, m.currency, &m.account_id);
    if (err == CF_OK)
        err = payments_merchant_put(api->payments, &m, api_pay_now_us());
    if (err == CF_OK) /* sanctions screening of the merchant's names (errors logged there) */
        cf_best_effort(api_risk_screen_party(api, req->arena, m.merchant_id, NULL, NULL, NULL,
                                             "merchant_onboarding", NULL));
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), "merchant.profile",
                                      m.merchant_id, "ok", m.mcc));
    }
    hash_wipe(m.bank_account, sizeof(m.bank_account));
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err == CF_ERR_NOT_FOUND ? CF_ERR_NOT_FOUND : err, detail);
        return;
    }
    api_reply_object(req, resp, 200, profile_json(&m));
}

enum http_action api_admin_merchant_profile(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, admin_profile_run);
}

static void admin_fee_set_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"mcc", "bps", "fixed_minor", NULL};
    struct api *api = req->app;
    struct pay_fee_row f;
    memset(&f, 0, sizeof(f));
    json_t *root = NULL;
    const char *detail = NULL;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && (err = field_text(root, "mcc", true, f.mcc, sizeof(f.mcc))) != CF_OK)
        detail = "mcc";
    if (err == CF_OK && (err = api_json_int(root, "bps", true, &f.bps)) != CF_OK)
        detail = "bps";
    if (err == CF_OK && (err = api_json_int(root, "fixed_minor", false, &f.fixed_minor)) != CF_OK)
        detail = "fixed_minor";
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK) {
        detail = !all_digits(f.mcc, 4)              ? "mcc"
                 : f.bps < 0 || f.bps > FEE_BPS_MAX ? "bps"
                 : f.fixed_minor < 0                ? "fixed_minor"
                                                    : NULL;
        err = detail != NULL ? CF_ERR_INVALID_FIELD : CF_OK;
    }
    if (err == CF_OK)
        err = payments_fee_put(api->payments, &f);
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        cf_best_effort(
            identity_audit(api->identity, &ctx, api_actor(req), "fees.set", f.mcc, "ok", NULL));
    }
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:I,s:I}", "mcc", f.mcc, "bps", (json_int_t)f.bps,
                               "fixed_minor", (json_int_t)f.fixed_minor));
}

enum http_action api_admin_fee_set(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, admin_fee_set_run);
}

static void admin_fees_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct pay_fee_row *rows = arena_calloc(req->arena, PAY_FEES_LIST_MAX, sizeof(*rows));
    size_t n = 0;
    enum cf_err err =
        rows == NULL ? CF_ERR_NOMEM : payments_fee_list(api->payments, rows, PAY_FEES_LIST_MAX, &n);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, json_pack("{s:s,s:I,s:I}", "mcc", rows[i].mcc, "bps",
                                              (json_int_t)rows[i].bps, "fixed_minor",
                                              (json_int_t)rows[i].fixed_minor));
    api_reply_object(req, resp, 200, json_pack("{s:o}", "data", data));
}

enum http_action api_admin_fees(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, admin_fees_run);
}

/* The merchant's own routes ------------------------------------------------------------------- */

static void merchant_profile_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct pay_merchant m;
    enum cf_err err = api_pay_merchant_mine(req, &m);
    struct store_account_row row;
    if (err == CF_OK) {
        struct store_reader *r;
        if ((err = api->store->ops->r_open(api->store, &r)) == CF_OK) {
            err = api->store->ops->r_account_get(r, m.account_id, &row, req->arena);
            api->store->ops->r_close(r);
        }
    }
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err,
                              err == CF_ERR_CONFLICT ? "the merchant has no payment profile yet"
                                                     : NULL);
        return;
    }
    json_t *o = profile_json(&m);
    json_object_set_new(o, "balance_minor", json_integer(ledger_account_balance(&row.account)));
    json_object_set_new(o, "available_minor", json_integer(ledger_account_available(&row.account)));
    api_reply_object(req, resp, 200, o);
}

enum http_action api_merchant_profile(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_profile_run);
}

/* QR codes ----------------------------------------------------------------------------------- */

struct qr_request {
    int64_t amount_minor; /* 0: static */
    char reference[EMVCO_REFERENCE_CHARS_MAX + 1];
    int64_t expires_in_s;
};

static enum cf_err qr_decode(struct http_request *req, const struct api *api, struct qr_request *q,
                             const char **detail)
{
    static const char *const fields[] = {"amount_minor", "reference", "expires_in_s", NULL};
    json_t *root = NULL;
    memset(q, 0, sizeof(*q));
    q->expires_in_s = api->pay.qr_ttl_s;
    enum cf_err err = req->body_len == 0 ? CF_OK : api_json_object(req, &root, detail);
    if (err == CF_OK && root != NULL && (err = api_json_fields(root, fields, detail)) == CF_OK) {
        *detail = "amount_minor";
        if ((err = api_json_int(root, "amount_minor", false, &q->amount_minor)) == CF_OK)
            *detail = "reference";
        if (err == CF_OK && (err = field_text(root, "reference", false, q->reference,
                                              sizeof(q->reference))) == CF_OK)
            *detail = "expires_in_s";
        if (err == CF_OK)
            err = api_json_int(root, "expires_in_s", false, &q->expires_in_s);
        if (err == CF_OK) {
            *detail = q->amount_minor < 0                                       ? "amount_minor"
                      : q->reference[0] != '\0' && !printable(q->reference, 25) ? "reference"
                      : q->expires_in_s < 30 || q->expires_in_s > QR_TTL_S_MAX  ? "expires_in_s"
                      : q->amount_minor == 0 && q->reference[0] != '\0'         ? "reference"
                                                                                : NULL;
            err = *detail != NULL ? CF_ERR_INVALID_FIELD : CF_OK;
        }
    }
    *detail = api_detail_keep(req, *detail); /* it may point into root */
    json_decref(root);
    return err;
}

/* Fills the EMVCo fields of a code of merchant m. */
static void qr_mpm(const struct pay_merchant *m, const struct pay_qr *q, struct emvco_mpm *e)
{
    const struct currency *c = currency_find(m->currency, strlen(m->currency));
    emvco_mpm_init(e);
    e->dynamic = q->dynamic;
    snprintf(e->mcc, sizeof(e->mcc), "%s", m->mcc);
    snprintf(e->currency_numeric, sizeof(e->currency_numeric), "%03d", c != NULL ? c->numeric : 0);
    snprintf(e->country, sizeof(e->country), "%s", m->country);
    snprintf(e->merchant_name, sizeof(e->merchant_name), "%.*s", (int)sizeof(e->merchant_name) - 1,
             m->display_name);
    snprintf(e->merchant_city, sizeof(e->merchant_city), "%s", m->city);
    snprintf(e->merchant_id, sizeof(e->merchant_id), "%.*s", (int)sizeof(e->merchant_id) - 1,
             m->merchant_id);
    if (q->dynamic) {
        snprintf(e->code_id, sizeof(e->code_id), "%.*s", (int)sizeof(e->code_id) - 1, q->id);
        e->expires_at_s = q->expires_at_us / 1000000;
        e->amount_minor = q->amount_minor;
        e->amount_scale = c != NULL ? c->scale : -1;
        snprintf(e->reference, sizeof(e->reference), "%.*s", (int)sizeof(e->reference) - 1,
                 q->reference);
    }
}

static void merchant_qr_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct pay_merchant m;
    struct qr_request in;
    const char *detail = NULL;
    enum cf_err err = api_pay_merchant_mine(req, &m);
    const struct currency *cur =
        err == CF_OK ? currency_find(m.currency, strlen(m.currency)) : NULL;
    if (err == CF_OK && (cur == NULL || cur->numeric == 0)) {
        err = CF_ERR_CONFLICT; /* EMVCo codes carry an ISO 4217 numeric currency */
        detail = "the settlement currency has no ISO 4217 numeric code";
    }
    if (err == CF_OK)
        err = qr_decode(req, api, &in, &detail);
    struct pay_qr q;
    memset(&q, 0, sizeof(q));
    char payload[EMVCO_PAYLOAD_BUF_BYTES];
    size_t payload_len = 0;
    if (err == CF_OK) {
        int64_t now = api_pay_now_us();
        payments_id_new("qr_", q.id);
        snprintf(q.merchant_id, sizeof(q.merchant_id), "%s", m.merchant_id);
        snprintf(q.currency, sizeof(q.currency), "%s", m.currency);
        snprintf(q.reference, sizeof(q.reference), "%s", in.reference);
        q.dynamic = in.amount_minor > 0;
        q.amount_minor = in.amount_minor;
        q.expires_at_us = q.dynamic ? now + in.expires_in_s * 1000000 : 0;
        q.created_at_us = now;
        struct emvco_mpm e;
        qr_mpm(&m, &q, &e);
        err = emvco_mpm_build(&e, payload, sizeof(payload), &payload_len, &detail);
    }
    if (err == CF_OK && q.dynamic)
        err = payments_qr_put(api->payments, &q);
    struct buf svg;
    buf_init(&svg, req->arena, 256 * 1024);
    if (err == CF_OK && (qrsvg_render(payload, payload_len, &svg) != CF_OK || !buf_ok(&svg)))
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err,
                              detail != NULL           ? detail
                              : err == CF_ERR_CONFLICT ? "the merchant has no payment profile yet"
                                                       : NULL);
        return;
    }
    json_t *o =
        json_pack("{s:s,s:b,s:s,s:s,s:s%}", "id", q.dynamic ? q.id : "static", "dynamic", q.dynamic,
                  "currency", q.currency, "payload", payload, "svg", svg.data, svg.len);
    if (q.dynamic) {
        char exp[40];
        cf_time_format_rfc3339(q.expires_at_us, exp, sizeof(exp));
        json_object_set_new(o, "amount_minor", json_integer(q.amount_minor));
        json_object_set_new(o, "expires_at", json_string(exp));
        if (q.reference[0] != '\0')
            json_object_set_new(o, "reference", json_string(q.reference));
    }
    api_reply_object(req, resp, 201, o);
}

enum http_action api_merchant_qr(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_qr_run);
}
