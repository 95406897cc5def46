/*
 * account.c - what a signed-in user does with their own identity: step-up challenges, payees,
 * password and TOTP changes, profile, export, closure, wallet accounts; and what staff do:
 * create staff, bootstrap the first admin, change roles; and master-key rotation.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/log.h"
#include "identity/internal.h"

#define US_PER_S 1000000LL

static enum cf_err tx_end(struct sqltx *tx, enum cf_err err)
{
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

/* TOTP and recovery codes ---------------------------------------------------------------------- */

enum cf_err identity_totp_accept(struct identity *id, struct sqltx *tx, struct user_row *u,
                                 const char *code)
{
    if (!u->has_totp_secret || code == NULL)
        return CF_ERR_INVALID_CODE;
    uint64_t step = 0;
    int64_t now_s = identity_now_us(id) / US_PER_S;
    if (!totp_check(u->totp_secret, TOTP_SECRET_BYTES, now_s, code, &step))
        return CF_ERR_INVALID_CODE;
    if ((int64_t)step <= u->totp_last_step) /* this step (or a later one) was used: a replay */
        return CF_ERR_INVALID_CODE;
    struct sql_value p[] = {SQL_I((int64_t)step), SQL_T(u->id)};
    enum cf_err err =
        sql_exec(tx, "UPDATE id_users SET totp_last_step = $1 WHERE id = $2", p, 2, NULL);
    if (err == CF_OK)
        u->totp_last_step = (int64_t)step;
    return err;
}

static void recovery_code_new(char out[IDENTITY_RECOVERY_CODE_BYTES])
{
    static const char alphabet[] = "abcdefghjkmnpqrstuvwxyz23456789"; /* no 0/o, 1/l/i */
    uint8_t raw[12];
    hash_random(raw, sizeof(raw));
    size_t k = 0;
    for (size_t i = 0; i < sizeof(raw); i++) {
        if (i > 0 && i % 4 == 0)
            out[k++] = '-';
        out[k++] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
    }
    out[k] = '\0';
    CF_ASSERT(k < IDENTITY_RECOVERY_CODE_BYTES);
    hash_wipe(raw, sizeof(raw));
}

enum cf_err identity_recovery_new(struct identity *id, struct sqltx *tx, const char *user_id,
                                  char (*codes_out)[IDENTITY_RECOVERY_CODE_BYTES])
{
    struct sql_value d[] = {SQL_T(user_id)};
    enum cf_err err = sql_exec(tx, "DELETE FROM id_recovery WHERE user_id = $1", d, 1, NULL);
    for (size_t i = 0; i < IDENTITY_RECOVERY_CODES && err == CF_OK; i++) {
        recovery_code_new(codes_out[i]);
        uint8_t h[VAULT_BLIND_BYTES];
        err = identity_code_hash(id, user_id, codes_out[i], h);
        if (err == CF_OK) {
            struct sql_value p[] = {SQL_T(user_id), SQL_B(h, sizeof(h))};
            err = sql_exec(tx, "INSERT INTO id_recovery (user_id, code_hash) VALUES ($1, $2)", p, 2,
                           NULL);
        }
    }
    return err;
}

/* Step-up -------------------------------------------------------------------------------------- */

static const char *const step_up_actions[] = {
    "transfer",   "payee_add", "password_change", "login_change",
    "mfa_change", "card_add",  "data_export",     "account_close",
    "send",       "payment",   "withdrawal",      "paycode_device",
};

static bool action_known(const char *a)
{
    for (size_t i = 0; i < sizeof(step_up_actions) / sizeof(step_up_actions[0]); i++) {
        if (a != NULL && strcmp(a, step_up_actions[i]) == 0)
            return true;
    }
    return false;
}

/* The digest a challenge is bound to: user, action, amount, currency and payee. */
static void action_digest(const char *user_id, const struct identity_action *a,
                          uint8_t out[HASH_BYTES])
{
    char amount[24];
    snprintf(amount, sizeof(amount), "%" PRId64, a->amount_minor);
    const char *parts[] = {"coffer-step-up-v1",
                           user_id,
                           a->action,
                           amount,
                           a->currency != NULL ? a->currency : "",
                           a->payee != NULL ? a->payee : ""};
    struct hash_state st;
    hash_sha256_begin(&st);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        hash_sha256_update(&st, parts[i], strlen(parts[i]) + 1); /* with the NUL: unambiguous */
    hash_sha256_end(&st, out);
}

