/*
 * verify.h - checks a whole ledger from its journal: the tamper-evidence audit.
 *
 * ledger_verify reads every account and every journal entry in one read snapshot and checks:
 *   V1. the journal is contiguous (seq 1, 2, 3, ...) and every hash recomputes from the one
 *       before it (so no entry was changed, removed or inserted);
 *   V2. re-summing every entry gives exactly each account's four stored totals;
 *   V3. per currency, total debits equal total credits, posted and pending alike;
 *   V4. every account satisfies its own rules (no total below zero, no no_overdraft account
 *       with available below zero), and both sides of each entry share its currency;
 *   V5. every pending transfer's stored status matches the entries that resolved it, and each
 *       was resolved at most once;
 *   V6. every account's history links (last_seq, debit_prev_seq, credit_prev_seq) name exactly
 *       the entries that touched it, newest first.
 * Each problem found is reported through the callback as one line of text; the counts in the
 * report are filled either way. Memory: proportional to accounts + pending transfers.
 */
#ifndef COFFER_LEDGER_VERIFY_H
#define COFFER_LEDGER_VERIFY_H

#include <stdint.h>

#include "store/store.h"

struct verify_report {
    uint64_t accounts;
    uint64_t entries;
    uint64_t currencies;
    uint64_t problems;
    uint8_t head_hash[HASH_BYTES];
};

typedef void (*verify_problem_fn)(void *ctx, const char *line);

/* CF_OK when the check ran (look at report->problems); an error when it could not read. */
CF_WARN_UNUSED enum cf_err ledger_verify(struct store *store, struct verify_report *report,
                                         verify_problem_fn problem, void *ctx);

#endif
