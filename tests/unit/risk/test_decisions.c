/*
 * test_decisions.c - unit tests for the decision log (src/risk/decisions.c) driven through
 * decisions.h, against SQLite (a fresh file per test) and, when COFFER_TEST_PG_URL is set,
 * against PostgreSQL (a fresh database per test, coffer_rd_<pid>_<n>, dropped after). Times are
 * passed in; the vault holds one fresh key.
 *
 * A decision reads back exactly as put: its matches (ids, reasons, actions, the omitted count)
 * and its whole feature vector, texts with quotes, backslashes and bytes outside ASCII included,
 * and every velocity figure; the stored form is the documented JSON with "v": 1, names of the
 * registry, and reads back members in any order, ignoring unknown ones. Putting an op again
 * changes nothing, whatever the second record says; malformed records are refused. A review
 * moves pending to approved once: the second is a conflict, an unknown op not found; the
 * reason is sealed at rest under "risk_decisions:<op id>:review_reason" (no plaintext in the
 * row; moved to another op it does not open) and only get opens it. The list filters by
 * action, review state, payer and time, pages newest first with its cursor, and refuses
 * malformed filters. recent_features answers the window's vectors newest first across pages,
 * and a dry run over them counts what a candidate would have caught. Eight threads putting one
 * op make one row; eight reviewing one op make one review.
 *
 * Velocity keys (schema version 2): a row's four keys and counted_at_us read back; keys with
 * spaces, control bytes or too long, and a negative time, are refused. counted_set marks a row
 * once (the first time stands), not found for an unknown op. recent_keys answers the counted
 * rows of the window only (not the uncounted, not the older), oldest first by (time, row) with
 * ties on one time, across pages with its cursor; recent_keys_start bounds a read to the newest
 * rows. A version 1 database (as the first release left it, with a row) migrates: the old row
 * reads back with no keys and is not counted. Pseudonyms are 32 hex digits, stable, different by
 * domain, by value and by master key, and refused without master key 1 or for an empty value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "risk_fixture.h" /* the throwaway database and the vault */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "crypto/vault.h"
#include "risk/decisions.h"
#include "store/sql/sql.h"

#define T0_US 1700000000000000LL
#define RACE_THREADS 8
#define RECENT_N 12000 /* more than two pages of recent_features */
#define STAFF "usr_000000000000R"
#define PAYER "usr_000000000000A"
#define NOTE "called the customer: the payee is their landlord, lease on file"

struct fx {
    struct risk_fx b; /* the database and the vault (key 1 only) */
    struct risk_decisions *d;
};

static int fx_setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -1;
    *state = x;
    if (risk_fx_open(&x->b, "rd", false, true) != 0)
        return -1;
    return risk_decisions_open(x->b.db, risk_fx_vault, &x->b, &x->d) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *x = *state;
    risk_decisions_close(x->d);
    risk_fx_close(&x->b);
    free(x);
    return 0;
}

/* Helpers -------------------------------------------------------------------------------------- */

static void text_set(char dst[RULES_TEXT_BYTES_MAX], const char *s)
{
    assert_int_equal(rules_features_text_set(dst, s, strlen(s)), CF_OK);
}

/* A decision of op (its number n shapes the values), not reviewed. */
static struct risk_decision_rec *rec_new(int n, const char *party, enum rules_action action)
{
    struct risk_decision_rec *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    snprintf(r->op_id, sizeof(r->op_id), "op_%08d", n);
    snprintf(r->party, sizeof(r->party), "%s", party);
    snprintf(r->kind, sizeof(r->kind), "send");
    snprintf(r->currency, sizeof(r->currency), "EUR");
    r->amount_minor = 1000 * n;
    r->action = (uint8_t)action;
    r->set_version = 7;
    r->created_at_us = T0_US + n * 1000000LL;
    r->review_state = action == RULES_ACTION_REVIEW ? RISK_REVIEW_PENDING : RISK_REVIEW_NONE;
    r->features.amount_minor = r->amount_minor;
    text_set(r->features.currency, "EUR");
    text_set(r->features.kind, "send");
    text_set(r->features.payee_kind, "user");
    r->features.hour_utc = n % 24;
    if (action != RULES_ACTION_ALLOW) {
        r->matches_n = 1;
        r->matches[0].action = action;
        snprintf(r->matches[0].id, sizeof(r->matches[0].id), "rule_%d", (int)action);
        snprintf(r->matches[0].reason, sizeof(r->matches[0].reason), "why_%d", (int)action);
    }
    return r;
}

static void put(struct fx *x, int n, const char *party, enum rules_action action)
{
    struct risk_decision_rec *r = rec_new(n, party, action);
    assert_int_equal(risk_decisions_put(x->d, r), CF_OK);
    free(r);
}

