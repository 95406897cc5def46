/*
 * risk_rules.c - the active rules set holder, the rules and decisions routes, and the dry run;
 * see risk_rules.h.
 *
 * The holder keeps each set it publishes in a small node with a reference count: the active
 * node (the holder's own reference, plus one per reader) and a list of retired nodes that
 * readers still hold. acquire and release touch only the count under the holder's mutex; a
 * rebuild compiles outside it and swaps under it; whoever drops a node's last reference frees
 * the set, outside the mutex. A poller thread looks at the stored set version now and then.
 */
#include "api/risk_rules.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/pay.h"
#include "api/risk_common.h"
#include "core/clock.h"
#include "core/log.h"

/* The candidate's id in a dry run (any valid id: it is never stored). */
#define DRY_RULE_ID "dry_run"
/* A text member's largest size before the rule's own checks (which say what is too long). */
#define BODY_TEXT_BYTES_MAX (4 * RULES_EXPR_BYTES_MAX)
/* An error detail: "condition: column 1024: " and a message of rules.c. */
#define DETAIL_BYTES 160

/* The holder ---------------------------------------------------------------------------------- */

struct set_ref {
    struct rules_set *set;
    size_t refs; /* readers, plus one while it is the active set */
    struct set_ref *next;
};

struct api_risk_monitor {
    pthread_mutex_t mu;         /* active, retired and every refs */
    struct set_ref *active;     /* never NULL */
    struct set_ref *retired;    /* swapped out, still held by readers */
    pthread_mutex_t rebuild_mu; /* one rebuild at a time, so versions only grow */
    pthread_mutex_t dry_mu;     /* one dry run at a time: each may hold some 38 MB */
    pthread_mutex_t poll_mu;
    pthread_cond_t poll_cond;
    bool stopping;
    bool poller_started;
    pthread_t poller;
};

static struct set_ref *ref_new(struct rules_set *set)
{
    struct set_ref *r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->set = set;
        r->refs = 1;
    }
    return r;
}

const struct rules_set *api_risk_rules_acquire(struct api *api)
{
    CF_ASSERT(api != NULL && api->monitor != NULL);
    struct api_risk_monitor *m = api->monitor;
    pthread_mutex_lock(&m->mu);
    struct set_ref *r = m->active;
    CF_ASSERT(r != NULL && r->refs >= 1);
    r->refs++;
    const struct rules_set *set = r->set;
    pthread_mutex_unlock(&m->mu);
    return set;
}

