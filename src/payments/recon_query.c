/* recon_query.c - Coffer's side of a reconciliation (the gateway operations of a window) and a
 * whole run (file, operations, comparison); see reconcile.h.
 *
 * The window's operations are counted first, with the highest row among them; the pages that
 * follow read rows up to that one only, so an operation made meanwhile neither overflows the
 * array sized from the count nor makes two pages disagree. Each page is its own short
 * transaction: on SQLite, where the service database has one connection, other requests run
 * between pages. An operation's status may move on between pages; the comparison sees each
 * row as it was read.
 */
#include "payments/reconcile.h"

#include <stdio.h>
#include <string.h>

#include "payments/internal.h"

_Static_assert(PAY_KIND_TOPUP == 1 && PAY_KIND_WITHDRAWAL == 2 && PAY_KIND_PAYOUT == 6,
               "the gateway kinds written in RECON_WHERE");
#define RECON_WHERE "WHERE kind IN (1, 2, 6) AND created_at_us >= $1 AND created_at_us < $2"
#define RECON_COLS "row, id, kind, status, amount_minor, currency, gateway_ref, created_at_us"

/* How many gateway operations the window holds, and the highest row among them. */
static enum cf_err window_count(struct payments *p, int64_t from_us, int64_t to_us,
                                int64_t *count_out, int64_t *last_row_out)
{
    struct sql_value v[] = {SQL_I(from_us), SQL_I(to_us)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        pay_query1(p, "SELECT COUNT(*), COALESCE(MAX(row), 0) FROM pay_ops " RECON_WHERE, v, 2, &r);
    if (err != CF_OK)
        return err;
    CF_ASSERT(sql_rows_n(r) == 1 && sql_rows_cols(r) == 2);
    *count_out = sql_row_int(r, 0, 0);
    *last_row_out = sql_row_int(r, 0, 1);
    sql_rows_free(r);
    return CF_OK;
}

static void op_from_row(const struct sql_rows *r, size_t i, struct recon_op *op, int64_t *row)
{
    size_t c = 0;
    memset(op, 0, sizeof(*op));
    *row = sql_row_int(r, i, c++);
    pay_copy(op->id, sizeof(op->id), sql_row_text(r, i, c++));
    op->kind = (uint8_t)sql_row_int(r, i, c++);
    op->status = (uint8_t)sql_row_int(r, i, c++);
    op->amount_minor = sql_row_int(r, i, c++);
    pay_copy(op->currency, sizeof(op->currency), sql_row_text(r, i, c++));
    pay_copy(op->gateway_ref, sizeof(op->gateway_ref), sql_row_text(r, i, c++));
    op->created_at_us = sql_row_int(r, i, c++);
    CF_ASSERT(c == sql_rows_cols(r));
}

/* Reads up to limit (at most SQL_ROWS_MAX) operations with after_row < row <= last_row into
 * out; *n_out of them, *after_row the last one's row. */
static enum cf_err page_read(struct payments *p, int64_t from_us, int64_t to_us, int64_t last_row,
                             size_t limit, struct recon_op *out, size_t *n_out, int64_t *after_row)
{
    CF_ASSERT(limit > 0 && limit <= SQL_ROWS_MAX);
    struct sql_value v[] = {SQL_I(from_us), SQL_I(to_us), SQL_I(*after_row), SQL_I(last_row),
                            SQL_I(limit)};
    struct sql_rows *r = NULL;
    enum cf_err err = pay_query1(p,
                                 "SELECT " RECON_COLS " FROM pay_ops " RECON_WHERE
                                 " AND row > $3 AND row <= $4 ORDER BY row LIMIT $5",
                                 v, 5, &r);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r);
    CF_ASSERT(n <= limit);
    for (size_t i = 0; i < n; i++)
        op_from_row(r, i, &out[i], after_row);
    sql_rows_free(r);
    *n_out = n;
    return CF_OK;
}

enum cf_err payments_recon_ops(struct payments *p, int64_t from_us, int64_t to_us, size_t max,
                               struct arena *arena, struct recon_op **out, size_t *n_out,
                               bool *more)
{
    CF_ASSERT(p != NULL && arena != NULL && out != NULL && n_out != NULL && more != NULL);
    CF_ASSERT(from_us <= to_us);
    int64_t count = 0, last_row = 0;
    enum cf_err err = window_count(p, from_us, to_us, &count, &last_row);
    if (err != CF_OK)
        return err;
    size_t want = count > 0 && (uint64_t)count > max ? max : (size_t)(count > 0 ? count : 0);
    struct recon_op *ops = arena_calloc(arena, want + 1, sizeof(*ops));
    if (ops == NULL)
        return CF_ERR_NOMEM;
    size_t n = 0;
    int64_t after_row = 0;
    while (n < want) {
        size_t limit = want - n < SQL_ROWS_MAX ? want - n : SQL_ROWS_MAX, got = 0;
        if ((err = page_read(p, from_us, to_us, last_row, limit, ops + n, &got, &after_row)) !=
            CF_OK)
            return err;
        if (got == 0)
            break; /* rows are never deleted: only a broken count could stop here */
        n += got;
    }
    CF_ASSERT(n <= want && want <= max);
    *out = ops;
    *n_out = n;
    *more = count > 0 && (uint64_t)count > max;
    return CF_OK;
}

enum cf_err payments_reconcile(struct payments *p, const char *text, size_t len, int64_t from_us,
                               int64_t to_us, struct arena *arena, struct recon_report *out,
                               struct recon_error *e)
{
    CF_ASSERT(p != NULL && arena != NULL && out != NULL && e != NULL);
    CF_ASSERT(from_us >= 0 && from_us < to_us);
    struct recon_report r;
    memset(&r, 0, sizeof(r));
    r.from_us = from_us;
    r.to_us = to_us;
    enum cf_err err = recon_file_parse(text, len, arena, &r.rows, &r.rows_n, e);
    if (err != CF_OK)
        return err;
    int64_t q_from = from_us > RECONCILE_MARGIN_US ? from_us - RECONCILE_MARGIN_US : 0;
    int64_t q_to =
        to_us < INT64_MAX - RECONCILE_MARGIN_US ? to_us + RECONCILE_MARGIN_US : INT64_MAX;
    bool more = false;
    err = payments_recon_ops(p, q_from, q_to, RECONCILE_OPS_MAX, arena, &r.ops, &r.ops_n, &more);
    if (err != CF_OK)
        return err;
    if (more) {
        e->field = "from";
        e->line = 0;
        snprintf(e->message, sizeof(e->message),
                 "more than %d gateway operations were made in the window; give a narrower "
                 "from and to",
                 RECONCILE_OPS_MAX);
        return CF_ERR_INVALID_FIELD;
    }
    err = recon_compare(r.rows, r.rows_n, r.ops, r.ops_n, from_us, to_us, arena, &r.result);
    if (err != CF_OK)
        return err;
    CF_ASSERT(r.result.matched <= r.rows_n);
    *out = r;
    return CF_OK;
}
