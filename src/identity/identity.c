/* identity.c - the identity service: schema, opening, roles, logins, users and their sealed data.
 */
#include "identity/identity.h"

#include <ctype.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/log.h"
#include "identity/internal.h"

static const char *const role_names[IDENTITY_ROLE_COUNT] = {
    "customer", "merchant", "support", "risk", "admin", "auditor",
};

const char *identity_role_name(enum identity_role r)
{
    CF_ASSERT(r >= 0 && r < IDENTITY_ROLE_COUNT);
    return role_names[r];
}

enum cf_err identity_role_parse(const char *text, enum identity_role *out)
{
    for (int r = 0; r < IDENTITY_ROLE_COUNT; r++) {
        if (strcmp(text, role_names[r]) == 0) {
            *out = (enum identity_role)r;
            return CF_OK;
        }
    }
    return CF_ERR_INVALID_FIELD;
}

bool identity_role_is_staff(enum identity_role r)
{
    return r == IDENTITY_SUPPORT || r == IDENTITY_RISK || r == IDENTITY_ADMIN ||
           r == IDENTITY_AUDITOR;
}

void identity_config_defaults(struct identity_config *cfg)
{
    cfg->session_idle_s = 900;
    cfg->session_absolute_s = 12 * 3600;
    cfg->step_up_amount_minor = 100000;
    cfg->totp_issuer = "Coffer";
    cfg->clock = &cf_clock_real;
}

/* Schema ------------------------------------------------------------------------------------- */

#define USERS_COMMON                                                                               \
    "CREATE TABLE id_users (id TEXT PRIMARY KEY, role INTEGER NOT NULL, "                          \
    "closed INTEGER NOT NULL DEFAULT 0, login_blind %1$s UNIQUE, dek_wrapped %1$s, "               \
    "login_sealed %1$s, name_sealed %1$s, password_hash TEXT, totp_sealed %1$s, "                  \
    "totp_pending_sealed %1$s, "                                                                   \
    "totp_enabled INTEGER NOT NULL DEFAULT 0, totp_last_step BIGINT NOT NULL DEFAULT 0, "          \
    "created_at_us BIGINT NOT NULL, updated_at_us BIGINT NOT NULL);"                               \
    "CREATE INDEX id_users_role ON id_users(role);"                                                \
    "CREATE TABLE id_recovery (user_id TEXT NOT NULL, code_hash %1$s NOT NULL, "                   \
    "used_at_us BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (user_id, code_hash));"                     \
    "CREATE TABLE id_sessions (id TEXT PRIMARY KEY, token_hash %1$s NOT NULL UNIQUE, "             \
    "user_id TEXT NOT NULL, stage INTEGER NOT NULL, device TEXT NOT NULL, ip TEXT NOT NULL, "      \
    "created_at_us BIGINT NOT NULL, last_seen_at_us BIGINT NOT NULL, "                             \
    "idle_expires_at_us BIGINT NOT NULL, absolute_expires_at_us BIGINT NOT NULL, "                 \
    "revoked_at_us BIGINT NOT NULL DEFAULT 0, mfa_attempts INTEGER NOT NULL DEFAULT 0);"           \
    "CREATE INDEX id_sessions_user ON id_sessions(user_id);"                                       \
    "CREATE TABLE id_codes (id TEXT PRIMARY KEY, purpose INTEGER NOT NULL, user_id TEXT, "         \
    "binding %1$s NOT NULL, code_hash %1$s, payload %1$s, target_blind %1$s, "                     \
    "totp INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, "                       \
    "created_at_us BIGINT NOT NULL, expires_at_us BIGINT NOT NULL, "                               \
    "used_at_us BIGINT NOT NULL DEFAULT 0, consumed_by TEXT);"                                     \
    "CREATE INDEX id_codes_target ON id_codes(target_blind, created_at_us);"                       \
    "CREATE INDEX id_codes_user ON id_codes(user_id);"                                             \
    "CREATE TABLE id_payees (user_id TEXT NOT NULL, payee TEXT NOT NULL, "                         \
    "created_at_us BIGINT NOT NULL, PRIMARY KEY (user_id, payee));"                                \
    "CREATE TABLE id_wallet (user_id TEXT NOT NULL, account_id BIGINT NOT NULL, "                  \
    "currency TEXT NOT NULL, PRIMARY KEY (user_id, account_id));"                                  \
    "CREATE TABLE id_merchants (id TEXT PRIMARY KEY, legal_name TEXT NOT NULL, "                   \
    "display_name TEXT NOT NULL, created_at_us BIGINT NOT NULL);"                                  \
    "CREATE TABLE id_merchant_members (user_id TEXT PRIMARY KEY, merchant_id TEXT NOT NULL, "      \
    "merchant_right INTEGER NOT NULL);"                                                            \
    "CREATE INDEX id_merchant_members_merchant ON id_merchant_members(merchant_id);"

