/*
 * audit.c - the hash-chained audit log over the SQL facade; see audit.h.
 *
 * The hash input is exactly: the 15 bytes "coffer-audit-v1" (no NUL), u64 seq, i64 at_us, then
 * actor, action, target, ip, user_agent, outcome and detail each as u32 length + bytes, then
 * the 32-byte prev_hash; integers big endian. The user agent is hashed as stored (truncated and
 * cleaned), so a verifier never needs the original.
 *
 * Appending reads the head row FOR UPDATE (a row lock on PostgreSQL; SQLite transactions are
 * serial anyway), writes the record and moves the head, all in the caller's transaction.
 * Verification runs in its own transaction, REPEATABLE READ on PostgreSQL so the head and the
 * records are one snapshot while appends go on, and reads the chain a page at a time.
 */
#include "identity/audit.h"

#include <stdio.h>
#include <string.h>

#define AUDIT_DOMAIN "coffer-audit-v1"
#define AUDIT_DOMAIN_BYTES (sizeof(AUDIT_DOMAIN) - 1)

/* Columns read back, in this order, by both audit_list and audit_verify. */
#define AUDIT_COLUMNS                                                                              \
    "seq, at_us, actor, action, target, ip, user_agent, outcome, detail, "                         \
    "prev_hash, hash"
enum {
    COL_SEQ,
    COL_AT,
    COL_ACTOR,
    COL_ACTION,
    COL_TARGET,
    COL_IP,
    COL_UA,
    COL_OUTCOME,
    COL_DETAIL,
    COL_PREV,
    COL_HASH,
    COL_N
};

/* Clauses of audit_list's WHERE: seq, four texts (the action may take two), two times. */
#define LIST_PARAMS_MAX 10
_Static_assert(LIST_PARAMS_MAX <= SQL_PARAMS_MAX, "audit_list binds too many parameters");

/* The action column compares bytewise on PostgreSQL too (COLLATE "C"), so that the prefix range
 * ['auth.', 'auth/') holds exactly the actions starting with "auth.", whatever the database's
 * default collation. SQLite compares bytewise by default. */
const struct sql_migration audit_migration = {
    .version = 1,
    .sqlite = "CREATE TABLE id_audit ("
              " seq INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, actor TEXT NOT NULL,"
              " action TEXT NOT NULL, target TEXT NOT NULL, ip TEXT NOT NULL,"
              " user_agent TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL,"
              " prev_hash BLOB NOT NULL, hash BLOB NOT NULL);"
              "CREATE INDEX id_audit_actor ON id_audit (actor, seq);"
              "CREATE INDEX id_audit_action ON id_audit (action, seq);"
              "CREATE INDEX id_audit_target ON id_audit (target, seq);"
              "CREATE INDEX id_audit_at ON id_audit (at_us);"
              "CREATE TABLE id_audit_head ("
              " id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,"
              " hash BLOB NOT NULL);"
              "INSERT INTO id_audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));",
    .postgres = "CREATE TABLE id_audit ("
                " seq BIGINT PRIMARY KEY, at_us BIGINT NOT NULL, actor TEXT NOT NULL,"
                " action TEXT COLLATE \"C\" NOT NULL, target TEXT NOT NULL, ip TEXT NOT NULL,"
                " user_agent TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL,"
                " prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL);"
                "CREATE INDEX id_audit_actor ON id_audit (actor, seq);"
                "CREATE INDEX id_audit_action ON id_audit (action, seq);"
                "CREATE INDEX id_audit_target ON id_audit (target, seq);"
                "CREATE INDEX id_audit_at ON id_audit (at_us);"
                "CREATE TABLE id_audit_head ("
                " id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL,"
                " hash BYTEA NOT NULL);"
                "INSERT INTO id_audit_head (id, seq, hash)"
                " VALUES (1, 0, decode(repeat('00', 32), 'hex'));",
};

/* Fields --------------------------------------------------------------------------------------- */

/* One record's texts as hashed and stored: pointers and lengths (the user agent cleaned). */
struct fields {
    const char *text[COL_DETAIL - COL_ACTOR + 1];
    size_t len[COL_DETAIL - COL_ACTOR + 1];
};

#define FIELD(col) ((col)-COL_ACTOR)

static bool printable_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    }
    return true;
}

