/*
 * test_rules.c - unit tests for rules.c: every operator and literal type, precedence (checked
 * against randomly generated expression trees), the feature registry and velocity features,
 * type and syntax errors with their columns, hostile conditions (deep nesting, overlong, NUL
 * bytes, unterminated strings, integers beyond int64_t, random bytes), rule field checks,
 * most-severe-wins with every reason listed, disabled rules, sets, messages and dry runs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "risk/rules.h"

/* Written into outputs before a call that must fail, to check they are left untouched. */
#define SENTINEL_BYTE 0x5A

static uint64_t lcg_next(uint64_t *lcg_state)
{
    *lcg_state = *lcg_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *lcg_state >> 17;
}

static struct rules_rule_def def_of(const char *condition, size_t len, enum rules_action action)
{
    struct rules_rule_def d = {
        .id = "r_test",
        .id_len = 6,
        .condition = condition,
        .condition_len = len,
        .action = action,
        .reason = "test_reason",
        .reason_len = 11,
        .description = NULL,
        .description_len = 0,
        .enabled = true,
    };
    return d;
}

/* Compiles condition (len bytes) and returns the error code; *out and *e as the call left them. */
static enum cf_err compile_len(const char *condition, size_t len, struct rules_compiled_rule *out,
                               struct rules_error *e)
{
    struct rules_rule_def d = def_of(condition, len, RULES_ACTION_REVIEW);
    return rules_rule_compile(&d, out, e);
}

static struct rules_compiled_rule *compile_or_fail(const char *condition)
{
    static struct rules_compiled_rule r;
    struct rules_error e = {0};
    if (compile_len(condition, strlen(condition), &r, &e) != CF_OK)
        fail_msg("'%s' does not compile: column %zu: %s", condition, e.column, e.message);
    return &r;
}

static bool holds(const char *condition, const struct risk_features *f)
{
    return rules_rule_matches(compile_or_fail(condition), f);
}

/* Expects condition to fail at column with a message containing `words`; checks *out is
 * untouched. */
static void expect_error_len(const char *condition, size_t len, size_t column, const char *words)
{
    static struct rules_compiled_rule r, sentinel;
    memset(&r, SENTINEL_BYTE, sizeof(r));
    memset(&sentinel, SENTINEL_BYTE, sizeof(sentinel));
    struct rules_error e = {0};
    enum cf_err err = compile_len(condition, len, &r, &e);
    if (err != CF_ERR_INVALID_FIELD)
        fail_msg("'%.*s' compiled (%d)", (int)len, condition, (int)err);
    assert_string_equal(e.field, "condition");
    if (e.column != column || strstr(e.message, words) == NULL)
        fail_msg("'%.*s': column %zu '%s', expected column %zu '%s'", (int)len, condition, e.column,
                 e.message, column, words);
    assert_memory_equal(&r, &sentinel, sizeof(r));
}

static void expect_error(const char *condition, size_t column, const char *words)
{
    expect_error_len(condition, strlen(condition), column, words);
}

static void text_set(char dst[RULES_TEXT_BYTES_MAX], const char *text)
{
    assert_int_equal(rules_features_text_set(dst, text, strlen(text)), CF_OK);
}

static struct risk_features features_base(void)
{
    struct risk_features f;
    memset(&f, 0, sizeof(f));
    f.amount_minor = 100;
    text_set(f.currency, "EUR");
    text_set(f.kind, "send");
    text_set(f.payee_kind, "user");
    text_set(f.ip_country, "DE");
    text_set(f.home_country, "DE");
    f.hour_utc = 12;
    return f;
}

/* Operators ------------------------------------------------------------------------------------ */

/* x <op> y for ops[o] of test_integer_comparisons, computed by C. */
static bool compare_want(size_t o, int64_t x, int64_t y)
{
    switch (o) {
    case 0:
        return x == y;
    case 1:
        return x != y;
    case 2:
        return x < y;
    case 3:
        return x <= y;
    case 4:
        return x > y;
    default:
        return x >= y;
    }
}

static void test_integer_comparisons(void **state)
{
    (void)state;
    struct risk_features f = features_base();
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    static const int64_t amounts[] = {INT64_MIN, -1, 0, 99, 100, 101, INT64_MAX};
    static const char *const literals[] = {"-9223372036854775808", "-1", "0", "100",
                                           "9223372036854775807"};
    static const int64_t literal_values[] = {INT64_MIN, -1, 0, 100, INT64_MAX};
    char cond[128];
    for (size_t a = 0; a < sizeof(amounts) / sizeof(amounts[0]); a++) {
        f.amount_minor = amounts[a];
        for (size_t o = 0; o < 6; o++) {
            for (size_t l = 0; l < sizeof(literals) / sizeof(literals[0]); l++) {
                int64_t x = amounts[a], y = literal_values[l];
                snprintf(cond, sizeof(cond), "amount_minor %s %s", ops[o], literals[l]);
                if (holds(cond, &f) != compare_want(o, x, y))
                    fail_msg("%s with amount %lld", cond, (long long)x);
            }
        }
    }
    f.amount_minor = 7;
    assert_true(holds("amount_minor in [1, 7, 9]", &f));
    assert_false(holds("amount_minor in [1, 8, 9]", &f));
    assert_true(holds("amount_minor in [7]", &f));
    assert_true(holds("amount_minor==7", &f)); /* no spaces needed */
    assert_true(holds("\tamount_minor\r\n==\n7 ", &f));
    assert_true(holds("amount_minor > 0000006", &f)); /* leading zeros are decimal */
}

