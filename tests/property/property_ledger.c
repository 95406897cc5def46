/*
 * property_ledger.c - a property test of the whole write path: the writer over a real SQLite
 * store in a temporary directory, driven with a fake clock through many random operations.
 *
 * Usage: property_ledger OPS SEED [-v]     (-v also prints how often each outcome came up)
 *
 * It creates 50 accounts in USD, JPY and KWD (debit-normal funding accounts that inject money,
 * a debit-normal no_overdraft clearing account per currency, credit-normal customers with and
 * without no_overdraft), then runs rounds of random commands submitted together with
 * writer_run_many so that they group-commit: transfers (some invalid on purpose: wrong currency,
 * same account, overdraft, unknown account, bad amount or timeout), multi-leg transfers, holds
 * with and without timeouts, posts (full, partial, too much), voids, freezes and unfreezes,
 * no_overdraft toggles, batch commands with fresh and replayed item keys; between rounds the fake
 * clock moves (sometimes followed by a round of posts and voids only, which meets holds past
 * their expiry but not yet swept) and writer_sweep_now releases the expired holds.
 *
 * A model predicts every command's outcome (commands apply in submission order) and keeps every
 * account's four totals, updated only from commands whose result was a success. At the end:
 *   - the model's totals equal the stored totals of every account;
 *   - per currency, sum(debits_posted) == sum(credits_posted), and the same for pending (I1);
 *   - no no_overdraft account has available < 0 (I2);
 *   - re-summing the journal (r_entries_scan, entry types as in ledger.h) gives every account's
 *     stored totals, the history links and the holds' statuses agree with the journal;
 *   - the hash chain recomputes from zero.
 * Prints "property_ledger: N ops, M entries, ok" and exits 0, or prints what broke and exits 1.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/log.h"
#include "ledger/writer.h"
#include "money/currency.h"

#define CURRENCIES 3
#define ACCOUNTS 50
#define ROUND_MAX 64
#define ITEMS_MAX 24 /* legs of one command in this test (batch items or multi-leg) */
#define KEY_BYTES 24
#define T0 1700000000000000LL
#define SEC 1000000LL
#define FAILURES_SHOWN 25

static const char *const currency_codes[CURRENCIES] = {"USD", "JPY", "KWD"};
static const char meta_text[] = "{\"order\":\"A-1\"}";

/* Reporting ------------------------------------------------------------------------------------ */

static unsigned long failures;
static uint64_t outcomes[CF_ERR_COUNT_ + 1]; /* results seen, by code; [COUNT_] = expired holds */
static uint64_t replays_existed;

__attribute__((format(printf, 1, 2))) static void failf(const char *fmt, ...)
{
    if (++failures > FAILURES_SHOWN)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("property_ledger: FAIL: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

/* Random numbers (splitmix64) ------------------------------------------------------------------ */

/* One seed gives one run on every compiler: never draw twice in one expression whose operands
 * are unsequenced (arguments of one call, the two sides of a '+'). */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n) { return n == 0 ? 0 : rnd() % n; }
static int64_t rnd_range(int64_t lo, int64_t hi)
{
    return lo + (int64_t)rnd_below((uint64_t)(hi - lo + 1));
}
static bool chance(unsigned percent) { return rnd_below(100) < percent; }

/* Model ---------------------------------------------------------------------------------------- */

enum role { ROLE_FUNDING, ROLE_CLEARING, ROLE_CUSTOMER };

struct m_account {
    int cur;
    enum role role;
    uint8_t normal;
    uint32_t flags;
    int64_t dp, cp, dpend, cpend;
};

struct m_entry {
    bool known;
    uint8_t type;
    uint8_t status;
    uint64_t dr, cr;
    int64_t amount, expires, resolved;
};

struct m_key {
    bool used; /* applied with success: the key is taken */
    struct ledger_leg leg;
    uint64_t seq;
};

struct model {
    struct m_account acc[ACCOUNTS + 1]; /* by id; ids are 1..ACCOUNTS */
    uint64_t by_cur[CURRENCIES][ACCOUNTS];
    size_t n_by_cur[CURRENCIES];
    struct m_entry *ent; /* by seq */
    uint64_t ent_cap;
    uint64_t *open; /* seqs of holds still pending */
    size_t n_open, open_cap;
    uint64_t *closed; /* seqs of resolved holds and of other entries, as bad targets */
    size_t n_closed, closed_cap;
    struct m_key *keys;
    size_t n_keys, keys_cap;
    uint64_t entries; /* journal entries the model expects */
    int64_t now;
};

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t n = *cap == 0 ? 1024 : *cap;
    while (n < need)
        n *= 2;
    void *q = realloc(p, n * elem);
    if (q == NULL) {
        fprintf(stderr, "property_ledger: out of memory\n");
        exit(2);
    }
    memset((char *)q + *cap * elem, 0, (n - *cap) * elem);
    *cap = n;
    return q;
}

static struct m_entry *m_entry_at(struct model *m, uint64_t seq)
{
    size_t cap = (size_t)m->ent_cap;
    m->ent = grow(m->ent, &cap, (size_t)seq + 1, sizeof(*m->ent));
    m->ent_cap = cap;
    return &m->ent[seq];
}

static struct m_entry *m_entry_find(struct model *m, uint64_t seq)
{
    if (seq >= m->ent_cap || !m->ent[seq].known)
        return NULL;
    return &m->ent[seq];
}

static void list_push(uint64_t **list, size_t *n, size_t *cap, uint64_t v)
{
    *list = grow(*list, cap, *n + 1, sizeof(**list));
    (*list)[(*n)++] = v;
}

static void open_remove(struct model *m, uint64_t seq)
{
    for (size_t i = 0; i < m->n_open; i++) {
        if (m->open[i] == seq) {
            m->open[i] = m->open[--m->n_open];
            list_push(&m->closed, &m->n_closed, &m->closed_cap, seq);
            return;
        }
    }
    failf("hold %" PRIu64 " resolved but not open in the model", seq);
}

static struct m_account *m_acc(struct model *m, uint64_t id)
{
    return id >= 1 && id <= ACCOUNTS ? &m->acc[id] : NULL;
}

static int64_t m_balance(const struct m_account *a)
{
    return a->normal == LEDGER_NORMAL_CREDIT ? a->cp - a->dp : a->dp - a->cp;
}

static int64_t m_available(const struct m_account *a)
{
    return m_balance(a) - (a->normal == LEDGER_NORMAL_CREDIT ? a->dpend : a->cpend);
}