void api_risk_rules_release(struct api *api, const struct rules_set *set)
{
    CF_ASSERT(api != NULL && api->monitor != NULL && set != NULL);
    struct api_risk_monitor *m = api->monitor;
    struct set_ref *dead = NULL;
    pthread_mutex_lock(&m->mu);
    if (m->active->set == set) {
        CF_ASSERT(m->active->refs >= 2); /* the holder's own reference stays */
        m->active->refs--;
    } else {
        struct set_ref **p = &m->retired;
        while (*p != NULL && (*p)->set != set)
            p = &(*p)->next;
        CF_ASSERT(*p != NULL && (*p)->refs >= 1); /* released more often than acquired */
        if (--(*p)->refs == 0) {
            dead = *p;
            *p = dead->next;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (dead != NULL) {
        rules_set_destroy(dead->set);
        free(dead);
    }
}

static uint64_t active_version(struct api *api)
{
    const struct rules_set *set = api_risk_rules_acquire(api);
    uint64_t v = rules_set_version(set);
    api_risk_rules_release(api, set);
    return v;
}

/* Makes set active when it is newer than the active one; takes set in every case. */
static enum cf_err holder_swap(struct api_risk_monitor *m, struct rules_set *set)
{
    struct set_ref *fresh = ref_new(set);
    if (fresh == NULL) {
        rules_set_destroy(set);
        return CF_ERR_NOMEM;
    }
    struct set_ref *dead = NULL;
    pthread_mutex_lock(&m->mu);
    struct set_ref *old = m->active;
    if (rules_set_version(set) <= rules_set_version(old->set)) {
        dead = fresh; /* an older or equal state: keep what runs */
    } else {
        m->active = fresh;
        if (--old->refs == 0) {
            dead = old;
        } else {
            old->next = m->retired;
            m->retired = old;
        }
    }
    CF_ASSERT(m->active->refs >= 1);
    pthread_mutex_unlock(&m->mu);
    if (dead != NULL) {
        rules_set_destroy(dead->set);
        free(dead);
    }
    return CF_OK;
}

/* Builds the stored set and makes it active (when newer). */
static enum cf_err holder_rebuild(struct api *api)
{
    struct api_risk_monitor *m = api->monitor;
    if (api->risk_rules == NULL)
        return CF_OK;
    pthread_mutex_lock(&m->rebuild_mu);
    struct rules_set *set = NULL;
    char bad[RULES_ID_BYTES_MAX + 1] = "";
    uint64_t stored = 0;
    enum cf_err err = risk_rules_store_set_version(api->risk_rules, &stored);
    if (err == CF_OK && stored > active_version(api))
        err = risk_rules_store_set_build(api->risk_rules, &set, bad);
    if (err == CF_OK && set != NULL)
        err = holder_swap(m, set);
    pthread_mutex_unlock(&m->rebuild_mu);
    if (err == CF_ERR_CORRUPT)
        cf_log(LOG_ERROR, "risk rules: a stored rule does not compile", "rule", bad, NULL);
    return err;
}

enum cf_err api_risk_rules_refresh(struct api *api)
{
    CF_ASSERT(api != NULL && api->monitor != NULL);
    return holder_rebuild(api);
}

static void *poller_main(void *arg)
{
    struct api *api = arg;
    struct api_risk_monitor *m = api->monitor;
    pthread_mutex_lock(&m->poll_mu);
    while (!m->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += API_RISK_RULES_POLL_MS / 1000;
        until.tv_nsec += (long)(API_RISK_RULES_POLL_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!m->stopping && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&m->poll_cond, &m->poll_mu, &until);
        if (m->stopping)
            break;
        pthread_mutex_unlock(&m->poll_mu);
        enum cf_err err = holder_rebuild(api);
        if (err != CF_OK)
            cf_log(LOG_WARN, "risk rules: refresh failed", "error", cf_err_code(err), NULL);
        pthread_mutex_lock(&m->poll_mu);
    }
    pthread_mutex_unlock(&m->poll_mu);
    return NULL;
}

static void holder_free(struct api_risk_monitor *m)
{
    if (m->active != NULL) {
        CF_ASSERT(m->active->refs == 1 && m->retired == NULL); /* every reader released */
        rules_set_destroy(m->active->set);
        free(m->active);
    }
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->rebuild_mu);
    pthread_mutex_destroy(&m->dry_mu);
    pthread_mutex_destroy(&m->poll_mu);
    pthread_cond_destroy(&m->poll_cond);
    free(m);
}

enum cf_err api_risk_rules_start(struct api *api)
{
    CF_ASSERT(api != NULL && api->monitor == NULL);
    struct api_risk_monitor *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return CF_ERR_NOMEM;
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->rebuild_mu, NULL);
    pthread_mutex_init(&m->dry_mu, NULL);
    pthread_mutex_init(&m->poll_mu, NULL);
    pthread_cond_init(&m->poll_cond, NULL);
    struct rules_set *empty = NULL;
    enum cf_err err = rules_set_create(0, NULL, 0, &empty);
    if (err == CF_OK && (m->active = ref_new(empty)) == NULL) {
        rules_set_destroy(empty);
        err = CF_ERR_NOMEM;
    }
    if (err != CF_OK) {
        holder_free(m);
        return err;
    }
    api->monitor = m;
    err = holder_rebuild(api);
    if (err == CF_OK && api->risk_rules != NULL) {
        m->poller_started = pthread_create(&m->poller, NULL, poller_main, api) == 0;
        if (!m->poller_started)
            err = CF_ERR_NOMEM;
    }
    if (err != CF_OK) {
        api->monitor = NULL;
        holder_free(m);
    }
    CF_ASSERT(err != CF_OK || api->monitor->active != NULL);
    return err;
}

void api_risk_rules_stop(struct api *api)
{
    if (api == NULL || api->monitor == NULL)
        return;
    struct api_risk_monitor *m = api->monitor;
    if (m->poller_started) {
        pthread_mutex_lock(&m->poll_mu);
        m->stopping = true;
        pthread_cond_signal(&m->poll_cond);
        pthread_mutex_unlock(&m->poll_mu);
        pthread_join(m->poller, NULL);
    }
    api->monitor = NULL;
    holder_free(m);
}

/* JSON ---------------------------------------------------------------------------------------- */

static json_t *rule_json(const struct risk_rules_version *v)
{
    return json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:o,s:I}", "id", v->id, "version",
                     (json_int_t)v->version, "condition", v->condition, "action",
                     rules_action_name((enum rules_action)v->action), "reason", v->reason,
                     "description", v->description, "enabled", v->enabled, "change",
                     risk_rules_change_name(v->change), "changed_by", v->changed_by, "changed_at",
                     api_risk_time_json(v->changed_at_us), "set_version", (json_int_t)v->set_version);
}

static const char *type_name(enum rules_type t)
{
    return t == RULES_TYPE_INT ? "integer" : t == RULES_TYPE_TEXT ? "text" : "boolean";
}

