/*
 * pay_paycode.c - customer-presented payment codes: a customer's devices, a merchant's charges
 * made with a code, and a merchant's authorization holds placed with a code; see pay_paycode.h.
 *
 * Devices. A device is registered behind a step-up ("paycode_device", bound to the limit_minor
 * and currency as sent: 0 and none when left out); its secret is answered once, in base32.
 *
 * A charge (POST /v1/merchant/paycode-charges) is a payment operation, like a payment by QR
 * code: check the code (payments_paycode_check: nothing is recorded for a code that fails),
 * record the operation (payments_op_begin; a repeated Idempotency-Key answers the stored one),
 * claim the code for it (payments_paycode_claim: of two requests with one code, one wins and
 * the other's operation fails with invalid_paycode), then run its legs under "op:<id>": the
 * customer's wallet in the merchant's currency to the merchant, and the merchant's fee (its fee
 * rule, as for QR payments) from the merchant to fee revenue. A code is used once even when the
 * charge is then refused (insufficient funds): the customer's device shows the next one.
 *
 * A hold is an operation of kind hold with a row in pay_holds (payments/paycodes.h). Placing it
 * checks and claims the code the same way, then holds the amount as a pending ledger transfer
 * from the wallet to the merchant with a timeout (expires_in_s), under "op:<id>:hold" (a hold a
 * crash left unplaced is placed by the request's retry with its Idempotency-Key; recovery at
 * start leaves it, and a pending transfer placed before the crash expires by itself). Capture
 * posts all or part of it under "op:<id>:post" (the rest goes back to the customer) and then
 * books the fee, computed on the captured amount, as its own transfer from the merchant to fee
 * revenue under "op:<id>:fee". The fee is a second command because posting a pending transfer
 * is a ledger command of its own that carries no other leg; until the second one is applied
 * the merchant holds the gross amount. A crash between the two leaves the hold "capturing", and
 * the capture's retry with the same Idempotency-Key books the fee (the posting is replayed); a
 * fee the ledger refuses (the merchant's account frozen in between) leaves the capture without
 * a fee, logged. Release voids the hold under "op:<id>:void". A hold past its expiry cannot be
 * captured or released: the ledger answers transfer_expired, and reads show it expired. A
 * posting the ledger refuses by a rule (the customer's account frozen) leaves the hold held;
 * as the refusal is stored under "op:<id>:post", such a hold can afterwards only be released.
 *
 * Every refusal of a code is 422 invalid_paycode, whichever check refused it; a merchant with
 * too many failed attempts gets 429 too_many_attempts. The code itself is never logged.
 */
#include "api/pay_paycode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/risk_freeze.h"
#include "api/risk_monitor.h"
#include "core/clock.h"
#include "core/log.h"
#include "crypto/qrsvg.h"
#include "money/currency.h"
#include "money/fee.h"
#include "payments/paycodes.h"

/* A code as a point of sale sends it: longer text is not a code (400 before any check). */
#define CODE_TEXT_BYTES_MAX 64
/* A ledger step's key: "op:<id>:<step>". */
#define STEP_KEY_BYTES (PAY_ID_BYTES_MAX + 16)
/* The SVG of an 18-digit code's QR (a version 1 or 2 symbol: a few kilobytes). */
#define CODE_SVG_BYTES_MAX (64 * 1024)

/* Reads the request's body as a JSON object with only `allowed` members; *detail (copied to
 * the request arena: a member's name lives in the tree) says what was wrong. */
static enum cf_err body_read(struct http_request *req, const char *const *allowed, json_t **out,
                             const char **detail)
{
    json_t *root = NULL;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK && (err = api_json_fields(root, allowed, detail)) != CF_OK) {
        *detail = arena_strndup(req->arena, *detail, strlen(*detail));
        json_decref(root);
        return err;
    }
    if (err == CF_OK)
        *out = root;
    return err;
}

/* Devices ------------------------------------------------------------------------------------ */

static json_t *device_json(const struct pay_paycode_device *d)
{
    char created[40];
    cf_time_format_rfc3339(d->created_at_us, created, sizeof(created));
    json_t *o = json_pack("{s:I,s:s,s:s,s:I,s:s,s:s}", "device_number",
                          (json_int_t)d->device_number, "label", d->label, "currency", d->currency,
                          "limit_minor", (json_int_t)d->limit_minor, "status",
                          d->revoked_at_us != 0 ? "revoked" : "active", "created_at", created);
    if (o != NULL && d->revoked_at_us != 0) {
        char revoked[40];
        cf_time_format_rfc3339(d->revoked_at_us, revoked, sizeof(revoked));
        json_object_set_new(o, "revoked_at", json_string(revoked));
    }
    return o;
}

/* {label, limit_minor?, currency?, verification} */
struct device_body {
    char label[PAY_PAYCODE_LABEL_BYTES_MAX];
    int64_t limit_minor;                     /* 0: not given */
    char currency[MONEY_CODE_BYTES_MAX + 1]; /* "": not given */
    struct identity_verification v;          /* points into the request's JSON */
};

/* A label is 1..40 bytes of text without control characters (the JSON decoder checked UTF-8). */
static bool label_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

