/*
 * bench_risk.c - what a risk decision costs in process, with 50 active rules.
 * Usage: bench_risk [decisions]     (default 200000; one thread)
 *
 * Builds a set of 50 rules of the kinds the risk team writes (per-currency amount thresholds,
 * in-lists of countries and merchant categories, velocity limits, combinations), a velocity
 * table, and a stream of pseudo-random money movements from a population of users, devices,
 * IPs and payees. Each decision is what the payment path does: four velocity_read calls (user,
 * device, IP and payee keys, giving the 24 velocity features), rules_evaluate, and one
 * velocity_record (the user key). As many decisions run first, unmeasured and recording all
 * four keys, to fill the table, so the figures are those of a table in steady state (a decision
 * whose key is new also pays for allocating and first touching about 2.9 KB). The device, IP
 * and payee features are only non-zero when their keys are recorded too: decision4 measures
 * that variant.
 *
 * Prints, one "name value unit" per line:
 *   decisions, rules_active, velocity_keys   the run's size
 *   decision_p50_ns .. decision_max_ns       4 reads + evaluate + 1 record, per decision
 *   evaluate_p50_ns .. evaluate_max_ns       rules_evaluate alone, per decision
 *   decision4_p99_ns                         the same as decision with 4 records (one per key)
 *   allow_pct .. block_pct                   how the decisions came out (the rules do bite)
 * Percentiles are nearest-rank over per-decision CLOCK_MONOTONIC intervals.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "risk/rules.h"
#include "risk/velocity.h"

#define DECISIONS_DEFAULT 200000
#define DECISIONS_MAX 100000000L
#define USERS_N 10000
#define DEVICES_N 12000
#define IPS_N 10000
#define PAYEES_N 2000
#define OPS_PER_S 20 /* simulated arrival rate: sets how fast time moves */
#define T_START INT64_C(1700006400)

struct bench_rule {
    const char *id;
    const char *condition;
    enum rules_action action;
};

