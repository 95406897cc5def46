/*
 * writer.c - the ledger writer thread and its group commit; see writer.h.
 *
 * Batch state (all owned by the writer thread):
 *   cache     accounts by id, loaded from the store on first use. Kept across batches only
 *             when the store is single-writer; dropped whenever a batch fails.
 *   entries   journal entries appended by this batch, seq contiguous from first_seq.
 *   loaded    pending entries of earlier batches that this batch resolves.
 *   keys      idempotency keys seen in this batch (header keys and batch item keys).
 *   idem      responses to store with their keys.
 *   undo      per command: copies of every account and pending entry it changed, and the
 *             lengths of the lists above, so a rejected command leaves no trace.
 */
#include "ledger/writer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "money/money.h"

#define CACHE_SLOTS (WRITER_ACCOUNT_CACHE_MAX * 2u)
#define NODE_CHUNK 4096u
#define ENTRIES_CAP (WRITER_BATCH_ENTRIES_MAX + LEDGER_BATCH_ITEMS_MAX + LEDGER_EXPIRE_SWEEP_MAX)
#define LOADED_CAP ENTRIES_CAP
#define KEY_SLOTS 131072u /* header, item and prefetched keys of one batch, at most half full */
#define UNDO_CAP (2 * LEDGER_LEGS_MAX + 2)
#define IDEM_CAP (WRITER_BATCH_ENTRIES_MAX + 1)
#define IDEM_PURGE_INTERVAL_US (60LL * 1000000)

const int64_t writer_commit_us_bounds[WRITER_HIST_BUCKETS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 1000000};
const int64_t writer_batch_size_bounds[WRITER_HIST_BUCKETS - 1] = {1,  2,   4,   8,    16,  32,
                                                                   64, 128, 256, 1024, 4096};

struct node {
    struct ledger_account a;
    uint32_t dirty_epoch; /* == batch epoch when listed in dirty */
    bool is_new;          /* created in this batch: insert, not update */
    const char *owner, *metadata;
    size_t owner_len, metadata_len;
};

struct loaded {
    struct ledger_entry e;
    bool resolved; /* needs w_entry_resolve */
};

struct key_slot {
    uint64_t hash;
    const char *key; /* points into a command's arena or an entry */
    size_t len;
    uint32_t epoch;
    int32_t entry; /* index into entries for item keys; -1 for header keys */
};

struct undo_rec {
    struct node *node;       /* account copy, or */
    struct ledger_entry *pe; /* pending entry copy */
    struct ledger_account a;
    struct ledger_entry e;
};

struct undo {
    struct undo_rec rec[UNDO_CAP];
    size_t n;
    size_t entries_n, dirty_n, loaded_n, keys_n;
    uint64_t next_seq;
    uint8_t head_hash[HASH_BYTES];
};

struct idem_put {
    const char *key;
    size_t key_len;
    struct store_idem_record rec;
};

struct writer {
    struct store *store;
    struct cf_clock *clock;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work arrived */
    pthread_cond_t idle_cv; /* a batch finished (sweep_now waits on it) */
    struct writer_cmd *q_head, *q_tail;
    size_t q_len;
    bool stopping;
    bool sweep_requested;
    uint64_t sweeps_done;

    /* durable head */
    uint64_t next_seq;
    uint64_t next_account_id;
    uint8_t head_hash[HASH_BYTES];

    /* account cache */
    struct node **slots;
    struct node **chunks;
    size_t chunks_n, chunks_cap, nodes_n;

    /* batch */
    uint32_t epoch;
    int64_t now_us;
    uint64_t first_seq;
    struct ledger_entry *entries;
    size_t entries_n;
    struct node **dirty;
    size_t dirty_n;
    struct loaded *loaded;
    size_t loaded_n;
    struct key_slot *keys;
    size_t keys_n;
    struct idem_put *idem;
    size_t idem_n;
    struct undo undo;
    struct arena *scratch;              /* store reads of this batch */
    struct store_idem_record *idem_pre; /* records prefetched for this batch, or NULL */
    bool failed;                        /* the store failed: the batch rolls back */
    enum cf_err fail_err;               /* the first store error of the batch */
    int64_t last_sweep_us, last_purge_us;

    struct writer_stats stats;
};

/* The store failed mid-batch: the whole batch will roll back. Keeps the first error. */
static void batch_fail(struct writer *w, enum cf_err err)
{
    CF_ASSERT(err != CF_OK);
    if (!w->failed)
        w->fail_err = err;
    w->failed = true;
}

/* Account cache ----------------------------------------------------------------------------- */

static size_t slot_of(uint64_t id) { return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 43); }

_Static_assert(CACHE_SLOTS == (1u << 21), "slot_of assumes 2^21 slots");

static void cache_clear(struct writer *w)
{
    memset(w->slots, 0, CACHE_SLOTS * sizeof(*w->slots));
    w->nodes_n = 0;
}

static struct node *cache_find(struct writer *w, uint64_t id)
{
    for (size_t i = slot_of(id);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        struct node *n = w->slots[i];
        if (n == NULL || n->a.id == id)
            return n;
    }
}

