/* throttle.c - failure counting with exponential delays, in memory; see throttle.h. */
#include "identity/throttle.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/*
 * How: a chained hash table over a fixed array of THROTTLE_KEYS_MAX slots, linked by 32-bit
 * indexes. Buckets are chosen with SipHash under a random per-table key, so a client that picks
 * the logins it tries cannot pile its keys into one chain. Every slot in use is also on a list
 * ordered by its last failure (oldest first): when the table is full the oldest slot is evicted,
 * and slots whose window has passed are dropped from the old end as failures arrive. Slots not
 * in use are on a free list. One mutex guards everything; each call is O(1) on average.
 */

/* Buckets: a power of two at least THROTTLE_KEYS_MAX, so chains average below one slot. */
#define THROTTLE_BUCKETS (1u << 17)
_Static_assert(THROTTLE_BUCKETS >= THROTTLE_KEYS_MAX, "more keys than buckets");
_Static_assert(THROTTLE_KEYS_MAX < UINT32_MAX, "slot indexes are 32-bit");

/* 2^THROTTLE_EXP_CAP exceeds THROTTLE_DELAY_MAX_S, so larger exponents need not be computed
 * (and 2^n never overflows). */
#define THROTTLE_EXP_CAP 30
_Static_assert(((int64_t)1 << THROTTLE_EXP_CAP) > THROTTLE_DELAY_MAX_S, "exponent cap too low");

/* Failures counted per key stop growing here; the delay has been at its cap for long before. */
#define THROTTLE_FAILURES_CAP 1000000u

#define NONE UINT32_MAX

struct slot {
    uint8_t key[HASH_BYTES];
    int64_t last_failure_s;
    uint32_t failures;
    uint32_t next;  /* next in the bucket's chain, or next free slot */
    uint32_t older; /* age list neighbours */
    uint32_t newer;
};

struct throttle {
    pthread_mutex_t mu;
    uint8_t seed[crypto_shorthash_KEYBYTES];
    uint32_t buckets[THROTTLE_BUCKETS];
    struct slot *slots;    /* THROTTLE_KEYS_MAX */
    uint32_t slots_used_n; /* slots handed out at least once; those past it are untouched */
    uint32_t free_head;    /* freed slots, chained by next */
    uint32_t oldest;
    uint32_t newest;
    uint32_t keys_n;
};

enum cf_err throttle_create(struct throttle **out)
{
    CF_ASSERT(out != NULL);
    struct throttle *t = malloc(sizeof(*t));
    if (t == NULL)
        return CF_ERR_NOMEM;
    /* calloc: the pages of slots never used are never touched */
    t->slots = calloc(THROTTLE_KEYS_MAX, sizeof(struct slot));
    if (t->slots == NULL || pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t->slots);
        free(t);
        return CF_ERR_NOMEM;
    }
    crypto_shorthash_keygen(t->seed);
    for (uint32_t i = 0; i < THROTTLE_BUCKETS; i++)
        t->buckets[i] = NONE;
    t->slots_used_n = 0;
    t->free_head = NONE;
    t->oldest = NONE;
    t->newest = NONE;
    t->keys_n = 0;
    *out = t;
    return CF_OK;
}

void throttle_free(struct throttle *t)
{
    if (t == NULL)
        return;
    CF_ASSERT(pthread_mutex_destroy(&t->mu) == 0);
    free(t->slots);
    free(t);
}

/* Table ---------------------------------------------------------------------------------------- */

static uint32_t bucket_of(const struct throttle *t, const uint8_t key[HASH_BYTES])
{
    uint8_t h[crypto_shorthash_BYTES];
    CF_ASSERT(crypto_shorthash(h, key, HASH_BYTES, t->seed) == 0);
    uint32_t v = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    return v & (THROTTLE_BUCKETS - 1);
}

static uint32_t slot_find(const struct throttle *t, const uint8_t key[HASH_BYTES])
{
    for (uint32_t i = t->buckets[bucket_of(t, key)]; i != NONE; i = t->slots[i].next) {
        if (memcmp(t->slots[i].key, key, HASH_BYTES) == 0)
            return i;
    }
    return NONE;
}

static void age_unlink(struct throttle *t, uint32_t i)
{
    struct slot *s = &t->slots[i];
    if (s->older != NONE)
        t->slots[s->older].newer = s->newer;
    else
        t->oldest = s->newer;
    if (s->newer != NONE)
        t->slots[s->newer].older = s->older;
    else
        t->newest = s->older;
    s->older = NONE;
    s->newer = NONE;
}

static void age_push_newest(struct throttle *t, uint32_t i)
{
    struct slot *s = &t->slots[i];
    s->older = t->newest;
    s->newer = NONE;
    if (t->newest != NONE)
        t->slots[t->newest].newer = i;
    else
        t->oldest = i;
    t->newest = i;
}

static void slot_remove(struct throttle *t, uint32_t i)
{
    CF_ASSERT(i < t->slots_used_n && t->keys_n > 0);
    uint32_t *link = &t->buckets[bucket_of(t, t->slots[i].key)];
    while (*link != i) {
        CF_ASSERT(*link != NONE); /* a slot in use is on its bucket's chain */
        link = &t->slots[*link].next;
    }
    *link = t->slots[i].next;
    age_unlink(t, i);
    t->slots[i].next = t->free_head;
    t->free_head = i;
    t->keys_n--;
}

