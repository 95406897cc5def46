/*
 * test_kyc.c - unit tests for know your customer (src/risk/kyc.c) driven through kyc.h.
 *
 * Pure parts, run once: the limits configuration's defaults and look-up (a currency row takes
 * what it sets and the "*" row the rest), its parser on good input and on hostile input (every
 * refusal leaves the configuration byte for byte as it was, also when an earlier clause of the
 * same value was good; random bytes never crash it), strict base64 (RFC 4648 vectors, padding,
 * unused bits, other alphabets, round trips), magic-byte sniffing, the details' rules (names,
 * ID numbers, real dates of birth before today, the ISO country table).
 *
 * The store, against SQLite (a fresh file per test) and, when COFFER_TEST_PG_URL is set,
 * PostgreSQL: a customer never seen is at tier 0; details raise to tier 1 only with a verified
 * phone (or later, by refresh); a submission needs details and an identity document; approval
 * raises to 2 and closes everything; a rejection keeps the tier, shows the customer reason to
 * the customer and the staff reason to staff only, and the next draft starts from the latest
 * details; documents are bounded in number, size and type, come back byte for byte (one and
 * several sealing chunks), and answer another customer as unknown; details and contents are
 * sealed at rest under aads that a moved value fails; decisions replay by key and refuse a key
 * reused; the queue pages in order; eight threads deciding one submission decide it once.
 * The payment path's check (api_kyc_check) refuses a feature closed at the tier and an amount
 * above the single limit, and hands back the limits the caller enforces.
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

#include "api/risk_kyc.h"
#include "core/hash.h"
#include "core/ids.h"
#include "crypto/vault.h"
#include "money/currency.h"
#include "risk/kyc.h"
#include "store/sql/sql.h"

#define T0_US 1700000000000000LL /* 2023-11-14 */
#define DAY_US (86400LL * 1000000LL)
#define RACE_THREADS 8
#define LIST_CUSTOMERS 5
#define STAFF "usr_000000000000R"
#define ID_NUMBER "P1234567X9"

struct fx {
    struct risk_fx b; /* the database and the vault (key 1 only) */
    struct risk_kyc *k;
};

/* Fixture -------------------------------------------------------------------------------------- */

_Static_assert(offsetof(struct fx, b) == 0, "risk_fx_setup allocates a struct fx");

static int fx_setup(void **state)
{
    if (risk_fx_setup(state, sizeof(struct fx), "kyc", false, true) != 0)
        return -1;
    struct fx *x = *state;
    return risk_kyc_open(x->b.db, risk_fx_vault, &x->b, NULL, &x->k) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    risk_kyc_close(((struct fx *)*state)->k);
    return risk_fx_teardown(state);
}

/* Helpers -------------------------------------------------------------------------------------- */

static void user(uint64_t n, char out[ID_TEXT_BYTES_MAX]) { id_format("usr_", n, out); }

static struct risk_kyc_details details_of(const char *name)
{
    struct risk_kyc_details d;
    memset(&d, 0, sizeof(d));
    snprintf(d.legal_name, sizeof(d.legal_name), "%s", name);
    d.id_type = RISK_KYC_DOC_PASSPORT;
    snprintf(d.id_number, sizeof(d.id_number), "%s", ID_NUMBER);
    snprintf(d.date_of_birth, sizeof(d.date_of_birth), "1985-04-12");
    snprintf(d.nationality, sizeof(d.nationality), "DE");
    snprintf(d.country, sizeof(d.country), "GB");
    return d;
}

/* A JPEG of n bytes (its magic, then a pattern seeded by seed). */
static uint8_t *jpeg(size_t n, unsigned seed)
{
    uint8_t *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 31u + seed * 7u + (i >> 9));
    b[0] = 0xff, b[1] = 0xd8, b[2] = 0xff, b[3] = 0xe0;
    return b;
}

/* Whether any blob of a column (sql: one column) holds needle. */
static bool raw_blob_holds(struct fx *x, const char *sql, const void *needle, size_t n)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(x->b.db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, sql, NULL, 0, &r), CF_OK);
    sql_rollback(tx);
    bool found = false;
    for (size_t i = 0; i < sql_rows_n(r) && !found; i++) {
        size_t len = 0;
        const uint8_t *b = sql_row_blob(r, i, 0, &len);
        for (size_t j = 0; b != NULL && j + n <= len && !found; j++)
            found = memcmp(b + j, needle, n) == 0;
    }
    sql_rows_free(r);
    return found;
}

static int details_ok(struct fx *x, const char *u, const char *name, bool phone, int64_t at)
{
    struct risk_kyc_details d = details_of(name);
    struct risk_kyc_submission draft;
    int tier = -1;
    assert_int_equal(risk_kyc_details_put(x->k, u, &d, phone, at, &draft, &tier, NULL), CF_OK);
    assert_int_equal(draft.state, RISK_KYC_DRAFT);
    return tier;
}

static void doc_ok(struct fx *x, const char *u, uint8_t kind, size_t n,
                   struct risk_kyc_document *out)
{
    uint8_t *b = jpeg(n, (unsigned)n);
    assert_int_equal(risk_kyc_document_add(x->k, u, kind, RISK_KYC_JPEG, b, n, T0_US, out, NULL),
                     CF_OK);
    free(b);
}

RISK_FX_IDEM_OF(risk_kyc_idem)

static enum cf_err decide(struct fx *x, const char *u, bool approve, const struct risk_kyc_idem *k,
                          struct risk_kyc_event *out, int *tier)
{
    return risk_kyc_decide(x->k, u, NULL, approve, "documents checked by hand",
                           approve ? NULL : "The passport photo is blurred.", STAFF, k, T0_US + 100,
                           out, tier, NULL, NULL);
}

/* A customer with details, a passport and a pending submission. */
static void pending_customer(struct fx *x, const char *u)
{
    struct risk_kyc_document d;
    struct risk_kyc_submission s;
    details_ok(x, u, "Ada Lovelace", true, T0_US);
    doc_ok(x, u, RISK_KYC_DOC_PASSPORT, 1000, &d);
    assert_int_equal(risk_kyc_submit(x->k, u, T0_US + 1, &s, NULL), CF_OK);
}

/* Configuration -------------------------------------------------------------------------------- */

