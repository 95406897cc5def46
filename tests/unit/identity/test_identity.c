/*
 * test_identity.c - unit tests for the identity service (src/identity) driven through
 * identity.h, with a fake clock, against SQLite (a fresh file per test) and, when
 * COFFER_TEST_PG_URL is set, against PostgreSQL (a fresh database per test, coffer_ti_<pid>_<n>,
 * dropped after). Codes are read from the development outbox.
 *
 * Sessions: the idle deadline (alive one second before it, dead one second after, moved by use,
 * also by a use served from the cache), the absolute deadline (dead even when used every minute),
 * a revocation in this process refused at once despite the cache, one made behind its back
 * within IDENTITY_SESSION_CACHE_S. Registration: a code creates a customer once; a taken login
 * gets a registration id, a notice and no code. Sign-in: an unknown login and a wrong password
 * give the same answer; throttling after THROTTLE_FREE_FAILURES with a growing wait, lifted by
 * time and by a password reset. TOTP: enrolment, the second factor at sign-in, a step refused
 * twice, a recovery code accepted once, the sign-in token's lifetime; staff enrolment during
 * sign-in. Step-up: a challenge bound to its exact action, single use except for the same
 * idempotency key, dead after IDENTITY_CODE_ATTEMPTS_MAX wrong codes. Credentials: a password
 * change ends the other sessions; closing an account shreds its personal data. Keys: rotation
 * re-wraps every data key, and data sealed before stays readable. The admin bootstrap works once.
 * Merchants: owners manage their own merchant's users only (another merchant's are unknown),
 * staff manage no one, an owner cannot remove themself, a removed user loses sessions and rights.
 *
 * argon2id costs tens of milliseconds per hash: each test keeps its registrations and sign-ins
 * to the few it needs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "testdb.h" /* the throwaway database: SQLite, or PostgreSQL */

#include <fcntl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/hash.h"
#include "crypto/totp.h"
#include "crypto/vault.h"
#include "identity/identity.h"
#include "identity/internal.h"
#include "identity/notifier.h"
#include "identity/throttle.h"
#include "store/sql/sql.h"

#define US_PER_S 1000000LL
#define T0_US 1700000000000000LL /* 2023-11-14, 20 s into a TOTP step */

/* The sessions of the fixture: short enough that the absolute deadline is reached by using a
 * session every minute in a few hundred calls. */
#define IDLE_S 900
#define ABSOLUTE_S 7200

#define TARGET_BYTES_MAX 1024

#define PASSWORD "correct-Horse-battery-staple-91"
#define PASSWORD_NEXT "violet-Tractor-umbrella-lantern-37"
#define PASSWORD_WRONG "correct-Horse-battery-staple-92"

static const struct identity_ctx ctx = {.ip = "192.0.2.10", .user_agent = "test/1.0"};

struct fx {
    char target[TARGET_BYTES_MAX];
    char pg_name[TESTDB_NAME_BYTES]; /* "" for SQLite */
    char dir[TESTDB_DIR_BYTES];      /* the SQLite file and key files */
    struct sqldb *db;
    struct vault *vault; /* key 1 only */
    struct notifier *notifier;
    struct cf_clock clock;
    struct identity_config cfg;
    struct identity *id;
};

/* Databases ------------------------------------------------------------------------------------ */

static bool target_create(struct fx *f)
{
    return testdb_create("ti", false, f->dir, f->pg_name, f->target, sizeof(f->target));
}

static void target_drop(struct fx *f) { testdb_drop(f->dir, f->pg_name); }

/* A vault of one fresh key (id 1). */
static struct vault *vault_one_key(void)
{
    char *text = malloc(VAULT_KEYFILE_BYTES_MAX);
    struct vault *v = NULL;
    bool ok = text != NULL && vault_keyfile_new(NULL, text, VAULT_KEYFILE_BYTES_MAX) == CF_OK &&
              vault_load(text, strlen(text), &v) == CF_OK;
    if (text != NULL)
        hash_wipe(text, VAULT_KEYFILE_BYTES_MAX);
    free(text);
    return ok ? v : NULL;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    f->vault = vault_one_key();
    if (f->vault == NULL || !target_create(f) || sqldb_open(f->target, &f->db) != CF_OK ||
        sqldb_migrate(f->db, "outbox", &notifier_outbox_migration, 1) != CF_OK ||
        notifier_outbox_create(f->db, f->vault, &f->notifier) != CF_OK)
        return -1;
    cf_clock_fake_init(&f->clock, T0_US);
    identity_config_defaults(&f->cfg);
    f->cfg.session_idle_s = IDLE_S;
    f->cfg.session_absolute_s = ABSOLUTE_S;
    f->cfg.clock = &f->clock;
    return identity_open(f->db, f->vault, f->notifier, &f->cfg, &f->id) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    identity_close(f->id);
    notifier_free(f->notifier);
    if (f->db != NULL)
        sqldb_close(f->db);
    vault_free(f->vault);
    target_drop(f);
    free(f);
    return 0;
}

/* Helpers -------------------------------------------------------------------------------------- */

static void advance_s(struct fx *f, int64_t s) { cf_clock_fake_advance(&f->clock, s * US_PER_S); }

static int64_t now_s(struct fx *f) { return cf_clock_now_us(&f->clock) / US_PER_S; }

/* true when text holds IDENTITY_CODE_DIGITS digits in a row. */
static bool has_code(const char *text)
{
    size_t run = 0;
    for (const char *p = text; *p != '\0'; p++) {
        run = *p >= '0' && *p <= '9' ? run + 1 : 0;
        if (run == IDENTITY_CODE_DIGITS)
            return true;
    }
    return false;
}

/* The newest message sent to login (normalized). */
static void outbox_newest(struct fx *f, const char *login, struct notifier_outbox_item *out)
{
    size_t n = 0;
    assert_int_equal(notifier_outbox_list(f->notifier, login, 1, out, &n), CF_OK);
    assert_int_equal(n, 1);
}

static size_t outbox_count(struct fx *f, const char *login)
{
    struct notifier_outbox_item *items = calloc(NOTIFIER_OUTBOX_PAGE_MAX, sizeof(*items));
    assert_non_null(items);
    size_t n = 0;
    assert_int_equal(notifier_outbox_list(f->notifier, login, NOTIFIER_OUTBOX_PAGE_MAX, items, &n),
                     CF_OK);
    free(items);
    return n;
}

/* The code of the newest message sent to login ("... is 012345. ..."). */
static void outbox_code(struct fx *f, const char *login, char out[IDENTITY_CODE_DIGITS + 1])
{
    struct notifier_outbox_item item;
    outbox_newest(f, login, &item);
    const char *at = strstr(item.body, " is ");
    assert_non_null(at);
    memcpy(out, at + 4, IDENTITY_CODE_DIGITS);
    out[IDENTITY_CODE_DIGITS] = '\0';
    for (size_t i = 0; i < IDENTITY_CODE_DIGITS; i++)
        assert_true(out[i] >= '0' && out[i] <= '9');
}

/* A different code of the same shape: the last digit moved on by one. */
static void code_other(const char *code, char out[IDENTITY_CODE_DIGITS + 1])
{
    memcpy(out, code, IDENTITY_CODE_DIGITS + 1);
    char *last = &out[IDENTITY_CODE_DIGITS - 1];
    *last = *last == '9' ? '0' : (char)(*last + 1);
}

static enum cf_err auth(struct fx *f, const char *token, struct identity_principal *out)
{
    struct identity_principal p;
    return identity_authenticate(f->id, token, strlen(token), out != NULL ? out : &p);
}

static enum cf_err sign_in(struct fx *f, const char *login, const char *password,
                           struct identity_sign_in_result *out, int64_t *retry_after_s_out)
{
    int64_t retry = 0;
    return identity_sign_in(f->id, &ctx, login, password, strlen(password), "test device", out,
                            retry_after_s_out != NULL ? retry_after_s_out : &retry);
}

/* Registers login with PASSWORD and verifies it: a signed-in customer. */
static void customer_new(struct fx *f, const char *login, const char *name,
                         struct identity_sign_in_result *out)
{
    char reg_id[ID_TEXT_BYTES_MAX], code[IDENTITY_CODE_DIGITS + 1];
    const char *detail = NULL;
    assert_int_equal(
        identity_register(f->id, &ctx, login, PASSWORD, strlen(PASSWORD), name, reg_id, &detail),
        CF_OK);
    outbox_code(f, login, code);
    assert_int_equal(identity_register_verify(f->id, &ctx, reg_id, code, "phone", out), CF_OK);
    assert_false(out->mfa_required);
    assert_int_equal(out->principal.role, IDENTITY_CUSTOMER);
}