static struct node *cache_add(struct writer *w, const struct ledger_account *a)
{
    CF_ASSERT(w->nodes_n < CACHE_SLOTS / 2);
    size_t chunk = w->nodes_n / NODE_CHUNK;
    if (chunk == w->chunks_n) {
        if (w->chunks_n == w->chunks_cap)
            return NULL;
        w->chunks[w->chunks_n] = malloc(NODE_CHUNK * sizeof(struct node));
        if (w->chunks[w->chunks_n] == NULL)
            return NULL;
        w->chunks_n++;
    }
    struct node *n = &w->chunks[chunk][w->nodes_n % NODE_CHUNK];
    memset(n, 0, sizeof(*n));
    n->a = *a;
    w->nodes_n++;
    size_t i = slot_of(a->id);
    while (w->slots[i] != NULL) {
        CF_ASSERT(w->slots[i]->a.id != a->id);
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
    w->slots[i] = n;
    return n;
}

/* The account for id: from the cache, else from the store. */
static enum cf_err account_node(struct writer *w, uint64_t id, struct node **out)
{
    struct node *n = cache_find(w, id);
    if (n == NULL) {
        struct ledger_account a;
        enum cf_err err = w->store->ops->w_account_get(w->store, id, &a);
        if (err == CF_ERR_NOT_FOUND)
            return CF_ERR_ACCOUNT_NOT_FOUND;
        if (err != CF_OK) {
            batch_fail(w, err);
            return err;
        }
        CF_ASSERT(a.id == id);
        n = cache_add(w, &a);
        if (n == NULL) {
            batch_fail(w, CF_ERR_NOMEM);
            return CF_ERR_NOMEM;
        }
    }
    *out = n;
    return CF_OK;
}

static void node_mark_dirty(struct writer *w, struct node *n)
{
    if (n->dirty_epoch != w->epoch) {
        n->dirty_epoch = w->epoch;
        w->dirty[w->dirty_n++] = n;
    }
}

/* Keys seen in this batch ------------------------------------------------------------------- */

static uint64_t key_hash(const char *key, size_t len, char ns)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(unsigned char)ns;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return h;
}

static struct key_slot *key_find(struct writer *w, const char *key, size_t len, char ns,
                                 uint64_t *hash_out)
{
    uint64_t h = key_hash(key, len, ns);
    *hash_out = h;
    for (size_t i = h & (KEY_SLOTS - 1);; i = (i + 1) & (KEY_SLOTS - 1)) {
        struct key_slot *k = &w->keys[i];
        if (k->epoch != w->epoch)
            return k; /* free slot */
        if (k->hash == h && k->len == len && memcmp(k->key, key, len) == 0)
            return k;
    }
}

static void key_add(struct writer *w, struct key_slot *slot, uint64_t hash, const char *key,
                    size_t len, int32_t entry)
{
    CF_ASSERT(slot->epoch != w->epoch);
    CF_ASSERT(w->keys_n < KEY_SLOTS / 2);
    slot->hash = hash;
    slot->key = key;
    slot->len = len;
    slot->entry = entry;
    slot->epoch = w->epoch;
    w->keys_n++;
}

/* Loads every account the batch's legs name in one store call, when the store offers one and
 * keeps no cache between batches (PostgreSQL): one round trip instead of two per transfer.
 * Accounts it does not find are looked up (and reported missing) one by one as before. */
static void accounts_prefetch(struct writer *w, struct writer_cmd *cmds)
{
    const struct store_ops *ops = w->store->ops;
    size_t cap = 0, n = 0, found = 0;
    for (struct writer_cmd *c = cmds; c != NULL; c = c->next_)
        if (c->type == WRITER_CMD_TRANSFER || c->type == WRITER_CMD_BATCH)
            cap += 2 * c->legs_n;
    if (ops->w_accounts_prefetch == NULL || ops->single_writer || cap == 0)
        return;
    uint64_t *ids = arena_alloc(w->scratch, cap * sizeof(*ids));
    struct ledger_account *out = arena_alloc(w->scratch, cap * sizeof(*out));
    if (ids == NULL || out == NULL)
        return; /* an optimisation only: the one-by-one path still works */
    for (struct writer_cmd *c = cmds; c != NULL; c = c->next_) {
        for (size_t i = 0;
             (c->type == WRITER_CMD_TRANSFER || c->type == WRITER_CMD_BATCH) && i < c->legs_n;
             i++) {
            uint64_t pair[2] = {c->legs[i].debit_id, c->legs[i].credit_id};
            for (int k = 0; k < 2; k++) {
                if (pair[k] > 0 && pair[k] <= (uint64_t)INT64_MAX) /* others cannot exist */
                    ids[n++] = pair[k];
            }
        }
    }
    CF_ASSERT(n <= cap);
    if (n == 0)
        return;
    enum cf_err err = ops->w_accounts_prefetch(w->store, ids, n, out, &found);
    if (err != CF_OK) {
        batch_fail(w, err);
        return;
    }
    CF_ASSERT(found <= n);
    for (size_t i = 0; i < found; i++) {
        if (cache_find(w, out[i].id) == NULL && cache_add(w, &out[i]) == NULL) {
            batch_fail(w, CF_ERR_NOMEM);
            return;
        }
    }
}

/* Looks every header idempotency key of the batch up in one store call, when the store offers
 * one and keeps no cache (PostgreSQL). Each key is then in the key table under namespace 'p':
 * entry >= 0 is its record in w->idem_pre, -2 means not stored. */
static void idem_prefetch(struct writer *w, struct writer_cmd *cmds)
{
    const struct store_ops *ops = w->store->ops;
    size_t n = 0, found = 0;
    for (struct writer_cmd *c = cmds; c != NULL; c = c->next_)
        n += c->idem_key_len > 0;
    if (ops->w_idem_prefetch == NULL || ops->single_writer || n == 0)
        return;
    const char **keys = arena_alloc(w->scratch, n * sizeof(*keys));
    size_t *lens = arena_alloc(w->scratch, n * sizeof(*lens));
    struct store_idem_record *out = arena_alloc(w->scratch, n * sizeof(*out));
    const char **okeys = arena_alloc(w->scratch, n * sizeof(*okeys));
    size_t *olens = arena_alloc(w->scratch, n * sizeof(*olens));
    if (keys == NULL || lens == NULL || out == NULL || okeys == NULL || olens == NULL)
        return; /* an optimisation only */
    size_t i = 0;
    for (struct writer_cmd *c = cmds; c != NULL; c = c->next_) {
        if (c->idem_key_len > 0) {
            keys[i] = c->idem_key;
            lens[i++] = c->idem_key_len;
        }
    }
    enum cf_err err =
        ops->w_idem_prefetch(w->store, keys, lens, n, out, okeys, olens, &found, w->scratch);
    if (err != CF_OK) {
        batch_fail(w, err);
        return;
    }
    CF_ASSERT(i == n && found <= n);
    uint64_t h;
    for (i = 0; i < n; i++) {
        struct key_slot *slot = key_find(w, keys[i], lens[i], 'p', &h);
        if (slot->epoch != w->epoch)
            key_add(w, slot, h, keys[i], lens[i], -2);
    }
    for (i = 0; i < found; i++) {
        struct key_slot *slot = key_find(w, okeys[i], olens[i], 'p', &h);
        CF_ASSERT(slot->epoch == w->epoch); /* the store answers only keys it was asked */
        slot->entry = (int32_t)i;
    }
    w->idem_pre = out;
}

