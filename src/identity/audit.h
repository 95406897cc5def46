/*
 * audit.h - the audit log: append-only and hash-chained, like the ledger journal.
 *
 * Every security-relevant event is one record: sign-ins (succeeded and failed), sign-outs,
 * MFA and password changes, role changes, staff actions, data exports, account closures. A
 * record holds who (actor: a user id, "operator" for the bootstrap token, "cli" for the
 * command line, or "anonymous"), what (action, a short dotted name such as "auth.sign_in"),
 * on what (target, an id or ""), from where (ip, user agent), when (at_us, Unix microseconds),
 * the outcome ("ok", "denied", "failed") and a small detail text. Records never hold
 * passwords, codes, tokens or personal data in the clear: targets are pseudonymous ids.
 *
 * Chain: record seq n has hash = SHA-256("coffer-audit-v1" (15 bytes, no NUL) | seq | at_us |
 * actor | action | target | ip | user_agent | outcome | detail | prev_hash), each text field
 * length-prefixed (u32 big endian) and each integer 8 bytes big endian; prev_hash of seq 1 is
 * 32 zero bytes. The user agent is hashed as stored (truncated, cleaned).
 * The head (last seq, last hash) lives in one row, id_audit_head, read with SELECT ... FOR
 * UPDATE inside the appending transaction, so appends from several servers on one PostgreSQL
 * database are serialized and the chain stays linear.
 *
 * audit_append runs inside the caller's transaction, so an event and the change it records
 * commit together (or neither does). audit_verify re-hashes the whole chain.
 */
#ifndef COFFER_IDENTITY_AUDIT_H
#define COFFER_IDENTITY_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"
#include "store/sql/sql.h"

#define AUDIT_ACTOR_BYTES_MAX 64
#define AUDIT_ACTION_BYTES_MAX 64
#define AUDIT_TARGET_BYTES_MAX 64
#define AUDIT_IP_BYTES_MAX 45
#define AUDIT_UA_BYTES_MAX 256 /* longer user agents are truncated */
#define AUDIT_OUTCOME_BYTES_MAX 16
#define AUDIT_DETAIL_BYTES_MAX 256
#define AUDIT_PAGE_MAX 1000

struct audit_event {
    const char *actor;
    const char *action;
    const char *target;     /* may be NULL: "" */
    const char *ip;         /* may be NULL: "" */
    const char *user_agent; /* may be NULL: ""; truncated to AUDIT_UA_BYTES_MAX */
    const char *outcome;
    const char *detail; /* may be NULL: "" */
    int64_t at_us;
};

/* A stored record; its texts are copied in, NUL-terminated. */
struct audit_record {
    uint64_t seq;
    int64_t at_us;
    char actor[AUDIT_ACTOR_BYTES_MAX + 1];
    char action[AUDIT_ACTION_BYTES_MAX + 1];
    char target[AUDIT_TARGET_BYTES_MAX + 1];
    char ip[AUDIT_IP_BYTES_MAX + 1];
    char user_agent[AUDIT_UA_BYTES_MAX + 1];
    char outcome[AUDIT_OUTCOME_BYTES_MAX + 1];
    char detail[AUDIT_DETAIL_BYTES_MAX + 1];
    uint8_t hash[HASH_BYTES];
};

/* Filters for audit_list; empty strings and zeros mean "any". Records come in seq order,
 * after after_seq, at most limit (<= AUDIT_PAGE_MAX). */
struct audit_filter {
    const char *actor;
    const char *action; /* exact, or a prefix ending in '.' ("auth.") */
    const char *target;
    const char *outcome;
    int64_t from_us; /* inclusive; 0 = any */
    int64_t to_us;   /* exclusive; 0 = any */
    uint64_t after_seq;
    size_t limit;
};

/* The schema migration for the audit tables (id_audit, id_audit_head), to include in the
 * identity schema's migration list. */
extern const struct sql_migration audit_migration;

/* Appends ev inside tx. Fields longer than their bound are refused with CF_ERR_INVALID_FIELD,
 * except the user agent, which is truncated (and its bytes outside printable ASCII become '?').
 * actor, action and outcome must be non-empty; they, target and ip must be printable ASCII;
 * detail must be UTF-8 without control characters (CF_ERR_INVALID_FIELD otherwise).
 * CF_ERR_CORRUPT when the head row is missing or malformed. *seq_out (may be NULL) gets the
 * new seq. On any error the caller rolls tx back. */
CF_WARN_UNUSED enum cf_err audit_append(struct sqltx *tx, const struct audit_event *ev,
                                        uint64_t *seq_out);

/* Appends n events in order inside tx, reading and moving the head once (the audit queue's
 * group append). Any refused event fails the whole call. */
CF_WARN_UNUSED enum cf_err audit_append_many(struct sqltx *tx, const struct audit_event *evs,
                                             size_t n);

/* Reads up to f->limit records matching f into out (caller's array of f->limit); *n_out gets
 * how many. CF_ERR_INVALID_FIELD when a filter text is longer than its field's bound. */
CF_WARN_UNUSED enum cf_err audit_list(struct sqltx *tx, const struct audit_filter *f,
                                      struct audit_record *out, size_t *n_out);

/* Re-hashes the chain in one snapshot; CF_ERR_CORRUPT (with *bad_seq_out) at the first record
 * whose seq, hash or link is wrong, or when the head row disagrees with the last record (then
 * *bad_seq_out is the first record the head fails to cover: the last record when only its hash
 * differs, 0 when the log is empty or the head row is missing). On success *n_out gets the
 * count. Neither output is touched otherwise. */
CF_WARN_UNUSED enum cf_err audit_verify(struct sqldb *db, uint64_t *n_out, uint64_t *bad_seq_out);

#endif
