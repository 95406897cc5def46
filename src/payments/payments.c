/*
 * payments.c - the payments schema, the handle, and operations (the saga rows).
 *
 * One row per operation in pay_ops; `row` orders history and serves as the cursor. Refund
 * reservations lock their parent payment (FOR UPDATE; SQLite transactions are serial), so
 * concurrent refunds can never pass the captured amount.
 */
#include "payments/payments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "money/fee.h"
#include "money/money.h"
#include "payments/internal.h"

/* Schema ------------------------------------------------------------------------------------- */

/* %1$s: the blob type; %2$s: the row key (an auto-incrementing integer primary key). */
#define PAY_SCHEMA                                                                                 \
    "CREATE TABLE pay_ops (row %2$s, id TEXT NOT NULL UNIQUE, kind INTEGER NOT NULL, "             \
    "status INTEGER NOT NULL, idem TEXT NOT NULL UNIQUE, request_hash %1$s NOT NULL, "             \
    "payer TEXT NOT NULL, payee TEXT NOT NULL, payer_account BIGINT NOT NULL, "                    \
    "payee_account BIGINT NOT NULL, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL, "        \
    "fee_minor BIGINT NOT NULL, credit_minor BIGINT NOT NULL, credit_currency TEXT NOT NULL, "     \
    "rate_e9 BIGINT NOT NULL, quote_id TEXT NOT NULL, parent_id TEXT NOT NULL, "                   \
    "refunded_minor BIGINT NOT NULL DEFAULT 0, fee_returned_minor BIGINT NOT NULL DEFAULT 0, "     \
    "reference TEXT NOT NULL, note_sealed %1$s, gateway_ref TEXT NOT NULL, "                       \
    "instrument TEXT NOT NULL, ledger_seq BIGINT NOT NULL DEFAULT 0, "                             \
    "hold_seq BIGINT NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', "                         \
    "created_at_us BIGINT NOT NULL, updated_at_us BIGINT NOT NULL);"                               \
    "CREATE INDEX pay_ops_payer ON pay_ops(payer, row);"                                           \
    "CREATE INDEX pay_ops_payee ON pay_ops(payee, row);"                                           \
    "CREATE INDEX pay_ops_gateway ON pay_ops(gateway_ref);"                                        \
    "CREATE INDEX pay_ops_status ON pay_ops(status, updated_at_us);"                               \
    "CREATE TABLE pay_system (name TEXT NOT NULL, currency TEXT NOT NULL, "                        \
    "account_id BIGINT NOT NULL, PRIMARY KEY (name, currency));"                                   \
    "CREATE TABLE pay_merchants (merchant_id TEXT PRIMARY KEY, display_name TEXT NOT NULL, "       \
    "mcc TEXT NOT NULL, country TEXT NOT NULL, city TEXT NOT NULL, currency TEXT NOT NULL, "       \
    "bank_sealed %1$s, bank_last4 TEXT NOT NULL, account_id BIGINT NOT NULL, "                     \
    "fee_bps BIGINT NOT NULL, fee_fixed_minor BIGINT NOT NULL, "                                   \
    "payouts_daily INTEGER NOT NULL, created_at_us BIGINT NOT NULL, "                              \
    "updated_at_us BIGINT NOT NULL);"                                                              \
    "CREATE TABLE pay_fees (mcc TEXT PRIMARY KEY, bps BIGINT NOT NULL, "                           \
    "fixed_minor BIGINT NOT NULL);"                                                                \
    "CREATE TABLE pay_qr (id TEXT PRIMARY KEY, merchant_id TEXT NOT NULL, "                        \
    "dynamic INTEGER NOT NULL, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL, "             \
    "reference TEXT NOT NULL, expires_at_us BIGINT NOT NULL, used_by TEXT NOT NULL DEFAULT '', "   \
    "created_at_us BIGINT NOT NULL);"                                                              \
    "CREATE INDEX pay_qr_merchant ON pay_qr(merchant_id);"                                         \
    "CREATE TABLE pay_quotes (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, "                        \
    "binding %1$s NOT NULL, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL, "                \
    "fee_minor BIGINT NOT NULL, credit_minor BIGINT NOT NULL, credit_currency TEXT NOT NULL, "     \
    "rate_e9 BIGINT NOT NULL, expires_at_us BIGINT NOT NULL, "                                     \
    "used_by TEXT NOT NULL DEFAULT '');"                                                           \
    "CREATE TABLE pay_rates (base TEXT NOT NULL, quote TEXT NOT NULL, rate_e9 BIGINT NOT NULL, "   \
    "updated_at_us BIGINT NOT NULL, PRIMARY KEY (base, quote));"                                   \
    "CREATE TABLE pay_events (event_id TEXT PRIMARY KEY, received_at_us BIGINT NOT NULL);"         \
    "CREATE TABLE pay_cards (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, brand TEXT NOT NULL, "    \
    "last4 TEXT NOT NULL, exp_month INTEGER NOT NULL, exp_year INTEGER NOT NULL, "                 \
    "fingerprint %1$s NOT NULL, pan_sealed %1$s NOT NULL, created_at_us BIGINT NOT NULL, "         \
    "removed_at_us BIGINT NOT NULL DEFAULT 0);"                                                    \
    "CREATE INDEX pay_cards_user ON pay_cards(user_id);"