/* Length of the valid UTF-8 sequence at s (n bytes left) that is not a control character,
 * or 0. Overlong forms, surrogates and code points past U+10FFFF are refused. */
static size_t utf8_char_bytes(const unsigned char *s, size_t n)
{
    if (s[0] >= 0x20 && s[0] < 0x7f)
        return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n || s[0] > 0xf4)
        return 0;
    uint32_t cp = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min_cp[5] = {0, 0, 0xa0, 0x800, 0x10000}; /* 0x80-0x9f: controls */
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static bool utf8_text(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t step = utf8_char_bytes(u + i, n - i);
        if (step == 0)
            return false;
        i += step;
    }
    return true;
}

/* A bounded printable-ASCII text; NULL reads as "" when optional. */
static enum cf_err text_check(const char *s, size_t bytes_max, bool required, const char **out,
                              size_t *len_out)
{
    const char *v = s != NULL ? s : "";
    size_t n = strnlen(v, bytes_max + 1);
    if (n > bytes_max || (required && n == 0) || !printable_ascii(v, n))
        return CF_ERR_INVALID_FIELD;
    *out = v;
    *len_out = n;
    return CF_OK;
}

/* The user agent truncated to AUDIT_UA_BYTES_MAX with every byte outside printable ASCII
 * replaced by '?'; ua_buf holds the result. */
static size_t ua_clean(const char *ua, char ua_buf[AUDIT_UA_BYTES_MAX + 1])
{
    size_t n = ua != NULL ? strnlen(ua, AUDIT_UA_BYTES_MAX) : 0;
    for (size_t i = 0; i < n; i++)
        ua_buf[i] = (ua[i] >= 0x20 && ua[i] <= 0x7e) ? ua[i] : '?';
    ua_buf[n] = '\0';
    CF_ASSERT(n <= AUDIT_UA_BYTES_MAX && printable_ascii(ua_buf, n));
    return n;
}

/* Checks ev's fields against their bounds and fills f (ua_buf holds the cleaned user agent). */
static enum cf_err fields_from_event(const struct audit_event *ev,
                                     char ua_buf[AUDIT_UA_BYTES_MAX + 1], struct fields *f)
{
    enum cf_err err = text_check(ev->actor, AUDIT_ACTOR_BYTES_MAX, true, &f->text[FIELD(COL_ACTOR)],
                                 &f->len[FIELD(COL_ACTOR)]);
    if (err == CF_OK)
        err = text_check(ev->action, AUDIT_ACTION_BYTES_MAX, true, &f->text[FIELD(COL_ACTION)],
                         &f->len[FIELD(COL_ACTION)]);
    if (err == CF_OK)
        err = text_check(ev->target, AUDIT_TARGET_BYTES_MAX, false, &f->text[FIELD(COL_TARGET)],
                         &f->len[FIELD(COL_TARGET)]);
    if (err == CF_OK)
        err = text_check(ev->ip, AUDIT_IP_BYTES_MAX, false, &f->text[FIELD(COL_IP)],
                         &f->len[FIELD(COL_IP)]);
    if (err == CF_OK)
        err = text_check(ev->outcome, AUDIT_OUTCOME_BYTES_MAX, true, &f->text[FIELD(COL_OUTCOME)],
                         &f->len[FIELD(COL_OUTCOME)]);
    if (err != CF_OK)
        return err;
    const char *detail = ev->detail != NULL ? ev->detail : "";
    size_t detail_len = strnlen(detail, AUDIT_DETAIL_BYTES_MAX + 1);
    if (detail_len > AUDIT_DETAIL_BYTES_MAX || !utf8_text(detail, detail_len))
        return CF_ERR_INVALID_FIELD;
    f->text[FIELD(COL_DETAIL)] = detail;
    f->len[FIELD(COL_DETAIL)] = detail_len;
    f->len[FIELD(COL_UA)] = ua_clean(ev->user_agent, ua_buf);
    f->text[FIELD(COL_UA)] = ua_buf;
    return CF_OK;
}

/* Hashing -------------------------------------------------------------------------------------- */

