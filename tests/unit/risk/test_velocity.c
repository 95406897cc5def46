/*
 * test_velocity.c - unit tests for velocity.c: SipHash-2-4 test vectors; each window at its
 * documented boundaries; random event streams against a brute-force model of the documented
 * bucket semantics; out-of-order and future times; a warm start (a day of events recorded after
 * the fact at their own past times, in time order or any order) reads as the live table did;
 * checked sums (overflow leaves everything as it was); malformed keys and amounts; idle eviction,
 * sweeping, least-recently-recorded eviction in a full table and the bound on keys; and four
 * threads recording into overlapping keys with exact totals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "risk/velocity.h"

static const uint8_t test_seed[VELOCITY_SEED_BYTES] = {1, 2,  3,  4,  5,  6,  7,  8,
                                                       9, 10, 11, 12, 13, 14, 15, 16};

/* A day at midnight UTC: aligned to every bucket size. */
#define T0 INT64_C(1700006400)
_Static_assert(T0 % 86400 == 0, "T0 is aligned");

static uint64_t lcg_next(uint64_t *lcg_state)
{
    *lcg_state = *lcg_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *lcg_state >> 17;
}

static struct velocity *open_small(size_t keys_max)
{
    struct velocity *v = NULL;
    assert_int_equal(velocity_open_seeded(keys_max, test_seed, &v), CF_OK);
    assert_non_null(v);
    return v;
}

static struct velocity_counts read_of(struct velocity *v, const char *key, int64_t now_s)
{
    struct velocity_counts c;
    memset(&c, 0x5A, sizeof(c));
    assert_int_equal(velocity_read(v, key, now_s, &c), CF_OK);
    return c;
}

static void record_ok(struct velocity *v, const char *key, int64_t amount_minor, int64_t now_s)
{
    assert_int_equal(velocity_record(v, key, amount_minor, now_s), CF_OK);
}

static void expect_counts(struct velocity *v, const char *key, int64_t now_s, int64_t c1m,
                          int64_t c1h, int64_t c24h)
{
    struct velocity_counts c = read_of(v, key, now_s);
    if (c.count[0] != c1m || c.count[1] != c1h || c.count[2] != c24h)
        fail_msg("%s at %lld: counts %lld %lld %lld, expected %lld %lld %lld", key,
                 (long long)(now_s - T0), (long long)c.count[0], (long long)c.count[1],
                 (long long)c.count[2], (long long)c1m, (long long)c1h, (long long)c24h);
}

/* SipHash -------------------------------------------------------------------------------------- */

/* The reference vectors of the SipHash paper: key 00 01 .. 0f, messages 00 01 .. (len-1). */
static void test_siphash_vectors(void **state)
{
    (void)state;
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    assert_true(hash_siphash24(key, msg, 0) == UINT64_C(0x726fdb47dd0e0e31));
    assert_true(hash_siphash24(key, msg, 1) == UINT64_C(0x74f839c593dc67fd));
    assert_true(hash_siphash24(key, msg, 8) == UINT64_C(0x93f5f5799a932462));
    assert_true(hash_siphash24(key, msg, 15) == UINT64_C(0xa129ca6149be45e5));
    assert_true(hash_siphash24(key, msg, 63) == UINT64_C(0x958a324ceb064572));
}

/* Windows -------------------------------------------------------------------------------------- */

