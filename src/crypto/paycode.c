/* paycode.c - customer-presented payment codes over libsodium's HMAC-SHA-256; see paycode.h. */
#include "crypto/paycode.h"

#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>

#include "core/hash.h"

/* The MAC'ed message: domain, device number and step, the last two as 8 big-endian bytes. */
#define DOMAIN_BYTES (sizeof(PAYCODE_DOMAIN) - 1)
#define MESSAGE_BYTES (DOMAIN_BYTES + 8 + 8)

/* 10^PAYCODE_OTP_DIGITS: the one-time value is below it. */
#define OTP_MODULUS UINT32_C(10000000)

/* 10^PAYCODE_DEVICE_DIGITS. */
#define DEVICE_MODULUS UINT64_C(1000000000)

_Static_assert(crypto_auth_hmacsha256_BYTES == 32, "HMAC-SHA-256 is 32 bytes");
_Static_assert(crypto_auth_hmacsha256_KEYBYTES == PAYCODE_SECRET_BYTES, "the secret is the key");
_Static_assert(PAYCODE_DEVICE_NUMBER_MAX + 1 == DEVICE_MODULUS, "9 device digits");
_Static_assert(sizeof(PAYCODE_PREFIX) - 1 == PAYCODE_PREFIX_DIGITS, "prefix length");

/* libsodium ------------------------------------------------------------------------------------ */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_start(void)
{
    /* sodium_init fails only without a random source, where nothing here can work. */
    CF_ASSERT(sodium_init() >= 0);
}

/* Initialises libsodium on first use (it picks its SHA-256 implementation there). */
static void sodium_ready(void) { CF_ASSERT(pthread_once(&sodium_once, sodium_start) == 0); }

/* One-time value ------------------------------------------------------------------------------- */

static void put_u64_be(uint8_t *out, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(value & 0xffu);
        value >>= 8;
    }
}

/* RFC 4226 section 5.3 over a 32-byte MAC: the low nibble of the last byte picks four bytes;
 * the top bit is cleared so the value is the same signed or unsigned. */
static uint32_t dynamic_truncate(const uint8_t mac[crypto_auth_hmacsha256_BYTES])
{
    unsigned offset = mac[crypto_auth_hmacsha256_BYTES - 1] & 0x0fu;
    CF_ASSERT(offset + 4 <= crypto_auth_hmacsha256_BYTES);
    return ((uint32_t)(mac[offset] & 0x7fu) << 24) | ((uint32_t)mac[offset + 1] << 16) |
           ((uint32_t)mac[offset + 2] << 8) | (uint32_t)mac[offset + 3];
}

/* The one-time value of a device at a step, 0..OTP_MODULUS-1. */
static uint32_t otp_value(const uint8_t secret[PAYCODE_SECRET_BYTES], uint64_t device_number,
                          uint64_t step)
{
    CF_ASSERT(secret != NULL);
    CF_ASSERT(device_number >= 1 && device_number <= PAYCODE_DEVICE_NUMBER_MAX);
    sodium_ready();
    uint8_t msg[MESSAGE_BYTES];
    memcpy(msg, PAYCODE_DOMAIN, DOMAIN_BYTES);
    put_u64_be(msg + DOMAIN_BYTES, device_number);
    put_u64_be(msg + DOMAIN_BYTES + 8, step);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    CF_ASSERT(crypto_auth_hmacsha256(mac, msg, sizeof(msg), secret) == 0);
    uint32_t value = dynamic_truncate(mac) % OTP_MODULUS;
    hash_wipe(mac, sizeof(mac));
    CF_ASSERT(value < OTP_MODULUS);
    return value;
}

/* Text ----------------------------------------------------------------------------------------- */

/* Writes value as exactly `digits` zero-padded ASCII digits (no NUL). */
static void digits_put(uint64_t value, char *out, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10);
        value /= 10;
    }
    CF_ASSERT(value == 0); /* it fitted */
}

static uint64_t digits_value(const char *text, int digits)
{
    uint64_t value = 0;
    for (int i = 0; i < digits; i++)
        value = value * 10 + (uint64_t)(text[i] - '0');
    return value;
}

