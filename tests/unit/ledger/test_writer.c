/*
 * test_writer.c - the ledger writer (writer.h) over a real SQLite store in a temporary directory
 * and a fake clock: account creation, transfers and their hash chain, multi-leg atomicity,
 * holds posted in part or voided, expiry driven by the clock and writer_sweep_now, batch
 * commands with per-item results and item-key replays, header idempotency (replay and key reuse),
 * freezing through SET_FLAGS, group commit through writer_run_many, and a restart that carries
 * on the balances, the ids and the chain.
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
#include "core/log.h"
#include "ledger/writer.h"

#define T0 1700000000000000LL
#define SEC 1000000LL

struct fx {
    char dir[64];
    struct store *s;
    struct writer *w;
    struct cf_clock clock;
    struct arena *arena; /* reads */
};

/* Fixture -------------------------------------------------------------------------------------- */

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

static int fx_open(struct fx *f)
{
    struct store_options o = {.location = f->dir, .readers = 2, .create = true};
    if (store_open(&o, &f->s) != CF_OK)
        return -1;
    return writer_create(f->s, &f->clock, &f->w) == CF_OK ? 0 : -1;
}

static void fx_close(struct fx *f)
{
    writer_destroy(f->w);
    f->w = NULL;
    f->s->ops->close(f->s);
    f->s = NULL;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    strcpy(f->dir, "/tmp/coffer-test-writer-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    cf_clock_fake_init(&f->clock, T0);
    f->arena = arena_create(16u << 20);
    *state = f;
    return f->arena == NULL ? -1 : fx_open(f);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (f->w != NULL)
        fx_close(f);
    arena_destroy(f->arena);
    dir_remove(f->dir);
    free(f);
    return 0;
}

/* Commands ------------------------------------------------------------------------------------- */

static struct writer_cmd *cmd_new(enum writer_cmd_type type)
{
    struct writer_cmd *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->type = type;
    c->arena = arena_create(4u << 20);
    assert_non_null(c->arena);
    return c;
}

static void cmd_free(struct writer_cmd *c)
{
    arena_destroy(c->arena);
    free(c);
}

static struct ledger_leg mk_leg(uint64_t dr, uint64_t cr, int64_t amount, const char *currency)
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

static uint64_t create_account(struct fx *f, const char *currency, uint8_t normal, uint32_t flags)
{
    struct writer_cmd *c = cmd_new(WRITER_CMD_ACCOUNT_CREATE);
    strcpy(c->account.currency, currency);
    c->account.normal = normal;
    c->account.kind = normal == LEDGER_NORMAL_DEBIT ? LEDGER_KIND_SYSTEM : LEDGER_KIND_CUSTOMER;
    c->account.flags = flags;
    c->owner = "user-1";
    c->owner_len = 6;
    assert_int_equal(writer_run(f->w, c), CF_OK);
    uint64_t id = c->account_out.id;
    assert_true(id > 0);
    assert_string_equal(c->account_out.currency, currency);
    assert_true(c->account_out.created_at_us == cf_clock_now_us(&f->clock));
    cmd_free(c);
    return id;
}

/* Runs a TRANSFER of the given legs; returns its error and copies the entries out. */
static enum cf_err run_legs(struct fx *f, struct ledger_leg *legs, size_t n,
                            struct ledger_entry *out, size_t *failed_leg)
{
    struct writer_cmd *c = cmd_new(WRITER_CMD_TRANSFER);
    c->legs = legs;
    c->legs_n = n;
    enum cf_err err = writer_run(f->w, c);
    if (err == CF_OK) {
        assert_int_equal(c->entries_n, n);
        if (out != NULL)
            memcpy(out, c->entries_out, n * sizeof(*out));
    }
    if (failed_leg != NULL)
        *failed_leg = c->failed_leg;
    cmd_free(c);
    return err;
}

static enum cf_err transfer(struct fx *f, uint64_t dr, uint64_t cr, int64_t amount,
                            const char *currency, struct ledger_entry *out)
{
    struct ledger_leg l = mk_leg(dr, cr, amount, currency);
    return run_legs(f, &l, 1, out, NULL);
}

static enum cf_err hold(struct fx *f, uint64_t dr, uint64_t cr, int64_t amount, int64_t timeout_s,
                        struct ledger_entry *out)
{
    struct ledger_leg l = mk_leg(dr, cr, amount, "USD");
    l.pending = true;
    l.timeout_s = timeout_s;
    return run_legs(f, &l, 1, out, NULL);
}

/* POST (amount 0 = all) or VOID of pending seq; the resolution entry and the hold after it. */
static enum cf_err resolve(struct fx *f, enum writer_cmd_type type, uint64_t seq, int64_t amount,
                           struct ledger_entry *entry_out, struct ledger_entry *pending_out)
{
    struct writer_cmd *c = cmd_new(type);
    c->target_id = seq;
    c->amount_minor = amount;
    enum cf_err err = writer_run(f->w, c);
    if (err == CF_OK) {
        assert_int_equal(c->entries_n, 1);
        if (entry_out != NULL)
            *entry_out = c->entries_out[0];
        if (pending_out != NULL)
            *pending_out = c->pending_out;
    }
    cmd_free(c);
    return err;
}

static enum cf_err set_flags(struct fx *f, uint64_t id, uint32_t set, uint32_t clear)
{
    struct writer_cmd *c = cmd_new(WRITER_CMD_SET_FLAGS);
    c->target_id = id;
    c->flags_set = set;
    c->flags_clear = clear;
    enum cf_err err = writer_run(f->w, c);
    if (err == CF_OK) {
        assert_true(c->account_out.id == id);
        assert_int_equal(c->account_out.flags & set, set);
        assert_int_equal(c->account_out.flags & clear, 0);
    }
    cmd_free(c);
    return err;
}

/* Reads ---------------------------------------------------------------------------------------- */

static struct ledger_account read_account(struct fx *f, uint64_t id)
{
    struct store_reader *r;
    struct store_account_row row;
    assert_int_equal(f->s->ops->r_open(f->s, &r), CF_OK);
    assert_int_equal(f->s->ops->r_account_get(r, id, &row, f->arena), CF_OK);
    f->s->ops->r_close(r);
    return row.account;
}

static struct ledger_entry read_entry(struct fx *f, uint64_t seq)
{
    struct store_reader *r;
    struct ledger_entry e;
    assert_int_equal(f->s->ops->r_open(f->s, &r), CF_OK);
    assert_int_equal(f->s->ops->r_entry_get(r, seq, &e, f->arena), CF_OK);
    f->s->ops->r_close(r);
    return e;
}

/* Number of journal entries; also checks the chain from the first entry. */
static uint64_t journal_check(struct fx *f)
{
    struct store_reader *r;
    struct ledger_entry page[64];
    uint8_t prev[HASH_BYTES] = {0}, h[HASH_BYTES];
    uint64_t after = 0;
    size_t n;
    assert_int_equal(f->s->ops->r_open(f->s, &r), CF_OK);
    do {
        assert_int_equal(f->s->ops->r_entries_scan(r, after, 64, page, &n, f->arena), CF_OK);
        for (size_t i = 0; i < n; i++) {
            assert_true(page[i].seq == after + 1);
            ledger_entry_hash(prev, &page[i], h);
            assert_memory_equal(h, page[i].hash, HASH_BYTES);
            memcpy(prev, h, HASH_BYTES);
            after = page[i].seq;
        }
    } while (n > 0);
    f->s->ops->r_close(r);
    return after;
}

static int64_t balance(struct fx *f, uint64_t id)
{
    struct ledger_account a = read_account(f, id);
    return ledger_account_balance(&a);
}

static int64_t available(struct fx *f, uint64_t id)
{
    struct ledger_account a = read_account(f, id);
    return ledger_account_available(&a);
}

/* A bank (debit-normal, funds the rest) and two no_overdraft USD wallets; a gets `funds`. */
struct trio {
    uint64_t bank, a, b;
};

static struct trio trio_make(struct fx *f, int64_t funds)
{
    struct trio t;
    t.bank = create_account(f, "USD", LEDGER_NORMAL_DEBIT, 0);
    t.a = create_account(f, "USD", LEDGER_NORMAL_CREDIT, LEDGER_ACCOUNT_NO_OVERDRAFT);
    t.b = create_account(f, "USD", LEDGER_NORMAL_CREDIT, LEDGER_ACCOUNT_NO_OVERDRAFT);
    if (funds > 0)
        assert_int_equal(transfer(f, t.bank, t.a, funds, "USD", NULL), CF_OK);
    return t;
}

/* Tests ---------------------------------------------------------------------------------------- */

static void test_create_accounts(void **state)
{
    struct fx *f = *state;
    assert_true(create_account(f, "USD", LEDGER_NORMAL_CREDIT, 0) == 1);
    assert_true(create_account(f, "JPY", LEDGER_NORMAL_DEBIT, LEDGER_ACCOUNT_NO_OVERDRAFT) == 2);
    struct writer_cmd *c = cmd_new(WRITER_CMD_ACCOUNT_CREATE);
    strcpy(c->account.currency, "KWD");
    c->account.flags = LEDGER_ACCOUNT_FROZEN | (1u << 7); /* unknown flag bits are dropped */
    c->account.debits_posted = 999;                       /* totals are not taken from input */
    c->metadata = "{\"tier\":2}";
    c->metadata_len = 10;
    assert_int_equal(writer_run(f->w, c), CF_OK);
    assert_true(c->account_out.id == 3);
    assert_int_equal(c->account_out.flags, LEDGER_ACCOUNT_FROZEN);
    assert_true(c->account_out.debits_posted == 0);
    cmd_free(c);
    struct store_reader *r;
    struct store_account_row row;
    assert_int_equal(f->s->ops->r_open(f->s, &r), CF_OK);
    assert_int_equal(f->s->ops->r_account_get(r, 3, &row, f->arena), CF_OK);
    assert_string_equal(row.account.currency, "KWD");
    assert_string_equal(row.metadata, "{\"tier\":2}");
    assert_int_equal(f->s->ops->r_account_get(r, 1, &row, f->arena), CF_OK);
    assert_string_equal(row.owner, "user-1");
    assert_int_equal(row.account.flags, 0);
    assert_int_equal(f->s->ops->r_account_get(r, 2, &row, f->arena), CF_OK);
    assert_int_equal(row.account.normal, LEDGER_NORMAL_DEBIT);
    assert_int_equal(row.account.flags, LEDGER_ACCOUNT_NO_OVERDRAFT);
    f->s->ops->r_close(r);
}

static void test_transfer(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 1000);
    struct ledger_entry e;
    assert_int_equal(transfer(f, t.a, t.b, 300, "USD", &e), CF_OK);
    assert_true(e.seq == 2);
    assert_int_equal(e.type, LEDGER_ENTRY_TRANSFER);
    assert_int_equal(e.status, LEDGER_STATUS_POSTED);
    assert_true(e.group_seq == 2 && e.debit_id == t.a && e.credit_id == t.b && e.amount == 300);
    assert_true(e.created_at_us == T0);
    assert_true(e.debit_prev_seq == 1 && e.credit_prev_seq == 0);
    struct ledger_entry first = read_entry(f, 1);
    uint8_t h[HASH_BYTES];
    ledger_entry_hash(first.hash, &e, h);
    assert_memory_equal(h, e.hash, HASH_BYTES);
    assert_int_equal(balance(f, t.a), 700);
    assert_int_equal(balance(f, t.b), 300);
    assert_int_equal(balance(f, t.bank), 1000);
    assert_true(read_account(f, t.a).last_seq == 2);
    assert_true(journal_check(f) == 2);
}

