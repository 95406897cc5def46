/*
 * notifier.c - the sealed development outbox and the signed HTTP provider; see notifier.h.
 *
 * Outbox rows: recipient_blind is vault_blind(vault, NOTIFIER_OUTBOX_INDEX_KEY_ID, "outbox",
 * to); sealed is vault_seal(aad "outbox") of the record
 *   u8 channel | u16 len + to | u16 len + subject | u16 len + body   (lengths big endian),
 * so the table holds no recipient or text in the clear. The channel column repeats the sealed
 * channel for operators; reading back checks that both agree and that the sealed recipient is
 * the one asked for, so a row moved between recipients reads as corrupt.
 *
 * HTTP: the JSON body is written by a small escaper here (only src/api may use jansson), signed
 * with HMAC-SHA-256 over "<t>." + body, and POSTed with one curl easy handle per message;
 * curl_global_init runs once, on the first notifier_http_create.
 */
#include "identity/notifier.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/url.h"

#define OUTBOX_AAD "outbox"
#define OUTBOX_BLIND_DOMAIN "outbox"

/* A sealed outbox record at its largest. */
#define RECORD_BYTES_MAX                                                                           \
    (1 + 2 + NOTIFIER_TO_BYTES_MAX + 2 + NOTIFIER_SUBJECT_BYTES_MAX + 2 + NOTIFIER_BODY_BYTES_MAX)
#define SEALED_BYTES_MAX (RECORD_BYTES_MAX + VAULT_OVERHEAD_BYTES)
_Static_assert(NOTIFIER_BODY_BYTES_MAX <= UINT16_MAX && NOTIFIER_TO_BYTES_MAX <= UINT16_MAX &&
                   NOTIFIER_SUBJECT_BYTES_MAX <= UINT16_MAX,
               "record lengths are 16-bit");

/* Random bytes of a message id ("id" in the JSON body), hex-encoded for the provider. */
#define MESSAGE_ID_BYTES 16

/* The JSON body at its largest: every text byte escaped as \u00XX (6 bytes), plus the keys,
 * quotes, the channel name and the id. */
#define JSON_BYTES_MAX                                                                             \
    (6 * (NOTIFIER_TO_BYTES_MAX + NOTIFIER_SUBJECT_BYTES_MAX + NOTIFIER_BODY_BYTES_MAX) + 256)

/* "Coffer-Signature: t=<up to 20 digits>,v1=<64 hex>" with its NUL, rounded up. */
#define SIGNATURE_HEADER_BYTES 128

/* A host name or address taken out of a URL. */

enum notifier_kind { NOTIFIER_KIND_OUTBOX, NOTIFIER_KIND_HTTP };

struct notifier {
    enum notifier_kind kind;
    struct sqldb *db;                          /* outbox */
    const struct vault *vault;                 /* outbox */
    char url[NOTIFIER_URL_BYTES_MAX + 1];      /* http */
    uint8_t secret[NOTIFIER_SECRET_BYTES_MAX]; /* http; wiped by notifier_free */
    size_t secret_len;
};

const struct sql_migration notifier_outbox_migration = {
    .version = 1,
    .sqlite = "CREATE TABLE id_outbox ("
              " id INTEGER PRIMARY KEY AUTOINCREMENT, recipient_blind BLOB NOT NULL,"
              " at_us INTEGER NOT NULL, channel INTEGER NOT NULL, sealed BLOB NOT NULL);"
              "CREATE INDEX id_outbox_recipient ON id_outbox (recipient_blind, id);",
    .postgres = "CREATE TABLE id_outbox ("
                " id BIGSERIAL PRIMARY KEY, recipient_blind BYTEA NOT NULL,"
                " at_us BIGINT NOT NULL, channel INTEGER NOT NULL, sealed BYTEA NOT NULL);"
                "CREATE INDEX id_outbox_recipient ON id_outbox (recipient_blind, id);",
};

void notifier_free(struct notifier *n)
{
    if (n == NULL)
        return;
    hash_wipe(n->secret, sizeof(n->secret));
    free(n);
}

/* Messages ------------------------------------------------------------------------------------- */

/* A message's texts with their lengths, checked against their bounds. */
struct texts {
    const char *to, *subject, *body;
    size_t to_len, subject_len, body_len;
};

