/*
 * test_audit.c - unit tests for src/identity/audit.c over the SQL facade, against SQLite (a fresh
 * file per test) and, when COFFER_TEST_PG_URL is set, against PostgreSQL (a fresh database per
 * test, coffer_ta_<pid>_<n>, dropped after): appends in transactions with a clean verify and the
 * hash layout of audit.h recomputed here; every list filter, the action prefix range and the
 * cursor; tampering with a record's detail, its link, a deleted record and the head, each
 * reported at the right seq; a rolled-back append leaving nothing; the bounds of every field
 * and the cleaning of the user agent; two threads appending 200 events each, then a clean chain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "testdb.h" /* the throwaway database: SQLite, or PostgreSQL */

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hash.h"
#include "identity/audit.h"
#include "store/sql/sql.h"

#define T0_US 1700000000000000LL

/* A test database's URL or file path. */
#define TARGET_BYTES_MAX 1024
/* "coffer_ta_<pid>_<n>" */

/* Threads appending at once, and the events each appends. */
#define APPEND_THREADS 2
#define APPENDS_PER_THREAD 200

struct fx {
    char target[TARGET_BYTES_MAX];
    char pg_name[TESTDB_NAME_BYTES]; /* "" for SQLite */
    char dir[TESTDB_DIR_BYTES];      /* SQLite's temporary directory */
    struct sqldb *db;
};

/* Databases ------------------------------------------------------------------------------------ */

static bool target_create(struct fx *f)
{
    return testdb_create("ta", true, f->dir, f->pg_name, f->target, sizeof(f->target));
}

static void target_drop(struct fx *f) { testdb_drop(f->dir, f->pg_name); }

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    if (!target_create(f) || sqldb_open(f->target, &f->db) != CF_OK)
        return -1;
    return sqldb_migrate(f->db, "audit", &audit_migration, 1) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (f->db != NULL)
        sqldb_close(f->db);
    target_drop(f);
    free(f);
    return 0;
}

/* Helpers -------------------------------------------------------------------------------------- */

static struct audit_event ev_make(const char *actor, const char *action, const char *target,
                                  const char *outcome, int64_t at_us)
{
    return (struct audit_event){.actor = actor,
                                .action = action,
                                .target = target,
                                .ip = "192.0.2.7",
                                .user_agent = "test/1.0",
                                .outcome = outcome,
                                .detail = "d",
                                .at_us = at_us};
}

/* Appends ev in a transaction of its own; returns the error and the seq. */
static enum cf_err append_one(struct sqldb *db, const struct audit_event *ev, uint64_t *seq_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(db, &tx);
    if (err != CF_OK)
        return err;
    err = audit_append(tx, ev, seq_out);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

static void exec_raw(struct sqldb *db, const char *sql)
{
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, NULL, 0, NULL), CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
}

static size_t list(struct sqldb *db, const struct audit_filter *f, struct audit_record *out)
{
    struct sqltx *tx = NULL;
    size_t n = 0;
    assert_int_equal(sql_begin(db, &tx), CF_OK);
    assert_int_equal(audit_list(tx, f, out, &n), CF_OK);
    sql_rollback(tx);
    return n;
}

static void verify_ok(struct sqldb *db, uint64_t n_expect)
{
    uint64_t n = 12345, bad = 12345;
    assert_int_equal(audit_verify(db, &n, &bad), CF_OK);
    assert_int_equal(n, n_expect);
    assert_int_equal(bad, 12345); /* untouched */
}

static void verify_bad(struct sqldb *db, uint64_t bad_expect)
{
    uint64_t n = 12345, bad = 12345;
    assert_int_equal(audit_verify(db, &n, &bad), CF_ERR_CORRUPT);
    assert_int_equal(bad, bad_expect);
    assert_int_equal(n, 12345); /* untouched */
}

static void put_be(struct hash_state *st, uint64_t v, int bytes)
{
    uint8_t b[8];
    for (int i = bytes - 1; i >= 0; i--) {
        b[i] = (uint8_t)v;
        v >>= 8;
    }
    hash_sha256_update(st, b, (size_t)bytes);
}

