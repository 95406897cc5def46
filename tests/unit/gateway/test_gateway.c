/*
 * test_gateway.c - unit tests for src/gateway/gateway.c, sandbox.c and http.c.
 *
 * Callbacks: the signature against an independent HMAC, a round trip through the form codec
 * with escaped values, wrong secret, tampered body, tampered MAC or t, the tolerance's edges,
 * malformed headers, and malformed bodies (missing, unknown and repeated keys, bad amounts,
 * outcomes, currencies, escapes, lengths), which are CF_ERR_INVALID_FIELD with a good signature
 * and CF_ERR_BAD_SIGNATURE without. Requests: gateway_request_check's refusals.
 *
 * Sandbox: every documented card and IBAN gives its outcome; idempotency by op_id (also from
 * eight threads at once: one answer, one callback); a reused op_id with another amount; the
 * challenge right, wrong, reused, unknown; PROCESSING numbers deliver exactly one callback
 * that gateway_callback_verify accepts at the fake clock's time, and which never holds the
 * card number; the timeout card hangs timeout_ms; a full callback queue refuses; destroy drops
 * what is undelivered; the configuration bounds.
 *
 * HTTP: against a one-connection server run by a thread of this test on 127.0.0.1: the POST's
 * path, headers, form body and Coffer-Signature (checked with an independent HMAC); approved,
 * declined, processing and challenge answers; challenge answers and their 404/409; malformed,
 * over-long and non-200 answers are CF_ERR_IO; a 5xx, a hang past timeout_ms and a closed port
 * are GATEWAY_TIMEOUT; nothing logged holds the card number; the URL and configuration rules.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/hash.h"
#include "gateway/gateway.h"

#define SECRET "0123456789abcdef-shared-with-gw"
#define SECRET_LEN (sizeof(SECRET) - 1)
#define OTHER_SECRET "0123456789abcdef-shared-with-gW"

/* The fake clock's start: 2023-11-14T22:13:20Z. */
#define T0_S 1700000000LL

/* The sandbox's latency and hang in these tests. */
#define LATENCY_MS 5
#define TIMEOUT_MS 200
/* How long a test waits for a callback before it fails (never reached when things work). */
#define WAIT_MS 5000

/* What the test server keeps of one request, and how long it waits for the client. */
#define REQUEST_BYTES_MAX 32768
#define SERVER_WAIT_MS 10000

/* Callbacks a test sink keeps (it counts them all). */
#define SINK_KEPT_MAX 8

static void sleep_ms(long ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* HMAC-SHA-256(key, t "." body) as lowercase hex, computed here, apart from gateway.c. */
static void hmac_hex(const char *key, const char *t, const char *body, size_t body_len,
                     char out[65])
{
    crypto_auth_hmacsha256_state st;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, (const uint8_t *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)t, strlen(t));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)body, body_len);
    crypto_auth_hmacsha256_final(&st, mac);
    hash_hex(mac, sizeof(mac), out);
}

static enum cf_err sign(const char *body, int64_t t_s, char header[GATEWAY_SIGNATURE_BYTES_MAX])
{
    return gateway_callback_sign((const uint8_t *)SECRET, SECRET_LEN, body, strlen(body), t_s,
                                 header, GATEWAY_SIGNATURE_BYTES_MAX);
}

static enum cf_err verify(const char *body, const char *header, int64_t now_s,
                          struct gateway_event *ev)
{
    return gateway_callback_verify((const uint8_t *)SECRET, SECRET_LEN, body, strlen(body), header,
                                   now_s, ev);
}

/* A well-formed callback body. */
#define GOOD_BODY                                                                                  \
    "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=1250"                \
    "&currency=EUR&created_at=1700000000"

/* Signs body at t_s and verifies it at now_s. */
static enum cf_err sign_verify(const char *body, int64_t t_s, int64_t now_s,
                               struct gateway_event *ev)
{
    char header[GATEWAY_SIGNATURE_BYTES_MAX];
    assert_int_equal(sign(body, t_s, header), CF_OK);
    return verify(body, header, now_s, ev);
}

/* Callbacks ------------------------------------------------------------------------------------ */

static void test_sign_matches_independent_hmac(void **state)
{
    (void)state;
    char header[GATEWAY_SIGNATURE_BYTES_MAX], want[128], hex[65];
    assert_int_equal(sign(GOOD_BODY, T0_S, header), CF_OK);
    hmac_hex(SECRET, "1700000000", GOOD_BODY, strlen(GOOD_BODY), hex);
    snprintf(want, sizeof(want), "t=1700000000,v1=%s", hex);
    assert_string_equal(header, want);
    /* t = 0 is "0" */
    assert_int_equal(sign("", 0, header), CF_OK);
    hmac_hex(SECRET, "0", "", 0, hex);
    snprintf(want, sizeof(want), "t=0,v1=%s", hex);
    assert_string_equal(header, want);
}

static void test_verify_round_trip(void **state)
{
    (void)state;
    struct gateway_form f;
    gateway_form_init(&f);
    gateway_form_add(&f, "event_id", "evt_a&b=c");
    gateway_form_add(&f, "op_id", "op/1%2B~x");
    gateway_form_add(&f, "reference", "ref:\"quoted\"");
    gateway_form_add(&f, "outcome", "insufficient_funds");
    gateway_form_add_int(&f, "amount_minor", INT64_MAX);
    gateway_form_add(&f, "currency", "JPY");
    gateway_form_add_int(&f, "created_at", T0_S);
    assert_true(gateway_form_ok(&f));
    assert_string_equal(f.text, "event_id=evt_a%26b%3Dc&op_id=op%2F1%252B~x&reference=ref%3A%22"
                                "quoted%22&outcome=insufficient_funds&amount_minor="
                                "9223372036854775807&currency=JPY&created_at=1700000000");
    struct gateway_event ev;
    assert_int_equal(sign_verify(f.text, T0_S, T0_S, &ev), CF_OK);
    assert_string_equal(ev.event_id, "evt_a&b=c");
    assert_string_equal(ev.op_id, "op/1%2B~x");
    assert_string_equal(ev.reference, "ref:\"quoted\"");
    assert_int_equal(ev.outcome, GATEWAY_INSUFFICIENT_FUNDS);
    assert_true(ev.amount_minor == INT64_MAX);
    assert_string_equal(ev.currency, "JPY");
    assert_true(ev.created_at_s == T0_S);
    /* keys in another order and '+' / lower-case escapes are the same form */
    const char *shuffled = "currency=EUR&created_at=5&outcome=declined&amount_minor=1"
                           "&reference=r%2d1&op_id=o&event_id=e";
    assert_int_equal(sign_verify(shuffled, T0_S, T0_S, &ev), CF_OK);
    assert_int_equal(ev.outcome, GATEWAY_DECLINED);
    assert_string_equal(ev.reference, "r-1");
    assert_true(ev.created_at_s == 5 && ev.amount_minor == 1);
}

static void test_verify_wrong_secret_and_tampering(void **state)
{
    (void)state;
    char header[GATEWAY_SIGNATURE_BYTES_MAX];
    struct gateway_event ev;
    memset(&ev, 0x5a, sizeof(ev));
    assert_int_equal(sign(GOOD_BODY, T0_S, header), CF_OK);
    assert_int_equal(gateway_callback_verify((const uint8_t *)OTHER_SECRET, SECRET_LEN, GOOD_BODY,
                                             strlen(GOOD_BODY), header, T0_S, &ev),
                     CF_ERR_BAD_SIGNATURE);
    /* every byte of the body is covered */
    char body[] = GOOD_BODY;
    for (size_t i = 0; i < strlen(body); i++) {
        char keep = body[i];
        body[i] = keep == '1' ? '2' : '1';
        assert_int_equal(verify(body, header, T0_S, &ev), CF_ERR_BAD_SIGNATURE);
        body[i] = keep;
    }
    /* a shorter or longer body */
    assert_int_equal(gateway_callback_verify((const uint8_t *)SECRET, SECRET_LEN, GOOD_BODY,
                                             strlen(GOOD_BODY) - 1, header, T0_S, &ev),
                     CF_ERR_BAD_SIGNATURE);
    /* a changed MAC digit, a changed t with the same MAC */
    char h[GATEWAY_SIGNATURE_BYTES_MAX];
    strcpy(h, header);
    h[strlen(h) - 1] = h[strlen(h) - 1] == '0' ? '1' : '0';
    assert_int_equal(verify(GOOD_BODY, h, T0_S, &ev), CF_ERR_BAD_SIGNATURE);
    strcpy(h, header);
    h[11] = h[11] == '0' ? '1' : '0'; /* the last digit of t */
    assert_int_equal(verify(GOOD_BODY, h, T0_S, &ev), CF_ERR_BAD_SIGNATURE);
    /* out untouched throughout */
    for (size_t i = 0; i < sizeof(ev); i++)
        assert_int_equal(((unsigned char *)&ev)[i], 0x5a);
    assert_int_equal(verify(GOOD_BODY, header, T0_S, &ev), CF_OK);
}