static void test_transfer_rejections_leave_no_trace(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 100);
    uint64_t jpy = create_account(f, "JPY", LEDGER_NORMAL_CREDIT, 0);
    assert_int_equal(transfer(f, t.a, t.b, 101, "USD", NULL), CF_ERR_INSUFFICIENT_FUNDS);
    assert_int_equal(transfer(f, t.a, t.a, 1, "USD", NULL), CF_ERR_SAME_ACCOUNT);
    assert_int_equal(transfer(f, t.a, 999, 1, "USD", NULL), CF_ERR_ACCOUNT_NOT_FOUND);
    assert_int_equal(transfer(f, t.a, jpy, 1, "USD", NULL), CF_ERR_CURRENCY_MISMATCH);
    assert_int_equal(transfer(f, t.a, t.b, 0, "USD", NULL), CF_ERR_INVALID_AMOUNT);
    assert_int_equal(transfer(f, t.a, t.b, 100, "USD", NULL), CF_OK); /* exactly all */
    assert_int_equal(available(f, t.a), 0);
    assert_true(journal_check(f) == 2);
}

static void test_multi_leg_atomic(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 1000);
    uint64_t fee = create_account(f, "USD", LEDGER_NORMAL_CREDIT, LEDGER_ACCOUNT_NO_OVERDRAFT);
    struct ledger_leg legs[3] = {mk_leg(t.a, t.b, 50, "USD"), mk_leg(t.b, fee, 1000, "USD"),
                                 mk_leg(t.a, fee, 5, "USD")};
    size_t failed = 99;
    uint64_t before = journal_check(f);
    assert_int_equal(run_legs(f, legs, 3, NULL, &failed), CF_ERR_INSUFFICIENT_FUNDS);
    assert_int_equal(failed, 1);
    assert_int_equal(balance(f, t.a), 1000);
    assert_int_equal(balance(f, t.b), 0);
    assert_int_equal(balance(f, fee), 0);
    assert_true(read_account(f, t.a).last_seq == 1);
    assert_true(journal_check(f) == before);

    legs[1].amount = 40; /* now b can pay it from leg 0 */
    struct ledger_entry out[3];
    assert_int_equal(run_legs(f, legs, 3, out, &failed), CF_OK);
    for (int i = 0; i < 3; i++) {
        assert_true(out[i].seq == before + 1 + (uint64_t)i);
        assert_true(out[i].group_seq == before + 1);
    }
    assert_int_equal(balance(f, t.a), 945);
    assert_int_equal(balance(f, t.b), 10);
    assert_int_equal(balance(f, fee), 45);
    assert_true(journal_check(f) == before + 3);
}