/* A header key's stored record: from the prefetch when there was one, else from the store. */
static enum cf_err idem_lookup(struct writer *w, const struct writer_cmd *c,
                               struct store_idem_record *r)
{
    uint64_t h;
    struct key_slot *pre =
        w->idem_pre != NULL ? key_find(w, c->idem_key, c->idem_key_len, 'p', &h) : NULL;
    if (pre == NULL || pre->epoch != w->epoch)
        return w->store->ops->w_idem_get(w->store, c->idem_key, c->idem_key_len, r, c->arena);
    if (pre->entry < 0)
        return CF_ERR_NOT_FOUND;
    *r = w->idem_pre[pre->entry];
    r->body = arena_strndup(c->arena, r->body, r->body_len); /* outlives the batch */
    return r->body != NULL ? CF_OK : CF_ERR_NOMEM;
}

/* Undo (a savepoint per command) ------------------------------------------------------------- */

static void undo_begin(struct writer *w)
{
    struct undo *u = &w->undo;
    u->n = 0;
    u->entries_n = w->entries_n;
    u->dirty_n = w->dirty_n;
    u->loaded_n = w->loaded_n;
    u->next_seq = w->next_seq;
    memcpy(u->head_hash, w->head_hash, HASH_BYTES);
}

static void undo_save_account(struct writer *w, struct node *n)
{
    struct undo *u = &w->undo;
    for (size_t i = 0; i < u->n; i++) {
        if (u->rec[i].node == n)
            return;
    }
    CF_ASSERT(u->n < UNDO_CAP);
    u->rec[u->n].node = n;
    u->rec[u->n].pe = NULL;
    u->rec[u->n].a = n->a;
    u->n++;
}

static void undo_save_entry(struct writer *w, struct ledger_entry *e)
{
    struct undo *u = &w->undo;
    CF_ASSERT(u->n < UNDO_CAP);
    u->rec[u->n].node = NULL;
    u->rec[u->n].pe = e;
    u->rec[u->n].e = *e;
    u->n++;
}

static void undo_rollback(struct writer *w)
{
    struct undo *u = &w->undo;
    for (size_t i = u->n; i-- > 0;) {
        if (u->rec[i].node != NULL)
            u->rec[i].node->a = u->rec[i].a;
        else
            *u->rec[i].pe = u->rec[i].e;
    }
    for (size_t i = u->dirty_n; i < w->dirty_n; i++)
        w->dirty[i]->dirty_epoch = 0;
    w->entries_n = u->entries_n;
    w->dirty_n = u->dirty_n;
    w->loaded_n = u->loaded_n;
    w->next_seq = u->next_seq;
    memcpy(w->head_hash, u->head_hash, HASH_BYTES);
    u->n = 0;
}

/* On success: every saved account becomes dirty, every new entry is chained. */
static void undo_commit(struct writer *w)
{
    struct undo *u = &w->undo;
    for (size_t i = 0; i < u->n; i++) {
        if (u->rec[i].node != NULL) {
            CF_ASSERT(ledger_account_is_valid(&u->rec[i].node->a));
            node_mark_dirty(w, u->rec[i].node);
        }
    }
    for (size_t i = u->entries_n; i < w->entries_n; i++) {
        struct ledger_entry *e = &w->entries[i];
        CF_ASSERT(e->seq == w->first_seq + i);
        ledger_entry_hash(w->head_hash, e, e->hash);
        memcpy(w->head_hash, e->hash, HASH_BYTES);
    }
    u->n = 0;
}

/* Entries ------------------------------------------------------------------------------------- */

static struct ledger_entry *entry_append(struct writer *w)
{
    CF_ASSERT(w->entries_n < ENTRIES_CAP);
    CF_ASSERT(w->next_seq == w->first_seq + w->entries_n);
    struct ledger_entry *e = &w->entries[w->entries_n++];
    memset(e, 0, sizeof(*e));
    e->seq = w->next_seq++;
    e->created_at_us = w->now_us;
    return e;
}

static void entry_from_leg(struct writer *w, struct ledger_entry *e, const struct ledger_leg *leg,
                           uint64_t group_seq)
{
    e->type = leg->pending ? LEDGER_ENTRY_PENDING : LEDGER_ENTRY_TRANSFER;
    e->status = leg->pending ? LEDGER_STATUS_PENDING : LEDGER_STATUS_POSTED;
    e->debit_id = leg->debit_id;
    e->credit_id = leg->credit_id;
    e->amount = leg->amount;
    memcpy(e->currency, leg->currency, sizeof(e->currency));
    memcpy(e->code, leg->code, sizeof(e->code));
    e->metadata = leg->metadata;
    e->metadata_len = leg->metadata_len;
    e->idem_key = leg->idem_key;
    e->idem_key_len = leg->idem_key_len;
    e->group_seq = group_seq;
    e->expires_at_us = leg->timeout_s > 0 ? w->now_us + leg->timeout_s * 1000000 : 0;
}

