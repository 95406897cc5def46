/*
 * test_rules.c - unit tests for src/ledger/rules.c, rule by rule as ledger.h states them:
 * balance and available for credit- and debit-normal accounts, the shape checks of
 * ledger_leg_check, ledger_leg_apply (currency, frozen, no_overdraft at the exact edge, pending
 * holds, int64 overflow) and ledger_pending_resolve (post full/partial, void, expire, the status
 * machine, expiry, frozen accounts). Every error case also checks that the outputs are untouched,
 * byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <string.h>

#include "ledger/ledger.h"

#define T0 1700000000000000LL /* an arbitrary "now" in microseconds */

/* Helpers -------------------------------------------------------------------------------------- */

static struct ledger_account account(uint64_t id, const char *currency, uint8_t normal,
                                     uint32_t flags)
{
    struct ledger_account a;
    memset(&a, 0, sizeof(a));
    a.id = id;
    strcpy(a.currency, currency);
    a.normal = normal;
    a.kind = LEDGER_KIND_CUSTOMER;
    a.flags = flags;
    return a;
}

static struct ledger_leg leg(uint64_t dr, uint64_t cr, int64_t amount, const char *currency)
{
    struct ledger_leg l;
    memset(&l, 0, sizeof(l));
    l.debit_id = dr;
    l.credit_id = cr;
    l.amount = amount;
    strcpy(l.currency, currency);
    strcpy(l.code, "p2p");
    return l;
}

/* A credit-normal wallet holding `funds` (credits_posted), no_overdraft unless flags say. */
static struct ledger_account wallet(uint64_t id, int64_t funds, uint32_t flags)
{
    struct ledger_account a = account(id, "USD", LEDGER_NORMAL_CREDIT, flags);
    a.credits_posted = funds;
    return a;
}

/* Applies l and expects err with both accounts unchanged byte for byte. */
static void apply_expect_fail(struct ledger_account *dr, struct ledger_account *cr,
                              const struct ledger_leg *l, enum cf_err err)
{
    struct ledger_account dr0, cr0;
    memcpy(&dr0, dr, sizeof(dr0));
    memcpy(&cr0, cr, sizeof(cr0));
    assert_int_equal(ledger_leg_apply(dr, cr, l), err);
    assert_memory_equal(dr, &dr0, sizeof(dr0));
    assert_memory_equal(cr, &cr0, sizeof(cr0));
}

/* Balances ------------------------------------------------------------------------------------- */

static void test_balance_credit_normal(void **state)
{
    (void)state;
    struct ledger_account a = account(1, "USD", LEDGER_NORMAL_CREDIT, 0);
    a.credits_posted = 500;
    a.debits_posted = 200;
    assert_int_equal(ledger_account_balance(&a), 300);
    assert_int_equal(ledger_account_available(&a), 300);
    a.debits_pending = 50;  /* outflow held: reduces available */
    a.credits_pending = 70; /* inflow held: does not count yet */
    assert_int_equal(ledger_account_balance(&a), 300);
    assert_int_equal(ledger_account_available(&a), 250);
    a.debits_posted = 900; /* overdraft account may go below zero */
    assert_int_equal(ledger_account_balance(&a), -400);
    assert_int_equal(ledger_account_available(&a), -450);
}

static void test_balance_debit_normal(void **state)
{
    (void)state;
    struct ledger_account a = account(1, "USD", LEDGER_NORMAL_DEBIT, 0);
    a.debits_posted = 500;
    a.credits_posted = 200;
    assert_int_equal(ledger_account_balance(&a), 300);
    a.credits_pending = 50;
    a.debits_pending = 70;
    assert_int_equal(ledger_account_balance(&a), 300);
    assert_int_equal(ledger_account_available(&a), 250);
}

