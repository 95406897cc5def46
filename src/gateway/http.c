/*
 * http.c - the HTTP connector: a payment provider reached with libcurl; see gateway.h.
 *
 * One curl easy handle per call, so calls from several threads share nothing but the
 * connector's read-only settings; curl_global_init runs once, on the first
 * gateway_http_create. A request body is a gateway_form signed with gateway_callback_sign at
 * the real clock's second. It holds the instrument (or a challenge code), and CURLOPT_POSTFIELDS
 * does not copy it, so it is wiped as soon as curl is done. The answer is read into a bounded
 * buffer; a longer answer aborts the transfer and counts as malformed. Logs name the path, the
 * op_id or reference, the status and curl's error; never a body. The URL rules are those of
 * src/identity/notifier.c, and refuse a query or fragment as well.
 */
#include "gateway/gateway.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/url.h"

/* A host name or address taken out of a URL. */
/* The longest path appended to the base URL, with its NUL. */
#define PATH_BYTES_MAX sizeof("/challenges")
/* "Coffer-Signature: " or "Idempotency-Key: " and a value, with its NUL. */
#define HEADER_BYTES_MAX (32 + GATEWAY_SIGNATURE_BYTES_MAX + GATEWAY_REF_BYTES_MAX)
/* Text of an outcome name in an answer: "insufficient_funds" with its NUL, and room. */
#define OUTCOME_TEXT_BYTES_MAX 24

struct http_gateway {
    char base_url[GATEWAY_URL_BYTES_MAX + 1]; /* without a trailing '/' */
    uint8_t secret[GATEWAY_SECRET_BYTES_MAX]; /* wiped by http_destroy */
    size_t secret_len;
    int64_t timeout_ms;
};

/* What came back from one POST. */
struct http_answer {
    CURLcode rc; /* of curl_easy_perform */
    long status; /* 0 when no answer came */
    bool too_large;
    size_t len;
    char body[GATEWAY_BODY_BYTES_MAX + 1];
};

/* What a call is, for its answer's rules and its logs. */
struct http_call {
    const char *path;    /* "/charges", "/payouts", "/challenges" */
    const char *id_name; /* "op_id" or "reference" */
    const char *id;      /* the Idempotency-Key too */
    bool challenge;
};

/* curl ----------------------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT; /* set once, by curl_start */

static void curl_start(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t answer_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    struct http_answer *a = user;
    size_t n = size * nmemb;
    CF_ASSERT(a->len <= GATEWAY_BODY_BYTES_MAX);
    if (n > GATEWAY_BODY_BYTES_MAX - a->len) {
        a->too_large = true;
        return 0; /* aborts the transfer */
    }
    memcpy(a->body + a->len, ptr, n);
    a->len += n;
    a->body[a->len] = '\0';
    return n;
}

static CURLcode curl_options(CURL *c, const char *url, const struct http_gateway *g,
                             const struct gateway_form *form, struct curl_slist *headers,
                             struct http_answer *a)
{
    CURLcode rc = curl_easy_setopt(c, CURLOPT_URL, url);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)g->timeout_ms);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)form->len);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_POSTFIELDS, form->text);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, answer_write);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    return rc;
}

/* The request headers: content type, no 100-continue, the signature, the idempotency key. */
static struct curl_slist *headers_make(const char *signature, const char *idem_key)
{
    CF_ASSERT(signature != NULL && gateway_token_is_valid(idem_key, GATEWAY_REF_BYTES_MAX));
    char sig_line[HEADER_BYTES_MAX], key_line[HEADER_BYTES_MAX];
    int w1 = snprintf(sig_line, sizeof(sig_line), "Coffer-Signature: %s", signature);
    int w2 = snprintf(key_line, sizeof(key_line), "Idempotency-Key: %s", idem_key);
    CF_ASSERT(w1 > 0 && (size_t)w1 < sizeof(sig_line) && w2 > 0 && (size_t)w2 < sizeof(key_line));
    const char *const lines[] = {"Content-Type: application/x-www-form-urlencoded",
                                 "Expect:", sig_line, key_line};
    struct curl_slist *headers = NULL;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        struct curl_slist *next = curl_slist_append(headers, lines[i]);
        if (next == NULL) {
            curl_slist_free_all(headers);
            return NULL;
        }
        headers = next;
    }
    return headers;
}

/* POSTs form to url; a->rc and a->status say what came back. CF_ERR_NOMEM or
 * CF_ERR_INTERNAL when the request could not be set up (nothing was sent). */
