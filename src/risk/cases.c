/*
 * cases.c - risk cases: the schema, alerts deduplicated into cases, staff writes, reads,
 * watermarks and the sweep's settings; see cases.h.
 *
 * Five tables. risk_cases holds one row per case; its column open_key is the dedup key while the
 * case is open and NULL once it is closed, and is UNIQUE, so the database itself keeps one open
 * case per key (NULLs never collide, in SQLite as in PostgreSQL). risk_case_notes,
 * risk_case_evidence (UNIQUE (case_id, operation_id)) and risk_case_events (append-only; an
 * event keeps the idempotency key of the staff write that made it, UNIQUE) hang off it;
 * risk_case_marks holds the feeders' watermarks.
 *
 * Every write locks its case row first (SELECT ... FOR UPDATE; SQLite's transactions are
 * serial anyway), so counters and the open/closed state are read and changed under the lock. Two
 * alerts that both find no open case meet on open_key; two staff writes with one key meet on
 * the events' idem column: the loser gets CF_ERR_STORAGE_CONFLICT, and the whole transaction is
 * run again (at most TX_TRIES times), then finds the winner's case or event.
 */
#include "risk/cases.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "crypto/vault.h"
#include "risk/internal.h"
#include "store/sql/sql.h"

#define TX_TRIES 3 /* a transaction that lost a unique-key race runs again, then finds the winner  \
                    */
#define NOTE_SEALED_BYTES_MAX (RISK_CASE_NOTE_BYTES_MAX + VAULT_OVERHEAD_BYTES)
#define REASON_SEALED_BYTES_MAX (RISK_CASE_REASON_BYTES_MAX + VAULT_OVERHEAD_BYTES)
#define AAD_BYTES (RISK_CASE_ID_BYTES_MAX + 32) /* "risk_case:<id>:reason" */
#define LIST_SQL_BYTES 1024

struct risk_cases {
    struct sqldb *db;
    risk_cases_vault_fn vault; /* the current master keys (they may be rotated while running) */
    void *vault_ctx;
};

/* Schema ------------------------------------------------------------------------------------- */

/* %1$s: the blob type; %2$s: the row key (an auto-incrementing integer primary key). */
#define CASES_SCHEMA                                                                               \
    "CREATE TABLE risk_cases (row %2$s, id TEXT NOT NULL UNIQUE, kind INTEGER NOT NULL, "          \
    "status INTEGER NOT NULL, priority INTEGER NOT NULL, decision INTEGER NOT NULL, "              \
    "subject TEXT NOT NULL, scenario TEXT NOT NULL, dedup_key TEXT NOT NULL, open_key TEXT "       \
    "UNIQUE, detail TEXT NOT NULL, assignee TEXT NOT NULL, reason_sealed %1$s, "                   \
    "decided_by TEXT NOT NULL, decided_at_us BIGINT NOT NULL, alerts_n BIGINT NOT NULL, "          \
    "evidence_n BIGINT NOT NULL, notes_n BIGINT NOT NULL, created_at_us BIGINT NOT NULL, "         \
    "updated_at_us BIGINT NOT NULL);"                                                              \
    "CREATE INDEX risk_cases_status ON risk_cases(status, row);"                                   \
    "CREATE INDEX risk_cases_subject ON risk_cases(subject, row);"                                 \
    "CREATE INDEX risk_cases_assignee ON risk_cases(assignee, row);"                               \
    "CREATE INDEX risk_cases_key ON risk_cases(dedup_key, row);"                                   \
    "CREATE INDEX risk_cases_created ON risk_cases(created_at_us);"                                \
    "CREATE TABLE risk_case_notes (row %2$s, id TEXT NOT NULL UNIQUE, case_id TEXT NOT NULL, "     \
    "text_sealed %1$s NOT NULL, by_user TEXT NOT NULL, at_us BIGINT NOT NULL);"                    \
    "CREATE INDEX risk_case_notes_case ON risk_case_notes(case_id, row);"                          \
    "CREATE TABLE risk_case_evidence (row %2$s, case_id TEXT NOT NULL, operation_id TEXT NOT "     \
    "NULL, by_user TEXT NOT NULL, added_at_us BIGINT NOT NULL, UNIQUE (case_id, operation_id));"   \
    "CREATE INDEX risk_case_evidence_op ON risk_case_evidence(operation_id);"                      \
    "CREATE TABLE risk_case_events (row %2$s, case_id TEXT NOT NULL, type INTEGER NOT NULL, "      \
    "ref TEXT NOT NULL, count BIGINT NOT NULL, by_user TEXT NOT NULL, at_us BIGINT NOT NULL, "     \
    "idem TEXT UNIQUE, request_hash %1$s);"                                                        \
    "CREATE INDEX risk_case_events_case ON risk_case_events(case_id, row);"                        \
    "CREATE TABLE risk_case_marks (name TEXT PRIMARY KEY, at_us BIGINT NOT NULL, "                 \
    "row_pos BIGINT NOT NULL, updated_at_us BIGINT NOT NULL);"

enum cf_err risk_cases_open(struct sqldb *db, risk_cases_vault_fn vault, void *vault_ctx,
                            struct risk_cases **out)
{
    CF_ASSERT(db != NULL && vault != NULL && out != NULL);
    enum cf_err err = risk_schema_migrate(db, "risk_cases", CASES_SCHEMA);
    if (err != CF_OK)
        return err;
    struct risk_cases *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CF_ERR_NOMEM;
    c->db = db;
    c->vault = vault;
    c->vault_ctx = vault_ctx;
    *out = c;
    return CF_OK;
}

void risk_cases_close(struct risk_cases *c) { free(c); }

/* Names -------------------------------------------------------------------------------------- */

static const char *const kind_names[] = {"", "aml", "sanctions", "monitoring", "manual"};
static const char *const status_names[] = {"", "open", "closed"};
static const char *const priority_names[] = {"", "low", "normal", "high"};
static const char *const decision_names[] = {"", "clear", "freeze", "report"};
static const char *const event_names[] = {"",           "opened",         "alert_added", "assigned",
                                          "note_added", "evidence_added", "decided"};

const char *risk_cases_kind_name(uint8_t kind)
{
    return risk_name_of(kind_names, RISK_NAMES_N(kind_names), kind);
}
const char *risk_cases_status_name(uint8_t status)
{
    return risk_name_of(status_names, RISK_NAMES_N(status_names), status);
}
const char *risk_cases_priority_name(uint8_t p)
{
    return risk_name_of(priority_names, RISK_NAMES_N(priority_names), p);
}
const char *risk_cases_decision_name(uint8_t d)
{
    return risk_name_of(decision_names, RISK_NAMES_N(decision_names), d);
}
const char *risk_cases_event_name(uint8_t type)
{
    return risk_name_of(event_names, RISK_NAMES_N(event_names), type);
}

/* The value named `name` in table (from 1), 0 for NULL or another name. */
static uint8_t name_parse(const char *const *table, size_t n, const char *name)
{
    uint8_t v = 0;
    return risk_name_parse(table, n, 1, name, &v) == CF_OK ? v : 0;
}

uint8_t risk_cases_kind_parse(const char *name)
{
    return name_parse(kind_names, RISK_NAMES_N(kind_names), name);
}

uint8_t risk_cases_status_parse(const char *name)
{
    return name_parse(status_names, RISK_NAMES_N(status_names), name);
}

uint8_t risk_cases_decision_parse(const char *name)
{
    return name_parse(decision_names, RISK_NAMES_N(decision_names), name);
}

