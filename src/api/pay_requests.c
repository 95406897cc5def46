/*
 * pay_requests.c - payment requests and bill splits over HTTP; see pay_requests.h.
 *
 * Reads and simple changes are one call into payments/requests.h each. Paying follows the
 * shape of every paying route (pay_customer.c): answer a repeated key from its operation;
 * check the request and price the send; check the step-up; record the send under the id the
 * request reserved (a concurrent payment of the same request fails here); claim the request;
 * run the ledger legs; record the outcome on the request (paid, or free to pay again).
 */
#include "api/pay_requests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/risk_freeze.h"
#include "api/risk_monitor.h"
#include "core/clock.h"
#include "money/currency.h"
#include "money/fee.h"
#include "money/money.h"
#include "payments/requests.h"

#define REQUESTS_PAGE_MAX 100
#define REQUESTS_PAGE_DEFAULT 50
#define DETAIL_BYTES_MAX 64

/* What the send that pays amount_minor costs the payer on top (the send fee rule). */
static enum cf_err send_fee(const struct api *api, int64_t amount_minor, int64_t *fee_out)
{
    struct fee_rule r = {.bps = api->pay.send_fee_bps,
                         .fixed_minor = api->pay.send_fee_fixed_minor};
    return fee_compute(&r, amount_minor, fee_out);
}

static bool op_in_flight(int op_status)
{
    return op_status >= 0 && op_status != PAY_STATUS_COMPLETED && op_status != PAY_STATUS_FAILED;
}

/* Why a request cannot be paid, declined or cancelled now. */
static const char *state_detail(const struct pay_request *q)
{
    switch (q->status) {
    case PAY_REQUEST_PAID:
        return "the request is paid";
    case PAY_REQUEST_DECLINED:
        return "the request was declined";
    case PAY_REQUEST_CANCELLED:
        return "the request was cancelled";
    case PAY_REQUEST_EXPIRED:
        return "the request has expired";
    default:
        return op_in_flight(q->paid_op_status) ? "a payment of the request is in progress"
                                               : "the request changed; try again";
    }
}

/* Masked names --------------------------------------------------------------------------------- */

/* The masked display names of a page's counterparties, each looked up once. */
struct names {
    size_t n;
    char ids[REQUESTS_PAGE_MAX][PAY_PARTY_BYTES_MAX];
    char masked[REQUESTS_PAGE_MAX][IDENTITY_MASKED_NAME_BYTES_MAX];
};

/* user_id's masked display name ("" when it cannot be read, as for a closed user). */
static const char *name_of(struct api *api, struct names *c, const char *user_id)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->ids[i], user_id) == 0)
            return c->masked[i];
    }
    CF_ASSERT(c->n < REQUESTS_PAGE_MAX);
    size_t i = c->n++;
    snprintf(c->ids[i], sizeof(c->ids[i]), "%s", user_id);
    c->masked[i][0] = '\0';
    struct identity_profile prof;
    if (identity_profile_get(api->identity, user_id, &prof) == CF_OK && prof.name[0] != '\0')
        identity_name_mask(prof.name, c->masked[i]);
    memset(&prof, 0, sizeof(prof));
    return c->masked[i];
}

/* JSON ----------------------------------------------------------------------------------------- */

/* The fee and total a pending request would cost its payer now. */
static void price_set(struct api *api, json_t *o, const struct pay_request *q)
{
    int64_t fee = 0, total = 0;
    if (send_fee(api, q->amount_minor, &fee) != CF_OK ||
        money_add(q->amount_minor, fee, &total) != CF_OK)
        return;
    json_object_set_new(o, "fee_minor", json_integer(fee));
    json_object_set_new(o, "total_minor", json_integer(total));
}

