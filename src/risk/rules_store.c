/*
 * rules_store.c - the monitoring rules' versions, the set version and the current set; see
 * rules_store.h.
 *
 * Three tables: risk_rule_versions (append-only; every version of every rule, with the set
 * version it made and its idempotency key), risk_rule_heads (one row per id ever created: its
 * latest version and whether that version is a delete, so the current set is one join), and
 * risk_rules_meta (one row: the set version). A change first bumps the set version (an UPDATE,
 * which takes that row's lock on PostgreSQL and the write lock on SQLite), so changes are
 * serial; everything it reads after that is what the previous change committed. A replay or a
 * refusal rolls the bump back with the rest.
 */
#include "risk/rules_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "risk/internal.h"
#include "store/sql/sql.h"

struct risk_rules_store {
    struct sqldb *db;
};

/* Schema ------------------------------------------------------------------------------------- */

/* %1$s: the blob type; %2$s: the row key (an auto-incrementing integer primary key). */
#define RULES_SCHEMA                                                                               \
    "CREATE TABLE risk_rule_versions (row %2$s, rule_id TEXT NOT NULL, version INTEGER NOT NULL, " \
    "condition TEXT NOT NULL, action INTEGER NOT NULL, reason TEXT NOT NULL, "                     \
    "description TEXT NOT NULL, enabled INTEGER NOT NULL, change INTEGER NOT NULL, "               \
    "changed_by TEXT NOT NULL, changed_at_us BIGINT NOT NULL, set_version BIGINT NOT NULL "        \
    "UNIQUE, "                                                                                     \
    "idem TEXT UNIQUE, request_hash %1$s, UNIQUE (rule_id, version));"                             \
    "CREATE TABLE risk_rule_heads (rule_id TEXT PRIMARY KEY, version INTEGER NOT NULL, "           \
    "deleted INTEGER NOT NULL);"                                                                   \
    "CREATE TABLE risk_rules_meta (k INTEGER PRIMARY KEY, set_version BIGINT NOT NULL);"           \
    "INSERT INTO risk_rules_meta (k, set_version) VALUES (1, 0);"

enum cf_err risk_rules_store_open(struct sqldb *db, struct risk_rules_store **out)
{
    CF_ASSERT(db != NULL && out != NULL);
    enum cf_err err = risk_schema_migrate(db, "risk_rules", RULES_SCHEMA);
    if (err != CF_OK)
        return err;
    struct risk_rules_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CF_ERR_NOMEM;
    s->db = db;
    *out = s;
    return CF_OK;
}

void risk_rules_store_close(struct risk_rules_store *s) { free(s); }

/* Names and checks --------------------------------------------------------------------------- */

const char *risk_rules_change_name(uint8_t change)
{
    static const char *const names[] = {"unknown", "create", "update",
                                        "disable", "enable", "delete"};
    return change < sizeof(names) / sizeof(names[0]) ? names[change] : "unknown";
}

void risk_rules_version_def(const struct risk_rules_version *v, struct rules_rule_def *out)
{
    CF_ASSERT(v != NULL && out != NULL);
    *out = (struct rules_rule_def){.id = v->id,
                                   .id_len = strlen(v->id),
                                   .condition = v->condition,
                                   .condition_len = strlen(v->condition),
                                   .action = (enum rules_action)v->action,
                                   .reason = v->reason,
                                   .reason_len = strlen(v->reason),
                                   .description = v->description,
                                   .description_len = strlen(v->description),
                                   .enabled = v->enabled};
}

/* An id as rules.h defines it, [a-z0-9_]{1,RULES_ID_BYTES_MAX}. */
static bool id_valid(const char *id, size_t len)
{
    return rules_code_valid(id, len, RULES_ID_BYTES_MAX);
}

static void error_set(struct rules_error *e, const char *field, const char *message)
{
    if (e != NULL)
        *e = (struct rules_error){.field = field, .column = 0, .message = message};
}

/* Rows --------------------------------------------------------------------------------------- */

#define V_COLS                                                                                     \
    "rule_id, version, condition, action, reason, description, enabled, change, changed_by, "      \
    "changed_at_us, set_version, idem, request_hash"
