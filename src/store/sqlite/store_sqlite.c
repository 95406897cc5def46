/*
 * store_sqlite.c - the SQLite backend of the storage contract (store.h).
 *
 * One database file, <data>/coffer.db, in WAL mode with synchronous=FULL: a commit returns only
 * after the WAL is on disk. One writer connection (used by the ledger writer thread only) and a
 * pool of read connections; a read transaction on a WAL database sees one snapshot.
 * Checkpoints (copying the WAL back into the database file) run on a thread of their own with
 * its own connection, so the writer's commits only ever append to the WAL.
 * A lock file (<data>/coffer.lock, flock) keeps a second Coffer process from writing the same
 * database, which is what makes the writer's account cache safe (single_writer = true).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "store/sqlite/schema.h"
#include "store/store.h"

#define ENTRY_COLS                                                                                 \
    "seq, type, debit_id, credit_id, amount, currency, code, metadata, idem_key, pending_seq, "    \
    "group_seq, expires_at_us, created_at_us, hash, status, resolved_amount, resolution_seq, "     \
    "debit_prev_seq, credit_prev_seq"
#define ACCOUNT_COLS                                                                               \
    "id, currency, normal, kind, flags, debits_posted, credits_posted, debits_pending, "           \
    "credits_pending, created_at_us, owner, metadata, last_seq"

enum w_stmt {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_ACCOUNT_GET,
    W_ACCOUNT_INSERT,
    W_ACCOUNT_UPDATE,
    W_ENTRY_GET,
    W_ENTRY_KEY,
    W_ENTRY_INSERT,
    W_ENTRY_RESOLVE,
    W_IDEM_GET,
    W_IDEM_PUT,
    W_IDEM_PURGE,
    W_EXPIRED,
    W_LAST_ENTRY,
    W_LAST_ACCOUNT,
    W_META_GET,
    W_META_PUT,
    W_STMT_COUNT
};

static const char *const w_sql[W_STMT_COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_ACCOUNT_GET] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = ?1",
    [W_ACCOUNT_INSERT] = "INSERT INTO accounts (" ACCOUNT_COLS ") VALUES "
                         "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [W_ACCOUNT_UPDATE] = "UPDATE accounts SET flags = ?2, debits_posted = ?3, credits_posted = ?4,"
                         " debits_pending = ?5, credits_pending = ?6, last_seq = ?7 WHERE id = ?1",
    [W_ENTRY_GET] = "SELECT " ENTRY_COLS " FROM entries WHERE seq = ?1",
    [W_ENTRY_KEY] = "SELECT " ENTRY_COLS " FROM entries WHERE idem_key = ?1",
    [W_ENTRY_INSERT] = "INSERT INTO entries (" ENTRY_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
                       " ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    [W_ENTRY_RESOLVE] = "UPDATE entries SET status = ?2, resolved_amount = ?3, resolution_seq = ?4"
                        " WHERE seq = ?1",
    [W_IDEM_GET] = "SELECT request_hash, http_status, body, created_at_us FROM idempotency"
                   " WHERE key = ?1",
    [W_IDEM_PUT] = "INSERT INTO idempotency (key, request_hash, http_status, body, created_at_us)"
                   " VALUES (?1, ?2, ?3, ?4, ?5)",
    [W_IDEM_PURGE] = "DELETE FROM idempotency WHERE created_at_us < ?1",
    [W_EXPIRED] = "SELECT seq FROM entries WHERE status = 1 AND expires_at_us > 0"
                  " AND expires_at_us <= ?1 ORDER BY expires_at_us LIMIT ?2",
    [W_LAST_ENTRY] = "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1",
    [W_LAST_ACCOUNT] = "SELECT max(id) FROM accounts",
    [W_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [W_META_PUT] = "INSERT INTO meta (key, value) VALUES (?1, ?2)"
                   " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
};

enum r_stmt {
    R_BEGIN,
    R_COMMIT,
    R_ACCOUNT_GET,
    R_ACCOUNTS_LIST,
    R_ENTRY_GET,
    R_ENTRIES_SCAN,
    R_TOTALS,
    R_STMT_COUNT
};

static const char *const r_sql[R_STMT_COUNT] = {
    [R_BEGIN] = "BEGIN",
    [R_COMMIT] = "COMMIT",
    [R_ACCOUNT_GET] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = ?1",
    [R_ACCOUNTS_LIST] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id > ?1 ORDER BY id LIMIT ?2",
    [R_ENTRY_GET] = "SELECT " ENTRY_COLS " FROM entries WHERE seq = ?1",
    [R_ENTRIES_SCAN] = "SELECT " ENTRY_COLS " FROM entries WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    /* Each total is summed as its high and low 32 bits, so no sum can overflow int64 for up to
     * 2^31 accounts; the caller joins them in 128 bits. */
    [R_TOTALS] = "SELECT currency,"
                 " sum(debits_posted >> 32), sum(debits_posted & 4294967295),"
                 " sum(credits_posted >> 32), sum(credits_posted & 4294967295),"
                 " sum(debits_pending >> 32), sum(debits_pending & 4294967295),"
                 " sum(credits_pending >> 32), sum(credits_pending & 4294967295),"
                 " count(*) FROM accounts GROUP BY currency ORDER BY currency",
};

