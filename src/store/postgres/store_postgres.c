/*
 * store_postgres.c - the PostgreSQL backend of the storage contract (store.h).
 *
 * One writer connection (used by the ledger writer thread only, and by meta_get/meta_put
 * outside a batch) and a pool of read connections, each with every statement prepared once per
 * session. Several Coffer servers may share one database (single_writer = false): w_begin opens
 * a READ COMMITTED transaction and takes the one global write lock, a transaction-scoped
 * advisory lock, so batches from every server apply one at a time in one journal order and the
 * hash chain stays linear. READ COMMITTED, not REPEATABLE READ: every statement after the lock
 * then sees what the previous holder committed. Readers run REPEATABLE READ READ ONLY
 * transactions: one snapshot from their first query to r_close.
 *
 * Parameters: numbers and NUL-terminated strings go as text; bytes (hashes, keys, metadata,
 * stored bodies) and the length-delimited owner/metadata of accounts go binary (format 1).
 * Results are text; bytea columns are decoded with PQunescapeBytea into the caller's arena.
 *
 * Errors: SQLSTATE 40001/40P01 are CF_ERR_STORAGE_CONFLICT, anything else the database says is
 * CF_ERR_STORAGE. Inserts use ON CONFLICT DO NOTHING and report a duplicate row as
 * CF_ERR_STORAGE without aborting the transaction, as SQLite does. A connection found broken is
 * reset (PQreset, settings and statements again) on the next w_begin, r_open or writer call
 * outside a batch, so a server recovers by itself when the database comes back. Logs carry the
 * SQLSTATE and libpq's message, never the URL (it may hold a password).
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "store/postgres/schema.h"
#include "store/store.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* The widest statement binds an entry's 19 columns. */
#define STMT_PARAMS_MAX 19

/* "-9223372036854775808" and its NUL: the longest int64 in decimal. */
#define I64_TEXT_BYTES 21

/* A connection attempt (at open, or a reset after an outage) gives up after as long as a lock
 * wait may take, so the writer is never stuck on an unreachable host. */
#define CONNECT_TIMEOUT_S ((STORE_BUSY_TIMEOUT_MS + 999) / 1000)

/* While the database is down a connection tries to reconnect at most this often: the writer's
 * idle sweeps and every reader would otherwise reconnect (and log) many times a second. A
 * server notices the database is back at most this late. */
#define RECONNECT_BACKOFF_MS 500

/* "DEALLOCATE ALL; SET lock_timeout = " and an int. */
#define SETUP_SQL_BYTES 64

#define ENTRY_COLS                                                                                 \
    "seq, type, debit_id, credit_id, amount, currency, code, metadata, idem_key, pending_seq, "    \
    "group_seq, expires_at_us, created_at_us, hash, status, resolved_amount, resolution_seq, "     \
    "debit_prev_seq, credit_prev_seq"
#define ENTRY_COLS_N 19
#define ACCOUNT_COLS                                                                               \
    "id, currency, normal, kind, flags, debits_posted, credits_posted, debits_pending, "           \
    "credits_pending, created_at_us, owner, metadata, last_seq"
#define ACCOUNT_COLS_N 13

/* The entry before e in account_id's history (SQL form of entry_prev_for). */
#define PREV_FOR_SQL                                                                               \
    "CASE WHEN e.debit_id = $1::bigint THEN e.debit_prev_seq ELSE e.credit_prev_seq END"

#define W_BEGIN_SQL                                                                                \
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(" STR(PG_LOCK_WRITE_KEY) ")"
#define R_BEGIN_SQL "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
#define MIGRATE_BEGIN_SQL                                                                          \
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(" STR(                     \
        PG_LOCK_MIGRATE_KEY) "); " PG_SCHEMA_TABLE_SQL

/* A statement prepared on every session of a connection; name is also what logs show. */
struct pg_stmt {
    const char *name;
    const char *sql;
};

enum w_stmt {
    W_ACCOUNT_GET,
    W_ACCOUNTS_MANY,
    W_ACCOUNT_INSERT,
    W_ACCOUNT_UPDATE,
    W_ENTRY_GET,
    W_ENTRY_KEY,
    W_ENTRY_INSERT,
    W_ENTRY_RESOLVE,
    W_IDEM_GET,
    W_IDEM_MANY,
    W_IDEM_PUT,
    W_IDEM_PURGE,
    W_EXPIRED,
    W_HEAD,
    W_META_GET,
    W_META_PUT,
    W_STMT_COUNT
};

static const struct pg_stmt w_stmts[W_STMT_COUNT] = {
    [W_ACCOUNTS_MANY] = {"coffer_w_accounts_many",
                         "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = ANY($1::bigint[])"},
    [W_ACCOUNT_GET] = {"coffer_w_account_get",
                       "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = $1"},
    [W_ACCOUNT_INSERT] = {"coffer_w_account_insert",
                          "INSERT INTO accounts (" ACCOUNT_COLS ") VALUES ($1, $2, $3, $4, $5,"
                          " $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING"},
    [W_ACCOUNT_UPDATE] = {"coffer_w_account_update",
                          "UPDATE accounts SET flags = $2, debits_posted = $3,"
                          " credits_posted = $4, debits_pending = $5, credits_pending = $6,"
                          " last_seq = $7 WHERE id = $1"},
    [W_ENTRY_GET] = {"coffer_w_entry_get", "SELECT " ENTRY_COLS " FROM entries WHERE seq = $1"},
    [W_ENTRY_KEY] = {"coffer_w_entry_key",
                     "SELECT " ENTRY_COLS " FROM entries WHERE idem_key = $1"},
    [W_ENTRY_INSERT] = {"coffer_w_entry_insert",
                        "INSERT INTO entries (" ENTRY_COLS ") VALUES ($1, $2, $3, $4, $5, $6,"
                        " $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
                        " ON CONFLICT DO NOTHING"},
    [W_ENTRY_RESOLVE] = {"coffer_w_entry_resolve",
                         "UPDATE entries SET status = $2, resolved_amount = $3,"
                         " resolution_seq = $4 WHERE seq = $1"},
    [W_IDEM_MANY] = {"coffer_w_idem_many",
                     "SELECT request_hash, http_status, body, created_at_us, key FROM idempotency"
                     " WHERE key = ANY($1::bytea[])"},
    [W_IDEM_GET] = {"coffer_w_idem_get", "SELECT request_hash, http_status, body, created_at_us"
                                         " FROM idempotency WHERE key = $1"},
    [W_IDEM_PUT] = {"coffer_w_idem_put",
                    "INSERT INTO idempotency (key, request_hash, http_status, body,"
                    " created_at_us) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"},
    [W_IDEM_PURGE] = {"coffer_w_idem_purge", "DELETE FROM idempotency WHERE created_at_us < $1"},
    [W_EXPIRED] = {"coffer_w_expired",
                   "SELECT seq FROM entries WHERE status = 1 AND expires_at_us > 0"
                   " AND expires_at_us <= $1 ORDER BY expires_at_us, seq LIMIT $2"},
    /* one row: max(account id) (NULL when none), then the last entry's seq and hash (NULL when
     * the journal is empty), both read from the primary keys' ends */
    [W_HEAD] = {"coffer_w_head",
                "SELECT (SELECT max(id) FROM accounts), e.seq, e.hash FROM (SELECT 1) AS one"
                " LEFT JOIN (SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1) AS e"
                " ON true"},
    [W_META_GET] = {"coffer_w_meta_get", "SELECT value FROM meta WHERE key = $1"},
    [W_META_PUT] = {"coffer_w_meta_put", "INSERT INTO meta (key, value) VALUES ($1, $2)"
                                         " ON CONFLICT (key) DO UPDATE SET value = excluded.value"},
};

enum r_stmt {
    R_ACCOUNT_GET,
    R_ACCOUNTS_LIST,
    R_ACCOUNT_HEAD,
    R_ENTRY_GET,
    R_ENTRY_LINKS,
    R_HISTORY,
    R_ENTRIES_SCAN,
    R_TOTALS,
    R_STMT_COUNT
};

