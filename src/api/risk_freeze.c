/*
 * risk_freeze.c - freezing parties' accounts and the /v1/risk freeze routes; see
 * risk_freeze.h.
 *
 * Settling: the freeze row (risk/freeze.h) is read, every account of the party is read from the
 * ledger, and only an account whose LEDGER_ACCOUNT_FROZEN differs from the row's state is
 * changed, by a WRITER_CMD_SET_FLAGS keyed by the freeze and the account. A keyed change that
 * replays (the key had changed this account before, and someone changed it back since: the
 * raw ledger route, or a settling of an older state that lost a race) or whose key is in
 * flight in this process is made again without a key, since setting a flag twice is harmless
 * and a replay changes nothing. Then the row is read again: a state that moved meanwhile is
 * settled again. Whoever changes the state settles after changing it, and a settler re-reads
 * after its last change, so the last change of every account follows the last state.
 */
#include "api/risk_freeze.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/pay.h"
#include "api/risk_common.h"
#include "core/clock.h"
#include "core/ids.h"

/* "unfreeze:<party>:<freeze id>:<account id>" */
#define SETTLE_KEY_BYTES                                                                           \
    (16 + RISK_FREEZE_PARTY_BYTES_MAX + RISK_FREEZE_ID_BYTES_MAX + ID_TEXT_BYTES_MAX)
/* "event <id> freeze <id> blocks_incoming false" */
#define AUDIT_DETAIL_BYTES (64 + 2 * RISK_FREEZE_ID_BYTES_MAX)

/* Parties ------------------------------------------------------------------------------------ */

/* The ledger accounts of party: a customer's wallets, a merchant's account. CF_ERR_NOT_FOUND
 * for anything else (*detail_out NULL), CF_ERR_CONFLICT for a merchant without a payment
 * profile (*detail_out says so). */
static enum cf_err party_accounts(struct api *api, const char *party,
                                  uint64_t ids[API_RISK_ACCOUNTS_MAX], size_t *n_out,
                                  const char **detail_out)
{
    CF_ASSERT(api != NULL && party != NULL && n_out != NULL);
    *detail_out = NULL;
    if (!risk_freeze_party_valid(party))
        return CF_ERR_NOT_FOUND;
    enum cf_err err = CF_OK;
    if (strncmp(party, ID_PREFIX_USER, strlen(ID_PREFIX_USER)) == 0) {
        struct identity_profile p;
        err = identity_profile_get(api->identity, party, &p);
        bool customer = err == CF_OK && p.role == IDENTITY_CUSTOMER;
        hash_wipe(&p, sizeof(p)); /* its login and name are not needed here */
        if (err == CF_OK && !customer)
            err = CF_ERR_NOT_FOUND; /* staff and merchant users hold no money of their own */
        return err != CF_OK
                   ? err
                   : identity_wallet_list(api->identity, party, ids, API_RISK_ACCOUNTS_MAX, n_out);
    }
    struct identity_merchant im;
    struct pay_merchant m;
    if ((err = identity_merchant_get(api->identity, party, &im)) != CF_OK)
        return err;
    err = payments_merchant_get(api->payments, party, false, &m);
    if (err == CF_ERR_NOT_FOUND) {
        *detail_out = "the merchant has no payment profile, hence no account, yet";
        return CF_ERR_CONFLICT;
    }
    if (err == CF_OK) {
        ids[0] = m.account_id;
        *n_out = 1;
    }
    CF_ASSERT(err != CF_OK || *n_out <= API_RISK_ACCOUNTS_MAX);
    return err;
}

/* Accounts ----------------------------------------------------------------------------------- */

