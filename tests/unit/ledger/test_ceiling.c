/*
 * test_ceiling.c - a leg's ceiling on its credited account (ledger.h, I6): the rule alone
 * (exactly at the ceiling passes, one over refuses with both accounts untouched byte for byte,
 * pending inflows count and a later post is never refused, a debit-normal credited account
 * ignores it, a negative ceiling is a malformed leg, no ceiling means none) and through the
 * writer over a real SQLite store (a multi-leg group whose later leg meets the ceiling leaves
 * no trace of its earlier legs, and a keyed refusal is stored as limit_exceeded and replayed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hash.h"
#include "ledger/writer.h"

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

/* Writer --------------------------------------------------------------------------------------- */

struct fx {
    char dir[64];
    struct store *s;
    struct writer *w;
    struct cf_clock clock;
    struct arena *arena;
};

static void dir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    strcpy(f->dir, "/tmp/coffer-test-ceiling-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    cf_clock_fake_init(&f->clock, T0);
    f->arena = arena_create(4u << 20);
    struct store_options o = {.location = f->dir, .readers = 2, .create = true};
    if (f->arena == NULL || store_open(&o, &f->s) != CF_OK)
        return -1;
    return writer_create(f->s, &f->clock, &f->w) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    writer_destroy(f->w);
    f->s->ops->close(f->s);
    arena_destroy(f->arena);
    dir_remove(f->dir);
    free(f);
    return 0;
}

static struct writer_cmd *cmd_new(enum writer_cmd_type type)
{
    struct writer_cmd *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->type = type;
    c->arena = arena_create(1u << 20);
    assert_non_null(c->arena);
    return c;
}

static void cmd_free(struct writer_cmd *c)
{
    arena_destroy(c->arena);
    free(c);
}

static uint64_t create_account(struct fx *f, uint8_t normal)
{
    struct writer_cmd *c = cmd_new(WRITER_CMD_ACCOUNT_CREATE);
    strcpy(c->account.currency, "EUR");
    c->account.normal = normal;
    c->account.kind = normal == LEDGER_NORMAL_DEBIT ? LEDGER_KIND_SYSTEM : LEDGER_KIND_CUSTOMER;
    c->account.flags = normal == LEDGER_NORMAL_CREDIT ? LEDGER_ACCOUNT_NO_OVERDRAFT : 0;
    c->owner = "user-1";
    c->owner_len = 6;
    assert_int_equal(writer_run(f->w, c), CF_OK);
    uint64_t id = c->account_out.id;
    cmd_free(c);
    return id;
}

/* Renders the stable code, as the API's problem answer carries it. */
static enum cf_err render_code(struct writer_cmd *c)
{
    char *body = arena_alloc(c->arena, 64);
    if (body == NULL)
        return CF_ERR_NOMEM;
    int n = snprintf(body, 64, "{\"code\":\"%s\"}", cf_err_code(c->err));
    c->resp_status = c->err == CF_OK ? 201 : cf_err_http_status(c->err);
    c->resp_body = body;
    c->resp_body_len = (size_t)n;
    return CF_OK;
}

/* A TRANSFER of legs under key (NULL: none); *status and body get the stored answer. */
static enum cf_err run_legs(struct fx *f, struct ledger_leg *legs, size_t n, const char *key,
                            size_t *failed_leg, int *status, char body[64])
{
    struct writer_cmd *c = cmd_new(WRITER_CMD_TRANSFER);
    c->legs = legs;
    c->legs_n = n;
    if (key != NULL) {
        c->idem_key = key;
        c->idem_key_len = strlen(key);
        hash_sha256(key, strlen(key), c->request_hash);
        c->render = render_code;
    }
    enum cf_err err = writer_run(f->w, c);
    if (failed_leg != NULL)
        *failed_leg = c->failed_leg;
    if (status != NULL)
        *status = c->resp_status;
    if (body != NULL) {
        size_t len = c->resp_body_len < 63 ? c->resp_body_len : 63;
        if (c->resp_body != NULL)
            memcpy(body, c->resp_body, len);
        body[c->resp_body != NULL ? len : 0] = '\0';
    }
    cmd_free(c);
    return err;
}