struct store_reader {
    struct sqlite_store *owner;
    sqlite3 *db;
    sqlite3_stmt *stmt[R_STMT_COUNT];
    struct store_reader *next_free;
};

struct sqlite_store {
    struct store base;
    sqlite3 *wdb; /* NULL when read-only */
    sqlite3_stmt *wstmt[W_STMT_COUNT];
    int lock_fd;
    struct store_reader *readers;
    unsigned readers_n;
    struct store_reader *free_list;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    char db_path[CONFIG_PATH_BYTES_MAX];
    /* checkpointer */
    sqlite3 *cdb;
    pthread_t cthread;
    bool cthread_running;
    bool cstop;
    pthread_mutex_t cmu;
    pthread_cond_t ccv;
};

static struct sqlite_store *sq(struct store *s) { return (struct sqlite_store *)s; }

static enum cf_err db_fail(sqlite3 *db, const char *what)
{
    cf_log(LOG_ERROR, "sqlite error", "op", what, "detail", sqlite3_errmsg(db), NULL);
    return CF_ERR_STORAGE;
}

static enum cf_err stmt_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return CF_OK;
    return db_fail(sqlite3_db_handle(st), sqlite3_sql(st));
}

/* Copies a text column into a fixed buffer; CORRUPT when it does not fit. */
static enum cf_err col_text_fixed(sqlite3_stmt *st, int col, char *buf, size_t buf_bytes)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (t == NULL || n < 0 || (size_t)n >= buf_bytes)
        return CF_ERR_CORRUPT;
    memcpy(buf, t, (size_t)n);
    buf[n] = '\0';
    return CF_OK;
}

/* Copies a text/blob column into the arena (NULL column -> NULL, len 0). */
static enum cf_err col_arena(sqlite3_stmt *st, int col, struct arena *arena, const char **out,
                             size_t *len_out)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) {
        *out = NULL;
        if (len_out != NULL)
            *len_out = 0;
        return CF_OK;
    }
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    char *copy = arena_strndup(arena, p != NULL ? p : "", (size_t)n);
    if (copy == NULL)
        return CF_ERR_NOMEM;
    *out = copy;
    if (len_out != NULL)
        *len_out = (size_t)n;
    return CF_OK;
}

static enum cf_err row_account(sqlite3_stmt *st, struct ledger_account *a)
{
    memset(a, 0, sizeof(*a));
    a->id = (uint64_t)sqlite3_column_int64(st, 0);
    if (col_text_fixed(st, 1, a->currency, sizeof(a->currency)) != CF_OK)
        return CF_ERR_CORRUPT;
    a->normal = (uint8_t)sqlite3_column_int(st, 2);
    a->kind = (uint8_t)sqlite3_column_int(st, 3);
    a->flags = (uint32_t)sqlite3_column_int64(st, 4);
    a->debits_posted = sqlite3_column_int64(st, 5);
    a->credits_posted = sqlite3_column_int64(st, 6);
    a->debits_pending = sqlite3_column_int64(st, 7);
    a->credits_pending = sqlite3_column_int64(st, 8);
    a->created_at_us = sqlite3_column_int64(st, 9);
    a->last_seq = (uint64_t)sqlite3_column_int64(st, 12);
    return CF_OK;
}

static enum cf_err row_account_full(sqlite3_stmt *st, struct store_account_row *out,
                                    struct arena *arena)
{
    enum cf_err err = row_account(st, &out->account);
    if (err == CF_OK)
        err = col_arena(st, 10, arena, &out->owner, NULL);
    if (err == CF_OK)
        err = col_arena(st, 11, arena, &out->metadata, NULL);
    if (err == CF_OK && out->owner == NULL)
        out->owner = "";
    if (err == CF_OK && out->metadata == NULL)
        out->metadata = "";
    return err;
}