static enum cf_err device_body_decode(json_t *root, struct device_body *b, const char **detail)
{
    memset(b, 0, sizeof(*b));
    const char *s = NULL;
    size_t n = 0;
    *detail = "label";
    enum cf_err err = api_json_string(root, "label", true, PAY_PAYCODE_LABEL_BYTES_MAX - 1, &s, &n);
    if (err != CF_OK)
        return err;
    if (!label_ok(s, n))
        return CF_ERR_INVALID_FIELD;
    snprintf(b->label, sizeof(b->label), "%.*s", (int)n, s);
    *detail = "limit_minor";
    json_t *limit = json_object_get(root, "limit_minor");
    if ((err = api_json_int(root, "limit_minor", false, &b->limit_minor)) != CF_OK)
        return err;
    if (limit != NULL && !json_is_null(limit) && b->limit_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    if (b->limit_minor > PAY_PAYCODE_LIMIT_MINOR_MAX)
        return CF_ERR_INVALID_FIELD;
    *detail = "currency";
    s = NULL;
    if ((err = api_json_string(root, "currency", false, MONEY_CODE_BYTES_MAX, &s, &n)) != CF_OK)
        return err;
    if (s != NULL && currency_find(s, n) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    if (s != NULL)
        snprintf(b->currency, sizeof(b->currency), "%.*s", (int)n, s);
    *detail = "verification";
    if ((err = api_json_verification(root, &b->v)) != CF_OK)
        return err;
    *detail = NULL;
    return CF_OK;
}

/* What the new device gets: the currency sent or the default one (on offer either way), the
 * limit sent or the step-up amount (a code pays what a payment without a step-up may). */
static enum cf_err device_settings(struct http_request *req, const struct device_body *b,
                                   struct pay_paycode_device *d, const char **detail)
{
    struct api *api = req->app;
    memset(d, 0, sizeof(*d));
    snprintf(d->user_id, sizeof(d->user_id), "%s", api_pay_me_id(req));
    snprintf(d->label, sizeof(d->label), "%s", b->label);
    snprintf(d->currency, sizeof(d->currency), "%s",
             b->currency[0] != '\0' ? b->currency : api->pay.default_currency);
    *detail = "currency";
    if (!api_pay_currency_offered(api, d->currency))
        return CF_ERR_UNKNOWN_CURRENCY;
    int64_t limit = b->limit_minor;
    if (limit == 0)
        limit = identity_config_get(api->identity)->step_up_amount_minor;
    d->limit_minor = limit < 1                             ? 1
                     : limit > PAY_PAYCODE_LIMIT_MINOR_MAX ? PAY_PAYCODE_LIMIT_MINOR_MAX
                                                           : limit;
    *detail = NULL;
    return CF_OK;
}

/* The step-up of a new device: a device is a way to pay, like a saved card. */
static enum cf_err device_step_up(struct http_request *req, const struct device_body *b)
{
    struct api *api = req->app;
    struct identity_action a = {.action = "paycode_device",
                                .amount_minor = b->limit_minor,
                                .currency = b->currency[0] != '\0' ? b->currency : NULL};
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    return identity_challenge_consume(api->identity, &ctx, &api_principal(req)->user, &a, &b->v,
                                      NULL);
}

static void device_added_reply(struct http_request *req, struct http_response *resp,
                               const struct pay_paycode_device *d, const char *secret)
{
    json_t *o = device_json(d);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    json_object_set_new(o, "secret", json_string(secret));
    json_object_set_new(o, "secret_encoding", json_string("base32"));
    json_object_set_new(o, "step_s", json_integer(PAYCODE_STEP_S));
    json_object_set_new(o, "digits", json_integer(PAYCODE_DIGITS));
    api_reply_object(req, resp, 201, o);
}

static void device_add_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"label", "limit_minor", "currency", "verification", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct device_body b;
    struct pay_paycode_device d, made;
    char secret[PAY_PAYCODE_SECRET_TEXT_BYTES] = "";
    enum cf_err err = body_read(req, fields, &root, &detail);
    if (err == CF_OK)
        err = device_body_decode(root, &b, &detail);
    if (err == CF_OK)
        err = device_settings(req, &b, &d, &detail);
    if (err == CF_OK && (err = device_step_up(req, &b)) != CF_OK)
        detail = NULL;
    json_decref(root);
    if (err == CF_OK && (err = payments_paycode_device_add(api->payments, &d, api_pay_now_us(),
                                                           &made, secret)) == CF_ERR_CONFLICT)
        detail = "a customer has at most 10 active devices";
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    device_added_reply(req, resp, &made, secret);
    hash_wipe(secret, sizeof(secret));
}

enum http_action api_me_paycode_device_add(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, device_add_run);
}

static void devices_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    size_t n = 0;
    struct pay_paycode_device *list =
        arena_calloc(req->arena, PAY_PAYCODE_DEVICES_LIST_MAX, sizeof(*list));
    enum cf_err err = list == NULL
                          ? CF_ERR_NOMEM
                          : payments_paycode_devices_list(api->payments, api_pay_me_id(req), list,
                                                          PAY_PAYCODE_DEVICES_LIST_MAX, &n);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, device_json(&list[i]));
    api_reply_object(req, resp, 200, json_pack("{s:o}", "data", data));
}

enum http_action api_me_paycode_devices(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, devices_run);
}

/* A device number as a path segment or query value: 1 to 9 digits naming 1..10^9-1. Anything
 * else names no device (CF_ERR_NOT_FOUND, as an unknown one). */
