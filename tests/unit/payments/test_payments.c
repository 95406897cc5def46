/*
 * test_payments.c - unit tests for the payments tables (src/payments/payments.c, catalog.c,
 * cards.c) driven through payments.h, against SQLite (a fresh file per test) and, when
 * COFFER_TEST_PG_URL is set, against PostgreSQL (a fresh database per test,
 * coffer_tp_<pid>_<n>, dropped after). Times are passed in; the vault holds one fresh key.
 *
 * Operations: a new one is PROCESSING with its times set; the same idempotency key answers the
 * stored operation and writes nothing; a note is sealed at rest under "op:<id>:note" and opens
 * on read, and a note moved to another row reads as none; the same key sent by 8 threads at
 * once makes one operation and answers it to all. Refunds reserve amount and fee on a
 * completed payment, never past it (also from 8 threads at once), and give them back when they
 * fail, once. State changes honour from_mask and keep the fields left 0/NULL/"". History filters
 * by party (the payer; the payee once completed or when the payer is outside), kind, currency
 * (either side) and [from, to), newest first, and its cursor visits every row once; stuck
 * operations are the PROCESSING ones not changed lately. Catalog: system accounts (first writer
 * wins), merchants (bank account sealed, opened on request, created time kept), fee rows (MCC, else
 * "0000", else nothing), QR codes (claimed once, also from 8 threads; expiry; release by the
 * holder; static codes never), quotes (the right user and binding only, once, before expiry), rates
 * and callback event ids. Cards: the number sealed under "card:<id>" and opened for its owner only,
 * one card per number, PAY_CARDS_MAX per customer (both also when 8 requests come at once), removal
 * erases the sealed number.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "../identity/testdb.h" /* the throwaway database: SQLite, or PostgreSQL */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "crypto/vault.h"
#include "payments/payments.h"
#include "store/sql/sql.h"

#define US_PER_S 1000000LL
#define T0_US 1700000000000000LL

#define TARGET_BYTES_MAX 1024
#define RAW_BYTES_MAX 512 /* a sealed note, bank account or card number read back raw */

/* The refund race: THREADS x ATTEMPTS refunds of REFUND_MINOR on one payment of
 * RACE_PAYMENT_MINOR, more than it can take. */
#define RACE_THREADS 8
#define RACE_ATTEMPTS 10
#define RACE_PAYMENT_MINOR 1000
#define RACE_REFUND_MINOR 17

#define NOTE "lunch with Alice at the corner cafe"
#define BANK "DE89370400440532013000"

struct fx {
    char target[TARGET_BYTES_MAX];
    char pg_name[TESTDB_NAME_BYTES]; /* "" for SQLite */
    char dir[TESTDB_DIR_BYTES];
    struct sqldb *db;
    struct vault *vault; /* key 1 only */
    struct payments *p;
};

/* Fixture -------------------------------------------------------------------------------------- */

/* A vault of one fresh key (id 1). */
static struct vault *vault_one_key(void)
{
    char *text = malloc(VAULT_KEYFILE_BYTES_MAX);
    struct vault *v = NULL;
    bool ok = text != NULL && vault_keyfile_new(NULL, text, VAULT_KEYFILE_BYTES_MAX) == CF_OK &&
              vault_load(text, strlen(text), &v) == CF_OK;
    if (text != NULL)
        hash_wipe(text, VAULT_KEYFILE_BYTES_MAX);
    free(text);
    return ok ? v : NULL;
}

/* payments_vault_fn: the one vault, for sealing (0) and for the ids it holds. */
static const struct vault *fx_vault(void *ctx, uint32_t key_id)
{
    struct fx *f = ctx;
    return key_id == 0 || vault_has_key(f->vault, key_id) ? f->vault : NULL;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    f->vault = vault_one_key();
    if (f->vault == NULL ||
        !testdb_create("tp", false, f->dir, f->pg_name, f->target, sizeof(f->target)) ||
        sqldb_open(f->target, &f->db) != CF_OK)
        return -1;
    return payments_open(f->db, fx_vault, f, &f->p) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (f->p != NULL)
        payments_close(f->p);
    if (f->db != NULL)
        sqldb_close(f->db);
    vault_free(f->vault);
    testdb_drop(f->dir, f->pg_name);
    free(f);
    return 0;
}

/* Raw reads through the SQL facade ------------------------------------------------------------- */

/* The blob of the one row `sql` ($1 = key) selects; false when it is NULL. */
static bool raw_blob(struct fx *f, const char *sql, const char *key, uint8_t out[RAW_BYTES_MAX],
                     size_t *len_out)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(key)};
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, sql, v, 1, &r), CF_OK);
    sql_rollback(tx);
    assert_int_equal(sql_rows_n(r), 1);
    size_t len = 0;
    const uint8_t *b = sql_row_blob(r, 0, 0, &len);
    bool present = b != NULL;
    assert_true(len <= RAW_BYTES_MAX);
    if (present)
        memcpy(out, b, len);
    *len_out = len;
    sql_rows_free(r);
    return present;
}

/* Runs one statement with a blob ($1) and a text ($2). */
static void raw_set_blob(struct fx *f, const char *sql, const uint8_t *b, size_t n, const char *key)
{
    struct sqltx *tx = NULL;
    struct sql_value v[] = {SQL_B(b, n), SQL_T(key)};
    int64_t changed = 0;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, v, 2, &changed), CF_OK);
    assert_int_equal(changed, 1);
    assert_int_equal(sql_commit(tx), CF_OK);
}

/* A count(*) query without parameters. */
static int64_t raw_count(struct fx *f, const char *sql)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, sql, NULL, 0, &r), CF_OK);
    sql_rollback(tx);
    int64_t n = sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return n;
}

static bool mem_contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; k <= n && i <= n - k; i++) {
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    }
    return false;
}

/* Opens a sealed value with the vault directly; false when it does not open under aad. */
static bool raw_open(struct fx *f, const uint8_t *ct, size_t n, const char *aad, char *out,
                     size_t out_bytes)
{
    size_t len = 0;
    if (vault_open(f->vault, ct, n, aad, strlen(aad), (uint8_t *)out, out_bytes - 1, &len) != CF_OK)
        return false;
    out[len] = '\0';
    return true;
}

/* Operations: helpers -------------------------------------------------------------------------- */

static void op_init(struct pay_op *op, enum pay_kind kind, const char *payer, const char *payee,
                    int64_t amount_minor, const char *currency, int64_t fee_minor)
{
    memset(op, 0, sizeof(*op));
    op->kind = (uint8_t)kind;
    payments_op_id_new(kind, op->id);
    snprintf(op->idem, sizeof(op->idem), "test:%s", op->id);
    hash_sha256(op->id, strlen(op->id), op->request_hash);
    snprintf(op->payer, sizeof(op->payer), "%s", payer);
    snprintf(op->payee, sizeof(op->payee), "%s", payee);
    op->payer_account = payer[0] != '\0' ? 11 : 0;
    op->payee_account = payee[0] != '\0' ? 12 : 0;
    op->amount_minor = amount_minor;
    snprintf(op->currency, sizeof(op->currency), "%s", currency);
    op->fee_minor = fee_minor;
    op->credit_minor = amount_minor;
    snprintf(op->credit_currency, sizeof(op->credit_currency), "%s", currency);
    op->payee_max_balance_minor = -1; /* none, as api_risk_limits leaves it */
}

static void op_begin_ok(struct fx *f, const struct pay_op *op, int64_t now_us, struct pay_op *out)
{
    bool existed = true;
    assert_int_equal(payments_op_begin(f->p, op, now_us, out, &existed), CF_OK);
    assert_false(existed);
    assert_string_equal(out->id, op->id);
}

static void op_set_status(struct fx *f, const char *id, uint8_t from, uint8_t to, int64_t now_us)
{
    struct pay_op_update u = {.status = to, .ledger_seq = to == PAY_STATUS_COMPLETED ? 77 : 0};
    assert_int_equal(payments_op_update(f->p, id, 1u << from, &u, now_us), CF_OK);
}

/* A completed payment usr_a -> mer_m of amount and fee (EUR). */
static void payment_completed(struct fx *f, int64_t amount_minor, int64_t fee_minor,
                              struct pay_op *out)
{
    struct pay_op op;
    op_init(&op, PAY_KIND_PAYMENT, "usr_a", "mer_m", amount_minor, "EUR", fee_minor);
    op_begin_ok(f, &op, T0_US, out);
    op_set_status(f, op.id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, T0_US + 1);
    assert_int_equal(payments_op_get(f->p, op.id, out), CF_OK);
    assert_int_equal(out->status, PAY_STATUS_COMPLETED);
}

/* A refund of amount (the merchant's currency) that asks for the fee share back when
 * return_fee; payments_op_begin prices the shares. */
static void refund_init(struct pay_op *op, const struct pay_op *parent, int64_t amount_minor,
                        bool return_fee)
{
    op_init(op, PAY_KIND_REFUND, parent->payee, parent->payer, amount_minor,
            parent->credit_currency, 0);
    snprintf(op->credit_currency, sizeof(op->credit_currency), "%s", parent->currency);
    op->return_fee = return_fee;
    op->fee_minor = 999999; /* ignored: priced from the parent */
    snprintf(op->parent_id, sizeof(op->parent_id), "%s", parent->id);
}

static enum cf_err refund_begin(struct fx *f, const struct pay_op *op, int64_t now_us)
{
    struct pay_op out;
    bool existed = false;
    enum cf_err err = payments_op_begin(f->p, op, now_us, &out, &existed);
    if (err == CF_OK)
        assert_false(existed);
    return err;
}

static void parent_expect(struct fx *f, const char *id, int64_t refunded_minor,
                          int64_t fee_returned_minor)
{
    struct pay_op op;
    assert_int_equal(payments_op_get(f->p, id, &op), CF_OK);
    assert_int_equal(op.refunded_minor, refunded_minor);
    assert_int_equal(op.fee_returned_minor, fee_returned_minor);
}

/* Operations: begin ---------------------------------------------------------------------------- */

