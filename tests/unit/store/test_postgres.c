/*
 * test_postgres.c - the storage contract (store.h) against the PostgreSQL backend, each test in
 * a fresh database (coffer_t_<pid>_<n>, created through COFFER_TEST_PG_URL and dropped after):
 * the same behaviours as test_sqlite.c (open with create and migrations, the head of an empty
 * and a filled journal, accounts and entries written in w_begin/w_commit, rollback discarding,
 * lookups by idempotency key and the unique key, resolving holds, idempotency records, the
 * expired-holds listing, meta settings, reader snapshots, history pages, journal scans,
 * per-currency totals), then what only a shared database has: refusing a newer or missing
 * schema, servers migrating together once, two writers taking turns under the global write
 * lock, reconnecting after the database drops the sessions, SQLSTATE mapping (40001/40P01 are
 * storage_conflict), a commit after a failed statement not claiming success, and a broken
 * history link reading as corrupt. Without COFFER_TEST_PG_URL every test is skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/log.h"
#include "store/store.h"

#define T0 1700000000000000LL

/* A test database's URL: the given URL with its path replaced. */
#define URL_BYTES_MAX 1024

/* "coffer_t_<pid>_<n>" */
#define DB_NAME_BYTES 64

/* Servers opening one fresh database at the same time. */
#define CONCURRENT_OPENS 4

/* How long the second writer is given to (wrongly) get past the held write lock. */
#define LOCK_WAIT_PROBE_MS 300

static const char *base_url; /* COFFER_TEST_PG_URL */
static unsigned db_seq;

struct fx {
    char db[DB_NAME_BYTES];
    char url[URL_BYTES_MAX];
    struct store *s;
    struct arena *arena;
};

/* Databases ------------------------------------------------------------------------------------ */

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

/* Runs sql on url; returns the first column of the first row (static, "" when none), or NULL
 * when the statement failed. */
static const char *sql_on(const char *url, const char *sql)
{
    static char value[256];
    PGconn *c = PQconnectdb(url);
    const char *ret = NULL;
    if (PQstatus(c) == CONNECTION_OK) {
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        PGresult *res = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            value[0] = '\0';
            if (PQntuples(res) > 0 && PQnfields(res) > 0)
                snprintf(value, sizeof(value), "%s", PQgetvalue(res, 0, 0));
            ret = value;
        } else {
            fprintf(stderr, "test sql failed: %s: %s", sql, PQresultErrorMessage(res));
        }
        PQclear(res);
    } else {
        fprintf(stderr, "test connection failed: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ret;
}

/* A new empty database; its name and URL are written out. */
static bool db_create(char name[DB_NAME_BYTES], char url[URL_BYTES_MAX])
{
    char sql[DB_NAME_BYTES + 32];
    snprintf(name, DB_NAME_BYTES, "coffer_t_%ld_%u", (long)getpid(), ++db_seq);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    sql_on(base_url, sql); /* DROP first would race nobody: names are per process */
    return url_with_db(base_url, name, url, URL_BYTES_MAX) && sql_on(url, "SELECT 1") != NULL;
}

static void db_drop(const char *name)
{
    char sql[DB_NAME_BYTES + 48];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    sql_on(base_url, sql);
}

/* Ends every session on db but ours: what a database restart does to a server. */
static void sessions_kill(const char *db)
{
    char sql[DB_NAME_BYTES + 160];
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
             " WHERE datname = '%s' AND pid <> pg_backend_pid()",
             db);
    assert_non_null(sql_on(base_url, sql));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Fixture -------------------------------------------------------------------------------------- */

static enum cf_err open_store(const char *url, bool create, bool read_only, struct store **out)
{
    struct store_options o = {
        .location = url, .readers = 2, .read_only = read_only, .create = create};
    return store_open(&o, out);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    if (!db_create(f->db, f->url))
        return -1;
    if (open_store(f->url, true, false, &f->s) != CF_OK)
        return -1;
    f->arena = arena_create(16u << 20);
    return f->arena == NULL ? -1 : 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (f->s != NULL)
        f->s->ops->close(f->s);
    if (f->arena != NULL)
        arena_destroy(f->arena);
    if (f->db[0] != '\0')
        db_drop(f->db);
    free(f);
    return 0;
}

/* Helpers -------------------------------------------------------------------------------------- */

static struct ledger_account mk_account(uint64_t id, const char *currency, uint8_t normal)
{
    struct ledger_account a;
    memset(&a, 0, sizeof(a));
    a.id = id;
    strcpy(a.currency, currency);
    a.normal = normal;
    a.kind = LEDGER_KIND_CUSTOMER;
    a.created_at_us = T0 + (int64_t)id;
    return a;
}

static struct ledger_entry entry(uint64_t seq, uint64_t dr, uint64_t cr, int64_t amount)
{
    struct ledger_entry e;
    memset(&e, 0, sizeof(e));
    e.seq = seq;
    e.type = LEDGER_ENTRY_TRANSFER;
    e.status = LEDGER_STATUS_POSTED;
    e.debit_id = dr;
    e.credit_id = cr;
    e.amount = amount;
    strcpy(e.currency, "USD");
    strcpy(e.code, "p2p");
    e.group_seq = seq;
    e.created_at_us = T0 + (int64_t)seq;
    for (int i = 0; i < HASH_BYTES; i++)
        e.hash[i] = (uint8_t)(seq * 31 + (uint64_t)i);
    return e;
}

static void insert_account(struct store *s, const struct ledger_account *a)
{
    assert_int_equal(s->ops->w_account_insert(s, a, "owner-1", 7, "{\"a\":1}", 7), CF_OK);
}

static void begin(struct store *s) { assert_int_equal(s->ops->w_begin(s), CF_OK); }
static void commit(struct store *s) { assert_int_equal(s->ops->w_commit(s), CF_OK); }

/* Writes accounts 1..3 (USD) and transfers seq 1..n between them in a rotation, threading the
 * history links the way the writer does and keeping accounts[].last_seq and totals current. */
static void fill_journal(struct store *s, struct ledger_account accounts[4], uint64_t n)
{
    begin(s);
    for (uint64_t id = 1; id <= 3; id++) {
        accounts[id] = mk_account(id, "USD", LEDGER_NORMAL_CREDIT);
        insert_account(s, &accounts[id]);
    }
    for (uint64_t seq = 1; seq <= n; seq++) {
        uint64_t dr = 1 + (seq % 3), cr = 1 + ((seq + 1) % 3);
        struct ledger_entry e = entry(seq, dr, cr, (int64_t)seq * 10);
        e.debit_prev_seq = accounts[dr].last_seq;
        e.credit_prev_seq = accounts[cr].last_seq;
        accounts[dr].last_seq = accounts[cr].last_seq = seq;
        accounts[dr].debits_posted += e.amount;
        accounts[cr].credits_posted += e.amount;
        assert_int_equal(s->ops->w_entry_insert(s, &e), CF_OK);
    }
    for (uint64_t id = 1; id <= 3; id++)
        assert_int_equal(s->ops->w_account_update(s, &accounts[id]), CF_OK);
    commit(s);
}

static void assert_account_equal(const struct ledger_account *a, const struct ledger_account *b)
{
    assert_true(a->id == b->id);
    assert_string_equal(a->currency, b->currency);
    assert_int_equal(a->normal, b->normal);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->flags, b->flags);
    assert_true(a->debits_posted == b->debits_posted);
    assert_true(a->credits_posted == b->credits_posted);
    assert_true(a->debits_pending == b->debits_pending);
    assert_true(a->credits_pending == b->credits_pending);
    assert_true(a->created_at_us == b->created_at_us);
    assert_true(a->last_seq == b->last_seq);
}

