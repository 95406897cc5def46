/*
 * test_currency.c - unit tests for currency.c: the ISO 4217 table (order, uniqueness, known minor
 * units, lookups) and the operator-asset registry (code rules, scale range, ISO clashes,
 * re-registration, the MONEY_ASSETS_MAX limit, and the "CODE:SCALE,..." spec parser).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "money/currency.h"
#include "money/money.h"

/* Entries in the ISO table as of ISO 4217 amendment 179. An amendment changes this on purpose. */
#define ISO_ENTRIES_EXPECTED 166

static int reset_assets(void **state)
{
    (void)state;
    currency_assets_reset();
    return 0;
}

static const struct currency *find(const char *code) { return currency_find(code, strlen(code)); }

static size_t iso_count(void)
{
    size_t n = 0;
    while (n < currency_count() && !currency_at(n)->is_asset)
        n++;
    return n;
}

/* ISO table ------------------------------------------------------------------------------------ */

static void test_iso_table_sorted_unique_well_formed(void **state)
{
    (void)state;
    size_t count = iso_count();
    assert_int_equal(count, ISO_ENTRIES_EXPECTED);
    assert_int_equal(currency_count(), count); /* no assets after reset */
    for (size_t i = 0; i < count; i++) {
        const struct currency *c = currency_at(i);
        assert_int_equal(strlen(c->code), 3);
        for (size_t k = 0; k < 3; k++)
            assert_true(c->code[k] >= 'A' && c->code[k] <= 'Z');
        assert_true(c->scale >= 0 && c->scale <= MONEY_SCALE_MAX);
        assert_true(c->numeric > 0 && c->numeric < 1000);
        assert_false(c->is_asset);
        if (i > 0 && strcmp(currency_at(i - 1)->code, c->code) >= 0)
            fail_msg("not sorted or duplicated: %s then %s", currency_at(i - 1)->code, c->code);
    }
}

static void test_iso_numeric_codes_unique(void **state)
{
    (void)state;
    size_t count = iso_count();
    for (size_t i = 0; i < count; i++) {
        for (size_t k = i + 1; k < count; k++) {
            if (currency_at(i)->numeric == currency_at(k)->numeric)
                fail_msg("%s and %s share numeric %d", currency_at(i)->code, currency_at(k)->code,
                         currency_at(i)->numeric);
        }
    }
}

static void test_every_iso_entry_is_found(void **state)
{
    (void)state;
    for (size_t i = 0; i < iso_count(); i++) {
        const struct currency *c = currency_at(i);
        assert_ptr_equal(find(c->code), c);
    }
}

struct known_currency {
    const char *code;
    int scale;
    int numeric;
};

static void test_known_minor_units(void **state)
{
    (void)state;
    static const struct known_currency known[] = {
        {"JPY", 0, 392}, {"USD", 2, 840}, {"KWD", 3, 414}, {"CLF", 4, 990}, {"BHD", 3, 48},
        {"IQD", 3, 368}, {"JOD", 3, 400}, {"LYD", 3, 434}, {"OMR", 3, 512}, {"TND", 3, 788},
        {"UYW", 4, 927}, {"KRW", 0, 410}, {"VND", 0, 704}, {"ISK", 0, 352}, {"CLP", 0, 152},
        {"PYG", 0, 600}, {"UGX", 0, 800}, {"XAF", 0, 950}, {"XOF", 0, 952}, {"XPF", 0, 953},
        {"BIF", 0, 108}, {"DJF", 0, 262}, {"GNF", 0, 324}, {"KMF", 0, 174}, {"RWF", 0, 646},
        {"VUV", 0, 548}, {"UYI", 0, 940}, {"EUR", 2, 978}, {"GBP", 2, 826}, {"CHF", 2, 756},
        {"ALL", 2, 8},   {"XCG", 2, 532}, {"ZWG", 2, 924}, {"SLE", 2, 925}, {"VED", 2, 926},
        {"AED", 2, 784}, {"ZMW", 2, 967}, {"USN", 2, 997}, {"XAD", 2, 396},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        const struct currency *c = find(known[i].code);
        if (c == NULL)
            fail_msg("%s not found", known[i].code);
        if (c->scale != known[i].scale || c->numeric != known[i].numeric || c->is_asset)
            fail_msg("%s: scale %d numeric %d, want %d %d", known[i].code, c->scale, c->numeric,
                     known[i].scale, known[i].numeric);
    }
}

