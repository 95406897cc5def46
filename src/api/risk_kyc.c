/*
 * risk_kyc.c - the KYC routes and the payment path's tier check; see risk_kyc.h.
 *
 * Every route runs on a worker (api_offload): the store's transactions and identity's profile
 * reads block. Documents are decoded and sealed in memory from malloc (not the request's arena,
 * which already holds the body), wiped and freed before the answer; a document read by staff is
 * copied into the arena as the answer's body.
 */
#include "api/risk_kyc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/pay.h"
#include "api/risk_common.h"
#include "api/risk_monitor.h"
#include "api/risk_screening.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"

/* The longest base64 text a document of RISK_KYC_DOC_BYTES_MAX takes. */
#define DOC_BASE64_BYTES_MAX (4 * ((RISK_KYC_DOC_BYTES_MAX + 2) / 3))
/* "event <id> submission <id>" */
#define AUDIT_DETAIL_BYTES (32 + 2 * RISK_KYC_ID_BYTES_MAX)
/* What a customer whose tier staff lowered reads when staff gave no reason for them. */
#define LOWERED_DEFAULT                                                                            \
    "Your verification level was lowered. Please check your details and verify again."
#define API_KYC_LOWERED_EVENTS 20 /* newest events the customer's view looks at for a lowering */
#define REJECTED_DEFAULT                                                                           \
    "Your identity check was not approved. Please check your details and documents, then submit "  \
    "again."
#define ID_HINT_BYTES 16 /* "***" and the ID number's last 3 characters */

/* The payment path ------------------------------------------------------------------------------
 */

enum cf_err api_kyc_check(struct api *api, const char *user_id, const char *feature,
                          int64_t amount_minor, const char *currency, int *tier_out,
                          struct risk_kyc_limit *limit_out)
{
    CF_ASSERT(api != NULL && user_id != NULL && feature != NULL);
    CF_ASSERT(tier_out != NULL && limit_out != NULL);
    uint32_t f = 0;
    enum cf_err err = risk_kyc_feature_parse(feature, &f);
    CF_ASSERT(err == CF_OK); /* the caller names one of the features: a constant */
    if (api->kyc == NULL)
        return CF_ERR_CONFIG;
    int tier = 0;
    struct risk_kyc_limit l;
    const struct risk_kyc_config *cfg = risk_kyc_config_of(api->kyc);
    if ((err = risk_kyc_tier_get(api->kyc, user_id, &tier)) != CF_OK ||
        (err = risk_kyc_limits_for(cfg, tier, currency, &l)) != CF_OK)
        return err;
    *tier_out = tier;
    *limit_out = l;
    if (!risk_kyc_feature_open(cfg, tier, f))
        return CF_ERR_FORBIDDEN;
    if (amount_minor > 0 && !risk_kyc_within(amount_minor, l.max_single_minor))
        return CF_ERR_FORBIDDEN;
    return CF_OK;
}

enum cf_err api_kyc_home_country(struct api *api, const char *user_id,
                                 char country[RISK_KYC_COUNTRY_BYTES])
{
    CF_ASSERT(api != NULL && user_id != NULL && country != NULL);
    country[0] = '\0';
    if (api->kyc == NULL)
        return CF_OK;
    struct risk_kyc_view *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = risk_kyc_view_get(api->kyc, user_id, false, v);
    const struct risk_kyc_submission *s = !v->has_latest ? &v->current : &v->latest;
    if (err == CF_OK && (v->has_latest || v->has_current) && s->has_details)
        memcpy(country, s->details.country, RISK_KYC_COUNTRY_BYTES);
    hash_wipe(v, sizeof(*v)); /* the details were opened: names, numbers, dates */
    free(v);
    return err;
}

const char *api_kyc_refusal_detail(struct api *api, const char *feature, int tier,
                                   int64_t amount_minor, const struct risk_kyc_limit *limit)
{
    CF_ASSERT(api != NULL && feature != NULL && limit != NULL);
    uint32_t f = 0;
    bool open = api->kyc != NULL && risk_kyc_feature_parse(feature, &f) == CF_OK &&
                risk_kyc_feature_open(risk_kyc_config_of(api->kyc), tier, f);
    if (!open)
        return "kyc: this is not open at your verification tier; GET /v1/me/kyc shows what is "
               "and how to verify further";
    if (amount_minor > 0 && !risk_kyc_within(amount_minor, limit->max_single_minor))
        return "amount_minor: above the largest single amount at your verification tier; "
               "GET /v1/me/kyc shows the limits";
    return NULL;
}

/* People ------------------------------------------------------------------------------------- */

/* Whether user_id is a customer with a verified phone: their login is a phone number (logins
 * are verified by a code when set). *customer_out (may be NULL): whether it is a customer. */