static enum cf_err account_read(struct api *api, struct arena *arena, uint64_t id,
                                struct api_risk_account *out)
{
    struct store_reader *r;
    struct store_account_row row;
    enum cf_err err = api->store->ops->r_open(api->store, &r);
    if (err != CF_OK)
        return err;
    err = api->store->ops->r_account_get(r, id, &row, arena);
    api->store->ops->r_close(r);
    if (err != CF_OK)
        return err;
    memset(out, 0, sizeof(*out));
    out->id = id;
    snprintf(out->currency, sizeof(out->currency), "%s", row.account.currency);
    out->frozen = (row.account.flags & LEDGER_ACCOUNT_FROZEN) != 0;
    out->closed = (row.account.flags & LEDGER_ACCOUNT_CLOSED) != 0;
    return CF_OK;
}

/* Sets or clears the account's frozen flag, under key (NULL: none); *replayed says whether the
 * key had answered before (nothing changed then). */
static enum cf_err flag_set(struct api *api, struct arena *arena, uint64_t id, bool frozen,
                            const char *key, bool *replayed)
{
    struct writer_cmd *cmd = arena_calloc(arena, 1, sizeof(*cmd));
    if (cmd == NULL)
        return CF_ERR_NOMEM;
    cmd->type = WRITER_CMD_SET_FLAGS;
    cmd->target_id = id;
    cmd->flags_set = frozen ? LEDGER_ACCOUNT_FROZEN : 0;
    cmd->flags_clear = frozen ? 0 : LEDGER_ACCOUNT_FROZEN;
    if (key != NULL) {
        cmd->idem_key = key;
        cmd->idem_key_len = strlen(key);
        hash_sha256(key, cmd->idem_key_len, cmd->request_hash);
    }
    enum cf_err err = api_submit_wait(api, cmd, arena);
    if (err != CF_OK)
        return err;
    *replayed = cmd->replayed;
    return api_pay_step_outcome(cmd);
}

/* Makes account id frozen or not (closed accounts are left alone); *out gets it as it is then. */
static enum cf_err account_settle(struct api *api, struct arena *arena, uint64_t id, bool frozen,
                                  const char *key, struct api_risk_account *out)
{
    CF_ASSERT(api != NULL && id > 0 && out != NULL);
    enum cf_err err = account_read(api, arena, id, out);
    if (err != CF_OK || out->closed || out->frozen == frozen)
        return err;
    bool replayed = false;
    err = flag_set(api, arena, id, frozen, key, &replayed);
    if (key != NULL && (err == CF_ERR_IDEM_KEY_IN_FLIGHT || (err == CF_OK && replayed)))
        err = flag_set(api, arena, id, frozen, NULL, &replayed);
    if (err == CF_OK) /* another settling may have changed it again since: it re-reads too */
        err = account_read(api, arena, id, out);
    CF_ASSERT(err != CF_OK || out->id == id);
    return err;
}

/* The key of an account's change: "<freeze|unfreeze>:<party>:<freeze id>:<account>", or NULL
 * when there is no freeze id to name. */
static const char *settle_key(struct arena *arena, bool frozen, const char *party,
                              const char *freeze_id, uint64_t id)
{
    if (freeze_id == NULL || freeze_id[0] == '\0')
        return NULL;
    char acct[ID_TEXT_BYTES_MAX];
    id_format(ID_PREFIX_ACCOUNT, id, acct);
    char *key = arena_alloc(arena, SETTLE_KEY_BYTES);
    if (key == NULL)
        return NULL;
    int n = snprintf(key, SETTLE_KEY_BYTES, "%s:%s:%s:%s", frozen ? "freeze" : "unfreeze", party,
                     freeze_id, acct);
    CF_ASSERT(n > 0 && n < SETTLE_KEY_BYTES && n <= IDEM_STORED_KEY_BYTES_MAX);
    return key;
}

/* The party's state: *frozen, and the current freeze's id (freeze_id, RISK_FREEZE_ID_BYTES_MAX)
 * when it is. */
static enum cf_err party_state(struct api *api, const char *party, bool *frozen, char *freeze_id)
{
    struct risk_freeze_event cur;
    enum cf_err err = risk_freeze_peek(api->freeze, party, &cur);
    if (err != CF_OK && err != CF_ERR_NOT_FOUND)
        return err;
    *frozen = err == CF_OK;
    snprintf(freeze_id, RISK_FREEZE_ID_BYTES_MAX, "%s", *frozen ? cur.id : "");
    return CF_OK;
}

