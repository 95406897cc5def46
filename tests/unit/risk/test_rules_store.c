/*
 * test_rules_store.c - unit tests for the monitoring rules' store (src/risk/rules_store.c)
 * driven through rules_store.h, against SQLite (a fresh file per test) and, when
 * COFFER_TEST_PG_URL is set, against PostgreSQL (a fresh database per test, coffer_rs_<pid>_<n>,
 * dropped after). Times are passed in.
 *
 * A rule's life: create (v1), update (v2), disable, a second disable refused, enable, delete,
 * and create again (v6): versions never restart, the set version grows by one per change and
 * each version records it, history lists every version newest first and pages by version,
 * and get answers only live rules. Updates that only flip the flag are recorded as enable or
 * disable. Refusals (a create of a live id, an update or a delete of an id that is not live,
 * conditions that do not compile, malformed ids, authors and keys) store nothing and leave the
 * set version alone, and a compile error names its field and column. A key answers the version
 * it made, also after later changes; the same key with another request is refused. At most
 * RULES_SET_MAX rules are live; deleting one makes room. The current set is sorted by id and
 * compiles into a rules_set of the set version, which scores as the rules say; version_at
 * answers the version a past set held. Eight threads creating one id make one rule; eight
 * creating eight ids make eight distinct set versions; reads of the current set while rules are
 * created always answer the rules of the set version they answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "risk_fixture.h" /* the throwaway database */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "risk/rules_store.h"
#include "store/sql/sql.h"

#define T0_US 1700000000000000LL
#define RACE_THREADS 8
#define STAFF "usr_000000000000R"

struct fx {
    struct risk_fx b; /* the database */
    struct risk_rules_store *s;
};

static int fx_setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -1;
    *state = x;
    if (risk_fx_open(&x->b, "rs", false, false) != 0)
        return -1;
    return risk_rules_store_open(x->b.db, &x->s) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *x = *state;
    risk_rules_store_close(x->s);
    risk_fx_close(&x->b);
    free(x);
    return 0;
}

/* Helpers -------------------------------------------------------------------------------------- */

static struct rules_rule_def def_of(const char *id, const char *condition, enum rules_action a,
                                    const char *reason, bool enabled)
{
    return (struct rules_rule_def){.id = id,
                                   .id_len = strlen(id),
                                   .condition = condition,
                                   .condition_len = strlen(condition),
                                   .action = a,
                                   .reason = reason,
                                   .reason_len = strlen(reason),
                                   .description = "",
                                   .description_len = 0,
                                   .enabled = enabled};
}

static enum cf_err change(struct fx *x, const struct rules_rule_def *d, enum risk_rules_change k,
                          int64_t at_us, struct risk_rules_version *out)
{
    return risk_rules_store_change(x->s, d, k, STAFF, NULL, at_us, out, NULL, NULL, NULL);
}

static uint64_t set_version(struct fx *x)
{
    uint64_t v = 99;
    assert_int_equal(risk_rules_store_set_version(x->s, &v), CF_OK);
    return v;
}

static struct risk_features eur(int64_t amount_minor)
{
    struct risk_features f;
    memset(&f, 0, sizeof(f));
    f.amount_minor = amount_minor;
    assert_int_equal(rules_features_text_set(f.currency, "EUR", 3), CF_OK);
    assert_int_equal(rules_features_text_set(f.kind, "send", 4), CF_OK);
    return f;
}

/* Tests ---------------------------------------------------------------------------------------- */

