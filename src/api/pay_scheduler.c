/*
 * pay_scheduler.c - the daily payouts' thread; see pay_statements.h.
 *
 * The thread runs a period's payouts once when the period begins (and once at start for the
 * period it starts in), then sleeps on a condition variable until the next period's first
 * second (CLOCK_REALTIME, the clock periods are counted in) or until it is told to stop.
 * Whether a merchant was already paid in a period is never remembered here: the payout's
 * idempotency key, derived from the merchant and the period number, is what makes a repeated
 * run (after a restart, on another server) answer the payout it made instead of paying again.
 *
 * A merchant whose payouts are held is skipped before any operation is made: frozen (the freeze
 * row, api/risk_freeze.h, or its account still carrying the ledger's frozen flag) or blocked by
 * a sanctions screening hit (api_risk_screening_check). The ledger or the screening check would
 * refuse the payout anyway; skipping keeps a failed operation from being recorded every period
 * while the hold lasts. A skip is logged once per run at info with the merchant's id only (never
 * why: the reason is staff's) and counted ("held") in the run's line; the first period after
 * the hold is lifted pays out as usual. A hold that cannot be read skips the merchant too.
 *
 * The handle is process state set once by start and cleared by stop (serve runs one API), like
 * the currency registry; start and stop are called only by the thread that runs serve.
 */
#include "api/pay_statements.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/risk_screening.h"
#include "core/clock.h"
#include "core/log.h"
#include "risk/freeze.h"

#define PAYOUT_ARENA_BYTES (1u << 20) /* one payout's ledger commands and reads */
#define PAYOUT_PERIOD_S_MAX (366 * 86400)

struct payout_scheduler {
    struct api *api;
    int64_t period_s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_bool stopping;
};

static struct payout_scheduler *scheduler; /* set by start, cleared by stop */

static int64_t now_s(void) { return cf_clock_now_us(&cf_clock_real) / 1000000; }

/* What one merchant's turn in a run did. */
enum payout_outcome {
    PAYOUT_NONE, /* nothing to pay, or the payout failed */
    PAYOUT_PAID, /* a payout was made (or answered again) */
    PAYOUT_HELD, /* frozen or screening-blocked: skipped, nothing recorded */
};

/* The merchant's available balance (what a payout may take now) and whether its account
 * carries the ledger's frozen flag. */
static enum cf_err merchant_available(struct api *api, struct arena *arena,
                                      const struct pay_merchant *m, int64_t *out, bool *frozen)
{
    struct store_reader *r;
    struct store_account_row row;
    enum cf_err err = api->store->ops->r_open(api->store, &r);
    if (err != CF_OK)
        return err;
    err = api->store->ops->r_account_get(r, m->account_id, &row, arena);
    api->store->ops->r_close(r);
    if (err == CF_OK) {
        *out = ledger_account_available(&row.account);
        *frozen = (row.account.flags & LEDGER_ACCOUNT_FROZEN) != 0;
    }
    return err;
}

/* Whether m's payouts are held by a freeze or a screening block; an error holds them too. */
static bool payout_held(struct api *api, const struct pay_merchant *m)
{
    struct risk_freeze_event ev;
    enum cf_err err =
        api->freeze != NULL ? risk_freeze_peek(api->freeze, m->merchant_id, &ev) : CF_ERR_NOT_FOUND;
    if (err == CF_ERR_NOT_FOUND)
        err = api_risk_screening_check(api, m->merchant_id);
    if (err != CF_OK && err != CF_ERR_RISK_BLOCKED)
        cf_log(LOG_WARN, "daily payout: hold not readable", "merchant", m->merchant_id, "code",
               cf_err_code(err), NULL);
    return err != CF_OK;
}

/* Pays m's whole available balance out for period (nothing when there is none, nothing while
 * its payouts are held). */
