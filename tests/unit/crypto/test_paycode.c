/*
 * test_paycode.c - unit tests for src/crypto/paycode.c: fixed vectors cross-checked outside C,
 * generate/verify round trips at many times, the matched step, the acceptance window (two steps
 * back, one ahead), wrong secrets and device numbers, and strict refusal of malformed codes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <string.h>

#include "core/error.h"
#include "crypto/paycode.h"

/* Written into outputs before a call that must fail, to check they are left untouched. */
#define SENTINEL_STEP INT64_C(0x5A5A5A5A5A5A5A5A)
#define SENTINEL_DEVICE UINT64_C(0xA5A5A5A5A5A5A5A5)

/* A time well after the epoch, so a window of steps around it never reaches step 0. */
#define BASE_UNIX_S INT64_C(1700000000)

/* Secret 00 01 02 ... 1f. */
static void secret_fill(uint8_t secret[PAYCODE_SECRET_BYTES])
{
    for (int i = 0; i < PAYCODE_SECRET_BYTES; i++)
        secret[i] = (uint8_t)i;
}

/* A fixed pseudo-random sequence (64-bit LCG), so failures reproduce. */
static uint64_t lcg_next(uint64_t *lcg_state)
{
    *lcg_state = *lcg_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *lcg_state;
}

static void code_make(const uint8_t secret[PAYCODE_SECRET_BYTES], uint64_t device_number,
                      int64_t unix_s, char out[PAYCODE_DIGITS + 1])
{
    assert_int_equal(paycode_generate(secret, device_number, unix_s, out), CF_OK);
    assert_int_equal(strlen(out), PAYCODE_DIGITS);
}

static enum cf_err code_verify(const uint8_t secret[PAYCODE_SECRET_BYTES], const char *code,
                               int64_t now_s, int64_t *step_out)
{
    return paycode_verify(secret, code, strlen(code), now_s, step_out);
}

/* Vectors -------------------------------------------------------------------------------------- */

/*
 * Computed once with Python's hmac/hashlib, independently of this C code:
 *
 *   step = t // 30
 *   msg  = b"coffer.paycode.v1" + struct.pack(">Q", dev) + struct.pack(">Q", step)
 *   mac  = hmac.new(bytes(range(32)), msg, hashlib.sha256).digest()
 *   off  = mac[31] & 0x0f
 *   v    = (int.from_bytes(mac[off:off+4], "big") & 0x7fffffff) % 10**7
 *   code = "28%09d%07d" % (dev, v)
 *
 * and the first MAC again with `openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f`
 * (22d175d9...5ee0ee56, offset 6, value 9296562).
 */
static void test_vectors(void **state)
{
    (void)state;
    static const struct {
        uint64_t device_number;
        int64_t unix_s;
        const char *code;
        int64_t step;
    } vectors[] = {
        {123456789, 1700000000, "281234567899296562", 56666666},
        {1, 0, "280000000018525179", 0},
        {999999999, 1700000029, "289999999996048740", 56666667},
        {42, 1700000030, "280000000426464860", 56666667},
    };
    uint8_t secret[PAYCODE_SECRET_BYTES];
    secret_fill(secret);
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char code[PAYCODE_DIGITS + 1];
        code_make(secret, vectors[i].device_number, vectors[i].unix_s, code);
        assert_string_equal(code, vectors[i].code);
        assert_true((int64_t)paycode_step(vectors[i].unix_s) == vectors[i].step);
        int64_t step = SENTINEL_STEP;
        assert_int_equal(code_verify(secret, vectors[i].code, vectors[i].unix_s, &step), CF_OK);
        assert_true(step == vectors[i].step);
    }
}

/* Round trips ---------------------------------------------------------------------------------- */

static void test_round_trip_many_times(void **state)
{
    (void)state;
    uint64_t lcg_state = 7;
    uint8_t secret[PAYCODE_SECRET_BYTES];
    for (int i = 0; i < 2000; i++) {
        for (int b = 0; b < PAYCODE_SECRET_BYTES; b++)
            secret[b] = (uint8_t)(lcg_next(&lcg_state) >> 56);
        uint64_t device_number = 1 + lcg_next(&lcg_state) % PAYCODE_DEVICE_NUMBER_MAX;
        int64_t unix_s = (int64_t)(lcg_next(&lcg_state) % (UINT64_C(1) << 40));
        char code[PAYCODE_DIGITS + 1];
        code_make(secret, device_number, unix_s, code);

        uint64_t parsed = 0;
        assert_int_equal(paycode_parse(code, PAYCODE_DIGITS, &parsed), CF_OK);
        assert_true(parsed == device_number);
        int64_t step = SENTINEL_STEP;
        assert_int_equal(code_verify(secret, code, unix_s, &step), CF_OK);
        assert_true(step == unix_s / PAYCODE_STEP_S);
    }
}

/* The step reported is the one the code was made in, wherever the server's clock is in the
 * window; the step boundaries fall where floor(t / 30) says. */
