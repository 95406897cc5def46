/*
 * risk_monitor.c - scoring money movements before they are recorded (risk_monitor.h has the
 * contract); the KYC limits are in risk_limits.c, review holds in risk_review.c.
 */
#include "api/risk_monitor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/pay.h"
#include "api/risk_kyc.h"
#include "api/risk_rules.h"
#include "core/clock.h"
#include "core/log.h"
#include "risk/decisions.h"
#include "risk/rules.h"
#include "risk/velocity.h"

#define RISK_NEW_DEVICE_AGE_S 86400
#define RISK_AGES_N 4096 /* customers whose facts are kept (direct-mapped) */
#define RISK_HOME_COUNTRY_TTL_US (300 * 1000000LL)

/* What the payment path keeps of each customer, so that it need not open sealed rows every
 * time: the account's creation time (it never changes; reading it from identity loads and opens
 * the whole sealed user row) and the country of residence their KYC details name (sealed with
 * them; kept RISK_HOME_COUNTRY_TTL_US, and forgotten at once when the details change here). */
struct api_risk_ages {
    pthread_mutex_t mu;
    uint8_t seed[VELOCITY_SEED_BYTES]; /* slots by SipHash of the user id under it */
    struct {
        char user_id[ID_TEXT_BYTES_MAX];
        int64_t created_at_us;
        char country[RISK_KYC_COUNTRY_BYTES]; /* "" when the customer named none */
        int64_t country_at_us;                /* when country was read; 0: not read */
    } slot[RISK_AGES_N];
};

/* Features ------------------------------------------------------------------------------------- */

/* The customer or merchant whose movement this is: the payer, or a top-up's customer. */
static const char *subject_of(const struct pay_op *op)
{
    return op->payer[0] != '\0' ? op->payer : op->payee;
}

/* The kind as the rules language names it; NULL for what is not scored (none today). */
static const char *rules_kind(uint8_t kind)
{
    switch (kind) {
    case PAY_KIND_REFUND: /* scored under the merchant that gives the money back */
        return "refund";
    case PAY_KIND_TOPUP:
        return "topup";
    case PAY_KIND_WITHDRAWAL:
        return "withdrawal";
    case PAY_KIND_SEND:
        return "send";
    case PAY_KIND_PAYMENT:
    case PAY_KIND_HOLD: /* a merchant's hold is a payment the customer makes in two steps */
        return "payment";
    case PAY_KIND_PAYOUT:
        return "payout";
    case PAY_KIND_CONVERSION:
        return "conversion";
    default:
        return NULL;
    }
}

static const char *payee_kind_of(const struct pay_op *op)
{
    if (op->kind == PAY_KIND_WITHDRAWAL || op->kind == PAY_KIND_PAYOUT)
        return "bank";
    if (op->kind == PAY_KIND_TOPUP || op->payee[0] == '\0')
        return "none";
    return strncmp(op->payee, "mer_", 4) == 0 ? "merchant" : "user";
}

/* The four velocity keys of op, currency included: "u:<subject>|EUR", ... ("" when unknown). The
 * device and IP keys hold pseudonyms, never the session id or the address (see keys_build). */
struct risk_keys {
    char k[RULES_KEYS_N][VELOCITY_KEY_BYTES_MAX + 1];
    char country[RULES_TEXT_BYTES_MAX]; /* the client's, when the request is the subject's own */
};

/* The pseudonyms' domains (risk/decisions.h): a device and an address never share one. */
#define RISK_MONITOR_DEVICE_DOMAIN "velocity_device"
#define RISK_MONITOR_IP_DOMAIN "velocity_ip"

/* "<prefix>:<pseudonym of value>|<currency>" into key, or "" when no pseudonym can be made
 * (master key 1 gone since the start checked it: the key is left out, never stored raw). */
static void key_pseudonymous(struct api *api, const char *prefix, const char *domain,
                             const char *value, const char *currency,
                             char key[VELOCITY_KEY_BYTES_MAX + 1])
{
    char hex[RISK_DECISIONS_PSEUDONYM_HEX_BYTES];
    key[0] = '\0';
    if (risk_decisions_pseudonym(api->risk_decisions, domain, value, hex) != CF_OK) {
        cf_log(LOG_WARN, "velocity key left out: no pseudonym", "key", prefix, NULL);
        return;
    }
    int n = snprintf(key, VELOCITY_KEY_BYTES_MAX + 1, "%s:%s|%s", prefix, hex, currency);
    CF_ASSERT(n > 0 && n <= VELOCITY_KEY_BYTES_MAX);
}

