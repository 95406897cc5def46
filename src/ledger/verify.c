/* verify.c - re-sums the ledger from its journal and checks every invariant; see verify.h. */
#include "ledger/verify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "money/money.h"

#define SCAN_PAGE 8192
#define PROBLEMS_REPORTED_MAX 100

struct acct_sum {
    struct ledger_account stored;
    struct ledger_account summed; /* totals re-computed from the journal */
};

struct pend {
    uint64_t seq;
    int64_t held; /* the amount the pending entry holds */
    uint8_t stored_status, replay_status;
    uint64_t stored_resolution, replay_resolution;
};

struct vctx {
    struct verify_report *rep;
    verify_problem_fn problem;
    void *ctx;
    struct acct_sum *accts;
    size_t accts_n;
    struct pend *pends;
    size_t pends_n, pends_cap;
    uint8_t prev[HASH_BYTES];
    uint64_t last_seq;
};

static void report(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct vctx *v, const char *fmt, ...)
{
    v->rep->problems++;
    if (v->rep->problems > PROBLEMS_REPORTED_MAX)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    v->problem(v->ctx, line);
}

static struct acct_sum *acct_find(struct vctx *v, uint64_t id)
{
    size_t lo = 0, hi = v->accts_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->accts[mid].stored.id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->accts_n && v->accts[lo].stored.id == id ? &v->accts[lo] : NULL;
}