/* Tests ---------------------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    struct fx *x = *state;
    struct risk_decision_rec *r = rec_new(1, PAYER, RULES_ACTION_BLOCK);
    struct risk_features *f = &r->features;
    f->account_age_s = 86400 * 3;
    f->failed_signins_24h = 4;
    f->mcc = 7995;
    f->kyc_tier = 2;
    f->amount_minor = INT64_MAX;
    f->hour_utc = -1; /* the store keeps what it is given */
    text_set(f->ip_country, "a\"b\\c");
    text_set(f->home_country, "\x01\xc3\xa9\x7f");
    f->payee_new = true;
    f->country_mismatch = true;
    for (int k = 0; k < RULES_KEYS_N; k++) {
        for (int w = 0; w < VELOCITY_WINDOWS_N; w++) {
            f->velocity[k].count[w] = k * 10 + w + 1;
            f->velocity[k].sum_minor[w] = INT64_MIN + k * 100 + w;
        }
    }
    r->matches_n = RULES_MATCHES_MAX;
    for (size_t i = 0; i < RULES_MATCHES_MAX; i++) {
        r->matches[i].action = (enum rules_action)(i % RULES_ACTIONS_N);
        snprintf(r->matches[i].id, sizeof(r->matches[i].id), "rule_%02zu_%s", i,
                 "abcdefghijklmnopqrstuvwxyz0123");
        snprintf(r->matches[i].reason, sizeof(r->matches[i].reason), "reason_%zu", i);
    }
    r->matches_omitted_n = 5;
    assert_int_equal(risk_decisions_put(x->d, r), CF_OK);
    struct risk_decision_rec *got = calloc(1, sizeof(*got));
    assert_int_equal(risk_decisions_get(x->d, r->op_id, got), CF_OK);
    assert_true(got->row > 0);
    assert_string_equal(got->op_id, r->op_id);
    assert_string_equal(got->party, PAYER);
    assert_string_equal(got->kind, "send");
    assert_string_equal(got->currency, "EUR");
    assert_int_equal(got->amount_minor, r->amount_minor);
    assert_int_equal(got->action, RULES_ACTION_BLOCK);
    assert_int_equal(got->set_version, 7);
    assert_int_equal(got->matches_n, RULES_MATCHES_MAX);
    assert_int_equal(got->matches_omitted_n, 5);
    assert_memory_equal(got->matches, r->matches, sizeof(r->matches));
    assert_memory_equal(&got->features, &r->features,
                        sizeof(r->features)); /* calloc'd: padding 0 */
    assert_int_equal(got->review_state, RISK_REVIEW_NONE);
    assert_string_equal(got->reviewer, "");
    assert_int_equal(got->decided_at_us, 0);
    assert_int_equal(got->created_at_us, r->created_at_us);
    assert_int_equal(risk_decisions_get(x->d, "op_nope", got), CF_ERR_NOT_FOUND);
    assert_int_equal(risk_decisions_get(x->d, "", got), CF_ERR_NOT_FOUND);
    free(got);
    free(r);
}

static void test_stored_form(void **state)
{
    struct fx *x = *state;
    struct risk_decision_rec *r = rec_new(3, PAYER, RULES_ACTION_ALLOW);
    char *text = malloc(RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX);
    risk_decisions_features_text(&r->features, text);
    assert_true(strncmp(text, "{\"v\":1,\"amount_minor\":3000,\"currency\":\"EUR\",", 44) == 0);
    for (size_t i = 0; i < rules_features_n(); i++) { /* every feature under its name */
        char name[64];
        snprintf(name, sizeof(name), "\"%s\":", rules_feature_at(i)->name);
        assert_non_null(strstr(text, name));
    }
    assert_non_null(strstr(text, "\"payee_new\":false"));
    assert_non_null(strstr(text, "\"sum_24h_payee\":0}"));
    assert_int_equal(risk_decisions_put(x->d, r), CF_OK);

    /* another writer's order, an unknown member, missing ones: read as written */
    struct sql_value p[] = {
        SQL_T("{\"hour_utc\": 5, \"future_feature\": \"x\", \"v\": 1, \"payee_new\": true, "
              "\"currency\": \"USD\", \"count_1m_ip\": -3}"),
        SQL_T(r->op_id)};
    risk_fx_exec(&x->b, "UPDATE risk_decisions SET features = $1 WHERE op_id = $2", p, 2);
    struct risk_decision_rec *got = calloc(1, sizeof(*got));
    assert_int_equal(risk_decisions_get(x->d, r->op_id, got), CF_OK);
    assert_int_equal(got->features.hour_utc, 5);
    assert_true(got->features.payee_new);
    assert_string_equal(got->features.currency, "USD");
    assert_int_equal(got->features.velocity[RULES_KEY_IP].count[VELOCITY_WINDOW_1M], -3);
    assert_int_equal(got->features.amount_minor, 0);
    /* another version, or a malformed text, is corrupt */
    static const char *const bad[] = {"{\"v\":2}", "{\"v\":1,\"hour_utc\":\"5\"}", "{\"v\":1",
                                      "{\"v\":1,\"currency\":\"ABCDEFGHIJKLMNOPQ\"}", "[]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sql_value q[] = {SQL_T(bad[i]), SQL_T(r->op_id)};
        risk_fx_exec(&x->b, "UPDATE risk_decisions SET features = $1 WHERE op_id = $2", q, 2);
        assert_int_equal(risk_decisions_get(x->d, r->op_id, got), CF_ERR_CORRUPT);
    }
    struct sql_value q[] = {SQL_T("block:a:b,"), SQL_T(r->op_id)};
    risk_fx_exec(&x->b,
                 "UPDATE risk_decisions SET features = '{\"v\":1}', matches = $1 WHERE op_id = $2",
                 q, 2);
    assert_int_equal(risk_decisions_get(x->d, r->op_id, got), CF_ERR_CORRUPT);
    free(got);
    free(text);
    free(r);
}