static void assert_entry_equal(const struct ledger_entry *a, const struct ledger_entry *b)
{
    assert_true(a->seq == b->seq);
    assert_int_equal(a->type, b->type);
    assert_true(a->debit_id == b->debit_id && a->credit_id == b->credit_id);
    assert_true(a->amount == b->amount);
    assert_string_equal(a->currency, b->currency);
    assert_string_equal(a->code, b->code);
    assert_int_equal(a->metadata_len, b->metadata_len);
    if (a->metadata_len > 0)
        assert_memory_equal(a->metadata, b->metadata, a->metadata_len);
    assert_int_equal(a->idem_key_len, b->idem_key_len);
    if (a->idem_key_len > 0)
        assert_memory_equal(a->idem_key, b->idem_key, a->idem_key_len);
    assert_true(a->pending_seq == b->pending_seq && a->group_seq == b->group_seq);
    assert_true(a->expires_at_us == b->expires_at_us && a->created_at_us == b->created_at_us);
    assert_memory_equal(a->hash, b->hash, HASH_BYTES);
    assert_int_equal(a->status, b->status);
    assert_true(a->resolved_amount == b->resolved_amount);
    assert_true(a->resolution_seq == b->resolution_seq);
    assert_true(a->debit_prev_seq == b->debit_prev_seq);
    assert_true(a->credit_prev_seq == b->credit_prev_seq);
}

/* Open, migrate, head -------------------------------------------------------------------------- */

static void test_open_empty_head(void **state)
{
    struct fx *f = *state;
    struct store_head h;
    memset(&h, 0xAA, sizeof(h));
    assert_int_equal(f->s->ops->w_head(f->s, &h), CF_OK);
    assert_true(h.last_seq == 0);
    assert_true(h.last_account_id == 0);
    uint8_t zero[HASH_BYTES] = {0};
    assert_memory_equal(h.last_hash, zero, HASH_BYTES);
    assert_string_equal(f->s->ops->name, "postgres");
    assert_false(f->s->ops->single_writer);
}

static void test_open_without_create_fails_on_missing(void **state)
{
    (void)state;
    char db[DB_NAME_BYTES], url[URL_BYTES_MAX];
    assert_true(db_create(db, url)); /* an empty database: no schema */
    struct store *s = NULL;
    assert_int_equal(open_store(url, false, false, &s), CF_ERR_CONFIG);
    assert_null(s);
    assert_int_equal(open_store(url, false, true, &s), CF_ERR_CONFIG); /* read-only */
    assert_null(s);
    assert_string_equal(sql_on(url, "SELECT to_regclass('coffer_schema') IS NULL"), "t");
    db_drop(db);
    /* a URL libpq cannot parse is a configuration error; an unreachable server a storage one */
    assert_int_equal(open_store("postgresql://u:%zz@127.0.0.1/x", true, false, &s), CF_ERR_CONFIG);
    assert_int_equal(open_store("postgresql://postgres@127.0.0.1:1/x", true, false, &s),
                     CF_ERR_STORAGE);
    assert_null(s);
}

static void test_reopen_keeps_data_and_schema(void **state)
{
    struct fx *f = *state;
    struct ledger_account accounts[4];
    fill_journal(f->s, accounts, 5);
    f->s->ops->close(f->s);
    f->s = NULL;
    assert_int_equal(open_store(f->url, true, false, &f->s), CF_OK); /* migrations are idempotent */
    f->s->ops->close(f->s);
    f->s = NULL;
    assert_int_equal(open_store(f->url, false, false, &f->s), CF_OK);
    struct store_head h;
    assert_int_equal(f->s->ops->w_head(f->s, &h), CF_OK);
    assert_true(h.last_seq == 5);
    assert_true(h.last_account_id == 3);
    struct ledger_entry e5 = entry(5, 1, 2, 50);
    assert_memory_equal(h.last_hash, e5.hash, HASH_BYTES);
    assert_string_equal(sql_on(f->url, "SELECT count(*) = max(version) FROM coffer_schema"), "t");
}

