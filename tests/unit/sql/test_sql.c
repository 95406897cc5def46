/*
 * test_sql.c - the SQL facade (sql.h), one suite run twice: against SQLite (a file in a fresh
 * temporary directory per test) always, and against PostgreSQL (a fresh database per test,
 * created through COFFER_TEST_PG_URL and dropped after) when that variable is set. Covers
 * migrations (idempotent, a new version applies once, a newer stored version is refused, a
 * failed migration leaves nothing, several openers migrating at once), values in and out
 * (integers at their bounds, text, blobs with NUL bytes, empty values, NULLs, booleans), rows
 * changed, unique violations as storage_conflict and a failed transaction refusing to commit,
 * durability across a reopen and the file's mode, placeholders up to $12 and in any order,
 * FOR UPDATE on both backends, the limits (parameters, statement text, rows, NUL in text,
 * parameters without placeholders), two threads incrementing one counter under
 * SELECT ... FOR UPDATE, the SQLite backup, and (PostgreSQL) a connection replaced after the
 * server ends it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <dirent.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "store/sql/sql.h"

/* A test database's URL: the given URL with its path replaced. */
#define URL_BYTES_MAX 1024

/* "coffer_sql_t_<pid>_<n>" */
#define DB_NAME_BYTES 64

/* Read-modify-write increments each of the two threads makes. */
#define INCREMENTS 500

/* Handles migrating one database at the same time. */
#define CONCURRENT_MIGRATORS 4

enum backend { BACKEND_SQLITE, BACKEND_PG };

static enum backend backend;
static const char *base_url; /* COFFER_TEST_PG_URL */
static unsigned db_seq;

struct fx {
    char dir[64];               /* SQLite: the temporary directory */
    char target[URL_BYTES_MAX]; /* the SQLite file or the PostgreSQL URL */
    char pg_db[DB_NAME_BYTES];  /* PostgreSQL: the database's name */
    struct sqldb *db;
};

#define V1_SQLITE                                                                                  \
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER,"            \
    " data BLOB, note TEXT);"                                                                      \
    "CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
#define V1_POSTGRES                                                                                \
    "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, n BIGINT,"              \
    " data BYTEA, note TEXT);"                                                                     \
    "CREATE TABLE counters (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);"
#define V2_SQLITE                                                                                  \
    "CREATE TABLE wide (a1 INTEGER, a2 INTEGER, a3 INTEGER, a4 INTEGER, a5 INTEGER,"               \
    " a6 INTEGER, a7 INTEGER, a8 INTEGER, a9 INTEGER, a10 INTEGER, a11 TEXT, a12 INTEGER);"
#define V2_POSTGRES                                                                                \
    "CREATE TABLE wide (a1 BIGINT, a2 BIGINT, a3 BIGINT, a4 BIGINT, a5 BIGINT, a6 BIGINT,"         \
    " a7 BIGINT, a8 BIGINT, a9 BIGINT, a10 BIGINT, a11 TEXT, a12 INTEGER);"

static const struct sql_migration schema[] = {
    {1, V1_SQLITE, V1_POSTGRES},
    {2, V2_SQLITE, V2_POSTGRES},
};
#define SCHEMA_N (sizeof(schema) / sizeof(schema[0]))

/* schema and a third version that records each time it runs */
static const struct sql_migration schema3[] = {
    {1, V1_SQLITE, V1_POSTGRES},
    {2, V2_SQLITE, V2_POSTGRES},
    {3, "CREATE TABLE mig_log (v INTEGER); INSERT INTO mig_log (v) VALUES (3);",
     "CREATE TABLE mig_log (v BIGINT); INSERT INTO mig_log (v) VALUES (3);"},
};

/* PostgreSQL databases ------------------------------------------------------------------------ */