static void test_pending_post_partial_then_void(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 1000);
    struct ledger_entry h1, h2, e, p;
    assert_int_equal(hold(f, t.a, t.b, 400, 0, &h1), CF_OK);
    assert_int_equal(h1.type, LEDGER_ENTRY_PENDING);
    assert_int_equal(h1.status, LEDGER_STATUS_PENDING);
    assert_int_equal(available(f, t.a), 600);
    assert_int_equal(balance(f, t.b), 0);
    assert_int_equal(resolve(f, WRITER_CMD_POST, h1.seq, 150, &e, &p), CF_OK);
    assert_int_equal(e.type, LEDGER_ENTRY_POST_PENDING);
    assert_true(e.amount == 150 && e.pending_seq == h1.seq);
    assert_int_equal(p.status, LEDGER_STATUS_POSTED);
    assert_true(p.resolved_amount == 150 && p.resolution_seq == e.seq);
    assert_int_equal(balance(f, t.a), 850);
    assert_int_equal(available(f, t.a), 850);
    assert_int_equal(balance(f, t.b), 150);
    struct ledger_entry stored = read_entry(f, h1.seq);
    assert_int_equal(stored.status, LEDGER_STATUS_POSTED);
    assert_true(stored.resolved_amount == 150 && stored.resolution_seq == e.seq);
    assert_int_equal(resolve(f, WRITER_CMD_POST, h1.seq, 0, NULL, NULL), CF_ERR_ALREADY_POSTED);
    assert_int_equal(resolve(f, WRITER_CMD_VOID, h1.seq, 0, NULL, NULL), CF_ERR_ALREADY_POSTED);

    assert_int_equal(hold(f, t.a, t.b, 200, 0, &h2), CF_OK);
    assert_int_equal(resolve(f, WRITER_CMD_POST, h2.seq, 201, NULL, NULL), CF_ERR_EXCEEDS_PENDING);
    assert_int_equal(resolve(f, WRITER_CMD_VOID, h2.seq, 0, &e, &p), CF_OK);
    assert_int_equal(e.type, LEDGER_ENTRY_VOID_PENDING);
    assert_true(e.amount == 200);
    assert_int_equal(p.status, LEDGER_STATUS_VOIDED);
    assert_int_equal(available(f, t.a), 850);
    assert_int_equal(read_account(f, t.b).credits_pending, 0);
    assert_int_equal(resolve(f, WRITER_CMD_POST, h2.seq, 0, NULL, NULL), CF_ERR_ALREADY_VOIDED);
    assert_int_equal(resolve(f, WRITER_CMD_POST, 1, 0, NULL, NULL), CF_ERR_TRANSFER_NOT_PENDING);
    assert_int_equal(resolve(f, WRITER_CMD_POST, 9999, 0, NULL, NULL), CF_ERR_TRANSFER_NOT_FOUND);
    journal_check(f);
}

