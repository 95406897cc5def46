/*
 * auth.c - /v1/auth: registration, sign-in and its second factor, sign-out, password reset;
 * and /v1/bootstrap, the operator token's one power (creating the first admin).
 *
 * Every handler here runs on the worker pool (argon2id and database work block). Bodies are
 * decoded strictly; answers never tell whether a login exists.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/risk_screening.h"
#include "crypto/qrsvg.h"

/* Shared helpers --------------------------------------------------------------------------------
 */

void api_reply_object(struct http_request *req, struct http_response *resp, int status, json_t *obj)
{
    char *text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    size_t len = text != NULL ? strlen(text) : 0;
    char *copy = text != NULL ? arena_strndup(req->arena, text, len) : NULL;
    if (text != NULL) {
        hash_wipe(text, len); /* may hold a token or a secret */
        free(text);
    }
    if (copy == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = copy;
    resp->body_len = len;
}

void api_problem_retry(struct http_request *req, struct http_response *resp, enum cf_err err,
                       const char *detail, int64_t retry_after_s)
{
    api_problem(req, resp, err, detail);
    resp->retry_after_s = retry_after_s;
}

enum cf_err api_json_verification(json_t *root, struct identity_verification *out)
{
    memset(out, 0, sizeof(*out));
    json_t *v = json_object_get(root, "verification");
    if (v == NULL || json_is_null(v))
        return CF_OK;
    if (!json_is_object(v))
        return CF_ERR_INVALID_FIELD;
    static const char *const fields[] = {"challenge_id", "code", NULL};
    const char *detail = NULL;
    enum cf_err err = api_json_fields(v, fields, &detail);
    if (err == CF_OK)
        err = api_json_string(v, "challenge_id", true, ID_TEXT_BYTES_MAX, &out->challenge_id, NULL);
    if (err == CF_OK)
        err = api_json_string(v, "code", true, 32, &out->code, NULL);
    return err == CF_OK ? CF_OK : CF_ERR_INVALID_FIELD;
}

/* Decodes the body as an object with only the allowed fields; answers the problem itself. */
static json_t *body_decode(struct http_request *req, struct http_response *resp,
                           const char *const *fields)
{
    json_t *root = NULL;
    const char *detail = NULL;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK && (err = api_json_fields(root, fields, &detail)) != CF_OK) {
        json_decref(root);
        root = NULL;
    }
    if (err != CF_OK) {
        api_problem(req, resp, err,
                    detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL);
        return NULL;
    }
    return root;
}

/* Reads required string fields in order; answers 400 naming the first bad one. */
static bool strings_get(struct http_request *req, struct http_response *resp, json_t *root,
                        const char *const *keys, const char **out, size_t *lens, size_t n,
                        size_t bytes_max)
{
    for (size_t i = 0; i < n; i++) {
        enum cf_err err = api_json_string(root, keys[i], true, bytes_max, &out[i], &lens[i]);
        if (err != CF_OK) {
            api_problem(req, resp, err, keys[i]);
            return false;
        }
    }
    return true;
}

static void render_sign_in(struct http_request *req, struct http_response *resp, int status,
                           const struct identity_sign_in_result *r)
{
    json_t *o = json_object();
    if (r->mfa_required) {
        json_object_set_new(o, "mfa_required", json_true());
        json_object_set_new(o, "enrolment_required", json_boolean(r->enroll_required));
        json_object_set_new(o, "mfa_token", json_string(r->mfa_token));
        json_object_set_new(o, "methods",
                            r->enroll_required ? json_pack("[s]", "totp")
                                               : json_pack("[s,s]", "totp", "recovery_code"));
    } else {
        char exp[40];
        cf_time_format_rfc3339(r->expires_at_us, exp, sizeof(exp));
        json_object_set_new(o, "mfa_required", json_false());
        json_object_set_new(o, "token", json_string(r->token));
        json_object_set_new(o, "token_type", json_string("Bearer"));
        json_object_set_new(o, "session_id", json_string(r->principal.session_id));
        json_object_set_new(o, "user_id", json_string(r->principal.user_id));
        json_object_set_new(o, "role", json_string(identity_role_name(r->principal.role)));
        json_object_set_new(o, "expires_at", json_string(exp));
    }
    api_reply_object(req, resp, status, o);
}

