/*
 * aml.h - anti-money-laundering scenarios over one subject's history of money movements.
 *
 * Pure detection: the caller loads a subject's (a customer's "usr_..." or a merchant's "mer_...")
 * recent completed movements, calls aml_scan, and gets alerts back; storing them, opening cases
 * and reporting are the caller's. No I/O, no clock (time is passed in), no global state.
 *
 * Scenarios (docs/RISK.md, "Scenarios", gives each one's exact rule and what it misses):
 *   large_transaction    one movement at or above the currency's threshold
 *   structuring          >= count_min movements in [band, threshold) within a window
 *   rapid_pass_through   money in, and >= out_bps of it out again within a window
 *   dormant_reactivated  activity after >= dormant_s without any
 *   fan_in / fan_out     >= count_min distinct counterparties to / from the subject in a window
 *
 * Invariants of every alert:
 *   - it is about ONE currency: amounts of different currencies are never added together;
 *   - its totals (count, sums) cover every triggering event, its evidence the earliest
 *     AML_EVIDENCE_MAX of them, in time order;
 *   - its key is "<scenario>:<subject>:<currency>:<anchor id>", where the anchor is the event
 *     that opened the pattern (see aml_scan); the same pattern found again by a later scan of
 *     a longer history has the same key, so the key names the case.
 *
 * Time: "within W" always means less than W apart: an event exactly W seconds after the anchor
 * is outside the window ([anchor, anchor + W), half open). Dormancy is the converse: a gap of
 * exactly dormant_s counts as dormant.
 *
 * Amounts are int64_t minor units; every sum is checked (CF_ERR_AMOUNT_OVERFLOW); ratios are
 * compared exactly in 128 bits. No floating point.
 *
 * Errors: CF_ERR_CONFIG for a configuration out of range, CF_ERR_INVALID_FIELD for a malformed
 * subject or event (or a duplicate event), CF_ERR_INVALID_AMOUNT for an amount <= 0,
 * CF_ERR_RANGE_TOO_LARGE for more than AML_EVENTS_MAX events, CF_ERR_NOMEM when the bounded
 * scratch cannot be allocated, CF_ERR_AMOUNT_OVERFLOW when a sum leaves int64_t. Every function
 * leaves its outputs untouched on failure.
 *
 * Threads: pure functions over caller storage; any thread may call them once the currency table
 * is settled (assets registered), since aml_config_check and aml_scan look codes up in it.
 */
#ifndef COFFER_RISK_AML_H
#define COFFER_RISK_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/limits.h"

/* Limits --------------------------------------------------------------------------------------- */

/* Events one scan takes: months of a busy customer's history; a merchant's longer history is
 * scanned in slices. Bounds the scan's scratch (AML_SCRATCH_BYTES_MAX) and its time. */
#define AML_EVENTS_MAX 10000

/* An operation id ("pay_...", "snd_...") or a party id ("usr_...", "mer_..."), NUL included;
 * the same size as the payments layer's ids. Ids are 1..47 bytes of [A-Za-z0-9_-]. */
#define AML_ID_BYTES_MAX 48
#define AML_PARTY_BYTES_MAX 48

/* Operation ids listed in one alert; its totals still count every triggering event. */
#define AML_EVIDENCE_MAX 32

/* Rows of the per-currency table: the currencies an operator actually runs, with room. */
#define AML_CURRENCIES_MAX 32

/* A scenario's name, NUL included ("dormant_reactivated" is the longest, 19 bytes). */
#define AML_SCENARIO_NAME_BYTES_MAX 20

/* A key: name ':' subject ':' currency ':' anchor id, NUL included. */
#define AML_KEY_BYTES_MAX                                                                          \
    (AML_SCENARIO_NAME_BYTES_MAX + AML_PARTY_BYTES_MAX + MONEY_CODE_BYTES_MAX + AML_ID_BYTES_MAX + \
     3)

/* The machine-readable detail line of an alert, NUL included: a few "name=value" pairs. */
#define AML_DETAIL_BYTES_MAX 320

/* Event times are epoch seconds in 0..AML_TIME_S_MAX (9999-12-31T23:59:59Z), so adding any
 * window below cannot overflow. */