static struct pend *pend_find(struct vctx *v, uint64_t seq)
{
    size_t lo = 0, hi = v->pends_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->pends[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->pends_n && v->pends[lo].seq == seq ? &v->pends[lo] : NULL;
}

static enum cf_err accounts_load(struct vctx *v, struct store_reader *r,
                                 const struct store_ops *ops, struct arena *arena)
{
    size_t cap = 0;
    uint64_t after = 0;
    struct store_account_row *rows = malloc(SCAN_PAGE * sizeof(*rows));
    if (rows == NULL)
        return CF_ERR_NOMEM;
    for (;;) {
        size_t n = 0;
        arena_reset(arena);
        enum cf_err err = ops->r_accounts_list(r, after, SCAN_PAGE, rows, &n, arena);
        if (err != CF_OK) {
            free(rows);
            return err;
        }
        if (v->accts_n + n > cap) {
            cap = (cap + n) * 2;
            struct acct_sum *p = realloc(v->accts, cap * sizeof(*p));
            if (p == NULL) {
                free(rows);
                return CF_ERR_NOMEM;
            }
            v->accts = p;
        }
        for (size_t i = 0; i < n; i++) {
            struct acct_sum *a = &v->accts[v->accts_n++];
            a->stored = rows[i].account;
            a->summed = rows[i].account;
            a->summed.debits_posted = a->summed.credits_posted = 0;
            a->summed.debits_pending = a->summed.credits_pending = 0;
            a->summed.last_seq = 0;
        }
        if (n < SCAN_PAGE)
            break;
        after = rows[n - 1].account.id;
    }
    free(rows);
    v->rep->accounts = v->accts_n;
    return CF_OK;
}

static void total_add(struct vctx *v, int64_t *total, int64_t delta, uint64_t seq)
{
    int64_t out;
    if (money_add(*total, delta, &out) != CF_OK || out < 0) {
        report(v, "entry %llu: an account total overflows or goes below zero",
               (unsigned long long)seq);
        return;
    }
    *total = out;
}

static bool pend_push(struct vctx *v, const struct ledger_entry *e)
{
    if (v->pends_n == v->pends_cap) {
        size_t cap = v->pends_cap == 0 ? 1024 : v->pends_cap * 2;
        struct pend *p = realloc(v->pends, cap * sizeof(*p));
        if (p == NULL)
            return false;
        v->pends = p;
        v->pends_cap = cap;
    }
    struct pend *p = &v->pends[v->pends_n++];
    p->seq = e->seq;
    p->held = e->amount;
    p->stored_status = e->status;
    p->stored_resolution = e->resolution_seq;
    p->replay_status = LEDGER_STATUS_PENDING;
    p->replay_resolution = 0;
    return true;
}

/* Replays a resolution on its pending transfer; returns the amount it releases (0: broken). */
static int64_t entry_resolve(struct vctx *v, const struct ledger_entry *e)
{
    struct pend *p = pend_find(v, e->pending_seq);
    if (p == NULL) {
        report(v, "entry %llu resolves %llu, which is not a pending transfer",
               (unsigned long long)e->seq, (unsigned long long)e->pending_seq);
        return 0;
    }
    if (p->replay_status != LEDGER_STATUS_PENDING) {
        report(v, "entry %llu resolves pending %llu a second time", (unsigned long long)e->seq,
               (unsigned long long)p->seq);
        return 0;
    }
    if (e->type == LEDGER_ENTRY_POST_PENDING && e->amount > p->held)
        report(v, "entry %llu posts more than pending %llu holds", (unsigned long long)e->seq,
               (unsigned long long)p->seq);
    p->replay_status = e->type == LEDGER_ENTRY_POST_PENDING   ? LEDGER_STATUS_POSTED
                       : e->type == LEDGER_ENTRY_VOID_PENDING ? LEDGER_STATUS_VOIDED
                                                              : LEDGER_STATUS_EXPIRED;
    p->replay_resolution = e->seq;
    return p->held;
}

static void entry_apply(struct vctx *v, const struct ledger_entry *e)
{
    struct acct_sum *dr = acct_find(v, e->debit_id), *cr = acct_find(v, e->credit_id);
    if (dr == NULL || cr == NULL || dr == cr) {
        report(v, "entry %llu names an unknown or identical account", (unsigned long long)e->seq);
        return;
    }
    if (strcmp(dr->stored.currency, e->currency) != 0 ||
        strcmp(cr->stored.currency, e->currency) != 0)
        report(v, "entry %llu: currency %s differs from its accounts'", (unsigned long long)e->seq,
               e->currency);
    if (e->debit_prev_seq != dr->summed.last_seq || e->credit_prev_seq != cr->summed.last_seq)
        report(v, "entry %llu: history links do not point at the accounts' previous entries",
               (unsigned long long)e->seq);
    dr->summed.last_seq = e->seq;
    cr->summed.last_seq = e->seq;
    if (e->type == LEDGER_ENTRY_TRANSFER) {
        total_add(v, &dr->summed.debits_posted, e->amount, e->seq);
        total_add(v, &cr->summed.credits_posted, e->amount, e->seq);
    } else if (e->type == LEDGER_ENTRY_PENDING) {
        total_add(v, &dr->summed.debits_pending, e->amount, e->seq);
        total_add(v, &cr->summed.credits_pending, e->amount, e->seq);
        if (!pend_push(v, e))
            report(v, "out of memory tracking pending transfers");
    } else {
        int64_t held = entry_resolve(v, e);
        total_add(v, &dr->summed.debits_pending, -held, e->seq);
        total_add(v, &cr->summed.credits_pending, -held, e->seq);
        if (e->type == LEDGER_ENTRY_POST_PENDING) {
            total_add(v, &dr->summed.debits_posted, e->amount, e->seq);
            total_add(v, &cr->summed.credits_posted, e->amount, e->seq);
        }
    }
}

static void entry_check(struct vctx *v, const struct ledger_entry *e)
{
    uint8_t h[HASH_BYTES];
    if (e->seq == 0 || e->amount <= 0 || e->debit_id == 0 || e->credit_id == 0) {
        report(v, "entry %llu: zero id or non-positive amount %lld", (unsigned long long)e->seq,
               (long long)e->amount);
        memcpy(v->prev, e->hash, HASH_BYTES);
        v->last_seq = e->seq;
        v->rep->entries++;
        return;
    }
    if (e->seq != v->last_seq + 1)
        report(v, "journal gap: entry %llu follows %llu", (unsigned long long)e->seq,
               (unsigned long long)v->last_seq);
    ledger_entry_hash(v->prev, e, h);
    if (!hash_equal(h, e->hash, HASH_BYTES))
        report(v, "entry %llu: hash does not match its contents and the chain",
               (unsigned long long)e->seq);
    memcpy(v->prev, e->hash, HASH_BYTES);
    v->last_seq = e->seq;
    entry_apply(v, e);
    v->rep->entries++;
}

static enum cf_err entries_scan(struct vctx *v, struct store_reader *r, const struct store_ops *ops,
                                struct arena *arena)
{
    struct ledger_entry *page = malloc(SCAN_PAGE * sizeof(*page));
    if (page == NULL)
        return CF_ERR_NOMEM;
    uint64_t after = 0;
    enum cf_err err;
    for (;;) {
        size_t n = 0;
        arena_reset(arena);
        if ((err = ops->r_entries_scan(r, after, SCAN_PAGE, page, &n, arena)) != CF_OK)
            break;
        for (size_t i = 0; i < n; i++)
            entry_check(v, &page[i]);
        if (n < SCAN_PAGE)
            break;
        after = page[n - 1].seq;
    }
    free(page);
    memcpy(v->rep->head_hash, v->prev, HASH_BYTES);
    return err;
}

static void accounts_check(struct vctx *v)
{
    for (size_t i = 0; i < v->accts_n; i++) {
        const struct ledger_account *s = &v->accts[i].stored, *m = &v->accts[i].summed;
        char id[ID_TEXT_BYTES_MAX];
        if (s->id == 0) {
            report(v, "an account has id 0");
            continue;
        }
        id_format(ID_PREFIX_ACCOUNT, s->id, id);
        if (s->debits_posted != m->debits_posted || s->credits_posted != m->credits_posted ||
            s->debits_pending != m->debits_pending || s->credits_pending != m->credits_pending)
            report(v,
                   "account %s: stored totals %lld/%lld/%lld/%lld, journal gives "
                   "%lld/%lld/%lld/%lld (debits/credits posted, debits/credits pending)",
                   id, (long long)s->debits_posted, (long long)s->credits_posted,
                   (long long)s->debits_pending, (long long)s->credits_pending,
                   (long long)m->debits_posted, (long long)m->credits_posted,
                   (long long)m->debits_pending, (long long)m->credits_pending);
        if (s->last_seq != m->last_seq)
            report(v, "account %s: history starts at entry %llu, journal says %llu", id,
                   (unsigned long long)s->last_seq, (unsigned long long)m->last_seq);
        if (!ledger_account_is_valid(s))
            report(v, "account %s breaks its rules (negative total or no_overdraft below zero)",
                   id);
    }
    for (size_t i = 0; i < v->pends_n; i++) {
        const struct pend *p = &v->pends[i];
        if (p->stored_status != p->replay_status || p->stored_resolution != p->replay_resolution)
            report(v, "pending %llu: stored status %s, journal says %s", (unsigned long long)p->seq,
                   ledger_status_name(p->stored_status), ledger_status_name(p->replay_status));
    }
}

/* V3 over re-summed totals, one currency at a time (accounts grouped by a sort of codes). */
static int currency_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ledger_account *)a)->currency,
                  ((const struct ledger_account *)b)->currency);
}

