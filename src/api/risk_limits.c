/*
 * risk_limits.c - a customer's KYC tier limits on a money movement (risk_limits.h has the
 * contract).
 *
 * The maximum balance is checked twice: here against the stored balance, for a quick answer
 * before anything is recorded, and by the ledger, atomically with the credit, from the ceiling
 * this file sets on the operation (op->payee_max_balance_minor; ledger.h, I6). Only the second
 * holds when credits race.
 */
#include "api/risk_limits.h"

#include <string.h>
#include <time.h>

#include "api/pay.h"
#include "api/risk_kyc.h"
#include "core/clock.h"
#include "ledger/ledger.h"

/* The KYC feature a customer uses by paying out with kind; NULL for what is not tiered. */
static const char *kyc_feature_out(uint8_t kind)
{
    switch (kind) {
    case PAY_KIND_WITHDRAWAL:
        return "withdrawal";
    case PAY_KIND_SEND:
        return "send";
    case PAY_KIND_PAYMENT:
    case PAY_KIND_HOLD:
        return "payment";
    case PAY_KIND_CONVERSION:
        return "conversion";
    default:
        return NULL;
    }
}

/* The quick answer: the payee wallet's stored balance plus credit within max_balance. Two
 * credits at once may both pass it; the ledger's ceiling on the credit is the atomic check. */
static enum cf_err balance_room(struct api *api, struct arena *arena, uint64_t account_id,
                                int64_t credit_minor, int64_t max_balance_minor)
{
    if (max_balance_minor < 0 || account_id == 0)
        return CF_OK;
    CF_ASSERT(arena != NULL); /* customers receive through requests, which have one */
    struct store_reader *r = NULL;
    struct store_account_row row;
    enum cf_err err = api->store->ops->r_open(api->store, &r);
    if (err != CF_OK)
        return err;
    err = api->store->ops->r_account_get(r, account_id, &row, arena);
    api->store->ops->r_close(r);
    if (err != CF_OK)
        return err == CF_ERR_NOT_FOUND ? CF_OK : err; /* opened by this operation: empty */
    int64_t balance = ledger_account_balance(&row.account);
    return balance > max_balance_minor - credit_minor ? CF_ERR_LIMIT_EXCEEDED : CF_OK;
}

/* The receiving customer's tier: receiving open, and room under its maximum balance, which
 * becomes the ceiling of the operation's credit. */
static enum cf_err limits_incoming(struct api *api, struct arena *arena, struct pay_op *op)
{
    bool receives = strncmp(op->payee, "usr_", 4) == 0 && strcmp(op->payee, op->payer) != 0 &&
                    op->kind != PAY_KIND_REFUND;
    if (!receives)
        return CF_OK;
    int tier = 0;
    struct risk_kyc_limit l;
    const char *feature = op->kind == PAY_KIND_TOPUP ? "topup" : "receive";
    enum cf_err err = api_kyc_check(api, op->payee, feature, 0, op->credit_currency, &tier, &l);
    if (err == CF_ERR_FORBIDDEN)
        return CF_ERR_LIMIT_EXCEEDED;
    if (err != CF_OK)
        return err;
    err = balance_room(api, arena, op->payee_account, op->credit_minor, l.max_balance_minor);
    if (err == CF_OK && l.max_balance_minor >= 0)
        op->payee_max_balance_minor = l.max_balance_minor;
    CF_ASSERT(op->payee_max_balance_minor >= -1);
    return err;
}

/* The UTC day and month now_us falls in, as their first microseconds. */
static void period_starts(int64_t now_us, int64_t *day_us, int64_t *month_us)
{
    time_t t = (time_t)(now_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    int64_t day_s = (int64_t)t - tm.tm_hour * 3600 - tm.tm_min * 60 - tm.tm_sec;
    *day_us = day_s * 1000000;
    *month_us = (day_s - (int64_t)(tm.tm_mday - 1) * 86400) * 1000000;
}

enum cf_err api_risk_limits(struct api *api, struct arena *arena, struct pay_op *op)
{
    CF_ASSERT(api != NULL && op != NULL);
    op->payee_max_balance_minor = -1; /* no ceiling unless a capped customer receives */
    if (!api->kyc_enforce || api->kyc == NULL)
        return CF_OK;
    const char *feature = kyc_feature_out(op->kind);
    if (feature != NULL && strncmp(op->payer, "usr_", 4) == 0) {
        int tier = 0;
        struct risk_kyc_limit l;
        enum cf_err err =
            api_kyc_check(api, op->payer, feature, op->amount_minor, op->currency, &tier, &l);
        if (err == CF_ERR_FORBIDDEN)
            return CF_ERR_LIMIT_EXCEEDED;
        if (err != CF_OK)
            return err;
        if (op->kind != PAY_KIND_CONVERSION) { /* the money stays the customer's */
            op->limits_on = true;
            op->daily_out_minor = l.daily_out_minor;
            op->monthly_out_minor = l.monthly_out_minor;
            period_starts(cf_clock_now_us(&cf_clock_real), &op->day_start_us,
                          &op->month_start_us);
        }
    }
    return limits_incoming(api, arena, op);
}

