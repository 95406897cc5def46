/*
 * test_watchlist.c - unit tests for watchlist.c: the RFC 4180 reader (quotes, CRLF, embedded
 * newlines, BOM, the SUB byte, every refusal with its line), the OFAC SDN loader with alt.csv
 * (types, DOB clauses, nationality, aliases, refusals with line and file), the simple CSV loader
 * (columns, ids, aliases, dates, limits), file reading, versions, screening (dates of birth,
 * country, ordering, limits, refusals with outputs untouched), the prefilter giving exactly the
 * hits of the full scan, mutated files, and precision and recall on tests/data/risk/variants.csv.
 *
 * The data directory is found from this file's path (tests/unit/risk -> tests/data/risk) or
 * from COFFER_TEST_RISK_DATA when set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "risk/watchlist.h"

#define HITS 64

static char data_dir[1024];
static struct watchlist *sdn_list, *csv_list;
static char record_buf[WATCHLIST_RECORD_BYTES_MAX];

static uint64_t lcg_next(uint64_t *state)
{
    *state = *state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *state >> 33;
}

static void data_dir_find(void)
{
    const char *env = getenv("COFFER_TEST_RISK_DATA");
    if (env != NULL) {
        snprintf(data_dir, sizeof(data_dir), "%s", env);
        return;
    }
    const char *file = __FILE__;
    const char *at = strstr(file, "tests/unit/risk/");
    int prefix = at != NULL ? (int)(at - file) : 0;
    snprintf(data_dir, sizeof(data_dir), "%.*stests/data/risk", prefix, file);
}

static char *data_read(const char *name, size_t *len)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/%s", data_dir, name);
    char *text = NULL;
    enum cf_err err = watchlist_file_read(path, &text, len);
    if (err != CF_OK)
        fail_msg("cannot read %s (%d)", path, (int)err);
    return text;
}

static int lists_load(void **state)
{
    (void)state;
    data_dir_find();
    size_t sdn_n = 0, alt_n = 0, csv_n = 0, bad_line = 0;
    bool bad_in_alt = false;
    char *sdn = data_read("sdn.csv", &sdn_n), *alt = data_read("alt.csv", &alt_n);
    char *csv = data_read("simple.csv", &csv_n);
    enum cf_err e1 =
        watchlist_sdn_parse(sdn, sdn_n, alt, alt_n, "ofac-sdn", &sdn_list, &bad_line, &bad_in_alt);
    enum cf_err e2 = watchlist_csv_parse(csv, csv_n, "internal", &csv_list, &bad_line);
    free(sdn);
    free(alt);
    free(csv);
    return e1 == CF_OK && e2 == CF_OK ? 0 : -1;
}

static int lists_free(void **state)
{
    (void)state;
    watchlist_destroy(sdn_list);
    watchlist_destroy(csv_list);
    return 0;
}

/* The index of the entry with id, or fails. */
static size_t entry_find(const struct watchlist *l, const char *id)
{
    for (size_t i = 0; i < watchlist_entries_n(l); i++) {
        struct watchlist_entry_view v;
        watchlist_entry_get(l, i, &v);
        if (strcmp(v.id, id) == 0)
            return i;
    }
    fail_msg("no entry %s", id);
    return 0;
}

/* CSV reader ----------------------------------------------------------------------------------- */

static void expect_record(struct watchlist_csv *r, size_t line, size_t n, const char *const *want)
{
    struct watchlist_field f[WATCHLIST_CSV_FIELDS_MAX];
    size_t got_n = 99, got_line = 0;
    assert_int_equal(watchlist_csv_next(r, f, WATCHLIST_CSV_FIELDS_MAX, &got_n, &got_line), CF_OK);
    assert_int_equal(got_n, n);
    assert_int_equal(got_line, line);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(f[i].len, strlen(want[i]));
        assert_memory_equal(f[i].text, want[i], f[i].len);
    }
}

static void test_csv_reader_accepts(void **state)
{
    (void)state;
    static const char text[] = "\xEF\xBB\xBF"
                               "a,\"b,c\",\"say \"\"hi\"\"\"\r\n"
                               "\n\r\n"
                               "\"multi\nline\r\nfield\",,last,\n"
                               "\"\",x\n"
                               "tail"
                               "\n\x1a";
    struct watchlist_csv r;
    watchlist_csv_init(&r, text, sizeof(text) - 1, record_buf, sizeof(record_buf));
    expect_record(&r, 1, 3, (const char *const[]){"a", "b,c", "say \"hi\""});
    expect_record(&r, 4, 4, (const char *const[]){"multi\nline\r\nfield", "", "last", ""});
    expect_record(&r, 7, 2, (const char *const[]){"", "x"});
    expect_record(&r, 8, 1, (const char *const[]){"tail"});
    expect_record(&r, 9, 0, NULL);
    expect_record(&r, 9, 0, NULL); /* stays at the end */
    /* no final newline, an empty input */
    watchlist_csv_init(&r, "x,y", 3, record_buf, sizeof(record_buf));
    expect_record(&r, 1, 2, (const char *const[]){"x", "y"});
    expect_record(&r, 1, 0, NULL);
    watchlist_csv_init(&r, "", 0, record_buf, sizeof(record_buf));
    expect_record(&r, 1, 0, NULL);
}

