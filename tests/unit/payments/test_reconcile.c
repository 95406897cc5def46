/*
 * test_reconcile.c - unit tests for reconcile.c and recon_query.c: the CSV reader (quotes,
 * doubled quotes, commas and line breaks inside quotes, CRLF and LF, a missing last line break,
 * a byte order mark, blank lines, and every malformed shape with the line it is reported on),
 * the settlement file (the header, the six columns, every field's rules, the row and byte
 * bounds), the comparator (every kind of mismatch, what is matched, the window and its margin,
 * the order of the list, 100 000 rows against 100 000 operations), the window's texts, and the
 * query of Coffer's side against SQLite (and PostgreSQL when COFFER_TEST_PG_URL is set): only
 * gateway kinds, only [from, to), every row across several pages, the bound, and a whole run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "../identity/testdb.h" /* the throwaway database: SQLite, or PostgreSQL */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "payments/reconcile.h"
#include "store/sql/sql.h"

#define HDR "reference,op_id,type,amount_minor,currency,status\n"
#define DAY_US (24LL * 3600 * 1000000)
#define T0_US 1793491200000000LL /* 2026-11-01T00:00:00Z */
#define TARGET_BYTES_MAX 1024
#define LINE_BYTES 768

/* Helpers -------------------------------------------------------------------------------------- */

static struct arena *arena_new(void)
{
    struct arena *a = arena_create(RECONCILE_ARENA_BYTES_MAX);
    assert_non_null(a);
    return a;
}

/* Parses text; on success *rows and *n are set. */
static enum cf_err parse(struct arena *a, const char *text, struct recon_row **rows, size_t *n,
                         struct recon_error *e)
{
    memset(e, 0, sizeof(*e));
    return recon_file_parse(text, strlen(text), a, rows, n, e);
}

/* The file must be refused on line `line` with a message containing `what`. */
static void refused(const char *text, uint32_t line, const char *what)
{
    struct arena *a = arena_new();
    struct recon_row *rows = NULL;
    size_t n = 99;
    struct recon_error e;
    enum cf_err err = parse(a, text, &rows, &n, &e);
    if (err != CF_ERR_INVALID_FIELD || e.line != line || strstr(e.message, what) == NULL)
        fail_msg("%s: expected line %u '%s', got %d line %u '%s'", text, (unsigned)line, what,
                 (int)err, (unsigned)e.line, e.message);
    assert_string_equal(e.field, "csv");
    assert_null(rows); /* outputs untouched */
    assert_int_equal(n, 99);
    arena_destroy(a);
}

static struct recon_op op_make(const char *id, const char *ref, uint8_t kind, uint8_t status,
                               int64_t amount_minor, const char *currency, int64_t created_at_us)
{
    struct recon_op o;
    memset(&o, 0, sizeof(o));
    snprintf(o.id, sizeof(o.id), "%s", id);
    snprintf(o.gateway_ref, sizeof(o.gateway_ref), "%s", ref);
    o.kind = kind;
    o.status = status;
    o.amount_minor = amount_minor;
    snprintf(o.currency, sizeof(o.currency), "%s", currency);
    o.created_at_us = created_at_us;
    return o;
}

/* Runs the comparison of a file's text with ops over [T0, T0 + 1 day). */
static struct recon_result compare(struct arena *a, const char *text, const struct recon_op *ops,
                                   size_t ops_n, struct recon_row **rows_out)
{
    struct recon_row *rows = NULL;
    size_t n = 0;
    struct recon_error e;
    assert_int_equal(parse(a, text, &rows, &n, &e), CF_OK);
    struct recon_result r;
    assert_int_equal(recon_compare(rows, n, ops, ops_n, T0_US, T0_US + DAY_US, a, &r), CF_OK);
    *rows_out = rows;
    return r;
}

/* The mismatches as "kind:row:op" items joined by spaces (row/op -1 for none). */
static void listing(const struct recon_result *r, char *out, size_t out_bytes)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->mismatches_n; i++) {
        const struct recon_mismatch *m = &r->mismatches[i];
        n += (size_t)snprintf(out + n, out_bytes - n, "%s%s:%d:%d", i > 0 ? " " : "",
                              recon_kind_name(m->kind), m->row == RECON_NONE ? -1 : (int)m->row,
                              m->op == RECON_NONE ? -1 : (int)m->op);
        assert_true(n < out_bytes);
    }
}

/* The reader ----------------------------------------------------------------------------------- */

struct rec {
    size_t n;
    uint32_t line;
    char f[8][RECONCILE_FIELD_BYTES_MAX + 1];
};

/* Reads every record of text (at most 8 of at most 8 fields); returns how many. */
static size_t read_all(const char *text, size_t len, struct rec *out)
{
    struct recon_csv c;
    struct recon_error e;
    recon_csv_init(&c, text, len);
    size_t k = 0;
    for (;;) {
        assert_true(k < 8);
        assert_int_equal(recon_csv_next(&c, out[k].f, 8, &out[k].n, &out[k].line, &e), CF_OK);
        if (out[k].n == 0)
            return k;
        k++;
    }
}