/* Step-up challenges of one kind (sent codes, or TOTP) the user opened in the last hour. */
static enum cf_err step_up_recent(struct identity *id, struct sqltx *tx, const char *user_id,
                                  bool totp, int64_t *n_out)
{
    struct sql_value p[] = {SQL_T(user_id), SQL_I(identity_now_us(id) - 3600 * US_PER_S),
                            SQL_I(totp ? 1 : 0)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT COUNT(*) FROM id_codes WHERE user_id = $1 AND purpose = 3 "
                                "AND totp = $3 AND created_at_us > $2",
                                p, 3, &r);
    if (err == CF_OK) {
        *n_out = sql_row_int(r, 0, 0);
        sql_rows_free(r);
    }
    return err;
}

static bool action_valid(const struct identity_action *a)
{
    return action_known(a->action) && a->amount_minor >= 0 &&
           (a->currency == NULL || strlen(a->currency) <= 12) &&
           (a->payee == NULL || strlen(a->payee) <= IDENTITY_PAYEE_BYTES_MAX);
}

enum cf_err identity_challenge_create(struct identity *id, const struct identity_ctx *ctx,
                                      const struct identity_principal *p,
                                      const struct identity_action *a,
                                      struct identity_challenge *out)
{
    if (!action_valid(a))
        return CF_ERR_INVALID_FIELD;
    struct identity_action bound = *a;
    char login[IDENTITY_LOGIN_BYTES_MAX + 1];
    if (strcmp(a->action, "login_change") == 0) { /* bound to the new login as stored */
        if (a->payee == NULL ||
            identity_login_normalize(a->payee, login, sizeof(login), NULL) != CF_OK)
            return CF_ERR_INVALID_FIELD;
        bound.payee = login;
    }
    uint8_t binding[HASH_BYTES];
    action_digest(p->user_id, &bound, binding);
    char code[IDENTITY_CODE_DIGITS + 1];
    identity_code_new(code);
    struct sqltx *tx = NULL;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    memset(out, 0, sizeof(*out));
    identity_id_new(ID_PREFIX_CHALLENGE, out->challenge_id);
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_user_load(id, tx, p->user_id, false, &u);
    out->totp = err == CF_OK && u.totp_enabled;
    int64_t recent = 0;
    if (err == CF_OK && (err = step_up_recent(id, tx, u.id, out->totp, &recent)) == CF_OK &&
        recent >= (out->totp ? IDENTITY_TOTP_CHALLENGES_PER_HOUR_MAX : IDENTITY_CODES_PER_HOUR_MAX))
        err = CF_ERR_RATE_LIMITED;
    if (err == CF_OK)
        err = identity_challenge_store(id, tx, out->challenge_id, u.id, binding,
                                       out->totp ? NULL : code, out->totp, &out->expires_at_us);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "step_up.challenge", out->challenge_id, "ok",
                                a->action);
    err = tx_end(tx, err);
    if (err == CF_OK && !out->totp)
        cf_best_effort(identity_send_code(id, u.login, "confirming an action", code));
    hash_wipe(code, sizeof(code));
    user_row_wipe(&u);
    return err;
}

/* Checks a verification inside tx (u loaded with lock). */
static enum cf_err step_up_keyed(struct identity *id, struct sqltx *tx, struct user_row *u,
                                 const struct identity_action *a,
                                 const struct identity_verification *v, const char *idem_key)
{
    if (v == NULL || v->challenge_id == NULL || v->code == NULL)
        return CF_ERR_STEP_UP_REQUIRED;
    if (!action_valid(a))
        return CF_ERR_INVALID_FIELD;
    uint8_t binding[HASH_BYTES];
    action_digest(u->id, a, binding);
    return identity_challenge_check(id, tx, v->challenge_id, u->id, binding, v->code, idem_key, u);
}

enum cf_err identity_step_up_tx(struct identity *id, struct sqltx *tx, struct user_row *u,
                                const struct identity_action *a,
                                const struct identity_verification *v)
{
    return step_up_keyed(id, tx, u, a, v, NULL);
}

