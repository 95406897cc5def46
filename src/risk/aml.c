/* aml.c - anti-money-laundering scenarios over one subject's history; see aml.h.
 *
 * How: the events are never moved. An index `ord` sorts them by (time_s, sub_us, id,
 * direction); a
 * position ("pos") is an index into `ord`. A second index `grp` lists the positions grouped by
 * currency, time order kept inside each group (a stable sort), so each scenario walks one
 * currency's events as a contiguous view. Counterparties get dense numbers (`party`) so the fan
 * scenarios count distinct parties with an array instead of string compares.
 *
 * The scan runs twice over the same deterministic walk. Pass 1 writes nothing: it adds up every
 * sum (so an overflow fails the scan before any output is touched) and counts alerts by their
 * last triggering position. If more alerts exist than the caller can take, the cut keeping the
 * newest ones is chosen from those counts. Pass 2 repeats the walk, cannot fail, and writes the
 * selected alerts.
 */
#include "risk/aml.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money/currency.h"
#include "money/money.h"

#define NONE UINT32_MAX

/* Defaults: see aml_config_default in aml.h and docs/RISK.md. */
#define DEFAULT_LARGE_MINOR INT64_C(1000000)           /* 10,000.00 at scale 2 */
#define DEFAULT_PASS_THROUGH_MIN_MINOR INT64_C(100000) /* 1,000.00 */
#define DEFAULT_DORMANT_MIN_MINOR INT64_C(100000)      /* 1,000.00 */
#define DEFAULT_STRUCTURING_BAND_BPS 8000
#define DEFAULT_STRUCTURING_COUNT_MIN 3
#define DEFAULT_STRUCTURING_WINDOW_S (24LL * 3600)
#define DEFAULT_PASS_THROUGH_WINDOW_S (6LL * 3600)
#define DEFAULT_PASS_THROUGH_OUT_BPS 9000
#define DEFAULT_DORMANT_S (180LL * 24 * 3600)
#define DEFAULT_DORMANT_WAKE_WINDOW_S (7LL * 24 * 3600)
#define DEFAULT_FAN_COUNT_MIN 10
#define DEFAULT_FAN_WINDOW_S (24LL * 3600)

static const char *const scenario_names[AML_SCENARIO_COUNT] = {
    "large_transaction",   "structuring", "rapid_pass_through",
    "dormant_reactivated", "fan_in",      "fan_out",
};

static const char *const kind_names[AML_KIND_MAX + 1] = {
    "", "topup", "withdrawal", "send", "payment", "refund", "payout", "conversion",
};

const char *aml_scenario_name(enum aml_scenario scenario)
{
    CF_ASSERT((unsigned)scenario < AML_SCENARIO_COUNT);
    return scenario_names[scenario];
}

const char *aml_kind_name(enum aml_kind kind)
{
    CF_ASSERT(kind >= 1 && kind <= AML_KIND_MAX);
    return kind_names[kind];
}

static const char *direction_name(uint8_t direction)
{
    CF_ASSERT(direction == AML_DIRECTION_IN || direction == AML_DIRECTION_OUT);
    return direction == AML_DIRECTION_IN ? "in" : "out";
}

/* Text checks ---------------------------------------------------------------------------------- */

/* The length of the text in a `bytes`-long array: up to its NUL, or `bytes` when it has none. */
static size_t text_len(const char *text, size_t bytes)
{
    size_t len = 0;
    while (len < bytes && text[len] != '\0')
        len++;
    return len;
}

static bool id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static bool code_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* An id in a `bytes`-long array (or a string, read up to `bytes`): NUL-terminated within it,
 * 1..bytes-1 id characters (0 if may_be_empty). */
static bool id_ok(const char *text, size_t bytes, bool may_be_empty)
{
    size_t len = text_len(text, bytes);
    if (len == bytes || (len == 0 && !may_be_empty))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!id_char(text[i]))
            return false;
    return true;
}

static bool code_ok(const char *code)
{
    size_t len = text_len(code, MONEY_CODE_BYTES_MAX + 1);
    if (len == 0 || len > MONEY_CODE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!code_char(code[i]))
            return false;
    return true;
}

/* Configuration -------------------------------------------------------------------------------- */

static void rule_set(struct aml_currency_rule *r, const char *code)
{
    memset(r, 0, sizeof(*r));
    CF_ASSERT(strlen(code) <= MONEY_CODE_BYTES_MAX);
    memcpy(r->currency, code, strlen(code));
    r->large_minor = DEFAULT_LARGE_MINOR;
    r->pass_through_min_minor = DEFAULT_PASS_THROUGH_MIN_MINOR;
    r->dormant_min_minor = DEFAULT_DORMANT_MIN_MINOR;
}

