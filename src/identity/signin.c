/*
 * signin.c - registration, sign-in with its second factor, and password reset.
 *
 * Whether a login exists never shows: registration and reset always hand out an id and send
 * a code only when it makes sense; sign-in spends one argon2id verification either way and
 * answers CF_ERR_INVALID_CREDENTIALS for both a wrong password and an unknown login.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "core/limits.h"
#include "core/log.h"
#include "identity/internal.h"

#define US_PER_S 1000000LL
#define REG_PAYLOAD_BYTES                                                                          \
    (IDENTITY_LOGIN_BYTES_MAX + IDENTITY_NAME_BYTES_MAX + PASSWORD_HASH_BYTES + 8)

/* Codes ------------------------------------------------------------------------------------ */

/* How many codes went to this login in the last hour (the send rate limit). */
static enum cf_err codes_recent(struct identity *id, struct sqltx *tx,
                                const uint8_t blind[VAULT_BLIND_BYTES], int64_t *n_out)
{
    struct sql_value p[] = {SQL_B(blind, VAULT_BLIND_BYTES),
                            SQL_I(identity_now_us(id) - 3600 * US_PER_S)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(
        tx, "SELECT COUNT(*) FROM id_codes WHERE target_blind = $1 AND created_at_us > $2", p, 2,
        &r);
    if (err == CF_OK) {
        *n_out = sql_row_int(r, 0, 0);
        sql_rows_free(r);
    }
    return err;
}

/* Inserts a one-time code row. code may be NULL (no code: a TOTP answer, or a decoy). */
static enum cf_err code_insert(struct identity *id, struct sqltx *tx, const char *code_id,
                               enum code_purpose purpose, const char *user_id,
                               const uint8_t binding[HASH_BYTES], const char *code,
                               const uint8_t *payload, size_t payload_len,
                               const uint8_t *target_blind, bool totp, int64_t *expires_out)
{
    uint8_t code_hash[VAULT_BLIND_BYTES];
    enum cf_err err = CF_OK;
    if (code != NULL && (err = identity_code_hash(id, code_id, code, code_hash)) != CF_OK)
        return err;
    int64_t now = identity_now_us(id);
    int64_t expires = now + IDENTITY_CODE_TTL_S * US_PER_S;
    struct sql_value p[] = {
        SQL_T(code_id),
        SQL_I(purpose),
        user_id != NULL ? SQL_T(user_id) : SQL_NUL,
        SQL_B(binding, HASH_BYTES),
        code != NULL ? SQL_B(code_hash, sizeof(code_hash)) : SQL_NUL,
        payload != NULL ? SQL_B(payload, payload_len) : SQL_NUL,
        target_blind != NULL ? SQL_B(target_blind, VAULT_BLIND_BYTES) : SQL_NUL,
        SQL_I(totp ? 1 : 0),
        SQL_I(now),
        SQL_I(expires),
    };
    err = sql_exec(tx,
                   "INSERT INTO id_codes (id, purpose, user_id, binding, code_hash, payload, "
                   "target_blind, totp, created_at_us, expires_at_us) VALUES ($1, $2, $3, $4, "
                   "$5, $6, $7, $8, $9, $10)",
                   p, 10, NULL);
    if (err == CF_OK && expires_out != NULL)
        *expires_out = expires;
    return err;
}

/* consumed_by: the idempotency key of the request that used a challenge, "|", and the hex of
 * the keyed hash of the code it gave. */
#define CONSUMED_BY_BYTES (IDEM_STORED_KEY_BYTES_MAX + 2 + 2 * VAULT_BLIND_BYTES + 1)

/* A code row as read for checking. */
struct code_row {
    enum code_purpose purpose;
    char user_id[ID_TEXT_BYTES_MAX];
    bool has_user;
    uint8_t binding[HASH_BYTES];
    uint8_t code_hash[VAULT_BLIND_BYTES];
    bool has_code;
    bool totp;
    int64_t attempts;
    int64_t expires_at_us;
    int64_t used_at_us;
    uint8_t payload[REG_PAYLOAD_BYTES + VAULT_OVERHEAD_BYTES];
    size_t payload_len;
    char consumed_by[CONSUMED_BY_BYTES];
};

static enum cf_err code_load(struct sqltx *tx, const char *code_id, struct code_row *out)
{
    struct sql_value p[] = {SQL_T(code_id)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT purpose, user_id, binding, code_hash, payload, totp, "
                                "attempts, expires_at_us, used_at_us, consumed_by FROM id_codes "
                                "WHERE id = $1 "
                                "FOR UPDATE",
                                p, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) != 1) {
        sql_rows_free(r);
        return CF_ERR_NOT_FOUND;
    }
    memset(out, 0, sizeof(*out));
    out->purpose = (enum code_purpose)sql_row_int(r, 0, 0);
    out->has_user = !sql_row_null(r, 0, 1);
    snprintf(out->user_id, sizeof(out->user_id), "%s", sql_row_text(r, 0, 1));
    size_t n = 0;
    const uint8_t *b = sql_row_blob(r, 0, 2, &n);
    if (b != NULL && n == HASH_BYTES)
        memcpy(out->binding, b, HASH_BYTES);
    b = sql_row_blob(r, 0, 3, &n);
    if (b != NULL && n == VAULT_BLIND_BYTES) {
        memcpy(out->code_hash, b, n);
        out->has_code = true;
    }
    b = sql_row_blob(r, 0, 4, &n);
    if (b != NULL && n <= sizeof(out->payload)) {
        memcpy(out->payload, b, n);
        out->payload_len = n;
    }
    out->totp = sql_row_int(r, 0, 5) != 0;
    out->attempts = sql_row_int(r, 0, 6);
    out->expires_at_us = sql_row_int(r, 0, 7);
    out->used_at_us = sql_row_int(r, 0, 8);
    snprintf(out->consumed_by, sizeof(out->consumed_by), "%s", sql_row_text(r, 0, 9));
    sql_rows_free(r);
    return CF_OK;
}

