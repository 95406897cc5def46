/*
 * risk_cases.c - the AML sweep, its timer, and the /v1/risk/cases routes; see risk_cases.h.
 *
 * The sweep's big buffers (a page of operations, a subject's events, the alerts) are taken from
 * the heap once per run and freed at its end; a run holds the sweep's mutex throughout, so the
 * timer and an on-demand run never interleave (two runs would only scan twice, but the
 * watermark would move back and forth). The timer thread sleeps on a condition variable that
 * stop signals; a run checks the stop flag between subjects.
 */
#include "api/risk_cases.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/csv.h"
#include "api/pay.h"
#include "api/risk_common.h"
#include "api/risk_freeze.h"
#include "api/risk_screening.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "money/currency.h"
#include "money/money.h"
#include "risk/kyc.h"

#define US_PER_S INT64_C(1000000)
#define AUDIT_DETAIL_BYTES 160
#define FREEZE_KEY_BYTES (RISK_CASE_ID_BYTES_MAX + 16) /* "case:<id>:freeze" */

struct api_aml {
    struct risk_cases_sweep_config cfg;
    pthread_mutex_t run_mu; /* one run at a time */
    pthread_mutex_t mu;     /* the timer's sleep */
    pthread_cond_t wake;
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;
};

/* One party of the operations a batch read, and its oldest operation there. */
struct sweep_subject {
    char id[RISK_CASE_PARTY_BYTES_MAX];
    int64_t since_us;
};

/* A run's buffers. */
struct sweep_buffers {
    struct pay_op *page;        /* PAY_LIST_MAX */
    struct aml_event *events;   /* AML_EVENTS_MAX */
    struct aml_alert *alerts;   /* API_AML_ALERTS_MAX */
    struct sweep_subject *subs; /* API_AML_SWEEP_SUBJECTS_MAX */
};

/* Operations as AML events ----------------------------------------------------------------- */

static bool party_is_subject(const char *party)
{
    return party[0] != '\0' && risk_cases_party_valid(party);
}

/* The subject's side of op: *out_minor of out_code when it paid, *in_minor of in_code when it
 * was paid (a payment across currencies credits the payee in credit_currency). */
struct op_side {
    bool out, in;
    int64_t out_minor, in_minor;
    const char *out_code, *in_code;
    const char *out_party, *in_party; /* the counterparty of each side */
};

static void op_side_of(const struct pay_op *op, const char *subject, struct op_side *s)
{
    memset(s, 0, sizeof(*s));
    s->out = strcmp(op->payer, subject) == 0 && op->amount_minor > 0;
    s->out_minor = op->amount_minor;
    s->out_code = op->currency;
    bool credited = op->credit_currency[0] != '\0' && op->credit_minor > 0;
    s->in = strcmp(op->payee, subject) == 0 && (credited ? op->credit_minor : op->amount_minor) > 0;
    s->in_minor = credited ? op->credit_minor : op->amount_minor;
    s->in_code = credited ? op->credit_currency : op->currency;
    bool own = strcmp(op->payer, op->payee) == 0; /* a conversion: no counterparty */
    s->out_party = own || !party_is_subject(op->payee) ? "" : op->payee;
    s->in_party = own || !party_is_subject(op->payer) ? "" : op->payer;
}

static void event_set(struct aml_event *e, const struct pay_op *op, uint8_t direction,
                      int64_t amount_minor, const char *code, const char *counterparty)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", op->id);
    e->time_s = op->created_at_us / US_PER_S;
    e->sub_us = (int32_t)(op->created_at_us % US_PER_S); /* a later send of the same second
                                                          * never takes an earlier's anchor */
    e->direction = direction;
    e->kind = op->kind;
    e->amount_minor = amount_minor;
    snprintf(e->currency, sizeof(e->currency), "%s", code);
    snprintf(e->counterparty, sizeof(e->counterparty), "%s", counterparty);
}

/* Appends op's events for subject to ev[*n..room); false when they do not fit. A movement that
 * is not one (not completed, a hold, a time out of range) adds nothing. */
static bool op_events(const struct pay_op *op, const char *subject, struct aml_event *ev,
                      size_t room, size_t *n)
{
    CF_ASSERT(*n <= room);
    if (op->status != PAY_STATUS_COMPLETED || op->kind < 1 || op->kind > AML_KIND_MAX ||
        op->created_at_us < 0 || op->created_at_us / US_PER_S > AML_TIME_S_MAX)
        return true;
    struct op_side s;
    op_side_of(op, subject, &s);
    if (room - *n < (size_t)s.out + (size_t)s.in)
        return false;
    if (s.out)
        event_set(&ev[(*n)++], op, AML_DIRECTION_OUT, s.out_minor, s.out_code, s.out_party);
    if (s.in)
        event_set(&ev[(*n)++], op, AML_DIRECTION_IN, s.in_minor, s.in_code, s.in_party);
    return true;
}

/* How far back a subject's history must reach before its oldest new operation. */
static int64_t lookback_s(const struct aml_config *cfg)
{
    int64_t s = aml_config_lookback_s(cfg);
    bool dormant = (cfg->scenarios & AML_SCENARIO_BIT(AML_SCENARIO_DORMANT)) != 0;
    if (dormant && cfg->dormant_wake_window_s > s)
        s = cfg->dormant_wake_window_s;
    CF_ASSERT(s >= 0 && s <= AML_DORMANT_S_MAX);
    return s;
}

/* The newest completed activity of subject created before before_us (the end of a dormant
 * gap), appended to ev when found within API_AML_PRIOR_PAGES_MAX pages. */
static enum cf_err history_prior(struct api *api, const struct aml_config *cfg, const char *subject,
                                 int64_t before_us, struct pay_op *page, struct aml_event *ev,
                                 size_t *n)
{
    struct pay_filter f = {.party = subject, .to_us = before_us};
    for (int p = 0; p < API_AML_PRIOR_PAGES_MAX; p++) {
        size_t got = 0;
        enum cf_err err = payments_ops_list(api->payments, &f, page, PAY_LIST_MAX, &got);
        if (err != CF_OK)
            return err;
        for (size_t i = 0; i < got; i++) {
            bool counts = page[i].kind >= 1 && page[i].kind <= AML_KIND_MAX &&
                          (cfg->dormant_kinds & AML_KIND_BIT(page[i].kind)) != 0;
            size_t before = *n;
            if (counts && op_events(&page[i], subject, ev, AML_EVENTS_MAX, n) && *n > before)
                return CF_OK;
        }
        if (got < PAY_LIST_MAX)
            return CF_OK;
        f.before_row = page[got - 1].row;
    }
    return CF_OK;
}

/* Subject's events from since_us - the lookback on (newest first, at most AML_EVENTS_MAX), and
 * the activity before them. */
static enum cf_err history_load(struct api *api, const struct aml_config *cfg,
                                const struct sweep_subject *s, struct sweep_buffers *b,
                                size_t *n_out)
{
    CF_ASSERT(s->id[0] != '\0' && s->since_us >= 0);
    int64_t from_us = s->since_us - lookback_s(cfg) * US_PER_S;
    struct pay_filter f = {.party = s->id, .from_us = from_us > 0 ? from_us : 0};
    size_t n = 0;
    bool full = false;
    enum cf_err err = CF_OK;
    while (err == CF_OK && !full) {
        size_t got = 0;
        err = payments_ops_list(api->payments, &f, b->page, PAY_LIST_MAX, &got);
        for (size_t i = 0; i < got && err == CF_OK && !full; i++)
            full = !op_events(&b->page[i], s->id, b->events, AML_EVENTS_MAX, &n);
        if (err != CF_OK || got < PAY_LIST_MAX)
            break;
        f.before_row = b->page[got - 1].row;
    }
    bool dormant = (cfg->scenarios & AML_SCENARIO_BIT(AML_SCENARIO_DORMANT)) != 0;
    if (err == CF_OK && !full && dormant && from_us > 0)
        err = history_prior(api, cfg, s->id, from_us, b->page, b->events, &n);
    if (err == CF_OK)
        *n_out = n;
    CF_ASSERT(err != CF_OK || n <= AML_EVENTS_MAX);
    return err;
}

