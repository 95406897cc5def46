/*
 * freeze.h - account freezes: which customers and merchants staff froze, why, by whom and since
 * when, and the history of every freeze and unfreeze.
 *
 * A party is a customer ("usr_...") or a merchant ("mer_..."), an id of the identity service.
 * A party is frozen while it has a row in risk_freezes (one at most: the party is the primary
 * key). Every freeze and every unfreeze appends one event to risk_freeze_events, which is never
 * updated or deleted; the current row names the freeze event that made it:
 *
 *     not frozen --risk_freeze_put--> frozen (event frz_...) --risk_freeze_clear--> not frozen
 *                                        |                          (event ufz_..., freeze_id
 *                                        `--risk_freeze_put: CF_ERR_CONFLICT   = the frz_...)
 *
 * This module holds the decision only; it knows neither the ledger nor HTTP. The API
 * (src/api/risk_freeze.c) makes the ledger follow it: LEDGER_ACCOUNT_FROZEN on every account
 * of a frozen party (a frozen account takes no debit: the customer can receive but not send),
 * off again once it is unfrozen. blocks_incoming is the freeze's second setting, which the
 * payment routes read (risk_freeze_peek) to refuse paying a party that may not receive either.
 *
 * Reasons are staff notes that may name personal facts: 1..RISK_FREEZE_REASON_CHARS_MAX
 * characters of UTF-8 without control characters (tab, CR and LF allowed), sealed at rest with
 * the master key under the aad "risk_freeze:<event id>:reason". Only risk_freeze_get and
 * risk_freeze_history open them; peek and list leave reason "". Never log one.
 *
 * Idempotency: put and clear take an optional key (struct risk_freeze_idem: a caller-namespaced
 * key and the SHA-256 of the request). A key already used answers its stored event with
 * *replay_out set, whatever the party's state is now; the same key with another request hash
 * or another party, or a freeze's key given to clear (and the converse), is
 * CF_ERR_IDEM_KEY_REUSED.
 *
 * Errors: CF_ERR_INVALID_FIELD for a malformed party, reason, by or key; CF_ERR_CONFLICT when
 * putting a freeze on a frozen party; CF_ERR_NOT_FOUND when clearing, getting or peeking a party
 * that is not frozen; CF_ERR_IDEM_KEY_REUSED as above; CF_ERR_CONFIG when no master key seals;
 * CF_ERR_CORRUPT when a stored reason does not open; the SQL facade's errors (CF_ERR_STORAGE,
 * CF_ERR_NOMEM). Every function leaves its outputs untouched on failure.
 *
 * Concurrency: every function is one transaction; the handle may be shared by any number of
 * threads. Two freezes of one party at once: one is recorded, the other is CF_ERR_CONFLICT (or,
 * with the same key, the first one's replay). Two unfreezes at once: one is recorded, the other
 * is CF_ERR_NOT_FOUND (or the replay). The tables live in the service database (the identity
 * database), schema "risk_freeze", through the SQL facade.
 */
#ifndef COFFER_RISK_FREEZE_H
#define COFFER_RISK_FREEZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"

struct sqldb;
struct vault;

/* Limits ----------------------------------------------------------------------------------------
 */

#define RISK_FREEZE_PARTY_BYTES_MAX 48 /* "usr_..."/"mer_..." (17 bytes), NUL included; also by */
#define RISK_FREEZE_ID_BYTES_MAX 24    /* an event id "frz_..."/"ufz_...": ID_TEXT_BYTES_MAX */
/* A reason: a sentence or two for the next analyst, not a case file (cases keep documents). */
#define RISK_FREEZE_REASON_CHARS_MAX 500
#define RISK_FREEZE_REASON_BYTES_MAX (4 * RISK_FREEZE_REASON_CHARS_MAX + 1) /* UTF-8, NUL */
#define RISK_FREEZE_IDEM_BYTES_MAX 200 /* a namespaced idempotency key, NUL included */
#define RISK_FREEZE_LIST_MAX 100       /* rows one list call returns */
#define RISK_FREEZE_HISTORY_MAX 100    /* events one history call returns */

#define RISK_FREEZE_ID_PREFIX "frz_"
#define RISK_UNFREEZE_ID_PREFIX "ufz_"

enum risk_freeze_kind { RISK_FREEZE_EVENT_FREEZE = 1, RISK_FREEZE_EVENT_UNFREEZE = 2 };

/* One event: a freeze (the current freeze of a frozen party is its freeze event) or an
 * unfreeze. */
