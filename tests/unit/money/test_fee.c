/*
 * test_fee.c - unit tests for fee.c: rule ranges, half-up rounding of the basis-point part, the
 * min/max/amount clamps, int64_t edges, and properties over pseudo-random rules and amounts
 * (fee <= amount, fee >= min, monotone); refund shares, their errors, and random splits of a
 * capture whose shares add up to exactly the fee.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>

#include "money/fee.h"

/* Written into outputs before a call that must fail, to check they are left untouched. */
#define SENTINEL_MINOR INT64_C(0x5A5A5A5A5A5A5A5A)

/* A fixed pseudo-random sequence (64-bit LCG), so failures reproduce. */
static uint64_t lcg_next(uint64_t *lcg_state)
{
    *lcg_state = *lcg_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *lcg_state;
}

/* A value in 0..max, often small, sometimes the whole range. */
static int64_t lcg_up_to(uint64_t *lcg_state, int64_t max)
{
    uint64_t bits = lcg_next(lcg_state) >> (lcg_next(lcg_state) % 64);
    return (int64_t)(bits % ((uint64_t)max + 1));
}

static int64_t fee_of(const struct fee_rule *r, int64_t amount_minor)
{
    int64_t fee = SENTINEL_MINOR;
    enum cf_err err = fee_compute(r, amount_minor, &fee);
    if (err != CF_OK)
        fail_msg("fee_compute(%" PRId64 ") -> %d", amount_minor, (int)err);
    return fee;
}

/* Rules ---------------------------------------------------------------------------------------- */

static void test_rule_check(void **state)
{
    (void)state;
    static const struct fee_rule good[] = {
        {0, 0, 0, 0},
        {FEE_BPS_MAX, 0, 0, 0},
        {290, 30, 50, 0},
        {290, 30, 50, 50},
        {1, INT64_MAX, INT64_MAX, INT64_MAX},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(fee_rule_check(&good[i]), CF_OK);
    static const struct fee_rule bad[] = {
        {-1, 0, 0, 0},        {FEE_BPS_MAX + 1, 0, 0, 0},
        {INT64_MIN, 0, 0, 0}, {100, -1, 0, 0},
        {100, 0, -1, 0},      {100, 0, 0, -1},
        {100, 0, 51, 50}, /* min above the cap */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fee_rule_check(&bad[i]), CF_ERR_INVALID_FIELD);
        int64_t fee = SENTINEL_MINOR;
        assert_int_equal(fee_compute(&bad[i], 1000, &fee), CF_ERR_INVALID_FIELD);
        assert_true(fee == SENTINEL_MINOR);
    }
}

/* Compute -------------------------------------------------------------------------------------- */

static void test_compute_examples(void **state)
{
    (void)state;
    struct fee_rule card = {290, 30, 0, 0}; /* 2.9% + 0.30 */
    assert_true(fee_of(&card, 10000) == 320);
    assert_true(fee_of(&card, 1) == 1); /* 0.029 -> 0, + 30, capped to the amount */
    assert_true(fee_of(&card, 100) == 33);

    struct fee_rule none = {0, 0, 0, 0};
    assert_true(fee_of(&none, 123456) == 0);

    struct fee_rule all = {FEE_BPS_MAX, 0, 0, 0};
    assert_true(fee_of(&all, 123456) == 123456);
    assert_true(fee_of(&all, INT64_MAX) == INT64_MAX);
}

/* Half up: an exact half goes up (away from zero), unlike money_mul_bps_half_even. */
static void test_compute_rounds_half_up(void **state)
{
    (void)state;
    struct fee_rule one_percent = {100, 0, 0, 0};
    assert_true(fee_of(&one_percent, 49) == 0);  /* 0.49 */
    assert_true(fee_of(&one_percent, 50) == 1);  /* 0.5  */
    assert_true(fee_of(&one_percent, 149) == 1); /* 1.49 */
    assert_true(fee_of(&one_percent, 150) == 2); /* 1.5  */
    assert_true(fee_of(&one_percent, 250) == 3); /* 2.5: half-even would say 2 */
    assert_true(fee_of(&one_percent, 251) == 3); /* 2.51 */
    assert_true(fee_of(&one_percent, 349) == 3); /* 3.49 */
    struct fee_rule one_bp = {1, 0, 0, 0};
    assert_true(fee_of(&one_bp, 4999) == 0);                    /* 0.4999 */
    assert_true(fee_of(&one_bp, 5000) == 1);                    /* 0.5 */
    assert_true(fee_of(&one_bp, INT64_MAX) == 922337203685478); /* ...477.5807 */
}