static void test_verify_tolerance(void **state)
{
    (void)state;
    struct gateway_event ev;
    int64_t tol = GATEWAY_CALLBACK_TOLERANCE_S;
    assert_int_equal(sign_verify(GOOD_BODY, T0_S, T0_S + tol, &ev), CF_OK);
    assert_int_equal(sign_verify(GOOD_BODY, T0_S, T0_S + tol + 1, &ev), CF_ERR_BAD_SIGNATURE);
    assert_int_equal(sign_verify(GOOD_BODY, T0_S, T0_S - tol, &ev), CF_OK);
    assert_int_equal(sign_verify(GOOD_BODY, T0_S, T0_S - tol - 1, &ev), CF_ERR_BAD_SIGNATURE);
    assert_int_equal(sign_verify(GOOD_BODY, 0, T0_S, &ev), CF_ERR_BAD_SIGNATURE);
    assert_int_equal(sign_verify(GOOD_BODY, INT64_MAX, T0_S, &ev), CF_ERR_BAD_SIGNATURE);
}

static void test_verify_malformed_header(void **state)
{
    (void)state;
    char good[GATEWAY_SIGNATURE_BYTES_MAX], hex[65];
    assert_int_equal(sign(GOOD_BODY, T0_S, good), CF_OK);
    memcpy(hex, good + strlen("t=1700000000,v1="), 65);
    char upper[65];
    for (size_t i = 0; i < 65; i++)
        upper[i] = (hex[i] >= 'a' && hex[i] <= 'f') ? (char)(hex[i] - 32) : hex[i];
    char bad[16][160];
    size_t n = 0;
    snprintf(bad[n++], 160, "%s", "");
    snprintf(bad[n++], 160, "%s", "t=1700000000");
    snprintf(bad[n++], 160, "v1=%s,t=1700000000", hex);
    snprintf(bad[n++], 160, "t=17000000x0,v1=%s", hex);
    snprintf(bad[n++], 160, "t=01700000000,v1=%s", hex);
    snprintf(bad[n++], 160, "t=,v1=%s", hex);
    snprintf(bad[n++], 160, "t=-1700000000,v1=%s", hex);
    snprintf(bad[n++], 160, "t=1700000000,v1=%s", upper);
    snprintf(bad[n++], 160, "t=1700000000,v1=%.63s", hex);
    snprintf(bad[n++], 160, "t=1700000000,v1=%s0", hex);
    snprintf(bad[n++], 160, "t=1700000000,v1=%s,v0=00", hex);
    snprintf(bad[n++], 160, " t=1700000000,v1=%s", hex);
    snprintf(bad[n++], 160, "t=1700000000, v1=%s", hex);
    snprintf(bad[n++], 160, "t=1700000000,v2=%s", hex);
    snprintf(bad[n++], 160, "t=99999999999999999999,v1=%s", hex);
    snprintf(bad[n++], 160, "t=1700000000,v1=%s%s", hex, hex); /* past the bound */
    struct gateway_event ev;
    for (size_t i = 0; i < n; i++) {
        if (verify(GOOD_BODY, bad[i], T0_S, &ev) != CF_ERR_BAD_SIGNATURE)
            fail_msg("accepted header \"%s\"", bad[i]);
    }
    assert_int_equal(verify(GOOD_BODY, NULL, T0_S, &ev), CF_ERR_BAD_SIGNATURE);
    assert_int_equal(verify(GOOD_BODY, good, T0_S, &ev), CF_OK);
}

/* Bodies that are malformed once signed: CF_ERR_INVALID_FIELD when signed, and
 * CF_ERR_BAD_SIGNATURE when the signature is wrong (checked first). */
static void test_verify_malformed_body(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", /* everything missing */
        "op_id=op_42&reference=ref_7&outcome=approved&amount_minor=1250&currency=EUR"
        "&created_at=1",
        "event_id=evt_1&reference=ref_7&outcome=approved&amount_minor=1250&currency=EUR"
        "&created_at=1",
        "event_id=evt_1&op_id=op_42&outcome=approved&amount_minor=1250&currency=EUR"
        "&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&amount_minor=1250&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=1250"
        "&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=1250"
        "&currency=EUR",
        GOOD_BODY "&op_id=op_43", /* a repeated key */
        GOOD_BODY "&extra=1",     /* an unknown key */
        GOOD_BODY "&",            /* an empty last pair */
        "&" GOOD_BODY,            /* an empty first pair */
        GOOD_BODY "&&x=1",        /* an empty pair */
        GOOD_BODY "&novalue",     /* a pair without '=' */
        GOOD_BODY "&=1",          /* an empty key */
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=0"
        "&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=-5"
        "&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=12.50"
        "&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=01250"
        "&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor="
        "9223372036854775808&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=%2B5"
        "&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=processing&amount_minor=5"
        "&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=timeout&amount_minor=5"
        "&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=APPROVED&amount_minor=5"
        "&currency=EUR&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=XXX&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=eur&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EURO&created_at=1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EUR&created_at=-1",
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EUR&created_at=",
        "event_id=&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EUR&created_at=1",
        "event_id=evt+1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EUR&created_at=1", /* a space in an id */
        "event_id=evt%0A1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EUR&created_at=1", /* a control byte */
        "event_id=evt%001&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EUR&created_at=1", /* a NUL */
        "event_id=evt%zz&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EUR&created_at=1", /* a bad escape */
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EUR&created_at=1%4", /* a cut escape */
        "event_id=evt_1&op_id=op_42&reference=ref_7&outcome=approved&amount_minor=5"
        "&currency=EUR&created_at=1%", /* a cut escape */
        "event_id=evt_1&op_id=op_42&reference=0123456789012345678901234567890123456789012345678"
        "90123456789abcd&outcome=approved&amount_minor=5&currency=EUR&created_at=1", /* 64 */
        "event_id=evt_1&op_id=0123456789012345678901234567890123456789012345678&reference=r"
        "&outcome=approved&amount_minor=5&currency=EUR&created_at=1", /* 48 */
    };
    struct gateway_event ev;
    memset(&ev, 0x5a, sizeof(ev));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char header[GATEWAY_SIGNATURE_BYTES_MAX];
        assert_int_equal(sign(bad[i], T0_S, header), CF_OK);
        if (verify(bad[i], header, T0_S, &ev) != CF_ERR_INVALID_FIELD)
            fail_msg("signed body %zu not refused as invalid: %s", i, bad[i]);
        header[strlen(header) - 1] = header[strlen(header) - 1] == '0' ? '1' : '0';
        if (verify(bad[i], header, T0_S, &ev) != CF_ERR_BAD_SIGNATURE)
            fail_msg("badly signed body %zu not refused as bad signature", i);
    }
    for (size_t i = 0; i < sizeof(ev); i++)
        assert_int_equal(((unsigned char *)&ev)[i], 0x5a);
    /* the longest fields that fit are taken */
    const char *longest =
        "event_id=evt_1&op_id=012345678901234567890123456789012345678901234567&reference="
        "0123456789012345678901234567890123456789012345678901234567890abc"
        "&outcome=approved&amount_minor=5&currency=EUR&created_at=1";
    assert_int_equal(sign_verify(longest, T0_S, T0_S, &ev), CF_ERR_INVALID_FIELD);
    const char *fits = "event_id=evt_1&op_id=01234567890123456789012345678901234567890123456"
                       "&reference=0123456789012345678901234567890123456789012345678901234567890ab"
                       "&outcome=approved&amount_minor=5&currency=EUR&created_at=1";
    assert_int_equal(sign_verify(fits, T0_S, T0_S, &ev), CF_OK);
    assert_int_equal(strlen(ev.op_id), GATEWAY_OP_ID_BYTES_MAX - 1);
    assert_int_equal(strlen(ev.reference), GATEWAY_REF_BYTES_MAX - 1);
}

