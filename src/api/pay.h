/*
 * pay.h - the payment routes' shared helpers (pay.c) and handlers (pay_*.c), inside src/api.
 *
 * Every payment route runs on a worker (api_offload): it records the operation in the payments
 * tables, runs the operation's ledger legs under the key "op:<id>" and records the outcome. See
 * payments/payments.h for the operation's life and ARCHITECTURE.md for the flows.
 */
#ifndef COFFER_API_PAY_H
#define COFFER_API_PAY_H

#include <jansson.h>

#include "api/api.h"
#include "payments/payments.h"

/* Names of the system accounts (one per currency, opened on first use). */
#define PAY_SYS_GATEWAY_CLEARING "gateway_clearing" /* debit-normal: owed by the gateway */
#define PAY_SYS_FEE_REVENUE "fee_revenue"
#define PAY_SYS_PAYOUT_CLEARING "payout_clearing" /* money on its way out to banks */
#define PAY_SYS_FX_LIQUIDITY "fx_liquidity"
#define PAY_SYS_FX_REVENUE "fx_revenue"

/* What a ledger account opened on first use looks like. key makes the opening idempotent. */
struct api_account_spec {
    const char *owner;
    const char *currency;
    uint8_t kind;
    uint8_t normal;
    uint32_t flags;
    const char *key;
};

/* The account id in a fresh or stored account-creation answer. */
CF_WARN_UNUSED enum cf_err api_created_account_id(const struct writer_cmd *cmd, uint64_t *out);
CF_WARN_UNUSED enum cf_err api_pay_account_create(struct api *api, struct arena *arena,
                                                  const struct api_account_spec *s,
                                                  uint64_t *id_out);
/* The system account `name` in currency, opened and recorded on first use. */
CF_WARN_UNUSED enum cf_err api_pay_system(struct api *api, struct arena *arena, const char *name,
                                          const char *currency, uint64_t *id_out);
/* The customer's wallet account in currency; opened when missing and create is set (only for a
 * currency on offer: CF_ERR_UNKNOWN_CURRENCY otherwise). CF_ERR_NOT_FOUND when missing. */
CF_WARN_UNUSED enum cf_err api_pay_wallet(struct api *api, struct arena *arena, const char *user_id,
                                          const char *currency, bool create, uint64_t *id_out);
bool api_pay_currency_offered(const struct api *api, const char *currency);

/* The ledger legs of a send, payment, refund or conversion, from its row alone. */
#define API_PAY_LEGS_MAX 4
CF_WARN_UNUSED enum cf_err api_pay_legs(struct api *api, struct arena *arena,
                                        const struct pay_op *op, struct ledger_leg *legs,
                                        size_t *n_out);
/* Runs a PROCESSING operation's legs under "op:<id>" and records COMPLETED or FAILED; *op is
 * re-read. An error means the ledger never answered: the operation stays PROCESSING. */
CF_WARN_UNUSED enum cf_err api_pay_execute(struct api *api, struct arena *arena, struct pay_op *op);
/* Finishes every operation left PROCESSING (at start, before serving): sends, payments,
 * refunds and conversions by re-running their legs; gateway operations where they can be. */
CF_WARN_UNUSED enum cf_err api_pay_recover(struct api *api, struct arena *arena, size_t *n_out);

/* An operation as JSON, seen by viewer (a user or merchant id: direction and counterparty). */
json_t *api_pay_op_json(const struct pay_op *op, const char *viewer);
void api_pay_op_reply(struct http_request *req, struct http_response *resp, int status,
                      const struct pay_op *op, const char *viewer);
/* 201 for a completed operation, 202 for one still waiting, the stored error for a failed one. */
void api_pay_outcome_reply(struct http_request *req, struct http_response *resp,
                           const struct pay_op *op, const char *viewer);

/* Small helpers every payment route shares ------------------------------------------------- */

/* The real clock's time, in microseconds since the epoch. */
int64_t api_pay_now_us(void);
/* The signed-in caller's user id (never the bootstrap principal: asserted). */
const char *api_pay_me_id(const struct http_request *req);
/* Answers err as a problem; detail (NULL: none) is copied into the request arena first. */
void api_pay_problem_reply(struct http_request *req, struct http_response *resp, enum cf_err err,
                           const char *detail);
/* Reads Idempotency-Key and the request hash as every write route does; CF_ERR_IDEM_KEY_INVALID
 * for a key too long to store, api_idem_prepare's error otherwise. Outputs untouched on error. */
CF_WARN_UNUSED enum cf_err api_pay_idem_read(struct http_request *req,
                                             char idem[PAY_IDEM_BYTES_MAX],
                                             uint8_t hash[HASH_BYTES]);
/* The operation this request's key made before; CF_ERR_NOT_FOUND when the key is new,
 * CF_ERR_IDEM_KEY_REUSED when it made one for another request. */
CF_WARN_UNUSED enum cf_err api_pay_op_stored(struct http_request *req, struct pay_op *op);
/* Records op (payments_op_begin) or finds the one its key made (*replay); *op becomes the stored
 * row. CF_ERR_IDEM_KEY_REUSED when the stored one has another request hash; *op untouched. A new
 * operation is scored first (api/risk_monitor.h, with rc: who asks and what step-up the route
 * can ask for): refused ones record nothing; one sent to review is recorded with op->review. */
struct api_risk_ctx;
CF_WARN_UNUSED enum cf_err api_pay_op_record(struct api *api, const struct api_risk_ctx *rc,
                                             struct pay_op *op, bool *replay);
