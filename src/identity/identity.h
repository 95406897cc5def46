/*
 * identity.h - people and their credentials: users, roles, sessions, second factors, one-time
 * codes, step-up verification, personal data sealed at rest, and the audit trail of it all.
 *
 * Layering: identity sits above crypto/ and store/sql/ and below api/. It never parses JSON or
 * speaks HTTP; the API decodes requests into the calls below and renders their results.
 *
 * Users. A user has an opaque id ("usr_..."), a role, a login (a phone number in E.164 form or
 * an email address, normalized), a display name and a password (argon2id). The login and the
 * name are personal data: stored sealed with the user's own data key (vault.h), which is
 * itself stored wrapped by the master key; look-ups by login use a blind index. Closing an
 * account erases the wrapped data key and the blind index (crypto-shredding): the ledger keeps
 * its history under the pseudonymous user id, and nothing readable about the person remains.
 *
 * Registration never reveals whether a login is taken: identity_register always answers with a
 * registration id; a code is sent to the login when it is free, a notice when it is taken, and
 * only identity_register_verify with the right code creates the user. Sign-in answers the same
 * error, after the same argon2id work, for an unknown login and a wrong password.
 *
 * Sessions. A session token is 32 random bytes (base64url, "cfs_" prefix); only its SHA-256 is
 * stored. A session ends after cfg.session_idle_s without use or cfg.session_absolute_s after
 * sign-in, whichever comes first, or when revoked. Validated sessions are cached in memory for
 * IDENTITY_SESSION_CACHE_S so a request costs one hash and a table look-up; a revocation in this
 * process takes effect at once, one made by another server within that many seconds.
 *
 * Second factors. Users with TOTP enabled (and every staff member, who must enrol before they
 * can do anything) finish sign-in with a TOTP or a one-time recovery code against a short-lived
 * sign-in token. A TOTP step is accepted once per user (no replay).
 *
 * Step-up. Sensitive actions (identity_action) need a challenge bound to the exact action:
 * identity_challenge_create digests (user, action, amount, currency, payee) and either sends a
 * code (SMS/email) or asks for the user's TOTP; identity_challenge_consume recomputes the
 * digest from the request actually made and accepts only an unexpired, unused challenge whose
 * digest matches and whose code is right. A code approved for 100 to A never authorizes 1000
 * to B. Five wrong codes kill a challenge.
 *
 * Every function that changes something appends to the audit log in the same transaction.
 */
#ifndef COFFER_IDENTITY_IDENTITY_H
#define COFFER_IDENTITY_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/ids.h"
#include "crypto/password.h"
#include "crypto/totp.h"
#include "crypto/vault.h"
#include "identity/audit.h"
#include "identity/notifier.h"
#include "store/sql/sql.h"

#define ID_PREFIX_USER "usr_"
#define ID_PREFIX_SESSION "ses_"
#define ID_PREFIX_CHALLENGE "chl_"
#define ID_PREFIX_REGISTRATION "reg_"
#define ID_PREFIX_RESET "rst_"

#define IDENTITY_TOKEN_RANDOM_BYTES 32
#define IDENTITY_TOKEN_TEXT_BYTES 64 /* "cfs_" + 43 base64url characters + NUL, rounded */
#define IDENTITY_LOGIN_BYTES_MAX 254 /* an email address; a phone is at most 16 */
#define IDENTITY_NAME_BYTES_MAX 200
#define IDENTITY_DEVICE_BYTES_MAX 100
#define IDENTITY_CODE_DIGITS 6
#define IDENTITY_CODE_TTL_S 600       /* one-time codes live 10 minutes */
#define IDENTITY_CODE_ATTEMPTS_MAX 5  /* wrong guesses before a code dies */
#define IDENTITY_CODES_PER_HOUR_MAX 5 /* codes sent to one login per hour */
#define IDENTITY_TOTP_CHALLENGES_PER_HOUR_MAX                                                      \
    20 /* TOTP-answered step-ups per user per hour:                                                \
          at 5 guesses each, 100 guesses an hour */
