/* fee.c - basis-point plus fixed fees, rounded half up, and their return on refunds; see fee.h. */
#include "money/fee.h"

#include <stdbool.h>
#include <stddef.h>

/* Basis points in one whole: 10000 bps = 100%. */
#define BPS_PER_UNIT 10000

_Static_assert(FEE_BPS_MAX == BPS_PER_UNIT, "a fee is at most the whole amount");

enum cf_err fee_rule_check(const struct fee_rule *r)
{
    CF_ASSERT(r != NULL);
    if (r->bps < 0 || r->bps > FEE_BPS_MAX)
        return CF_ERR_INVALID_FIELD;
    if (r->fixed_minor < 0 || r->min_minor < 0 || r->max_minor < 0)
        return CF_ERR_INVALID_FIELD;
    if (r->max_minor > 0 && r->min_minor > r->max_minor)
        return CF_ERR_INVALID_FIELD; /* "at least 50, at most 30" has no answer */
    return CF_OK;
}

/* round_half_up(amount * bps / 10000) for amount > 0 and bps in 0..10000: at most amount. */
static int64_t bps_part_half_up(int64_t amount_minor, int64_t bps)
{
    CF_ASSERT(amount_minor > 0);
    CF_ASSERT(bps >= 0 && bps <= FEE_BPS_MAX);
    /* amount < 2^63 and bps <= 10^4, so the product fits in 128 bits with room. */
    __int128 product = (__int128)amount_minor * bps;
    __int128 part = (product + BPS_PER_UNIT / 2) / BPS_PER_UNIT;
    CF_ASSERT(part >= 0 && part <= amount_minor);
    return (int64_t)part;
}

enum cf_err fee_compute(const struct fee_rule *r, int64_t amount_minor, int64_t *fee_out)
{
    CF_ASSERT(r != NULL && fee_out != NULL);
    enum cf_err err = fee_rule_check(r);
    if (err != CF_OK)
        return err;
    if (amount_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;

    /* Two values below 2^63 cannot overflow 128 bits; the clamps below bring it back. */
    __int128 fee = (__int128)bps_part_half_up(amount_minor, r->bps) + r->fixed_minor;
    if (fee < r->min_minor)
        fee = r->min_minor;
    if (r->max_minor > 0 && fee > r->max_minor)
        fee = r->max_minor;
    if (fee > amount_minor)
        fee = amount_minor;

    CF_ASSERT(fee >= 0 && fee <= amount_minor);
    CF_ASSERT(fee >= r->min_minor || amount_minor < r->min_minor);
    *fee_out = (int64_t)fee;
    return CF_OK;
}

/* floor(fee * refunded / captured) for fee >= 0 and 0 <= refunded <= captured: at most fee. */
static int64_t fee_returned_total(int64_t fee_minor, int64_t refunded_minor, int64_t captured_minor)
{
    CF_ASSERT(fee_minor >= 0 && captured_minor > 0);
    CF_ASSERT(refunded_minor >= 0 && refunded_minor <= captured_minor);
    /* Both factors are below 2^63: the product is exact in 128 bits, and non-negative, so the
     * truncating division is the floor. */
    __int128 total = (__int128)fee_minor * refunded_minor / captured_minor;
    CF_ASSERT(total >= 0 && total <= fee_minor);
    return (int64_t)total;
}

/* true when the earlier refunds could have come from this function. */
static bool refund_state_is_possible(int64_t fee_minor, int64_t captured_minor,
                                     int64_t refunded_before_minor,
                                     int64_t fee_returned_before_minor)
{
    if (fee_minor < 0 || captured_minor <= 0)
        return false;
    if (refunded_before_minor < 0 || refunded_before_minor > captured_minor)
        return false;
    int64_t bound = fee_returned_total(fee_minor, refunded_before_minor, captured_minor);
    return fee_returned_before_minor >= 0 && fee_returned_before_minor <= bound;
}

enum cf_err fee_refund_share(int64_t fee_minor, int64_t captured_minor,
                             int64_t refunded_before_minor, int64_t refund_minor,
                             int64_t fee_returned_before_minor, int64_t *fee_share_out)
{
    CF_ASSERT(fee_share_out != NULL);
    if (!refund_state_is_possible(fee_minor, captured_minor, refunded_before_minor,
                                  fee_returned_before_minor))
        return CF_ERR_CORRUPT;
    if (refund_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    /* refunded_before <= captured, so what is left cannot overflow. */
    if (refund_minor > captured_minor - refunded_before_minor)
        return CF_ERR_REFUND_EXCEEDS;

    int64_t refunded_after_minor = refunded_before_minor + refund_minor;
    int64_t total_after = fee_returned_total(fee_minor, refunded_after_minor, captured_minor);
    int64_t share = total_after - fee_returned_before_minor;

    CF_ASSERT(share >= 0 && share <= fee_minor);
    CF_ASSERT(refunded_after_minor != captured_minor || total_after == fee_minor);
    *fee_share_out = share;
    return CF_OK;
}

enum cf_err fee_prorate_share(int64_t total_minor, int64_t captured_minor,
                              int64_t refunded_before_minor, int64_t refund_minor,
                              int64_t returned_before_minor, int64_t *share_out)
{
    CF_ASSERT(share_out != NULL);
    if (total_minor < 0 || captured_minor <= 0 || refunded_before_minor < 0 ||
        refunded_before_minor > captured_minor || returned_before_minor < 0 ||
        returned_before_minor > total_minor)
        return CF_ERR_CORRUPT;
    if (refund_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    if (refund_minor > captured_minor - refunded_before_minor)
        return CF_ERR_REFUND_EXCEEDS;
    int64_t refunded_after = refunded_before_minor + refund_minor;
    int64_t left = total_minor - returned_before_minor;
    int64_t share = fee_returned_total(total_minor, refunded_after, captured_minor) -
                    returned_before_minor;
    if (refunded_after == captured_minor || share > left)
        share = left;
    if (share < 0)
        share = 0;
    CF_ASSERT(share >= 0 && share <= left);
    *share_out = share;
    return CF_OK;
}