/* The sweep ---------------------------------------------------------------------------------- */

/* Files one alert; *opened says whether it opened a new case. */
static enum cf_err alert_file(struct api *api, const struct aml_alert *al, int64_t now_us,
                              bool *opened)
{
    const char *ops[AML_EVIDENCE_MAX];
    for (uint32_t i = 0; i < al->evidence_n; i++)
        ops[i] = al->evidence[i].id;
    struct risk_case_alert a = {.kind = RISK_CASE_AML,
                                .subject = al->subject,
                                .dedup_key = al->key,
                                .scenario = al->name,
                                .detail = al->detail,
                                .evidence_ops = ops,
                                .evidence_n = al->evidence_n};
    char id[RISK_CASE_ID_BYTES_MAX];
    bool existed = false;
    enum cf_err err = risk_cases_alert(api->cases, &a, now_us, id, &existed);
    if (err == CF_OK)
        *opened = !existed;
    return err;
}

/* Whether err is the subject's data (log it, go on) rather than the run's (stop). */
static bool subject_error(enum cf_err err)
{
    return err != CF_ERR_STORAGE && err != CF_ERR_STORAGE_CONFLICT && err != CF_ERR_NOMEM &&
           err != CF_ERR_CONFIG;
}

static enum cf_err subject_scan(struct api *api, const struct sweep_subject *s,
                                struct sweep_buffers *b, int64_t now_us, struct api_aml_stats *st)
{
    const struct aml_config *cfg = &api->aml->cfg.aml;
    size_t n = 0, alerts = 0;
    enum cf_err err = history_load(api, cfg, s, b, &n);
    if (err == CF_OK)
        err = aml_scan(cfg, s->id, b->events, n, now_us / US_PER_S, b->alerts, API_AML_ALERTS_MAX,
                       &alerts);
    if (err == CF_OK && alerts == API_AML_ALERTS_MAX)
        cf_log(LOG_WARN, "aml sweep: a subject's scan kept only the newest alerts", "subject",
               s->id, NULL);
    for (size_t i = 0; i < alerts && err == CF_OK; i++) {
        bool opened = false;
        err = alert_file(api, &b->alerts[i], now_us, &opened);
        st->alerts += err == CF_OK ? 1 : 0;
        st->opened += err == CF_OK && opened ? 1 : 0;
    }
    st->subjects++;
    return err;
}

/* Adds party (when it is a customer or merchant) to subs; false when subs is full. */
static bool subject_add(struct sweep_subject *subs, size_t *n, const char *party,
                        int64_t created_at_us)
{
    if (!party_is_subject(party))
        return true;
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(subs[i].id, party) == 0) {
            if (created_at_us < subs[i].since_us)
                subs[i].since_us = created_at_us;
            return true;
        }
    }
    if (*n == API_AML_SWEEP_SUBJECTS_MAX)
        return false;
    snprintf(subs[*n].id, sizeof(subs[*n].id), "%s", party);
    subs[*n].since_us = created_at_us > 0 ? created_at_us : 0;
    (*n)++;
    return true;
}

static bool subject_known(const struct sweep_subject *subs, size_t n, const char *party)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(subs[i].id, party) == 0)
            return true;
    }
    return !party_is_subject(party);
}

/* Reads operations after *pos into subjects, moving *pos past each one taken; *more says
 * whether operations remain after the batch. */
static enum cf_err batch_collect(struct api *api, struct sweep_buffers *b,
                                 struct risk_case_mark *pos, size_t *subs_n, bool *more,
                                 struct api_aml_stats *st)
{
    size_t ops = 0;
    *subs_n = 0;
    *more = false;
    while (ops < API_AML_SWEEP_OPS_MAX) {
        size_t got = 0;
        enum cf_err err = payments_ops_completed_since(api->payments, pos->at_us, pos->row, b->page,
                                                       PAY_LIST_MAX, &got);
        if (err != CF_OK)
            return err;
        for (size_t i = 0; i < got; i++) {
            const struct pay_op *op = &b->page[i];
            bool room = *subs_n + 2 <= API_AML_SWEEP_SUBJECTS_MAX ||
                        (subject_known(b->subs, *subs_n, op->payer) &&
                         subject_known(b->subs, *subs_n, op->payee));
            if (!room) {
                *more = true;
                return CF_OK;
            }
            bool added = subject_add(b->subs, subs_n, op->payer, op->created_at_us) &&
                         subject_add(b->subs, subs_n, op->payee, op->created_at_us);
            CF_ASSERT(added);
            pos->at_us = op->updated_at_us;
            pos->row = op->row;
            ops++;
            st->operations++;
        }
        if (got < PAY_LIST_MAX)
            return CF_OK;
    }
    *more = true;
    return CF_OK;
}

/* The watermark after a batch: where it stopped, but never later than the run's start less the
 * commit lag. */
static struct risk_case_mark mark_after(const struct risk_case_mark *pos, int64_t start_us)
{
    struct risk_case_mark lag = {.at_us = start_us - API_AML_SWEEP_LAG_US, .row = 0};
    if (lag.at_us < 0)
        lag.at_us = 0;
    bool before = pos->at_us < lag.at_us || (pos->at_us == lag.at_us && pos->row <= lag.row);
    return before ? *pos : lag;
}

static enum cf_err sweep_batches(struct api *api, struct sweep_buffers *b, int64_t now_us,
                                 struct api_aml_stats *st)
{
    struct risk_case_mark pos;
    enum cf_err err = risk_cases_mark_get(api->cases, API_AML_MARK, &pos);
    bool more = true;
    for (int batch = 0; err == CF_OK && more && batch < API_AML_SWEEP_BATCHES_MAX; batch++) {
        size_t subs_n = 0;
        err = batch_collect(api, b, &pos, &subs_n, &more, st);
        for (size_t i = 0; i < subs_n && err == CF_OK; i++) {
            if (atomic_load(&api->aml->stopping))
                return CF_ERR_SHUTTING_DOWN;
            enum cf_err e = subject_scan(api, &b->subs[i], b, now_us, st);
            if (e != CF_OK && subject_error(e)) {
                cf_log(LOG_WARN, "aml sweep: subject not scanned", "subject", b->subs[i].id, "code",
                       cf_err_code(e), NULL);
                st->skipped++;
                e = CF_OK;
            }
            err = e;
        }
        struct risk_case_mark next = mark_after(&pos, now_us);
        if (err == CF_OK)
            err = risk_cases_mark_set(api->cases, API_AML_MARK, &next, now_us);
    }
    return err;
}

static enum cf_err sweep_run(struct api *api, int64_t now_us, struct api_aml_stats *st)
{
    CF_ASSERT(api != NULL && st != NULL && now_us >= 0);
    if (api->aml == NULL || api->cases == NULL || api->payments == NULL)
        return CF_ERR_CONFIG;
    memset(st, 0, sizeof(*st));
    struct sweep_buffers b = {
        .page = calloc(PAY_LIST_MAX, sizeof(*b.page)),
        .events = calloc(AML_EVENTS_MAX, sizeof(*b.events)),
        .alerts = calloc(API_AML_ALERTS_MAX, sizeof(*b.alerts)),
        .subs = calloc(API_AML_SWEEP_SUBJECTS_MAX, sizeof(*b.subs)),
    };
    enum cf_err err = CF_ERR_NOMEM;
    if (b.page != NULL && b.events != NULL && b.alerts != NULL && b.subs != NULL) {
        pthread_mutex_lock(&api->aml->run_mu);
        err = sweep_batches(api, &b, now_us, st);
        pthread_mutex_unlock(&api->aml->run_mu);
    }
    if (b.page != NULL)
        hash_wipe(b.page, PAY_LIST_MAX * sizeof(*b.page)); /* notes were opened */
    free(b.page);
    free(b.events);
    free(b.alerts);
    free(b.subs);
    CF_ASSERT(err != CF_OK || st->opened <= st->alerts);
    return err;
}