static const struct pg_stmt r_stmts[R_STMT_COUNT] = {
    [R_ACCOUNT_GET] = {"coffer_r_account_get",
                       "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = $1"},
    [R_ACCOUNTS_LIST] = {"coffer_r_accounts_list",
                         "SELECT " ACCOUNT_COLS " FROM accounts WHERE id > $1 ORDER BY id"
                         " LIMIT $2"},
    [R_ACCOUNT_HEAD] = {"coffer_r_account_head", "SELECT last_seq FROM accounts WHERE id = $1"},
    [R_ENTRY_GET] = {"coffer_r_entry_get", "SELECT " ENTRY_COLS " FROM entries WHERE seq = $1"},
    [R_ENTRY_LINKS] = {"coffer_r_entry_links",
                       "SELECT debit_id, credit_id, debit_prev_seq, credit_prev_seq"
                       " FROM entries WHERE seq = $1"},
    /* An account's history from entry $2 back, up to $3 entries: the same walk along
     * debit_prev_seq / credit_prev_seq as SQLite's, done by the server in one round trip. A
     * link to a missing entry yields a row of NULLs (corrupt), and $3 bounds any cycle. */
    [R_HISTORY] = {"coffer_r_history",
                   "WITH RECURSIVE walk (at, depth) AS ("
                   "  SELECT $2::bigint, 1::bigint"
                   " UNION ALL"
                   "  SELECT " PREV_FOR_SQL ", walk.depth + 1"
                   "  FROM walk JOIN entries e ON e.seq = walk.at"
                   "  WHERE walk.depth < $3::bigint AND " PREV_FOR_SQL " <> 0"
                   ") SELECT " ENTRY_COLS " FROM walk LEFT JOIN entries ON entries.seq = walk.at"
                   " ORDER BY walk.depth"},
    [R_ENTRIES_SCAN] = {"coffer_r_entries_scan",
                        "SELECT " ENTRY_COLS " FROM entries WHERE seq > $1 ORDER BY seq LIMIT $2"},
    /* sum(bigint) is numeric in PostgreSQL: exact, decoded into 128 bits */
    [R_TOTALS] = {"coffer_r_totals",
                  "SELECT currency, sum(debits_posted), sum(credits_posted), sum(debits_pending),"
                  " sum(credits_pending), count(*) FROM accounts GROUP BY currency"
                  " ORDER BY currency LIMIT $1"},
};

/* One libpq connection and the statements its sessions prepare. */
struct pg_conn {
    PGconn *conn;
    const struct pg_stmt *stmts;
    int stmts_n;
    bool ready;              /* settings applied and statements prepared on the current session */
    int64_t reset_failed_us; /* monotonic time of the last failed reconnect, 0 when none */
};

struct store_reader {
    struct pg_store *owner;
    struct pg_conn c;
    struct store_reader *next_free;
};

/* A batch's writes are pipelined (libpq pipeline mode): sent without waiting for answers, whose
 * results are read in rounds of this many and at w_commit. Bounded so neither side's socket
 * buffer fills with unread results while the other keeps sending. */
#define PIPE_ROUND_MAX 512

/* A write sent in pipeline mode, and the error to report when it changed no row. */
struct piped {
    int stmt;
    enum cf_err none;
};

struct pg_store {
    struct store base;
    struct pg_conn w; /* conn is NULL when read-only */
    bool in_batch;    /* between a successful w_begin and w_commit/w_rollback */
    bool piping;      /* the writer connection is in pipeline mode */
    int pipe_n;       /* writes sent since the last round was read */
    struct piped pipe[PIPE_ROUND_MAX];
    struct store_reader *readers;
    unsigned readers_n, readers_free;
    struct store_reader *free_list;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
};

static struct pg_store *pg(struct store *s) { return (struct pg_store *)s; }

static bool fits_i64(uint64_t v) { return v <= (uint64_t)INT64_MAX; }

/* Parameters ------------------------------------------------------------------------------- */

struct params {
    int n;
    const char *values[STMT_PARAMS_MAX];
    int lengths[STMT_PARAMS_MAX];
    int formats[STMT_PARAMS_MAX];
    char num[STMT_PARAMS_MAX][I64_TEXT_BYTES];
};

static int p_slot(struct params *p, const char *value, int length, int format)
{
    CF_ASSERT(p->n >= 0 && p->n < STMT_PARAMS_MAX);
    int i = p->n++;
    p->values[i] = value;
    p->lengths[i] = length;
    p->formats[i] = format;
    return i;
}

static void p_i64(struct params *p, int64_t v)
{
    int i = p_slot(p, NULL, 0, 0);
    int len = snprintf(p->num[i], sizeof(p->num[i]), "%" PRId64, v);
    CF_ASSERT(len > 0 && (size_t)len < sizeof(p->num[i]));
    p->values[i] = p->num[i];
}

/* Ids, seqs and links are bigint: what the ledger hands over fits by construction. */
static void p_u64(struct params *p, uint64_t v)
{
    CF_ASSERT(fits_i64(v));
    p_i64(p, (int64_t)v);
}

/* A NUL-terminated string, as text. */
static void p_text(struct params *p, const char *s)
{
    CF_ASSERT(s != NULL);
    p_slot(p, s, 0, 0);
}

/* len bytes, binary: raw bytes for bytea, the characters themselves for text. */
static void p_bytes(struct params *p, const void *b, size_t len)
{
    CF_ASSERT(len <= (size_t)INT_MAX && (b != NULL || len == 0));
    p_slot(p, b != NULL ? b : "", (int)len, 1);
}

static void p_bytes_or_null(struct params *p, const void *b, size_t len)
{
    if (b == NULL)
        p_slot(p, NULL, 0, 0);
    else
        p_bytes(p, b, len);
}

/* Errors and running statements ------------------------------------------------------------- */

/* Logs a libpq or server message on one line (its newlines and tabs folded into single spaces)
 * with the op and SQLSTATE only. */
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
    buf[n] = '\0';
    CF_ASSERT(n < sizeof(buf));
    cf_log(level, msg, "op", op, "sqlstate", sqlstate != NULL ? sqlstate : "", "detail", buf, NULL);
}

/* CF_OK for a successful result; otherwise logs it and maps it (store.h "Errors"). */
static enum cf_err res_check(PGconn *conn, const PGresult *res, const char *op)
{
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return CF_OK;
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (detail == NULL && res != NULL && PQresultErrorMessage(res)[0] != '\0')
        detail = PQresultErrorMessage(res);
    if (detail == NULL)
        detail = PQerrorMessage(conn);
    bool conflict = state != NULL && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0);
    bool lost = PQstatus(conn) != CONNECTION_OK;
    log_pg(conflict ? LOG_WARN : LOG_ERROR,
           lost ? "postgresql connection lost" : "postgresql error", op, state, detail);
    return conflict ? CF_ERR_STORAGE_CONFLICT : CF_ERR_STORAGE;
}

/* Runs prepared statement i on c; on CF_OK *res_out is the caller's to PQclear. */
static enum cf_err stmt_run(struct pg_conn *c, int i, const struct params *p, PGresult **res_out)
{
    CF_ASSERT(c->conn != NULL && i >= 0 && i < c->stmts_n);
    CF_ASSERT(p->n >= 0 && p->n <= STMT_PARAMS_MAX);
    PGresult *res =
        PQexecPrepared(c->conn, c->stmts[i].name, p->n, p->values, p->lengths, p->formats, 0);
    enum cf_err err = res_check(c->conn, res, c->stmts[i].name);
    if (err != CF_OK) {
        PQclear(res);
        return err;
    }
    *res_out = res;
    return CF_OK;
}

/* Runs SQL text without parameters (transaction control, setup, migrations). */
static enum cf_err exec_simple(struct pg_conn *c, const char *sql, const char *op)
{
    CF_ASSERT(c->conn != NULL && sql != NULL);
    PGresult *res = PQexec(c->conn, sql);
    enum cf_err err = res_check(c->conn, res, op);
    PQclear(res);
    return err;
}

/* Reads one sent write's result (the NULL that ends it too); CF_OK when it changed one row. */
static enum cf_err pipe_result(PGconn *conn, const struct piped *q)
{
    PGresult *res = PQgetResult(conn);
    if (res == NULL)
        return res_check(conn, NULL, "pipeline result");
    enum cf_err err = CF_OK;
    if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
        err = CF_ERR_STORAGE; /* an earlier write failed and was reported */
    else if ((err = res_check(conn, res, "pipelined write")) == CF_OK &&
             strcmp(PQcmdTuples(res), "1") != 0) {
        cf_log(LOG_ERROR, "postgresql pipelined write changed no row", NULL);
        err = q->none;
    }
    PQclear(res);
    PQclear(PQgetResult(conn)); /* the NULL after each query's result */
    return err;
}