/* Settles the party's accounts ids[0..n) on its state (see the top of this file); lifted names
 * the freeze an unfrozen state ended, for the keys. out->accounts and out->frozen get the
 * result. CF_ERR_CONFLICT when the state kept moving. */
static enum cf_err party_settle(struct api *api, struct arena *arena, const char *party,
                                const uint64_t *ids, size_t n, const char *lifted,
                                struct api_risk_outcome *out)
{
    CF_ASSERT(n <= API_RISK_ACCOUNTS_MAX && out != NULL);
    for (int round = 0; round < API_RISK_SETTLE_ROUNDS_MAX; round++) {
        char before[RISK_FREEZE_ID_BYTES_MAX], after[RISK_FREEZE_ID_BYTES_MAX];
        bool frozen = false, frozen_after = false;
        enum cf_err err = party_state(api, party, &frozen, before);
        for (size_t i = 0; i < n && err == CF_OK; i++) {
            const char *key = settle_key(arena, frozen, party, frozen ? before : lifted, ids[i]);
            err = account_settle(api, arena, ids[i], frozen, key, &out->accounts[i]);
        }
        if (err == CF_OK)
            err = party_state(api, party, &frozen_after, after);
        if (err != CF_OK)
            return err;
        if (frozen_after == frozen && strcmp(before, after) == 0) {
            out->frozen = frozen;
            out->accounts_n = n;
            return CF_OK;
        }
    }
    return CF_ERR_CONFLICT;
}

/* Freezing and unfreezing -------------------------------------------------------------------- */

static void audit_line(struct api *api, const struct identity_ctx *ctx, const char *by,
                       const char *action, const struct risk_freeze_event *e)
{
    struct identity_ctx none = {0};
    char detail[AUDIT_DETAIL_BYTES];
    if (e->kind == RISK_FREEZE_EVENT_FREEZE)
        snprintf(detail, sizeof(detail), "event %s blocks_incoming %s", e->id,
                 e->blocks_incoming ? "true" : "false");
    else
        snprintf(detail, sizeof(detail), "event %s freeze %s", e->id, e->freeze_id);
    cf_best_effort(identity_audit(api->identity, ctx != NULL ? ctx : &none, by, action, e->party,
                                  "ok", detail));
}

enum cf_err api_risk_party_freeze(struct api *api, struct arena *arena,
                                  const struct identity_ctx *ctx, const char *party,
                                  const char *reason, bool blocks_incoming, const char *by,
                                  const struct risk_freeze_idem *idem, struct api_risk_outcome *out)
{
    CF_ASSERT(api != NULL && arena != NULL && party != NULL && reason != NULL && by != NULL);
    CF_ASSERT(out != NULL);
    if (api->freeze == NULL)
        return CF_ERR_CONFIG;
    memset(out, 0, sizeof(*out));
    uint64_t ids[API_RISK_ACCOUNTS_MAX];
    size_t n = 0;
    enum cf_err err = party_accounts(api, party, ids, &n, &out->detail);
    if (err != CF_OK)
        return err;
    err = risk_freeze_put(api->freeze, party, reason, blocks_incoming, by, idem, api_pay_now_us(),
                          &out->event, &out->replay);
    if (err == CF_ERR_CONFLICT) {
        /* frozen already: answer so, and finish that freeze's settling (a repeat after a crash
         * whose key was lost lands here) */
        cf_best_effort(party_settle(api, arena, party, ids, n, NULL, out));
        out->detail = "the party is frozen already";
        return CF_ERR_CONFLICT;
    }
    if (err != CF_OK)
        return err;
    if (!out->replay)
        audit_line(api, ctx, by, "risk.freeze", &out->event);
    return party_settle(api, arena, party, ids, n, out->event.id, out);
}