/* base with its database path replaced by db; the query string is kept. */
static bool url_with_db(const char *base, const char *db, char *out, size_t out_bytes)
{
    const char *scheme = strstr(base, "://");
    if (scheme == NULL)
        return false;
    const char *authority = scheme + 3;
    const char *path = authority + strcspn(authority, "/?");
    const char *query = strchr(path, '?');
    int n = snprintf(out, out_bytes, "%.*s/%s%s", (int)(path - base), base, db,
                     query != NULL ? query : "");
    return n > 0 && (size_t)n < out_bytes;
}

/* Runs sql on url outside the facade; false when it failed. */
static bool pg_on(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    bool ok = false;
    if (PQstatus(c) == CONNECTION_OK) {
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        PGresult *res = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(res);
        ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (!ok)
            fprintf(stderr, "test sql failed: %s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
    } else {
        fprintf(stderr, "test connection failed: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok;
}

static bool pg_db_create(struct fx *f)
{
    char sql[DB_NAME_BYTES + 32];
    snprintf(f->pg_db, sizeof(f->pg_db), "coffer_sql_t_%ld_%u", (long)getpid(), ++db_seq);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->pg_db);
    return pg_on(base_url, sql) && url_with_db(base_url, f->pg_db, f->target, sizeof(f->target));
}

static void pg_db_drop(const char *name)
{
    char sql[DB_NAME_BYTES + 48];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    pg_on(base_url, sql);
}

/* Fixture ------------------------------------------------------------------------------------- */

static void dir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    if (backend == BACKEND_SQLITE) {
        strcpy(f->dir, "/tmp/coffer-test-sql-XXXXXX");
        if (mkdtemp(f->dir) == NULL)
            return -1;
        snprintf(f->target, sizeof(f->target), "%s/sql.db", f->dir);
    } else if (!pg_db_create(f)) {
        return -1;
    }
    if (sqldb_open(f->target, &f->db) != CF_OK)
        return -1;
    return sqldb_migrate(f->db, "test", schema, SCHEMA_N) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    sqldb_close(f->db);
    if (f->dir[0] != '\0')
        dir_remove(f->dir);
    if (f->pg_db[0] != '\0')
        pg_db_drop(f->pg_db);
    free(f);
    return 0;
}

static void fx_reopen(struct fx *f)
{
    sqldb_close(f->db);
    f->db = NULL;
    assert_int_equal(sqldb_open(f->target, &f->db), CF_OK);
}

/* Helpers ------------------------------------------------------------------------------------- */

static void exec_one(struct sqldb *db, const char *sql, const struct sql_value *p, size_t n)
{
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, p, n, NULL), CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
}

/* The single integer a query returns (its first column of its only row). */
static int64_t query_int(struct sqldb *db, const char *sql, const struct sql_value *p, size_t n)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, sql, p, n, &r), CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    assert_int_equal(sql_rows_n(r), 1);
    int64_t v = sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return v;
}

static int64_t schema_version(struct sqldb *db, const char *name)
{
    const struct sql_value p[] = {SQL_T(name)};
    return query_int(db, "SELECT version FROM sql_schema WHERE name = $1", p, 1);
}

static void item_insert(struct sqldb *db, int64_t id, const char *name)
{
    const struct sql_value p[] = {SQL_I(id), SQL_T(name)};
    exec_one(db, "INSERT INTO items (id, name) VALUES ($1, $2)", p, 2);
}

static int64_t items_count(struct sqldb *db)
{
    return query_int(db, "SELECT count(*) FROM items", NULL, 0);
}

/* Migrations ---------------------------------------------------------------------------------- */

