/*
 * test_requests.c - unit tests for src/payments/requests.c against SQLite (a fresh file per
 * test) and, when COFFER_TEST_PG_URL is set, PostgreSQL (a fresh database per test): a round
 * trip with the note sealed at rest; the effective status (expiry on read, PAID as soon as the
 * reserved operation completed, before settle); list filters (direction, status, expired) and
 * the cursor; the pending limit, all or nothing; claims (wrong payer, wrong operation, expired,
 * closed, repeated); one reserved operation per request, so two payments cannot both be
 * recorded, also from two threads at once; release after a failure; decline and cancel by the
 * right party only, idempotent, refused while a payment is in flight or after it.
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
#include "payments/requests.h"
#include "store/sql/sql.h"

#define T0_US 1700000000000000LL
#define HOUR_US 3600000000LL
#define TARGET_BYTES_MAX 1024
/* One master key, id 1, 32 bytes of 0x07. */
#define TEST_KEYS "1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"

struct fx {
    char target[TARGET_BYTES_MAX];
    char pg_name[TESTDB_NAME_BYTES];
    char dir[TESTDB_DIR_BYTES];
    struct sqldb *db;
    struct vault *vault;
    struct payments *p;
};

static const struct vault *keys_of(void *ctx, uint32_t key_id)
{
    struct vault *v = ctx;
    return key_id == 0 || vault_has_key(v, key_id) ? v : NULL;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    if (!testdb_create("tr", false, f->dir, f->pg_name, f->target, sizeof(f->target)) ||
        sqldb_open(f->target, &f->db) != CF_OK ||
        vault_load(TEST_KEYS, strlen(TEST_KEYS), &f->vault) != CF_OK)
        return -1;
    return payments_open(f->db, keys_of, f->vault, &f->p) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    payments_close(f->p);
    sqldb_close(f->db);
    vault_free(f->vault);
    testdb_drop(f->dir, f->pg_name);
    free(f);
    return 0;
}

/* Helpers -------------------------------------------------------------------------------------- */

static struct pay_request req_make(const char *requester, const char *payer, int64_t amount,
                                   const char *note, int64_t expires_at_us)
{
    struct pay_request r;
    memset(&r, 0, sizeof(r));
    payments_request_id_new(r.id);
    snprintf(r.requester, sizeof(r.requester), "%s", requester);
    snprintf(r.payer, sizeof(r.payer), "%s", payer);
    r.amount_minor = amount;
    snprintf(r.currency, sizeof(r.currency), "USD");
    snprintf(r.note, sizeof(r.note), "%s", note);
    r.expires_at_us = expires_at_us;
    return r;
}

/* Records one request; returns it as read back. */
static struct pay_request put_one(struct fx *f, const char *requester, const char *payer,
                                  int64_t amount, int64_t expires_at_us)
{
    struct pay_request r = req_make(requester, payer, amount, "", expires_at_us), got;
    assert_int_equal(payments_requests_put(f->p, &r, 1, T0_US), CF_OK);
    assert_int_equal(payments_request_get(f->p, r.id, T0_US, &got), CF_OK);
    return got;
}

/* The send that pays request q, under its reserved id; idem tells attempts apart. */
static enum cf_err op_begin(struct fx *f, const struct pay_request *q, const char *op_id,
                            const char *idem, struct pay_op *out)
{
    struct pay_op op;
    memset(&op, 0, sizeof(op));
    snprintf(op.id, sizeof(op.id), "%s", op_id);
    op.kind = PAY_KIND_SEND;
    snprintf(op.idem, sizeof(op.idem), "%s", idem);
    hash_sha256(idem, strlen(idem), op.request_hash);
    snprintf(op.payer, sizeof(op.payer), "%s", q->payer);
    snprintf(op.payee, sizeof(op.payee), "%s", q->requester);
    op.payer_account = 1;
    op.payee_account = 2;
    op.amount_minor = op.credit_minor = q->amount_minor;
    snprintf(op.currency, sizeof(op.currency), "%s", q->currency);
    snprintf(op.credit_currency, sizeof(op.credit_currency), "%s", q->currency);
    snprintf(op.reference, sizeof(op.reference), "%s", q->id);
    bool existed = false;
    enum cf_err err = payments_op_begin(f->p, &op, T0_US, out, &existed);
    if (err == CF_OK)
        assert_false(existed);
    return err;
}