/* Ends a transaction whose step-up failed: a wrong code's attempt count is kept. */
enum cf_err identity_step_up_fail(struct identity *id, struct sqltx *tx,
                                  const struct identity_ctx *ctx, const char *user_id,
                                  const char *action, enum cf_err err)
{
    if (err != CF_ERR_INVALID_CODE) {
        sql_rollback(tx);
        return err;
    }
    cf_best_effort(
        identity_audit_tx(tx, id, ctx, user_id, "step_up.verify", user_id, "failed", action));
    if (sql_commit(tx) != CF_OK)
        return CF_ERR_STORAGE;
    return err;
}

enum cf_err identity_challenge_consume(struct identity *id, const struct identity_ctx *ctx,
                                       const struct identity_principal *p,
                                       const struct identity_action *a,
                                       const struct identity_verification *v, const char *idem_key)
{
    if (v == NULL || v->challenge_id == NULL || v->code == NULL)
        return CF_ERR_STEP_UP_REQUIRED;
    struct sqltx *tx = NULL;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_user_load(id, tx, p->user_id, true, &u);
    if (err == CF_OK)
        err = step_up_keyed(id, tx, &u, a, v, idem_key);
    if (err != CF_OK) {
        user_row_wipe(&u);
        return identity_step_up_fail(id, tx, ctx, p->user_id, a->action, err);
    }
    err = identity_audit_tx(tx, id, ctx, u.id, "step_up.verify", v->challenge_id, "ok", a->action);
    user_row_wipe(&u);
    return tx_end(tx, err);
}

/* Payees --------------------------------------------------------------------------------------- */

enum cf_err identity_payee_known(struct identity *id, const struct identity_principal *p,
                                 const char *payee, bool *known_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(p->user_id), SQL_T(payee)};
    struct sql_rows *r = NULL;
    err = sql_query(tx, "SELECT 1 FROM id_payees WHERE user_id = $1 AND payee = $2", v, 2, &r);
    sql_rollback(tx);
    if (err == CF_OK) {
        *known_out = sql_rows_n(r) == 1;
        sql_rows_free(r);
    }
    return err;
}

enum cf_err identity_payee_add(struct identity *id, const struct identity_principal *p,
                               const char *payee)
{
    if (strlen(payee) > IDENTITY_PAYEE_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(p->user_id), SQL_T(payee), SQL_I(identity_now_us(id))};
    err = sql_exec(tx,
                   "INSERT INTO id_payees (user_id, payee, created_at_us) VALUES ($1, $2, $3) "
                   "ON CONFLICT DO NOTHING",
                   v, 3, NULL);
    return tx_end(tx, err);
}

/* Password and TOTP changes ------------------------------------------------------------------- */

/* Begins a transaction, loads p's user (locked) and checks a step-up for a. On failure the
 * transaction is over (a wrong code's attempt committed) and *u wiped; on CF_OK the caller
 * owns *tx_out and must wipe *u. */
