/*
 * test_aml.c - unit tests for aml.c: the configuration's ranges and defaults; for each scenario a
 * crafted history where it fires (the exact alert: scenario, key, evidence, totals, detail) and
 * ordinary histories where it stays quiet; thresholds and window edges to the second; currencies
 * never added together; keys that stay put as the history grows; unsorted input; hostile
 * input (empty, overlong, malformed, NUL bytes, amounts near INT64_MAX, too many events); the
 * cap on alerts; and a worst-case history of AML_EVENTS_MAX events.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "risk/aml.h"

#define T0 INT64_C(1700000000) /* 2023-11-14T22:13:20Z */
#define HOUR_S INT64_C(3600)
#define DAY_S (24 * HOUR_S)
#define IN AML_DIRECTION_IN
#define OUT AML_DIRECTION_OUT

/* Written into outputs before a call that must fail, to check they are left untouched. */
#define SENTINEL_N ((size_t)0x5A5A5A5A)
#define ALERTS_MAX 64

static struct aml_event hist[AML_EVENTS_MAX + 1];
static size_t hist_n;
static struct aml_alert alerts[ALERTS_MAX];
static size_t alerts_n;
static struct aml_config cfg;

static int setup(void **state)
{
    (void)state;
    memset(hist, 0, sizeof(hist));
    hist_n = 0;
    memset(alerts, 0, sizeof(alerts));
    alerts_n = 0;
    aml_config_default(&cfg);
    return 0;
}

static struct aml_event *ev(const char *id, int64_t time_s, uint8_t direction, uint8_t kind,
                            int64_t amount_minor, const char *currency, const char *counterparty)
{
    assert_true(hist_n < sizeof(hist) / sizeof(hist[0]));
    struct aml_event *e = &hist[hist_n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->time_s = time_s;
    e->direction = direction;
    e->kind = kind;
    e->amount_minor = amount_minor;
    snprintf(e->currency, sizeof(e->currency), "%s", currency);
    snprintf(e->counterparty, sizeof(e->counterparty), "%s", counterparty);
    return e;
}

/* Scans hist as "usr_A" at now_s; fails the test unless it succeeds. */
static size_t scan_at(int64_t now_s)
{
    alerts_n = SENTINEL_N;
    enum cf_err err = aml_scan(&cfg, "usr_A", hist, hist_n, now_s, alerts, ALERTS_MAX, &alerts_n);
    if (err != CF_OK)
        fail_msg("aml_scan -> %d", (int)err);
    assert_true(alerts_n <= ALERTS_MAX);
    return alerts_n;
}

static size_t scan(void) { return scan_at(T0 + 400 * DAY_S); }

/* Expects the scan to fail with err and leave its outputs untouched. */
static void scan_fails(const char *subject, enum cf_err want)
{
    memset(alerts, 0x5A, sizeof(alerts));
    size_t n = SENTINEL_N;
    assert_int_equal(aml_scan(&cfg, subject, hist, hist_n, T0, alerts, ALERTS_MAX, &n), want);
    assert_true(n == SENTINEL_N);
    for (size_t i = 0; i < sizeof(alerts); i++)
        assert_int_equal(((const unsigned char *)alerts)[i], 0x5A);
}

static size_t count_of(enum aml_scenario scenario)
{
    size_t count = 0;
    for (size_t i = 0; i < alerts_n; i++)
        count += alerts[i].scenario == scenario;
    return count;
}

/* The only alert of a scenario. */
static const struct aml_alert *only(enum aml_scenario scenario)
{
    const struct aml_alert *found = NULL;
    for (size_t i = 0; i < alerts_n; i++) {
        if (alerts[i].scenario != scenario)
            continue;
        if (found != NULL)
            fail_msg("more than one %s alert", aml_scenario_name(scenario));
        found = &alerts[i];
    }
    if (found == NULL)
        fail_msg("no %s alert", aml_scenario_name(scenario));
    return found;
}

/* Checks an alert's evidence ids, in order, against a NULL-terminated list. */
static void evidence_is(const struct aml_alert *a, const char *const *ids)
{
    size_t i = 0;
    for (; ids[i] != NULL; i++) {
        assert_true(i < a->evidence_n);
        assert_string_equal(a->evidence[i].id, ids[i]);
    }
    assert_int_equal(a->evidence_n, i);
}

static void totals_are(const struct aml_alert *a, uint32_t count, int64_t in_minor,
                       int64_t out_minor)
{
    assert_int_equal(a->count, count);
    assert_true(a->in_sum_minor == in_minor);
    assert_true(a->out_sum_minor == out_minor);
    assert_true(a->sum_minor == in_minor + out_minor);
}

/* Configuration -------------------------------------------------------------------------------- */

static void test_config_default(void **state)
{
    (void)state;
    assert_int_equal(aml_config_check(&cfg), CF_OK);
    assert_int_equal(cfg.scenarios, AML_SCENARIOS_ALL);
    assert_int_equal(cfg.currencies_n, 3);
    assert_string_equal(cfg.currencies[0].currency, "EUR");
    assert_true(cfg.currencies[0].large_minor == 1000000);
    assert_true(aml_config_lookback_s(&cfg) == 7 * DAY_S); /* the wake window is the longest */
    cfg.scenarios &= ~AML_SCENARIO_BIT(AML_SCENARIO_DORMANT);
    assert_true(aml_config_lookback_s(&cfg) == DAY_S);
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_PASS_THROUGH);
    assert_true(aml_config_lookback_s(&cfg) == 6 * HOUR_S);
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_LARGE);
    assert_true(aml_config_lookback_s(&cfg) == 0);
    assert_string_equal(aml_scenario_name(AML_SCENARIO_LARGE), "large_transaction");
    assert_string_equal(aml_scenario_name(AML_SCENARIO_STRUCTURING), "structuring");
    assert_string_equal(aml_scenario_name(AML_SCENARIO_PASS_THROUGH), "rapid_pass_through");
    assert_string_equal(aml_scenario_name(AML_SCENARIO_DORMANT), "dormant_reactivated");
    assert_string_equal(aml_scenario_name(AML_SCENARIO_FAN_IN), "fan_in");
    assert_string_equal(aml_scenario_name(AML_SCENARIO_FAN_OUT), "fan_out");
    assert_string_equal(aml_kind_name(AML_KIND_TOPUP), "topup");
    assert_string_equal(aml_kind_name(AML_KIND_CONVERSION), "conversion");
}

