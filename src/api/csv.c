/* csv.c - CSV field escaping and the CSV answer; see csv.h. */
#include "api/csv.h"

#include <stdbool.h>
#include <string.h>

#include "core/assert.h"

/* A spreadsheet evaluates a cell that starts with one of these. */
static bool csv_formula_start(char c)
{
    return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r';
}

void api_csv_text(struct buf *b, const char *s)
{
    CF_ASSERT(b != NULL && s != NULL);
    bool quoted = strpbrk(s, ",\"\r\n") != NULL;
    if (quoted)
        buf_append(b, "\"", 1);
    if (csv_formula_start(s[0]))
        buf_append(b, "'", 1);
    const char *run = s;
    for (const char *q = strchr(run, '"'); q != NULL; q = strchr(run, '"')) {
        buf_append(b, run, (size_t)(q - run) + 1);
        buf_append(b, "\"", 1); /* the quote doubled */
        run = q + 1;
    }
    buf_puts(b, run);
    if (quoted)
        buf_append(b, "\"", 1);
}

void api_csv_reply(struct http_response *resp, const struct buf *b)
{
    CF_ASSERT(resp != NULL && buf_ok(b) && (b->len == 0 || b->data != NULL));
    resp->status = 200;
    resp->content_type = "text/csv; charset=utf-8";
    resp->body = b->data;
    resp->body_len = b->len;
}