/* Sends a sync and reads the results of every write sent since the last round. */
static enum cf_err pipe_round(struct pg_conn *c, struct piped *pipe, int *pipe_n)
{
    CF_ASSERT(*pipe_n >= 0 && *pipe_n <= PIPE_ROUND_MAX);
    enum cf_err err = PQpipelineSync(c->conn) == 1 ? CF_OK : res_check(c->conn, NULL, "sync");
    for (int k = 0; k < *pipe_n && PQstatus(c->conn) == CONNECTION_OK; k++) {
        enum cf_err e = pipe_result(c->conn, &pipe[k]);
        if (err == CF_OK)
            err = e;
    }
    *pipe_n = 0;
    PGresult *sync = PQstatus(c->conn) == CONNECTION_OK ? PQgetResult(c->conn) : NULL;
    if (sync == NULL || PQresultStatus(sync) != PGRES_PIPELINE_SYNC)
        err = err != CF_OK ? err : res_check(c->conn, sync, "pipeline sync");
    PQclear(sync);
    return err;
}

/* Leaves pipeline mode after reading what is outstanding; the first error, if any. */
static enum cf_err pipe_end(struct pg_store *ps)
{
    if (!ps->piping)
        return CF_OK;
    enum cf_err err = ps->pipe_n > 0 ? pipe_round(&ps->w, ps->pipe, &ps->pipe_n) : CF_OK;
    if (PQexitPipelineMode(ps->w.conn) != 1 && err == CF_OK)
        err = res_check(ps->w.conn, NULL, "exit pipeline");
    ps->piping = false;
    ps->pipe_n = 0;
    return err;
}

/* Sends a batch write without waiting; its result is checked at the next round or at commit. */
static enum cf_err pipe_send(struct pg_store *ps, int i, const struct params *p, enum cf_err none)
{
    PGconn *conn = ps->w.conn;
    if (!ps->piping) {
        if (PQenterPipelineMode(conn) != 1)
            return res_check(conn, NULL, "enter pipeline");
        ps->piping = true;
    }
    if (ps->pipe_n == PIPE_ROUND_MAX) {
        enum cf_err err = pipe_round(&ps->w, ps->pipe, &ps->pipe_n);
        if (err != CF_OK)
            return err;
    }
    if (PQsendQueryPrepared(conn, ps->w.stmts[i].name, p->n, p->values, p->lengths, p->formats,
                            0) != 1)
        return res_check(conn, NULL, ps->w.stmts[i].name);
    ps->pipe[ps->pipe_n].stmt = i;
    ps->pipe[ps->pipe_n].none = none;
    ps->pipe_n++;
    return CF_OK;
}

/* Ends whatever transaction c is in, ignoring errors (a lost session has none left). */
static void txn_abandon(struct pg_conn *c)
{
    PGTransactionStatusType t = PQtransactionStatus(c->conn);
    if (t == PQTRANS_INTRANS || t == PQTRANS_INERROR)
        PQclear(PQexec(c->conn, "ROLLBACK"));
}

/* Row decoding ------------------------------------------------------------------------------ */

/* One result row being decoded; err keeps the first failure so callers check once. */
struct row {
    const PGresult *res;
    int i;
    enum cf_err err;
};

static void d_fail(struct row *d, enum cf_err err)
{
    if (d->err == CF_OK)
        d->err = err;
}

static const char *d_value(struct row *d, int col)
{
    CF_ASSERT(col >= 0 && col < PQnfields(d->res) && d->i < PQntuples(d->res));
    return PQgetisnull(d->res, d->i, col) ? NULL : PQgetvalue(d->res, d->i, col);
}

static int64_t d_i64(struct row *d, int col)
{
    const char *t = d_value(d, col);
    char *end = NULL;
    errno = 0;
    long long v = t != NULL ? strtoll(t, &end, 10) : 0;
    if (t == NULL || errno != 0 || end == t || *end != '\0') {
        d_fail(d, CF_ERR_CORRUPT);
        return 0;
    }
    return (int64_t)v;
}

static uint64_t d_u64(struct row *d, int col)
{
    int64_t v = d_i64(d, col);
    if (v < 0) {
        d_fail(d, CF_ERR_CORRUPT);
        return 0;
    }
    return (uint64_t)v;
}

static uint64_t d_u64_or_zero(struct row *d, int col)
{
    return d_value(d, col) == NULL ? 0 : d_u64(d, col);
}

static unsigned d_enum(struct row *d, int col, unsigned max)
{
    int64_t v = d_i64(d, col);
    if (v < 0 || v > (int64_t)max) {
        d_fail(d, CF_ERR_CORRUPT);
        return 0;
    }
    return (unsigned)v;
}

/* A text column into a fixed buffer; CORRUPT when it is NULL or does not fit. */
static void d_fixed(struct row *d, int col, char *buf, size_t buf_bytes)
{
    const char *t = d_value(d, col);
    size_t n = t != NULL ? (size_t)PQgetlength(d->res, d->i, col) : 0;
    if (t == NULL || n >= buf_bytes) {
        d_fail(d, CF_ERR_CORRUPT);
        return;
    }
    memcpy(buf, t, n);
    buf[n] = '\0';
}

/* A text column copied into the arena; NULL reads as "". */
static void d_str(struct row *d, int col, struct arena *arena, const char **out)
{
    const char *t = d_value(d, col);
    *out = "";
    if (t == NULL)
        return;
    char *copy = arena_strndup(arena, t, (size_t)PQgetlength(d->res, d->i, col));
    if (copy == NULL)
        d_fail(d, CF_ERR_NOMEM);
    else
        *out = copy;
}

/* A bytea column unescaped into the arena (NUL-terminated); NULL stays NULL, length 0. */
static void d_bytes(struct row *d, int col, struct arena *arena, const char **out, size_t *len_out)
{
    const char *t = d_value(d, col);
    *out = NULL;
    *len_out = 0;
    if (t == NULL)
        return;
    size_t n = 0;
    bool empty = t[0] == '\0' || strcmp(t, "\\x") == 0; /* '' in escape or hex output */
    unsigned char *raw = empty ? NULL : PQunescapeBytea((const unsigned char *)t, &n);
    if (!empty && raw == NULL) {
        d_fail(d, CF_ERR_NOMEM);
        return;
    }
    char *copy = arena_strndup(arena, raw != NULL ? (const char *)raw : "", n);
    PQfreemem(raw);
    if (copy == NULL) {
        d_fail(d, CF_ERR_NOMEM);
        return;
    }
    *out = copy;
    *len_out = n;
}

static void d_hash(struct row *d, int col, uint8_t out[HASH_BYTES])
{
    const char *t = d_value(d, col);
    size_t n = 0;
    unsigned char *raw = t != NULL ? PQunescapeBytea((const unsigned char *)t, &n) : NULL;
    if (raw != NULL && n == HASH_BYTES)
        memcpy(out, raw, HASH_BYTES);
    else
        d_fail(d, t != NULL && raw == NULL ? CF_ERR_NOMEM : CF_ERR_CORRUPT);
    PQfreemem(raw);
}

/* A numeric sum of non-negative totals (the schema's CHECKs) in decimal, into 128 bits. */
static __int128 d_sum(struct row *d, int col)
{
    const unsigned __int128 max = ((unsigned __int128)1 << 127) - 1;
    const char *t = d_value(d, col);
    unsigned __int128 v = 0;
    if (t == NULL || *t == '\0') {
        d_fail(d, CF_ERR_CORRUPT);
        return 0;
    }
    for (; *t != '\0'; t++) {
        unsigned digit = (unsigned)(unsigned char)*t - (unsigned)'0';
        if (digit > 9 || v > (max - digit) / 10) {
            d_fail(d, CF_ERR_CORRUPT);
            return 0;
        }
        v = v * 10 + digit;
    }
    return (__int128)v;
}

static void row_account(struct row *d, struct ledger_account *a)
{
    CF_ASSERT(PQnfields(d->res) == ACCOUNT_COLS_N);
    memset(a, 0, sizeof(*a));
    a->id = d_u64(d, 0);
    d_fixed(d, 1, a->currency, sizeof(a->currency));
    a->normal = (uint8_t)d_enum(d, 2, LEDGER_NORMAL_DEBIT);
    a->kind = (uint8_t)d_enum(d, 3, LEDGER_KIND_SYSTEM);
    a->flags = (uint32_t)d_enum(d, 4, UINT32_MAX);
    a->debits_posted = d_i64(d, 5);
    a->credits_posted = d_i64(d, 6);
    a->debits_pending = d_i64(d, 7);
    a->credits_pending = d_i64(d, 8);
    a->created_at_us = d_i64(d, 9);
    a->last_seq = d_u64(d, 12);
}

static void row_account_full(struct row *d, struct store_account_row *out, struct arena *arena)
{
    row_account(d, &out->account);
    d_str(d, 10, arena, &out->owner);
    d_str(d, 11, arena, &out->metadata);
}

