/*
 * decisions.h - the decision log: one row per scored money movement, what the rules decided and
 * why, the feature vector they saw, and the analyst's review of a held movement.
 *
 * The payment path scores a movement (rules_evaluate) before it commits and records the outcome
 * here with risk_decisions_put, keyed by the payment operation's id: the payer, the kind, the
 * amount and currency, the action, the set version, the matching rules (ids and reasons) and
 * the whole struct risk_features. Rows are written once; only their review part changes, along
 * one state machine:
 *
 *     put(review NONE)    ---- no review: allow, challenge, block (final from the start)
 *     put(review PENDING) --risk_decisions_review_set(PENDING, APPROVED)--> APPROVED (final)
 *                          `-risk_decisions_review_set(PENDING, DECLINED)--> DECLINED (final)
 *
 * (review_set takes any from/to pair the caller names and only checks the row is in `from`:
 * the caller, the API, owns which transitions exist; the ones above are the API's.)
 *
 * Invariants:
 *   1. One row per op id: putting the same op id again is CF_OK and changes nothing (the first
 *      row stands, whatever the second says).
 *   2. reviewer, review_reason and decided_at_us are set together, by review_set, and only then.
 *   3. The stored features are exactly the vector put (the serialized form round-trips).
 *
 * The feature vector is stored as a JSON object, version 1, with one member per feature of the
 * registry (rules_feature_at) under its name, in registry order, and "v": 1 first:
 *   {"v":1,"amount_minor":1200,"currency":"EUR",...,"payee_new":true,...,"sum_24h_payee":0}
 * integers as decimal, texts as JSON strings (bytes other than printable ASCII, '"' and '\' as
 * \u00XX), booleans as true/false. A reader takes members in any order, ignores unknown ones
 * and leaves missing ones zero, so a later version may add features; a version other than 1 is
 * CF_ERR_CORRUPT. Matches are stored as text: "action:id:reason" items joined by ','
 * (ids and reasons are [a-z0-9_], so neither separator can occur in them).
 *
 * Velocity keys (version 2 of the schema). A row also keeps the four velocity keys its movement
 * was scored under (risk/velocity.h: "u:<payer>|EUR", "d:<device>|EUR", "i:<address>|EUR",
 * "p:<payee>|EUR", "" when the movement had none) and counted_at_us: when the movement was
 * recorded in the velocity counters, 0 when it was not (a block, a challenge not answered, a
 * row written before version 2, whose keys are all ""). The payment path puts a row counted at
 * its creation time when it goes on at once (allow, a review that holds the money) and marks a
 * challenge counted (risk_decisions_counted_set) only once the step-up is answered, so the
 * counted rows of a day are exactly what the counters saw and a restart can rebuild them
 * (risk_decisions_recent_keys). The device and address parts are never the raw session id or
 * IP address: they are pseudonyms (risk_decisions_pseudonym), and the store refuses a key that
 * is not printable ASCII without spaces.
 *
 * Personal data: the party is an id; the feature vector holds no name, address or document
 * (countries and counts only); the device and IP keys are keyed hashes, not the values. The
 * review reason is a staff note: 0..RISK_DECISIONS_REASON_CHARS_MAX characters of UTF-8 without
 * control characters (tab, CR, LF allowed), sealed at rest with the master key under the aad
 * "risk_decisions:<op id>:review_reason". Only risk_decisions_get opens it; list leaves it "".
 * Never log one.
 *
 * Errors: CF_ERR_INVALID_FIELD for a malformed op id, party, kind, currency, action, review
 * state, by, reason or filter; CF_ERR_NOT_FOUND for an unknown op id; CF_ERR_CONFLICT when
 * review_set finds the row in another state; CF_ERR_CONFIG when no master key seals (for
 * pseudonym: when master key 1 is not loaded); CF_ERR_CORRUPT when a stored row does not read
 * back (features, matches, a sealed reason, a key); the SQL facade's errors (CF_ERR_STORAGE,
 * CF_ERR_STORAGE_CONFLICT, CF_ERR_NOMEM). On failure every function leaves its outputs untouched,
 * except the arrays of list, recent_features and recent_keys, which may be partly written (their
 * *n_out is untouched).
 *
 * Concurrency: every function that reads or writes the database is one transaction; the handle
 * may be shared by any number of threads. Two puts of one op id at once record one row (the
 * other is CF_OK, changing nothing); two review_sets from PENDING at once: one is recorded, the
 * other CF_ERR_CONFLICT. The tables live in the service database, schema "risk_decisions",
 * through the SQL facade (SQLite and PostgreSQL).
 */
