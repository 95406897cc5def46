/*
 * velocity.h - sliding-window counters: how many operations, and how much money, a key has seen
 * in the last minute, hour and day.
 *
 * A key is a short string naming who or what acts: "u:usr_123", "d:<device pseudonym>",
 * "i:<address pseudonym>", "p:mer_9" (the monitoring keeps no raw session id or IP address in a
 * key: api/risk_monitor.c hashes them, risk/decisions.h). For each key the table keeps the count of
 * recorded events and the sum of their amounts (int64_t minor units) over three windows ending at a
 * time the caller passes in (now_s, seconds since the Unix epoch; nothing here reads a clock, so
 * tests are deterministic).
 *
 * Currencies: one key is one series of amounts, and the table never adds amounts of different
 * currencies because it never sees a currency. The caller puts the currency in the key
 * ("u:usr_123|EUR"); the count of such a key then counts the operations in that currency. The
 * rules engine's velocity features are defined that way (see docs/RISK.md, "Features").
 *
 * Windows and their granularity. Each window is a ring of buckets; an event at time t lands in
 * bucket floor(t / bucket_s). The window read at now_s is the bucket holding now_s and the
 * buckets_n - 1 buckets before it:
 *
 *   window  bucket_s  buckets_n  an event `age` = now_s - t seconds old is counted when
 *   1m          1         60     0 <= age <= 59 exactly (60 s ago or more: never)
 *   1h         60         60     always if age <= 3540; never if age >= 3600; in between only
 *                                when it falls in the same minute bucket as now_s - 3540
 *   24h       900         96     always if age <= 85500; never if age >= 86400; in between only
 *                                when it falls in the same 15-minute bucket as now_s - 85500
 *
 * So the 1m window is exact, and the 1h and 24h windows may forget an event up to one bucket
 * (60 s, 900 s) early, never late: they under-count by at most one bucket's worth, they never
 * count an event older than the window. Events later than now_s (a reader whose clock is behind
 * a writer's) are not counted, to the window's granularity: an event in the same bucket as now_s
 * is counted even when it is a few seconds in the future of now_s. Bucket boundaries are
 * multiples of bucket_s since the epoch: a minute bucket starts at second :00 of a UTC minute,
 * a 15-minute bucket at :00, :15, :30 or :45 of a UTC hour.
 *
 * Out-of-order times: an event older than a window's oldest bucket (relative to the newest
 * event recorded for the key) is not counted in that window; a later time moves the window
 * forward. A single far-future now_s therefore empties a key's windows for the times before it:
 * callers pass the server's wall clock, not a client's.
 *
 * Rebuilding after a restart: recording a day's events again at their own past times, in any
 * order, leaves every read at or after the newest of them answering what the table answered
 * when it saw them live (the windows are placed by each key's newest event, and a record never
 * reads a clock). Replaying in time order also restores the keys' recency, which decides what a
 * full table evicts first.
 *
 * Sums are checked: amounts are >= 0, and a record that would take any window's total past
 * INT64_MAX (or a count past UINT32_MAX in a window) fails with CF_ERR_AMOUNT_OVERFLOW and
 * changes nothing, so every sum read is exact.
 *
 * Bounds and eviction. The table holds at most keys_max keys (1..VELOCITY_KEYS_MAX), split over
 * shards by a keyed hash (SipHash-2-4 under a random per-table key, so chosen device ids cannot
 * pile into one chain). Each shard holds at most floor(keys_max / shards) keys, so the table may
 * start evicting a little before keys_max keys in total when the hash spreads them unevenly.
 * A key not recorded for VELOCITY_IDLE_S_MAX seconds has empty windows and is forgotten: a
 * record drops up to VELOCITY_EVICT_PER_CALL_MAX such keys from its shard as it goes, and
 * velocity_sweep drops all of them. When a shard is full, recording a new key evicts the shard's
 * least recently recorded key (its counts are lost, and a later read of it answers zeros), so
 * monitoring never stops; velocity_stats_read counts those evictions so an operator can raise
 * keys_max. Reads never create or refresh a key.
 *
 * Memory: about VELOCITY_KEY_BYTES_APPROX per live key, allocated when a key is first recorded
 * and freed when it is evicted or the table closed, plus one pointer per key of keys_max for the
 * hash buckets at open. 1 << 18 keys is about 760 MB at full occupancy.
 *
 * Errors: CF_ERR_INVALID_FIELD for an empty key or one longer than VELOCITY_KEY_BYTES_MAX,
 * CF_ERR_INVALID_AMOUNT for a negative amount, CF_ERR_AMOUNT_OVERFLOW as above, CF_ERR_NOMEM
 * when memory runs out. Every function leaves its outputs, and the table, untouched on failure.
 * A negative now_s or keys_max outside 1..VELOCITY_KEYS_MAX is a caller bug and aborts.
 *
 * Threads: every function but open and close may be called from any number of threads at once.
 * A shard has one mutex; two calls contend only when their keys fall in the same shard (1 in
 * VELOCITY_SHARDS for unrelated keys). Close must not race any other call.
 */
#ifndef COFFER_RISK_VELOCITY_H
#define COFFER_RISK_VELOCITY_H

#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"

/* The windows, in the order of the arrays of struct velocity_counts. */
#define VELOCITY_WINDOW_1M 0
#define VELOCITY_WINDOW_1H 1
#define VELOCITY_WINDOW_24H 2
#define VELOCITY_WINDOWS_N 3