/* Version 2: public handles ("@alice") to receive money by. */
#define IDENTITY_HANDLES_DDL                                                                       \
    "CREATE TABLE id_handles (handle TEXT PRIMARY KEY, user_id TEXT NOT NULL UNIQUE, "             \
    "created_at_us BIGINT NOT NULL);"

static char schema_sqlite[8192];
static char schema_postgres[8192];

static enum cf_err schema_migrate(struct sqldb *db)
{
    int a = snprintf(schema_sqlite, sizeof(schema_sqlite), USERS_COMMON, "BLOB");
    int b = snprintf(schema_postgres, sizeof(schema_postgres), USERS_COMMON, "BYTEA");
    CF_ASSERT(a > 0 && (size_t)a < sizeof(schema_sqlite) && b > 0 &&
              (size_t)b < sizeof(schema_postgres));
    const struct sql_migration m[] = {{1, schema_sqlite, schema_postgres},
                                      {2, IDENTITY_HANDLES_DDL, IDENTITY_HANDLES_DDL}};
    enum cf_err err = sqldb_migrate(db, "identity", m, 2);
    if (err == CF_OK)
        err = sqldb_migrate(db, "audit", &audit_migration, 1);
    if (err == CF_OK)
        err = sqldb_migrate(db, "outbox", &notifier_outbox_migration, 1);
    return err;
}

enum cf_err identity_open(struct sqldb *db, const struct vault *vault, struct notifier *notifier,
                          const struct identity_config *cfg, struct identity **out)
{
    CF_ASSERT(db != NULL && vault != NULL && notifier != NULL && cfg != NULL);
    if (!vault_has_key(vault, IDENTITY_BLIND_KEY_ID)) {
        cf_log(LOG_ERROR, "master key 1 (the blind index key) is not loaded", NULL);
        return CF_ERR_CONFIG;
    }
    if (cfg->session_idle_s <= 0 || cfg->session_absolute_s < cfg->session_idle_s ||
        cfg->step_up_amount_minor < 0)
        return CF_ERR_CONFIG;
    struct identity *id = calloc(1, sizeof(*id));
    if (id == NULL)
        return CF_ERR_NOMEM;
    id->db = db;
    atomic_store(&id->vault, vault);
    pthread_mutex_init(&id->reload_mu, NULL);
    struct stat st;
    if (cfg->key_file != NULL && stat(cfg->key_file, &st) == 0)
        id->key_mtime = st.st_mtim;
    atomic_store(&id->key_checked_us, cf_monotonic_us());
    id->notifier = notifier;
    id->cfg = *cfg;
    if (id->cfg.clock == NULL)
        id->cfg.clock = &cf_clock_real;
    if (id->cfg.totp_issuer == NULL)
        id->cfg.totp_issuer = "Coffer";
    enum cf_err err = schema_migrate(db);
    if (err == CF_OK)
        err = throttle_create(&id->throttle);
    if (err == CF_OK)
        err = session_cache_create(&id->cache);
    if (err == CF_OK)
        err = identity_auditq_start(id);
    if (err != CF_OK) {
        identity_close(id);
        return err;
    }
    *out = id;
    return CF_OK;
}

