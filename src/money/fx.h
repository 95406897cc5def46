/*
 * fx.h - exchange rates as scaled integers, currency conversion, and the rates table text.
 *
 * A rate is an int64_t `rate_e9`: one major unit of the base currency is worth
 * rate_e9 / 10^FX_RATE_SCALE major units of the quote currency ("USD EUR 0.9213" is
 * rate_e9 = 921300000). Valid rates are 1 (0.000000001) to FX_RATE_E9_MAX (1000000000.0).
 * Amounts are int64_t minor units at their currency's scale (currency.h); there is no floating
 * point: every product is exact in 128 bits.
 *
 * Rounding: conversion ROUNDS DOWN. fx_convert pays the customer
 *   floor(amount_minor * rate * (10000 - spread_bps) / 10000, rescaled from from_scale to
 *         to_scale)
 * and the fraction of a minor unit it drops stays with the house, as does the spread. Its
 * inverse, fx_convert_for_target, ROUNDS UP: it gives the smallest source amount whose
 * conversion reaches the target, so the payer is debited at most one source minor unit's worth
 * more than the exact price, never less. These floors and ceilings are the module's only
 * roundings besides money_mul_bps_half_even and the fee rounding of fee.h.
 *
 * Errors: CF_ERR_INVALID_FIELD for a malformed or out-of-range rate or spread or rates table
 * line, CF_ERR_UNKNOWN_CURRENCY for an unknown code in the rates table, CF_ERR_INVALID_AMOUNT for
 * a non-positive amount, CF_ERR_AMOUNT_OVERFLOW when a result leaves int64_t. Every function
 * leaves its outputs untouched on failure (the table loader's bad-line output excepted, which is
 * written only on failure). A scale outside 0..MONEY_SCALE_MAX is a caller bug and aborts.
 * Pure functions over caller storage: any thread may call them, and currency_find's table must
 * be settled (assets registered) before fx_rates_parse runs.
 */
#ifndef COFFER_MONEY_FX_H
#define COFFER_MONEY_FX_H

#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/limits.h"

/* Fraction digits of a rate: 9 keeps the precision of any published rate (ECB quotes 4 to 6
 * significant digits; crypto assets need more) with room left in int64_t. */
#define FX_RATE_SCALE 9

/* rate_e9 of a rate of exactly 1. */
#define FX_RATE_E9_ONE INT64_C(1000000000)

/* The largest rate, 10^9 quote units per base unit (rate_e9 = 10^18): above every real pair
 * (the weakest currencies trade near 10^5 per USD), and below INT64_MAX. */
#define FX_RATE_E9_MAX INT64_C(1000000000000000000)

/* A spread above 50% is not an exchange, it is a mistake in the configuration. */
#define FX_SPREAD_BPS_MAX 5000

/* Pairs in one rates table: every ISO currency against a few bases, with room. */
#define FX_RATES_MAX 256

/* The text of a rate: 10 integer digits, '.', 9 fraction digits and the NUL fit in 21. */
#define FX_RATE_TEXT_BYTES_MAX 32

/*
 * Parses a rate in decimal text ("1.0845", "157.25", "0.000000001", "1000000000"); len is the
 * text's length (no NUL needed). Grammar: ("0" | [1-9][0-9]*) ['.' [0-9]{1,9}]: no sign, no
 * exponent, no spaces, no leading zeros, no bare or trailing '.', at most FX_RATE_SCALE fraction
 * digits (trailing zeros within them are fine: "1.50" is 1500000000). The value must be in
 * 1..FX_RATE_E9_MAX (so "0" and "0.0" are refused). CF_ERR_INVALID_FIELD for anything else.
 */
CF_WARN_UNUSED enum cf_err fx_rate_parse(const char *text, size_t len, int64_t *rate_e9_out);

/*
 * Writes rate_e9 (1..FX_RATE_E9_MAX, else a caller bug) in its shortest text: the integer part,
 * then '.' and the fraction digits without trailing zeros, and no '.' at all when the fraction is
 * zero: 921300000 -> "0.9213", 157250000000 -> "157.25", FX_RATE_E9_ONE -> "1". fx_rate_parse
 * reads it back to rate_e9. Returns the length written (without NUL), or -1 when buf is too small
 * (buf is then left untouched); FX_RATE_TEXT_BYTES_MAX bytes always suffice.
 */