static enum cf_err row_entry(sqlite3_stmt *st, struct ledger_entry *e, struct arena *arena)
{
    memset(e, 0, sizeof(*e));
    e->seq = (uint64_t)sqlite3_column_int64(st, 0);
    e->type = (uint8_t)sqlite3_column_int(st, 1);
    e->debit_id = (uint64_t)sqlite3_column_int64(st, 2);
    e->credit_id = (uint64_t)sqlite3_column_int64(st, 3);
    e->amount = sqlite3_column_int64(st, 4);
    if (col_text_fixed(st, 5, e->currency, sizeof(e->currency)) != CF_OK ||
        col_text_fixed(st, 6, e->code, sizeof(e->code)) != CF_OK)
        return CF_ERR_CORRUPT;
    enum cf_err err = col_arena(st, 7, arena, &e->metadata, &e->metadata_len);
    if (err == CF_OK)
        err = col_arena(st, 8, arena, &e->idem_key, &e->idem_key_len);
    if (err != CF_OK)
        return err;
    e->pending_seq = (uint64_t)sqlite3_column_int64(st, 9);
    e->group_seq = (uint64_t)sqlite3_column_int64(st, 10);
    e->expires_at_us = sqlite3_column_int64(st, 11);
    e->created_at_us = sqlite3_column_int64(st, 12);
    if (sqlite3_column_bytes(st, 13) != HASH_BYTES)
        return CF_ERR_CORRUPT;
    memcpy(e->hash, sqlite3_column_blob(st, 13), HASH_BYTES);
    e->status = (uint8_t)sqlite3_column_int(st, 14);
    e->resolved_amount = sqlite3_column_int64(st, 15);
    e->resolution_seq = (uint64_t)sqlite3_column_int64(st, 16);
    e->debit_prev_seq = (uint64_t)sqlite3_column_int64(st, 17);
    e->credit_prev_seq = (uint64_t)sqlite3_column_int64(st, 18);
    if (e->type > LEDGER_ENTRY_EXPIRE_PENDING || e->status > LEDGER_STATUS_EXPIRED ||
        e->metadata_len > LEDGER_METADATA_BYTES_MAX || e->idem_key_len > IDEM_KEY_BYTES_MAX)
        return CF_ERR_CORRUPT;
    return CF_OK;
}

/* Runs a one-row lookup whose first bind is an int64; fills via fill() on a row. */
static enum cf_err step_one(sqlite3_stmt *st,
                            enum cf_err (*fill)(sqlite3_stmt *, void *, struct arena *), void *out,
                            struct arena *arena)
{
    int rc = sqlite3_step(st);
    enum cf_err err;
    if (rc == SQLITE_ROW)
        err = fill(st, out, arena);
    else if (rc == SQLITE_DONE)
        err = CF_ERR_NOT_FOUND;
    else
        err = db_fail(sqlite3_db_handle(st), sqlite3_sql(st));
    sqlite3_reset(st);
    return err;
}

static enum cf_err fill_account(sqlite3_stmt *st, void *out, struct arena *arena)
{
    (void)arena;
    return row_account(st, out);
}

static enum cf_err fill_account_full(sqlite3_stmt *st, void *out, struct arena *arena)
{
    return row_account_full(st, out, arena);
}

static enum cf_err fill_entry(sqlite3_stmt *st, void *out, struct arena *arena)
{
    return row_entry(st, out, arena);
}

/* Connection setup ------------------------------------------------------------------------- */

static enum cf_err db_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cf_log(LOG_ERROR, "sqlite exec failed", "detail", msg != NULL ? msg : "?", NULL);
        sqlite3_free(msg);
        return CF_ERR_STORAGE;
    }
    return CF_OK;
}

static enum cf_err db_open(const char *path, bool writable, bool create, sqlite3 **out)
{
    int flags = SQLITE_OPEN_NOMUTEX | (writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY);
    if (create)
        flags |= SQLITE_OPEN_CREATE;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        cf_log(LOG_ERROR, "cannot open database", "path", path, "detail",
               db != NULL ? sqlite3_errmsg(db) : "out of memory", NULL);
        sqlite3_close(db);
        return CF_ERR_STORAGE;
    }
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    const char *pragmas = writable ? "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                                     "PRAGMA foreign_keys = OFF; PRAGMA cache_size = -262144;"
                                     "PRAGMA temp_store = MEMORY;"
                                   : "PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;"
                                     "PRAGMA query_only = 1;";
    if (db_exec(db, pragmas) != CF_OK) {
        sqlite3_close(db);
        return CF_ERR_STORAGE;
    }
    *out = db;
    return CF_OK;
}

static enum cf_err db_prepare_all(sqlite3 *db, const char *const *sql, int n, sqlite3_stmt **out)
{
    for (int i = 0; i < n; i++) {
        if (sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &out[i], NULL) !=
            SQLITE_OK)
            return db_fail(db, sql[i]);
    }
    return CF_OK;
}