static void test_config_defaults(void **state)
{
    (void)state;
    struct risk_kyc_config c;
    struct risk_kyc_limit l;
    risk_kyc_config_defaults(&c);
    assert_int_equal(risk_kyc_limits_for(&c, 0, "EUR", &l), CF_OK);
    assert_int_equal(l.max_balance_minor, 15000);
    assert_int_equal(l.max_single_minor, 5000);
    assert_int_equal(l.daily_out_minor, 10000);
    assert_int_equal(l.monthly_out_minor, 25000);
    assert_int_equal(risk_kyc_limits_for(&c, 2, NULL, &l), CF_OK);
    assert_int_equal(l.max_single_minor, 2500000);
    assert_int_equal(risk_kyc_limits_for(&c, 3, "EUR", &l), CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_kyc_limits_for(&c, -1, "EUR", &l), CF_ERR_INVALID_FIELD);
    assert_true(risk_kyc_feature_open(&c, 0, RISK_KYC_FEATURE_TOPUP));
    assert_true(risk_kyc_feature_open(&c, 0, RISK_KYC_FEATURE_PAYMENT));
    assert_false(risk_kyc_feature_open(&c, 0, RISK_KYC_FEATURE_WITHDRAWAL));
    assert_false(risk_kyc_feature_open(&c, 0, RISK_KYC_FEATURE_SEND));
    assert_true(risk_kyc_feature_open(&c, 1, RISK_KYC_FEATURE_WITHDRAWAL));
    assert_false(risk_kyc_feature_open(&c, 3, RISK_KYC_FEATURE_TOPUP));
    assert_false(risk_kyc_feature_open(&c, 1, 0));
    uint32_t f = 0;
    assert_int_equal(risk_kyc_feature_parse("conversion", &f), CF_OK);
    assert_int_equal(f, RISK_KYC_FEATURE_CONVERSION);
    assert_string_equal(risk_kyc_feature_name(f), "conversion");
    assert_int_equal(risk_kyc_feature_parse("payout", &f), CF_ERR_INVALID_FIELD);
    assert_string_equal(risk_kyc_feature_name(3), "");
    assert_true(risk_kyc_within(5000, 5000));
    assert_false(risk_kyc_within(5001, 5000));
    assert_true(risk_kyc_within(INT64_MAX, RISK_KYC_UNLIMITED));
    assert_false(risk_kyc_within(1, 0));
}

static void set_ok(struct risk_kyc_config *c, const char *key, const char *value)
{
    char why[160] = "";
    enum cf_err err = risk_kyc_config_set(c, key, value, why, sizeof(why));
    if (err != CF_OK)
        fail_msg("%s = %s: %s", key, value, why);
}

static void test_config_parse(void **state)
{
    (void)state;
    struct risk_kyc_config c;
    struct risk_kyc_limit l;
    risk_kyc_config_defaults(&c);
    set_ok(&c, "kyc_limits", "tier0 EUR max_balance=20000 single=7000");
    set_ok(&c, "kyc_limits", " \ttier0\t* daily_out=12000 ");
    set_ok(&c, "kyc_limits", "tier1 JPY single=none monthly_out=0; tier2 * max_balance=none");
    set_ok(&c, "kyc_limits", "tier0 EUR single=7500"); /* a row named again: updated */
    assert_int_equal(risk_kyc_limits_for(&c, 0, "EUR", &l), CF_OK);
    assert_int_equal(l.max_balance_minor, 20000);
    assert_int_equal(l.max_single_minor, 7500);
    assert_int_equal(l.daily_out_minor, 12000); /* not set in the row: the "*" row's, now */
    assert_int_equal(l.monthly_out_minor, 25000);
    assert_int_equal(risk_kyc_limits_for(&c, 0, "USD", &l), CF_OK);
    assert_int_equal(l.max_balance_minor, 15000);
    assert_int_equal(l.daily_out_minor, 12000);
    assert_int_equal(risk_kyc_limits_for(&c, 1, "JPY", &l), CF_OK);
    assert_int_equal(l.max_single_minor, RISK_KYC_UNLIMITED);
    assert_int_equal(l.monthly_out_minor, 0);
    assert_int_equal(l.max_balance_minor, 500000);
    assert_int_equal(risk_kyc_limits_for(&c, 2, "CHF", &l), CF_OK);
    assert_int_equal(l.max_balance_minor, RISK_KYC_UNLIMITED);
    assert_int_equal(c.rows_n[0], 1);
    set_ok(&c, "kyc_limits", "tier1 * single=1000000000000000"); /* 10^15, the largest */

    set_ok(&c, "kyc_features", "tier0 topup,receive");
    assert_false(risk_kyc_feature_open(&c, 0, RISK_KYC_FEATURE_PAYMENT));
    set_ok(&c, "kyc_features", "tier1 none; tier2 withdrawal,send");
    assert_int_equal(c.features[1], 0);
    assert_int_equal(c.features[2], RISK_KYC_FEATURE_WITHDRAWAL | RISK_KYC_FEATURE_SEND);
    set_ok(&c, "kyc_features", "tier2 topup,receive,payment,send,request,conversion,withdrawal");
    assert_int_equal(c.features[2], RISK_KYC_FEATURES_ALL);

    char why[160] = "";
    assert_int_equal(risk_kyc_config_check(&c, why, sizeof(why)), CF_OK);
    set_ok(&c, "kyc_limits", "tier1 ZZZ single=1"); /* well formed, unknown */
    assert_int_equal(risk_kyc_config_check(&c, why, sizeof(why)), CF_ERR_CONFIG);
    assert_string_equal(why, "unknown currency ZZZ");
    assert_int_equal(risk_kyc_config_set(&c, "kyc_other", "tier0 * single=1", why, sizeof(why)),
                     CF_ERR_NOT_FOUND);
}

static void refused(struct risk_kyc_config *c, const char *key, const char *value)
{
    struct risk_kyc_config before = *c;
    char why[160] = "";
    enum cf_err err = risk_kyc_config_set(c, key, value, why, sizeof(why));
    if (err != CF_ERR_CONFIG)
        fail_msg("%s = '%s' was not refused (%d)", key, value, (int)err);
    assert_true(why[0] != '\0');
    assert_memory_equal(&before, c, sizeof(before));
}