static enum cf_err stepped_up_begin(struct identity *id, const struct identity_ctx *ctx,
                                    const struct identity_principal *p,
                                    const struct identity_action *a,
                                    const struct identity_verification *v, struct sqltx **tx_out,
                                    struct user_row *u)
{
    memset(u, 0, sizeof(*u));
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    if ((err = identity_user_load(id, tx, p->user_id, true, u)) != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    if ((err = identity_step_up_tx(id, tx, u, a, v)) != CF_OK) {
        user_row_wipe(u);
        return identity_step_up_fail(id, tx, ctx, p->user_id, a->action, err);
    }
    *tx_out = tx;
    return CF_OK;
}

enum cf_err identity_password_change(struct identity *id, const struct identity_ctx *ctx,
                                     const struct identity_principal *p, const char *current,
                                     size_t current_len, const char *next, size_t next_len,
                                     const struct identity_verification *v, const char **detail_out)
{
    struct identity_action a = {.action = "password_change"};
    struct sqltx *tx = NULL;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    char pw_hash[PASSWORD_HASH_BYTES], cur[PASSWORD_BYTES_MAX * 4 + 1];
    size_t cur_len = 0;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    /* The step-up comes first, so a stolen session cannot test passwords: without the second
     * factor every attempt answers step_up_required. Wrong current passwords are throttled. */
    uint8_t key[HASH_BYTES];
    char key_text[ID_TEXT_BYTES_MAX + 8];
    snprintf(key_text, sizeof(key_text), "pw:%s", p->user_id);
    hash_sha256(key_text, strlen(key_text), key);
    int64_t now_s = identity_now_us(id) / US_PER_S;
    err = identity_user_load(id, tx, p->user_id, true, &u);
    if (err == CF_OK && (err = identity_step_up_tx(id, tx, &u, &a, v)) != CF_OK) {
        user_row_wipe(&u);
        return identity_step_up_fail(id, tx, ctx, p->user_id, a.action, err);
    }
    if (err == CF_OK && throttle_wait_s(id->throttle, key, THROTTLE_FREE_FAILURES, now_s) > 0)
        err = CF_ERR_TOO_MANY_ATTEMPTS;
    if (err == CF_OK &&
        (current_len > PASSWORD_BYTES_MAX ||
         password_normalize(current, current_len, cur, sizeof(cur), &cur_len) != PASSWORD_OK ||
         !password_verify(u.password_hash, cur))) {
        throttle_failure(id->throttle, key, now_s);
        err = CF_ERR_INVALID_CREDENTIALS; /* the challenge stays unused: the tx rolls back */
    }
    hash_wipe(cur, sizeof(cur));
    if (err == CF_OK)
        err = identity_password_prepare(next, next_len, u.login, pw_hash, detail_out);
    if (err == CF_OK) {
        struct sql_value q[] = {SQL_T(pw_hash), SQL_I(identity_now_us(id)), SQL_T(u.id)};
        err =
            sql_exec(tx, "UPDATE id_users SET password_hash = $1, updated_at_us = $2 WHERE id = $3",
                     q, 3, NULL);
    }
    if (err == CF_OK)
        err = identity_sessions_end(id, tx, u.id, p->session_id, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "auth.password_change", u.id, "ok", NULL);
    hash_wipe(pw_hash, sizeof(pw_hash));
    user_row_wipe(&u);
    err = tx_end(tx, err);
    if (err == CF_OK) {
        throttle_success(id->throttle, key);
        identity_cache_forget_user(id, p->user_id);
    }
    return err;
}

enum cf_err identity_totp_begin(struct identity *id, const struct identity_ctx *ctx,
                                const struct identity_principal *p,
                                const struct identity_verification *v,
                                struct identity_totp_enrolment *out)
{
    struct identity_action a = {.action = "mfa_change"};
    struct sqltx *tx = NULL;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_user_load(id, tx, p->user_id, true, &u);
    if (err == CF_OK && u.totp_enabled && (err = identity_step_up_tx(id, tx, &u, &a, v)) != CF_OK) {
        user_row_wipe(&u);
        return identity_step_up_fail(id, tx, ctx, p->user_id, a.action, err);
    }
    uint8_t secret[TOTP_SECRET_BYTES], ct[TOTP_SECRET_BYTES + VAULT_OVERHEAD_BYTES];
    size_t ct_len = 0;
    hash_random(secret, sizeof(secret));
    if (err == CF_OK)
        err = identity_field_seal(u.dek, u.id, "totp", secret, sizeof(secret), ct, sizeof(ct),
                                  &ct_len); /* "totp": confirming moves it to totp_sealed */
    if (err == CF_OK) {
        /* The new secret waits beside the old one: TOTP stays on (with the old authenticator)
         * until the new one's first code confirms it. */
        struct sql_value q[] = {SQL_B(ct, ct_len), SQL_I(identity_now_us(id)), SQL_T(u.id)};
        err = sql_exec(tx,
                       "UPDATE id_users SET totp_pending_sealed = $1, updated_at_us = $2 WHERE "
                       "id = $3",
                       q, 3, NULL);
    }
    if (err == CF_OK) {
        base32_encode(secret, sizeof(secret), out->secret_b32, sizeof(out->secret_b32));
        err = totp_uri(id->cfg.totp_issuer, u.login, secret, sizeof(secret), out->uri,
                       sizeof(out->uri));
    }
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "mfa.totp_begin", u.id, "ok", NULL);
    hash_wipe(secret, sizeof(secret));
    user_row_wipe(&u);
    return tx_end(tx, err);
}

