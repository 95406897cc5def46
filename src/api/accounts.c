/* accounts.c - /v1/ledger/accounts: create, read, list, freeze, unfreeze, history. */
#include <string.h>

#include "api/api.h"
#include "core/ids.h"
#include "money/currency.h"

static const char *const account_fields[] = {"currency", "normal",   "kind", "no_overdraft",
                                             "owner",    "metadata", NULL};

/* Problem answer for a decode error, freeing the parsed body. */
static enum http_action decode_fail(struct http_request *req, struct http_response *resp,
                                    json_t *root, enum cf_err err, const char *detail)
{
    char *copy = NULL;
    if (detail != NULL)
        copy = arena_strndup(req->arena, detail, strlen(detail));
    json_decref(root);
    api_problem(req, resp, err, copy);
    return HTTP_DONE;
}

static enum cf_err account_decode(json_t *root, struct writer_cmd *cmd, struct arena *arena,
                                  const char **detail)
{
    const char *currency = NULL, *normal = "credit", *kind = "customer";
    size_t currency_len = 0;
    enum cf_err err;
    if ((err = api_json_fields(root, account_fields, detail)) != CF_OK)
        return err;
    *detail = "currency";
    if ((err = api_json_string(root, "currency", true, MONEY_CODE_BYTES_MAX, &currency,
                               &currency_len)) != CF_OK)
        return err == CF_ERR_INVALID_FIELD ? CF_ERR_UNKNOWN_CURRENCY : err;
    if (currency_find(currency, currency_len) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    *detail = "normal";
    if ((err = api_json_string(root, "normal", false, 8, &normal, NULL)) != CF_OK)
        return err;
    if (strcmp(normal, "credit") != 0 && strcmp(normal, "debit") != 0)
        return CF_ERR_INVALID_FIELD;
    *detail = "kind";
    if ((err = api_json_string(root, "kind", false, 16, &kind, NULL)) != CF_OK)
        return err;
    int k = ledger_kind_parse(kind);
    if (k < 0)
        return CF_ERR_INVALID_FIELD;
    bool no_overdraft = k != LEDGER_KIND_SYSTEM; /* wallets may not go below zero by default */
    *detail = "no_overdraft";
    if ((err = api_json_bool(root, "no_overdraft", &no_overdraft)) != CF_OK)
        return err;
    *detail = "owner";
    const char *owner = NULL;
    size_t owner_len = 0;
    if ((err = api_json_string(root, "owner", false, LEDGER_OWNER_BYTES_MAX, &owner, &owner_len)) !=
        CF_OK)
        return err;
    *detail = "metadata";
    if ((err = api_json_metadata(root, arena, &cmd->metadata, &cmd->metadata_len)) != CF_OK)
        return err;
    *detail = NULL;
    if (owner != NULL && (cmd->owner = arena_strndup(arena, owner, owner_len)) == NULL)
        return CF_ERR_NOMEM;
    cmd->owner_len = owner_len;
    memcpy(cmd->account.currency, currency, currency_len);
    cmd->account.currency[currency_len] = '\0';
    cmd->account.normal = normal[0] == 'd' ? LEDGER_NORMAL_DEBIT : LEDGER_NORMAL_CREDIT;
    cmd->account.kind = (uint8_t)k;
    cmd->account.flags = no_overdraft ? LEDGER_ACCOUNT_NO_OVERDRAFT : 0;
    return CF_OK;
}

enum http_action api_account_create(struct http_request *req, struct http_response *resp)
{
    struct writer_cmd *cmd = arena_calloc(req->arena, 1, sizeof(*cmd));
    json_t *root = NULL;
    const char *detail = NULL;
    enum cf_err err = cmd == NULL ? CF_ERR_NOMEM : api_idem_prepare(req, cmd, true);
    if (err == CF_OK)
        err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = account_decode(root, cmd, req->arena, &detail);
    if (err != CF_OK)
        return decode_fail(req, resp, root, err, detail);
    json_decref(root);
    cmd->type = WRITER_CMD_ACCOUNT_CREATE;
    return api_submit(req, resp, cmd);
}

static enum cf_err path_account_id(struct http_request *req, uint64_t *id)
{
    CF_ASSERT(req->params_n >= 1);
    return id_parse(ID_PREFIX_ACCOUNT, req->params[0], strlen(req->params[0]), id);
}

/* An empty body or {} is all the freeze routes take. */
static enum cf_err empty_body(struct http_request *req, const char **detail)
{
    static const char *const none[] = {NULL};
    if (req->body_len == 0)
        return CF_OK;
    json_t *root = NULL;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, none, detail);
    if (err == CF_ERR_UNKNOWN_FIELD)
        *detail = "this route takes no fields";
    json_decref(root);
    return err;
}

