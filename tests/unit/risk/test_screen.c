/*
 * test_screen.c - unit tests for screen.c: normalization (case, accents, non-decomposing Latin
 * letters, Cyrillic, punctuation, noise and particles, transliteration folding), refusals of
 * hostile names (invalid UTF-8, controls, NUL, overlong, too many tokens) with outputs left
 * untouched, Jaro-Winkler against published values, the signature bound and the probe against
 * the exact similarity on pseudo-random strings, spans, and name scores (word order, missing
 * middle names, joined words, single words, monotone limits).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "risk/screen.h"

/* A fixed pseudo-random sequence (64-bit LCG), so failures reproduce. */
static uint64_t lcg_next(uint64_t *state)
{
    *state = *state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *state >> 33;
}

static struct screen_name norm_ok(const char *s)
{
    struct screen_name n;
    enum cf_err err = screen_name_normalize(s, strlen(s), &n);
    if (err != CF_OK)
        fail_msg("normalize(%s) -> %d", s, (int)err);
    return n;
}

/* The tokens of s joined by single spaces, into out. */
static const char *tokens_of(const char *s, char *out, size_t bytes)
{
    struct screen_name n = norm_ok(s);
    size_t o = 0;
    for (size_t i = 0; i < n.tokens_n; i++) {
        int w = snprintf(out + o, bytes - o, "%s%.*s", i ? " " : "", (int)n.tok_len[i],
                         n.text + n.tok_off[i]);
        assert_true(w > 0 && (size_t)w < bytes - o);
        o += (size_t)w;
    }
    return out;
}

static void assert_tokens(const char *name, const char *expected)
{
    char buf[SCREEN_FOLDED_BYTES_MAX * 2];
    const char *got = tokens_of(name, buf, sizeof(buf));
    if (strcmp(got, expected) != 0)
        fail_msg("tokens(%s) = \"%s\", expected \"%s\"", name, got, expected);
}

static int score_of(const char *a, const char *b)
{
    struct screen_name x = norm_ok(a), y = norm_ok(b);
    int s = screen_name_score(&x, &y);
    assert_true(s >= 0 && s <= SCREEN_SCORE_MAX);
    return s;
}

/* Normalization -------------------------------------------------------------------------------- */

static void test_normalize_case_accents_punctuation(void **state)
{
    (void)state;
    assert_tokens("José", "jose");
    assert_tokens("JOSÉ ÁLVAREZ NÚÑEZ", "jose alvarez nunez");
    assert_tokens("  Jean-Pierre   O'Brien, Jr. ", "jean piere o brien");
    assert_tokens("Siobhán O’Connell", "siobhan o conel");
    assert_tokens("Dr. Mrs. Anna Smith", "ana smit");
    assert_tokens("ＪＯＨＮ　ＳＭＩＴＨ", "john smit"); /* full-width, ideographic space */
    assert_tokens("\xEF\xAC\x81sher", "fisher");        /* the fi ligature */
    assert_tokens("Vessel 9000001", "vesel 9000001");   /* digits are kept */
    assert_tokens("Nguyễn Thị Hương", "nguyen ti huong");
}

static void test_normalize_latin_letters_that_do_not_decompose(void **state)
{
    (void)state;
    assert_tokens("Strauß", "straus");
    assert_tokens("STRAUẞ", "straus");
    assert_tokens("Søren Nørgaard", "soren norgard");
    assert_tokens("Łukasz Wróbel", "lukasz wrobel");
    assert_tokens("Đorđe", "dorde");
    assert_tokens("Þórður Sigurðsson", "tordur sigurdson");
    assert_tokens("Œuvre Æsir", "ouvre asir"); /* one pass: oe -> o makes no new ou */
    assert_tokens("Yılmaz", "yilmaz");
    assert_tokens("Ħal Ŧest Ŋa ĸa", "hal test na ka");
}

static void test_normalize_cyrillic(void **state)
{
    (void)state;
    assert_tokens("Сергей Кузнецов", "sergi kuznetsov");
    assert_tokens("Александр Волков", "aleksandr volkov");
    assert_tokens("Щукин Юрий Ёлкин", "shchukin yuri elkin");
    assert_tokens("Олександр Шевчук", "oleksandr shevchuk");
    assert_tokens("Дмитрий", "dmitri");
}