void aml_config_default(struct aml_config *out)
{
    CF_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    out->scenarios = AML_SCENARIOS_ALL;
    rule_set(&out->currencies[0], "EUR");
    rule_set(&out->currencies[1], "USD");
    rule_set(&out->currencies[2], "GBP");
    out->currencies_n = 3;
    out->large_kinds = AML_KINDS_ALL & ~AML_KIND_BIT(AML_KIND_CONVERSION);
    out->structuring_band_bps = DEFAULT_STRUCTURING_BAND_BPS;
    out->structuring_count_min = DEFAULT_STRUCTURING_COUNT_MIN;
    out->structuring_window_s = DEFAULT_STRUCTURING_WINDOW_S;
    out->structuring_kinds = AML_KIND_BIT(AML_KIND_TOPUP) | AML_KIND_BIT(AML_KIND_WITHDRAWAL) |
                             AML_KIND_BIT(AML_KIND_SEND) | AML_KIND_BIT(AML_KIND_PAYMENT) |
                             AML_KIND_BIT(AML_KIND_PAYOUT);
    out->pass_through_window_s = DEFAULT_PASS_THROUGH_WINDOW_S;
    out->pass_through_out_bps = DEFAULT_PASS_THROUGH_OUT_BPS;
    out->pass_through_in_kinds = AML_KIND_BIT(AML_KIND_TOPUP) | AML_KIND_BIT(AML_KIND_SEND);
    out->pass_through_out_kinds = AML_KIND_BIT(AML_KIND_WITHDRAWAL) | AML_KIND_BIT(AML_KIND_SEND);
    out->dormant_s = DEFAULT_DORMANT_S;
    out->dormant_wake_window_s = DEFAULT_DORMANT_WAKE_WINDOW_S;
    out->dormant_kinds = AML_KINDS_ALL & ~AML_KIND_BIT(AML_KIND_REFUND);
    out->fan_in_count_min = DEFAULT_FAN_COUNT_MIN;
    out->fan_in_window_s = DEFAULT_FAN_WINDOW_S;
    out->fan_in_kinds = AML_KIND_BIT(AML_KIND_SEND);
    out->fan_out_count_min = DEFAULT_FAN_COUNT_MIN;
    out->fan_out_window_s = DEFAULT_FAN_WINDOW_S;
    out->fan_out_kinds = AML_KIND_BIT(AML_KIND_SEND);
    CF_ASSERT(aml_config_check(out) == CF_OK);
}

static bool in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

static bool kinds_ok(uint32_t kinds) { return (kinds & ~AML_KINDS_ALL) == 0; }

static bool count_ok(uint32_t count) { return count >= 2 && count <= AML_COUNT_MIN_MAX; }

static bool window_ok(int64_t window_s) { return in_range(window_s, 1, AML_WINDOW_S_MAX); }

static enum cf_err config_check_currencies(const struct aml_config *cfg)
{
    CF_ASSERT(cfg != NULL);
    if (cfg->currencies_n > AML_CURRENCIES_MAX)
        return CF_ERR_CONFIG;
    for (size_t i = 0; i < cfg->currencies_n; i++) {
        const struct aml_currency_rule *r = &cfg->currencies[i];
        if (!code_ok(r->currency) || currency_find(r->currency, strlen(r->currency)) == NULL)
            return CF_ERR_CONFIG;
        if (r->large_minor < 0 || r->pass_through_min_minor < 0 || r->dormant_min_minor < 0)
            return CF_ERR_CONFIG;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->currencies[j].currency, r->currency) == 0)
                return CF_ERR_CONFIG;
    }
    return CF_OK;
}

enum cf_err aml_config_check(const struct aml_config *cfg)
{
    CF_ASSERT(cfg != NULL);
    if ((cfg->scenarios & ~AML_SCENARIOS_ALL) != 0)
        return CF_ERR_CONFIG;
    if (!kinds_ok(cfg->large_kinds) || !kinds_ok(cfg->structuring_kinds) ||
        !kinds_ok(cfg->pass_through_in_kinds) || !kinds_ok(cfg->pass_through_out_kinds) ||
        !kinds_ok(cfg->dormant_kinds) || !kinds_ok(cfg->fan_in_kinds) ||
        !kinds_ok(cfg->fan_out_kinds))
        return CF_ERR_CONFIG;
    if (!in_range(cfg->structuring_band_bps, 1, AML_BPS_MAX - 1) ||
        !count_ok(cfg->structuring_count_min) || !window_ok(cfg->structuring_window_s))
        return CF_ERR_CONFIG;
    if (!window_ok(cfg->pass_through_window_s) ||
        !in_range(cfg->pass_through_out_bps, 1, AML_BPS_MAX))
        return CF_ERR_CONFIG;
    if (!in_range(cfg->dormant_s, 1, AML_DORMANT_S_MAX) || !window_ok(cfg->dormant_wake_window_s) ||
        cfg->dormant_wake_window_s > cfg->dormant_s)
        return CF_ERR_CONFIG;
    if (!count_ok(cfg->fan_in_count_min) || !window_ok(cfg->fan_in_window_s) ||
        !count_ok(cfg->fan_out_count_min) || !window_ok(cfg->fan_out_window_s))
        return CF_ERR_CONFIG;
    return config_check_currencies(cfg);
}

int64_t aml_config_lookback_s(const struct aml_config *cfg)
{
    CF_ASSERT(cfg != NULL && aml_config_check(cfg) == CF_OK);
    const struct {
        enum aml_scenario scenario;
        int64_t window_s;
    } windows[] = {
        {AML_SCENARIO_STRUCTURING, cfg->structuring_window_s},
        {AML_SCENARIO_PASS_THROUGH, cfg->pass_through_window_s},
        {AML_SCENARIO_DORMANT, cfg->dormant_wake_window_s},
        {AML_SCENARIO_FAN_IN, cfg->fan_in_window_s},
        {AML_SCENARIO_FAN_OUT, cfg->fan_out_window_s},
    };
    int64_t lookback_s = 0;
    for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++)
        if ((cfg->scenarios & AML_SCENARIO_BIT(windows[i].scenario)) != 0 &&
            windows[i].window_s > lookback_s)
            lookback_s = windows[i].window_s;
    CF_ASSERT(lookback_s >= 0 && lookback_s <= AML_WINDOW_S_MAX);
    return lookback_s;
}