static void test_compute_clamps(void **state)
{
    (void)state;
    struct fee_rule floor_only = {100, 0, 50, 0};
    assert_true(fee_of(&floor_only, 1000) == 50);     /* 10 raised to 50 */
    assert_true(fee_of(&floor_only, 100000) == 1000); /* above the minimum */
    assert_true(fee_of(&floor_only, 20) == 20);       /* never more than the amount */

    struct fee_rule capped = {500, 100, 0, 300};
    assert_true(fee_of(&capped, 1000) == 150);
    assert_true(fee_of(&capped, 1000000) == 300);
    assert_true(fee_of(&capped, 50) == 50);

    struct fee_rule fixed_huge = {FEE_BPS_MAX, INT64_MAX, INT64_MAX, 0};
    assert_true(fee_of(&fixed_huge, INT64_MAX) == INT64_MAX); /* no overflow in the sum */
    assert_true(fee_of(&fixed_huge, 7) == 7);

    struct fee_rule min_equals_max = {250, 10, 40, 40};
    assert_true(fee_of(&min_equals_max, 1) == 1);
    assert_true(fee_of(&min_equals_max, 100) == 40);
    assert_true(fee_of(&min_equals_max, INT64_MAX) == 40);
}

static void test_compute_refuses_non_positive_amounts(void **state)
{
    (void)state;
    struct fee_rule card = {290, 30, 0, 0};
    int64_t fee = SENTINEL_MINOR;
    assert_int_equal(fee_compute(&card, 0, &fee), CF_ERR_INVALID_AMOUNT);
    assert_int_equal(fee_compute(&card, -1, &fee), CF_ERR_INVALID_AMOUNT);
    assert_int_equal(fee_compute(&card, INT64_MIN, &fee), CF_ERR_INVALID_AMOUNT);
    assert_true(fee == SENTINEL_MINOR);
}

static struct fee_rule rule_random(uint64_t *lcg_state)
{
    struct fee_rule r;
    r.bps = lcg_up_to(lcg_state, FEE_BPS_MAX);
    r.fixed_minor = lcg_up_to(lcg_state, INT64_MAX);
    r.min_minor = lcg_up_to(lcg_state, INT64_MAX);
    r.max_minor = lcg_next(lcg_state) % 3 == 0 ? 0 : lcg_up_to(lcg_state, INT64_MAX);
    if (r.max_minor > 0 && r.max_minor < r.min_minor) {
        int64_t t = r.max_minor;
        r.max_minor = r.min_minor;
        r.min_minor = t;
    }
    return r;
}

/* For amounts below 2^40 the half-up value can be had another way, in 64 bits:
 * floor((2 * amount * bps + 10000) / 20000). */
static int64_t expected_fee_small(const struct fee_rule *r, int64_t amount_minor)
{
    int64_t part = (2 * amount_minor * r->bps + 10000) / 20000;
    __int128 fee = (__int128)part + r->fixed_minor;
    if (fee < r->min_minor)
        fee = r->min_minor;
    if (r->max_minor > 0 && fee > r->max_minor)
        fee = r->max_minor;
    return fee > amount_minor ? amount_minor : (int64_t)fee;
}