enum cf_err identity_totp_confirm(struct identity *id, const struct identity_ctx *ctx,
                                  const struct identity_principal *p, const char *code,
                                  char (*recovery_codes_out)[IDENTITY_RECOVERY_CODE_BYTES],
                                  size_t *n_out)
{
    struct sqltx *tx = NULL;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    *n_out = 0;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_user_load(id, tx, p->user_id, true, &u);
    if (err == CF_OK && !u.has_totp_pending)
        err = CF_ERR_CONFLICT;
    /* The code must come from the new authenticator: check it against the pending secret. */
    uint64_t step = 0;
    if (err == CF_OK &&
        !totp_check(u.totp_pending, TOTP_SECRET_BYTES, identity_now_us(id) / US_PER_S,
                    code != NULL ? code : "", &step))
        err = CF_ERR_INVALID_CODE;
    if (err == CF_OK) {
        struct sql_value q[] = {SQL_I(identity_now_us(id)), SQL_T(u.id), SQL_I((int64_t)step)};
        err = sql_exec(tx,
                       "UPDATE id_users SET totp_sealed = totp_pending_sealed, "
                       "totp_pending_sealed = NULL, totp_enabled = 1, totp_last_step = $3, "
                       "updated_at_us = $1 WHERE id = $2",
                       q, 3, NULL);
    }
    if (err == CF_OK)
        err = identity_recovery_new(id, tx, u.id, recovery_codes_out);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "mfa.totp_enable", u.id, "ok", NULL);
    user_row_wipe(&u);
    err = tx_end(tx, err);
    if (err == CF_OK)
        *n_out = IDENTITY_RECOVERY_CODES;
    return err;
}

enum cf_err identity_totp_disable(struct identity *id, const struct identity_ctx *ctx,
                                  const struct identity_principal *p,
                                  const struct identity_verification *v)
{
    struct identity_action a = {.action = "mfa_change"};
    if (identity_role_is_staff(p->role))
        return CF_ERR_FORBIDDEN; /* staff must keep TOTP */
    struct sqltx *tx = NULL;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_user_load(id, tx, p->user_id, true, &u);
    if (err == CF_OK && !u.totp_enabled) /* said before any code is spent on it */
        err = CF_ERR_CONFLICT;
    if (err == CF_OK && (err = identity_step_up_tx(id, tx, &u, &a, v)) != CF_OK) {
        user_row_wipe(&u);
        return identity_step_up_fail(id, tx, ctx, p->user_id, a.action, err);
    }
    struct sql_value q[] = {SQL_I(identity_now_us(id)), SQL_T(p->user_id)};
    if (err == CF_OK)
        err = sql_exec(
            tx,
            "UPDATE id_users SET totp_enabled = 0, totp_sealed = NULL, totp_pending_sealed = NULL, "
            "updated_at_us = "
            "$1 WHERE id = $2",
            q, 2, NULL);
    if (err == CF_OK)
        err = sql_exec(tx, "DELETE FROM id_recovery WHERE user_id = $2 AND $1 > 0", q, 2, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, u.id, "mfa.totp_disable", u.id, "ok", NULL);
    user_row_wipe(&u);
    return tx_end(tx, err);
}

/* Profile, export, closure --------------------------------------------------------------------- */

enum cf_err identity_profile_get(struct identity *id, const char *user_id,
                                 struct identity_profile *out)
{
    struct sqltx *tx = NULL;
    struct user_row u;
    memset(&u, 0, sizeof(u));
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_user_load(id, tx, user_id, false, &u);
    sql_rollback(tx);
    if (err == CF_OK) {
        memset(out, 0, sizeof(*out));
        snprintf(out->user_id, sizeof(out->user_id), "%s", u.id);
        out->role = u.role;
        snprintf(out->login, sizeof(out->login), "%s", u.login);
        snprintf(out->name, sizeof(out->name), "%s", u.name);
        out->totp_enabled = u.totp_enabled;
        out->closed = u.closed;
        out->created_at_us = u.created_at_us;
    }
    user_row_wipe(&u);
    return err;
}

enum cf_err identity_export_authorize(struct identity *id, const struct identity_ctx *ctx,
                                      const struct identity_principal *p,
                                      const struct identity_verification *v)
{
    struct identity_action a = {.action = "data_export"};
    struct sqltx *tx = NULL;
    struct user_row u;
    enum cf_err err = stepped_up_begin(id, ctx, p, &a, v, &tx, &u);
    if (err != CF_OK)
        return err;
    err = identity_audit_tx(tx, id, ctx, u.id, "privacy.export", u.id, "ok", NULL);
    user_row_wipe(&u);
    return tx_end(tx, err);
}