void identity_close(struct identity *id)
{
    if (id == NULL)
        return;
    identity_auditq_stop(id);
    throttle_free(id->throttle);
    session_cache_free(id->cache);
    for (size_t i = 0; i < id->reloaded_n; i++)
        vault_free(id->reloaded[i]);
    pthread_mutex_destroy(&id->reload_mu);
    free(id);
}

const struct identity_config *identity_config_get(const struct identity *id) { return &id->cfg; }

struct notifier *identity_notifier(struct identity *id) { return id->notifier; }

int64_t identity_now_us(const struct identity *id) { return cf_clock_now_us(id->cfg.clock); }

/* Loads the key file again when it changed since it was loaded; keeps the old key sets alive
 * for threads still using them. need_id: the key the caller lacks (0: a periodic look). */
static const struct vault *vault_reload(struct identity *id, uint32_t need_id)
{
    pthread_mutex_lock(&id->reload_mu);
    const struct vault *v = atomic_load(&id->vault);
    struct stat st;
    bool changed =
        stat(id->cfg.key_file, &st) == 0 &&
        (st.st_mtim.tv_sec != id->key_mtime.tv_sec || st.st_mtim.tv_nsec != id->key_mtime.tv_nsec);
    /* a key not loaded: the file may hold it even if it looks unchanged (at most once a second) */
    int64_t now = cf_monotonic_us();
    bool wanted = need_id != 0 && !vault_has_key(v, need_id) && now - id->wanted_at_us > 1000000;
    if (wanted)
        id->wanted_at_us = now;
    if ((changed || wanted) && id->reloaded_n < IDENTITY_VAULTS_MAX) {
        struct vault *fresh = NULL;
        if (vault_load_file(id->cfg.key_file, &fresh) == CF_OK &&
            vault_has_key(fresh, IDENTITY_BLIND_KEY_ID)) {
            id->reloaded[id->reloaded_n++] = fresh;
            atomic_store(&id->vault, fresh);
            v = fresh;
            id->key_mtime = st.st_mtim;
            cf_log(LOG_INFO, "master keys reloaded from the key file", NULL);
        } else {
            vault_free(fresh);
        }
    }
    pthread_mutex_unlock(&id->reload_mu);
    return v;
}

const struct vault *identity_vault(struct identity *id)
{
    if (id->cfg.key_file == NULL)
        return atomic_load(&id->vault);
    int64_t now = cf_monotonic_us(), last = atomic_load(&id->key_checked_us);
    if (now - last < IDENTITY_KEY_FILE_CHECK_S * 1000000LL ||
        !atomic_compare_exchange_strong(&id->key_checked_us, &last, now))
        return atomic_load(&id->vault);
    return vault_reload(id, 0); /* one thread a period looks at the file */
}

const struct vault *identity_vault_for(struct identity *id, uint32_t key_id)
{
    const struct vault *v = identity_vault(id);
    if (key_id == 0 || vault_has_key(v, key_id) || id->cfg.key_file == NULL)
        return v;
    return vault_reload(id, key_id);
}

void identity_id_new(const char *prefix, char out[ID_TEXT_BYTES_MAX])
{
    uint64_t v = 0;
    while (v == 0)
        hash_random(&v, sizeof(v));
    id_format(prefix, v, out);
}

void identity_code_new(char out[IDENTITY_CODE_DIGITS + 1])
{
    _Static_assert(IDENTITY_CODE_DIGITS == 6, "the format below prints six digits");
    uint32_t v = randombytes_uniform(1000000);
    snprintf(out, IDENTITY_CODE_DIGITS + 1, "%06u", (unsigned)v);
}