/* The device and the client address are personal data: their keys hold keyed hashes of them
 * (risk_decisions_pseudonym), the same strings in memory and in the decision log. */
static void keys_build(struct api *api, const struct api_risk_ctx *ctx, const struct pay_op *op,
                       struct risk_keys *keys)
{
    memset(keys, 0, sizeof(*keys));
    const struct api_principal *p = ctx->req != NULL ? api_principal(ctx->req) : NULL;
    bool own = p != NULL && !p->bootstrap && strcmp(p->user.user_id, subject_of(op)) == 0;
    snprintf(keys->k[RULES_KEY_USER], sizeof(keys->k[0]), "u:%s|%s", subject_of(op),
             op->currency);
    if (own && p->user.session_id[0] != '\0') /* not a merchant charging a customer's code */
        key_pseudonymous(api, "d", RISK_MONITOR_DEVICE_DOMAIN, p->user.session_id, op->currency,
                         keys->k[RULES_KEY_DEVICE]);
    if (own && ctx->req->client_country[0] != '\0')
        cf_best_effort(rules_features_text_set(keys->country, ctx->req->client_country, 2));
    if (own && ctx->req->client_ip[0] != '\0')
        key_pseudonymous(api, "i", RISK_MONITOR_IP_DOMAIN, ctx->req->client_ip, op->currency,
                         keys->k[RULES_KEY_IP]);
    if (op->payee[0] != '\0' && op->kind != PAY_KIND_TOPUP)
        snprintf(keys->k[RULES_KEY_PAYEE], sizeof(keys->k[0]), "p:%s|%s", op->payee,
                 op->currency);
}

static void velocity_fill(struct api *api, const struct pay_op *op, const struct risk_keys *keys,
                          int64_t now_s, struct risk_features *f)
{
    for (size_t i = 0; i < RULES_KEYS_N; i++)
        if (keys->k[i][0] != '\0')
            cf_best_effort(velocity_read(api->velocity, keys->k[i], now_s, &f->velocity[i]));
    char key[VELOCITY_KEY_BYTES_MAX + 1];
    struct velocity_counts failed;
    snprintf(key, sizeof(key), "f:%s", subject_of(op));
    if (strncmp(subject_of(op), "usr_", 4) == 0 &&
        velocity_read(api->velocity, key, now_s, &failed) == CF_OK)
        f->failed_signins_24h = failed.count[VELOCITY_WINDOW_24H];
}

static size_t ages_slot(const struct api_risk_ages *a, const char *user_id)
{
    return (size_t)(hash_siphash24(a->seed, user_id, strlen(user_id)) % RISK_AGES_N);
}

/* When the customer's account was opened: from the cache, else from identity (then kept). */
static enum cf_err account_created(struct api *api, const char *user_id, int64_t *created_us)
{
    struct api_risk_ages *a = api->risk_ages;
    size_t i = ages_slot(a, user_id);
    bool hit = false;
    CF_ASSERT(pthread_mutex_lock(&a->mu) == 0);
    if (strcmp(a->slot[i].user_id, user_id) == 0) {
        *created_us = a->slot[i].created_at_us;
        hit = true;
    }
    CF_ASSERT(pthread_mutex_unlock(&a->mu) == 0);
    if (hit)
        return CF_OK;
    struct identity_profile prof;
    enum cf_err err = identity_profile_get(api->identity, user_id, &prof);
    hash_wipe(prof.name, sizeof(prof.name)); /* personal data this does not need */
    hash_wipe(prof.login, sizeof(prof.login));
    if (err != CF_OK)
        return err;
    CF_ASSERT(pthread_mutex_lock(&a->mu) == 0);
    snprintf(a->slot[i].user_id, sizeof(a->slot[i].user_id), "%s", user_id);
    a->slot[i].created_at_us = prof.created_at_us;
    a->slot[i].country_at_us = 0; /* the slot's previous customer's country is not theirs */
    CF_ASSERT(pthread_mutex_unlock(&a->mu) == 0);
    *created_us = prof.created_at_us;
    return CF_OK;
}

/* The country of residence the customer's KYC details name: from the cache while fresh, else
 * from the KYC store (then kept in the slot account_created filled). "" when none. */
