/*
 * freeze.c - account freezes: the schema, the handle, freezing and unfreezing, reads; see
 * freeze.h.
 *
 * Two tables: risk_freeze_events (append-only; `row` orders history) and risk_freezes (one row
 * per frozen party, naming its freeze event and copying the event's few columns the payment
 * path reads, so peek and list read that row alone: one indexed read, no join, no sealed
 * reason). A put inserts the event and the row in one transaction: two puts for one party meet
 * on the primary key, and the loser (CF_ERR_STORAGE_CONFLICT on PostgreSQL) re-reads to answer
 * its key's replay or a conflict. A clear reads the row FOR UPDATE, appends the unfreeze event
 * and deletes the row.
 */
#include "risk/freeze.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "crypto/vault.h"
#include "risk/internal.h"
#include "store/sql/sql.h"

/* The sealed reason's largest size. */
#define REASON_SEALED_BYTES_MAX (RISK_FREEZE_REASON_BYTES_MAX + VAULT_OVERHEAD_BYTES)
/* "risk_freeze:<event id>:reason" */
#define REASON_AAD_BYTES (RISK_FREEZE_ID_BYTES_MAX + 32)

struct risk_freeze {
    struct sqldb *db;
    risk_freeze_vault_fn vault; /* the current master keys (they may be rotated while running) */
    void *vault_ctx;
};

/* Schema ------------------------------------------------------------------------------------- */

/* %1$s: the blob type; %2$s: the row key (an auto-incrementing integer primary key). */
#define FREEZE_SCHEMA                                                                              \
    "CREATE TABLE risk_freeze_events (row %2$s, id TEXT NOT NULL UNIQUE, party TEXT NOT NULL, "    \
    "kind INTEGER NOT NULL, reason_sealed %1$s NOT NULL, blocks_incoming INTEGER NOT NULL, "       \
    "freeze_id TEXT NOT NULL, by_user TEXT NOT NULL, at_us BIGINT NOT NULL, idem TEXT UNIQUE, "    \
    "request_hash %1$s);"                                                                          \
    "CREATE INDEX risk_freeze_events_party ON risk_freeze_events(party, row);"                     \
    "CREATE TABLE risk_freezes (party TEXT PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "           \
    "event_row BIGINT NOT NULL, blocks_incoming INTEGER NOT NULL, by_user TEXT NOT NULL, "         \
    "at_us BIGINT NOT NULL);"                                                                      \
    "CREATE INDEX risk_freezes_row ON risk_freezes(event_row);"

enum cf_err risk_freeze_open(struct sqldb *db, risk_freeze_vault_fn vault, void *vault_ctx,
                             struct risk_freeze **out)
{
    CF_ASSERT(db != NULL && vault != NULL && out != NULL);
    enum cf_err err = risk_schema_migrate(db, "risk_freeze", FREEZE_SCHEMA);
    if (err != CF_OK)
        return err;
    struct risk_freeze *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return CF_ERR_NOMEM;
    f->db = db;
    f->vault = vault;
    f->vault_ctx = vault_ctx;
    *out = f;
    return CF_OK;
}

void risk_freeze_close(struct risk_freeze *f) { free(f); }

/* Validation --------------------------------------------------------------------------------- */

bool risk_freeze_party_valid(const char *text) { return risk_party_valid(text); }

bool risk_freeze_reason_valid(const char *text, const char **detail_out)
{
    static const char *const why[] = {"", "reason: 1 to 500 characters", "reason: not valid UTF-8",
                                      "reason: no control characters"};
    enum risk_text_verdict v = risk_text_check(text, RISK_FREEZE_REASON_BYTES_MAX,
                                               RISK_FREEZE_REASON_CHARS_MAX, RISK_TEXT_LINES, NULL);
    if (v != RISK_TEXT_OK && detail_out != NULL)
        *detail_out = why[v];
    return v == RISK_TEXT_OK;
}

/* Shared helpers ----------------------------------------------------------------------------- */