static void test_sign_verify_bounds(void **state)
{
    (void)state;
    char header[GATEWAY_SIGNATURE_BYTES_MAX];
    struct gateway_event ev;
    const uint8_t *s = (const uint8_t *)SECRET;
    assert_int_equal(gateway_callback_sign(s, GATEWAY_SECRET_BYTES_MIN - 1, "a=1", 3, T0_S, header,
                                           sizeof(header)),
                     CF_ERR_CONFIG);
    assert_int_equal(gateway_callback_sign(NULL, 0, "a=1", 3, T0_S, header, sizeof(header)),
                     CF_ERR_CONFIG);
    assert_int_equal(
        gateway_callback_verify(s, GATEWAY_SECRET_BYTES_MIN - 1, "a=1", 3, "t=1,v1=0", T0_S, &ev),
        CF_ERR_CONFIG);
    char *big = malloc(GATEWAY_BODY_BYTES_MAX + 2);
    assert_non_null(big);
    memset(big, 'a', GATEWAY_BODY_BYTES_MAX + 1);
    big[GATEWAY_BODY_BYTES_MAX + 1] = '\0';
    assert_int_equal(gateway_callback_sign(s, SECRET_LEN, big, GATEWAY_BODY_BYTES_MAX + 1, T0_S,
                                           header, sizeof(header)),
                     CF_ERR_PAYLOAD_TOO_LARGE);
    /* a correctly signed body over the bound: the MAC is good, the body is not */
    char h2[GATEWAY_SIGNATURE_BYTES_MAX], hex[65];
    hmac_hex(SECRET, "1700000000", big, GATEWAY_BODY_BYTES_MAX + 1, hex);
    snprintf(h2, sizeof(h2), "t=1700000000,v1=%s", hex);
    assert_int_equal(
        gateway_callback_verify(s, SECRET_LEN, big, GATEWAY_BODY_BYTES_MAX + 1, h2, T0_S, &ev),
        CF_ERR_INVALID_FIELD);
    free(big);
}

/* Forms ---------------------------------------------------------------------------------------- */

static void test_form_codec(void **state)
{
    (void)state;
    struct gateway_form f;
    gateway_form_init(&f);
    gateway_form_add(&f, "a b", "x y+z&=%~._-\x7e\xc3\xa9");
    gateway_form_add(&f, "empty", "");
    assert_true(gateway_form_ok(&f));
    assert_string_equal(f.text, "a%20b=x%20y%2Bz%26%3D%25~._-~%C3%A9&empty=");
    char v1[32], v2[4], v3[4];
    memset(v3, 'Q', sizeof(v3));
    struct gateway_form_field fields[] = {
        {"a b", v1, sizeof(v1), true, false},
        {"empty", v2, sizeof(v2), true, false},
        {"absent", v3, sizeof(v3), false, false},
    };
    assert_int_equal(gateway_form_decode(f.text, f.len, fields, 3), CF_OK);
    assert_string_equal(v1, "x y+z&=%~._-~\xc3\xa9");
    assert_string_equal(v2, "");
    assert_true(fields[0].seen && fields[1].seen && !fields[2].seen);
    assert_int_equal(v3[0], 'Q'); /* an absent field's value is not written */
    /* '+' decodes to a space */
    assert_int_equal(gateway_form_decode("a+b=1+2&empty=", 14, fields, 3), CF_OK);
    assert_string_equal(v1, "1 2");
    /* a value one byte longer than its field, and a failure leaves the values alone */
    strcpy(v2, "old");
    fields[1].seen = false;
    assert_int_equal(gateway_form_decode("empty=abcd&a+b=new", 18, fields, 3),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(v2, "old");
    assert_string_equal(v1, "1 2");
    assert_false(fields[1].seen);
    assert_int_equal(gateway_form_decode("empty=abc&a+b=new", 17, fields, 3), CF_OK);
    assert_string_equal(v2, "abc");
    /* more pairs than GATEWAY_FORM_FIELDS_MAX */
    char many[512] = "";
    for (int i = 0; i <= GATEWAY_FORM_FIELDS_MAX; i++)
        strcat(many, i == 0 ? "empty=1" : "&empty=1");
    assert_int_equal(gateway_form_decode(many, strlen(many), fields, 3), CF_ERR_INVALID_FIELD);
}

static void test_form_overflow(void **state)
{
    (void)state;
    struct gateway_form f;
    gateway_form_init(&f);
    char value[GATEWAY_BODY_BYTES_MAX];
    memset(value, 'v', sizeof(value) - 3);
    value[sizeof(value) - 3] = '\0'; /* "k=" + 4093 = 4095 bytes */
    gateway_form_add(&f, "k", value);
    assert_true(gateway_form_ok(&f));
    assert_int_equal(f.len, GATEWAY_BODY_BYTES_MAX - 1);
    gateway_form_add(&f, "x", "");
    assert_false(gateway_form_ok(&f));
    assert_true(f.len <= GATEWAY_BODY_BYTES_MAX && f.text[f.len] == '\0');
    gateway_form_init(&f);
    for (int i = 0; i < GATEWAY_FORM_FIELDS_MAX; i++)
        gateway_form_add(&f, "k", "1");
    assert_true(gateway_form_ok(&f));
    gateway_form_add(&f, "k", "1");
    assert_false(gateway_form_ok(&f));
    gateway_form_wipe(&f);
    assert_int_equal(f.len, 0);
}

/* Requests ------------------------------------------------------------------------------------- */

static struct gateway_request request(const char *op_id, enum gateway_method method,
                                      const char *instrument, int64_t amount_minor,
                                      const char *currency)
{
    struct gateway_request r;
    memset(&r, 0, sizeof(r));
    snprintf(r.op_id, sizeof(r.op_id), "%s", op_id);
    r.op = GATEWAY_OP_CHARGE;
    r.method = method;
    snprintf(r.instrument, sizeof(r.instrument), "%s", instrument);
    r.amount_minor = amount_minor;
    snprintf(r.currency, sizeof(r.currency), "%s", currency);
    return r;
}

static struct gateway_request card(const char *op_id, const char *pan)
{
    return request(op_id, GATEWAY_METHOD_CARD, pan, 1250, "EUR");
}

static struct gateway_request bank(const char *op_id, const char *iban)
{
    return request(op_id, GATEWAY_METHOD_BANK, iban, 1250, "EUR");
}

static void test_request_check(void **state)
{
    (void)state;
    struct gateway_request r = card("op_1", "4242424242424242");
    assert_int_equal(gateway_request_check(&r), CF_OK);
    r = bank("op_1", "GB82WEST12345698765432");
    assert_int_equal(gateway_request_check(&r), CF_OK);
    static const char *const bad_ids[] = {"", "op 1", "op\t1", "op\x7f", "op\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        r = card(bad_ids[i], "4242424242424242");
        assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_FIELD);
    }
    r = card("x", "4242424242424242");
    memset(r.op_id, 'a', sizeof(r.op_id)); /* no NUL */
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_FIELD);
    r.op_id[sizeof(r.op_id) - 1] = '\0'; /* 47 characters */
    assert_int_equal(gateway_request_check(&r), CF_OK);
    r = request("op_1", GATEWAY_METHOD_CARD, "4242424242424242", 0, "EUR");
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_AMOUNT);
    r = request("op_1", GATEWAY_METHOD_CARD, "4242424242424242", -1, "EUR");
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_AMOUNT);
    static const char *const bad_currencies[] = {"", "eur", "XXX", "EU", "ZZZ"};
    for (size_t i = 0; i < sizeof(bad_currencies) / sizeof(bad_currencies[0]); i++) {
        r = request("op_1", GATEWAY_METHOD_CARD, "4242424242424242", 1, bad_currencies[i]);
        assert_int_equal(gateway_request_check(&r), CF_ERR_UNKNOWN_CURRENCY);
    }
    r = card("op_1", "4242424242424241");
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_CARD);
    r = card("op_1", "4242 4242 4242 4242"); /* valid as typed, but not normalized */
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_CARD);
    r = card("op_1", "GB82WEST12345698765432");
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_CARD);
    r = bank("op_1", "gb82west12345698765432");
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_BANK_ACCOUNT);
    r = bank("op_1", "GB82 WEST 1234 5698 7654 32");
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_BANK_ACCOUNT);
    r = bank("op_1", "4242424242424242");
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_BANK_ACCOUNT);
    r = card("op_1", "4242424242424242");
    memset(r.instrument, '4', sizeof(r.instrument)); /* no NUL */
    assert_int_equal(gateway_request_check(&r), CF_ERR_INVALID_CARD);
    assert_string_equal(gateway_outcome_name(GATEWAY_APPROVED), "approved");
    assert_string_equal(gateway_outcome_name(GATEWAY_INSUFFICIENT_FUNDS), "insufficient_funds");
    assert_string_equal(gateway_outcome_name(GATEWAY_TIMEOUT), "timeout");
}