static void op_finish(struct fx *f, const char *op_id, uint8_t status)
{
    struct pay_op_update u = {.status = status,
                              .error = status == PAY_STATUS_FAILED ? "insufficient_funds" : NULL};
    assert_int_equal(payments_op_update(f->p, op_id, 1u << PAY_STATUS_PROCESSING, &u, T0_US),
                     CF_OK);
}

static uint8_t status_at(struct fx *f, const char *id, int64_t now_us)
{
    struct pay_request got;
    assert_int_equal(payments_request_get(f->p, id, now_us, &got), CF_OK);
    return got.status;
}

static size_t list(struct fx *f, const char *party, uint8_t direction, int status,
                   uint64_t before_row, int64_t now_us, struct pay_request *out, size_t max)
{
    struct pay_request_filter flt = {
        .party = party, .direction = direction, .status = status, .before_row = before_row};
    size_t n = 0;
    assert_int_equal(payments_requests_list(f->p, &flt, now_us, out, max, &n), CF_OK);
    return n;
}

/* Reads a stored column of a request as text (what is at rest). */
static bool note_at_rest_has(struct fx *f, const char *id, const char *text)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(id)};
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, "SELECT note_sealed FROM pay_requests WHERE id = $1", v, 1, &r),
                     CF_OK);
    size_t len = 0;
    const uint8_t *b = sql_row_blob(r, 0, 0, &len);
    bool found = false;
    for (size_t i = 0; b != NULL && i + strlen(text) <= len && !found; i++)
        found = memcmp(b + i, text, strlen(text)) == 0;
    bool sealed = b != NULL && len > VAULT_OVERHEAD_BYTES;
    sql_rows_free(r);
    sql_rollback(tx);
    assert_true(sealed);
    return found;
}

/* Tests ---------------------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    struct pay_request r = req_make("usr_A", "usr_B", 1250, "dinner at Lucia's", T0_US + HOUR_US);
    snprintf(r.split_id, sizeof(r.split_id), "spl_X");
    assert_int_equal(payments_requests_put(f->p, &r, 1, T0_US), CF_OK);
    struct pay_request got;
    assert_int_equal(payments_request_get(f->p, r.id, T0_US, &got), CF_OK);
    assert_string_equal(got.id, r.id);
    assert_int_equal(strncmp(got.id, "req_", 4), 0);
    assert_string_equal(got.requester, "usr_A");
    assert_string_equal(got.payer, "usr_B");
    assert_int_equal(got.amount_minor, 1250);
    assert_string_equal(got.currency, "USD");
    assert_string_equal(got.note, "dinner at Lucia's");
    assert_string_equal(got.split_id, "spl_X");
    assert_int_equal(got.status, PAY_REQUEST_PENDING);
    assert_int_equal(strncmp(got.paid_op_id, "snd_", 4), 0);
    assert_int_equal(got.paid_op_status, -1);
    assert_false(got.claimed);
    assert_int_equal(got.expires_at_us, T0_US + HOUR_US);
    assert_int_equal(got.created_at_us, T0_US);
    assert_false(note_at_rest_has(f, r.id, "Lucia"));
    assert_int_equal(payments_request_get(f->p, "req_none", T0_US, &got), CF_ERR_NOT_FOUND);
    assert_string_equal(got.id, r.id); /* untouched on error */

    assert_string_equal(pay_request_status_name(PAY_REQUEST_CANCELLED), "cancelled");
    assert_int_equal(pay_request_status_parse("expired"), PAY_REQUEST_EXPIRED);
    assert_int_equal(pay_request_status_parse("paying"), -1);
}

static void test_expiry_on_read(void **state)
{
    struct fx *f = *state;
    struct pay_request q = put_one(f, "usr_A", "usr_B", 100, T0_US + HOUR_US);
    assert_int_equal(status_at(f, q.id, T0_US + HOUR_US), PAY_REQUEST_PENDING); /* at: still */
    assert_int_equal(status_at(f, q.id, T0_US + HOUR_US + 1), PAY_REQUEST_EXPIRED);
    struct pay_request out[4];
    assert_int_equal(
        list(f, "usr_B", PAY_REQUEST_INCOMING, PAY_REQUEST_EXPIRED, 0, T0_US + HOUR_US + 1, out, 4),
        1);
    assert_int_equal(
        list(f, "usr_B", PAY_REQUEST_INCOMING, PAY_REQUEST_PENDING, 0, T0_US + HOUR_US + 1, out, 4),
        0);
    assert_int_equal(list(f, "usr_B", PAY_REQUEST_INCOMING, PAY_REQUEST_PENDING, 0, T0_US, out, 4),
                     1);
    /* an expired request cannot be claimed, declined or cancelled */
    struct pay_op op;
    assert_int_equal(op_begin(f, &q, q.paid_op_id, "k-exp", &op), CF_OK);
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_B", q.paid_op_id, T0_US + HOUR_US + 1),
                     CF_ERR_CONFLICT);
    op_finish(f, q.paid_op_id, PAY_STATUS_FAILED);
    struct pay_request got;
    assert_int_equal(payments_request_close(f->p, q.id, "usr_A", PAY_REQUEST_CANCELLED,
                                            T0_US + HOUR_US + 1, &got),
                     CF_ERR_CONFLICT);
}