static void test_balance_extremes(void **state)
{
    (void)state;
    struct ledger_account a = account(1, "USD", LEDGER_NORMAL_CREDIT, 0);
    a.credits_posted = INT64_MAX;
    assert_true(ledger_account_balance(&a) == INT64_MAX);
    a.credits_posted = 0;
    a.debits_posted = INT64_MAX;
    a.debits_pending = INT64_MAX;
    assert_true(ledger_account_balance(&a) == -INT64_MAX);
    assert_true(ledger_account_available(&a) == INT64_MIN); /* clamped, never wraps */
}

static void test_account_is_valid(void **state)
{
    (void)state;
    struct ledger_account a = wallet(1, 100, LEDGER_ACCOUNT_NO_OVERDRAFT);
    assert_true(ledger_account_is_valid(&a));
    a.debits_pending = 100;
    assert_true(ledger_account_is_valid(&a)); /* available exactly 0 */
    a.debits_pending = 101;
    assert_false(ledger_account_is_valid(&a)); /* I2 */
    a.flags = 0;
    assert_true(ledger_account_is_valid(&a)); /* overdraft allowed */
    a.credits_posted = -1;
    assert_false(ledger_account_is_valid(&a)); /* I3 */
    a = wallet(1, 100, 0);
    a.normal = 2;
    assert_false(ledger_account_is_valid(&a));
    a = wallet(1, 100, 0);
    a.kind = 3;
    assert_false(ledger_account_is_valid(&a));
}

/* ledger_leg_check ----------------------------------------------------------------------------- */

static void test_leg_check_ok(void **state)
{
    (void)state;
    struct ledger_leg l = leg(1, 2, 1, "USD");
    assert_int_equal(ledger_leg_check(&l), CF_OK);
    l.pending = true;
    l.timeout_s = LEDGER_TIMEOUT_S_MAX; /* the largest timeout is allowed */
    l.metadata = "x";
    l.metadata_len = LEDGER_METADATA_BYTES_MAX; /* length is what is checked */
    memset(l.code, 'c', LEDGER_CODE_BYTES_MAX);
    l.code[LEDGER_CODE_BYTES_MAX] = '\0';
    assert_int_equal(ledger_leg_check(&l), CF_OK);
}

static void test_leg_check_amount(void **state)
{
    (void)state;
    struct ledger_leg l = leg(1, 2, 0, "USD");
    assert_int_equal(ledger_leg_check(&l), CF_ERR_INVALID_AMOUNT);
    l.amount = -1;
    assert_int_equal(ledger_leg_check(&l), CF_ERR_INVALID_AMOUNT);
    l.amount = INT64_MIN;
    assert_int_equal(ledger_leg_check(&l), CF_ERR_INVALID_AMOUNT);
}

static void test_leg_check_accounts(void **state)
{
    (void)state;
    struct ledger_leg l = leg(7, 7, 10, "USD");
    assert_int_equal(ledger_leg_check(&l), CF_ERR_SAME_ACCOUNT);
    l = leg(0, 7, 10, "USD");
    assert_int_equal(ledger_leg_check(&l), CF_ERR_ACCOUNT_NOT_FOUND);
    l = leg(7, 0, 10, "USD");
    assert_int_equal(ledger_leg_check(&l), CF_ERR_ACCOUNT_NOT_FOUND);
}

static void test_leg_check_code(void **state)
{
    (void)state;
    struct ledger_leg l = leg(1, 2, 10, "USD");
    l.code[0] = '\0';
    assert_int_equal(ledger_leg_check(&l), CF_ERR_INVALID_FIELD);
    /* A code longer than LEDGER_CODE_BYTES_MAX cannot be held NUL-terminated in the leg's
     * array; the longest that fits (above, 32 bytes) is accepted. */
}

