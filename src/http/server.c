/*
 * server.c - the libmicrohttpd side of http.h: connections, bodies, suspend/resume, metrics.
 *
 * Threading: MHD runs a pool of `threads` event-loop threads (epoll). Handlers run on those
 * threads; http_request_resume may be called from any thread (the ledger writer calls it).
 * Pitfalls of libmicrohttpd 0.9.75 handled here: we never queue a response on the first call
 * for a request (that turns keep-alive off), and the owner must resume every suspended
 * connection before http_server_stop (MHD aborts otherwise).
 *
 * TLS is MHD's own (GnuTLS): the PEM texts are handed over as MHD_OPTION_HTTPS_MEM_CERT/KEY,
 * which MHD parses while the daemon starts and does not read afterwards, so the caller may
 * wipe the key as soon as http_server_start returns; srv->cfg keeps no pointer to it.
 */
#include <microhttpd.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/assert.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "http/http.h"

/* TLS 1.2 and 1.3 only, GnuTLS's NORMAL cipher suites otherwise. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/* Browsers remember for a year to come back over HTTPS only, subdomains included. */
#define HSTS_VALUE "max-age=31536000; includeSubDomains"
/* Options after MHD_OPTION_ARRAY for TLS: cert, key, priorities and the END marker. */
#define TLS_OPTIONS_N 4

#define LATENCY_BUCKETS 12
static const int64_t latency_us_bounds[LATENCY_BUCKETS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 1000000};

struct route_metrics {
    atomic_uint_fast64_t by_class[6]; /* index status/100: 1xx..5xx */
    atomic_uint_fast64_t latency_bucket[LATENCY_BUCKETS];
    atomic_uint_fast64_t latency_us_sum;
};

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_server_config cfg; /* tls_*_pem cleared once the daemon has started */
    bool tls;                      /* serving HTTPS: every response carries HSTS */
    unsigned port;
    atomic_bool stopping; /* http_server_quiesce: new requests answer 503 shutting_down */
    struct route_metrics metrics[HTTP_ROUTES_MAX + 1]; /* last: unmatched */
};

enum req_state { REQ_NEW, REQ_SUSPENDED, REQ_RESUMED, REQ_ANSWERED };

struct conn_req {
    struct http_request req;
    struct http_server *srv;
    _Atomic int state;     /* enum req_state; the writer thread sets RESUMED */
    enum cf_err early_err; /* an error known before the handler runs */
    char *body;
    size_t body_len, body_cap, body_max;
    int status;
};

static size_t arena_bytes_for(size_t body_max)
{
    return body_max * 8 + (1u << 20); /* body, its decoded form and the response */
}