#define IDENTITY_RETRY_WINDOW_S                                                                    \
    (24 * 3600) /* a spent challenge still admits its own request's                                \
                  idempotent retry this long after it expired                                      \
                  (stored answers are kept at least 24 h) */
#define IDENTITY_SENDS_PER_IP_FREE                                                                 \
    100                              /* registrations/resets from one address before the           \
                                        throttle's exponential delay applies */
#define IDENTITY_MFA_TOKEN_TTL_S 300 /* between password and second factor */
#define IDENTITY_RECOVERY_CODES 10
#define IDENTITY_RECOVERY_CODE_BYTES 16    /* "xxxx-xxxx-xxxx" + NUL, rounded */
#define IDENTITY_SESSIONS_PER_USER_MAX 100 /* older sessions end when a user exceeds this */
#define IDENTITY_SESSION_CACHE_S 5
#define IDENTITY_SESSION_CACHE_MAX 65536
#define IDENTITY_ACTION_BYTES_MAX 32
#define IDENTITY_PAYEE_BYTES_MAX 254    /* an account id, or a new login */
#define IDENTITY_WALLET_ACCOUNTS_MAX 64 /* ledger accounts one customer may open */
#define IDENTITY_AUDITQ_MAX 16384       /* audit lines waiting for the background append */
#define IDENTITY_AUDITQ_FLUSH_MS 50     /* how soon a queued audit line is appended */

enum identity_role {
    IDENTITY_CUSTOMER = 0,
    IDENTITY_MERCHANT = 1,
    IDENTITY_SUPPORT = 2,
    IDENTITY_RISK = 3,
    IDENTITY_ADMIN = 4,
    IDENTITY_AUDITOR = 5,
    IDENTITY_ROLE_COUNT
};
const char *identity_role_name(enum identity_role r);
CF_WARN_UNUSED enum cf_err identity_role_parse(const char *text, enum identity_role *out);
bool identity_role_is_staff(enum identity_role r);

struct identity_config {
    int64_t session_idle_s;       /* default 900 */
    int64_t session_absolute_s;   /* default 43200 */
    int64_t step_up_amount_minor; /* a transfer above this needs step-up; default 100000 */
    const char *totp_issuer;      /* shown by authenticator apps; default "Coffer" */
    struct cf_clock *clock;       /* default the real clock */
    const char *key_file;         /* master key file, re-read when a value names a key not
                                     loaded (keys rotated by another process); NULL = never */
};
void identity_config_defaults(struct identity_config *cfg);

/* Where a request came from, for the audit log and throttling. */
struct identity_ctx {
    const char *ip;
    const char *user_agent;
};

/* Who is calling, once authenticated. */
struct identity_principal {
    char user_id[ID_TEXT_BYTES_MAX];
    char session_id[ID_TEXT_BYTES_MAX];
    enum identity_role role;
};

struct identity;

/* Opens the identity service on db (applying its migrations), sealing with vault and sending
 * codes through notifier. The service keeps pointers to all three; they must outlive it. Key
 * sets it reloads later (cfg.key_file) are its own. */
CF_WARN_UNUSED enum cf_err identity_open(struct sqldb *db, const struct vault *vault,
                                         struct notifier *notifier,
                                         const struct identity_config *cfg, struct identity **out);
void identity_close(struct identity *id);
const struct identity_config *identity_config_get(const struct identity *id);

/* Logins --------------------------------------------------------------------------------------- */

/* Normalizes an email (trimmed, lower case, one '@', printable ASCII, <= 254 bytes) or a phone
 * ("+" then 8 to 15 digits; spaces, dashes and parentheses dropped) into out. *is_email_out
 * tells which. CF_ERR_INVALID_FIELD otherwise. */
CF_WARN_UNUSED enum cf_err identity_login_normalize(const char *text, char *out, size_t out_bytes,
                                                    bool *is_email_out);

/* Registration and sign-in --------------------------------------------------------------------- */

