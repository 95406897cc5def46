/*
 * cards.c - the card vault: saved card numbers, sealed under the master key.
 *
 * A card number is stored only sealed (XChaCha20-Poly1305, aad "card:<id>") next to a blind
 * index of it (fingerprint, to find the same card saved twice); brand, last four digits and
 * expiry are kept in clear for display. The security code is never passed in. Removing a card
 * erases its sealed number and fingerprint.
 */
#include <stdio.h>
#include <string.h>

#include "payments/internal.h"

/* The same index key id as identity's blind indexes: master key 1, which rotation keeps. */
#define PAY_BLIND_KEY_ID 1u

static enum cf_err card_fingerprint(struct payments *p, const char *pan,
                                    uint8_t out[VAULT_BLIND_BYTES])
{
    const struct vault *v = p->vault(p->vault_ctx, PAY_BLIND_KEY_ID);
    if (v == NULL)
        return CF_ERR_CONFIG;
    return vault_blind(v, PAY_BLIND_KEY_ID, "card", pan, strlen(pan), out);
}

static void card_from_row(const struct sql_rows *r, size_t i, struct pay_card *c)
{
    memset(c, 0, sizeof(*c));
    pay_copy(c->id, sizeof(c->id), sql_row_text(r, i, 0));
    pay_copy(c->user_id, sizeof(c->user_id), sql_row_text(r, i, 1));
    pay_copy(c->brand, sizeof(c->brand), sql_row_text(r, i, 2));
    pay_copy(c->last4, sizeof(c->last4), sql_row_text(r, i, 3));
    c->exp_month = (int)sql_row_int(r, i, 4);
    c->exp_year = (int)sql_row_int(r, i, 5);
    c->created_at_us = sql_row_int(r, i, 6);
}

#define CARD_COLS "id, user_id, brand, last4, exp_month, exp_year, created_at_us"

static enum cf_err cards_query(struct sqltx *tx, const char *sql, const struct sql_value *v,
                               size_t n, struct pay_card *out, size_t max, size_t *n_out)
{
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, sql, v, n, &r);
    if (err != CF_OK)
        return err;
    size_t rows = sql_rows_n(r) < max ? sql_rows_n(r) : max;
    for (size_t i = 0; i < rows; i++)
        card_from_row(r, i, &out[i]);
    *n_out = rows;
    sql_rows_free(r);
    return CF_OK;
}

static enum cf_err card_insert(struct payments *p, struct sqltx *tx, const struct pay_card *c,
                               const char *pan, const uint8_t fp[VAULT_BLIND_BYTES], int64_t now_us)
{
    char aad[PAY_ID_BYTES_MAX + 8];
    snprintf(aad, sizeof(aad), "card:%s", c->id);
    uint8_t sealed[PAY_PAN_BYTES_MAX + VAULT_OVERHEAD_BYTES];
    size_t sealed_len = 0;
    enum cf_err err = pay_seal(p, aad, pan, strlen(pan), sealed, sizeof(sealed), &sealed_len);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(c->id),
                            SQL_T(c->user_id),
                            SQL_T(c->brand),
                            SQL_T(c->last4),
                            SQL_I(c->exp_month),
                            SQL_I(c->exp_year),
                            SQL_B(fp, VAULT_BLIND_BYTES),
                            SQL_B(sealed, sealed_len),
                            SQL_I(now_us)};
    return sql_exec(tx,
                    "INSERT INTO pay_cards (id, user_id, brand, last4, exp_month, exp_year, "
                    "fingerprint, pan_sealed, created_at_us) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    v, 9, NULL);
}