static enum cf_err device_number_parse(const char *text, uint64_t *out)
{
    size_t n = text != NULL ? strlen(text) : 0;
    if (n == 0 || n > PAYCODE_DEVICE_DIGITS)
        return CF_ERR_NOT_FOUND;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return CF_ERR_NOT_FOUND;
        v = v * 10 + (uint64_t)(text[i] - '0');
    }
    if (v == 0)
        return CF_ERR_NOT_FOUND;
    CF_ASSERT(v <= PAYCODE_DEVICE_NUMBER_MAX);
    *out = v;
    return CF_OK;
}

static void device_revoke_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    uint64_t number = 0;
    struct pay_paycode_device d;
    enum cf_err err = device_number_parse(req->params[0], &number);
    if (err == CF_OK)
        err = payments_paycode_device_revoke(api->payments, number, api_pay_me_id(req),
                                             api_pay_now_us(), &d);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200, device_json(&d));
}

enum http_action api_me_paycode_device_revoke(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, device_revoke_run);
}

static void current_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *device = http_request_query(req, "device");
    uint64_t number = 0;
    char code[PAYCODE_DIGITS + 1] = "";
    int64_t step = 0;
    struct buf svg;
    buf_init(&svg, req->arena, CODE_SVG_BYTES_MAX);
    enum cf_err err = device == NULL ? CF_ERR_MISSING_FIELD : device_number_parse(device, &number);
    if (err == CF_OK)
        err = payments_paycode_current(api->payments, number, api_pay_me_id(req), api_pay_now_us(),
                                       code, &step);
    if (err == CF_OK && (qrsvg_render(code, PAYCODE_DIGITS, &svg) != CF_OK || !buf_ok(&svg)))
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        hash_wipe(code, sizeof(code));
        api_pay_problem_reply(req, resp, err, err == CF_ERR_MISSING_FIELD ? "device" : NULL);
        return;
    }
    char refresh[40];
    cf_time_format_rfc3339((step + 1) * PAYCODE_STEP_S * 1000000LL, refresh, sizeof(refresh));
    json_t *o =
        json_pack("{s:I,s:s,s:I,s:s,s:s%}", "device_number", (json_int_t)number, "code", code,
                  "step", (json_int_t)step, "refresh_at", refresh, "svg", svg.data, svg.len);
    hash_wipe(code, sizeof(code));
    api_reply_object(req, resp, 200, o);
}

enum http_action api_me_paycode_current(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, current_run);
}

/* Codes at the till -------------------------------------------------------------------------- */

/* {code, amount_minor} and, for a hold, expires_in_s? */
struct code_body {
    char code[CODE_TEXT_BYTES_MAX + 1];
    size_t code_len;
    int64_t amount_minor;
    int64_t expires_in_s;
};

