/*
 * catalog.c - the payments tables other than operations: system accounts, merchant profiles,
 * fee schedules, QR codes, quotes, exchange rates and gateway callback ids.
 */
#include <stdio.h>
#include <string.h>

#include "payments/internal.h"

/* System accounts ---------------------------------------------------------------------------- */

enum cf_err payments_system_get(struct payments *p, const char *name, const char *currency,
                                uint64_t *account_id_out)
{
    struct sql_value v[] = {SQL_T(name), SQL_T(currency)};
    struct sql_rows *r = NULL;
    enum cf_err err = pay_query1(
        p, "SELECT account_id FROM pay_system WHERE name = $1 AND currency = $2", v, 2, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 0)
        err = CF_ERR_NOT_FOUND;
    else
        *account_id_out = (uint64_t)sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return err;
}

enum cf_err payments_system_put(struct payments *p, const char *name, const char *currency,
                                uint64_t account_id, uint64_t *account_id_out)
{
    CF_ASSERT(account_id > 0 && strlen(name) < PAY_SYSTEM_NAME_MAX);
    struct sql_value v[] = {SQL_T(name), SQL_T(currency), SQL_I(account_id)};
    enum cf_err err = pay_exec1(p,
                                "INSERT INTO pay_system (name, currency, account_id) "
                                "VALUES ($1, $2, $3) ON CONFLICT (name, currency) DO NOTHING",
                                v, 3, NULL);
    if (err != CF_OK)
        return err;
    return payments_system_get(p, name, currency, account_id_out);
}

/* Merchants ---------------------------------------------------------------------------------- */

static enum cf_err bank_seal(struct payments *p, const struct pay_merchant *m, uint8_t *out,
                             size_t out_bytes, size_t *len_out)
{
    char aad[PAY_PARTY_BYTES_MAX + 16];
    snprintf(aad, sizeof(aad), "merchant:%s:bank", m->merchant_id);
    return pay_seal(p, aad, m->bank_account, strlen(m->bank_account), out, out_bytes, len_out);
}

enum cf_err payments_merchant_put(struct payments *p, const struct pay_merchant *m, int64_t now_us)
{
    uint8_t bank[64 + VAULT_OVERHEAD_BYTES];
    size_t bank_len = 0;
    enum cf_err err = bank_seal(p, m, bank, sizeof(bank), &bank_len);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {
        SQL_T(m->merchant_id),
        SQL_T(m->display_name),
        SQL_T(m->mcc),
        SQL_T(m->country),
        SQL_T(m->city),
        SQL_T(m->currency),
        SQL_B(bank, bank_len),
        SQL_T(m->bank_last4),
        SQL_I(m->account_id),
        SQL_I(m->fee_bps),
        SQL_I(m->fee_fixed_minor),
        SQL_I(m->payouts_daily ? 1 : 0),
        SQL_I(now_us),
    };
    return pay_exec1(
        p,
        "INSERT INTO pay_merchants (merchant_id, display_name, mcc, country, city, "
        "currency, bank_sealed, bank_last4, account_id, fee_bps, fee_fixed_minor, "
        "payouts_daily, created_at_us, updated_at_us) VALUES ($1, $2, $3, $4, $5, $6, "
        "$7, $8, $9, $10, $11, $12, $13, $13) ON CONFLICT (merchant_id) DO UPDATE SET "
        "display_name = excluded.display_name, mcc = excluded.mcc, "
        "country = excluded.country, city = excluded.city, "
        "bank_sealed = excluded.bank_sealed, bank_last4 = excluded.bank_last4, "
        "fee_bps = excluded.fee_bps, fee_fixed_minor = excluded.fee_fixed_minor, "
        "payouts_daily = excluded.payouts_daily, updated_at_us = excluded.updated_at_us",
        v, 13, NULL);
}

#define MERCHANT_COLS                                                                              \
    "merchant_id, display_name, mcc, country, city, currency, bank_sealed, bank_last4, "           \
    "account_id, fee_bps, fee_fixed_minor, payouts_daily, created_at_us"

