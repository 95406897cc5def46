/*
 * risk_fixture.h - what the risk store tests share: a throwaway database (SQLite in a temporary
 * directory, or a fresh PostgreSQL database when COFFER_TEST_PG_URL is set; see
 * ../identity/testdb.h), a vault holding one fresh key, and small raw SQL helpers that assert.
 *
 * Include after cmocka.h (and the four headers it needs). Everything here is static inline, so
 * a test that does not use a helper compiles cleanly under -Wunused-function.
 */
#ifndef COFFER_TESTS_RISK_FIXTURE_H
#define COFFER_TESTS_RISK_FIXTURE_H

#include "../identity/testdb.h" /* the throwaway database: SQLite, or PostgreSQL */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/ids.h"
#include "crypto/vault.h"
#include "store/sql/sql.h"

#define RISK_FX_TARGET_BYTES_MAX 1024

/* A test's database and vault. */
struct risk_fx {
    char target[RISK_FX_TARGET_BYTES_MAX];
    char pg_name[TESTDB_NAME_BYTES]; /* "" for SQLite */
    char dir[TESTDB_DIR_BYTES];
    struct sqldb *db;
    struct vault *vault; /* key 1 only; NULL unless asked for */
};

/* A vault holding one fresh key (key 1); NULL when it cannot be made. */
static inline struct vault *risk_fx_vault_one_key(void)
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

/* A store's vault callback; ctx is the struct risk_fx. */
static inline const struct vault *risk_fx_vault(void *ctx, uint32_t key_id)
{
    struct risk_fx *b = ctx;
    return key_id == 0 || vault_has_key(b->vault, key_id) ? b->vault : NULL;
}

/* Makes the vault (with_vault) and a fresh database named after tag (icu: see testdb_create) and
 * opens it; 0, or -1 on failure (risk_fx_close still cleans up). */
static inline int risk_fx_open(struct risk_fx *b, const char *tag, bool icu, bool with_vault)
{
    if (with_vault && (b->vault = risk_fx_vault_one_key()) == NULL)
        return -1;
    if (!testdb_create(tag, icu, b->dir, b->pg_name, b->target, sizeof(b->target)) ||
        sqldb_open(b->target, &b->db) != CF_OK)
        return -1;
    return 0;
}

/* Closes the database, frees the vault and drops the database. */
static inline void risk_fx_close(struct risk_fx *b)
{
    if (b->db != NULL)
        sqldb_close(b->db);
    vault_free(b->vault);
    testdb_drop(b->dir, b->pg_name);
}

/* A test's fixture: a struct whose first member is a struct risk_fx, followed by the store's
 * handle. risk_fx_setup allocates it (fx_bytes, zeroed) into *state and opens it as
 * risk_fx_open does (0, or -1); risk_fx_teardown, once the test closed its store, closes and
 * frees it. The test's own fx_setup opens the store on b.db after risk_fx_setup. */
static inline int risk_fx_setup(void **state, size_t fx_bytes, const char *tag, bool icu,
                                bool with_vault)
{
    struct risk_fx *b = calloc(1, fx_bytes);
    *state = b;
    return b != NULL ? risk_fx_open(b, tag, icu, with_vault) : -1;
}

static inline int risk_fx_teardown(void **state)
{
    struct risk_fx *b = *state;
    if (b != NULL)
        risk_fx_close(b);
    free(b);
    return 0;
}

/* Defines idem_of(key, request): a store's idempotency key (struct idem_type, which holds
 * `const char *key` and `uint8_t request_hash[HASH_BYTES]`) for key and request's SHA-256. */
#define RISK_FX_IDEM_OF(idem_type)                                                                 \
    static inline struct idem_type idem_of(const char *key, const char *request)                   \
    {                                                                                              \
        struct idem_type k = {.key = key};                                                         \
        hash_sha256(request, strlen(request), k.request_hash);                                     \
        return k;                                                                                  \
    }

/* The first integer cell of a one-row query. */
static inline int64_t risk_fx_count(struct risk_fx *b, const char *sql)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(b->db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, sql, NULL, 0, &r), CF_OK);
    sql_rollback(tx);
    int64_t n = sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return n;
}

/* Runs one statement with p[0..n) and commits it. */
static inline void risk_fx_exec(struct risk_fx *b, const char *sql, const struct sql_value *p,
                                size_t n)
{
    struct sqltx *tx = NULL;
    assert_int_equal(sql_begin(b->db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, sql, p, n, NULL), CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
}

/* A party id: prefix ("usr_", "mer_") and n. */
static inline void risk_fx_party(const char *prefix, uint64_t n, char out[ID_TEXT_BYTES_MAX])
{
    id_format(prefix, n, out);
}

#endif