/* "<field>: column <n>: <message>" (no column when 0) in the request's arena. */
static const char *rule_error_detail(struct http_request *req, const struct rules_error *e)
{
    char *d = arena_alloc(req->arena, DETAIL_BYTES);
    if (d == NULL || e->field == NULL)
        return NULL;
    if (e->column > 0)
        snprintf(d, DETAIL_BYTES, "%s: column %zu: %s", e->field, e->column, e->message);
    else
        snprintf(d, DETAIL_BYTES, "%s: %s", e->field, e->message);
    return d;
}

/* Audit --------------------------------------------------------------------------------------- */

/* Appends text to d (AUDIT_DETAIL_BYTES_MAX + 1 bytes), whitespace as single spaces, ending in
 * "..." when it does not fit. */
static void detail_append(char *d, const char *text)
{
    size_t len = strlen(d), cap = AUDIT_DETAIL_BYTES_MAX;
    bool space = false;
    for (size_t i = 0; text[i] != '\0'; i++) {
        char c = text[i] == '\t' || text[i] == '\r' || text[i] == '\n' ? ' ' : text[i];
        if (c == ' ' && space)
            continue;
        space = c == ' ';
        if (len + 1 > cap - 3) {
            memcpy(d + len, "...", 4);
            return;
        }
        d[len++] = c;
        d[len] = '\0';
    }
}

static void audit_change(struct http_request *req, const struct risk_rules_version *v)
{
    struct api *api = req->app;
    char action[40], detail[AUDIT_DETAIL_BYTES_MAX + 1];
    snprintf(action, sizeof(action), "risk.rule_%s", risk_rules_change_name(v->change));
    snprintf(detail, sizeof(detail),
             "version %" PRIu32 " set_version %" PRIu64 " action %s reason %s enabled %s "
             "condition ",
             v->version, v->set_version, rules_action_name((enum rules_action)v->action), v->reason,
             v->enabled ? "true" : "false");
    detail_append(detail, v->condition);
    CF_ASSERT(strlen(detail) <= AUDIT_DETAIL_BYTES_MAX);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    cf_best_effort(
        identity_audit(api->identity, &ctx, api_actor(req), action, v->id, "ok", detail));
}

/* Routes: features and reading rules ---------------------------------------------------------- */

enum http_action api_risk_features_list(struct http_request *req, struct http_response *resp)
{
    json_t *data = json_array();
    for (size_t i = 0; i < rules_features_n() && data != NULL; i++) {
        const struct rules_feature_info *f = rules_feature_at(i);
        json_array_append_new(data, json_pack("{s:s,s:s,s:s}", "name", f->name, "type",
                                              type_name(f->type), "doc", f->doc));
    }
    json_t *actions = json_array();
    for (int a = 0; a < RULES_ACTIONS_N && actions != NULL; a++)
        json_array_append_new(actions, json_string(rules_action_name((enum rules_action)a)));
    json_t *o = json_pack("{s:o,s:o}", "data", data, "actions", actions);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return HTTP_DONE;
    }
    api_reply_object(req, resp, 200, o);
    return HTTP_DONE;
}