static void stats_log(const struct api_aml_stats *st, enum cf_err err)
{
    char ops[24], subs[24], alerts[24], opened[24], skipped[24];
    snprintf(ops, sizeof(ops), "%zu", st->operations);
    snprintf(subs, sizeof(subs), "%zu", st->subjects);
    snprintf(alerts, sizeof(alerts), "%zu", st->alerts);
    snprintf(opened, sizeof(opened), "%zu", st->opened);
    snprintf(skipped, sizeof(skipped), "%zu", st->skipped);
    enum log_level level = err != CF_OK ? LOG_WARN : st->opened > 0 ? LOG_INFO : LOG_DEBUG;
    cf_log(level, "aml sweep", "operations", ops, "subjects", subs, "alerts", alerts, "opened",
           opened, "skipped", skipped, "code", cf_err_code(err), NULL);
}

enum cf_err api_risk_aml_sweep(struct api *api, int64_t now_us, size_t *cases_out)
{
    CF_ASSERT(api != NULL && cases_out != NULL);
    struct api_aml_stats st;
    enum cf_err err = sweep_run(api, now_us, &st);
    if (api->aml != NULL)
        stats_log(&st, err);
    if (err == CF_OK)
        *cases_out = st.opened;
    return err;
}

/* The timer ---------------------------------------------------------------------------------- */

static void *aml_main(void *arg)
{
    struct api *api = arg;
    struct api_aml *a = api->aml;
    pthread_mutex_lock(&a->mu);
    while (!atomic_load(&a->stopping)) {
        struct timespec next = cf_deadline_after_ms((long)a->cfg.period_s * 1000);
        int rc = 0;
        while (!atomic_load(&a->stopping) && rc == 0)
            rc = pthread_cond_timedwait(&a->wake, &a->mu, &next); /* 0: a signal or spurious */
        if (atomic_load(&a->stopping))
            break;
        pthread_mutex_unlock(&a->mu);
        size_t opened = 0;
        cf_best_effort(api_risk_aml_sweep(api, api_pay_now_us(), &opened));
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

enum cf_err api_risk_aml_start(struct api *api, const struct risk_cases_sweep_config *cfg)
{
    CF_ASSERT(api != NULL && cfg != NULL && api->aml == NULL);
    CF_ASSERT(cfg->period_s <= RISK_CASES_SWEEP_PERIOD_S_MAX);
    if (aml_config_check(&cfg->aml) != CF_OK) {
        fprintf(stderr, "coffer: aml settings: a currency is unknown or listed twice, or a "
                        "window, count or share is out of range (see risk/aml.h)\n");
        return CF_ERR_CONFIG;
    }
    struct api_aml *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return CF_ERR_NOMEM;
    a->cfg = *cfg;
    atomic_init(&a->stopping, false);
    pthread_mutex_init(&a->run_mu, NULL);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->wake, NULL);
    api->aml = a;
    if (cfg->period_s > 0) {
        if (pthread_create(&a->thread, NULL, aml_main, api) != 0) {
            api_risk_aml_stop(api);
            return CF_ERR_NOMEM;
        }
        a->thread_started = true;
    }
    CF_ASSERT(api->aml == a);
    return CF_OK;
}

void api_risk_aml_stop(struct api *api)
{
    struct api_aml *a = api != NULL ? api->aml : NULL;
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    atomic_store(&a->stopping, true);
    pthread_cond_broadcast(&a->wake);
    pthread_mutex_unlock(&a->mu);
    if (a->thread_started)
        pthread_join(a->thread, NULL);
    pthread_mutex_lock(&a->run_mu); /* an on-demand run on a worker finishes first */
    pthread_mutex_unlock(&a->run_mu);
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->run_mu);
    api->aml = NULL;
    free(a);
}

/* JSON --------------------------------------------------------------------------------------- */

static json_t *text_or_null(const char *s) { return s[0] != '\0' ? json_string(s) : json_null(); }

/* A case as staff see it; with_reason adds the decision's reason (when it was opened). */
static json_t *case_json(const struct risk_case *c, bool with_reason)
{
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:o,s:o}", "id", c->id,
        "kind", risk_cases_kind_name(c->kind), "status", risk_cases_status_name(c->status),
        "priority", risk_cases_priority_name(c->priority), "subject", c->subject, "scenario",
        c->scenario, "dedup_key", c->dedup_key, "detail", c->detail, "assignee",
        text_or_null(c->assignee), "decision",
        c->decision != 0 ? json_string(risk_cases_decision_name(c->decision)) : json_null(),
        "decided_by", text_or_null(c->decided_by), "decided_at", api_risk_time_json(c->decided_at_us),
        "alerts", (json_int_t)c->alerts_n, "evidence_count", (json_int_t)c->evidence_n,
        "notes_count", (json_int_t)c->notes_n, "created_at", api_risk_time_json(c->created_at_us),
        "updated_at", api_risk_time_json(c->updated_at_us));
    if (o != NULL && with_reason)
        json_object_set_new(o, "reason", text_or_null(c->reason));
    return o;
}

static json_t *event_json(const struct risk_case_event *e)
{
    json_t *o = json_pack("{s:s,s:s,s:o}", "type", risk_cases_event_name(e->type), "by", e->by,
                          "at", api_risk_time_json(e->at_us));
    if (o == NULL)
        return NULL;
    switch (e->type) {
    case RISK_CASE_EVENT_OPENED:
    case RISK_CASE_EVENT_ALERT_ADDED:
        json_object_set_new(o, "scenario", json_string(e->ref));
        json_object_set_new(o, "evidence_added", json_integer(e->count));
        break;
    case RISK_CASE_EVENT_ASSIGNED:
        json_object_set_new(o, "assignee", text_or_null(e->ref));
        break;
    case RISK_CASE_EVENT_NOTE_ADDED:
        json_object_set_new(o, "note_id", json_string(e->ref));
        break;
    case RISK_CASE_EVENT_EVIDENCE_ADDED:
        json_object_set_new(o, "operation_id", json_string(e->ref));
        break;
    default:
        json_object_set_new(o, "decision", json_string(e->ref));
        break;
    }
    return o;
}

static json_t *note_json(const struct risk_case_note *n)
{
    return json_pack("{s:s,s:s,s:s,s:o}", "id", n->id, "text", n->text, "by", n->by, "at",
                     api_risk_time_json(n->at_us));
}

/* An operation's facts from subject's side (never its note: the customer's words). */
static json_t *op_facts_json(const struct pay_op *op, const char *subject)
{
    struct op_side s;
    op_side_of(op, subject, &s);
    const char *direction = s.out && s.in ? "both" : s.out ? "out" : s.in ? "in" : "none";
    const char *counterparty = s.out ? s.out_party : s.in_party;
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:o,s:o,s:s,s:o,s:I,s:s,s:I,s:s,s:s,s:s}", "id", op->id, "type",
                  pay_kind_name(op->kind), "status", pay_status_name(op->status), "created_at",
                  api_risk_time_json(op->created_at_us), "completed_at",
                  op->status == PAY_STATUS_COMPLETED ? api_risk_time_json(op->updated_at_us) : json_null(),
                  "direction", direction, "counterparty", text_or_null(counterparty),
                  "amount_minor", (json_int_t)op->amount_minor, "currency", op->currency,
                  "fee_minor", (json_int_t)op->fee_minor, "payer", op->payer, "payee", op->payee,
                  "reference", op->reference);
    if (o != NULL && op->credit_currency[0] != '\0') {
        json_object_set_new(o, "credit_minor", json_integer(op->credit_minor));
        json_object_set_new(o, "credit_currency", json_string(op->credit_currency));
    }
    return o;
}

/* Routes: reading ---------------------------------------------------------------------------- */

static enum cf_err query_time(struct http_request *req, const char *name, int64_t *out)
{
    const char *v = http_request_query(req, name);
    return v == NULL ? CF_OK : cf_time_parse_rfc3339(v, out);
}