static void test_text_comparisons(void **state)
{
    (void)state;
    struct risk_features f = features_base();
    assert_true(holds("currency == \"EUR\"", &f));
    assert_false(holds("currency != \"EUR\"", &f));
    assert_false(holds("currency == \"USD\"", &f));
    assert_true(holds("currency != \"USD\"", &f));
    assert_true(holds("currency in [\"USD\", \"EUR\"]", &f));
    assert_false(holds("currency in [\"USD\", \"GBP\"]", &f));
    assert_true(holds("kind in [\"send\", \"payout\"]", &f));
    assert_true(holds("payee_kind == \"user\"", &f));
    assert_false(holds("ip_country == \"\"", &f));
    text_set(f.ip_country, "");
    assert_true(holds("ip_country == \"\"", &f));
    assert_true(holds("ip_country in [\"\", \"KP\"]", &f));
    text_set(f.ip_country, "KP");
    assert_true(holds("ip_country in [\"IR\", \"KP\"]", &f));
    /* A prefix is not equal. */
    text_set(f.kind, "payout");
    assert_false(holds("kind == \"payment\"", &f));
    /* A sloppy caller's text without NUL is compared safely and equals no literal. */
    memset(f.currency, 'E', sizeof(f.currency));
    assert_false(holds("currency == \"EUR\"", &f));
    assert_true(holds("currency != \"EUR\"", &f));
}

static void test_boolean_features(void **state)
{
    (void)state;
    struct risk_features f = features_base();
    for (int v = 0; v <= 1; v++) {
        f.payee_new = v;
        assert_int_equal(holds("payee_new", &f), v);
        assert_int_equal(holds("payee_new == true", &f), v);
        assert_int_equal(holds("payee_new == false", &f), !v);
        assert_int_equal(holds("payee_new != true", &f), !v);
        assert_int_equal(holds("payee_new != false", &f), v);
        assert_int_equal(holds("not payee_new", &f), !v);
        assert_int_equal(holds("not not payee_new", &f), v);
        assert_int_equal(holds("not not not payee_new", &f), !v);
    }
}

/* Precedence ----------------------------------------------------------------------------------- */

static void test_precedence_examples(void **state)
{
    (void)state;
    struct risk_features f = features_base();
    for (int bits = 0; bits < 16; bits++) {
        bool p = bits & 1, d = bits & 2, c = bits & 4, big = bits & 8;
        f.payee_new = p;
        f.device_new = d;
        f.country_mismatch = c;
        f.amount_minor = big ? 1000 : 1;
        assert_int_equal(holds("payee_new or device_new and country_mismatch", &f), p || (d && c));
        assert_int_equal(holds("device_new and country_mismatch or payee_new", &f), (d && c) || p);
        assert_int_equal(holds("(payee_new or device_new) and country_mismatch", &f),
                         (p || d) && c);
        assert_int_equal(holds("not payee_new and device_new", &f), !p && d);
        assert_int_equal(holds("not payee_new or device_new", &f), !p || d);
        assert_int_equal(holds("not (payee_new or device_new)", &f), !(p || d));
        /* A comparison is an atom: not applies to all of it. */
        assert_int_equal(holds("not amount_minor > 5", &f), !big);
        assert_int_equal(holds("not amount_minor > 5 and payee_new or device_new", &f),
                         (!big && p) || d);
        assert_int_equal(holds("payee_new and not device_new or not country_mismatch and "
                               "amount_minor > 5",
                               &f),
                         (p && !d) || (!c && big));
        assert_int_equal(holds("((((payee_new))))", &f), p);
    }
}

/* Random expression trees over four atoms, rendered with as few parentheses as precedence
 * allows (or fully parenthesized), compiled and compared with a direct evaluation. */
enum node_kind { NODE_ATOM, NODE_NOT, NODE_AND, NODE_OR };

struct tree {
    enum node_kind kind[64];
    int atom[64];
    int left[64];
    int right[64];
    int n;
};

static const char *const atoms[] = {"payee_new", "device_new", "country_mismatch",
                                    "amount_minor > 5"};

static int tree_grow(struct tree *t, uint64_t *lcg, int depth)
{
    int i = t->n++;
    uint64_t r = lcg_next(lcg) % 4;
    t->kind[i] = depth >= 4 || t->n > 56 ? NODE_ATOM : (enum node_kind)r;
    t->atom[i] = (int)(lcg_next(lcg) % 4);
    if (t->kind[i] != NODE_ATOM)
        t->left[i] = tree_grow(t, lcg, depth + 1);
    if (t->kind[i] == NODE_AND || t->kind[i] == NODE_OR)
        t->right[i] = tree_grow(t, lcg, depth + 1);
    return i;
}

static int precedence(enum node_kind k)
{
    static const int p[] = {[NODE_ATOM] = 4, [NODE_NOT] = 3, [NODE_AND] = 2, [NODE_OR] = 1};
    return p[k];
}

static void tree_render(const struct tree *t, int i, bool full, char *buf, size_t bytes);

static void child_render(const struct tree *t, int parent, int child, bool full, char *buf,
                         size_t bytes)
{
    bool parens = full ? t->kind[child] != NODE_ATOM
                       : precedence(t->kind[child]) < precedence(t->kind[parent]);
    if (parens)
        strncat(buf, "(", bytes - strlen(buf) - 1);
    tree_render(t, child, full, buf, bytes);
    if (parens)
        strncat(buf, ")", bytes - strlen(buf) - 1);
}

