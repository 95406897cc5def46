/*
 * risk_review.c - money held for an analyst: the review hold a scored operation gets, and the
 * analyst's decision that posts or voids it (risk_review.h has the contract).
 */
#include "api/risk_review.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/pay.h"
#include "core/clock.h"
#include "core/log.h"
#include "money/money.h"
#include "risk/decisions.h"

/* Review holds ---------------------------------------------------------------------------------- */

/* What the payer pays in all: the legs out of its account less those into it (a send's amount
 * and fee; a refund's amount less the fee share it gets back). Run from the review clearing, the
 * same legs then leave it empty. 0 when nothing leaves (a refund whose fee share is all of it). */
static enum cf_err payer_total(struct api *api, struct arena *arena, const struct pay_op *op,
                               int64_t *total_out)
{
    struct ledger_leg legs[API_PAY_LEGS_MAX];
    size_t n = 0;
    int64_t total = 0;
    enum cf_err err = api_pay_legs(api, arena, op, legs, &n);
    for (size_t i = 0; i < n && err == CF_OK; i++) {
        if (legs[i].debit_id == op->payer_account)
            err = money_add(total, legs[i].amount, &total);
        else if (legs[i].credit_id == op->payer_account)
            err = money_sub(total, legs[i].amount, &total);
    }
    if (err == CF_OK && (total < 0 || (total == 0 && op->kind != PAY_KIND_REFUND)))
        err = CF_ERR_INTERNAL;
    if (err == CF_OK)
        *total_out = total;
    return err;
}

/* Submits a keyed step of op and answers the ledger's refusal in *refused; *seq_out gets the
 * journal entry the answer names (resolve: a post's or void's). */
static enum cf_err step_submit(struct api *api, struct arena *arena, struct writer_cmd *cmd,
                               bool resolve, enum cf_err *refused, uint64_t *seq_out)
{
    enum cf_err err = api_submit_wait(api, cmd, arena);
    if (err != CF_OK)
        return err;
    *refused = api_pay_step_outcome(cmd);
    *seq_out = *refused == CF_OK ? api_pay_entry_seq(cmd, resolve) : 0;
    return CF_OK;
}

enum cf_err api_risk_review_hold(struct api *api, struct arena *arena, struct pay_op *op)
{
    CF_ASSERT(op->review && op->status == PAY_STATUS_PROCESSING);
    uint64_t review_acct = 0, seq = 0;
    int64_t total = 0;
    enum cf_err refused = CF_OK;
    enum cf_err err = payer_total(api, arena, op, &total);
    if (err == CF_OK)
        err = api_pay_system(api, arena, PAY_SYS_RISK_REVIEW, op->currency, &review_acct);
    struct writer_cmd *cmd = err == CF_OK ? api_pay_step_cmd(arena, op, "hold") : NULL;
    struct ledger_leg *leg = arena_calloc(arena, 1, sizeof(*leg));
    if (err == CF_OK && (cmd == NULL || leg == NULL))
        err = CF_ERR_NOMEM;
    if (err != CF_OK)
        return err;
    api_pay_leg_set(leg, op->payer_account, review_acct, total, op->currency, "risk_review");
    leg->pending = true;
    cmd->type = WRITER_CMD_TRANSFER;
    cmd->legs = leg;
    cmd->legs_n = 1;
    if (total == 0) /* nothing of the payer's to hold (a refund): refused like a block */
        refused = CF_ERR_RISK_BLOCKED;
    else if ((err = step_submit(api, arena, cmd, false, &refused, &seq)) != CF_OK)
        return err; /* never ran: stays PROCESSING */
    struct pay_op_update u = {.status = PAY_STATUS_PENDING, .hold_seq = seq};
    if (refused != CF_OK) {
        u.status = PAY_STATUS_FAILED;
        u.error = cf_err_code(refused);
    }
    err = payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PROCESSING, &u,
                             cf_clock_now_us(&cf_clock_real));
    if (err == CF_ERR_CONFLICT)
        err = CF_OK;
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    return err;
}

/* An analyst's decision ------------------------------------------------------------------------ */