static bool m_overdrawn(const struct m_account *a)
{
    return (a->flags & LEDGER_ACCOUNT_NO_OVERDRAFT) && m_available(a) < 0;
}

static bool m_blocks(const struct m_account *dr, const struct m_account *cr)
{
    return (dr->flags & LEDGER_ACCOUNT_FROZEN) ||
           ((cr->flags & LEDGER_ACCOUNT_FROZEN) && cr->normal == LEDGER_NORMAL_DEBIT);
}

/* The rules of ledger_leg_check + ledger_leg_apply, in the writer's order. Applies on success. */
static enum cf_err m_leg_apply(struct model *m, const struct ledger_leg *l)
{
    if (l->amount <= 0)
        return CF_ERR_INVALID_AMOUNT;
    if (l->debit_id == 0 || l->credit_id == 0)
        return CF_ERR_ACCOUNT_NOT_FOUND;
    if (l->debit_id == l->credit_id)
        return CF_ERR_SAME_ACCOUNT;
    if (l->code[0] == '\0')
        return CF_ERR_INVALID_FIELD;
    if (l->timeout_s < 0 || l->timeout_s > LEDGER_TIMEOUT_S_MAX ||
        (l->timeout_s > 0 && !l->pending))
        return CF_ERR_TIMEOUT_INVALID;
    struct m_account *dr = m_acc(m, l->debit_id), *cr = m_acc(m, l->credit_id);
    if (dr == NULL || cr == NULL)
        return CF_ERR_ACCOUNT_NOT_FOUND;
    if (strcmp(currency_codes[dr->cur], l->currency) != 0 ||
        strcmp(currency_codes[cr->cur], l->currency) != 0)
        return CF_ERR_CURRENCY_MISMATCH;
    if (m_blocks(dr, cr))
        return CF_ERR_ACCOUNT_FROZEN;
    struct m_account d = *dr, c = *cr;
    if (l->pending) {
        d.dpend += l->amount;
        c.cpend += l->amount;
    } else {
        d.dp += l->amount;
        c.cp += l->amount;
    }
    if (m_overdrawn(&d) || m_overdrawn(&c))
        return CF_ERR_INSUFFICIENT_FUNDS;
    *dr = d;
    *cr = c;
    return CF_OK;
}

/* The rules of ledger_pending_resolve as the writer reaches them. Applies on success. */
static enum cf_err m_resolve(struct model *m, uint64_t seq, bool post, int64_t amount,
                             int64_t *applied)
{
    struct m_entry *p = m_entry_find(m, seq);
    if (p == NULL)
        return CF_ERR_TRANSFER_NOT_FOUND;
    if (p->type != LEDGER_ENTRY_PENDING)
        return CF_ERR_TRANSFER_NOT_PENDING;
    if (p->status == LEDGER_STATUS_POSTED)
        return CF_ERR_ALREADY_POSTED;
    if (p->status == LEDGER_STATUS_VOIDED)
        return CF_ERR_ALREADY_VOIDED;
    if (p->status == LEDGER_STATUS_EXPIRED || (p->expires > 0 && m->now >= p->expires))
        return CF_ERR_TRANSFER_EXPIRED;
    struct m_account *dr = m_acc(m, p->dr), *cr = m_acc(m, p->cr);
    int64_t posted = 0;
    if (post) {
        if (amount < 0)
            return CF_ERR_INVALID_AMOUNT;
        posted = amount == 0 ? p->amount : amount;
        if (posted > p->amount)
            return CF_ERR_EXCEEDS_PENDING;
        if (m_blocks(dr, cr))
            return CF_ERR_ACCOUNT_FROZEN;
    }
    dr->dpend -= p->amount;
    cr->cpend -= p->amount;
    dr->dp += posted;
    cr->cp += posted;
    p->status = post ? LEDGER_STATUS_POSTED : LEDGER_STATUS_VOIDED;
    p->resolved = posted;
    *applied = post ? posted : p->amount;
    open_remove(m, seq);
    return CF_OK;
}

static enum cf_err m_set_flags(struct model *m, uint64_t id, uint32_t set, uint32_t clear,
                               uint32_t *flags_out)
{
    struct m_account *a = m_acc(m, id);
    if (a == NULL)
        return CF_ERR_ACCOUNT_NOT_FOUND;
    struct m_account n = *a;
    n.flags = ((n.flags | set) & ~clear) & (LEDGER_ACCOUNT_NO_OVERDRAFT | LEDGER_ACCOUNT_FROZEN);
    if (m_overdrawn(&n))
        return CF_ERR_INSUFFICIENT_FUNDS;
    *a = n;
    *flags_out = n.flags;
    return CF_OK;
}

/* Records an entry the writer returned for leg l (TRANSFER or PENDING). */
static void m_record_leg_entry(struct model *m, const struct ledger_leg *l,
                               const struct ledger_entry *e, uint64_t group_seq)
{
    int64_t expires = l->timeout_s > 0 ? m->now + l->timeout_s * SEC : 0;
    if (e->debit_id != l->debit_id || e->credit_id != l->credit_id || e->amount != l->amount ||
        strcmp(e->currency, l->currency) != 0 || e->group_seq != group_seq ||
        e->type != (l->pending ? LEDGER_ENTRY_PENDING : LEDGER_ENTRY_TRANSFER) ||
        e->expires_at_us != expires || e->created_at_us != m->now)
        failf("entry %" PRIu64 " does not match its leg", e->seq);
    struct m_entry *x = m_entry_at(m, e->seq);
    if (x->known)
        failf("seq %" PRIu64 " returned twice", e->seq);
    *x = (struct m_entry){.known = true,
                          .type = e->type,
                          .dr = l->debit_id,
                          .cr = l->credit_id,
                          .amount = l->amount,
                          .expires = expires,
                          .status = l->pending ? LEDGER_STATUS_PENDING : LEDGER_STATUS_POSTED};
    if (l->pending)
        list_push(&m->open, &m->n_open, &m->open_cap, e->seq);
    else
        list_push(&m->closed, &m->n_closed, &m->closed_cap, e->seq);
    m->entries++;
}

/* Store access ----------------------------------------------------------------------------------
 */