/* The list's query parameters into f; *detail names the one refused. */
static enum cf_err filter_read(struct http_request *req, struct risk_case_filter *f,
                               const char **detail)
{
    const char *status = http_request_query(req, "status");
    const char *kind = http_request_query(req, "kind");
    const char *scenario = http_request_query(req, "scenario");
    const char *assignee = http_request_query(req, "assignee");
    f->subject = http_request_query(req, "subject");
    if (status != NULL && (f->status = risk_cases_status_parse(status)) == 0) {
        *detail = "status: open or closed";
        return CF_ERR_INVALID_FIELD;
    }
    if (kind != NULL && (f->kind = risk_cases_kind_parse(kind)) == 0) {
        *detail = "kind: aml, sanctions, monitoring or manual";
        return CF_ERR_INVALID_FIELD;
    }
    if (f->subject != NULL && !risk_cases_party_valid(f->subject)) {
        *detail = "subject: a customer's or merchant's id";
        return CF_ERR_INVALID_FIELD;
    }
    if (assignee != NULL && strcmp(assignee, "none") != 0 &&
        (strncmp(assignee, "usr_", 4) != 0 || !risk_cases_party_valid(assignee))) {
        *detail = "assignee: a staff user's id, or none";
        return CF_ERR_INVALID_FIELD;
    }
    f->assignee = assignee != NULL && strcmp(assignee, "none") == 0 ? "" : assignee;
    size_t sn = scenario != NULL ? strlen(scenario) : 1;
    bool scenario_ok =
        sn > 0 && sn < RISK_CASE_SCENARIO_BYTES_MAX &&
        (scenario == NULL || strspn(scenario, "abcdefghijklmnopqrstuvwxyz0123456789_") == sn);
    if (!scenario_ok) {
        *detail = "scenario";
        return CF_ERR_INVALID_FIELD;
    }
    f->scenario = scenario;
    if (query_time(req, "from", &f->created_from_us) != CF_OK) {
        *detail = "from";
        return CF_ERR_INVALID_FIELD;
    }
    if (query_time(req, "to", &f->created_to_us) != CF_OK) {
        *detail = "to";
        return CF_ERR_INVALID_FIELD;
    }
    return CF_OK;
}

static void cases_list_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct risk_case_filter f = {0};
    size_t limit = 0, n = 0;
    const char *detail = NULL;
    enum cf_err err = api_risk_page_params(req, RISK_CASE_LIST_MAX, "limit: 1 to 100", &limit,
                                           &f.before_row, &detail);
    if (err == CF_OK)
        err = filter_read(req, &f, &detail);
    struct risk_case *cases = err == CF_OK ? calloc(limit, sizeof(*cases)) : NULL;
    if (err == CF_OK && cases == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK)
        err =
            api->cases != NULL ? risk_cases_list(api->cases, &f, cases, limit, &n) : CF_ERR_CONFIG;
    json_t *data = json_array();
    for (size_t i = 0; i < n && err == CF_OK; i++)
        json_array_append_new(data, case_json(&cases[i], false));
    uint64_t last_row = n > 0 ? cases[n - 1].row : 0;
    free(cases);
    api_risk_page_reply(req, resp, err, detail, data, n, limit, last_row);
}

enum http_action api_risk_cases_list(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, cases_list_run);
}

/* A case with everything it holds, read for a staff view or a report (heap parts). */
struct case_view {
    struct risk_case c;
    struct risk_case_note *notes;
    size_t notes_n;
    struct risk_case_evidence *evidence;
    size_t evidence_n;
    struct risk_case_event *events;
    size_t events_n;
};

static void view_free(struct case_view *v)
{
    if (v->notes != NULL)
        hash_wipe(v->notes, RISK_CASE_NOTES_MAX * sizeof(*v->notes));
    free(v->notes);
    free(v->evidence);
    free(v->events);
    hash_wipe(&v->c, sizeof(v->c));
}

static enum cf_err view_read(struct api *api, const char *id, bool events, struct case_view *v)
{
    memset(v, 0, sizeof(*v));
    if (api->cases == NULL)
        return CF_ERR_CONFIG;
    v->notes = calloc(RISK_CASE_NOTES_MAX, sizeof(*v->notes));
    v->evidence = calloc(API_CASE_EVIDENCE_SHOWN, sizeof(*v->evidence));
    v->events = events ? calloc(API_CASE_EVENTS_SHOWN, sizeof(*v->events)) : NULL;
    if (v->notes == NULL || v->evidence == NULL || (events && v->events == NULL))
        return CF_ERR_NOMEM;
    enum cf_err err = risk_cases_get(api->cases, id, &v->c);
    if (err == CF_OK)
        err = risk_cases_notes(api->cases, id, v->notes, RISK_CASE_NOTES_MAX, &v->notes_n);
    if (err == CF_OK)
        err = risk_cases_evidence(api->cases, id, v->evidence, API_CASE_EVIDENCE_SHOWN,
                                  &v->evidence_n);
    if (err == CF_OK && events)
        err = risk_cases_events(api->cases, id, v->events, API_CASE_EVENTS_SHOWN, &v->events_n);
    return err;
}

static json_t *evidence_json(struct api *api, const struct case_view *v, struct pay_op *op)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < v->evidence_n && arr != NULL; i++) {
        const struct risk_case_evidence *e = &v->evidence[i];
        bool found = payments_op_get(api->payments, e->operation_id, op) == CF_OK;
        json_array_append_new(arr,
                              json_pack("{s:s,s:s,s:o,s:o}", "operation_id", e->operation_id, "by",
                                        e->by, "added_at", api_risk_time_json(e->added_at_us), "operation",
                                        found ? op_facts_json(op, v->c.subject) : json_null()));
    }
    hash_wipe(op, sizeof(*op));
    return arr;
}

static json_t *view_json(struct api *api, const struct case_view *v, struct pay_op *op)
{
    json_t *o = case_json(&v->c, true);
    json_t *notes = json_array(), *events = json_array();
    for (size_t i = 0; i < v->notes_n && notes != NULL; i++)
        json_array_append_new(notes, note_json(&v->notes[i]));
    for (size_t i = 0; i < v->events_n && events != NULL; i++)
        json_array_append_new(events, event_json(&v->events[i]));
    if (o != NULL) {
        json_object_set_new(o, "notes", notes);
        json_object_set_new(o, "evidence", evidence_json(api, v, op));
        json_object_set_new(o, "events", events);
        return o;
    }
    json_decref(notes);
    json_decref(events);
    return NULL;
}

static void case_get_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct case_view v;
    struct pay_op *op = arena_calloc(req->arena, 1, sizeof(*op));
    enum cf_err err = op == NULL ? CF_ERR_NOMEM : view_read(api, req->params[0], true, &v);
    json_t *o = err == CF_OK ? view_json(api, &v, op) : NULL;
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        cf_best_effort(identity_audit_queue(api->identity, &ctx, api_actor(req),
                                            "staff.risk.case_view", v.c.id, "ok", NULL));
    }
    if (op != NULL)
        view_free(&v);
    api_risk_object_reply(req, resp, err, NULL, 200, o);
}

enum http_action api_risk_case_get(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, case_get_run);
}

/* Routes: writing ---------------------------------------------------------------------------- */

/* A write's decoded body. */
struct write_body {
    uint8_t type; /* enum risk_case_event_type */
    const char *assignee;
    const char *text; /* a note, or the decision's reason */
    const char *operation_id;
    uint8_t decision;
};

/* Reads string field `key` (required unless null_ok, where null and absence give "") into the
 * request's arena. */
static enum cf_err body_string(struct http_request *req, json_t *root, const char *key,
                               size_t bytes_max, bool null_ok, const char **out)
{
    json_t *v = json_object_get(root, key);
    if (null_ok && (v == NULL || json_is_null(v))) {
        *out = "";
        return CF_OK;
    }
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_string(root, key, true, bytes_max, &s, &n);
    if (err == CF_OK && (*out = arena_strndup(req->arena, s, n)) == NULL)
        err = CF_ERR_NOMEM;
    return err;
}