struct risk_freeze_event {
    uint64_t row; /* history order; the list's cursor (the freeze event's row) */
    char id[RISK_FREEZE_ID_BYTES_MAX];
    uint8_t kind; /* enum risk_freeze_kind */
    char party[RISK_FREEZE_PARTY_BYTES_MAX];
    char reason[RISK_FREEZE_REASON_BYTES_MAX]; /* plaintext in memory; "" when not opened */
    bool blocks_incoming;                      /* a freeze's setting; false for an unfreeze */
    char freeze_id[RISK_FREEZE_ID_BYTES_MAX];  /* an unfreeze: the freeze it ended; else "" */
    char by[RISK_FREEZE_PARTY_BYTES_MAX];      /* who: a staff user id, or a process's name */
    int64_t at_us;
};

/* A caller's idempotency key (1..RISK_FREEZE_IDEM_BYTES_MAX - 1 printable ASCII bytes,
 * namespaced by the caller: "usr_1:key", "aml:case_9") and its request's SHA-256. */
struct risk_freeze_idem {
    const char *key;
    uint8_t request_hash[HASH_BYTES];
};

struct risk_freeze;

/* The current master keys: key_id 0 for the active set (sealing), else a set holding key_id
 * (opening); NULL when none holds it (payments_vault_fn's contract). */
typedef const struct vault *(*risk_freeze_vault_fn)(void *ctx, uint32_t key_id);

/* Applies the "risk_freeze" schema to db and returns the handle (risk_freeze_close frees it).
 * db and the vault's owner must outlive the handle. */
CF_WARN_UNUSED enum cf_err risk_freeze_open(struct sqldb *db, risk_freeze_vault_fn vault,
                                            void *vault_ctx, struct risk_freeze **out);
void risk_freeze_close(struct risk_freeze *f); /* NULL ok */

/* Whether text is a party id this module takes: "usr_" or "mer_" and a valid id code. */
bool risk_freeze_party_valid(const char *text);
/* Whether text is a reason this module takes (see above); *detail_out (may be NULL) says why
 * not: "reason: 1 to 500 characters" or "reason: no control characters". */
bool risk_freeze_reason_valid(const char *text, const char **detail_out);

/* Freezes party: records the freeze event and the current row, at now_us, by `by` (1 to
 * RISK_FREEZE_PARTY_BYTES_MAX - 1 printable ASCII bytes). idem may be NULL. *out gets the event
 * (its reason opened) and *replay_out (may be NULL) whether idem's key had made it before.
 * CF_ERR_CONFLICT when the party is frozen already. */
CF_WARN_UNUSED enum cf_err risk_freeze_put(struct risk_freeze *f, const char *party,
                                           const char *reason, bool blocks_incoming, const char *by,
                                           const struct risk_freeze_idem *idem, int64_t now_us,
                                           struct risk_freeze_event *out, bool *replay_out);
/* Unfreezes party: records the unfreeze event (freeze_id: the freeze it ends) and removes the
 * current row, in one transaction. CF_ERR_NOT_FOUND when the party is not frozen. */
CF_WARN_UNUSED enum cf_err risk_freeze_clear(struct risk_freeze *f, const char *party,
                                             const char *reason, const char *by,
                                             const struct risk_freeze_idem *idem, int64_t now_us,
                                             struct risk_freeze_event *out, bool *replay_out);

/* The party's current freeze (its freeze event), reason opened. CF_ERR_NOT_FOUND when the party
 * is not frozen (also for a malformed party). */
CF_WARN_UNUSED enum cf_err risk_freeze_get(struct risk_freeze *f, const char *party,
                                           struct risk_freeze_event *out);
/* The same without opening the reason (reason ""): one indexed read, for the payment path. */
CF_WARN_UNUSED enum cf_err risk_freeze_peek(struct risk_freeze *f, const char *party,
                                            struct risk_freeze_event *out);
/* The party's events, newest first, at most max (<= RISK_FREEZE_HISTORY_MAX), reasons opened;
 * *n_out may be 0. */
CF_WARN_UNUSED enum cf_err risk_freeze_history(struct risk_freeze *f, const char *party,
                                               struct risk_freeze_event *out, size_t max,
                                               size_t *n_out);
/* The current freezes, newest first, whose freeze event's row is below before_row (0: from the
 * newest), at most max (<= RISK_FREEZE_LIST_MAX); reasons not opened. The last row's `row` is
 * the next page's before_row. */
CF_WARN_UNUSED enum cf_err risk_freeze_list(struct risk_freeze *f, uint64_t before_row,
                                            struct risk_freeze_event *out, size_t max,
                                            size_t *n_out);

#endif