static void test_newer_schema_refused(void **state)
{
    struct fx *f = *state;
    f->s->ops->close(f->s);
    f->s = NULL;
    assert_non_null(sql_on(f->url, "INSERT INTO coffer_schema (version)"
                                   " SELECT max(version) + 1 FROM coffer_schema"));
    assert_int_equal(open_store(f->url, true, false, &f->s), CF_ERR_CONFIG);
    assert_int_equal(open_store(f->url, false, false, &f->s), CF_ERR_CONFIG);
    assert_int_equal(open_store(f->url, false, true, &f->s), CF_ERR_CONFIG);
    assert_null(f->s);
}

struct opener {
    const char *url;
    enum cf_err err;
    struct store *s;
};

static void *opener_main(void *arg)
{
    struct opener *o = arg;
    o->err = open_store(o->url, true, false, &o->s);
    return NULL;
}

/* Servers starting together on a fresh database: each opens, the migrations run once. */
static void test_concurrent_opens_migrate_once(void **state)
{
    (void)state;
    char db[DB_NAME_BYTES], url[URL_BYTES_MAX];
    assert_true(db_create(db, url));
    struct opener o[CONCURRENT_OPENS];
    pthread_t t[CONCURRENT_OPENS];
    for (int i = 0; i < CONCURRENT_OPENS; i++) {
        o[i] = (struct opener){.url = url, .err = CF_ERR_INTERNAL, .s = NULL};
        assert_int_equal(pthread_create(&t[i], NULL, opener_main, &o[i]), 0);
    }
    for (int i = 0; i < CONCURRENT_OPENS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < CONCURRENT_OPENS; i++) {
        assert_int_equal(o[i].err, CF_OK);
        o[i].s->ops->close(o[i].s);
    }
    assert_string_equal(sql_on(url, "SELECT count(*) = max(version) FROM coffer_schema"), "t");
    db_drop(db);
}

/* Writer side ---------------------------------------------------------------------------------- */

static void test_account_insert_get_update(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account a = mk_account(1, "JPY", LEDGER_NORMAL_DEBIT), got;
    a.kind = LEDGER_KIND_SYSTEM;
    a.flags = LEDGER_ACCOUNT_NO_OVERDRAFT;
    a.debits_posted = 100;
    begin(f->s);
    insert_account(f->s, &a);
    assert_int_equal(ops->w_account_get(f->s, 1, &got), CF_OK); /* visible inside the batch */
    assert_account_equal(&got, &a);
    a.flags |= LEDGER_ACCOUNT_FROZEN;
    a.credits_posted = 40;
    a.debits_pending = 5;
    a.credits_pending = 7;
    a.last_seq = 12;
    assert_int_equal(ops->w_account_update(f->s, &a), CF_OK);
    commit(f->s);
    assert_int_equal(ops->w_account_get(f->s, 1, &got), CF_OK);
    assert_account_equal(&got, &a);
    memset(&got, 0x5A, sizeof(got));
    struct ledger_account before = got;
    assert_int_equal(ops->w_account_get(f->s, 2, &got), CF_ERR_NOT_FOUND);
    assert_memory_equal(&got, &before, sizeof(got));
}

/* A batch's writes may be pipelined: a write's error shows at once or at the latest at
 * w_commit, which must then fail with want; the batch leaves nothing behind. */
static void write_fails(struct store *s, enum cf_err now, enum cf_err want)
{
    if (now == CF_OK)
        now = s->ops->w_commit(s);
    assert_int_equal(now, want);
    s->ops->w_rollback(s);
}

static void test_account_update_missing_and_duplicate(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account a = mk_account(1, "USD", LEDGER_NORMAL_CREDIT);
    begin(f->s);
    insert_account(f->s, &a);
    commit(f->s);
    begin(f->s);
    write_fails(f->s, ops->w_account_insert(f->s, &a, NULL, 0, NULL, 0), CF_ERR_STORAGE);
    struct ledger_account missing = mk_account(9, "USD", LEDGER_NORMAL_CREDIT);
    begin(f->s);
    write_fails(f->s, ops->w_account_update(f->s, &missing), CF_ERR_CORRUPT);
}

static void test_entry_insert_get(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    static const char meta[] = "{\"note\":\"x\\u0000y\"}";
    struct ledger_entry e = entry(1, 1, 2, 500), got;
    e.type = LEDGER_ENTRY_PENDING;
    e.status = LEDGER_STATUS_PENDING;
    e.metadata = meta;
    e.metadata_len = sizeof(meta) - 1;
    e.idem_key = "key\0with-nul";
    e.idem_key_len = 12;
    e.expires_at_us = T0 + 99;
    e.debit_prev_seq = 0;
    e.credit_prev_seq = 0;
    begin(f->s);
    assert_int_equal(ops->w_entry_insert(f->s, &e), CF_OK);
    commit(f->s);
    assert_int_equal(ops->w_entry_get(f->s, 1, &got, f->arena), CF_OK);
    assert_entry_equal(&got, &e);
    assert_int_equal(ops->w_entry_get(f->s, 2, &got, f->arena), CF_ERR_NOT_FOUND);
}

static void test_entry_without_metadata_and_key(void **state)
{
    struct fx *f = *state;
    struct ledger_entry e = entry(1, 1, 2, 500), got;
    begin(f->s);
    assert_int_equal(f->s->ops->w_entry_insert(f->s, &e), CF_OK);
    commit(f->s);
    assert_int_equal(f->s->ops->w_entry_get(f->s, 1, &got, f->arena), CF_OK);
    assert_null(got.metadata);
    assert_null(got.idem_key);
    assert_int_equal(got.metadata_len + got.idem_key_len, 0);
}