/* A fresh operation of kind: *op cleared, the request's Idempotency-Key and hash read into it
 * (api_pay_idem_read's errors, *op untouched) and a new id given. */
CF_WARN_UNUSED enum cf_err api_pay_op_open(struct http_request *req, enum pay_kind kind,
                                           struct pay_op *op);
/* Runs op's legs when it is still PROCESSING (api_pay_execute) and answers its outcome as
 * viewer sees it; answers the error when the ledger never answered. */
void api_pay_op_run_reply(struct http_request *req, struct http_response *resp, struct pay_op *op,
                          const char *viewer);
/* The caller's merchant and its payment profile; CF_ERR_CONFLICT before it is onboarded. */
CF_WARN_UNUSED enum cf_err api_pay_merchant_mine(struct http_request *req, struct pay_merchant *m);
/* The merchant's fee on amount: its own rule, else its MCC's schedule. *fee_out untouched on
 * error. */
CF_WARN_UNUSED enum cf_err api_pay_merchant_fee(struct api *api, const struct pay_merchant *m,
                                                int64_t amount, int64_t *fee_out);
/* Reads the from, to (RFC 3339 dates or times), type and currency query parameters into f;
 * *detail names the one refused (NULL on success). */
CF_WARN_UNUSED enum cf_err api_pay_filter_read(struct http_request *req, struct pay_filter *f,
                                               const char **detail);
/* Sets *l to a plain leg dr -> cr of amount in currency with code (all else zero). */
void api_pay_leg_set(struct ledger_leg *l, uint64_t dr, uint64_t cr, int64_t amount,
                     const char *currency, const char *code);
/* A ledger command of op's step keyed "op:<id>:<step>" in arena; NULL when arena is full. */
struct writer_cmd *api_pay_step_cmd(struct arena *arena, const struct pay_op *op, const char *step);
/* The journal entry of a fresh or stored single-entry answer: the entry a transfer made, or
 * (pending_out) the one a post or void made. */
uint64_t api_pay_entry_seq(const struct writer_cmd *cmd, bool pending_out);
/* The first entry of the group a fresh or stored multi-leg transfer answer made. */
uint64_t api_pay_group_seq(const struct writer_cmd *cmd);
/* The outcome of a keyed ledger step: CF_OK, or its own error when refused (fresh or replayed). */
CF_WARN_UNUSED enum cf_err api_pay_step_outcome(const struct writer_cmd *cmd);

/* Gateway operations (pay_funding.c) --------------------------------------------------------- */

/* Pays amount_minor of merchant m's balance out to its bank account (idem: the operation's
 * namespaced key; request_hash: the request's, or NULL to hash the key, for the scheduler).
 * *op gets the operation as it stands; the same key with another request hash is
 * CF_ERR_IDEM_KEY_REUSED. */
CF_WARN_UNUSED enum cf_err api_pay_payout(struct api *api, struct arena *arena,
                                          const struct pay_merchant *m, int64_t amount_minor,
                                          const char *idem, const uint8_t *request_hash,
                                          struct pay_op *op);
/* Verifies a gateway callback (body and Coffer-Signature value) and applies it; *status_out
 * says "applied", "duplicate" or "ignored". CF_ERR_BAD_SIGNATURE for a forged one. */
CF_WARN_UNUSED enum cf_err api_gateway_callback(struct api *api, struct arena *arena,
                                                const char *body, size_t body_len,
                                                const char *signature, const char **status_out);
/* The sandbox's callback sink (gateway_sink_fn): the same path as the HTTP route. */
void api_gateway_sink(void *ctx, const char *body, size_t body_len, const char *signature);
/* Carries a top-up, withdrawal or payout left PROCESSING by a crash to its end, where it can. */
CF_WARN_UNUSED enum cf_err api_pay_funding_recover(struct api *api, struct arena *arena,
                                                   const struct pay_op *op);

/* Handlers (pay_merchant.c, pay_customer.c, pay_funding.c) */
enum http_action api_me_card_add(struct http_request *req, struct http_response *resp);
enum http_action api_me_cards(struct http_request *req, struct http_response *resp);
enum http_action api_me_card_remove(struct http_request *req, struct http_response *resp);
enum http_action api_me_topup(struct http_request *req, struct http_response *resp);
enum http_action api_me_topup_challenge(struct http_request *req, struct http_response *resp);
enum http_action api_me_withdrawal(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_payout(struct http_request *req, struct http_response *resp);
enum http_action api_gateway_callback_route(struct http_request *req, struct http_response *resp);
enum http_action api_admin_merchant_profile(struct http_request *req, struct http_response *resp);
enum http_action api_admin_fee_set(struct http_request *req, struct http_response *resp);
enum http_action api_admin_fees(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_profile(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_qr(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_activity(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_refund(struct http_request *req, struct http_response *resp);
enum http_action api_me_qr_scan(struct http_request *req, struct http_response *resp);
enum http_action api_me_pay(struct http_request *req, struct http_response *resp);
enum http_action api_me_quote(struct http_request *req, struct http_response *resp);
enum http_action api_me_send(struct http_request *req, struct http_response *resp);
enum http_action api_me_handle(struct http_request *req, struct http_response *resp);
enum http_action api_me_activity(struct http_request *req, struct http_response *resp);
enum http_action api_me_operation(struct http_request *req, struct http_response *resp);

#endif
