/*
 * test_core.c - unit tests for src/core: the arena (alignment, its byte limit, reset), public ids
 * and cursors (format/parse round trips and strict rejection), the error registry (statuses,
 * unique codes, code lookups), the fake clock, SHA-256 against the FIPS 180-2 vector and the
 * constant-time comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <string.h>

#include "core/arena.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/ids.h"
#include "core/url.h"

/* Arena ---------------------------------------------------------------------------------------- */

static void test_arena_alignment(void **state)
{
    (void)state;
    struct arena *a = arena_create(1u << 20);
    assert_non_null(a);
    static const size_t sizes[] = {1, 3, 7, 15, 16, 17, 31, 33, 100, 4095, 0, 5};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = arena_alloc(a, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xAB, sizes[i]); /* the memory is really ours (ASan checks) */
    }
    arena_destroy(a);
}

static void test_arena_limit_returns_null(void **state)
{
    (void)state;
    struct arena *a = arena_create(1024);
    assert_non_null(a);
    assert_null(arena_alloc(a, 2000));
    void *p = arena_alloc(a, 1000); /* fits: the arena falls back to an exact-size chunk */
    assert_non_null(p);
    assert_null(arena_alloc(a, 100));              /* nothing left under the limit */
    assert_null(arena_calloc(a, SIZE_MAX / 2, 4)); /* n * size overflows */
    arena_destroy(a);
}

static void test_arena_reset(void **state)
{
    (void)state;
    struct arena *a = arena_create(64 * 1024);
    assert_non_null(a);
    assert_int_equal(arena_used_bytes(a), 0);
    for (int i = 0; i < 10; i++)
        assert_non_null(arena_alloc(a, 5000));
    assert_true(arena_used_bytes(a) >= 50000);
    assert_null(arena_alloc(a, 60000)); /* over the limit with what is held */
    arena_reset(a);
    assert_int_equal(arena_used_bytes(a), 0);
    assert_non_null(arena_alloc(a, 40000)); /* room again after the reset */
    arena_destroy(a);
}

static void test_arena_calloc_and_strndup(void **state)
{
    (void)state;
    struct arena *a = arena_create(1u << 16);
    assert_non_null(a);
    unsigned char *z = arena_calloc(a, 10, 7);
    assert_non_null(z);
    for (int i = 0; i < 70; i++)
        assert_int_equal(z[i], 0);
    char *s = arena_strndup(a, "hello world", 5);
    assert_non_null(s);
    assert_string_equal(s, "hello");
    arena_destroy(a);
}

/* Ids ------------------------------------------------------------------------------------------ */

static void test_id_format_known_values(void **state)
{
    (void)state;
    char buf[ID_TEXT_BYTES_MAX];
    id_format(ID_PREFIX_ACCOUNT, 1, buf);
    assert_string_equal(buf, "acct_0000000000001");
    id_format(ID_PREFIX_TRANSFER, 32, buf);
    assert_string_equal(buf, "tr_0000000000010");
    id_format(ID_PREFIX_ACCOUNT, 31, buf);
    assert_string_equal(buf, "acct_000000000000Z");
}

static void test_id_round_trip(void **state)
{
    (void)state;
    static const uint64_t values[] = {1,
                                      2,
                                      31,
                                      32,
                                      1000,
                                      123456789,
                                      1ull << 40,
                                      (1ull << 60) + 12345,
                                      (1ull << 61) - 1,
                                      1ull << 61,
                                      UINT64_MAX - 1,
                                      UINT64_MAX};
    char buf[ID_TEXT_BYTES_MAX];
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        uint64_t out = 0;
        id_format(ID_PREFIX_ACCOUNT, values[i], buf);
        assert_int_equal(strlen(buf), strlen(ID_PREFIX_ACCOUNT) + ID_CODE_CHARS);
        assert_int_equal(id_parse(ID_PREFIX_ACCOUNT, buf, strlen(buf), &out), CF_OK);
        assert_true(out == values[i]);
        id_format(ID_PREFIX_TRANSFER, values[i], buf);
        assert_int_equal(id_parse(ID_PREFIX_TRANSFER, buf, strlen(buf), &out), CF_OK);
        assert_true(out == values[i]);
    }
}

