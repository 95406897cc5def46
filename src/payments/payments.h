/*
 * payments.h - the state of money movement around the ledger: operations (top-ups,
 * withdrawals, sends, merchant payments, refunds, payouts, conversions), named system accounts,
 * merchants' payment profiles and fee schedules, merchant-presented QR codes, quotes, exchange
 * rates, saved cards and gateway callbacks.
 *
 * The ledger holds the money; this module holds what each movement is for and where it stands.
 * It speaks neither HTTP nor JSON and does not know the ledger writer: the API reads an
 * operation here, runs its ledger command, and records the outcome here. The tables live in the
 * service database (the identity database: DATA/identity.db or the PostgreSQL --db), schema
 * "payments", through the SQL facade.
 *
 * An operation's life (the saga that joins this table and the ledger):
 *
 *     payments_op_begin: PROCESSING (row written, nothing moved yet)
 *        |--(ledger command "op:<id>" applied)--> COMPLETED      (payments_op_finish)
 *        |--(ledger command refused)-----------> FAILED         (payments_op_finish)
 *        |--(gateway must answer first)---------> PENDING | ACTION_REQUIRED -> COMPLETED | FAILED
 *
 * The ledger command of an operation always carries the idempotency key "op:<id>" (and
 * "op:<id>:<step>" for later steps), so re-running it after a crash is harmless: an operation
 * left PROCESSING is finished by re-submitting the same command (payments_ops_stuck lists them).
 * Nothing is acknowledged to a client before the ledger command is durable.
 *
 * Idempotency for clients: each operation stores the caller's namespaced Idempotency-Key and the
 * SHA-256 of the request; payments_op_begin on an existing key returns the stored operation, and
 * the API answers from it (another request hash is CF_ERR_IDEM_KEY_REUSED).
 *
 * Concurrency: every function is one transaction. Rows that two requests may change together
 * (a dynamic QR code, a payment being refunded, a quote) are changed by conditional updates or
 * read FOR UPDATE, so a code is used once and refunds never pass the captured amount.
 *
 * Personal data: notes are sealed with the master key (aad "op:<id>:note"); card numbers and
 * bank accounts are sealed (aad "card:<id>", "merchant:<id>:bank"); none is ever returned.
 */
#ifndef COFFER_PAYMENTS_PAYMENTS_H
#define COFFER_PAYMENTS_PAYMENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/ids.h"
#include "core/limits.h"

struct sqldb;
struct vault;

#define PAY_ID_BYTES_MAX 48    /* "top_..." style ids, NUL included */
#define PAY_PARTY_BYTES_MAX 48 /* a user id or a merchant id */
#define PAY_NOTE_BYTES_MAX 140 /* a customer's note */
#define PAY_REF_BYTES_MAX 64   /* an order reference or a gateway reference */
#define PAY_IDEM_BYTES_MAX 200 /* a namespaced idempotency key */
#define PAY_ERROR_BYTES_MAX 48 /* a stable error code */
#define PAY_SYSTEM_NAME_MAX 32 /* a system account's name */
#define PAY_LIST_MAX 200       /* rows one list call returns */

enum pay_kind {
    PAY_KIND_TOPUP = 1,
    PAY_KIND_WITHDRAWAL = 2,
    PAY_KIND_SEND = 3,
    PAY_KIND_PAYMENT = 4, /* a customer pays a merchant */
    PAY_KIND_REFUND = 5,
    PAY_KIND_PAYOUT = 6, /* a merchant's balance to its bank account */
    PAY_KIND_CONVERSION = 7,
    PAY_KIND_HOLD = 8, /* a merchant's authorization hold on a customer's wallet (paycodes.h) */
    PAY_KIND_MAX = 8,
};

enum pay_status {
    PAY_STATUS_PROCESSING = 0,
    PAY_STATUS_ACTION_REQUIRED = 1, /* the customer must answer a gateway challenge */
    PAY_STATUS_PENDING = 2,         /* funds held; the gateway's answer comes by callback */
    PAY_STATUS_COMPLETED = 3,
    PAY_STATUS_FAILED = 4,
};