static void test_put_idempotent(void **state)
{
    struct fx *x = *state;
    struct risk_decision_rec *r = rec_new(1, PAYER, RULES_ACTION_REVIEW);
    assert_int_equal(risk_decisions_put(x->d, r), CF_OK);
    struct risk_decision_rec *again = rec_new(1, "usr_000000000000Z", RULES_ACTION_ALLOW);
    again->amount_minor = 5;
    assert_int_equal(risk_decisions_put(x->d, again), CF_OK);
    struct risk_decision_rec *got = calloc(1, sizeof(*got));
    assert_int_equal(risk_decisions_get(x->d, r->op_id, got), CF_OK);
    assert_string_equal(got->party, PAYER); /* the first stands */
    assert_int_equal(got->action, RULES_ACTION_REVIEW);
    assert_int_equal(got->amount_minor, 1000);
    assert_int_equal(got->review_state, RISK_REVIEW_PENDING);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_decisions"), 1);

    /* malformed records write nothing */
    struct risk_decision_rec *b = rec_new(2, PAYER, RULES_ACTION_ALLOW);
    b->op_id[0] = '\0';
    assert_int_equal(risk_decisions_put(x->d, b), CF_ERR_INVALID_FIELD);
    free(b);
    b = rec_new(2, PAYER, RULES_ACTION_ALLOW);
    b->amount_minor = -1;
    assert_int_equal(risk_decisions_put(x->d, b), CF_ERR_INVALID_FIELD);
    b->amount_minor = 1;
    b->action = RULES_ACTIONS_N;
    assert_int_equal(risk_decisions_put(x->d, b), CF_ERR_INVALID_FIELD);
    b->action = RULES_ACTION_ALLOW;
    b->review_state = RISK_REVIEW_APPROVED;
    assert_int_equal(risk_decisions_put(x->d, b), CF_ERR_INVALID_FIELD);
    b->review_state = RISK_REVIEW_NONE;
    b->matches_n = RULES_MATCHES_MAX + 1;
    assert_int_equal(risk_decisions_put(x->d, b), CF_ERR_INVALID_FIELD);
    b->matches_n = 1;
    snprintf(b->matches[0].id, sizeof(b->matches[0].id), "Bad:Id");
    assert_int_equal(risk_decisions_put(x->d, b), CF_ERR_INVALID_FIELD);
    b->matches_n = 0;
    snprintf(b->kind, sizeof(b->kind), "a b");
    assert_int_equal(risk_decisions_put(x->d, b), CF_ERR_INVALID_FIELD);
    snprintf(b->kind, sizeof(b->kind), "send");
    b->created_at_us = 0;
    assert_int_equal(risk_decisions_put(x->d, b), CF_ERR_INVALID_FIELD);
    b->created_at_us = T0_US;
    b->party[0] = '\0'; /* no payer is allowed */
    assert_int_equal(risk_decisions_put(x->d, b), CF_OK);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_decisions"), 2);
    free(b);
    free(got);
    free(again);
    free(r);
}