static void row_entry(struct row *d, struct ledger_entry *e, struct arena *arena)
{
    CF_ASSERT(PQnfields(d->res) == ENTRY_COLS_N);
    memset(e, 0, sizeof(*e));
    e->seq = d_u64(d, 0);
    e->type = (uint8_t)d_enum(d, 1, LEDGER_ENTRY_EXPIRE_PENDING);
    e->debit_id = d_u64(d, 2);
    e->credit_id = d_u64(d, 3);
    e->amount = d_i64(d, 4);
    d_fixed(d, 5, e->currency, sizeof(e->currency));
    d_fixed(d, 6, e->code, sizeof(e->code));
    d_bytes(d, 7, arena, &e->metadata, &e->metadata_len);
    d_bytes(d, 8, arena, &e->idem_key, &e->idem_key_len);
    e->pending_seq = d_u64(d, 9);
    e->group_seq = d_u64(d, 10);
    e->expires_at_us = d_i64(d, 11);
    e->created_at_us = d_i64(d, 12);
    d_hash(d, 13, e->hash);
    e->status = (uint8_t)d_enum(d, 14, LEDGER_STATUS_EXPIRED);
    e->resolved_amount = d_i64(d, 15);
    e->resolution_seq = d_u64(d, 16);
    e->debit_prev_seq = d_u64(d, 17);
    e->credit_prev_seq = d_u64(d, 18);
    if (e->metadata_len > LEDGER_METADATA_BYTES_MAX || e->idem_key_len > IDEM_KEY_BYTES_MAX)
        d_fail(d, CF_ERR_CORRUPT);
}

static void row_idem(struct row *d, struct store_idem_record *r, struct arena *arena)
{
    CF_ASSERT(PQnfields(d->res) >= 4); /* prefetch adds the key as a fifth column */
    memset(r, 0, sizeof(*r));
    d_hash(d, 0, r->request_hash);
    r->http_status = (int)d_enum(d, 1, INT_MAX);
    d_bytes(d, 2, arena, &r->body, &r->body_len);
    r->created_at_us = d_i64(d, 3);
    if (r->body == NULL)
        r->body = "";
}

/* Rows of a lookup by a unique key: NOT_FOUND with none, CORRUPT with several. */
static enum cf_err unique_row(const PGresult *res)
{
    int n = PQntuples(res);
    return n == 1 ? CF_OK : n == 0 ? CF_ERR_NOT_FOUND : CF_ERR_CORRUPT;
}

/* Connections ------------------------------------------------------------------------------- */

/* Decoders for one_row, each with the same shape. */
typedef void (*row_decode_fn)(struct row *d, void *out, struct arena *arena);

static void dec_account(struct row *d, void *out, struct arena *arena)
{
    (void)arena;
    row_account(d, out);
}

static void dec_account_full(struct row *d, void *out, struct arena *arena)
{
    row_account_full(d, out, arena);
}

static void dec_entry(struct row *d, void *out, struct arena *arena) { row_entry(d, out, arena); }
static void dec_idem(struct row *d, void *out, struct arena *arena) { row_idem(d, out, arena); }

/* Anything one_row may decode, so it can decode into a temporary first. */
union row_out {
    struct ledger_account account;
    struct store_account_row account_row;
    struct ledger_entry entry;
    struct store_idem_record idem;
};

/* Decodes res's only row into out (out_bytes of it) and clears res. out is untouched unless res
 * holds exactly one well-formed row (NOT_FOUND with none, CORRUPT with several). */
static enum cf_err one_row(PGresult *res, row_decode_fn decode, void *out, size_t out_bytes,
                           struct arena *arena)
{
    CF_ASSERT(out_bytes <= sizeof(union row_out));
    union row_out tmp;
    struct row d = {.res = res, .i = 0, .err = unique_row(res)};
    if (d.err == CF_OK)
        decode(&d, &tmp, arena);
    PQclear(res);
    if (d.err == CF_OK)
        memcpy(out, &tmp, out_bytes);
    return d.err;
}

static void notice_log(void *arg, const char *message)
{
    (void)arg;
    log_pg(LOG_DEBUG, "postgresql notice", "notice", NULL, message);
}

/* Session settings and every prepared statement, on a fresh (or reset) session. */
static enum cf_err conn_setup(struct pg_conn *c)
{
    CF_ASSERT(c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK);
    c->ready = false;
    char setup[SETUP_SQL_BYTES];
    int len = snprintf(setup, sizeof(setup), "DEALLOCATE ALL; SET lock_timeout = %d",
                       STORE_BUSY_TIMEOUT_MS);
    CF_ASSERT(len > 0 && (size_t)len < sizeof(setup));
    enum cf_err err = exec_simple(c, setup, "session setup");
    for (int i = 0; err == CF_OK && i < c->stmts_n; i++) {
        PGresult *res = PQprepare(c->conn, c->stmts[i].name, c->stmts[i].sql, 0, NULL);
        err = res_check(c->conn, res, c->stmts[i].name);
        PQclear(res);
    }
    c->ready = err == CF_OK;
    return err;
}

/* Connects to url; statements are prepared later by conn_setup (after migrations). */
static enum cf_err conn_connect(const char *url, const struct pg_stmt *stmts, int stmts_n,
                                struct pg_conn *out)
{
    CF_ASSERT(url != NULL && stmts != NULL && stmts_n > 0);
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
    PQsetNoticeProcessor(conn, notice_log, NULL);
    if (PQstatus(conn) != CONNECTION_OK) {
        log_pg(LOG_ERROR, "cannot connect to postgresql", "connect", NULL, PQerrorMessage(conn));
        PQfinish(conn);
        return CF_ERR_STORAGE;
    }
    out->conn = conn;
    out->stmts = stmts;
    out->stmts_n = stmts_n;
    out->ready = false;
    out->reset_failed_us = 0;
    return CF_OK;
}

/* Makes c usable: resets a broken session, then re-applies settings and statements. */
static enum cf_err conn_ensure(struct pg_conn *c)
{
    CF_ASSERT(c->conn != NULL);
    if (PQstatus(c->conn) == CONNECTION_OK && c->ready)
        return CF_OK;
    if (PQstatus(c->conn) != CONNECTION_OK) {
        c->ready = false;
        int64_t now_us = cf_monotonic_us();
        if (c->reset_failed_us != 0 && now_us - c->reset_failed_us < RECONNECT_BACKOFF_MS * 1000LL)
            return CF_ERR_STORAGE; /* still down a moment ago: already logged */
        PQreset(c->conn);
        if (PQstatus(c->conn) != CONNECTION_OK) {
            c->reset_failed_us = cf_monotonic_us();
            log_pg(LOG_ERROR, "cannot reconnect to postgresql", "reconnect", NULL,
                   PQerrorMessage(c->conn));
            return CF_ERR_STORAGE;
        }
        c->reset_failed_us = 0;
        cf_log(LOG_WARN, "reconnected to postgresql", NULL);
    }
    return conn_setup(c);
}

/* Starts a transaction with sql. A database restart shows only on the next statement, so when
 * BEGIN finds the session lost it reconnects and tries once more: nothing was done yet. */
static enum cf_err conn_begin(struct pg_conn *c, const char *sql, const char *op)
{
    CF_ASSERT(c->conn != NULL && PQtransactionStatus(c->conn) != PQTRANS_INTRANS);
    enum cf_err err = conn_ensure(c);
    if (err == CF_OK) {
        err = exec_simple(c, sql, op);
        if (err != CF_OK && PQstatus(c->conn) != CONNECTION_OK && conn_ensure(c) == CF_OK)
            err = exec_simple(c, sql, op);
    }
    if (err != CF_OK)
        txn_abandon(c);
    CF_ASSERT(err != CF_OK || PQtransactionStatus(c->conn) == PQTRANS_INTRANS);
    return err;
}

/* Migrations -------------------------------------------------------------------------------- */

/* The applied schema version, 0 when there is no schema at all. */
static enum cf_err schema_version(struct pg_conn *c, int *version_out)
{
    PGresult *res = PQexec(c->conn, "SELECT to_regclass('coffer_schema') IS NOT NULL");
    enum cf_err err = res_check(c->conn, res, "schema exists");
    bool exists = err == CF_OK && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (err != CF_OK || !exists) {
        if (err == CF_OK)
            *version_out = 0;
        return err;
    }
    res = PQexec(c->conn, "SELECT coalesce(max(version), 0) FROM coffer_schema");
    if ((err = res_check(c->conn, res, "schema version")) == CF_OK) {
        struct row d = {.res = res, .i = 0, .err = unique_row(res)};
        int64_t v = d.err == CF_OK ? d_i64(&d, 0) : 0;
        if (d.err == CF_OK && (v < 0 || v > INT_MAX))
            d.err = CF_ERR_CORRUPT;
        if ((err = d.err) == CF_OK)
            *version_out = (int)v;
    }
    PQclear(res);
    return err;
}