static void reason_aad(const char *event_id, char aad[REASON_AAD_BYTES])
{
    int n = snprintf(aad, REASON_AAD_BYTES, "risk_freeze:%s:reason", event_id);
    CF_ASSERT(n > 0 && n < REASON_AAD_BYTES);
}

static enum cf_err reason_seal(struct risk_freeze *f, const char *event_id, const char *reason,
                               uint8_t out[REASON_SEALED_BYTES_MAX], size_t *len_out)
{
    char aad[REASON_AAD_BYTES];
    reason_aad(event_id, aad);
    return risk_seal(f->vault, f->vault_ctx, aad, reason, strlen(reason), out,
                     REASON_SEALED_BYTES_MAX, len_out);
}

static enum cf_err reason_open(struct risk_freeze *f, const char *event_id, const uint8_t *ct,
                               size_t n, char out[RISK_FREEZE_REASON_BYTES_MAX])
{
    char aad[REASON_AAD_BYTES];
    reason_aad(event_id, aad);
    return risk_unseal_text(f->vault, f->vault_ctx, aad, ct, n, out, RISK_FREEZE_REASON_BYTES_MAX);
}

/* Events ------------------------------------------------------------------------------------- */

#define EV_COLS                                                                                    \
    "row, id, kind, party, reason_sealed, blocks_incoming, freeze_id, by_user, at_us, "            \
    "request_hash"
#define EV_COLS_E                                                                                  \
    "e.row, e.id, e.kind, e.party, e.reason_sealed, e.blocks_incoming, e.freeze_id, e.by_user, "   \
    "e.at_us, e.request_hash"

/* An event as read, with what idempotency needs. */
struct event_read {
    struct risk_freeze_event ev;
    uint8_t request_hash[HASH_BYTES]; /* zero when the event has no key */
};

/* Row i of an EV_COLS query, reason opened. */
static enum cf_err event_from_row(struct risk_freeze *f, const struct sql_rows *r, size_t i,
                                  struct event_read *out)
{
    struct risk_freeze_event *ev = &out->ev;
    size_t c = 0, sealed_len = 0, hash_len = 0;
    memset(out, 0, sizeof(*out));
    ev->row = (uint64_t)sql_row_int(r, i, c++);
    risk_text_copy(ev->id, sizeof(ev->id), sql_row_text(r, i, c++));
    ev->kind = (uint8_t)sql_row_int(r, i, c++);
    risk_text_copy(ev->party, sizeof(ev->party), sql_row_text(r, i, c++));
    const uint8_t *sealed = sql_row_blob(r, i, c++, &sealed_len);
    ev->blocks_incoming = sql_row_int(r, i, c++) != 0;
    risk_text_copy(ev->freeze_id, sizeof(ev->freeze_id), sql_row_text(r, i, c++));
    risk_text_copy(ev->by, sizeof(ev->by), sql_row_text(r, i, c++));
    ev->at_us = sql_row_int(r, i, c++);
    const uint8_t *h = sql_row_blob(r, i, c++, &hash_len);
    if (h != NULL && hash_len == HASH_BYTES)
        memcpy(out->request_hash, h, HASH_BYTES);
    CF_ASSERT(c == sql_rows_cols(r));
    if (ev->kind != RISK_FREEZE_EVENT_FREEZE && ev->kind != RISK_FREEZE_EVENT_UNFREEZE)
        return CF_ERR_CORRUPT;
    return reason_open(f, ev->id, sealed, sealed_len, ev->reason);
}

/* The first row of a query of events ($1 = key); CF_ERR_NOT_FOUND when none. */
static enum cf_err event_select(struct risk_freeze *f, struct sqltx *tx, const char *sql,
                                const char *key, struct event_read *out)
{
    struct sql_value v[] = {SQL_T(key)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, sql, v, 1, &r);
    if (err != CF_OK)
        return err;
    err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : event_from_row(f, r, 0, out);
    sql_rows_free(r);
    return err;
}

