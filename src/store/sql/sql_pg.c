/*
 * sql_pg.c - the PostgreSQL backend of the SQL facade, over libpq; see sql.h.
 *
 * SQL_POOL_MAX slots, each with a connection opened the first time the slot is handed out (the
 * first one at open, so a wrong URL fails there). Every session runs with a statement timeout.
 * A transaction is BEGIN ISOLATION LEVEL READ COMMITTED ... COMMIT on one slot's connection.
 * A connection found lost (PQstatus not CONNECTION_OK) is replaced on the slot's next
 * sql_begin; a database restart shows only when a statement fails, so a BEGIN that fails on a
 * lost connection is tried once more on a new one (nothing was done yet).
 *
 * Statements go with PQexecParams: integers as text (format 0) typed bigint, so "$1 > 0" or
 * "$1 + $2" never narrow them to integer; text as text (format 0) of no declared type, so the
 * server takes it as whatever type the context wants; blobs binary (format 1) typed bytea.
 * Results are text: bytea is decoded with PQunescapeBytea, booleans read as 1/0, numbers are
 * parsed.
 *
 * Logs carry the SQLSTATE and the server's primary message, never a parameter, never the URL
 * (it may hold a password). Data exceptions (SQLSTATE class 22) may quote the offending value in
 * their message, so for them only the SQLSTATE is logged.
 */
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/log.h"
#include "store/sql/sql_backend.h"

/* A statement running longer than this is cancelled by the server: the facade's tables are
 * small, and a stuck statement would otherwise hold a pool slot (and its row locks) forever. */
#define STATEMENT_TIMEOUT_MS 10000

/* A connection attempt gives up after as long as a lock wait may take. */
#define CONNECT_TIMEOUT_S ((STORE_BUSY_TIMEOUT_MS + 999) / 1000)

/* "-9223372036854775808" and its NUL. */
#define I64_TEXT_BYTES 21

/* "SET statement_timeout = " and an int. */
#define SETUP_SQL_BYTES 64

/* Type OIDs of parameters and of results read specially (pg_type.h; fixed for decades). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20

#define BEGIN_SQL "BEGIN ISOLATION LEVEL READ COMMITTED"

struct pg_db {
    struct sqldb base;
    char *url;                  /* never logged */
    PGconn *conn[SQL_POOL_MAX]; /* slot i's connection; NULL until first needed */
};

static struct pg_db *pdb(struct sqldb *db)
{
    CF_ASSERT(db != NULL && db->postgres);
    return (struct pg_db *)db;
}

/* Errors ------------------------------------------------------------------------------------- */

/* Logs a libpq or server message on one line: each run of white space becomes one space. */
static void log_pg(enum log_level level, const char *msg, const char *op, const char *sqlstate,
                   const char *detail)
{
    char buf[LOG_LINE_BYTES_MAX];
    size_t n = 0;
    for (const char *t = detail != NULL ? detail : ""; *t != '\0' && n + 1 < sizeof(buf); t++) {
        bool space = *t == ' ' || *t == '\n' || *t == '\t' || *t == '\r';
        if (!space)
            buf[n++] = *t;
        else if (n > 0 && buf[n - 1] != ' ')
            buf[n++] = ' ';
    }
    while (n > 0 && buf[n - 1] == ' ')
        n--;
    CF_ASSERT(n < sizeof(buf));
    buf[n] = '\0';
    cf_log(level, msg, "op", op, "sqlstate", sqlstate != NULL ? sqlstate : "", "detail", buf, NULL);
}

static bool state_is_conflict(const char *state)
{
    return state != NULL && (strcmp(state, "23505") == 0 || strcmp(state, "40001") == 0 ||
                             strcmp(state, "40P01") == 0);
}

/* CF_OK for a successful result; otherwise logs it and maps it (sql.h "Errors"). */
static enum cf_err result_check(PGconn *conn, const PGresult *res, const char *op)
{
    CF_ASSERT(conn != NULL && op != NULL);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return CF_OK;
    bool lost = PQstatus(conn) != CONNECTION_OK;
    if (res == NULL && !lost) {
        cf_log(LOG_ERROR, "postgresql client out of memory", "op", op, NULL);
        return CF_ERR_NOMEM;
    }
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (detail == NULL)
        detail = PQerrorMessage(conn);
    if (state != NULL && strncmp(state, "22", 2) == 0)
        detail = "data exception (message withheld: it may quote a value)";
    bool conflict = state_is_conflict(state);
    log_pg(conflict ? LOG_WARN : LOG_ERROR,
           lost ? "postgresql connection lost" : "postgresql error", op, state, detail);
    return conflict ? CF_ERR_STORAGE_CONFLICT : CF_ERR_STORAGE;
}