static void test_review(void **state)
{
    struct fx *x = *state;
    put(x, 1, PAYER, RULES_ACTION_REVIEW);
    put(x, 2, PAYER, RULES_ACTION_REVIEW);
    put(x, 3, PAYER, RULES_ACTION_ALLOW);
    assert_int_equal(risk_decisions_review_set(x->d, "op_00000001", RISK_REVIEW_PENDING,
                                               RISK_REVIEW_APPROVED, STAFF, NOTE, T0_US + 99),
                     CF_OK);
    assert_int_equal(risk_decisions_review_set(x->d, "op_00000001", RISK_REVIEW_PENDING,
                                               RISK_REVIEW_DECLINED, STAFF, NOTE, T0_US + 99),
                     CF_ERR_CONFLICT);
    assert_int_equal(risk_decisions_review_set(x->d, "op_00000003", RISK_REVIEW_PENDING,
                                               RISK_REVIEW_APPROVED, STAFF, NULL, T0_US),
                     CF_ERR_CONFLICT); /* never held */
    assert_int_equal(risk_decisions_review_set(x->d, "op_nope", RISK_REVIEW_PENDING,
                                               RISK_REVIEW_APPROVED, STAFF, NULL, T0_US),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(risk_decisions_review_set(x->d, "op_00000002", RISK_REVIEW_PENDING,
                                               RISK_REVIEW_DECLINED, "", NULL, T0_US),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_decisions_review_set(x->d, "op_00000002", RISK_REVIEW_PENDING,
                                               RISK_REVIEW_DECLINED, STAFF, "bell\a", T0_US),
                     CF_ERR_INVALID_FIELD);
    char *long_reason = malloc(RISK_DECISIONS_REASON_CHARS_MAX + 2);
    memset(long_reason, 'x', RISK_DECISIONS_REASON_CHARS_MAX + 1);
    long_reason[RISK_DECISIONS_REASON_CHARS_MAX + 1] = '\0';
    const char *why = NULL;
    assert_false(risk_decisions_reason_valid(long_reason, &why));
    assert_string_equal(why, "reason: at most 500 characters");
    long_reason[RISK_DECISIONS_REASON_CHARS_MAX] = '\0';
    assert_true(risk_decisions_reason_valid(long_reason, NULL));
    free(long_reason);
    assert_int_equal(risk_decisions_review_set(x->d, "op_00000002", RISK_REVIEW_PENDING,
                                               RISK_REVIEW_DECLINED, STAFF, NULL, T0_US + 5),
                     CF_OK); /* without a reason */

    struct risk_decision_rec *got = calloc(1, sizeof(*got));
    assert_int_equal(risk_decisions_get(x->d, "op_00000001", got), CF_OK);
    assert_int_equal(got->review_state, RISK_REVIEW_APPROVED);
    assert_string_equal(got->reviewer, STAFF);
    assert_string_equal(got->review_reason, NOTE);
    assert_int_equal(got->decided_at_us, T0_US + 99);
    assert_int_equal(risk_decisions_get(x->d, "op_00000002", got), CF_OK);
    assert_int_equal(got->review_state, RISK_REVIEW_DECLINED);
    assert_string_equal(got->review_reason, "");

    /* sealed at rest: no plaintext, and it does not open under another op's aad */
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_decisions WHERE "
                                          "review_reason_sealed IS NOT NULL"),
                     1);
    struct sqltx *tx = NULL;
    struct sql_rows *rows = NULL;
    assert_int_equal(sql_begin(x->b.db, &tx), CF_OK);
    assert_int_equal(sql_query(tx,
                               "SELECT review_reason_sealed FROM risk_decisions WHERE op_id = "
                               "'op_00000001'",
                               NULL, 0, &rows),
                     CF_OK);
    sql_rollback(tx);
    size_t len = 0;
    const uint8_t *ct = sql_row_blob(rows, 0, 0, &len);
    assert_true(len > strlen(NOTE));
    for (size_t i = 0; i + 6 <= len; i++)
        assert_false(memcmp(ct + i, "called", 6) == 0);
    struct sql_value p[] = {SQL_B(ct, len)};
    risk_fx_exec(&x->b,
                 "UPDATE risk_decisions SET review_reason_sealed = $1 WHERE op_id = 'op_00000002'",
                 p, 1);
    sql_rows_free(rows);
    assert_int_equal(risk_decisions_get(x->d, "op_00000002", got), CF_ERR_CORRUPT);

    /* the list never opens it */
    struct risk_decisions_filter f = {.review_set = true, .review_state = RISK_REVIEW_APPROVED};
    size_t n = 0;
    assert_int_equal(risk_decisions_list(x->d, &f, got, 1, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got->op_id, "op_00000001");
    assert_string_equal(got->review_reason, "");
    assert_string_equal(got->reviewer, STAFF);
    free(got);
    uint8_t s = 9;
    assert_int_equal(risk_review_state_parse("pending", 7, &s), CF_OK);
    assert_int_equal(s, RISK_REVIEW_PENDING);
    assert_int_equal(risk_review_state_parse("Pending", 7, &s), CF_ERR_INVALID_FIELD);
    assert_string_equal(risk_review_state_name(RISK_REVIEW_DECLINED), "declined");
}

static void test_list_filters(void **state)
{
    struct fx *x = *state;
    const char *other = "mer_000000000000B";
    for (int i = 1; i <= 20; i++)
        put(x, i, i % 2 ? PAYER : other, (enum rules_action)(i % RULES_ACTIONS_N));
    struct risk_decision_rec *out = calloc(RISK_DECISIONS_LIST_MAX, sizeof(*out));
    size_t n = 0;
    assert_int_equal(risk_decisions_list(x->d, NULL, out, RISK_DECISIONS_LIST_MAX, &n), CF_OK);
    assert_int_equal(n, 20);
    for (size_t i = 1; i < n; i++)
        assert_true(out[i - 1].row > out[i].row); /* newest first */
    assert_string_equal(out[0].op_id, "op_00000020");
    assert_int_equal(out[0].features.amount_minor, 20000); /* the features come too */

    struct risk_decisions_filter f = {.action_set = true, .action = RULES_ACTION_REVIEW};
    assert_int_equal(risk_decisions_list(x->d, &f, out, RISK_DECISIONS_LIST_MAX, &n), CF_OK);
    assert_int_equal(n, 5); /* 2, 6, 10, 14, 18 */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(out[i].action, RULES_ACTION_REVIEW);
        assert_int_equal(out[i].review_state, RISK_REVIEW_PENDING);
    }
    f = (struct risk_decisions_filter){
        .review_set = true, .review_state = RISK_REVIEW_PENDING, .party = other};
    assert_int_equal(risk_decisions_list(x->d, &f, out, RISK_DECISIONS_LIST_MAX, &n), CF_OK);
    assert_int_equal(n, 5);
    f = (struct risk_decisions_filter){
        .party = PAYER, .from_us = T0_US + 5 * 1000000LL, .to_us = T0_US + 11 * 1000000LL};
    assert_int_equal(risk_decisions_list(x->d, &f, out, RISK_DECISIONS_LIST_MAX, &n), CF_OK);
    assert_int_equal(n, 3); /* 5, 7, 9 (11 is past the end) */
    assert_string_equal(out[0].op_id, "op_00000009");
    assert_string_equal(out[2].op_id, "op_00000005");

    /* pages */
    f = (struct risk_decisions_filter){0};
    size_t seen = 0;
    for (;;) {
        assert_int_equal(risk_decisions_list(x->d, &f, out, 7, &n), CF_OK);
        for (size_t i = 0; i < n; i++) {
            char want[16];
            snprintf(want, sizeof(want), "op_%08zu", 20 - seen - i);
            assert_string_equal(out[i].op_id, want);
        }
        seen += n;
        if (n < 7)
            break;
        f.before_row = out[n - 1].row;
    }
    assert_int_equal(seen, 20);

    f = (struct risk_decisions_filter){.action_set = true, .action = RULES_ACTIONS_N};
    assert_int_equal(risk_decisions_list(x->d, &f, out, 10, &n), CF_ERR_INVALID_FIELD);
    f = (struct risk_decisions_filter){.party = "a b"};
    assert_int_equal(risk_decisions_list(x->d, &f, out, 10, &n), CF_ERR_INVALID_FIELD);
    f = (struct risk_decisions_filter){.from_us = -1};
    assert_int_equal(risk_decisions_list(x->d, &f, out, 10, &n), CF_ERR_INVALID_FIELD);
    free(out);
}