#define AML_TIME_S_MAX INT64_C(253402300799)

/* A structuring, pass-through, fan or wake window: at most a year. */
#define AML_WINDOW_S_MAX (366LL * 24 * 3600)

/* Dormancy: at most ten years. */
#define AML_DORMANT_S_MAX (10LL * 366 * 24 * 3600)

/* A count threshold (structuring, fan-in, fan-out): 2 (a single event is not a pattern) to
 * this (a pattern needing more events than a scan takes could never fire). */
#define AML_COUNT_MIN_MAX 1000

/* 10000 basis points = 100%. */
#define AML_BPS_MAX 10000

/* Heap scratch of one scan: eight uint32_t arrays of n entries, freed before it returns. */
#define AML_SCRATCH_BYTES_MAX (8u * 4u * AML_EVENTS_MAX)

/* Events --------------------------------------------------------------------------------------- */

enum aml_direction {
    AML_DIRECTION_IN = 1,  /* money reached the subject */
    AML_DIRECTION_OUT = 2, /* money left the subject */
};

/* Numbered like the payments layer's enum pay_kind (1..7), so mapping is a cast there. */
enum aml_kind {
    AML_KIND_TOPUP = 1,
    AML_KIND_WITHDRAWAL = 2,
    AML_KIND_SEND = 3,
    AML_KIND_PAYMENT = 4,
    AML_KIND_REFUND = 5,
    AML_KIND_PAYOUT = 6,
    AML_KIND_CONVERSION = 7, /* one leg: out of one currency, or in to the other */
    AML_KIND_MAX = 7,
};

/* A set of kinds, for the configuration: AML_KIND_BIT(AML_KIND_SEND) | ... */
#define AML_KIND_BIT(kind) (UINT32_C(1) << (kind))
#define AML_KINDS_ALL (((UINT32_C(1) << (AML_KIND_MAX + 1)) - 1) & ~UINT32_C(1))

/* One completed money movement as the subject saw it. Strings are NUL-terminated in their
 * arrays; bytes after the NUL are ignored. */
struct aml_event {
    char id[AML_ID_BYTES_MAX]; /* the operation ("pay_...", "snd_..."), 1..47 of [A-Za-z0-9_-] */
    int64_t time_s;            /* completion, epoch seconds, 0..AML_TIME_S_MAX */
    int32_t sub_us;            /* microseconds within time_s (0..999999): the order of events of
                                * one second as they happened; 0 when unknown */
    uint8_t direction;         /* enum aml_direction */
    uint8_t kind;              /* enum aml_kind */
    int64_t amount_minor;      /* > 0, minor units of currency */
    char currency[MONEY_CODE_BYTES_MAX + 1]; /* 1..12 of [A-Z0-9_]; need not be in the table */
    char counterparty[AML_PARTY_BYTES_MAX];  /* "usr_...", "mer_...", "" = outside (bank, card) */
};

/* Configuration -------------------------------------------------------------------------------- */

enum aml_scenario {
    AML_SCENARIO_LARGE = 0,        /* "large_transaction" */
    AML_SCENARIO_STRUCTURING = 1,  /* "structuring" */
    AML_SCENARIO_PASS_THROUGH = 2, /* "rapid_pass_through" */
    AML_SCENARIO_DORMANT = 3,      /* "dormant_reactivated" */
    AML_SCENARIO_FAN_IN = 4,       /* "fan_in" */
    AML_SCENARIO_FAN_OUT = 5,      /* "fan_out" */
    AML_SCENARIO_COUNT = 6,
};

#define AML_SCENARIO_BIT(scenario) (UINT32_C(1) << (scenario))
#define AML_SCENARIOS_ALL ((UINT32_C(1) << AML_SCENARIO_COUNT) - 1)

/*
 * The amounts of one currency. 0 turns the amount-based scenario off for the currency; a
 * currency absent from the table has all four off (amounts of an unknown scale mean nothing).
 * Fan-in and fan-out count parties, not amounts, and apply to every currency.
 */