static void test_leg_check_timeout(void **state)
{
    (void)state;
    struct ledger_leg l = leg(1, 2, 10, "USD");
    l.timeout_s = 60; /* without pending */
    assert_int_equal(ledger_leg_check(&l), CF_ERR_TIMEOUT_INVALID);
    l.pending = true;
    assert_int_equal(ledger_leg_check(&l), CF_OK);
    l.timeout_s = LEDGER_TIMEOUT_S_MAX + 1;
    assert_int_equal(ledger_leg_check(&l), CF_ERR_TIMEOUT_INVALID);
    l.timeout_s = -1;
    assert_int_equal(ledger_leg_check(&l), CF_ERR_TIMEOUT_INVALID);
    l.timeout_s = 0;
    assert_int_equal(ledger_leg_check(&l), CF_OK);
}

static void test_leg_check_metadata(void **state)
{
    (void)state;
    static char big[LEDGER_METADATA_BYTES_MAX + 1];
    memset(big, 'm', sizeof(big));
    struct ledger_leg l = leg(1, 2, 10, "USD");
    l.metadata = big;
    l.metadata_len = LEDGER_METADATA_BYTES_MAX + 1;
    assert_int_equal(ledger_leg_check(&l), CF_ERR_INVALID_FIELD);
    l.metadata_len = LEDGER_METADATA_BYTES_MAX;
    assert_int_equal(ledger_leg_check(&l), CF_OK);
}

/* ledger_leg_apply ----------------------------------------------------------------------------- */

static void test_apply_posted(void **state)
{
    (void)state;
    struct ledger_account dr = wallet(1, 1000, LEDGER_ACCOUNT_NO_OVERDRAFT), cr = wallet(2, 0, 0);
    struct ledger_leg l = leg(1, 2, 300, "USD");
    assert_int_equal(ledger_leg_apply(&dr, &cr, &l), CF_OK);
    assert_int_equal(dr.debits_posted, 300);
    assert_int_equal(dr.credits_posted, 1000);
    assert_int_equal(cr.credits_posted, 300);
    assert_int_equal(dr.debits_pending + dr.credits_pending + cr.debits_pending, 0);
    assert_int_equal(cr.credits_pending + cr.debits_posted, 0);
    assert_int_equal(ledger_account_balance(&dr), 700);
    assert_int_equal(ledger_account_balance(&cr), 300);
}

static void test_apply_pending(void **state)
{
    (void)state;
    struct ledger_account dr = wallet(1, 1000, LEDGER_ACCOUNT_NO_OVERDRAFT), cr = wallet(2, 0, 0);
    struct ledger_leg l = leg(1, 2, 400, "USD");
    l.pending = true;
    assert_int_equal(ledger_leg_apply(&dr, &cr, &l), CF_OK);
    assert_int_equal(dr.debits_pending, 400);
    assert_int_equal(cr.credits_pending, 400);
    assert_int_equal(dr.debits_posted, 0);
    assert_int_equal(cr.credits_posted, 0);
    assert_int_equal(ledger_account_balance(&dr), 1000);
    assert_int_equal(ledger_account_available(&dr), 600);
    assert_int_equal(ledger_account_available(&cr), 0); /* held inflow not available */
}

static void test_apply_currency_mismatch(void **state)
{
    (void)state;
    struct ledger_account dr = wallet(1, 1000, 0), cr = wallet(2, 0, 0);
    struct ledger_leg l = leg(1, 2, 10, "EUR"); /* both accounts USD */
    apply_expect_fail(&dr, &cr, &l, CF_ERR_CURRENCY_MISMATCH);
    l = leg(1, 2, 10, "USD");
    strcpy(cr.currency, "EUR"); /* credit side differs */
    apply_expect_fail(&dr, &cr, &l, CF_ERR_CURRENCY_MISMATCH);
    strcpy(cr.currency, "USD");
    strcpy(dr.currency, "JPY"); /* debit side differs */
    apply_expect_fail(&dr, &cr, &l, CF_ERR_CURRENCY_MISMATCH);
}

