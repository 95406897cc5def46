/*
 * admin.c - staff routes: creating staff, changing roles, looking a user up, the development
 * outbox, and the audit log for auditors. Every staff action is written to the audit log.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/ids.h"

#define OUTBOX_LIMIT_DEFAULT 20

static void staff_create_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"login", "password", "name", "role", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *login = NULL, *pw = NULL, *name = NULL, *role_text = NULL;
    size_t pw_len = 0;
    enum identity_role role = IDENTITY_CUSTOMER;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && (err = api_json_string(root, "login", true, IDENTITY_LOGIN_BYTES_MAX + 16,
                                               &login, NULL)) != CF_OK)
        detail = "login";
    if (err == CF_OK &&
        (err = api_json_string(root, "password", true, PASSWORD_BYTES_MAX, &pw, &pw_len)) != CF_OK)
        detail = "password";
    if (err == CF_OK &&
        (err = api_json_string(root, "name", true, IDENTITY_NAME_BYTES_MAX, &name, NULL)) != CF_OK)
        detail = "name";
    if (err == CF_OK && (api_json_string(root, "role", true, 16, &role_text, NULL) != CF_OK ||
                         identity_role_parse(role_text, &role) != CF_OK)) {
        err = CF_ERR_INVALID_FIELD;
        detail = "role";
    }
    char user_id[ID_TEXT_BYTES_MAX];
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_staff_create(api->identity, &ctx, api_actor(req), login, pw, pw_len, name,
                                    role, user_id, &detail);
    }
    char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, d);
        return;
    }
    api_reply_object(req, resp, 201,
                     json_pack("{s:s,s:s,s:s}", "user_id", user_id, "role",
                               identity_role_name(role), "next",
                               "the first sign-in enrols an authenticator (TOTP)"));
}

enum http_action api_admin_staff_create(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, staff_create_run);
}

static void role_set_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"role", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *role_text = NULL;
    enum identity_role role = IDENTITY_CUSTOMER;
    uint64_t uid = 0;
    enum cf_err err = id_parse(ID_PREFIX_USER, req->params[0], strlen(req->params[0]), &uid);
    if (err != CF_OK) {
        api_problem(req, resp, CF_ERR_NOT_FOUND, NULL);
        return;
    }
    err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && (api_json_string(root, "role", true, 16, &role_text, NULL) != CF_OK ||
                         identity_role_parse(role_text, &role) != CF_OK)) {
        err = CF_ERR_INVALID_FIELD;
        detail = "role";
    }
    if (err == CF_OK && strcmp(req->params[0], api_principal(req)->user.user_id) == 0) {
        err = CF_ERR_CONFLICT; /* an admin cannot demote themself and lock everyone out */
        detail = "an admin cannot change their own role";
    }
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_role_set(api->identity, &ctx, api_actor(req), req->params[0], role);
    }
    char *d = detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, d);
        return;
    }
    api_reply_object(
        req, resp, 200,
        json_pack("{s:s,s:s}", "user_id", req->params[0], "role", identity_role_name(role)));
}

enum http_action api_admin_role_set(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, role_set_run);
}

static void user_get_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    uint64_t uid = 0;
    struct identity_profile p;
    enum cf_err err = id_parse(ID_PREFIX_USER, req->params[0], strlen(req->params[0]), &uid);
    if (err == CF_OK)
        err = identity_profile_get(api->identity, req->params[0], &p);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), "staff.user_view",
                                  req->params[0], err == CF_OK ? "ok" : "failed", NULL));
    if (err != CF_OK) {
        api_problem(req, resp, err == CF_ERR_INVALID_ID ? CF_ERR_NOT_FOUND : err, NULL);
        return;
    }
    char created[40];
    cf_time_format_rfc3339(p.created_at_us, created, sizeof(created));
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s,s:s,s:s,s:b,s:b,s:s}", "user_id", p.user_id, "role",
                               identity_role_name(p.role), "login", p.login, "name", p.name,
                               "totp_enabled", p.totp_enabled, "closed", p.closed, "created_at",
                               created));
    hash_wipe(&p, sizeof(p));
}

enum http_action api_admin_user_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, user_get_run);
}

