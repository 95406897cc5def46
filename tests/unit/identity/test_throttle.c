/*
 * test_throttle.c - unit tests for src/identity/throttle.c: free failures pass, then delays of
 * 1, 2, 4, ... seconds from the last failure, capped at THROTTLE_DELAY_MAX_S (also after very
 * many failures, where 2^n would overflow); the window forgets; a success clears; the per-IP
 * allowance; keys are independent; the table is bounded and evicts the oldest key; several
 * threads at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <pthread.h>
#include <string.h>

#include "core/hash.h"
#include "identity/throttle.h"

#define T0_S 1700000000LL

/* Threads hammering one table, and the failures each records. */
#define HAMMER_THREADS 4
#define HAMMER_FAILURES 20000

static void key_of(uint32_t n, uint8_t key[HASH_BYTES])
{
    uint8_t text[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    hash_sha256(text, sizeof(text), key);
}

static int setup(void **state)
{
    struct throttle *t = NULL;
    if (throttle_create(&t) != CF_OK)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    throttle_free(*state);
    return 0;
}

static void test_unknown_key_passes(void **state)
{
    struct throttle *t = *state;
    uint8_t k[HASH_BYTES];
    key_of(1, k);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S), 0);
    throttle_success(t, k); /* clearing an unknown key is harmless */
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S), 0);
}

static void test_free_then_exponential_then_cap(void **state)
{
    struct throttle *t = *state;
    uint8_t k[HASH_BYTES];
    key_of(2, k);
    int64_t now_s = T0_S;
    for (int i = 0; i < THROTTLE_FREE_FAILURES - 1; i++) {
        throttle_failure(t, k, now_s);
        assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, now_s), 0);
    }
    int64_t expect_s = 1;
    for (int i = 0; i < 20; i++) {
        throttle_failure(t, k, now_s);
        assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, now_s), expect_s);
        /* the wait runs from the last failure */
        if (expect_s > 1)
            assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, now_s + 1),
                             expect_s - 1);
        assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, now_s + expect_s), 0);
        now_s += expect_s;
        expect_s = expect_s * 2 > THROTTLE_DELAY_MAX_S ? THROTTLE_DELAY_MAX_S : expect_s * 2;
    }
    assert_int_equal(expect_s, THROTTLE_DELAY_MAX_S);
}

static void test_cap_holds_after_many_failures(void **state)
{
    struct throttle *t = *state;
    uint8_t k[HASH_BYTES];
    key_of(3, k);
    for (int i = 0; i < 5000; i++) /* 2^(5000 - 5) would overflow anything */
        throttle_failure(t, k, T0_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S), THROTTLE_DELAY_MAX_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_IP_FREE_FAILURES, T0_S), THROTTLE_DELAY_MAX_S);
    /* a clock that went back never asks for more than the cap */
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S - 100000),
                     THROTTLE_DELAY_MAX_S);
}

static void test_window_forgets(void **state)
{
    struct throttle *t = *state;
    uint8_t k[HASH_BYTES];
    key_of(4, k);
    for (int i = 0; i < THROTTLE_FREE_FAILURES + 3; i++)
        throttle_failure(t, k, T0_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S), 8);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S + THROTTLE_WINDOW_S - 1),
                     0);
    /* past the window a new failure starts the count again: free once more */
    throttle_failure(t, k, T0_S + THROTTLE_WINDOW_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S + THROTTLE_WINDOW_S), 0);
    for (int i = 0; i < THROTTLE_FREE_FAILURES - 1; i++)
        throttle_failure(t, k, T0_S + THROTTLE_WINDOW_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S + THROTTLE_WINDOW_S), 1);
    /* failures spread out but each within the window of the last keep counting */
    uint8_t k2[HASH_BYTES];
    key_of(5, k2);
    for (int i = 0; i < THROTTLE_FREE_FAILURES + 1; i++)
        throttle_failure(t, k2, T0_S + (int64_t)i * (THROTTLE_WINDOW_S - 1));
    int64_t last_s = T0_S + (int64_t)THROTTLE_FREE_FAILURES * (THROTTLE_WINDOW_S - 1);
    assert_int_equal(throttle_wait_s(t, k2, THROTTLE_FREE_FAILURES, last_s), 2);
}

static void test_success_clears(void **state)
{
    struct throttle *t = *state;
    uint8_t k[HASH_BYTES];
    key_of(6, k);
    for (int i = 0; i < THROTTLE_FREE_FAILURES + 4; i++)
        throttle_failure(t, k, T0_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S), 16);
    throttle_success(t, k);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S), 0);
    throttle_failure(t, k, T0_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S), 0);
}

