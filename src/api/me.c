/*
 * me.c - /v1/me: what a signed-in person does with their own identity and money.
 *
 * Ownership: a customer's ledger accounts have the customer's user id as owner. Every route
 * that names an account or a transfer checks that the caller owns it (for a transfer: one of
 * its two accounts) and answers 404 otherwise, exactly as for an id that does not exist, so
 * nobody learns about another person's money by guessing ids.
 *
 * Step-up: a transfer above the configured amount, or to an account the customer never paid
 * before, needs a challenge bound to (amount, currency, destination); see identity.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/pay.h"
#include "api/risk_freeze.h"
#include "core/ids.h"
#include "money/currency.h"

#define ME_TRANSFERS_EXPORT_MAX 1000
#define ME_SESSIONS_MAX 100

static const char *me_id(const struct http_request *req)
{
    const struct api_principal *p = api_principal(req);
    CF_ASSERT(p != NULL && !p->bootstrap);
    return p->user.user_id;
}

/* Reads an account and checks the caller owns it; CF_ERR_ACCOUNT_NOT_FOUND otherwise. */
static enum cf_err owned_account(struct http_request *req, uint64_t account_id,
                                 struct store_account_row *row)
{
    struct api *api = req->app;
    struct store_reader *r;
    enum cf_err err = api->store->ops->r_open(api->store, &r);
    if (err != CF_OK)
        return err;
    err = api->store->ops->r_account_get(r, account_id, row, req->arena);
    api->store->ops->r_close(r);
    if (err == CF_ERR_NOT_FOUND || (err == CF_OK && strcmp(row->owner, me_id(req)) != 0))
        return CF_ERR_ACCOUNT_NOT_FOUND;
    return err;
}

static enum cf_err path_id(struct http_request *req, const char *prefix, uint64_t *out)
{
    if (req->params_n < 1)
        return CF_ERR_NOT_FOUND;
    return id_parse(prefix, req->params[0], strlen(req->params[0]), out);
}

/* Profile ----------------------------------------------------------------------------------------
 */

static void me_get_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct identity_profile p;
    enum cf_err err = identity_profile_get(api->identity, me_id(req), &p);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    char created[40];
    cf_time_format_rfc3339(p.created_at_us, created, sizeof(created));
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s,s:s,s:s,s:b,s:s}", "user_id", p.user_id, "role",
                               identity_role_name(p.role), "login", p.login, "name", p.name,
                               "totp_enabled", p.totp_enabled, "created_at", created));
    hash_wipe(&p, sizeof(p));
}

enum http_action api_me_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_get_run);
}

/* Accounts ------------------------------------------------------------------------------------- */

static void me_accounts_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    uint64_t ids[IDENTITY_WALLET_ACCOUNTS_MAX];
    size_t n = 0;
    enum cf_err err =
        identity_wallet_list(api->identity, me_id(req), ids, IDENTITY_WALLET_ACCOUNTS_MAX, &n);
    struct buf b;
    buf_init(&b, req->arena, HTTP_RESPONSE_SMALL_BYTES_MAX);
    buf_puts(&b, "{\"data\":[");
    for (size_t i = 0; i < n && err == CF_OK; i++) {
        struct store_account_row row;
        err = owned_account(req, ids[i], &row);
        if (err == CF_OK) {
            if (i > 0)
                buf_puts(&b, ",");
            api_render_account(&b, &row.account, row.owner, row.metadata);
        }
    }
    buf_puts(&b, "]}");
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_json_reply(resp, 200, &b);
}

enum http_action api_me_accounts(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_accounts_run);
}

/* Opens the caller's account in a currency: one per currency, so repeating it is harmless. The
 * idempotency key is derived from the user and currency, so concurrent or retried opens meet
 * in the same ledger account. */
