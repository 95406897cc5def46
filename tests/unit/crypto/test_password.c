/*
 * test_password.c - unit tests for src/crypto/password.c: NFKC normalization (composed and
 * decomposed letters, fullwidth forms, expansion), the length bounds in code points, invalid
 * UTF-8 and control characters, the cracklib verdicts (with padded words), repeated characters
 * and the user's login, and argon2id storage: hash, verify, rehash and the dummy verification.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <sodium.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/hash.h"
#include "crypto/password.h"

#define E_ACUTE "\xc3\xa9"         /* U+00E9, composed */
#define E_COMBINING "e\xcc\x81"    /* e + U+0301 */
#define EURO "\xe2\x82\xac"        /* U+20AC, 3 bytes */
#define FULLWIDTH_A "\xef\xbc\xa1" /* U+FF21 */
#define FULLWIDTH_B "\xef\xbc\xa2"
#define FULLWIDTH_C "\xef\xbc\xa3"
#define ARABIC_LIGATURE "\xef\xb7\xba" /* U+FDFA: NFKC makes it 18 code points */

static const char good_pw[] = "correct-Horse-battery-staple-91";

/* text repeated times times into out (NUL-terminated). */
static void repeat(const char *text, size_t times, char *out, size_t out_bytes)
{
    size_t n = strlen(text);
    assert_true(n * times < out_bytes);
    for (size_t i = 0; i < times; i++)
        memcpy(out + i * n, text, n);
    out[n * times] = '\0';
}

static enum password_verdict normalize(const char *pw, char *out, size_t out_bytes, size_t *out_len)
{
    return password_normalize(pw, strlen(pw), out, out_bytes, out_len);
}

/* Normalization -------------------------------------------------------------------------------- */

static void test_normalize_composed_and_decomposed_agree(void **state)
{
    (void)state;
    char a[PASSWORD_BYTES_MAX], b[PASSWORD_BYTES_MAX];
    size_t a_len = 0, b_len = 0;
    assert_int_equal(normalize("caf" E_ACUTE "-au-lait-42", a, sizeof(a), &a_len), PASSWORD_OK);
    assert_int_equal(normalize("caf" E_COMBINING "-au-lait-42", b, sizeof(b), &b_len), PASSWORD_OK);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    assert_string_equal(a, "caf" E_ACUTE "-au-lait-42"); /* NFKC composes */
    assert_int_equal(a[a_len], '\0');
}

static void test_normalize_folds_compatibility_forms(void **state)
{
    (void)state;
    char out[PASSWORD_BYTES_MAX];
    size_t len = 0;
    assert_int_equal(
        normalize(FULLWIDTH_A FULLWIDTH_B FULLWIDTH_C "defghijklm", out, sizeof(out), &len),
        PASSWORD_OK);
    assert_string_equal(out, "ABCdefghijklm");
    assert_int_equal(len, 13);
    /* the ligature "fi" (U+FB01) and superscript two (U+00B2) */
    assert_int_equal(normalize("\xef\xac\x81nal-answer-x\xc2\xb2", out, sizeof(out), &len),
                     PASSWORD_OK);
    assert_string_equal(out, "final-answer-x2");
}

static void test_normalize_length_in_code_points(void **state)
{
    (void)state;
    char pw[PASSWORD_BYTES_MAX * 2], out[PASSWORD_BYTES_MAX];
    size_t len = 0;

    repeat(E_ACUTE, PASSWORD_CHARS_MIN - 1, pw, sizeof(pw)); /* 11 chars in 22 bytes */
    assert_int_equal(normalize(pw, out, sizeof(out), &len), PASSWORD_TOO_SHORT);
    repeat(E_ACUTE, PASSWORD_CHARS_MIN, pw, sizeof(pw));
    assert_int_equal(normalize(pw, out, sizeof(out), &len), PASSWORD_OK);
    assert_int_equal(len, 2 * PASSWORD_CHARS_MIN);

    /* 12 characters after normalization, 24 code points before */
    repeat(E_COMBINING, PASSWORD_CHARS_MIN, pw, sizeof(pw));
    assert_int_equal(normalize(pw, out, sizeof(out), &len), PASSWORD_OK);
    assert_int_equal(len, 2 * PASSWORD_CHARS_MIN);

    repeat(EURO, PASSWORD_CHARS_MAX, pw, sizeof(pw)); /* 128 chars in 384 bytes */
    assert_int_equal(normalize(pw, out, sizeof(out), &len), PASSWORD_OK);
    assert_int_equal(len, 3 * PASSWORD_CHARS_MAX);
    repeat(EURO, PASSWORD_CHARS_MAX + 1, pw, sizeof(pw));
    assert_int_equal(normalize(pw, out, sizeof(out), &len), PASSWORD_TOO_LONG);

    assert_int_equal(normalize("", out, sizeof(out), &len), PASSWORD_TOO_SHORT);
    assert_int_equal(normalize("short", out, sizeof(out), &len), PASSWORD_TOO_SHORT);
    assert_int_equal(normalize("elevenchars", out, sizeof(out), &len), PASSWORD_TOO_SHORT);
    assert_int_equal(normalize("twelve-chars", out, sizeof(out), &len), PASSWORD_OK);
}