/* Marks a code used (ok; by the request holding idem_key, may be NULL) or counts a wrong
 * attempt. */
static enum cf_err code_mark_by(struct identity *id, struct sqltx *tx, const char *code_id, bool ok,
                                const char *idem_key)
{
    struct sql_value p[] = {SQL_I(identity_now_us(id)), SQL_T(code_id),
                            idem_key != NULL ? SQL_T(idem_key) : SQL_NUL};
    return ok ? sql_exec(tx, "UPDATE id_codes SET used_at_us = $1, consumed_by = $3 WHERE id = $2",
                         p, 3, NULL)
              : sql_exec(tx, "UPDATE id_codes SET attempts = attempts + 1 WHERE id = $2 AND $1 > 0",
                         p, 2, NULL);
}

static enum cf_err code_mark(struct identity *id, struct sqltx *tx, const char *code_id, bool ok)
{
    return code_mark_by(id, tx, code_id, ok, NULL);
}

/* Checks a code row against purpose and the code typed. Returns CF_OK (and the row is to be
 * marked used), or CF_ERR_INVALID_CODE (the caller records the failed attempt). */
static enum cf_err code_verify(struct identity *id, const struct code_row *c, const char *code_id,
                               enum code_purpose purpose, const char *code)
{
    if (c->purpose != purpose || c->used_at_us != 0 || identity_now_us(id) >= c->expires_at_us ||
        c->attempts >= IDENTITY_CODE_ATTEMPTS_MAX || !c->has_code || code == NULL)
        return CF_ERR_INVALID_CODE;
    uint8_t h[VAULT_BLIND_BYTES];
    if (strlen(code) != IDENTITY_CODE_DIGITS || identity_code_hash(id, code_id, code, h) != CF_OK)
        return CF_ERR_INVALID_CODE;
    return hash_equal(h, c->code_hash, sizeof(h)) ? CF_OK : CF_ERR_INVALID_CODE;
}

/* Commits tx after a wrong code was counted, then reports the wrong code. */
static enum cf_err fail_code(struct identity *id, struct sqltx *tx, const char *code_id)
{
    if (code_mark(id, tx, code_id, false) != CF_OK || sql_commit(tx) != CF_OK)
        return CF_ERR_STORAGE;
    return CF_ERR_INVALID_CODE;
}