static enum cf_err person_read(struct api *api, const char *user_id, bool *customer_out,
                               bool *phone_out, char login_out[IDENTITY_LOGIN_BYTES_MAX + 1])
{
    struct identity_profile *p = malloc(sizeof(*p));
    if (p == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = identity_profile_get(api->identity, user_id, p);
    if (err == CF_ERR_NOT_FOUND || err == CF_ERR_INVALID_ID || err == CF_ERR_INVALID_FIELD) {
        err = CF_OK;
        p->role = IDENTITY_MERCHANT; /* not a customer */
        p->login[0] = '\0';
        p->closed = true;
    }
    if (err == CF_OK) {
        bool customer = p->role == IDENTITY_CUSTOMER;
        if (customer_out != NULL)
            *customer_out = customer;
        *phone_out = customer && !p->closed && p->login[0] == '+';
        if (login_out != NULL)
            snprintf(login_out, IDENTITY_LOGIN_BYTES_MAX + 1, "%s", customer ? p->login : "");
    }
    hash_wipe(p, sizeof(*p));
    free(p);
    return err;
}

/* The staff routes' {user_id}: CF_ERR_NOT_FOUND unless it is a customer. */
static enum cf_err customer_target(struct api *api, const char *user_id)
{
    bool customer = false, phone = false;
    enum cf_err err =
        api->kyc == NULL ? CF_ERR_CONFIG : person_read(api, user_id, &customer, &phone, NULL);
    return err == CF_OK && !customer ? CF_ERR_NOT_FOUND : err;
}

/* JSON --------------------------------------------------------------------------------------- */

static json_t *amount_json(int64_t v)
{
    return v == RISK_KYC_UNLIMITED ? json_null() : json_integer(v);
}

static json_t *text_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *limit_json(const char *currency, const struct risk_kyc_limit *l)
{
    return json_pack("{s:s,s:o,s:o,s:o,s:o}", "currency", currency, "max_balance_minor",
                     amount_json(l->max_balance_minor), "max_single_minor",
                     amount_json(l->max_single_minor), "daily_out_minor",
                     amount_json(l->daily_out_minor), "monthly_out_minor",
                     amount_json(l->monthly_out_minor));
}

/* The tier's limits in every currency on offer (null: no limit) and its features. */
static enum cf_err tier_json(struct api *api, int tier, json_t *o)
{
    const struct risk_kyc_config *cfg = risk_kyc_config_of(api->kyc);
    json_t *limits = json_array(), *features = json_array();
    enum cf_err err = limits == NULL || features == NULL ? CF_ERR_NOMEM : CF_OK;
    for (size_t i = 0; i < api->pay.currencies_n && err == CF_OK; i++) {
        struct risk_kyc_limit l;
        const char *cur = api->pay.currencies[i];
        if ((err = risk_kyc_limits_for(cfg, tier, cur, &l)) == CF_OK)
            json_array_append_new(limits, limit_json(cur, &l));
    }
    for (size_t i = 0; i < RISK_KYC_FEATURES_N && err == CF_OK; i++) {
        if (risk_kyc_feature_open(cfg, tier, 1u << i))
            json_array_append_new(features, json_string(risk_kyc_feature_name(1u << i)));
    }
    if (err == CF_OK) {
        json_object_set_new(o, "limits", limits);
        json_object_set_new(o, "features", features);
        return CF_OK;
    }
    json_decref(limits);
    json_decref(features);
    return err;
}

/* Details: the customer sees the ID number's last 3 characters only; staff see it all. */
static json_t *details_json(const struct risk_kyc_details *d, bool staff)
{
    char hint[ID_HINT_BYTES];
    size_t n = strlen(d->id_number);
    snprintf(hint, sizeof(hint), "***%s", n > 3 ? d->id_number + n - 3 : "");
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s}", "legal_name", d->legal_name, "id_type",
                     risk_kyc_doc_kind_name(d->id_type), staff ? "id_number" : "id_number_hint",
                     staff ? d->id_number : hint, "date_of_birth", d->date_of_birth, "nationality",
                     text_or_null(d->nationality), "country", d->country);
}

static json_t *document_json(const struct risk_kyc_document *d)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:o}", "id", d->id, "submission_id", d->submission_id,
                     "kind", risk_kyc_doc_kind_name(d->kind), "content_type",
                     risk_kyc_content_name(d->content), "size_bytes", (json_int_t)d->size_bytes,
                     "created_at", api_risk_time_json(d->at_us));
}