static void test_config_hostile(void **state)
{
    (void)state;
    struct risk_kyc_config c;
    risk_kyc_config_defaults(&c);
    set_ok(&c, "kyc_limits", "tier1 GBP single=3"); /* so rows are not empty */
    static const char *const bad_limits[] = {
        "",
        " ",
        "tier3 * single=1",
        "tier * single=1",
        "Tier0 * single=1",
        "tier00 * single=1",
        "tier-1 * single=1",
        "tier0",
        "tier0 *",
        "tier0 * single",
        "single=1",
        "* tier0 single=1",
        "tier0 * single=-1",
        "tier0 * single=+1",
        "tier0 * single=01",
        "tier0 * single=1e5",
        "tier0 * single=1.5",
        "tier0 * single=0x10",
        "tier0 * single=1000000000000001",
        "tier0 * single=99999999999999999999",
        "tier0 * single=1 single=2",
        "tier0 * bogus=1",
        "tier0 eur single=1",
        "tier0 EUROPEAN_UNIO single=1",
        "tier0 E-R single=1",
        "tier0 * single=1;",
        ";",
        ";tier0 * single=1",
        "tier0 * single=1;;tier1 * single=1",
        "tier0 * single=1\n",
        "tier0 * single=1\x01",
        "tier0 * =5",
        "tier0 * single==5",
        "tier0 * single=",
        "tier0 * single=none5",
        "tier0 * single=NONE",
        "tier0 * max_balance=1 single=2 daily_out=x",
        "tier0 * single=1; tier9 * single=1", /* all or nothing: the first clause is dropped */
        "tier0 ** single=1",
        "tier0 * single=1 =",
        "tier0 \xc3\xa9 single=1",
        "tier0 * single\xe2\x80\x8b=1",
    };
    for (size_t i = 0; i < sizeof(bad_limits) / sizeof(bad_limits[0]); i++)
        refused(&c, "kyc_limits", bad_limits[i]);
    static const char *const bad_features[] = {
        "",
        "tier0",
        "tier3 topup",
        "tier0 topup,,send",
        "tier0 ,topup",
        "tier0 topup,",
        "tier0 teleport",
        "tier0 topup,topup",
        "tier0 topup send",
        "tier0 NONE",
        "tier0 none,topup",
        "tier0 payout",
        "topup",
        "tier0 topup;",
        "tier0 Topup",
        "tier0 topup,receive,payment,send,request,conversion,withdrawal,withdrawal,topup",
    };
    for (size_t i = 0; i < sizeof(bad_features) / sizeof(bad_features[0]); i++)
        refused(&c, "kyc_features", bad_features[i]);

    /* a 17th currency in a tier; a value longer than the bound; a huge token */
    char *text = calloc(1, 2 * RISK_KYC_CONFIG_TEXT_BYTES_MAX);
    assert_non_null(text);
    size_t at = 0;
    for (int i = 0; i < 17; i++)
        at += (size_t)snprintf(text + at, 64, "%stier0 C%c%c single=1", i > 0 ? ";" : "", 'A' + i,
                               'A' + i);
    refused(&c, "kyc_limits", text);
    memset(text, 'a', 2 * RISK_KYC_CONFIG_TEXT_BYTES_MAX - 1);
    refused(&c, "kyc_limits", text);
    memcpy(text, "tier0 * single=", 15);
    text[600] = '\0';
    refused(&c, "kyc_limits", text);

    /* random bytes never crash the parser; a refusal changes nothing */
    uint32_t seed = 12345;
    static const char alphabet[] = "tier012 *=;,EURsinglemax_balancenone\t-\x01\xff";
    for (int round = 0; round < 4000; round++) {
        size_t n = (seed = seed * 1103515245u + 12345u) % 80;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            text[i] = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
        }
        text[n] = '\0';
        struct risk_kyc_config before = c;
        enum cf_err err =
            risk_kyc_config_set(&c, round % 2 ? "kyc_limits" : "kyc_features", text, NULL, 0);
        assert_true(err == CF_OK || err == CF_ERR_CONFIG);
        if (err != CF_OK)
            assert_memory_equal(&before, &c, sizeof(before));
        c = before; /* keep the rows from filling up */
    }
    free(text);
}

/* Pure validation ------------------------------------------------------------------------------ */

static void b64_ok(const char *text, const char *want, size_t want_n)
{
    uint8_t out[64];
    size_t n = 99;
    assert_int_equal(risk_kyc_base64_decode(text, strlen(text), out, sizeof(out), &n), CF_OK);
    assert_int_equal(n, want_n);
    assert_memory_equal(out, want, want_n > 0 ? want_n : 0);
}

static void encode(const uint8_t *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[w >> 18];
        out[o++] = a[(w >> 12) & 63];
        out[o++] = i + 1 < n ? a[(w >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? a[w & 63] : '=';
    }
    out[o] = '\0';
}

static void test_base64(void **state)
{
    (void)state;
    b64_ok("", "", 0);
    b64_ok("Zg==", "f", 1);
    b64_ok("Zm8=", "fo", 2);
    b64_ok("Zm9v", "foo", 3);
    b64_ok("Zm9vYg==", "foob", 4);
    b64_ok("Zm9vYmE=", "fooba", 5);
    b64_ok("Zm9vYmFy", "foobar", 6);
    b64_ok("+/+/", "\xfb\xff\xbf", 3);
    static const char *const bad[] = {
        "Zg=",  "Zg",   "Z===", "Zh==",     "Zm9=",  "Zm9v\n",      "Zm 9v", "Zm9v====", "=Zm9",
        "Zm=v", "Zm9-", "Zm9_", "Zg==Zg==", "Zm9v=", "\xc3\xa9Zm9", "====",  "Zm8=Zm9v", "Zm\0v"};
    uint8_t out[64];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = i == sizeof(bad) / sizeof(bad[0]) - 1 ? 4 : strlen(bad[i]);
        assert_int_equal(risk_kyc_base64_decode(bad[i], len, out, sizeof(out), &n),
                         CF_ERR_INVALID_FIELD);
    }
    assert_int_equal(risk_kyc_base64_decode("Zm9vYmFy", 8, out, 5, &n), CF_ERR_PAYLOAD_TOO_LARGE);
    assert_int_equal(risk_kyc_base64_decode("Zm9vYmE=", 8, out, 5, &n), CF_OK);
    /* round trips of every length up to 200 */
    uint8_t in[200], back[200];
    char text[300];
    for (size_t len = 0; len <= sizeof(in); len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = (uint8_t)(i * 37 + len);
        encode(in, len, text);
        assert_int_equal(risk_kyc_base64_decode(text, strlen(text), back, sizeof(back), &n), CF_OK);
        assert_int_equal(n, len);
        assert_memory_equal(back, in, len);
    }
}

static void test_sniff(void **state)
{
    (void)state;
    uint8_t b[32] = {0}, got = 0;
    memcpy(b, "\xff\xd8\xff\xe1", 4);
    assert_int_equal(risk_kyc_content_sniff(b, sizeof(b), &got), CF_OK);
    assert_int_equal(got, RISK_KYC_JPEG);
    memcpy(b, "\x89PNG\r\n\x1a\n", 8);
    assert_int_equal(risk_kyc_content_sniff(b, sizeof(b), &got), CF_OK);
    assert_int_equal(got, RISK_KYC_PNG);
    memcpy(b, "%PDF-1.7", 8);
    assert_int_equal(risk_kyc_content_sniff(b, sizeof(b), &got), CF_OK);
    assert_int_equal(got, RISK_KYC_PDF);
    assert_int_equal(risk_kyc_content_sniff(b, RISK_KYC_DOC_BYTES_MIN - 1, &got),
                     CF_ERR_INVALID_FIELD);
    static const char *const others[] = {"GIF89a", "\x89PNG\r\n\x1a", "%PDF",
                                         "<html>", "\xff\xd8\xfe",    "MZ\x90"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        memset(b, 'x', sizeof(b));
        memcpy(b, others[i], strlen(others[i]));
        assert_int_equal(risk_kyc_content_sniff(b, sizeof(b), &got), CF_ERR_INVALID_FIELD);
    }
    uint8_t kind = 0;
    assert_int_equal(risk_kyc_doc_kind_parse("selfie", &kind), CF_OK);
    assert_false(risk_kyc_doc_kind_is_identity(kind));
    assert_int_equal(risk_kyc_doc_kind_parse("", &kind), CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_kyc_content_parse("image/gif", &kind), CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_kyc_state_parse("approved", &kind), CF_OK);
    assert_int_equal(kind, RISK_KYC_APPROVED);
}

static void details_refused(struct risk_kyc_details d, const char *field)
{
    const char *detail = NULL;
    assert_false(risk_kyc_details_valid(&d, T0_US, &detail));
    assert_non_null(detail);
    assert_int_equal(strncmp(detail, field, strlen(field)), 0);
}