/* Each mutation makes the default configuration invalid. */
static void test_config_check_refuses(void **state)
{
    (void)state;
    struct aml_config base;
    aml_config_default(&base);
    for (int i = 0;; i++) {
        struct aml_config c = base;
        switch (i) {
        case 0:
            c.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_COUNT);
            break;
        case 1:
            c.large_kinds = 1;
            break; /* bit 0 is no kind */
        case 2:
            c.structuring_kinds = AML_KIND_BIT(AML_KIND_MAX + 1);
            break;
        case 3:
            c.pass_through_in_kinds = UINT32_MAX;
            break;
        case 4:
            c.pass_through_out_kinds = 1;
            break;
        case 5:
            c.dormant_kinds = 1;
            break;
        case 6:
            c.fan_in_kinds = 1;
            break;
        case 7:
            c.fan_out_kinds = 1;
            break;
        case 8:
            c.structuring_band_bps = 0;
            break;
        case 9:
            c.structuring_band_bps = AML_BPS_MAX;
            break;
        case 10:
            c.structuring_count_min = 1;
            break;
        case 11:
            c.structuring_count_min = AML_COUNT_MIN_MAX + 1;
            break;
        case 12:
            c.structuring_window_s = 0;
            break;
        case 13:
            c.structuring_window_s = AML_WINDOW_S_MAX + 1;
            break;
        case 14:
            c.pass_through_window_s = -1;
            break;
        case 15:
            c.pass_through_out_bps = 0;
            break;
        case 16:
            c.pass_through_out_bps = AML_BPS_MAX + 1;
            break;
        case 17:
            c.dormant_s = 0;
            break;
        case 18:
            c.dormant_s = AML_DORMANT_S_MAX + 1;
            break;
        case 19:
            c.dormant_wake_window_s = c.dormant_s + 1;
            break;
        case 20:
            c.dormant_wake_window_s = 0;
            break;
        case 21:
            c.fan_in_count_min = 1;
            break;
        case 22:
            c.fan_out_count_min = 0;
            break;
        case 23:
            c.fan_in_window_s = 0;
            break;
        case 24:
            c.fan_out_window_s = INT64_MAX;
            break;
        case 25:
            c.currencies_n = AML_CURRENCIES_MAX + 1;
            break;
        case 26:
            snprintf(c.currencies[1].currency, sizeof(c.currencies[1].currency), "EUR");
            break;
        case 27:
            snprintf(c.currencies[1].currency, sizeof(c.currencies[1].currency), "ZZZ");
            break;
        case 28:
            c.currencies[1].currency[0] = '\0';
            break;
        case 29:
            memset(c.currencies[1].currency, 'A', sizeof(c.currencies[1].currency));
            break;
        case 30:
            snprintf(c.currencies[1].currency, sizeof(c.currencies[1].currency), "usd");
            break;
        case 31:
            c.currencies[0].large_minor = -1;
            break;
        case 32:
            c.currencies[0].pass_through_min_minor = -1;
            break;
        case 33:
            c.currencies[0].dormant_min_minor = INT64_MIN;
            break;
        default:
            return;
        }
        if (aml_config_check(&c) != CF_ERR_CONFIG)
            fail_msg("mutation %d was accepted", i);
        cfg = c;
        ev("top_1", T0, IN, AML_KIND_TOPUP, 100, "EUR", "");
        scan_fails("usr_A", CF_ERR_CONFIG);
        hist_n = 0;
    }
}

static void test_config_check_accepts_edges(void **state)
{
    (void)state;
    struct aml_config c = cfg;
    c.scenarios = 0;
    c.currencies_n = 0;
    c.large_kinds = c.structuring_kinds = 0;
    c.structuring_band_bps = 1;
    c.structuring_count_min = 2;
    c.structuring_window_s = 1;
    c.pass_through_out_bps = AML_BPS_MAX;
    c.pass_through_window_s = AML_WINDOW_S_MAX;
    c.dormant_s = c.dormant_wake_window_s = 1;
    c.fan_in_count_min = c.fan_out_count_min = AML_COUNT_MIN_MAX;
    assert_int_equal(aml_config_check(&c), CF_OK);
    c = cfg;
    c.dormant_s = AML_DORMANT_S_MAX;
    c.dormant_wake_window_s = AML_WINDOW_S_MAX;
    c.currencies[0].large_minor = 0; /* off for EUR */
    c.currencies[1].pass_through_min_minor = INT64_MAX;
    assert_int_equal(aml_config_check(&c), CF_OK);
}

/* Large transactions --------------------------------------------------------------------------- */

static void test_large_fires_at_threshold(void **state)
{
    (void)state;
    ev("top_1", T0, IN, AML_KIND_TOPUP, 1000000, "EUR", "");
    assert_int_equal(scan(), 1);
    const struct aml_alert *a = only(AML_SCENARIO_LARGE);
    assert_string_equal(a->name, "large_transaction");
    assert_string_equal(a->subject, "usr_A");
    assert_string_equal(a->currency, "EUR");
    assert_string_equal(a->anchor_id, "top_1");
    assert_string_equal(a->key, "large_transaction:usr_A:EUR:top_1");
    evidence_is(a, (const char *const[]){"top_1", NULL});
    totals_are(a, 1, 1000000, 0);
    assert_true(a->evidence[0].amount_minor == 1000000 && a->evidence[0].time_s == T0);
    assert_int_equal(a->evidence[0].direction, IN);
    assert_int_equal(a->evidence[0].kind, AML_KIND_TOPUP);
    assert_true(a->window_start_s == T0 && a->window_end_s == T0 && !a->open);
    assert_true(a->first_s == T0 && a->last_s == T0);
    assert_string_equal(a->detail, "direction=in kind=topup amount_minor=1000000 "
                                   "threshold_minor=1000000 currency=EUR");
}

static void test_large_quiet(void **state)
{
    (void)state;
    ev("pay_1", T0, OUT, AML_KIND_PAYMENT, 999999, "EUR", "mer_SHOP"); /* just below */
    ev("top_1", T0 + 1, IN, AML_KIND_TOPUP, 5000000, "CHF", "");       /* not in the table */
    ev("cnv_1", T0 + 2, OUT, AML_KIND_CONVERSION, 2000000, "EUR", ""); /* kind not counted */
    ev("cnv_1", T0 + 2, IN, AML_KIND_CONVERSION, 2100000, "USD", "");
    assert_int_equal(scan(), 0);
    /* Off for one currency: 0 in the table. */
    hist_n = 0;
    cfg.currencies[0].large_minor = 0;
    ev("wdr_1", T0, OUT, AML_KIND_WITHDRAWAL, 5000000, "EUR", "");
    assert_int_equal(scan(), 0);
}

static void test_large_each_currency_alone(void **state)
{
    (void)state;
    /* Two large amounts near INT64_MAX in two currencies: never added, no overflow. */
    ev("wdr_1", T0, OUT, AML_KIND_WITHDRAWAL, INT64_MAX, "EUR", "");
    ev("wdr_2", T0 + 1, OUT, AML_KIND_WITHDRAWAL, INT64_MAX - 1, "USD", "");
    ev("snd_1", T0 + 2, OUT, AML_KIND_SEND, 600000, "EUR", "usr_B"); /* below threshold */
    ev("snd_2", T0 + 3, OUT, AML_KIND_SEND, 600000, "USD", "usr_B");
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_LARGE);
    assert_int_equal(scan(), 2);
    assert_string_equal(alerts[0].key, "large_transaction:usr_A:EUR:wdr_1");
    totals_are(&alerts[0], 1, 0, INT64_MAX);
    assert_string_equal(alerts[1].key, "large_transaction:usr_A:USD:wdr_2");
    totals_are(&alerts[1], 1, 0, INT64_MAX - 1);
    assert_string_equal(alerts[1].detail, "direction=out kind=withdrawal "
                                          "amount_minor=9223372036854775806 "
                                          "threshold_minor=1000000 currency=USD");
}

/* Structuring ---------------------------------------------------------------------------------- */

static void test_structuring_fires(void **state)
{
    (void)state;
    ev("top_1", T0, IN, AML_KIND_TOPUP, 900000, "EUR", "");
    ev("top_2", T0 + 5 * HOUR_S, IN, AML_KIND_TOPUP, 950000, "EUR", "");
    ev("pay_1", T0 + 6 * HOUR_S, OUT, AML_KIND_PAYMENT, 2500, "EUR", "mer_SHOP");
    ev("top_3", T0 + 20 * HOUR_S, IN, AML_KIND_TOPUP, 990000, "EUR", "");
    assert_int_equal(scan_at(T0 + 21 * HOUR_S), 1);
    const struct aml_alert *a = only(AML_SCENARIO_STRUCTURING);
    assert_string_equal(a->key, "structuring:usr_A:EUR:top_1");
    evidence_is(a, (const char *const[]){"top_1", "top_2", "top_3", NULL});
    totals_are(a, 3, 2840000, 0);
    assert_true(a->window_start_s == T0 && a->window_end_s == T0 + DAY_S);
    assert_true(a->first_s == T0 && a->last_s == T0 + 20 * HOUR_S);
    assert_true(a->open); /* now is inside the window: a fourth payment would join this case */
    assert_string_equal(a->detail, "direction=in count=3 min_minor=900000 max_minor=990000 "
                                   "threshold_minor=1000000 band_bps=8000 count_min=3 "
                                   "window_s=86400 currency=EUR");
    assert_int_equal(scan_at(T0 + DAY_S), 1);
    assert_false(alerts[0].open);
}