enum cf_err api_risk_party_unfreeze(struct api *api, struct arena *arena,
                                    const struct identity_ctx *ctx, const char *party,
                                    const char *reason, const char *by,
                                    const struct risk_freeze_idem *idem,
                                    struct api_risk_outcome *out)
{
    CF_ASSERT(api != NULL && arena != NULL && party != NULL && reason != NULL && by != NULL);
    CF_ASSERT(out != NULL);
    if (api->freeze == NULL)
        return CF_ERR_CONFIG;
    memset(out, 0, sizeof(*out));
    uint64_t ids[API_RISK_ACCOUNTS_MAX];
    size_t n = 0;
    enum cf_err err = party_accounts(api, party, ids, &n, &out->detail);
    if (err != CF_OK)
        return err;
    err = risk_freeze_clear(api->freeze, party, reason, by, idem, api_pay_now_us(), &out->event,
                            &out->replay);
    if (err == CF_ERR_NOT_FOUND) {
        out->detail = "the party is not frozen";
        return CF_ERR_CONFLICT;
    }
    if (err != CF_OK)
        return err;
    if (!out->replay)
        audit_line(api, ctx, by, "risk.unfreeze", &out->event);
    return party_settle(api, arena, party, ids, n, out->event.freeze_id, out);
}

/* The payment path ---------------------------------------------------------------------------- */

enum cf_err api_risk_party_check_incoming(struct api *api, const char *party)
{
    CF_ASSERT(api != NULL);
    if (api->freeze == NULL || party == NULL || party[0] == '\0')
        return CF_OK;
    struct risk_freeze_event cur;
    enum cf_err err = risk_freeze_peek(api->freeze, party, &cur);
    if (err == CF_ERR_NOT_FOUND)
        return CF_OK;
    if (err != CF_OK)
        return err;
    return cur.blocks_incoming ? CF_ERR_ACCOUNT_FROZEN : CF_OK;
}

enum cf_err api_risk_wallet_flags(struct api *api, const char *user_id, uint32_t *flags_out)
{
    CF_ASSERT(api != NULL && user_id != NULL && flags_out != NULL);
    bool frozen = false;
    char freeze_id[RISK_FREEZE_ID_BYTES_MAX];
    enum cf_err err = api->freeze != NULL ? party_state(api, user_id, &frozen, freeze_id) : CF_OK;
    if (err == CF_OK)
        *flags_out = frozen ? LEDGER_ACCOUNT_FROZEN : 0;
    return err;
}

enum cf_err api_risk_wallet_settle(struct api *api, struct arena *arena, const char *user_id,
                                   uint64_t account_id)
{
    CF_ASSERT(api != NULL && user_id != NULL && account_id > 0);
    if (api->freeze == NULL)
        return CF_OK;
    bool frozen = false;
    char freeze_id[RISK_FREEZE_ID_BYTES_MAX];
    struct api_risk_account a;
    enum cf_err err = party_state(api, user_id, &frozen, freeze_id);
    if (err == CF_OK)
        err = account_settle(api, arena, account_id, frozen,
                             settle_key(arena, frozen, user_id, freeze_id, account_id), &a);
    return err;
}

/* JSON --------------------------------------------------------------------------------------- */

/* An event as staff see it; with_reason opens nothing, it only shows what was read. */
static json_t *event_json(const struct risk_freeze_event *e, bool with_reason)
{
    char at[40];
    cf_time_format_rfc3339(e->at_us, at, sizeof(at));
    bool freeze = e->kind == RISK_FREEZE_EVENT_FREEZE;
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", e->id, "type",
                          freeze ? "freeze" : "unfreeze", "party", e->party, "by", e->by, "at", at);
    if (o == NULL)
        return NULL;
    if (freeze)
        json_object_set_new(o, "blocks_incoming", json_boolean(e->blocks_incoming));
    else
        json_object_set_new(o, "freeze_id", json_string(e->freeze_id));
    if (with_reason)
        json_object_set_new(o, "reason", json_string(e->reason));
    return o;
}