enum cf_err identity_account_close(struct identity *id, const struct identity_ctx *ctx,
                                   const struct identity_principal *p,
                                   const struct identity_verification *v)
{
    struct identity_action a = {.action = "account_close"};
    struct sqltx *tx = NULL;
    struct user_row u;
    enum cf_err err = stepped_up_begin(id, ctx, p, &a, v, &tx, &u);
    if (err != CF_OK)
        return err;
    struct sql_value q[] = {SQL_I(identity_now_us(id)), SQL_T(p->user_id)};
    /* Crypto-shredding: without the wrapped data key the sealed fields are noise; the blind
     * index goes too so the login cannot even be confirmed. */
    if (err == CF_OK)
        err = sql_exec(tx,
                       "UPDATE id_users SET closed = 1, login_blind = NULL, dek_wrapped = NULL, "
                       "login_sealed = NULL, name_sealed = NULL, password_hash = NULL, "
                       "totp_sealed = NULL, totp_pending_sealed = NULL, totp_enabled = 0, "
                       "updated_at_us = $1 WHERE id = $2",
                       q, 2, NULL);
    if (err == CF_OK)
        err = sql_exec(tx, "DELETE FROM id_recovery WHERE user_id = $2 AND $1 > 0", q, 2, NULL);
    if (err == CF_OK)
        err = sql_exec(tx, "DELETE FROM id_payees WHERE user_id = $2 AND $1 > 0", q, 2, NULL);
    if (err == CF_OK)
        err = sql_exec(tx, "DELETE FROM id_handles WHERE user_id = $2 AND $1 > 0", q, 2, NULL);
    /* what else holds the person's data: codes and registrations (sealed under a master key
     * that stays loaded) and the development outbox */
    uint8_t blind[VAULT_BLIND_BYTES];
    if (err == CF_OK)
        err = identity_login_blind(id, u.login, blind);
    struct sql_value c[] = {SQL_T(p->user_id), SQL_B(blind, sizeof(blind))};
    if (err == CF_OK)
        err = sql_exec(tx, "DELETE FROM id_codes WHERE user_id = $1 OR target_blind = $2", c, 2,
                       NULL);
    if (err == CF_OK)
        err = notifier_outbox_erase(id->notifier, tx, u.login);
    if (err == CF_OK)
        err = identity_sessions_end(id, tx, p->user_id, NULL, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, p->user_id, "privacy.close", p->user_id, "ok", NULL);
    user_row_wipe(&u);
    err = tx_end(tx, err);
    if (err == CF_OK)
        identity_cache_forget_user(id, p->user_id);
    return err;
}

/* Wallet accounts -------------------------------------------------------------------------------
 */

enum cf_err identity_wallet_add(struct identity *id, const char *user_id, uint64_t account_id,
                                const char *currency)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(user_id), SQL_I((int64_t)account_id), SQL_T(currency)};
    err = sql_exec(tx,
                   "INSERT INTO id_wallet (user_id, account_id, currency) VALUES ($1, $2, $3) "
                   "ON CONFLICT DO NOTHING",
                   v, 3, NULL);
    return tx_end(tx, err);
}

enum cf_err identity_wallet_list(struct identity *id, const char *user_id, uint64_t *accounts_out,
                                 size_t max, size_t *n_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(user_id), SQL_I((int64_t)max)};
    struct sql_rows *r = NULL;
    err = sql_query(tx,
                    "SELECT account_id FROM id_wallet WHERE user_id = $1 ORDER BY account_id "
                    "LIMIT $2",
                    v, 2, &r);
    sql_rollback(tx);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r);
    for (size_t i = 0; i < n && i < max; i++)
        accounts_out[i] = (uint64_t)sql_row_int(r, i, 0);
    *n_out = n < max ? n : max;
    sql_rows_free(r);
    return CF_OK;
}

/* Customers ------------------------------------------------------------------------------------ */

