/* velocity.c - sliding-window counts and sums per key, in sharded hash tables; see velocity.h. */
#include "risk/velocity.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "money/money.h"

/*
 * How: each shard is a chained hash table (a power-of-two array of bucket heads) plus a doubly
 * linked list of its keys in order of their last record (oldest first), under one mutex. A key's
 * entry holds its three rings side by side in two arrays (counts and sums), the bucket number
 * of each ring's newest slot (`head`), and each ring's running totals, so a read at the newest
 * bucket costs nothing and one further back sums only the slots it needs. Slot i of a ring holds
 * the bucket b with b % buckets_n == i and head - buckets_n < b <= head; moving head forward
 * clears the slots it reuses and takes them off the totals. A record first computes what it
 * would do (check), then does it (apply), so a refused record changes nothing.
 */

#define SLOTS_N (VELOCITY_1M_BUCKETS_N + VELOCITY_1H_BUCKETS_N + VELOCITY_24H_BUCKETS_N)

struct ring_spec {
    int64_t bucket_s;
    int64_t buckets_n;
    size_t first; /* index of the ring's slot 0 in the entry's arrays */
};

static const struct ring_spec rings[VELOCITY_WINDOWS_N] = {
    [VELOCITY_WINDOW_1M] = {VELOCITY_1M_BUCKET_S, VELOCITY_1M_BUCKETS_N, 0},
    [VELOCITY_WINDOW_1H] = {VELOCITY_1H_BUCKET_S, VELOCITY_1H_BUCKETS_N, VELOCITY_1M_BUCKETS_N},
    [VELOCITY_WINDOW_24H] = {VELOCITY_24H_BUCKET_S, VELOCITY_24H_BUCKETS_N,
                             VELOCITY_1M_BUCKETS_N + VELOCITY_1H_BUCKETS_N},
};

_Static_assert((VELOCITY_24H_BUCKET_S * VELOCITY_24H_BUCKETS_N) == VELOCITY_IDLE_S_MAX,
               "an idle key must have an empty day window");
_Static_assert((VELOCITY_1M_BUCKET_S * VELOCITY_1M_BUCKETS_N) == 60, "the minute window");
_Static_assert((VELOCITY_1H_BUCKET_S * VELOCITY_1H_BUCKETS_N) == 3600, "the hour window");
_Static_assert(VELOCITY_KEY_BYTES_MAX <= UINT8_MAX, "key_len is 8-bit");
_Static_assert((VELOCITY_SHARDS & (VELOCITY_SHARDS - 1)) == 0, "shards: a power of two");
_Static_assert(VELOCITY_SHARDS <= 64, "the shard is the hash's low 6 bits; buckets use the rest");

struct entry {
    struct entry *chain; /* next in the hash bucket */
    struct entry *older; /* neighbours in the shard's recency list */
    struct entry *newer;
    uint64_t hash;
    int64_t last_s; /* the latest now_s recorded */
    int64_t head[VELOCITY_WINDOWS_N];
    int64_t total_sum_minor[VELOCITY_WINDOWS_N];
    uint64_t total_count[VELOCITY_WINDOWS_N];
    int64_t sum_minor[SLOTS_N];
    uint32_t count[SLOTS_N];
    uint8_t key_len;
    char key[VELOCITY_KEY_BYTES_MAX];
};

_Static_assert(sizeof(struct entry) <= VELOCITY_KEY_BYTES_APPROX, "documented key size");

struct shard {
    _Alignas(64) pthread_mutex_t mu;
    struct entry **buckets;
    size_t buckets_mask;
    struct entry *oldest;
    struct entry *newest;
    size_t keys_n;
    size_t keys_max;
    uint64_t evicted_idle_n;
    uint64_t evicted_lru_n;
    uint64_t dropped_old_n;
};

struct velocity {
    uint8_t seed[VELOCITY_SEED_BYTES];
    size_t keys_max;
    size_t shards_n; /* 1 or VELOCITY_SHARDS */
    struct shard shards[VELOCITY_SHARDS];
};

/* Open and close ------------------------------------------------------------------------------- */

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static enum cf_err shard_init(struct shard *s, size_t keys_max)
{
    CF_ASSERT(keys_max >= 1);
    size_t buckets_n = pow2_at_least(keys_max);
    struct entry **buckets = calloc(buckets_n, sizeof(*buckets));
    if (buckets == NULL)
        return CF_ERR_NOMEM;
    memset(s, 0, sizeof(*s));
    CF_ASSERT(pthread_mutex_init(&s->mu, NULL) == 0);
    s->buckets = buckets;
    s->buckets_mask = buckets_n - 1;
    s->keys_max = keys_max;
    return CF_OK;
}

