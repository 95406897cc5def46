/*
 * sql_sqlite.c - the SQLite backend of the SQL facade; see sql.h.
 *
 * One connection (one pool slot, so transactions are serial in this process; BEGIN IMMEDIATE
 * and the busy timeout serialize them with other processes), in WAL mode with synchronous=FULL
 * and foreign keys on. Statements are rewritten once ("$N" -> "?N", " FOR UPDATE" dropped) and
 * kept prepared in a small cache keyed by their original text, least recently used out first.
 * Logs carry SQLite's message, never a parameter.
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/log.h"
#include "store/sql/sql_backend.h"

/* Statements kept prepared: the facade's users (identity, sessions, audit) run a few dozen
 * distinct statements; past this the least recently used one is finalized. */
#define STMT_CACHE_MAX 64

struct stmt_entry {
    char *sql; /* the caller's text (before the rewrite), the key */
    sqlite3_stmt *st;
    uint64_t used; /* tick of the last use */
};

struct sqlite_db {
    struct sqldb base;
    sqlite3 *db;
    char path[CONFIG_PATH_BYTES_MAX]; /* for the backup's own connection */
    struct stmt_entry cache[STMT_CACHE_MAX];
    size_t cache_n;
    uint64_t tick;
};

static struct sqlite_db *sdb(struct sqldb *db)
{
    CF_ASSERT(db != NULL && !db->postgres);
    return (struct sqlite_db *)db;
}

/* Errors ------------------------------------------------------------------------------------- */

/* Logs SQLite's message for rc and maps rc (sql.h "Errors"). */
static enum cf_err fail(sqlite3 *db, int rc, const char *op)
{
    CF_ASSERT(rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE);
    const char *detail = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        cf_log(LOG_WARN, "sqlite conflict", "op", op, "detail", detail, NULL);
        return CF_ERR_STORAGE_CONFLICT;
    }
    cf_log(LOG_ERROR, "sqlite error", "op", op, "detail", detail, NULL);
    return (rc & 0xff) == SQLITE_NOMEM ? CF_ERR_NOMEM : CF_ERR_STORAGE;
}

static enum cf_err exec_plain(sqlite3 *db, const char *sql, const char *op)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? CF_OK : fail(db, sqlite3_extended_errcode(db), op);
}

/* Opening ------------------------------------------------------------------------------------ */

/* Creates path with mode 0600 when it is missing; an existing file keeps its mode. */
static enum cf_err file_create(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        cf_log(LOG_ERROR, "cannot create database file", "path", path, "detail", strerror(errno),
               NULL);
        return CF_ERR_STORAGE;
    }
    close(fd);
    return CF_OK;
}

/* WAL mode, checked: a database that cannot use it (say, on a network file system) is refused
 * rather than silently run with a rollback journal. */
static enum cf_err wal_set(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    bool wal =
        rc == SQLITE_ROW && sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    enum cf_err err = CF_OK;
    if (rc != SQLITE_ROW)
        err = fail(db, sqlite3_extended_errcode(db), "journal_mode");
    else if (!wal) {
        cf_log(LOG_ERROR, "sqlite database cannot use WAL mode", NULL);
        err = CF_ERR_STORAGE;
    }
    sqlite3_finalize(st);
    return err;
}