/* Logins ------------------------------------------------------------------------------------- */

static enum cf_err email_normalize(const char *text, char *out, size_t out_bytes)
{
    while (*text == ' ' || *text == '\t')
        text++;
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    if (len < 3 || len > IDENTITY_LOGIN_BYTES_MAX || len >= out_bytes)
        return CF_ERR_INVALID_FIELD;
    size_t at = 0, ats = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == ',' || c == ';' || c == '<' ||
            c == '>')
            return CF_ERR_INVALID_FIELD;
        if (c == '@') {
            at = i;
            ats++;
        }
        out[i] = (char)tolower(c);
    }
    out[len] = '\0';
    if (ats != 1 || at == 0 || at + 1 >= len || strchr(out + at, '.') == NULL)
        return CF_ERR_INVALID_FIELD;
    return CF_OK;
}

static enum cf_err phone_normalize(const char *text, char *out, size_t out_bytes)
{
    size_t n = 0;
    const char *p = text;
    while (*p == ' ')
        p++;
    if (*p != '+' || out_bytes < 17)
        return CF_ERR_INVALID_FIELD;
    out[n++] = '+';
    for (p++; *p != '\0'; p++) {
        if (*p == ' ' || *p == '-' || *p == '(' || *p == ')')
            continue;
        if (*p < '0' || *p > '9' || n > 15)
            return CF_ERR_INVALID_FIELD;
        out[n++] = *p;
    }
    out[n] = '\0';
    if (n < 9 || out[1] == '0') /* "+" and 8..15 digits; no country code starts with 0 */
        return CF_ERR_INVALID_FIELD;
    return CF_OK;
}

enum cf_err identity_login_normalize(const char *text, char *out, size_t out_bytes,
                                     bool *is_email_out)
{
    if (text == NULL || strlen(text) > IDENTITY_LOGIN_BYTES_MAX + 16)
        return CF_ERR_INVALID_FIELD;
    bool email = strchr(text, '@') != NULL;
    char tmp[IDENTITY_LOGIN_BYTES_MAX + 1];
    enum cf_err err =
        email ? email_normalize(text, tmp, sizeof(tmp)) : phone_normalize(text, tmp, sizeof(tmp));
    if (err == CF_OK && strlen(tmp) >= out_bytes)
        err = CF_ERR_INVALID_FIELD;
    if (err != CF_OK) /* out untouched */
        return err;
    memcpy(out, tmp, strlen(tmp) + 1);
    if (is_email_out != NULL)
        *is_email_out = email;
    return CF_OK;
}

enum cf_err identity_login_blind(struct identity *id, const char *login,
                                 uint8_t out[VAULT_BLIND_BYTES])
{
    return vault_blind(identity_vault(id), IDENTITY_BLIND_KEY_ID, "login", login, strlen(login),
                       out);
}

enum cf_err identity_code_hash(struct identity *id, const char *owner_id, const char *code,
                               uint8_t out[VAULT_BLIND_BYTES])
{
    char text[ID_TEXT_BYTES_MAX + 64];
    int n = snprintf(text, sizeof(text), "%s:%s", owner_id, code);
    if (n < 0 || (size_t)n >= sizeof(text))
        return CF_ERR_INVALID_FIELD;
    enum cf_err err =
        vault_blind(identity_vault(id), IDENTITY_BLIND_KEY_ID, "code", text, (size_t)n, out);
    hash_wipe(text, sizeof(text));
    return err;
}