static void me_account_open_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"currency", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *currency = NULL;
    size_t currency_len = 0;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && api_json_string(root, "currency", true, MONEY_CODE_BYTES_MAX, &currency,
                                        &currency_len) != CF_OK)
        err = CF_ERR_UNKNOWN_CURRENCY;
    if (err == CF_OK && currency_find(currency, currency_len) == NULL)
        err = CF_ERR_UNKNOWN_CURRENCY;
    struct writer_cmd *cmd = err == CF_OK ? arena_calloc(req->arena, 1, sizeof(*cmd)) : NULL;
    if (err == CF_OK && cmd == NULL)
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        json_decref(root);
        api_problem(req, resp, err,
                    detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL);
        return;
    }
    const char *user = me_id(req);
    uint64_t have[IDENTITY_WALLET_ACCOUNTS_MAX + 1];
    size_t have_n = 0;
    err =
        identity_wallet_list(api->identity, user, have, IDENTITY_WALLET_ACCOUNTS_MAX + 1, &have_n);
    if (err == CF_OK && have_n >= IDENTITY_WALLET_ACCOUNTS_MAX)
        err = CF_ERR_CONFLICT; /* bounded, so closing can check every balance */
    if (err != CF_OK) {
        json_decref(root);
        api_problem(req, resp, err,
                    err == CF_ERR_CONFLICT ? "a customer has at most 64 accounts" : NULL);
        return;
    }
    char *key = arena_alloc(req->arena, IDEM_STORED_KEY_BYTES_MAX);
    CF_ASSERT(key != NULL);
    int key_len = snprintf(key, IDEM_STORED_KEY_BYTES_MAX, "%s:wallet-open:%.*s", user,
                           (int)currency_len, currency);
    cmd->type = WRITER_CMD_ACCOUNT_CREATE;
    memcpy(cmd->account.currency, currency, currency_len);
    cmd->account.normal = LEDGER_NORMAL_CREDIT;
    cmd->account.kind = LEDGER_KIND_CUSTOMER;
    uint32_t frozen = 0; /* a frozen customer's new wallet is opened frozen */
    if ((err = api_risk_wallet_flags(api, user, &frozen)) != CF_OK) {
        json_decref(root);
        api_problem(req, resp, err, NULL);
        return;
    }
    cmd->account.flags = LEDGER_ACCOUNT_NO_OVERDRAFT | frozen;
    cmd->owner = user;
    cmd->owner_len = strlen(user);
    cmd->idem_key = key;
    cmd->idem_key_len = (size_t)key_len;
    hash_sha256(key, (size_t)key_len, cmd->request_hash);
    json_decref(root);
    uint64_t account_id = 0;
    err = api_submit_wait(api, cmd, req->arena);
    if (err == CF_OK)
        err = api_created_account_id(cmd, &account_id);
    if (err == CF_OK)
        err = identity_wallet_add(api->identity, user, account_id, cmd->account.currency);
    if (err == CF_OK) /* a freeze or unfreeze may have settled the wallets meanwhile */
        err = api_risk_wallet_settle(api, req->arena, user, account_id);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_cmd_reply(req, resp, cmd);
}

enum http_action api_me_account_open(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_account_open_run);
}

enum http_action api_me_account_get(struct http_request *req, struct http_response *resp)
{
    uint64_t id = 0;
    struct store_account_row row;
    enum cf_err err = path_id(req, ID_PREFIX_ACCOUNT, &id);
    if (err == CF_OK)
        err = owned_account(req, id, &row);
    if (err != CF_OK) {
        api_problem(req, resp, err == CF_ERR_INVALID_ID ? CF_ERR_ACCOUNT_NOT_FOUND : err, NULL);
        return HTTP_DONE;
    }
    struct buf b;
    buf_init(&b, req->arena, HTTP_RESPONSE_SMALL_BYTES_MAX);
    api_render_account(&b, &row.account, row.owner, row.metadata);
    api_json_reply(resp, 200, &b);
    return HTTP_DONE;
}

enum http_action api_me_account_transfers(struct http_request *req, struct http_response *resp)
{
    uint64_t id = 0;
    struct store_account_row row;
    enum cf_err err = path_id(req, ID_PREFIX_ACCOUNT, &id);
    if (err == CF_OK)
        err = owned_account(req, id, &row);
    if (err != CF_OK) {
        api_problem(req, resp, err == CF_ERR_INVALID_ID ? CF_ERR_ACCOUNT_NOT_FOUND : err, NULL);
        return HTTP_DONE;
    }
    return api_account_transfers(req, resp); /* the same history, now that it is the caller's */
}

/* Transfers ------------------------------------------------------------------------------------ */

