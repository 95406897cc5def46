/*
 * pay_reconcile.c - POST /v1/admin/reconcile; see pay_reconcile.h.
 *
 * The body is decoded strictly ({csv, from?, to?}); the file, the operations of the window and
 * the comparison live in an arena of their own (RECONCILE_ARENA_BYTES_MAX: the request's arena
 * is sized for bodies, not for 100 000 rows), destroyed before the answer is sent. The answer is
 * rendered from it into the request's arena, at most API_RECONCILE_LISTED_MAX mismatches long.
 */
#include "api/pay_reconcile.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "payments/reconcile.h"

/* The longest from/to text: "YYYY-MM-DDTHH:MM:SSZ". */
#define WINDOW_TEXT_BYTES_MAX 20
/* "csv: line 4294967295: " and a message, NUL included. */
#define DETAIL_BYTES_MAX (RECONCILE_ERROR_BYTES_MAX + 32)

/* The request, decoded. csv, from and to point into the JSON tree. */
struct recon_body {
    const char *csv;
    size_t csv_len;
    const char *from, *to;
};

static enum cf_err body_decode(json_t *root, struct recon_body *b, const char **detail)
{
    static const char *const fields[] = {"csv", "from", "to", NULL};
    memset(b, 0, sizeof(*b));
    enum cf_err err = api_json_fields(root, fields, detail);
    if (err != CF_OK)
        return err;
    *detail = "csv";
    if ((err = api_json_string(root, "csv", true, RECONCILE_FILE_BYTES_MAX, &b->csv,
                               &b->csv_len)) != CF_OK)
        return err;
    *detail = "from";
    if ((err = api_json_string(root, "from", false, WINDOW_TEXT_BYTES_MAX, &b->from, NULL)) !=
        CF_OK)
        return err;
    *detail = "to";
    if ((err = api_json_string(root, "to", false, WINDOW_TEXT_BYTES_MAX, &b->to, NULL)) != CF_OK)
        return err;
    *detail = NULL;
    return CF_OK;
}

/* "csv: line 4: amount_minor must be ..." (or "from: ..." ) in the request's arena. */
static const char *error_detail(struct http_request *req, const struct recon_error *e)
{
    char text[DETAIL_BYTES_MAX];
    if (e->line > 0)
        snprintf(text, sizeof(text), "%s: line %u: %s", e->field, (unsigned)e->line, e->message);
    else
        snprintf(text, sizeof(text), "%s: %s", e->field, e->message);
    return arena_strndup(req->arena, text, strlen(text));
}

/* Rendering ---------------------------------------------------------------------------------- */

static void set_text(json_t *o, const char *key, const char *value)
{
    if (value != NULL && value[0] != '\0')
        json_object_set_new(o, key, json_string(value));
}

static json_t *mismatch_json(const struct recon_mismatch *m, const struct recon_report *r)
{
    const struct recon_row *row = m->row != RECON_NONE ? &r->rows[m->row] : NULL;
    const struct recon_op *op = m->op != RECON_NONE ? &r->ops[m->op] : NULL;
    CF_ASSERT(row != NULL || op != NULL);
    json_t *o = json_pack("{s:s}", "kind", recon_kind_name(m->kind));
    if (o == NULL)
        return NULL;
    set_text(o, "reference", row != NULL ? row->reference : op->gateway_ref);
    set_text(o, "op_id", op != NULL ? op->id : row->op_id);
    set_text(o, "currency", row != NULL ? row->currency : op->currency);
    if (row != NULL) {
        json_object_set_new(o, "line", json_integer(row->line));
        set_text(o, "gateway_type", recon_type_name(row->type));
        json_object_set_new(o, "gateway_amount_minor", json_integer(row->amount_minor));
        set_text(o, "gateway_currency", row->currency);
        set_text(o, "gateway_status", recon_state_name(row->state));
    }
    if (op != NULL) {
        set_text(o, "coffer_type", pay_kind_name(op->kind));
        json_object_set_new(o, "coffer_amount_minor", json_integer(op->amount_minor));
        set_text(o, "coffer_currency", op->currency);
        set_text(o, "coffer_status", pay_status_name(op->status));
        set_text(o, "coffer_reference", op->gateway_ref);
    }
    return o;
}

