/*
 * risk_review.h - money held for an analyst (risk_review.c).
 *
 * An operation monitoring sends to review (api/risk_monitor.h) is recorded with `review` set
 * and, instead of its legs, its payer's money goes into the review clearing account (one per
 * currency) as one pending transfer. The analyst's decision posts that hold and runs the
 * operation's legs from the clearing account (approve), or voids it (decline). Every step is
 * keyed ("op:<id>:hold", ":post", ":void", ":legs", ":return"), so a decision repeated after a
 * crash finishes what the first began and moves nothing twice.
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

/* POST /v1/risk/reviews/{operation_id}/decision {decision: approve|decline, reason} (risk,
 * admin; Idempotency-Key). */
enum http_action api_risk_review_decision(struct http_request *req, struct http_response *resp);

#endif
