/*
 * sql_backend.h - what sql.c shares with the two backends of the SQL facade (sql.h); private to
 * src/store/sql/.
 *
 * sql.c owns the public calls: it checks arguments and limits, hands out connections (one pool
 * of slots, SQLite has one slot, PostgreSQL SQL_POOL_MAX), keeps the "a statement failed"
 * state of each transaction, runs migrations and builds the copied-out rows. A backend only
 * speaks to its database through struct sql_backend, for the slot sql.c gave it.
 *
 * Invariants: a slot is owned by at most one struct sqltx at a time, from sql_begin to
 * sql_commit/sql_rollback; a backend touches a slot's connection only while it is owned (and at
 * close, when none is). Rows are built by one thread and read-only once returned.
 */
#ifndef COFFER_STORE_SQL_SQL_BACKEND_H
#define COFFER_STORE_SQL_SQL_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "store/sql/sql.h"

/* The operations a backend provides; every one runs on the slot tx->slot (or the whole db). */
struct sql_backend {
    /* Frees the backend's connections and the db itself; no slot is owned. */
    void (*close)(struct sqldb *db);
    /* Starts a transaction on the slot's connection, connecting first when needed. */
    enum cf_err (*begin)(struct sqltx *tx);
    /* COMMIT (commit true) or ROLLBACK; leaves the connection outside any transaction whatever
     * happens, so the slot can be handed out again. */
    enum cf_err (*end)(struct sqltx *tx, bool commit);
    /* Runs one statement with n (<= SQL_PARAMS_MAX, checked) parameters. With rows_out NULL
     * any rows are dropped and *changes_out (may be NULL) gets the rows changed; otherwise
     * the rows are copied out into *rows_out. */
    enum cf_err (*run)(struct sqltx *tx, const char *sql, const struct sql_value *params, size_t n,
                       int64_t *changes_out, struct sql_rows **rows_out);
    /* Runs DDL that may hold several statements, without parameters (migrations). */
    enum cf_err (*script)(struct sqltx *tx, const char *ddl);
    /* sqldb_backup. */
    enum cf_err (*backup)(struct sqldb *db, const char *dest_path);
};

/* A transaction: the slot it owns and whether one of its statements failed. */
struct sqltx {
    struct sqldb *db;
    unsigned slot;
    bool open;    /* between sql_begin and sql_commit/sql_rollback */
    bool failed;  /* a call failed: sql_commit rolls back and fails */
    bool relaxed; /* sql_tx_relax: the commit need not reach the disk before it returns */
};

/* Slots of connections, handed out one transaction at a time. */
struct sql_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a slot is given back */
    unsigned slots_n;
    bool busy[SQL_POOL_MAX];
};

/* The common part of a database; each backend's struct begins with it. */
struct sqldb {
    const struct sql_backend *ops;
    bool postgres;
    struct sql_pool pool;
    struct sqltx tx[SQL_POOL_MAX]; /* tx[i] owns slot i while open */
};

/* Sets up the common part for slots_n (1..SQL_POOL_MAX) slots. CF_ERR_NOMEM when the pool's
 * mutex or condition variable cannot be made; nothing is left to free then. */
CF_WARN_UNUSED enum cf_err sqldb_init(struct sqldb *db, const struct sql_backend *ops,
                                      bool postgres, unsigned slots_n);
/* Frees the common part; no slot may be owned. */
void sqldb_fini(struct sqldb *db);

/* Backends' openers, called by sqldb_open after it has chosen by the target's form. */
CF_WARN_UNUSED enum cf_err sql_sqlite_open(const char *path, struct sqldb **out);
CF_WARN_UNUSED enum cf_err sql_pg_open(const char *url, struct sqldb **out);

/* Rows under construction --------------------------------------------------------------------
 * A backend creates the container with the result's column count, then for each row calls
 * sql_rows_row_add and sets every cell of that row once. Cells not set read as NULL. */
CF_WARN_UNUSED enum cf_err sql_rows_create(size_t cols_n, struct sql_rows **out);
/* Appends an all-NULL row; CF_ERR_STORAGE past SQL_ROWS_MAX rows, CF_ERR_NOMEM. */
CF_WARN_UNUSED enum cf_err sql_rows_row_add(struct sql_rows *r);
/* Sets cell col of the last row: integer value i and a copy of len bytes at p (p may be NULL
 * when len is 0), stored NUL-terminated. CF_ERR_NOMEM leaves the cell NULL. */
CF_WARN_UNUSED enum cf_err sql_rows_cell_set(struct sql_rows *r, size_t col, int64_t i,
                                             const void *p, size_t len);

/* Parses a whole NUL-terminated decimal integer; 0 when t is not one (or does not fit). */
int64_t sql_text_i64(const char *t);

#endif
