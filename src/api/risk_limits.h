/*
 * risk_limits.h - a customer's KYC tier limits on a money movement (risk_limits.c).
 *
 * api_pay_op_record calls api_risk_limits for every new operation, before it is scored and
 * recorded. Tiers and their limits are configured (config `kyc_limits`, `kyc_features`; see
 * api/risk_kyc.h and docs/RISK.md, "KYC tiers and limits"); config `kyc_enforce off` skips all
 * of it.
 */
#ifndef COFFER_API_RISK_LIMITS_H
#define COFFER_API_RISK_LIMITS_H

#include "api/api.h"
#include "payments/payments.h"

/*
 * The customer's KYC tier limits on op: the feature open at the payer's tier and the amount
 * within its largest single movement (limit_exceeded, 403, refused now); the daily and monthly
 * outgoing totals, set on op for payments_op_begin, which checks them in the transaction that
 * records it, under a per-payer lock; for a customer receiving (a top-up, a send), receiving
 * open at its tier and its wallet's stored balance plus the credit within its maximum balance
 * (checked now: two credits at once may both pass).
 */
CF_WARN_UNUSED enum cf_err api_risk_limits(struct api *api, struct arena *arena, struct pay_op *op);

#endif