/* A request as viewer (one of its parties) sees it. */
static json_t *request_json(struct api *api, struct names *names, const struct pay_request *q,
                            const char *viewer)
{
    bool incoming = strcmp(q->payer, viewer) == 0;
    CF_ASSERT(incoming || strcmp(q->requester, viewer) == 0);
    char exp[40], created[40], updated[40];
    cf_time_format_rfc3339(q->expires_at_us, exp, sizeof(exp));
    cf_time_format_rfc3339(q->created_at_us, created, sizeof(created));
    cf_time_format_rfc3339(q->updated_at_us, updated, sizeof(updated));
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s}", "id", q->id, "direction",
                  incoming ? "incoming" : "outgoing", "status", pay_request_status_name(q->status),
                  "amount_minor", (json_int_t)q->amount_minor, "currency", q->currency,
                  "expires_at", exp, "created_at", created, "updated_at", updated);
    if (o == NULL)
        return NULL;
    if (incoming) /* the payer needs the requester's id to bind a step-up to the payment */
        json_object_set_new(
            o, "requester",
            json_pack("{s:s,s:s}", "id", q->requester, "name", name_of(api, names, q->requester)));
    else /* the requester sees the payer's masked name only */
        json_object_set_new(o, "payer", json_pack("{s:s}", "name", name_of(api, names, q->payer)));
    if (incoming && q->status == PAY_REQUEST_PENDING)
        price_set(api, o, q);
    if (q->note[0] != '\0')
        json_object_set_new(o, "note", json_string(q->note));
    if (q->split_id[0] != '\0')
        json_object_set_new(o, "split_id", json_string(q->split_id));
    if (q->status == PAY_REQUEST_PAID)
        json_object_set_new(o, "payment_id", json_string(q->paid_op_id));
    return o;
}

static struct names *names_new(struct http_request *req)
{
    struct names *c = arena_calloc(req->arena, 1, sizeof(*c));
    return c;
}

static void request_reply(struct http_request *req, struct http_response *resp, int status,
                          const struct pay_request *q)
{
    struct names *names = names_new(req);
    json_t *o = names != NULL ? request_json(req->app, names, q, api_pay_me_id(req)) : NULL;
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, status, o);
}

/* Making requests ------------------------------------------------------------------------------ */

/* What both kinds of request take besides the people and the amount. */
struct request_common {
    char currency[MONEY_CODE_BYTES_MAX + 1];
    char note[PAY_NOTE_BYTES_MAX];
    int64_t expires_in_s;
};

static enum cf_err common_decode(struct api *api, json_t *root, struct request_common *c,
                                 const char **detail)
{
    const char *s = NULL;
    size_t n = 0;
    *detail = "currency";
    if (api_json_string(root, "currency", true, MONEY_CODE_BYTES_MAX, &s, &n) != CF_OK ||
        currency_find(s, n) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    snprintf(c->currency, sizeof(c->currency), "%.*s", (int)n, s);
    if (!api_pay_currency_offered(api, c->currency))
        return CF_ERR_UNKNOWN_CURRENCY;
    *detail = "note";
    s = NULL;
    enum cf_err err = api_json_string(root, "note", false, PAY_NOTE_BYTES_MAX - 1, &s, &n);
    if (err != CF_OK)
        return err;
    if (s != NULL)
        snprintf(c->note, sizeof(c->note), "%.*s", (int)n, s);
    *detail = "expires_in_s";
    c->expires_in_s = PAY_REQUEST_TTL_S_DEFAULT;
    if ((err = api_json_int(root, "expires_in_s", false, &c->expires_in_s)) != CF_OK)
        return err;
    if (c->expires_in_s < PAY_REQUEST_TTL_S_MIN || c->expires_in_s > PAY_REQUEST_TTL_S_MAX)
        return CF_ERR_INVALID_FIELD;
    *detail = NULL;
    return CF_OK;
}

/* One request of the caller's to payer_id, from the common fields. */
static void request_fill(struct http_request *req, const struct request_common *c,
                         const char *payer_id, int64_t amount_minor, const char *split_id,
                         int64_t now, struct pay_request *q)
{
    memset(q, 0, sizeof(*q));
    payments_request_id_new(q->id);
    snprintf(q->requester, sizeof(q->requester), "%s", api_pay_me_id(req));
    snprintf(q->payer, sizeof(q->payer), "%s", payer_id);
    q->amount_minor = amount_minor;
    snprintf(q->currency, sizeof(q->currency), "%s", c->currency);
    snprintf(q->note, sizeof(q->note), "%s", c->note);
    snprintf(q->split_id, sizeof(q->split_id), "%s", split_id);
    q->expires_at_us = now + c->expires_in_s * 1000000;
    q->created_at_us = q->updated_at_us = now;
    q->paid_op_status = -1;
}

/* Resolves a phone, email or @handle to a customer who is not the caller. */
static enum cf_err payer_find(struct http_request *req, const char *text,
                              struct identity_recipient *out)
{
    struct api *api = req->app;
    enum cf_err err = identity_recipient_find(api->identity, text, out);
    if (err == CF_OK && strcmp(out->user_id, api_pay_me_id(req)) == 0)
        err = CF_ERR_SAME_ACCOUNT;
    return err;
}

/* {from, amount_minor, currency, note?, expires_in_s?} */
static enum cf_err create_decode(struct http_request *req, json_t *root, struct request_common *c,
                                 struct identity_recipient *payer, int64_t *amount_out,
                                 const char **detail)
{
    static const char *const fields[] = {"from", "amount_minor", "currency",
                                         "note", "expires_in_s", NULL};
    enum cf_err err = api_json_fields(root, fields, detail);
    if (err != CF_OK)
        return err;
    const char *s = NULL;
    size_t n = 0;
    char from[IDENTITY_LOGIN_BYTES_MAX + 1];
    *detail = "from";
    if ((err = api_json_string(root, "from", true, sizeof(from) - 1, &s, &n)) != CF_OK)
        return err;
    snprintf(from, sizeof(from), "%.*s", (int)n, s);
    *detail = "amount_minor";
    if ((err = api_json_int(root, "amount_minor", true, amount_out)) != CF_OK)
        return err;
    if (*amount_out <= 0)
        return CF_ERR_INVALID_AMOUNT;
    if ((err = common_decode(req->app, root, c, detail)) != CF_OK)
        return err;
    *detail = "from";
    if ((err = payer_find(req, from, payer)) != CF_OK)
        return err;
    *detail = NULL;
    return CF_OK;
}

static void request_create_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct request_common c;
    struct identity_recipient payer;
    struct pay_request q;
    int64_t amount = 0, now = api_pay_now_us();
    memset(&c, 0, sizeof(c));
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = create_decode(req, root, &c, &payer, &amount, &detail);
    if (err == CF_OK) {
        request_fill(req, &c, payer.user_id, amount, "", now, &q);
        if ((err = payments_requests_put(api->payments, &q, 1, now)) == CF_ERR_CONFLICT)
            detail = "too many pending requests; cancel some or let them expire";
    }
    if (err == CF_OK)
        err = payments_request_get(api->payments, q.id, now, &q);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        json_decref(root);
        return;
    }
    json_decref(root);
    request_reply(req, resp, 201, &q);
}