static void test_op_begin_new_and_replay(void **state)
{
    struct fx *f = *state;
    struct pay_op op, out, again;
    op_init(&op, PAY_KIND_SEND, "usr_a", "usr_b", 2500, "EUR", 25);
    op.status = PAY_STATUS_COMPLETED; /* ignored */
    snprintf(op.reference, sizeof(op.reference), "order-17");
    snprintf(op.instrument, sizeof(op.instrument), "bank");
    op_begin_ok(f, &op, T0_US, &out);
    assert_int_equal(out.status, PAY_STATUS_PROCESSING);
    assert_int_equal(out.kind, PAY_KIND_SEND);
    assert_int_equal(out.created_at_us, T0_US);
    assert_int_equal(out.updated_at_us, T0_US);
    assert_true(out.row > 0);
    assert_string_equal(out.idem, op.idem);
    assert_memory_equal(out.request_hash, op.request_hash, HASH_BYTES);
    assert_string_equal(out.payer, "usr_a");
    assert_string_equal(out.payee, "usr_b");
    assert_int_equal(out.payer_account, 11);
    assert_int_equal(out.payee_account, 12);
    assert_int_equal(out.amount_minor, 2500);
    assert_int_equal(out.fee_minor, 25);
    assert_string_equal(out.currency, "EUR");
    assert_string_equal(out.reference, "order-17");
    assert_string_equal(out.instrument, "bank");
    assert_int_equal(out.refunded_minor, 0);
    assert_int_equal(out.ledger_seq, 0);
    assert_string_equal(out.error, "");
    assert_int_equal(out.payee_max_balance_minor, -1);
    assert_string_equal(pay_kind_name(out.kind), "send");

    /* the same key, another id and amount: the stored operation, nothing written */
    struct pay_op replay = op;
    payments_op_id_new(PAY_KIND_SEND, replay.id);
    replay.amount_minor = 9999;
    bool existed = false;
    assert_int_equal(payments_op_begin(f->p, &replay, T0_US + 5 * US_PER_S, &again, &existed),
                     CF_OK);
    assert_true(existed);
    assert_string_equal(again.id, op.id);
    assert_int_equal(again.amount_minor, 2500);
    assert_int_equal(again.row, out.row);
    assert_int_equal(again.updated_at_us, T0_US);
    assert_int_equal(payments_op_get(f->p, replay.id, &again), CF_ERR_NOT_FOUND);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM pay_ops"), 1);
    assert_int_equal(payments_op_by_idem(f->p, op.idem, &again), CF_OK);
    assert_string_equal(again.id, op.id);
    assert_int_equal(payments_op_by_idem(f->p, "test:none", &again), CF_ERR_NOT_FOUND);
}

static void test_op_note_sealed(void **state)
{
    struct fx *f = *state;
    struct pay_op a, b, plain, out;
    op_init(&a, PAY_KIND_SEND, "usr_a", "usr_b", 100, "EUR", 0);
    snprintf(a.note, sizeof(a.note), "%s", NOTE);
    op_init(&b, PAY_KIND_SEND, "usr_b", "usr_a", 200, "EUR", 0);
    snprintf(b.note, sizeof(b.note), "rent share");
    op_init(&plain, PAY_KIND_SEND, "usr_b", "usr_a", 300, "EUR", 0);
    op_begin_ok(f, &a, T0_US, &out);
    assert_string_equal(out.note, NOTE);
    op_begin_ok(f, &b, T0_US, &out);
    op_begin_ok(f, &plain, T0_US, &out);
    assert_string_equal(out.note, "");

    uint8_t raw[RAW_BYTES_MAX];
    size_t len = 0;
    assert_true(raw_blob(f, "SELECT note_sealed FROM pay_ops WHERE id = $1", a.id, raw, &len));
    assert_true(len >= strlen(NOTE) + VAULT_OVERHEAD_BYTES);
    assert_false(mem_contains(raw, len, NOTE));
    assert_false(mem_contains(raw, len, "Alice"));
    char aad[PAY_ID_BYTES_MAX + 16], text[RAW_BYTES_MAX];
    snprintf(aad, sizeof(aad), "op:%s:note", a.id);
    assert_true(raw_open(f, raw, len, aad, text, sizeof(text)));
    assert_string_equal(text, NOTE);
    assert_false(raw_blob(f, "SELECT note_sealed FROM pay_ops WHERE id = $1", plain.id, raw,
                          &len)); /* no note: NULL */

    assert_int_equal(payments_op_get(f->p, a.id, &out), CF_OK);
    assert_string_equal(out.note, NOTE);
    assert_int_equal(payments_op_get(f->p, b.id, &out), CF_OK);
    assert_string_equal(out.note, "rent share");

    /* a's sealed note moved onto b's row does not open there */
    assert_true(raw_blob(f, "SELECT note_sealed FROM pay_ops WHERE id = $1", a.id, raw, &len));
    raw_set_blob(f, "UPDATE pay_ops SET note_sealed = $1 WHERE id = $2", raw, len, b.id);
    assert_int_equal(payments_op_get(f->p, b.id, &out), CF_OK);
    assert_string_equal(out.note, "");
    assert_int_equal(out.amount_minor, 200);
    assert_int_equal(payments_op_get(f->p, a.id, &out), CF_OK);
    assert_string_equal(out.note, NOTE);
}

struct idem_worker {
    struct fx *f;
    const struct pay_op *op;
    pthread_barrier_t *start;
    enum cf_err err;
    bool existed;
    char id[PAY_ID_BYTES_MAX];
};

static void *idem_worker_run(void *arg)
{
    struct idem_worker *w = arg;
    struct pay_op op = *w->op, out;
    payments_op_id_new(PAY_KIND_SEND, op.id); /* each request makes its own id */
    pthread_barrier_wait(w->start);
    w->err = payments_op_begin(w->f->p, &op, T0_US, &out, &w->existed);
    if (w->err == CF_OK)
        memcpy(w->id, out.id, PAY_ID_BYTES_MAX);
    return NULL;
}

/* The same key from several requests at once: one operation, every caller answered with it. */
static void test_op_begin_same_key_concurrent(void **state)
{
    struct fx *f = *state;
    struct pay_op op;
    op_init(&op, PAY_KIND_SEND, "usr_a", "usr_b", 700, "EUR", 0);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
    pthread_t th[RACE_THREADS];
    struct idem_worker w[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct idem_worker){.f = f, .op = &op, .start = &start};
        assert_int_equal(pthread_create(&th[i], NULL, idem_worker_run, &w[i]), 0);
    }
    int made = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].err, CF_OK);
        made += w[i].existed ? 0 : 1;
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(made, 1);
    for (int i = 1; i < RACE_THREADS; i++)
        assert_string_equal(w[i].id, w[0].id);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM pay_ops"), 1);
}

/* Refunds -------------------------------------------------------------------------------------- */

static void test_refund_reserve(void **state)
{
    struct fx *f = *state;
    struct pay_op pay, r1, r2, r3, r4, r5, out;
    payment_completed(f, 10000, 300, &pay);
    parent_expect(f, pay.id, 0, 0);

    refund_init(&r1, &pay, 4000, true);
    op_begin_ok(f, &r1, T0_US + 10, &out);
    assert_int_equal(out.status, PAY_STATUS_PROCESSING);
    assert_string_equal(out.parent_id, pay.id);
    assert_int_equal(out.fee_minor, 120); /* floor(300 * 4000 / 10000), not the caller's */
    assert_int_equal(out.credit_minor, 4000);
    parent_expect(f, pay.id, 4000, 120);

    /* past the amount left (6000): refused, nothing written */
    refund_init(&r2, &pay, 6001, false);
    assert_int_equal(refund_begin(f, &r2, T0_US + 11), CF_ERR_REFUND_EXCEEDS);
    assert_int_equal(payments_op_get(f->p, r2.id, &out), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_op_by_idem(f->p, r2.idem, &out), CF_ERR_NOT_FOUND);
    parent_expect(f, pay.id, 4000, 120);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM pay_ops"), 2);
    /* a refund that does not ask for the fee returns none */
    refund_init(&r3, &pay, 1000, false);
    op_begin_ok(f, &r3, T0_US + 12, &out);
    assert_int_equal(out.fee_minor, 0);
    parent_expect(f, pay.id, 5000, 120);

    /* exactly the rest fits, with the rest of the fee; then nothing more, not one minor unit */
    refund_init(&r4, &pay, 5000, true);
    op_begin_ok(f, &r4, T0_US + 13, &out);
    assert_int_equal(out.fee_minor, 180);
    parent_expect(f, pay.id, 10000, 300);
    refund_init(&r5, &pay, 1, true);
    assert_int_equal(refund_begin(f, &r5, T0_US + 14), CF_ERR_REFUND_EXCEEDS);
    parent_expect(f, pay.id, 10000, 300);

    /* a refund replayed with its key answers the stored one and reserves nothing more */
    bool existed = false;
    assert_int_equal(payments_op_begin(f->p, &r4, T0_US + 15, &out, &existed), CF_OK);
    assert_true(existed);
    parent_expect(f, pay.id, 10000, 300);
}

static void test_refund_parent_state(void **state)
{
    struct fx *f = *state;
    struct pay_op pay, send, r, out;
    /* a payment still processing */
    op_init(&pay, PAY_KIND_PAYMENT, "usr_a", "mer_m", 5000, "EUR", 50);
    op_begin_ok(f, &pay, T0_US, &out);
    refund_init(&r, &pay, 100, false);
    assert_int_equal(refund_begin(f, &r, T0_US + 1), CF_ERR_CONFLICT);
    /* a payment that failed */
    op_set_status(f, pay.id, PAY_STATUS_PROCESSING, PAY_STATUS_FAILED, T0_US + 2);
    refund_init(&r, &pay, 100, false);
    assert_int_equal(refund_begin(f, &r, T0_US + 3), CF_ERR_CONFLICT);
    parent_expect(f, pay.id, 0, 0);
    /* a completed operation that is not a payment */
    op_init(&send, PAY_KIND_SEND, "usr_a", "usr_b", 5000, "EUR", 0);
    op_begin_ok(f, &send, T0_US, &out);
    op_set_status(f, send.id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, T0_US + 4);
    refund_init(&r, &send, 100, false);
    assert_int_equal(refund_begin(f, &r, T0_US + 5), CF_ERR_CONFLICT);
    parent_expect(f, send.id, 0, 0);
    /* an unknown parent */
    refund_init(&r, &send, 100, false);
    snprintf(r.parent_id, sizeof(r.parent_id), "pay_0000000000001");
    assert_int_not_equal(refund_begin(f, &r, T0_US + 6), CF_OK);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM pay_ops"), 2);
}