static void request_id_set(struct conn_req *cr, struct MHD_Connection *conn)
{
    const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t len = given != NULL ? strlen(given) : 0;
    bool ok = len > 0 && len <= HTTP_REQUEST_ID_BYTES_MAX;
    for (size_t i = 0; ok && i < len; i++) {
        char c = given[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '_';
    }
    if (ok) {
        memcpy(cr->req.request_id, given, len + 1);
        return;
    }
    uint8_t rnd[8];
    hash_random(rnd, sizeof(rnd));
    memcpy(cr->req.request_id, "req_", 4);
    hash_hex(rnd, sizeof(rnd), cr->req.request_id + 4);
}

/* Whether the body's Content-Type is the one the route takes (parameters after ';' allowed). */
static bool content_type_ok(struct MHD_Connection *conn, const struct http_route *route)
{
    const char *want = route != NULL && route->body_kind == HTTP_BODY_FORM
                           ? "application/x-www-form-urlencoded"
                           : "application/json";
    size_t n = strlen(want);
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    return ct != NULL && strncasecmp(ct, want, n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* The peer's address as text, for audit records and throttling. */
/* The client's country as the configured proxy header says it: two capital letters, else "". */
static void client_country_set(struct conn_req *cr, struct MHD_Connection *conn)
{
    const char *name = cr->srv->cfg.country_header;
    const char *v = name != NULL ? MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name) : NULL;
    cr->req.client_country[0] = '\0';
    if (v != NULL && v[0] >= 'A' && v[0] <= 'Z' && v[1] >= 'A' && v[1] <= 'Z' && v[2] == '\0') {
        memcpy(cr->req.client_country, v, 2);
        cr->req.client_country[2] = '\0';
    }
}

static void client_ip_set(struct conn_req *cr, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                  cr->req.client_ip, sizeof(cr->req.client_ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                  cr->req.client_ip, sizeof(cr->req.client_ip));
}

static struct conn_req *conn_req_create(struct http_server *srv, struct MHD_Connection *conn,
                                        const char *url, const char *method)
{
    struct conn_req *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        return NULL;
    cr->srv = srv;
    cr->req.app = srv->cfg.app;
    cr->req.handle = conn;
    cr->req.started_us = cf_monotonic_us();
    cr->req.route_index = srv->cfg.routes_n;
    request_id_set(cr, conn);
    client_ip_set(cr, conn);
    bool path_known = false;
    enum http_method m = strcmp(method, "GET") == 0 ? HTTP_GET : HTTP_POST;
    bool method_known = strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0;
    const struct http_route *routes = srv->cfg.routes;
    size_t max = HTTP_BODY_BYTES_MAX;
    cr->req.arena = arena_create(arena_bytes_for(HTTP_BATCH_BODY_BYTES_MAX));
    if (cr->req.arena == NULL) {
        free(cr);
        return NULL;
    }
    cr->req.path = arena_strndup(cr->req.arena, url, strlen(url));
    int idx = -1;
    if (strlen(url) > HTTP_PATH_BYTES_MAX)
        cr->early_err = CF_ERR_NOT_FOUND;
    else if (method_known)
        idx = http_route_match(routes, srv->cfg.routes_n, m, url, &cr->req, &path_known);
    else
        http_route_match(routes, srv->cfg.routes_n, HTTP_GET, url, NULL, &path_known);
    if (cr->early_err == CF_OK && idx < 0)
        cr->early_err = path_known ? CF_ERR_METHOD_NOT_ALLOWED : CF_ERR_NOT_FOUND;
    if (idx >= 0) {
        cr->req.method = m;
        cr->req.route = &routes[idx];
        cr->req.route_index = (size_t)idx;
        max = routes[idx].body_bytes_max;
    }
    cr->body_max = max;
    return cr;
}

static void body_append(struct conn_req *cr, const char *data, size_t n)
{
    if (cr->early_err != CF_OK)
        return;
    if (cr->body_len + n > cr->body_max) {
        cr->early_err = CF_ERR_PAYLOAD_TOO_LARGE;
        return;
    }
    if (cr->body_len + n + 1 > cr->body_cap) {
        size_t cap = cr->body_cap == 0 ? 4096 : cr->body_cap * 2;
        while (cap < cr->body_len + n + 1)
            cap *= 2;
        char *p = arena_alloc(cr->req.arena, cap);
        if (p == NULL) {
            cr->early_err = CF_ERR_PAYLOAD_TOO_LARGE;
            return;
        }
        if (cr->body_len > 0)
            memcpy(p, cr->body, cr->body_len);
        cr->body = p;
        cr->body_cap = cap;
    }
    memcpy(cr->body + cr->body_len, data, n);
    cr->body_len += n;
    cr->body[cr->body_len] = '\0';
}

static enum MHD_Result queue(struct conn_req *cr, struct MHD_Connection *conn,
                             const struct http_response *r)
{
    CF_ASSERT(r->status >= 100 && r->status <= 599);
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        r->body_len, (void *)(r->body != NULL ? r->body : ""), MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    if (r->content_type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    MHD_add_response_header(resp, "X-Request-Id", cr->req.request_id);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (cr->srv->tls)
        MHD_add_response_header(resp, "Strict-Transport-Security", HSTS_VALUE);
    if (r->allow != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (r->retry_after_s > 0) {
        char retry[24];
        snprintf(retry, sizeof(retry), "%lld", (long long)r->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    cr->status = r->status;
    cr->state = REQ_ANSWERED;
    return ret;
}

static void problem(struct conn_req *cr, struct http_response *resp, enum cf_err err)
{
    cr->srv->cfg.problem(&cr->req, resp, err, NULL);
    if (err == CF_ERR_METHOD_NOT_ALLOWED) {
        char *allow = arena_alloc(cr->req.arena, 32);
        if (allow != NULL) {
            http_route_allow(cr->srv->cfg.routes, cr->srv->cfg.routes_n, cr->req.path, allow, 32);
            resp->allow = allow;
        }
    }
}

/* The body is complete: check what can be checked without the handler, then run it. */
static enum MHD_Result dispatch(struct conn_req *cr, struct MHD_Connection *conn)
{
    struct http_response resp = {.status = 500};
    enum cf_err err = cr->early_err;
    const struct http_route *route = cr->req.route;
    if (err == CF_OK && atomic_load(&cr->srv->stopping))
        err = CF_ERR_SHUTTING_DOWN;
    if (err == CF_OK && cr->body_len > 0 && !content_type_ok(conn, route))
        err = CF_ERR_UNSUPPORTED_MEDIA;
    if (err == CF_OK) {
        cr->req.authorization =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        cr->req.idempotency_key =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
        cr->req.user_agent =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT);
        cr->req.signature = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Coffer-Signature");
        client_country_set(cr, conn);
        err = cr->srv->cfg.authorize(cr->srv->cfg.app, &cr->req);
    }
    if (err != CF_OK) {
        problem(cr, &resp, err);
        return queue(cr, conn, &resp);
    }
    cr->req.body = cr->body != NULL ? cr->body : "";
    cr->req.body_len = cr->body_len;
    enum http_action act = route->handler(&cr->req, &resp);
    if (act == HTTP_SUSPEND) {
        CF_ASSERT(route->finish != NULL);
        CF_ASSERT(cr->state != REQ_NEW); /* the handler called http_request_suspend */
        return MHD_YES;
    }
    CF_ASSERT(cr->state == REQ_NEW);
    return queue(cr, conn, &resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *srv = cls;
    struct conn_req *cr = *con_cls;
    if (cr == NULL) {
        cr = conn_req_create(srv, conn, url, method);
        if (cr == NULL)
            return MHD_NO;
        *con_cls = cr;
        return MHD_YES; /* never answer on the first call: it would turn keep-alive off */
    }
    if (*upload_data_size > 0) {
        body_append(cr, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    switch (atomic_load(&cr->state)) {
    case REQ_NEW:
        return dispatch(cr, conn);
    case REQ_RESUMED: {
        struct http_response resp = {.status = 500};
        cr->req.route->finish(&cr->req, &resp);
        return queue(cr, conn, &resp);
    }
    case REQ_SUSPENDED:
        return MHD_YES; /* spurious call while suspended: keep waiting */
    default:
        return MHD_NO;
    }
}

static void metrics_observe(struct http_server *srv, struct conn_req *cr)
{
    struct route_metrics *m = &srv->metrics[cr->req.route_index];
    int cls = cr->status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    atomic_fetch_add(&m->by_class[cls], 1);
    int64_t us = cf_monotonic_us() - cr->req.started_us;
    size_t b = 0;
    while (b < LATENCY_BUCKETS - 1 && us > latency_us_bounds[b])
        b++;
    atomic_fetch_add(&m->latency_bucket[b], 1);
    atomic_fetch_add(&m->latency_us_sum, (uint_fast64_t)us);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct conn_req *cr = *con_cls;
    if (cr == NULL)
        return;
    CF_ASSERT(cr->state != REQ_SUSPENDED);
    if (cr->state == REQ_ANSWERED) {
        metrics_observe(srv, cr);
        if (cr->status >= 400) {
            char status[16];
            snprintf(status, sizeof(status), "%d", cr->status);
            cf_log(cr->status >= 500 ? LOG_WARN : LOG_INFO, "request failed", "request_id",
                   cr->req.request_id, "route",
                   cr->req.route != NULL ? cr->req.route->name : "unmatched", "status", status,
                   NULL);
        }
    }
    if (cr->req.cleanup != NULL)
        cr->req.cleanup(&cr->req);
    arena_destroy(cr->req.arena);
    free(cr);
    *con_cls = NULL;
}

void http_request_suspend(struct http_request *req)
{
    struct conn_req *cr = (struct conn_req *)req;
    CF_ASSERT(cr->state == REQ_NEW);
    cr->state = REQ_SUSPENDED;
    MHD_suspend_connection(req->handle);
}

void http_request_resume(struct http_request *req)
{
    struct conn_req *cr = (struct conn_req *)req;
    CF_ASSERT(cr->state == REQ_SUSPENDED);
    cr->state = REQ_RESUMED;
    MHD_resume_connection(req->handle);
}

const char *http_request_query(struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->handle, MHD_GET_ARGUMENT_KIND, name);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    cf_log(LOG_WARN, "http server", "detail", line, NULL);
}

static enum cf_err listen_resolve(const char *listen, struct sockaddr_storage *ss, bool *v6)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon == listen || (size_t)(colon - listen) >= sizeof(host))
        return CF_ERR_CONFIG;
    size_t hl = (size_t)(colon - listen);
    const char *h = listen;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL)
        return CF_ERR_CONFIG;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return CF_OK;
}

/* Fills the MHD_OPTION_ARRAY items for TLS (just the END marker for plain HTTP). Returns false
 * when TLS is asked for but this libmicrohttpd was built without it. */
static bool tls_options_fill(const struct http_server_config *cfg,
                             struct MHD_OptionItem opts[TLS_OPTIONS_N], unsigned *flags)
{
    CF_ASSERT((cfg->tls_cert_pem == NULL) == (cfg->tls_key_pem == NULL));
    for (size_t i = 0; i < TLS_OPTIONS_N; i++)
        opts[i] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    if (cfg->tls_cert_pem == NULL)
        return true;
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return false;
    opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cfg->tls_cert_pem};
    opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key_pem};
    opts[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLS_PRIORITIES};
    *flags |= MHD_USE_TLS;
    CF_ASSERT(opts[TLS_OPTIONS_N - 1].option == MHD_OPTION_END);
    return true;
}

static struct MHD_Daemon *daemon_start(struct http_server *srv, unsigned flags,
                                       struct sockaddr_storage *addr, struct MHD_OptionItem *tls)
{
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        srv, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)srv->cfg.threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)HTTP_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)HTTP_CONNECTION_TIMEOUT_S, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
}

