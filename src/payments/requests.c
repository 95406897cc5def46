/*
 * requests.c - payment requests and bill splits (schema version 2); see requests.h.
 *
 * One row per request in pay_requests; `row` orders lists and serves as the cursor. The row
 * reserves its paying operation's id (paid_op_id, unique), and every read joins that operation
 * so the effective status is computed in one place, the SQL expression STATUS_EXPR, by the rule
 * in requests.h. Changes lock the row first (FOR UPDATE; SQLite transactions are serial), then
 * read it with the join, check in C, and update.
 */
#include "payments/requests.h"

#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "payments/internal.h"

/* Schema ------------------------------------------------------------------------------------- */

#define REQ_SCHEMA(BLOB, ROWKEY)                                                                   \
    "CREATE TABLE pay_requests (row " ROWKEY ", id TEXT NOT NULL UNIQUE, "                         \
    "requester TEXT NOT NULL, payer TEXT NOT NULL, amount_minor BIGINT NOT NULL, "                 \
    "currency TEXT NOT NULL, note_sealed " BLOB ", status INTEGER NOT NULL, "                      \
    "split_id TEXT NOT NULL, paid_op_id TEXT NOT NULL UNIQUE, "                                    \
    "claimed INTEGER NOT NULL DEFAULT 0, expires_at_us BIGINT NOT NULL, "                          \
    "created_at_us BIGINT NOT NULL, updated_at_us BIGINT NOT NULL);"                               \
    "CREATE INDEX pay_requests_requester ON pay_requests(requester, row);"                         \
    "CREATE INDEX pay_requests_payer ON pay_requests(payer, row);"                                 \
    "CREATE INDEX pay_requests_split ON pay_requests(split_id);"