static const struct bench_rule bench_rules[] = {
    {"r_large_new_payee_eur", "currency == \"EUR\" and amount_minor > 100000 and payee_new",
     RULES_ACTION_REVIEW},
    {"r_large_new_payee_usd", "currency == \"USD\" and amount_minor > 120000 and payee_new",
     RULES_ACTION_REVIEW},
    {"r_large_new_payee_gbp", "currency == \"GBP\" and amount_minor > 90000 and payee_new",
     RULES_ACTION_REVIEW},
    {"r_very_large_eur", "currency == \"EUR\" and amount_minor > 1000000", RULES_ACTION_REVIEW},
    {"r_very_large_usd", "currency == \"USD\" and amount_minor > 1200000", RULES_ACTION_REVIEW},
    {"r_huge_eur", "currency == \"EUR\" and amount_minor > 5000000", RULES_ACTION_BLOCK},
    {"r_sanctioned_ip", "ip_country in [\"KP\", \"IR\", \"SY\", \"CU\"]", RULES_ACTION_BLOCK},
    {"r_sanctioned_home", "home_country in [\"KP\", \"IR\", \"SY\", \"CU\"]", RULES_ACTION_BLOCK},
    {"r_new_device_large", "device_new and amount_minor > 50000", RULES_ACTION_CHALLENGE},
    {"r_new_device_new_payee", "device_new and payee_new", RULES_ACTION_CHALLENGE},
    {"r_failed_signins", "failed_signins_24h >= 5", RULES_ACTION_CHALLENGE},
    {"r_failed_signins_many", "failed_signins_24h >= 20", RULES_ACTION_BLOCK},
    {"r_mismatch_large", "country_mismatch and amount_minor > 20000", RULES_ACTION_CHALLENGE},
    {"r_young_large", "account_age_s < 86400 and amount_minor > 20000", RULES_ACTION_REVIEW},
    {"r_young_withdrawal", "account_age_s < 604800 and kind == \"withdrawal\"",
     RULES_ACTION_REVIEW},
    {"r_burst_user_1m", "count_1m_user >= 5", RULES_ACTION_CHALLENGE},
    {"r_burst_user_1h", "count_1h_user >= 30", RULES_ACTION_REVIEW},
    {"r_burst_user_24h", "count_24h_user >= 100", RULES_ACTION_REVIEW},
    {"r_sum_user_24h_eur", "currency == \"EUR\" and sum_24h_user > 1500000", RULES_ACTION_REVIEW},
    {"r_sum_user_1h_eur", "currency == \"EUR\" and sum_1h_user > 500000", RULES_ACTION_CHALLENGE},
    {"r_sum_user_24h_usd", "currency == \"USD\" and sum_24h_user > 1800000", RULES_ACTION_REVIEW},
    {"r_device_hour", "count_1h_device >= 20", RULES_ACTION_REVIEW},
    {"r_device_burst", "count_1m_device >= 5", RULES_ACTION_CHALLENGE},
    {"r_ip_burst", "count_1m_ip >= 10", RULES_ACTION_CHALLENGE},
    {"r_ip_hour", "count_1h_ip >= 100", RULES_ACTION_REVIEW},
    {"r_ip_sum_day_eur", "currency == \"EUR\" and sum_24h_ip > 3000000", RULES_ACTION_REVIEW},
    {"r_payee_fan_in", "count_1h_payee >= 50 and payee_kind == \"user\"", RULES_ACTION_REVIEW},
    {"r_payee_sum_day", "sum_24h_payee > 5000000 and payee_kind == \"user\"", RULES_ACTION_REVIEW},
    {"r_gambling", "mcc in [7995, 7800, 7801, 7802] and kyc_tier < 2", RULES_ACTION_BLOCK},
    {"r_crypto", "mcc in [6051, 6211] and amount_minor > 100000", RULES_ACTION_REVIEW},
    {"r_money_transfer_mcc", "mcc == 4829 and payee_new", RULES_ACTION_CHALLENGE},
    {"r_night_large", "hour_utc < 5 and amount_minor > 50000", RULES_ACTION_CHALLENGE},
    {"r_night_new_device", "(hour_utc < 5 or hour_utc >= 23) and device_new",
     RULES_ACTION_CHALLENGE},
    {"r_unverified_payout", "kyc_tier == 0 and kind in [\"payout\", \"withdrawal\"]",
     RULES_ACTION_BLOCK},
    {"r_unverified_large", "kyc_tier == 0 and amount_minor > 25000", RULES_ACTION_REVIEW},
    {"r_tier1_large", "kyc_tier == 1 and amount_minor > 250000", RULES_ACTION_REVIEW},
    {"r_conversion_burst", "kind == \"conversion\" and count_1h_user >= 10", RULES_ACTION_REVIEW},
    {"r_cycle", "kind == \"withdrawal\" and count_1h_user >= 3 and account_age_s < 2592000",
     RULES_ACTION_REVIEW},
    {"r_bank_new_payee", "payee_kind == \"bank\" and payee_new and amount_minor > 50000",
     RULES_ACTION_CHALLENGE},
    {"r_mismatch_new_everything", "country_mismatch and device_new and payee_new",
     RULES_ACTION_REVIEW},
    {"r_unknown_ip_country", "ip_country == \"\" and amount_minor > 100000",
     RULES_ACTION_CHALLENGE},
    {"r_high_risk_ip",
     "ip_country in [\"NG\", \"RU\", \"BY\", \"VE\", \"MM\"] and "
     "not home_country in [\"NG\", \"RU\", \"BY\", \"VE\", \"MM\"]",
     RULES_ACTION_CHALLENGE},
    {"r_structuring_eur",
     "currency == \"EUR\" and amount_minor >= 900000 and amount_minor < 1000000 and "
     "count_24h_user >= 2",
     RULES_ACTION_REVIEW},
    {"r_small_probes", "amount_minor < 200 and count_1h_user >= 5", RULES_ACTION_REVIEW},
    {"r_merchant_new_large", "payee_kind == \"merchant\" and payee_new and amount_minor > 300000",
     RULES_ACTION_CHALLENGE},
    {"r_send_new_account", "kind == \"send\" and account_age_s < 3600", RULES_ACTION_CHALLENGE},
    {"r_ip_many_devices", "count_24h_ip >= 300 and device_new", RULES_ACTION_REVIEW},
    {"r_device_sum_day_eur", "sum_24h_device > 2000000 and currency == \"EUR\"",
     RULES_ACTION_REVIEW},
    {"r_trusted_topup", "kind == \"topup\" and kyc_tier >= 2 and not device_new",
     RULES_ACTION_ALLOW},
    {"r_trusted_small", "amount_minor < 1000 and not payee_new and not device_new",
     RULES_ACTION_ALLOW},
};

#define BENCH_RULES_N (sizeof(bench_rules) / sizeof(bench_rules[0]))
_Static_assert(BENCH_RULES_N == 50, "the budget is stated for 50 rules");

static uint64_t lcg_state = 12345;