static void test_compute_properties(void **state)
{
    (void)state;
    uint64_t lcg_state = 2024;
    for (int i = 0; i < 20000; i++) {
        struct fee_rule r = rule_random(&lcg_state);
        assert_int_equal(fee_rule_check(&r), CF_OK);
        int64_t a = 1 + lcg_up_to(&lcg_state, INT64_MAX - 2);
        int64_t b = a + lcg_up_to(&lcg_state, INT64_MAX - a);
        int64_t fee_a = fee_of(&r, a);
        int64_t fee_b = fee_of(&r, b);
        if (!(fee_a >= 0 && fee_a <= a))
            fail_msg("fee %" PRId64 " of %" PRId64 " out of range", fee_a, a);
        if (a >= r.min_minor && fee_a < r.min_minor)
            fail_msg("fee %" PRId64 " below the minimum %" PRId64, fee_a, r.min_minor);
        if (r.max_minor > 0 && fee_a > r.max_minor)
            fail_msg("fee %" PRId64 " above the cap %" PRId64, fee_a, r.max_minor);
        if (fee_b < fee_a)
            fail_msg("not monotone: %" PRId64 " -> %" PRId64 ", %" PRId64 " -> %" PRId64, a, fee_a,
                     b, fee_b);
        if (fee_of(&r, a + 1) < fee_a) /* a < INT64_MAX */
            fail_msg("not monotone at %" PRId64, a);
        int64_t small = 1 + lcg_up_to(&lcg_state, (INT64_C(1) << 40));
        assert_true(fee_of(&r, small) == expected_fee_small(&r, small));
    }
}

/* Refund shares -------------------------------------------------------------------------------- */

static int64_t share_of(int64_t fee, int64_t captured, int64_t refunded_before, int64_t refund,
                        int64_t returned_before)
{
    int64_t share = SENTINEL_MINOR;
    enum cf_err err =
        fee_refund_share(fee, captured, refunded_before, refund, returned_before, &share);
    if (err != CF_OK)
        fail_msg("fee_refund_share -> %d", (int)err);
    return share;
}

static void test_refund_share_examples(void **state)
{
    (void)state;
    /* Fee 320 on 10000, refunded in three thirds: 106, 107, 107. */
    assert_true(share_of(320, 10000, 0, 3333, 0) == 106);      /* floor(106.656) */
    assert_true(share_of(320, 10000, 3333, 3333, 106) == 107); /* floor(213.312) = 213 */
    assert_true(share_of(320, 10000, 6666, 3334, 213) == 107); /* the rest: 320 */
    /* A whole refund returns the whole fee. */
    assert_true(share_of(320, 10000, 0, 10000, 0) == 320);
    /* A zero fee returns nothing. */
    assert_true(share_of(0, 10000, 0, 5000, 0) == 0);
    /* Tiny refunds may return nothing until the total crosses a unit. */
    assert_true(share_of(3, 1000, 0, 1, 0) == 0);
    assert_true(share_of(3, 1000, 1, 333, 0) == 1);
    /* Returned-before below the bound (another rule's history) is made good now. */
    assert_true(share_of(320, 10000, 5000, 5000, 100) == 220);
    /* int64_t edges: the products are exact. */
    assert_true(share_of(INT64_MAX, INT64_MAX, 0, INT64_MAX / 2, 0) == INT64_MAX / 2);
    assert_true(share_of(INT64_MAX, INT64_MAX, INT64_MAX / 2, INT64_MAX - INT64_MAX / 2,
                         INT64_MAX / 2) == INT64_MAX - INT64_MAX / 2);
}