static enum cf_err body_fields(struct http_request *req, json_t *root, struct write_body *b,
                               const char **detail)
{
    enum cf_err err = CF_OK;
    const char *decision = NULL;
    switch (b->type) {
    case RISK_CASE_EVENT_ASSIGNED:
        *detail = "assignee: a risk analyst's or admin's user id, or null";
        if (json_object_get(root, "assignee") == NULL)
            return CF_ERR_MISSING_FIELD;
        return body_string(req, root, "assignee", RISK_CASE_PARTY_BYTES_MAX - 1, true,
                           &b->assignee);
    case RISK_CASE_EVENT_NOTE_ADDED:
        *detail = "text: 1 to 2000 characters";
        err = body_string(req, root, "text", RISK_CASE_NOTE_BYTES_MAX - 1, false, &b->text);
        if (err == CF_OK &&
            !risk_cases_text_valid(b->text, RISK_CASE_NOTE_CHARS_MAX, "text", detail))
            err = CF_ERR_INVALID_FIELD;
        return err;
    case RISK_CASE_EVENT_EVIDENCE_ADDED:
        *detail = "operation_id";
        err = body_string(req, root, "operation_id", RISK_CASE_OP_BYTES_MAX - 1, false,
                          &b->operation_id);
        return err == CF_OK && !risk_cases_op_valid(b->operation_id) ? CF_ERR_INVALID_FIELD : err;
    default:
        *detail = "decision: clear, freeze or report";
        err = body_string(req, root, "decision", 16, false, &decision);
        if (err == CF_OK && (b->decision = risk_cases_decision_parse(decision)) == 0)
            err = CF_ERR_INVALID_FIELD;
        if (err != CF_OK)
            return err;
        *detail = "reason: 1 to 500 characters";
        err = body_string(req, root, "reason", RISK_CASE_REASON_BYTES_MAX - 1, false, &b->text);
        if (err == CF_OK &&
            !risk_cases_text_valid(b->text, RISK_CASE_REASON_CHARS_MAX, "reason", detail))
            err = CF_ERR_INVALID_FIELD;
        return err;
    }
}

static enum cf_err body_decode(struct http_request *req, struct write_body *b, const char **detail)
{
    static const char *const assign[] = {"assignee", NULL}, *const note[] = {"text", NULL},
                             *const evidence[] = {"operation_id", NULL},
                             *const decide[] = {"decision", "reason", NULL};
    const char *const *fields = b->type == RISK_CASE_EVENT_ASSIGNED         ? assign
                                : b->type == RISK_CASE_EVENT_NOTE_ADDED     ? note
                                : b->type == RISK_CASE_EVENT_EVIDENCE_ADDED ? evidence
                                                                            : decide;
    json_t *root = NULL;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, detail);
    if (err == CF_OK)
        err = body_fields(req, root, b, detail);
    else
        *detail = api_detail_keep(req, *detail); /* it may point into root */
    json_decref(root);
    return err;
}

/* The assignee must be a risk analyst or an admin. */
static enum cf_err assignee_check(struct api *api, const char *assignee)
{
    if (assignee[0] == '\0')
        return CF_OK;
    struct identity_profile p;
    enum cf_err err = risk_cases_party_valid(assignee) && strncmp(assignee, "usr_", 4) == 0
                          ? identity_profile_get(api->identity, assignee, &p)
                          : CF_ERR_NOT_FOUND;
    bool ok = err == CF_OK && !p.closed && (p.role == IDENTITY_RISK || p.role == IDENTITY_ADMIN);
    if (err == CF_OK)
        hash_wipe(&p, sizeof(p));
    if (err == CF_ERR_NOT_FOUND || (err == CF_OK && !ok))
        return CF_ERR_INVALID_FIELD;
    return err;
}

/* The operation must exist and concern the case's subject. */
static enum cf_err operation_check(struct api *api, const char *case_id, const char *op_id)
{
    struct risk_case *c = calloc(1, sizeof(*c));
    struct pay_op *op = calloc(1, sizeof(*op));
    enum cf_err err =
        c == NULL || op == NULL ? CF_ERR_NOMEM : risk_cases_get(api->cases, case_id, c);
    enum cf_err found = err == CF_OK ? payments_op_get(api->payments, op_id, op) : CF_OK;
    if (err == CF_OK && found == CF_OK && strcmp(op->payer, c->subject) != 0 &&
        strcmp(op->payee, c->subject) != 0)
        found = CF_ERR_NOT_FOUND;
    if (err == CF_OK && found != CF_OK)
        err = found == CF_ERR_NOT_FOUND ? CF_ERR_INVALID_FIELD : found;
    if (c != NULL)
        hash_wipe(c, sizeof(*c));
    if (op != NULL)
        hash_wipe(op, sizeof(*op));
    free(c);
    free(op);
    return err;
}

static void write_audit(struct http_request *req, const struct risk_case_event *e)
{
    struct api *api = req->app;
    static const char *const actions[] = {
        "", "", "", "case.assign", "case.note", "case.evidence", "case.decide"};
    char detail[AUDIT_DETAIL_BYTES];
    const char *what = e->type == RISK_CASE_EVENT_ASSIGNED         ? "assignee"
                       : e->type == RISK_CASE_EVENT_NOTE_ADDED     ? "note"
                       : e->type == RISK_CASE_EVENT_EVIDENCE_ADDED ? "operation"
                                                                   : "decision";
    snprintf(detail, sizeof(detail), "%s %s", what, e->ref[0] != '\0' ? e->ref : "none");
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    CF_ASSERT(e->type >= RISK_CASE_EVENT_ASSIGNED && e->type <= RISK_CASE_EVENT_DECIDED);
    cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), actions[e->type], e->case_id,
                                  "ok", detail));
}

/* Acts on a freeze decision: freezes the case's subject (frozen already is fine). */
static enum cf_err decision_freeze(struct http_request *req, const char *case_id,
                                   const char **detail)
{
    struct api *api = req->app;
    struct risk_case *c = calloc(1, sizeof(*c));
    struct api_risk_outcome *out = arena_calloc(req->arena, 1, sizeof(*out));
    enum cf_err err =
        c == NULL || out == NULL ? CF_ERR_NOMEM : risk_cases_get(api->cases, case_id, c);
    char key[FREEZE_KEY_BYTES];
    struct risk_freeze_idem idem = {.key = key};
    snprintf(key, sizeof(key), "case:%s:freeze", case_id);
    hash_sha256(key, strlen(key), idem.request_hash);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    if (err == CF_OK && c->decision != RISK_CASE_DECISION_FREEZE)
        err = CF_ERR_INTERNAL;
    if (err == CF_OK)
        err = api_risk_party_freeze(api, req->arena, &ctx, c->subject, c->reason,
                                    api->freeze_blocks_incoming, api_actor(req), &idem, out);
    if (err == CF_ERR_CONFLICT && out->detail != NULL &&
        strstr(out->detail, "frozen already") != NULL)
        err = CF_OK;
    if (err != CF_OK)
        *detail = "the decision is recorded but the subject could not be frozen: repeat the "
                  "request with the same Idempotency-Key";
    if (c != NULL)
        hash_wipe(c, sizeof(*c));
    free(c);
    return err;
}

