/*
 * lists.c - screening at rest: the schema, loaded lists and their history, screenings, hits,
 * blocks and clears; see lists.h.
 *
 * Tables: risk_list_loads (append-only; `row` orders loads and is the sequence), risk_lists (one
 * row per name: the current bytes), risk_lists_lock (one row every load locks first, so loads run
 * one at a time and the RISK_LISTS_MAX check cannot race), risk_screenings (one row per subject:
 * the last screening and the block), risk_screen_hits (the last screening's hits), risk_screen_
 * cleared (references cleared per subject) and risk_screen_events (append-only blocks and
 * clears). A screening inserts the subject's row when missing and then locks it (SELECT ... FOR
 * UPDATE), so two screenings or a screening and a clear of one subject take turns.
 */
#include "risk/lists.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "crypto/vault.h"
#include "risk/internal.h"
#include "store/sql/sql.h"

/* The sealed reason's largest size. */
#define REASON_SEALED_BYTES_MAX (RISK_LISTS_REASON_BYTES_MAX + VAULT_OVERHEAD_BYTES)
/* "risk_lists:<event id>:reason" */
#define REASON_AAD_BYTES (RISK_LISTS_ID_BYTES_MAX + 32)
/* A version as text: 16 hex digits and a NUL. */
#define VERSION_TEXT_BYTES 17
/* The lists a screening ran against, as text: "name:version" joined by ','. */
#define LISTS_TEXT_BYTES (RISK_LISTS_MAX * (RISK_LISTS_NAME_BYTES_MAX + VERSION_TEXT_BYTES + 1))
/* Who records a block. */
#define BLOCK_BY "sanctions"

struct risk_lists {
    struct sqldb *db;
    risk_lists_vault_fn vault; /* the current master keys (they may be rotated while running) */
    void *vault_ctx;
};

/* Schema ------------------------------------------------------------------------------------- */

/* %1$s: the blob type; %2$s: the row key (an auto-incrementing integer primary key). */
#define LISTS_SCHEMA                                                                               \
    "CREATE TABLE risk_list_loads (row %2$s, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, "        \
    "kind INTEGER NOT NULL, version TEXT NOT NULL, entries BIGINT NOT NULL, "                      \
    "content_bytes BIGINT NOT NULL, alt_bytes BIGINT NOT NULL, changed INTEGER NOT NULL, "         \
    "by_user TEXT NOT NULL, at_us BIGINT NOT NULL, idem TEXT UNIQUE, request_hash %1$s);"          \
    "CREATE TABLE risk_lists (name TEXT PRIMARY KEY, load_row BIGINT NOT NULL, "                   \
    "content %1$s NOT NULL, alt_content %1$s);"                                                    \
    "CREATE TABLE risk_lists_lock (id INTEGER PRIMARY KEY, loads BIGINT NOT NULL);"                \
    "INSERT INTO risk_lists_lock (id, loads) VALUES (1, 0);"                                       \
    "CREATE TABLE risk_screenings (subject TEXT PRIMARY KEY, trigger_name TEXT NOT NULL, "         \
    "outcome INTEGER NOT NULL, at_us BIGINT NOT NULL, lists TEXT NOT NULL, "                       \
    "names_n INTEGER NOT NULL, unscreenable_n INTEGER NOT NULL, hits_total INTEGER NOT NULL, "     \
    "hits_n INTEGER NOT NULL, blocked INTEGER NOT NULL, block_event TEXT NOT NULL, "               \
    "block_case TEXT NOT NULL, block_since_us BIGINT NOT NULL);"                                   \
    "CREATE TABLE risk_screen_hits (subject TEXT NOT NULL, seq INTEGER NOT NULL, "                 \
    "list_name TEXT NOT NULL, entry_id TEXT NOT NULL, ref TEXT NOT NULL, "                         \
    "matched_name TEXT NOT NULL, score INTEGER NOT NULL, name_score INTEGER NOT NULL, "            \
    "dob INTEGER NOT NULL, country INTEGER NOT NULL, PRIMARY KEY (subject, seq));"                 \
    "CREATE TABLE risk_screen_cleared (subject TEXT NOT NULL, ref TEXT NOT NULL, "                 \
    "event_id TEXT NOT NULL, at_us BIGINT NOT NULL, PRIMARY KEY (subject, ref));"                  \
    "CREATE TABLE risk_screen_events (row %2$s, id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL, "  \
    "kind INTEGER NOT NULL, case_id TEXT NOT NULL, block_id TEXT NOT NULL, reason_sealed %1$s, "   \
    "by_user TEXT NOT NULL, at_us BIGINT NOT NULL, idem TEXT UNIQUE, request_hash %1$s);"          \
    "CREATE INDEX risk_screen_events_subject ON risk_screen_events(subject, row);"

enum cf_err risk_lists_open(struct sqldb *db, risk_lists_vault_fn vault, void *vault_ctx,
                            struct risk_lists **out)
{
    CF_ASSERT(db != NULL && vault != NULL && out != NULL);
    enum cf_err err = risk_schema_migrate(db, "risk_lists", LISTS_SCHEMA);
    if (err != CF_OK)
        return err;
    struct risk_lists *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CF_ERR_NOMEM;
    l->db = db;
    l->vault = vault;
    l->vault_ctx = vault_ctx;
    *out = l;
    return CF_OK;
}

void risk_lists_close(struct risk_lists *l) { free(l); }

/* Names -------------------------------------------------------------------------------------- */

static const char *const kind_names[] = {"", "sdn", "simple"};
static const char *const outcome_names[] = {"", "clear", "hit", "review"};
static const char *const event_names[] = {"", "block", "clear"};
static const char *const triggers[] = {"registration",        "kyc",      "payee",
                                       "merchant_onboarding", "rescreen", "manual"};

const char *risk_lists_kind_name(uint8_t kind)
{
    return risk_name_of(kind_names, RISK_NAMES_N(kind_names), kind);
}

uint8_t risk_lists_kind_parse(const char *name)
{
    uint8_t v = 0;
    return risk_name_parse(kind_names, RISK_NAMES_N(kind_names), 1, name, &v) == CF_OK ? v : 0;
}

const char *risk_lists_outcome_name(uint8_t outcome)
{
    return risk_name_of(outcome_names, RISK_NAMES_N(outcome_names), outcome);
}

const char *risk_lists_event_name(uint8_t kind)
{
    return risk_name_of(event_names, RISK_NAMES_N(event_names), kind);
}

/* Validation --------------------------------------------------------------------------------- */

