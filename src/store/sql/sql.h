/*
 * sql.h - a small portable SQL facade for Coffer's non-ledger tables (identity, sessions, audit).
 *
 * The ledger has its own tuned store (store.h). Everything else is low volume and goes through
 * this facade, which speaks to SQLite (a file path) or PostgreSQL (a "postgres://" or
 * "postgresql://" URL) with the same calls and the same SQL text:
 *
 *   - parameters are written $1, $2, ... in both backends (rewritten to ?1, ?2 for SQLite);
 *     every one of $1..$n is used, and a call runs exactly one statement;
 *   - values are 64-bit integers, text, blobs (bytea) or NULL; booleans are integers 0/1
 *     (keep flags in INTEGER columns: PostgreSQL gets integer parameters typed bigint, text
 *     parameters untyped so the column decides, blobs as bytea; where nothing in the statement
 *     fixes a text parameter's type, write CAST($n AS ...));
 *   - text is UTF-8 without NUL bytes (PostgreSQL cannot store them); blobs may hold anything;
 *   - schema (DDL) differs by backend, so migrations carry one text per backend.
 *
 * Concurrency: a struct sqldb is safe to share between threads. sql_begin hands out one
 * connection for the duration of a transaction (blocking until one is free, at most
 * SQL_BEGIN_WAIT_MS) and sql_commit/sql_rollback gives it back. A struct sqltx is used by one
 * thread at a time; a thread never holds two transactions of one sqldb at once (on SQLite the
 * second sql_begin would wait for the first, then fail). SQLite uses one connection
 * (BEGIN IMMEDIATE: transactions are serial); PostgreSQL a small pool (READ COMMITTED;
 * statements that must not race take row locks with SELECT ... FOR UPDATE, which SQLite accepts
 * by the rewrite below as a no-op since its transactions are serial).
 *
 * Rewrites done for SQLite: "$N" -> "?N", " FOR UPDATE" -> "". PostgreSQL gets the text as is.
 *
 * Errors: CF_ERR_STORAGE for anything the database reports (connection lost, syntax, I/O),
 * for more than SQL_ROWS_MAX rows and for no connection free within SQL_BEGIN_WAIT_MS;
 * CF_ERR_STORAGE_CONFLICT for a unique-constraint violation, a serialization failure or a
 * deadlock (SQLSTATE 23505, 40001, 40P01; SQLITE_CONSTRAINT_UNIQUE/PRIMARYKEY); CF_ERR_NOMEM;
 * CF_ERR_INTERNAL when the caller passes more than SQL_PARAMS_MAX parameters, a statement
 * longer than SQL_TEXT_BYTES_MAX, or n parameters to a statement whose highest placeholder is
 * not $n (a bug at the call site); CF_ERR_INVALID_FIELD for a text value holding a NUL byte or
 * any value over INT_MAX bytes. After any error in a transaction the caller must sql_rollback
 * it: further statements fail with CF_ERR_STORAGE, and sql_commit rolls it back and fails with
 * CF_ERR_STORAGE. A lost PostgreSQL connection is replaced on the next sql_begin. Logs carry
 * the database's message, never a parameter.
 *
 * Durability: SQLite runs in WAL mode with synchronous=FULL, like the ledger: sql_commit returns
 * CF_OK only once the transaction is on disk.
 */
#ifndef COFFER_STORE_SQL_SQL_H
#define COFFER_STORE_SQL_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h> /* strlen, for SQL_T */

#include "core/assert.h"
#include "core/error.h"

/* Bounds of the facade. */
#define SQL_PARAMS_MAX 24       /* parameters of one statement */
#define SQL_ROWS_MAX 10000      /* rows one query may return; more is CF_ERR_STORAGE */
#define SQL_TEXT_BYTES_MAX 8192 /* statement text */
#define SQL_POOL_MAX 4          /* PostgreSQL connections per sqldb */
#define SQL_BEGIN_WAIT_MS 10000 /* how long sql_begin waits for a free connection */

enum sql_type { SQL_NULL = 0, SQL_INT = 1, SQL_TEXT = 2, SQL_BLOB = 3 };

struct sql_value {
    enum sql_type type;
    int64_t i;     /* SQL_INT */
    const void *p; /* SQL_TEXT (need not be NUL-terminated) and SQL_BLOB */
    size_t len;    /* bytes at p */
};

/* Value constructors. SQL_T takes a NUL-terminated string and needs <string.h> (strlen),
 * which this header does not include; it evaluates s twice. */
#define SQL_I(v) ((struct sql_value){.type = SQL_INT, .i = (int64_t)(v)})
#define SQL_T(s) ((struct sql_value){.type = SQL_TEXT, .p = (s), .len = strlen(s)})
#define SQL_TN(s, n) ((struct sql_value){.type = SQL_TEXT, .p = (s), .len = (n)})
#define SQL_B(b, n) ((struct sql_value){.type = SQL_BLOB, .p = (b), .len = (n)})
#define SQL_NUL ((struct sql_value){.type = SQL_NULL})