enum http_action api_me_request_create(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, request_create_run);
}

/* Splits --------------------------------------------------------------------------------------- */

struct split_body {
    struct request_common c;
    int64_t total_minor;
    bool include_self;
    size_t people_n; /* participants */
    struct identity_recipient people[PAY_SPLIT_PEOPLE_MAX];
};

/* Resolves participants[i]: a known customer, not the caller, not listed before. */
static enum cf_err participant_read(struct http_request *req, json_t *item, size_t i,
                                    struct split_body *b, char *detail, size_t detail_bytes)
{
    snprintf(detail, detail_bytes, "participants[%zu]", i);
    if (!json_is_string(item) || json_string_length(item) > IDENTITY_LOGIN_BYTES_MAX ||
        memchr(json_string_value(item), '\0', json_string_length(item)) != NULL)
        return CF_ERR_INVALID_FIELD;
    enum cf_err err = payer_find(req, json_string_value(item), &b->people[i]);
    if (err != CF_OK)
        return err;
    for (size_t j = 0; j < i; j++) {
        if (strcmp(b->people[j].user_id, b->people[i].user_id) == 0) {
            snprintf(detail, detail_bytes, "participants[%zu]: listed twice", i);
            return CF_ERR_INVALID_FIELD;
        }
    }
    return CF_OK;
}

static enum cf_err participants_read(struct http_request *req, json_t *root, struct split_body *b,
                                     const char **detail)
{
    json_t *list = json_object_get(root, "participants");
    *detail = "participants";
    if (list == NULL || json_is_null(list))
        return CF_ERR_MISSING_FIELD;
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > PAY_SPLIT_PEOPLE_MAX)
        return CF_ERR_INVALID_FIELD;
    char *d = arena_alloc(req->arena, DETAIL_BYTES_MAX);
    if (d == NULL)
        return CF_ERR_NOMEM;
    b->people_n = json_array_size(list);
    for (size_t i = 0; i < b->people_n; i++) {
        enum cf_err err = participant_read(req, json_array_get(list, i), i, b, d, DETAIL_BYTES_MAX);
        if (err != CF_OK) {
            *detail = d;
            return err;
        }
    }
    *detail = NULL;
    return CF_OK;
}