/* The TOTP code of secret_b32 at the fake clock's time. */
static void totp_now(struct fx *f, const char *secret_b32, char out[TOTP_DIGITS + 1])
{
    uint8_t key[TOTP_SECRET_BYTES];
    size_t len = 0;
    assert_int_equal(base32_decode(secret_b32, key, sizeof(key), &len), CF_OK);
    assert_int_equal(len, TOTP_SECRET_BYTES);
    snprintf(out, TOTP_DIGITS + 1, "%06u", (unsigned)totp_at(key, len, now_s(f), TOTP_DIGITS));
}

/* Creates a challenge for a and reads its code from the outbox. */
static void challenge_with_code(struct fx *f, const struct identity_principal *p, const char *login,
                                const struct identity_action *a, struct identity_challenge *out,
                                char code[IDENTITY_CODE_DIGITS + 1])
{
    assert_int_equal(identity_challenge_create(f->id, &ctx, p, a, out), CF_OK);
    assert_false(out->totp);
    assert_true(strncmp(out->challenge_id, ID_PREFIX_CHALLENGE, 4) == 0);
    outbox_code(f, login, code);
}

static void exec_raw(struct sqldb *db, const char *sql, const struct sql_value *p, size_t n)
{
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, p, n, NULL), CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
}

/* Sessions ------------------------------------------------------------------------------------- */

static void test_session_idle_expiry(void **state)
{
    struct fx *f = *state;
    struct identity_sign_in_result s;
    customer_new(f, "idle@example.com", "Idle", &s);
    struct identity_principal p;
    assert_int_equal(s.expires_at_us, T0_US + IDLE_S * US_PER_S);
    /* unused since sign-in: alive one second before the deadline */
    advance_s(f, IDLE_S - 1);
    assert_int_equal(auth(f, s.token, &p), CF_OK);
    assert_string_equal(p.user_id, s.principal.user_id);
    assert_string_equal(p.session_id, s.principal.session_id);
    /* that use moved the deadline: alive again, past the first deadline */
    advance_s(f, IDLE_S - 1);
    assert_int_equal(auth(f, s.token, NULL), CF_OK);
    /* unused for one second more than the idle time: dead, and stays dead */
    advance_s(f, IDLE_S + 1);
    assert_int_equal(auth(f, s.token, NULL), CF_ERR_UNAUTHORIZED);
    assert_int_equal(auth(f, s.token, NULL), CF_ERR_UNAUTHORIZED);
    advance_s(f, 1);
    assert_int_equal(auth(f, s.token, NULL), CF_ERR_UNAUTHORIZED);
    size_t n = 99;
    struct identity_session_info info[4];
    assert_int_equal(identity_sessions_list(f->id, &s.principal, info, 4, &n), CF_OK);
    assert_int_equal(n, 0);
}

/* A use served from the cache counts as use: the idle time runs from it, not from the last
 * time the row was read. */
static void test_session_idle_from_cached_use(void **state)
{
    struct fx *f = *state;
    struct identity_sign_in_result s;
    customer_new(f, "cached@example.com", "Cached", &s);
    assert_int_equal(auth(f, s.token, NULL), CF_OK); /* reads the row, fills the cache */
    advance_s(f, IDENTITY_SESSION_CACHE_S - 1);
    assert_int_equal(auth(f, s.token, NULL), CF_OK); /* from the cache */
    advance_s(f, IDLE_S - 1);                        /* since that last use */
    assert_int_equal(auth(f, s.token, NULL), CF_OK);
    advance_s(f, IDLE_S + 1);
    assert_int_equal(auth(f, s.token, NULL), CF_ERR_UNAUTHORIZED);
}

static void test_session_absolute_expiry(void **state)
{
    struct fx *f = *state;
    struct identity_sign_in_result s;
    customer_new(f, "busy@example.com", "Busy", &s);
    int64_t used_s = 0;
    for (; used_s + 60 < ABSOLUTE_S; used_s += 60) {
        advance_s(f, 60);
        assert_int_equal(auth(f, s.token, NULL), CF_OK);
    }
    /* one second before the absolute deadline, then one after it */
    advance_s(f, ABSOLUTE_S - 1 - used_s);
    assert_int_equal(auth(f, s.token, NULL), CF_OK);
    advance_s(f, 2);
    assert_int_equal(auth(f, s.token, NULL), CF_ERR_UNAUTHORIZED);
    advance_s(f, 1); /* and not from the cache either, once the row is read again */
    assert_int_equal(auth(f, s.token, NULL), CF_ERR_UNAUTHORIZED);
    advance_s(f, IDENTITY_SESSION_CACHE_S);
    assert_int_equal(auth(f, s.token, NULL), CF_ERR_UNAUTHORIZED);
}