static struct ledger_account read_account(struct fx *f, uint64_t id)
{
    struct store_reader *r;
    struct store_account_row row;
    assert_int_equal(f->s->ops->r_open(f->s, &r), CF_OK);
    assert_int_equal(f->s->ops->r_account_get(r, id, &row, f->arena), CF_OK);
    f->s->ops->r_close(r);
    return row.account;
}

static void test_writer_group_rolls_back(void **state)
{
    struct fx *f = *state;
    uint64_t bank = create_account(f, LEDGER_NORMAL_DEBIT);
    uint64_t payer = create_account(f, LEDGER_NORMAL_CREDIT);
    uint64_t payee = create_account(f, LEDGER_NORMAL_CREDIT);
    uint64_t fees = create_account(f, LEDGER_NORMAL_CREDIT);
    struct ledger_leg fund = capped(bank, payer, 10000, -1);
    struct ledger_leg top = capped(bank, payee, 6000, -1);
    assert_int_equal(run_legs(f, &fund, 1, NULL, NULL, NULL, NULL), CF_OK);
    assert_int_equal(run_legs(f, &top, 1, NULL, NULL, NULL, NULL), CF_OK);
    struct ledger_account payer0 = read_account(f, payer), payee0 = read_account(f, payee);
    struct ledger_account fees0 = read_account(f, fees);

    /* a fee leg first, then two credits of the payee that meet its ceiling together */
    struct ledger_leg legs[3] = {capped(payer, fees, 100, -1), capped(payer, payee, 3000, 10000),
                                 capped(payer, payee, 1001, 10000)};
    size_t failed = 99;
    int status = 0;
    char body[64];
    assert_int_equal(run_legs(f, legs, 3, "op:snd_1", &failed, &status, body),
                     CF_ERR_LIMIT_EXCEEDED);
    assert_int_equal(failed, 2);
    assert_int_equal(status, 403);
    assert_string_equal(body, "{\"code\":\"limit_exceeded\"}");
    struct ledger_account payer1 = read_account(f, payer), payee1 = read_account(f, payee);
    struct ledger_account fees1 = read_account(f, fees);
    assert_memory_equal(&payer1, &payer0, sizeof(payer0));
    assert_memory_equal(&payee1, &payee0, sizeof(payee0));
    assert_memory_equal(&fees1, &fees0, sizeof(fees0));

    /* the refusal is stored under its key: a retry answers it again and moves nothing */
    assert_int_equal(run_legs(f, legs, 3, "op:snd_1", NULL, &status, body), CF_OK);
    assert_int_equal(status, 403);
    assert_string_equal(body, "{\"code\":\"limit_exceeded\"}");
    assert_int_equal(ledger_account_balance(&payee1), 6000);

    /* exactly at the ceiling, the group passes */
    legs[2].amount = 1000;
    assert_int_equal(run_legs(f, legs, 3, "op:snd_2", NULL, &status, body), CF_OK);
    assert_int_equal(status, 201);
    struct ledger_account payee2 = read_account(f, payee);
    assert_int_equal(ledger_account_balance(&payee2), 10000);
    struct ledger_account payer2 = read_account(f, payer);
    assert_int_equal(ledger_account_balance(&payer2), 10000 - 4100);
}

static void test_writer_hold_then_credit(void **state)
{
    struct fx *f = *state;
    uint64_t bank = create_account(f, LEDGER_NORMAL_DEBIT);
    uint64_t wallet = create_account(f, LEDGER_NORMAL_CREDIT);
    struct ledger_leg hold = capped(bank, wallet, 8000, 10000);
    hold.pending = true;
    assert_int_equal(run_legs(f, &hold, 1, NULL, NULL, NULL, NULL), CF_OK);
    struct ledger_leg second = capped(bank, wallet, 2001, 10000);
    assert_int_equal(run_legs(f, &second, 1, NULL, NULL, NULL, NULL), CF_ERR_LIMIT_EXCEEDED);
    second.amount = 2000;
    assert_int_equal(run_legs(f, &second, 1, NULL, NULL, NULL, NULL), CF_OK);
    struct ledger_account a = read_account(f, wallet);
    assert_int_equal(ledger_account_balance(&a), 2000);
    assert_int_equal(a.credits_pending, 8000);
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
        cmocka_unit_test_setup_teardown(test_writer_group_rolls_back, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_writer_hold_then_credit, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