#ifndef COFFER_RISK_DECISIONS_H
#define COFFER_RISK_DECISIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "risk/rules.h"

struct sqldb;
struct vault;

/* Limits ----------------------------------------------------------------------------------------
 */

#define RISK_DECISIONS_OP_BYTES_MAX 48    /* an operation id, NUL included */
#define RISK_DECISIONS_PARTY_BYTES_MAX 48 /* the payer "usr_..."/"mer_...", NUL included; by */
#define RISK_DECISIONS_KIND_BYTES_MAX RULES_TEXT_BYTES_MAX     /* "send", "payment" ... */
#define RISK_DECISIONS_CURRENCY_BYTES_MAX RULES_TEXT_BYTES_MAX /* a currency or asset code */
/* A review reason: a sentence or two for the record, not a case file. */
#define RISK_DECISIONS_REASON_CHARS_MAX 500
#define RISK_DECISIONS_REASON_BYTES_MAX (4 * RISK_DECISIONS_REASON_CHARS_MAX + 1) /* UTF-8, NUL */
#define RISK_DECISIONS_LIST_MAX 100 /* rows one list call returns */
/* Feature vectors one recent_features call returns (a dry run's history): about 330 bytes each,
 * so 100000 is some 38 MB with their op ids; a day of a busy deployment. */
#define RISK_DECISIONS_RECENT_MAX 100000
#define RISK_DECISIONS_FEATURES_VERSION 1 /* "v" of the stored feature vector */
/* The stored feature text: about 40 bytes for each of the 38 features, with room. */
#define RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX 4096
/* The stored matches text: 16 times "challenge:" + 40 + ":" + 40 + ",". */
#define RISK_DECISIONS_MATCHES_TEXT_BYTES_MAX (RULES_MATCHES_MAX * 96)
/* A stored velocity key, NUL included: what the counters take (risk/velocity.h). */
#define RISK_DECISIONS_KEY_BYTES_MAX (VELOCITY_KEY_BYTES_MAX + 1)
/* Counted rows one recent_keys call returns: one short transaction of about 400 KB. */
#define RISK_DECISIONS_KEYS_PAGE_MAX 1000
/* A pseudonym: the first 16 bytes of the keyed hash (128 bits: no collision among the devices
 * and addresses of many lifetimes), as 32 lower-case hex digits and a NUL. */
#define RISK_DECISIONS_PSEUDONYM_BYTES 16
#define RISK_DECISIONS_PSEUDONYM_HEX_BYTES (2 * RISK_DECISIONS_PSEUDONYM_BYTES + 1)
/* The master key whose blind-index key hashes pseudonyms: a fixed one (as identity's blind
 * indexes), so a key rotation does not change a device's or an address's pseudonym. */
#define RISK_DECISIONS_PSEUDONYM_KEY_ID 1u

enum risk_review_state {
    RISK_REVIEW_NONE = 0,     /* no review: the decision was final */
    RISK_REVIEW_PENDING = 1,  /* held until an analyst decides */
    RISK_REVIEW_APPROVED = 2, /* the analyst let it through */
    RISK_REVIEW_DECLINED = 3, /* the analyst refused it */
    RISK_REVIEW_STATES_N
};

/* One scored movement. Texts are NUL-terminated. About 3 KB (the reason buffer). */
struct risk_decision_rec {
    uint64_t row; /* insertion order; list's cursor. Set by the store (ignored by put) */
    char op_id[RISK_DECISIONS_OP_BYTES_MAX];
    char party[RISK_DECISIONS_PARTY_BYTES_MAX]; /* the payer */
    char kind[RISK_DECISIONS_KIND_BYTES_MAX];
    int64_t amount_minor; /* >= 0 */
    char currency[RISK_DECISIONS_CURRENCY_BYTES_MAX];
    uint8_t action; /* enum rules_action */
    uint64_t set_version;
    size_t matches_n; /* 0..RULES_MATCHES_MAX */
    size_t matches_omitted_n;
    struct rules_match matches[RULES_MATCHES_MAX];
    struct risk_features features;
    uint8_t review_state;                                /* enum risk_review_state */
    char reviewer[RISK_DECISIONS_PARTY_BYTES_MAX];       /* "" until reviewed */
    char review_reason[RISK_DECISIONS_REASON_BYTES_MAX]; /* plaintext; "" when not opened */
    int64_t created_at_us;
    int64_t decided_at_us; /* 0 until reviewed */
    /* The velocity keys by enum rules_key, "" when none (see above). */
    char keys[RULES_KEYS_N][RISK_DECISIONS_KEY_BYTES_MAX];
    int64_t counted_at_us; /* when counted in the velocity counters; 0: not counted */
};