/* Sandbox -------------------------------------------------------------------------------------- */

/* Receives the sandbox's callbacks; `hold` makes the delivery thread wait in it. */
struct sink {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool hold;
    bool holding;
    int calls;
    size_t body_len[SINK_KEPT_MAX];
    char body[SINK_KEPT_MAX][GATEWAY_BODY_BYTES_MAX + 1];
    char signature[SINK_KEPT_MAX][GATEWAY_SIGNATURE_BYTES_MAX];
};

static void sink_receive(void *ctx, const char *body, size_t body_len, const char *signature)
{
    struct sink *s = ctx;
    pthread_mutex_lock(&s->lock);
    while (s->hold) {
        s->holding = true;
        pthread_cond_wait(&s->cond, &s->lock);
    }
    if (s->calls < SINK_KEPT_MAX) {
        assert_true(body_len <= GATEWAY_BODY_BYTES_MAX && body[body_len] == '\0');
        memcpy(s->body[s->calls], body, body_len + 1);
        s->body_len[s->calls] = body_len;
        snprintf(s->signature[s->calls], GATEWAY_SIGNATURE_BYTES_MAX, "%s", signature);
    }
    s->calls++;
    pthread_mutex_unlock(&s->lock);
}

static int sink_calls(struct sink *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->calls;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Waits (at most WAIT_MS) until the sink has had n calls; returns the count it saw. */
static int sink_wait(struct sink *s, int n)
{
    for (int waited = 0; sink_calls(s) < n && waited < WAIT_MS; waited += 2)
        sleep_ms(2);
    return sink_calls(s);
}

static void sink_release(struct sink *s)
{
    pthread_mutex_lock(&s->lock);
    s->hold = false;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

struct fx {
    struct cf_clock clock;
    struct sink sink;
    struct gateway *gw;
};

static struct gateway *sandbox_make(struct fx *f, int64_t latency_ms)
{
    struct gateway_sandbox_config cfg = {.latency_ms = latency_ms,
                                         .timeout_ms = TIMEOUT_MS,
                                         .secret = (const uint8_t *)SECRET,
                                         .secret_len = SECRET_LEN,
                                         .clock = &f->clock};
    struct gateway *gw = NULL;
    assert_int_equal(gateway_sandbox_create(&cfg, sink_receive, &f->sink, &gw), CF_OK);
    assert_non_null(gw);
    assert_string_equal(gateway_name(gw), "sandbox");
    return gw;
}

static int sandbox_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    cf_clock_fake_init(&f->clock, T0_S * 1000000);
    pthread_mutex_init(&f->sink.lock, NULL);
    pthread_cond_init(&f->sink.cond, NULL);
    f->gw = sandbox_make(f, LATENCY_MS);
    *state = f;
    return 0;
}

static int sandbox_teardown(void **state)
{
    struct fx *f = *state;
    sink_release(&f->sink);
    gateway_destroy(f->gw);
    pthread_cond_destroy(&f->sink.cond);
    pthread_mutex_destroy(&f->sink.lock);
    free(f);
    return 0;
}

static struct gateway_result submit_ok(struct gateway *gw, const struct gateway_request *r)
{
    struct gateway_result out;
    memset(&out, 0, sizeof(out));
    assert_int_equal(gateway_submit(gw, r, &out), CF_OK);
    return out;
}

static void test_sandbox_cards(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *pan;
        enum gateway_outcome outcome;
        const char *decline_code;
    } v[] = {
        {"4242424242424242", GATEWAY_APPROVED, ""},
        {"4000000000000002", GATEWAY_DECLINED, "card_declined"},
        {"4000000000009995", GATEWAY_INSUFFICIENT_FUNDS, "insufficient_funds"},
        {"4000000000003220", GATEWAY_CHALLENGE, ""},
        {"4000000000000077", GATEWAY_PROCESSING, ""},
        {"4000000000000085", GATEWAY_PROCESSING, ""},
        {"5555555555554444", GATEWAY_APPROVED, ""}, /* any other valid card */
        {"378282246310005", GATEWAY_APPROVED, ""},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char op_id[32];
        snprintf(op_id, sizeof(op_id), "op_card_%zu", i);
        struct gateway_request r = card(op_id, v[i].pan);
        struct gateway_result out = submit_ok(f->gw, &r);
        if (out.outcome != v[i].outcome)
            fail_msg("%s: %s", v[i].pan, gateway_outcome_name(out.outcome));
        assert_string_equal(out.decline_code, v[i].decline_code);
        assert_memory_equal(out.reference, "sbx_", 4);
        assert_int_equal(strlen(out.reference), 28);
        /* payouts answer from the same table */
        snprintf(op_id, sizeof(op_id), "op_payout_%zu", i);
        r = card(op_id, v[i].pan);
        r.op = GATEWAY_OP_PAYOUT;
        struct gateway_result payout = submit_ok(f->gw, &r);
        assert_int_equal(payout.outcome, v[i].outcome);
        assert_string_not_equal(payout.reference, out.reference);
    }
    /* an invalid card is refused before the gateway, out untouched */
    struct gateway_request r = card("op_bad", "4242424242424241");
    struct gateway_result out;
    memset(&out, 0x5a, sizeof(out));
    assert_int_equal(gateway_submit(f->gw, &r, &out), CF_ERR_INVALID_CARD);
    for (size_t i = 0; i < sizeof(out); i++)
        assert_int_equal(((unsigned char *)&out)[i], 0x5a);
    /* the four PROCESSING submits (charge and payout of two cards) call back four times */
    assert_int_equal(sink_wait(&f->sink, 4), 4);
}

static void test_sandbox_banks(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *iban;
        enum gateway_outcome outcome;
        const char *decline_code;
        enum gateway_outcome callback;
    } v[] = {
        {"GB82WEST12345698765432", GATEWAY_APPROVED, "", 0},
        {"FR1420041010050500013M02606", GATEWAY_DECLINED, "account_closed", 0},
        {"DE89370400440532013000", GATEWAY_PROCESSING, "", GATEWAY_APPROVED},
        {"NL91ABNA0417164300", GATEWAY_PROCESSING, "", GATEWAY_INSUFFICIENT_FUNDS},
        {"BE68539007547034", GATEWAY_PROCESSING, "", GATEWAY_DECLINED},
        {"CH9300762011623852957", GATEWAY_APPROVED, "", 0}, /* any other valid IBAN */
    };
    int callbacks = 0;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char op_id[32];
        snprintf(op_id, sizeof(op_id), "op_bank_%zu", i);
        struct gateway_request r = bank(op_id, v[i].iban);
        r.op = GATEWAY_OP_PAYOUT;
        struct gateway_result out = submit_ok(f->gw, &r);
        if (out.outcome != v[i].outcome)
            fail_msg("%s: %s", v[i].iban, gateway_outcome_name(out.outcome));
        assert_string_equal(out.decline_code, v[i].decline_code);
        if (v[i].callback == 0)
            continue;
        assert_int_equal(sink_wait(&f->sink, callbacks + 1), callbacks + 1);
        struct gateway_event ev;
        assert_int_equal(gateway_callback_verify(
                             (const uint8_t *)SECRET, SECRET_LEN, f->sink.body[callbacks],
                             f->sink.body_len[callbacks], f->sink.signature[callbacks], T0_S, &ev),
                         CF_OK);
        assert_int_equal(ev.outcome, v[i].callback);
        assert_string_equal(ev.op_id, op_id);
        assert_string_equal(ev.reference, out.reference);
        assert_null(strstr(f->sink.body[callbacks], v[i].iban));
        callbacks++;
    }
    sleep_ms(20 * LATENCY_MS);
    assert_int_equal(sink_calls(&f->sink), callbacks);
}

