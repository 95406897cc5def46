/*
 * pay_funding.c - money in and out through the gateway: saved cards, top-ups, withdrawals,
 * merchant payouts, and the gateway's signed callbacks.
 *
 * A top-up is a hold (a pending ledger transfer) from the gateway clearing account to the
 * wallet, placed before the gateway is asked; the gateway's answer posts it (approved) or voids
 * it (declined, timed out); an answer that never comes lets the hold expire after
 * topup_hold_s. A withdrawal or payout holds the money on its way out (wallet or merchant
 * account to the payout clearing account) without a timeout, because a payout that timed out
 * may still have been paid: only the gateway's answer (or an operator) ends it.
 *
 * Every ledger step has its own key ("op:<id>:hold", "op:<id>:post", "op:<id>:void") and the
 * gateway is asked with the operation id as its idempotency key, so running a step twice -
 * a retry, a late callback racing the answer, recovery after a crash - changes nothing twice.
 * Callbacks are matched by op_id, must carry the operation's amount and currency, are recorded
 * by event id (a duplicate is answered and ignored) and only move an operation that is still
 * waiting: late, repeated, out-of-order or forged callbacks change nothing.
 *
 * Under review (risk_review.h): a recorded operation monitoring sent to review is parked
 * PENDING instead of driven - a withdrawal's or payout's hold placed as above, a top-up with
 * nothing held - and the gateway is not asked, not by recovery either, and a callback for it
 * changes nothing, until an analyst approves (api_pay_funding_review: the top-up's hold, then
 * the same gateway step as above) or declines (the hold voided, FAILED risk_blocked). A bank
 * account the request named (not a saved card, not a merchant's payout account) is kept sealed
 * with the operation for the approval (payments_op_bank_keep), so a repeated approval can ask
 * the gateway again while it has not answered, and forgotten once the operation ends (op_settle)
 * or is declined; one recorded just before a crash may have none kept, and can then only be
 * declined (409 on approve).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/pay.h"
#include "api/risk_monitor.h"
#include "api/risk_freeze.h"
#include "core/clock.h"
#include "core/log.h"
#include "gateway/card.h"
#include "gateway/gateway.h"
#include "money/currency.h"
#include "risk/decisions.h"

/* Ledger steps ------------------------------------------------------------------------------- */

/* Holds op's money: dr -> cr pending, with a timeout (0: none), capped at the payee's maximum
 * balance when cr is its wallet. *seq_out gets the hold. A refused hold is *refused; an error
 * means the ledger never answered. */
static enum cf_err ledger_hold(struct api *api, struct arena *arena, const struct pay_op *op,
                               uint64_t dr, uint64_t cr, int64_t timeout_s, uint64_t *seq_out,
                               enum cf_err *refused)
{
    struct writer_cmd *cmd = api_pay_step_cmd(arena, op, "hold");
    struct ledger_leg *leg = arena_calloc(arena, 1, sizeof(*leg));
    if (cmd == NULL || leg == NULL)
        return CF_ERR_NOMEM;
    leg->debit_id = dr;
    leg->credit_id = cr;
    leg->amount = op->amount_minor;
    snprintf(leg->currency, sizeof(leg->currency), "%s", op->currency);
    snprintf(leg->code, sizeof(leg->code), "%s", pay_kind_name(op->kind));
    leg->pending = true;
    leg->timeout_s = timeout_s;
    /* a top-up's hold carries the wallet's KYC maximum balance (ledger.h, I6): its later post
     * is at most the hold, so the ceiling is checked here, once */
    leg->credit_capped = cr == op->payee_account && op->payee_max_balance_minor >= 0;
    leg->credit_max_minor = leg->credit_capped ? op->payee_max_balance_minor : 0;
    cmd->type = WRITER_CMD_TRANSFER;
    cmd->legs = leg;
    cmd->legs_n = 1;
    enum cf_err err = api_submit_wait(api, cmd, arena);
    if (err != CF_OK)
        return err;
    *refused = api_pay_step_outcome(cmd);
    *seq_out = *refused == CF_OK ? api_pay_entry_seq(cmd, false) : 0;
    return CF_OK;
}

/* Posts (post) or voids op's hold. */
static enum cf_err ledger_resolve(struct api *api, struct arena *arena, const struct pay_op *op,
                                  bool post, uint64_t *seq_out, enum cf_err *refused)
{
    struct writer_cmd *cmd = api_pay_step_cmd(arena, op, post ? "post" : "void");
    if (cmd == NULL)
        return CF_ERR_NOMEM;
    cmd->type = post ? WRITER_CMD_POST : WRITER_CMD_VOID;
    cmd->target_id = op->hold_seq;
    cmd->amount_minor = 0;
    enum cf_err err = api_submit_wait(api, cmd, arena);
    if (err != CF_OK)
        return err;
    *refused = api_pay_step_outcome(cmd);
    *seq_out = *refused == CF_OK ? api_pay_entry_seq(cmd, true) : 0;
    return CF_OK;
}