/* The development outbox: what the built-in notifier "sent" to one address. */
static void outbox_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *to = http_request_query(req, "to");
    char norm[IDENTITY_LOGIN_BYTES_MAX + 1];
    if (to == NULL || identity_login_normalize(to, norm, sizeof(norm), NULL) != CF_OK) {
        api_problem(req, resp, CF_ERR_INVALID_FIELD, "to");
        return;
    }
    struct notifier_outbox_item *items = calloc(OUTBOX_LIMIT_DEFAULT, sizeof(*items));
    size_t n = 0;
    enum cf_err err = items == NULL ? CF_ERR_NOMEM
                                    : notifier_outbox_list(identity_notifier(api->identity), norm,
                                                           OUTBOX_LIMIT_DEFAULT, items, &n);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), "staff.outbox_read", "",
                                  err == CF_OK ? "ok" : "failed", NULL));
    if (err != CF_OK) {
        free(items);
        api_problem(req, resp, err, NULL);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char at[40];
        cf_time_format_rfc3339(items[i].at_us, at, sizeof(at));
        json_array_append_new(
            arr, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)items[i].id, "at", at,
                           "channel", items[i].channel == NOTIFIER_EMAIL ? "email" : "sms", "to",
                           items[i].to, "subject", items[i].subject, "body", items[i].body));
    }
    hash_wipe(items, OUTBOX_LIMIT_DEFAULT * sizeof(*items));
    free(items);
    api_reply_object(req, resp, 200, json_pack("{s:o}", "data", arr));
}

enum http_action api_admin_outbox(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, outbox_run);
}

/* The audit log -----------------------------------------------------------------------------------
 */

static enum cf_err time_param(struct http_request *req, const char *name, int64_t *out_us)
{
    const char *v = http_request_query(req, name);
    if (v == NULL)
        return CF_OK;
    char *end = NULL;
    long long s = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || s < 0 || s > 253402300799LL) /* up to year 9999 */
        return CF_ERR_INVALID_FIELD;
    *out_us = (int64_t)s * 1000000;
    return CF_OK;
}

static enum cf_err audit_filter_read(struct http_request *req, struct audit_filter *f,
                                     const char **detail)
{
    memset(f, 0, sizeof(*f));
    size_t limit = 0;
    uint64_t after = 0;
    bool has_cursor = false;
    enum cf_err err = api_page_params(req, &limit, &after, &has_cursor);
    if (err != CF_OK)
        return err;
    f->limit = limit > AUDIT_PAGE_MAX ? AUDIT_PAGE_MAX : limit;
    f->after_seq = has_cursor ? after : 0;
    f->actor = http_request_query(req, "actor");
    f->action = http_request_query(req, "action");
    f->target = http_request_query(req, "target");
    f->outcome = http_request_query(req, "outcome");
    const char *checks[] = {f->actor, f->action, f->target, f->outcome};
    static const char *const names[] = {"actor", "action", "target", "outcome"};
    for (size_t i = 0; i < 4; i++) {
        if (checks[i] != NULL && strlen(checks[i]) > AUDIT_TARGET_BYTES_MAX) {
            *detail = names[i];
            return CF_ERR_INVALID_FIELD;
        }
    }
    *detail = "from";
    if ((err = time_param(req, "from", &f->from_us)) != CF_OK)
        return err;
    *detail = "to";
    if ((err = time_param(req, "to", &f->to_us)) != CF_OK)
        return err;
    *detail = NULL;
    return CF_OK;
}

static json_t *audit_record_json(const struct audit_record *r)
{
    char at[40], h[HASH_HEX_BYTES];
    cf_time_format_rfc3339(r->at_us, at, sizeof(at));
    hash_hex(r->hash, HASH_BYTES, h);
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "seq", (json_int_t)r->seq, "at",
                     at, "actor", r->actor, "action", r->action, "target", r->target, "ip", r->ip,
                     "user_agent", r->user_agent, "outcome", r->outcome, "detail", r->detail,
                     "hash", h);
}

static void audit_list_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct audit_filter f;
    const char *detail = NULL;
    enum cf_err err = audit_filter_read(req, &f, &detail);
    struct audit_record *recs = NULL;
    size_t n = 0;
    if (err == CF_OK && (recs = calloc(f.limit, sizeof(*recs))) == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK)
        err = identity_audit_list(api->identity, &f, recs, &n);
    if (err != CF_OK) {
        free(recs);
        api_problem(req, resp, err, detail);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, audit_record_json(&recs[i]));
    json_t *o = json_pack("{s:o}", "data", arr);
    if (n == f.limit && n > 0) {
        char cursor[ID_TEXT_BYTES_MAX];
        cursor_format(recs[n - 1].seq, cursor);
        json_object_set_new(o, "next_cursor", json_string(cursor));
    } else {
        json_object_set_new(o, "next_cursor", json_null());
    }
    free(recs);
    api_reply_object(req, resp, 200, o);
}

enum http_action api_audit_list(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, audit_list_run);
}
