/*
 * money.h - amounts as int64_t minor units, and checked arithmetic on them.
 *
 * An amount is a count of a currency's minor units (cents for USD, yen for JPY, fils/1000 for
 * KWD). There is no floating point anywhere in this module or its callers' money paths. Every
 * operation that can overflow returns an error and leaves *out untouched.
 *
 * Errors: CF_ERR_AMOUNT_OVERFLOW when a result leaves int64_t, CF_ERR_INVALID_AMOUNT for text
 * that is not a valid amount of the given scale.
 */
#ifndef COFFER_MONEY_MONEY_H
#define COFFER_MONEY_MONEY_H

#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

/* *out = a + b, or CF_ERR_AMOUNT_OVERFLOW. */
CF_WARN_UNUSED enum cf_err money_add(int64_t a, int64_t b, int64_t *out);

/* *out = a - b, or CF_ERR_AMOUNT_OVERFLOW. */
CF_WARN_UNUSED enum cf_err money_sub(int64_t a, int64_t b, int64_t *out);

/*
 * *out = amount * bps / 10000 rounded half to even (fees in basis points), or overflow. The
 * product is exact (128-bit); rounding is symmetric about zero: 0.5 -> 0, 1.5 -> 2, -0.5 -> 0,
 * -1.5 -> -2. Any bps is accepted, negative included.
 */
CF_WARN_UNUSED enum cf_err money_mul_bps_half_even(int64_t amount, int64_t bps, int64_t *out);

/* The largest scale (minor-unit digits) any currency or asset may have. */
#define MONEY_SCALE_MAX 4

/*
 * Parses a decimal amount in major units ("12.34", "-0.5", "1000") at the given scale (number
 * of minor-unit digits, 0..MONEY_SCALE_MAX; anything else is a caller bug and aborts) into minor
 * units. At most `scale` fraction digits; no exponent, no spaces, no leading '+', no thousands
 * separators. len is the text's length (no NUL needed).
 *
 * Grammar: ['-'] ("0" | [1-9][0-9]*) ['.' [0-9]{1,scale}]. So "0", "0.5", "-0.05" and "12.3"
 * (= 1230 at scale 2) parse; "", "-", ".", ".5", "1.", "007", "1.005" at scale 2, and any '.'
 * at scale 0 are CF_ERR_INVALID_AMOUNT. "-0" parses as 0. Malformed text is reported as
 * CF_ERR_INVALID_AMOUNT even when it is also huge; well-formed text whose value leaves int64_t
 * is CF_ERR_AMOUNT_OVERFLOW. INT64_MIN minor units parse exactly.
 */
CF_WARN_UNUSED enum cf_err money_parse(const char *text, size_t len, int scale, int64_t *out);

/*
 * Formats minor units at a scale into buf ("1234" at scale 2 -> "12.34"). Returns the length
 * written (without NUL), or -1 when buf is too small (buf is then left untouched). 32 bytes
 * always suffice. The output always has exactly `scale` fraction digits (none and no '.' at
 * scale 0), a '-' only for negative amounts, and parses back to amount_minor at the same scale.
 */
int money_format(int64_t amount_minor, int scale, char *buf, size_t buf_bytes);

#endif