static void test_session_revoke_beats_cache(void **state)
{
    struct fx *f = *state;
    struct identity_sign_in_result a, b;
    customer_new(f, "revoke@example.com", "Revoke", &a);
    assert_int_equal(sign_in(f, "revoke@example.com", PASSWORD, &b, NULL), CF_OK);
    assert_string_not_equal(a.principal.session_id, b.principal.session_id);
    /* both cached */
    assert_int_equal(auth(f, a.token, NULL), CF_OK);
    assert_int_equal(auth(f, b.token, NULL), CF_OK);
    struct identity_session_info info[4];
    size_t n = 0;
    assert_int_equal(identity_sessions_list(f->id, &a.principal, info, 4, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_true(info[0].current != info[1].current);
    /* a revokes b: refused at once, the same second */
    assert_int_equal(identity_session_revoke(f->id, &ctx, &a.principal, b.principal.session_id),
                     CF_OK);
    assert_int_equal(auth(f, b.token, NULL), CF_ERR_UNAUTHORIZED);
    assert_int_equal(auth(f, a.token, NULL), CF_OK);
    assert_int_equal(identity_session_revoke(f->id, &ctx, &a.principal, b.principal.session_id),
                     CF_ERR_NOT_FOUND);
    /* sign-out: the same */
    assert_int_equal(auth(f, a.token, NULL), CF_OK);
    assert_int_equal(identity_sign_out(f->id, &ctx, &a.principal), CF_OK);
    assert_int_equal(auth(f, a.token, NULL), CF_ERR_UNAUTHORIZED);
    /* a revocation by another server (the row changed behind this process's back) is seen
     * within IDENTITY_SESSION_CACHE_S */
    struct identity_sign_in_result c;
    assert_int_equal(sign_in(f, "revoke@example.com", PASSWORD, &c, NULL), CF_OK);
    assert_int_equal(auth(f, c.token, NULL), CF_OK);
    struct sql_value v[] = {SQL_I(cf_clock_now_us(&f->clock)), SQL_T(c.principal.session_id)};
    exec_raw(f->db, "UPDATE id_sessions SET revoked_at_us = $1 WHERE id = $2", v, 2);
    advance_s(f, IDENTITY_SESSION_CACHE_S);
    assert_int_equal(auth(f, c.token, NULL), CF_ERR_UNAUTHORIZED);
    /* tokens that are no tokens */
    assert_int_equal(auth(f, "", NULL), CF_ERR_UNAUTHORIZED);
    assert_int_equal(auth(f, "cfs_", NULL), CF_ERR_UNAUTHORIZED);
    assert_int_equal(auth(f, "cfs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL),
                     CF_ERR_UNAUTHORIZED);
}

/* Registration and sign-in --------------------------------------------------------------------- */

static void test_register_verify(void **state)
{
    struct fx *f = *state;
    char reg_id[ID_TEXT_BYTES_MAX], code[IDENTITY_CODE_DIGITS + 1], wrong[IDENTITY_CODE_DIGITS + 1];
    const char *detail = NULL;
    /* the login is normalized before anything is sent */
    assert_int_equal(identity_register(f->id, &ctx, "  Alice@Example.COM ", PASSWORD,
                                       strlen(PASSWORD), "Alice Liddell", reg_id, &detail),
                     CF_OK);
    assert_true(strncmp(reg_id, ID_PREFIX_REGISTRATION, 4) == 0);
    outbox_code(f, "alice@example.com", code);
    code_other(code, wrong);
    struct identity_sign_in_result r;
    assert_int_equal(identity_register_verify(f->id, &ctx, reg_id, wrong, NULL, &r),
                     CF_ERR_INVALID_CODE);
    assert_int_equal(identity_register_verify(f->id, &ctx, "reg_0000000000001", code, NULL, &r),
                     CF_ERR_INVALID_CODE);
    assert_int_equal(identity_register_verify(f->id, &ctx, reg_id, code, "laptop", &r), CF_OK);
    assert_false(r.mfa_required);
    assert_true(strncmp(r.token, "cfs_", 4) == 0);
    assert_int_equal(r.principal.role, IDENTITY_CUSTOMER);
    struct identity_principal p;
    assert_int_equal(auth(f, r.token, &p), CF_OK);
    assert_string_equal(p.user_id, r.principal.user_id);
    struct identity_profile prof;
    assert_int_equal(identity_profile_get(f->id, p.user_id, &prof), CF_OK);
    assert_string_equal(prof.login, "alice@example.com");
    assert_string_equal(prof.name, "Alice Liddell");
    assert_int_equal(prof.role, IDENTITY_CUSTOMER);
    assert_false(prof.closed);
    assert_false(prof.totp_enabled);
    assert_int_equal(prof.created_at_us, T0_US);
    /* the code is spent */
    struct identity_sign_in_result again;
    assert_int_equal(identity_register_verify(f->id, &ctx, reg_id, code, NULL, &again),
                     CF_ERR_INVALID_CODE);
    /* refused before any work: bad login, bad name, weak password */
    assert_int_equal(identity_register(f->id, &ctx, "not a login", PASSWORD, strlen(PASSWORD), "X",
                                       reg_id, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(detail, "login");
    assert_int_equal(identity_register(f->id, &ctx, "+15550001111", PASSWORD, strlen(PASSWORD), "",
                                       reg_id, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(detail, "name");
    assert_int_equal(
        identity_register(f->id, &ctx, "+15550001111", "password12345", 13, "X", reg_id, &detail),
        CF_ERR_WEAK_PASSWORD);
    assert_non_null(detail);
}

static void test_register_taken_login(void **state)
{
    struct fx *f = *state;
    struct identity_sign_in_result first;
    customer_new(f, "+15550002222", "First", &first);
    char old_code[IDENTITY_CODE_DIGITS + 1];
    outbox_code(f, "+15550002222", old_code);
    char reg_id[ID_TEXT_BYTES_MAX];
    const char *detail = NULL;
    assert_int_equal(identity_register(f->id, &ctx, "+1 (555) 000-2222", PASSWORD_NEXT,
                                       strlen(PASSWORD_NEXT), "Second", reg_id, &detail),
                     CF_OK);
    assert_true(strncmp(reg_id, ID_PREFIX_REGISTRATION, 4) == 0);
    /* a notice went out, with no code in it */
    assert_int_equal(outbox_count(f, "+15550002222"), 2);
    struct notifier_outbox_item item;
    outbox_newest(f, "+15550002222", &item);
    assert_false(has_code(item.body));
    /* no code verifies it: neither the earlier one nor any guess */
    struct identity_sign_in_result r;
    assert_int_equal(identity_register_verify(f->id, &ctx, reg_id, old_code, NULL, &r),
                     CF_ERR_INVALID_CODE);
    assert_int_equal(identity_register_verify(f->id, &ctx, reg_id, "000000", NULL, &r),
                     CF_ERR_INVALID_CODE);
    assert_int_equal(identity_register_verify(f->id, &ctx, reg_id, "", NULL, &r),
                     CF_ERR_INVALID_CODE);
    /* the first user is untouched */
    struct identity_profile prof;
    assert_int_equal(identity_profile_get(f->id, first.principal.user_id, &prof), CF_OK);
    assert_string_equal(prof.name, "First");
}

static void test_sign_in_same_error(void **state)
{
    struct fx *f = *state;
    struct identity_sign_in_result s;
    customer_new(f, "bob@example.com", "Bob", &s);
    struct identity_sign_in_result r;
    memset(&r, 0x5a, sizeof(r));
    assert_int_equal(sign_in(f, "nobody@example.com", PASSWORD, &r, NULL),
                     CF_ERR_INVALID_CREDENTIALS);
    assert_int_equal(sign_in(f, "bob@example.com", PASSWORD_WRONG, &r, NULL),
                     CF_ERR_INVALID_CREDENTIALS);
    assert_int_equal(r.token[0], 0x5a); /* nothing handed out */
    assert_int_equal(sign_in(f, "BOB@example.com", PASSWORD, &r, NULL), CF_OK);
    assert_false(r.mfa_required);
    assert_string_equal(r.principal.user_id, s.principal.user_id);
    assert_int_equal(auth(f, r.token, NULL), CF_OK);
}

static void test_sign_in_throttle(void **state)
{
    struct fx *f = *state;
    const char *login = "carol@example.com";
    struct identity_sign_in_result s;
    customer_new(f, login, "Carol", &s);
    int64_t retry = -1;
    for (int i = 0; i < THROTTLE_FREE_FAILURES; i++)
        assert_int_equal(sign_in(f, login, PASSWORD_WRONG, &s, &retry), CF_ERR_INVALID_CREDENTIALS);
    /* throttled: even the right password waits, and the wait grows with each failure */
    assert_int_equal(sign_in(f, login, PASSWORD, &s, &retry), CF_ERR_TOO_MANY_ATTEMPTS);
    assert_int_equal(retry, 1);
    int64_t prev = retry;
    for (int i = 0; i < 3; i++) {
        advance_s(f, prev);
        assert_int_equal(sign_in(f, login, PASSWORD_WRONG, &s, &retry), CF_ERR_INVALID_CREDENTIALS);
        assert_int_equal(sign_in(f, login, PASSWORD_WRONG, &s, &retry), CF_ERR_TOO_MANY_ATTEMPTS);
        assert_true(retry > prev);
        prev = retry;
    }
    assert_int_equal(prev, 8);
    /* part of the wait passed: the rest is asked */
    advance_s(f, 3);
    assert_int_equal(sign_in(f, login, PASSWORD, &s, &retry), CF_ERR_TOO_MANY_ATTEMPTS);
    assert_int_equal(retry, 5);
    /* the whole wait passed: the right password goes through, and clears the count */
    advance_s(f, 5);
    assert_int_equal(sign_in(f, login, PASSWORD, &s, &retry), CF_OK);
    assert_int_equal(auth(f, s.token, NULL), CF_OK);

    /* locked again, then lifted by a password reset */
    for (int i = 0; i < THROTTLE_FREE_FAILURES; i++)
        assert_int_equal(sign_in(f, login, PASSWORD_WRONG, &s, &retry), CF_ERR_INVALID_CREDENTIALS);
    assert_int_equal(sign_in(f, login, PASSWORD, &s, &retry), CF_ERR_TOO_MANY_ATTEMPTS);
    char reset_id[ID_TEXT_BYTES_MAX], code[IDENTITY_CODE_DIGITS + 1];
    assert_int_equal(identity_reset_start(f->id, &ctx, login, reset_id), CF_OK);
    outbox_code(f, login, code);
    const char *detail = NULL;
    assert_int_equal(identity_reset_confirm(f->id, &ctx, reset_id, code, PASSWORD_NEXT,
                                            strlen(PASSWORD_NEXT), &detail),
                     CF_OK);
    assert_int_equal(sign_in(f, login, PASSWORD_NEXT, &s, &retry), CF_OK);
}

/* Second factors ------------------------------------------------------------------------------- */

static void test_totp_sign_in(void **state)
{
    struct fx *f = *state;
    const char *login = "dave@example.com";
    struct identity_sign_in_result s;
    customer_new(f, login, "Dave", &s);
    struct identity_totp_enrolment e;
    assert_int_equal(identity_totp_begin(f->id, &ctx, &s.principal, NULL, &e), CF_OK);
    assert_int_equal(strlen(e.secret_b32), 32);
    assert_non_null(strstr(e.uri, e.secret_b32));
    char codes[IDENTITY_RECOVERY_CODES][IDENTITY_RECOVERY_CODE_BYTES];
    size_t codes_n = 99;
    char totp[TOTP_DIGITS + 1], wrong[TOTP_DIGITS + 1];
    totp_now(f, e.secret_b32, totp);
    code_other(totp, wrong);
    assert_int_equal(identity_totp_confirm(f->id, &ctx, &s.principal, wrong, codes, &codes_n),
                     CF_ERR_INVALID_CODE);
    assert_int_equal(codes_n, 0);
    assert_int_equal(identity_totp_confirm(f->id, &ctx, &s.principal, totp, codes, &codes_n),
                     CF_OK);
    assert_int_equal(codes_n, IDENTITY_RECOVERY_CODES);
    struct identity_profile prof;
    assert_int_equal(identity_profile_get(f->id, s.principal.user_id, &prof), CF_OK);
    assert_true(prof.totp_enabled);

    /* the password alone gives a sign-in token, not a session */
    struct identity_sign_in_result m, full;
    assert_int_equal(sign_in(f, login, PASSWORD, &m, NULL), CF_OK);
    assert_true(m.mfa_required);
    assert_false(m.enroll_required);
    assert_string_equal(m.token, "");
    assert_int_equal(auth(f, m.mfa_token, NULL), CF_ERR_UNAUTHORIZED);
    assert_int_equal(identity_sign_in_mfa(f->id, &ctx, m.mfa_token, NULL, NULL, &full, NULL, NULL),
                     CF_ERR_INVALID_CODE);
    /* the step that confirmed the enrolment is spent */
    assert_int_equal(identity_sign_in_mfa(f->id, &ctx, m.mfa_token, totp, NULL, &full, NULL, NULL),
                     CF_ERR_INVALID_CODE);
    advance_s(f, TOTP_STEP_S);
    totp_now(f, e.secret_b32, totp);
    assert_int_equal(identity_sign_in_mfa(f->id, &ctx, m.mfa_token, totp, NULL, &full, NULL, NULL),
                     CF_OK);
    assert_false(full.mfa_required);
    assert_int_equal(auth(f, full.token, NULL), CF_OK);
    /* the sign-in token is spent too */
    advance_s(f, TOTP_STEP_S);
    totp_now(f, e.secret_b32, totp);
    assert_int_equal(identity_sign_in_mfa(f->id, &ctx, m.mfa_token, totp, NULL, &full, NULL, NULL),
                     CF_ERR_UNAUTHORIZED);

    /* a step used once is refused the second time, even within its window */
    assert_int_equal(sign_in(f, login, PASSWORD, &m, NULL), CF_OK);
    assert_int_equal(identity_sign_in_mfa(f->id, &ctx, m.mfa_token, totp, NULL, &full, NULL, NULL),
                     CF_OK);
    assert_int_equal(sign_in(f, login, PASSWORD, &m, NULL), CF_OK);
    assert_int_equal(identity_sign_in_mfa(f->id, &ctx, m.mfa_token, totp, NULL, &full, NULL, NULL),
                     CF_ERR_INVALID_CODE);
    /* a recovery code instead: once */
    assert_int_equal(
        identity_sign_in_mfa(f->id, &ctx, m.mfa_token, NULL, codes[3], &full, NULL, NULL), CF_OK);
    assert_int_equal(auth(f, full.token, NULL), CF_OK);
    assert_int_equal(sign_in(f, login, PASSWORD, &m, NULL), CF_OK);
    assert_int_equal(
        identity_sign_in_mfa(f->id, &ctx, m.mfa_token, NULL, codes[3], &full, NULL, NULL),
        CF_ERR_INVALID_CODE);
    assert_int_equal(
        identity_sign_in_mfa(f->id, &ctx, m.mfa_token, NULL, "aaaa-bbbb-cccc", &full, NULL, NULL),
        CF_ERR_INVALID_CODE);

    /* step-up answers with a TOTP code too */
    struct identity_action a = {
        .action = "transfer", .amount_minor = 500, .currency = "EUR", .payee = "acct_B"};
    struct identity_challenge chl;
    assert_int_equal(identity_challenge_create(f->id, &ctx, &s.principal, &a, &chl), CF_OK);
    assert_true(chl.totp);
    struct identity_verification v = {.challenge_id = chl.challenge_id, .code = totp};
    assert_int_equal(identity_challenge_consume(f->id, &ctx, &s.principal, &a, &v, NULL),
                     CF_ERR_INVALID_CODE); /* that step was used by the sign-in */
    advance_s(f, TOTP_STEP_S);
    totp_now(f, e.secret_b32, totp);
    assert_int_equal(identity_challenge_consume(f->id, &ctx, &s.principal, &a, &v, NULL), CF_OK);

    /* the sign-in token lives IDENTITY_MFA_TOKEN_TTL_S */
    advance_s(f, IDENTITY_MFA_TOKEN_TTL_S);
    totp_now(f, e.secret_b32, totp);
    assert_int_equal(identity_sign_in_mfa(f->id, &ctx, m.mfa_token, totp, NULL, &full, NULL, NULL),
                     CF_ERR_UNAUTHORIZED);
}

/* Starting to replace the authenticator (after a step-up) must not turn the second factor off
 * before the new one is confirmed: meanwhile the password alone is not a session. */
static void test_totp_reenrol_keeps_second_factor(void **state)
{
    struct fx *f = *state;
    const char *login = "peggy@example.com";
    struct identity_sign_in_result s;
    customer_new(f, login, "Peggy", &s);
    struct identity_totp_enrolment e;
    char codes[IDENTITY_RECOVERY_CODES][IDENTITY_RECOVERY_CODE_BYTES];
    size_t codes_n = 0;
    char totp[TOTP_DIGITS + 1];
    assert_int_equal(identity_totp_begin(f->id, &ctx, &s.principal, NULL, &e), CF_OK);
    totp_now(f, e.secret_b32, totp);
    assert_int_equal(identity_totp_confirm(f->id, &ctx, &s.principal, totp, codes, &codes_n),
                     CF_OK);
    /* TOTP is on: replacing it needs a step-up answered with the current authenticator */
    struct identity_totp_enrolment next;
    assert_int_equal(identity_totp_begin(f->id, &ctx, &s.principal, NULL, &next),
                     CF_ERR_STEP_UP_REQUIRED);
    struct identity_action a = {.action = "mfa_change"};
    struct identity_challenge chl;
    assert_int_equal(identity_challenge_create(f->id, &ctx, &s.principal, &a, &chl), CF_OK);
    assert_true(chl.totp);
    advance_s(f, TOTP_STEP_S);
    totp_now(f, e.secret_b32, totp);
    struct identity_verification v = {.challenge_id = chl.challenge_id, .code = totp};
    assert_int_equal(identity_totp_begin(f->id, &ctx, &s.principal, &v, &next), CF_OK);
    assert_string_not_equal(next.secret_b32, e.secret_b32);
    /* not confirmed yet */
    struct identity_sign_in_result m;
    assert_int_equal(sign_in(f, login, PASSWORD, &m, NULL), CF_OK);
    assert_true(m.mfa_required);
    assert_string_equal(m.token, "");
}

static void test_staff_enrol_at_sign_in(void **state)
{
    struct fx *f = *state;
    const char *login = "admin@example.com";
    char admin_id[ID_TEXT_BYTES_MAX];
    const char *detail = NULL;
    assert_int_equal(identity_bootstrap_admin(f->id, &ctx, login, PASSWORD, strlen(PASSWORD),
                                              "Admin", admin_id, &detail),
                     CF_OK);
    struct identity_sign_in_result m, full;
    assert_int_equal(sign_in(f, login, PASSWORD, &m, NULL), CF_OK);
    assert_true(m.mfa_required);
    assert_true(m.enroll_required);
    assert_string_equal(m.token, "");
    assert_int_equal(auth(f, m.mfa_token, NULL), CF_ERR_UNAUTHORIZED);
    /* a code before any secret: enrol first */
    assert_int_equal(
        identity_sign_in_mfa(f->id, &ctx, m.mfa_token, "123456", NULL, &full, NULL, NULL),
        CF_ERR_MFA_ENROLMENT_REQUIRED);
    struct identity_totp_enrolment e;
    assert_int_equal(identity_enroll_begin(f->id, m.mfa_token, &e), CF_OK);
    assert_non_null(strstr(e.uri, "otpauth://totp/"));
    assert_int_equal(identity_enroll_begin(f->id, "cfs_not-a-token", &e), CF_ERR_UNAUTHORIZED);
    char totp[TOTP_DIGITS + 1], wrong[TOTP_DIGITS + 1];
    totp_now(f, e.secret_b32, totp);
    code_other(totp, wrong);
    char codes[IDENTITY_RECOVERY_CODES][IDENTITY_RECOVERY_CODE_BYTES];
    size_t codes_n = 99;
    assert_int_equal(
        identity_sign_in_mfa(f->id, &ctx, m.mfa_token, wrong, NULL, &full, codes, &codes_n),
        CF_ERR_INVALID_CODE);
    assert_int_equal(codes_n, 0);
    assert_int_equal(
        identity_sign_in_mfa(f->id, &ctx, m.mfa_token, totp, NULL, &full, codes, &codes_n), CF_OK);
    assert_int_equal(codes_n, IDENTITY_RECOVERY_CODES);
    assert_false(full.mfa_required);
    struct identity_principal p;
    assert_int_equal(auth(f, full.token, &p), CF_OK);
    assert_int_equal(p.role, IDENTITY_ADMIN);
    assert_string_equal(p.user_id, admin_id);
    struct identity_profile prof;
    assert_int_equal(identity_profile_get(f->id, admin_id, &prof), CF_OK);
    assert_true(prof.totp_enabled);
    /* from now on an ordinary second factor */
    assert_int_equal(sign_in(f, login, PASSWORD, &m, NULL), CF_OK);
    assert_true(m.mfa_required);
    assert_false(m.enroll_required);
    assert_int_equal(identity_enroll_begin(f->id, m.mfa_token, &e), CF_ERR_CONFLICT);
    /* staff keep their TOTP */
    struct identity_verification v = {.challenge_id = "chl_0000000000001", .code = "000000"};
    assert_int_equal(identity_totp_disable(f->id, &ctx, &p, &v), CF_ERR_FORBIDDEN);
}

static void test_bootstrap_once(void **state)
{
    struct fx *f = *state;
    char first[ID_TEXT_BYTES_MAX], second[ID_TEXT_BYTES_MAX] = "untouched";
    const char *detail = NULL;
    assert_int_equal(identity_bootstrap_admin(f->id, &ctx, "root@example.com", PASSWORD,
                                              strlen(PASSWORD), "Root", first, &detail),
                     CF_OK);
    assert_true(strncmp(first, ID_PREFIX_USER, 4) == 0);
    assert_int_equal(identity_bootstrap_admin(f->id, &ctx, "root2@example.com", PASSWORD,
                                              strlen(PASSWORD), "Root Two", second, &detail),
                     CF_ERR_ALREADY_BOOTSTRAPPED);
    assert_string_equal(second, "untouched");
    struct sqltx *tx = NULL;
    char found[ID_TEXT_BYTES_MAX];
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(identity_user_by_login(f->id, tx, "root2@example.com", found),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(identity_user_by_login(f->id, tx, "root@example.com", found), CF_OK);
    sql_rollback(tx);
    assert_string_equal(found, first);
    /* refused again, and still after a restart */
    identity_close(f->id);
    f->id = NULL;
    assert_int_equal(identity_open(f->db, f->vault, f->notifier, &f->cfg, &f->id), CF_OK);
    assert_int_equal(identity_bootstrap_admin(f->id, &ctx, "root3@example.com", PASSWORD,
                                              strlen(PASSWORD), "Root Three", second, &detail),
                     CF_ERR_ALREADY_BOOTSTRAPPED);
}

/* Step-up -------------------------------------------------------------------------------------- */

static void test_step_up_binding(void **state)
{
    struct fx *f = *state;
    const char *login = "+15550003333";
    struct identity_sign_in_result s;
    customer_new(f, login, "Erin", &s);
    const struct identity_principal *p = &s.principal;
    struct identity_action approved = {
        .action = "transfer", .amount_minor = 100, .currency = "EUR", .payee = "acct_A"};
    struct identity_action more = approved, elsewhere = approved, other_action = approved;
    more.amount_minor = 1000;
    elsewhere.payee = "acct_B";
    other_action.action = "payee_add";
    struct identity_challenge chl;
    char code[IDENTITY_CODE_DIGITS + 1];
    challenge_with_code(f, p, login, &approved, &chl, code);
    struct identity_verification v = {.challenge_id = chl.challenge_id, .code = code};
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &approved, NULL, NULL),
                     CF_ERR_STEP_UP_REQUIRED);
    struct identity_verification half = {.challenge_id = chl.challenge_id};
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &approved, &half, NULL),
                     CF_ERR_STEP_UP_REQUIRED);
    /* the right code for another action authorizes nothing */
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &more, &v, "k-1"),
                     CF_ERR_INVALID_CODE);
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &elsewhere, &v, "k-1"),
                     CF_ERR_INVALID_CODE);
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &other_action, &v, "k-1"),
                     CF_ERR_INVALID_CODE);
    /* nor for another user */
    struct identity_sign_in_result other;
    customer_new(f, "+15550004444", "Mallory", &other);
    assert_int_equal(
        identity_challenge_consume(f->id, &ctx, &other.principal, &approved, &v, "k-1"),
        CF_ERR_INVALID_CODE);
    /* the exact action: once */
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &approved, &v, "k-1"), CF_OK);
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &approved, &v, NULL),
                     CF_ERR_INVALID_CODE);
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &approved, &v, "k-2"),
                     CF_ERR_INVALID_CODE);
    /* a retry of the same request (same idempotency key) reaches its stored answer */
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &approved, &v, "k-1"), CF_OK);
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &more, &v, "k-1"),
                     CF_ERR_INVALID_CODE);
    /* an expired challenge is refused */
    challenge_with_code(f, p, login, &approved, &chl, code);
    advance_s(f, IDENTITY_CODE_TTL_S);
    v.challenge_id = chl.challenge_id;
    assert_int_equal(identity_challenge_consume(f->id, &ctx, p, &approved, &v, NULL),
                     CF_ERR_INVALID_CODE);
    /* actions outside the list are refused */
    struct identity_action unknown = {.action = "launch_rockets"};
    assert_int_equal(identity_challenge_create(f->id, &ctx, p, &unknown, &chl),
                     CF_ERR_INVALID_FIELD);
}