static void merchant_from_row(struct payments *p, const struct sql_rows *r, size_t i,
                              bool with_bank, struct pay_merchant *m)
{
    memset(m, 0, sizeof(*m));
    size_t bank_len = 0;
    pay_copy(m->merchant_id, sizeof(m->merchant_id), sql_row_text(r, i, 0));
    pay_copy(m->display_name, sizeof(m->display_name), sql_row_text(r, i, 1));
    pay_copy(m->mcc, sizeof(m->mcc), sql_row_text(r, i, 2));
    pay_copy(m->country, sizeof(m->country), sql_row_text(r, i, 3));
    pay_copy(m->city, sizeof(m->city), sql_row_text(r, i, 4));
    pay_copy(m->currency, sizeof(m->currency), sql_row_text(r, i, 5));
    const uint8_t *bank = sql_row_blob(r, i, 6, &bank_len);
    pay_copy(m->bank_last4, sizeof(m->bank_last4), sql_row_text(r, i, 7));
    m->account_id = (uint64_t)sql_row_int(r, i, 8);
    m->fee_bps = sql_row_int(r, i, 9);
    m->fee_fixed_minor = sql_row_int(r, i, 10);
    m->payouts_daily = sql_row_int(r, i, 11) != 0;
    m->created_at_us = sql_row_int(r, i, 12);
    if (with_bank && bank != NULL) {
        char aad[PAY_PARTY_BYTES_MAX + 16];
        snprintf(aad, sizeof(aad), "merchant:%s:bank", m->merchant_id);
        if (pay_open(p, aad, bank, bank_len, m->bank_account, sizeof(m->bank_account)) != CF_OK)
            m->bank_account[0] = '\0';
    }
}

enum cf_err payments_merchant_get(struct payments *p, const char *merchant_id, bool with_bank,
                                  struct pay_merchant *out)
{
    struct sql_value v[] = {SQL_T(merchant_id)};
    struct sql_rows *r = NULL;
    enum cf_err err = pay_query1(
        p, "SELECT " MERCHANT_COLS " FROM pay_merchants WHERE merchant_id = $1", v, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 0)
        err = CF_ERR_NOT_FOUND;
    else
        merchant_from_row(p, r, 0, with_bank, out);
    sql_rows_free(r);
    return err;
}

enum cf_err payments_merchants_daily(struct payments *p, struct pay_merchant *out, size_t max,
                                     size_t *n_out)
{
    struct sql_value v[] = {SQL_I(max)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        pay_query1(p,
                   "SELECT " MERCHANT_COLS " FROM pay_merchants WHERE payouts_daily = 1 "
                   "ORDER BY merchant_id LIMIT $1",
                   v, 1, &r);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r) < max ? sql_rows_n(r) : max;
    for (size_t i = 0; i < n; i++)
        merchant_from_row(p, r, i, true, &out[i]);
    *n_out = n;
    sql_rows_free(r);
    return CF_OK;
}

/* Fees --------------------------------------------------------------------------------------- */

enum cf_err payments_fee_put(struct payments *p, const struct pay_fee_row *f)
{
    struct sql_value v[] = {SQL_T(f->mcc), SQL_I(f->bps), SQL_I(f->fixed_minor)};
    return pay_exec1(p,
                     "INSERT INTO pay_fees (mcc, bps, fixed_minor) VALUES ($1, $2, $3) "
                     "ON CONFLICT (mcc) DO UPDATE SET bps = excluded.bps, "
                     "fixed_minor = excluded.fixed_minor",
                     v, 3, NULL);
}

