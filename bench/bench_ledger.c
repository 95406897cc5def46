/*
 * bench_ledger.c - durable transfers per second through the real writer and SQLite store,
 * in process (no HTTP). Usage: bench_ledger DIR|postgresql://... [transfers_per_size [size]]
 * (with a size, only that batch size runs: `bench_ledger DIR 10000000 8190` fills a ledger of
 * ten million transfers for the read benchmarks)
 *
 * For each batch size (1, 100, 8190) it submits batch commands of that many transfers, one
 * after another, each waited for (so every command is its own durable group commit), between
 * 10,000 funded no_overdraft accounts, and prints transfers/s. Each transfer has its own
 * idempotency key, as over the API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hash.h"
#include "ledger/writer.h"
#include "money/currency.h"
#include "store/store.h"

#define ACCOUNTS 10000
#define FUND_MINOR 1000000000LL

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint64_t key_counter;

static void leg_fill(struct ledger_leg *leg, struct arena *a, uint64_t dr, uint64_t cr,
                     int64_t amount)
{
    memset(leg, 0, sizeof(*leg));
    leg->debit_id = dr;
    leg->credit_id = cr;
    leg->amount = amount;
    strcpy(leg->currency, "USD");
    strcpy(leg->code, "p2p");
    char key[32];
    int n = snprintf(key, sizeof(key), "bench-%llu", (unsigned long long)++key_counter);
    leg->idem_key = arena_strndup(a, key, (size_t)n);
    leg->idem_key_len = (size_t)n;
}

static uint64_t account_create(struct writer *w, struct arena *a, uint8_t normal, uint32_t flags)
{
    struct writer_cmd c = {.type = WRITER_CMD_ACCOUNT_CREATE, .arena = a};
    strcpy(c.account.currency, "USD");
    c.account.normal = normal;
    c.account.kind = normal == LEDGER_NORMAL_DEBIT ? LEDGER_KIND_SYSTEM : LEDGER_KIND_CUSTOMER;
    c.account.flags = flags;
    if (writer_run(w, &c) != CF_OK) {
        fprintf(stderr, "account create failed\n");
        exit(1);
    }
    return c.account_out.id;
}

/* Runs `total` transfers as batch commands of `size`; returns transfers/s. */
static double run_size(struct writer *w, size_t size, size_t total, uint64_t first_acct)
{
    struct arena *a = arena_create(256u << 20);
    size_t done = 0, failed = 0;
    int64_t t0 = cf_monotonic_us();
    while (done < total) {
        arena_reset(a);
        struct writer_cmd c = {.type = WRITER_CMD_BATCH, .arena = a, .legs_n = size};
        c.legs = arena_calloc(a, size, sizeof(*c.legs));
        for (size_t i = 0; i < size; i++) {
            uint64_t dr = first_acct + rng() % ACCOUNTS, cr = first_acct + rng() % ACCOUNTS;
            if (cr == dr)
                cr = first_acct + (dr - first_acct + 1) % ACCOUNTS;
            leg_fill(&c.legs[i], a, dr, cr, 1 + (int64_t)(rng() % 100));
        }
        if (writer_run(w, &c) != CF_OK) {
            fprintf(stderr, "batch failed: %s\n", cf_err_code(c.err));
            exit(1);
        }
        for (size_t i = 0; i < size; i++)
            failed += c.items[i].err != CF_OK;
        done += size;
    }
    int64_t us = cf_monotonic_us() - t0;
    arena_destroy(a);
    if (failed > 0)
        fprintf(stderr, "warning: %zu transfers rejected\n", failed);
    return (double)done * 1e6 / (double)us;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_ledger DIR [transfers_per_size [size]]\n");
        return 2;
    }
    size_t total = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : 200000;
    hash_init();
    struct store_options o = {.location = argv[1], .readers = 1, .create = true};
    struct store *s;
    struct writer *w;
    if (store_open(&o, &s) != CF_OK || writer_create(s, &cf_clock_real, &w) != CF_OK) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 1;
    }
    struct arena *a = arena_create(64u << 20);
    uint64_t bank = account_create(w, a, LEDGER_NORMAL_DEBIT, 0);
    uint64_t first = 0;
    for (int i = 0; i < ACCOUNTS; i++) {
        uint64_t id = account_create(w, a, LEDGER_NORMAL_CREDIT, LEDGER_ACCOUNT_NO_OVERDRAFT);
        first = first == 0 ? id : first;
        struct writer_cmd c = {.type = WRITER_CMD_TRANSFER, .arena = a, .legs_n = 1};
        c.legs = arena_calloc(a, 1, sizeof(*c.legs));
        leg_fill(c.legs, a, bank, id, FUND_MINOR);
        c.legs[0].idem_key = NULL;
        c.legs[0].idem_key_len = 0;
        if (writer_run(w, &c) != CF_OK)
            return 1;
        arena_reset(a);
    }
    size_t sizes[] = {1, 100, 8190};
    size_t sizes_n = 3;
    if (argc > 3) {
        sizes[0] = (size_t)strtoull(argv[3], NULL, 10);
        sizes_n = 1;
        if (sizes[0] < 1 || sizes[0] > LEDGER_BATCH_ITEMS_MAX)
            return 2;
    }
    for (size_t i = 0; i < sizes_n; i++) {
        size_t n = sizes[i] == 1 ? total / 100 : total;
        if (n < sizes[i])
            n = sizes[i];
        double tps = run_size(w, sizes[i], n, first);
        printf("bench_ledger: batch %5zu: %10.0f durable transfers/s (%zu transfers)\n", sizes[i],
               tps, n);
        fflush(stdout);
    }
    writer_destroy(w);
    s->ops->close(s);
    arena_destroy(a);
    return 0;
}