static void test_apply_same_account_id(void **state)
{
    (void)state;
    struct ledger_account dr = wallet(5, 1000, 0), cr = wallet(5, 0, 0);
    struct ledger_leg l = leg(5, 6, 10, "USD");
    apply_expect_fail(&dr, &cr, &l, CF_ERR_SAME_ACCOUNT);
}

static void test_apply_frozen(void **state)
{
    (void)state;
    struct ledger_account dr = wallet(1, 1000, LEDGER_ACCOUNT_FROZEN), cr = wallet(2, 0, 0);
    struct ledger_leg l = leg(1, 2, 10, "USD");
    apply_expect_fail(&dr, &cr, &l, CF_ERR_ACCOUNT_FROZEN); /* frozen debit account */
    l.pending = true;
    apply_expect_fail(&dr, &cr, &l, CF_ERR_ACCOUNT_FROZEN); /* holds too */

    /* A frozen credit-normal account may still receive money. */
    dr = wallet(1, 1000, 0);
    cr = wallet(2, 0, LEDGER_ACCOUNT_FROZEN);
    l.pending = false;
    assert_int_equal(ledger_leg_apply(&dr, &cr, &l), CF_OK);
    assert_int_equal(cr.credits_posted, 10);

    /* A credit to a debit-normal account is its outflow: blocked when frozen. */
    struct ledger_account bank = account(3, "USD", LEDGER_NORMAL_DEBIT, LEDGER_ACCOUNT_FROZEN);
    bank.debits_posted = 5000;
    l = leg(1, 3, 10, "USD");
    apply_expect_fail(&dr, &bank, &l, CF_ERR_ACCOUNT_FROZEN);
}

static void test_apply_no_overdraft_edge(void **state)
{
    (void)state;
    struct ledger_account dr = wallet(1, 100, LEDGER_ACCOUNT_NO_OVERDRAFT), cr = wallet(2, 0, 0);
    struct ledger_leg l = leg(1, 2, 101, "USD");
    apply_expect_fail(&dr, &cr, &l, CF_ERR_INSUFFICIENT_FUNDS); /* one over */
    l.pending = true;
    apply_expect_fail(&dr, &cr, &l, CF_ERR_INSUFFICIENT_FUNDS);
    l = leg(1, 2, 100, "USD");
    assert_int_equal(ledger_leg_apply(&dr, &cr, &l), CF_OK); /* exactly to zero */
    assert_int_equal(ledger_account_available(&dr), 0);
    l.amount = 1;
    apply_expect_fail(&dr, &cr, &l, CF_ERR_INSUFFICIENT_FUNDS);
}

static void test_apply_no_overdraft_debit_normal(void **state)
{
    (void)state;
    /* A debit-normal no_overdraft account: credits are its outflow. */
    struct ledger_account src = wallet(1, 1000, 0);
    struct ledger_account clr = account(2, "USD", LEDGER_NORMAL_DEBIT, LEDGER_ACCOUNT_NO_OVERDRAFT);
    clr.debits_posted = 50;
    struct ledger_leg l = leg(1, 2, 51, "USD");
    apply_expect_fail(&src, &clr, &l, CF_ERR_INSUFFICIENT_FUNDS);
    l.amount = 50;
    assert_int_equal(ledger_leg_apply(&src, &clr, &l), CF_OK);
    assert_int_equal(ledger_account_available(&clr), 0);
}

static void test_apply_overdraft_allowed_without_flag(void **state)
{
    (void)state;
    struct ledger_account dr = wallet(1, 0, 0), cr = wallet(2, 0, 0);
    struct ledger_leg l = leg(1, 2, 5000, "USD");
    assert_int_equal(ledger_leg_apply(&dr, &cr, &l), CF_OK);
    assert_int_equal(ledger_account_balance(&dr), -5000);
    /* A debit-normal funding account grows when debited, its credit side can go negative */
    struct ledger_account fund = account(3, "USD", LEDGER_NORMAL_DEBIT, 0);
    l = leg(2, 3, 7000, "USD");
    assert_int_equal(ledger_leg_apply(&cr, &fund, &l), CF_OK);
    assert_int_equal(ledger_account_balance(&fund), -7000);
}