static int db_user_version(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static enum cf_err db_migrate(sqlite3 *db)
{
    int v = db_user_version(db);
    if (v < 0)
        return db_fail(db, "read schema version");
    if (v > SQLITE_SCHEMA_VERSION) {
        cf_log(LOG_ERROR, "database schema is newer than this binary", NULL);
        return CF_ERR_CONFIG;
    }
    for (int i = v; i < SQLITE_SCHEMA_VERSION; i++) {
        char set_version[64];
        snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %d;", i + 1);
        if (db_exec(db, "BEGIN IMMEDIATE") != CF_OK)
            return CF_ERR_STORAGE;
        if (db_exec(db, sqlite_migrations[i]) != CF_OK || db_exec(db, set_version) != CF_OK) {
            db_exec(db, "ROLLBACK");
            return CF_ERR_STORAGE;
        }
        if (db_exec(db, "COMMIT") != CF_OK)
            return CF_ERR_STORAGE;
        char ver[16];
        snprintf(ver, sizeof(ver), "%d", i + 1);
        cf_log(LOG_INFO, "schema migrated", "version", ver, NULL);
    }
    return CF_OK;
}

static enum cf_err lock_take(const char *dir, int *fd_out)
{
    char path[CONFIG_PATH_BYTES_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/coffer.lock", dir) >= sizeof(path))
        return CF_ERR_CONFIG;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        cf_log(LOG_ERROR, "cannot open lock file", "path", path, "detail", strerror(errno), NULL);
        return CF_ERR_IO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        cf_log(LOG_ERROR, "another coffer process is using this data directory", "path", dir, NULL);
        close(fd);
        return CF_ERR_CONFIG;
    }
    *fd_out = fd;
    return CF_OK;
}

/* Writer side ------------------------------------------------------------------------------ */

static sqlite3_stmt *wst(struct store *s, enum w_stmt i)
{
    CF_ASSERT(sq(s)->wdb != NULL);
    return sq(s)->wstmt[i];
}

static enum cf_err w_begin(struct store *s) { return stmt_done(wst(s, W_BEGIN)); }
static enum cf_err w_commit(struct store *s) { return stmt_done(wst(s, W_COMMIT)); }

static void w_rollback(struct store *s)
{
    if (!sqlite3_get_autocommit(sq(s)->wdb))
        (void)stmt_done(wst(s, W_ROLLBACK));
}

static enum cf_err w_head(struct store *s, struct store_head *out)
{
    struct store_head h;
    memset(&h, 0, sizeof(h));
    sqlite3_stmt *st = wst(s, W_LAST_ENTRY);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        h.last_seq = (uint64_t)sqlite3_column_int64(st, 0);
        if (sqlite3_column_bytes(st, 1) != HASH_BYTES) {
            sqlite3_reset(st);
            return CF_ERR_CORRUPT;
        }
        memcpy(h.last_hash, sqlite3_column_blob(st, 1), HASH_BYTES);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(sq(s)->wdb, "head");
    st = wst(s, W_LAST_ACCOUNT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        h.last_account_id = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return db_fail(sq(s)->wdb, "head");
    *out = h;
    return CF_OK;
}

static enum cf_err w_account_get(struct store *s, uint64_t id, struct ledger_account *out)
{
    sqlite3_stmt *st = wst(s, W_ACCOUNT_GET);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    return step_one(st, fill_account, out, NULL);
}

static enum cf_err w_account_insert(struct store *s, const struct ledger_account *a,
                                    const char *owner, size_t owner_len, const char *metadata,
                                    size_t metadata_len)
{
    CF_ASSERT(a->id > 0 && ledger_account_is_valid(a));
    sqlite3_stmt *st = wst(s, W_ACCOUNT_INSERT);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)a->id);
    sqlite3_bind_text(st, 2, a->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, a->normal);
    sqlite3_bind_int(st, 4, a->kind);
    sqlite3_bind_int64(st, 5, a->flags);
    sqlite3_bind_int64(st, 6, a->debits_posted);
    sqlite3_bind_int64(st, 7, a->credits_posted);
    sqlite3_bind_int64(st, 8, a->debits_pending);
    sqlite3_bind_int64(st, 9, a->credits_pending);
    sqlite3_bind_int64(st, 10, a->created_at_us);
    sqlite3_bind_text(st, 11, owner != NULL ? owner : "", (int)owner_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 12, metadata != NULL ? metadata : "", (int)metadata_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 13, (sqlite3_int64)a->last_seq);
    return stmt_done(st);
}

static enum cf_err w_account_update(struct store *s, const struct ledger_account *a)
{
    CF_ASSERT(ledger_account_is_valid(a));
    sqlite3_stmt *st = wst(s, W_ACCOUNT_UPDATE);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)a->id);
    sqlite3_bind_int64(st, 2, a->flags);
    sqlite3_bind_int64(st, 3, a->debits_posted);
    sqlite3_bind_int64(st, 4, a->credits_posted);
    sqlite3_bind_int64(st, 5, a->debits_pending);
    sqlite3_bind_int64(st, 6, a->credits_pending);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)a->last_seq);
    enum cf_err err = stmt_done(st);
    if (err == CF_OK && sqlite3_changes(sq(s)->wdb) != 1)
        return CF_ERR_CORRUPT;
    return err;
}