/* Result of a sign-in step: either a session, or a second factor to give. */
struct identity_sign_in_result {
    bool mfa_required;    /* give a TOTP or recovery code with mfa_token */
    bool enroll_required; /* staff without TOTP: enrol first (identity_enroll_begin) */
    char mfa_token[IDENTITY_TOKEN_TEXT_BYTES];
    char token[IDENTITY_TOKEN_TEXT_BYTES]; /* the session token, when no factor is pending */
    struct identity_principal principal;
    int64_t expires_at_us; /* the session's idle deadline */
};

/* password is as typed (normalized here). *detail_out names a refused field or password rule. */
CF_WARN_UNUSED enum cf_err identity_register(struct identity *id, const struct identity_ctx *ctx,
                                             const char *login, const char *password,
                                             size_t password_len, const char *name,
                                             char reg_id_out[ID_TEXT_BYTES_MAX],
                                             const char **detail_out);
CF_WARN_UNUSED enum cf_err
identity_register_verify(struct identity *id, const struct identity_ctx *ctx, const char *reg_id,
                         const char *code, const char *device, struct identity_sign_in_result *out);

/* CF_ERR_INVALID_CREDENTIALS for an unknown login or a wrong password (same work, same answer);
 * CF_ERR_TOO_MANY_ATTEMPTS with *retry_after_s_out while throttled. */
CF_WARN_UNUSED enum cf_err identity_sign_in(struct identity *id, const struct identity_ctx *ctx,
                                            const char *login, const char *password,
                                            size_t password_len, const char *device,
                                            struct identity_sign_in_result *out,
                                            int64_t *retry_after_s_out);
/* Finishes a sign-in with a TOTP code or a recovery code (exactly one non-NULL). For a staff
 * member enrolling, the TOTP code also confirms the enrolment; recovery_codes_out (may be NULL)
 * then receives the new recovery codes and *recovery_n_out their count (else 0). */
CF_WARN_UNUSED enum cf_err identity_sign_in_mfa(
    struct identity *id, const struct identity_ctx *ctx, const char *mfa_token, const char *totp,
    const char *recovery_code, struct identity_sign_in_result *out,
    char (*recovery_codes_out)[IDENTITY_RECOVERY_CODE_BYTES], size_t *recovery_n_out);

/* TOTP enrolment material. */
struct identity_totp_enrolment {
    char secret_b32[TOTP_SECRET_B32_BYTES_MAX];
    char uri[TOTP_URI_BYTES_MAX];
};
/* A staff member's enrolment during sign-in (the mfa_token of an enroll_required result). */
CF_WARN_UNUSED enum cf_err identity_enroll_begin(struct identity *id, const char *mfa_token,
                                                 struct identity_totp_enrolment *out);

/* Called with a known user's id after each failed sign-in (a wrong password or second factor),
 * on the failing thread; for monitoring. Set once, before serving. */
typedef void (*identity_failure_fn)(void *ctx, const char *user_id, int64_t now_us);
void identity_on_sign_in_failure(struct identity *id, identity_failure_fn fn, void *ctx);

/* Sessions --------------------------------------------------------------------------------------
 */

/* CF_ERR_UNAUTHORIZED unless token names a live, fully signed-in session; refreshes its idle
 * deadline. */
CF_WARN_UNUSED enum cf_err identity_authenticate(struct identity *id, const char *token,
                                                 size_t token_len, struct identity_principal *out);
CF_WARN_UNUSED enum cf_err identity_sign_out(struct identity *id, const struct identity_ctx *ctx,
                                             const struct identity_principal *p);

struct identity_session_info {
    char session_id[ID_TEXT_BYTES_MAX];
    char device[IDENTITY_DEVICE_BYTES_MAX + 1];
    char ip[AUDIT_IP_BYTES_MAX + 1];
    int64_t created_at_us;
    int64_t last_seen_at_us;
    int64_t expires_at_us; /* the earlier of idle and absolute deadlines */
    bool current;
};
CF_WARN_UNUSED enum cf_err identity_sessions_list(struct identity *id,
                                                  const struct identity_principal *p,
                                                  struct identity_session_info *out, size_t max,
                                                  size_t *n_out);
/* CF_ERR_NOT_FOUND when session_id is not one of p's live sessions. */
CF_WARN_UNUSED enum cf_err identity_session_revoke(struct identity *id,
                                                   const struct identity_ctx *ctx,
                                                   const struct identity_principal *p,
                                                   const char *session_id);
