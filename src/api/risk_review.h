/*
 * risk_review.h - money held for an analyst (risk_review.c).
 *
 * An operation monitoring sends to review (api/risk_monitor.h) is recorded with `review` set.
 *
 * Between wallets (send, payment, conversion, refund): instead of its legs, its payer's money
 * goes into the review clearing account (one per currency) as one pending transfer; for a
 * refund, the merchant's amount less the fee share it gets back. The analyst's decision posts
 * that hold and runs the operation's legs from the clearing account (approve), or voids it
 * (decline). Every step is keyed ("op:<id>:hold", ":post", ":void", ":legs", ":return"), so a
 * decision repeated after a crash finishes what the first began and moves nothing twice. A
 * declined or failed refund gives its shares back to its payment (payments_op_update).
 *
 * Through the gateway (pay_funding.c): a withdrawal's or payout's money is held on its way out
 * as always (wallet or merchant -> payout clearing, no timeout) and a top-up holds nothing; they
 * wait PENDING and the gateway is not asked. A bank account the customer's request named is kept
 * sealed with the operation (payments_op_bank_keep) and forgotten once the operation ends or is
 * declined. Approve runs the gateway step as an operation not under review would (a top-up's
 * hold first, then the charge; 3-D Secure, if the issuer asks, goes to the customer as
 * action_required); decline voids the hold (if any). The same keys as without review
 * ("op:<id>:hold", ":post", ":void", the op id at the gateway). One recorded just before a
 * crash may have no account kept: its approval is 409, it can only be declined.
 *
 * A declined operation is FAILED with risk_blocked. Only a PENDING operation is decided; one
 * still PROCESSING (recorded, not yet held: a crash) answers 409 and records no decision until
 * recovery has held it. A refused approval (409) records none either.
 */
#ifndef COFFER_API_RISK_REVIEW_H
#define COFFER_API_RISK_REVIEW_H

#include "api/api.h"
#include "payments/payments.h"

/* The system account that holds money under review (one per currency, opened on first use). */
#define PAY_SYS_RISK_REVIEW "risk_review"

/* Holds a PROCESSING operation under review: its payer's money into the review clearing as one
 * pending transfer (key "op:<id>:hold"), then PENDING. *op is re-read. An error means the
 * ledger never answered (the operation stays PROCESSING; recovery holds it again). */
CF_WARN_UNUSED enum cf_err api_risk_review_hold(struct api *api, struct arena *arena,
                                                struct pay_op *op);

/* Carries out an analyst's decision on a PENDING top-up, withdrawal or payout under review
 * (pay_funding.c): approve runs its gateway step, decline voids its hold and fails it. *op is
 * re-read; an error means a step never answered (repeating the decision finishes it). */
CF_WARN_UNUSED enum cf_err api_pay_funding_review(struct api *api, struct arena *arena,
                                                  struct pay_op *op, bool approve);
/* Whether that decision can be carried out, checked before it is recorded (a recorded approval
 * is final, so one that could never reach the gateway would leave the money held for good):
 * CF_ERR_CONFLICT for an approval of a PENDING operation whose bank account the request named
 * is not kept (a crash before it was kept; or used already). CF_OK otherwise. Reads only. */
CF_WARN_UNUSED enum cf_err api_pay_funding_review_check(struct api *api, const struct pay_op *op,
                                                        bool approve);

/* POST /v1/risk/reviews/{operation_id}/decision {decision: approve|decline, reason} (risk,
 * admin; Idempotency-Key). */
enum http_action api_risk_review_decision(struct http_request *req, struct http_response *resp);

#endif