static enum cf_err tx_end(struct sqltx *tx, enum cf_err err)
{
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

/* Messages requested from one address: each registration or reset counts as a failure on the
 * address's "send" key, so one client cannot make Coffer text thousands of numbers. */
static void send_key(const char *ip, uint8_t out[HASH_BYTES])
{
    char buf[AUDIT_IP_BYTES_MAX + 8];
    int n = snprintf(buf, sizeof(buf), "send:%s", ip != NULL ? ip : "");
    hash_sha256(buf, (size_t)n, out);
}

static enum cf_err sends_allowed(struct identity *id, const struct identity_ctx *ctx)
{
    uint8_t key[HASH_BYTES];
    send_key(ctx != NULL ? ctx->ip : NULL, key);
    int64_t now_s = identity_now_us(id) / US_PER_S;
    if (throttle_wait_s(id->throttle, key, IDENTITY_SENDS_PER_IP_FREE, now_s) > 0)
        return CF_ERR_RATE_LIMITED;
    throttle_failure(id->throttle, key, now_s);
    return CF_OK;
}

/* Registration ------------------------------------------------------------------------------ */

static enum cf_err reg_payload_seal(struct identity *id, const char *reg_id, const char *login,
                                    const char *name, const char *pw_hash, uint8_t *out,
                                    size_t out_bytes, size_t *out_len)
{
    char pt[REG_PAYLOAD_BYTES];
    int n = snprintf(pt, sizeof(pt), "%s%c%s%c%s", login, '\0', name, '\0', pw_hash);
    CF_ASSERT(n > 0 && (size_t)n < sizeof(pt));
    char aad[64];
    int aad_len = snprintf(aad, sizeof(aad), "reg:%s", reg_id);
    enum cf_err err = vault_seal(identity_vault(id), pt, (size_t)n, aad, (size_t)aad_len, out,
                                 out_bytes, out_len);
    hash_wipe(pt, sizeof(pt));
    return err;
}

bool identity_name_valid(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > IDENTITY_NAME_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

enum cf_err identity_register(struct identity *id, const struct identity_ctx *ctx,
                              const char *login, const char *password, size_t password_len,
                              const char *name, char reg_id_out[ID_TEXT_BYTES_MAX],
                              const char **detail_out)
{
    char norm[IDENTITY_LOGIN_BYTES_MAX + 1];
    *detail_out = "login";
    if (identity_login_normalize(login, norm, sizeof(norm), NULL) != CF_OK)
        return CF_ERR_INVALID_FIELD;
    *detail_out = "name";
    if (!identity_name_valid(name))
        return CF_ERR_INVALID_FIELD;
    *detail_out = NULL;
    /* counted before the argon2id work, so one address cannot keep the workers hashing */
    enum cf_err err = sends_allowed(id, ctx);
    if (err != CF_OK)
        return err;
    char pw_hash[PASSWORD_HASH_BYTES];
    err = identity_password_prepare(password, password_len, norm, pw_hash, detail_out);
    if (err != CF_OK)
        return err;
    *detail_out = NULL;
    char reg_id[ID_TEXT_BYTES_MAX], code[IDENTITY_CODE_DIGITS + 1], existing[ID_TEXT_BYTES_MAX];
    identity_id_new(ID_PREFIX_REGISTRATION, reg_id);
    identity_code_new(code);
    uint8_t blind[VAULT_BLIND_BYTES], payload[REG_PAYLOAD_BYTES + VAULT_OVERHEAD_BYTES];
    uint8_t zero[HASH_BYTES] = {0};
    size_t payload_len = 0;
    int64_t recent = 0;
    bool taken = false;
    struct sqltx *tx = NULL;
    err = identity_login_blind(id, norm, blind);
    if (err == CF_OK)
        err = reg_payload_seal(id, reg_id, norm, name, pw_hash, payload, sizeof(payload),
                               &payload_len);
    hash_wipe(pw_hash, sizeof(pw_hash));
    if (err == CF_OK)
        err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = codes_recent(id, tx, blind, &recent);
    if (err == CF_OK && recent >= IDENTITY_CODES_PER_HOUR_MAX)
        err = CF_ERR_RATE_LIMITED;
    if (err == CF_OK) {
        enum cf_err e = identity_user_by_login(id, tx, norm, existing);
        taken = e == CF_OK;
        err = e == CF_ERR_NOT_FOUND ? CF_OK : e;
    }
    /* A taken login gets a registration id too, with no code: verifying it always fails. */
    if (err == CF_OK)
        err = code_insert(id, tx, reg_id, CODE_REGISTER, NULL, zero, taken ? NULL : code, payload,
                          payload_len, blind, false, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, "anonymous", "auth.register", reg_id, "ok", NULL);
    if ((err = tx_end(tx, err)) != CF_OK)
        return err;
    snprintf(reg_id_out, ID_TEXT_BYTES_MAX, "%s", reg_id);
    if (taken) {
        struct notifier_message m = {
            .channel = strchr(norm, '@') != NULL ? NOTIFIER_EMAIL : NOTIFIER_SMS,
            .to = norm,
            .subject = "Coffer registration",
            .body = "Someone tried to register a Coffer account with this address, which "
                    "already has one. If it was you, sign in or reset your password.",
        };
        cf_best_effort(notifier_send(id->notifier, &m));
    } else {
        cf_best_effort(identity_send_code(id, norm, "registration", code));
    }
    hash_wipe(code, sizeof(code));
    return CF_OK;
}

/* Splits an opened registration payload into its three strings. */
static bool reg_payload_split(char *pt, size_t len, const char **login, const char **name,
                              const char **pw_hash)
{
    *login = pt;
    size_t a = strnlen(pt, len);
    if (a + 1 >= len)
        return false;
    *name = pt + a + 1;
    size_t b = strnlen(*name, len - a - 1);
    if (a + 1 + b + 1 >= len)
        return false;
    *pw_hash = *name + b + 1;
    return true;
}

enum cf_err identity_register_verify(struct identity *id, const struct identity_ctx *ctx,
                                     const char *reg_id, const char *code, const char *device,
                                     struct identity_sign_in_result *out)
{
    struct sqltx *tx = NULL;
    struct code_row c;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = code_load(tx, reg_id, &c);
    if (err == CF_ERR_NOT_FOUND) {
        sql_rollback(tx);
        return CF_ERR_INVALID_CODE;
    }
    if (err == CF_OK && code_verify(id, &c, reg_id, CODE_REGISTER, code) != CF_OK)
        return err == CF_OK ? fail_code(id, tx, reg_id) : tx_end(tx, err);
    char pt[REG_PAYLOAD_BYTES + 1];
    size_t pt_len = 0;
    char aad[64];
    int aad_len = snprintf(aad, sizeof(aad), "reg:%s", reg_id);
    if (err == CF_OK)
        err = vault_open(identity_vault_for(id, vault_sealed_key_id(c.payload, c.payload_len)),
                         c.payload, c.payload_len, aad, (size_t)aad_len, (uint8_t *)pt,
                         sizeof(pt) - 1, &pt_len);
    const char *login = NULL, *name = NULL, *pw_hash = NULL;
    if (err == CF_OK && !reg_payload_split(pt, pt_len, &login, &name, &pw_hash))
        err = CF_ERR_CORRUPT;
    if (err == CF_OK)
        pt[pt_len] = '\0';
    struct user_row u;
    memset(&u, 0, sizeof(u));
    identity_id_new(ID_PREFIX_USER, u.id);
    u.role = IDENTITY_CUSTOMER;
    if (err == CF_OK)
        err = identity_user_insert(id, tx, u.id, IDENTITY_CUSTOMER, login, name, pw_hash);
    if (err == CF_ERR_LOGIN_TAKEN) /* registered meanwhile by another registration */
        err = CF_ERR_INVALID_CODE;
    if (err == CF_OK)
        err = code_mark(id, tx, reg_id, true);
    if (err == CF_OK)
        err = identity_session_start(id, tx, ctx, &u, STAGE_FULL, device, out);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "auth.register_verify", u.id, "ok", NULL);
    hash_wipe(pt, sizeof(pt));
    hash_wipe(&c, sizeof(c));
    return tx_end(tx, err);
}

/* Sign-in ------------------------------------------------------------------------------------ */

static void throttle_keys(const uint8_t blind[VAULT_BLIND_BYTES], const char *ip,
                          uint8_t login_key[HASH_BYTES], uint8_t ip_key[HASH_BYTES])
{
    uint8_t buf[VAULT_BLIND_BYTES + 8];
    memcpy(buf, "login:", 6);
    memcpy(buf + 6, blind, VAULT_BLIND_BYTES);
    hash_sha256(buf, 6 + VAULT_BLIND_BYTES, login_key);
    char ipbuf[AUDIT_IP_BYTES_MAX + 8];
    int n = snprintf(ipbuf, sizeof(ipbuf), "ip:%s", ip != NULL ? ip : "");
    hash_sha256(ipbuf, (size_t)n, ip_key);
}

/* Reads the password hash and state of the user holding a login; found_out false when none. */
static enum cf_err sign_in_lookup(struct identity *id, const char *norm, struct user_row *u,
                                  bool *found_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    char user_id[ID_TEXT_BYTES_MAX];
    err = identity_user_by_login(id, tx, norm, user_id);
    *found_out = err == CF_OK;
    if (err == CF_OK)
        err = identity_user_load(id, tx, user_id, false, u);
    if (err == CF_ERR_NOT_FOUND)
        err = CF_OK;
    sql_rollback(tx);
    return err;
}

void identity_on_sign_in_failure(struct identity *id, identity_failure_fn fn, void *ctx)
{
    id->on_failure = fn;
    id->on_failure_ctx = ctx;
}

/* Tells the failure hook about a known user's failed sign-in. */
static void failure_notify(struct identity *id, const char *user_id)
{
    if (id->on_failure != NULL && user_id != NULL && strncmp(user_id, "usr_", 4) == 0)
        id->on_failure(id->on_failure_ctx, user_id, identity_now_us(id));
}

static enum cf_err sign_in_record(struct identity *id, const struct identity_ctx *ctx,
                                  const char *actor, const char *outcome, const char *detail)
{
    if (strcmp(outcome, "failed") == 0)
        failure_notify(id, actor);
    return identity_audit(id, ctx, actor, "auth.sign_in", actor, outcome, detail);
}

/* The password matched: open a session, or a second-factor step. */
static enum cf_err sign_in_finish(struct identity *id, const struct identity_ctx *ctx,
                                  const struct user_row *u, const char *device,
                                  struct identity_sign_in_result *out)
{
    enum session_stage stage = STAGE_FULL;
    if (u->totp_enabled)
        stage = STAGE_MFA;
    else if (identity_role_is_staff(u->role))
        stage = STAGE_ENROLL;
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_session_start(id, tx, ctx, u, stage, device, out);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u->id, "auth.sign_in", u->id, "ok",
                                stage == STAGE_FULL ? "password" : "password; second factor due");
    return tx_end(tx, err);
}