/* The record's hash as audit.h specifies it, computed here from the header's words. */
static void ref_hash(const struct audit_record *r, const uint8_t prev[HASH_BYTES],
                     uint8_t out[HASH_BYTES])
{
    const char *texts[] = {r->actor,      r->action,  r->target, r->ip,
                           r->user_agent, r->outcome, r->detail};
    struct hash_state st;
    hash_sha256_begin(&st);
    hash_sha256_update(&st, "coffer-audit-v1", 15);
    put_be(&st, r->seq, 8);
    put_be(&st, (uint64_t)r->at_us, 8);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        put_be(&st, strlen(texts[i]), 4);
        hash_sha256_update(&st, texts[i], strlen(texts[i]));
    }
    hash_sha256_update(&st, prev, HASH_BYTES);
    hash_sha256_end(&st, out);
}

/* A fixed set of events for the list tests: 12 records, seq i at T0_US + i seconds. */
static void fill(struct sqldb *db)
{
    static const char *const rows[][4] = {
        {"usr_a", "auth.sign_in", "", "ok"},
        {"usr_a", "auth.sign_out", "", "ok"},
        {"usr_b", "auth.sign_in", "", "failed"},
        {"operator", "staff.role_set", "usr_a", "ok"},
        {"usr_b", "auth", "", "ok"},
        {"usr_b", "authz.check", "", "denied"},
        {"usr_a", "auth/other", "", "ok"},
        {"cli", "data.export", "usr_b", "ok"},
        {"usr_a", "auth.mfa.enable", "", "ok"},
        {"anonymous", "auth.sign_in", "", "failed"},
        {"operator", "staff.close", "usr_b", "ok"},
        {"usr_b", "auth.password.change", "", "ok"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct audit_event ev = ev_make(rows[i][0], rows[i][1], rows[i][2], rows[i][3],
                                        T0_US + (int64_t)(i + 1) * 1000000);
        uint64_t seq = 0;
        assert_int_equal(append_one(db, &ev, &seq), CF_OK);
        assert_int_equal(seq, i + 1);
    }
}

/* The seqs of a listing, as a string such as "1,3,10", for compact assertions. */
static const char *seqs_of(const struct audit_record *r, size_t n)
{
    static char buf[512];
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, i == 0 ? "%llu" : ",%llu",
                                (unsigned long long)r[i].seq);
    return buf;
}

/* Tests ---------------------------------------------------------------------------------------- */

static void test_append_and_verify(void **state)
{
    struct fx *f = *state;
    verify_ok(f->db, 0);
    uint64_t seq = 0;
    for (int i = 0; i < 3; i++) {
        struct audit_event ev = ev_make("usr_1", "auth.sign_in", "", "ok", T0_US + i);
        assert_int_equal(append_one(f->db, &ev, &seq), CF_OK);
        assert_int_equal(seq, (uint64_t)i + 1);
    }
    /* several events in one transaction */
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    for (int i = 0; i < 4; i++) {
        struct audit_event ev = ev_make("operator", "staff.role_set", "usr_1", "ok", T0_US + 10);
        ev.target = NULL;
        ev.ip = NULL;
        ev.user_agent = NULL;
        ev.detail = NULL;
        assert_int_equal(audit_append(tx, &ev, i == 0 ? NULL : &seq), CF_OK);
        if (i > 0)
            assert_int_equal(seq, (uint64_t)i + 4);
    }
    assert_int_equal(sql_commit(tx), CF_OK);
    verify_ok(f->db, 7);

    struct audit_record r[10];
    struct audit_filter all = {.limit = 10};
    assert_int_equal(list(f->db, &all, r), 7);
    assert_string_equal(seqs_of(r, 7), "1,2,3,4,5,6,7");
    assert_string_equal(r[0].actor, "usr_1");
    assert_string_equal(r[0].ip, "192.0.2.7");
    assert_string_equal(r[0].user_agent, "test/1.0");
    assert_int_equal(r[2].at_us, T0_US + 2);
    assert_string_equal(r[6].target, "");
    assert_string_equal(r[6].detail, "");
    /* the layout of audit.h, recomputed independently */
    uint8_t prev[HASH_BYTES] = {0}, want[HASH_BYTES];
    for (size_t i = 0; i < 7; i++) {
        ref_hash(&r[i], prev, want);
        assert_memory_equal(want, r[i].hash, HASH_BYTES);
        memcpy(prev, r[i].hash, HASH_BYTES);
    }
}