static const struct aml_currency_rule *rule_find(const struct aml_config *cfg, const char *code)
{
    for (size_t i = 0; i < cfg->currencies_n; i++)
        if (strcmp(cfg->currencies[i].currency, code) == 0)
            return &cfg->currencies[i];
    return NULL;
}

/* The scan's state ----------------------------------------------------------------------------- */

struct scan {
    const struct aml_config *cfg;
    const char *subject;
    const struct aml_event *ev;
    size_t n;
    int64_t now_s;
    /* Scratch, n entries each (one allocation). */
    uint32_t *ord;   /* pos -> event index, sorted by (time_s, sub_us, id, direction) */
    uint32_t *tmp;   /* merge buffer */
    uint32_t *grp;   /* positions grouped by currency, time order within a group */
    uint32_t *party; /* pos -> dense counterparty number */
    uint32_t *cnt;   /* counterparty number -> its events in the current fan window */
    uint32_t *ends;  /* pos -> alerts whose last triggering event is there (pass 1) */
    uint32_t *cover; /* pos -> the dormant wake whose window holds it, or NONE */
    uint32_t *prev;  /* wake pos -> the activity before the gap */
    /* The pass. */
    bool writing;
    size_t found;
    bool take_all;
    size_t cut_pos;  /* when not take_all: keep alerts ending after cut_pos ... */
    size_t cut_take; /* ... and the first cut_take ending at it */
    size_t cut_seen;
    struct aml_alert *out;
    size_t max;
    size_t written;
    /* The alert being built. */
    struct aml_alert cur;
    const char *cur_currency;
    size_t cur_last;
};

static const struct aml_event *at(const struct scan *s, size_t pos) { return &s->ev[s->ord[pos]]; }

static bool has_kind(uint32_t kinds, uint8_t kind) { return (kinds & AML_KIND_BIT(kind)) != 0; }

/* Sorting -------------------------------------------------------------------------------------- */

typedef int (*scan_cmp_fn)(const struct scan *s, uint32_t a, uint32_t b);

/* Bottom-up merge sort of a[0..n): stable, O(n log n), no recursion. */
static void sort_stable(const struct scan *s, uint32_t *a, size_t n, scan_cmp_fn cmp)
{
    CF_ASSERT(n <= s->n && n <= AML_EVENTS_MAX);
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                s->tmp[k++] = cmp(s, a[j], a[i]) < 0 ? a[j++] : a[i++];
            while (i < mid)
                s->tmp[k++] = a[i++];
            while (j < hi)
                s->tmp[k++] = a[j++];
        }
        memcpy(a, s->tmp, n * sizeof(*a));
    }
    for (size_t i = 1; i < n; i++)
        CF_ASSERT(cmp(s, a[i - 1], a[i]) <= 0);
}

/* On event indices. */
static int cmp_time(const struct scan *s, uint32_t a, uint32_t b)
{
    const struct aml_event *x = &s->ev[a], *y = &s->ev[b];
    if (x->time_s != y->time_s)
        return x->time_s < y->time_s ? -1 : 1;
    if (x->sub_us != y->sub_us) /* events of one second as they happened */
        return x->sub_us < y->sub_us ? -1 : 1;
    int c = strcmp(x->id, y->id);
    if (c != 0)
        return c;
    return (int)x->direction - (int)y->direction;
}

/* On positions. */
static int cmp_id(const struct scan *s, uint32_t a, uint32_t b)
{
    const struct aml_event *x = at(s, a), *y = at(s, b);
    int c = strcmp(x->id, y->id);
    return c != 0 ? c : (int)x->direction - (int)y->direction;
}

static int cmp_party(const struct scan *s, uint32_t a, uint32_t b)
{
    return strcmp(at(s, a)->counterparty, at(s, b)->counterparty);
}

static int cmp_currency(const struct scan *s, uint32_t a, uint32_t b)
{
    return strcmp(at(s, a)->currency, at(s, b)->currency);
}

static void identity_fill(uint32_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (uint32_t)i;
}

/* Builds ord, party and grp; CF_ERR_INVALID_FIELD when two events share id and direction. */
static enum cf_err scan_index(struct scan *s)
{
    CF_ASSERT(s->n > 0 && s->n <= AML_EVENTS_MAX);
    identity_fill(s->ord, s->n);
    sort_stable(s, s->ord, s->n, cmp_time);
    identity_fill(s->grp, s->n);
    sort_stable(s, s->grp, s->n, cmp_id);
    for (size_t i = 1; i < s->n; i++)
        if (cmp_id(s, s->grp[i - 1], s->grp[i]) == 0)
            return CF_ERR_INVALID_FIELD;
    identity_fill(s->grp, s->n);
    sort_stable(s, s->grp, s->n, cmp_party);
    uint32_t number = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (i > 0 && cmp_party(s, s->grp[i - 1], s->grp[i]) != 0)
            number++;
        s->party[s->grp[i]] = number;
    }
    CF_ASSERT(number < s->n);
    identity_fill(s->grp, s->n);
    sort_stable(s, s->grp, s->n, cmp_currency);
    return CF_OK;
}

/* Building alerts ------------------------------------------------------------------------------ */

