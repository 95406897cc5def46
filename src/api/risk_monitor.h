/*
 * risk_monitor.h - real-time monitoring of money movements (risk_monitor.c).
 *
 * Every operation a payment route records passes api_pay_op_record, which scores it here
 * BEFORE it is recorded, so nothing has moved when the answer is no:
 *
 *   1. The feature vector (risk/rules.h, struct risk_features; docs/RISK.md, "Features") is
 *      built from the operation, the caller's request (IP address, session as the device) and
 *      what Coffer knows of the customer (account age, payees paid before, KYC tier and
 *      country of residence, failed sign-ins in 24 hours as identity reports them), plus the
 *      velocity counters of the customer, the device, the IP address and the payee in the
 *      operation's currency (risk/velocity.h, in memory).
 *   2. The active rules set (api/risk_rules.h) decides: allow, challenge, review or block, with
 *      the matching rules' ids and reason codes.
 *   3. The decision, its matches and the feature vector are recorded (risk/decisions.h) before
 *      anything else happens: staff read them, and dry runs replay new rules over them.
 *   4. allow: the operation proceeds. challenge: it proceeds only with a step-up bound to it
 *      (the route's action, the amount, the currency and the payee as the customer named it):
 *      step_up_required until the customer answers one; where no one can answer (a scheduled
 *      payout, a charge a merchant makes), a challenge blocks. block: risk_blocked (403) with
 *      the customer's safe message; staff see the rules. review: the operation is recorded
 *      PENDING until an analyst decides (POST /v1/risk/reviews/{operation_id}/decision;
 *      api/risk_review.h). A transfer between wallets (send, payment, conversion) or a refund
 *      has its payer's money held as a pending transfer into the review clearing account
 *      (approve posts it and runs the legs from there, decline voids it); a withdrawal or a
 *      payout has its money held on its way out as usual and a top-up holds nothing, and the
 *      gateway is asked only once approved (a bank account the request named is kept sealed
 *      with the operation until then: payments_op_bank_keep).
 *   5. An operation that goes on is counted in the velocity counters.
 *
 * Refunds are scored like every movement, under the merchant (kind "refund"); the refund route
 * offers no step-up, so a challenge blocks one. Monitoring off (config
 * `monitoring off`) skips all of it. Everything here runs on the API's workers.
 */
#ifndef COFFER_API_RISK_MONITOR_H
#define COFFER_API_RISK_MONITOR_H

#include <stdbool.h>

#include "api/api.h"
#include "payments/payments.h"
#include "api/risk_limits.h"
#include "api/risk_review.h"

/* Velocity keys kept in memory by default (about 3 KB each once used). */
#define API_RISK_VELOCITY_KEYS_DEFAULT 32768

/* Who asks for a money movement, and what step-up the route can still ask for. */
struct api_risk_ctx {
    const struct http_request *req;        /* NULL for the scheduler */
    const char *step_up_action;            /* the route's step-up action; NULL: none can be asked */
    const char *bound_to;                  /* the payee as the customer named it; NULL: op's payee */
    int64_t step_up_amount_minor;          /* what the step-up binds; 0: the operation's amount */
    const struct identity_verification *v; /* the request's verification; NULL or empty: none */
    bool stepped_up;                       /* the route took a step-up for this operation already */
    /* What the route knows already, so scoring need not ask again (zero: ask): */
    bool fresh;         /* the route just found the Idempotency-Key unused (api_pay_op_stored) */
    uint8_t payee_seen; /* API_RISK_PAYEE_* */
    int64_t mcc;        /* the payee merchant's category code */
};
#define API_RISK_PAYEE_ASK 0
#define API_RISK_PAYEE_KNOWN 1
#define API_RISK_PAYEE_NEW 2

/* Opens the velocity counters (keys_max keys) and the review clearing; at start. */
CF_WARN_UNUSED enum cf_err api_risk_monitor_open(struct api *api, size_t velocity_keys_max);
void api_risk_monitor_close(struct api *api);

/* Forgets what the payment path keeps of user_id's KYC details (their home country): called
 * when the customer's details change, so the next movement reads them again. */
void api_risk_monitor_forget(struct api *api, const char *user_id);

/*
 * Scores op (complete, not yet recorded) as described above. CF_OK to go on, with *review_out
 * set when the money must be held for an analyst; CF_ERR_RISK_BLOCKED; a step-up error
 * (step_up_required, invalid_code, ...) for a challenge not answered. Storage errors when the
 * decision could not be recorded (the operation must not go on unscored).
 */
CF_WARN_UNUSED enum cf_err api_risk_score(struct api *api, const struct api_risk_ctx *ctx,
                                          const struct pay_op *op, bool *review_out);

#endif