/* A pending entry by seq: from this batch, from an earlier load, or from the store. */
static enum cf_err pending_find(struct writer *w, uint64_t seq, struct ledger_entry **out)
{
    if (seq >= w->first_seq && seq < w->next_seq) {
        *out = &w->entries[seq - w->first_seq];
        return CF_OK;
    }
    for (size_t i = 0; i < w->loaded_n; i++) {
        if (w->loaded[i].e.seq == seq) {
            *out = &w->loaded[i].e;
            return CF_OK;
        }
    }
    if (seq >= w->first_seq)
        return CF_ERR_TRANSFER_NOT_FOUND;
    CF_ASSERT(w->loaded_n < LOADED_CAP);
    struct loaded *l = &w->loaded[w->loaded_n];
    enum cf_err err = w->store->ops->w_entry_get(w->store, seq, &l->e, w->scratch);
    if (err == CF_ERR_NOT_FOUND)
        return CF_ERR_TRANSFER_NOT_FOUND;
    if (err != CF_OK) {
        batch_fail(w, err);
        return err;
    }
    l->resolved = false;
    w->loaded_n++;
    *out = &l->e;
    return CF_OK;
}

/* Threads the entry into both accounts' histories (undone with the accounts on rollback). */
static void entry_link(struct ledger_entry *e, struct node *dr, struct node *cr)
{
    CF_ASSERT(e->debit_id == dr->a.id && e->credit_id == cr->a.id);
    CF_ASSERT(e->seq > dr->a.last_seq && e->seq > cr->a.last_seq);
    e->debit_prev_seq = dr->a.last_seq;
    e->credit_prev_seq = cr->a.last_seq;
    dr->a.last_seq = e->seq;
    cr->a.last_seq = e->seq;
}

/* Commands ------------------------------------------------------------------------------------ */

static enum cf_err apply_account_create(struct writer *w, struct writer_cmd *c)
{
    struct ledger_account a = c->account;
    CF_ASSERT(a.currency[0] != '\0');
    a.id = w->next_account_id;
    a.created_at_us = w->now_us;
    a.debits_posted = a.credits_posted = a.debits_pending = a.credits_pending = 0;
    a.last_seq = 0;
    a.flags &= LEDGER_ACCOUNT_NO_OVERDRAFT | LEDGER_ACCOUNT_FROZEN; /* never created closed */
    CF_ASSERT(ledger_account_is_valid(&a));
    struct node *n = cache_add(w, &a);
    if (n == NULL) {
        batch_fail(w, CF_ERR_NOMEM);
        return CF_ERR_NOMEM;
    }
    w->next_account_id++;
    n->is_new = true;
    n->owner = c->owner;
    n->owner_len = c->owner_len;
    n->metadata = c->metadata;
    n->metadata_len = c->metadata_len;
    node_mark_dirty(w, n);
    c->account_out = a;
    return CF_OK;
}

/* Applies one leg: loads both accounts, saves them for undo, runs the rule, appends an entry. */
static enum cf_err apply_leg(struct writer *w, const struct ledger_leg *leg, uint64_t group_seq,
                             struct ledger_entry **entry_out)
{
    enum cf_err err = ledger_leg_check(leg);
    struct node *dr = NULL, *cr = NULL;
    if (err == CF_OK)
        err = account_node(w, leg->debit_id, &dr);
    if (err == CF_OK)
        err = account_node(w, leg->credit_id, &cr);
    if (err != CF_OK)
        return err;
    undo_save_account(w, dr);
    undo_save_account(w, cr);
    if ((err = ledger_leg_apply(&dr->a, &cr->a, leg)) != CF_OK)
        return err;
    struct ledger_entry *e = entry_append(w);
    entry_from_leg(w, e, leg, group_seq == 0 ? e->seq : group_seq);
    entry_link(e, dr, cr);
    *entry_out = e;
    return CF_OK;
}

static enum cf_err apply_transfer(struct writer *w, struct writer_cmd *c)
{
    CF_ASSERT(c->legs_n >= 1 && c->legs_n <= LEDGER_LEGS_MAX);
    uint64_t group_seq = w->next_seq;
    size_t first = w->entries_n;
    for (size_t i = 0; i < c->legs_n; i++) {
        struct ledger_entry *e;
        enum cf_err err = apply_leg(w, &c->legs[i], group_seq, &e);
        if (err != CF_OK) {
            c->failed_leg = i;
            return err;
        }
    }
    CF_ASSERT(w->entries_n - first == c->legs_n);
    c->entries_out = arena_calloc(c->arena, c->legs_n, sizeof(*c->entries_out));
    if (c->entries_out == NULL)
        return CF_ERR_NOMEM;
    c->entries_n = c->legs_n;
    return CF_OK;
}

/* Resolves pending seq with a POST, VOID or EXPIRE entry. */
static enum cf_err apply_resolve(struct writer *w, uint64_t seq, uint8_t type, int64_t amount,
                                 struct ledger_entry **entry_out, struct ledger_entry **p_out)
{
    struct ledger_entry *p;
    struct node *dr, *cr;
    enum cf_err err = pending_find(w, seq, &p);
    if (err != CF_OK)
        return err;
    if (p->type != LEDGER_ENTRY_PENDING)
        return CF_ERR_TRANSFER_NOT_PENDING;
    if ((err = account_node(w, p->debit_id, &dr)) != CF_OK ||
        (err = account_node(w, p->credit_id, &cr)) != CF_OK)
        return err == CF_ERR_ACCOUNT_NOT_FOUND ? CF_ERR_CORRUPT : err;
    undo_save_account(w, dr);
    undo_save_account(w, cr);
    undo_save_entry(w, p);
    int64_t applied = 0;
    if ((err = ledger_pending_resolve(&dr->a, &cr->a, p, type, amount, w->now_us, &applied)) !=
        CF_OK)
        return err;
    struct ledger_entry *e = entry_append(w);
    e->type = type;
    e->status = p->status;
    e->debit_id = p->debit_id;
    e->credit_id = p->credit_id;
    e->amount = applied;
    memcpy(e->currency, p->currency, sizeof(e->currency));
    memcpy(e->code, p->code, sizeof(e->code));
    e->pending_seq = p->seq;
    e->group_seq = e->seq;
    entry_link(e, dr, cr);
    p->resolution_seq = e->seq;
    *entry_out = e;
    *p_out = p;
    return CF_OK;
}