static void test_csv_quotes(void **state)
{
    (void)state;
    struct rec r[8];
    const char text[] = "plain,\"a,b\",\"say \"\"hi\"\"\",\"\"\n"
                        "\"two\nlines\",x\r\n"
                        "\"cr\r\nlf\",\"\",last";
    assert_int_equal(read_all(text, strlen(text), r), 3);
    assert_int_equal(r[0].n, 4);
    assert_string_equal(r[0].f[0], "plain");
    assert_string_equal(r[0].f[1], "a,b");
    assert_string_equal(r[0].f[2], "say \"hi\"");
    assert_string_equal(r[0].f[3], "");
    assert_int_equal(r[0].line, 1);
    assert_int_equal(r[1].n, 2);
    assert_string_equal(r[1].f[0], "two\nlines");
    assert_int_equal(r[1].line, 2);
    assert_int_equal(r[2].n, 3);
    assert_string_equal(r[2].f[0], "cr\r\nlf");
    assert_string_equal(r[2].f[1], "");
    assert_string_equal(r[2].f[2], "last");
    assert_int_equal(r[2].line, 4); /* after a record spanning lines 2 and 3 */
}

static void test_csv_line_ends_bom_blank(void **state)
{
    (void)state;
    struct rec r[8];
    const char text[] = "\xEF\xBB\xBF"
                        "a,b\r\n\r\n\nc,\n,d\n\n";
    assert_int_equal(read_all(text, strlen(text), r), 3);
    assert_string_equal(r[0].f[0], "a"); /* the byte order mark is not part of the field */
    assert_int_equal(r[0].line, 1);
    assert_int_equal(r[1].line, 4); /* two blank lines skipped, counted */
    assert_int_equal(r[1].n, 2);
    assert_string_equal(r[1].f[1], "");
    assert_int_equal(r[2].n, 2);
    assert_string_equal(r[2].f[0], "");
    assert_int_equal(r[2].line, 5);
    /* a trailing comma at the very end is an empty last field */
    assert_int_equal(read_all("x,", 2, r), 1);
    assert_int_equal(r[0].n, 2);
    /* nothing at all, or only a mark */
    assert_int_equal(read_all("", 0, r), 0);
    assert_int_equal(read_all("\xEF\xBB\xBF", 3, r), 0);
    /* a mark in the middle is data */
    assert_int_equal(read_all("a\n\xEF\xBB\xBF", 5, r), 2);
    assert_string_equal(r[1].f[0], "\xEF\xBB\xBF");
}

/* One record that the reader refuses on `line` with `what`. */
static void csv_refused(const char *text, size_t len, size_t fields_max, uint32_t line,
                        const char *what)
{
    struct recon_csv c;
    struct recon_error e;
    char f[8][RECONCILE_FIELD_BYTES_MAX + 1];
    size_t n = 0;
    uint32_t at = 0;
    recon_csv_init(&c, text, len);
    enum cf_err err = CF_OK;
    for (int i = 0; i < 8 && err == CF_OK; i++) {
        err = recon_csv_next(&c, f, fields_max, &n, &at, &e);
        if (err == CF_OK && n == 0)
            break;
    }
    if (err != CF_ERR_INVALID_FIELD || e.line != line || strstr(e.message, what) == NULL)
        fail_msg("%.*s: expected line %u '%s', got %d line %u '%s'", (int)len, text, (unsigned)line,
                 what, (int)err, (unsigned)e.line, e.message);
}

static void test_csv_malformed(void **state)
{
    (void)state;
    csv_refused("a,b\nx\"y,z\n", 10, 8, 2, "quote inside");
    csv_refused("\"ab\"c,d\n", 8, 8, 1, "after a closing quote");
    csv_refused("a\n\"open\nstill\nopen", 18, 8, 2, "never closed");
    csv_refused("a\rb\n", 4, 8, 1, "carriage return");
    csv_refused("a,b\r", 4, 8, 1, "carriage return");
    csv_refused("a,b\n\nc,d,e\n", 11, 2, 3, "more than 2 columns");
    csv_refused("a,b,\n", 5, 2, 1, "more than 2 columns");
    csv_refused("a\nb\0c\n", 6, 8, 2, "NUL");
    csv_refused("\"a\0\"\n", 5, 8, 1, "NUL");
    char longf[RECONCILE_FIELD_BYTES_MAX + 8];
    memset(longf, 'x', sizeof(longf));
    longf[RECONCILE_FIELD_BYTES_MAX + 1] = '\n';
    csv_refused(longf, RECONCILE_FIELD_BYTES_MAX + 2, 8, 1, "longer than 64");
    longf[0] = '"';
    longf[RECONCILE_FIELD_BYTES_MAX + 2] = '"';
    csv_refused(longf, RECONCILE_FIELD_BYTES_MAX + 3, 8, 1, "longer than 64");
    /* exactly the bound is fine, quoted ("" counts once) or not */
    struct rec r[8];
    memset(longf, 'y', RECONCILE_FIELD_BYTES_MAX);
    assert_int_equal(read_all(longf, RECONCILE_FIELD_BYTES_MAX, r), 1);
    assert_int_equal(strlen(r[0].f[0]), RECONCILE_FIELD_BYTES_MAX);
    char quoted[2 * RECONCILE_FIELD_BYTES_MAX + 2];
    quoted[0] = '"';
    memset(quoted + 1, '"', 2 * RECONCILE_FIELD_BYTES_MAX);
    quoted[2 * RECONCILE_FIELD_BYTES_MAX + 1] = '"';
    assert_int_equal(read_all(quoted, sizeof(quoted), r), 1);
    assert_int_equal(strlen(r[0].f[0]), RECONCILE_FIELD_BYTES_MAX);
}

/* The file ------------------------------------------------------------------------------------- */

