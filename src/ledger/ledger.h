/*
 * ledger.h - the double-entry ledger: accounts, journal entries and the rules that move money.
 *
 * This module is pure: it never reads the clock (time is passed in), never touches storage and
 * never allocates. The writer (writer.h) feeds it accounts and pending entries and persists
 * what it returns.
 *
 * Accounts. Each has a currency, a normal side and four totals. For a credit-normal account
 * (a customer wallet) balance = credits_posted - debits_posted and its outflows are debits;
 * for a debit-normal account (a bank or clearing account) balance = debits_posted -
 * credits_posted and its outflows are credits. available = balance - pending outflows.
 *
 * Journal entries. Every movement is one immutable, hash-chained entry:
 *
 *     TRANSFER          posted at once          debits_posted/credits_posted += amount
 *     PENDING           funds held              debits_pending/credits_pending += amount
 *     POST_PENDING      hold completed with x   pending -= held; posted += x (x <= held)
 *     VOID_PENDING      hold released           pending -= held
 *     EXPIRE_PENDING    hold timed out          pending -= held
 *
 *   A PENDING entry's status moves once: pending -> posted | voided | expired.
 *
 * Invariants (checked by CF_ASSERT here, re-checked from the journal by `coffer verify`):
 *   I1. Every entry changes one debit total and one credit total by the same amount, so per
 *       currency sum(debits_posted) == sum(credits_posted), and the same for pending.
 *   I2. An account with LEDGER_ACCOUNT_NO_OVERDRAFT never has available < 0.
 *   I3. No total is ever negative, and none overflows int64_t (checked arithmetic).
 *   I4. A frozen account is never debited (no new outflow, no posting of a hold on it).
 *   I5. Both sides of an entry share one currency, and the accounts differ.
 *   I6. A leg with a ceiling (credit_capped) never leaves its credited credit-normal account
 *       with balance + credits_pending above credit_max_minor: the check and the credit are one
 *       step, so two credits at once can never both pass a ceiling that has room for one.
 *       Pending inflows count because a hold's later post is at most the hold; a post, a void
 *       or an expiry is never refused by a ceiling. The ceiling belongs to the leg, not to the
 *       account, so `coffer verify` cannot re-check it from the journal.
 *
 * Every function below leaves its outputs untouched when it returns an error.
 */
#ifndef COFFER_LEDGER_LEDGER_H
#define COFFER_LEDGER_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/limits.h"

enum ledger_normal { LEDGER_NORMAL_CREDIT = 0, LEDGER_NORMAL_DEBIT = 1 };

enum ledger_account_kind {
    LEDGER_KIND_CUSTOMER = 0,
    LEDGER_KIND_MERCHANT = 1,
    LEDGER_KIND_SYSTEM = 2,
};

#define LEDGER_ACCOUNT_NO_OVERDRAFT (1u << 0)
#define LEDGER_ACCOUNT_FROZEN (1u << 1)
/* A closed account (its owner closed their Coffer account): no money in or out, for good. */
#define LEDGER_ACCOUNT_CLOSED (1u << 2)
#define LEDGER_ACCOUNT_FLAGS_ALL                                                                   \
    (LEDGER_ACCOUNT_NO_OVERDRAFT | LEDGER_ACCOUNT_FROZEN | LEDGER_ACCOUNT_CLOSED)

struct ledger_account {
    uint64_t id;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    uint8_t normal; /* enum ledger_normal */
    uint8_t kind;   /* enum ledger_account_kind */
    uint32_t flags; /* LEDGER_ACCOUNT_* */
    int64_t debits_posted;
    int64_t credits_posted;
    int64_t debits_pending;
    int64_t credits_pending;
    int64_t created_at_us;
    uint64_t last_seq; /* newest entry touching this account: the head of its history */
};

enum ledger_entry_type {
    LEDGER_ENTRY_TRANSFER = 0,
    LEDGER_ENTRY_PENDING = 1,
    LEDGER_ENTRY_POST_PENDING = 2,
    LEDGER_ENTRY_VOID_PENDING = 3,
    LEDGER_ENTRY_EXPIRE_PENDING = 4,
};

enum ledger_status {
    LEDGER_STATUS_POSTED = 0,
    LEDGER_STATUS_PENDING = 1,
    LEDGER_STATUS_VOIDED = 2,
    LEDGER_STATUS_EXPIRED = 3,
};

/*
 * One journal entry. Fields up to `hash` are immutable once committed and covered by the hash
 * chain; status, resolved_amount and resolution_seq are the current state of a PENDING entry,
 * derived from later entries and kept for fast reads.
 */