static void test_normalize_transliteration_folding(void **state)
{
    (void)state;
    assert_tokens("Mohammed Mohamed", "mohamed mohamed");
    assert_tokens("Muhammad Mohammad", "muhamad mohamad");
    assert_tokens("Yusuf Yousef Youssef", "yusuf yusef yusef");
    assert_tokens("Alexander Aleksandr", "aleksander aleksandr");
    assert_tokens("Sergey Sergei Aly", "sergi sergi ali");
    assert_tokens("Dmitriy Dmitry", "dmitri dmitri");
    assert_tokens("Philipp Jackson Khalid Qasim", "filip jakson halid kasim");
    assert_tokens("Thomas Noor Lee Mueller Schroeder Jaeger", "tomas nur li muler schroder jager");
    assert_tokens("Lynch Kyrgyz", "linch kirgiz");
    assert_tokens("Hassan", "hasan");
}

static void test_normalize_noise_and_particles(void **state)
{
    (void)state;
    struct screen_name n = norm_ok("Abd al-Rahman");
    assert_int_equal(n.tokens_n, 2);
    assert_int_equal(n.text_len, strlen("abdalrahman"));
    assert_memory_equal(n.text, "abdalrahman", n.text_len);
    assert_tokens("Maria de la Cruz", "maria cruz");
    assert_tokens("Usama bin Ladin", "usama ladin");
    assert_tokens("Nguyen Van Thanh", "nguyen tanh");
    assert_tokens("Le Du Do", "le du do"); /* also Vietnamese and Chinese surnames */
    /* nothing but noise or particles: kept, so a name is never empty */
    assert_tokens("Mr", "mr");
    assert_tokens("Al", "al");
    assert_tokens("Dr El", "dr el");
    /* generic entity words stay tokens, marked */
    n = norm_ok("Orient Star Trading LLC");
    assert_int_equal(n.tokens_n, 4);
    assert_int_equal(n.generic, 0xC);
}

static void test_normalize_refuses_hostile_names(void **state)
{
    (void)state;
    struct screen_name n, sentinel;
    memset(&sentinel, 0x5A, sizeof(sentinel));
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        {"", 0},
        {"\xC3", 1},               /* truncated UTF-8 */
        {"\xC0\xAF", 2},           /* overlong encoding */
        {"\xED\xA0\x80", 3},       /* a surrogate */
        {"Jo\xFFhn", 5},           /* an invalid byte */
        {"John\0Smith", 10},       /* NUL */
        {"John\nSmith", 10},       /* a control character */
        {"John\x7FSmith", 10},     /* DEL */
        {"John\xC2\x85Smith", 11}, /* C1 NEL */
        {"---", 3},                /* no letter */
        {"\xCC\x81\xCC\x81", 4},   /* only combining marks */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(&n, &sentinel, sizeof(n));
        assert_int_equal(screen_name_normalize(bad[i].s, bad[i].len, &n), CF_ERR_INVALID_FIELD);
        assert_memory_equal(&n, &sentinel, sizeof(n));
    }
    char big[SCREEN_NAME_BYTES_MAX + 2];
    memset(big, 'a', sizeof(big));
    for (size_t i = 1; i < sizeof(big); i += 2)
        big[i] = ' ';
    memcpy(&n, &sentinel, sizeof(n));
    assert_int_equal(screen_name_normalize(big, SCREEN_NAME_BYTES_MAX + 1, &n),
                     CF_ERR_INVALID_FIELD);
    assert_memory_equal(&n, &sentinel, sizeof(n));
    /* one more token than allowed, then exactly the limit */
    char many[SCREEN_NAME_BYTES_MAX];
    size_t o = 0;
    for (size_t i = 0; i <= SCREEN_TOKENS_MAX; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "w%c ", (char)('a' + i));
    assert_int_equal(screen_name_normalize(many, o, &n), CF_ERR_INVALID_FIELD);
    assert_int_equal(screen_name_normalize(many, o - 3, &n), CF_OK);
    assert_int_equal(n.tokens_n, SCREEN_TOKENS_MAX);
    /* a token at the limit, and one byte longer */
    char word[SCREEN_TOKEN_BYTES_MAX + 1];
    for (size_t i = 0; i < sizeof(word); i++)
        word[i] = (char)('a' + i % 2); /* abab...: no folding rule shortens it */
    assert_int_equal(screen_name_normalize(word, SCREEN_TOKEN_BYTES_MAX, &n), CF_OK);
    assert_int_equal(n.tok_len[0], SCREEN_TOKEN_BYTES_MAX);
    assert_int_equal(screen_name_normalize(word, SCREEN_TOKEN_BYTES_MAX + 1, &n),
                     CF_ERR_INVALID_FIELD);
    /* x folds to ks: a token that fits as given but not once folded */
    memset(word, 'x', SCREEN_TOKEN_BYTES_MAX / 2 + 1);
    assert_int_equal(screen_name_normalize(word, SCREEN_TOKEN_BYTES_MAX / 2 + 1, &n),
                     CF_ERR_INVALID_FIELD);
}