static void test_life(void **state)
{
    struct fx *x = *state;
    struct risk_rules_version v, h[RISK_RULES_HISTORY_MAX];
    size_t n = 0;
    assert_int_equal(set_version(x), 0);
    struct rules_rule_def d = def_of("big_eur", "currency == \"EUR\" and amount_minor > 100000",
                                     RULES_ACTION_REVIEW, "large_amount", true);
    d.description = "large euro amounts";
    d.description_len = strlen(d.description);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_CREATE, T0_US, &v), CF_OK);
    assert_int_equal(v.version, 1);
    assert_int_equal(v.set_version, 1);
    assert_int_equal(v.change, RISK_RULES_CHANGE_CREATE);
    assert_string_equal(v.condition, "currency == \"EUR\" and amount_minor > 100000");
    assert_string_equal(v.description, "large euro amounts");
    assert_string_equal(v.changed_by, STAFF);
    assert_int_equal(v.changed_at_us, T0_US);

    d.condition = "currency == \"EUR\" and amount_minor > 200000";
    d.condition_len = strlen(d.condition);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_UPDATE, T0_US + 1, &v), CF_OK);
    assert_int_equal(v.version, 2);
    assert_int_equal(v.set_version, 2);
    assert_int_equal(v.change, RISK_RULES_CHANGE_UPDATE);

    struct rules_rule_def only_id = {.id = "big_eur", .id_len = 7};
    assert_int_equal(change(x, &only_id, RISK_RULES_CHANGE_DISABLE, T0_US + 2, &v), CF_OK);
    assert_int_equal(v.version, 3);
    assert_false(v.enabled);
    assert_string_equal(v.condition, "currency == \"EUR\" and amount_minor > 200000");
    assert_string_equal(v.description, "large euro amounts"); /* carried over */
    struct rules_error e = {0};
    assert_int_equal(risk_rules_store_change(x->s, &only_id, RISK_RULES_CHANGE_DISABLE, STAFF, NULL,
                                             T0_US, &v, NULL, NULL, &e),
                     CF_ERR_CONFLICT);
    assert_string_equal(e.message, "already disabled");
    assert_int_equal(change(x, &only_id, RISK_RULES_CHANGE_ENABLE, T0_US + 3, &v), CF_OK);
    assert_true(v.enabled);
    assert_int_equal(v.version, 4);
    assert_int_equal(change(x, &only_id, RISK_RULES_CHANGE_DELETE, T0_US + 4, &v), CF_OK);
    assert_int_equal(v.version, 5);
    assert_int_equal(v.set_version, 5);
    assert_int_equal(v.change, RISK_RULES_CHANGE_DELETE);
    assert_int_equal(risk_rules_store_get(x->s, "big_eur", 7, &v), CF_ERR_NOT_FOUND);
    uint64_t sv = 0;
    assert_int_equal(risk_rules_store_current(x->s, h, RULES_SET_MAX, &n, &sv), CF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(sv, 5);

    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_CREATE, T0_US + 5, &v), CF_OK);
    assert_int_equal(v.version, 6); /* versions never restart */
    assert_int_equal(v.set_version, 6);
    assert_int_equal(risk_rules_store_get(x->s, "big_eur", 7, &v), CF_OK);
    assert_int_equal(v.version, 6);

    assert_int_equal(risk_rules_store_history(x->s, "big_eur", 7, 0, h, RISK_RULES_HISTORY_MAX, &n),
                     CF_OK);
    assert_int_equal(n, 6);
    static const uint8_t kinds[] = {RISK_RULES_CHANGE_CREATE, RISK_RULES_CHANGE_DELETE,
                                    RISK_RULES_CHANGE_ENABLE, RISK_RULES_CHANGE_DISABLE,
                                    RISK_RULES_CHANGE_UPDATE, RISK_RULES_CHANGE_CREATE};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(h[i].version, 6 - i);
        assert_int_equal(h[i].set_version, 6 - i);
        assert_int_equal(h[i].change, kinds[i]);
    }
    assert_int_equal(risk_rules_store_history(x->s, "big_eur", 7, 4, h, 2, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_int_equal(h[0].version, 3);
    assert_int_equal(h[1].version, 2);
    assert_int_equal(risk_rules_store_history(x->s, "nope", 4, 0, h, 10, &n), CF_OK);
    assert_int_equal(n, 0);
    assert_string_equal(risk_rules_change_name(RISK_RULES_CHANGE_DISABLE), "disable");
    assert_string_equal(risk_rules_change_name(77), "unknown");
}

static void test_update_flag_only(void **state)
{
    struct fx *x = *state;
    struct risk_rules_version v;
    struct rules_rule_def d = def_of("r1", "payee_new", RULES_ACTION_CHALLENGE, "new_payee", true);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_CREATE, T0_US, &v), CF_OK);
    d.enabled = false;
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_UPDATE, T0_US, &v), CF_OK);
    assert_int_equal(v.change, RISK_RULES_CHANGE_DISABLE);
    assert_false(v.enabled);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_UPDATE, T0_US, &v), CF_OK);
    assert_int_equal(v.change, RISK_RULES_CHANGE_UPDATE); /* nothing differs: an update */
    d.enabled = true;
    d.reason = "first_payee";
    d.reason_len = strlen(d.reason);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_UPDATE, T0_US, &v), CF_OK);
    assert_int_equal(v.change, RISK_RULES_CHANGE_UPDATE); /* more than the flag */
    assert_true(v.enabled);
    assert_int_equal(v.version, 4);
}

