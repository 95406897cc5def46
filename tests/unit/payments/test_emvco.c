/*
 * test_emvco.c - unit tests for emvco.c: the CRC check value, the EMVCo specification's own
 * example, exact payloads for a static and a dynamic code, round trips, every kind of malformed
 * or tampered payload (each with the reason it must give), what build refuses, and expiry.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "payments/emvco.h"

/* Room for payloads the tests assemble, oversized ones included. */
#define TEST_TEXT_BYTES 2048

/*
 * The example payload of EMV QRCPS Merchant-Presented Mode (Appendix A of v1.0 and v1.1): a
 * dynamic code in CNY with two other schemes' account templates (29, 31), a tip indicator, an
 * additional data template, a Chinese alternate-language template (tag 64, lengths counted in
 * characters) and an unreserved template (91). Its CRC is A13A. The Chinese text is written as
 * UTF-8 escapes, split so that no escape runs into the digits after it.
 */
static const char spec_example[] =
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN"
    "5914BEST TRANSPORT6007BEIJING64200002ZH0104\xe6\x9c\x80\xe4\xbd\xb3\xe8\xbf\x90\xe8\xbe\x93"
    "0202\xe5\x8c\x97\xe4\xba\xac"
    "540523.7253031565502016233030412340603***0708A60086670902ME91320016A01122334499887707081234"
    "56786304A13A";

/* The same codes as build_static_sample / build_dynamic_sample, assembled and CRC'd by hand
 * (independently of emvco.c). */
static const char static_golden[] = "00020101021126350010org.coffer0117mer_00000000000015204581253"
                                    "038405802US5916Blue Bottle Cafe6007Oakland630462E2";
static const char dynamic_golden[] =
    "00020101021226690010org.coffer0117mer_00000000000070216qr_000000000004203101767225600520458"
    "125303978540512.505802DE5911Kaffee Haus6006Berlin62140510ORDER-123463043759";

/* Helpers -------------------------------------------------------------------------------------- */

static struct emvco_mpm static_sample(void)
{
    struct emvco_mpm m;
    emvco_mpm_init(&m);
    strcpy(m.mcc, "5812");
    strcpy(m.currency_numeric, "840");
    strcpy(m.country, "US");
    strcpy(m.merchant_name, "Blue Bottle Cafe");
    strcpy(m.merchant_city, "Oakland");
    strcpy(m.merchant_id, "mer_0000000000001");
    return m;
}

static struct emvco_mpm dynamic_sample(void)
{
    struct emvco_mpm m;
    emvco_mpm_init(&m);
    m.dynamic = true;
    strcpy(m.mcc, "5812");
    strcpy(m.currency_numeric, "978");
    strcpy(m.country, "DE");
    strcpy(m.merchant_name, "Kaffee Haus");
    strcpy(m.merchant_city, "Berlin");
    strcpy(m.merchant_id, "mer_0000000000007");
    strcpy(m.code_id, "qr_0000000000042");
    m.expires_at_s = 1767225600;
    m.amount_minor = 1250;
    strcpy(m.reference, "ORDER-1234");
    return m;
}

static void assert_mpm_equal(const struct emvco_mpm *a, const struct emvco_mpm *b)
{
    assert_int_equal(a->dynamic, b->dynamic);
    assert_string_equal(a->mcc, b->mcc);
    assert_string_equal(a->currency_numeric, b->currency_numeric);
    assert_string_equal(a->country, b->country);
    assert_string_equal(a->merchant_name, b->merchant_name);
    assert_string_equal(a->merchant_city, b->merchant_city);
    assert_string_equal(a->gui, b->gui);
    assert_string_equal(a->merchant_id, b->merchant_id);
    assert_string_equal(a->code_id, b->code_id);
    assert_true(a->expires_at_s == b->expires_at_s);
    assert_true(a->amount_minor == b->amount_minor);
    assert_int_equal(a->amount_scale, b->amount_scale);
    assert_string_equal(a->reference, b->reference);
}

/* Appends one object "IDLLvalue" (value is ASCII, so its length is its characters). */
static void put(char *text, int id, const char *value)
{
    size_t at = strlen(text);
    assert_true(at + 4 + strlen(value) < TEST_TEXT_BYTES);
    snprintf(text + at, TEST_TEXT_BYTES - at, "%02d%02zu%s", id, strlen(value), value);
}

/* Appends one object whose value has chars characters (UTF-8 may take more bytes). */
static void put_chars(char *text, int id, const char *value, size_t chars)
{
    size_t at = strlen(text);
    assert_true(at + 4 + strlen(value) < TEST_TEXT_BYTES);
    snprintf(text + at, TEST_TEXT_BYTES - at, "%02d%02zu%s", id, chars, value);
}

/* Appends "6304" and the CRC of everything so far, so a test reaches the check it aims at. */
static void seal(char *text)
{
    size_t at = strlen(text);
    assert_true(at + 8 < TEST_TEXT_BYTES);
    memcpy(text + at, "6304", 5);
    uint16_t crc = emvco_crc16_compute((const uint8_t *)text, at + 4);
    snprintf(text + at + 4, TEST_TEXT_BYTES - at - 4, "%04X", (unsigned)crc);
}

