/*
 * risk_freeze.h - freezing a customer's or a merchant's accounts (risk/freeze.h holds the
 * decision; this file makes the ledger follow it), the routes staff use, and the few checks the
 * payment routes make.
 *
 *   POST /v1/risk/parties/{id}/freeze    {reason, blocks_incoming?}, Idempotency-Key -> 200
 *   POST /v1/risk/parties/{id}/unfreeze  {reason}, Idempotency-Key                  -> 200
 *   GET  /v1/risk/parties/{id}/freeze    the state, the accounts, the history (reasons opened)
 *   GET  /v1/risk/freezes                ?cursor&limit: the current freezes, newest first
 *
 * Who: risk and admin write; support and auditors read too. {id} is a customer ("usr_...",
 * role customer) or a merchant ("mer_..." with a payment profile): anything else answers 404,
 * a merchant not yet onboarded 409 (it has no ledger account to freeze, and the one onboarding
 * opens would not be).
 *
 * Rules:
 *   - The party's accounts are the customer's wallets (identity's wallet list) or the merchant's
 *     account. The freeze row is the truth and the accounts follow it (settling): a frozen
 *     party's accounts carry LEDGER_ACCOUNT_FROZEN, an unfrozen party's do not. Settling reads
 *     each account and changes only those that differ, through the writer with the key
 *     "freeze:<party>:<freeze id>:<account>" (unfreeze: "unfreeze:<party>:<freeze id>:<account>"),
 *     then reads the state again and settles again if it moved meanwhile, at most
 *     API_RISK_SETTLE_ROUNDS_MAX times. Closed accounts (their owner closed their Coffer
 *     account) stay as they are: frozen and closed for good.
 *   - Freeze records the freeze, then settles; unfreeze records the unfreeze (the row goes),
 *     then settles. A crash in between leaves accounts behind their row; repeating the request
 *     with its key (or any freeze of a frozen party, which answers 409) settles them. The crash
 *     window of an unfreeze thus leaves accounts frozen (the safe side), never a frozen party
 *     with open accounts after the unfreeze answered.
 *   - Freezing a frozen party answers 409 conflict; unfreezing a party that is not frozen 409
 *     conflict. The same Idempotency-Key answers the request's event again with the party's
 *     state now; another request under it 422 idempotency_key_reused.
 *   - blocks_incoming defaults to the server's freeze_blocks_incoming setting (api->
 *     freeze_blocks_incoming). Outgoing money is refused by the ledger: a frozen account takes
 *     no debit (account_frozen). Incoming money reaches a frozen party unless its freeze
 *     blocks_incoming: then the payment routes refuse to pay it before recording anything
 *     (api_risk_party_check_incoming), with the same 422 account_frozen.
 *   - A customer's wallet opened while they are frozen is opened frozen (api_risk_wallet_flags,
 *     api_risk_wallet_settle, used by api_pay_wallet).
 *   - Every freeze and unfreeze writes one audit line, risk.freeze / risk.unfreeze, target the
 *     party, actor the staff member, detail the event id (and blocks_incoming); never the
 *     reason. Reading a party's freeze (reasons opened) writes staff.risk.freeze_view.
 *   - Reasons are staff notes: shown to staff on these routes only, never to the customer or
 *     merchant, never in a problem detail, never logged.
 */
#ifndef COFFER_API_RISK_FREEZE_H
#define COFFER_API_RISK_FREEZE_H

#include "api/api.h"
#include "risk/freeze.h"

#define API_RISK_ACCOUNTS_MAX IDENTITY_WALLET_ACCOUNTS_MAX /* a party's ledger accounts */
#define API_RISK_SETTLE_ROUNDS_MAX 4 /* settling passes while the freeze keeps changing */
#define API_RISK_HISTORY_SHOWN 50    /* events GET .../freeze shows, newest first */

/* One ledger account of a party as settling left it. */
struct api_risk_account {
    uint64_t id;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    bool frozen;
    bool closed;
};

/* What a freeze or an unfreeze did. */
struct api_risk_outcome {
    struct risk_freeze_event event; /* the freeze or unfreeze recorded (or replayed) */
    bool replay;                    /* the key had recorded it before */
    bool frozen;                    /* the party's state once settled */
    struct api_risk_account accounts[API_RISK_ACCOUNTS_MAX];
    size_t accounts_n;
    const char *detail; /* a refusal's reason for the problem detail (static text), or NULL */
};

/* For in-process callers (an AML case decision, a sanctions hit) as for the routes: freezes
 * party (usr_/mer_) for reason, by `by` (a staff id or a process's name), idem NULL or a
 * namespaced key; writes the audit line; settles the accounts; fills *out. CF_ERR_NOT_FOUND for
 * an unknown party, CF_ERR_CONFLICT when it is frozen already (its accounts are settled anyway)
 * or a merchant without a payment profile, risk_freeze_put's other errors, a ledger error when
 * an account could not be changed (the freeze stays recorded: repeat to finish). ctx (may be
 * NULL) is the request's origin for the audit line. Runs on a worker thread (it waits on the
 * writer). */
CF_WARN_UNUSED enum cf_err
api_risk_party_freeze(struct api *api, struct arena *arena, const struct identity_ctx *ctx,
                      const char *party, const char *reason, bool blocks_incoming, const char *by,
                      const struct risk_freeze_idem *idem, struct api_risk_outcome *out);
/* Unfreezes party likewise; CF_ERR_CONFLICT when it is not frozen. */
CF_WARN_UNUSED enum cf_err
api_risk_party_unfreeze(struct api *api, struct arena *arena, const struct identity_ctx *ctx,
                        const char *party, const char *reason, const char *by,
                        const struct risk_freeze_idem *idem, struct api_risk_outcome *out);

/* CF_ERR_ACCOUNT_FROZEN when party ("" and NULL: the outside world, never refused) is frozen
 * with blocks_incoming; CF_OK otherwise (also without a freeze store); a storage error when the
 * freeze cannot be read (the payment is refused then, not let through). */
CF_WARN_UNUSED enum cf_err api_risk_party_check_incoming(struct api *api, const char *party);
/* The ledger flags a wallet opened now for user_id must carry: LEDGER_ACCOUNT_FROZEN while the
 * user is frozen, else 0. *flags_out untouched on error. */
CF_WARN_UNUSED enum cf_err api_risk_wallet_flags(struct api *api, const char *user_id,
                                                 uint32_t *flags_out);
/* After a wallet is opened and listed for user_id: makes its flag match the user's state now,
 * in case a freeze or unfreeze settled the user's wallets between api_risk_wallet_flags and
 * the listing. */
CF_WARN_UNUSED enum cf_err api_risk_wallet_settle(struct api *api, struct arena *arena,
                                                  const char *user_id, uint64_t account_id);

/* Handlers. */
enum http_action api_risk_freeze(struct http_request *req, struct http_response *resp);
enum http_action api_risk_unfreeze(struct http_request *req, struct http_response *resp);
enum http_action api_risk_freeze_get(struct http_request *req, struct http_response *resp);
enum http_action api_risk_freezes_list(struct http_request *req, struct http_response *resp);

#endif