static void test_minute_window_is_exact(void **state)
{
    (void)state;
    struct velocity *v = open_small(16);
    int64_t t = T0 + 137; /* second 17 of minute 2 of a quarter hour */
    record_ok(v, "u:usr_1|EUR", 250, t);
    struct velocity_counts c = read_of(v, "u:usr_1|EUR", t);
    assert_int_equal(c.count[VELOCITY_WINDOW_1M], 1);
    assert_int_equal(c.sum_minor[VELOCITY_WINDOW_1M], 250);
    assert_int_equal(c.sum_minor[VELOCITY_WINDOW_1H], 250);
    assert_int_equal(c.sum_minor[VELOCITY_WINDOW_24H], 250);
    expect_counts(v, "u:usr_1|EUR", t + 59, 1, 1, 1); /* 59 s ago: counted */
    expect_counts(v, "u:usr_1|EUR", t + 60, 0, 1, 1); /* 60 s ago: not */
    expect_counts(v, "u:usr_1|EUR", t + 61, 0, 1, 1);
    /* A reader behind the writer does not see the future event. */
    expect_counts(v, "u:usr_1|EUR", t - 1, 0, 1, 1);   /* same minute bucket as t */
    expect_counts(v, "u:usr_1|EUR", t - 40, 0, 0, 1);  /* previous minute, same quarter hour */
    expect_counts(v, "u:usr_1|EUR", t - 200, 0, 0, 0); /* previous quarter hour */
    velocity_close(v);
}

static void test_hour_window_granularity(void **state)
{
    (void)state;
    struct velocity *v = open_small(16);
    record_ok(v, "aligned", 1, T0);  /* at the start of a minute */
    record_ok(v, "mid", 1, T0 + 30); /* in the middle of it */
    expect_counts(v, "aligned", T0 + 3540, 0, 1, 1);
    expect_counts(v, "aligned", T0 + 3599, 0, 1, 1);  /* same minute as now - 3540 */
    expect_counts(v, "aligned", T0 + 3600, 0, 0, 1);  /* 3600 s: never */
    expect_counts(v, "mid", T0 + 30 + 3540, 0, 1, 1); /* 3540 s: always */
    expect_counts(v, "mid", T0 + 30 + 3569, 0, 1, 1); /* 3569 s, bucket of now - 3540 */
    expect_counts(v, "mid", T0 + 30 + 3570, 0, 0, 1); /* 3570 s: one bucket early */
    velocity_close(v);
}

static void test_day_window_granularity(void **state)
{
    (void)state;
    struct velocity *v = open_small(16);
    record_ok(v, "aligned", 7, T0);
    record_ok(v, "mid", 7, T0 + 450);
    expect_counts(v, "aligned", T0 + 85500, 0, 0, 1);
    expect_counts(v, "aligned", T0 + 86399, 0, 0, 1);
    expect_counts(v, "aligned", T0 + 86400, 0, 0, 0);
    expect_counts(v, "mid", T0 + 450 + 85500, 0, 0, 1);
    expect_counts(v, "mid", T0 + 450 + 85949, 0, 0, 1);
    expect_counts(v, "mid", T0 + 450 + 85950, 0, 0, 0); /* next quarter hour: forgotten */
    struct velocity_counts c = read_of(v, "mid", T0 + 450 + 85949);
    assert_int_equal(c.sum_minor[VELOCITY_WINDOW_24H], 7);
    velocity_close(v);
}

/* The documented rule: an event at t is counted at now_s in a window of buckets_n buckets of
 * bucket_s when its bucket is at most now_s's, and within buckets_n of both now_s's bucket and
 * the bucket of the newest event recorded for the key (newest_s). */
static bool model_counts(int64_t t, int64_t now_s, int64_t newest_s, int64_t bucket_s,
                         int64_t buckets_n)
{
    int64_t b = t / bucket_s, nb = now_s / bucket_s, hb = newest_s / bucket_s;
    return b <= nb && b > (nb > hb ? nb : hb) - buckets_n;
}