/* One operation. Amounts are minor units of `currency` except credit_minor (of
 * credit_currency, what the payee receives; differs only across currencies) and, for a payment,
 * the fee, the spread and the refund counters, which are the merchant's: of credit_currency.
 * A refund is the payment backwards: currency is the merchant's, credit_currency the customer's. */
struct pay_op {
    char id[PAY_ID_BYTES_MAX];
    uint8_t kind;   /* enum pay_kind */
    uint8_t status; /* enum pay_status */
    char idem[PAY_IDEM_BYTES_MAX];
    uint8_t request_hash[HASH_BYTES];
    char payer[PAY_PARTY_BYTES_MAX]; /* usr_..., mer_..., or "" for the outside world */
    char payee[PAY_PARTY_BYTES_MAX];
    uint64_t payer_account; /* ledger account ids, 0 when outside */
    uint64_t payee_account;
    int64_t amount_minor;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    int64_t fee_minor; /* in currency; charged as its own leg */
    int64_t credit_minor;
    char credit_currency[MONEY_CODE_BYTES_MAX + 1];
    int64_t rate_e9; /* 0 when no conversion */
    char quote_id[PAY_ID_BYTES_MAX];
    char parent_id[PAY_ID_BYTES_MAX];  /* a refund's payment */
    int64_t refunded_minor;            /* a payment's refunds so far (reserved included) */
    int64_t fee_returned_minor;        /* a payment's fee returned by refunds so far */
    int64_t spread_minor;              /* an FX payment's spread (credit_currency); a refund's
                                        * share of it (currency) */
    int64_t debit_returned_minor;      /* a payment's amount_minor given back by refunds so far */
    int64_t spread_returned_minor;     /* a payment's spread given back by refunds so far */
    bool return_fee;                   /* a refund request (not stored): give back the payment's
                                        * fee share */
    bool review;                       /* held for an analyst before its legs run (monitoring) */
    int64_t payee_max_balance_minor;   /* the ceiling the legs crediting payee_account carry
                                        * (ledger.h, I6): the payee's KYC maximum balance in
                                        * credit_currency; -1: none (older rows read -1) */
    /* In (not stored): the payer's outgoing limits, checked by payments_op_begin when set. */
    bool limits_on;
    int64_t daily_out_minor;   /* -1: none */
    int64_t monthly_out_minor; /* -1: none */
    int64_t day_start_us;      /* the UTC day and month the totals count from */
    int64_t month_start_us;
    char reference[PAY_REF_BYTES_MAX]; /* order reference, QR code id */
    char note[PAY_NOTE_BYTES_MAX];     /* plaintext in memory; sealed at rest */
    char gateway_ref[PAY_REF_BYTES_MAX];
    char instrument[PAY_ID_BYTES_MAX]; /* card id or "bank" */
    uint64_t ledger_seq;               /* the journal entry (first leg) once completed */
    uint64_t hold_seq;                 /* a held top-up's pending entry */
    char error[PAY_ERROR_BYTES_MAX];   /* a failed operation's stable error code */
    int64_t created_at_us;
    int64_t updated_at_us;
    uint64_t row; /* list order and cursor */
};

struct payments;

/* The current master keys: key_id 0 for the active set (sealing), else a set holding key_id
 * (opening); NULL when none holds it. Keys may be rotated while Coffer runs. */
typedef const struct vault *(*payments_vault_fn)(void *ctx, uint32_t key_id);

/* Applies the "payments" schema to db and returns the handle. The vault seals notes, card
 * numbers and bank accounts; db and the vault's owner must outlive the handle. */
CF_WARN_UNUSED enum cf_err payments_open(struct sqldb *db, payments_vault_fn vault, void *vault_ctx,
                                         struct payments **out);
void payments_close(struct payments *p);