/* A submission; staff see who decided and the staff reason too. */
static json_t *submission_json(const struct risk_kyc_submission *s,
                               const struct risk_kyc_document *docs, size_t docs_n, bool staff)
{
    json_t *o = json_pack("{s:s,s:s,s:o,s:o,s:o,s:I}", "id", s->id, "state",
                          risk_kyc_state_name(s->state), "created_at", api_risk_time_json(s->created_at_us),
                          "submitted_at", api_risk_time_json(s->submitted_at_us), "decided_at",
                          api_risk_time_json(s->decided_at_us), "documents_n", (json_int_t)s->documents_n);
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "details",
                        s->has_details ? details_json(&s->details, staff) : json_null());
    if (docs != NULL) {
        json_t *arr = json_array();
        for (size_t i = 0; i < docs_n && arr != NULL; i++)
            json_array_append_new(arr, document_json(&docs[i]));
        json_object_set_new(o, "documents", arr);
    }
    if (staff) {
        json_object_set_new(o, "user_id", json_string(s->user_id));
        json_object_set_new(o, "decided_by", text_or_null(s->decided_by));
        json_object_set_new(o, "reason", text_or_null(s->reason));
        json_object_set_new(o, "customer_reason", text_or_null(s->customer_reason));
    }
    return o;
}

/* What the customer is told about their latest submission's outcome. */
static const char *customer_reason(const struct risk_kyc_view *v)
{
    if (!v->has_latest)
        return NULL;
    if (v->latest.state == RISK_KYC_REJECTED)
        return v->latest.customer_reason[0] != '\0' ? v->latest.customer_reason : REJECTED_DEFAULT;
    if (v->latest.state == RISK_KYC_APPROVED && v->latest.customer_reason[0] != '\0')
        return v->latest.customer_reason;
    return NULL;
}

/* The customer's view: GET /v1/me/kyc and the answers of details and submit. */
static json_t *me_json(struct api *api, const struct risk_kyc_view *v, bool phone)
{
    json_t *o = json_pack("{s:i,s:s,s:b,s:o,s:o,s:o}", "tier", v->tier, "state",
                          risk_kyc_state_name(v->state), "phone_verified", phone, "reason",
                          text_or_null(customer_reason(v)), "submitted_at",
                          api_risk_time_json(v->has_latest ? v->latest.submitted_at_us : 0), "decided_at",
                          api_risk_time_json(v->has_latest ? v->latest.decided_at_us : 0));
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "submission",
                        v->has_current
                            ? submission_json(&v->current, v->documents, v->documents_n, false)
                            : json_null());
    if (tier_json(api, v->tier, o) != CF_OK) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *event_json(const struct risk_kyc_event *e, bool staff)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:s,s:o}", "id", e->id, "type",
                          risk_kyc_event_name(e->kind), "submission_id", e->submission_id, "tier",
                          e->tier, "by", e->by, "at", api_risk_time_json(e->at_us));
    if (o == NULL)
        return NULL;
    if (e->document_id[0] != '\0')
        json_object_set_new(o, "document_id", json_string(e->document_id));
    if (e->kind == RISK_KYC_EVENT_APPROVE || e->kind == RISK_KYC_EVENT_REJECT ||
        e->kind == RISK_KYC_EVENT_LOWER) {
        if (staff)
            json_object_set_new(o, "reason", text_or_null(e->reason));
        json_object_set_new(o, "customer_reason", text_or_null(e->customer_reason));
    }
    return o;
}

/* The customer's answer -------------------------------------------------------------------------
 */

/* The staff's latest lowering of the customer's tier not followed by an approval, as
 * {at, reason} (the customer-facing reason, or a default): null when there is none. Looks at
 * the newest API_KYC_LOWERED_EVENTS events. */
static json_t *lowered_json(struct api *api, const char *me)
{
    struct risk_kyc_event *hist = calloc(API_KYC_LOWERED_EVENTS, sizeof(*hist));
    size_t n = 0;
    json_t *o = json_null();
    if (hist == NULL ||
        risk_kyc_history(api->kyc, me, false, hist, API_KYC_LOWERED_EVENTS, &n) != CF_OK)
        n = 0; /* the view goes on without it */
    for (size_t i = 0; i < n && hist[i].kind != RISK_KYC_EVENT_APPROVE; i++) {
        if (hist[i].kind != RISK_KYC_EVENT_LOWER)
            continue;
        json_decref(o);
        o = json_pack("{s:o,s:s}", "at", api_risk_time_json(hist[i].at_us), "reason",
                      hist[i].customer_reason[0] != '\0' ? hist[i].customer_reason
                                                         : LOWERED_DEFAULT);
        break;
    }
    if (hist != NULL)
        hash_wipe(hist, API_KYC_LOWERED_EVENTS * sizeof(*hist));
    free(hist);
    return o;
}

/* Answers the customer's view (status 200), raising a tier-0 customer whose phone is verified
 * and whose details are given (risk_kyc_tier_refresh) first. phone_known: whether their phone
 * is verified, when the caller read it already; NULL reads it. */
