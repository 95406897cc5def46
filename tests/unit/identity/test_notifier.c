/*
 * test_notifier.c - unit tests for src/identity/notifier.c.
 *
 * Outbox, against SQLite (a fresh file per test) and, when COFFER_TEST_PG_URL is set, against
 * PostgreSQL (a fresh database, coffer_tn_<pid>_<n>, dropped after): messages listed by
 * recipient, newest first, nobody else's; the raw table holds neither recipient, subject nor
 * body in any column's bytes; a sealed row moved to another recipient reads as corrupt; the
 * bounds; a vault without key 1 is refused.
 *
 * HTTP provider, against a one-connection HTTP server run by a thread of this test on
 * 127.0.0.1: the POST, its JSON (escaped), its Coffer-Signature header verified with the
 * secret; a 500, a redirect and a closed port are errors; the URL rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "testdb.h" /* the throwaway database: SQLite, or PostgreSQL */

#include <arpa/inet.h>
#include <libpq-fe.h>
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

#include "core/hash.h"
#include "crypto/vault.h"
#include "identity/notifier.h"
#include "store/sql/sql.h"

#define TARGET_BYTES_MAX 1024

/* What the test server keeps of one request. */
#define REQUEST_BYTES_MAX 32768
/* How long the test server waits for the client, so a broken test ends instead of hanging. */
#define SERVER_WAIT_MS 10000

#define SECRET "s3cret-shared-with-the-provider"

struct fx {
    char target[TARGET_BYTES_MAX];
    char pg_name[TESTDB_NAME_BYTES];
    char dir[TESTDB_DIR_BYTES];
    struct sqldb *db;
    struct vault *vault;
    struct notifier *n;
};

/* Databases ------------------------------------------------------------------------------------ */

static bool target_create(struct fx *f)
{
    return testdb_create("tn", false, f->dir, f->pg_name, f->target, sizeof(f->target));
}

static void target_drop(struct fx *f) { testdb_drop(f->dir, f->pg_name); }

/* A vault with fresh keys 1 and 2 (so the active key is 2, not the index key). */
static struct vault *vault_two_keys(void)
{
    char *text = malloc(VAULT_KEYFILE_BYTES_MAX);
    struct vault *one = NULL, *two = NULL;
    bool ok = text != NULL && vault_keyfile_new(NULL, text, VAULT_KEYFILE_BYTES_MAX) == CF_OK &&
              vault_load(text, strlen(text), &one) == CF_OK &&
              vault_keyfile_new(one, text, VAULT_KEYFILE_BYTES_MAX) == CF_OK &&
              vault_load(text, strlen(text), &two) == CF_OK;
    vault_free(one);
    free(text);
    if (!ok) {
        vault_free(two);
        return NULL;
    }
    return two;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    if (!target_create(f) || sqldb_open(f->target, &f->db) != CF_OK ||
        sqldb_migrate(f->db, "outbox", &notifier_outbox_migration, 1) != CF_OK)
        return -1;
    f->vault = vault_two_keys();
    if (f->vault == NULL || vault_active_id(f->vault) != 2)
        return -1;
    return notifier_outbox_create(f->db, f->vault, &f->n) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    notifier_free(f->n);
    if (f->db != NULL)
        sqldb_close(f->db);
    vault_free(f->vault);
    target_drop(f);
    free(f);
    return 0;
}

/* Outbox --------------------------------------------------------------------------------------- */

static void send_ok(struct notifier *n, enum notifier_channel ch, const char *to,
                    const char *subject, const char *body)
{
    struct notifier_message m = {.channel = ch, .to = to, .subject = subject, .body = body};
    assert_int_equal(notifier_send(n, &m), CF_OK);
}