static enum cf_err http_post(const struct http_gateway *g, const char *url,
                             const struct gateway_form *form, const char *signature,
                             const char *idem_key, struct http_answer *a)
{
    CF_ASSERT(g != NULL && url != NULL && form != NULL && signature != NULL && a != NULL);
    CURL *c = curl_easy_init();
    struct curl_slist *headers = c != NULL ? headers_make(signature, idem_key) : NULL;
    CURLcode setup =
        headers == NULL ? CURLE_OUT_OF_MEMORY : curl_options(c, url, g, form, headers, a);
    if (setup == CURLE_OK)
        a->rc = curl_easy_perform(c);
    if (setup == CURLE_OK && a->rc == CURLE_OK)
        CF_ASSERT(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status) == CURLE_OK);
    curl_easy_cleanup(c); /* NULL is a no-op */
    curl_slist_free_all(headers);
    if (setup != CURLE_OK)
        return setup == CURLE_OUT_OF_MEMORY ? CF_ERR_NOMEM : CF_ERR_INTERNAL;
    return CF_OK;
}

/* Answers -------------------------------------------------------------------------------------- */

static void call_log(const struct http_call *call, const char *msg, const struct http_answer *a)
{
    char status[24];
    snprintf(status, sizeof(status), "%ld", a->status);
    cf_log(LOG_WARN, msg, "path", call->path, call->id_name, call->id, "status", status, "curl",
           a->rc == CURLE_OK ? "ok" : curl_easy_strerror(a->rc), NULL);
}

/* A 200 answer's body into out: outcome (a final one for a challenge answer, any but timeout
 * otherwise), reference, optional decline_code. */
static bool answer_parse(const struct http_answer *a, bool challenge, struct gateway_result *out)
{
    CF_ASSERT(a != NULL && out != NULL && a->status == 200);
    struct gateway_result r;
    char outcome[OUTCOME_TEXT_BYTES_MAX];
    memset(&r, 0, sizeof(r));
    struct gateway_form_field f[] = {
        {"outcome", outcome, sizeof(outcome), true, false},
        {"reference", r.reference, sizeof(r.reference), true, false},
        {"decline_code", r.decline_code, sizeof(r.decline_code), false, false},
    };
    if (gateway_form_decode(a->body, a->len, f, sizeof(f) / sizeof(f[0])) != CF_OK ||
        gateway_outcome_parse(outcome, &r.outcome) != CF_OK)
        return false;
    if (challenge && r.outcome != GATEWAY_APPROVED && r.outcome != GATEWAY_DECLINED &&
        r.outcome != GATEWAY_INSUFFICIENT_FUNDS)
        return false;
    if (!gateway_token_is_valid(r.reference, sizeof(r.reference)) ||
        (r.decline_code[0] != '\0' &&
         !gateway_token_is_valid(r.decline_code, sizeof(r.decline_code))))
        return false;
    CF_ASSERT(r.outcome != GATEWAY_TIMEOUT);
    *out = r;
    return true;
}

/* What the answer means: an outcome, TIMEOUT when there was none, or an error. */
static enum cf_err answer_classify(const struct http_call *call, const struct http_answer *a,
                                   struct gateway_result *out)
{
    CF_ASSERT(call != NULL && a != NULL && out != NULL);
    CF_ASSERT(a->len <= GATEWAY_BODY_BYTES_MAX && a->body[a->len] == '\0');
    if (a->too_large) {
        call_log(call, "gateway: answer too large", a);
        return CF_ERR_IO;
    }
    if (a->rc != CURLE_OK || (a->status >= 500 && a->status <= 599)) {
        call_log(call, "gateway: no final answer; outcome unknown", a);
        memset(out, 0, sizeof(*out));
        out->outcome = GATEWAY_TIMEOUT;
        return CF_OK;
    }
    if (a->status == 200) {
        if (answer_parse(a, call->challenge, out))
            return CF_OK;
        call_log(call, "gateway: malformed answer", a);
        return CF_ERR_IO;
    }
    if (call->challenge && a->status == 404)
        return CF_ERR_NOT_FOUND;
    if (call->challenge && a->status == 409)
        return CF_ERR_CONFLICT;
    call_log(call, "gateway: unexpected status", a);
    return CF_ERR_IO;
}

/* Signs and POSTs form for call, then reads the answer into out (untouched on error). */
static enum cf_err http_exchange(const struct http_gateway *g, const struct http_call *call,
                                 const struct gateway_form *form, struct gateway_result *out)
{
    CF_ASSERT(gateway_form_ok(form) && strlen(call->path) < PATH_BYTES_MAX);
    char url[GATEWAY_URL_BYTES_MAX + PATH_BYTES_MAX];
    int w = snprintf(url, sizeof(url), "%s%s", g->base_url, call->path);
    CF_ASSERT(w > 0 && (size_t)w < sizeof(url));
    char signature[GATEWAY_SIGNATURE_BYTES_MAX];
    enum cf_err err = gateway_callback_sign(g->secret, g->secret_len, form->text, form->len,
                                            cf_clock_now_us(&cf_clock_real) / 1000000, signature,
                                            sizeof(signature));
    CF_ASSERT(err == CF_OK); /* the secret was checked at create, the form is bounded */
    struct http_answer *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return CF_ERR_NOMEM;
    err = http_post(g, url, form, signature, call->id, a);
    struct gateway_result r;
    if (err == CF_OK)
        err = answer_classify(call, a, &r);
    if (err == CF_OK)
        *out = r;
    free(a);
    return err;
}

