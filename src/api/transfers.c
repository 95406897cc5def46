/* transfers.c - /v1/ledger/transfers: create (single or legs), post, void, read, batch. */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "core/ids.h"
#include "money/currency.h"

static const char *const leg_fields[] = {
    "debit_account_id", "credit_account_id", "amount",   "currency", "code",
    "pending",          "timeout_s",         "metadata", NULL};
static const char *const item_fields[] = {
    "debit_account_id", "credit_account_id", "amount",   "currency",        "code",
    "pending",          "timeout_s",         "metadata", "idempotency_key", NULL};

static bool code_valid(const char *s, size_t len)
{
    if (len == 0 || len > LEDGER_CODE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static enum cf_err leg_amount(json_t *obj, struct ledger_leg *leg)
{
    json_t *v = json_object_get(obj, "amount");
    if (v == NULL)
        return CF_ERR_MISSING_FIELD;
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return CF_ERR_INVALID_AMOUNT;
    leg->amount = (int64_t)json_integer_value(v);
    return CF_OK;
}

static enum cf_err leg_currency_code(json_t *obj, struct ledger_leg *leg, const char **detail)
{
    const char *cur = NULL, *code = "transfer";
    size_t cur_len = 0, code_len = strlen(code);
    *detail = "currency";
    enum cf_err err = api_json_string(obj, "currency", true, MONEY_CODE_BYTES_MAX, &cur, &cur_len);
    if (err == CF_ERR_INVALID_FIELD || (err == CF_OK && currency_find(cur, cur_len) == NULL))
        return CF_ERR_UNKNOWN_CURRENCY;
    if (err != CF_OK)
        return err;
    *detail = "code";
    if ((err = api_json_string(obj, "code", false, LEDGER_CODE_BYTES_MAX, &code, &code_len)) !=
        CF_OK)
        return err;
    if (!code_valid(code, code_len))
        return CF_ERR_INVALID_FIELD;
    memcpy(leg->currency, cur, cur_len);
    leg->currency[cur_len] = '\0';
    memcpy(leg->code, code, code_len);
    leg->code[code_len] = '\0';
    return CF_OK;
}

static enum cf_err leg_item_key(json_t *obj, struct arena *arena, struct ledger_leg *leg)
{
    const char *k = NULL;
    size_t len = 0;
    enum cf_err err = api_json_string(obj, "idempotency_key", true, IDEM_KEY_BYTES_MAX, &k, &len);
    if (err != CF_OK)
        return err == CF_ERR_MISSING_FIELD ? CF_ERR_IDEM_KEY_MISSING : CF_ERR_IDEM_KEY_INVALID;
    for (size_t i = 0; i < len; i++) {
        if (k[i] < 0x21 || k[i] > 0x7e)
            return CF_ERR_IDEM_KEY_INVALID;
    }
    if (len == 0)
        return CF_ERR_IDEM_KEY_INVALID;
    if ((leg->idem_key = arena_strndup(arena, k, len)) == NULL)
        return CF_ERR_NOMEM;
    leg->idem_key_len = len;
    return CF_OK;
}

enum cf_err api_decode_leg(json_t *obj, struct arena *arena, bool batch_item,
                           struct ledger_leg *leg, const char **detail)
{
    enum cf_err err;
    *detail = NULL;
    if (!json_is_object(obj)) {
        *detail = "a transfer must be a json object";
        return CF_ERR_INVALID_FIELD;
    }
    memset(leg, 0, sizeof(*leg));
    if ((err = api_json_fields(obj, batch_item ? item_fields : leg_fields, detail)) != CF_OK)
        return err;
    *detail = "debit_account_id";
    if ((err = api_json_id(obj, "debit_account_id", ID_PREFIX_ACCOUNT, &leg->debit_id)) != CF_OK)
        return err;
    *detail = "credit_account_id";
    if ((err = api_json_id(obj, "credit_account_id", ID_PREFIX_ACCOUNT, &leg->credit_id)) != CF_OK)
        return err;
    *detail = "amount";
    if ((err = leg_amount(obj, leg)) != CF_OK)
        return err;
    if ((err = leg_currency_code(obj, leg, detail)) != CF_OK)
        return err;
    *detail = "pending";
    if ((err = api_json_bool(obj, "pending", &leg->pending)) != CF_OK)
        return err;
    *detail = "timeout_s";
    if ((err = api_json_int(obj, "timeout_s", false, &leg->timeout_s)) != CF_OK)
        return CF_ERR_TIMEOUT_INVALID;
    if (leg->timeout_s < 0 || leg->timeout_s > LEDGER_TIMEOUT_S_MAX ||
        (leg->timeout_s > 0 && !leg->pending))
        return CF_ERR_TIMEOUT_INVALID;
    *detail = "metadata";
    if ((err = api_json_metadata(obj, arena, &leg->metadata, &leg->metadata_len)) != CF_OK)
        return err;
    *detail = "idempotency_key";
    if (batch_item && (err = leg_item_key(obj, arena, leg)) != CF_OK)
        return err;
    *detail = NULL;
    return CF_OK;
}

/* Answers a decode problem; detail may point into root, so it is copied first. */
static enum http_action fail(struct http_request *req, struct http_response *resp, json_t *root,
                             enum cf_err err, const char *detail)
{
    char *copy = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
    json_decref(root);
    api_problem(req, resp, err, copy);
    return HTTP_DONE;
}

static enum cf_err legs_decode(json_t *root, struct arena *arena, struct writer_cmd *cmd,
                               const char **detail, char *where, size_t where_bytes)
{
    static const char *const only_legs[] = {"legs", NULL};
    json_t *legs = json_object_get(root, "legs");
    enum cf_err err = api_json_fields(root, only_legs, detail);
    if (err != CF_OK)
        return err;
    if (!json_is_array(legs) || json_array_size(legs) == 0) {
        *detail = "legs must be a non-empty array";
        return CF_ERR_INVALID_FIELD;
    }
    if (json_array_size(legs) > LEDGER_LEGS_MAX)
        return CF_ERR_TOO_MANY_LEGS;
    cmd->legs_n = json_array_size(legs);
    if ((cmd->legs = arena_calloc(arena, cmd->legs_n, sizeof(*cmd->legs))) == NULL)
        return CF_ERR_NOMEM;
    for (size_t i = 0; i < cmd->legs_n; i++) {
        if ((err = api_decode_leg(json_array_get(legs, i), arena, false, &cmd->legs[i], detail)) !=
            CF_OK) {
            snprintf(where, where_bytes, "legs[%zu]%s%s", i, *detail ? "." : "",
                     *detail ? *detail : "");
            *detail = where;
            return err;
        }
    }
    cmd->variant = API_VARIANT_LEGS;
    return CF_OK;
}

enum http_action api_transfer_create(struct http_request *req, struct http_response *resp)
{
    struct writer_cmd *cmd = arena_calloc(req->arena, 1, sizeof(*cmd));
    json_t *root = NULL;
    const char *detail = NULL;
    char where[96];
    enum cf_err err = cmd == NULL ? CF_ERR_NOMEM : api_idem_prepare(req, cmd, true);
    if (err == CF_OK)
        err = api_json_object(req, &root, &detail);
    if (err == CF_OK && json_object_get(root, "legs") != NULL) {
        err = legs_decode(root, req->arena, cmd, &detail, where, sizeof(where));
    } else if (err == CF_OK) {
        cmd->legs_n = 1;
        cmd->variant = API_VARIANT_SINGLE;
        if ((cmd->legs = arena_calloc(req->arena, 1, sizeof(*cmd->legs))) == NULL)
            err = CF_ERR_NOMEM;
        else
            err = api_decode_leg(root, req->arena, false, cmd->legs, &detail);
    }
    if (err != CF_OK)
        return fail(req, resp, root, err, detail);
    json_decref(root);
    cmd->type = WRITER_CMD_TRANSFER;
    return api_submit(req, resp, cmd);
}

static enum cf_err path_transfer_id(struct http_request *req, uint64_t *id)
{
    CF_ASSERT(req->params_n >= 1);
    if (id_parse(ID_PREFIX_TRANSFER, req->params[0], strlen(req->params[0]), id) != CF_OK)
        return CF_ERR_TRANSFER_NOT_FOUND;
    return CF_OK;
}

static enum http_action resolve(struct http_request *req, struct http_response *resp,
                                enum writer_cmd_type type)
{
    static const char *const post_fields[] = {"amount", NULL};
    static const char *const no_fields[] = {NULL};
    struct writer_cmd *cmd = arena_calloc(req->arena, 1, sizeof(*cmd));
    json_t *root = NULL;
    const char *detail = NULL;
    enum cf_err err = cmd == NULL ? CF_ERR_NOMEM : path_transfer_id(req, &cmd->target_id);
    if (err == CF_OK)
        err = api_idem_prepare(req, cmd, true);
    if (err == CF_OK && req->body_len > 0) {
        err = api_json_object(req, &root, &detail);
        if (err == CF_OK)
            err = api_json_fields(root, type == WRITER_CMD_POST ? post_fields : no_fields, &detail);
        json_t *amount = err == CF_OK ? json_object_get(root, "amount") : NULL;
        if (amount != NULL && (!json_is_integer(amount) || json_integer_value(amount) <= 0))
            err = CF_ERR_INVALID_AMOUNT;
        else if (amount != NULL)
            cmd->amount_minor = (int64_t)json_integer_value(amount);
    }
    if (err != CF_OK)
        return fail(req, resp, root, err, detail);
    json_decref(root);
    cmd->type = type;
    return api_submit(req, resp, cmd);
}

enum http_action api_transfer_post(struct http_request *req, struct http_response *resp)
{
    return resolve(req, resp, WRITER_CMD_POST);
}

enum http_action api_transfer_void(struct http_request *req, struct http_response *resp)
{
    return resolve(req, resp, WRITER_CMD_VOID);
}

enum http_action api_transfer_get(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    uint64_t id;
    struct ledger_entry e;
    struct store_reader *r;
    enum cf_err err = path_transfer_id(req, &id);
    if (err == CF_OK && (err = api->store->ops->r_open(api->store, &r)) == CF_OK) {
        err = api->store->ops->r_entry_get(r, id, &e, req->arena);
        api->store->ops->r_close(r);
    }
    if (err != CF_OK) {
        api_problem(req, resp, err == CF_ERR_NOT_FOUND ? CF_ERR_TRANSFER_NOT_FOUND : err, NULL);
        return HTTP_DONE;
    }
    struct buf b;
    buf_init(&b, req->arena, HTTP_RESPONSE_SMALL_BYTES_MAX);
    api_render_entry(&b, &e);
    api_json_reply(resp, 200, &b);
    return HTTP_DONE;
}

static enum cf_err batch_decode(json_t *root, struct arena *arena, struct writer_cmd *cmd,
                                const char **detail, char *where, size_t where_bytes)
{
    static const char *const only[] = {"transfers", NULL};
    json_t *items = json_object_get(root, "transfers");
    enum cf_err err = api_json_fields(root, only, detail);
    if (err != CF_OK)
        return err;
    if (!json_is_array(items) || json_array_size(items) == 0) {
        *detail = "transfers must be a non-empty array";
        return CF_ERR_INVALID_FIELD;
    }
    if (json_array_size(items) > LEDGER_BATCH_ITEMS_MAX)
        return CF_ERR_BATCH_TOO_LARGE;
    cmd->legs_n = json_array_size(items);
    if ((cmd->legs = arena_calloc(arena, cmd->legs_n, sizeof(*cmd->legs))) == NULL)
        return CF_ERR_NOMEM;
    for (size_t i = 0; i < cmd->legs_n; i++) {
        err = api_decode_leg(json_array_get(items, i), arena, true, &cmd->legs[i], detail);
        if (err != CF_OK) {
            snprintf(where, where_bytes, "transfers[%zu]%s%s", i, *detail ? "." : "",
                     *detail ? *detail : "");
            *detail = where;
            return err;
        }
    }
    return CF_OK;
}

enum http_action api_transfers_batch(struct http_request *req, struct http_response *resp)
{
    struct writer_cmd *cmd = arena_calloc(req->arena, 1, sizeof(*cmd));
    json_t *root = NULL;
    const char *detail = NULL;
    char where[96];
    enum cf_err err = cmd == NULL ? CF_ERR_NOMEM : api_idem_prepare(req, cmd, false);
    if (err == CF_OK)
        err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = batch_decode(root, req->arena, cmd, &detail, where, sizeof(where));
    if (err != CF_OK)
        return fail(req, resp, root, err, detail);
    json_decref(root);
    cmd->type = WRITER_CMD_BATCH;
    return api_submit(req, resp, cmd);
}