static void test_outbox_send_and_list(void **state)
{
    struct fx *f = *state;
    send_ok(f->n, NOTIFIER_SMS, "+15550001111", NULL, "code 111111");
    send_ok(f->n, NOTIFIER_EMAIL, "bob@example.com", "Your code", "code 222222");
    send_ok(f->n, NOTIFIER_SMS, "+15550001111", NULL, "code 333333");
    send_ok(f->n, NOTIFIER_EMAIL, "alice@example.com", "Welcome", "hello \"alice\"\nbye");
    send_ok(f->n, NOTIFIER_SMS, "+15550001111", "", "code 444444");

    struct notifier_outbox_item items[NOTIFIER_OUTBOX_PAGE_MAX];
    size_t n = 0;
    assert_int_equal(notifier_outbox_list(f->n, "+15550001111", 10, items, &n), CF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(items[0].body, "code 444444"); /* newest first */
    assert_string_equal(items[1].body, "code 333333");
    assert_string_equal(items[2].body, "code 111111");
    assert_true(items[0].id > items[1].id && items[1].id > items[2].id);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(items[i].to, "+15550001111");
        assert_int_equal(items[i].channel, NOTIFIER_SMS);
        assert_string_equal(items[i].subject, "");
        assert_true(items[i].at_us > 1600000000000000LL);
    }
    assert_int_equal(notifier_outbox_list(f->n, "+15550001111", 2, items, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_string_equal(items[1].body, "code 333333");

    assert_int_equal(notifier_outbox_list(f->n, "alice@example.com", 10, items, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_int_equal(items[0].channel, NOTIFIER_EMAIL);
    assert_string_equal(items[0].subject, "Welcome");
    assert_string_equal(items[0].body, "hello \"alice\"\nbye");
    assert_int_equal(notifier_outbox_list(f->n, "carol@example.com", 10, items, &n), CF_OK);
    assert_int_equal(n, 0);
    /* the address exactly as normalized: another spelling is another recipient */
    assert_int_equal(notifier_outbox_list(f->n, "Alice@example.com", 10, items, &n), CF_OK);
    assert_int_equal(n, 0);
    n = 99;
    assert_int_equal(notifier_outbox_list(f->n, "alice@example.com", 0, NULL, &n), CF_OK);
    assert_int_equal(n, 0);
}

static bool bytes_contain(const uint8_t *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle)) != NULL;
}

static void test_outbox_table_holds_no_plaintext(void **state)
{
    struct fx *f = *state;
    static const char *const secrets[] = {"+15550009999", "5550009999",   "dave@example.com",
                                          "dave@",        "Sign-in code", "code 987654",
                                          "987654"};
    send_ok(f->n, NOTIFIER_SMS, "+15550009999", NULL, "code 987654");
    send_ok(f->n, NOTIFIER_EMAIL, "dave@example.com", "Sign-in code", "code 987654");
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, "SELECT * FROM id_outbox", NULL, 0, &r), CF_OK);
    sql_rollback(tx);
    assert_int_equal(sql_rows_n(r), 2);
    assert_int_equal(sql_rows_cols(r), 5);
    for (size_t row = 0; row < sql_rows_n(r); row++) {
        for (size_t col = 0; col < sql_rows_cols(r); col++) {
            size_t len = 0;
            const uint8_t *b = sql_row_blob(r, row, col, &len);
            assert_non_null(b);
            for (size_t s = 0; s < sizeof(secrets) / sizeof(secrets[0]); s++)
                assert_false(bytes_contain(b, len, secrets[s]));
        }
    }
    sql_rows_free(r);
}

static void test_outbox_moved_row_is_corrupt(void **state)
{
    struct fx *f = *state;
    send_ok(f->n, NOTIFIER_SMS, "+15550001111", NULL, "code 111111");
    send_ok(f->n, NOTIFIER_SMS, "+15550002222", NULL, "code 222222");
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx,
                              "UPDATE id_outbox SET sealed ="
                              " (SELECT sealed FROM id_outbox WHERE id = 1) WHERE id = 2",
                              NULL, 0, NULL),
                     CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    struct notifier_outbox_item items[4];
    size_t n = 99;
    assert_int_equal(notifier_outbox_list(f->n, "+15550002222", 4, items, &n), CF_ERR_CORRUPT);
    assert_int_equal(n, 99);
    assert_int_equal(notifier_outbox_list(f->n, "+15550001111", 4, items, &n), CF_OK);
    assert_int_equal(n, 1);
}