static void me_reply(struct http_request *req, struct http_response *resp, const bool *phone_known)
{
    struct api *api = req->app;
    const char *me = api_pay_me_id(req);
    bool phone = phone_known != NULL && *phone_known;
    int tier = 0;
    struct risk_kyc_view *v = malloc(sizeof(*v));
    enum cf_err err = v == NULL             ? CF_ERR_NOMEM
                      : phone_known != NULL ? CF_OK
                                            : person_read(api, me, NULL, &phone, NULL);
    if (err == CF_OK)
        err = risk_kyc_tier_refresh(api->kyc, me, phone, api_pay_now_us(), &tier, NULL);
    if (err == CF_OK)
        err = risk_kyc_view_get(api->kyc, me, false, v);
    json_t *o = err == CF_OK ? me_json(api, v, phone) : NULL;
    if (o != NULL)
        json_object_set_new(o, "lowered", lowered_json(api, me));
    if (v != NULL)
        hash_wipe(v, sizeof(*v));
    free(v);
    api_risk_object_reply(req, resp, err, NULL, 200, o);
}

static void me_kyc_run(struct http_request *req, struct http_response *resp)
{
    if (((struct api *)req->app)->kyc == NULL) {
        api_problem(req, resp, CF_ERR_CONFIG, NULL);
        return;
    }
    me_reply(req, resp, NULL);
}

enum http_action api_me_kyc(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_kyc_run);
}

/* Details ------------------------------------------------------------------------------------ */

/* A required string field into dst (dst_bytes); *detail names it when missing or too long. */
static enum cf_err field_copy(json_t *root, const char *key, bool required, char *dst,
                              size_t dst_bytes, const char **detail)
{
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_string(root, key, required, dst_bytes - 1, &s, &n);
    if (err != CF_OK) {
        *detail = key;
        return err;
    }
    if (s != NULL) {
        memcpy(dst, s, n);
        dst[n] = '\0';
    }
    return CF_OK;
}

static enum cf_err details_decode(struct http_request *req, struct risk_kyc_details *d,
                                  const char **detail)
{
    static const char *const fields[] = {"legal_name", "id_type",     "id_number", "date_of_birth",
                                         "country",    "nationality", NULL};
    json_t *root = NULL;
    char id_type[24] = "";
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, detail);
    if (err == CF_OK)
        err = field_copy(root, "legal_name", true, d->legal_name, sizeof(d->legal_name), detail);
    if (err == CF_OK)
        err = field_copy(root, "id_type", true, id_type, sizeof(id_type), detail);
    if (err == CF_OK)
        err = field_copy(root, "id_number", true, d->id_number, sizeof(d->id_number), detail);
    if (err == CF_OK)
        err = field_copy(root, "date_of_birth", true, d->date_of_birth, sizeof(d->date_of_birth),
                         detail);
    if (err == CF_OK)
        err = field_copy(root, "country", true, d->country, sizeof(d->country), detail);
    if (err == CF_OK)
        err =
            field_copy(root, "nationality", false, d->nationality, sizeof(d->nationality), detail);
    if (err == CF_OK && (risk_kyc_doc_kind_parse(id_type, &d->id_type) != CF_OK ||
                         !risk_kyc_doc_kind_is_identity(d->id_type))) {
        *detail = "id_type: passport, id_card or driving_licence";
        err = CF_ERR_INVALID_FIELD;
    }
    *detail = api_detail_keep(req, *detail); /* it may point into root */
    json_decref(root);
    return err;
}

static void details_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *me = api_pay_me_id(req), *detail = NULL;
    bool phone = false;
    int tier = 0;
    struct risk_kyc_details *d = calloc(1, sizeof(*d));
    struct risk_kyc_submission *draft = malloc(sizeof(*draft));
    enum cf_err err = d == NULL || draft == NULL ? CF_ERR_NOMEM
                      : api->kyc == NULL         ? CF_ERR_CONFIG
                                                 : details_decode(req, d, &detail);
    if (err == CF_OK)
        err = person_read(api, me, NULL, &phone, NULL);
    if (err == CF_OK)
        err = risk_kyc_details_put(api->kyc, me, d, phone, api_pay_now_us(), draft, &tier, &detail);
    if (err == CF_OK)
        api_risk_monitor_forget(api, me); /* a new country of residence, perhaps */
    if (err == CF_OK) /* the legal name, date of birth and nationality against the watchlists */
        cf_best_effort(api_risk_screen_party(api, req->arena, me, d->legal_name, d->date_of_birth,
                                             d->nationality[0] != '\0' ? d->nationality
                                                                       : d->country,
                                             "kyc", NULL));
    if (d != NULL)
        hash_wipe(d, sizeof(*d));
    free(d);
    free(draft);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    me_reply(req, resp, &phone); /* identity was read above: not twice */
}

enum http_action api_me_kyc_details(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, details_run);
}

/* Documents ---------------------------------------------------------------------------------- */

/* A document request: its kind and content type parsed, its content decoded (malloc'd). */
struct doc_body {
    uint8_t kind;
    uint8_t content;
    uint8_t *bytes;
    size_t n;
};