static void test_refund_failed_gives_back(void **state)
{
    struct fx *f = *state;
    struct pay_op pay, r1, r2, r3, out;
    payment_completed(f, 1000, 30, &pay);
    refund_init(&r1, &pay, 700, true);
    op_begin_ok(f, &r1, T0_US + 10, &out);
    assert_int_equal(out.fee_minor, 21);
    refund_init(&r2, &pay, 300, true);
    op_begin_ok(f, &r2, T0_US + 11, &out);
    assert_int_equal(out.fee_minor, 9); /* the rest */
    parent_expect(f, pay.id, 1000, 30);

    /* r1 fails: its share comes back and can be refunded again */
    struct pay_op_update u = {.status = PAY_STATUS_FAILED, .error = "card_declined"};
    assert_int_equal(payments_op_update(f->p, r1.id, 1u << PAY_STATUS_PROCESSING, &u, T0_US + 12),
                     CF_OK);
    parent_expect(f, pay.id, 300, 9);
    /* r2 completes: its share stays */
    op_set_status(f, r2.id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, T0_US + 13);
    parent_expect(f, pay.id, 300, 9);
    refund_init(&r3, &pay, 700, true);
    op_begin_ok(f, &r3, T0_US + 14, &out);
    assert_int_equal(out.fee_minor, 21);
    parent_expect(f, pay.id, 1000, 30);

    /* a late answer for r1 changes nothing */
    assert_int_equal(payments_op_update(f->p, r1.id, 1u << PAY_STATUS_PROCESSING, &u, T0_US + 15),
                     CF_ERR_CONFLICT);
    parent_expect(f, pay.id, 1000, 30);
}

/* A cross-currency payment: the customer paid 1000 USD cents, the merchant got 917 EUR cents
 * (fee 30, spread 12, both EUR). Refunds in EUR give back USD and spread as cumulative floors
 * that sum exactly to what was paid. */
static void test_refund_cross_currency(void **state)
{
    struct fx *f = *state;
    struct pay_op op, pay, r1, r2, r3, out;
    op_init(&op, PAY_KIND_PAYMENT, "usr_a", "mer_m", 1000, "USD", 30);
    op.credit_minor = 917;
    snprintf(op.credit_currency, sizeof(op.credit_currency), "EUR");
    op.spread_minor = 12;
    op_begin_ok(f, &op, T0_US, &pay);
    assert_int_equal(pay.spread_minor, 12);
    op_set_status(f, op.id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, T0_US + 1);
    assert_int_equal(payments_op_get(f->p, op.id, &pay), CF_OK);

    refund_init(&r1, &pay, 300, true);
    assert_string_equal(r1.currency, "EUR");
    op_begin_ok(f, &r1, T0_US + 2, &out);
    assert_int_equal(out.credit_minor, 327); /* floor(1000 * 300 / 917) */
    assert_string_equal(out.credit_currency, "USD");
    assert_int_equal(out.spread_minor, 3); /* floor(12 * 300 / 917) */
    assert_int_equal(out.fee_minor, 9);    /* floor(30 * 300 / 917) */
    refund_init(&r2, &pay, 300, true);
    op_begin_ok(f, &r2, T0_US + 3, &out);
    assert_int_equal(out.credit_minor, 327); /* floor(1000 * 600 / 917) - 327 */
    assert_int_equal(out.spread_minor, 4);
    /* past what the merchant received (917 EUR, not the 1000 USD paid) */
    refund_init(&r3, &pay, 318, true);
    assert_int_equal(refund_begin(f, &r3, T0_US + 4), CF_ERR_REFUND_EXCEEDS);
    /* r2 fails and gives back; the rest then comes back exactly */
    op_set_status(f, r2.id, PAY_STATUS_PROCESSING, PAY_STATUS_FAILED, T0_US + 5);
    refund_init(&r3, &pay, 617, true);
    op_begin_ok(f, &r3, T0_US + 6, &out);
    assert_int_equal(out.credit_minor, 1000 - 327);
    assert_int_equal(out.spread_minor, 12 - 3);
    assert_int_equal(out.fee_minor, 30 - 9);
    assert_int_equal(payments_op_get(f->p, pay.id, &out), CF_OK);
    assert_int_equal(out.refunded_minor, 917);
    assert_int_equal(out.debit_returned_minor, 1000);
    assert_int_equal(out.spread_returned_minor, 12);
    assert_int_equal(out.fee_returned_minor, 30);
}

/* An operation already FAILED that is recorded FAILED again (a caller whose from_mask allows
 * FAILED, e.g. to record an error code) did not "move to FAILED": its parent must not be given
 * the refund back a second time, or refunded_minor falls below the refunds that stand and
 * refunds could pass the captured amount. */
static void test_refund_failed_twice_gives_back_once(void **state)
{
    struct fx *f = *state;
    struct pay_op pay, r1, r2, out;
    payment_completed(f, 1000, 0, &pay);
    refund_init(&r1, &pay, 600, false);
    op_begin_ok(f, &r1, T0_US + 10, &out);
    refund_init(&r2, &pay, 400, false);
    op_begin_ok(f, &r2, T0_US + 11, &out);
    op_set_status(f, r2.id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, T0_US + 12);
    op_set_status(f, r1.id, PAY_STATUS_PROCESSING, PAY_STATUS_FAILED, T0_US + 13);
    parent_expect(f, pay.id, 400, 0);
    struct pay_op_update u = {.status = PAY_STATUS_FAILED, .error = "timeout"};
    assert_int_equal(payments_op_update(f->p, r1.id, 1u << PAY_STATUS_FAILED, &u, T0_US + 14),
                     CF_OK);
    parent_expect(f, pay.id, 400, 0);
}

struct refund_worker {
    struct fx *f;
    const struct pay_op *parent;
    pthread_barrier_t *start;
    int ok, exceeds, other;
    enum cf_err other_err;
};

static void *refund_worker_run(void *arg)
{
    struct refund_worker *w = arg;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < RACE_ATTEMPTS; i++) {
        struct pay_op op, out;
        bool existed = false;
        refund_init(&op, w->parent, RACE_REFUND_MINOR, true);
        enum cf_err err = payments_op_begin(w->f->p, &op, T0_US + 100, &out, &existed);
        if (err == CF_OK && !existed)
            w->ok++;
        else if (err == CF_ERR_REFUND_EXCEEDS)
            w->exceeds++;
        else {
            w->other++;
            w->other_err = err;
        }
    }
    return NULL;
}

static void test_refund_concurrent(void **state)
{
    struct fx *f = *state;
    struct pay_op pay;
    payment_completed(f, RACE_PAYMENT_MINOR, 100, &pay);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
    pthread_t th[RACE_THREADS];
    struct refund_worker w[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct refund_worker){.f = f, .parent = &pay, .start = &start};
        assert_int_equal(pthread_create(&th[i], NULL, refund_worker_run, &w[i]), 0);
    }
    int ok = 0, exceeds = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].other_err, CF_OK);
        assert_int_equal(w[i].other, 0);
        ok += w[i].ok;
        exceeds += w[i].exceeds;
    }
    pthread_barrier_destroy(&start);
    /* every refund that fits was taken, and no more */
    assert_int_equal(ok, RACE_PAYMENT_MINOR / RACE_REFUND_MINOR);
    assert_int_equal(ok + exceeds, RACE_THREADS * RACE_ATTEMPTS);
    /* the fee shares are cumulative floors of what was refunded, priced under the lock */
    parent_expect(f, pay.id, (int64_t)ok * RACE_REFUND_MINOR,
                  (int64_t)ok * RACE_REFUND_MINOR * 100 / RACE_PAYMENT_MINOR);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM pay_ops WHERE kind = 5"), ok);
    assert_true(raw_count(f, "SELECT COALESCE(SUM(amount_minor), 0) FROM pay_ops WHERE kind = 5") <=
                RACE_PAYMENT_MINOR);
}

/* State changes -------------------------------------------------------------------------------- */