/* Ends a held operation with the gateway's final answer: approved posts the hold, anything
 * else voids it. from_mask: the statuses it may end from. */
static enum cf_err op_settle(struct api *api, struct arena *arena, struct pay_op *op,
                             uint32_t from_mask, bool approved, const char *error,
                             const char *gateway_ref)
{
    uint64_t seq = 0;
    enum cf_err refused = CF_OK;
    enum cf_err err = ledger_resolve(api, arena, op, approved, &seq, &refused);
    if (err != CF_OK)
        return err;
    struct pay_op_update u = {
        .status = PAY_STATUS_COMPLETED, .ledger_seq = op->hold_seq, .gateway_ref = gateway_ref};
    if (!approved || refused != CF_OK) {
        u.status = PAY_STATUS_FAILED;
        u.error = refused != CF_OK && approved ? cf_err_code(refused) : error;
    }
    err = payments_op_update(api->payments, op->id, from_mask, &u, api_pay_now_us());
    if (err == CF_ERR_CONFLICT)
        err = CF_OK; /* someone settled it first (a callback racing the answer) */
    if (err == CF_OK && op->review) /* a bank account kept for the review is not needed now */
        cf_best_effort(payments_op_bank_forget(api->payments, op->id));
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    return err;
}

#define WAITING_MASK                                                                               \
    ((1u << PAY_STATUS_PROCESSING) | (1u << PAY_STATUS_PENDING) |                                  \
     (1u << PAY_STATUS_ACTION_REQUIRED))

/* Applies a gateway result to a held operation. */
static enum cf_err op_apply_result(struct api *api, struct arena *arena, struct pay_op *op,
                                   const struct gateway_result *r)
{
    struct pay_op_update u = {.gateway_ref = r->reference};
    switch (r->outcome) {
    case GATEWAY_APPROVED:
        return op_settle(api, arena, op, WAITING_MASK, true, NULL, r->reference);
    case GATEWAY_DECLINED:
    case GATEWAY_INSUFFICIENT_FUNDS:
        return op_settle(api, arena, op, WAITING_MASK, false, cf_err_code(CF_ERR_PAYMENT_DECLINED),
                         r->reference);
    case GATEWAY_TIMEOUT:
        if (op->kind == PAY_KIND_TOPUP) /* nothing arrived: release the customer's view */
            return op_settle(api, arena, op, WAITING_MASK, false,
                             cf_err_code(CF_ERR_GATEWAY_UNAVAILABLE), NULL);
        u.status = PAY_STATUS_PENDING; /* a payout may have been paid: wait for the answer */
        break;
    case GATEWAY_CHALLENGE:
        u.status = PAY_STATUS_ACTION_REQUIRED;
        break;
    default:
        u.status = PAY_STATUS_PENDING;
        break;
    }
    enum cf_err err = payments_op_update(api->payments, op->id, WAITING_MASK, &u, api_pay_now_us());
    if (err == CF_ERR_CONFLICT)
        err = CF_OK; /* a callback ended it while we waited for the answer */
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    return err;
}

/* The instrument of op for the gateway: a saved card's number or the bank account. */
static enum cf_err op_instrument(struct api *api, const struct pay_op *op, const char *bank,
                                 struct gateway_request *g)
{
    if (strncmp(op->instrument, "card_", 5) == 0) {
        struct pay_card card;
        char pan[PAY_PAN_BYTES_MAX];
        g->method = GATEWAY_METHOD_CARD;
        enum cf_err err =
            payments_card_get(api->payments, op->instrument,
                              op->kind == PAY_KIND_TOPUP ? op->payee : op->payer, &card, pan);
        if (err == CF_OK)
            snprintf(g->instrument, sizeof(g->instrument), "%s", pan);
        hash_wipe(pan, sizeof(pan));
        return err == CF_ERR_NOT_FOUND ? CF_ERR_INVALID_CARD : err;
    }
    g->method = GATEWAY_METHOD_BANK;
    snprintf(g->instrument, sizeof(g->instrument), "%s", bank);
    return CF_OK;
}

/* Places op's hold (key "op:<id>:hold"): a top-up's from the gateway clearing into the wallet
 * with the top-up timeout, a withdrawal's or payout's from its payer into the payout clearing
 * without one. Then moves op from status `from` to `to` with the hold, or to FAILED with the
 * ledger's refusal. *op is re-read; an error means the ledger never answered. */