static void test_id_top_digit(void **state)
{
    (void)state;
    /* 13 digits carry 65 bits; a uint64_t uses 4 bits of the first digit (0..F). */
    char buf[ID_TEXT_BYTES_MAX];
    id_format(ID_PREFIX_ACCOUNT, UINT64_MAX, buf);
    assert_string_equal(buf, "acct_FZZZZZZZZZZZZ");
    id_format(ID_PREFIX_ACCOUNT, 1ull << 61, buf);
    assert_string_equal(buf, "acct_2000000000000");
    uint64_t out = 0;
    assert_int_equal(id_parse(ID_PREFIX_ACCOUNT, "acct_1ZZZZZZZZZZZZ", 18, &out), CF_OK);
    assert_true(out == (1ull << 61) - 1);
}

/* id_parse must fail and leave *out alone. */
static void assert_id_rejected(const char *prefix, const char *text)
{
    uint64_t out = 777;
    assert_int_equal(id_parse(prefix, text, strlen(text), &out), CF_ERR_INVALID_ID);
    assert_true(out == 777);
}

static void test_id_rejects_malformed(void **state)
{
    (void)state;
    assert_id_rejected(ID_PREFIX_ACCOUNT, "tr_0000000000001");    /* wrong prefix */
    assert_id_rejected(ID_PREFIX_TRANSFER, "acct_0000000000001"); /* wrong prefix */
    assert_id_rejected(ID_PREFIX_ACCOUNT, "ACCT_0000000000001");  /* prefix is case-sensitive */
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_");               /* no code */
    assert_id_rejected(ID_PREFIX_ACCOUNT, "");
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_000000000001");   /* 12 chars */
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_00000000000001"); /* 14 chars */
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_000000000000I");  /* I, L, O, U not in alphabet */
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_000000000000L");
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_000000000000O");
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_000000000000U");
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_000000000000a"); /* lower case */
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_000000000000-");
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_000000 000001");
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_0000000000000"); /* zero */
    /* 13 digits hold 65 bits: a first digit of 16 or more (G..Z) overflows a uint64_t. */
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_G000000000000");
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_Z000000000001");
    assert_id_rejected(ID_PREFIX_ACCOUNT, "acct_ZZZZZZZZZZZZZ");
}

static void test_id_parse_honours_len(void **state)
{
    (void)state;
    const char *text = "acct_0000000000001XYZ";
    uint64_t out = 0;
    assert_int_equal(id_parse(ID_PREFIX_ACCOUNT, text, 18, &out), CF_OK);
    assert_true(out == 1);
    assert_int_equal(id_parse(ID_PREFIX_ACCOUNT, text, 17, &out), CF_ERR_INVALID_ID);
    char embedded[] = "acct_000000000\0001";
    assert_int_equal(id_parse(ID_PREFIX_ACCOUNT, embedded, 18, &out), CF_ERR_INVALID_ID);
}

/* Cursors -------------------------------------------------------------------------------------- */

static void test_cursor_round_trip(void **state)
{
    (void)state;
    static const uint64_t positions[] = {0, 1, 99, 1ull << 32, 1ull << 61, UINT64_MAX};
    char buf[ID_TEXT_BYTES_MAX];
    for (size_t i = 0; i < sizeof(positions) / sizeof(positions[0]); i++) {
        uint64_t out = 12345;
        cursor_format(positions[i], buf);
        assert_int_equal(strlen(buf), ID_CODE_CHARS);
        assert_int_equal(cursor_parse(buf, strlen(buf), &out), CF_OK);
        assert_true(out == positions[i]);
    }
    cursor_format(0, buf);
    assert_string_equal(buf, "0000000000000"); /* unlike ids, position 0 is a valid cursor */
}

static void test_cursor_rejects_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {"",
                                      "000000000001",
                                      "00000000000001",
                                      "000000000000I",
                                      "000000000000u",
                                      "acct_00000001",
                                      "Z000000000000",
                                      "00000000000 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t out = 42;
        assert_int_equal(cursor_parse(bad[i], strlen(bad[i]), &out), CF_ERR_INVALID_CURSOR);
        assert_true(out == 42);
    }
}

/* Error registry ------------------------------------------------------------------------------- */