static void rules_list_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct risk_rules_version *v = calloc(RULES_SET_MAX, sizeof(*v));
    size_t n = 0;
    uint64_t set_version = 0;
    enum cf_err err = v == NULL ? CF_ERR_NOMEM : api->risk_rules == NULL ? CF_ERR_CONFIG : CF_OK;
    if (err == CF_OK)
        err = risk_rules_store_current(api->risk_rules, v, RULES_SET_MAX, &n, &set_version);
    json_t *data = json_array();
    for (size_t i = 0; i < n && err == CF_OK; i++)
        json_array_append_new(data, rule_json(&v[i]));
    free(v);
    json_t *o = json_pack("{s:I,s:I,s:o}", "set_version", (json_int_t)set_version,
                          "active_set_version", (json_int_t)active_version(api), "data", data);
    if (err != CF_OK || o == NULL) {
        json_decref(o);
        api_problem(req, resp, err != CF_OK ? err : CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

enum http_action api_risk_rules_list(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, rules_list_run);
}

static void rule_get_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *id = req->params[0];
    struct risk_rules_version *v = calloc(API_RISK_RULE_HISTORY_SHOWN + 1, sizeof(*v));
    size_t n = 0;
    enum cf_err err = v == NULL ? CF_ERR_NOMEM : api->risk_rules == NULL ? CF_ERR_CONFIG : CF_OK;
    enum cf_err live = CF_ERR_NOT_FOUND;
    if (err == CF_OK)
        err = risk_rules_store_history(api->risk_rules, id, strlen(id), 0, &v[1],
                                       API_RISK_RULE_HISTORY_SHOWN, &n);
    if (err == CF_OK && n == 0)
        err = CF_ERR_NOT_FOUND; /* never created (or not an id) */
    if (err == CF_OK)
        live = risk_rules_store_get(api->risk_rules, id, strlen(id), &v[0]);
    if (err == CF_OK && live != CF_OK && live != CF_ERR_NOT_FOUND)
        err = live;
    json_t *history = json_array();
    for (size_t i = 1; i <= n && err == CF_OK; i++)
        json_array_append_new(history, rule_json(&v[i]));
    json_t *o = err == CF_OK
                    ? json_pack("{s:s,s:b,s:o,s:o}", "id", id, "live", live == CF_OK, "rule",
                                live == CF_OK ? rule_json(&v[0]) : json_null(), "history", history)
                    : NULL;
    if (o == NULL)
        json_decref(history);
    free(v);
    if (err != CF_OK || o == NULL) {
        api_problem(req, resp, err != CF_OK ? err : CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

enum http_action api_risk_rule_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, rule_get_run);
}

/* Routes: changing rules ---------------------------------------------------------------------- */

/* A decoded rule body; texts in the request's arena. */
struct rule_body {
    struct rules_rule_def def;
    bool enabled_set;
    int64_t base_version; /* RISK_RULES_BASE_NONE when not given */
};

/* A string member copied into the arena; *detail names it when refused. */
static enum cf_err body_string(struct http_request *req, json_t *root, const char *key,
                               bool required, const char **out, size_t *len_out,
                               const char **detail)
{
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_string(root, key, required, BODY_TEXT_BYTES_MAX, &s, &n);
    if (err != CF_OK) {
        *detail = key;
        return err;
    }
    if (s != NULL && (*out = arena_strndup(req->arena, s, n)) == NULL)
        return CF_ERR_NOMEM;
    if (s != NULL)
        *len_out = n;
    return CF_OK;
}

static enum cf_err rule_decode(struct http_request *req, json_t *root, bool with_id,
                               struct rule_body *b, const char **detail)
{
    struct rules_rule_def *d = &b->def;
    const char *action = NULL;
    size_t action_len = 0;
    enum cf_err err =
        with_id ? body_string(req, root, "id", true, &d->id, &d->id_len, detail) : CF_OK;
    if (err == CF_OK)
        err = body_string(req, root, "condition", true, &d->condition, &d->condition_len, detail);
    if (err == CF_OK)
        err = body_string(req, root, "action", true, &action, &action_len, detail);
    if (err == CF_OK && rules_action_parse(action, action_len, &d->action) != CF_OK) {
        *detail = "action: must be allow, challenge, review or block";
        err = CF_ERR_INVALID_FIELD;
    }
    if (err == CF_OK)
        err = body_string(req, root, "reason", true, &d->reason, &d->reason_len, detail);
    if (err == CF_OK)
        err = body_string(req, root, "description", false, &d->description, &d->description_len,
                          detail);
    b->enabled_set =
        json_object_get(root, "enabled") != NULL && !json_is_null(json_object_get(root, "enabled"));
    if (err == CF_OK && (err = api_json_bool(root, "enabled", &d->enabled)) != CF_OK)
        *detail = "enabled";
    return err;
}

/* The optional base_version: the rule's version the change was made from (rules_store.h,
 * "Base version"); *base_out RISK_RULES_BASE_NONE when absent or null. */
static enum cf_err base_decode(json_t *root, int64_t *base_out, const char **detail)
{
    json_t *given = json_object_get(root, "base_version");
    int64_t v = 0;
    enum cf_err err = api_json_int(root, "base_version", false, &v);
    if (err == CF_OK && given != NULL && !json_is_null(given) && (v < 0 || v > UINT32_MAX))
        err = CF_ERR_INVALID_FIELD;
    if (err != CF_OK) {
        *detail = "base_version: the rule's version the change is made from, 0 or more";
        return err;
    }
    *base_out = given != NULL && !json_is_null(given) ? v : RISK_RULES_BASE_NONE;
    CF_ASSERT(*base_out == RISK_RULES_BASE_NONE || (*base_out >= 0 && *base_out <= UINT32_MAX));
    return CF_OK;
}

/* Whether a path's {id} can name a rule ([a-z0-9_]{1,40}); anything else answers 404. */
static bool path_id_valid(const char *id)
{
    return rules_code_valid(id, strlen(id), RULES_ID_BYTES_MAX);
}

/* Reads the body of a create (with_id) or an update. */
static enum cf_err rule_body_read(struct http_request *req, bool with_id, struct rule_body *b,
                                  const char **detail)
{
    static const char *const create_fields[] = {
        "id", "condition", "action", "reason", "description", "enabled", "base_version", NULL};
    static const char *const update_fields[] = {
        "condition", "action", "reason", "description", "enabled", "base_version", NULL};
    json_t *root = NULL;
    memset(b, 0, sizeof(*b));
    b->def.enabled = true;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, with_id ? create_fields : update_fields, detail);
    if (err == CF_OK)
        err = rule_decode(req, root, with_id, b, detail);
    if (err == CF_OK)
        err = base_decode(root, &b->base_version, detail);
    *detail = api_detail_keep(req, *detail); /* it may point into root */
    json_decref(root);
    return err;
}