/* Version 4: gateway operations by kind and time, for reconciliation windows. */
#define PAY_INDEX_KIND_TIME "CREATE INDEX pay_ops_kind_time ON pay_ops(kind, created_at_us);"

/* Version 5: one live card per number and customer, and a row to lock per customer, so two
 * cards saved at once on PostgreSQL can neither both be new nor pass the limit. */
#define PAY_CARD_LOCKS                                                                             \
    "CREATE UNIQUE INDEX pay_cards_live ON pay_cards(user_id, fingerprint) "                       \
    "WHERE removed_at_us = 0;"                                                                     \
    "CREATE TABLE pay_locks (name TEXT PRIMARY KEY);"

/* Version 6: cross-currency payments keep their spread, and refunds count what they gave back
 * of the customer's amount and of the spread. */
#define PAY_FX_PAYMENTS                                                                            \
    "ALTER TABLE pay_ops ADD COLUMN spread_minor BIGINT NOT NULL DEFAULT 0;"                       \
    "ALTER TABLE pay_ops ADD COLUMN debit_returned_minor BIGINT NOT NULL DEFAULT 0;"               \
    "ALTER TABLE pay_ops ADD COLUMN spread_returned_minor BIGINT NOT NULL DEFAULT 0;"

/* Version 7: an operation monitoring sent to review holds its payer's money before its legs. */
#define PAY_REVIEW "ALTER TABLE pay_ops ADD COLUMN review INTEGER NOT NULL DEFAULT 0;"

/* Version 8: the ceiling the payee's wallet takes with the operation's credit (its KYC tier's
 * maximum balance), so the legs stay a function of the row; -1 (none) for older rows. */
#define PAY_PAYEE_CEILING                                                                          \
    "ALTER TABLE pay_ops ADD COLUMN payee_max_balance_minor BIGINT NOT NULL DEFAULT -1;"

/* Version 9: the bank account of a top-up or withdrawal waiting for an analyst, sealed (aad
 * "op:<id>:bank"), so an approval can reach the gateway; NULL otherwise and once decided. */
#define PAY_REVIEW_BANK_SQLITE "ALTER TABLE pay_ops ADD COLUMN bank_sealed BLOB;"
#define PAY_REVIEW_BANK_POSTGRES "ALTER TABLE pay_ops ADD COLUMN bank_sealed BYTEA;"

static char schema_sqlite[6144];
static char schema_postgres[6144];

static enum cf_err schema_migrate(struct sqldb *db)
{
    int a = snprintf(schema_sqlite, sizeof(schema_sqlite), PAY_SCHEMA, "BLOB",
                     "INTEGER PRIMARY KEY AUTOINCREMENT");
    int b = snprintf(schema_postgres, sizeof(schema_postgres), PAY_SCHEMA, "BYTEA",
                     "BIGSERIAL PRIMARY KEY");
    CF_ASSERT(a > 0 && (size_t)a < sizeof(schema_sqlite) && b > 0 &&
              (size_t)b < sizeof(schema_postgres));
    const struct sql_migration m[] = {
        {1, schema_sqlite, schema_postgres},
        {2, pay_migration_requests.sqlite, pay_migration_requests.postgres},
        {3, pay_migration_paycodes.sqlite, pay_migration_paycodes.postgres},
        {4, PAY_INDEX_KIND_TIME, PAY_INDEX_KIND_TIME},
        {5, PAY_CARD_LOCKS, PAY_CARD_LOCKS},
        {6, PAY_FX_PAYMENTS, PAY_FX_PAYMENTS},
        {7, PAY_REVIEW, PAY_REVIEW},
        {8, PAY_PAYEE_CEILING, PAY_PAYEE_CEILING},
        {9, PAY_REVIEW_BANK_SQLITE, PAY_REVIEW_BANK_POSTGRES},
    };
    return sqldb_migrate(db, "payments", m, sizeof(m) / sizeof(m[0]));
}

enum cf_err payments_open(struct sqldb *db, payments_vault_fn vault, void *vault_ctx,
                          struct payments **out)
{
    CF_ASSERT(db != NULL && vault != NULL);
    enum cf_err err = schema_migrate(db);
    if (err != CF_OK)
        return err;
    struct payments *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return CF_ERR_NOMEM;
    p->db = db;
    p->vault = vault;
    p->vault_ctx = vault_ctx;
    *out = p;
    return CF_OK;
}