static void test_sandbox_idempotent(void **state)
{
    struct fx *f = *state;
    struct gateway_request r = card("op_same", "4242424242424242");
    struct gateway_result a = submit_ok(f->gw, &r);
    struct gateway_result b = submit_ok(f->gw, &r);
    assert_int_equal(b.outcome, GATEWAY_APPROVED);
    assert_string_equal(a.reference, b.reference);
    /* the first answer stands even when the same op_id names another card */
    r = card("op_same", "4000000000000002");
    b = submit_ok(f->gw, &r);
    assert_int_equal(b.outcome, GATEWAY_APPROVED);
    assert_string_equal(a.reference, b.reference);
    /* but not another amount, currency, operation or method */
    struct gateway_result out;
    r = card("op_same", "4242424242424242");
    r.amount_minor = 1251;
    assert_int_equal(gateway_submit(f->gw, &r, &out), CF_ERR_IDEM_KEY_REUSED);
    r = request("op_same", GATEWAY_METHOD_CARD, "4242424242424242", 1250, "USD");
    assert_int_equal(gateway_submit(f->gw, &r, &out), CF_ERR_IDEM_KEY_REUSED);
    r = card("op_same", "4242424242424242");
    r.op = GATEWAY_OP_PAYOUT;
    assert_int_equal(gateway_submit(f->gw, &r, &out), CF_ERR_IDEM_KEY_REUSED);
    r = bank("op_same", "GB82WEST12345698765432");
    assert_int_equal(gateway_submit(f->gw, &r, &out), CF_ERR_IDEM_KEY_REUSED);
    /* a declined op_id stays declined */
    r = card("op_declined", "4000000000000002");
    a = submit_ok(f->gw, &r);
    r = card("op_declined", "4242424242424242");
    b = submit_ok(f->gw, &r);
    assert_int_equal(b.outcome, GATEWAY_DECLINED);
    assert_string_equal(b.decline_code, "card_declined");
    assert_string_equal(a.reference, b.reference);
    /* a PROCESSING op_id submitted three times calls back once */
    r = card("op_processing", "4000000000000077");
    a = submit_ok(f->gw, &r);
    for (int i = 0; i < 2; i++) {
        b = submit_ok(f->gw, &r);
        assert_int_equal(b.outcome, GATEWAY_PROCESSING);
        assert_string_equal(a.reference, b.reference);
    }
    assert_int_equal(sink_wait(&f->sink, 1), 1);
    sleep_ms(20 * LATENCY_MS);
    b = submit_ok(f->gw, &r);
    sleep_ms(20 * LATENCY_MS);
    assert_int_equal(sink_calls(&f->sink), 1);
}

struct racer {
    struct gateway *gw;
    struct gateway_result out;
    enum cf_err err;
};

static void *racer_run(void *arg)
{
    struct racer *r = arg;
    struct gateway_request req = card("op_race", "4000000000000085");
    r->err = gateway_submit(r->gw, &req, &r->out);
    return NULL;
}

