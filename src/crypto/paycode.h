/*
 * paycode.h - the customer-presented payment code: a short-lived numeric code that a customer's
 * device shows (as digits and as a QR of the same digits) and a merchant's point of sale submits
 * with the amount. The device needs no network: the code comes from a per-device secret and the
 * time, and the server, which holds the same secret, verifies it.
 *
 * Layout, 18 ASCII digits:
 *
 *   28 DDDDDDDDD OOOOOOO
 *   |  |         one-time value, 7 digits, zero-padded
 *   |  device number, 9 digits, zero-padded: the server's public index of the device, 1..10^9-1
 *   prefix "28" (PAYCODE_PREFIX): tells a point of sale this is a Coffer code
 *
 * One-time value: HOTP-style (RFC 4226 section 5.3) dynamic truncation of
 *
 *   mac = HMAC-SHA-256(key = device secret (32 bytes),
 *                      msg = "coffer.paycode.v1" (17 bytes, no NUL)
 *                            || device number (8 bytes, big-endian)
 *                            || time step (8 bytes, big-endian))
 *   offset = mac[31] & 0x0f
 *   value  = ((mac[offset] & 0x7f) << 24 | mac[offset+1] << 16 | mac[offset+2] << 8
 *             | mac[offset+3]) mod 10^7
 *
 * where the time step is floor(unix_s / PAYCODE_STEP_S). The device number is inside the MAC, so
 * a code cannot be moved to another device's number, and the domain string keeps these MACs
 * apart from any other use of the secret.
 *
 * Lifetime and replay: the server accepts the step of its own clock, PAYCODE_WINDOW_STEPS steps
 * before it (the device's clock may lag, and the code travels from screen to point of sale to
 * server) and PAYCODE_AHEAD_STEPS after it: a code is good for about 60 to 90 seconds. A code is
 * single use only if the caller makes it so: paycode_verify reports the matched step, and the
 * caller must record (device number, step) as used and refuse it again; refusing every step at
 * or before the last one used for the device (as TOTP does) is simpler and also stops an older,
 * still-valid code from being used after a newer one.
 *
 * A 7-digit value leaves a one in 10^7 chance per guess per window step; callers must limit
 * failed attempts per device and per merchant.
 *
 * Errors: CF_ERR_INVALID_PAYCODE for text that is not a well-formed code or does not verify;
 * CF_ERR_INVALID_FIELD for a device number out of range given to paycode_generate. Outputs are
 * untouched on failure. Secrets are the caller's; nothing here keeps them, and every MAC and
 * expected code is wiped after use. Any thread may call these functions.
 */
#ifndef COFFER_CRYPTO_PAYCODE_H
#define COFFER_CRYPTO_PAYCODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

/* Digits of a whole code, and its parts. */
#define PAYCODE_DIGITS 18
#define PAYCODE_PREFIX "28"
#define PAYCODE_PREFIX_DIGITS 2
#define PAYCODE_DEVICE_DIGITS 9
#define PAYCODE_OTP_DIGITS 7

/* Device numbers are 1..PAYCODE_DEVICE_NUMBER_MAX (all 9 digits; 0 is never issued). */
#define PAYCODE_DEVICE_NUMBER_MAX UINT64_C(999999999)

/* The per-device secret: 256 bits, the HMAC-SHA-256 key. */
#define PAYCODE_SECRET_BYTES 32

/* A step lasts 30 s, like TOTP: short enough that a photographed code is soon useless. */
#define PAYCODE_STEP_S 30

/* Steps accepted before the server's own (device clock lag and transit). */
#define PAYCODE_WINDOW_STEPS 2

/* Steps accepted after the server's own (a device clock slightly ahead). */
#define PAYCODE_AHEAD_STEPS 1

/* The MAC's domain separation string (no NUL is MAC'ed). */
#define PAYCODE_DOMAIN "coffer.paycode.v1"

_Static_assert(PAYCODE_PREFIX_DIGITS + PAYCODE_DEVICE_DIGITS + PAYCODE_OTP_DIGITS == PAYCODE_DIGITS,
               "a code is its three parts");

/* The time step of a Unix time (unix_s >= 0, else a caller bug). */
uint64_t paycode_step(int64_t unix_s);

/*
 * Writes the code of device_number at time now_s (>= 0, else a caller bug) under secret into
 * out: PAYCODE_DIGITS digits and a NUL. CF_ERR_INVALID_FIELD when device_number is outside
 * 1..PAYCODE_DEVICE_NUMBER_MAX (out untouched).
 */
CF_WARN_UNUSED enum cf_err paycode_generate(const uint8_t secret[PAYCODE_SECRET_BYTES],
                                            uint64_t device_number, int64_t now_s,
                                            char out[PAYCODE_DIGITS + 1]);

/*
 * Checks only the shape of a code (len bytes of text, no NUL needed): exactly PAYCODE_DIGITS
 * ASCII digits, the PAYCODE_PREFIX, and a device number other than 0. On success
 * *device_number_out is the device number, so the caller can look up the device's secret; the
 * code itself is not verified. CF_ERR_INVALID_PAYCODE otherwise.
 */
CF_WARN_UNUSED enum cf_err paycode_parse(const char *text, size_t len, uint64_t *device_number_out);

/*
 * Verifies a code against the device's secret at the server's time now_s (>= 0, else a caller
 * bug): it must be well-formed (paycode_parse) and its one-time value must equal the one of some
 * step from paycode_step(now_s) - PAYCODE_WINDOW_STEPS to paycode_step(now_s) +
 * PAYCODE_AHEAD_STEPS, for the device number it carries. Every step of the window is computed
 * and compared in constant time, whichever matches; if two steps give the same value the later
 * one is reported. On success *step_out is the matched step, which the caller records as used
 * (see the top of this file). CF_ERR_INVALID_PAYCODE otherwise. The caller must have chosen
 * secret by this code's device number.
 */
CF_WARN_UNUSED enum cf_err paycode_verify(const uint8_t secret[PAYCODE_SECRET_BYTES],
                                          const char *text, size_t len, int64_t now_s,
                                          int64_t *step_out);

#endif