#define V_COLS_V                                                                                   \
    "v.rule_id, v.version, v.condition, v.action, v.reason, v.description, v.enabled, v.change, "  \
    "v.changed_by, v.changed_at_us, v.set_version, v.idem, v.request_hash"

/* A version as read, with what idempotency needs. */
struct version_read {
    struct risk_rules_version v;
    bool keyed;
    uint8_t request_hash[HASH_BYTES];
};

static enum cf_err version_from_row(const struct sql_rows *r, size_t i, struct version_read *out)
{
    struct risk_rules_version *v = &out->v;
    size_t c = 0, hash_len = 0;
    memset(out, 0, sizeof(*out));
    risk_text_copy(v->id, sizeof(v->id), sql_row_text(r, i, c++));
    int64_t version = sql_row_int(r, i, c++);
    risk_text_copy(v->condition, sizeof(v->condition), sql_row_text(r, i, c++));
    int64_t action = sql_row_int(r, i, c++);
    risk_text_copy(v->reason, sizeof(v->reason), sql_row_text(r, i, c++));
    risk_text_copy(v->description, sizeof(v->description), sql_row_text(r, i, c++));
    v->enabled = sql_row_int(r, i, c++) != 0;
    int64_t change = sql_row_int(r, i, c++);
    risk_text_copy(v->changed_by, sizeof(v->changed_by), sql_row_text(r, i, c++));
    v->changed_at_us = sql_row_int(r, i, c++);
    int64_t set_version = sql_row_int(r, i, c++);
    out->keyed = !sql_row_null(r, i, c++);
    const uint8_t *h = sql_row_blob(r, i, c++, &hash_len);
    if (h != NULL && hash_len == HASH_BYTES)
        memcpy(out->request_hash, h, HASH_BYTES);
    CF_ASSERT(c == sql_rows_cols(r));
    if (version < 1 || version > UINT32_MAX || action < 0 || action >= RULES_ACTIONS_N ||
        change < RISK_RULES_CHANGE_CREATE || change > RISK_RULES_CHANGE_DELETE || set_version < 1)
        return CF_ERR_CORRUPT;
    v->version = (uint32_t)version;
    v->action = (uint8_t)action;
    v->change = (uint8_t)change;
    v->set_version = (uint64_t)set_version;
    return CF_OK;
}

/* Runs a query of versions and copies up to max of them into out (*n_out of them). */
static enum cf_err versions_query(struct sqltx *tx, const char *sql, const struct sql_value *p,
                                  size_t p_n, struct risk_rules_version *out, size_t max,
                                  size_t *n_out, struct version_read *first_out)
{
    struct version_read *one = calloc(1, sizeof(*one));
    if (one == NULL)
        return CF_ERR_NOMEM;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, sql, p, p_n, &r);
    size_t rows = err == CF_OK ? sql_rows_n(r) : 0, n = 0;
    for (size_t i = 0; i < rows && err == CF_OK; i++) {
        if ((err = version_from_row(r, i, one)) != CF_OK)
            break;
        if (i == 0 && first_out != NULL)
            *first_out = *one;
        if (n < max)
            out[n] = one->v;
        n++;
    }
    sql_rows_free(r);
    free(one);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

/* versions_query in a read-only transaction of its own. */
static enum cf_err versions_read(struct risk_rules_store *s, const char *sql,
                                 const struct sql_value *p, size_t p_n,
                                 struct risk_rules_version *out, size_t max, size_t *n_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(s->db, &tx);
    if (err != CF_OK)
        return err;
    err = versions_query(tx, sql, p, p_n, out, max, n_out, NULL);
    sql_rollback(tx);
    return err;
}

/* id[0..len) as a NUL-terminated key, when it is a valid id. */
static bool id_key(const char *id, size_t len, char key[RULES_ID_BYTES_MAX + 1])
{
    if (!id_valid(id, len))
        return false;
    memcpy(key, id, len);
    key[len] = '\0';
    return true;
}

/* The version idem's key made, checked against this request's hash: CF_OK (a replay),
 * CF_ERR_NOT_FOUND (a new key) or CF_ERR_IDEM_KEY_REUSED. */