enum cf_err identity_sign_in(struct identity *id, const struct identity_ctx *ctx, const char *login,
                             const char *password, size_t password_len, const char *device,
                             struct identity_sign_in_result *out, int64_t *retry_after_s_out)
{
    char norm[IDENTITY_LOGIN_BYTES_MAX + 1];
    if (identity_login_normalize(login, norm, sizeof(norm), NULL) != CF_OK ||
        password_len > PASSWORD_BYTES_MAX)
        return CF_ERR_INVALID_CREDENTIALS;
    uint8_t blind[VAULT_BLIND_BYTES], login_key[HASH_BYTES], ip_key[HASH_BYTES];
    enum cf_err err = identity_login_blind(id, norm, blind);
    if (err != CF_OK)
        return err;
    throttle_keys(blind, ctx != NULL ? ctx->ip : NULL, login_key, ip_key);
    int64_t now_s = identity_now_us(id) / US_PER_S;
    int64_t wait_login = throttle_wait_s(id->throttle, login_key, THROTTLE_FREE_FAILURES, now_s);
    int64_t wait_ip = throttle_wait_s(id->throttle, ip_key, THROTTLE_IP_FREE_FAILURES, now_s);
    if (wait_login > 0 || wait_ip > 0) {
        *retry_after_s_out = wait_login > wait_ip ? wait_login : wait_ip;
        cf_best_effort(sign_in_record(id, ctx, "anonymous", "denied", "throttled"));
        return CF_ERR_TOO_MANY_ATTEMPTS;
    }
    struct user_row u;
    bool found = false;
    memset(&u, 0, sizeof(u));
    if ((err = sign_in_lookup(id, norm, &u, &found)) != CF_OK)
        return err;
    char pw[PASSWORD_BYTES_MAX * 4 + 1];
    size_t pw_len = 0;
    bool ok = password_normalize(password, password_len, pw, sizeof(pw), &pw_len) == PASSWORD_OK;
    if (found && ok && !u.closed)
        ok = password_verify(u.password_hash, pw);
    else {
        password_verify_dummy(ok ? pw : "not a password at all");
        ok = false;
    }
    hash_wipe(pw, sizeof(pw));
    if (!ok) {
        throttle_failure(id->throttle, login_key, now_s);
        throttle_failure(id->throttle, ip_key, now_s);
        cf_best_effort(sign_in_record(id, ctx, found ? u.id : "anonymous", "failed", "password"));
        user_row_wipe(&u);
        return CF_ERR_INVALID_CREDENTIALS;
    }
    throttle_success(id->throttle, login_key);
    err = sign_in_finish(id, ctx, &u, device, out);
    user_row_wipe(&u);
    return err;
}