/* 00, 01 and the mandatory objects of a static Coffer code, leaving out skip_id (-1: none). */
static void put_static_body(char *text, int skip_id)
{
    text[0] = '\0';
    const struct {
        int id;
        const char *value;
    } objects[] = {
        {0, "01"},    {1, "11"},       {26, "0010org.coffer0117mer_0000000000001"},
        {52, "5812"}, {53, "840"},     {58, "US"},
        {59, "Shop"}, {60, "Oakland"},
    };
    for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++)
        if (objects[i].id != skip_id)
            put(text, objects[i].id, objects[i].value);
}

/* Turns the "010211" put_static_body wrote into "010212". */
static void make_dynamic(char *text)
{
    assert_memory_equal(text + 6, "010211", 6);
    text[11] = '2';
}

/* Parses text with the default GUI and scale lookup; it must be refused with this reason and
 * leave the output untouched. */
static void expect_refused_len(const char *text, size_t len, const char *why)
{
    struct emvco_mpm out;
    memset(&out, 0x5A, sizeof(out));
    struct emvco_mpm before = out;
    const char *detail = NULL;
    assert_int_equal(emvco_mpm_parse(text, len, NULL, -1, &out, &detail), CF_ERR_INVALID_QR);
    assert_non_null(detail);
    if (why != NULL)
        assert_string_equal(detail, why);
    assert_memory_equal(&out, &before, sizeof(out));
}

static void expect_refused(const char *text, const char *why)
{
    expect_refused_len(text, strlen(text), why);
}

static void parse_ok(const char *text, struct emvco_mpm *out)
{
    const char *detail = "none";
    enum cf_err err = emvco_mpm_parse(text, strlen(text), NULL, -1, out, &detail);
    if (err != CF_OK)
        fail_msg("refused: %s", detail);
}

/* CRC and the specification's example ---------------------------------------------------------- */

static void test_crc_check_value(void **state)
{
    (void)state;
    assert_int_equal(emvco_crc16_compute((const uint8_t *)"123456789", 9), 0x29B1);
    assert_int_equal(emvco_crc16_compute(NULL, 0), 0xFFFF);
}