/* Opens without migrating: the schema must be exactly this binary's. */
static enum cf_err schema_require(struct pg_conn *c)
{
    int v = -1;
    enum cf_err err = schema_version(c, &v);
    if (err != CF_OK)
        return err;
    if (v != PG_SCHEMA_VERSION) {
        char have[I64_TEXT_BYTES], want[I64_TEXT_BYTES];
        snprintf(have, sizeof(have), "%d", v);
        snprintf(want, sizeof(want), "%d", PG_SCHEMA_VERSION);
        cf_log(LOG_ERROR,
               v == 0 ? "the database has no coffer schema"
                      : "the database schema is not this binary's",
               "version", have, "expected", want, NULL);
        return CF_ERR_CONFIG;
    }
    return CF_OK;
}

static enum cf_err migration_apply(struct pg_conn *c, int i)
{
    CF_ASSERT(i >= 0 && i < PG_SCHEMA_VERSION);
    enum cf_err err = exec_simple(c, pg_migrations[i], "migration");
    if (err != CF_OK)
        return err;
    struct params p = {.n = 0};
    p_i64(&p, i + 1);
    PGresult *res = PQexecParams(c->conn, "INSERT INTO coffer_schema (version) VALUES ($1)", 1,
                                 NULL, p.values, p.lengths, p.formats, 0);
    err = res_check(c->conn, res, "migration version");
    PQclear(res);
    if (err == CF_OK)
        cf_log(LOG_INFO, "schema migrated", "version", p.num[0], NULL);
    return err;
}

/* Brings the schema to this binary's version in one transaction under the migration lock, so
 * servers starting together migrate once and the others see the result. */
static enum cf_err schema_migrate(struct pg_conn *c)
{
    enum cf_err err = exec_simple(c, MIGRATE_BEGIN_SQL, "migration lock");
    int v = 0;
    if (err == CF_OK)
        err = schema_version(c, &v);
    if (err == CF_OK && v > PG_SCHEMA_VERSION) {
        cf_log(LOG_ERROR, "database schema is newer than this binary", NULL);
        err = CF_ERR_CONFIG;
    }
    for (int i = v; err == CF_OK && i < PG_SCHEMA_VERSION; i++)
        err = migration_apply(c, i);
    if (err == CF_OK)
        err = exec_simple(c, "COMMIT", "migration commit");
    if (err != CF_OK)
        txn_abandon(c);
    CF_ASSERT(err != CF_OK || PQtransactionStatus(c->conn) == PQTRANS_IDLE);
    return err;
}

/* Writer side ------------------------------------------------------------------------------ */

/* Runs a writer statement; outside a batch a lost session is first re-established. */
static enum cf_err w_run(struct store *s, enum w_stmt i, const struct params *p, PGresult **res_out)
{
    struct pg_store *ps = pg(s);
    CF_ASSERT(ps->w.conn != NULL); /* never on a read-only store */
    if (!ps->in_batch) {
        enum cf_err err = conn_ensure(&ps->w);
        if (err != CF_OK)
            return err;
    }
    enum cf_err err = pipe_end(ps); /* a read after pipelined writes: finish those first */
    if (err != CF_OK)
        return err;
    return stmt_run(&ps->w, (int)i, p, res_out);
}

/* Runs an insert or update that must change exactly one row; none when it changed none (an
 * insert that met an existing row, an update that found no row). */
static enum cf_err w_change_one(struct store *s, enum w_stmt i, const struct params *p,
                                enum cf_err none)
{
    CF_ASSERT(none != CF_OK);
    if (pg(s)->in_batch)
        return pipe_send(pg(s), (int)i, p, none);
    PGresult *res;
    enum cf_err err = w_run(s, i, p, &res);
    if (err != CF_OK)
        return err;
    bool one = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!one) {
        cf_log(LOG_ERROR,
               none == CF_ERR_CORRUPT ? "postgresql update found no row"
                                      : "postgresql insert met an existing row",
               "op", w_stmts[i].name, NULL);
        return none;
    }
    return CF_OK;
}

static enum cf_err w_begin(struct store *s)
{
    struct pg_store *ps = pg(s);
    CF_ASSERT(ps->w.conn != NULL && !ps->in_batch);
    enum cf_err err = conn_begin(&ps->w, W_BEGIN_SQL, "begin and write lock");
    ps->in_batch = err == CF_OK;
    return err;
}

static enum cf_err w_commit(struct store *s)
{
    struct pg_store *ps = pg(s);
    CF_ASSERT(ps->w.conn != NULL && ps->in_batch);
    ps->in_batch = false;
    enum cf_err piped = pipe_end(ps);
    if (piped != CF_OK) {
        txn_abandon(&ps->w);
        return piped;
    }
    PGresult *res = PQexec(ps->w.conn, "COMMIT");
    enum cf_err err = res_check(ps->w.conn, res, "commit");
    /* COMMIT of a transaction a failed statement aborted succeeds as ROLLBACK */
    if (err == CF_OK && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        cf_log(LOG_ERROR, "postgresql rolled the batch back at commit: a statement failed", NULL);
        err = CF_ERR_STORAGE;
    }
    PQclear(res);
    if (err != CF_OK)
        txn_abandon(&ps->w);
    return err;
}

static void w_rollback(struct store *s)
{
    struct pg_store *ps = pg(s);
    CF_ASSERT(ps->w.conn != NULL);
    ps->in_batch = false;
    (void)pipe_end(ps); /* its errors are the batch's, already reported */
    txn_abandon(&ps->w);
}

static enum cf_err w_head(struct store *s, struct store_head *out)
{
    struct params p = {.n = 0};
    PGresult *res;
    enum cf_err err = w_run(s, W_HEAD, &p, &res);
    if (err != CF_OK)
        return err;
    CF_ASSERT(PQnfields(res) == 3);
    struct store_head h;
    memset(&h, 0, sizeof(h));
    struct row d = {.res = res, .i = 0, .err = unique_row(res)};
    if (d.err == CF_OK) {
        h.last_account_id = d_u64_or_zero(&d, 0);
        if (d_value(&d, 1) != NULL) {
            h.last_seq = d_u64(&d, 1);
            d_hash(&d, 2, h.last_hash);
        }
    }
    PQclear(res);
    if (d.err == CF_OK)
        *out = h;
    return d.err;
}

static enum cf_err w_account_get(struct store *s, uint64_t id, struct ledger_account *out)
{
    if (!fits_i64(id))
        return CF_ERR_NOT_FOUND;
    struct params p = {.n = 0};
    p_u64(&p, id);
    PGresult *res;
    enum cf_err err = w_run(s, W_ACCOUNT_GET, &p, &res);
    if (err != CF_OK)
        return err;
    return one_row(res, dec_account, out, sizeof(*out), NULL);
}

/* Ids per prefetch query: keeps one array parameter under ~90 KiB of text. */
#define PREFETCH_IDS_MAX 4096

/* "{1,2,3}": ids as a PostgreSQL bigint array literal in buf (at least n * 21 + 3 bytes). */
static void ids_array_text(const uint64_t *ids, size_t n, char *buf, size_t buf_bytes)
{
    size_t len = 0;
    buf[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        CF_ASSERT(buf_bytes - len > I64_TEXT_BYTES + 2);
        int w = snprintf(buf + len, buf_bytes - len, "%s%" PRIu64, i > 0 ? "," : "", ids[i]);
        len += (size_t)w;
    }
    CF_ASSERT(len + 2 <= buf_bytes);
    buf[len++] = '}';
    buf[len] = '\0';
}

/* One round trip for up to PREFETCH_IDS_MAX ids. */
static enum cf_err accounts_many(struct store *s, const uint64_t *ids, size_t n, char *text,
                                 size_t text_bytes, struct ledger_account *out, size_t *found)
{
    CF_ASSERT(n > 0 && n <= PREFETCH_IDS_MAX);
    ids_array_text(ids, n, text, text_bytes);
    struct params p = {.n = 0};
    p_text(&p, text);
    PGresult *res;
    enum cf_err err = w_run(s, W_ACCOUNTS_MANY, &p, &res);
    if (err != CF_OK)
        return err;
    int rows = PQntuples(res);
    CF_ASSERT(rows >= 0 && (size_t)rows <= n);
    struct row d = {.res = res, .i = 0, .err = CF_OK};
    for (d.i = 0; d.i < rows && d.err == CF_OK; d.i++)
        row_account(&d, &out[(*found)++]);
    PQclear(res);
    return d.err;
}