static enum cf_err w_entry_get(struct store *s, uint64_t seq, struct ledger_entry *out,
                               struct arena *arena)
{
    sqlite3_stmt *st = wst(s, W_ENTRY_GET);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    return step_one(st, fill_entry, out, arena);
}

static enum cf_err w_entry_find_key(struct store *s, const char *key, size_t key_len,
                                    struct ledger_entry *out, struct arena *arena)
{
    sqlite3_stmt *st = wst(s, W_ENTRY_KEY);
    sqlite3_bind_blob(st, 1, key, (int)key_len, SQLITE_STATIC);
    return step_one(st, fill_entry, out, arena);
}

static enum cf_err w_entry_insert(struct store *s, const struct ledger_entry *e)
{
    CF_ASSERT(e->seq > 0 && e->amount > 0);
    sqlite3_stmt *st = wst(s, W_ENTRY_INSERT);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)e->seq);
    sqlite3_bind_int(st, 2, e->type);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)e->debit_id);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)e->credit_id);
    sqlite3_bind_int64(st, 5, e->amount);
    sqlite3_bind_text(st, 6, e->currency, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, e->code, -1, SQLITE_STATIC);
    if (e->metadata != NULL)
        sqlite3_bind_blob(st, 8, e->metadata, (int)e->metadata_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    if (e->idem_key != NULL)
        sqlite3_bind_blob(st, 9, e->idem_key, (int)e->idem_key_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 9);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)e->pending_seq);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)e->group_seq);
    sqlite3_bind_int64(st, 12, e->expires_at_us);
    sqlite3_bind_int64(st, 13, e->created_at_us);
    sqlite3_bind_blob(st, 14, e->hash, HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int(st, 15, e->status);
    sqlite3_bind_int64(st, 16, e->resolved_amount);
    sqlite3_bind_int64(st, 17, (sqlite3_int64)e->resolution_seq);
    sqlite3_bind_int64(st, 18, (sqlite3_int64)e->debit_prev_seq);
    sqlite3_bind_int64(st, 19, (sqlite3_int64)e->credit_prev_seq);
    return stmt_done(st);
}

static enum cf_err w_entry_resolve(struct store *s, const struct ledger_entry *e)
{
    CF_ASSERT(e->type == LEDGER_ENTRY_PENDING && e->status != LEDGER_STATUS_PENDING);
    sqlite3_stmt *st = wst(s, W_ENTRY_RESOLVE);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)e->seq);
    sqlite3_bind_int(st, 2, e->status);
    sqlite3_bind_int64(st, 3, e->resolved_amount);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)e->resolution_seq);
    enum cf_err err = stmt_done(st);
    if (err == CF_OK && sqlite3_changes(sq(s)->wdb) != 1)
        return CF_ERR_CORRUPT;
    return err;
}

static enum cf_err fill_idem(sqlite3_stmt *st, void *out, struct arena *arena)
{
    struct store_idem_record *r = out;
    if (sqlite3_column_bytes(st, 0) != HASH_BYTES)
        return CF_ERR_CORRUPT;
    memcpy(r->request_hash, sqlite3_column_blob(st, 0), HASH_BYTES);
    r->http_status = sqlite3_column_int(st, 1);
    r->created_at_us = sqlite3_column_int64(st, 3);
    return col_arena(st, 2, arena, &r->body, &r->body_len);
}

static enum cf_err w_idem_get(struct store *s, const char *key, size_t key_len,
                              struct store_idem_record *out, struct arena *arena)
{
    sqlite3_stmt *st = wst(s, W_IDEM_GET);
    sqlite3_bind_blob(st, 1, key, (int)key_len, SQLITE_STATIC);
    struct store_idem_record r;
    enum cf_err err = step_one(st, fill_idem, &r, arena);
    if (err == CF_OK) {
        if (r.body == NULL)
            r.body = "";
        *out = r;
    }
    return err;
}

static enum cf_err w_idem_put(struct store *s, const char *key, size_t key_len,
                              const struct store_idem_record *r)
{
    CF_ASSERT(key_len > 0 && key_len <= IDEM_STORED_KEY_BYTES_MAX);
    sqlite3_stmt *st = wst(s, W_IDEM_PUT);
    sqlite3_bind_blob(st, 1, key, (int)key_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, r->request_hash, HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, r->http_status);
    sqlite3_bind_blob(st, 4, r->body, (int)r->body_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, r->created_at_us);
    return stmt_done(st);
}

static enum cf_err w_idem_purge(struct store *s, int64_t created_before_us)
{
    sqlite3_stmt *st = wst(s, W_IDEM_PURGE);
    sqlite3_bind_int64(st, 1, created_before_us);
    return stmt_done(st);
}