/* Events of one second keep the order they happened in (sub_us), whatever their ids: a send
 * made later in the same second as the anchor joins its alert and never becomes the anchor, so
 * the case key stays; an out-of-range sub_us is refused. */
static void test_structuring_same_second(void **state)
{
    (void)state;
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_STRUCTURING);
    ev("snd_M", T0, OUT, AML_KIND_SEND, 900000, "EUR", "usr_B")->sub_us = 100;
    ev("snd_N", T0, OUT, AML_KIND_SEND, 900000, "EUR", "usr_C")->sub_us = 200;
    ev("snd_P", T0, OUT, AML_KIND_SEND, 900000, "EUR", "usr_D")->sub_us = 300;
    assert_int_equal(scan(), 1);
    assert_string_equal(alerts[0].key, "structuring:usr_A:EUR:snd_M");
    ev("snd_A", T0, OUT, AML_KIND_SEND, 900000, "EUR", "usr_E")->sub_us = 400; /* id sorts first */
    assert_int_equal(scan(), 1);
    assert_string_equal(alerts[0].key, "structuring:usr_A:EUR:snd_M");
    totals_are(&alerts[0], 4, 0, 3600000);
    hist[3].sub_us = 1000000;
    alerts_n = SENTINEL_N;
    assert_int_equal(aml_scan(&cfg, "usr_A", hist, hist_n, T0, alerts, ALERTS_MAX, &alerts_n),
                     CF_ERR_INVALID_FIELD);
}

static void test_structuring_band_edges(void **state)
{
    (void)state;
    /* 80% exactly is in the band; the threshold itself is not (it is large). */
    ev("wdr_1", T0, OUT, AML_KIND_WITHDRAWAL, 800000, "EUR", "");
    ev("wdr_2", T0 + 1, OUT, AML_KIND_WITHDRAWAL, 999999, "EUR", "");
    ev("wdr_3", T0 + 2, OUT, AML_KIND_WITHDRAWAL, 1000000, "EUR", "");
    ev("wdr_4", T0 + 3, OUT, AML_KIND_WITHDRAWAL, 799999, "EUR", "");
    assert_int_equal(scan(), 1); /* the large one */
    assert_int_equal(count_of(AML_SCENARIO_STRUCTURING), 0);
    ev("wdr_5", T0 + 4, OUT, AML_KIND_WITHDRAWAL, 800000, "EUR", "");
    assert_int_equal(scan(), 2);
    const struct aml_alert *a = only(AML_SCENARIO_STRUCTURING);
    assert_string_equal(a->key, "structuring:usr_A:EUR:wdr_1");
    evidence_is(a, (const char *const[]){"wdr_1", "wdr_2", "wdr_5", NULL});
    totals_are(a, 3, 0, 2599999);
}

static void test_structuring_window_edge(void **state)
{
    (void)state;
    ev("top_1", T0, IN, AML_KIND_TOPUP, 900000, "EUR", "");
    ev("top_2", T0 + HOUR_S, IN, AML_KIND_TOPUP, 900000, "EUR", "");
    ev("top_3", T0 + DAY_S, IN, AML_KIND_TOPUP, 900000, "EUR", ""); /* exactly W later: outside */
    assert_int_equal(scan(), 0);
    hist[2].time_s = T0 + DAY_S - 1;
    assert_int_equal(scan(), 1);
    assert_int_equal(count_of(AML_SCENARIO_STRUCTURING), 1);
}

static void test_structuring_quiet(void **state)
{
    (void)state;
    /* Two in the band: below the count. */
    ev("top_1", T0, IN, AML_KIND_TOPUP, 950000, "EUR", "");
    ev("top_2", T0 + HOUR_S, IN, AML_KIND_TOPUP, 950000, "EUR", "");
    /* A third in another currency, a fourth in the other direction: never counted together. */
    ev("top_3", T0 + 2 * HOUR_S, IN, AML_KIND_TOPUP, 950000, "USD", "");
    ev("wdr_1", T0 + 3 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 950000, "EUR", "");
    /* Refunds are not counted by default; CHF is not in the table. */
    ev("rfd_1", T0 + 4 * HOUR_S, IN, AML_KIND_REFUND, 950000, "EUR", "mer_SHOP");
    ev("top_4", T0 + 5 * HOUR_S, IN, AML_KIND_TOPUP, 950000, "CHF", "");
    ev("top_5", T0 + 6 * HOUR_S, IN, AML_KIND_TOPUP, 950000, "CHF", "");
    ev("top_6", T0 + 7 * HOUR_S, IN, AML_KIND_TOPUP, 950000, "CHF", "");
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_STRUCTURING);
    assert_int_equal(scan(), 0);
}

static void test_structuring_episodes(void **state)
{
    (void)state;
    /* Two bursts more than a window apart: two cases, each keyed by its first payment. */
    ev("snd_1", T0, OUT, AML_KIND_SEND, 900000, "EUR", "usr_B");
    ev("snd_2", T0 + HOUR_S, OUT, AML_KIND_SEND, 900000, "EUR", "usr_C");
    ev("snd_3", T0 + 2 * HOUR_S, OUT, AML_KIND_SEND, 900000, "EUR", "usr_D");
    ev("snd_4", T0 + 30 * HOUR_S, OUT, AML_KIND_SEND, 900000, "EUR", "usr_B");
    ev("snd_5", T0 + 31 * HOUR_S, OUT, AML_KIND_SEND, 900000, "EUR", "usr_C");
    ev("snd_6", T0 + 32 * HOUR_S, OUT, AML_KIND_SEND, 900000, "EUR", "usr_D");
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_STRUCTURING);
    assert_int_equal(scan(), 2);
    assert_string_equal(alerts[0].key, "structuring:usr_A:EUR:snd_1");
    assert_string_equal(alerts[1].key, "structuring:usr_A:EUR:snd_4");
    evidence_is(&alerts[1], (const char *const[]){"snd_4", "snd_5", "snd_6", NULL});
    /* A run that slides: 0 h, 20 h, 30 h, 40 h. The 0 h window holds 2, so the walk moves on;
     * the 20 h window holds 20, 30, 40: one case keyed by the 20 h payment. */
    hist_n = 0;
    ev("snd_1", T0, OUT, AML_KIND_SEND, 900000, "EUR", "usr_B");
    ev("snd_2", T0 + 20 * HOUR_S, OUT, AML_KIND_SEND, 900000, "EUR", "usr_B");
    ev("snd_3", T0 + 30 * HOUR_S, OUT, AML_KIND_SEND, 900000, "EUR", "usr_B");
    ev("snd_4", T0 + 40 * HOUR_S, OUT, AML_KIND_SEND, 900000, "EUR", "usr_B");
    assert_int_equal(scan(), 1);
    assert_string_equal(alerts[0].key, "structuring:usr_A:EUR:snd_2");
    totals_are(&alerts[0], 3, 0, 2700000);
}