static enum cf_err w_accounts_prefetch(struct store *s, const uint64_t *ids, size_t n,
                                       struct ledger_account *out, size_t *found_out)
{
    size_t text_bytes = PREFETCH_IDS_MAX * (I64_TEXT_BYTES + 1) + 3;
    char *text = malloc(text_bytes);
    if (text == NULL)
        return CF_ERR_NOMEM;
    size_t found = 0;
    enum cf_err err = CF_OK;
    for (size_t i = 0; i < n && err == CF_OK; i += PREFETCH_IDS_MAX) {
        size_t k = n - i < PREFETCH_IDS_MAX ? n - i : PREFETCH_IDS_MAX;
        err = accounts_many(s, ids + i, k, text, text_bytes, out, &found);
    }
    free(text);
    if (err == CF_OK)
        *found_out = found;
    return err;
}

static enum cf_err w_account_insert(struct store *s, const struct ledger_account *a,
                                    const char *owner, size_t owner_len, const char *metadata,
                                    size_t metadata_len)
{
    CF_ASSERT(a->id > 0 && ledger_account_is_valid(a));
    struct params p = {.n = 0};
    p_u64(&p, a->id);
    p_text(&p, a->currency);
    p_i64(&p, a->normal);
    p_i64(&p, a->kind);
    p_i64(&p, a->flags);
    p_i64(&p, a->debits_posted);
    p_i64(&p, a->credits_posted);
    p_i64(&p, a->debits_pending);
    p_i64(&p, a->credits_pending);
    p_i64(&p, a->created_at_us);
    p_bytes(&p, owner != NULL ? owner : "", owner != NULL ? owner_len : 0);
    p_bytes(&p, metadata != NULL ? metadata : "", metadata != NULL ? metadata_len : 0);
    p_u64(&p, a->last_seq);
    CF_ASSERT(p.n == ACCOUNT_COLS_N);
    return w_change_one(s, W_ACCOUNT_INSERT, &p, CF_ERR_STORAGE);
}

static enum cf_err w_account_update(struct store *s, const struct ledger_account *a)
{
    CF_ASSERT(ledger_account_is_valid(a));
    struct params p = {.n = 0};
    p_u64(&p, a->id);
    p_i64(&p, a->flags);
    p_i64(&p, a->debits_posted);
    p_i64(&p, a->credits_posted);
    p_i64(&p, a->debits_pending);
    p_i64(&p, a->credits_pending);
    p_u64(&p, a->last_seq);
    return w_change_one(s, W_ACCOUNT_UPDATE, &p, CF_ERR_CORRUPT);
}

/* One entry by a unique key (seq or idempotency key) through writer statement i. */
static enum cf_err w_entry_lookup(struct store *s, enum w_stmt i, const struct params *p,
                                  struct ledger_entry *out, struct arena *arena)
{
    CF_ASSERT(i == W_ENTRY_GET || i == W_ENTRY_KEY);
    PGresult *res;
    enum cf_err err = w_run(s, i, p, &res);
    if (err != CF_OK)
        return err;
    return one_row(res, dec_entry, out, sizeof(*out), arena);
}

static enum cf_err w_entry_get(struct store *s, uint64_t seq, struct ledger_entry *out,
                               struct arena *arena)
{
    if (!fits_i64(seq))
        return CF_ERR_NOT_FOUND;
    struct params p = {.n = 0};
    p_u64(&p, seq);
    return w_entry_lookup(s, W_ENTRY_GET, &p, out, arena);
}

static enum cf_err w_entry_find_key(struct store *s, const char *key, size_t key_len,
                                    struct ledger_entry *out, struct arena *arena)
{
    CF_ASSERT(key != NULL);
    struct params p = {.n = 0};
    p_bytes(&p, key, key_len);
    return w_entry_lookup(s, W_ENTRY_KEY, &p, out, arena);
}

static enum cf_err w_entry_insert(struct store *s, const struct ledger_entry *e)
{
    CF_ASSERT(e->seq > 0 && e->amount > 0);
    struct params p = {.n = 0};
    p_u64(&p, e->seq);
    p_i64(&p, e->type);
    p_u64(&p, e->debit_id);
    p_u64(&p, e->credit_id);
    p_i64(&p, e->amount);
    p_text(&p, e->currency);
    p_text(&p, e->code);
    p_bytes_or_null(&p, e->metadata, e->metadata_len);
    p_bytes_or_null(&p, e->idem_key, e->idem_key_len);
    p_u64(&p, e->pending_seq);
    p_u64(&p, e->group_seq);
    p_i64(&p, e->expires_at_us);
    p_i64(&p, e->created_at_us);
    p_bytes(&p, e->hash, HASH_BYTES);
    p_i64(&p, e->status);
    p_i64(&p, e->resolved_amount);
    p_u64(&p, e->resolution_seq);
    p_u64(&p, e->debit_prev_seq);
    p_u64(&p, e->credit_prev_seq);
    CF_ASSERT(p.n == ENTRY_COLS_N);
    return w_change_one(s, W_ENTRY_INSERT, &p, CF_ERR_STORAGE);
}

static enum cf_err w_entry_resolve(struct store *s, const struct ledger_entry *e)
{
    CF_ASSERT(e->type == LEDGER_ENTRY_PENDING && e->status != LEDGER_STATUS_PENDING);
    struct params p = {.n = 0};
    p_u64(&p, e->seq);
    p_i64(&p, e->status);
    p_i64(&p, e->resolved_amount);
    p_u64(&p, e->resolution_seq);
    return w_change_one(s, W_ENTRY_RESOLVE, &p, CF_ERR_CORRUPT);
}

static enum cf_err w_idem_get(struct store *s, const char *key, size_t key_len,
                              struct store_idem_record *out, struct arena *arena)
{
    CF_ASSERT(key != NULL);
    struct params p = {.n = 0};
    p_bytes(&p, key, key_len);
    PGresult *res;
    enum cf_err err = w_run(s, W_IDEM_GET, &p, &res);
    if (err != CF_OK)
        return err;
    return one_row(res, dec_idem, out, sizeof(*out), arena);
}

/* Keys per prefetch query, and the text one takes at most ("\\x" + hex, quoted, comma). */
#define PREFETCH_KEYS_MAX 1024
#define PREFETCH_KEY_TEXT_BYTES (2 * IDEM_STORED_KEY_BYTES_MAX + 6)

/* Appends key as a bytea array element in hex ("\\x6f703a"): no quoting issue whatever the
 * bytes, and the comparison stays on the primary key's index. */
static size_t array_elem(char *buf, size_t len, const char *key, size_t key_len)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(buf + len, "\"\\\\x", 4);
    len += 4;
    for (size_t i = 0; i < key_len; i++) {
        buf[len++] = hex[(unsigned char)key[i] >> 4];
        buf[len++] = hex[(unsigned char)key[i] & 15];
    }
    buf[len++] = '"';
    return len;
}

static enum cf_err idem_many(struct store *s, const char *const *keys, const size_t *lens, size_t n,
                             char *text, struct store_idem_record *out, const char **out_keys,
                             size_t *out_lens, size_t *found, struct arena *arena)
{
    CF_ASSERT(n > 0 && n <= PREFETCH_KEYS_MAX);
    size_t len = 0;
    text[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        CF_ASSERT(lens[i] <= IDEM_STORED_KEY_BYTES_MAX);
        if (i > 0)
            text[len++] = ',';
        len = array_elem(text, len, keys[i], lens[i]);
    }
    text[len++] = '}';
    text[len] = '\0';
    struct params p = {.n = 0};
    p_text(&p, text);
    PGresult *res;
    enum cf_err err = w_run(s, W_IDEM_MANY, &p, &res);
    if (err != CF_OK)
        return err;
    struct row d = {.res = res, .i = 0, .err = CF_OK};
    for (d.i = 0; d.i < PQntuples(res) && d.err == CF_OK; d.i++) {
        row_idem(&d, &out[*found], arena);
        d_bytes(&d, 4, arena, &out_keys[*found], &out_lens[*found]);
        (*found)++;
    }
    PQclear(res);
    return d.err;
}