static enum cf_err write_apply(struct http_request *req, const struct write_body *b,
                               const struct risk_case_idem *idem, struct risk_case_event *ev,
                               bool *replay, const char **detail)
{
    struct api *api = req->app;
    const char *id = req->params[0], *by = api_actor(req);
    int64_t now = api_pay_now_us();
    enum cf_err err = api->cases == NULL ? CF_ERR_CONFIG : CF_OK;
    if (err == CF_OK && b->type == RISK_CASE_EVENT_ASSIGNED &&
        (err = assignee_check(api, b->assignee)) != CF_OK)
        *detail = "assignee: a risk analyst's or admin's user id, or null";
    if (err == CF_OK && b->type == RISK_CASE_EVENT_EVIDENCE_ADDED &&
        (err = operation_check(api, id, b->operation_id)) != CF_OK)
        *detail =
            err == CF_ERR_INVALID_FIELD ? "operation_id: no operation of the case's subject" : NULL;
    if (err != CF_OK)
        return err;
    *detail = NULL;
    if (b->type == RISK_CASE_EVENT_ASSIGNED)
        err = risk_cases_assign(api->cases, id, b->assignee, by, idem, now, ev, replay);
    else if (b->type == RISK_CASE_EVENT_NOTE_ADDED)
        err = risk_cases_note_add(api->cases, id, b->text, by, idem, now, ev, replay);
    else if (b->type == RISK_CASE_EVENT_EVIDENCE_ADDED)
        err = risk_cases_evidence_add(api->cases, id, b->operation_id, by, idem, now, ev, replay);
    else
        err = risk_cases_decide(api->cases, id, b->decision, b->text, by, idem, now, ev, replay);
    if (err == CF_ERR_CONFLICT)
        *detail = b->type == RISK_CASE_EVENT_EVIDENCE_ADDED && !*replay
                      ? "the operation is evidence of this case already, or the case is closed"
                      : "the case is closed";
    if (err == CF_ERR_RANGE_TOO_LARGE)
        *detail = b->type == RISK_CASE_EVENT_NOTE_ADDED ? "a case holds at most 200 notes"
                                                        : "a case holds at most 500 operations";
    if (err == CF_OK && !*replay)
        write_audit(req, ev);
    if (err == CF_OK && b->type == RISK_CASE_EVENT_DECIDED &&
        b->decision == RISK_CASE_DECISION_FREEZE)
        err = decision_freeze(req, id, detail);
    if (err == CF_OK && b->type == RISK_CASE_EVENT_DECIDED &&
        b->decision == RISK_CASE_DECISION_CLEAR) { /* a sanctions case cleared lifts its block */
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = api_risk_screening_case_cleared(api, &ctx, id, by);
    }
    return err;
}

static void write_reply(struct http_request *req, struct http_response *resp, int status,
                        const struct risk_case_event *ev)
{
    struct api *api = req->app;
    struct risk_case *c = calloc(1, sizeof(*c));
    enum cf_err err = c == NULL ? CF_ERR_NOMEM : risk_cases_get(api->cases, ev->case_id, c);
    json_t *o = err == CF_OK
                    ? json_pack("{s:o,s:o}", "case", case_json(c, true), "event", event_json(ev))
                    : NULL;
    if (c != NULL)
        hash_wipe(c, sizeof(*c));
    free(c);
    if (o == NULL) {
        api_problem(req, resp, err != CF_OK ? err : CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, status, o);
}

static void write_run(struct http_request *req, struct http_response *resp, uint8_t type)
{
    char key[PAY_IDEM_BYTES_MAX];
    struct risk_case_idem idem = {.key = key};
    struct write_body b = {.type = type};
    struct risk_case_event ev;
    bool replay = false;
    const char *detail = NULL;
    enum cf_err err = api_pay_idem_read(req, key, idem.request_hash);
    if (err == CF_OK)
        err = body_decode(req, &b, &detail);
    if (err == CF_OK)
        err = write_apply(req, &b, &idem, &ev, &replay, &detail);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    bool created = type == RISK_CASE_EVENT_NOTE_ADDED || type == RISK_CASE_EVENT_EVIDENCE_ADDED;
    write_reply(req, resp, created ? 201 : 200, &ev);
}

static void assign_run(struct http_request *req, struct http_response *resp)
{
    write_run(req, resp, RISK_CASE_EVENT_ASSIGNED);
}

static void note_run(struct http_request *req, struct http_response *resp)
{
    write_run(req, resp, RISK_CASE_EVENT_NOTE_ADDED);
}

static void evidence_run(struct http_request *req, struct http_response *resp)
{
    write_run(req, resp, RISK_CASE_EVENT_EVIDENCE_ADDED);
}

static void decide_run(struct http_request *req, struct http_response *resp)
{
    write_run(req, resp, RISK_CASE_EVENT_DECIDED);
}

enum http_action api_risk_case_assign(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, assign_run);
}

enum http_action api_risk_case_note(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, note_run);
}

enum http_action api_risk_case_evidence(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, evidence_run);
}

enum http_action api_risk_case_decide(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, decide_run);
}

/* Routes: the sweep -------------------------------------------------------------------------- */

static void sweep_http_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct api_aml_stats st;
    const char *detail = NULL;
    enum cf_err err = api_risk_empty_body(req, &detail);
    if (err != CF_OK) {
        api_problem(req, resp, err, detail);
        return;
    }
    err = sweep_run(api, api_pay_now_us(), &st);
    if (api->aml != NULL)
        stats_log(&st, err);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    char line[AUDIT_DETAIL_BYTES];
    snprintf(line, sizeof(line), "operations %zu alerts %zu opened %zu", st.operations, st.alerts,
             st.opened);
    cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), "case.aml_sweep", "aml",
                                  err == CF_OK ? "ok" : cf_err_code(err),
                                  err == CF_OK ? line : NULL));
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    json_t *o =
        json_pack("{s:I,s:I,s:I,s:I,s:I}", "operations", (json_int_t)st.operations, "subjects",
                  (json_int_t)st.subjects, "alerts", (json_int_t)st.alerts, "cases_opened",
                  (json_int_t)st.opened, "subjects_skipped", (json_int_t)st.skipped);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

enum http_action api_risk_aml_sweep_run(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, sweep_http_run);
}

/* Routes: the suspicious-activity report ----------------------------------------------------- */

/* The subject's identity, opened for one report. */
struct subject_facts {
    bool merchant;
    char name[IDENTITY_MERCHANT_NAME_BYTES_MAX + 1]; /* a customer's name, a merchant's legal
                                                      * name */
    char display_name[IDENTITY_MERCHANT_NAME_BYTES_MAX + 1]; /* a merchant's */
    char contact[IDENTITY_LOGIN_BYTES_MAX + 1];              /* a customer's email or phone */
    char country[PAY_COUNTRY_BYTES]; /* a merchant's; a customer's residence (KYC) */
    char city[PAY_CITY_BYTES_MAX];
    /* a customer's KYC details, "" when none were given */
    char legal_name[RISK_KYC_NAME_BYTES_MAX];
    char date_of_birth[RISK_KYC_DATE_BYTES];
    char nationality[RISK_KYC_COUNTRY_BYTES];
    int kyc_tier;
    bool kyc_verified; /* the details come from an approved submission */
};

/* One currency's totals over the evidence, from the subject's side. */
struct report_total {
    char currency[MONEY_CODE_BYTES_MAX + 1];
    int64_t operations;
    int64_t in_minor, out_minor;
};

struct report {
    struct case_view v;
    struct pay_op *ops; /* the evidence operations found, by creation time */
    size_t ops_n;
    struct report_total *totals; /* at most 2 * ops_n */
    size_t totals_n;
    struct subject_facts who;
    int64_t now_us;
};

/* A customer's KYC details: those of the latest submitted submission, else of the draft. */
static enum cf_err kyc_facts(struct api *api, const char *subject, struct subject_facts *out)
{
    if (api->kyc == NULL)
        return CF_OK;
    struct risk_kyc_view *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = risk_kyc_view_get(api->kyc, subject, true, v);
    const struct risk_kyc_submission *sub = v->has_latest && v->latest.has_details     ? &v->latest
                                            : v->has_current && v->current.has_details ? &v->current
                                                                                       : NULL;
    if (err == CF_OK && sub != NULL) {
        const struct risk_kyc_details *d = &sub->details;
        snprintf(out->legal_name, sizeof(out->legal_name), "%s", d->legal_name);
        snprintf(out->date_of_birth, sizeof(out->date_of_birth), "%s", d->date_of_birth);
        snprintf(out->nationality, sizeof(out->nationality), "%s", d->nationality);
        snprintf(out->country, sizeof(out->country), "%s", d->country);
        out->kyc_verified = sub->state == RISK_KYC_APPROVED;
    }
    if (err == CF_OK)
        out->kyc_tier = v->tier;
    hash_wipe(v, sizeof(*v));
    free(v);
    return err;
}

