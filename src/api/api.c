/*
 * api.c - the API context, and the authorization applied to every route.
 *
 * Every route declares the roles it admits (routes.c). A request's bearer token is either a
 * session token ("cfs_..."), validated by the identity service, or the operator token, which
 * admits only HTTP_ROLE_BOOTSTRAP routes (creating the first admin). A token that is valid but
 * whose role the route does not admit gets 403; no or a bad token gets 401.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/limits.h"

#define API_POOL_THREADS 4

void api_pay_config_defaults(struct api_pay_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->currencies[0], sizeof(c->currencies[0]), "USD");
    c->currencies_n = 1;
    snprintf(c->default_currency, sizeof(c->default_currency), "USD");
    c->send_fee_bps = 0;
    c->send_fee_fixed_minor = 0;
    c->refund_returns_fee = true;
    c->quote_ttl_s = 60;
    c->qr_ttl_s = 900;
    c->fx_spread_bps = 50;
    c->topup_hold_s = 1800;
}

enum cf_err api_create(struct store *store, struct writer *writer, struct identity *identity,
                       const uint8_t operator_token_hash[HASH_BYTES], struct api **out)
{
    CF_ASSERT(store != NULL && writer != NULL && identity != NULL);
    struct api *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return CF_ERR_NOMEM;
    api->store = store;
    api->writer = writer;
    api->identity = identity;
    memcpy(api->operator_token_hash, operator_token_hash, HASH_BYTES);
    api_pay_config_defaults(&api->pay);
    enum cf_err err = api_inflight_create(&api->inflight);
    if (err == CF_OK)
        err = api_pool_create(API_POOL_THREADS, &api->pool);
    if (err != CF_OK) {
        api_destroy(api);
        return err;
    }
    *out = api;
    return CF_OK;
}

void api_destroy(struct api *api)
{
    if (api == NULL)
        return;
    api_pool_destroy(api->pool);
    api_inflight_destroy(api->inflight);
    hash_wipe(api->operator_token_hash, HASH_BYTES);
    free(api);
}

uint32_t api_role_bit(enum identity_role r)
{
    static const uint32_t bits[IDENTITY_ROLE_COUNT] = {
        [IDENTITY_CUSTOMER] = HTTP_ROLE_CUSTOMER, [IDENTITY_MERCHANT] = HTTP_ROLE_MERCHANT,
        [IDENTITY_SUPPORT] = HTTP_ROLE_SUPPORT,   [IDENTITY_RISK] = HTTP_ROLE_RISK,
        [IDENTITY_ADMIN] = HTTP_ROLE_ADMIN,       [IDENTITY_AUDITOR] = HTTP_ROLE_AUDITOR,
    };
    CF_ASSERT(r >= 0 && r < IDENTITY_ROLE_COUNT);
    return bits[r];
}

void api_ctx(const struct http_request *req, struct identity_ctx *out)
{
    out->ip = req->client_ip;
    out->user_agent = req->user_agent;
}

const char *api_actor(const struct http_request *req)
{
    const struct api_principal *p = api_principal(req);
    if (p == NULL)
        return "anonymous";
    return p->bootstrap ? "operator" : p->user.user_id;
}

/* Staff reading the ledger leave a line too (queued: reads are frequent); the rest of the staff
 * routes write their own lines. */
static void staff_read_audit(struct api *api, struct http_request *req)
{
    if (strncmp(req->path, "/v1/ledger/", 11) != 0 ||
        strcmp(req->route->name, "currencies_list") == 0)
        return; /* the currency list is reference data, not anyone's money */
    char action[AUDIT_ACTION_BYTES_MAX + 1], target[AUDIT_TARGET_BYTES_MAX + 1];
    snprintf(action, sizeof(action), "staff.read.%s", req->route->name);
    snprintf(target, sizeof(target), "%s", req->path);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    cf_best_effort(
        identity_audit_queue(api->identity, &ctx, api_actor(req), action, target, "ok", NULL));
}

static enum cf_err authorize_operator(struct api *api, struct http_request *req, const char *token,
                                      size_t len)
{
    uint8_t digest[HASH_BYTES];
    hash_sha256(token, len, digest);
    if (!hash_equal(digest, api->operator_token_hash, HASH_BYTES))
        return CF_ERR_UNAUTHORIZED;
    if ((req->route->roles & HTTP_ROLE_BOOTSTRAP) == 0)
        return CF_ERR_FORBIDDEN;
    struct api_principal *p = arena_calloc(req->arena, 1, sizeof(*p));
    if (p == NULL)
        return CF_ERR_NOMEM;
    p->bootstrap = true;
    req->principal = p;
    return CF_OK;
}

enum cf_err api_authorize(void *app, struct http_request *req)
{
    struct api *api = app;
    CF_ASSERT(req->route != NULL);
    if (req->route->roles == HTTP_PUBLIC)
        return CF_OK;
    const char *h = req->authorization;
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return CF_ERR_UNAUTHORIZED;
    const char *token = h + 7;
    size_t len = strlen(token);
    if (len == 0 || len > AUTH_TOKEN_BYTES_MAX)
        return CF_ERR_UNAUTHORIZED;
    if (strncmp(token, "cfs_", 4) != 0)
        return authorize_operator(api, req, token, len);
    struct api_principal *p = arena_calloc(req->arena, 1, sizeof(*p));
    if (p == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = identity_authenticate(api->identity, token, len, &p->user);
    if (err != CF_OK)
        return err == CF_ERR_UNAUTHORIZED || err == CF_ERR_NOT_FOUND ? CF_ERR_UNAUTHORIZED : err;
    if ((req->route->roles & api_role_bit(p->user.role)) == 0)
        return CF_ERR_FORBIDDEN;
    req->principal = p;
    if (req->method == HTTP_GET && identity_role_is_staff(p->user.role))
        staff_read_audit(api, req);
    return CF_OK;
}