struct ledger_entry {
    uint64_t seq; /* journal position, 1, 2, 3, ...; also the transfer id */
    uint8_t type; /* enum ledger_entry_type */
    uint64_t debit_id;
    uint64_t credit_id;
    int64_t amount; /* minor units, > 0 */
    char currency[MONEY_CODE_BYTES_MAX + 1];
    char code[LEDGER_CODE_BYTES_MAX + 1];
    const char *metadata; /* JSON text or NULL; owned by whoever filled the entry */
    size_t metadata_len;
    const char *idem_key; /* batch item key or NULL; same ownership */
    size_t idem_key_len;
    uint64_t pending_seq;  /* the PENDING entry a POST/VOID/EXPIRE resolves, else 0 */
    uint64_t group_seq;    /* first entry of an atomic multi-leg group (itself when alone) */
    int64_t expires_at_us; /* PENDING with a timeout, else 0 */
    int64_t created_at_us;
    uint8_t hash[HASH_BYTES];
    /* history links (derived, not hashed; checked by verify): the previous entry touching the
     * debit account and the credit account, 0 at the start of an account's history */
    uint64_t debit_prev_seq;
    uint64_t credit_prev_seq;
    /* mutable state of PENDING entries (status is also set for the other types) */
    uint8_t status;          /* enum ledger_status */
    int64_t resolved_amount; /* amount posted by POST_PENDING */
    uint64_t resolution_seq;
};

/* What the caller asks for in one leg. Zero-initialised optional fields mean "none". */
struct ledger_leg {
    uint64_t debit_id;
    uint64_t credit_id;
    int64_t amount;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    char code[LEDGER_CODE_BYTES_MAX + 1];
    const char *metadata;
    size_t metadata_len;
    bool pending;
    int64_t timeout_s;    /* 0 = no timeout; only with pending */
    const char *idem_key; /* batch items only */
    size_t idem_key_len;
    /* An optional ceiling on the credited account (I6), e.g. a KYC tier's maximum balance:
     * with credit_capped, a credit-normal credited account must end with balance +
     * credits_pending <= credit_max_minor (>= 0), else CF_ERR_LIMIT_EXCEEDED. Ignored for a
     * debit-normal credited account (a credit is its outflow). Set by the payment code only;
     * the admin transfer API never sets it. */
    bool credit_capped;
    int64_t credit_max_minor;
};

/* Balances ------------------------------------------------------------------------------------ */

/* balance and available as defined above; they cannot overflow because totals are >= 0. */
int64_t ledger_account_balance(const struct ledger_account *a);
int64_t ledger_account_available(const struct ledger_account *a);

/* Checks an account's own invariants (I2, I3); used after every change and by verify. */
bool ledger_account_is_valid(const struct ledger_account *a);

/* Rules --------------------------------------------------------------------------------------- */

/* Checks a leg's shape before any account is looked at: amount > 0, accounts differ, code and
 * timeout within limits, a ceiling not negative (CF_ERR_INVALID_FIELD). */
CF_WARN_UNUSED enum cf_err ledger_leg_check(const struct ledger_leg *leg);

/*
 * Applies a TRANSFER or PENDING leg to the two accounts (dr is debited, cr credited): checks
 * currency, frozen, overflow, no_overdraft and the leg's ceiling on cr (I6:
 * CF_ERR_LIMIT_EXCEEDED), then updates both totals. On error neither account changes.
 */
CF_WARN_UNUSED enum cf_err ledger_leg_apply(struct ledger_account *dr, struct ledger_account *cr,
                                            const struct ledger_leg *leg);

/*
 * Resolves a PENDING entry p with a POST (amount_minor in 1..p->amount; 0 means the full amount),
 * a VOID or an EXPIRE, at time now_us. Checks that p is still pending and not past its expiry
 * (except for EXPIRE, which needs it to be past), and that a POST's debit account is not frozen.
 * Updates both accounts and p's status. On error nothing changes.
 */
CF_WARN_UNUSED enum cf_err ledger_pending_resolve(struct ledger_account *dr,
                                                  struct ledger_account *cr, struct ledger_entry *p,
                                                  uint8_t type, int64_t amount_minor,
                                                  int64_t now_us, int64_t *applied_amount_out);

/* Hash chain ---------------------------------------------------------------------------------- */

/* hash = SHA-256("coffer.journal.v1" || prev || canonical(entry)); see chain.c for the layout. */
void ledger_entry_hash(const uint8_t prev[HASH_BYTES], const struct ledger_entry *e,
                       uint8_t out[HASH_BYTES]);

/* Names for logs and JSON. */
const char *ledger_entry_type_name(uint8_t type);
const char *ledger_status_name(uint8_t status);
const char *ledger_normal_name(uint8_t normal);
const char *ledger_kind_name(uint8_t kind);
int ledger_kind_parse(const char *text); /* -1 when unknown */

#endif
