/*
 * risk_common.c - route helpers the risk routes share; see risk_common.h.
 */
#include "api/risk_common.h"

#include "api/pay.h"
#include "core/clock.h"
#include "core/ids.h"

enum cf_err api_risk_empty_body(struct http_request *req, const char **detail)
{
    static const char *const none[] = {NULL};
    CF_ASSERT(req != NULL && detail != NULL);
    if (req->body_len == 0)
        return CF_OK;
    json_t *root = NULL;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, none, detail);
    *detail = api_detail_keep(req, *detail); /* it may point into root */
    json_decref(root);
    return err;
}

enum cf_err api_risk_page_params(struct http_request *req, size_t limit_max,
                                 const char *limit_detail, size_t *limit_out, uint64_t *before_out,
                                 const char **detail)
{
    CF_ASSERT(req != NULL && limit_max > 0 && limit_out != NULL && before_out != NULL);
    bool has_cursor = false;
    enum cf_err err = api_page_params(req, limit_out, before_out, &has_cursor);
    if (err == CF_OK && *limit_out > limit_max) {
        *detail = limit_detail;
        err = CF_ERR_INVALID_PAGE_SIZE;
    }
    if (err == CF_OK && has_cursor && *before_out == 0)
        err = CF_ERR_INVALID_CURSOR;
    return err;
}

void api_risk_page_reply(struct http_request *req, struct http_response *resp, enum cf_err err,
                         const char *detail, json_t *data, size_t n, size_t limit,
                         uint64_t last_row)
{
    CF_ASSERT(req != NULL && resp != NULL && n <= limit);
    json_t *o = json_pack("{s:o}", "data", data);
    if (o != NULL && err == CF_OK) {
        char c[ID_TEXT_BYTES_MAX];
        if (n == limit && n > 0)
            cursor_format(last_row, c);
        json_object_set_new(o, "next_cursor", n == limit && n > 0 ? json_string(c) : json_null());
    }
    if (err != CF_OK || o == NULL) {
        json_decref(o);
        api_pay_problem_reply(req, resp, err != CF_OK ? err : CF_ERR_NOMEM, detail);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

void api_risk_object_reply(struct http_request *req, struct http_response *resp, enum cf_err err,
                           const char *detail, int status, json_t *o)
{
    CF_ASSERT(req != NULL && resp != NULL && status >= 200 && status < 300);
    if (err == CF_OK && o == NULL)
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        json_decref(o);
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    api_reply_object(req, resp, status, o);
}

json_t *api_risk_time_json(int64_t at_us)
{
    if (at_us <= 0)
        return json_null();
    char text[40];
    cf_time_format_rfc3339(at_us, text, sizeof(text));
    return json_string(text);
}