enum cf_err identity_customers_page(struct identity *id, const char *after_user_id,
                                    char (*ids_out)[ID_TEXT_BYTES_MAX], size_t max, size_t *n_out)
{
    CF_ASSERT(id != NULL && ids_out != NULL && n_out != NULL);
    CF_ASSERT(max >= 1 && max <= IDENTITY_CUSTOMERS_PAGE_MAX);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_I(IDENTITY_CUSTOMER),
                            SQL_T(after_user_id != NULL ? after_user_id : ""), SQL_I((int64_t)max)};
    struct sql_rows *r = NULL;
    err = sql_query(tx,
                    "SELECT id FROM id_users WHERE role = $1 AND closed = 0 AND id > $2 "
                    "ORDER BY id LIMIT $3",
                    v, 3, &r);
    sql_rollback(tx);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r) < max ? sql_rows_n(r) : max;
    for (size_t i = 0; i < n; i++)
        snprintf(ids_out[i], ID_TEXT_BYTES_MAX, "%s", sql_row_text(r, i, 0));
    sql_rows_free(r);
    *n_out = n;
    CF_ASSERT(*n_out <= max);
    return CF_OK;
}

/* Staff --------------------------------------------------------------------------------------- */

enum cf_err identity_user_create_tx(struct identity *id, struct sqltx *tx, enum identity_role role,
                                    const char *login, const char *password, size_t password_len,
                                    const char *name, char user_id_out[ID_TEXT_BYTES_MAX],
                                    const char **detail_out)
{
    char norm[IDENTITY_LOGIN_BYTES_MAX + 1], pw_hash[PASSWORD_HASH_BYTES];
    *detail_out = "login";
    if (identity_login_normalize(login, norm, sizeof(norm), NULL) != CF_OK)
        return CF_ERR_INVALID_FIELD;
    *detail_out = "name";
    if (!identity_name_valid(name))
        return CF_ERR_INVALID_FIELD;
    *detail_out = NULL;
    enum cf_err err = identity_password_prepare(password, password_len, norm, pw_hash, detail_out);
    if (err != CF_OK)
        return err;
    identity_id_new(ID_PREFIX_USER, user_id_out);
    err = identity_user_insert(id, tx, user_id_out, role, norm, name, pw_hash);
    hash_wipe(pw_hash, sizeof(pw_hash));
    return err;
}

static enum cf_err staff_insert(struct identity *id, struct sqltx *tx,
                                const struct identity_ctx *ctx, const char *actor,
                                const char *login, const char *password, size_t password_len,
                                const char *name, enum identity_role role,
                                char user_id_out[ID_TEXT_BYTES_MAX], const char **detail_out)
{
    *detail_out = "role";
    if (!identity_role_is_staff(role))
        return CF_ERR_INVALID_FIELD;
    enum cf_err err = identity_user_create_tx(id, tx, role, login, password, password_len, name,
                                              user_id_out, detail_out);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, actor, "staff.create", user_id_out, "ok",
                                identity_role_name(role));
    return err;
}

enum cf_err identity_staff_create(struct identity *id, const struct identity_ctx *ctx,
                                  const char *actor, const char *login, const char *password,
                                  size_t password_len, const char *name, enum identity_role role,
                                  char user_id_out[ID_TEXT_BYTES_MAX], const char **detail_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = staff_insert(id, tx, ctx, actor, login, password, password_len, name, role, user_id_out,
                       detail_out);
    return tx_end(tx, err);
}

enum cf_err identity_bootstrap_admin(struct identity *id, const struct identity_ctx *ctx,
                                     const char *login, const char *password, size_t password_len,
                                     const char *name, char user_id_out[ID_TEXT_BYTES_MAX],
                                     const char **detail_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    /* Serialize bootstraps: the audit head row lock is taken by the first audit append, so
     * take it before looking for admins. */
    err = identity_audit_tx(tx, id, ctx, "operator", "staff.bootstrap", "", "ok", NULL);
    struct sql_value v[] = {SQL_I(IDENTITY_ADMIN)};
    struct sql_rows *r = NULL;
    if (err == CF_OK)
        err = sql_query(tx, "SELECT COUNT(*) FROM id_users WHERE role = $1", v, 1, &r);
    if (err == CF_OK && sql_row_int(r, 0, 0) > 0)
        err = CF_ERR_ALREADY_BOOTSTRAPPED;
    sql_rows_free(r);
    if (err == CF_OK)
        err = staff_insert(id, tx, ctx, "operator", login, password, password_len, name,
                           IDENTITY_ADMIN, user_id_out, detail_out);
    return tx_end(tx, err);
}