static void test_error_statuses(void **state)
{
    (void)state;
    assert_int_equal(CF_OK, 0);
    assert_int_equal(cf_err_http_status(CF_OK), 200);
    assert_string_equal(cf_err_code(CF_OK), "ok");
    for (int e = 1; e < CF_ERR_COUNT_; e++) {
        int status = cf_err_http_status((enum cf_err)e);
        assert_true(status >= 400 && status <= 599);
        assert_non_null(cf_err_code((enum cf_err)e));
        assert_true(strlen(cf_err_code((enum cf_err)e)) > 0);
        assert_true(strlen(cf_err_title((enum cf_err)e)) > 0);
    }
    assert_int_equal(cf_err_http_status(CF_ERR_INSUFFICIENT_FUNDS), 422);
    assert_int_equal(cf_err_http_status(CF_ERR_NOT_FOUND), 404);
    assert_int_equal(cf_err_http_status(CF_ERR_STORAGE), 503);
    assert_string_equal(cf_err_code(CF_ERR_INSUFFICIENT_FUNDS), "insufficient_funds");
}

static void test_error_codes_unique_and_lookup(void **state)
{
    (void)state;
    for (int e = 0; e < CF_ERR_COUNT_; e++) {
        const char *code = cf_err_code((enum cf_err)e);
        for (int f = e + 1; f < CF_ERR_COUNT_; f++)
            assert_string_not_equal(code, cf_err_code((enum cf_err)f));
        assert_int_equal(cf_err_from_code(code), e);
    }
    assert_int_equal(cf_err_from_code("no_such_code"), CF_ERR_COUNT_);
    assert_int_equal(cf_err_from_code(""), CF_ERR_COUNT_);
    assert_int_equal(cf_err_from_code("Insufficient_funds"), CF_ERR_COUNT_);
}

static void test_error_out_of_range_is_internal(void **state)
{
    (void)state;
    assert_string_equal(cf_err_code(CF_ERR_COUNT_), "internal");
    assert_int_equal(cf_err_http_status((enum cf_err)1000), 500);
}

/* Clock ---------------------------------------------------------------------------------------- */

static void test_clock_fake_advance(void **state)
{
    (void)state;
    struct cf_clock c;
    cf_clock_fake_init(&c, 1000);
    assert_true(cf_clock_now_us(&c) == 1000);
    assert_true(cf_clock_now_us(&c) == 1000); /* does not move by itself */
    cf_clock_fake_advance(&c, 500);
    assert_true(cf_clock_now_us(&c) == 1500);
    cf_clock_fake_advance(&c, 0);
    assert_true(cf_clock_now_us(&c) == 1500);
    cf_clock_fake_advance(&c, 3600LL * 1000000);
    assert_true(cf_clock_now_us(&c) == 1500 + 3600LL * 1000000);
}