enum cf_err http_server_start(const struct http_server_config *cfg, struct http_server **out)
{
    CF_ASSERT(cfg->routes_n <= HTTP_ROUTES_MAX && cfg->threads >= 1);
    CF_ASSERT(cfg->authorize != NULL && cfg->problem != NULL);
    struct sockaddr_storage addr;
    bool v6 = false;
    if (listen_resolve(cfg->listen, &addr, &v6) != CF_OK) {
        cf_log(LOG_ERROR, "cannot parse listen address", "listen", cfg->listen, NULL);
        return CF_ERR_CONFIG;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_OptionItem tls[TLS_OPTIONS_N];
    if (!tls_options_fill(cfg, tls, &flags)) {
        cf_log(LOG_ERROR, "this libmicrohttpd was built without TLS support", NULL);
        return CF_ERR_CONFIG;
    }
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return CF_ERR_NOMEM;
    srv->cfg = *cfg;
    srv->tls = (flags & MHD_USE_TLS) != 0;
    srv->daemon = daemon_start(srv, flags, &addr, tls);
    srv->cfg.tls_cert_pem = NULL; /* parsed by now; the caller may free and wipe them */
    srv->cfg.tls_key_pem = NULL;
    if (srv->daemon == NULL) {
        cf_log(LOG_ERROR, srv->tls ? "cannot start https server" : "cannot start http server",
               "listen", cfg->listen, NULL);
        free(srv);
        return CF_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info != NULL ? info->port : 0;
    *out = srv;
    return CF_OK;
}

/* Not MHD_quiesce_daemon: with a thread pool and epoll, libmicrohttpd can abort ("Failed to
 * remove listen FD from epoll set") when a worker takes the listen socket out of its epoll set
 * at the same moment. Connections are still accepted until http_server_stop; their requests
 * are refused. */
void http_server_quiesce(struct http_server *s) { atomic_store(&s->stopping, true); }

void http_server_stop(struct http_server *s)
{
    if (s == NULL)
        return;
    MHD_stop_daemon(s->daemon);
    free(s);
}

unsigned http_server_port(const struct http_server *s) { return s->port; }

static void metrics_route_write(const struct http_server *s, size_t i, const char *name,
                                struct buf *out)
{
    const struct route_metrics *m = &s->metrics[i];
    for (int c = 1; c <= 5; c++) {
        uint64_t v = atomic_load(&m->by_class[c]);
        if (v > 0)
            buf_printf(out, "coffer_http_requests_total{route=\"%s\",status=\"%dxx\"} %llu\n", name,
                       c, (unsigned long long)v);
    }
    uint64_t cum = 0;
    for (int b = 0; b < LATENCY_BUCKETS; b++) {
        cum += atomic_load(&m->latency_bucket[b]);
        if (b < LATENCY_BUCKETS - 1)
            buf_printf(out,
                       "coffer_http_request_duration_seconds_bucket{route=\"%s\",le=\"%lld.%"
                       "06lld\"} %llu\n",
                       name, (long long)(latency_us_bounds[b] / 1000000),
                       (long long)(latency_us_bounds[b] % 1000000), (unsigned long long)cum);
        else
            buf_printf(
                out, "coffer_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                name, (unsigned long long)cum);
    }
    uint64_t sum_us = atomic_load(&m->latency_us_sum);
    buf_printf(out, "coffer_http_request_duration_seconds_sum{route=\"%s\"} %llu.%06llu\n", name,
               (unsigned long long)(sum_us / 1000000), (unsigned long long)(sum_us % 1000000));
    buf_printf(out, "coffer_http_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
               (unsigned long long)cum);
}

void http_server_metrics_write(const struct http_server *s, struct buf *out)
{
    buf_puts(out, "# HELP coffer_http_requests_total HTTP requests by route and status class.\n"
                  "# TYPE coffer_http_requests_total counter\n"
                  "# HELP coffer_http_request_duration_seconds Request latency by route.\n"
                  "# TYPE coffer_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < s->cfg.routes_n; i++)
        metrics_route_write(s, i, s->cfg.routes[i].name, out);
    metrics_route_write(s, s->cfg.routes_n, "unmatched", out);
}