static void test_migrate_idempotent_and_new_version(void **state)
{
    struct fx *f = *state;
    assert_int_equal(schema_version(f->db, "test"), 2);
    /* again: nothing applies (the DDL is not idempotent, so reapplying would fail) */
    assert_int_equal(sqldb_migrate(f->db, "test", schema, SCHEMA_N), CF_OK);
    assert_int_equal(schema_version(f->db, "test"), 2);
    /* a new version applies once */
    assert_int_equal(sqldb_migrate(f->db, "test", schema3, 3), CF_OK);
    assert_int_equal(schema_version(f->db, "test"), 3);
    assert_int_equal(sqldb_migrate(f->db, "test", schema3, 3), CF_OK);
    fx_reopen(f);
    assert_int_equal(sqldb_migrate(f->db, "test", schema3, 3), CF_OK);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM mig_log", NULL, 0), 1);
    /* a binary that knows fewer versions than stored refuses to go on */
    assert_int_equal(sqldb_migrate(f->db, "test", schema, SCHEMA_N), CF_ERR_CONFIG);
    /* schemas are versioned by name, independently */
    const struct sql_migration other[] = {
        {1, "CREATE TABLE other_t (x INTEGER)", "CREATE TABLE other_t (x BIGINT)"}};
    assert_int_equal(sqldb_migrate(f->db, "other", other, 1), CF_OK);
    assert_int_equal(schema_version(f->db, "other"), 1);
    assert_int_equal(schema_version(f->db, "test"), 3);
}

static void test_migrate_failure_leaves_nothing(void **state)
{
    struct fx *f = *state;
    const struct sql_migration bad[] = {{1, V1_SQLITE, V1_POSTGRES},
                                        {2, V2_SQLITE, V2_POSTGRES},
                                        {3, "CREATE TABLE half (x INTEGER); THIS IS NOT SQL;",
                                         "CREATE TABLE half (x BIGINT); THIS IS NOT SQL;"}};
    assert_int_equal(sqldb_migrate(f->db, "test", bad, 3), CF_ERR_STORAGE);
    assert_int_equal(schema_version(f->db, "test"), 2);
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, "SELECT x FROM half", NULL, 0, &r), CF_ERR_STORAGE);
    sql_rollback(tx);
}

struct migrator {
    const char *target;
    enum cf_err err;
};

static void *migrator_main(void *arg)
{
    struct migrator *m = arg;
    struct sqldb *db = NULL;
    m->err = sqldb_open(m->target, &db);
    if (m->err == CF_OK)
        m->err = sqldb_migrate(db, "test", schema3, 3);
    sqldb_close(db);
    return NULL;
}

static void test_migrate_concurrent_openers(void **state)
{
    struct fx *f = *state;
    pthread_t t[CONCURRENT_MIGRATORS];
    struct migrator m[CONCURRENT_MIGRATORS];
    for (int i = 0; i < CONCURRENT_MIGRATORS; i++) {
        m[i] = (struct migrator){.target = f->target, .err = CF_ERR_INTERNAL};
        assert_int_equal(pthread_create(&t[i], NULL, migrator_main, &m[i]), 0);
    }
    for (int i = 0; i < CONCURRENT_MIGRATORS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(m[i].err, CF_OK);
    }
    assert_int_equal(schema_version(f->db, "test"), 3);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM mig_log", NULL, 0), 1);
}

/* Values -------------------------------------------------------------------------------------- */

static const uint8_t blob_nuls[] = {0x00, 0x01, 0x00, 0xff, 0x00, 'x', 0x00};

static void values_insert(struct sqldb *db)
{
    const struct sql_value a[] = {SQL_I(1), SQL_T("héllo wörld"), SQL_I(INT64_MAX),
                                  SQL_B(blob_nuls, sizeof(blob_nuls)), SQL_TN("note-cut", 4)};
    const struct sql_value b[] = {SQL_I(2), SQL_T(""), SQL_I(INT64_MIN), SQL_B("", 0), SQL_NUL};
    const struct sql_value c[] = {SQL_I(3), SQL_T("nulls"), SQL_NUL, SQL_NUL, SQL_NUL};
    const char *sql = "INSERT INTO items (id, name, n, data, note) VALUES ($1, $2, $3, $4, $5)";
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, a, 5, NULL), CF_OK);
    assert_int_equal(sql_exec(tx, sql, b, 5, NULL), CF_OK);
    assert_int_equal(sql_exec(tx, sql, c, 5, NULL), CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
}