static enum cf_err version_by_idem(struct sqltx *tx, const struct risk_rules_idem *idem,
                                   struct version_read *out)
{
    struct sql_value p[] = {SQL_T(idem->key)};
    size_t n = 0;
    enum cf_err err = versions_query(
        tx, "SELECT " V_COLS " FROM risk_rule_versions WHERE idem = $1", p, 1, NULL, 0, &n, out);
    if (err != CF_OK)
        return err;
    if (n == 0)
        return CF_ERR_NOT_FOUND;
    return hash_equal(out->request_hash, idem->request_hash, HASH_BYTES) ? CF_OK
                                                                         : CF_ERR_IDEM_KEY_REUSED;
}

/* Changing ----------------------------------------------------------------------------------- */

/* What one change works with. */
struct change {
    enum risk_rules_change kind;
    const char *id; /* NUL-terminated copy in `next` */
    const struct risk_rules_idem *idem;
    int64_t base_version;           /* RISK_RULES_BASE_NONE, or the version it was made from */
    struct risk_rules_version next; /* the version to write (texts set for create/update) */
    struct version_read stored;     /* a replay's version, or the head version */
    struct rules_error error;
    bool replay;
};

/* Bumps the set version (the lock every change takes first) and reads the new value. */
static enum cf_err set_version_bump(struct sqltx *tx, uint64_t *out)
{
    int64_t changed = 0;
    enum cf_err err =
        sql_exec(tx, "UPDATE risk_rules_meta SET set_version = set_version + 1 WHERE k = 1", NULL,
                 0, &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_CORRUPT;
    struct sql_rows *r = NULL;
    if (err == CF_OK)
        err = sql_query(tx, "SELECT set_version FROM risk_rules_meta WHERE k = 1", NULL, 0, &r);
    if (err == CF_OK && (sql_rows_n(r) != 1 || sql_row_int(r, 0, 0) < 1))
        err = CF_ERR_CORRUPT;
    if (err == CF_OK)
        *out = (uint64_t)sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return err;
}

/* The id's head: its latest version number (0 when never created) and whether it is a delete. */
static enum cf_err head_read(struct sqltx *tx, const char *id, uint32_t *version, bool *deleted)
{
    struct sql_value p[] = {SQL_T(id)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        sql_query(tx, "SELECT version, deleted FROM risk_rule_heads WHERE rule_id = $1", p, 1, &r);
    *version = 0;
    *deleted = true;
    if (err == CF_OK && sql_rows_n(r) == 1) {
        int64_t v = sql_row_int(r, 0, 0);
        if (v < 1 || v > UINT32_MAX)
            err = CF_ERR_CORRUPT;
        else {
            *version = (uint32_t)v;
            *deleted = sql_row_int(r, 0, 1) != 0;
        }
    }
    sql_rows_free(r);
    return err;
}

static enum cf_err live_count(struct sqltx *tx, int64_t *n)
{
    struct sql_rows *r = NULL;
    enum cf_err err =
        sql_query(tx, "SELECT COUNT(*) FROM risk_rule_heads WHERE deleted = 0", NULL, 0, &r);
    if (err == CF_OK)
        *n = sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return err;
}

/* The version `version` of id into c->stored. */
static enum cf_err version_read_one(struct sqltx *tx, const char *id, uint32_t version,
                                    struct version_read *out)
{
    struct sql_value p[] = {SQL_T(id), SQL_I(version)};
    size_t n = 0;
    enum cf_err err = versions_query(
        tx, "SELECT " V_COLS " FROM risk_rule_versions WHERE rule_id = $1 AND version = $2", p, 2,
        NULL, 0, &n, out);
    return err == CF_OK && n != 1 ? CF_ERR_CORRUPT : err;
}

/* Whether two versions say the same thing but for their enabled flag. */
static bool texts_equal(const struct risk_rules_version *a, const struct risk_rules_version *b)
{
    return strcmp(a->condition, b->condition) == 0 && a->action == b->action &&
           strcmp(a->reason, b->reason) == 0 && strcmp(a->description, b->description) == 0;
}

/* Decides what the change writes, given the id's head: fills c->next's version and, for
 * disable/enable/delete, its texts from the head version. */
static enum cf_err change_plan(struct sqltx *tx, struct change *c, uint32_t head, bool deleted)
{
    bool live = head > 0 && !deleted;
    if (c->kind == RISK_RULES_CHANGE_CREATE) {
        int64_t live_n = 0;
        enum cf_err err = live ? CF_ERR_CONFLICT : live_count(tx, &live_n);
        if (err == CF_ERR_CONFLICT)
            error_set(&c->error, "id", "exists");
        if (err == CF_OK && live_n >= RULES_SET_MAX) {
            error_set(&c->error, "id", "at most 200 live rules");
            err = CF_ERR_CONFLICT;
        }
        c->next.version = head + 1;
        return err;
    }
    if (!live)
        return CF_ERR_NOT_FOUND;
    c->next.version = head + 1;
    enum cf_err err = version_read_one(tx, c->id, head, &c->stored);
    if (err != CF_OK)
        return err;
    if (c->kind == RISK_RULES_CHANGE_UPDATE) {
        if (texts_equal(&c->stored.v, &c->next) && c->stored.v.enabled != c->next.enabled)
            c->next.change = c->next.enabled ? RISK_RULES_CHANGE_ENABLE : RISK_RULES_CHANGE_DISABLE;
        return CF_OK;
    }
    struct risk_rules_version keep = c->next;
    c->next = c->stored.v;
    c->next.version = keep.version;
    c->next.change = keep.change;
    risk_text_copy(c->next.changed_by, sizeof(c->next.changed_by), keep.changed_by);
    c->next.changed_at_us = keep.changed_at_us;
    c->next.set_version = keep.set_version;
    if (c->kind == RISK_RULES_CHANGE_DISABLE || c->kind == RISK_RULES_CHANGE_ENABLE) {
        bool enable = c->kind == RISK_RULES_CHANGE_ENABLE;
        if (c->next.enabled == enable) {
            error_set(&c->error, "enabled", enable ? "already enabled" : "already disabled");
            return CF_ERR_CONFLICT;
        }
        c->next.enabled = enable;
    }
    return CF_OK;
}

/* Appends c->next and moves the head to it. */
static enum cf_err change_write(struct sqltx *tx, struct change *c)
{
    const struct risk_rules_version *v = &c->next;
    struct sql_value p[] = {
        SQL_T(v->id),
        SQL_I(v->version),
        SQL_T(v->condition),
        SQL_I(v->action),
        SQL_T(v->reason),
        SQL_T(v->description),
        SQL_I(v->enabled ? 1 : 0),
        SQL_I(v->change),
        SQL_T(v->changed_by),
        SQL_I(v->changed_at_us),
        SQL_I(v->set_version),
        c->idem != NULL ? SQL_T(c->idem->key) : SQL_NUL,
        c->idem != NULL ? SQL_B(c->idem->request_hash, HASH_BYTES) : SQL_NUL,
    };
    enum cf_err err = sql_exec(tx,
                               "INSERT INTO risk_rule_versions (" V_COLS ") VALUES ($1, $2, $3, "
                               "$4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                               p, 13, NULL);
    struct sql_value h[] = {SQL_T(v->id), SQL_I(v->version),
                            SQL_I(v->change == RISK_RULES_CHANGE_DELETE ? 1 : 0)};
    int64_t changed = 0;
    if (err == CF_OK)
        err =
            sql_exec(tx, "UPDATE risk_rule_heads SET version = $2, deleted = $3 WHERE rule_id = $1",
                     h, 3, &changed);
    if (err == CF_OK && changed == 0)
        err = sql_exec(
            tx, "INSERT INTO risk_rule_heads (rule_id, version, deleted) VALUES ($1, $2, $3)", h, 3,
            NULL);
    return err;
}

/* One change attempt in one transaction. */
static enum cf_err change_tx(struct risk_rules_store *s, struct change *c)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(s->db, &tx);
    if (err != CF_OK)
        return err;
    err = set_version_bump(tx, &c->next.set_version);
    if (err == CF_OK && c->idem != NULL) {
        err = version_by_idem(tx, c->idem, &c->stored);
        if (err != CF_ERR_NOT_FOUND) { /* a replay, or a refusal of the key */
            c->replay = err == CF_OK;
            sql_rollback(tx);
            return err;
        }
        err = CF_OK;
    }
    uint32_t head = 0;
    bool deleted = true;
    if (err == CF_OK)
        err = head_read(tx, c->id, &head, &deleted);
    if (err == CF_OK && c->base_version != RISK_RULES_BASE_NONE && c->base_version != head) {
        error_set(&c->error, "base_version", "the rule changed since that version; read it again");
        err = CF_ERR_CONFLICT; /* under the set version's lock: nothing can come in between */
    }
    if (err == CF_OK)
        err = change_plan(tx, c, head, deleted);
    if (err == CF_OK)
        err = change_write(tx, c);
    return risk_tx_end(tx, err);
}

/* Checks the arguments and fills the texts of c->next (compiling create and update). */
static enum cf_err change_prepare(const struct rules_rule_def *def, enum risk_rules_change kind,
                                  const char *by, int64_t now_us, struct change *c)
{
    struct risk_rules_version *v = &c->next;
    if (!risk_token_valid(by, RISK_RULES_BY_BYTES_MAX, false) ||
        (c->idem != NULL && !risk_token_valid(c->idem->key, RISK_RULES_IDEM_BYTES_MAX, false))) {
        error_set(&c->error,
                  risk_token_valid(by, RISK_RULES_BY_BYTES_MAX, false) ? "idempotency_key" : "by",
                  "malformed");
        return CF_ERR_INVALID_FIELD;
    }
    if (kind == RISK_RULES_CHANGE_CREATE || kind == RISK_RULES_CHANGE_UPDATE) {
        struct rules_compiled_rule *rule = malloc(sizeof(*rule));
        if (rule == NULL)
            return CF_ERR_NOMEM;
        enum cf_err err = rules_rule_compile(def, rule, &c->error);
        if (err == CF_OK) {
            risk_text_copy(v->id, sizeof(v->id), rule->id);
            risk_text_copy(v->condition, sizeof(v->condition), rule->condition);
            v->action = (uint8_t)rule->action;
            risk_text_copy(v->reason, sizeof(v->reason), rule->reason);
            risk_text_copy(v->description, sizeof(v->description), rule->description);
            v->enabled = rule->enabled;
        }
        free(rule);
        if (err != CF_OK)
            return err;
    } else {
        if (!id_valid(def->id, def->id_len)) {
            error_set(&c->error, "id", "must be 1 to 40 characters of a-z, 0-9 and _");
            return CF_ERR_INVALID_FIELD;
        }
        memcpy(v->id, def->id, def->id_len);
        v->id[def->id_len] = '\0';
    }
    v->change = (uint8_t)kind;
    risk_text_copy(v->changed_by, sizeof(v->changed_by), by);
    v->changed_at_us = now_us;
    c->id = v->id;
    return CF_OK;
}

enum cf_err risk_rules_store_change(struct risk_rules_store *s, const struct rules_rule_def *def,
                                    enum risk_rules_change kind, const char *by,
                                    const struct risk_rules_idem *idem, int64_t now_us,
                                    struct risk_rules_version *out, uint64_t *set_version_out,
                                    bool *replay_out, struct rules_error *error_out)
{
    return risk_rules_store_change_based(s, def, kind, RISK_RULES_BASE_NONE, by, idem, now_us, out,
                                         set_version_out, replay_out, error_out);
}

enum cf_err risk_rules_store_change_based(struct risk_rules_store *s,
                                          const struct rules_rule_def *def,
                                          enum risk_rules_change kind, int64_t base_version,
                                          const char *by, const struct risk_rules_idem *idem,
                                          int64_t now_us, struct risk_rules_version *out,
                                          uint64_t *set_version_out, bool *replay_out,
                                          struct rules_error *error_out)
{
    CF_ASSERT(s != NULL && def != NULL && now_us >= 0);
    CF_ASSERT(kind >= RISK_RULES_CHANGE_CREATE && kind <= RISK_RULES_CHANGE_DELETE);
    CF_ASSERT(base_version == RISK_RULES_BASE_NONE ||
              (base_version >= 0 && base_version <= UINT32_MAX));
    struct change *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CF_ERR_NOMEM;
    c->kind = kind;
    c->idem = idem;
    c->base_version = base_version;
    enum cf_err err = change_prepare(def, kind, by, now_us, c);
    if (err == CF_OK)
        err = change_tx(s, c);
    if (err == CF_ERR_STORAGE_CONFLICT) /* a race on a key or a head: once more, serialized */
        err = change_tx(s, c);
    if (err == CF_OK) {
        const struct risk_rules_version *made = c->replay ? &c->stored.v : &c->next;
        CF_ASSERT(made->version >= 1 && made->set_version >= 1);
        if (out != NULL)
            *out = *made;
        if (set_version_out != NULL)
            *set_version_out = made->set_version;
        if (replay_out != NULL)
            *replay_out = c->replay;
    } else if (error_out != NULL && c->error.field != NULL &&
               (err == CF_ERR_INVALID_FIELD || err == CF_ERR_CONFLICT)) {
        *error_out = c->error;
    }
    free(c);
    return err;
}

/* Reads -------------------------------------------------------------------------------------- */

static int version_by_id(const void *a, const void *b)
{
    return strcmp(((const struct risk_rules_version *)a)->id,
                  ((const struct risk_rules_version *)b)->id);
}

enum cf_err risk_rules_store_current(struct risk_rules_store *s, struct risk_rules_version *out,
                                     size_t max, size_t *n_out, uint64_t *set_version_out)
{
    CF_ASSERT(s != NULL && (out != NULL || max == 0) && n_out != NULL && set_version_out != NULL);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(s->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_rows *r = NULL;
    uint64_t set_version = 0;
    /* the row lock waits for a change in progress and holds off the next one, so the rows read
     * below are exactly those of this set version (on PostgreSQL; SQLite is serial anyway) */
    err = sql_query(tx, "SELECT set_version FROM risk_rules_meta WHERE k = 1 FOR UPDATE", NULL, 0,
                    &r);
    if (err == CF_OK && sql_rows_n(r) != 1)
        err = CF_ERR_CORRUPT;
    if (err == CF_OK)
        set_version = (uint64_t)sql_row_int(r, 0, 0);
    sql_rows_free(r);
    size_t n = 0;
    if (err == CF_OK)
        err = versions_query(tx,
                             "SELECT " V_COLS_V " FROM risk_rule_heads h JOIN risk_rule_versions v "
                             "ON v.rule_id = h.rule_id AND v.version = h.version "
                             "WHERE h.deleted = 0",
                             NULL, 0, out, max, &n, NULL);
    sql_rollback(tx);
    if (err == CF_OK && n > RULES_SET_MAX)
        err = CF_ERR_CORRUPT;
    if (err == CF_OK && n > max)
        err = CF_ERR_RANGE_TOO_LARGE;
    for (size_t i = 0; i < n && err == CF_OK; i++) {
        if (out[i].set_version > set_version || out[i].change == RISK_RULES_CHANGE_DELETE)
            err = CF_ERR_CORRUPT; /* a head names a delete, or a change the counter missed */
    }
    if (err != CF_OK)
        return err;
    qsort(out, n, sizeof(*out), version_by_id);
    CF_ASSERT(n <= max && n <= RULES_SET_MAX);
    *n_out = n;
    *set_version_out = set_version;
    return CF_OK;
}

enum cf_err risk_rules_store_get(struct risk_rules_store *s, const char *id, size_t len,
                                 struct risk_rules_version *out)
{
    CF_ASSERT(s != NULL && out != NULL);
    char key[RULES_ID_BYTES_MAX + 1];
    if (!id_key(id, len, key))
        return CF_ERR_NOT_FOUND;
    struct sql_value p[] = {SQL_T(key)};
    struct risk_rules_version got;
    size_t n = 0;
    enum cf_err err = versions_read(s,
                                    "SELECT " V_COLS_V " FROM risk_rule_heads h JOIN "
                                    "risk_rule_versions v ON v.rule_id = h.rule_id AND "
                                    "v.version = h.version WHERE h.rule_id = $1 AND h.deleted = 0",
                                    p, 1, &got, 1, &n);
    if (err == CF_OK && n == 0)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK) {
        CF_ASSERT(n == 1 && strcmp(got.id, key) == 0);
        *out = got;
    }
    return err;
}

enum cf_err risk_rules_store_history(struct risk_rules_store *s, const char *id, size_t len,
                                     uint32_t before_version, struct risk_rules_version *out,
                                     size_t max, size_t *n_out)
{
    CF_ASSERT(s != NULL && max <= RISK_RULES_HISTORY_MAX && (out != NULL || max == 0));
    CF_ASSERT(n_out != NULL);
    char key[RULES_ID_BYTES_MAX + 1];
    if (!id_key(id, len, key)) {
        *n_out = 0;
        return CF_OK;
    }
    int64_t below = before_version > 0 ? (int64_t)before_version : INT64_MAX;
    struct sql_value p[] = {SQL_T(key), SQL_I(below), SQL_I(max)};
    size_t n = 0;
    enum cf_err err = versions_read(s,
                                    "SELECT " V_COLS " FROM risk_rule_versions WHERE rule_id = $1 "
                                    "AND version < $2 ORDER BY version DESC LIMIT $3",
                                    p, 3, out, max, &n);
    if (err == CF_OK) {
        CF_ASSERT(n <= max);
        *n_out = n;
    }
    return err;
}

enum cf_err risk_rules_store_set_build(struct risk_rules_store *s, struct rules_set **out,
                                       char *bad_id_out)
{
    CF_ASSERT(s != NULL && out != NULL);
    struct risk_rules_version *v = calloc(RULES_SET_MAX, sizeof(*v));
    struct rules_compiled_rule *rules = calloc(RULES_SET_MAX, sizeof(*rules));
    size_t n = 0;
    uint64_t set_version = 0;
    enum cf_err err = v != NULL && rules != NULL ? CF_OK : CF_ERR_NOMEM;
    if (err == CF_OK)
        err = risk_rules_store_current(s, v, RULES_SET_MAX, &n, &set_version);
    for (size_t i = 0; i < n && err == CF_OK; i++) {
        struct rules_rule_def def;
        struct rules_error e;
        risk_rules_version_def(&v[i], &def);
        if (rules_rule_compile(&def, &rules[i], &e) != CF_OK) {
            err = CF_ERR_CORRUPT;
            if (bad_id_out != NULL)
                risk_text_copy(bad_id_out, RULES_ID_BYTES_MAX + 1, v[i].id);
        }
    }
    struct rules_set *set = NULL;
    if (err == CF_OK)
        err = rules_set_create(set_version, rules, n, &set);
    if (err == CF_ERR_INVALID_FIELD) /* two live rules with one id: the heads' key forbids it */
        err = CF_ERR_CORRUPT;
    if (err == CF_OK) {
        CF_ASSERT(rules_set_version(set) == set_version && rules_set_rules_n(set) == n);
        *out = set;
    }
    free(rules);
    free(v);
    return err;
}

enum cf_err risk_rules_store_set_version(struct risk_rules_store *s, uint64_t *out)
{
    CF_ASSERT(s != NULL && out != NULL);
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(s->db, &tx);
    if (err != CF_OK)
        return err;
    err = sql_query(tx, "SELECT set_version FROM risk_rules_meta WHERE k = 1", NULL, 0, &r);
    sql_rollback(tx);
    if (err == CF_OK && (sql_rows_n(r) != 1 || sql_row_int(r, 0, 0) < 0))
        err = CF_ERR_CORRUPT;
    if (err == CF_OK)
        *out = (uint64_t)sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return err;
}

enum cf_err risk_rules_store_version_at(struct risk_rules_store *s, const char *id, size_t len,
                                        uint64_t set_version, struct risk_rules_version *out)
{
    CF_ASSERT(s != NULL && out != NULL);
    char key[RULES_ID_BYTES_MAX + 1];
    if (!id_key(id, len, key) || set_version == 0 || set_version > (uint64_t)INT64_MAX)
        return CF_ERR_NOT_FOUND;
    struct sql_value p[] = {SQL_T(key), SQL_I(set_version)};
    struct risk_rules_version got;
    size_t n = 0;
    enum cf_err err = versions_read(s,
                                    "SELECT " V_COLS " FROM risk_rule_versions WHERE rule_id = $1 "
                                    "AND set_version <= $2 ORDER BY version DESC LIMIT 1",
                                    p, 2, &got, 1, &n);
    if (err == CF_OK && (n == 0 || got.change == RISK_RULES_CHANGE_DELETE))
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK) {
        CF_ASSERT(got.set_version <= set_version);
        *out = got;
    }
    return err;
}