static void test_recent_and_dry_run(void **state)
{
    struct fx *x = *state;
    /* RECENT_N decisions one second apart, in one transaction (fast on both backends) */
    struct risk_decision_rec *r = rec_new(0, PAYER, RULES_ACTION_ALLOW);
    char *features = malloc(RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX);
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(x->b.db, &tx), CF_OK);
    for (int i = 1; i <= RECENT_N; i++) {
        char op[32];
        snprintf(op, sizeof(op), "op_%08d", i);
        r->features.amount_minor = i;
        r->features.hour_utc = i % 24;
        risk_decisions_features_text(&r->features, features);
        struct sql_value p[] = {SQL_T(op), SQL_I(i), SQL_T(features), SQL_I(T0_US + i * 1000000LL)};
        assert_int_equal(sql_exec(tx,
                                  "INSERT INTO risk_decisions (op_id, party, kind, amount_minor, "
                                  "currency, action, set_version, matches, matches_omitted, "
                                  "features, review_state, reviewer, created_at_us, "
                                  "decided_at_us) VALUES ($1, 'usr_x', 'send', $2, 'EUR', 0, 1, "
                                  "'', 0, $3, 0, '', $4, 0)",
                                  p, 4, NULL),
                         CF_OK);
    }
    assert_int_equal(sql_commit(tx), CF_OK);
    free(features);
    free(r);

    struct risk_features *hist = calloc(RISK_DECISIONS_RECENT_MAX, sizeof(*hist));
    char(*ops)[RISK_DECISIONS_OP_BYTES_MAX] = calloc(RISK_DECISIONS_RECENT_MAX, sizeof(*ops));
    size_t n = 0;
    assert_int_equal(
        risk_decisions_recent_features(x->d, 0, hist, ops, RISK_DECISIONS_RECENT_MAX, &n), CF_OK);
    assert_int_equal(n, RECENT_N); /* across pages */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hist[i].amount_minor, (int64_t)(RECENT_N - i)); /* newest first */
    assert_string_equal(ops[0], "op_00012000");
    /* the window: since the 11001st second; and a bound */
    assert_int_equal(risk_decisions_recent_features(x->d, T0_US + 11001 * 1000000LL, hist, ops,
                                                    RISK_DECISIONS_RECENT_MAX, &n),
                     CF_OK);
    assert_int_equal(n, 1000);
    assert_int_equal(risk_decisions_recent_features(x->d, 0, hist, ops, 6001, &n), CF_OK);
    assert_int_equal(n, 6001);
    assert_int_equal(hist[6000].amount_minor, RECENT_N - 6000);

    /* a dry run over them: night hours and over 11000 */
    struct rules_rule_def def = {.id = "dry_run",
                                 .id_len = 7,
                                 .condition = "hour_utc < 2 and amount_minor > 11000",
                                 .condition_len = 37,
                                 .action = RULES_ACTION_REVIEW,
                                 .reason = "night",
                                 .reason_len = 5};
    struct rules_compiled_rule *rule = malloc(sizeof(*rule));
    struct rules_error e;
    assert_int_equal(rules_rule_compile(&def, rule, &e), CF_OK);
    assert_int_equal(
        risk_decisions_recent_features(x->d, 0, hist, ops, RISK_DECISIONS_RECENT_MAX, &n), CF_OK);
    struct rules_dry_report rep;
    rules_dry_run(rule, hist, n, &rep);
    size_t want = 0;
    for (int i = 11001; i <= RECENT_N; i++)
        want += i % 24 < 2;
    assert_int_equal(rep.scanned_n, RECENT_N);
    assert_int_equal(rep.matched_n, want);
    assert_int_equal(rep.by_action_n[RULES_ACTION_REVIEW], want);
    assert_int_equal(rep.by_action_n[RULES_ACTION_ALLOW], RECENT_N - want);
    assert_true(rep.samples_n > 0);
    assert_int_equal(rep.samples[0], 0); /* 12000 = 500 * 24: hour 0, the newest */
    assert_string_equal(ops[rep.samples[0]], "op_00012000");
    assert_int_equal(hist[rep.samples[1]].amount_minor, 11977); /* 499 * 24 + 1 */
    free(rule);
    free(ops);
    free(hist);
}