static enum cf_err subject_read(struct api *api, const char *subject, struct subject_facts *out)
{
    memset(out, 0, sizeof(*out));
    enum cf_err err = CF_OK;
    if (strncmp(subject, "usr_", 4) == 0) {
        struct identity_profile p;
        err = identity_profile_get(api->identity, subject, &p);
        if (err == CF_OK) {
            snprintf(out->name, sizeof(out->name), "%s", p.name);
            snprintf(out->contact, sizeof(out->contact), "%s", p.login);
        }
        hash_wipe(&p, sizeof(p));
        if (err == CF_OK || err == CF_ERR_NOT_FOUND) /* a closed account: KYC records remain */
            err = kyc_facts(api, subject, out);
        return err;
    }
    out->merchant = true;
    struct identity_merchant im;
    struct pay_merchant m;
    err = identity_merchant_get(api->identity, subject, &im);
    if (err == CF_OK) {
        snprintf(out->name, sizeof(out->name), "%s", im.legal_name);
        snprintf(out->display_name, sizeof(out->display_name), "%s", im.display_name);
    }
    enum cf_err e =
        err == CF_OK ? payments_merchant_get(api->payments, subject, false, &m) : CF_ERR_NOT_FOUND;
    if (e == CF_OK) {
        snprintf(out->country, sizeof(out->country), "%s", m.country);
        snprintf(out->city, sizeof(out->city), "%s", m.city);
    }
    hash_wipe(&m, sizeof(m));
    if (err == CF_OK && e != CF_OK && e != CF_ERR_NOT_FOUND)
        err = e;
    return err == CF_ERR_NOT_FOUND ? CF_OK : err;
}

static int op_order(const void *a, const void *b)
{
    const struct pay_op *x = a, *y = b;
    if (x->created_at_us != y->created_at_us)
        return x->created_at_us < y->created_at_us ? -1 : 1;
    return strcmp(x->id, y->id);
}

static enum cf_err total_add(struct report *r, const char *code, bool in, int64_t amount_minor)
{
    size_t i = 0;
    while (i < r->totals_n && strcmp(r->totals[i].currency, code) != 0)
        i++;
    CF_ASSERT(i < 2 * r->ops_n);
    if (i == r->totals_n) {
        snprintf(r->totals[i].currency, sizeof(r->totals[i].currency), "%s", code);
        r->totals_n++;
    }
    struct report_total *t = &r->totals[i];
    t->operations++;
    return money_add(in ? t->in_minor : t->out_minor, amount_minor,
                     in ? &t->in_minor : &t->out_minor);
}

/* Reads the evidence operations (sorted) and adds their totals. */
static enum cf_err report_ops(struct api *api, struct report *r)
{
    r->ops = calloc(r->v.evidence_n + 1, sizeof(*r->ops));
    r->totals = calloc(2 * r->v.evidence_n + 1, sizeof(*r->totals));
    if (r->ops == NULL || r->totals == NULL)
        return CF_ERR_NOMEM;
    for (size_t i = 0; i < r->v.evidence_n; i++) {
        enum cf_err err =
            payments_op_get(api->payments, r->v.evidence[i].operation_id, &r->ops[r->ops_n]);
        if (err != CF_OK && err != CF_ERR_NOT_FOUND)
            return err;
        r->ops_n += err == CF_OK ? 1 : 0;
    }
    qsort(r->ops, r->ops_n, sizeof(*r->ops), op_order);
    enum cf_err err = CF_OK;
    for (size_t i = 0; i < r->ops_n && err == CF_OK; i++) {
        struct op_side s;
        op_side_of(&r->ops[i], r->v.c.subject, &s);
        if (s.out)
            err = total_add(r, s.out_code, false, s.out_minor);
        if (err == CF_OK && s.in)
            err = total_add(r, s.in_code, true, s.in_minor);
    }
    return err;
}

static void report_free(struct report *r)
{
    view_free(&r->v);
    if (r->ops != NULL)
        hash_wipe(r->ops, (r->v.evidence_n + 1) * sizeof(*r->ops));
    free(r->ops);
    free(r->totals);
    hash_wipe(&r->who, sizeof(r->who));
}

static enum cf_err report_read(struct api *api, const char *id, struct report *r)
{
    memset(r, 0, sizeof(*r));
    r->now_us = api_pay_now_us();
    enum cf_err err = view_read(api, id, false, &r->v);
    if (err == CF_OK)
        err = report_ops(api, r);
    if (err == CF_OK)
        err = subject_read(api, r->v.c.subject, &r->who);
    return err;
}

/* JSON form ------------------------------------------------------------------------------ */

static json_t *report_case_json(const struct risk_case *c)
{
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:o,s:o,s:o,s:o,s:o}", "id", c->id, "kind",
        risk_cases_kind_name(c->kind), "scenario", c->scenario, "detail", c->detail, "priority",
        risk_cases_priority_name(c->priority), "opened_at", api_risk_time_json(c->created_at_us), "status",
        risk_cases_status_name(c->status), "decision",
        c->decision != 0 ? json_string(risk_cases_decision_name(c->decision)) : json_null(),
        "decision_reason", text_or_null(c->reason), "decided_by", text_or_null(c->decided_by),
        "decided_at", api_risk_time_json(c->decided_at_us), "assignee", text_or_null(c->assignee));
}

static json_t *report_subject_json(const char *id, const struct subject_facts *w)
{
    json_t *o = json_pack("{s:s,s:s,s:o,s:o,s:o,s:o}", "id", id, "type",
                          w->merchant ? "merchant" : "customer", "name", text_or_null(w->name),
                          "date_of_birth", text_or_null(w->date_of_birth), "country",
                          text_or_null(w->country), "contact", text_or_null(w->contact));
    if (o != NULL && !w->merchant) {
        json_object_set_new(o, "legal_name", text_or_null(w->legal_name));
        json_object_set_new(o, "nationality", text_or_null(w->nationality));
        json_object_set_new(o, "kyc_tier", json_integer(w->kyc_tier));
        json_object_set_new(o, "kyc_verified", json_boolean(w->kyc_verified));
    }
    if (o != NULL && w->merchant) {
        json_object_set_new(o, "display_name", text_or_null(w->display_name));
        json_object_set_new(o, "city", text_or_null(w->city));
    }
    return o;
}

static json_t *activity_row_json(const struct pay_op *op, const char *direction,
                                 int64_t amount_minor, const char *code, const char *party)
{
    return json_pack("{s:s,s:o,s:s,s:s,s:I,s:s,s:o}", "operation_id", op->id, "date",
                     api_risk_time_json(op->created_at_us), "type", pay_kind_name(op->kind), "direction",
                     direction, "amount_minor", (json_int_t)amount_minor, "currency", code,
                     "counterparty", text_or_null(party));
}