static void test_expiry_sweep(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 1000);
    struct ledger_entry h, keep;
    assert_int_equal(hold(f, t.a, t.b, 300, 60, &h), CF_OK);
    assert_true(h.expires_at_us == T0 + 60 * SEC);
    assert_int_equal(hold(f, t.a, t.b, 100, 0, &keep), CF_OK); /* no timeout: never expires */
    cf_clock_fake_advance(&f->clock, 59 * SEC);
    writer_sweep_now(f->w);
    assert_int_equal(read_entry(f, h.seq).status, LEDGER_STATUS_PENDING);
    assert_int_equal(available(f, t.a), 600);
    cf_clock_fake_advance(&f->clock, 1 * SEC); /* exactly at expiry */
    writer_sweep_now(f->w);
    struct ledger_entry s = read_entry(f, h.seq);
    assert_int_equal(s.status, LEDGER_STATUS_EXPIRED);
    assert_true(s.resolution_seq > h.seq);
    struct ledger_entry x = read_entry(f, s.resolution_seq);
    assert_int_equal(x.type, LEDGER_ENTRY_EXPIRE_PENDING);
    assert_true(x.pending_seq == h.seq && x.amount == 300);
    assert_int_equal(available(f, t.a), 900); /* only the 100 without timeout is held */
    assert_int_equal(read_account(f, t.b).credits_pending, 100);
    assert_int_equal(read_entry(f, keep.seq).status, LEDGER_STATUS_PENDING);
    assert_int_equal(resolve(f, WRITER_CMD_POST, h.seq, 0, NULL, NULL), CF_ERR_TRANSFER_EXPIRED);
    assert_int_equal(resolve(f, WRITER_CMD_VOID, h.seq, 0, NULL, NULL), CF_ERR_TRANSFER_EXPIRED);
    assert_true(atomic_load(&writer_stats(f->w)->expired) == 1);
    journal_check(f);
}