/* The answer to a change: {rule, set_version, active_set_version}. */
static void change_reply(struct http_request *req, struct http_response *resp, int status,
                         const struct risk_rules_version *v)
{
    struct api *api = req->app;
    json_t *o =
        json_pack("{s:o,s:I,s:I}", "rule", rule_json(v), "set_version", (json_int_t)v->set_version,
                  "active_set_version", (json_int_t)active_version(api));
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, status, o);
}

/* Stores one change with the request's key, audits it, makes it active and answers. */
static void change_apply(struct http_request *req, struct http_response *resp,
                         const struct rules_rule_def *def, enum risk_rules_change kind,
                         int64_t base_version, const struct risk_rules_idem *idem, int status)
{
    struct api *api = req->app;
    struct risk_rules_version *v = arena_calloc(req->arena, 1, sizeof(*v));
    struct rules_error e = {0};
    bool replay = false;
    enum cf_err err = v == NULL ? CF_ERR_NOMEM : api->risk_rules == NULL ? CF_ERR_CONFIG : CF_OK;
    if (err == CF_OK)
        err =
            risk_rules_store_change_based(api->risk_rules, def, kind, base_version, api_actor(req),
                                          idem, api_pay_now_us(), v, NULL, &replay, &e);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, e.field != NULL ? rule_error_detail(req, &e) : NULL);
        return;
    }
    if (!replay)
        audit_change(req, v);
    enum cf_err rebuilt = holder_rebuild(api);
    if (rebuilt != CF_OK) /* the change stands; the poller or the next change retries */
        cf_log(LOG_WARN, "risk rules: rebuild failed", "error", cf_err_code(rebuilt), NULL);
    change_reply(req, resp, status, v);
}

static void rule_create_run(struct http_request *req, struct http_response *resp)
{
    char key[PAY_IDEM_BYTES_MAX];
    struct risk_rules_idem idem = {.key = key};
    struct rule_body b;
    const char *detail = NULL;
    enum cf_err err = api_pay_idem_read(req, key, idem.request_hash);
    if (err == CF_OK)
        err = rule_body_read(req, true, &b, &detail);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    change_apply(req, resp, &b.def, RISK_RULES_CHANGE_CREATE, b.base_version, &idem, 201);
}

enum http_action api_risk_rule_create(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, rule_create_run);
}

static void rule_update_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *id = req->params[0];
    char key[PAY_IDEM_BYTES_MAX];
    struct risk_rules_idem idem = {.key = key};
    struct rule_body b;
    const char *detail = NULL;
    enum cf_err err =
        path_id_valid(id) ? api_pay_idem_read(req, key, idem.request_hash) : CF_ERR_NOT_FOUND;
    if (err == CF_OK)
        err = rule_body_read(req, false, &b, &detail);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    b.def.id = id;
    b.def.id_len = strlen(id);
    if (!b.enabled_set && api->risk_rules != NULL) { /* keep the rule's flag */
        struct risk_rules_version *cur = arena_calloc(req->arena, 1, sizeof(*cur));
        err =
            cur == NULL ? CF_ERR_NOMEM : risk_rules_store_get(api->risk_rules, id, strlen(id), cur);
        if (err == CF_OK)
            b.def.enabled = cur->enabled;
        else if (err != CF_ERR_NOT_FOUND) { /* not found: the store answers (or replays) */
            api_pay_problem_reply(req, resp, err, NULL);
            return;
        }
    }
    change_apply(req, resp, &b.def, RISK_RULES_CHANGE_UPDATE, b.base_version, &idem, 200);
}

enum http_action api_risk_rule_update(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, rule_update_run);
}

static void rule_delete_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"base_version", NULL};
    const char *id = req->params[0];
    char key[PAY_IDEM_BYTES_MAX];
    struct risk_rules_idem idem = {.key = key};
    const char *detail = NULL;
    int64_t base_version = RISK_RULES_BASE_NONE;
    enum cf_err err =
        path_id_valid(id) ? api_pay_idem_read(req, key, idem.request_hash) : CF_ERR_NOT_FOUND;
    if (err == CF_OK && req->body_len > 0) { /* no body, {} or {base_version} */
        json_t *root = NULL;
        err = api_json_object(req, &root, &detail);
        if (err == CF_OK)
            err = api_json_fields(root, fields, &detail);
        if (err == CF_OK)
            err = base_decode(root, &base_version, &detail);
        detail = api_detail_keep(req, detail);
        json_decref(root);
    }
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    struct rules_rule_def def = {.id = id, .id_len = strlen(id)};
    change_apply(req, resp, &def, RISK_RULES_CHANGE_DELETE, base_version, &idem, 200);
}

enum http_action api_risk_rule_delete(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, rule_delete_run);
}

/* Routes: the dry run ------------------------------------------------------------------------- */