/* The pending sign-in named by an mfa token: its session row, locked. */
static enum cf_err mfa_session_load(struct identity *id, struct sqltx *tx, const char *mfa_token,
                                    char session_id[ID_TEXT_BYTES_MAX], struct user_row *u,
                                    enum session_stage *stage_out)
{
    size_t len = mfa_token != NULL ? strlen(mfa_token) : 0;
    if (len == 0 || len >= IDENTITY_TOKEN_TEXT_BYTES)
        return CF_ERR_UNAUTHORIZED;
    uint8_t h[HASH_BYTES];
    hash_sha256(mfa_token, len, h);
    struct sql_value p[] = {SQL_B(h, HASH_BYTES)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT id, user_id, stage, idle_expires_at_us, revoked_at_us "
                                "FROM id_sessions WHERE token_hash = $1 FOR UPDATE",
                                p, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) != 1 || sql_row_int(r, 0, 2) == STAGE_FULL || sql_row_int(r, 0, 4) != 0 ||
        identity_now_us(id) >= sql_row_int(r, 0, 3)) {
        sql_rows_free(r);
        return CF_ERR_UNAUTHORIZED;
    }
    snprintf(session_id, ID_TEXT_BYTES_MAX, "%s", sql_row_text(r, 0, 0));
    *stage_out = (enum session_stage)sql_row_int(r, 0, 2);
    char user_id[ID_TEXT_BYTES_MAX];
    snprintf(user_id, sizeof(user_id), "%s", sql_row_text(r, 0, 1));
    sql_rows_free(r);
    err = identity_user_load(id, tx, user_id, true, u);
    if (err == CF_OK && u->closed)
        err = CF_ERR_UNAUTHORIZED;
    return err == CF_ERR_NOT_FOUND ? CF_ERR_UNAUTHORIZED : err;
}

/* A wrong second factor: counted on the pending sign-in, which dies after
 * IDENTITY_CODE_ATTEMPTS_MAX of them (the password must be given again). */
static void mfa_failure(struct identity *id, const struct identity_ctx *ctx, const char *session_id,
                        const char *user_id)
{
    failure_notify(id, user_id);
    struct sqltx *tx = NULL;
    if (sql_begin(id->db, &tx) != CF_OK)
        return;
    struct sql_value p[] = {SQL_I(identity_now_us(id)), SQL_T(session_id),
                            SQL_I(IDENTITY_CODE_ATTEMPTS_MAX)};
    enum cf_err err = sql_exec(tx,
                               "UPDATE id_sessions SET mfa_attempts = mfa_attempts + 1, "
                               "revoked_at_us = CASE WHEN mfa_attempts + 1 >= $3 THEN $1 ELSE "
                               "revoked_at_us END WHERE id = $2",
                               p, 3, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, user_id, "auth.sign_in_mfa", user_id, "failed", NULL);
    if (err != CF_OK)
        sql_rollback(tx);
    else
        cf_best_effort(sql_commit(tx));
}

/* Uses one recovery code of u (constant-time against each stored hash). */
static enum cf_err recovery_accept(struct identity *id, struct sqltx *tx, const struct user_row *u,
                                   const char *code)
{
    uint8_t h[VAULT_BLIND_BYTES];
    enum cf_err err = identity_code_hash(id, u->id, code, h);
    if (err != CF_OK)
        return err;
    struct sql_value p[] = {SQL_I(identity_now_us(id)), SQL_T(u->id), SQL_B(h, sizeof(h))};
    int64_t n = 0;
    err = sql_exec(tx,
                   "UPDATE id_recovery SET used_at_us = $1 WHERE user_id = $2 AND code_hash = $3 "
                   "AND used_at_us = 0",
                   p, 3, &n);
    if (err == CF_OK && n != 1)
        err = CF_ERR_INVALID_CODE;
    return err;
}

/* Marks the pending-sign-in row as spent (the full session is a new row with a new token). */
static enum cf_err mfa_session_spend(struct identity *id, struct sqltx *tx, const char *session_id)
{
    struct sql_value p[] = {SQL_I(identity_now_us(id)), SQL_T(session_id)};
    return sql_exec(tx, "UPDATE id_sessions SET revoked_at_us = $1 WHERE id = $2", p, 2, NULL);
}

/* Enrolment during sign-in: the first TOTP code turns TOTP on. */
static enum cf_err enroll_confirm(struct identity *id, struct sqltx *tx, struct user_row *u,
                                  const char *totp,
                                  char (*recovery_codes_out)[IDENTITY_RECOVERY_CODE_BYTES],
                                  size_t *recovery_n_out)
{
    if (!u->has_totp_secret || totp == NULL)
        return CF_ERR_MFA_ENROLMENT_REQUIRED;
    enum cf_err err = identity_totp_accept(id, tx, u, totp);
    if (err == CF_OK) {
        struct sql_value p[] = {SQL_I(identity_now_us(id)), SQL_T(u->id)};
        err = sql_exec(tx, "UPDATE id_users SET totp_enabled = 1, updated_at_us = $1 WHERE id = $2",
                       p, 2, NULL);
    }
    char codes[IDENTITY_RECOVERY_CODES][IDENTITY_RECOVERY_CODE_BYTES];
    if (err == CF_OK)
        err = identity_recovery_new(id, tx, u->id, codes);
    if (err == CF_OK && recovery_codes_out != NULL) {
        memcpy(recovery_codes_out, codes, sizeof(codes));
        *recovery_n_out = IDENTITY_RECOVERY_CODES;
    }
    hash_wipe(codes, sizeof(codes));
    return err;
}

