/*
 * merchants.c - merchant organisations: an admin creates one with its first owner
 * (/v1/admin/merchants); its owners manage its users (/v1/merchant/users); every merchant user
 * reads their merchant (/v1/merchant). Rights are checked by the identity service: a staff
 * user of a merchant gets 403 on owner routes, and another merchant's user ids answer 404.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/ids.h"

/* Reads a required string field, noting its name in *detail on failure. */
static enum cf_err field(json_t *o, const char *key, size_t max, const char **out, size_t *len,
                         const char **detail)
{
    enum cf_err err = api_json_string(o, key, true, max, out, len);
    if (err != CF_OK)
        *detail = key;
    return err;
}

static void merchant_create_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"legal_name", "display_name", "owner", NULL};
    static const char *const owner_fields[] = {"login", "password", "name", NULL};
    struct api *api = req->app;
    json_t *root = NULL, *owner = NULL;
    const char *detail = NULL, *legal = NULL, *display = NULL, *login = NULL, *pw = NULL,
               *name = NULL;
    size_t pw_len = 0;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK)
        err = field(root, "legal_name", IDENTITY_MERCHANT_NAME_BYTES_MAX, &legal, NULL, &detail);
    if (err == CF_OK)
        err =
            field(root, "display_name", IDENTITY_MERCHANT_NAME_BYTES_MAX, &display, NULL, &detail);
    if (err == CF_OK && !json_is_object(owner = json_object_get(root, "owner"))) {
        err = owner == NULL ? CF_ERR_MISSING_FIELD : CF_ERR_INVALID_FIELD;
        detail = "owner";
    }
    if (err == CF_OK)
        err = api_json_fields(owner, owner_fields, &detail);
    if (err == CF_OK)
        err = field(owner, "login", IDENTITY_LOGIN_BYTES_MAX + 16, &login, NULL, &detail);
    if (err == CF_OK)
        err = field(owner, "password", PASSWORD_BYTES_MAX, &pw, &pw_len, &detail);
    if (err == CF_OK)
        err = field(owner, "name", IDENTITY_NAME_BYTES_MAX, &name, NULL, &detail);
    char merchant_id[ID_TEXT_BYTES_MAX], owner_id[ID_TEXT_BYTES_MAX];
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_merchant_create(api->identity, &ctx, api_actor(req), legal, display, login,
                                       pw, pw_len, name, merchant_id, owner_id, &detail);
    }
    char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, d);
        return;
    }
    api_reply_object(req, resp, 201,
                     json_pack("{s:s,s:s}", "merchant_id", merchant_id, "owner_user_id", owner_id));
}

enum http_action api_admin_merchant_create(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_create_run);
}

static const char *right_name(enum identity_merchant_right r)
{
    return r == IDENTITY_MERCHANT_OWNER ? "owner" : "staff";
}

static void merchant_get_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct identity_merchant m;
    enum cf_err err = identity_merchant_of(api->identity, &api_principal(req)->user, &m);
    if (err != CF_OK) {
        api_problem(req, resp, err, err == CF_ERR_FORBIDDEN ? "not a user of any merchant" : NULL);
        return;
    }
    char created[40];
    cf_time_format_rfc3339(m.created_at_us, created, sizeof(created));
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s,s:s,s:s,s:s}", "merchant_id", m.merchant_id, "legal_name",
                               m.legal_name, "display_name", m.display_name, "right",
                               right_name(m.right), "created_at", created));
}

enum http_action api_merchant_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_get_run);
}

static void merchant_users_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct identity_merchant_user *list = calloc(IDENTITY_MERCHANT_USERS_MAX, sizeof(*list));
    size_t n = 0;
    enum cf_err err = list == NULL
                          ? CF_ERR_NOMEM
                          : identity_merchant_users(api->identity, &api_principal(req)->user, list,
                                                    IDENTITY_MERCHANT_USERS_MAX, &n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n && err == CF_OK; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s}", "user_id", list[i].user_id,
                                             "right", right_name(list[i].right), "login",
                                             list[i].login, "name", list[i].name));
    if (list != NULL)
        hash_wipe(list, IDENTITY_MERCHANT_USERS_MAX * sizeof(*list));
    free(list);
    if (err != CF_OK) {
        json_decref(arr);
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200, json_pack("{s:o}", "data", arr));
}

enum http_action api_merchant_users(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_users_run);
}

static void merchant_user_add_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"login", "password", "name", "right", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *login = NULL, *pw = NULL, *name = NULL, *right = NULL;
    size_t pw_len = 0;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK)
        err = field(root, "login", IDENTITY_LOGIN_BYTES_MAX + 16, &login, NULL, &detail);
    if (err == CF_OK)
        err = field(root, "password", PASSWORD_BYTES_MAX, &pw, &pw_len, &detail);
    if (err == CF_OK)
        err = field(root, "name", IDENTITY_NAME_BYTES_MAX, &name, NULL, &detail);
    if (err == CF_OK && (field(root, "right", 8, &right, NULL, &detail) != CF_OK ||
                         (strcmp(right, "owner") != 0 && strcmp(right, "staff") != 0))) {
        err = CF_ERR_INVALID_FIELD;
        detail = "right";
    }
    char user_id[ID_TEXT_BYTES_MAX];
    enum identity_merchant_right r = IDENTITY_MERCHANT_STAFF;
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        r = right[0] == 'o' ? IDENTITY_MERCHANT_OWNER : IDENTITY_MERCHANT_STAFF;
        err = identity_merchant_user_add(api->identity, &ctx, &api_principal(req)->user, login, pw,
                                         pw_len, name, r, user_id, &detail);
    }
    char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, d);
        return;
    }
    api_reply_object(req, resp, 201,
                     json_pack("{s:s,s:s}", "user_id", user_id, "right", right_name(r)));
}

enum http_action api_merchant_user_add(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_user_add_run);
}

static void merchant_user_remove_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    uint64_t uid = 0;
    enum cf_err err = id_parse(ID_PREFIX_USER, req->params[0], strlen(req->params[0]), &uid);
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_merchant_user_remove(api->identity, &ctx, &api_principal(req)->user,
                                            req->params[0]);
    }
    if (err != CF_OK) {
        api_problem(req, resp, err == CF_ERR_INVALID_ID ? CF_ERR_NOT_FOUND : err, NULL);
        return;
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s}", "user_id", req->params[0], "status", "removed"));
}

enum http_action api_merchant_user_remove(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_user_remove_run);
}