static void test_unknown_codes_not_found(void **state)
{
    (void)state;
    static const char *const unknown[] = {
        "usd",
        "Usd",
        "US",
        "U",
        "USDX",
        "AAA",
        "ZZZ",
        "A",
        "ZZZZZZZZZZZZ",
        /* No minor unit in ISO 4217, so not usable as currencies. */
        "XAU",
        "XAG",
        "XPD",
        "XPT",
        "XDR",
        "XTS",
        "XXX",
        "XSU",
        "XUA",
        "XBA",
        /* Withdrawn: on the historic list. */
        "ANG",
        "CUC",
        "HRK",
        "SLL",
        "ZWL",
        "VEF",
        "LTL",
        "EEK",
    };
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        if (find(unknown[i]) != NULL)
            fail_msg("%s should be unknown", unknown[i]);
    }
    assert_null(currency_find("", 0));
    assert_null(currency_find(NULL, 0));
    assert_null(currency_find("ABCDEFGHIJKLM", 13)); /* longer than any code */
}

static void test_find_uses_exact_length(void **state)
{
    (void)state;
    /* Only the first len bytes are the code. */
    assert_ptr_equal(currency_find("USDX", 3), find("USD"));
    assert_null(currency_find("USD", 2));
    static const char with_nul[] = {'U', 'S', '\0'};
    assert_null(currency_find(with_nul, sizeof(with_nul)));
    static const char usd_nul[] = {'U', 'S', 'D', '\0'};
    assert_null(currency_find(usd_nul, sizeof(usd_nul)));
}

/* Assets --------------------------------------------------------------------------------------- */

static void test_asset_register_and_find(void **state)
{
    (void)state;
    size_t before = currency_count();
    assert_int_equal(currency_asset_register("POINTS", 0), CF_OK);
    assert_int_equal(currency_asset_register("GOLD_MG", 3), CF_OK);
    assert_int_equal(currency_count(), before + 2);

    const struct currency *points = find("POINTS");
    assert_non_null(points);
    assert_string_equal(points->code, "POINTS");
    assert_int_equal(points->scale, 0);
    assert_int_equal(points->numeric, 0);
    assert_true(points->is_asset);
    assert_ptr_equal(currency_at(before), points);

    const struct currency *gold = find("GOLD_MG");
    assert_non_null(gold);
    assert_int_equal(gold->scale, 3);
    assert_ptr_equal(currency_at(before + 1), gold);

    /* Case-sensitive and exact. */
    assert_null(find("points"));
    assert_null(find("POINT"));
    assert_null(find("POINTSX"));
    assert_ptr_equal(currency_find("POINTSX", 6), points);
    static const char points_nul[] = {'P', 'O', 'I', 'N', 'T', 'S', '\0'};
    assert_null(currency_find(points_nul, sizeof(points_nul)));
}

static void test_asset_code_rules(void **state)
{
    (void)state;
    static const char *const good[] = {"A", "Z9", "_", "MILES_2024", "ABCDEFGHIJKL", "123", "ABC"};
    static const char *const bad[] = {
        "",         "points",  "Points",  "PO-INTS",       "POINTS!",
        "PO INTS",  " POINTS", "POINTS ", "ABCDEFGHIJKLM", "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "\xc3\x89", "A.B",     "A:B",     "A,B",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (currency_asset_register(good[i], 2) != CF_OK)
            fail_msg("\"%s\" should register", good[i]);
        assert_non_null(find(good[i]));
    }
    size_t count = currency_count();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (currency_asset_register(bad[i], 2) != CF_ERR_CONFIG)
            fail_msg("\"%s\" should be refused", bad[i]);
    }
    assert_int_equal(currency_count(), count);
}