/* A fresh operation id with the kind's prefix (top_, wdr_, snd_, pay_, rfd_, pyo_, cnv_). */
void payments_op_id_new(enum pay_kind kind, char out[PAY_ID_BYTES_MAX]);
/* A fresh random id "<prefix><random>" (prefix such as "quo_", "qr_", "card_") into out. */
void payments_id_new(const char *prefix, char out[PAY_ID_BYTES_MAX]);
const char *pay_kind_name(uint8_t kind);
int pay_kind_parse(const char *text); /* -1 when unknown */
const char *pay_status_name(uint8_t status);

/* System accounts --------------------------------------------------------------------------- */

/* The ledger account of system account `name` in a currency; CF_ERR_NOT_FOUND when not yet
 * recorded. */
CF_WARN_UNUSED enum cf_err payments_system_get(struct payments *p, const char *name,
                                               const char *currency, uint64_t *account_id_out);
/* Records it (the first writer wins; *account_id_out gets the stored one). */
CF_WARN_UNUSED enum cf_err payments_system_put(struct payments *p, const char *name,
                                               const char *currency, uint64_t account_id,
                                               uint64_t *account_id_out);

/* Operations -------------------------------------------------------------------------------- */

/*
 * Records a new operation in PROCESSING (op->status is ignored; created and updated times are
 * now_us). When op->idem is already taken, nothing is written, *existed is true and *out gets the
 * stored operation (the caller compares request hashes). For a refund (parent_id set, amount in
 * the parent's credit_currency) the parent payment is locked and the refund's shares are priced
 * from it with fee_prorate_share: the fee share when return_fee is set (else none), and for a
 * cross-currency parent the amount the customer gets back in the parent's currency
 * (credit_minor: the parent's amount in proportion, so refunds sum exactly to what was paid) and
 * the spread share (spread_minor); the caller's fee_minor, credit_minor and spread_minor are
 * ignored. The parent's counters grow by them in the same transaction: CF_ERR_REFUND_EXCEEDS
 * when the refund would pass what the merchant received (the parent's credit_minor),
 * CF_ERR_CONFLICT when the parent is not a completed payment.
 * With limits_on, the payer's outgoing total in the currency (withdrawals, sends with their
 * fee, payments, holds; not failed) since day_start_us, and since month_start_us, plus this
 * operation's, must stay within daily_out_minor and monthly_out_minor: CF_ERR_LIMIT_EXCEEDED
 * otherwise. The check and the insert hold a per-payer lock row, so two operations at once
 * can never both pass a limit that has room for one.
 * payee_max_balance_minor (>= -1) is stored as given and read back by every read of the row.
 */
CF_WARN_UNUSED enum cf_err payments_op_begin(struct payments *p, const struct pay_op *op,
                                             int64_t now_us, struct pay_op *out, bool *existed);
CF_WARN_UNUSED enum cf_err payments_op_get(struct payments *p, const char *id, struct pay_op *out);
/*
 * The bank account of a top-up or withdrawal under review (op->review), kept so that an
 * analyst's approval can reach the gateway: sealed at rest under the aad "op:<id>:bank", and
 * forgotten (NULL) once the operation ends. Only an operation under review keeps one.
 * keep: CF_ERR_INVALID_FIELD for an empty or over-long account, CF_ERR_NOT_FOUND when op_id is
 * not an operation under review. get: CF_ERR_NOT_FOUND when none is kept (never, or forgotten);
 * bank_out gets it with its NUL (wipe it after use). forget: CF_OK also when none was kept.
 */
#define PAY_OP_BANK_BYTES_MAX 64 /* an IBAN or account number and its NUL */
CF_WARN_UNUSED enum cf_err payments_op_bank_keep(struct payments *p, const char *op_id,
                                                 const char *bank);
CF_WARN_UNUSED enum cf_err payments_op_bank_get(struct payments *p, const char *op_id,
                                                char bank_out[PAY_OP_BANK_BYTES_MAX]);