#define PASSWORD_FIELD_MAX PASSWORD_BYTES_MAX

/* Decodes {"login", "password", "name"} (all required, nothing else) into v and lens; answers
 * the problem itself and returns NULL on a bad body, else the parsed body to free. */
static json_t *credentials_decode(struct http_request *req, struct http_response *resp,
                                  const char *v[3], size_t lens[3])
{
    static const char *const fields[] = {"login", "password", "name", NULL};
    json_t *root = body_decode(req, resp, fields);
    if (root != NULL && !strings_get(req, resp, root, fields, v, lens, 3, PASSWORD_FIELD_MAX)) {
        json_decref(root);
        root = NULL;
    }
    return root;
}

/* Registration -------------------------------------------------------------------------------- */

static void register_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *v[3];
    size_t lens[3];
    json_t *root = credentials_decode(req, resp, v, lens);
    if (root == NULL)
        return;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    char reg_id[ID_TEXT_BYTES_MAX];
    const char *detail = NULL;
    enum cf_err err =
        identity_register(api->identity, &ctx, v[0], v[1], lens[1], v[2], reg_id, &detail);
    json_decref(root);
    if (err != CF_OK) {
        api_problem_retry(req, resp, err, detail, err == CF_ERR_RATE_LIMITED ? 3600 : 0);
        return;
    }
    api_reply_object(req, resp, 202,
                     json_pack("{s:s,s:s}", "registration_id", reg_id, "status",
                               "a code was sent to the login if it can be registered"));
}

enum http_action api_auth_register(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, register_run);
}

/* Decodes a body of fields: the two required strings keys[0..1] (at most bytes_max) into v and
 * lens, and the optional "device" label. Answers the problem itself and returns NULL on a bad
 * body, else the parsed body to free. */
static json_t *pair_and_device_decode(struct http_request *req, struct http_response *resp,
                                      const char *const *fields, const char *const keys[2],
                                      size_t bytes_max, const char *v[2], size_t lens[2],
                                      const char **device)
{
    json_t *root = body_decode(req, resp, fields);
    if (root == NULL)
        return NULL;
    if (!strings_get(req, resp, root, keys, v, lens, 2, bytes_max)) {
        json_decref(root);
        return NULL;
    }
    if (api_json_string(root, "device", false, IDENTITY_DEVICE_BYTES_MAX, device, NULL) != CF_OK) {
        json_decref(root);
        api_problem(req, resp, CF_ERR_INVALID_FIELD, "device");
        return NULL;
    }
    return root;
}

static void register_verify_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"registration_id", "code", "device", NULL};
    static const char *const keys[] = {"registration_id", "code"};
    struct api *api = req->app;
    const char *v[2], *device = NULL;
    size_t lens[2];
    json_t *root = pair_and_device_decode(req, resp, fields, keys, 64, v, lens, &device);
    if (root == NULL)
        return;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    struct identity_sign_in_result r;
    enum cf_err err = identity_register_verify(api->identity, &ctx, v[0], v[1], device, &r);
    json_decref(root);
    if (err == CF_OK) /* sanctions screening of the new customer's name (errors logged there) */
        cf_best_effort(api_risk_screen_party(api, req->arena, r.principal.user_id, NULL, NULL,
                                             NULL, "registration", NULL));
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    render_sign_in(req, resp, 201, &r);
    hash_wipe(&r, sizeof(r));
}

enum http_action api_auth_register_verify(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, register_verify_run);
}

/* Sign-in ------------------------------------------------------------------------------------- */