static void test_random_streams_match_model(void **state)
{
    (void)state;
    static const int64_t bucket_s[] = {VELOCITY_1M_BUCKET_S, VELOCITY_1H_BUCKET_S,
                                       VELOCITY_24H_BUCKET_S};
    static const int64_t buckets_n[] = {VELOCITY_1M_BUCKETS_N, VELOCITY_1H_BUCKETS_N,
                                        VELOCITY_24H_BUCKETS_N};
    static int64_t times[4000], amounts[4000];
    uint64_t lcg = 5;
    for (int stream = 0; stream < 8; stream++) {
        struct velocity *v = open_small(4);
        int64_t t = T0 + (int64_t)(lcg_next(&lcg) % 86400);
        int n = 0;
        for (int i = 0; i < 4000; i++) {
            /* gaps from none to over a day, mostly short */
            static const int64_t gap_max[] = {1, 5, 90, 1000, 100000};
            t += (int64_t)(lcg_next(&lcg) % (uint64_t)gap_max[lcg_next(&lcg) % 5]);
            times[n] = t;
            amounts[n] = (int64_t)(lcg_next(&lcg) % 100000);
            record_ok(v, "k", amounts[n], t);
            n++;
            int64_t now_s = t + (int64_t)(lcg_next(&lcg) % 200) - 20; /* a little behind, too */
            struct velocity_counts c = read_of(v, "k", now_s);
            for (int w = 0; w < VELOCITY_WINDOWS_N; w++) {
                int64_t count = 0, sum = 0;
                /* times rise: events older than a day and a bucket never count */
                for (int j = n - 1; j >= 0 && times[j] > now_s - 2 * VELOCITY_IDLE_S_MAX; j--) {
                    if (model_counts(times[j], now_s, t, bucket_s[w], buckets_n[w])) {
                        count++;
                        sum += amounts[j];
                    }
                }
                if (c.count[w] != count || c.sum_minor[w] != sum)
                    fail_msg("stream %d event %d window %d: %lld/%lld, model %lld/%lld", stream, i,
                             w, (long long)c.count[w], (long long)c.sum_minor[w], (long long)count,
                             (long long)sum);
            }
        }
        velocity_close(v);
    }
}

static void test_out_of_order_times(void **state)
{
    (void)state;
    struct velocity *v = open_small(16);
    int64_t t = T0 + 5000;
    record_ok(v, "k", 10, t);
    record_ok(v, "k", 20, t - 30);     /* a slower worker: still in every window */
    record_ok(v, "k", 40, t - 3000);   /* too old for the minute, not the hour */
    record_ok(v, "k", 80, t - 100000); /* older than every window: ignored */
    struct velocity_counts c = read_of(v, "k", t);
    assert_int_equal(c.count[0], 2);
    assert_int_equal(c.sum_minor[0], 30);
    assert_int_equal(c.count[1], 3);
    assert_int_equal(c.sum_minor[1], 70);
    assert_int_equal(c.count[2], 3);
    assert_int_equal(c.sum_minor[2], 70);
    struct velocity_stats st;
    velocity_stats_read(v, &st);
    assert_int_equal(st.dropped_old_n, 1);
    assert_int_equal(st.keys_n, 1);
    /* Read in the past of the key's newest event: only what lies in that window and the
     * rings still hold (the minute ring moved past t - 3000 when it took t). */
    c = read_of(v, "k", t - 2990);
    assert_int_equal(c.count[0], 0);
    assert_int_equal(c.count[1], 1);
    assert_int_equal(c.sum_minor[1], 40);
    assert_int_equal(c.count[2], 1);
    assert_int_equal(c.sum_minor[2], 40);
    velocity_close(v);
}

/* A restart rebuilds the table from a log: every event of the last day recorded again at its own
 * (past) time, then live events at now. Whatever the order of the replay, reads at now and later
 * answer what a table that saw the events live answers, and events older than a day are dropped
 * (counted in dropped_old_n only when their key already holds a newer one). */