static void test_post_past_expiry_before_sweep(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 1000);
    struct ledger_entry h;
    assert_int_equal(hold(f, t.a, t.b, 300, 10, &h), CF_OK);
    cf_clock_fake_advance(&f->clock, 11 * SEC);
    /* whether or not the periodic sweep got there first, the hold cannot be posted */
    assert_int_equal(resolve(f, WRITER_CMD_POST, h.seq, 0, NULL, NULL), CF_ERR_TRANSFER_EXPIRED);
    writer_sweep_now(f->w);
    assert_int_equal(read_entry(f, h.seq).status, LEDGER_STATUS_EXPIRED);
    assert_int_equal(balance(f, t.b), 0);
}

static struct ledger_leg item(uint64_t dr, uint64_t cr, int64_t amount, const char *key)
{
    struct ledger_leg l = mk_leg(dr, cr, amount, "USD");
    l.idem_key = key;
    l.idem_key_len = strlen(key);
    return l;
}

static struct writer_cmd *run_batch(struct fx *f, struct ledger_leg *legs, size_t n)
{
    struct writer_cmd *c = cmd_new(WRITER_CMD_BATCH);
    c->legs = legs;
    c->legs_n = n;
    assert_int_equal(writer_run(f->w, c), CF_OK);
    assert_non_null(c->items);
    return c;
}

static void test_batch_items(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 100);
    struct ledger_leg legs[4] = {item(t.a, t.b, 60, "i-1"), item(t.a, t.b, 60, "i-2"),
                                 item(t.a, t.b, 40, "i-3"), item(t.a, t.b, 1, "")};
    struct writer_cmd *c = run_batch(f, legs, 4);
    assert_int_equal(c->items[0].err, CF_OK);
    assert_int_equal(c->items[1].err, CF_ERR_INSUFFICIENT_FUNDS);
    assert_int_equal(c->items[2].err, CF_OK);
    assert_int_equal(c->items[3].err, CF_ERR_IDEM_KEY_INVALID);
    assert_false(c->items[0].existed || c->items[2].existed);
    assert_true(c->items[0].entry.seq == 2 && c->items[2].entry.seq == 3);
    assert_true(c->items[2].entry.group_seq == 3);
    struct ledger_entry stored = read_entry(f, 3);
    assert_memory_equal(stored.hash, c->items[2].entry.hash, HASH_BYTES);
    assert_int_equal(stored.idem_key_len, 3);
    assert_memory_equal(stored.idem_key, "i-3", 3);
    cmd_free(c);
    assert_int_equal(balance(f, t.a), 0);
    assert_int_equal(balance(f, t.b), 100);
    assert_true(journal_check(f) == 3);
}

static void test_batch_item_key_replay(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 1000);
    struct ledger_leg first[2] = {item(t.a, t.b, 10, "k-1"), item(t.a, t.b, 5000, "k-2")};
    struct writer_cmd *c = run_batch(f, first, 2);
    assert_int_equal(c->items[0].err, CF_OK);
    assert_int_equal(c->items[1].err, CF_ERR_INSUFFICIENT_FUNDS);
    uint64_t seq1 = c->items[0].entry.seq;
    cmd_free(c);

    struct ledger_leg again[4] = {item(t.a, t.b, 10, "k-1"),  /* same content: existed */
                                  item(t.a, t.b, 11, "k-1"),  /* other amount: reused */
                                  item(t.a, t.b, 20, "k-2"),  /* failed before: runs now */
                                  item(t.a, t.b, 20, "k-2")}; /* same batch, same content */
    c = run_batch(f, again, 4);
    assert_int_equal(c->items[0].err, CF_OK);
    assert_true(c->items[0].existed);
    assert_true(c->items[0].entry.seq == seq1);
    assert_int_equal(c->items[1].err, CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(c->items[2].err, CF_OK);
    assert_false(c->items[2].existed);
    assert_int_equal(c->items[3].err, CF_OK);
    assert_true(c->items[3].existed);
    assert_true(c->items[3].entry.seq == c->items[2].entry.seq);
    cmd_free(c);
    assert_int_equal(balance(f, t.a), 970); /* 10 once and 20 once */
    assert_int_equal(balance(f, t.b), 30);

    struct ledger_leg other_accounts[1] = {item(t.b, t.a, 10, "k-1")};
    c = run_batch(f, other_accounts, 1);
    assert_int_equal(c->items[0].err, CF_ERR_IDEM_KEY_REUSED);
    cmd_free(c);
    journal_check(f);
}

/* Renders a tiny response in the command's arena, as the API does. */
static enum cf_err render_tiny(struct writer_cmd *c)
{
    char *body = arena_alloc(c->arena, 96);
    if (body == NULL)
        return CF_ERR_NOMEM;
    uint64_t seq = c->err == CF_OK && c->entries_n > 0 ? c->entries_out[0].seq : 0;
    int n = snprintf(body, 96, "{\"code\":\"%s\",\"seq\":%llu}", cf_err_code(c->err),
                     (unsigned long long)seq);
    c->resp_status = c->err == CF_OK ? 201 : cf_err_http_status(c->err);
    c->resp_body = body;
    c->resp_body_len = (size_t)n;
    return CF_OK;
}

