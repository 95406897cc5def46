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
 * open at its tier and its maximum balance. The maximum balance is checked now against the
 * wallet's stored balance plus the credit (a quick answer that two credits at once may both
 * pass), and set on op as op->payee_max_balance_minor, which the operation's row keeps and its
 * credit legs carry as a ceiling: the ledger is the atomic check, refusing in the same step as
 * the credit (limit_exceeded, 403; ledger.h, I6), so of two credits at once only those that fit
 * pass. Every other operation, and every one when kyc_enforce is off, gets -1 (no ceiling).
 * Refunds are never capped: they give back what the customer had.
 */
CF_WARN_UNUSED enum cf_err api_risk_limits(struct api *api, struct arena *arena, struct pay_op *op);

#endif