static enum cf_err message_check(const struct notifier_message *m, struct texts *t)
{
    CF_ASSERT(m != NULL && m->to != NULL && m->body != NULL);
    CF_ASSERT(m->channel == NOTIFIER_SMS || m->channel == NOTIFIER_EMAIL);
    t->to = m->to;
    t->subject = m->subject != NULL ? m->subject : "";
    t->body = m->body;
    t->to_len = strnlen(t->to, NOTIFIER_TO_BYTES_MAX + 1);
    t->subject_len = strnlen(t->subject, NOTIFIER_SUBJECT_BYTES_MAX + 1);
    t->body_len = strnlen(t->body, NOTIFIER_BODY_BYTES_MAX + 1);
    if (t->to_len == 0 || t->to_len > NOTIFIER_TO_BYTES_MAX ||
        t->subject_len > NOTIFIER_SUBJECT_BYTES_MAX || t->body_len > NOTIFIER_BODY_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    return CF_OK;
}

/* Outbox: the sealed record ---------------------------------------------------------------------
 */

static size_t record_put(uint8_t *b, size_t at, const char *s, size_t n)
{
    b[at] = (uint8_t)(n >> 8);
    b[at + 1] = (uint8_t)n;
    memcpy(b + at + 2, s, n);
    return at + 2 + n;
}

static size_t record_encode(enum notifier_channel channel, const struct texts *t,
                            uint8_t b[RECORD_BYTES_MAX])
{
    size_t at = 0;
    b[at++] = (uint8_t)channel;
    at = record_put(b, at, t->to, t->to_len);
    at = record_put(b, at, t->subject, t->subject_len);
    at = record_put(b, at, t->body, t->body_len);
    CF_ASSERT(at <= RECORD_BYTES_MAX);
    return at;
}

/* Reads one u16-length text at *at into out (out_bytes with its NUL); false when it overruns
 * the record or out. */
static bool record_take(const uint8_t *b, size_t len, size_t *at, char *out, size_t out_bytes)
{
    if (len - *at < 2)
        return false;
    size_t n = (size_t)b[*at] << 8 | b[*at + 1];
    *at += 2;
    if (n > len - *at || n >= out_bytes || memchr(b + *at, '\0', n) != NULL)
        return false;
    memcpy(out, b + *at, n);
    out[n] = '\0';
    *at += n;
    return true;
}

static bool record_decode(const uint8_t *b, size_t len, struct notifier_outbox_item *item)
{
    if (len < 1 || (b[0] != NOTIFIER_SMS && b[0] != NOTIFIER_EMAIL))
        return false;
    item->channel = (enum notifier_channel)b[0];
    size_t at = 1;
    return record_take(b, len, &at, item->to, sizeof(item->to)) &&
           record_take(b, len, &at, item->subject, sizeof(item->subject)) &&
           record_take(b, len, &at, item->body, sizeof(item->body)) && at == len;
}

/* Outbox --------------------------------------------------------------------------------------- */

enum cf_err notifier_outbox_create(struct sqldb *db, const struct vault *vault,
                                   struct notifier **out)
{
    CF_ASSERT(db != NULL && vault != NULL && out != NULL);
    if (!vault_has_key(vault, NOTIFIER_OUTBOX_INDEX_KEY_ID))
        return CF_ERR_CONFIG;
    struct notifier *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return CF_ERR_NOMEM;
    n->kind = NOTIFIER_KIND_OUTBOX;
    n->db = db;
    n->vault = vault;
    *out = n;
    return CF_OK;
}

static enum cf_err outbox_insert(struct sqldb *db, const uint8_t blind[VAULT_BLIND_BYTES],
                                 enum notifier_channel channel, const uint8_t *sealed,
                                 size_t sealed_len)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value p[4] = {SQL_B(blind, VAULT_BLIND_BYTES),
                             SQL_I(cf_clock_now_us(&cf_clock_real)), SQL_I(channel),
                             SQL_B(sealed, sealed_len)};
    err = sql_exec(tx,
                   "INSERT INTO id_outbox (recipient_blind, at_us, channel, sealed)"
                   " VALUES ($1, $2, $3, $4)",
                   p, 4, NULL);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

static enum cf_err outbox_send(struct notifier *n, enum notifier_channel channel,
                               const struct texts *t)
{
    CF_ASSERT(n->kind == NOTIFIER_KIND_OUTBOX);
    uint8_t record[RECORD_BYTES_MAX];
    uint8_t sealed[SEALED_BYTES_MAX];
    uint8_t blind[VAULT_BLIND_BYTES];
    size_t record_len = record_encode(channel, t, record);
    size_t sealed_len = 0;
    enum cf_err err = vault_seal(n->vault, record, record_len, OUTBOX_AAD, strlen(OUTBOX_AAD),
                                 sealed, sizeof(sealed), &sealed_len);
    hash_wipe(record, sizeof(record));
    if (err == CF_OK)
        err = vault_blind(n->vault, NOTIFIER_OUTBOX_INDEX_KEY_ID, OUTBOX_BLIND_DOMAIN, t->to,
                          t->to_len, blind);
    if (err == CF_OK) {
        CF_ASSERT(sealed_len == record_len + VAULT_OVERHEAD_BYTES);
        err = outbox_insert(n->db, blind, channel, sealed, sealed_len);
    }
    if (err != CF_OK)
        cf_log(LOG_WARN, "notifier: outbox write failed", "error", cf_err_code(err), NULL);
    return err;
}

/* Row i of r (id, at_us, channel, sealed) opened into item; CF_ERR_CORRUPT when it does not
 * open, decode, or name `to` and its channel column. */
static enum cf_err outbox_row_open(const struct notifier *n, const struct sql_rows *r, size_t i,
                                   const char *to, struct notifier_outbox_item *item)
{
    size_t sealed_len = 0;
    const uint8_t *sealed = sql_row_blob(r, i, 3, &sealed_len);
    if (sealed == NULL || sealed_len > SEALED_BYTES_MAX)
        return CF_ERR_CORRUPT;
    uint8_t record[RECORD_BYTES_MAX];
    size_t record_len = 0;
    enum cf_err err = vault_open(n->vault, sealed, sealed_len, OUTBOX_AAD, strlen(OUTBOX_AAD),
                                 record, sizeof(record), &record_len);
    if (err == CF_OK && (!record_decode(record, record_len, item) ||
                         sql_row_int(r, i, 2) != (int64_t)item->channel ||
                         strcmp(item->to, to) != 0 || sql_row_int(r, i, 0) <= 0))
        err = CF_ERR_CORRUPT;
    hash_wipe(record, sizeof(record));
    if (err != CF_OK)
        return err;
    item->id = (uint64_t)sql_row_int(r, i, 0);
    item->at_us = sql_row_int(r, i, 1);
    return CF_OK;
}

/* Opens every row of r into items (rows_n of them). */
static enum cf_err outbox_rows_open(const struct notifier *n, const struct sql_rows *r,
                                    const char *to, struct notifier_outbox_item *items)
{
    enum cf_err err = CF_OK;
    for (size_t i = 0; err == CF_OK && i < sql_rows_n(r); i++)
        err = outbox_row_open(n, r, i, to, &items[i]);
    return err;
}

static enum cf_err outbox_query(struct notifier *n, const uint8_t blind[VAULT_BLIND_BYTES],
                                size_t limit, struct sql_rows **out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(n->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value p[2] = {SQL_B(blind, VAULT_BLIND_BYTES), SQL_I(limit)};
    err = sql_query(tx,
                    "SELECT id, at_us, channel, sealed FROM id_outbox"
                    " WHERE recipient_blind = $1 ORDER BY id DESC LIMIT $2",
                    p, 2, out);
    sql_rollback(tx); /* read only */
    return err;
}

enum cf_err notifier_outbox_list(struct notifier *n, const char *to, size_t limit,
                                 struct notifier_outbox_item *out, size_t *n_out)
{
    CF_ASSERT(n != NULL && to != NULL && n_out != NULL);
    CF_ASSERT(limit <= NOTIFIER_OUTBOX_PAGE_MAX && (out != NULL || limit == 0));
    if (n->kind != NOTIFIER_KIND_OUTBOX)
        return CF_ERR_NOT_FOUND;
    size_t to_len = strnlen(to, NOTIFIER_TO_BYTES_MAX + 1);
    if (to_len == 0 || to_len > NOTIFIER_TO_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    uint8_t blind[VAULT_BLIND_BYTES];
    enum cf_err err =
        vault_blind(n->vault, NOTIFIER_OUTBOX_INDEX_KEY_ID, OUTBOX_BLIND_DOMAIN, to, to_len, blind);
    struct sql_rows *r = NULL;
    if (err == CF_OK && limit > 0)
        err = outbox_query(n, blind, limit, &r);
    size_t rows_n = r != NULL ? sql_rows_n(r) : 0;
    if (err == CF_OK && (rows_n > limit || (r != NULL && sql_rows_cols(r) != 4)))
        err = CF_ERR_STORAGE;
    /* opened into a scratch copy first, so out stays as it was on failure */
    struct notifier_outbox_item *items = NULL;
    if (err == CF_OK && rows_n > 0 && (items = malloc(rows_n * sizeof(*items))) == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK && rows_n > 0)
        err = outbox_rows_open(n, r, to, items);
    if (err == CF_OK && rows_n > 0)
        memcpy(out, items, rows_n * sizeof(*items));
    if (items != NULL) {
        hash_wipe(items, rows_n * sizeof(*items));
        free(items);
    }
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = rows_n;
    return err;
}

enum cf_err notifier_outbox_erase(struct notifier *n, struct sqltx *tx, const char *to)
{
    CF_ASSERT(n != NULL && tx != NULL && to != NULL);
    if (n->kind != NOTIFIER_KIND_OUTBOX)
        return CF_OK; /* a provider keeps nothing here */
    size_t to_len = strnlen(to, NOTIFIER_TO_BYTES_MAX + 1);
    if (to_len == 0 || to_len > NOTIFIER_TO_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    uint8_t blind[VAULT_BLIND_BYTES];
    enum cf_err err =
        vault_blind(n->vault, NOTIFIER_OUTBOX_INDEX_KEY_ID, OUTBOX_BLIND_DOMAIN, to, to_len, blind);
    struct sql_value p[] = {SQL_B(blind, sizeof(blind))};
    if (err == CF_OK)
        err = sql_exec(tx, "DELETE FROM id_outbox WHERE recipient_blind = $1", p, 1, NULL);
    return err;
}

/* HTTP: curl ----------------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT; /* set once, by curl_start */

static void curl_start(void)
{
    curl_init_rc = sodium_init() < 0 ? CURLE_FAILED_INIT : curl_global_init(CURL_GLOBAL_DEFAULT);
}

enum cf_err notifier_http_create(const char *url, const char *secret, struct notifier **out)
{
    CF_ASSERT(url != NULL && secret != NULL && out != NULL);
    size_t secret_len = strnlen(secret, NOTIFIER_SECRET_BYTES_MAX + 1);
    if (!url_is_allowed(url, NOTIFIER_URL_BYTES_MAX, false) || secret_len == 0 || secret_len > NOTIFIER_SECRET_BYTES_MAX)
        return CF_ERR_CONFIG;
    CF_ASSERT(pthread_once(&curl_once, curl_start) == 0);
    if (curl_init_rc != CURLE_OK)
        return CF_ERR_INTERNAL;
    struct notifier *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return CF_ERR_NOMEM;
    n->kind = NOTIFIER_KIND_HTTP;
    memcpy(n->url, url, strlen(url) + 1);
    memcpy(n->secret, secret, secret_len);
    n->secret_len = secret_len;
    *out = n;
    return CF_OK;
}

/* A bounded JSON text under construction. */
struct json {
    char buf[JSON_BYTES_MAX];
    size_t len;
};

static void json_raw(struct json *j, const char *s)
{
    size_t n = strlen(s);
    CF_ASSERT(j->len + n < sizeof(j->buf));
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

/* The letter of c's two-byte JSON escape (\" \\ \n \r \t), or 0 when it has none. */
static char json_short_escape(unsigned char c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    default:
        return 0;
    }
}

/* s as a JSON string: quotes, backslashes and control bytes escaped (\n, \r, \t or \u00XX);
 * other bytes (UTF-8) kept. */
static void json_string(struct json *j, const char *s, size_t n)
{
    CF_ASSERT(j->len + 6 * n + 2 < sizeof(j->buf));
    j->buf[j->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char short_form = json_short_escape(c);
        if (short_form != 0) {
            j->buf[j->len++] = '\\';
            j->buf[j->len++] = short_form;
        } else if (c < 0x20 || c == 0x7f) {
            j->len += (size_t)snprintf(j->buf + j->len, 7, "\\u%04x", c);
        } else {
            j->buf[j->len++] = (char)c;
        }
    }
    j->buf[j->len++] = '"';
    j->buf[j->len] = '\0';
}

/* {"channel","to","subject","body","id"} */
static void json_message(struct json *j, enum notifier_channel channel, const struct texts *t)
{
    uint8_t id[MESSAGE_ID_BYTES];
    char id_hex[MESSAGE_ID_BYTES * 2 + 1];
    hash_random(id, sizeof(id));
    hash_hex(id, sizeof(id), id_hex);
    j->len = 0;
    json_raw(j, channel == NOTIFIER_SMS ? "{\"channel\":\"sms\",\"to\":"
                                        : "{\"channel\":\"email\",\"to\":");
    json_string(j, t->to, t->to_len);
    json_raw(j, ",\"subject\":");
    json_string(j, t->subject, t->subject_len);
    json_raw(j, ",\"body\":");
    json_string(j, t->body, t->body_len);
    json_raw(j, ",\"id\":");
    json_string(j, id_hex, strlen(id_hex));
    json_raw(j, "}");
    CF_ASSERT(j->len < sizeof(j->buf) && j->buf[j->len] == '\0');
}

/* "Coffer-Signature: t=<t_s>,v1=<hex HMAC-SHA-256(secret, "<t_s>." + body)>" into out. */
static void signature_header(const struct notifier *n, int64_t t_s, const char *body,
                             size_t body_len, char out[SIGNATURE_HEADER_BYTES])
{
    char t[24];
    int t_len = snprintf(t, sizeof(t), "%lld", (long long)t_s);
    CF_ASSERT(t_len > 0 && (size_t)t_len < sizeof(t));
    crypto_auth_hmacsha256_state st;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    char mac_hex[crypto_auth_hmacsha256_BYTES * 2 + 1];
    CF_ASSERT(crypto_auth_hmacsha256_init(&st, n->secret, n->secret_len) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_update(&st, (const uint8_t *)t, (size_t)t_len) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_update(&st, (const uint8_t *)body, body_len) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_final(&st, mac) == 0);
    hash_hex(mac, sizeof(mac), mac_hex);
    int w = snprintf(out, SIGNATURE_HEADER_BYTES, "Coffer-Signature: t=%s,v1=%s", t, mac_hex);
    CF_ASSERT(w > 0 && w < SIGNATURE_HEADER_BYTES);
    hash_wipe(&st, sizeof(st));
}

/* The provider's answer is not read. */
static size_t discard(char *ptr, size_t size, size_t nmemb, void *user)
{
    (void)ptr;
    (void)user;
    return size * nmemb;
}

static CURLcode curl_options(CURL *c, const struct notifier *n, const struct json *j,
                             struct curl_slist *headers)
{
    CURLcode rc = curl_easy_setopt(c, CURLOPT_URL, n->url);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)NOTIFIER_HTTP_TIMEOUT_MS);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)j->len);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->buf);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    return rc;
}