enum cf_err identity_password_prepare(const char *pw, size_t len, const char *login,
                                      char out[PASSWORD_HASH_BYTES], const char **detail_out)
{
    if (pw == NULL || len > PASSWORD_BYTES_MAX) {
        *detail_out = password_verdict_text(PASSWORD_TOO_LONG);
        return CF_ERR_WEAK_PASSWORD;
    }
    char norm[PASSWORD_BYTES_MAX * 4 + 1];
    size_t norm_len = 0;
    enum password_verdict v = password_normalize(pw, len, norm, sizeof(norm), &norm_len);
    if (v == PASSWORD_OK)
        v = password_check(norm, login);
    enum cf_err err = CF_OK;
    if (v != PASSWORD_OK) {
        *detail_out = password_verdict_text(v);
        err = CF_ERR_WEAK_PASSWORD;
    } else {
        err = password_hash(norm, out);
    }
    hash_wipe(norm, sizeof(norm));
    return err;
}

/* Sealed fields ------------------------------------------------------------------------------- */

static int aad_format(char *aad, size_t bytes, const char *user_id, const char *field)
{
    int n = snprintf(aad, bytes, "usr:%s:%s", user_id, field);
    CF_ASSERT(n > 0 && (size_t)n < bytes);
    return n;
}

enum cf_err identity_field_seal(const uint8_t dek[VAULT_KEY_BYTES], const char *user_id,
                                const char *field, const void *pt, size_t n, uint8_t *out,
                                size_t out_bytes, size_t *out_len)
{
    char aad[96];
    int aad_len = aad_format(aad, sizeof(aad), user_id, field);
    return vault_seal_with(dek, 0, pt, n, aad, (size_t)aad_len, out, out_bytes, out_len);
}

enum cf_err identity_field_open(const uint8_t dek[VAULT_KEY_BYTES], const char *user_id,
                                const char *field, const uint8_t *ct, size_t n, char *out,
                                size_t out_bytes, size_t *out_len)
{
    char aad[96];
    int aad_len = aad_format(aad, sizeof(aad), user_id, field);
    if (out_bytes == 0)
        return CF_ERR_CORRUPT;
    size_t len = 0;
    enum cf_err err =
        vault_open_with(dek, ct, n, aad, (size_t)aad_len, (uint8_t *)out, out_bytes - 1, &len);
    if (err != CF_OK)
        return err;
    out[len] = '\0';
    if (out_len != NULL)
        *out_len = len;
    return CF_OK;
}

void user_row_wipe(struct user_row *u) { hash_wipe(u, sizeof(*u)); }

static enum cf_err dek_unwrap(struct identity *id, const char *user_id, const uint8_t *ct, size_t n,
                              uint8_t dek[VAULT_KEY_BYTES])
{
    char aad[96];
    int aad_len = aad_format(aad, sizeof(aad), user_id, "dek");
    size_t len = 0;
    const struct vault *v = identity_vault_for(id, vault_sealed_key_id(ct, n));
    enum cf_err err = vault_open(v, ct, n, aad, (size_t)aad_len, dek, VAULT_KEY_BYTES, &len);
    if (err == CF_OK && len != VAULT_KEY_BYTES)
        err = CF_ERR_CORRUPT;
    return err;
}

static enum cf_err totp_secret_open(const struct user_row *u, const char *field, const uint8_t *ct,
                                    size_t n, uint8_t out[TOTP_SECRET_BYTES])
{
    size_t len = 0;
    char secret[TOTP_SECRET_BYTES + 1];
    enum cf_err err =
        identity_field_open(u->dek, u->id, field, ct, n, secret, sizeof(secret), &len);
    if (err == CF_OK && len != TOTP_SECRET_BYTES)
        err = CF_ERR_CORRUPT;
    if (err == CF_OK)
        memcpy(out, secret, TOTP_SECRET_BYTES);
    hash_wipe(secret, sizeof(secret));
    return err;
}