static void test_warm_start_replay(void **state)
{
    (void)state;
    enum { EVENTS = 600 };
    static int64_t times[EVENTS], amounts[EVENTS];
    static size_t order[EVENTS];
    uint64_t lcg = 11;
    const int64_t now = T0 + 2 * VELOCITY_IDLE_S_MAX + 17;
    for (size_t i = 0; i < EVENTS; i++) {
        /* a third in the last hour, most of them in the last day, a few older than a day */
        static const int64_t span_s[] = {120, 3700, 90000};
        times[i] = now - (int64_t)(lcg_next(&lcg) % (uint64_t)span_s[i % 3]);
        amounts[i] = (int64_t)(lcg_next(&lcg) % 5000);
        order[i] = i;
    }
    struct velocity *live = open_small(64), *sorted = open_small(64), *shuffled = open_small(64);
    /* live: in time order, as the payment path saw them */
    for (size_t i = 0; i < EVENTS; i++)
        for (size_t j = i + 1; j < EVENTS; j++)
            if (times[order[j]] < times[order[i]]) {
                size_t x = order[i];
                order[i] = order[j];
                order[j] = x;
            }
    for (size_t i = 0; i < EVENTS; i++) {
        char key[16];
        snprintf(key, sizeof(key), "u:%zu|EUR", order[i] % 4);
        record_ok(live, key, amounts[order[i]], times[order[i]]);
        record_ok(sorted, key, amounts[order[i]], times[order[i]]);
    }
    /* a replay in any order (newest first, then shuffled) */
    for (size_t i = EVENTS; i-- > 0;) {
        size_t j = (size_t)(lcg_next(&lcg) % (i + 1)), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    for (size_t i = 0; i < EVENTS; i++) {
        char key[16];
        snprintf(key, sizeof(key), "u:%zu|EUR", order[i] % 4);
        record_ok(shuffled, key, amounts[order[i]], times[order[i]]);
    }
    for (int64_t later = 0; later <= 4000; later += 1000) {
        for (size_t k = 0; k < 4; k++) {
            char key[16];
            snprintf(key, sizeof(key), "u:%zu|EUR", k);
            struct velocity_counts a = read_of(live, key, now + later);
            struct velocity_counts b = read_of(shuffled, key, now + later);
            assert_memory_equal(&a, &b, sizeof(a));
            b = read_of(sorted, key, now + later);
            assert_memory_equal(&a, &b, sizeof(a));
        }
    }
    /* then live events at now add to the restored ones */
    struct velocity_counts before = read_of(shuffled, "u:1|EUR", now);
    assert_true(before.count[VELOCITY_WINDOW_1H] > 0 && before.count[VELOCITY_WINDOW_24H] > 0);
    record_ok(shuffled, "u:1|EUR", 7, now);
    struct velocity_counts after = read_of(shuffled, "u:1|EUR", now);
    for (int w = 0; w < VELOCITY_WINDOWS_N; w++) {
        assert_int_equal(after.count[w], before.count[w] + 1);
        assert_int_equal(after.sum_minor[w], before.sum_minor[w] + 7);
    }
    velocity_close(live);
    velocity_close(sorted);
    velocity_close(shuffled);
}

/* Sums, keys and amounts ----------------------------------------------------------------------- */

static void test_sum_overflow_changes_nothing(void **state)
{
    (void)state;
    struct velocity *v = open_small(16);
    record_ok(v, "k", INT64_MAX - 10, T0);
    struct velocity_counts before = read_of(v, "k", T0);
    assert_int_equal(velocity_record(v, "k", 11, T0), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(velocity_record(v, "k", INT64_MAX, T0 + 1), CF_ERR_AMOUNT_OVERFLOW);
    struct velocity_counts after = read_of(v, "k", T0);
    assert_memory_equal(&before, &after, sizeof(before));
    record_ok(v, "k", 10, T0);
    struct velocity_counts c = read_of(v, "k", T0);
    assert_true(c.sum_minor[VELOCITY_WINDOW_24H] == INT64_MAX);
    assert_int_equal(c.count[VELOCITY_WINDOW_24H], 2);
    record_ok(v, "k", 0, T0 + 1); /* zero still counts */
    assert_int_equal(read_of(v, "k", T0 + 1).count[0], 3);

    /* Overflow in the day window only: the minute window, already moved past the old events,
     * must not take the new event either. */
    assert_int_equal(velocity_record(v, "k", 1, T0 + 120), CF_ERR_AMOUNT_OVERFLOW);
    expect_counts(v, "k", T0 + 120, 0, 3, 3);
    struct velocity_counts past = read_of(v, "k", T0 + 1);
    assert_int_equal(past.count[0], 3); /* the refused record did not move the rings */
    /* A day later the old sums are gone and the key takes amounts again. */
    record_ok(v, "k", INT64_MAX, T0 + 86400);
    c = read_of(v, "k", T0 + 86400);
    assert_int_equal(c.count[2], 1);
    assert_true(c.sum_minor[2] == INT64_MAX);
    velocity_close(v);
}

static void test_invalid_keys_and_amounts(void **state)
{
    (void)state;
    struct velocity *v = open_small(16);
    char key[VELOCITY_KEY_BYTES_MAX + 2];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0'; /* VELOCITY_KEY_BYTES_MAX + 1 bytes */
    struct velocity_counts c, sentinel;
    memset(&c, 0x5A, sizeof(c));
    memset(&sentinel, 0x5A, sizeof(sentinel));
    assert_int_equal(velocity_record(v, key, 1, T0), CF_ERR_INVALID_FIELD);
    assert_int_equal(velocity_read(v, key, T0, &c), CF_ERR_INVALID_FIELD);
    assert_int_equal(velocity_record(v, "", 1, T0), CF_ERR_INVALID_FIELD);
    assert_int_equal(velocity_read(v, "", T0, &c), CF_ERR_INVALID_FIELD);
    assert_memory_equal(&c, &sentinel, sizeof(c));
    assert_int_equal(velocity_record(v, "k", -1, T0), CF_ERR_INVALID_AMOUNT);
    assert_int_equal(velocity_record(v, "k", INT64_MIN, T0), CF_ERR_INVALID_AMOUNT);
    struct velocity_stats st;
    velocity_stats_read(v, &st);
    assert_int_equal(st.keys_n, 0);

    key[VELOCITY_KEY_BYTES_MAX] = '\0'; /* exactly the maximum */
    record_ok(v, key, 5, T0);
    assert_int_equal(read_of(v, key, T0).sum_minor[0], 5);
    /* Keys differ by any byte, and a prefix is another key. */
    key[VELOCITY_KEY_BYTES_MAX - 1] = '\0';
    assert_int_equal(read_of(v, key, T0).count[0], 0);
    record_ok(v, "i:203.0.113.7", 1, T0);
    assert_int_equal(read_of(v, "i:203.0.113.70", T0).count[0], 0);
    assert_int_equal(read_of(v, "i:203.0.113.7", T0).count[0], 1);
    /* Reads never create keys. */
    velocity_stats_read(v, &st);
    assert_int_equal(st.keys_n, 2);
    velocity_close(v);
}

/* Eviction ------------------------------------------------------------------------------------- */

static void test_idle_eviction(void **state)
{
    (void)state;
    struct velocity *v = open_small(8);
    record_ok(v, "a", 1, T0);
    record_ok(v, "b", 1, T0 + 100);
    record_ok(v, "c", 1, T0 + 200);
    record_ok(v, "a", 1, T0 + 300); /* a is now the most recent */
    /* 86400 s after b's record: b is idle (its windows are empty) and dropped in passing;
     * c and a are not idle yet. */
    record_ok(v, "d", 1, T0 + 100 + VELOCITY_IDLE_S_MAX);
    struct velocity_stats st;
    velocity_stats_read(v, &st);
    assert_int_equal(st.keys_n, 3);
    assert_int_equal(st.evicted_idle_n, 1);
    expect_counts(v, "c", T0 + 200 + 85500, 0, 0, 1);
    expect_counts(v, "b", T0 + 100, 0, 0, 0); /* forgotten */
    /* The sweep forgets every idle key, whatever its place in the list. */
    assert_int_equal(velocity_sweep(v, T0 + 300 + VELOCITY_IDLE_S_MAX - 1), 1); /* c */
    assert_int_equal(velocity_sweep(v, T0 + 300 + VELOCITY_IDLE_S_MAX), 1);     /* a */
    velocity_stats_read(v, &st);
    assert_int_equal(st.keys_n, 1);
    assert_int_equal(st.evicted_idle_n, 3);
    assert_int_equal(st.evicted_lru_n, 0);
    expect_counts(v, "a", T0 + 300, 0, 0, 0); /* forgotten: zeros even in the past */
    assert_int_equal(velocity_sweep(v, T0 + 3 * VELOCITY_IDLE_S_MAX), 1);
    assert_int_equal(velocity_sweep(v, T0 + 3 * VELOCITY_IDLE_S_MAX), 0);
    velocity_close(v);
}

static void test_full_table_evicts_least_recent(void **state)
{
    (void)state;
    struct velocity *v = open_small(4); /* one shard of 4 keys */
    record_ok(v, "a", 1, T0 + 1);
    record_ok(v, "b", 2, T0 + 2);
    record_ok(v, "c", 3, T0 + 3);
    record_ok(v, "d", 4, T0 + 4);
    (void)read_of(v, "b", T0 + 5); /* a read does not refresh b */
    record_ok(v, "a", 1, T0 + 5);  /* a record does refresh a */
    record_ok(v, "e", 5, T0 + 6);  /* full: b, the least recently recorded, goes */
    expect_counts(v, "b", T0 + 6, 0, 0, 0);
    expect_counts(v, "a", T0 + 6, 2, 2, 2);
    expect_counts(v, "c", T0 + 6, 1, 1, 1);
    expect_counts(v, "d", T0 + 6, 1, 1, 1);
    expect_counts(v, "e", T0 + 6, 1, 1, 1);
    struct velocity_stats st;
    velocity_stats_read(v, &st);
    assert_int_equal(st.keys_n, 4);
    assert_int_equal(st.keys_max, 4);
    assert_int_equal(st.evicted_lru_n, 1);
    record_ok(v, "b", 9, T0 + 7); /* back as a new key: c goes */
    expect_counts(v, "c", T0 + 7, 0, 0, 0);
    assert_int_equal(read_of(v, "b", T0 + 7).sum_minor[0], 9);
    velocity_close(v);
}

static void test_many_keys_stay_bounded(void **state)
{
    (void)state;
    assert_int_equal(hash_init(), 0);
    const size_t keys_max = 4096; /* sharded: 64 shards of 64 keys */
    struct velocity *v = NULL;
    assert_int_equal(velocity_open(keys_max, &v), CF_OK);
    char key[32];
    struct velocity_stats st;
    for (int i = 0; i < 50000; i++) {
        snprintf(key, sizeof(key), "d:device_%d", i);
        record_ok(v, key, i, T0 + i / 100);
        assert_int_equal(read_of(v, key, T0 + i / 100).sum_minor[0], i); /* newest kept */
        if (i % 1000 == 0) {
            velocity_stats_read(v, &st);
            assert_true(st.keys_n <= keys_max);
        }
    }
    velocity_stats_read(v, &st);
    assert_true(st.keys_n <= keys_max);
    assert_true(st.keys_n > keys_max * 3 / 4); /* the hash spreads keys over the shards */
    assert_int_equal(st.keys_n + st.evicted_lru_n + st.evicted_idle_n, 50000);
    /* The first keys went long ago; the last few are all there. */
    assert_int_equal(read_of(v, "d:device_0", T0 + 500).count[2], 0);
    for (int i = 49990; i < 50000; i++) {
        snprintf(key, sizeof(key), "d:device_%d", i);
        assert_int_equal(read_of(v, key, T0 + 500).count[2], 1);
    }
    assert_int_equal(velocity_sweep(v, T0 + 500 + VELOCITY_IDLE_S_MAX), st.keys_n);
    velocity_stats_read(v, &st);
    assert_int_equal(st.keys_n, 0);
    velocity_close(v);
    velocity_close(NULL);

    /* A bound that is not a multiple of the shards is still never passed. */
    v = open_small(1100);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "i:%d", i);
        record_ok(v, key, 1, T0);
    }
    velocity_stats_read(v, &st);
    assert_true(st.keys_n <= 1100 && st.keys_n > 1000);
    velocity_close(v);
}