/* {participants, total_minor, currency, note?, include_self?, expires_in_s?} */
static enum cf_err split_decode(struct http_request *req, json_t *root, struct split_body *b,
                                const char **detail)
{
    static const char *const fields[] = {"participants", "total_minor",  "currency", "note",
                                         "include_self", "expires_in_s", NULL};
    memset(b, 0, sizeof(*b));
    enum cf_err err = api_json_fields(root, fields, detail);
    if (err != CF_OK)
        return err;
    *detail = "total_minor";
    if ((err = api_json_int(root, "total_minor", true, &b->total_minor)) != CF_OK)
        return err;
    if (b->total_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    *detail = "include_self";
    if ((err = api_json_bool(root, "include_self", &b->include_self)) != CF_OK)
        return err;
    if ((err = common_decode(req->app, root, &b->c, detail)) != CF_OK)
        return err;
    return participants_read(req, root, b, detail);
}

/* The split's requests (one per participant) into q; *self_out gets the caller's share. */
static enum cf_err split_build(struct http_request *req, const struct split_body *b, int64_t now,
                               struct pay_request *q, int64_t *self_out, const char **detail)
{
    int64_t shares[PAY_SPLIT_PEOPLE_MAX + 1];
    size_t people = b->people_n + (b->include_self ? 1 : 0);
    *detail = "total_minor: less than one minor unit a person";
    enum cf_err err = payments_split_shares(b->total_minor, people, shares);
    if (err != CF_OK)
        return err;
    char split_id[PAY_ID_BYTES_MAX];
    payments_split_id_new(split_id);
    for (size_t i = 0; i < b->people_n; i++)
        request_fill(req, &b->c, b->people[i].user_id, shares[i], split_id, now, &q[i]);
    *self_out = b->include_self ? shares[people - 1] : 0;
    *detail = NULL;
    return CF_OK;
}

static void split_reply(struct http_request *req, struct http_response *resp,
                        const struct split_body *b, const struct pay_request *q, int64_t self)
{
    struct names *names = names_new(req);
    json_t *list = json_array();
    for (size_t i = 0; names != NULL && list != NULL && i < b->people_n; i++)
        json_array_append_new(list, request_json(req->app, names, &q[i], api_pay_me_id(req)));
    json_t *o = json_pack("{s:s,s:I,s:s,s:I,s:o}", "split_id", q[0].split_id, "total_minor",
                          (json_int_t)b->total_minor, "currency", b->c.currency, "self_share_minor",
                          (json_int_t)self, "requests", list);
    if (names == NULL || o == NULL) {
        json_decref(o);
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 201, o);
}

static void request_split_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct split_body *b = arena_calloc(req->arena, 1, sizeof(*b));
    struct pay_request *q = arena_calloc(req->arena, PAY_SPLIT_PEOPLE_MAX, sizeof(*q));
    int64_t self = 0, now = api_pay_now_us();
    enum cf_err err = b == NULL || q == NULL ? CF_ERR_NOMEM : api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = split_decode(req, root, b, &detail);
    if (err == CF_OK)
        err = split_build(req, b, now, q, &self, &detail);
    if (err == CF_OK &&
        (err = payments_requests_put(api->payments, q, b->people_n, now)) == CF_ERR_CONFLICT)
        detail = "too many pending requests; cancel some or let them expire";
    for (size_t i = 0; err == CF_OK && i < b->people_n; i++)
        err = payments_request_get(api->payments, q[i].id, now, &q[i]);
    if (err != CF_OK)
        api_pay_problem_reply(req, resp, err,
                              detail); /* copies detail, which may point into root */
    json_decref(root);
    if (err == CF_OK)
        split_reply(req, resp, b, q, self);
}

enum http_action api_me_request_split(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, request_split_run);
}

/* Reading -------------------------------------------------------------------------------------- */

