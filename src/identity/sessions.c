/*
 * sessions.c - session tokens: creation, validation (with a small in-memory cache), listing and
 * revocation.
 *
 * The cache maps a token's SHA-256 to the session's principal and deadlines. An entry is
 * trusted for IDENTITY_SESSION_CACHE_S; after that the row is read again (catching revocations
 * made by other servers) and its idle deadline is written back. Idle deadlines move in memory
 * between those reads, so a busy session costs one row read and write every few seconds, not
 * one per request.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "identity/internal.h"

#define CACHE_SLOTS (IDENTITY_SESSION_CACHE_MAX * 2)
#define CACHE_PROBES 16
#define US_PER_S 1000000LL

struct cache_slot {
    uint8_t token_hash[HASH_BYTES];
    bool used;
    struct identity_principal principal;
    int64_t idle_expires_at_us;
    int64_t absolute_expires_at_us;
    int64_t checked_at_us; /* when the row was last read */
    uint64_t epoch;        /* the cache's epoch when it was read */
};

struct session_cache {
    pthread_mutex_t mu;
    uint64_t epoch; /* moved on by every revocation: older entries must read their row again */
    struct cache_slot slots[CACHE_SLOTS];
};

enum cf_err session_cache_create(struct session_cache **out)
{
    struct session_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CF_ERR_NOMEM;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return CF_OK;
}

void session_cache_free(struct session_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->mu);
    hash_wipe(c, sizeof(*c));
    free(c);
}

static size_t slot_home(const uint8_t token_hash[HASH_BYTES])
{
    uint64_t v;
    memcpy(&v, token_hash, sizeof(v));
    return (size_t)(v % CACHE_SLOTS);
}

/* The slot holding token_hash, or NULL. Caller holds mu. */
static struct cache_slot *cache_find(struct session_cache *c, const uint8_t token_hash[HASH_BYTES])
{
    size_t h = slot_home(token_hash);
    for (size_t i = 0; i < CACHE_PROBES; i++) {
        struct cache_slot *s = &c->slots[(h + i) % CACHE_SLOTS];
        if (s->used && hash_equal(s->token_hash, token_hash, HASH_BYTES))
            return s;
    }
    return NULL;
}

/* A free slot for token_hash, or the home slot (evicted) when the probe run is full. */
static struct cache_slot *cache_claim(struct session_cache *c, const uint8_t token_hash[HASH_BYTES])
{
    size_t h = slot_home(token_hash);
    for (size_t i = 0; i < CACHE_PROBES; i++) {
        struct cache_slot *s = &c->slots[(h + i) % CACHE_SLOTS];
        if (!s->used || hash_equal(s->token_hash, token_hash, HASH_BYTES))
            return s;
    }
    return &c->slots[h];
}

static void cache_drop(struct session_cache *c, const uint8_t token_hash[HASH_BYTES])
{
    pthread_mutex_lock(&c->mu);
    struct cache_slot *s = cache_find(c, token_hash);
    if (s != NULL)
        memset(s, 0, sizeof(*s));
    pthread_mutex_unlock(&c->mu);
}

void identity_cache_forget_user(struct identity *id, const char *user_id)
{
    /* O(1): rather than find the user's entries, make every entry read its row once more (a
     * revocation is rare; the row reads it causes are one per live session). */
    (void)user_id;
    struct session_cache *c = id->cache;
    pthread_mutex_lock(&c->mu);
    c->epoch++;
    pthread_mutex_unlock(&c->mu);
}

/* Tokens ----------------------------------------------------------------------------------- */

#define TOKEN_PREFIX "cfs_"