static enum cf_err code_body_decode(json_t *root, bool hold, struct code_body *b,
                                    const char **detail)
{
    const char *s = NULL;
    *detail = "code";
    enum cf_err err = api_json_string(root, "code", true, CODE_TEXT_BYTES_MAX, &s, &b->code_len);
    if (err != CF_OK)
        return err;
    memcpy(b->code, s, b->code_len);
    *detail = "amount_minor";
    if ((err = api_json_int(root, "amount_minor", true, &b->amount_minor)) != CF_OK)
        return err;
    if (b->amount_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    if (hold) {
        *detail = "expires_in_s";
        if ((err = api_json_int(root, "expires_in_s", false, &b->expires_in_s)) != CF_OK)
            return err;
        if (b->expires_in_s < 1 || b->expires_in_s > PAY_HOLD_EXPIRES_S_MAX)
            return CF_ERR_INVALID_FIELD;
    }
    *detail = NULL;
    return CF_OK;
}

static enum cf_err code_body_read(struct http_request *req, bool hold, struct code_body *b,
                                  const char **detail)
{
    static const char *const charge_fields[] = {"code", "amount_minor", NULL};
    static const char *const hold_fields[] = {"code", "amount_minor", "expires_in_s", NULL};
    memset(b, 0, sizeof(*b));
    b->expires_in_s = PAY_HOLD_EXPIRES_S_DEFAULT;
    json_t *root = NULL;
    enum cf_err err = body_read(req, hold ? hold_fields : charge_fields, &root, detail);
    if (err == CF_OK)
        err = code_body_decode(root, hold, b, detail);
    json_decref(root);
    return err;
}

/* The operation this request's Idempotency-Key made before (CF_OK: a replay), or
 * CF_ERR_NOT_FOUND when the key is new. */
static enum cf_err op_stored(struct http_request *req, const struct pay_merchant *m,
                             struct pay_op *op)
{
    enum cf_err err = api_pay_op_stored(req, op);
    if (err == CF_OK && strcmp(op->payee, m->merchant_id) != 0)
        err = CF_ERR_IDEM_KEY_REUSED;
    return err;
}

/* The operation of a charge or hold the checked code pays for. */
static enum cf_err code_op(struct http_request *req, const struct pay_merchant *m,
                           enum pay_kind kind, const struct code_body *b,
                           const struct pay_paycode_match *match, struct pay_op *op)
{
    struct api *api = req->app;
    CF_ASSERT(kind == PAY_KIND_PAYMENT || kind == PAY_KIND_HOLD);
    CF_ASSERT(b->amount_minor > 0 && match->user_id[0] != '\0');
    enum cf_err err = api_pay_op_open(req, kind, op);
    if (err != CF_OK)
        return err;
    snprintf(op->payer, sizeof(op->payer), "%s", match->user_id);
    snprintf(op->payee, sizeof(op->payee), "%s", m->merchant_id);
    op->payee_account = m->account_id;
    op->amount_minor = op->credit_minor = b->amount_minor;
    snprintf(op->currency, sizeof(op->currency), "%s", m->currency);
    snprintf(op->credit_currency, sizeof(op->credit_currency), "%s", m->currency);
    snprintf(op->reference, sizeof(op->reference), "paycode");
    snprintf(op->instrument, sizeof(op->instrument), "paycode");
    if (kind == PAY_KIND_PAYMENT) /* a hold's fee is priced when it is captured */
        err = api_pay_merchant_fee(api, m, b->amount_minor, &op->fee_minor);
    if (err == CF_OK && (err = api_pay_wallet(api, req->arena, op->payer, op->currency, false,
                                              &op->payer_account)) == CF_ERR_NOT_FOUND)
        err = CF_ERR_INSUFFICIENT_FUNDS; /* no wallet in the merchant's currency */
    return err;
}

/* Checks the code and records the operation it pays for (*replay: this key made it before). */
static enum cf_err code_op_start(struct http_request *req, const struct pay_merchant *m,
                                 enum pay_kind kind, const struct code_body *b,
                                 struct pay_paycode_match *match, struct pay_op *op, bool *replay)
{
    struct api *api = req->app;
    struct pay_paycode_use use = {.merchant_id = m->merchant_id,
                                  .code = b->code,
                                  .len = b->code_len,
                                  .amount_minor = b->amount_minor,
                                  .currency = m->currency};
    enum cf_err err = payments_paycode_check(api->payments, &use, api_pay_now_us(), match);
    if (err == CF_OK)
        err = code_op(req, m, kind, b, match, op);
    if (err == CF_OK) /* a merchant frozen with blocks_incoming takes nothing */
        err = api_risk_party_check_incoming(api, m->merchant_id);
    if (err == CF_OK)
        err = api_pay_op_record(api,
                                &(struct api_risk_ctx){.req = req,
                                                       .fresh = true, /* op_stored just looked */
                                                       .mcc = strtol(m->mcc, NULL, 10)},
                                op, replay);
    return err;
}

/* Claims the code for op; when another request used it first, op fails. */
static enum cf_err code_claim(struct api *api, const struct pay_paycode_match *match,
                              const struct pay_merchant *m, const struct pay_op *op)
{
    enum cf_err err =
        payments_paycode_claim(api->payments, match, op->id, m->merchant_id, api_pay_now_us());
    if (err != CF_OK) {
        struct pay_op_update u = {.status = PAY_STATUS_FAILED, .error = cf_err_code(err)};
        cf_best_effort(payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PROCESSING, &u,
                                          api_pay_now_us()));
    }
    return err;
}

static void code_problem(struct http_request *req, struct http_response *resp, enum cf_err err,
                         const char *detail)
{
    if (err == CF_ERR_TOO_MANY_ATTEMPTS) {
        api_problem_retry(req, resp, err, NULL, PAY_PAYCODE_FAILURE_WINDOW_S);
        return;
    }
    api_pay_problem_reply(req, resp, err,
                          err == CF_ERR_CONFLICT ? "the merchant has no payment profile yet"
                                                 : detail);
}

/* Charges ------------------------------------------------------------------------------------ */

static void charge_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *detail = NULL;
    struct pay_merchant m;
    struct code_body b;
    struct pay_paycode_match match;
    struct pay_op op;
    bool replay = false;
    enum cf_err err = api_pay_merchant_mine(req, &m);
    if (err == CF_OK)
        err = code_body_read(req, false, &b, &detail);
    if (err == CF_OK && (err = op_stored(req, &m, &op)) == CF_OK) {
        hash_wipe(&b, sizeof(b));
        api_pay_op_run_reply(req, resp, &op,
                             m.merchant_id); /* a retry: answered from its operation */
        return;
    }
    if (err == CF_ERR_NOT_FOUND)
        err = CF_OK;
    if (err == CF_OK)
        err = code_op_start(req, &m, PAY_KIND_PAYMENT, &b, &match, &op, &replay);
    hash_wipe(&b, sizeof(b));
    if (err == CF_OK && !replay)
        err = code_claim(api, &match, &m, &op);
    if (err != CF_OK) {
        code_problem(req, resp, err, detail);
        return;
    }
    api_pay_op_run_reply(req, resp, &op, m.merchant_id);
}

enum http_action api_merchant_paycode_charge(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, charge_run);
}

/* Ledger steps of a hold --------------------------------------------------------------------- */

/* Whether a step's refusal is the ledger's final word (a rule refused it, and the refusal is
 * stored under the step's key) rather than a step that did not run (its key in flight
 * elsewhere, storage, load), which changes nothing here. */
static bool refusal_final(enum cf_err e)
{
    switch (e) {
    case CF_ERR_IDEM_KEY_IN_FLIGHT:
    case CF_ERR_STORAGE:
    case CF_ERR_STORAGE_CONFLICT:
    case CF_ERR_OVERLOADED:
    case CF_ERR_SHUTTING_DOWN:
    case CF_ERR_NOMEM:
    case CF_ERR_INTERNAL:
        return false;
    default:
        return true;
    }
}