static enum cf_err op_hold(struct api *api, struct arena *arena, struct pay_op *op, uint8_t from,
                           uint8_t to)
{
    CF_ASSERT(op->hold_seq == 0 && op->status == from);
    CF_ASSERT(to == PAY_STATUS_PROCESSING || to == PAY_STATUS_PENDING);
    enum cf_err refused = CF_OK;
    bool in = op->kind == PAY_KIND_TOPUP;
    uint64_t clearing = 0, seq = 0;
    enum cf_err err =
        api_pay_system(api, arena, in ? PAY_SYS_GATEWAY_CLEARING : PAY_SYS_PAYOUT_CLEARING,
                       op->currency, &clearing);
    if (err == CF_OK)
        err = ledger_hold(api, arena, op, in ? clearing : op->payer_account,
                          in ? op->payee_account : clearing, in ? api->pay.topup_hold_s : 0, &seq,
                          &refused);
    if (err != CF_OK)
        return err;
    struct pay_op_update u = {.status = to, .hold_seq = seq};
    if (refused != CF_OK) {
        u.status = PAY_STATUS_FAILED;
        u.error = cf_err_code(refused);
    }
    err = payments_op_update(api->payments, op->id, 1u << from, &u, api_pay_now_us());
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    return err;
}

/* Asks the gateway for a held operation and applies its answer. */
static enum cf_err op_ask(struct api *api, struct arena *arena, struct pay_op *op, const char *bank)
{
    CF_ASSERT(op->hold_seq != 0 && bank != NULL);
    struct gateway_request g;
    memset(&g, 0, sizeof(g));
    snprintf(g.op_id, sizeof(g.op_id), "%s", op->id);
    g.op = op->kind == PAY_KIND_TOPUP ? GATEWAY_OP_CHARGE : GATEWAY_OP_PAYOUT;
    g.amount_minor = op->amount_minor;
    snprintf(g.currency, sizeof(g.currency), "%.3s", op->currency); /* ISO codes only: checked */
    struct gateway_result r;
    enum cf_err err = op_instrument(api, op, bank, &g);
    if (err == CF_OK)
        err = gateway_submit(api->gateway, &g, &r);
    hash_wipe(&g, sizeof(g));
    if (err != CF_OK) /* never sent: release the hold */
        return op_settle(api, arena, op, WAITING_MASK, false, cf_err_code(err), NULL);
    return op_apply_result(api, arena, op, &r);
}

/* Places the hold (if not yet), asks the gateway and applies its answer. */
static enum cf_err op_drive(struct api *api, struct arena *arena, struct pay_op *op,
                            const char *bank)
{
    if (op->hold_seq == 0) {
        enum cf_err err = op_hold(api, arena, op, PAY_STATUS_PROCESSING, PAY_STATUS_PROCESSING);
        if (err != CF_OK || op->status == PAY_STATUS_FAILED)
            return err;
    }
    return op_ask(api, arena, op, bank);
}

/* Review ------------------------------------------------------------------------------------- */

/* Parks a PROCESSING operation under review until an analyst decides (PENDING): a withdrawal's
 * or payout's money held on its way out as usual, a top-up with nothing held. The gateway is
 * not asked. */
static enum cf_err review_park(struct api *api, struct arena *arena, struct pay_op *op)
{
    CF_ASSERT(op->review && op->status == PAY_STATUS_PROCESSING);
    if (op->kind != PAY_KIND_TOPUP && op->hold_seq == 0)
        return op_hold(api, arena, op, PAY_STATUS_PROCESSING, PAY_STATUS_PENDING);
    struct pay_op_update u = {.status = PAY_STATUS_PENDING};
    enum cf_err err = payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PROCESSING, &u,
                                         api_pay_now_us());
    if (err == CF_ERR_CONFLICT)
        err = CF_OK; /* parked already (recovery racing the request) */
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    CF_ASSERT(err != CF_OK || op->status != PAY_STATUS_PROCESSING);
    return err;
}

_Static_assert(CARD_IBAN_BYTES <= PAY_OP_BANK_BYTES_MAX, "a request's bank account can be kept");

/* Whether op goes to (or comes from) a bank account the request named: a customer's top-up or
 * withdrawal not made with a saved card. A payout's account is the merchant's, kept apart. */
static bool op_request_bank(const struct pay_op *op)
{
    return op->kind != PAY_KIND_PAYOUT && strncmp(op->instrument, "card_", 5) != 0;
}

/* Starts a recorded operation: parked for an analyst when under review (a bank account the
 * request named kept sealed for the approval first), else driven. */
static enum cf_err op_start(struct api *api, struct arena *arena, struct pay_op *op,
                            const char *bank)
{
    if (!op->review)
        return op_drive(api, arena, op, bank);
    enum cf_err err = op_request_bank(op) ? payments_op_bank_keep(api->payments, op->id, bank)
                                          : CF_OK;
    return err == CF_OK ? review_park(api, arena, op) : err; /* else recovery parks it */
}