static void test_sandbox_idempotent_race(void **state)
{
    struct fx *f = *state;
    enum { RACERS = 8 };
    struct racer racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i].gw = f->gw;
        assert_int_equal(pthread_create(&threads[i], NULL, racer_run, &racers[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(racers[i].err, CF_OK);
        assert_int_equal(racers[i].out.outcome, GATEWAY_PROCESSING);
        assert_string_equal(racers[i].out.reference, racers[0].out.reference);
    }
    assert_int_equal(sink_wait(&f->sink, 1), 1);
    sleep_ms(20 * LATENCY_MS);
    assert_int_equal(sink_calls(&f->sink), 1);
    struct gateway_event ev;
    assert_int_equal(gateway_callback_verify((const uint8_t *)SECRET, SECRET_LEN, f->sink.body[0],
                                             f->sink.body_len[0], f->sink.signature[0], T0_S, &ev),
                     CF_OK);
    assert_int_equal(ev.outcome, GATEWAY_DECLINED);
    assert_string_equal(ev.reference, racers[0].out.reference);
}

static void test_sandbox_challenge(void **state)
{
    struct fx *f = *state;
    struct gateway_request r = card("op_3ds_wrong", "4000000000003220");
    struct gateway_result c = submit_ok(f->gw, &r);
    assert_int_equal(c.outcome, GATEWAY_CHALLENGE);
    struct gateway_result out;
    memset(&out, 0, sizeof(out));
    assert_int_equal(gateway_challenge_answer(f->gw, c.reference, "000000", &out), CF_OK);
    assert_int_equal(out.outcome, GATEWAY_DECLINED);
    assert_string_equal(out.decline_code, "authentication_failed");
    assert_string_equal(out.reference, c.reference);
    /* used once, right or wrong */
    memset(&out, 0x5a, sizeof(out));
    assert_int_equal(gateway_challenge_answer(f->gw, c.reference, "123456", &out), CF_ERR_CONFLICT);
    assert_int_equal(((unsigned char *)&out)[0], 0x5a);
    /* resubmitting answers the first answer */
    struct gateway_result again = submit_ok(f->gw, &r);
    assert_int_equal(again.outcome, GATEWAY_CHALLENGE);
    assert_string_equal(again.reference, c.reference);

    r = card("op_3ds_right", "4000000000003220");
    c = submit_ok(f->gw, &r);
    assert_int_equal(c.outcome, GATEWAY_CHALLENGE);
    /* near misses of the code are wrong, and malformed codes never reach the gateway */
    assert_int_equal(gateway_challenge_answer(f->gw, c.reference, "", &out), CF_ERR_INVALID_FIELD);
    assert_int_equal(gateway_challenge_answer(f->gw, c.reference, "123 456", &out),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(gateway_challenge_answer(f->gw, c.reference, "1234567890123456", &out),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(gateway_challenge_answer(f->gw, c.reference, "123456", &out), CF_OK);
    assert_int_equal(out.outcome, GATEWAY_APPROVED);
    assert_string_equal(out.decline_code, "");
    assert_string_equal(out.reference, c.reference);
    assert_int_equal(gateway_challenge_answer(f->gw, c.reference, "123456", &out), CF_ERR_CONFLICT);

    r = card("op_3ds_near", "4000000000003220");
    c = submit_ok(f->gw, &r);
    assert_int_equal(gateway_challenge_answer(f->gw, c.reference, "1234567", &out), CF_OK);
    assert_int_equal(out.outcome, GATEWAY_DECLINED);

    /* unknown references, and references of operations that were not challenged */
    assert_int_equal(
        gateway_challenge_answer(f->gw, "sbx_000000000000000000000000", "123456", &out),
        CF_ERR_NOT_FOUND);
    r = card("op_plain", "4242424242424242");
    struct gateway_result plain = submit_ok(f->gw, &r);
    assert_int_equal(gateway_challenge_answer(f->gw, plain.reference, "123456", &out),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(gateway_challenge_answer(f->gw, "", "123456", &out), CF_ERR_INVALID_FIELD);
    assert_int_equal(sink_calls(&f->sink), 0); /* challenges never call back */
}

/* Checks the k-th callback: signed with SECRET at the fake clock, for r and result. */
static void callback_check(struct fx *f, int k, const struct gateway_request *r,
                           const struct gateway_result *result, enum gateway_outcome outcome)
{
    struct gateway_event ev;
    memset(&ev, 0, sizeof(ev));
    const char *body = f->sink.body[k];
    size_t body_len = f->sink.body_len[k];
    assert_int_equal(body_len, strlen(body));
    assert_int_equal(gateway_callback_verify((const uint8_t *)SECRET, SECRET_LEN, body, body_len,
                                             f->sink.signature[k], T0_S, &ev),
                     CF_OK);
    assert_int_equal(ev.outcome, outcome);
    assert_string_equal(ev.op_id, r->op_id);
    assert_string_equal(ev.reference, result->reference);
    assert_true(ev.amount_minor == r->amount_minor);
    assert_string_equal(ev.currency, r->currency);
    assert_true(ev.created_at_s == T0_S);
    assert_memory_equal(ev.event_id, "evt_", 4);
    assert_memory_equal(f->sink.signature[k], "t=1700000000,v1=", 16);
    assert_null(strstr(body, r->instrument)); /* the card number never leaves */
    assert_int_equal(gateway_callback_verify((const uint8_t *)OTHER_SECRET, SECRET_LEN, body,
                                             body_len, f->sink.signature[k], T0_S, &ev),
                     CF_ERR_BAD_SIGNATURE);
    assert_int_equal(gateway_callback_verify((const uint8_t *)SECRET, SECRET_LEN, body, body_len,
                                             f->sink.signature[k],
                                             T0_S + GATEWAY_CALLBACK_TOLERANCE_S + 1, &ev),
                     CF_ERR_BAD_SIGNATURE);
}

static void test_sandbox_processing_callbacks(void **state)
{
    struct fx *f = *state;
    struct gateway_request ok =
        request("op_cb_ok", GATEWAY_METHOD_CARD, "4000000000000077", 999, "USD");
    int64_t start_us = cf_monotonic_us();
    struct gateway_result ok_result = submit_ok(f->gw, &ok);
    assert_true(cf_monotonic_us() - start_us >= LATENCY_MS * 1000); /* the answer's latency */
    assert_int_equal(ok_result.outcome, GATEWAY_PROCESSING);
    assert_int_equal(sink_wait(&f->sink, 1), 1);
    assert_true(cf_monotonic_us() - start_us >= 2 * LATENCY_MS * 1000); /* and the callback's */
    callback_check(f, 0, &ok, &ok_result, GATEWAY_APPROVED);

    struct gateway_request no =
        request("op_cb_no", GATEWAY_METHOD_CARD, "4000000000000085", 5, "JPY");
    struct gateway_result no_result = submit_ok(f->gw, &no);
    assert_int_equal(no_result.outcome, GATEWAY_PROCESSING);
    assert_int_equal(sink_wait(&f->sink, 2), 2);
    callback_check(f, 1, &no, &no_result, GATEWAY_DECLINED);

    /* and never a second one */
    sleep_ms(20 * LATENCY_MS);
    assert_int_equal(sink_calls(&f->sink), 2);
}

static void test_sandbox_timeout_card(void **state)
{
    struct fx *f = *state;
    struct gateway_request r = card("op_hang", "4000000000000119");
    for (int i = 0; i < 2; i++) { /* never remembered: it hangs each time */
        int64_t start_us = cf_monotonic_us();
        struct gateway_result out = submit_ok(f->gw, &r);
        int64_t took_us = cf_monotonic_us() - start_us;
        assert_int_equal(out.outcome, GATEWAY_TIMEOUT);
        assert_string_equal(out.reference, "");
        assert_true(took_us >= TIMEOUT_MS * 1000);
        assert_true(took_us < 5 * TIMEOUT_MS * 1000);
    }
    assert_int_equal(sink_calls(&f->sink), 0);
}

static void test_sandbox_queue_full(void **state)
{
    struct fx *f = *state;
    gateway_destroy(f->gw);
    f->gw = sandbox_make(f, 0);
    f->sink.hold = true;
    struct gateway_request r = card("op_q_first", "4000000000000077");
    submit_ok(f->gw, &r);
    /* the delivery thread now waits in the sink with the first callback; fill the queue */
    bool holding = false;
    for (int waited = 0; !holding && waited < WAIT_MS; waited += 2) {
        sleep_ms(2);
        pthread_mutex_lock(&f->sink.lock);
        holding = f->sink.holding;
        pthread_mutex_unlock(&f->sink.lock);
    }
    assert_true(holding);
    for (int i = 0; i < GATEWAY_SANDBOX_QUEUE_MAX; i++) {
        char op_id[32];
        snprintf(op_id, sizeof(op_id), "op_q_%d", i);
        r = card(op_id, "4000000000000077");
        submit_ok(f->gw, &r);
    }
    struct gateway_result out;
    r = card("op_q_over", "4000000000000077");
    assert_int_equal(gateway_submit(f->gw, &r, &out), CF_ERR_OVERLOADED);
    /* an immediate answer needs no queue */
    r = card("op_q_plain", "4242424242424242");
    assert_int_equal(submit_ok(f->gw, &r).outcome, GATEWAY_APPROVED);
    sink_release(&f->sink);
    assert_int_equal(sink_wait(&f->sink, GATEWAY_SANDBOX_QUEUE_MAX + 1),
                     GATEWAY_SANDBOX_QUEUE_MAX + 1);
    /* the refused op_id was not remembered: it goes through now */
    r = card("op_q_over", "4000000000000077");
    assert_int_equal(submit_ok(f->gw, &r).outcome, GATEWAY_PROCESSING);
    assert_int_equal(sink_wait(&f->sink, GATEWAY_SANDBOX_QUEUE_MAX + 2),
                     GATEWAY_SANDBOX_QUEUE_MAX + 2);
}

static void test_sandbox_destroy_drops_pending(void **state)
{
    struct fx *f = *state;
    gateway_destroy(f->gw);
    f->gw = sandbox_make(f, 300);
    struct gateway_request r = card("op_dropped", "4000000000000077");
    assert_int_equal(submit_ok(f->gw, &r).outcome, GATEWAY_PROCESSING);
    int64_t start_us = cf_monotonic_us();
    gateway_destroy(f->gw); /* the callback is due in 300 ms */
    f->gw = NULL;
    assert_true(cf_monotonic_us() - start_us < 250 * 1000); /* it did not wait for it */
    sleep_ms(400);
    assert_int_equal(sink_calls(&f->sink), 0);
}

static void test_sandbox_config(void **state)
{
    struct fx *f = *state;
    struct gateway_sandbox_config good = {.latency_ms = 0,
                                          .timeout_ms = 0,
                                          .secret = (const uint8_t *)SECRET,
                                          .secret_len = GATEWAY_SECRET_BYTES_MIN,
                                          .clock = NULL};
    struct gateway *gw = NULL;
    assert_int_equal(gateway_sandbox_create(&good, sink_receive, &f->sink, &gw), CF_OK);
    gateway_destroy(gw);
    struct gateway_sandbox_config bad[6];
    for (int i = 0; i < 6; i++)
        bad[i] = good;
    bad[0].latency_ms = -1;
    bad[1].latency_ms = GATEWAY_SANDBOX_LATENCY_MS_MAX + 1;
    bad[2].timeout_ms = -1;
    bad[3].timeout_ms = GATEWAY_SANDBOX_TIMEOUT_MS_MAX + 1;
    bad[4].secret_len = GATEWAY_SECRET_BYTES_MIN - 1;
    bad[5].secret = NULL;
    for (int i = 0; i < 6; i++) {
        gw = NULL;
        assert_int_equal(gateway_sandbox_create(&bad[i], sink_receive, &f->sink, &gw),
                         CF_ERR_CONFIG);
        assert_null(gw);
    }
    gateway_destroy(NULL);
}

/* HTTP: a one-connection server ---------------------------------------------------------------- */

struct server {
    int listen_fd;
    int port;
    int status;         /* answered */
    const char *answer; /* the answer's body */
    bool hang;          /* never answer; wait for the client to go */
    char request[REQUEST_BYTES_MAX];
    size_t request_len;
    int accepted;
    pthread_t thread;
};

static long content_length(const char *req)
{
    const char *h = strcasestr(req, "\r\ncontent-length:");
    return h == NULL ? -1 : strtol(h + 17, NULL, 10);
}

static void request_read(struct server *s, int fd)
{
    s->request_len = 0;
    while (s->request_len < sizeof(s->request) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, SERVER_WAIT_MS) != 1)
            return;
        ssize_t got =
            read(fd, s->request + s->request_len, sizeof(s->request) - 1 - s->request_len);
        if (got <= 0)
            return;
        s->request_len += (size_t)got;
        s->request[s->request_len] = '\0';
        const char *end = strstr(s->request, "\r\n\r\n");
        long body = end != NULL ? content_length(s->request) : -1;
        if (end != NULL && body >= 0 &&
            s->request_len >= (size_t)(end + 4 - s->request) + (size_t)body)
            return;
    }
}

static void answer_write(struct server *s, int fd)
{
    size_t body_len = strlen(s->answer);
    char *text = malloc(body_len + 256);
    assert_non_null(text);
    int n = snprintf(text, body_len + 256,
                     "HTTP/1.1 %d Test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     s->status, body_len, s->answer);
    for (size_t at = 0; at < (size_t)n;) {
        ssize_t w = write(fd, text + at, (size_t)n - at);
        if (w <= 0)
            break;
        at += (size_t)w;
    }
    free(text);
}

static void *server_run(void *arg)
{
    struct server *s = arg;
    struct pollfd p = {.fd = s->listen_fd, .events = POLLIN};
    if (poll(&p, 1, SERVER_WAIT_MS) != 1)
        return NULL;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    s->accepted++;
    request_read(s, fd);
    if (s->hang) { /* until the client gives up and closes */
        struct pollfd c = {.fd = fd, .events = POLLIN};
        char byte;
        if (poll(&c, 1, SERVER_WAIT_MS) == 1 && read(fd, &byte, 1) > 0)
            fail_msg("unexpected bytes from the client");
    } else {
        answer_write(s, fd);
    }
    close(fd);
    return NULL;
}

static void server_start(struct server *s, int status, const char *answer)
{
    memset(s, 0, sizeof(*s));
    s->status = status;
    s->answer = answer;
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->listen_fd, 4), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(s->listen_fd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_run, s), 0);
}

static void server_stop(struct server *s)
{
    assert_int_equal(pthread_join(s->thread, NULL), 0);
    close(s->listen_fd);
}

static struct gateway *http_gateway(int port, const char *path, int64_t timeout_ms)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    struct gateway_http_config cfg = {.base_url = url,
                                      .secret = (const uint8_t *)SECRET,
                                      .secret_len = SECRET_LEN,
                                      .timeout_ms = timeout_ms};
    struct gateway *gw = NULL;
    assert_int_equal(gateway_http_create(&cfg, &gw), CF_OK);
    assert_string_equal(gateway_name(gw), "http");
    return gw;
}