/* The rows values_insert wrote, as read back from db. */
static void values_check(struct sqldb *db)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(db, &tx), CF_OK);
    assert_int_equal(
        sql_query(tx, "SELECT id, name, n, data, note FROM items ORDER BY id", NULL, 0, &r), CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    assert_int_equal(sql_rows_n(r), 3);
    assert_int_equal(sql_rows_cols(r), 5);
    size_t len = 99;
    /* row 1: text, the largest integer, a blob full of NUL bytes, text cut by length */
    assert_int_equal(sql_row_int(r, 0, 0), 1);
    assert_string_equal(sql_row_text(r, 0, 1), "héllo wörld");
    assert_true(sql_row_int(r, 0, 2) == INT64_MAX);
    assert_string_equal(sql_row_text(r, 0, 2), "9223372036854775807");
    const uint8_t *b = sql_row_blob(r, 0, 3, &len);
    assert_non_null(b);
    assert_int_equal(len, sizeof(blob_nuls));
    assert_memory_equal(b, blob_nuls, sizeof(blob_nuls));
    assert_string_equal(sql_row_text(r, 0, 4), "note");
    /* row 2: empty text, the smallest integer, an empty blob (not NULL), a NULL */
    assert_false(sql_row_null(r, 1, 1));
    assert_string_equal(sql_row_text(r, 1, 1), "");
    assert_true(sql_row_int(r, 1, 2) == INT64_MIN);
    assert_false(sql_row_null(r, 1, 3));
    assert_non_null(sql_row_blob(r, 1, 3, &len));
    assert_int_equal(len, 0);
    assert_true(sql_row_null(r, 1, 4));
    /* row 3: NULLs read as 0, "", NULL/0 */
    for (size_t c = 2; c < 5; c++)
        assert_true(sql_row_null(r, 2, c));
    assert_int_equal(sql_row_int(r, 2, 2), 0);
    assert_string_equal(sql_row_text(r, 2, 4), "");
    assert_null(sql_row_blob(r, 2, 3, &len));
    assert_int_equal(len, 0);
    sql_rows_free(r);
}

static void test_values_roundtrip(void **state)
{
    struct fx *f = *state;
    values_insert(f->db);
    values_check(f->db);
}

static void test_booleans_and_empty_results(void **state)
{
    struct fx *f = *state;
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, "SELECT 1 = 1, 1 = 2, 42", NULL, 0, &r), CF_OK);
    assert_int_equal(sql_row_int(r, 0, 0), 1);
    assert_int_equal(sql_row_int(r, 0, 1), 0);
    assert_string_equal(sql_row_text(r, 0, 0), "1");
    assert_string_equal(sql_row_text(r, 0, 1), "0");
    assert_int_equal(sql_row_int(r, 0, 2), 42);
    sql_rows_free(r);
    assert_int_equal(sql_query(tx, "SELECT id, name FROM items WHERE id < 0", NULL, 0, &r), CF_OK);
    assert_int_equal(sql_rows_n(r), 0);
    assert_int_equal(sql_rows_cols(r), 2);
    sql_rows_free(r);
    assert_int_equal(sql_commit(tx), CF_OK);
    /* a flag kept as a 32-bit INTEGER column, compared with a 64-bit parameter */
    const struct sql_value p[] = {SQL_I(1)};
    exec_one(f->db, "INSERT INTO wide (a12) VALUES ($1)", p, 1);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM wide WHERE a12 = $1", p, 1), 1);
    assert_int_equal(query_int(f->db, "SELECT EXISTS (SELECT 1 FROM wide WHERE a12 = 1)", NULL, 0),
                     1);
}