static void test_op_update(void **state)
{
    struct fx *f = *state;
    struct pay_op op, out;
    op_init(&op, PAY_KIND_TOPUP, "", "usr_a", 5000, "EUR", 0);
    op_begin_ok(f, &op, T0_US, &out);

    /* not in from_mask: refused, nothing changed */
    struct pay_op_update u = {.status = PAY_STATUS_COMPLETED, .ledger_seq = 9};
    assert_int_equal(payments_op_update(f->p, op.id, 1u << PAY_STATUS_PENDING, &u, T0_US + 1),
                     CF_ERR_CONFLICT);
    assert_int_equal(payments_op_get(f->p, op.id, &out), CF_OK);
    assert_int_equal(out.status, PAY_STATUS_PROCESSING);
    assert_int_equal(out.ledger_seq, 0);
    assert_int_equal(out.updated_at_us, T0_US);

    /* PROCESSING -> PENDING with a gateway reference and a hold */
    u = (struct pay_op_update){.status = PAY_STATUS_PENDING, .hold_seq = 7, .gateway_ref = "gw_1"};
    assert_int_equal(
        payments_op_update(f->p, op.id,
                           (1u << PAY_STATUS_PROCESSING) | (1u << PAY_STATUS_ACTION_REQUIRED), &u,
                           T0_US + 2),
        CF_OK);
    assert_int_equal(payments_op_by_gateway_ref(f->p, "gw_1", &out), CF_OK);
    assert_string_equal(out.id, op.id);
    assert_int_equal(out.status, PAY_STATUS_PENDING);
    assert_int_equal(out.hold_seq, 7);
    assert_int_equal(out.updated_at_us, T0_US + 2);
    assert_int_equal(out.created_at_us, T0_US);
    assert_int_equal(payments_op_by_gateway_ref(f->p, "gw_2", &out), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_op_by_gateway_ref(f->p, "", &out), CF_ERR_NOT_FOUND);

    /* PENDING -> COMPLETED: fields left 0/NULL are kept */
    u = (struct pay_op_update){.status = PAY_STATUS_COMPLETED, .ledger_seq = 42};
    assert_int_equal(payments_op_update(f->p, op.id, 1u << PAY_STATUS_PENDING, &u, T0_US + 3),
                     CF_OK);
    assert_int_equal(payments_op_get(f->p, op.id, &out), CF_OK);
    assert_int_equal(out.status, PAY_STATUS_COMPLETED);
    assert_int_equal(out.ledger_seq, 42);
    assert_int_equal(out.hold_seq, 7);
    assert_string_equal(out.gateway_ref, "gw_1");
    assert_string_equal(out.error, "");
    assert_int_equal(out.amount_minor, 5000);

    /* a late decline: refused, nothing changed */
    u = (struct pay_op_update){
        .status = PAY_STATUS_FAILED, .error = "card_declined", .gateway_ref = "gw_9"};
    assert_int_equal(payments_op_update(f->p, op.id,
                                        (1u << PAY_STATUS_PROCESSING) | (1u << PAY_STATUS_PENDING),
                                        &u, T0_US + 4),
                     CF_ERR_CONFLICT);
    assert_int_equal(payments_op_get(f->p, op.id, &out), CF_OK);
    assert_int_equal(out.status, PAY_STATUS_COMPLETED);
    assert_string_equal(out.error, "");
    assert_string_equal(out.gateway_ref, "gw_1");
    assert_int_equal(out.updated_at_us, T0_US + 3);

    assert_int_equal(
        payments_op_update(f->p, "top_0000000000001", 1u << PAY_STATUS_PROCESSING, &u, T0_US + 5),
        CF_ERR_NOT_FOUND);
}

/* payments.h: "fields left 0, NULL or \"\" are kept" - an empty text as well as NULL. */
static void test_op_update_empty_text_kept(void **state)
{
    struct fx *f = *state;
    struct pay_op op, out;
    op_init(&op, PAY_KIND_WITHDRAWAL, "usr_a", "", 5000, "EUR", 0);
    op_begin_ok(f, &op, T0_US, &out);
    struct pay_op_update u = {
        .status = PAY_STATUS_PENDING, .gateway_ref = "gw_7", .error = "slow_bank"};
    assert_int_equal(payments_op_update(f->p, op.id, 1u << PAY_STATUS_PROCESSING, &u, T0_US + 1),
                     CF_OK);
    u = (struct pay_op_update){.status = PAY_STATUS_COMPLETED, .gateway_ref = "", .error = ""};
    assert_int_equal(payments_op_update(f->p, op.id, 1u << PAY_STATUS_PENDING, &u, T0_US + 2),
                     CF_OK);
    assert_int_equal(payments_op_get(f->p, op.id, &out), CF_OK);
    assert_int_equal(out.status, PAY_STATUS_COMPLETED);
    assert_string_equal(out.gateway_ref, "gw_7");
    assert_string_equal(out.error, "slow_bank");
}

/* History -------------------------------------------------------------------------------------- */

/* Lists with f and checks the ids, in order (NULL-terminated). */
static void list_expect(struct fx *f, const struct pay_filter *flt, const char *const *ids)
{
    struct pay_op *out = calloc(PAY_LIST_MAX, sizeof(*out));
    assert_non_null(out);
    size_t n = 99, want = 0;
    while (ids[want] != NULL)
        want++;
    assert_int_equal(payments_ops_list(f->p, flt, out, PAY_LIST_MAX, &n), CF_OK);
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(out[i].id, ids[i]);
    free(out);
}

/* payments_ops_list lists exactly what payments_op_visible admits, for each of ops[0..n). */
static void list_agrees_visible(struct fx *f, const char *party, const struct pay_op *ops, size_t n)
{
    struct pay_op *out = calloc(PAY_LIST_MAX, sizeof(*out));
    assert_non_null(out);
    size_t listed = 0;
    struct pay_filter flt = {.party = party};
    assert_int_equal(payments_ops_list(f->p, &flt, out, PAY_LIST_MAX, &listed), CF_OK);
    for (size_t i = 0; i < n; i++) {
        struct pay_op now;
        assert_int_equal(payments_op_get(f->p, ops[i].id, &now), CF_OK);
        bool in = false;
        for (size_t j = 0; j < listed; j++)
            in = in || strcmp(out[j].id, ops[i].id) == 0;
        assert_int_equal(in, payments_op_visible(&now, party));
    }
    free(out);
}

/* Who sees what (payments_op_visible): the payer always; the payee once completed, or whatever
 * its state when the payer is outside Coffer. */
static void test_ops_list_filters(void **state)
{
    struct fx *f = *state;
    struct pay_op o[6], out;
    op_init(&o[0], PAY_KIND_SEND, "usr_a", "usr_b", 100, "EUR", 0);
    op_init(&o[1], PAY_KIND_PAYMENT, "usr_a", "mer_m", 200, "EUR", 2);
    op_init(&o[2], PAY_KIND_TOPUP, "", "usr_a", 300, "USD", 0);
    op_init(&o[3], PAY_KIND_CONVERSION, "usr_a", "usr_a", 400, "EUR", 0);
    snprintf(o[3].credit_currency, sizeof(o[3].credit_currency), "USD");
    o[3].credit_minor = 436;
    op_init(&o[4], PAY_KIND_SEND, "usr_b", "usr_a", 500, "GBP", 0);
    op_init(&o[5], PAY_KIND_SEND, "usr_b", "mer_m", 600, "EUR", 0);
    for (int i = 0; i < 6; i++)
        op_begin_ok(f, &o[i], T0_US + i * 10 * US_PER_S, &out);
    const int64_t t = T0_US + 100 * US_PER_S;
    op_set_status(f, o[0].id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, t);
    op_set_status(f, o[1].id, PAY_STATUS_PROCESSING, PAY_STATUS_FAILED, t);
    op_set_status(f, o[3].id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, t);
    op_set_status(f, o[5].id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, t);

    /* o[4] (usr_b -> usr_a) still processing: its payee does not see it yet; the failed o[1]
     * is its payer's only; the top-up o[2] is its customer's in any state */
    struct pay_filter flt = {.party = "usr_a"};
    list_expect(f, &flt, (const char *const[]){o[3].id, o[2].id, o[1].id, o[0].id, NULL});
    flt.party = "usr_b";
    list_expect(f, &flt, (const char *const[]){o[5].id, o[4].id, o[0].id, NULL});
    flt.party = "mer_m";
    list_expect(f, &flt, (const char *const[]){o[5].id, NULL});
    flt.party = "usr_nobody";
    list_expect(f, &flt, (const char *const[]){NULL});
    list_agrees_visible(f, "usr_a", o, 6);
    list_agrees_visible(f, "usr_b", o, 6);
    list_agrees_visible(f, "mer_m", o, 6);
    op_set_status(f, o[4].id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, t);
    flt.party = "usr_a";
    list_expect(f, &flt, (const char *const[]){o[4].id, o[3].id, o[2].id, o[1].id, o[0].id, NULL});

    flt = (struct pay_filter){.party = "usr_a", .kind = PAY_KIND_SEND};
    list_expect(f, &flt, (const char *const[]){o[4].id, o[0].id, NULL});
    flt = (struct pay_filter){.party = "usr_a", .currency = "USD"}; /* either side */
    list_expect(f, &flt, (const char *const[]){o[3].id, o[2].id, NULL});
    flt = (struct pay_filter){.party = "usr_a", .currency = "EUR"};
    list_expect(f, &flt, (const char *const[]){o[3].id, o[1].id, o[0].id, NULL});
    flt = (struct pay_filter){.party = "usr_a", .currency = "EUR", .kind = PAY_KIND_PAYMENT};
    list_expect(f, &flt, (const char *const[]){o[1].id, NULL});
    /* [from, to): o[1] at from is in, o[4] at to is out */
    flt = (struct pay_filter){
        .party = "usr_a", .from_us = T0_US + 10 * US_PER_S, .to_us = T0_US + 40 * US_PER_S};
    list_expect(f, &flt, (const char *const[]){o[3].id, o[2].id, o[1].id, NULL});
    flt = (struct pay_filter){.party = "usr_a", .from_us = T0_US + 41 * US_PER_S};
    list_expect(f, &flt, (const char *const[]){NULL});
    /* the cursor: rows older than o[3] */
    assert_int_equal(payments_op_get(f->p, o[3].id, &out), CF_OK);
    flt = (struct pay_filter){.party = "usr_a", .before_row = out.row};
    list_expect(f, &flt, (const char *const[]){o[2].id, o[1].id, o[0].id, NULL});
}

#define PAGE_OPS 23
#define PAGE_SIZE 5

static void test_ops_list_pages(void **state)
{
    struct fx *f = *state;
    char ids[PAGE_OPS][PAY_ID_BYTES_MAX];
    struct pay_op op, out;
    for (int i = 0; i < PAGE_OPS; i++) {
        /* usr_a pays and is paid in turn, among operations of others */
        op_init(&op, PAY_KIND_SEND, i % 2 == 0 ? "usr_a" : "usr_c", i % 2 == 0 ? "usr_c" : "usr_a",
                100 + i, "EUR", 0);
        op_begin_ok(f, &op, T0_US + i, &out);
        op_set_status(f, op.id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, T0_US + i);
        memcpy(ids[i], op.id, PAY_ID_BYTES_MAX);
        op_init(&op, PAY_KIND_SEND, "usr_c", "usr_d", 1, "EUR", 0);
        op_begin_ok(f, &op, T0_US + i, &out);
    }
    struct pay_op page[PAGE_SIZE];
    struct pay_filter flt = {.party = "usr_a"};
    int seen = 0, pages = 0;
    uint64_t last_row = UINT64_MAX;
    for (;;) {
        size_t n = 99;
        assert_int_equal(payments_ops_list(f->p, &flt, page, PAGE_SIZE, &n), CF_OK);
        assert_true(n <= PAGE_SIZE);
        pages++;
        for (size_t i = 0; i < n; i++) {
            assert_true(page[i].row < last_row); /* newest first, never twice */
            last_row = page[i].row;
            assert_true(seen < PAGE_OPS);
            assert_string_equal(page[i].id, ids[PAGE_OPS - 1 - seen]);
            seen++;
        }
        if (n < PAGE_SIZE)
            break;
        flt.before_row = page[n - 1].row;
    }
    assert_int_equal(seen, PAGE_OPS);
    assert_int_equal(pages, PAGE_OPS / PAGE_SIZE + 1);
}