enum cf_err identity_role_set(struct identity *id, const struct identity_ctx *ctx,
                              const char *actor, const char *user_id, enum identity_role role)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_I(role), SQL_I(identity_now_us(id)), SQL_T(user_id)};
    int64_t n = 0;
    err = sql_exec(tx,
                   "UPDATE id_users SET role = $1, updated_at_us = $2 WHERE id = $3 AND "
                   "closed = 0",
                   v, 3, &n);
    if (err == CF_OK && n != 1)
        err = CF_ERR_NOT_FOUND;
    struct sql_value m[] = {SQL_T(user_id)};
    if (err == CF_OK && role != IDENTITY_MERCHANT) /* no merchant rights outside the role */
        err = sql_exec(tx, "DELETE FROM id_merchant_members WHERE user_id = $1", m, 1, NULL);
    if (err == CF_OK)
        err = identity_sessions_end(id, tx, user_id, NULL, NULL);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, actor, "staff.role_set", user_id, "ok",
                                identity_role_name(role));
    err = tx_end(tx, err);
    if (err == CF_OK)
        identity_cache_forget_user(id, user_id);
    return err;
}

/* Keys ------------------------------------------------------------------------------------------
 */

#define ROTATE_BATCH 200

/* Re-wraps one user's data key with the active master key. */
static enum cf_err rewrap_one(struct identity *id, struct sqltx *tx, const char *user_id,
                              const uint8_t *wrapped, size_t n)
{
    char aad[96];
    int aad_len = snprintf(aad, sizeof(aad), "usr:%s:dek", user_id);
    uint8_t dek[VAULT_KEY_BYTES], out[VAULT_KEY_BYTES + VAULT_OVERHEAD_BYTES];
    size_t len = 0, out_len = 0;
    const struct vault *v = identity_vault_for(id, vault_sealed_key_id(wrapped, n));
    enum cf_err err = vault_open(v, wrapped, n, aad, (size_t)aad_len, dek, sizeof(dek), &len);
    if (err == CF_OK)
        err = vault_seal(identity_vault(id), dek, len, aad, (size_t)aad_len, out, sizeof(out),
                         &out_len);
    hash_wipe(dek, sizeof(dek));
    if (err == CF_OK) {
        struct sql_value q[] = {SQL_B(out, out_len), SQL_T(user_id)};
        err = sql_exec(tx, "UPDATE id_users SET dek_wrapped = $1 WHERE id = $2", q, 2, NULL);
    }
    return err;
}

/* Re-wraps the data keys of up to ROTATE_BATCH users after *after (keyset order) that are under
 * an older master key; moves *after on; *done_out when no user is left. */
static enum cf_err rotate_batch(struct identity *id, char after[ID_TEXT_BYTES_MAX], size_t *n_out,
                                bool *done_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(after), SQL_I(ROTATE_BATCH)};
    err = sql_query(tx,
                    "SELECT id, dek_wrapped FROM id_users WHERE dek_wrapped IS NOT NULL "
                    "AND id > $1 ORDER BY id LIMIT $2",
                    v, 2, &r);
    uint32_t active = vault_active_id(identity_vault(id));
    size_t changed = 0, rows = err == CF_OK ? sql_rows_n(r) : 0;
    for (size_t i = 0; err == CF_OK && i < rows; i++) {
        size_t n = 0;
        const uint8_t *w = sql_row_blob(r, i, 1, &n);
        if (vault_sealed_key_id(w, n) != active) {
            err = rewrap_one(id, tx, sql_row_text(r, i, 0), w, n);
            changed++;
        }
    }
    if (err == CF_OK && rows > 0)
        snprintf(after, ID_TEXT_BYTES_MAX, "%s", sql_row_text(r, rows - 1, 0));
    sql_rows_free(r);
    if ((err = tx_end(tx, err)) == CF_OK) {
        *n_out += changed;
        *done_out = rows < ROTATE_BATCH;
    }
    return err;
}

enum cf_err identity_keys_rotate(struct identity *id, size_t *n_out)
{
    *n_out = 0;
    bool done = false;
    char after[ID_TEXT_BYTES_MAX] = "";
    enum cf_err err = CF_OK;
    while (err == CF_OK && !done)
        err = rotate_batch(id, after, n_out, &done);
    if (err == CF_OK)
        err = identity_audit(id, NULL, "cli", "keys.rotate", "", "ok", NULL);
    return err;
}