void payments_close(struct payments *p) { free(p); }

/* Shared helpers ----------------------------------------------------------------------------- */

enum cf_err pay_lock(struct sqltx *tx, const char *name)
{
    struct sql_value v[] = {SQL_T(name)};
    enum cf_err err = sql_exec(
        tx, "INSERT INTO pay_locks (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", v, 1, NULL);
    struct sql_rows *r = NULL;
    if (err == CF_OK)
        err = sql_query(tx, "SELECT name FROM pay_locks WHERE name = $1 FOR UPDATE", v, 1, &r);
    sql_rows_free(r);
    return err;
}

enum cf_err pay_tx_end(struct sqltx *tx, enum cf_err err)
{
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

enum cf_err pay_exec1(struct payments *p, const char *sql, const struct sql_value *v, size_t n,
                      int64_t *changes_out)
{
    CF_ASSERT(p != NULL && sql != NULL);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = sql_exec(tx, sql, v, n, changes_out);
    return pay_tx_end(tx, err);
}

enum cf_err pay_query1(struct payments *p, const char *sql, const struct sql_value *v, size_t n,
                       struct sql_rows **out)
{
    CF_ASSERT(p != NULL && sql != NULL && out != NULL);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = sql_query(tx, sql, v, n, out);
    sql_rollback(tx);
    return err;
}

void pay_copy(char *dst, size_t dst_bytes, const char *src)
{
    snprintf(dst, dst_bytes, "%s", src != NULL ? src : "");
}

enum cf_err pay_seal(struct payments *p, const char *aad, const void *pt, size_t n, uint8_t *out,
                     size_t out_bytes, size_t *out_len)
{
    const struct vault *v = p->vault(p->vault_ctx, 0);
    if (v == NULL)
        return CF_ERR_CONFIG;
    return vault_seal(v, pt, n, aad, strlen(aad), out, out_bytes, out_len);
}

enum cf_err pay_open(struct payments *p, const char *aad, const uint8_t *ct, size_t n, char *out,
                     size_t out_bytes)
{
    const struct vault *v = p->vault(p->vault_ctx, vault_sealed_key_id(ct, n));
    size_t len = 0;
    if (v == NULL || out_bytes == 0)
        return CF_ERR_CORRUPT;
    enum cf_err err = vault_open(v, ct, n, aad, strlen(aad), (uint8_t *)out, out_bytes - 1, &len);
    if (err != CF_OK)
        return err;
    out[len] = '\0';
    return CF_OK;
}

/* Names -------------------------------------------------------------------------------------- */

static const char *const kind_names[PAY_KIND_MAX + 1] = {
    NULL, "topup", "withdrawal", "send", "payment", "refund", "payout", "conversion", "hold"};
static const char *const kind_prefixes[PAY_KIND_MAX + 1] = {NULL,   "top_", "wdr_", "snd_", "pay_",
                                                            "rfd_", "pyo_", "cnv_", "hld_"};

const char *pay_kind_name(uint8_t kind)
{
    return kind >= 1 && kind <= PAY_KIND_MAX ? kind_names[kind] : "unknown";
}

int pay_kind_parse(const char *text)
{
    for (int k = 1; k <= PAY_KIND_MAX; k++) {
        if (strcmp(text, kind_names[k]) == 0)
            return k;
    }
    return -1;
}

const char *pay_status_name(uint8_t status)
{
    static const char *const names[] = {"processing", "action_required", "pending", "completed",
                                        "failed"};
    return status < sizeof(names) / sizeof(names[0]) ? names[status] : "unknown";
}

void payments_id_new(const char *prefix, char out[PAY_ID_BYTES_MAX])
{
    CF_ASSERT(prefix != NULL && out != NULL);
    uint64_t v = 0;
    while (v == 0)
        hash_random(&v, sizeof(v));
    char text[ID_TEXT_BYTES_MAX];
    id_format(prefix, v, text);
    pay_copy(out, PAY_ID_BYTES_MAX, text);
    CF_ASSERT(strlen(out) == strlen(text)); /* the id fits: never truncated */
}

void payments_op_id_new(enum pay_kind kind, char out[PAY_ID_BYTES_MAX])
{
    CF_ASSERT(kind >= 1 && kind <= PAY_KIND_MAX);
    payments_id_new(kind_prefixes[kind], out);
}

/* Operations --------------------------------------------------------------------------------- */

#define OP_COLS                                                                                    \
    "row, id, kind, status, idem, request_hash, payer, payee, payer_account, payee_account, "      \
    "amount_minor, currency, fee_minor, credit_minor, credit_currency, rate_e9, quote_id, "        \
    "parent_id, refunded_minor, fee_returned_minor, reference, note_sealed, gateway_ref, "         \
    "instrument, ledger_seq, hold_seq, error, created_at_us, updated_at_us, spread_minor, "        \
    "debit_returned_minor, spread_returned_minor, review, payee_max_balance_minor"

static void op_note_open(struct payments *p, struct pay_op *op, const uint8_t *ct, size_t n)
{
    op->note[0] = '\0';
    if (ct == NULL || n == 0)
        return;
    char aad[PAY_ID_BYTES_MAX + 16];
    snprintf(aad, sizeof(aad), "op:%s:note", op->id);
    if (pay_open(p, aad, ct, n, op->note, sizeof(op->note)) != CF_OK)
        op->note[0] = '\0'; /* an erased or unreadable note reads as none */
}

static void op_from_row(struct payments *p, const struct sql_rows *r, size_t i, struct pay_op *op)
{
    memset(op, 0, sizeof(*op));
    size_t c = 0, hash_len = 0, note_len = 0;
    op->row = (uint64_t)sql_row_int(r, i, c++);
    pay_copy(op->id, sizeof(op->id), sql_row_text(r, i, c++));
    op->kind = (uint8_t)sql_row_int(r, i, c++);
    op->status = (uint8_t)sql_row_int(r, i, c++);
    pay_copy(op->idem, sizeof(op->idem), sql_row_text(r, i, c++));
    const uint8_t *h = sql_row_blob(r, i, c++, &hash_len);
    if (h != NULL && hash_len == HASH_BYTES)
        memcpy(op->request_hash, h, HASH_BYTES);
    pay_copy(op->payer, sizeof(op->payer), sql_row_text(r, i, c++));
    pay_copy(op->payee, sizeof(op->payee), sql_row_text(r, i, c++));
    op->payer_account = (uint64_t)sql_row_int(r, i, c++);
    op->payee_account = (uint64_t)sql_row_int(r, i, c++);
    op->amount_minor = sql_row_int(r, i, c++);
    pay_copy(op->currency, sizeof(op->currency), sql_row_text(r, i, c++));
    op->fee_minor = sql_row_int(r, i, c++);
    op->credit_minor = sql_row_int(r, i, c++);
    pay_copy(op->credit_currency, sizeof(op->credit_currency), sql_row_text(r, i, c++));
    op->rate_e9 = sql_row_int(r, i, c++);
    pay_copy(op->quote_id, sizeof(op->quote_id), sql_row_text(r, i, c++));
    pay_copy(op->parent_id, sizeof(op->parent_id), sql_row_text(r, i, c++));
    op->refunded_minor = sql_row_int(r, i, c++);
    op->fee_returned_minor = sql_row_int(r, i, c++);
    pay_copy(op->reference, sizeof(op->reference), sql_row_text(r, i, c++));
    const uint8_t *note = sql_row_blob(r, i, c++, &note_len);
    pay_copy(op->gateway_ref, sizeof(op->gateway_ref), sql_row_text(r, i, c++));
    pay_copy(op->instrument, sizeof(op->instrument), sql_row_text(r, i, c++));
    op->ledger_seq = (uint64_t)sql_row_int(r, i, c++);
    op->hold_seq = (uint64_t)sql_row_int(r, i, c++);
    pay_copy(op->error, sizeof(op->error), sql_row_text(r, i, c++));
    op->created_at_us = sql_row_int(r, i, c++);
    op->updated_at_us = sql_row_int(r, i, c++);
    op->spread_minor = sql_row_int(r, i, c++);
    op->debit_returned_minor = sql_row_int(r, i, c++);
    op->spread_returned_minor = sql_row_int(r, i, c++);
    op->review = sql_row_int(r, i, c++) != 0;
    op->payee_max_balance_minor = sql_row_int(r, i, c++);
    CF_ASSERT(c == sql_rows_cols(r));
    op_note_open(p, op, note, note_len);
}

/* One operation by a unique column (id, idem or gateway_ref). */
static enum cf_err op_select(struct payments *p, struct sqltx *tx, const char *sql,
                             const char *value, struct pay_op *out)
{
    struct sql_value prm[] = {SQL_T(value)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, sql, prm, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 0)
        err = CF_ERR_NOT_FOUND;
    else
        op_from_row(p, r, 0, out);
    sql_rows_free(r);
    return err;
}

static enum cf_err op_get_tx(struct payments *p, struct sqltx *tx, const char *id, bool lock,
                             struct pay_op *out)
{
    return op_select(p, tx,
                     lock ? "SELECT " OP_COLS " FROM pay_ops WHERE id = $1 FOR UPDATE"
                          : "SELECT " OP_COLS " FROM pay_ops WHERE id = $1",
                     id, out);
}

static enum cf_err op_insert(struct payments *p, struct sqltx *tx, const struct pay_op *op,
                             int64_t now_us)
{
    uint8_t note[PAY_NOTE_BYTES_MAX + VAULT_OVERHEAD_BYTES];
    size_t note_len = 0;
    enum cf_err err = CF_OK;
    if (op->note[0] != '\0') {
        char aad[PAY_ID_BYTES_MAX + 16];
        snprintf(aad, sizeof(aad), "op:%s:note", op->id);
        err = pay_seal(p, aad, op->note, strlen(op->note), note, sizeof(note), &note_len);
        if (err != CF_OK)
            return err;
    }
    struct sql_value v[] = {
        SQL_T(op->id),
        SQL_I(op->kind),
        SQL_T(op->idem),
        SQL_B(op->request_hash, HASH_BYTES),
        SQL_T(op->payer),
        SQL_T(op->payee),
        SQL_I(op->payer_account),
        SQL_I(op->payee_account),
        SQL_I(op->amount_minor),
        SQL_T(op->currency),
        SQL_I(op->fee_minor),
        SQL_I(op->credit_minor),
        SQL_T(op->credit_currency),
        SQL_I(op->rate_e9),
        SQL_T(op->quote_id),
        SQL_T(op->parent_id),
    };
    err = sql_exec(tx,
                   "INSERT INTO pay_ops (id, kind, status, idem, request_hash, payer, payee, "
                   "payer_account, payee_account, amount_minor, currency, fee_minor, "
                   "credit_minor, credit_currency, rate_e9, quote_id, parent_id, reference, "
                   "note_sealed, gateway_ref, instrument, created_at_us, updated_at_us) VALUES "
                   "($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, "
                   "'', NULL, '', '', 0, 0)",
                   v, 16, NULL);
    if (err != CF_OK)
        return err;
    /* the rest in a second statement: the facade takes at most SQL_PARAMS_MAX parameters */
    struct sql_value w[] = {SQL_T(op->reference),
                            note_len > 0 ? SQL_B(note, note_len) : SQL_NUL,
                            SQL_T(op->gateway_ref),
                            SQL_T(op->instrument),
                            SQL_I(now_us),
                            SQL_I(op->spread_minor),
                            SQL_I(op->review ? 1 : 0),
                            SQL_I(op->payee_max_balance_minor),
                            SQL_T(op->id)};
    return sql_exec(tx,
                    "UPDATE pay_ops SET reference = $1, note_sealed = $2, gateway_ref = $3, "
                    "instrument = $4, created_at_us = $5, updated_at_us = $5, spread_minor = $6, "
                    "review = $7, payee_max_balance_minor = $8 WHERE id = $9",
                    w, 9, NULL);
}

/* Prices refund *op's shares from its locked parent (payments_op_begin's contract). */
static enum cf_err refund_price(const struct pay_op *parent, struct pay_op *op)
{
    int64_t captured = parent->credit_minor, before = parent->refunded_minor;
    if (op->amount_minor <= 0 || captured <= 0 || before < 0 || op->amount_minor > captured - before)
        return CF_ERR_REFUND_EXCEEDS;
    enum cf_err err = CF_OK;
    op->fee_minor = 0;
    if (op->return_fee && parent->fee_minor > 0)
        err = fee_prorate_share(parent->fee_minor, captured, before, op->amount_minor,
                                parent->fee_returned_minor, &op->fee_minor);
    bool fx = strcmp(parent->currency, parent->credit_currency) != 0;
    op->credit_minor = op->amount_minor;
    op->spread_minor = 0;
    if (err == CF_OK && fx)
        err = fee_prorate_share(parent->amount_minor, captured, before, op->amount_minor,
                                parent->debit_returned_minor, &op->credit_minor);
    if (err == CF_OK && fx && parent->spread_minor > 0)
        err = fee_prorate_share(parent->spread_minor, captured, before, op->amount_minor,
                                parent->spread_returned_minor, &op->spread_minor);
    if (err != CF_OK)
        return err;
    /* the refund runs the payment backwards, in the merchant's currency */
    CF_ASSERT(strcmp(op->currency, parent->credit_currency) == 0 &&
              strcmp(op->credit_currency, parent->currency) == 0);
    return CF_OK;
}

/* A refund reserves its amount and shares on its parent payment, priced under the parent's
 * lock so that concurrent refunds see each other's counters. */
static enum cf_err refund_reserve(struct payments *p, struct sqltx *tx, struct pay_op *op,
                                  int64_t now_us)
{
    struct pay_op parent;
    enum cf_err err = op_get_tx(p, tx, op->parent_id, true, &parent);
    if (err == CF_ERR_NOT_FOUND)
        return CF_ERR_TRANSFER_NOT_FOUND;
    if (err != CF_OK)
        return err;
    if (parent.kind != PAY_KIND_PAYMENT || parent.status != PAY_STATUS_COMPLETED)
        return CF_ERR_CONFLICT;
    if ((err = refund_price(&parent, op)) != CF_OK)
        return err;
    struct sql_value v[] = {SQL_I(op->amount_minor), SQL_I(op->fee_minor),
                            SQL_I(op->credit_minor), SQL_I(op->spread_minor),
                            SQL_I(now_us),           SQL_T(parent.id)};
    return sql_exec(tx,
                    "UPDATE pay_ops SET refunded_minor = refunded_minor + $1, "
                    "fee_returned_minor = fee_returned_minor + $2, "
                    "debit_returned_minor = debit_returned_minor + $3, "
                    "spread_returned_minor = spread_returned_minor + $4, updated_at_us = $5 "
                    "WHERE id = $6",
                    v, 6, NULL);
}

/* What an outgoing operation counts against its payer's limits. */
static enum cf_err limits_total(const struct pay_op *op, int64_t *out)
{
    *out = op->amount_minor;
    return op->kind == PAY_KIND_SEND ? money_add(op->amount_minor, op->fee_minor, out) : CF_OK;
}

/* The payer's daily and monthly outgoing limits (payments_op_begin's contract). */
static enum cf_err limits_check(struct sqltx *tx, const struct pay_op *op)
{
    if (!op->limits_on || (op->daily_out_minor < 0 && op->monthly_out_minor < 0))
        return CF_OK;
    CF_ASSERT(op->payer[0] != '\0' && op->month_start_us <= op->day_start_us);
    char lock[PAY_PARTY_BYTES_MAX + 16];
    snprintf(lock, sizeof(lock), "limits:%s", op->payer);
    enum cf_err err = pay_lock(tx, lock);
    struct sql_value v[] = {SQL_T(op->payer), SQL_T(op->currency), SQL_I(op->day_start_us),
                            SQL_I(op->month_start_us)};
    struct sql_rows *r = NULL;
    if (err == CF_OK)
        err = sql_query(tx,
                        "SELECT COALESCE(SUM(CASE WHEN created_at_us >= $3 THEN amount_minor + "
                        "(CASE WHEN kind = 3 THEN fee_minor ELSE 0 END) ELSE 0 END), 0), "
                        "COALESCE(SUM(amount_minor + (CASE WHEN kind = 3 THEN fee_minor ELSE 0 "
                        "END)), 0) FROM pay_ops WHERE payer = $1 AND currency = $2 AND "
                        "status <> 4 AND kind IN (2, 3, 4, 8) AND created_at_us >= $4",
                        v, 4, &r);
    if (err != CF_OK)
        return err;
    int64_t day = sql_rows_n(r) == 1 ? sql_row_int(r, 0, 0) : 0;
    int64_t month = sql_rows_n(r) == 1 ? sql_row_int(r, 0, 1) : 0;
    sql_rows_free(r);
    int64_t total = 0;
    if ((err = limits_total(op, &total)) != CF_OK)
        return err;
    if ((op->daily_out_minor >= 0 && (day > op->daily_out_minor - total)) ||
        (op->monthly_out_minor >= 0 && (month > op->monthly_out_minor - total)))
        return CF_ERR_LIMIT_EXCEEDED;
    return CF_OK;
}

enum cf_err payments_op_begin(struct payments *p, const struct pay_op *op, int64_t now_us,
                              struct pay_op *out, bool *existed)
{
    CF_ASSERT(op->id[0] != '\0' && op->idem[0] != '\0');
    CF_ASSERT(op->kind >= 1 && op->kind <= PAY_KIND_MAX);
    CF_ASSERT(op->payee_max_balance_minor >= -1); /* api_risk_limits sets it */
    *existed = false;
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = op_select(p, tx, "SELECT " OP_COLS " FROM pay_ops WHERE idem = $1", op->idem, out);
    if (err == CF_OK) {
        *existed = true;
        sql_rollback(tx);
        return CF_OK;
    }
    if (err == CF_ERR_NOT_FOUND)
        err = CF_OK;
    struct pay_op priced = *op; /* a refund's shares are priced under its parent's lock */
    if (err == CF_OK && op->parent_id[0] != '\0')
        err = refund_reserve(p, tx, &priced, now_us);
    if (err == CF_OK)
        err = limits_check(tx, op);
    if (err == CF_OK)
        err = op_insert(p, tx, &priced, now_us);
    if (err == CF_OK)
        err = op_get_tx(p, tx, op->id, false, out);
    err = pay_tx_end(tx, err);
    if (err == CF_ERR_STORAGE_CONFLICT) {
        /* another request with the same key won the race: answer with its operation */
        if (sql_begin(p->db, &tx) != CF_OK)
            return err;
        enum cf_err e2 =
            op_select(p, tx, "SELECT " OP_COLS " FROM pay_ops WHERE idem = $1", op->idem, out);
        sql_rollback(tx);
        if (e2 == CF_OK) {
            *existed = true;
            return CF_OK;
        }
    }
    return err;
}

enum cf_err payments_op_get(struct payments *p, const char *id, struct pay_op *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = op_get_tx(p, tx, id, false, out);
    sql_rollback(tx);
    return err;
}

/* The bank account kept for a review -------------------------------------------------------- */

static void op_bank_aad(const char *op_id, char aad[PAY_ID_BYTES_MAX + 16])
{
    snprintf(aad, PAY_ID_BYTES_MAX + 16, "op:%s:bank", op_id);
}

enum cf_err payments_op_bank_keep(struct payments *p, const char *op_id, const char *bank)
{
    CF_ASSERT(p != NULL && op_id != NULL && bank != NULL);
    size_t n = strlen(bank);
    if (n == 0 || n >= PAY_OP_BANK_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    uint8_t sealed[PAY_OP_BANK_BYTES_MAX + VAULT_OVERHEAD_BYTES];
    size_t sealed_len = 0;
    char aad[PAY_ID_BYTES_MAX + 16];
    op_bank_aad(op_id, aad);
    enum cf_err err = pay_seal(p, aad, bank, n, sealed, sizeof(sealed), &sealed_len);
    struct sqltx *tx = NULL;
    if (err == CF_OK)
        err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_B(sealed, sealed_len), SQL_T(op_id)};
    int64_t changed = 0;
    err = sql_exec(tx, "UPDATE pay_ops SET bank_sealed = $1 WHERE id = $2 AND review = 1", v, 2,
                   &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_NOT_FOUND;
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

enum cf_err payments_op_bank_get(struct payments *p, const char *op_id,
                                 char bank_out[PAY_OP_BANK_BYTES_MAX])
{
    CF_ASSERT(p != NULL && op_id != NULL && bank_out != NULL);
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(op_id)};
    err = sql_query(tx, "SELECT bank_sealed FROM pay_ops WHERE id = $1", v, 1, &r);
    sql_rollback(tx);
    size_t n = 0;
    const uint8_t *ct = err == CF_OK && sql_rows_n(r) == 1 ? sql_row_blob(r, 0, 0, &n) : NULL;
    if (err == CF_OK && ct == NULL)
        err = CF_ERR_NOT_FOUND;
    char aad[PAY_ID_BYTES_MAX + 16];
    op_bank_aad(op_id, aad);
    if (err == CF_OK)
        err = pay_open(p, aad, ct, n, bank_out, PAY_OP_BANK_BYTES_MAX);
    sql_rows_free(r);
    return err;
}

enum cf_err payments_op_bank_forget(struct payments *p, const char *op_id)
{
    CF_ASSERT(p != NULL && op_id != NULL);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(op_id)};
    err = sql_exec(tx, "UPDATE pay_ops SET bank_sealed = NULL WHERE id = $1", v, 1, NULL);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

enum cf_err payments_op_by_idem(struct payments *p, const char *idem, struct pay_op *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = op_select(p, tx, "SELECT " OP_COLS " FROM pay_ops WHERE idem = $1", idem, out);
    sql_rollback(tx);
    return err;
}

enum cf_err payments_op_by_gateway_ref(struct payments *p, const char *ref, struct pay_op *out)
{
    if (ref == NULL || ref[0] == '\0')
        return CF_ERR_NOT_FOUND;
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = op_select(p, tx, "SELECT " OP_COLS " FROM pay_ops WHERE gateway_ref = $1", ref, out);
    sql_rollback(tx);
    return err;
}

/* A failed refund gives back what it reserved on its parent. */
static enum cf_err refund_unreserve(struct sqltx *tx, const struct pay_op *op, int64_t now_us)
{
    struct sql_value v[] = {SQL_I(op->amount_minor), SQL_I(op->fee_minor),
                            SQL_I(op->credit_minor), SQL_I(op->spread_minor),
                            SQL_I(now_us),           SQL_T(op->parent_id)};
    return sql_exec(tx,
                    "UPDATE pay_ops SET refunded_minor = refunded_minor - $1, "
                    "fee_returned_minor = fee_returned_minor - $2, "
                    "debit_returned_minor = debit_returned_minor - $3, "
                    "spread_returned_minor = spread_returned_minor - $4, updated_at_us = $5 "
                    "WHERE id = $6",
                    v, 6, NULL);
}

enum cf_err payments_op_update(struct payments *p, const char *id, uint32_t from_mask,
                               const struct pay_op_update *u, int64_t now_us)
{
    struct sqltx *tx = NULL;
    enum cf_err err = u->relaxed ? sql_begin_relaxed(p->db, &tx) : sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct pay_op op;
    err = op_get_tx(p, tx, id, true, &op);
    if (err == CF_OK && (from_mask & (1u << op.status)) == 0)
        err = CF_ERR_CONFLICT;
    if (err == CF_OK) {
        struct sql_value v[] = {
            SQL_I(u->status),
            SQL_I(u->ledger_seq != 0 ? u->ledger_seq : op.ledger_seq),
            SQL_I(u->hold_seq != 0 ? u->hold_seq : op.hold_seq),
            SQL_T(u->gateway_ref != NULL && u->gateway_ref[0] != '\0' ? u->gateway_ref
                                                                      : op.gateway_ref),
            SQL_T(u->error != NULL && u->error[0] != '\0' ? u->error : op.error),
            SQL_I(now_us),
            SQL_T(id),
            SQL_I(op.status),
        };
        int64_t changed = 0;
        err = sql_exec(tx,
                       "UPDATE pay_ops SET status = $1, ledger_seq = $2, hold_seq = $3, "
                       "gateway_ref = $4, error = $5, updated_at_us = $6 "
                       "WHERE id = $7 AND status = $8",
                       v, 8, &changed);
        if (err == CF_OK && changed != 1)
            err = CF_ERR_CONFLICT;
    }
    if (err == CF_OK && op.kind == PAY_KIND_REFUND && u->status == PAY_STATUS_FAILED &&
        op.status != PAY_STATUS_FAILED && op.parent_id[0] != '\0')
        err = refund_unreserve(tx, &op, now_us); /* once: only on the way into FAILED */
    return pay_tx_end(tx, err);
}

static enum cf_err ops_rows(struct payments *p, struct sqltx *tx, const char *sql,
                            const struct sql_value *v, size_t n, struct pay_op *out, size_t max,
                            size_t *n_out)
{
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, sql, v, n, &r);
    if (err != CF_OK)
        return err;
    size_t rows = sql_rows_n(r);
    for (size_t i = 0; i < rows && i < max; i++)
        op_from_row(p, r, i, &out[i]);
    *n_out = rows < max ? rows : max;
    sql_rows_free(r);
    return CF_OK;
}

bool payments_op_visible(const struct pay_op *op, const char *party)
{
    _Static_assert(PAY_STATUS_COMPLETED == 3 && PAY_KIND_HOLD == 8,
                   "payments_ops_list's SQL names the status 3 and the kind 8");
    if (strcmp(op->payer, party) == 0)
        return true;
    return strcmp(op->payee, party) == 0 &&
           (op->payer[0] == '\0' || op->status == PAY_STATUS_COMPLETED ||
            op->kind == PAY_KIND_HOLD);
}

enum cf_err payments_ops_list(struct payments *p, const struct pay_filter *f, struct pay_op *out,
                              size_t max, size_t *n_out)
{
    CF_ASSERT(f->party != NULL && max <= PAY_LIST_MAX);
    struct sql_value v[] = {
        SQL_T(f->party),
        SQL_I(f->from_us),
        SQL_I(f->to_us > 0 ? f->to_us : INT64_MAX),
        SQL_I(f->kind),
        SQL_T(f->currency != NULL ? f->currency : ""),
        SQL_I(f->before_row > 0 ? f->before_row : (uint64_t)INT64_MAX),
        SQL_I(max),
    };
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = ops_rows(p, tx,
                   "SELECT " OP_COLS " FROM pay_ops WHERE (payer = $1 OR (payee = $1 AND "
                   "(payer = '' OR status = 3 OR kind = 8))) "
                   "AND created_at_us >= $2 AND created_at_us < $3 AND ($4 = 0 OR kind = $4) "
                   "AND ($5 = '' OR currency = $5 OR credit_currency = $5) AND row < $6 "
                   "ORDER BY row DESC LIMIT $7",
                   v, 7, out, max, n_out);
    sql_rollback(tx);
    return err;
}

enum cf_err payments_ops_stuck(struct payments *p, int64_t older_than_us, uint64_t after_row,
                               struct pay_op *out, size_t max, size_t *n_out)
{
    CF_ASSERT(max <= PAY_LIST_MAX);
    struct sql_value v[] = {SQL_I(older_than_us), SQL_I(max), SQL_I(after_row)};
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = ops_rows(p, tx,
                   "SELECT " OP_COLS " FROM pay_ops WHERE status = 0 AND updated_at_us < $1 "
                   "AND row > $3 ORDER BY row LIMIT $2",
                   v, 3, out, max, n_out);
    sql_rollback(tx);
    return err;
}

enum cf_err payments_ops_completed_since(struct payments *p, int64_t after_us, uint64_t after_row,
                                         struct pay_op *out, size_t max, size_t *n_out)
{
    CF_ASSERT(max <= PAY_LIST_MAX && after_row <= (uint64_t)INT64_MAX);
    struct sql_value v[] = {SQL_I(after_us), SQL_I(after_row), SQL_I(max)};
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = ops_rows(p, tx,
                   "SELECT " OP_COLS " FROM pay_ops WHERE status = 3 AND (updated_at_us > $1 "
                   "OR (updated_at_us = $1 AND row > $2)) ORDER BY updated_at_us, row LIMIT $3",
                   v, 3, out, max, n_out);
    sql_rollback(tx);
    return err;
}