struct dry_body {
    struct rules_rule_def def;
    int64_t window_s;
    int64_t limit;
};

static enum cf_err dry_decode(struct http_request *req, struct dry_body *b, const char **detail)
{
    static const char *const fields[] = {"condition", "action", "reason",
                                         "window_s",  "limit",  NULL};
    json_t *root = NULL;
    const char *action = NULL;
    size_t action_len = 0;
    struct rules_rule_def *d = &b->def;
    *d = (struct rules_rule_def){.id = DRY_RULE_ID,
                                 .id_len = strlen(DRY_RULE_ID),
                                 .reason = DRY_RULE_ID,
                                 .reason_len = strlen(DRY_RULE_ID),
                                 .enabled = true};
    b->window_s = API_RISK_DRY_WINDOW_S_DEFAULT;
    b->limit = API_RISK_DRY_LIMIT_DEFAULT;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, detail);
    if (err == CF_OK)
        err = body_string(req, root, "condition", true, &d->condition, &d->condition_len, detail);
    if (err == CF_OK)
        err = body_string(req, root, "action", true, &action, &action_len, detail);
    if (err == CF_OK && rules_action_parse(action, action_len, &d->action) != CF_OK) {
        *detail = "action: must be allow, challenge, review or block";
        err = CF_ERR_INVALID_FIELD;
    }
    if (err == CF_OK)
        err = body_string(req, root, "reason", false, &d->reason, &d->reason_len, detail);
    if (err == CF_OK && ((err = api_json_int(root, "window_s", false, &b->window_s)) != CF_OK ||
                         b->window_s < 1 || b->window_s > API_RISK_DRY_WINDOW_S_MAX)) {
        *detail = "window_s: 1 to 7776000 (90 days)";
        err = CF_ERR_INVALID_FIELD;
    }
    if (err == CF_OK && ((err = api_json_int(root, "limit", false, &b->limit)) != CF_OK ||
                         b->limit < 1 || b->limit > RISK_DECISIONS_RECENT_MAX)) {
        *detail = "limit: 1 to 100000";
        err = CF_ERR_INVALID_FIELD;
    }
    *detail = api_detail_keep(req, *detail);
    json_decref(root);
    return err;
}

/* What a dry run found, for the answer. */
struct dry_outcome {
    struct rules_dry_report report;
    struct risk_decision_rec *samples; /* report.samples_n of them (heap) */
    int64_t since_us;
};

/* Replays rule over the decisions of the window; one dry run at a time in this process. */
static enum cf_err dry_replay(struct api *api, const struct rules_compiled_rule *rule,
                              const struct dry_body *b, struct dry_outcome *out)
{
    struct api_risk_monitor *m = api->monitor;
    size_t max = (size_t)b->limit, n = 0;
    out->since_us = api_pay_now_us() - b->window_s * 1000000;
    pthread_mutex_lock(&m->dry_mu);
    struct risk_features *history = malloc(max * sizeof(*history));
    char(*op_ids)[RISK_DECISIONS_OP_BYTES_MAX] = malloc(max * sizeof(*op_ids));
    enum cf_err err = history != NULL && op_ids != NULL ? CF_OK : CF_ERR_NOMEM;
    if (err == CF_OK)
        err = risk_decisions_recent_features(api->risk_decisions, out->since_us, history, op_ids,
                                             max, &n);
    if (err == CF_OK)
        rules_dry_run(rule, history, n, &out->report);
    free(history);
    size_t samples_n = err == CF_OK ? out->report.samples_n : 0;
    for (size_t i = 0; i < samples_n && err == CF_OK; i++) {
        size_t at = out->report.samples[i];
        CF_ASSERT(at < n);
        err = risk_decisions_get(api->risk_decisions, op_ids[at], &out->samples[i]);
        hash_wipe(out->samples[i].review_reason, sizeof(out->samples[i].review_reason));
    }
    free(op_ids);
    pthread_mutex_unlock(&m->dry_mu);
    CF_ASSERT(err != CF_OK || out->report.scanned_n == n);
    return err;
}

static json_t *dry_json(const struct dry_body *b, const struct dry_outcome *o)
{
    const struct rules_dry_report *r = &o->report;
    json_t *by_action = json_object();
    for (int a = 0; a < RULES_ACTIONS_N && by_action != NULL; a++)
        json_object_set_new(by_action, rules_action_name((enum rules_action)a),
                            json_integer((json_int_t)r->by_action_n[a]));
    json_t *samples = json_array();
    for (size_t i = 0; i < r->samples_n && samples != NULL; i++) {
        const struct risk_decision_rec *s = &o->samples[i];
        json_array_append_new(samples,
                              json_pack("{s:s,s:o,s:I,s:s,s:s,s:s}", "operation_id", s->op_id,
                                        "created_at", api_risk_time_json(s->created_at_us), "amount_minor",
                                        (json_int_t)s->amount_minor, "currency", s->currency,
                                        "kind", s->kind, "decided",
                                        rules_action_name((enum rules_action)s->action)));
    }
    return json_pack("{s:I,s:I,s:o,s:o,s:I,s:o,s:I,s:b}", "examined", (json_int_t)r->scanned_n,
                     "matched", (json_int_t)r->matched_n, "by_action", by_action, "samples",
                     samples, "window_s", (json_int_t)b->window_s, "since", api_risk_time_json(o->since_us),
                     "limit", (json_int_t)b->limit, "limit_reached",
                     r->scanned_n == (size_t)b->limit);
}

