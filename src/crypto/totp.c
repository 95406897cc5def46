/* totp.c - HOTP, TOTP, base32 and otpauth:// URIs over OpenSSL's HMAC-SHA-1; see totp.h. */
#include "crypto/totp.h"

#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "core/hash.h"

#define HOTP_DIGITS_MIN 6
#define HOTP_DIGITS_MAX 8
#define SHA1_BYTES 20
#define BASE32_BITS 5

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* HOTP ----------------------------------------------------------------------------------------- */

static uint32_t pow10_u32(unsigned digits)
{
    uint32_t p = 1;
    for (unsigned i = 0; i < digits; i++)
        p *= 10;
    return p;
}

/* RFC 4226 section 5.3: the low nibble of the last byte picks four bytes; the top bit is
 * cleared so the value is the same signed or unsigned. */
static uint32_t dynamic_truncate(const uint8_t mac[SHA1_BYTES])
{
    unsigned offset = mac[SHA1_BYTES - 1] & 0x0fu;
    CF_ASSERT(offset + 4 <= SHA1_BYTES);
    return ((uint32_t)(mac[offset] & 0x7fu) << 24) | ((uint32_t)mac[offset + 1] << 16) |
           ((uint32_t)mac[offset + 2] << 8) | (uint32_t)mac[offset + 3];
}

uint32_t hotp(const uint8_t *key, size_t key_len, uint64_t counter, unsigned digits)
{
    CF_ASSERT(key != NULL && key_len > 0 && key_len <= INT_MAX);
    CF_ASSERT(digits >= HOTP_DIGITS_MIN && digits <= HOTP_DIGITS_MAX);
    uint8_t msg[8];
    for (int i = 7; i >= 0; i--) {
        msg[i] = (uint8_t)(counter & 0xffu);
        counter >>= 8;
    }
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    CF_ASSERT(HMAC(EVP_sha1(), key, (int)key_len, msg, sizeof(msg), mac, &mac_len) != NULL);
    CF_ASSERT(mac_len == SHA1_BYTES);
    uint32_t value = dynamic_truncate(mac) % pow10_u32(digits);
    hash_wipe(mac, sizeof(mac));
    CF_ASSERT(value < pow10_u32(digits));
    return value;
}

/* TOTP ----------------------------------------------------------------------------------------- */

uint64_t totp_step(int64_t unix_s)
{
    CF_ASSERT(unix_s >= 0);
    return (uint64_t)unix_s / TOTP_STEP_S;
}

uint32_t totp_at(const uint8_t *key, size_t key_len, int64_t unix_s, unsigned digits)
{
    return hotp(key, key_len, totp_step(unix_s), digits);
}

/* true when code is exactly TOTP_DIGITS ASCII digits followed by its NUL. */
static bool code_is_well_formed(const char *code)
{
    size_t n = strnlen(code, TOTP_DIGITS + 1);
    if (n != TOTP_DIGITS)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (code[i] < '0' || code[i] > '9')
            return false;
    }
    return true;
}

/* The zero-padded text of a HOTP value, TOTP_DIGITS characters, no NUL. */
static void code_format(uint32_t value, char out[TOTP_DIGITS])
{
    CF_ASSERT(value < pow10_u32(TOTP_DIGITS));
    for (int i = TOTP_DIGITS - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10);
        value /= 10;
    }
    CF_ASSERT(value == 0);
}

/* Every step of the window is computed and compared, whatever matched before, so the time taken
 * does not depend on which step (if any) matched. When two steps give the same code (a one in a
 * million chance) the later one is reported, the safer choice for replay refusal. */
bool totp_check(const uint8_t *key, size_t key_len, int64_t unix_s, const char *code,
                uint64_t *step_out)
{
    CF_ASSERT(key != NULL && code != NULL && step_out != NULL);
    if (!code_is_well_formed(code))
        return false;
    uint64_t now = totp_step(unix_s);
    uint64_t first = now >= TOTP_DRIFT_STEPS ? now - TOTP_DRIFT_STEPS : 0;
    uint64_t last = now + TOTP_DRIFT_STEPS;
    bool matched = false;
    uint64_t matched_step = 0;
    for (uint64_t step = first; step <= last; step++) {
        char expect[TOTP_DIGITS];
        code_format(hotp(key, key_len, step, TOTP_DIGITS), expect);
        bool same = hash_equal((const uint8_t *)expect, (const uint8_t *)code, TOTP_DIGITS);
        hash_wipe(expect, sizeof(expect));
        if (same) {
            matched = true;
            matched_step = step;
        }
    }
    if (matched)
        *step_out = matched_step;
    CF_ASSERT(!matched || (matched_step >= first && matched_step <= last));
    return matched;
}

/* Base32 --------------------------------------------------------------------------------------- */

/* The text of n bytes without padding: ceil(8n/5) characters. */
static size_t b32_chars(size_t n) { return (n * 8 + BASE32_BITS - 1) / BASE32_BITS; }

/* The header asks for room for the padded length; only the unpadded one plus the NUL is used,
 * and that is what is asserted. */
size_t base32_encode(const uint8_t *in, size_t n, char *out, size_t out_bytes)
{
    CF_ASSERT(in != NULL || n == 0);
    CF_ASSERT(out != NULL && out_bytes > b32_chars(n));
    size_t len = 0;
    uint32_t acc = 0;
    unsigned acc_bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        acc_bits += 8;
        while (acc_bits >= BASE32_BITS) {
            acc_bits -= BASE32_BITS;
            out[len++] = b32_alphabet[(acc >> acc_bits) & 0x1fu];
        }
    }
    if (acc_bits > 0)
        out[len++] = b32_alphabet[(acc << (BASE32_BITS - acc_bits)) & 0x1fu];
    out[len] = '\0';
    CF_ASSERT(len == b32_chars(n) && len < out_bytes);
    return len;
}