/* Whether an analyst approved op (under review): the gateway may hear of it only then. */
static enum cf_err review_approved(struct api *api, const struct pay_op *op, bool *out)
{
    *out = !op->review;
    if (!op->review)
        return CF_OK;
    struct risk_decision_rec *rec = calloc(1, sizeof(*rec));
    if (rec == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = risk_decisions_get(api->risk_decisions, op->id, rec);
    if (err == CF_OK)
        *out = rec->review_state == RISK_REVIEW_APPROVED;
    free(rec);
    return err == CF_ERR_NOT_FOUND ? CF_OK : err; /* no decision: not approved */
}

enum cf_err api_pay_funding_review(struct api *api, struct arena *arena, struct pay_op *op,
                                   bool approve)
{
    CF_ASSERT(op->review && op->status == PAY_STATUS_PENDING);
    CF_ASSERT(op->kind == PAY_KIND_TOPUP || op->kind == PAY_KIND_WITHDRAWAL ||
              op->kind == PAY_KIND_PAYOUT);
    const char *blocked = cf_err_code(CF_ERR_RISK_BLOCKED);
    if (!approve && op_request_bank(op)) /* the account is not needed any more */
        cf_best_effort(payments_op_bank_forget(api->payments, op->id));
    if (!approve && op->hold_seq != 0) /* the money comes back */
        return op_settle(api, arena, op, 1u << PAY_STATUS_PENDING, false, blocked, NULL);
    if (!approve) { /* a top-up: nothing was held */
        struct pay_op_update u = {.status = PAY_STATUS_FAILED, .error = blocked};
        enum cf_err err = payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PENDING, &u,
                                             api_pay_now_us());
        if (err == CF_ERR_CONFLICT)
            err = CF_OK; /* a repeated decision finished it first */
        return err == CF_OK ? payments_op_get(api->payments, op->id, op) : err;
    }
    struct pay_merchant full;
    char bank[PAY_OP_BANK_BYTES_MAX] = "";
    memset(&full, 0, sizeof(full));
    enum cf_err err = CF_OK;
    if (op->kind == PAY_KIND_PAYOUT) /* its bank account, as the merchant keeps it now */
        err = payments_merchant_get(api->payments, op->payer, true, &full);
    else if (op_request_bank(op)) /* the one the request named, kept sealed by op_start */
        err = payments_op_bank_get(api->payments, op->id, bank);
    if (err == CF_ERR_NOT_FOUND && op_request_bank(op))
        err = CF_ERR_CONFLICT; /* not kept (a crash before it was) or used already: decline */
    if (err == CF_OK && op->hold_seq == 0) /* a top-up's hold, as without review */
        err = op_hold(api, arena, op, PAY_STATUS_PENDING, PAY_STATUS_PENDING);
    if (err == CF_OK && op->status == PAY_STATUS_PENDING)
        err = op_ask(api, arena, op, op->kind == PAY_KIND_PAYOUT ? full.bank_account : bank);
    hash_wipe(&full, sizeof(full));
    hash_wipe(bank, sizeof(bank));
    return err;
}

enum cf_err api_pay_funding_review_check(struct api *api, const struct pay_op *op, bool approve)
{
    CF_ASSERT(op->review);
    if (!approve || op->status != PAY_STATUS_PENDING || !op_request_bank(op))
        return CF_OK;
    char bank[PAY_OP_BANK_BYTES_MAX];
    enum cf_err err = payments_op_bank_get(api->payments, op->id, bank);
    hash_wipe(bank, sizeof(bank));
    return err == CF_ERR_NOT_FOUND ? CF_ERR_CONFLICT : err;
}

/* Answers an operation that went to the gateway: 201 done, 202 waiting (with the challenge
 * to answer), or its error. */
static void funding_reply(struct http_request *req, struct http_response *resp,
                          const struct pay_op *op, const char *viewer)
{
    if (op->status != PAY_STATUS_ACTION_REQUIRED) {
        api_pay_outcome_reply(req, resp, op, viewer);
        return;
    }
    json_t *o = api_pay_op_json(op, viewer);
    json_object_set_new(o, "challenge",
                        json_pack("{s:s,s:s}", "reference", op->gateway_ref, "kind", "3ds"));
    api_reply_object(req, resp, 202, o);
}

/* Cards -------------------------------------------------------------------------------------- */

static json_t *card_json(const struct pay_card *c)
{
    char created[40];
    cf_time_format_rfc3339(c->created_at_us, created, sizeof(created));
    return json_pack("{s:s,s:s,s:s,s:i,s:i,s:s}", "id", c->id, "brand", c->brand, "last4", c->last4,
                     "exp_month", c->exp_month, "exp_year", c->exp_year, "created_at", created);
}

/* {number, exp_month, exp_year, cvc, verification} into a checked card (the cvc is checked and
 * forgotten). */
