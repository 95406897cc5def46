/*
 * pay_statements.c - history export (CSV), monthly statements and merchant settlement reports;
 * see pay_statements.h.
 *
 * Everything here reads: the payments tables for operations (pages of PAY_LIST_MAX, newest
 * first, bounded in total) and the ledger through one store reader per account for balances.
 */
#include "api/pay_statements.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/csv.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "money/currency.h"
#include "money/money.h"

/* One CSV row at most: the fixed fields, a reference and a note with every byte doubled. */
#define CSV_ROW_BYTES_MAX 800
_Static_assert((size_t)STATEMENT_EXPORT_ROWS_MAX *CSV_ROW_BYTES_MAX + 256 <=
                   HTTP_RESPONSE_BYTES_MAX,
               "a full export fits a response");
#define CSV_HEADER                                                                                 \
    "created_at,id,type,status,direction,counterparty,amount,fee,currency,reference,note\r\n"

/* Journal entries read per store call while summing a statement, and the scratch arena that
 * holds one page's strings (entry metadata up to its limit each). */
#define STATEMENT_PAGE 256
#define STATEMENT_SCRATCH_BYTES (8u << 20)

static void merchant_problem(struct http_request *req, struct http_response *resp, enum cf_err err)
{
    api_pay_problem_reply(
        req, resp, err, err == CF_ERR_CONFLICT ? "the merchant has no payment profile yet" : NULL);
}

/* CSV export ---------------------------------------------------------------------------------- */

/* An amount in major units at its currency's scale ("12.34"). */
static enum cf_err csv_amount(struct buf *b, int64_t amount_minor, const struct currency *c)
{
    char text[32];
    int n = money_format(amount_minor, c->scale, text, sizeof(text));
    if (n < 0)
        return CF_ERR_INTERNAL;
    buf_append(b, text, (size_t)n);
    return CF_OK;
}

/* One operation as a CSV row, seen by viewer. */
static enum cf_err csv_row(struct buf *b, const struct pay_op *op, const char *viewer)
{
    CF_ASSERT(viewer != NULL && op->id[0] != '\0');
    bool out = strcmp(op->payer, viewer) == 0;
    /* the viewer's side: a payee across currencies sees what it received, in its currency;
     * the fee shows where it is in that currency (a payment's fee is the merchant's) */
    bool credit_side = !out && op->credit_currency[0] != '\0';
    const char *code = credit_side ? op->credit_currency : op->currency;
    int64_t amount = credit_side ? op->credit_minor : op->amount_minor;
    const char *fee_code = op->kind == PAY_KIND_PAYMENT && op->credit_currency[0] != '\0'
                               ? op->credit_currency
                               : op->currency;
    int64_t fee = strcmp(fee_code, code) == 0 ? op->fee_minor : 0;
    const struct currency *c = currency_find(code, strlen(code));
    if (c == NULL)
        return CF_ERR_CORRUPT; /* an operation in a currency Coffer does not know */
    size_t len_before = b->len;
    char created[40];
    cf_time_format_rfc3339(op->created_at_us, created, sizeof(created));
    const char *fields[] = {created,
                            op->id,
                            pay_kind_name(op->kind),
                            pay_status_name(op->status),
                            out ? "out" : "in",
                            out ? op->payee : op->payer};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        api_csv_text(b, fields[i]);
        buf_append(b, ",", 1);
    }
    enum cf_err err = csv_amount(b, amount, c);
    buf_append(b, ",", 1);
    if (err == CF_OK)
        err = csv_amount(b, fee, c);
    buf_append(b, ",", 1);
    api_csv_text(b, code);
    buf_append(b, ",", 1);
    api_csv_text(b, op->reference);
    buf_append(b, ",", 1);
    api_csv_text(b, op->note);
    buf_append(b, "\r\n", 2);
    CF_ASSERT(!buf_ok(b) || b->len - len_before <= CSV_ROW_BYTES_MAX);
    return err;
}

