/* sql.c - the backend-neutral half of the SQL facade: checks, the pool, rows, migrations; see
 * sql.h. */
#include "store/sql/sql.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/sql/sql_backend.h"

/* The version table every schema shares, one row per schema name. The same text is valid
 * SQLite and PostgreSQL. */
#define SCHEMA_TABLE_SQL                                                                           \
    "CREATE TABLE IF NOT EXISTS sql_schema (name TEXT NOT NULL, version INTEGER NOT NULL,"         \
    " PRIMARY KEY (name))"
#define SCHEMA_GET_SQL "SELECT version FROM sql_schema WHERE name = $1"
#define SCHEMA_PUT_SQL                                                                             \
    "INSERT INTO sql_schema (name, version) VALUES ($1, $2)"                                       \
    " ON CONFLICT (name) DO UPDATE SET version = excluded.version"
/* PostgreSQL: migrations of every schema, from every process, one at a time. The lock ends
 * with the transaction that took it. */
#define SCHEMA_LOCK_SQL "SELECT pg_advisory_xact_lock(hashtext('coffer_sql_schema'))"

/* "-9223372036854775808" and its NUL. */
#define I64_TEXT_BYTES 21

/* One value of a result: its integer reading and, unless NULL, its bytes in the rows' byte
 * area (NUL-terminated, the NUL not counted in len). */
struct sql_cell {
    int64_t i;
    size_t off;
    size_t len;
    bool null;
};

struct sql_rows {
    size_t rows_n;
    size_t cols_n;
    struct sql_cell *cells; /* rows_n * cols_n, row after row */
    size_t cells_cap;
    char *bytes;
    size_t bytes_len;
    size_t bytes_cap;
};

/* Rows ---------------------------------------------------------------------------------------- */

enum cf_err sql_rows_create(size_t cols_n, struct sql_rows **out)
{
    CF_ASSERT(out != NULL);
    struct sql_rows *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CF_ERR_NOMEM;
    r->cols_n = cols_n;
    CF_ASSERT(r->rows_n == 0 && r->cells == NULL && r->bytes == NULL);
    *out = r;
    return CF_OK;
}

enum cf_err sql_rows_row_add(struct sql_rows *r)
{
    CF_ASSERT(r != NULL && r->rows_n <= SQL_ROWS_MAX);
    if (r->rows_n == SQL_ROWS_MAX) {
        cf_log(LOG_ERROR, "sql query returned too many rows", NULL);
        return CF_ERR_STORAGE;
    }
    size_t need = (r->rows_n + 1) * r->cols_n;
    if (need > r->cells_cap) {
        size_t cap = r->cells_cap * 2 > need ? r->cells_cap * 2 : need;
        struct sql_cell *cells = realloc(r->cells, cap * sizeof(*cells));
        if (cells == NULL)
            return CF_ERR_NOMEM;
        r->cells = cells;
        r->cells_cap = cap;
    }
    for (size_t c = 0; c < r->cols_n; c++)
        r->cells[r->rows_n * r->cols_n + c] = (struct sql_cell){.null = true};
    r->rows_n++;
    CF_ASSERT(r->rows_n * r->cols_n <= r->cells_cap);
    return CF_OK;
}

/* Makes room for len more bytes and a NUL. */
static enum cf_err bytes_reserve(struct sql_rows *r, size_t len)
{
    CF_ASSERT(r->bytes_len <= r->bytes_cap);
    if (len > SIZE_MAX / 4 - r->bytes_len)
        return CF_ERR_NOMEM;
    size_t need = r->bytes_len + len + 1;
    if (need <= r->bytes_cap)
        return CF_OK;
    size_t cap = r->bytes_cap * 2 > need ? r->bytes_cap * 2 : need;
    char *bytes = realloc(r->bytes, cap);
    if (bytes == NULL)
        return CF_ERR_NOMEM;
    r->bytes = bytes;
    r->bytes_cap = cap;
    CF_ASSERT(r->bytes_len + len < r->bytes_cap);
    return CF_OK;
}

