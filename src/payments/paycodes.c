/*
 * paycodes.c - customer-presented payment codes and merchant holds (schema version 3); see
 * paycodes.h.
 *
 * The device row carries last_step, the last step a code of the device was used at; the claim
 * raises it with "UPDATE ... WHERE last_step < $step" and inserts the (device, step) row, both in
 * one transaction. Failed attempts are one row per scope ("m:<merchant>", "d:<device number>")
 * with the start of its window and a count, kept by one upsert.
 */
#include "payments/paycodes.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crypto/totp.h"
#include "payments/internal.h"

/* Schema ------------------------------------------------------------------------------------- */

#define PAYCODE_SCHEMA(BLOB, NUMBER_KEY)                                                           \
    "CREATE TABLE pay_paycode_devices (device_number " NUMBER_KEY ", user_id TEXT NOT NULL, "      \
    "label TEXT NOT NULL, currency TEXT NOT NULL, limit_minor BIGINT NOT NULL, "                   \
    "secret_sealed " BLOB " NOT NULL, last_step BIGINT NOT NULL DEFAULT 0, "                       \
    "created_at_us BIGINT NOT NULL, revoked_at_us BIGINT NOT NULL DEFAULT 0);"                     \
    "CREATE INDEX pay_paycode_devices_user ON pay_paycode_devices(user_id);"                       \
    "CREATE TABLE pay_paycode_used (device_number BIGINT NOT NULL, step BIGINT NOT NULL, "         \
    "op_id TEXT NOT NULL, merchant_id TEXT NOT NULL, used_at_us BIGINT NOT NULL, "                 \
    "PRIMARY KEY (device_number, step));"                                                          \
    "CREATE TABLE pay_paycode_failures (scope TEXT PRIMARY KEY, "                                  \
    "window_start_us BIGINT NOT NULL, failures BIGINT NOT NULL);"                                  \
    "CREATE TABLE pay_holds (op_id TEXT PRIMARY KEY, merchant_id TEXT NOT NULL, "                  \
    "state INTEGER NOT NULL, held_minor BIGINT NOT NULL, "                                         \
    "captured_minor BIGINT NOT NULL DEFAULT 0, fee_minor BIGINT NOT NULL DEFAULT 0, "              \
    "expires_at_us BIGINT NOT NULL, resolve_idem TEXT NOT NULL DEFAULT '', "                       \
    "resolve_hash " BLOB ", fee_seq BIGINT NOT NULL DEFAULT 0, "                                   \
    "created_at_us BIGINT NOT NULL, updated_at_us BIGINT NOT NULL);"

const struct sql_migration pay_migration_paycodes = {3,
                                                     PAYCODE_SCHEMA("BLOB", "INTEGER PRIMARY KEY"),
                                                     PAYCODE_SCHEMA("BYTEA", "BIGINT PRIMARY KEY")};

/* A sealed secret: the 32 bytes and the vault's overhead. */
#define SEALED_BYTES (PAYCODE_SECRET_BYTES + VAULT_OVERHEAD_BYTES)
/* "paycode:" and 9 digits, or "m:" / "d:" and an id. */
#define AAD_BYTES 32
#define SCOPE_BYTES (PAY_PARTY_BYTES_MAX + 4)

_Static_assert(PAY_PAYCODE_SECRET_TEXT_BYTES >= 8 * ((PAYCODE_SECRET_BYTES + 4) / 5) + 1,
               "room for the base32 secret");

static void secret_aad(uint64_t device_number, char out[AAD_BYTES])
{
    snprintf(out, AAD_BYTES, "paycode:%" PRIu64, device_number);
}

/* Devices ------------------------------------------------------------------------------------ */

#define DEVICE_COLS                                                                                \
    "device_number, user_id, label, currency, limit_minor, created_at_us, revoked_at_us, "         \
    "secret_sealed, last_step"

/* A device row and what the public struct does not show. */
struct device_row {
    struct pay_paycode_device d;
    uint8_t sealed[SEALED_BYTES];
    size_t sealed_len; /* 0 once revoked (erased) */
    int64_t last_step;
};