static void audit_dry_run(struct http_request *req, const struct dry_body *b,
                          const struct dry_outcome *o)
{
    struct api *api = req->app;
    char detail[AUDIT_DETAIL_BYTES_MAX + 1];
    snprintf(detail, sizeof(detail),
             "window_s %" PRId64 " examined %zu matched %zu action %s condition ", b->window_s,
             o->report.scanned_n, o->report.matched_n, rules_action_name(b->def.action));
    detail_append(detail, b->def.condition);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    cf_best_effort(
        identity_audit(api->identity, &ctx, api_actor(req), "risk.rule_dry_run", "", "ok", detail));
}

static void dry_run_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct dry_body b;
    struct dry_outcome o;
    memset(&o, 0, sizeof(o));
    const char *detail = NULL;
    struct rules_compiled_rule *rule = malloc(sizeof(*rule));
    o.samples = calloc(RULES_DRY_SAMPLES_MAX, sizeof(*o.samples));
    enum cf_err err = rule != NULL && o.samples != NULL ? CF_OK : CF_ERR_NOMEM;
    if (err == CF_OK)
        err = dry_decode(req, &b, &detail);
    struct rules_error e = {0};
    if (err == CF_OK && (err = rules_rule_compile(&b.def, rule, &e)) != CF_OK)
        detail = rule_error_detail(req, &e);
    if (err == CF_OK && api->risk_decisions == NULL)
        err = CF_ERR_CONFIG;
    if (err == CF_OK)
        err = dry_replay(api, rule, &b, &o);
    json_t *out = err == CF_OK ? dry_json(&b, &o) : NULL;
    if (err == CF_OK)
        audit_dry_run(req, &b, &o);
    free(rule);
    free(o.samples);
    if (err != CF_OK || out == NULL) {
        api_pay_problem_reply(req, resp, err != CF_OK ? err : CF_ERR_NOMEM, detail);
        return;
    }
    api_reply_object(req, resp, 200, out);
}

enum http_action api_risk_rules_dry_run(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, dry_run_run);
}

/* Routes: decisions --------------------------------------------------------------------------- */

static json_t *matches_json(const struct risk_decision_rec *d)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < d->matches_n && arr != NULL; i++) {
        const struct rules_match *m = &d->matches[i];
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "rule_id", m->id, "reason", m->reason,
                                             "action", rules_action_name(m->action)));
    }
    return arr;
}

/* A decision as the list shows it: no features, no review reason. */
static json_t *decision_json(const struct risk_decision_rec *d)
{
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:I,s:s,s:s,s:I,s:o,s:I,s:s,s:o}", "operation_id", d->op_id, "party",
        d->party, "kind", d->kind, "amount_minor", (json_int_t)d->amount_minor, "currency",
        d->currency, "action", rules_action_name((enum rules_action)d->action), "set_version",
        (json_int_t)d->set_version, "matches", matches_json(d), "matches_omitted",
        (json_int_t)d->matches_omitted_n, "review", risk_review_state_name(d->review_state),
        "created_at", api_risk_time_json(d->created_at_us));
    if (o != NULL && d->review_state != RISK_REVIEW_NONE && d->decided_at_us > 0) {
        json_object_set_new(o, "reviewer", json_string(d->reviewer));
        json_object_set_new(o, "decided_at", api_risk_time_json(d->decided_at_us));
    }
    return o;
}

