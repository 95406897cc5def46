/*
 * merchants.c - merchant organisations and their users' rights (owner or staff).
 *
 * Business names are not personal data and are stored as given; the users' logins and names
 * are sealed like every user's. A membership row ties one merchant user to one merchant.
 */
#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "identity/internal.h"

static enum cf_err tx_end(struct sqltx *tx, enum cf_err err)
{
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

static bool business_name_valid(const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0 || len > IDENTITY_MERCHANT_NAME_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    return true;
}

static enum cf_err member_insert(struct sqltx *tx, const char *user_id, const char *merchant_id,
                                 enum identity_merchant_right right)
{
    struct sql_value p[] = {SQL_T(user_id), SQL_T(merchant_id), SQL_I(right)};
    return sql_exec(tx,
                    "INSERT INTO id_merchant_members (user_id, merchant_id, merchant_right) "
                    "VALUES ($1, $2, $3)",
                    p, 3, NULL);
}

enum cf_err identity_merchant_create(struct identity *id, const struct identity_ctx *ctx,
                                     const char *actor, const char *legal_name,
                                     const char *display_name, const char *owner_login,
                                     const char *owner_password, size_t owner_password_len,
                                     const char *owner_name,
                                     char merchant_id_out[ID_TEXT_BYTES_MAX],
                                     char owner_id_out[ID_TEXT_BYTES_MAX], const char **detail_out)
{
    *detail_out = !business_name_valid(legal_name)     ? "legal_name"
                  : !business_name_valid(display_name) ? "display_name"
                                                       : NULL;
    if (*detail_out != NULL)
        return CF_ERR_INVALID_FIELD;
    char merchant_id[ID_TEXT_BYTES_MAX];
    identity_id_new(ID_PREFIX_MERCHANT, merchant_id);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value p[] = {SQL_T(merchant_id), SQL_T(legal_name), SQL_T(display_name),
                            SQL_I(identity_now_us(id))};
    err = sql_exec(tx,
                   "INSERT INTO id_merchants (id, legal_name, display_name, created_at_us) "
                   "VALUES ($1, $2, $3, $4)",
                   p, 4, NULL);
    if (err == CF_OK)
        err = identity_user_create_tx(id, tx, IDENTITY_MERCHANT, owner_login, owner_password,
                                      owner_password_len, owner_name, owner_id_out, detail_out);
    if (err == CF_OK)
        err = member_insert(tx, owner_id_out, merchant_id, IDENTITY_MERCHANT_OWNER);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, actor, "merchant.create", merchant_id, "ok",
                                owner_id_out);
    if ((err = tx_end(tx, err)) == CF_OK)
        snprintf(merchant_id_out, ID_TEXT_BYTES_MAX, "%s", merchant_id);
    return err;
}

/* The caller's merchant and right inside tx; CF_ERR_FORBIDDEN without a membership. */
static enum cf_err membership(struct sqltx *tx, const struct identity_principal *p,
                              struct identity_merchant *out)
{
    if (p->role != IDENTITY_MERCHANT)
        return CF_ERR_FORBIDDEN;
    struct sql_value v[] = {SQL_T(p->user_id)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT m.id, m.legal_name, m.display_name, m.created_at_us, "
                                "mm.merchant_right FROM id_merchant_members mm JOIN id_merchants m "
                                "ON m.id = mm.merchant_id WHERE mm.user_id = $1 FOR UPDATE",
                                v, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) != 1) {
        sql_rows_free(r);
        return CF_ERR_FORBIDDEN;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->merchant_id, sizeof(out->merchant_id), "%s", sql_row_text(r, 0, 0));
    snprintf(out->legal_name, sizeof(out->legal_name), "%s", sql_row_text(r, 0, 1));
    snprintf(out->display_name, sizeof(out->display_name), "%s", sql_row_text(r, 0, 2));
    out->created_at_us = sql_row_int(r, 0, 3);
    out->right = sql_row_int(r, 0, 4) == IDENTITY_MERCHANT_OWNER ? IDENTITY_MERCHANT_OWNER
                                                                 : IDENTITY_MERCHANT_STAFF;
    sql_rows_free(r);
    return CF_OK;
}

/* The caller's merchant when the caller is one of its owners. */
static enum cf_err owner_of(struct sqltx *tx, const struct identity_principal *p,
                            struct identity_merchant *out)
{
    enum cf_err err = membership(tx, p, out);
    if (err == CF_OK && out->right != IDENTITY_MERCHANT_OWNER)
        err = CF_ERR_FORBIDDEN;
    return err;
}

enum cf_err identity_merchant_of(struct identity *id, const struct identity_principal *p,
                                 struct identity_merchant *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = membership(tx, p, out);
    sql_rollback(tx);
    return err;
}