static enum cf_err user_fields_open(struct identity *id, const struct sql_rows *r,
                                    struct user_row *u)
{
    size_t n = 0;
    const uint8_t *wrapped = sql_row_blob(r, 0, 3, &n);
    if (wrapped == NULL) { /* closed: shredded */
        u->closed = true;
        return CF_OK;
    }
    enum cf_err err = dek_unwrap(id, u->id, wrapped, n, u->dek);
    const uint8_t *ct;
    if (err == CF_OK && (ct = sql_row_blob(r, 0, 4, &n)) != NULL)
        err = identity_field_open(u->dek, u->id, "login", ct, n, u->login, sizeof(u->login), NULL);
    if (err == CF_OK && (ct = sql_row_blob(r, 0, 5, &n)) != NULL)
        err = identity_field_open(u->dek, u->id, "name", ct, n, u->name, sizeof(u->name), NULL);
    if (err == CF_OK && (ct = sql_row_blob(r, 0, 6, &n)) != NULL &&
        (err = totp_secret_open(u, "totp", ct, n, u->totp_secret)) == CF_OK)
        u->has_totp_secret = true;
    if (err == CF_OK && (ct = sql_row_blob(r, 0, 10, &n)) != NULL &&
        (err = totp_secret_open(u, "totp", ct, n, u->totp_pending)) == CF_OK)
        u->has_totp_pending = true;
    return err;
}

enum cf_err identity_user_load(struct identity *id, struct sqltx *tx, const char *user_id,
                               bool lock, struct user_row *out)
{
    const char *q = lock ? "SELECT role, closed, password_hash, dek_wrapped, login_sealed, "
                           "name_sealed, totp_sealed, totp_enabled, totp_last_step, created_at_us, "
                           "totp_pending_sealed FROM id_users WHERE id = $1 FOR UPDATE"
                         : "SELECT role, closed, password_hash, dek_wrapped, login_sealed, "
                           "name_sealed, totp_sealed, totp_enabled, totp_last_step, created_at_us, "
                           "totp_pending_sealed FROM id_users WHERE id = $1";
    struct sql_value p[] = {SQL_T(user_id)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, q, p, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) != 1) {
        sql_rows_free(r);
        return CF_ERR_NOT_FOUND;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", user_id);
    int64_t role = sql_row_int(r, 0, 0);
    out->role =
        role >= 0 && role < IDENTITY_ROLE_COUNT ? (enum identity_role)role : IDENTITY_CUSTOMER;
    out->closed = sql_row_int(r, 0, 1) != 0;
    snprintf(out->password_hash, sizeof(out->password_hash), "%s", sql_row_text(r, 0, 2));
    out->totp_enabled = sql_row_int(r, 0, 7) != 0;
    out->totp_last_step = sql_row_int(r, 0, 8);
    out->created_at_us = sql_row_int(r, 0, 9);
    err = role >= 0 && role < IDENTITY_ROLE_COUNT ? user_fields_open(id, r, out) : CF_ERR_CORRUPT;
    sql_rows_free(r);
    if (err != CF_OK)
        user_row_wipe(out);
    return err;
}

enum cf_err identity_user_by_login(struct identity *id, struct sqltx *tx, const char *login,
                                   char user_id_out[ID_TEXT_BYTES_MAX])
{
    uint8_t blind[VAULT_BLIND_BYTES];
    enum cf_err err = identity_login_blind(id, login, blind);
    if (err != CF_OK)
        return err;
    struct sql_value p[] = {SQL_B(blind, sizeof(blind))};
    struct sql_rows *r = NULL;
    err = sql_query(tx, "SELECT id FROM id_users WHERE login_blind = $1 AND closed = 0", p, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 1)
        snprintf(user_id_out, ID_TEXT_BYTES_MAX, "%s", sql_row_text(r, 0, 0));
    else
        err = CF_ERR_NOT_FOUND;
    sql_rows_free(r);
    return err;
}

#define SEALED_FIELD_BYTES (IDENTITY_LOGIN_BYTES_MAX + VAULT_OVERHEAD_BYTES + 1)