static enum cf_err exec_simple(PGconn *conn, const char *sql, const char *op)
{
    CF_ASSERT(conn != NULL && sql != NULL);
    PGresult *res = PQexec(conn, sql);
    enum cf_err err = result_check(conn, res, op);
    PQclear(res);
    return err;
}

/* Connections -------------------------------------------------------------------------------- */

/* Notices (such as "relation already exists, skipping") are dropped: a notice raised by a
 * function may carry a value. */
static void notice_drop(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* A new session on url with the facade's settings. */
static enum cf_err pg_connect(const char *url, PGconn **out)
{
    CF_ASSERT(url != NULL && out != NULL);
    char timeout[I64_TEXT_BYTES];
    snprintf(timeout, sizeof(timeout), "%d", CONNECT_TIMEOUT_S);
    /* keywords before dbname are defaults the URL may override; client_encoding after it is
     * forced, because the text we send is UTF-8 */
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname",
                                "client_encoding", NULL};
    const char *const vals[] = {timeout, "coffer", url, "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL)
        return CF_ERR_NOMEM;
    PQsetNoticeProcessor(conn, notice_drop, NULL);
    if (PQstatus(conn) != CONNECTION_OK) {
        log_pg(LOG_ERROR, "cannot connect to postgresql", "connect", NULL, PQerrorMessage(conn));
        PQfinish(conn);
        return CF_ERR_STORAGE;
    }
    char setup[SETUP_SQL_BYTES];
    int len = snprintf(setup, sizeof(setup), "SET statement_timeout = %d", STATEMENT_TIMEOUT_MS);
    CF_ASSERT(len > 0 && (size_t)len < sizeof(setup));
    enum cf_err err = exec_simple(conn, setup, "session setup");
    if (err != CF_OK) {
        PQfinish(conn);
        return err;
    }
    *out = conn;
    return CF_OK;
}

/* Makes *c a live session: connects a slot never used, replaces one found lost. */
static enum cf_err conn_ready(const struct pg_db *pd, PGconn **c)
{
    if (*c != NULL && PQstatus(*c) == CONNECTION_OK)
        return CF_OK;
    if (*c != NULL) {
        cf_log(LOG_WARN, "replacing a lost postgresql connection", NULL);
        PQfinish(*c);
        *c = NULL;
    }
    enum cf_err err = pg_connect(pd->url, c);
    CF_ASSERT(err != CF_OK || *c != NULL);
    return err;
}

/* Ends whatever transaction *c is in; a session that will not leave it is closed, to be
 * replaced on the slot's next use. Afterwards *c is NULL, lost, or idle. */
static void txn_abandon(PGconn **c)
{
    if (*c == NULL || PQstatus(*c) != CONNECTION_OK)
        return;
    if (PQtransactionStatus(*c) != PQTRANS_IDLE)
        PQclear(PQexec(*c, "ROLLBACK"));
    if (PQstatus(*c) == CONNECTION_OK && PQtransactionStatus(*c) != PQTRANS_IDLE) {
        cf_log(LOG_ERROR, "postgresql session stuck in a transaction: closed", NULL);
        PQfinish(*c);
        *c = NULL;
    }
}

static enum cf_err pg_begin(struct sqltx *tx)
{
    struct pg_db *pd = pdb(tx->db);
    CF_ASSERT(tx->open && tx->slot < pd->base.pool.slots_n);
    PGconn **c = &pd->conn[tx->slot];
    enum cf_err err = conn_ready(pd, c);
    if (err == CF_OK) {
        txn_abandon(c); /* a session left in a transaction by a lost COMMIT's answer */
        err = conn_ready(pd, c);
    }
    if (err == CF_OK) {
        err = exec_simple(*c, BEGIN_SQL, "begin");
        if (err != CF_OK && PQstatus(*c) != CONNECTION_OK && conn_ready(pd, c) == CF_OK)
            err = exec_simple(*c, BEGIN_SQL, "begin");
    }
    if (err == CF_OK && tx->relaxed)
        err = exec_simple(*c, "SET LOCAL synchronous_commit = off", "relax");
    if (err != CF_OK)
        txn_abandon(c);
    CF_ASSERT(err != CF_OK || PQtransactionStatus(*c) == PQTRANS_INTRANS);
    return err;
}

/* COMMIT; PostgreSQL answers a COMMIT of a failed transaction with ROLLBACK, which is a failure
 * here. */
static enum cf_err commit_run(PGconn *conn)
{
    if (PQtransactionStatus(conn) == PQTRANS_INERROR) {
        cf_log(LOG_ERROR, "postgresql commit of a failed transaction", NULL);
        return CF_ERR_STORAGE;
    }
    PGresult *res = PQexec(conn, "COMMIT");
    enum cf_err err = result_check(conn, res, "commit");
    if (err == CF_OK && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        cf_log(LOG_ERROR, "postgresql rolled the transaction back at commit", NULL);
        err = CF_ERR_STORAGE;
    }
    PQclear(res);
    return err;
}

static enum cf_err pg_end(struct sqltx *tx, bool commit)
{
    struct pg_db *pd = pdb(tx->db);
    CF_ASSERT(tx->open && tx->slot < pd->base.pool.slots_n);
    PGconn **c = &pd->conn[tx->slot];
    CF_ASSERT(*c != NULL);
    enum cf_err err = CF_OK;
    if (commit)
        err = commit_run(*c);
    txn_abandon(c); /* a ROLLBACK, or nothing after a commit */
    CF_ASSERT(*c == NULL || PQstatus(*c) != CONNECTION_OK ||
              PQtransactionStatus(*c) == PQTRANS_IDLE);
    return err;
}

/* Statements --------------------------------------------------------------------------------- */

/* PQexecParams's arrays for one statement; text values are copied NUL-terminated into texts. */
struct pg_params {
    Oid types[SQL_PARAMS_MAX];
    const char *values[SQL_PARAMS_MAX];
    int lengths[SQL_PARAMS_MAX];
    int formats[SQL_PARAMS_MAX];
    char num[SQL_PARAMS_MAX][I64_TEXT_BYTES];
    char *texts;
};

/* Sets parameter i from v; a text value is copied to texts at *text_off, which moves on. */
static void param_set(struct pg_params *pp, size_t i, const struct sql_value *v, size_t *text_off)
{
    pp->types[i] = 0;
    pp->values[i] = NULL;
    pp->lengths[i] = 0;
    pp->formats[i] = 0;
    switch (v->type) {
    case SQL_INT:
        snprintf(pp->num[i], sizeof(pp->num[i]), "%lld", (long long)v->i);
        pp->types[i] = OID_INT8;
        pp->values[i] = pp->num[i];
        break;
    case SQL_TEXT: {
        char *t = pp->texts + *text_off;
        if (v->len > 0)
            memcpy(t, v->p, v->len);
        t[v->len] = '\0';
        pp->values[i] = t;
        *text_off += v->len + 1;
        break;
    }
    case SQL_BLOB:
        pp->types[i] = OID_BYTEA;
        pp->values[i] = v->len > 0 ? v->p : "";
        pp->lengths[i] = (int)v->len;
        pp->formats[i] = 1;
        break;
    case SQL_NULL:
        break;
    }
}

static enum cf_err params_build(struct pg_params *pp, const struct sql_value *params, size_t n)
{
    CF_ASSERT(n <= SQL_PARAMS_MAX && (n == 0 || params != NULL));
    size_t texts_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        CF_ASSERT(params[i].len <= INT_MAX); /* sql.c refused longer */
        if (params[i].type == SQL_TEXT)
            texts_bytes += params[i].len + 1;
    }
    pp->texts = texts_bytes > 0 ? malloc(texts_bytes) : NULL;
    if (texts_bytes > 0 && pp->texts == NULL)
        return CF_ERR_NOMEM;
    size_t text_off = 0;
    for (size_t i = 0; i < n; i++)
        param_set(pp, i, &params[i], &text_off);
    CF_ASSERT(text_off == texts_bytes);
    return CF_OK;
}