static enum cf_err card_decode(json_t *root, struct pay_card *c, char pan[CARD_PAN_BYTES],
                               struct identity_verification *v, const char **detail)
{
    static const char *const fields[] = {"number", "exp_month",    "exp_year",
                                         "cvc",    "verification", NULL};
    const char *number = NULL, *cvc = NULL;
    size_t number_len = 0, cvc_len = 0;
    int64_t month = 0, year = 0;
    enum cf_err err = api_json_fields(root, fields, detail);
    if (err == CF_OK && (err = api_json_string(root, "number", true, CARD_PAN_TEXT_BYTES_MAX,
                                               &number, &number_len)) != CF_OK)
        *detail = "number";
    if (err == CF_OK && (err = api_json_int(root, "exp_month", true, &month)) != CF_OK)
        *detail = "exp_month";
    if (err == CF_OK && (err = api_json_int(root, "exp_year", true, &year)) != CF_OK)
        *detail = "exp_year";
    if (err == CF_OK && (err = api_json_string(root, "cvc", true, 8, &cvc, &cvc_len)) != CF_OK)
        *detail = "cvc";
    if (err == CF_OK && (err = api_json_verification(root, v)) != CF_OK)
        *detail = "verification";
    if (err != CF_OK)
        return err;
    *detail = "number";
    if ((err = card_pan_normalize(number, number_len, pan)) != CF_OK)
        return err;
    enum card_brand brand = card_brand_detect(pan);
    *detail = "exp_month";
    if ((err = card_expiry_check(month, year, api_pay_now_us() / 1000000)) != CF_OK)
        return err;
    char cvc_copy[9];
    snprintf(cvc_copy, sizeof(cvc_copy), "%.*s", (int)cvc_len, cvc);
    *detail = "cvc";
    err = card_cvc_check(cvc_copy, brand);
    hash_wipe(cvc_copy, sizeof(cvc_copy));
    if (err != CF_OK)
        return err;
    snprintf(c->brand, sizeof(c->brand), "%s", card_brand_name(brand));
    card_pan_last4(pan, c->last4);
    c->exp_month = (int)month;
    c->exp_year = (int)year;
    *detail = NULL;
    return CF_OK;
}

static void me_card_add_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct pay_card c, saved;
    memset(&c, 0, sizeof(c));
    char pan[CARD_PAN_BYTES] = "";
    struct identity_verification v = {0};
    bool existed = false;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = card_decode(root, &c, pan, &v, &detail);
    if (err == CF_OK) { /* a new card is a way to move money: it needs a step-up */
        struct identity_action a = {.action = "card_add"};
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_challenge_consume(api->identity, &ctx, &api_principal(req)->user, &a, &v,
                                         NULL);
        detail = NULL;
    }
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK) {
        payments_id_new("card_", c.id);
        snprintf(c.user_id, sizeof(c.user_id), "%s", api_pay_me_id(req));
        err = payments_card_add(api->payments, &c, pan, api_pay_now_us(), &saved, &existed);
    }
    hash_wipe(pan, sizeof(pan));
    if (err != CF_OK) {
        api_pay_problem_reply(
            req, resp, err, err == CF_ERR_CONFLICT ? "a customer saves at most 20 cards" : detail);
        return;
    }
    api_reply_object(req, resp, existed ? 200 : 201, card_json(&saved));
}

enum http_action api_me_card_add(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_card_add_run);
}

static void me_cards_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct pay_card cards[PAY_CARDS_MAX];
    size_t n = 0;
    enum cf_err err =
        payments_cards_list(api->payments, api_pay_me_id(req), cards, PAY_CARDS_MAX, &n);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, card_json(&cards[i]));
    api_reply_object(req, resp, 200, json_pack("{s:o}", "data", data));
}

enum http_action api_me_cards(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_cards_run);
}

static void me_card_remove_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    enum cf_err err =
        payments_card_remove(api->payments, req->params[0], api_pay_me_id(req), api_pay_now_us());
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s}", "id", req->params[0], "status", "removed"));
}

enum http_action api_me_card_remove(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_card_remove_run);
}

/* Top-ups and withdrawals -------------------------------------------------------------------- */

/* {amount_minor, currency, card_id | bank_account, verification?} */
struct funding_body {
    int64_t amount_minor;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    char card_id[PAY_ID_BYTES_MAX];
    char bank[CARD_IBAN_BYTES];
    struct identity_verification v;
};

