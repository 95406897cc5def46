/*
 * test_fx.c - unit tests for fx.c: the strict rate text (parse, shortest format, round trips),
 * conversion against a direct 128-bit reference, scaling between JPY (0), USD (2), KWD (3) and
 * CLF (4), the rounding down of fx_convert and up of fx_convert_for_target and the relation
 * between them, monotonicity, identity at rate 1, overflow at the int64_t edges, and the rates
 * table (comments, blanks, CRLF, assets, every refusal with its line number).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "money/currency.h"
#include "money/fx.h"
#include "money/money.h"

/* Written into outputs before a call that must fail, to check they are left untouched. */
#define SENTINEL_MINOR INT64_C(0x5A5A5A5A5A5A5A5A)
#define SENTINEL_COUNT ((size_t)0xA5A5A5A5u)

/* Scales of the currencies the examples use. */
#define JPY_SCALE 0
#define USD_SCALE 2
#define KWD_SCALE 3
#define CLF_SCALE 4

/* A fixed pseudo-random sequence (64-bit LCG), so failures reproduce. */
static uint64_t lcg_next(uint64_t *lcg_state)
{
    *lcg_state = *lcg_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *lcg_state;
}

/* A value in lo..hi, often near lo, sometimes anywhere. */
static int64_t lcg_between(uint64_t *lcg_state, int64_t lo, int64_t hi)
{
    uint64_t bits = lcg_next(lcg_state) >> (lcg_next(lcg_state) % 64);
    return lo + (int64_t)(bits % ((uint64_t)(hi - lo) + 1));
}

static int64_t rate_of(const char *text)
{
    int64_t rate_e9 = SENTINEL_MINOR;
    assert_int_equal(fx_rate_parse(text, strlen(text), &rate_e9), CF_OK);
    return rate_e9;
}

static int64_t convert(int64_t amount, int from_scale, int to_scale, int64_t rate_e9,
                       int64_t spread_bps)
{
    int64_t out = SENTINEL_MINOR;
    enum cf_err err = fx_convert(amount, from_scale, to_scale, rate_e9, spread_bps, &out);
    if (err != CF_OK)
        fail_msg("fx_convert(%" PRId64 ", %d, %d, %" PRId64 ", %" PRId64 ") -> %d", amount,
                 from_scale, to_scale, rate_e9, spread_bps, (int)err);
    return out;
}

static int64_t source_for(int64_t target, int from_scale, int to_scale, int64_t rate_e9,
                          int64_t spread_bps)
{
    int64_t source = SENTINEL_MINOR;
    enum cf_err err =
        fx_convert_for_target(target, from_scale, to_scale, rate_e9, spread_bps, &source);
    if (err != CF_OK)
        fail_msg("fx_convert_for_target(%" PRId64 ") -> %d", target, (int)err);
    return source;
}

/* Rate text ------------------------------------------------------------------------------------ */

static void test_rate_parse_valid(void **state)
{
    (void)state;
    assert_true(rate_of("1.0845") == INT64_C(1084500000));
    assert_true(rate_of("157.25") == INT64_C(157250000000));
    assert_true(rate_of("0.9213") == INT64_C(921300000));
    assert_true(rate_of("1") == FX_RATE_E9_ONE);
    assert_true(rate_of("1.0") == FX_RATE_E9_ONE);
    assert_true(rate_of("1.50") == INT64_C(1500000000));
    assert_true(rate_of("0.000000001") == 1);
    assert_true(rate_of("0.123456789") == INT64_C(123456789));
    assert_true(rate_of("1000000000") == FX_RATE_E9_MAX);
    assert_true(rate_of("1000000000.000000000") == FX_RATE_E9_MAX);
    assert_true(rate_of("999999999.999999999") == FX_RATE_E9_MAX - 1);
    /* len is honoured: what follows is not read. */
    int64_t rate_e9 = 0;
    assert_int_equal(fx_rate_parse("2.5xyz", 3, &rate_e9), CF_OK);
    assert_true(rate_e9 == INT64_C(2500000000));
}