static enum cf_err payout_one(struct api *api, struct arena *arena, const struct pay_merchant *m,
                              int64_t period, enum payout_outcome *outcome)
{
    CF_ASSERT(m->merchant_id[0] != '\0' && period >= 0);
    int64_t amount = 0;
    bool frozen = false;
    *outcome = PAYOUT_NONE;
    enum cf_err err = merchant_available(api, arena, m, &amount, &frozen);
    if (err != CF_OK || amount <= 0)
        return err;
    if (frozen || payout_held(api, m)) {
        *outcome = PAYOUT_HELD;
        cf_log(LOG_INFO, "daily payout held", "merchant", m->merchant_id, NULL);
        return CF_OK;
    }
    char idem[PAY_IDEM_BYTES_MAX];
    int n =
        snprintf(idem, sizeof(idem), "payouts-daily:%s:%lld", m->merchant_id, (long long)period);
    CF_ASSERT(n > 0 && (size_t)n < sizeof(idem));
    struct pay_op op;
    err = api_pay_payout(api, arena, m, amount, idem, NULL, &op);
    if (err != CF_OK)
        return err;
    bool paid = op.status != PAY_STATUS_FAILED;
    *outcome = paid ? PAYOUT_PAID : PAYOUT_NONE;
    CF_ASSERT(*outcome != PAYOUT_HELD);
    if (paid)
        cf_log(LOG_INFO, "daily payout", "merchant", m->merchant_id, "operation", op.id, "status",
               pay_status_name(op.status), NULL);
    else
        cf_log(LOG_WARN, "daily payout failed", "merchant", m->merchant_id, "operation", op.id,
               "code", op.error, NULL);
    return CF_OK;
}

/* One period's payouts, merchant by merchant, until done or told to stop. */
static void payouts_run(struct payout_scheduler *s, int64_t period)
{
    struct pay_merchant *list = calloc(PAYOUT_MERCHANTS_MAX, sizeof(*list));
    struct arena *arena = arena_create(PAYOUT_ARENA_BYTES);
    size_t n = 0, paid_n = 0, held_n = 0;
    enum cf_err err = list == NULL || arena == NULL ? CF_ERR_NOMEM : CF_OK;
    if (err == CF_OK)
        err = payments_merchants_daily(s->api->payments, list, PAYOUT_MERCHANTS_MAX, &n);
    for (size_t i = 0; i < n && err == CF_OK && !atomic_load(&s->stopping); i++) {
        enum payout_outcome outcome = PAYOUT_NONE;
        arena_reset(arena);
        enum cf_err e = payout_one(s->api, arena, &list[i], period, &outcome);
        if (e != CF_OK) /* this merchant waits for the next period; the others go on */
            cf_log(LOG_WARN, "daily payout not made", "merchant", list[i].merchant_id, "code",
                   cf_err_code(e), NULL);
        paid_n += outcome == PAYOUT_PAID ? 1 : 0;
        held_n += outcome == PAYOUT_HELD ? 1 : 0;
    }
    if (n == PAYOUT_MERCHANTS_MAX)
        cf_log(LOG_WARN, "daily payouts: more merchants than one run pays", NULL);
    char period_text[24], paid_text[24], held_text[24];
    snprintf(period_text, sizeof(period_text), "%lld", (long long)period);
    snprintf(paid_text, sizeof(paid_text), "%zu", paid_n);
    snprintf(held_text, sizeof(held_text), "%zu", held_n);
    cf_log(err == CF_OK ? LOG_INFO : LOG_WARN, "daily payouts ran", "period", period_text, "paid",
           paid_text, "held", held_text, "code", cf_err_code(err), NULL);
    if (list != NULL) {
        hash_wipe(list, PAYOUT_MERCHANTS_MAX * sizeof(*list)); /* bank accounts were opened */
        free(list);
    }
    arena_destroy(arena);
}

static void *scheduler_main(void *arg)
{
    struct payout_scheduler *s = arg;
    int64_t done = -1; /* the last period run */
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->stopping)) {
        int64_t period = now_s() / s->period_s;
        if (period != done) {
            pthread_mutex_unlock(&s->mu);
            payouts_run(s, period);
            pthread_mutex_lock(&s->mu);
            done = period;
            continue;
        }
        struct timespec next = {.tv_sec = (time_t)((period + 1) * s->period_s), .tv_nsec = 0};
        pthread_cond_timedwait(&s->wake, &s->mu, &next);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

enum cf_err api_payouts_schedule_start(struct api *api, int64_t period_s)
{
    CF_ASSERT(api != NULL && api->payments != NULL && api->gateway != NULL);
    CF_ASSERT(period_s >= 1 && period_s <= PAYOUT_PERIOD_S_MAX);
    CF_ASSERT(scheduler == NULL);
    struct payout_scheduler *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CF_ERR_NOMEM;
    s->api = api;
    s->period_s = period_s;
    atomic_init(&s->stopping, false);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return CF_ERR_NOMEM;
    }
    scheduler = s;
    return CF_OK;
}

void api_payouts_schedule_stop(struct api *api)
{
    struct payout_scheduler *s = scheduler;
    if (s == NULL)
        return;
    CF_ASSERT(s->api == api);
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stopping, true);
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
    scheduler = NULL;
}