static void loaded_mark_resolved(struct writer *w, const struct ledger_entry *p)
{
    for (size_t i = 0; i < w->loaded_n; i++) {
        if (&w->loaded[i].e == p)
            w->loaded[i].resolved = true;
    }
}

static enum cf_err apply_set_flags(struct writer *w, struct writer_cmd *c)
{
    struct node *n;
    enum cf_err err = account_node(w, c->target_id, &n);
    if (err != CF_OK)
        return err;
    undo_save_account(w, n);
    n->a.flags = (n->a.flags | c->flags_set) & ~c->flags_clear;
    n->a.flags &= LEDGER_ACCOUNT_FLAGS_ALL; /* never created closed */
    if (!ledger_account_is_valid(&n->a)) {
        n->a = w->undo.rec[w->undo.n - 1].a;
        return CF_ERR_INSUFFICIENT_FUNDS; /* turning no_overdraft on below zero */
    }
    c->account_out = n->a;
    return CF_OK;
}

/* Copies an entry into the command's arena so it outlives this batch's buffers. */
static enum cf_err entry_copy_out(struct arena *arena, struct ledger_entry *dst,
                                  const struct ledger_entry *src)
{
    *dst = *src;
    if (src->metadata != NULL &&
        (dst->metadata = arena_strndup(arena, src->metadata, src->metadata_len)) == NULL)
        return CF_ERR_NOMEM;
    if (src->idem_key != NULL &&
        (dst->idem_key = arena_strndup(arena, src->idem_key, src->idem_key_len)) == NULL)
        return CF_ERR_NOMEM;
    return CF_OK;
}

static bool entry_matches_leg(const struct ledger_entry *e, const struct ledger_leg *leg)
{
    int64_t timeout_s = e->expires_at_us > 0 ? (e->expires_at_us - e->created_at_us) / 1000000 : 0;
    return timeout_s == leg->timeout_s && e->debit_id == leg->debit_id &&
           e->credit_id == leg->credit_id && e->amount == leg->amount &&
           strcmp(e->currency, leg->currency) == 0 && strcmp(e->code, leg->code) == 0 &&
           e->type == (leg->pending ? LEDGER_ENTRY_PENDING : LEDGER_ENTRY_TRANSFER) &&
           e->metadata_len == leg->metadata_len &&
           (e->metadata_len == 0 || memcmp(e->metadata, leg->metadata, e->metadata_len) == 0);
}

/* An item whose key exists already: the same content answers the existing entry. */
static void item_existing(struct writer_cmd *c, size_t i, const struct ledger_entry *e)
{
    struct writer_item_result *res = &c->items[i];
    if (!entry_matches_leg(e, &c->legs[i])) {
        res->err = CF_ERR_IDEM_KEY_REUSED;
        return;
    }
    res->existed = true;
    res->err = entry_copy_out(c->arena, &res->entry, e);
}

static void batch_item_run(struct writer *w, struct writer_cmd *c, size_t i)
{
    const struct ledger_leg *leg = &c->legs[i];
    struct writer_item_result *res = &c->items[i];
    if (leg->idem_key_len == 0 || leg->idem_key_len > IDEM_KEY_BYTES_MAX) {
        res->err = CF_ERR_IDEM_KEY_INVALID;
        return;
    }
    uint64_t h;
    struct key_slot *slot = key_find(w, leg->idem_key, leg->idem_key_len, 'i', &h);
    if (slot->epoch == w->epoch) {
        item_existing(c, i, &w->entries[slot->entry]);
        return;
    }
    struct ledger_entry found;
    enum cf_err err = w->store->ops->w_entry_find_key(w->store, leg->idem_key, leg->idem_key_len,
                                                      &found, c->arena);
    if (err == CF_OK) {
        item_existing(c, i, &found);
        return;
    }
    if (err != CF_ERR_NOT_FOUND) {
        batch_fail(w, err);
        res->err = err;
        return;
    }
    undo_begin(w);
    struct ledger_entry *e;
    if ((err = apply_leg(w, leg, 0, &e)) != CF_OK) {
        undo_rollback(w);
        res->err = err;
        return;
    }
    undo_commit(w);
    res->err = CF_OK;
    res->entry = *e;
    key_add(w, slot, h, e->idem_key, e->idem_key_len, (int32_t)(e - w->entries));
}

/* Header idempotency key: true when the command is answered without running. */
static bool idem_check(struct writer *w, struct writer_cmd *c)
{
    uint64_t h;
    struct key_slot *slot = key_find(w, c->idem_key, c->idem_key_len, 'h', &h);
    if (slot->epoch == w->epoch) {
        c->err = CF_ERR_IDEM_KEY_IN_FLIGHT;
        return true;
    }
    struct store_idem_record r;
    enum cf_err err = idem_lookup(w, c, &r);
    if (err == CF_ERR_NOT_FOUND) {
        key_add(w, slot, h, c->idem_key, c->idem_key_len, -1);
        return false;
    }
    if (err != CF_OK) {
        batch_fail(w, err);
        c->err = err;
    } else if (!hash_equal(r.request_hash, c->request_hash, HASH_BYTES)) {
        c->err = CF_ERR_IDEM_KEY_REUSED;
    } else {
        c->err = CF_OK;
        c->replayed = true;
        c->resp_status = r.http_status;
        c->resp_body = r.body;
        c->resp_body_len = r.body_len;
    }
    return true;
}