/* The rows of every operation the filter matches, newest first. */
static enum cf_err csv_rows(struct api *api, struct arena *arena, struct pay_filter *f,
                            const char *viewer, struct buf *b)
{
    struct pay_op *ops = arena_calloc(arena, PAY_LIST_MAX, sizeof(*ops));
    if (ops == NULL)
        return CF_ERR_NOMEM;
    size_t rows = 0;
    for (;;) {
        size_t n = 0;
        enum cf_err err = payments_ops_list(api->payments, f, ops, PAY_LIST_MAX, &n);
        for (size_t i = 0; i < n && err == CF_OK; i++) {
            if (++rows > STATEMENT_EXPORT_ROWS_MAX)
                return CF_ERR_RANGE_TOO_LARGE;
            err = csv_row(b, &ops[i], viewer);
        }
        if (err != CF_OK || n < PAY_LIST_MAX)
            return err;
        f->before_row = ops[n - 1].row;
    }
}

static void export_reply(struct http_request *req, struct http_response *resp, const char *party)
{
    struct api *api = req->app;
    struct pay_filter f = {.party = party};
    const char *detail = NULL;
    struct buf b;
    buf_init(&b, req->arena, HTTP_RESPONSE_BYTES_MAX);
    buf_puts(&b, CSV_HEADER);
    enum cf_err err = api_pay_filter_read(req, &f, &detail);
    if (err == CF_OK)
        err = csv_rows(api, req->arena, &f, party, &b);
    if (err == CF_ERR_RANGE_TOO_LARGE)
        detail = "more than 10000 operations match: export a narrower date range (from, to)";
    if (err == CF_OK && !buf_ok(&b))
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    api_csv_reply(resp, &b);
}

static void me_export_run(struct http_request *req, struct http_response *resp)
{
    export_reply(req, resp, api_pay_me_id(req));
}

enum http_action api_me_activity_export(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_export_run);
}

static void merchant_export_run(struct http_request *req, struct http_response *resp)
{
    struct pay_merchant m;
    enum cf_err err = api_pay_merchant_mine(req, &m);
    if (err != CF_OK) {
        merchant_problem(req, resp, err);
        return;
    }
    export_reply(req, resp, m.merchant_id);
}

enum http_action api_merchant_activity_export(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_export_run);
}

/* Statements: the month ------------------------------------------------------------------------ */

struct month {
    char text[8];             /* "2026-11" */
    int64_t start_us, end_us; /* [first instant, next month's first instant) */
};

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

/* "YYYY-MM" (UTC), 1970-01 .. 9999-11 (the month after must have a first day too). */
static enum cf_err month_parse(const char *text, struct month *m)
{
    if (text == NULL || strlen(text) != 7 || text[4] != '-' || !digits(text, 4) ||
        !digits(text + 5, 2))
        return CF_ERR_INVALID_FIELD;
    int year = (int)strtol(text, NULL, 10), mon = (int)strtol(text + 5, NULL, 10);
    if (mon < 1 || mon > 12 || year < 1970 || (year == 9999 && mon == 12))
        return CF_ERR_INVALID_FIELD;
    char first[32], next[32];
    snprintf(first, sizeof(first), "%04d-%02d-01", year, mon);
    snprintf(next, sizeof(next), "%04d-%02d-01", mon == 12 ? year + 1 : year,
             mon == 12 ? 1 : mon + 1);
    enum cf_err err = cf_time_parse_rfc3339(first, &m->start_us);
    if (err == CF_OK)
        err = cf_time_parse_rfc3339(next, &m->end_us);
    if (err != CF_OK)
        return CF_ERR_INVALID_FIELD;
    snprintf(m->text, sizeof(m->text), "%.7s", text);
    CF_ASSERT(m->start_us < m->end_us);
    return CF_OK;
}

/* Statements: balances from the ledger --------------------------------------------------------- */