static json_t *report_json(const struct api *api, const struct report *r)
{
    json_t *activity = json_array(), *totals = json_array(), *notes = json_array();
    for (size_t i = 0; i < r->ops_n && activity != NULL; i++) {
        struct op_side s;
        op_side_of(&r->ops[i], r->v.c.subject, &s);
        if (s.out)
            json_array_append_new(activity, activity_row_json(&r->ops[i], "out", s.out_minor,
                                                              s.out_code, s.out_party));
        if (s.in)
            json_array_append_new(
                activity, activity_row_json(&r->ops[i], "in", s.in_minor, s.in_code, s.in_party));
    }
    for (size_t i = 0; i < r->totals_n && totals != NULL; i++)
        json_array_append_new(totals,
                              json_pack("{s:s,s:I,s:I,s:I}", "currency", r->totals[i].currency,
                                        "operations", (json_int_t)r->totals[i].operations,
                                        "in_minor", (json_int_t)r->totals[i].in_minor, "out_minor",
                                        (json_int_t)r->totals[i].out_minor));
    for (size_t i = 0; i < r->v.notes_n && notes != NULL; i++)
        json_array_append_new(notes,
                              json_pack("{s:o,s:s,s:s}", "at", api_risk_time_json(r->v.notes[i].at_us), "by",
                                        r->v.notes[i].by, "text", r->v.notes[i].text));
    const char *entity = api->aml != NULL ? api->aml->cfg.operator_name : "";
    bool final = r->v.c.decision == RISK_CASE_DECISION_REPORT;
    return json_pack("{s:s,s:s,s:o,s:{s:o},s:o,s:o,s:o,s:o,s:o}", "report",
                     "suspicious_activity_report", "status", final ? "final" : "draft",
                     "report_date", api_risk_time_json(r->now_us), "reporting_entity", "name",
                     text_or_null(entity), "case", report_case_json(&r->v.c), "subject",
                     report_subject_json(r->v.c.subject, &r->who), "activity", activity, "totals",
                     totals, "notes", notes);
}

/* CSV form ------------------------------------------------------------------------------- */

static void csv_line(struct buf *b, const char *const *cells, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            buf_append(b, ",", 1);
        api_csv_text(b, cells[i]);
    }
    buf_append(b, "\r\n", 2);
}

static void csv_field(struct buf *b, const char *section, const char *field, const char *value)
{
    const char *cells[] = {section, field, value};
    csv_line(b, cells, 3);
}

static void csv_time(struct buf *b, const char *section, const char *field, int64_t at_us)
{
    char text[40] = "";
    if (at_us > 0)
        cf_time_format_rfc3339(at_us, text, sizeof(text));
    csv_field(b, section, field, text);
}

/* An amount in major units at its currency's scale ("12.34"; minor units when unknown). */
static void csv_amount(char *text, size_t bytes, int64_t amount_minor, const char *code)
{
    const struct currency *c = currency_find(code, strlen(code));
    if (money_format(amount_minor, c != NULL ? c->scale : 0, text, bytes) < 0)
        snprintf(text, bytes, "%lld", (long long)amount_minor);
}

static void csv_head(struct buf *b, const struct api *api, const struct report *r)
{
    const struct risk_case *c = &r->v.c;
    const struct subject_facts *w = &r->who;
    buf_puts(b, "section,field,value\r\n");
    csv_field(b, "report", "type", "suspicious_activity_report");
    csv_field(b, "report", "status", c->decision == RISK_CASE_DECISION_REPORT ? "final" : "draft");
    csv_time(b, "report", "report_date", r->now_us);
    csv_field(b, "report", "reporting_entity", api->aml != NULL ? api->aml->cfg.operator_name : "");
    csv_field(b, "case", "id", c->id);
    csv_field(b, "case", "kind", risk_cases_kind_name(c->kind));
    csv_field(b, "case", "scenario", c->scenario);
    csv_field(b, "case", "detail", c->detail);
    csv_time(b, "case", "opened_at", c->created_at_us);
    csv_field(b, "case", "decision", risk_cases_decision_name(c->decision));
    csv_field(b, "case", "decision_reason", c->reason);
    csv_field(b, "case", "decided_by", c->decided_by);
    csv_time(b, "case", "decided_at", c->decided_at_us);
    csv_field(b, "subject", "id", c->subject);
    csv_field(b, "subject", "type", w->merchant ? "merchant" : "customer");
    csv_field(b, "subject", "name", w->name);
    if (w->merchant)
        csv_field(b, "subject", "display_name", w->display_name);
    if (!w->merchant)
        csv_field(b, "subject", "legal_name", w->legal_name);
    csv_field(b, "subject", "date_of_birth", w->date_of_birth);
    csv_field(b, "subject", "country", w->country);
    if (!w->merchant)
        csv_field(b, "subject", "nationality", w->nationality);
    csv_field(b, "subject", "contact", w->contact);
}

static void csv_activity_row(struct buf *b, const struct pay_op *op, const char *direction,
                             int64_t amount_minor, const char *code, const char *party)
{
    char date[40], amount[32];
    cf_time_format_rfc3339(op->created_at_us, date, sizeof(date));
    csv_amount(amount, sizeof(amount), amount_minor, code);
    const char *cells[] = {date, op->id, pay_kind_name(op->kind), direction, amount, code, party};
    csv_line(b, cells, sizeof(cells) / sizeof(cells[0]));
}

static void csv_body(struct buf *b, const struct report *r)
{
    buf_puts(b, "\r\ndate,operation_id,type,direction,amount,currency,counterparty\r\n");
    for (size_t i = 0; i < r->ops_n; i++) {
        struct op_side s;
        op_side_of(&r->ops[i], r->v.c.subject, &s);
        if (s.out)
            csv_activity_row(b, &r->ops[i], "out", s.out_minor, s.out_code, s.out_party);
        if (s.in)
            csv_activity_row(b, &r->ops[i], "in", s.in_minor, s.in_code, s.in_party);
    }
    buf_puts(b, "\r\ncurrency,operations,in,out\r\n");
    for (size_t i = 0; i < r->totals_n; i++) {
        const struct report_total *t = &r->totals[i];
        char count[24], in[32], out[32];
        snprintf(count, sizeof(count), "%lld", (long long)t->operations);
        csv_amount(in, sizeof(in), t->in_minor, t->currency);
        csv_amount(out, sizeof(out), t->out_minor, t->currency);
        const char *cells[] = {t->currency, count, in, out};
        csv_line(b, cells, 4);
    }
    buf_puts(b, "\r\nnote_at,note_by,note\r\n");
    for (size_t i = 0; i < r->v.notes_n; i++) {
        char at[40];
        cf_time_format_rfc3339(r->v.notes[i].at_us, at, sizeof(at));
        const char *cells[] = {at, r->v.notes[i].by, r->v.notes[i].text};
        csv_line(b, cells, 3);
    }
}

/* The route ------------------------------------------------------------------------------ */

/* The export's audit line, written before the report leaves: it opened personal data. */
static enum cf_err report_audit(struct http_request *req, const struct report *r, bool csv)
{
    struct api *api = req->app;
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    char detail[AUDIT_DETAIL_BYTES];
    snprintf(detail, sizeof(detail), "case %s format %s status %s", r->v.c.id, csv ? "csv" : "json",
             r->v.c.decision == RISK_CASE_DECISION_REPORT ? "final" : "draft");
    return identity_audit(api->identity, &ctx, api_actor(req), "case.report_export", r->v.c.subject,
                          "ok", detail);
}

static void report_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *format = http_request_query(req, "format");
    bool csv = format != NULL && strcmp(format, "csv") == 0;
    if (format != NULL && !csv && strcmp(format, "json") != 0) {
        api_problem(req, resp, CF_ERR_INVALID_FIELD, "format: json or csv");
        return;
    }
    struct report *r = calloc(1, sizeof(*r));
    enum cf_err err = r == NULL ? CF_ERR_NOMEM : report_read(api, req->params[0], r);
    if (err == CF_OK)
        err = report_audit(req, r, csv);
    json_t *o = NULL;
    struct buf b;
    buf_init(&b, req->arena, HTTP_RESPONSE_BYTES_MAX);
    if (err == CF_OK && csv) {
        csv_head(&b, api, r);
        csv_body(&b, r);
        err = buf_ok(&b) ? CF_OK : CF_ERR_NOMEM;
    } else if (err == CF_OK && (o = report_json(api, r)) == NULL) {
        err = CF_ERR_NOMEM;
    }
    if (r != NULL)
        report_free(r);
    free(r);
    if (err != CF_OK) {
        json_decref(o);
        api_problem(req, resp, err, NULL);
        return;
    }
    if (!csv) {
        api_reply_object(req, resp, 200, o);
        return;
    }
    api_csv_reply(resp, &b);
}

enum http_action api_risk_case_report(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, report_run);
}