static void test_apply_pending_holds_reduce_available(void **state)
{
    (void)state;
    struct ledger_account dr = wallet(1, 100, LEDGER_ACCOUNT_NO_OVERDRAFT), cr = wallet(2, 0, 0);
    struct ledger_leg hold = leg(1, 2, 60, "USD");
    hold.pending = true;
    assert_int_equal(ledger_leg_apply(&dr, &cr, &hold), CF_OK);
    assert_int_equal(ledger_account_available(&dr), 40);
    struct ledger_leg l = leg(1, 2, 41, "USD");
    apply_expect_fail(&dr, &cr, &l, CF_ERR_INSUFFICIENT_FUNDS);
    l.amount = 40;
    assert_int_equal(ledger_leg_apply(&dr, &cr, &l), CF_OK);
    assert_int_equal(ledger_account_available(&dr), 0);
    hold.amount = 1;
    apply_expect_fail(&dr, &cr, &hold, CF_ERR_INSUFFICIENT_FUNDS);
}

static void test_apply_overflow(void **state)
{
    (void)state;
    struct ledger_account dr = wallet(1, 0, 0), cr = wallet(2, 0, 0);
    dr.debits_posted = INT64_MAX;
    struct ledger_leg l = leg(1, 2, 1, "USD");
    apply_expect_fail(&dr, &cr, &l, CF_ERR_AMOUNT_OVERFLOW); /* debit side */
    dr.debits_posted = 0;
    cr.credits_posted = INT64_MAX - 4;
    l.amount = 5;
    apply_expect_fail(&dr, &cr, &l, CF_ERR_AMOUNT_OVERFLOW); /* credit side */
    l.amount = 4;
    assert_int_equal(ledger_leg_apply(&dr, &cr, &l), CF_OK); /* exactly INT64_MAX is fine */
    assert_true(cr.credits_posted == INT64_MAX);
    l.pending = true;
    dr.debits_pending = INT64_MAX;
    apply_expect_fail(&dr, &cr, &l, CF_ERR_AMOUNT_OVERFLOW); /* pending totals too */
    dr.debits_pending = 0;
    cr.credits_pending = INT64_MAX;
    apply_expect_fail(&dr, &cr, &l, CF_ERR_AMOUNT_OVERFLOW);
}

/* ledger_pending_resolve ----------------------------------------------------------------------- */

struct hold {
    struct ledger_account dr, cr;
    struct ledger_entry p;
};

/* A hold of `amount` from a no_overdraft wallet of 1000 to a wallet, as entry seq 10. */
static struct hold hold_make(int64_t amount, int64_t expires_at_us)
{
    struct hold h;
    h.dr = wallet(1, 1000, LEDGER_ACCOUNT_NO_OVERDRAFT);
    h.cr = wallet(2, 0, 0);
    struct ledger_leg l = leg(1, 2, amount, "USD");
    l.pending = true;
    assert_int_equal(ledger_leg_apply(&h.dr, &h.cr, &l), CF_OK);
    memset(&h.p, 0, sizeof(h.p));
    h.p.seq = 10;
    h.p.type = LEDGER_ENTRY_PENDING;
    h.p.status = LEDGER_STATUS_PENDING;
    h.p.debit_id = 1;
    h.p.credit_id = 2;
    h.p.amount = amount;
    strcpy(h.p.currency, "USD");
    strcpy(h.p.code, "hold");
    h.p.group_seq = 10;
    h.p.expires_at_us = expires_at_us;
    h.p.created_at_us = T0;
    return h;
}