/* One counted movement, as the warm start of the velocity counters reads it. */
struct risk_decisions_counted {
    uint64_t row;
    int64_t counted_at_us;                                 /* > 0 */
    int64_t amount_minor;                                  /* >= 0 */
    char keys[RULES_KEYS_N][RISK_DECISIONS_KEY_BYTES_MAX]; /* "" when none */
};

/* Where recent_keys goes on: after the row (counted_at_us, row); zero: from the start. */
struct risk_decisions_cursor {
    int64_t at_us;
    uint64_t row;
};

/* What list selects: every member is optional. */
struct risk_decisions_filter {
    bool action_set;
    uint8_t action; /* enum rules_action, when action_set */
    bool review_set;
    uint8_t review_state; /* enum risk_review_state, when review_set */
    const char *party;    /* NULL: any payer */
    int64_t from_us;      /* created_at_us >= from_us; 0: no bound */
    int64_t to_us;        /* created_at_us < to_us; 0: no bound */
    uint64_t before_row;  /* cursor: rows below it; 0: from the newest */
};

struct risk_decisions;

/* The current master keys: key_id 0 for the active set (sealing), else a set holding key_id
 * (opening); NULL when none holds it (payments_vault_fn's contract). */
typedef const struct vault *(*risk_decisions_vault_fn)(void *ctx, uint32_t key_id);

/* Applies the "risk_decisions" schema to db and returns the handle (risk_decisions_close frees
 * it). db and the vault's owner must outlive the handle. */
CF_WARN_UNUSED enum cf_err risk_decisions_open(struct sqldb *db, risk_decisions_vault_fn vault,
                                               void *vault_ctx, struct risk_decisions **out);
void risk_decisions_close(struct risk_decisions *d); /* NULL ok */

/* The state's name ("none", "pending", "approved", "declined"), static storage; "unknown" for
 * anything else. And back: CF_ERR_INVALID_FIELD for any other text, *out untouched. */
const char *risk_review_state_name(uint8_t state);
CF_WARN_UNUSED enum cf_err risk_review_state_parse(const char *text, size_t len, uint8_t *out);

/* Whether text is a review reason this module takes (see above); *detail_out (may be NULL)
 * says why not: "reason: at most 500 characters" or "reason: no control characters". */
bool risk_decisions_reason_valid(const char *text, const char **detail_out);

/* Fills a record's decision part from an evaluation (action, set version, matches). */
void risk_decision_rec_from(struct risk_decision_rec *rec, const struct rules_decision *decision);

/* Writes f's stored form (the JSON object above, NUL-terminated) into out: for showing a
 * feature vector to staff with the same names the rules use. Cannot fail. */
void risk_decisions_features_text(const struct risk_features *f,
                                  char out[RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX]);

/*
 * Records rec (its row, reviewer, review_reason and decided_at_us are ignored; review_state
 * must be NONE or PENDING; op_id 1..RISK_DECISIONS_OP_BYTES_MAX - 1 printable ASCII bytes,
 * party likewise or "" for none, kind and currency non-empty and printable, amount >= 0, each
 * key "" or 1..VELOCITY_KEY_BYTES_MAX printable bytes without spaces, counted_at_us >= 0).
 * Idempotent on op id: the same op again is CF_OK and changes nothing. A row with review_state
 * PENDING (money held until an analyst decides) is committed durably; any other is committed
 * relaxed (sql_begin_relaxed: no wait for the disk), because it records what happened without
 * gating money, and the payment path writes one per movement: a power loss may lose the last
 * few such rows (their operations stand; a dry run then sees fewer decisions).
 */
CF_WARN_UNUSED enum cf_err risk_decisions_put(struct risk_decisions *d,
                                              const struct risk_decision_rec *rec);