static enum cf_err funding_decode(json_t *root, bool withdrawal, struct funding_body *b,
                                  const char **detail)
{
    static const char *const top_fields[] = {"amount_minor", "currency", "card_id", "bank_account",
                                             NULL};
    static const char *const out_fields[] = {"amount_minor", "currency", "bank_account",
                                             "verification", NULL};
    memset(b, 0, sizeof(*b));
    const char *s = NULL, *card = NULL, *bank = NULL;
    size_t n = 0, card_len = 0, bank_len = 0;
    enum cf_err err = api_json_fields(root, withdrawal ? out_fields : top_fields, detail);
    if (err != CF_OK)
        return err;
    *detail = "amount_minor";
    if ((err = api_json_int(root, "amount_minor", true, &b->amount_minor)) != CF_OK)
        return err;
    if (b->amount_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    *detail = "currency";
    if (api_json_string(root, "currency", true, MONEY_CODE_BYTES_MAX, &s, &n) != CF_OK ||
        currency_find(s, n) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    snprintf(b->currency, sizeof(b->currency), "%.*s", (int)n, s);
    *detail = "card_id";
    if (!withdrawal && (err = api_json_string(root, "card_id", false, PAY_ID_BYTES_MAX - 1, &card,
                                              &card_len)) != CF_OK)
        return err;
    *detail = "bank_account";
    if ((err = api_json_string(root, "bank_account", withdrawal, CARD_IBAN_TEXT_BYTES_MAX, &bank,
                               &bank_len)) != CF_OK)
        return err;
    if ((card == NULL) == (bank == NULL))
        return withdrawal ? CF_ERR_MISSING_FIELD : CF_ERR_INVALID_FIELD; /* exactly one */
    if (bank != NULL && (err = card_iban_normalize(bank, bank_len, b->bank)) != CF_OK)
        return err;
    if (card != NULL)
        snprintf(b->card_id, sizeof(b->card_id), "%.*s", (int)card_len, card);
    *detail = "verification";
    if (withdrawal && (err = api_json_verification(root, &b->v)) != CF_OK)
        return err;
    *detail = NULL;
    return CF_OK;
}

static void me_topup_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct funding_body b;
    struct pay_op op;
    memset(&op, 0, sizeof(op));
    bool replay = false;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = funding_decode(root, false, &b, &detail);
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK && !api_pay_currency_offered(api, b.currency))
        err = CF_ERR_UNKNOWN_CURRENCY;
    if (err == CF_OK) /* frozen with blocks_incoming: no top-up either */
        err = api_risk_party_check_incoming(api, api_pay_me_id(req));
    if (err == CF_OK)
        err = api_pay_idem_read(req, op.idem, op.request_hash);
    if (err == CF_OK && b.card_id[0] != '\0') {
        struct pay_card card;
        err = payments_card_get(api->payments, b.card_id, api_pay_me_id(req), &card, NULL);
        detail = "card_id";
        if (err == CF_ERR_NOT_FOUND)
            err = CF_ERR_INVALID_CARD;
    }
    if (err == CF_OK) {
        payments_op_id_new(PAY_KIND_TOPUP, op.id);
        op.kind = PAY_KIND_TOPUP;
        snprintf(op.payee, sizeof(op.payee), "%s", api_pay_me_id(req));
        op.amount_minor = op.credit_minor = b.amount_minor;
        snprintf(op.currency, sizeof(op.currency), "%s", b.currency);
        snprintf(op.credit_currency, sizeof(op.credit_currency), "%s", b.currency);
        if (b.card_id[0] != '\0')
            snprintf(op.instrument, sizeof(op.instrument), "%s", b.card_id);
        else
            snprintf(op.instrument, sizeof(op.instrument), "bank:%s", b.bank + strlen(b.bank) - 4);
        err = api_pay_wallet(api, req->arena, api_pay_me_id(req), b.currency, true,
                             &op.payee_account);
    }
    if (err == CF_OK) /* no step-up is asked on a top-up: a challenge blocks it */
        err = api_pay_op_record(api, &(struct api_risk_ctx){.req = req}, &op, &replay);
    if (err == CF_OK && !replay)
        err = op_start(api, req->arena, &op, b.bank);
    hash_wipe(b.bank, sizeof(b.bank));
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    funding_reply(req, resp, &op, api_pay_me_id(req));
}

enum http_action api_me_topup(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_topup_run);
}

static void me_topup_challenge_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"code", NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL, *code = NULL;
    size_t code_len = 0;
    char code_copy[GATEWAY_CHALLENGE_CODE_BYTES_MAX];
    struct pay_op op;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, &detail);
    if (err == CF_OK && (err = api_json_string(root, "code", true, sizeof(code_copy) - 1, &code,
                                               &code_len)) != CF_OK)
        detail = "code";
    if (err == CF_OK)
        snprintf(code_copy, sizeof(code_copy), "%.*s", (int)code_len, code);
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK)
        err = payments_op_get(api->payments, req->params[0], &op);
    if (err == CF_OK && (op.kind != PAY_KIND_TOPUP || strcmp(op.payee, api_pay_me_id(req)) != 0))
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK &&
        (op.status == PAY_STATUS_COMPLETED || op.status == PAY_STATUS_FAILED)) {
        /* answered already (a retry after a lost answer): the outcome, not a second try */
        api_pay_outcome_reply(req, resp, &op, api_pay_me_id(req));
        return;
    }
    if (err == CF_OK && op.status != PAY_STATUS_ACTION_REQUIRED)
        err = CF_ERR_CONFLICT;
    struct gateway_result r;
    if (err == CF_OK)
        err = gateway_challenge_answer(api->gateway, op.gateway_ref, code_copy, &r);
    if (err == CF_OK)
        err = op_apply_result(api, req->arena, &op, &r);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err,
                              err == CF_ERR_CONFLICT ? "the top-up is not waiting for a challenge"
                                                     : detail);
        return;
    }
    funding_reply(req, resp, &op, api_pay_me_id(req));
}

enum http_action api_me_topup_challenge(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_topup_challenge_run);
}