static void test_refund_share_errors(void **state)
{
    (void)state;
    static const struct {
        int64_t fee, captured, refunded_before, refund, returned_before;
        enum cf_err err;
    } cases[] = {
        {-1, 1000, 0, 10, 0, CF_ERR_CORRUPT},
        {10, 0, 0, 10, 0, CF_ERR_CORRUPT},
        {10, -5, 0, 10, 0, CF_ERR_CORRUPT},
        {10, 1000, -1, 10, 0, CF_ERR_CORRUPT},
        {10, 1000, 1001, 10, 0, CF_ERR_CORRUPT},
        {10, 1000, 500, 10, -1, CF_ERR_CORRUPT},
        {10, 1000, 500, 10, 6, CF_ERR_CORRUPT}, /* more returned than floor(10 * 500 / 1000) */
        {10, 1000, 0, 0, 0, CF_ERR_INVALID_AMOUNT},
        {10, 1000, 0, -10, 0, CF_ERR_INVALID_AMOUNT},
        {10, 1000, 0, 1001, 0, CF_ERR_REFUND_EXCEEDS},
        {10, 1000, 999, 2, 9, CF_ERR_REFUND_EXCEEDS},
        {10, 1000, 1000, 1, 10, CF_ERR_REFUND_EXCEEDS},
        {10, 1000, 500, INT64_MAX, 5, CF_ERR_REFUND_EXCEEDS},
        {10, INT64_MAX, INT64_MAX, INT64_MAX, 10, CF_ERR_REFUND_EXCEEDS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t share = SENTINEL_MINOR;
        enum cf_err err =
            fee_refund_share(cases[i].fee, cases[i].captured, cases[i].refunded_before,
                             cases[i].refund, cases[i].returned_before, &share);
        if (err != cases[i].err)
            fail_msg("case %zu: %d, expected %d", i, (int)err, (int)cases[i].err);
        assert_true(share == SENTINEL_MINOR);
    }
}

/* The next piece of a random split of what is left: the rest, a uniform part, or a tiny one;
 * after REFUND_PIECES_MAX pieces always the rest, so a split of a huge capture ends. */
#define REFUND_PIECES_MAX 40
static int64_t refund_random(uint64_t *lcg_state, int64_t left, int pieces)
{
    uint64_t pick = lcg_next(lcg_state) % 4;
    if (pieces >= REFUND_PIECES_MAX || pick == 0)
        return left;
    if (pick == 1)
        return 1 + lcg_up_to(lcg_state, left - 1 < 1000 ? left - 1 : 1000);
    return 1 + (int64_t)(lcg_next(lcg_state) % (uint64_t)left);
}

/* A capture refunded in random pieces: every share >= 0, and the shares add up to the fee. */
static void test_refund_share_random_splits(void **state)
{
    (void)state;
    uint64_t lcg_state = 99;
    for (int i = 0; i < 5000; i++) {
        int64_t captured = 1 + lcg_up_to(&lcg_state, INT64_MAX - 1);
        int64_t fee = lcg_up_to(&lcg_state, captured);
        if (lcg_next(&lcg_state) % 8 == 0)
            fee = lcg_up_to(&lcg_state, INT64_MAX); /* a fee above the capture works too */
        int64_t refunded = 0;
        int64_t returned = 0;
        int pieces = 0;
        while (refunded < captured) {
            int64_t refund = refund_random(&lcg_state, captured - refunded, pieces);
            int64_t share = share_of(fee, captured, refunded, refund, returned);
            assert_true(share >= 0 && share <= fee - returned);
            refunded += refund;
            returned += share;
            pieces++;
        }
        if (returned != fee)
            fail_msg("split %d of %" PRId64 " in %d pieces returned %" PRId64 " of fee %" PRId64, i,
                     captured, pieces, returned, fee);
    }
}

/* Many small refunds of a small capture: the worst case for accumulated floors. */
static void test_refund_share_unit_refunds(void **state)
{
    (void)state;
    for (int64_t captured = 1; captured <= 200; captured++) {
        for (int64_t fee = 0; fee <= captured + 3; fee++) {
            int64_t returned = 0;
            for (int64_t refunded = 0; refunded < captured; refunded++) {
                int64_t share = share_of(fee, captured, refunded, 1, returned);
                assert_true(share >= 0);
                returned += share;
            }
            assert_true(returned == fee);
        }
    }
}

/* Prorated shares (failed refunds tolerated) --------------------------------------------------- */

static int64_t prorate(int64_t total, int64_t captured, int64_t refunded_before, int64_t refund,
                       int64_t returned_before)
{
    int64_t share = SENTINEL_MINOR;
    enum cf_err err =
        fee_prorate_share(total, captured, refunded_before, refund, returned_before, &share);
    if (err != CF_OK)
        fail_msg("fee_prorate_share -> %d", (int)err);
    return share;
}

static void test_prorate_examples(void **state)
{
    (void)state;
    /* Without failures it is fee_refund_share: 106, 107, 107. */
    assert_true(prorate(320, 10000, 0, 3333, 0) == 106);
    assert_true(prorate(320, 10000, 3333, 3333, 106) == 107);
    assert_true(prorate(320, 10000, 6666, 3334, 213) == 107);
    /* Paid 10 for a capture of 3: a refund of 2 returns 6, one of 1 the rest (4). */
    assert_true(prorate(10, 3, 0, 2, 0) == 6);
    assert_true(prorate(10, 3, 2, 1, 6) == 4);
    /* The refund of 2 failed and gave its 2 and 6 back: 4 stays returned on a reserve of 1,
     * above floor(10 * 1 / 3) = 3. The next refund of 1 returns nothing more than the floor
     * allows (0), and the last one the rest. */
    assert_true(prorate(10, 3, 1, 1, 4) == 2);
    assert_true(prorate(10, 3, 1, 2, 4) == 6);
    assert_true(prorate(10, 3, 2, 1, 8) == 2);
    /* A failed history can put returned above the floor of the next step: clamped to 0. */
    assert_true(prorate(10, 3, 0, 1, 4) == 0);
}

static void test_prorate_errors(void **state)
{
    (void)state;
    int64_t share = SENTINEL_MINOR;
    assert_int_equal(fee_prorate_share(-1, 3, 0, 1, 0, &share), CF_ERR_CORRUPT);
    assert_int_equal(fee_prorate_share(10, 0, 0, 1, 0, &share), CF_ERR_CORRUPT);
    assert_int_equal(fee_prorate_share(10, 3, 4, 1, 0, &share), CF_ERR_CORRUPT);
    assert_int_equal(fee_prorate_share(10, 3, 0, 1, 11, &share), CF_ERR_CORRUPT);
    assert_int_equal(fee_prorate_share(10, 3, 0, 0, 0, &share), CF_ERR_INVALID_AMOUNT);
    assert_int_equal(fee_prorate_share(10, 3, 2, 2, 0, &share), CF_ERR_REFUND_EXCEEDS);
    assert_true(share == SENTINEL_MINOR);
}

/* Random refund sequences, some failing: the shares of the refunds that stand never pass the
 * total and equal it once the refunds reach the capture. */
static void test_prorate_random_with_failures(void **state)
{
    (void)state;
    uint64_t lcg_state = 77;
    for (int round = 0; round < 2000; round++) {
        int64_t captured = 1 + lcg_up_to(&lcg_state, 100000);
        int64_t total = lcg_up_to(&lcg_state, 3 * captured);
        int64_t refunded = 0, returned = 0;
        while (refunded < captured) {
            int64_t refund = 1 + lcg_up_to(&lcg_state, captured - refunded - 1);
            int64_t share = prorate(total, captured, refunded, refund, returned);
            assert_true(share >= 0 && returned + share <= total);
            refunded += refund;
            returned += share;
            if (refunded < captured && lcg_up_to(&lcg_state, 4) == 0) { /* it failed */
                refunded -= refund;
                returned -= share;
            }
        }
        assert_true(returned == total);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_check),
        cmocka_unit_test(test_compute_examples),
        cmocka_unit_test(test_compute_rounds_half_up),
        cmocka_unit_test(test_compute_clamps),
        cmocka_unit_test(test_compute_refuses_non_positive_amounts),
        cmocka_unit_test(test_compute_properties),
        cmocka_unit_test(test_refund_share_examples),
        cmocka_unit_test(test_refund_share_errors),
        cmocka_unit_test(test_refund_share_random_splits),
        cmocka_unit_test(test_refund_share_unit_refunds),
        cmocka_unit_test(test_prorate_examples),
        cmocka_unit_test(test_prorate_errors),
        cmocka_unit_test(test_prorate_random_with_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