static void test_details_rules(void **state)
{
    (void)state;
    struct risk_kyc_details d = details_of("José Ñúñez-O'Brien Åström 東京");
    assert_true(risk_kyc_details_valid(&d, T0_US, NULL));
    d.nationality[0] = '\0';
    assert_true(risk_kyc_details_valid(&d, T0_US, NULL)); /* nationality is optional */
    static const char *const names[] = {"",
                                        " Ada",
                                        "Ada ",
                                        "Ada\tL",
                                        "Ada\nL",
                                        "A\x7f",
                                        "Ada \xe2\x80\xae"
                                        "ecalevoL",
                                        "Ada\xe2\x80\x8b",
                                        "\xc3",
                                        "\xef\xbb\xbf"
                                        "Ada"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        d = details_of(names[i]);
        details_refused(d, "legal_name");
    }
    d = details_of("x");
    memset(d.legal_name, 'a', RISK_KYC_NAME_CHARS_MAX + 1);
    details_refused(d, "legal_name");
    d.legal_name[RISK_KYC_NAME_CHARS_MAX] = '\0';
    assert_true(risk_kyc_details_valid(&d, T0_US, NULL));

    d = details_of("Ada Lovelace");
    d.id_type = RISK_KYC_DOC_SELFIE;
    details_refused(d, "id_type");
    static const char *const numbers[] = {"", " P1", "P1 ", "P1_2", "P1;DROP", "P\xc3\xa9"};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        d = details_of("Ada Lovelace");
        snprintf(d.id_number, sizeof(d.id_number), "%s", numbers[i]);
        details_refused(d, "id_number");
    }
    d = details_of("Ada Lovelace");
    snprintf(d.id_number, sizeof(d.id_number), "AB-12/34.56 78");
    assert_true(risk_kyc_details_valid(&d, T0_US, NULL));

    static const char *const dates[] = {"2023-02-29",  "1899-12-31", "2023-11-14", "2023-11-15",
                                        "2000-1-01",   "2000-13-01", "2000-00-10", "2000-04-31",
                                        "20000-01-01", "2000/01/01", "",           "2000-01-0a"};
    for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
        d = details_of("Ada Lovelace");
        snprintf(d.date_of_birth, sizeof(d.date_of_birth), "%s", dates[i]);
        details_refused(d, "date_of_birth");
    }
    static const char *const good_dates[] = {"2024-02-29", "1900-01-01", "2023-11-13"};
    for (size_t i = 0; i < sizeof(good_dates) / sizeof(good_dates[0]); i++) {
        d = details_of("Ada Lovelace");
        snprintf(d.date_of_birth, sizeof(d.date_of_birth), "%s", good_dates[i]);
        assert_true(risk_kyc_details_valid(&d, i == 0 ? T0_US + 200 * DAY_US : T0_US, NULL));
    }
    d = details_of("Ada Lovelace");
    snprintf(d.country, sizeof(d.country), "UK"); /* reserved, not assigned */
    details_refused(d, "country");
    snprintf(d.country, sizeof(d.country), "gb");
    details_refused(d, "country");
    d = details_of("Ada Lovelace");
    snprintf(d.nationality, sizeof(d.nationality), "ZZ");
    details_refused(d, "nationality");

    size_t valid = 0;
    for (char a = 'A'; a <= 'Z'; a++) {
        for (char b = 'A'; b <= 'Z'; b++) {
            char code[3] = {a, b, '\0'};
            valid += risk_kyc_country_valid(code);
        }
    }
    assert_int_equal(valid, 250);
    assert_true(risk_kyc_country_valid("XK"));
    assert_false(risk_kyc_country_valid("GBR"));

    assert_true(risk_kyc_reason_valid("line one\nline two", false, NULL));
    const char *detail = NULL;
    assert_false(risk_kyc_reason_valid("", true, &detail));
    assert_string_equal(detail, "customer_reason: 1 to 280 characters, no control characters");
    char long_reason[300];
    memset(long_reason, 'r', 281);
    long_reason[281] = '\0';
    assert_false(risk_kyc_reason_valid(long_reason, true, NULL));
    assert_true(risk_kyc_reason_valid(long_reason, false, NULL));
}

/* The store: tiers and the life of a submission ---------------------------------------------- */

static void test_approve(void **state)
{
    struct fx *x = *state;
    char u[ID_TEXT_BYTES_MAX];
    user(11, u);
    int tier = -1;
    struct risk_kyc_view *v = malloc(sizeof(*v));
    assert_non_null(v);
    assert_int_equal(risk_kyc_tier_get(x->k, u, &tier), CF_OK);
    assert_int_equal(tier, 0);
    assert_int_equal(risk_kyc_tier_get(x->k, "usr_bogus", &tier), CF_OK);
    assert_int_equal(tier, 0);
    assert_int_equal(risk_kyc_view_get(x->k, u, false, v), CF_OK);
    assert_int_equal(v->state, RISK_KYC_NONE);
    assert_false(v->has_current || v->has_latest);

    /* details without a verified phone: tier 0; the phone verified later: tier 1 */
    assert_int_equal(details_ok(x, u, "Ada Lovelace", false, T0_US), 0);
    bool raised = true;
    assert_int_equal(risk_kyc_tier_refresh(x->k, u, false, T0_US, &tier, &raised), CF_OK);
    assert_false(raised);
    assert_int_equal(tier, 0);
    assert_int_equal(risk_kyc_tier_get(x->k, u, &tier), CF_OK); /* cached now */
    assert_int_equal(tier, 0);
    assert_int_equal(risk_kyc_tier_refresh(x->k, u, true, T0_US + 1, &tier, &raised), CF_OK);
    assert_true(raised);
    assert_int_equal(tier, 1);
    assert_int_equal(risk_kyc_tier_get(x->k, u, &tier), CF_OK); /* the change cleared it */
    assert_int_equal(tier, 1);
    assert_int_equal(risk_kyc_tier_refresh(x->k, u, true, T0_US + 2, &tier, &raised), CF_OK);
    assert_false(raised);

    struct risk_kyc_submission s;
    const char *detail = NULL;
    assert_int_equal(risk_kyc_submit(x->k, u, T0_US + 3, &s, &detail), CF_ERR_CONFLICT);
    assert_non_null(strstr(detail, "identity document"));
    struct risk_kyc_document d;
    doc_ok(x, u, RISK_KYC_DOC_PASSPORT, 2000, &d);
    assert_int_equal(risk_kyc_submit(x->k, u, T0_US + 4, &s, NULL), CF_OK);
    assert_int_equal(s.state, RISK_KYC_PENDING);
    assert_int_equal(s.documents_n, 1);
    assert_string_equal(s.id, d.submission_id);
    assert_int_equal(s.submitted_at_us, T0_US + 4);

    struct risk_kyc_submission list[RISK_KYC_LIST_MAX];
    size_t n = 0;
    assert_int_equal(risk_kyc_list(x->k, RISK_KYC_PENDING, 0, list, RISK_KYC_LIST_MAX, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].user_id, u);
    assert_false(list[0].has_details && list[0].details.legal_name[0] != '\0'); /* not opened */

    struct risk_kyc_event ev;
    assert_int_equal(decide(x, u, true, NULL, &ev, &tier), CF_OK);
    assert_int_equal(tier, 2);
    assert_int_equal(ev.kind, RISK_KYC_EVENT_APPROVE);
    assert_string_equal(ev.submission_id, s.id);
    assert_int_equal(risk_kyc_tier_get(x->k, u, &tier), CF_OK);
    assert_int_equal(tier, 2);
    assert_int_equal(risk_kyc_view_get(x->k, u, false, v), CF_OK);
    assert_int_equal(v->state, RISK_KYC_APPROVED);
    assert_int_equal(v->current.state, RISK_KYC_APPROVED);
    assert_string_equal(v->current.details.id_number, ID_NUMBER);
    assert_string_equal(v->current.reason, ""); /* the customer's view */
    assert_int_equal(v->documents_n, 1);
    assert_int_equal(risk_kyc_list(x->k, RISK_KYC_PENDING, 0, list, RISK_KYC_LIST_MAX, &n), CF_OK);
    assert_int_equal(n, 0);

    /* tier 2: nothing more to submit */
    struct risk_kyc_details dd = details_of("Ada King");
    assert_int_equal(risk_kyc_details_put(x->k, u, &dd, true, T0_US + 5, &s, &tier, &detail),
                     CF_ERR_CONFLICT);
    uint8_t *b = jpeg(100, 1);
    assert_int_equal(
        risk_kyc_document_add(x->k, u, RISK_KYC_DOC_SELFIE, RISK_KYC_JPEG, b, 100, T0_US, &d, NULL),
        CF_ERR_CONFLICT);
    free(b);
    assert_int_equal(risk_kyc_submit(x->k, u, T0_US + 6, &s, NULL), CF_ERR_CONFLICT);
    assert_int_equal(decide(x, u, false, NULL, &ev, &tier), CF_ERR_CONFLICT);

    struct risk_kyc_event hist[RISK_KYC_HISTORY_MAX];
    assert_int_equal(risk_kyc_history(x->k, u, true, hist, RISK_KYC_HISTORY_MAX, &n), CF_OK);
    static const uint8_t kinds[] = {RISK_KYC_EVENT_APPROVE, RISK_KYC_EVENT_SUBMIT,
                                    RISK_KYC_EVENT_DOCUMENT, RISK_KYC_EVENT_TIER,
                                    RISK_KYC_EVENT_DETAILS};
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hist[i].kind, kinds[i]);
    assert_string_equal(hist[0].reason, "documents checked by hand");
    assert_string_equal(hist[0].by, STAFF);
    assert_string_equal(hist[2].document_id, d.id);
    assert_int_equal(hist[4].tier, 0);
    assert_int_equal(hist[3].tier, 1);
    free(v);
}

