/*
 * internal.h - what the files of src/identity share; not for use outside this folder.
 */
#ifndef COFFER_IDENTITY_INTERNAL_H
#define COFFER_IDENTITY_INTERNAL_H

#include <pthread.h>
#include <time.h>

#include "identity/identity.h"
#include "identity/throttle.h"

/* The master key whose derived index key makes blind indexes and code hashes; it must stay
 * loaded (rotation adds keys, it never removes this one). */
#define IDENTITY_BLIND_KEY_ID 1u

/* What a one-time code is for (id_codes.purpose). */
enum code_purpose {
    CODE_REGISTER = 1,
    CODE_RESET = 2,
    CODE_STEP_UP = 3,
    CODE_LOGIN_CHANGE = 4,
};

/* Session stages (id_sessions.stage). */
enum session_stage {
    STAGE_FULL = 0,   /* signed in */
    STAGE_MFA = 1,    /* password given; a second factor is due */
    STAGE_ENROLL = 2, /* password given; a staff member must enrol TOTP first */
};

/* A user row, with personal data opened. */
struct user_row {
    char id[ID_TEXT_BYTES_MAX];
    enum identity_role role;
    bool closed;
    bool totp_enabled;
    bool has_totp_secret;
    int64_t totp_last_step;
    int64_t created_at_us;
    char password_hash[PASSWORD_HASH_BYTES];
    char login[IDENTITY_LOGIN_BYTES_MAX + 1];
    char name[IDENTITY_NAME_BYTES_MAX + 1];
    uint8_t dek[VAULT_KEY_BYTES];
    uint8_t totp_secret[TOTP_SECRET_BYTES];
    bool has_totp_pending; /* a new authenticator awaiting its first code */
    uint8_t totp_pending[TOTP_SECRET_BYTES];
};

struct session_cache;
struct auditq;

#define IDENTITY_VAULTS_MAX 64       /* key-file reloads kept alive until close */
#define IDENTITY_KEY_FILE_CHECK_S 30 /* how often the key file's mtime is looked at */

struct identity {
    struct sqldb *db;
    _Atomic(const struct vault *) vault; /* the current keys; see identity_vault */
    pthread_mutex_t reload_mu;
    struct vault *reloaded[IDENTITY_VAULTS_MAX];
    size_t reloaded_n;
    struct timespec key_mtime;      /* of the key file as last loaded */
    _Atomic int64_t key_checked_us; /* monotonic time of the last look at the file */
    int64_t wanted_at_us;           /* last reload for a missing key (under reload_mu) */
    struct notifier *notifier;
    struct identity_config cfg;
    struct throttle *throttle;
    identity_failure_fn on_failure; /* set before serving (identity_on_sign_in_failure) */
    void *on_failure_ctx;
    struct session_cache *cache;
    struct auditq *auditq;
};

CF_WARN_UNUSED enum cf_err identity_auditq_start(struct identity *id);
void identity_auditq_stop(struct identity *id);

int64_t identity_now_us(const struct identity *id);

/* The master keys now loaded. */
const struct vault *identity_vault(struct identity *id);
/* The keys to open a value sealed under key_id: when that key is not loaded and the service
 * was opened with a key file, the file is read again (another process rotated the keys). */
const struct vault *identity_vault_for(struct identity *id, uint32_t key_id);

/* A fresh random id with prefix. */
void identity_id_new(const char *prefix, char out[ID_TEXT_BYTES_MAX]);

/* The blind index of a normalized login. */
CF_WARN_UNUSED enum cf_err identity_login_blind(struct identity *id, const char *login,
                                                uint8_t out[VAULT_BLIND_BYTES]);
/* A keyed hash of a one-time code, bound to the id of what it answers. */
CF_WARN_UNUSED enum cf_err identity_code_hash(struct identity *id, const char *owner_id,
                                              const char *code, uint8_t out[VAULT_BLIND_BYTES]);
/* A random numeric code of IDENTITY_CODE_DIGITS digits. */
void identity_code_new(char out[IDENTITY_CODE_DIGITS + 1]);

/* Seals / opens one field of a user with the user's data key; aad is "usr:<id>:<field>". */
CF_WARN_UNUSED enum cf_err identity_field_seal(const uint8_t dek[VAULT_KEY_BYTES],
                                               const char *user_id, const char *field,
                                               const void *pt, size_t n, uint8_t *out,
                                               size_t out_bytes, size_t *out_len);
CF_WARN_UNUSED enum cf_err identity_field_open(const uint8_t dek[VAULT_KEY_BYTES],
                                               const char *user_id, const char *field,
                                               const uint8_t *ct, size_t n, char *out,
                                               size_t out_bytes, size_t *out_len);

/* Loads a user by id (FOR UPDATE when lock) inside tx and opens its personal data.
 * CF_ERR_NOT_FOUND when missing. Wipe with user_row_wipe. */
CF_WARN_UNUSED enum cf_err identity_user_load(struct identity *id, struct sqltx *tx,
                                              const char *user_id, bool lock, struct user_row *out);