enum cf_err identity_user_insert(struct identity *id, struct sqltx *tx, const char *user_id,
                                 enum identity_role role, const char *login, const char *name,
                                 const char *password_hash)
{
    uint8_t dek[VAULT_KEY_BYTES];
    vault_dek_new(dek);
    uint8_t wrapped[VAULT_KEY_BYTES + VAULT_OVERHEAD_BYTES];
    uint8_t login_ct[SEALED_FIELD_BYTES], name_ct[IDENTITY_NAME_BYTES_MAX + VAULT_OVERHEAD_BYTES];
    uint8_t blind[VAULT_BLIND_BYTES];
    size_t wrapped_len = 0, login_len = 0, name_len = 0;
    char aad[96];
    int aad_len = aad_format(aad, sizeof(aad), user_id, "dek");
    enum cf_err err = vault_seal(identity_vault(id), dek, sizeof(dek), aad, (size_t)aad_len,
                                 wrapped, sizeof(wrapped), &wrapped_len);
    if (err == CF_OK)
        err = identity_field_seal(dek, user_id, "login", login, strlen(login), login_ct,
                                  sizeof(login_ct), &login_len);
    if (err == CF_OK)
        err = identity_field_seal(dek, user_id, "name", name, strlen(name), name_ct,
                                  sizeof(name_ct), &name_len);
    if (err == CF_OK)
        err = identity_login_blind(id, login, blind);
    hash_wipe(dek, sizeof(dek));
    if (err != CF_OK)
        return err;
    int64_t now = identity_now_us(id);
    struct sql_value p[] = {SQL_T(user_id),
                            SQL_I(role),
                            SQL_B(blind, sizeof(blind)),
                            SQL_B(wrapped, wrapped_len),
                            SQL_B(login_ct, login_len),
                            SQL_B(name_ct, name_len),
                            SQL_T(password_hash),
                            SQL_I(now)};
    err = sql_exec(tx,
                   "INSERT INTO id_users (id, role, login_blind, dek_wrapped, login_sealed, "
                   "name_sealed, password_hash, created_at_us, updated_at_us) "
                   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                   p, 8, NULL);
    return err == CF_ERR_STORAGE_CONFLICT ? CF_ERR_LOGIN_TAKEN : err;
}

enum cf_err identity_audit_tx(struct sqltx *tx, const struct identity *id,
                              const struct identity_ctx *ctx, const char *actor, const char *action,
                              const char *target, const char *outcome, const char *detail)
{
    struct audit_event ev = {
        .actor = actor,
        .action = action,
        .target = target,
        .ip = ctx != NULL ? ctx->ip : NULL,
        .user_agent = ctx != NULL ? ctx->user_agent : NULL,
        .outcome = outcome,
        .detail = detail,
        .at_us = identity_now_us(id),
    };
    return audit_append(tx, &ev, NULL);
}

enum cf_err identity_audit(struct identity *id, const struct identity_ctx *ctx, const char *actor,
                           const char *action, const char *target, const char *outcome,
                           const char *detail)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_audit_tx(tx, id, ctx, actor, action, target, outcome, detail);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

enum cf_err identity_audit_list(struct identity *id, const struct audit_filter *f,
                                struct audit_record *out, size_t *n_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = audit_list(tx, f, out, n_out);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

enum cf_err identity_send_code(struct identity *id, const char *login, const char *what,
                               const char *code)
{
    char body[NOTIFIER_BODY_BYTES_MAX];
    snprintf(body, sizeof(body),
             "Your Coffer code for %s is %s. It expires in %d minutes. Never share it.", what, code,
             IDENTITY_CODE_TTL_S / 60);
    struct notifier_message m = {
        .channel = strchr(login, '@') != NULL ? NOTIFIER_EMAIL : NOTIFIER_SMS,
        .to = login,
        .subject = "Your Coffer code",
        .body = body,
    };
    enum cf_err err = notifier_send(id->notifier, &m);
    hash_wipe(body, sizeof(body));
    if (err != CF_OK)
        cf_log(LOG_WARN, "could not send a code", "purpose", what, NULL);
    return err;
}