struct period_sums {
    int64_t opening_minor, in_minor, out_minor, fees_minor, closing_minor;
    int64_t after_minor; /* changes after the month */
    uint64_t entries;    /* entries read */
};

/* What entry e did to account a's posted balance: TRANSFER and POST_PENDING entries move it;
 * a hold, its void and its expiry do not. */
static int64_t entry_posted_change(const struct ledger_entry *e, const struct ledger_account *a)
{
    CF_ASSERT(e->debit_id == a->id || e->credit_id == a->id);
    if (e->type != LEDGER_ENTRY_TRANSFER && e->type != LEDGER_ENTRY_POST_PENDING)
        return 0;
    bool credited = e->credit_id == a->id;
    bool raises = credited == (a->normal == LEDGER_NORMAL_CREDIT);
    return raises ? e->amount : -e->amount;
}

/* Puts one entry before, inside (as money in, money out or fees) or after the month. */
static enum cf_err sums_add(struct period_sums *s, const struct ledger_entry *e,
                            const struct ledger_account *a, uint64_t fee_account,
                            const struct month *m)
{
    if (e->amount <= 0 || (e->debit_id != a->id && e->credit_id != a->id))
        return CF_ERR_CORRUPT; /* not an entry of this account: the history is broken */
    int64_t change = entry_posted_change(e, a);
    if (change == 0)
        return CF_OK;
    if (e->created_at_us >= m->end_us)
        return money_add(s->after_minor, change, &s->after_minor);
    if (e->created_at_us < m->start_us)
        return money_add(s->opening_minor, change, &s->opening_minor);
    uint64_t other = e->debit_id == a->id ? e->credit_id : e->debit_id;
    if (fee_account != 0 && other == fee_account) /* a fee paid lowers the balance */
        return money_sub(s->fees_minor, change, &s->fees_minor);
    if (change > 0)
        return money_add(s->in_minor, change, &s->in_minor);
    return money_add(s->out_minor, -change, &s->out_minor);
}

/* closing = opening + in - out - fees, and closing + after must be the live posted balance. */
static enum cf_err sums_close(struct period_sums *s, const struct ledger_account *a)
{
    int64_t closing = 0, total = 0;
    enum cf_err err = money_add(s->opening_minor, s->in_minor, &closing);
    if (err == CF_OK)
        err = money_sub(closing, s->out_minor, &closing);
    if (err == CF_OK)
        err = money_sub(closing, s->fees_minor, &closing);
    if (err == CF_OK)
        err = money_add(closing, s->after_minor, &total);
    if (err == CF_OK && total != ledger_account_balance(a)) {
        char id[ID_TEXT_BYTES_MAX];
        id_format(ID_PREFIX_ACCOUNT, a->id, id);
        cf_log(LOG_ERROR, "statement: an account's history does not add up to its balance",
               "account", id, NULL);
        err = CF_ERR_CORRUPT;
    }
    if (err == CF_OK)
        s->closing_minor = closing;
    return err;
}

/* Reads account a's whole history (newest first) on reader r into s. */
static enum cf_err sums_scan(struct api *api, struct store_reader *r, struct ledger_entry *page,
                             const struct ledger_account *a, uint64_t fee_account,
                             const struct month *m, struct period_sums *s)
{
    CF_ASSERT(page != NULL && a->id != 0 && m->start_us < m->end_us);
    struct arena *scratch = arena_create(STATEMENT_SCRATCH_BYTES);
    if (scratch == NULL)
        return CF_ERR_NOMEM;
    uint64_t before = UINT64_MAX;
    enum cf_err err = CF_OK;
    for (;;) {
        size_t n = 0;
        arena_reset(scratch);
        err =
            api->store->ops->r_account_entries(r, a->id, before, STATEMENT_PAGE, page, &n, scratch);
        if (err != CF_OK || n == 0)
            break;
        for (size_t i = 0; i < n && err == CF_OK; i++) {
            if (page[i].seq >= before)
                err = CF_ERR_CORRUPT; /* not newest first: the loop would not end */
            else
                err = sums_add(s, &page[i], a, fee_account, m);
            before = page[i].seq;
        }
        s->entries += n;
        if (err == CF_OK && s->entries > STATEMENT_ENTRIES_MAX)
            err = CF_ERR_RANGE_TOO_LARGE;
        if (err != CF_OK)
            break;
    }
    arena_destroy(scratch);
    CF_ASSERT(err != CF_OK || s->entries <= STATEMENT_ENTRIES_MAX);
    return err;
}