static void test_refusals(void **state)
{
    struct fx *x = *state;
    struct risk_rules_version v;
    struct rules_error e = {0};
    struct rules_rule_def d = def_of("r1", "amout_minor > 5", RULES_ACTION_BLOCK, "big", true);
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, NULL, T0_US,
                                             &v, NULL, NULL, &e),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(e.field, "condition");
    assert_int_equal(e.column, 1);
    assert_string_equal(e.message, "unknown feature");
    d.condition = "amount_minor > 5 and currency == 5";
    d.condition_len = strlen(d.condition);
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, NULL, T0_US,
                                             &v, NULL, NULL, &e),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(e.column, 34);
    d = def_of("Bad-Id", "payee_new", RULES_ACTION_BLOCK, "x", true);
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, NULL, T0_US,
                                             &v, NULL, NULL, &e),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(e.field, "id");
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_DELETE, T0_US, &v), CF_ERR_INVALID_FIELD);
    assert_int_equal(set_version(x), 0);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_rule_versions"), 0);

    d = def_of("r1", "payee_new", RULES_ACTION_BLOCK, "x", true);
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, "", NULL, T0_US,
                                             &v, NULL, NULL, NULL),
                     CF_ERR_INVALID_FIELD); /* no author */
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, "a b", NULL, T0_US,
                                             &v, NULL, NULL, NULL),
                     CF_ERR_INVALID_FIELD);
    struct risk_rules_idem bad = {.key = ""};
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, &bad, T0_US,
                                             &v, NULL, NULL, NULL),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_UPDATE, T0_US, &v), CF_ERR_NOT_FOUND);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_DELETE, T0_US, &v), CF_ERR_NOT_FOUND);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_ENABLE, T0_US, &v), CF_ERR_NOT_FOUND);
    assert_int_equal(set_version(x), 0);

    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_CREATE, T0_US, &v), CF_OK);
    e = (struct rules_error){0};
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, NULL, T0_US,
                                             &v, NULL, NULL, &e),
                     CF_ERR_CONFLICT);
    assert_string_equal(e.field, "id");
    assert_string_equal(e.message, "exists");
    d.condition = "nope";
    d.condition_len = 4;
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_UPDATE, T0_US, &v), CF_ERR_INVALID_FIELD);
    assert_int_equal(set_version(x), 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_rule_versions"), 1);
    assert_int_equal(risk_rules_store_get(x->s, "r1", 2, &v), CF_OK);
    assert_string_equal(v.condition, "payee_new"); /* the refused update left it */
    assert_int_equal(risk_rules_store_get(x->s, "R1", 2, &v), CF_ERR_NOT_FOUND);
}

static void test_idempotency(void **state)
{
    struct fx *x = *state;
    struct risk_rules_version v, w;
    bool replay = true;
    uint64_t sv = 0;
    struct risk_rules_idem k1 = {.key = "usr_1:k1"};
    memset(k1.request_hash, 1, HASH_BYTES);
    struct rules_rule_def d = def_of("r1", "device_new", RULES_ACTION_CHALLENGE, "dev", true);
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, &k1, T0_US,
                                             &v, &sv, &replay, NULL),
                     CF_OK);
    assert_false(replay);
    assert_int_equal(sv, 1);
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, &k1,
                                             T0_US + 9, &w, &sv, &replay, NULL),
                     CF_OK);
    assert_true(replay);
    assert_int_equal(sv, 1);
    assert_int_equal(w.version, 1);
    assert_int_equal(w.changed_at_us, T0_US); /* the stored one */
    assert_int_equal(set_version(x), 1);      /* the replay's bump was rolled back */

    struct rules_rule_def only = {.id = "r1", .id_len = 2};
    struct risk_rules_idem k2 = {.key = "usr_1:k2"};
    memset(k2.request_hash, 2, HASH_BYTES);
    assert_int_equal(risk_rules_store_change(x->s, &only, RISK_RULES_CHANGE_DELETE, STAFF, &k2,
                                             T0_US, &v, &sv, &replay, NULL),
                     CF_OK);
    assert_int_equal(sv, 2);
    /* the create's key still answers the create, although the rule is gone */
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, &k1, T0_US,
                                             &w, &sv, &replay, NULL),
                     CF_OK);
    assert_true(replay);
    assert_int_equal(w.change, RISK_RULES_CHANGE_CREATE);
    assert_int_equal(sv, 1);
    struct risk_rules_idem other = k1;
    memset(other.request_hash, 3, HASH_BYTES);
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, &other,
                                             T0_US, &w, &sv, &replay, NULL),
                     CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(set_version(x), 2);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_rule_versions"), 2);
}