static void test_ops_stuck(void **state)
{
    struct fx *f = *state;
    struct pay_op s[4], out[PAY_LIST_MAX];
    for (int i = 0; i < 4; i++) {
        op_init(&s[i], PAY_KIND_TOPUP, "", "usr_a", 100 + i, "EUR", 0);
        op_begin_ok(f, &s[i], T0_US + i * 10 * US_PER_S, &out[0]);
    }
    op_set_status(f, s[1].id, PAY_STATUS_PROCESSING, PAY_STATUS_COMPLETED, T0_US + 15 * US_PER_S);
    op_set_status(f, s[3].id, PAY_STATUS_PROCESSING, PAY_STATUS_PENDING, T0_US + 35 * US_PER_S);
    size_t n = 99;
    assert_int_equal(payments_ops_stuck(f->p, T0_US + 15 * US_PER_S, 0, out, PAY_LIST_MAX, &n),
                     CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].id, s[0].id);
    assert_int_equal(payments_ops_stuck(f->p, T0_US + 100 * US_PER_S, 0, out, PAY_LIST_MAX, &n),
                     CF_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].id, s[0].id);
    assert_string_equal(out[1].id, s[2].id);
    assert_int_equal(out[1].status, PAY_STATUS_PROCESSING);
    assert_int_equal(payments_ops_stuck(f->p, T0_US + 100 * US_PER_S, 0, out, 1, &n), CF_OK);
    assert_int_equal(n, 1);
    /* the next page starts after the last row seen */
    assert_int_equal(payments_ops_stuck(f->p, T0_US + 100 * US_PER_S, out[0].row, out, 1, &n),
                     CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].id, s[2].id);
    assert_int_equal(payments_ops_stuck(f->p, T0_US + 100 * US_PER_S, out[0].row, out, 1, &n),
                     CF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(payments_ops_stuck(f->p, T0_US, 0, out, PAY_LIST_MAX, &n), CF_OK);
    assert_int_equal(n, 0);
}

/* The payee's ceiling (version 8) round-trips through every read; a row written before the
 * column existed reads -1 (none). */
static void test_op_payee_ceiling(void **state)
{
    struct fx *f = *state;
    struct pay_op op, out, page[4];
    op_init(&op, PAY_KIND_SEND, "usr_a", "usr_b", 3000, "EUR", 0);
    op.payee_max_balance_minor = 20000;
    op_begin_ok(f, &op, T0_US, &out);
    assert_int_equal(out.payee_max_balance_minor, 20000);
    assert_int_equal(payments_op_get(f->p, op.id, &out), CF_OK);
    assert_int_equal(out.payee_max_balance_minor, 20000);
    assert_int_equal(payments_op_by_idem(f->p, op.idem, &out), CF_OK);
    assert_int_equal(out.payee_max_balance_minor, 20000);
    size_t n = 0;
    assert_int_equal(payments_ops_stuck(f->p, T0_US + 1, 0, page, 4, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_int_equal(page[0].payee_max_balance_minor, 20000);
    struct pay_filter filter = {.party = "usr_a"};
    assert_int_equal(payments_ops_list(f->p, &filter, page, 4, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_int_equal(page[0].payee_max_balance_minor, 20000);
    op_init(&op, PAY_KIND_TOPUP, "", "usr_b", 100, "EUR", 0);
    op.payee_max_balance_minor = 0; /* a ceiling of zero is a ceiling */
    op_begin_ok(f, &op, T0_US, &out);
    assert_int_equal(out.payee_max_balance_minor, 0);

    /* an older row, written without the column */
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(
        sql_exec(tx,
                 "INSERT INTO pay_ops (id, kind, status, idem, request_hash, payer, payee, "
                 "payer_account, payee_account, amount_minor, currency, fee_minor, credit_minor, "
                 "credit_currency, rate_e9, quote_id, parent_id, reference, gateway_ref, "
                 "instrument, created_at_us, updated_at_us) VALUES ('snd_old', 3, 0, 'test:old', "
                 "'x', 'usr_a', 'usr_b', 11, 12, 5, 'EUR', 0, 5, 'EUR', 0, '', '', '', '', '', "
                 "1, 1)",
                 NULL, 0, NULL),
        CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    assert_int_equal(payments_op_get(f->p, "snd_old", &out), CF_OK);
    assert_int_equal(out.payee_max_balance_minor, -1);
}

/* The payer's outgoing limits (payments_op_begin): a send counts with its fee, a failed
 * operation not at all, another currency or payer apart; the day and the month each bind. */
static void test_op_limits(void **state)
{
    struct fx *f = *state;
    struct pay_op op, out;
    int64_t day = T0_US, month = T0_US - 10LL * 86400 * 1000000;
#define LIMITED(kind, payer, amount, currency, fee)                                                \
    do {                                                                                           \
        op_init(&op, kind, payer, "usr_b", amount, currency, fee);                                 \
        op.limits_on = true;                                                                       \
        op.daily_out_minor = 5000;                                                                 \
        op.monthly_out_minor = 8000;                                                               \
        op.day_start_us = day;                                                                     \
        op.month_start_us = month;                                                                 \
    } while (0)
    LIMITED(PAY_KIND_SEND, "usr_a", 2900, "EUR", 100);
    op_begin_ok(f, &op, T0_US + 1, &out); /* 3000 today */
    LIMITED(PAY_KIND_WITHDRAWAL, "usr_a", 2001, "EUR", 0);
    assert_int_equal(refund_begin(f, &op, T0_US + 2), CF_ERR_LIMIT_EXCEEDED);
    assert_int_equal(payments_op_get(f->p, op.id, &out), CF_ERR_NOT_FOUND); /* nothing written */
    LIMITED(PAY_KIND_WITHDRAWAL, "usr_b", 5000, "EUR", 0);                  /* another payer */
    op_begin_ok(f, &op, T0_US + 2, &out);
    LIMITED(PAY_KIND_WITHDRAWAL, "usr_a", 5000, "USD", 0); /* another currency */
    op_begin_ok(f, &op, T0_US + 2, &out);
    LIMITED(PAY_KIND_WITHDRAWAL, "usr_a", 2000, "EUR", 0); /* exactly the day's rest */
    op_begin_ok(f, &op, T0_US + 3, &out);
    op_set_status(f, op.id, PAY_STATUS_PROCESSING, PAY_STATUS_FAILED, T0_US + 4);
    LIMITED(PAY_KIND_WITHDRAWAL, "usr_a", 2000, "EUR", 0); /* the failed one counts no more */
    op_begin_ok(f, &op, T0_US + 5, &out);
    day = T0_US + 86400LL * 1000000; /* the next day: 5000 this month, 3000 left */
    LIMITED(PAY_KIND_WITHDRAWAL, "usr_a", 3001, "EUR", 0);
    assert_int_equal(refund_begin(f, &op, day + 1), CF_ERR_LIMIT_EXCEEDED);
    LIMITED(PAY_KIND_WITHDRAWAL, "usr_a", 3000, "EUR", 0);
    op_begin_ok(f, &op, day + 1, &out);
    op_init(&op, PAY_KIND_WITHDRAWAL, "usr_a", "", 100000, "EUR", 0); /* limits_on off */
    op_begin_ok(f, &op, day + 2, &out);
#undef LIMITED
}

/* A bank account kept for an operation under review: sealed, only for one under review, read
 * back exactly, forgotten for good. */
static void test_op_bank_kept(void **state)
{
    struct fx *f = *state;
    static const char iban[] = "GB82WEST12345698765432";
    struct pay_op op, out, plain;
    char bank[PAY_OP_BANK_BYTES_MAX];
    op_init(&op, PAY_KIND_WITHDRAWAL, "usr_a", "", 3000, "EUR", 0);
    op.review = true;
    op_begin_ok(f, &op, T0_US, &out);
    op_init(&plain, PAY_KIND_WITHDRAWAL, "usr_a", "", 100, "EUR", 0);
    op_begin_ok(f, &plain, T0_US, &out);
    assert_int_equal(payments_op_bank_get(f->p, op.id, bank), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_op_bank_keep(f->p, plain.id, iban), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_op_bank_keep(f->p, "wdr_unknown", iban), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_op_bank_keep(f->p, op.id, ""), CF_ERR_INVALID_FIELD);
    assert_int_equal(payments_op_bank_keep(f->p, op.id, iban), CF_OK);
    assert_int_equal(payments_op_bank_get(f->p, op.id, bank), CF_OK);
    assert_string_equal(bank, iban);
    /* sealed at rest: the stored bytes do not hold the number */
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(op.id)};
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, "SELECT bank_sealed FROM pay_ops WHERE id = $1", v, 1, &r),
                     CF_OK);
    sql_rollback(tx);
    size_t n = 0;
    const uint8_t *ct = sql_row_blob(r, 0, 0, &n);
    assert_non_null(ct);
    assert_true(n > strlen(iban));
    for (size_t i = 0; i + strlen(iban) <= n; i++)
        assert_false(memcmp(ct + i, iban, strlen(iban)) == 0);
    sql_rows_free(r);
    assert_int_equal(payments_op_bank_forget(f->p, op.id), CF_OK);
    assert_int_equal(payments_op_bank_get(f->p, op.id, bank), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_op_bank_forget(f->p, op.id), CF_OK);
}

/* System accounts ------------------------------------------------------------------------------ */

static void test_system_accounts(void **state)
{
    struct fx *f = *state;
    uint64_t id = 99;
    assert_int_equal(payments_system_get(f->p, "fees", "EUR", &id), CF_ERR_NOT_FOUND);
    assert_int_equal(id, 99);
    assert_int_equal(payments_system_put(f->p, "fees", "EUR", 11, &id), CF_OK);
    assert_int_equal(id, 11);
    assert_int_equal(payments_system_put(f->p, "fees", "EUR", 22, &id), CF_OK);
    assert_int_equal(id, 11);
    id = 0;
    assert_int_equal(payments_system_get(f->p, "fees", "EUR", &id), CF_OK);
    assert_int_equal(id, 11);
    assert_int_equal(payments_system_get(f->p, "fees", "USD", &id), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_system_get(f->p, "gateway", "EUR", &id), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_system_put(f->p, "fees", "USD", 33, &id), CF_OK);
    assert_int_equal(id, 33);
    assert_int_equal(payments_system_get(f->p, "fees", "EUR", &id), CF_OK);
    assert_int_equal(id, 11);
}

/* Merchants ------------------------------------------------------------------------------------ */

static void merchant_init(struct pay_merchant *m, const char *id, const char *name, bool daily)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->merchant_id, sizeof(m->merchant_id), "%s", id);
    snprintf(m->display_name, sizeof(m->display_name), "%s", name);
    snprintf(m->mcc, sizeof(m->mcc), "5812");
    snprintf(m->country, sizeof(m->country), "DE");
    snprintf(m->city, sizeof(m->city), "Berlin");
    snprintf(m->currency, sizeof(m->currency), "EUR");
    snprintf(m->bank_account, sizeof(m->bank_account), "%s", BANK);
    snprintf(m->bank_last4, sizeof(m->bank_last4), "3000");
    m->account_id = 501;
    m->fee_bps = -1;
    m->fee_fixed_minor = 0;
    m->payouts_daily = daily;
}