enum http_action api_me_transfer_get(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    uint64_t id = 0;
    struct ledger_entry e;
    struct store_reader *r;
    enum cf_err err = path_id(req, ID_PREFIX_TRANSFER, &id);
    if (err == CF_OK && (err = api->store->ops->r_open(api->store, &r)) == CF_OK) {
        err = api->store->ops->r_entry_get(r, id, &e, req->arena);
        api->store->ops->r_close(r);
    }
    struct store_account_row row;
    if (err == CF_OK && owned_account(req, e.debit_id, &row) != CF_OK &&
        owned_account(req, e.credit_id, &row) != CF_OK)
        err = CF_ERR_NOT_FOUND;
    if (err != CF_OK) {
        bool hidden = err == CF_ERR_NOT_FOUND || err == CF_ERR_INVALID_ID;
        api_problem(req, resp, hidden ? CF_ERR_TRANSFER_NOT_FOUND : err, NULL);
        return HTTP_DONE;
    }
    struct buf b;
    buf_init(&b, req->arena, HTTP_RESPONSE_SMALL_BYTES_MAX);
    api_render_entry(&b, &e);
    api_json_reply(resp, 200, &b);
    return HTTP_DONE;
}

struct me_transfer {
    uint64_t from_id, to_id;
    int64_t amount_minor;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    char to_text[ID_TEXT_BYTES_MAX];
    struct identity_verification v;
};

static enum cf_err me_transfer_decode(json_t *root, struct me_transfer *t, const char **detail)
{
    static const char *const fields[] = {"from_account", "to_account",   "amount_minor",
                                         "currency",     "verification", NULL};
    const char *cur = NULL;
    size_t cur_len = 0;
    enum cf_err err = api_json_fields(root, fields, detail);
    if (err != CF_OK)
        return err;
    *detail = "from_account";
    if ((err = api_json_id(root, "from_account", ID_PREFIX_ACCOUNT, &t->from_id)) != CF_OK)
        return err;
    *detail = "to_account";
    if ((err = api_json_id(root, "to_account", ID_PREFIX_ACCOUNT, &t->to_id)) != CF_OK)
        return err;
    *detail = "amount_minor";
    if ((err = api_json_int(root, "amount_minor", true, &t->amount_minor)) != CF_OK)
        return err;
    if (t->amount_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    *detail = "currency";
    if (api_json_string(root, "currency", true, MONEY_CODE_BYTES_MAX, &cur, &cur_len) != CF_OK ||
        currency_find(cur, cur_len) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    memcpy(t->currency, cur, cur_len);
    t->currency[cur_len] = '\0';
    *detail = "verification";
    if ((err = api_json_verification(root, &t->v)) != CF_OK)
        return err;
    *detail = NULL;
    id_format(ID_PREFIX_ACCOUNT, t->to_id, t->to_text);
    return CF_OK;
}

/* The step-up rule: above the configured amount, or to a payee never paid before. */
static enum cf_err me_transfer_step_up(struct http_request *req, const struct me_transfer *t,
                                       const struct writer_cmd *cmd, bool *new_payee_out)
{
    struct api *api = req->app;
    const struct api_principal *p = api_principal(req);
    bool known = false;
    enum cf_err err = identity_payee_known(api->identity, &p->user, t->to_text, &known);
    if (err != CF_OK)
        return err;
    *new_payee_out = !known;
    int64_t limit = identity_config_get(api->identity)->step_up_amount_minor;
    if (known && t->amount_minor <= limit)
        return CF_OK;
    struct identity_action a = {.action = "transfer",
                                .amount_minor = t->amount_minor,
                                .currency = t->currency,
                                .payee = t->to_text};
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    return identity_challenge_consume(api->identity, &ctx, &p->user, &a, &t->v, cmd->idem_key);
}

static void me_transfer_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct writer_cmd *cmd = arena_calloc(req->arena, 1, sizeof(*cmd));
    struct ledger_leg *leg = arena_calloc(req->arena, 1, sizeof(*leg));
    struct me_transfer t;
    memset(&t, 0, sizeof(t));
    json_t *root = NULL;
    const char *detail = NULL;
    enum cf_err err = cmd == NULL || leg == NULL ? CF_ERR_NOMEM : api_idem_prepare(req, cmd, true);
    if (err == CF_OK)
        err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = me_transfer_decode(root, &t, &detail);
    struct store_account_row from;
    if (err == CF_OK)
        err = owned_account(req, t.from_id, &from);
    if (err == CF_OK && strcmp(from.account.currency, t.currency) != 0)
        err = CF_ERR_CURRENCY_MISMATCH;
    bool new_payee = false;
    if (err == CF_OK)
        err = me_transfer_step_up(req, &t, cmd, &new_payee);
    if (err == CF_OK) {
        leg->debit_id = t.from_id;
        leg->credit_id = t.to_id;
        leg->amount = t.amount_minor;
        memcpy(leg->currency, t.currency, sizeof(leg->currency));
        snprintf(leg->code, sizeof(leg->code), "p2p");
        cmd->type = WRITER_CMD_TRANSFER;
        cmd->legs = leg;
        cmd->legs_n = 1;
        cmd->variant = API_VARIANT_SINGLE;
        err = api_submit_wait(api, cmd, req->arena);
    }
    if (err == CF_OK && cmd->err == CF_OK && new_payee)
        cf_best_effort(identity_payee_add(api->identity, &api_principal(req)->user, t.to_text));
    if (err != CF_OK) {
        char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
        json_decref(root);
        api_problem(req, resp, err, d);
        return;
    }
    json_decref(root);
    api_cmd_reply(req, resp, cmd);
}

enum http_action api_me_transfer_create(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_transfer_run);
}

