/*
 * totp.h - one-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), and their secrets.
 *
 * HMAC-SHA-1 (OpenSSL), 6 digits, 30-second steps: what every authenticator app accepts.
 * Secrets are 20 random bytes, shown to people in RFC 4648 base32 without padding, and
 * enrolled through an otpauth:// URI (the Key Uri Format of authenticator apps).
 *
 * totp_check accepts the current step and one step either side (clock drift) and tells which
 * step matched, so the caller can refuse a step at or before the last one used (no replay).
 */
#ifndef COFFER_CRYPTO_TOTP_H
#define COFFER_CRYPTO_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

#define TOTP_SECRET_BYTES 20
#define TOTP_DIGITS 6
#define TOTP_STEP_S 30
#define TOTP_DRIFT_STEPS 1
/* base32 of 20 bytes is 32 characters; room for longer secrets in tests (RFC 6238 uses 20, 32
 * and 64 byte keys, but only SHA-1 is supported here). */
#define TOTP_SECRET_B32_BYTES_MAX 104
#define TOTP_URI_BYTES_MAX 512

/* HOTP value (0..999999 for 6 digits) of key at counter. digits in 6..8. */
uint32_t hotp(const uint8_t *key, size_t key_len, uint64_t counter, unsigned digits);

/* The TOTP step of a Unix time. */
uint64_t totp_step(int64_t unix_s);

/* TOTP value at unix_s. */
uint32_t totp_at(const uint8_t *key, size_t key_len, int64_t unix_s, unsigned digits);

/* Checks a code given as text ("012345": exactly TOTP_DIGITS ASCII digits, else false) against
 * the steps around unix_s; on a match *step_out gets the matching step. Constant-time compare of
 * the digits. */
bool totp_check(const uint8_t *key, size_t key_len, int64_t unix_s, const char *code,
                uint64_t *step_out);

/* RFC 4648 base32 (A-Z2-7), no padding. encode: out must hold 8*ceil(n/5)+1 bytes; returns
 * length. decode accepts upper or lower case, ignores spaces and '=' padding; CF_ERR_INVALID_FIELD
 * on any other character or when the output would exceed out_bytes. */
size_t base32_encode(const uint8_t *in, size_t n, char *out, size_t out_bytes);
CF_WARN_UNUSED enum cf_err base32_decode(const char *in, uint8_t *out, size_t out_bytes,
                                         size_t *len_out);

/* otpauth://totp/ISSUER:ACCOUNT?secret=B32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
 * with ISSUER and ACCOUNT percent-encoded. CF_ERR_INVALID_FIELD when it would not fit. */
CF_WARN_UNUSED enum cf_err totp_uri(const char *issuer, const char *account, const uint8_t *key,
                                    size_t key_len, char *out, size_t out_bytes);

#endif