/* The event idem's key made, checked against this request (its kind, party and hash): CF_OK (a
 * replay), CF_ERR_NOT_FOUND (a new key) or CF_ERR_IDEM_KEY_REUSED. */
static enum cf_err event_by_idem(struct risk_freeze *f, struct sqltx *tx,
                                 const struct risk_freeze_idem *idem, uint8_t kind,
                                 const char *party, struct event_read *out)
{
    enum cf_err err = event_select(
        f, tx, "SELECT " EV_COLS " FROM risk_freeze_events WHERE idem = $1", idem->key, out);
    if (err == CF_OK && (out->ev.kind != kind || strcmp(out->ev.party, party) != 0 ||
                         !hash_equal(out->request_hash, idem->request_hash, HASH_BYTES)))
        return CF_ERR_IDEM_KEY_REUSED;
    return err;
}

/* Appends ev (its id, kind, party, setting, freeze_id, by and time set; reason in plaintext) and
 * reads back its row. */
static enum cf_err event_insert(struct risk_freeze *f, struct sqltx *tx,
                                struct risk_freeze_event *ev, const struct risk_freeze_idem *idem)
{
    uint8_t sealed[REASON_SEALED_BYTES_MAX];
    size_t sealed_len = 0;
    enum cf_err err = reason_seal(f, ev->id, ev->reason, sealed, &sealed_len);
    if (err != CF_OK)
        return err;
    struct sql_value v[] = {
        SQL_T(ev->id),
        SQL_T(ev->party),
        SQL_I(ev->kind),
        SQL_B(sealed, sealed_len),
        SQL_I(ev->blocks_incoming ? 1 : 0),
        SQL_T(ev->freeze_id),
        SQL_T(ev->by),
        SQL_I(ev->at_us),
        idem != NULL ? SQL_T(idem->key) : SQL_NUL,
        idem != NULL ? SQL_B(idem->request_hash, HASH_BYTES) : SQL_NUL,
    };
    err = sql_exec(tx,
                   "INSERT INTO risk_freeze_events (id, party, kind, reason_sealed, "
                   "blocks_incoming, freeze_id, by_user, at_us, idem, request_hash) VALUES "
                   "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                   v, 10, NULL);
    return risk_row_of(tx, err, "SELECT row FROM risk_freeze_events WHERE id = $1", ev->id,
                       &ev->row);
}

/* Checks the arguments of put and clear. */
static enum cf_err args_check(const char *party, const char *reason, const char *by,
                              const struct risk_freeze_idem *idem)
{
    if (!risk_freeze_party_valid(party) || !risk_freeze_reason_valid(reason, NULL) ||
        !risk_token_valid(by, RISK_FREEZE_PARTY_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    if (idem != NULL && !risk_token_valid(idem->key, RISK_FREEZE_IDEM_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    return CF_OK;
}

/* The event a new put or clear appends. */
static void event_init(struct risk_freeze_event *ev, uint8_t kind, const char *party,
                       const char *reason, const char *by, int64_t now_us)
{
    memset(ev, 0, sizeof(*ev));
    risk_id_new(kind == RISK_FREEZE_EVENT_FREEZE ? RISK_FREEZE_ID_PREFIX : RISK_UNFREEZE_ID_PREFIX,
                ev->id, RISK_FREEZE_ID_BYTES_MAX);
    ev->kind = kind;
    risk_text_copy(ev->party, sizeof(ev->party), party);
    risk_text_copy(ev->reason, sizeof(ev->reason), reason);
    risk_text_copy(ev->by, sizeof(ev->by), by);
    ev->at_us = now_us;
}

/* Freezing ----------------------------------------------------------------------------------- */

/* Locks party's current row (FOR UPDATE: a put or clear of the party waits on it) and copies
 * its freeze event's id into freeze_id (RISK_FREEZE_ID_BYTES_MAX); CF_ERR_NOT_FOUND when the
 * party is not frozen. */
static enum cf_err current_lock(struct sqltx *tx, const char *party, char *freeze_id)
{
    struct sql_value v[] = {SQL_T(party)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        sql_query(tx, "SELECT event_id FROM risk_freezes WHERE party = $1 FOR UPDATE", v, 1, &r);
    if (err == CF_OK && sql_rows_n(r) == 0)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK)
        risk_text_copy(freeze_id, RISK_FREEZE_ID_BYTES_MAX, sql_row_text(r, 0, 0));
    sql_rows_free(r);
    return err;
}

/* One put attempt in one transaction. */
static enum cf_err put_tx(struct risk_freeze *f, struct risk_freeze_event *ev,
                          const struct risk_freeze_idem *idem, struct event_read *stored,
                          bool *replay)
{
    struct sqltx *tx = NULL;
    char current[RISK_FREEZE_ID_BYTES_MAX];
    enum cf_err err = sql_begin(f->db, &tx);
    if (err != CF_OK)
        return err;
    if (idem != NULL &&
        (err = event_by_idem(f, tx, idem, ev->kind, ev->party, stored)) != CF_ERR_NOT_FOUND) {
        sql_rollback(tx);
        *replay = err == CF_OK;
        return err;
    }
    err = current_lock(tx, ev->party, current);
    if (err == CF_OK && idem != NULL) {
        /* a put that committed after the first look may have been this key's */
        err = event_by_idem(f, tx, idem, ev->kind, ev->party, stored);
        *replay = err == CF_OK;
        sql_rollback(tx);
        return err == CF_ERR_NOT_FOUND ? CF_ERR_CONFLICT : err;
    }
    if (err == CF_OK)
        err = CF_ERR_CONFLICT; /* frozen already */
    else if (err == CF_ERR_NOT_FOUND)
        err = event_insert(f, tx, ev, idem);
    struct sql_value v[] = {SQL_T(ev->party), SQL_T(ev->id),
                            SQL_I(ev->row),   SQL_I(ev->blocks_incoming ? 1 : 0),
                            SQL_T(ev->by),    SQL_I(ev->at_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "INSERT INTO risk_freezes (party, event_id, event_row, blocks_incoming, "
                       "by_user, at_us) VALUES ($1, $2, $3, $4, $5, $6)",
                       v, 6, NULL);
    return risk_tx_end(tx, err);
}

enum cf_err risk_freeze_put(struct risk_freeze *f, const char *party, const char *reason,
                            bool blocks_incoming, const char *by,
                            const struct risk_freeze_idem *idem, int64_t now_us,
                            struct risk_freeze_event *out, bool *replay_out)
{
    CF_ASSERT(f != NULL && out != NULL);
    enum cf_err err = args_check(party, reason, by, idem);
    if (err != CF_OK)
        return err;
    struct event_read *stored = calloc(2, sizeof(*stored)); /* [0] the new one, [1] a replay's */
    if (stored == NULL)
        return CF_ERR_NOMEM;
    struct risk_freeze_event *ev = &stored[0].ev;
    event_init(ev, RISK_FREEZE_EVENT_FREEZE, party, reason, by, now_us);
    ev->blocks_incoming = blocks_incoming;
    bool replay = false;
    err = put_tx(f, ev, idem, &stored[1], &replay);
    if (err == CF_ERR_STORAGE_CONFLICT) /* another put of this party or key won: which one? */
        err = put_tx(f, ev, idem, &stored[1], &replay);
    if (err == CF_OK) {
        *out = replay ? stored[1].ev : *ev;
        if (replay_out != NULL)
            *replay_out = replay;
        CF_ASSERT(out->kind == RISK_FREEZE_EVENT_FREEZE && out->row > 0);
    }
    hash_wipe(stored, 2 * sizeof(*stored));
    free(stored);
    return err;
}

/* Unfreezing --------------------------------------------------------------------------------- */

/* One clear attempt in one transaction. */
static enum cf_err clear_tx(struct risk_freeze *f, struct risk_freeze_event *ev,
                            const struct risk_freeze_idem *idem, struct event_read *stored,
                            bool *replay)
{
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(f->db, &tx);
    if (err != CF_OK)
        return err;
    if (idem != NULL &&
        (err = event_by_idem(f, tx, idem, ev->kind, ev->party, stored)) != CF_ERR_NOT_FOUND) {
        sql_rollback(tx);
        *replay = err == CF_OK;
        return err;
    }
    err = current_lock(tx, ev->party, ev->freeze_id);
    if (err == CF_ERR_NOT_FOUND && idem != NULL) {
        /* the row lock waited for a clear that committed meanwhile: was it this key's? */
        err = event_by_idem(f, tx, idem, ev->kind, ev->party, stored);
        *replay = err == CF_OK;
        sql_rollback(tx);
        return err;
    }
    if (err == CF_OK)
        err = event_insert(f, tx, ev, idem);
    struct sql_value w[] = {SQL_T(ev->party), SQL_T(ev->freeze_id)};
    int64_t changed = 0;
    if (err == CF_OK)
        err = sql_exec(tx, "DELETE FROM risk_freezes WHERE party = $1 AND event_id = $2", w, 2,
                       &changed);
    if (err == CF_OK && changed != 1)
        err = CF_ERR_NOT_FOUND; /* cleared meanwhile (the row lock makes this unreachable) */
    return risk_tx_end(tx, err);
}

enum cf_err risk_freeze_clear(struct risk_freeze *f, const char *party, const char *reason,
                              const char *by, const struct risk_freeze_idem *idem, int64_t now_us,
                              struct risk_freeze_event *out, bool *replay_out)
{
    CF_ASSERT(f != NULL && out != NULL);
    enum cf_err err = args_check(party, reason, by, idem);
    if (err != CF_OK)
        return err;
    struct event_read *stored = calloc(2, sizeof(*stored)); /* [0] the new one, [1] a replay's */
    if (stored == NULL)
        return CF_ERR_NOMEM;
    struct risk_freeze_event *ev = &stored[0].ev;
    event_init(ev, RISK_FREEZE_EVENT_UNFREEZE, party, reason, by, now_us);
    bool replay = false;
    err = clear_tx(f, ev, idem, &stored[1], &replay);
    if (err == CF_ERR_STORAGE_CONFLICT) /* two clears with one key: the second replays */
        err = clear_tx(f, ev, idem, &stored[1], &replay);
    if (err == CF_OK) {
        *out = replay ? stored[1].ev : *ev;
        if (replay_out != NULL)
            *replay_out = replay;
        CF_ASSERT(out->kind == RISK_FREEZE_EVENT_UNFREEZE && (replay || out->freeze_id[0] != '\0'));
    }
    hash_wipe(stored, 2 * sizeof(*stored));
    free(stored);
    return err;
}

/* Reads -------------------------------------------------------------------------------------- */

enum cf_err risk_freeze_get(struct risk_freeze *f, const char *party, struct risk_freeze_event *out)
{
    CF_ASSERT(f != NULL && out != NULL);
    if (!risk_freeze_party_valid(party))
        return CF_ERR_NOT_FOUND;
    struct event_read *got = calloc(1, sizeof(*got));
    if (got == NULL)
        return CF_ERR_NOMEM;
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(f->db, &tx);
    if (err == CF_OK) {
        err = event_select(f, tx,
                           "SELECT " EV_COLS_E " FROM risk_freezes c JOIN risk_freeze_events e "
                           "ON e.id = c.event_id WHERE c.party = $1",
                           party, got);
        sql_rollback(tx);
    }
    if (err == CF_OK && got->ev.kind != RISK_FREEZE_EVENT_FREEZE)
        err = CF_ERR_CORRUPT; /* a current row names a freeze event, never an unfreeze */
    if (err == CF_OK)
        *out = got->ev;
    hash_wipe(got, sizeof(*got));
    free(got);
    return err;
}

/* The current row's columns: its freeze event's, copied (see the top of this file). */
#define CUR_COLS "party, event_id, event_row, blocks_incoming, by_user, at_us"

/* Runs a query of current rows (CUR_COLS) and copies up to max of them into out as their freeze
 * events, reasons "". */
static enum cf_err currents_query(struct risk_freeze *f, const char *sql, const struct sql_value *v,
                                  size_t v_n, struct risk_freeze_event *out, size_t max,
                                  size_t *n_out)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(f->db, &tx);
    if (err == CF_OK) {
        err = sql_query(tx, sql, v, v_n, &r);
        sql_rollback(tx);
    }
    size_t n = 0;
    for (; err == CF_OK && n < sql_rows_n(r) && n < max; n++) {
        struct risk_freeze_event *ev = &out[n];
        size_t c = 0;
        memset(ev, 0, sizeof(*ev));
        ev->kind = RISK_FREEZE_EVENT_FREEZE;
        risk_text_copy(ev->party, sizeof(ev->party), sql_row_text(r, n, c++));
        risk_text_copy(ev->id, sizeof(ev->id), sql_row_text(r, n, c++));
        ev->row = (uint64_t)sql_row_int(r, n, c++);
        ev->blocks_incoming = sql_row_int(r, n, c++) != 0;
        risk_text_copy(ev->by, sizeof(ev->by), sql_row_text(r, n, c++));
        ev->at_us = sql_row_int(r, n, c++);
        CF_ASSERT(c == sql_rows_cols(r));
    }
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

enum cf_err risk_freeze_peek(struct risk_freeze *f, const char *party,
                             struct risk_freeze_event *out)
{
    CF_ASSERT(f != NULL && out != NULL);
    if (!risk_freeze_party_valid(party))
        return CF_ERR_NOT_FOUND;
    struct sql_value v[] = {SQL_T(party)};
    size_t n = 0;
    enum cf_err err = currents_query(f, "SELECT " CUR_COLS " FROM risk_freezes WHERE party = $1", v,
                                     1, out, 1, &n);
    return err == CF_OK && n == 0 ? CF_ERR_NOT_FOUND : err;
}

enum cf_err risk_freeze_history(struct risk_freeze *f, const char *party,
                                struct risk_freeze_event *out, size_t max, size_t *n_out)
{
    CF_ASSERT(f != NULL && max <= RISK_FREEZE_HISTORY_MAX && n_out != NULL);
    if (!risk_freeze_party_valid(party)) {
        *n_out = 0;
        return CF_OK;
    }
    struct event_read *one = calloc(1, sizeof(*one));
    if (one == NULL)
        return CF_ERR_NOMEM;
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(party), SQL_I(max)};
    enum cf_err err = sql_begin(f->db, &tx);
    if (err == CF_OK) {
        err = sql_query(tx,
                        "SELECT " EV_COLS " FROM risk_freeze_events WHERE party = $1 "
                        "ORDER BY row DESC LIMIT $2",
                        v, 2, &r);
        sql_rollback(tx);
    }
    size_t rows = err == CF_OK ? sql_rows_n(r) : 0, n = 0;
    for (size_t i = 0; i < rows && i < max && err == CF_OK; i++) {
        if ((err = event_from_row(f, r, i, one)) == CF_OK)
            out[n++] = one->ev;
    }
    sql_rows_free(r);
    hash_wipe(one, sizeof(*one));
    free(one);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

enum cf_err risk_freeze_list(struct risk_freeze *f, uint64_t before_row,
                             struct risk_freeze_event *out, size_t max, size_t *n_out)
{
    CF_ASSERT(f != NULL && max <= RISK_FREEZE_LIST_MAX && n_out != NULL);
    uint64_t below =
        before_row > 0 && before_row <= (uint64_t)INT64_MAX ? before_row : (uint64_t)INT64_MAX;
    struct sql_value v[] = {SQL_I(below), SQL_I(max)};
    return currents_query(f,
                          "SELECT " CUR_COLS " FROM risk_freezes WHERE event_row < $1 "
                          "ORDER BY event_row DESC LIMIT $2",
                          v, 2, out, max, n_out);
}