/* Reads direction, status, cursor and limit. */
static enum cf_err list_filter(struct http_request *req, struct pay_request_filter *f,
                               size_t *limit_out, const char **detail)
{
    const char *dir = http_request_query(req, "direction");
    const char *status = http_request_query(req, "status");
    const char *cursor = http_request_query(req, "cursor");
    const char *limit = http_request_query(req, "limit");
    *detail = "direction";
    f->direction = PAY_REQUEST_BOTH;
    if (dir != NULL && strcmp(dir, "incoming") == 0)
        f->direction = PAY_REQUEST_INCOMING;
    else if (dir != NULL && strcmp(dir, "outgoing") == 0)
        f->direction = PAY_REQUEST_OUTGOING;
    else if (dir != NULL)
        return CF_ERR_INVALID_FIELD;
    *detail = "status";
    f->status = status != NULL ? pay_request_status_parse(status) : -1;
    if (status != NULL && f->status < 0)
        return CF_ERR_INVALID_FIELD;
    *detail = "cursor";
    if (cursor != NULL && cursor_parse(cursor, strlen(cursor), &f->before_row) != CF_OK)
        return CF_ERR_INVALID_CURSOR;
    *detail = "limit";
    char *end = NULL;
    long n = limit != NULL ? strtol(limit, &end, 10) : REQUESTS_PAGE_DEFAULT;
    if ((limit != NULL && (*limit == '\0' || *end != '\0')) || n < 1 || n > REQUESTS_PAGE_MAX)
        return CF_ERR_INVALID_PAGE_SIZE;
    *limit_out = (size_t)n;
    *detail = NULL;
    return CF_OK;
}

static void requests_list_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct pay_request_filter f = {.party = api_pay_me_id(req)};
    size_t limit = 0, n = 0;
    const char *detail = NULL;
    struct pay_request *q = arena_calloc(req->arena, REQUESTS_PAGE_MAX + 1, sizeof(*q));
    struct names *names = names_new(req);
    enum cf_err err =
        q == NULL || names == NULL ? CF_ERR_NOMEM : list_filter(req, &f, &limit, &detail);
    if (err == CF_OK)
        err = payments_requests_list(api->payments, &f, api_pay_now_us(), q, limit + 1, &n);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n && i < limit; i++)
        json_array_append_new(data, request_json(api, names, &q[i], api_pay_me_id(req)));
    json_t *o = json_pack("{s:o}", "data", data);
    if (n > limit) {
        char c[ID_TEXT_BYTES_MAX];
        cursor_format(q[limit - 1].row, c);
        json_object_set_new(o, "next_cursor", json_string(c));
    } else {
        json_object_set_new(o, "next_cursor", json_null());
    }
    api_reply_object(req, resp, 200, o);
}

enum http_action api_me_requests(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, requests_list_run);
}

/* The request in the path if the caller is one of its parties; CF_ERR_NOT_FOUND otherwise. */
static enum cf_err request_mine(struct http_request *req, struct pay_request *q)
{
    struct api *api = req->app;
    enum cf_err err = payments_request_get(api->payments, req->params[0], api_pay_now_us(), q);
    if (err == CF_OK && strcmp(q->payer, api_pay_me_id(req)) != 0 &&
        strcmp(q->requester, api_pay_me_id(req)) != 0)
        err = CF_ERR_NOT_FOUND;
    return err;
}

static void request_get_run(struct http_request *req, struct http_response *resp)
{
    struct pay_request q;
    enum cf_err err = request_mine(req, &q);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    request_reply(req, resp, 200, &q);
}

enum http_action api_me_request_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, request_get_run);
}

/* Declining and cancelling --------------------------------------------------------------------- */

/* An optional body that may only be {} (or hold the allowed fields). */
static enum cf_err body_optional(struct http_request *req, const char *const *fields, json_t **root,
                                 const char **detail)
{
    *root = NULL;
    if (req->body_len == 0)
        return CF_OK;
    enum cf_err err = api_json_object(req, root, detail);
    if (err == CF_OK && (err = api_json_fields(*root, fields, detail)) != CF_OK) {
        if (*detail != NULL) /* it names a key of the tree freed below */
            *detail = arena_strndup(req->arena, *detail, strlen(*detail));
        json_decref(*root);
        *root = NULL;
    }
    return err;
}

static void request_close(struct http_request *req, struct http_response *resp, uint8_t to)
{
    static const char *const fields[] = {NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct pay_request q;
    enum cf_err err = body_optional(req, fields, &root, &detail);
    json_decref(root);
    if (err == CF_OK)
        err = payments_request_close(api->payments, req->params[0], api_pay_me_id(req), to,
                                     api_pay_now_us(), &q);
    if (err == CF_ERR_NOT_FOUND && request_mine(req, &q) == CF_OK) {
        err = CF_ERR_CONFLICT; /* the other party's action */
        detail = to == PAY_REQUEST_DECLINED ? "only the payer can decline a request"
                                            : "only the requester can cancel a request";
    } else if (err == CF_ERR_CONFLICT && request_mine(req, &q) == CF_OK) {
        detail = state_detail(&q);
    }
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    request_reply(req, resp, 200, &q);
}

static void request_decline_run(struct http_request *req, struct http_response *resp)
{
    request_close(req, resp, PAY_REQUEST_DECLINED);
}

static void request_cancel_run(struct http_request *req, struct http_response *resp)
{
    request_close(req, resp, PAY_REQUEST_CANCELLED);
}

enum http_action api_me_request_decline(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, request_decline_run);
}