static void tree_render(const struct tree *t, int i, bool full, char *buf, size_t bytes)
{
    switch (t->kind[i]) {
    case NODE_ATOM:
        strncat(buf, atoms[t->atom[i]], bytes - strlen(buf) - 1);
        return;
    case NODE_NOT:
        strncat(buf, "not ", bytes - strlen(buf) - 1);
        child_render(t, i, t->left[i], full, buf, bytes);
        return;
    case NODE_AND:
    case NODE_OR:
        child_render(t, i, t->left[i], full, buf, bytes);
        strncat(buf, t->kind[i] == NODE_AND ? " and " : " or ", bytes - strlen(buf) - 1);
        child_render(t, i, t->right[i], full, buf, bytes);
        return;
    }
}

static bool tree_eval(const struct tree *t, int i, const bool atom_values[4])
{
    switch (t->kind[i]) {
    case NODE_ATOM:
        return atom_values[t->atom[i]];
    case NODE_NOT:
        return !tree_eval(t, t->left[i], atom_values);
    case NODE_AND:
        return tree_eval(t, t->left[i], atom_values) && tree_eval(t, t->right[i], atom_values);
    case NODE_OR:
        return tree_eval(t, t->left[i], atom_values) || tree_eval(t, t->right[i], atom_values);
    }
    return false;
}

static void test_precedence_random_trees(void **state)
{
    (void)state;
    uint64_t lcg = 7;
    for (int round = 0; round < 3000; round++) {
        struct tree t = {.n = 0};
        tree_grow(&t, &lcg, 0);
        for (int full = 0; full <= 1; full++) {
            char text[RULES_EXPR_BYTES_MAX + 1] = "";
            tree_render(&t, 0, full, text, sizeof(text));
            struct rules_compiled_rule *r = compile_or_fail(text);
            for (int bits = 0; bits < 16; bits++) {
                bool v[4] = {bits & 1, bits & 2, bits & 4, bits & 8};
                struct risk_features f = features_base();
                f.payee_new = v[0];
                f.device_new = v[1];
                f.country_mismatch = v[2];
                f.amount_minor = v[3] ? 6 : 5;
                if (rules_rule_matches(r, &f) != tree_eval(&t, 0, v))
                    fail_msg("'%s' with atoms %d", text, bits);
            }
        }
    }
}

/* Features ------------------------------------------------------------------------------------- */

static void test_registry(void **state)
{
    (void)state;
    size_t n = rules_features_n();
    assert_int_equal(n, 14 + 24);
    char cond[128];
    for (size_t i = 0; i < n; i++) {
        const struct rules_feature_info *info = rules_feature_at(i);
        assert_non_null(info->doc);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(info->name, rules_feature_at(j)->name);
        const char *literal = info->type == RULES_TYPE_INT            ? "0"
                              : info->type == RULES_TYPE_BOOL         ? "true"
                              : strcmp(info->name, "currency") == 0   ? "\"EUR\""
                              : strcmp(info->name, "kind") == 0       ? "\"topup\""
                              : strcmp(info->name, "payee_kind") == 0 ? "\"none\""
                                                                      : "\"FR\"";
        snprintf(cond, sizeof(cond), "%s != %s", info->name, literal);
        compile_or_fail(cond);
    }
    static const char *const spec_names[] = {"amount_minor", "currency",           "kind",
                                             "payee_new",    "payee_kind",         "account_age_s",
                                             "device_new",   "failed_signins_24h", "ip_country",
                                             "home_country", "country_mismatch",   "mcc",
                                             "hour_utc",     "kyc_tier",           "count_1m_user",
                                             "sum_1h_user",  "sum_24h_user",       "count_1h_payee",
                                             "count_24h_ip", "sum_1m_device"};
    for (size_t i = 0; i < sizeof(spec_names) / sizeof(spec_names[0]); i++) {
        bool found = false;
        for (size_t j = 0; j < n; j++)
            found = found || strcmp(rules_feature_at(j)->name, spec_names[i]) == 0;
        if (!found)
            fail_msg("feature %s missing", spec_names[i]);
    }
}

/* Each velocity feature reads its own slot of risk_features.velocity. */
static void test_velocity_features(void **state)
{
    (void)state;
    static const char *const keys[] = {"user", "device", "ip", "payee"};
    static const char *const windows[] = {"1m", "1h", "24h"};
    char cond[64];
    for (int k = 0; k < RULES_KEYS_N; k++) {
        for (int w = 0; w < VELOCITY_WINDOWS_N; w++) {
            struct risk_features f = features_base();
            f.velocity[k].count[w] = 3;
            f.velocity[k].sum_minor[w] = 500000;
            for (int k2 = 0; k2 < RULES_KEYS_N; k2++) {
                for (int w2 = 0; w2 < VELOCITY_WINDOWS_N; w2++) {
                    bool same = k2 == k && w2 == w;
                    snprintf(cond, sizeof(cond), "count_%s_%s == 3", windows[w2], keys[k2]);
                    assert_int_equal(holds(cond, &f), same);
                    snprintf(cond, sizeof(cond), "sum_%s_%s > 499999", windows[w2], keys[k2]);
                    assert_int_equal(holds(cond, &f), same);
                }
            }
        }
    }
    struct risk_features f = features_base();
    f.velocity[RULES_KEY_USER].sum_minor[VELOCITY_WINDOW_24H] = 1500000;
    assert_true(holds("currency == \"EUR\" and sum_24h_user > 1000000", &f));
    text_set(f.currency, "JPY");
    assert_false(holds("currency == \"EUR\" and sum_24h_user > 1000000", &f));
}