static void test_structuring_evidence_cap(void **state)
{
    (void)state;
    char id[32];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "top_%02d", i);
        ev(id, T0 + i * 60, IN, AML_KIND_TOPUP, 900000 + i, "EUR", "");
    }
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_STRUCTURING);
    assert_int_equal(scan(), 1);
    const struct aml_alert *a = &alerts[0];
    assert_int_equal(a->count, 40);
    assert_int_equal(a->evidence_n, AML_EVIDENCE_MAX);
    assert_string_equal(a->evidence[0].id, "top_00");
    assert_string_equal(a->evidence[AML_EVIDENCE_MAX - 1].id, "top_31");
    assert_true(a->in_sum_minor == 40 * 900000 + (39 * 40) / 2); /* all 40, not the 32 listed */
    assert_true(a->last_s == T0 + 39 * 60);
}

/* Rapid pass-through --------------------------------------------------------------------------- */

static void test_pass_through_fires(void **state)
{
    (void)state;
    ev("top_1", T0, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("wdr_1", T0 + 2 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 490000, "EUR", "");
    assert_int_equal(scan_at(T0 + 3 * HOUR_S), 1);
    const struct aml_alert *a = only(AML_SCENARIO_PASS_THROUGH);
    assert_string_equal(a->key, "rapid_pass_through:usr_A:EUR:top_1");
    evidence_is(a, (const char *const[]){"top_1", "wdr_1", NULL});
    totals_are(a, 2, 500000, 490000);
    assert_true(a->window_start_s == T0 && a->window_end_s == T0 + 6 * HOUR_S && a->open);
    assert_string_equal(a->detail, "in_minor=500000 out_minor=490000 outs=1 delay_s=7200 "
                                   "out_bps=9000 in_min_minor=100000 window_s=21600 "
                                   "currency=EUR");
}

static void test_pass_through_split_outs(void **state)
{
    (void)state;
    ev("snd_1", T0, IN, AML_KIND_SEND, 500000, "EUR", "usr_B");
    ev("snd_2", T0 + HOUR_S, OUT, AML_KIND_SEND, 200000, "EUR", "usr_C");
    ev("pay_1", T0 + 2 * HOUR_S, OUT, AML_KIND_PAYMENT, 90000, "EUR", "mer_SHOP"); /* not out */
    ev("wdr_1", T0 + 3 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 250000, "EUR", "");
    ev("wdr_2", T0 + 5 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 10000, "EUR", "");
    assert_int_equal(scan(), 1);
    const struct aml_alert *a = only(AML_SCENARIO_PASS_THROUGH);
    assert_string_equal(a->key, "rapid_pass_through:usr_A:EUR:snd_1");
    evidence_is(a, (const char *const[]){"snd_1", "snd_2", "wdr_1", "wdr_2", NULL});
    totals_are(a, 4, 500000, 460000);
    assert_string_equal(a->detail, "in_minor=500000 out_minor=460000 outs=3 delay_s=10800 "
                                   "out_bps=9000 in_min_minor=100000 window_s=21600 "
                                   "currency=EUR");
}

static void test_pass_through_edges(void **state)
{
    (void)state;
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_PASS_THROUGH);
    /* 90% exactly fires; one minor unit less does not. */
    ev("top_1", T0, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("wdr_1", T0 + HOUR_S, OUT, AML_KIND_WITHDRAWAL, 449999, "EUR", "");
    assert_int_equal(scan(), 0);
    hist[1].amount_minor = 450000;
    assert_int_equal(scan(), 1);
    /* The out exactly 6 h later is outside the window; a second earlier is inside. */
    hist[1].time_s = T0 + 6 * HOUR_S;
    assert_int_equal(scan(), 0);
    hist[1].time_s = T0 + 6 * HOUR_S - 1;
    assert_int_equal(scan(), 1);
    /* An in below the minimum is not examined. */
    hist[0].amount_minor = 99999;
    hist[1].amount_minor = 99999;
    assert_int_equal(scan(), 0);
    hist[0].amount_minor = 100000;
    assert_int_equal(scan(), 1);
    /* Same second, the out's id sorting first: still counted. */
    hist_n = 0;
    ev("top_9", T0, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("snd_1", T0, OUT, AML_KIND_SEND, 500000, "EUR", "usr_B");
    assert_int_equal(scan(), 1);
    evidence_is(&alerts[0], (const char *const[]){"snd_1", "top_9", NULL});
    assert_string_equal(alerts[0].anchor_id, "top_9");
}

static void test_pass_through_quiet(void **state)
{
    (void)state;
    /* Three days later. */
    ev("top_1", T0, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("wdr_1", T0 + 3 * DAY_S, OUT, AML_KIND_WITHDRAWAL, 500000, "EUR", "");
    /* In one currency, out in another (never compared). */
    ev("top_2", T0 + 10 * DAY_S, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("wdr_2", T0 + 10 * DAY_S + HOUR_S, OUT, AML_KIND_WITHDRAWAL, 500000, "USD", "");
    /* A top-up spent in a shop: payments are not pass-through outs by default. */
    ev("top_3", T0 + 20 * DAY_S, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("pay_1", T0 + 20 * DAY_S + 600, OUT, AML_KIND_PAYMENT, 500000, "EUR", "mer_SHOP");
    /* A refund in is not an anchor by default. */
    ev("rfd_1", T0 + 30 * DAY_S, IN, AML_KIND_REFUND, 500000, "EUR", "mer_SHOP");
    ev("snd_1", T0 + 30 * DAY_S + 600, OUT, AML_KIND_SEND, 500000, "EUR", "usr_B");
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_PASS_THROUGH);
    assert_int_equal(scan(), 0);
}

static void test_pass_through_episodes(void **state)
{
    (void)state;
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_PASS_THROUGH);
    /* Two ins, one out covering both: one case, keyed by the first in. */
    ev("top_1", T0, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("top_2", T0 + HOUR_S, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("wdr_1", T0 + 2 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 950000, "EUR", "");
    assert_int_equal(scan(), 1);
    assert_string_equal(alerts[0].key, "rapid_pass_through:usr_A:EUR:top_1");
    evidence_is(&alerts[0], (const char *const[]){"top_1", "wdr_1", NULL});
    /* A first in that does not pass through, then one that does inside its window. */
    hist_n = 0;
    ev("top_1", T0, IN, AML_KIND_TOPUP, 5000000, "EUR", "");
    ev("top_2", T0 + HOUR_S, IN, AML_KIND_TOPUP, 200000, "EUR", "");
    ev("wdr_1", T0 + 2 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 190000, "EUR", "");
    assert_int_equal(scan(), 1);
    assert_string_equal(alerts[0].key, "rapid_pass_through:usr_A:EUR:top_2");
    totals_are(&alerts[0], 2, 200000, 190000);
    /* An in inside an alerted window is not an anchor of its own (a documented miss): the
     * walk resumes after the window, so the out at 7 h is nobody's evidence. */
    hist_n = 0;
    ev("top_1", T0, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("wdr_1", T0 + HOUR_S, OUT, AML_KIND_WITHDRAWAL, 480000, "EUR", "");
    ev("top_2", T0 + 2 * HOUR_S, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("wdr_2", T0 + 7 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 480000, "EUR", "");
    assert_int_equal(scan(), 1);
    evidence_is(&alerts[0], (const char *const[]){"top_1", "wdr_1", NULL});
    /* Once the window is over the next in is examined again. */
    ev("top_3", T0 + 8 * HOUR_S, IN, AML_KIND_TOPUP, 500000, "EUR", "");
    ev("wdr_3", T0 + 9 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 480000, "EUR", "");
    assert_int_equal(scan(), 2);
    assert_string_equal(alerts[1].key, "rapid_pass_through:usr_A:EUR:top_3");
}

/* Dormant accounts ----------------------------------------------------------------------------- */

static void test_dormant_fires(void **state)
{
    (void)state;
    int64_t wake_s = T0 + 180 * DAY_S; /* exactly dormant_s after the last activity */
    ev("snd_1", T0, OUT, AML_KIND_SEND, 1000, "EUR", "usr_B");
    ev("top_1", wake_s, IN, AML_KIND_TOPUP, 50000, "EUR", "");
    ev("wdr_1", wake_s + 2 * DAY_S, OUT, AML_KIND_WITHDRAWAL, 60000, "EUR", "");
    ev("wdr_2", wake_s + 7 * DAY_S, OUT, AML_KIND_WITHDRAWAL, 70000, "EUR", ""); /* window over */
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_DORMANT);
    assert_int_equal(scan_at(wake_s + 8 * DAY_S), 1);
    const struct aml_alert *a = only(AML_SCENARIO_DORMANT);
    assert_string_equal(a->key, "dormant_reactivated:usr_A:EUR:top_1");
    evidence_is(a, (const char *const[]){"top_1", "wdr_1", NULL});
    totals_are(a, 2, 50000, 60000);
    assert_true(a->window_start_s == wake_s && a->window_end_s == wake_s + 7 * DAY_S);
    assert_false(a->open);
    assert_string_equal(a->detail, "idle_s=15552000 dormant_s=15552000 last_active_s=1700000000 "
                                   "count=2 min_minor=100000 wake_window_s=604800 currency=EUR");
    /* One second less idle: not dormant. */
    hist[1].time_s = wake_s - 1;
    assert_int_equal(scan(), 0);
}

static void test_dormant_small_wake_then_large(void **state)
{
    (void)state;
    /* Wakes with a tiny USD top-up; the EUR money comes a day later: the EUR case is keyed by
     * the waking event, and the tiny USD wake alone stays quiet. */
    int64_t wake_s = T0 + 200 * DAY_S;
    ev("pay_1", T0, OUT, AML_KIND_PAYMENT, 1500, "EUR", "mer_SHOP");
    ev("top_1", wake_s, IN, AML_KIND_TOPUP, 100, "USD", "");
    ev("snd_1", wake_s + DAY_S, IN, AML_KIND_SEND, 250000, "EUR", "usr_B");
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_DORMANT);
    assert_int_equal(scan(), 1);
    const struct aml_alert *a = only(AML_SCENARIO_DORMANT);
    assert_string_equal(a->key, "dormant_reactivated:usr_A:EUR:top_1");
    assert_string_equal(a->currency, "EUR");
    evidence_is(a, (const char *const[]){"snd_1", NULL});
    assert_true(a->first_s == wake_s + DAY_S && a->window_start_s == wake_s);
    /* With "any activity" for USD the tiny wake is its own case. */
    cfg.currencies[1].dormant_min_minor = 1;
    assert_int_equal(scan(), 2);
    assert_string_equal(alerts[0].key, "dormant_reactivated:usr_A:EUR:top_1");
    assert_string_equal(alerts[1].key, "dormant_reactivated:usr_A:USD:top_1");
}

static void test_dormant_quiet(void **state)
{
    (void)state;
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_DORMANT);
    /* Active all year: weekly payments, then a big transfer. */
    char id[32];
    for (int i = 0; i < 52; i++) {
        snprintf(id, sizeof(id), "pay_%02d", i);
        ev(id, T0 + i * 7 * DAY_S, OUT, AML_KIND_PAYMENT, 4000, "EUR", "mer_SHOP");
    }
    ev("snd_1", T0 + 365 * DAY_S, IN, AML_KIND_SEND, 900000, "EUR", "usr_B");
    assert_int_equal(scan(), 0);
    /* A first movement ever is not a reactivation. */
    hist_n = 0;
    ev("top_1", T0, IN, AML_KIND_TOPUP, 900000, "EUR", "");
    assert_int_equal(scan(), 0);
    /* Woken, but below the wake minimum. */
    ev("top_2", T0 + 300 * DAY_S, IN, AML_KIND_TOPUP, 99999, "EUR", "");
    assert_int_equal(scan(), 0);
    hist[1].amount_minor = 100000;
    assert_int_equal(scan(), 1);
}

static void test_dormant_refund_is_no_activity(void **state)
{
    (void)state;
    /* A refund arriving during dormancy neither ends it nor wakes the account. */
    ev("pay_1", T0, OUT, AML_KIND_PAYMENT, 5000, "EUR", "mer_SHOP");
    ev("rfd_1", T0 + 100 * DAY_S, IN, AML_KIND_REFUND, 5000, "EUR", "mer_SHOP");
    ev("wdr_1", T0 + 190 * DAY_S, OUT, AML_KIND_WITHDRAWAL, 300000, "EUR", "");
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_DORMANT);
    assert_int_equal(scan(), 1);
    assert_string_equal(alerts[0].key, "dormant_reactivated:usr_A:EUR:wdr_1");
    evidence_is(&alerts[0], (const char *const[]){"wdr_1", NULL});
    assert_true(strstr(alerts[0].detail, "idle_s=16416000 ") == alerts[0].detail);
}

/* Fan-in and fan-out --------------------------------------------------------------------------- */

static void fan_history(int senders, int64_t step_s, uint8_t direction)
{
    char id[32], party[32];
    for (int i = 0; i < senders; i++) {
        snprintf(id, sizeof(id), "snd_%02d", i);
        snprintf(party, sizeof(party), "usr_S%02d", i);
        ev(id, T0 + i * step_s, direction, AML_KIND_SEND, 2000 + i, "EUR", party);
    }
}

static void test_fan_in_fires(void **state)
{
    (void)state;
    fan_history(10, HOUR_S, IN);
    assert_int_equal(scan_at(T0 + 10 * HOUR_S), 1);
    const struct aml_alert *a = only(AML_SCENARIO_FAN_IN);
    assert_string_equal(a->key, "fan_in:usr_A:EUR:snd_00");
    assert_int_equal(a->evidence_n, 10);
    assert_string_equal(a->evidence[0].id, "snd_00");
    assert_string_equal(a->evidence[0].counterparty, "usr_S00");
    assert_string_equal(a->evidence[9].id, "snd_09");
    totals_are(a, 10, 10 * 2000 + 45, 0);
    assert_true(a->open);
    assert_string_equal(a->detail, "direction=in parties=10 count=10 parties_min=10 "
                                   "window_s=86400 currency=EUR");
}

static void test_fan_in_quiet(void **state)
{
    (void)state;
    fan_history(9, HOUR_S, IN); /* nine distinct senders */
    assert_int_equal(scan(), 0);
    /* A tenth transfer from a sender already counted: 10 transfers, 9 parties. */
    ev("snd_x", T0 + 9 * HOUR_S, IN, AML_KIND_SEND, 2000, "EUR", "usr_S03");
    /* From the outside world, and from a tenth party in another currency. */
    ev("top_1", T0 + 9 * HOUR_S, IN, AML_KIND_TOPUP, 2000, "EUR", "");
    ev("snd_y", T0 + 9 * HOUR_S, IN, AML_KIND_SEND, 2000, "USD", "usr_S10");
    assert_int_equal(scan(), 0);
    /* Counted kinds may include top-ups; the outside world ("") is still no party. */
    cfg.fan_in_kinds |= AML_KIND_BIT(AML_KIND_TOPUP);
    assert_int_equal(scan(), 0);
    /* A tenth distinct sender exactly 24 h after the first: outside the window. */
    ev("snd_z", T0 + DAY_S, IN, AML_KIND_SEND, 2000, "EUR", "usr_S11");
    assert_int_equal(scan(), 0);
    hist[hist_n - 1].time_s = T0 + DAY_S - 1;
    assert_int_equal(scan(), 1);
    const struct aml_alert *a = only(AML_SCENARIO_FAN_IN);
    assert_int_equal(a->count, 11); /* the repeat sender's second transfer is evidence too */
    assert_true(strstr(a->detail, "parties=10 count=11 ") != NULL);
}

static void test_fan_in_merchant_quiet(void **state)
{
    (void)state;
    /* A shop paid by 30 customers in an hour: payments are not fan-in by default. */
    char id[32], party[32];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof(id), "pay_%02d", i);
        snprintf(party, sizeof(party), "usr_C%02d", i);
        ev(id, T0 + i * 120, IN, AML_KIND_PAYMENT, 1500, "EUR", party);
    }
    alerts_n = SENTINEL_N;
    assert_int_equal(aml_scan(&cfg, "mer_SHOP", hist, hist_n, T0, alerts, ALERTS_MAX, &alerts_n),
                     CF_OK);
    assert_int_equal(alerts_n, 0);
}

static void test_fan_out_fires(void **state)
{
    (void)state;
    fan_history(12, 30 * 60, OUT);
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_FAN_OUT) | AML_SCENARIO_BIT(AML_SCENARIO_FAN_IN);
    assert_int_equal(scan(), 1);
    const struct aml_alert *a = only(AML_SCENARIO_FAN_OUT);
    assert_string_equal(a->key, "fan_out:usr_A:EUR:snd_00");
    totals_are(a, 12, 0, 12 * 2000 + 66);
    assert_string_equal(a->detail, "direction=out parties=12 count=12 parties_min=10 "
                                   "window_s=86400 currency=EUR");
}

