/*
 * test_paycodes.c - unit tests for src/payments/paycodes.c over the SQL facade, against SQLite
 * (a fresh file per test) and, when COFFER_TEST_PG_URL is set, against PostgreSQL (a fresh
 * database per test, dropped after): devices (numbers in range and distinct, the secret shown
 * once in base32 and sealed at rest, the active-device bound, revocation by the owner only, the
 * current code), checking codes at a fixed time (the window, the limit, the currency, revoked
 * and unknown devices, malformed text), single use (a replay, an older step after a newer one,
 * a claim after revocation, eight threads claiming one code: one wins), failed attempts (the
 * merchant's bound and its window, a locked device refusing its good codes, what is not
 * counted), and the hold state machine (open, begin and its retry, end in every way, the
 * operation row changed with it).
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
#include "crypto/paycode.h"
#include "crypto/totp.h"
#include "crypto/vault.h"
#include "payments/paycodes.h"
#include "payments/payments.h"
#include "store/sql/sql.h"

#define T0_S INT64_C(1700000010) /* 10 s into step 56666667 */
#define T0_US (T0_S * 1000000)
#define TARGET_BYTES_MAX 1024
#define CLAIM_THREADS 8

struct fx {
    char target[TARGET_BYTES_MAX];
    char pg_name[TESTDB_NAME_BYTES];
    char dir[TESTDB_DIR_BYTES];
    struct sqldb *db;
    struct vault *vault;
    struct payments *p;
};

static const struct vault *keys(void *ctx, uint32_t key_id)
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
    char *text = malloc(VAULT_KEYFILE_BYTES_MAX);
    bool ok = text != NULL && vault_keyfile_new(NULL, text, VAULT_KEYFILE_BYTES_MAX) == CF_OK &&
              vault_load(text, strlen(text), &f->vault) == CF_OK;
    free(text);
    if (!ok || !testdb_create("tp", false, f->dir, f->pg_name, f->target, sizeof(f->target)) ||
        sqldb_open(f->target, &f->db) != CF_OK)
        return -1;
    return payments_open(f->db, keys, f->vault, &f->p) == CF_OK ? 0 : -1;
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

struct dev {
    struct pay_paycode_device d;
    uint8_t secret[PAYCODE_SECRET_BYTES];
};

static void dev_add(struct fx *f, const char *user, int64_t limit, const char *currency,
                    struct dev *out)
{
    struct pay_paycode_device d;
    memset(&d, 0, sizeof(d));
    snprintf(d.user_id, sizeof(d.user_id), "%s", user);
    snprintf(d.label, sizeof(d.label), "phone of %s", user);
    snprintf(d.currency, sizeof(d.currency), "%s", currency);
    d.limit_minor = limit;
    char secret[PAY_PAYCODE_SECRET_TEXT_BYTES];
    assert_int_equal(payments_paycode_device_add(f->p, &d, T0_US, &out->d, secret), CF_OK);
    assert_int_equal(strlen(secret), 52);
    size_t n = 0;
    assert_int_equal(base32_decode(secret, out->secret, sizeof(out->secret), &n), CF_OK);
    assert_int_equal(n, PAYCODE_SECRET_BYTES);
}

static void code_of(const struct dev *d, int64_t unix_s, char out[PAYCODE_DIGITS + 1])
{
    assert_int_equal(paycode_generate(d->secret, d->d.device_number, unix_s, out), CF_OK);
}

static enum cf_err check(struct fx *f, const char *merchant, const char *code, int64_t amount,
                         const char *currency, int64_t now_us, struct pay_paycode_match *m)
{
    struct pay_paycode_use use = {.merchant_id = merchant,
                                  .code = code,
                                  .len = strlen(code),
                                  .amount_minor = amount,
                                  .currency = currency};
    return payments_paycode_check(f->p, &use, now_us, m);
}

/* Checks and claims a code for op_id at now; CF_OK when both pass. */
static enum cf_err use_code(struct fx *f, const char *merchant, const char *code, int64_t amount,
                            int64_t now_us, const char *op_id)
{
    struct pay_paycode_match m;
    enum cf_err err = check(f, merchant, code, amount, "USD", now_us, &m);
    if (err == CF_OK)
        err = payments_paycode_claim(f->p, &m, op_id, merchant, now_us);
    return err;
}

/* Devices -------------------------------------------------------------------------------------- */