/* The single entry of a fresh or stored transfer answer: its seq and expiry. */
static void answer_entry(const struct writer_cmd *cmd, uint64_t *seq_out, int64_t *expires_out)
{
    if (!cmd->replayed && cmd->entries_n > 0) {
        *seq_out = cmd->entries_out[0].seq;
        *expires_out = cmd->entries_out[0].expires_at_us;
        return;
    }
    json_t *o = json_loadb(cmd->resp_body, cmd->resp_body_len, 0, NULL);
    json_t *id = o != NULL ? json_object_get(o, "id") : NULL;
    json_t *exp = o != NULL ? json_object_get(o, "expires_at") : NULL;
    if (id != NULL && json_is_string(id) &&
        id_parse(ID_PREFIX_TRANSFER, json_string_value(id), json_string_length(id), seq_out) !=
            CF_OK)
        *seq_out = 0;
    if (exp != NULL && json_is_string(exp) &&
        cf_time_parse_rfc3339(json_string_value(exp), expires_out) != CF_OK)
        *expires_out = 0;
    json_decref(o);
}

/* One keyed ledger transfer of op: dr -> cr (pending with a timeout when timeout_s > 0). An
 * error means the ledger never answered; else *refused is its answer and, when CF_OK, *seq_out
 * and *expires_out the entry's. */
static enum cf_err ledger_move(struct api *api, struct arena *arena, const struct pay_op *op,
                               const char *step, const struct ledger_leg *want,
                               enum cf_err *refused, uint64_t *seq_out, int64_t *expires_out)
{
    struct writer_cmd *cmd = api_pay_step_cmd(arena, op, step);
    struct ledger_leg *leg = arena_calloc(arena, 1, sizeof(*leg));
    if (cmd == NULL || leg == NULL)
        return CF_ERR_NOMEM;
    *leg = *want;
    cmd->type = WRITER_CMD_TRANSFER;
    cmd->legs = leg;
    cmd->legs_n = 1;
    enum cf_err err = api_submit_wait(api, cmd, arena);
    if (err != CF_OK)
        return err;
    *refused = api_pay_step_outcome(cmd);
    *seq_out = 0;
    *expires_out = 0;
    if (*refused == CF_OK)
        answer_entry(cmd, seq_out, expires_out);
    return CF_OK;
}

/* Posts amount of op's hold (post) or voids it; an error means the ledger never answered. */
static enum cf_err ledger_resolve(struct api *api, struct arena *arena, const struct pay_op *op,
                                  bool post, int64_t amount, enum cf_err *refused)
{
    CF_ASSERT(op->hold_seq > 0);
    struct writer_cmd *cmd = api_pay_step_cmd(arena, op, post ? "post" : "void");
    if (cmd == NULL)
        return CF_ERR_NOMEM;
    cmd->type = post ? WRITER_CMD_POST : WRITER_CMD_VOID;
    cmd->target_id = op->hold_seq;
    cmd->amount_minor = post ? amount : 0;
    enum cf_err err = api_submit_wait(api, cmd, arena);
    if (err == CF_OK)
        *refused = api_pay_step_outcome(cmd);
    return err;
}

/* Holds -------------------------------------------------------------------------------------- */

/* Places op's hold: the pending transfer wallet -> merchant, then the hold row and the
 * operation PENDING; a refusal fails the operation with the ledger's code. */
static enum cf_err hold_place(struct api *api, struct arena *arena, struct pay_op *op,
                              int64_t expires_in_s)
{
    CF_ASSERT(op->kind == PAY_KIND_HOLD && op->status == PAY_STATUS_PROCESSING);
    CF_ASSERT(expires_in_s >= 1 && expires_in_s <= PAY_HOLD_EXPIRES_S_MAX);
    struct ledger_leg want;
    api_pay_leg_set(&want, op->payer_account, op->payee_account, op->amount_minor, op->currency,
                    "hold");
    want.pending = true;
    want.timeout_s = expires_in_s;
    enum cf_err refused = CF_OK;
    uint64_t seq = 0;
    int64_t started = api_pay_now_us(), expires = 0;
    enum cf_err err = ledger_move(api, arena, op, "hold", &want, &refused, &seq, &expires);
    if (err == CF_OK && refused != CF_OK && !refusal_final(refused))
        err = refused;
    if (err != CF_OK)
        return err; /* never ran: the operation stays PROCESSING for the request's retry */
    if (refused != CF_OK) {
        struct pay_op_update u = {.status = PAY_STATUS_FAILED, .error = cf_err_code(refused)};
        err = payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PROCESSING, &u,
                                 api_pay_now_us());
    } else {
        struct pay_hold h;
        memset(&h, 0, sizeof(h));
        snprintf(h.op_id, sizeof(h.op_id), "%s", op->id);
        snprintf(h.merchant_id, sizeof(h.merchant_id), "%s", op->payee);
        h.held_minor = op->amount_minor;
        h.expires_at_us = expires > 0 ? expires : started + expires_in_s * 1000000LL;
        err = seq == 0 ? CF_ERR_INTERNAL
                       : payments_hold_open(api->payments, &h, seq, api_pay_now_us());
    }
    if (err == CF_ERR_CONFLICT)
        err = CF_OK; /* a retry of this request recorded it first */
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    return err;
}