static void test_normalize_bounds_bytes_and_expansion(void **state)
{
    (void)state;
    char pw[PASSWORD_BYTES_MAX * 2], out[PASSWORD_BYTES_MAX];
    size_t len = 0;
    /* more input bytes than any password may have, even if it would shrink */
    repeat(E_COMBINING, PASSWORD_BYTES_MAX / 3 + 1, pw, sizeof(pw));
    assert_true(strlen(pw) > PASSWORD_BYTES_MAX);
    assert_int_equal(normalize(pw, out, sizeof(out), &len), PASSWORD_TOO_LONG);
    /* 8 code points that NFKC expands to 144 */
    repeat(ARABIC_LIGATURE, 8, pw, sizeof(pw));
    assert_int_equal(normalize(pw, out, sizeof(out), &len), PASSWORD_TOO_LONG);
    /* 7 expand to 126: accepted, and the result is the expansion */
    repeat(ARABIC_LIGATURE, 7, pw, sizeof(pw));
    assert_int_equal(normalize(pw, out, sizeof(out), &len), PASSWORD_OK);
    assert_true(len > strlen(pw));
}

static void test_normalize_out_too_small_and_untouched(void **state)
{
    (void)state;
    char out[16];
    memset(out, 'Z', sizeof(out));
    size_t len = 777;
    assert_int_equal(normalize(good_pw, out, sizeof(out), &len), PASSWORD_TOO_LONG);
    assert_int_equal(len, 777);
    assert_int_equal(out[0], 'Z');
    assert_int_equal(normalize("short", out, sizeof(out), &len), PASSWORD_TOO_SHORT);
    assert_int_equal(len, 777);
    assert_int_equal(out[0], 'Z');
    /* exactly room for twelve bytes and the NUL */
    char small[13];
    assert_int_equal(normalize("twelve-chars", small, sizeof(small), &len), PASSWORD_OK);
    assert_int_equal(len, 12);
    assert_string_equal(small, "twelve-chars");
}

static void test_normalize_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* a bad continuation byte; truncated at the end; an overlong '/' */
        "abcdefghijk\xc3\x28mnop",
        "abcdefghijklmnop\xc3",
        "abcdefgh\xc0\xafijklmnop",
        /* a UTF-16 surrogate; above U+10FFFF; bytes that never start a character */
        "abcdefgh\xed\xa0\x80ijklmno",
        "abcdefgh\xf4\x90\x80\x80ijk",
        "abcdefgh\xffijklmnop",
        "abcdefgh\x80ijklmnop",
    };
    char out[PASSWORD_BYTES_MAX];
    size_t len = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(normalize(bad[i], out, sizeof(out), &len), PASSWORD_INVALID_UTF8);
        assert_int_equal(password_check(bad[i], NULL), PASSWORD_INVALID_UTF8);
    }
}

static void test_normalize_control_chars(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "abcdefgh\tijklmnop",     /* C0 */
        "abcdefghijklmnop\n",     /* C0, as a pasted line */
        "abcdefgh\x1bijklmnop",   /* C0 escape */
        "abcdefgh\x7fijklmnop",   /* DEL */
        "abcdefgh\xc2\x85ijklmn", /* C1: U+0085 */
        "abcdefgh\xc2\x9fijklmn", /* C1: U+009F */
    };
    char out[PASSWORD_BYTES_MAX];
    size_t len = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(normalize(bad[i], out, sizeof(out), &len), PASSWORD_CONTROL_CHARS);
        assert_int_equal(password_check(bad[i], NULL), PASSWORD_CONTROL_CHARS);
    }
    /* an embedded NUL is a control character too */
    static const char with_nul[] = "abcdefgh\0ijklmnop";
    assert_int_equal(password_normalize(with_nul, sizeof(with_nul) - 1, out, sizeof(out), &len),
                     PASSWORD_CONTROL_CHARS);
    /* just past C1, and a space, are fine */
    assert_int_equal(normalize("abcdefgh\xc2\xa1ijk lmn", out, sizeof(out), &len), PASSWORD_OK);
}

