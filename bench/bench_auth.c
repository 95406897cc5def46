/*
 * bench_auth.c - what authentication costs, in process (no HTTP).
 * Usage: bench_auth DIR [threads]
 *
 * Prints, one "name value unit" per line:
 *   argon2id_hash_ms      median time of one password hash at Coffer's cost (19 MiB, t=2)
 *   session_check_ns      one identity_authenticate of a live session (the per-request cost:
 *                         SHA-256 of the token and a cache look-up), mean over a million calls
 *   session_check_cold_us the same when the cache entry is stale (a database read and write)
 *   sign_ins_per_s        full password sign-ins per second with `threads` threads (default 2)
 *   audit_lines_per_s     staff audit lines through the audit queue (queued, group-appended to
 *                         the hash chain, committed), the cost every admin ledger write adds
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/hash.h"
#include "crypto/password.h"
#include "identity/identity.h"
#include "identity/notifier.h"

#define CHECKS 1000000
#define HASHES 15
#define SIGN_IN_SECONDS 5
#define BENCH_PASSWORD "Rainy-Harbour-Lantern-42"
#define BENCH_LOGIN "bench@coffer.test"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void bench_hash(void)
{
    int64_t t[HASHES];
    char out[PASSWORD_HASH_BYTES];
    for (int i = 0; i < HASHES; i++) {
        int64_t t0 = cf_monotonic_us();
        if (password_hash(BENCH_PASSWORD, out) != CF_OK)
            exit(1);
        t[i] = cf_monotonic_us() - t0;
    }
    qsort(t, HASHES, sizeof(t[0]), cmp_i64);
    printf("argon2id_hash_ms %.1f ms\n", (double)t[HASHES / 2] / 1000.0);
}

/* Registers the bench user and returns a session token in token_out. */
static void user_setup(struct identity *id, struct notifier *n, char *token_out)
{
    struct identity_ctx ctx = {"127.0.0.1", "bench"};
    char reg[ID_TEXT_BYTES_MAX];
    const char *detail = NULL;
    if (identity_register(id, &ctx, BENCH_LOGIN, BENCH_PASSWORD, strlen(BENCH_PASSWORD),
                          "Bench User", reg, &detail) != CF_OK)
        exit(1);
    struct notifier_outbox_item item;
    size_t got = 0;
    if (notifier_outbox_list(n, BENCH_LOGIN, 1, &item, &got) != CF_OK || got != 1)
        exit(1);
    const char *code = strstr(item.body, " is ");
    struct identity_sign_in_result r;
    char digits[8];
    snprintf(digits, sizeof(digits), "%.6s", code != NULL ? code + 4 : "");
    if (identity_register_verify(id, &ctx, reg, digits, "bench", &r) != CF_OK)
        exit(1);
    strcpy(token_out, r.token);
}

static void bench_checks(struct identity *id, const char *token, struct cf_clock *clock)
{
    struct identity_principal p;
    size_t len = strlen(token);
    int64_t t0 = cf_monotonic_us();
    for (int i = 0; i < CHECKS; i++) {
        if (identity_authenticate(id, token, len, &p) != CF_OK)
            exit(1);
    }
    int64_t dt = cf_monotonic_us() - t0;
    printf("session_check_ns %.0f ns\n", (double)dt * 1000.0 / CHECKS);
    int64_t cold = 0;
    for (int i = 0; i < 100; i++) {
        cf_clock_fake_advance(clock, (IDENTITY_SESSION_CACHE_S + 1) * 1000000LL);
        int64_t c0 = cf_monotonic_us();
        if (identity_authenticate(id, token, len, &p) != CF_OK)
            exit(1);
        cold += cf_monotonic_us() - c0;
    }
    printf("session_check_cold_us %.0f us\n", (double)cold / 100.0);
}

struct sign_in_job {
    struct identity *id;
    int64_t deadline_us;
    long count;
};

static void *sign_in_thread(void *arg)
{
    struct sign_in_job *j = arg;
    struct identity_ctx ctx = {"127.0.0.1", "bench"};
    while (cf_monotonic_us() < j->deadline_us) {
        struct identity_sign_in_result r;
        int64_t retry = 0;
        if (identity_sign_in(j->id, &ctx, BENCH_LOGIN, BENCH_PASSWORD, strlen(BENCH_PASSWORD),
                             "bench", &r, &retry) != CF_OK)
            exit(1);
        j->count++;
    }
    return NULL;
}

static void bench_sign_ins(struct identity *id, int threads)
{
    pthread_t t[16];
    struct sign_in_job jobs[16];
    int64_t deadline = cf_monotonic_us() + SIGN_IN_SECONDS * 1000000LL;
    for (int i = 0; i < threads; i++) {
        jobs[i] = (struct sign_in_job){id, deadline, 0};
        pthread_create(&t[i], NULL, sign_in_thread, &jobs[i]);
    }
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += jobs[i].count;
    }
    printf("sign_ins_per_s %.1f /s (%d threads)\n", (double)total / SIGN_IN_SECONDS, threads);
}

#define AUDIT_LINES 200000

/* Queues AUDIT_LINES lines as fast as the queue takes them; the time until identity_close has
 * flushed the last one. Closes id. */
static void bench_audit(struct identity *id)
{
    struct identity_ctx ctx = {"127.0.0.1", "bench"};
    int64_t t0 = cf_monotonic_us();
    for (int i = 0; i < AUDIT_LINES; i++) {
        while (!identity_audit_queue_room(id)) {
            struct timespec pause = {0, 200 * 1000};
            nanosleep(&pause, NULL);
        }
        if (identity_audit_queue(id, &ctx, "usr_0000000000001", "staff.ledger.transfer_create",
                                 "/v1/ledger/transfers", "ok", "status 201") != CF_OK)
            exit(1);
    }
    identity_close(id); /* flushes what is queued */
    int64_t dt = cf_monotonic_us() - t0;
    printf("audit_lines_per_s %.0f /s\n", (double)AUDIT_LINES * 1e6 / (double)dt);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_auth DIR [threads]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    if (threads < 1 || threads > 16 || hash_init() != 0)
        return 2;
    char db_path[4096], keys[VAULT_KEYFILE_BYTES_MAX];
    snprintf(db_path, sizeof(db_path), "%s/bench_identity.db", argv[1]);
    remove(db_path);
    struct vault *v = NULL;
    struct sqldb *db = NULL;
    struct notifier *n = NULL;
    struct identity *id = NULL;
    struct cf_clock clock;
    cf_clock_fake_init(&clock, cf_clock_now_us(&cf_clock_real));
    struct identity_config cfg;
    identity_config_defaults(&cfg);
    cfg.clock = &clock;
    cfg.session_idle_s = 86400;
    cfg.session_absolute_s = 30 * 86400;
    if (vault_keyfile_new(NULL, keys, sizeof(keys)) != CF_OK ||
        vault_load(keys, strlen(keys), &v) != CF_OK || sqldb_open(db_path, &db) != CF_OK ||
        notifier_outbox_create(db, v, &n) != CF_OK || identity_open(db, v, n, &cfg, &id) != CF_OK)
        return 1;
    bench_hash();
    char token[IDENTITY_TOKEN_TEXT_BYTES];
    user_setup(id, n, token);
    bench_checks(id, token, &clock);
    bench_sign_ins(id, threads);
    bench_audit(id);
    notifier_free(n);
    sqldb_close(db);
    vault_free(v);
    return 0;
}
