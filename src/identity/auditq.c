/*
 * auditq.c - the audit queue: audit lines for high-volume staff actions (ledger writes by an
 * admin) appended in groups by one background thread, so recording them does not cost a
 * database commit per request.
 *
 * A line is queued when the action has completed (its outcome is known) and is appended within
 * IDENTITY_AUDITQ_FLUSH_MS, in one transaction with the lines queued alongside it. Callers check
 * identity_audit_queue_room before acting and answer 503 rather than act unaudited; a crash
 * can lose the lines of the last flush interval, never the ledger change itself, whose
 * idempotency record names the principal that made it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "identity/internal.h"

struct auditq_item {
    char actor[AUDIT_ACTOR_BYTES_MAX + 1];
    char action[AUDIT_ACTION_BYTES_MAX + 1];
    char target[AUDIT_TARGET_BYTES_MAX + 1];
    char ip[AUDIT_IP_BYTES_MAX + 1];
    char user_agent[AUDIT_UA_BYTES_MAX + 1];
    char outcome[AUDIT_OUTCOME_BYTES_MAX + 1];
    char detail[AUDIT_DETAIL_BYTES_MAX + 1];
    int64_t at_us;
};

#define FLUSH_BATCH 1024

struct auditq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    size_t head, n;
    struct auditq_item items[IDENTITY_AUDITQ_MAX];
    struct auditq_item batch[FLUSH_BATCH]; /* the flushing thread's copy */
    struct audit_event events[FLUSH_BATCH];
    pthread_t thread;
    struct identity *id;
    unsigned stop_failures;
};

#define AUDITQ_STOP_RETRIES 50 /* 100 ms apart: five seconds of trying at shutdown */

/* Appends n queued items (copied out by the caller) in one transaction, moving the chain's
 * head once. */
static enum cf_err flush_items(struct auditq *q, const struct auditq_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct auditq_item *it = &items[i];
        q->events[i] = (struct audit_event){.actor = it->actor,
                                            .action = it->action,
                                            .target = it->target,
                                            .ip = it->ip,
                                            .user_agent = it->user_agent,
                                            .outcome = it->outcome,
                                            .detail = it->detail,
                                            .at_us = it->at_us};
    }
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(q->id->db, &tx);
    if (err != CF_OK)
        return err;
    err = audit_append_many(tx, q->events, n);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

static void *auditq_main(void *arg)
{
    struct auditq *q = arg;
    struct auditq_item *batch = q->batch;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        if (q->n == 0 && !q->stopping) {
            struct timespec t = cf_deadline_after_ms(IDENTITY_AUDITQ_FLUSH_MS);
            pthread_cond_timedwait(&q->cv, &q->mu, &t);
        }
        size_t n = q->n < FLUSH_BATCH ? q->n : FLUSH_BATCH;
        for (size_t i = 0; i < n; i++)
            batch[i] = q->items[(q->head + i) % IDENTITY_AUDITQ_MAX];
        bool stop = q->stopping && q->n == 0;
        pthread_mutex_unlock(&q->mu);
        if (stop)
            return NULL;
        if (n == 0)
            continue;
        enum cf_err err = flush_items(q, batch, n);
        bool refused = err != CF_OK && err != CF_ERR_STORAGE && err != CF_ERR_STORAGE_CONFLICT &&
                       err != CF_ERR_NOMEM;
        pthread_mutex_lock(&q->mu);
        bool give_up = err != CF_OK && q->stopping && ++q->stop_failures > AUDITQ_STOP_RETRIES;
        pthread_mutex_unlock(&q->mu);
        if (give_up) { /* stopping with the database gone: say what is lost, then go */
            cf_log(LOG_ERROR, "audit queue: database unavailable at shutdown; lines lost", NULL);
            refused = true;
        }
        if (refused) /* cannot happen with sanitized fields; never let it wedge the queue */
            cf_log(LOG_ERROR, "audit queue: a batch was refused and dropped", NULL);
        pthread_mutex_lock(&q->mu);
        if (err == CF_OK || refused) { /* only now do the lines leave the queue */
            q->head = (q->head + n) % IDENTITY_AUDITQ_MAX;
            q->n -= n;
        }
        pthread_mutex_unlock(&q->mu);
        if (err != CF_OK && !refused) {
            cf_log(LOG_ERROR, "audit queue: append failed; retrying", NULL);
            struct timespec pause = {0, 100 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
}

enum cf_err identity_auditq_start(struct identity *id)
{
    struct auditq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return CF_ERR_NOMEM;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->id = id;
    if (pthread_create(&q->thread, NULL, auditq_main, q) != 0) {
        pthread_cond_destroy(&q->cv);
        pthread_mutex_destroy(&q->mu);
        free(q);
        return CF_ERR_NOMEM;
    }
    id->auditq = q;
    return CF_OK;
}

/* Flushes what is queued (retrying while the database fails) and stops the thread. */
void identity_auditq_stop(struct identity *id)
{
    struct auditq *q = id->auditq;
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
    id->auditq = NULL;
}

/* Copies src, truncated, with anything but printable ASCII replaced by '?': the audit log
 * refuses other bytes, and a refused line must never block the queue. */
static void copy_field(char *dst, size_t bytes, const char *src)
{
    size_t i = 0;
    for (; src != NULL && src[i] != '\0' && i + 1 < bytes; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    dst[i] = '\0';
}

enum cf_err identity_audit_queue(struct identity *id, const struct identity_ctx *ctx,
                                 const char *actor, const char *action, const char *target,
                                 const char *outcome, const char *detail)
{
    struct auditq *q = id->auditq;
    CF_ASSERT(q != NULL);
    int64_t now = identity_now_us(id);
    pthread_mutex_lock(&q->mu);
    if (q->n >= IDENTITY_AUDITQ_MAX || q->stopping) {
        pthread_mutex_unlock(&q->mu);
        return CF_ERR_OVERLOADED;
    }
    struct auditq_item *it = &q->items[(q->head + q->n) % IDENTITY_AUDITQ_MAX];
    copy_field(it->actor, sizeof(it->actor), actor);
    copy_field(it->action, sizeof(it->action), action);
    copy_field(it->target, sizeof(it->target), target);
    copy_field(it->ip, sizeof(it->ip), ctx != NULL ? ctx->ip : NULL);
    copy_field(it->user_agent, sizeof(it->user_agent), ctx != NULL ? ctx->user_agent : NULL);
    copy_field(it->outcome, sizeof(it->outcome), outcome);
    copy_field(it->detail, sizeof(it->detail), detail);
    it->at_us = now;
    q->n++;
    if (q->n >= FLUSH_BATCH)
        pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return CF_OK;
}

bool identity_audit_queue_room(struct identity *id)
{
    struct auditq *q = id->auditq;
    pthread_mutex_lock(&q->mu);
    bool room = q->n < IDENTITY_AUDITQ_MAX - IDENTITY_AUDITQ_MAX / 8 && !q->stopping;
    pthread_mutex_unlock(&q->mu);
    return room;
}
