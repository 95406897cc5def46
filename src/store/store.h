/*
 * store.h - the storage contract: one table of operations that every backend implements.
 *
 * The ledger writer and the API read and write only through struct store_ops; only files under
 * src/store/<backend>/ speak SQL. SQLite (src/store/sqlite) is the default backend; a PostgreSQL
 * backend plugs in by providing the same table.
 *
 * Two sides:
 *   - the writer side (w_*): exactly one thread, the ledger writer, uses it. Every w_* call
 *     other than w_begin happens between w_begin and w_commit/w_rollback, so a whole group
 *     commit is one database transaction: all of it is durable when w_commit returns CF_OK,
 *     none of it when it fails.
 *   - the reader side (r_*): any thread borrows a reader with r_open, which starts a read
 *     transaction; every r_* call on that reader sees the same consistent snapshot until
 *     r_close gives it back.
 *
 * Several servers (stores that are not single_writer, such as PostgreSQL): w_begin also takes
 * the database's one global write lock for the rest of the transaction (PostgreSQL: a
 * transaction-scoped advisory lock), so batches from every server apply one at a time in one
 * journal order and the hash chain stays linear. The writer then re-reads w_head and every
 * account inside that transaction; nothing is cached across batches.
 *
 * A backend may send a batch's writes without waiting for their answers (PostgreSQL pipelines
 * them): a write's error is then reported by a later w_* read or at the latest by w_commit,
 * which fails, so a batch with a failed write never commits.
 *
 * After any w_* call fails other than with CF_ERR_NOT_FOUND, the batch is dead: the writer calls
 * w_rollback (PostgreSQL aborts the transaction at the first failed statement; SQLite would go
 * on, but the writer does not rely on that).
 *
 * Errors: CF_ERR_NOT_FOUND for a missing row, CF_ERR_STORAGE for anything the database says
 * went wrong (the caller answers 503), CF_ERR_STORAGE_CONFLICT for a serialization failure or
 * deadlock (SQLSTATE 40001, 40P01: the writer retries the whole batch a bounded number of
 * times), CF_ERR_CORRUPT when stored data breaks the schema's rules. Outputs are untouched on
 * error. A lost connection is CF_ERR_STORAGE; the backend reconnects on the next w_begin or
 * r_open.
 *
 * Memory: strings returned by the store (owner, metadata, idempotency bodies, entry metadata and
 * keys) are copied into the arena the caller passes and die with it.
 */
#ifndef COFFER_STORE_STORE_H
#define COFFER_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/assert.h"
#include "core/error.h"
#include "ledger/ledger.h"

struct store;
struct store_reader;

/* What the writer needs to carry on after a restart: the end of the journal. */
struct store_head {
    uint64_t last_seq;        /* 0 for an empty journal */
    uint64_t last_account_id; /* 0 when there are no accounts */
    uint8_t last_hash[HASH_BYTES];
};

/* An account as a reader sees it, with its descriptive fields. */
struct store_account_row {
    struct ledger_account account;
    const char *owner;    /* NUL-terminated, "" when none; in the caller's arena */
    const char *metadata; /* JSON text, "" when none; in the caller's arena */
};

/* A stored response for an Idempotency-Key. */
struct store_idem_record {
    uint8_t request_hash[HASH_BYTES];
    int http_status;
    const char *body; /* in the caller's arena when read */
    size_t body_len;
    int64_t created_at_us;
};

/* Per-currency sums over all accounts, for metrics and the conservation check. Sums of int64
 * totals can pass INT64_MAX, so they are 128-bit. */
struct store_currency_totals {
    char currency[MONEY_CODE_BYTES_MAX + 1];
    __int128 debits_posted, credits_posted, debits_pending, credits_pending;
    uint64_t accounts;
};

struct store_ops {
    const char *name;
    /* true when this process is the only writer of the database, so the writer may cache
     * accounts between batches (SQLite: enforced by a lock file). */
    bool single_writer;

    void (*close)(struct store *s);