static void test_rate_parse_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "0",
        "0.0",
        "0.000000000",
        "-1",
        "+1",
        "1.",
        ".5",
        "01",
        "00.5",
        "1e5",
        " 1",
        "1 ",
        "1,5",
        "1..5",
        "1.5.",
        "NaN",
        "inf",
        "1.0000000001",
        "0.0000000001",
        "1000000000.000000001",
        "1000000001",
        "10000000000",
        "99999999999999999999",
        "1.-5",
        "\xd9\xa1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t rate_e9 = SENTINEL_MINOR;
        if (fx_rate_parse(bad[i], strlen(bad[i]), &rate_e9) != CF_ERR_INVALID_FIELD)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_true(rate_e9 == SENTINEL_MINOR);
    }
    int64_t rate_e9 = SENTINEL_MINOR;
    assert_int_equal(fx_rate_parse(NULL, 0, &rate_e9), CF_ERR_INVALID_FIELD);
    assert_int_equal(fx_rate_parse("1\0", 2, &rate_e9), CF_ERR_INVALID_FIELD);
    assert_int_equal(fx_rate_parse("1.5\0", 4, &rate_e9), CF_ERR_INVALID_FIELD);
    assert_true(rate_e9 == SENTINEL_MINOR);
}

static void test_rate_format(void **state)
{
    (void)state;
    static const struct {
        int64_t rate_e9;
        const char *text;
    } cases[] = {
        {INT64_C(921300000), "0.9213"},
        {INT64_C(157250000000), "157.25"},
        {FX_RATE_E9_ONE, "1"},
        {INT64_C(10000000000), "10"},
        {1, "0.000000001"},
        {INT64_C(123456789), "0.123456789"},
        {INT64_C(1500000000), "1.5"},
        {FX_RATE_E9_MAX, "1000000000"},
        {FX_RATE_E9_MAX - 1, "999999999.999999999"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[FX_RATE_TEXT_BYTES_MAX];
        int len = fx_rate_format(cases[i].rate_e9, buf, sizeof(buf));
        assert_int_equal(len, (int)strlen(cases[i].text));
        assert_string_equal(buf, cases[i].text);
    }
    /* Too small a buffer: -1 and untouched. */
    char buf[8];
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(fx_rate_format(INT64_C(157250000000), buf, 6), -1);
    assert_int_equal(fx_rate_format(INT64_C(157250000000), NULL, 0), -1);
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 'x');
    assert_int_equal(fx_rate_format(INT64_C(157250000000), buf, 7), 6);
    assert_string_equal(buf, "157.25");
}

/* format then parse gives the rate back, and the text is the shortest: no trailing zero. */
static void test_rate_round_trip(void **state)
{
    (void)state;
    uint64_t lcg_state = 11;
    for (int i = 0; i < 50000; i++) {
        int64_t rate_e9 = lcg_between(&lcg_state, 1, FX_RATE_E9_MAX);
        char buf[FX_RATE_TEXT_BYTES_MAX];
        int len = fx_rate_format(rate_e9, buf, sizeof(buf));
        assert_true(len > 0 && len < FX_RATE_TEXT_BYTES_MAX);
        if (strchr(buf, '.') != NULL)
            assert_true(buf[len - 1] != '0');
        int64_t parsed = SENTINEL_MINOR;
        assert_int_equal(fx_rate_parse(buf, (size_t)len, &parsed), CF_OK);
        if (parsed != rate_e9)
            fail_msg("%" PRId64 " -> \"%s\" -> %" PRId64, rate_e9, buf, parsed);
    }
}

/* Conversion ----------------------------------------------------------------------------------- */

static void test_convert_examples(void **state)
{
    (void)state;
    int64_t usd_eur = rate_of("0.9213");
    assert_true(convert(10000, USD_SCALE, USD_SCALE, usd_eur, 0) == 9213);   /* 100 USD */
    assert_true(convert(10000, USD_SCALE, USD_SCALE, usd_eur, 100) == 9120); /* 9120.87 */
    assert_true(convert(1, USD_SCALE, USD_SCALE, usd_eur, 0) == 0);          /* 0.9213 ct */
    assert_true(convert(2, USD_SCALE, USD_SCALE, usd_eur, 0) == 1);          /* 1.8426 ct */

    int64_t usd_jpy = rate_of("157.25");
    assert_true(convert(1000, USD_SCALE, JPY_SCALE, usd_jpy, 0) == 1572); /* 1572.5 yen */
    assert_true(convert(1, USD_SCALE, JPY_SCALE, usd_jpy, 0) == 1);       /* 1.5725 yen */
    int64_t jpy_usd = rate_of("0.0063");
    assert_true(convert(1000, JPY_SCALE, USD_SCALE, jpy_usd, 0) == 630); /* 6.30 USD */
    assert_true(convert(1, JPY_SCALE, USD_SCALE, jpy_usd, 0) == 0);      /* 0.63 ct */

    int64_t usd_kwd = rate_of("0.3075");
    assert_true(convert(1, USD_SCALE, KWD_SCALE, usd_kwd, 0) == 3);           /* 3.075 fils */
    assert_true(convert(100000, USD_SCALE, KWD_SCALE, usd_kwd, 0) == 307500); /* 1000 USD */
    int64_t kwd_jpy = rate_of("510.2");
    assert_true(convert(1, KWD_SCALE, JPY_SCALE, kwd_jpy, 0) == 0);      /* 0.5102 yen */
    assert_true(convert(1000, KWD_SCALE, JPY_SCALE, kwd_jpy, 0) == 510); /* 1 KWD */
    assert_true(convert(1000, KWD_SCALE, JPY_SCALE, kwd_jpy, FX_SPREAD_BPS_MAX) == 255);
}

