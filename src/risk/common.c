/*
 * common.c - what the risk stores share: schema migration, transactions, sealing, ids and the
 * checks of party ids, tokens and texts; see internal.h.
 */
#include "risk/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

#include "core/assert.h"
#include "core/hash.h"
#include "core/ids.h"
#include "crypto/vault.h"
#include "store/sql/sql.h"

/* Schema ------------------------------------------------------------------------------------- */

/* schema with %1$s as blob and %2$s as row_key into out (RISK_SCHEMA_BYTES_MAX). */
static void schema_fill(const char *schema, const char *blob, const char *row_key, char *out)
{
    size_t at = 0;
    for (const char *p = schema; *p != '\0';) {
        const char *part = NULL;
        if (strncmp(p, "%1$s", 4) == 0)
            part = blob;
        else if (strncmp(p, "%2$s", 4) == 0)
            part = row_key;
        CF_ASSERT(part != NULL || *p != '%'); /* no other conversion in a schema */
        size_t n = part != NULL ? strlen(part) : 1;
        CF_ASSERT(at + n < RISK_SCHEMA_BYTES_MAX);
        memcpy(out + at, part != NULL ? part : p, n);
        at += n;
        p += part != NULL ? 4 : 1;
    }
    out[at] = '\0';
    CF_ASSERT(at > 0);
}

enum cf_err risk_schema_migrate(struct sqldb *db, const char *name, const char *schema)
{
    return risk_schema_migrate_steps(db, name, schema, NULL, 0);
}

enum cf_err risk_schema_migrate_steps(struct sqldb *db, const char *name, const char *schema,
                                      const char *const *later, size_t later_n)
{
    CF_ASSERT(db != NULL && name != NULL && schema != NULL && later_n <= RISK_SCHEMA_STEPS_MAX);
    char *sqlite = malloc(RISK_SCHEMA_BYTES_MAX), *postgres = malloc(RISK_SCHEMA_BYTES_MAX);
    enum cf_err err = CF_ERR_NOMEM;
    if (sqlite != NULL && postgres != NULL) {
        schema_fill(schema, "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT", sqlite);
        schema_fill(schema, "BYTEA", "BIGSERIAL PRIMARY KEY", postgres);
        struct sql_migration m[1 + RISK_SCHEMA_STEPS_MAX] = {{1, sqlite, postgres}};
        for (size_t i = 0; i < later_n; i++)
            m[1 + i] = (struct sql_migration){(int)(2 + i), later[i], later[i]};
        err = sqldb_migrate(db, name, m, 1 + later_n);
    }
    free(sqlite);
    free(postgres);
    return err;
}

/* Transactions -------------------------------------------------------------------------------- */

enum cf_err risk_tx_end(struct sqltx *tx, enum cf_err err)
{
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

enum cf_err risk_row_of(struct sqltx *tx, enum cf_err err, const char *sql, const char *key,
                        uint64_t *row_out)
{
    CF_ASSERT(tx != NULL && sql != NULL && key != NULL && row_out != NULL);
    struct sql_value w[] = {SQL_T(key)};
    struct sql_rows *r = NULL;
    if (err == CF_OK)
        err = sql_query(tx, sql, w, 1, &r);
    if (err == CF_OK && sql_rows_n(r) != 1)
        err = CF_ERR_INTERNAL;
    if (err == CF_OK)
        *row_out = (uint64_t)sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return err;
}

/* Sealing ------------------------------------------------------------------------------------ */

enum cf_err risk_seal(risk_vault_fn vault, void *vault_ctx, const char *aad, const void *pt,
                      size_t n, uint8_t *out, size_t out_bytes, size_t *len_out)
{
    CF_ASSERT(vault != NULL && aad != NULL && out != NULL && len_out != NULL);
    const struct vault *v = vault(vault_ctx, 0);
    if (v == NULL)
        return CF_ERR_CONFIG;
    return vault_seal(v, pt, n, aad, strlen(aad), out, out_bytes, len_out);
}

enum cf_err risk_unseal(risk_vault_fn vault, void *vault_ctx, const char *aad, const uint8_t *ct,
                        size_t n, uint8_t *out, size_t out_bytes, size_t *len_out)
{
    CF_ASSERT(vault != NULL && aad != NULL && out != NULL && len_out != NULL);
    const struct vault *v = ct != NULL ? vault(vault_ctx, vault_sealed_key_id(ct, n)) : NULL;
    if (v == NULL)
        return CF_ERR_CORRUPT;
    enum cf_err err = vault_open(v, ct, n, aad, strlen(aad), out, out_bytes, len_out);
    return err == CF_OK ? CF_OK : CF_ERR_CORRUPT;
}

enum cf_err risk_unseal_text(risk_vault_fn vault, void *vault_ctx, const char *aad,
                             const uint8_t *ct, size_t n, char *out, size_t out_bytes)
{
    CF_ASSERT(out != NULL && out_bytes > 0);
    size_t len = 0;
    enum cf_err err =
        risk_unseal(vault, vault_ctx, aad, ct, n, (uint8_t *)out, out_bytes - 1, &len);
    if (err == CF_OK)
        out[len] = '\0';
    return err;
}

/* Names -------------------------------------------------------------------------------------- */

const char *risk_name_of(const char *const *names, size_t n, size_t v)
{
    CF_ASSERT(names != NULL);
    return v < n ? names[v] : "";
}

enum cf_err risk_name_parse(const char *const *names, size_t n, size_t first, const char *text,
                            uint8_t *out)
{
    CF_ASSERT(names != NULL && n <= 256 && out != NULL);
    for (size_t i = first; text != NULL && i < n; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (uint8_t)i;
            return CF_OK;
        }
    }
    return CF_ERR_INVALID_FIELD;
}