static void alert_begin(struct scan *s, enum aml_scenario scenario, const char *currency,
                        size_t anchor_pos, int64_t window_s)
{
    CF_ASSERT(anchor_pos < s->n && window_s >= 0 && window_s <= AML_WINDOW_S_MAX);
    struct aml_alert *a = &s->cur;
    const struct aml_event *anchor = at(s, anchor_pos);
    if (s->writing)
        memset(a, 0, sizeof(*a)); /* no bytes of an earlier alert reach the caller */
    a->scenario = scenario;
    a->name = aml_scenario_name(scenario);
    a->window_start_s = anchor->time_s;
    a->window_end_s = anchor->time_s + window_s;
    a->open = a->window_end_s > s->now_s;
    a->first_s = anchor->time_s;
    a->last_s = anchor->time_s;
    a->count = 0;
    a->sum_minor = a->in_sum_minor = a->out_sum_minor = 0;
    a->evidence_n = 0;
    a->detail[0] = '\0';
    s->cur_currency = currency;
    s->cur_last = 0;
    if (!s->writing)
        return;
    snprintf(a->subject, sizeof(a->subject), "%s", s->subject);
    snprintf(a->currency, sizeof(a->currency), "%s", currency);
    snprintf(a->anchor_id, sizeof(a->anchor_id), "%s", anchor->id);
    int len = snprintf(a->key, sizeof(a->key), "%s:%s:%s:%s", a->name, a->subject, a->currency,
                       a->anchor_id);
    CF_ASSERT(len > 0 && (size_t)len < sizeof(a->key));
}

/* Adds the event at pos (later in time order than any added before) to the alert's totals and,
 * while there is room, to its evidence. */
static enum cf_err alert_add(struct scan *s, size_t pos)
{
    struct aml_alert *a = &s->cur;
    const struct aml_event *e = at(s, pos);
    CF_ASSERT(a->count == 0 || pos > s->cur_last);
    CF_ASSERT(strcmp(e->currency, s->cur_currency) == 0);
    bool in = e->direction == AML_DIRECTION_IN;
    int64_t side = 0, sum = 0;
    enum cf_err err = money_add(in ? a->in_sum_minor : a->out_sum_minor, e->amount_minor, &side);
    if (err == CF_OK)
        err = money_add(a->sum_minor, e->amount_minor, &sum);
    if (err != CF_OK)
        return err;
    *(in ? &a->in_sum_minor : &a->out_sum_minor) = side;
    a->sum_minor = sum;
    if (a->count == 0)
        a->first_s = e->time_s;
    a->last_s = e->time_s;
    a->count++;
    s->cur_last = pos;
    if (s->writing && a->evidence_n < AML_EVIDENCE_MAX) {
        struct aml_evidence *ev = &a->evidence[a->evidence_n++];
        memset(ev, 0, sizeof(*ev));
        snprintf(ev->id, sizeof(ev->id), "%s", e->id);
        snprintf(ev->counterparty, sizeof(ev->counterparty), "%s", e->counterparty);
        ev->time_s = e->time_s;
        ev->amount_minor = e->amount_minor;
        ev->direction = e->direction;
        ev->kind = e->kind;
    }
    CF_ASSERT(a->sum_minor > 0 && a->evidence_n <= a->count);
    return CF_OK;
}

/* Closes the alert: pass 1 counts it, pass 2 writes it out if it was selected. */
static void alert_end(struct scan *s)
{
    CF_ASSERT(s->cur.count > 0);
    s->found++;
    if (!s->writing) {
        s->ends[s->cur_last]++;
        return;
    }
    bool take = s->take_all || s->cur_last > s->cut_pos ||
                (s->cur_last == s->cut_pos && s->cut_seen++ < s->cut_take);
    if (!take)
        return;
    CF_ASSERT(s->written < s->max && s->cur.detail[0] != '\0');
    s->out[s->written++] = s->cur;
}

/* Large transactions --------------------------------------------------------------------------- */

static enum cf_err large_group(struct scan *s, const struct aml_currency_rule *r, const uint32_t *v,
                               size_t m, uint8_t direction)
{
    CF_ASSERT(m > 0 && r->large_minor > 0);
    size_t found_before = s->found;
    for (size_t k = 0; k < m; k++) {
        const struct aml_event *e = at(s, v[k]);
        if (e->direction != direction || !has_kind(s->cfg->large_kinds, e->kind) ||
            e->amount_minor < r->large_minor)
            continue;
        alert_begin(s, AML_SCENARIO_LARGE, r->currency, v[k], 0);
        enum cf_err err = alert_add(s, v[k]);
        if (err != CF_OK)
            return err;
        if (s->writing) {
            int len = snprintf(s->cur.detail, sizeof(s->cur.detail),
                               "direction=%s kind=%s amount_minor=%" PRId64
                               " threshold_minor=%" PRId64 " currency=%s",
                               direction_name(e->direction), kind_names[e->kind], e->amount_minor,
                               r->large_minor, r->currency);
            CF_ASSERT(len > 0 && (size_t)len < sizeof(s->cur.detail));
        }
        alert_end(s);
    }
    CF_ASSERT(s->found - found_before <= m);
    return CF_OK;
}

/* Windowed episodes: structuring and the fans -------------------------------------------------- */

struct episode {
    enum aml_scenario scenario;
    const struct aml_currency_rule *rule; /* structuring: the threshold */
    const char *currency;
    uint8_t direction;
    uint32_t kinds;
    uint32_t count_min;
    int64_t window_s;
    bool distinct; /* fans: the measure is distinct counterparties, not events */
};