static void me_withdrawal_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    struct funding_body b;
    struct pay_op op;
    memset(&op, 0, sizeof(op));
    bool replay = false;
    enum cf_err err = api_json_object(req, &root, &detail);
    if (err == CF_OK)
        err = funding_decode(root, true, &b, &detail);
    if (err == CF_OK)
        err = api_pay_idem_read(req, op.idem, op.request_hash);
    if (err == CF_OK) { /* money leaving Coffer: always a step-up, bound to amount and account */
        struct identity_action a = {.action = "withdrawal",
                                    .amount_minor = b.amount_minor,
                                    .currency = b.currency,
                                    .payee = b.bank};
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        err = identity_challenge_consume(api->identity, &ctx, &api_principal(req)->user, &a, &b.v,
                                         op.idem);
        detail = NULL;
    }
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK) {
        payments_op_id_new(PAY_KIND_WITHDRAWAL, op.id);
        op.kind = PAY_KIND_WITHDRAWAL;
        snprintf(op.payer, sizeof(op.payer), "%s", api_pay_me_id(req));
        op.amount_minor = op.credit_minor = b.amount_minor;
        snprintf(op.currency, sizeof(op.currency), "%s", b.currency);
        snprintf(op.credit_currency, sizeof(op.credit_currency), "%s", b.currency);
        snprintf(op.instrument, sizeof(op.instrument), "bank:%s", b.bank + strlen(b.bank) - 4);
        err = api_pay_wallet(api, req->arena, api_pay_me_id(req), b.currency, false,
                             &op.payer_account);
        if (err == CF_ERR_NOT_FOUND)
            err = CF_ERR_INSUFFICIENT_FUNDS;
    }
    if (err == CF_OK) /* the withdrawal's step-up was taken above, bound to it */
        err = api_pay_op_record(api, &(struct api_risk_ctx){.req = req, .stepped_up = true}, &op,
                                &replay);
    if (err == CF_OK && !replay)
        err = op_start(api, req->arena, &op, b.bank);
    hash_wipe(b.bank, sizeof(b.bank));
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    funding_reply(req, resp, &op, api_pay_me_id(req));
}

enum http_action api_me_withdrawal(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_withdrawal_run);
}

/* Merchant payouts --------------------------------------------------------------------------- */

enum cf_err api_pay_payout(struct api *api, struct arena *arena, const struct pay_merchant *m,
                           int64_t amount_minor, const char *idem, const uint8_t *request_hash,
                           struct pay_op *op)
{
    struct pay_merchant full;
    enum cf_err err = payments_merchant_get(api->payments, m->merchant_id, true, &full);
    if (err != CF_OK)
        return err;
    memset(op, 0, sizeof(*op));
    snprintf(op->idem, sizeof(op->idem), "%s", idem);
    if (request_hash != NULL)
        memcpy(op->request_hash, request_hash, HASH_BYTES);
    else
        hash_sha256(idem, strlen(idem), op->request_hash);
    payments_op_id_new(PAY_KIND_PAYOUT, op->id);
    op->kind = PAY_KIND_PAYOUT;
    snprintf(op->payer, sizeof(op->payer), "%s", m->merchant_id);
    op->payer_account = m->account_id;
    op->amount_minor = op->credit_minor = amount_minor;
    snprintf(op->currency, sizeof(op->currency), "%s", m->currency);
    snprintf(op->credit_currency, sizeof(op->credit_currency), "%s", m->currency);
    snprintf(op->instrument, sizeof(op->instrument), "bank:%s", m->bank_last4);
    bool replay = false;
    err = api_pay_op_record(api, &(struct api_risk_ctx){0}, op, &replay); /* no step-up */
    if (err == CF_OK && !replay)
        err = op_start(api, arena, op, full.bank_account);
    hash_wipe(&full, sizeof(full));
    return err;
}