static json_t *accounts_json(const struct api_risk_account *a, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n && arr != NULL; i++) {
        char id[ID_TEXT_BYTES_MAX];
        id_format(ID_PREFIX_ACCOUNT, a[i].id, id);
        json_array_append_new(arr,
                              json_pack("{s:s,s:s,s:b,s:b}", "id", id, "currency", a[i].currency,
                                        "frozen", a[i].frozen, "closed", a[i].closed));
    }
    return arr;
}

/* Routes: freeze and unfreeze ------------------------------------------------------------------ */

/* {reason, blocks_incoming?}: the reason copied into the request's arena. */
struct change_body {
    const char *reason;
    bool blocks_incoming;
};

static enum cf_err change_decode(struct http_request *req, bool freeze, struct change_body *b,
                                 const char **detail)
{
    static const char *const freeze_fields[] = {"reason", "blocks_incoming", NULL};
    static const char *const unfreeze_fields[] = {"reason", NULL};
    json_t *root = NULL;
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, freeze ? freeze_fields : unfreeze_fields, detail);
    if (err == CF_OK && (err = api_json_string(root, "reason", true,
                                               RISK_FREEZE_REASON_BYTES_MAX - 1, &s, &n)) != CF_OK)
        *detail = err == CF_ERR_INVALID_FIELD ? "reason: 1 to 500 characters" : "reason";
    if (err == CF_OK && (b->reason = arena_strndup(req->arena, s, n)) == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK && !risk_freeze_reason_valid(b->reason, detail))
        err = CF_ERR_INVALID_FIELD;
    if (err == CF_OK && freeze &&
        (err = api_json_bool(root, "blocks_incoming", &b->blocks_incoming)) != CF_OK)
        *detail = "blocks_incoming";
    *detail = api_detail_keep(req, *detail); /* it may point into root */
    json_decref(root);
    return err;
}

static void outcome_reply(struct http_request *req, struct http_response *resp, bool freeze,
                          const struct api_risk_outcome *out)
{
    json_t *o = json_pack("{s:s,s:b,s:o,s:o}", "party", out->event.party, "frozen", out->frozen,
                          freeze ? "freeze" : "unfreeze", event_json(&out->event, true), "accounts",
                          accounts_json(out->accounts, out->accounts_n));
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

static void change_run(struct http_request *req, struct http_response *resp, bool freeze)
{
    struct api *api = req->app;
    char key[PAY_IDEM_BYTES_MAX];
    struct risk_freeze_idem idem = {.key = key};
    struct change_body b = {.blocks_incoming = api->freeze_blocks_incoming};
    const char *detail = NULL;
    struct api_risk_outcome *out = arena_calloc(req->arena, 1, sizeof(*out));
    enum cf_err err = out == NULL ? CF_ERR_NOMEM : api_pay_idem_read(req, key, idem.request_hash);
    if (err == CF_OK)
        err = change_decode(req, freeze, &b, &detail);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    if (err == CF_OK && freeze)
        err = api_risk_party_freeze(api, req->arena, &ctx, req->params[0], b.reason,
                                    b.blocks_incoming, api_actor(req), &idem, out);
    else if (err == CF_OK)
        err = api_risk_party_unfreeze(api, req->arena, &ctx, req->params[0], b.reason,
                                      api_actor(req), &idem, out);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, out != NULL && detail == NULL ? out->detail : detail);
        return;
    }
    outcome_reply(req, resp, freeze, out);
}

static void freeze_run(struct http_request *req, struct http_response *resp)
{
    change_run(req, resp, true);
}

static void unfreeze_run(struct http_request *req, struct http_response *resp)
{
    change_run(req, resp, false);
}

enum http_action api_risk_freeze(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, freeze_run);
}

enum http_action api_risk_unfreeze(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, unfreeze_run);
}

/* Routes: reading ------------------------------------------------------------------------------ */