/* "The same request with the same key and the same verification": a retry carrying another
 * code is not the same verification. */
static void test_step_up_retry_needs_same_code(void **state)
{
    struct fx *f = *state;
    const char *login = "+15550005555";
    struct identity_sign_in_result s;
    customer_new(f, login, "Olivia", &s);
    struct identity_action a = {
        .action = "transfer", .amount_minor = 100, .currency = "EUR", .payee = "acct_A"};
    struct identity_challenge chl;
    char code[IDENTITY_CODE_DIGITS + 1], wrong[IDENTITY_CODE_DIGITS + 1];
    challenge_with_code(f, &s.principal, login, &a, &chl, code);
    code_other(code, wrong);
    struct identity_verification v = {.challenge_id = chl.challenge_id, .code = code};
    struct identity_verification guess = {.challenge_id = chl.challenge_id, .code = wrong};
    assert_int_equal(identity_challenge_consume(f->id, &ctx, &s.principal, &a, &v, "k-1"), CF_OK);
    assert_int_equal(identity_challenge_consume(f->id, &ctx, &s.principal, &a, &v, "k-1"), CF_OK);
    assert_int_equal(identity_challenge_consume(f->id, &ctx, &s.principal, &a, &guess, "k-1"),
                     CF_ERR_INVALID_CODE);
}