static void test_devices(void **state)
{
    struct fx *f = *state;
    struct dev a, b;
    dev_add(f, "usr_a", 5000, "USD", &a);
    dev_add(f, "usr_a", 700, "EUR", &b);
    assert_true(a.d.device_number >= 1 && a.d.device_number <= PAYCODE_DEVICE_NUMBER_MAX);
    assert_true(a.d.device_number != b.d.device_number);
    assert_int_equal(a.d.created_at_us, T0_US);
    assert_int_equal(a.d.revoked_at_us, 0);
    assert_memory_not_equal(a.secret, b.secret, PAYCODE_SECRET_BYTES);

    /* the current code is the one the device computes; someone else's device has none */
    char code[PAYCODE_DIGITS + 1], mine[PAYCODE_DIGITS + 1];
    int64_t step = 0;
    assert_int_equal(payments_paycode_current(f->p, a.d.device_number, "usr_a", T0_US, code, &step),
                     CF_OK);
    code_of(&a, T0_S, mine);
    assert_string_equal(code, mine);
    assert_int_equal(step, T0_S / PAYCODE_STEP_S);
    assert_int_equal(payments_paycode_current(f->p, a.d.device_number, "usr_b", T0_US, code, &step),
                     CF_ERR_NOT_FOUND);

    struct pay_paycode_device list[PAY_PAYCODE_DEVICES_LIST_MAX];
    size_t n = 0;
    assert_int_equal(payments_paycode_devices_list(f->p, "usr_a", list, 10, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_int_equal(payments_paycode_devices_list(f->p, "usr_b", list, 10, &n), CF_OK);
    assert_int_equal(n, 0);

    /* revocation: the owner's only, once; the code and the current code are gone */
    struct pay_paycode_device revoked;
    assert_int_equal(
        payments_paycode_device_revoke(f->p, a.d.device_number, "usr_b", T0_US + 1, &revoked),
        CF_ERR_NOT_FOUND);
    assert_int_equal(
        payments_paycode_device_revoke(f->p, a.d.device_number, "usr_a", T0_US + 1, &revoked),
        CF_OK);
    assert_int_equal(revoked.revoked_at_us, T0_US + 1);
    assert_int_equal(
        payments_paycode_device_revoke(f->p, a.d.device_number, "usr_a", T0_US + 2, &revoked),
        CF_ERR_NOT_FOUND);
    assert_int_equal(payments_paycode_current(f->p, a.d.device_number, "usr_a", T0_US, code, &step),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(use_code(f, "mer_1", mine, 10, T0_US, "pay_1"), CF_ERR_INVALID_PAYCODE);
}

static void test_devices_bound(void **state)
{
    struct fx *f = *state;
    struct dev d[PAY_PAYCODE_DEVICES_MAX];
    for (int i = 0; i < PAY_PAYCODE_DEVICES_MAX; i++)
        dev_add(f, "usr_many", 100, "USD", &d[i]);
    struct pay_paycode_device extra = d[0].d, out;
    char secret[PAY_PAYCODE_SECRET_TEXT_BYTES] = "untouched";
    assert_int_equal(payments_paycode_device_add(f->p, &extra, T0_US, &out, secret),
                     CF_ERR_CONFLICT);
    assert_string_equal(secret, "untouched");
    /* a revoked device makes room; its number is never issued again */
    assert_int_equal(
        payments_paycode_device_revoke(f->p, d[3].d.device_number, "usr_many", T0_US, &out), CF_OK);
    struct dev again;
    dev_add(f, "usr_many", 100, "USD", &again);
    for (int i = 0; i < PAY_PAYCODE_DEVICES_MAX; i++)
        assert_true(again.d.device_number != d[i].d.device_number);
}

/* Checking and claiming ------------------------------------------------------------------------ */

static void test_window_and_rules(void **state)
{
    struct fx *f = *state;
    struct dev d;
    dev_add(f, "usr_w", 5000, "USD", &d);
    char code[PAYCODE_DIGITS + 1];
    struct pay_paycode_match m;
    /* two steps back and one ahead verify; three back and two ahead do not */
    for (int k = -4; k <= 3; k++) {
        code_of(&d, T0_S + k * PAYCODE_STEP_S, code);
        enum cf_err err = check(f, "mer_w", code, 100, "USD", T0_US, &m);
        assert_int_equal(err, k >= -2 && k <= 1 ? CF_OK : CF_ERR_INVALID_PAYCODE);
        if (err == CF_OK) {
            assert_int_equal(m.device_number, d.d.device_number);
            assert_string_equal(m.user_id, "usr_w");
            assert_int_equal(m.step, T0_S / PAYCODE_STEP_S + k);
        }
    }
    code_of(&d, T0_S, code);
    assert_int_equal(check(f, "mer_w", code, 5001, "USD", T0_US, &m), CF_ERR_INVALID_PAYCODE);
    assert_int_equal(check(f, "mer_w", code, 5000, "EUR", T0_US, &m), CF_ERR_INVALID_PAYCODE);
    assert_int_equal(check(f, "mer_w", code, 0, "USD", T0_US, &m), CF_ERR_INVALID_PAYCODE);
    assert_int_equal(check(f, "mer_w", code, 5000, "USD", T0_US, &m), CF_OK);
    static const char *const malformed[] = {"",
                                            "28",
                                            "281234567891234567x",
                                            "12345678901234567",
                                            "270000000011234567",
                                            "280000000001234567",
                                            "28123456789123456a"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        assert_int_equal(check(f, "mer_w", malformed[i], 10, "USD", T0_US, &m),
                         CF_ERR_INVALID_PAYCODE);
}

static void test_single_use(void **state)
{
    struct fx *f = *state;
    struct dev d;
    dev_add(f, "usr_s", 5000, "USD", &d);
    char older[PAYCODE_DIGITS + 1], now[PAYCODE_DIGITS + 1], newer[PAYCODE_DIGITS + 1];
    code_of(&d, T0_S - PAYCODE_STEP_S, older);
    code_of(&d, T0_S, now);
    code_of(&d, T0_S + PAYCODE_STEP_S, newer);
    struct pay_paycode_match m_now, m_older;
    assert_int_equal(check(f, "mer_s", now, 10, "USD", T0_US, &m_now), CF_OK);
    assert_int_equal(check(f, "mer_s", older, 10, "USD", T0_US, &m_older), CF_OK);
    assert_int_equal(payments_paycode_claim(f->p, &m_now, "pay_now", "mer_s", T0_US), CF_OK);
    /* the same code again: refused by the check, and by a claim made past the check */
    assert_int_equal(use_code(f, "mer_s", now, 10, T0_US, "pay_again"), CF_ERR_INVALID_PAYCODE);
    assert_int_equal(payments_paycode_claim(f->p, &m_now, "pay_again", "mer_s", T0_US),
                     CF_ERR_INVALID_PAYCODE);
    /* an older step, checked before the newer one was used, cannot be claimed after it */
    assert_int_equal(payments_paycode_claim(f->p, &m_older, "pay_older", "mer_s", T0_US),
                     CF_ERR_INVALID_PAYCODE);
    assert_int_equal(use_code(f, "mer_s", older, 10, T0_US, "pay_older"), CF_ERR_INVALID_PAYCODE);
    /* a newer step is still good, once; then a claim after revocation is refused */
    struct pay_paycode_match m_newer;
    assert_int_equal(check(f, "mer_s", newer, 10, "USD", T0_US, &m_newer), CF_OK);
    struct pay_paycode_device out;
    assert_int_equal(payments_paycode_device_revoke(f->p, d.d.device_number, "usr_s", T0_US, &out),
                     CF_OK);
    assert_int_equal(payments_paycode_claim(f->p, &m_newer, "pay_newer", "mer_s", T0_US),
                     CF_ERR_INVALID_PAYCODE);
}

struct claim_arg {
    struct fx *f;
    struct pay_paycode_match m;
    char op_id[PAY_ID_BYTES_MAX];
    enum cf_err err;
};

static void *claim_thread(void *p)
{
    struct claim_arg *a = p;
    a->err = payments_paycode_claim(a->f->p, &a->m, a->op_id, "mer_c", T0_US);
    return NULL;
}

static void test_concurrent_claims(void **state)
{
    struct fx *f = *state;
    struct dev d;
    dev_add(f, "usr_c", 5000, "USD", &d);
    for (int round = 0; round < 3; round++) {
        char code[PAYCODE_DIGITS + 1];
        code_of(&d, T0_S + (round - 1) * PAYCODE_STEP_S, code);
        struct claim_arg args[CLAIM_THREADS];
        pthread_t t[CLAIM_THREADS];
        for (int i = 0; i < CLAIM_THREADS; i++) {
            args[i].f = f;
            snprintf(args[i].op_id, sizeof(args[i].op_id), "pay_%d_%d", round, i);
            assert_int_equal(check(f, "mer_c", code, 10, "USD", T0_US, &args[i].m), CF_OK);
        }
        for (int i = 0; i < CLAIM_THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, claim_thread, &args[i]), 0);
        int won = 0;
        for (int i = 0; i < CLAIM_THREADS; i++) {
            assert_int_equal(pthread_join(t[i], NULL), 0);
            assert_true(args[i].err == CF_OK || args[i].err == CF_ERR_INVALID_PAYCODE);
            won += args[i].err == CF_OK;
        }
        assert_int_equal(won, 1);
    }
}

/* Failed attempts ------------------------------------------------------------------------------ */

static void test_merchant_throttle(void **state)
{
    struct fx *f = *state;
    struct dev d;
    dev_add(f, "usr_t", 5000, "USD", &d);
    char good[PAYCODE_DIGITS + 1], bad[64];
    code_of(&d, T0_S, good);
    struct pay_paycode_match m;
    /* real codes refused for their amount or currency are not counted */
    for (int i = 0; i < 2 * PAY_PAYCODE_MERCHANT_FAILURES_MAX; i++)
        assert_int_equal(check(f, "mer_t", good, 5001, "USD", T0_US, &m), CF_ERR_INVALID_PAYCODE);
    assert_int_equal(check(f, "mer_t", good, 10, "USD", T0_US, &m), CF_OK);
    /* guesses at unknown devices are */
    for (int i = 0; i < PAY_PAYCODE_MERCHANT_FAILURES_MAX; i++) {
        snprintf(bad, sizeof(bad), "28%09d%07d", 1 + i, i);
        if ((uint64_t)(1 + i) == d.d.device_number)
            continue;
        assert_int_equal(check(f, "mer_t", bad, 10, "USD", T0_US + i, &m), CF_ERR_INVALID_PAYCODE);
    }
    assert_int_equal(check(f, "mer_t", good, 10, "USD", T0_US + 100, &m), CF_ERR_TOO_MANY_ATTEMPTS);
    assert_int_equal(check(f, "mer_other", good, 10, "USD", T0_US + 100, &m), CF_OK);
    /* the window ends PAY_PAYCODE_FAILURE_WINDOW_S after its first failure */
    int64_t end_us = T0_US + PAY_PAYCODE_FAILURE_WINDOW_S * INT64_C(1000000);
    code_of(&d, end_us / 1000000, good);
    assert_int_equal(check(f, "mer_t", good, 10, "USD", end_us - 1, &m), CF_ERR_TOO_MANY_ATTEMPTS);
    assert_int_equal(check(f, "mer_t", good, 10, "USD", end_us + 1, &m), CF_OK);
}

static void test_device_throttle(void **state)
{
    struct fx *f = *state;
    struct dev d;
    dev_add(f, "usr_d", 5000, "USD", &d);
    char good[PAYCODE_DIGITS + 1], wrong[64];
    code_of(&d, T0_S, good);
    struct pay_paycode_match m;
    for (int i = 0; i < PAY_PAYCODE_DEVICE_FAILURES_MAX; i++) {
        snprintf(wrong, sizeof(wrong), "%.11s%07d", good, (atoi(good + 11) + 1 + i) % 10000000);
        assert_int_equal(check(f, i % 2 ? "mer_x" : "mer_y", wrong, 10, "USD", T0_US, &m),
                         CF_ERR_INVALID_PAYCODE);
    }
    /* the device's good code is refused everywhere, as any wrong one: the guesser learns
     * nothing; another device is not affected */
    assert_int_equal(check(f, "mer_z", good, 10, "USD", T0_US, &m), CF_ERR_INVALID_PAYCODE);
    struct dev other;
    dev_add(f, "usr_d", 5000, "USD", &other);
    code_of(&other, T0_S, good);
    assert_int_equal(check(f, "mer_z", good, 10, "USD", T0_US, &m), CF_OK);
}

/* Holds ---------------------------------------------------------------------------------------- */

static void hold_op(struct fx *f, const char *id, int64_t amount, struct pay_op *out)
{
    struct pay_op op;
    memset(&op, 0, sizeof(op));
    snprintf(op.id, sizeof(op.id), "%s", id);
    op.kind = PAY_KIND_HOLD;
    snprintf(op.idem, sizeof(op.idem), "mer_h:key-%s", id);
    snprintf(op.payer, sizeof(op.payer), "usr_h");
    snprintf(op.payee, sizeof(op.payee), "mer_h");
    op.payer_account = 11;
    op.payee_account = 12;
    op.amount_minor = op.credit_minor = amount;
    snprintf(op.currency, sizeof(op.currency), "USD");
    snprintf(op.credit_currency, sizeof(op.credit_currency), "USD");
    bool existed = true;
    assert_int_equal(payments_op_begin(f->p, &op, T0_US, out, &existed), CF_OK);
    assert_false(existed);
    struct pay_hold h;
    memset(&h, 0, sizeof(h));
    snprintf(h.op_id, sizeof(h.op_id), "%s", id);
    snprintf(h.merchant_id, sizeof(h.merchant_id), "mer_h");
    h.held_minor = amount;
    h.expires_at_us = T0_US + 60 * INT64_C(1000000);
    assert_int_equal(payments_hold_open(f->p, &h, 77, T0_US), CF_OK);
    assert_int_equal(payments_hold_open(f->p, &h, 77, T0_US), CF_ERR_CONFLICT); /* once */
    assert_int_equal(payments_op_get(f->p, id, out), CF_OK);
    assert_int_equal(out->status, PAY_STATUS_PENDING);
    assert_int_equal(out->hold_seq, 77);
}

static void test_hold_capture(void **state)
{
    struct fx *f = *state;
    struct pay_op op;
    hold_op(f, "hld_1", 5000, &op);
    struct pay_hold h;
    assert_int_equal(payments_hold_get(f->p, "hld_1", &h), CF_OK);
    assert_int_equal(h.state, PAY_HOLD_HELD);
    assert_int_equal(h.held_minor, 5000);
    assert_string_equal(pay_hold_state_name(h.state), "held");

    uint8_t hash_a[HASH_BYTES], hash_b[HASH_BYTES];
    hash_sha256("a", 1, hash_a);
    hash_sha256("b", 1, hash_b);
    struct pay_hold_resolve cap = {.to = PAY_HOLD_CAPTURING,
                                   .captured_minor = 3000,
                                   .fee_minor = 60,
                                   .idem = "mer_h:cap",
                                   .request_hash = hash_a};
    assert_int_equal(payments_hold_begin(f->p, "hld_1", &cap, T0_US, &h), CF_OK);
    assert_int_equal(h.state, PAY_HOLD_CAPTURING);
    assert_int_equal(h.captured_minor, 3000);
    /* its retry resumes it; the key with another request, or another request, is refused */
    assert_int_equal(payments_hold_begin(f->p, "hld_1", &cap, T0_US, &h), CF_OK);
    assert_int_equal(h.state, PAY_HOLD_CAPTURING);
    struct pay_hold_resolve reuse = cap;
    reuse.request_hash = hash_b;
    assert_int_equal(payments_hold_begin(f->p, "hld_1", &reuse, T0_US, &h), CF_ERR_IDEM_KEY_REUSED);
    struct pay_hold_resolve rel = {
        .to = PAY_HOLD_RELEASING, .idem = "mer_h:rel", .request_hash = hash_b};
    assert_int_equal(payments_hold_begin(f->p, "hld_1", &rel, T0_US, &h), CF_ERR_CONFLICT);

    struct pay_hold_outcome o = {
        .to = PAY_HOLD_CAPTURED, .ledger_seq = 77, .fee_seq = 80, .fee_minor = 60};
    assert_int_equal(payments_hold_end(f->p, "hld_1", 1u << PAY_HOLD_RELEASING, &o, T0_US),
                     CF_ERR_CONFLICT);
    assert_int_equal(payments_hold_end(f->p, "hld_1", 1u << PAY_HOLD_CAPTURING, &o, T0_US + 5),
                     CF_OK);
    assert_int_equal(payments_hold_end(f->p, "hld_1", 1u << PAY_HOLD_CAPTURING, &o, T0_US + 6),
                     CF_ERR_CONFLICT);
    assert_int_equal(payments_hold_get(f->p, "hld_1", &h), CF_OK);
    assert_int_equal(h.state, PAY_HOLD_CAPTURED);
    assert_int_equal(h.fee_seq, 80);
    assert_int_equal(payments_op_get(f->p, "hld_1", &op), CF_OK);
    assert_int_equal(op.status, PAY_STATUS_COMPLETED);
    assert_int_equal(op.amount_minor, 3000); /* what the customer paid */
    assert_int_equal(op.credit_minor, 3000);
    assert_int_equal(op.fee_minor, 60);
    assert_int_equal(op.ledger_seq, 77);
    /* the capture's retry finds it captured */
    assert_int_equal(payments_hold_begin(f->p, "hld_1", &cap, T0_US, &h), CF_OK);
    assert_int_equal(h.state, PAY_HOLD_CAPTURED);
}

static void test_hold_release_expire_refuse(void **state)
{
    struct fx *f = *state;
    struct pay_op op;
    uint8_t hash[HASH_BYTES];
    hash_sha256("r", 1, hash);
    struct pay_hold h;
    /* released: the operation fails with transfer_already_voided */
    hold_op(f, "hld_r", 900, &op);
    struct pay_hold_resolve rel = {
        .to = PAY_HOLD_RELEASING, .idem = "mer_h:r", .request_hash = hash};
    assert_int_equal(payments_hold_begin(f->p, "hld_r", &rel, T0_US, &h), CF_OK);
    struct pay_hold_outcome o = {.to = PAY_HOLD_RELEASED};
    assert_int_equal(payments_hold_end(f->p, "hld_r", 1u << PAY_HOLD_RELEASING, &o, T0_US), CF_OK);
    assert_int_equal(payments_op_get(f->p, "hld_r", &op), CF_OK);
    assert_int_equal(op.status, PAY_STATUS_FAILED);
    assert_string_equal(op.error, "transfer_already_voided");
    assert_int_equal(op.amount_minor, 900);

    /* expired straight from held */
    hold_op(f, "hld_e", 400, &op);
    o.to = PAY_HOLD_EXPIRED;
    assert_int_equal(payments_hold_end(f->p, "hld_e", 1u << PAY_HOLD_HELD, &o, T0_US), CF_OK);
    assert_int_equal(payments_op_get(f->p, "hld_e", &op), CF_OK);
    assert_string_equal(op.error, "transfer_expired");
    assert_int_equal(payments_hold_begin(f->p, "hld_e", &rel, T0_US, &h), CF_ERR_CONFLICT);

    /* refused by the ledger: back to held, the request forgotten, the operation untouched */
    hold_op(f, "hld_f", 300, &op);
    struct pay_hold_resolve cap = {.to = PAY_HOLD_CAPTURING,
                                   .captured_minor = 300,
                                   .fee_minor = 0,
                                   .idem = "mer_h:f",
                                   .request_hash = hash};
    assert_int_equal(payments_hold_begin(f->p, "hld_f", &cap, T0_US, &h), CF_OK);
    o.to = PAY_HOLD_HELD;
    assert_int_equal(payments_hold_end(f->p, "hld_f", 1u << PAY_HOLD_CAPTURING, &o, T0_US), CF_OK);
    assert_int_equal(payments_hold_get(f->p, "hld_f", &h), CF_OK);
    assert_int_equal(h.state, PAY_HOLD_HELD);
    assert_string_equal(h.resolve_idem, "");
    assert_int_equal(h.captured_minor, 0);
    assert_int_equal(payments_op_get(f->p, "hld_f", &op), CF_OK);
    assert_int_equal(op.status, PAY_STATUS_PENDING);
    /* so another request may release it */
    rel.idem = "mer_h:other";
    assert_int_equal(payments_hold_begin(f->p, "hld_f", &rel, T0_US, &h), CF_OK);
    assert_int_equal(h.state, PAY_HOLD_RELEASING);
    assert_int_equal(payments_hold_get(f->p, "hld_none", &h), CF_ERR_NOT_FOUND);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_devices),         FX(test_devices_bound),     FX(test_window_and_rules),
        FX(test_single_use),      FX(test_concurrent_claims), FX(test_merchant_throttle),
        FX(test_device_throttle), FX(test_hold_capture),      FX(test_hold_release_expire_refuse),
    };
    int failed = cmocka_run_group_tests_name("paycodes_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("paycodes_postgres", tests, NULL, NULL);
    } else {
        printf("paycodes_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
