/*
 * test_money.c - unit tests for money.c: checked add/sub at the int64_t edges, basis-point fees
 * with half-to-even rounding, and the strict text form (parse, format, round trips).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <string.h>

#include "money/money.h"

/* Written into outputs before a call that must fail, to check they are left untouched. */
#define SENTINEL_MINOR INT64_C(0x5A5A5A5A5A5A5A5A)

/* Add / sub ------------------------------------------------------------------------------------ */

static void test_add_basic_and_edges(void **state)
{
    (void)state;
    int64_t sum = 0;
    assert_int_equal(money_add(1234, 66, &sum), CF_OK);
    assert_true(sum == 1300);
    assert_int_equal(money_add(-5, 3, &sum), CF_OK);
    assert_true(sum == -2);
    assert_int_equal(money_add(INT64_MAX, 0, &sum), CF_OK);
    assert_true(sum == INT64_MAX);
    assert_int_equal(money_add(INT64_MAX - 1, 1, &sum), CF_OK);
    assert_true(sum == INT64_MAX);
    assert_int_equal(money_add(INT64_MIN, 0, &sum), CF_OK);
    assert_true(sum == INT64_MIN);
    assert_int_equal(money_add(INT64_MIN + 1, -1, &sum), CF_OK);
    assert_true(sum == INT64_MIN);
    assert_int_equal(money_add(INT64_MIN, INT64_MAX, &sum), CF_OK);
    assert_true(sum == -1);
}

static void test_add_overflow_leaves_out_untouched(void **state)
{
    (void)state;
    int64_t sum = SENTINEL_MINOR;
    assert_int_equal(money_add(INT64_MAX, 1, &sum), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_add(1, INT64_MAX, &sum), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_add(INT64_MAX, INT64_MAX, &sum), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_add(INT64_MIN, -1, &sum), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_add(INT64_MIN, INT64_MIN, &sum), CF_ERR_AMOUNT_OVERFLOW);
    assert_true(sum == SENTINEL_MINOR);
}

static void test_sub_basic_and_edges(void **state)
{
    (void)state;
    int64_t difference = 0;
    assert_int_equal(money_sub(1300, 66, &difference), CF_OK);
    assert_true(difference == 1234);
    assert_int_equal(money_sub(0, INT64_MAX, &difference), CF_OK);
    assert_true(difference == -INT64_MAX);
    assert_int_equal(money_sub(-1, INT64_MAX, &difference), CF_OK);
    assert_true(difference == INT64_MIN);
    assert_int_equal(money_sub(INT64_MAX, INT64_MAX, &difference), CF_OK);
    assert_true(difference == 0);
    assert_int_equal(money_sub(INT64_MIN, INT64_MIN, &difference), CF_OK);
    assert_true(difference == 0);
    assert_int_equal(money_sub(-1, INT64_MIN, &difference), CF_OK);
    assert_true(difference == INT64_MAX);
}

static void test_sub_overflow_leaves_out_untouched(void **state)
{
    (void)state;
    int64_t difference = SENTINEL_MINOR;
    assert_int_equal(money_sub(INT64_MIN, 1, &difference), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_sub(0, INT64_MIN, &difference), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_sub(INT64_MAX, -1, &difference), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_sub(-2, INT64_MAX, &difference), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_sub(INT64_MAX, INT64_MIN, &difference), CF_ERR_AMOUNT_OVERFLOW);
    assert_true(difference == SENTINEL_MINOR);
}

/* Basis points --------------------------------------------------------------------------------- */

struct bps_case {
    int64_t amount_minor;
    int64_t bps;
    int64_t expected_minor;
};

static void check_bps_cases(const struct bps_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        int64_t fee = SENTINEL_MINOR;
        enum cf_err err = money_mul_bps_half_even(cases[i].amount_minor, cases[i].bps, &fee);
        if (err != CF_OK || fee != cases[i].expected_minor)
            fail_msg("%" PRId64 " * %" PRId64 " bps: err %d, got %" PRId64 ", want %" PRId64,
                     cases[i].amount_minor, cases[i].bps, (int)err, fee, cases[i].expected_minor);
    }
}