enum http_action api_me_request_cancel(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, request_cancel_run);
}

/* Paying --------------------------------------------------------------------------------------- */

/* Records what op's outcome means for the request it pays (best effort: reads derive the
 * status from the operation anyway, and the next payment releases a failed one). */
static void outcome_record(struct api *api, const struct pay_op *op)
{
    if (op->status == PAY_STATUS_COMPLETED)
        cf_best_effort(
            payments_request_settle(api->payments, op->reference, op->id, api_pay_now_us()));
    else if (op->status == PAY_STATUS_FAILED)
        cf_best_effort(
            payments_request_release(api->payments, op->reference, op->id, api_pay_now_us()));
}

/* The claim failed before any money moved: the operation fails (unless it is already past
 * PROCESSING: then it ran elsewhere and is answered as it stands) and the request is freed. */
static enum cf_err claim_lost(struct http_request *req, struct pay_op *op, const char **detail)
{
    struct api *api = req->app;
    struct pay_op_update u = {.status = PAY_STATUS_FAILED, .error = cf_err_code(CF_ERR_CONFLICT)};
    enum cf_err err = payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PROCESSING, &u,
                                         api_pay_now_us());
    if (err == CF_ERR_CONFLICT)
        return payments_op_get(api->payments, op->id, op);
    if (err != CF_OK)
        return err;
    struct pay_request q;
    if (payments_request_get(api->payments, op->reference, api_pay_now_us(), &q) == CF_OK)
        *detail = state_detail(&q);
    cf_best_effort(
        payments_request_release(api->payments, op->reference, op->id, api_pay_now_us()));
    return CF_ERR_CONFLICT;
}

/* Claims the request, runs op (unless a replay found it finished), records the outcome on the
 * request and answers. */
static void op_run_reply(struct http_request *req, struct http_response *resp, struct pay_op *op)
{
    struct api *api = req->app;
    const char *detail = NULL;
    enum cf_err err = CF_OK;
    if (op->status == PAY_STATUS_PROCESSING) {
        err = payments_request_claim(api->payments, op->reference, api_pay_me_id(req), op->id,
                                     api_pay_now_us());
        if (err == CF_ERR_CONFLICT || err == CF_ERR_NOT_FOUND)
            err = claim_lost(req, op, &detail);
        if (err == CF_OK && op->status == PAY_STATUS_PROCESSING)
            err = api_pay_execute(api, req->arena, op);
    }
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    outcome_record(api, op);
    api_pay_outcome_reply(req, resp, op, api_pay_me_id(req));
}

/* A request whose key made an operation before is answered from it: CF_OK when answered,
 * CF_ERR_NOT_FOUND when the key is new, another error to answer. */
static enum cf_err op_replayed(struct http_request *req, struct http_response *resp)
{
    struct pay_op op;
    enum cf_err err = api_pay_op_stored(req, &op);
    if (err != CF_OK)
        return err;
    op_run_reply(req, resp, &op);
    return CF_OK;
}

/* The request in the path, payable by the caller now. A reserved operation that failed
 * without being released (a crash) is released first. */
static enum cf_err payable_get(struct http_request *req, struct pay_request *q, const char **detail)
{
    struct api *api = req->app;
    enum cf_err err = request_mine(req, q);
    if (err == CF_OK && q->paid_op_status == PAY_STATUS_FAILED) {
        cf_best_effort(
            payments_request_release(api->payments, q->id, q->paid_op_id, api_pay_now_us()));
        err = request_mine(req, q);
    }
    if (err != CF_OK)
        return err;
    if (strcmp(q->payer, api_pay_me_id(req)) != 0) {
        *detail = "only the payer can pay a request";
        return CF_ERR_CONFLICT;
    }
    if (q->status != PAY_REQUEST_PENDING || q->paid_op_status >= 0) {
        *detail = state_detail(q);
        return CF_ERR_CONFLICT;
    }
    return CF_OK;
}