/* Resolves and expects err, with accounts, entry and the out value untouched. */
static void resolve_expect_fail(struct hold *h, uint8_t type, int64_t amount, int64_t now,
                                enum cf_err err)
{
    struct hold h0;
    memcpy(&h0, h, sizeof(h0));
    int64_t applied = -777;
    assert_int_equal(ledger_pending_resolve(&h->dr, &h->cr, &h->p, type, amount, now, &applied),
                     err);
    assert_memory_equal(&h->dr, &h0.dr, sizeof(h0.dr));
    assert_memory_equal(&h->cr, &h0.cr, sizeof(h0.cr));
    assert_memory_equal(&h->p, &h0.p, sizeof(h0.p));
    assert_true(applied == -777);
}

static void test_resolve_post_full(void **state)
{
    (void)state;
    struct hold h = hold_make(400, 0);
    int64_t applied = 0;
    assert_int_equal(
        ledger_pending_resolve(&h.dr, &h.cr, &h.p, LEDGER_ENTRY_POST_PENDING, 0, T0, &applied),
        CF_OK);
    assert_int_equal(applied, 400);
    assert_int_equal(h.p.status, LEDGER_STATUS_POSTED);
    assert_int_equal(h.p.resolved_amount, 400);
    assert_int_equal(h.dr.debits_pending, 0);
    assert_int_equal(h.cr.credits_pending, 0);
    assert_int_equal(h.dr.debits_posted, 400);
    assert_int_equal(h.cr.credits_posted, 400);
    assert_int_equal(ledger_account_available(&h.dr), 600);
}

static void test_resolve_post_partial(void **state)
{
    (void)state;
    struct hold h = hold_make(400, 0);
    int64_t applied = 0;
    assert_int_equal(
        ledger_pending_resolve(&h.dr, &h.cr, &h.p, LEDGER_ENTRY_POST_PENDING, 150, T0, &applied),
        CF_OK);
    assert_int_equal(applied, 150);
    assert_int_equal(h.p.status, LEDGER_STATUS_POSTED);
    assert_int_equal(h.p.resolved_amount, 150);
    assert_int_equal(h.dr.debits_pending, 0); /* the whole hold is released */
    assert_int_equal(h.dr.debits_posted, 150);
    assert_int_equal(h.cr.credits_pending, 0);
    assert_int_equal(h.cr.credits_posted, 150);
    assert_int_equal(ledger_account_available(&h.dr), 850);
}

static void test_resolve_post_exact_held(void **state)
{
    (void)state;
    struct hold h = hold_make(400, 0);
    int64_t applied = 0;
    assert_int_equal(
        ledger_pending_resolve(&h.dr, &h.cr, &h.p, LEDGER_ENTRY_POST_PENDING, 400, T0, &applied),
        CF_OK);
    assert_int_equal(applied, 400);
}

static void test_resolve_post_too_much_or_negative(void **state)
{
    (void)state;
    struct hold h = hold_make(400, 0);
    resolve_expect_fail(&h, LEDGER_ENTRY_POST_PENDING, 401, T0, CF_ERR_EXCEEDS_PENDING);
    resolve_expect_fail(&h, LEDGER_ENTRY_POST_PENDING, INT64_MAX, T0, CF_ERR_EXCEEDS_PENDING);
    resolve_expect_fail(&h, LEDGER_ENTRY_POST_PENDING, -1, T0, CF_ERR_INVALID_AMOUNT);
}

static void test_resolve_void(void **state)
{
    (void)state;
    struct hold h = hold_make(400, 0);
    int64_t applied = 0;
    assert_int_equal(
        ledger_pending_resolve(&h.dr, &h.cr, &h.p, LEDGER_ENTRY_VOID_PENDING, 0, T0, &applied),
        CF_OK);
    assert_int_equal(applied, 400); /* the released amount */
    assert_int_equal(h.p.status, LEDGER_STATUS_VOIDED);
    assert_int_equal(h.p.resolved_amount, 0);
    assert_int_equal(h.dr.debits_pending + h.dr.debits_posted, 0);
    assert_int_equal(h.cr.credits_pending + h.cr.credits_posted, 0);
    assert_int_equal(ledger_account_available(&h.dr), 1000);
}

