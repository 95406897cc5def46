/*
 * http.h - the HTTP server: libmicrohttpd behind a route table.
 *
 * Routes are data (struct http_route): method, path pattern, handler, scope, body limit and
 * whether the route takes an Idempotency-Key. The server matches the path (404 for an unknown
 * path, 405 with an Allow header for a known path and another method), enforces the body limit
 * (413) and JSON content type (415), asks the authorize callback (401), then calls the
 * handler with the whole body. Only this folder includes microhttpd.h.
 *
 * Request life:
 *
 *   NEW --(headers)--> BODY --(body complete)--> handler
 *                                                 |-- HTTP_DONE    -> response queued
 *                                                 `-- http_request_suspend, HTTP_SUSPEND
 *   SUSPENDED --(http_request_resume from any thread)--> RESUMED --> route->finish -> queued
 *
 * A handler that hands work to another thread calls http_request_suspend BEFORE handing it
 * over (the other thread may finish first), returns HTTP_SUSPEND, and the work's owner calls
 * http_request_resume exactly once, possibly before the handler has returned. The
 * response body must live in the request's arena (or static storage): it is sent after the
 * handler returns and freed when the request completes.
 */
#ifndef COFFER_HTTP_HTTP_H
#define COFFER_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/assert.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/limits.h"

enum http_method { HTTP_GET = 0, HTTP_POST = 1, HTTP_METHOD_COUNT };

enum http_action { HTTP_DONE, HTTP_SUSPEND };

/* What a route's body must be (415 otherwise): JSON, or a form (signed gateway callbacks). */
enum http_body_kind { HTTP_BODY_JSON = 0, HTTP_BODY_FORM = 1 };

/* Who may call a route: a bitmask of roles (the API's authorize callback enforces it; this
 * layer only carries it). 0 means public: no credentials. */
#define HTTP_PUBLIC 0u
#define HTTP_ROLE_CUSTOMER (1u << 0)  /* a customer, on their own resources only */
#define HTTP_ROLE_MERCHANT (1u << 1)  /* a merchant user (owner or staff of a merchant) */
#define HTTP_ROLE_SUPPORT (1u << 2)   /* customer support staff */
#define HTTP_ROLE_RISK (1u << 3)      /* risk analyst */
#define HTTP_ROLE_ADMIN (1u << 4)     /* administrator */
#define HTTP_ROLE_AUDITOR (1u << 5)   /* read-only auditor */
#define HTTP_ROLE_BOOTSTRAP (1u << 6) /* the operator token: creates the first admin, no more */
/* A signed-in user who has not finished sign-in (second factor pending) holds no role. */
#define HTTP_ROLES_STAFF (HTTP_ROLE_SUPPORT | HTTP_ROLE_RISK | HTTP_ROLE_ADMIN | HTTP_ROLE_AUDITOR)
#define HTTP_ROLES_SIGNED_IN (HTTP_ROLE_CUSTOMER | HTTP_ROLE_MERCHANT | HTTP_ROLES_STAFF)

struct http_request;

struct http_response {
    int status;
    const char *content_type;
    const char *body;
    size_t body_len;
    const char *allow;     /* Allow header value, for 405 */
    int64_t retry_after_s; /* > 0: a Retry-After header (429, 503) */
};

typedef enum http_action (*http_handler)(struct http_request *req, struct http_response *resp);

struct http_route {
    enum http_method method;
    const char *pattern; /* "/v1/ledger/accounts/{id}" */
    http_handler handler;
    http_handler finish;   /* called after a resume; NULL when never suspending */
    uint32_t roles;        /* HTTP_PUBLIC or a mask of HTTP_ROLE_* */
    size_t body_bytes_max; /* 0 = no body allowed */
    bool idempotent;       /* takes an Idempotency-Key header */
    const char *name;      /* metrics label */
    uint8_t body_kind;     /* enum http_body_kind: the body's required content type */
};

struct http_request {
    enum http_method method;
    const char *path;
    const struct http_route *route;
    size_t route_index;
    const char *params[HTTP_PATH_SEGMENTS_MAX]; /* values of {..} segments, in order */
    size_t params_n;
    const char *body;
    size_t body_len;
    const char *authorization;                    /* raw header or NULL */
    const char *idempotency_key;                  /* raw header or NULL */
    const char *user_agent;                       /* raw header or NULL */
    const char *signature;                        /* raw Coffer-Signature header or NULL */
    char client_country[3]; /* ISO 3166 alpha-2 from the config's country header, else "" */
    char client_ip[HTTP_CLIENT_IP_BYTES_MAX + 1]; /* the peer's address, text */
    void *principal; /* set by the authorize callback: who is calling */
    char request_id[HTTP_REQUEST_ID_BYTES_MAX + 1];
    struct arena *arena;
    void *app;    /* the server's app pointer */
    void *handle; /* the connection, for resume; opaque */
    void *user;   /* free for the handler's state across suspend/resume */
    /* Called when the request ends, answered or not (the client may have gone away after a
     * resume, in which case finish never runs). Set by a handler that holds a resource. */
    void (*cleanup)(struct http_request *req);
    int64_t started_us;
};

/* Returns the query parameter's value, or NULL. Valid until the request completes. */
const char *http_request_query(struct http_request *req, const char *name);

/* Suspends the request; call from its handler, before handing its work to another thread. */
void http_request_suspend(struct http_request *req);

/* Wakes a suspended request; its route's finish handler then runs on a server thread. */
void http_request_resume(struct http_request *req);

/* Called for every routed request before its handler; CF_OK or an error to answer. */
typedef enum cf_err (*http_authorize_fn)(void *app, struct http_request *req);

/* Writes a problem+json error into resp (body in the request arena). */
typedef void (*http_problem_fn)(struct http_request *req, struct http_response *resp,
                                enum cf_err err, const char *detail);

struct http_server_config {
    const char *listen; /* "HOST:PORT" */
    /* TLS: PEM texts of the certificate (chain) and private key; both NULL serves plain HTTP.
     * With TLS every response carries Strict-Transport-Security. */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    unsigned threads; /* server threads, >= 1 */
    const struct http_route *routes;
    size_t routes_n;
    http_authorize_fn authorize;
    http_problem_fn problem;
    void *app;
    /* The header a trusted proxy in front sets to the client's country (ISO 3166 alpha-2, e.g.
     * "CF-IPCountry"); NULL: none. Only two capital letters are taken from it. */
    const char *country_header;
};

struct http_server;

CF_WARN_UNUSED enum cf_err http_server_start(const struct http_server_config *cfg,
                                             struct http_server **out);
/* From now on every new request answers 503 shutting_down; requests already in flight go on.
 * (Connections are still accepted until http_server_stop.) */
void http_server_quiesce(struct http_server *s);
/* Stops the server. Every suspended request must have been resumed before. */
void http_server_stop(struct http_server *s);
/* The port actually bound (useful with port 0). */
unsigned http_server_port(const struct http_server *s);

/* Prometheus text for request counts and latency by route. */
void http_server_metrics_write(const struct http_server *s, struct buf *out);

/* Route matching (router.c). Returns the route index, or -1 with *path_known telling 404/405. */
int http_route_match(const struct http_route *routes, size_t n, enum http_method method,
                     const char *path, struct http_request *req, bool *path_known);
/* The methods registered for a path, as an Allow header value ("GET, POST"). */
void http_route_allow(const struct http_route *routes, size_t n, const char *path, char *buf,
                      size_t buf_bytes);
const char *http_method_name(enum http_method m);

#endif