/* A keyed transfer a -> b; copies the response body into body (NUL-terminated). */
static enum cf_err keyed_transfer(struct fx *f, struct ledger_leg *l, const char *key,
                                  uint8_t hash_byte, bool *replayed, int *status, char *body)
{
    struct writer_cmd *c = cmd_new(WRITER_CMD_TRANSFER);
    c->legs = l;
    c->legs_n = 1;
    c->idem_key = key;
    c->idem_key_len = strlen(key);
    memset(c->request_hash, hash_byte, HASH_BYTES);
    c->render = render_tiny;
    enum cf_err err = writer_run(f->w, c);
    *replayed = c->replayed;
    *status = c->resp_status;
    body[0] = '\0';
    if (c->resp_body != NULL) {
        memcpy(body, c->resp_body, c->resp_body_len);
        body[c->resp_body_len] = '\0';
    }
    cmd_free(c);
    return err;
}

static void test_header_idempotency(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 1000);
    struct ledger_leg l = mk_leg(t.a, t.b, 100, "USD");
    bool replayed = true;
    int status = 0;
    char body1[128], body2[128];
    assert_int_equal(keyed_transfer(f, &l, "hk-1", 0x11, &replayed, &status, body1), CF_OK);
    assert_false(replayed);
    assert_int_equal(status, 201);
    assert_string_equal(body1, "{\"code\":\"ok\",\"seq\":2}");
    assert_int_equal(keyed_transfer(f, &l, "hk-1", 0x11, &replayed, &status, body2), CF_OK);
    assert_true(replayed);
    assert_int_equal(status, 201);
    assert_string_equal(body2, body1);
    assert_int_equal(balance(f, t.a), 900); /* the replay moved nothing */
    assert_true(journal_check(f) == 2);
    assert_int_equal(keyed_transfer(f, &l, "hk-1", 0x22, &replayed, &status, body2),
                     CF_ERR_IDEM_KEY_REUSED);
    assert_false(replayed);
    assert_int_equal(balance(f, t.a), 900);

    /* A rejected request is answered the same way on a retry, even once it could succeed. */
    struct ledger_leg big = mk_leg(t.a, t.b, 5000, "USD");
    assert_int_equal(keyed_transfer(f, &big, "hk-2", 0x33, &replayed, &status, body1),
                     CF_ERR_INSUFFICIENT_FUNDS);
    assert_int_equal(status, 422);
    assert_int_equal(transfer(f, t.bank, t.a, 10000, "USD", NULL), CF_OK);
    assert_int_equal(keyed_transfer(f, &big, "hk-2", 0x33, &replayed, &status, body2), CF_OK);
    assert_true(replayed);
    assert_int_equal(status, 422);
    assert_string_equal(body1, body2);
    assert_int_equal(balance(f, t.b), 100);
}

static void test_freeze_blocks_debits(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 1000);
    struct ledger_entry h;
    assert_int_equal(hold(f, t.a, t.b, 100, 0, &h), CF_OK);
    assert_int_equal(set_flags(f, t.a, LEDGER_ACCOUNT_FROZEN, 0), CF_OK);
    assert_int_equal(read_account(f, t.a).flags,
                     LEDGER_ACCOUNT_FROZEN | LEDGER_ACCOUNT_NO_OVERDRAFT);
    assert_int_equal(transfer(f, t.a, t.b, 1, "USD", NULL), CF_ERR_ACCOUNT_FROZEN);
    assert_int_equal(hold(f, t.a, t.b, 1, 0, NULL), CF_ERR_ACCOUNT_FROZEN);
    assert_int_equal(resolve(f, WRITER_CMD_POST, h.seq, 0, NULL, NULL), CF_ERR_ACCOUNT_FROZEN);
    assert_int_equal(transfer(f, t.b, t.a, 1, "USD", NULL), CF_ERR_INSUFFICIENT_FUNDS);
    assert_int_equal(transfer(f, t.bank, t.a, 50, "USD", NULL), CF_OK); /* credits still land */
    assert_int_equal(resolve(f, WRITER_CMD_VOID, h.seq, 0, NULL, NULL), CF_OK);
    assert_int_equal(set_flags(f, t.bank, LEDGER_ACCOUNT_FROZEN, 0), CF_OK);
    assert_int_equal(transfer(f, t.a, t.bank, 1, "USD", NULL),
                     CF_ERR_ACCOUNT_FROZEN); /* debit-normal outflow */
    assert_int_equal(set_flags(f, t.a, 0, LEDGER_ACCOUNT_FROZEN), CF_OK);
    assert_int_equal(transfer(f, t.a, t.b, 1, "USD", NULL), CF_OK);
    assert_int_equal(balance(f, t.a), 1049);
    assert_int_equal(set_flags(f, 999, LEDGER_ACCOUNT_FROZEN, 0), CF_ERR_ACCOUNT_NOT_FOUND);
}