/* Ends every session of p's user but p's own; *n_out gets how many. */
CF_WARN_UNUSED enum cf_err identity_sessions_revoke_others(struct identity *id,
                                                           const struct identity_ctx *ctx,
                                                           const struct identity_principal *p,
                                                           size_t *n_out);

/* Step-up ------------------------------------------------------------------------------------- */

/* An action a challenge is bound to. action is one of: "transfer", "payee_add",
 * "password_change", "login_change", "mfa_change", "card_add", "data_export",
 * "account_close". amount_minor/currency/payee are 0/NULL when the action has none. */
struct identity_action {
    const char *action;
    int64_t amount_minor;
    const char *currency;
    const char *payee;
};
struct identity_verification {
    const char *challenge_id;
    const char *code;
};
struct identity_challenge {
    char challenge_id[ID_TEXT_BYTES_MAX];
    bool totp; /* answer with a TOTP code; else a code was sent to the login */
    int64_t expires_at_us;
};
CF_WARN_UNUSED enum cf_err identity_challenge_create(struct identity *id,
                                                     const struct identity_ctx *ctx,
                                                     const struct identity_principal *p,
                                                     const struct identity_action *a,
                                                     struct identity_challenge *out);
/* CF_ERR_STEP_UP_REQUIRED when v is NULL or incomplete; CF_ERR_INVALID_CODE when the challenge
 * is unknown, expired, used, bound to another action, or the code is wrong. Consumes it.
 * idem_key (may be NULL) is the request's stored idempotency key: a retry of the same request
 * with the same key and the same verification is accepted again (so the retry reaches the
 * stored answer), any other reuse is refused. */
CF_WARN_UNUSED enum cf_err
identity_challenge_consume(struct identity *id, const struct identity_ctx *ctx,
                           const struct identity_principal *p, const struct identity_action *a,
                           const struct identity_verification *v, const char *idem_key);

/* Payees a customer has sent money to before (a new one needs step-up). */
CF_WARN_UNUSED enum cf_err identity_payee_known(struct identity *id,
                                                const struct identity_principal *p,
                                                const char *payee, bool *known_out);
CF_WARN_UNUSED enum cf_err
identity_payee_add(struct identity *id, const struct identity_principal *p, const char *payee);

/* Credentials -----------------------------------------------------------------------------------
 */

/* Needs the current password and a step-up for "password_change"; ends every other session. */
CF_WARN_UNUSED enum cf_err
identity_password_change(struct identity *id, const struct identity_ctx *ctx,
                         const struct identity_principal *p, const char *current,
                         size_t current_len, const char *next, size_t next_len,
                         const struct identity_verification *v, const char **detail_out);
/* Always gives a reset id (whether or not the login exists); sends a code when it does. */
CF_WARN_UNUSED enum cf_err identity_reset_start(struct identity *id, const struct identity_ctx *ctx,
                                                const char *login,
                                                char reset_id_out[ID_TEXT_BYTES_MAX]);
/* Sets the new password and ends every session of the user; clears sign-in throttling. */
CF_WARN_UNUSED enum cf_err identity_reset_confirm(struct identity *id,
                                                  const struct identity_ctx *ctx,
                                                  const char *reset_id, const char *code,
                                                  const char *next, size_t next_len,
                                                  const char **detail_out);

/* Changing the login: a step-up for ("login_change", payee = the new login, normalized), then
 * a code sent to the new login proves it is the user's; confirming replaces the login, ends
 * the other sessions and tells the old login. CF_ERR_LOGIN_TAKEN at confirmation when another
 * user holds it (only someone who controls that login learns this). */
CF_WARN_UNUSED enum cf_err identity_login_change_start(struct identity *id,
                                                       const struct identity_ctx *ctx,
                                                       const struct identity_principal *p,
                                                       const char *new_login,
                                                       const struct identity_verification *v,
                                                       char change_id_out[ID_TEXT_BYTES_MAX]);