static void sign_in_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"login", "password", "device", NULL};
    static const char *const keys[] = {"login", "password"};
    struct api *api = req->app;
    const char *v[2], *device = NULL;
    size_t lens[2];
    json_t *root =
        pair_and_device_decode(req, resp, fields, keys, PASSWORD_FIELD_MAX, v, lens, &device);
    if (root == NULL)
        return;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    struct identity_sign_in_result r;
    int64_t retry_s = 0;
    enum cf_err err =
        identity_sign_in(api->identity, &ctx, v[0], v[1], lens[1], device, &r, &retry_s);
    json_decref(root);
    if (err != CF_OK) {
        api_problem_retry(req, resp, err, NULL, retry_s);
        return;
    }
    render_sign_in(req, resp, 200, &r);
    hash_wipe(&r, sizeof(r));
}

enum http_action api_auth_sign_in(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, sign_in_run);
}

static void sign_in_mfa_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"mfa_token", "code", "recovery_code", NULL};
    struct api *api = req->app;
    json_t *root = body_decode(req, resp, fields);
    if (root == NULL)
        return;
    const char *token = NULL, *code = NULL, *recovery = NULL;
    enum cf_err err =
        api_json_string(root, "mfa_token", true, IDENTITY_TOKEN_TEXT_BYTES, &token, NULL);
    if (err == CF_OK)
        err = api_json_string(root, "code", false, 16, &code, NULL);
    if (err == CF_OK)
        err = api_json_string(root, "recovery_code", false, 32, &recovery, NULL);
    if (err == CF_OK && (code == NULL) == (recovery == NULL))
        err = CF_ERR_MISSING_FIELD;
    if (err != CF_OK) {
        json_decref(root);
        api_problem(req, resp, err, "give mfa_token and exactly one of code, recovery_code");
        return;
    }
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    struct identity_sign_in_result r;
    char codes[IDENTITY_RECOVERY_CODES][IDENTITY_RECOVERY_CODE_BYTES];
    size_t codes_n = 0;
    err = identity_sign_in_mfa(api->identity, &ctx, token, code, recovery, &r, codes, &codes_n);
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    if (codes_n == 0) {
        render_sign_in(req, resp, 200, &r);
    } else {
        /* first sign-in of a staff member: the session and the recovery codes, shown once */
        char exp[40];
        cf_time_format_rfc3339(r.expires_at_us, exp, sizeof(exp));
        json_t *list = json_array();
        for (size_t i = 0; i < codes_n; i++)
            json_array_append_new(list, json_string(codes[i]));
        api_reply_object(req, resp, 200,
                         json_pack("{s:b,s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "mfa_required", 0, "token",
                                   r.token, "token_type", "Bearer", "session_id",
                                   r.principal.session_id, "user_id", r.principal.user_id, "role",
                                   identity_role_name(r.principal.role), "expires_at", exp,
                                   "recovery_codes", list));
    }
    hash_wipe(codes, sizeof(codes));
    hash_wipe(&r, sizeof(r));
}

enum http_action api_auth_sign_in_mfa(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, sign_in_mfa_run);
}

/* Answers TOTP enrolment material with its otpauth URI and QR code. */
void api_reply_enrolment(struct http_request *req, struct http_response *resp,
                         const struct identity_totp_enrolment *e)
{
    struct buf svg;
    buf_init(&svg, req->arena, 256 * 1024);
    if (qrsvg_render(e->uri, strlen(e->uri), &svg) != CF_OK || !buf_ok(&svg)) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s,s:s%,s:s,s:i,s:i}", "secret", e->secret_b32, "otpauth_uri",
                               e->uri, "qr_svg", svg.data, svg.len, "algorithm", "SHA1", "digits",
                               TOTP_DIGITS, "period", TOTP_STEP_S));
}