uint8_t risk_cases_priority(uint8_t kind, const char *scenario)
{
    if (kind == RISK_CASE_SANCTIONS)
        return RISK_CASE_PRIORITY_HIGH;
    if (scenario != NULL &&
        (strcmp(scenario, "large_transaction") == 0 || strcmp(scenario, "rapid_pass_through") == 0))
        return RISK_CASE_PRIORITY_HIGH;
    if (scenario != NULL && strcmp(scenario, "dormant_reactivated") == 0)
        return RISK_CASE_PRIORITY_LOW;
    return RISK_CASE_PRIORITY_NORMAL;
}

/* Validation --------------------------------------------------------------------------------- */

bool risk_cases_party_valid(const char *text) { return risk_party_valid(text); }

/* 1..bytes_max-1 bytes, each accepted by `ok`. */
static bool chars_valid(const char *text, size_t bytes_max, bool (*ok)(char))
{
    size_t n = text != NULL ? strnlen(text, bytes_max) : 0;
    if (n == 0 || n >= bytes_max)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!ok(text[i]))
            return false;
    }
    return true;
}

static bool id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
}

static bool printable_char(char ch) { return ch >= 0x20 && ch <= 0x7e; }

bool risk_cases_op_valid(const char *text)
{
    return chars_valid(text, RISK_CASE_OP_BYTES_MAX, id_char);
}

bool risk_cases_text_valid(const char *text, size_t max_chars, const char *field,
                           const char **detail_out)
{
    CF_ASSERT(max_chars == RISK_CASE_NOTE_CHARS_MAX || max_chars == RISK_CASE_REASON_CHARS_MAX);
    CF_ASSERT(field != NULL);
    static const char *const texts[2][3] = {
        {"text: 1 to 2000 characters", "text: not valid UTF-8", "text: no control characters"},
        {"reason: 1 to 500 characters", "reason: not valid UTF-8", "reason: no control characters"},
    };
    size_t field_i = strcmp(field, "reason") == 0 ? 1 : 0;
    enum risk_text_verdict v =
        risk_text_check(text, 4 * max_chars + 1, max_chars, RISK_TEXT_LINES, NULL);
    if (v != RISK_TEXT_OK && detail_out != NULL)
        *detail_out = texts[field_i][v - RISK_TEXT_LENGTH];
    return v == RISK_TEXT_OK;
}

static bool alert_valid(const struct risk_case_alert *a)
{
    if (a->kind < RISK_CASE_AML || a->kind > RISK_CASE_MANUAL ||
        !risk_cases_party_valid(a->subject) ||
        !risk_token_valid(a->dedup_key, RISK_CASE_KEY_BYTES_MAX, false) ||
        !chars_valid(a->scenario, RISK_CASE_SCENARIO_BYTES_MAX, name_char))
        return false;
    if (a->detail != NULL && a->detail[0] != '\0' &&
        !chars_valid(a->detail, RISK_CASE_DETAIL_BYTES_MAX, printable_char))
        return false;
    if (a->evidence_n > 0 && a->evidence_ops == NULL)
        return false;
    for (size_t i = 0; i < a->evidence_n && i < RISK_CASE_ALERT_EVIDENCE_MAX; i++) {
        if (!risk_cases_op_valid(a->evidence_ops[i]))
            return false;
    }
    return true;
}

/* Shared helpers ----------------------------------------------------------------------------- */

static void aad_make(const char *id, const char *what, char aad[AAD_BYTES])
{
    int n = snprintf(aad, AAD_BYTES, "risk_case:%s:%s", id, what);
    CF_ASSERT(n > 0 && n < AAD_BYTES);
}

/* Seals text under "risk_case:<id>:<what>" into out (out_bytes). */
static enum cf_err text_seal(struct risk_cases *c, const char *id, const char *what,
                             const char *text, uint8_t *out, size_t out_bytes, size_t *len_out)
{
    char aad[AAD_BYTES];
    aad_make(id, what, aad);
    return risk_seal(c->vault, c->vault_ctx, aad, text, strlen(text), out, out_bytes, len_out);
}

/* Opens a sealed text into out (out_bytes, NUL-terminated); "" for NULL. */
static enum cf_err text_open(struct risk_cases *c, const char *id, const char *what,
                             const uint8_t *ct, size_t n, char *out, size_t out_bytes)
{
    if (ct == NULL) {
        out[0] = '\0';
        return CF_OK;
    }
    char aad[AAD_BYTES];
    aad_make(id, what, aad);
    return risk_unseal_text(c->vault, c->vault_ctx, aad, ct, n, out, out_bytes);
}

static bool case_id_valid(const char *id)
{
    uint64_t v = 0;
    return id != NULL && id_parse(RISK_CASE_ID_PREFIX, id, strlen(id), &v) == CF_OK;
}

/* Runs a one-row query and answers its first integer cell (0 when no row). */
static enum cf_err query_int(struct sqltx *tx, const char *sql, const struct sql_value *v, size_t n,
                             int64_t *out)
{
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, sql, v, n, &r);
    if (err == CF_OK)
        *out = sql_rows_n(r) > 0 ? sql_row_int(r, 0, 0) : 0;
    sql_rows_free(r);
    return err;
}

/* Cases -------------------------------------------------------------------------------------- */

#define CASE_COLS                                                                                  \
    "row, id, kind, status, priority, decision, subject, scenario, dedup_key, detail, assignee, "  \
    "reason_sealed, decided_by, decided_at_us, alerts_n, evidence_n, notes_n, created_at_us, "     \
    "updated_at_us"

static enum cf_err case_from_row(struct risk_cases *c, const struct sql_rows *r, size_t i,
                                 bool open, struct risk_case *out)
{
    size_t col = 0, sealed_len = 0;
    memset(out, 0, sizeof(*out));
    out->row = (uint64_t)sql_row_int(r, i, col++);
    risk_text_copy(out->id, sizeof(out->id), sql_row_text(r, i, col++));
    out->kind = (uint8_t)sql_row_int(r, i, col++);
    out->status = (uint8_t)sql_row_int(r, i, col++);
    out->priority = (uint8_t)sql_row_int(r, i, col++);
    out->decision = (uint8_t)sql_row_int(r, i, col++);
    risk_text_copy(out->subject, sizeof(out->subject), sql_row_text(r, i, col++));
    risk_text_copy(out->scenario, sizeof(out->scenario), sql_row_text(r, i, col++));
    risk_text_copy(out->dedup_key, sizeof(out->dedup_key), sql_row_text(r, i, col++));
    risk_text_copy(out->detail, sizeof(out->detail), sql_row_text(r, i, col++));
    risk_text_copy(out->assignee, sizeof(out->assignee), sql_row_text(r, i, col++));
    const uint8_t *sealed = sql_row_blob(r, i, col++, &sealed_len);
    risk_text_copy(out->decided_by, sizeof(out->decided_by), sql_row_text(r, i, col++));
    out->decided_at_us = sql_row_int(r, i, col++);
    out->alerts_n = (uint32_t)sql_row_int(r, i, col++);
    out->evidence_n = (uint32_t)sql_row_int(r, i, col++);
    out->notes_n = (uint32_t)sql_row_int(r, i, col++);
    out->created_at_us = sql_row_int(r, i, col++);
    out->updated_at_us = sql_row_int(r, i, col++);
    CF_ASSERT(col == sql_rows_cols(r));
    bool closed = out->status == RISK_CASE_CLOSED;
    if ((out->status != RISK_CASE_OPEN && !closed) || closed != (out->decision != 0) ||
        out->decision > RISK_CASE_DECISION_REPORT)
        return CF_ERR_CORRUPT;
    return open ? text_open(c, out->id, "reason", sealed, sealed_len, out->reason,
                            sizeof(out->reason))
                : CF_OK;
}