static void test_csv_reader_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t len;
        size_t cap;
        size_t line;
    } bad[] = {
        {"a,b\"c\n", 6, 4, 1},         /* a quote inside an unquoted field */
        {"ok\n\"ab\"c\n", 9, 4, 2},    /* text after a closing quote */
        {"ok\n\"ab\" ,c\n", 11, 4, 2}, /* even a blank */
        {"a\rb\n", 4, 4, 1},           /* a lone CR */
        {"x\n\"abc\n\ndef", 11, 4, 4}, /* unterminated quote: where the input ends */
        {"a\0b\n", 4, 4, 1},           /* NUL */
        {"ok\nx,\"a\0\"\n", 10, 4, 2}, /* NUL inside quotes */
        {"a,b,c\n", 6, 2, 1},          /* more fields than the caller takes */
        {"\x1a\x1a", 2, 4, 1},         /* SUB is only skipped as the very last byte */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct watchlist_csv r;
        watchlist_csv_init(&r, bad[i].text, bad[i].len, record_buf, sizeof(record_buf));
        struct watchlist_field f[WATCHLIST_CSV_FIELDS_MAX];
        size_t n = 0, line = 0;
        enum cf_err err = CF_OK;
        while (err == CF_OK) {
            n = 77;
            err = watchlist_csv_next(&r, f, bad[i].cap, &n, &line);
            if (err == CF_OK && n == 0)
                break;
        }
        if (i == 8) { /* "\x1a\x1a" is a record holding one SUB, then the end: not an error */
            assert_int_equal(err, CF_OK);
            continue;
        }
        assert_int_equal(err, CF_ERR_INVALID_FIELD);
        assert_int_equal(n, 77); /* untouched */
        assert_int_equal(line, bad[i].line);
    }
    /* a field one byte over the limit, quoted or not; and a buffer too small for the record */
    size_t big_n = WATCHLIST_FIELD_BYTES_MAX + 3;
    char *big = malloc(big_n);
    assert_non_null(big);
    memset(big, 'a', big_n);
    big[0] = '"';
    big[big_n - 2] = '"';
    big[big_n - 1] = '\n';
    for (int quoted = 0; quoted < 2; quoted++) {
        struct watchlist_csv r;
        const char *t = quoted ? big : big + 1;
        size_t len = quoted ? big_n : big_n - 1;
        if (!quoted)
            big[big_n - 2] = 'a';
        watchlist_csv_init(&r, t, len, record_buf, sizeof(record_buf));
        struct watchlist_field f[2];
        size_t n = 0, line = 0;
        assert_int_equal(watchlist_csv_next(&r, f, 2, &n, &line), CF_ERR_INVALID_FIELD);
    }
    memset(big, 'a', WATCHLIST_FIELD_BYTES_MAX);
    struct watchlist_csv r;
    watchlist_csv_init(&r, big, WATCHLIST_FIELD_BYTES_MAX, record_buf, sizeof(record_buf));
    struct watchlist_field f[2];
    size_t n = 0, line = 0;
    assert_int_equal(watchlist_csv_next(&r, f, 2, &n, &line), CF_OK); /* exactly the limit */
    assert_int_equal(f[0].len, WATCHLIST_FIELD_BYTES_MAX);
    char small[4];
    watchlist_csv_init(&r, "abc,de\n", 7, small, sizeof(small));
    assert_int_equal(watchlist_csv_next(&r, f, 2, &n, &line), CF_ERR_INVALID_FIELD);
    free(big);
}

/* The SDN layout ------------------------------------------------------------------------------- */

static void test_sdn_load(void **state)
{
    (void)state;
    assert_int_equal(watchlist_entries_n(sdn_list), 39);
    struct watchlist_entry_view v;
    size_t e = entry_find(sdn_list, "90001");
    watchlist_entry_get(sdn_list, e, &v);
    assert_string_equal(v.name, "HADDAD, Mohammed Yusuf");
    assert_string_equal(v.dob, "12 Jan 1965");
    assert_string_equal(v.country, "Lebanon");
    assert_string_equal(v.program, "TEST-A");
    assert_string_equal(v.list_name, "ofac-sdn");
    assert_int_equal(v.type, WATCHLIST_TYPE_INDIVIDUAL);
    assert_int_equal(v.aliases_n, 2);
    assert_string_equal(watchlist_name_get(sdn_list, e, 0), "HADDAD, Mohammed Yusuf");
    assert_string_equal(watchlist_name_get(sdn_list, e, 1), "HADDAD, Muhammad Yousef");
    assert_string_equal(watchlist_name_get(sdn_list, e, 2), "ABU YUSUF AL-HADDAD");
    watchlist_entry_get(sdn_list, entry_find(sdn_list, "90005"), &v);
    assert_string_equal(v.dob, "circa 1962");
    assert_string_equal(v.country, "Colombia"); /* from "citizen" */
    watchlist_entry_get(sdn_list, entry_find(sdn_list, "90201"), &v);
    assert_int_equal(v.type, WATCHLIST_TYPE_VESSEL);
    assert_string_equal(v.dob, "");
    watchlist_entry_get(sdn_list, entry_find(sdn_list, "90301"), &v);
    assert_int_equal(v.type, WATCHLIST_TYPE_AIRCRAFT);
    watchlist_entry_get(sdn_list, entry_find(sdn_list, "90102"), &v);
    assert_int_equal(v.type, WATCHLIST_TYPE_ENTITY);
    assert_string_equal(v.country, "");
    assert_int_equal(v.aliases_n, 1);
    assert_true(watchlist_version(sdn_list) != 0);
    /* without alt.csv: no aliases, another version */
    size_t n = 0;
    char *text = data_read("sdn.csv", &n);
    struct watchlist *l = NULL;
    size_t bad_line = 0;
    bool in_alt = false;
    assert_int_equal(watchlist_sdn_parse(text, n, NULL, 0, "x", &l, &bad_line, &in_alt), CF_OK);
    watchlist_entry_get(l, entry_find(l, "90001"), &v);
    assert_int_equal(v.aliases_n, 0);
    assert_true(watchlist_version(l) != watchlist_version(sdn_list));
    watchlist_destroy(l);
    free(text);
}