static void test_changes_count(void **state)
{
    struct fx *f = *state;
    for (int64_t i = 1; i <= 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "item%d", (int)i);
        item_insert(f->db, i, name);
    }
    struct sqltx *tx = NULL;
    int64_t changes = -1;
    const struct sql_value p[] = {SQL_I(7), SQL_I(3)};
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, "UPDATE items SET n = $1 WHERE id >= $2", p, 2, &changes), CF_OK);
    assert_int_equal(changes, 3);
    assert_int_equal(sql_exec(tx, "UPDATE items SET n = 0 WHERE id > 100", NULL, 0, &changes),
                     CF_OK);
    assert_int_equal(changes, 0);
    assert_int_equal(sql_exec(tx, "DELETE FROM items WHERE n = $1", p, 1, &changes), CF_OK);
    assert_int_equal(changes, 3);
    assert_int_equal(sql_exec(tx, "DELETE FROM items WHERE id = 1", NULL, 0, NULL), CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    assert_int_equal(items_count(f->db), 1);
}

/* Conflicts and durability -------------------------------------------------------------------- */

static void test_unique_violation_is_conflict(void **state)
{
    struct fx *f = *state;
    item_insert(f->db, 1, "alice");
    const struct sql_value bob[] = {SQL_I(2), SQL_T("bob")};
    const struct sql_value dup_name[] = {SQL_I(3), SQL_T("alice")};
    const struct sql_value dup_id[] = {SQL_I(1), SQL_T("carol")};
    const char *sql = "INSERT INTO items (id, name) VALUES ($1, $2)";
    struct sqltx *tx = NULL;
    /* a unique column, then rollback: bob is gone too */
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, bob, 2, NULL), CF_OK);
    assert_int_equal(sql_exec(tx, sql, dup_name, 2, NULL), CF_ERR_STORAGE_CONFLICT);
    sql_rollback(tx);
    assert_int_equal(items_count(f->db), 1);
    /* the primary key; then the failed transaction runs nothing more and refuses to commit */
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, bob, 2, NULL), CF_OK);
    assert_int_equal(sql_exec(tx, sql, dup_id, 2, NULL), CF_ERR_STORAGE_CONFLICT);
    assert_int_equal(sql_exec(tx, "DELETE FROM items", NULL, 0, NULL), CF_ERR_STORAGE);
    assert_int_equal(sql_commit(tx), CF_ERR_STORAGE);
    assert_int_equal(items_count(f->db), 1);
    sql_rollback(NULL);
}