enum cf_err identity_merchant_user_add(struct identity *id, const struct identity_ctx *ctx,
                                       const struct identity_principal *p, const char *login,
                                       const char *password, size_t password_len, const char *name,
                                       enum identity_merchant_right right,
                                       char user_id_out[ID_TEXT_BYTES_MAX], const char **detail_out)
{
    struct sqltx *tx = NULL;
    struct identity_merchant m;
    memset(&m, 0, sizeof(m));
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = owner_of(tx, p, &m);
    if (err == CF_OK)
        err = identity_user_create_tx(id, tx, IDENTITY_MERCHANT, login, password, password_len,
                                      name, user_id_out, detail_out);
    if (err == CF_OK)
        err = member_insert(tx, user_id_out, m.merchant_id, right);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, p->user_id, "merchant.user_add", user_id_out, "ok",
                                right == IDENTITY_MERCHANT_OWNER ? "owner" : "staff");
    return tx_end(tx, err);
}

enum cf_err identity_merchant_users(struct identity *id, const struct identity_principal *p,
                                    struct identity_merchant_user *out, size_t max, size_t *n_out)
{
    struct sqltx *tx = NULL;
    struct identity_merchant m;
    memset(&m, 0, sizeof(m));
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = owner_of(tx, p, &m);
    struct sql_value v[] = {SQL_T(m.merchant_id), SQL_I((int64_t)max)};
    if (err == CF_OK)
        err = sql_query(tx,
                        "SELECT user_id, merchant_right FROM id_merchant_members WHERE "
                        "merchant_id = $1 ORDER BY user_id LIMIT $2",
                        v, 2, &r);
    size_t n = err == CF_OK ? sql_rows_n(r) : 0;
    for (size_t i = 0; i < n && i < max && err == CF_OK; i++) {
        struct user_row u;
        struct identity_merchant_user *mu = &out[i];
        memset(mu, 0, sizeof(*mu));
        snprintf(mu->user_id, sizeof(mu->user_id), "%s", sql_row_text(r, i, 0));
        mu->right = sql_row_int(r, i, 1) == IDENTITY_MERCHANT_OWNER ? IDENTITY_MERCHANT_OWNER
                                                                    : IDENTITY_MERCHANT_STAFF;
        if ((err = identity_user_load(id, tx, mu->user_id, false, &u)) == CF_OK) {
            snprintf(mu->login, sizeof(mu->login), "%s", u.login);
            snprintf(mu->name, sizeof(mu->name), "%s", u.name);
        }
        user_row_wipe(&u);
    }
    sql_rows_free(r);
    sql_rollback(tx);
    if (err == CF_OK)
        *n_out = n < max ? n : max;
    return err;
}

enum cf_err identity_merchant_user_remove(struct identity *id, const struct identity_ctx *ctx,
                                          const struct identity_principal *p, const char *user_id)
{
    struct sqltx *tx = NULL;
    struct identity_merchant m;
    memset(&m, 0, sizeof(m));
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = owner_of(tx, p, &m);
    if (err == CF_OK && strcmp(user_id, p->user_id) == 0)
        err = CF_ERR_CONFLICT; /* an owner cannot remove themself and orphan the merchant */
    struct sql_value v[] = {SQL_T(user_id), SQL_T(m.merchant_id)};
    int64_t n = 0;
    if (err == CF_OK)
        err =
            sql_exec(tx, "DELETE FROM id_merchant_members WHERE user_id = $1 AND merchant_id = $2",
                     v, 2, &n);
    if (err == CF_OK && n != 1)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK)
        err = identity_sessions_end(id, tx, user_id, NULL, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, p->user_id, "merchant.user_remove", user_id, "ok",
                                m.merchant_id);
    err = tx_end(tx, err);
    if (err == CF_OK)
        identity_cache_forget_user(id, user_id);
    return err;
}

enum cf_err identity_merchant_get(struct identity *id, const char *merchant_id,
                                  struct identity_merchant *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(merchant_id)};
    struct sql_rows *r = NULL;
    err = sql_query(tx,
                    "SELECT id, legal_name, display_name, created_at_us FROM id_merchants "
                    "WHERE id = $1",
                    v, 1, &r);
    sql_rollback(tx);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) != 1) {
        sql_rows_free(r);
        return CF_ERR_NOT_FOUND;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->merchant_id, sizeof(out->merchant_id), "%s", sql_row_text(r, 0, 0));
    snprintf(out->legal_name, sizeof(out->legal_name), "%s", sql_row_text(r, 0, 1));
    snprintf(out->display_name, sizeof(out->display_name), "%s", sql_row_text(r, 0, 2));
    out->created_at_us = sql_row_int(r, 0, 3);
    out->right = IDENTITY_MERCHANT_STAFF;
    sql_rows_free(r);
    return CF_OK;
}