/* One alt.csv row for ent_num 1, used by the refusals below. */
#define SDN_ROW(num, name, type)                                                                   \
    num ",\"" name "\"," type ",\"P\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n"

static void test_sdn_dob_clauses(void **state)
{
    (void)state;
    static const char text[] =
        "1,\"ONE, Person\",\"individual\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,"
        "\"POB Nowhere; alt. DOB 1958 to 1961; DOB circa 1970; DOB unknown; nationality X\"\n";
    struct watchlist *l = NULL;
    size_t bad_line = 0;
    bool in_alt = false;
    assert_int_equal(
        watchlist_sdn_parse(text, sizeof(text) - 1, NULL, 0, "t", &l, &bad_line, &in_alt), CF_OK);
    struct watchlist_entry_view v;
    watchlist_entry_get(l, 0, &v);
    assert_string_equal(v.dob, "1958 to 1961");
    assert_string_equal(v.country, "X");
    assert_int_equal(v.type, WATCHLIST_TYPE_INDIVIDUAL);
    /* 1958..1961 and 1968..1972 agree; 1965 conflicts */
    static const struct {
        const char *dob;
        enum watchlist_agreement want;
    } years[] = {{"1958", WATCHLIST_AGREE},    {"1961-12-31", WATCHLIST_AGREE},
                 {"1968-01", WATCHLIST_AGREE}, {"1972", WATCHLIST_AGREE},
                 {"1965", WATCHLIST_CONFLICT}, {"1973", WATCHLIST_CONFLICT},
                 {"", WATCHLIST_UNKNOWN}};
    for (size_t i = 0; i < sizeof(years) / sizeof(years[0]); i++) {
        struct watchlist_query q = {"Person One", 10, years[i].dob, NULL, 0};
        struct watchlist_hit h[2];
        struct watchlist_result res;
        assert_int_equal(watchlist_screen(l, &q, h, 2, &res), CF_OK);
        assert_int_equal(res.hits_n, 1);
        assert_int_equal(h[0].dob, years[i].want);
    }
    watchlist_destroy(l);
}

static void test_sdn_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *sdn, *alt;
        size_t line;
        bool in_alt;
    } bad[] = {
        {SDN_ROW("1", "A, B", "-0- ") "2,\"C\"\n", NULL, 2, false}, /* field count */
        {SDN_ROW("1a", "A, B", "-0- "), NULL, 1, false},            /* ent_num */
        {SDN_ROW("0", "A, B", "-0- "), NULL, 1, false},
        {SDN_ROW("4294967296", "A, B", "-0- "), NULL, 1, false},
        {SDN_ROW("1", "A, B", "\"person\""), NULL, 1, false}, /* type */
        {SDN_ROW("1", "-0-", "-0- "), NULL, 1, false},        /* no name */
        {SDN_ROW("1", "A, B", "-0- ") SDN_ROW("2", "C", "-0- ") SDN_ROW("1", "D", "-0- "), NULL, 3,
         false},                                            /* a repeated ent_num */
        {SDN_ROW("1", "A \x01 B", "-0- "), NULL, 1, false}, /* a control character */
        {SDN_ROW("1", "A, B", "-0- ") SDN_ROW("2", "J\xC3(", "-0- "), NULL, 2, false}, /* UTF-8 */
        {SDN_ROW("1", "A, B", "-0- "), "1,10,\"aka\",\"X\",-0- \n2,11,\"aka\",\"Y\",-0- \n", 2,
         true},                                                              /* unknown ent_num */
        {SDN_ROW("1", "A, B", "-0- "), "1,10,\"aka\",\"X\"\n", 1, true},     /* alt field count */
        {SDN_ROW("1", "A, B", "-0- "), "1,10,\"aka\",-0- ,-0- \n", 1, true}, /* empty alias */
        {SDN_ROW("1", "A, B", "-0- "), "1,10,\"aka\",\"X\",\"unterminated\n", 2, true},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct watchlist *l = (struct watchlist *)&bad[i]; /* a sentinel, never dereferenced */
        size_t bad_line = 0;
        bool in_alt = !bad[i].in_alt;
        enum cf_err err =
            watchlist_sdn_parse(bad[i].sdn, strlen(bad[i].sdn), bad[i].alt,
                                bad[i].alt ? strlen(bad[i].alt) : 0, "t", &l, &bad_line, &in_alt);
        if (err != CF_ERR_INVALID_FIELD || bad_line != bad[i].line || in_alt != bad[i].in_alt)
            fail_msg("case %zu: err %d line %zu in_alt %d", i, (int)err, bad_line, in_alt);
        assert_ptr_equal(l, &bad[i]);
    }
}