/* The month's sums of account_id (which must belong to owner: CF_ERR_NOT_FOUND otherwise),
 * from one snapshot of the ledger. *row_out gets the account as it is now. */
static enum cf_err account_sums(struct api *api, struct arena *arena, uint64_t account_id,
                                const char *owner, const struct month *m,
                                struct store_account_row *row_out, struct period_sums *s)
{
    memset(s, 0, sizeof(*s));
    struct ledger_entry *page = arena_calloc(arena, STATEMENT_PAGE, sizeof(*page));
    if (page == NULL)
        return CF_ERR_NOMEM;
    struct store_reader *r;
    enum cf_err err = api->store->ops->r_open(api->store, &r);
    if (err != CF_OK)
        return err;
    err = api->store->ops->r_account_get(r, account_id, row_out, arena);
    if (err == CF_OK && strcmp(row_out->owner, owner) != 0)
        err = CF_ERR_NOT_FOUND;
    uint64_t fees = 0;
    if (err == CF_OK) {
        err = payments_system_get(api->payments, PAY_SYS_FEE_REVENUE, row_out->account.currency,
                                  &fees);
        if (err == CF_ERR_NOT_FOUND) /* no fee was ever charged in this currency */
            err = CF_OK;
    }
    if (err == CF_OK)
        err = sums_scan(api, r, page, &row_out->account, fees, m, s);
    api->store->ops->r_close(r);
    if (err == CF_OK)
        err = sums_close(s, &row_out->account);
    return err;
}

/* Statements: operations and JSON -------------------------------------------------------------- */

struct op_lists {
    json_t *done;    /* completed */
    json_t *pending; /* still waiting */
    size_t failed_n;
    size_t listed_n; /* across every currency of the statement */
    bool truncated;  /* STATEMENT_OPERATIONS_MAX reached: the older ones are left out */
};

/* The month's operations of party in currency into l, newest first, until the statement has
 * listed STATEMENT_OPERATIONS_MAX. */
static enum cf_err statement_ops(struct api *api, struct arena *arena, const char *party,
                                 const char *currency, const struct month *m, struct op_lists *l)
{
    CF_ASSERT(l->listed_n <= STATEMENT_OPERATIONS_MAX && l->done != NULL && l->pending != NULL);
    struct pay_op *ops = arena_calloc(arena, PAY_LIST_MAX, sizeof(*ops));
    if (ops == NULL)
        return CF_ERR_NOMEM;
    struct pay_filter f = {
        .party = party, .from_us = m->start_us, .to_us = m->end_us, .currency = currency};
    for (;;) {
        size_t n = 0;
        enum cf_err err = payments_ops_list(api->payments, &f, ops, PAY_LIST_MAX, &n);
        if (err != CF_OK)
            return err;
        for (size_t i = 0; i < n; i++) {
            if (l->listed_n == STATEMENT_OPERATIONS_MAX) {
                l->truncated = true; /* ops[i] and older ones are left out */
                return CF_OK;
            }
            l->listed_n++;
            if (ops[i].status == PAY_STATUS_FAILED)
                l->failed_n++;
            else
                json_array_append_new(ops[i].status == PAY_STATUS_COMPLETED ? l->done : l->pending,
                                      api_pay_op_json(&ops[i], party));
        }
        if (n < PAY_LIST_MAX)
            return CF_OK;
        f.before_row = ops[n - 1].row;
    }
}