/* Step-up challenges ------------------------------------------------------------------------------
 */

static void me_challenge_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"action", "amount_minor", "currency", "payee", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct identity_action a = {0};
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && (err = api_json_string(root, "action", true, IDENTITY_ACTION_BYTES_MAX,
                                               &a.action, NULL)) != CF_OK)
        detail = "action";
    if (err == CF_OK && (err = api_json_int(root, "amount_minor", false, &a.amount_minor)) != CF_OK)
        detail = "amount_minor";
    if (err == CF_OK && (err = api_json_string(root, "currency", false, MONEY_CODE_BYTES_MAX,
                                               &a.currency, NULL)) != CF_OK)
        detail = "currency";
    if (err == CF_OK && (err = api_json_string(root, "payee", false, IDENTITY_PAYEE_BYTES_MAX,
                                               &a.payee, NULL)) != CF_OK)
        detail = "payee";
    struct identity_challenge c;
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_challenge_create(api->identity, &ctx, &api_principal(req)->user, &a, &c);
        if (err == CF_ERR_INVALID_FIELD)
            detail = "action";
    }
    if (err != CF_OK) {
        char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
        json_decref(root);
        api_problem_retry(req, resp, err, d, err == CF_ERR_RATE_LIMITED ? 3600 : 0);
        return;
    }
    json_decref(root);
    char exp[40];
    cf_time_format_rfc3339(c.expires_at_us, exp, sizeof(exp));
    api_reply_object(req, resp, 201,
                     json_pack("{s:s,s:s,s:s}", "challenge_id", c.challenge_id, "method",
                               c.totp ? "totp" : "code_sent", "expires_at", exp));
}

enum http_action api_me_challenge(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_challenge_run);
}

/* Sessions --------------------------------------------------------------------------------------
 */

static json_t *session_json(const struct identity_session_info *s)
{
    char created[40], seen[40], exp[40];
    cf_time_format_rfc3339(s->created_at_us, created, sizeof(created));
    cf_time_format_rfc3339(s->last_seen_at_us, seen, sizeof(seen));
    cf_time_format_rfc3339(s->expires_at_us, exp, sizeof(exp));
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "session_id", s->session_id, "device",
                     s->device, "ip", s->ip, "created_at", created, "last_seen_at", seen,
                     "expires_at", exp, "current", s->current);
}

static json_t *sessions_json(struct api *api, const struct identity_principal *p,
                             enum cf_err *err_out)
{
    struct identity_session_info *list = calloc(ME_SESSIONS_MAX, sizeof(*list));
    size_t n = 0;
    *err_out = list == NULL ? CF_ERR_NOMEM
                            : identity_sessions_list(api->identity, p, list, ME_SESSIONS_MAX, &n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n && *err_out == CF_OK; i++)
        json_array_append_new(arr, session_json(&list[i]));
    free(list);
    return arr;
}