static void device_from_row(const struct sql_rows *r, size_t i, struct device_row *out)
{
    memset(out, 0, sizeof(*out));
    out->d.device_number = (uint64_t)sql_row_int(r, i, 0);
    pay_copy(out->d.user_id, sizeof(out->d.user_id), sql_row_text(r, i, 1));
    pay_copy(out->d.label, sizeof(out->d.label), sql_row_text(r, i, 2));
    pay_copy(out->d.currency, sizeof(out->d.currency), sql_row_text(r, i, 3));
    out->d.limit_minor = sql_row_int(r, i, 4);
    out->d.created_at_us = sql_row_int(r, i, 5);
    out->d.revoked_at_us = sql_row_int(r, i, 6);
    size_t n = 0;
    const uint8_t *ct = sql_row_blob(r, i, 7, &n);
    if (ct != NULL && n == SEALED_BYTES) {
        memcpy(out->sealed, ct, n);
        out->sealed_len = n;
    }
    out->last_step = sql_row_int(r, i, 8);
    CF_ASSERT(sql_rows_cols(r) == 9);
}

/* One device by number (any owner, any state); CF_ERR_NOT_FOUND when none. */
static enum cf_err device_read(struct sqltx *tx, uint64_t device_number, bool lock,
                               struct device_row *out)
{
    struct sql_value v[] = {SQL_I(device_number)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                lock ? "SELECT " DEVICE_COLS " FROM pay_paycode_devices "
                                       "WHERE device_number = $1 FOR UPDATE"
                                     : "SELECT " DEVICE_COLS " FROM pay_paycode_devices "
                                       "WHERE device_number = $1",
                                v, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 0)
        err = CF_ERR_NOT_FOUND;
    else
        device_from_row(r, 0, out);
    sql_rows_free(r);
    return err;
}

/* The customer's active device, read in its own transaction. */
static enum cf_err device_mine(struct payments *p, uint64_t device_number, const char *user_id,
                               struct device_row *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = device_read(tx, device_number, false, out);
    sql_rollback(tx);
    if (err == CF_OK &&
        (strcmp(out->d.user_id, user_id) != 0 || out->d.revoked_at_us != 0 || out->sealed_len == 0))
        err = CF_ERR_NOT_FOUND;
    return err;
}

/* Opens a device's secret into key (PAYCODE_SECRET_BYTES); the caller wipes it. */
static enum cf_err secret_open(struct payments *p, const struct device_row *row,
                               uint8_t key[PAYCODE_SECRET_BYTES])
{
    if (row->sealed_len != SEALED_BYTES)
        return CF_ERR_CORRUPT;
    char aad[AAD_BYTES];
    secret_aad(row->d.device_number, aad);
    char opened[PAYCODE_SECRET_BYTES + 1]; /* pay_open adds a NUL */
    enum cf_err err = pay_open(p, aad, row->sealed, row->sealed_len, opened, sizeof(opened));
    if (err == CF_OK)
        memcpy(key, opened, PAYCODE_SECRET_BYTES);
    hash_wipe(opened, sizeof(opened));
    return err;
}

/* A device number drawn uniformly from 1..PAYCODE_DEVICE_NUMBER_MAX. */
static uint64_t device_number_draw(void)
{
    const uint64_t n = PAYCODE_DEVICE_NUMBER_MAX;
    const uint64_t bound = UINT64_MAX - UINT64_MAX % n; /* below it, v % n is unbiased */
    uint64_t v = UINT64_MAX;
    while (v >= bound)
        hash_random(&v, sizeof(v));
    uint64_t number = v % n + 1;
    CF_ASSERT(number >= 1 && number <= PAYCODE_DEVICE_NUMBER_MAX);
    return number;
}

static enum cf_err devices_active_n(struct sqltx *tx, const char *user_id, int64_t *n_out)
{
    struct sql_value v[] = {SQL_T(user_id)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT COUNT(*) FROM pay_paycode_devices WHERE user_id = $1 "
                                "AND revoked_at_us = 0",
                                v, 1, &r);
    if (err != CF_OK)
        return err;
    *n_out = sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return CF_OK;
}