/* The case a query ($1 = key) finds first, locked when the query says FOR UPDATE;
 * CF_ERR_NOT_FOUND when none. */
static enum cf_err case_select(struct risk_cases *c, struct sqltx *tx, const char *sql,
                               const char *key, bool open, struct risk_case *out)
{
    struct sql_value v[] = {SQL_T(key)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, sql, v, 1, &r);
    if (err != CF_OK)
        return err;
    err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : case_from_row(c, r, 0, open, out);
    sql_rows_free(r);
    return err;
}

/* Evidence ----------------------------------------------------------------------------------- */

/* The operation ids of case_id's evidence, in linking order (at most RISK_CASE_EVIDENCE_MAX). */
static enum cf_err evidence_ids(struct sqltx *tx, const char *case_id,
                                char (*ids)[RISK_CASE_OP_BYTES_MAX], size_t *n_out)
{
    struct sql_value v[] = {SQL_T(case_id), SQL_I(RISK_CASE_EVIDENCE_MAX)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT operation_id FROM risk_case_evidence WHERE case_id = $1 "
                                "ORDER BY row LIMIT $2",
                                v, 2, &r);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r);
    for (size_t i = 0; i < n; i++)
        risk_text_copy(ids[i], RISK_CASE_OP_BYTES_MAX, sql_row_text(r, i, 0));
    sql_rows_free(r);
    *n_out = n;
    CF_ASSERT(n <= RISK_CASE_EVIDENCE_MAX);
    return CF_OK;
}

static bool ids_hold(char (*ids)[RISK_CASE_OP_BYTES_MAX], size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ids[i], id) == 0)
            return true;
    }
    return false;
}

static enum cf_err evidence_insert(struct sqltx *tx, const char *case_id, const char *op,
                                   const char *by, int64_t now_us)
{
    struct sql_value v[] = {SQL_T(case_id), SQL_T(op), SQL_T(by), SQL_I(now_us)};
    return sql_exec(tx,
                    "INSERT INTO risk_case_evidence (case_id, operation_id, by_user, added_at_us) "
                    "VALUES ($1, $2, $3, $4)",
                    v, 4, NULL);
}

/* Links the alert's operations that case_id does not hold yet (held[0..*held_n), updated), up
 * to RISK_CASE_EVIDENCE_MAX; *added_out counts them. */
static enum cf_err evidence_link(struct sqltx *tx, const char *case_id,
                                 const struct risk_case_alert *a, const char *by, int64_t now_us,
                                 char (*held)[RISK_CASE_OP_BYTES_MAX], size_t *held_n,
                                 uint32_t *added_out)
{
    enum cf_err err = CF_OK;
    uint32_t added = 0;
    for (size_t i = 0; i < a->evidence_n && err == CF_OK; i++) {
        const char *op = a->evidence_ops[i];
        if (*held_n >= RISK_CASE_EVIDENCE_MAX || ids_hold(held, *held_n, op))
            continue;
        err = evidence_insert(tx, case_id, op, by, now_us);
        if (err == CF_OK) {
            risk_text_copy(held[(*held_n)++], RISK_CASE_OP_BYTES_MAX, op);
            added++;
        }
    }
    if (err == CF_OK)
        *added_out = added;
    CF_ASSERT(*held_n <= RISK_CASE_EVIDENCE_MAX);
    return err;
}

/* Events ------------------------------------------------------------------------------------- */

#define EV_COLS "row, case_id, type, ref, count, by_user, at_us, idem, request_hash"

struct event_read {
    struct risk_case_event ev;
    bool keyed;
    uint8_t request_hash[HASH_BYTES];
};

static void event_from_row(const struct sql_rows *r, size_t i, struct event_read *out)
{
    size_t col = 0, hash_len = 0;
    memset(out, 0, sizeof(*out));
    out->ev.row = (uint64_t)sql_row_int(r, i, col++);
    risk_text_copy(out->ev.case_id, sizeof(out->ev.case_id), sql_row_text(r, i, col++));
    out->ev.type = (uint8_t)sql_row_int(r, i, col++);
    risk_text_copy(out->ev.ref, sizeof(out->ev.ref), sql_row_text(r, i, col++));
    out->ev.count = (uint32_t)sql_row_int(r, i, col++);
    risk_text_copy(out->ev.by, sizeof(out->ev.by), sql_row_text(r, i, col++));
    out->ev.at_us = sql_row_int(r, i, col++);
    out->keyed = !sql_row_null(r, i, col++);
    const uint8_t *h = sql_row_blob(r, i, col++, &hash_len);
    if (h != NULL && hash_len == HASH_BYTES)
        memcpy(out->request_hash, h, HASH_BYTES);
    CF_ASSERT(col == sql_rows_cols(r));
}

/* Appends ev (case, type, ref, count, by and time set) and reads back its row: the newest of
 * the case, whose row the caller holds locked. */