/* Copies column col of row of res into the last row of r. */
static enum cf_err cell_copy(const PGresult *res, int row, int col, struct sql_rows *r)
{
    if (PQgetisnull(res, row, col))
        return CF_OK;
    const char *v = PQgetvalue(res, row, col);
    Oid type = PQftype(res, col);
    if (type == OID_BOOL) {
        bool yes = v[0] == 't';
        return sql_rows_cell_set(r, (size_t)col, yes ? 1 : 0, yes ? "1" : "0", 1);
    }
    if (type == OID_BYTEA) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)v, &len);
        if (raw == NULL)
            return CF_ERR_NOMEM;
        enum cf_err err = sql_rows_cell_set(r, (size_t)col, 0, raw, len);
        PQfreemem(raw);
        return err;
    }
    return sql_rows_cell_set(r, (size_t)col, sql_text_i64(v), v,
                             (size_t)PQgetlength(res, row, col));
}

static enum cf_err rows_copy(const PGresult *res, struct sql_rows **out)
{
    int rows = PQntuples(res);
    int cols = PQnfields(res);
    CF_ASSERT(rows >= 0 && cols >= 0);
    if (rows > SQL_ROWS_MAX) {
        cf_log(LOG_ERROR, "sql query returned too many rows", NULL);
        return CF_ERR_STORAGE;
    }
    struct sql_rows *r = NULL;
    enum cf_err err = sql_rows_create((size_t)cols, &r);
    for (int i = 0; err == CF_OK && i < rows; i++) {
        err = sql_rows_row_add(r);
        for (int c = 0; err == CF_OK && c < cols; c++)
            err = cell_copy(res, i, c, r);
    }
    if (err != CF_OK) {
        sql_rows_free(r);
        return err;
    }
    *out = r;
    return CF_OK;
}