static void test_reject(void **state)
{
    struct fx *x = *state;
    char u[ID_TEXT_BYTES_MAX];
    user(12, u);
    struct risk_kyc_view *v = malloc(sizeof(*v));
    assert_non_null(v);
    assert_int_equal(details_ok(x, u, "Grace Hopper", true, T0_US), 1);
    struct risk_kyc_document d;
    struct risk_kyc_submission s;
    const char *detail = NULL;
    doc_ok(x, u, RISK_KYC_DOC_PROOF_OF_ADDRESS, 500, &d);
    assert_int_equal(risk_kyc_submit(x->k, u, T0_US, &s, &detail), CF_ERR_CONFLICT);
    assert_non_null(strstr(detail, "identity document"));
    doc_ok(x, u, RISK_KYC_DOC_ID_CARD, 600, &d);
    assert_int_equal(risk_kyc_submit(x->k, u, T0_US + 1, &s, NULL), CF_OK);
    assert_int_equal(risk_kyc_submit(x->k, u, T0_US + 2, &s, &detail), CF_ERR_CONFLICT);
    assert_string_equal(detail, "the submission is under review already");

    /* pending: nothing changes */
    int tier = -1;
    struct risk_kyc_details dd = details_of("Grace B. Hopper");
    struct risk_kyc_submission draft;
    assert_int_equal(risk_kyc_details_put(x->k, u, &dd, true, T0_US, &draft, &tier, &detail),
                     CF_ERR_CONFLICT);
    assert_string_equal(detail, "a submission is under review: wait for its outcome");
    uint8_t *b = jpeg(100, 2);
    assert_int_equal(
        risk_kyc_document_add(x->k, u, RISK_KYC_DOC_SELFIE, RISK_KYC_JPEG, b, 100, T0_US, &d, NULL),
        CF_ERR_CONFLICT);
    free(b);

    struct risk_kyc_event ev;
    assert_int_equal(decide(x, u, false, NULL, &ev, &tier), CF_OK);
    assert_int_equal(tier, 1); /* a rejection keeps the tier */
    assert_string_equal(ev.customer_reason, "The passport photo is blurred.");
    assert_int_equal(risk_kyc_view_get(x->k, u, false, v), CF_OK);
    assert_int_equal(v->state, RISK_KYC_REJECTED);
    assert_string_equal(v->latest.customer_reason, "The passport photo is blurred.");
    assert_string_equal(v->latest.reason, ""); /* never to the customer */
    assert_int_equal(risk_kyc_view_get(x->k, u, true, v), CF_OK);
    assert_string_equal(v->latest.reason, "documents checked by hand");
    assert_int_equal(risk_kyc_tier_get(x->k, u, &tier), CF_OK);
    assert_int_equal(tier, 1);

    /* a new draft starts from the latest details, without documents */
    doc_ok(x, u, RISK_KYC_DOC_SELFIE, 700, &d);
    assert_string_not_equal(d.submission_id, s.id);
    assert_int_equal(risk_kyc_view_get(x->k, u, false, v), CF_OK);
    assert_int_equal(v->state, RISK_KYC_REJECTED); /* still the latest submitted's */
    assert_int_equal(v->current.state, RISK_KYC_DRAFT);
    assert_true(v->current.has_details);
    assert_string_equal(v->current.details.legal_name, "Grace Hopper");
    assert_int_equal(v->documents_n, 1);
    assert_int_equal(v->documents[0].kind, RISK_KYC_DOC_SELFIE);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_kyc_submissions"), 2);
    free(v);
}