static void shard_deinit(struct shard *s)
{
    struct entry *e = s->oldest;
    while (e != NULL) {
        struct entry *next = e->newer;
        free(e);
        e = next;
    }
    free(s->buckets);
    CF_ASSERT(pthread_mutex_destroy(&s->mu) == 0);
}

enum cf_err velocity_open_seeded(size_t keys_max, const uint8_t seed[VELOCITY_SEED_BYTES],
                                 struct velocity **out)
{
    CF_ASSERT(keys_max >= 1 && keys_max <= VELOCITY_KEYS_MAX);
    CF_ASSERT(seed != NULL && out != NULL);
    /* the shards are cache-line aligned, so the table must be too */
    struct velocity *v = aligned_alloc(_Alignof(struct velocity), sizeof(*v));
    if (v == NULL)
        return CF_ERR_NOMEM;
    memset(v, 0, sizeof(*v));
    memcpy(v->seed, seed, VELOCITY_SEED_BYTES);
    v->keys_max = keys_max;
    v->shards_n =
        keys_max >= (size_t)VELOCITY_SHARDS * VELOCITY_SHARD_KEYS_MIN ? VELOCITY_SHARDS : 1;
    size_t per_shard = keys_max / v->shards_n; /* rounded down: never more than keys_max */
    for (size_t i = 0; i < v->shards_n; i++) {
        if (shard_init(&v->shards[i], per_shard) != CF_OK) {
            for (size_t j = 0; j < i; j++)
                shard_deinit(&v->shards[j]);
            free(v);
            return CF_ERR_NOMEM;
        }
    }
    CF_ASSERT(per_shard >= 1 && per_shard * v->shards_n <= keys_max);
    *out = v;
    return CF_OK;
}

enum cf_err velocity_open(size_t keys_max, struct velocity **out)
{
    uint8_t seed[VELOCITY_SEED_BYTES];
    hash_random(seed, sizeof(seed));
    return velocity_open_seeded(keys_max, seed, out);
}

void velocity_close(struct velocity *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->shards_n; i++)
        shard_deinit(&v->shards[i]);
    free(v);
}

/* Table structure ------------------------------------------------------------------------------ */

/* The key's length, or 0 when it is empty or longer than VELOCITY_KEY_BYTES_MAX. */
static size_t key_length(const char *key)
{
    CF_ASSERT(key != NULL);
    size_t len = strnlen(key, VELOCITY_KEY_BYTES_MAX + 1);
    return len > VELOCITY_KEY_BYTES_MAX ? 0 : len;
}

static struct shard *shard_of(struct velocity *v, uint64_t hash)
{
    return &v->shards[hash & (v->shards_n - 1)];
}

static struct entry **bucket_of(struct shard *s, uint64_t hash)
{
    return &s->buckets[(hash >> 6) & s->buckets_mask];
}