CF_WARN_UNUSED enum cf_err payments_op_bank_forget(struct payments *p, const char *op_id);
/* The operation a namespaced Idempotency-Key made; CF_ERR_NOT_FOUND when none. */
CF_WARN_UNUSED enum cf_err payments_op_by_idem(struct payments *p, const char *idem,
                                               struct pay_op *out);
/* The operation with a gateway reference (top-ups, withdrawals, payouts). */
CF_WARN_UNUSED enum cf_err payments_op_by_gateway_ref(struct payments *p, const char *ref,
                                                      struct pay_op *out);

/* What a state change records alongside the new status (fields left 0, NULL or "" are kept). */
struct pay_op_update {
    uint8_t status;
    uint64_t ledger_seq;
    uint64_t hold_seq;
    const char *gateway_ref;
    const char *error;
    /* The outcome of a ledger command the ledger's idempotency record can restore (recovery
     * re-runs the command under the same key): its commit need not wait for the disk. */
    bool relaxed;
};
/*
 * Moves an operation from one of the statuses in from_mask (bit 1 << status) to u->status.
 * CF_ERR_CONFLICT when it is in none of them (a late or repeated answer: nothing changes).
 * A refund moving to FAILED gives its amount and shares back to its parent's counters.
 */
CF_WARN_UNUSED enum cf_err payments_op_update(struct payments *p, const char *id,
                                              uint32_t from_mask, const struct pay_op_update *u,
                                              int64_t now_us);

/* Whether party may see op: its payer always; its payee when the operation completed, when it
 * came from outside Coffer (a top-up's every state is its customer's own), or when the payee
 * made it (a merchant's hold). A payee never sees someone's failed or unfinished attempt to
 * pay them. */
bool payments_op_visible(const struct pay_op *op, const char *party);

/* A history filter; zero fields match everything. Lists what payments_op_visible admits. */
struct pay_filter {
    const char *party;      /* required: the customer's or merchant's id */
    int64_t from_us, to_us; /* created_at in [from, to) */
    uint8_t kind;
    const char *currency;
    uint64_t before_row; /* cursor: rows older than this one */
};
/* Newest first, up to max (at most PAY_LIST_MAX). */
CF_WARN_UNUSED enum cf_err payments_ops_list(struct payments *p, const struct pay_filter *f,
                                             struct pay_op *out, size_t max, size_t *n_out);
/* Operations still PROCESSING that were last changed before older_than_us, after row after_row
 * (0 for the first page), in row order (crash recovery pages through them with the last row). */
CF_WARN_UNUSED enum cf_err payments_ops_stuck(struct payments *p, int64_t older_than_us,
                                              uint64_t after_row, struct pay_op *out, size_t max,
                                              size_t *n_out);
/* COMPLETED operations in completion order: those whose (updated_at_us, row) is after
 * (after_us, after_row), ordered by (updated_at_us, row), up to max (at most PAY_LIST_MAX). A
 * completed operation's updated_at_us is its completion, or a later change of a payment's
 * refund counters (it is listed again then). The AML sweep (api/risk_cases.h) pages through
 * them with the last row's (updated_at_us, row). Read-only. */
CF_WARN_UNUSED enum cf_err payments_ops_completed_since(struct payments *p, int64_t after_us,
                                                        uint64_t after_row, struct pay_op *out,
                                                        size_t max, size_t *n_out);

/* Merchants --------------------------------------------------------------------------------- */

#define PAY_MCC_BYTES 5
#define PAY_COUNTRY_BYTES 3
#define PAY_CITY_BYTES_MAX 16 /* EMVCo limits the city to 15 characters */
#define PAY_MERCHANT_NAME_BYTES_MAX 26

