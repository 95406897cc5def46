/* system.c - /healthz, /metrics and /v1/ledger/currencies. */
#include <string.h>

#include "api/api.h"
#include "money/currency.h"

enum http_action api_healthz(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct store_reader *r;
    enum cf_err err = api->store->ops->r_open(api->store, &r);
    if (err != CF_OK) {
        api_problem(req, resp, err, "cannot open a read transaction");
        return HTTP_DONE;
    }
    api->store->ops->r_close(r);
    resp->status = 200;
    resp->content_type = "application/json";
    resp->body = "{\"status\":\"ok\"}";
    resp->body_len = strlen(resp->body);
    return HTTP_DONE;
}

static void hist_write(struct buf *b, const char *name, const atomic_uint_fast64_t *buckets,
                       const int64_t *bounds, bool seconds)
{
    uint64_t cum = 0;
    for (int i = 0; i < WRITER_HIST_BUCKETS; i++) {
        cum += atomic_load(&buckets[i]);
        if (i == WRITER_HIST_BUCKETS - 1)
            buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
        else if (seconds)
            buf_printf(b, "%s_bucket{le=\"%lld.%06lld\"} %llu\n", name,
                       (long long)(bounds[i] / 1000000), (long long)(bounds[i] % 1000000),
                       (unsigned long long)cum);
        else
            buf_printf(b, "%s_bucket{le=\"%lld\"} %llu\n", name, (long long)bounds[i],
                       (unsigned long long)cum);
    }
    buf_printf(b, "%s_count %llu\n", name, (unsigned long long)cum);
}

static void writer_metrics_write(struct buf *b, const struct writer_stats *s)
{
    buf_printf(b,
               "# TYPE coffer_ledger_batches_total counter\ncoffer_ledger_batches_total %llu\n"
               "# TYPE coffer_ledger_commands_total counter\ncoffer_ledger_commands_total %llu\n"
               "# TYPE coffer_ledger_entries_total counter\ncoffer_ledger_entries_total %llu\n"
               "# TYPE coffer_ledger_commit_failures_total counter\n"
               "coffer_ledger_commit_failures_total %llu\n"
               "# TYPE coffer_ledger_expired_total counter\ncoffer_ledger_expired_total %llu\n"
               "# TYPE coffer_ledger_queue_depth gauge\ncoffer_ledger_queue_depth %llu\n",
               (unsigned long long)atomic_load(&s->batches),
               (unsigned long long)atomic_load(&s->commands),
               (unsigned long long)atomic_load(&s->entries),
               (unsigned long long)atomic_load(&s->commit_failures),
               (unsigned long long)atomic_load(&s->expired),
               (unsigned long long)atomic_load(&s->queue_depth));
    buf_puts(b, "# HELP coffer_ledger_batch_commands Commands per group commit.\n"
                "# TYPE coffer_ledger_batch_commands histogram\n");
    hist_write(b, "coffer_ledger_batch_commands", s->batch_size_bucket, writer_batch_size_bounds,
               false);
    uint64_t sum_us = atomic_load(&s->commit_us_sum);
    buf_puts(b, "# HELP coffer_ledger_commit_seconds Time to apply and commit one batch.\n"
                "# TYPE coffer_ledger_commit_seconds histogram\n");
    hist_write(b, "coffer_ledger_commit_seconds", s->commit_us_bucket, writer_commit_us_bounds,
               true);
    buf_printf(b, "coffer_ledger_commit_seconds_sum %llu.%06llu\n",
               (unsigned long long)(sum_us / 1000000), (unsigned long long)(sum_us % 1000000));
}

/* Decimal text of a 128-bit integer (totals are never negative, but handle it). */
static void i128_format(__int128 v, char out[48])
{
    char tmp[48];
    size_t n = 0;
    bool neg = v < 0;
    unsigned __int128 u = neg ? -(unsigned __int128)v : (unsigned __int128)v;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u > 0 && n < sizeof(tmp) - 1);
    size_t j = 0;
    if (neg)
        out[j++] = '-';
    while (n > 0)
        out[j++] = tmp[--n];
    out[j] = '\0';
}

static enum cf_err totals_write(struct api *api, struct buf *b, struct arena *arena)
{
    struct store_currency_totals *t = arena_calloc(arena, METRICS_CURRENCIES_MAX, sizeof(*t));
    size_t n = 0;
    struct store_reader *r;
    if (t == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = api->store->ops->r_open(api->store, &r);
    if (err != CF_OK)
        return err;
    err = api->store->ops->r_currency_totals(r, t, METRICS_CURRENCIES_MAX, &n);
    api->store->ops->r_close(r);
    if (err != CF_OK)
        return err;
    buf_puts(b,
             "# HELP coffer_ledger_total_minor Sum of account totals per currency, minor units.\n"
             "# TYPE coffer_ledger_total_minor gauge\n");
    static const char *const names[4] = {"debits_posted", "credits_posted", "debits_pending",
                                         "credits_pending"};
    for (size_t i = 0; i < n; i++) {
        const __int128 v[4] = {t[i].debits_posted, t[i].credits_posted, t[i].debits_pending,
                               t[i].credits_pending};
        for (int k = 0; k < 4; k++) {
            char num[48];
            i128_format(v[k], num);
            buf_printf(b, "coffer_ledger_total_minor{currency=\"%s\",total=\"%s\"} %s\n",
                       t[i].currency, names[k], num);
        }
        buf_printf(b, "coffer_ledger_accounts{currency=\"%s\"} %llu\n", t[i].currency,
                   (unsigned long long)t[i].accounts);
    }
    return CF_OK;
}

enum http_action api_metrics(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct buf b;
    buf_init(&b, req->arena, 4u << 20);
    if (api->server != NULL)
        http_server_metrics_write(api->server, &b);
    writer_metrics_write(&b, writer_stats(api->writer));
    enum cf_err err = totals_write(api, &b, req->arena);
    if (err != CF_OK || !buf_ok(&b)) {
        api_problem(req, resp, err != CF_OK ? err : CF_ERR_NOMEM, NULL);
        return HTTP_DONE;
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4";
    resp->body = b.data;
    resp->body_len = b.len;
    return HTTP_DONE;
}

enum http_action api_currencies_list(struct http_request *req, struct http_response *resp)
{
    struct buf b;
    buf_init(&b, req->arena, 1u << 20);
    buf_puts(&b, "{\"data\":[");
    for (size_t i = 0; i < currency_count(); i++) {
        const struct currency *c = currency_at(i);
        buf_printf(&b, "%s{\"code\":\"%s\",\"minor_units\":%d,\"asset\":%s}", i > 0 ? "," : "",
                   c->code, c->scale, c->is_asset ? "true" : "false");
    }
    buf_puts(&b, "],\"next_cursor\":null}");
    api_json_reply(resp, 200, &b);
    return HTTP_DONE;
}