enum cf_err identity_sign_in_mfa(struct identity *id, const struct identity_ctx *ctx,
                                 const char *mfa_token, const char *totp, const char *recovery_code,
                                 struct identity_sign_in_result *out,
                                 char (*recovery_codes_out)[IDENTITY_RECOVERY_CODE_BYTES],
                                 size_t *recovery_n_out)
{
    if (recovery_n_out != NULL)
        *recovery_n_out = 0;
    if ((totp == NULL) == (recovery_code == NULL))
        return CF_ERR_INVALID_CODE;
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    char session_id[ID_TEXT_BYTES_MAX] = "";
    struct user_row u;
    enum session_stage stage = STAGE_MFA;
    memset(&u, 0, sizeof(u));
    err = mfa_session_load(id, tx, mfa_token, session_id, &u, &stage);
    if (err == CF_OK && stage == STAGE_ENROLL)
        err = enroll_confirm(id, tx, &u, totp, recovery_codes_out, recovery_n_out);
    else if (err == CF_OK && totp != NULL)
        err = identity_totp_accept(id, tx, &u, totp);
    else if (err == CF_OK)
        err = recovery_accept(id, tx, &u, recovery_code);
    if (err == CF_ERR_INVALID_CODE) {
        sql_rollback(tx);
        mfa_failure(id, ctx, session_id, u.id);
        user_row_wipe(&u);
        return err;
    }
    if (err == CF_OK)
        err = mfa_session_spend(id, tx, session_id);
    if (err == CF_OK)
        err = identity_session_start(id, tx, ctx, &u, STAGE_FULL, NULL, out);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "auth.sign_in_mfa", u.id, "ok",
                                stage == STAGE_ENROLL ? "totp enrolled"
                                : totp != NULL        ? "totp"
                                                      : "recovery code");
    user_row_wipe(&u);
    return tx_end(tx, err);
}

enum cf_err identity_enroll_begin(struct identity *id, const char *mfa_token,
                                  struct identity_totp_enrolment *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    char session_id[ID_TEXT_BYTES_MAX];
    struct user_row u;
    enum session_stage stage = STAGE_MFA;
    memset(&u, 0, sizeof(u));
    err = mfa_session_load(id, tx, mfa_token, session_id, &u, &stage);
    if (err == CF_OK && stage != STAGE_ENROLL)
        err = CF_ERR_CONFLICT;
    uint8_t secret[TOTP_SECRET_BYTES];
    hash_random(secret, sizeof(secret));
    uint8_t ct[TOTP_SECRET_BYTES + VAULT_OVERHEAD_BYTES];
    size_t ct_len = 0;
    if (err == CF_OK)
        err = identity_field_seal(u.dek, u.id, "totp", secret, sizeof(secret), ct, sizeof(ct),
                                  &ct_len);
    if (err == CF_OK) {
        struct sql_value p[] = {SQL_B(ct, ct_len), SQL_I(identity_now_us(id)), SQL_T(u.id)};
        err = sql_exec(tx,
                       "UPDATE id_users SET totp_sealed = $1, totp_enabled = 0, updated_at_us = "
                       "$2 WHERE id = $3",
                       p, 3, NULL);
    }
    if (err == CF_OK) {
        base32_encode(secret, sizeof(secret), out->secret_b32, sizeof(out->secret_b32));
        err = totp_uri(id->cfg.totp_issuer, u.login, secret, sizeof(secret), out->uri,
                       sizeof(out->uri));
    }
    hash_wipe(secret, sizeof(secret));
    user_row_wipe(&u);
    return tx_end(tx, err);
}

/* Password reset ------------------------------------------------------------------------------ */

enum cf_err identity_reset_start(struct identity *id, const struct identity_ctx *ctx,
                                 const char *login, char reset_id_out[ID_TEXT_BYTES_MAX])
{
    char norm[IDENTITY_LOGIN_BYTES_MAX + 1];
    if (identity_login_normalize(login, norm, sizeof(norm), NULL) != CF_OK)
        return CF_ERR_INVALID_FIELD;
    char reset_id[ID_TEXT_BYTES_MAX], code[IDENTITY_CODE_DIGITS + 1], user_id[ID_TEXT_BYTES_MAX];
    identity_id_new(ID_PREFIX_RESET, reset_id);
    identity_code_new(code);
    uint8_t blind[VAULT_BLIND_BYTES], zero[HASH_BYTES] = {0};
    int64_t recent = 0;
    bool found = false;
    struct sqltx *tx = NULL;
    enum cf_err err = identity_login_blind(id, norm, blind);
    if (err == CF_OK)
        err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = codes_recent(id, tx, blind, &recent);
    if (err == CF_OK && recent >= IDENTITY_CODES_PER_HOUR_MAX)
        err = CF_ERR_RATE_LIMITED;
    if (err == CF_OK)
        err = sends_allowed(id, ctx);
    if (err == CF_OK) {
        enum cf_err e = identity_user_by_login(id, tx, norm, user_id);
        found = e == CF_OK;
        err = e == CF_ERR_NOT_FOUND ? CF_OK : e;
    }
    if (err == CF_OK)
        err = code_insert(id, tx, reset_id, CODE_RESET, found ? user_id : NULL, zero,
                          found ? code : NULL, NULL, 0, blind, false, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, found ? user_id : "anonymous", "auth.reset_start",
                                reset_id, "ok", NULL);
    if ((err = tx_end(tx, err)) != CF_OK)
        return err;
    snprintf(reset_id_out, ID_TEXT_BYTES_MAX, "%s", reset_id);
    if (found)
        cf_best_effort(identity_send_code(id, norm, "a password reset", code));
    hash_wipe(code, sizeof(code));
    return CF_OK;
}