static void test_step_reported_is_generation_step(void **state)
{
    (void)state;
    uint8_t secret[PAYCODE_SECRET_BYTES];
    secret_fill(secret);
    int64_t made_s = BASE_UNIX_S - BASE_UNIX_S % PAYCODE_STEP_S; /* first second of a step */
    int64_t made_step = made_s / PAYCODE_STEP_S;
    char code[PAYCODE_DIGITS + 1];
    char code_last_second[PAYCODE_DIGITS + 1];
    code_make(secret, 77, made_s, code);
    code_make(secret, 77, made_s + PAYCODE_STEP_S - 1, code_last_second);
    assert_string_equal(code, code_last_second); /* same step, same code */

    for (int64_t now_s = made_s - PAYCODE_STEP_S; now_s < made_s + 3 * PAYCODE_STEP_S; now_s++) {
        int64_t step = SENTINEL_STEP;
        assert_int_equal(code_verify(secret, code, now_s, &step), CF_OK);
        assert_true(step == made_step);
    }
}

/* Window --------------------------------------------------------------------------------------- */

static void test_window_back(void **state)
{
    (void)state;
    uint8_t secret[PAYCODE_SECRET_BYTES];
    secret_fill(secret);
    char code[PAYCODE_DIGITS + 1];
    code_make(secret, 123, BASE_UNIX_S, code);
    int64_t step = SENTINEL_STEP;
    for (int back = 0; back <= PAYCODE_WINDOW_STEPS; back++) {
        assert_int_equal(code_verify(secret, code, BASE_UNIX_S + back * PAYCODE_STEP_S, &step),
                         CF_OK);
        assert_true(step == BASE_UNIX_S / PAYCODE_STEP_S);
    }
    step = SENTINEL_STEP;
    int64_t too_late_s = BASE_UNIX_S + (PAYCODE_WINDOW_STEPS + 1) * PAYCODE_STEP_S;
    assert_int_equal(code_verify(secret, code, too_late_s, &step), CF_ERR_INVALID_PAYCODE);
    assert_int_equal(code_verify(secret, code, too_late_s + 3600, &step), CF_ERR_INVALID_PAYCODE);
    assert_true(step == SENTINEL_STEP);
}

static void test_window_ahead(void **state)
{
    (void)state;
    uint8_t secret[PAYCODE_SECRET_BYTES];
    secret_fill(secret);
    char code[PAYCODE_DIGITS + 1];
    code_make(secret, 123, BASE_UNIX_S, code);
    int64_t step = SENTINEL_STEP;
    /* The device is one step ahead of the server: accepted. */
    assert_int_equal(code_verify(secret, code, BASE_UNIX_S - PAYCODE_STEP_S, &step), CF_OK);
    assert_true(step == BASE_UNIX_S / PAYCODE_STEP_S);
    /* Two steps ahead: refused. */
    step = SENTINEL_STEP;
    int64_t too_early_s = BASE_UNIX_S - (PAYCODE_AHEAD_STEPS + 1) * PAYCODE_STEP_S;
    assert_int_equal(code_verify(secret, code, too_early_s, &step), CF_ERR_INVALID_PAYCODE);
    assert_true(step == SENTINEL_STEP);
}

/* Near the epoch the window is cut at step 0 instead of wrapping around. */
static void test_window_at_epoch(void **state)
{
    (void)state;
    uint8_t secret[PAYCODE_SECRET_BYTES];
    secret_fill(secret);
    char code[PAYCODE_DIGITS + 1];
    code_make(secret, 5, 0, code);
    int64_t step = SENTINEL_STEP;
    assert_int_equal(code_verify(secret, code, 0, &step), CF_OK);
    assert_true(step == 0);
    assert_int_equal(code_verify(secret, code, 2 * PAYCODE_STEP_S + 29, &step), CF_OK);
    assert_true(step == 0);
    assert_int_equal(code_verify(secret, code, 3 * PAYCODE_STEP_S, &step), CF_ERR_INVALID_PAYCODE);
}

/* Wrong keys and devices ----------------------------------------------------------------------- */

static void test_wrong_secret_refused(void **state)
{
    (void)state;
    uint8_t secret[PAYCODE_SECRET_BYTES];
    secret_fill(secret);
    for (int i = 0; i < PAYCODE_SECRET_BYTES; i++) {
        char code[PAYCODE_DIGITS + 1];
        code_make(secret, 314159, BASE_UNIX_S + i * PAYCODE_STEP_S, code);
        uint8_t other[PAYCODE_SECRET_BYTES];
        memcpy(other, secret, sizeof(other));
        other[i] ^= 0x01; /* one bit off */
        int64_t step = SENTINEL_STEP;
        assert_int_equal(code_verify(other, code, BASE_UNIX_S + i * PAYCODE_STEP_S, &step),
                         CF_ERR_INVALID_PAYCODE);
        assert_true(step == SENTINEL_STEP);
    }
}

/* The device number is MAC'ed: a code with another device's number in front of the same
 * one-time value does not verify, even under the same secret. */