static void token_new(char out[IDENTITY_TOKEN_TEXT_BYTES], uint8_t hash_out[HASH_BYTES])
{
    uint8_t raw[IDENTITY_TOKEN_RANDOM_BYTES];
    hash_random(raw, sizeof(raw));
    memcpy(out, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1);
    char *b64 = out + sizeof(TOKEN_PREFIX) - 1;
    size_t room = IDENTITY_TOKEN_TEXT_BYTES - (sizeof(TOKEN_PREFIX) - 1);
    CF_ASSERT(room >=
              sodium_base64_ENCODED_LEN(sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING));
    sodium_bin2base64(b64, room, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    hash_wipe(raw, sizeof(raw));
    hash_sha256(out, strlen(out), hash_out);
}

enum cf_err identity_session_start(struct identity *id, struct sqltx *tx,
                                   const struct identity_ctx *ctx, const struct user_row *u,
                                   enum session_stage stage, const char *device,
                                   struct identity_sign_in_result *out)
{
    int64_t now = identity_now_us(id);
    int64_t idle_us = id->cfg.session_idle_s * US_PER_S;
    int64_t abs_us = id->cfg.session_absolute_s * US_PER_S;
    if (stage != STAGE_FULL)
        idle_us = abs_us = IDENTITY_MFA_TOKEN_TTL_S * US_PER_S;
    char session_id[ID_TEXT_BYTES_MAX], token[IDENTITY_TOKEN_TEXT_BYTES];
    uint8_t token_hash[HASH_BYTES];
    identity_id_new(ID_PREFIX_SESSION, session_id);
    token_new(token, token_hash);
    char dev[IDENTITY_DEVICE_BYTES_MAX + 1];
    snprintf(dev, sizeof(dev), "%s", device != NULL ? device : "");
    struct sql_value p[] = {SQL_T(session_id),  SQL_B(token_hash, HASH_BYTES),
                            SQL_T(u->id),       SQL_I(stage),
                            SQL_T(dev),         SQL_T(ctx != NULL && ctx->ip ? ctx->ip : ""),
                            SQL_I(now),         SQL_I(now + idle_us),
                            SQL_I(now + abs_us)};
    enum cf_err err = sql_exec(tx,
                               "INSERT INTO id_sessions (id, token_hash, user_id, stage, device, "
                               "ip, created_at_us, last_seen_at_us, idle_expires_at_us, "
                               "absolute_expires_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, "
                               "$8, $9)",
                               p, 9, NULL);
    if (err == CF_OK && stage == STAGE_FULL) {
        /* Bound the sessions of one user: the oldest beyond the limit end now. */
        struct sql_value q[] = {SQL_I(now), SQL_T(u->id), SQL_I(IDENTITY_SESSIONS_PER_USER_MAX)};
        err = sql_exec(tx,
                       "UPDATE id_sessions SET revoked_at_us = $1 WHERE id IN (SELECT id FROM "
                       "id_sessions WHERE user_id = $2 AND revoked_at_us = 0 AND stage = 0 "
                       "ORDER BY created_at_us DESC, id LIMIT 1000000 OFFSET $3)",
                       q, 3, NULL);
    }
    if (err != CF_OK) {
        hash_wipe(token, sizeof(token));
        return err;
    }
    memset(out, 0, sizeof(*out));
    char *dest = stage == STAGE_FULL ? out->token : out->mfa_token;
    memcpy(dest, token, IDENTITY_TOKEN_TEXT_BYTES);
    hash_wipe(token, sizeof(token));
    out->mfa_required = stage != STAGE_FULL;
    out->enroll_required = stage == STAGE_ENROLL;
    snprintf(out->principal.user_id, ID_TEXT_BYTES_MAX, "%s", u->id);
    snprintf(out->principal.session_id, ID_TEXT_BYTES_MAX, "%s", session_id);
    out->principal.role = u->role;
    out->expires_at_us = now + idle_us;
    return CF_OK;
}

/* Validation -------------------------------------------------------------------------------- */

/* Serves the token from the cache when it was checked recently. Otherwise *idle_seen_out gets
 * the idle deadline the cache had moved to (uses it served since the row was read), or 0. */
static bool cache_hit(struct identity *id, const uint8_t h[HASH_BYTES], int64_t now,
                      struct identity_principal *out, int64_t *idle_seen_out, uint64_t *epoch_out)
{
    struct session_cache *c = id->cache;
    bool hit = false;
    *idle_seen_out = 0;
    pthread_mutex_lock(&c->mu);
    *epoch_out = c->epoch; /* a row read after this is only as fresh as this epoch */
    struct cache_slot *s = cache_find(c, h);
    if (s != NULL)
        *idle_seen_out = s->idle_expires_at_us;
    if (s != NULL && s->epoch == c->epoch &&
        now - s->checked_at_us < IDENTITY_SESSION_CACHE_S * US_PER_S &&
        now < s->idle_expires_at_us && now < s->absolute_expires_at_us) {
        s->idle_expires_at_us = now + id->cfg.session_idle_s * US_PER_S;
        *out = s->principal;
        hit = true;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

static void cache_put(struct identity *id, const uint8_t h[HASH_BYTES],
                      const struct identity_principal *p, int64_t idle_exp, int64_t abs_exp,
                      int64_t now, uint64_t epoch)
{
    struct session_cache *c = id->cache;
    pthread_mutex_lock(&c->mu);
    struct cache_slot *s = cache_claim(c, h);
    memcpy(s->token_hash, h, HASH_BYTES);
    s->used = true;
    s->principal = *p;
    s->idle_expires_at_us = idle_exp;
    s->absolute_expires_at_us = abs_exp;
    s->checked_at_us = now;
    s->epoch = epoch; /* a revocation since the row was read makes this entry stale at once */
    pthread_mutex_unlock(&c->mu);
}

/* Reads the session row, checks it, and moves its idle deadline; in one transaction.
 * idle_seen is the deadline uses served from this process's cache had reached (0: none): the
 * row's own deadline lags behind those uses. */
static enum cf_err session_check_row(struct identity *id, const uint8_t h[HASH_BYTES], int64_t now,
                                     int64_t idle_seen, struct identity_principal *out,
                                     int64_t *idle_exp, int64_t *abs_exp)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value p[] = {SQL_B(h, HASH_BYTES)};
    struct sql_rows *r = NULL;
    err = sql_query(tx,
                    "SELECT s.id, s.user_id, s.stage, s.idle_expires_at_us, "
                    "s.absolute_expires_at_us, s.revoked_at_us, u.role, u.closed FROM "
                    "id_sessions s JOIN id_users u ON u.id = s.user_id WHERE s.token_hash = $1",
                    p, 1, &r);
    int64_t stored_idle = err == CF_OK && sql_rows_n(r) == 1 ? sql_row_int(r, 0, 3) : 0;
    int64_t idle_deadline = stored_idle > idle_seen ? stored_idle : idle_seen;
    if (err == CF_OK &&
        (sql_rows_n(r) != 1 || sql_row_int(r, 0, 2) != STAGE_FULL || sql_row_int(r, 0, 5) != 0 ||
         sql_row_int(r, 0, 7) != 0 || now >= idle_deadline || now >= sql_row_int(r, 0, 4)))
        err = CF_ERR_UNAUTHORIZED;
    int64_t role = err == CF_OK ? sql_row_int(r, 0, 6) : -1;
    if (err == CF_OK && (role < 0 || role >= IDENTITY_ROLE_COUNT))
        err = CF_ERR_CORRUPT;
    if (err == CF_OK) {
        memset(out, 0, sizeof(*out));
        snprintf(out->session_id, ID_TEXT_BYTES_MAX, "%s", sql_row_text(r, 0, 0));
        snprintf(out->user_id, ID_TEXT_BYTES_MAX, "%s", sql_row_text(r, 0, 1));
        out->role = (enum identity_role)role;
        *abs_exp = sql_row_int(r, 0, 4);
        *idle_exp = now + id->cfg.session_idle_s * US_PER_S;
        struct sql_value u[] = {SQL_I(now), SQL_I(*idle_exp), SQL_T(out->session_id)};
        err = sql_exec(tx,
                       "UPDATE id_sessions SET last_seen_at_us = $1, idle_expires_at_us = $2 "
                       "WHERE id = $3",
                       u, 3, NULL);
    }
    sql_rows_free(r);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    return sql_commit(tx);
}

enum cf_err identity_authenticate(struct identity *id, const char *token, size_t token_len,
                                  struct identity_principal *out)
{
    if (token == NULL || token_len < sizeof(TOKEN_PREFIX) ||
        token_len >= IDENTITY_TOKEN_TEXT_BYTES || memcmp(token, TOKEN_PREFIX, 4) != 0)
        return CF_ERR_UNAUTHORIZED;
    uint8_t h[HASH_BYTES];
    hash_sha256(token, token_len, h);
    int64_t now = identity_now_us(id);
    int64_t idle_seen = 0;
    uint64_t epoch = 0;
    if (cache_hit(id, h, now, out, &idle_seen, &epoch))
        return CF_OK;
    int64_t idle_exp = 0, abs_exp = 0;
    enum cf_err err = session_check_row(id, h, now, idle_seen, out, &idle_exp, &abs_exp);
    if (err == CF_OK)
        cache_put(id, h, out, idle_exp, abs_exp, now, epoch);
    else
        cache_drop(id->cache, h);
    return err;
}

/* Ending sessions ---------------------------------------------------------------------------- */

enum cf_err identity_sessions_end(struct identity *id, struct sqltx *tx, const char *user_id,
                                  const char *keep_session_id, size_t *n_out)
{
    struct sql_value p[] = {SQL_I(identity_now_us(id)), SQL_T(user_id),
                            SQL_T(keep_session_id != NULL ? keep_session_id : "")};
    int64_t n = 0;
    enum cf_err err = sql_exec(tx,
                               "UPDATE id_sessions SET revoked_at_us = $1 WHERE user_id = $2 "
                               "AND revoked_at_us = 0 AND id <> $3",
                               p, 3, &n);
    if (err == CF_OK && n_out != NULL)
        *n_out = (size_t)n;
    return err;
}

/* Revokes one session of the principal's user inside its own transaction, with an audit line. */
static enum cf_err session_revoke_one(struct identity *id, const struct identity_ctx *ctx,
                                      const struct identity_principal *p, const char *session_id,
                                      const char *action)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_I(identity_now_us(id)), SQL_T(session_id), SQL_T(p->user_id)};
    int64_t n = 0;
    err = sql_exec(tx,
                   "UPDATE id_sessions SET revoked_at_us = $1 WHERE id = $2 AND user_id = $3 "
                   "AND revoked_at_us = 0",
                   v, 3, &n);
    if (err == CF_OK && n != 1)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, p->user_id, action, session_id, "ok", NULL);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    err = sql_commit(tx);
    identity_cache_forget_user(id, p->user_id);
    return err;
}