static enum cf_err doc_content_decode(json_t *root, struct doc_body *b, const char **detail)
{
    json_t *v = json_object_get(root, "content");
    if (v == NULL || json_is_null(v)) {
        *detail = "content";
        return CF_ERR_MISSING_FIELD;
    }
    if (!json_is_string(v)) {
        *detail = "content: a string of base64";
        return CF_ERR_INVALID_FIELD;
    }
    size_t len = json_string_length(v);
    if (len > DOC_BASE64_BYTES_MAX) {
        *detail = "content: at most 4 MiB once decoded";
        return CF_ERR_PAYLOAD_TOO_LARGE;
    }
    b->bytes = malloc(len / 4 * 3 + 1);
    if (b->bytes == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err =
        risk_kyc_base64_decode(json_string_value(v), len, b->bytes, len / 4 * 3, &b->n);
    if (err == CF_ERR_INVALID_FIELD)
        *detail = "content: standard base64 (A-Z a-z 0-9 + /), padded with =, no line breaks";
    else if (err == CF_ERR_PAYLOAD_TOO_LARGE)
        *detail = "content: at most 4 MiB once decoded";
    return err;
}

static enum cf_err doc_decode(struct http_request *req, struct doc_body *b, const char **detail)
{
    static const char *const fields[] = {"kind", "content_type", "content", NULL};
    json_t *root = NULL;
    char kind[24] = "", content[24] = "";
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, detail);
    if (err == CF_OK)
        err = field_copy(root, "kind", true, kind, sizeof(kind), detail);
    if (err == CF_OK)
        err = field_copy(root, "content_type", true, content, sizeof(content), detail);
    if (err == CF_OK && risk_kyc_doc_kind_parse(kind, &b->kind) != CF_OK) {
        *detail = "kind: passport, id_card, driving_licence, proof_of_address or selfie";
        err = CF_ERR_INVALID_FIELD;
    }
    if (err == CF_OK && risk_kyc_content_parse(content, &b->content) != CF_OK) {
        *detail = "content_type: image/jpeg, image/png or application/pdf";
        err = CF_ERR_INVALID_FIELD;
    }
    if (err == CF_OK)
        err = doc_content_decode(root, b, detail);
    *detail = api_detail_keep(req, *detail);
    json_decref(root);
    return err;
}

static void document_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *me = api_pay_me_id(req), *detail = NULL;
    struct doc_body b = {0};
    struct risk_kyc_document d;
    enum cf_err err = api->kyc == NULL ? CF_ERR_CONFIG : doc_decode(req, &b, &detail);
    if (err == CF_OK)
        err = risk_kyc_document_add(api->kyc, me, b.kind, b.content, b.bytes, b.n, api_pay_now_us(),
                                    &d, &detail);
    if (b.bytes != NULL)
        hash_wipe(b.bytes, b.n);
    free(b.bytes);
    json_t *o = err == CF_OK ? document_json(&d) : NULL;
    api_risk_object_reply(req, resp, err, detail, 201, o);
}

enum http_action api_me_kyc_document(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, document_run);
}

/* Submitting --------------------------------------------------------------------------------- */

static void submit_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *me = api_pay_me_id(req), *detail = NULL;
    struct risk_kyc_submission *s = malloc(sizeof(*s));
    enum cf_err err = s == NULL          ? CF_ERR_NOMEM
                      : api->kyc == NULL ? CF_ERR_CONFIG
                                         : api_risk_empty_body(req, &detail);
    if (err == CF_OK)
        err = risk_kyc_submit(api->kyc, me, api_pay_now_us(), s, &detail);
    if (err == CF_OK) {
        api_risk_monitor_forget(api, me); /* the submitted details name the home country now */
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        cf_best_effort(identity_audit(api->identity, &ctx, me, "kyc.submit", me, "ok", s->id));
    }
    free(s);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    me_reply(req, resp, NULL);
}

enum http_action api_me_kyc_submit(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, submit_run);
}

/* Staff: the queue ----------------------------------------------------------------------------- */

static enum cf_err list_params(struct http_request *req, uint8_t *state, size_t *limit,
                               uint64_t *cursor, const char **detail)
{
    bool has_limit = http_request_query(req, "limit") != NULL;
    const char *s = http_request_query(req, "state");
    *state = RISK_KYC_PENDING;
    if (s != NULL && (risk_kyc_state_parse(s, state) != CF_OK ||
                      (*state != RISK_KYC_PENDING && *state != RISK_KYC_APPROVED &&
                       *state != RISK_KYC_REJECTED))) {
        *detail = "state: pending, approved or rejected";
        return CF_ERR_INVALID_FIELD;
    }
    enum cf_err err =
        api_risk_page_params(req, RISK_KYC_LIST_MAX, "limit: 1 to 100", limit, cursor, detail);
    if (err == CF_OK && !has_limit)
        *limit = API_KYC_LIST_DEFAULT;
    return err;
}