static enum cf_err w_expired(struct store *s, int64_t now_us, uint64_t *seqs, size_t max,
                             size_t *n_out)
{
    sqlite3_stmt *st = wst(s, W_EXPIRED);
    sqlite3_bind_int64(st, 1, now_us);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        CF_ASSERT(n < max);
        seqs[n++] = (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_fail(sq(s)->wdb, "expired");
    *n_out = n;
    return CF_OK;
}

static enum cf_err meta_get(struct store *s, const char *key, char *buf, size_t buf_bytes)
{
    sqlite3_stmt *st = wst(s, W_META_GET);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    enum cf_err err = CF_ERR_NOT_FOUND;
    if (rc == SQLITE_ROW)
        err = col_text_fixed(st, 0, buf, buf_bytes);
    else if (rc != SQLITE_DONE)
        err = db_fail(sq(s)->wdb, "meta get");
    sqlite3_reset(st);
    return err;
}

static enum cf_err meta_put(struct store *s, const char *key, const char *value)
{
    sqlite3_stmt *st = wst(s, W_META_PUT);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    return stmt_done(st);
}

/* Reader side ------------------------------------------------------------------------------ */

static enum cf_err r_open(struct store *s, struct store_reader **out)
{
    struct sqlite_store *ss = sq(s);
    pthread_mutex_lock(&ss->pool_mu);
    while (ss->free_list == NULL)
        pthread_cond_wait(&ss->pool_cv, &ss->pool_mu);
    struct store_reader *r = ss->free_list;
    ss->free_list = r->next_free;
    pthread_mutex_unlock(&ss->pool_mu);
    if (stmt_done(r->stmt[R_BEGIN]) != CF_OK) {
        pthread_mutex_lock(&ss->pool_mu);
        r->next_free = ss->free_list;
        ss->free_list = r;
        pthread_cond_signal(&ss->pool_cv);
        pthread_mutex_unlock(&ss->pool_mu);
        return CF_ERR_STORAGE;
    }
    *out = r;
    return CF_OK;
}

static void r_close(struct store_reader *r)
{
    struct sqlite_store *ss = r->owner;
    (void)stmt_done(r->stmt[R_COMMIT]);
    pthread_mutex_lock(&ss->pool_mu);
    r->next_free = ss->free_list;
    ss->free_list = r;
    pthread_cond_signal(&ss->pool_cv);
    pthread_mutex_unlock(&ss->pool_mu);
}

static enum cf_err r_account_get(struct store_reader *r, uint64_t id, struct store_account_row *out,
                                 struct arena *arena)
{
    sqlite3_stmt *st = r->stmt[R_ACCOUNT_GET];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    return step_one(st, fill_account_full, out, arena);
}

static enum cf_err r_accounts_list(struct store_reader *r, uint64_t after_id, size_t max,
                                   struct store_account_row *out, size_t *n_out,
                                   struct arena *arena)
{
    sqlite3_stmt *st = r->stmt[R_ACCOUNTS_LIST];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)after_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    size_t n = 0;
    int rc;
    enum cf_err err = CF_OK;
    while (err == CF_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        CF_ASSERT(n < max);
        err = row_account_full(st, &out[n++], arena);
    }
    sqlite3_reset(st);
    if (err == CF_OK && rc != SQLITE_DONE)
        err = db_fail(r->db, "accounts list");
    if (err == CF_OK)
        *n_out = n;
    return err;
}

static enum cf_err r_entry_get(struct store_reader *r, uint64_t seq, struct ledger_entry *out,
                               struct arena *arena)
{
    sqlite3_stmt *st = r->stmt[R_ENTRY_GET];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    return step_one(st, fill_entry, out, arena);
}

static enum cf_err entries_collect(struct store_reader *r, sqlite3_stmt *st, size_t max,
                                   struct ledger_entry *out, size_t *n_out, struct arena *arena)
{
    size_t n = 0;
    int rc;
    enum cf_err err = CF_OK;
    while (err == CF_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        CF_ASSERT(n < max);
        err = row_entry(st, &out[n++], arena);
    }
    sqlite3_reset(st);
    if (err == CF_OK && rc != SQLITE_DONE)
        err = db_fail(r->db, "entries");
    if (err == CF_OK)
        *n_out = n;
    return err;
}

/* The entry before e in account_id's history. */
static uint64_t entry_prev_for(const struct ledger_entry *e, uint64_t account_id)
{
    return e->debit_id == account_id ? e->debit_prev_seq : e->credit_prev_seq;
}