/* POSTs j; *status_out gets the HTTP status (0 when no answer came). */
static CURLcode http_post(const struct notifier *n, const struct json *j, const char *signature,
                          long *status_out)
{
    CURL *c = curl_easy_init();
    if (c == NULL)
        return CURLE_OUT_OF_MEMORY;
    struct curl_slist *headers = NULL, *next = NULL;
    static const char *const fixed[] = {"Content-Type: application/json", "Expect:"};
    CURLcode rc = CURLE_OK;
    for (size_t i = 0; i < 3 && rc == CURLE_OK; i++) {
        next = curl_slist_append(headers, i < 2 ? fixed[i] : signature);
        if (next == NULL)
            rc = CURLE_OUT_OF_MEMORY;
        else
            headers = next;
    }
    if (rc == CURLE_OK)
        rc = curl_options(c, n, j, headers);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK)
        rc = curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    *status_out = status;
    return rc;
}

static enum cf_err http_send(struct notifier *n, enum notifier_channel channel,
                             const struct texts *t)
{
    CF_ASSERT(n->kind == NOTIFIER_KIND_HTTP && n->secret_len > 0);
    struct json *j = malloc(sizeof(*j));
    if (j == NULL)
        return CF_ERR_NOMEM;
    json_message(j, channel, t);
    char signature[SIGNATURE_HEADER_BYTES];
    signature_header(n, cf_clock_now_us(&cf_clock_real) / 1000000, j->buf, j->len, signature);
    long status = 0;
    CURLcode rc = http_post(n, j, signature, &status);
    hash_wipe(j, sizeof(*j));
    free(j);
    if (rc == CURLE_OK && status >= 200 && status <= 299)
        return CF_OK;
    char status_text[24];
    snprintf(status_text, sizeof(status_text), "%ld", status);
    cf_log(LOG_WARN, "notifier: provider did not take the message", "status", status_text, "curl",
           rc == CURLE_OK ? "ok" : curl_easy_strerror(rc), NULL);
    return rc == CURLE_OUT_OF_MEMORY ? CF_ERR_NOMEM : CF_ERR_IO;
}

enum cf_err notifier_send(struct notifier *n, const struct notifier_message *m)
{
    CF_ASSERT(n != NULL && m != NULL);
    struct texts t;
    enum cf_err err = message_check(m, &t);
    if (err != CF_OK)
        return err;
    if (n->kind == NOTIFIER_KIND_OUTBOX)
        return outbox_send(n, m->channel, &t);
    return http_send(n, m->channel, &t);
}