static void test_commit_durable_rollback_discards(void **state)
{
    struct fx *f = *state;
    values_insert(f->db);
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, "DELETE FROM items", NULL, 0, NULL), CF_OK);
    sql_rollback(tx);
    fx_reopen(f);
    values_check(f->db);
    if (backend == BACKEND_SQLITE) {
        struct stat st;
        assert_int_equal(stat(f->target, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
}

/* The durability setting a normal transaction runs with ("2"/FULL on SQLite, "on" on
 * PostgreSQL). */
static void durability_check(struct sqldb *db, const char *want_sqlite, const char *want_pg,
                             bool relaxed)
{
    struct sqltx *tx = NULL;
    assert_int_equal(relaxed ? sql_begin_relaxed(db, &tx) : sql_begin(db, &tx), CF_OK);
    struct sql_rows *r = NULL;
    assert_int_equal(
        sql_query(tx, backend == BACKEND_SQLITE ? "PRAGMA synchronous" : "SHOW synchronous_commit",
                  NULL, 0, &r),
        CF_OK);
    assert_int_equal(sql_rows_n(r), 1);
    assert_string_equal(sql_row_text(r, 0, 0), backend == BACKEND_SQLITE ? want_sqlite : want_pg);
    sql_rows_free(r);
    sql_rollback(tx);
}

static void test_relaxed_commit(void **state)
{
    struct fx *f = *state;
    static const char *sql = "INSERT INTO items (id, name) VALUES ($1, $2)";
    struct sql_value a[] = {SQL_I(1), SQL_T("relaxed")}, b[] = {SQL_I(1), SQL_T("again")};
    struct sqltx *tx = NULL;
    durability_check(f->db, "2", "on", false);
    durability_check(f->db, "1", "off", true); /* NORMAL / off inside a relaxed one */
    durability_check(f->db, "2", "on", false); /* and durable again after it */
    /* a relaxed commit is a commit: visible to the next transaction and after a reopen */
    assert_int_equal(sql_begin_relaxed(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, a, 2, NULL), CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    assert_int_equal(items_count(f->db), 1);
    /* a relaxed transaction that fails rolls back and leaves commits durable */
    assert_int_equal(sql_begin_relaxed(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, b, 2, NULL), CF_ERR_STORAGE_CONFLICT);
    assert_int_equal(sql_commit(tx), CF_ERR_STORAGE);
    durability_check(f->db, "2", "on", false);
    fx_reopen(f);
    assert_int_equal(items_count(f->db), 1);
}

/* Statement text ------------------------------------------------------------------------------ */

static void test_placeholders_rewritten(void **state)
{
    struct fx *f = *state;
    /* $10 and up, in reverse order, and one used twice */
    const struct sql_value p[] = {SQL_I(1), SQL_I(2),  SQL_I(3),        SQL_I(4),
                                  SQL_I(5), SQL_I(6),  SQL_I(7),        SQL_I(8),
                                  SQL_I(9), SQL_I(10), SQL_T("eleven"), SQL_I(0)};
    exec_one(f->db,
             "INSERT INTO wide (a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12)"
             " VALUES ($10, $9, $8, $7, $6, $5, $4, $3, $2, $1 + $1, $11, $12)",
             p, 12);
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, "SELECT a1, a9, a10, a11, a12 FROM wide", NULL, 0, &r), CF_OK);
    assert_int_equal(sql_rows_n(r), 1);
    assert_int_equal(sql_row_int(r, 0, 0), 10);
    assert_int_equal(sql_row_int(r, 0, 1), 2);
    assert_int_equal(sql_row_int(r, 0, 2), 2);
    assert_string_equal(sql_row_text(r, 0, 3), "eleven");
    assert_int_equal(sql_row_int(r, 0, 4), 0);
    sql_rows_free(r);
    /* placeholders and FOR UPDATE inside a string literal are left alone */
    const struct sql_value q[] = {SQL_T("x"), SQL_I(5)};
    assert_int_equal(sql_query(tx,
                               "SELECT '$1 for update', CAST($2 AS BIGINT) + 1,"
                               " CAST($1 AS TEXT) || 'y'",
                               q, 2, &r),
                     CF_OK);
    assert_string_equal(sql_row_text(r, 0, 0), "$1 for update");
    assert_int_equal(sql_row_int(r, 0, 1), 6);
    assert_string_equal(sql_row_text(r, 0, 2), "xy");
    sql_rows_free(r);
    /* an integer parameter stays 64-bit in any context, here against a 32-bit literal */
    const struct sql_value big[] = {SQL_I(1), SQL_I(1700000000000000LL)};
    int64_t changes = -1;
    assert_int_equal(sql_exec(tx, "DELETE FROM wide WHERE a10 <> $1 AND $2 > 0", big, 2, &changes),
                     CF_OK);
    assert_int_equal(changes, 1);
    assert_int_equal(sql_commit(tx), CF_OK);
}

static void test_for_update_accepted(void **state)
{
    struct fx *f = *state;
    exec_one(f->db, "INSERT INTO counters (id, n) VALUES (1, 41)", NULL, 0);
    const struct sql_value p[] = {SQL_I(1)};
    static const char *const sqls[] = {
        "SELECT n FROM counters WHERE id = $1 FOR UPDATE",
        "SELECT n FROM counters WHERE id = $1 for  update",
        "SELECT n FROM counters WHERE id = $1\n\tFor\nUpdate;",
    };
    for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++)
        assert_int_equal(query_int(f->db, sqls[i], p, 1), 41);
}