static void test_list_filters_and_cursor(void **state)
{
    struct fx *f = *state;
    struct pay_request a1 = put_one(f, "usr_A", "usr_B", 1, T0_US + HOUR_US);
    struct pay_request b1 = put_one(f, "usr_B", "usr_A", 2, T0_US + HOUR_US);
    struct pay_request a2 = put_one(f, "usr_A", "usr_C", 3, T0_US + HOUR_US);
    (void)put_one(f, "usr_C", "usr_B", 4, T0_US + HOUR_US); /* not A's */
    struct pay_request got, out[8];
    assert_int_equal(
        payments_request_close(f->p, a2.id, "usr_A", PAY_REQUEST_CANCELLED, T0_US, &got), CF_OK);

    size_t n = list(f, "usr_A", PAY_REQUEST_BOTH, -1, 0, T0_US, out, 8);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].id, a2.id); /* newest first */
    assert_string_equal(out[1].id, b1.id);
    assert_string_equal(out[2].id, a1.id);
    n = list(f, "usr_A", PAY_REQUEST_OUTGOING, -1, 0, T0_US, out, 8);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].id, a2.id);
    n = list(f, "usr_A", PAY_REQUEST_INCOMING, -1, 0, T0_US, out, 8);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].id, b1.id);
    n = list(f, "usr_A", PAY_REQUEST_BOTH, PAY_REQUEST_CANCELLED, 0, T0_US, out, 8);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].status, PAY_REQUEST_CANCELLED);
    n = list(f, "usr_A", PAY_REQUEST_BOTH, PAY_REQUEST_PENDING, 0, T0_US, out, 8);
    assert_int_equal(n, 2);

    /* pages of one, by cursor */
    n = list(f, "usr_A", PAY_REQUEST_BOTH, -1, 0, T0_US, out, 1);
    assert_int_equal(n, 1);
    n = list(f, "usr_A", PAY_REQUEST_BOTH, -1, out[0].row, T0_US, out, 1);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].id, b1.id);
    n = list(f, "usr_A", PAY_REQUEST_BOTH, -1, out[0].row, T0_US, out, 1);
    assert_string_equal(out[0].id, a1.id);
    assert_int_equal(list(f, "usr_A", PAY_REQUEST_BOTH, -1, out[0].row, T0_US, out, 1), 0);
    assert_int_equal(list(f, "usr_Z", PAY_REQUEST_BOTH, -1, 0, T0_US, out, 8), 0);
}