/* What a hold answers with: the operation as the merchant sees it and the hold's own state.
 * h is NULL for a hold that was never placed (its operation failed, or is being placed). */
static json_t *hold_json(const struct pay_op *op, const struct pay_hold *h, const char *viewer)
{
    json_t *o = api_pay_op_json(op, viewer);
    if (o == NULL)
        return NULL;
    const char *state = h != NULL                         ? pay_hold_state_name(h->state)
                        : op->status == PAY_STATUS_FAILED ? "failed"
                                                          : "processing";
    json_object_set_new(o, "state", json_string(state));
    if (h == NULL)
        return o;
    char exp[40], tr[ID_TEXT_BYTES_MAX];
    cf_time_format_rfc3339(h->expires_at_us, exp, sizeof(exp));
    json_object_set_new(o, "held_minor", json_integer(h->held_minor));
    if (h->state == PAY_HOLD_CAPTURING || h->state == PAY_HOLD_CAPTURED)
        json_object_set_new(o, "captured_minor", json_integer(h->captured_minor));
    json_object_set_new(o, "expires_at", json_string(exp));
    id_format(ID_PREFIX_TRANSFER, op->hold_seq, tr);
    json_object_set_new(o, "hold_transfer_id", json_string(tr));
    if (h->fee_seq > 0) {
        id_format(ID_PREFIX_TRANSFER, h->fee_seq, tr);
        json_object_set_new(o, "fee_transfer_id", json_string(tr));
    }
    return o;
}

/* A hold still HELD past its expiry reads as expired: from that moment the ledger refuses to
 * post or void it, and its sweep releases it. */
static enum cf_err hold_refresh(struct api *api, struct pay_op *op, struct pay_hold *h)
{
    CF_ASSERT(op->kind == PAY_KIND_HOLD && strcmp(op->id, h->op_id) == 0);
    if (h->state != PAY_HOLD_HELD || api_pay_now_us() < h->expires_at_us)
        return CF_OK;
    struct pay_hold_outcome o = {.to = PAY_HOLD_EXPIRED};
    enum cf_err err =
        payments_hold_end(api->payments, op->id, 1u << PAY_HOLD_HELD, &o, api_pay_now_us());
    if (err == CF_ERR_CONFLICT)
        err = CF_OK; /* a capture or release began first */
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    if (err == CF_OK)
        err = payments_hold_get(api->payments, op->id, h);
    return err;
}

/* Answers a hold operation as it stands: status for a placed one; a placement the ledger
 * refused answers its refusal when placing (placing), and reads as failed otherwise. */
static void hold_reply(struct http_request *req, struct http_response *resp, int status,
                       bool placing, struct pay_op *op, const char *viewer)
{
    struct api *api = req->app;
    struct pay_hold h;
    enum cf_err err = payments_hold_get(api->payments, op->id, &h);
    if (err == CF_ERR_NOT_FOUND && placing) {
        if (op->status == PAY_STATUS_FAILED)
            api_pay_outcome_reply(req, resp, op, viewer);
        else
            api_problem(req, resp, CF_ERR_IDEM_KEY_IN_FLIGHT, NULL);
        return;
    }
    if (err == CF_OK)
        err = hold_refresh(api, op, &h);
    if (err != CF_OK && err != CF_ERR_NOT_FOUND) {
        api_problem(req, resp, err, NULL);
        return;
    }
    json_t *o = hold_json(op, err == CF_OK ? &h : NULL, viewer);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, status, o);
}

/* Places a hold still PROCESSING (a fresh one, or a retry's) and answers it. */
static void hold_place_reply(struct http_request *req, struct http_response *resp,
                             const struct pay_merchant *m, struct pay_op *op, int64_t expires_in_s)
{
    struct api *api = req->app;
    enum cf_err err = CF_OK;
    if (op->status == PAY_STATUS_PROCESSING)
        err = hold_place(api, req->arena, op, expires_in_s);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    hold_reply(req, resp, 201, true, op, m->merchant_id);
}

static void hold_create_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *detail = NULL;
    struct pay_merchant m;
    struct code_body b;
    struct pay_paycode_match match;
    struct pay_op op;
    bool replay = false;
    enum cf_err err = api_pay_merchant_mine(req, &m);
    if (err == CF_OK)
        err = code_body_read(req, true, &b, &detail);
    if (err == CF_OK && (err = op_stored(req, &m, &op)) == CF_OK) {
        hash_wipe(b.code, sizeof(b.code));
        hold_place_reply(req, resp, &m, &op, b.expires_in_s); /* a retry */
        return;
    }
    if (err == CF_ERR_NOT_FOUND)
        err = CF_OK;
    if (err == CF_OK)
        err = code_op_start(req, &m, PAY_KIND_HOLD, &b, &match, &op, &replay);
    hash_wipe(b.code, sizeof(b.code));
    if (err == CF_OK && !replay)
        err = code_claim(api, &match, &m, &op);
    if (err != CF_OK) {
        code_problem(req, resp, err, detail);
        return;
    }
    hold_place_reply(req, resp, &m, &op, b.expires_in_s);
}

enum http_action api_merchant_hold_create(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, hold_create_run);
}

/* The merchant's hold named by the path: another merchant's, or another kind of operation,
 * answers as an unknown one. */