CF_WARN_UNUSED enum cf_err identity_login_change_confirm(struct identity *id,
                                                         const struct identity_ctx *ctx,
                                                         const struct identity_principal *p,
                                                         const char *change_id, const char *code);

/* TOTP for a signed-in user: begin (a step-up for "mfa_change" when TOTP is already on),
 * confirm with a first code (returns recovery codes), disable (customers only; step-up). */
CF_WARN_UNUSED enum cf_err identity_totp_begin(struct identity *id, const struct identity_ctx *ctx,
                                               const struct identity_principal *p,
                                               const struct identity_verification *v,
                                               struct identity_totp_enrolment *out);
CF_WARN_UNUSED enum cf_err
identity_totp_confirm(struct identity *id, const struct identity_ctx *ctx,
                      const struct identity_principal *p, const char *code,
                      char (*recovery_codes_out)[IDENTITY_RECOVERY_CODE_BYTES], size_t *n_out);
CF_WARN_UNUSED enum cf_err identity_totp_disable(struct identity *id,
                                                 const struct identity_ctx *ctx,
                                                 const struct identity_principal *p,
                                                 const struct identity_verification *v);

/* Profile, export, closure -----------------------------------------------------------------------
 */

struct identity_profile {
    char user_id[ID_TEXT_BYTES_MAX];
    enum identity_role role;
    char login[IDENTITY_LOGIN_BYTES_MAX + 1];
    char name[IDENTITY_NAME_BYTES_MAX + 1];
    bool totp_enabled;
    bool closed;
    int64_t created_at_us;
};
CF_WARN_UNUSED enum cf_err identity_profile_get(struct identity *id, const char *user_id,
                                                struct identity_profile *out);
/* Records a data export in the audit log after a step-up for "data_export". */
CF_WARN_UNUSED enum cf_err identity_export_authorize(struct identity *id,
                                                     const struct identity_ctx *ctx,
                                                     const struct identity_principal *p,
                                                     const struct identity_verification *v);
/* Closes p's user (the caller has checked every balance is zero): ends all sessions, erases
 * the data key, blind index, password, second factors and payees. Irreversible. */
CF_WARN_UNUSED enum cf_err identity_account_close(struct identity *id,
                                                  const struct identity_ctx *ctx,
                                                  const struct identity_principal *p,
                                                  const struct identity_verification *v);

/* Wallet accounts: the ledger accounts a customer opened (their owner is the user id). */
CF_WARN_UNUSED enum cf_err identity_wallet_add(struct identity *id, const char *user_id,
                                               uint64_t account_id, const char *currency);
CF_WARN_UNUSED enum cf_err identity_wallet_list(struct identity *id, const char *user_id,
                                                uint64_t *accounts_out, size_t max, size_t *n_out);

/* Customers ---------------------------------------------------------------------------------- */

#define IDENTITY_CUSTOMERS_PAGE_MAX 500 /* ids one identity_customers_page call returns */

/* A page of customers' user ids for a walk over every customer (sanctions re-screening): the
 * open accounts of role customer whose id sorts after after_user_id ("" or NULL: from the
 * first), in the database's order of ids, at most max (1..IDENTITY_CUSTOMERS_PAGE_MAX). Pass
 * the last id of a page as the next after_user_id; a page shorter than max is the last. Every
 * customer open during the whole walk is listed exactly once. Closed accounts are left out:
 * their personal data is erased, so there is nothing left to act on. Staff and merchant users
 * are never listed. Reads ids only: no personal data is opened. *n_out gets the count; ids_out
 * is untouched on error (the SQL facade's errors). */
CF_WARN_UNUSED enum cf_err identity_customers_page(struct identity *id, const char *after_user_id,
                                                   char (*ids_out)[ID_TEXT_BYTES_MAX], size_t max,
                                                   size_t *n_out);

/* Staff ---------------------------------------------------------------------------------------- */

/* Creates a staff member (role other than customer/merchant). actor is the creating admin's
 * user id, "cli" or "operator". CF_ERR_LOGIN_TAKEN when the login exists (staff-only path, so
 * saying it reveals nothing to the public). */