static void test_features_text_set(void **state)
{
    (void)state;
    char dst[RULES_TEXT_BYTES_MAX];
    memset(dst, SENTINEL_BYTE, sizeof(dst));
    assert_int_equal(rules_features_text_set(dst, "0123456789abcdef", 16), CF_ERR_INVALID_FIELD);
    assert_int_equal(rules_features_text_set(dst, "EU\0R", 4), CF_ERR_INVALID_FIELD);
    for (size_t i = 0; i < sizeof(dst); i++)
        assert_int_equal((unsigned char)dst[i], SENTINEL_BYTE);
    assert_int_equal(rules_features_text_set(dst, "0123456789abcde", 15), CF_OK);
    assert_int_equal(dst[15], '\0');
    assert_int_equal(rules_features_text_set(dst, "EUR", 3), CF_OK);
    assert_string_equal(dst, "EUR");
    for (size_t i = 3; i < sizeof(dst); i++)
        assert_int_equal(dst[i], '\0');
    assert_int_equal(rules_features_text_set(dst, NULL, 0), CF_OK);
    assert_string_equal(dst, "");
}

/* Errors --------------------------------------------------------------------------------------- */

static void test_type_errors(void **state)
{
    (void)state;
    expect_error("currency == 5", 13, "expected a string");
    expect_error("amount_minor == \"EUR\"", 17, "expected an integer");
    expect_error("amount_minor == true", 17, "expected an integer");
    expect_error("payee_new == 1", 14, "expected true or false");
    expect_error("payee_new == \"x\"", 14, "expected true or false");
    expect_error("currency < \"EUR\"", 10, "only ==, != and in");
    expect_error("kind >= \"send\"", 6, "only ==, != and in");
    expect_error("payee_new > true", 11, "only == and !=");
    expect_error("payee_new in [true]", 11, "only == and !=");
    expect_error("amount_minor", 1, "must be boolean");
    expect_error("payee_new and currency", 15, "must be boolean");
    expect_error("amount_minor in [\"a\"]", 18, "expected an integer");
    expect_error("currency in [\"EUR\", 5]", 21, "expected a string");
    expect_error("foo == 1", 1, "unknown feature");
    expect_error("amount_minor > 5 and foo", 22, "unknown feature");
    expect_error("Amount_minor > 5", 1, "unknown feature");
    expect_error("sum_2h_user > 5", 1, "unknown feature");
    expect_error("currency == \"EUX\"", 13, "unknown currency");
    expect_error("currency == \"eur\"", 13, "unknown currency");
    expect_error("kind == \"sned\"", 9, "unknown kind");
    expect_error("payee_kind in [\"user\", \"shop\"]", 24, "unknown payee kind");
    expect_error("ip_country == \"de\"", 15, "country");
    expect_error("home_country == \"DEU\"", 17, "country");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_error("", 0, "empty");
    expect_error("  \n\t ", 1, "empty");
    expect_error("amount_minor = 5", 14, "use ==");
    expect_error("amount_minor ! 5", 14, "unexpected character");
    expect_error("amount_minor > ", 16, "expected an integer");
    expect_error("amount_minor > 1.5", 17, "unexpected character");
    expect_error("amount_minor > - 5", 16, "unexpected character");
    expect_error("amount_minor > 100k", 16, "malformed number");
    expect_error("amount_minor 5", 14, "expected a comparison");
    expect_error("(payee_new", 11, "expected )");
    expect_error("payee_new)", 10, "expected and, or");
    expect_error("payee_new payee_new", 11, "expected and, or");
    expect_error("payee_new AND device_new", 11, "expected and, or");
    expect_error("payee_new and", 14, "expected a feature");
    expect_error("or payee_new", 1, "expected a feature");
    expect_error("not", 4, "expected a feature");
    expect_error("()", 2, "expected a feature");
    expect_error("true", 1, "expected a feature");
    expect_error("amount_minor in []", 18, "empty list");
    expect_error("amount_minor in [1,]", 20, "expected an integer");
    expect_error("amount_minor in [1 2]", 20, "expected , or ]");
    expect_error("amount_minor in [1", 19, "expected , or ]");
    expect_error("amount_minor in 1", 17, "expected [");
    expect_error("currency == 'EUR'", 13, "unexpected character");
}