static void test_limit(void **state)
{
    struct fx *x = *state;
    struct risk_rules_version v;
    char id[16];
    for (int i = 0; i < RULES_SET_MAX; i++) {
        snprintf(id, sizeof(id), "r%03d", i);
        struct rules_rule_def d = def_of(id, "kyc_tier < 1", RULES_ACTION_REVIEW, "tier", i % 2);
        assert_int_equal(change(x, &d, RISK_RULES_CHANGE_CREATE, T0_US, &v), CF_OK);
    }
    struct rules_rule_def d = def_of("one_more", "kyc_tier < 1", RULES_ACTION_REVIEW, "tier", true);
    struct rules_error e = {0};
    assert_int_equal(risk_rules_store_change(x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, NULL, T0_US,
                                             &v, NULL, NULL, &e),
                     CF_ERR_CONFLICT);
    assert_string_equal(e.message, "at most 200 live rules");
    struct rules_rule_def gone = {.id = "r007", .id_len = 4};
    assert_int_equal(change(x, &gone, RISK_RULES_CHANGE_DELETE, T0_US, &v), CF_OK);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_CREATE, T0_US, &v), CF_OK);
    struct risk_rules_version *all = calloc(RULES_SET_MAX, sizeof(*all));
    size_t n = 0;
    uint64_t sv = 0;
    assert_non_null(all);
    assert_int_equal(risk_rules_store_current(x->s, all, RULES_SET_MAX, &n, &sv), CF_OK);
    assert_int_equal(n, RULES_SET_MAX);
    assert_int_equal(sv, RULES_SET_MAX + 2);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(all[i - 1].id, all[i].id) < 0); /* sorted by id */
    assert_int_equal(risk_rules_store_current(x->s, all, 10, &n, &sv), CF_ERR_RANGE_TOO_LARGE);
    struct rules_set *set = NULL;
    assert_int_equal(risk_rules_store_set_build(x->s, &set, NULL), CF_OK);
    assert_int_equal(rules_set_rules_n(set), RULES_SET_MAX);
    assert_int_equal(rules_set_version(set), RULES_SET_MAX + 2);
    struct risk_features f = eur(5);
    struct rules_decision dec;
    rules_evaluate(set, &f, &dec);
    assert_int_equal(dec.action, RULES_ACTION_REVIEW);
    assert_int_equal(dec.matches_n + dec.matches_omitted_n, RULES_SET_MAX / 2); /* r007 went */
    rules_set_destroy(set);
    free(all);
}

