/*
 * fee.h - fees as basis points plus a fixed part, and their proportional return on refunds.
 *
 * A fee rule charges `bps` basis points of an amount plus `fixed_minor`, raised to `min_minor`,
 * lowered to `max_minor` (0 = no cap), and never more than the amount itself. All values are
 * int64_t minor units of the amount's currency; there is no floating point.
 *
 * Rounding of the basis-point part is HALF UP: amount * bps / 10000 is rounded to the nearest
 * minor unit, and an exact half (x.5) goes up, away from zero (amounts here are always > 0):
 * 0.5 -> 1, 1.5 -> 2, 2.5 -> 3, 2.4999 -> 2. This is deliberately not the half-to-even rounding
 * of money_mul_bps_half_even: a fee is a price, quoted and rounded the way merchants expect.
 * It is the only other rounding in this folder besides the floor/ceiling of fx.h.
 *
 * Refunds return the fee in proportion, cumulatively: after refunds totalling R of a capture C,
 * floor(fee * R / C) of the fee has been returned. Each refund's share is the difference of two
 * such totals, so the shares are never negative and the shares of refunds that add up to the
 * whole capture add up to exactly the fee (the remainder of the floors lands on the last one).
 *
 * Errors: CF_ERR_INVALID_FIELD for a rule out of range, CF_ERR_INVALID_AMOUNT for an amount or
 * refund that is not positive, CF_ERR_REFUND_EXCEEDS when refunds would pass the capture,
 * CF_ERR_CORRUPT when the stored state of earlier refunds is impossible. Every function leaves
 * its outputs untouched on failure. Pure functions: any thread may call them.
 */
#ifndef COFFER_MONEY_FEE_H
#define COFFER_MONEY_FEE_H

#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

/* 10000 bps = 100%: a fee rate above the whole amount is meaningless (and the cap to the
 * amount would hide it), so a rule may not ask for more. */
#define FEE_BPS_MAX 10000

struct fee_rule {
    int64_t bps;         /* basis points of the amount, 0..FEE_BPS_MAX */
    int64_t fixed_minor; /* added after the basis-point part, >= 0 */
    int64_t min_minor;   /* the fee is at least this (unless the amount is smaller), >= 0 */
    int64_t max_minor;   /* the fee is at most this; 0 = no cap; else >= min_minor */
};

/*
 * Checks a rule's ranges: bps in 0..FEE_BPS_MAX, fixed_minor, min_minor and max_minor >= 0, and
 * min_minor <= max_minor when max_minor > 0. CF_ERR_INVALID_FIELD otherwise.
 */
CF_WARN_UNUSED enum cf_err fee_rule_check(const struct fee_rule *r);

/*
 * The fee for amount_minor (> 0, else CF_ERR_INVALID_AMOUNT) under rule r (checked as by
 * fee_rule_check, CF_ERR_INVALID_FIELD): round_half_up(amount * bps / 10000) + fixed_minor,
 * raised to min_minor, lowered to max_minor when that is > 0, and finally lowered to
 * amount_minor. So 0 <= *fee_out <= amount_minor, *fee_out >= min_minor whenever
 * amount_minor >= min_minor, and the fee never decreases as the amount grows. The sum is done in
 * 128 bits, so no rule and amount can overflow.
 */
CF_WARN_UNUSED enum cf_err fee_compute(const struct fee_rule *r, int64_t amount_minor,
                                       int64_t *fee_out);

/*
 * The part of fee_minor to return with a refund of refund_minor on a capture of captured_minor,
 * when refunded_before_minor was refunded earlier and fee_returned_before_minor of the fee was
 * returned with those refunds:
 *
 *   total_after = floor(fee * (refunded_before + refund) / captured)   (exact, 128-bit)
 *   *fee_share_out = total_after - fee_returned_before
 *
 * Errors, checked in this order:
 * - CF_ERR_CORRUPT when the state of earlier refunds is impossible: fee_minor < 0,
 *   captured_minor <= 0, refunded_before_minor outside 0..captured_minor, or
 *   fee_returned_before_minor outside 0..floor(fee * refunded_before / captured) (with this
 *   function's own shares it is always exactly that bound);
 * - CF_ERR_INVALID_AMOUNT when refund_minor <= 0;
 * - CF_ERR_REFUND_EXCEEDS when refunded_before_minor + refund_minor > captured_minor.
 * On success 0 <= *fee_share_out, and fee_returned_before + *fee_share_out <= fee_minor, equal
 * to it when the refunds now add up to the whole capture.
 */
CF_WARN_UNUSED enum cf_err fee_refund_share(int64_t fee_minor, int64_t captured_minor,
                                            int64_t refunded_before_minor, int64_t refund_minor,
                                            int64_t fee_returned_before_minor,
                                            int64_t *fee_share_out);

/*
 * The part of total_minor that goes back with a refund of refund_minor on a capture of
 * captured_minor, when refunded_before_minor is refunded (reserved) already and
 * returned_before_minor of the total went back with those refunds. total is anything a refund
 * returns in proportion: the fee, the FX spread, or the amount the payer paid in another
 * currency. Unlike fee_refund_share it accepts a history in which earlier refunds failed and gave
 * their parts back (the cumulative floors then no longer line up):
 *
 *   share = floor(total * (refunded_before + refund) / captured) - returned_before   (128-bit)
 *
 * clamped to 0..total - returned_before, and exactly total - returned_before when the refunds
 * now reach the whole capture. So the shares never sum past total and sum to it exactly once
 * everything is refunded; without failed refunds they equal fee_refund_share's.
 * Errors: CF_ERR_CORRUPT when total < 0, captured <= 0, refunded_before outside 0..captured or
 * returned_before outside 0..total; CF_ERR_INVALID_AMOUNT when refund_minor <= 0;
 * CF_ERR_REFUND_EXCEEDS when refunded_before + refund > captured. *share_out untouched on error.
 */
CF_WARN_UNUSED enum cf_err fee_prorate_share(int64_t total_minor, int64_t captured_minor,
                                             int64_t refunded_before_minor, int64_t refund_minor,
                                             int64_t returned_before_minor, int64_t *share_out);

#endif