static void test_outbox_bounds(void **state)
{
    struct fx *f = *state;
    char big[NOTIFIER_BODY_BYTES_MAX + 2];
    memset(big, 'x', sizeof(big));
    big[NOTIFIER_BODY_BYTES_MAX + 1] = '\0';
    struct notifier_message m = {.channel = NOTIFIER_EMAIL, .to = "", .body = "hi"};
    assert_int_equal(notifier_send(f->n, &m), CF_ERR_INVALID_FIELD);
    m.to = big + (sizeof(big) - 1 - (NOTIFIER_TO_BYTES_MAX + 1)); /* 321 bytes */
    assert_int_equal(notifier_send(f->n, &m), CF_ERR_INVALID_FIELD);
    m.to = big + (sizeof(big) - 1 - NOTIFIER_TO_BYTES_MAX); /* 320 bytes: fits */
    assert_int_equal(notifier_send(f->n, &m), CF_OK);
    m.to = "eve@example.com";
    m.body = big; /* 1025 bytes */
    assert_int_equal(notifier_send(f->n, &m), CF_ERR_INVALID_FIELD);
    m.body = big + 1; /* 1024 bytes: fits */
    assert_int_equal(notifier_send(f->n, &m), CF_OK);
    m.subject = big + (sizeof(big) - 1 - (NOTIFIER_SUBJECT_BYTES_MAX + 1));
    assert_int_equal(notifier_send(f->n, &m), CF_ERR_INVALID_FIELD);
    m.subject = big + (sizeof(big) - 1 - NOTIFIER_SUBJECT_BYTES_MAX);
    assert_int_equal(notifier_send(f->n, &m), CF_OK);
    struct notifier_outbox_item items[4];
    size_t n = 0;
    assert_int_equal(notifier_outbox_list(f->n, "eve@example.com", 4, items, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_int_equal(strlen(items[0].subject), NOTIFIER_SUBJECT_BYTES_MAX);
    assert_int_equal(strlen(items[0].body), NOTIFIER_BODY_BYTES_MAX);
    assert_int_equal(notifier_outbox_list(f->n, "", 4, items, &n), CF_ERR_INVALID_FIELD);
    assert_int_equal(notifier_outbox_list(f->n, big, 4, items, &n), CF_ERR_INVALID_FIELD);
}

static void test_outbox_needs_index_key(void **state)
{
    struct fx *f = *state;
    /* a key file holding only key 2 */
    char *text = malloc(VAULT_KEYFILE_BYTES_MAX);
    assert_non_null(text);
    struct vault *one = NULL, *only2 = NULL;
    assert_int_equal(vault_keyfile_new(NULL, text, VAULT_KEYFILE_BYTES_MAX), CF_OK);
    assert_int_equal(vault_load(text, strlen(text), &one), CF_OK);
    assert_int_equal(vault_keyfile_new(one, text, VAULT_KEYFILE_BYTES_MAX), CF_OK);
    char *line2 = strstr(text, "\n2:");
    assert_non_null(line2);
    assert_int_equal(vault_load(line2 + 1, strlen(line2 + 1), &only2), CF_OK);
    assert_false(vault_has_key(only2, 1));
    struct notifier *n = NULL;
    assert_int_equal(notifier_outbox_create(f->db, only2, &n), CF_ERR_CONFIG);
    assert_null(n);
    vault_free(only2);
    vault_free(one);
    free(text);
}

/* HTTP: a one-shot server ---------------------------------------------------------------------- */

struct server {
    int listen_fd;
    int port;
    int status;        /* answered */
    const char *extra; /* extra response headers */
    char request[REQUEST_BYTES_MAX];
    size_t request_len;
    int accepted;
    pthread_t thread;
};

/* The request's body length from its Content-Length header (-1 when there is none). */
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
    char answer[512];
    int n = snprintf(answer, sizeof(answer),
                     "HTTP/1.1 %d Test\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                     "Connection: close\r\n%s\r\nok",
                     s->status, s->extra != NULL ? s->extra : "");
    ssize_t w = write(fd, answer, (size_t)n);
    (void)w;
    close(fd);
    /* a second connection (a followed redirect) would be counted */
    if (poll(&p, 1, 300) == 1) {
        fd = accept(s->listen_fd, NULL, NULL);
        if (fd >= 0) {
            s->accepted++;
            close(fd);
        }
    }
    return NULL;
}

static void server_start(struct server *s, int status, const char *extra)
{
    memset(s, 0, sizeof(*s));
    s->status = status;
    s->extra = extra;
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

static struct notifier *http_notifier(int port, const char *path)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    struct notifier *n = NULL;
    assert_int_equal(notifier_http_create(url, SECRET, &n), CF_OK);
    return n;
}

/* Checks the request's Coffer-Signature against its body with SECRET; returns its t. */
static long long signature_verify(const char *req)
{
    const char *h = strcasestr(req, "\r\nCoffer-Signature: t=");
    assert_non_null(h);
    char *end = NULL;
    long long t = strtoll(h + 22, &end, 10);
    assert_memory_equal(end, ",v1=", 4);
    char got_hex[65];
    memcpy(got_hex, end + 4, 64);
    got_hex[64] = '\0';
    assert_memory_equal(end + 68, "\r\n", 2);
    const char *body = strstr(req, "\r\n\r\n") + 4;
    char t_text[32];
    int t_len = snprintf(t_text, sizeof(t_text), "%lld.", t);
    crypto_auth_hmacsha256_state st;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    char want_hex[65];
    crypto_auth_hmacsha256_init(&st, (const uint8_t *)SECRET, strlen(SECRET));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)t_text, (size_t)t_len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    hash_hex(mac, sizeof(mac), want_hex);
    assert_string_equal(got_hex, want_hex);
    return t;
}