/* One migration: version numbers start at 1 and increase by one; each is applied once, in a
 * transaction, and recorded in the table sql_schema (name, version). The DDL runs inside that
 * transaction, so it holds no transaction control (BEGIN, COMMIT) and nothing that cannot run
 * in a transaction (CREATE INDEX CONCURRENTLY, VACUUM). */
struct sql_migration {
    int version;
    const char *sqlite;   /* DDL for SQLite (may hold several statements) */
    const char *postgres; /* DDL for PostgreSQL (may hold several statements) */
};

struct sqldb;
struct sqltx;
struct sql_rows;

/* Opens target: a file path (SQLite; created 0600 when missing) or a PostgreSQL URL (one
 * connection now, so a wrong URL fails here; the rest of the pool as needed). CF_ERR_CONFIG
 * for an empty target, CF_ERR_STORAGE when the database cannot be opened or reached. */
CF_WARN_UNUSED enum cf_err sqldb_open(const char *target, struct sqldb **out);
/* Closes db (NULL ok); no transaction of it may be open. */
void sqldb_close(struct sqldb *db);
bool sqldb_is_postgres(const struct sqldb *db);

/* Applies the migrations of schema `name` not yet applied, in order, one transaction each;
 * m[i].version must be i + 1. Safe to call from several processes at once (PostgreSQL: an
 * advisory lock; SQLite: BEGIN IMMEDIATE). CF_ERR_CONFIG when the stored version is newer than
 * n; a failed migration is rolled back whole and its error returned. */
CF_WARN_UNUSED enum cf_err sqldb_migrate(struct sqldb *db, const char *name,
                                         const struct sql_migration *m, size_t n);

CF_WARN_UNUSED enum cf_err sql_begin(struct sqldb *db, struct sqltx **out);
/* A transaction whose commit may return before it is on disk: a process crash cannot lose it,
 * a power failure may, until the next durable commit (SQLite: synchronous=NORMAL around it, in
 * WAL mode; PostgreSQL: SET LOCAL synchronous_commit = off). Only for rows that can be rebuilt
 * from something durable (an outcome the ledger's idempotency records restore). */
CF_WARN_UNUSED enum cf_err sql_begin_relaxed(struct sqldb *db, struct sqltx **out);
CF_WARN_UNUSED enum cf_err sql_commit(struct sqltx *tx); /* gives the connection back, always */
void sql_rollback(struct sqltx *tx);                     /* gives the connection back; NULL ok */

/* Runs a statement that returns no rows; *changes_out (may be NULL) gets the rows changed. */
CF_WARN_UNUSED enum cf_err sql_exec(struct sqltx *tx, const char *sql,
                                    const struct sql_value *params, size_t n, int64_t *changes_out);
/* Runs a query; the rows are copied out and live until sql_rows_free (at most SQL_ROWS_MAX of
 * them; more is CF_ERR_STORAGE). Cells are addressed by row < sql_rows_n and
 * col < sql_rows_cols; anything else is a broken invariant (asserted). */
CF_WARN_UNUSED enum cf_err sql_query(struct sqltx *tx, const char *sql,
                                     const struct sql_value *params, size_t n,
                                     struct sql_rows **out);

size_t sql_rows_n(const struct sql_rows *r);
size_t sql_rows_cols(const struct sql_rows *r);
bool sql_row_null(const struct sql_rows *r, size_t row, size_t col);
/* Integer value; 0 for NULL and for text that is not a whole decimal integer. PostgreSQL text
 * results are parsed (bigint, integer, boolean: true is 1). */
int64_t sql_row_int(const struct sql_rows *r, size_t row, size_t col);
/* Text value, NUL-terminated; "" for NULL. A number reads as its decimal text, a PostgreSQL
 * boolean as "1" or "0". */
const char *sql_row_text(const struct sql_rows *r, size_t row, size_t col);
/* Blob value and its length; NULL/0 for NULL. */
const uint8_t *sql_row_blob(const struct sql_rows *r, size_t row, size_t col, size_t *len_out);
void sql_rows_free(struct sql_rows *r);

/* Copies the SQLite database to dest_path with the online backup API, from one consistent
 * snapshot and without holding up transactions; dest_path is created 0600 when missing and
 * overwritten otherwise. CF_ERR_CONFIG on PostgreSQL (use pg_dump), CF_ERR_STORAGE when the
 * copy fails. */
CF_WARN_UNUSED enum cf_err sqldb_backup(struct sqldb *db, const char *dest_path);

#endif
