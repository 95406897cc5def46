/*
 * test_totp.c - unit tests for src/crypto/totp.c and src/crypto/qrsvg.c: HOTP against RFC 4226
 * appendix D, TOTP against RFC 6238 appendix B (SHA-1), base32 against RFC 4648 section 10 and
 * round trips, strict refusal of bad base32, the drift window and replay step of totp_check,
 * the otpauth:// URI, and the SVG of a QR code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/hash.h"
#include "crypto/qrsvg.h"
#include "crypto/totp.h"

/* The RFC 4226 and RFC 6238 (SHA-1) test secret. */
static const uint8_t rfc_key[] = "12345678901234567890";
#define RFC_KEY_BYTES 20

/* The zero-padded 6-digit text of the TOTP at unix_s under the RFC key. */
static void code_at(int64_t unix_s, char out[TOTP_DIGITS + 1])
{
    snprintf(out, TOTP_DIGITS + 1, "%06u", totp_at(rfc_key, RFC_KEY_BYTES, unix_s, TOTP_DIGITS));
}

/* HOTP / TOTP ---------------------------------------------------------------------------------- */

static void test_hotp_rfc4226_vectors(void **state)
{
    (void)state;
    /* RFC 4226, appendix D */
    static const uint32_t expect[] = {755224, 287082, 359152, 969429, 338314,
                                      254676, 287922, 162583, 399871, 520489};
    for (uint64_t c = 0; c < sizeof(expect) / sizeof(expect[0]); c++)
        assert_int_equal(hotp(rfc_key, RFC_KEY_BYTES, c, 6), expect[c]);
}