/* Rate 1, no spread: a change of scale only, floored going down. */
static void test_convert_scaling_at_rate_one(void **state)
{
    (void)state;
    assert_true(convert(123, JPY_SCALE, USD_SCALE, FX_RATE_E9_ONE, 0) == 12300);
    assert_true(convert(123, USD_SCALE, KWD_SCALE, FX_RATE_E9_ONE, 0) == 1230);
    assert_true(convert(123, JPY_SCALE, CLF_SCALE, FX_RATE_E9_ONE, 0) == 1230000);
    assert_true(convert(12399, USD_SCALE, JPY_SCALE, FX_RATE_E9_ONE, 0) == 123);
    assert_true(convert(1239, KWD_SCALE, USD_SCALE, FX_RATE_E9_ONE, 0) == 123);
    assert_true(convert(9999, CLF_SCALE, JPY_SCALE, FX_RATE_E9_ONE, 0) == 0);
    /* JPY -> USD -> KWD -> JPY at rate 1 is the identity. */
    int64_t yen = 98765;
    int64_t cents = convert(yen, JPY_SCALE, USD_SCALE, FX_RATE_E9_ONE, 0);
    int64_t fils = convert(cents, USD_SCALE, KWD_SCALE, FX_RATE_E9_ONE, 0);
    assert_true(convert(fils, KWD_SCALE, JPY_SCALE, FX_RATE_E9_ONE, 0) == yen);
}

static void test_convert_identity(void **state)
{
    (void)state;
    uint64_t lcg_state = 5;
    for (int i = 0; i < 20000; i++) {
        int64_t amount = lcg_between(&lcg_state, 1, INT64_MAX);
        int scale = (int)(lcg_next(&lcg_state) % (MONEY_SCALE_MAX + 1));
        assert_true(convert(amount, scale, scale, FX_RATE_E9_ONE, 0) == amount);
    }
    assert_true(convert(INT64_MAX, 2, 2, FX_RATE_E9_ONE, 0) == INT64_MAX);
    assert_true(convert(1, 4, 4, FX_RATE_E9_ONE, 0) == 1);
}