static void me_sessions_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    enum cf_err err;
    json_t *arr = sessions_json(api, &api_principal(req)->user, &err);
    if (err != CF_OK) {
        json_decref(arr);
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200, json_pack("{s:o}", "data", arr));
}

enum http_action api_me_sessions(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_sessions_run);
}

static void me_session_revoke_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    uint64_t sid = 0;
    enum cf_err err = path_id(req, ID_PREFIX_SESSION, &sid);
    if (err == CF_OK)
        err =
            identity_session_revoke(api->identity, &ctx, &api_principal(req)->user, req->params[0]);
    if (err != CF_OK) {
        api_problem(req, resp, err == CF_ERR_INVALID_ID ? CF_ERR_NOT_FOUND : err, NULL);
        return;
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s}", "session_id", req->params[0], "status", "revoked"));
}

enum http_action api_me_session_revoke(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_session_revoke_run);
}

static void me_sessions_revoke_others_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    size_t n = 0;
    enum cf_err err =
        identity_sessions_revoke_others(api->identity, &ctx, &api_principal(req)->user, &n);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200, json_pack("{s:I}", "revoked", (json_int_t)n));
}

enum http_action api_me_sessions_revoke_others(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_sessions_revoke_others_run);
}

/* Password and MFA
 * --------------------------------------------------------------------------------- */

static void me_password_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"current_password", "new_password", "verification", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *cur = NULL, *next = NULL;
    size_t cur_len = 0, next_len = 0;
    struct identity_verification v;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && (err = api_json_string(root, "current_password", true, PASSWORD_BYTES_MAX,
                                               &cur, &cur_len)) != CF_OK)
        detail = "current_password";
    if (err == CF_OK && (err = api_json_string(root, "new_password", true, PASSWORD_BYTES_MAX,
                                               &next, &next_len)) != CF_OK)
        detail = "new_password";
    if (err == CF_OK && (err = api_json_verification(root, &v)) != CF_OK)
        detail = "verification";
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_password_change(api->identity, &ctx, &api_principal(req)->user, cur, cur_len,
                                       next, next_len, &v, &detail);
    }
    char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, d);
        return;
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:s}", "status", "password changed; other sessions ended"));
}

enum http_action api_me_password(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_password_run);
}

/* Decodes a body holding only an optional verification. */
static enum cf_err verification_only(struct http_request *req, struct identity_verification *v)
{
    static const char *const fields[] = {"verification", NULL};
    memset(v, 0, sizeof(*v));
    if (req->body_len == 0)
        return CF_OK;
    json_t *root = NULL;
    const char *detail = NULL;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK)
        err = api_json_verification(root, v);
    /* the strings point into root: copy them into the arena before freeing it */
    if (err == CF_OK && v->challenge_id != NULL) {
        v->challenge_id = arena_strndup(req->arena, v->challenge_id, strlen(v->challenge_id));
        v->code = arena_strndup(req->arena, v->code, strlen(v->code));
        if (v->challenge_id == NULL || v->code == NULL)
            err = CF_ERR_NOMEM;
    }
    json_decref(root);
    return err;
}

static void me_totp_begin_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct identity_verification v;
    enum cf_err err = verification_only(req, &v);
    struct identity_totp_enrolment e;
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_totp_begin(api->identity, &ctx, &api_principal(req)->user, &v, &e);
    }
    if (err != CF_OK)
        api_problem(req, resp, err, NULL);
    else
        api_reply_enrolment(req, resp, &e);
    hash_wipe(&e, sizeof(e));
}

enum http_action api_me_totp_begin(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_totp_begin_run);
}

static void me_totp_confirm_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"code", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *code = NULL;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && (err = api_json_string(root, "code", true, 16, &code, NULL)) != CF_OK)
        detail = "code";
    char codes[IDENTITY_RECOVERY_CODES][IDENTITY_RECOVERY_CODE_BYTES];
    size_t n = 0;
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err =
            identity_totp_confirm(api->identity, &ctx, &api_principal(req)->user, code, codes, &n);
    }
    char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, d);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_string(codes[i]));
    hash_wipe(codes, sizeof(codes));
    api_reply_object(req, resp, 200,
                     json_pack("{s:b,s:o}", "totp_enabled", 1, "recovery_codes", list));
}

