/*
 * test_card.c - unit tests for src/gateway/card.c.
 *
 * Card numbers: public Luhn-valid test numbers of every brand normalize (spaces, dashes) and
 * get their brand, with the prefix ranges' edges (mastercard 2221..2720, discover's
 * 622126..622925 inside unionpay's 62, amex only at 15 digits); Luhn failures, wrong lengths,
 * other characters and over-long text are refused with the output untouched. Expiry against a
 * given now (month and year ends, leap day, year digits), security codes (3, amex 4), the last
 * four. IBANs: the published examples of several countries, typed with spaces and in lower
 * case; a wrong checksum, a wrong length for the country, malformed text; and for 100 account
 * numbers exactly one pair of check digits is accepted (00, 01 and 99 alias 97, 98 and 02).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "gateway/card.h"

/* 2025-06-15T00:00:00Z, 2025-12-31T23:59:59Z, 2024-02-29T12:00:00Z */
#define NOW_2025_06_15 1749945600LL
#define NOW_2025_12_31_END 1767225599LL
#define NOW_2024_02_29 1709208000LL

static enum cf_err pan(const char *text, char out[CARD_PAN_BYTES])
{
    return card_pan_normalize(text, strlen(text), out);
}

static enum cf_err iban(const char *text, char out[CARD_IBAN_BYTES])
{
    return card_iban_normalize(text, strlen(text), out);
}

/* Card numbers --------------------------------------------------------------------------------- */