static enum cf_err currencies_check(struct vctx *v)
{
    struct ledger_account *tmp = malloc((v->accts_n + 1) * sizeof(*tmp));
    if (tmp == NULL)
        return CF_ERR_NOMEM;
    for (size_t i = 0; i < v->accts_n; i++)
        tmp[i] = v->accts[i].stored;
    qsort(tmp, v->accts_n, sizeof(*tmp), currency_cmp);
    for (size_t i = 0; i < v->accts_n;) {
        __int128 dp = 0, cp = 0, dq = 0, cq = 0;
        size_t j = i;
        for (; j < v->accts_n && strcmp(tmp[j].currency, tmp[i].currency) == 0; j++) {
            dp += tmp[j].debits_posted;
            cp += tmp[j].credits_posted;
            dq += tmp[j].debits_pending;
            cq += tmp[j].credits_pending;
        }
        if (dp != cp || dq != cq)
            report(v, "currency %s: debits and credits differ", tmp[i].currency);
        v->rep->currencies++;
        i = j;
    }
    free(tmp);
    return CF_OK;
}

enum cf_err ledger_verify(struct store *store, struct verify_report *rep, verify_problem_fn problem,
                          void *ctx)
{
    CF_ASSERT(store != NULL && rep != NULL && problem != NULL);
    memset(rep, 0, sizeof(*rep));
    struct vctx v = {.rep = rep, .problem = problem, .ctx = ctx};
    const struct store_ops *ops = store->ops;
    struct arena *arena = arena_create(512u << 20);
    struct store_reader *r = NULL;
    enum cf_err err = arena == NULL ? CF_ERR_NOMEM : ops->r_open(store, &r);
    if (err == CF_OK) {
        err = accounts_load(&v, r, ops, arena);
        if (err == CF_OK)
            err = entries_scan(&v, r, ops, arena);
        ops->r_close(r);
    }
    if (err == CF_OK) {
        accounts_check(&v);
        err = currencies_check(&v);
    }
    CF_ASSERT(err != CF_OK || rep->accounts == v.accts_n);
    free(v.accts);
    free(v.pends);
    arena_destroy(arena);
    return err;
}