static void test_set_and_version_at(void **state)
{
    struct fx *x = *state;
    struct risk_rules_version v;
    struct rules_set *set = NULL;
    assert_int_equal(risk_rules_store_set_build(x->s, &set, NULL), CF_OK);
    assert_int_equal(rules_set_version(set), 0);
    assert_int_equal(rules_set_rules_n(set), 0);
    rules_set_destroy(set);

    struct rules_rule_def big = def_of("zz_big", "currency == \"EUR\" and amount_minor > 1000",
                                       RULES_ACTION_BLOCK, "big", true);
    struct rules_rule_def mid =
        def_of("aa_mid", "amount_minor > 100", RULES_ACTION_REVIEW, "mid", false);
    assert_int_equal(change(x, &big, RISK_RULES_CHANGE_CREATE, T0_US, &v), CF_OK); /* set 1 */
    assert_int_equal(change(x, &mid, RISK_RULES_CHANGE_CREATE, T0_US, &v), CF_OK); /* set 2 */
    big.condition = "currency == \"EUR\" and amount_minor > 5000";
    big.condition_len = strlen(big.condition);
    assert_int_equal(change(x, &big, RISK_RULES_CHANGE_UPDATE, T0_US, &v), CF_OK); /* set 3 */

    assert_int_equal(risk_rules_store_set_build(x->s, &set, NULL), CF_OK);
    assert_int_equal(rules_set_version(set), 3);
    assert_int_equal(rules_set_rules_n(set), 2);
    assert_string_equal(rules_set_rule_at(set, 0)->id, "aa_mid"); /* by id */
    struct risk_features f = eur(2000);
    struct rules_decision dec;
    rules_evaluate(set, &f, &dec);
    assert_int_equal(dec.action, RULES_ACTION_ALLOW); /* mid is disabled; big now > 5000 */
    assert_int_equal(dec.set_version, 3);
    f = eur(6000);
    rules_evaluate(set, &f, &dec);
    assert_int_equal(dec.action, RULES_ACTION_BLOCK);
    rules_set_destroy(set);

    assert_int_equal(risk_rules_store_version_at(x->s, "zz_big", 6, 2, &v), CF_OK);
    assert_int_equal(v.version, 1);
    assert_string_equal(v.condition, "currency == \"EUR\" and amount_minor > 1000");
    assert_int_equal(risk_rules_store_version_at(x->s, "zz_big", 6, 3, &v), CF_OK);
    assert_int_equal(v.version, 2);
    assert_int_equal(risk_rules_store_version_at(x->s, "aa_mid", 6, 1, &v), CF_ERR_NOT_FOUND);
    struct rules_rule_def gone = {.id = "aa_mid", .id_len = 6};
    assert_int_equal(change(x, &gone, RISK_RULES_CHANGE_DELETE, T0_US, &v), CF_OK); /* set 4 */
    assert_int_equal(risk_rules_store_version_at(x->s, "aa_mid", 6, 4, &v), CF_ERR_NOT_FOUND);
    assert_int_equal(risk_rules_store_version_at(x->s, "aa_mid", 6, 3, &v), CF_OK);
}

static void test_corrupt_rule(void **state)
{
    struct fx *x = *state;
    struct risk_rules_version v;
    struct rules_rule_def d = def_of("r1", "payee_new", RULES_ACTION_BLOCK, "p", true);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_CREATE, T0_US, &v), CF_OK);
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(x->b.db, &tx), CF_OK); /* a feature that left the registry */
    assert_int_equal(
        sql_exec(tx, "UPDATE risk_rule_versions SET condition = 'gone_feature'", NULL, 0, NULL),
        CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    struct rules_set *set = NULL;
    char bad[RULES_ID_BYTES_MAX + 1] = "";
    assert_int_equal(risk_rules_store_set_build(x->s, &set, bad), CF_ERR_CORRUPT);
    assert_null(set);
    assert_string_equal(bad, "r1");
}

/* Races ---------------------------------------------------------------------------------------- */

struct racer {
    struct fx *x;
    pthread_barrier_t *start;
    char id[16];
    char key[32];
    enum cf_err err;
    uint64_t set_version;
};

static void *race_main(void *arg)
{
    struct racer *r = arg;
    struct rules_rule_def d = def_of(r->id, "hour_utc < 6", RULES_ACTION_CHALLENGE, "night", true);
    struct risk_rules_idem k = {.key = r->key};
    memset(k.request_hash, 7, HASH_BYTES);
    pthread_barrier_wait(r->start);
    r->err = risk_rules_store_change(r->x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, &k, T0_US, NULL,
                                     &r->set_version, NULL, NULL);
    return NULL;
}

static void race(struct fx *x, bool same_id, struct racer *w)
{
    pthread_t th[RACE_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACE_THREADS);
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct racer){.x = x, .start = &start};
        snprintf(w[i].id, sizeof(w[i].id), same_id ? "same" : "id%d", i);
        snprintf(w[i].key, sizeof(w[i].key), "usr_1:%s%d", same_id ? "s" : "d", i);
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
    race(x, true, w);
    int made = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        if (w[i].err == CF_OK)
            made++;
        else
            assert_int_equal(w[i].err, CF_ERR_CONFLICT);
    }
    assert_int_equal(made, 1);
    assert_int_equal(set_version(x), 1);

    race(x, false, w);
    bool seen[RACE_THREADS + 2] = {false};
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(w[i].err, CF_OK);
        assert_true(w[i].set_version >= 2 && w[i].set_version <= RACE_THREADS + 1);
        assert_false(seen[w[i].set_version]); /* never repeated */
        seen[w[i].set_version] = true;
    }
    assert_int_equal(set_version(x), RACE_THREADS + 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_rule_heads WHERE deleted = 0"),
                     RACE_THREADS + 1);
}