static void test_pending_limit(void **state)
{
    struct fx *f = *state;
    struct pay_request r[PAY_SPLIT_PEOPLE_MAX];
    size_t made = 0;
    while (made + PAY_SPLIT_PEOPLE_MAX <= PAY_REQUESTS_PENDING_MAX - 2) {
        for (size_t i = 0; i < PAY_SPLIT_PEOPLE_MAX; i++)
            r[i] = req_make("usr_A", "usr_B", 5, "", T0_US + HOUR_US);
        assert_int_equal(payments_requests_put(f->p, r, PAY_SPLIT_PEOPLE_MAX, T0_US), CF_OK);
        made += PAY_SPLIT_PEOPLE_MAX;
    }
    while (made < PAY_REQUESTS_PENDING_MAX - 2) {
        r[0] = req_make("usr_A", "usr_B", 5, "", T0_US + HOUR_US);
        assert_int_equal(payments_requests_put(f->p, r, 1, T0_US), CF_OK);
        made++;
    }
    /* two places left: three at once are refused whole */
    for (size_t i = 0; i < 3; i++)
        r[i] = req_make("usr_A", "usr_C", 5, "", T0_US + HOUR_US);
    assert_int_equal(payments_requests_put(f->p, r, 3, T0_US), CF_ERR_CONFLICT);
    struct pay_request got;
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(payments_request_get(f->p, r[i].id, T0_US, &got), CF_ERR_NOT_FOUND);
    assert_int_equal(payments_requests_put(f->p, r, 2, T0_US), CF_OK);
    r[2] = req_make("usr_A", "usr_C", 5, "", T0_US + HOUR_US);
    assert_int_equal(payments_requests_put(f->p, &r[2], 1, T0_US), CF_ERR_CONFLICT);
    /* closed and expired requests do not count; other requesters are not limited */
    assert_int_equal(
        payments_request_close(f->p, r[0].id, "usr_A", PAY_REQUEST_CANCELLED, T0_US, &got), CF_OK);
    assert_int_equal(payments_requests_put(f->p, &r[2], 1, T0_US), CF_OK);
    r[3] = req_make("usr_A", "usr_C", 5, "", T0_US + 3 * HOUR_US);
    assert_int_equal(payments_requests_put(f->p, &r[3], 1, T0_US), CF_ERR_CONFLICT);
    assert_int_equal(payments_requests_put(f->p, &r[3], 1, T0_US + 2 * HOUR_US), CF_OK);
    r[4] = req_make("usr_B", "usr_A", 5, "", T0_US + HOUR_US);
    assert_int_equal(payments_requests_put(f->p, &r[4], 1, T0_US), CF_OK);
}

static void test_pay_once(void **state)
{
    struct fx *f = *state;
    struct pay_request q = put_one(f, "usr_A", "usr_B", 700, T0_US + HOUR_US), got;
    struct pay_op op;
    /* claims need the reserved operation, recorded, and the payer */
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_B", q.paid_op_id, T0_US),
                     CF_ERR_CONFLICT); /* not recorded yet */
    assert_int_equal(op_begin(f, &q, q.paid_op_id, "k-1", &op), CF_OK);
    /* a second payment cannot record the same operation */
    assert_int_equal(op_begin(f, &q, q.paid_op_id, "k-2", &op), CF_ERR_STORAGE_CONFLICT);
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_A", q.paid_op_id, T0_US),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_B", "snd_other", T0_US),
                     CF_ERR_CONFLICT);
    assert_int_equal(payments_request_claim(f->p, "req_none", "usr_B", q.paid_op_id, T0_US),
                     CF_ERR_NOT_FOUND);
    /* in flight: pending, not closable */
    assert_int_equal(
        payments_request_close(f->p, q.id, "usr_A", PAY_REQUEST_CANCELLED, T0_US, &got),
        CF_ERR_CONFLICT);
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_B", q.paid_op_id, T0_US), CF_OK);
    assert_int_equal(payments_request_get(f->p, q.id, T0_US, &got), CF_OK);
    assert_true(got.claimed);
    assert_int_equal(got.paid_op_status, PAY_STATUS_PROCESSING);
    /* a claimed payment stays claimed: its retry passes, even after the expiry */
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_B", q.paid_op_id, T0_US + 2 * HOUR_US),
                     CF_OK);
    assert_int_equal(status_at(f, q.id, T0_US + 2 * HOUR_US), PAY_REQUEST_PENDING);
    assert_int_equal(payments_request_close(f->p, q.id, "usr_B", PAY_REQUEST_DECLINED, T0_US, &got),
                     CF_ERR_CONFLICT);
    assert_int_equal(payments_request_settle(f->p, q.id, q.paid_op_id, T0_US), CF_ERR_CONFLICT);
    /* completed: paid at once, before settle; settle records it */
    op_finish(f, q.paid_op_id, PAY_STATUS_COMPLETED);
    assert_int_equal(status_at(f, q.id, T0_US), PAY_REQUEST_PAID);
    assert_int_equal(status_at(f, q.id, T0_US + 2 * HOUR_US), PAY_REQUEST_PAID);
    assert_int_equal(payments_request_release(f->p, q.id, q.paid_op_id, T0_US), CF_ERR_CONFLICT);
    assert_int_equal(payments_request_settle(f->p, q.id, "snd_other", T0_US), CF_ERR_CONFLICT);
    assert_int_equal(payments_request_settle(f->p, q.id, q.paid_op_id, T0_US), CF_OK);
    assert_int_equal(payments_request_settle(f->p, q.id, q.paid_op_id, T0_US), CF_OK);
    struct pay_request out[2];
    assert_int_equal(list(f, "usr_B", PAY_REQUEST_INCOMING, PAY_REQUEST_PAID, 0, T0_US, out, 2), 1);
    assert_int_equal(payments_request_close(f->p, q.id, "usr_B", PAY_REQUEST_DECLINED, T0_US, &got),
                     CF_ERR_CONFLICT);
    assert_int_equal(
        payments_request_close(f->p, q.id, "usr_A", PAY_REQUEST_CANCELLED, T0_US, &got),
        CF_ERR_CONFLICT);
}