/* The 5-bit value of a base32 character (either case), or -1. */
static int b32_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

static bool b32_ignored(char c) { return c == ' ' || c == '='; }

/* Counts the symbols of in; false on a character that is neither a symbol nor ignored. */
static bool b32_count(const char *in, size_t *symbols_out)
{
    size_t symbols = 0;
    for (const char *p = in; *p != '\0'; p++) {
        if (b32_ignored(*p))
            continue;
        if (b32_value(*p) < 0)
            return false;
        symbols++;
    }
    *symbols_out = symbols;
    return true;
}

/* A group of 8 symbols is 5 bytes; a final group of 1, 3 or 6 symbols cannot come from whole
 * bytes (RFC 4648 section 6). */
static bool b32_length_possible(size_t symbols)
{
    size_t tail = symbols % 8;
    return tail != 1 && tail != 3 && tail != 6;
}

/* Only a canonical text is accepted: the unused low bits of the last symbol must be zero, so
 * each secret has exactly one spelling. */
enum cf_err base32_decode(const char *in, uint8_t *out, size_t out_bytes, size_t *len_out)
{
    CF_ASSERT(in != NULL && len_out != NULL && (out != NULL || out_bytes == 0));
    size_t symbols = 0;
    if (!b32_count(in, &symbols) || !b32_length_possible(symbols))
        return CF_ERR_INVALID_FIELD;
    size_t len = symbols * BASE32_BITS / 8;
    if (len > out_bytes)
        return CF_ERR_INVALID_FIELD;
    size_t tail_bits = symbols * BASE32_BITS % 8;
    int last = -1;
    for (const char *p = in; *p != '\0'; p++) {
        if (!b32_ignored(*p))
            last = b32_value(*p);
    }
    if (tail_bits > 0 && (last & ((1 << tail_bits) - 1)) != 0)
        return CF_ERR_INVALID_FIELD;
    size_t written = 0;
    uint32_t acc = 0;
    unsigned acc_bits = 0;
    for (const char *p = in; *p != '\0'; p++) {
        if (b32_ignored(*p))
            continue;
        acc = ((acc << BASE32_BITS) | (uint32_t)b32_value(*p)) & 0xfffu;
        acc_bits += BASE32_BITS;
        if (acc_bits >= 8) {
            acc_bits -= 8;
            out[written++] = (uint8_t)(acc >> acc_bits);
        }
    }
    CF_ASSERT(written == len && acc_bits == tail_bits);
    *len_out = len;
    return CF_OK;
}

/* otpauth:// URI ------------------------------------------------------------------------------- */

/* A bounded text being built; overflow is sticky and checked once at the end. */
struct uri_text {
    char *data;
    size_t len;
    size_t bytes_max;
    bool overflow;
};

static void uri_put(struct uri_text *t, const char *s, size_t n)
{
    if (t->overflow || n >= t->bytes_max - t->len) {
        t->overflow = true;
        return;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void uri_puts(struct uri_text *t, const char *s) { uri_put(t, s, strlen(s)); }

static bool uri_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 percent-encoding: everything but the unreserved characters becomes %XX. */
static void uri_put_escaped(struct uri_text *t, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (uri_unreserved(*p)) {
            uri_put(t, (const char *)p, 1);
            continue;
        }
        char esc[3] = {'%', hex[*p >> 4], hex[*p & 0x0fu]};
        uri_put(t, esc, sizeof(esc));
    }
}

static void uri_put_all(struct uri_text *t, const char *issuer, const char *account,
                        const char *secret_b32)
{
    char tail[64];
    snprintf(tail, sizeof(tail), "&algorithm=SHA1&digits=%d&period=%d", TOTP_DIGITS, TOTP_STEP_S);
    uri_puts(t, "otpauth://totp/");
    uri_put_escaped(t, issuer);
    uri_puts(t, ":");
    uri_put_escaped(t, account);
    uri_puts(t, "?secret=");
    uri_puts(t, secret_b32);
    uri_puts(t, "&issuer=");
    uri_put_escaped(t, issuer);
    uri_puts(t, tail);
}

enum cf_err totp_uri(const char *issuer, const char *account, const uint8_t *key, size_t key_len,
                     char *out, size_t out_bytes)
{
    CF_ASSERT(issuer != NULL && account != NULL && key != NULL && key_len > 0);
    CF_ASSERT(out != NULL && out_bytes > 0);
    if (b32_chars(key_len) >= TOTP_SECRET_B32_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    char secret_b32[TOTP_SECRET_B32_BYTES_MAX];
    base32_encode(key, key_len, secret_b32, sizeof(secret_b32));
    char text[TOTP_URI_BYTES_MAX];
    struct uri_text t = {.data = text, .len = 0, .bytes_max = sizeof(text), .overflow = false};
    text[0] = '\0';
    uri_put_all(&t, issuer, account, secret_b32);
    enum cf_err err = CF_OK;
    if (t.overflow || t.len >= out_bytes)
        err = CF_ERR_INVALID_FIELD;
    else
        memcpy(out, text, t.len + 1);
    CF_ASSERT(err != CF_OK || strlen(out) == t.len);
    hash_wipe(secret_b32, sizeof(secret_b32));
    hash_wipe(text, sizeof(text));
    return err;
}