/* Races ---------------------------------------------------------------------------------------- */

struct racer {
    struct fx *x;
    pthread_barrier_t *start;
    int n;
    bool review;
    enum cf_err err;
};

static void *race_main(void *arg)
{
    struct racer *w = arg;
    struct risk_decision_rec *r = rec_new(1, PAYER, RULES_ACTION_REVIEW);
    r->amount_minor = w->n; /* each says something else */
    pthread_barrier_wait(w->start);
    if (w->review)
        w->err = risk_decisions_review_set(w->x->d, r->op_id, RISK_REVIEW_PENDING,
                                           w->n % 2 ? RISK_REVIEW_APPROVED : RISK_REVIEW_DECLINED,
                                           STAFF, NOTE, T0_US);
    else
        w->err = risk_decisions_put(w->x->d, r);
    free(r);
    return NULL;
}

static void race(struct fx *x, bool review, struct racer *w)
{
    pthread_t th[RACE_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACE_THREADS);
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct racer){.x = x, .start = &start, .n = i, .review = review};
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &w[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
}

static void test_races(void **state)
{
    struct fx *x = *state;
    struct racer w[RACE_THREADS];
    race(x, false, w);
    for (int i = 0; i < RACE_THREADS; i++)
        assert_int_equal(w[i].err, CF_OK);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_decisions"), 1);
    race(x, true, w);
    int made = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        if (w[i].err == CF_OK)
            made++;
        else
            assert_int_equal(w[i].err, CF_ERR_CONFLICT);
    }
    assert_int_equal(made, 1);
}

/* Velocity keys -------------------------------------------------------------------------------- */

/* A counted (or not: counted_at_us 0) movement of payer n with its four keys. */
static void put_counted(struct fx *x, int n, int64_t counted_at_us, enum rules_action action)
{
    struct risk_decision_rec *r = rec_new(n, PAYER, action);
    snprintf(r->keys[RULES_KEY_USER], sizeof(r->keys[0]), "u:%s|EUR", PAYER);
    snprintf(r->keys[RULES_KEY_DEVICE], sizeof(r->keys[0]), "d:%032x|EUR", (unsigned)n);
    snprintf(r->keys[RULES_KEY_PAYEE], sizeof(r->keys[0]), "p:mer_%d|EUR", n);
    r->counted_at_us = counted_at_us;
    assert_int_equal(risk_decisions_put(x->d, r), CF_OK);
    free(r);
}