/* In [band, large): amount * 10000 >= large * band_bps, exactly. */
static bool in_band(int64_t amount_minor, int64_t large_minor, int64_t band_bps)
{
    return amount_minor < large_minor &&
           (__int128)amount_minor * AML_BPS_MAX >= (__int128)large_minor * band_bps;
}

static bool episode_match(const struct scan *s, const struct episode *ep, size_t pos)
{
    const struct aml_event *e = at(s, pos);
    if (e->direction != ep->direction || !has_kind(ep->kinds, e->kind))
        return false;
    if (ep->distinct)
        return e->counterparty[0] != '\0';
    return in_band(e->amount_minor, ep->rule->large_minor, s->cfg->structuring_band_bps);
}

static void window_push(struct scan *s, const struct episode *ep, size_t pos, uint32_t *measure)
{
    if (!ep->distinct || s->cnt[s->party[pos]]++ == 0)
        (*measure)++;
    CF_ASSERT(*measure <= s->n);
}

static void window_pop(struct scan *s, const struct episode *ep, size_t pos, uint32_t *measure)
{
    CF_ASSERT(*measure > 0);
    if (!ep->distinct) {
        (*measure)--;
        return;
    }
    CF_ASSERT(s->cnt[s->party[pos]] > 0);
    if (--s->cnt[s->party[pos]] == 0)
        (*measure)--;
}

static void episode_detail(struct scan *s, const struct episode *ep, uint32_t measure,
                           int64_t lo_minor, int64_t hi_minor)
{
    struct aml_alert *a = &s->cur;
    int len;
    if (ep->distinct)
        len = snprintf(a->detail, sizeof(a->detail),
                       "direction=%s parties=%" PRIu32 " count=%" PRIu32 " parties_min=%" PRIu32
                       " window_s=%" PRId64 " currency=%s",
                       direction_name(ep->direction), measure, a->count, ep->count_min,
                       ep->window_s, ep->currency);
    else
        len = snprintf(a->detail, sizeof(a->detail),
                       "direction=%s count=%" PRIu32 " min_minor=%" PRId64 " max_minor=%" PRId64
                       " threshold_minor=%" PRId64 " band_bps=%" PRId64 " count_min=%" PRIu32
                       " window_s=%" PRId64 " currency=%s",
                       direction_name(ep->direction), a->count, lo_minor, hi_minor,
                       ep->rule->large_minor, s->cfg->structuring_band_bps, ep->count_min,
                       ep->window_s, ep->currency);
    CF_ASSERT(len > 0 && (size_t)len < sizeof(a->detail));
}

/* One alert over the matching events of v[a..hi). */
static enum cf_err episode_emit(struct scan *s, const struct episode *ep, const uint32_t *v,
                                size_t a, size_t hi, uint32_t measure)
{
    CF_ASSERT(a < hi && episode_match(s, ep, v[a]));
    alert_begin(s, ep->scenario, ep->currency, v[a], ep->window_s);
    int64_t lo_minor = INT64_MAX, hi_minor = 0;
    for (size_t k = a; k < hi; k++) {
        if (!episode_match(s, ep, v[k]))
            continue;
        enum cf_err err = alert_add(s, v[k]);
        if (err != CF_OK)
            return err;
        int64_t amount_minor = at(s, v[k])->amount_minor;
        lo_minor = amount_minor < lo_minor ? amount_minor : lo_minor;
        hi_minor = amount_minor > hi_minor ? amount_minor : hi_minor;
    }
    CF_ASSERT(s->cur.count >= measure && measure >= ep->count_min);
    if (s->writing)
        episode_detail(s, ep, measure, lo_minor, hi_minor);
    alert_end(s);
    return CF_OK;
}

/* Greedy windows over one currency's view v[0..m) (see aml_scan's "Patterns and keys"). */
static enum cf_err episode_scan(struct scan *s, const struct episode *ep, const uint32_t *v,
                                size_t m)
{
    CF_ASSERT(ep->count_min >= 2 && ep->window_s > 0);
    size_t hi = 0;
    uint32_t measure = 0;
    for (size_t a = 0; a < m;) {
        if (!episode_match(s, ep, v[a])) {
            a++;
            continue;
        }
        if (hi < a) {
            CF_ASSERT(measure == 0);
            hi = a;
        }
        int64_t end_s = at(s, v[a])->time_s + ep->window_s;
        for (; hi < m && at(s, v[hi])->time_s < end_s; hi++)
            if (episode_match(s, ep, v[hi]))
                window_push(s, ep, v[hi], &measure);
        if (measure < ep->count_min) {
            window_pop(s, ep, v[a], &measure);
            a++;
            continue;
        }
        enum cf_err err = episode_emit(s, ep, v, a, hi, measure);
        if (err != CF_OK)
            return err;
        for (; a < hi; a++)
            if (episode_match(s, ep, v[a]))
                window_pop(s, ep, v[a], &measure);
    }
    CF_ASSERT(measure == 0);
    return CF_OK;
}

static enum cf_err structuring_group(struct scan *s, const struct aml_currency_rule *r,
                                     const uint32_t *v, size_t m, uint8_t direction)
{
    const struct episode ep = {
        .scenario = AML_SCENARIO_STRUCTURING,
        .rule = r,
        .currency = r->currency,
        .direction = direction,
        .kinds = s->cfg->structuring_kinds,
        .count_min = s->cfg->structuring_count_min,
        .window_s = s->cfg->structuring_window_s,
        .distinct = false,
    };
    return episode_scan(s, &ep, v, m);
}