static enum cf_err hold_load(struct http_request *req, const struct pay_merchant *m,
                             struct pay_op *op)
{
    struct api *api = req->app;
    enum cf_err err = payments_op_get(api->payments, req->params[0], op);
    if (err == CF_OK && (op->kind != PAY_KIND_HOLD || strcmp(op->payee, m->merchant_id) != 0))
        err = CF_ERR_NOT_FOUND;
    return err;
}

static void hold_get_run(struct http_request *req, struct http_response *resp)
{
    struct pay_merchant m;
    struct pay_op op;
    enum cf_err err = api_pay_merchant_mine(req, &m);
    if (err == CF_OK)
        err = hold_load(req, &m, &op);
    if (err != CF_OK) {
        code_problem(req, resp, err, NULL);
        return;
    }
    hold_reply(req, resp, 200, false, &op, m.merchant_id);
}

enum http_action api_merchant_hold_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, hold_get_run);
}

/* Capture and release ------------------------------------------------------------------------ */

/* Books a capture's fee: merchant -> fee revenue under "op:<id>:fee". o gets what was booked. */
static enum cf_err fee_book(struct api *api, struct arena *arena, const struct pay_op *op,
                            const struct pay_hold *h, struct pay_hold_outcome *o)
{
    CF_ASSERT(h->state == PAY_HOLD_CAPTURING && h->fee_minor <= h->captured_minor);
    CF_ASSERT(o->to == PAY_HOLD_CAPTURED && o->ledger_seq == op->hold_seq);
    o->fee_minor = 0;
    o->fee_seq = 0;
    if (h->fee_minor == 0)
        return CF_OK;
    uint64_t fees = 0, seq = 0;
    int64_t unused = 0;
    enum cf_err refused = CF_OK;
    enum cf_err err = api_pay_system(api, arena, PAY_SYS_FEE_REVENUE, op->currency, &fees);
    struct ledger_leg want;
    api_pay_leg_set(&want, op->payee_account, fees, h->fee_minor, op->currency, "hold_fee");
    if (err == CF_OK)
        err = ledger_move(api, arena, op, "fee", &want, &refused, &seq, &unused);
    if (err == CF_OK && refused != CF_OK && !refusal_final(refused))
        err = refused;
    if (err != CF_OK)
        return err; /* the hold stays capturing: the capture's retry books the fee */
    if (refused != CF_OK) {
        cf_log(LOG_WARN, "hold captured without its fee: the ledger refused the fee", "op", op->id,
               "error", cf_err_code(refused), NULL);
        return CF_OK;
    }
    o->fee_minor = h->fee_minor;
    o->fee_seq = seq;
    return CF_OK;
}

/* Where a refused posting or voiding leaves the hold. */
static uint8_t refused_state(enum cf_err refused)
{
    if (refused == CF_ERR_TRANSFER_EXPIRED)
        return PAY_HOLD_EXPIRED;
    if (refused == CF_ERR_ALREADY_VOIDED) /* voided on the ledger's own route */
        return PAY_HOLD_RELEASED;
    return PAY_HOLD_HELD; /* e.g. the customer's account frozen: the hold stands */
}

/* Runs the ledger steps of a capture or release that has begun and records how it ended; *h
 * and *op are re-read, and *refused_out is the ledger's refusal (CF_OK when it did as asked).
 * An error means a step did not run: the hold is left as it was, for the request's retry. */
static enum cf_err hold_drive(struct api *api, struct arena *arena, struct pay_op *op,
                              struct pay_hold *h, enum cf_err *refused_out)
{
    CF_ASSERT(h->state == PAY_HOLD_CAPTURING || h->state == PAY_HOLD_RELEASING);
    CF_ASSERT(op->kind == PAY_KIND_HOLD && strcmp(op->id, h->op_id) == 0);
    bool capture = h->state == PAY_HOLD_CAPTURING;
    enum cf_err refused = CF_OK;
    enum cf_err err = ledger_resolve(api, arena, op, capture, h->captured_minor, &refused);
    if (err == CF_OK && refused != CF_OK && !refusal_final(refused))
        err = refused;
    if (!capture && refused == CF_ERR_ALREADY_VOIDED)
        refused = CF_OK; /* released either way */
    struct pay_hold_outcome o = {.to = capture ? PAY_HOLD_CAPTURED : PAY_HOLD_RELEASED};
    if (err == CF_OK && refused != CF_OK)
        o.to = refused_state(refused);
    else if (err == CF_OK && capture) {
        o.ledger_seq = op->hold_seq;
        err = fee_book(api, arena, op, h, &o);
    }
    if (err != CF_OK)
        return err;
    err = payments_hold_end(api->payments, op->id, 1u << h->state, &o, api_pay_now_us());
    if (err == CF_ERR_CONFLICT)
        err = CF_OK; /* the request's concurrent retry ended it first */
    if (err == CF_OK)
        err = payments_hold_get(api->payments, op->id, h);
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    if (err == CF_OK)
        *refused_out = refused;
    return err;
}

/* The answer to a capture or release of a hold another request captured, released or is
 * resolving, or that expired. */
static enum cf_err hold_taken_answer(uint8_t state)
{
    switch (state) {
    case PAY_HOLD_EXPIRED:
        return CF_ERR_TRANSFER_EXPIRED;
    case PAY_HOLD_RELEASED:
        return CF_ERR_ALREADY_VOIDED;
    case PAY_HOLD_CAPTURED:
        return CF_ERR_ALREADY_POSTED;
    default:
        return CF_ERR_CONFLICT;
    }
}