/* Opens path (created 0600 when missing) with the facade's settings. */
static enum cf_err conn_open(const char *path, sqlite3 **out)
{
    CF_ASSERT(path != NULL && out != NULL);
    enum cf_err err = file_create(path);
    if (err != CF_OK)
        return err;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err = fail(db, rc, "open");
        sqlite3_close(db);
        return err;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    err = wal_set(db);
    if (err == CF_OK)
        err = exec_plain(db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", "pragmas");
    if (err != CF_OK) {
        sqlite3_close(db);
        return err;
    }
    CF_ASSERT(db != NULL && sqlite3_get_autocommit(db));
    *out = db;
    return CF_OK;
}

/* The rewrite -------------------------------------------------------------------------------- */

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static bool is_word(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$';
}

/* At white space: the length of " FOR UPDATE" (any case, any white space between the words,
 * ending at a word boundary) starting here, 0 when it is not that. */
static size_t for_update_at(const char *p)
{
    CF_ASSERT(is_space(*p));
    size_t i = 0;
    while (is_space(p[i]))
        i++;
    if (sqlite3_strnicmp(p + i, "FOR", 3) != 0 || !is_space(p[i + 3]))
        return 0;
    i += 3;
    while (is_space(p[i]))
        i++;
    if (sqlite3_strnicmp(p + i, "UPDATE", 6) != 0 || is_word(p[i + 6]))
        return 0;
    return i + 6;
}

/* Copies sql into out (at least strlen(sql) + 1 bytes) with "$N" -> "?N" and " FOR UPDATE"
 * dropped, outside quoted strings and identifiers. The result is never longer. */
static void rewrite(const char *sql, char *out, size_t out_bytes)
{
    CF_ASSERT(strlen(sql) < out_bytes);
    size_t o = 0;
    char quote = '\0';
    for (size_t i = 0; sql[i] != '\0';) {
        char c = sql[i];
        if (quote != '\0') {
            quote = c == quote ? '\0' : quote; /* '' reopens at once: still inside */
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '$' && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
            c = '?';
        } else if (is_space(c)) {
            size_t skip = for_update_at(sql + i);
            if (skip > 0) {
                i += skip;
                continue;
            }
        }
        out[o++] = c;
        i++;
    }
    out[o] = '\0';
    CF_ASSERT(o < out_bytes);
}

/* Statements --------------------------------------------------------------------------------- */

/* Prepares the rewritten sql; one statement only, as PostgreSQL's extended protocol. */
static enum cf_err stmt_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out)
{
    char text[SQL_TEXT_BYTES_MAX + 1];
    CF_ASSERT(strlen(sql) <= SQL_TEXT_BYTES_MAX);
    rewrite(sql, text, sizeof(text));
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(db, text, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (rc != SQLITE_OK)
        return fail(db, rc, "prepare");
    while (tail != NULL && (is_space(*tail) || *tail == ';'))
        tail++;
    if (st == NULL || (tail != NULL && *tail != '\0')) {
        cf_log(LOG_ERROR, "sqlite statement must be exactly one statement", NULL);
        sqlite3_finalize(st);
        return CF_ERR_STORAGE;
    }
    *out = st;
    return CF_OK;
}

/* The least recently used cache entry, to make room. */
static size_t cache_victim(const struct sqlite_db *sd)
{
    CF_ASSERT(sd->cache_n == STMT_CACHE_MAX);
    size_t v = 0;
    for (size_t i = 1; i < sd->cache_n; i++) {
        if (sd->cache[i].used < sd->cache[v].used)
            v = i;
    }
    return v;
}

/* The prepared statement for sql, from the cache or prepared and cached now. */
static enum cf_err stmt_get(struct sqlite_db *sd, const char *sql, sqlite3_stmt **out)
{
    CF_ASSERT(sd->cache_n <= STMT_CACHE_MAX);
    sd->tick++;
    for (size_t i = 0; i < sd->cache_n; i++) {
        if (strcmp(sd->cache[i].sql, sql) == 0) {
            sd->cache[i].used = sd->tick;
            *out = sd->cache[i].st;
            return CF_OK;
        }
    }
    sqlite3_stmt *st = NULL;
    enum cf_err err = stmt_prepare(sd->db, sql, &st);
    if (err != CF_OK)
        return err;
    char *key = strdup(sql);
    if (key == NULL) {
        sqlite3_finalize(st);
        return CF_ERR_NOMEM;
    }
    size_t slot = sd->cache_n;
    if (slot == STMT_CACHE_MAX) {
        slot = cache_victim(sd);
        sqlite3_finalize(sd->cache[slot].st);
        free(sd->cache[slot].sql);
    } else {
        sd->cache_n++;
    }
    sd->cache[slot] = (struct stmt_entry){.sql = key, .st = st, .used = sd->tick};
    *out = st;
    return CF_OK;
}

/* Text and blobs are bound without a copy: they outlive the statement's run. */
static int bind_one(sqlite3_stmt *st, int i, const struct sql_value *v)
{
    switch (v->type) {
    case SQL_INT:
        return sqlite3_bind_int64(st, i, v->i);
    case SQL_TEXT:
        return sqlite3_bind_text64(st, i, v->p != NULL ? v->p : "", v->len, SQLITE_STATIC,
                                   SQLITE_UTF8);
    case SQL_BLOB:
        if (v->len == 0) /* a NULL pointer would bind NULL */
            return sqlite3_bind_zeroblob(st, i, 0);
        return sqlite3_bind_blob64(st, i, v->p, v->len, SQLITE_STATIC);
    case SQL_NULL:
        break;
    }
    return sqlite3_bind_null(st, i);
}

static enum cf_err stmt_bind(sqlite3_stmt *st, const struct sql_value *params, size_t n)
{
    CF_ASSERT(n <= SQL_PARAMS_MAX && (n == 0 || params != NULL));
    if (sqlite3_bind_parameter_count(st) != (int)n) {
        cf_log(LOG_ERROR, "sqlite statement's placeholders do not match its parameters", NULL);
        return CF_ERR_STORAGE;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = bind_one(st, (int)i + 1, &params[i]);
        if (rc != SQLITE_OK)
            return fail(sqlite3_db_handle(st), rc, "bind");
    }
    return CF_OK;
}

/* Steps to the end, dropping rows; the rows a write changed. */
static enum cf_err stmt_finish(sqlite3_stmt *st, int64_t *changes_out)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        continue;
    if (rc != SQLITE_DONE)
        return fail(sqlite3_db_handle(st), rc, "step");
    *changes_out = sqlite3_stmt_readonly(st) ? 0 : sqlite3_changes64(sqlite3_db_handle(st));
    CF_ASSERT(*changes_out >= 0);
    return CF_OK;
}