/* Limits -------------------------------------------------------------------------------------- */

static void test_limits_refused(void **state)
{
    struct fx *f = *state;
    struct sql_value p[SQL_PARAMS_MAX + 1];
    for (size_t i = 0; i < SQL_PARAMS_MAX + 1; i++)
        p[i] = SQL_I(i);
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, "SELECT $1", p, SQL_PARAMS_MAX + 1, &r), CF_ERR_INTERNAL);
    sql_rollback(tx);
    /* statement text one byte too long */
    char *long_sql = malloc(SQL_TEXT_BYTES_MAX + 2);
    assert_non_null(long_sql);
    memset(long_sql, ' ', SQL_TEXT_BYTES_MAX + 1);
    memcpy(long_sql, "SELECT 1", 8);
    long_sql[SQL_TEXT_BYTES_MAX + 1] = '\0';
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, long_sql, NULL, 0, NULL), CF_ERR_INTERNAL);
    sql_rollback(tx);
    long_sql[SQL_TEXT_BYTES_MAX] = '\0'; /* exactly the limit */
    assert_int_equal(query_int(f->db, long_sql, NULL, 0), 1);
    free(long_sql);
    /* text with a NUL byte (PostgreSQL cannot store it) */
    const struct sql_value nul[] = {SQL_I(1), SQL_TN("a\0b", 3)};
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, "INSERT INTO items (id, name) VALUES ($1, $2)", nul, 2, NULL),
                     CF_ERR_INVALID_FIELD);
    sql_rollback(tx);
    /* more or fewer parameters than the statement's placeholders */
    const struct sql_value two[] = {SQL_I(1), SQL_I(2)};
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, "DELETE FROM items WHERE id = $1", two, 2, NULL),
                     CF_ERR_INTERNAL);
    sql_rollback(tx);
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, "DELETE FROM items WHERE id = $1 OR id = $3", two, 2, NULL),
                     CF_ERR_INTERNAL);
    sql_rollback(tx);
    assert_int_equal(items_count(f->db), 0);
}

static void test_rows_bounded(void **state)
{
    struct fx *f = *state;
    const char *sql = "WITH RECURSIVE c (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
                      " WHERE x < CAST($1 AS BIGINT)) SELECT x FROM c";
    const struct sql_value max[] = {SQL_I(SQL_ROWS_MAX)};
    const struct sql_value over[] = {SQL_I(SQL_ROWS_MAX + 1)};
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, sql, max, 1, &r), CF_OK);
    assert_int_equal(sql_rows_n(r), SQL_ROWS_MAX);
    assert_int_equal(sql_row_int(r, SQL_ROWS_MAX - 1, 0), SQL_ROWS_MAX);
    sql_rows_free(r);
    r = NULL;
    assert_int_equal(sql_query(tx, sql, over, 1, &r), CF_ERR_STORAGE);
    assert_null(r);
    sql_rollback(tx);
}

/* Concurrency --------------------------------------------------------------------------------- */

struct incrementer {
    struct sqldb *db;
    enum cf_err err; /* the first failure, CF_OK when none */
};

/* One read-modify-write of counter 1 in its own transaction. */
static enum cf_err counter_increment(struct sqldb *db)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    const struct sql_value id[] = {SQL_I(1)};
    enum cf_err err = sql_begin(db, &tx);
    if (err != CF_OK)
        return err;
    err = sql_query(tx, "SELECT n FROM counters WHERE id = $1 FOR UPDATE", id, 1, &r);
    if (err == CF_OK && sql_rows_n(r) != 1)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK) {
        const struct sql_value p[] = {SQL_I(sql_row_int(r, 0, 0) + 1), SQL_I(1)};
        err = sql_exec(tx, "UPDATE counters SET n = $1 WHERE id = $2", p, 2, NULL);
    }
    sql_rows_free(r);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