static void test_ip_allowance(void **state)
{
    struct throttle *t = *state;
    uint8_t k[HASH_BYTES];
    key_of(7, k);
    for (int i = 0; i < THROTTLE_IP_FREE_FAILURES - 1; i++) {
        throttle_failure(t, k, T0_S);
        assert_int_equal(throttle_wait_s(t, k, THROTTLE_IP_FREE_FAILURES, T0_S), 0);
    }
    /* the same count is long past the per-login allowance */
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S), THROTTLE_DELAY_MAX_S);
    throttle_failure(t, k, T0_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_IP_FREE_FAILURES, T0_S), 1);
    throttle_failure(t, k, T0_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_IP_FREE_FAILURES, T0_S), 2);
}

static void test_keys_independent(void **state)
{
    struct throttle *t = *state;
    uint8_t a[HASH_BYTES], b[HASH_BYTES];
    key_of(8, a);
    key_of(9, b);
    for (int i = 0; i < THROTTLE_FREE_FAILURES + 1; i++)
        throttle_failure(t, a, T0_S);
    assert_int_equal(throttle_wait_s(t, a, THROTTLE_FREE_FAILURES, T0_S), 2);
    assert_int_equal(throttle_wait_s(t, b, THROTTLE_FREE_FAILURES, T0_S), 0);
    throttle_success(t, b);
    assert_int_equal(throttle_wait_s(t, a, THROTTLE_FREE_FAILURES, T0_S), 2);
}

static void test_eviction_bound(void **state)
{
    struct throttle *t = *state;
    uint8_t first[HASH_BYTES], second[HASH_BYTES], k[HASH_BYTES];
    key_of(0x80000000u, first);
    key_of(0x80000001u, second);
    for (int i = 0; i < THROTTLE_FREE_FAILURES + 2; i++)
        throttle_failure(t, first, T0_S);
    for (int i = 0; i < THROTTLE_FREE_FAILURES + 2; i++)
        throttle_failure(t, second, T0_S + 1);
    /* fill the table exactly: both keys are still known */
    for (uint32_t n = 0; n < THROTTLE_KEYS_MAX - 2; n++) {
        key_of(n, k);
        throttle_failure(t, k, T0_S + 2);
    }
    assert_int_equal(throttle_wait_s(t, first, THROTTLE_FREE_FAILURES, T0_S + 2), 2);
    assert_int_equal(throttle_wait_s(t, second, THROTTLE_FREE_FAILURES, T0_S + 2), 3);
    /* one more key evicts the oldest, and only it */
    key_of(THROTTLE_KEYS_MAX, k);
    throttle_failure(t, k, T0_S + 2);
    assert_int_equal(throttle_wait_s(t, first, THROTTLE_FREE_FAILURES, T0_S + 2), 0);
    assert_int_equal(throttle_wait_s(t, second, THROTTLE_FREE_FAILURES, T0_S + 2), 3);
    /* a failure moves a key to the young end: then another is evicted first */
    throttle_failure(t, second, T0_S + 3);
    for (uint32_t n = 0; n < 10; n++) {
        key_of(THROTTLE_KEYS_MAX + 1 + n, k);
        throttle_failure(t, k, T0_S + 3);
    }
    assert_int_equal(throttle_wait_s(t, second, THROTTLE_FREE_FAILURES, T0_S + 3), 8);
    /* every key older than the window is dropped as new failures come in; the table works on */
    key_of(0x90000000u, k);
    for (int i = 0; i < THROTTLE_FREE_FAILURES + 1; i++)
        throttle_failure(t, k, T0_S + 3 + THROTTLE_WINDOW_S);
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S + 3 + THROTTLE_WINDOW_S),
                     2);
    assert_int_equal(
        throttle_wait_s(t, second, THROTTLE_FREE_FAILURES, T0_S + 3 + THROTTLE_WINDOW_S), 0);
}

struct hammer {
    struct throttle *t;
    uint32_t base;
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    uint8_t k[HASH_BYTES];
    for (uint32_t i = 0; i < HAMMER_FAILURES; i++) {
        key_of(h->base + i % 500, k);
        throttle_failure(h->t, k, T0_S);
        (void)throttle_wait_s(h->t, k, THROTTLE_FREE_FAILURES, T0_S);
        if (i % 7 == 0)
            throttle_success(h->t, k);
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct throttle *t = *state;
    pthread_t th[HAMMER_THREADS];
    struct hammer h[HAMMER_THREADS];
    for (uint32_t i = 0; i < HAMMER_THREADS; i++) {
        h[i] = (struct hammer){.t = t, .base = 1000000u + (i % 2) * 100}; /* overlapping keys */
        assert_int_equal(pthread_create(&th[i], NULL, hammer_run, &h[i]), 0);
    }
    for (int i = 0; i < HAMMER_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    uint8_t k[HASH_BYTES];
    key_of(1000000u + 650, k); /* touched by nobody */
    assert_int_equal(throttle_wait_s(t, k, THROTTLE_FREE_FAILURES, T0_S), 0);
}

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unknown_key_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_then_exponential_then_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_holds_after_many_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_success_clears, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_allowance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