enum cf_err identity_reset_confirm(struct identity *id, const struct identity_ctx *ctx,
                                   const char *reset_id, const char *code, const char *next,
                                   size_t next_len, const char **detail_out)
{
    struct sqltx *tx = NULL;
    struct code_row c;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = code_load(tx, reset_id, &c);
    if (err == CF_ERR_NOT_FOUND) {
        sql_rollback(tx);
        return CF_ERR_INVALID_CODE;
    }
    if (err == CF_OK && code_verify(id, &c, reset_id, CODE_RESET, code) != CF_OK)
        return fail_code(id, tx, reset_id);
    if (err == CF_OK && !c.has_user)
        err = CF_ERR_INVALID_CODE;
    if (err == CF_OK)
        err = identity_user_load(id, tx, c.user_id, true, &u);
    char pw_hash[PASSWORD_HASH_BYTES];
    if (err == CF_OK)
        err = identity_password_prepare(next, next_len, u.login, pw_hash, detail_out);
    if (err == CF_OK) {
        struct sql_value p[] = {SQL_T(pw_hash), SQL_I(identity_now_us(id)), SQL_T(u.id)};
        err =
            sql_exec(tx, "UPDATE id_users SET password_hash = $1, updated_at_us = $2 WHERE id = $3",
                     p, 3, NULL);
    }
    if (err == CF_OK)
        err = code_mark(id, tx, reset_id, true);
    if (err == CF_OK)
        err = identity_sessions_end(id, tx, u.id, NULL, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "auth.password_reset", u.id, "ok", NULL);
    hash_wipe(pw_hash, sizeof(pw_hash));
    err = tx_end(tx, err);
    if (err == CF_OK) {
        uint8_t blind[VAULT_BLIND_BYTES], login_key[HASH_BYTES], ip_key[HASH_BYTES];
        if (identity_login_blind(id, u.login, blind) == CF_OK) {
            throttle_keys(blind, NULL, login_key, ip_key);
            throttle_success(id->throttle, login_key);
        }
        identity_cache_forget_user(id, u.id);
    }
    user_row_wipe(&u);
    return err;
}

/* Shared by step-up ------------------------------------------------------------------------- */

enum cf_err identity_challenge_store(struct identity *id, struct sqltx *tx, const char *chl_id,
                                     const char *user_id, const uint8_t binding[HASH_BYTES],
                                     const char *code, bool totp, int64_t *expires_out)
{
    return code_insert(id, tx, chl_id, CODE_STEP_UP, user_id, binding, code, NULL, 0, NULL, totp,
                       expires_out);
}

static enum cf_err consumed_by_format(struct identity *id, const char *chl_id, const char *idem_key,
                                      const char *code, char out[CONSUMED_BY_BYTES])
{
    uint8_t h[VAULT_BLIND_BYTES];
    char hex[2 * VAULT_BLIND_BYTES + 1];
    if (strlen(idem_key) > IDEM_STORED_KEY_BYTES_MAX || strlen(code) > 16)
        return CF_ERR_INVALID_CODE;
    enum cf_err err = identity_code_hash(id, chl_id, code, h);
    if (err != CF_OK)
        return err;
    hash_hex(h, sizeof(h), hex);
    snprintf(out, CONSUMED_BY_BYTES, "%s|%s", idem_key, hex);
    return CF_OK;
}

/* Checks and spends a step-up challenge inside tx. CF_ERR_INVALID_CODE for any mismatch; the
 * caller commits the failed-attempt count it recorded. */
enum cf_err identity_challenge_check(struct identity *id, struct sqltx *tx, const char *chl_id,
                                     const char *user_id, const uint8_t binding[HASH_BYTES],
                                     const char *code, const char *idem_key, struct user_row *u)
{
    struct code_row c;
    enum cf_err err = code_load(tx, chl_id, &c);
    if (err == CF_ERR_NOT_FOUND)
        return CF_ERR_INVALID_CODE;
    if (err != CF_OK)
        return err;
    bool bound = c.purpose == CODE_STEP_UP && c.has_user && strcmp(c.user_id, user_id) == 0 &&
                 hash_equal(c.binding, binding, HASH_BYTES);
    char by[CONSUMED_BY_BYTES] = "";
    if (idem_key != NULL && idem_key[0] != '\0' && code != NULL &&
        (err = consumed_by_format(id, chl_id, idem_key, code, by)) != CF_OK)
        return err;
    /* The same request again (same key, same binding, same code): let it reach its stored
     * answer. */
    bool retry_window = identity_now_us(id) < c.expires_at_us + IDENTITY_RETRY_WINDOW_S * US_PER_S;
    if (bound && retry_window && c.used_at_us != 0 && by[0] != '\0' &&
        strlen(by) == strlen(c.consumed_by) &&
        hash_equal((const uint8_t *)by, (const uint8_t *)c.consumed_by, strlen(by)))
        return CF_OK;
    bool live = c.used_at_us == 0 && identity_now_us(id) < c.expires_at_us &&
                c.attempts < IDENTITY_CODE_ATTEMPTS_MAX;
    if (!bound || !live)
        return CF_ERR_INVALID_CODE;
    if (c.totp)
        err = code != NULL ? identity_totp_accept(id, tx, u, code) : CF_ERR_INVALID_CODE;
    else
        err = code_verify(id, &c, chl_id, CODE_STEP_UP, code);
    if (err == CF_ERR_INVALID_CODE) {
        (void)code_mark(id, tx, chl_id, false);
        return err;
    }
    return err == CF_OK ? code_mark_by(id, tx, chl_id, true, by[0] != '\0' ? by : NULL) : err;
}

/* Changing the login (phone or email) ------------------------------------------------------ */