/* Whole histories ------------------------------------------------------------------------------ */

/* A month of ordinary life: salary in, rent out, groceries, a cash withdrawal, one expensive
 * purchase just below the threshold; repeated for a year so the account is never dormant. */
static void ordinary_year(void)
{
    char id[32];
    for (int m = 0; m < 12; m++) {
        int64_t month_s = T0 + m * 30 * DAY_S;
        snprintf(id, sizeof(id), "snd_sal%02d", m);
        ev(id, month_s + 9 * HOUR_S, IN, AML_KIND_SEND, 320000, "EUR", "mer_EMPLOYER");
        snprintf(id, sizeof(id), "snd_rent%02d", m);
        ev(id, month_s + DAY_S + 10 * HOUR_S, OUT, AML_KIND_SEND, 120000, "EUR", "usr_LANDLORD");
        for (int g = 0; g < 8; g++) {
            snprintf(id, sizeof(id), "pay_g%02d%d", m, g);
            ev(id, month_s + (3 + 3 * g) * DAY_S + 18 * HOUR_S, OUT, AML_KIND_PAYMENT,
               4000 + 731 * g, "EUR", "mer_GROCER");
        }
        snprintf(id, sizeof(id), "wdr_%02d", m);
        ev(id, month_s + 15 * DAY_S, OUT, AML_KIND_WITHDRAWAL, 20000, "EUR", "");
        snprintf(id, sizeof(id), "snd_fr%02d", m);
        ev(id, month_s + 20 * DAY_S, IN, AML_KIND_SEND, 2500, "EUR", "usr_FRIEND");
    }
    ev("pay_tv", T0 + 100 * DAY_S, OUT, AML_KIND_PAYMENT, 999999, "EUR", "mer_ELECTRO");
}

