/*
 * pay_fx.h - exchange rates and currency conversion (pay_fx.c): the operator's rates, a
 * customer's conversion quotes, and conversions between the customer's own wallets.
 *
 * Rates. One mid-market rate per ordered pair in the payments rates table: "USD EUR 0.9213"
 * means 1 USD = 0.9213 EUR (money/fx.h: rate_e9, 9 decimals, no floating point). "EUR USD" is
 * another pair, never derived from its inverse. An admin sets one pair (POST /v1/admin/rates)
 * or loads a rates file (POST /v1/admin/rates/load, the fx_rates_parse format): the whole file
 * is checked, then written in one transaction, so a malformed file changes nothing and its
 * error names the line ("text: line 3"); pairs the file does not name keep their rate. Both
 * write an audit line (rates.set, rates.load). Any signed-in user reads the rates with the time
 * each was set (GET /v1/rates, by base then quote, at most FX_RATES_MAX).
 *
 * Quotes. POST /v1/me/conversions/quote prices {from_currency, to_currency, amount_minor}
 * (both currencies on offer, not the same one) at the current mid rate less the configured
 * spread (api->pay.fx_spread_bps) and stores a quote valid for api->pay.quote_ttl_s. The
 * customer sees amount, fee (always 0: the spread is the price), total, the credit, the
 * customer's rate, the mid rate, the spread in bps and in minor units, and the expiry.
 *
 * Rounding (exact integer arithmetic, in this order):
 *   rate_e9       = mid_rate_e9 * (10000 - spread_bps) / 10000, rounded half to even to
 *                   9 decimals (money_mul_bps_half_even); a rate that rounds to 0 is no_rate.
 *   credit_minor  = fx_convert(amount_minor, rate_e9, no spread): rounded DOWN.
 *   mid_minor     = fx_convert(amount_minor, mid_rate_e9, no spread): rounded DOWN too.
 *   spread_minor  = mid_minor - credit_minor, >= 0 since rate_e9 <= mid_rate_e9 and fx_convert
 *                   never decreases as the rate grows.
 * So the customer receives exactly floor(amount x the rate shown), the house books the spread
 * as revenue in the target currency, and the fraction of a minor unit the mid conversion drops
 * stays in the target currency's FX liquidity account. A credit of 0 (an amount worth less
 * than one target minor unit) is refused (invalid_amount).
 *
 * Conversions. POST /v1/me/conversions {quote_id} (Idempotency-Key) executes exactly the quote
 * or refuses it: quote_expired when it is unknown, another customer's, used, expired, priced
 * for something other than a conversion, or priced under another spread setting. The quote
 * row keeps the MID rate in rate_e9 (the customer's rate and the spread are derived from it as
 * above); its binding is SHA-256("conversion|<user>|<spread_bps>"), so a quote of a send or a
 * payment, or one priced before the spread setting changed, cannot be used. The operation
 * (PAY_KIND_CONVERSION, cnv_...) records:
 *   payer = payee = the customer; payer_account = wallet(from), payee_account = wallet(to)
 *   (opened on first use); amount_minor/currency = the from side; credit_minor/credit_currency
 *   = the to side; fee_minor = 0; rate_e9 = the customer's rate; quote_id; and reference =
 *   "spread_minor=<n>" (the spread in credit_currency minor units), so the legs are a function
 *   of the row alone. api_pay_legs (pay.c) turns it into ONE transfer of three legs under
 *   "op:<id>":
 *     wallet(from)        -> fx_liquidity(from)   amount_minor  "conversion"
 *     fx_liquidity(to)    -> wallet(to)           credit_minor  "conversion_credit"
 *     fx_liquidity(to)    -> fx_revenue(to)       spread_minor  "conversion_spread" (if > 0)
 * All legs apply or none do (insufficient_funds in the from wallet fails the operation and
 * gives the quote back for another try before it expires). The FX liquidity accounts are
 * system accounts without an overdraft floor: they go negative in the currency the house pays
 * out until the operator funds them (a ledger transfer into fx_liquidity:<currency>), and
 * their balances are the house's open currency position. No step-up is asked: the money stays
 * in the customer's own wallets.
 *
 * Payments across currencies. A customer may pay a merchant that settles in B from a wallet in
 * A (pay_currency on POST /v1/me/qr/scan and /v1/me/pay). The merchant's price R (credit_minor,
 * B) is fixed; the customer pays the smallest amount of A that buys it at their rate
 * (api_pay_fx_for_credit):
 *   rate_e9       = as above, from the mid rate A -> B and the spread setting;
 *   amount_minor  = fx_convert_for_target(R, rate_e9): rounded UP, so the merchant is never
 *                   short and the customer pays at most one minor unit of A over the exact price;
 *   spread_minor  = fx_convert(amount_minor, mid_rate_e9) - R (in B), >= 0: the spread and the
 *                   rounding, both the house's.
 * The scan's quote keeps the mid rate (binding SHA-256 of "payment|merchant|code|R|B|A|spread
 * setting"), so paying with it pays exactly the price shown or nothing. Without a quote the
 * current rate applies. The operation (pay_...) records amount/currency = the customer's side,
 * credit_minor/credit_currency = the merchant's, rate_e9 = the customer's rate, spread_minor,
 * and the merchant's fee in B. One transfer of up to four legs under "op:<id>":
 *   wallet(A)           -> fx_liquidity(A)      amount_minor  "payment_fx"
 *   fx_liquidity(B)     -> merchant(B)          credit_minor  "payment"
 *   fx_liquidity(B)     -> fx_revenue(B)        spread_minor  "payment_spread" (if > 0)
 *   merchant(B)         -> fee_revenue(B)       fee_minor     "payment_fee" (if > 0)
 * Refund of such a payment. The merchant refunds r in B (at most R less earlier refunds); the
 * customer gets A back at the payment's own rate, not today's: the refunds' A amounts are
 * cumulative floors of amount_minor x refunded / R (money/fee.h, fee_prorate_share), so partial
 * refunds that add up to R give back exactly what was paid; the spread and the fee come back the
 * same way. The house carries the exchange risk between payment and refund. Legs:
 *   fee_revenue(B)      -> merchant(B)          fee share     "refund_fee" (if > 0)
 *   merchant(B)         -> fx_liquidity(B)      r             "refund"
 *   fx_revenue(B)       -> fx_liquidity(B)      spread share  "refund_spread" (if > 0)
 *   fx_liquidity(A)     -> wallet(A)            A share       "refund_fx"
 *
 * Errors: the registry's codes (unknown_currency, same_account, no_rate, invalid_amount,
 * quote_expired, insufficient_funds, idempotency_key_reused, ...) with a detail naming the
 * field. Handlers run on the API's worker pool (api_offload).
 */