static struct entry *entry_find(struct shard *s, uint64_t hash, const char *key, size_t len)
{
    for (struct entry *e = *bucket_of(s, hash); e != NULL; e = e->chain) {
        if (e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

static void list_unlink(struct shard *s, struct entry *e)
{
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        s->oldest = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        s->newest = e->older;
    e->older = e->newer = NULL;
}

static void list_push_newest(struct shard *s, struct entry *e)
{
    e->older = s->newest;
    e->newer = NULL;
    if (s->newest != NULL)
        s->newest->newer = e;
    else
        s->oldest = e;
    s->newest = e;
}

/* Takes e off its hash chain and the recency list; the caller frees or reuses it. */
static void entry_detach(struct shard *s, struct entry *e)
{
    struct entry **link = bucket_of(s, e->hash);
    while (*link != e) {
        CF_ASSERT(*link != NULL); /* e is in its bucket's chain */
        link = &(*link)->chain;
    }
    *link = e->chain;
    e->chain = NULL;
    list_unlink(s, e);
    CF_ASSERT(s->keys_n > 0);
    s->keys_n--;
}

static void entry_attach(struct shard *s, struct entry *e)
{
    struct entry **head = bucket_of(s, e->hash);
    e->chain = *head;
    *head = e;
    list_push_newest(s, e);
    s->keys_n++;
    CF_ASSERT(s->keys_n <= s->keys_max);
}

static bool entry_is_idle(const struct entry *e, int64_t now_s)
{
    return now_s - e->last_s >= VELOCITY_IDLE_S_MAX;
}

/* Drops up to max idle keys from the old end of the list; returns how many. */
static size_t shard_evict_idle(struct shard *s, int64_t now_s, size_t max)
{
    size_t evicted = 0;
    while (evicted < max && s->oldest != NULL && entry_is_idle(s->oldest, now_s)) {
        struct entry *e = s->oldest;
        entry_detach(s, e);
        free(e);
        evicted++;
    }
    s->evicted_idle_n += evicted;
    return evicted;
}

/* Rings ---------------------------------------------------------------------------------------- */

static size_t ring_slot(int w, int64_t b)
{
    const struct ring_spec *r = &rings[w];
    CF_ASSERT(b >= 0);
    return r->first + (size_t)(b % r->buckets_n);
}

/* Sum and count of ring w's slots for buckets from..to (clamped to the ring's span; buckets
 * before 0, times before the epoch, never held anything). */
static void ring_range_sum(const struct entry *e, int w, int64_t from, int64_t to, int64_t *sum_out,
                           uint64_t *count_out)
{
    const struct ring_spec *r = &rings[w];
    int64_t oldest = e->head[w] - r->buckets_n + 1;
    if (from < oldest)
        from = oldest;
    if (from < 0)
        from = 0;
    if (to > e->head[w])
        to = e->head[w];
    int64_t sum = 0;
    uint64_t count = 0;
    for (int64_t x = from; x <= to; x++) {
        size_t slot = ring_slot(w, x);
        sum += e->sum_minor[slot]; /* a part of total_sum_minor: cannot overflow */
        count += e->count[slot];
    }
    CF_ASSERT(sum >= 0 && sum <= e->total_sum_minor[w] && count <= e->total_count[w]);
    *sum_out = sum;
    *count_out = count;
}

/* What moving ring w's head to bucket b would clear: the slots of buckets head-n+1 .. b-n. */
static void ring_cleared(const struct entry *e, int w, int64_t b, int64_t *sum_out,
                         uint64_t *count_out)
{
    const struct ring_spec *r = &rings[w];
    int64_t head = e->head[w];
    if (b <= head) {
        *sum_out = 0;
        *count_out = 0;
    } else if (b - head >= r->buckets_n) {
        *sum_out = e->total_sum_minor[w];
        *count_out = e->total_count[w];
    } else {
        ring_range_sum(e, w, head - r->buckets_n + 1, b - r->buckets_n, sum_out, count_out);
    }
}

/* CF_OK when an event of amount_minor at t fits every ring of e once its heads move to t. */
static enum cf_err entry_check(const struct entry *e, int64_t amount_minor, int64_t t)
{
    for (int w = 0; w < VELOCITY_WINDOWS_N; w++) {
        int64_t b = t / rings[w].bucket_s;
        int64_t newest = b > e->head[w] ? b : e->head[w];
        if (b <= newest - rings[w].buckets_n)
            continue; /* too old for this ring: not counted, cannot overflow */
        int64_t cleared_sum, after_sum;
        uint64_t cleared_count;
        ring_cleared(e, w, b, &cleared_sum, &cleared_count);
        if (money_add(e->total_sum_minor[w] - cleared_sum, amount_minor, &after_sum) != CF_OK)
            return CF_ERR_AMOUNT_OVERFLOW;
        if (e->total_count[w] - cleared_count + 1 > UINT32_MAX)
            return CF_ERR_AMOUNT_OVERFLOW;
    }
    return CF_OK;
}

static void ring_advance(struct entry *e, int w, int64_t b)
{
    const struct ring_spec *r = &rings[w];
    if (b <= e->head[w])
        return;
    int64_t cleared_sum;
    uint64_t cleared_count;
    ring_cleared(e, w, b, &cleared_sum, &cleared_count);
    int64_t from = b - e->head[w] >= r->buckets_n ? b - r->buckets_n + 1 : e->head[w] + 1;
    for (int64_t x = from; x <= b; x++) {
        size_t slot = ring_slot(w, x);
        e->sum_minor[slot] = 0;
        e->count[slot] = 0;
    }
    e->total_sum_minor[w] -= cleared_sum;
    e->total_count[w] -= cleared_count;
    e->head[w] = b;
    CF_ASSERT(e->total_sum_minor[w] >= 0);
}

/* Adds the event to every ring whose span reaches t; returns true when one did. Checked first. */
static bool entry_apply(struct entry *e, int64_t amount_minor, int64_t t)
{
    bool counted = false;
    for (int w = 0; w < VELOCITY_WINDOWS_N; w++) {
        int64_t b = t / rings[w].bucket_s;
        ring_advance(e, w, b);
        if (b <= e->head[w] - rings[w].buckets_n)
            continue;
        size_t slot = ring_slot(w, b);
        e->sum_minor[slot] += amount_minor;
        e->count[slot] += 1;
        e->total_sum_minor[w] += amount_minor;
        e->total_count[w] += 1;
        CF_ASSERT(e->total_count[w] <= UINT32_MAX && e->total_sum_minor[w] >= 0);
        counted = true;
    }
    if (t > e->last_s)
        e->last_s = t;
    return counted;
}

static void entry_reset(struct entry *e, uint64_t hash, const char *key, size_t len, int64_t t)
{
    CF_ASSERT(len >= 1 && len <= VELOCITY_KEY_BYTES_MAX);
    memset(e, 0, sizeof(*e));
    e->hash = hash;
    e->key_len = (uint8_t)len;
    memcpy(e->key, key, len);
    e->last_s = t;
    for (int w = 0; w < VELOCITY_WINDOWS_N; w++)
        e->head[w] = t / rings[w].bucket_s;
}

/* Sum and count of ring w over the buckets of the window ending in bucket nb: the buckets
 * lo..hi of the ring's span, summed directly or as the total less the rest, whichever is
 * fewer slots. */
static void ring_read(const struct entry *e, int w, int64_t nb, int64_t *sum_out,
                      int64_t *count_out)
{
    const struct ring_spec *r = &rings[w];
    int64_t head = e->head[w];
    int64_t oldest = head - r->buckets_n + 1;
    int64_t lo = nb - r->buckets_n + 1 > oldest ? nb - r->buckets_n + 1 : oldest;
    int64_t hi = nb < head ? nb : head;
    int64_t sum = 0;
    uint64_t count = 0;
    if (lo > hi) {
        /* nothing of the ring is in the window */
    } else if ((lo - oldest) + (head - hi) < hi - lo + 1) {
        int64_t before_sum, after_sum;
        uint64_t before_count, after_count;
        ring_range_sum(e, w, oldest, lo - 1, &before_sum, &before_count);
        ring_range_sum(e, w, hi + 1, head, &after_sum, &after_count);
        sum = e->total_sum_minor[w] - before_sum - after_sum;
        count = e->total_count[w] - before_count - after_count;
    } else {
        ring_range_sum(e, w, lo, hi, &sum, &count);
    }
    CF_ASSERT(sum >= 0 && sum <= e->total_sum_minor[w] && count <= e->total_count[w]);
    *sum_out = sum;
    *count_out = (int64_t)count;
}

/* Records and reads ---------------------------------------------------------------------------- */

/* A new entry for key in s: recycled from the shard's oldest key when the shard is full. */
static enum cf_err shard_entry_new(struct shard *s, uint64_t hash, const char *key, size_t len,
                                   int64_t now_s, struct entry **out)
{
    struct entry *e;
    if (s->keys_n >= s->keys_max) {
        e = s->oldest;
        CF_ASSERT(e != NULL);
        if (entry_is_idle(e, now_s))
            s->evicted_idle_n++;
        else
            s->evicted_lru_n++;
        entry_detach(s, e);
    } else {
        e = malloc(sizeof(*e));
        if (e == NULL)
            return CF_ERR_NOMEM;
    }
    entry_reset(e, hash, key, len, now_s);
    entry_attach(s, e);
    *out = e;
    return CF_OK;
}

static enum cf_err shard_record(struct shard *s, uint64_t hash, const char *key, size_t len,
                                int64_t amount_minor, int64_t now_s)
{
    struct entry *e = entry_find(s, hash, key, len);
    if (e != NULL) {
        enum cf_err err = entry_check(e, amount_minor, now_s);
        if (err != CF_OK)
            return err;
        list_unlink(s, e);
        list_push_newest(s, e);
    } else {
        enum cf_err err = shard_entry_new(s, hash, key, len, now_s, &e);
        if (err != CF_OK)
            return err;
        CF_ASSERT(entry_check(e, amount_minor, now_s) == CF_OK); /* a fresh key holds nothing */
    }
    if (!entry_apply(e, amount_minor, now_s))
        s->dropped_old_n++;
    CF_ASSERT(s->newest == e);
    (void)shard_evict_idle(s, now_s, VELOCITY_EVICT_PER_CALL_MAX);
    return CF_OK;
}

enum cf_err velocity_record(struct velocity *v, const char *key, int64_t amount_minor,
                            int64_t now_s)
{
    CF_ASSERT(v != NULL && key != NULL);
    CF_ASSERT(now_s >= 0);
    size_t len = key_length(key);
    if (len == 0)
        return CF_ERR_INVALID_FIELD;
    if (amount_minor < 0)
        return CF_ERR_INVALID_AMOUNT;
    uint64_t hash = hash_siphash24(v->seed, key, len);
    struct shard *s = shard_of(v, hash);
    CF_ASSERT(pthread_mutex_lock(&s->mu) == 0);
    enum cf_err err = shard_record(s, hash, key, len, amount_minor, now_s);
    CF_ASSERT(pthread_mutex_unlock(&s->mu) == 0);
    return err;
}

enum cf_err velocity_read(struct velocity *v, const char *key, int64_t now_s,
                          struct velocity_counts *out)
{
    CF_ASSERT(v != NULL && key != NULL && out != NULL);
    CF_ASSERT(now_s >= 0);
    size_t len = key_length(key);
    if (len == 0)
        return CF_ERR_INVALID_FIELD;
    uint64_t hash = hash_siphash24(v->seed, key, len);
    struct shard *s = shard_of(v, hash);
    struct velocity_counts c;
    memset(&c, 0, sizeof(c));
    CF_ASSERT(pthread_mutex_lock(&s->mu) == 0);
    const struct entry *e = entry_find(s, hash, key, len);
    for (int w = 0; e != NULL && w < VELOCITY_WINDOWS_N; w++)
        ring_read(e, w, now_s / rings[w].bucket_s, &c.sum_minor[w], &c.count[w]);
    CF_ASSERT(pthread_mutex_unlock(&s->mu) == 0);
    CF_ASSERT(c.count[0] <= c.count[1] && c.count[1] <= c.count[2]);
    CF_ASSERT(c.sum_minor[0] <= c.sum_minor[1] && c.sum_minor[1] <= c.sum_minor[2]);
    *out = c;
    return CF_OK;
}

/* Maintenance ---------------------------------------------------------------------------------- */

static size_t shard_sweep(struct shard *s, int64_t now_s)
{
    size_t evicted = 0;
    struct entry *e = s->oldest;
    while (e != NULL) {
        struct entry *next = e->newer;
        if (entry_is_idle(e, now_s)) {
            entry_detach(s, e);
            free(e);
            evicted++;
        }
        e = next;
    }
    s->evicted_idle_n += evicted;
    CF_ASSERT(s->keys_n <= s->keys_max);
    return evicted;
}

size_t velocity_sweep(struct velocity *v, int64_t now_s)
{
    CF_ASSERT(v != NULL && now_s >= 0);
    size_t evicted = 0;
    for (size_t i = 0; i < v->shards_n; i++) {
        struct shard *s = &v->shards[i];
        CF_ASSERT(pthread_mutex_lock(&s->mu) == 0);
        evicted += shard_sweep(s, now_s);
        CF_ASSERT(pthread_mutex_unlock(&s->mu) == 0);
    }
    return evicted;
}

void velocity_stats_read(struct velocity *v, struct velocity_stats *out)
{
    CF_ASSERT(v != NULL && out != NULL);
    struct velocity_stats st;
    memset(&st, 0, sizeof(st));
    st.keys_max = v->keys_max;
    for (size_t i = 0; i < v->shards_n; i++) {
        struct shard *s = &v->shards[i];
        CF_ASSERT(pthread_mutex_lock(&s->mu) == 0);
        st.keys_n += s->keys_n;
        st.evicted_idle_n += s->evicted_idle_n;
        st.evicted_lru_n += s->evicted_lru_n;
        st.dropped_old_n += s->dropped_old_n;
        CF_ASSERT(pthread_mutex_unlock(&s->mu) == 0);
    }
    CF_ASSERT(st.keys_n <= st.keys_max);
    *out = st;
}