static void test_rollback_discards(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account a = mk_account(1, "USD", LEDGER_NORMAL_CREDIT), got;
    struct ledger_entry e = entry(1, 1, 2, 5), ge;
    begin(f->s);
    insert_account(f->s, &a);
    assert_int_equal(ops->w_entry_insert(f->s, &e), CF_OK);
    ops->w_rollback(f->s);
    ops->w_rollback(f->s); /* a second rollback outside a transaction is harmless */
    assert_int_equal(ops->w_account_get(f->s, 1, &got), CF_ERR_NOT_FOUND);
    assert_int_equal(ops->w_entry_get(f->s, 1, &ge, f->arena), CF_ERR_NOT_FOUND);
    struct store_head h;
    assert_int_equal(ops->w_head(f->s, &h), CF_OK);
    assert_true(h.last_seq == 0 && h.last_account_id == 0);
    begin(f->s); /* the same rows can be written again */
    insert_account(f->s, &a);
    assert_int_equal(ops->w_entry_insert(f->s, &e), CF_OK);
    commit(f->s);
    assert_int_equal(ops->w_account_get(f->s, 1, &got), CF_OK);
}

static void test_entry_by_key_and_unique(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_entry e1 = entry(1, 1, 2, 5), e2 = entry(2, 1, 2, 6), e3 = entry(3, 2, 1, 7);
    struct ledger_entry got;
    e1.idem_key = "k-1";
    e1.idem_key_len = 3;
    e2.idem_key = "k-1"; /* the same key */
    e2.idem_key_len = 3;
    begin(f->s);
    assert_int_equal(ops->w_entry_insert(f->s, &e1), CF_OK);
    commit(f->s);
    begin(f->s);
    write_fails(f->s, ops->w_entry_insert(f->s, &e2), CF_ERR_STORAGE);
    begin(f->s);
    write_fails(f->s, ops->w_entry_insert(f->s, &e1), CF_ERR_STORAGE); /* the same seq */
    begin(f->s);
    assert_int_equal(ops->w_entry_insert(f->s, &e3), CF_OK); /* no key: fine */
    commit(f->s);
    assert_int_equal(ops->w_entry_find_key(f->s, "k-1", 3, &got, f->arena), CF_OK);
    assert_entry_equal(&got, &e1);
    assert_int_equal(ops->w_entry_find_key(f->s, "k-2", 3, &got, f->arena), CF_ERR_NOT_FOUND);
    assert_int_equal(ops->w_entry_find_key(f->s, "k-", 2, &got, f->arena), CF_ERR_NOT_FOUND);
    assert_int_equal(ops->w_entry_get(f->s, 2, &got, f->arena), CF_ERR_NOT_FOUND);
}

static void test_resolve(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_entry p = entry(1, 1, 2, 500), got;
    p.type = LEDGER_ENTRY_PENDING;
    p.status = LEDGER_STATUS_PENDING;
    begin(f->s);
    assert_int_equal(ops->w_entry_insert(f->s, &p), CF_OK);
    commit(f->s);
    p.status = LEDGER_STATUS_POSTED;
    p.resolved_amount = 123;
    p.resolution_seq = 2;
    begin(f->s);
    assert_int_equal(ops->w_entry_resolve(f->s, &p), CF_OK);
    commit(f->s);
    assert_int_equal(ops->w_entry_get(f->s, 1, &got, f->arena), CF_OK);
    assert_entry_equal(&got, &p); /* only the mutable fields changed */
    struct ledger_entry missing = p;
    missing.seq = 77;
    begin(f->s);
    write_fails(f->s, ops->w_entry_resolve(f->s, &missing), CF_ERR_CORRUPT);
}

static void test_idem_put_get_purge(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct store_idem_record r1 = {
        .http_status = 201, .body = "{\"id\":\"tr_1\"}", .body_len = 13, .created_at_us = 100};
    struct store_idem_record r2 = {
        .http_status = 422, .body = "bin\0ary", .body_len = 7, .created_at_us = 200};
    memset(r1.request_hash, 1, HASH_BYTES);
    memset(r2.request_hash, 2, HASH_BYTES);
    struct store_idem_record got;
    assert_int_equal(ops->w_idem_get(f->s, "a", 1, &got, f->arena), CF_ERR_NOT_FOUND);
    begin(f->s);
    assert_int_equal(ops->w_idem_put(f->s, "a", 1, &r1), CF_OK);
    assert_int_equal(ops->w_idem_put(f->s, "b", 1, &r2), CF_OK);
    commit(f->s);
    begin(f->s);
    write_fails(f->s, ops->w_idem_put(f->s, "a", 1, &r2), CF_ERR_STORAGE); /* key taken */
    assert_int_equal(ops->w_idem_get(f->s, "a", 1, &got, f->arena), CF_OK);
    assert_int_equal(got.http_status, 201);
    assert_memory_equal(got.request_hash, r1.request_hash, HASH_BYTES);
    assert_int_equal(got.body_len, 13);
    assert_memory_equal(got.body, r1.body, 13);
    assert_true(got.created_at_us == 100);
    assert_int_equal(ops->w_idem_get(f->s, "b", 1, &got, f->arena), CF_OK);
    assert_int_equal(got.body_len, 7);
    assert_memory_equal(got.body, "bin\0ary", 7);
    begin(f->s);
    assert_int_equal(ops->w_idem_purge(f->s, 150), CF_OK); /* created before 150: only "a" */
    commit(f->s);
    assert_int_equal(ops->w_idem_get(f->s, "a", 1, &got, f->arena), CF_ERR_NOT_FOUND);
    assert_int_equal(ops->w_idem_get(f->s, "b", 1, &got, f->arena), CF_OK);
    begin(f->s);
    assert_int_equal(ops->w_idem_purge(f->s, 200), CF_OK); /* strictly before */
    commit(f->s);
    assert_int_equal(ops->w_idem_get(f->s, "b", 1, &got, f->arena), CF_OK);
}

/* Pending entry seq with expiry exp and status. */
static void insert_hold(struct store *s, uint64_t seq, int64_t exp, uint8_t status)
{
    struct ledger_entry p = entry(seq, 1, 2, 10);
    p.type = LEDGER_ENTRY_PENDING;
    p.status = status;
    p.expires_at_us = exp;
    assert_int_equal(s->ops->w_entry_insert(s, &p), CF_OK);
}