/* Too many aliases on one entry, then exactly the limit; an empty file; a file too large. */
static void test_sdn_limits(void **state)
{
    (void)state;
    size_t cap = (WATCHLIST_ALIASES_MAX + 2) * 32;
    char *alt = malloc(cap);
    assert_non_null(alt);
    size_t n = 0;
    for (size_t i = 0; i <= WATCHLIST_ALIASES_MAX; i++)
        n += (size_t)snprintf(alt + n, cap - n, "1,%zu,\"aka\",\"Alias %c%c\",-0- \n", i,
                              (char)('a' + i % 26), (char)('a' + i / 26));
    static const char sdn[] = SDN_ROW("1", "A, B", "-0- ");
    struct watchlist *l = NULL;
    size_t bad_line = 0;
    bool in_alt = false;
    assert_int_equal(watchlist_sdn_parse(sdn, sizeof(sdn) - 1, alt, n, "t", &l, &bad_line, &in_alt),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(bad_line, WATCHLIST_ALIASES_MAX + 1);
    assert_true(in_alt);
    size_t last = n - 1;
    while (last > 0 && alt[last - 1] != '\n')
        last--;
    assert_int_equal(
        watchlist_sdn_parse(sdn, sizeof(sdn) - 1, alt, last, "t", &l, &bad_line, &in_alt), CF_OK);
    struct watchlist_entry_view v;
    watchlist_entry_get(l, 0, &v);
    assert_int_equal(v.aliases_n, WATCHLIST_ALIASES_MAX);
    watchlist_destroy(l);
    free(alt);
    /* an empty file is an empty list */
    assert_int_equal(watchlist_sdn_parse("", 0, NULL, 0, "t", &l, &bad_line, &in_alt), CF_OK);
    assert_int_equal(watchlist_entries_n(l), 0);
    struct watchlist_query q = {"Anyone", 6, NULL, NULL, 0};
    struct watchlist_result res;
    assert_int_equal(watchlist_screen(l, &q, NULL, 0, &res), CF_OK);
    assert_int_equal(res.hits_total, 0);
    watchlist_destroy(l);
    assert_int_equal(watchlist_sdn_parse(sdn, WATCHLIST_FILE_BYTES_MAX + 1, NULL, 0, "t", &l,
                                         &bad_line, &in_alt),
                     CF_ERR_PAYLOAD_TOO_LARGE);
}

/* The simple layout ---------------------------------------------------------------------------- */

static void test_csv_list_load(void **state)
{
    (void)state;
    assert_int_equal(watchlist_entries_n(csv_list), 16);
    struct watchlist_entry_view v;
    size_t e = entry_find(csv_list, "C-001");
    watchlist_entry_get(csv_list, e, &v);
    assert_string_equal(v.name, "José Álvarez Núñez");
    assert_string_equal(v.dob, "1970-05-14");
    assert_string_equal(v.country, "ES");
    assert_string_equal(v.list_name, "internal");
    assert_int_equal(v.type, WATCHLIST_TYPE_INDIVIDUAL);
    assert_int_equal(v.aliases_n, 2);
    assert_string_equal(watchlist_name_get(csv_list, e, 1), "Pepe Álvarez");
    assert_string_equal(watchlist_name_get(csv_list, e, 2), "José Alvares");
    watchlist_entry_get(csv_list, entry_find(csv_list, "C-011"), &v);
    assert_int_equal(v.type, WATCHLIST_TYPE_ENTITY);
    assert_string_equal(v.dob, "");
    /* columns in another order, no id (record numbers), no type, blanks around aliases */
    static const char text[] = "aliases , NAME\r\n"
                               " A One ;; B Two ; ,Zed Zulu\r\n"
                               ",Yan Yellow\r\n";
    struct watchlist *l = NULL;
    size_t bad_line = 0;
    assert_int_equal(watchlist_csv_parse(text, sizeof(text) - 1, "t", &l, &bad_line), CF_OK);
    assert_int_equal(watchlist_entries_n(l), 2);
    watchlist_entry_get(l, 0, &v);
    assert_string_equal(v.id, "1");
    assert_string_equal(v.name, "Zed Zulu");
    assert_int_equal(v.type, WATCHLIST_TYPE_UNKNOWN);
    assert_int_equal(v.aliases_n, 2);
    assert_string_equal(watchlist_name_get(l, 0, 1), "A One");
    assert_string_equal(watchlist_name_get(l, 0, 2), "B Two");
    watchlist_entry_get(l, 1, &v);
    assert_string_equal(v.id, "2");
    assert_int_equal(v.aliases_n, 0);
    watchlist_destroy(l);
    /* a header and nothing else is an empty list */
    assert_int_equal(watchlist_csv_parse("name\n", 5, "t", &l, &bad_line), CF_OK);
    assert_int_equal(watchlist_entries_n(l), 0);
    watchlist_destroy(l);
}

static void test_csv_list_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t line;
    } bad[] = {
        {"", 1}, /* no header */
        {"\n\n", 3},
        {"name,nickname\nA,B\n", 1},                       /* unknown column */
        {"name,name\nA,B\n", 1},                           /* repeated column */
        {"id,aliases\n1,A\n", 1},                          /* no name column */
        {"name,country\nA,X\nB\n", 3},                     /* field count */
        {"name,date_of_birth\nA,1970\nB,1970-13-01\n", 3}, /* dates */
        {"name,date_of_birth\nA,70\n", 2},
        {"name,date_of_birth\nA,1970-1-01\n", 2},
        {"name,date_of_birth\nA,1970-02-32\n", 2},
        {"name,date_of_birth\nA,circa 1970\n", 2},
        {"id,name\nx,A\ny,B\nx,C\n", 4}, /* a repeated id */
        {"id,name\n,A\n", 2},            /* an empty id */
        {"id,name\nabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcde,A\n", 2},
        {"name,type\nA,person\n", 2},        /* type */
        {"name\nA\n\" \"\n", 3},             /* an empty name */
        {"name,aliases\nA,\"B;\x7f\"\n", 2}, /* a control character in an alias */
        {"name\nA\n\"B\nC\"\n", 3},          /* an embedded newline: its record */
        {"name,country\nA,"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
         2},
        {"name\n\"unterminated\n", 3}, /* the reader names the line where the input ended */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct watchlist *l = (struct watchlist *)&bad[i];
        size_t bad_line = 0;
        enum cf_err err = watchlist_csv_parse(bad[i].text, strlen(bad[i].text), "t", &l, &bad_line);
        if (err != CF_ERR_INVALID_FIELD || bad_line != bad[i].line)
            fail_msg("case %zu: err %d line %zu", i, (int)err, bad_line);
        assert_ptr_equal(l, &bad[i]);
    }
}