#define SNAPSHOT_CREATES 60

struct writer_arg {
    struct fx *x;
    volatile int done;
};

static void *creator_main(void *arg)
{
    struct writer_arg *w = arg;
    char id[16];
    for (int i = 0; i < SNAPSHOT_CREATES; i++) {
        snprintf(id, sizeof(id), "snap_%02d", i);
        struct rules_rule_def d = def_of(id, "mcc == 7995", RULES_ACTION_BLOCK, "gambling", true);
        if (risk_rules_store_change(w->x->s, &d, RISK_RULES_CHANGE_CREATE, STAFF, NULL, T0_US, NULL,
                                    NULL, NULL, NULL) != CF_OK)
            break;
    }
    w->done = 1;
    return NULL;
}

/* While rules are created (only creates: set version v holds exactly v rules), every read of
 * the current set answers the rules of the set version it answers. */
static void test_current_consistent(void **state)
{
    struct fx *x = *state;
    struct risk_rules_version *all = calloc(RULES_SET_MAX, sizeof(*all));
    struct writer_arg w = {.x = x};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, creator_main, &w), 0);
    int reads = 0;
    while (!w.done || reads == 0) {
        size_t n = 0;
        uint64_t sv = 0;
        assert_int_equal(risk_rules_store_current(x->s, all, RULES_SET_MAX, &n, &sv), CF_OK);
        assert_int_equal(n, sv);
        struct rules_set *set = NULL;
        assert_int_equal(risk_rules_store_set_build(x->s, &set, NULL), CF_OK);
        assert_int_equal(rules_set_rules_n(set), rules_set_version(set));
        rules_set_destroy(set);
        reads++;
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(set_version(x), SNAPSHOT_CREATES);
    free(all);
}

/* Base versions -------------------------------------------------------------------------------- */

static enum cf_err change_based(struct fx *x, const struct rules_rule_def *d,
                                enum risk_rules_change k, int64_t base,
                                const struct risk_rules_idem *idem, struct risk_rules_version *out,
                                bool *replay, struct rules_error *e)
{
    return risk_rules_store_change_based(x->s, d, k, base, STAFF, idem, T0_US, out, NULL, replay,
                                         e);
}

/* Two analysts edit one rule from version 1: the first wins, the second's stale base is refused
 * (field base_version) and writes nothing; a key's replay answers despite its stale base; a
 * change to another rule does not make a base stale; a base for create names the id's latest
 * version (0: never created). */