/* Policy --------------------------------------------------------------------------------------- */

static void test_check_accepts_a_passphrase(void **state)
{
    (void)state;
    assert_int_equal(password_check(good_pw, NULL), PASSWORD_OK);
    assert_int_equal(password_check(good_pw, "alice@example.com"), PASSWORD_OK);
    assert_int_equal(password_check(good_pw, "+15551234567"), PASSWORD_OK);
    assert_int_equal(password_check(good_pw, ""), PASSWORD_OK);
    assert_int_equal(password_check("caf" E_ACUTE "-au-lait-42", NULL), PASSWORD_OK);
}

static void test_check_refuses_weak(void **state)
{
    (void)state;
    static const char *const weak[] = {
        /* words padded beyond what cracklib alone sees through */
        "password12345",
        "Password12345!",
        "12345password",
        "!!sunshine2024!!",
        "qwertyuiop1234",
        /* dictionary words */
        "international",
        "administrator",
        "ENCYCLOPEDIA",
        /* too systematic */
        "abcdefghijklmn",
        "1234567890123",
        "welcome123456",
        /* one character repeated */
        "aaaaaaaaaaaaaa",
        E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE
            E_ACUTE,
        "            ",
    };
    for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++)
        assert_int_equal(password_check(weak[i], NULL), PASSWORD_WEAK);
}

static void test_check_applies_text_rules(void **state)
{
    (void)state;
    char pw[PASSWORD_BYTES_MAX * 2];
    assert_int_equal(password_check("short", NULL), PASSWORD_TOO_SHORT);
    assert_int_equal(password_check("", NULL), PASSWORD_TOO_SHORT);
    repeat("xY7!", 33, pw, sizeof(pw)); /* 132 characters */
    assert_int_equal(password_check(pw, NULL), PASSWORD_TOO_LONG);
    repeat("x", PASSWORD_BYTES_MAX + 5, pw, sizeof(pw));
    assert_int_equal(password_check(pw, NULL), PASSWORD_TOO_LONG);
}

static void test_check_refuses_the_login(void **state)
{
    (void)state;
    assert_int_equal(password_check("my-ALICE@Example.com-pass", "alice@example.com"),
                     PASSWORD_CONTAINS_LOGIN);
    assert_int_equal(password_check("alice@example.com", "Alice@Example.COM"),
                     PASSWORD_CONTAINS_LOGIN);
    assert_int_equal(password_check("zz+15551234567zz", "+15551234567"), PASSWORD_CONTAINS_LOGIN);
    /* case folding beyond ASCII: the login's accented capital */
    assert_int_equal(password_check("Gros-bisous-" E_ACUTE "lodie-x9", "\xc3\x89LODIE"),
                     PASSWORD_CONTAINS_LOGIN);
    /* and a login typed in fullwidth letters still matches */
    assert_int_equal(password_check("say-ABCdef-now-77", FULLWIDTH_A FULLWIDTH_B "cdef"),
                     PASSWORD_CONTAINS_LOGIN);
    /* a login that is not UTF-8 is compared byte for byte, ASCII case folded */
    assert_int_equal(password_check(good_pw, "HORSE\xff"), PASSWORD_OK);
    assert_int_equal(password_check("xx-correct-HORSE-battery", "horse-b\xff"), PASSWORD_OK);
    assert_int_equal(password_check("xx-correct-HORSE-battery", "\xffhorse"), PASSWORD_OK);
}

static void test_verdict_texts(void **state)
{
    (void)state;
    static const enum password_verdict all[] = {
        PASSWORD_OK,
        PASSWORD_INVALID_UTF8,
        PASSWORD_TOO_SHORT,
        PASSWORD_TOO_LONG,
        PASSWORD_CONTROL_CHARS,
        PASSWORD_WEAK,
        PASSWORD_CONTAINS_LOGIN,
    };
    const size_t n = sizeof(all) / sizeof(all[0]);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(password_verdict_text(all[i]));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(password_verdict_text(all[i]), password_verdict_text(all[j]));
    }
    assert_non_null(strstr(password_verdict_text(PASSWORD_TOO_SHORT), "12"));
    assert_non_null(strstr(password_verdict_text(PASSWORD_TOO_LONG), "128"));
}

/* Storage -------------------------------------------------------------------------------------- */