#ifndef COFFER_API_PAY_FX_H
#define COFFER_API_PAY_FX_H

#include "api/pay.h"

/* The reference of a conversion operation: this prefix and the spread in decimal digits. */
#define PAY_FX_SPREAD_REF "spread_minor="

/* The price of a payment of credit_minor (> 0) in `to` from a wallet in `from` at mid_rate_e9
 * less spread_bps ("Payments across currencies" above). Outputs untouched on error:
 * CF_ERR_NO_RATE when the customer's rate rounds to 0, CF_ERR_AMOUNT_OVERFLOW. */
struct api_fx_payment {
    int64_t rate_e9;      /* the customer's */
    int64_t debit_minor;  /* of `from`, rounded up */
    int64_t spread_minor; /* of `to` */
};
CF_WARN_UNUSED enum cf_err api_pay_fx_for_credit(const char *from, const char *to,
                                                 int64_t credit_minor, int64_t mid_rate_e9,
                                                 int64_t spread_bps, struct api_fx_payment *out);

/* POST /v1/admin/rates {base, quote, rate} (admin). */
enum http_action api_admin_rate_set(struct http_request *req, struct http_response *resp);
/* POST /v1/admin/rates/load {text} (admin): a whole rates file, or nothing. */
enum http_action api_admin_rates_load(struct http_request *req, struct http_response *resp);
/* GET /v1/rates (any signed-in user). */
enum http_action api_rates_list(struct http_request *req, struct http_response *resp);
/* POST /v1/me/conversions/quote {from_currency, to_currency, amount_minor} (customer). */
enum http_action api_me_conversion_quote(struct http_request *req, struct http_response *resp);
/* POST /v1/me/conversions {quote_id} with an Idempotency-Key (customer). */
enum http_action api_me_conversion(struct http_request *req, struct http_response *resp);

#endif