static void test_list_filters(void **state)
{
    struct fx *f = *state;
    fill(f->db);
    struct audit_record r[AUDIT_PAGE_MAX];
    struct audit_filter q = {.actor = "usr_a", .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "1,2,7,9");
    q = (struct audit_filter){.action = "auth.sign_in", .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "1,3,10");
    /* a prefix: not "auth", "authz.check" nor "auth/other" */
    q = (struct audit_filter){.action = "auth.", .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "1,2,3,9,10,12");
    q = (struct audit_filter){.action = "auth.mfa.", .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "9");
    q = (struct audit_filter){.action = "auth", .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "5");
    q = (struct audit_filter){.target = "usr_b", .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "8,11");
    q = (struct audit_filter){.outcome = "failed", .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "3,10");
    q = (struct audit_filter){.from_us = T0_US + 3000000, .to_us = T0_US + 6000000, .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "3,4,5");
    q = (struct audit_filter){.from_us = T0_US + 11000000, .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "11,12");
    q = (struct audit_filter){.to_us = T0_US + 2000001, .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "1,2");
    /* filters combine */
    q = (struct audit_filter){.actor = "usr_b", .action = "auth.", .outcome = "ok", .limit = 100};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "12");
    q = (struct audit_filter){.actor = "nobody", .limit = 100};
    assert_int_equal(list(f->db, &q, r), 0);
    /* empty strings mean any */
    q = (struct audit_filter){.actor = "", .action = "", .target = "", .outcome = "", .limit = 100};
    assert_int_equal(list(f->db, &q, r), 12);
    /* a cursor walks pages */
    q = (struct audit_filter){.action = "auth.", .limit = 2};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "1,2");
    q.after_seq = r[1].seq;
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "3,9");
    q.after_seq = r[1].seq;
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "10,12");
    q.after_seq = r[1].seq;
    assert_int_equal(list(f->db, &q, r), 0);
    q = (struct audit_filter){.limit = 0};
    assert_int_equal(list(f->db, &q, r), 0);
    q = (struct audit_filter){.limit = AUDIT_PAGE_MAX, .after_seq = 11};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "12");
    q = (struct audit_filter){.limit = 10, .after_seq = UINT64_MAX}; /* a client's cursor */
    assert_int_equal(list(f->db, &q, r), 0);
}

static void test_list_prefix_bytewise(void **state)
{
    struct fx *f = *state;
    /* under a linguistic collation "Auth.x" and "auth'x" sort between "auth." and "auth/" */
    static const char *const actions[] = {"Auth.sign_in", "auth'x", "auth.a", "auth-x",
                                          "auth.~",       "auth./", "auth.."};
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        struct audit_event ev = ev_make("usr_a", actions[i], "", "ok", T0_US);
        assert_int_equal(append_one(f->db, &ev, NULL), CF_OK);
    }
    struct audit_record r[8];
    struct audit_filter q = {.action = "auth.", .limit = 8};
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "3,5,6,7");
    q.action = "auth..";
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "7");
    q.action = "Auth.";
    assert_string_equal(seqs_of(r, list(f->db, &q, r)), "1");
}

static void test_list_filter_bounds(void **state)
{
    struct fx *f = *state;
    fill(f->db);
    char long_text[AUDIT_ACTION_BYTES_MAX + 2];
    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    struct audit_record r[4];
    size_t n = 99;
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    struct audit_filter q = {.actor = long_text, .limit = 4};
    assert_int_equal(audit_list(tx, &q, r, &n), CF_ERR_INVALID_FIELD);
    q = (struct audit_filter){.action = long_text, .limit = 4};
    assert_int_equal(audit_list(tx, &q, r, &n), CF_ERR_INVALID_FIELD);
    long_text[AUDIT_ACTION_BYTES_MAX] = '.';
    assert_int_equal(audit_list(tx, &q, r, &n), CF_ERR_INVALID_FIELD);
    assert_int_equal(n, 99);
    /* a value that could be SQL is only ever a parameter */
    q = (struct audit_filter){.actor = "x' OR '1'='1", .limit = 4};
    assert_int_equal(audit_list(tx, &q, r, &n), CF_OK);
    assert_int_equal(n, 0);
    sql_rollback(tx);
}

static void test_tamper_detail(void **state)
{
    struct fx *f = *state;
    fill(f->db);
    verify_ok(f->db, 12);
    exec_raw(f->db, "UPDATE id_audit SET detail = 'e' WHERE seq = 3");
    verify_bad(f->db, 3);
    exec_raw(f->db, "UPDATE id_audit SET detail = 'd' WHERE seq = 3");
    verify_ok(f->db, 12);
    exec_raw(f->db, "UPDATE id_audit SET at_us = at_us + 1 WHERE seq = 12");
    verify_bad(f->db, 12);
}