static void test_merchant_round_trip(void **state)
{
    struct fx *f = *state;
    struct pay_merchant m, out;
    assert_int_equal(payments_merchant_get(f->p, "mer_one", false, &out), CF_ERR_NOT_FOUND);
    merchant_init(&m, "mer_one", "Corner Cafe", false);
    assert_int_equal(payments_merchant_put(f->p, &m, T0_US), CF_OK);
    assert_int_equal(payments_merchant_get(f->p, "mer_one", false, &out), CF_OK);
    assert_string_equal(out.merchant_id, "mer_one");
    assert_string_equal(out.display_name, "Corner Cafe");
    assert_string_equal(out.mcc, "5812");
    assert_string_equal(out.country, "DE");
    assert_string_equal(out.city, "Berlin");
    assert_string_equal(out.currency, "EUR");
    assert_string_equal(out.bank_last4, "3000");
    assert_string_equal(out.bank_account, ""); /* not asked for */
    assert_int_equal(out.account_id, 501);
    assert_int_equal(out.fee_bps, -1);
    assert_false(out.payouts_daily);
    assert_int_equal(out.created_at_us, T0_US);
    assert_int_equal(payments_merchant_get(f->p, "mer_one", true, &out), CF_OK);
    assert_string_equal(out.bank_account, BANK);

    /* sealed at rest under "merchant:<id>:bank" */
    uint8_t raw[RAW_BYTES_MAX];
    size_t len = 0;
    char text[RAW_BYTES_MAX];
    assert_true(raw_blob(f, "SELECT bank_sealed FROM pay_merchants WHERE merchant_id = $1",
                         "mer_one", raw, &len));
    assert_false(mem_contains(raw, len, BANK));
    assert_false(mem_contains(raw, len, "0532013000"));
    assert_true(raw_open(f, raw, len, "merchant:mer_one:bank", text, sizeof(text)));
    assert_string_equal(text, BANK);

    /* an update changes the profile and keeps the created time */
    merchant_init(&m, "mer_one", "Corner Cafe & Bar", true);
    snprintf(m.bank_account, sizeof(m.bank_account), "FR7630006000011234567890189");
    snprintf(m.bank_last4, sizeof(m.bank_last4), "0189");
    snprintf(m.mcc, sizeof(m.mcc), "5813");
    m.fee_bps = 120;
    m.fee_fixed_minor = 15;
    assert_int_equal(payments_merchant_put(f->p, &m, T0_US + 60 * US_PER_S), CF_OK);
    assert_int_equal(payments_merchant_get(f->p, "mer_one", true, &out), CF_OK);
    assert_int_equal(out.created_at_us, T0_US);
    assert_string_equal(out.display_name, "Corner Cafe & Bar");
    assert_string_equal(out.mcc, "5813");
    assert_string_equal(out.bank_account, "FR7630006000011234567890189");
    assert_string_equal(out.bank_last4, "0189");
    assert_int_equal(out.fee_bps, 120);
    assert_int_equal(out.fee_fixed_minor, 15);
    assert_true(out.payouts_daily);

    /* a sealed account moved to another merchant does not open there */
    merchant_init(&m, "mer_two", "Bakery", false);
    snprintf(m.bank_account, sizeof(m.bank_account), "NL91ABNA0417164300");
    assert_int_equal(payments_merchant_put(f->p, &m, T0_US), CF_OK);
    assert_true(raw_blob(f, "SELECT bank_sealed FROM pay_merchants WHERE merchant_id = $1",
                         "mer_one", raw, &len));
    raw_set_blob(f, "UPDATE pay_merchants SET bank_sealed = $1 WHERE merchant_id = $2", raw, len,
                 "mer_two");
    assert_int_equal(payments_merchant_get(f->p, "mer_two", true, &out), CF_OK);
    assert_string_equal(out.bank_account, "");
    assert_string_equal(out.display_name, "Bakery");
}

static void test_merchants_daily(void **state)
{
    struct fx *f = *state;
    struct pay_merchant m, out[4];
    size_t n = 99;
    assert_int_equal(payments_merchants_daily(f->p, out, 4, &n), CF_OK);
    assert_int_equal(n, 0);
    merchant_init(&m, "mer_c", "Third", true);
    assert_int_equal(payments_merchant_put(f->p, &m, T0_US), CF_OK);
    merchant_init(&m, "mer_b", "Second", false);
    assert_int_equal(payments_merchant_put(f->p, &m, T0_US), CF_OK);
    merchant_init(&m, "mer_a", "First", true);
    assert_int_equal(payments_merchant_put(f->p, &m, T0_US), CF_OK);
    assert_int_equal(payments_merchants_daily(f->p, out, 4, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].merchant_id, "mer_a");
    assert_string_equal(out[1].merchant_id, "mer_c");
    assert_string_equal(out[1].bank_account, BANK); /* for the payout */
    assert_int_equal(payments_merchants_daily(f->p, out, 1, &n), CF_OK);
    assert_int_equal(n, 1);
    /* turned off: gone from the list */
    merchant_init(&m, "mer_a", "First", false);
    assert_int_equal(payments_merchant_put(f->p, &m, T0_US + 1), CF_OK);
    assert_int_equal(payments_merchants_daily(f->p, out, 4, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].merchant_id, "mer_c");
}

/* Fees ----------------------------------------------------------------------------------------- */

static void fee_expect(struct fx *f, const char *mcc, int64_t bps, int64_t fixed_minor)
{
    struct pay_fee_row r = {.bps = -7, .fixed_minor = -7};
    assert_int_equal(payments_fee_get(f->p, mcc, &r), CF_OK);
    assert_int_equal(r.bps, bps);
    assert_int_equal(r.fixed_minor, fixed_minor);
}

static void test_fees(void **state)
{
    struct fx *f = *state;
    fee_expect(f, "5812", 0, 0); /* no rows at all */
    assert_int_equal(payments_fee_put(f->p, &(struct pay_fee_row){"0000", 250, 10}), CF_OK);
    fee_expect(f, "5812", 250, 10);
    fee_expect(f, "0742", 250, 10);
    assert_int_equal(payments_fee_put(f->p, &(struct pay_fee_row){"5812", 150, 5}), CF_OK);
    assert_int_equal(payments_fee_put(f->p, &(struct pay_fee_row){"0001", 90, 0}), CF_OK);
    fee_expect(f, "5812", 150, 5);
    fee_expect(f, "0001", 90, 0);
    fee_expect(f, "5411", 250, 10);
    fee_expect(f, "0000", 250, 10);
    /* a row replaced */
    assert_int_equal(payments_fee_put(f->p, &(struct pay_fee_row){"5812", 175, 0}), CF_OK);
    fee_expect(f, "5812", 175, 0);
    struct pay_fee_row rows[8];
    size_t n = 99;
    assert_int_equal(payments_fee_list(f->p, rows, 8, &n), CF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].mcc, "0000");
    assert_string_equal(rows[1].mcc, "0001");
    assert_string_equal(rows[2].mcc, "5812");
    assert_int_equal(rows[2].bps, 175);
}

/* QR codes ------------------------------------------------------------------------------------- */

static void qr_init(struct pay_qr *q, const char *id, bool dynamic, int64_t expires_at_us)
{
    memset(q, 0, sizeof(*q));
    snprintf(q->id, sizeof(q->id), "%s", id);
    snprintf(q->merchant_id, sizeof(q->merchant_id), "mer_m");
    q->dynamic = dynamic;
    q->amount_minor = dynamic ? 1250 : 0;
    snprintf(q->currency, sizeof(q->currency), "EUR");
    snprintf(q->reference, sizeof(q->reference), "table-4");
    q->expires_at_us = expires_at_us;
    q->created_at_us = T0_US;
}

static void qr_holder_expect(struct fx *f, const char *id, const char *used_by)
{
    struct pay_qr q;
    assert_int_equal(payments_qr_get(f->p, id, &q), CF_OK);
    assert_string_equal(q.used_by, used_by);
}