static void test_hostile_conditions(void **state)
{
    (void)state;
    static char text[10000 + 64];
    /* 10000 '(' is refused for its length before anything is parsed. */
    memset(text, '(', 10000);
    expect_error_len(text, 10000, RULES_EXPR_BYTES_MAX + 1, "too long");
    /* Within the length, nesting stops at RULES_DEPTH_MAX. */
    expect_error_len(text, 1000, RULES_DEPTH_MAX + 1, "nest too deep");
    /* Exactly RULES_DEPTH_MAX levels are fine. */
    size_t n = 0;
    for (int i = 0; i < RULES_DEPTH_MAX; i++)
        text[n++] = '(';
    n += (size_t)sprintf(text + n, "payee_new");
    for (int i = 0; i < RULES_DEPTH_MAX; i++)
        text[n++] = ')';
    text[n] = '\0';
    struct risk_features f = features_base();
    f.payee_new = true;
    assert_true(holds(text, &f));
    /* A long run of `not` is fine (it costs no depth). */
    n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)sprintf(text + n, "not ");
    sprintf(text + n, "payee_new");
    assert_true(holds(text, &f));
    /* Exactly RULES_EXPR_BYTES_MAX bytes are accepted. */
    memset(text, ' ', RULES_EXPR_BYTES_MAX);
    memcpy(text + RULES_EXPR_BYTES_MAX - 9, "payee_new", 9);
    struct rules_compiled_rule r;
    struct rules_error e;
    assert_int_equal(compile_len(text, RULES_EXPR_BYTES_MAX, &r, &e), CF_OK);
    expect_error_len(text, RULES_EXPR_BYTES_MAX + 1, RULES_EXPR_BYTES_MAX + 1, "too long");

    /* NUL bytes, control and non-ASCII bytes. */
    expect_error_len("payee_new\0 or device_new", 24, 10, "unexpected character");
    expect_error_len("currency == \"EU\0\"", 17, 16, "not allowed in a string");
    expect_error("currency == \"EU\x01\"", 16, "not allowed in a string");
    expect_error("currency == \"E\\UR\"", 15, "not allowed in a string");
    expect_error("currency == \"\xc3\xa9\"", 14, "not allowed in a string");
    expect_error("payee_new \xc3\xa9", 11, "unexpected character");
    expect_error("currency == \"EUR", 13, "unterminated string");
    expect_error("currency == \"", 13, "unterminated string");
    expect_error("kind == \"0123456789abcdef\"", 9, "longer than 15");

    /* Integers at and beyond int64_t. */
    assert_true(holds("amount_minor > -9223372036854775808", &f));
    assert_true(holds("amount_minor < 9223372036854775807", &f));
    expect_error("amount_minor < 9223372036854775808", 16, "out of range");
    expect_error("amount_minor < -9223372036854775809", 16, "out of range");
    expect_error("amount_minor < 99999999999999999999999999999999999999999", 16, "out of range");
    f.amount_minor = 1;
    assert_true(holds("amount_minor == 0000000000000000000000000000000000000000001", &f));

    /* Operation and literal bounds. */
    n = 0;
    for (int i = 0; i < 70; i++)
        n += (size_t)sprintf(text + n, "%smcc < %d", i ? " or " : "", i);
    expect_error_len(text, n, (size_t)(strstr(text, "< 64") - text) + 3, "too complex");
    n = (size_t)sprintf(text, "mcc in [");
    for (int i = 0; i <= RULES_LITERALS_MAX; i++)
        n += (size_t)sprintf(text + n, "%s%d", i ? "," : "", i);
    n += (size_t)sprintf(text + n, "]");
    expect_error_len(text, n, (size_t)(strstr(text, ",64]") - text) + 2, "too many literals");
}

/* Random token soup, and valid conditions with a few bytes changed: every input compiles or
 * fails cleanly with a column inside it (or just past its end); what compiles runs. */
static const char *const soup_pieces[] = {"payee_new", "amount_minor",
                                          "currency",  "kind",
                                          "mcc",       "count_1m_user",
                                          " and ",     " or ",
                                          "not ",      "(",
                                          ")",         "[",
                                          "]",         ",",
                                          " == ",      " != ",
                                          " < ",       " >= ",
                                          " in ",      "\"EUR\"",
                                          "\"send\"",  "5",
                                          "-1",        "true",
                                          "\"",        "\0",
                                          "=",         "\xff"};

static const char *const near_miss_bases[] = {
    "currency == \"EUR\" and amount_minor > 100000 and payee_new",
    "not (device_new or country_mismatch) and kind in [\"send\", \"payout\"]",
    "count_1h_user >= 10 or sum_24h_user > 500000 and mcc in [7995, 4829]",
    "ip_country in [\"KP\", \"IR\", \"\"] or (hour_utc < 5 and account_age_s < 86400)"};

static size_t soup_make(uint64_t *lcg, char *text)
{
    size_t n = 0;
    size_t parts = 1 + lcg_next(lcg) % 12;
    for (size_t i = 0; i < parts; i++) {
        if (lcg_next(lcg) % 8 == 0) {
            text[n++] = (char)(lcg_next(lcg) & 0xff);
            continue;
        }
        const char *piece = soup_pieces[lcg_next(lcg) % (sizeof(soup_pieces) / sizeof(char *))];
        size_t len = piece[0] == '\0' ? 1 : strlen(piece);
        memcpy(text + n, piece, len);
        n += len;
    }
    return n;
}

static size_t near_miss_make(uint64_t *lcg, char *text)
{
    const char *base = near_miss_bases[lcg_next(lcg) % 4];
    size_t n = strlen(base);
    memcpy(text, base, n);
    size_t changes = lcg_next(lcg) % 3;
    for (size_t i = 0; i < changes && n > 0; i++) {
        size_t at = lcg_next(lcg) % n;
        switch (lcg_next(lcg) % 3) {
        case 0:
            text[at] = (char)(lcg_next(lcg) & 0xff);
            break; /* replace */
        case 1:
            memmove(text + at, text + at + 1, n - at - 1), n--;
            break; /* delete */
        default:
            n = at;
            break; /* truncate */
        }
    }
    return n;
}

static void test_random_conditions(void **state)
{
    (void)state;
    uint64_t lcg = 99;
    struct risk_features f = features_base();
    char text[256];
    int compiled = 0;
    for (int round = 0; round < 40000; round++) {
        size_t n = round % 2 ? soup_make(&lcg, text) : near_miss_make(&lcg, text);
        struct rules_compiled_rule r;
        struct rules_error e = {0};
        if (compile_len(text, n, &r, &e) == CF_OK) {
            compiled++;
            (void)rules_rule_matches(&r, &f);
            continue;
        }
        assert_string_equal(e.field, "condition");
        if (n > 0 && (e.column < 1 || e.column > n + 1))
            fail_msg("column %zu outside 1..%zu", e.column, n + 1);
    }
    assert_true(compiled > 2000); /* the generator does produce valid conditions */
}