enum cf_err payments_fee_get(struct payments *p, const char *mcc, struct pay_fee_row *out)
{
    struct sql_value v[] = {SQL_T(mcc)};
    struct sql_rows *r = NULL;
    enum cf_err err = pay_query1(p,
                                 "SELECT mcc, bps, fixed_minor FROM pay_fees WHERE mcc = $1 OR "
                                 "mcc = '0000' ORDER BY mcc DESC",
                                 v, 1, &r);
    if (err != CF_OK)
        return err;
    memset(out, 0, sizeof(*out));
    pay_copy(out->mcc, sizeof(out->mcc), mcc);
    if (sql_rows_n(r) > 0) { /* the MCC's own row sorts before "0000" */
        pay_copy(out->mcc, sizeof(out->mcc), sql_row_text(r, 0, 0));
        out->bps = sql_row_int(r, 0, 1);
        out->fixed_minor = sql_row_int(r, 0, 2);
    }
    sql_rows_free(r);
    return CF_OK;
}

enum cf_err payments_fee_list(struct payments *p, struct pay_fee_row *out, size_t max,
                              size_t *n_out)
{
    struct sql_value v[] = {SQL_I(max)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        pay_query1(p, "SELECT mcc, bps, fixed_minor FROM pay_fees ORDER BY mcc LIMIT $1", v, 1, &r);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r) < max ? sql_rows_n(r) : max;
    for (size_t i = 0; i < n; i++) {
        pay_copy(out[i].mcc, sizeof(out[i].mcc), sql_row_text(r, i, 0));
        out[i].bps = sql_row_int(r, i, 1);
        out[i].fixed_minor = sql_row_int(r, i, 2);
    }
    *n_out = n;
    sql_rows_free(r);
    return CF_OK;
}

/* QR codes ----------------------------------------------------------------------------------- */