static void test_step_up_wrong_codes_kill(void **state)
{
    struct fx *f = *state;
    const char *login = "frank@example.com";
    struct identity_sign_in_result s;
    customer_new(f, login, "Frank", &s);
    struct identity_action a = {.action = "data_export"};
    struct identity_challenge chl;
    char code[IDENTITY_CODE_DIGITS + 1], wrong[IDENTITY_CODE_DIGITS + 1];
    challenge_with_code(f, &s.principal, login, &a, &chl, code);
    code_other(code, wrong);
    struct identity_verification bad = {.challenge_id = chl.challenge_id, .code = wrong};
    for (int i = 0; i < IDENTITY_CODE_ATTEMPTS_MAX; i++)
        assert_int_equal(identity_challenge_consume(f->id, &ctx, &s.principal, &a, &bad, NULL),
                         CF_ERR_INVALID_CODE);
    struct identity_verification good = {.challenge_id = chl.challenge_id, .code = code};
    assert_int_equal(identity_challenge_consume(f->id, &ctx, &s.principal, &a, &good, NULL),
                     CF_ERR_INVALID_CODE);
    assert_int_equal(identity_export_authorize(f->id, &ctx, &s.principal, &good),
                     CF_ERR_INVALID_CODE);
    /* a fresh challenge works */
    challenge_with_code(f, &s.principal, login, &a, &chl, code);
    good.challenge_id = chl.challenge_id;
    assert_int_equal(identity_export_authorize(f->id, &ctx, &s.principal, &good), CF_OK);
}

/* Credentials ---------------------------------------------------------------------------------- */