static void test_clock_real_and_format(void **state)
{
    (void)state;
    int64_t now = cf_clock_now_us(&cf_clock_real);
    assert_true(now > 1577836800LL * 1000000); /* after 2020-01-01 */
    int64_t m1 = cf_monotonic_us(), m2 = cf_monotonic_us();
    assert_true(m2 >= m1);
    char buf[32];
    cf_time_format_rfc3339(0, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
    cf_time_format_rfc3339(1700000000123456LL, buf, sizeof(buf));
    assert_string_equal(buf, "2023-11-14T22:13:20.123456Z");
    cf_time_format_rfc3339(-1, buf, sizeof(buf));
    assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");
}

/* Hash ----------------------------------------------------------------------------------------- */

static void test_sha256_fips_vector(void **state)
{
    (void)state;
    /* FIPS 180-2, appendix B.1: SHA-256("abc"). */
    static const uint8_t expect[HASH_BYTES] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                               0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                               0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                               0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    uint8_t out[HASH_BYTES];
    hash_sha256("abc", 3, out);
    assert_memory_equal(out, expect, HASH_BYTES);
    char hex[HASH_HEX_BYTES];
    hash_hex(out, HASH_BYTES, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_sha256_incremental_matches(void **state)
{
    (void)state;
    static const char msg[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    /* FIPS 180-2, appendix B.2 */
    static const char expect_hex[] =
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
    uint8_t one[HASH_BYTES], inc[HASH_BYTES];
    char hex[HASH_HEX_BYTES];
    hash_sha256(msg, strlen(msg), one);
    hash_hex(one, HASH_BYTES, hex);
    assert_string_equal(hex, expect_hex);
    struct hash_state st;
    hash_sha256_begin(&st);
    hash_sha256_update(&st, msg, 10);
    hash_sha256_update(&st, msg + 10, 0);
    hash_sha256_update(&st, msg + 10, strlen(msg) - 10);
    hash_sha256_end(&st, inc);
    assert_memory_equal(one, inc, HASH_BYTES);
}

static void test_hash_equal(void **state)
{
    (void)state;
    uint8_t a[HASH_BYTES], b[HASH_BYTES];
    hash_sha256("x", 1, a);
    memcpy(b, a, HASH_BYTES);
    assert_true(hash_equal(a, b, HASH_BYTES));
    b[HASH_BYTES - 1] ^= 1;
    assert_false(hash_equal(a, b, HASH_BYTES));
    b[HASH_BYTES - 1] ^= 1;
    b[0] ^= 0x80;
    assert_false(hash_equal(a, b, HASH_BYTES));
    assert_true(hash_equal(a, b, 0)); /* nothing to compare */
    assert_true(hash_equal(a + 1, b + 1, HASH_BYTES - 1));
}

static void test_hash_random_and_wipe(void **state)
{
    (void)state;
    uint8_t r1[32], r2[32], zero[32] = {0};
    hash_random(r1, sizeof(r1));
    hash_random(r2, sizeof(r2));
    assert_memory_not_equal(r1, r2, sizeof(r1)); /* 2^-256 chance of a false failure */
    hash_wipe(r1, sizeof(r1));
    assert_memory_equal(r1, zero, sizeof(r1));
}

static int group_setup(void **state)
{
    (void)state;
    return hash_init();
}


static void test_url_rules(void **state)
{
    (void)state;
    static const char *const good[] = {"https://sms.example.com/send", "https://10.0.0.5:8443",
                                       "http://127.0.0.1:9000/hook", "http://localhost/x",
                                       "http://[::1]:80/", "https://[2001:db8::1]/a"};
    static const char *const bad[] = {
        "http://sms.example.com/send", "ftp://127.0.0.1/", "https://user:pw@host/",
        "https://", "https://host:0/", "https://host:65536/", "https://ho st/",
        "https://host\\x", "http://128.0.0.1/", "https://[::1/", ""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(url_is_allowed(good[i], 1024, true));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(url_is_allowed(bad[i], 1024, false));
    assert_true(url_is_allowed("https://host/a?b=1", 1024, false));
    assert_false(url_is_allowed("https://host/a?b=1", 1024, true));
    assert_false(url_is_allowed("https://host/a#b", 1024, true));
    assert_false(url_is_allowed("https://host/abc", 15, false)); /* 16 bytes: one too many */
    assert_true(url_is_allowed("https://host/abc", 16, false));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alignment),
        cmocka_unit_test(test_arena_limit_returns_null),
        cmocka_unit_test(test_arena_reset),
        cmocka_unit_test(test_arena_calloc_and_strndup),
        cmocka_unit_test(test_id_format_known_values),
        cmocka_unit_test(test_id_round_trip),
        cmocka_unit_test(test_id_top_digit),
        cmocka_unit_test(test_id_rejects_malformed),
        cmocka_unit_test(test_id_parse_honours_len),
        cmocka_unit_test(test_cursor_round_trip),
        cmocka_unit_test(test_cursor_rejects_malformed),
        cmocka_unit_test(test_error_statuses),
        cmocka_unit_test(test_error_codes_unique_and_lookup),
        cmocka_unit_test(test_error_out_of_range_is_internal),
        cmocka_unit_test(test_clock_fake_advance),
        cmocka_unit_test(test_clock_real_and_format),
        cmocka_unit_test(test_sha256_fips_vector),
        cmocka_unit_test(test_sha256_incremental_matches),
        cmocka_unit_test(test_hash_equal),
        cmocka_unit_test(test_hash_random_and_wipe),
        cmocka_unit_test(test_url_rules),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