static json_t *sums_json(const struct store_account_row *row, const struct period_sums *s)
{
    char id[ID_TEXT_BYTES_MAX];
    id_format(ID_PREFIX_ACCOUNT, row->account.id, id);
    return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "currency", row->account.currency, "account",
                     id, "opening_balance_minor", (json_int_t)s->opening_minor, "money_in_minor",
                     (json_int_t)s->in_minor, "money_out_minor", (json_int_t)s->out_minor,
                     "fees_minor", (json_int_t)s->fees_minor, "closing_balance_minor",
                     (json_int_t)s->closing_minor);
}

/* One account's part of the statement; CF_ERR_NOT_FOUND when the account is not party's. */
static enum cf_err statement_account(struct http_request *req, const char *party,
                                     uint64_t account_id, const struct month *m, size_t *listed_n,
                                     json_t **out)
{
    struct api *api = req->app;
    struct store_account_row row;
    struct period_sums s;
    enum cf_err err = account_sums(api, req->arena, account_id, party, m, &row, &s);
    if (err != CF_OK)
        return err;
    struct op_lists l = {.done = json_array(), .pending = json_array(), .listed_n = *listed_n};
    err = statement_ops(api, req->arena, party, row.account.currency, m, &l);
    json_t *o = err == CF_OK ? sums_json(&row, &s) : NULL;
    if (o == NULL) {
        json_decref(l.done);
        json_decref(l.pending);
        return err != CF_OK ? err : CF_ERR_NOMEM;
    }
    json_object_set_new(o, "operations", l.done);
    json_object_set_new(o, "pending", l.pending);
    json_object_set_new(o, "failed_n", json_integer((json_int_t)l.failed_n));
    json_object_set_new(o, "operations_truncated", json_boolean(l.truncated));
    *listed_n = l.listed_n;
    *out = o;
    return CF_OK;
}

static void statement_reply(struct http_request *req, struct http_response *resp, const char *party,
                            const uint64_t *accounts, size_t accounts_n)
{
    struct month m;
    enum cf_err err = month_parse(req->params[0], &m);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, "month");
        return;
    }
    json_t *list = json_array();
    size_t listed_n = 0;
    for (size_t i = 0; i < accounts_n && err == CF_OK; i++) {
        json_t *one = NULL;
        err = statement_account(req, party, accounts[i], &m, &listed_n, &one);
        if (err == CF_ERR_NOT_FOUND) /* listed for party but owned by someone else: skipped */
            err = CF_OK;
        else if (err == CF_OK)
            json_array_append_new(list, one);
    }
    if (err != CF_OK) {
        json_decref(list);
        api_pay_problem_reply(req, resp, err,
                              err == CF_ERR_RANGE_TOO_LARGE
                                  ? "an account's history is too long for a statement"
                                  : NULL);
        return;
    }
    char from[40], to[40];
    cf_time_format_rfc3339(m.start_us, from, sizeof(from));
    cf_time_format_rfc3339(m.end_us, to, sizeof(to));
    bool complete = cf_clock_now_us(&cf_clock_real) >= m.end_us;
    api_reply_object(req, resp, 200,
                     json_pack("{s:s,s:s,s:s,s:b,s:o}", "month", m.text, "from", from, "to", to,
                               "complete", complete, "currencies", list));
}

static void me_statement_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    uint64_t ids[IDENTITY_WALLET_ACCOUNTS_MAX];
    size_t n = 0;
    enum cf_err err = identity_wallet_list(api->identity, api_pay_me_id(req), ids,
                                           IDENTITY_WALLET_ACCOUNTS_MAX, &n);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    statement_reply(req, resp, api_pay_me_id(req), ids, n);
}

enum http_action api_me_statement(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, me_statement_run);
}