static void test_base_version(void **state)
{
    struct fx *x = *state;
    struct risk_rules_version v, got;
    struct rules_error e = {0};
    bool replay = true;
    struct rules_rule_def d =
        def_of("night", "hour_utc < 6", RULES_ACTION_CHALLENGE, "night", true);
    assert_int_equal(change_based(x, &d, RISK_RULES_CHANGE_CREATE, 1, NULL, &v, NULL, &e),
                     CF_ERR_CONFLICT);
    assert_string_equal(e.field, "base_version");
    assert_int_equal(set_version(x), 0);
    assert_int_equal(change_based(x, &d, RISK_RULES_CHANGE_CREATE, 0, NULL, &v, &replay, &e),
                     CF_OK);
    assert_int_equal(v.version, 1);
    assert_false(replay);

    struct rules_rule_def first =
        def_of("night", "hour_utc < 5", RULES_ACTION_REVIEW, "first_analyst", true);
    struct rules_rule_def second =
        def_of("night", "hour_utc < 4", RULES_ACTION_BLOCK, "second_analyst", true);
    struct risk_rules_idem k1 = {.key = "usr_1:first"};
    memset(k1.request_hash, 1, HASH_BYTES);
    assert_int_equal(change_based(x, &first, RISK_RULES_CHANGE_UPDATE, 1, &k1, &v, &replay, &e),
                     CF_OK);
    assert_int_equal(v.version, 2);
    memset(&e, 0, sizeof(e));
    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(change_based(x, &second, RISK_RULES_CHANGE_UPDATE, 1, NULL, &got, NULL, &e),
                     CF_ERR_CONFLICT);
    assert_string_equal(e.field, "base_version");
    assert_int_equal(((unsigned char *)&got)[0], 0x5a); /* untouched */
    assert_int_equal(set_version(x), 2);
    assert_int_equal(risk_rules_store_get(x->s, "night", 5, &got), CF_OK);
    assert_int_equal(got.version, 2);
    assert_string_equal(got.reason, "first_analyst");
    /* the first analyst's retry replays although its base is stale now */
    assert_int_equal(change_based(x, &first, RISK_RULES_CHANGE_UPDATE, 1, &k1, &v, &replay, &e),
                     CF_OK);
    assert_true(replay);
    assert_int_equal(v.version, 2);

    /* another rule's change leaves this rule's base current */
    struct rules_rule_def other =
        def_of("other", "mcc == 7995", RULES_ACTION_BLOCK, "gambling", true);
    assert_int_equal(change(x, &other, RISK_RULES_CHANGE_CREATE, T0_US, NULL), CF_OK);
    struct rules_rule_def only = {.id = "night", .id_len = 5};
    assert_int_equal(change_based(x, &only, RISK_RULES_CHANGE_DISABLE, 2, NULL, &v, NULL, &e),
                     CF_OK);
    assert_int_equal(v.version, 3);
    assert_int_equal(change_based(x, &only, RISK_RULES_CHANGE_DELETE, 2, NULL, &v, NULL, &e),
                     CF_ERR_CONFLICT);
    assert_int_equal(change_based(x, &only, RISK_RULES_CHANGE_DELETE, 3, NULL, &v, NULL, &e),
                     CF_OK);
    assert_int_equal(v.version, 4);
    /* created again from the delete's version; an update of a deleted rule from its version is
     * not found */
    assert_int_equal(change_based(x, &first, RISK_RULES_CHANGE_UPDATE, 4, NULL, &v, NULL, &e),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(change_based(x, &d, RISK_RULES_CHANGE_CREATE, 0, NULL, &v, NULL, &e),
                     CF_ERR_CONFLICT);
    assert_int_equal(change_based(x, &d, RISK_RULES_CHANGE_CREATE, 4, NULL, &v, NULL, &e), CF_OK);
    assert_int_equal(v.version, 5);
}

struct based_racer {
    struct fx *x;
    pthread_barrier_t *start;
    char reason[16];
    enum cf_err err;
};

static void *based_race_main(void *arg)
{
    struct based_racer *r = arg;
    struct rules_rule_def d = def_of("race", "hour_utc < 6", RULES_ACTION_REVIEW, r->reason, true);
    pthread_barrier_wait(r->start);
    r->err = risk_rules_store_change_based(r->x->s, &d, RISK_RULES_CHANGE_UPDATE, 1, STAFF, NULL,
                                           T0_US, NULL, NULL, NULL, NULL);
    return NULL;
}

/* Analysts updating one rule from the same version at once: exactly one wins, the rule is
 * theirs, every other is refused (the check is atomic with the write). */
static void test_base_version_race(void **state)
{
    struct fx *x = *state;
    struct rules_rule_def d = def_of("race", "hour_utc < 6", RULES_ACTION_REVIEW, "start", true);
    assert_int_equal(change(x, &d, RISK_RULES_CHANGE_CREATE, T0_US, NULL), CF_OK);
    struct based_racer w[RACE_THREADS];
    pthread_t th[RACE_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACE_THREADS);
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct based_racer){.x = x, .start = &start};
        snprintf(w[i].reason, sizeof(w[i].reason), "analyst_%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, based_race_main, &w[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
    int won = -1;
    for (int i = 0; i < RACE_THREADS; i++) {
        if (w[i].err == CF_OK) {
            assert_int_equal(won, -1);
            won = i;
        } else {
            assert_int_equal(w[i].err, CF_ERR_CONFLICT);
        }
    }
    assert_true(won >= 0);
    struct risk_rules_version v;
    assert_int_equal(risk_rules_store_get(x->s, "race", 4, &v), CF_OK);
    assert_int_equal(v.version, 2);
    assert_string_equal(v.reason, w[won].reason);
    assert_int_equal(set_version(x), 2);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_life),
        FX(test_update_flag_only),
        FX(test_refusals),
        FX(test_idempotency),
        FX(test_limit),
        FX(test_set_and_version_at),
        FX(test_corrupt_rule),
        FX(test_races),
        FX(test_current_consistent),
        FX(test_base_version),
        FX(test_base_version_race),
    };
    int failed = cmocka_run_group_tests_name("risk_rules_store_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("risk_rules_store_postgres", tests, NULL, NULL);
    } else {
        printf("risk_rules_store_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
