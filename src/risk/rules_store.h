/*
 * rules_store.h - the monitoring rules as data: every version of every rule, who changed it and
 * when, and the version of the whole set.
 *
 * A rule (rules.h: id, condition, action, reason, description, enabled) is never edited in
 * place. Every change appends one version row to risk_rule_versions, which is never updated or
 * deleted:
 *
 *     (no rule) --create--> live v1 --update/disable/enable--> live v2 ... --delete--> deleted vN
 *         ^                                                                               |
 *         `----------------- create again (vN+1: versions of an id never restart) --------'
 *
 * Invariants:
 *   1. A rule's versions are 1, 2, 3 ... with no gap, across deletes and re-creates.
 *   2. The set version grows by exactly one with every change (every row appended), in the same
 *      transaction; each version row records the set version it made. It starts at 0 (no rule
 *      ever). So "set version 7" names one exact set: the latest version, as of the change that
 *      made 7, of every rule whose latest version is not a delete.
 *   3. The current set is the latest version of every rule whose latest change is not a delete:
 *      at most RULES_SET_MAX rules.
 *   4. Every stored version compiled (rules_rule_compile) when it was written: a condition that
 *      does not compile is refused and never stored.
 *
 * Change kinds:
 *   create   def complete; CF_ERR_CONFLICT when the id is live (not when deleted: it comes back,
 *            with the next version number), or when RULES_SET_MAX rules are live.
 *   update   def complete (a new version, whatever differs); CF_ERR_NOT_FOUND when not live.
 *            Recorded as an enable or a disable when only the enabled flag differs from the
 *            latest version (decided in the change's transaction), so the history says so.
 *   disable  only def->id is read: the latest version again with enabled false; CF_ERR_CONFLICT
 *   enable   when the rule is already disabled (enabled); CF_ERR_NOT_FOUND when not live.
 *   delete   only def->id is read: the latest version again, marked deleted; CF_ERR_NOT_FOUND
 *            when not live.
 *
 * Base version (optimistic concurrency between analysts): a change may name the rule's version
 * it was made from (risk_rules_store_change_based): the id's latest version, live or deleted, 0
 * for an id never created. When that is not the latest version when the change's transaction
 * runs, someone changed the rule meanwhile and the change is refused (CF_ERR_CONFLICT, field
 * "base_version"), writing nothing. The check runs in the change's transaction after it took
 * the set version's lock, so no change can commit between the check and the write. The rule's
 * own version is checked, not the set version: a change to another rule does not make an
 * analyst's edit stale.
 *
 * Idempotency: a change may carry a key (struct risk_rules_idem: a caller-namespaced key and the
 * SHA-256 of the request). A key already used answers the version it made with *replay_out set,
 * whatever the rules are now; the same key with another request hash is
 * CF_ERR_IDEM_KEY_REUSED.
 *
 * Errors: CF_ERR_INVALID_FIELD for a rule that does not compile (*error_out says the field, the
 * condition's column and why: rules.h), a malformed id for disable/enable/delete, a malformed by
 * or key; CF_ERR_CONFLICT and CF_ERR_NOT_FOUND as above (CF_ERR_CONFLICT fills *error_out too:
 * field "id", message "exists", "at most 200 live rules", "already disabled"/"already
 * enabled"; field "base_version" for a stale base); CF_ERR_IDEM_KEY_REUSED; CF_ERR_CORRUPT when
 * a stored row does not compile or breaks an invariant; the SQL facade's errors
 * (CF_ERR_STORAGE, CF_ERR_STORAGE_CONFLICT, CF_ERR_NOMEM).
 * Every function leaves its outputs untouched on failure (but *error_out, written only then).
 *
 * Rules are not personal data: nothing here is sealed, and a condition may be logged.
 *
 * Concurrency: every function is one transaction; the handle may be shared by any number of
 * threads. Changes are serialized on the set-version row (each takes its lock first), so two
 * creates of one id at once record one and refuse the other (CF_ERR_CONFLICT), and set versions
 * never repeat. risk_rules_store_current takes the same lock while it reads, so the rules it
 * answers are exactly those of the set version it answers, even while changes commit. The tables
 * live in the service database, schema "risk_rules", through the SQL facade (SQLite and
 * PostgreSQL).
 */
#ifndef COFFER_RISK_RULES_STORE_H
#define COFFER_RISK_RULES_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"
#include "risk/rules.h"

struct sqldb;

/* Limits ----------------------------------------------------------------------------------------
 */

#define RISK_RULES_BY_BYTES_MAX 48    /* a staff user id "usr_..." or a process name, NUL incl. */
#define RISK_RULES_IDEM_BYTES_MAX 200 /* a namespaced idempotency key, NUL included */
/* Versions one history call returns: a rule edited more often than this is read page by page
 * (before_version). */
#define RISK_RULES_HISTORY_MAX 100
/* risk_rules_store_change_based's base_version when there is none: no check. */
#define RISK_RULES_BASE_NONE (-1)

enum risk_rules_change {
    RISK_RULES_CHANGE_CREATE = 1,
    RISK_RULES_CHANGE_UPDATE = 2,
    RISK_RULES_CHANGE_DISABLE = 3,
    RISK_RULES_CHANGE_ENABLE = 4,
    RISK_RULES_CHANGE_DELETE = 5,
};