/* The send that pays q, under the operation id q reserved; *total_out: amount and fee. */
static enum cf_err pay_op_build(struct http_request *req, const struct pay_request *q,
                                struct pay_op *op, int64_t *total_out)
{
    struct api *api = req->app;
    memset(op, 0, sizeof(*op));
    enum cf_err err = api_pay_idem_read(req, op->idem, op->request_hash);
    if (err == CF_OK)
        err = send_fee(api, q->amount_minor, &op->fee_minor);
    if (err == CF_OK)
        err = money_add(q->amount_minor, op->fee_minor, total_out);
    if (err != CF_OK)
        return err;
    snprintf(op->id, sizeof(op->id), "%s", q->paid_op_id);
    op->kind = PAY_KIND_SEND;
    snprintf(op->payer, sizeof(op->payer), "%s", q->payer);
    snprintf(op->payee, sizeof(op->payee), "%s", q->requester);
    op->amount_minor = op->credit_minor = q->amount_minor;
    snprintf(op->currency, sizeof(op->currency), "%s", q->currency);
    snprintf(op->credit_currency, sizeof(op->credit_currency), "%s", q->currency);
    snprintf(op->note, sizeof(op->note), "%s", q->note);
    snprintf(op->reference, sizeof(op->reference), "%s", q->id);
    err = api_pay_wallet(api, req->arena, op->payer, op->currency, true, &op->payer_account);
    if (err == CF_OK)
        err = api_pay_wallet(api, req->arena, op->payee, op->currency, true, &op->payee_account);
    return err;
}

/* Above the step-up amount, the payment needs a verification bound to it. */
static enum cf_err pay_step_up(struct http_request *req, const struct pay_op *op, int64_t total,
                               const struct identity_verification *v)
{
    struct api *api = req->app;
    if (total <= identity_config_get(api->identity)->step_up_amount_minor)
        return CF_OK;
    struct identity_action a = {
        .action = "send", .amount_minor = total, .currency = op->currency, .payee = op->payee};
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    return identity_challenge_consume(api->identity, &ctx, &api_principal(req)->user, &a, v,
                                      op->idem);
}

/* Records op; a concurrent payment that recorded the reserved id first answers a conflict. */
static enum cf_err pay_op_start(struct http_request *req, struct pay_op *op, int64_t total,
                                const struct identity_verification *v, const char **detail)
{
    struct api *api = req->app;
    struct pay_op stored;
    bool existed = false;
    struct api_risk_ctx rc = {.req = req,
                              .step_up_action = "send",
                              .bound_to = op->payee,
                              .v = v,
                              .step_up_amount_minor = total,
                              .fresh = true}; /* request_pay_run's op_replayed just looked */
    enum cf_err err = api_pay_op_record(api, &rc, op, &existed);
    if (err == CF_ERR_STORAGE_CONFLICT &&
        payments_op_get(api->payments, op->id, &stored) == CF_OK) {
        *detail = "a payment of the request is in progress";
        return CF_ERR_CONFLICT;
    }
    return err;
}

static void request_pay_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"verification", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct identity_verification v;
    struct pay_request q;
    struct pay_op op;
    int64_t total = 0;
    memset(&v, 0, sizeof(v));
    enum cf_err err = body_optional(req, fields, &root, &detail);
    if (err == CF_OK && root != NULL && (err = api_json_verification(root, &v)) != CF_OK)
        detail = "verification";
    if (err == CF_OK && (err = op_replayed(req, resp)) == CF_ERR_NOT_FOUND)
        err = CF_OK;
    else if (err == CF_OK) {
        json_decref(root);
        return; /* answered from the stored operation */
    }
    if (err == CF_OK)
        err = payable_get(req, &q, &detail);
    if (err == CF_OK) /* a requester frozen with blocks_incoming takes nothing */
        err = api_risk_party_check_incoming(api, q.requester);
    if (err == CF_OK)
        err = pay_op_build(req, &q, &op, &total);
    if (err == CF_OK)
        err = pay_step_up(req, &op, total, &v);
    if (err == CF_OK)
        err = pay_op_start(req, &op, total, &v, &detail);
    if (err != CF_OK)
        api_pay_problem_reply(req, resp, err, detail);
    json_decref(root); /* v pointed into it; op holds copies */
    if (err == CF_OK)
        op_run_reply(req, resp, &op);
}

enum http_action api_me_request_pay(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, request_pay_run);
}