static void idem_store(struct writer *w, struct writer_cmd *c)
{
    CF_ASSERT(c->render != NULL);
    CF_ASSERT(w->idem_n < IDEM_CAP);
    if (c->render(c) != CF_OK || c->resp_body == NULL) {
        batch_fail(w, CF_ERR_NOMEM);
        return;
    }
    struct idem_put *p = &w->idem[w->idem_n++];
    p->key = c->idem_key;
    p->key_len = c->idem_key_len;
    memcpy(p->rec.request_hash, c->request_hash, HASH_BYTES);
    p->rec.http_status = c->resp_status;
    p->rec.body = c->resp_body;
    p->rec.body_len = c->resp_body_len;
    p->rec.created_at_us = w->now_us;
}

static enum cf_err cmd_apply(struct writer *w, struct writer_cmd *c, size_t first)
{
    struct ledger_entry *e = NULL, *p = NULL;
    enum cf_err err;
    switch (c->type) {
    case WRITER_CMD_ACCOUNT_CREATE:
        return apply_account_create(w, c);
    case WRITER_CMD_TRANSFER:
        return apply_transfer(w, c);
    case WRITER_CMD_POST:
    case WRITER_CMD_VOID:
        err = apply_resolve(w, c->target_id,
                            c->type == WRITER_CMD_POST ? LEDGER_ENTRY_POST_PENDING
                                                       : LEDGER_ENTRY_VOID_PENDING,
                            c->amount_minor, &e, &p);
        if (err != CF_OK)
            return err;
        c->entries_out = arena_calloc(c->arena, 1, sizeof(*c->entries_out));
        c->entries_n = 1;
        loaded_mark_resolved(w, p);
        if (c->entries_out == NULL)
            return CF_ERR_NOMEM;
        return entry_copy_out(c->arena, &c->pending_out, p);
    case WRITER_CMD_SET_FLAGS:
        return apply_set_flags(w, c);
    default:
        CF_ASSERT(c->type == WRITER_CMD_BATCH);
        (void)first;
        return CF_OK;
    }
}

static void cmd_run(struct writer *w, struct writer_cmd *c)
{
    if (c->idem_key_len > 0 && idem_check(w, c))
        return;
    if (c->type == WRITER_CMD_BATCH) {
        c->items = arena_calloc(c->arena, c->legs_n, sizeof(*c->items));
        c->err = c->items == NULL ? CF_ERR_NOMEM : CF_OK;
        for (size_t i = 0; c->items != NULL && i < c->legs_n && !w->failed; i++)
            batch_item_run(w, c, i);
    } else {
        undo_begin(w);
        size_t first = w->entries_n;
        c->err = cmd_apply(w, c, first);
        if (c->err != CF_OK) {
            undo_rollback(w);
        } else {
            undo_commit(w);
            for (size_t i = 0; i < c->entries_n; i++)
                c->entries_out[i] = w->entries[first + i]; /* metadata is the command's own */
        }
    }
    if (c->idem_key_len > 0 && !w->failed)
        idem_store(w, c);
}

/* Expiry sweep --------------------------------------------------------------------------------- */

static void expire_sweep(struct writer *w)
{
    uint64_t seqs[LEDGER_EXPIRE_SWEEP_MAX];
    size_t n = 0;
    enum cf_err err =
        w->store->ops->w_expired(w->store, w->now_us, seqs, LEDGER_EXPIRE_SWEEP_MAX, &n);
    if (err != CF_OK) {
        batch_fail(w, err);
        return;
    }
    for (size_t i = 0; i < n && !w->failed; i++) {
        struct ledger_entry *e, *p;
        undo_begin(w);
        err = apply_resolve(w, seqs[i], LEDGER_ENTRY_EXPIRE_PENDING, 0, &e, &p);
        if (err != CF_OK) {
            undo_rollback(w);
            continue;
        }
        undo_commit(w);
        loaded_mark_resolved(w, p);
        atomic_fetch_add(&w->stats.expired, 1);
    }
}

/* Batch ------------------------------------------------------------------------------------------
 */

static enum cf_err batch_persist(struct writer *w)
{
    const struct store_ops *ops = w->store->ops;
    enum cf_err err = CF_OK;
    for (size_t i = 0; err == CF_OK && i < w->dirty_n; i++) {
        struct node *n = w->dirty[i];
        if (n->dirty_epoch != w->epoch)
            continue; /* undone */
        err = n->is_new ? ops->w_account_insert(w->store, &n->a, n->owner, n->owner_len,
                                                n->metadata, n->metadata_len)
                        : ops->w_account_update(w->store, &n->a);
    }
    for (size_t i = 0; err == CF_OK && i < w->entries_n; i++)
        err = ops->w_entry_insert(w->store, &w->entries[i]);
    for (size_t i = 0; err == CF_OK && i < w->loaded_n; i++) {
        if (w->loaded[i].resolved)
            err = ops->w_entry_resolve(w->store, &w->loaded[i].e);
    }
    for (size_t i = 0; err == CF_OK && i < w->idem_n; i++)
        err = ops->w_idem_put(w->store, w->idem[i].key, w->idem[i].key_len, &w->idem[i].rec);
    return err;
}

static enum cf_err head_load(struct writer *w)
{
    struct store_head h;
    enum cf_err err = w->store->ops->w_head(w->store, &h);
    if (err != CF_OK)
        return err;
    w->next_seq = h.last_seq + 1;
    w->next_account_id = h.last_account_id + 1;
    memcpy(w->head_hash, h.last_hash, HASH_BYTES);
    return CF_OK;
}