static void test_file_rows(void **state)
{
    (void)state;
    struct arena *a = arena_new();
    struct recon_row *rows = NULL;
    size_t n = 0;
    struct recon_error e;
    const char text[] = "\xEF\xBB\xBF" HDR "sbx_1,top_1,charge,1000,USD,settled\r\n"
                        "\"sbx,2\",,payout,0,EUR,failed\n"
                        "\n"
                        "sbx_3,wdr_3,payout,9223372036854775807,POINTS_1,settled";
    assert_int_equal(parse(a, text, &rows, &n, &e), CF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].reference, "sbx_1");
    assert_string_equal(rows[0].op_id, "top_1");
    assert_int_equal(rows[0].type, RECON_TYPE_CHARGE);
    assert_int_equal(rows[0].amount_minor, 1000);
    assert_string_equal(rows[0].currency, "USD");
    assert_int_equal(rows[0].state, RECON_STATE_SETTLED);
    assert_int_equal(rows[0].line, 2);
    assert_string_equal(rows[1].reference, "sbx,2");
    assert_string_equal(rows[1].op_id, "");
    assert_int_equal(rows[1].type, RECON_TYPE_PAYOUT);
    assert_int_equal(rows[1].amount_minor, 0);
    assert_int_equal(rows[1].state, RECON_STATE_FAILED);
    assert_int_equal(rows[2].amount_minor, INT64_MAX);
    assert_int_equal(rows[2].line, 5);
    /* the header alone: no rows */
    assert_int_equal(parse(a, HDR, &rows, &n, &e), CF_OK);
    assert_int_equal(n, 0);
    arena_destroy(a);
}

static void test_file_header(void **state)
{
    (void)state;
    refused("", 1, "empty");
    refused("\xEF\xBB\xBF\n\n", 3, "empty");
    refused("sbx_1,top_1,charge,1000,USD,settled\n", 1, "header must be");
    refused("Reference,op_id,type,amount_minor,currency,status\n", 1, "header must be");
    refused("reference,op_id,type,amount_minor,currency\n", 1, "header must be");
    refused("reference,op_id,type,amount_minor,currency,status,note\n", 1, "more than 6 columns");
    refused("\n\nreference, op_id,type,amount_minor,currency,status\n", 3, "header must be");
}

static void test_file_fields(void **state)
{
    (void)state;
    refused(HDR "a,b,charge,1,USD\n", 2, "expected 6 columns, found 5");
    refused(HDR "a,b,charge,1,USD,settled,extra\n", 2, "more than 6 columns");
    refused(HDR "a,b,charge,1,USD,settled,\n", 2, "more than 6 columns");
    refused(HDR ",b,charge,1,USD,settled\n", 2, "reference");
    refused(HDR "a b,b,charge,1,USD,settled\n", 2, "reference");
    refused(HDR "\"a\nb\",b,charge,1,USD,settled\n", 2, "reference");
    refused(HDR "a,b,charge,1,USD,settled\n"
                "\"x\ny\",b,charge,1,USD,settled\n",
            3, "reference");
    refused(HDR "a,\"b\nc\",charge,1,USD,settled\n", 2, "op_id"); /* a line break in it */
    refused(HDR "a,b,\"x\"\"\",1,USD,settled\n", 2, "type");
    refused(HDR "a,b,Charge,1,USD,settled\n", 2, "type");
    refused(HDR "a,b,charge,-1,USD,settled\n", 2, "digits only");
    refused(HDR "a,b,charge,+1,USD,settled\n", 2, "digits only");
    refused(HDR "a,b,charge,1.00,USD,settled\n", 2, "digits only");
    refused(HDR "a,b,charge, 1,USD,settled\n", 2, "digits only");
    refused(HDR "a,b,charge,,USD,settled\n", 2, "digits only");
    refused(HDR "a,b,charge,9223372036854775808,USD,settled\n", 2, "larger than");
    refused(HDR "a,b,charge,1,usd,settled\n", 2, "currency");
    refused(HDR "a,b,charge,1,,settled\n", 2, "currency");
    refused(HDR "a,b,charge,1,ABCDEFGHIJKLM,settled\n", 2, "currency");
    refused(HDR "a,b,charge,1,USD,pending\n", 2, "status");
    refused(HDR "a,b,charge,1,USD,\n", 2, "status");
    char big[256];
    char ref[PAY_REF_BYTES_MAX + 1];
    memset(ref, 'r', PAY_REF_BYTES_MAX);
    ref[PAY_REF_BYTES_MAX] = '\0';
    snprintf(big, sizeof(big), HDR "%s,b,charge,1,USD,settled\n", ref); /* 64: one too many */
    refused(big, 2, "reference must be 1 to 63");
    char id[PAY_ID_BYTES_MAX + 1];
    memset(id, 'i', PAY_ID_BYTES_MAX);
    id[PAY_ID_BYTES_MAX] = '\0';
    snprintf(big, sizeof(big), HDR "a,%s,charge,1,USD,settled\n", id);
    refused(big, 2, "op_id");
    /* the longest of each is fine */
    struct arena *a = arena_new();
    struct recon_row *rows = NULL;
    size_t n = 0;
    struct recon_error e;
    ref[PAY_REF_BYTES_MAX - 1] = '\0';
    id[PAY_ID_BYTES_MAX - 1] = '\0';
    snprintf(big, sizeof(big), HDR "%s,%s,charge,1,ABCDEFGHIJKL,settled\n", ref, id);
    assert_int_equal(parse(a, big, &rows, &n, &e), CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].reference, ref);
    assert_string_equal(rows[0].op_id, id);
    arena_destroy(a);
}