static void test_release_after_failure(void **state)
{
    struct fx *f = *state;
    struct pay_request q = put_one(f, "usr_A", "usr_B", 900, T0_US + HOUR_US), got;
    struct pay_op op;
    assert_int_equal(op_begin(f, &q, q.paid_op_id, "k-1", &op), CF_OK);
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_B", q.paid_op_id, T0_US), CF_OK);
    assert_int_equal(payments_request_release(f->p, q.id, q.paid_op_id, T0_US), CF_ERR_CONFLICT);
    op_finish(f, q.paid_op_id, PAY_STATUS_FAILED);
    assert_int_equal(status_at(f, q.id, T0_US), PAY_REQUEST_PENDING);
    assert_int_equal(payments_request_release(f->p, q.id, "snd_other", T0_US), CF_ERR_CONFLICT);
    assert_int_equal(payments_request_release(f->p, q.id, q.paid_op_id, T0_US), CF_OK);
    assert_int_equal(payments_request_get(f->p, q.id, T0_US, &got), CF_OK);
    assert_string_not_equal(got.paid_op_id, q.paid_op_id);
    assert_false(got.claimed);
    assert_int_equal(got.paid_op_status, -1);
    assert_int_equal(got.status, PAY_REQUEST_PENDING);
    /* the old operation can no longer claim it; a release is done once */
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_B", q.paid_op_id, T0_US),
                     CF_ERR_CONFLICT);
    assert_int_equal(payments_request_release(f->p, q.id, q.paid_op_id, T0_US), CF_ERR_CONFLICT);
    /* the next attempt pays it */
    assert_int_equal(op_begin(f, &got, got.paid_op_id, "k-2", &op), CF_OK);
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_B", got.paid_op_id, T0_US), CF_OK);
    op_finish(f, got.paid_op_id, PAY_STATUS_COMPLETED);
    assert_int_equal(status_at(f, q.id, T0_US), PAY_REQUEST_PAID);
}

static void test_decline_and_cancel(void **state)
{
    struct fx *f = *state;
    struct pay_request q = put_one(f, "usr_A", "usr_B", 300, T0_US + HOUR_US), got, before;
    before = q;
    /* the wrong party: not found, nothing changes */
    assert_int_equal(
        payments_request_close(f->p, q.id, "usr_A", PAY_REQUEST_DECLINED, T0_US, &before),
        CF_ERR_NOT_FOUND);
    assert_int_equal(
        payments_request_close(f->p, q.id, "usr_B", PAY_REQUEST_CANCELLED, T0_US, &before),
        CF_ERR_NOT_FOUND);
    assert_int_equal(
        payments_request_close(f->p, q.id, "usr_C", PAY_REQUEST_DECLINED, T0_US, &before),
        CF_ERR_NOT_FOUND);
    assert_string_equal(before.id, q.id); /* untouched on error */
    assert_int_equal(status_at(f, q.id, T0_US), PAY_REQUEST_PENDING);
    assert_int_equal(payments_request_close(f->p, q.id, "usr_B", PAY_REQUEST_DECLINED, T0_US, &got),
                     CF_OK);
    assert_int_equal(got.status, PAY_REQUEST_DECLINED);
    assert_int_equal(payments_request_close(f->p, q.id, "usr_B", PAY_REQUEST_DECLINED, T0_US, &got),
                     CF_OK); /* again: the same answer */
    assert_int_equal(
        payments_request_close(f->p, q.id, "usr_A", PAY_REQUEST_CANCELLED, T0_US, &got),
        CF_ERR_CONFLICT);
    /* a declined request cannot be claimed, even with its operation recorded */
    struct pay_op op;
    assert_int_equal(op_begin(f, &q, q.paid_op_id, "k-1", &op), CF_OK);
    assert_int_equal(payments_request_claim(f->p, q.id, "usr_B", q.paid_op_id, T0_US),
                     CF_ERR_CONFLICT);
    assert_int_equal(status_at(f, q.id, T0_US + 2 * HOUR_US), PAY_REQUEST_DECLINED);

    struct pay_request c = put_one(f, "usr_A", "usr_B", 300, T0_US + HOUR_US);
    assert_int_equal(
        payments_request_close(f->p, c.id, "usr_A", PAY_REQUEST_CANCELLED, T0_US, &got), CF_OK);
    assert_int_equal(got.status, PAY_REQUEST_CANCELLED);
    assert_int_equal(payments_request_claim(f->p, c.id, "usr_B", c.paid_op_id, T0_US),
                     CF_ERR_CONFLICT);
}