static void test_keys_round_trip(void **state)
{
    struct fx *x = *state;
    put_counted(x, 1, T0_US + 5, RULES_ACTION_ALLOW);
    struct risk_decision_rec *got = calloc(1, sizeof(*got));
    assert_non_null(got);
    assert_int_equal(risk_decisions_get(x->d, "op_00000001", got), CF_OK);
    assert_string_equal(got->keys[RULES_KEY_USER], "u:" PAYER "|EUR");
    assert_string_equal(got->keys[RULES_KEY_DEVICE], "d:00000000000000000000000000000001|EUR");
    assert_string_equal(got->keys[RULES_KEY_IP], "");
    assert_string_equal(got->keys[RULES_KEY_PAYEE], "p:mer_1|EUR");
    assert_int_equal(got->counted_at_us, T0_US + 5);
    size_t n = 0;
    assert_int_equal(risk_decisions_list(x->d, NULL, got, 1, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got->keys[RULES_KEY_PAYEE], "p:mer_1|EUR");
    /* malformed keys and times are refused, and nothing is written */
    static const char *const bad[] = {"u:a b|EUR", "u:\x01|EUR", "u:\xc3\xa9|EUR"};
    struct risk_decision_rec *r = rec_new(2, PAYER, RULES_ACTION_ALLOW);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(r->keys[RULES_KEY_IP], sizeof(r->keys[0]), "%s", bad[i]);
        assert_int_equal(risk_decisions_put(x->d, r), CF_ERR_INVALID_FIELD);
    }
    memset(r->keys[RULES_KEY_IP], 'k', sizeof(r->keys[0])); /* no NUL: too long */
    assert_int_equal(risk_decisions_put(x->d, r), CF_ERR_INVALID_FIELD);
    r->keys[RULES_KEY_IP][0] = '\0';
    r->counted_at_us = -1;
    assert_int_equal(risk_decisions_put(x->d, r), CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_decisions"), 1);
    free(r);
    free(got);
}

static void test_counted_set(void **state)
{
    struct fx *x = *state;
    put_counted(x, 1, 0, RULES_ACTION_CHALLENGE); /* written before the challenge is answered */
    struct risk_decisions_cursor cur = {0, 0};
    struct risk_decisions_counted page[4];
    size_t n = 9;
    assert_int_equal(risk_decisions_recent_keys(x->d, T0_US, &cur, page, 4, &n), CF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(risk_decisions_counted_set(x->d, "op_00000001", T0_US + 70), CF_OK);
    assert_int_equal(risk_decisions_counted_set(x->d, "op_00000001", T0_US + 99), CF_OK);
    assert_int_equal(risk_decisions_recent_keys(x->d, T0_US, &cur, page, 4, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_int_equal(page[0].counted_at_us, T0_US + 70); /* the first mark stands */
    assert_int_equal(page[0].amount_minor, 1000);
    assert_string_equal(page[0].keys[RULES_KEY_USER], "u:" PAYER "|EUR");
    assert_int_equal(risk_decisions_counted_set(x->d, "op_99999999", T0_US), CF_ERR_NOT_FOUND);
    assert_int_equal(risk_decisions_counted_set(x->d, "op 1", T0_US), CF_ERR_NOT_FOUND);
}

static void test_recent_keys_pages(void **state)
{
    struct fx *x = *state;
    const int64_t since = T0_US + 1000;
    /* 1..5 counted in order of their number, 6 and 7 at one time (a tie), 8 not counted (a
     * block), 9 counted before the window; put out of time order */
    put_counted(x, 5, since + 500, RULES_ACTION_ALLOW);
    put_counted(x, 1, since, RULES_ACTION_ALLOW);
    put_counted(x, 9, since - 1, RULES_ACTION_ALLOW);
    put_counted(x, 3, since + 300, RULES_ACTION_REVIEW);
    put_counted(x, 2, since + 200, RULES_ACTION_CHALLENGE);
    put_counted(x, 8, 0, RULES_ACTION_BLOCK);
    put_counted(x, 4, since + 400, RULES_ACTION_ALLOW);
    put_counted(x, 6, since + 600, RULES_ACTION_ALLOW);
    put_counted(x, 7, since + 600, RULES_ACTION_ALLOW);
    static const int want[] = {1, 2, 3, 4, 5, 6, 7};
    struct risk_decisions_cursor cur = {0, 0};
    struct risk_decisions_counted page[3];
    size_t got = 0, n = 3, pages = 0;
    while (n == 3) {
        assert_int_equal(risk_decisions_recent_keys(x->d, since, &cur, page, 3, &n), CF_OK);
        pages++;
        for (size_t i = 0; i < n; i++, got++) {
            assert_true(got < 7);
            char payee[32];
            snprintf(payee, sizeof(payee), "p:mer_%d|EUR", want[got]);
            assert_string_equal(page[i].keys[RULES_KEY_PAYEE], payee);
            assert_int_equal(page[i].amount_minor, 1000 * want[got]);
        }
    }
    assert_int_equal(got, 7);
    assert_int_equal(pages, 3);
    /* the cursor stays at the end: nothing more, until a newer row comes */
    assert_int_equal(risk_decisions_recent_keys(x->d, since, &cur, page, 3, &n), CF_OK);
    assert_int_equal(n, 0);
    put_counted(x, 10, since + 601, RULES_ACTION_ALLOW);
    assert_int_equal(risk_decisions_recent_keys(x->d, since, &cur, page, 3, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(page[0].keys[RULES_KEY_PAYEE], "p:mer_10|EUR");
    /* bounded to the newest: 3 of the 8 counted rows of the window are 6, 7 and 10 */
    assert_int_equal(risk_decisions_recent_keys_start(x->d, since, 3, &cur), CF_OK);
    assert_int_equal(risk_decisions_recent_keys(x->d, since, &cur, page, 3, &n), CF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(page[0].keys[RULES_KEY_PAYEE], "p:mer_6|EUR");
    assert_string_equal(page[2].keys[RULES_KEY_PAYEE], "p:mer_10|EUR");
    assert_int_equal(risk_decisions_recent_keys_start(x->d, since, 8, &cur), CF_OK);
    assert_int_equal(cur.at_us, 0); /* no more than 8: from the start */
    assert_int_equal(cur.row, 0);
}

/* Version 1 of the schema, as the first release wrote it (SQLite and PostgreSQL). */
#define V1_SCHEMA(blob, row_key)                                                                   \
    "CREATE TABLE risk_decisions (row " row_key ", op_id TEXT NOT NULL UNIQUE, party TEXT NOT "    \
    "NULL, kind TEXT NOT NULL, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL, "             \
    "action INTEGER NOT NULL, set_version BIGINT NOT NULL, matches TEXT NOT NULL, "                \
    "matches_omitted INTEGER NOT NULL, features TEXT NOT NULL, review_state INTEGER NOT NULL, "    \
    "reviewer TEXT NOT NULL, review_reason_sealed " blob ", created_at_us BIGINT NOT NULL, "       \
    "decided_at_us BIGINT NOT NULL);"                                                              \
    "CREATE INDEX risk_decisions_created ON risk_decisions(created_at_us);"

static void test_migration_from_v1(void **state)
{
    (void)state;
    struct fx *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    assert_int_equal(risk_fx_open(&x->b, "rdm", false, true), 0);
    const struct sql_migration v1[] = {{1, V1_SCHEMA("BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"),
                                        V1_SCHEMA("BYTEA", "BIGSERIAL PRIMARY KEY")}};
    assert_int_equal(sqldb_migrate(x->b.db, "risk_decisions", v1, 1), CF_OK);
    struct sql_value p[] = {SQL_I(T0_US)};
    risk_fx_exec(&x->b,
                 "INSERT INTO risk_decisions (op_id, party, kind, amount_minor, currency, action, "
                 "set_version, matches, matches_omitted, features, review_state, reviewer, "
                 "review_reason_sealed, created_at_us, decided_at_us) VALUES ('op_old', '" PAYER
                 "', 'send', 500, 'EUR', 0, 1, '', 0, '{\"v\":1}', 0, '', NULL, $1, 0)",
                 p, 1);
    assert_int_equal(risk_decisions_open(x->b.db, risk_fx_vault, &x->b, &x->d), CF_OK);
    struct risk_decision_rec *got = calloc(1, sizeof(*got));
    assert_non_null(got);
    assert_int_equal(risk_decisions_get(x->d, "op_old", got), CF_OK);
    for (int k = 0; k < RULES_KEYS_N; k++)
        assert_string_equal(got->keys[k], "");
    assert_int_equal(got->counted_at_us, 0);
    put_counted(x, 1, T0_US + 1, RULES_ACTION_ALLOW);
    struct risk_decisions_cursor cur = {0, 0};
    struct risk_decisions_counted page[2];
    size_t n = 0;
    assert_int_equal(risk_decisions_recent_keys(x->d, 1, &cur, page, 2, &n), CF_OK);
    assert_int_equal(n, 1); /* the old row is not counted */
    assert_string_equal(page[0].keys[RULES_KEY_PAYEE], "p:mer_1|EUR");
    risk_decisions_close(x->d);
    x->d = NULL;
    /* opening again finds version 2 and changes nothing */
    assert_int_equal(risk_decisions_open(x->b.db, risk_fx_vault, &x->b, &x->d), CF_OK);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_decisions"), 2);
    free(got);
    assert_int_equal(fx_teardown((void **)&x), 0);
}

/* A vault callback that has no master key 1 (only its "current" set). */
static const struct vault *no_key_one(void *ctx, uint32_t key_id)
{
    return key_id == 0 ? risk_fx_vault(ctx, 0) : NULL;
}

static void test_pseudonym(void **state)
{
    struct fx *x = *state;
    char a[RISK_DECISIONS_PSEUDONYM_HEX_BYTES], b[RISK_DECISIONS_PSEUDONYM_HEX_BYTES];
    assert_int_equal(risk_decisions_pseudonym(x->d, "velocity_ip", "203.0.113.7", a), CF_OK);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_int_equal(risk_decisions_pseudonym(x->d, "velocity_ip", "203.0.113.7", b), CF_OK);
    assert_string_equal(a, b);
    assert_int_equal(risk_decisions_pseudonym(x->d, "velocity_ip", "203.0.113.8", b), CF_OK);
    assert_string_not_equal(a, b);
    assert_int_equal(risk_decisions_pseudonym(x->d, "velocity_device", "203.0.113.7", b), CF_OK);
    assert_string_not_equal(a, b);
    /* another deployment (another master key): another pseudonym */
    struct fx y = {0};
    y.b.vault = risk_fx_vault_one_key();
    assert_non_null(y.b.vault);
    struct risk_decisions *other = NULL;
    assert_int_equal(risk_decisions_open(x->b.db, risk_fx_vault, &y.b, &other), CF_OK);
    assert_int_equal(risk_decisions_pseudonym(other, "velocity_ip", "203.0.113.7", b), CF_OK);
    assert_string_not_equal(a, b);
    risk_decisions_close(other);
    vault_free(y.b.vault);
    /* without master key 1, or with no value: refused, out untouched */
    assert_int_equal(risk_decisions_open(x->b.db, no_key_one, &x->b, &other), CF_OK);
    memcpy(b, a, sizeof(b));
    assert_int_equal(risk_decisions_pseudonym(other, "velocity_ip", "203.0.113.7", b),
                     CF_ERR_CONFIG);
    assert_string_equal(a, b);
    risk_decisions_close(other);
    assert_int_equal(risk_decisions_pseudonym(x->d, "velocity_ip", "", b), CF_ERR_INVALID_FIELD);
    assert_string_equal(a, b);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_round_trip),
        FX(test_stored_form),
        FX(test_put_idempotent),
        FX(test_review),
        FX(test_list_filters),
        FX(test_recent_and_dry_run),
        FX(test_races),
        FX(test_keys_round_trip),
        FX(test_counted_set),
        FX(test_recent_keys_pages),
        cmocka_unit_test(test_migration_from_v1),
        FX(test_pseudonym),
    };
    int failed = cmocka_run_group_tests_name("risk_decisions_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("risk_decisions_postgres", tests, NULL, NULL);
    } else {
        printf("risk_decisions_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