/* A file of n rows ("r<i>,,charge,1,USD,settled"), malloc'd. */
static char *file_of(size_t n, size_t *len_out)
{
    size_t cap = sizeof(HDR) + n * 40;
    char *t = malloc(cap);
    assert_non_null(t);
    size_t len = (size_t)snprintf(t, cap, "%s", HDR);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(t + len, cap - len, "r%zu,,charge,1,USD,settled\n", i);
    assert_true(len < cap);
    *len_out = len;
    return t;
}

static void test_file_bounds(void **state)
{
    (void)state;
    struct arena *a = arena_new();
    struct recon_row *rows = NULL;
    size_t n = 0, len = 0;
    struct recon_error e;
    char *t = file_of(RECONCILE_ROWS_MAX, &len);
    assert_int_equal(recon_file_parse(t, len, a, &rows, &n, &e), CF_OK);
    assert_int_equal(n, RECONCILE_ROWS_MAX);
    assert_string_equal(rows[RECONCILE_ROWS_MAX - 1].reference, "r99999");
    assert_int_equal(rows[RECONCILE_ROWS_MAX - 1].line, RECONCILE_ROWS_MAX + 1);
    free(t);
    arena_destroy(a);

    a = arena_new();
    t = file_of(RECONCILE_ROWS_MAX + 1, &len);
    rows = NULL;
    assert_int_equal(recon_file_parse(t, len, a, &rows, &n, &e), CF_ERR_INVALID_FIELD);
    assert_int_equal(e.line, RECONCILE_ROWS_MAX + 2);
    assert_non_null(strstr(e.message, "more than 100000 rows"));
    assert_null(rows);
    free(t);
    arena_destroy(a);

    /* bytes: one past the bound is refused before anything is read */
    a = arena_new();
    t = malloc(RECONCILE_FILE_BYTES_MAX + 1);
    assert_non_null(t);
    memset(t, '\n', RECONCILE_FILE_BYTES_MAX + 1);
    memcpy(t, HDR, sizeof(HDR) - 1);
    assert_int_equal(recon_file_parse(t, RECONCILE_FILE_BYTES_MAX + 1, a, &rows, &n, &e),
                     CF_ERR_PAYLOAD_TOO_LARGE);
    assert_int_equal(recon_file_parse(t, RECONCILE_FILE_BYTES_MAX, a, &rows, &n, &e), CF_OK);
    assert_int_equal(n, 0); /* a header and blank lines */
    free(t);
    arena_destroy(a);
}

/* The comparison ------------------------------------------------------------------------------- */

static void test_compare_all_match(void **state)
{
    (void)state;
    struct arena *a = arena_new();
    struct recon_row *rows = NULL;
    const struct recon_op ops[] = {
        op_make("top_1", "sbx_1", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 1000, "USD", T0_US + 5),
        op_make("wdr_2", "sbx_2", PAY_KIND_WITHDRAWAL, PAY_STATUS_COMPLETED, 200, "USD", T0_US),
        op_make("pyo_3", "sbx_3", PAY_KIND_PAYOUT, PAY_STATUS_FAILED, 300, "EUR", T0_US),
        /* not in the file, and no mismatch: failed, pending, waiting */
        op_make("top_4", "sbx_4", PAY_KIND_TOPUP, PAY_STATUS_FAILED, 10, "USD", T0_US),
        op_make("top_5", "", PAY_KIND_TOPUP, PAY_STATUS_PENDING, 10, "USD", T0_US),
        op_make("top_6", "sbx_6", PAY_KIND_TOPUP, PAY_STATUS_ACTION_REQUIRED, 10, "USD", T0_US),
        op_make("top_7", "", PAY_KIND_TOPUP, PAY_STATUS_PROCESSING, 10, "USD", T0_US),
        /* completed, outside the window (the margin): named or not, no mismatch */
        op_make("top_8", "sbx_8", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 80, "USD", T0_US - 1),
        op_make("top_9", "sbx_9", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 90, "USD", T0_US + DAY_US),
    };
    struct recon_result r = compare(a,
                                    HDR "sbx_1,top_1,charge,1000,USD,settled\n"
                                        "sbx_2,,payout,200,USD,settled\n" /* by reference */
                                        "sbx_3,pyo_3,payout,300,EUR,failed\n"
                                        "sbx_8,top_8,charge,80,USD,settled\n",
                                    ops, sizeof(ops) / sizeof(ops[0]), &rows);
    assert_int_equal(r.mismatches_n, 0);
    assert_int_equal(r.matched, 4);
    arena_destroy(a);
}