static void test_pan_brands(void **state)
{
    (void)state;
    static const struct {
        const char *pan;
        enum card_brand brand;
    } v[] = {
        {"4242424242424242", CARD_BRAND_VISA},
        {"4111111111111111", CARD_BRAND_VISA},
        {"4012888888881881", CARD_BRAND_VISA},
        {"4222222222222", CARD_BRAND_VISA},
        {"4000000000000000006", CARD_BRAND_VISA}, /* 19 digits */
        {"5555555555554444", CARD_BRAND_MASTERCARD},
        {"5105105105105100", CARD_BRAND_MASTERCARD},
        {"2223003122003222", CARD_BRAND_MASTERCARD},
        {"2221000000000009", CARD_BRAND_MASTERCARD},
        {"2720999999999996", CARD_BRAND_MASTERCARD},
        {"2220999999999991", CARD_BRAND_UNKNOWN},
        {"2721000000000004", CARD_BRAND_UNKNOWN},
        {"378282246310005", CARD_BRAND_AMEX},
        {"371449635398431", CARD_BRAND_AMEX},
        {"3400000000000000", CARD_BRAND_UNKNOWN}, /* 34 but 16 digits */
        {"3714496353981", CARD_BRAND_UNKNOWN},    /* 37 but 13 digits */
        {"6011111111111117", CARD_BRAND_DISCOVER},
        {"6011000990139424", CARD_BRAND_DISCOVER},
        {"6445644564456445", CARD_BRAND_DISCOVER},
        {"6500000000000002", CARD_BRAND_DISCOVER},
        {"6221260000000000", CARD_BRAND_DISCOVER},
        {"6229250000000003", CARD_BRAND_DISCOVER},
        {"6221250000000001", CARD_BRAND_UNIONPAY},
        {"6229260000000002", CARD_BRAND_UNIONPAY},
        {"6200000000000005", CARD_BRAND_UNIONPAY},
        {"3530111333300000", CARD_BRAND_JCB},
        {"3566002020360505", CARD_BRAND_JCB},
        {"3528000000000007", CARD_BRAND_JCB},
        {"3589999999999994", CARD_BRAND_JCB},
        {"30569309025904", CARD_BRAND_UNKNOWN}, /* diners */
        {"400000000002", CARD_BRAND_VISA},      /* 12 digits, the shortest */
        {"1234567890123452", CARD_BRAND_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char out[CARD_PAN_BYTES];
        if (pan(v[i].pan, out) != CF_OK)
            fail_msg("refused %s", v[i].pan);
        assert_string_equal(out, v[i].pan);
        if (card_brand_detect(out) != v[i].brand)
            fail_msg("%s: brand %s", v[i].pan, card_brand_name(card_brand_detect(out)));
    }
    assert_string_equal(card_brand_name(CARD_BRAND_VISA), "visa");
    assert_string_equal(card_brand_name(CARD_BRAND_MASTERCARD), "mastercard");
    assert_string_equal(card_brand_name(CARD_BRAND_AMEX), "amex");
    assert_string_equal(card_brand_name(CARD_BRAND_DISCOVER), "discover");
    assert_string_equal(card_brand_name(CARD_BRAND_JCB), "jcb");
    assert_string_equal(card_brand_name(CARD_BRAND_UNIONPAY), "unionpay");
    assert_string_equal(card_brand_name(CARD_BRAND_UNKNOWN), "unknown");
}

static void test_pan_separators(void **state)
{
    (void)state;
    char out[CARD_PAN_BYTES];
    assert_int_equal(pan("4242 4242 4242 4242", out), CF_OK);
    assert_string_equal(out, "4242424242424242");
    assert_int_equal(pan("4242-4242-4242-4242", out), CF_OK);
    assert_string_equal(out, "4242424242424242");
    assert_int_equal(pan(" 3782-822463-10005 ", out), CF_OK);
    assert_string_equal(out, "378282246310005");
    /* the length is the caller's, not strlen: a NUL-free slice */
    assert_int_equal(card_pan_normalize("4242424242424242XYZ", 16, out), CF_OK);
    assert_string_equal(out, "4242424242424242");
}

static void test_pan_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "4242424242424241",     /* Luhn */
        "4242424242424243",     /* Luhn */
        "5555555555554443",     /* Luhn */
        "40000000000",          /* 11 digits */
        "40000000000000000002", /* 20 digits, Luhn-valid */
        "4242a42424242424",     /* a letter */
        "4242.4242.4242.4242",  /* another separator */
        "4242_4242_4242_4242",  /* another separator */
        "+4242424242424242",    /* a sign */
        "4242424242424242\n",   /* a newline */
        "",                     /* nothing */
        " - - ",                /* separators only */
        "４２４２424242424242", /* full-width digits */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[CARD_PAN_BYTES];
        memset(out, 'X', sizeof(out));
        if (pan(bad[i], out) != CF_ERR_INVALID_CARD)
            fail_msg("accepted \"%s\"", bad[i]);
        for (size_t j = 0; j < sizeof(out); j++)
            assert_int_equal(out[j], 'X'); /* untouched */
    }
    /* a valid number padded past CARD_PAN_TEXT_BYTES_MAX as typed */
    char text[CARD_PAN_TEXT_BYTES_MAX + 2];
    memset(text, ' ', sizeof(text));
    memcpy(text, "4242424242424242", 16);
    char out[CARD_PAN_BYTES];
    assert_int_equal(card_pan_normalize(text, CARD_PAN_TEXT_BYTES_MAX, out), CF_OK);
    assert_int_equal(card_pan_normalize(text, CARD_PAN_TEXT_BYTES_MAX + 1, out),
                     CF_ERR_INVALID_CARD);
    /* a NUL inside the given length is a character, not an end */
    assert_int_equal(card_pan_normalize("4242424242424242\0", 17, out), CF_ERR_INVALID_CARD);
}

static void test_luhn(void **state)
{
    (void)state;
    assert_true(card_luhn_is_valid("0", 1));
    assert_true(card_luhn_is_valid("18", 2));
    assert_false(card_luhn_is_valid("19", 2));
    assert_true(card_luhn_is_valid("79927398713", 11)); /* the textbook example */
    for (char d = '0'; d <= '9'; d++) {
        char s[] = "7992739871X";
        s[10] = d;
        assert_int_equal(card_luhn_is_valid(s, 11), d == '3');
    }
    /* every single-digit change of a valid number is caught */
    char s[] = "4242424242424242";
    for (size_t i = 0; i < 16; i++) {
        char keep = s[i];
        s[i] = (char)('0' + (keep - '0' + 1) % 10);
        assert_false(card_luhn_is_valid(s, 16));
        s[i] = keep;
    }
}

static void test_last4(void **state)
{
    (void)state;
    char out[5];
    card_pan_last4("4242424242424242", out);
    assert_string_equal(out, "4242");
    card_pan_last4("378282246310005", out);
    assert_string_equal(out, "0005");
    card_pan_last4("400000000002", out);
    assert_string_equal(out, "0002");
}

/* Expiry and security code --------------------------------------------------------------------- */