/* Reads the list's query parameters into *f; *detail names the one refused. */
static enum cf_err decisions_filter_read(struct http_request *req, struct risk_decisions_filter *f,
                                         const char **detail)
{
    const char *action = http_request_query(req, "action");
    const char *review = http_request_query(req, "review");
    const char *party = http_request_query(req, "party");
    const char *from = http_request_query(req, "from");
    const char *to = http_request_query(req, "to");
    enum rules_action a;
    if (action != NULL) {
        *detail = "action: allow, challenge, review or block";
        if (rules_action_parse(action, strlen(action), &a) != CF_OK)
            return CF_ERR_INVALID_FIELD;
        f->action_set = true;
        f->action = (uint8_t)a;
    }
    *detail = "review: none, pending, approved or declined";
    if (review != NULL &&
        risk_review_state_parse(review, strlen(review), &f->review_state) != CF_OK)
        return CF_ERR_INVALID_FIELD;
    f->review_set = review != NULL;
    *detail = "party: an id";
    if (party != NULL && (party[0] == '\0' || strlen(party) >= RISK_DECISIONS_PARTY_BYTES_MAX))
        return CF_ERR_INVALID_FIELD;
    f->party = party;
    *detail = "from: an RFC 3339 time";
    if (from != NULL && (cf_time_parse_rfc3339(from, &f->from_us) != CF_OK || f->from_us <= 0))
        return CF_ERR_INVALID_FIELD;
    *detail = "to: an RFC 3339 time";
    if (to != NULL && (cf_time_parse_rfc3339(to, &f->to_us) != CF_OK || f->to_us <= 0))
        return CF_ERR_INVALID_FIELD;
    *detail = NULL;
    return CF_OK;
}

static void decisions_list_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct risk_decisions_filter f = {0};
    size_t limit = 0, n = 0;
    const char *detail = NULL;
    enum cf_err err = api_risk_page_params(req, RISK_DECISIONS_LIST_MAX, "limit: 1 to 100", &limit,
                                           &f.before_row, &detail);
    if (err == CF_OK && http_request_query(req, "limit") == NULL)
        limit = API_RISK_DECISIONS_PAGE_DEFAULT;
    if (err == CF_OK)
        err = decisions_filter_read(req, &f, &detail);
    struct risk_decision_rec *recs = err == CF_OK ? calloc(limit, sizeof(*recs)) : NULL;
    if (err == CF_OK && recs == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK)
        err = api->risk_decisions != NULL
                  ? risk_decisions_list(api->risk_decisions, &f, recs, limit, &n)
                  : CF_ERR_CONFIG;
    json_t *data = json_array();
    for (size_t i = 0; i < n && err == CF_OK; i++)
        json_array_append_new(data, decision_json(&recs[i]));
    uint64_t last_row = n > 0 ? recs[n - 1].row : 0;
    free(recs);
    api_risk_page_reply(req, resp, err, detail, data, n, limit, last_row);
}

enum http_action api_risk_decisions_list(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, decisions_list_run);
}

/* The features as staff see them: {name: value} in the registry's order. */
static json_t *features_json(const struct risk_features *f)
{
    char *text = malloc(RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX);
    if (text == NULL)
        return NULL;
    risk_decisions_features_text(f, text);
    json_t *o = json_loads(text, JSON_PRESERVE_ORDER, NULL);
    free(text);
    if (o != NULL)
        json_object_del(o, "v");
    return o;
}

/* The matches with the version of each rule the decision ran (its description and condition:
 * staff detail), when the store still has it. */
static json_t *matches_detail_json(struct api *api, const struct risk_decision_rec *d)
{
    json_t *arr = matches_json(d);
    struct risk_rules_version *v = malloc(sizeof(*v));
    for (size_t i = 0; i < d->matches_n && arr != NULL && v != NULL; i++) {
        const struct rules_match *m = &d->matches[i];
        if (api->risk_rules == NULL ||
            risk_rules_store_version_at(api->risk_rules, m->id, strlen(m->id), d->set_version, v) !=
                CF_OK)
            continue;
        json_object_set_new(json_array_get(arr, i), "rule",
                            json_pack("{s:I,s:s,s:s}", "version", (json_int_t)v->version,
                                      "description", v->description, "condition", v->condition));
    }
    free(v);
    return arr;
}

static void decision_get_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *op_id = req->params[0];
    struct risk_decision_rec *d = calloc(1, sizeof(*d));
    enum cf_err err = d == NULL                     ? CF_ERR_NOMEM
                      : api->risk_decisions == NULL ? CF_ERR_CONFIG
                                                    : CF_OK;
    if (err == CF_OK)
        err = risk_decisions_get(api->risk_decisions, op_id, d);
    json_t *o = err == CF_OK ? decision_json(d) : NULL;
    if (o != NULL) {
        json_object_set_new(o, "matches", matches_detail_json(api, d));
        json_object_set_new(o, "features", features_json(&d->features));
        json_object_set_new(o, "customer_message",
                            json_string(rules_action_customer_message(d->action)));
        if (d->review_state != RISK_REVIEW_NONE && d->decided_at_us > 0)
            json_object_set_new(o, "review_reason", json_string(d->review_reason));
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        cf_best_effort(identity_audit_queue(api->identity, &ctx, api_actor(req),
                                            "staff.risk.decision_view", op_id, "ok", NULL));
    }
    if (d != NULL)
        hash_wipe(d, sizeof(*d)); /* the review reason */
    free(d);
    if (err != CF_OK || o == NULL) {
        api_problem(req, resp, err != CF_OK ? err : CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

enum http_action api_risk_decision_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, decision_get_run);
}