/* Names at the byte limit made of characters that decompose a lot or are not Latin. */
static void test_normalize_survives_expanding_and_foreign_text(void **state)
{
    (void)state;
    static const char *const pieces[] = {"\xEF\xB7\xBA",     /* U+FDFA: 18 letters under NFKD */
                                         "\xE3\x8D\xBF",     /* a squared CJK compatibility form */
                                         "\xCE\xB1",         /* Greek alpha */
                                         "\xE6\x9D\x8E",     /* a CJK ideograph */
                                         "\xD9\x85",         /* Arabic meem */
                                         "\xF0\x9F\x98\x80", /* an emoji: a separator */
                                         " "};
    uint64_t lcg = 7;
    for (int round = 0; round < 200; round++) {
        char s[SCREEN_NAME_BYTES_MAX];
        size_t n = 0;
        for (;;) {
            const char *p = pieces[lcg_next(&lcg) % (sizeof(pieces) / sizeof(pieces[0]))];
            if (n + strlen(p) > sizeof(s))
                break;
            memcpy(s + n, p, strlen(p));
            n += strlen(p);
        }
        size_t cut = round % 2 ? n : 1 + lcg_next(&lcg) % n;
        struct screen_name out;
        enum cf_err err = screen_name_normalize(s, cut, &out);
        assert_true(err == CF_OK || err == CF_ERR_INVALID_FIELD);
        if (err == CF_OK) {
            assert_true(out.tokens_n >= 1 && out.tokens_n <= SCREEN_TOKENS_MAX);
            assert_true(out.text_len <= SCREEN_FOLDED_BYTES_MAX);
            assert_int_equal(screen_name_score(&out, &out), SCREEN_SCORE_MAX);
        }
    }
    /* non-Latin letters are kept (lower-cased) and match themselves exactly */
    assert_int_equal(score_of("李 明", "明 李"), SCREEN_SCORE_MAX);
    assert_int_equal(score_of("ΑΛΦΑ", "αλφα"), SCREEN_SCORE_MAX);
}

/* Jaro-Winkler --------------------------------------------------------------------------------- */

static int jw(const char *a, const char *b)
{
    return screen_jaro_winkler(a, strlen(a), b, strlen(b));
}

static void test_jaro_winkler_published_values(void **state)
{
    (void)state;
    /* Winkler's examples: 0.961, 0.840, 0.813 */
    assert_int_equal(jw("MARTHA", "MARHTA"), 961);
    assert_int_equal(jw("DWAYNE", "DUANE"), 840);
    assert_int_equal(jw("DIXON", "DICKSONX"), 813);
    assert_int_equal(jw("same", "same"), 1000);
    assert_int_equal(jw("a", "b"), 0);
    assert_int_equal(jw("", "abc"), 0);
    assert_int_equal(jw("", ""), 0);
    /* below 0.7 no prefix bonus: jaro of abcxyz / abcpqr... is (3/6 + 3/6 + 1) / 3 */
    assert_int_equal(jw("abcdef", "abcuvw"), 667);
    /* the formula from counts: never decreasing in m and l */
    for (size_t a = 1; a <= 12; a++)
        for (size_t b = 1; b <= 12; b++)
            for (size_t l = 0; l <= 4 && l <= a && l <= b; l++)
                for (size_t m = 1; m <= a && m <= b; m++) {
                    int s = screen_jw_from_counts(a, b, m, 0, l);
                    assert_true(s >= screen_jw_from_counts(a, b, m - 1, 0, l));
                    if (l > 0)
                        assert_true(s >= screen_jw_from_counts(a, b, m, 0, l - 1));
                }
    assert_int_equal(screen_jw_from_counts(5, 5, 5, 0, 4), 1000);
}