uint64_t paycode_step(int64_t unix_s)
{
    CF_ASSERT(unix_s >= 0);
    return (uint64_t)unix_s / PAYCODE_STEP_S;
}

enum cf_err paycode_generate(const uint8_t secret[PAYCODE_SECRET_BYTES], uint64_t device_number,
                             int64_t now_s, char out[PAYCODE_DIGITS + 1])
{
    CF_ASSERT(secret != NULL && out != NULL);
    CF_ASSERT(now_s >= 0);
    if (device_number < 1 || device_number > PAYCODE_DEVICE_NUMBER_MAX)
        return CF_ERR_INVALID_FIELD;
    uint32_t value = otp_value(secret, device_number, paycode_step(now_s));
    memcpy(out, PAYCODE_PREFIX, PAYCODE_PREFIX_DIGITS);
    digits_put(device_number, out + PAYCODE_PREFIX_DIGITS, PAYCODE_DEVICE_DIGITS);
    digits_put(value, out + PAYCODE_PREFIX_DIGITS + PAYCODE_DEVICE_DIGITS, PAYCODE_OTP_DIGITS);
    out[PAYCODE_DIGITS] = '\0';
    CF_ASSERT(strlen(out) == PAYCODE_DIGITS);
    return CF_OK;
}

enum cf_err paycode_parse(const char *text, size_t len, uint64_t *device_number_out)
{
    CF_ASSERT(text != NULL || len == 0);
    CF_ASSERT(device_number_out != NULL);
    if (len != PAYCODE_DIGITS)
        return CF_ERR_INVALID_PAYCODE;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return CF_ERR_INVALID_PAYCODE;
    }
    if (memcmp(text, PAYCODE_PREFIX, PAYCODE_PREFIX_DIGITS) != 0)
        return CF_ERR_INVALID_PAYCODE;
    uint64_t device_number = digits_value(text + PAYCODE_PREFIX_DIGITS, PAYCODE_DEVICE_DIGITS);
    if (device_number == 0)
        return CF_ERR_INVALID_PAYCODE;
    CF_ASSERT(device_number <= PAYCODE_DEVICE_NUMBER_MAX);
    *device_number_out = device_number;
    return CF_OK;
}

/* Every step of the window is computed and compared, whatever matched before, so the time taken
 * does not depend on which step (if any) matched. */
enum cf_err paycode_verify(const uint8_t secret[PAYCODE_SECRET_BYTES], const char *text, size_t len,
                           int64_t now_s, int64_t *step_out)
{
    CF_ASSERT(secret != NULL && step_out != NULL);
    CF_ASSERT(now_s >= 0);
    uint64_t device_number;
    if (paycode_parse(text, len, &device_number) != CF_OK)
        return CF_ERR_INVALID_PAYCODE;
    const char *given = text + PAYCODE_PREFIX_DIGITS + PAYCODE_DEVICE_DIGITS;

    uint64_t now = paycode_step(now_s);
    uint64_t first = now >= PAYCODE_WINDOW_STEPS ? now - PAYCODE_WINDOW_STEPS : 0;
    uint64_t last = now + PAYCODE_AHEAD_STEPS;
    bool matched = false;
    uint64_t matched_step = 0;
    for (uint64_t step = first; step <= last; step++) {
        char expect[PAYCODE_OTP_DIGITS];
        digits_put(otp_value(secret, device_number, step), expect, PAYCODE_OTP_DIGITS);
        bool same = hash_equal((const uint8_t *)expect, (const uint8_t *)given, sizeof(expect));
        hash_wipe(expect, sizeof(expect));
        if (same) {
            matched = true;
            matched_step = step;
        }
    }
    if (!matched)
        return CF_ERR_INVALID_PAYCODE;
    CF_ASSERT(matched_step >= first && matched_step <= last && matched_step <= (uint64_t)INT64_MAX);
    *step_out = (int64_t)matched_step;
    return CF_OK;
}