enum cf_err sql_rows_cell_set(struct sql_rows *r, size_t col, int64_t i, const void *p, size_t len)
{
    CF_ASSERT(r != NULL && r->rows_n > 0 && col < r->cols_n);
    CF_ASSERT(p != NULL || len == 0);
    enum cf_err err = bytes_reserve(r, len);
    if (err != CF_OK)
        return err;
    struct sql_cell *cell = &r->cells[(r->rows_n - 1) * r->cols_n + col];
    if (len > 0)
        memcpy(r->bytes + r->bytes_len, p, len);
    r->bytes[r->bytes_len + len] = '\0';
    *cell = (struct sql_cell){.i = i, .off = r->bytes_len, .len = len, .null = false};
    r->bytes_len += len + 1;
    return CF_OK;
}

static const struct sql_cell *cell_at(const struct sql_rows *r, size_t row, size_t col)
{
    CF_ASSERT(r != NULL && row < r->rows_n && col < r->cols_n);
    return &r->cells[row * r->cols_n + col];
}

size_t sql_rows_n(const struct sql_rows *r)
{
    CF_ASSERT(r != NULL);
    return r->rows_n;
}

size_t sql_rows_cols(const struct sql_rows *r)
{
    CF_ASSERT(r != NULL);
    return r->cols_n;
}

bool sql_row_null(const struct sql_rows *r, size_t row, size_t col)
{
    return cell_at(r, row, col)->null;
}

int64_t sql_row_int(const struct sql_rows *r, size_t row, size_t col)
{
    const struct sql_cell *c = cell_at(r, row, col);
    return c->null ? 0 : c->i;
}

const char *sql_row_text(const struct sql_rows *r, size_t row, size_t col)
{
    const struct sql_cell *c = cell_at(r, row, col);
    return c->null ? "" : r->bytes + c->off;
}

const uint8_t *sql_row_blob(const struct sql_rows *r, size_t row, size_t col, size_t *len_out)
{
    CF_ASSERT(len_out != NULL);
    const struct sql_cell *c = cell_at(r, row, col);
    *len_out = c->null ? 0 : c->len;
    return c->null ? NULL : (const uint8_t *)(r->bytes + c->off);
}

void sql_rows_free(struct sql_rows *r)
{
    if (r == NULL)
        return;
    free(r->cells);
    free(r->bytes);
    free(r);
}

int64_t sql_text_i64(const char *t)
{
    CF_ASSERT(t != NULL);
    bool sign = t[0] == '-' || t[0] == '+';
    if (t[sign ? 1 : 0] < '0' || t[sign ? 1 : 0] > '9')
        return 0; /* strtoll would also take leading spaces */
    char *end = NULL;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (errno != 0 || *end != '\0')
        return 0;
    return (int64_t)v;
}

/* The pool ------------------------------------------------------------------------------------ */

enum cf_err sqldb_init(struct sqldb *db, const struct sql_backend *ops, bool postgres,
                       unsigned slots_n)
{
    CF_ASSERT(db != NULL && ops != NULL);
    CF_ASSERT(slots_n >= 1 && slots_n <= SQL_POOL_MAX);
    if (pthread_mutex_init(&db->pool.mu, NULL) != 0)
        return CF_ERR_NOMEM;
    if (pthread_cond_init(&db->pool.cv, NULL) != 0) {
        pthread_mutex_destroy(&db->pool.mu);
        return CF_ERR_NOMEM;
    }
    db->ops = ops;
    db->postgres = postgres;
    db->pool.slots_n = slots_n;
    for (unsigned i = 0; i < SQL_POOL_MAX; i++) {
        db->pool.busy[i] = false;
        db->tx[i] = (struct sqltx){.db = db, .slot = i};
    }
    return CF_OK;
}

void sqldb_fini(struct sqldb *db)
{
    CF_ASSERT(db != NULL);
    for (unsigned i = 0; i < db->pool.slots_n; i++)
        CF_ASSERT(!db->pool.busy[i] && !db->tx[i].open);
    pthread_cond_destroy(&db->pool.cv);
    pthread_mutex_destroy(&db->pool.mu);
}

/* The first free slot, slots_n when none. Low slots first, so PostgreSQL opens a further
 * connection only when every one before it is busy. Called with mu held. */