static void put_be(uint8_t *b, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        b[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static void record_hash(uint64_t seq, int64_t at_us, const struct fields *f,
                        const uint8_t prev[HASH_BYTES], uint8_t out[HASH_BYTES])
{
    CF_ASSERT(seq > 0);
    struct hash_state st;
    uint8_t b[8];
    hash_sha256_begin(&st);
    hash_sha256_update(&st, AUDIT_DOMAIN, AUDIT_DOMAIN_BYTES);
    put_be(b, seq, 8);
    hash_sha256_update(&st, b, 8);
    put_be(b, (uint64_t)at_us, 8);
    hash_sha256_update(&st, b, 8);
    for (size_t i = 0; i < sizeof(f->len) / sizeof(f->len[0]); i++) {
        CF_ASSERT(f->len[i] <= UINT32_MAX);
        put_be(b, f->len[i], 4);
        hash_sha256_update(&st, b, 4);
        hash_sha256_update(&st, f->text[i], f->len[i]);
    }
    hash_sha256_update(&st, prev, HASH_BYTES);
    hash_sha256_end(&st, out);
}

/* Append --------------------------------------------------------------------------------------- */

/* The head row, locked until tx ends. CF_ERR_CORRUPT when it is missing or malformed. */
static enum cf_err head_read(struct sqltx *tx, bool lock, uint64_t *seq_out,
                             uint8_t hash_out[HASH_BYTES])
{
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                lock ? "SELECT seq, hash FROM id_audit_head WHERE id = 1 FOR UPDATE"
                                     : "SELECT seq, hash FROM id_audit_head WHERE id = 1",
                                NULL, 0, &r);
    if (err != CF_OK)
        return err;
    size_t len = 0;
    const uint8_t *h = sql_rows_n(r) == 1 ? sql_row_blob(r, 0, 1, &len) : NULL;
    int64_t seq = h != NULL ? sql_row_int(r, 0, 0) : -1;
    if (h == NULL || len != HASH_BYTES || seq < 0) {
        err = CF_ERR_CORRUPT;
    } else {
        *seq_out = (uint64_t)seq;
        memcpy(hash_out, h, HASH_BYTES);
    }
    sql_rows_free(r);
    return err;
}

static enum cf_err record_insert(struct sqltx *tx, uint64_t seq, int64_t at_us,
                                 const struct fields *f, const uint8_t prev[HASH_BYTES],
                                 const uint8_t hash[HASH_BYTES])
{
    struct sql_value p[COL_N];
    p[COL_SEQ] = SQL_I(seq);
    p[COL_AT] = SQL_I(at_us);
    for (int c = COL_ACTOR; c <= COL_DETAIL; c++)
        p[c] = SQL_TN(f->text[FIELD(c)], f->len[FIELD(c)]);
    p[COL_PREV] = SQL_B(prev, HASH_BYTES);
    p[COL_HASH] = SQL_B(hash, HASH_BYTES);
    return sql_exec(tx,
                    "INSERT INTO id_audit (" AUDIT_COLUMNS ")"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    p, COL_N, NULL);
}

enum cf_err audit_append(struct sqltx *tx, const struct audit_event *ev, uint64_t *seq_out)
{
    CF_ASSERT(tx != NULL && ev != NULL);
    CF_ASSERT(ev->at_us >= 0);
    char ua_buf[AUDIT_UA_BYTES_MAX + 1];
    struct fields f;
    enum cf_err err = fields_from_event(ev, ua_buf, &f);
    if (err != CF_OK)
        return err;
    uint64_t head_seq = 0;
    uint8_t prev[HASH_BYTES];
    err = head_read(tx, true, &head_seq, prev);
    if (err != CF_OK)
        return err;
    if (head_seq >= (uint64_t)INT64_MAX)
        return CF_ERR_CORRUPT;
    uint64_t seq = head_seq + 1;
    uint8_t hash[HASH_BYTES];
    record_hash(seq, ev->at_us, &f, prev, hash);
    err = record_insert(tx, seq, ev->at_us, &f, prev, hash);
    int64_t changed = 0;
    if (err == CF_OK) {
        struct sql_value p[2] = {SQL_I(seq), SQL_B(hash, HASH_BYTES)};
        err = sql_exec(tx, "UPDATE id_audit_head SET seq = $1, hash = $2 WHERE id = 1", p, 2,
                       &changed);
    }
    if (err != CF_OK)
        return err;
    CF_ASSERT(changed == 1); /* the head row was read, and is locked, above */
    if (seq_out != NULL)
        *seq_out = seq;
    return CF_OK;
}

enum cf_err audit_append_many(struct sqltx *tx, const struct audit_event *evs, size_t n)
{
    CF_ASSERT(tx != NULL && (evs != NULL || n == 0));
    if (n == 0)
        return CF_OK;
    uint64_t seq = 0;
    uint8_t prev[HASH_BYTES], hash[HASH_BYTES];
    enum cf_err err = head_read(tx, true, &seq, prev);
    for (size_t i = 0; err == CF_OK && i < n; i++) {
        char ua_buf[AUDIT_UA_BYTES_MAX + 1];
        struct fields f;
        CF_ASSERT(evs[i].at_us >= 0);
        if ((err = fields_from_event(&evs[i], ua_buf, &f)) != CF_OK)
            break;
        if (seq >= (uint64_t)INT64_MAX) {
            err = CF_ERR_CORRUPT;
            break;
        }
        seq++;
        record_hash(seq, evs[i].at_us, &f, prev, hash);
        err = record_insert(tx, seq, evs[i].at_us, &f, prev, hash);
        memcpy(prev, hash, HASH_BYTES);
    }
    int64_t changed = 0;
    if (err == CF_OK) {
        struct sql_value p[2] = {SQL_I(seq), SQL_B(prev, HASH_BYTES)};
        err = sql_exec(tx, "UPDATE id_audit_head SET seq = $1, hash = $2 WHERE id = 1", p, 2,
                       &changed);
    }
    if (err == CF_OK)
        CF_ASSERT(changed == 1);
    return err;
}

/* Reading -------------------------------------------------------------------------------------- */

/* Row i of r as a record; CF_ERR_CORRUPT when its hash is not 32 bytes. Texts longer than
 * their field (only a tampered row has them) are cut. */
static enum cf_err record_from_row(const struct sql_rows *r, size_t i, struct audit_record *out)
{
    size_t len = 0;
    const uint8_t *h = sql_row_blob(r, i, COL_HASH, &len);
    int64_t seq = sql_row_int(r, i, COL_SEQ);
    if (h == NULL || len != HASH_BYTES || seq <= 0)
        return CF_ERR_CORRUPT;
    out->seq = (uint64_t)seq;
    out->at_us = sql_row_int(r, i, COL_AT);
    snprintf(out->actor, sizeof(out->actor), "%s", sql_row_text(r, i, COL_ACTOR));
    snprintf(out->action, sizeof(out->action), "%s", sql_row_text(r, i, COL_ACTION));
    snprintf(out->target, sizeof(out->target), "%s", sql_row_text(r, i, COL_TARGET));
    snprintf(out->ip, sizeof(out->ip), "%s", sql_row_text(r, i, COL_IP));
    snprintf(out->user_agent, sizeof(out->user_agent), "%s", sql_row_text(r, i, COL_UA));
    snprintf(out->outcome, sizeof(out->outcome), "%s", sql_row_text(r, i, COL_OUTCOME));
    snprintf(out->detail, sizeof(out->detail), "%s", sql_row_text(r, i, COL_DETAIL));
    memcpy(out->hash, h, HASH_BYTES);
    return CF_OK;
}

/* audit_list's statement under construction: the text and its parameters. */
struct query {
    char sql[1024];
    size_t len;
    struct sql_value p[LIST_PARAMS_MAX];
    size_t n;
};

/* Appends " AND <column> <op> $N" and binds v to $N. */
static void query_and(struct query *q, const char *column, const char *op, struct sql_value v)
{
    CF_ASSERT(q->n < LIST_PARAMS_MAX);
    q->p[q->n++] = v;
    int w = snprintf(q->sql + q->len, sizeof(q->sql) - q->len, " AND %s %s $%zu", column, op, q->n);
    CF_ASSERT(w > 0 && (size_t)w < sizeof(q->sql) - q->len);
    q->len += (size_t)w;
}

/* Adds "column = value" when value is set; CF_ERR_INVALID_FIELD when it is longer than any
 * stored value can be. */
static enum cf_err query_text_eq(struct query *q, const char *column, const char *value,
                                 size_t bytes_max)
{
    if (value == NULL || value[0] == '\0')
        return CF_OK;
    if (strnlen(value, bytes_max + 1) > bytes_max)
        return CF_ERR_INVALID_FIELD;
    query_and(q, column, "=", SQL_T(value));
    return CF_OK;
}

/* Adds the action clause: equality, or for "x." the range [x., x/) ('/' follows '.'). */
static enum cf_err query_action(struct query *q, const char *action,
                                char hi_buf[AUDIT_ACTION_BYTES_MAX + 1])
{
    if (action == NULL || action[0] == '\0')
        return CF_OK;
    size_t n = strnlen(action, AUDIT_ACTION_BYTES_MAX + 1);
    if (n > AUDIT_ACTION_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    if (action[n - 1] != '.')
        return query_text_eq(q, "action", action, AUDIT_ACTION_BYTES_MAX);
    _Static_assert('.' + 1 == '/', "the prefix range needs '/' right after '.'");
    memcpy(hi_buf, action, n);
    hi_buf[n - 1] = '/';
    hi_buf[n] = '\0';
    query_and(q, "action", ">=", SQL_TN(action, n));
    query_and(q, "action", "<", SQL_TN(hi_buf, n));
    return CF_OK;
}

static enum cf_err query_build(struct query *q, const struct audit_filter *f,
                               char hi_buf[AUDIT_ACTION_BYTES_MAX + 1])
{
    q->n = 0;
    q->len = (size_t)snprintf(q->sql, sizeof(q->sql),
                              "SELECT " AUDIT_COLUMNS " FROM id_audit WHERE seq > $1");
    /* a cursor past any seq (it may come from a client) just finds nothing */
    q->p[q->n++] = SQL_I(f->after_seq < (uint64_t)INT64_MAX ? f->after_seq : (uint64_t)INT64_MAX);
    enum cf_err err = query_text_eq(q, "actor", f->actor, AUDIT_ACTOR_BYTES_MAX);
    if (err == CF_OK)
        err = query_action(q, f->action, hi_buf);
    if (err == CF_OK)
        err = query_text_eq(q, "target", f->target, AUDIT_TARGET_BYTES_MAX);
    if (err == CF_OK)
        err = query_text_eq(q, "outcome", f->outcome, AUDIT_OUTCOME_BYTES_MAX);
    if (err != CF_OK)
        return err;
    if (f->from_us != 0)
        query_and(q, "at_us", ">=", SQL_I(f->from_us));
    if (f->to_us != 0)
        query_and(q, "at_us", "<", SQL_I(f->to_us));
    CF_ASSERT(q->n < LIST_PARAMS_MAX);
    q->p[q->n++] = SQL_I(f->limit);
    int w = snprintf(q->sql + q->len, sizeof(q->sql) - q->len, " ORDER BY seq LIMIT $%zu", q->n);
    CF_ASSERT(w > 0 && (size_t)w < sizeof(q->sql) - q->len);
    q->len += (size_t)w;
    return CF_OK;
}

enum cf_err audit_list(struct sqltx *tx, const struct audit_filter *f, struct audit_record *out,
                       size_t *n_out)
{
    CF_ASSERT(tx != NULL && f != NULL && n_out != NULL);
    CF_ASSERT(f->limit <= AUDIT_PAGE_MAX && (out != NULL || f->limit == 0));
    struct query q;
    char hi_buf[AUDIT_ACTION_BYTES_MAX + 1];
    enum cf_err err = query_build(&q, f, hi_buf);
    if (err != CF_OK)
        return err;
    if (f->limit == 0) {
        *n_out = 0;
        return CF_OK;
    }
    struct sql_rows *r = NULL;
    err = sql_query(tx, q.sql, q.p, q.n, &r);
    if (err != CF_OK)
        return err;
    size_t rows_n = sql_rows_n(r);
    if (rows_n > f->limit || sql_rows_cols(r) != COL_N)
        err = CF_ERR_STORAGE;
    for (size_t i = 0; err == CF_OK && i < rows_n; i++) { /* checked first: out stays as is */
        size_t len = 0;
        if (sql_row_blob(r, i, COL_HASH, &len) == NULL || len != HASH_BYTES ||
            sql_row_int(r, i, COL_SEQ) <= 0)
            err = CF_ERR_CORRUPT;
    }
    for (size_t i = 0; err == CF_OK && i < rows_n; i++)
        CF_ASSERT(record_from_row(r, i, &out[i]) == CF_OK);
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = rows_n;
    return err;
}

/* Verify --------------------------------------------------------------------------------------- */

/* Where verification stands: the last record checked and its hash. */
struct walk {
    uint64_t seq;
    uint8_t hash[HASH_BYTES];
};

/* Checks row i against the walk and advances it; false when its seq, link or hash is wrong. */
static bool walk_row(struct walk *w, const struct sql_rows *r, size_t i)
{
    size_t prev_len = 0, hash_len = 0;
    const uint8_t *prev = sql_row_blob(r, i, COL_PREV, &prev_len);
    const uint8_t *hash = sql_row_blob(r, i, COL_HASH, &hash_len);
    uint64_t seq = w->seq + 1;
    if (sql_row_int(r, i, COL_SEQ) != (int64_t)seq || prev == NULL || prev_len != HASH_BYTES ||
        hash == NULL || hash_len != HASH_BYTES || !hash_equal(prev, w->hash, HASH_BYTES))
        return false;
    struct fields f;
    for (int c = COL_ACTOR; c <= COL_DETAIL; c++) {
        f.text[FIELD(c)] = sql_row_text(r, i, c);
        f.len[FIELD(c)] = strlen(f.text[FIELD(c)]);
    }
    uint8_t want[HASH_BYTES];
    record_hash(seq, sql_row_int(r, i, COL_AT), &f, w->hash, want);
    if (!hash_equal(want, hash, HASH_BYTES))
        return false;
    w->seq = seq;
    memcpy(w->hash, hash, HASH_BYTES);
    return true;
}

/* Walks every record after w->seq. CF_ERR_CORRUPT with *bad_seq_out at the first bad one. */
static enum cf_err walk_all(struct sqltx *tx, struct walk *w, uint64_t *bad_seq_out)
{
    for (;;) {
        struct sql_value p[2] = {SQL_I(w->seq), SQL_I(AUDIT_PAGE_MAX)};
        struct sql_rows *r = NULL;
        enum cf_err err = sql_query(
            tx, "SELECT " AUDIT_COLUMNS " FROM id_audit WHERE seq > $1 ORDER BY seq LIMIT $2", p, 2,
            &r);
        if (err != CF_OK)
            return err;
        size_t rows_n = sql_rows_n(r);
        for (size_t i = 0; err == CF_OK && i < rows_n; i++) {
            if (!walk_row(w, r, i)) {
                *bad_seq_out = w->seq + 1;
                err = CF_ERR_CORRUPT;
            }
        }
        sql_rows_free(r);
        if (err != CF_OK || rows_n < AUDIT_PAGE_MAX)
            return err;
    }
}

/* The head must name the last record and its hash. When it does not, the seq reported is the
 * first record the head fails to cover: past the last record when the head lags (or is wrong),
 * the first missing one when it runs ahead. */
static enum cf_err head_check(const struct walk *w, uint64_t head_seq,
                              const uint8_t head_hash[HASH_BYTES], uint64_t *bad_seq_out)
{
    if (head_seq == w->seq && hash_equal(head_hash, w->hash, HASH_BYTES))
        return CF_OK;
    if (head_seq < w->seq)
        *bad_seq_out = head_seq + 1;
    else if (head_seq > w->seq)
        *bad_seq_out = w->seq + 1;
    else
        *bad_seq_out = w->seq;
    return CF_ERR_CORRUPT;
}

enum cf_err audit_verify(struct sqldb *db, uint64_t *n_out, uint64_t *bad_seq_out)
{
    CF_ASSERT(db != NULL && n_out != NULL && bad_seq_out != NULL);
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin(db, &tx);
    if (err != CF_OK)
        return err;
    if (sqldb_is_postgres(db))
        err = sql_exec(tx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", NULL, 0, NULL);
    uint64_t head_seq = 0;
    uint8_t head_hash[HASH_BYTES];
    uint64_t bad_seq = 0;
    if (err == CF_OK)
        err = head_read(tx, false, &head_seq, head_hash);
    struct walk w = {.seq = 0};
    memset(w.hash, 0, sizeof(w.hash));
    if (err == CF_OK)
        err = walk_all(tx, &w, &bad_seq);
    if (err == CF_OK)
        err = head_check(&w, head_seq, head_hash, &bad_seq);
    sql_rollback(tx); /* read only */
    if (err == CF_OK)
        *n_out = w.seq;
    else if (err == CF_ERR_CORRUPT)
        *bad_seq_out = bad_seq;
    return err;
}