CF_WARN_UNUSED enum cf_err
identity_staff_create(struct identity *id, const struct identity_ctx *ctx, const char *actor,
                      const char *login, const char *password, size_t password_len,
                      const char *name, enum identity_role role,
                      char user_id_out[ID_TEXT_BYTES_MAX], const char **detail_out);
/* The bootstrap: creates an admin only while no admin exists (CF_ERR_ALREADY_BOOTSTRAPPED). */
CF_WARN_UNUSED enum cf_err
identity_bootstrap_admin(struct identity *id, const struct identity_ctx *ctx, const char *login,
                         const char *password, size_t password_len, const char *name,
                         char user_id_out[ID_TEXT_BYTES_MAX], const char **detail_out);
/* Changes a user's role (admin only; ends the user's sessions). */
CF_WARN_UNUSED enum cf_err identity_role_set(struct identity *id, const struct identity_ctx *ctx,
                                             const char *actor, const char *user_id,
                                             enum identity_role role);

/* Merchants ------------------------------------------------------------------------------------ */

/* A merchant organisation and its users. Every merchant user (role merchant) belongs to exactly
 * one merchant, with a right: an owner manages the merchant's users; staff use the merchant's
 * tools but manage no one. A merchant user whose membership was removed keeps no rights. */
#define ID_PREFIX_MERCHANT "mer_"
#define IDENTITY_MERCHANT_NAME_BYTES_MAX 200
#define IDENTITY_MERCHANT_USERS_MAX 1000

enum identity_merchant_right { IDENTITY_MERCHANT_STAFF = 0, IDENTITY_MERCHANT_OWNER = 1 };

struct identity_merchant {
    char merchant_id[ID_TEXT_BYTES_MAX];
    char legal_name[IDENTITY_MERCHANT_NAME_BYTES_MAX + 1];
    char display_name[IDENTITY_MERCHANT_NAME_BYTES_MAX + 1];
    enum identity_merchant_right right; /* the caller's, for identity_merchant_of */
    int64_t created_at_us;
};

struct identity_merchant_user {
    char user_id[ID_TEXT_BYTES_MAX];
    enum identity_merchant_right right;
    char login[IDENTITY_LOGIN_BYTES_MAX + 1];
    char name[IDENTITY_NAME_BYTES_MAX + 1];
};

/* An admin creates a merchant and its first owner (a new user with role merchant). */
CF_WARN_UNUSED enum cf_err
identity_merchant_create(struct identity *id, const struct identity_ctx *ctx, const char *actor,
                         const char *legal_name, const char *display_name, const char *owner_login,
                         const char *owner_password, size_t owner_password_len,
                         const char *owner_name, char merchant_id_out[ID_TEXT_BYTES_MAX],
                         char owner_id_out[ID_TEXT_BYTES_MAX], const char **detail_out);
/* The merchant the caller belongs to; CF_ERR_FORBIDDEN when none. */
CF_WARN_UNUSED enum cf_err identity_merchant_of(struct identity *id,
                                                const struct identity_principal *p,
                                                struct identity_merchant *out);
/* A merchant by id (right is STAFF: no caller); CF_ERR_NOT_FOUND when none. */
CF_WARN_UNUSED enum cf_err identity_merchant_get(struct identity *id, const char *merchant_id,
                                                 struct identity_merchant *out);
/* An owner adds a user (owner or staff) to their merchant. CF_ERR_FORBIDDEN for staff. */
CF_WARN_UNUSED enum cf_err
identity_merchant_user_add(struct identity *id, const struct identity_ctx *ctx,
                           const struct identity_principal *p, const char *login,
                           const char *password, size_t password_len, const char *name,
                           enum identity_merchant_right right, char user_id_out[ID_TEXT_BYTES_MAX],
                           const char **detail_out);
/* An owner lists their merchant's users (up to max). CF_ERR_FORBIDDEN for staff. */
CF_WARN_UNUSED enum cf_err identity_merchant_users(struct identity *id,
                                                   const struct identity_principal *p,
                                                   struct identity_merchant_user *out, size_t max,
                                                   size_t *n_out);