/* WATCHLIST_ENTRIES_MAX entries load; one more is refused at its line. */
static void test_csv_list_entries_limit(void **state)
{
    (void)state;
    size_t cap = (size_t)(WATCHLIST_ENTRIES_MAX + 2) * 24, n = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    n += (size_t)snprintf(text, cap, "name\n");
    size_t last = 0;
    for (size_t i = 0; i <= WATCHLIST_ENTRIES_MAX; i++) {
        last = n;
        n += (size_t)snprintf(text + n, cap - n, "N%zu\n", i);
    }
    struct watchlist *l = NULL;
    size_t bad_line = 0;
    assert_int_equal(watchlist_csv_parse(text, n, "t", &l, &bad_line), CF_ERR_INVALID_FIELD);
    assert_int_equal(bad_line, WATCHLIST_ENTRIES_MAX + 2);
    assert_int_equal(watchlist_csv_parse(text, last, "t", &l, &bad_line), CF_OK);
    assert_int_equal(watchlist_entries_n(l), WATCHLIST_ENTRIES_MAX);
    struct watchlist_query q = {"N49999", 6, NULL, NULL, SCREEN_THRESHOLD_DEFAULT};
    struct watchlist_hit h[4];
    struct watchlist_result res;
    assert_int_equal(watchlist_screen(l, &q, h, 4, &res), CF_OK);
    assert_true(res.hits_n >= 1 && h[0].score == 1000);
    watchlist_destroy(l);
    free(text);
    assert_int_equal(
        watchlist_csv_parse("name\n", WATCHLIST_FILE_BYTES_MAX + 1, "t", &l, &bad_line),
        CF_ERR_PAYLOAD_TOO_LARGE);
}

/* Files and versions --------------------------------------------------------------------------- */

static void test_file_read_and_version(void **state)
{
    (void)state;
    char *text = (char *)state;
    size_t len = 1234;
    char path[1100];
    snprintf(path, sizeof(path), "%s/no-such-file.csv", data_dir);
    assert_int_equal(watchlist_file_read(path, &text, &len), CF_ERR_NOT_FOUND);
    assert_int_equal(watchlist_file_read(data_dir, &text, &len), CF_ERR_IO); /* a directory */
    assert_ptr_equal(text, state);
    assert_int_equal(len, 1234);
    text = data_read("simple.csv", &len);
    struct watchlist *a = NULL, *b = NULL;
    size_t bad_line = 0;
    assert_int_equal(watchlist_csv_parse(text, len, "a", &a, &bad_line), CF_OK);
    assert_int_equal(watchlist_version(a), watchlist_version(csv_list)); /* same bytes */
    text[len - 2] = text[len - 2] == 'l' ? 'L' : 'l';                    /* one byte changed */
    assert_int_equal(watchlist_csv_parse(text, len, "a", &b, &bad_line), CF_OK);
    assert_true(watchlist_version(a) != watchlist_version(b));
    watchlist_destroy(a);
    watchlist_destroy(b);
    free(text);
}

/* Screening ------------------------------------------------------------------------------------ */

static struct watchlist_result screen_ok(const struct watchlist *l, const char *name,
                                         const char *dob, const char *country, int threshold,
                                         struct watchlist_hit *hits, size_t max)
{
    struct watchlist_query q = {name, strlen(name), dob, country, threshold};
    struct watchlist_result res;
    enum cf_err err = watchlist_screen(l, &q, hits, max, &res);
    if (err != CF_OK)
        fail_msg("screen(%s) -> %d", name, (int)err);
    return res;
}

