/*
 * write.c - the common path of every ledger write: submit to the writer, suspend the
 * connection, resume when the batch is durable, answer. Also renders a finished command into
 * its response, on the writer thread when the response must be stored with an idempotency key.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "core/ids.h"
#include "core/log.h"

static void render_error(struct writer_cmd *cmd, struct buf *b)
{
    const char *detail = NULL;
    char d[64];
    if (cmd->type == WRITER_CMD_TRANSFER && cmd->legs_n > 1) {
        snprintf(d, sizeof(d), "leg %zu", cmd->failed_leg);
        detail = d;
    }
    api_problem_write(b, cmd->err, detail);
    cmd->resp_status = cf_err_http_status(cmd->err);
}

static void render_batch(struct writer_cmd *cmd, struct buf *b)
{
    buf_puts(b, "{\"data\":[");
    for (size_t i = 0; i < cmd->legs_n; i++) {
        const struct writer_item_result *r = &cmd->items[i];
        if (i > 0)
            buf_puts(b, ",");
        if (r->err == CF_OK) {
            buf_printf(b, "{\"status\":\"%s\",\"transfer\":", r->existed ? "exists" : "created");
            api_render_entry(b, &r->entry);
            buf_puts(b, "}");
        } else {
            buf_puts(b, "{\"status\":\"error\",\"error\":");
            api_problem_write(b, r->err, NULL);
            buf_puts(b, "}");
        }
    }
    buf_puts(b, "]}");
    cmd->resp_status = 200;
}

static void render_success(struct writer_cmd *cmd, struct buf *b)
{
    switch (cmd->type) {
    case WRITER_CMD_ACCOUNT_CREATE:
        api_render_account(b, &cmd->account_out, cmd->owner != NULL ? cmd->owner : "",
                           cmd->metadata != NULL ? cmd->metadata : "");
        cmd->resp_status = 201;
        return;
    case WRITER_CMD_SET_FLAGS:
        api_render_account(b, &cmd->account_out, NULL, NULL);
        cmd->resp_status = 200;
        return;
    case WRITER_CMD_TRANSFER:
        cmd->resp_status = 201;
        if (cmd->variant == API_VARIANT_SINGLE) {
            api_render_entry(b, &cmd->entries_out[0]);
            return;
        }
        {
            char gid[ID_TEXT_BYTES_MAX];
            id_format(ID_PREFIX_TRANSFER, cmd->entries_out[0].group_seq, gid);
            buf_printf(b, "{\"group_id\":\"%s\",\"legs\":[", gid);
            for (size_t i = 0; i < cmd->entries_n; i++) {
                if (i > 0)
                    buf_puts(b, ",");
                api_render_entry(b, &cmd->entries_out[i]);
            }
            buf_puts(b, "]}");
        }
        return;
    case WRITER_CMD_POST:
    case WRITER_CMD_VOID:
        api_render_entry(b, &cmd->pending_out);
        cmd->resp_status = 200;
        return;
    default:
        CF_ASSERT(cmd->type == WRITER_CMD_BATCH);
        render_batch(cmd, b);
    }
}

/* Renders cmd's outcome into resp_status/resp_body (in cmd->arena). */
enum cf_err api_cmd_render(struct writer_cmd *cmd)
{
    struct buf b;
    buf_init(&b, cmd->arena, HTTP_RESPONSE_BYTES_MAX);
    if (cmd->err != CF_OK)
        render_error(cmd, &b);
    else
        render_success(cmd, &b);
    if (!buf_ok(&b))
        return CF_ERR_NOMEM;
    cmd->resp_body = b.data;
    cmd->resp_body_len = b.len;
    return CF_OK;
}

static void cmd_done(struct writer_cmd *cmd) { http_request_resume(cmd->user); }

/* Gives the idempotency key back; runs once, from finish or when the request ends. */
static void inflight_cleanup(struct http_request *req)
{
    struct writer_cmd *cmd = req->user;
    CF_ASSERT(cmd != NULL && cmd->idem_key_len > 0);
    api_inflight_release(req->app, cmd);
    req->cleanup = NULL;
}

/* Staff act on the ledger through these routes: each such write gets an audit line. */
static bool staff_write(const struct http_request *req)
{
    const struct api_principal *p = api_principal(req);
    return p != NULL && !p->bootstrap && identity_role_is_staff(p->user.role);
}