/* A random string over a small alphabet (so pairs are often similar), length 1..max. */
static size_t random_word(uint64_t *lcg, char *out, size_t max)
{
    static const char alphabet[] = "aeibdhmnrsy1";
    size_t n = 1 + lcg_next(lcg) % max;
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[lcg_next(lcg) % (sizeof(alphabet) - 1)];
    return n;
}

static void test_bound_and_probe_never_below_similarity(void **state)
{
    (void)state;
    uint64_t lcg = 42;
    size_t passes = 0;
    for (int round = 0; round < 20000; round++) {
        char a[40], b[40];
        size_t an = random_word(&lcg, a, round % 3 ? 8 : 30);
        size_t bn = random_word(&lcg, b, round % 3 ? 8 : 30);
        if (round % 5 == 0) { /* a variant of a: one byte changed */
            memcpy(b, a, an);
            bn = an;
            b[lcg_next(&lcg) % bn] = 'o';
        }
        int sim = screen_span_similarity(a, an, b, bn);
        assert_int_equal(sim, screen_span_similarity(b, bn, a, an));
        struct screen_sig sa, sb;
        screen_sig_compute(a, an, &sa);
        screen_sig_compute(b, bn, &sb);
        int bound = screen_sig_bound(&sa, &sb);
        if (bound < sim)
            fail_msg("bound %d < similarity %d for %.*s / %.*s", bound, sim, (int)an, a, (int)bn,
                     b);
        int floor = (int)(lcg_next(&lcg) % 1001);
        struct screen_probe probe;
        screen_probe_init(&probe, &sa, floor, 40);
        bool pass = screen_probe_passes(&probe, &sb);
        assert_int_equal(pass, bound >= floor);
        passes += pass;
    }
    assert_true(passes > 1000 && passes < 19000); /* both outcomes were exercised */
    /* a saturated histogram still bounds */
    char run[300];
    memset(run, 'a', sizeof(run));
    struct screen_sig s1, s2;
    screen_sig_compute(run, sizeof(run), &s1);
    screen_sig_compute(run, sizeof(run) - 1, &s2);
    assert_true(s1.saturated);
    assert_true(screen_sig_bound(&s1, &s2) >= screen_span_similarity(run, 300, run, 299));
}

static void test_span_similarity_skeleton(void **state)
{
    (void)state;
    /* mhmd = mhmd: below exact, above the default threshold */
    assert_int_equal(screen_span_similarity("mohamed", 7, "muhamad", 7),
                     SCREEN_SCORE_MAX - SCREEN_SKELETON_PENALTY);
    assert_int_equal(screen_span_similarity("abdul", 5, "abdel", 5),
                     SCREEN_SCORE_MAX - SCREEN_SKELETON_PENALTY);
    /* hsn is too short to count: plain Jaro-Winkler */
    assert_int_equal(screen_span_similarity("hasan", 5, "husein", 6), jw("hasan", "husein"));
    assert_true(jw("hasan", "husein") < SCREEN_THRESHOLD_DEFAULT);
    assert_int_equal(screen_span_similarity("x", 1, "x", 1), SCREEN_SCORE_MAX);
}

/* Spans and name scores ------------------------------------------------------------------------ */

static void test_spans(void **state)
{
    (void)state;
    struct screen_name n = norm_ok("Abd al Rahman Hassan");
    struct screen_span spans[SCREEN_SPANS_MAX];
    size_t k = screen_name_spans(&n, spans);
    /* singles abd rahman hasan; composites abd+rahman, abd+rahman+hasan, rahman+hasan and
     * the particle forms alrahman, alrahman+hasan */
    assert_int_equal(k, 3 + 5);
    char found[16][40];
    for (size_t i = 0; i < k; i++)
        snprintf(found[i], sizeof(found[i]), "%.*s%s", (int)spans[i].len, n.text + spans[i].off,
                 spans[i].composite ? "*" : "");
    static const char *const expected[] = {
        "abd",       "rahman",       "hasan",         "abdalrahman*", "abdalrahmanhasan*",
        "alrahman*", "rahmanhasan*", "alrahmanhasan*"};
    for (size_t i = 0; i < k; i++)
        assert_string_equal(found[i], expected[i]);
    assert_int_equal(spans[4].tokens, 0x7);
    norm_ok("a b c d e f g h i j k l m n o p");
}