/* 60 one-second buckets: the minute window is exact at the resolution of now_s. */
#define VELOCITY_1M_BUCKET_S 1
#define VELOCITY_1M_BUCKETS_N 60
/* 60 one-minute buckets: the hour window is exact to within one minute. */
#define VELOCITY_1H_BUCKET_S 60
#define VELOCITY_1H_BUCKETS_N 60
/* 96 fifteen-minute buckets: the day window is exact to within 1% of a day, at a quarter of
 * the memory of one-minute buckets. */
#define VELOCITY_24H_BUCKET_S 900
#define VELOCITY_24H_BUCKETS_N 96

/* A key unrecorded this long has nothing in any window (96 * 900 s) and may be forgotten. */
#define VELOCITY_IDLE_S_MAX 86400

/* Upper bound of keys_max: four keys (user, device, IP, payee) per active customer of a large
 * deployment's day; at about 2.9 KB a key that is 3 GB, the most one process should spend. */
#define VELOCITY_KEYS_MAX (1u << 20)

/* Shards, each with its own mutex and LRU list: with 2 to 64 workers, two unrelated records
 * meet on one mutex rarely. Tables smaller than VELOCITY_SHARDS * VELOCITY_SHARD_KEYS_MIN
 * keys use a single shard, so that a small table's eviction order is exactly LRU. */
#define VELOCITY_SHARDS 64
#define VELOCITY_SHARD_KEYS_MIN 16

/* A key: "u:" + a user id of up to 47 bytes + "|" + a currency code, with room; the device and
 * address keys monitoring builds ("d:" + 32 hex digits + "|EUR") are shorter. */
#define VELOCITY_KEY_BYTES_MAX 96

/* Idle keys a record drops from its shard in passing: keeps the cost of one record bounded
 * while the table still sheds idle keys as fast as it gains new ones. */
#define VELOCITY_EVICT_PER_CALL_MAX 2

/* Approximate memory of one live key (rings, key text, links), for sizing keys_max. */
#define VELOCITY_KEY_BYTES_APPROX 2900

/* SipHash key size. */
#define VELOCITY_SEED_BYTES HASH_SIPHASH_KEY_BYTES

struct velocity;

/* Counts and sums of one key, indexed by VELOCITY_WINDOW_*. count and sum_minor are >= 0, and
 * each window's figures are at most the next wider window's. */
struct velocity_counts {
    int64_t count[VELOCITY_WINDOWS_N];
    int64_t sum_minor[VELOCITY_WINDOWS_N];
};

/* Monitoring figures of a table. */
struct velocity_stats {
    size_t keys_n;           /* keys held now */
    size_t keys_max;         /* the bound given at open */
    uint64_t evicted_idle_n; /* keys forgotten after VELOCITY_IDLE_S_MAX without a record */
    uint64_t evicted_lru_n;  /* keys evicted by a new key in a full shard (lost counts) */
    uint64_t dropped_old_n;  /* records older than every window of their key (ignored) */
};

/*
 * Opens an empty table for at most keys_max keys (1..VELOCITY_KEYS_MAX), hashing keys under a
 * random seed (hash_random of core/hash.h: hash_init must have run). Allocates the shards and
 * their bucket arrays (about 8 bytes per key of keys_max); keys are allocated as they come.
 * *out is the caller's, freed with velocity_close. CF_ERR_NOMEM, *out untouched, on failure.
 */
CF_WARN_UNUSED enum cf_err velocity_open(size_t keys_max, struct velocity **out);

/* The same with a given hash seed (tests and benchmarks that must be reproducible). */
CF_WARN_UNUSED enum cf_err velocity_open_seeded(size_t keys_max,
                                                const uint8_t seed[VELOCITY_SEED_BYTES],
                                                struct velocity **out);

/* Frees the table and every key. NULL is ignored. No other call may be running. */
void velocity_close(struct velocity *v);

/*
 * Records one event of amount_minor (>= 0; 0 counts an event without money) for key (a
 * NUL-terminated string of 1..VELOCITY_KEY_BYTES_MAX bytes) at now_s (>= 0). Creates the key
 * when new, evicting the shard's least recently recorded key when the shard is full. The key
 * becomes its shard's most recently recorded. Errors: CF_ERR_INVALID_FIELD (key),
 * CF_ERR_INVALID_AMOUNT (amount < 0), CF_ERR_AMOUNT_OVERFLOW (a window's sum or count would
 * overflow), CF_ERR_NOMEM (a new key could not be allocated); the table is unchanged on error.
 */
CF_WARN_UNUSED enum cf_err velocity_record(struct velocity *v, const char *key,
                                           int64_t amount_minor, int64_t now_s);

/*
 * The counts and sums of key over the three windows ending at now_s (>= 0). An unknown (or
 * evicted) key answers zeros. Changes nothing: reads do not refresh a key's recency.
 * CF_ERR_INVALID_FIELD for a malformed key, *out untouched.
 */
CF_WARN_UNUSED enum cf_err velocity_read(struct velocity *v, const char *key, int64_t now_s,
                                         struct velocity_counts *out);

/* Forgets every key not recorded for VELOCITY_IDLE_S_MAX seconds before now_s (>= 0), shard by
 * shard (one shard's mutex at a time). Returns how many were forgotten. Run it now and then
 * (every few minutes) so idle keys of quiet shards are freed too. */
size_t velocity_sweep(struct velocity *v, int64_t now_s);

/* Reads the monitoring figures (each shard's under its mutex; the total is not one snapshot
 * when other threads are recording). */
void velocity_stats_read(struct velocity *v, struct velocity_stats *out);


#endif