static enum cf_err r_account_entries(struct store_reader *r, uint64_t account_id,
                                     uint64_t before_seq, size_t max, struct ledger_entry *out,
                                     size_t *n_out, struct arena *arena)
{
    uint64_t next;
    enum cf_err err;
    if (before_seq == UINT64_MAX) {
        struct store_account_row acct;
        if ((err = r_account_get(r, account_id, &acct, arena)) != CF_OK)
            return err;
        next = acct.account.last_seq;
    } else {
        struct ledger_entry cursor;
        err = r_entry_get(r, before_seq, &cursor, arena);
        if (err == CF_ERR_NOT_FOUND ||
            (err == CF_OK && cursor.debit_id != account_id && cursor.credit_id != account_id))
            return CF_ERR_INVALID_CURSOR;
        if (err != CF_OK)
            return err;
        next = entry_prev_for(&cursor, account_id);
    }
    size_t n = 0;
    while (n < max && next != 0) {
        if ((err = r_entry_get(r, next, &out[n], arena)) != CF_OK)
            return err == CF_ERR_NOT_FOUND ? CF_ERR_CORRUPT : err;
        CF_ASSERT(out[n].seq < (n == 0 ? UINT64_MAX : out[n - 1].seq));
        next = entry_prev_for(&out[n], account_id);
        n++;
    }
    *n_out = n;
    return CF_OK;
}

static enum cf_err r_entries_scan(struct store_reader *r, uint64_t after_seq, size_t max,
                                  struct ledger_entry *out, size_t *n_out, struct arena *arena)
{
    sqlite3_stmt *st = r->stmt[R_ENTRIES_SCAN];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)after_seq);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    return entries_collect(r, st, max, out, n_out, arena);
}

static enum cf_err r_currency_totals(struct store_reader *r, struct store_currency_totals *out,
                                     size_t max, size_t *n_out)
{
    sqlite3_stmt *st = r->stmt[R_TOTALS];
    size_t n = 0;
    int rc;
    enum cf_err err = CF_OK;
    while (err == CF_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == max)
            break;
        struct store_currency_totals *t = &out[n++];
        err = col_text_fixed(st, 0, t->currency, sizeof(t->currency));
        __int128 *dst[4] = {&t->debits_posted, &t->credits_posted, &t->debits_pending,
                            &t->credits_pending};
        for (int k = 0; k < 4; k++)
            *dst[k] = (__int128)sqlite3_column_int64(st, 1 + 2 * k) * ((__int128)1 << 32) +
                      sqlite3_column_int64(st, 2 + 2 * k);
        t->accounts = (uint64_t)sqlite3_column_int64(st, 9);
    }
    sqlite3_reset(st);
    if (err == CF_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = db_fail(r->db, "totals");
    if (err == CF_OK)
        *n_out = n;
    return err;
}

/* Open and close --------------------------------------------------------------------------- */

static void *checkpoint_main(void *arg)
{
    struct sqlite_store *ss = arg;
    pthread_mutex_lock(&ss->cmu);
    while (!ss->cstop) {
        struct timespec ts = cf_deadline_after_ms(CHECKPOINT_INTERVAL_MS);
        pthread_cond_timedwait(&ss->ccv, &ss->cmu, &ts);
        if (ss->cstop)
            break;
        pthread_mutex_unlock(&ss->cmu);
        int log_frames = 0, done_frames = 0;
        int rc = sqlite3_wal_checkpoint_v2(ss->cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                           &done_frames);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            cf_log(LOG_WARN, "checkpoint failed", "detail", sqlite3_errmsg(ss->cdb), NULL);
        pthread_mutex_lock(&ss->cmu);
    }
    pthread_mutex_unlock(&ss->cmu);
    return NULL;
}

static enum cf_err checkpointer_start(struct sqlite_store *ss)
{
    if (db_open(ss->db_path, true, false, &ss->cdb) != CF_OK)
        return CF_ERR_STORAGE;
    if (db_exec(ss->wdb, "PRAGMA wal_autocheckpoint = 0") != CF_OK ||
        db_exec(ss->cdb, "PRAGMA wal_autocheckpoint = 0") != CF_OK)
        return CF_ERR_STORAGE;
    if (pthread_create(&ss->cthread, NULL, checkpoint_main, ss) != 0)
        return CF_ERR_NOMEM;
    ss->cthread_running = true;
    return CF_OK;
}