/* Copies column col of the current row into the last row of r. */
static enum cf_err cell_copy(sqlite3_stmt *st, int col, struct sql_rows *r)
{
    int type = sqlite3_column_type(st, col);
    if (type == SQLITE_NULL)
        return CF_OK;
    if (type == SQLITE_BLOB) {
        const void *p = sqlite3_column_blob(st, col);
        int len = sqlite3_column_bytes(st, col);
        if (p == NULL && len > 0)
            return CF_ERR_NOMEM;
        return sql_rows_cell_set(r, (size_t)col, 0, p, (size_t)len);
    }
    /* numbers: their value, then their text (which converts a copy, not the value) */
    int64_t i = type == SQLITE_TEXT ? 0 : sqlite3_column_int64(st, col);
    const char *t = (const char *)sqlite3_column_text(st, col);
    int len = sqlite3_column_bytes(st, col);
    if (t == NULL)
        return CF_ERR_NOMEM;
    if (type == SQLITE_TEXT)
        i = sql_text_i64(t);
    return sql_rows_cell_set(r, (size_t)col, i, t, (size_t)len);
}

/* Steps through every row, copying it out. */
static enum cf_err stmt_rows(sqlite3_stmt *st, struct sql_rows **out)
{
    int cols = sqlite3_column_count(st);
    CF_ASSERT(cols >= 0);
    struct sql_rows *r = NULL;
    enum cf_err err = sql_rows_create((size_t)cols, &r);
    int rc = SQLITE_DONE;
    while (err == CF_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        err = sql_rows_row_add(r);
        for (int c = 0; err == CF_OK && c < cols; c++)
            err = cell_copy(st, c, r);
    }
    if (err == CF_OK && rc != SQLITE_DONE)
        err = fail(sqlite3_db_handle(st), rc, "step");
    if (err != CF_OK) {
        sql_rows_free(r);
        return err;
    }
    *out = r;
    return CF_OK;
}

static enum cf_err sqlite_run(struct sqltx *tx, const char *sql, const struct sql_value *params,
                              size_t n, int64_t *changes_out, struct sql_rows **rows_out)
{
    struct sqlite_db *sd = sdb(tx->db);
    CF_ASSERT(tx->open && tx->slot == 0 && sd->db != NULL);
    CF_ASSERT((changes_out == NULL) != (rows_out == NULL));
    sqlite3_stmt *st = NULL;
    enum cf_err err = stmt_get(sd, sql, &st);
    if (err != CF_OK)
        return err;
    err = stmt_bind(st, params, n);
    if (err == CF_OK)
        err = rows_out != NULL ? stmt_rows(st, rows_out) : stmt_finish(st, changes_out);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err;
}

static enum cf_err sqlite_script(struct sqltx *tx, const char *ddl)
{
    struct sqlite_db *sd = sdb(tx->db);
    CF_ASSERT(tx->open && ddl != NULL);
    return exec_plain(sd->db, ddl, "migration");
}

/* Transactions ------------------------------------------------------------------------------- */

/* After a relaxed transaction: every later commit is durable again (or the connection is
 * unusable, which the assertion stops). */
static enum cf_err relaxed_end(struct sqlite_db *sd, const struct sqltx *tx, enum cf_err err)
{
    if (tx->relaxed) {
        enum cf_err back = exec_plain(sd->db, "PRAGMA synchronous = FULL", "pragmas");
        CF_ASSERT(back == CF_OK);
    }
    return err;
}

static enum cf_err sqlite_begin(struct sqltx *tx)
{
    struct sqlite_db *sd = sdb(tx->db);
    CF_ASSERT(tx->open && tx->slot == 0);
    if (!sqlite3_get_autocommit(sd->db)) /* a ROLLBACK that failed last time */
        (void)exec_plain(sd->db, "ROLLBACK", "rollback");
    enum cf_err err = CF_OK;
    if (tx->relaxed) /* the safety level can only change outside a transaction */
        err = exec_plain(sd->db, "PRAGMA synchronous = NORMAL", "pragmas");
    if (err == CF_OK)
        err = exec_plain(sd->db, "BEGIN IMMEDIATE", "begin");
    if (err != CF_OK && tx->relaxed)
        (void)relaxed_end(sd, tx, err);
    CF_ASSERT(err != CF_OK || !sqlite3_get_autocommit(sd->db));
    return err;
}