static enum cf_err pg_run(struct sqltx *tx, const char *sql, const struct sql_value *params,
                          size_t n, int64_t *changes_out, struct sql_rows **rows_out)
{
    struct pg_db *pd = pdb(tx->db);
    PGconn *conn = pd->conn[tx->slot];
    CF_ASSERT(tx->open && conn != NULL);
    CF_ASSERT((changes_out == NULL) != (rows_out == NULL));
    struct pg_params pp;
    enum cf_err err = params_build(&pp, params, n);
    if (err != CF_OK)
        return err;
    PGresult *res = PQexecParams(conn, sql, (int)n, pp.types, pp.values, pp.lengths, pp.formats, 0);
    free(pp.texts);
    err = result_check(conn, res, "statement");
    if (err == CF_OK && rows_out != NULL)
        err = rows_copy(res, rows_out);
    else if (err == CF_OK)
        *changes_out = sql_text_i64(PQcmdTuples(res)); /* "" (0) for commands without a count */
    PQclear(res);
    return err;
}

static enum cf_err pg_script(struct sqltx *tx, const char *ddl)
{
    struct pg_db *pd = pdb(tx->db);
    CF_ASSERT(tx->open && ddl != NULL && pd->conn[tx->slot] != NULL);
    return exec_simple(pd->conn[tx->slot], ddl, "migration");
}

/* Backup and close --------------------------------------------------------------------------- */

static enum cf_err pg_backup(struct sqldb *db, const char *dest_path)
{
    CF_ASSERT(db != NULL && db->postgres && dest_path != NULL);
    cf_log(LOG_ERROR, "sql backup is for sqlite databases; use pg_dump for postgresql", NULL);
    return CF_ERR_CONFIG;
}

static void pg_close(struct sqldb *db)
{
    struct pg_db *pd = pdb(db);
    for (unsigned i = 0; i < SQL_POOL_MAX; i++) {
        if (pd->conn[i] != NULL)
            PQfinish(pd->conn[i]);
    }
    sqldb_fini(&pd->base);
    free(pd->url);
    free(pd);
}

static const struct sql_backend pg_ops = {
    .close = pg_close,
    .begin = pg_begin,
    .end = pg_end,
    .run = pg_run,
    .script = pg_script,
    .backup = pg_backup,
};

enum cf_err sql_pg_open(const char *url, struct sqldb **out)
{
    CF_ASSERT(url != NULL && out != NULL);
    struct pg_db *pd = calloc(1, sizeof(*pd));
    if (pd == NULL)
        return CF_ERR_NOMEM;
    pd->url = strdup(url);
    enum cf_err err = pd->url != NULL ? CF_OK : CF_ERR_NOMEM;
    if (err == CF_OK)
        err = sqldb_init(&pd->base, &pg_ops, true, SQL_POOL_MAX);
    if (err != CF_OK) {
        free(pd->url);
        free(pd);
        return err;
    }
    err = pg_connect(pd->url, &pd->conn[0]);
    if (err != CF_OK) {
        pg_close(&pd->base);
        return err;
    }
    *out = &pd->base;
    return CF_OK;
}