static void test_expiry(void **state)
{
    (void)state;
    assert_int_equal(card_expiry_check(6, 2025, NOW_2025_06_15), CF_OK); /* this month */
    assert_int_equal(card_expiry_check(7, 2025, NOW_2025_06_15), CF_OK);
    assert_int_equal(card_expiry_check(1, 2026, NOW_2025_06_15), CF_OK);
    assert_int_equal(card_expiry_check(12, 9999, NOW_2025_06_15), CF_OK);
    assert_int_equal(card_expiry_check(5, 2025, NOW_2025_06_15), CF_ERR_INVALID_CARD);
    assert_int_equal(card_expiry_check(12, 2024, NOW_2025_06_15), CF_ERR_INVALID_CARD);
    assert_int_equal(card_expiry_check(0, 2026, NOW_2025_06_15), CF_ERR_INVALID_CARD);
    assert_int_equal(card_expiry_check(13, 2026, NOW_2025_06_15), CF_ERR_INVALID_CARD);
    assert_int_equal(card_expiry_check(-1, 2026, NOW_2025_06_15), CF_ERR_INVALID_CARD);
    assert_int_equal(card_expiry_check(6, 26, NOW_2025_06_15), CF_ERR_INVALID_CARD); /* 2 digits */
    assert_int_equal(card_expiry_check(6, 999, NOW_2025_06_15), CF_ERR_INVALID_CARD);
    assert_int_equal(card_expiry_check(6, 10000, NOW_2025_06_15), CF_ERR_INVALID_CARD);
    assert_int_equal(card_expiry_check(6, INT64_MAX, NOW_2025_06_15), CF_ERR_INVALID_CARD);
    assert_int_equal(card_expiry_check(INT64_MIN, 2026, NOW_2025_06_15), CF_ERR_INVALID_CARD);
    /* good through the last second of its month, not one more */
    assert_int_equal(card_expiry_check(12, 2025, NOW_2025_12_31_END), CF_OK);
    assert_int_equal(card_expiry_check(12, 2025, NOW_2025_12_31_END + 1), CF_ERR_INVALID_CARD);
    assert_int_equal(card_expiry_check(1, 2026, NOW_2025_12_31_END + 1), CF_OK);
    /* a leap day is in February */
    assert_int_equal(card_expiry_check(2, 2024, NOW_2024_02_29), CF_OK);
    assert_int_equal(card_expiry_check(1, 2024, NOW_2024_02_29), CF_ERR_INVALID_CARD);
    /* the epoch is January 1970 */
    assert_int_equal(card_expiry_check(1, 1970, 0), CF_OK);
    assert_int_equal(card_expiry_check(12, 1969, 0), CF_ERR_INVALID_CARD);
}

static void test_cvc(void **state)
{
    (void)state;
    assert_int_equal(card_cvc_check("123", CARD_BRAND_VISA), CF_OK);
    assert_int_equal(card_cvc_check("000", CARD_BRAND_MASTERCARD), CF_OK);
    assert_int_equal(card_cvc_check("999", CARD_BRAND_UNKNOWN), CF_OK);
    assert_int_equal(card_cvc_check("1234", CARD_BRAND_AMEX), CF_OK);
    assert_int_equal(card_cvc_check("1234", CARD_BRAND_VISA), CF_ERR_INVALID_CARD);
    assert_int_equal(card_cvc_check("123", CARD_BRAND_AMEX), CF_ERR_INVALID_CARD);
    assert_int_equal(card_cvc_check("12345", CARD_BRAND_AMEX), CF_ERR_INVALID_CARD);
    assert_int_equal(card_cvc_check("12", CARD_BRAND_VISA), CF_ERR_INVALID_CARD);
    assert_int_equal(card_cvc_check("", CARD_BRAND_VISA), CF_ERR_INVALID_CARD);
    assert_int_equal(card_cvc_check("12a", CARD_BRAND_VISA), CF_ERR_INVALID_CARD);
    assert_int_equal(card_cvc_check("12 ", CARD_BRAND_VISA), CF_ERR_INVALID_CARD);
    assert_int_equal(card_cvc_check("-12", CARD_BRAND_VISA), CF_ERR_INVALID_CARD);
}

/* IBAN ----------------------------------------------------------------------------------------- */