static void test_convert_errors(void **state)
{
    (void)state;
    static const struct {
        int64_t amount, rate_e9, spread_bps;
        int from_scale, to_scale;
        enum cf_err err;
    } cases[] = {
        {0, FX_RATE_E9_ONE, 0, 2, 2, CF_ERR_INVALID_AMOUNT},
        {-1, FX_RATE_E9_ONE, 0, 2, 2, CF_ERR_INVALID_AMOUNT},
        {INT64_MIN, FX_RATE_E9_ONE, 0, 2, 2, CF_ERR_INVALID_AMOUNT},
        {100, 0, 0, 2, 2, CF_ERR_INVALID_FIELD},
        {100, -1, 0, 2, 2, CF_ERR_INVALID_FIELD},
        {100, FX_RATE_E9_MAX + 1, 0, 2, 2, CF_ERR_INVALID_FIELD},
        {100, INT64_MAX, 0, 2, 2, CF_ERR_INVALID_FIELD},
        {100, FX_RATE_E9_ONE, -1, 2, 2, CF_ERR_INVALID_FIELD},
        {100, FX_RATE_E9_ONE, FX_SPREAD_BPS_MAX + 1, 2, 2, CF_ERR_INVALID_FIELD},
        {100, FX_RATE_E9_ONE, 10000, 2, 2, CF_ERR_INVALID_FIELD},
        {INT64_MAX, 2 * FX_RATE_E9_ONE, 0, 2, 2, CF_ERR_AMOUNT_OVERFLOW},
        {INT64_MAX / 2 + 1, 2 * FX_RATE_E9_ONE, 0, 2, 2, CF_ERR_AMOUNT_OVERFLOW},
        {INT64_MAX, FX_RATE_E9_MAX, 0, 0, 4, CF_ERR_AMOUNT_OVERFLOW},
        {INT64_MAX, FX_RATE_E9_ONE, 0, 0, 1, CF_ERR_AMOUNT_OVERFLOW},
        {922338, FX_RATE_E9_MAX, 0, 0, 4, CF_ERR_AMOUNT_OVERFLOW},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t out = SENTINEL_MINOR;
        enum cf_err err = fx_convert(cases[i].amount, cases[i].from_scale, cases[i].to_scale,
                                     cases[i].rate_e9, cases[i].spread_bps, &out);
        if (err != cases[i].err)
            fail_msg("case %zu: %d, expected %d", i, (int)err, (int)cases[i].err);
        assert_true(out == SENTINEL_MINOR);
    }
    /* Just inside the edges. */
    assert_true(convert(INT64_MAX / 2, 2, 2, 2 * FX_RATE_E9_ONE, 0) == INT64_MAX - 1);
    assert_true(convert(922337, 0, 4, FX_RATE_E9_MAX, 0) == INT64_C(9223370000000000000));
    assert_true(convert(INT64_MAX, 4, 0, 1, 0) == 922337); /* floor(M / 10^13) */
    assert_true(convert(1, 4, 0, FX_RATE_E9_MAX, 0) == 100000);
    assert_true(convert(INT64_MAX, 0, 0, 1, FX_SPREAD_BPS_MAX) == 4611686018);
}

/* floor(amount * rate * (10000 - spread) * 10^to / (10^9 * 10000 * 10^from)) in one division:
 * exact for amount < 2^40 (the numerator stays below 2^40 * 2^60 * 2^27 = 2^127). */
static unsigned __int128 convert_reference(int64_t amount, int from_scale, int to_scale,
                                           int64_t rate_e9, int64_t spread_bps)
{
    unsigned __int128 num =
        (unsigned __int128)amount * (uint64_t)rate_e9 * (uint64_t)(10000 - spread_bps);
    unsigned __int128 den = (unsigned __int128)FX_RATE_E9_ONE * 10000;
    for (int i = 0; i < to_scale; i++)
        num *= 10;
    for (int i = 0; i < from_scale; i++)
        den *= 10;
    return num / den;
}

static void test_convert_matches_reference(void **state)
{
    (void)state;
    uint64_t lcg_state = 17;
    int overflows = 0;
    for (int i = 0; i < 100000; i++) {
        int64_t amount = lcg_between(&lcg_state, 1, (INT64_C(1) << 40) - 1);
        int64_t rate_e9 = lcg_between(&lcg_state, 1, FX_RATE_E9_MAX);
        int64_t spread_bps = lcg_between(&lcg_state, 0, FX_SPREAD_BPS_MAX);
        int from_scale = (int)(lcg_next(&lcg_state) % (MONEY_SCALE_MAX + 1));
        int to_scale = (int)(lcg_next(&lcg_state) % (MONEY_SCALE_MAX + 1));
        unsigned __int128 reference =
            convert_reference(amount, from_scale, to_scale, rate_e9, spread_bps);
        int64_t out = SENTINEL_MINOR;
        enum cf_err err = fx_convert(amount, from_scale, to_scale, rate_e9, spread_bps, &out);
        if (reference > (unsigned __int128)INT64_MAX) {
            assert_int_equal(err, CF_ERR_AMOUNT_OVERFLOW);
            assert_true(out == SENTINEL_MINOR);
            overflows++;
            continue;
        }
        assert_int_equal(err, CF_OK);
        int64_t expected = (int64_t)reference;
        if (out != expected)
            fail_msg("%" PRId64 " %d->%d at %" PRId64 " less %" PRId64 ": %" PRId64
                     ", expected %" PRId64,
                     amount, from_scale, to_scale, rate_e9, spread_bps, out, expected);
    }
    assert_true(overflows > 0 && overflows < 50000); /* both paths were taken */
}