static void test_name_score_examples(void **state)
{
    (void)state;
    assert_int_equal(score_of("John Smith", "Smith, John"), 1000);
    assert_int_equal(score_of("JOHN  SMITH", "john-smith"), 1000);
    assert_int_equal(score_of("John Smith", "John Michael Smith"), 914); /* header example */
    assert_int_equal(score_of("Smith", "John Smith"), 500);              /* header example */
    assert_int_equal(score_of("Abdalrahman Hassan", "Abd al-Rahman Hassan"), 1000);
    assert_int_equal(score_of("Delacruz Maria", "Maria de la Cruz"), 1000);
    assert_true(score_of("Mohammed Yusuf Haddad", "Muhammad Yousef Haddad") >= 900);
    assert_true(score_of("Aleksandr Volkov", "Alexander Volkov") >= 950);
    assert_true(score_of("Hans Müller", "Hans Mueller") == 1000);
    /* different people who share a surname, or a first name */
    assert_true(score_of("Samir Haddad", "Mohammed Yusuf Haddad") < SCREEN_THRESHOLD_DEFAULT);
    assert_true(score_of("Dmitri Volkov", "Dmitriy Sokolov") < SCREEN_THRESHOLD_DEFAULT);
    assert_true(score_of("Li Wei", "Li Jun") < SCREEN_THRESHOLD_DEFAULT);
    /* generic entity words count little */
    assert_true(score_of("Petronas Holdings Limited", "Orient Holdings Limited") <
                SCREEN_THRESHOLD_DEFAULT);
    /* a one-word part of a long name is no match; "Nguyen" does not swallow three words */
    assert_true(score_of("Nguyen", "Nguyen Thi Huong") < 700);
    assert_true(score_of("Nguyen Thi Huong", "Nguyen Van Thanh") < SCREEN_THRESHOLD_DEFAULT);
}

static void test_name_score_properties(void **state)
{
    (void)state;
    static const char *const names[] = {
        "Mohammed Yusuf Haddad",    "Abd al Rahman",
        "Jose Luis Garcia Marquez", "Li Jun",
        "Nguyen Van Thanh",         "Orient Star LLC",
        "Сергей Кузнецов",          "A B C",
        "Jean-Pierre Dubois",       "Mr",
        "Hans-Joerg Mueller",       "X",
    };
    size_t n = sizeof(names) / sizeof(names[0]);
    for (size_t i = 0; i < n; i++) {
        struct screen_name a = norm_ok(names[i]);
        assert_int_equal(screen_name_score(&a, &a), 1000);
        /* the reversed word order scores the same */
        char reversed[SCREEN_NAME_BYTES_MAX];
        size_t o = 0;
        for (size_t t = a.tokens_n; t-- > 0;)
            o += (size_t)snprintf(reversed + o, sizeof(reversed) - o, "%.*s ", (int)a.tok_len[t],
                                  a.text + a.tok_off[t]);
        struct screen_name r = norm_ok(reversed);
        if (r.tokens_n == a.tokens_n)
            assert_int_equal(screen_name_score(&r, &a), 1000);
        for (size_t j = 0; j < n; j++) {
            struct screen_name b = norm_ok(names[j]);
            int s = screen_name_score(&a, &b);
            assert_true(s >= 0 && s <= 1000);
            if (i != j)
                assert_true(s < 1000);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_case_accents_punctuation),
        cmocka_unit_test(test_normalize_latin_letters_that_do_not_decompose),
        cmocka_unit_test(test_normalize_cyrillic),
        cmocka_unit_test(test_normalize_transliteration_folding),
        cmocka_unit_test(test_normalize_noise_and_particles),
        cmocka_unit_test(test_normalize_refuses_hostile_names),
        cmocka_unit_test(test_normalize_survives_expanding_and_foreign_text),
        cmocka_unit_test(test_jaro_winkler_published_values),
        cmocka_unit_test(test_bound_and_probe_never_below_similarity),
        cmocka_unit_test(test_span_similarity_skeleton),
        cmocka_unit_test(test_spans),
        cmocka_unit_test(test_name_score_examples),
        cmocka_unit_test(test_name_score_properties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