static void merchant_statement_run(struct http_request *req, struct http_response *resp)
{
    struct pay_merchant m;
    enum cf_err err = api_pay_merchant_mine(req, &m);
    if (err != CF_OK) {
        merchant_problem(req, resp, err);
        return;
    }
    statement_reply(req, resp, m.merchant_id, &m.account_id, 1);
}

enum http_action api_merchant_statement(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, merchant_statement_run);
}

/* Settlement reports --------------------------------------------------------------------------- */

struct settlement {
    int64_t gross_minor, fees_minor, refunds_minor, net_minor, carried_minor;
    json_t *ops;
    bool truncated; /* more counted operations than STATEMENT_OPERATIONS_MAX: not all listed */
    size_t scanned;
};

/* The merchant's latest payout recorded before payout that did not fail; *found false when
 * there is none. */
static enum cf_err payout_previous(struct api *api, struct pay_op *page,
                                   const struct pay_op *payout, struct pay_op *prev, bool *found)
{
    CF_ASSERT(payout->kind == PAY_KIND_PAYOUT && payout->row > 0);
    struct pay_filter f = {
        .party = payout->payer, .kind = PAY_KIND_PAYOUT, .before_row = payout->row};
    size_t scanned = 0;
    *found = false;
    for (;;) {
        size_t n = 0;
        enum cf_err err = payments_ops_list(api->payments, &f, page, PAY_LIST_MAX, &n);
        if (err != CF_OK)
            return err;
        for (size_t i = 0; i < n; i++) {
            if (page[i].status != PAY_STATUS_FAILED && strcmp(page[i].payer, payout->payer) == 0) {
                CF_ASSERT(page[i].row < payout->row); /* the filter's before_row */
                *prev = page[i];
                *found = true;
                return CF_OK;
            }
        }
        scanned += n;
        if (n < PAY_LIST_MAX)
            return CF_OK;
        if (scanned > REPORT_SCAN_MAX)
            return CF_ERR_RANGE_TOO_LARGE;
        f.before_row = page[n - 1].row;
    }
}

/* Counts one operation of the period: a completed payment to or refund by merchant m in its
 * currency. */
static enum cf_err settlement_add(struct settlement *s, const struct pay_op *op,
                                  const struct pay_merchant *m)
{
    /* what the merchant received and gave back: a payment's credit side, a refund's debit */
    const char *mine = op->kind == PAY_KIND_PAYMENT ? op->credit_currency : op->currency;
    if (op->status != PAY_STATUS_COMPLETED || strcmp(mine, m->currency) != 0)
        return CF_OK;
    enum cf_err err = CF_OK;
    if (op->kind == PAY_KIND_PAYMENT && strcmp(op->payee, m->merchant_id) == 0) {
        err = money_add(s->gross_minor, op->credit_minor, &s->gross_minor);
        if (err == CF_OK)
            err = money_add(s->fees_minor, op->fee_minor, &s->fees_minor);
    } else if (op->kind == PAY_KIND_REFUND && strcmp(op->payer, m->merchant_id) == 0) {
        err = money_add(s->refunds_minor, op->amount_minor, &s->refunds_minor);
        if (err == CF_OK) /* the fee share the refund gave back */
            err = money_sub(s->fees_minor, op->fee_minor, &s->fees_minor);
    } else {
        return CF_OK;
    }
    if (err == CF_OK && json_array_size(s->ops) == STATEMENT_OPERATIONS_MAX)
        s->truncated = true; /* counted, not listed */
    else if (err == CF_OK)
        json_array_append_new(s->ops, api_pay_op_json(op, m->merchant_id));
    return err;
}