/* The user id holding a login (by blind index), or CF_ERR_NOT_FOUND. */
CF_WARN_UNUSED enum cf_err identity_user_by_login(struct identity *id, struct sqltx *tx,
                                                  const char *login,
                                                  char user_id_out[ID_TEXT_BYTES_MAX]);
/* Inserts a new user; the data key is created here. */
CF_WARN_UNUSED enum cf_err identity_user_insert(struct identity *id, struct sqltx *tx,
                                                const char *user_id, enum identity_role role,
                                                const char *login, const char *name,
                                                const char *password_hash);
void user_row_wipe(struct user_row *u);

/* Appends an audit event inside tx. */
CF_WARN_UNUSED enum cf_err identity_audit_tx(struct sqltx *tx, const struct identity *id,
                                             const struct identity_ctx *ctx, const char *actor,
                                             const char *action, const char *target,
                                             const char *outcome, const char *detail);

/* Starts a session (stage, lifetime) for user inside tx; fills token and ids in out. */
CF_WARN_UNUSED enum cf_err identity_session_start(struct identity *id, struct sqltx *tx,
                                                  const struct identity_ctx *ctx,
                                                  const struct user_row *u,
                                                  enum session_stage stage, const char *device,
                                                  struct identity_sign_in_result *out);
/* Revokes sessions of user_id inside tx, except keep_session_id (may be NULL). */
CF_WARN_UNUSED enum cf_err identity_sessions_end(struct identity *id, struct sqltx *tx,
                                                 const char *user_id, const char *keep_session_id,
                                                 size_t *n_out);
/* After revocations, role changes or closure of user_id: every cached session reads its row
 * again before it is trusted (a cache epoch; O(1) whatever the cache holds). */
void identity_cache_forget_user(struct identity *id, const char *user_id);
CF_WARN_UNUSED enum cf_err session_cache_create(struct session_cache **out);
void session_cache_free(struct session_cache *c);

/* Creates recovery codes for the user inside tx (replacing old ones). */
CF_WARN_UNUSED enum cf_err identity_recovery_new(struct identity *id, struct sqltx *tx,
                                                 const char *user_id,
                                                 char (*codes_out)[IDENTITY_RECOVERY_CODE_BYTES]);
/* Checks a TOTP code against u, refusing a step already used; updates totp_last_step in tx. */
CF_WARN_UNUSED enum cf_err identity_totp_accept(struct identity *id, struct sqltx *tx,
                                                struct user_row *u, const char *code);
/* Sends a code message to login (after commit). Failures are logged and returned. */
CF_WARN_UNUSED enum cf_err identity_send_code(struct identity *id, const char *login,
                                              const char *what, const char *code);

/* Stores a step-up challenge (code NULL when the answer is a TOTP). */
CF_WARN_UNUSED enum cf_err identity_challenge_store(struct identity *id, struct sqltx *tx,
                                                    const char *chl_id, const char *user_id,
                                                    const uint8_t binding[HASH_BYTES],
                                                    const char *code, bool totp,
                                                    int64_t *expires_out);
/* Checks and spends a step-up challenge inside tx (u: the user, loaded with lock). On
 * CF_ERR_INVALID_CODE the failed attempt was counted in tx: commit it. */
CF_WARN_UNUSED enum cf_err identity_challenge_check(struct identity *id, struct sqltx *tx,
                                                    const char *chl_id, const char *user_id,
                                                    const uint8_t binding[HASH_BYTES],
                                                    const char *code, const char *idem_key,
                                                    struct user_row *u);

/* Checks a step-up verification for action a inside tx (u loaded with lock). */
CF_WARN_UNUSED enum cf_err identity_step_up_tx(struct identity *id, struct sqltx *tx,
                                               struct user_row *u, const struct identity_action *a,
                                               const struct identity_verification *v);
/* Ends tx after a failed step-up: a wrong code's attempt count is committed, anything else is
 * rolled back. Returns err. */
CF_WARN_UNUSED enum cf_err identity_step_up_fail(struct identity *id, struct sqltx *tx,
                                                 const struct identity_ctx *ctx,
                                                 const char *user_id, const char *action,
                                                 enum cf_err err);

/* Creates a user of role inside tx from what a creator typed (login normalized, name checked,
 * password checked and hashed); *detail_out names a refused field. */
CF_WARN_UNUSED enum cf_err identity_user_create_tx(struct identity *id, struct sqltx *tx,
                                                   enum identity_role role, const char *login,
                                                   const char *password, size_t password_len,
                                                   const char *name,
                                                   char user_id_out[ID_TEXT_BYTES_MAX],
                                                   const char **detail_out);

/* A display name: 1..IDENTITY_NAME_BYTES_MAX bytes, no control characters. */
bool identity_name_valid(const char *name);

/* Normalizes and checks a new password; CF_ERR_WEAK_PASSWORD with the reason. */
CF_WARN_UNUSED enum cf_err identity_password_prepare(const char *pw, size_t len, const char *login,
                                                     char out[PASSWORD_HASH_BYTES],
                                                     const char **detail_out);

#endif