static enum cf_err fan_group(struct scan *s, const char *currency, const uint32_t *v, size_t m,
                             uint8_t direction)
{
    const struct aml_config *c = s->cfg;
    bool in = direction == AML_DIRECTION_IN;
    const struct episode ep = {
        .scenario = in ? AML_SCENARIO_FAN_IN : AML_SCENARIO_FAN_OUT,
        .rule = NULL,
        .currency = currency,
        .direction = direction,
        .kinds = in ? c->fan_in_kinds : c->fan_out_kinds,
        .count_min = in ? c->fan_in_count_min : c->fan_out_count_min,
        .window_s = in ? c->fan_in_window_s : c->fan_out_window_s,
        .distinct = true,
    };
    return episode_scan(s, &ep, v, m);
}

/* Rapid pass-through --------------------------------------------------------------------------- */

static bool pt_anchor(const struct aml_config *c, const struct aml_currency_rule *r,
                      const struct aml_event *e)
{
    return e->direction == AML_DIRECTION_IN && has_kind(c->pass_through_in_kinds, e->kind) &&
           e->amount_minor >= r->pass_through_min_minor;
}

static bool pt_out(const struct aml_config *c, const struct aml_event *e)
{
    return e->direction == AML_DIRECTION_OUT && has_kind(c->pass_through_out_kinds, e->kind);
}

/* out_minor reaches the configured share of in_minor, exactly. */
static bool pt_reached(const struct aml_config *c, int64_t out_minor, int64_t in_minor)
{
    return (__int128)out_minor * AML_BPS_MAX >= (__int128)in_minor * c->pass_through_out_bps;
}

/* One alert: the anchor v[a] and the outs of v[lo..hi). */
static enum cf_err pt_emit(struct scan *s, const struct aml_currency_rule *r, const uint32_t *v,
                           size_t a, size_t lo, size_t hi)
{
    const struct aml_config *c = s->cfg;
    const struct aml_event *in = at(s, v[a]);
    alert_begin(s, AML_SCENARIO_PASS_THROUGH, r->currency, v[a], c->pass_through_window_s);
    int64_t delay_s = -1;
    for (size_t k = lo; k < hi; k++) {
        if (k != a && !pt_out(c, at(s, v[k])))
            continue;
        enum cf_err err = alert_add(s, v[k]);
        if (err != CF_OK)
            return err;
        if (delay_s < 0 && pt_reached(c, s->cur.out_sum_minor, in->amount_minor))
            delay_s = at(s, v[k])->time_s - in->time_s;
    }
    CF_ASSERT(delay_s >= 0 && delay_s < c->pass_through_window_s);
    if (s->writing) {
        int len = snprintf(s->cur.detail, sizeof(s->cur.detail),
                           "in_minor=%" PRId64 " out_minor=%" PRId64 " outs=%" PRIu32
                           " delay_s=%" PRId64 " out_bps=%" PRId64 " in_min_minor=%" PRId64
                           " window_s=%" PRId64 " currency=%s",
                           in->amount_minor, s->cur.out_sum_minor, s->cur.count - 1, delay_s,
                           c->pass_through_out_bps, r->pass_through_min_minor,
                           c->pass_through_window_s, r->currency);
        CF_ASSERT(len > 0 && (size_t)len < sizeof(s->cur.detail));
    }
    alert_end(s);
    return CF_OK;
}

/* Anchors are incoming movements >= the minimum; the window [t, t + W) holds the outs with
 * time >= t (same-second outs listed before the anchor included) in a running sum. */
static enum cf_err pass_through_group(struct scan *s, const struct aml_currency_rule *r,
                                      const uint32_t *v, size_t m)
{
    const struct aml_config *c = s->cfg;
    CF_ASSERT(m > 0 && r->pass_through_min_minor > 0);
    size_t lo = 0, hi = 0;
    int64_t out_minor = 0;
    for (size_t a = 0; a < m;) {
        const struct aml_event *in = at(s, v[a]);
        if (!pt_anchor(c, r, in)) {
            a++;
            continue;
        }
        for (; lo < m && at(s, v[lo])->time_s < in->time_s; lo++) {
            if (lo >= hi || !pt_out(c, at(s, v[lo])))
                continue;
            enum cf_err leaves = money_sub(out_minor, at(s, v[lo])->amount_minor, &out_minor);
            CF_ASSERT(leaves == CF_OK); /* it was added, so the smaller sum fits */
        }
        hi = hi < lo ? lo : hi;
        for (; hi < m && at(s, v[hi])->time_s < in->time_s + c->pass_through_window_s; hi++) {
            if (!pt_out(c, at(s, v[hi])))
                continue;
            enum cf_err err = money_add(out_minor, at(s, v[hi])->amount_minor, &out_minor);
            if (err != CF_OK)
                return err;
        }
        CF_ASSERT(lo <= a && a < hi && out_minor >= 0);
        if (!pt_reached(c, out_minor, in->amount_minor)) {
            a++;
            continue;
        }
        enum cf_err err = pt_emit(s, r, v, a, lo, hi);
        if (err != CF_OK)
            return err;
        a = lo = hi;
        out_minor = 0;
    }
    return CF_OK;
}