    /* Writer side ------------------------------------------------------------------------- */
    enum cf_err (*w_begin)(struct store *s);
    enum cf_err (*w_commit)(struct store *s);
    void (*w_rollback)(struct store *s);
    enum cf_err (*w_head)(struct store *s, struct store_head *out);
    enum cf_err (*w_account_get)(struct store *s, uint64_t id, struct ledger_account *out);
    enum cf_err (*w_account_insert)(struct store *s, const struct ledger_account *a,
                                    const char *owner, size_t owner_len, const char *metadata,
                                    size_t metadata_len);
    /* Optional (NULL: the writer reads accounts one by one with w_account_get). Reads, inside
     * the batch, those of ids[0..n) that exist (duplicates and unknown ids allowed) into out, in
     * any order, *found_out <= n; one round trip instead of one per account. */
    enum cf_err (*w_accounts_prefetch)(struct store *s, const uint64_t *ids, size_t n,
                                       struct ledger_account *out, size_t *found_out);
    /* Writes totals and flags of an existing account. */
    enum cf_err (*w_account_update)(struct store *s, const struct ledger_account *a);
    enum cf_err (*w_entry_get)(struct store *s, uint64_t seq, struct ledger_entry *out,
                               struct arena *arena);
    enum cf_err (*w_entry_find_key)(struct store *s, const char *key, size_t key_len,
                                    struct ledger_entry *out, struct arena *arena);
    enum cf_err (*w_entry_insert)(struct store *s, const struct ledger_entry *e);
    /* Writes status, resolved_amount and resolution_seq of an existing entry. */
    enum cf_err (*w_entry_resolve)(struct store *s, const struct ledger_entry *e);
    enum cf_err (*w_idem_get)(struct store *s, const char *key, size_t key_len,
                              struct store_idem_record *out, struct arena *arena);
    /* Optional (NULL: one w_idem_get per key). Looks up keys[0..n) (printable ASCII, lengths in
     * key_lens) inside the batch; each stored one fills out[j] with its key in out_keys[j] /
     * out_key_lens[j]; *found_out <= n. Strings in arena. One round trip for the batch. */
    enum cf_err (*w_idem_prefetch)(struct store *s, const char *const *keys, const size_t *key_lens,
                                   size_t n, struct store_idem_record *out, const char **out_keys,
                                   size_t *out_key_lens, size_t *found_out, struct arena *arena);
    enum cf_err (*w_idem_put)(struct store *s, const char *key, size_t key_len,
                              const struct store_idem_record *r);
    enum cf_err (*w_idem_purge)(struct store *s, int64_t created_before_us);
    /* Up to max seqs of PENDING entries still pending whose expiry is <= now_us, oldest first. */
    enum cf_err (*w_expired)(struct store *s, int64_t now_us, uint64_t *seqs, size_t max,
                             size_t *n_out);
    /* Small settings (the operator token's hash). Outside a batch; each put is durable. */
    enum cf_err (*meta_get)(struct store *s, const char *key, char *buf, size_t buf_bytes);
    enum cf_err (*meta_put)(struct store *s, const char *key, const char *value);

    /* Reader side ------------------------------------------------------------------------- */
    enum cf_err (*r_open)(struct store *s, struct store_reader **out);
    void (*r_close)(struct store_reader *r);
    enum cf_err (*r_account_get)(struct store_reader *r, uint64_t id, struct store_account_row *out,
                                 struct arena *arena);
    /* Accounts with id > after_id in id order; *n_out <= max. */
    enum cf_err (*r_accounts_list)(struct store_reader *r, uint64_t after_id, size_t max,
                                   struct store_account_row *out, size_t *n_out,
                                   struct arena *arena);
    enum cf_err (*r_entry_get)(struct store_reader *r, uint64_t seq, struct ledger_entry *out,
                               struct arena *arena);
    /* Entries touching account_id with seq < before_seq, newest first. */
    enum cf_err (*r_account_entries)(struct store_reader *r, uint64_t account_id,
                                     uint64_t before_seq, size_t max, struct ledger_entry *out,
                                     size_t *n_out, struct arena *arena);
    /* Entries with seq > after_seq in journal order (verification, exports). */
    enum cf_err (*r_entries_scan)(struct store_reader *r, uint64_t after_seq, size_t max,
                                  struct ledger_entry *out, size_t *n_out, struct arena *arena);
    /* Up to max currencies' totals. */
    enum cf_err (*r_currency_totals)(struct store_reader *r, struct store_currency_totals *out,
                                     size_t max, size_t *n_out);
};

/* Every backend's handle starts with this. */
struct store {
    const struct store_ops *ops;
};

struct store_options {
    const char *location; /* a data directory (SQLite) or a postgresql:// URL */
    unsigned readers;     /* read connections, 1..STORE_READERS_MAX */
    bool read_only;       /* verification: open without the writer lock, never write */
    bool create;          /* create the database and run migrations when missing */
};

/* Opens the backend the location names. On success *out is owned by the caller, who closes it
 * with s->ops->close(s). */
CF_WARN_UNUSED enum cf_err store_open(const struct store_options *opts, struct store **out);

/* The backends' constructors (store_open dispatches on the location). */
CF_WARN_UNUSED enum cf_err store_sqlite_open(const struct store_options *opts, struct store **out);
CF_WARN_UNUSED enum cf_err store_postgres_open(const struct store_options *opts,
                                               struct store **out);

#endif