static void test_ordinary_history_is_quiet(void **state)
{
    (void)state;
    ordinary_year();
    assert_int_equal(scan(), 0);
}

static void test_keys_stable_as_history_grows(void **state)
{
    (void)state;
    ev("top_1", T0, IN, AML_KIND_TOPUP, 900000, "EUR", "");
    ev("top_2", T0 + HOUR_S, IN, AML_KIND_TOPUP, 900000, "EUR", "");
    ev("top_3", T0 + 2 * HOUR_S, IN, AML_KIND_TOPUP, 900000, "EUR", "");
    ev("wdr_1", T0 + 3 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 2500000, "EUR", "");
    cfg.scenarios =
        AML_SCENARIO_BIT(AML_SCENARIO_STRUCTURING) | AML_SCENARIO_BIT(AML_SCENARIO_PASS_THROUGH);
    assert_int_equal(scan(), 2);
    char structuring_key[AML_KEY_BYTES_MAX], pass_key[AML_KEY_BYTES_MAX];
    snprintf(structuring_key, sizeof(structuring_key), "%s", only(AML_SCENARIO_STRUCTURING)->key);
    snprintf(pass_key, sizeof(pass_key), "%s", only(AML_SCENARIO_PASS_THROUGH)->key);
    assert_string_equal(structuring_key, "structuring:usr_A:EUR:top_1");
    assert_string_equal(pass_key, "rapid_pass_through:usr_A:EUR:top_1");
    /* Unrelated events before, between and after, in any order; then the pattern goes on. */
    ev("pay_0", T0 - 5 * DAY_S, OUT, AML_KIND_PAYMENT, 3000, "EUR", "mer_SHOP");
    ev("top_u", T0 + 30 * 60, IN, AML_KIND_TOPUP, 900000, "USD", "");
    ev("pay_1", T0 + 90 * 60, OUT, AML_KIND_PAYMENT, 3000, "EUR", "mer_SHOP");
    ev("top_s", T0 + 100 * 60, IN, AML_KIND_TOPUP, 5000, "EUR", "");
    ev("pay_9", T0 + 9 * DAY_S, OUT, AML_KIND_PAYMENT, 3000, "EUR", "mer_SHOP");
    ev("top_4", T0 + 10 * HOUR_S, IN, AML_KIND_TOPUP, 850000, "EUR", "");
    ev("wdr_2", T0 + 4 * HOUR_S, OUT, AML_KIND_WITHDRAWAL, 100, "EUR", "");
    assert_int_equal(scan(), 2);
    const struct aml_alert *a = only(AML_SCENARIO_STRUCTURING);
    assert_string_equal(a->key, structuring_key);
    evidence_is(a, (const char *const[]){"top_1", "top_2", "top_3", "top_4", NULL});
    const struct aml_alert *p = only(AML_SCENARIO_PASS_THROUGH);
    assert_string_equal(p->key, pass_key);
    evidence_is(p, (const char *const[]){"top_1", "wdr_1", "wdr_2", NULL});
}

/* The same history in reverse and shuffled gives the same alerts. */
static void test_unsorted_input(void **state)
{
    (void)state;
    ordinary_year();
    fan_history(10, HOUR_S, IN);
    ev("top_1", T0 + 50 * DAY_S, IN, AML_KIND_TOPUP, 950000, "EUR", "");
    ev("top_2", T0 + 50 * DAY_S + 1, IN, AML_KIND_TOPUP, 950000, "EUR", "");
    ev("top_3", T0 + 50 * DAY_S + 2, IN, AML_KIND_TOPUP, 950000, "EUR", "");
    ev("wdr_x", T0 + 50 * DAY_S + 3, OUT, AML_KIND_WITHDRAWAL, 2000000, "EUR", "");
    size_t n = scan();
    assert_int_equal(n, 4); /* fan-in, structuring, pass-through, large */
    static struct aml_alert sorted[ALERTS_MAX];
    memcpy(sorted, alerts, sizeof(sorted));
    for (size_t i = 0; i < hist_n / 2; i++) {
        struct aml_event t = hist[i];
        hist[i] = hist[hist_n - 1 - i];
        hist[hist_n - 1 - i] = t;
    }
    for (int round = 0; round < 2; round++) {
        assert_int_equal(scan(), n);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(alerts[i].key, sorted[i].key);
            assert_int_equal(alerts[i].count, sorted[i].count);
            assert_true(alerts[i].sum_minor == sorted[i].sum_minor);
            assert_int_equal(alerts[i].evidence_n, sorted[i].evidence_n);
            for (size_t k = 0; k < alerts[i].evidence_n; k++)
                assert_string_equal(alerts[i].evidence[k].id, sorted[i].evidence[k].id);
            assert_string_equal(alerts[i].detail, sorted[i].detail);
        }
        uint64_t lcg = 42; /* a fixed shuffle */
        for (size_t i = hist_n - 1; i > 0; i--) {
            lcg = lcg * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
            size_t j = (size_t)((lcg >> 33) % (i + 1));
            struct aml_event t = hist[i];
            hist[i] = hist[j];
            hist[j] = t;
        }
    }
}