static json_t *window_json(int64_t time_us, bool open)
{
    if (open)
        return json_null();
    char text[40];
    cf_time_format_rfc3339(time_us, text, sizeof(text));
    return json_string(text);
}

static json_t *report_json(const struct recon_report *r)
{
    const struct recon_result *res = &r->result;
    json_t *counts = json_object(), *list = json_array();
    size_t listed =
        res->mismatches_n < API_RECONCILE_LISTED_MAX ? res->mismatches_n : API_RECONCILE_LISTED_MAX;
    for (uint8_t k = 1; counts != NULL && k <= RECON_KIND_MAX; k++)
        json_object_set_new(counts, recon_kind_name(k), json_integer((json_int_t)res->by_kind[k]));
    for (size_t i = 0; list != NULL && i < listed; i++)
        json_array_append_new(list, mismatch_json(&res->mismatches[i], r));
    json_t *o = json_pack(
        "{s:o,s:o,s:I,s:I,s:I,s:I,s:o,s:o,s:b}", "from", window_json(r->from_us, r->from_us == 0),
        "to", window_json(r->to_us, r->to_us == INT64_MAX), "rows", (json_int_t)r->rows_n,
        "operations", (json_int_t)r->ops_n, "matched", (json_int_t)res->matched, "mismatches_total",
        (json_int_t)res->mismatches_n, "counts", counts, "mismatches", list, "truncated",
        listed < res->mismatches_n);
    CF_ASSERT(listed <= API_RECONCILE_LISTED_MAX);
    return o;
}

/* The handler -------------------------------------------------------------------------------- */

static void audit(struct http_request *req, enum cf_err err, const struct recon_report *r)
{
    struct api *api = req->app;
    struct identity_ctx ctx;
    char detail[96] = "";
    if (err == CF_OK)
        snprintf(detail, sizeof(detail), "rows=%zu operations=%zu mismatches=%zu", r->rows_n,
                 r->ops_n, r->result.mismatches_n);
    api_ctx(req, &ctx);
    cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), "payments.reconcile", "",
                                  err == CF_OK ? "ok" : "failed", detail));
}

static void admin_reconcile_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct recon_body b;
    struct recon_error e = {.field = "csv"};
    struct recon_report r;
    memset(&r, 0, sizeof(r));
    int64_t from_us = 0, to_us = 0;
    struct arena *arena = NULL;
    CF_ASSERT(api->payments != NULL && api_principal(req) != NULL);
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = body_decode(root, &b, &detail);
    if (err == CF_OK && (err = recon_window_parse(b.from, b.to, &from_us, &to_us, &e)) != CF_OK)
        detail = error_detail(req, &e);
    if (err == CF_OK && (arena = arena_create(RECONCILE_ARENA_BYTES_MAX)) == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK &&
        (err = payments_reconcile(api->payments, b.csv, b.csv_len, from_us, to_us, arena, &r,
                                  &e)) != CF_OK &&
        (err == CF_ERR_INVALID_FIELD || err == CF_ERR_PAYLOAD_TOO_LARGE))
        detail = error_detail(req, &e);
    if (err != CF_OK && detail != NULL && root != NULL)
        detail = arena_strndup(req->arena, detail, strlen(detail)); /* may point into root */
    json_decref(root);
    if (arena != NULL || err == CF_OK)
        audit(req, err, &r);
    CF_ASSERT(err != CF_OK || (r.result.matched <= r.rows_n && r.ops_n <= RECONCILE_OPS_MAX));
    json_t *answer = err == CF_OK ? report_json(&r) : NULL;
    arena_destroy(arena);
    if (err == CF_OK && answer == NULL)
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        api_problem(req, resp, err, detail);
        return;
    }
    api_reply_object(req, resp, 200, answer);
}

enum http_action api_admin_reconcile(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, admin_reconcile_run);
}