static void test_screen_dob_and_country(void **state)
{
    (void)state;
    struct watchlist_hit h[HITS];
    size_t e = entry_find(csv_list, "C-002");
    struct watchlist_result r = screen_ok(csv_list, "Jürgen Müller", NULL, NULL, 850, h, HITS);
    assert_true(r.hits_n >= 1 && h[0].entry == e);
    assert_int_equal(h[0].score, 1000);
    assert_int_equal(h[0].dob, WATCHLIST_UNKNOWN);
    assert_int_equal(h[0].country, WATCHLIST_UNKNOWN);
    r = screen_ok(csv_list, "Jürgen Müller", "1961-03-02", " de ", 850, h, HITS);
    assert_int_equal(h[0].score, 1000); /* the bonus never passes 1000 */
    assert_int_equal(h[0].dob, WATCHLIST_AGREE);
    assert_int_equal(h[0].country, WATCHLIST_AGREE);
    r = screen_ok(csv_list, "Jürgen Müller", "1970", "FR", 850, h, HITS);
    assert_int_equal(h[0].score, 1000 - WATCHLIST_DOB_CONFLICT_PENALTY);
    assert_int_equal(h[0].name_score, 1000);
    assert_int_equal(h[0].dob, WATCHLIST_CONFLICT);
    assert_int_equal(h[0].country, WATCHLIST_CONFLICT);
    /* which name hit: the alias "Pepe Álvarez" */
    r = screen_ok(csv_list, "Pepe Alvarez", NULL, NULL, SCREEN_THRESHOLD_DEFAULT, h, HITS);
    assert_int_equal(h[0].entry, entry_find(csv_list, "C-001"));
    assert_int_equal(h[0].name, 1);
    /* a fuzzy match: an agreeing year adds the bonus, a conflicting one drops it below a
     * threshold it reached without a year */
    r = screen_ok(sdn_list, "Mohamad Yousef Hadad", NULL, NULL, SCREEN_THRESHOLD_DEFAULT, h, 4);
    assert_int_equal(r.hits_n, 1);
    int ns = h[0].name_score;
    assert_true(ns > SCREEN_THRESHOLD_DEFAULT && ns < 1000 - WATCHLIST_DOB_AGREE_BONUS);
    int threshold = ns - WATCHLIST_DOB_CONFLICT_PENALTY / 2;
    r = screen_ok(sdn_list, "Mohamad Yousef Hadad", "1990", NULL, threshold, h, 4);
    assert_int_equal(r.hits_total, 0);
    r = screen_ok(sdn_list, "Mohamad Yousef Hadad", "1965", NULL, threshold, h, 4);
    assert_int_equal(r.hits_n, 1);
    assert_int_equal(h[0].score, ns + WATCHLIST_DOB_AGREE_BONUS);
    assert_int_equal(h[0].dob, WATCHLIST_AGREE);
    /* the bonus lets a name just under the threshold through */
    r = screen_ok(sdn_list, "Mohamad Yousef Hadad", "1965", NULL, ns + 10, h, 4);
    assert_int_equal(r.hits_n, 1);
    r = screen_ok(sdn_list, "Mohamad Yousef Hadad", NULL, NULL, ns + 10, h, 4);
    assert_int_equal(r.hits_n, 0);
    /* a one-word name whose only pair is under the threshold: the prefilter must lower its floor
     * by the bonus when a date is given (Yusef / Yusuf is 907) */
    static const char list[] = "name,date_of_birth\nYusuf,1970\n";
    struct watchlist *l = NULL;
    size_t bad_line = 0;
    assert_int_equal(watchlist_csv_parse(list, sizeof(list) - 1, "t", &l, &bad_line), CF_OK);
    r = screen_ok(l, "Yusef", "1970", NULL, 920, h, 4);
    assert_int_equal(r.hits_n, 1);
    assert_int_equal(h[0].score, 907 + WATCHLIST_DOB_AGREE_BONUS);
    r = screen_ok(l, "Yusef", NULL, NULL, 920, h, 4);
    assert_int_equal(r.hits_n, 0);
    watchlist_destroy(l);
}