bool risk_lists_name_valid(const char *text)
{
    size_t n = text != NULL ? strnlen(text, RISK_LISTS_NAME_BYTES_MAX) : 0;
    if (n == 0 || n >= RISK_LISTS_NAME_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

bool risk_lists_party_valid(const char *text) { return risk_party_valid(text); }

bool risk_lists_trigger_valid(const char *text)
{
    for (size_t i = 0; text != NULL && i < sizeof(triggers) / sizeof(triggers[0]); i++) {
        if (strcmp(text, triggers[i]) == 0)
            return true;
    }
    return false;
}

/* Whether text (NUL-terminated, 1..bytes_max - 1 bytes) is UTF-8 without control characters. */
static bool text_valid(const char *text, size_t bytes_max)
{
    return risk_text_check(text, bytes_max, SIZE_MAX, 0, NULL) == RISK_TEXT_OK;
}

bool risk_lists_reason_valid(const char *text, const char **detail_out)
{
    bool ok = risk_text_check(text, RISK_LISTS_REASON_BYTES_MAX, RISK_LISTS_REASON_CHARS_MAX,
                              RISK_TEXT_LINES, NULL) == RISK_TEXT_OK;
    if (!ok && detail_out != NULL)
        *detail_out = "reason: 1 to 500 characters of UTF-8 without control characters";
    return ok;
}

void risk_lists_hit_ref(const char *list, const char *entry_id, char out[RISK_LISTS_REF_BYTES_MAX])
{
    CF_ASSERT(risk_lists_name_valid(list) && entry_id != NULL);
    size_t n = strlen(entry_id);
    CF_ASSERT(n >= 1 && n <= WATCHLIST_ID_BYTES_MAX);
    bool plain = n <= RISK_LISTS_ENTRY_REF_CHARS_MAX;
    for (size_t i = 0; plain && i < n; i++) {
        char c = entry_id[i];
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-';
    }
    int w = 0;
    if (plain) {
        w = snprintf(out, RISK_LISTS_REF_BYTES_MAX, "%s-%s", list, entry_id);
    } else {
        uint8_t h[HASH_BYTES];
        char hex[HASH_HEX_BYTES];
        hash_sha256(entry_id, n, h);
        hash_hex(h, 8, hex);
        w = snprintf(out, RISK_LISTS_REF_BYTES_MAX, "%s-x%s", list, hex);
    }
    CF_ASSERT(w > 0 && w < RISK_LISTS_REF_BYTES_MAX);
}

/* Shared helpers ----------------------------------------------------------------------------- */

static void version_format(uint64_t v, char out[VERSION_TEXT_BYTES])
{
    int n = snprintf(out, VERSION_TEXT_BYTES, "%016" PRIx64, v);
    CF_ASSERT(n == VERSION_TEXT_BYTES - 1);
}

/* A stored version; false when it is not 16 hex digits. */
static bool version_parse(const char *text, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; text[i] != '\0'; i++) {
        char c = text[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0 || i >= VERSION_TEXT_BYTES - 1)
            return false;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return i == VERSION_TEXT_BYTES - 1;
}

static void reason_aad(const char *event_id, char aad[REASON_AAD_BYTES])
{
    int n = snprintf(aad, REASON_AAD_BYTES, "risk_lists:%s:reason", event_id);
    CF_ASSERT(n > 0 && n < REASON_AAD_BYTES);
}

static enum cf_err reason_seal(struct risk_lists *l, const char *event_id, const char *reason,
                               uint8_t out[REASON_SEALED_BYTES_MAX], size_t *len_out)
{
    char aad[REASON_AAD_BYTES];
    reason_aad(event_id, aad);
    return risk_seal(l->vault, l->vault_ctx, aad, reason, strlen(reason), out,
                     REASON_SEALED_BYTES_MAX, len_out);
}

static enum cf_err reason_open(struct risk_lists *l, const char *event_id, const uint8_t *ct,
                               size_t n, char out[RISK_LISTS_REASON_BYTES_MAX])
{
    char aad[REASON_AAD_BYTES];
    reason_aad(event_id, aad);
    return risk_unseal_text(l->vault, l->vault_ctx, aad, ct, n, out, RISK_LISTS_REASON_BYTES_MAX);
}

/* Runs a read-only query in its own transaction; *r_out to free with sql_rows_free. */
static enum cf_err read_query(struct risk_lists *l, const char *sql, const struct sql_value *v,
                              size_t n, struct sql_rows **r_out)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(l->db, &tx);
    if (err != CF_OK)
        return err;
    err = sql_query(tx, sql, v, n, r_out);
    sql_rollback(tx);
    return err;
}

/* Lists -------------------------------------------------------------------------------------- */

#define LOAD_COLS                                                                                  \
    "row, id, name, kind, version, entries, content_bytes, alt_bytes, changed, by_user, at_us"
#define LOAD_COLS_N 11

static enum cf_err load_from_row(const struct sql_rows *r, size_t i, struct risk_list *out)
{
    size_t c = 0;
    memset(out, 0, sizeof(*out));
    out->row = (uint64_t)sql_row_int(r, i, c++);
    risk_text_copy(out->load_id, sizeof(out->load_id), sql_row_text(r, i, c++));
    risk_text_copy(out->name, sizeof(out->name), sql_row_text(r, i, c++));
    out->kind = (uint8_t)sql_row_int(r, i, c++);
    bool version_ok = version_parse(sql_row_text(r, i, c++), &out->version);
    int64_t entries = sql_row_int(r, i, c++);
    int64_t content = sql_row_int(r, i, c++), alt = sql_row_int(r, i, c++);
    out->changed = sql_row_int(r, i, c++) != 0;
    risk_text_copy(out->loaded_by, sizeof(out->loaded_by), sql_row_text(r, i, c++));
    out->loaded_at_us = sql_row_int(r, i, c++);
    CF_ASSERT(c == LOAD_COLS_N);
    if (!version_ok || risk_lists_kind_name(out->kind)[0] == '\0' || entries < 0 ||
        entries > WATCHLIST_ENTRIES_MAX || content < 0 || alt < 0)
        return CF_ERR_CORRUPT;
    out->entries = (uint32_t)entries;
    out->content_bytes = (uint64_t)content;
    out->alt_bytes = (uint64_t)alt;
    return CF_OK;
}

/* The load idem's key made, in tx: CF_OK (*out), CF_ERR_NOT_FOUND or CF_ERR_IDEM_KEY_REUSED. */
static enum cf_err load_by_idem_tx(struct sqltx *tx, const struct risk_lists_idem *idem,
                                   const char *name, struct risk_list *out)
{
    struct sql_value v[] = {SQL_T(idem->key)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(
        tx, "SELECT " LOAD_COLS ", request_hash FROM risk_list_loads WHERE idem = $1", v, 1, &r);
    if (err != CF_OK)
        return err;
    struct risk_list got;
    err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : load_from_row(r, 0, &got);
    size_t hash_len = 0;
    const uint8_t *h = err == CF_OK ? sql_row_blob(r, 0, LOAD_COLS_N, &hash_len) : NULL;
    if (err == CF_OK &&
        (h == NULL || hash_len != HASH_BYTES || !hash_equal(h, idem->request_hash, HASH_BYTES) ||
         (name != NULL && strcmp(name, got.name) != 0)))
        err = CF_ERR_IDEM_KEY_REUSED;
    sql_rows_free(r);
    if (err == CF_OK)
        *out = got;
    return err;
}

enum cf_err risk_lists_load_by_idem(struct risk_lists *l, const struct risk_lists_idem *idem,
                                    const char *name, struct risk_list *out)
{
    CF_ASSERT(l != NULL && idem != NULL && out != NULL);
    if (!risk_token_valid(idem->key, RISK_LISTS_IDEM_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(l->db, &tx);
    if (err != CF_OK)
        return err;
    err = load_by_idem_tx(tx, idem, name, out);
    sql_rollback(tx);
    return err;
}

static enum cf_err load_check(const struct risk_list_load *in, const char *by,
                              const struct risk_lists_idem *idem)
{
    if (!risk_lists_name_valid(in->name) || risk_lists_kind_name(in->kind)[0] == '\0' ||
        in->content == NULL || in->content_len > WATCHLIST_FILE_BYTES_MAX ||
        in->alt_len > WATCHLIST_FILE_BYTES_MAX || (in->alt == NULL && in->alt_len > 0) ||
        (in->alt != NULL && in->kind != RISK_LISTS_SDN) || in->entries > WATCHLIST_ENTRIES_MAX ||
        !risk_token_valid(by, RISK_LISTS_PARTY_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    if (idem != NULL && !risk_token_valid(idem->key, RISK_LISTS_IDEM_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    return CF_OK;
}

/* The name's current version (*exists false when the name is new) and the count of lists. */
static enum cf_err load_prior(struct sqltx *tx, const char *name, bool *exists, uint64_t *version,
                              int64_t *lists_n)
{
    struct sql_value v[] = {SQL_T(name)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT d.version FROM risk_lists c JOIN risk_list_loads d "
                                "ON d.row = c.load_row WHERE c.name = $1",
                                v, 1, &r);
    if (err == CF_OK) {
        *exists = sql_rows_n(r) > 0;
        if (*exists && !version_parse(sql_row_text(r, 0, 0), version))
            err = CF_ERR_CORRUPT;
    }
    sql_rows_free(r);
    r = NULL;
    if (err == CF_OK)
        err = sql_query(tx, "SELECT COUNT(*) FROM risk_lists", NULL, 0, &r);
    if (err == CF_OK)
        *lists_n = sql_row_int(r, 0, 0);
    sql_rows_free(r);
    return err;
}

/* Appends the load (out: its id, name, kind, version, entries, sizes, by, time, changed set)
 * and reads back its row. */
static enum cf_err load_insert(struct sqltx *tx, struct risk_list *out,
                               const struct risk_lists_idem *idem)
{
    char version[VERSION_TEXT_BYTES];
    version_format(out->version, version);
    struct sql_value v[] = {
        SQL_T(out->load_id),
        SQL_T(out->name),
        SQL_I(out->kind),
        SQL_T(version),
        SQL_I(out->entries),
        SQL_I(out->content_bytes),
        SQL_I(out->alt_bytes),
        SQL_I(out->changed ? 1 : 0),
        SQL_T(out->loaded_by),
        SQL_I(out->loaded_at_us),
        idem != NULL ? SQL_T(idem->key) : SQL_NUL,
        idem != NULL ? SQL_B(idem->request_hash, HASH_BYTES) : SQL_NUL,
    };
    enum cf_err err = sql_exec(tx,
                               "INSERT INTO risk_list_loads (id, name, kind, version, entries, "
                               "content_bytes, alt_bytes, changed, by_user, at_us, idem, "
                               "request_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                               "$11, $12)",
                               v, 12, NULL);
    return risk_row_of(tx, err, "SELECT row FROM risk_list_loads WHERE id = $1", out->load_id,
                       &out->row);
}

/* Replaces (or adds) the name's current bytes, naming the load. */
static enum cf_err load_current(struct sqltx *tx, const struct risk_list_load *in, bool exists,
                                uint64_t row)
{
    struct sql_value v[] = {SQL_T(in->name), SQL_I(row), SQL_B(in->content, in->content_len),
                            in->alt != NULL ? SQL_B(in->alt, in->alt_len) : SQL_NUL};
    return sql_exec(tx,
                    exists ? "UPDATE risk_lists SET load_row = $2, content = $3, alt_content = $4 "
                             "WHERE name = $1"
                           : "INSERT INTO risk_lists (name, load_row, content, alt_content) "
                             "VALUES ($1, $2, $3, $4)",
                    v, 4, NULL);
}

static enum cf_err put_tx(struct risk_lists *l, const struct risk_list_load *in,
                          const struct risk_lists_idem *idem, struct risk_list *out, bool *replay)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(l->db, &tx);
    if (err != CF_OK)
        return err;
    /* loads take turns: the count below and the sequence cannot race */
    err = sql_query(tx, "SELECT loads FROM risk_lists_lock WHERE id = 1 FOR UPDATE", NULL, 0, &r);
    sql_rows_free(r);
    if (err == CF_OK && idem != NULL) {
        err = load_by_idem_tx(tx, idem, in->name, out);
        if (err != CF_ERR_NOT_FOUND) {
            *replay = err == CF_OK;
            sql_rollback(tx);
            return err;
        }
        err = CF_OK;
    }
    bool exists = false;
    uint64_t prior = 0;
    int64_t lists_n = 0;
    if (err == CF_OK)
        err = load_prior(tx, in->name, &exists, &prior, &lists_n);
    if (err == CF_OK && !exists && lists_n >= RISK_LISTS_MAX)
        err = CF_ERR_CONFLICT;
    out->changed = !exists || prior != in->version;
    if (err == CF_OK)
        err = load_insert(tx, out, idem);
    if (err == CF_OK)
        err = load_current(tx, in, exists, out->row);
    if (err == CF_OK)
        err = sql_exec(tx, "UPDATE risk_lists_lock SET loads = loads + 1 WHERE id = 1", NULL, 0,
                       NULL);
    return risk_tx_end(tx, err);
}

enum cf_err risk_lists_put(struct risk_lists *l, const struct risk_list_load *in, const char *by,
                           const struct risk_lists_idem *idem, int64_t now_us,
                           struct risk_list *out, bool *replay_out)
{
    CF_ASSERT(l != NULL && in != NULL && out != NULL);
    enum cf_err err = load_check(in, by, idem);
    if (err != CF_OK)
        return err;
    struct risk_list made;
    memset(&made, 0, sizeof(made));
    risk_id_new(RISK_LISTS_LOAD_PREFIX, made.load_id, RISK_LISTS_ID_BYTES_MAX);
    risk_text_copy(made.name, sizeof(made.name), in->name);
    made.kind = in->kind;
    made.version = in->version;
    made.entries = in->entries;
    made.content_bytes = in->content_len;
    made.alt_bytes = in->alt != NULL ? in->alt_len : 0;
    risk_text_copy(made.loaded_by, sizeof(made.loaded_by), by);
    made.loaded_at_us = now_us;
    bool replay = false;
    err = put_tx(l, in, idem, &made, &replay);
    if (err == CF_ERR_STORAGE_CONFLICT) /* two loads with one key: the second replays */
        err = put_tx(l, in, idem, &made, &replay);
    if (err == CF_OK) {
        CF_ASSERT(made.row > 0 && strcmp(made.name, in->name) == 0);
        *out = made;
        if (replay_out != NULL)
            *replay_out = replay;
    }
    return err;
}

enum cf_err risk_lists_all(struct risk_lists *l, struct risk_list *out, size_t max, size_t *n_out)
{
    CF_ASSERT(l != NULL && max <= RISK_LISTS_MAX && n_out != NULL);
    struct sql_value v[] = {SQL_I(max)};
    struct sql_rows *r = NULL;
    enum cf_err err = read_query(l,
                                 "SELECT d.row, d.id, d.name, d.kind, d.version, d.entries, "
                                 "d.content_bytes, d.alt_bytes, d.changed, d.by_user, d.at_us "
                                 "FROM risk_lists c JOIN risk_list_loads d ON d.row = c.load_row "
                                 "ORDER BY c.name LIMIT $1",
                                 v, 1, &r);
    size_t n = 0;
    for (size_t i = 0; err == CF_OK && i < sql_rows_n(r) && i < max; i++)
        if ((err = load_from_row(r, i, &out[n])) == CF_OK)
            n++;
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

/* A malloc'd copy of a blob (one byte more, zero, so that an empty one is not NULL). */
static char *blob_copy(const uint8_t *b, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        if (n > 0)
            memcpy(p, b, n);
        p[n] = '\0';
    }
    return p;
}

enum cf_err risk_lists_bytes(struct risk_lists *l, const char *name, struct risk_list *meta_out,
                             char **content_out, size_t *content_len_out, char **alt_out,
                             size_t *alt_len_out)
{
    CF_ASSERT(l != NULL && meta_out != NULL && content_out != NULL && alt_out != NULL);
    if (!risk_lists_name_valid(name))
        return CF_ERR_NOT_FOUND;
    struct sql_value v[] = {SQL_T(name)};
    struct sql_rows *r = NULL;
    enum cf_err err = read_query(l,
                                 "SELECT d.row, d.id, d.name, d.kind, d.version, d.entries, "
                                 "d.content_bytes, d.alt_bytes, d.changed, d.by_user, d.at_us, "
                                 "c.content, c.alt_content FROM risk_lists c "
                                 "JOIN risk_list_loads d ON d.row = c.load_row WHERE c.name = $1",
                                 v, 1, &r);
    struct risk_list meta;
    if (err == CF_OK)
        err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : load_from_row(r, 0, &meta);
    size_t content_len = 0, alt_len = 0;
    const uint8_t *content = err == CF_OK ? sql_row_blob(r, 0, LOAD_COLS_N, &content_len) : NULL;
    bool has_alt = err == CF_OK && !sql_row_null(r, 0, LOAD_COLS_N + 1);
    const uint8_t *alt = has_alt ? sql_row_blob(r, 0, LOAD_COLS_N + 1, &alt_len) : NULL;
    char *c = err == CF_OK ? blob_copy(content, content_len) : NULL;
    char *a = has_alt ? blob_copy(alt, alt_len) : NULL;
    sql_rows_free(r);
    if (err == CF_OK && (c == NULL || (has_alt && a == NULL)))
        err = CF_ERR_NOMEM;
    if (err == CF_OK && (content_len != meta.content_bytes || alt_len != meta.alt_bytes))
        err = CF_ERR_CORRUPT;
    if (err != CF_OK) {
        free(c);
        free(a);
        return err;
    }
    *meta_out = meta;
    *content_out = c;
    *content_len_out = content_len;
    *alt_out = a;
    *alt_len_out = alt_len;
    return CF_OK;
}

enum cf_err risk_lists_seq(struct risk_lists *l, uint64_t *seq_out)
{
    CF_ASSERT(l != NULL && seq_out != NULL);
    struct sql_rows *r = NULL;
    enum cf_err err =
        read_query(l, "SELECT COALESCE(MAX(row), 0) FROM risk_list_loads", NULL, 0, &r);
    if (err == CF_OK) {
        int64_t v = sql_row_int(r, 0, 0);
        if (v < 0)
            err = CF_ERR_CORRUPT;
        else
            *seq_out = (uint64_t)v;
    }
    sql_rows_free(r);
    return err;
}

/* Screenings: reading ------------------------------------------------------------------------ */

/* "name:version,name:version" of lists[0..n). */
static void lists_format(const struct risk_list_version *lists, size_t n,
                         char out[LISTS_TEXT_BYTES])
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char v[VERSION_TEXT_BYTES];
        version_format(lists[i].version, v);
        int w = snprintf(out + used, LISTS_TEXT_BYTES - used, "%s%s:%s", i > 0 ? "," : "",
                         lists[i].name, v);
        CF_ASSERT(w > 0 && (size_t)w < LISTS_TEXT_BYTES - used);
        used += (size_t)w;
    }
}

/* The stored lists text back into out; false when malformed. */
static bool lists_parse(const char *text, struct risk_list_version *out, size_t *n_out)
{
    size_t n = 0;
    const char *p = text;
    while (*p != '\0') {
        const char *colon = strchr(p, ':');
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        if (colon == NULL || colon > end || n == RISK_LISTS_MAX ||
            (size_t)(colon - p) >= RISK_LISTS_NAME_BYTES_MAX ||
            (size_t)(end - colon - 1) != VERSION_TEXT_BYTES - 1)
            return false;
        char v[VERSION_TEXT_BYTES];
        snprintf(out[n].name, sizeof(out[n].name), "%.*s", (int)(colon - p), p);
        snprintf(v, sizeof(v), "%.*s", (int)(end - colon - 1), colon + 1);
        if (!risk_lists_name_valid(out[n].name) || !version_parse(v, &out[n].version))
            return false;
        n++;
        p = *end == ',' ? end + 1 : end;
    }
    *n_out = n;
    return true;
}

#define SCREENING_COLS                                                                             \
    "subject, trigger_name, outcome, at_us, lists, names_n, unscreenable_n, hits_total, hits_n, "  \
    "blocked, block_event, block_case, block_since_us"

static enum cf_err screening_from_row(const struct sql_rows *r, struct risk_screening *s,
                                      struct risk_screen_block *b)
{
    size_t c = 0;
    memset(s, 0, sizeof(*s));
    memset(b, 0, sizeof(*b));
    risk_text_copy(s->subject, sizeof(s->subject), sql_row_text(r, 0, c++));
    risk_text_copy(s->trigger, sizeof(s->trigger), sql_row_text(r, 0, c++));
    s->outcome = (uint8_t)sql_row_int(r, 0, c++);
    s->at_us = sql_row_int(r, 0, c++);
    bool lists_ok = lists_parse(sql_row_text(r, 0, c++), s->lists, &s->lists_n);
    int64_t counts[4];
    for (size_t i = 0; i < 4; i++)
        counts[i] = sql_row_int(r, 0, c++);
    b->blocked = sql_row_int(r, 0, c++) != 0;
    risk_text_copy(b->event_id, sizeof(b->event_id), sql_row_text(r, 0, c++));
    risk_text_copy(b->case_id, sizeof(b->case_id), sql_row_text(r, 0, c++));
    b->since_us = sql_row_int(r, 0, c++);
    b->screened_at_us = s->at_us;
    CF_ASSERT(c == sql_rows_cols(r));
    for (size_t i = 0; i < 4; i++) {
        if (counts[i] < 0 || counts[i] > UINT32_MAX)
            return CF_ERR_CORRUPT;
    }
    s->names_n = (uint32_t)counts[0];
    s->unscreenable_n = (uint32_t)counts[1];
    s->hits_total = (uint32_t)counts[2];
    s->hits_n = (uint32_t)counts[3];
    if (!lists_ok || risk_lists_outcome_name(s->outcome)[0] == '\0' ||
        s->hits_n > RISK_LISTS_HITS_MAX)
        return CF_ERR_CORRUPT;
    return CF_OK;
}

/* The subject's row in tx (FOR UPDATE when lock): CF_ERR_NOT_FOUND when none. */
static enum cf_err screening_read_tx(struct sqltx *tx, const char *subject, bool lock,
                                     struct risk_screening *s, struct risk_screen_block *b)
{
    struct sql_value v[] = {SQL_T(subject)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                lock ? "SELECT " SCREENING_COLS " FROM risk_screenings "
                                       "WHERE subject = $1 FOR UPDATE"
                                     : "SELECT " SCREENING_COLS " FROM risk_screenings "
                                       "WHERE subject = $1",
                                v, 1, &r);
    if (err == CF_OK)
        err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : screening_from_row(r, s, b);
    sql_rows_free(r);
    return err;
}

static enum cf_err hit_from_row(const struct sql_rows *r, size_t i, struct risk_screen_hit *h)
{
    size_t c = 0;
    memset(h, 0, sizeof(*h));
    risk_text_copy(h->list, sizeof(h->list), sql_row_text(r, i, c++));
    risk_text_copy(h->entry_id, sizeof(h->entry_id), sql_row_text(r, i, c++));
    risk_text_copy(h->ref, sizeof(h->ref), sql_row_text(r, i, c++));
    risk_text_copy(h->matched_name, sizeof(h->matched_name), sql_row_text(r, i, c++));
    int64_t score = sql_row_int(r, i, c++), name_score = sql_row_int(r, i, c++);
    int64_t dob = sql_row_int(r, i, c++), country = sql_row_int(r, i, c++);
    CF_ASSERT(c == sql_rows_cols(r));
    if (score < 0 || score > SCREEN_SCORE_MAX || name_score < 0 || name_score > SCREEN_SCORE_MAX ||
        dob < 0 || dob > WATCHLIST_CONFLICT || country < 0 || country > WATCHLIST_CONFLICT)
        return CF_ERR_CORRUPT;
    h->score = (int)score;
    h->name_score = (int)name_score;
    h->dob = (uint8_t)dob;
    h->country = (uint8_t)country;
    return CF_OK;
}

enum cf_err risk_lists_screening_get(struct risk_lists *l, const char *subject,
                                     struct risk_screening *out, struct risk_screen_hit *hits,
                                     size_t max, struct risk_screen_block *block_out)
{
    CF_ASSERT(l != NULL && out != NULL && block_out != NULL && (hits != NULL || max == 0));
    if (!risk_lists_party_valid(subject))
        return CF_ERR_NOT_FOUND;
    struct risk_screening s;
    struct risk_screen_block b;
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(l->db, &tx);
    if (err != CF_OK)
        return err;
    err = screening_read_tx(tx, subject, false, &s, &b);
    struct sql_value v[] = {SQL_T(subject), SQL_I(max)};
    if (err == CF_OK)
        err = sql_query(tx,
                        "SELECT list_name, entry_id, ref, matched_name, score, name_score, dob, "
                        "country FROM risk_screen_hits WHERE subject = $1 ORDER BY seq LIMIT $2",
                        v, 2, &r);
    sql_rollback(tx);
    size_t n = 0;
    for (size_t i = 0; err == CF_OK && i < sql_rows_n(r) && i < max; i++)
        if ((err = hit_from_row(r, i, &hits[n])) == CF_OK)
            n++;
    sql_rows_free(r);
    if (err == CF_OK && n != s.hits_n && n < max)
        err = CF_ERR_CORRUPT; /* the row says how many hits it kept */
    if (err == CF_OK) {
        s.hits_n = (uint32_t)n;
        *out = s;
        *block_out = b;
    }
    return err;
}

enum cf_err risk_lists_block_peek(struct risk_lists *l, const char *subject,
                                  struct risk_screen_block *out)
{
    CF_ASSERT(l != NULL && out != NULL);
    if (!risk_lists_party_valid(subject))
        return CF_ERR_NOT_FOUND;
    struct sql_value v[] = {SQL_T(subject)};
    struct sql_rows *r = NULL;
    enum cf_err err = read_query(l,
                                 "SELECT blocked, block_event, block_case, block_since_us, at_us "
                                 "FROM risk_screenings WHERE subject = $1",
                                 v, 1, &r);
    if (err == CF_OK && sql_rows_n(r) == 0)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK) {
        memset(out, 0, sizeof(*out));
        out->blocked = sql_row_int(r, 0, 0) != 0;
        risk_text_copy(out->event_id, sizeof(out->event_id), sql_row_text(r, 0, 1));
        risk_text_copy(out->case_id, sizeof(out->case_id), sql_row_text(r, 0, 2));
        out->since_us = sql_row_int(r, 0, 3);
        out->screened_at_us = sql_row_int(r, 0, 4);
    }
    sql_rows_free(r);
    return err;
}

enum cf_err risk_lists_subjects(struct risk_lists *l, const char *after,
                                char (*out)[RISK_LISTS_PARTY_BYTES_MAX], size_t max, size_t *n_out)
{
    CF_ASSERT(l != NULL && out != NULL && max <= RISK_LISTS_SUBJECTS_PAGE_MAX && n_out != NULL);
    struct sql_value v[] = {SQL_T(after != NULL ? after : ""), SQL_I(max)};
    struct sql_rows *r = NULL;
    enum cf_err err = read_query(l,
                                 "SELECT subject FROM risk_screenings WHERE subject > $1 "
                                 "ORDER BY subject LIMIT $2",
                                 v, 2, &r);
    size_t n = 0;
    for (size_t i = 0; err == CF_OK && i < sql_rows_n(r) && i < max; i++)
        risk_text_copy(out[n++], RISK_LISTS_PARTY_BYTES_MAX, sql_row_text(r, i, 0));
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

/* Screenings: recording ---------------------------------------------------------------------- */

static bool hit_valid(const struct risk_screen_hit *h)
{
    size_t id_len = strnlen(h->entry_id, RISK_LISTS_ENTRY_BYTES_MAX);
    return risk_lists_name_valid(h->list) && id_len >= 1 && id_len <= WATCHLIST_ID_BYTES_MAX &&
           text_valid(h->entry_id, RISK_LISTS_ENTRY_BYTES_MAX) &&
           text_valid(h->matched_name, RISK_LISTS_MATCHED_BYTES_MAX) && h->score >= 0 &&
           h->score <= SCREEN_SCORE_MAX && h->name_score >= 0 &&
           h->name_score <= SCREEN_SCORE_MAX && h->dob <= WATCHLIST_CONFLICT &&
           h->country <= WATCHLIST_CONFLICT;
}

static enum cf_err screening_check(const struct risk_screening *s,
                                   const struct risk_screen_hit *hits, size_t n)
{
    bool ok = risk_lists_party_valid(s->subject) && risk_lists_trigger_valid(s->trigger) &&
              risk_lists_outcome_name(s->outcome)[0] != '\0' && s->lists_n <= RISK_LISTS_MAX &&
              n <= RISK_LISTS_HITS_MAX && s->hits_n == n && s->hits_total >= n &&
              s->unscreenable_n <= s->names_n;
    /* the outcome follows from the counts */
    uint8_t want = n > 0                   ? RISK_LISTS_HIT
                   : s->unscreenable_n > 0 ? RISK_LISTS_REVIEW
                                           : RISK_LISTS_CLEAR;
    ok = ok && s->outcome == want;
    for (size_t i = 0; ok && i < s->lists_n; i++)
        ok = risk_lists_name_valid(s->lists[i].name);
    for (size_t i = 0; ok && i < n; i++)
        ok = hit_valid(&hits[i]);
    return ok ? CF_OK : CF_ERR_INVALID_FIELD;
}

/* Writes the screening's columns and replaces its hits (refs[i]: hit i's reference). */
static enum cf_err screening_write(struct sqltx *tx, const struct risk_screening *s,
                                   const struct risk_screen_hit *hits, size_t n,
                                   char (*refs)[RISK_LISTS_REF_BYTES_MAX])
{
    char lists[LISTS_TEXT_BYTES];
    lists_format(s->lists, s->lists_n, lists);
    struct sql_value v[] = {SQL_T(s->subject),        SQL_T(s->trigger),    SQL_I(s->outcome),
                            SQL_I(s->at_us),          SQL_T(lists),         SQL_I(s->names_n),
                            SQL_I(s->unscreenable_n), SQL_I(s->hits_total), SQL_I(s->hits_n)};
    enum cf_err err = sql_exec(tx,
                               "UPDATE risk_screenings SET trigger_name = $2, outcome = $3, "
                               "at_us = $4, lists = $5, names_n = $6, unscreenable_n = $7, "
                               "hits_total = $8, hits_n = $9 WHERE subject = $1",
                               v, 9, NULL);
    struct sql_value w[] = {SQL_T(s->subject)};
    if (err == CF_OK)
        err = sql_exec(tx, "DELETE FROM risk_screen_hits WHERE subject = $1", w, 1, NULL);
    for (size_t i = 0; err == CF_OK && i < n; i++) {
        const struct risk_screen_hit *h = &hits[i];
        struct sql_value x[] = {SQL_T(s->subject), SQL_I(i),
                                SQL_T(h->list),    SQL_T(h->entry_id),
                                SQL_T(refs[i]),    SQL_T(h->matched_name),
                                SQL_I(h->score),   SQL_I(h->name_score),
                                SQL_I(h->dob),     SQL_I(h->country)};
        err = sql_exec(tx,
                       "INSERT INTO risk_screen_hits (subject, seq, list_name, entry_id, ref, "
                       "matched_name, score, name_score, dob, country) VALUES ($1, $2, $3, $4, "
                       "$5, $6, $7, $8, $9, $10)",
                       x, 10, NULL);
    }
    return err;
}

/* Whether one of refs[0..n) is not cleared for subject. */
static enum cf_err uncleared_any(struct sqltx *tx, const char *subject,
                                 char (*refs)[RISK_LISTS_REF_BYTES_MAX], size_t n, bool *out)
{
    struct sql_value v[] = {SQL_T(subject)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        sql_query(tx, "SELECT ref FROM risk_screen_cleared WHERE subject = $1", v, 1, &r);
    if (err != CF_OK)
        return err;
    bool any = false;
    for (size_t i = 0; i < n && !any; i++) {
        bool cleared = false;
        for (size_t k = 0; k < sql_rows_n(r) && !cleared; k++)
            cleared = strcmp(sql_row_text(r, k, 0), refs[i]) == 0;
        any = !cleared;
    }
    sql_rows_free(r);
    *out = any;
    return CF_OK;
}

/* Appends a block or clear event ev (id, kind, subject, case, block id, by, time set; reason
 * "" for a block, which stores none). */
static enum cf_err event_insert(struct risk_lists *l, struct sqltx *tx,
                                struct risk_screen_event *ev, const struct risk_lists_idem *idem)
{
    uint8_t sealed[REASON_SEALED_BYTES_MAX];
    size_t sealed_len = 0;
    enum cf_err err = CF_OK;
    if (ev->kind == RISK_LISTS_EVENT_CLEAR)
        err = reason_seal(l, ev->id, ev->reason, sealed, &sealed_len);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {
        SQL_T(ev->id),
        SQL_T(ev->subject),
        SQL_I(ev->kind),
        SQL_T(ev->case_id),
        SQL_T(ev->block_id),
        ev->kind == RISK_LISTS_EVENT_CLEAR ? SQL_B(sealed, sealed_len) : SQL_NUL,
        SQL_T(ev->by),
        SQL_I(ev->at_us),
        idem != NULL ? SQL_T(idem->key) : SQL_NUL,
        idem != NULL ? SQL_B(idem->request_hash, HASH_BYTES) : SQL_NUL,
    };
    err = sql_exec(tx,
                   "INSERT INTO risk_screen_events (id, subject, kind, case_id, block_id, "
                   "reason_sealed, by_user, at_us, idem, request_hash) VALUES ($1, $2, $3, $4, "
                   "$5, $6, $7, $8, $9, $10)",
                   v, 10, NULL);
    return risk_row_of(tx, err, "SELECT row FROM risk_screen_events WHERE id = $1", ev->id,
                       &ev->row);
}

/* Records the block of subject at at_us; *b becomes it. */
static enum cf_err block_record(struct risk_lists *l, struct sqltx *tx, const char *subject,
                                int64_t at_us, struct risk_screen_block *b)
{
    struct risk_screen_event ev;
    memset(&ev, 0, sizeof(ev));
    risk_id_new(RISK_LISTS_BLOCK_PREFIX, ev.id, RISK_LISTS_ID_BYTES_MAX);
    ev.kind = RISK_LISTS_EVENT_BLOCK;
    risk_text_copy(ev.subject, sizeof(ev.subject), subject);
    risk_text_copy(ev.by, sizeof(ev.by), BLOCK_BY);
    ev.at_us = at_us;
    enum cf_err err = event_insert(l, tx, &ev, NULL);
    struct sql_value v[] = {SQL_T(subject), SQL_T(ev.id), SQL_I(at_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "UPDATE risk_screenings SET blocked = 1, block_event = $2, "
                       "block_case = '', block_since_us = $3 WHERE subject = $1",
                       v, 3, NULL);
    if (err == CF_OK) {
        b->blocked = true;
        risk_text_copy(b->event_id, sizeof(b->event_id), ev.id);
        b->case_id[0] = '\0';
        b->since_us = at_us;
    }
    return err;
}

static enum cf_err screening_put_tx(struct risk_lists *l, const struct risk_screening *s,
                                    const struct risk_screen_hit *hits, size_t n,
                                    char (*refs)[RISK_LISTS_REF_BYTES_MAX], size_t refs_n,
                                    struct risk_screen_block *b, bool *blocked_now)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(l->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {SQL_T(s->subject), SQL_T(s->trigger), SQL_I(s->at_us)};
    err = sql_exec(tx,
                   "INSERT INTO risk_screenings (subject, trigger_name, outcome, at_us, lists, "
                   "names_n, unscreenable_n, hits_total, hits_n, blocked, block_event, "
                   "block_case, block_since_us) VALUES ($1, $2, 1, $3, '', 0, 0, 0, 0, 0, '', "
                   "'', 0) ON CONFLICT (subject) DO NOTHING",
                   v, 3, NULL);
    struct risk_screening old;
    if (err == CF_OK)
        err = screening_read_tx(tx, s->subject, true, &old, b);
    if (err == CF_OK)
        err = screening_write(tx, s, hits, n, refs);
    bool uncleared = false;
    if (err == CF_OK && !b->blocked && refs_n > 0)
        err = uncleared_any(tx, s->subject, refs, refs_n, &uncleared);
    *blocked_now = err == CF_OK && uncleared;
    if (*blocked_now)
        err = block_record(l, tx, s->subject, s->at_us, b);
    b->screened_at_us = s->at_us;
    return risk_tx_end(tx, err);
}

enum cf_err risk_lists_screening_put(struct risk_lists *l, const struct risk_screening *s,
                                     const struct risk_screen_hit *hits, size_t n,
                                     struct risk_screen_block *block_out, bool *blocked_now_out)
{
    CF_ASSERT(l != NULL && s != NULL && (hits != NULL || n == 0) && block_out != NULL);
    enum cf_err err = screening_check(s, hits, n);
    if (err != CF_OK)
        return err;
    /* the references that block: each hit's, and the refused names' */
    char(*refs)[RISK_LISTS_REF_BYTES_MAX] = calloc(RISK_LISTS_HITS_MAX + 1, sizeof(*refs));
    if (refs == NULL)
        return CF_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        risk_lists_hit_ref(hits[i].list, hits[i].entry_id, refs[i]);
    size_t refs_n = n;
    if (s->unscreenable_n > 0)
        risk_text_copy(refs[refs_n++], RISK_LISTS_REF_BYTES_MAX, RISK_LISTS_REF_UNSCREENABLE);
    struct risk_screen_block b;
    bool blocked_now = false;
    err = screening_put_tx(l, s, hits, n, refs, refs_n, &b, &blocked_now);
    if (err == CF_ERR_STORAGE_CONFLICT) /* the first screening of a subject, twice at once */
        err = screening_put_tx(l, s, hits, n, refs, refs_n, &b, &blocked_now);
    free(refs);
    if (err != CF_OK)
        return err;
    CF_ASSERT(!blocked_now || (b.blocked && b.event_id[0] != '\0'));
    *block_out = b;
    if (blocked_now_out != NULL)
        *blocked_now_out = blocked_now;
    return CF_OK;
}

enum cf_err risk_lists_block_case_set(struct risk_lists *l, const char *subject,
                                      const char *event_id, const char *case_id)
{
    CF_ASSERT(l != NULL);
    if (!risk_lists_party_valid(subject) ||
        !risk_token_valid(event_id, RISK_LISTS_ID_BYTES_MAX, false) ||
        !risk_token_valid(case_id, RISK_LISTS_ID_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    struct sql_value v[] = {SQL_T(subject), SQL_T(event_id), SQL_T(case_id)};
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(l->db, &tx);
    if (err != CF_OK)
        return err;
    err = sql_exec(tx,
                   "UPDATE risk_screenings SET block_case = $3 WHERE subject = $1 AND "
                   "blocked = 1 AND block_event = $2",
                   v, 3, NULL);
    return risk_tx_end(tx, err);
}

/* Clearing ----------------------------------------------------------------------------------- */

#define EVENT_COLS                                                                                 \
    "row, id, kind, subject, case_id, block_id, reason_sealed, by_user, at_us, request_hash"

/* An event as read; its reason opened when open is set. *hash_out (may be NULL) gets its
 * request hash (zero when none). */
static enum cf_err event_from_row(struct risk_lists *l, const struct sql_rows *r, size_t i,
                                  bool open, struct risk_screen_event *ev,
                                  uint8_t hash_out[HASH_BYTES])
{
    size_t c = 0, sealed_len = 0, hash_len = 0;
    memset(ev, 0, sizeof(*ev));
    ev->row = (uint64_t)sql_row_int(r, i, c++);
    risk_text_copy(ev->id, sizeof(ev->id), sql_row_text(r, i, c++));
    ev->kind = (uint8_t)sql_row_int(r, i, c++);
    risk_text_copy(ev->subject, sizeof(ev->subject), sql_row_text(r, i, c++));
    risk_text_copy(ev->case_id, sizeof(ev->case_id), sql_row_text(r, i, c++));
    risk_text_copy(ev->block_id, sizeof(ev->block_id), sql_row_text(r, i, c++));
    const uint8_t *sealed = sql_row_blob(r, i, c++, &sealed_len);
    risk_text_copy(ev->by, sizeof(ev->by), sql_row_text(r, i, c++));
    ev->at_us = sql_row_int(r, i, c++);
    const uint8_t *h = sql_row_blob(r, i, c++, &hash_len);
    CF_ASSERT(c == sql_rows_cols(r));
    if (hash_out != NULL) {
        memset(hash_out, 0, HASH_BYTES);
        if (h != NULL && hash_len == HASH_BYTES)
            memcpy(hash_out, h, HASH_BYTES);
    }
    if (ev->kind != RISK_LISTS_EVENT_BLOCK && ev->kind != RISK_LISTS_EVENT_CLEAR)
        return CF_ERR_CORRUPT;
    if (!open || ev->kind != RISK_LISTS_EVENT_CLEAR)
        return CF_OK;
    return reason_open(l, ev->id, sealed, sealed_len, ev->reason);
}

/* The clear idem's key made, checked against this request: CF_OK (a replay), CF_ERR_NOT_FOUND
 * (a new key) or CF_ERR_IDEM_KEY_REUSED. */
static enum cf_err clear_by_idem(struct risk_lists *l, struct sqltx *tx,
                                 const struct risk_lists_idem *idem, const char *subject,
                                 struct risk_screen_event *out)
{
    struct sql_value v[] = {SQL_T(idem->key)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        sql_query(tx, "SELECT " EVENT_COLS " FROM risk_screen_events WHERE idem = $1", v, 1, &r);
    if (err != CF_OK)
        return err;
    uint8_t hash[HASH_BYTES];
    err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : event_from_row(l, r, 0, true, out, hash);
    sql_rows_free(r);
    if (err == CF_OK &&
        (out->kind != RISK_LISTS_EVENT_CLEAR || strcmp(out->subject, subject) != 0 ||
         !hash_equal(hash, idem->request_hash, HASH_BYTES)))
        err = CF_ERR_IDEM_KEY_REUSED;
    return err;
}

/* Marks the references of the subject's last screening cleared by event ev. */
static enum cf_err refs_clear(struct sqltx *tx, const struct risk_screen_event *ev,
                              bool unscreenable)
{
    struct sql_value v[] = {SQL_T(ev->subject), SQL_T(ev->id), SQL_I(ev->at_us)};
    enum cf_err err = sql_exec(tx,
                               "INSERT INTO risk_screen_cleared (subject, ref, event_id, at_us) "
                               "SELECT subject, ref, $2, $3 FROM risk_screen_hits "
                               "WHERE subject = $1 ON CONFLICT DO NOTHING",
                               v, 3, NULL);
    struct sql_value w[] = {SQL_T(ev->subject), SQL_T(RISK_LISTS_REF_UNSCREENABLE), SQL_T(ev->id),
                            SQL_I(ev->at_us)};
    if (err == CF_OK && unscreenable)
        err = sql_exec(tx,
                       "INSERT INTO risk_screen_cleared (subject, ref, event_id, at_us) VALUES "
                       "($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                       w, 4, NULL);
    return err;
}

/* One clear attempt: ev (id, kind, subject, reason, by, time and case set). */
static enum cf_err clear_tx(struct risk_lists *l, struct risk_screen_event *ev,
                            const struct risk_lists_idem *idem, struct risk_screen_event *stored,
                            bool *replay)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(l->db, &tx);
    if (err != CF_OK)
        return err;
    if (idem != NULL &&
        (err = clear_by_idem(l, tx, idem, ev->subject, stored)) != CF_ERR_NOT_FOUND) {
        sql_rollback(tx);
        *replay = err == CF_OK;
        return err;
    }
    struct risk_screening s;
    struct risk_screen_block b;
    err = screening_read_tx(tx, ev->subject, true, &s, &b);
    if (err == CF_OK && !b.blocked)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_ERR_NOT_FOUND && idem != NULL) {
        /* the row lock waited for a clear that committed meanwhile: was it this key's? */
        err = clear_by_idem(l, tx, idem, ev->subject, stored);
        *replay = err == CF_OK;
        sql_rollback(tx);
        return err;
    }
    if (err == CF_OK && ev->case_id[0] != '\0' && b.case_id[0] != '\0' &&
        strcmp(ev->case_id, b.case_id) != 0)
        err = CF_ERR_CONFLICT;
    if (err == CF_OK) {
        risk_text_copy(ev->block_id, sizeof(ev->block_id), b.event_id);
        err = event_insert(l, tx, ev, idem);
    }
    if (err == CF_OK)
        err = refs_clear(tx, ev, s.unscreenable_n > 0);
    struct sql_value v[] = {SQL_T(ev->subject)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "UPDATE risk_screenings SET blocked = 0, block_event = '', "
                       "block_case = '', block_since_us = 0 WHERE subject = $1",
                       v, 1, NULL);
    return risk_tx_end(tx, err);
}

enum cf_err risk_lists_block_clear(struct risk_lists *l, const char *subject, const char *reason,
                                   const char *by, const char *case_id,
                                   const struct risk_lists_idem *idem, int64_t now_us,
                                   struct risk_screen_event *out, bool *replay_out)
{
    CF_ASSERT(l != NULL && out != NULL);
    if (!risk_lists_party_valid(subject) || !risk_lists_reason_valid(reason, NULL) ||
        !risk_token_valid(by, RISK_LISTS_PARTY_BYTES_MAX, false) ||
        (case_id != NULL && !risk_token_valid(case_id, RISK_LISTS_ID_BYTES_MAX, false)) ||
        (idem != NULL && !risk_token_valid(idem->key, RISK_LISTS_IDEM_BYTES_MAX, false)))
        return CF_ERR_INVALID_FIELD;
    struct risk_screen_event *ev = calloc(2, sizeof(*ev)); /* [0] the new one, [1] a replay's */
    if (ev == NULL)
        return CF_ERR_NOMEM;
    risk_id_new(RISK_LISTS_CLEAR_PREFIX, ev[0].id, RISK_LISTS_ID_BYTES_MAX);
    ev[0].kind = RISK_LISTS_EVENT_CLEAR;
    risk_text_copy(ev[0].subject, sizeof(ev[0].subject), subject);
    risk_text_copy(ev[0].case_id, sizeof(ev[0].case_id), case_id);
    risk_text_copy(ev[0].reason, sizeof(ev[0].reason), reason);
    risk_text_copy(ev[0].by, sizeof(ev[0].by), by);
    ev[0].at_us = now_us;
    bool replay = false;
    enum cf_err err = clear_tx(l, &ev[0], idem, &ev[1], &replay);
    if (err == CF_ERR_STORAGE_CONFLICT) /* two clears with one key: the second replays */
        err = clear_tx(l, &ev[0], idem, &ev[1], &replay);
    if (err == CF_OK) {
        *out = replay ? ev[1] : ev[0];
        if (replay_out != NULL)
            *replay_out = replay;
        CF_ASSERT(out->kind == RISK_LISTS_EVENT_CLEAR && out->row > 0);
    }
    hash_wipe(ev, 2 * sizeof(*ev));
    free(ev);
    return err;
}

enum cf_err risk_lists_events(struct risk_lists *l, const char *subject,
                              struct risk_screen_event *out, size_t max, size_t *n_out)
{
    CF_ASSERT(l != NULL && max <= RISK_LISTS_EVENTS_MAX && n_out != NULL);
    if (!risk_lists_party_valid(subject)) {
        *n_out = 0;
        return CF_OK;
    }
    struct sql_value v[] = {SQL_T(subject), SQL_I(max)};
    struct sql_rows *r = NULL;
    enum cf_err err = read_query(l,
                                 "SELECT " EVENT_COLS " FROM risk_screen_events WHERE subject = $1 "
                                 "ORDER BY row DESC LIMIT $2",
                                 v, 2, &r);
    struct risk_screen_event *one = calloc(1, sizeof(*one));
    if (err == CF_OK && one == NULL)
        err = CF_ERR_NOMEM;
    size_t n = 0;
    for (size_t i = 0; err == CF_OK && i < sql_rows_n(r) && i < max; i++)
        if ((err = event_from_row(l, r, i, true, one, NULL)) == CF_OK)
            out[n++] = *one;
    sql_rows_free(r);
    if (one != NULL)
        hash_wipe(one, sizeof(*one));
    free(one);
    if (err == CF_OK)
        *n_out = n;
    return err;
}
