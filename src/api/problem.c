/* problem.c - RFC 9457 problem+json answers built from the error registry. */
#include <string.h>

#include "api/api.h"

void api_problem_write(struct buf *out, enum cf_err err, const char *detail)
{
    const char *code = cf_err_code(err);
    buf_printf(out,
               "{\"type\":\"urn:coffer:problem:%s\",\"title\":\"%s\","
               "\"status\":%d,\"code\":\"%s\"",
               code, cf_err_title(err), cf_err_http_status(err), code);
    if (detail != NULL) {
        buf_puts(out, ",\"detail\":");
        api_render_string(out, detail, strlen(detail));
    }
    buf_puts(out, "}");
}

void api_problem(struct http_request *req, struct http_response *resp, enum cf_err err,
                 const char *detail)
{
    struct buf b;
    buf_init(&b, req->arena, 4096);
    api_problem_write(&b, err, detail);
    resp->status = cf_err_http_status(err);
    resp->content_type = "application/problem+json";
    resp->body = buf_ok(&b) ? b.data : "{\"code\":\"internal\"}";
    resp->body_len = buf_ok(&b) ? b.len : strlen(resp->body);
}

void api_json_reply(struct http_response *resp, int status, const struct buf *body)
{
    if (!buf_ok(body)) {
        static const char too_big[] =
            "{\"type\":\"urn:coffer:problem:out_of_memory\",\"title\":\"the response does not fit"
            " its buffer\",\"status\":503,\"code\":\"out_of_memory\"}";
        resp->status = 503;
        resp->content_type = "application/problem+json";
        resp->body = too_big;
        resp->body_len = sizeof(too_big) - 1;
        return;
    }
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = body->data;
    resp->body_len = body->len;
}