/* Posts or voids op's review hold ("op:<id>:post" / ":void"). */
static enum cf_err hold_resolve(struct api *api, struct arena *arena, const struct pay_op *op,
                                bool post, enum cf_err *refused)
{
    struct writer_cmd *cmd = api_pay_step_cmd(arena, op, post ? "post" : "void");
    uint64_t seq = 0;
    if (cmd == NULL)
        return CF_ERR_NOMEM;
    cmd->type = post ? WRITER_CMD_POST : WRITER_CMD_VOID;
    cmd->target_id = op->hold_seq;
    return step_submit(api, arena, cmd, true, refused, &seq);
}

/* Runs op's legs from the review clearing (where the posted hold put the payer's money) under
 * "op:<id>"; a refusal sends the money back to the payer ("op:<id>:return"). */
static enum cf_err legs_from_review(struct api *api, struct arena *arena, const struct pay_op *op,
                                    struct pay_op_update *u)
{
    struct pay_op from = *op;
    struct ledger_leg *legs = arena_calloc(arena, API_PAY_LEGS_MAX, sizeof(*legs));
    size_t n = 0;
    int64_t total = 0;
    enum cf_err err = legs == NULL ? CF_ERR_NOMEM : payer_total(api, arena, op, &total);
    if (err == CF_OK)
        err = api_pay_system(api, arena, PAY_SYS_RISK_REVIEW, op->currency, &from.payer_account);
    if (err == CF_OK)
        err = api_pay_legs(api, arena, &from, legs, &n);
    struct writer_cmd *cmd = err == CF_OK ? api_pay_step_cmd(arena, op, "legs") : NULL;
    if (err == CF_OK && cmd == NULL)
        err = CF_ERR_NOMEM;
    if (err != CF_OK)
        return err;
    cmd->type = WRITER_CMD_TRANSFER;
    cmd->legs = legs;
    cmd->legs_n = n;
    cmd->variant = API_VARIANT_LEGS;
    enum cf_err refused = CF_OK;
    uint64_t seq = 0;
    if ((err = step_submit(api, arena, cmd, false, &refused, &seq)) != CF_OK)
        return err;
    u->status = refused == CF_OK ? PAY_STATUS_COMPLETED : PAY_STATUS_FAILED;
    u->ledger_seq = refused == CF_OK ? api_pay_group_seq(cmd) : 0;
    u->error = refused == CF_OK ? NULL : cf_err_code(refused);
    if (refused == CF_OK)
        return CF_OK;
    struct writer_cmd *back = api_pay_step_cmd(arena, op, "return");
    struct ledger_leg *leg = arena_calloc(arena, 1, sizeof(*leg));
    if (back == NULL || leg == NULL)
        return CF_ERR_NOMEM;
    api_pay_leg_set(leg, from.payer_account, op->payer_account, total, op->currency,
                    "risk_review_return");
    back->type = WRITER_CMD_TRANSFER;
    back->legs = leg;
    back->legs_n = 1;
    if ((err = step_submit(api, arena, back, false, &refused, &seq)) == CF_OK && refused != CF_OK)
        err = refused; /* cannot happen: the clearing holds exactly this money */
    return err;
}

/* Carries out an analyst's decision on a PENDING operation under review. Every step is keyed,
 * so repeating the request after a crash finishes what the first one began. */
static enum cf_err review_apply(struct api *api, struct arena *arena, struct pay_op *op,
                                bool approve)
{
    enum cf_err refused = CF_OK;
    struct pay_op_update u = {.status = PAY_STATUS_FAILED,
                              .error = cf_err_code(CF_ERR_RISK_BLOCKED)};
    enum cf_err err = hold_resolve(api, arena, op, approve, &refused);
    if (err == CF_OK && refused != CF_OK)
        err = refused; /* a hold that is not pending any more: recorded, nothing to do */
    if (err == CF_OK && approve)
        err = legs_from_review(api, arena, op, &u);
    if (err != CF_OK)
        return err;
    err = payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PENDING, &u,
                             cf_clock_now_us(&cf_clock_real));
    if (err == CF_ERR_CONFLICT)
        err = CF_OK; /* a repeated decision finished it first */
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    if (err == CF_OK && op->status == PAY_STATUS_FAILED && op->kind == PAY_KIND_PAYMENT &&
        strncmp(op->reference, "qr_", 3) == 0) /* the merchant's dynamic code may be paid again */
        cf_best_effort(payments_qr_release(api->payments, op->reference, op->id));
    return err;
}