static void test_spec_example_crc_and_decode(void **state)
{
    (void)state;
    size_t len = strlen(spec_example);
    assert_int_equal(len, 260); /* 248 characters, 12 of them three bytes long */
    assert_int_equal(emvco_crc16_compute((const uint8_t *)spec_example, len - 4), 0xA13A);

    struct emvco_mpm m;
    parse_ok(spec_example, &m);
    assert_true(m.dynamic);
    assert_string_equal(m.mcc, "4111");
    assert_string_equal(m.currency_numeric, "156");
    assert_string_equal(m.country, "CN");
    assert_string_equal(m.merchant_name, "BEST TRANSPORT");
    assert_string_equal(m.merchant_city, "BEIJING");
    assert_true(m.amount_minor == 2372);
    assert_int_equal(m.amount_scale, 2);
    assert_string_equal(m.reference, "");
    /* Not a Coffer code: no template carries our GUI. */
    assert_string_equal(m.gui, "");
    assert_string_equal(m.merchant_id, "");
    assert_true(m.expires_at_s == 0);

    /* So Coffer cannot rebuild it. */
    char out[EMVCO_PAYLOAD_BUF_BYTES];
    size_t out_len = 0;
    const char *detail = NULL;
    assert_int_equal(emvco_mpm_build(&m, out, sizeof(out), &out_len, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_non_null(detail);
}

static void test_spec_example_tampered(void **state)
{
    (void)state;
    char text[TEST_TEXT_BYTES];
    strcpy(text, spec_example);
    char *amount = strstr(text, "23.72");
    assert_non_null(amount);
    amount[1] = '4'; /* 24.72 */
    expect_refused(text, "crc mismatch");

    /* One byte of the Chinese name changed: still valid UTF-8, CRC no longer matches. */
    strcpy(text, spec_example);
    char *name = strstr(text, "\xe6\x9c\x80");
    assert_non_null(name);
    name[2] = (char)0x81;
    expect_refused(text, "crc mismatch");
}

/* Exact output and round trips ----------------------------------------------------------------- */

static void test_build_static_exact(void **state)
{
    (void)state;
    struct emvco_mpm m = static_sample();
    char out[EMVCO_PAYLOAD_BUF_BYTES];
    size_t len = 0;
    assert_int_equal(emvco_mpm_build(&m, out, sizeof(out), &len, NULL), CF_OK);
    assert_string_equal(out, static_golden);
    assert_int_equal(len, strlen(static_golden));
}

static void test_build_dynamic_exact(void **state)
{
    (void)state;
    struct emvco_mpm m = dynamic_sample();
    char out[EMVCO_PAYLOAD_BUF_BYTES];
    size_t len = 0;
    assert_int_equal(emvco_mpm_build(&m, out, sizeof(out), &len, NULL), CF_OK);
    assert_string_equal(out, dynamic_golden);
    assert_int_equal(len, strlen(dynamic_golden));
}

/* build -> parse gives the struct back (scale resolved), and building that gives the same bytes. */
static void check_round_trip(struct emvco_mpm m, int scale_expected)
{
    char first[EMVCO_PAYLOAD_BUF_BYTES], second[EMVCO_PAYLOAD_BUF_BYTES];
    size_t first_len = 0, second_len = 0;
    assert_int_equal(emvco_mpm_build(&m, first, sizeof(first), &first_len, NULL), CF_OK);
    struct emvco_mpm parsed;
    parse_ok(first, &parsed);
    m.amount_scale = scale_expected;
    assert_mpm_equal(&parsed, &m);
    assert_int_equal(emvco_mpm_build(&parsed, second, sizeof(second), &second_len, NULL), CF_OK);
    assert_int_equal(second_len, first_len);
    assert_memory_equal(first, second, first_len);
}

static void test_round_trips(void **state)
{
    (void)state;
    check_round_trip(static_sample(), 2);
    check_round_trip(dynamic_sample(), 2);

    struct emvco_mpm m = dynamic_sample(); /* JPY: scale 0, no reference, no expiry */
    strcpy(m.currency_numeric, "392");
    m.amount_minor = 1500;
    m.reference[0] = '\0';
    m.expires_at_s = 0;
    check_round_trip(m, 0);

    m = dynamic_sample(); /* KWD: scale 3 */
    strcpy(m.currency_numeric, "414");
    m.amount_minor = 1;
    check_round_trip(m, 3);

    m = static_sample(); /* a static code may still carry a code id, an expiry, a reference */
    strcpy(m.code_id, "qr_static");
    m.expires_at_s = EMVCO_EXPIRES_AT_S_MAX;
    strcpy(m.reference, "TABLE 7");
    check_round_trip(m, 2);

    m = static_sample(); /* an unknown currency is fine without an amount */
    strcpy(m.currency_numeric, "999");
    check_round_trip(m, -1);
}

static void test_parse_honours_len(void **state)
{
    (void)state;
    char text[TEST_TEXT_BYTES];
    strcpy(text, static_golden);
    strcat(text, "trailing junk");
    struct emvco_mpm m;
    assert_int_equal(emvco_mpm_parse(text, strlen(static_golden), NULL, -1, &m, NULL), CF_OK);
    assert_string_equal(m.merchant_id, "mer_0000000000001");
}

static void test_lowercase_crc_accepted(void **state)
{
    (void)state;
    /* Find a reference whose CRC has a letter, so lower-casing it changes the payload. */
    struct emvco_mpm m = dynamic_sample();
    char out[EMVCO_PAYLOAD_BUF_BYTES];
    size_t len = 0;
    bool has_letter = false;
    for (char c = 'A'; c <= 'Z' && !has_letter; c++) {
        m.reference[0] = c;
        assert_int_equal(emvco_mpm_build(&m, out, sizeof(out), &len, NULL), CF_OK);
        has_letter = strspn(out + len - 4, "0123456789") < 4;
    }
    assert_true(has_letter);
    for (size_t i = len - 4; i < len; i++) {
        assert_true(out[i] < 'a' || out[i] > 'f'); /* build writes upper case */
        if (out[i] >= 'A' && out[i] <= 'F')
            out[i] = (char)(out[i] - 'A' + 'a');
    }
    struct emvco_mpm parsed;
    parse_ok(out, &parsed);
    assert_string_equal(parsed.reference, m.reference);
}

/* A dynamic Coffer code in currency (numeric) with this tag 54 text, sealed. */
static void dynamic_with_amount(char *text, const char *currency, const char *amount)
{
    text[0] = '\0';
    put(text, 0, "01");
    put(text, 1, "12");
    put(text, 26, "0010org.coffer0117mer_00000000000010202qr");
    put(text, 52, "5812");
    put(text, 53, currency);
    put(text, 54, amount);
    put(text, 58, "US");
    put(text, 59, "Shop");
    put(text, 60, "Oakland");
    seal(text);
}

static void test_amount_with_fewer_fraction_digits(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t minor;
        const char *rebuilt;
    } cases[] = {{"10", 1000, "10.00"}, {"10.5", 1050, "10.50"}, {"0.01", 1, "0.01"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[TEST_TEXT_BYTES];
        dynamic_with_amount(text, "840", cases[i].text);
        struct emvco_mpm m;
        parse_ok(text, &m);
        assert_true(m.amount_minor == cases[i].minor);
        char out[EMVCO_PAYLOAD_BUF_BYTES];
        size_t len = 0;
        assert_int_equal(emvco_mpm_build(&m, out, sizeof(out), &len, NULL), CF_OK);
        char expected[32];
        snprintf(expected, sizeof(expected), "54%02zu%s", strlen(cases[i].rebuilt),
                 cases[i].rebuilt);
        assert_non_null(strstr(out, expected));
    }
}

/* Tampering and structure ---------------------------------------------------------------------- */

/* Any single changed byte anywhere is refused; in a value it is refused as a CRC mismatch. */
static void test_every_flip_refused(void **state)
{
    (void)state;
    char text[TEST_TEXT_BYTES];
    size_t len = strlen(dynamic_golden);
    const char *name_at = strstr(dynamic_golden, "Kaffee Haus");
    assert_non_null(name_at);
    for (size_t i = 0; i < len; i++) {
        strcpy(text, dynamic_golden);
        text[i] = text[i] == '7' ? '8' : '7';
        bool in_name = i >= (size_t)(name_at - dynamic_golden) &&
                       i < (size_t)(name_at - dynamic_golden) + strlen("Kaffee Haus");
        expect_refused(text, in_name ? "crc mismatch" : NULL);
    }
}

static void test_truncated_refused(void **state)
{
    (void)state;
    for (size_t len = 0; len < strlen(dynamic_golden); len++)
        expect_refused_len(dynamic_golden, len, NULL);
    expect_refused_len(dynamic_golden, 0, "payload is empty");
    expect_refused_len(dynamic_golden, strlen(dynamic_golden) - 2,
                       "object value runs past the end");
    expect_refused_len(dynamic_golden, 3, "object header runs past the end");
    expect_refused_len(NULL, 0, "payload is empty");
}

static void test_structure_refused(void **state)
{
    (void)state;
    char text[TEST_TEXT_BYTES];

    put_static_body(text, -1);
    strcat(text, "59AXShop");
    seal(text);
    expect_refused(text, "object length is not two digits");

    put_static_body(text, -1);
    strcat(text, "5X04Shop");
    seal(text);
    expect_refused(text, "object id is not two digits");

    put_static_body(text, -1);
    strcat(text, "6100");
    seal(text);
    expect_refused(text, "object length is 00");

    put_static_body(text, -1); /* a length past the end: the last object swallows the CRC */
    strcat(text, "619912345");
    seal(text);
    expect_refused(text, "object value runs past the end");

    put_static_body(text, -1);
    put(text, 59, "Shop again");
    seal(text);
    expect_refused(text, "a tag appears twice");

    put_static_body(text, 26);
    put(text, 26, "0010org.coffer0117mer_00000000000010117mer_0000000000002");
    seal(text);
    expect_refused(text, "a template has a sub-tag twice");
}

static void test_frame_refused(void **state)
{
    (void)state;
    char text[TEST_TEXT_BYTES];

    char rest[TEST_TEXT_BYTES]; /* tag 00 second */
    put_static_body(rest, -1);
    strcpy(text, "010211000201");
    strcat(text, rest + 12);
    seal(text);
    expect_refused(text, "tag 00 payload format indicator must come first");

    put_static_body(text, -1);
    text[5] = '2'; /* 000202 */
    seal(text);
    expect_refused(text, "tag 00 payload format indicator must be 01");

    put_static_body(text, -1);
    expect_refused(text, "missing tag 63 crc");

    put_static_body(text, -1); /* a correct CRC object, then one more object */
    seal(text);
    put(text, 61, "94607");
    expect_refused(text, "tag 63 crc must be the last object");

    put_static_body(text, -1);
    strcat(text, "6303ABC");
    expect_refused(text, "tag 63 crc must be 4 hex digits");

    put_static_body(text, -1);
    strcat(text, "6304G1A2");
    expect_refused(text, "tag 63 crc must be 4 hex digits");
}

/* A sealed payload of exactly total bytes: the static body padded with RFU objects (id 65..). */
static void build_padded(char *text, size_t total)
{
    put_static_body(text, -1);
    size_t remaining = total - 8 - strlen(text);
    char filler[EMVCO_VALUE_CHARS_MAX + 1];
    for (int id = 65; remaining > 0; id++) {
        size_t chunk =
            remaining > 4 + EMVCO_VALUE_CHARS_MAX ? 4 + EMVCO_VALUE_CHARS_MAX : remaining;
        if (remaining - chunk > 0 && remaining - chunk < 5)
            chunk -= 5;
        memset(filler, 'x', chunk - 4);
        filler[chunk - 4] = '\0';
        put(text, id, filler);
        remaining -= chunk;
    }
    seal(text);
    assert_int_equal(strlen(text), total);
}

static void test_payload_size_bound(void **state)
{
    (void)state;
    char text[TEST_TEXT_BYTES];
    build_padded(text, EMVCO_PAYLOAD_BYTES_MAX);
    struct emvco_mpm m;
    parse_ok(text, &m); /* RFU objects are tolerated and dropped */
    assert_string_equal(m.merchant_id, "mer_0000000000001");
    build_padded(text, EMVCO_PAYLOAD_BYTES_MAX + 1);
    expect_refused(text, "payload longer than 512 bytes");
}

static void test_missing_mandatory_refused(void **state)
{
    (void)state;
    static const struct {
        int id;
        const char *why;
    } cases[] = {
        {52, "missing tag 52 merchant category code"},
        {53, "missing tag 53 transaction currency"},
        {58, "missing tag 58 country code"},
        {59, "missing tag 59 merchant name"},
        {60, "missing tag 60 merchant city"},
        {26, "missing merchant account information (tags 02 to 51)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[TEST_TEXT_BYTES];
        put_static_body(text, cases[i].id);
        seal(text);
        expect_refused(text, cases[i].why);
    }
    /* A primitive account object (02..25) alone is enough. */
    char text[TEST_TEXT_BYTES];
    put_static_body(text, 26);
    put(text, 4, "4111111111111111");
    seal(text);
    struct emvco_mpm m;
    parse_ok(text, &m);
    assert_string_equal(m.merchant_id, "");
}

/* Field values --------------------------------------------------------------------------------- */

static void test_amount_refused(void **state)
{
    (void)state;
    static const struct {
        const char *currency;
        const char *amount;
        const char *why;
    } cases[] = {
        {"840", "23.725", "tag 54 amount has more decimals than its currency"},
        {"392", "1500.5", "tag 54 amount has more decimals than its currency"},
        {"840", "+23.72", "tag 54 amount malformed"},
        {"840", "1e3", "tag 54 amount malformed"},
        {"840", "-5", "tag 54 amount malformed"},
        {"840", "23.7.2", "tag 54 amount malformed"},
        {"840", ".5", "tag 54 amount malformed"},
        {"840", "5.", "tag 54 amount malformed"},
        {"840", "007", "tag 54 amount malformed"},
        {"840", " 5", "tag 54 amount malformed"},
        {"840", "12345678901234", "tag 54 amount malformed"},
        {"392", "10.", "tag 54 amount malformed"},
        {"840", "0", "tag 54 amount must be above zero"},
        {"840", "0.00", "tag 54 amount must be above zero"},
        {"999", "5", "tag 53 currency is unknown, so tag 54 amount cannot be read"},
        {"84", "5", "tag 53 transaction currency must be 3 digits"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[TEST_TEXT_BYTES];
        dynamic_with_amount(text, cases[i].currency, cases[i].amount);
        expect_refused(text, cases[i].why);
    }
    char text[TEST_TEXT_BYTES];
    dynamic_with_amount(text, "840", "1234567890123"); /* 13 characters: the most */
    struct emvco_mpm m;
    parse_ok(text, &m);
    assert_true(m.amount_minor == INT64_C(123456789012300));
}

static void test_amount_scale_parameter(void **state)
{
    (void)state;
    char text[TEST_TEXT_BYTES];
    dynamic_with_amount(text, "840", "10.5");
    struct emvco_mpm m;
    const char *detail = NULL;
    assert_int_equal(emvco_mpm_parse(text, strlen(text), NULL, 0, &m, &detail), CF_ERR_INVALID_QR);
    assert_string_equal(detail, "tag 54 amount has more decimals than its currency");
    assert_int_equal(emvco_mpm_parse(text, strlen(text), NULL, 3, &m, NULL), CF_OK);
    assert_true(m.amount_minor == 10500);
    assert_int_equal(m.amount_scale, 3);

    dynamic_with_amount(text, "999", "5"); /* unknown to the table: the caller's scale is used */
    assert_int_equal(emvco_mpm_parse(text, strlen(text), NULL, 2, &m, NULL), CF_OK);
    assert_true(m.amount_minor == 500);
}

static void test_field_formats_refused(void **state)
{
    (void)state;
    static const struct {
        int id;
        const char *value;
        const char *why;
    } cases[] = {
        {1, "13", "tag 01 point of initiation must be 11 or 12"},
        {52, "58a2", "tag 52 merchant category code must be 4 digits"},
        {52, "581", "tag 52 merchant category code must be 4 digits"},
        {58, "us", "tag 58 country code must be 2 letters A-Z"},
        {58, "USA", "tag 58 country code must be 2 letters A-Z"},
        {59, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "tag 59 merchant name longer than 25 characters"},
        {60, "ABCDEFGHIJKLMNOP", "tag 60 merchant city longer than 15 characters"},
        {61, "12345678901", "tag 61 postal code longer than 10 characters"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[TEST_TEXT_BYTES];
        put_static_body(text, cases[i].id);
        put(text, cases[i].id, cases[i].value);
        seal(text);
        expect_refused(text, cases[i].why);
    }
}

static void test_non_printable_refused(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *why;
    } cases[] = {
        {"Sh\x01p", "tag 59 merchant name has a character outside printable ascii"},
        {"Sh\x7fp", "tag 59 merchant name has a character outside printable ascii"},
        {"Sh\tp", "tag 59 merchant name has a character outside printable ascii"},
        {"Caf\xc3\xa9", NULL}, /* valid UTF-8, but the name is "ans" only */
        {"Sh\x80p", "object value is not valid utf-8"},
        {"Sh\xc0\xafp", "object value is not valid utf-8"},     /* overlong '/' */
        {"Sh\xed\xa0\x80p", "object value is not valid utf-8"}, /* a surrogate */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[TEST_TEXT_BYTES];
        put_static_body(text, 59);
        put(text, 59, cases[i].name);
        seal(text);
        expect_refused(text, cases[i].why);
    }
    char text[TEST_TEXT_BYTES]; /* "Café" is 4 characters: the length must say 04, not 05 */
    put_static_body(text, 59);
    strcat(text, "5904Caf\xc3\xa9");
    seal(text);
    expect_refused(text, "tag 59 merchant name has a character outside printable ascii");

    put_static_body(text, -1); /* a NUL inside a value, CRC correct */
    size_t len = strlen(text);
    memcpy(text + len, "6105ab\0de6304", 13);
    len += 13;
    uint16_t crc = emvco_crc16_compute((const uint8_t *)text, len);
    snprintf(text + len, 5, "%04X", (unsigned)crc);
    expect_refused_len(text, len + 4, "a value has a character outside printable ascii");
}

/* Models and templates ------------------------------------------------------------------------- */

static void test_static_dynamic_rules(void **state)
{
    (void)state;
    char text[TEST_TEXT_BYTES];
    put_static_body(text, -1);
    put(text, 54, "5.00");
    seal(text);
    expect_refused(text, "a static code (tag 01 = 11) must not carry tag 54 amount");

    put_static_body(text, 26);
    make_dynamic(text);
    put(text, 26, "0010org.coffer0117mer_00000000000010202qr");
    seal(text);
    expect_refused(text, "a dynamic code (tag 01 = 12) lacks tag 54 amount");

    put_static_body(text, -1); /* dynamic Coffer code without a code id */
    make_dynamic(text);
    put(text, 54, "5.00");
    seal(text);
    expect_refused(text, "a dynamic coffer code lacks sub-tag 02 code id");

    put_static_body(text, 1); /* no tag 01 at all: static */
    seal(text);
    struct emvco_mpm m;
    parse_ok(text, &m);
    assert_false(m.dynamic);
}

static void test_coffer_template(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        const char *why;
    } cases[] = {
        {"0117mer_0000000000001", "a template lacks sub-tag 00 globally unique identifier"},
        {"0010org.coffer", "coffer template lacks sub-tag 01 merchant id"},
        {"0010org.coffer0117mer_00000000000010402xy", "coffer template has an unknown sub-tag"},
        {"0010org.coffer0117mer_000000000000103010", "coffer template expiry malformed"},
        {"0010org.coffer0117mer_00000000000010304012a", "coffer template expiry malformed"},
        {"0010org.coffer0117mer_00000000000010312999999999999", "coffer template expiry malformed"},
        {"0010org.coffer0126mer_0000000000000000000001",
         "coffer template merchant id longer than 25 "
         "characters"},
        {"0010org.coffer0117mer_00000000000010299", "object value runs past the end"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[TEST_TEXT_BYTES];
        put_static_body(text, 26);
        put(text, 26, cases[i].value);
        seal(text);
        expect_refused(text, cases[i].why);
    }

    char text[TEST_TEXT_BYTES]; /* Coffer's template twice (26 and 27) */
    put_static_body(text, -1);
    put(text, 27, "0010org.coffer0117mer_0000000000002");
    seal(text);
    expect_refused(text, "coffer template appears twice");

    put_static_body(text, 26); /* another scheme in 26, Coffer's in 40: found by its GUI */
    put(text, 26, "0011ID.DANA.WWW0118936009150157060561");
    put(text, 40, "0010org.coffer0117mer_000000000000903101000000000");
    seal(text);
    struct emvco_mpm m;
    parse_ok(text, &m);
    assert_string_equal(m.gui, "org.coffer");
    assert_string_equal(m.merchant_id, "mer_0000000000009");
    assert_true(m.expires_at_s == 1000000000);
}

static void test_custom_gui(void **state)
{
    (void)state;
    struct emvco_mpm m = dynamic_sample();
    strcpy(m.gui, "com.example.pay");
    char out[EMVCO_PAYLOAD_BUF_BYTES];
    size_t len = 0;
    assert_int_equal(emvco_mpm_build(&m, out, sizeof(out), &len, NULL), CF_OK);
    assert_non_null(strstr(out, "0015com.example.pay"));

    struct emvco_mpm parsed;
    assert_int_equal(emvco_mpm_parse(out, len, "com.example.pay", -1, &parsed, NULL), CF_OK);
    assert_string_equal(parsed.merchant_id, m.merchant_id);
    assert_string_equal(parsed.code_id, m.code_id);
    /* With the default GUI the template is someone else's: the fields stay empty. */
    assert_int_equal(emvco_mpm_parse(out, len, NULL, -1, &parsed, NULL), CF_OK);
    assert_string_equal(parsed.merchant_id, "");
    assert_string_equal(parsed.code_id, "");
}

static void test_other_templates(void **state)
{
    (void)state;
    static const struct {
        int id;
        const char *value;
        const char *why;
    } cases[] = {
        {62, "0526ABCDEFGHIJKLMNOPQRSTUVWXYZ", "tag 62 reference label longer than 25 characters"},
        {62, "0502AB0502CD", "tag 62 has a sub-tag twice"},
        {62, "0904AMEX", "tag 62 consumer data request must be up to 3 of the letters A, M, E"},
        {62, "0902AX", "tag 62 consumer data request must be up to 3 of the letters A, M, E"},
        {55, "04", "tag 55 tip or convenience indicator must be 01, 02 or 03"},
        {55, "02", "tag 55 is 02 but tag 56 convenience fee is missing"},
        {56, "1.00", "tag 56 convenience fee needs tag 55 = 02"},
        {57, "5", "tag 57 convenience percentage needs tag 55 = 03"},
        {91, "0108A0112233", "a template lacks sub-tag 00 globally unique identifier"},
        {64, "0002ZH", "tag 64 lacks sub-tag 01 alternate merchant name"},
        {64, "0002Z10104Shop", "tag 64 language preference must be 2 letters"},
        {64, "0002ZH0104Sh\x01p", "tag 64 has a control character"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[TEST_TEXT_BYTES];
        put_static_body(text, -1);
        put(text, cases[i].id, cases[i].value);
        seal(text);
        expect_refused(text, cases[i].why);
    }

    char text[TEST_TEXT_BYTES]; /* accepted: percentage convenience fee, reference label */
    put_static_body(text, -1);
    put(text, 55, "03");
    put(text, 57, "5.5");
    put(text, 62, "0305STORE0510ORDER-0001");
    seal(text);
    struct emvco_mpm m;
    parse_ok(text, &m);
    assert_string_equal(m.reference, "ORDER-0001");

    put_static_body(text, -1); /* fixed convenience fee in the currency's grammar */
    put(text, 55, "02");
    put(text, 56, "1.005");
    seal(text);
    expect_refused(text, "tag 56 convenience fee malformed");
}

/* Tag 64 with an alternate name of name_chars copies of one CJK character (3 bytes each) and a
 * city of an emoji (4 bytes) and "abc". */
static void put_language(char *text, size_t name_chars)
{
    char value[512];
    int n = snprintf(value, sizeof(value), "0002ZH01%02zu", name_chars);
    for (size_t i = 0; i < name_chars; i++)
        n += snprintf(value + n, sizeof(value) - (size_t)n, "\xe5\x8c\x97");
    snprintf(value + n, sizeof(value) - (size_t)n,
             "0204\xf0\x9f\x98\x80"
             "abc");
    put_chars(text, 64, value, 6 + 4 + name_chars + 4 + 4);
}

static void test_lengths_count_characters(void **state)
{
    (void)state;
    char text[TEST_TEXT_BYTES];
    put_static_body(text, -1); /* 25 characters are 75 bytes: still within the name's bound */
    put_language(text, EMVCO_MERCHANT_NAME_CHARS_MAX);
    seal(text);
    struct emvco_mpm m;
    parse_ok(text, &m);
    assert_string_equal(m.merchant_name, "Shop");

    put_static_body(text, -1);
    put_language(text, EMVCO_MERCHANT_NAME_CHARS_MAX + 1);
    seal(text);
    expect_refused(text, "tag 64 alternate merchant name longer than 25 characters");

    put_static_body(text, -1); /* a length in bytes instead of characters */
    strcat(text, "64100002ZH0104\xe5\x8c\x97\xe5\x8c\x97");
    seal(text);
    expect_refused(text, NULL);

    put_static_body(text, -1);
    put(text, 64, "0002ZH0104Shop0216ABCDEFGHIJKLMNOP");
    seal(text);
    expect_refused(text, "tag 64 alternate merchant city longer than 15 characters");

    put_static_body(text, -1); /* UTF-8 outside tag 64 is refused even when well counted */
    put_chars(text, 61, "\xe5\x8c\x97", 1);
    seal(text);
    expect_refused(text, "a value has a character outside printable ascii");
}

static void test_more_field_bounds(void **state)
{
    (void)state;
    static const struct {
        int id;
        const char *value;
        const char *why;
    } cases[] = {
        {30, "0033GGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGG",
         "a template's globally unique identifier is longer than 32 characters"},
        {26, "0010org.coffer0117mer_00000000000010226cccccccccccccccccccccccccc",
         "coffer template code id longer than 25 characters"},
        {54, "5\x01", "tag 54 amount malformed"},
        {60, "Oak\x7fland", "tag 60 merchant city has a character outside printable ascii"},
        {62,
         "0504AB\x01"
         "C",
         "tag 62 additional data has a character outside printable ascii"},
        {27,
         "0002AB\x01"
         "C",
         "merchant account information has a character outside printable "
         "ascii"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[TEST_TEXT_BYTES];
        put_static_body(text, cases[i].id == 26 || cases[i].id == 60 ? cases[i].id : -1);
        put(text, cases[i].id, cases[i].value);
        seal(text);
        expect_refused(text, cases[i].why);
    }
    static const char *const bad_percent[] = {"100", "5.555", "0.00", "5..5", ".5", "5."};
    for (size_t i = 0; i < sizeof(bad_percent) / sizeof(bad_percent[0]); i++) {
        char text[TEST_TEXT_BYTES];
        put_static_body(text, -1);
        put(text, 55, "03");
        put(text, 57, bad_percent[i]);
        seal(text);
        expect_refused(text, "tag 57 convenience percentage malformed");
    }
}

/* Build refusals ------------------------------------------------------------------------------- */

static void expect_build_refused(const struct emvco_mpm *m, const char *why)
{
    char out[EMVCO_PAYLOAD_BUF_BYTES];
    memset(out, 'Z', sizeof(out));
    size_t len = 12345;
    const char *detail = NULL;
    assert_int_equal(emvco_mpm_build(m, out, sizeof(out), &len, &detail), CF_ERR_INVALID_FIELD);
    assert_non_null(detail);
    assert_string_equal(detail, why);
    assert_int_equal(len, 12345);
    for (size_t i = 0; i < sizeof(out); i++)
        assert_int_equal(out[i], 'Z');
}

static void test_build_refuses(void **state)
{
    (void)state;
    struct emvco_mpm m = static_sample();
    strcpy(m.merchant_name, "ABCDEFGHIJKLMNOPQRSTUVWXY");
    check_round_trip(m, 2);                                /* 25 characters: the most */
    memset(m.merchant_name, 'A', sizeof(m.merchant_name)); /* 26, unterminated */
    expect_build_refused(&m, "merchant_name must be 1 to 25 printable ascii characters");
    strcpy(m.merchant_name, "Line\nbreak");
    expect_build_refused(&m, "merchant_name must be 1 to 25 printable ascii characters");
    strcpy(m.merchant_name, "");
    expect_build_refused(&m, "merchant_name must be 1 to 25 printable ascii characters");

    m = static_sample();
    strcpy(m.merchant_city, "Caf\xc3\xa9");
    expect_build_refused(&m, "merchant_city must be 1 to 15 printable ascii characters");
    m = static_sample();
    strcpy(m.mcc, "58a2");
    expect_build_refused(&m, "mcc must be 4 digits");
    m = static_sample();
    strcpy(m.currency_numeric, "84");
    expect_build_refused(&m, "currency_numeric must be 3 digits");
    m = static_sample();
    strcpy(m.country, "us");
    expect_build_refused(&m, "country must be 2 letters A-Z");
    m = static_sample();
    m.merchant_id[0] = '\0';
    expect_build_refused(&m, "merchant_id must be 1 to 25 printable ascii characters");
    m = static_sample();
    m.gui[0] = '\0';
    expect_build_refused(&m, "gui must be 1 to 32 printable ascii characters");
    m = static_sample();
    memset(m.code_id, 'c', EMVCO_CODE_ID_CHARS_MAX + 1);
    expect_build_refused(&m, "code_id must be at most 25 printable ascii characters");
    m = static_sample();
    memset(m.reference, 'r', EMVCO_REFERENCE_CHARS_MAX + 1);
    expect_build_refused(&m, "reference must be at most 25 printable ascii characters");
    m = static_sample();
    m.expires_at_s = -1;
    expect_build_refused(&m, "expires_at_s must be 0 or a time before the year 10000");
    m.expires_at_s = EMVCO_EXPIRES_AT_S_MAX + 1;
    expect_build_refused(&m, "expires_at_s must be 0 or a time before the year 10000");
}

static void test_build_refuses_model(void **state)
{
    (void)state;
    struct emvco_mpm m = static_sample();
    m.amount_minor = 500;
    expect_build_refused(&m, "a static code must not carry an amount");
    m = dynamic_sample();
    m.amount_minor = 0;
    expect_build_refused(&m, "a dynamic code needs an amount above zero");
    m = dynamic_sample();
    m.amount_minor = -5;
    expect_build_refused(&m, "amount_minor must not be negative");
    m = dynamic_sample();
    m.code_id[0] = '\0';
    expect_build_refused(&m, "a dynamic code needs a code_id");
    m = dynamic_sample();
    m.amount_scale = 5;
    expect_build_refused(&m, "amount_scale must be -1 or 0 to 4");
    m = dynamic_sample();
    strcpy(m.currency_numeric, "999");
    expect_build_refused(&m, "currency_numeric is not in the currency table; give amount_scale");
    m.amount_scale = 2; /* the caller knows better than the table */
    char out[EMVCO_PAYLOAD_BUF_BYTES];
    size_t len = 0;
    assert_int_equal(emvco_mpm_build(&m, out, sizeof(out), &len, NULL), CF_OK);
    struct emvco_mpm parsed;
    assert_int_equal(emvco_mpm_parse(out, len, NULL, 2, &parsed, NULL), CF_OK);
    assert_mpm_equal(&parsed, &m);

    m = dynamic_sample(); /* 1e13 major units: 14 characters even without the fraction */
    m.amount_minor = INT64_C(1000000000000000);
    expect_build_refused(&m, "amount is longer than tag 54's 13 characters");
    m.amount_minor = INT64_C(123456789012300); /* "1234567890123.00" shortens to 13 */
    check_round_trip(m, 2);

    m = dynamic_sample(); /* tag 26 over 99 characters */
    memset(m.gui, 'g', EMVCO_GUI_CHARS_MAX);
    memset(m.merchant_id, 'm', EMVCO_MERCHANT_ID_CHARS_MAX);
    memset(m.code_id, 'c', EMVCO_CODE_ID_CHARS_MAX);
    expect_build_refused(&m,
                         "gui, merchant_id, code_id and expiry do not fit tag 26's 99 characters");
}

/* Expiry --------------------------------------------------------------------------------------- */

static void test_expiry_check(void **state)
{
    (void)state;
    struct emvco_mpm m;
    parse_ok(dynamic_golden, &m);
    assert_true(m.expires_at_s == 1767225600);
    assert_int_equal(emvco_expiry_check(&m, 1767225599), CF_OK);
    assert_int_equal(emvco_expiry_check(&m, 1767225600), CF_ERR_QR_EXPIRED);
    assert_int_equal(emvco_expiry_check(&m, 1767225601), CF_ERR_QR_EXPIRED);
    assert_int_equal(emvco_expiry_check(&m, INT64_MAX), CF_ERR_QR_EXPIRED);

    parse_ok(static_golden, &m); /* no expiry: never expires */
    assert_true(m.expires_at_s == 0);
    assert_int_equal(emvco_expiry_check(&m, INT64_MAX), CF_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_check_value),
        cmocka_unit_test(test_spec_example_crc_and_decode),
        cmocka_unit_test(test_spec_example_tampered),
        cmocka_unit_test(test_build_static_exact),
        cmocka_unit_test(test_build_dynamic_exact),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_parse_honours_len),
        cmocka_unit_test(test_lowercase_crc_accepted),
        cmocka_unit_test(test_amount_with_fewer_fraction_digits),
        cmocka_unit_test(test_every_flip_refused),
        cmocka_unit_test(test_truncated_refused),
        cmocka_unit_test(test_structure_refused),
        cmocka_unit_test(test_frame_refused),
        cmocka_unit_test(test_payload_size_bound),
        cmocka_unit_test(test_missing_mandatory_refused),
        cmocka_unit_test(test_amount_refused),
        cmocka_unit_test(test_amount_scale_parameter),
        cmocka_unit_test(test_field_formats_refused),
        cmocka_unit_test(test_non_printable_refused),
        cmocka_unit_test(test_static_dynamic_rules),
        cmocka_unit_test(test_coffer_template),
        cmocka_unit_test(test_custom_gui),
        cmocka_unit_test(test_other_templates),
        cmocka_unit_test(test_lengths_count_characters),
        cmocka_unit_test(test_more_field_bounds),
        cmocka_unit_test(test_build_refuses),
        cmocka_unit_test(test_build_refuses_model),
        cmocka_unit_test(test_expiry_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