enum cf_err identity_login_change_start(struct identity *id, const struct identity_ctx *ctx,
                                        const struct identity_principal *p, const char *new_login,
                                        const struct identity_verification *v,
                                        char change_id_out[ID_TEXT_BYTES_MAX])
{
    char norm[IDENTITY_LOGIN_BYTES_MAX + 1];
    if (identity_login_normalize(new_login, norm, sizeof(norm), NULL) != CF_OK)
        return CF_ERR_INVALID_FIELD;
    struct identity_action a = {.action = "login_change", .payee = norm};
    char code[IDENTITY_CODE_DIGITS + 1], change_id[ID_TEXT_BYTES_MAX];
    identity_code_new(code);
    identity_id_new(ID_PREFIX_CHALLENGE, change_id);
    uint8_t blind[VAULT_BLIND_BYTES], zero[HASH_BYTES] = {0};
    uint8_t payload[IDENTITY_LOGIN_BYTES_MAX + VAULT_OVERHEAD_BYTES];
    size_t payload_len = 0;
    char aad[64];
    int aad_len = snprintf(aad, sizeof(aad), "lc:%s", change_id);
    struct sqltx *tx = NULL;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    enum cf_err err = identity_login_blind(id, norm, blind);
    if (err == CF_OK)
        err = vault_seal(identity_vault(id), norm, strlen(norm), aad, (size_t)aad_len, payload,
                         sizeof(payload), &payload_len);
    if (err == CF_OK)
        err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_user_load(id, tx, p->user_id, true, &u);
    if (err == CF_OK && (err = identity_step_up_tx(id, tx, &u, &a, v)) != CF_OK) {
        user_row_wipe(&u);
        return identity_step_up_fail(id, tx, ctx, p->user_id, a.action, err);
    }
    int64_t recent = 0;
    if (err == CF_OK && (err = codes_recent(id, tx, blind, &recent)) == CF_OK &&
        recent >= IDENTITY_CODES_PER_HOUR_MAX)
        err = CF_ERR_RATE_LIMITED;
    if (err == CF_OK)
        err = code_insert(id, tx, change_id, CODE_LOGIN_CHANGE, u.id, zero, code, payload,
                          payload_len, blind, false, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "auth.login_change_start", u.id, "ok", NULL);
    user_row_wipe(&u);
    if ((err = tx_end(tx, err)) != CF_OK)
        return err;
    snprintf(change_id_out, ID_TEXT_BYTES_MAX, "%s", change_id);
    cf_best_effort(identity_send_code(id, norm, "confirming your new login", code));
    hash_wipe(code, sizeof(code));
    return CF_OK;
}

/* Writes the new login (blind index and sealed value) of u. */
static enum cf_err login_replace(struct identity *id, struct sqltx *tx, const struct user_row *u,
                                 const char *login)
{
    uint8_t blind[VAULT_BLIND_BYTES], ct[IDENTITY_LOGIN_BYTES_MAX + VAULT_OVERHEAD_BYTES + 1];
    size_t ct_len = 0;
    enum cf_err err = identity_login_blind(id, login, blind);
    if (err == CF_OK)
        err = identity_field_seal(u->dek, u->id, "login", login, strlen(login), ct, sizeof(ct),
                                  &ct_len);
    if (err != CF_OK)
        return err;
    struct sql_value p[] = {SQL_B(blind, sizeof(blind)), SQL_B(ct, ct_len),
                            SQL_I(identity_now_us(id)), SQL_T(u->id)};
    err = sql_exec(tx,
                   "UPDATE id_users SET login_blind = $1, login_sealed = $2, updated_at_us = $3 "
                   "WHERE id = $4",
                   p, 4, NULL);
    return err == CF_ERR_STORAGE_CONFLICT ? CF_ERR_LOGIN_TAKEN : err;
}

enum cf_err identity_login_change_confirm(struct identity *id, const struct identity_ctx *ctx,
                                          const struct identity_principal *p, const char *change_id,
                                          const char *code)
{
    struct sqltx *tx = NULL;
    struct code_row c;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = code_load(tx, change_id, &c);
    if (err == CF_ERR_NOT_FOUND || (err == CF_OK && (!c.has_user || strcmp(c.user_id, p->user_id))))
        err = CF_ERR_INVALID_CODE;
    if (err == CF_ERR_INVALID_CODE) {
        sql_rollback(tx);
        return err;
    }
    if (err == CF_OK && code_verify(id, &c, change_id, CODE_LOGIN_CHANGE, code) != CF_OK)
        return fail_code(id, tx, change_id);
    char login[IDENTITY_LOGIN_BYTES_MAX + 1], old[IDENTITY_LOGIN_BYTES_MAX + 1];
    size_t len = 0;
    char aad[64];
    int aad_len = snprintf(aad, sizeof(aad), "lc:%s", change_id);
    if (err == CF_OK)
        err = vault_open(identity_vault_for(id, vault_sealed_key_id(c.payload, c.payload_len)),
                         c.payload, c.payload_len, aad, (size_t)aad_len, (uint8_t *)login,
                         sizeof(login) - 1, &len);
    if (err == CF_OK) {
        login[len] = '\0';
        err = identity_user_load(id, tx, p->user_id, true, &u);
    }
    if (err == CF_OK) {
        snprintf(old, sizeof(old), "%s", u.login);
        err = login_replace(id, tx, &u, login);
    }
    if (err == CF_OK)
        err = code_mark(id, tx, change_id, true);
    if (err == CF_OK)
        err = identity_sessions_end(id, tx, u.id, p->session_id, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "auth.login_change", u.id, "ok", NULL);
    user_row_wipe(&u);
    hash_wipe(&c, sizeof(c));
    if ((err = tx_end(tx, err)) != CF_OK)
        return err;
    identity_cache_forget_user(id, p->user_id);
    struct notifier_message m = {
        .channel = strchr(old, '@') != NULL ? NOTIFIER_EMAIL : NOTIFIER_SMS,
        .to = old,
        .subject = "Your Coffer login changed",
        .body = "The login of your Coffer account was changed. If this was not you, contact "
                "support at once.",
    };
    cf_best_effort(notifier_send(id->notifier, &m));
    hash_wipe(login, sizeof(login));
    hash_wipe(old, sizeof(old));
    return CF_OK;
}