const struct sql_migration pay_migration_requests = {
    2, REQ_SCHEMA("BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    REQ_SCHEMA("BYTEA", "BIGSERIAL PRIMARY KEY")};

/* The numbers STATUS_EXPR is written with. */
_Static_assert(PAY_STATUS_PROCESSING == 0 && PAY_STATUS_ACTION_REQUIRED == 1 &&
                   PAY_STATUS_PENDING == 2 && PAY_STATUS_COMPLETED == 3 && PAY_STATUS_FAILED == 4,
               "STATUS_EXPR names operation statuses by number");
_Static_assert(PAY_REQUEST_PENDING == 0 && PAY_REQUEST_PAID == 1 && PAY_REQUEST_EXPIRED == 4,
               "STATUS_EXPR names request statuses by number");

/* The effective status (requests.h, "Status"); NOW is the parameter holding now_us. */
#define STATUS_EXPR(NOW)                                                                           \
    "(CASE WHEN o.status = 3 THEN 1 WHEN r.status <> 0 THEN r.status "                             \
    "WHEN o.status IN (0, 1, 2) THEN 0 WHEN r.expires_at_us < " NOW " THEN 4 ELSE 0 END)"

#define REQ_COLS(NOW)                                                                              \
    "r.row, r.id, r.requester, r.payer, r.amount_minor, r.currency, r.note_sealed, "               \
    "r.split_id, r.paid_op_id, COALESCE(o.status, -1), r.claimed, r.expires_at_us, "               \
    "r.created_at_us, r.updated_at_us, " STATUS_EXPR(NOW)

#define REQ_FROM " FROM pay_requests r LEFT JOIN pay_ops o ON o.id = r.paid_op_id "

/* Names and ids ------------------------------------------------------------------------------ */

static const char *const status_names[PAY_REQUEST_STATUS_MAX + 1] = {"pending", "paid", "declined",
                                                                     "cancelled", "expired"};

const char *pay_request_status_name(uint8_t status)
{
    return status <= PAY_REQUEST_STATUS_MAX ? status_names[status] : "unknown";
}

int pay_request_status_parse(const char *text)
{
    for (int s = 0; s <= PAY_REQUEST_STATUS_MAX; s++) {
        if (strcmp(text, status_names[s]) == 0)
            return s;
    }
    return -1;
}

void payments_request_id_new(char out[PAY_ID_BYTES_MAX]) { payments_id_new("req_", out); }
void payments_split_id_new(char out[PAY_ID_BYTES_MAX]) { payments_id_new("spl_", out); }

enum cf_err payments_split_shares(int64_t total_minor, size_t people, int64_t *shares_out)
{
    CF_ASSERT(people >= 1 && people <= PAY_SPLIT_PEOPLE_MAX + 1);
    if (total_minor < (int64_t)people)
        return CF_ERR_INVALID_AMOUNT;
    int64_t base = total_minor / (int64_t)people, rest = total_minor % (int64_t)people;
    int64_t sum = 0;
    for (size_t i = 0; i < people; i++) {
        shares_out[i] = base + ((int64_t)i < rest ? 1 : 0);
        sum += shares_out[i]; /* no overflow: the shares add up to total_minor */
    }
    CF_ASSERT(sum == total_minor && shares_out[people - 1] >= 1);
    return CF_OK;
}

/* Reading ------------------------------------------------------------------------------------ */

static void note_aad(const char *id, char *aad, size_t aad_bytes)
{
    snprintf(aad, aad_bytes, "req:%s:note", id);
}

static void request_from_row(struct payments *p, const struct sql_rows *r, size_t i,
                             struct pay_request *q)
{
    memset(q, 0, sizeof(*q));
    size_t c = 0, note_len = 0;
    q->row = (uint64_t)sql_row_int(r, i, c++);
    pay_copy(q->id, sizeof(q->id), sql_row_text(r, i, c++));
    pay_copy(q->requester, sizeof(q->requester), sql_row_text(r, i, c++));
    pay_copy(q->payer, sizeof(q->payer), sql_row_text(r, i, c++));
    q->amount_minor = sql_row_int(r, i, c++);
    pay_copy(q->currency, sizeof(q->currency), sql_row_text(r, i, c++));
    const uint8_t *note = sql_row_blob(r, i, c++, &note_len);
    pay_copy(q->split_id, sizeof(q->split_id), sql_row_text(r, i, c++));
    pay_copy(q->paid_op_id, sizeof(q->paid_op_id), sql_row_text(r, i, c++));
    q->paid_op_status = (int)sql_row_int(r, i, c++);
    q->claimed = sql_row_int(r, i, c++) != 0;
    q->expires_at_us = sql_row_int(r, i, c++);
    q->created_at_us = sql_row_int(r, i, c++);
    q->updated_at_us = sql_row_int(r, i, c++);
    q->status = (uint8_t)sql_row_int(r, i, c++);
    CF_ASSERT(c == sql_rows_cols(r));
    CF_ASSERT(q->status <= PAY_REQUEST_STATUS_MAX);
    if (note != NULL && note_len > 0) {
        char aad[PAY_ID_BYTES_MAX + 16];
        note_aad(q->id, aad, sizeof(aad));
        if (pay_open(p, aad, note, note_len, q->note, sizeof(q->note)) != CF_OK)
            q->note[0] = '\0'; /* an unreadable note reads as none */
    }
}

static enum cf_err request_read(struct payments *p, struct sqltx *tx, const char *id,
                                int64_t now_us, struct pay_request *out)
{
    struct sql_value v[] = {SQL_T(id), SQL_I(now_us)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, "SELECT " REQ_COLS("$2") REQ_FROM "WHERE r.id = $1", v, 2, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 0)
        err = CF_ERR_NOT_FOUND;
    else
        request_from_row(p, r, 0, out);
    sql_rows_free(r);
    return err;
}

/* Locks the row (until the transaction ends), then reads it with its operation's status. */
static enum cf_err request_lock(struct payments *p, struct sqltx *tx, const char *id,
                                int64_t now_us, struct pay_request *out)
{
    struct sql_value v[] = {SQL_T(id)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        sql_query(tx, "SELECT id FROM pay_requests WHERE id = $1 FOR UPDATE", v, 1, &r);
    if (err != CF_OK)
        return err;
    bool found = sql_rows_n(r) == 1;
    sql_rows_free(r);
    return found ? request_read(p, tx, id, now_us, out) : CF_ERR_NOT_FOUND;
}

enum cf_err payments_request_get(struct payments *p, const char *id, int64_t now_us,
                                 struct pay_request *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = request_read(p, tx, id, now_us, out);
    sql_rollback(tx);
    return err;
}

enum cf_err payments_requests_list(struct payments *p, const struct pay_request_filter *f,
                                   int64_t now_us, struct pay_request *out, size_t max,
                                   size_t *n_out)
{
    CF_ASSERT(f->party != NULL && max <= PAY_LIST_MAX);
    CF_ASSERT(f->direction <= PAY_REQUEST_OUTGOING && f->status <= PAY_REQUEST_STATUS_MAX);
    struct sql_value v[] = {
        SQL_T(f->party),
        SQL_I(now_us),
        SQL_I(f->direction),
        SQL_I(f->status),
        SQL_I(f->before_row > 0 ? f->before_row : (uint64_t)INT64_MAX),
        SQL_I(max),
    };
    struct sql_rows *r = NULL;
    enum cf_err err =
        pay_query1(p,
                   "SELECT " REQ_COLS("$2") REQ_FROM
                   "WHERE ((r.payer = $1 AND $3 <> 2) OR (r.requester = $1 AND $3 <> 1)) "
                   "AND ($4 < 0 OR " STATUS_EXPR("$2") " = $4) AND r.row < $5 "
                                                       "ORDER BY r.row DESC LIMIT $6",
                   v, 6, &r);
    if (err != CF_OK)
        return err;
    size_t rows = sql_rows_n(r) < max ? sql_rows_n(r) : max;
    for (size_t i = 0; i < rows; i++)
        request_from_row(p, r, i, &out[i]);
    *n_out = rows;
    sql_rows_free(r);
    return CF_OK;
}

/* Writing ------------------------------------------------------------------------------------ */

static enum cf_err request_insert(struct payments *p, struct sqltx *tx, const struct pay_request *q,
                                  int64_t now_us)
{
    uint8_t note[PAY_NOTE_BYTES_MAX + VAULT_OVERHEAD_BYTES];
    size_t note_len = 0;
    enum cf_err err = CF_OK;
    if (q->note[0] != '\0') {
        char aad[PAY_ID_BYTES_MAX + 16];
        note_aad(q->id, aad, sizeof(aad));
        err = pay_seal(p, aad, q->note, strlen(q->note), note, sizeof(note), &note_len);
        if (err != CF_OK)
            return err;
    }
    char op_id[PAY_ID_BYTES_MAX];
    payments_op_id_new(PAY_KIND_SEND, op_id);
    struct sql_value v[] = {
        SQL_T(q->id),           SQL_T(q->requester), SQL_T(q->payer),
        SQL_I(q->amount_minor), SQL_T(q->currency),  note_len > 0 ? SQL_B(note, note_len) : SQL_NUL,
        SQL_T(q->split_id),     SQL_T(op_id),        SQL_I(q->expires_at_us),
        SQL_I(now_us),
    };
    return sql_exec(tx,
                    "INSERT INTO pay_requests (id, requester, payer, amount_minor, currency, "
                    "note_sealed, status, split_id, paid_op_id, claimed, expires_at_us, "
                    "created_at_us, updated_at_us) "
                    "VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, 0, $9, $10, $10)",
                    v, 10, NULL);
}

/* Whether the requester may open n more requests. */
static enum cf_err pending_room(struct sqltx *tx, const char *requester, size_t n, int64_t now_us)
{
    struct sql_value v[] = {SQL_T(requester), SQL_I(now_us)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT COUNT(*) FROM pay_requests WHERE requester = $1 "
                                "AND status = 0 AND expires_at_us >= $2",
                                v, 2, &r);
    if (err != CF_OK)
        return err;
    int64_t open = sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return open + (int64_t)n > PAY_REQUESTS_PENDING_MAX ? CF_ERR_CONFLICT : CF_OK;
}

enum cf_err payments_requests_put(struct payments *p, const struct pay_request *r, size_t n,
                                  int64_t now_us)
{
    CF_ASSERT(n >= 1 && n <= PAY_SPLIT_PEOPLE_MAX);
    for (size_t i = 0; i < n; i++) {
        CF_ASSERT(r[i].id[0] != '\0' && r[i].amount_minor > 0);
        CF_ASSERT(strcmp(r[i].requester, r[0].requester) == 0);
        CF_ASSERT(strcmp(r[i].requester, r[i].payer) != 0);
    }
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = pending_room(tx, r[0].requester, n, now_us);
    for (size_t i = 0; i < n && err == CF_OK; i++)
        err = request_insert(p, tx, &r[i], now_us);
    return pay_tx_end(tx, err);
}

/* Runs one UPDATE of request id that must change exactly one row, inside tx. */
static enum cf_err request_update(struct sqltx *tx, const char *sql, struct sql_value *v, size_t n)
{
    int64_t changed = 0;
    enum cf_err err = sql_exec(tx, sql, v, n, &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_CONFLICT;
    return err;
}

static bool op_in_flight(int op_status)
{
    return op_status == PAY_STATUS_PROCESSING || op_status == PAY_STATUS_ACTION_REQUIRED ||
           op_status == PAY_STATUS_PENDING;
}

/* Whether the locked request q may be claimed by op_id now. */
static enum cf_err claim_check(const struct pay_request *q, const char *payer, const char *op_id,
                               int64_t now_us, bool *done)
{
    *done = false;
    if (strcmp(q->payer, payer) != 0)
        return CF_ERR_NOT_FOUND;
    if (strcmp(q->paid_op_id, op_id) != 0)
        return CF_ERR_CONFLICT; /* another payment, or this one failed and was released */
    if (q->claimed) {
        *done = true; /* claimed before: a retry of the same payment */
        return CF_OK;
    }
    if (q->status != PAY_REQUEST_PENDING || q->paid_op_status != PAY_STATUS_PROCESSING ||
        now_us > q->expires_at_us)
        return CF_ERR_CONFLICT;
    return CF_OK;
}

enum cf_err payments_request_claim(struct payments *p, const char *id, const char *payer,
                                   const char *op_id, int64_t now_us)
{
    CF_ASSERT(id != NULL && payer != NULL && op_id != NULL && op_id[0] != '\0');
    CF_ASSERT(now_us > 0);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct pay_request q;
    bool done = false;
    err = request_lock(p, tx, id, now_us, &q);
    if (err == CF_OK)
        err = claim_check(&q, payer, op_id, now_us, &done);
    if (err == CF_OK && !done) {
        struct sql_value v[] = {SQL_I(now_us), SQL_T(id), SQL_T(op_id)};
        err = request_update(tx,
                             "UPDATE pay_requests SET claimed = 1, updated_at_us = $1 "
                             "WHERE id = $2 AND paid_op_id = $3 AND claimed = 0 AND status = 0",
                             v, 3);
    }
    return pay_tx_end(tx, err);
}

enum cf_err payments_request_settle(struct payments *p, const char *id, const char *op_id,
                                    int64_t now_us)
{
    CF_ASSERT(id != NULL && op_id != NULL && op_id[0] != '\0');
    CF_ASSERT(now_us > 0);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct pay_request q;
    err = request_lock(p, tx, id, now_us, &q);
    if (err == CF_OK &&
        (strcmp(q.paid_op_id, op_id) != 0 || q.paid_op_status != PAY_STATUS_COMPLETED))
        err = CF_ERR_CONFLICT;
    if (err == CF_OK) {
        CF_ASSERT(q.status == PAY_REQUEST_PAID); /* the rule: a completed operation pays it */
        struct sql_value v[] = {SQL_I(now_us), SQL_T(id), SQL_T(op_id)};
        err = request_update(tx,
                             "UPDATE pay_requests SET status = 1, updated_at_us = $1 "
                             "WHERE id = $2 AND paid_op_id = $3",
                             v, 3);
    }
    return pay_tx_end(tx, err);
}

enum cf_err payments_request_release(struct payments *p, const char *id, const char *op_id,
                                     int64_t now_us)
{
    CF_ASSERT(id != NULL && op_id != NULL && op_id[0] != '\0');
    CF_ASSERT(now_us > 0);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct pay_request q;
    err = request_lock(p, tx, id, now_us, &q);
    if (err == CF_OK && (strcmp(q.paid_op_id, op_id) != 0 || q.paid_op_status != PAY_STATUS_FAILED))
        err = CF_ERR_CONFLICT;
    if (err == CF_OK) {
        char fresh[PAY_ID_BYTES_MAX];
        payments_op_id_new(PAY_KIND_SEND, fresh);
        CF_ASSERT(strcmp(fresh, op_id) != 0);
        struct sql_value v[] = {SQL_T(fresh), SQL_I(now_us), SQL_T(id), SQL_T(op_id)};
        err = request_update(tx,
                             "UPDATE pay_requests SET paid_op_id = $1, claimed = 0, "
                             "updated_at_us = $2 WHERE id = $3 AND paid_op_id = $4",
                             v, 4);
    }
    return pay_tx_end(tx, err);
}

/* Whether the locked request q may move to `to` by party; *same when it already has. */
static enum cf_err close_check(const struct pay_request *q, const char *party, uint8_t to,
                               bool *same)
{
    *same = false;
    const char *owner = to == PAY_REQUEST_DECLINED ? q->payer : q->requester;
    if (strcmp(owner, party) != 0)
        return CF_ERR_NOT_FOUND;
    if (q->status == to) {
        *same = true;
        return CF_OK;
    }
    if (q->status != PAY_REQUEST_PENDING || op_in_flight(q->paid_op_status))
        return CF_ERR_CONFLICT;
    return CF_OK;
}

enum cf_err payments_request_close(struct payments *p, const char *id, const char *party,
                                   uint8_t to, int64_t now_us, struct pay_request *out)
{
    CF_ASSERT(to == PAY_REQUEST_DECLINED || to == PAY_REQUEST_CANCELLED);
    CF_ASSERT(id != NULL && party != NULL);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct pay_request q;
    bool same = false;
    err = request_lock(p, tx, id, now_us, &q);
    if (err == CF_OK)
        err = close_check(&q, party, to, &same);
    if (err == CF_OK && !same) {
        struct sql_value v[] = {SQL_I(to), SQL_I(now_us), SQL_T(id)};
        err = request_update(tx,
                             "UPDATE pay_requests SET status = $1, updated_at_us = $2 "
                             "WHERE id = $3 AND status = 0",
                             v, 3);
        if (err == CF_OK)
            err = request_read(p, tx, id, now_us, &q);
    }
    if ((err = pay_tx_end(tx, err)) == CF_OK)
        *out = q;
    return err;
}