/* Threads -------------------------------------------------------------------------------------- */

#define THREADS_N 4
#define THREAD_RECORDS_N 50000
#define SHARED_KEYS_N 8

struct worker {
    struct velocity *v;
    int index;
};

static const char *shared_key(int k)
{
    static const char *const keys[SHARED_KEYS_N] = {"u:a|EUR",    "u:b|EUR",    "d:x",  "d:y",
                                                    "i:10.0.0.1", "i:10.0.0.2", "p:m1", "p:m2"};
    return keys[k];
}

/* Worker w's i-th record: a key and an amount anyone can recompute. */
static int worker_key(int w, int i) { return (i * 7 + w * 3) % SHARED_KEYS_N; }
static int64_t worker_amount(int w, int i) { return (int64_t)(i % 1000) * 100 + w; }

static void *worker_run(void *arg)
{
    struct worker *wk = arg;
    for (int i = 0; i < THREAD_RECORDS_N; i++) {
        int64_t now_s = T0 + i / 1000; /* 50 s: every event stays in every window */
        if (velocity_record(wk->v, shared_key(worker_key(wk->index, i)),
                            worker_amount(wk->index, i), now_s) != CF_OK)
            return (void *)1;
        struct velocity_counts c;
        if (i % 16 == 0 && velocity_read(wk->v, shared_key(i % SHARED_KEYS_N), now_s, &c) != CF_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_threads_exact_totals(void **state)
{
    (void)state;
    struct velocity *v = open_small(1 << 12); /* sharded */
    pthread_t threads[THREADS_N];
    struct worker workers[THREADS_N];
    for (int w = 0; w < THREADS_N; w++) {
        workers[w] = (struct worker){v, w};
        assert_int_equal(pthread_create(&threads[w], NULL, worker_run, &workers[w]), 0);
    }
    for (int w = 0; w < THREADS_N; w++) {
        void *result = (void *)1;
        assert_int_equal(pthread_join(threads[w], &result), 0);
        assert_null(result);
    }
    int64_t count[SHARED_KEYS_N] = {0}, sum[SHARED_KEYS_N] = {0};
    for (int w = 0; w < THREADS_N; w++) {
        for (int i = 0; i < THREAD_RECORDS_N; i++) {
            count[worker_key(w, i)]++;
            sum[worker_key(w, i)] += worker_amount(w, i);
        }
    }
    int64_t total = 0;
    for (int k = 0; k < SHARED_KEYS_N; k++) {
        struct velocity_counts c = read_of(v, shared_key(k), T0 + 49);
        for (int w = 0; w < VELOCITY_WINDOWS_N; w++) { /* 0..49 s: in every window */
            if (c.count[w] != count[k] || c.sum_minor[w] != sum[k])
                fail_msg("key %d window %d: %lld/%lld, expected %lld/%lld", k, w,
                         (long long)c.count[w], (long long)c.sum_minor[w], (long long)count[k],
                         (long long)sum[k]);
        }
        total += c.count[VELOCITY_WINDOW_24H];
    }
    assert_int_equal(total, THREADS_N * THREAD_RECORDS_N);
    velocity_close(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),
        cmocka_unit_test(test_minute_window_is_exact),
        cmocka_unit_test(test_hour_window_granularity),
        cmocka_unit_test(test_day_window_granularity),
        cmocka_unit_test(test_random_streams_match_model),
        cmocka_unit_test(test_out_of_order_times),
        cmocka_unit_test(test_warm_start_replay),
        cmocka_unit_test(test_sum_overflow_changes_nothing),
        cmocka_unit_test(test_invalid_keys_and_amounts),
        cmocka_unit_test(test_idle_eviction),
        cmocka_unit_test(test_full_table_evicts_least_recent),
        cmocka_unit_test(test_many_keys_stay_bounded),
        cmocka_unit_test(test_threads_exact_totals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