static void test_resolve_double_post_and_after_void(void **state)
{
    (void)state;
    struct hold h = hold_make(400, 0);
    int64_t applied = 0;
    assert_int_equal(
        ledger_pending_resolve(&h.dr, &h.cr, &h.p, LEDGER_ENTRY_POST_PENDING, 0, T0, &applied),
        CF_OK);
    resolve_expect_fail(&h, LEDGER_ENTRY_POST_PENDING, 0, T0, CF_ERR_ALREADY_POSTED);
    resolve_expect_fail(&h, LEDGER_ENTRY_VOID_PENDING, 0, T0, CF_ERR_ALREADY_POSTED);

    struct hold v = hold_make(400, 0);
    assert_int_equal(
        ledger_pending_resolve(&v.dr, &v.cr, &v.p, LEDGER_ENTRY_VOID_PENDING, 0, T0, &applied),
        CF_OK);
    resolve_expect_fail(&v, LEDGER_ENTRY_POST_PENDING, 0, T0, CF_ERR_ALREADY_VOIDED);
    resolve_expect_fail(&v, LEDGER_ENTRY_VOID_PENDING, 0, T0, CF_ERR_ALREADY_VOIDED);
}

static void test_resolve_expiry(void **state)
{
    (void)state;
    int64_t exp = T0 + 60 * 1000000LL;
    struct hold h = hold_make(400, exp);
    resolve_expect_fail(&h, LEDGER_ENTRY_EXPIRE_PENDING, 0, exp - 1, CF_ERR_TRANSFER_NOT_PENDING);
    resolve_expect_fail(&h, LEDGER_ENTRY_POST_PENDING, 0, exp, CF_ERR_TRANSFER_EXPIRED);
    resolve_expect_fail(&h, LEDGER_ENTRY_VOID_PENDING, 0, exp + 1, CF_ERR_TRANSFER_EXPIRED);

    int64_t applied = 0;
    struct hold ok = hold_make(400, exp); /* one microsecond before expiry it can still post */
    assert_int_equal(ledger_pending_resolve(&ok.dr, &ok.cr, &ok.p, LEDGER_ENTRY_POST_PENDING, 0,
                                            exp - 1, &applied),
                     CF_OK);

    assert_int_equal(
        ledger_pending_resolve(&h.dr, &h.cr, &h.p, LEDGER_ENTRY_EXPIRE_PENDING, 0, exp, &applied),
        CF_OK);
    assert_int_equal(applied, 400);
    assert_int_equal(h.p.status, LEDGER_STATUS_EXPIRED);
    assert_int_equal(h.dr.debits_pending + h.dr.debits_posted, 0);
    assert_int_equal(h.cr.credits_pending + h.cr.credits_posted, 0);
    resolve_expect_fail(&h, LEDGER_ENTRY_POST_PENDING, 0, exp, CF_ERR_TRANSFER_EXPIRED);
    resolve_expect_fail(&h, LEDGER_ENTRY_EXPIRE_PENDING, 0, exp, CF_ERR_TRANSFER_EXPIRED);
}

static void test_resolve_expire_without_timeout_refused(void **state)
{
    (void)state;
    struct hold h = hold_make(400, 0);
    resolve_expect_fail(&h, LEDGER_ENTRY_EXPIRE_PENDING, 0, INT64_MAX, CF_ERR_TRANSFER_NOT_PENDING);
}