/* Dormant accounts reactivated ----------------------------------------------------------------- */

/* Marks, over all currencies, each wake (the first activity after a gap >= dormant_s) and the
 * activity inside its wake window. Wake windows never overlap: wake_window_s <= dormant_s. */
static void dormant_mark(struct scan *s)
{
    const struct aml_config *c = s->cfg;
    CF_ASSERT(c->dormant_wake_window_s <= c->dormant_s);
    size_t last = SIZE_MAX, wake = SIZE_MAX;
    for (size_t pos = 0; pos < s->n; pos++) {
        const struct aml_event *e = at(s, pos);
        s->cover[pos] = NONE;
        s->prev[pos] = NONE;
        if (!has_kind(c->dormant_kinds, e->kind))
            continue;
        if (last != SIZE_MAX && e->time_s - at(s, last)->time_s >= c->dormant_s) {
            CF_ASSERT(wake == SIZE_MAX ||
                      e->time_s >= at(s, wake)->time_s + c->dormant_wake_window_s);
            wake = pos;
            s->prev[pos] = (uint32_t)last;
        }
        if (wake != SIZE_MAX && e->time_s < at(s, wake)->time_s + c->dormant_wake_window_s)
            s->cover[pos] = (uint32_t)wake;
        last = pos;
    }
}

static enum cf_err dormant_emit(struct scan *s, const struct aml_currency_rule *r,
                                const uint32_t *v, size_t i, size_t j, uint32_t wake)
{
    const struct aml_config *c = s->cfg;
    CF_ASSERT(i < j && s->prev[wake] != NONE && s->prev[wake] < wake);
    alert_begin(s, AML_SCENARIO_DORMANT, r->currency, wake, c->dormant_wake_window_s);
    for (size_t k = i; k < j; k++) {
        if (s->cover[v[k]] != wake)
            continue;
        enum cf_err err = alert_add(s, v[k]);
        if (err != CF_OK)
            return err;
    }
    if (s->writing) {
        int64_t last_s = at(s, s->prev[wake])->time_s;
        int len = snprintf(s->cur.detail, sizeof(s->cur.detail),
                           "idle_s=%" PRId64 " dormant_s=%" PRId64 " last_active_s=%" PRId64
                           " count=%" PRIu32 " min_minor=%" PRId64 " wake_window_s=%" PRId64
                           " currency=%s",
                           at(s, wake)->time_s - last_s, c->dormant_s, last_s, s->cur.count,
                           r->dormant_min_minor, c->dormant_wake_window_s, r->currency);
        CF_ASSERT(len > 0 && (size_t)len < sizeof(s->cur.detail));
    }
    alert_end(s);
    return CF_OK;
}

static enum cf_err dormant_group(struct scan *s, const struct aml_currency_rule *r,
                                 const uint32_t *v, size_t m)
{
    for (size_t i = 0; i < m;) {
        uint32_t wake = s->cover[v[i]];
        if (wake == NONE) {
            i++;
            continue;
        }
        CF_ASSERT(s->prev[wake] != NONE);
        int64_t end_s = at(s, wake)->time_s + s->cfg->dormant_wake_window_s;
        int64_t sum_minor = 0;
        size_t j = i;
        for (; j < m && at(s, v[j])->time_s < end_s; j++) {
            if (s->cover[v[j]] != wake) {
                CF_ASSERT(s->cover[v[j]] == NONE);
                continue;
            }
            enum cf_err err = money_add(sum_minor, at(s, v[j])->amount_minor, &sum_minor);
            if (err != CF_OK)
                return err;
        }
        if (sum_minor >= r->dormant_min_minor) {
            enum cf_err err = dormant_emit(s, r, v, i, j, wake);
            if (err != CF_OK)
                return err;
        }
        i = j;
    }
    return CF_OK;
}

/* The walk ------------------------------------------------------------------------------------- */

/* Runs one scenario over one currency's view v[0..m). */
static enum cf_err group_run(struct scan *s, enum aml_scenario scenario, const uint32_t *v,
                             size_t m)
{
    CF_ASSERT(m > 0 && m <= s->n);
    const char *code = at(s, v[0])->currency;
    const struct aml_currency_rule *r = rule_find(s->cfg, code);
    enum cf_err err = CF_OK;
    switch (scenario) {
    case AML_SCENARIO_LARGE:
        if (r != NULL && r->large_minor > 0) {
            err = large_group(s, r, v, m, AML_DIRECTION_IN);
            if (err == CF_OK)
                err = large_group(s, r, v, m, AML_DIRECTION_OUT);
        }
        return err;
    case AML_SCENARIO_STRUCTURING:
        if (r != NULL && r->large_minor > 0) {
            err = structuring_group(s, r, v, m, AML_DIRECTION_IN);
            if (err == CF_OK)
                err = structuring_group(s, r, v, m, AML_DIRECTION_OUT);
        }
        return err;
    case AML_SCENARIO_PASS_THROUGH:
        return r != NULL && r->pass_through_min_minor > 0 ? pass_through_group(s, r, v, m) : CF_OK;
    case AML_SCENARIO_DORMANT:
        return r != NULL && r->dormant_min_minor > 0 ? dormant_group(s, r, v, m) : CF_OK;
    case AML_SCENARIO_FAN_IN:
        return fan_group(s, code, v, m, AML_DIRECTION_IN);
    case AML_SCENARIO_FAN_OUT:
        return fan_group(s, code, v, m, AML_DIRECTION_OUT);
    case AML_SCENARIO_COUNT:
        break;
    }
    CF_ASSERT(false);
    return CF_ERR_INTERNAL;
}