static void test_wrong_device_number_refused(void **state)
{
    (void)state;
    uint8_t secret[PAYCODE_SECRET_BYTES];
    secret_fill(secret);
    char code[PAYCODE_DIGITS + 1];
    char moved[PAYCODE_DIGITS + 1];
    code_make(secret, 42, BASE_UNIX_S, code);
    code_make(secret, 43, BASE_UNIX_S, moved); /* the right shape for device 43 */
    memcpy(moved + PAYCODE_PREFIX_DIGITS + PAYCODE_DEVICE_DIGITS,
           code + PAYCODE_PREFIX_DIGITS + PAYCODE_DEVICE_DIGITS, PAYCODE_OTP_DIGITS);
    assert_string_not_equal(code, moved);
    int64_t step = SENTINEL_STEP;
    assert_int_equal(code_verify(secret, moved, BASE_UNIX_S, &step), CF_ERR_INVALID_PAYCODE);
    assert_true(step == SENTINEL_STEP);

    /* A changed one-time digit is refused too. */
    char changed[PAYCODE_DIGITS + 1];
    memcpy(changed, code, sizeof(changed));
    changed[PAYCODE_DIGITS - 1] = changed[PAYCODE_DIGITS - 1] == '9' ? '0' : '9';
    assert_int_equal(code_verify(secret, changed, BASE_UNIX_S, &step), CF_ERR_INVALID_PAYCODE);
    assert_true(step == SENTINEL_STEP);
}

/* Shape ---------------------------------------------------------------------------------------- */

static void test_parse_valid(void **state)
{
    (void)state;
    uint64_t device_number = SENTINEL_DEVICE;
    assert_int_equal(paycode_parse("280000000010000000", PAYCODE_DIGITS, &device_number), CF_OK);
    assert_true(device_number == 1);
    assert_int_equal(paycode_parse("289999999999999999", PAYCODE_DIGITS, &device_number), CF_OK);
    assert_true(device_number == PAYCODE_DEVICE_NUMBER_MAX);
    /* len is honoured: what follows the 18 digits is not read. */
    assert_int_equal(paycode_parse("281234567890000000xyz", PAYCODE_DIGITS, &device_number), CF_OK);
    assert_true(device_number == 123456789);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "28123456789000000",        /* 17 digits */
        "2812345678900000000",      /* 19 digits */
        "27123456789000000",        /* wrong prefix, 17 */
        "271234567890000000",       /* wrong prefix */
        "821234567890000000",       /* prefix reversed */
        "280000000000000000",       /* device 0 */
        "280000000001234567",       /* device 0, any value */
        "28123456789000000a",       /* a letter */
        "28A234567890000000",       /* a letter in the device */
        " 28123456789000000",       /* a space */
        "28123456789000000 ",       /* a trailing space */
        "+28123456789000000",       /* a sign */
        "28123456789-000000",       /* a dash */
        "28123456789\331\24000000", /* a non-ASCII digit (U+0660, octal escapes) */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t device_number = SENTINEL_DEVICE;
        assert_int_equal(paycode_parse(bad[i], strlen(bad[i]), &device_number),
                         CF_ERR_INVALID_PAYCODE);
        assert_true(device_number == SENTINEL_DEVICE);
        int64_t step = SENTINEL_STEP;
        uint8_t secret[PAYCODE_SECRET_BYTES];
        secret_fill(secret);
        assert_int_equal(paycode_verify(secret, bad[i], strlen(bad[i]), BASE_UNIX_S, &step),
                         CF_ERR_INVALID_PAYCODE);
        assert_true(step == SENTINEL_STEP);
    }
    uint64_t device_number = SENTINEL_DEVICE;
    assert_int_equal(paycode_parse(NULL, 0, &device_number), CF_ERR_INVALID_PAYCODE);
    /* An embedded NUL within the 18 bytes. */
    assert_int_equal(paycode_parse("2812345678\0"
                                   "9000000",
                                   PAYCODE_DIGITS, &device_number),
                     CF_ERR_INVALID_PAYCODE);
    assert_true(device_number == SENTINEL_DEVICE);
}

static void test_generate_refuses_device_out_of_range(void **state)
{
    (void)state;
    uint8_t secret[PAYCODE_SECRET_BYTES];
    secret_fill(secret);
    char code[PAYCODE_DIGITS + 1];
    memset(code, 'x', sizeof(code));
    assert_int_equal(paycode_generate(secret, 0, BASE_UNIX_S, code), CF_ERR_INVALID_FIELD);
    assert_int_equal(paycode_generate(secret, PAYCODE_DEVICE_NUMBER_MAX + 1, BASE_UNIX_S, code),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(paycode_generate(secret, UINT64_MAX, BASE_UNIX_S, code), CF_ERR_INVALID_FIELD);
    for (size_t i = 0; i < sizeof(code); i++)
        assert_int_equal(code[i], 'x');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_round_trip_many_times),
        cmocka_unit_test(test_step_reported_is_generation_step),
        cmocka_unit_test(test_window_back),
        cmocka_unit_test(test_window_ahead),
        cmocka_unit_test(test_window_at_epoch),
        cmocka_unit_test(test_wrong_secret_refused),
        cmocka_unit_test(test_wrong_device_number_refused),
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_generate_refuses_device_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