/* Rule fields ---------------------------------------------------------------------------------- */

static void expect_field_error(const struct rules_rule_def *d, const char *field)
{
    static struct rules_compiled_rule r, sentinel;
    memset(&r, SENTINEL_BYTE, sizeof(r));
    memset(&sentinel, SENTINEL_BYTE, sizeof(sentinel));
    struct rules_error e = {0};
    assert_int_equal(rules_rule_compile(d, &r, &e), CF_ERR_INVALID_FIELD);
    assert_string_equal(e.field, field);
    assert_int_equal(e.column, 0);
    assert_memory_equal(&r, &sentinel, sizeof(r));
}

static void test_rule_fields(void **state)
{
    (void)state;
    char forty[RULES_ID_BYTES_MAX + 1];
    memset(forty, 'a', RULES_ID_BYTES_MAX);
    forty[RULES_ID_BYTES_MAX] = '\0';
    static const char *const bad_codes[] = {"", "R_upper", "r-dash", "r x", "r.x", "é"};
    struct rules_rule_def d = def_of("payee_new", 9, RULES_ACTION_BLOCK);
    for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
        d = def_of("payee_new", 9, RULES_ACTION_BLOCK);
        d.id = bad_codes[i];
        d.id_len = strlen(bad_codes[i]);
        expect_field_error(&d, "id");
        d = def_of("payee_new", 9, RULES_ACTION_BLOCK);
        d.reason = bad_codes[i];
        d.reason_len = strlen(bad_codes[i]);
        expect_field_error(&d, "reason");
    }
    d = def_of("payee_new", 9, RULES_ACTION_BLOCK);
    d.id = "r_\0x";
    d.id_len = 4;
    expect_field_error(&d, "id");
    d.id = "r_a_much_longer_identifier_than_forty_chars";
    d.id_len = 41;
    expect_field_error(&d, "id");
    d = def_of("payee_new", 9, (enum rules_action)7);
    expect_field_error(&d, "action");

    static const char *const bad_descriptions[] = {
        "line\nbreak", "tab\there",    "del\x7f",          "\xc3\x28",
        "\xc0\xaf",    "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc2\x85 (C1 control)",
        "cut \xe2\x82"};
    for (size_t i = 0; i < sizeof(bad_descriptions) / sizeof(bad_descriptions[0]); i++) {
        d = def_of("payee_new", 9, RULES_ACTION_BLOCK);
        d.description = bad_descriptions[i];
        d.description_len = strlen(bad_descriptions[i]);
        expect_field_error(&d, "description");
    }
    static char long_description[RULES_DESCRIPTION_BYTES_MAX + 2];
    memset(long_description, 'a', sizeof(long_description) - 1);
    d = def_of("payee_new", 9, RULES_ACTION_BLOCK);
    d.description = long_description;
    d.description_len = RULES_DESCRIPTION_BYTES_MAX + 1;
    expect_field_error(&d, "description");

    /* The longest valid fields, and UTF-8 text. */
    struct rules_compiled_rule r;
    struct rules_error e;
    d.description_len = RULES_DESCRIPTION_BYTES_MAX;
    d.id = forty;
    d.id_len = 40;
    d.reason = forty;
    d.reason_len = 40;
    assert_int_equal(rules_rule_compile(&d, &r, &e), CF_OK);
    assert_string_equal(r.id, forty);
    assert_int_equal(strlen(r.description), RULES_DESCRIPTION_BYTES_MAX);
    const char *utf8 = "Große Beträge an neue Empfänger \xf0\x9f\x92\xb6";
    d.description = utf8;
    d.description_len = strlen(utf8);
    assert_int_equal(rules_rule_compile(&d, &r, &e), CF_OK);
    assert_string_equal(r.description, utf8);
    assert_string_equal(r.condition, "payee_new");
    assert_int_equal(r.action, RULES_ACTION_BLOCK);
    assert_true(r.enabled);
}

/* Sets and decisions --------------------------------------------------------------------------- */

static struct rules_compiled_rule rule_make(const char *id, const char *condition,
                                            enum rules_action action, const char *reason,
                                            bool enabled)
{
    struct rules_rule_def d = {.id = id,
                               .id_len = strlen(id),
                               .condition = condition,
                               .condition_len = strlen(condition),
                               .action = action,
                               .reason = reason,
                               .reason_len = strlen(reason),
                               .enabled = enabled};
    struct rules_compiled_rule r;
    struct rules_error e;
    if (rules_rule_compile(&d, &r, &e) != CF_OK)
        fail_msg("%s: %s at %zu", id, e.message, e.column);
    return r;
}