/* The value of header `name` in req into out ("" when absent). */
static void header_value(const char *req, const char *name, char *out, size_t bytes)
{
    char key[64];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *h = strcasestr(req, key);
    out[0] = '\0';
    if (h == NULL)
        return;
    h += strlen(key);
    size_t n = strcspn(h, "\r");
    assert_true(n < bytes);
    memcpy(out, h, n);
    out[n] = '\0';
}

/* The request's body, after its headers. */
static const char *request_body(const struct server *s)
{
    const char *end = strstr(s->request, "\r\n\r\n");
    assert_non_null(end);
    assert_int_equal(content_length(s->request), (long)strlen(end + 4));
    return end + 4;
}

/* Checks the request's Coffer-Signature against its body with an independent HMAC. */
static void request_signature_check(const struct server *s)
{
    char value[GATEWAY_SIGNATURE_BYTES_MAX + 8];
    header_value(s->request, "Coffer-Signature", value, sizeof(value));
    char *comma = strchr(value, ',');
    assert_non_null(comma);
    assert_memory_equal(value, "t=", 2);
    assert_memory_equal(comma, ",v1=", 4);
    *comma = '\0';
    long long t = strtoll(value + 2, NULL, 10);
    assert_true(llabs(t - (long long)time(NULL)) <= 5);
    const char *body = request_body(s);
    char want[65];
    hmac_hex(SECRET, value + 2, body, strlen(body), want);
    assert_string_equal(comma + 4, want);
}

/* The request's form fields, decoded (all required: no more, no fewer). */
struct charge_form {
    char op_id[GATEWAY_OP_ID_BYTES_MAX], method[8], instrument[GATEWAY_INSTRUMENT_BYTES_MAX];
    char amount_minor[24], currency[4];
};

static void charge_form_decode(const struct server *s, struct charge_form *c)
{
    struct gateway_form_field fields[] = {
        {"op_id", c->op_id, sizeof(c->op_id), true, false},
        {"method", c->method, sizeof(c->method), true, false},
        {"instrument", c->instrument, sizeof(c->instrument), true, false},
        {"amount_minor", c->amount_minor, sizeof(c->amount_minor), true, false},
        {"currency", c->currency, sizeof(c->currency), true, false},
    };
    const char *body = request_body(s);
    assert_int_equal(gateway_form_decode(body, strlen(body), fields, 5), CF_OK);
}

static void test_http_charge_signed(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 200, "outcome=approved&reference=gw_123&decline_code=");
    struct gateway *gw = http_gateway(s.port, "/v1/", 5000);
    struct gateway_request r =
        request("op_1/x", GATEWAY_METHOD_CARD, "4242424242424242", 1250, "EUR");
    struct gateway_result out = submit_ok(gw, &r);
    server_stop(&s);
    gateway_destroy(gw);
    assert_int_equal(out.outcome, GATEWAY_APPROVED);
    assert_string_equal(out.reference, "gw_123");
    assert_string_equal(out.decline_code, "");
    assert_int_equal(s.accepted, 1);
    assert_memory_equal(s.request, "POST /v1/charges HTTP/1.1\r\n", 27);
    char value[128];
    header_value(s.request, "Content-Type", value, sizeof(value));
    assert_string_equal(value, "application/x-www-form-urlencoded");
    header_value(s.request, "Idempotency-Key", value, sizeof(value));
    assert_string_equal(value, "op_1/x");
    request_signature_check(&s);
    struct charge_form c;
    charge_form_decode(&s, &c);
    assert_string_equal(c.op_id, "op_1/x");
    assert_string_equal(c.method, "card");
    assert_string_equal(c.instrument, "4242424242424242");
    assert_string_equal(c.amount_minor, "1250");
    assert_string_equal(c.currency, "EUR");
}

static void test_http_payout_bank(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 200, "reference=po_9&outcome=processing");
    struct gateway *gw = http_gateway(s.port, "", 5000);
    struct gateway_request r = bank("op_2", "GB82WEST12345698765432");
    r.op = GATEWAY_OP_PAYOUT;
    struct gateway_result out = submit_ok(gw, &r);
    server_stop(&s);
    gateway_destroy(gw);
    assert_int_equal(out.outcome, GATEWAY_PROCESSING);
    assert_string_equal(out.reference, "po_9");
    assert_memory_equal(s.request, "POST /payouts HTTP/1.1\r\n", 24);
    request_signature_check(&s);
    struct charge_form c;
    charge_form_decode(&s, &c);
    assert_string_equal(c.method, "bank");
    assert_string_equal(c.instrument, "GB82WEST12345698765432");
}

static void test_http_declined(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 200,
                 "outcome=insufficient_funds&reference=gw_5&decline_code=insufficient_funds");
    struct gateway *gw = http_gateway(s.port, "/", 5000);
    struct gateway_request r = card("op_3", "5555555555554444");
    struct gateway_result out = submit_ok(gw, &r);
    server_stop(&s);
    gateway_destroy(gw);
    assert_int_equal(out.outcome, GATEWAY_INSUFFICIENT_FUNDS);
    assert_string_equal(out.decline_code, "insufficient_funds");
}

static void test_http_challenge(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 200, "outcome=challenge&reference=3ds_1");
    struct gateway *gw = http_gateway(s.port, "/gw", 5000);
    struct gateway_request r = card("op_4", "4000000000003220");
    struct gateway_result c = submit_ok(gw, &r);
    server_stop(&s);
    gateway_destroy(gw);
    assert_int_equal(c.outcome, GATEWAY_CHALLENGE);
    assert_string_equal(c.reference, "3ds_1");

    server_start(&s, 200, "outcome=approved&reference=3ds_1");
    gw = http_gateway(s.port, "/gw", 5000);
    struct gateway_result out;
    assert_int_equal(gateway_challenge_answer(gw, "3ds_1", "123456", &out), CF_OK);
    server_stop(&s);
    gateway_destroy(gw);
    assert_int_equal(out.outcome, GATEWAY_APPROVED);
    assert_memory_equal(s.request, "POST /gw/challenges HTTP/1.1\r\n", 30);
    request_signature_check(&s);
    char reference[16], code[16], value[64];
    struct gateway_form_field fields[] = {
        {"reference", reference, sizeof(reference), true, false},
        {"code", code, sizeof(code), true, false},
    };
    const char *body = request_body(&s);
    assert_int_equal(gateway_form_decode(body, strlen(body), fields, 2), CF_OK);
    assert_string_equal(reference, "3ds_1");
    assert_string_equal(code, "123456");
    header_value(s.request, "Idempotency-Key", value, sizeof(value));
    assert_string_equal(value, "3ds_1");

    static const struct {
        int status;
        const char *answer;
        enum cf_err err;
    } v[] = {
        {404, "", CF_ERR_NOT_FOUND},
        {409, "", CF_ERR_CONFLICT},
        {400, "", CF_ERR_IO},
        {200, "outcome=challenge&reference=3ds_1", CF_ERR_IO}, /* not a final outcome */
        {200, "outcome=processing&reference=3ds_1", CF_ERR_IO},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        server_start(&s, v[i].status, v[i].answer);
        gw = http_gateway(s.port, "/gw", 5000);
        memset(&out, 0x5a, sizeof(out));
        assert_int_equal(gateway_challenge_answer(gw, "3ds_1", "123456", &out), v[i].err);
        assert_int_equal(((unsigned char *)&out)[0], 0x5a);
        server_stop(&s);
        gateway_destroy(gw);
    }
}