static void test_password_change_ends_other_sessions(void **state)
{
    struct fx *f = *state;
    const char *login = "grace@example.com";
    struct identity_sign_in_result here, there;
    customer_new(f, login, "Grace", &here);
    assert_int_equal(sign_in(f, login, PASSWORD, &there, NULL), CF_OK);
    assert_int_equal(auth(f, here.token, NULL), CF_OK);
    assert_int_equal(auth(f, there.token, NULL), CF_OK);
    struct identity_action a = {.action = "password_change"};
    struct identity_challenge chl;
    char code[IDENTITY_CODE_DIGITS + 1];
    challenge_with_code(f, &here.principal, login, &a, &chl, code);
    struct identity_verification v = {.challenge_id = chl.challenge_id, .code = code};
    const char *detail = NULL;
    /* without the step-up, nothing changes */
    assert_int_equal(identity_password_change(f->id, &ctx, &here.principal, PASSWORD,
                                              strlen(PASSWORD), PASSWORD_NEXT,
                                              strlen(PASSWORD_NEXT), NULL, &detail),
                     CF_ERR_STEP_UP_REQUIRED);
    assert_int_equal(auth(f, there.token, NULL), CF_OK);
    assert_int_equal(identity_password_change(f->id, &ctx, &here.principal, PASSWORD,
                                              strlen(PASSWORD), PASSWORD_NEXT,
                                              strlen(PASSWORD_NEXT), &v, &detail),
                     CF_OK);
    assert_int_equal(auth(f, there.token, NULL), CF_ERR_UNAUTHORIZED);
    assert_int_equal(auth(f, here.token, NULL), CF_OK);
    struct identity_sign_in_result r;
    assert_int_equal(sign_in(f, login, PASSWORD, &r, NULL), CF_ERR_INVALID_CREDENTIALS);
    assert_int_equal(sign_in(f, login, PASSWORD_NEXT, &r, NULL), CF_OK);
}

static void test_account_close(void **state)
{
    struct fx *f = *state;
    const char *login = "heidi@example.com";
    struct identity_sign_in_result s;
    customer_new(f, login, "Heidi", &s);
    assert_int_equal(identity_payee_add(f->id, &s.principal, "acct_P"), CF_OK);
    struct identity_action a = {.action = "account_close"};
    struct identity_challenge chl;
    char code[IDENTITY_CODE_DIGITS + 1];
    challenge_with_code(f, &s.principal, login, &a, &chl, code);
    struct identity_verification v = {.challenge_id = chl.challenge_id, .code = code};
    assert_int_equal(auth(f, s.token, NULL), CF_OK);
    assert_int_equal(identity_account_close(f->id, &ctx, &s.principal, &v), CF_OK);
    struct identity_profile prof;
    assert_int_equal(identity_profile_get(f->id, s.principal.user_id, &prof), CF_OK);
    assert_true(prof.closed);
    assert_string_equal(prof.login, "");
    assert_string_equal(prof.name, "");
    assert_string_equal(prof.user_id, s.principal.user_id);
    struct sqltx *tx = NULL;
    char found[ID_TEXT_BYTES_MAX] = "untouched";
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(identity_user_by_login(f->id, tx, login, found), CF_ERR_NOT_FOUND);
    sql_rollback(tx);
    assert_string_equal(found, "untouched");
    assert_int_equal(auth(f, s.token, NULL), CF_ERR_UNAUTHORIZED);
    struct identity_sign_in_result r;
    assert_int_equal(sign_in(f, login, PASSWORD, &r, NULL), CF_ERR_INVALID_CREDENTIALS);
    bool known = true;
    assert_int_equal(identity_payee_known(f->id, &s.principal, "acct_P", &known), CF_OK);
    assert_false(known);
}

/* Customers: the paged listing ----------------------------------------------------------------- */

/* Walks every page of identity_customers_page with pages of max into ids; returns the count. */
static size_t customers_walk(struct fx *f, size_t max, char (*ids)[ID_TEXT_BYTES_MAX],
                             size_t ids_max)
{
    char(*page)[ID_TEXT_BYTES_MAX] = calloc(max, sizeof(*page));
    assert_non_null(page);
    char after[ID_TEXT_BYTES_MAX] = "";
    size_t total = 0, n = 0;
    do {
        n = max + 1;
        assert_int_equal(identity_customers_page(f->id, after, page, max, &n), CF_OK);
        assert_true(n <= max);
        for (size_t i = 0; i < n; i++) {
            assert_true(total < ids_max);
            memcpy(ids[total++], page[i], ID_TEXT_BYTES_MAX);
        }
        if (n > 0)
            memcpy(after, page[n - 1], sizeof(after));
    } while (n == max);
    free(page);
    return total;
}

/* Whether id is among the n ids, exactly once. */
static bool listed_once(char (*ids)[ID_TEXT_BYTES_MAX], size_t n, const char *id)
{
    size_t seen = 0;
    for (size_t i = 0; i < n; i++)
        seen += strcmp(ids[i], id) == 0 ? 1 : 0;
    return seen == 1;
}

/* Every open customer once, in pages of any size; closed customers, staff and merchant users
 * never; a page after the last id is empty. */
static void test_customers_page(void **state)
{
    struct fx *f = *state;
    char(*ids)[ID_TEXT_BYTES_MAX] = calloc(16, sizeof(*ids));
    assert_non_null(ids);
    size_t n = 7;
    assert_int_equal(identity_customers_page(f->id, NULL, ids, 4, &n), CF_OK);
    assert_int_equal(n, 0); /* nobody yet */

    struct identity_sign_in_result c1, c2, c3, gone;
    customer_new(f, "ivan@example.com", "Ivan", &c1);
    customer_new(f, "judy@example.com", "Judy", &c2);
    customer_new(f, "+15550101010", "Kay", &c3);
    customer_new(f, "leo@example.com", "Leo", &gone);
    char staff_id[ID_TEXT_BYTES_MAX], mer[ID_TEXT_BYTES_MAX], owner[ID_TEXT_BYTES_MAX];
    const char *detail = NULL;
    assert_int_equal(identity_staff_create(f->id, &ctx, "cli", "risk@example.com", PASSWORD,
                                           strlen(PASSWORD), "Rita", IDENTITY_RISK, staff_id,
                                           &detail),
                     CF_OK);
    assert_int_equal(identity_merchant_create(f->id, &ctx, "cli", "Shop Ltd", "Shop",
                                              "owner@example.com", PASSWORD, strlen(PASSWORD),
                                              "Olga", mer, owner, &detail),
                     CF_OK);
    struct identity_action a = {.action = "account_close"};
    struct identity_challenge chl;
    char code[IDENTITY_CODE_DIGITS + 1];
    challenge_with_code(f, &gone.principal, "leo@example.com", &a, &chl, code);
    struct identity_verification v = {.challenge_id = chl.challenge_id, .code = code};
    assert_int_equal(identity_account_close(f->id, &ctx, &gone.principal, &v), CF_OK);

    static const size_t sizes[] = {1, 2, 3, 4, IDENTITY_CUSTOMERS_PAGE_MAX};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        memset(ids, 0, 16 * sizeof(*ids));
        n = customers_walk(f, sizes[s], ids, 16);
        assert_int_equal(n, 3);
        assert_true(listed_once(ids, n, c1.principal.user_id));
        assert_true(listed_once(ids, n, c2.principal.user_id));
        assert_true(listed_once(ids, n, c3.principal.user_id));
    }
    /* after the last id: nothing, and nothing written */
    char last[ID_TEXT_BYTES_MAX];
    memcpy(last, ids[2], sizeof(last));
    memset(ids, 'x', 16 * sizeof(*ids));
    assert_int_equal(identity_customers_page(f->id, last, ids, 4, &n), CF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ids[0][0], 'x');
    free(ids);
}

/* Merchants ------------------------------------------------------------------------------------ */

/* Signs a merchant user in with PASSWORD: no second factor is asked. */
static void merchant_sign_in(struct fx *f, const char *login, struct identity_sign_in_result *out)
{
    assert_int_equal(sign_in(f, login, PASSWORD, out, NULL), CF_OK);
    assert_false(out->mfa_required);
    assert_int_equal(out->principal.role, IDENTITY_MERCHANT);
}

/* An owner adds a user with PASSWORD. */
static void merchant_add(struct fx *f, const struct identity_principal *owner, const char *login,
                         const char *name, enum identity_merchant_right right,
                         char user_id[ID_TEXT_BYTES_MAX])
{
    const char *detail = NULL;
    assert_int_equal(identity_merchant_user_add(f->id, &ctx, owner, login, PASSWORD,
                                                strlen(PASSWORD), name, right, user_id, &detail),
                     CF_OK);
    assert_true(strncmp(user_id, ID_PREFIX_USER, 4) == 0);
}

/* The audit records of action by actor about target. */
static int64_t audit_count(struct fx *f, const char *action, const char *actor, const char *target)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(action), SQL_T(actor), SQL_T(target)};
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx,
                               "SELECT COUNT(*) FROM id_audit WHERE action = $1 AND actor = $2 "
                               "AND target = $3 AND outcome = 'ok'",
                               v, 3, &r),
                     CF_OK);
    int64_t n = sql_row_int(r, 0, 0);
    sql_rows_free(r);
    sql_rollback(tx);
    return n;
}

/* The entry of user_id in list, or NULL. */
static const struct identity_merchant_user *
merchant_user_find(const struct identity_merchant_user *list, size_t n, const char *user_id)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].user_id, user_id) == 0)
            return &list[i];
    }
    return NULL;
}