static enum cf_err home_country(struct api *api, const char *user_id, int64_t now_us,
                                char country[RISK_KYC_COUNTRY_BYTES])
{
    struct api_risk_ages *a = api->risk_ages;
    size_t i = ages_slot(a, user_id);
    bool hit = false;
    CF_ASSERT(pthread_mutex_lock(&a->mu) == 0);
    if (strcmp(a->slot[i].user_id, user_id) == 0 && a->slot[i].country_at_us > 0 &&
        now_us - a->slot[i].country_at_us < RISK_HOME_COUNTRY_TTL_US) {
        memcpy(country, a->slot[i].country, RISK_KYC_COUNTRY_BYTES);
        hit = true;
    }
    CF_ASSERT(pthread_mutex_unlock(&a->mu) == 0);
    if (hit)
        return CF_OK;
    enum cf_err err = api_kyc_home_country(api, user_id, country);
    if (err != CF_OK)
        return err;
    CF_ASSERT(pthread_mutex_lock(&a->mu) == 0);
    if (strcmp(a->slot[i].user_id, user_id) == 0) {
        memcpy(a->slot[i].country, country, RISK_KYC_COUNTRY_BYTES);
        a->slot[i].country_at_us = now_us;
    }
    CF_ASSERT(pthread_mutex_unlock(&a->mu) == 0);
    return CF_OK;
}

void api_risk_monitor_forget(struct api *api, const char *user_id)
{
    struct api_risk_ages *a = api->risk_ages;
    if (a == NULL)
        return;
    size_t i = ages_slot(a, user_id);
    CF_ASSERT(pthread_mutex_lock(&a->mu) == 0);
    if (strcmp(a->slot[i].user_id, user_id) == 0)
        a->slot[i].country_at_us = 0;
    CF_ASSERT(pthread_mutex_unlock(&a->mu) == 0);
}

/* The customer's verification tier and country of residence (risk/kyc.h). */
static enum cf_err kyc_facts(struct api *api, const char *user_id, int64_t now_us, int64_t *tier,
                             char country[RISK_KYC_COUNTRY_BYTES])
{
    int t = 0;
    country[0] = '\0';
    if (api->kyc == NULL)
        return CF_OK;
    enum cf_err err = risk_kyc_tier_get(api->kyc, user_id, &t);
    if (err == CF_OK)
        err = home_country(api, user_id, now_us, country);
    if (err == CF_OK)
        *tier = t;
    return err;
}

/* What identity, payments and KYC know of the subject and the payee. */
static enum cf_err facts_fill(struct api *api, const struct api_risk_ctx *ctx,
                              const struct pay_op *op, int64_t now_us, struct risk_features *f)
{
    const char *subject = subject_of(op);
    enum cf_err err = CF_OK;
    if (strncmp(subject, "usr_", 4) == 0) {
        int64_t created_us = 0;
        if ((err = account_created(api, subject, &created_us)) != CF_OK)
            return err;
        f->account_age_s = (now_us - created_us) / 1000000;
        char country[RISK_KYC_COUNTRY_BYTES] = "";
        if ((err = kyc_facts(api, subject, now_us, &f->kyc_tier, country)) != CF_OK)
            return err;
        cf_best_effort(rules_features_text_set(f->home_country, country, strlen(country)));
    }
    const struct api_principal *p = ctx->req != NULL ? api_principal(ctx->req) : NULL;
    bool own = p != NULL && !p->bootstrap && strcmp(p->user.user_id, subject) == 0;
    if (ctx->payee_seen != API_RISK_PAYEE_ASK) {
        f->payee_new = ctx->payee_seen == API_RISK_PAYEE_NEW;
    } else if (own && op->payee[0] != '\0' && op->kind != PAY_KIND_TOPUP &&
               strcmp(op->payee, subject) != 0) {
        bool known = false;
        if ((err = identity_payee_known(api->identity, &p->user, op->payee, &known)) != CF_OK)
            return err;
        f->payee_new = !known;
    }
    if (ctx->mcc > 0) {
        f->mcc = ctx->mcc;
    } else if (strncmp(op->payee, "mer_", 4) == 0) {
        struct pay_merchant m;
        if (payments_merchant_get(api->payments, op->payee, false, &m) == CF_OK)
            f->mcc = strtol(m.mcc, NULL, 10);
    }
    return CF_OK;
}