/* The answer for a hold that reached state after a request to move it toward `to`. */
static enum cf_err hold_end_answer(uint8_t to, uint8_t state)
{
    if (state == (to == PAY_HOLD_CAPTURING ? PAY_HOLD_CAPTURED : PAY_HOLD_RELEASED))
        return CF_OK;
    return hold_taken_answer(state);
}

/* Begins (or, for this request's retry, resumes) a capture or release, runs it and answers. */
static void hold_resolve_reply(struct http_request *req, struct http_response *resp,
                               const struct pay_merchant *m, struct pay_op *op,
                               const struct pay_hold_resolve *want)
{
    struct api *api = req->app;
    struct pay_hold h;
    enum cf_err refused = CF_OK;
    enum cf_err err = payments_hold_begin(api->payments, op->id, want, api_pay_now_us(), &h);
    if (err == CF_ERR_CONFLICT && payments_hold_get(api->payments, op->id, &h) == CF_OK &&
        hold_refresh(api, op, &h) == CF_OK)
        err = hold_taken_answer(h.state); /* someone else's capture or release */
    if (err == CF_OK && (h.state == PAY_HOLD_CAPTURING || h.state == PAY_HOLD_RELEASING))
        err = hold_drive(api, req->arena, op, &h, &refused);
    if (err == CF_OK && refused != CF_OK && h.state == PAY_HOLD_HELD)
        err = refused; /* the ledger refused (a frozen account): the hold stands */
    else if (err == CF_OK)
        err = hold_end_answer(want->to, h.state);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    json_t *o = hold_json(op, &h, m->merchant_id);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

/* {amount_minor?}: what to capture (default: all that is held). */
static enum cf_err capture_amount_read(struct http_request *req, int64_t *amount_out,
                                       const char **detail)
{
    static const char *const fields[] = {"amount_minor", NULL};
    *amount_out = 0;
    if (req->body_len == 0)
        return CF_OK;
    json_t *root = NULL;
    json_t *v = NULL;
    enum cf_err err = body_read(req, fields, &root, detail);
    if (err == CF_OK) {
        v = json_object_get(root, "amount_minor");
        *detail = "amount_minor";
        err = api_json_int(root, "amount_minor", false, amount_out);
    }
    if (err == CF_OK && v != NULL && !json_is_null(v) && *amount_out <= 0)
        err = CF_ERR_INVALID_AMOUNT;
    json_decref(root);
    if (err == CF_OK)
        *detail = NULL;
    return err;
}

/* The caller's merchant, the hold named by the path and its row; a hold operation that never
 * held anything cannot be captured or released (CF_ERR_CONFLICT). */
static enum cf_err hold_target(struct http_request *req, struct pay_merchant *m, struct pay_op *op,
                               struct pay_hold *h, const char **detail)
{
    struct api *api = req->app;
    enum cf_err err = api_pay_merchant_mine(req, m);
    *detail = "the merchant has no payment profile yet";
    if (err == CF_OK)
        err = hold_load(req, m, op);
    if (err == CF_OK && (err = payments_hold_get(api->payments, op->id, h)) == CF_ERR_NOT_FOUND) {
        *detail = "the hold was never placed";
        err = CF_ERR_CONFLICT;
    }
    if (err != CF_ERR_CONFLICT)
        *detail = NULL;
    return err;
}

static void hold_capture_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *detail = NULL;
    struct pay_merchant m;
    struct pay_op op;
    struct pay_hold h;
    int64_t amount = 0, fee = 0;
    char idem[PAY_IDEM_BYTES_MAX];
    uint8_t hash[HASH_BYTES];
    enum cf_err err = capture_amount_read(req, &amount, &detail);
    if (err == CF_OK)
        err = api_pay_idem_read(req, idem, hash);
    if (err == CF_OK)
        err = hold_target(req, &m, &op, &h, &detail);
    if (err == CF_OK && amount == 0)
        amount = h.held_minor;
    if (err == CF_OK && amount > h.held_minor)
        err = CF_ERR_EXCEEDS_PENDING;
    if (err == CF_OK)
        err = api_pay_merchant_fee(api, &m, amount, &fee);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    struct pay_hold_resolve want = {.to = PAY_HOLD_CAPTURING,
                                    .captured_minor = amount,
                                    .fee_minor = fee,
                                    .idem = idem,
                                    .request_hash = hash};
    hold_resolve_reply(req, resp, &m, &op, &want);
}

enum http_action api_merchant_hold_capture(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, hold_capture_run);
}

static void hold_release_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {NULL};
    const char *detail = NULL;
    struct pay_merchant m;
    struct pay_op op;
    struct pay_hold h;
    char idem[PAY_IDEM_BYTES_MAX];
    uint8_t hash[HASH_BYTES];
    json_t *root = NULL;
    enum cf_err err = req->body_len > 0 ? body_read(req, fields, &root, &detail) : CF_OK;
    json_decref(root);
    if (err == CF_OK)
        err = api_pay_idem_read(req, idem, hash);
    if (err == CF_OK)
        err = hold_target(req, &m, &op, &h, &detail);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    struct pay_hold_resolve want = {.to = PAY_HOLD_RELEASING, .idem = idem, .request_hash = hash};
    hold_resolve_reply(req, resp, &m, &op, &want);
}

enum http_action api_merchant_hold_release(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, hold_release_run);
}