static void *incrementer_main(void *arg)
{
    struct incrementer *in = arg;
    for (int i = 0; i < INCREMENTS && in->err == CF_OK; i++)
        in->err = counter_increment(in->db);
    return NULL;
}

static void test_two_threads_increment(void **state)
{
    struct fx *f = *state;
    exec_one(f->db, "INSERT INTO counters (id, n) VALUES (1, 0)", NULL, 0);
    struct incrementer in[2] = {{.db = f->db, .err = CF_OK}, {.db = f->db, .err = CF_OK}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, incrementer_main, &in[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(in[i].err, CF_OK);
    }
    assert_int_equal(query_int(f->db, "SELECT n FROM counters WHERE id = 1", NULL, 0),
                     2 * INCREMENTS);
}

/* Backup and reconnect ------------------------------------------------------------------------ */

static void test_backup(void **state)
{
    struct fx *f = *state;
    values_insert(f->db);
    if (backend == BACKEND_PG) {
        assert_int_equal(sqldb_backup(f->db, "/tmp/never-written.db"), CF_ERR_CONFIG);
        assert_int_equal(access("/tmp/never-written.db", F_OK), -1);
        return;
    }
    char dest[sizeof(f->dir) + 16];
    snprintf(dest, sizeof(dest), "%s/backup.db", f->dir);
    assert_int_equal(sqldb_backup(f->db, dest), CF_OK);
    struct stat st;
    assert_int_equal(stat(dest, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* later changes to the source are not in the copy */
    item_insert(f->db, 99, "after backup");
    struct sqldb *copy = NULL;
    assert_int_equal(sqldb_open(dest, &copy), CF_OK);
    values_check(copy);
    assert_int_equal(schema_version(copy, "test"), 2);
    sqldb_close(copy);
}

static void test_pg_connection_replaced(void **state)
{
    struct fx *f = *state;
    if (backend != BACKEND_PG) {
        skip();
        return;
    }
    item_insert(f->db, 1, "before");
    char sql[DB_NAME_BYTES + 160];
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
             " WHERE datname = '%s' AND pid <> pg_backend_pid()",
             f->pg_db);
    assert_true(pg_on(base_url, sql));
    /* the pooled session is gone: the next transaction gets a new one */
    assert_int_equal(items_count(f->db), 1);
    item_insert(f->db, 2, "after");
    assert_int_equal(items_count(f->db), 2);
}

int main(void)
{
    cf_log_set_level(LOG_ERROR); /* expected failures still log as errors */
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_migrate_idempotent_and_new_version),
        T(test_migrate_failure_leaves_nothing),
        T(test_migrate_concurrent_openers),
        T(test_values_roundtrip),
        T(test_booleans_and_empty_results),
        T(test_changes_count),
        T(test_unique_violation_is_conflict),
        T(test_commit_durable_rollback_discards),
        T(test_relaxed_commit),
        T(test_placeholders_rewritten),
        T(test_for_update_accepted),
        T(test_limits_refused),
        T(test_rows_bounded),
        T(test_two_threads_increment),
        T(test_backup),
        T(test_pg_connection_replaced),
    };
#undef T
    backend = BACKEND_SQLITE;
    int failed = cmocka_run_group_tests_name("sql_sqlite", tests, NULL, NULL);
    base_url = getenv("COFFER_TEST_PG_URL");
    if (base_url == NULL || base_url[0] == '\0') {
        printf("skipped: sql_postgres (COFFER_TEST_PG_URL not set)\n");
        return failed;
    }
    backend = BACKEND_PG;
    failed += cmocka_run_group_tests_name("sql_postgres", tests, NULL, NULL);
    return failed;
}