static void test_compare_every_kind(void **state)
{
    (void)state;
    struct arena *a = arena_new();
    struct recon_row *rows = NULL;
    const struct recon_op ops[] = {
        /* 0 */ op_make("top_a", "sbx_a", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 100, "USD", T0_US),
        /* 1 */ op_make("top_b", "sbx_b", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 100, "USD", T0_US),
        /* 2 */ op_make("top_c", "sbx_c", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 100, "USD", T0_US),
        /* 3 */ op_make("top_d", "sbx_d", PAY_KIND_TOPUP, PAY_STATUS_PENDING, 100, "USD", T0_US),
        /* 4 */
        op_make("wdr_e", "sbx_e", PAY_KIND_WITHDRAWAL, PAY_STATUS_COMPLETED, 100, "USD", T0_US),
        /* 5 */ op_make("top_f", "sbx_f", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 100, "USD", T0_US),
        /* 6 */ op_make("top_g", "sbx_g", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 100, "USD", T0_US),
        /* 7 */ op_make("top_h", "sbx_h", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 100, "USD", T0_US),
        /* 8 */ op_make("top_i", "sbx_i", PAY_KIND_TOPUP, PAY_STATUS_FAILED, 100, "USD", T0_US),
        /* 9 */ op_make("top_j", "", PAY_KIND_TOPUP, PAY_STATUS_PENDING, 100, "USD", T0_US),
    };
    const char file[] = HDR "sbx_a,top_a,charge,150,USD,settled\n"    /* 0: amount */
                            "sbx_b,top_b,charge,100,EUR,settled\n"    /* 1: currency only */
                            "sbx_c,top_c,charge,100,USD,failed\n"     /* 2: completed, failed */
                            "sbx_d,top_d,charge,100,USD,settled\n"    /* 3: pending, settled */
                            "sbx_e,wdr_e,charge,100,USD,settled\n"    /* 4: a withdrawal */
                            "sbx_zz,top_f,charge,100,USD,settled\n"   /* 5: another reference */
                            "sbx_g,top_nope,charge,100,USD,settled\n" /* 6: unknown op_id */
                            "sbx_x,top_x,charge,5,USD,settled\n"      /* 7: nowhere */
                            "sbx_a,top_y,charge,5,USD,settled\n"      /* 8: reference again */
                            "sbx_w,top_b,charge,5,USD,settled\n"      /* 9: op_id again */
                            "sbx_i,top_i,charge,100,USD,failed\n"     /* 10: failed, failed */
                            "sbx_v,,charge,100,USD,settled\n"         /* 11: nowhere */
                            "sbx_j,,charge,100,USD,failed\n";         /* 12: top_j has no ref */
    struct recon_result r = compare(a, file, ops, sizeof(ops) / sizeof(ops[0]), &rows);
    char got[1024];
    listing(&r, got, sizeof(got));
    assert_string_equal(got, "amount_differs:0:0 currency_differs:1:1 status_differs:2:2 "
                             "status_differs:3:3 type_differs:4:4 reference_differs:5:5 "
                             "reference_differs:6:6 missing_in_coffer:7:-1 duplicated:8:-1 "
                             "duplicated:9:-1 missing_in_coffer:11:-1 missing_in_coffer:12:-1 "
                             "missing_in_gateway:-1:7");
    assert_int_equal(r.matched, 1); /* sbx_i */
    assert_int_equal(r.by_kind[RECON_MISSING_IN_COFFER], 3);
    assert_int_equal(r.by_kind[RECON_DUPLICATED], 2);
    assert_int_equal(r.by_kind[RECON_STATUS_DIFFERS], 2);
    assert_int_equal(r.by_kind[RECON_MISSING_IN_GATEWAY], 1); /* top_h: completed, unnamed */
    /* "sbx_j" has no gateway_ref in Coffer yet (top_j, pending): it cannot be found by it */
    arena_destroy(a);
}

static void test_compare_duplicates(void **state)
{
    (void)state;
    struct arena *a = arena_new();
    struct recon_row *rows = NULL;
    const struct recon_op ops[] = {
        op_make("top_1", "sbx_1", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 100, "USD", T0_US),
        op_make("top_2", "sbx_2", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 100, "USD", T0_US),
    };
    /* the same row three times; then top_2's op_id again under another reference */
    struct recon_result r = compare(a,
                                    HDR "sbx_1,top_1,charge,100,USD,settled\n"
                                        "sbx_1,top_1,charge,100,USD,settled\n"
                                        "sbx_2,top_2,charge,100,USD,settled\n"
                                        "sbx_1,top_1,charge,100,USD,settled\n"
                                        "sbx_q,top_2,charge,100,USD,settled\n",
                                    ops, 2, &rows);
    char got[512];
    listing(&r, got, sizeof(got));
    assert_string_equal(got, "duplicated:1:-1 duplicated:3:-1 duplicated:4:-1");
    assert_int_equal(r.matched, 2);
    /* two rows naming one operation by different keys */
    struct recon_result r2 = compare(a,
                                     HDR "sbx_other,top_1,charge,100,USD,settled\n"
                                         "sbx_1,,charge,100,USD,settled\n",
                                     ops, 2, &rows);
    listing(&r2, got, sizeof(got));
    assert_string_equal(got, "reference_differs:0:0 duplicated:1:0 missing_in_gateway:-1:1");
    arena_destroy(a);
}