static void test_expired_order_and_bound(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    begin(f->s);
    insert_hold(f->s, 1, 300, LEDGER_STATUS_PENDING);
    insert_hold(f->s, 2, 100, LEDGER_STATUS_PENDING);
    insert_hold(f->s, 3, 200, LEDGER_STATUS_PENDING);
    insert_hold(f->s, 4, 0, LEDGER_STATUS_PENDING);   /* no timeout */
    insert_hold(f->s, 5, 50, LEDGER_STATUS_VOIDED);   /* resolved already */
    insert_hold(f->s, 6, 250, LEDGER_STATUS_PENDING); /* exactly now */
    struct ledger_entry t = entry(7, 1, 2, 10);
    t.expires_at_us = 10; /* not a hold's status */
    assert_int_equal(ops->w_entry_insert(f->s, &t), CF_OK);
    commit(f->s);
    uint64_t seqs[8];
    size_t n = 99;
    assert_int_equal(ops->w_expired(f->s, 250, seqs, 8, &n), CF_OK);
    assert_int_equal(n, 3);
    assert_true(seqs[0] == 2 && seqs[1] == 3 && seqs[2] == 6);
    assert_int_equal(ops->w_expired(f->s, 250, seqs, 2, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_true(seqs[0] == 2 && seqs[1] == 3);
    assert_int_equal(ops->w_expired(f->s, 99, seqs, 8, &n), CF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ops->w_expired(f->s, INT64_MAX, seqs, 8, &n), CF_OK);
    assert_int_equal(n, 4);
    assert_true(seqs[3] == 1);
}

static void test_meta(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    char buf[64] = "untouched";
    assert_int_equal(ops->meta_get(f->s, "token_hash", buf, sizeof(buf)), CF_ERR_NOT_FOUND);
    assert_string_equal(buf, "untouched");
    assert_int_equal(ops->meta_put(f->s, "token_hash", "abc"), CF_OK);
    assert_int_equal(ops->meta_get(f->s, "token_hash", buf, sizeof(buf)), CF_OK);
    assert_string_equal(buf, "abc");
    assert_int_equal(ops->meta_put(f->s, "token_hash", "defgh"), CF_OK); /* overwrite */
    assert_int_equal(ops->meta_get(f->s, "token_hash", buf, sizeof(buf)), CF_OK);
    assert_string_equal(buf, "defgh");
    char small[4];
    assert_int_not_equal(ops->meta_get(f->s, "token_hash", small, sizeof(small)), CF_OK);
    f->s->ops->close(f->s); /* durable across a reopen */
    f->s = NULL;
    assert_int_equal(open_store(f->url, false, false, &f->s), CF_OK);
    assert_int_equal(f->s->ops->meta_get(f->s, "token_hash", buf, sizeof(buf)), CF_OK);
    assert_string_equal(buf, "defgh");
}

/* Reader side ---------------------------------------------------------------------------------- */

static void test_reader_sees_committed_only(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account a = mk_account(1, "USD", LEDGER_NORMAL_CREDIT);
    struct store_account_row row;
    struct store_reader *r1, *r2;
    begin(f->s);
    insert_account(f->s, &a);
    assert_int_equal(ops->r_open(f->s, &r1), CF_OK);
    assert_int_equal(ops->r_account_get(r1, 1, &row, f->arena), CF_ERR_NOT_FOUND); /* uncommitted */
    commit(f->s);
    assert_int_equal(ops->r_account_get(r1, 1, &row, f->arena), CF_ERR_NOT_FOUND); /* snapshot */
    assert_int_equal(ops->r_open(f->s, &r2), CF_OK);
    assert_int_equal(ops->r_account_get(r2, 1, &row, f->arena), CF_OK);
    assert_account_equal(&row.account, &a);
    assert_string_equal(row.owner, "owner-1");
    assert_string_equal(row.metadata, "{\"a\":1}");
    ops->r_close(r2);
    ops->r_close(r1);
    assert_int_equal(ops->r_open(f->s, &r1), CF_OK); /* a reader back from the pool is fresh */
    assert_int_equal(ops->r_account_get(r1, 1, &row, f->arena), CF_OK);
    ops->r_close(r1);
}

static void test_reader_rolled_back_invisible(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account a = mk_account(1, "USD", LEDGER_NORMAL_CREDIT);
    struct store_account_row row;
    struct store_reader *r;
    begin(f->s);
    assert_int_equal(ops->w_account_insert(f->s, &a, NULL, 0, NULL, 0), CF_OK);
    ops->w_rollback(f->s);
    assert_int_equal(ops->r_open(f->s, &r), CF_OK);
    assert_int_equal(ops->r_account_get(r, 1, &row, f->arena), CF_ERR_NOT_FOUND);
    ops->r_close(r);
}

static void test_accounts_list(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account accounts[4];
    fill_journal(f->s, accounts, 0);
    struct store_reader *r;
    struct store_account_row rows[4];
    size_t n = 0;
    assert_int_equal(ops->r_open(f->s, &r), CF_OK);
    assert_int_equal(ops->r_accounts_list(r, 0, 2, rows, &n, f->arena), CF_OK);
    assert_int_equal(n, 2);
    assert_true(rows[0].account.id == 1 && rows[1].account.id == 2);
    assert_int_equal(ops->r_accounts_list(r, 2, 4, rows, &n, f->arena), CF_OK);
    assert_int_equal(n, 1);
    assert_true(rows[0].account.id == 3);
    assert_int_equal(ops->r_accounts_list(r, 3, 4, rows, &n, f->arena), CF_OK);
    assert_int_equal(n, 0);
    ops->r_close(r);
}

/* Collects account id's whole history, page by page, and checks it is newest first. */
static size_t history_pages(struct fx *f, struct store_reader *r, uint64_t id, size_t page,
                            uint64_t *seqs, size_t cap)
{
    const struct store_ops *ops = f->s->ops;
    uint64_t before = UINT64_MAX;
    size_t total = 0;
    for (;;) {
        struct ledger_entry out[8];
        size_t n = 0;
        assert_true(page <= 8);
        assert_int_equal(ops->r_account_entries(r, id, before, page, out, &n, f->arena), CF_OK);
        assert_true(n <= page);
        for (size_t i = 0; i < n; i++) {
            assert_true(out[i].debit_id == id || out[i].credit_id == id);
            assert_true(out[i].seq < before);
            assert_true(total < cap);
            seqs[total++] = out[i].seq;
            before = out[i].seq;
        }
        if (n < page)
            return total;
    }
}

static void test_account_entries_newest_first_paging(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account accounts[4];
    fill_journal(f->s, accounts, 20); /* each account is in 2 of every 3 entries */
    struct store_reader *r;
    assert_int_equal(ops->r_open(f->s, &r), CF_OK);
    for (uint64_t id = 1; id <= 3; id++) {
        uint64_t expect[20], got[20];
        size_t ne = 0;
        for (uint64_t seq = 20; seq >= 1; seq--) {
            if (1 + (seq % 3) == id || 1 + ((seq + 1) % 3) == id)
                expect[ne++] = seq;
        }
        for (size_t page = 1; page <= 8; page += 3) {
            size_t n = history_pages(f, r, id, page, got, 20);
            assert_int_equal(n, ne);
            assert_memory_equal(got, expect, ne * sizeof(uint64_t));
        }
    }
    struct ledger_entry out[4];
    size_t n = 0;
    /* seq 1 is 2 -> 3: not a cursor of account 1's history */
    assert_int_equal(ops->r_account_entries(r, 1, 1, 4, out, &n, f->arena), CF_ERR_INVALID_CURSOR);
    assert_int_equal(ops->r_account_entries(r, 1, 999, 4, out, &n, f->arena),
                     CF_ERR_INVALID_CURSOR);
    assert_int_equal(ops->r_account_entries(r, 99, UINT64_MAX, 4, out, &n, f->arena),
                     CF_ERR_NOT_FOUND);
    ops->r_close(r);
}

static void test_entries_scan_paging(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account accounts[4];
    fill_journal(f->s, accounts, 10);
    struct store_reader *r;
    assert_int_equal(ops->r_open(f->s, &r), CF_OK);
    uint64_t after = 0, next = 1;
    size_t pages = 0;
    for (;;) {
        struct ledger_entry out[3];
        size_t n = 99;
        assert_int_equal(ops->r_entries_scan(r, after, 3, out, &n, f->arena), CF_OK);
        pages++;
        for (size_t i = 0; i < n; i++) {
            assert_true(out[i].seq == next);
            struct ledger_entry e =
                entry(next, 1 + (next % 3), 1 + ((next + 1) % 3), (int64_t)next * 10);
            assert_memory_equal(out[i].hash, e.hash, HASH_BYTES);
            next++;
        }
        if (n == 0)
            break;
        after = out[n - 1].seq;
    }
    assert_true(next == 11);
    assert_int_equal(pages, 5); /* 3 + 3 + 3 + 1 + the empty page */
    struct ledger_entry got;
    assert_int_equal(ops->r_entry_get(r, 4, &got, f->arena), CF_OK);
    assert_true(got.seq == 4 && got.amount == 40);
    assert_int_equal(ops->r_entry_get(r, 11, &got, f->arena), CF_ERR_NOT_FOUND);
    ops->r_close(r);
}

static void test_currency_totals(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    begin(f->s);
    static const char *const cur[] = {"USD", "JPY", "USD", "KWD", "USD"};
    for (uint64_t i = 0; i < 5; i++) {
        struct ledger_account a = mk_account(i + 1, cur[i], LEDGER_NORMAL_CREDIT);
        a.debits_posted = (int64_t)(i + 1) * 10;
        a.credits_posted = (int64_t)(i + 1) * 100;
        a.debits_pending = (int64_t)i;
        a.credits_pending = 2 * (int64_t)i;
        insert_account(f->s, &a);
    }
    commit(f->s);
    struct store_reader *r;
    struct store_currency_totals t[4];
    size_t n = 0;
    assert_int_equal(ops->r_open(f->s, &r), CF_OK);
    assert_int_equal(ops->r_currency_totals(r, t, 4, &n), CF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(t[0].currency, "JPY"); /* ordered by code */
    assert_string_equal(t[1].currency, "KWD");
    assert_string_equal(t[2].currency, "USD");
    assert_true(t[0].accounts == 1 && t[1].accounts == 1 && t[2].accounts == 3);
    assert_true(t[2].debits_posted == 10 + 30 + 50);
    assert_true(t[2].credits_posted == 100 + 300 + 500);
    assert_true(t[2].debits_pending == 0 + 2 + 4);
    assert_true(t[2].credits_pending == 0 + 4 + 8);
    assert_true(t[0].debits_posted == 20 && t[1].credits_pending == 6);
    assert_int_equal(ops->r_currency_totals(r, t, 2, &n), CF_OK); /* bounded by max */
    assert_int_equal(n, 2);
    ops->r_close(r);
}

/* Sums of int64 totals may pass INT64_MAX: store.h reports them in 128 bits. */
static void test_currency_totals_past_int64(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    begin(f->s);
    for (uint64_t id = 1; id <= 3; id++) {
        struct ledger_account a = mk_account(id, "USD", LEDGER_NORMAL_CREDIT);
        a.credits_posted = INT64_MAX;
        a.debits_posted = 0xFFFFFFFFLL; /* the low halves carry */
        a.debits_pending = (int64_t)id;
        insert_account(f->s, &a);
    }
    commit(f->s);
    struct store_reader *r;
    struct store_currency_totals t[2];
    size_t n = 0;
    assert_int_equal(ops->r_open(f->s, &r), CF_OK);
    assert_int_equal(ops->r_currency_totals(r, t, 2, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_true(t[0].credits_posted == (__int128)INT64_MAX * 3);
    assert_true(t[0].debits_posted == (__int128)0xFFFFFFFFLL * 3);
    assert_true(t[0].debits_pending == 6 && t[0].credits_pending == 0);
    ops->r_close(r);
}

/* A shared database ---------------------------------------------------------------------------- */

struct second_writer {
    struct store *s;
    atomic_int began;
    enum cf_err err;
    struct store_head head;
};

static void *second_writer_main(void *arg)
{
    struct second_writer *b = arg;
    b->err = b->s->ops->w_begin(b->s);
    if (b->err == CF_OK)
        b->err = b->s->ops->w_head(b->s, &b->head);
    atomic_store(&b->began, 1);
    return NULL;
}

/* Two servers on one database: both open for writing; the second's batch waits for the first's
 * to commit, then sees its journal head, so the chain stays one line. */
static void test_two_writers_take_turns(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct second_writer b = {.s = NULL, .err = CF_ERR_INTERNAL};
    atomic_init(&b.began, 0);
    assert_int_equal(open_store(f->url, true, false, &b.s), CF_OK);
    struct ledger_account a = mk_account(1, "USD", LEDGER_NORMAL_CREDIT);
    struct ledger_entry e1 = entry(1, 1, 2, 5), e2 = entry(2, 2, 1, 6);
    begin(f->s);
    insert_account(f->s, &a);
    assert_int_equal(ops->w_entry_insert(f->s, &e1), CF_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, second_writer_main, &b), 0);
    sleep_ms(LOCK_WAIT_PROBE_MS);
    assert_int_equal(atomic_load(&b.began), 0); /* still waiting for the write lock */
    commit(f->s);
    pthread_join(t, NULL);
    assert_int_equal(b.err, CF_OK);
    assert_true(b.head.last_seq == 1 && b.head.last_account_id == 1);
    assert_memory_equal(b.head.last_hash, e1.hash, HASH_BYTES);
    assert_int_equal(b.s->ops->w_entry_insert(b.s, &e2), CF_OK);
    assert_int_equal(b.s->ops->w_commit(b.s), CF_OK);
    struct store_head h;
    begin(f->s);
    assert_int_equal(ops->w_head(f->s, &h), CF_OK); /* nothing cached: the other's entry */
    assert_true(h.last_seq == 2);
    ops->w_rollback(f->s);
    b.s->ops->close(b.s);
}

static void test_read_only_store_reads(void **state)
{
    struct fx *f = *state;
    struct ledger_account accounts[4];
    fill_journal(f->s, accounts, 3);
    struct store *ro = NULL;
    assert_int_equal(open_store(f->url, false, true, &ro), CF_OK);
    struct store_reader *r;
    struct store_account_row row;
    assert_int_equal(ro->ops->r_open(ro, &r), CF_OK);
    assert_int_equal(ro->ops->r_account_get(r, 2, &row, f->arena), CF_OK);
    assert_account_equal(&row.account, &accounts[2]);
    ro->ops->r_close(r);
    ro->ops->close(ro);
}

/* The database ends every session (a restart, a failover): the next batch and the next reader
 * reconnect by themselves; a batch caught mid-way fails whole. */
static void test_reconnects_after_sessions_end(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account accounts[4];
    fill_journal(f->s, accounts, 2);
    sessions_kill(f->db);
    struct store_head h;
    begin(f->s);
    assert_int_equal(ops->w_head(f->s, &h), CF_OK);
    assert_true(h.last_seq == 2);
    commit(f->s);
    struct store_reader *r;
    struct store_account_row row;
    for (int i = 0; i < 2; i++) { /* both readers of the pool */
        struct store_reader *r2;
        assert_int_equal(ops->r_open(f->s, &r), CF_OK);
        assert_int_equal(ops->r_open(f->s, &r2), CF_OK);
        assert_int_equal(ops->r_account_get(r, 1, &row, f->arena), CF_OK);
        assert_int_equal(ops->r_account_get(r2, 3, &row, f->arena), CF_OK);
        ops->r_close(r2);
        ops->r_close(r);
        if (i == 0)
            sessions_kill(f->db);
    }
    struct ledger_entry e3 = entry(3, 1, 2, 7), e4 = entry(4, 2, 1, 8), got;
    begin(f->s);
    assert_int_equal(ops->w_entry_insert(f->s, &e3), CF_OK);
    sessions_kill(f->db);
    write_fails(f->s, ops->w_entry_insert(f->s, &e4), CF_ERR_STORAGE);
    begin(f->s);
    assert_int_equal(ops->w_entry_get(f->s, 3, &got, f->arena), CF_ERR_NOT_FOUND);
    commit(f->s);
    sessions_kill(f->db); /* outside a batch too */
    assert_int_equal(ops->w_entry_get(f->s, 2, &got, f->arena), CF_ERR_STORAGE);
    assert_int_equal(ops->w_entry_get(f->s, 2, &got, f->arena), CF_OK);
}

/* A trigger makes chosen inserts fail with chosen SQLSTATEs. */
static void install_failing_trigger(const char *url)
{
    assert_non_null(sql_on(
        url, "CREATE FUNCTION coffer_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$"
             " BEGIN"
             "  IF NEW.amount = 666 THEN RAISE EXCEPTION 'x' USING ERRCODE = '40001'; END IF;"
             "  IF NEW.amount = 667 THEN RAISE EXCEPTION 'x' USING ERRCODE = '40P01'; END IF;"
             "  IF NEW.amount = 668 THEN RAISE EXCEPTION 'x' USING ERRCODE = '23514'; END IF;"
             "  RETURN NEW;"
             " END $$"));
    assert_non_null(sql_on(url, "CREATE TRIGGER coffer_test_fail BEFORE INSERT ON entries"
                                " FOR EACH ROW EXECUTE FUNCTION coffer_test_fail()"));
}

static void test_sqlstates_and_failed_commit(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    install_failing_trigger(f->url);
    struct ledger_entry e1 = entry(1, 1, 2, 5), got;
    struct ledger_entry serial = entry(2, 1, 2, 666), deadlock = entry(2, 1, 2, 667);
    struct ledger_entry check = entry(2, 1, 2, 668);
    begin(f->s);
    assert_int_equal(ops->w_entry_insert(f->s, &e1), CF_OK);
    write_fails(f->s, ops->w_entry_insert(f->s, &serial), CF_ERR_STORAGE_CONFLICT);
    assert_int_equal(ops->w_entry_get(f->s, 1, &got, f->arena), CF_ERR_NOT_FOUND);
    begin(f->s);
    write_fails(f->s, ops->w_entry_insert(f->s, &deadlock), CF_ERR_STORAGE_CONFLICT);
    begin(f->s);
    write_fails(f->s, ops->w_entry_insert(f->s, &check), CF_ERR_STORAGE);
    begin(f->s);
    assert_int_equal(ops->w_entry_insert(f->s, &e1), CF_OK);
    commit(f->s);
    assert_int_equal(ops->w_entry_get(f->s, 1, &got, f->arena), CF_OK);
}

/* Batch prefetches: accounts by id (unknown and duplicate ids allowed), idempotency records by
 * key (keys with quotes and backslashes too), each answering exactly what is stored. */
static void test_prefetches(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account a1 = mk_account(1, "USD", LEDGER_NORMAL_CREDIT);
    struct ledger_account a2 = mk_account(2, "JPY", LEDGER_NORMAL_DEBIT);
    struct store_idem_record r = {
        .http_status = 201, .body = "{}", .body_len = 2, .created_at_us = 5};
    memset(r.request_hash, 7, HASH_BYTES);
    const char *odd = "op:a\"b\\c{,}";
    begin(f->s);
    insert_account(f->s, &a1);
    insert_account(f->s, &a2);
    assert_int_equal(ops->w_idem_put(f->s, odd, strlen(odd), &r), CF_OK);
    commit(f->s);
    uint64_t ids[] = {2, 99, 1, 2, (uint64_t)INT64_MAX};
    struct ledger_account out[5];
    size_t found = 0;
    begin(f->s);
    assert_int_equal(ops->w_accounts_prefetch(f->s, ids, 5, out, &found), CF_OK);
    assert_int_equal(found, 2);
    assert_true((out[0].id == 1 && out[1].id == 2) || (out[0].id == 2 && out[1].id == 1));
    assert_string_equal(out[out[0].id == 2 ? 0 : 1].currency, "JPY");
    const char *keys[] = {"op:none", odd};
    size_t lens[] = {7, strlen(odd)};
    struct store_idem_record recs[2];
    const char *okeys[2];
    size_t olens[2];
    assert_int_equal(
        ops->w_idem_prefetch(f->s, keys, lens, 2, recs, okeys, olens, &found, f->arena), CF_OK);
    assert_int_equal(found, 1);
    assert_int_equal(olens[0], strlen(odd));
    assert_memory_equal(okeys[0], odd, strlen(odd));
    assert_int_equal(recs[0].http_status, 201);
    assert_memory_equal(recs[0].request_hash, r.request_hash, HASH_BYTES);
    ops->w_rollback(f->s);
}

/* A history link to an entry that is not there is corrupt data, not the end of the history. */
static void test_history_broken_link_is_corrupt(void **state)
{
    struct fx *f = *state;
    const struct store_ops *ops = f->s->ops;
    struct ledger_account accounts[4];
    fill_journal(f->s, accounts, 6);
    assert_non_null(sql_on(f->url, "DELETE FROM entries WHERE seq = 3"));
    struct store_reader *r;
    struct ledger_entry out[8];
    size_t n = 99;
    assert_int_equal(ops->r_open(f->s, &r), CF_OK);
    /* account 1's history is 6, 5, 3, 2: the walk reaches the missing 3 */
    assert_int_equal(ops->r_account_entries(r, 1, UINT64_MAX, 8, out, &n, f->arena),
                     CF_ERR_CORRUPT);
    assert_int_equal(n, 99);
    ops->r_close(r);
}

static void test_skipped(void **state)
{
    (void)state;
    skip();
}

int main(void)
{
    base_url = getenv("COFFER_TEST_PG_URL");
    if (base_url == NULL || base_url[0] == '\0') {
        printf("skipped: COFFER_TEST_PG_URL not set\n");
        const struct CMUnitTest skipped[] = {cmocka_unit_test(test_skipped)};
        return cmocka_run_group_tests(skipped, NULL, NULL);
    }
    if (hash_init() != 0)
        return 1;
    cf_log_set_level(LOG_WARN); /* expected failures still log as errors */
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_empty_head),
        cmocka_unit_test(test_open_without_create_fails_on_missing),
        T(test_reopen_keeps_data_and_schema),
        T(test_newer_schema_refused),
        cmocka_unit_test(test_concurrent_opens_migrate_once),
        T(test_account_insert_get_update),
        T(test_account_update_missing_and_duplicate),
        T(test_entry_insert_get),
        T(test_entry_without_metadata_and_key),
        T(test_rollback_discards),
        T(test_entry_by_key_and_unique),
        T(test_resolve),
        T(test_idem_put_get_purge),
        T(test_expired_order_and_bound),
        T(test_meta),
        T(test_reader_sees_committed_only),
        T(test_reader_rolled_back_invisible),
        T(test_accounts_list),
        T(test_account_entries_newest_first_paging),
        T(test_entries_scan_paging),
        T(test_currency_totals),
        T(test_currency_totals_past_int64),
        T(test_two_writers_take_turns),
        T(test_read_only_store_reads),
        T(test_reconnects_after_sessions_end),
        T(test_sqlstates_and_failed_commit),
        T(test_history_broken_link_is_corrupt),
        T(test_prefetches),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