enum cf_err payments_qr_put(struct payments *p, const struct pay_qr *q)
{
    struct sql_value v[] = {SQL_T(q->id),
                            SQL_T(q->merchant_id),
                            SQL_I(q->dynamic ? 1 : 0),
                            SQL_I(q->amount_minor),
                            SQL_T(q->currency),
                            SQL_T(q->reference),
                            SQL_I(q->expires_at_us),
                            SQL_I(q->created_at_us)};
    return pay_exec1(
        p,
        "INSERT INTO pay_qr (id, merchant_id, dynamic, amount_minor, currency, "
        "reference, expires_at_us, created_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        v, 8, NULL);
}

enum cf_err payments_qr_get(struct payments *p, const char *id, struct pay_qr *out)
{
    struct sql_value v[] = {SQL_T(id)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        pay_query1(p,
                   "SELECT id, merchant_id, dynamic, amount_minor, currency, reference, "
                   "expires_at_us, used_by, created_at_us FROM pay_qr WHERE id = $1",
                   v, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 0) {
        sql_rows_free(r);
        return CF_ERR_NOT_FOUND;
    }
    memset(out, 0, sizeof(*out));
    pay_copy(out->id, sizeof(out->id), sql_row_text(r, 0, 0));
    pay_copy(out->merchant_id, sizeof(out->merchant_id), sql_row_text(r, 0, 1));
    out->dynamic = sql_row_int(r, 0, 2) != 0;
    out->amount_minor = sql_row_int(r, 0, 3);
    pay_copy(out->currency, sizeof(out->currency), sql_row_text(r, 0, 4));
    pay_copy(out->reference, sizeof(out->reference), sql_row_text(r, 0, 5));
    out->expires_at_us = sql_row_int(r, 0, 6);
    pay_copy(out->used_by, sizeof(out->used_by), sql_row_text(r, 0, 7));
    out->created_at_us = sql_row_int(r, 0, 8);
    sql_rows_free(r);
    return CF_OK;
}

enum cf_err payments_qr_claim(struct payments *p, const char *id, const char *op_id, int64_t now_us)
{
    struct sql_value v[] = {SQL_T(op_id), SQL_T(id), SQL_I(now_us)};
    int64_t changed = 0;
    enum cf_err err = pay_exec1(p,
                                "UPDATE pay_qr SET used_by = $1 WHERE id = $2 AND dynamic = 1 "
                                "AND used_by = '' AND expires_at_us > $3",
                                v, 3, &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_QR_EXPIRED;
    return err;
}

enum cf_err payments_qr_release(struct payments *p, const char *id, const char *op_id)
{
    struct sql_value v[] = {SQL_T(id), SQL_T(op_id)};
    return pay_exec1(p, "UPDATE pay_qr SET used_by = '' WHERE id = $1 AND used_by = $2", v, 2,
                     NULL);
}

/* Quotes ------------------------------------------------------------------------------------- */

enum cf_err payments_quote_put(struct payments *p, const struct pay_quote *q)
{
    struct sql_value v[] = {
        SQL_T(q->id),           SQL_T(q->user_id),         SQL_B(q->binding, HASH_BYTES),
        SQL_I(q->amount_minor), SQL_T(q->currency),        SQL_I(q->fee_minor),
        SQL_I(q->credit_minor), SQL_T(q->credit_currency), SQL_I(q->rate_e9),
        SQL_I(q->expires_at_us)};
    return pay_exec1(
        p,
        "INSERT INTO pay_quotes (id, user_id, binding, amount_minor, currency, fee_minor, "
        "credit_minor, credit_currency, rate_e9, expires_at_us) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        v, 10, NULL);
}

static enum cf_err quote_read(struct sqltx *tx, const char *id, struct pay_quote *q)
{
    struct sql_value v[] = {SQL_T(id)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT id, user_id, binding, amount_minor, currency, fee_minor, "
                                "credit_minor, credit_currency, rate_e9, expires_at_us, used_by "
                                "FROM pay_quotes WHERE id = $1 FOR UPDATE",
                                v, 1, &r);
    if (err != CF_OK)
        return err;
    size_t blen = 0;
    const uint8_t *b = sql_rows_n(r) == 1 ? sql_row_blob(r, 0, 2, &blen) : NULL;
    if (b == NULL || blen != HASH_BYTES) {
        sql_rows_free(r);
        return CF_ERR_QUOTE_EXPIRED;
    }
    memset(q, 0, sizeof(*q));
    pay_copy(q->id, sizeof(q->id), sql_row_text(r, 0, 0));
    pay_copy(q->user_id, sizeof(q->user_id), sql_row_text(r, 0, 1));
    memcpy(q->binding, b, HASH_BYTES);
    q->amount_minor = sql_row_int(r, 0, 3);
    pay_copy(q->currency, sizeof(q->currency), sql_row_text(r, 0, 4));
    q->fee_minor = sql_row_int(r, 0, 5);
    q->credit_minor = sql_row_int(r, 0, 6);
    pay_copy(q->credit_currency, sizeof(q->credit_currency), sql_row_text(r, 0, 7));
    q->rate_e9 = sql_row_int(r, 0, 8);
    q->expires_at_us = sql_row_int(r, 0, 9);
    pay_copy(q->used_by, sizeof(q->used_by), sql_row_text(r, 0, 10));
    sql_rows_free(r);
    return CF_OK;
}

enum cf_err payments_quote_claim(struct payments *p, const char *id, const char *user_id,
                                 const uint8_t binding[HASH_BYTES], const char *op_id,
                                 int64_t now_us, struct pay_quote *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct pay_quote q;
    err = quote_read(tx, id, &q);
    if (err == CF_OK && (strcmp(q.user_id, user_id) != 0 || q.used_by[0] != '\0' ||
                         q.expires_at_us <= now_us || !hash_equal(q.binding, binding, HASH_BYTES)))
        err = CF_ERR_QUOTE_EXPIRED;
    if (err == CF_OK) {
        struct sql_value v[] = {SQL_T(op_id), SQL_T(id)};
        int64_t changed = 0;
        err = sql_exec(tx, "UPDATE pay_quotes SET used_by = $1 WHERE id = $2 AND used_by = ''", v,
                       2, &changed);
        if (err == CF_OK && changed != 1)
            err = CF_ERR_QUOTE_EXPIRED;
    }
    err = pay_tx_end(tx, err);
    if (err == CF_OK)
        *out = q;
    return err;
}

enum cf_err payments_quote_release(struct payments *p, const char *id, const char *op_id)
{
    struct sql_value v[] = {SQL_T(id), SQL_T(op_id)};
    return pay_exec1(p, "UPDATE pay_quotes SET used_by = '' WHERE id = $1 AND used_by = $2", v, 2,
                     NULL);
}

/* Rates -------------------------------------------------------------------------------------- */

#define RATE_UPSERT                                                                                \
    "INSERT INTO pay_rates (base, quote, rate_e9, updated_at_us) "                                 \
    "VALUES ($1, $2, $3, $4) ON CONFLICT (base, quote) DO UPDATE SET "                             \
    "rate_e9 = excluded.rate_e9, updated_at_us = excluded.updated_at_us"

enum cf_err payments_rate_put(struct payments *p, const char *base, const char *quote,
                              int64_t rate_e9, int64_t now_us)
{
    CF_ASSERT(rate_e9 > 0);
    struct sql_value v[] = {SQL_T(base), SQL_T(quote), SQL_I(rate_e9), SQL_I(now_us)};
    return pay_exec1(p, RATE_UPSERT, v, 4, NULL);
}

enum cf_err payments_rates_put(struct payments *p, const struct pay_rate *rates, size_t n,
                               int64_t now_us)
{
    CF_ASSERT(rates != NULL && n >= 1);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    for (size_t i = 0; i < n && err == CF_OK; i++) {
        CF_ASSERT(rates[i].rate_e9 > 0);
        struct sql_value v[] = {SQL_T(rates[i].base), SQL_T(rates[i].quote),
                                SQL_I(rates[i].rate_e9), SQL_I(now_us)};
        err = sql_exec(tx, RATE_UPSERT, v, 4, NULL);
    }
    return pay_tx_end(tx, err);
}

enum cf_err payments_rates_list(struct payments *p, struct pay_rate *out, size_t max, size_t *n_out)
{
    CF_ASSERT(out != NULL && max >= 1);
    struct sql_value v[] = {SQL_I(max)};
    struct sql_rows *r = NULL;
    enum cf_err err = pay_query1(p,
                                 "SELECT base, quote, rate_e9, updated_at_us FROM pay_rates "
                                 "ORDER BY base, quote LIMIT $1",
                                 v, 1, &r);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r) < max ? sql_rows_n(r) : max;
    for (size_t i = 0; i < n; i++) {
        pay_copy(out[i].base, sizeof(out[i].base), sql_row_text(r, i, 0));
        pay_copy(out[i].quote, sizeof(out[i].quote), sql_row_text(r, i, 1));
        out[i].rate_e9 = sql_row_int(r, i, 2);
        out[i].updated_at_us = sql_row_int(r, i, 3);
    }
    *n_out = n;
    sql_rows_free(r);
    return CF_OK;
}

enum cf_err payments_rate_get(struct payments *p, const char *base, const char *quote,
                              int64_t *rate_e9_out)
{
    struct sql_value v[] = {SQL_T(base), SQL_T(quote)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        pay_query1(p, "SELECT rate_e9 FROM pay_rates WHERE base = $1 AND quote = $2", v, 2, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 0)
        err = CF_ERR_NO_RATE;
    else
        *rate_e9_out = sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return err;
}

/* Callbacks ---------------------------------------------------------------------------------- */

enum cf_err payments_event_record(struct payments *p, const char *event_id, int64_t now_us,
                                  bool *fresh)
{
    struct sql_value v[] = {SQL_T(event_id), SQL_I(now_us)};
    int64_t changed = 0;
    enum cf_err err = pay_exec1(p,
                                "INSERT INTO pay_events (event_id, received_at_us) VALUES ($1, $2) "
                                "ON CONFLICT (event_id) DO NOTHING",
                                v, 2, &changed);
    if (err == CF_OK)
        *fresh = changed == 1;
    return err;
}
