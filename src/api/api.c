/* api.c - the API context and the bearer-token check applied to every route. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/limits.h"

enum cf_err api_create(struct store *store, struct writer *writer,
                       const uint8_t operator_token_hash[HASH_BYTES], struct api **out)
{
    CF_ASSERT(store != NULL && writer != NULL);
    struct api *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return CF_ERR_NOMEM;
    api->store = store;
    api->writer = writer;
    memcpy(api->operator_token_hash, operator_token_hash, HASH_BYTES);
    enum cf_err err = api_inflight_create(&api->inflight);
    if (err != CF_OK) {
        free(api);
        return err;
    }
    *out = api;
    return CF_OK;
}

void api_destroy(struct api *api)
{
    if (api == NULL)
        return;
    api_inflight_destroy(api->inflight);
    hash_wipe(api->operator_token_hash, HASH_BYTES);
    free(api);
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
    uint8_t digest[HASH_BYTES];
    hash_sha256(token, len, digest);
    if (!hash_equal(digest, api->operator_token_hash, HASH_BYTES))
        return CF_ERR_UNAUTHORIZED;
    return CF_OK;
}
