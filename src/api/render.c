/* render.c - JSON encoding of accounts and journal entries, written straight into a buffer. */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "core/clock.h"
#include "core/ids.h"

void api_render_string(struct buf *b, const char *s, size_t len)
{
    buf_append(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(b, s + run, i - run);
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof(esc), "\\%c", c);
        else
            snprintf(esc, sizeof(esc), "\\u%04x", c);
        buf_puts(b, esc);
        run = i + 1;
    }
    buf_append(b, s + run, len - run);
    buf_append(b, "\"", 1);
}

static void render_time(struct buf *b, const char *key, int64_t t_us)
{
    char ts[40];
    if (t_us == 0) {
        buf_printf(b, ",\"%s\":null", key);
        return;
    }
    cf_time_format_rfc3339(t_us, ts, sizeof(ts));
    buf_printf(b, ",\"%s\":\"%s\"", key, ts);
}

static void render_id(struct buf *b, const char *key, const char *prefix, uint64_t v)
{
    char id[ID_TEXT_BYTES_MAX];
    if (v == 0) {
        buf_printf(b, ",\"%s\":null", key);
        return;
    }
    id_format(prefix, v, id);
    buf_printf(b, ",\"%s\":\"%s\"", key, id);
}

void api_render_account(struct buf *b, const struct ledger_account *a, const char *owner,
                        const char *metadata)
{
    char id[ID_TEXT_BYTES_MAX];
    id_format(ID_PREFIX_ACCOUNT, a->id, id);
    buf_printf(b,
               "{\"id\":\"%s\",\"currency\":\"%s\",\"normal\":\"%s\",\"kind\":\"%s\","
               "\"no_overdraft\":%s,\"frozen\":%s,\"closed\":%s,\"debits_posted\":%lld,"
               "\"credits_posted\":%lld,\"debits_pending\":%lld,\"credits_pending\":%lld,"
               "\"balance\":%lld,\"available\":%lld",
               id, a->currency, ledger_normal_name(a->normal), ledger_kind_name(a->kind),
               (a->flags & LEDGER_ACCOUNT_NO_OVERDRAFT) ? "true" : "false",
               (a->flags & LEDGER_ACCOUNT_FROZEN) ? "true" : "false",
               (a->flags & LEDGER_ACCOUNT_CLOSED) ? "true" : "false", (long long)a->debits_posted,
               (long long)a->credits_posted, (long long)a->debits_pending,
               (long long)a->credits_pending, (long long)ledger_account_balance(a),
               (long long)ledger_account_available(a));
    if (owner != NULL) {
        buf_puts(b, ",\"owner\":");
        if (owner[0] == '\0')
            buf_puts(b, "null");
        else
            api_render_string(b, owner, strlen(owner));
    }
    if (metadata != NULL)
        buf_printf(b, ",\"metadata\":%s", metadata[0] != '\0' ? metadata : "null");
    render_time(b, "created_at", a->created_at_us);
    buf_puts(b, "}");
}

void api_render_entry(struct buf *b, const struct ledger_entry *e)
{
    char id[ID_TEXT_BYTES_MAX], hex[HASH_HEX_BYTES];
    id_format(ID_PREFIX_TRANSFER, e->seq, id);
    buf_printf(b, "{\"id\":\"%s\",\"type\":\"%s\",\"status\":\"%s\"", id,
               ledger_entry_type_name(e->type), ledger_status_name(e->status));
    render_id(b, "debit_account_id", ID_PREFIX_ACCOUNT, e->debit_id);
    render_id(b, "credit_account_id", ID_PREFIX_ACCOUNT, e->credit_id);
    buf_printf(b, ",\"amount\":%lld,\"currency\":\"%s\",\"code\":", (long long)e->amount,
               e->currency);
    api_render_string(b, e->code, strlen(e->code));
    if (e->metadata != NULL && e->metadata_len > 0) {
        buf_puts(b, ",\"metadata\":");
        buf_append(b, e->metadata, e->metadata_len);
    } else {
        buf_puts(b, ",\"metadata\":null");
    }
    buf_puts(b, ",\"idempotency_key\":");
    if (e->idem_key != NULL)
        api_render_string(b, e->idem_key, e->idem_key_len);
    else
        buf_puts(b, "null");
    render_id(b, "pending_id", ID_PREFIX_TRANSFER, e->pending_seq);
    render_id(b, "group_id", ID_PREFIX_TRANSFER, e->group_seq);
    if (e->type == LEDGER_ENTRY_PENDING) {
        render_id(b, "resolution_id", ID_PREFIX_TRANSFER, e->resolution_seq);
        if (e->status == LEDGER_STATUS_POSTED)
            buf_printf(b, ",\"posted_amount\":%lld", (long long)e->resolved_amount);
    }
    render_time(b, "expires_at", e->expires_at_us);
    render_time(b, "created_at", e->created_at_us);
    hash_hex(e->hash, HASH_BYTES, hex);
    buf_printf(b, ",\"hash\":\"%s\"}", hex);
}

void api_reply_page(struct http_request *req, struct http_response *resp, const void *items,
                    size_t n, size_t limit, api_item_fn item)
{
    CF_ASSERT(limit >= 1 && limit <= PAGE_SIZE_MAX);
    CF_ASSERT(n <= limit + 1);
    struct buf b;
    buf_init(&b, req->arena, HTTP_RESPONSE_BYTES_MAX);
    buf_puts(&b, "{\"data\":[");
    size_t shown = n > limit ? limit : n;
    uint64_t last = 0;
    for (size_t i = 0; i < shown; i++) {
        if (i > 0)
            buf_puts(&b, ",");
        last = item(&b, items, i);
    }
    if (n > limit) {
        char c[ID_TEXT_BYTES_MAX];
        cursor_format(last, c);
        buf_printf(&b, "],\"next_cursor\":\"%s\"}", c);
    } else {
        buf_puts(&b, "],\"next_cursor\":null}");
    }
    api_json_reply(resp, 200, &b);
}