static void stats_observe(struct writer *w, size_t cmds, int64_t commit_us)
{
    size_t b = 0;
    while (b < WRITER_HIST_BUCKETS - 1 && (int64_t)cmds > writer_batch_size_bounds[b])
        b++;
    atomic_fetch_add(&w->stats.batch_size_bucket[b], 1);
    b = 0;
    while (b < WRITER_HIST_BUCKETS - 1 && commit_us > writer_commit_us_bounds[b])
        b++;
    atomic_fetch_add(&w->stats.commit_us_bucket[b], 1);
    atomic_fetch_add(&w->stats.commit_us_sum, (uint_fast64_t)commit_us);
    atomic_fetch_add(&w->stats.batches, 1);
    atomic_fetch_add(&w->stats.commands, cmds);
    atomic_fetch_add(&w->stats.entries, w->entries_n);
}

static void batch_reset(struct writer *w)
{
    if (++w->epoch == 0)
        w->epoch = 1; /* 0 means "never" in nodes and key slots */
    w->entries_n = w->dirty_n = w->loaded_n = w->keys_n = w->idem_n = 0;
    w->failed = false;
    w->fail_err = CF_OK;
    w->idem_pre = NULL;
    arena_reset(w->scratch);
    w->now_us = cf_clock_now_us(w->clock);
    if (!w->store->ops->single_writer || w->nodes_n > WRITER_ACCOUNT_CACHE_MAX)
        cache_clear(w);
}

/* Undoes a failed attempt: nothing of it happened; forget what memory believes. */
static void batch_rollback(struct writer *w, enum cf_err err)
{
    w->store->ops->w_rollback(w->store);
    cache_clear(w);
    if (head_load(w) != CF_OK)
        cf_log(LOG_ERROR, "cannot reload the journal head after a failed batch", NULL);
    atomic_fetch_add(&w->stats.commit_failures, 1);
    cf_log(err == CF_ERR_STORAGE_CONFLICT ? LOG_WARN : LOG_ERROR, "batch rolled back", "reason",
           cf_err_code(err), NULL);
}

/* Outputs back to their state at submit, so a retried batch starts clean. */
static void cmds_reset(struct writer_cmd *cmds, enum cf_err err)
{
    for (struct writer_cmd *c = cmds; c != NULL; c = c->next_) {
        c->err = err;
        c->replayed = false;
        c->resp_body = NULL;
        c->resp_body_len = 0;
        c->entries_out = NULL;
        c->entries_n = 0;
        c->items = NULL;
        c->failed_leg = 0;
    }
}

/* One attempt: CF_OK when the batch committed. */
static enum cf_err batch_attempt(struct writer *w, struct writer_cmd *cmds, bool sweep,
                                 size_t *n_out)
{
    batch_reset(w);
    size_t n = 0;
    enum cf_err err = w->store->ops->w_begin(w->store);
    if (err == CF_OK && !w->store->ops->single_writer)
        err = head_load(w); /* under the global write lock: other servers may have written */
    w->first_seq = w->next_seq;
    if (err == CF_OK)
        accounts_prefetch(w, cmds);
    if (err == CF_OK && !w->failed)
        idem_prefetch(w, cmds);
    if (err == CF_OK && sweep)
        expire_sweep(w);
    if (err == CF_OK && w->now_us - w->last_purge_us >= IDEM_PURGE_INTERVAL_US) {
        w->last_purge_us = w->now_us;
        err = w->store->ops->w_idem_purge(w->store, w->now_us - IDEM_RETENTION_S * 1000000);
    }
    for (struct writer_cmd *c = cmds; err == CF_OK && c != NULL && !w->failed; c = c->next_, n++)
        cmd_run(w, c);
    if (err == CF_OK && !w->failed)
        err = batch_persist(w);
    if (err == CF_OK && !w->failed)
        err = w->store->ops->w_commit(w->store);
    if (err == CF_OK && w->failed)
        err = w->fail_err;
    *n_out = n;
    return err;
}

static void batch_run(struct writer *w, struct writer_cmd *cmds, bool sweep)
{
    int64_t t0 = cf_monotonic_us();
    size_t n = 0;
    for (unsigned attempt = 1;; attempt++) {
        enum cf_err err = batch_attempt(w, cmds, sweep, &n);
        if (err == CF_OK)
            break;
        batch_rollback(w, err);
        if (err != CF_ERR_STORAGE_CONFLICT || attempt >= WRITER_RETRIES_MAX) {
            cmds_reset(cmds, err == CF_ERR_STORAGE_CONFLICT ? err : CF_ERR_STORAGE);
            return;
        }
        cmds_reset(cmds, CF_OK);
    }
    for (size_t i = 0; i < w->dirty_n; i++)
        w->dirty[i]->is_new = false;
    CF_ASSERT(w->next_seq == w->first_seq + w->entries_n);
    stats_observe(w, n, cf_monotonic_us() - t0);
}

/* Thread and queue --------------------------------------------------------------------------------
 */

static size_t cmd_entries(const struct writer_cmd *c)
{
    return (c->type == WRITER_CMD_TRANSFER || c->type == WRITER_CMD_BATCH) ? c->legs_n : 1;
}