/* One pass: every enabled scenario over every currency group. */
static enum cf_err scan_run(struct scan *s)
{
    s->found = 0;
    s->written = 0;
    s->cut_seen = 0;
    memset(s->cnt, 0, s->n * sizeof(*s->cnt));
    for (int sc = 0; sc < AML_SCENARIO_COUNT; sc++) {
        if ((s->cfg->scenarios & AML_SCENARIO_BIT(sc)) == 0)
            continue;
        for (size_t g0 = 0, g1 = 0; g0 < s->n; g0 = g1) {
            const char *code = at(s, s->grp[g0])->currency;
            for (g1 = g0 + 1; g1 < s->n && strcmp(at(s, s->grp[g1])->currency, code) == 0;)
                g1++;
            enum cf_err err = group_run(s, (enum aml_scenario)sc, s->grp + g0, g1 - g0);
            if (err != CF_OK)
                return err;
        }
    }
    CF_ASSERT(s->written <= s->max);
    return CF_OK;
}

/* After pass 1: keep everything, or the max alerts whose last triggering event is newest. */
static void scan_select(struct scan *s)
{
    s->take_all = s->found <= s->max;
    if (s->take_all)
        return;
    size_t need = s->max;
    for (size_t pos = s->n; pos-- > 0;) {
        if (s->ends[pos] >= need) {
            s->cut_pos = pos;
            s->cut_take = need;
            return;
        }
        need -= s->ends[pos];
    }
    CF_ASSERT(false); /* found > max: the walk ends before pos 0 runs out */
}

/* Entry ---------------------------------------------------------------------------------------- */

static enum cf_err event_check(const struct aml_event *e)
{
    if (!id_ok(e->id, sizeof(e->id), false) ||
        !id_ok(e->counterparty, sizeof(e->counterparty), true) || !code_ok(e->currency))
        return CF_ERR_INVALID_FIELD;
    if (e->time_s < 0 || e->time_s > AML_TIME_S_MAX || e->sub_us < 0 || e->sub_us > 999999)
        return CF_ERR_INVALID_FIELD;
    if (e->direction != AML_DIRECTION_IN && e->direction != AML_DIRECTION_OUT)
        return CF_ERR_INVALID_FIELD;
    if (e->kind < 1 || e->kind > AML_KIND_MAX)
        return CF_ERR_INVALID_FIELD;
    if (e->amount_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    return CF_OK;
}

static enum cf_err scan_inputs_check(const struct aml_config *cfg, const char *subject,
                                     const struct aml_event *events, size_t n)
{
    enum cf_err err = aml_config_check(cfg);
    if (err != CF_OK)
        return err;
    if (!id_ok(subject, AML_PARTY_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    if (n > AML_EVENTS_MAX)
        return CF_ERR_RANGE_TOO_LARGE;
    for (size_t i = 0; i < n; i++) {
        err = event_check(&events[i]);
        if (err != CF_OK)
            return err;
    }
    return CF_OK;
}

/* Points the scratch arrays into one block of 8 * n uint32_t. */
static void scan_scratch_assign(struct scan *s, uint32_t *block)
{
    uint32_t **arrays[] = {&s->ord, &s->tmp,  &s->grp,   &s->party,
                           &s->cnt, &s->ends, &s->cover, &s->prev};
    _Static_assert(sizeof(arrays) / sizeof(arrays[0]) * 4u * AML_EVENTS_MAX ==
                       AML_SCRATCH_BYTES_MAX,
                   "scratch arrays and AML_SCRATCH_BYTES_MAX disagree");
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
        *arrays[i] = block + i * s->n;
    memset(s->ends, 0, s->n * sizeof(*s->ends));
}

enum cf_err aml_scan(const struct aml_config *cfg, const char *subject,
                     const struct aml_event *events, size_t n, int64_t now_s, struct aml_alert *out,
                     size_t max, size_t *n_out)
{
    CF_ASSERT(cfg != NULL && subject != NULL && n_out != NULL);
    CF_ASSERT((events != NULL || n == 0) && (out != NULL || max == 0));
    CF_ASSERT(now_s >= 0 && now_s <= AML_TIME_S_MAX);
    enum cf_err err = scan_inputs_check(cfg, subject, events, n);
    if (err != CF_OK)
        return err;
    if (n == 0) {
        *n_out = 0;
        return CF_OK;
    }
    uint32_t *block = malloc(8u * n * sizeof(uint32_t));
    if (block == NULL)
        return CF_ERR_NOMEM;
    struct scan s = {
        .cfg = cfg,
        .subject = subject,
        .ev = events,
        .n = n,
        .now_s = now_s,
        .out = out,
        .max = max,
    };
    scan_scratch_assign(&s, block);
    err = scan_index(&s);
    if (err == CF_OK) {
        dormant_mark(&s);
        err = scan_run(&s); /* pass 1: sums and counts, writes nothing */
    }
    if (err == CF_OK) {
        size_t found = s.found;
        scan_select(&s);
        s.writing = true;
        enum cf_err again = scan_run(&s); /* pass 2: the same walk, so it cannot fail */
        CF_ASSERT(again == CF_OK && s.found == found);
        CF_ASSERT(s.written == (found < max ? found : max));
        *n_out = s.written;
    }
    free(block);
    return err;
}