static void test_set_no_overdraft_below_zero_refused(void **state)
{
    struct fx *f = *state;
    uint64_t x = create_account(f, "USD", LEDGER_NORMAL_CREDIT, 0);
    uint64_t y = create_account(f, "USD", LEDGER_NORMAL_CREDIT, 0);
    assert_int_equal(transfer(f, x, y, 10, "USD", NULL), CF_OK); /* x overdrawn */
    assert_int_equal(set_flags(f, x, LEDGER_ACCOUNT_NO_OVERDRAFT, 0), CF_ERR_INSUFFICIENT_FUNDS);
    assert_int_equal(read_account(f, x).flags, 0);
    assert_int_equal(set_flags(f, y, LEDGER_ACCOUNT_NO_OVERDRAFT, 0), CF_OK);
}

static void test_run_many_group_commit(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 100000);
    enum { N = 300 };
    struct writer_cmd *cmds[N];
    struct ledger_leg legs[N];
    uint64_t cmds_before = atomic_load(&writer_stats(f->w)->commands);
    for (int i = 0; i < N; i++) {
        legs[i] = mk_leg(i % 2 ? t.b : t.a, i % 2 ? t.a : t.b, 10 + i, "USD");
        cmds[i] = cmd_new(WRITER_CMD_TRANSFER);
        cmds[i]->legs = &legs[i];
        cmds[i]->legs_n = 1;
    }
    writer_run_many(f->w, cmds, N);
    /* Commands apply in submission order: b starts at 0 and pays only what it has received. */
    int64_t net_b = 0;
    for (int i = 0; i < N; i++) {
        int64_t amount = 10 + i;
        bool expect_ok = i % 2 == 0 || net_b >= amount;
        assert_int_equal(cmds[i]->err, expect_ok ? CF_OK : CF_ERR_INSUFFICIENT_FUNDS);
        if (expect_ok)
            net_b += i % 2 ? -amount : amount;
        cmd_free(cmds[i]);
    }
    assert_int_equal(balance(f, t.b), net_b);
    assert_int_equal(balance(f, t.a), 100000 - net_b);
    assert_true(atomic_load(&writer_stats(f->w)->commands) - cmds_before == N);
    journal_check(f);
}

static void test_restart_continues(void **state)
{
    struct fx *f = *state;
    struct trio t = trio_make(f, 1000);
    struct ledger_entry h;
    assert_int_equal(transfer(f, t.a, t.b, 100, "USD", NULL), CF_OK);
    assert_int_equal(hold(f, t.a, t.b, 50, 30, &h), CF_OK);
    uint64_t last = journal_check(f);
    struct ledger_entry tail = read_entry(f, last);
    fx_close(f);
    cf_clock_fake_advance(&f->clock, 10 * SEC);
    assert_int_equal(fx_open(f), 0);
    assert_int_equal(balance(f, t.a), 900);
    assert_int_equal(available(f, t.a), 850);
    assert_true(create_account(f, "USD", LEDGER_NORMAL_CREDIT, 0) == t.b + 1);
    struct ledger_entry e;
    assert_int_equal(transfer(f, t.b, t.a, 30, "USD", &e), CF_OK);
    assert_true(e.seq == last + 1);
    assert_true(e.debit_prev_seq == last && e.credit_prev_seq == last);
    uint8_t expect[HASH_BYTES];
    ledger_entry_hash(tail.hash, &e, expect);
    assert_memory_equal(expect, e.hash, HASH_BYTES);
    assert_int_equal(resolve(f, WRITER_CMD_POST, h.seq, 20, NULL, NULL), CF_OK); /* hold survived */
    assert_int_equal(balance(f, t.a), 900 + 30 - 20);
    assert_int_equal(balance(f, t.b), 100 - 30 + 20);
    assert_true(journal_check(f) == last + 2);
}

static void never_done(struct writer_cmd *c)
{
    (void)c;
    fail_msg("done called for a refused command");
}

static void test_stop_refuses_new_commands(void **state)
{
    struct fx *f = *state;
    writer_stop(f->w);
    struct writer_cmd *c = cmd_new(WRITER_CMD_ACCOUNT_CREATE);
    strcpy(c->account.currency, "USD");
    c->done = never_done;
    assert_int_equal(writer_submit(f->w, c), CF_ERR_SHUTTING_DOWN);
    cmd_free(c);
}

/* Ceilings (ledger.h, I6) through the writer: a transfer whose later leg passes the payee's
 * ceiling is undone whole, the refusal is stored under its key and answered again, and a
 * held inflow uses room. The rules themselves are in test_ceiling.c. */