static void checkpointer_stop(struct sqlite_store *ss)
{
    if (ss->cthread_running) {
        pthread_mutex_lock(&ss->cmu);
        ss->cstop = true;
        pthread_cond_signal(&ss->ccv);
        pthread_mutex_unlock(&ss->cmu);
        pthread_join(ss->cthread, NULL);
        ss->cthread_running = false;
    }
    if (ss->cdb != NULL) {
        (void)sqlite3_wal_checkpoint_v2(ss->cdb, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(ss->cdb);
        ss->cdb = NULL;
    }
}

static void sqlite_close(struct store *s)
{
    struct sqlite_store *ss = sq(s);
    if (ss == NULL)
        return;
    checkpointer_stop(ss);
    for (unsigned i = 0; i < ss->readers_n; i++) {
        for (int j = 0; j < R_STMT_COUNT; j++)
            sqlite3_finalize(ss->readers[i].stmt[j]);
        sqlite3_close(ss->readers[i].db);
    }
    free(ss->readers);
    for (int j = 0; j < W_STMT_COUNT; j++)
        sqlite3_finalize(ss->wstmt[j]);
    if (ss->wdb != NULL)
        sqlite3_close(ss->wdb);
    if (ss->lock_fd >= 0)
        close(ss->lock_fd);
    pthread_mutex_destroy(&ss->pool_mu);
    pthread_cond_destroy(&ss->pool_cv);
    pthread_mutex_destroy(&ss->cmu);
    pthread_cond_destroy(&ss->ccv);
    free(ss);
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .single_writer = true,
    .close = sqlite_close,
    .w_begin = w_begin,
    .w_commit = w_commit,
    .w_rollback = w_rollback,
    .w_head = w_head,
    .w_account_get = w_account_get,
    .w_account_insert = w_account_insert,
    .w_account_update = w_account_update,
    .w_entry_get = w_entry_get,
    .w_entry_find_key = w_entry_find_key,
    .w_entry_insert = w_entry_insert,
    .w_entry_resolve = w_entry_resolve,
    .w_idem_get = w_idem_get,
    .w_idem_put = w_idem_put,
    .w_idem_purge = w_idem_purge,
    .w_expired = w_expired,
    .meta_get = meta_get,
    .meta_put = meta_put,
    .r_open = r_open,
    .r_close = r_close,
    .r_account_get = r_account_get,
    .r_accounts_list = r_accounts_list,
    .r_entry_get = r_entry_get,
    .r_account_entries = r_account_entries,
    .r_entries_scan = r_entries_scan,
    .r_currency_totals = r_currency_totals,
};

static enum cf_err readers_open(struct sqlite_store *ss, unsigned n)
{
    ss->readers = calloc(n, sizeof(*ss->readers));
    if (ss->readers == NULL)
        return CF_ERR_NOMEM;
    for (unsigned i = 0; i < n; i++) {
        struct store_reader *r = &ss->readers[i];
        r->owner = ss;
        if (db_open(ss->db_path, false, false, &r->db) != CF_OK)
            return CF_ERR_STORAGE;
        ss->readers_n = i + 1;
        if (db_prepare_all(r->db, r_sql, R_STMT_COUNT, r->stmt) != CF_OK)
            return CF_ERR_STORAGE;
        r->next_free = ss->free_list;
        ss->free_list = r;
    }
    return CF_OK;
}

static enum cf_err writer_open(struct sqlite_store *ss, const struct store_options *opts)
{
    enum cf_err err = lock_take(opts->location, &ss->lock_fd);
    if (err != CF_OK)
        return err;
    if ((err = db_open(ss->db_path, true, opts->create, &ss->wdb)) != CF_OK)
        return err;
    if ((err = db_migrate(ss->wdb)) != CF_OK)
        return err;
    if ((err = db_prepare_all(ss->wdb, w_sql, W_STMT_COUNT, ss->wstmt)) != CF_OK)
        return err;
    return checkpointer_start(ss);
}

enum cf_err store_sqlite_open(const struct store_options *opts, struct store **out)
{
    CF_ASSERT(opts->readers >= 1 && opts->readers <= STORE_READERS_MAX);
    CF_ASSERT(!(opts->read_only && opts->create));
    struct sqlite_store *ss = calloc(1, sizeof(*ss));
    if (ss == NULL)
        return CF_ERR_NOMEM;
    ss->base.ops = &sqlite_ops;
    ss->lock_fd = -1;
    pthread_mutex_init(&ss->pool_mu, NULL);
    pthread_cond_init(&ss->pool_cv, NULL);
    pthread_mutex_init(&ss->cmu, NULL);
    pthread_cond_init(&ss->ccv, NULL);
    if ((size_t)snprintf(ss->db_path, sizeof(ss->db_path), "%s/coffer.db", opts->location) >=
        sizeof(ss->db_path)) {
        sqlite_close(&ss->base);
        return CF_ERR_CONFIG;
    }
    if (opts->create && mkdir(opts->location, 0700) != 0 && errno != EEXIST) {
        cf_log(LOG_ERROR, "cannot create data directory", "path", opts->location, NULL);
        sqlite_close(&ss->base);
        return CF_ERR_IO;
    }
    enum cf_err err = CF_OK;
    if (!opts->read_only)
        err = writer_open(ss, opts);
    else if (access(ss->db_path, R_OK) != 0)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK)
        err = readers_open(ss, opts->readers);
    if (err == CF_OK && opts->read_only &&
        db_user_version(ss->readers[0].db) != SQLITE_SCHEMA_VERSION)
        err = CF_ERR_CONFIG;
    if (err != CF_OK) {
        sqlite_close(&ss->base);
        return err;
    }
    *out = &ss->base;
    return CF_OK;
}