static enum cf_err w_idem_prefetch(struct store *s, const char *const *keys, const size_t *key_lens,
                                   size_t n, struct store_idem_record *out, const char **out_keys,
                                   size_t *out_key_lens, size_t *found_out, struct arena *arena)
{
    char *text = malloc(PREFETCH_KEYS_MAX * PREFETCH_KEY_TEXT_BYTES + 3);
    if (text == NULL)
        return CF_ERR_NOMEM;
    size_t found = 0;
    enum cf_err err = CF_OK;
    for (size_t i = 0; i < n && err == CF_OK; i += PREFETCH_KEYS_MAX) {
        size_t k = n - i < PREFETCH_KEYS_MAX ? n - i : PREFETCH_KEYS_MAX;
        err = idem_many(s, keys + i, key_lens + i, k, text, out, out_keys, out_key_lens, &found,
                        arena);
    }
    free(text);
    CF_ASSERT(err != CF_OK || found <= n);
    if (err == CF_OK)
        *found_out = found;
    return err;
}

static enum cf_err w_idem_put(struct store *s, const char *key, size_t key_len,
                              const struct store_idem_record *r)
{
    CF_ASSERT(key_len > 0 && key_len <= IDEM_STORED_KEY_BYTES_MAX);
    CF_ASSERT(r->body != NULL || r->body_len == 0);
    struct params p = {.n = 0};
    p_bytes(&p, key, key_len);
    p_bytes(&p, r->request_hash, HASH_BYTES);
    p_i64(&p, r->http_status);
    p_bytes(&p, r->body, r->body_len);
    p_i64(&p, r->created_at_us);
    return w_change_one(s, W_IDEM_PUT, &p, CF_ERR_STORAGE);
}

static enum cf_err w_idem_purge(struct store *s, int64_t created_before_us)
{
    struct params p = {.n = 0};
    p_i64(&p, created_before_us);
    PGresult *res;
    enum cf_err err = w_run(s, W_IDEM_PURGE, &p, &res);
    if (err == CF_OK)
        PQclear(res);
    return err;
}

static enum cf_err w_expired(struct store *s, int64_t now_us, uint64_t *seqs, size_t max,
                             size_t *n_out)
{
    CF_ASSERT(seqs != NULL || max == 0);
    CF_ASSERT(fits_i64(max));
    struct params p = {.n = 0};
    p_i64(&p, now_us);
    p_u64(&p, max);
    PGresult *res;
    enum cf_err err = w_run(s, W_EXPIRED, &p, &res);
    if (err != CF_OK)
        return err;
    size_t n = (size_t)PQntuples(res);
    CF_ASSERT(n <= max); /* LIMIT */
    struct row d = {.res = res, .i = 0, .err = CF_OK};
    for (d.i = 0; (size_t)d.i < n && d.err == CF_OK; d.i++)
        seqs[d.i] = d_u64(&d, 0);
    PQclear(res);
    if (d.err == CF_OK)
        *n_out = n;
    return d.err;
}

static enum cf_err meta_get(struct store *s, const char *key, char *buf, size_t buf_bytes)
{
    CF_ASSERT(!pg(s)->in_batch && key != NULL && buf_bytes > 0);
    struct params p = {.n = 0};
    p_text(&p, key);
    PGresult *res;
    enum cf_err err = w_run(s, W_META_GET, &p, &res);
    if (err != CF_OK)
        return err;
    struct row d = {.res = res, .i = 0, .err = unique_row(res)};
    if (d.err == CF_OK)
        d_fixed(&d, 0, buf, buf_bytes);
    PQclear(res);
    return d.err;
}

static enum cf_err meta_put(struct store *s, const char *key, const char *value)
{
    CF_ASSERT(!pg(s)->in_batch && key != NULL && value != NULL);
    struct params p = {.n = 0};
    p_text(&p, key);
    p_text(&p, value);
    PGresult *res;
    enum cf_err err = w_run(s, W_META_PUT, &p, &res);
    if (err == CF_OK)
        PQclear(res);
    return err;
}

/* Reader side ------------------------------------------------------------------------------ */

static void pool_put(struct pg_store *ps, struct store_reader *r)
{
    pthread_mutex_lock(&ps->pool_mu);
    CF_ASSERT(ps->readers_free < ps->readers_n);
    r->next_free = ps->free_list;
    ps->free_list = r;
    ps->readers_free++;
    pthread_cond_signal(&ps->pool_cv);
    pthread_mutex_unlock(&ps->pool_mu);
}

static enum cf_err r_open(struct store *s, struct store_reader **out)
{
    struct pg_store *ps = pg(s);
    pthread_mutex_lock(&ps->pool_mu);
    while (ps->free_list == NULL)
        pthread_cond_wait(&ps->pool_cv, &ps->pool_mu);
    struct store_reader *r = ps->free_list;
    ps->free_list = r->next_free;
    ps->readers_free--;
    pthread_mutex_unlock(&ps->pool_mu);
    CF_ASSERT(r->owner == ps);
    enum cf_err err = conn_begin(&r->c, R_BEGIN_SQL, "reader begin");
    if (err != CF_OK) {
        pool_put(ps, r);
        return err;
    }
    *out = r;
    return CF_OK;
}

static void r_close(struct store_reader *r)
{
    CF_ASSERT(r != NULL && r->owner != NULL);
    if (PQtransactionStatus(r->c.conn) == PQTRANS_INTRANS)
        (void)exec_simple(&r->c, "COMMIT", "reader commit");
    txn_abandon(&r->c); /* a reader whose snapshot failed */
    pool_put(r->owner, r);
}

static enum cf_err r_run(struct store_reader *r, enum r_stmt i, const struct params *p,
                         PGresult **res_out)
{
    return stmt_run(&r->c, (int)i, p, res_out);
}

static enum cf_err r_account_get(struct store_reader *r, uint64_t id, struct store_account_row *out,
                                 struct arena *arena)
{
    if (!fits_i64(id))
        return CF_ERR_NOT_FOUND;
    struct params p = {.n = 0};
    p_u64(&p, id);
    PGresult *res;
    enum cf_err err = r_run(r, R_ACCOUNT_GET, &p, &res);
    if (err != CF_OK)
        return err;
    return one_row(res, dec_account_full, out, sizeof(*out), arena);
}

static enum cf_err r_accounts_list(struct store_reader *r, uint64_t after_id, size_t max,
                                   struct store_account_row *out, size_t *n_out,
                                   struct arena *arena)
{
    CF_ASSERT(out != NULL || max == 0);
    CF_ASSERT(fits_i64(max));
    struct params p = {.n = 0};
    p_u64(&p, fits_i64(after_id) ? after_id : (uint64_t)INT64_MAX); /* no id is larger */
    p_u64(&p, max);
    PGresult *res;
    enum cf_err err = r_run(r, R_ACCOUNTS_LIST, &p, &res);
    if (err != CF_OK)
        return err;
    size_t n = (size_t)PQntuples(res);
    CF_ASSERT(n <= max); /* LIMIT */
    struct row d = {.res = res, .i = 0, .err = CF_OK};
    for (d.i = 0; (size_t)d.i < n && d.err == CF_OK; d.i++)
        row_account_full(&d, &out[d.i], arena);
    PQclear(res);
    if (d.err == CF_OK)
        *n_out = n;
    return d.err;
}

static enum cf_err r_entry_get(struct store_reader *r, uint64_t seq, struct ledger_entry *out,
                               struct arena *arena)
{
    if (!fits_i64(seq))
        return CF_ERR_NOT_FOUND;
    struct params p = {.n = 0};
    p_u64(&p, seq);
    PGresult *res;
    enum cf_err err = r_run(r, R_ENTRY_GET, &p, &res);
    if (err != CF_OK)
        return err;
    return one_row(res, dec_entry, out, sizeof(*out), arena);
}

/* Decodes every row of res as an entry into out (at most max). */
static enum cf_err entries_collect(PGresult *res, size_t max, struct ledger_entry *out,
                                   size_t *n_out, struct arena *arena)
{
    size_t n = (size_t)PQntuples(res);
    CF_ASSERT(n <= max); /* LIMIT, or the walk's depth bound */
    struct row d = {.res = res, .i = 0, .err = CF_OK};
    for (d.i = 0; (size_t)d.i < n && d.err == CF_OK; d.i++) {
        if (d_value(&d, 0) == NULL)
            d_fail(&d, CF_ERR_CORRUPT); /* a history link to no entry */
        else
            row_entry(&d, &out[d.i], arena);
    }
    PQclear(res);
    if (d.err == CF_OK)
        *n_out = n;
    return d.err;
}

/* The entry before e in account_id's history. */
static uint64_t entry_prev_for(const struct ledger_entry *e, uint64_t account_id)
{
    return e->debit_id == account_id ? e->debit_prev_seq : e->credit_prev_seq;
}