/* Large amounts, where the 128-bit split of the product matters; results computed with Python's
 * unbounded integers: a * r * (10000 - s) * 10**to // (10**9 * 10000 * 10**from). */
static void test_convert_large_amounts(void **state)
{
    (void)state;
    static const struct {
        int64_t amount;
        int from_scale, to_scale;
        int64_t rate_e9, spread_bps, expected;
    } cases[] = {
        {INT64_C(8700931093020620919), 3, 1, INT64_C(267418254), 3045, INT64_C(16182809156441057)},
        {INT64_C(5015309815132019150), 2, 1, INT64_C(109494178), 3343, INT64_C(36556730809737249)},
        {INT64_C(8000899064152824865), 4, 4, INT64_C(822191442), 1136,
         INT64_C(5830979182918644668)},
        {INT64_C(1168595263814680702), 1, 2, INT64_C(141992543), 1358,
         INT64_C(1433982730078866285)},
        {INT64_C(6356514698818244182), 4, 4, INT64_C(332112192), 663, INT64_C(1971111689308802166)},
        {INT64_C(1224652672324730814), 2, 1, INT64_C(676886083), 3559, INT64_C(53392692069609852)},
        {INT64_C(7791296130914686802), 3, 3, INT64_C(451665014), 4277,
         INT64_C(2013955677862114646)},
        {INT64_C(7774193110994520023), 4, 1, INT64_C(952924012775), 2738,
         INT64_C(5379845947531577759)},
        {INT64_C(3238475345246074542), 4, 4, INT64_C(881793617), 2670,
         INT64_C(2093203829087147252)},
        {INT64_C(1297734004414851707), 3, 1, INT64_C(964776168484), 3516,
         INT64_C(8118116097742081163)},
        {INT64_C(2688564089630761363), 4, 2, INT64_C(514939493), 4880, INT64_C(7088372885567850)},
        {INT64_C(4429955257721768587), 3, 2, INT64_C(571836938), 2012, INT64_C(202352978558203046)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t out = convert(cases[i].amount, cases[i].from_scale, cases[i].to_scale,
                              cases[i].rate_e9, cases[i].spread_bps);
        if (out != cases[i].expected)
            fail_msg("case %zu: %" PRId64 ", expected %" PRId64, i, out, cases[i].expected);
    }
}

/* Rates of random cases stay below this, so amounts below SMALL_AMOUNT_MAX convert without
 * overflow at any scales: 2^28 * 10^6 * 10^4 < 2^63. */
#define SMALL_RATE_E9_MAX (INT64_C(1000000) * FX_RATE_E9_ONE)
#define SMALL_AMOUNT_MAX (INT64_C(1) << 28)

/* Random conversion parameters; amounts up to SMALL_AMOUNT_MAX convert within int64_t. */
struct fx_case {
    int from_scale, to_scale;
    int64_t rate_e9, spread_bps;
};

static struct fx_case fx_case_random(uint64_t *lcg_state)
{
    struct fx_case c;
    c.from_scale = (int)(lcg_next(lcg_state) % (MONEY_SCALE_MAX + 1));
    c.to_scale = (int)(lcg_next(lcg_state) % (MONEY_SCALE_MAX + 1));
    c.rate_e9 = lcg_between(lcg_state, 1, SMALL_RATE_E9_MAX);
    c.spread_bps = lcg_between(lcg_state, 0, FX_SPREAD_BPS_MAX);
    return c;
}

static void test_convert_monotone(void **state)
{
    (void)state;
    uint64_t lcg_state = 23;
    for (int i = 0; i < 50000; i++) {
        struct fx_case c = fx_case_random(&lcg_state);
        int64_t a = lcg_between(&lcg_state, 1, SMALL_AMOUNT_MAX - (INT64_C(1) << 20));
        int64_t b = a + lcg_between(&lcg_state, 0, INT64_C(1) << 20);
        int64_t out_a = convert(a, c.from_scale, c.to_scale, c.rate_e9, c.spread_bps);
        int64_t out_b = convert(b, c.from_scale, c.to_scale, c.rate_e9, c.spread_bps);
        assert_true(out_a <= out_b);
        /* A higher rate never pays less; a wider spread never pays more. */
        assert_true(convert(a, c.from_scale, c.to_scale, c.rate_e9 + 1, c.spread_bps) >= out_a);
        if (c.spread_bps < FX_SPREAD_BPS_MAX)
            assert_true(convert(a, c.from_scale, c.to_scale, c.rate_e9, c.spread_bps + 1) <= out_a);
    }
}

/* Convert for target --------------------------------------------------------------------------- */

static void test_for_target_examples(void **state)
{
    (void)state;
    int64_t usd_eur = rate_of("0.9213");
    assert_true(source_for(9213, USD_SCALE, USD_SCALE, usd_eur, 0) == 10000);
    assert_true(source_for(9214, USD_SCALE, USD_SCALE, usd_eur, 0) == 10002); /* 10001 -> 9213 */
    assert_true(source_for(1, USD_SCALE, USD_SCALE, usd_eur, 0) == 2);
    /* One cent buys 1.5725 yen: a target of 1 yen still costs a whole cent. */
    int64_t usd_jpy = rate_of("157.25");
    assert_true(source_for(1, USD_SCALE, JPY_SCALE, usd_jpy, 0) == 1);
    assert_true(source_for(1572, USD_SCALE, JPY_SCALE, usd_jpy, 0) == 1000);
    assert_true(source_for(1573, USD_SCALE, JPY_SCALE, usd_jpy, 0) == 1001);
    /* Rate 1, same scale, no spread: the identity. */
    assert_true(source_for(12345, 3, 3, FX_RATE_E9_ONE, 0) == 12345);
    /* A 50% spread doubles the price. */
    assert_true(source_for(500, 2, 2, FX_RATE_E9_ONE, FX_SPREAD_BPS_MAX) == 1000);
}

static void test_for_target_errors(void **state)
{
    (void)state;
    int64_t source = SENTINEL_MINOR;
    assert_int_equal(fx_convert_for_target(0, 2, 2, FX_RATE_E9_ONE, 0, &source),
                     CF_ERR_INVALID_AMOUNT);
    assert_int_equal(fx_convert_for_target(-7, 2, 2, FX_RATE_E9_ONE, 0, &source),
                     CF_ERR_INVALID_AMOUNT);
    assert_int_equal(fx_convert_for_target(100, 2, 2, 0, 0, &source), CF_ERR_INVALID_FIELD);
    assert_int_equal(fx_convert_for_target(100, 2, 2, FX_RATE_E9_ONE, 5001, &source),
                     CF_ERR_INVALID_FIELD);
    /* The source leaves int64_t: a tiny rate, or scaling up the source side. */
    assert_int_equal(fx_convert_for_target(INT64_MAX, 2, 2, 1, 0, &source), CF_ERR_AMOUNT_OVERFLOW);
    assert_int_equal(fx_convert_for_target(INT64_MAX, 4, 0, FX_RATE_E9_ONE, 0, &source),
                     CF_ERR_AMOUNT_OVERFLOW);
    /* The source fits but what it converts to does not: 922338 yen at 10^9 CLF per yen. */
    assert_int_equal(fx_convert_for_target(INT64_MAX, 0, 4, FX_RATE_E9_MAX, 0, &source),
                     CF_ERR_AMOUNT_OVERFLOW);
    assert_true(source == SENTINEL_MINOR);
    assert_true(source_for(INT64_MAX, 2, 2, FX_RATE_E9_ONE, 0) == INT64_MAX);
}

/* source = for_target(t): convert(source) >= t, and convert(source - 1) < t. */
static void test_for_target_is_smallest_source(void **state)
{
    (void)state;
    uint64_t lcg_state = 31;
    for (int i = 0; i < 50000; i++) {
        struct fx_case c = fx_case_random(&lcg_state);
        int64_t target = lcg_between(&lcg_state, 1, INT64_C(1) << 40);
        int64_t source = SENTINEL_MINOR;
        enum cf_err err = fx_convert_for_target(target, c.from_scale, c.to_scale, c.rate_e9,
                                                c.spread_bps, &source);
        if (err == CF_ERR_AMOUNT_OVERFLOW)
            continue; /* a tiny rate into a big target */
        assert_int_equal(err, CF_OK);
        assert_true(source >= 1);
        assert_true(convert(source, c.from_scale, c.to_scale, c.rate_e9, c.spread_bps) >= target);
        if (source > 1)
            assert_true(convert(source - 1, c.from_scale, c.to_scale, c.rate_e9, c.spread_bps) <
                        target);
        /* And converting an amount then asking for its result costs at most that amount. */
        int64_t amount = lcg_between(&lcg_state, 1, SMALL_AMOUNT_MAX);
        int64_t got = convert(amount, c.from_scale, c.to_scale, c.rate_e9, c.spread_bps);
        if (got > 0)
            assert_true(source_for(got, c.from_scale, c.to_scale, c.rate_e9, c.spread_bps) <=
                        amount);
    }
}

/* Rates table ---------------------------------------------------------------------------------- */

static void test_rates_parse_valid(void **state)
{
    (void)state;
    currency_assets_reset();
    assert_int_equal(currency_asset_register("POINTS", 0), CF_OK);
    static const char text[] = "# rates of 2025-05-12\n"
                               "USD EUR 0.9213\n"
                               "\n"
                               "   \t\n"
                               "  EUR\tUSD   1.0845  # the other way round is a pair of its own\r\n"
                               "USD JPY 157.25\r\n"
                               "# KWD USD 3.25\n"
                               "POINTS USD 0.01\n"
                               "KWD JPY 510.2"; /* no final newline */
    struct fx_rate rates[8];
    size_t n = SENTINEL_COUNT;
    size_t bad_line = SENTINEL_COUNT;
    assert_int_equal(fx_rates_parse(text, strlen(text), rates, 8, &n, &bad_line), CF_OK);
    assert_true(bad_line == SENTINEL_COUNT);
    assert_int_equal(n, 5);
    assert_string_equal(rates[0].base, "USD");
    assert_string_equal(rates[0].quote, "EUR");
    assert_true(rates[0].rate_e9 == INT64_C(921300000));
    assert_string_equal(rates[1].base, "EUR");
    assert_true(rates[1].rate_e9 == INT64_C(1084500000));
    assert_string_equal(rates[3].base, "POINTS");
    assert_true(rates[3].rate_e9 == INT64_C(10000000));
    assert_string_equal(rates[4].quote, "JPY");

    const struct fx_rate *found = fx_rates_find(rates, n, "USD", "JPY");
    assert_non_null(found);
    assert_true(found->rate_e9 == INT64_C(157250000000));
    assert_null(fx_rates_find(rates, n, "JPY", "USD"));
    assert_null(fx_rates_find(rates, 0, "USD", "EUR"));
    currency_assets_reset();

    /* Nothing but comments and blanks is an empty table. */
    static const char empty[] = "# nothing yet\n\n  \r\n";
    n = SENTINEL_COUNT;
    assert_int_equal(fx_rates_parse(empty, strlen(empty), NULL, 0, &n, &bad_line), CF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fx_rates_parse(NULL, 0, NULL, 0, &n, &bad_line), CF_OK);
    assert_int_equal(n, 0);
}

static void check_rates_refused(const char *text, size_t len, size_t cap, enum cf_err err,
                                size_t line)
{
    struct fx_rate rates[4];
    memset(rates, 0x5a, sizeof(rates));
    size_t n = SENTINEL_COUNT;
    size_t bad_line = SENTINEL_COUNT;
    enum cf_err got = fx_rates_parse(text, len, rates, cap, &n, &bad_line);
    if (got != err || bad_line != line)
        fail_msg("\"%s\": %d at line %zu, expected %d at line %zu", text, (int)got, bad_line,
                 (int)err, line);
    assert_true(n == SENTINEL_COUNT);
    for (size_t i = 0; i < sizeof(rates); i++)
        assert_int_equal(((const unsigned char *)rates)[i], 0x5a);
}

static void test_rates_parse_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum cf_err err;
        size_t line;
    } cases[] = {
        {"USD EUR 0.92\nUSD XYZ 1.5\n", CF_ERR_UNKNOWN_CURRENCY, 2},
        {"usd EUR 0.92\n", CF_ERR_UNKNOWN_CURRENCY, 1},
        {"USDX EUR 0.92\n", CF_ERR_UNKNOWN_CURRENCY, 1},
        {"XAU USD 3300\n", CF_ERR_UNKNOWN_CURRENCY, 1}, /* ISO, but no minor unit */
        {"# a\n\nUSD USD 1\n", CF_ERR_INVALID_FIELD, 3},
        {"USD EUR 0.92\nEUR USD 1.08\nUSD EUR 0.93\n", CF_ERR_INVALID_FIELD, 3},
        {"USD EUR\n", CF_ERR_INVALID_FIELD, 1},
        {"USD\n", CF_ERR_INVALID_FIELD, 1},
        {"USD EUR 0.92 1\n", CF_ERR_INVALID_FIELD, 1},
        {"USD EUR 0.92 x\n", CF_ERR_INVALID_FIELD, 1},
        {"USD EUR -0.92\n", CF_ERR_INVALID_FIELD, 1},
        {"USD EUR 0\n", CF_ERR_INVALID_FIELD, 1},
        {"USD EUR 0.92;\n", CF_ERR_INVALID_FIELD, 1},
        {"USD,EUR,0.92\n", CF_ERR_INVALID_FIELD, 1},
        {"USD EUR 1.0000000001\n", CF_ERR_INVALID_FIELD, 1},
        {"USD EUR 0.92\rJPY\n", CF_ERR_INVALID_FIELD, 1}, /* a lone CR is not a line end */
        {"\n\n\n\nUSD EUR 1\nEUR JPY 1\nJPY KWD 1\nKWD USD 1\nUSD JPY 1\n", CF_ERR_INVALID_FIELD,
         9}, /* a fifth pair with cap 4 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_rates_refused(cases[i].text, strlen(cases[i].text), 4, cases[i].err, cases[i].line);

    /* A NUL byte, even in a comment. */
    static const char nul_in_comment[] = "USD EUR 0.92\n# note\0more\n";
    check_rates_refused(nul_in_comment, sizeof(nul_in_comment) - 1, 4, CF_ERR_INVALID_FIELD, 2);
    static const char nul_in_field[] = "USD EUR 0.9\0002\n";
    check_rates_refused(nul_in_field, sizeof(nul_in_field) - 1, 4, CF_ERR_INVALID_FIELD, 1);
    /* cap 0: the first pair is one too many. */
    check_rates_refused("# x\nUSD EUR 1\n", 14, 0, CF_ERR_INVALID_FIELD, 2);
}