static void test_alert_order_and_cap(void **state)
{
    (void)state;
    char id[32];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "top_%d", i);
        ev(id, T0 + i * DAY_S, IN, AML_KIND_TOPUP, 2000000, "EUR", "");
    }
    ev("wdr_1", T0 + 2 * DAY_S + 60, OUT, AML_KIND_WITHDRAWAL, 1900000, "EUR", "");
    cfg.scenarios =
        AML_SCENARIO_BIT(AML_SCENARIO_LARGE) | AML_SCENARIO_BIT(AML_SCENARIO_PASS_THROUGH);
    assert_int_equal(scan(), 7);
    assert_string_equal(alerts[0].key, "large_transaction:usr_A:EUR:top_0");
    assert_string_equal(alerts[4].key, "large_transaction:usr_A:EUR:top_4");
    assert_string_equal(alerts[5].key, "large_transaction:usr_A:EUR:wdr_1"); /* out after in */
    assert_string_equal(alerts[6].key, "rapid_pass_through:usr_A:EUR:top_2");
    /* Room for 3: the three whose last event is newest (top_4, top_3, then wdr_1). */
    size_t n = SENTINEL_N;
    assert_int_equal(aml_scan(&cfg, "usr_A", hist, hist_n, T0, alerts, 3, &n), CF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(alerts[0].key, "large_transaction:usr_A:EUR:top_3");
    assert_string_equal(alerts[1].key, "large_transaction:usr_A:EUR:top_4");
    assert_string_equal(alerts[2].key, "large_transaction:usr_A:EUR:wdr_1");
    /* Room for 5: top_2 joins; the pass-through ends at wdr_1 too and follows it in walk order. */
    assert_int_equal(aml_scan(&cfg, "usr_A", hist, hist_n, T0, alerts, 5, &n), CF_OK);
    assert_int_equal(n, 5);
    assert_string_equal(alerts[3].key, "large_transaction:usr_A:EUR:wdr_1");
    assert_string_equal(alerts[4].key, "rapid_pass_through:usr_A:EUR:top_2");
    /* Room for none. */
    n = SENTINEL_N;
    assert_int_equal(aml_scan(&cfg, "usr_A", hist, hist_n, T0, NULL, 0, &n), CF_OK);
    assert_int_equal(n, 0);
}

/* Hostile input -------------------------------------------------------------------------------- */

static void test_empty_history(void **state)
{
    (void)state;
    size_t n = SENTINEL_N;
    assert_int_equal(aml_scan(&cfg, "usr_A", NULL, 0, T0, alerts, ALERTS_MAX, &n), CF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(aml_scan(&cfg, "mer_B", hist, 0, 0, NULL, 0, &n), CF_OK);
}

static void test_bad_subject(void **state)
{
    (void)state;
    ev("top_1", T0, IN, AML_KIND_TOPUP, 100, "EUR", "");
    scan_fails("", CF_ERR_INVALID_FIELD);
    scan_fails("usr A", CF_ERR_INVALID_FIELD);
    scan_fails("usr:A", CF_ERR_INVALID_FIELD); /* would make keys ambiguous */
    scan_fails("usr_\xC3\xA9", CF_ERR_INVALID_FIELD);
    char longest[AML_PARTY_BYTES_MAX];
    memset(longest, 'x', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    size_t n = SENTINEL_N;
    assert_int_equal(aml_scan(&cfg, longest, hist, hist_n, T0, alerts, ALERTS_MAX, &n), CF_OK);
    char overlong[AML_PARTY_BYTES_MAX + 1];
    memset(overlong, 'x', sizeof(overlong) - 1);
    overlong[sizeof(overlong) - 1] = '\0';
    scan_fails(overlong, CF_ERR_INVALID_FIELD);
}

static void test_bad_events(void **state)
{
    (void)state;
    for (int i = 0;; i++) {
        hist_n = 0;
        ev("top_0", T0, IN, AML_KIND_TOPUP, 100, "EUR", "");
        struct aml_event *e = ev("top_1", T0 + 1, IN, AML_KIND_TOPUP, 100, "EUR", "usr_B");
        enum cf_err want = CF_ERR_INVALID_FIELD;
        switch (i) {
        case 0:
            e->id[0] = '\0';
            break;
        case 1:
            memset(e->id, 'a', sizeof(e->id));
            break; /* no NUL */
        case 2:
            snprintf(e->id, sizeof(e->id), "top:1");
            break;
        case 3:
            snprintf(e->id, sizeof(e->id), "top 1");
            break;
        case 4:
            memset(e->counterparty, 'a', sizeof(e->counterparty));
            break;
        case 5:
            snprintf(e->counterparty, sizeof(e->counterparty), "usr/B");
            break;
        case 6:
            e->currency[0] = '\0';
            break;
        case 7:
            snprintf(e->currency, sizeof(e->currency), "eur");
            break;
        case 8:
            memset(e->currency, 'E', sizeof(e->currency));
            break;
        case 9:
            snprintf(e->currency, sizeof(e->currency), "EU R");
            break;
        case 10:
            e->direction = 0;
            break;
        case 11:
            e->direction = 3;
            break;
        case 12:
            e->kind = 0;
            break;
        case 13:
            e->kind = AML_KIND_MAX + 1;
            break;
        case 14:
            e->time_s = -1;
            break;
        case 15:
            e->time_s = AML_TIME_S_MAX + 1;
            break;
        case 16:
            e->time_s = INT64_MIN;
            break;
        case 17:
            e->amount_minor = 0;
            want = CF_ERR_INVALID_AMOUNT;
            break;
        case 18:
            e->amount_minor = -5;
            want = CF_ERR_INVALID_AMOUNT;
            break;
        case 19:
            e->amount_minor = INT64_MIN;
            want = CF_ERR_INVALID_AMOUNT;
            break;
        case 20:
            snprintf(e->id, sizeof(e->id), "top_0");
            break; /* duplicate, another time */
        default:
            return;
        }
        scan_fails("usr_A", want);
    }
}

static void test_odd_but_valid_events(void **state)
{
    (void)state;
    /* Bytes after a NUL are ignored; a conversion's two legs share an id; times at the edges;
     * a currency that is no ISO code at all is simply not in the table. */
    struct aml_event *e = ev("top_1", T0, IN, AML_KIND_TOPUP, 1000000, "EUR", "");
    memcpy(e->id, "top_1\0junk:junk", 16);
    ev("cnv_1", T0 + 1, OUT, AML_KIND_CONVERSION, 1000, "EUR", "");
    ev("cnv_1", T0 + 1, IN, AML_KIND_CONVERSION, 1100, "USD", "");
    ev("top_2", 0, IN, AML_KIND_TOPUP, 100, "POINTS_X", "");
    ev("top_3", AML_TIME_S_MAX, IN, AML_KIND_TOPUP, INT64_MAX, "ZZZZZZZZZZZZ", "");
    assert_int_equal(scan_at(AML_TIME_S_MAX), 2);
    assert_string_equal(alerts[0].key, "large_transaction:usr_A:EUR:top_1");
    assert_string_equal(alerts[0].evidence[0].id, "top_1");
    /* 1970 to 2023 is a long sleep: the EUR top-up and conversion leg wake the account. */
    assert_string_equal(alerts[1].key, "dormant_reactivated:usr_A:EUR:top_1");
    totals_are(&alerts[1], 2, 1000000, 1000);
}

static void test_too_many_events(void **state)
{
    (void)state;
    char id[32];
    for (int i = 0; i <= AML_EVENTS_MAX; i++) {
        snprintf(id, sizeof(id), "pay_%d", i);
        ev(id, T0 + i, OUT, AML_KIND_PAYMENT, 100, "EUR", "mer_SHOP");
    }
    scan_fails("usr_A", CF_ERR_RANGE_TOO_LARGE);
    hist_n = AML_EVENTS_MAX;
    assert_int_equal(scan(), 0);
}

static void test_overflow_fails_whole_scan(void **state)
{
    (void)state;
    /* A large transaction that alone is fine, then a window whose sum leaves int64_t. */
    ev("top_1", T0, IN, AML_KIND_TOPUP, INT64_MAX - 10, "EUR", "");
    ev("wdr_1", T0 + 60, OUT, AML_KIND_WITHDRAWAL, INT64_MAX - 10, "EUR", "");
    ev("wdr_2", T0 + 120, OUT, AML_KIND_WITHDRAWAL, 11, "EUR", "");
    scan_fails("usr_A", CF_ERR_AMOUNT_OVERFLOW);
    /* Each scenario that adds, alone. */
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_LARGE);
    assert_int_equal(scan(), 2);
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_PASS_THROUGH);
    scan_fails("usr_A", CF_ERR_AMOUNT_OVERFLOW); /* the running out sum */
    hist[2].amount_minor = 10;
    hist[1].amount_minor = INT64_MAX - 10;
    hist[0].amount_minor = INT64_MAX - 10;
    scan_fails("usr_A", CF_ERR_AMOUNT_OVERFLOW); /* the alert's in + out */
    hist_n = 0;
    ev("pay_1", T0, OUT, AML_KIND_PAYMENT, 1, "EUR", "mer_SHOP");
    ev("top_1", T0 + 200 * DAY_S, IN, AML_KIND_TOPUP, INT64_MAX, "EUR", "");
    ev("top_2", T0 + 200 * DAY_S + 1, IN, AML_KIND_TOPUP, 1, "EUR", "");
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_DORMANT);
    scan_fails("usr_A", CF_ERR_AMOUNT_OVERFLOW);
    hist_n = 0;
    fan_history(10, 60, IN);
    hist[0].amount_minor = INT64_MAX;
    cfg.scenarios = AML_SCENARIO_BIT(AML_SCENARIO_FAN_IN);
    scan_fails("usr_A", CF_ERR_AMOUNT_OVERFLOW);
    /* In two currencies the same amounts are fine. */
    snprintf(hist[1].currency, sizeof(hist[1].currency), "USD");
    assert_int_equal(scan(), 0);
}