/* Where a history page starts: the account's newest entry, or the one before the cursor. */
static enum cf_err history_start(struct store_reader *r, uint64_t account_id, uint64_t before_seq,
                                 uint64_t *next_out)
{
    bool from_head = before_seq == UINT64_MAX;
    uint64_t key = from_head ? account_id : before_seq;
    enum cf_err missing = from_head ? CF_ERR_NOT_FOUND : CF_ERR_INVALID_CURSOR;
    if (!fits_i64(key))
        return missing;
    struct params p = {.n = 0};
    p_u64(&p, key);
    PGresult *res;
    enum cf_err err = r_run(r, from_head ? R_ACCOUNT_HEAD : R_ENTRY_LINKS, &p, &res);
    if (err != CF_OK)
        return err;
    struct row d = {.res = res, .i = 0, .err = unique_row(res)};
    uint64_t next = 0;
    if (d.err == CF_OK && from_head) {
        next = d_u64(&d, 0);
    } else if (d.err == CF_OK) {
        uint64_t dr = d_u64(&d, 0), cr = d_u64(&d, 1);
        if (dr != account_id && cr != account_id)
            d_fail(&d, CF_ERR_INVALID_CURSOR);
        next = dr == account_id ? d_u64(&d, 2) : d_u64(&d, 3);
    }
    PQclear(res);
    if (d.err == CF_ERR_NOT_FOUND)
        d.err = missing;
    if (d.err == CF_OK)
        *next_out = next;
    return d.err;
}

static enum cf_err r_account_entries(struct store_reader *r, uint64_t account_id,
                                     uint64_t before_seq, size_t max, struct ledger_entry *out,
                                     size_t *n_out, struct arena *arena)
{
    CF_ASSERT(out != NULL || max == 0);
    CF_ASSERT(fits_i64(max));
    uint64_t next = 0;
    enum cf_err err = history_start(r, account_id, before_seq, &next);
    if (err != CF_OK)
        return err;
    if (next == 0 || max == 0) {
        *n_out = 0;
        return CF_OK;
    }
    struct params p = {.n = 0};
    p_u64(&p, account_id);
    p_u64(&p, next);
    p_u64(&p, max);
    PGresult *res;
    size_t n = 0;
    if ((err = r_run(r, R_HISTORY, &p, &res)) != CF_OK ||
        (err = entries_collect(res, max, out, &n, arena)) != CF_OK)
        return err;
    /* the walk, checked as SQLite's makes it: each entry is the link of the one before */
    for (size_t i = 0; i < n; i++) {
        if (out[i].seq != next || (out[i].debit_id != account_id && out[i].credit_id != account_id))
            return CF_ERR_CORRUPT;
        next = entry_prev_for(&out[i], account_id);
        if (next >= out[i].seq)
            return CF_ERR_CORRUPT; /* links only point back */
    }
    CF_ASSERT(n <= max);
    *n_out = n;
    return CF_OK;
}

static enum cf_err r_entries_scan(struct store_reader *r, uint64_t after_seq, size_t max,
                                  struct ledger_entry *out, size_t *n_out, struct arena *arena)
{
    CF_ASSERT(out != NULL || max == 0);
    CF_ASSERT(fits_i64(max));
    struct params p = {.n = 0};
    p_u64(&p, fits_i64(after_seq) ? after_seq : (uint64_t)INT64_MAX); /* no seq is larger */
    p_u64(&p, max);
    PGresult *res;
    enum cf_err err = r_run(r, R_ENTRIES_SCAN, &p, &res);
    if (err != CF_OK)
        return err;
    return entries_collect(res, max, out, n_out, arena);
}

static enum cf_err r_currency_totals(struct store_reader *r, struct store_currency_totals *out,
                                     size_t max, size_t *n_out)
{
    CF_ASSERT(out != NULL || max == 0);
    CF_ASSERT(fits_i64(max));
    struct params p = {.n = 0};
    p_u64(&p, max);
    PGresult *res;
    enum cf_err err = r_run(r, R_TOTALS, &p, &res);
    if (err != CF_OK)
        return err;
    size_t n = (size_t)PQntuples(res);
    CF_ASSERT(n <= max && PQnfields(res) == 6); /* LIMIT */
    struct row d = {.res = res, .i = 0, .err = CF_OK};
    for (d.i = 0; (size_t)d.i < n && d.err == CF_OK; d.i++) {
        struct store_currency_totals *t = &out[d.i];
        d_fixed(&d, 0, t->currency, sizeof(t->currency));
        t->debits_posted = d_sum(&d, 1);
        t->credits_posted = d_sum(&d, 2);
        t->debits_pending = d_sum(&d, 3);
        t->credits_pending = d_sum(&d, 4);
        t->accounts = d_u64(&d, 5);
    }
    PQclear(res);
    if (d.err == CF_OK)
        *n_out = n;
    return d.err;
}

/* Open and close --------------------------------------------------------------------------- */

static void pg_close(struct store *s)
{
    struct pg_store *ps = pg(s);
    if (ps == NULL)
        return;
    CF_ASSERT(ps->readers_free == ps->readers_n); /* every reader was given back */
    for (unsigned i = 0; i < ps->readers_n; i++)
        PQfinish(ps->readers[i].c.conn);
    free(ps->readers);
    if (ps->w.conn != NULL)
        PQfinish(ps->w.conn);
    pthread_mutex_destroy(&ps->pool_mu);
    pthread_cond_destroy(&ps->pool_cv);
    free(ps);
}

static const struct store_ops postgres_ops = {
    .name = "postgres",
    .single_writer = false,
    .close = pg_close,
    .w_begin = w_begin,
    .w_commit = w_commit,
    .w_rollback = w_rollback,
    .w_head = w_head,
    .w_account_get = w_account_get,
    .w_accounts_prefetch = w_accounts_prefetch,
    .w_idem_prefetch = w_idem_prefetch,
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

/* libpq's message for a URL that does not parse may quote part of it, password included, so
 * only the fact is logged. */
static enum cf_err url_check(const char *url)
{
    char *msg = NULL;
    PQconninfoOption *parsed = PQconninfoParse(url, &msg);
    PQfreemem(msg);
    if (parsed == NULL) {
        cf_log(LOG_ERROR, "the postgresql URL does not parse", NULL);
        return CF_ERR_CONFIG;
    }
    PQconninfoFree(parsed);
    return CF_OK;
}

static enum cf_err writer_open(struct pg_store *ps, const struct store_options *opts)
{
    enum cf_err err = conn_connect(opts->location, w_stmts, W_STMT_COUNT, &ps->w);
    if (err == CF_OK)
        err = opts->create ? schema_migrate(&ps->w) : schema_require(&ps->w);
    if (err == CF_OK)
        err = conn_setup(&ps->w);
    return err;
}

static enum cf_err readers_open(struct pg_store *ps, const struct store_options *opts)
{
    ps->readers = calloc(opts->readers, sizeof(*ps->readers));
    if (ps->readers == NULL)
        return CF_ERR_NOMEM;
    for (unsigned i = 0; i < opts->readers; i++) {
        struct store_reader *r = &ps->readers[i];
        r->owner = ps;
        enum cf_err err = conn_connect(opts->location, r_stmts, R_STMT_COUNT, &r->c);
        if (err != CF_OK)
            return err;
        ps->readers_n = i + 1;
        ps->readers_free++;
        r->next_free = ps->free_list;
        ps->free_list = r;
        if (i == 0 && opts->read_only && (err = schema_require(&r->c)) != CF_OK)
            return err;
        if ((err = conn_setup(&r->c)) != CF_OK)
            return err;
    }
    return CF_OK;
}

enum cf_err store_postgres_open(const struct store_options *opts, struct store **out)
{
    CF_ASSERT(opts != NULL && opts->location != NULL && out != NULL);
    CF_ASSERT(opts->readers >= 1 && opts->readers <= STORE_READERS_MAX);
    CF_ASSERT(!(opts->read_only && opts->create));
    CF_ASSERT(PQisthreadsafe());
    enum cf_err err = url_check(opts->location);
    if (err != CF_OK)
        return err;
    struct pg_store *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return CF_ERR_NOMEM;
    ps->base.ops = &postgres_ops;
    pthread_mutex_init(&ps->pool_mu, NULL);
    pthread_cond_init(&ps->pool_cv, NULL);
    if (!opts->read_only)
        err = writer_open(ps, opts);
    if (err == CF_OK)
        err = readers_open(ps, opts);
    if (err != CF_OK) {
        pg_close(&ps->base);
        return err;
    }
    cf_log(LOG_INFO, "postgresql store open", "database", PQdb(ps->readers[0].c.conn), "mode",
           opts->read_only ? "read-only" : "read-write", NULL);
    *out = &ps->base;
    return CF_OK;
}