/* An owner removes a user of their merchant (not themself): the membership goes and the user's
 * sessions end. CF_ERR_NOT_FOUND for a user of another merchant or none. */
CF_WARN_UNUSED enum cf_err identity_merchant_user_remove(struct identity *id,
                                                         const struct identity_ctx *ctx,
                                                         const struct identity_principal *p,
                                                         const char *user_id);

/* Audit --------------------------------------------------------------------------------------- */

/* Appends one event in its own transaction (for actions recorded outside identity). */
CF_WARN_UNUSED enum cf_err identity_audit(struct identity *id, const struct identity_ctx *ctx,
                                          const char *actor, const char *action, const char *target,
                                          const char *outcome, const char *detail);
/* Queues one event for the background appender (see auditq.c): for staff actions too frequent
 * to commit one by one (ledger writes). CF_ERR_OVERLOADED when the queue is full. Appended
 * within IDENTITY_AUDITQ_FLUSH_MS; identity_close flushes what is left. */
CF_WARN_UNUSED enum cf_err identity_audit_queue(struct identity *id, const struct identity_ctx *ctx,
                                                const char *actor, const char *action,
                                                const char *target, const char *outcome,
                                                const char *detail);
/* false when the queue is nearly full: refuse the action (503) rather than act unaudited. */
bool identity_audit_queue_room(struct identity *id);
CF_WARN_UNUSED enum cf_err identity_audit_list(struct identity *id, const struct audit_filter *f,
                                               struct audit_record *out, size_t *n_out);

/* Keys ------------------------------------------------------------------------------------------
 */

/* Re-wraps every user's data key with the active master key, in small transactions, while the
 * server runs; *n_out gets the number of keys re-wrapped. Personal data sealed under a data key
 * needs no re-encryption (its key is what changed hands). Short-lived rows sealed directly with
 * a master key (pending registrations, the development outbox) stay readable as long as their
 * key is loaded; blind indexes and code hashes stay under key 1, which must remain loaded. */
CF_WARN_UNUSED enum cf_err identity_keys_rotate(struct identity *id, size_t *n_out);

/* The notifier (for the development outbox API). */
struct notifier *identity_notifier(struct identity *id);


/* Recipients and handles (recipients.c) ----------------------------------------------------------
 */

#define IDENTITY_HANDLE_BYTES_MAX 21 /* 3 to 20 of [a-z0-9_.], without the '@' */
#define IDENTITY_MASKED_NAME_BYTES_MAX 64

/* Sets (or replaces) the customer's public handle. text may start with '@'; it is lower-cased.
 * CF_ERR_INVALID_FIELD for a malformed handle, CF_ERR_CONFLICT when another user has it. */
CF_WARN_UNUSED enum cf_err identity_handle_set(struct identity *id, const struct identity_ctx *ctx,
                                               const struct identity_principal *p,
                                               const char *text,
                                               char handle_out[IDENTITY_HANDLE_BYTES_MAX]);
/* The caller's handle ("" when none). */
CF_WARN_UNUSED enum cf_err identity_handle_get(struct identity *id, const char *user_id,
                                               char handle_out[IDENTITY_HANDLE_BYTES_MAX]);

/* Who money sent to text (a phone number, an email or an "@handle") would reach: an active
 * customer's id and a masked display name ("A*** S."), nothing more. CF_ERR_RECIPIENT_NOT_FOUND
 * otherwise (also for staff, merchants and closed users). */
struct identity_recipient {
    char user_id[ID_TEXT_BYTES_MAX];
    char masked_name[IDENTITY_MASKED_NAME_BYTES_MAX];
};
CF_WARN_UNUSED enum cf_err identity_recipient_find(struct identity *id, const char *text,
                                                   struct identity_recipient *out);
/* Masks a display name: each word keeps its first character, the rest becomes "***"; the last
 * of several words is its initial and a period. */
void identity_name_mask(const char *name, char out[IDENTITY_MASKED_NAME_BYTES_MAX]);

/* The master keys for other modules that seal data (payments): key_id 0 for the active set,
 * else a set holding key_id (NULL when none does). */
const struct vault *identity_keys(struct identity *id, uint32_t key_id);

#endif