/* AML_EVENTS_MAX events in one day, every scenario busy: bounded work and exact totals. */
static void test_worst_case_history(void **state)
{
    (void)state;
    char id[32], party[32];
    for (int i = 0; i < AML_EVENTS_MAX; i++) {
        snprintf(id, sizeof(id), "op_%05d", i);
        snprintf(party, sizeof(party), "usr_%05d", i);
        ev(id, T0 + i * 8, (i % 2) ? OUT : IN, AML_KIND_SEND, 900000, "EUR", party);
    }
    size_t n = SENTINEL_N;
    static struct aml_alert many[1024];
    assert_int_equal(aml_scan(&cfg, "usr_A", hist, hist_n, T0 + DAY_S, many, 1024, &n), CF_OK);
    /* Per direction: structuring and fan each take the whole 22 h as one case. */
    size_t by[AML_SCENARIO_COUNT] = {0};
    for (size_t i = 0; i < n; i++)
        by[many[i].scenario]++;
    assert_int_equal(by[AML_SCENARIO_LARGE], 0);
    assert_int_equal(by[AML_SCENARIO_STRUCTURING], 2);
    assert_int_equal(by[AML_SCENARIO_FAN_IN], 1);
    assert_int_equal(by[AML_SCENARIO_FAN_OUT], 1);
    assert_int_equal(by[AML_SCENARIO_DORMANT], 0);
    assert_true(by[AML_SCENARIO_PASS_THROUGH] > 0);
    for (size_t i = 0; i < n; i++)
        if (many[i].scenario == AML_SCENARIO_FAN_IN) {
            assert_int_equal(many[i].count, AML_EVENTS_MAX / 2);
            assert_true(many[i].in_sum_minor == INT64_C(900000) * (AML_EVENTS_MAX / 2));
            assert_int_equal(many[i].evidence_n, AML_EVIDENCE_MAX);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_config_default, setup),
        cmocka_unit_test_setup(test_config_check_refuses, setup),
        cmocka_unit_test_setup(test_config_check_accepts_edges, setup),
        cmocka_unit_test_setup(test_large_fires_at_threshold, setup),
        cmocka_unit_test_setup(test_large_quiet, setup),
        cmocka_unit_test_setup(test_large_each_currency_alone, setup),
        cmocka_unit_test_setup(test_structuring_fires, setup),
        cmocka_unit_test_setup(test_structuring_same_second, setup),
        cmocka_unit_test_setup(test_structuring_band_edges, setup),
        cmocka_unit_test_setup(test_structuring_window_edge, setup),
        cmocka_unit_test_setup(test_structuring_quiet, setup),
        cmocka_unit_test_setup(test_structuring_episodes, setup),
        cmocka_unit_test_setup(test_structuring_evidence_cap, setup),
        cmocka_unit_test_setup(test_pass_through_fires, setup),
        cmocka_unit_test_setup(test_pass_through_split_outs, setup),
        cmocka_unit_test_setup(test_pass_through_edges, setup),
        cmocka_unit_test_setup(test_pass_through_quiet, setup),
        cmocka_unit_test_setup(test_pass_through_episodes, setup),
        cmocka_unit_test_setup(test_dormant_fires, setup),
        cmocka_unit_test_setup(test_dormant_small_wake_then_large, setup),
        cmocka_unit_test_setup(test_dormant_quiet, setup),
        cmocka_unit_test_setup(test_dormant_refund_is_no_activity, setup),
        cmocka_unit_test_setup(test_fan_in_fires, setup),
        cmocka_unit_test_setup(test_fan_in_quiet, setup),
        cmocka_unit_test_setup(test_fan_in_merchant_quiet, setup),
        cmocka_unit_test_setup(test_fan_out_fires, setup),
        cmocka_unit_test_setup(test_ordinary_history_is_quiet, setup),
        cmocka_unit_test_setup(test_keys_stable_as_history_grows, setup),
        cmocka_unit_test_setup(test_unsorted_input, setup),
        cmocka_unit_test_setup(test_alert_order_and_cap, setup),
        cmocka_unit_test_setup(test_empty_history, setup),
        cmocka_unit_test_setup(test_bad_subject, setup),
        cmocka_unit_test_setup(test_bad_events, setup),
        cmocka_unit_test_setup(test_odd_but_valid_events, setup),
        cmocka_unit_test_setup(test_too_many_events, setup),
        cmocka_unit_test_setup(test_overflow_fails_whole_scan, setup),
        cmocka_unit_test_setup(test_worst_case_history, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