struct env {
    char dir[64];
    struct store *s;
    struct writer *w;
    struct cf_clock clock;
    struct arena *arena;
    struct model m;
    uint64_t ops_done;
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

static struct store_reader *reader_open(struct env *v)
{
    struct store_reader *r;
    if (v->s->ops->r_open(v->s, &r) != CF_OK) {
        fprintf(stderr, "property_ledger: cannot open a reader\n");
        exit(2);
    }
    arena_reset(v->arena);
    return r;
}

/* Commands of a round ----------------------------------------------------------------------------
 */

enum op {
    OP_FUND,
    OP_TRANSFER,
    OP_INVALID,
    OP_MULTI,
    OP_HOLD,
    OP_POST,
    OP_VOID,
    OP_FLAGS,
    OP_BATCH,
};

struct slot {
    struct writer_cmd cmd;
    enum op op;
    struct ledger_leg legs[ITEMS_MAX];
    char keys[ITEMS_MAX][KEY_BYTES];
    size_t key_ids[ITEMS_MAX];
    struct arena *arena;
};

static struct slot slots[ROUND_MAX];

static uint64_t pick_account(struct model *m, int cur, enum role role)
{
    for (int tries = 0; tries < 64; tries++) {
        uint64_t id = m->by_cur[cur][rnd_below(m->n_by_cur[cur])];
        if (m->acc[id].role == role)
            return id;
    }
    return m->by_cur[cur][0];
}

static uint64_t pick_any(struct model *m, int cur)
{
    return m->by_cur[cur][rnd_below(m->n_by_cur[cur])];
}

static int64_t pick_amount(int cur)
{
    int64_t scale = cur == 1 ? 1 : 100; /* JPY has no minor unit: smaller numbers */
    if (chance(5))
        return rnd_range(1, 1000000) * scale * 100; /* usually more than anyone has */
    int64_t amount = rnd_range(1, 500) * scale;
    return amount / (chance(50) ? 1 : 10) + 1;
}

static void leg_set(struct ledger_leg *l, uint64_t dr, uint64_t cr, int64_t amount, int cur)
{
    memset(l, 0, sizeof(*l));
    l->debit_id = dr;
    l->credit_id = cr;
    l->amount = amount;
    strcpy(l->currency, currency_codes[cur]);
    strcpy(l->code, chance(80) ? "p2p" : "fee");
    if (chance(10)) {
        l->metadata = meta_text;
        l->metadata_len = sizeof(meta_text) - 1;
    }
}

static void gen_fund(struct model *m, struct slot *s)
{
    int cur = (int)rnd_below(CURRENCIES);
    uint64_t to =
        chance(10) ? pick_account(m, cur, ROLE_CLEARING) : pick_account(m, cur, ROLE_CUSTOMER);
    uint64_t from = pick_account(m, cur, ROLE_FUNDING);
    leg_set(&s->legs[0], from, to, rnd_range(1000, 200000), cur);
    s->cmd.type = WRITER_CMD_TRANSFER;
    s->cmd.legs_n = 1;
}

/* A transfer between two accounts of one currency (it may still fail on funds or a freeze). */
static void gen_transfer_leg(struct model *m, struct ledger_leg *l)
{
    int cur = (int)rnd_below(CURRENCIES);
    uint64_t dr = pick_any(m, cur), cr = pick_any(m, cur);
    while (cr == dr)
        cr = pick_any(m, cur);
    leg_set(l, dr, cr, pick_amount(cur), cur);
}

static void gen_hold_leg(struct model *m, struct ledger_leg *l)
{
    gen_transfer_leg(m, l);
    l->pending = true;
    if (chance(60))
        l->timeout_s = rnd_range(1, 240);
}

static void gen_transfer(struct model *m, struct slot *s)
{
    gen_transfer_leg(m, &s->legs[0]);
    s->cmd.type = WRITER_CMD_TRANSFER;
    s->cmd.legs_n = 1;
}

static void gen_hold(struct model *m, struct slot *s)
{
    gen_hold_leg(m, &s->legs[0]);
    s->cmd.type = WRITER_CMD_TRANSFER;
    s->cmd.legs_n = 1;
}

/* A transfer that breaks one rule (or, by chance, happens to be fine). */
static void gen_invalid(struct model *m, struct slot *s)
{
    gen_transfer(m, s);
    struct ledger_leg *l = &s->legs[0];
    int cur = m->acc[l->debit_id].cur;
    switch (rnd_below(7)) {
    case 0: /* wrong currency on the leg */
        strcpy(l->currency, currency_codes[(cur + 1) % CURRENCIES]);
        break;
    case 1: /* accounts of two currencies */
        l->credit_id = pick_any(m, (cur + 1) % CURRENCIES);
        break;
    case 2:
        l->credit_id = l->debit_id;
        break;
    case 3: /* a customer overdrawing (fine for the few without no_overdraft) */
        l->debit_id = pick_account(m, cur, ROLE_CUSTOMER);
        l->credit_id = pick_account(m, cur, ROLE_FUNDING);
        l->amount = INT64_C(1000000000000);
        break;
    case 4:
        l->amount = chance(50) ? 0 : -rnd_range(1, 100);
        break;
    case 5:
        l->credit_id = ACCOUNTS + 1 + rnd_below(5);
        break;
    default:
        l->timeout_s = rnd_range(1, 100); /* timeout without pending */
        break;
    }
}

/* 2..4 legs in one currency: a payment with fees, or a chain through several accounts. */
static void gen_multi(struct model *m, struct slot *s)
{
    int cur = (int)rnd_below(CURRENCIES);
    size_t n = (size_t)rnd_range(2, 4);
    for (size_t i = 0; i < n; i++) {
        uint64_t dr = i > 0 && chance(50) ? s->legs[i - 1].credit_id : pick_any(m, cur);
        uint64_t cr = pick_any(m, cur);
        while (cr == dr)
            cr = pick_any(m, cur);
        leg_set(&s->legs[i], dr, cr, pick_amount(cur), cur);
        if (chance(15))
            s->legs[i].pending = true;
    }
    s->cmd.type = WRITER_CMD_TRANSFER;
    s->cmd.legs_n = n;
}

/* A target for POST/VOID: mostly open holds, sometimes bad ones. */
static uint64_t pick_target(struct model *m)
{
    unsigned r = (unsigned)rnd_below(100);
    if (r < 80 && m->n_open > 0)
        return m->open[rnd_below(m->n_open)];
    if (r < 95 && m->n_closed > 0)
        return m->closed[rnd_below(m->n_closed)];
    return chance(50) ? 0 : (uint64_t)1 << 40;
}

static void gen_resolve(struct model *m, struct slot *s, bool post)
{
    s->cmd.type = post ? WRITER_CMD_POST : WRITER_CMD_VOID;
    s->cmd.target_id = pick_target(m);
    s->cmd.amount_minor = 0;
    struct m_entry *p = m_entry_find(m, s->cmd.target_id);
    if (post && p != NULL && chance(50))
        s->cmd.amount_minor = chance(85) ? rnd_range(1, p->amount) : p->amount + rnd_range(1, 10);
    else if (post && chance(2))
        s->cmd.amount_minor = -1;
}

/* A frozen account picked at random, or 0 when none is. */
static uint64_t pick_frozen(struct model *m)
{
    uint64_t frozen[ACCOUNTS];
    size_t n = 0;
    for (uint64_t id = 1; id <= ACCOUNTS; id++) {
        if (m->acc[id].flags & LEDGER_ACCOUNT_FROZEN)
            frozen[n++] = id;
    }
    return n == 0 ? 0 : frozen[rnd_below(n)];
}

/* Freezes and unfreezes (unfreezing more often, so that few accounts stay frozen) and toggles
 * no_overdraft on customers; now and then an unknown account or a flag already in place. */
static void gen_flags(struct model *m, struct slot *s)
{
    s->cmd.type = WRITER_CMD_SET_FLAGS;
    uint64_t id = chance(60) ? pick_frozen(m) : 0;
    if (id != 0) {
        s->cmd.target_id = id;
        s->cmd.flags_clear = LEDGER_ACCOUNT_FROZEN;
        return;
    }
    id = chance(3) ? ACCOUNTS + 7 : 1 + rnd_below(ACCOUNTS);
    s->cmd.target_id = id;
    struct m_account *a = m_acc(m, id);
    uint32_t flag = a != NULL && a->role == ROLE_CUSTOMER && chance(50)
                        ? LEDGER_ACCOUNT_NO_OVERDRAFT
                        : LEDGER_ACCOUNT_FROZEN;
    bool has = a != NULL && (a->flags & flag);
    if (chance(10))
        has = !has; /* set what is set, clear what is clear */
    if (has)
        s->cmd.flags_clear = flag;
    else
        s->cmd.flags_set = flag;
}

/* One batch item: a fresh key, a replay of a used key (same or other content), or the previous
 * item's key again in the same batch. */
static void gen_item(struct model *m, struct slot *s, size_t i)
{
    struct ledger_leg *l = &s->legs[i];
    size_t id;
    if (m->n_keys > 0 && chance(15)) {
        id = rnd_below(m->n_keys);
        if (m->keys[id].used) {
            *l = m->keys[id].leg;
            if (chance(30))
                l->amount += 1; /* other content: the key is reused */
        } else {
            gen_transfer_leg(m, l); /* a key that failed before (or is not applied yet) */
        }
    } else if (i > 0 && chance(5)) {
        id = s->key_ids[i - 1];
        *l = s->legs[i - 1];
    } else {
        m->keys = grow(m->keys, &m->keys_cap, m->n_keys + 1, sizeof(*m->keys));
        id = m->n_keys++;
        if (chance(25))
            gen_hold_leg(m, l);
        else
            gen_transfer_leg(m, l);
    }
    s->key_ids[i] = id;
    snprintf(s->keys[i], KEY_BYTES, "item-%zu", id);
    l->idem_key = s->keys[i];
    l->idem_key_len = chance(1) ? 0 : strlen(s->keys[i]); /* now and then an empty key */
}

static void gen_batch(struct model *m, struct slot *s)
{
    size_t n = (size_t)rnd_range(1, ITEMS_MAX);
    for (size_t i = 0; i < n; i++)
        gen_item(m, s, i);
    s->cmd.type = WRITER_CMD_BATCH;
    s->cmd.legs_n = n;
}

static void gen_slot(struct model *m, struct slot *s, bool resolve_only)
{
    struct arena *a = s->arena;
    memset(&s->cmd, 0, sizeof(s->cmd));
    arena_reset(a);
    s->cmd.arena = a;
    s->cmd.legs = s->legs;
    unsigned r = resolve_only ? 64 + (unsigned)rnd_below(20) : (unsigned)rnd_below(100);
    s->op = r < 6    ? OP_FUND
            : r < 34 ? OP_TRANSFER
            : r < 42 ? OP_INVALID
            : r < 50 ? OP_MULTI
            : r < 64 ? OP_HOLD
            : r < 76 ? OP_POST
            : r < 84 ? OP_VOID
            : r < 89 ? OP_FLAGS
                     : OP_BATCH;
    switch (s->op) {
    case OP_FUND:
        gen_fund(m, s);
        break;
    case OP_TRANSFER:
        gen_transfer(m, s);
        break;
    case OP_INVALID:
        gen_invalid(m, s);
        break;
    case OP_MULTI:
        gen_multi(m, s);
        break;
    case OP_HOLD:
        gen_hold(m, s);
        break;
    case OP_POST:
        gen_resolve(m, s, true);
        break;
    case OP_VOID:
        gen_resolve(m, s, false);
        break;
    case OP_FLAGS:
        gen_flags(m, s);
        break;
    case OP_BATCH:
        gen_batch(m, s);
        break;
    }
}

/* Checking results in submission order ----------------------------------------------------------
 */

static void check_transfer(struct model *m, struct slot *s)
{
    struct writer_cmd *c = &s->cmd;
    struct m_account saved[ACCOUNTS + 1];
    memcpy(saved, m->acc, sizeof(saved));
    enum cf_err want = CF_OK;
    size_t failed = 0;
    for (size_t i = 0; i < c->legs_n && want == CF_OK; i++) {
        want = m_leg_apply(m, &s->legs[i]);
        failed = i;
    }
    if (want != CF_OK)
        memcpy(m->acc, saved, sizeof(saved));
    outcomes[c->err < CF_ERR_COUNT_ ? c->err : CF_ERR_INTERNAL]++;
    if (c->err != want) {
        failf("transfer (op %d, %zu legs, %" PRIu64 " -> %" PRIu64 " %" PRId64
              " %s): got %s, model says %s",
              (int)s->op, c->legs_n, s->legs[0].debit_id, s->legs[0].credit_id, s->legs[0].amount,
              s->legs[0].currency, cf_err_code(c->err), cf_err_code(want));
        return;
    }
    if (want != CF_OK) {
        if (c->failed_leg != failed)
            failf("transfer failed at leg %zu, model says %zu", c->failed_leg, failed);
        return;
    }
    if (c->entries_n != c->legs_n) {
        failf("transfer returned %zu entries for %zu legs", c->entries_n, c->legs_n);
        return;
    }
    for (size_t i = 0; i < c->legs_n; i++)
        m_record_leg_entry(m, &s->legs[i], &c->entries_out[i], c->entries_out[0].seq);
}

static void check_resolve(struct model *m, struct slot *s)
{
    struct writer_cmd *c = &s->cmd;
    bool post = c->type == WRITER_CMD_POST;
    int64_t applied = 0;
    enum cf_err want = m_resolve(m, c->target_id, post, c->amount_minor, &applied);
    outcomes[c->err < CF_ERR_COUNT_ ? c->err : CF_ERR_INTERNAL]++;
    if (c->err != want) {
        failf("%s of %" PRIu64 " (amount %" PRId64 "): got %s, model says %s",
              post ? "post" : "void", c->target_id, c->amount_minor, cf_err_code(c->err),
              cf_err_code(want));
        return;
    }
    if (want != CF_OK)
        return;
    const struct ledger_entry *e = &c->entries_out[0];
    const struct m_entry p = *m_entry_find(m, c->target_id); /* a copy: m->ent may move below */
    if (c->entries_n != 1 || e->pending_seq != c->target_id || e->amount != applied ||
        e->type != (post ? LEDGER_ENTRY_POST_PENDING : LEDGER_ENTRY_VOID_PENDING) ||
        e->debit_id != p.dr || e->credit_id != p.cr || c->pending_out.status != p.status ||
        c->pending_out.resolved_amount != p.resolved || c->pending_out.resolution_seq != e->seq)
        failf("resolution entry %" PRIu64 " of hold %" PRIu64 " is not as the model says", e->seq,
              c->target_id);
    struct m_entry *x = m_entry_at(m, e->seq);
    *x = (struct m_entry){.known = true,
                          .type = e->type,
                          .dr = p.dr,
                          .cr = p.cr,
                          .amount = applied,
                          .status = e->status};
    list_push(&m->closed, &m->n_closed, &m->closed_cap, e->seq);
    m->entries++;
}

static void check_flags(struct model *m, struct slot *s)
{
    struct writer_cmd *c = &s->cmd;
    uint32_t flags = 0;
    enum cf_err want = m_set_flags(m, c->target_id, c->flags_set, c->flags_clear, &flags);
    outcomes[c->err < CF_ERR_COUNT_ ? c->err : CF_ERR_INTERNAL]++;
    if (c->err != want)
        failf("set_flags on %" PRIu64 ": got %s, model says %s", c->target_id, cf_err_code(c->err),
              cf_err_code(want));
    else if (want == CF_OK && (c->account_out.flags != flags || c->account_out.id != c->target_id))
        failf("set_flags on %" PRIu64 ": flags %u, model says %u", c->target_id,
              c->account_out.flags, flags);
}

static bool leg_same_content(const struct ledger_leg *a, const struct ledger_leg *b)
{
    return a->debit_id == b->debit_id && a->credit_id == b->credit_id && a->amount == b->amount &&
           strcmp(a->currency, b->currency) == 0 && strcmp(a->code, b->code) == 0 &&
           a->pending == b->pending && a->metadata_len == b->metadata_len;
}

/* One batch item as the writer handles it; returns the expected error. */
static enum cf_err m_item(struct model *m, struct slot *s, size_t i, bool *existed, uint64_t *seq)
{
    const struct ledger_leg *l = &s->legs[i];
    *existed = false;
    if (l->idem_key_len == 0)
        return CF_ERR_IDEM_KEY_INVALID;
    struct m_key *k = &m->keys[s->key_ids[i]];
    if (k->used) {
        if (!leg_same_content(&k->leg, l))
            return CF_ERR_IDEM_KEY_REUSED;
        *existed = true;
        *seq = k->seq;
        return CF_OK;
    }
    return m_leg_apply(m, l);
}

static void check_batch(struct model *m, struct slot *s)
{
    struct writer_cmd *c = &s->cmd;
    if (c->err != CF_OK || c->items == NULL) {
        failf("batch command failed as a whole: %s", cf_err_code(c->err));
        return;
    }
    for (size_t i = 0; i < c->legs_n; i++) {
        const struct writer_item_result *res = &c->items[i];
        bool existed = false;
        uint64_t seq = 0;
        enum cf_err want = m_item(m, s, i, &existed, &seq);
        outcomes[res->err < CF_ERR_COUNT_ ? res->err : CF_ERR_INTERNAL]++;
        replays_existed += res->existed;
        if (res->err != want || res->existed != existed) {
            failf("batch item %zu (key %s): got %s%s, model says %s%s", i, s->keys[i],
                  cf_err_code(res->err), res->existed ? " (existed)" : "", cf_err_code(want),
                  existed ? " (existed)" : "");
            continue;
        }
        if (want != CF_OK)
            continue;
        if (existed) {
            if (res->entry.seq != seq)
                failf("batch item %s replayed seq %" PRIu64 ", model says %" PRIu64, s->keys[i],
                      res->entry.seq, seq);
            continue;
        }
        m_record_leg_entry(m, &s->legs[i], &res->entry, res->entry.seq);
        struct m_key *k = &m->keys[s->key_ids[i]];
        k->used = true;
        k->leg = s->legs[i];
        k->leg.idem_key = NULL; /* points into the slot; not compared */
        k->seq = res->entry.seq;
    }
}

static void check_slot(struct model *m, struct slot *s)
{
    switch (s->cmd.type) {
    case WRITER_CMD_TRANSFER:
        check_transfer(m, s);
        break;
    case WRITER_CMD_POST:
    case WRITER_CMD_VOID:
        check_resolve(m, s);
        break;
    case WRITER_CMD_SET_FLAGS:
        check_flags(m, s);
        break;
    case WRITER_CMD_BATCH:
        check_batch(m, s);
        break;
    default:
        failf("unexpected command type %d", (int)s->cmd.type);
        break;
    }
}

/* A round of n random commands; with resolve_only, only posts and voids. */
static void run_round(struct env *v, size_t n, bool resolve_only)
{
    struct writer_cmd *cmds[ROUND_MAX];
    for (size_t i = 0; i < n; i++) {
        gen_slot(&v->m, &slots[i], resolve_only);
        cmds[i] = &slots[i].cmd;
    }
    writer_run_many(v->w, cmds, n);
    for (size_t i = 0; i < n; i++)
        check_slot(&v->m, &slots[i]);
    v->ops_done += n;
}

/* Time ------------------------------------------------------------------------------------------
 */

static void advance_clock(struct env *v)
{
    int64_t delta = rnd_range(0, 90) * SEC;
    delta += rnd_range(0, 999999);
    cf_clock_fake_advance(&v->clock, delta);
    v->m.now += delta;
    v->ops_done++;
}

/* Sweeps, and expects exactly the holds due by now to be expired. */
static void sweep_and_check(struct env *v)
{
    struct model *m = &v->m;
    size_t due = 0;
    for (size_t i = 0; i < m->n_open; i++) {
        struct m_entry *p = &m->ent[m->open[i]];
        due += p->expires > 0 && p->expires <= m->now;
    }
    for (size_t i = 0; i <= due / LEDGER_EXPIRE_SWEEP_MAX; i++)
        writer_sweep_now(v->w);
    struct store_reader *r = reader_open(v);
    for (size_t i = 0; i < m->n_open;) {
        uint64_t seq = m->open[i];
        struct m_entry *p = &m->ent[seq];
        if (p->expires == 0 || p->expires > m->now) {
            i++;
            continue;
        }
        struct ledger_entry e;
        if (v->s->ops->r_entry_get(r, seq, &e, v->arena) != CF_OK ||
            e.status != LEDGER_STATUS_EXPIRED)
            failf("hold %" PRIu64 " due at %" PRId64 " not expired at %" PRId64, seq, p->expires,
                  m->now);
        m->acc[p->dr].dpend -= p->amount;
        m->acc[p->cr].cpend -= p->amount;
        p->status = LEDGER_STATUS_EXPIRED;
        m->entries++;
        outcomes[CF_ERR_COUNT_]++;
        open_remove(m, seq); /* swaps the last open hold into i */
    }
    v->s->ops->r_close(r);
}

/* Setup ------------------------------------------------------------------------------------------
 */

static void create_accounts(struct env *v)
{
    struct writer_cmd *cmds[ACCOUNTS];
    static struct writer_cmd cc[ACCOUNTS];
    for (int i = 0; i < ACCOUNTS; i++) {
        int cur = i % CURRENCIES, k = i / CURRENCIES;
        struct m_account *ma = &v->m.acc[i + 1];
        ma->cur = cur;
        ma->role = k < 2 ? ROLE_FUNDING : k == 2 ? ROLE_CLEARING : ROLE_CUSTOMER;
        ma->normal = ma->role == ROLE_CUSTOMER ? LEDGER_NORMAL_CREDIT : LEDGER_NORMAL_DEBIT;
        ma->flags = ma->role == ROLE_CLEARING || (ma->role == ROLE_CUSTOMER && k % 4 != 0)
                        ? LEDGER_ACCOUNT_NO_OVERDRAFT
                        : 0;
        memset(&cc[i], 0, sizeof(cc[i]));
        cc[i].type = WRITER_CMD_ACCOUNT_CREATE;
        strcpy(cc[i].account.currency, currency_codes[cur]);
        cc[i].account.normal = ma->normal;
        cc[i].account.kind = ma->role == ROLE_CUSTOMER ? LEDGER_KIND_CUSTOMER : LEDGER_KIND_SYSTEM;
        cc[i].account.flags = ma->flags;
        cc[i].arena = slots[i % ROUND_MAX].arena;
        cmds[i] = &cc[i];
        v->m.by_cur[cur][v->m.n_by_cur[cur]++] = (uint64_t)i + 1;
    }
    writer_run_many(v->w, cmds, ACCOUNTS);
    for (int i = 0; i < ACCOUNTS; i++) {
        if (cc[i].err != CF_OK || cc[i].account_out.id != (uint64_t)i + 1)
            failf("account %d not created as id %d", i + 1, i + 1);
    }
}

static void env_open(struct env *v, uint64_t seed)
{
    rng_state = seed;
    strcpy(v->dir, "/tmp/coffer-property-XXXXXX");
    if (hash_init() != 0 || mkdtemp(v->dir) == NULL) {
        fprintf(stderr, "property_ledger: setup failed\n");
        exit(2);
    }
    cf_clock_fake_init(&v->clock, T0);
    v->m.now = T0;
    struct store_options o = {.location = v->dir, .readers = 2, .create = true};
    if (store_open(&o, &v->s) != CF_OK || writer_create(v->s, &v->clock, &v->w) != CF_OK) {
        fprintf(stderr, "property_ledger: cannot open the store or the writer\n");
        exit(2);
    }
    v->arena = arena_create(256u << 20);
    for (size_t i = 0; i < ROUND_MAX; i++)
        slots[i].arena = arena_create(8u << 20);
    for (int c = 0; c < CURRENCIES; c++) {
        if (currency_find(currency_codes[c], strlen(currency_codes[c])) == NULL)
            failf("currency_find does not know %s", currency_codes[c]);
    }
}

static void env_close(struct env *v)
{
    writer_destroy(v->w);
    v->s->ops->close(v->s);
    arena_destroy(v->arena);
    for (size_t i = 0; i < ROUND_MAX; i++)
        arena_destroy(slots[i].arena);
    dir_remove(v->dir);
    free(v->m.ent);
    free(v->m.open);
    free(v->m.closed);
    free(v->m.keys);
}

/* Final checks -----------------------------------------------------------------------------------
 */

static void check_accounts(struct env *v, struct store_reader *r)
{
    for (uint64_t id = 1; id <= ACCOUNTS; id++) {
        struct store_account_row row;
        const struct m_account *ma = &v->m.acc[id];
        if (v->s->ops->r_account_get(r, id, &row, v->arena) != CF_OK) {
            failf("account %" PRIu64 " cannot be read", id);
            continue;
        }
        const struct ledger_account *a = &row.account;
        if (a->debits_posted != ma->dp || a->credits_posted != ma->cp ||
            a->debits_pending != ma->dpend || a->credits_pending != ma->cpend ||
            a->flags != ma->flags)
            failf("account %" PRIu64 ": stored dp=%" PRId64 " cp=%" PRId64 " dpend=%" PRId64
                  " cpend=%" PRId64 " flags=%u, model dp=%" PRId64 " cp=%" PRId64 " dpend=%" PRId64
                  " cpend=%" PRId64 " flags=%u",
                  id, a->debits_posted, a->credits_posted, a->debits_pending, a->credits_pending,
                  a->flags, ma->dp, ma->cp, ma->dpend, ma->cpend, ma->flags);
        if ((a->flags & LEDGER_ACCOUNT_NO_OVERDRAFT) && ledger_account_available(a) < 0)
            failf("no_overdraft account %" PRIu64 " has available %" PRId64, id,
                  ledger_account_available(a));
        if (!ledger_account_is_valid(a))
            failf("account %" PRIu64 " breaks its own invariants", id);
    }
}

static int currency_index(const char *code)
{
    for (int c = 0; c < CURRENCIES; c++) {
        if (strcmp(currency_codes[c], code) == 0)
            return c;
    }
    return -1;
}

/* The model's sums of one currency: dp, cp, dpend, cpend. */
static void model_sums(const struct model *m, const char *currency, int64_t sums[4])
{
    memset(sums, 0, 4 * sizeof(sums[0]));
    for (uint64_t id = 1; id <= ACCOUNTS; id++) {
        const struct m_account *a = &m->acc[id];
        if (strcmp(currency_codes[a->cur], currency) != 0)
            continue;
        sums[0] += a->dp;
        sums[1] += a->cp;
        sums[2] += a->dpend;
        sums[3] += a->cpend;
    }
}

/* I1 per currency, and the sums against the model's. The sums here stay far below INT64_MAX,
 * so they print as int64_t whatever width the store reports them in. */
static void check_totals(struct env *v, struct store_reader *r)
{
    struct store_currency_totals t[CURRENCIES + 1];
    size_t n = 0;
    if (v->s->ops->r_currency_totals(r, t, CURRENCIES + 1, &n) != CF_OK || n != CURRENCIES) {
        failf("currency totals: %zu currencies", n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t sums[4];
        model_sums(&v->m, t[i].currency, sums);
        if (t[i].debits_posted != t[i].credits_posted ||
            t[i].debits_pending != t[i].credits_pending)
            failf("%s: debits_posted %" PRId64 " credits_posted %" PRId64 " debits_pending %" PRId64
                  " credits_pending %" PRId64,
                  t[i].currency, (int64_t)t[i].debits_posted, (int64_t)t[i].credits_posted,
                  (int64_t)t[i].debits_pending, (int64_t)t[i].credits_pending);
        if (t[i].debits_posted != sums[0] || t[i].credits_posted != sums[1] ||
            t[i].debits_pending != sums[2] || t[i].credits_pending != sums[3])
            failf("%s: totals differ from the model's sums", t[i].currency);
        int cur = currency_index(t[i].currency);
        if (cur < 0 || t[i].accounts != v->m.n_by_cur[cur])
            failf("%s: %" PRIu64 " accounts", t[i].currency, t[i].accounts);
    }
}

/* What the journal says, rebuilt entry by entry. */
struct replay {
    int64_t dp[ACCOUNTS + 1], cp[ACCOUNTS + 1], dpend[ACCOUNTS + 1], cpend[ACCOUNTS + 1];
    uint64_t last[ACCOUNTS + 1];
    uint8_t prev_hash[HASH_BYTES];
    uint64_t seq;
    struct m_entry *e; /* by seq: type, status and amount of every entry */
    size_t cap;
    uint64_t *resolution; /* by seq: resolution_seq of holds; pending_seq of resolutions */
    size_t rcap;
};

static bool replay_ids_ok(const struct ledger_entry *e)
{
    return e->debit_id >= 1 && e->debit_id <= ACCOUNTS && e->credit_id >= 1 &&
           e->credit_id <= ACCOUNTS && e->debit_id != e->credit_id;
}

/* Applies one entry's effect on the totals, as ledger.h lists them. */
static void replay_apply(struct replay *rp, const struct ledger_entry *e)
{
    uint64_t d = e->debit_id, c = e->credit_id;
    int64_t held = 0;
    if (e->type >= LEDGER_ENTRY_POST_PENDING) {
        if (e->pending_seq == 0 || e->pending_seq >= e->seq ||
            rp->e[e->pending_seq].type != LEDGER_ENTRY_PENDING) {
            failf("entry %" PRIu64 " resolves %" PRIu64 ", not an earlier hold", e->seq,
                  e->pending_seq);
            return;
        }
        held = rp->e[e->pending_seq].amount;
        rp->dpend[d] -= held;
        rp->cpend[c] -= held;
        if (e->type != LEDGER_ENTRY_POST_PENDING && e->amount != held)
            failf("entry %" PRIu64 " releases %" PRId64 " of a hold of %" PRId64, e->seq, e->amount,
                  held);
        if (e->type == LEDGER_ENTRY_POST_PENDING && e->amount > held)
            failf("entry %" PRIu64 " posts %" PRId64 " of a hold of %" PRId64, e->seq, e->amount,
                  held);
    }
    switch (e->type) {
    case LEDGER_ENTRY_TRANSFER:
    case LEDGER_ENTRY_POST_PENDING:
        rp->dp[d] += e->amount;
        rp->cp[c] += e->amount;
        break;
    case LEDGER_ENTRY_PENDING:
        rp->dpend[d] += e->amount;
        rp->cpend[c] += e->amount;
        break;
    default:
        break;
    }
}

static void replay_entry(struct replay *rp, const struct ledger_entry *e)
{
    if (e->seq != rp->seq + 1)
        failf("journal jumps from %" PRIu64 " to %" PRIu64, rp->seq, e->seq);
    rp->seq = e->seq;
    uint8_t h[HASH_BYTES];
    ledger_entry_hash(rp->prev_hash, e, h);
    if (!hash_equal(h, e->hash, HASH_BYTES))
        failf("hash chain broken at %" PRIu64, e->seq);
    memcpy(rp->prev_hash, e->hash, HASH_BYTES);
    if (!replay_ids_ok(e)) {
        failf("entry %" PRIu64 " has bad accounts", e->seq);
        return;
    }
    if (e->debit_prev_seq != rp->last[e->debit_id] || e->credit_prev_seq != rp->last[e->credit_id])
        failf("entry %" PRIu64 " has wrong history links", e->seq);
    rp->last[e->debit_id] = rp->last[e->credit_id] = e->seq;
    rp->e = grow(rp->e, &rp->cap, (size_t)e->seq + 1, sizeof(*rp->e));
    rp->resolution = grow(rp->resolution, &rp->rcap, (size_t)e->seq + 1, sizeof(*rp->resolution));
    rp->e[e->seq] = (struct m_entry){.known = true,
                                     .type = e->type,
                                     .status = e->status,
                                     .amount = e->amount,
                                     .resolved = e->resolved_amount};
    rp->resolution[e->seq] = e->type == LEDGER_ENTRY_PENDING ? e->resolution_seq : e->pending_seq;
    replay_apply(rp, e);
}

/* Every resolved hold names the entry that resolved it, and that entry names the hold back. */
static void replay_check_links(struct replay *rp)
{
    static const uint8_t status_of[] = {[LEDGER_ENTRY_POST_PENDING] = LEDGER_STATUS_POSTED,
                                        [LEDGER_ENTRY_VOID_PENDING] = LEDGER_STATUS_VOIDED,
                                        [LEDGER_ENTRY_EXPIRE_PENDING] = LEDGER_STATUS_EXPIRED};
    for (uint64_t s = 1; s <= rp->seq; s++) {
        const struct m_entry *e = &rp->e[s];
        if (e->type != LEDGER_ENTRY_PENDING) {
            if (e->type >= LEDGER_ENTRY_POST_PENDING && rp->resolution[s] < s &&
                rp->resolution[rp->resolution[s]] != s)
                failf("resolution %" PRIu64 " is not named by its hold", s);
            continue;
        }
        uint64_t r = rp->resolution[s];
        if (e->status == LEDGER_STATUS_PENDING) {
            if (r != 0)
                failf("pending hold %" PRIu64 " names a resolution", s);
            continue;
        }
        if (r == 0 || r > rp->seq || rp->e[r].type < LEDGER_ENTRY_POST_PENDING ||
            status_of[rp->e[r].type] != e->status ||
            (e->status == LEDGER_STATUS_POSTED && e->resolved != rp->e[r].amount))
            failf("hold %" PRIu64 " (status %d) and its resolution %" PRIu64 " disagree", s,
                  (int)e->status, r);
    }
}

static void check_replay_totals(struct env *v, struct store_reader *r, struct replay *rp)
{
    for (uint64_t id = 1; id <= ACCOUNTS; id++) {
        struct store_account_row row;
        if (v->s->ops->r_account_get(r, id, &row, v->arena) != CF_OK)
            continue;
        const struct ledger_account *a = &row.account;
        if (a->debits_posted != rp->dp[id] || a->credits_posted != rp->cp[id] ||
            a->debits_pending != rp->dpend[id] || a->credits_pending != rp->cpend[id])
            failf("account %" PRIu64 ": the journal sums to dp=%" PRId64 " cp=%" PRId64
                  " dpend=%" PRId64 " cpend=%" PRId64 ", stored dp=%" PRId64 " cp=%" PRId64
                  " dpend=%" PRId64 " cpend=%" PRId64,
                  id, rp->dp[id], rp->cp[id], rp->dpend[id], rp->cpend[id], a->debits_posted,
                  a->credits_posted, a->debits_pending, a->credits_pending);
        if (a->last_seq != rp->last[id])
            failf("account %" PRIu64 ": last_seq %" PRIu64 ", journal says %" PRIu64, id,
                  a->last_seq, rp->last[id]);
    }
}

/* The model's view of every hold against the journal's. */
static void check_holds(struct env *v, struct replay *rp)
{
    for (uint64_t s = 1; s < v->m.ent_cap; s++) {
        const struct m_entry *x = &v->m.ent[s];
        if (!x->known)
            continue;
        if (s > rp->seq || rp->e[s].type != x->type || rp->e[s].amount != x->amount ||
            (x->type == LEDGER_ENTRY_PENDING &&
             (rp->e[s].status != x->status || rp->e[s].resolved != x->resolved)))
            failf("entry %" PRIu64 ": the journal and the model disagree", s);
    }
}

static uint64_t check_journal(struct env *v, struct store_reader *r)
{
    static struct replay rp;
    memset(&rp, 0, sizeof(rp));
    struct ledger_entry page[512];
    size_t n = 0;
    do {
        arena_reset(v->arena);
        if (v->s->ops->r_entries_scan(r, rp.seq, 512, page, &n, v->arena) != CF_OK) {
            failf("journal scan failed after %" PRIu64, rp.seq);
            break;
        }
        for (size_t i = 0; i < n; i++)
            replay_entry(&rp, &page[i]);
    } while (n > 0);
    if (rp.seq != v->m.entries)
        failf("journal has %" PRIu64 " entries, the model expects %" PRIu64, rp.seq, v->m.entries);
    if (rp.seq > 0) {
        replay_check_links(&rp);
        check_holds(v, &rp);
    }
    check_replay_totals(v, r, &rp);
    free(rp.e);
    free(rp.resolution);
    return rp.seq;
}

/* Main -------------------------------------------------------------------------------------------
 */

/* One step: a round of commands, or the clock moving with a sweep. Holds that fall due are
 * expired by the writer's own periodic sweep at a moment the test does not control, which would
 * change available balances under a round; so after the clock moves only posts and voids run
 * (whose outcome does not depend on it: a due hold answers transfer_expired either way) until
 * the explicit sweep. */
static void step(struct env *v, uint64_t left)
{
    size_t n = (size_t)rnd_range(1, ROUND_MAX);
    if (n > left)
        n = (size_t)left;
    if (!chance(12)) {
        run_round(v, n, false);
        return;
    }
    advance_clock(v);
    if (chance(50) && n > 1)
        run_round(v, n - 1, true);
    sweep_and_check(v);
}

/* With -v: how often each outcome came up, to see that the operations reach every rule. */
static void print_outcomes(void)
{
    for (int e = 0; e < CF_ERR_COUNT_; e++) {
        if (outcomes[e] > 0)
            printf("  %-28s %" PRIu64 "\n", cf_err_code((enum cf_err)e), outcomes[e]);
    }
    printf("  %-28s %" PRIu64 "\n  %-28s %" PRIu64 "\n", "(holds expired)", outcomes[CF_ERR_COUNT_],
           "(batch items replayed)", replays_existed);
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "-v") == 0)) {
        fprintf(stderr, "usage: %s OPS SEED [-v]\n", argv[0]);
        return 2;
    }
    uint64_t ops = strtoull(argv[1], NULL, 10), seed = strtoull(argv[2], NULL, 10);
    cf_log_set_level(LOG_WARN);
    static struct env v;
    env_open(&v, seed);
    create_accounts(&v);
    while (v.ops_done < ops && failures == 0)
        step(&v, ops - v.ops_done);
    sweep_and_check(&v);
    struct store_reader *r = reader_open(&v);
    check_accounts(&v, r);
    check_totals(&v, r);
    uint64_t entries = check_journal(&v, r);
    v.s->ops->r_close(r);
    env_close(&v);
    if (argc == 4)
        print_outcomes();
    if (failures > 0) {
        printf("property_ledger: %" PRIu64 " ops, seed %" PRIu64 ", %lu failures\n", v.ops_done,
               seed, failures);
        return 1;
    }
    printf("property_ledger: %" PRIu64 " ops, %" PRIu64 " entries, ok\n", v.ops_done, entries);
    return 0;
}