/* The party's accounts as they are (none for a merchant not yet onboarded). */
static enum cf_err accounts_now(struct api *api, struct arena *arena, const char *party,
                                struct api_risk_account *out, size_t *n_out)
{
    uint64_t ids[API_RISK_ACCOUNTS_MAX];
    size_t n = 0;
    const char *detail = NULL;
    enum cf_err err = party_accounts(api, party, ids, &n, &detail);
    if (err == CF_ERR_CONFLICT) {
        *n_out = 0;
        return CF_OK;
    }
    for (size_t i = 0; i < n && err == CF_OK; i++)
        err = account_read(api, arena, ids[i], &out[i]);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

static json_t *freeze_view_json(const char *party, const struct risk_freeze_event *cur,
                                const struct risk_freeze_event *hist, size_t hist_n,
                                const struct api_risk_account *accts, size_t accts_n)
{
    json_t *history = json_array();
    for (size_t i = 0; i < hist_n && history != NULL; i++)
        json_array_append_new(history, event_json(&hist[i], true));
    return json_pack("{s:s,s:b,s:o,s:o,s:o}", "party", party, "frozen", cur != NULL, "freeze",
                     cur != NULL ? event_json(cur, true) : json_null(), "accounts",
                     accounts_json(accts, accts_n), "history", history);
}

static void freeze_get_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *party = req->params[0];
    struct risk_freeze_event *ev = calloc(API_RISK_HISTORY_SHOWN + 1, sizeof(*ev));
    struct api_risk_account *accts =
        arena_calloc(req->arena, API_RISK_ACCOUNTS_MAX, sizeof(*accts));
    size_t accts_n = 0, hist_n = 0;
    enum cf_err err = ev == NULL || accts == NULL ? CF_ERR_NOMEM : CF_OK;
    if (err == CF_OK && api->freeze == NULL)
        err = CF_ERR_CONFIG;
    if (err == CF_OK)
        err = accounts_now(api, req->arena, party, accts, &accts_n);
    enum cf_err cur = err == CF_OK ? risk_freeze_get(api->freeze, party, &ev[0]) : CF_OK;
    if (err == CF_OK && cur != CF_OK && cur != CF_ERR_NOT_FOUND)
        err = cur;
    if (err == CF_OK)
        err = risk_freeze_history(api->freeze, party, &ev[1], API_RISK_HISTORY_SHOWN, &hist_n);
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        cf_best_effort(identity_audit_queue(api->identity, &ctx, api_actor(req),
                                            "staff.risk.freeze_view", party, "ok", NULL));
    }
    json_t *o = err == CF_OK ? freeze_view_json(party, cur == CF_OK ? &ev[0] : NULL, &ev[1], hist_n,
                                                accts, accts_n)
                             : NULL;
    if (ev != NULL)
        hash_wipe(ev, (API_RISK_HISTORY_SHOWN + 1) * sizeof(*ev)); /* reasons */
    free(ev);
    api_risk_object_reply(req, resp, err, NULL, 200, o);
}

enum http_action api_risk_freeze_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, freeze_get_run);
}

static void freezes_list_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    size_t limit = 0, n = 0;
    uint64_t before = 0;
    const char *detail = NULL;
    enum cf_err err = api_risk_page_params(req, RISK_FREEZE_LIST_MAX, "limit: 1 to 100", &limit,
                                           &before, &detail);
    struct risk_freeze_event *ev = err == CF_OK ? calloc(limit, sizeof(*ev)) : NULL;
    if (err == CF_OK && ev == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK)
        err = api->freeze != NULL ? risk_freeze_list(api->freeze, before, ev, limit, &n)
                                  : CF_ERR_CONFIG;
    json_t *data = json_array();
    for (size_t i = 0; i < n && err == CF_OK; i++)
        json_array_append_new(data, event_json(&ev[i], false));
    uint64_t last_row = n > 0 ? ev[n - 1].row : 0;
    free(ev);
    api_risk_page_reply(req, resp, err, detail, data, n, limit, last_row);
}

enum http_action api_risk_freezes_list(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, freezes_list_run);
}