static void test_resolve_frozen(void **state)
{
    (void)state;
    struct hold h = hold_make(400, 0);
    h.dr.flags |= LEDGER_ACCOUNT_FROZEN;
    resolve_expect_fail(&h, LEDGER_ENTRY_POST_PENDING, 0, T0, CF_ERR_ACCOUNT_FROZEN);
    resolve_expect_fail(&h, LEDGER_ENTRY_POST_PENDING, 100, T0, CF_ERR_ACCOUNT_FROZEN);
    int64_t applied = 0;
    assert_int_equal(
        ledger_pending_resolve(&h.dr, &h.cr, &h.p, LEDGER_ENTRY_VOID_PENDING, 0, T0, &applied),
        CF_OK); /* releasing a hold is not a debit */
    assert_int_equal(h.p.status, LEDGER_STATUS_VOIDED);
    assert_int_equal(h.dr.debits_pending, 0);
}

static void test_resolve_not_pending_entry(void **state)
{
    (void)state;
    struct hold h = hold_make(400, 0);
    h.p.type = LEDGER_ENTRY_TRANSFER;
    h.p.status = LEDGER_STATUS_POSTED;
    resolve_expect_fail(&h, LEDGER_ENTRY_POST_PENDING, 0, T0, CF_ERR_TRANSFER_NOT_PENDING);
    resolve_expect_fail(&h, LEDGER_ENTRY_VOID_PENDING, 0, T0, CF_ERR_TRANSFER_NOT_PENDING);
    h.p.type = LEDGER_ENTRY_POST_PENDING;
    resolve_expect_fail(&h, LEDGER_ENTRY_VOID_PENDING, 0, T0, CF_ERR_TRANSFER_NOT_PENDING);
}

/* Names ---------------------------------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(ledger_entry_type_name(LEDGER_ENTRY_TRANSFER), "transfer");
    assert_string_equal(ledger_entry_type_name(LEDGER_ENTRY_EXPIRE_PENDING), "expire_pending");
    assert_string_equal(ledger_status_name(LEDGER_STATUS_VOIDED), "voided");
    assert_string_equal(ledger_normal_name(LEDGER_NORMAL_DEBIT), "debit");
    assert_string_equal(ledger_normal_name(LEDGER_NORMAL_CREDIT), "credit");
    for (int k = 0; k <= LEDGER_KIND_SYSTEM; k++)
        assert_int_equal(ledger_kind_parse(ledger_kind_name((uint8_t)k)), k);
    assert_int_equal(ledger_kind_parse("bank"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_balance_credit_normal),
        cmocka_unit_test(test_balance_debit_normal),
        cmocka_unit_test(test_balance_extremes),
        cmocka_unit_test(test_account_is_valid),
        cmocka_unit_test(test_leg_check_ok),
        cmocka_unit_test(test_leg_check_amount),
        cmocka_unit_test(test_leg_check_accounts),
        cmocka_unit_test(test_leg_check_code),
        cmocka_unit_test(test_leg_check_timeout),
        cmocka_unit_test(test_leg_check_metadata),
        cmocka_unit_test(test_apply_posted),
        cmocka_unit_test(test_apply_pending),
        cmocka_unit_test(test_apply_currency_mismatch),
        cmocka_unit_test(test_apply_same_account_id),
        cmocka_unit_test(test_apply_frozen),
        cmocka_unit_test(test_apply_no_overdraft_edge),
        cmocka_unit_test(test_apply_no_overdraft_debit_normal),
        cmocka_unit_test(test_apply_overdraft_allowed_without_flag),
        cmocka_unit_test(test_apply_pending_holds_reduce_available),
        cmocka_unit_test(test_apply_overflow),
        cmocka_unit_test(test_resolve_post_full),
        cmocka_unit_test(test_resolve_post_partial),
        cmocka_unit_test(test_resolve_post_exact_held),
        cmocka_unit_test(test_resolve_post_too_much_or_negative),
        cmocka_unit_test(test_resolve_void),
        cmocka_unit_test(test_resolve_double_post_and_after_void),
        cmocka_unit_test(test_resolve_expiry),
        cmocka_unit_test(test_resolve_expire_without_timeout_refused),
        cmocka_unit_test(test_resolve_frozen),
        cmocka_unit_test(test_resolve_not_pending_entry),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