static void test_documents(void **state)
{
    struct fx *x = *state;
    char u[ID_TEXT_BYTES_MAX], other[ID_TEXT_BYTES_MAX];
    user(13, u);
    user(14, other);
    struct risk_kyc_document d, meta;
    const char *detail = NULL;
    uint8_t *b = jpeg(RISK_KYC_DOC_BYTES_MAX + 1, 3);
    /* too big, too small, a PNG said to be a JPEG, an unknown kind */
    assert_int_equal(risk_kyc_document_add(x->k, u, RISK_KYC_DOC_PASSPORT, RISK_KYC_JPEG, b,
                                           RISK_KYC_DOC_BYTES_MAX + 1, T0_US, &d, &detail),
                     CF_ERR_PAYLOAD_TOO_LARGE);
    assert_int_equal(risk_kyc_document_add(x->k, u, RISK_KYC_DOC_PASSPORT, RISK_KYC_JPEG, b, 8,
                                           T0_US, &d, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_kyc_document_add(x->k, u, RISK_KYC_DOC_PASSPORT, RISK_KYC_PNG, b, 100,
                                           T0_US, &d, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(detail, "content: its bytes are not of the content_type given");
    assert_int_equal(risk_kyc_document_add(x->k, u, 9, RISK_KYC_JPEG, b, 100, T0_US, &d, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_kyc_documents"), 0);

    /* the largest (four sealing chunks), one just over a chunk, small ones: byte for byte */
    static const size_t sizes[] = {RISK_KYC_DOC_BYTES_MAX,
                                   VAULT_PLAINTEXT_BYTES_MAX + 1,
                                   VAULT_PLAINTEXT_BYTES_MAX,
                                   16,
                                   17,
                                   3000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *src = jpeg(sizes[i], (unsigned)i);
        assert_int_equal(risk_kyc_document_add(x->k, u, RISK_KYC_DOC_SELFIE, RISK_KYC_JPEG, src,
                                               sizes[i], T0_US + (int64_t)i, &d, NULL),
                         CF_OK);
        uint8_t *got = NULL;
        size_t n = 0;
        assert_int_equal(risk_kyc_document_read(x->k, u, d.id, &meta, &got, &n), CF_OK);
        assert_int_equal(n, sizes[i]);
        assert_memory_equal(got, src, n);
        assert_int_equal(meta.kind, RISK_KYC_DOC_SELFIE);
        assert_int_equal(meta.content, RISK_KYC_JPEG);
        assert_string_equal(meta.submission_id, d.submission_id);
        /* another customer, a malformed id, an unknown one: not found */
        uint8_t *none = NULL;
        assert_int_equal(risk_kyc_document_read(x->k, other, d.id, &meta, &none, &n),
                         CF_ERR_NOT_FOUND);
        assert_int_equal(risk_kyc_document_read(x->k, u, "kyd_x", &meta, &none, &n),
                         CF_ERR_NOT_FOUND);
        assert_int_equal(risk_kyc_document_read(x->k, u, "kyd_00000000ZZZZZ", &meta, &none, &n),
                         CF_ERR_NOT_FOUND);
        assert_null(none);
        free(got);
        free(src);
    }
    /* six is the most */
    assert_int_equal(risk_kyc_document_add(x->k, u, RISK_KYC_DOC_PASSPORT, RISK_KYC_JPEG, b, 100,
                                           T0_US, &d, &detail),
                     CF_ERR_CONFLICT);
    assert_string_equal(detail, "a submission holds at most 6 documents");
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_kyc_documents"),
                     RISK_KYC_DOCS_MAX);
    free(b);
}

static void test_sealed_at_rest(void **state)
{
    struct fx *x = *state;
    char u[ID_TEXT_BYTES_MAX], w[ID_TEXT_BYTES_MAX];
    user(15, u);
    user(16, w);
    details_ok(x, u, "Katherine Johnson", true, T0_US);
    details_ok(x, w, "Dorothy Vaughan", true, T0_US);
    struct risk_kyc_document du, dw;
    static const char marker[] = "\xff\xd8\xff\xe0 this marker must not be stored as it is";
    uint8_t doc[4096];
    memset(doc, 'q', sizeof(doc));
    memcpy(doc, marker, sizeof(marker) - 1);
    assert_int_equal(risk_kyc_document_add(x->k, u, RISK_KYC_DOC_PASSPORT, RISK_KYC_JPEG, doc,
                                           sizeof(doc), T0_US, &du, NULL),
                     CF_OK);
    doc_ok(x, w, RISK_KYC_DOC_PASSPORT, 4096, &dw);
    assert_false(raw_blob_holds(x, "SELECT details_sealed FROM risk_kyc_submissions", ID_NUMBER,
                                strlen(ID_NUMBER)));
    assert_false(
        raw_blob_holds(x, "SELECT details_sealed FROM risk_kyc_submissions", "Katherine", 9));
    assert_false(
        raw_blob_holds(x, "SELECT content_sealed FROM risk_kyc_documents", marker + 4, 20));
    assert_false(
        raw_blob_holds(x, "SELECT content_sealed FROM risk_kyc_documents", "qqqqqqqqqqqqqqqq", 16));

    /* a sealed value moved to another row does not open */
    char sql[512];
    snprintf(sql, sizeof(sql),
             "UPDATE risk_kyc_documents SET content_sealed = (SELECT content_sealed FROM "
             "risk_kyc_documents WHERE id = '%s') WHERE id = '%s'",
             dw.id, du.id);
    risk_fx_exec(&x->b, sql, NULL, 0);
    uint8_t *got = NULL;
    size_t n = 0;
    struct risk_kyc_document meta;
    assert_int_equal(risk_kyc_document_read(x->k, u, du.id, &meta, &got, &n), CF_ERR_CORRUPT);
    snprintf(sql, sizeof(sql), "UPDATE risk_kyc_documents SET size_bytes = 4095 WHERE id = '%s'",
             dw.id);
    risk_fx_exec(&x->b, sql, NULL, 0);
    assert_int_equal(risk_kyc_document_read(x->k, w, dw.id, &meta, &got, &n), CF_ERR_CORRUPT);
    assert_null(got);

    snprintf(sql, sizeof(sql),
             "UPDATE risk_kyc_submissions SET details_sealed = (SELECT details_sealed FROM "
             "risk_kyc_submissions WHERE user_id = '%s') WHERE user_id = '%s'",
             w, u);
    risk_fx_exec(&x->b, sql, NULL, 0);
    struct risk_kyc_view *v = malloc(sizeof(*v));
    assert_non_null(v);
    assert_int_equal(risk_kyc_view_get(x->k, u, true, v), CF_ERR_CORRUPT);
    assert_int_equal(risk_kyc_view_get(x->k, w, true, v), CF_OK);
    assert_string_equal(v->current.details.legal_name, "Dorothy Vaughan");
    free(v);
}

static void test_decide_keys(void **state)
{
    struct fx *x = *state;
    char u[ID_TEXT_BYTES_MAX], w[ID_TEXT_BYTES_MAX], never[ID_TEXT_BYTES_MAX];
    user(17, u);
    user(18, w);
    user(19, never);
    struct risk_kyc_event ev, again;
    int tier = -1;
    bool replay = true;
    const char *detail = NULL;
    assert_int_equal(decide(x, never, true, NULL, &ev, &tier), CF_ERR_CONFLICT);
    details_ok(x, u, "Mary Jackson", true, T0_US);
    assert_int_equal(risk_kyc_decide(x->k, u, NULL, true, "ok", NULL, STAFF, NULL, T0_US, &ev,
                                     &tier, NULL, &detail),
                     CF_ERR_CONFLICT); /* a draft is not pending */
    assert_string_equal(detail, "no submission of this customer is pending review");
    pending_customer(x, u);
    pending_customer(x, w);
    assert_int_equal(risk_kyc_decide(x->k, u, "kys_00000000ZZZZZ", true, "ok", NULL, STAFF, NULL,
                                     T0_US, &ev, &tier, NULL, &detail),
                     CF_ERR_CONFLICT);
    assert_string_equal(detail, "submission_id: the pending submission is another one");
    /* malformed input */
    assert_int_equal(
        risk_kyc_decide(x->k, u, NULL, true, "", NULL, STAFF, NULL, T0_US, &ev, &tier, NULL, NULL),
        CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_kyc_decide(x->k, u, NULL, true, "ok", "bad\x01", STAFF, NULL, T0_US, &ev,
                                     &tier, NULL, NULL),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_kyc_decide(x->k, u, NULL, true, "ok", NULL, "two words", NULL, T0_US, &ev,
                                     &tier, NULL, NULL),
                     CF_ERR_INVALID_FIELD);

    struct risk_kyc_idem k1 = idem_of(STAFF ":d1", "approve u");
    assert_int_equal(risk_kyc_decide(x->k, u, NULL, true, "ok", NULL, STAFF, &k1, T0_US, &ev, &tier,
                                     &replay, NULL),
                     CF_OK);
    assert_false(replay);
    assert_int_equal(risk_kyc_decide(x->k, u, NULL, false, "changed my mind", NULL, STAFF, &k1,
                                     T0_US + 9, &again, &tier, &replay, NULL),
                     CF_OK); /* the key answers its decision, whatever the call says now */
    assert_true(replay);
    assert_string_equal(again.id, ev.id);
    assert_int_equal(again.kind, RISK_KYC_EVENT_APPROVE);
    assert_string_equal(again.reason, "ok");
    assert_int_equal(tier, 2);
    struct risk_kyc_idem k2 = idem_of(STAFF ":d1", "approve u differently");
    assert_int_equal(risk_kyc_decide(x->k, u, NULL, true, "ok", NULL, STAFF, &k2, T0_US, &again,
                                     &tier, &replay, NULL),
                     CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(risk_kyc_decide(x->k, w, NULL, true, "ok", NULL, STAFF, &k1, T0_US, &again,
                                     &tier, &replay, NULL),
                     CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(risk_kyc_tier_get(x->k, w, &tier), CF_OK);
    assert_int_equal(tier, 1);
    assert_int_equal(risk_fx_count(&x->b,
                                   "SELECT COUNT(*) FROM risk_kyc_events WHERE kind >= 4 AND "
                                   "kind <= 5"),
                     1);
}

static void test_list_pages(void **state)
{
    struct fx *x = *state;
    char u[LIST_CUSTOMERS][ID_TEXT_BYTES_MAX];
    for (size_t i = 0; i < LIST_CUSTOMERS; i++) {
        user(30 + i, u[i]);
        pending_customer(x, u[i]);
    }
    struct risk_kyc_submission page[2];
    size_t n = 0, seen = 0;
    uint64_t cursor = 0;
    do {
        assert_int_equal(risk_kyc_list(x->k, RISK_KYC_PENDING, cursor, page, 2, &n), CF_OK);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(page[i].user_id, u[seen++]); /* oldest submitted first */
        cursor = n > 0 ? page[n - 1].queue_row : cursor;
    } while (n == 2);
    assert_int_equal(seen, LIST_CUSTOMERS);
    struct risk_kyc_event ev;
    int tier = 0;
    for (size_t i = 0; i < LIST_CUSTOMERS; i++)
        assert_int_equal(decide(x, u[i], i % 2 == 0, NULL, &ev, &tier), CF_OK);
    seen = 0;
    cursor = 0;
    do {
        assert_int_equal(risk_kyc_list(x->k, RISK_KYC_APPROVED, cursor, page, 2, &n), CF_OK);
        for (size_t i = 0; i < n; i++, seen++)
            assert_string_equal(page[i].user_id, u[4 - 2 * seen]); /* newest decided first */
        cursor = n > 0 ? page[n - 1].queue_row : cursor;
    } while (n == 2);
    assert_int_equal(seen, 3);
    assert_int_equal(risk_kyc_list(x->k, RISK_KYC_REJECTED, 0, page, 2, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_int_equal(risk_kyc_list(x->k, RISK_KYC_DRAFT, 0, page, 2, &n), CF_ERR_INVALID_FIELD);
}

/* Races ---------------------------------------------------------------------------------------- */

struct racer {
    struct fx *x;
    const char *u;
    pthread_barrier_t *start;
    char key[64];
    bool same_key;
    enum cf_err err;
    struct risk_kyc_event ev;
    bool replay;
};

static void *race_decide(void *arg)
{
    struct racer *r = arg;
    struct risk_kyc_idem k = idem_of(r->key, "one request");
    int tier = 0;
    pthread_barrier_wait(r->start);
    r->err = risk_kyc_decide(r->x->k, r->u, NULL, true, "race", NULL, STAFF, &k, T0_US, &r->ev,
                             &tier, &r->replay, NULL);
    return NULL;
}

static void *race_details(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    struct risk_kyc_details d = details_of("Racing Rita");
    struct risk_kyc_submission s;
    int tier = 0;
    r->err = risk_kyc_details_put(r->x->k, r->u, &d, true, T0_US, &s, &tier, NULL);
    return NULL;
}

static void race(struct fx *x, const char *u, bool same_key, void *(*fn)(void *), struct racer *w)
{
    pthread_t th[RACE_THREADS];
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct racer){.x = x, .u = u, .start = &start, .same_key = same_key};
        snprintf(w[i].key, sizeof(w[i].key), "%s:%s:k%d", STAFF, u, same_key ? 0 : i);
        assert_int_equal(pthread_create(&th[i], NULL, fn, &w[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
}

static void test_races(void **state)
{
    struct fx *x = *state;
    char u[ID_TEXT_BYTES_MAX], w[ID_TEXT_BYTES_MAX], d[ID_TEXT_BYTES_MAX];
    user(41, u);
    user(42, w);
    user(43, d);
    struct racer *r = calloc(RACE_THREADS, sizeof(*r));
    assert_non_null(r);
    pending_customer(x, u);
    race(x, u, false, race_decide, r);
    int made = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_true(r[i].err == CF_OK || r[i].err == CF_ERR_CONFLICT);
        made += r[i].err == CF_OK;
    }
    assert_int_equal(made, 1);

    pending_customer(x, w);
    race(x, w, true, race_decide, r);
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(r[i].err, CF_OK);
        assert_string_equal(r[i].ev.id, r[0].ev.id);
    }
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_kyc_events WHERE kind = 4"),
                     2);

    race(x, d, false, race_details, r); /* the first put makes the draft, the others use it */
    for (int i = 0; i < RACE_THREADS; i++)
        assert_int_equal(r[i].err, CF_OK);
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM risk_kyc_submissions WHERE user_id = '%s'", d);
    assert_int_equal(risk_fx_count(&x->b, sql), 1);
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM risk_kyc_events WHERE user_id = '%s'", d);
    assert_int_equal(risk_fx_count(&x->b, sql), RACE_THREADS);
    free(r);
}

/* A second handle on the same database stands for another server: it sees a change made through
 * the first at once when it has not cached the customer, and this handle's own changes clear
 * its cache. */
static void test_two_handles(void **state)
{
    struct fx *x = *state;
    struct risk_kyc *other = NULL;
    assert_int_equal(risk_kyc_open(x->b.db, risk_fx_vault, &x->b, NULL, &other), CF_OK);
    char u[ID_TEXT_BYTES_MAX];
    user(51, u);
    int tier = -1;
    pending_customer(x, u);
    struct risk_kyc_event ev;
    assert_int_equal(decide(x, u, true, NULL, &ev, &tier), CF_OK);
    assert_int_equal(risk_kyc_tier_get(other, u, &tier), CF_OK);
    assert_int_equal(tier, 2);
    risk_kyc_close(other);
}

/* The payment path's check: features and the single limit by tier, the limits handed back. */
static void test_api_check(void **state)
{
    struct fx *x = *state;
    struct api api;
    memset(&api, 0, sizeof(api));
    api.kyc = x->k;
    char u[ID_TEXT_BYTES_MAX];
    user(61, u);
    int tier = -1;
    struct risk_kyc_limit l;
    assert_int_equal(api_kyc_check(&api, u, "payment", 5000, "EUR", &tier, &l), CF_OK);
    assert_int_equal(tier, 0);
    assert_int_equal(l.daily_out_minor, 10000);
    assert_int_equal(api_kyc_check(&api, u, "payment", 5001, "EUR", &tier, &l), CF_ERR_FORBIDDEN);
    assert_non_null(strstr(api_kyc_refusal_detail(&api, "payment", tier, 5001, &l), "amount"));
    assert_int_equal(api_kyc_check(&api, u, "withdrawal", 1, "EUR", &tier, &l), CF_ERR_FORBIDDEN);
    assert_non_null(strstr(api_kyc_refusal_detail(&api, "withdrawal", tier, 1, &l), "tier"));
    assert_int_equal(api_kyc_check(&api, u, "receive", 0, NULL, &tier, &l), CF_OK);
    assert_null(api_kyc_refusal_detail(&api, "receive", tier, 0, &l));
    pending_customer(x, u);
    assert_int_equal(api_kyc_check(&api, u, "withdrawal", 100000, "EUR", &tier, &l), CF_OK);
    assert_int_equal(tier, 1);
    struct risk_kyc_event ev;
    assert_int_equal(decide(x, u, true, NULL, &ev, &tier), CF_OK);
    assert_int_equal(api_kyc_check(&api, u, "withdrawal", 2500000, "EUR", &tier, &l), CF_OK);
    assert_int_equal(tier, 2);
    assert_int_equal(l.monthly_out_minor, 20000000);
    api.kyc = NULL;
    assert_int_equal(api_kyc_check(&api, u, "send", 1, "EUR", &tier, &l), CF_ERR_CONFIG);
}

/* Staff lower a tier: the tier falls, the automatic raise to 1 is held until an approval,
 * a customer lowered below 2 submits again, keys replay, and only lowering is taken. */
static void test_lower(void **state)
{
    struct fx *x = *state;
    char u[ID_TEXT_BYTES_MAX], fresh[ID_TEXT_BYTES_MAX];
    user(71, u);
    user(72, fresh);
    int tier = -1;
    bool replay = true;
    const char *detail = NULL;
    struct risk_kyc_event ev, again;
    struct risk_kyc_idem k1 = idem_of("lower-1", "lower to 1");
    pending_customer(x, u);
    assert_int_equal(decide(x, u, true, NULL, &ev, &tier), CF_OK);
    assert_int_equal(tier, 2);

    assert_int_equal(risk_kyc_tier_lower(x->k, u, 2, "why", NULL, STAFF, NULL, T0_US + 200, &ev,
                                         &tier, NULL, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_kyc_tier_lower(x->k, u, 1, "", NULL, STAFF, NULL, T0_US + 200, &ev,
                                         &tier, NULL, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_kyc_tier_lower(x->k, fresh, 0, "why", NULL, STAFF, NULL, T0_US + 200,
                                         &ev, &tier, NULL, &detail),
                     CF_ERR_CONFLICT);
    assert_int_equal(risk_kyc_tier_lower(x->k, u, 1, "passport expired", "Upload a new one.",
                                         STAFF, &k1, T0_US + 200, &ev, &tier, &replay, NULL),
                     CF_OK);
    assert_false(replay);
    assert_int_equal(tier, 1);
    assert_int_equal(ev.kind, RISK_KYC_EVENT_LOWER);
    assert_int_equal(risk_kyc_tier_get(x->k, u, &tier), CF_OK);
    assert_int_equal(tier, 1);
    assert_int_equal(risk_kyc_tier_lower(x->k, u, 1, "passport expired", "Upload a new one.",
                                         STAFF, &k1, T0_US + 201, &again, &tier, &replay, NULL),
                     CF_OK);
    assert_true(replay);
    assert_string_equal(again.id, ev.id);
    assert_int_equal(decide(x, u, true, &k1, &again, &tier), CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(risk_kyc_tier_lower(x->k, u, 1, "again", NULL, STAFF, NULL, T0_US + 202, &ev,
                                         &tier, NULL, &detail),
                     CF_ERR_CONFLICT);
    assert_non_null(strstr(detail, "only lower"));

    /* below 2: a new submission, and its approval raises them again */
    pending_customer(x, u);
    assert_int_equal(decide(x, u, true, NULL, &ev, &tier), CF_OK);
    assert_int_equal(tier, 2);

    /* lowered to 0: details and a verified phone do not raise them; an approval does */
    assert_int_equal(risk_kyc_tier_lower(x->k, u, 0, "forged passport", NULL, STAFF, NULL,
                                         T0_US + 300, &ev, &tier, NULL, NULL),
                     CF_OK);
    assert_int_equal(details_ok(x, u, "Ada Lovelace", true, T0_US + 301), 0);
    bool raised = true;
    assert_int_equal(risk_kyc_tier_refresh(x->k, u, true, T0_US + 302, &tier, &raised), CF_OK);
    assert_false(raised);
    assert_int_equal(tier, 0);
    struct risk_kyc_document d;
    struct risk_kyc_submission s;
    doc_ok(x, u, RISK_KYC_DOC_PASSPORT, 1500, &d);
    assert_int_equal(risk_kyc_submit(x->k, u, T0_US + 303, &s, NULL), CF_OK);
    assert_int_equal(decide(x, u, true, NULL, &ev, &tier), CF_OK);
    assert_int_equal(tier, 2);

    struct risk_kyc_event hist[RISK_KYC_HISTORY_MAX];
    size_t n = 0;
    assert_int_equal(risk_kyc_history(x->k, u, true, hist, RISK_KYC_HISTORY_MAX, &n), CF_OK);
    size_t lowered = 0;
    for (size_t i = 0; i < n; i++)
        lowered += hist[i].kind == RISK_KYC_EVENT_LOWER ? 1 : 0;
    assert_int_equal(lowered, 2);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_config_defaults), cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_config_hostile),  cmocka_unit_test(test_base64),
        cmocka_unit_test(test_sniff),           cmocka_unit_test(test_details_rules),
    };
    const struct CMUnitTest tests[] = {
        FX(test_approve),        FX(test_reject),      FX(test_documents),
        FX(test_sealed_at_rest), FX(test_decide_keys), FX(test_list_pages),
        FX(test_races),          FX(test_two_handles), FX(test_api_check),
        FX(test_lower),
    };
    int failed = cmocka_run_group_tests_name("risk_kyc_pure", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("risk_kyc_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("risk_kyc_postgres", tests, NULL, NULL);
    } else {
        printf("risk_kyc_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