/* The connector -------------------------------------------------------------------------------- */

static enum cf_err http_submit(void *impl, const struct gateway_request *req,
                               struct gateway_result *out)
{
    const struct http_gateway *g = impl;
    CF_ASSERT(g != NULL && req != NULL && out != NULL);
    struct gateway_form *form = malloc(sizeof(*form));
    if (form == NULL)
        return CF_ERR_NOMEM;
    gateway_form_init(form);
    gateway_form_add(form, "op_id", req->op_id);
    gateway_form_add(form, "method", req->method == GATEWAY_METHOD_CARD ? "card" : "bank");
    gateway_form_add(form, "instrument", req->instrument);
    gateway_form_add_int(form, "amount_minor", req->amount_minor);
    gateway_form_add(form, "currency", req->currency);
    CF_ASSERT(gateway_form_ok(form)); /* five checked, bounded fields */
    struct http_call call = {.path = req->op == GATEWAY_OP_CHARGE ? "/charges" : "/payouts",
                             .id_name = "op_id",
                             .id = req->op_id,
                             .challenge = false};
    enum cf_err err = http_exchange(g, &call, form, out);
    gateway_form_wipe(form);
    free(form);
    return err;
}

static enum cf_err http_challenge_answer(void *impl, const char *reference, const char *code,
                                         struct gateway_result *out)
{
    const struct http_gateway *g = impl;
    CF_ASSERT(g != NULL && reference != NULL && code != NULL && out != NULL);
    struct gateway_form *form = malloc(sizeof(*form));
    if (form == NULL)
        return CF_ERR_NOMEM;
    gateway_form_init(form);
    gateway_form_add(form, "reference", reference);
    gateway_form_add(form, "code", code);
    CF_ASSERT(gateway_form_ok(form));
    struct http_call call = {
        .path = "/challenges", .id_name = "reference", .id = reference, .challenge = true};
    enum cf_err err = http_exchange(g, &call, form, out);
    gateway_form_wipe(form);
    free(form);
    return err;
}

static void http_destroy(void *impl)
{
    struct http_gateway *g = impl;
    CF_ASSERT(g != NULL);
    hash_wipe(g->secret, sizeof(g->secret));
    free(g);
}

static const struct gateway_ops http_ops = {
    .name = "http",
    .submit = http_submit,
    .challenge_answer = http_challenge_answer,
    .destroy = http_destroy,
};

static bool config_is_valid(const struct gateway_http_config *cfg)
{
    return cfg->base_url != NULL && url_is_allowed(cfg->base_url, GATEWAY_URL_BYTES_MAX, true) && cfg->secret != NULL &&
           cfg->secret_len >= GATEWAY_SECRET_BYTES_MIN &&
           cfg->secret_len <= GATEWAY_SECRET_BYTES_MAX && cfg->timeout_ms >= 1 &&
           cfg->timeout_ms <= GATEWAY_HTTP_TIMEOUT_MS_MAX;
}

enum cf_err gateway_http_create(const struct gateway_http_config *cfg, struct gateway **out)
{
    CF_ASSERT(cfg != NULL && out != NULL);
    if (!config_is_valid(cfg))
        return CF_ERR_CONFIG;
    enum cf_err err = gateway_sodium_init();
    if (err != CF_OK)
        return err;
    CF_ASSERT(pthread_once(&curl_once, curl_start) == 0);
    if (curl_init_rc != CURLE_OK)
        return CF_ERR_INTERNAL;
    struct http_gateway *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return CF_ERR_NOMEM;
    size_t n = strlen(cfg->base_url);
    while (n > 0 && cfg->base_url[n - 1] == '/')
        n--;
    CF_ASSERT(n > 0 && n <= GATEWAY_URL_BYTES_MAX);
    memcpy(g->base_url, cfg->base_url, n);
    g->base_url[n] = '\0';
    memcpy(g->secret, cfg->secret, cfg->secret_len);
    g->secret_len = cfg->secret_len;
    g->timeout_ms = cfg->timeout_ms;
    err = gateway_connector_create(&http_ops, g, out);
    if (err != CF_OK)
        http_destroy(g);
    return err;
}