static void test_asset_scale_range(void **state)
{
    (void)state;
    assert_int_equal(currency_asset_register("S_NEG", -1), CF_ERR_CONFIG);
    assert_int_equal(currency_asset_register("S_FIVE", MONEY_SCALE_MAX + 1), CF_ERR_CONFIG);
    assert_int_equal(currency_asset_register("S_BIG", 100), CF_ERR_CONFIG);
    assert_null(find("S_NEG"));
    assert_null(find("S_FIVE"));
    assert_int_equal(currency_asset_register("S_ZERO", 0), CF_OK);
    assert_int_equal(currency_asset_register("S_MAX", MONEY_SCALE_MAX), CF_OK);
    assert_int_equal(find("S_MAX")->scale, MONEY_SCALE_MAX);
}

static void test_asset_iso_clash(void **state)
{
    (void)state;
    size_t count = currency_count();
    static const char *const iso[] = {"USD", "JPY", "EUR", "KWD", "XAU", "XXX", "XTS", "XDR"};
    for (size_t i = 0; i < sizeof(iso) / sizeof(iso[0]); i++) {
        /* Refused whatever the scale, even the ISO one. */
        assert_int_equal(currency_asset_register(iso[i], 2), CF_ERR_CONFIG);
        assert_int_equal(currency_asset_register(iso[i], 0), CF_ERR_CONFIG);
    }
    assert_int_equal(currency_count(), count);
    assert_false(find("USD")->is_asset);
}

static void test_asset_reregistration(void **state)
{
    (void)state;
    assert_int_equal(currency_asset_register("MILES", 0), CF_OK);
    size_t count = currency_count();
    const struct currency *miles = find("MILES");

    assert_int_equal(currency_asset_register("MILES", 0), CF_OK); /* same scale: fine */
    assert_int_equal(currency_count(), count);
    assert_ptr_equal(find("MILES"), miles);

    assert_int_equal(currency_asset_register("MILES", 2), CF_ERR_CONFIG); /* different scale */
    assert_int_equal(currency_count(), count);
    assert_int_equal(find("MILES")->scale, 0);
}

static void test_asset_limit(void **state)
{
    (void)state;
    size_t base = currency_count();
    char code[MONEY_CODE_BYTES_MAX + 1];
    for (int i = 0; i < MONEY_ASSETS_MAX; i++) {
        snprintf(code, sizeof(code), "ASSET_%d", i);
        assert_int_equal(currency_asset_register(code, i % (MONEY_SCALE_MAX + 1)), CF_OK);
    }
    assert_int_equal(currency_count(), base + MONEY_ASSETS_MAX);
    assert_int_equal(currency_asset_register("ONE_TOO_MANY", 0), CF_ERR_CONFIG);
    assert_null(find("ONE_TOO_MANY"));
    /* Re-registering one that exists needs no slot, so it still succeeds at the limit. */
    assert_int_equal(currency_asset_register("ASSET_0", 0), CF_OK);
    assert_int_equal(currency_count(), base + MONEY_ASSETS_MAX);
    snprintf(code, sizeof(code), "ASSET_%d", MONEY_ASSETS_MAX - 1);
    assert_non_null(find(code));

    currency_assets_reset();
    assert_int_equal(currency_count(), base);
    assert_null(find("ASSET_0"));
    assert_int_equal(currency_asset_register("ONE_TOO_MANY", 0), CF_OK);
}

/* Asset specs ---------------------------------------------------------------------------------- */

static void test_assets_parse_valid(void **state)
{
    (void)state;
    size_t base = currency_count();
    assert_int_equal(currency_assets_parse(""), CF_OK);
    assert_int_equal(currency_count(), base);

    assert_int_equal(currency_assets_parse("POINTS:0,MILES:2,GOLD_MG:4"), CF_OK);
    assert_int_equal(currency_count(), base + 3);
    assert_int_equal(find("POINTS")->scale, 0);
    assert_int_equal(find("MILES")->scale, 2);
    assert_int_equal(find("GOLD_MG")->scale, 4);

    /* The same definitions again, or a repeat within one spec, change nothing. */
    assert_int_equal(currency_assets_parse("POINTS:0,POINTS:0"), CF_OK);
    assert_int_equal(currency_count(), base + 3);
}