/* A merchant's payment profile (its organisation and users are in identity). */
struct pay_merchant {
    char merchant_id[PAY_PARTY_BYTES_MAX];
    char display_name[PAY_MERCHANT_NAME_BYTES_MAX];
    char mcc[PAY_MCC_BYTES];
    char country[PAY_COUNTRY_BYTES];
    char city[PAY_CITY_BYTES_MAX];
    char currency[MONEY_CODE_BYTES_MAX + 1]; /* settlement currency */
    char bank_account[40];                   /* plaintext in memory only; sealed at rest */
    char bank_last4[5];
    uint64_t account_id; /* the merchant's ledger account in its currency */
    int64_t fee_bps;     /* -1: the MCC's schedule applies */
    int64_t fee_fixed_minor;
    bool payouts_daily;
    int64_t created_at_us;
};
CF_WARN_UNUSED enum cf_err payments_merchant_put(struct payments *p, const struct pay_merchant *m,
                                                 int64_t now_us);
/* with_bank: open the sealed bank account too (payouts only). */
CF_WARN_UNUSED enum cf_err payments_merchant_get(struct payments *p, const char *merchant_id,
                                                 bool with_bank, struct pay_merchant *out);
/* Merchants with daily payouts on (for the scheduler), up to max. */
CF_WARN_UNUSED enum cf_err payments_merchants_daily(struct payments *p, struct pay_merchant *out,
                                                    size_t max, size_t *n_out);

/* The fee schedule of an MCC ("0000" is the default row). */
struct pay_fee_row {
    char mcc[PAY_MCC_BYTES];
    int64_t bps;
    int64_t fixed_minor;
};
CF_WARN_UNUSED enum cf_err payments_fee_put(struct payments *p, const struct pay_fee_row *r);
/* The MCC's row, else the default row, else {0, 0}. */
CF_WARN_UNUSED enum cf_err payments_fee_get(struct payments *p, const char *mcc,
                                            struct pay_fee_row *out);
CF_WARN_UNUSED enum cf_err payments_fee_list(struct payments *p, struct pay_fee_row *out,
                                             size_t max, size_t *n_out);

/* Merchant-presented QR codes ---------------------------------------------------------------- */

struct pay_qr {
    char id[PAY_ID_BYTES_MAX]; /* qr_... */
    char merchant_id[PAY_PARTY_BYTES_MAX];
    bool dynamic;
    int64_t amount_minor; /* dynamic only */
    char currency[MONEY_CODE_BYTES_MAX + 1];
    char reference[PAY_REF_BYTES_MAX];
    int64_t expires_at_us;          /* dynamic only */
    char used_by[PAY_ID_BYTES_MAX]; /* the payment that used a dynamic code */
    int64_t created_at_us;
};
CF_WARN_UNUSED enum cf_err payments_qr_put(struct payments *p, const struct pay_qr *q);
CF_WARN_UNUSED enum cf_err payments_qr_get(struct payments *p, const char *id, struct pay_qr *out);
/* Marks a dynamic code used by op_id: CF_ERR_QR_EXPIRED when it is used or past its expiry. */
CF_WARN_UNUSED enum cf_err payments_qr_claim(struct payments *p, const char *id, const char *op_id,
                                             int64_t now_us);
/* Gives the code back after the payment failed (only when op_id holds it). */
CF_WARN_UNUSED enum cf_err payments_qr_release(struct payments *p, const char *id,
                                               const char *op_id);

/* Quotes ------------------------------------------------------------------------------------ */

/* A price shown before the customer confirms. binding is the SHA-256 of what it prices (kind,
 * payee, amounts, currencies): the payment must bind to the same digest. */
struct pay_quote {
    char id[PAY_ID_BYTES_MAX]; /* quo_... */
    char user_id[PAY_PARTY_BYTES_MAX];
    uint8_t binding[HASH_BYTES];
    int64_t amount_minor;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    int64_t fee_minor;
    int64_t credit_minor;
    char credit_currency[MONEY_CODE_BYTES_MAX + 1];
    int64_t rate_e9;
    int64_t expires_at_us;
    char used_by[PAY_ID_BYTES_MAX];
};
CF_WARN_UNUSED enum cf_err payments_quote_put(struct payments *p, const struct pay_quote *q);
/* Uses the caller's quote for op_id: CF_ERR_QUOTE_EXPIRED when unknown, someone else's, used,
 * expired, or bound to something else. *out gets the quote. */
