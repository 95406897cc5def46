/*
 * test_ceiling.c - a leg's ceiling on its credited account (ledger.h, I6): the rule alone
 * (exactly at the ceiling passes, one over refuses with both accounts untouched byte for byte,
 * pending inflows count and a later post is never refused, a debit-normal credited account
 * ignores it, a negative ceiling is a malformed leg, no ceiling means none). Through the
 * writer (a group undone whole, a keyed refusal stored and answered again): test_writer.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <string.h>

#include "ledger/ledger.h"

#define T0 1700000000000000LL

/* Rule helpers --------------------------------------------------------------------------------- */

static struct ledger_account account(uint64_t id, uint8_t normal, uint32_t flags)
{
    struct ledger_account a;
    memset(&a, 0, sizeof(a));
    a.id = id;
    strcpy(a.currency, "EUR");
    a.normal = normal;
    a.kind = normal == LEDGER_NORMAL_DEBIT ? LEDGER_KIND_SYSTEM : LEDGER_KIND_CUSTOMER;
    a.flags = flags;
    return a;
}

static struct ledger_leg capped(uint64_t dr, uint64_t cr, int64_t amount, int64_t max_minor)
{
    struct ledger_leg l;
    memset(&l, 0, sizeof(l));
    l.debit_id = dr;
    l.credit_id = cr;
    l.amount = amount;
    strcpy(l.currency, "EUR");
    strcpy(l.code, "send");
    l.credit_capped = max_minor >= 0;
    l.credit_max_minor = max_minor >= 0 ? max_minor : 0;
    return l;
}

/* A bank (debit-normal) and a wallet holding `held` posted, with `pending_in` held inflows. */
struct pair {
    struct ledger_account bank, wallet;
};

static struct pair pair_make(int64_t held, int64_t pending_in)
{
    struct pair p = {account(1, LEDGER_NORMAL_DEBIT, 0),
                     account(2, LEDGER_NORMAL_CREDIT, LEDGER_ACCOUNT_NO_OVERDRAFT)};
    p.wallet.credits_posted = held;
    p.bank.debits_posted = held;
    p.wallet.credits_pending = pending_in;
    p.bank.debits_pending = pending_in;
    return p;
}

static void apply_expect_refused(struct pair *p, const struct ledger_leg *l)
{
    struct pair before = *p;
    assert_int_equal(ledger_leg_apply(&p->bank, &p->wallet, l), CF_ERR_LIMIT_EXCEEDED);
    assert_memory_equal(&p->bank, &before.bank, sizeof(before.bank));
    assert_memory_equal(&p->wallet, &before.wallet, sizeof(before.wallet));
}

/* Rules ---------------------------------------------------------------------------------------- */

static void test_exactly_at_ceiling_passes(void **state)
{
    (void)state;
    struct pair p = pair_make(7000, 0);
    struct ledger_leg l = capped(1, 2, 3000, 10000);
    assert_int_equal(ledger_leg_check(&l), CF_OK);
    assert_int_equal(ledger_leg_apply(&p.bank, &p.wallet, &l), CF_OK);
    assert_int_equal(ledger_account_balance(&p.wallet), 10000);
    assert_int_equal(ledger_account_balance(&p.bank), 10000);
}

static void test_one_over_refused(void **state)
{
    (void)state;
    struct pair p = pair_make(7000, 0);
    struct ledger_leg l = capped(1, 2, 3001, 10000);
    apply_expect_refused(&p, &l);
    l.pending = true; /* a hold is refused the same way */
    apply_expect_refused(&p, &l);
    struct ledger_leg zero = capped(1, 2, 1, 0); /* a ceiling of 0 takes nothing */
    struct pair empty = pair_make(0, 0);
    apply_expect_refused(&empty, &zero);
}

static void test_already_above_refused(void **state)
{
    (void)state;
    struct pair p = pair_make(12000, 0); /* the tier was lowered after it was funded */
    struct ledger_leg l = capped(1, 2, 1, 10000);
    apply_expect_refused(&p, &l);
}

static void test_pending_inflows_count(void **state)
{
    (void)state;
    struct pair p = pair_make(4000, 5000); /* a top-up hold of 5000 on its way in */
    struct ledger_leg over = capped(1, 2, 1001, 10000);
    apply_expect_refused(&p, &over);
    struct ledger_leg fits = capped(1, 2, 1000, 10000);
    fits.pending = true;
    assert_int_equal(ledger_leg_apply(&p.bank, &p.wallet, &fits), CF_OK);
    assert_int_equal(p.wallet.credits_pending, 6000);

    /* posting the holds is never refused: a post is at most its hold */
    struct ledger_entry h;
    memset(&h, 0, sizeof(h));
    h.seq = 9;
    h.type = LEDGER_ENTRY_PENDING;
    h.status = LEDGER_STATUS_PENDING;
    h.debit_id = 1;
    h.credit_id = 2;
    h.amount = 6000;
    int64_t applied = 0;
    assert_int_equal(
        ledger_pending_resolve(&p.bank, &p.wallet, &h, LEDGER_ENTRY_POST_PENDING, 0, T0, &applied),
        CF_OK);
    assert_int_equal(ledger_account_balance(&p.wallet), 10000);
    assert_int_equal(p.wallet.credits_pending, 0);
}

static void test_outflow_holds_do_not_make_room(void **state)
{
    (void)state;
    /* a held outflow may still be voided: the ceiling looks at the balance, not available */
    struct pair p = pair_make(9000, 0);
    p.wallet.debits_pending = 5000;
    p.bank.credits_pending = 5000;
    struct ledger_leg l = capped(1, 2, 2000, 10000);
    apply_expect_refused(&p, &l);
}

static void test_debit_normal_credited_ignores(void **state)
{
    (void)state;
    /* crediting a debit-normal account is its outflow: a ceiling means nothing there */
    struct ledger_account wallet = account(2, LEDGER_NORMAL_CREDIT, 0);
    struct ledger_account bank = account(1, LEDGER_NORMAL_DEBIT, 0);
    wallet.credits_posted = 50000;
    struct ledger_leg l = capped(2, 1, 40000, 10);
    assert_int_equal(ledger_leg_apply(&wallet, &bank, &l), CF_OK);
    assert_int_equal(ledger_account_balance(&wallet), 10000);
}

static void test_uncapped_and_malformed(void **state)
{
    (void)state;
    struct pair p = pair_make(1000000, 0);
    struct ledger_leg l = capped(1, 2, 5000, -1); /* no ceiling */
    assert_false(l.credit_capped);
    assert_int_equal(ledger_leg_apply(&p.bank, &p.wallet, &l), CF_OK);
    l.credit_capped = true;
    l.credit_max_minor = -1;
    assert_int_equal(ledger_leg_check(&l), CF_ERR_INVALID_FIELD);
    l.credit_max_minor = INT64_MAX; /* no overflow at the top */
    assert_int_equal(ledger_leg_check(&l), CF_OK);
    assert_int_equal(ledger_leg_apply(&p.bank, &p.wallet, &l), CF_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_at_ceiling_passes),
        cmocka_unit_test(test_one_over_refused),
        cmocka_unit_test(test_already_above_refused),
        cmocka_unit_test(test_pending_inflows_count),
        cmocka_unit_test(test_outflow_holds_do_not_make_room),
        cmocka_unit_test(test_debit_normal_credited_ignores),
        cmocka_unit_test(test_uncapped_and_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