static void merchant_payout_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"amount_minor", NULL};
    struct api *api = req->app;
    struct identity_merchant im;
    struct pay_merchant m;
    json_t *root = NULL;
    const char *detail = NULL;
    int64_t amount = 0;
    struct pay_op op;
    enum cf_err err = identity_merchant_of(api->identity, &api_principal(req)->user, &im);
    if (err == CF_OK && im.right != IDENTITY_MERCHANT_OWNER)
        err = CF_ERR_FORBIDDEN; /* money leaving the merchant: owners only */
    if (err == CF_OK &&
        (err = payments_merchant_get(api->payments, im.merchant_id, false, &m)) == CF_ERR_NOT_FOUND)
        err = CF_ERR_CONFLICT;
    if (err == CF_OK && req->body_len > 0 &&
        (err = api_json_object(req, &root, &detail)) == CF_OK &&
        (err = api_json_fields(root, fields, &detail)) == CF_OK &&
        (err = api_json_int(root, "amount_minor", false, &amount)) != CF_OK)
        detail = "amount_minor";
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err == CF_OK && amount == 0) { /* the whole available balance */
        struct store_reader *r;
        struct store_account_row row;
        if ((err = api->store->ops->r_open(api->store, &r)) == CF_OK) {
            err = api->store->ops->r_account_get(r, m.account_id, &row, req->arena);
            api->store->ops->r_close(r);
        }
        if (err == CF_OK)
            amount = ledger_account_available(&row.account);
        if (err == CF_OK && amount <= 0)
            err = CF_ERR_INSUFFICIENT_FUNDS;
    }
    if (err == CF_OK && amount < 0)
        err = CF_ERR_INVALID_AMOUNT;
    struct pay_op probe;
    memset(&probe, 0, sizeof(probe));
    if (err == CF_OK)
        err = api_pay_idem_read(req, probe.idem, probe.request_hash);
    if (err == CF_OK)
        err = api_pay_payout(api, req->arena, &m, amount, probe.idem, probe.request_hash, &op);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err,
                              err == CF_ERR_CONFLICT ? "the merchant has no payment profile yet"
                                                     : detail);
        return;
    }
    funding_reply(req, resp, &op, m.merchant_id);
}

enum http_action api_merchant_payout(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_payout_run);
}

/* Callbacks ---------------------------------------------------------------------------------- */

/* Applies a verified event to the operation it names. *status_out: what the answer says. */
static enum cf_err event_apply(struct api *api, struct arena *arena, const struct gateway_event *e,
                               const char **status_out)
{
    bool fresh = false;
    enum cf_err err = payments_event_record(api->payments, e->event_id, api_pay_now_us(), &fresh);
    *status_out = "duplicate";
    if (err != CF_OK || !fresh)
        return err;
    struct pay_op op;
    *status_out = "ignored";
    err = payments_op_get(api->payments, e->op_id, &op);
    if (err == CF_ERR_NOT_FOUND)
        return CF_OK; /* not ours: recorded, nothing to do */
    if (err != CF_OK)
        return err;
    bool held =
        op.kind == PAY_KIND_TOPUP || op.kind == PAY_KIND_WITHDRAWAL || op.kind == PAY_KIND_PAYOUT;
    bool asked = false; /* under review, the gateway hears of it only once approved */
    if (held && (err = review_approved(api, &op, &asked)) != CF_OK)
        return err;
    if (!held || !asked || op.amount_minor != e->amount_minor ||
        strcmp(op.currency, e->currency) != 0 || op.hold_seq == 0 ||
        (op.status != PAY_STATUS_PENDING && op.status != PAY_STATUS_PROCESSING)) {
        cf_log(LOG_WARN, "gateway callback changed nothing", "op", op.id, "status",
               pay_status_name(op.status), NULL);
        return CF_OK;
    }
    struct gateway_result r = {.outcome = e->outcome};
    snprintf(r.reference, sizeof(r.reference), "%s", e->reference);
    *status_out = "applied";
    return op_apply_result(api, arena, &op, &r);
}

/* The shared secret of the gateway, set by the CLI. */
enum cf_err api_gateway_callback(struct api *api, struct arena *arena, const char *body,
                                 size_t body_len, const char *signature, const char **status_out)
{
    struct gateway_event e;
    enum cf_err err = gateway_callback_verify(api->gateway_secret, api->gateway_secret_len, body,
                                              body_len, signature, api_pay_now_us() / 1000000, &e);
    if (err != CF_OK)
        return err;
    return event_apply(api, arena, &e, status_out);
}

void api_gateway_sink(void *ctx, const char *body, size_t body_len, const char *signature)
{
    struct api *api = ctx;
    struct arena *arena = arena_create(1024 * 1024);
    const char *status = NULL;
    enum cf_err err = arena == NULL
                          ? CF_ERR_NOMEM
                          : api_gateway_callback(api, arena, body, body_len, signature, &status);
    if (err != CF_OK)
        cf_log(LOG_WARN, "sandbox callback refused", "error", cf_err_code(err), NULL);
    arena_destroy(arena);
}

static void gateway_callback_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *status = NULL;
    enum cf_err err =
        api_gateway_callback(api, req->arena, req->body, req->body_len, req->signature, &status);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_reply_object(req, resp, 200, json_pack("{s:s}", "status", status));
}

enum http_action api_gateway_callback_route(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, gateway_callback_run);
}

/* Recovery ----------------------------------------------------------------------------------- */

enum cf_err api_pay_funding_recover(struct api *api, struct arena *arena, const struct pay_op *op)
{
    struct pay_op copy = *op;
    if (copy.review) /* recorded, not yet parked: parked now, never sent before a decision */
        return review_park(api, arena, &copy);
    if (copy.kind == PAY_KIND_TOPUP && copy.hold_seq == 0)
        return CF_OK; /* never held: nothing moved; it stays for the record */
    if (copy.instrument[0] != 'c')
        return CF_OK; /* a bank operation needs its account, which is not kept: left pending */
    return op_drive(api, arena, &copy, "");
}