CF_WARN_UNUSED enum cf_err payments_quote_claim(struct payments *p, const char *id,
                                                const char *user_id,
                                                const uint8_t binding[HASH_BYTES],
                                                const char *op_id, int64_t now_us,
                                                struct pay_quote *out);
CF_WARN_UNUSED enum cf_err payments_quote_release(struct payments *p, const char *id,
                                                  const char *op_id);

/* Exchange rates ----------------------------------------------------------------------------- */

CF_WARN_UNUSED enum cf_err payments_rate_put(struct payments *p, const char *base,
                                             const char *quote, int64_t rate_e9, int64_t now_us);
/* CF_ERR_NO_RATE when none is set. */
CF_WARN_UNUSED enum cf_err payments_rate_get(struct payments *p, const char *base,
                                             const char *quote, int64_t *rate_e9_out);

/* One row of the rates table: 1 base = rate_e9 / 10^9 quote (money/fx.h). */
struct pay_rate {
    char base[MONEY_CODE_BYTES_MAX + 1];
    char quote[MONEY_CODE_BYTES_MAX + 1];
    int64_t rate_e9;
    int64_t updated_at_us;
};
/* Writes rates[0..n) (n >= 1, every rate_e9 > 0; updated_at_us is ignored) in one transaction,
 * each stamped now_us: all of them, or none when an error is returned (a rates file is loaded
 * whole or not at all). */
CF_WARN_UNUSED enum cf_err payments_rates_put(struct payments *p, const struct pay_rate *rates,
                                              size_t n, int64_t now_us);
/* Every rate, by base then quote, at most max (*n_out of them). */
CF_WARN_UNUSED enum cf_err payments_rates_list(struct payments *p, struct pay_rate *out, size_t max,
                                               size_t *n_out);

/* Gateway callbacks -------------------------------------------------------------------------- */

/* Records a callback's event id; *fresh is false when it was seen before. */
CF_WARN_UNUSED enum cf_err payments_event_record(struct payments *p, const char *event_id,
                                                 int64_t now_us, bool *fresh);

/* Saved cards (the card vault) ----------------------------------------------------------------- */

#define PAY_PAN_BYTES_MAX 20 /* 19 digits and a NUL */
#define PAY_CARDS_MAX 20     /* saved cards per customer */

/* A saved card as the API shows it: never the number, never the security code. */
struct pay_card {
    char id[PAY_ID_BYTES_MAX]; /* card_... */
    char user_id[PAY_PARTY_BYTES_MAX];
    char brand[16];
    char last4[5];
    int exp_month, exp_year;
    int64_t created_at_us;
};
/* Saves a checked card number (digits only) sealed under the master key (aad "card:<id>"). The
 * same number saved twice by one customer answers the first card (*existed). CF_ERR_CONFLICT
 * past PAY_CARDS_MAX cards. */
CF_WARN_UNUSED enum cf_err payments_card_add(struct payments *p, const struct pay_card *c,
                                             const char *pan, int64_t now_us, struct pay_card *out,
                                             bool *existed);
/* The customer's card; pan_out (PAY_PAN_BYTES_MAX, may be NULL) gets the number for the gateway
 * call only. CF_ERR_NOT_FOUND for someone else's or a removed card. */
CF_WARN_UNUSED enum cf_err payments_card_get(struct payments *p, const char *id,
                                             const char *user_id, struct pay_card *out,
                                             char *pan_out);
CF_WARN_UNUSED enum cf_err payments_cards_list(struct payments *p, const char *user_id,
                                               struct pay_card *out, size_t max, size_t *n_out);
/* Removes a card: its sealed number is erased. */
CF_WARN_UNUSED enum cf_err payments_card_remove(struct payments *p, const char *id,
                                                const char *user_id, int64_t now_us);

#endif