/* One attempt at storing d under a fresh number; CF_ERR_STORAGE_CONFLICT when it is taken. */
static enum cf_err device_insert(struct payments *p, const struct pay_paycode_device *d,
                                 const uint8_t key[PAYCODE_SECRET_BYTES])
{
    char aad[AAD_BYTES];
    secret_aad(d->device_number, aad);
    uint8_t sealed[SEALED_BYTES];
    size_t sealed_len = 0;
    enum cf_err err =
        pay_seal(p, aad, key, PAYCODE_SECRET_BYTES, sealed, sizeof(sealed), &sealed_len);
    if (err != CF_OK)
        return err;
    CF_ASSERT(sealed_len == SEALED_BYTES);
    struct sqltx *tx = NULL;
    if ((err = sql_begin(p->db, &tx)) != CF_OK)
        return err;
    char lock[PAY_PARTY_BYTES_MAX + 16];
    snprintf(lock, sizeof(lock), "paycode-devices:%s", d->user_id);
    int64_t active = 0;
    err = pay_lock(tx, lock); /* one customer's devices are added one at a time: the limit holds */
    if (err == CF_OK)
        err = devices_active_n(tx, d->user_id, &active);
    if (err == CF_OK && active >= PAY_PAYCODE_DEVICES_MAX)
        err = CF_ERR_CONFLICT;
    struct sql_value v[] = {SQL_I(d->device_number), SQL_T(d->user_id),
                            SQL_T(d->label),         SQL_T(d->currency),
                            SQL_I(d->limit_minor),   SQL_B(sealed, sealed_len),
                            SQL_I(d->created_at_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "INSERT INTO pay_paycode_devices (device_number, user_id, label, currency, "
                       "limit_minor, secret_sealed, created_at_us) "
                       "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                       v, 7, NULL);
    return pay_tx_end(tx, err);
}

enum cf_err payments_paycode_device_add(struct payments *p, const struct pay_paycode_device *d,
                                        int64_t now_us, struct pay_paycode_device *out,
                                        char secret_out[PAY_PAYCODE_SECRET_TEXT_BYTES])
{
    CF_ASSERT(d->user_id[0] != '\0' && d->label[0] != '\0' && d->currency[0] != '\0');
    CF_ASSERT(d->limit_minor >= 1 && d->limit_minor <= PAY_PAYCODE_LIMIT_MINOR_MAX);
    uint8_t key[PAYCODE_SECRET_BYTES];
    hash_random(key, sizeof(key));
    struct pay_paycode_device made = *d;
    made.created_at_us = now_us;
    made.revoked_at_us = 0;
    enum cf_err err = CF_ERR_STORAGE_CONFLICT;
    for (int i = 0; i < PAY_PAYCODE_ALLOCATE_TRIES && err == CF_ERR_STORAGE_CONFLICT; i++) {
        made.device_number = device_number_draw();
        err = device_insert(p, &made, key);
    }
    if (err == CF_OK) {
        size_t n = base32_encode(key, sizeof(key), secret_out, PAY_PAYCODE_SECRET_TEXT_BYTES);
        CF_ASSERT(n > 0 && n < PAY_PAYCODE_SECRET_TEXT_BYTES);
        *out = made;
    }
    hash_wipe(key, sizeof(key));
    return err;
}

enum cf_err payments_paycode_devices_list(struct payments *p, const char *user_id,
                                          struct pay_paycode_device *out, size_t max, size_t *n_out)
{
    CF_ASSERT(max <= PAY_PAYCODE_DEVICES_LIST_MAX);
    struct sql_value v[] = {SQL_T(user_id), SQL_I(max)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        pay_query1(p,
                   "SELECT " DEVICE_COLS " FROM pay_paycode_devices WHERE user_id = $1 "
                   "ORDER BY created_at_us DESC, device_number LIMIT $2",
                   v, 2, &r);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r) < max ? sql_rows_n(r) : max;
    for (size_t i = 0; i < n; i++) {
        struct device_row row;
        device_from_row(r, i, &row);
        out[i] = row.d;
        hash_wipe(&row, sizeof(row));
    }
    sql_rows_free(r);
    *n_out = n;
    return CF_OK;
}

enum cf_err payments_paycode_device_revoke(struct payments *p, uint64_t device_number,
                                           const char *user_id, int64_t now_us,
                                           struct pay_paycode_device *out)
{
    static const uint8_t erased[1] = {0};
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_I(now_us), SQL_B(erased, 1), SQL_I(device_number), SQL_T(user_id)};
    int64_t changed = 0;
    err = sql_exec(tx,
                   "UPDATE pay_paycode_devices SET revoked_at_us = $1, secret_sealed = $2 "
                   "WHERE device_number = $3 AND user_id = $4 AND revoked_at_us = 0",
                   v, 4, &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_NOT_FOUND;
    struct device_row row;
    if (err == CF_OK)
        err = device_read(tx, device_number, false, &row);
    if ((err = pay_tx_end(tx, err)) == CF_OK) {
        CF_ASSERT(row.d.revoked_at_us == now_us && row.sealed_len == 0);
        *out = row.d;
    }
    return err;
}

enum cf_err payments_paycode_current(struct payments *p, uint64_t device_number,
                                     const char *user_id, int64_t now_us,
                                     char code_out[PAYCODE_DIGITS + 1], int64_t *step_out)
{
    CF_ASSERT(now_us >= 0);
    struct device_row row;
    enum cf_err err = device_mine(p, device_number, user_id, &row);
    if (err != CF_OK)
        return err;
    uint8_t key[PAYCODE_SECRET_BYTES];
    char code[PAYCODE_DIGITS + 1];
    err = secret_open(p, &row, key);
    if (err == CF_OK)
        err = paycode_generate(key, device_number, now_us / 1000000, code);
    hash_wipe(key, sizeof(key));
    if (err == CF_OK) {
        memcpy(code_out, code, sizeof(code));
        *step_out = (int64_t)paycode_step(now_us / 1000000);
    }
    hash_wipe(code, sizeof(code));
    return err;
}

/* Failed attempts ---------------------------------------------------------------------------- */

/* Whether scope has failed max times within the window ending at now_us. */
static enum cf_err throttled(struct sqltx *tx, const char *scope, int64_t max, int64_t now_us,
                             bool *out)
{
    struct sql_value v[] = {SQL_T(scope), SQL_I(now_us - PAY_PAYCODE_FAILURE_WINDOW_S * 1000000LL)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT failures FROM pay_paycode_failures WHERE scope = $1 "
                                "AND window_start_us > $2",
                                v, 2, &r);
    if (err != CF_OK)
        return err;
    *out = sql_rows_n(r) == 1 && sql_row_int(r, 0, 0) >= max;
    sql_rows_free(r);
    return CF_OK;
}

/* Counts one failure of scope: a new window when the last one is over. */
static enum cf_err failure_count(struct sqltx *tx, const char *scope, int64_t now_us)
{
    struct sql_value v[] = {SQL_T(scope), SQL_I(now_us),
                            SQL_I(now_us - PAY_PAYCODE_FAILURE_WINDOW_S * 1000000LL)};
    return sql_exec(tx,
                    "INSERT INTO pay_paycode_failures (scope, window_start_us, failures) "
                    "VALUES ($1, $2, 1) ON CONFLICT (scope) DO UPDATE SET "
                    "failures = CASE WHEN pay_paycode_failures.window_start_us <= $3 THEN 1 "
                    "ELSE pay_paycode_failures.failures + 1 END, "
                    "window_start_us = CASE WHEN pay_paycode_failures.window_start_us <= $3 "
                    "THEN $2 ELSE pay_paycode_failures.window_start_us END",
                    v, 3, NULL);
}

/* Counts a failure that could be a guess, for the merchant and (when known) the device. */
static void failures_record(struct payments *p, const char *merchant_scope,
                            const char *device_scope, int64_t now_us)
{
    struct sqltx *tx = NULL;
    if (sql_begin(p->db, &tx) != CF_OK)
        return; /* the attempt is refused all the same */
    enum cf_err err = failure_count(tx, merchant_scope, now_us);
    if (err == CF_OK && device_scope != NULL)
        err = failure_count(tx, device_scope, now_us);
    cf_best_effort(pay_tx_end(tx, err));
}

/* Checking and claiming codes ---------------------------------------------------------------- */

/* What the read half of a check found. */
enum check_found {
    CHECK_DEVICE,    /* an active device that is not throttled: verify against it */
    CHECK_GUESS,     /* malformed, unknown or revoked: a failure to count */
    CHECK_THROTTLED, /* the device number is past its failures */
};

static enum cf_err check_read(struct payments *p, const char *merchant_scope,
                              const char *device_scope, uint64_t device_number, int64_t now_us,
                              struct device_row *row, enum check_found *found)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    bool over = false;
    err = throttled(tx, merchant_scope, PAY_PAYCODE_MERCHANT_FAILURES_MAX, now_us, &over);
    if (err == CF_OK && over)
        err = CF_ERR_TOO_MANY_ATTEMPTS;
    *found = CHECK_GUESS;
    if (err == CF_OK && device_scope != NULL)
        err = throttled(tx, device_scope, PAY_PAYCODE_DEVICE_FAILURES_MAX, now_us, &over);
    if (err == CF_OK && device_scope != NULL) {
        enum cf_err e = device_read(tx, device_number, false, row);
        if (over)
            *found = CHECK_THROTTLED;
        else if (e == CF_OK && row->d.revoked_at_us == 0 && row->sealed_len > 0)
            *found = CHECK_DEVICE;
        else if (e != CF_ERR_NOT_FOUND && e != CF_OK)
            err = e;
    }
    sql_rollback(tx);
    return err;
}

/* Verifies the code against the device's secret; *step_out is the matched step. */
static enum cf_err check_verify(struct payments *p, const struct device_row *row,
                                const struct pay_paycode_use *use, int64_t now_us,
                                int64_t *step_out)
{
    uint8_t key[PAYCODE_SECRET_BYTES];
    enum cf_err err = secret_open(p, row, key);
    if (err == CF_OK)
        err = paycode_verify(key, use->code, use->len, now_us / 1000000, step_out);
    hash_wipe(key, sizeof(key));
    return err;
}

enum cf_err payments_paycode_check(struct payments *p, const struct pay_paycode_use *use,
                                   int64_t now_us, struct pay_paycode_match *out)
{
    CF_ASSERT(use->merchant_id != NULL && use->currency != NULL && now_us >= 0);
    CF_ASSERT(use->code != NULL || use->len == 0);
    char merchant_scope[SCOPE_BYTES], device_scope[SCOPE_BYTES];
    snprintf(merchant_scope, sizeof(merchant_scope), "m:%s", use->merchant_id);
    uint64_t number = 0;
    bool parsed = paycode_parse(use->code, use->len, &number) == CF_OK;
    snprintf(device_scope, sizeof(device_scope), "d:%" PRIu64, number);
    struct device_row row;
    memset(&row, 0, sizeof(row));
    enum check_found found = CHECK_GUESS;
    enum cf_err err =
        check_read(p, merchant_scope, parsed ? device_scope : NULL, number, now_us, &row, &found);
    if (err != CF_OK)
        return err;
    int64_t step = 0;
    if (found == CHECK_DEVICE) {
        err = check_verify(p, &row, use, now_us, &step);
        if (err != CF_OK && err != CF_ERR_INVALID_PAYCODE) {
            hash_wipe(&row, sizeof(row));
            return err; /* the vault failed: not the code's fault, nothing counted */
        }
        found = err == CF_OK ? CHECK_DEVICE : CHECK_GUESS;
    }
    hash_wipe(row.sealed, sizeof(row.sealed));
    if (found != CHECK_DEVICE) {
        failures_record(p, merchant_scope, parsed ? device_scope : NULL, now_us);
        return CF_ERR_INVALID_PAYCODE;
    }
    /* a real code: used already, in another currency or over the limit is not a guess */
    if (step <= row.last_step || strcmp(row.d.currency, use->currency) != 0 ||
        use->amount_minor <= 0 || use->amount_minor > row.d.limit_minor)
        return CF_ERR_INVALID_PAYCODE;
    CF_ASSERT(row.d.device_number == number && step > 0);
    out->device_number = number;
    pay_copy(out->user_id, sizeof(out->user_id), row.d.user_id);
    out->step = step;
    return CF_OK;
}

enum cf_err payments_paycode_claim(struct payments *p, const struct pay_paycode_match *m,
                                   const char *op_id, const char *merchant_id, int64_t now_us)
{
    CF_ASSERT(m->device_number >= 1 && m->device_number <= PAYCODE_DEVICE_NUMBER_MAX);
    CF_ASSERT(m->step > 0 && op_id[0] != '\0' && merchant_id[0] != '\0');
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_I(m->step), SQL_I(m->device_number)};
    int64_t changed = 0;
    err = sql_exec(tx,
                   "UPDATE pay_paycode_devices SET last_step = $1 WHERE device_number = $2 "
                   "AND revoked_at_us = 0 AND last_step < $1",
                   v, 2, &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_INVALID_PAYCODE;
    struct sql_value w[] = {SQL_I(m->device_number), SQL_I(m->step), SQL_T(op_id),
                            SQL_T(merchant_id), SQL_I(now_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "INSERT INTO pay_paycode_used (device_number, step, op_id, merchant_id, "
                       "used_at_us) VALUES ($1, $2, $3, $4, $5)",
                       w, 5, NULL);
    err = pay_tx_end(tx, err);
    return err == CF_ERR_STORAGE_CONFLICT ? CF_ERR_INVALID_PAYCODE : err;
}

/* Holds -------------------------------------------------------------------------------------- */

const char *pay_hold_state_name(uint8_t state)
{
    static const char *const names[] = {"unknown",   "held",     "capturing", "captured",
                                        "releasing", "released", "expired"};
    return state < sizeof(names) / sizeof(names[0]) ? names[state] : "unknown";
}

#define HOLD_COLS                                                                                  \
    "op_id, merchant_id, state, held_minor, captured_minor, fee_minor, expires_at_us, "            \
    "resolve_idem, resolve_hash, fee_seq, created_at_us, updated_at_us"

static enum cf_err hold_read(struct sqltx *tx, const char *op_id, bool lock, struct pay_hold *out)
{
    struct sql_value v[] = {SQL_T(op_id)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        sql_query(tx,
                  lock ? "SELECT " HOLD_COLS " FROM pay_holds WHERE op_id = $1 FOR UPDATE"
                       : "SELECT " HOLD_COLS " FROM pay_holds WHERE op_id = $1",
                  v, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 0) {
        sql_rows_free(r);
        return CF_ERR_NOT_FOUND;
    }
    memset(out, 0, sizeof(*out));
    pay_copy(out->op_id, sizeof(out->op_id), sql_row_text(r, 0, 0));
    pay_copy(out->merchant_id, sizeof(out->merchant_id), sql_row_text(r, 0, 1));
    out->state = (uint8_t)sql_row_int(r, 0, 2);
    out->held_minor = sql_row_int(r, 0, 3);
    out->captured_minor = sql_row_int(r, 0, 4);
    out->fee_minor = sql_row_int(r, 0, 5);
    out->expires_at_us = sql_row_int(r, 0, 6);
    pay_copy(out->resolve_idem, sizeof(out->resolve_idem), sql_row_text(r, 0, 7));
    size_t n = 0;
    const uint8_t *h = sql_row_blob(r, 0, 8, &n);
    if (h != NULL && n == HASH_BYTES)
        memcpy(out->resolve_hash, h, HASH_BYTES);
    out->fee_seq = (uint64_t)sql_row_int(r, 0, 9);
    out->created_at_us = sql_row_int(r, 0, 10);
    out->updated_at_us = sql_row_int(r, 0, 11);
    sql_rows_free(r);
    CF_ASSERT(out->state >= PAY_HOLD_HELD && out->state <= PAY_HOLD_EXPIRED);
    return CF_OK;
}

enum cf_err payments_hold_open(struct payments *p, const struct pay_hold *h, uint64_t hold_seq,
                               int64_t now_us)
{
    CF_ASSERT(h->op_id[0] != '\0' && h->merchant_id[0] != '\0');
    CF_ASSERT(h->held_minor > 0 && hold_seq > 0 && h->expires_at_us > 0);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {
        SQL_I(PAY_STATUS_PENDING), SQL_I(hold_seq),      SQL_I(now_us),
        SQL_T(h->op_id),           SQL_I(PAY_KIND_HOLD), SQL_I(PAY_STATUS_PROCESSING)};
    int64_t changed = 0;
    err = sql_exec(tx,
                   "UPDATE pay_ops SET status = $1, hold_seq = $2, updated_at_us = $3 "
                   "WHERE id = $4 AND kind = $5 AND status = $6",
                   v, 6, &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_CONFLICT;
    struct sql_value w[] = {SQL_T(h->op_id),      SQL_T(h->merchant_id),   SQL_I(PAY_HOLD_HELD),
                            SQL_I(h->held_minor), SQL_I(h->expires_at_us), SQL_I(now_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "INSERT INTO pay_holds (op_id, merchant_id, state, held_minor, "
                       "expires_at_us, created_at_us, updated_at_us) "
                       "VALUES ($1, $2, $3, $4, $5, $6, $6)",
                       w, 6, NULL);
    return pay_tx_end(tx, err);
}

enum cf_err payments_hold_get(struct payments *p, const char *op_id, struct pay_hold *out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    err = hold_read(tx, op_id, false, out);
    sql_rollback(tx);
    return err;
}

/* A hold that has left HELD, met again by a request: its own retry, or someone else's. */
static enum cf_err hold_met_again(const struct pay_hold *h, const struct pay_hold_resolve *r)
{
    if (h->resolve_idem[0] == '\0' || strcmp(h->resolve_idem, r->idem) != 0)
        return CF_ERR_CONFLICT;
    return hash_equal(h->resolve_hash, r->request_hash, HASH_BYTES) ? CF_OK
                                                                    : CF_ERR_IDEM_KEY_REUSED;
}

enum cf_err payments_hold_begin(struct payments *p, const char *op_id,
                                const struct pay_hold_resolve *r, int64_t now_us,
                                struct pay_hold *out)
{
    CF_ASSERT(r->to == PAY_HOLD_CAPTURING || r->to == PAY_HOLD_RELEASING);
    CF_ASSERT(r->idem != NULL && r->idem[0] != '\0' && r->request_hash != NULL);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct pay_hold h;
    err = hold_read(tx, op_id, true, &h);
    if (err == CF_OK && h.state != PAY_HOLD_HELD) {
        err = hold_met_again(&h, r);
        sql_rollback(tx);
        if (err == CF_OK)
            *out = h;
        return err;
    }
    CF_ASSERT(err != CF_OK || r->to == PAY_HOLD_RELEASING ||
              (r->captured_minor >= 1 && r->captured_minor <= h.held_minor && r->fee_minor >= 0 &&
               r->fee_minor <= r->captured_minor));
    struct sql_value v[] = {SQL_I(r->to),
                            SQL_I(r->captured_minor),
                            SQL_I(r->fee_minor),
                            SQL_T(r->idem),
                            SQL_B(r->request_hash, HASH_BYTES),
                            SQL_I(now_us),
                            SQL_T(op_id),
                            SQL_I(PAY_HOLD_HELD)};
    int64_t changed = 0;
    if (err == CF_OK)
        err = sql_exec(tx,
                       "UPDATE pay_holds SET state = $1, captured_minor = $2, fee_minor = $3, "
                       "resolve_idem = $4, resolve_hash = $5, updated_at_us = $6 "
                       "WHERE op_id = $7 AND state = $8",
                       v, 8, &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_CONFLICT;
    if (err == CF_OK)
        err = hold_read(tx, op_id, false, &h);
    if ((err = pay_tx_end(tx, err)) == CF_OK)
        *out = h;
    return err;
}

/* The operation's side of a hold's end (nothing for a return to HELD). */
static enum cf_err hold_op_end(struct sqltx *tx, const struct pay_hold *h,
                               const struct pay_hold_outcome *o, int64_t now_us)
{
    if (o->to == PAY_HOLD_HELD)
        return CF_OK;
    int64_t changed = 0;
    enum cf_err err;
    if (o->to == PAY_HOLD_CAPTURED) {
        struct sql_value v[] = {SQL_I(PAY_STATUS_COMPLETED),
                                SQL_I(h->captured_minor),
                                SQL_I(o->fee_minor),
                                SQL_I(o->ledger_seq),
                                SQL_I(now_us),
                                SQL_T(h->op_id),
                                SQL_I(PAY_STATUS_PENDING)};
        err = sql_exec(tx,
                       "UPDATE pay_ops SET status = $1, amount_minor = $2, credit_minor = $2, "
                       "fee_minor = $3, ledger_seq = $4, updated_at_us = $5 "
                       "WHERE id = $6 AND status = $7",
                       v, 7, &changed);
    } else {
        enum cf_err why =
            o->to == PAY_HOLD_RELEASED ? CF_ERR_ALREADY_VOIDED : CF_ERR_TRANSFER_EXPIRED;
        struct sql_value v[] = {SQL_I(PAY_STATUS_FAILED), SQL_T(cf_err_code(why)), SQL_I(now_us),
                                SQL_T(h->op_id), SQL_I(PAY_STATUS_PENDING)};
        err = sql_exec(tx,
                       "UPDATE pay_ops SET status = $1, error = $2, updated_at_us = $3 "
                       "WHERE id = $4 AND status = $5",
                       v, 5, &changed);
    }
    if (err == CF_OK && changed != 1)
        err = CF_ERR_CONFLICT;
    return err;
}

enum cf_err payments_hold_end(struct payments *p, const char *op_id, uint32_t from_mask,
                              const struct pay_hold_outcome *o, int64_t now_us)
{
    CF_ASSERT(o->to == PAY_HOLD_HELD || o->to == PAY_HOLD_CAPTURED || o->to == PAY_HOLD_RELEASED ||
              o->to == PAY_HOLD_EXPIRED);
    CF_ASSERT(o->to != PAY_HOLD_CAPTURED || o->ledger_seq > 0);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(p->db, &tx);
    if (err != CF_OK)
        return err;
    struct pay_hold h;
    err = hold_read(tx, op_id, true, &h);
    if (err == CF_OK && (from_mask & (1u << h.state)) == 0)
        err = CF_ERR_CONFLICT;
    CF_ASSERT(
        err != CF_OK || o->to != PAY_HOLD_CAPTURED ||
        (h.state == PAY_HOLD_CAPTURING && o->fee_minor >= 0 && o->fee_minor <= h.captured_minor));
    bool back = o->to == PAY_HOLD_HELD; /* a refused capture or release: forget its request */
    struct sql_value v[] = {SQL_I(o->to),
                            SQL_I(back ? 0 : h.captured_minor),
                            SQL_I(o->to == PAY_HOLD_CAPTURED ? o->fee_minor
                                  : back                     ? 0
                                                             : h.fee_minor),
                            SQL_I(o->fee_seq),
                            SQL_T(back ? "" : h.resolve_idem),
                            SQL_I(now_us),
                            SQL_T(op_id),
                            SQL_I(h.state)};
    int64_t changed = 0;
    if (err == CF_OK)
        err = sql_exec(tx,
                       "UPDATE pay_holds SET state = $1, captured_minor = $2, fee_minor = $3, "
                       "fee_seq = $4, resolve_idem = $5, updated_at_us = $6 "
                       "WHERE op_id = $7 AND state = $8",
                       v, 8, &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_CONFLICT;
    if (err == CF_OK)
        err = hold_op_end(tx, &h, o, now_us);
    return pay_tx_end(tx, err);
}
