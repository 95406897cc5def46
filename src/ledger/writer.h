/*
 * writer.h - the single ledger writer: a queue, one thread, group commit.
 *
 * Every change to the ledger is a command submitted here. One thread takes as many queued
 * commands as fit in a batch, applies each with the rules in ledger.h, and writes the whole
 * batch to the store in one transaction (group commit). A command's done callback runs only
 * after that transaction is durable, so nothing is acknowledged that a crash could lose.
 *
 * Each command is all or nothing on its own: a rejected command (insufficient funds, an unknown
 * account) is undone in memory and leaves the rest of its batch untouched, like a savepoint per
 * command. Items of a batch command are each their own savepoint. If the store fails, the whole
 * batch is rolled back, every command in it gets CF_ERR_STORAGE, and the writer reloads its
 * state from the store.
 *
 * Command life:   submitted --(queue)--> taken --(apply, commit)--> done callback
 *                      \--> refused at submit (CF_ERR_OVERLOADED / CF_ERR_SHUTTING_DOWN)
 *
 * Idempotency: a command with an idempotency key is looked up first. A stored record with the
 * same request hash is replayed (cmd->replayed, cmd->resp_*); with another hash the command
 * fails with CF_ERR_IDEM_KEY_REUSED. Otherwise it runs and cmd->render produces the response,
 * which is stored with the key in the same transaction as the command's effects.
 *
 * Time: the writer reads its clock once per batch and hands that time to the rules. Holds whose
 * expiry has passed are released by a sweep that runs at least every WRITER_SWEEP_INTERVAL_MS.
 *
 * Threads: writer_submit may be called from any thread. The done callback runs on the writer
 * thread and must be quick (it resumes a connection). The command and its arena belong to the
 * writer from submit until done is called; the submitter must not touch them in between.
 */
#ifndef COFFER_LEDGER_WRITER_H
#define COFFER_LEDGER_WRITER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/clock.h"
#include "ledger/ledger.h"
#include "store/store.h"

enum writer_cmd_type {
    WRITER_CMD_ACCOUNT_CREATE,
    WRITER_CMD_TRANSFER,  /* one or more legs, atomic */
    WRITER_CMD_POST,      /* post a pending transfer */
    WRITER_CMD_VOID,      /* void a pending transfer */
    WRITER_CMD_SET_FLAGS, /* freeze / unfreeze */
    WRITER_CMD_BATCH,     /* independent single-leg transfers, each with its own key */
};

/* One item's outcome in a batch command. */
struct writer_item_result {
    enum cf_err err;
    bool existed; /* the item's key was already applied with the same content */
    struct ledger_entry entry;
};

struct writer_cmd {
    enum writer_cmd_type type;

    /* input */
    struct ledger_account account; /* CREATE: currency, normal, kind, flags */
    const char *owner, *metadata;  /* CREATE */
    size_t owner_len, metadata_len;
    struct ledger_leg *legs; /* TRANSFER and BATCH */
    size_t legs_n;
    uint64_t target_id;              /* POST/VOID: pending seq; SET_FLAGS: account id */
    int64_t amount_minor;            /* POST: 0 = the full held amount */
    uint32_t flags_set, flags_clear; /* SET_FLAGS */

    /* idempotency (optional; key_len 0 = none) */
    const char *idem_key;
    size_t idem_key_len;
    uint8_t request_hash[HASH_BYTES];
    /* Renders the response stored with the key (called on the writer thread, after apply). */
    enum cf_err (*render)(struct writer_cmd *cmd);

    /* output */
    enum cf_err err;
    size_t failed_leg; /* TRANSFER: which leg failed when err != CF_OK */
    bool replayed;
    int resp_status;       /* set by render or by a replay */
    const char *resp_body; /* in arena */
    size_t resp_body_len;
    struct ledger_account account_out; /* CREATE, SET_FLAGS */
    struct ledger_entry *entries_out;  /* TRANSFER: legs_n entries; POST/VOID: 1 */
    size_t entries_n;
    struct ledger_entry pending_out;  /* POST/VOID: the pending transfer after resolution */
    struct writer_item_result *items; /* BATCH: legs_n results */

    /* free for the submitter (the API keeps the response shape here); the writer ignores it */
    int variant;

    /* completion */
    void (*done)(struct writer_cmd *cmd);
    void *user;
    struct arena *arena;      /* outputs are allocated here */
    struct writer_cmd *next_; /* internal */
};

/* Counters the writer keeps for /metrics; read with atomic loads. */
#define WRITER_HIST_BUCKETS 12
struct writer_stats {
    atomic_uint_fast64_t batches;
    atomic_uint_fast64_t commands;
    atomic_uint_fast64_t entries;
    atomic_uint_fast64_t commit_failures;
    atomic_uint_fast64_t expired;
    /* batch size (commands) histogram: <=1,2,4,...,2048,+Inf */
    atomic_uint_fast64_t batch_size_bucket[WRITER_HIST_BUCKETS];
    /* commit latency histogram in microseconds: <=100,250,500,1000,...,+Inf */
    atomic_uint_fast64_t commit_us_bucket[WRITER_HIST_BUCKETS];
    atomic_uint_fast64_t commit_us_sum;
    atomic_uint_fast64_t queue_depth;
};
extern const int64_t writer_commit_us_bounds[WRITER_HIST_BUCKETS - 1];
extern const int64_t writer_batch_size_bounds[WRITER_HIST_BUCKETS - 1];

struct writer;

/* Creates the writer over an open store and starts its thread. The store must outlive it.
 * The clock is read once per batch. */
CF_WARN_UNUSED enum cf_err writer_create(struct store *store, struct cf_clock *clock,
                                         struct writer **out);

/* Stops taking commands (writer_submit answers CF_ERR_SHUTTING_DOWN from now on), finishes
 * every queued one (their done callbacks run) and joins the thread. The writer stays valid. */
void writer_stop(struct writer *w);

/* writer_stop, then frees the writer. */
void writer_destroy(struct writer *w);

/* Queues a command. CF_OK: done will be called exactly once. Otherwise done is never called. */
CF_WARN_UNUSED enum cf_err writer_submit(struct writer *w, struct writer_cmd *cmd);

/* Submits and waits for completion (CLI, tests, benchmarks). Returns cmd->err. */
enum cf_err writer_run(struct writer *w, struct writer_cmd *cmd);

/* Submits many commands and waits for all (benchmarks, property tests). */
void writer_run_many(struct writer *w, struct writer_cmd **cmds, size_t n);

/* Runs a sweep of expired holds now and waits for it (tests with a fake clock). */
void writer_sweep_now(struct writer *w);

const struct writer_stats *writer_stats(const struct writer *w);

#endif