static void test_assets_parse_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        ",",
        "POINTS",
        "POINTS:",
        ":0",
        "POINTS:5",
        "POINTS:00",
        "POINTS:-1",
        "POINTS:x",
        "POINTS:0,",
        ",POINTS:0",
        "A:0,,B:0",
        " POINTS:0",
        "POINTS:0 ",
        "POINTS: 0",
        "POINTS :0",
        "points:0",
        "USD:2",
        "XAU:0",
        "A:0:1",
        "POINTS:0;MILES:0",
        "ABCDEFGHIJKLM:0",
        "POINTS:0,POINTS:1",
    };
    size_t base = currency_count();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (currency_assets_parse(bad[i]) != CF_ERR_CONFIG)
            fail_msg("spec \"%s\" should be refused", bad[i]);
        if (currency_count() != base)
            fail_msg("spec \"%s\" left assets behind", bad[i]);
    }
}

static void test_assets_parse_all_or_nothing(void **state)
{
    (void)state;
    assert_int_equal(currency_asset_register("KEEP", 1), CF_OK);
    size_t count = currency_count();
    /* NEW is fine on its own, but the spec fails as a whole, so NEW is not kept; KEEP stays. */
    assert_int_equal(currency_assets_parse("NEW:0,KEEP:1,BAD"), CF_ERR_CONFIG);
    assert_int_equal(currency_count(), count);
    assert_null(find("NEW"));
    assert_non_null(find("KEEP"));
    assert_int_equal(currency_assets_parse("NEW:0,KEEP:2"), CF_ERR_CONFIG);
    assert_null(find("NEW"));
    assert_int_equal(find("KEEP")->scale, 1);
    /* And afterwards a good spec still registers. */
    assert_int_equal(currency_assets_parse("NEW:0"), CF_OK);
    assert_non_null(find("NEW"));
}

static void test_assets_parse_respects_limit(void **state)
{
    (void)state;
    char spec[MONEY_ASSETS_MAX * 16 + 16];
    size_t used = 0;
    for (int i = 0; i <= MONEY_ASSETS_MAX; i++) { /* one more than fits */
        int n = snprintf(spec + used, sizeof(spec) - used, "%sP%d:0", i == 0 ? "" : ",", i);
        assert_true(n > 0 && (size_t)n < sizeof(spec) - used);
        used += (size_t)n;
    }
    size_t base = currency_count();
    assert_int_equal(currency_assets_parse(spec), CF_ERR_CONFIG);
    assert_int_equal(currency_count(), base);
    /* Cut the last item off and it fits exactly. */
    *strrchr(spec, ',') = '\0';
    assert_int_equal(currency_assets_parse(spec), CF_OK);
    assert_int_equal(currency_count(), base + MONEY_ASSETS_MAX);
}

#define ASSET_TEST(f) cmocka_unit_test_setup_teardown(f, reset_assets, reset_assets)

int main(void)
{
    const struct CMUnitTest tests[] = {
        ASSET_TEST(test_iso_table_sorted_unique_well_formed),
        ASSET_TEST(test_iso_numeric_codes_unique),
        ASSET_TEST(test_every_iso_entry_is_found),
        ASSET_TEST(test_known_minor_units),
        ASSET_TEST(test_unknown_codes_not_found),
        ASSET_TEST(test_find_uses_exact_length),
        ASSET_TEST(test_asset_register_and_find),
        ASSET_TEST(test_asset_code_rules),
        ASSET_TEST(test_asset_scale_range),
        ASSET_TEST(test_asset_iso_clash),
        ASSET_TEST(test_asset_reregistration),
        ASSET_TEST(test_asset_limit),
        ASSET_TEST(test_assets_parse_valid),
        ASSET_TEST(test_assets_parse_malformed),
        ASSET_TEST(test_assets_parse_all_or_nothing),
        ASSET_TEST(test_assets_parse_respects_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