static void test_iban_valid(void **state)
{
    (void)state;
    static const char *const good[] = {
        "GB82WEST12345698765432",
        "DE89370400440532013000",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "CH9300762011623852957",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "NO9386011117947",
        "MT84MALT011000012345MTLCAST001S",
        "AT611904300234573201",
        "PL61109010140000071219812874",
        "XK051212012345678906", /* a country not in the table: 15..34 */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char out[CARD_IBAN_BYTES];
        if (iban(good[i], out) != CF_OK)
            fail_msg("refused %s", good[i]);
        assert_string_equal(out, good[i]);
    }
    char out[CARD_IBAN_BYTES];
    assert_int_equal(iban("GB82 WEST 1234 5698 7654 32", out), CF_OK);
    assert_string_equal(out, "GB82WEST12345698765432");
    assert_int_equal(iban("gb82west12345698765432", out), CF_OK);
    assert_string_equal(out, "GB82WEST12345698765432");
    assert_int_equal(iban("  fr14 2004 1010 0505 0001 3m02 606 ", out), CF_OK);
    assert_string_equal(out, "FR1420041010050500013M02606");
}

static void test_iban_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GB82WEST12345698765433",            /* checksum */
        "GB28WEST12345698765432",            /* check digits swapped */
        "GB82WEST12345698765423",            /* digits swapped */
        "GB88WEST1234569876543",             /* mod-97 right, 21 long for GB (22) */
        "DE8937040044053201300",             /* 21 for DE */
        "NL91ABNA04171643000",               /* 19 for NL */
        "1282WEST12345698765432",            /* country not letters */
        "GBX2WEST12345698765432",            /* check digits not digits */
        "GB82-WEST-1234-5698-7654-32",       /* dashes */
        "GB82WEST1234569876543\xc3\xa9",     /* not ASCII */
        "GB82WEST12345698765432\t",          /* a tab */
        "NO938601111794",                    /* 14 characters */
        "XK0512120123456789061234567890123", /* 33, checksum wrong */
        "",
        "    ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[CARD_IBAN_BYTES];
        memset(out, 'X', sizeof(out));
        if (iban(bad[i], out) != CF_ERR_INVALID_BANK_ACCOUNT)
            fail_msg("accepted \"%s\"", bad[i]);
        for (size_t j = 0; j < sizeof(out); j++)
            assert_int_equal(out[j], 'X'); /* untouched */
    }
    /* 35 characters is past ISO 13616's 34, whatever the checksum */
    char out[CARD_IBAN_BYTES];
    assert_int_equal(iban("XK05121201234567890612345678901234X", out), CF_ERR_INVALID_BANK_ACCOUNT);
    /* a valid IBAN padded past CARD_IBAN_TEXT_BYTES_MAX as typed */
    char text[CARD_IBAN_TEXT_BYTES_MAX + 1];
    memset(text, ' ', sizeof(text));
    memcpy(text, "GB82WEST12345698765432", 22);
    assert_int_equal(card_iban_normalize(text, CARD_IBAN_TEXT_BYTES_MAX, out), CF_OK);
    assert_int_equal(card_iban_normalize(text, CARD_IBAN_TEXT_BYTES_MAX + 1, out),
                     CF_ERR_INVALID_BANK_ACCOUNT);
}

/* For each of 100 GB account numbers, exactly one of the 100 check-digit pairs passes: the
 * mod-97 check alone would also pass 00, 01 and 99 where 97, 98 and 02 are right (accounts
 * 53, 35 and 17 here). */
static void test_iban_one_check_pair(void **state)
{
    (void)state;
    for (int account = 0; account < 100; account++) {
        int passed = 0;
        for (int check = 0; check < 100; check++) {
            char text[32], out[CARD_IBAN_BYTES];
            snprintf(text, sizeof(text), "GB%02dWEST123456987654%02d", check, account);
            if (iban(text, out) == CF_OK)
                passed++;
        }
        if (passed != 1)
            fail_msg("account %d: %d check pairs pass", account, passed);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pan_brands),    cmocka_unit_test(test_pan_separators),
        cmocka_unit_test(test_pan_rejected),  cmocka_unit_test(test_luhn),
        cmocka_unit_test(test_last4),         cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_cvc),           cmocka_unit_test(test_iban_valid),
        cmocka_unit_test(test_iban_rejected), cmocka_unit_test(test_iban_one_check_pair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