/* More than FX_RATES_MAX pairs are refused even when the caller has room for them. */
static void test_rates_parse_limit(void **state)
{
    (void)state;
    static char text[(FX_RATES_MAX + 1) * 32];
    static struct fx_rate rates[FX_RATES_MAX + 1];
    size_t len = 0;
    size_t pairs = 0;
    const char *bases[] = {"USD", "EUR"};
    for (size_t b = 0; b < 2 && pairs <= FX_RATES_MAX; b++) {
        for (size_t i = 0; i < currency_count() && pairs <= FX_RATES_MAX; i++) {
            const char *quote = currency_at(i)->code;
            if (strcmp(quote, bases[b]) == 0)
                continue;
            len += (size_t)snprintf(text + len, sizeof(text) - len, "%s %s 1.5\n", bases[b], quote);
            pairs++;
        }
    }
    assert_int_equal(pairs, FX_RATES_MAX + 1);
    size_t n = SENTINEL_COUNT;
    size_t bad_line = SENTINEL_COUNT;
    assert_int_equal(fx_rates_parse(text, len, rates, FX_RATES_MAX + 1, &n, &bad_line),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(bad_line, FX_RATES_MAX + 1);
    assert_true(n == SENTINEL_COUNT);

    /* Without the last line, all FX_RATES_MAX pairs load. */
    size_t last_line_start = len - 1;
    while (last_line_start > 0 && text[last_line_start - 1] != '\n')
        last_line_start--;
    assert_int_equal(fx_rates_parse(text, last_line_start, rates, FX_RATES_MAX + 1, &n, &bad_line),
                     CF_OK);
    assert_int_equal(n, FX_RATES_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_parse_valid),
        cmocka_unit_test(test_rate_parse_invalid),
        cmocka_unit_test(test_rate_format),
        cmocka_unit_test(test_rate_round_trip),
        cmocka_unit_test(test_convert_examples),
        cmocka_unit_test(test_convert_scaling_at_rate_one),
        cmocka_unit_test(test_convert_identity),
        cmocka_unit_test(test_convert_errors),
        cmocka_unit_test(test_convert_matches_reference),
        cmocka_unit_test(test_convert_large_amounts),
        cmocka_unit_test(test_convert_monotone),
        cmocka_unit_test(test_for_target_examples),
        cmocka_unit_test(test_for_target_errors),
        cmocka_unit_test(test_for_target_is_smallest_source),
        cmocka_unit_test(test_rates_parse_valid),
        cmocka_unit_test(test_rates_parse_refusals),
        cmocka_unit_test(test_rates_parse_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