int fx_rate_format(int64_t rate_e9, char *buf, size_t bytes);

/*
 * Converts amount_minor (> 0, else CF_ERR_INVALID_AMOUNT) of a currency with from_scale
 * minor-unit digits into a currency with to_scale digits at rate_e9 (1..FX_RATE_E9_MAX) less a
 * spread of spread_bps (0..FX_SPREAD_BPS_MAX); a bad rate or spread is CF_ERR_INVALID_FIELD:
 *
 *   *out_minor = floor(amount * rate_e9 * (10000 - spread_bps) * 10^to_scale
 *                      / (10^9 * 10000 * 10^from_scale))
 *
 * computed exactly (CF_ERR_AMOUNT_OVERFLOW when the result leaves int64_t). Rounded down: the
 * customer receives the floor, the house keeps the fraction. The result may be 0 for an amount
 * worth less than one target minor unit; a caller that moves money must refuse that. With
 * spread 0, rate FX_RATE_E9_ONE and equal scales the result is amount_minor. The result never
 * decreases as the amount or the rate grows, and never increases as the spread grows.
 */
CF_WARN_UNUSED enum cf_err fx_convert(int64_t amount_minor, int from_scale, int to_scale,
                                      int64_t rate_e9, int64_t spread_bps, int64_t *out_minor);

/*
 * The smallest source amount, in from_scale minor units, whose fx_convert (same scales, rate and
 * spread) is at least target_minor (> 0, else CF_ERR_INVALID_AMOUNT): what to debit a payer so
 * the payee receives target_minor. Rounded up: fx_convert(*source_out) >= target_minor and
 * fx_convert(*source_out - 1) < target_minor (taking fx_convert(0) as 0). It can exceed the
 * target exactly when one source minor unit is worth more than one target minor unit.
 * CF_ERR_INVALID_FIELD for a bad rate or spread; CF_ERR_AMOUNT_OVERFLOW when the source or its
 * conversion leaves int64_t.
 */
CF_WARN_UNUSED enum cf_err fx_convert_for_target(int64_t target_minor, int from_scale, int to_scale,
                                                 int64_t rate_e9, int64_t spread_bps,
                                                 int64_t *source_out);

/* One row of a rates table: 1 base = rate_e9 / 10^9 quote. Codes are NUL-terminated. */
struct fx_rate {
    char base[MONEY_CODE_BYTES_MAX + 1];
    char quote[MONEY_CODE_BYTES_MAX + 1];
    int64_t rate_e9;
};

/*
 * Parses a rates table: one pair per line, "BASE QUOTE RATE" ("USD EUR 0.9213"), fields
 * separated by one or more spaces or tabs, blanks allowed around them, lines ended by "\n" or
 * "\r\n" (the last one may be unterminated). A '#' starts a comment to the end of its line; lines
 * that are empty once comments and blanks are dropped are skipped. Each code must be known to
 * currency_find (ISO or a registered asset), base and quote must differ, RATE is read by
 * fx_rate_parse, and each (base, quote) pair may appear once ("USD EUR" and "EUR USD" are two
 * pairs: the inverse is not derived, since spreads make it inexact). At most min(cap,
 * FX_RATES_MAX) pairs. len is the text's length (no NUL needed; a NUL byte is refused).
 *
 * On success out[0..*n_out) holds the pairs in text order and *bad_line_out is untouched. On
 * failure out and *n_out are untouched and *bad_line_out is the 1-based number of the offending
 * line; the error is CF_ERR_UNKNOWN_CURRENCY for an unknown code, CF_ERR_INVALID_FIELD for
 * anything else (a wrong field count, a bad rate, base == quote, a repeated pair, one pair too
 * many).
 */
CF_WARN_UNUSED enum cf_err fx_rates_parse(const char *text, size_t len, struct fx_rate *out,
                                          size_t cap, size_t *n_out, size_t *bad_line_out);

/* The row of rates[0..n) for base -> quote (exact, case-sensitive codes), or NULL. */
const struct fx_rate *fx_rates_find(const struct fx_rate *rates, size_t n, const char *base,
                                    const char *quote);

#endif