enum cf_err payments_card_add(struct payments *p, const struct pay_card *c, const char *pan,
                              int64_t now_us, struct pay_card *out, bool *existed)
{
    CF_ASSERT(strlen(pan) < PAY_PAN_BYTES_MAX && c->id[0] != '\0');
    uint8_t fp[VAULT_BLIND_BYTES];
    enum cf_err err = card_fingerprint(p, pan, fp);
    if (err != CF_OK)
        return err;
    struct sqltx *tx = NULL;
    if ((err = sql_begin(p->db, &tx)) != CF_OK)
        return err;
    char lock[PAY_PARTY_BYTES_MAX + 8];
    snprintf(lock, sizeof(lock), "cards:%s", c->user_id);
    if ((err = pay_lock(tx, lock)) != CF_OK) { /* one customer's cards change one at a time */
        sql_rollback(tx);
        return err;
    }
    struct pay_card found[PAY_CARDS_MAX + 1];
    size_t n = 0;
    struct sql_value v[] = {SQL_T(c->user_id), SQL_B(fp, VAULT_BLIND_BYTES)};
    err = cards_query(tx,
                      "SELECT " CARD_COLS " FROM pay_cards WHERE user_id = $1 AND "
                      "fingerprint = $2 AND removed_at_us = 0",
                      v, 2, found, 1, &n);
    *existed = err == CF_OK && n == 1;
    if (*existed) {
        *out = found[0];
        sql_rollback(tx);
        return CF_OK;
    }
    if (err == CF_OK)
        err = cards_query(tx,
                          "SELECT " CARD_COLS " FROM pay_cards WHERE user_id = $1 AND "
                          "removed_at_us = 0",
                          v, 1, found, PAY_CARDS_MAX + 1, &n);
    if (err == CF_OK && n >= PAY_CARDS_MAX)
        err = CF_ERR_CONFLICT;
    if (err == CF_OK)
        err = card_insert(p, tx, c, pan, fp, now_us);
    if ((err = pay_tx_end(tx, err)) == CF_OK) {
        *out = *c;
        out->created_at_us = now_us;
    }
    return err;
}

enum cf_err payments_card_get(struct payments *p, const char *id, const char *user_id,
                              struct pay_card *out, char *pan_out)
{
    struct sql_value v[] = {SQL_T(id), SQL_T(user_id)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        pay_query1(p,
                   "SELECT " CARD_COLS ", pan_sealed FROM pay_cards WHERE id = $1 AND "
                   "user_id = $2 AND removed_at_us = 0",
                   v, 2, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) != 1) {
        sql_rows_free(r);
        return CF_ERR_NOT_FOUND;
    }
    card_from_row(r, 0, out);
    if (pan_out != NULL) {
        size_t n = 0;
        const uint8_t *ct = sql_row_blob(r, 0, 7, &n);
        char aad[PAY_ID_BYTES_MAX + 8];
        snprintf(aad, sizeof(aad), "card:%s", out->id);
        err = ct != NULL ? pay_open(p, aad, ct, n, pan_out, PAY_PAN_BYTES_MAX) : CF_ERR_CORRUPT;
    }
    sql_rows_free(r);
    return err;
}

enum cf_err payments_cards_list(struct payments *p, const char *user_id, struct pay_card *out,
                                size_t max, size_t *n_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(user_id)};
    err = cards_query(tx,
                      "SELECT " CARD_COLS " FROM pay_cards WHERE user_id = $1 AND "
                      "removed_at_us = 0 ORDER BY created_at_us, id",
                      v, 1, out, max, n_out);
    sql_rollback(tx);
    return err;
}

enum cf_err payments_card_remove(struct payments *p, const char *id, const char *user_id,
                                 int64_t now_us)
{
    static const uint8_t erased[1] = {0};
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_I(now_us), SQL_B(erased, 1), SQL_T(id), SQL_T(user_id)};
    int64_t changed = 0;
    err = sql_exec(tx,
                   "UPDATE pay_cards SET removed_at_us = $1, pan_sealed = $2, fingerprint = $2 "
                   "WHERE id = $3 AND user_id = $4 AND removed_at_us = 0",
                   v, 4, &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_NOT_FOUND;
    return pay_tx_end(tx, err);
}