static void test_compare_status_pairs(void **state)
{
    (void)state;
    static const struct {
        uint8_t status;
        const char *gateway;
        bool differs;
    } cases[] = {
        {PAY_STATUS_COMPLETED, "settled", false}, {PAY_STATUS_COMPLETED, "failed", true},
        {PAY_STATUS_FAILED, "failed", false},     {PAY_STATUS_FAILED, "settled", true},
        {PAY_STATUS_PENDING, "settled", true},    {PAY_STATUS_PENDING, "failed", true},
        {PAY_STATUS_PROCESSING, "settled", true}, {PAY_STATUS_ACTION_REQUIRED, "failed", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct arena *a = arena_new();
        struct recon_row *rows = NULL;
        struct recon_op op =
            op_make("pyo_1", "sbx_1", PAY_KIND_PAYOUT, cases[i].status, 7, "USD", T0_US);
        char text[128];
        snprintf(text, sizeof(text), HDR "sbx_1,pyo_1,payout,7,USD,%s\n", cases[i].gateway);
        struct recon_result r = compare(a, text, &op, 1, &rows);
        assert_int_equal(r.mismatches_n, cases[i].differs ? 1 : 0);
        assert_int_equal(r.matched, cases[i].differs ? 0 : 1);
        if (cases[i].differs)
            assert_int_equal(r.mismatches[0].kind, RECON_STATUS_DIFFERS);
        arena_destroy(a);
    }
}

static void test_compare_several_per_row(void **state)
{
    (void)state;
    struct arena *a = arena_new();
    struct recon_row *rows = NULL;
    struct recon_op op =
        op_make("top_1", "sbx_1", PAY_KIND_TOPUP, PAY_STATUS_PENDING, 100, "USD", T0_US);
    struct recon_result r = compare(a, HDR "sbx_9,top_1,payout,100,EUR,settled\n", &op, 1, &rows);
    char got[512];
    listing(&r, got, sizeof(got));
    assert_string_equal(got, "type_differs:0:0 reference_differs:0:0 currency_differs:0:0 "
                             "status_differs:0:0");
    assert_int_equal(r.matched, 0);
    char line[LINE_BYTES];
    recon_mismatch_format(&r.mismatches[2], rows, &op, line, sizeof(line));
    assert_string_equal(line, "currency_differs line=2 reference=sbx_9 op_id=top_1 "
                              "gateway_type=payout gateway_amount_minor=100 "
                              "gateway_currency=EUR gateway_status=settled coffer_type=topup "
                              "coffer_amount_minor=100 coffer_currency=USD "
                              "coffer_status=pending coffer_reference=sbx_1");
    /* one side only */
    struct recon_mismatch only_op = {RECON_NONE, 0, RECON_MISSING_IN_GATEWAY};
    recon_mismatch_format(&only_op, rows, &op, line, sizeof(line));
    assert_string_equal(line, "missing_in_gateway reference=sbx_1 op_id=top_1 coffer_type=topup "
                              "coffer_amount_minor=100 coffer_currency=USD "
                              "coffer_status=pending coffer_reference=sbx_1");
    arena_destroy(a);
}

static void test_compare_empty_sides(void **state)
{
    (void)state;
    struct arena *a = arena_new();
    struct recon_result r;
    assert_int_equal(recon_compare(NULL, 0, NULL, 0, 0, INT64_MAX, a, &r), CF_OK);
    assert_int_equal(r.mismatches_n, 0);
    assert_int_equal(r.matched, 0);
    struct recon_op op =
        op_make("top_1", "sbx_1", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 1, "USD", 0);
    assert_int_equal(recon_compare(NULL, 0, &op, 1, 0, INT64_MAX, a, &r), CF_OK);
    assert_int_equal(r.by_kind[RECON_MISSING_IN_GATEWAY], 1);
    assert_int_equal(recon_compare(NULL, 0, &op, 1, 1, INT64_MAX, a, &r), CF_OK);
    assert_int_equal(r.mismatches_n, 0); /* created before the window */
    arena_destroy(a);
}

/* 100 000 rows against 100 000 operations (in another order): every one matched. A quadratic
 * comparison would take minutes here; this takes well under a second. */
static void test_compare_at_the_bounds(void **state)
{
    (void)state;
    struct arena *a = arena_new();
    size_t n = RECONCILE_ROWS_MAX;
    struct recon_row *rows = arena_calloc(a, n, sizeof(*rows));
    struct recon_op *ops = arena_calloc(a, n, sizeof(*ops));
    assert_non_null(rows);
    assert_non_null(ops);
    for (size_t i = 0; i < n; i++) {
        size_t j = (i * 7919) % n; /* a permutation: 7919 is prime, n is not its multiple */
        snprintf(rows[i].reference, sizeof(rows[i].reference), "sbx_%zu", j);
        if (i % 2 == 1) /* half by op_id, half by reference */
            snprintf(rows[i].op_id, sizeof(rows[i].op_id), "top_%zu", j);
        rows[i].type = RECON_TYPE_CHARGE;
        rows[i].state = RECON_STATE_SETTLED;
        rows[i].amount_minor = (int64_t)j;
        snprintf(rows[i].currency, sizeof(rows[i].currency), "USD");
        rows[i].line = (uint32_t)i + 2;
        ops[i] = op_make("", "", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, (int64_t)i, "USD", T0_US);
        snprintf(ops[i].id, sizeof(ops[i].id), "top_%zu", i);
        snprintf(ops[i].gateway_ref, sizeof(ops[i].gateway_ref), "sbx_%zu", i);
    }
    struct recon_result r;
    assert_int_equal(recon_compare(rows, n, ops, n, T0_US, T0_US + DAY_US, a, &r), CF_OK);
    assert_int_equal(r.matched, n);
    assert_int_equal(r.mismatches_n, 0);
    /* every amount off by one, and the last operation unnamed */
    for (size_t i = 0; i < n; i++)
        rows[i].amount_minor++;
    rows[n - 1].state = RECON_STATE_FAILED;
    snprintf(rows[n - 1].reference, sizeof(rows[n - 1].reference), "sbx_zzz");
    rows[n - 1].op_id[0] = '\0';
    assert_int_equal(recon_compare(rows, n, ops, n, T0_US, T0_US + DAY_US, a, &r), CF_OK);
    assert_int_equal(r.by_kind[RECON_AMOUNT_DIFFERS], n - 1);
    assert_int_equal(r.by_kind[RECON_MISSING_IN_COFFER], 1);
    assert_int_equal(r.by_kind[RECON_MISSING_IN_GATEWAY], 1);
    arena_destroy(a);
}

static void test_compare_arena_full(void **state)
{
    (void)state;
    struct arena *a = arena_create(64 * 1024);
    assert_non_null(a);
    struct recon_row rows[4];
    memset(rows, 0, sizeof(rows));
    struct recon_op *ops = calloc(2000, sizeof(*ops));
    assert_non_null(ops);
    struct recon_result r = {.matched = 77};
    assert_int_equal(recon_compare(rows, 4, ops, 2000, 0, INT64_MAX, a, &r), CF_ERR_NOMEM);
    assert_int_equal(r.matched, 77); /* untouched */
    free(ops);
    arena_destroy(a);
}

/* The window ----------------------------------------------------------------------------------- */

static void test_window(void **state)
{
    (void)state;
    int64_t f = -1, t = -1;
    struct recon_error e;
    assert_int_equal(recon_window_parse(NULL, NULL, &f, &t, &e), CF_OK);
    assert_int_equal(f, 0);
    assert_int_equal(t, INT64_MAX);
    assert_int_equal(recon_window_parse("2026-11-01", "", &f, &t, &e), CF_OK);
    assert_int_equal(f, T0_US);
    assert_int_equal(t, INT64_MAX);
    assert_int_equal(recon_window_parse("", "2026-11-02T00:00:00Z", &f, &t, &e), CF_OK);
    assert_int_equal(f, 0);
    assert_int_equal(t, T0_US + DAY_US);
    f = t = 5;
    assert_int_equal(recon_window_parse("2026-11-1", NULL, &f, &t, &e), CF_ERR_INVALID_FIELD);
    assert_string_equal(e.field, "from");
    assert_int_equal(f, 5);
    assert_int_equal(recon_window_parse(NULL, "tomorrow", &f, &t, &e), CF_ERR_INVALID_FIELD);
    assert_string_equal(e.field, "to");
    assert_int_equal(recon_window_parse("2026-11-02", "2026-11-01", &f, &t, &e),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(e.field, "to");
    assert_int_equal(recon_window_parse("2026-11-01", "2026-11-01", &f, &t, &e),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(t, 5);
}

/* Coffer's side, against a database ---------------------------------------------------------- */

struct fx {
    char target[TARGET_BYTES_MAX];
    char pg_name[TESTDB_NAME_BYTES];
    char dir[TESTDB_DIR_BYTES];
    struct sqldb *db;
    struct payments *p;
};

static const struct vault *no_vault(void *ctx, uint32_t key_id)
{
    (void)ctx;
    (void)key_id;
    return NULL; /* nothing here seals or opens */
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    if (!testdb_create("trc", false, f->dir, f->pg_name, f->target, sizeof(f->target)) ||
        sqldb_open(f->target, &f->db) != CF_OK)
        return -1;
    return payments_open(f->db, no_vault, f, &f->p) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    payments_close(f->p);
    if (f->db != NULL)
        sqldb_close(f->db);
    testdb_drop(f->dir, f->pg_name);
    free(f);
    return 0;
}

/* Inserts n operations of one kind in one transaction: ids "<prefix><i>", references
 * "ref_<prefix><i>", amount i, created at created_us + i. */
static void ops_insert(struct fx *f, const char *prefix, uint8_t kind, uint8_t status, size_t n,
                       int64_t created_us)
{
    static const uint8_t hash[HASH_BYTES];
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    for (size_t i = 0; i < n; i++) {
        char id[PAY_ID_BYTES_MAX], ref[PAY_REF_BYTES_MAX];
        snprintf(id, sizeof(id), "%s%zu", prefix, i);
        snprintf(ref, sizeof(ref), "ref_%s%zu", prefix, i);
        struct sql_value v[] = {
            SQL_T(id), SQL_I(kind),  SQL_I(status), SQL_B(hash, sizeof(hash)),
            SQL_I(i),  SQL_T("USD"), SQL_T(ref),    SQL_I(created_us + (int64_t)i)};
        assert_int_equal(
            sql_exec(tx,
                     "INSERT INTO pay_ops (id, kind, status, idem, request_hash, payer, payee, "
                     "payer_account, payee_account, amount_minor, currency, fee_minor, "
                     "credit_minor, credit_currency, rate_e9, quote_id, parent_id, reference, "
                     "gateway_ref, instrument, created_at_us, updated_at_us) VALUES ($1, $2, $3, "
                     "$1, $4, '', '', 0, 0, $5, $6, 0, $5, $6, 0, '', '', '', $7, '', $8, $8)",
                     v, 8, NULL),
            CF_OK);
    }
    assert_int_equal(sql_commit(tx), CF_OK);
}

static void test_query_pages_and_window(void **state)
{
    struct fx *f = *state;
    size_t many = 2 * SQL_ROWS_MAX + 7; /* three pages */
    ops_insert(f, "top_", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, many, T0_US);
    ops_insert(f, "snd_", PAY_KIND_SEND, PAY_STATUS_COMPLETED, 50, T0_US); /* not gateway */
    ops_insert(f, "pay_", PAY_KIND_PAYMENT, PAY_STATUS_COMPLETED, 50, T0_US);
    ops_insert(f, "wdr_", PAY_KIND_WITHDRAWAL, PAY_STATUS_FAILED, 3, T0_US - 10);
    ops_insert(f, "pyo_", PAY_KIND_PAYOUT, PAY_STATUS_PENDING, 3, T0_US + DAY_US);
    struct arena *a = arena_new();
    struct recon_op *ops = NULL;
    size_t n = 0;
    bool more = true;
    assert_int_equal(payments_recon_ops(f->p, 0, INT64_MAX, RECONCILE_OPS_MAX, a, &ops, &n, &more),
                     CF_OK);
    assert_int_equal(n, many + 6);
    assert_false(more);
    size_t topups = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(ops[i].kind == PAY_KIND_TOPUP || ops[i].kind == PAY_KIND_WITHDRAWAL ||
                    ops[i].kind == PAY_KIND_PAYOUT);
        if (ops[i].kind != PAY_KIND_TOPUP)
            continue;
        char want[PAY_ID_BYTES_MAX];
        snprintf(want, sizeof(want), "top_%zu", topups);
        assert_string_equal(ops[i].id, want); /* in the order they were made, none twice */
        assert_int_equal(ops[i].amount_minor, (int64_t)topups);
        assert_int_equal(ops[i].created_at_us, T0_US + (int64_t)topups);
        assert_string_equal(ops[i].currency, "USD");
        assert_int_equal(ops[i].status, PAY_STATUS_COMPLETED);
        topups++;
    }
    assert_int_equal(topups, many);
    /* [from, to): the first three top-ups and the withdrawals made 10 us before */
    assert_int_equal(payments_recon_ops(f->p, T0_US - 10, T0_US + 3, 100, a, &ops, &n, &more),
                     CF_OK);
    assert_int_equal(n, 6);
    assert_string_equal(ops[0].id, "top_0");
    assert_string_equal(ops[2].id, "top_2");
    assert_string_equal(ops[3].id, "wdr_0");
    assert_string_equal(ops[3].gateway_ref, "ref_wdr_0");
    /* the bound */
    assert_int_equal(payments_recon_ops(f->p, 0, INT64_MAX, SQL_ROWS_MAX + 1, a, &ops, &n, &more),
                     CF_OK);
    assert_int_equal(n, SQL_ROWS_MAX + 1);
    assert_true(more);
    assert_string_equal(ops[SQL_ROWS_MAX].id, "top_10000");
    /* an empty window */
    assert_int_equal(payments_recon_ops(f->p, 5, 6, 100, a, &ops, &n, &more), CF_OK);
    assert_int_equal(n, 0);
    assert_false(more);
    arena_destroy(a);
}

static void test_reconcile_run(void **state)
{
    struct fx *f = *state;
    ops_insert(f, "top_", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 3, T0_US + 1000);
    ops_insert(f, "old_", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 1, T0_US - 3600LL * 1000000);
    ops_insert(f, "anc_", PAY_KIND_TOPUP, PAY_STATUS_COMPLETED, 1, T0_US - 2 * DAY_US);
    struct arena *a = arena_new();
    struct recon_report r;
    struct recon_error e;
    /* top_2 missing from the file; old_0 (an hour before the window) named and matched; anc_0
     * two days before: not compared at all, so naming it is missing_in_coffer */
    const char text[] = HDR "ref_top_0,top_0,charge,0,USD,settled\n"
                            "ref_top_1,top_1,charge,5,USD,settled\n"
                            "ref_old_0,old_0,charge,0,USD,settled\n"
                            "ref_anc_0,anc_0,charge,0,USD,settled\n";
    assert_int_equal(payments_reconcile(f->p, text, strlen(text), T0_US, T0_US + DAY_US, a, &r, &e),
                     CF_OK);
    assert_int_equal(r.rows_n, 4);
    assert_int_equal(r.ops_n, 4); /* the window and its margin */
    assert_int_equal(r.result.matched, 2);
    char got[512];
    listing(&r.result, got, sizeof(got));
    assert_string_equal(got, "amount_differs:1:1 missing_in_coffer:3:-1 missing_in_gateway:-1:2");
    /* a malformed file: nothing read, the line said */
    assert_int_equal(
        payments_reconcile(f->p, HDR "x,y,z\n", sizeof(HDR) + 5, T0_US, T0_US + DAY_US, a, &r, &e),
        CF_ERR_INVALID_FIELD);
    assert_int_equal(e.line, 2);
    arena_destroy(a);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_csv_quotes),           cmocka_unit_test(test_csv_line_ends_bom_blank),
        cmocka_unit_test(test_csv_malformed),        cmocka_unit_test(test_file_rows),
        cmocka_unit_test(test_file_header),          cmocka_unit_test(test_file_fields),
        cmocka_unit_test(test_file_bounds),          cmocka_unit_test(test_compare_all_match),
        cmocka_unit_test(test_compare_every_kind),   cmocka_unit_test(test_compare_duplicates),
        cmocka_unit_test(test_compare_status_pairs), cmocka_unit_test(test_compare_several_per_row),
        cmocka_unit_test(test_compare_empty_sides),  cmocka_unit_test(test_compare_at_the_bounds),
        cmocka_unit_test(test_compare_arena_full),   cmocka_unit_test(test_window),
    };
    const struct CMUnitTest db[] = {
        FX(test_query_pages_and_window),
        FX(test_reconcile_run),
    };
    int failed = cmocka_run_group_tests_name("reconcile", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("reconcile_sqlite", db, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("reconcile_postgres", db, NULL, NULL);
    } else {
        printf("reconcile_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