/* Two merchants, each with owners and staff: owners manage their own merchant's users only,
 * staff manage no one, another merchant's users are unknown (CF_ERR_NOT_FOUND), an owner
 * cannot remove themself, and a removed user loses their sessions and their rights. */
static void test_merchant_rights(void **state)
{
    struct fx *f = *state;
    char m1[ID_TEXT_BYTES_MAX], m2[ID_TEXT_BYTES_MAX], unused[ID_TEXT_BYTES_MAX];
    char o1_id[ID_TEXT_BYTES_MAX], o2_id[ID_TEXT_BYTES_MAX];
    const char *detail = NULL;
    const char *actor = "usr_0000000000001"; /* the creating admin */
    char long_name[IDENTITY_MERCHANT_NAME_BYTES_MAX + 2];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';

    /* refused before anything is stored */
    assert_int_equal(identity_merchant_create(f->id, &ctx, actor, "", "Shop", "o1@example.com",
                                              PASSWORD, strlen(PASSWORD), "Owner One", m1, o1_id,
                                              &detail),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(detail, "legal_name");
    assert_int_equal(identity_merchant_create(f->id, &ctx, actor, long_name, "Shop",
                                              "o1@example.com", PASSWORD, strlen(PASSWORD),
                                              "Owner One", m1, o1_id, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(detail, "legal_name");
    assert_int_equal(identity_merchant_create(f->id, &ctx, actor, "Shop Ltd", "Sh\nop",
                                              "o1@example.com", PASSWORD, strlen(PASSWORD),
                                              "Owner One", m1, o1_id, &detail),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(detail, "display_name");
    assert_int_equal(identity_merchant_create(f->id, &ctx, actor, "Shop Ltd", "Shop", "not a login",
                                              PASSWORD, strlen(PASSWORD), "Owner One", m1, o1_id,
                                              &detail),
                     CF_ERR_INVALID_FIELD);
    assert_string_equal(detail, "login");

    /* two merchants */
    assert_int_equal(identity_merchant_create(f->id, &ctx, actor, "First Shop Ltd", "First Shop",
                                              "o1@example.com", PASSWORD, strlen(PASSWORD),
                                              "Owner One", m1, o1_id, &detail),
                     CF_OK);
    assert_true(strncmp(m1, ID_PREFIX_MERCHANT, 4) == 0);
    assert_true(strncmp(o1_id, ID_PREFIX_USER, 4) == 0);
    advance_s(f, 1);
    assert_int_equal(identity_merchant_create(f->id, &ctx, actor, "Second Shop GmbH", "Second Shop",
                                              "+15550007777", PASSWORD, strlen(PASSWORD),
                                              "Owner Two", m2, o2_id, &detail),
                     CF_OK);
    assert_string_not_equal(m1, m2);
    /* a taken owner login creates no merchant */
    assert_int_equal(identity_merchant_create(f->id, &ctx, actor, "Third Ltd", "Third",
                                              "O1@example.com", PASSWORD, strlen(PASSWORD),
                                              "Owner Three", unused, unused, &detail),
                     CF_ERR_LOGIN_TAKEN);
    assert_int_equal(audit_count(f, "merchant.create", actor, m1), 1);
    assert_int_equal(audit_count(f, "merchant.create", actor, m2), 1);

    struct identity_sign_in_result o1, o2;
    merchant_sign_in(f, "o1@example.com", &o1);
    merchant_sign_in(f, "+15550007777", &o2);
    assert_string_equal(o1.principal.user_id, o1_id);
    struct identity_merchant m;
    assert_int_equal(identity_merchant_of(f->id, &o1.principal, &m), CF_OK);
    assert_string_equal(m.merchant_id, m1);
    assert_string_equal(m.legal_name, "First Shop Ltd");
    assert_string_equal(m.display_name, "First Shop");
    assert_int_equal(m.right, IDENTITY_MERCHANT_OWNER);
    assert_int_equal(m.created_at_us, T0_US);
    assert_int_equal(identity_merchant_of(f->id, &o2.principal, &m), CF_OK);
    assert_string_equal(m.merchant_id, m2);
    assert_int_equal(m.created_at_us, T0_US + US_PER_S);

    /* the owners add users: a staff user and a second owner to the first, staff to the second */
    char s1_id[ID_TEXT_BYTES_MAX], o1b_id[ID_TEXT_BYTES_MAX], s2_id[ID_TEXT_BYTES_MAX];
    merchant_add(f, &o1.principal, "s1@example.com", "Staff One", IDENTITY_MERCHANT_STAFF, s1_id);
    merchant_add(f, &o1.principal, "o1b@example.com", "Owner One B", IDENTITY_MERCHANT_OWNER,
                 o1b_id);
    merchant_add(f, &o2.principal, "s2@example.com", "Staff Two", IDENTITY_MERCHANT_STAFF, s2_id);
    assert_int_equal(identity_merchant_user_add(f->id, &ctx, &o1.principal, "s2@example.com",
                                                PASSWORD, strlen(PASSWORD), "Again",
                                                IDENTITY_MERCHANT_STAFF, unused, &detail),
                     CF_ERR_LOGIN_TAKEN);
    assert_int_equal(identity_merchant_user_add(f->id, &ctx, &o1.principal, "s3@example.com",
                                                "password12345", 13, "Weak",
                                                IDENTITY_MERCHANT_STAFF, unused, &detail),
                     CF_ERR_WEAK_PASSWORD);
    assert_int_equal(audit_count(f, "merchant.user_add", o1_id, s1_id), 1);
    assert_int_equal(audit_count(f, "merchant.user_add", o1_id, o1b_id), 1);
    assert_int_equal(audit_count(f, "merchant.user_add", o2_id, s2_id), 1);

    struct identity_sign_in_result s1, o1b, s2;
    merchant_sign_in(f, "s1@example.com", &s1);
    merchant_sign_in(f, "o1b@example.com", &o1b);
    merchant_sign_in(f, "s2@example.com", &s2);
    assert_int_equal(identity_merchant_of(f->id, &s1.principal, &m), CF_OK);
    assert_string_equal(m.merchant_id, m1);
    assert_int_equal(m.right, IDENTITY_MERCHANT_STAFF);
    assert_int_equal(identity_merchant_of(f->id, &o1b.principal, &m), CF_OK);
    assert_string_equal(m.merchant_id, m1);
    assert_int_equal(m.right, IDENTITY_MERCHANT_OWNER);
    assert_int_equal(identity_merchant_of(f->id, &s2.principal, &m), CF_OK);
    assert_string_equal(m.merchant_id, m2);
    assert_int_equal(m.right, IDENTITY_MERCHANT_STAFF);

    /* each owner lists their own merchant's users, and only those */
    struct identity_merchant_user *list = calloc(8, sizeof(*list));
    assert_non_null(list);
    size_t n = 0;
    assert_int_equal(identity_merchant_users(f->id, &o1.principal, list, 8, &n), CF_OK);
    assert_int_equal(n, 3);
    const struct identity_merchant_user *u = merchant_user_find(list, n, s1_id);
    assert_non_null(u);
    assert_int_equal(u->right, IDENTITY_MERCHANT_STAFF);
    assert_string_equal(u->login, "s1@example.com");
    assert_string_equal(u->name, "Staff One");
    assert_non_null(u = merchant_user_find(list, n, o1_id));
    assert_int_equal(u->right, IDENTITY_MERCHANT_OWNER);
    assert_string_equal(u->name, "Owner One");
    assert_non_null(u = merchant_user_find(list, n, o1b_id));
    assert_int_equal(u->right, IDENTITY_MERCHANT_OWNER);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(list[i - 1].user_id, list[i].user_id) < 0);
    assert_int_equal(identity_merchant_users(f->id, &o1.principal, list, 2, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_int_equal(identity_merchant_users(f->id, &o2.principal, list, 8, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_non_null(merchant_user_find(list, n, o2_id));
    assert_non_null(merchant_user_find(list, n, s2_id));
    assert_string_equal(merchant_user_find(list, n, o2_id)->login, "+15550007777");

    /* staff manage no one */
    n = 99;
    assert_int_equal(identity_merchant_users(f->id, &s1.principal, list, 8, &n), CF_ERR_FORBIDDEN);
    assert_int_equal(identity_merchant_user_add(f->id, &ctx, &s1.principal, "s4@example.com",
                                                PASSWORD, strlen(PASSWORD), "Staff Four",
                                                IDENTITY_MERCHANT_OWNER, unused, &detail),
                     CF_ERR_FORBIDDEN);
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &s1.principal, o1b_id),
                     CF_ERR_FORBIDDEN);
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &s1.principal, o1_id),
                     CF_ERR_FORBIDDEN);
    struct sqltx *tx = NULL;
    char found[ID_TEXT_BYTES_MAX] = "untouched";
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(identity_user_by_login(f->id, tx, "s4@example.com", found), CF_ERR_NOT_FOUND);
    sql_rollback(tx);
    assert_int_equal(auth(f, o1b.token, NULL), CF_OK);

    /* nor does a principal of another role, even one whose user holds a membership */
    struct identity_principal not_merchant = o1.principal;
    not_merchant.role = IDENTITY_CUSTOMER;
    assert_int_equal(identity_merchant_of(f->id, &not_merchant, &m), CF_ERR_FORBIDDEN);
    assert_int_equal(identity_merchant_users(f->id, &not_merchant, list, 8, &n), CF_ERR_FORBIDDEN);
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &not_merchant, s1_id),
                     CF_ERR_FORBIDDEN);

    /* another merchant's users are unknown to an owner, and stay as they were */
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &o1.principal, s2_id),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &o1.principal, o2_id),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &o1.principal, "usr_00000000ZZZZZ"),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &o2.principal, s1_id),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(auth(f, s2.token, NULL), CF_OK);
    assert_int_equal(auth(f, o2.token, NULL), CF_OK);
    assert_int_equal(auth(f, s1.token, NULL), CF_OK);
    assert_int_equal(identity_merchant_of(f->id, &s2.principal, &m), CF_OK);
    assert_string_equal(m.merchant_id, m2);
    assert_int_equal(identity_merchant_users(f->id, &o2.principal, list, 8, &n), CF_OK);
    assert_int_equal(n, 2);

    /* an owner cannot remove themself */
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &o1.principal, o1_id),
                     CF_ERR_CONFLICT);
    assert_int_equal(auth(f, o1.token, NULL), CF_OK);

    /* removing a user ends their sessions, cached or not, and their rights */
    assert_int_equal(auth(f, s1.token, NULL), CF_OK); /* cached */
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &o1.principal, s1_id), CF_OK);
    assert_int_equal(auth(f, s1.token, NULL), CF_ERR_UNAUTHORIZED);
    assert_int_equal(auth(f, o1.token, NULL), CF_OK);
    struct identity_sign_in_result s1_again;
    merchant_sign_in(f, "s1@example.com", &s1_again);
    assert_int_equal(identity_merchant_of(f->id, &s1_again.principal, &m), CF_ERR_FORBIDDEN);
    assert_int_equal(identity_merchant_users(f->id, &s1_again.principal, list, 8, &n),
                     CF_ERR_FORBIDDEN);
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &o1.principal, s1_id),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(audit_count(f, "merchant.user_remove", o1_id, s1_id), 1);
    assert_int_equal(audit_count(f, "merchant.user_remove", o1_id, s2_id), 0);
    /* the second owner removes the first */
    assert_int_equal(identity_merchant_user_remove(f->id, &ctx, &o1b.principal, o1_id), CF_OK);
    assert_int_equal(auth(f, o1.token, NULL), CF_ERR_UNAUTHORIZED);
    assert_int_equal(identity_merchant_users(f->id, &o1b.principal, list, 8, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].user_id, o1b_id);
    assert_int_equal(identity_merchant_users(f->id, &o2.principal, list, 8, &n), CF_OK);
    assert_int_equal(n, 2);
    hash_wipe(list, 8 * sizeof(*list));
    free(list);
}