static void test_tamper_rehashed_record(void **state)
{
    struct fx *f = *state;
    fill(f->db);
    /* a record changed and re-hashed in place still breaks the next record's link */
    struct audit_record r[12];
    struct audit_filter all = {.limit = 12};
    assert_int_equal(list(f->db, &all, r), 12);
    snprintf(r[4].detail, sizeof(r[4].detail), "forged");
    uint8_t forged[HASH_BYTES];
    ref_hash(&r[4], r[3].hash, forged);
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    struct sql_value p[1] = {SQL_B(forged, HASH_BYTES)};
    assert_int_equal(
        sql_exec(tx, "UPDATE id_audit SET detail = 'forged', hash = $1 WHERE seq = 5", p, 1, NULL),
        CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    verify_bad(f->db, 6);
}

static void test_tamper_deleted_record(void **state)
{
    struct fx *f = *state;
    fill(f->db);
    exec_raw(f->db, "DELETE FROM id_audit WHERE seq = 7");
    verify_bad(f->db, 7);
}

static void test_tamper_head(void **state)
{
    struct fx *f = *state;
    fill(f->db);
    exec_raw(f->db, "UPDATE id_audit_head SET hash = (SELECT hash FROM id_audit WHERE seq = 11)");
    verify_bad(f->db, 12);
    exec_raw(f->db, "UPDATE id_audit_head SET hash = (SELECT hash FROM id_audit WHERE seq = 12)");
    verify_ok(f->db, 12);
    /* the head lags: records past it are not anchored */
    exec_raw(f->db, "UPDATE id_audit_head SET seq = 10");
    verify_bad(f->db, 11);
    /* the head runs ahead: the records it names are missing */
    exec_raw(f->db, "UPDATE id_audit_head SET seq = 14");
    verify_bad(f->db, 13);
    exec_raw(f->db, "UPDATE id_audit_head SET seq = 12");
    verify_ok(f->db, 12);
    /* the last record removed: the head names it */
    exec_raw(f->db, "DELETE FROM id_audit WHERE seq = 12");
    verify_bad(f->db, 12);
    /* no head row at all */
    exec_raw(f->db, "DELETE FROM id_audit_head");
    verify_bad(f->db, 0);
    struct audit_event ev = ev_make("usr_a", "auth.sign_in", "", "ok", T0_US);
    assert_int_equal(append_one(f->db, &ev, NULL), CF_ERR_CORRUPT);
}

static void test_rollback_leaves_nothing(void **state)
{
    struct fx *f = *state;
    struct audit_event ev = ev_make("usr_a", "auth.sign_in", "", "ok", T0_US);
    struct sqltx *tx = NULL;
    uint64_t seq = 0;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(audit_append(tx, &ev, &seq), CF_OK);
    assert_int_equal(audit_append(tx, &ev, &seq), CF_OK);
    assert_int_equal(seq, 2);
    sql_rollback(tx);
    verify_ok(f->db, 0);
    struct audit_record r[4];
    struct audit_filter all = {.limit = 4};
    assert_int_equal(list(f->db, &all, r), 0);
    assert_int_equal(append_one(f->db, &ev, &seq), CF_OK);
    assert_int_equal(seq, 1);
    verify_ok(f->db, 1);
}

/* Appends ev and expects err; nothing is written when it fails. */
static void append_expect(struct sqldb *db, const struct audit_event *ev, enum cf_err err)
{
    uint64_t seq = 777;
    assert_int_equal(append_one(db, ev, &seq), err);
    if (err != CF_OK)
        assert_int_equal(seq, 777);
}

static void test_bounds(void **state)
{
    struct fx *f = *state;
    char big[AUDIT_UA_BYTES_MAX + 64];
    struct audit_event ev = ev_make("usr_a", "auth.sign_in", "", "ok", T0_US);
    memset(big, 'x', sizeof(big));
    big[AUDIT_ACTOR_BYTES_MAX] = '\0';
    ev.actor = big;
    append_expect(f->db, &ev, CF_OK); /* exactly at the bound */
    big[AUDIT_ACTOR_BYTES_MAX] = 'x';
    big[AUDIT_ACTOR_BYTES_MAX + 1] = '\0';
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev = ev_make("", "auth.sign_in", "", "ok", T0_US);
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD); /* empty actor */
    ev = ev_make(NULL, "auth.sign_in", "", "ok", T0_US);
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev = ev_make("usr_a", "auth.sign\nin", "", "ok", T0_US);
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev = ev_make("usr_a", "", "", "ok", T0_US);
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev = ev_make("usr_a", "auth.sign_in", "usr_\xc3\xa9", "ok", T0_US);
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev = ev_make("usr_a", "auth.sign_in", "", "", T0_US);
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev = ev_make("usr_a", "auth.sign_in", "", "okokokokokokokoko", T0_US); /* 17 */
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev = ev_make("usr_a", "auth.sign_in", "", "ok", T0_US);
    ev.ip = "0000:0000:0000:0000:0000:ffff:255.255.255.2551"; /* 46 */
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev.ip = "0000:0000:0000:0000:0000:ffff:255.255.255.255"; /* 45 */
    append_expect(f->db, &ev, CF_OK);
    memset(big, 'd', sizeof(big));
    big[AUDIT_DETAIL_BYTES_MAX + 1] = '\0';
    ev.detail = big;
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev.detail = "line\nbreak";
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev.detail = "bad \xff utf-8";
    append_expect(f->db, &ev, CF_ERR_INVALID_FIELD);
    ev.detail = "caf\xc3\xa9 \xe2\x82\xac ok"; /* UTF-8 text is fine */
    append_expect(f->db, &ev, CF_OK);
    /* the user agent is cut and cleaned, not refused */
    memset(big, 'u', sizeof(big));
    big[0] = '\x01';
    big[5] = '\xc3';
    big[sizeof(big) - 1] = '\0';
    ev.detail = "";
    ev.user_agent = big;
    append_expect(f->db, &ev, CF_OK);
    struct audit_record r[8];
    struct audit_filter all = {.limit = 8};
    assert_int_equal(list(f->db, &all, r), 4);
    assert_int_equal(strlen(r[3].user_agent), AUDIT_UA_BYTES_MAX);
    assert_int_equal(r[3].user_agent[0], '?');
    assert_int_equal(r[3].user_agent[5], '?');
    assert_int_equal(r[3].user_agent[1], 'u');
    assert_string_equal(r[2].detail, "caf\xc3\xa9 \xe2\x82\xac ok");
    verify_ok(f->db, 4);
}