enum cf_err identity_sign_out(struct identity *id, const struct identity_ctx *ctx,
                              const struct identity_principal *p)
{
    return session_revoke_one(id, ctx, p, p->session_id, "auth.sign_out");
}

enum cf_err identity_session_revoke(struct identity *id, const struct identity_ctx *ctx,
                                    const struct identity_principal *p, const char *session_id)
{
    return session_revoke_one(id, ctx, p, session_id, "session.revoke");
}

enum cf_err identity_sessions_revoke_others(struct identity *id, const struct identity_ctx *ctx,
                                            const struct identity_principal *p, size_t *n_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    err = identity_sessions_end(id, tx, p->user_id, p->session_id, n_out);
    if (err == CF_OK)
        err = identity_audit_tx(tx, id, ctx, p->user_id, "session.revoke_others", p->user_id, "ok",
                                NULL);
    if (err != CF_OK) {
        sql_rollback(tx);
        return err;
    }
    err = sql_commit(tx);
    identity_cache_forget_user(id, p->user_id);
    return err;
}

enum cf_err identity_sessions_list(struct identity *id, const struct identity_principal *p,
                                   struct identity_session_info *out, size_t max, size_t *n_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(id->db, &tx);
    if (err != CF_OK)
        return err;
    int64_t now = identity_now_us(id);
    struct sql_value v[] = {SQL_T(p->user_id), SQL_I(now), SQL_I((int64_t)max)};
    struct sql_rows *r = NULL;
    err = sql_query(tx,
                    "SELECT id, device, ip, created_at_us, last_seen_at_us, idle_expires_at_us, "
                    "absolute_expires_at_us FROM id_sessions WHERE user_id = $1 AND stage = 0 "
                    "AND revoked_at_us = 0 AND idle_expires_at_us > $2 AND "
                    "absolute_expires_at_us > $2 ORDER BY created_at_us DESC, id LIMIT $3",
                    v, 3, &r);
    sql_rollback(tx);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r);
    for (size_t i = 0; i < n && i < max; i++) {
        struct identity_session_info *s = &out[i];
        memset(s, 0, sizeof(*s));
        snprintf(s->session_id, sizeof(s->session_id), "%s", sql_row_text(r, i, 0));
        snprintf(s->device, sizeof(s->device), "%s", sql_row_text(r, i, 1));
        snprintf(s->ip, sizeof(s->ip), "%s", sql_row_text(r, i, 2));
        s->created_at_us = sql_row_int(r, i, 3);
        s->last_seen_at_us = sql_row_int(r, i, 4);
        int64_t idle = sql_row_int(r, i, 5), abs_exp = sql_row_int(r, i, 6);
        s->expires_at_us = idle < abs_exp ? idle : abs_exp;
        s->current = strcmp(s->session_id, p->session_id) == 0;
    }
    *n_out = n < max ? n : max;
    sql_rows_free(r);
    return CF_OK;
}