/* One stored version of a rule. Texts are NUL-terminated. About 1.5 KB. */
struct risk_rules_version {
    char id[RULES_ID_BYTES_MAX + 1];
    uint32_t version; /* 1, 2, 3 ... per id */
    char condition[RULES_EXPR_BYTES_MAX + 1];
    uint8_t action; /* enum rules_action */
    char reason[RULES_REASON_BYTES_MAX + 1];
    char description[RULES_DESCRIPTION_BYTES_MAX + 1]; /* "" when none */
    bool enabled;
    uint8_t change; /* enum risk_rules_change that made this version */
    char changed_by[RISK_RULES_BY_BYTES_MAX];
    int64_t changed_at_us;
    uint64_t set_version; /* the set version this change made */
};

/* A caller's idempotency key (1..RISK_RULES_IDEM_BYTES_MAX - 1 printable ASCII bytes,
 * namespaced by the caller: "usr_1:key") and its request's SHA-256. */
struct risk_rules_idem {
    const char *key;
    uint8_t request_hash[HASH_BYTES];
};

struct risk_rules_store;

/* Applies the "risk_rules" schema to db and returns the handle (risk_rules_store_close frees
 * it). db must outlive the handle. */
CF_WARN_UNUSED enum cf_err risk_rules_store_open(struct sqldb *db, struct risk_rules_store **out);
void risk_rules_store_close(struct risk_rules_store *s); /* NULL ok */

/* The change's name ("create", "update", "disable", "enable", "delete"), static storage;
 * "unknown" for anything else. */
const char *risk_rules_change_name(uint8_t change);

/* A definition pointing into v's texts (valid while v is). */
void risk_rules_version_def(const struct risk_rules_version *v, struct rules_rule_def *out);

/*
 * Records one change (see "Change kinds") by `by` (1..RISK_RULES_BY_BYTES_MAX - 1 printable
 * ASCII bytes) at now_us; idem may be NULL. On success *out (may be NULL) gets the version
 * written (or replayed), *set_version_out (may be NULL) the set version it made, *replay_out
 * (may be NULL) whether idem's key had made it before. error_out may be NULL.
 */
CF_WARN_UNUSED enum cf_err risk_rules_store_change(struct risk_rules_store *s,
                                                   const struct rules_rule_def *def,
                                                   enum risk_rules_change kind, const char *by,
                                                   const struct risk_rules_idem *idem,
                                                   int64_t now_us, struct risk_rules_version *out,
                                                   uint64_t *set_version_out, bool *replay_out,
                                                   struct rules_error *error_out);

/* risk_rules_store_change made from base_version (see "Base version": 0..UINT32_MAX, or
 * RISK_RULES_BASE_NONE for no check, which is risk_rules_store_change). A stale base is
 * CF_ERR_CONFLICT, *error_out field "base_version", nothing written. idem's key is looked at
 * first: a replay answers the version it made even though its base is stale by now. */
CF_WARN_UNUSED enum cf_err
risk_rules_store_change_based(struct risk_rules_store *s, const struct rules_rule_def *def,
                              enum risk_rules_change kind, int64_t base_version, const char *by,
                              const struct risk_rules_idem *idem, int64_t now_us,
                              struct risk_rules_version *out, uint64_t *set_version_out,
                              bool *replay_out, struct rules_error *error_out);

/* The current set: the latest version of every live rule, ordered by id, at most max (pass
 * RULES_SET_MAX to get them all: fewer is CF_ERR_RANGE_TOO_LARGE when more are live), and the
 * set version, read in one transaction. *n_out may be 0 (and *set_version_out 0: no change
 * ever). */
CF_WARN_UNUSED enum cf_err risk_rules_store_current(struct risk_rules_store *s,
                                                    struct risk_rules_version *out, size_t max,
                                                    size_t *n_out, uint64_t *set_version_out);

/* The latest version of rule id (len bytes) when it is live; CF_ERR_NOT_FOUND otherwise (never
 * created, deleted, malformed id). */
CF_WARN_UNUSED enum cf_err risk_rules_store_get(struct risk_rules_store *s, const char *id,
                                                size_t len, struct risk_rules_version *out);

/* The versions of rule id (len bytes), newest first, below before_version (0: from the
 * newest), at most max (<= RISK_RULES_HISTORY_MAX); deleted rules keep their history.
 * *n_out 0 for an id never created. */
CF_WARN_UNUSED enum cf_err risk_rules_store_history(struct risk_rules_store *s, const char *id,
                                                    size_t len, uint32_t before_version,
                                                    struct risk_rules_version *out, size_t max,
                                                    size_t *n_out);

/* The set version now (0: no change ever): one primary-key read, for a holder that polls for
 * changes made by other processes. */
CF_WARN_UNUSED enum cf_err risk_rules_store_set_version(struct risk_rules_store *s, uint64_t *out);

/* The version of rule id (len bytes) that set version `set_version` held: its latest version
 * made at or before that set version. CF_ERR_NOT_FOUND when the id had none then, or when that
 * version is a delete (the rule was not in the set). For showing the rule a decision ran. */
CF_WARN_UNUSED enum cf_err risk_rules_store_version_at(struct risk_rules_store *s, const char *id,
                                                       size_t len, uint64_t set_version,
                                                       struct risk_rules_version *out);

/* Compiles the current set into an immutable rules_set of its set version (rules ordered by
 * id; disabled rules are in it and never run). *out is the caller's (rules_set_destroy).
 * CF_ERR_CORRUPT when a stored rule no longer compiles (a feature left the registry), with the
 * rule's id in *bad_id_out (may be NULL; RULES_ID_BYTES_MAX + 1 bytes). */
CF_WARN_UNUSED enum cf_err risk_rules_store_set_build(struct risk_rules_store *s,
                                                      struct rules_set **out, char *bad_id_out);

#endif