static enum cf_err features_build(struct api *api, const struct api_risk_ctx *ctx,
                                  const struct pay_op *op, const struct risk_keys *keys,
                                  int64_t now_us, struct risk_features *f)
{
    memset(f, 0, sizeof(*f));
    const char *kind = rules_kind(op->kind);
    const char *payee_kind = payee_kind_of(op);
    CF_ASSERT(kind != NULL);
    f->amount_minor = op->amount_minor;
    time_t t = (time_t)(now_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    f->hour_utc = tm.tm_hour;
    enum cf_err err = rules_features_text_set(f->currency, op->currency, strlen(op->currency));
    if (err == CF_OK)
        err = rules_features_text_set(f->kind, kind, strlen(kind));
    if (err == CF_OK)
        err = rules_features_text_set(f->payee_kind, payee_kind, strlen(payee_kind));
    if (err == CF_OK)
        err = facts_fill(api, ctx, op, now_us, f);
    if (err != CF_OK)
        return err;
    velocity_fill(api, op, keys, now_us / 1000000, f);
    /* a device (session) that has not moved money in a day, for a customer who has */
    f->device_new = keys->k[RULES_KEY_DEVICE][0] != '\0' &&
                    f->velocity[RULES_KEY_DEVICE].count[VELOCITY_WINDOW_24H] == 0 &&
                    f->account_age_s > RISK_NEW_DEVICE_AGE_S &&
                    f->velocity[RULES_KEY_USER].count[VELOCITY_WINDOW_24H] > 0;
    memcpy(f->ip_country, keys->country, sizeof(f->ip_country));
    f->country_mismatch = f->ip_country[0] != '\0' && f->home_country[0] != '\0' &&
                          strcmp(f->ip_country, f->home_country) != 0;
    return CF_OK;
}

/* Decisions ------------------------------------------------------------------------------------ */

/* The row is written before a challenge is answered, so it is counted (counted_at_us) at once
 * only when the movement goes on at once: allow, or a review that holds the money; an answered
 * challenge is marked by velocity_count. A block, a refused review, a challenge not answered are
 * never counted, here or in the counters. */
static enum cf_err decision_record(struct api *api, const struct pay_op *op,
                                   const struct risk_keys *keys, const struct risk_features *f,
                                   const struct rules_decision *d, bool review, int64_t now_us)
{
    struct risk_decision_rec *rec = calloc(1, sizeof(*rec));
    if (rec == NULL)
        return CF_ERR_NOMEM;
    snprintf(rec->op_id, sizeof(rec->op_id), "%s", op->id);
    snprintf(rec->party, sizeof(rec->party), "%s", subject_of(op));
    snprintf(rec->kind, sizeof(rec->kind), "%s", f->kind);
    rec->amount_minor = op->amount_minor;
    snprintf(rec->currency, sizeof(rec->currency), "%s", op->currency);
    risk_decision_rec_from(rec, d);
    rec->features = *f;
    rec->review_state = review ? RISK_REVIEW_PENDING : RISK_REVIEW_NONE;
    rec->created_at_us = now_us;
    for (size_t i = 0; i < RULES_KEYS_N; i++)
        snprintf(rec->keys[i], sizeof(rec->keys[i]), "%s", keys->k[i]);
    rec->counted_at_us = d->action == RULES_ACTION_ALLOW || review ? now_us : 0;
    enum cf_err err = risk_decisions_put(api->risk_decisions, rec);
    free(rec);
    return err;
}

/* A challenge is answered by a step-up bound to this movement, or not at all. */
static enum cf_err challenge_answer(struct api *api, const struct api_risk_ctx *ctx,
                                    const struct pay_op *op)
{
    if (ctx->stepped_up)
        return CF_OK;
    const struct api_principal *p = ctx->req != NULL ? api_principal(ctx->req) : NULL;
    if (p == NULL || p->bootstrap || ctx->step_up_action == NULL ||
        strcmp(p->user.user_id, subject_of(op)) != 0)
        return CF_ERR_RISK_BLOCKED; /* no one here can answer one */
    static const struct identity_verification none;
    struct identity_action a = {.action = ctx->step_up_action,
                                .amount_minor = ctx->step_up_amount_minor > 0
                                                    ? ctx->step_up_amount_minor
                                                    : op->amount_minor,
                                .currency = op->currency,
                                .payee = ctx->bound_to != NULL ? ctx->bound_to : op->payee};
    struct identity_ctx ictx;
    api_ctx(ctx->req, &ictx);
    return identity_challenge_consume(api->identity, &ictx, &p->user, &a,
                                      ctx->v != NULL ? ctx->v : &none, op->idem);
}

/* Counts op under its keys at now_us; an answered challenge's decision row is marked counted
 * too (decision_record marked the others), so a restart restores what was counted here. */
static void velocity_count(struct api *api, const struct risk_keys *keys, const struct pay_op *op,
                           const struct rules_decision *d, int64_t now_us)
{
    for (size_t i = 0; i < RULES_KEYS_N; i++)
        if (keys->k[i][0] != '\0' &&
            velocity_record(api->velocity, keys->k[i], op->amount_minor, now_us / 1000000) != CF_OK)
            cf_log(LOG_WARN, "velocity not counted", "op", op->id, NULL);
    if (d->action == RULES_ACTION_CHALLENGE &&
        risk_decisions_counted_set(api->risk_decisions, op->id, now_us) != CF_OK)
        cf_log(LOG_WARN, "decision not marked counted", "op", op->id, NULL);
}

/* What can wait for an analyst: a movement between wallets or a refund (the payer's money held
 * in the review clearing), a payout or a withdrawal (held on its way out) and a top-up (nothing
 * held until approved); the gateway is asked only once approved (risk_review.h). */
static bool reviewable(const struct pay_op *op)
{
    switch (op->kind) {
    case PAY_KIND_SEND:
    case PAY_KIND_PAYMENT:
    case PAY_KIND_CONVERSION:
    case PAY_KIND_REFUND:
    case PAY_KIND_PAYOUT:
    case PAY_KIND_TOPUP:
    case PAY_KIND_WITHDRAWAL:
        return true;
    default:
        return false;
    }
}

enum cf_err api_risk_score(struct api *api, const struct api_risk_ctx *ctx,
                           const struct pay_op *op, bool *review_out)
{
    CF_ASSERT(api != NULL && ctx != NULL && op != NULL && op->id[0] != '\0');
    *review_out = false;
    if (!api->risk_monitoring || rules_kind(op->kind) == NULL)
        return CF_OK;
    int64_t now_us = cf_clock_now_us(&cf_clock_real);
    struct risk_keys keys;
    struct risk_features f;
    struct rules_decision d;
    keys_build(api, ctx, op, &keys);
    enum cf_err err = features_build(api, ctx, op, &keys, now_us, &f);
    if (err != CF_OK)
        return err;
    const struct rules_set *set = api_risk_rules_acquire(api);
    rules_evaluate(set, &f, &d);
    api_risk_rules_release(api, set);
    bool review = d.action == RULES_ACTION_REVIEW && reviewable(op);
    if ((err = decision_record(api, op, &keys, &f, &d, review, now_us)) != CF_OK)
        return err;
    if (d.action == RULES_ACTION_BLOCK ||
        (d.action == RULES_ACTION_REVIEW && !review))
        return CF_ERR_RISK_BLOCKED;
    if (d.action == RULES_ACTION_CHALLENGE && (err = challenge_answer(api, ctx, op)) != CF_OK)
        return err;
    velocity_count(api, &keys, op, &d, now_us);
    *review_out = review;
    return CF_OK;
}

/* Identity's failure hook: a known customer's failed sign-in, counted under "f:<user>". */
static void sign_in_failed(void *ctx, const char *user_id, int64_t now_us)
{
    struct api *api = ctx;
    char key[VELOCITY_KEY_BYTES_MAX + 1];
    snprintf(key, sizeof(key), "f:%s", user_id);
    if (velocity_record(api->velocity, key, 0, now_us / 1000000) != CF_OK)
        cf_log(LOG_WARN, "failed sign-in not counted", NULL);
}

/* Counted movements a start replays at most (the newest): a day of a busy deployment, read 1000
 * a page, so the start stays within seconds and the counters' table bounds the memory. */
#define RISK_WARM_ROWS_MAX 1000000

/* Records one counted movement's keys at its own time (never later than now_s: another server's
 * clock may be ahead); returns the records refused. */
static size_t warm_record(struct api *api, const struct risk_decisions_counted *c, int64_t now_s)
{
    int64_t at_s = c->counted_at_us / 1000000 < now_s ? c->counted_at_us / 1000000 : now_s;
    size_t refused = 0;
    for (size_t k = 0; k < RULES_KEYS_N; k++)
        if (c->keys[k][0] != '\0' &&
            velocity_record(api->velocity, c->keys[k], c->amount_minor, at_s) != CF_OK)
            refused++;
    return refused;
}

/* The warm start: the counters rebuilt from the decision log's counted movements of the last
 * day (VELOCITY_IDLE_S_MAX), oldest first so the keys' recency is restored too, page by page,
 * the newest RISK_WARM_ROWS_MAX at most. Failed sign-ins ("f:" keys) are not in the log and
 * start from zero. */
static enum cf_err velocity_warm(struct api *api, int64_t now_us)
{
    CF_ASSERT(api->velocity != NULL && api->risk_decisions != NULL && now_us > 0);
    int64_t since_us = now_us - (int64_t)VELOCITY_IDLE_S_MAX * 1000000;
    struct risk_decisions_cursor cur;
    enum cf_err err =
        risk_decisions_recent_keys_start(api->risk_decisions, since_us, RISK_WARM_ROWS_MAX, &cur);
    struct risk_decisions_counted *page =
        err == CF_OK ? calloc(RISK_DECISIONS_KEYS_PAGE_MAX, sizeof(*page)) : NULL;
    if (err == CF_OK && page == NULL)
        err = CF_ERR_NOMEM;
    size_t n = RISK_DECISIONS_KEYS_PAGE_MAX, rows = 0, refused = 0;
    while (err == CF_OK && n == RISK_DECISIONS_KEYS_PAGE_MAX && rows < RISK_WARM_ROWS_MAX) {
        err = risk_decisions_recent_keys(api->risk_decisions, since_us, &cur, page,
                                         RISK_DECISIONS_KEYS_PAGE_MAX, &n);
        for (size_t i = 0; err == CF_OK && i < n; i++)
            refused += warm_record(api, &page[i], now_us / 1000000);
        rows += err == CF_OK ? n : 0;
    }
    free(page);
    char text[2][24];
    snprintf(text[0], sizeof(text[0]), "%zu", rows);
    snprintf(text[1], sizeof(text[1]), "%zu", refused);
    if (err == CF_OK)
        cf_log(LOG_INFO, "velocity restored from the decision log", "movements", text[0], "refused",
               text[1], NULL);
    CF_ASSERT(err != CF_OK || rows <= RISK_WARM_ROWS_MAX + RISK_DECISIONS_KEYS_PAGE_MAX);
    return err;
}

/* Device and IP keys need master key RISK_DECISIONS_PSEUDONYM_KEY_ID: checked once at start, so
 * a deployment without it refuses to start rather than score without those keys. */
static enum cf_err pseudonyms_check(struct api *api)
{
    char hex[RISK_DECISIONS_PSEUDONYM_HEX_BYTES];
    enum cf_err err =
        risk_decisions_pseudonym(api->risk_decisions, RISK_MONITOR_DEVICE_DOMAIN, "check", hex);
    if (err != CF_OK)
        cf_log(LOG_ERROR, "monitoring needs master key 1 to hash device and IP keys", NULL);
    return err;
}

enum cf_err api_risk_monitor_open(struct api *api, size_t velocity_keys_max)
{
    CF_ASSERT(api->velocity == NULL && api->risk_ages == NULL);
    api->risk_ages = calloc(1, sizeof(*api->risk_ages));
    if (api->risk_ages == NULL)
        return CF_ERR_NOMEM;
    CF_ASSERT(pthread_mutex_init(&api->risk_ages->mu, NULL) == 0);
    hash_random(api->risk_ages->seed, sizeof(api->risk_ages->seed));
    enum cf_err err = velocity_open(velocity_keys_max, &api->velocity);
    bool warm = err == CF_OK && api->risk_monitoring && api->risk_decisions != NULL;
    if (warm)
        err = pseudonyms_check(api);
    /* a log that does not read back (storage, a corrupt row) costs counts, not the start */
    if (warm && err == CF_OK && velocity_warm(api, cf_clock_now_us(&cf_clock_real)) != CF_OK)
        cf_log(LOG_WARN, "velocity warm start incomplete: counting on from what was restored",
               NULL);
    if (err == CF_OK)
        identity_on_sign_in_failure(api->identity, sign_in_failed, api);
    return err;
}

void api_risk_monitor_close(struct api *api)
{
    identity_on_sign_in_failure(api->identity, NULL, NULL);
    if (api->risk_ages != NULL)
        pthread_mutex_destroy(&api->risk_ages->mu);
    free(api->risk_ages);
    api->risk_ages = NULL;
    velocity_close(api->velocity);
    api->velocity = NULL;
}