static void test_qr_claim(void **state)
{
    struct fx *f = *state;
    struct pay_qr q, out;
    const int64_t exp = T0_US + 300 * US_PER_S;
    qr_init(&q, "qr_dyn", true, exp);
    assert_int_equal(payments_qr_put(f->p, &q), CF_OK);
    qr_init(&q, "qr_static", false, 0);
    assert_int_equal(payments_qr_put(f->p, &q), CF_OK);
    assert_int_equal(payments_qr_get(f->p, "qr_dyn", &out), CF_OK);
    assert_true(out.dynamic);
    assert_int_equal(out.amount_minor, 1250);
    assert_string_equal(out.reference, "table-4");
    assert_int_equal(out.expires_at_us, exp);
    assert_string_equal(out.used_by, "");
    assert_int_equal(payments_qr_get(f->p, "qr_none", &out), CF_ERR_NOT_FOUND);

    /* once */
    assert_int_equal(payments_qr_claim(f->p, "qr_dyn", "pay_A", T0_US + 1), CF_OK);
    qr_holder_expect(f, "qr_dyn", "pay_A");
    assert_int_equal(payments_qr_claim(f->p, "qr_dyn", "pay_B", T0_US + 2), CF_ERR_QR_EXPIRED);
    assert_int_equal(payments_qr_claim(f->p, "qr_dyn", "pay_A", T0_US + 2), CF_ERR_QR_EXPIRED);
    qr_holder_expect(f, "qr_dyn", "pay_A");
    /* released by its holder only */
    assert_int_equal(payments_qr_release(f->p, "qr_dyn", "pay_B"), CF_OK);
    qr_holder_expect(f, "qr_dyn", "pay_A");
    assert_int_equal(payments_qr_release(f->p, "qr_dyn", "pay_A"), CF_OK);
    qr_holder_expect(f, "qr_dyn", "");
    assert_int_equal(payments_qr_claim(f->p, "qr_dyn", "pay_B", T0_US + 3), CF_OK);
    qr_holder_expect(f, "qr_dyn", "pay_B");
    /* past its expiry: refused */
    assert_int_equal(payments_qr_release(f->p, "qr_dyn", "pay_B"), CF_OK);
    assert_int_equal(payments_qr_claim(f->p, "qr_dyn", "pay_C", exp), CF_ERR_QR_EXPIRED);
    assert_int_equal(payments_qr_claim(f->p, "qr_dyn", "pay_C", exp + 1), CF_ERR_QR_EXPIRED);
    qr_holder_expect(f, "qr_dyn", "");
    /* static codes are never claimed; unknown ones neither */
    assert_int_equal(payments_qr_claim(f->p, "qr_static", "pay_D", T0_US), CF_ERR_QR_EXPIRED);
    qr_holder_expect(f, "qr_static", "");
    assert_int_equal(payments_qr_claim(f->p, "qr_none", "pay_D", T0_US), CF_ERR_QR_EXPIRED);
}

struct qr_worker {
    struct fx *f;
    pthread_barrier_t *start;
    char op_id[PAY_ID_BYTES_MAX];
    enum cf_err err;
};

static void *qr_worker_run(void *arg)
{
    struct qr_worker *w = arg;
    pthread_barrier_wait(w->start);
    w->err = payments_qr_claim(w->f->p, "qr_race", w->op_id, T0_US + 1);
    return NULL;
}

static void test_qr_claim_concurrent(void **state)
{
    struct fx *f = *state;
    struct pay_qr q;
    qr_init(&q, "qr_race", true, T0_US + 300 * US_PER_S);
    assert_int_equal(payments_qr_put(f->p, &q), CF_OK);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
    pthread_t th[RACE_THREADS];
    struct qr_worker w[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct qr_worker){.f = f, .start = &start};
        payments_op_id_new(PAY_KIND_PAYMENT, w[i].op_id);
        assert_int_equal(pthread_create(&th[i], NULL, qr_worker_run, &w[i]), 0);
    }
    int won = -1, wins = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (w[i].err == CF_OK) {
            won = i;
            wins++;
        } else {
            assert_int_equal(w[i].err, CF_ERR_QR_EXPIRED);
        }
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(wins, 1);
    qr_holder_expect(f, "qr_race", w[won].op_id);
}

/* Quotes --------------------------------------------------------------------------------------- */

static void test_quote_claim(void **state)
{
    struct fx *f = *state;
    struct pay_quote q = {0}, out;
    snprintf(q.id, sizeof(q.id), "quo_1");
    snprintf(q.user_id, sizeof(q.user_id), "usr_a");
    hash_sha256("send usr_b 1000 EUR", 19, q.binding);
    q.amount_minor = 1000;
    snprintf(q.currency, sizeof(q.currency), "EUR");
    q.fee_minor = 10;
    q.credit_minor = 1085;
    snprintf(q.credit_currency, sizeof(q.credit_currency), "USD");
    q.rate_e9 = 1085000000;
    q.expires_at_us = T0_US + 60 * US_PER_S;
    assert_int_equal(payments_quote_put(f->p, &q), CF_OK);
    uint8_t other[HASH_BYTES];
    hash_sha256("send usr_b 9000 EUR", 19, other);

    const int64_t t = T0_US + 1;
    assert_int_equal(payments_quote_claim(f->p, "quo_1", "usr_b", q.binding, "snd_1", t, &out),
                     CF_ERR_QUOTE_EXPIRED);
    assert_int_equal(payments_quote_claim(f->p, "quo_1", "usr_a", other, "snd_1", t, &out),
                     CF_ERR_QUOTE_EXPIRED);
    assert_int_equal(
        payments_quote_claim(f->p, "quo_1", "usr_a", q.binding, "snd_1", q.expires_at_us, &out),
        CF_ERR_QUOTE_EXPIRED);
    assert_int_equal(payments_quote_claim(f->p, "quo_none", "usr_a", q.binding, "snd_1", t, &out),
                     CF_ERR_QUOTE_EXPIRED);
    memset(&out, 0, sizeof(out));
    assert_int_equal(payments_quote_claim(f->p, "quo_1", "usr_a", q.binding, "snd_1", t, &out),
                     CF_OK);
    assert_string_equal(out.id, "quo_1");
    assert_int_equal(out.credit_minor, 1085);
    assert_string_equal(out.credit_currency, "USD");
    assert_int_equal(out.rate_e9, 1085000000);
    assert_int_equal(out.fee_minor, 10);
    assert_memory_equal(out.binding, q.binding, HASH_BYTES);
    /* used: refused, even to the same operation */
    assert_int_equal(payments_quote_claim(f->p, "quo_1", "usr_a", q.binding, "snd_2", t, &out),
                     CF_ERR_QUOTE_EXPIRED);
    assert_int_equal(payments_quote_claim(f->p, "quo_1", "usr_a", q.binding, "snd_1", t, &out),
                     CF_ERR_QUOTE_EXPIRED);
    /* released by its holder only */
    assert_int_equal(payments_quote_release(f->p, "quo_1", "snd_2"), CF_OK);
    assert_int_equal(payments_quote_claim(f->p, "quo_1", "usr_a", q.binding, "snd_2", t, &out),
                     CF_ERR_QUOTE_EXPIRED);
    assert_int_equal(payments_quote_release(f->p, "quo_1", "snd_1"), CF_OK);
    assert_int_equal(payments_quote_claim(f->p, "quo_1", "usr_a", q.binding, "snd_2", t, &out),
                     CF_OK);
    assert_string_equal(out.id, "quo_1");
}

/* Rates and callback events -------------------------------------------------------------------- */

static void test_rates_and_events(void **state)
{
    struct fx *f = *state;
    int64_t rate = 7;
    assert_int_equal(payments_rate_get(f->p, "EUR", "USD", &rate), CF_ERR_NO_RATE);
    assert_int_equal(rate, 7);
    assert_int_equal(payments_rate_put(f->p, "EUR", "USD", 1080000000, T0_US), CF_OK);
    assert_int_equal(payments_rate_get(f->p, "EUR", "USD", &rate), CF_OK);
    assert_int_equal(rate, 1080000000);
    assert_int_equal(payments_rate_put(f->p, "EUR", "USD", 1090000000, T0_US + 1), CF_OK);
    assert_int_equal(payments_rate_get(f->p, "EUR", "USD", &rate), CF_OK);
    assert_int_equal(rate, 1090000000);
    assert_int_equal(payments_rate_get(f->p, "USD", "EUR", &rate), CF_ERR_NO_RATE);
    assert_int_equal(payments_rate_get(f->p, "EUR", "GBP", &rate), CF_ERR_NO_RATE);

    bool fresh = false;
    assert_int_equal(payments_event_record(f->p, "evt_1", T0_US, &fresh), CF_OK);
    assert_true(fresh);
    assert_int_equal(payments_event_record(f->p, "evt_1", T0_US + 1, &fresh), CF_OK);
    assert_false(fresh);
    assert_int_equal(payments_event_record(f->p, "evt_2", T0_US + 2, &fresh), CF_OK);
    assert_true(fresh);
}

/* Cards ---------------------------------------------------------------------------------------- */

#define PAN "4111111111111111"

static void card_init(struct pay_card *c, const char *user_id, const char *pan)
{
    memset(c, 0, sizeof(*c));
    char id[ID_TEXT_BYTES_MAX];
    uint64_t v = 0;
    while (v == 0)
        hash_random(&v, sizeof(v));
    id_format("card_", v, id);
    snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->user_id, sizeof(c->user_id), "%s", user_id);
    snprintf(c->brand, sizeof(c->brand), "visa");
    snprintf(c->last4, sizeof(c->last4), "%s", pan + strlen(pan) - 4);
    c->exp_month = 12;
    c->exp_year = 2031;
}

static void card_add_ok(struct fx *f, const struct pay_card *c, const char *pan, bool existed_want,
                        struct pay_card *out)
{
    bool existed = !existed_want;
    assert_int_equal(payments_card_add(f->p, c, pan, T0_US, out, &existed), CF_OK);
    assert_int_equal(existed, existed_want);
}