static void test_http_bad_answers(void **state)
{
    (void)state;
    char *huge = malloc(GATEWAY_BODY_BYTES_MAX + 64);
    assert_non_null(huge);
    strcpy(huge, "outcome=approved&reference=gw_1&decline_code=");
    size_t n = strlen(huge);
    memset(huge + n, 'x', GATEWAY_BODY_BYTES_MAX + 8 - n);
    huge[GATEWAY_BODY_BYTES_MAX + 8] = '\0';
    const struct {
        int status;
        const char *answer;
    } v[] = {
        {200, "outcome=maybe&reference=gw_1"},
        {200, "outcome=timeout&reference=gw_1"},
        {200, "outcome=approved"},
        {200, "outcome=approved&reference="},
        {200, "outcome=approved&reference=gw 1"},
        {200, "outcome=approved&reference=gw_1&extra=1"},
        {200, "outcome=approved&reference=gw_1&outcome=declined"},
        {200, "outcome=declined&reference=gw_1&decline_code=no+way"},
        {200, "{\"outcome\":\"approved\"}"},
        {200, ""},
        {200, huge},
        {400, "outcome=approved&reference=gw_1"},
        {402, "outcome=declined&reference=gw_1"},
        {301, ""},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct server s;
        server_start(&s, v[i].status, v[i].answer);
        struct gateway *gw = http_gateway(s.port, "", 5000);
        struct gateway_request r = card("op_5", "4242424242424242");
        struct gateway_result out;
        memset(&out, 0x5a, sizeof(out));
        enum cf_err err = gateway_submit(gw, &r, &out);
        server_stop(&s);
        gateway_destroy(gw);
        if (err != CF_ERR_IO)
            fail_msg("answer %zu (%d): %s", i, v[i].status, cf_err_code(err));
        assert_int_equal(((unsigned char *)&out)[0], 0x5a);
    }
    free(huge);
}

static void test_http_no_answer_is_timeout(void **state)
{
    (void)state;
    /* a 5xx: the provider may or may not have acted */
    struct server s;
    server_start(&s, 503, "");
    struct gateway *gw = http_gateway(s.port, "", 5000);
    struct gateway_request r = card("op_6", "4242424242424242");
    struct gateway_result out = submit_ok(gw, &r);
    server_stop(&s);
    gateway_destroy(gw);
    assert_int_equal(out.outcome, GATEWAY_TIMEOUT);
    assert_string_equal(out.reference, "");
    /* a server that never answers: timeout_ms */
    server_start(&s, 200, "");
    s.hang = true;
    gw = http_gateway(s.port, "", 300);
    int64_t start_us = cf_monotonic_us();
    out = submit_ok(gw, &r);
    int64_t took_us = cf_monotonic_us() - start_us;
    gateway_destroy(gw);
    server_stop(&s);
    assert_int_equal(out.outcome, GATEWAY_TIMEOUT);
    assert_int_equal(s.accepted, 1);
    assert_true(took_us >= 300 * 1000 && took_us < 3000 * 1000);
    /* nothing listening */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* bound, never listened: nothing answers there */
    gw = http_gateway(ntohs(a.sin_port), "", 5000);
    out = submit_ok(gw, &r);
    assert_int_equal(out.outcome, GATEWAY_TIMEOUT);
    assert_int_equal(gateway_challenge_answer(gw, "3ds_1", "123456", &out), CF_OK);
    assert_int_equal(out.outcome, GATEWAY_TIMEOUT);
    gateway_destroy(gw);
}

/* Runs the failing calls with stderr in a file: each is logged, none with the card number. */
static void test_http_logs_hold_no_instrument(void **state)
{
    (void)state;
    FILE *capture = tmpfile();
    assert_non_null(capture);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(capture), 2) >= 0);
    const int statuses[] = {500, 200, 418};
    for (size_t i = 0; i < 3; i++) {
        struct server s;
        server_start(&s, statuses[i], "outcome=nope");
        struct gateway *gw = http_gateway(s.port, "", 5000);
        struct gateway_request r = card("op_log", "4000000000000077");
        struct gateway_result out;
        cf_best_effort(gateway_submit(gw, &r, &out));
        server_stop(&s);
        gateway_destroy(gw);
    }
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    char text[8192];
    rewind(capture);
    size_t n = fread(text, 1, sizeof(text) - 1, capture);
    text[n] = '\0';
    fclose(capture);
    assert_non_null(strstr(text, "gateway: no final answer"));
    assert_non_null(strstr(text, "gateway: malformed answer"));
    assert_non_null(strstr(text, "gateway: unexpected status"));
    assert_non_null(strstr(text, "op_log"));
    assert_null(strstr(text, "4000000000000077"));
    assert_null(strstr(text, "0077"));
}

static void test_http_config_rules(void **state)
{
    (void)state;
    static const char *const good[] = {
        "https://gw.example.com", "https://gw.example.com/v1/",    "HTTPS://gw.example.com:8443/v1",
        "https://192.0.2.10/pay", "https://[2001:db8::1]:443/pay", "http://127.0.0.1:8080/gw",
        "http://127.1.2.3/gw",    "http://localhost:9000",         "http://[::1]:8080/gw",
    };
    static const char *const bad[] = {
        "",
        "gw.example.com/v1",
        "ftp://gw.example.com",
        "http://gw.example.com/v1",
        "http://10.0.0.1/gw",
        "http://192.168.1.1/gw",
        "http://127.0.0.1.example.com/gw",
        "http://localhost.example.com/gw",
        "http://localhost@example.com/gw",
        "https://user:pass@gw.example.com/v1",
        "http://[::2]/gw",
        "http://0x7f000001/gw",
        "https://gw.example.com/v1?key=1",
        "https://gw.example.com/v1#frag",
        "https://gw.example.com:0/v1",
        "https://gw.example.com:65536/v1",
        "https://gw example.com/v1",
        "https:///v1",
    };
    struct gateway_http_config cfg = {
        .secret = (const uint8_t *)SECRET, .secret_len = SECRET_LEN, .timeout_ms = 1000};
    struct gateway *gw = NULL;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cfg.base_url = good[i];
        gw = NULL;
        if (gateway_http_create(&cfg, &gw) != CF_OK)
            fail_msg("refused %s", good[i]);
        gateway_destroy(gw);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.base_url = bad[i];
        gw = NULL;
        if (gateway_http_create(&cfg, &gw) != CF_ERR_CONFIG)
            fail_msg("accepted %s", bad[i]);
        assert_null(gw);
    }
    cfg.base_url = NULL;
    assert_int_equal(gateway_http_create(&cfg, &gw), CF_ERR_CONFIG);
    cfg.base_url = "https://gw.example.com";
    cfg.timeout_ms = 0;
    assert_int_equal(gateway_http_create(&cfg, &gw), CF_ERR_CONFIG);
    cfg.timeout_ms = GATEWAY_HTTP_TIMEOUT_MS_MAX + 1;
    assert_int_equal(gateway_http_create(&cfg, &gw), CF_ERR_CONFIG);
    cfg.timeout_ms = 1000;
    cfg.secret_len = GATEWAY_SECRET_BYTES_MIN - 1;
    assert_int_equal(gateway_http_create(&cfg, &gw), CF_ERR_CONFIG);
    cfg.secret_len = GATEWAY_SECRET_BYTES_MAX + 1;
    assert_int_equal(gateway_http_create(&cfg, &gw), CF_ERR_CONFIG);
    char long_url[GATEWAY_URL_BYTES_MAX + 2];
    memset(long_url, 'a', sizeof(long_url) - 1);
    long_url[sizeof(long_url) - 1] = '\0';
    memcpy(long_url, "https://example.com/", 20);
    cfg.secret_len = SECRET_LEN;
    cfg.base_url = long_url;
    assert_int_equal(gateway_http_create(&cfg, &gw), CF_ERR_CONFIG);
    long_url[GATEWAY_URL_BYTES_MAX] = '\0';
    assert_int_equal(gateway_http_create(&cfg, &gw), CF_OK);
    gateway_destroy(gw);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_matches_independent_hmac),
        cmocka_unit_test(test_verify_round_trip),
        cmocka_unit_test(test_verify_wrong_secret_and_tampering),
        cmocka_unit_test(test_verify_tolerance),
        cmocka_unit_test(test_verify_malformed_header),
        cmocka_unit_test(test_verify_malformed_body),
        cmocka_unit_test(test_sign_verify_bounds),
        cmocka_unit_test(test_form_codec),
        cmocka_unit_test(test_form_overflow),
        cmocka_unit_test(test_request_check),
        cmocka_unit_test_setup_teardown(test_sandbox_cards, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_banks, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_idempotent, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_idempotent_race, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_challenge, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_processing_callbacks, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_timeout_card, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_queue_full, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_destroy_drops_pending, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_config, sandbox_setup, sandbox_teardown),
        cmocka_unit_test(test_http_charge_signed),
        cmocka_unit_test(test_http_payout_bank),
        cmocka_unit_test(test_http_declined),
        cmocka_unit_test(test_http_challenge),
        cmocka_unit_test(test_http_bad_answers),
        cmocka_unit_test(test_http_no_answer_is_timeout),
        cmocka_unit_test(test_http_logs_hold_no_instrument),
        cmocka_unit_test(test_http_config_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