static void sign_in_enroll_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"mfa_token", NULL};
    struct api *api = req->app;
    json_t *root = body_decode(req, resp, fields);
    if (root == NULL)
        return;
    const char *token = NULL;
    if (api_json_string(root, "mfa_token", true, IDENTITY_TOKEN_TEXT_BYTES, &token, NULL) !=
        CF_OK) {
        json_decref(root);
        api_problem(req, resp, CF_ERR_MISSING_FIELD, "mfa_token");
        return;
    }
    struct identity_totp_enrolment e;
    enum cf_err err = identity_enroll_begin(api->identity, token, &e);
    json_decref(root);
    if (err != CF_OK)
        api_problem(req, resp, err, NULL);
    else
        api_reply_enrolment(req, resp, &e);
    hash_wipe(&e, sizeof(e));
}

enum http_action api_auth_sign_in_enroll(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, sign_in_enroll_run);
}

static void sign_out_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    enum cf_err err = identity_sign_out(api->identity, &ctx, &api_principal(req)->user);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200, json_pack("{s:s}", "status", "signed out"));
}

enum http_action api_auth_sign_out(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, sign_out_run);
}

/* Password reset --------------------------------------------------------------------------------
 */

static void reset_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"login", NULL};
    struct api *api = req->app;
    json_t *root = body_decode(req, resp, fields);
    if (root == NULL)
        return;
    const char *login = NULL;
    if (api_json_string(root, "login", true, IDENTITY_LOGIN_BYTES_MAX + 16, &login, NULL) !=
        CF_OK) {
        json_decref(root);
        api_problem(req, resp, CF_ERR_INVALID_FIELD, "login");
        return;
    }
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    char reset_id[ID_TEXT_BYTES_MAX];
    enum cf_err err = identity_reset_start(api->identity, &ctx, login, reset_id);
    json_decref(root);
    if (err != CF_OK) {
        api_problem_retry(req, resp, err, err == CF_ERR_INVALID_FIELD ? "login" : NULL,
                          err == CF_ERR_RATE_LIMITED ? 3600 : 0);
        return;
    }
    api_reply_object(req, resp, 202,
                     json_pack("{s:s,s:s}", "reset_id", reset_id, "status",
                               "a code was sent to the login if it has an account"));
}

enum http_action api_auth_reset(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, reset_run);
}

static void reset_confirm_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"reset_id", "code", "new_password", NULL};
    struct api *api = req->app;
    json_t *root = body_decode(req, resp, fields);
    if (root == NULL)
        return;
    static const char *const keys[] = {"reset_id", "code", "new_password"};
    const char *v[3];
    size_t lens[3];
    if (!strings_get(req, resp, root, keys, v, lens, 3, PASSWORD_FIELD_MAX)) {
        json_decref(root);
        return;
    }
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    const char *detail = NULL;
    enum cf_err err =
        identity_reset_confirm(api->identity, &ctx, v[0], v[1], v[2], lens[2], &detail);
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, detail);
        return;
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:s}", "status", "password changed; every session ended"));
}

enum http_action api_auth_reset_confirm(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, reset_confirm_run);
}

/* Bootstrap ------------------------------------------------------------------------------------ */

static void bootstrap_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *v[3];
    size_t lens[3];
    json_t *root = credentials_decode(req, resp, v, lens);
    if (root == NULL)
        return;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    char user_id[ID_TEXT_BYTES_MAX];
    const char *detail = NULL;
    enum cf_err err =
        identity_bootstrap_admin(api->identity, &ctx, v[0], v[1], lens[1], v[2], user_id, &detail);
    json_decref(root);
    if (err != CF_OK) {
        api_problem(req, resp, err, detail);
        return;
    }
    api_reply_object(req, resp, 201,
                     json_pack("{s:s,s:s,s:s}", "user_id", user_id, "role", "admin", "next",
                               "sign in; the first sign-in enrols an authenticator (TOTP)"));
}

enum http_action api_bootstrap(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, bootstrap_run);
}