static void test_card_add_get(void **state)
{
    struct fx *f = *state;
    struct pay_card c, again, out;
    card_init(&c, "usr_a", PAN);
    card_add_ok(f, &c, PAN, false, &out);
    assert_string_equal(out.id, c.id);
    assert_string_equal(out.last4, "1111");
    assert_int_equal(out.created_at_us, T0_US);

    char pan[PAY_PAN_BYTES_MAX] = "x";
    memset(&out, 0, sizeof(out));
    assert_int_equal(payments_card_get(f->p, c.id, "usr_a", &out, pan), CF_OK);
    assert_string_equal(pan, PAN);
    assert_string_equal(out.brand, "visa");
    assert_string_equal(out.last4, "1111");
    assert_int_equal(out.exp_month, 12);
    assert_int_equal(out.exp_year, 2031);
    assert_int_equal(payments_card_get(f->p, c.id, "usr_a", &out, NULL), CF_OK);
    pan[0] = 'x';
    pan[1] = '\0';
    assert_int_equal(payments_card_get(f->p, c.id, "usr_b", &out, pan), CF_ERR_NOT_FOUND);
    assert_string_equal(pan, "x");

    /* sealed at rest under "card:<id>" */
    uint8_t raw[RAW_BYTES_MAX];
    size_t len = 0;
    char text[RAW_BYTES_MAX], aad[PAY_ID_BYTES_MAX + 8];
    assert_true(raw_blob(f, "SELECT pan_sealed FROM pay_cards WHERE id = $1", c.id, raw, &len));
    assert_false(mem_contains(raw, len, PAN));
    assert_false(mem_contains(raw, len, "411111"));
    snprintf(aad, sizeof(aad), "card:%s", c.id);
    assert_true(raw_open(f, raw, len, aad, text, sizeof(text)));
    assert_string_equal(text, PAN);

    /* the same number again: the first card; another customer's is their own */
    card_init(&again, "usr_a", PAN);
    card_add_ok(f, &again, PAN, true, &out);
    assert_string_equal(out.id, c.id);
    assert_int_equal(payments_card_get(f->p, again.id, "usr_a", &out, NULL), CF_ERR_NOT_FOUND);
    card_init(&again, "usr_b", PAN);
    card_add_ok(f, &again, PAN, false, &out);
    assert_string_equal(out.id, again.id);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM pay_cards"), 2);
}

static void test_cards_max_list_remove(void **state)
{
    struct fx *f = *state;
    struct pay_card c[PAY_CARDS_MAX + 1], out;
    char pans[PAY_CARDS_MAX + 1][PAY_PAN_BYTES_MAX];
    for (int i = 0; i <= PAY_CARDS_MAX; i++) {
        snprintf(pans[i], sizeof(pans[i]), "4000000000%06d", i);
        card_init(&c[i], "usr_a", pans[i]);
    }
    for (int i = 0; i < PAY_CARDS_MAX; i++)
        card_add_ok(f, &c[i], pans[i], false, &out);
    bool existed = true;
    assert_int_equal(
        payments_card_add(f->p, &c[PAY_CARDS_MAX], pans[PAY_CARDS_MAX], T0_US, &out, &existed),
        CF_ERR_CONFLICT);
    assert_int_equal(payments_card_get(f->p, c[PAY_CARDS_MAX].id, "usr_a", &out, NULL),
                     CF_ERR_NOT_FOUND);
    /* a card already saved still answers at the limit */
    card_add_ok(f, &c[PAY_CARDS_MAX], pans[3], true, &out);
    assert_string_equal(out.id, c[3].id);

    struct pay_card list[PAY_CARDS_MAX + 4];
    size_t n = 0;
    assert_int_equal(payments_cards_list(f->p, "usr_a", list, PAY_CARDS_MAX + 4, &n), CF_OK);
    assert_int_equal(n, PAY_CARDS_MAX);
    assert_int_equal(payments_cards_list(f->p, "usr_b", list, PAY_CARDS_MAX + 4, &n), CF_OK);
    assert_int_equal(n, 0);

    /* removal: only by the owner, once; the sealed number is erased */
    assert_int_equal(payments_card_remove(f->p, c[0].id, "usr_b", T0_US + 1), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_card_remove(f->p, c[0].id, "usr_a", T0_US + 1), CF_OK);
    assert_int_equal(payments_card_remove(f->p, c[0].id, "usr_a", T0_US + 2), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_card_get(f->p, c[0].id, "usr_a", &out, NULL), CF_ERR_NOT_FOUND);
    uint8_t raw[RAW_BYTES_MAX];
    size_t len = 0;
    char text[RAW_BYTES_MAX], aad[PAY_ID_BYTES_MAX + 8];
    assert_true(raw_blob(f, "SELECT pan_sealed FROM pay_cards WHERE id = $1", c[0].id, raw, &len));
    assert_int_equal(len, 1);
    snprintf(aad, sizeof(aad), "card:%s", c[0].id);
    assert_false(raw_open(f, raw, len, aad, text, sizeof(text)));
    assert_int_equal(payments_cards_list(f->p, "usr_a", list, PAY_CARDS_MAX + 4, &n), CF_OK);
    assert_int_equal(n, PAY_CARDS_MAX - 1);
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(list[i].id, c[0].id);

    /* room for one more: the refused card fits now; the removed number is a new card */
    card_add_ok(f, &c[PAY_CARDS_MAX], pans[PAY_CARDS_MAX], false, &out);
    card_init(&c[0], "usr_a", pans[0]);
    assert_int_equal(payments_card_add(f->p, &c[0], pans[0], T0_US, &out, &existed),
                     CF_ERR_CONFLICT);
    assert_int_equal(payments_card_remove(f->p, c[5].id, "usr_a", T0_US + 3), CF_OK);
    card_add_ok(f, &c[0], pans[0], false, &out);
    assert_string_equal(out.id, c[0].id);
}

/* The card races: CARD_ROUNDS rounds of RACE_THREADS requests of one customer at once. */
#define CARD_ROUNDS 15

struct card_worker {
    struct fx *f;
    pthread_barrier_t *start;
    char pan[PAY_PAN_BYTES_MAX];
    struct pay_card card, out;
    enum cf_err err;
    bool existed;
};

static void *card_worker_run(void *arg)
{
    struct card_worker *w = arg;
    pthread_barrier_wait(w->start);
    w->err = payments_card_add(w->f->p, &w->card, w->pan, T0_US, &w->out, &w->existed);
    return NULL;
}

/* Runs RACE_THREADS card adds for usr_a at once: one number for all (same), or one each. */
static void card_race(struct fx *f, struct card_worker w[RACE_THREADS], int round, bool same)
{
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
    pthread_t th[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct card_worker){.f = f, .start = &start};
        snprintf(w[i].pan, sizeof(w[i].pan), "4000000000%06d",
                 (100000 + round * RACE_THREADS + (same ? 0 : i)) % 1000000);
        card_init(&w[i].card, "usr_a", w[i].pan);
        assert_int_equal(pthread_create(&th[i], NULL, card_worker_run, &w[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
}

/* One number saved by several requests at once: one card, the others answered with it. */
static void test_card_add_same_number_concurrent(void **state)
{
    struct fx *f = *state;
    struct card_worker w[RACE_THREADS];
    for (int round = 0; round < CARD_ROUNDS; round++) {
        card_race(f, w, round, true);
        int made = 0, first = -1;
        for (int i = 0; i < RACE_THREADS; i++) {
            assert_int_equal(w[i].err, CF_OK);
            if (!w[i].existed) {
                made++;
                first = i;
            }
        }
        assert_int_equal(made, 1);
        for (int i = 0; i < RACE_THREADS; i++)
            assert_string_equal(w[i].out.id, w[first].card.id);
        assert_int_equal(payments_card_remove(f->p, w[first].card.id, "usr_a", T0_US + 1), CF_OK);
    }
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM pay_cards"), CARD_ROUNDS);
}

/* One slot left below PAY_CARDS_MAX and several new numbers at once: one fits. */
static void test_cards_max_concurrent(void **state)
{
    struct fx *f = *state;
    struct pay_card c, out;
    char pan[PAY_PAN_BYTES_MAX];
    for (int i = 0; i < PAY_CARDS_MAX - 1; i++) {
        snprintf(pan, sizeof(pan), "4000000000%06d", i);
        card_init(&c, "usr_a", pan);
        card_add_ok(f, &c, pan, false, &out);
    }
    struct card_worker w[RACE_THREADS];
    struct pay_card list[PAY_CARDS_MAX + RACE_THREADS];
    for (int round = 0; round < CARD_ROUNDS; round++) {
        card_race(f, w, round, false);
        int made = -1;
        for (int i = 0; i < RACE_THREADS; i++) {
            if (w[i].err == CF_OK) {
                assert_false(w[i].existed);
                made = made < 0 ? i : RACE_THREADS; /* RACE_THREADS: two made */
            } else {
                assert_int_equal(w[i].err, CF_ERR_CONFLICT);
            }
        }
        size_t n = 0;
        assert_int_equal(payments_cards_list(f->p, "usr_a", list, PAY_CARDS_MAX + RACE_THREADS, &n),
                         CF_OK);
        assert_int_equal(n, PAY_CARDS_MAX);
        assert_true(made >= 0 && made < RACE_THREADS);
        assert_int_equal(payments_card_remove(f->p, w[made].card.id, "usr_a", T0_US + 1), CF_OK);
    }
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_op_begin_new_and_replay),
        FX(test_op_payee_ceiling),
        FX(test_op_bank_kept),
        FX(test_op_limits),
        FX(test_op_note_sealed),
        FX(test_op_begin_same_key_concurrent),
        FX(test_refund_reserve),
        FX(test_refund_parent_state),
        FX(test_refund_cross_currency),
        FX(test_refund_failed_gives_back),
        FX(test_refund_failed_twice_gives_back_once),
        FX(test_refund_concurrent),
        FX(test_op_update),
        FX(test_op_update_empty_text_kept),
        FX(test_ops_list_filters),
        FX(test_ops_list_pages),
        FX(test_ops_stuck),
        FX(test_system_accounts),
        FX(test_merchant_round_trip),
        FX(test_merchants_daily),
        FX(test_fees),
        FX(test_qr_claim),
        FX(test_qr_claim_concurrent),
        FX(test_quote_claim),
        FX(test_rates_and_events),
        FX(test_card_add_get),
        FX(test_cards_max_list_remove),
        FX(test_card_add_same_number_concurrent),
        FX(test_cards_max_concurrent),
    };
    int failed = cmocka_run_group_tests_name("payments_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("payments_postgres", tests, NULL, NULL);
    } else {
        printf("payments_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