static struct ledger_leg capped_leg(uint64_t dr, uint64_t cr, int64_t amount, int64_t max_minor)
{
    struct ledger_leg l = mk_leg(dr, cr, amount, "EUR");
    l.credit_capped = max_minor >= 0;
    l.credit_max_minor = max_minor >= 0 ? max_minor : 0;
    return l;
}

static void test_ceiling_group_undone(void **state)
{
    struct fx *f = *state;
    uint64_t bank = create_account(f, "EUR", LEDGER_NORMAL_DEBIT, 0);
    uint64_t payer = create_account(f, "EUR", LEDGER_NORMAL_CREDIT, LEDGER_ACCOUNT_NO_OVERDRAFT);
    uint64_t payee = create_account(f, "EUR", LEDGER_NORMAL_CREDIT, LEDGER_ACCOUNT_NO_OVERDRAFT);
    uint64_t fees = create_account(f, "EUR", LEDGER_NORMAL_CREDIT, LEDGER_ACCOUNT_NO_OVERDRAFT);
    assert_int_equal(transfer(f, bank, payer, 10000, "EUR", NULL), CF_OK);
    assert_int_equal(transfer(f, bank, payee, 6000, "EUR", NULL), CF_OK);
    struct ledger_account payer0 = read_account(f, payer), payee0 = read_account(f, payee);
    struct ledger_account fees0 = read_account(f, fees);
    /* a fee leg first, then two credits of the payee that pass its ceiling together */
    struct ledger_leg legs[3] = {capped_leg(payer, fees, 100, -1),
                                 capped_leg(payer, payee, 3000, 10000),
                                 capped_leg(payer, payee, 1001, 10000)};
    size_t failed = 99;
    assert_int_equal(run_legs(f, legs, 3, NULL, &failed), CF_ERR_LIMIT_EXCEEDED);
    assert_int_equal(failed, 2);
    struct ledger_account payer1 = read_account(f, payer), payee1 = read_account(f, payee);
    struct ledger_account fees1 = read_account(f, fees);
    assert_memory_equal(&payer1, &payer0, sizeof(payer0));
    assert_memory_equal(&payee1, &payee0, sizeof(payee0));
    assert_memory_equal(&fees1, &fees0, sizeof(fees0));
    legs[2].amount = 1000; /* exactly at the ceiling */
    assert_int_equal(run_legs(f, legs, 3, NULL, NULL), CF_OK);
    assert_int_equal(balance(f, payee), 10000);
    assert_int_equal(balance(f, payer), 10000 - 4100);
    journal_check(f);
}

static void test_ceiling_refusal_keyed_and_holds(void **state)
{
    struct fx *f = *state;
    uint64_t bank = create_account(f, "EUR", LEDGER_NORMAL_DEBIT, 0);
    uint64_t wallet = create_account(f, "EUR", LEDGER_NORMAL_CREDIT, LEDGER_ACCOUNT_NO_OVERDRAFT);
    struct ledger_leg held = capped_leg(bank, wallet, 8000, 10000);
    held.pending = true;
    assert_int_equal(run_legs(f, &held, 1, NULL, NULL), CF_OK);
    struct ledger_leg more = capped_leg(bank, wallet, 2001, 10000);
    bool replayed = true;
    int status = 0;
    char body[96];
    assert_int_equal(keyed_transfer(f, &more, "op:top_1", 7, &replayed, &status, body),
                     CF_ERR_LIMIT_EXCEEDED);
    assert_false(replayed);
    assert_int_equal(status, 403);
    assert_non_null(strstr(body, "limit_exceeded"));
    assert_int_equal(keyed_transfer(f, &more, "op:top_1", 7, &replayed, &status, body), CF_OK);
    assert_true(replayed); /* the stored refusal, answered again */
    assert_int_equal(status, 403);
    more.amount = 2000;
    assert_int_equal(run_legs(f, &more, 1, NULL, NULL), CF_OK);
    struct ledger_account a = read_account(f, wallet);
    assert_int_equal(ledger_account_balance(&a), 2000);
    assert_int_equal(a.credits_pending, 8000);
    journal_check(f);
}

int main(void)
{
    if (hash_init() != 0)
        return 1;
    cf_log_set_level(LOG_WARN);
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_create_accounts),
        T(test_transfer),
        T(test_transfer_rejections_leave_no_trace),
        T(test_multi_leg_atomic),
        T(test_pending_post_partial_then_void),
        T(test_expiry_sweep),
        T(test_post_past_expiry_before_sweep),
        T(test_batch_items),
        T(test_batch_item_key_replay),
        T(test_header_idempotency),
        T(test_freeze_blocks_debits),
        T(test_set_no_overdraft_below_zero_refused),
        T(test_run_many_group_commit),
        T(test_restart_continues),
        T(test_stop_refuses_new_commands),
        T(test_ceiling_group_undone),
        T(test_ceiling_refusal_keyed_and_holds),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