struct aml_currency_rule {
    char currency[MONEY_CODE_BYTES_MAX + 1]; /* known to currency_find, once per table */
    int64_t large_minor;            /* >= 0: at or above is large; structuring's band is below it */
    int64_t pass_through_min_minor; /* >= 0: an incoming movement of at least this is examined */
    int64_t dormant_min_minor;      /* >= 0: wake-window total that fires (1 = any activity) */
};

struct aml_config {
    uint32_t scenarios; /* AML_SCENARIO_BIT set of the enabled scenarios */
    struct aml_currency_rule currencies[AML_CURRENCIES_MAX];
    size_t currencies_n; /* 0..AML_CURRENCIES_MAX */

    uint32_t large_kinds; /* AML_KIND_BIT set */

    int64_t structuring_band_bps;   /* 1..AML_BPS_MAX-1: band starts at this share of large */
    uint32_t structuring_count_min; /* 2..AML_COUNT_MIN_MAX */
    int64_t structuring_window_s;   /* 1..AML_WINDOW_S_MAX */
    uint32_t structuring_kinds;

    int64_t pass_through_window_s; /* 1..AML_WINDOW_S_MAX */
    int64_t pass_through_out_bps;  /* 1..AML_BPS_MAX: out >= in * bps / 10000 fires */
    uint32_t pass_through_in_kinds;
    uint32_t pass_through_out_kinds;

    int64_t dormant_s;             /* 1..AML_DORMANT_S_MAX: a gap this long is dormancy */
    int64_t dormant_wake_window_s; /* 1..min(dormant_s, AML_WINDOW_S_MAX) */
    uint32_t dormant_kinds;        /* what counts as activity, for the gap and the wake */

    uint32_t fan_in_count_min; /* 2..AML_COUNT_MIN_MAX distinct senders */
    int64_t fan_in_window_s;   /* 1..AML_WINDOW_S_MAX */
    uint32_t fan_in_kinds;
    uint32_t fan_out_count_min; /* 2..AML_COUNT_MIN_MAX distinct recipients */
    int64_t fan_out_window_s;   /* 1..AML_WINDOW_S_MAX */
    uint32_t fan_out_kinds;
};

/*
 * Fills *out with the defaults (docs/RISK.md gives the reasons):
 *   all six scenarios on;
 *   EUR, USD, GBP: large 10,000.00 (1000000 minor), pass-through minimum 1,000.00, dormant
 *     wake total 1,000.00; no other currency is listed;
 *   large: every kind but conversion;
 *   structuring: band 80% (8000 bps) of large, >= 3 within 24 h, kinds topup, withdrawal, send,
 *     payment, payout;
 *   pass-through: out >= 90% (9000 bps) of an in within 6 h; in kinds topup, send; out kinds
 *     withdrawal, send (so shopping right after a top-up and merchants' payouts stay quiet);
 *   dormant: 180 days, wake window 7 days, every kind but refund;
 *   fan-in, fan-out: >= 10 distinct parties within 24 h, kind send only.
 * The result passes aml_config_check.
 */
void aml_config_default(struct aml_config *out);

/*
 * Checks every range above: the scenario and kind sets hold only defined bits, the currency
 * codes are NUL-terminated, known to currency_find and not repeated, the amounts >= 0, and each
 * bps, count and window within its bound. CF_ERR_CONFIG otherwise.
 */
CF_WARN_UNUSED enum cf_err aml_config_check(const struct aml_config *cfg);

/* The longest window of the enabled scenarios, dormancy excluded: how far back a history must
 * reach for the newest event's patterns to be complete. cfg must pass aml_config_check. */
int64_t aml_config_lookback_s(const struct aml_config *cfg);

/* "large_transaction", ... for a scenario (AML_SCENARIO_COUNT or above is a caller bug).
 * Static storage. */
const char *aml_scenario_name(enum aml_scenario scenario);

/* "topup", ... for a kind in 1..AML_KIND_MAX (else a caller bug). Static storage. */
const char *aml_kind_name(enum aml_kind kind);

/* Alerts --------------------------------------------------------------------------------------- */