static enum cf_err sqlite_end(struct sqltx *tx, bool commit)
{
    struct sqlite_db *sd = sdb(tx->db);
    CF_ASSERT(tx->open && tx->slot == 0);
    if (sqlite3_get_autocommit(sd->db)) /* SQLite ended it itself after an error */
        return relaxed_end(sd, tx, commit ? CF_ERR_STORAGE : CF_OK);
    enum cf_err err = CF_OK;
    if (commit && (err = exec_plain(sd->db, "COMMIT", "commit")) == CF_OK)
        return relaxed_end(sd, tx, CF_OK);
    if (sqlite3_get_autocommit(sd->db)) /* a failed COMMIT that SQLite rolled back */
        return relaxed_end(sd, tx, err);
    enum cf_err rolled = exec_plain(sd->db, "ROLLBACK", "rollback");
    return relaxed_end(sd, tx, commit ? err : rolled);
}

/* Backup and close --------------------------------------------------------------------------- */

/* Opens the backup's destination (created 0600 when missing) for the copy only. */
static enum cf_err dest_open(const char *path, sqlite3 **out)
{
    enum cf_err err = file_create(path);
    if (err != CF_OK)
        return err;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
        err = exec_plain(db, "PRAGMA synchronous = FULL", "pragmas");
    } else {
        err = fail(db, rc, "open");
    }
    if (err != CF_OK) {
        sqlite3_close(db);
        return err;
    }
    *out = db;
    return CF_OK;
}

/* Copies the database with its own connection: one read transaction, a consistent snapshot,
 * without holding up the facade's connection. */
static enum cf_err sqlite_backup(struct sqldb *db, const char *dest_path)
{
    struct sqlite_db *sd = sdb(db);
    CF_ASSERT(dest_path != NULL && sd->path[0] != '\0');
    sqlite3 *src = NULL;
    sqlite3 *dst = NULL;
    enum cf_err err = conn_open(sd->path, &src);
    if (err == CF_OK)
        err = dest_open(dest_path, &dst);
    sqlite3_backup *b = NULL;
    if (err == CF_OK && (b = sqlite3_backup_init(dst, "main", src, "main")) == NULL)
        err = fail(dst, sqlite3_extended_errcode(dst), "backup");
    if (b != NULL) {
        int rc = sqlite3_backup_step(b, -1);
        int fin = sqlite3_backup_finish(b);
        if (rc != SQLITE_DONE || fin != SQLITE_OK)
            err = fail(dst, rc != SQLITE_DONE ? rc : fin, "backup");
    }
    if (dst != NULL && sqlite3_close(dst) != SQLITE_OK && err == CF_OK)
        err = CF_ERR_STORAGE;
    sqlite3_close(src);
    return err;
}

static void sqlite_close(struct sqldb *db)
{
    struct sqlite_db *sd = sdb(db);
    CF_ASSERT(sd->cache_n <= STMT_CACHE_MAX);
    for (size_t i = 0; i < sd->cache_n; i++) {
        sqlite3_finalize(sd->cache[i].st);
        free(sd->cache[i].sql);
    }
    int rc = sqlite3_close(sd->db);
    CF_ASSERT(rc == SQLITE_OK); /* every statement was finalized */
    sqldb_fini(&sd->base);
    free(sd);
}

static const struct sql_backend sqlite_ops = {
    .close = sqlite_close,
    .begin = sqlite_begin,
    .end = sqlite_end,
    .run = sqlite_run,
    .script = sqlite_script,
    .backup = sqlite_backup,
};

enum cf_err sql_sqlite_open(const char *path, struct sqldb **out)
{
    CF_ASSERT(path != NULL && out != NULL);
    if (strlen(path) >= CONFIG_PATH_BYTES_MAX) {
        cf_log(LOG_ERROR, "sqlite database path is too long", NULL);
        return CF_ERR_CONFIG;
    }
    struct sqlite_db *sd = calloc(1, sizeof(*sd));
    if (sd == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = sqldb_init(&sd->base, &sqlite_ops, false, 1);
    if (err != CF_OK) {
        free(sd);
        return err;
    }
    memcpy(sd->path, path, strlen(path) + 1);
    err = conn_open(path, &sd->db);
    if (err != CF_OK) {
        sqldb_fini(&sd->base);
        free(sd);
        return err;
    }
    *out = &sd->base;
    return CF_OK;
}