/* The row of op_id, its review reason opened. CF_ERR_NOT_FOUND. */
CF_WARN_UNUSED enum cf_err risk_decisions_get(struct risk_decisions *d, const char *op_id,
                                              struct risk_decision_rec *out);

/* Moves op_id's review from from_state to to_state (both < RISK_REVIEW_STATES_N, different),
 * by `by` (printable ASCII, 1..RISK_DECISIONS_PARTY_BYTES_MAX - 1 bytes), with reason (NULL or
 * "" for none; sealed) at now_us. CF_ERR_NOT_FOUND for an unknown op; CF_ERR_CONFLICT when the
 * row is not in from_state. */
CF_WARN_UNUSED enum cf_err risk_decisions_review_set(struct risk_decisions *d, const char *op_id,
                                                     uint8_t from_state, uint8_t to_state,
                                                     const char *by, const char *reason,
                                                     int64_t now_us);

/* The rows f selects (f may be NULL: all), newest first, at most max (<= RISK_DECISIONS_LIST_
 * MAX); review reasons not opened. *n_out may be 0. The last row's `row` is the next page's
 * before_row. */
CF_WARN_UNUSED enum cf_err risk_decisions_list(struct risk_decisions *d,
                                               const struct risk_decisions_filter *f,
                                               struct risk_decision_rec *out, size_t max,
                                               size_t *n_out);

/* Marks op_id counted in the velocity counters at at_us (> 0), when it is not yet: for a
 * challenge, once answered. CF_OK when it was counted already (the first time stands);
 * CF_ERR_NOT_FOUND for an unknown op. Committed relaxed, like the row it marks. */
CF_WARN_UNUSED enum cf_err risk_decisions_counted_set(struct risk_decisions *d, const char *op_id,
                                                      int64_t at_us);

/*
 * One page of the counted movements with counted_at_us >= since_us, oldest first (by
 * counted_at_us, then row), strictly after *cursor: at most max (1..RISK_DECISIONS_KEYS_PAGE_MAX)
 * into out, *n_out of them, and *cursor moved to the last one. Fewer than max: the end. One short
 * transaction per call, so a caller reading a day page by page never holds the database long.
 * On error *cursor and *n_out are untouched (out may be partly written).
 */
CF_WARN_UNUSED enum cf_err risk_decisions_recent_keys(struct risk_decisions *d, int64_t since_us,
                                                      struct risk_decisions_cursor *cursor,
                                                      struct risk_decisions_counted *out,
                                                      size_t max, size_t *n_out);

/* The cursor from which recent_keys reads the newest total_max (>= 1) counted movements with
 * counted_at_us >= since_us: zero when there are no more than that, else the newest one left
 * out. For a caller that bounds what it reads and would rather lose the oldest. */
CF_WARN_UNUSED enum cf_err risk_decisions_recent_keys_start(struct risk_decisions *d,
                                                            int64_t since_us, size_t total_max,
                                                            struct risk_decisions_cursor *out);

/*
 * The pseudonym of value (a session id, an IP address: 1..VELOCITY_KEY_BYTES_MAX bytes) under
 * domain (a non-empty constant naming what it is, so a device and an address never share one):
 * hex of the first RISK_DECISIONS_PSEUDONYM_BYTES of vault_blind (HMAC-SHA-256 under the
 * blind-index key derived from master key RISK_DECISIONS_PSEUDONYM_KEY_ID; crypto/vault.h) into
 * out. The same value always gives the same pseudonym, across restarts and key rotations; without
 * the master key it cannot be computed nor reversed. CF_ERR_CONFIG when that master key is not
 * loaded; CF_ERR_INVALID_FIELD for an empty or too long value. out is untouched on failure.
 */
CF_WARN_UNUSED enum cf_err risk_decisions_pseudonym(struct risk_decisions *d, const char *domain,
                                                    const char *value,
                                                    char out[RISK_DECISIONS_PSEUDONYM_HEX_BYTES]);

/* The feature vectors of the movements recorded at or after since_us, newest first, at most max
 * (<= RISK_DECISIONS_RECENT_MAX), with their op ids in op_ids (same index). For dry runs:
 * allocate out and op_ids on the heap. *n_out may be 0. */
CF_WARN_UNUSED enum cf_err risk_decisions_recent_features(
    struct risk_decisions *d, int64_t since_us, struct risk_features *out,
    char (*op_ids)[RISK_DECISIONS_OP_BYTES_MAX], size_t max, size_t *n_out);

#endif