static void test_screen_order_limits_and_refusals(void **state)
{
    (void)state;
    struct watchlist_hit h[HITS], sentinel[HITS];
    /* threshold 0: every entry, best first, ties in entry order */
    struct watchlist_result r = screen_ok(sdn_list, "Hamza Masri", NULL, NULL, 0, h, HITS);
    assert_int_equal(r.hits_total, watchlist_entries_n(sdn_list));
    assert_int_equal(r.hits_n, watchlist_entries_n(sdn_list));
    assert_int_equal(h[0].entry, entry_find(sdn_list, "90025"));
    for (size_t i = 1; i < r.hits_n; i++)
        assert_true(h[i - 1].score > h[i].score ||
                    (h[i - 1].score == h[i].score && h[i - 1].entry < h[i].entry));
    struct watchlist_hit top[3];
    struct watchlist_result r3 = screen_ok(sdn_list, "Hamza Masri", NULL, NULL, 0, top, 3);
    assert_int_equal(r3.hits_n, 3);
    assert_int_equal(r3.hits_total, r.hits_total);
    assert_memory_equal(top, h, sizeof(top));
    r3 = screen_ok(sdn_list, "Hamza Masri", NULL, NULL, 0, NULL, 0);
    assert_int_equal(r3.hits_n, 0);
    assert_int_equal(r3.hits_total, r.hits_total);
    /* threshold 1000: exact names only */
    r = screen_ok(sdn_list, "Hamza Al Masri", NULL, NULL, 1000, h, HITS);
    assert_int_equal(r.hits_total, 1);
    r = screen_ok(sdn_list, "Hamza Masry", NULL, NULL, 1000, h, HITS); /* y -> i: masri */
    assert_int_equal(r.hits_total, 1);
    r = screen_ok(sdn_list, "Hamza Masra", NULL, NULL, 1000, h, HITS);
    assert_int_equal(r.hits_total, 0);
    /* refusals leave hits and result untouched */
    static const struct {
        const char *name, *dob;
    } bad[] = {{"", NULL},      {"\xFF", NULL},         {"Hamza", "1965-13"},
               {"Hamza", "65"}, {"Hamza", "1965-01-1"}, {"Hamza", "circa 1965"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(sentinel, 0x5A, sizeof(sentinel));
        memcpy(h, sentinel, sizeof(h));
        struct watchlist_result res, res_sentinel;
        memset(&res_sentinel, 0x5A, sizeof(res_sentinel));
        memcpy(&res, &res_sentinel, sizeof(res));
        struct watchlist_query q = {bad[i].name, strlen(bad[i].name), bad[i].dob, NULL, 850};
        assert_int_equal(watchlist_screen(sdn_list, &q, h, HITS, &res), CF_ERR_INVALID_FIELD);
        assert_int_equal(watchlist_screen_scan(sdn_list, &q, h, HITS, &res), CF_ERR_INVALID_FIELD);
        assert_memory_equal(h, sentinel, sizeof(h));
        assert_memory_equal(&res, &res_sentinel, sizeof(res));
    }
}

/* Prefilter = full scan ------------------------------------------------------------------------ */

/* Screens q both ways and fails unless the hits are the same. */
static void both_ways_equal(const struct watchlist *l, const struct watchlist_query *q)
{
    struct watchlist_hit a[HITS], b[HITS];
    struct watchlist_result ra, rb;
    assert_int_equal(watchlist_screen(l, q, a, HITS, &ra), CF_OK);
    assert_int_equal(watchlist_screen_scan(l, q, b, HITS, &rb), CF_OK);
    if (ra.hits_total != rb.hits_total || ra.hits_n != rb.hits_n ||
        memcmp(a, b, ra.hits_n * sizeof(a[0])) != 0)
        fail_msg("prefilter and scan differ for \"%.*s\" at %d: %zu vs %zu hits", (int)q->name_len,
                 q->name, q->threshold, ra.hits_total, rb.hits_total);
    assert_true(ra.names_scored <= rb.names_scored);
}

/* Calls fn for every variant: query, expected, date of birth. */
static void variants_each(void (*fn)(const char *, const char *, const char *, void *), void *arg)
{
    size_t len = 0;
    char *text = data_read("variants.csv", &len);
    struct watchlist_csv r;
    watchlist_csv_init(&r, text, len, record_buf, sizeof(record_buf));
    struct watchlist_field f[3];
    size_t n = 0, line = 0;
    for (bool header = true;; header = false) {
        assert_int_equal(watchlist_csv_next(&r, f, 3, &n, &line), CF_OK);
        if (n == 0)
            break;
        assert_int_equal(n, 3);
        if (header)
            continue;
        char query[SCREEN_NAME_BYTES_MAX + 1], expected[64], dob[16];
        snprintf(query, sizeof(query), "%.*s", (int)f[0].len, f[0].text);
        snprintf(expected, sizeof(expected), "%.*s", (int)f[1].len, f[1].text);
        snprintf(dob, sizeof(dob), "%.*s", (int)f[2].len, f[2].text);
        fn(query, expected, dob, arg);
    }
    free(text);
}

static void variant_both_ways(const char *query, const char *expected, const char *dob, void *arg)
{
    (void)expected;
    size_t *count = arg;
    static const int thresholds[] = {0, 700, 800, 850, 900, 1000};
    const char *dobs[] = {NULL, dob, "1900"};
    const struct watchlist *lists[] = {sdn_list, csv_list};
    for (size_t t = 0; t < sizeof(thresholds) / sizeof(thresholds[0]); t++)
        for (size_t d = 0; d < 3; d++)
            for (size_t l = 0; l < 2; l++) {
                struct watchlist_query q = {query, strlen(query), dobs[d], NULL, thresholds[t]};
                both_ways_equal(lists[l], &q);
                (*count)++;
            }
}

static void test_prefilter_equals_scan_on_variants(void **state)
{
    (void)state;
    size_t count = 0;
    variants_each(variant_both_ways, &count);
    assert_true(count > 8000);
}

static const char *const synth_first[] = {"Mohammed", "Ali",  "Ivan",   "Maria", "Jose",
                                          "Wei",      "Li",   "Hans",   "Abd",   "Nguyen",
                                          "Fatima",   "Omar", "Sergei", "Ana",   "Yusuf"};
static const char *const synth_syllables[] = {"ka", "mi",  "ro", "sa", "al", "ber", "ov", "ich",
                                              "ez", "son", "ha", "de", "la", "man", "ko", "el"};

/* A generated name of 1..4 words, some of them particles or first names. */
static void synth_name(uint64_t *lcg, char *out, size_t bytes)
{
    size_t n = 0, words = 1 + lcg_next(lcg) % 4;
    for (size_t w = 0; w < words; w++) {
        if (w > 0)
            out[n++] = lcg_next(lcg) % 5 == 0 ? '-' : ' ';
        if (lcg_next(lcg) % 3 == 0) {
            n += (size_t)snprintf(
                out + n, bytes - n, "%s",
                synth_first[lcg_next(lcg) % (sizeof(synth_first) / sizeof(synth_first[0]))]);
            continue;
        }
        size_t parts = 1 + lcg_next(lcg) % 3;
        for (size_t p = 0; p < parts; p++)
            n += (size_t)snprintf(out + n, bytes - n, "%s",
                                  synth_syllables[lcg_next(lcg) % (sizeof(synth_syllables) /
                                                                   sizeof(synth_syllables[0]))]);
    }
    out[n] = '\0';
}

static void test_prefilter_equals_scan_on_generated_names(void **state)
{
    (void)state;
    size_t cap = 1500 * 200, n = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    n += (size_t)snprintf(text, cap, "name,aliases,date_of_birth\n");
    uint64_t lcg = 2024;
    for (int i = 0; i < 1500; i++) {
        char name[64], alias[64];
        synth_name(&lcg, name, sizeof(name));
        synth_name(&lcg, alias, sizeof(alias));
        n += (size_t)snprintf(text + n, cap - n, "%s,%s,%s\n", name, i % 3 ? "" : alias,
                              i % 2 ? "1970" : "");
    }
    struct watchlist *l = NULL;
    size_t bad_line = 0;
    assert_int_equal(watchlist_csv_parse(text, n, "synthetic", &l, &bad_line), CF_OK);
    size_t hits = 0;
    for (int i = 0; i < 100; i++) {
        char name[64];
        synth_name(&lcg, name, sizeof(name));
        for (int t = 760; t <= 960; t += 100) {
            struct watchlist_query q = {name, strlen(name), i % 2 ? "1970" : NULL, NULL, t};
            both_ways_equal(l, &q);
            struct watchlist_result r;
            assert_int_equal(watchlist_screen(l, &q, NULL, 0, &r), CF_OK);
            hits += r.hits_total;
        }
    }
    assert_true(hits > 50); /* the comparison saw hits, not just empty answers */
    watchlist_destroy(l);
    free(text);
}

/* Mutated files load or are refused, never crash; what loads can be screened. */
static void test_mutated_files(void **state)
{
    (void)state;
    size_t sdn_n = 0, alt_n = 0;
    char *sdn = data_read("sdn.csv", &sdn_n), *alt = data_read("alt.csv", &alt_n);
    static const char bytes[] = {'"', ',', '\n', '\r', '\0', ' ', '-', 'A', '\x1a', '\xC3'};
    uint64_t lcg = 5;
    size_t loaded = 0;
    for (int round = 0; round < 300; round++) {
        char *m = malloc(sdn_n);
        assert_non_null(m);
        memcpy(m, sdn, sdn_n);
        for (int k = 0; k < 1 + round % 4; k++)
            m[lcg_next(&lcg) % sdn_n] = bytes[lcg_next(&lcg) % sizeof(bytes)];
        size_t len = round % 7 == 0 ? lcg_next(&lcg) % sdn_n : sdn_n;
        struct watchlist *l = NULL;
        size_t bad_line = 0;
        bool in_alt = false;
        enum cf_err err = watchlist_sdn_parse(m, len, alt, alt_n, "m", &l, &bad_line, &in_alt);
        assert_true(err == CF_OK || err == CF_ERR_INVALID_FIELD);
        if (err == CF_OK) {
            loaded++;
            struct watchlist_hit h[4];
            struct watchlist_query q = {"Sea Falcon", 10, NULL, NULL, 800};
            struct watchlist_result r;
            assert_int_equal(watchlist_screen(l, &q, h, 4, &r), CF_OK);
            watchlist_destroy(l);
        } else {
            assert_true(bad_line >= 1);
        }
        free(m);
    }
    assert_true(loaded > 0 && loaded < 300);
    free(sdn);
    free(alt);
}

/* Precision and recall ------------------------------------------------------------------------- */

struct tally {
    size_t tp, fp, fn;
};

static void variant_tally(const char *query, const char *expected, const char *dob, void *arg)
{
    struct tally *t = arg;
    const struct watchlist *lists[] = {sdn_list, csv_list};
    const char *prefix[] = {"sdn:", "csv:"};
    bool found = false;
    for (size_t l = 0; l < 2; l++) {
        struct watchlist_hit h[HITS];
        struct watchlist_result r =
            screen_ok(lists[l], query, dob, NULL, SCREEN_THRESHOLD_DEFAULT, h, HITS);
        for (size_t i = 0; i < r.hits_n; i++) {
            struct watchlist_entry_view v;
            watchlist_entry_get(lists[l], h[i].entry, &v);
            char id[96];
            snprintf(id, sizeof(id), "%s%s", prefix[l], v.id);
            bool right = strcmp(id, expected) == 0;
            found = found || right;
            t->tp += right;
            t->fp += !right;
            if (!right)
                printf("  false positive: \"%s\" -> %s (%d)\n", query, id, h[i].score);
        }
    }
    if (!found && strcmp(expected, "none") != 0) {
        t->fn++;
        printf("  false negative: \"%s\" (expected %s)\n", query, expected);
    }
}

static void test_precision_and_recall(void **state)
{
    (void)state;
    struct tally t = {0, 0, 0};
    variants_each(variant_tally, &t);
    double precision = (double)t.tp / (double)(t.tp + t.fp);
    double recall = (double)t.tp / (double)(t.tp + t.fn);
    printf("  threshold %d: precision %.3f recall %.3f (tp %zu fp %zu fn %zu)\n",
           SCREEN_THRESHOLD_DEFAULT, precision, recall, t.tp, t.fp, t.fn);
    assert_true(t.tp >= 160);
    assert_true(recall >= 0.98);
    assert_true(precision >= 0.95);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_reader_accepts),
        cmocka_unit_test(test_csv_reader_refuses),
        cmocka_unit_test(test_sdn_load),
        cmocka_unit_test(test_sdn_dob_clauses),
        cmocka_unit_test(test_sdn_refuses),
        cmocka_unit_test(test_sdn_limits),
        cmocka_unit_test(test_csv_list_load),
        cmocka_unit_test(test_csv_list_refuses),
        cmocka_unit_test(test_csv_list_entries_limit),
        cmocka_unit_test(test_file_read_and_version),
        cmocka_unit_test(test_screen_dob_and_country),
        cmocka_unit_test(test_screen_order_limits_and_refusals),
        cmocka_unit_test(test_prefilter_equals_scan_on_variants),
        cmocka_unit_test(test_prefilter_equals_scan_on_generated_names),
        cmocka_unit_test(test_mutated_files),
        cmocka_unit_test(test_precision_and_recall),
    };
    return cmocka_run_group_tests(tests, lists_load, lists_free);
}