/* Texts and ids ------------------------------------------------------------------------------ */

void risk_text_copy(char *dst, size_t dst_bytes, const char *src)
{
    snprintf(dst, dst_bytes, "%s", src != NULL ? src : "");
}

void risk_id_new(const char *prefix, char *out, size_t out_bytes)
{
    CF_ASSERT(prefix != NULL && out != NULL);
    uint64_t v = 0;
    while (v == 0)
        hash_random(&v, sizeof(v));
    char text[ID_TEXT_BYTES_MAX];
    id_format(prefix, v, text);
    risk_text_copy(out, out_bytes, text);
    CF_ASSERT(strlen(out) == strlen(text)); /* never truncated */
}

/* Checks ------------------------------------------------------------------------------------- */

bool risk_party_valid(const char *text)
{
    uint64_t v = 0;
    if (text == NULL)
        return false;
    if (strncmp(text, "usr_", 4) == 0)
        return id_parse("usr_", text, strlen(text), &v) == CF_OK;
    if (strncmp(text, "mer_", 4) == 0)
        return id_parse("mer_", text, strlen(text), &v) == CF_OK;
    return false;
}

bool risk_token_valid(const char *text, size_t bytes_max, bool empty_ok)
{
    size_t n = text != NULL ? strnlen(text, bytes_max) : bytes_max;
    if ((n == 0 && !empty_ok) || n >= bytes_max)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < 0x21 || text[i] > 0x7e)
            return false;
    }
    return true;
}

/* Whether cp is a control character under flags (see RISK_TEXT_*). */
static bool control_char(ucs4_t cp, unsigned flags)
{
    if ((flags & RISK_TEXT_LINES) != 0 && (cp == '\t' || cp == '\n' || cp == '\r'))
        return false;
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
        return true;
    return (flags & RISK_TEXT_INVISIBLE) != 0 &&
           ((cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
            (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff);
}

enum risk_text_verdict risk_text_check(const char *text, size_t bytes_max, size_t chars_max,
                                       unsigned flags, size_t *chars_out)
{
    CF_ASSERT(bytes_max > 0);
    size_t n = text != NULL ? strnlen(text, bytes_max) : 0, chars = 0;
    if ((n == 0 && (flags & RISK_TEXT_EMPTY) == 0) || n >= bytes_max)
        return RISK_TEXT_LENGTH;
    /* n < bytes_max: text is NUL-terminated at n, as u8_strmbtouc reads it. */
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < n; chars++) {
        ucs4_t cp = 0;
        int len = u8_strmbtouc(&cp, s + i);
        if (len <= 0)
            return RISK_TEXT_UTF8;
        if (control_char(cp, flags))
            return RISK_TEXT_CONTROL;
        i += (size_t)len;
    }
    if (chars > chars_max)
        return RISK_TEXT_LENGTH;
    CF_ASSERT(chars <= n);
    if (chars_out != NULL)
        *chars_out = chars;
    return RISK_TEXT_OK;
}