static void test_hash_and_verify(void **state)
{
    (void)state;
    char h1[PASSWORD_HASH_BYTES], h2[PASSWORD_HASH_BYTES];
    assert_int_equal(password_hash(good_pw, h1), CF_OK);
    assert_int_equal(strncmp(h1, "$argon2id$v=19$m=19456,t=2,p=1$", 31), 0);
    assert_true(strlen(h1) < PASSWORD_HASH_BYTES);
    assert_true(password_verify(h1, good_pw));
    assert_false(password_verify(h1, "correct-Horse-battery-staple-92"));
    assert_false(password_verify(h1, "correct-horse-battery-staple-91"));
    assert_false(password_verify(h1, ""));
    /* salted: the same password hashes differently, and both verify */
    assert_int_equal(password_hash(good_pw, h2), CF_OK);
    assert_string_not_equal(h1, h2);
    assert_true(password_verify(h2, good_pw));
    /* stored strings that are not hashes */
    assert_false(password_verify("", good_pw));
    assert_false(password_verify("not a hash", good_pw));
    assert_false(password_verify("$argon2id$v=19$m=19456,t=2,p=1$garbage", good_pw));
    char unterminated[PASSWORD_HASH_BYTES + 8];
    memset(unterminated, 'x', sizeof(unterminated) - 1);
    unterminated[sizeof(unterminated) - 1] = '\0';
    assert_false(password_verify(unterminated, good_pw));
}

static void test_needs_rehash(void **state)
{
    (void)state;
    char fresh[PASSWORD_HASH_BYTES];
    assert_int_equal(password_hash(good_pw, fresh), CF_OK);
    assert_false(password_needs_rehash(fresh));

    char cheap[crypto_pwhash_STRBYTES];
    assert_int_equal(crypto_pwhash_str_alg(cheap, good_pw, strlen(good_pw), 1,
                                           PASSWORD_MEMLIMIT_BYTES, crypto_pwhash_ALG_ARGON2ID13),
                     0);
    assert_true(password_verify(cheap, good_pw)); /* still verifies... */
    assert_true(password_needs_rehash(cheap));    /* ...but is due for the current cost */

    char argon2i[crypto_pwhash_STRBYTES]; /* the current cost, the older algorithm */
    assert_int_equal(crypto_pwhash_str_alg(argon2i, good_pw, strlen(good_pw), 3,
                                           PASSWORD_MEMLIMIT_BYTES, crypto_pwhash_ALG_ARGON2I13),
                     0);
    assert_true(password_needs_rehash(argon2i));

    assert_true(password_needs_rehash(""));
    assert_true(password_needs_rehash("not a hash"));
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The dummy verification costs about as much as a real one. The bound is loose (a quarter) so
 * a busy machine does not fail the test; a dummy that skipped the work would take microseconds. */
static void test_verify_dummy_takes_as_long(void **state)
{
    (void)state;
    char stored[PASSWORD_HASH_BYTES];
    assert_int_equal(password_hash(good_pw, stored), CF_OK);
    password_verify_dummy(good_pw); /* the first call makes the dummy hash */
    int64_t real_us = INT64_MAX, dummy_us = INT64_MAX;
    for (int i = 0; i < 3; i++) {
        int64_t t0 = now_us();
        assert_true(password_verify(stored, good_pw));
        int64_t t1 = now_us();
        password_verify_dummy(good_pw);
        int64_t t2 = now_us();
        real_us = t1 - t0 < real_us ? t1 - t0 : real_us;
        dummy_us = t2 - t1 < dummy_us ? t2 - t1 : dummy_us;
    }
    assert_true(dummy_us * 4 > real_us);
    assert_true(real_us * 4 > dummy_us);
}

static int group_setup(void **state)
{
    (void)state;
    return hash_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_composed_and_decomposed_agree),
        cmocka_unit_test(test_normalize_folds_compatibility_forms),
        cmocka_unit_test(test_normalize_length_in_code_points),
        cmocka_unit_test(test_normalize_bounds_bytes_and_expansion),
        cmocka_unit_test(test_normalize_out_too_small_and_untouched),
        cmocka_unit_test(test_normalize_invalid_utf8),
        cmocka_unit_test(test_normalize_control_chars),
        cmocka_unit_test(test_check_accepts_a_passphrase),
        cmocka_unit_test(test_check_refuses_weak),
        cmocka_unit_test(test_check_applies_text_rules),
        cmocka_unit_test(test_check_refuses_the_login),
        cmocka_unit_test(test_verdict_texts),
        cmocka_unit_test(test_hash_and_verify),
        cmocka_unit_test(test_needs_rehash),
        cmocka_unit_test(test_verify_dummy_takes_as_long),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