static void test_http_send_signed(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 200, NULL);
    struct notifier *n = http_notifier(s.port, "/hooks/sms?x=1");
    struct notifier_message m = {.channel = NOTIFIER_SMS,
                                 .to = "+15550001111",
                                 .body = "code \"123456\"\n\\ caf\xc3\xa9\x01"};
    assert_int_equal(notifier_send(n, &m), CF_OK);
    server_stop(&s);
    notifier_free(n);
    assert_int_equal(s.accepted, 1);
    assert_memory_equal(s.request, "POST /hooks/sms?x=1 HTTP/1.1\r\n", 30);
    assert_non_null(strcasestr(s.request, "\r\nContent-Type: application/json\r\n"));
    long long t = signature_verify(s.request);
    assert_true(llabs(t - (long long)time(NULL)) <= 5);
    const char *body = strstr(s.request, "\r\n\r\n") + 4;
    assert_int_equal(content_length(s.request), (long)strlen(body));
    assert_memory_equal(
        body,
        "{\"channel\":\"sms\",\"to\":\"+15550001111\",\"subject\":\"\","
        "\"body\":\"code \\\"123456\\\"\\n\\\\ caf\xc3\xa9\\u0001\",\"id\":\"",
        strlen("{\"channel\":\"sms\",\"to\":\"+15550001111\",\"subject\":\"\","
               "\"body\":\"code \\\"123456\\\"\\n\\\\ caf\xc3\xa9\\u0001\",\"id\":\""));
    const char *id = strstr(body, "\"id\":\"") + 6;
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
    assert_string_equal(id + 32, "\"}");
}

static void test_http_email_fields(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 204, NULL);
    struct notifier *n = http_notifier(s.port, "/");
    struct notifier_message m = {.channel = NOTIFIER_EMAIL,
                                 .to = "alice@example.com",
                                 .subject = "Your \"code\"",
                                 .body = "654321"};
    assert_int_equal(notifier_send(n, &m), CF_OK);
    server_stop(&s);
    notifier_free(n);
    signature_verify(s.request);
    assert_non_null(strstr(s.request, "{\"channel\":\"email\",\"to\":\"alice@example.com\","
                                      "\"subject\":\"Your \\\"code\\\"\",\"body\":\"654321\","));
}

static void test_http_500_is_error(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 500, NULL);
    struct notifier *n = http_notifier(s.port, "/send");
    struct notifier_message m = {.channel = NOTIFIER_SMS, .to = "+15550001111", .body = "x"};
    assert_int_equal(notifier_send(n, &m), CF_ERR_IO);
    server_stop(&s);
    notifier_free(n);
    assert_int_equal(s.accepted, 1);
}

static void test_http_redirect_not_followed(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 307, "Location: /elsewhere\r\n");
    struct notifier *n = http_notifier(s.port, "/send");
    struct notifier_message m = {.channel = NOTIFIER_SMS, .to = "+15550001111", .body = "x"};
    assert_int_equal(notifier_send(n, &m), CF_ERR_IO);
    server_stop(&s);
    notifier_free(n);
    assert_int_equal(s.accepted, 1);
}