/* Queues the audit line of a finished staff write. */
static void staff_write_audit(struct http_request *req, int status)
{
    struct api *api = req->app;
    char action[AUDIT_ACTION_BYTES_MAX + 1], target[AUDIT_TARGET_BYTES_MAX + 1], detail[32];
    snprintf(action, sizeof(action), "staff.ledger.%s", req->route->name);
    snprintf(target, sizeof(target), "%s", req->path);
    snprintf(detail, sizeof(detail), "status %d", status);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    if (identity_audit_queue(api->identity, &ctx, api_actor(req), action, target,
                             status < 400 ? "ok" : "failed", detail) != CF_OK)
        cf_log(LOG_ERROR, "audit queue refused a staff ledger write line", "path", target, NULL);
}

enum http_action api_submit(struct http_request *req, struct http_response *resp,
                            struct writer_cmd *cmd)
{
    struct api *api = req->app;
    if (staff_write(req) && !identity_audit_queue_room(api->identity)) {
        api_problem(req, resp, CF_ERR_OVERLOADED, NULL);
        return HTTP_DONE;
    }
    cmd->arena = req->arena;
    cmd->done = cmd_done;
    cmd->user = req;
    cmd->render = api_cmd_render;
    enum cf_err err = CF_OK;
    if (cmd->idem_key_len > 0 && (err = api_inflight_acquire(api, cmd)) != CF_OK) {
        api_problem(req, resp, err, NULL);
        return HTTP_DONE;
    }
    req->user = cmd;
    if (cmd->idem_key_len > 0)
        req->cleanup = inflight_cleanup;
    http_request_suspend(req); /* before the writer can see the command and resume us */
    err = writer_submit(api->writer, cmd);
    if (err != CF_OK) {
        cmd->err = err; /* never ran: api_write_finish answers with the problem */
        cmd->resp_body = NULL;
        http_request_resume(req);
    }
    return HTTP_SUSPEND;
}

enum http_action api_write_finish(struct http_request *req, struct http_response *resp)
{
    struct writer_cmd *cmd = req->user;
    CF_ASSERT(cmd != NULL && cmd->user == req);
    if (req->cleanup != NULL)
        req->cleanup(req);
    if (cmd->resp_body == NULL) {
        /* not stored: no key, or the writer refused before running (reused key, storage) */
        bool ran = cmd->err == CF_OK ||
                   (cmd->err != CF_ERR_STORAGE && cmd->err != CF_ERR_IDEM_KEY_REUSED &&
                    cmd->err != CF_ERR_IDEM_KEY_IN_FLIGHT && cmd->err != CF_ERR_NOMEM &&
                    cmd->err != CF_ERR_OVERLOADED && cmd->err != CF_ERR_SHUTTING_DOWN);
        if (!ran || api_cmd_render(cmd) != CF_OK) {
            api_problem(req, resp, cmd->err != CF_OK ? cmd->err : CF_ERR_NOMEM, NULL);
            if (staff_write(req))
                staff_write_audit(req, resp->status);
            return HTTP_DONE;
        }
    }
    resp->status = cmd->resp_status;
    resp->body = cmd->resp_body;
    resp->body_len = cmd->resp_body_len;
    resp->content_type = resp->status >= 400 ? "application/problem+json" : "application/json";
    if (staff_write(req))
        staff_write_audit(req, resp->status);
    return HTTP_DONE;
}

/* Synchronous submission, for worker threads ------------------------------------------------ */

struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static void sync_done(struct writer_cmd *cmd)
{
    struct sync_wait *w = cmd->user;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

enum cf_err api_submit_wait(struct api *api, struct writer_cmd *cmd, struct arena *arena)
{
    struct sync_wait w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    cmd->arena = arena;
    cmd->done = sync_done;
    cmd->user = &w;
    cmd->render = api_cmd_render;
    enum cf_err err = CF_OK;
    bool keyed = cmd->idem_key_len > 0;
    if (keyed && (err = api_inflight_acquire(api, cmd)) != CF_OK)
        goto out;
    err = writer_submit(api->writer, cmd);
    if (err == CF_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        if (cmd->resp_body == NULL && cmd->err == CF_OK)
            err = api_cmd_render(cmd);
    }
    if (keyed)
        api_inflight_release(api, cmd);
out:
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return err;
}

void api_cmd_reply(struct http_request *req, struct http_response *resp,
                   const struct writer_cmd *cmd)
{
    if (cmd->resp_body == NULL) {
        api_problem(req, resp, cmd->err != CF_OK ? cmd->err : CF_ERR_INTERNAL, NULL);
        return;
    }
    resp->status = cmd->resp_status;
    resp->body = cmd->resp_body;
    resp->body_len = cmd->resp_body_len;
    resp->content_type = resp->status >= 400 ? "application/problem+json" : "application/json";
}