enum http_action api_me_totp_confirm(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_totp_confirm_run);
}

static void me_totp_disable_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct identity_verification v;
    enum cf_err err = verification_only(req, &v);
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_totp_disable(api->identity, &ctx, &api_principal(req)->user, &v);
    }
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200, json_pack("{s:b}", "totp_enabled", 0));
}

enum http_action api_me_totp_disable(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_totp_disable_run);
}

/* Export and closure ----------------------------------------------------------------------------
 */

static json_t *account_history_json(struct http_request *req, uint64_t account_id,
                                    enum cf_err *err_out)
{
    struct api *api = req->app;
    struct ledger_entry *entries =
        arena_calloc(req->arena, ME_TRANSFERS_EXPORT_MAX, sizeof(*entries));
    size_t n = 0;
    struct store_reader *r;
    *err_out = entries == NULL ? CF_ERR_NOMEM : api->store->ops->r_open(api->store, &r);
    if (*err_out == CF_OK) {
        *err_out = api->store->ops->r_account_entries(
            r, account_id, UINT64_MAX, ME_TRANSFERS_EXPORT_MAX, entries, &n, req->arena);
        api->store->ops->r_close(r);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n && *err_out == CF_OK; i++) {
        struct buf b;
        buf_init(&b, req->arena, 8192);
        api_render_entry(&b, &entries[i]);
        json_t *e = buf_ok(&b) ? json_loadb(b.data, b.len, 0, NULL) : NULL;
        if (e != NULL)
            json_array_append_new(arr, e);
    }
    return arr;
}

static json_t *accounts_json(struct http_request *req, enum cf_err *err_out)
{
    struct api *api = req->app;
    uint64_t ids[IDENTITY_WALLET_ACCOUNTS_MAX];
    size_t n = 0;
    *err_out =
        identity_wallet_list(api->identity, me_id(req), ids, IDENTITY_WALLET_ACCOUNTS_MAX, &n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n && *err_out == CF_OK; i++) {
        struct store_account_row row;
        *err_out = owned_account(req, ids[i], &row);
        if (*err_out != CF_OK)
            break;
        struct buf b;
        buf_init(&b, req->arena, 8192);
        api_render_account(&b, &row.account, row.owner, row.metadata);
        json_t *a = buf_ok(&b) ? json_loadb(b.data, b.len, 0, NULL) : NULL;
        if (a == NULL)
            continue;
        json_object_set_new(a, "transfers", account_history_json(req, ids[i], err_out));
        json_array_append_new(arr, a);
    }
    return arr;
}

static void me_export_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const struct identity_principal *p = &api_principal(req)->user;
    struct identity_verification v;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    enum cf_err err = verification_only(req, &v);
    if (err == CF_OK)
        err = identity_export_authorize(api->identity, &ctx, p, &v);
    struct identity_profile prof;
    if (err == CF_OK)
        err = identity_profile_get(api->identity, p->user_id, &prof);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    char created[40];
    cf_time_format_rfc3339(prof.created_at_us, created, sizeof(created));
    json_t *profile =
        json_pack("{s:s,s:s,s:s,s:s,s:b,s:s}", "user_id", prof.user_id, "role",
                  identity_role_name(prof.role), "login", prof.login, "name", prof.name,
                  "totp_enabled", prof.totp_enabled, "created_at", created);
    hash_wipe(&prof, sizeof(prof));
    json_t *sessions = sessions_json(api, p, &err);
    json_t *accounts = err == CF_OK ? accounts_json(req, &err) : json_array();
    if (err != CF_OK) {
        json_decref(profile);
        json_decref(sessions);
        json_decref(accounts);
        api_problem(req, resp, err, NULL);
        return;
    }
    char now[40];
    cf_time_format_rfc3339(cf_clock_now_us(&cf_clock_real), now, sizeof(now));
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s,s:o,s:o,s:o}", "format", "coffer-export-v1", "exported_at",
                               now, "profile", profile, "sessions", sessions, "accounts",
                               accounts));
}