static void test_bps_half_even_ties(void **state)
{
    (void)state;
    static const struct bps_case cases[] = {
        {200, 25, 0},    /* 0.5 -> 0 */
        {600, 25, 2},    /* 1.5 -> 2 */
        {1000, 25, 2},   /* 2.5 -> 2 */
        {1400, 25, 4},   /* 3.5 -> 4 */
        {1800, 25, 4},   /* 4.5 -> 4 */
        {1, 5000, 0},    /* 0.5 -> 0 */
        {3, 5000, 2},    /* 1.5 -> 2 */
        {-200, 25, 0},   /* -0.5 -> 0 */
        {-600, 25, -2},  /* -1.5 -> -2 */
        {-1000, 25, -2}, /* -2.5 -> -2 */
        {-1400, 25, -4}, /* -3.5 -> -4 */
        {600, -25, -2},  /* negative bps: -1.5 -> -2 */
        {-600, -25, 2},  /* both negative: 1.5 -> 2 */
    };
    check_bps_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_bps_non_ties_round_to_nearest(void **state)
{
    (void)state;
    static const struct bps_case cases[] = {
        {201, 25, 1},      /* 0.5025 -> 1 */
        {199, 25, 0},      /* 0.4975 -> 0 */
        {-201, 25, -1},    /* -0.5025 -> -1 */
        {-199, 25, 0},     /* -0.4975 -> 0 */
        {10000, 250, 250}, /* 2.5% of 100.00 = 2.50 exactly */
        {12345, 290, 358}, /* 358.005 -> 358 */
        {12355, 290, 358}, /* 358.295 -> 358 */
        {12365, 290, 359}, /* 358.585 -> 359 */
        {999, 1, 0},       /* 0.0999 -> 0 */
        {0, 10000, 0},     {123456, 0, 0}, {123456, 10000, 123456}, {123456, 20000, 246912},
    };
    check_bps_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_bps_int64_edges(void **state)
{
    (void)state;
    static const struct bps_case cases[] = {
        {INT64_MAX, 10000, INT64_MAX},
        {INT64_MIN, 10000, INT64_MIN},
        {INT64_MAX, -10000, -INT64_MAX},
        {INT64_MIN, 5000, INT64_MIN / 2},
        /* INT64_MAX / 2 = 4611686018427387903.5, a tie to the even 4611686018427387904. */
        {INT64_MAX, 5000, INT64_C(4611686018427387904)},
        {INT64_MAX, 1, INT64_C(922337203685478)}, /* 922337203685477.5807 -> ...478 */
        /* 10000 * INT64_MAX + 28: a quotient of exactly INT64_MAX that rounds down. */
        {INT64_C(9219684163189500007), 10004, INT64_MAX},
        /* 10000 * 2^63 + 32 in magnitude, negative: rounds down to exactly INT64_MIN. */
        {INT64_C(-9219684163189500008), 10004, INT64_MIN},
    };
    check_bps_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_bps_overflow_leaves_out_untouched(void **state)
{
    (void)state;
    int64_t fee = SENTINEL_MINOR;
    assert_int_equal(money_mul_bps_half_even(INT64_MAX, 10001, &fee), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_mul_bps_half_even(INT64_MAX, 20000, &fee), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_mul_bps_half_even(INT64_MIN, 20000, &fee), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_mul_bps_half_even(INT64_MIN, -10000, &fee), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_mul_bps_half_even(INT64_MIN, INT64_MIN, &fee), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_mul_bps_half_even(INT64_MAX, INT64_MAX, &fee), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(money_mul_bps_half_even(INT64_MIN, INT64_MAX, &fee), CF_ERR_AMOUNT_OVERFLOW);
    /* The truncated quotient is INT64_MAX; rounding the .8249 up is what overflows. */
    assert_int_equal(money_mul_bps_half_even(INT64_C(9222449791875588249), 10001, &fee),
                     CF_ERR_AMOUNT_OVERFLOW);
    /* The same on the negative side: 2^63 + 0.825 rounds to 2^63 + 1 in magnitude. */
    assert_int_equal(money_mul_bps_half_even(INT64_C(-9222449791875588250), 10001, &fee),
                     CF_ERR_AMOUNT_OVERFLOW);
    assert_true(fee == SENTINEL_MINOR);
}

/* Parse ---------------------------------------------------------------------------------------- */

struct parse_case {
    const char *text;
    int scale;
    int64_t expected_minor;
};

static void check_parse_ok(const struct parse_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        int64_t amount = SENTINEL_MINOR;
        enum cf_err err =
            money_parse(cases[i].text, strlen(cases[i].text), cases[i].scale, &amount);
        if (err != CF_OK || amount != cases[i].expected_minor)
            fail_msg("\"%s\" at scale %d: err %d, got %" PRId64 ", want %" PRId64, cases[i].text,
                     cases[i].scale, (int)err, amount, cases[i].expected_minor);
    }
}

static void check_parse_fails(const char *const *texts, size_t count, int scale,
                              enum cf_err expected)
{
    for (size_t i = 0; i < count; i++) {
        int64_t amount = SENTINEL_MINOR;
        enum cf_err err = money_parse(texts[i], strlen(texts[i]), scale, &amount);
        if (err != expected || amount != SENTINEL_MINOR)
            fail_msg("\"%s\" at scale %d: err %d, want %d; out %" PRId64, texts[i], scale, (int)err,
                     (int)expected, amount);
    }
}

static void test_parse_valid(void **state)
{
    (void)state;
    static const struct parse_case cases[] = {
        {"0", 0, 0},
        {"0", 2, 0},
        {"-0", 2, 0},
        {"0.00", 2, 0},
        {"-0.00", 2, 0},
        {"0.5", 1, 5},
        {"0.5", 2, 50},
        {"-0.5", 2, -50},
        {"12.34", 2, 1234},
        {"12.3", 2, 1230},
        {"-12.34", 2, -1234},
        {"10.05", 2, 1005},
        {"1000", 0, 1000},
        {"1000", 2, 100000},
        {"-7", 0, -7},
        {"1", 4, 10000},
        {"0.0001", 4, 1},
        {"-0.0001", 4, -1},
        {"1.234", 3, 1234},
        {"1.2", 3, 1200},
        {"0.001", 3, 1},
        {"9.9", 1, 99},
        {"123456789", 1, 1234567890},
    };
    check_parse_ok(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_parse_int64_boundaries(void **state)
{
    (void)state;
    static const struct parse_case cases[] = {
        {"9223372036854775807", 0, INT64_MAX},
        {"-9223372036854775808", 0, INT64_MIN},
        {"-9223372036854775807", 0, -INT64_MAX},
        {"922337203685477580.7", 1, INT64_MAX},
        {"-922337203685477580.8", 1, INT64_MIN},
        {"92233720368547758.07", 2, INT64_MAX},
        {"-92233720368547758.08", 2, INT64_MIN},
        {"9223372036854775.807", 3, INT64_MAX},
        {"-9223372036854775.808", 3, INT64_MIN},
        {"922337203685477.5807", 4, INT64_MAX},
        {"-922337203685477.5808", 4, INT64_MIN},
        {"922337203685477.58", 4, INT64_C(9223372036854775800)},
    };
    check_parse_ok(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_parse_overflow(void **state)
{
    (void)state;
    static const char *const scale0[] = {
        "9223372036854775808",  "-9223372036854775809",  "18446744073709551615",
        "18446744073709551616", "-18446744073709551616", "99999999999999999999999999999",
    };
    static const char *const scale2[] = {
        "92233720368547758.08", "-92233720368547758.09", "92233720368547759",
        "100000000000000000",   "184467440737095516.16",
    };
    static const char *const scale4[] = {
        "922337203685477.5808", "-922337203685477.5809", "922337203685477.6",
        "1000000000000000",     "10000000000000000",
    };
    check_parse_fails(scale0, sizeof(scale0) / sizeof(scale0[0]), 0, CF_ERR_AMOUNT_OVERFLOW);
    check_parse_fails(scale2, sizeof(scale2) / sizeof(scale2[0]), 2, CF_ERR_AMOUNT_OVERFLOW);
    check_parse_fails(scale4, sizeof(scale4) / sizeof(scale4[0]), 4, CF_ERR_AMOUNT_OVERFLOW);
}

static void test_parse_malformed_every_scale(void **state)
{
    (void)state;
    static const char *const malformed[] = {
        "",
        "-",
        ".",
        "-.",
        ".5",
        "-.5",
        "1.",
        "-1.",
        "007",
        "00",
        "-00",
        "01",
        "-01",
        "00.5",
        "01.5",
        "+1",
        "+0",
        " 1",
        "1 ",
        "\t1",
        "1\n",
        "1e3",
        "1E3",
        "1,000",
        "1_000",
        "1.2.3",
        "1..2",
        "--1",
        "-+1",
        "1-",
        "- 1",
        "abc",
        "0x10",
        "1.-5",
        "1.+5",
        "NaN",
        "inf",
        "-inf",
        "1/2",
        "\xef\xbc\x91",
        "1.5x",
        "x1.5",
        "99999999999999999999x",
        "-99999999999999999999.",
    };
    for (int scale = 0; scale <= MONEY_SCALE_MAX; scale++)
        check_parse_fails(malformed, sizeof(malformed) / sizeof(malformed[0]), scale,
                          CF_ERR_INVALID_AMOUNT);
}

static void test_parse_too_many_fraction_digits(void **state)
{
    (void)state;
    static const char *const scale0[] = {"1.5", "0.0", "1.0", "-0.5", "9223372036854775807.0"};
    static const char *const scale1[] = {"1.50", "0.05"};
    static const char *const scale2[] = {"1.005", "0.000", "12.340", "-0.001"};
    static const char *const scale3[] = {"1.0005", "0.0000"};
    static const char *const scale4[] = {"1.00001", "0.00000", "922337203685477.58070"};
    enum cf_err invalid = CF_ERR_INVALID_AMOUNT;
    check_parse_fails(scale0, sizeof(scale0) / sizeof(scale0[0]), 0, invalid);
    check_parse_fails(scale1, sizeof(scale1) / sizeof(scale1[0]), 1, invalid);
    check_parse_fails(scale2, sizeof(scale2) / sizeof(scale2[0]), 2, invalid);
    check_parse_fails(scale3, sizeof(scale3) / sizeof(scale3[0]), 3, invalid);
    check_parse_fails(scale4, sizeof(scale4) / sizeof(scale4[0]), 4, invalid);
}

static void test_parse_honours_len(void **state)
{
    (void)state;
    int64_t amount = SENTINEL_MINOR;
    /* Only the first len bytes are the amount; nothing after them is read as part of it. */
    assert_int_equal(money_parse("12.345", 4, 2, &amount), CF_OK);
    assert_true(amount == 1230);
    assert_int_equal(money_parse("7x", 1, 0, &amount), CF_OK);
    assert_true(amount == 7);

    /* An embedded NUL is a character like any other: not a digit, so malformed. */
    static const char with_nul[] = {'1', '\0', '2'};
    amount = SENTINEL_MINOR;
    assert_int_equal(money_parse(with_nul, sizeof(with_nul), 2, &amount), CF_ERR_INVALID_AMOUNT);
    assert_int_equal(money_parse("12", 0, 2, &amount), CF_ERR_INVALID_AMOUNT);
    assert_int_equal(money_parse(NULL, 0, 2, &amount), CF_ERR_INVALID_AMOUNT);
    assert_true(amount == SENTINEL_MINOR);
}

/* Format --------------------------------------------------------------------------------------- */

struct format_case {
    int64_t amount_minor;
    int scale;
    const char *expected;
};

static void test_format_values(void **state)
{
    (void)state;
    static const struct format_case cases[] = {
        {0, 0, "0"},
        {0, 2, "0.00"},
        {0, 4, "0.0000"},
        {1234, 2, "12.34"},
        {-1234, 2, "-12.34"},
        {5, 2, "0.05"},
        {-5, 2, "-0.05"},
        {1, 4, "0.0001"},
        {-1, 3, "-0.001"},
        {100, 1, "10.0"},
        {1000, 0, "1000"},
        {-7, 0, "-7"},
        {INT64_MAX, 0, "9223372036854775807"},
        {INT64_MIN, 0, "-9223372036854775808"},
        {INT64_MAX, 2, "92233720368547758.07"},
        {INT64_MIN, 2, "-92233720368547758.08"},
        {INT64_MIN, 4, "-922337203685477.5808"},
        {INT64_MAX, 4, "922337203685477.5807"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        int len = money_format(cases[i].amount_minor, cases[i].scale, buf, sizeof(buf));
        assert_int_equal(len, (int)strlen(cases[i].expected));
        assert_string_equal(buf, cases[i].expected);
    }
}

static void test_format_buffer_too_small(void **state)
{
    (void)state;
    char buf[32];
    memset(buf, 'Z', sizeof(buf));
    /* "12.34" needs 6 bytes with its NUL. */
    assert_int_equal(money_format(1234, 2, buf, 5), -1);
    assert_true(buf[0] == 'Z' && buf[4] == 'Z');
    assert_int_equal(money_format(1234, 2, buf, 1), -1);
    assert_int_equal(money_format(1234, 2, NULL, 0), -1);
    assert_int_equal(money_format(1234, 2, buf, 6), 5);
    assert_string_equal(buf, "12.34");

    /* The longest text there is fits in 32 bytes at every scale. */
    for (int scale = 0; scale <= MONEY_SCALE_MAX; scale++) {
        int len = money_format(INT64_MIN, scale, buf, sizeof(buf));
        assert_true(len > 0 && len < 32);
        assert_int_equal(money_format(INT64_MIN, scale, buf, (size_t)len), -1);
    }
}

/* Round trips ---------------------------------------------------------------------------------- */

/* A fixed pseudo-random sequence (64-bit LCG), so failures reproduce. */
static uint64_t lcg_next(uint64_t *lcg_state)
{
    *lcg_state = *lcg_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *lcg_state;
}

static void check_round_trip(int64_t amount_minor, int scale)
{
    char buf[32];
    int len = money_format(amount_minor, scale, buf, sizeof(buf));
    assert_true(len > 0);
    int64_t parsed = SENTINEL_MINOR;
    enum cf_err err = money_parse(buf, (size_t)len, scale, &parsed);
    if (err != CF_OK || parsed != amount_minor)
        fail_msg("%" PRId64 " at scale %d -> \"%s\" -> err %d, %" PRId64, amount_minor, scale, buf,
                 (int)err, parsed);
}

static void test_round_trip_format_then_parse(void **state)
{
    (void)state;
    static const int64_t edges[] = {
        0,
        1,
        -1,
        9,
        -9,
        10,
        -10,
        99,
        -99,
        100,
        -100,
        12345,
        -12345,
        INT64_MAX,
        INT64_MIN,
        INT64_MAX - 1,
        INT64_MIN + 1,
        INT64_MAX / 10,
        INT64_MIN / 10,
    };
    uint64_t lcg_state = 42;
    for (int scale = 0; scale <= MONEY_SCALE_MAX; scale++) {
        for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
            check_round_trip(edges[i], scale);
        for (int i = 0; i < 20000; i++) {
            uint64_t bits = lcg_next(&lcg_state);
            /* Vary the magnitude too, so short amounts are as common as long ones. */
            uint64_t magnitude = bits >> (lcg_next(&lcg_state) % 64);
            /* Two's complement through unsigned: no signed overflow, INT64_MIN included. */
            uint64_t twos = (bits & 1) ? 0u - magnitude : magnitude;
            check_round_trip((int64_t)twos, scale);
        }
    }
}

static void test_round_trip_parse_then_format(void **state)
{
    (void)state;
    static const struct parse_case canonical[] = {
        {"0", 0, 0},
        {"0.0", 1, 0},
        {"0.00", 2, 0},
        {"0.000", 3, 0},
        {"0.0000", 4, 0},
        {"12.34", 2, 1234},
        {"-0.05", 2, -5},
        {"-12.345", 3, -12345},
        {"1.0000", 4, 10000},
        {"-9223372036854775808", 0, INT64_MIN},
        {"922337203685477.5807", 4, INT64_MAX},
    };
    for (size_t i = 0; i < sizeof(canonical) / sizeof(canonical[0]); i++) {
        int64_t amount = 0;
        size_t text_len = strlen(canonical[i].text);
        assert_int_equal(money_parse(canonical[i].text, text_len, canonical[i].scale, &amount),
                         CF_OK);
        assert_true(amount == canonical[i].expected_minor);
        char buf[32];
        assert_int_equal(money_format(amount, canonical[i].scale, buf, sizeof(buf)), (int)text_len);
        assert_string_equal(buf, canonical[i].text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_basic_and_edges),
        cmocka_unit_test(test_add_overflow_leaves_out_untouched),
        cmocka_unit_test(test_sub_basic_and_edges),
        cmocka_unit_test(test_sub_overflow_leaves_out_untouched),
        cmocka_unit_test(test_bps_half_even_ties),
        cmocka_unit_test(test_bps_non_ties_round_to_nearest),
        cmocka_unit_test(test_bps_int64_edges),
        cmocka_unit_test(test_bps_overflow_leaves_out_untouched),
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_int64_boundaries),
        cmocka_unit_test(test_parse_overflow),
        cmocka_unit_test(test_parse_malformed_every_scale),
        cmocka_unit_test(test_parse_too_many_fraction_digits),
        cmocka_unit_test(test_parse_honours_len),
        cmocka_unit_test(test_format_values),
        cmocka_unit_test(test_format_buffer_too_small),
        cmocka_unit_test(test_round_trip_format_then_parse),
        cmocka_unit_test(test_round_trip_parse_then_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