/* A slot for a new key (evicting the oldest key when the table is full), on its chain and the
 * newest on the age list, with no failures yet. */
static uint32_t slot_insert(struct throttle *t, const uint8_t key[HASH_BYTES])
{
    if (t->keys_n == THROTTLE_KEYS_MAX)
        slot_remove(t, t->oldest);
    uint32_t i;
    if (t->free_head != NONE) {
        i = t->free_head;
        t->free_head = t->slots[i].next;
    } else {
        CF_ASSERT(t->slots_used_n < THROTTLE_KEYS_MAX);
        i = t->slots_used_n++;
    }
    struct slot *s = &t->slots[i];
    memcpy(s->key, key, HASH_BYTES);
    s->failures = 0;
    s->last_failure_s = 0;
    uint32_t b = bucket_of(t, key);
    s->next = t->buckets[b];
    t->buckets[b] = i;
    age_push_newest(t, i);
    t->keys_n++;
    CF_ASSERT(t->keys_n <= THROTTLE_KEYS_MAX);
    return i;
}

static bool window_passed(const struct slot *s, int64_t now_s)
{
    return now_s - s->last_failure_s >= THROTTLE_WINDOW_S;
}

/* Drops keys whose window has passed, from the old end of the age list. */
static void expired_drop(struct throttle *t, int64_t now_s)
{
    while (t->oldest != NONE && window_passed(&t->slots[t->oldest], now_s))
        slot_remove(t, t->oldest);
}

/* Rule ----------------------------------------------------------------------------------------- */

/* The delay after `failures` failures: 0 up to free_failures - 1, then 2^(failures - free),
 * capped at THROTTLE_DELAY_MAX_S. */
static int64_t delay_s(uint32_t failures, unsigned free_failures)
{
    if (failures < free_failures)
        return 0;
    uint32_t exp = failures - free_failures;
    if (exp > THROTTLE_EXP_CAP)
        exp = THROTTLE_EXP_CAP;
    int64_t d = (int64_t)1 << exp;
    int64_t capped = d < THROTTLE_DELAY_MAX_S ? d : THROTTLE_DELAY_MAX_S;
    CF_ASSERT(capped >= 1 && capped <= THROTTLE_DELAY_MAX_S);
    return capped;
}

static void free_failures_check(unsigned free_failures)
{
    CF_ASSERT(free_failures >= 1 && free_failures <= THROTTLE_FREE_FAILURES_MAX);
}

int64_t throttle_wait_s(struct throttle *t, const uint8_t key[HASH_BYTES], unsigned free_failures,
                        int64_t now_s)
{
    CF_ASSERT(t != NULL && key != NULL);
    free_failures_check(free_failures);
    int64_t wait_s = 0;
    CF_ASSERT(pthread_mutex_lock(&t->mu) == 0);
    uint32_t i = slot_find(t, key);
    if (i != NONE && window_passed(&t->slots[i], now_s)) {
        slot_remove(t, i);
    } else if (i != NONE) {
        const struct slot *s = &t->slots[i];
        int64_t d = delay_s(s->failures, free_failures);
        int64_t elapsed_s = now_s - s->last_failure_s;
        if (elapsed_s < 0)
            elapsed_s = 0; /* the clock went back: the full delay, never more */
        wait_s = elapsed_s < d ? d - elapsed_s : 0;
    }
    CF_ASSERT(pthread_mutex_unlock(&t->mu) == 0);
    CF_ASSERT(wait_s >= 0 && wait_s <= THROTTLE_DELAY_MAX_S);
    return wait_s;
}

void throttle_failure(struct throttle *t, const uint8_t key[HASH_BYTES], int64_t now_s)
{
    CF_ASSERT(t != NULL && key != NULL);
    CF_ASSERT(pthread_mutex_lock(&t->mu) == 0);
    expired_drop(t, now_s);
    uint32_t i = slot_find(t, key);
    if (i == NONE) {
        i = slot_insert(t, key);
    } else {
        if (window_passed(&t->slots[i], now_s))
            t->slots[i].failures = 0;
        age_unlink(t, i);
        age_push_newest(t, i);
    }
    struct slot *s = &t->slots[i];
    if (s->failures < THROTTLE_FAILURES_CAP)
        s->failures++;
    s->last_failure_s = now_s;
    CF_ASSERT(t->newest == i && s->failures >= 1);
    CF_ASSERT(pthread_mutex_unlock(&t->mu) == 0);
}

void throttle_success(struct throttle *t, const uint8_t key[HASH_BYTES])
{
    CF_ASSERT(t != NULL && key != NULL);
    CF_ASSERT(pthread_mutex_lock(&t->mu) == 0);
    uint32_t i = slot_find(t, key);
    if (i != NONE)
        slot_remove(t, i);
    CF_ASSERT(slot_find(t, key) == NONE);
    CF_ASSERT(pthread_mutex_unlock(&t->mu) == 0);
}