enum http_action api_me_export(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_export_run);
}

/* Every wallet account must be at zero, with nothing pending. */
static enum cf_err balances_zero(struct http_request *req, uint64_t *ids, size_t *n_out)
{
    struct api *api = req->app;
    enum cf_err err =
        identity_wallet_list(api->identity, me_id(req), ids, IDENTITY_WALLET_ACCOUNTS_MAX, n_out);
    for (size_t i = 0; i < *n_out && err == CF_OK; i++) {
        struct store_account_row row;
        err = owned_account(req, ids[i], &row);
        const struct ledger_account *a = &row.account;
        if (err == CF_OK &&
            (ledger_account_balance(a) != 0 || a->debits_pending != 0 || a->credits_pending != 0))
            err = CF_ERR_BALANCE_NOT_ZERO;
    }
    return err;
}

/* Closes a closed customer's ledger accounts: nothing more can arrive or leave. */
static enum cf_err accounts_freeze(struct http_request *req, const uint64_t *ids, size_t n)
{
    struct api *api = req->app;
    for (size_t i = 0; i < n; i++) {
        struct writer_cmd *cmd = arena_calloc(req->arena, 1, sizeof(*cmd));
        if (cmd == NULL)
            return CF_ERR_NOMEM;
        cmd->type = WRITER_CMD_SET_FLAGS;
        cmd->target_id = ids[i];
        cmd->flags_set = LEDGER_ACCOUNT_CLOSED | LEDGER_ACCOUNT_FROZEN;
        enum cf_err err = api_submit_wait(api, cmd, req->arena);
        if (err == CF_OK)
            err = cmd->err;
        if (err != CF_OK)
            return err;
    }
    return CF_OK;
}

static void me_close_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct identity_verification v;
    uint64_t ids[IDENTITY_WALLET_ACCOUNTS_MAX];
    size_t n = 0;
    enum cf_err err = verification_only(req, &v);
    if (err == CF_OK)
        err = balances_zero(req, ids, &n);
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_account_close(api->identity, &ctx, &api_principal(req)->user, &v);
    }
    if (err == CF_OK)
        err = accounts_freeze(req, ids, n);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s}", "status", "closed", "note",
                               "personal data erased; the ledger keeps its history under the "
                               "pseudonymous user id"));
}

enum http_action api_me_close(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_close_run);
}

/* Login change --------------------------------------------------------------------------------- */

static void me_login_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"new_login", "verification", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *login = NULL;
    struct identity_verification v;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK &&
        (err = api_json_string(root, "new_login", true, IDENTITY_LOGIN_BYTES_MAX + 16, &login,
                               NULL)) != CF_OK)
        detail = "new_login";
    if (err == CF_OK && (err = api_json_verification(root, &v)) != CF_OK)
        detail = "verification";
    char change_id[ID_TEXT_BYTES_MAX];
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_login_change_start(api->identity, &ctx, &api_principal(req)->user, login, &v,
                                          change_id);
        if (err == CF_ERR_INVALID_FIELD)
            detail = "new_login";
    }
    char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
    json_decref(root);
    if (err != CF_OK) {
        api_problem_retry(req, resp, err, d, err == CF_ERR_RATE_LIMITED ? 3600 : 0);
        return;
    }
    api_reply_object(req, resp, 202,
                     json_pack("{s:s,s:s}", "change_id", change_id, "status",
                               "a code was sent to the new login"));
}

enum http_action api_me_login(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_login_run);
}

static void me_login_confirm_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"change_id", "code", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *change_id = NULL, *code = NULL;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && (err = api_json_string(root, "change_id", true, ID_TEXT_BYTES_MAX,
                                               &change_id, NULL)) != CF_OK)
        detail = "change_id";
    if (err == CF_OK && (err = api_json_string(root, "code", true, 16, &code, NULL)) != CF_OK)
        detail = "code";
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_login_change_confirm(api->identity, &ctx, &api_principal(req)->user,
                                            change_id, code);
    }
    char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, d);
        return;
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:s}", "status", "login changed; other sessions ended"));
}

enum http_action api_me_login_confirm(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_login_confirm_run);
}