static void test_split_shares(void **state)
{
    (void)state;
    int64_t s[PAY_SPLIT_PEOPLE_MAX + 1];
    assert_int_equal(payments_split_shares(100, 3, s), CF_OK);
    assert_int_equal(s[0], 34);
    assert_int_equal(s[1], 33);
    assert_int_equal(s[2], 33);
    assert_int_equal(payments_split_shares(7, 1, s), CF_OK);
    assert_int_equal(s[0], 7);
    assert_int_equal(payments_split_shares(5, 5, s), CF_OK);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(s[i], 1);
    s[0] = -9;
    assert_int_equal(payments_split_shares(4, 5, s), CF_ERR_INVALID_AMOUNT);
    assert_int_equal(s[0], -9); /* untouched on error */
    assert_int_equal(payments_split_shares(0, 1, s), CF_ERR_INVALID_AMOUNT);
    /* every total and head count: the shares add up, differ by at most one, largest first */
    for (int64_t total = 1; total <= 300; total++) {
        for (size_t people = 1; people <= PAY_SPLIT_PEOPLE_MAX + 1; people++) {
            if (total < (int64_t)people)
                continue;
            assert_int_equal(payments_split_shares(total, people, s), CF_OK);
            int64_t sum = 0;
            for (size_t i = 0; i < people; i++) {
                sum += s[i];
                assert_true(s[i] >= 1 && s[0] - s[i] <= 1);
                if (i > 0)
                    assert_true(s[i] <= s[i - 1]);
            }
            assert_int_equal(sum, total);
        }
    }
    assert_int_equal(payments_split_shares(INT64_MAX, PAY_SPLIT_PEOPLE_MAX + 1, s), CF_OK);
    assert_int_equal(s[0] - s[PAY_SPLIT_PEOPLE_MAX], 1); /* INT64_MAX % 21 == 7 */
}

/* Two threads record a payment of one request at once: exactly one is recorded. */
struct race {
    struct fx *f;
    const struct pay_request *q;
    char idem[16];
    enum cf_err err;
};

static void *race_run(void *arg)
{
    struct race *r = arg;
    struct pay_op op;
    r->err = op_begin(r->f, r->q, r->q->paid_op_id, r->idem, &op);
    if (r->err == CF_OK)
        r->err = payments_request_claim(r->f->p, r->q->id, r->q->payer, r->q->paid_op_id, T0_US);
    return NULL;
}

static void test_concurrent_payments(void **state)
{
    struct fx *f = *state;
    for (int round = 0; round < 10; round++) {
        struct pay_request q = put_one(f, "usr_A", "usr_B", 50 + round, T0_US + HOUR_US);
        struct race r[2] = {{.f = f, .q = &q}, {.f = f, .q = &q}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++) {
            snprintf(r[i].idem, sizeof(r[i].idem), "k-%d-%d", round, i);
            assert_int_equal(pthread_create(&t[i], NULL, race_run, &r[i]), 0);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        int ok = (r[0].err == CF_OK) + (r[1].err == CF_OK);
        assert_int_equal(ok, 1);
        assert_true(r[0].err == CF_ERR_STORAGE_CONFLICT || r[1].err == CF_ERR_STORAGE_CONFLICT);
    }
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_round_trip),
        FX(test_expiry_on_read),
        FX(test_list_filters_and_cursor),
        FX(test_pending_limit),
        FX(test_pay_once),
        FX(test_release_after_failure),
        FX(test_decline_and_cancel),
        FX(test_concurrent_payments),
        cmocka_unit_test(test_split_shares),
    };
    int failed = cmocka_run_group_tests_name("requests_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("requests_postgres", tests, NULL, NULL);
    } else {
        printf("requests_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
