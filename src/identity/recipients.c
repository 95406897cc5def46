/*
 * recipients.c - finding who money goes to: public handles, and a login or handle resolved to a
 * customer with a masked display name (the sender learns nothing more before confirming).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "identity/internal.h"

static enum cf_err tx_end(struct sqltx *tx, enum cf_err err)
{
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

/* "@Alice_1" -> "alice_1": 3 to 20 of [a-z0-9_.], not starting or ending with '.'. */
static enum cf_err handle_normalize(const char *text, char out[IDENTITY_HANDLE_BYTES_MAX])
{
    if (text[0] == '@')
        text++;
    size_t len = strlen(text);
    if (len < 3 || len > IDENTITY_HANDLE_BYTES_MAX - 1 || text[0] == '.' || text[len - 1] == '.')
        return CF_ERR_INVALID_FIELD;
    for (size_t i = 0; i < len; i++) {
        char c = (char)tolower((unsigned char)text[i]);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
            return CF_ERR_INVALID_FIELD;
        out[i] = c;
    }
    out[len] = '\0';
    return CF_OK;
}

enum cf_err identity_handle_set(struct identity *id, const struct identity_ctx *ctx,
                                const struct identity_principal *p, const char *text,
                                char handle_out[IDENTITY_HANDLE_BYTES_MAX])
{
    char handle[IDENTITY_HANDLE_BYTES_MAX];
    enum cf_err err = handle_normalize(text, handle);
    if (err != CF_OK)
        return err;
    struct sqltx *tx = NULL;
    if ((err = sql_begin(id->db, &tx)) != CF_OK)
        return err;
    struct sql_value q[] = {SQL_T(p->user_id)};
    err = sql_exec(tx, "DELETE FROM id_handles WHERE user_id = $1", q, 1, NULL);
    struct sql_value v[] = {SQL_T(handle), SQL_T(p->user_id), SQL_I(identity_now_us(id))};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "INSERT INTO id_handles (handle, user_id, created_at_us) "
                       "VALUES ($1, $2, $3)",
                       v, 3, NULL);
    if (err == CF_ERR_STORAGE_CONFLICT)
        err = CF_ERR_CONFLICT; /* someone else has it */
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, p->user_id, "handle.set", p->user_id, "ok", handle);
    if ((err = tx_end(tx, err)) == CF_OK)
        snprintf(handle_out, IDENTITY_HANDLE_BYTES_MAX, "%s", handle);
    return err;
}

enum cf_err identity_handle_get(struct identity *id, const char *user_id,
                                char handle_out[IDENTITY_HANDLE_BYTES_MAX])
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(user_id)};
    struct sql_rows *r = NULL;
    err = sql_query(tx, "SELECT handle FROM id_handles WHERE user_id = $1", v, 1, &r);
    sql_rollback(tx);
    if (err != CF_OK)
        return err;
    snprintf(handle_out, IDENTITY_HANDLE_BYTES_MAX, "%s",
             sql_rows_n(r) == 1 ? sql_row_text(r, 0, 0) : "");
    sql_rows_free(r);
    return CF_OK;
}

/* The length of the UTF-8 sequence starting with byte c (1 for anything malformed). */
static size_t utf8_len(unsigned char c)
{
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    if (c >= 0xE0)
        return c <= 0xEF ? 3 : 1;
    return c >= 0xC2 && c <= 0xDF ? 2 : 1;
}

void identity_name_mask(const char *name, char out[IDENTITY_MASKED_NAME_BYTES_MAX])
{
    const char *words[8];
    size_t lens[8], n = 0;
    for (const char *s = name; *s != '\0' && n < 8;) {
        while (*s == ' ')
            s++;
        if (*s == '\0')
            break;
        const char *start = s;
        while (*s != '\0' && *s != ' ')
            s++;
        words[n] = start;
        lens[n++] = (size_t)(s - start);
    }
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t first = utf8_len((unsigned char)words[i][0]);
        if (first > lens[i])
            first = 1;
        bool initial = n > 1 && i == n - 1;
        int w = snprintf(out + o, IDENTITY_MASKED_NAME_BYTES_MAX - o, "%s%.*s%s", i > 0 ? " " : "",
                         (int)first, words[i], initial ? "." : "***");
        if (w < 0 || (size_t)w >= IDENTITY_MASKED_NAME_BYTES_MAX - o) {
            out[o] = '\0';
            break;
        }
        o += (size_t)w;
    }
    if (o == 0)
        snprintf(out, IDENTITY_MASKED_NAME_BYTES_MAX, "***");
}

/* The user a handle or login names, inside tx. */
static enum cf_err recipient_user(struct identity *id, struct sqltx *tx, const char *text,
                                  char user_id[ID_TEXT_BYTES_MAX])
{
    if (text[0] == '@') {
        char handle[IDENTITY_HANDLE_BYTES_MAX];
        if (handle_normalize(text, handle) != CF_OK)
            return CF_ERR_RECIPIENT_NOT_FOUND;
        struct sql_value v[] = {SQL_T(handle)};
        struct sql_rows *r = NULL;
        enum cf_err err =
            sql_query(tx, "SELECT user_id FROM id_handles WHERE handle = $1", v, 1, &r);
        if (err != CF_OK)
            return err;
        err = sql_rows_n(r) == 1 ? CF_OK : CF_ERR_RECIPIENT_NOT_FOUND;
        if (err == CF_OK)
            snprintf(user_id, ID_TEXT_BYTES_MAX, "%s", sql_row_text(r, 0, 0));
        sql_rows_free(r);
        return err;
    }
    char login[IDENTITY_LOGIN_BYTES_MAX + 1];
    bool is_email = false;
    if (identity_login_normalize(text, login, sizeof(login), &is_email) != CF_OK)
        return CF_ERR_RECIPIENT_NOT_FOUND;
    enum cf_err err = identity_user_by_login(id, tx, login, user_id);
    return err == CF_ERR_NOT_FOUND ? CF_ERR_RECIPIENT_NOT_FOUND : err;
}

enum cf_err identity_recipient_find(struct identity *id, const char *text,
                                    struct identity_recipient *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    char user_id[ID_TEXT_BYTES_MAX];
    struct user_row u;
    memset(&u, 0, sizeof(u));
    err = recipient_user(id, tx, text, user_id);
    if (err == CF_OK)
        err = identity_user_load(id, tx, user_id, false, &u);
    if (err == CF_ERR_NOT_FOUND || (err == CF_OK && (u.closed || u.role != IDENTITY_CUSTOMER)))
        err = CF_ERR_RECIPIENT_NOT_FOUND;
    sql_rollback(tx);
    if (err == CF_OK) {
        snprintf(out->user_id, sizeof(out->user_id), "%s", u.id);
        identity_name_mask(u.name, out->masked_name);
    }
    user_row_wipe(&u);
    return err;
}

const struct vault *identity_keys(struct identity *id, uint32_t key_id)
{
    return key_id == 0 ? identity_vault(id) : identity_vault_for(id, key_id);
}