static json_t *queue_item_json(const struct risk_kyc_submission *s)
{
    return json_pack("{s:s,s:s,s:s,s:I,s:o,s:o,s:o,s:o}", "submission_id", s->id, "user_id",
                     s->user_id, "state", risk_kyc_state_name(s->state), "documents_n",
                     (json_int_t)s->documents_n, "created_at", api_risk_time_json(s->created_at_us),
                     "submitted_at", api_risk_time_json(s->submitted_at_us), "decided_at",
                     api_risk_time_json(s->decided_at_us), "decided_by", text_or_null(s->decided_by));
}

static void list_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    uint8_t state = 0;
    size_t limit = 0, n = 0;
    uint64_t cursor = 0;
    const char *detail = NULL;
    enum cf_err err =
        api->kyc == NULL ? CF_ERR_CONFIG : list_params(req, &state, &limit, &cursor, &detail);
    struct risk_kyc_submission *subs = err == CF_OK ? calloc(limit, sizeof(*subs)) : NULL;
    if (err == CF_OK && subs == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK)
        err = risk_kyc_list(api->kyc, state, cursor, subs, limit, &n);
    json_t *data = json_array();
    for (size_t i = 0; i < n && err == CF_OK && data != NULL; i++)
        json_array_append_new(data, queue_item_json(&subs[i]));
    uint64_t last_row = n > 0 ? subs[n - 1].queue_row : 0;
    free(subs);
    api_risk_page_reply(req, resp, err, detail, data, n, limit, last_row);
}

enum http_action api_risk_kyc_list(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, list_run);
}

/* Staff: one customer -------------------------------------------------------------------------- */

/* Writes a staff read of personal data to the audit log before the data is answered;
 * CF_ERR_STORAGE when it cannot be written (the read is refused then). */
static enum cf_err read_audit(struct http_request *req, const char *action, const char *user,
                              const char *what)
{
    struct api *api = req->app;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    enum cf_err err = identity_audit(api->identity, &ctx, api_actor(req), action, user, "ok", what);
    return err == CF_OK ? CF_OK : CF_ERR_STORAGE;
}

static json_t *staff_view_json(struct api *api, const struct risk_kyc_view *v,
                               const struct risk_kyc_event *hist, size_t hist_n)
{
    json_t *history = json_array();
    for (size_t i = 0; i < hist_n && history != NULL; i++)
        json_array_append_new(history, event_json(&hist[i], true));
    json_t *o = json_pack(
        "{s:s,s:i,s:s,s:o,s:o,s:o}", "user_id", v->user_id, "tier", v->tier, "state",
        risk_kyc_state_name(v->state), "latest",
        v->has_latest ? submission_json(&v->latest, NULL, 0, true) : json_null(), "current",
        v->has_current ? submission_json(&v->current, v->documents, v->documents_n, true)
                       : json_null(),
        "history", history);
    if (o != NULL && tier_json(api, v->tier, o) != CF_OK) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void get_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *user = req->params[0];
    struct risk_kyc_view *v = malloc(sizeof(*v));
    struct risk_kyc_event *hist = calloc(API_KYC_HISTORY_SHOWN, sizeof(*hist));
    size_t hist_n = 0;
    enum cf_err err = v == NULL || hist == NULL ? CF_ERR_NOMEM : customer_target(api, user);
    if (err == CF_OK)
        err = risk_kyc_view_get(api->kyc, user, true, v);
    if (err == CF_OK)
        err = risk_kyc_history(api->kyc, user, true, hist, API_KYC_HISTORY_SHOWN, &hist_n);
    if (err == CF_OK)
        err = read_audit(req, "kyc.details_read", user, v->has_current ? v->current.id : NULL);
    json_t *o = err == CF_OK ? staff_view_json(api, v, hist, hist_n) : NULL;
    if (v != NULL)
        hash_wipe(v, sizeof(*v));
    if (hist != NULL)
        hash_wipe(hist, API_KYC_HISTORY_SHOWN * sizeof(*hist));
    free(v);
    free(hist);
    api_risk_object_reply(req, resp, err, NULL, 200, o);
}

enum http_action api_risk_kyc_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, get_run);
}

static void staff_document_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *user = req->params[0], *doc_id = req->params[1];
    struct risk_kyc_document d;
    uint8_t *content = NULL;
    size_t n = 0;
    enum cf_err err = customer_target(api, user);
    if (err == CF_OK)
        err = risk_kyc_document_read(api->kyc, user, doc_id, &d, &content, &n);
    if (err == CF_OK)
        err = read_audit(req, "kyc.document_read", user, d.id);
    char *body = err == CF_OK ? arena_alloc(req->arena, n > 0 ? n : 1) : NULL;
    if (err == CF_OK && body == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK)
        memcpy(body, content, n);
    if (content != NULL)
        hash_wipe(content, n);
    free(content);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    resp->status = 200;
    resp->content_type = risk_kyc_content_name(d.content); /* static text */
    resp->body = body;
    resp->body_len = n;
}