struct aml_evidence {
    char id[AML_ID_BYTES_MAX];
    char counterparty[AML_PARTY_BYTES_MAX];
    int64_t time_s;
    int64_t amount_minor; /* of the alert's currency */
    uint8_t direction;    /* enum aml_direction */
    uint8_t kind;         /* enum aml_kind */
};

struct aml_alert {
    enum aml_scenario scenario;
    const char *name; /* aml_scenario_name(scenario): static storage */
    char subject[AML_PARTY_BYTES_MAX];
    char currency[MONEY_CODE_BYTES_MAX + 1];
    char anchor_id[AML_ID_BYTES_MAX]; /* the event the key names */
    char key[AML_KEY_BYTES_MAX];      /* name:subject:currency:anchor_id */
    int64_t window_start_s;           /* the anchor's time */
    int64_t window_end_s; /* exclusive: start + the scenario's window (large: = start) */
    bool open;            /* window_end_s > now_s: a later scan may add evidence to the case */
    int64_t first_s;      /* the first and last triggering events' times */
    int64_t last_s;
    uint32_t count;    /* triggering events, all of them */
    int64_t sum_minor; /* their total = in_sum_minor + out_sum_minor */
    int64_t in_sum_minor;
    int64_t out_sum_minor;
    uint32_t evidence_n;                            /* min(count, AML_EVIDENCE_MAX) */
    struct aml_evidence evidence[AML_EVIDENCE_MAX]; /* the earliest triggering events */
    char detail[AML_DETAIL_BYTES_MAX];              /* "name=value" pairs separated by one space */
};

/*
 * Runs every enabled scenario over `subject`'s events and writes the alerts found into out.
 *
 * Input: cfg as by aml_config_check (else CF_ERR_CONFIG); subject 1..47 bytes of [A-Za-z0-9_-]
 * (CF_ERR_INVALID_FIELD); events[0..n) as documented at struct aml_event (CF_ERR_INVALID_FIELD,
 * CF_ERR_INVALID_AMOUNT for an amount <= 0), n <= AML_EVENTS_MAX (CF_ERR_RANGE_TOO_LARGE), no
 * two events with the same id and direction (CF_ERR_INVALID_FIELD; a conversion's two legs
 * differ in direction). The events NEED NOT BE SORTED: the scan sorts an index of them (not a
 * copy; the caller's array is never written) by time_s, then sub_us, then id, then direction
 * (in first),
 * and that order is "time order" below. now_s (0..AML_TIME_S_MAX, else a caller bug) only
 * decides `open`. events may be NULL when n is 0; out may be NULL when max is 0.
 *
 * Patterns and keys: each windowed scenario walks its candidate events in time order; the
 * first candidate opens a window [t, t + W); when the window holds the pattern, one alert covers
 * every candidate in it, keyed by that first candidate (the anchor), and the walk resumes at
 * the first candidate at or after t + W; when it does not, the walk moves to the next candidate.
 * So alerts of one scenario and currency never share an event, and adding events after the
 * history's end, or events that are not candidates anywhere in it, never changes the key of an
 * alert already found (its evidence may grow while it is open). Dropping events from the
 * history's START may move anchors of patterns that straddle the new start.
 *
 * Output: on success *n_out alerts in out[0..*n_out), *n_out <= max. Order: by scenario (the
 * enum's order), then currency code (byte order), then direction (in, out) where the scenario
 * separates them (large, structuring; fans by nature), then anchor time. When more
 * than max alerts are found, the max whose last triggering event is newest are kept, so
 * *n_out == max means there may be more (call again with a larger out). Keys are unique within
 * one result except when two events of one operation trip the same scenario in one currency.
 *
 * Cost: O(n log n) time, AML_SCRATCH_BYTES_MAX of heap at most (CF_ERR_NOMEM).
 * Errors are checked in this order: config, subject, n, each event in array order, scratch,
 * duplicates, sums. On any error out and *n_out are untouched.
 */
CF_WARN_UNUSED enum cf_err aml_scan(const struct aml_config *cfg, const char *subject,
                                    const struct aml_event *events, size_t n, int64_t now_s,
                                    struct aml_alert *out, size_t max, size_t *n_out);

#endif