static void test_most_severe_wins(void **state)
{
    (void)state;
    static struct rules_compiled_rule rules[7];
    rules[0] = rule_make("r_trusted", "kind == \"topup\"", RULES_ACTION_ALLOW, "trusted", true);
    rules[1] = rule_make("r_new_device", "device_new", RULES_ACTION_CHALLENGE, "new_device", true);
    rules[2] = rule_make("r_large_new_payee", "payee_new and amount_minor > 100000",
                         RULES_ACTION_REVIEW, "large_new_payee", true);
    rules[3] = rule_make("r_sanctioned_ip", "ip_country in [\"KP\", \"IR\"]", RULES_ACTION_BLOCK,
                         "sanctioned_country", true);
    rules[4] = rule_make("r_burst", "count_1m_user >= 5", RULES_ACTION_REVIEW, "burst", true);
    rules[5] = rule_make("r_off", "amount_minor > 0", RULES_ACTION_BLOCK, "always", false);
    rules[6] = rule_make("r_night", "hour_utc < 5", RULES_ACTION_CHALLENGE, "night", true);
    struct rules_set *set = NULL;
    assert_int_equal(rules_set_create(42, rules, 7, &set), CF_OK);
    assert_int_equal(rules_set_version(set), 42);
    assert_int_equal(rules_set_rules_n(set), 7);

    struct risk_features f = features_base();
    struct rules_decision d;
    rules_evaluate(set, &f, &d); /* only the disabled rule would match */
    assert_int_equal(d.action, RULES_ACTION_ALLOW);
    assert_int_equal(d.matches_n, 0);
    assert_int_equal(d.matches_omitted_n, 0);
    assert_int_equal(d.set_version, 42);

    f.device_new = true;
    f.payee_new = true;
    f.amount_minor = 200000;
    f.velocity[RULES_KEY_USER].count[VELOCITY_WINDOW_1M] = 5;
    f.hour_utc = 3;
    rules_evaluate(set, &f, &d);
    assert_int_equal(d.action, RULES_ACTION_REVIEW);
    assert_int_equal(d.matches_n, 4);
    static const char *const want_ids[] = {"r_large_new_payee", "r_burst", "r_new_device",
                                           "r_night"};
    static const char *const want_reasons[] = {"large_new_payee", "burst", "new_device", "night"};
    static const enum rules_action want_actions[] = {
        RULES_ACTION_REVIEW, RULES_ACTION_REVIEW, RULES_ACTION_CHALLENGE, RULES_ACTION_CHALLENGE};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(d.matches[i].id, want_ids[i]);
        assert_string_equal(d.matches[i].reason, want_reasons[i]);
        assert_int_equal(d.matches[i].action, want_actions[i]);
    }

    text_set(f.ip_country, "KP");
    text_set(f.kind, "topup");
    rules_evaluate(set, &f, &d);
    assert_int_equal(d.action, RULES_ACTION_BLOCK);
    assert_int_equal(d.matches_n, 6);
    assert_string_equal(d.matches[0].id, "r_sanctioned_ip");
    assert_string_equal(d.matches[5].id, "r_trusted");
    assert_int_equal(d.matches[5].action, RULES_ACTION_ALLOW);

    /* The decision is a copy: it outlives the set. */
    rules_set_destroy(set);
    assert_string_equal(d.matches[0].reason, "sanctioned_country");
}

static void test_matches_bounded(void **state)
{
    (void)state;
    static struct rules_compiled_rule rules[RULES_MATCHES_MAX + 4];
    size_t n = sizeof(rules) / sizeof(rules[0]);
    char id[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "r_%02zu", i);
        rules[i] = rule_make(id, "amount_minor > 0", (enum rules_action)(i % RULES_ACTIONS_N),
                             "many", true);
    }
    struct rules_set *set = NULL;
    assert_int_equal(rules_set_create(1, rules, n, &set), CF_OK);
    struct risk_features f = features_base();
    struct rules_decision d;
    rules_evaluate(set, &f, &d);
    assert_int_equal(d.action, RULES_ACTION_BLOCK);
    assert_int_equal(d.matches_n, RULES_MATCHES_MAX);
    assert_int_equal(d.matches_omitted_n, 4);
    /* 5 of each action: blocks, reviews and challenges are all listed, then one allow. */
    for (size_t i = 0; i < RULES_MATCHES_MAX; i++) {
        enum rules_action want = (enum rules_action)(RULES_ACTIONS_N - 1 - (int)(i / 5));
        assert_int_equal(d.matches[i].action, want);
    }
    assert_string_equal(d.matches[0].id, "r_03");
    assert_string_equal(d.matches[1].id, "r_07");
    assert_string_equal(d.matches[15].id, "r_00");
    rules_set_destroy(set);
}

static void test_set_errors(void **state)
{
    (void)state;
    static struct rules_compiled_rule rules[RULES_SET_MAX + 1];
    char id[32];
    for (size_t i = 0; i < RULES_SET_MAX + 1; i++) {
        snprintf(id, sizeof(id), "r_%zu", i);
        rules[i] = rule_make(id, "payee_new", RULES_ACTION_REVIEW, "x", i % 2 == 0);
    }
    struct rules_set *set = (struct rules_set *)&rules[0]; /* a sentinel pointer */
    assert_int_equal(rules_set_create(1, rules, RULES_SET_MAX + 1, &set), CF_ERR_INVALID_FIELD);
    assert_ptr_equal(set, &rules[0]);
    rules[7] = rules[3];
    assert_int_equal(rules_set_create(1, rules, 8, &set), CF_ERR_INVALID_FIELD);
    assert_ptr_equal(set, &rules[0]);
    rules[7] = rule_make("r_7", "payee_new", RULES_ACTION_REVIEW, "x", false);

    assert_int_equal(rules_set_create(9, rules, RULES_SET_MAX, &set), CF_OK);
    assert_int_equal(rules_set_rules_n(set), RULES_SET_MAX);
    assert_string_equal(rules_set_rule_at(set, 5)->id, "r_5");
    assert_ptr_equal(rules_set_rule_find(set, "r_199", 5), rules_set_rule_at(set, 199));
    assert_null(rules_set_rule_find(set, "r_200", 5));
    assert_null(rules_set_rule_find(set, "r_1", 2));
    assert_null(rules_set_rule_find(set, "", 0));
    struct risk_features f = features_base();
    f.payee_new = true;
    struct rules_decision d;
    rules_evaluate(set, &f, &d);
    assert_int_equal(d.matches_n + d.matches_omitted_n, RULES_SET_MAX / 2); /* enabled only */
    rules_set_destroy(set);

    assert_int_equal(rules_set_create(3, NULL, 0, &set), CF_OK);
    rules_evaluate(set, &f, &d);
    assert_int_equal(d.action, RULES_ACTION_ALLOW);
    assert_int_equal(d.matches_n, 0);
    assert_int_equal(d.set_version, 3);
    rules_set_destroy(set);
    rules_set_destroy(NULL);
}