static uint64_t rnd(uint64_t n)
{
    lcg_state = lcg_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return (lcg_state >> 17) % n;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct rules_set *bench_set_build(void)
{
    static struct rules_compiled_rule compiled[BENCH_RULES_N];
    for (size_t i = 0; i < BENCH_RULES_N; i++) {
        const struct bench_rule *b = &bench_rules[i];
        const char *reason = b->id + 2; /* "r_xxx" -> "xxx" */
        struct rules_rule_def d = {b->id,     strlen(b->id), b->condition,   strlen(b->condition),
                                   b->action, reason,        strlen(reason), NULL,
                                   0,         true};
        struct rules_error e;
        if (rules_rule_compile(&d, &compiled[i], &e) != CF_OK) {
            fprintf(stderr, "%s: %s: column %zu: %s\n", b->id, e.field, e.column, e.message);
            exit(1);
        }
    }
    struct rules_set *set = NULL;
    if (rules_set_create(1, compiled, BENCH_RULES_N, &set) != CF_OK)
        exit(1);
    return set;
}

/* One operation's features (velocity left to the reads) and its four velocity keys. */
struct op {
    struct risk_features f;
    char keys[RULES_KEYS_N][VELOCITY_KEY_BYTES_MAX + 1];
};

static void text_put(char dst[RULES_TEXT_BYTES_MAX], const char *text)
{
    if (rules_features_text_set(dst, text, strlen(text)) != CF_OK)
        exit(1);
}

static void op_make(struct op *op, int64_t now_s)
{
    static const char *const currencies[] = {"EUR", "EUR", "EUR", "EUR", "USD", "GBP"};
    static const char *const kinds[] = {"send",       "send",  "payment", "payment",   "payment",
                                        "withdrawal", "topup", "payout",  "conversion"};
    static const char *const payee_kinds[] = {"user", "merchant", "bank"};
    static const char *const countries[] = {"DE", "DE", "FR", "FR", "ES", "IT", "NL",
                                            "GB", "US", "NG", "RU", "",   "KP"};
    static const int64_t mccs[] = {5411, 5812, 5999, 4829, 7995, 6051, 5732, 4111};
    memset(op, 0, sizeof(*op));
    struct risk_features *f = &op->f;
    const char *currency = currencies[rnd(6)];
    f->amount_minor = rnd(100) < 98 ? 100 + (int64_t)rnd(20000) : 10000 + (int64_t)rnd(1000000);
    text_put(f->currency, currency);
    text_put(f->kind, kinds[rnd(9)]);
    text_put(f->payee_kind, f->kind[0] == 't' ? "none" : payee_kinds[rnd(3)]);
    f->payee_new = rnd(10) == 0;
    f->device_new = rnd(20) == 0;
    f->account_age_s = (int64_t)rnd(3 * 365 * 86400);
    f->failed_signins_24h = rnd(50) == 0 ? (int64_t)rnd(30) : 0;
    text_put(f->home_country, countries[rnd(9)]);
    text_put(f->ip_country, rnd(10) == 0 ? countries[rnd(13)] : f->home_country);
    f->country_mismatch = strcmp(f->ip_country, f->home_country) != 0;
    f->mcc = strcmp(f->payee_kind, "merchant") == 0 ? mccs[rnd(8)] : 0;
    f->hour_utc = (now_s / 3600) % 24;
    f->kyc_tier = rnd(20) == 0 ? 0 : rnd(3) == 0 ? 1 : 2;
    uint64_t user = rnd(USERS_N);
    snprintf(op->keys[RULES_KEY_USER], sizeof(op->keys[0]), "u:usr_%llu|%s",
             (unsigned long long)user, currency);
    snprintf(op->keys[RULES_KEY_DEVICE], sizeof(op->keys[0]), "d:dev_%llu|%s",
             (unsigned long long)(rnd(4) == 0 ? rnd(DEVICES_N) : user), currency);
    snprintf(op->keys[RULES_KEY_IP], sizeof(op->keys[0]), "i:198.51.%llu.%llu|%s",
             (unsigned long long)(rnd(IPS_N) / 256), (unsigned long long)(rnd(IPS_N) % 256),
             currency);
    snprintf(op->keys[RULES_KEY_PAYEE], sizeof(op->keys[0]), "p:%s_%llu|%s", f->payee_kind,
             (unsigned long long)rnd(PAYEES_N), currency);
}

/* One decision as the payment path makes it; records_n velocity records (1 or 4). */
static enum rules_action decide(struct velocity *v, const struct rules_set *set, struct op *op,
                                int64_t now_s, int records_n, int64_t *evaluate_ns_out)
{
    for (int k = 0; k < RULES_KEYS_N; k++) {
        if (velocity_read(v, op->keys[k], now_s, &op->f.velocity[k]) != CF_OK)
            exit(1);
    }
    struct rules_decision d;
    int64_t t0 = now_ns();
    rules_evaluate(set, &op->f, &d);
    *evaluate_ns_out = now_ns() - t0;
    for (int k = 0; k < records_n; k++) {
        if (velocity_record(v, op->keys[k], op->f.amount_minor, now_s) != CF_OK)
            exit(1);
    }
    return d.action;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (per mille) of sorted[0..n). */
static int64_t percentile(const int64_t *sorted, size_t n, int per_mille)
{
    size_t rank = (n * (size_t)per_mille + 999) / 1000;
    return sorted[rank == 0 ? 0 : rank - 1];
}

static void report(const char *name, int64_t *ns, size_t n)
{
    qsort(ns, n, sizeof(ns[0]), cmp_i64);
    printf("%s_p50_ns %lld ns\n", name, (long long)percentile(ns, n, 500));
    printf("%s_p99_ns %lld ns\n", name, (long long)percentile(ns, n, 990));
    printf("%s_p999_ns %lld ns\n", name, (long long)percentile(ns, n, 999));
    printf("%s_max_ns %lld ns\n", name, (long long)ns[n - 1]);
}

/* Runs n decisions from decision number `first`; fills per-decision times when given. */
static void run(struct velocity *v, const struct rules_set *set, size_t first, size_t n,
                int records_n, int64_t *decision_ns, int64_t *evaluate_ns, size_t *by_action)
{
    struct op op;
    for (size_t i = 0; i < n; i++) {
        int64_t now_s = T_START + (int64_t)((first + i) / OPS_PER_S);
        op_make(&op, now_s);
        int64_t evaluate = 0;
        int64_t t0 = now_ns();
        enum rules_action a = decide(v, set, &op, now_s, records_n, &evaluate);
        int64_t t1 = now_ns();
        if (decision_ns != NULL)
            decision_ns[i] = t1 - t0;
        if (evaluate_ns != NULL)
            evaluate_ns[i] = evaluate;
        if (by_action != NULL)
            by_action[a]++;
    }
}

int main(int argc, char **argv)
{
    long decisions = argc > 1 ? strtol(argv[1], NULL, 10) : DECISIONS_DEFAULT;
    if (argc > 2 || decisions < 1 || decisions > DECISIONS_MAX) {
        fprintf(stderr, "usage: bench_risk [decisions]   (1..%ld, default %d)\n", DECISIONS_MAX,
                DECISIONS_DEFAULT);
        return 2;
    }
    size_t n = (size_t)decisions;
    struct rules_set *set = bench_set_build();
    static const uint8_t seed[VELOCITY_SEED_BYTES] = {42};
    struct velocity *v = NULL;
    if (velocity_open_seeded(1 << 17, seed, &v) != CF_OK)
        return 1;
    int64_t *decision_ns = malloc(n * sizeof(int64_t));
    int64_t *evaluate_ns = malloc(n * sizeof(int64_t));
    if (decision_ns == NULL || evaluate_ns == NULL)
        return 1;
    size_t by_action[RULES_ACTIONS_N] = {0};

    run(v, set, 0, n, RULES_KEYS_N, NULL, NULL, NULL); /* fill the table: steady state */
    run(v, set, n, n, 1, decision_ns, evaluate_ns, by_action);
    struct velocity_stats st;
    velocity_stats_read(v, &st);
    printf("decisions %zu\n", n);
    printf("rules_active %zu\n", BENCH_RULES_N);
    printf("velocity_keys %zu\n", st.keys_n);
    report("decision", decision_ns, n);
    report("evaluate", evaluate_ns, n);
    run(v, set, 2 * n, n, RULES_KEYS_N, decision_ns, NULL, NULL);
    qsort(decision_ns, n, sizeof(decision_ns[0]), cmp_i64);
    printf("decision4_p99_ns %lld ns\n", (long long)percentile(decision_ns, n, 990));
    for (int a = 0; a < RULES_ACTIONS_N; a++)
        printf("%s_pct %.2f %%\n", rules_action_name((enum rules_action)a),
               100.0 * (double)by_action[a] / (double)n);
    free(decision_ns);
    free(evaluate_ns);
    velocity_close(v);
    rules_set_destroy(set);
    return 0;
}