static enum http_action flags_set(struct http_request *req, struct http_response *resp,
                                  uint32_t set, uint32_t clear)
{
    struct writer_cmd *cmd = arena_calloc(req->arena, 1, sizeof(*cmd));
    const char *detail = NULL;
    enum cf_err err = cmd == NULL ? CF_ERR_NOMEM : path_account_id(req, &cmd->target_id);
    if (err == CF_OK)
        err = api_idem_prepare(req, cmd, true);
    if (err == CF_OK)
        err = empty_body(req, &detail);
    if (err != CF_OK) {
        api_problem(req, resp, err == CF_ERR_INVALID_ID ? CF_ERR_ACCOUNT_NOT_FOUND : err, detail);
        return HTTP_DONE;
    }
    cmd->type = WRITER_CMD_SET_FLAGS;
    cmd->flags_set = set;
    cmd->flags_clear = clear;
    return api_submit(req, resp, cmd);
}

enum http_action api_account_freeze(struct http_request *req, struct http_response *resp)
{
    return flags_set(req, resp, LEDGER_ACCOUNT_FROZEN, 0);
}

enum http_action api_account_unfreeze(struct http_request *req, struct http_response *resp)
{
    return flags_set(req, resp, 0, LEDGER_ACCOUNT_FROZEN);
}

enum http_action api_account_get(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    uint64_t id;
    if (path_account_id(req, &id) != CF_OK) {
        api_problem(req, resp, CF_ERR_ACCOUNT_NOT_FOUND, NULL);
        return HTTP_DONE;
    }
    struct store_reader *r;
    struct store_account_row row;
    enum cf_err err = api->store->ops->r_open(api->store, &r);
    if (err == CF_OK) {
        err = api->store->ops->r_account_get(r, id, &row, req->arena);
        api->store->ops->r_close(r);
    }
    if (err != CF_OK) {
        api_problem(req, resp, err == CF_ERR_NOT_FOUND ? CF_ERR_ACCOUNT_NOT_FOUND : err, NULL);
        return HTTP_DONE;
    }
    struct buf b;
    buf_init(&b, req->arena, HTTP_RESPONSE_SMALL_BYTES_MAX);
    api_render_account(&b, &row.account, row.owner, row.metadata);
    api_json_reply(resp, 200, &b);
    return HTTP_DONE;
}

static uint64_t account_item(struct buf *b, const void *items, size_t i)
{
    const struct store_account_row *row = &((const struct store_account_row *)items)[i];
    api_render_account(b, &row->account, row->owner, row->metadata);
    return row->account.id;
}

static uint64_t entry_item(struct buf *b, const void *items, size_t i)
{
    const struct ledger_entry *e = &((const struct ledger_entry *)items)[i];
    api_render_entry(b, e);
    return e->seq;
}

enum http_action api_accounts_list(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    size_t limit;
    uint64_t after;
    bool has_cursor;
    enum cf_err err = api_page_params(req, &limit, &after, &has_cursor);
    struct store_account_row *rows = NULL;
    size_t n = 0;
    if (err == CF_OK && (rows = arena_calloc(req->arena, limit + 1, sizeof(*rows))) == NULL)
        err = CF_ERR_NOMEM;
    struct store_reader *r;
    if (err == CF_OK && (err = api->store->ops->r_open(api->store, &r)) == CF_OK) {
        err = api->store->ops->r_accounts_list(r, after, limit + 1, rows, &n, req->arena);
        api->store->ops->r_close(r);
    }
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return HTTP_DONE;
    }
    api_reply_page(req, resp, rows, n, limit, account_item);
    return HTTP_DONE;
}

enum http_action api_account_transfers(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const struct store_ops *ops = api->store->ops;
    uint64_t id, before;
    size_t limit, n = 0;
    bool has_cursor;
    enum cf_err err = path_account_id(req, &id) != CF_OK ? CF_ERR_ACCOUNT_NOT_FOUND : CF_OK;
    if (err == CF_OK)
        err = api_page_params(req, &limit, &before, &has_cursor);
    struct ledger_entry *rows = NULL;
    if (err == CF_OK && (rows = arena_calloc(req->arena, limit + 1, sizeof(*rows))) == NULL)
        err = CF_ERR_NOMEM;
    struct store_reader *r;
    if (err == CF_OK && (err = ops->r_open(api->store, &r)) == CF_OK) {
        /* from the head, r_account_entries reads the account itself (NOT_FOUND when missing);
         * from a cursor it only follows links, so the account's existence is checked here */
        struct store_account_row acct;
        if (has_cursor)
            err = ops->r_account_get(r, id, &acct, req->arena);
        if (err == CF_OK)
            err = ops->r_account_entries(r, id, has_cursor ? before : UINT64_MAX, limit + 1, rows,
                                         &n, req->arena);
        ops->r_close(r);
    }
    if (err != CF_OK) {
        api_problem(req, resp, err == CF_ERR_NOT_FOUND ? CF_ERR_ACCOUNT_NOT_FOUND : err, NULL);
        return HTTP_DONE;
    }
    api_reply_page(req, resp, rows, n, limit, entry_item);
    return HTTP_DONE;
}