enum http_action api_risk_kyc_document(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, staff_document_run);
}

/* Staff: deciding ------------------------------------------------------------------------------ */

/* {decision, reason, customer_reason?, submission_id?}, copied into the request's arena. */
struct decision_body {
    bool approve;
    const char *reason;
    const char *customer_reason;
    const char *submission_id;
};

static enum cf_err opt_string(struct http_request *req, json_t *root, const char *key,
                              bool required, size_t bytes_max, const char **out,
                              const char **detail)
{
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_string(root, key, required, bytes_max, &s, &n);
    if (err != CF_OK)
        *detail = key;
    if (err == CF_OK && s != NULL && (*out = arena_strndup(req->arena, s, n)) == NULL)
        err = CF_ERR_NOMEM;
    return err;
}

/* A staff change's reason (required) and customer_reason (optional), checked. */
static enum cf_err reasons_decode(struct http_request *req, json_t *root, struct decision_body *b,
                                  const char **detail)
{
    enum cf_err err = opt_string(req, root, "reason", true, RISK_KYC_REASON_BYTES_MAX - 1,
                                 &b->reason, detail);
    if (err == CF_OK)
        err = opt_string(req, root, "customer_reason", false,
                         RISK_KYC_CUSTOMER_REASON_BYTES_MAX - 1, &b->customer_reason, detail);
    if (err == CF_OK && !risk_kyc_reason_valid(b->reason, false, detail))
        err = CF_ERR_INVALID_FIELD;
    if (err == CF_OK && b->customer_reason != NULL &&
        !risk_kyc_reason_valid(b->customer_reason, true, detail))
        err = CF_ERR_INVALID_FIELD;
    return err;
}

static enum cf_err decision_decode(struct http_request *req, struct decision_body *b,
                                   const char **detail)
{
    static const char *const fields[] = {"decision", "reason", "customer_reason", "submission_id",
                                         NULL};
    json_t *root = NULL;
    const char *decision = NULL;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, detail);
    if (err == CF_OK)
        err = opt_string(req, root, "decision", true, 16, &decision, detail);
    if (err == CF_OK && strcmp(decision, "approve") != 0 && strcmp(decision, "reject") != 0) {
        *detail = "decision: approve or reject";
        err = CF_ERR_INVALID_FIELD;
    }
    if (err == CF_OK)
        err = reasons_decode(req, root, b, detail);
    if (err == CF_OK)
        err = opt_string(req, root, "submission_id", false, RISK_KYC_ID_BYTES_MAX - 1,
                         &b->submission_id, detail);
    b->approve = err == CF_OK && strcmp(decision, "approve") == 0;
    *detail = api_detail_keep(req, *detail);
    json_decref(root);
    return err;
}

/* Sends the customer a notice about their identity check (body: static text, never a
 * reason); a failure is logged, nothing more. */
static void customer_notify(struct api *api, const char *user, const char *body)
{
    char login[IDENTITY_LOGIN_BYTES_MAX + 1];
    bool customer = false, phone = false;
    if (person_read(api, user, &customer, &phone, login) != CF_OK || login[0] == '\0')
        return;
    struct notifier_message m = {
        .channel = login[0] == '+' ? NOTIFIER_SMS : NOTIFIER_EMAIL,
        .to = login,
        .subject = "Your identity check",
        .body = body,
    };
    if (notifier_send(identity_notifier(api->identity), &m) != CF_OK)
        cf_log(LOG_WARN, "kyc notice not sent", "user", user, NULL);
    hash_wipe(login, sizeof(login));
}

/* Tells the customer the outcome (never the reason). */
static void decision_notify(struct api *api, const char *user, bool approve)
{
    customer_notify(api, user,
                    approve ? "Coffer: your identity check is approved. Your new limits are in "
                              "the app."
                            : "Coffer: your identity check was not approved. Open the app to see "
                              "why and to submit again.");
}

static void decision_reply(struct http_request *req, struct http_response *resp, const char *user,
                           const struct risk_kyc_event *e, int tier, bool replay)
{
    bool approve = e->kind == RISK_KYC_EVENT_APPROVE;
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:o,s:o,s:o,s:b}", "id", e->id, "user_id", user,
                  "submission_id", e->submission_id, "decision", approve ? "approve" : "reject",
                  "tier", tier, "state", approve ? "approved" : "rejected", "decided_by", e->by,
                  "decided_at", api_risk_time_json(e->at_us), "reason", text_or_null(e->reason),
                  "customer_reason", text_or_null(e->customer_reason), "replayed", replay);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}


/* Staff: lowering a tier ------------------------------------------------------------------------ */