static unsigned pool_first_free(const struct sql_pool *p)
{
    unsigned i = 0;
    while (i < p->slots_n && p->busy[i])
        i++;
    return i;
}

/* Takes a free slot, waiting at most SQL_BEGIN_WAIT_MS for one. */
static enum cf_err pool_acquire(struct sql_pool *p, unsigned *slot_out)
{
    CF_ASSERT(p->slots_n >= 1 && p->slots_n <= SQL_POOL_MAX);
    struct timespec deadline = cf_deadline_after_ms(SQL_BEGIN_WAIT_MS);
    pthread_mutex_lock(&p->mu);
    unsigned slot = pool_first_free(p);
    int rc = 0;
    while (slot == p->slots_n && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
        slot = pool_first_free(p);
    }
    if (slot < p->slots_n)
        p->busy[slot] = true;
    pthread_mutex_unlock(&p->mu);
    if (slot == p->slots_n) {
        cf_log(LOG_WARN, "no sql connection became free in time", NULL);
        return CF_ERR_STORAGE;
    }
    *slot_out = slot;
    return CF_OK;
}

static void pool_release(struct sql_pool *p, unsigned slot)
{
    pthread_mutex_lock(&p->mu);
    CF_ASSERT(slot < p->slots_n && p->busy[slot]);
    p->busy[slot] = false;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Databases ----------------------------------------------------------------------------------- */

static bool target_is_postgres(const char *target)
{
    return strncmp(target, "postgres://", strlen("postgres://")) == 0 ||
           strncmp(target, "postgresql://", strlen("postgresql://")) == 0;
}

enum cf_err sqldb_open(const char *target, struct sqldb **out)
{
    CF_ASSERT(target != NULL && out != NULL);
    if (target[0] == '\0') {
        cf_log(LOG_ERROR, "sql database target is empty", NULL);
        return CF_ERR_CONFIG;
    }
    struct sqldb *db = NULL;
    enum cf_err err =
        target_is_postgres(target) ? sql_pg_open(target, &db) : sql_sqlite_open(target, &db);
    if (err != CF_OK)
        return err;
    CF_ASSERT(db != NULL && db->ops != NULL && db->postgres == target_is_postgres(target));
    *out = db;
    return CF_OK;
}

void sqldb_close(struct sqldb *db)
{
    if (db == NULL)
        return;
    CF_ASSERT(db->ops != NULL && db->ops->close != NULL);
    db->ops->close(db);
}

bool sqldb_is_postgres(const struct sqldb *db)
{
    CF_ASSERT(db != NULL);
    return db->postgres;
}

enum cf_err sqldb_backup(struct sqldb *db, const char *dest_path)
{
    CF_ASSERT(db != NULL && dest_path != NULL);
    return db->ops->backup(db, dest_path);
}

/* Transactions -------------------------------------------------------------------------------- */

static enum cf_err tx_begin(struct sqldb *db, bool relaxed, struct sqltx **out)
{
    CF_ASSERT(db != NULL && out != NULL);
    unsigned slot = 0;
    enum cf_err err = pool_acquire(&db->pool, &slot);
    if (err != CF_OK)
        return err;
    struct sqltx *tx = &db->tx[slot];
    CF_ASSERT(!tx->open && tx->db == db && tx->slot == slot);
    tx->failed = false;
    tx->relaxed = relaxed;
    tx->open = true;
    err = db->ops->begin(tx);
    if (err != CF_OK) {
        tx->open = false;
        pool_release(&db->pool, slot);
        return err;
    }
    *out = tx;
    return CF_OK;
}

enum cf_err sql_begin(struct sqldb *db, struct sqltx **out) { return tx_begin(db, false, out); }

enum cf_err sql_begin_relaxed(struct sqldb *db, struct sqltx **out)
{
    return tx_begin(db, true, out);
}

static void tx_release(struct sqltx *tx)
{
    CF_ASSERT(tx->open);
    tx->open = false;
    pool_release(&tx->db->pool, tx->slot);
}

enum cf_err sql_commit(struct sqltx *tx)
{
    CF_ASSERT(tx != NULL && tx->open);
    enum cf_err err = CF_OK;
    if (tx->failed) {
        cf_log(LOG_ERROR, "sql commit of a failed transaction: rolled back", NULL);
        (void)tx->db->ops->end(tx, false);
        err = CF_ERR_STORAGE;
    } else {
        err = tx->db->ops->end(tx, true);
    }
    CF_ASSERT(err != CF_OK || !tx->failed);
    tx_release(tx); /* from here on tx may belong to another thread */
    return err;
}

void sql_rollback(struct sqltx *tx)
{
    if (tx == NULL)
        return;
    CF_ASSERT(tx->open);
    (void)tx->db->ops->end(tx, false);
    tx_release(tx);
}

/* Statements ---------------------------------------------------------------------------------- */

/* The highest placeholder $N in sql outside quoted strings and identifiers, 0 when none;
 * SIZE_MAX for one too large to be a parameter. */
static size_t placeholders_max(const char *sql)
{
    size_t max = 0;
    char quote = '\0';
    for (const char *c = sql; *c != '\0'; c++) {
        if (quote != '\0') {
            quote = *c == quote ? '\0' : quote;
        } else if (*c == '\'' || *c == '"') {
            quote = *c;
        } else if (*c == '$' && c[1] >= '0' && c[1] <= '9') {
            size_t v = 0;
            for (; c[1] >= '0' && c[1] <= '9'; c++)
                v = v > SQL_PARAMS_MAX ? SIZE_MAX : v * 10 + (size_t)(c[1] - '0');
            max = v > max ? v : max;
        }
    }
    CF_ASSERT(max == SIZE_MAX || max < 10 * (SQL_PARAMS_MAX + 1)); /* saturates early */
    return max;
}

/* The limits of sql.h on one call; what a caller promised is asserted. */
static enum cf_err call_check(const struct sqltx *tx, const char *sql,
                              const struct sql_value *params, size_t n)
{
    CF_ASSERT(tx != NULL && tx->open && sql != NULL);
    CF_ASSERT(n == 0 || params != NULL);
    if (tx->failed)
        return CF_ERR_STORAGE; /* as PostgreSQL: nothing more runs in a failed transaction */
    if (n > SQL_PARAMS_MAX || strnlen(sql, SQL_TEXT_BYTES_MAX + 1) > SQL_TEXT_BYTES_MAX) {
        cf_log(LOG_ERROR, "sql statement refused: too many parameters or too long", NULL);
        return CF_ERR_INTERNAL;
    }
    if (placeholders_max(sql) != n) { /* PostgreSQL would take an unused typed parameter */
        cf_log(LOG_ERROR, "sql statement refused: its placeholders do not match its parameters",
               NULL);
        return CF_ERR_INTERNAL;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sql_value *v = &params[i];
        CF_ASSERT(v->type == SQL_NULL || v->type == SQL_INT || v->type == SQL_TEXT ||
                  v->type == SQL_BLOB);
        if (v->type != SQL_TEXT && v->type != SQL_BLOB)
            continue;
        CF_ASSERT(v->p != NULL || v->len == 0);
        if (v->len > INT_MAX || (v->type == SQL_TEXT && memchr(v->p, '\0', v->len) != NULL))
            return CF_ERR_INVALID_FIELD;
    }
    return CF_OK;
}

enum cf_err sql_exec(struct sqltx *tx, const char *sql, const struct sql_value *params, size_t n,
                     int64_t *changes_out)
{
    enum cf_err err = call_check(tx, sql, params, n);
    int64_t changes = 0;
    if (err == CF_OK)
        err = tx->db->ops->run(tx, sql, params, n, &changes, NULL);
    if (err != CF_OK) {
        tx->failed = true;
        return err;
    }
    CF_ASSERT(changes >= 0);
    if (changes_out != NULL)
        *changes_out = changes;
    return CF_OK;
}

enum cf_err sql_query(struct sqltx *tx, const char *sql, const struct sql_value *params, size_t n,
                      struct sql_rows **out)
{
    CF_ASSERT(out != NULL);
    enum cf_err err = call_check(tx, sql, params, n);
    struct sql_rows *rows = NULL;
    if (err == CF_OK)
        err = tx->db->ops->run(tx, sql, params, n, NULL, &rows);
    if (err != CF_OK) {
        tx->failed = true;
        return err;
    }
    CF_ASSERT(rows != NULL && rows->rows_n <= SQL_ROWS_MAX);
    *out = rows;
    return CF_OK;
}

/* Migrations ---------------------------------------------------------------------------------- */

/* The applied version of schema name, 0 when none. */
static enum cf_err schema_version(struct sqltx *tx, const char *name, int64_t *version_out)
{
    struct sql_rows *rows = NULL;
    const struct sql_value p[] = {SQL_T(name)};
    enum cf_err err = sql_query(tx, SCHEMA_GET_SQL, p, 1, &rows);
    if (err != CF_OK)
        return err;
    size_t rows_n = sql_rows_n(rows);
    if (rows_n <= 1) /* name is the primary key */
        *version_out = rows_n == 0 ? 0 : sql_row_int(rows, 0, 0);
    sql_rows_free(rows);
    return rows_n <= 1 ? CF_OK : CF_ERR_CORRUPT;
}

/* Applies migration m (the one after the stored version) and records it, in tx. */
static enum cf_err migration_apply(struct sqltx *tx, const char *name,
                                   const struct sql_migration *m)
{
    const char *ddl = tx->db->postgres ? m->postgres : m->sqlite;
    CF_ASSERT(ddl != NULL && m->version >= 1);
    enum cf_err err = tx->db->ops->script(tx, ddl);
    if (err != CF_OK) {
        tx->failed = true;
        return err;
    }
    const struct sql_value p[] = {SQL_T(name), SQL_I(m->version)};
    err = sql_exec(tx, SCHEMA_PUT_SQL, p, 2, NULL);
    if (err == CF_OK) {
        char version[I64_TEXT_BYTES];
        snprintf(version, sizeof(version), "%d", m->version);
        cf_log(LOG_INFO, "sql schema migrated", "schema", name, "version", version, NULL);
    }
    return err;
}

/* One transaction: under the lock, reads the stored version and applies the next migration;
 * *done_out says there was none left. */
static enum cf_err migrate_step(struct sqldb *db, const char *name, const struct sql_migration *m,
                                size_t n, bool *done_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(db, &tx);
    if (err != CF_OK)
        return err;
    if (db->postgres)
        err = sql_exec(tx, SCHEMA_LOCK_SQL, NULL, 0, NULL);
    if (err == CF_OK)
        err = sql_exec(tx, SCHEMA_TABLE_SQL, NULL, 0, NULL);
    int64_t version = 0;
    if (err == CF_OK)
        err = schema_version(tx, name, &version);
    if (err == CF_OK && (version < 0 || (uint64_t)version > n)) {
        cf_log(LOG_ERROR, "sql schema is newer than this binary", "schema", name, NULL);
        err = CF_ERR_CONFIG;
    }
    if (err == CF_OK && (uint64_t)version < n)
        err = migration_apply(tx, name, &m[version]);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    err = sql_commit(tx);
    if (err == CF_OK)
        *done_out = (uint64_t)version == n;
    return err;
}

enum cf_err sqldb_migrate(struct sqldb *db, const char *name, const struct sql_migration *m,
                          size_t n)
{
    CF_ASSERT(db != NULL && name != NULL && (m != NULL || n == 0));
    for (size_t i = 0; i < n; i++)
        CF_ASSERT(m[i].version >= 1 && (size_t)m[i].version == i + 1);
    bool done = false;
    enum cf_err err = CF_OK;
    /* one migration per transaction, and one last that finds nothing left to do; the stored
     * version only grows, so n + 1 steps are enough unless someone else lowers it */
    for (size_t steps = 0; err == CF_OK && !done && steps <= n; steps++)
        err = migrate_step(db, name, m, n, &done);
    if (err == CF_OK && !done) {
        cf_log(LOG_ERROR, "sql schema version went backwards while migrating", "schema", name,
               NULL);
        err = CF_ERR_CORRUPT;
    }
    return err;
}