struct appender {
    struct sqldb *db;
    const char *actor;
    int failures;
};

static void *appender_run(void *arg)
{
    struct appender *a = arg;
    for (int i = 0; i < APPENDS_PER_THREAD; i++) {
        struct audit_event ev = ev_make(a->actor, "auth.sign_in", "", "ok", T0_US + i);
        if (append_one(a->db, &ev, NULL) != CF_OK)
            a->failures++;
    }
    return NULL;
}

static void test_concurrent_appends(void **state)
{
    struct fx *f = *state;
    pthread_t th[APPEND_THREADS];
    struct appender a[APPEND_THREADS] = {{.db = f->db, .actor = "usr_one"},
                                         {.db = f->db, .actor = "usr_two"}};
    for (int i = 0; i < APPEND_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, appender_run, &a[i]), 0);
    for (int i = 0; i < APPEND_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < APPEND_THREADS; i++)
        assert_int_equal(a[i].failures, 0);
    verify_ok(f->db, APPEND_THREADS * APPENDS_PER_THREAD);
    struct audit_record r[AUDIT_PAGE_MAX];
    struct audit_filter q = {.actor = "usr_two", .limit = AUDIT_PAGE_MAX};
    assert_int_equal(list(f->db, &q, r), APPENDS_PER_THREAD);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_append_and_verify),       FX(test_list_filters),
        FX(test_list_prefix_bytewise),    FX(test_list_filter_bounds),
        FX(test_tamper_detail),           FX(test_tamper_rehashed_record),
        FX(test_tamper_deleted_record),   FX(test_tamper_head),
        FX(test_rollback_leaves_nothing), FX(test_bounds),
        FX(test_concurrent_appends),
    };
    int failed = cmocka_run_group_tests_name("audit_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("audit_postgres", tests, NULL, NULL);
    } else {
        printf("audit_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