/* Sums the operations recorded after after_row and before payout. */
static enum cf_err settlement_sum(struct api *api, struct pay_op *page,
                                  const struct pay_merchant *m, const struct pay_op *payout,
                                  uint64_t after_row, struct settlement *s)
{
    CF_ASSERT(after_row < payout->row);
    struct pay_filter f = {.party = m->merchant_id, .before_row = payout->row};
    bool more = true;
    while (more) {
        size_t n = 0;
        enum cf_err err = payments_ops_list(api->payments, &f, page, PAY_LIST_MAX, &n);
        for (size_t i = 0; i < n && more && err == CF_OK; i++) {
            if (page[i].row <= after_row)
                more = false; /* reached the previous payout */
            else
                err = settlement_add(s, &page[i], m);
        }
        if (err != CF_OK)
            return err;
        s->scanned += n;
        more = more && n == PAY_LIST_MAX;
        if (more && s->scanned > REPORT_SCAN_MAX)
            return CF_ERR_RANGE_TOO_LARGE;
        if (more)
            f.before_row = page[n - 1].row;
    }
    CF_ASSERT(json_array_size(s->ops) <= STATEMENT_OPERATIONS_MAX);
    enum cf_err err = money_sub(s->gross_minor, s->refunds_minor, &s->net_minor);
    if (err == CF_OK)
        err = money_sub(s->net_minor, s->fees_minor, &s->net_minor);
    if (err == CF_OK)
        err = money_sub(payout->amount_minor, s->net_minor, &s->carried_minor);
    return err;
}

static json_t *report_json(const struct pay_merchant *m, const struct pay_op *payout,
                           const struct pay_op *prev, bool has_prev, struct settlement *s)
{
    json_t *o = json_pack(
        "{s:o,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "payout", api_pay_op_json(payout, m->merchant_id),
        "currency", m->currency, "gross_minor", (json_int_t)s->gross_minor, "fees_minor",
        (json_int_t)s->fees_minor, "refunds_minor", (json_int_t)s->refunds_minor, "net_minor",
        (json_int_t)s->net_minor, "payout_minor", (json_int_t)payout->amount_minor,
        "carried_over_minor", (json_int_t)s->carried_minor);
    if (o == NULL)
        return NULL;
    if (has_prev) {
        char since[40];
        cf_time_format_rfc3339(prev->created_at_us, since, sizeof(since));
        json_object_set_new(o, "previous_payout_id", json_string(prev->id));
        json_object_set_new(o, "since", json_string(since));
    } else {
        json_object_set_new(o, "previous_payout_id", json_null());
        json_object_set_new(o, "since", json_null());
    }
    json_object_set_new(o, "operations", s->ops);
    json_object_set_new(o, "operations_truncated", json_boolean(s->truncated));
    s->ops = NULL;
    return o;
}

static void payout_report_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct pay_merchant m;
    struct pay_op payout, prev;
    bool has_prev = false;
    struct settlement s = {.ops = json_array()};
    struct pay_op *page = arena_calloc(req->arena, PAY_LIST_MAX, sizeof(*page));
    enum cf_err err = page == NULL ? CF_ERR_NOMEM : api_pay_merchant_mine(req, &m);
    if (err == CF_OK)
        err = payments_op_get(api->payments, req->params[0], &payout);
    if (err == CF_OK &&
        (payout.kind != PAY_KIND_PAYOUT || strcmp(payout.payer, m.merchant_id) != 0))
        err = CF_ERR_NOT_FOUND; /* another merchant's, or not a payout */
    if (err == CF_OK)
        err = payout_previous(api, page, &payout, &prev, &has_prev);
    if (err == CF_OK)
        err = settlement_sum(api, page, &m, &payout, has_prev ? prev.row : 0, &s);
    json_t *o = err == CF_OK ? report_json(&m, &payout, &prev, has_prev, &s) : NULL;
    json_decref(s.ops);
    if (err == CF_OK && o == NULL)
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        if (err == CF_ERR_CONFLICT)
            merchant_problem(req, resp, err);
        else
            api_pay_problem_reply(req, resp, err,
                                  err == CF_ERR_RANGE_TOO_LARGE
                                      ? "the payout's period holds too many operations to add up"
                                      : NULL);
        return;
    }
    api_reply_object(req, resp, 200, o);
}

enum http_action api_merchant_payout_report(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, payout_report_run);
}