static enum cf_err event_insert(struct sqltx *tx, struct risk_case_event *ev,
                                const struct risk_case_idem *idem)
{
    CF_ASSERT(ev->type >= RISK_CASE_EVENT_OPENED && ev->type <= RISK_CASE_EVENT_DECIDED);
    struct sql_value v[] = {
        SQL_T(ev->case_id),
        SQL_I(ev->type),
        SQL_T(ev->ref),
        SQL_I(ev->count),
        SQL_T(ev->by),
        SQL_I(ev->at_us),
        idem != NULL ? SQL_T(idem->key) : SQL_NUL,
        idem != NULL ? SQL_B(idem->request_hash, HASH_BYTES) : SQL_NUL,
    };
    enum cf_err err = sql_exec(tx,
                               "INSERT INTO risk_case_events (case_id, type, ref, count, by_user, "
                               "at_us, idem, request_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                               v, 8, NULL);
    int64_t row = 0;
    struct sql_value w[] = {SQL_T(ev->case_id)};
    if (err == CF_OK)
        err = query_int(tx, "SELECT MAX(row) FROM risk_case_events WHERE case_id = $1", w, 1, &row);
    if (err == CF_OK && row <= 0)
        err = CF_ERR_INTERNAL;
    if (err == CF_OK)
        ev->row = (uint64_t)row;
    return err;
}

static void event_init(struct risk_case_event *ev, const char *case_id, uint8_t type,
                       const char *ref, uint32_t count, const char *by, int64_t now_us)
{
    memset(ev, 0, sizeof(*ev));
    risk_text_copy(ev->case_id, sizeof(ev->case_id), case_id);
    ev->type = type;
    risk_text_copy(ev->ref, sizeof(ev->ref), ref);
    ev->count = count;
    risk_text_copy(ev->by, sizeof(ev->by), by);
    ev->at_us = now_us;
}

/* Alerts ------------------------------------------------------------------------------------- */

/* What one alert transaction decided. */
struct alert_outcome {
    char case_id[RISK_CASE_ID_BYTES_MAX];
    bool existed;
};

/* Adds the alert to the open case *cur (locked). */
static enum cf_err alert_add(struct sqltx *tx, const struct risk_case *cur,
                             const struct risk_case_alert *a, const char *by, int64_t now_us,
                             char (*held)[RISK_CASE_OP_BYTES_MAX])
{
    size_t held_n = 0;
    uint32_t added = 0;
    enum cf_err err = evidence_ids(tx, cur->id, held, &held_n);
    if (err == CF_OK)
        err = evidence_link(tx, cur->id, a, by, now_us, held, &held_n, &added);
    if (err != CF_OK || added == 0) /* nothing new: the case stays as it was */
        return err;
    struct sql_value v[] = {SQL_T(cur->id), SQL_I(added), SQL_T(a->detail != NULL ? a->detail : ""),
                            SQL_I(now_us)};
    err = sql_exec(tx,
                   "UPDATE risk_cases SET evidence_n = evidence_n + $2, alerts_n = alerts_n + 1, "
                   "detail = $3, updated_at_us = $4 WHERE id = $1",
                   v, 4, NULL);
    struct risk_case_event ev;
    event_init(&ev, cur->id, RISK_CASE_EVENT_ALERT_ADDED, a->scenario, added, by, now_us);
    return err == CF_OK ? event_insert(tx, &ev, NULL) : err;
}

/* Whether the newest closed case with the alert's key holds every operation of the alert (an
 * alert without operations: whether there is such a case at all); *id_out gets its id. */
static enum cf_err alert_decided(struct risk_cases *c, struct sqltx *tx,
                                 const struct risk_case_alert *a,
                                 char (*held)[RISK_CASE_OP_BYTES_MAX], bool *covered,
                                 char id_out[RISK_CASE_ID_BYTES_MAX])
{
    struct risk_case *last = calloc(1, sizeof(*last));
    if (last == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = case_select(c, tx,
                                  "SELECT " CASE_COLS " FROM risk_cases WHERE dedup_key = $1 "
                                  "AND status = 2 ORDER BY row DESC LIMIT 1",
                                  a->dedup_key, false, last);
    *covered = false;
    size_t held_n = 0;
    if (err == CF_OK)
        err = evidence_ids(tx, last->id, held, &held_n);
    if (err == CF_OK) {
        *covered = true;
        for (size_t i = 0; i < a->evidence_n && *covered; i++)
            *covered = ids_hold(held, held_n, a->evidence_ops[i]);
        risk_text_copy(id_out, RISK_CASE_ID_BYTES_MAX, last->id);
    }
    free(last);
    return err == CF_ERR_NOT_FOUND ? CF_OK : err;
}

/* Opens a new case for the alert. */
static enum cf_err alert_open(struct sqltx *tx, const struct risk_case_alert *a, const char *by,
                              int64_t now_us, char (*held)[RISK_CASE_OP_BYTES_MAX],
                              char id_out[RISK_CASE_ID_BYTES_MAX])
{
    char id[RISK_CASE_ID_BYTES_MAX];
    risk_id_new(RISK_CASE_ID_PREFIX, id, RISK_CASE_ID_BYTES_MAX);
    struct sql_value v[] = {
        SQL_T(id),
        SQL_I(a->kind),
        SQL_I(risk_cases_priority(a->kind, a->scenario)),
        SQL_T(a->subject),
        SQL_T(a->scenario),
        SQL_T(a->dedup_key),
        SQL_T(a->detail != NULL ? a->detail : ""),
        SQL_I(now_us),
    };
    enum cf_err err =
        sql_exec(tx,
                 "INSERT INTO risk_cases (id, kind, status, priority, decision, subject, scenario, "
                 "dedup_key, open_key, detail, assignee, reason_sealed, decided_by, decided_at_us, "
                 "alerts_n, evidence_n, notes_n, created_at_us, updated_at_us) VALUES ($1, $2, 1, "
                 "$3, 0, $4, $5, $6, $6, $7, '', NULL, '', 0, 1, 0, 0, $8, $8)",
                 v, 8, NULL);
    size_t held_n = 0;
    uint32_t added = 0;
    if (err == CF_OK)
        err = evidence_link(tx, id, a, by, now_us, held, &held_n, &added);
    struct sql_value w[] = {SQL_T(id), SQL_I(added)};
    if (err == CF_OK && added > 0)
        err = sql_exec(tx, "UPDATE risk_cases SET evidence_n = $2 WHERE id = $1", w, 2, NULL);
    struct risk_case_event ev;
    event_init(&ev, id, RISK_CASE_EVENT_OPENED, a->scenario, added, by, now_us);
    if (err == CF_OK)
        err = event_insert(tx, &ev, NULL);
    if (err == CF_OK)
        risk_text_copy(id_out, RISK_CASE_ID_BYTES_MAX, id);
    return err;
}

static enum cf_err alert_tx(struct risk_cases *c, const struct risk_case_alert *a, int64_t now_us,
                            char (*held)[RISK_CASE_OP_BYTES_MAX], struct risk_case *cur,
                            struct alert_outcome *out)
{
    const char *by = risk_cases_kind_name(a->kind);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(c->db, &tx);
    if (err != CF_OK)
        return err;
    err = case_select(c, tx, "SELECT " CASE_COLS " FROM risk_cases WHERE open_key = $1 FOR UPDATE",
                      a->dedup_key, false, cur);
    if (err == CF_OK) {
        out->existed = true;
        risk_text_copy(out->case_id, sizeof(out->case_id), cur->id);
        return risk_tx_end(tx, alert_add(tx, cur, a, by, now_us, held));
    }
    bool covered = false;
    if (err == CF_ERR_NOT_FOUND)
        err = alert_decided(c, tx, a, held, &covered, out->case_id);
    if (err == CF_OK && covered) {
        sql_rollback(tx);
        out->existed = true;
        return CF_OK;
    }
    out->existed = false;
    if (err == CF_OK)
        err = alert_open(tx, a, by, now_us, held, out->case_id);
    return risk_tx_end(tx, err);
}

enum cf_err risk_cases_alert(struct risk_cases *c, const struct risk_case_alert *a, int64_t now_us,
                             char case_id_out[RISK_CASE_ID_BYTES_MAX], bool *existed)
{
    CF_ASSERT(c != NULL && a != NULL && case_id_out != NULL && existed != NULL);
    if (a->evidence_n > RISK_CASE_ALERT_EVIDENCE_MAX)
        return CF_ERR_RANGE_TOO_LARGE;
    if (!alert_valid(a))
        return CF_ERR_INVALID_FIELD;
    char(*held)[RISK_CASE_OP_BYTES_MAX] = calloc(RISK_CASE_EVIDENCE_MAX, sizeof(*held));
    struct risk_case *cur = calloc(1, sizeof(*cur));
    struct alert_outcome out = {0};
    enum cf_err err = held == NULL || cur == NULL ? CF_ERR_NOMEM : CF_ERR_STORAGE_CONFLICT;
    for (int i = 0; i < TX_TRIES && err == CF_ERR_STORAGE_CONFLICT; i++)
        err = alert_tx(c, a, now_us, held, cur, &out);
    free(held);
    free(cur);
    if (err != CF_OK)
        return err;
    CF_ASSERT(case_id_valid(out.case_id));
    risk_text_copy(case_id_out, RISK_CASE_ID_BYTES_MAX, out.case_id);
    *existed = out.existed;
    return CF_OK;
}

/* Reading cases ------------------------------------------------------------------------------ */

enum cf_err risk_cases_get(struct risk_cases *c, const char *id, struct risk_case *out)
{
    CF_ASSERT(c != NULL && out != NULL);
    if (!case_id_valid(id))
        return CF_ERR_NOT_FOUND;
    struct risk_case *got = calloc(1, sizeof(*got));
    if (got == NULL)
        return CF_ERR_NOMEM;
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(c->db, &tx);
    if (err == CF_OK) {
        err =
            case_select(c, tx, "SELECT " CASE_COLS " FROM risk_cases WHERE id = $1", id, true, got);
        sql_rollback(tx);
    }
    if (err == CF_OK)
        *out = *got;
    hash_wipe(got, sizeof(*got)); /* the reason */
    free(got);
    return err;
}

/* Appends " AND <column> <op> $n" and its parameter. */
static void where_add(char *sql, size_t bytes, struct sql_value *v, size_t *n, const char *cond,
                      struct sql_value value)
{
    size_t len = strlen(sql);
    int w = snprintf(sql + len, bytes - len, " AND %s $%zu", cond, *n + 1);
    CF_ASSERT(w > 0 && (size_t)w < bytes - len && *n < SQL_PARAMS_MAX);
    v[(*n)++] = value;
}

static bool filter_valid(const struct risk_case_filter *f)
{
    if (f->subject != NULL && !risk_cases_party_valid(f->subject))
        return false;
    if (f->assignee != NULL && f->assignee[0] != '\0' &&
        !risk_token_valid(f->assignee, RISK_CASE_PARTY_BYTES_MAX, false))
        return false;
    if (f->scenario != NULL && !chars_valid(f->scenario, RISK_CASE_SCENARIO_BYTES_MAX, name_char))
        return false;
    return f->created_from_us >= 0 && f->created_to_us >= 0;
}

enum cf_err risk_cases_list(struct risk_cases *c, const struct risk_case_filter *f,
                            struct risk_case *out, size_t max, size_t *n_out)
{
    CF_ASSERT(c != NULL && f != NULL && out != NULL && n_out != NULL);
    CF_ASSERT(max >= 1 && max <= RISK_CASE_LIST_MAX);
    if (!filter_valid(f))
        return CF_ERR_INVALID_FIELD;
    char sql[LIST_SQL_BYTES] = "SELECT " CASE_COLS " FROM risk_cases WHERE row < $1";
    struct sql_value v[SQL_PARAMS_MAX];
    size_t n = 0;
    uint64_t below = f->before_row > 0 && f->before_row <= (uint64_t)INT64_MAX
                         ? f->before_row
                         : (uint64_t)INT64_MAX;
    v[n++] = SQL_I(below);
    if (f->status != 0)
        where_add(sql, sizeof(sql), v, &n, "status =", SQL_I(f->status));
    if (f->kind != 0)
        where_add(sql, sizeof(sql), v, &n, "kind =", SQL_I(f->kind));
    if (f->subject != NULL)
        where_add(sql, sizeof(sql), v, &n, "subject =", SQL_T(f->subject));
    if (f->assignee != NULL)
        where_add(sql, sizeof(sql), v, &n, "assignee =", SQL_T(f->assignee));
    if (f->scenario != NULL)
        where_add(sql, sizeof(sql), v, &n, "scenario =", SQL_T(f->scenario));
    if (f->created_from_us > 0)
        where_add(sql, sizeof(sql), v, &n, "created_at_us >=", SQL_I(f->created_from_us));
    if (f->created_to_us > 0)
        where_add(sql, sizeof(sql), v, &n, "created_at_us <", SQL_I(f->created_to_us));
    size_t len = strlen(sql);
    int w = snprintf(sql + len, sizeof(sql) - len, " ORDER BY row DESC LIMIT $%zu", n + 1);
    CF_ASSERT(w > 0 && (size_t)w < sizeof(sql) - len);
    v[n++] = SQL_I(max);
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(c->db, &tx);
    if (err == CF_OK) {
        err = sql_query(tx, sql, v, n, &r);
        sql_rollback(tx);
    }
    size_t rows = err == CF_OK ? sql_rows_n(r) : 0, got = 0;
    for (size_t i = 0; i < rows && i < max && err == CF_OK; i++) {
        if ((err = case_from_row(c, r, i, false, &out[got])) == CF_OK)
            got++;
    }
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = got;
    return err;
}

/* Staff writes ------------------------------------------------------------------------------- */

/* One staff write: the event type and what it carries. */
struct write_req {
    uint8_t type;
    const char *case_id;
    const char *by;
    const struct risk_case_idem *idem;
    int64_t now_us;
    const char *assignee;     /* assign */
    const char *text;         /* note, decide (the reason) */
    const char *operation_id; /* evidence */
    uint8_t decision;         /* decide */
};

/* The event idem's key made, checked against this request: CF_OK (a replay), CF_ERR_NOT_FOUND
 * (a new key) or CF_ERR_IDEM_KEY_REUSED. */
static enum cf_err event_by_idem(struct sqltx *tx, const struct write_req *w,
                                 struct event_read *out)
{
    struct sql_value v[] = {SQL_T(w->idem->key)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        sql_query(tx, "SELECT " EV_COLS " FROM risk_case_events WHERE idem = $1", v, 1, &r);
    if (err != CF_OK)
        return err;
    if (sql_rows_n(r) == 0)
        err = CF_ERR_NOT_FOUND;
    else
        event_from_row(r, 0, out);
    sql_rows_free(r);
    if (err == CF_OK && (out->ev.type != w->type || strcmp(out->ev.case_id, w->case_id) != 0 ||
                         !hash_equal(out->request_hash, w->idem->request_hash, HASH_BYTES)))
        return CF_ERR_IDEM_KEY_REUSED;
    return err;
}

static enum cf_err apply_assign(struct sqltx *tx, const struct write_req *w,
                                struct risk_case_event *ev)
{
    struct sql_value v[] = {SQL_T(w->case_id), SQL_T(w->assignee), SQL_I(w->now_us)};
    event_init(ev, w->case_id, RISK_CASE_EVENT_ASSIGNED, w->assignee, 0, w->by, w->now_us);
    return sql_exec(tx, "UPDATE risk_cases SET assignee = $2, updated_at_us = $3 WHERE id = $1", v,
                    3, NULL);
}

static enum cf_err apply_note(struct risk_cases *c, struct sqltx *tx, const struct risk_case *cur,
                              const struct write_req *w, struct risk_case_event *ev)
{
    if (cur->notes_n >= RISK_CASE_NOTES_MAX)
        return CF_ERR_RANGE_TOO_LARGE;
    char note_id[RISK_CASE_ID_BYTES_MAX];
    risk_id_new(RISK_CASE_NOTE_ID_PREFIX, note_id, RISK_CASE_ID_BYTES_MAX);
    uint8_t *sealed = malloc(NOTE_SEALED_BYTES_MAX);
    size_t sealed_len = 0;
    enum cf_err err = sealed == NULL ? CF_ERR_NOMEM
                                     : text_seal(c, note_id, "note", w->text, sealed,
                                                 NOTE_SEALED_BYTES_MAX, &sealed_len);
    struct sql_value v[] = {SQL_T(note_id), SQL_T(w->case_id), SQL_B(sealed, sealed_len),
                            SQL_T(w->by), SQL_I(w->now_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "INSERT INTO risk_case_notes (id, case_id, text_sealed, by_user, at_us) "
                       "VALUES ($1, $2, $3, $4, $5)",
                       v, 5, NULL);
    free(sealed);
    struct sql_value u[] = {SQL_T(w->case_id), SQL_I(w->now_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "UPDATE risk_cases SET notes_n = notes_n + 1, updated_at_us = $2 "
                       "WHERE id = $1",
                       u, 2, NULL);
    event_init(ev, w->case_id, RISK_CASE_EVENT_NOTE_ADDED, note_id, 0, w->by, w->now_us);
    return err;
}

static enum cf_err apply_evidence(struct sqltx *tx, const struct risk_case *cur,
                                  const struct write_req *w, struct risk_case_event *ev)
{
    int64_t exists = 0;
    struct sql_value v[] = {SQL_T(w->case_id), SQL_T(w->operation_id)};
    enum cf_err err = query_int(tx,
                                "SELECT COUNT(*) FROM risk_case_evidence WHERE case_id = $1 AND "
                                "operation_id = $2",
                                v, 2, &exists);
    if (err == CF_OK && exists > 0)
        return CF_ERR_CONFLICT;
    if (err == CF_OK && cur->evidence_n >= RISK_CASE_EVIDENCE_MAX)
        return CF_ERR_RANGE_TOO_LARGE;
    if (err == CF_OK)
        err = evidence_insert(tx, w->case_id, w->operation_id, w->by, w->now_us);
    struct sql_value u[] = {SQL_T(w->case_id), SQL_I(w->now_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "UPDATE risk_cases SET evidence_n = evidence_n + 1, updated_at_us = $2 "
                       "WHERE id = $1",
                       u, 2, NULL);
    event_init(ev, w->case_id, RISK_CASE_EVENT_EVIDENCE_ADDED, w->operation_id, 1, w->by,
               w->now_us);
    return err;
}

static enum cf_err apply_decide(struct risk_cases *c, struct sqltx *tx, const struct write_req *w,
                                struct risk_case_event *ev)
{
    uint8_t sealed[REASON_SEALED_BYTES_MAX];
    size_t sealed_len = 0;
    enum cf_err err =
        text_seal(c, w->case_id, "reason", w->text, sealed, sizeof(sealed), &sealed_len);
    struct sql_value v[] = {SQL_T(w->case_id), SQL_I(w->decision), SQL_B(sealed, sealed_len),
                            SQL_T(w->by), SQL_I(w->now_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "UPDATE risk_cases SET status = 2, open_key = NULL, decision = $2, "
                       "reason_sealed = $3, decided_by = $4, decided_at_us = $5, "
                       "updated_at_us = $5 WHERE id = $1",
                       v, 5, NULL);
    event_init(ev, w->case_id, RISK_CASE_EVENT_DECIDED, risk_cases_decision_name(w->decision), 0,
               w->by, w->now_us);
    return err;
}

/* One staff write in one transaction: lock the case, answer a replay, refuse a closed case,
 * apply, record the event. */
static enum cf_err write_tx(struct risk_cases *c, const struct write_req *w, struct risk_case *cur,
                            struct event_read *got, bool *replay)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(c->db, &tx);
    if (err != CF_OK)
        return err;
    err = case_select(c, tx, "SELECT " CASE_COLS " FROM risk_cases WHERE id = $1 FOR UPDATE",
                      w->case_id, false, cur);
    enum cf_err stored =
        err == CF_OK && w->idem != NULL ? event_by_idem(tx, w, got) : CF_ERR_NOT_FOUND;
    if (stored != CF_ERR_NOT_FOUND) { /* a replay, a reused key or a storage error */
        sql_rollback(tx);
        *replay = stored == CF_OK;
        return stored;
    }
    if (err == CF_OK && cur->status != RISK_CASE_OPEN)
        err = CF_ERR_CONFLICT;
    struct risk_case_event *ev = &got->ev;
    if (err == CF_OK && w->type == RISK_CASE_EVENT_ASSIGNED)
        err = apply_assign(tx, w, ev);
    else if (err == CF_OK && w->type == RISK_CASE_EVENT_NOTE_ADDED)
        err = apply_note(c, tx, cur, w, ev);
    else if (err == CF_OK && w->type == RISK_CASE_EVENT_EVIDENCE_ADDED)
        err = apply_evidence(tx, cur, w, ev);
    else if (err == CF_OK)
        err = apply_decide(c, tx, w, ev);
    if (err == CF_OK)
        err = event_insert(tx, ev, w->idem);
    *replay = false;
    return risk_tx_end(tx, err);
}

static enum cf_err write_check(const struct write_req *w)
{
    if (!risk_token_valid(w->by, RISK_CASE_PARTY_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    if (w->idem != NULL && !risk_token_valid(w->idem->key, RISK_CASE_IDEM_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    switch (w->type) {
    case RISK_CASE_EVENT_ASSIGNED:
        return w->assignee != NULL &&
                       (w->assignee[0] == '\0' || (strncmp(w->assignee, "usr_", 4) == 0 &&
                                                   risk_cases_party_valid(w->assignee)))
                   ? CF_OK
                   : CF_ERR_INVALID_FIELD;
    case RISK_CASE_EVENT_NOTE_ADDED:
        return risk_cases_text_valid(w->text, RISK_CASE_NOTE_CHARS_MAX, "text", NULL)
                   ? CF_OK
                   : CF_ERR_INVALID_FIELD;
    case RISK_CASE_EVENT_EVIDENCE_ADDED:
        return risk_cases_op_valid(w->operation_id) ? CF_OK : CF_ERR_INVALID_FIELD;
    default:
        return w->decision >= RISK_CASE_DECISION_CLEAR &&
                       w->decision <= RISK_CASE_DECISION_REPORT &&
                       risk_cases_text_valid(w->text, RISK_CASE_REASON_CHARS_MAX, "reason", NULL)
                   ? CF_OK
                   : CF_ERR_INVALID_FIELD;
    }
}

static enum cf_err write_run(struct risk_cases *c, const struct write_req *w,
                             struct risk_case_event *out, bool *replay_out)
{
    CF_ASSERT(c != NULL && w != NULL && out != NULL);
    CF_ASSERT(w->type >= RISK_CASE_EVENT_ASSIGNED && w->type <= RISK_CASE_EVENT_DECIDED);
    if (!case_id_valid(w->case_id))
        return CF_ERR_NOT_FOUND;
    enum cf_err err = write_check(w);
    if (err != CF_OK)
        return err;
    struct risk_case *cur = calloc(1, sizeof(*cur));
    struct event_read *got = calloc(1, sizeof(*got));
    bool replay = false;
    err = cur == NULL || got == NULL ? CF_ERR_NOMEM : CF_ERR_STORAGE_CONFLICT;
    for (int i = 0; i < TX_TRIES && err == CF_ERR_STORAGE_CONFLICT; i++)
        err = write_tx(c, w, cur, got, &replay);
    if (err == CF_OK) {
        *out = got->ev;
        if (replay_out != NULL)
            *replay_out = replay;
        CF_ASSERT(out->row > 0 && out->type == w->type);
    }
    free(cur);
    free(got);
    return err;
}

enum cf_err risk_cases_assign(struct risk_cases *c, const char *id, const char *assignee,
                              const char *by, const struct risk_case_idem *idem, int64_t now_us,
                              struct risk_case_event *out, bool *replay_out)
{
    struct write_req w = {.type = RISK_CASE_EVENT_ASSIGNED,
                          .case_id = id,
                          .by = by,
                          .idem = idem,
                          .now_us = now_us,
                          .assignee = assignee};
    return write_run(c, &w, out, replay_out);
}

enum cf_err risk_cases_note_add(struct risk_cases *c, const char *id, const char *text,
                                const char *by, const struct risk_case_idem *idem, int64_t now_us,
                                struct risk_case_event *out, bool *replay_out)
{
    struct write_req w = {.type = RISK_CASE_EVENT_NOTE_ADDED,
                          .case_id = id,
                          .by = by,
                          .idem = idem,
                          .now_us = now_us,
                          .text = text};
    return write_run(c, &w, out, replay_out);
}

enum cf_err risk_cases_evidence_add(struct risk_cases *c, const char *id, const char *operation_id,
                                    const char *by, const struct risk_case_idem *idem,
                                    int64_t now_us, struct risk_case_event *out, bool *replay_out)
{
    struct write_req w = {.type = RISK_CASE_EVENT_EVIDENCE_ADDED,
                          .case_id = id,
                          .by = by,
                          .idem = idem,
                          .now_us = now_us,
                          .operation_id = operation_id};
    return write_run(c, &w, out, replay_out);
}

enum cf_err risk_cases_decide(struct risk_cases *c, const char *id, uint8_t decision,
                              const char *reason, const char *by, const struct risk_case_idem *idem,
                              int64_t now_us, struct risk_case_event *out, bool *replay_out)
{
    struct write_req w = {.type = RISK_CASE_EVENT_DECIDED,
                          .case_id = id,
                          .by = by,
                          .idem = idem,
                          .now_us = now_us,
                          .text = reason,
                          .decision = decision};
    return write_run(c, &w, out, replay_out);
}

/* Reading a case's parts --------------------------------------------------------------------- */

/* Runs query ($1 = the case id, $2 = max) in a transaction that first checks the case exists;
 * *r_out gets the rows (the caller frees them). */
static enum cf_err parts_query(struct risk_cases *c, const char *id, const char *sql, size_t max,
                               struct sql_rows **r_out)
{
    if (!case_id_valid(id))
        return CF_ERR_NOT_FOUND;
    struct sqltx *tx = NULL;
    int64_t exists = 0;
    struct sql_value v[] = {SQL_T(id), SQL_I(max)};
    enum cf_err err = sql_begin(c->db, &tx);
    if (err != CF_OK)
        return err;
    err = query_int(tx, "SELECT COUNT(*) FROM risk_cases WHERE id = $1", v, 1, &exists);
    if (err == CF_OK && exists == 0)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK)
        err = sql_query(tx, sql, v, 2, r_out);
    sql_rollback(tx);
    return err;
}

enum cf_err risk_cases_notes(struct risk_cases *c, const char *id, struct risk_case_note *out,
                             size_t max, size_t *n_out)
{
    CF_ASSERT(c != NULL && max <= RISK_CASE_NOTES_MAX && n_out != NULL);
    struct sql_rows *r = NULL;
    enum cf_err err = parts_query(c, id,
                                  "SELECT row, id, text_sealed, by_user, at_us FROM "
                                  "risk_case_notes WHERE case_id = $1 ORDER BY row LIMIT $2",
                                  max, &r);
    size_t n = err == CF_OK ? sql_rows_n(r) : 0, got = 0;
    for (size_t i = 0; i < n && i < max && err == CF_OK; i++) {
        struct risk_case_note *note = &out[got];
        size_t sealed_len = 0;
        note->row = (uint64_t)sql_row_int(r, i, 0);
        risk_text_copy(note->id, sizeof(note->id), sql_row_text(r, i, 1));
        const uint8_t *sealed = sql_row_blob(r, i, 2, &sealed_len);
        risk_text_copy(note->by, sizeof(note->by), sql_row_text(r, i, 3));
        note->at_us = sql_row_int(r, i, 4);
        err = sealed == NULL ? CF_ERR_CORRUPT
                             : text_open(c, note->id, "note", sealed, sealed_len, note->text,
                                         sizeof(note->text));
        got += err == CF_OK ? 1 : 0;
    }
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = got;
    return err;
}

enum cf_err risk_cases_evidence(struct risk_cases *c, const char *id,
                                struct risk_case_evidence *out, size_t max, size_t *n_out)
{
    CF_ASSERT(c != NULL && max <= RISK_CASE_EVIDENCE_MAX && n_out != NULL);
    struct sql_rows *r = NULL;
    enum cf_err err = parts_query(c, id,
                                  "SELECT row, operation_id, by_user, added_at_us FROM "
                                  "risk_case_evidence WHERE case_id = $1 ORDER BY row LIMIT $2",
                                  max, &r);
    if (err != CF_OK)
        return err;
    size_t n = sql_rows_n(r);
    for (size_t i = 0; i < n && i < max; i++) {
        out[i].row = (uint64_t)sql_row_int(r, i, 0);
        risk_text_copy(out[i].operation_id, sizeof(out[i].operation_id), sql_row_text(r, i, 1));
        risk_text_copy(out[i].by, sizeof(out[i].by), sql_row_text(r, i, 2));
        out[i].added_at_us = sql_row_int(r, i, 3);
    }
    *n_out = n < max ? n : max;
    sql_rows_free(r);
    return CF_OK;
}

enum cf_err risk_cases_events(struct risk_cases *c, const char *id, struct risk_case_event *out,
                              size_t max, size_t *n_out)
{
    CF_ASSERT(c != NULL && max <= RISK_CASE_EVENTS_MAX && n_out != NULL);
    struct sql_rows *r = NULL;
    enum cf_err err = parts_query(c, id,
                                  "SELECT " EV_COLS " FROM risk_case_events WHERE case_id = $1 "
                                  "ORDER BY row LIMIT $2",
                                  max, &r);
    if (err != CF_OK)
        return err;
    struct event_read one;
    size_t n = sql_rows_n(r);
    for (size_t i = 0; i < n && i < max; i++) {
        event_from_row(r, i, &one);
        out[i] = one.ev;
    }
    *n_out = n < max ? n : max;
    sql_rows_free(r);
    return CF_OK;
}

/* Watermarks --------------------------------------------------------------------------------- */

static bool mark_name_valid(const char *name)
{
    return chars_valid(name, RISK_CASE_MARK_NAME_BYTES_MAX, name_char);
}

enum cf_err risk_cases_mark_get(struct risk_cases *c, const char *name, struct risk_case_mark *out)
{
    CF_ASSERT(c != NULL && out != NULL);
    if (!mark_name_valid(name))
        return CF_ERR_INVALID_FIELD;
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(name)};
    enum cf_err err = sql_begin(c->db, &tx);
    if (err != CF_OK)
        return err;
    err = sql_query(tx, "SELECT at_us, row_pos FROM risk_case_marks WHERE name = $1", v, 1, &r);
    sql_rollback(tx);
    if (err == CF_OK) {
        bool set = sql_rows_n(r) > 0;
        out->at_us = set ? sql_row_int(r, 0, 0) : 0;
        out->row = set ? (uint64_t)sql_row_int(r, 0, 1) : 0;
    }
    sql_rows_free(r);
    return err;
}

static enum cf_err mark_tx(struct risk_cases *c, const char *name,
                           const struct risk_case_mark *mark, int64_t now_us)
{
    struct sqltx *tx = NULL;
    int64_t changed = 0;
    struct sql_value v[] = {SQL_T(name), SQL_I(mark->at_us), SQL_I(mark->row), SQL_I(now_us)};
    enum cf_err err = sql_begin(c->db, &tx);
    if (err != CF_OK)
        return err;
    err = sql_exec(tx,
                   "UPDATE risk_case_marks SET at_us = $2, row_pos = $3, updated_at_us = $4 "
                   "WHERE name = $1",
                   v, 4, &changed);
    if (err == CF_OK && changed == 0)
        err = sql_exec(tx,
                       "INSERT INTO risk_case_marks (name, at_us, row_pos, updated_at_us) "
                       "VALUES ($1, $2, $3, $4)",
                       v, 4, NULL);
    return risk_tx_end(tx, err);
}

enum cf_err risk_cases_mark_set(struct risk_cases *c, const char *name,
                                const struct risk_case_mark *mark, int64_t now_us)
{
    CF_ASSERT(c != NULL && mark != NULL);
    if (!mark_name_valid(name) || mark->at_us < 0 || mark->row > (uint64_t)INT64_MAX)
        return CF_ERR_INVALID_FIELD;
    enum cf_err err = CF_ERR_STORAGE_CONFLICT;
    for (int i = 0; i < TX_TRIES && err == CF_ERR_STORAGE_CONFLICT; i++)
        err = mark_tx(c, name, mark, now_us); /* two first sets meet on the primary key */
    return err;
}

/* The sweep's settings ----------------------------------------------------------------------- */

void risk_cases_sweep_config_default(struct risk_cases_sweep_config *out)
{
    CF_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    aml_config_default(&out->aml);
    out->period_s = RISK_CASES_SWEEP_PERIOD_S_DEFAULT;
}

/* A whole decimal number in [lo, hi]. */
static bool number_parse(const char *text, int64_t lo, int64_t hi, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (text[0] < '0' || text[0] > '9')
        return false;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (int64_t)v;
    return true;
}

/* "structuring,fan_in", "all" or "none" into a scenario set. */
static bool scenarios_parse(const char *text, uint32_t *out)
{
    if (strcmp(text, "all") == 0 || strcmp(text, "none") == 0) {
        *out = text[0] == 'a' ? AML_SCENARIOS_ALL : 0;
        return true;
    }
    uint32_t set = 0;
    const char *p = text;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        bool found = false;
        for (int s = 0; s < AML_SCENARIO_COUNT; s++) {
            const char *name = aml_scenario_name((enum aml_scenario)s);
            if (strlen(name) == n && strncmp(p, name, n) == 0) {
                set |= AML_SCENARIO_BIT(s);
                found = true;
            }
        }
        if (!found)
            return false;
        p += n + (p[n] == ',' ? 1 : 0);
    }
    *out = set;
    return set != 0;
}

/* One "CODE:LARGE[:PASS_THROUGH_MIN[:DORMANT_MIN]]" entry of n bytes at p. */
static bool rule_parse(const char *p, size_t n, struct aml_currency_rule *rule)
{
    char entry[96];
    if (n == 0 || n >= sizeof(entry))
        return false;
    memcpy(entry, p, n);
    entry[n] = '\0';
    char *parts[4] = {NULL, NULL, NULL, NULL};
    size_t k = 0;
    char *save = NULL;
    for (char *tok = strtok_r(entry, ":", &save); tok != NULL; tok = strtok_r(NULL, ":", &save)) {
        if (k == 4)
            return false;
        parts[k++] = tok;
    }
    size_t code_n = k > 0 ? strlen(parts[0]) : 0;
    if (k < 2 || code_n == 0 || code_n > MONEY_CODE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < code_n; i++) {
        char ch = parts[0][i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    memset(rule, 0, sizeof(*rule));
    memcpy(rule->currency, parts[0], code_n);
    if (!number_parse(parts[1], 0, INT64_MAX, &rule->large_minor))
        return false;
    rule->pass_through_min_minor = rule->large_minor / 10;
    rule->dormant_min_minor = rule->large_minor / 10;
    if (k > 2 && !number_parse(parts[2], 0, INT64_MAX, &rule->pass_through_min_minor))
        return false;
    return k <= 3 || number_parse(parts[3], 0, INT64_MAX, &rule->dormant_min_minor);
}

static bool currencies_parse(const char *text, struct aml_config *cfg)
{
    struct aml_currency_rule rules[AML_CURRENCIES_MAX];
    size_t n = 0;
    const char *p = text;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        if (n == AML_CURRENCIES_MAX || !rule_parse(p, len, &rules[n]))
            return false;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(rules[i].currency, rules[n].currency) == 0)
                return false;
        }
        n++;
        p += len + (p[len] == ',' ? 1 : 0);
    }
    if (n == 0)
        return false;
    memcpy(cfg->currencies, rules, n * sizeof(rules[0]));
    cfg->currencies_n = n;
    return true;
}

#define NUM_KEYS_MAX 16 /* the numeric keys below */

/* The numeric keys: where each goes and its range. */
struct num_key {
    const char *key;
    const char *detail;
    int64_t lo, hi;
    int64_t *i64; /* one of these two is set */
    uint32_t *u32;
};

static size_t num_keys(struct risk_cases_sweep_config *s, struct num_key *k)
{
    struct aml_config *a = &s->aml;
    const struct num_key keys[] = {
        {"aml_structuring_band_bps", "aml_structuring_band_bps: 1 to 9999", 1, AML_BPS_MAX - 1,
         &a->structuring_band_bps, NULL},
        {"aml_structuring_count_min", "aml_structuring_count_min: 2 to 1000", 2, AML_COUNT_MIN_MAX,
         NULL, &a->structuring_count_min},
        {"aml_structuring_window_s", "aml_structuring_window_s: 1 to 31622400", 1, AML_WINDOW_S_MAX,
         &a->structuring_window_s, NULL},
        {"aml_pass_through_out_bps", "aml_pass_through_out_bps: 1 to 10000", 1, AML_BPS_MAX,
         &a->pass_through_out_bps, NULL},
        {"aml_pass_through_window_s", "aml_pass_through_window_s: 1 to 31622400", 1,
         AML_WINDOW_S_MAX, &a->pass_through_window_s, NULL},
        {"aml_dormant_s", "aml_dormant_s: 1 to 316224000", 1, AML_DORMANT_S_MAX, &a->dormant_s,
         NULL},
        {"aml_dormant_wake_window_s", "aml_dormant_wake_window_s: 1 to 31622400", 1,
         AML_WINDOW_S_MAX, &a->dormant_wake_window_s, NULL},
        {"aml_fan_in_count_min", "aml_fan_in_count_min: 2 to 1000", 2, AML_COUNT_MIN_MAX, NULL,
         &a->fan_in_count_min},
        {"aml_fan_in_window_s", "aml_fan_in_window_s: 1 to 31622400", 1, AML_WINDOW_S_MAX,
         &a->fan_in_window_s, NULL},
        {"aml_fan_out_count_min", "aml_fan_out_count_min: 2 to 1000", 2, AML_COUNT_MIN_MAX, NULL,
         &a->fan_out_count_min},
        {"aml_fan_out_window_s", "aml_fan_out_window_s: 1 to 31622400", 1, AML_WINDOW_S_MAX,
         &a->fan_out_window_s, NULL},
        {"aml_sweep_period_s", "aml_sweep_period_s: 0 to 86400", 0, RISK_CASES_SWEEP_PERIOD_S_MAX,
         NULL, &s->period_s},
    };
    _Static_assert(sizeof(keys) / sizeof(keys[0]) <= NUM_KEYS_MAX, "num_key table too long");
    memcpy(k, keys, sizeof(keys));
    return sizeof(keys) / sizeof(keys[0]);
}

enum cf_err risk_cases_sweep_config_set(struct risk_cases_sweep_config *s, const char *key,
                                        const char *value, const char **detail_out)
{
    CF_ASSERT(s != NULL && key != NULL && value != NULL);
    const char *why = NULL;
    bool ok = true;
    if (strcmp(key, "aml_scenarios") == 0) {
        uint32_t set = 0;
        ok = scenarios_parse(value, &set);
        why = "aml_scenarios: all, none or scenario names separated by commas";
        if (ok)
            s->aml.scenarios = set;
    } else if (strcmp(key, "aml_currencies") == 0) {
        struct aml_config copy = s->aml;
        ok = currencies_parse(value, &copy);
        why = "aml_currencies: CODE:LARGE[:PASS_THROUGH_MIN[:DORMANT_MIN]],... in minor units";
        if (ok)
            s->aml = copy;
    } else if (strcmp(key, "operator_name") == 0) {
        size_t n = strlen(value);
        ok = n > 0 && n < sizeof(s->operator_name);
        why = "operator_name: 1 to 127 bytes";
        if (ok)
            memcpy(s->operator_name, value, n + 1);
    } else {
        struct num_key k[NUM_KEYS_MAX];
        size_t n = num_keys(s, k), i = 0;
        while (i < n && strcmp(k[i].key, key) != 0)
            i++;
        if (i == n)
            return CF_ERR_NOT_FOUND;
        int64_t v = 0;
        ok = number_parse(value, k[i].lo, k[i].hi, &v);
        why = k[i].detail;
        if (ok && k[i].i64 != NULL)
            *k[i].i64 = v;
        else if (ok)
            *k[i].u32 = (uint32_t)v;
    }
    if (!ok && detail_out != NULL)
        *detail_out = why;
    return ok ? CF_OK : CF_ERR_CONFIG;
}