static void test_actions_and_messages(void **state)
{
    (void)state;
    static const char *const names[] = {"allow", "challenge", "review", "block"};
    for (int a = 0; a < RULES_ACTIONS_N; a++) {
        assert_string_equal(rules_action_name((enum rules_action)a), names[a]);
        enum rules_action parsed = RULES_ACTIONS_N;
        assert_int_equal(rules_action_parse(names[a], strlen(names[a]), &parsed), CF_OK);
        assert_int_equal(parsed, a);
        const char *m = rules_action_customer_message((enum rules_action)a);
        assert_true(strlen(m) > 10);
        assert_null(strstr(m, "_")); /* no rule id or reason code */
        for (int b = 0; b < a; b++)
            assert_string_not_equal(m, rules_action_customer_message((enum rules_action)b));
    }
    assert_string_equal(rules_action_customer_message(RULES_ACTION_REVIEW),
                        "This payment is being checked. We will let you know shortly.");
    static const char *const bad[] = {"", "Block", "blocked", "allow ", "deny"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum rules_action parsed = RULES_ACTIONS_N;
        assert_int_equal(rules_action_parse(bad[i], strlen(bad[i]), &parsed), CF_ERR_INVALID_FIELD);
        assert_int_equal(parsed, RULES_ACTIONS_N);
    }
    enum rules_action parsed = RULES_ACTIONS_N;
    assert_int_equal(rules_action_parse("block\0", 6, &parsed), CF_ERR_INVALID_FIELD);
}

/* Dry run -------------------------------------------------------------------------------------- */

static void test_dry_run(void **state)
{
    (void)state;
    static struct risk_features history[100];
    for (size_t i = 0; i < 100; i++) {
        history[i] = features_base();
        history[i].amount_minor = (int64_t)i * 100;
        history[i].payee_new = i % 3 == 0;
    }
    struct rules_compiled_rule r =
        rule_make("r_candidate", "amount_minor >= 5000", RULES_ACTION_REVIEW, "big", false);
    struct rules_dry_report rep;
    rules_dry_run(&r, history, 100, &rep); /* disabled, and still replayed */
    assert_int_equal(rep.scanned_n, 100);
    assert_int_equal(rep.matched_n, 50);
    assert_int_equal(rep.by_action_n[RULES_ACTION_ALLOW], 50);
    assert_int_equal(rep.by_action_n[RULES_ACTION_REVIEW], 50);
    assert_int_equal(rep.by_action_n[RULES_ACTION_BLOCK], 0);
    assert_int_equal(rep.by_action_n[RULES_ACTION_CHALLENGE], 0);
    assert_int_equal(rep.samples_n, RULES_DRY_SAMPLES_MAX);
    for (size_t i = 0; i < RULES_DRY_SAMPLES_MAX; i++)
        assert_int_equal(rep.samples[i], 50 + i);

    r = rule_make("r_c2", "payee_new and amount_minor > 8000", RULES_ACTION_BLOCK, "b", true);
    rules_dry_run(&r, history, 100, &rep);
    assert_int_equal(rep.matched_n, 7); /* multiples of 3 above 80: 81 84 87 90 93 96 99 */
    assert_int_equal(rep.samples_n, 7);
    assert_int_equal(rep.samples[0], 81);
    assert_int_equal(rep.samples[6], 99);
    assert_int_equal(rep.by_action_n[RULES_ACTION_BLOCK], 7);
    assert_int_equal(rep.by_action_n[RULES_ACTION_ALLOW], 93);

    r = rule_make("r_c3", "amount_minor >= 0", RULES_ACTION_ALLOW, "a", true);
    rules_dry_run(&r, history, 100, &rep);
    assert_int_equal(rep.by_action_n[RULES_ACTION_ALLOW], 100);

    memset(&rep, SENTINEL_BYTE, sizeof(rep));
    rules_dry_run(&r, NULL, 0, &rep);
    assert_int_equal(rep.scanned_n, 0);
    assert_int_equal(rep.matched_n, 0);
    assert_int_equal(rep.samples_n, 0);
    assert_int_equal(rep.by_action_n[RULES_ACTION_ALLOW], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integer_comparisons),
        cmocka_unit_test(test_text_comparisons),
        cmocka_unit_test(test_boolean_features),
        cmocka_unit_test(test_precedence_examples),
        cmocka_unit_test(test_precedence_random_trees),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_velocity_features),
        cmocka_unit_test(test_features_text_set),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_hostile_conditions),
        cmocka_unit_test(test_random_conditions),
        cmocka_unit_test(test_rule_fields),
        cmocka_unit_test(test_most_severe_wins),
        cmocka_unit_test(test_matches_bounded),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_actions_and_messages),
        cmocka_unit_test(test_dry_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