static void test_http_closed_port_is_error(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* bound, never listened: nothing answers there */
    struct notifier *n = http_notifier(ntohs(a.sin_port), "/");
    struct notifier_message m = {.channel = NOTIFIER_SMS, .to = "+15550001111", .body = "x"};
    assert_int_equal(notifier_send(n, &m), CF_ERR_IO);
    /* and an HTTP notifier has no outbox */
    struct notifier_outbox_item items[1];
    size_t got = 0;
    assert_int_equal(notifier_outbox_list(n, "+15550001111", 1, items, &got), CF_ERR_NOT_FOUND);
    notifier_free(n);
}

static void test_url_rules(void **state)
{
    (void)state;
    static const char *const good[] = {
        "https://sms.example.com/v1/send",
        "https://EXAMPLE.com",
        "HTTPS://example.com:8443/x",
        "https://192.0.2.10/send",
        "https://[2001:db8::1]:443/send",
        "http://127.0.0.1:8080/hook",
        "http://127.1.2.3/hook",
        "http://localhost:9000",
        "http://LOCALHOST/x",
        "http://[::1]:8080/hook",
        "https://example.com/a?b=c#frag",
    };
    static const char *const bad[] = {
        "",
        "example.com/send",
        "ftp://example.com/send",
        "file:///etc/passwd",
        "http://example.com/send",
        "http://10.0.0.1/send",
        "http://127.0.0.1.example.com/x",
        "http://localhost.example.com/x",
        "http://localhost@example.com/x",
        "https://user:pass@example.com/x",
        "http://[::2]/x",
        "http://[::1/x",
        "http://0x7f000001/x",
        "http://127.1/x",
        "https:///nohost",
        "https://example.com:0/x",
        "https://example.com:65536/x",
        "https://example.com:/x",
        "https://example.com:80:90/x",
        "https://exa mple.com/x",
        "https://example.com/a b",
        "https://example.com/\x01",
        "https://exa\\mple.com/x",
        "gopher://example.com",
    };
    struct notifier *n = NULL;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        n = NULL;
        if (notifier_http_create(good[i], SECRET, &n) != CF_OK)
            fail_msg("refused %s", good[i]);
        notifier_free(n);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = NULL;
        if (notifier_http_create(bad[i], SECRET, &n) != CF_ERR_CONFIG)
            fail_msg("accepted %s", bad[i]);
        assert_null(n);
    }
    assert_int_equal(notifier_http_create("https://example.com", "", &n), CF_ERR_CONFIG);
    char long_text[NOTIFIER_URL_BYTES_MAX + 2];
    memset(long_text, 's', sizeof(long_text) - 1);
    long_text[NOTIFIER_SECRET_BYTES_MAX + 1] = '\0';
    assert_int_equal(notifier_http_create("https://example.com", long_text, &n), CF_ERR_CONFIG);
    long_text[NOTIFIER_SECRET_BYTES_MAX] = '\0';
    assert_int_equal(notifier_http_create("https://example.com", long_text, &n), CF_OK);
    notifier_free(n);
    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    memcpy(long_text, "https://example.com/", 20);
    assert_int_equal(notifier_http_create(long_text, SECRET, &n), CF_ERR_CONFIG);
    long_text[NOTIFIER_URL_BYTES_MAX] = '\0';
    assert_int_equal(notifier_http_create(long_text, SECRET, &n), CF_OK);
    notifier_free(n);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest outbox[] = {
        FX(test_outbox_send_and_list),        FX(test_outbox_table_holds_no_plaintext),
        FX(test_outbox_moved_row_is_corrupt), FX(test_outbox_bounds),
        FX(test_outbox_needs_index_key),
    };
    const struct CMUnitTest http[] = {
        cmocka_unit_test(test_http_send_signed),
        cmocka_unit_test(test_http_email_fields),
        cmocka_unit_test(test_http_500_is_error),
        cmocka_unit_test(test_http_redirect_not_followed),
        cmocka_unit_test(test_http_closed_port_is_error),
        cmocka_unit_test(test_url_rules),
    };
    int failed = cmocka_run_group_tests_name("outbox_sqlite", outbox, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("outbox_postgres", outbox, NULL, NULL);
    } else {
        printf("outbox_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    failed += cmocka_run_group_tests_name("http", http, NULL, NULL);
    return failed;
}