static void test_totp_rfc6238_vectors(void **state)
{
    (void)state;
    /* RFC 6238, appendix B, SHA-1 rows (8 digits) */
    static const struct {
        int64_t unix_s;
        uint32_t code;
    } rows[] = {
        {59, 94287082},         {1111111109, 7081804},  {1111111111, 14050471},
        {1234567890, 89005924}, {2000000000, 69279037}, {20000000000, 65353130},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_int_equal(totp_at(rfc_key, RFC_KEY_BYTES, rows[i].unix_s, 8), rows[i].code);
    /* the same times with 6 digits are the low six digits */
    assert_int_equal(totp_at(rfc_key, RFC_KEY_BYTES, 59, 6), 287082);
    assert_int_equal(totp_at(rfc_key, RFC_KEY_BYTES, 1111111109, 6), 81804);
}

static void test_totp_step(void **state)
{
    (void)state;
    assert_int_equal(totp_step(0), 0);
    assert_int_equal(totp_step(29), 0);
    assert_int_equal(totp_step(30), 1);
    assert_int_equal(totp_step(59), 1);
    assert_int_equal(totp_step(1111111109), 37037036);
    assert_true(totp_step(20000000000) == 666666666);
}

static void test_totp_check_drift(void **state)
{
    (void)state;
    const int64_t now = 1111111111;
    const uint64_t step = totp_step(now);
    char code[TOTP_DIGITS + 1];
    uint64_t got = 0;

    code_at(now, code);
    assert_true(totp_check(rfc_key, RFC_KEY_BYTES, now, code, &got));
    assert_true(got == step);

    code_at(now - TOTP_STEP_S, code); /* the phone is a step behind */
    assert_true(totp_check(rfc_key, RFC_KEY_BYTES, now, code, &got));
    assert_true(got == step - 1);

    code_at(now + TOTP_STEP_S, code); /* the phone is a step ahead */
    assert_true(totp_check(rfc_key, RFC_KEY_BYTES, now, code, &got));
    assert_true(got == step + 1);

    got = 42;
    code_at(now - 2 * TOTP_STEP_S, code);
    assert_false(totp_check(rfc_key, RFC_KEY_BYTES, now, code, &got));
    code_at(now + 2 * TOTP_STEP_S, code);
    assert_false(totp_check(rfc_key, RFC_KEY_BYTES, now, code, &got));
    assert_true(got == 42); /* untouched when nothing matched */
}

static void test_totp_check_first_step(void **state)
{
    (void)state;
    char code[TOTP_DIGITS + 1];
    uint64_t got = 99;
    code_at(10, code); /* step 0 has no step before it */
    assert_true(totp_check(rfc_key, RFC_KEY_BYTES, 10, code, &got));
    assert_true(got == 0);
    code_at(40, code);
    assert_true(totp_check(rfc_key, RFC_KEY_BYTES, 10, code, &got));
    assert_true(got == 1);
}

static void test_totp_check_malformed_codes(void **state)
{
    (void)state;
    const int64_t now = 1234567890;
    char code[TOTP_DIGITS + 1];
    code_at(now, code);
    char text[32];
    uint64_t got = 7;

    static const char *const bad[] = {"",       "12345",  "1234567", "12a456",       " 12345",
                                      "12345 ", "-12345", "+12345",  "１２３４５６", "123 456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(totp_check(rfc_key, RFC_KEY_BYTES, now, bad[i], &got));

    snprintf(text, sizeof(text), "%s\n", code); /* the right code with a trailing newline */
    assert_false(totp_check(rfc_key, RFC_KEY_BYTES, now, text, &got));
    snprintf(text, sizeof(text), "0%s", code); /* the right code with a leading zero */
    assert_false(totp_check(rfc_key, RFC_KEY_BYTES, now, text, &got));
    snprintf(text, sizeof(text), "%.5s", code); /* its first five digits */
    assert_false(totp_check(rfc_key, RFC_KEY_BYTES, now, text, &got));
    assert_true(got == 7);
}

static void test_totp_check_leading_zero_code(void **state)
{
    (void)state;
    /* RFC 6238's row at 1111111109 is 07081804: six digits "081804" keep their zero */
    uint64_t got = 0;
    assert_true(totp_check(rfc_key, RFC_KEY_BYTES, 1111111109, "081804", &got));
    assert_true(got == totp_step(1111111109));
    assert_false(totp_check(rfc_key, RFC_KEY_BYTES, 1111111109, "81804", &got));
}

/* Base32 --------------------------------------------------------------------------------------- */

static void test_base32_rfc4648_vectors(void **state)
{
    (void)state;
    /* RFC 4648, section 10, padding removed for the encoder */
    static const struct {
        const char *plain;
        const char *padded;
        const char *bare;
    } rows[] = {
        {"", "", ""},
        {"f", "MY======", "MY"},
        {"fo", "MZXQ====", "MZXQ"},
        {"foo", "MZXW6===", "MZXW6"},
        {"foob", "MZXW6YQ=", "MZXW6YQ"},
        {"fooba", "MZXW6YTB", "MZXW6YTB"},
        {"foobar", "MZXW6YTBOI======", "MZXW6YTBOI"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *plain = rows[i].plain;
        char enc[32];
        size_t n = base32_encode((const uint8_t *)plain, strlen(plain), enc, sizeof(enc));
        assert_string_equal(enc, rows[i].bare);
        assert_int_equal(n, strlen(rows[i].bare));

        uint8_t dec[16];
        size_t len = 99;
        assert_int_equal(base32_decode(rows[i].padded, dec, sizeof(dec), &len), CF_OK);
        assert_int_equal(len, strlen(plain));
        assert_memory_equal(dec, plain, len);
        len = 99;
        assert_int_equal(base32_decode(rows[i].bare, dec, sizeof(dec), &len), CF_OK);
        assert_int_equal(len, strlen(plain));
        assert_memory_equal(dec, plain, len);
    }
}

static void test_base32_case_and_spaces(void **state)
{
    (void)state;
    uint8_t dec[16];
    size_t len = 0;
    assert_int_equal(base32_decode("mzxw 6ytb oi", dec, sizeof(dec), &len), CF_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(dec, "foobar", 6);
    assert_int_equal(base32_decode("MzXw6YtBoI==", dec, sizeof(dec), &len), CF_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(dec, "foobar", 6);
}

static void test_base32_round_trips(void **state)
{
    (void)state;
    uint8_t in[64], dec[64];
    char enc[8 * ((sizeof(in) + 4) / 5) + 1];
    for (size_t n = 0; n <= sizeof(in); n++) {
        hash_random(in, n);
        size_t enc_len = base32_encode(in, n, enc, sizeof(enc));
        assert_int_equal(enc_len, (n * 8 + 4) / 5);
        assert_int_equal(strlen(enc), enc_len);
        size_t len = 0;
        assert_int_equal(base32_decode(enc, dec, n, &len), CF_OK); /* exactly enough room */
        assert_int_equal(len, n);
        assert_memory_equal(dec, in, n);
    }
    /* every byte value */
    uint8_t all[256], back[256];
    char all_enc[8 * ((256 + 4) / 5) + 1];
    for (size_t i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    base32_encode(all, sizeof(all), all_enc, sizeof(all_enc));
    size_t len = 0;
    assert_int_equal(base32_decode(all_enc, back, sizeof(back), &len), CF_OK);
    assert_int_equal(len, 256);
    assert_memory_equal(back, all, 256);
}

static void test_base32_rejects_bad_text(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* characters outside the alphabet */
        "MZXW6YQ1",
        "MZXW6YQ0",
        "MZXW8YTB",
        "MZXW-YTB",
        "MZXW6YT\n",
        "MZXW6YT\t",
        "MZXW_YTB",
        "MZ.W6YTB",
        "\xc3\xa9",
        /* a final group of 1, 3 or 6 symbols cannot come from whole bytes */
        "M",
        "MZX",
        "MZXW6Y",
        "MZXW6YTBM",
        /* "f" is "MY": the spare bits of the last symbol must be zero */
        "MZ",
        "MZXR",
        "MZXW6YTBOJ",
        "MZXW7",
    };
    uint8_t dec[16];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(dec, 0xAA, sizeof(dec));
        size_t len = 1234;
        assert_int_equal(base32_decode(bad[i], dec, sizeof(dec), &len), CF_ERR_INVALID_FIELD);
        assert_int_equal(len, 1234);
        for (size_t j = 0; j < sizeof(dec); j++)
            assert_int_equal(dec[j], 0xAA);
    }
}

static void test_base32_output_too_small(void **state)
{
    (void)state;
    uint8_t dec[8];
    memset(dec, 0xAA, sizeof(dec));
    size_t len = 1234;
    assert_int_equal(base32_decode("MZXW6YTBOI", dec, 5, &len), CF_ERR_INVALID_FIELD);
    assert_int_equal(len, 1234);
    for (size_t j = 0; j < sizeof(dec); j++)
        assert_int_equal(dec[j], 0xAA);
    assert_int_equal(base32_decode("MZXW6YTBOI", dec, 6, &len), CF_OK);
    assert_int_equal(len, 6);
    assert_int_equal(base32_decode("", NULL, 0, &len), CF_OK);
    assert_int_equal(len, 0);
}

/* otpauth:// URI ------------------------------------------------------------------------------- */

static void test_totp_uri_format(void **state)
{
    (void)state;
    char uri[TOTP_URI_BYTES_MAX];
    assert_int_equal(
        totp_uri("Coffer", "alice@example.com", rfc_key, RFC_KEY_BYTES, uri, sizeof(uri)), CF_OK);
    assert_string_equal(uri, "otpauth://totp/Coffer:alice%40example.com"
                             "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Coffer"
                             "&algorithm=SHA1&digits=6&period=30");

    assert_int_equal(totp_uri("My Bank & Co", "+1 555/0100:x?y=z#\xc3\xa9~._-", rfc_key,
                              RFC_KEY_BYTES, uri, sizeof(uri)),
                     CF_OK);
    assert_string_equal(uri, "otpauth://totp/My%20Bank%20%26%20Co:%2B1%20555%2F0100%3Ax%3Fy%3Dz"
                             "%23%C3%A9~._-?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
                             "&issuer=My%20Bank%20%26%20Co&algorithm=SHA1&digits=6&period=30");
}

static void test_totp_uri_secret_decodes(void **state)
{
    (void)state;
    uint8_t key[TOTP_SECRET_BYTES], back[TOTP_SECRET_BYTES];
    hash_random(key, sizeof(key));
    char uri[TOTP_URI_BYTES_MAX];
    assert_int_equal(totp_uri("Coffer", "bob", key, sizeof(key), uri, sizeof(uri)), CF_OK);
    const char *secret = strstr(uri, "secret=");
    assert_non_null(secret);
    secret += strlen("secret=");
    char b32[TOTP_SECRET_B32_BYTES_MAX];
    size_t b32_len = (size_t)(strchr(secret, '&') - secret);
    assert_int_equal(b32_len, 32);
    memcpy(b32, secret, b32_len);
    b32[b32_len] = '\0';
    size_t len = 0;
    assert_int_equal(base32_decode(b32, back, sizeof(back), &len), CF_OK);
    assert_int_equal(len, sizeof(key));
    assert_memory_equal(back, key, sizeof(key));
}

static void test_totp_uri_refuses_what_does_not_fit(void **state)
{
    (void)state;
    char uri[TOTP_URI_BYTES_MAX];
    memset(uri, 'Q', sizeof(uri));
    assert_int_equal(totp_uri("Coffer", "bob", rfc_key, RFC_KEY_BYTES, uri, sizeof(uri)), CF_OK);
    size_t full = strlen(uri);
    memset(uri, 'Q', sizeof(uri));
    /* no room for the terminator: refused, and out untouched */
    assert_int_equal(totp_uri("Coffer", "bob", rfc_key, RFC_KEY_BYTES, uri, full),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(uri[0], 'Q');
    assert_int_equal(totp_uri("Coffer", "bob", rfc_key, RFC_KEY_BYTES, uri, full + 1), CF_OK);

    /* names that percent-encode past TOTP_URI_BYTES_MAX */
    char account[200];
    memset(account, '@', sizeof(account) - 1);
    account[sizeof(account) - 1] = '\0';
    assert_int_equal(totp_uri("Coffer", account, rfc_key, RFC_KEY_BYTES, uri, sizeof(uri)),
                     CF_ERR_INVALID_FIELD);

    /* a key whose base32 is longer than TOTP_SECRET_B32_BYTES_MAX */
    uint8_t long_key[70] = {0};
    assert_int_equal(totp_uri("Coffer", "bob", long_key, sizeof(long_key), uri, sizeof(uri)),
                     CF_ERR_INVALID_FIELD);
    uint8_t key64[64] = {0}; /* RFC 6238's longest key still fits */
    assert_int_equal(totp_uri("Coffer", "bob", key64, sizeof(key64), uri, sizeof(uri)), CF_OK);
}

/* QR code SVG ---------------------------------------------------------------------------------- */

static void test_qrsvg_renders_svg(void **state)
{
    (void)state;
    struct arena *a = arena_create(4u << 20);
    assert_non_null(a);
    struct buf b;
    buf_init(&b, a, 1u << 20);
    static const char text[] = "otpauth://totp/Coffer:alice%40example.com"
                               "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Coffer";
    assert_int_equal(qrsvg_render(text, strlen(text), &b), CF_OK);
    assert_true(buf_ok(&b));
    assert_int_equal(strncmp(b.data, "<svg", 4), 0);
    assert_non_null(strstr(b.data, "xmlns=\"http://www.w3.org/2000/svg\""));
    assert_non_null(strstr(b.data, "<path"));
    assert_non_null(strstr(b.data, " d=\"M"));
    assert_null(strstr(b.data, "<script"));
    assert_null(strstr(b.data, "href"));
    assert_int_equal(strlen(b.data), b.len);
    assert_string_equal(b.data + b.len - strlen("</svg>"), "</svg>");
    arena_destroy(a);
}

static void test_qrsvg_version_one_size(void **state)
{
    (void)state;
    struct arena *a = arena_create(1u << 20);
    assert_non_null(a);
    struct buf b;
    buf_init(&b, a, 1u << 16);
    buf_puts(&b, "before:");
    /* 5 bytes fit version 1 (21 modules) at level M; 4 modules of quiet zone each side */
    assert_int_equal(qrsvg_render("hello", 5, &b), CF_OK);
    assert_int_equal(strncmp(b.data, "before:<svg", 11), 0); /* appended, not replaced */
    assert_non_null(strstr(b.data, "viewBox=\"0 0 29 29\""));
    /* the top-left finder pattern: a 7-module run on the first row, inside the quiet zone */
    assert_non_null(strstr(b.data, "d=\"M4 4h7v1h-7z"));
    arena_destroy(a);
}

static void test_qrsvg_refuses_bad_text(void **state)
{
    (void)state;
    struct arena *a = arena_create(4u << 20);
    assert_non_null(a);
    struct buf b;
    buf_init(&b, a, 1u << 20);
    static char big[QRSVG_TEXT_BYTES_MAX + 1];
    memset(big, 'x', sizeof(big));
    assert_int_equal(qrsvg_render("", 0, &b), CF_ERR_INVALID_FIELD);
    assert_int_equal(qrsvg_render(big, sizeof(big), &b), CF_ERR_INVALID_FIELD);
    assert_int_equal(b.len, 0);
    assert_true(buf_ok(&b));
    /* exactly the limit fits, and bytes that are not text are fine in 8-bit mode */
    hash_random(big, QRSVG_TEXT_BYTES_MAX);
    assert_int_equal(qrsvg_render(big, QRSVG_TEXT_BYTES_MAX, &b), CF_OK);
    assert_int_equal(strncmp(b.data, "<svg", 4), 0);
    arena_destroy(a);
}

static void test_qrsvg_buffer_too_small(void **state)
{
    (void)state;
    struct arena *a = arena_create(1u << 20);
    assert_non_null(a);
    struct buf b;
    buf_init(&b, a, 300);
    buf_puts(&b, "kept");
    assert_int_equal(qrsvg_render("hello", 5, &b), CF_ERR_NOMEM);
    assert_true(buf_ok(&b)); /* put back as it was */
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "kept");
    arena_destroy(a);
}

static int group_setup(void **state)
{
    (void)state;
    return hash_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hotp_rfc4226_vectors),
        cmocka_unit_test(test_totp_rfc6238_vectors),
        cmocka_unit_test(test_totp_step),
        cmocka_unit_test(test_totp_check_drift),
        cmocka_unit_test(test_totp_check_first_step),
        cmocka_unit_test(test_totp_check_malformed_codes),
        cmocka_unit_test(test_totp_check_leading_zero_code),
        cmocka_unit_test(test_base32_rfc4648_vectors),
        cmocka_unit_test(test_base32_case_and_spaces),
        cmocka_unit_test(test_base32_round_trips),
        cmocka_unit_test(test_base32_rejects_bad_text),
        cmocka_unit_test(test_base32_output_too_small),
        cmocka_unit_test(test_totp_uri_format),
        cmocka_unit_test(test_totp_uri_secret_decodes),
        cmocka_unit_test(test_totp_uri_refuses_what_does_not_fit),
        cmocka_unit_test(test_qrsvg_renders_svg),
        cmocka_unit_test(test_qrsvg_version_one_size),
        cmocka_unit_test(test_qrsvg_refuses_bad_text),
        cmocka_unit_test(test_qrsvg_buffer_too_small),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