/* {tier, reason, customer_reason?} */
static enum cf_err lower_decode(struct http_request *req, int *tier, struct decision_body *b,
                                const char **detail)
{
    static const char *const fields[] = {"tier", "reason", "customer_reason", NULL};
    json_t *root = NULL;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, detail);
    json_t *t = err == CF_OK ? json_object_get(root, "tier") : NULL;
    if (err == CF_OK && (t == NULL || !json_is_integer(t) || json_integer_value(t) < 0 ||
                         json_integer_value(t) >= RISK_KYC_TIER_MAX)) {
        *detail = t == NULL ? "tier" : "tier: 0 or 1 (below the highest tier)";
        err = t == NULL ? CF_ERR_MISSING_FIELD : CF_ERR_INVALID_FIELD;
    }
    if (err == CF_OK)
        *tier = (int)json_integer_value(t);
    if (err == CF_OK)
        err = reasons_decode(req, root, b, detail);
    *detail = api_detail_keep(req, *detail);
    json_decref(root);
    return err;
}

/* Tells the customer their tier went down (never the staff reason). */
static void lower_notify(struct api *api, const char *user)
{
    customer_notify(api, user,
                    "Coffer: your verification level changed and some limits are lower. Open the "
                    "app to see why and how to verify again.");
}

static void lower_reply(struct http_request *req, struct http_response *resp, const char *user,
                        const struct risk_kyc_event *e, int tier, bool replay)
{
    json_t *o = json_pack("{s:s,s:s,s:i,s:s,s:o,s:o,s:o,s:b}", "id", e->id, "user_id", user,
                          "tier", tier, "lowered_by", e->by, "lowered_at", api_risk_time_json(e->at_us),
                          "reason", text_or_null(e->reason), "customer_reason",
                          text_or_null(e->customer_reason), "replayed", replay);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

/* The audit line and the customer's notice of a staff change just made (not a replay). */
static void staff_change_record(struct http_request *req, const char *user,
                                const struct risk_kyc_event *e, int tier)
{
    struct api *api = req->app;
    char what[AUDIT_DETAIL_BYTES];
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    const char *action = e->kind == RISK_KYC_EVENT_APPROVE  ? "kyc.approve"
                         : e->kind == RISK_KYC_EVENT_REJECT ? "kyc.reject"
                                                            : "kyc.lower";
    if (e->kind == RISK_KYC_EVENT_LOWER)
        snprintf(what, sizeof(what), "event %s tier %d", e->id, tier);
    else
        snprintf(what, sizeof(what), "event %s submission %s", e->id, e->submission_id);
    cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), action, user, "ok", what));
    if (e->kind == RISK_KYC_EVENT_LOWER)
        lower_notify(api, user);
    else
        decision_notify(api, user, e->kind == RISK_KYC_EVENT_APPROVE);
}

/* A staff change of {id}'s KYC record: a decision (lower false) or a lowering of the tier. */
static void staff_change_run(struct http_request *req, struct http_response *resp, bool lower)
{
    struct api *api = req->app;
    const char *user = req->params[0], *detail = NULL;
    char key[PAY_IDEM_BYTES_MAX];
    struct risk_kyc_idem idem = {.key = key};
    struct decision_body b = {0};
    struct risk_kyc_event *e = malloc(sizeof(*e));
    int tier = 0, target = 0;
    bool replay = false;
    enum cf_err err = e == NULL ? CF_ERR_NOMEM : customer_target(api, user);
    if (err == CF_OK)
        err = api_pay_idem_read(req, key, idem.request_hash);
    if (err == CF_OK)
        err = lower ? lower_decode(req, &target, &b, &detail) : decision_decode(req, &b, &detail);
    if (err == CF_OK && lower)
        err = risk_kyc_tier_lower(api->kyc, user, target, b.reason, b.customer_reason,
                                  api_actor(req), &idem, api_pay_now_us(), e, &tier, &replay,
                                  &detail);
    else if (err == CF_OK)
        err =
            risk_kyc_decide(api->kyc, user, b.submission_id, b.approve, b.reason, b.customer_reason,
                            api_actor(req), &idem, api_pay_now_us(), e, &tier, &replay, &detail);
    if (err == CF_OK && !replay)
        staff_change_record(req, user, e, tier);
    if (err != CF_OK)
        api_pay_problem_reply(req, resp, err, detail);
    else if (lower)
        lower_reply(req, resp, user, e, tier, replay);
    else
        decision_reply(req, resp, user, e, tier, replay);
    if (e != NULL)
        hash_wipe(e, sizeof(*e));
    free(e);
}

static void decide_run(struct http_request *req, struct http_response *resp)
{
    staff_change_run(req, resp, false);
}

static void lower_run(struct http_request *req, struct http_response *resp)
{
    staff_change_run(req, resp, true);
}

enum http_action api_risk_kyc_decide(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, decide_run);
}

enum http_action api_risk_kyc_lower(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, lower_run);
}