/* {decision: approve|decline, reason} */
static enum cf_err decision_decode(struct http_request *req, bool *approve, char *reason,
                                   size_t reason_bytes, const char **detail)
{
    static const char *const fields[] = {"decision", "reason", NULL};
    json_t *root = NULL;
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK && (err = api_json_fields(root, fields, detail)) != CF_OK)
        *detail = api_detail_keep(req, *detail);
    if (err == CF_OK) {
        *detail = "decision";
        err = api_json_string(root, "decision", true, 16, &s, &n);
        if (err == CF_OK && !(n == 7 && memcmp(s, "approve", 7) == 0) &&
            !(n == 7 && memcmp(s, "decline", 7) == 0))
            err = CF_ERR_INVALID_FIELD;
        *approve = err == CF_OK && s[0] == 'a';
    }
    if (err == CF_OK) {
        *detail = "reason";
        err = api_json_string(root, "reason", true, reason_bytes - 1, &s, &n);
        if (err == CF_OK && n == 0)
            err = CF_ERR_INVALID_FIELD; /* an analyst says why */
        if (err == CF_OK)
            snprintf(reason, reason_bytes, "%.*s", (int)n, s);
        if (err == CF_OK && !risk_decisions_reason_valid(reason, detail))
            err = CF_ERR_INVALID_FIELD; /* empty, too long, or control characters */
    }
    json_decref(root);
    if (err == CF_OK)
        *detail = NULL;
    return err;
}

static void review_decision_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    char reason[RISK_DECISIONS_REASON_BYTES_MAX];
    const char *detail = NULL;
    bool approve = false;
    struct pay_op op;
    enum cf_err err = decision_decode(req, &approve, reason, sizeof(reason), &detail);
    if (err == CF_OK && (err = payments_op_get(api->payments, req->params[0], &op)) == CF_OK &&
        !op.review)
        err = CF_ERR_NOT_FOUND; /* not an operation under review */
    if (err == CF_OK && op.status == PAY_STATUS_PROCESSING)
        err = CF_ERR_CONFLICT; /* not held yet (risk_review.h): a decision now would be lost */
    bool gateway = err == CF_OK && (op.kind == PAY_KIND_TOPUP || op.kind == PAY_KIND_WITHDRAWAL ||
                                    op.kind == PAY_KIND_PAYOUT);
    if (gateway) /* a recorded decision is final: refuse one that could not be carried out */
        err = api_pay_funding_review_check(api, &op, approve);
    if (err == CF_OK) {
        err = risk_decisions_review_set(api->risk_decisions, op.id, RISK_REVIEW_PENDING,
                                        approve ? RISK_REVIEW_APPROVED : RISK_REVIEW_DECLINED,
                                        api_actor(req), reason, cf_clock_now_us(&cf_clock_real));
        struct risk_decision_rec *rec = err == CF_ERR_CONFLICT ? calloc(1, sizeof(*rec)) : NULL;
        if (rec != NULL && risk_decisions_get(api->risk_decisions, op.id, rec) == CF_OK &&
            rec->review_state == (approve ? RISK_REVIEW_APPROVED : RISK_REVIEW_DECLINED))
            err = CF_OK; /* the same decision again: finish what it began */
        free(rec);
    }
    if (err == CF_OK && op.status == PAY_STATUS_PENDING)
        err = gateway ? api_pay_funding_review(api, req->arena, &op, approve)
                      : review_apply(api, req->arena, &op, approve);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req),
                                  approve ? "risk.review_approve" : "risk.review_decline", op.id,
                                  "ok", pay_status_name(op.status)));
    api_pay_op_reply(req, resp, 200, &op, NULL);
}

enum http_action api_risk_review_decision(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, review_decision_run);
}