/* Keys ----------------------------------------------------------------------------------------- */

/* The key id of every stored wrapped data key, as a count of those under key_id. */
static size_t deks_under(struct fx *f, uint32_t key_id, size_t *total_out)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(f->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, "SELECT dek_wrapped FROM id_users WHERE dek_wrapped IS NOT NULL",
                               NULL, 0, &r),
                     CF_OK);
    size_t n = 0;
    for (size_t i = 0; i < sql_rows_n(r); i++) {
        size_t len = 0;
        const uint8_t *w = sql_row_blob(r, i, 0, &len);
        if (vault_sealed_key_id(w, len) == key_id)
            n++;
    }
    *total_out = sql_rows_n(r);
    sql_rows_free(r);
    sql_rollback(tx);
    return n;
}

static void test_keys_rotate(void **state)
{
    struct fx *f = *state;
    struct identity_sign_in_result ivan, judy;
    customer_new(f, "ivan@example.com", "Ivan", &ivan);
    customer_new(f, "judy@example.com", "Judy", &judy);
    /* a registration pending across the rotation */
    char reg_id[ID_TEXT_BYTES_MAX], reg_code[IDENTITY_CODE_DIGITS + 1];
    const char *detail = NULL;
    assert_int_equal(identity_register(f->id, &ctx, "ken@example.com", PASSWORD, strlen(PASSWORD),
                                       "Ken", reg_id, &detail),
                     CF_OK);
    outbox_code(f, "ken@example.com", reg_code);

    /* key 2 added: the file another process would write */
    char *text = malloc(VAULT_KEYFILE_BYTES_MAX);
    assert_non_null(text);
    assert_int_equal(vault_keyfile_new(f->vault, text, VAULT_KEYFILE_BYTES_MAX), CF_OK);
    struct vault *two = NULL;
    assert_int_equal(vault_load(text, strlen(text), &two), CF_OK);
    assert_int_equal(vault_active_id(two), 2);
    char path[TESTDB_DIR_BYTES + 8];
    snprintf(path, sizeof(path), "%s/keys", f->dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
    hash_wipe(text, VAULT_KEYFILE_BYTES_MAX);
    free(text);

    struct identity *rotated = NULL;
    assert_int_equal(identity_open(f->db, two, f->notifier, &f->cfg, &rotated), CF_OK);
    size_t n = 99, total = 0;
    assert_int_equal(identity_keys_rotate(rotated, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_int_equal(deks_under(f, 2, &total), 2);
    assert_int_equal(total, 2);
    assert_int_equal(identity_keys_rotate(rotated, &n), CF_OK);
    assert_int_equal(n, 0);
    /* everything still reads: personal data, sessions, the pending registration */
    struct identity_profile prof;
    assert_int_equal(identity_profile_get(rotated, ivan.principal.user_id, &prof), CF_OK);
    assert_string_equal(prof.login, "ivan@example.com");
    assert_string_equal(prof.name, "Ivan");
    assert_int_equal(identity_profile_get(rotated, judy.principal.user_id, &prof), CF_OK);
    assert_string_equal(prof.name, "Judy");
    struct identity_principal p;
    assert_int_equal(identity_authenticate(rotated, ivan.token, strlen(ivan.token), &p), CF_OK);
    struct identity_sign_in_result ken;
    assert_int_equal(identity_register_verify(rotated, &ctx, reg_id, reg_code, NULL, &ken), CF_OK);
    assert_int_equal(deks_under(f, 2, &total), 3);
    assert_int_equal(identity_profile_get(rotated, ken.principal.user_id, &prof), CF_OK);
    assert_string_equal(prof.name, "Ken");

    /* a server that knows only key 1 cannot open them; one given the key file reloads it */
    assert_int_equal(identity_profile_get(f->id, ivan.principal.user_id, &prof), CF_ERR_CORRUPT);
    struct identity_config cfg = f->cfg;
    cfg.key_file = path;
    struct identity *reloading = NULL;
    assert_int_equal(identity_open(f->db, f->vault, f->notifier, &cfg, &reloading), CF_OK);
    assert_int_equal(identity_profile_get(reloading, ivan.principal.user_id, &prof), CF_OK);
    assert_string_equal(prof.login, "ivan@example.com");
    assert_int_equal(identity_profile_get(reloading, ken.principal.user_id, &prof), CF_OK);
    assert_string_equal(prof.name, "Ken");
    identity_close(reloading);
    identity_close(rotated);
    vault_free(two);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_session_idle_expiry),
        FX(test_session_idle_from_cached_use),
        FX(test_session_absolute_expiry),
        FX(test_session_revoke_beats_cache),
        FX(test_register_verify),
        FX(test_register_taken_login),
        FX(test_sign_in_same_error),
        FX(test_sign_in_throttle),
        FX(test_totp_sign_in),
        FX(test_totp_reenrol_keeps_second_factor),
        FX(test_staff_enrol_at_sign_in),
        FX(test_bootstrap_once),
        FX(test_step_up_binding),
        FX(test_step_up_retry_needs_same_code),
        FX(test_step_up_wrong_codes_kill),
        FX(test_password_change_ends_other_sessions),
        FX(test_account_close),
        FX(test_customers_page),
        FX(test_merchant_rights),
        FX(test_keys_rotate),
    };
    int failed = cmocka_run_group_tests_name("identity_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("identity_postgres", tests, NULL, NULL);
    } else {
        printf("identity_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