/* Takes queued commands up to the batch's entry budget. Called with mu held. */
static struct writer_cmd *queue_take(struct writer *w)
{
    struct writer_cmd *head = w->q_head, *last = NULL, *c = head;
    size_t entries = 0;
    while (c != NULL && (last == NULL || entries + cmd_entries(c) <= WRITER_BATCH_ENTRIES_MAX)) {
        entries += cmd_entries(c);
        last = c;
        c = c->next_;
        w->q_len--;
    }
    if (last == NULL)
        return NULL;
    w->q_head = c;
    if (c == NULL)
        w->q_tail = NULL;
    last->next_ = NULL;
    atomic_store(&w->stats.queue_depth, w->q_len);
    return head;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    int64_t last_sweep_mono = 0;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->q_head == NULL && !w->stopping && !w->sweep_requested &&
               cf_monotonic_us() - last_sweep_mono < WRITER_SWEEP_INTERVAL_MS * 1000) {
            struct timespec ts = cf_deadline_after_ms(WRITER_SWEEP_INTERVAL_MS);
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
        if (w->q_head == NULL && w->stopping) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        struct writer_cmd *cmds = queue_take(w);
        bool requested = w->sweep_requested;
        bool sweep =
            requested || cf_monotonic_us() - last_sweep_mono >= WRITER_SWEEP_INTERVAL_MS * 1000;
        w->sweep_requested = false;
        pthread_mutex_unlock(&w->mu);

        if (sweep)
            last_sweep_mono = cf_monotonic_us();
        batch_run(w, cmds, sweep);
        for (struct writer_cmd *c = cmds, *next; c != NULL; c = next) {
            next = c->next_;
            c->done(c);
        }
        pthread_mutex_lock(&w->mu);
        if (requested)
            w->sweeps_done++;
        pthread_cond_broadcast(&w->idle_cv);
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

static void writer_free(struct writer *w)
{
    for (size_t i = 0; i < w->chunks_n; i++)
        free(w->chunks[i]);
    free(w->chunks);
    free(w->slots);
    free(w->entries);
    free(w->dirty);
    free(w->loaded);
    free(w->keys);
    free(w->idem);
    arena_destroy(w->scratch);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->idle_cv);
    free(w);
}

enum cf_err writer_create(struct store *store, struct cf_clock *clock, struct writer **out)
{
    CF_ASSERT(store != NULL && clock != NULL);
    struct writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CF_ERR_NOMEM;
    w->store = store;
    w->clock = clock;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->idle_cv, NULL);
    w->chunks_cap = WRITER_ACCOUNT_CACHE_MAX / NODE_CHUNK + 16;
    w->slots = calloc(CACHE_SLOTS, sizeof(*w->slots));
    w->chunks = calloc(w->chunks_cap, sizeof(*w->chunks));
    w->entries = calloc(ENTRIES_CAP, sizeof(*w->entries));
    w->dirty = calloc(ENTRIES_CAP * 2, sizeof(*w->dirty));
    w->loaded = calloc(LOADED_CAP, sizeof(*w->loaded));
    w->keys = calloc(KEY_SLOTS, sizeof(*w->keys));
    w->idem = calloc(IDEM_CAP, sizeof(*w->idem));
    w->scratch = arena_create(256u << 20);
    if (w->slots == NULL || w->chunks == NULL || w->entries == NULL || w->dirty == NULL ||
        w->loaded == NULL || w->keys == NULL || w->idem == NULL || w->scratch == NULL) {
        writer_free(w);
        return CF_ERR_NOMEM;
    }
    enum cf_err err = head_load(w);
    if (err == CF_OK && pthread_create(&w->thread, NULL, writer_main, w) != 0)
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        writer_free(w);
        return err;
    }
    *out = w;
    return CF_OK;
}

void writer_stop(struct writer *w)
{
    pthread_mutex_lock(&w->mu);
    bool was_stopping = w->stopping;
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (!was_stopping)
        pthread_join(w->thread, NULL);
    CF_ASSERT(w->q_head == NULL);
}

void writer_destroy(struct writer *w)
{
    if (w == NULL)
        return;
    writer_stop(w);
    writer_free(w);
}

enum cf_err writer_submit(struct writer *w, struct writer_cmd *c)
{
    CF_ASSERT(c->done != NULL && c->arena != NULL);
    CF_ASSERT(c->idem_key_len == 0 || c->render != NULL);
    c->next_ = NULL;
    c->err = CF_OK;
    c->replayed = false;
    pthread_mutex_lock(&w->mu);
    enum cf_err err = CF_OK;
    if (w->stopping) {
        err = CF_ERR_SHUTTING_DOWN;
    } else if (w->q_len >= WRITER_QUEUE_MAX) {
        err = CF_ERR_OVERLOADED;
    } else {
        if (w->q_tail != NULL)
            w->q_tail->next_ = c;
        else
            w->q_head = c;
        w->q_tail = c;
        w->q_len++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return err;
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t remaining;
};

static void waiter_done(struct writer_cmd *c)
{
    struct waiter *wt = c->user;
    pthread_mutex_lock(&wt->mu);
    wt->remaining--;
    pthread_cond_signal(&wt->cv);
    pthread_mutex_unlock(&wt->mu);
}

void writer_run_many(struct writer *w, struct writer_cmd **cmds, size_t n)
{
    struct waiter wt = {.remaining = 0};
    pthread_mutex_init(&wt.mu, NULL);
    pthread_cond_init(&wt.cv, NULL);
    for (size_t i = 0; i < n; i++) {
        cmds[i]->done = waiter_done;
        cmds[i]->user = &wt;
        pthread_mutex_lock(&wt.mu);
        wt.remaining++;
        pthread_mutex_unlock(&wt.mu);
        enum cf_err err;
        while ((err = writer_submit(w, cmds[i])) == CF_ERR_OVERLOADED)
            sched_yield();
        if (err != CF_OK) {
            cmds[i]->err = err;
            pthread_mutex_lock(&wt.mu);
            wt.remaining--;
            pthread_mutex_unlock(&wt.mu);
        }
    }
    pthread_mutex_lock(&wt.mu);
    while (wt.remaining > 0)
        pthread_cond_wait(&wt.cv, &wt.mu);
    pthread_mutex_unlock(&wt.mu);
    pthread_mutex_destroy(&wt.mu);
    pthread_cond_destroy(&wt.cv);
}

enum cf_err writer_run(struct writer *w, struct writer_cmd *cmd)
{
    writer_run_many(w, &cmd, 1);
    return cmd->err;
}

void writer_sweep_now(struct writer *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t target = w->sweeps_done + 1;
    w->sweep_requested = true;
    pthread_cond_signal(&w->cv);
    while (w->sweeps_done < target)
        pthread_cond_wait(&w->idle_cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

const struct writer_stats *writer_stats(const struct writer *w) { return &w->stats; }
