/*
 * decisions.c - the decision log: the schema, the stored forms of features and matches,
 * recording, reviewing and reading; see decisions.h.
 *
 * One table, risk_decisions, one row per op id (UNIQUE): a put is INSERT ... ON CONFLICT DO
 * NOTHING, so two puts of one op at once leave the first. A review is one conditional UPDATE
 * (WHERE review_state = from), so two reviews at once change the row once; when it changes
 * nothing a read tells a missing row (not found) from one in another state (conflict). Reads
 * that return many rows (recent_features) go page by page, one short transaction each, so a
 * dry run never holds the database (SQLite's single writer) for long.
 *
 * The features' text form is written from a table of (name, type, offset) that must list the
 * registry of rules.c in its order; risk_decisions_open asserts it does.
 *
 * Version 2 of the schema adds the velocity keys (key_user, key_device, key_ip, key_payee, ''
 * for none and for older rows) and counted_at_us (0: not counted), with an index on
 * (counted_at_us, row) that recent_keys walks in order with a (time, row) cursor.
 */
#include "risk/decisions.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "crypto/vault.h"
#include "risk/internal.h"
#include "store/sql/sql.h"

/* The sealed reason's largest size. */
#define REASON_SEALED_BYTES_MAX (RISK_DECISIONS_REASON_BYTES_MAX + VAULT_OVERHEAD_BYTES)
/* "risk_decisions:<op id>:review_reason" */
#define REASON_AAD_BYTES (RISK_DECISIONS_OP_BYTES_MAX + 40)
/* Rows one page of recent_features reads (the facade returns at most SQL_ROWS_MAX). */
#define RECENT_PAGE_ROWS 5000
_Static_assert(RECENT_PAGE_ROWS <= SQL_ROWS_MAX, "a page is one query");
/* The longest text a stored feature value may hold once unescaped. */
#define FEATURE_TEXT_MAX (RULES_TEXT_BYTES_MAX - 1)
_Static_assert(RISK_DECISIONS_KEYS_PAGE_MAX <= SQL_ROWS_MAX, "a page of keys is one query");
_Static_assert(RISK_DECISIONS_PSEUDONYM_BYTES <= VAULT_BLIND_BYTES, "a prefix of the blind index");
_Static_assert(2 + RISK_DECISIONS_PSEUDONYM_HEX_BYTES - 1 + 1 + RULES_TEXT_BYTES_MAX - 1 <=
                   VELOCITY_KEY_BYTES_MAX,
               "\"d:<pseudonym>|<currency>\" is a velocity key");

struct risk_decisions {
    struct sqldb *db;
    risk_decisions_vault_fn vault; /* the current master keys (they may be rotated meanwhile) */
    void *vault_ctx;
};

/* The features' stored form ----------------------------------------------------------------- */

struct feature_slot {
    const char *name;
    enum rules_type type;
    size_t offset;
};

#define S_INT(f)                                                                                   \
    {                                                                                              \
#f, RULES_TYPE_INT, offsetof(struct risk_features, f)                                      \
    }
#define S_BOOL(f)                                                                                  \
    {                                                                                              \
#f, RULES_TYPE_BOOL, offsetof(struct risk_features, f)                                     \
    }
#define S_TEXT(f)                                                                                  \
    {                                                                                              \
#f, RULES_TYPE_TEXT, offsetof(struct risk_features, f)                                     \
    }
#define S_VEL(stat, field, w, wname, k, kname)                                                     \
    {                                                                                              \
        stat "_" wname "_" kname, RULES_TYPE_INT,                                                  \
            offsetof(struct risk_features, velocity[k].field[w])                                   \
    }
#define S_VEL_KEY(k, kname)                                                                        \
    S_VEL("count", count, VELOCITY_WINDOW_1M, "1m", k, kname),                                     \
        S_VEL("sum", sum_minor, VELOCITY_WINDOW_1M, "1m", k, kname),                               \
        S_VEL("count", count, VELOCITY_WINDOW_1H, "1h", k, kname),                                 \
        S_VEL("sum", sum_minor, VELOCITY_WINDOW_1H, "1h", k, kname),                               \
        S_VEL("count", count, VELOCITY_WINDOW_24H, "24h", k, kname),                               \
        S_VEL("sum", sum_minor, VELOCITY_WINDOW_24H, "24h", k, kname)

/* rules.c's registry, in its order (checked at open). */
static const struct feature_slot slots[] = {
    S_INT(amount_minor),
    S_TEXT(currency),
    S_TEXT(kind),
    S_BOOL(payee_new),
    S_TEXT(payee_kind),
    S_INT(account_age_s),
    S_BOOL(device_new),
    S_INT(failed_signins_24h),
    S_TEXT(ip_country),
    S_TEXT(home_country),
    S_BOOL(country_mismatch),
    S_INT(mcc),
    S_INT(hour_utc),
    S_INT(kyc_tier),
    S_VEL_KEY(RULES_KEY_USER, "user"),
    S_VEL_KEY(RULES_KEY_DEVICE, "device"),
    S_VEL_KEY(RULES_KEY_IP, "ip"),
    S_VEL_KEY(RULES_KEY_PAYEE, "payee"),
};
#define SLOTS_N (sizeof(slots) / sizeof(slots[0]))

static bool slots_match_registry(void)
{
    if (rules_features_n() != SLOTS_N)
        return false;
    for (size_t i = 0; i < SLOTS_N; i++) {
        const struct rules_feature_info *f = rules_feature_at(i);
        if (strcmp(f->name, slots[i].name) != 0 || f->type != slots[i].type)
            return false;
    }
    return true;
}

/* A bounded writer into a fixed buffer; `ok` turns false for good once it would overflow. */
struct text_out {
    char *p;
    size_t cap, len;
    bool ok;
};

static void out_printf(struct text_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void out_printf(struct text_out *o, const char *fmt, ...)
{
    if (!o->ok)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->ok = false;
        return;
    }
    o->len += (size_t)n;
}

/* A JSON string: printable ASCII but '"' and '\' as is, every other byte as \u00XX. */
static void out_string(struct text_out *o, const char *s)
{
    out_printf(o, "\"");
    for (size_t i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\')
            out_printf(o, "%c", c);
        else
            out_printf(o, "\\u%04x", c);
    }
    out_printf(o, "\"");
}

/* Writes f's stored form into out (RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX bytes). */
static void features_write(const struct risk_features *f, char *out)
{
    struct text_out o = {.p = out, .cap = RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX, .ok = true};
    const char *base = (const char *)f;
    out_printf(&o, "{\"v\":%d", RISK_DECISIONS_FEATURES_VERSION);
    for (size_t i = 0; i < SLOTS_N; i++) {
        const struct feature_slot *s = &slots[i];
        out_printf(&o, ",\"%s\":", s->name);
        if (s->type == RULES_TYPE_INT) {
            int64_t v;
            memcpy(&v, base + s->offset, sizeof(v));
            out_printf(&o, "%" PRId64, v);
        } else if (s->type == RULES_TYPE_BOOL) {
            bool v;
            memcpy(&v, base + s->offset, sizeof(v));
            out_printf(&o, "%s", v ? "true" : "false");
        } else {
            char text[RULES_TEXT_BYTES_MAX];
            memcpy(text, base + s->offset, sizeof(text));
            text[FEATURE_TEXT_MAX] = '\0';
            out_string(&o, text);
        }
    }
    out_printf(&o, "}");
    CF_ASSERT(o.ok); /* 38 features of at most 16 escaped bytes fit many times over */
}

/* A reader over a stored form. */
struct text_in {
    const char *p;
    size_t pos;
};

static void in_ws(struct text_in *in)
{
    while (in->p[in->pos] == ' ' || in->p[in->pos] == '\n' || in->p[in->pos] == '\t' ||
           in->p[in->pos] == '\r')
        in->pos++;
}

static bool in_char(struct text_in *in, char c)
{
    in_ws(in);
    if (in->p[in->pos] != c)
        return false;
    in->pos++;
    return true;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string of at most max - 1 bytes once unescaped (\" \\ and \u00XX only) into out. */
static bool in_string(struct text_in *in, char *out, size_t max)
{
    if (!in_char(in, '"'))
        return false;
    size_t n = 0;
    for (;;) {
        char c = in->p[in->pos++];
        if (c == '"')
            break;
        if (c == '\0' || n + 1 >= max)
            return false;
        if (c == '\\') {
            char e = in->p[in->pos++];
            if (e == '"' || e == '\\') {
                c = e;
            } else if (e == 'u' && in->p[in->pos] == '0' && in->p[in->pos + 1] == '0') {
                int hi = hex_digit(in->p[in->pos + 2]);
                int lo = hi >= 0 ? hex_digit(in->p[in->pos + 3]) : -1;
                if (lo < 0 || (hi == 0 && lo == 0))
                    return false;
                c = (char)(hi * 16 + lo);
                in->pos += 4;
            } else {
                return false;
            }
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return true;
}

static bool in_int(struct text_in *in, int64_t *out)
{
    in_ws(in);
    const char *start = in->p + in->pos;
    if (!(*start == '-' || (*start >= '0' && *start <= '9')))
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(start, &end, 10);
    if (errno != 0 || end == start)
        return false;
    in->pos += (size_t)(end - start);
    *out = v;
    return true;
}

static bool in_bool(struct text_in *in, bool *out)
{
    in_ws(in);
    if (strncmp(in->p + in->pos, "true", 4) == 0) {
        in->pos += 4;
        *out = true;
        return true;
    }
    if (strncmp(in->p + in->pos, "false", 5) == 0) {
        in->pos += 5;
        *out = false;
        return true;
    }
    return false;
}

/* Skips a value of an unknown member: an integer, a string or a boolean. */
static bool in_skip(struct text_in *in)
{
    char text[RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX];
    int64_t i;
    bool b;
    in_ws(in);
    char c = in->p[in->pos];
    if (c == '"')
        return in_string(in, text, sizeof(text));
    if (c == 't' || c == 'f')
        return in_bool(in, &b);
    return in_int(in, &i);
}

static const struct feature_slot *slot_find(const char *name)
{
    for (size_t i = 0; i < SLOTS_N; i++) {
        if (strcmp(slots[i].name, name) == 0)
            return &slots[i];
    }
    return NULL;
}

/* One member's value into f (or skipped when unknown); *version_out gets "v". */
static bool member_read(struct text_in *in, const char *name, struct risk_features *f,
                        int64_t *version_out)
{
    if (strcmp(name, "v") == 0)
        return in_int(in, version_out);
    const struct feature_slot *s = slot_find(name);
    char *at = (char *)f + (s != NULL ? s->offset : 0);
    if (s == NULL)
        return in_skip(in);
    if (s->type == RULES_TYPE_INT) {
        int64_t v;
        if (!in_int(in, &v))
            return false;
        memcpy(at, &v, sizeof(v));
        return true;
    }
    if (s->type == RULES_TYPE_BOOL) {
        bool v;
        if (!in_bool(in, &v))
            return false;
        memcpy(at, &v, sizeof(v));
        return true;
    }
    char text[RULES_TEXT_BYTES_MAX];
    if (!in_string(in, text, sizeof(text)))
        return false;
    return rules_features_text_set(at, text, strlen(text)) == CF_OK;
}

/* Reads a stored form into *out: CF_ERR_CORRUPT when malformed or of another version. */
static enum cf_err features_read(const char *text, struct risk_features *out)
{
    struct risk_features f;
    memset(&f, 0, sizeof(f));
    struct text_in in = {.p = text, .pos = 0};
    int64_t version = 0;
    char name[64];
    bool ok = in_char(&in, '{');
    bool first = true;
    while (ok && !in_char(&in, '}')) {
        ok = (first || in_char(&in, ',')) && in_string(&in, name, sizeof(name)) &&
             in_char(&in, ':') && member_read(&in, name, &f, &version);
        first = false;
    }
    in_ws(&in);
    if (!ok || in.p[in.pos] != '\0' || version != RISK_DECISIONS_FEATURES_VERSION)
        return CF_ERR_CORRUPT;
    *out = f;
    return CF_OK;
}

/* Matches' stored form ----------------------------------------------------------------------- */

static void matches_write(const struct risk_decision_rec *rec,
                          char out[RISK_DECISIONS_MATCHES_TEXT_BYTES_MAX])
{
    struct text_out o = {.p = out, .cap = RISK_DECISIONS_MATCHES_TEXT_BYTES_MAX, .ok = true};
    out[0] = '\0';
    for (size_t i = 0; i < rec->matches_n; i++) {
        const struct rules_match *m = &rec->matches[i];
        out_printf(&o, "%s%s:%s:%s", i > 0 ? "," : "", rules_action_name(m->action), m->id,
                   m->reason);
    }
    CF_ASSERT(o.ok);
}

/* One "action:id:reason" item of len bytes at s. */
static bool match_read(const char *s, size_t len, struct rules_match *out)
{
    const char *a = memchr(s, ':', len);
    const char *b = a != NULL ? memchr(a + 1, ':', len - (size_t)(a + 1 - s)) : NULL;
    if (b == NULL)
        return false;
    size_t id_len = (size_t)(b - a - 1), reason_len = len - (size_t)(b + 1 - s);
    enum rules_action action;
    if (rules_action_parse(s, (size_t)(a - s), &action) != CF_OK ||
        !rules_code_valid(a + 1, id_len, RULES_ID_BYTES_MAX) ||
        !rules_code_valid(b + 1, reason_len, RULES_REASON_BYTES_MAX))
        return false;
    memset(out, 0, sizeof(*out));
    out->action = action;
    memcpy(out->id, a + 1, id_len);
    memcpy(out->reason, b + 1, reason_len);
    return true;
}

static enum cf_err matches_read(const char *text, struct risk_decision_rec *rec)
{
    size_t n = 0;
    for (const char *s = text; *s != '\0';) {
        size_t len = strcspn(s, ",");
        if (n == RULES_MATCHES_MAX || !match_read(s, len, &rec->matches[n]))
            return CF_ERR_CORRUPT;
        n++;
        s += len;
        if (*s == ',' && *++s == '\0')
            return CF_ERR_CORRUPT;
    }
    rec->matches_n = n;
    return CF_OK;
}

/* Schema and handle --------------------------------------------------------------------------- */

/* %1$s: the blob type; %2$s: the row key (an auto-incrementing integer primary key). */
#define DECISIONS_SCHEMA                                                                           \
    "CREATE TABLE risk_decisions (row %2$s, op_id TEXT NOT NULL UNIQUE, party TEXT NOT NULL, "     \
    "kind TEXT NOT NULL, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL, "                   \
    "action INTEGER NOT NULL, set_version BIGINT NOT NULL, matches TEXT NOT NULL, "                \
    "matches_omitted INTEGER NOT NULL, features TEXT NOT NULL, review_state INTEGER NOT NULL, "    \
    "reviewer TEXT NOT NULL, review_reason_sealed %1$s, created_at_us BIGINT NOT NULL, "           \
    "decided_at_us BIGINT NOT NULL);"                                                              \
    "CREATE INDEX risk_decisions_created ON risk_decisions(created_at_us);"                        \
    "CREATE INDEX risk_decisions_review ON risk_decisions(review_state, row);"                     \
    "CREATE INDEX risk_decisions_action ON risk_decisions(action, row);"                           \
    "CREATE INDEX risk_decisions_party ON risk_decisions(party, row);"

/* Version 2: the velocity keys and when the movement was counted (see the top of the file). */
#define DECISIONS_KEYS                                                                             \
    "ALTER TABLE risk_decisions ADD COLUMN key_user TEXT NOT NULL DEFAULT '';"                     \
    "ALTER TABLE risk_decisions ADD COLUMN key_device TEXT NOT NULL DEFAULT '';"                   \
    "ALTER TABLE risk_decisions ADD COLUMN key_ip TEXT NOT NULL DEFAULT '';"                       \
    "ALTER TABLE risk_decisions ADD COLUMN key_payee TEXT NOT NULL DEFAULT '';"                    \
    "ALTER TABLE risk_decisions ADD COLUMN counted_at_us BIGINT NOT NULL DEFAULT 0;"               \
    "CREATE INDEX risk_decisions_counted ON risk_decisions(counted_at_us, row);"

/* The versions after the first, in order (risk_schema_migrate_steps). */
static const char *const decisions_schema_later[] = {DECISIONS_KEYS};

enum cf_err risk_decisions_open(struct sqldb *db, risk_decisions_vault_fn vault, void *vault_ctx,
                                struct risk_decisions **out)
{
    CF_ASSERT(db != NULL && vault != NULL && out != NULL);
    CF_ASSERT(slots_match_registry()); /* the stored form names every feature of rules.c */
    enum cf_err err = risk_schema_migrate_steps(
        db, "risk_decisions", DECISIONS_SCHEMA, decisions_schema_later,
        sizeof(decisions_schema_later) / sizeof(decisions_schema_later[0]));
    if (err != CF_OK)
        return err;
    struct risk_decisions *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return CF_ERR_NOMEM;
    d->db = db;
    d->vault = vault;
    d->vault_ctx = vault_ctx;
    *out = d;
    return CF_OK;
}

void risk_decisions_close(struct risk_decisions *d) { free(d); }

/* Names and checks ---------------------------------------------------------------------------- */

static const char *const state_names[RISK_REVIEW_STATES_N] = {"none", "pending", "approved",
                                                              "declined"};

const char *risk_review_state_name(uint8_t state)
{
    return state < RISK_REVIEW_STATES_N ? state_names[state] : "unknown";
}

enum cf_err risk_review_state_parse(const char *text, size_t len, uint8_t *out)
{
    CF_ASSERT(out != NULL && (text != NULL || len == 0));
    for (uint8_t s = 0; s < RISK_REVIEW_STATES_N; s++) {
        if (strlen(state_names[s]) == len && memcmp(state_names[s], text, len) == 0) {
            *out = s;
            return CF_OK;
        }
    }
    return CF_ERR_INVALID_FIELD;
}

bool risk_decisions_reason_valid(const char *text, const char **detail_out)
{
    static const char *const why[] = {"", "reason: at most 500 characters",
                                      "reason: not valid UTF-8", "reason: no control characters"};
    enum risk_text_verdict v =
        risk_text_check(text, RISK_DECISIONS_REASON_BYTES_MAX, RISK_DECISIONS_REASON_CHARS_MAX,
                        RISK_TEXT_LINES | RISK_TEXT_EMPTY, NULL);
    if (v != RISK_TEXT_OK && detail_out != NULL)
        *detail_out = why[v];
    return v == RISK_TEXT_OK;
}

void risk_decision_rec_from(struct risk_decision_rec *rec, const struct rules_decision *decision)
{
    CF_ASSERT(rec != NULL && decision != NULL);
    CF_ASSERT((unsigned)decision->action < RULES_ACTIONS_N &&
              decision->matches_n <= RULES_MATCHES_MAX);
    rec->action = (uint8_t)decision->action;
    rec->set_version = decision->set_version;
    rec->matches_n = decision->matches_n;
    rec->matches_omitted_n = decision->matches_omitted_n;
    memcpy(rec->matches, decision->matches, decision->matches_n * sizeof(rec->matches[0]));
}

/* Whether text (of a bytes_max field) is a NUL-terminated stored text: 1..max-1 printable. */
static bool rec_texts_valid(const struct risk_decision_rec *rec)
{
    return risk_token_valid(rec->op_id, sizeof(rec->op_id), false) &&
           risk_token_valid(rec->party, sizeof(rec->party), true) &&
           risk_token_valid(rec->kind, sizeof(rec->kind), false) &&
           risk_token_valid(rec->currency, sizeof(rec->currency), false);
}

static bool rec_valid(const struct risk_decision_rec *rec)
{
    if (!rec_texts_valid(rec) || rec->amount_minor < 0 || rec->action >= RULES_ACTIONS_N ||
        rec->matches_n > RULES_MATCHES_MAX || rec->created_at_us <= 0 || rec->counted_at_us < 0 ||
        (rec->review_state != RISK_REVIEW_NONE && rec->review_state != RISK_REVIEW_PENDING))
        return false;
    for (size_t k = 0; k < RULES_KEYS_N; k++) {
        if (!risk_token_valid(rec->keys[k], RISK_DECISIONS_KEY_BYTES_MAX, true))
            return false;
    }
    for (size_t i = 0; i < rec->matches_n; i++) {
        const struct rules_match *m = &rec->matches[i];
        if ((unsigned)m->action >= RULES_ACTIONS_N ||
            !rules_code_valid(m->id, strnlen(m->id, sizeof(m->id)), RULES_ID_BYTES_MAX) ||
            !rules_code_valid(m->reason, strnlen(m->reason, sizeof(m->reason)),
                              RULES_REASON_BYTES_MAX))
            return false;
    }
    const struct risk_features *f = &rec->features;
    const char *texts[] = {f->currency, f->kind, f->payee_kind, f->ip_country, f->home_country};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        if (memchr(texts[i], '\0', RULES_TEXT_BYTES_MAX) == NULL)
            return false;
    }
    return true;
}

/* Shared helpers ------------------------------------------------------------------------------ */

static void reason_aad(const char *op_id, char aad[REASON_AAD_BYTES])
{
    int n = snprintf(aad, REASON_AAD_BYTES, "risk_decisions:%s:review_reason", op_id);
    CF_ASSERT(n > 0 && n < REASON_AAD_BYTES);
}

static enum cf_err reason_seal(struct risk_decisions *d, const char *op_id, const char *reason,
                               uint8_t out[REASON_SEALED_BYTES_MAX], size_t *len_out)
{
    char aad[REASON_AAD_BYTES];
    reason_aad(op_id, aad);
    return risk_seal(d->vault, d->vault_ctx, aad, reason, strlen(reason), out,
                     REASON_SEALED_BYTES_MAX, len_out);
}

static enum cf_err reason_open(struct risk_decisions *d, const char *op_id, const uint8_t *ct,
                               size_t n, char out[RISK_DECISIONS_REASON_BYTES_MAX])
{
    char aad[REASON_AAD_BYTES];
    reason_aad(op_id, aad);
    return risk_unseal_text(d->vault, d->vault_ctx, aad, ct, n, out,
                            RISK_DECISIONS_REASON_BYTES_MAX);
}

/* Rows ---------------------------------------------------------------------------------------- */

#define D_COLS                                                                                     \
    "row, op_id, party, kind, amount_minor, currency, action, set_version, matches, "              \
    "matches_omitted, features, review_state, reviewer, review_reason_sealed, created_at_us, "     \
    "decided_at_us, key_user, key_device, key_ip, key_payee, counted_at_us"

/* Row i of r into *out; the review reason opened when open. */
static enum cf_err rec_from_row(struct risk_decisions *d, const struct sql_rows *r, size_t i,
                                bool open, struct risk_decision_rec *out)
{
    size_t c = 0, sealed_len = 0;
    memset(out, 0, sizeof(*out));
    out->row = (uint64_t)sql_row_int(r, i, c++);
    risk_text_copy(out->op_id, sizeof(out->op_id), sql_row_text(r, i, c++));
    risk_text_copy(out->party, sizeof(out->party), sql_row_text(r, i, c++));
    risk_text_copy(out->kind, sizeof(out->kind), sql_row_text(r, i, c++));
    out->amount_minor = sql_row_int(r, i, c++);
    risk_text_copy(out->currency, sizeof(out->currency), sql_row_text(r, i, c++));
    int64_t action = sql_row_int(r, i, c++);
    out->set_version = (uint64_t)sql_row_int(r, i, c++);
    enum cf_err err = matches_read(sql_row_text(r, i, c++), out);
    int64_t omitted = sql_row_int(r, i, c++);
    if (err == CF_OK)
        err = features_read(sql_row_text(r, i, c++), &out->features);
    else
        c++;
    int64_t state = sql_row_int(r, i, c++);
    risk_text_copy(out->reviewer, sizeof(out->reviewer), sql_row_text(r, i, c++));
    const uint8_t *sealed = sql_row_blob(r, i, c++, &sealed_len);
    out->created_at_us = sql_row_int(r, i, c++);
    out->decided_at_us = sql_row_int(r, i, c++);
    for (size_t k = 0; k < RULES_KEYS_N; k++)
        risk_text_copy(out->keys[k], sizeof(out->keys[k]), sql_row_text(r, i, c++));
    out->counted_at_us = sql_row_int(r, i, c++);
    CF_ASSERT(c == sql_rows_cols(r));
    if (err == CF_OK && (action < 0 || action >= RULES_ACTIONS_N || omitted < 0 || state < 0 ||
                         state >= RISK_REVIEW_STATES_N))
        err = CF_ERR_CORRUPT;
    out->action = (uint8_t)action;
    out->matches_omitted_n = (size_t)omitted;
    out->review_state = (uint8_t)state;
    if (err == CF_OK && open && sealed != NULL)
        err = reason_open(d, out->op_id, sealed, sealed_len, out->review_reason);
    return err;
}

/* Recording ----------------------------------------------------------------------------------- */

enum cf_err risk_decisions_put(struct risk_decisions *d, const struct risk_decision_rec *rec)
{
    CF_ASSERT(d != NULL && rec != NULL);
    if (!rec_valid(rec))
        return CF_ERR_INVALID_FIELD;
    char *features = malloc(RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX);
    char *matches = malloc(RISK_DECISIONS_MATCHES_TEXT_BYTES_MAX);
    enum cf_err err = features != NULL && matches != NULL ? CF_OK : CF_ERR_NOMEM;
    struct sqltx *tx = NULL;
    if (err == CF_OK) {
        features_write(&rec->features, features);
        matches_write(rec, matches);
        /* only a held movement's row gates money: the others are a log (see the header) */
        err = rec->review_state == RISK_REVIEW_PENDING ? sql_begin(d->db, &tx)
                                                       : sql_begin_relaxed(d->db, &tx);
    }
    if (err == CF_OK) {
        struct sql_value p[] = {
            SQL_T(rec->op_id),
            SQL_T(rec->party),
            SQL_T(rec->kind),
            SQL_I(rec->amount_minor),
            SQL_T(rec->currency),
            SQL_I(rec->action),
            SQL_I(rec->set_version),
            SQL_T(matches),
            SQL_I(rec->matches_omitted_n),
            SQL_T(features),
            SQL_I(rec->review_state),
            SQL_I(rec->created_at_us),
            SQL_T(rec->keys[RULES_KEY_USER]),
            SQL_T(rec->keys[RULES_KEY_DEVICE]),
            SQL_T(rec->keys[RULES_KEY_IP]),
            SQL_T(rec->keys[RULES_KEY_PAYEE]),
            SQL_I(rec->counted_at_us),
        };
        _Static_assert(sizeof(p) / sizeof(p[0]) <= SQL_PARAMS_MAX, "one statement");
        err = sql_exec(tx,
                       "INSERT INTO risk_decisions (op_id, party, kind, amount_minor, currency, "
                       "action, set_version, matches, matches_omitted, features, review_state, "
                       "reviewer, review_reason_sealed, created_at_us, decided_at_us, key_user, "
                       "key_device, key_ip, key_payee, counted_at_us) VALUES "
                       "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '', NULL, $12, 0, $13, "
                       "$14, $15, $16, $17) ON CONFLICT (op_id) DO NOTHING",
                       p, sizeof(p) / sizeof(p[0]), NULL);
        err = risk_tx_end(tx, err);
    }
    if (err == CF_ERR_STORAGE_CONFLICT) /* a put of the same op won meanwhile: it stands */
        err = CF_OK;
    free(features);
    free(matches);
    return err;
}

/* Reads --------------------------------------------------------------------------------------- */

/* Runs a query of decisions and copies up to max rows into out (*n_out of them). */
static enum cf_err recs_query(struct risk_decisions *d, const char *sql, const struct sql_value *p,
                              size_t p_n, bool open, struct risk_decision_rec *out, size_t max,
                              size_t *n_out)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(d->db, &tx);
    if (err == CF_OK) {
        err = sql_query(tx, sql, p, p_n, &r);
        sql_rollback(tx);
    }
    size_t rows = err == CF_OK ? sql_rows_n(r) : 0, n = 0;
    for (size_t i = 0; i < rows && i < max && err == CF_OK; i++) {
        if ((err = rec_from_row(d, r, i, open, &out[n])) == CF_OK)
            n++;
    }
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

enum cf_err risk_decisions_get(struct risk_decisions *d, const char *op_id,
                               struct risk_decision_rec *out)
{
    CF_ASSERT(d != NULL && out != NULL);
    if (!risk_token_valid(op_id, RISK_DECISIONS_OP_BYTES_MAX, false))
        return CF_ERR_NOT_FOUND;
    struct risk_decision_rec *got = calloc(1, sizeof(*got));
    if (got == NULL)
        return CF_ERR_NOMEM;
    struct sql_value p[] = {SQL_T(op_id)};
    size_t n = 0;
    enum cf_err err = recs_query(d, "SELECT " D_COLS " FROM risk_decisions WHERE op_id = $1", p, 1,
                                 true, got, 1, &n);
    if (err == CF_OK && n == 0)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_OK) {
        CF_ASSERT(strcmp(got->op_id, op_id) == 0);
        *out = *got;
    }
    memset(got, 0, sizeof(*got)); /* a staff note */
    free(got);
    return err;
}

enum cf_err risk_decisions_review_set(struct risk_decisions *d, const char *op_id,
                                      uint8_t from_state, uint8_t to_state, const char *by,
                                      const char *reason, int64_t now_us)
{
    CF_ASSERT(d != NULL && from_state < RISK_REVIEW_STATES_N && to_state < RISK_REVIEW_STATES_N);
    CF_ASSERT(from_state != to_state && now_us >= 0);
    if (!risk_token_valid(op_id, RISK_DECISIONS_OP_BYTES_MAX, false) ||
        !risk_token_valid(by, RISK_DECISIONS_PARTY_BYTES_MAX, false) ||
        !risk_decisions_reason_valid(reason, NULL))
        return CF_ERR_INVALID_FIELD;
    uint8_t sealed[REASON_SEALED_BYTES_MAX];
    size_t sealed_len = 0;
    bool has_reason = reason != NULL && reason[0] != '\0';
    enum cf_err err = has_reason ? reason_seal(d, op_id, reason, sealed, &sealed_len) : CF_OK;
    struct sqltx *tx = NULL;
    if (err == CF_OK)
        err = sql_begin(d->db, &tx);
    if (err != CF_OK)
        return err;
    struct sql_value p[] = {SQL_T(op_id),
                            SQL_I(from_state),
                            SQL_I(to_state),
                            SQL_T(by),
                            has_reason ? SQL_B(sealed, sealed_len) : SQL_NUL,
                            SQL_I(now_us)};
    int64_t changed = 0;
    err = sql_exec(tx,
                   "UPDATE risk_decisions SET review_state = $3, reviewer = $4, "
                   "review_reason_sealed = $5, decided_at_us = $6 "
                   "WHERE op_id = $1 AND review_state = $2",
                   p, 6, &changed);
    struct sql_rows *r = NULL;
    if (err == CF_OK && changed == 0) { /* no such op, or in another state */
        err = sql_query(tx, "SELECT review_state FROM risk_decisions WHERE op_id = $1", p, 1, &r);
        if (err == CF_OK)
            err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : CF_ERR_CONFLICT;
        sql_rows_free(r);
    }
    CF_ASSERT(err != CF_OK || changed == 1);
    return risk_tx_end(tx, err);
}

/* Appends " AND <cond>" with the next parameter number to sql, and the value to p. */
static void filter_add(char *sql, size_t sql_bytes, const char *cond, struct sql_value *p,
                       size_t *p_n, struct sql_value v)
{
    size_t len = strlen(sql);
    int n = snprintf(sql + len, sql_bytes - len, " AND %s $%zu", cond, *p_n + 1);
    CF_ASSERT(n > 0 && (size_t)n < sql_bytes - len);
    p[(*p_n)++] = v;
}

enum cf_err risk_decisions_list(struct risk_decisions *d, const struct risk_decisions_filter *f,
                                struct risk_decision_rec *out, size_t max, size_t *n_out)
{
    CF_ASSERT(d != NULL && max <= RISK_DECISIONS_LIST_MAX && n_out != NULL);
    CF_ASSERT(out != NULL || max == 0);
    struct risk_decisions_filter none = {0};
    if (f == NULL)
        f = &none;
    if ((f->action_set && f->action >= RULES_ACTIONS_N) ||
        (f->review_set && f->review_state >= RISK_REVIEW_STATES_N) ||
        (f->party != NULL && !risk_token_valid(f->party, RISK_DECISIONS_PARTY_BYTES_MAX, false)) ||
        f->from_us < 0 || f->to_us < 0 || f->before_row > (uint64_t)INT64_MAX)
        return CF_ERR_INVALID_FIELD;
    char sql[1024] = "SELECT " D_COLS " FROM risk_decisions WHERE 1 = 1";
    struct sql_value p[8];
    size_t p_n = 0;
    if (f->before_row > 0)
        filter_add(sql, sizeof(sql), "row <", p, &p_n, SQL_I(f->before_row));
    if (f->action_set)
        filter_add(sql, sizeof(sql), "action =", p, &p_n, SQL_I(f->action));
    if (f->review_set)
        filter_add(sql, sizeof(sql), "review_state =", p, &p_n, SQL_I(f->review_state));
    if (f->party != NULL)
        filter_add(sql, sizeof(sql), "party =", p, &p_n, SQL_T(f->party));
    if (f->from_us > 0)
        filter_add(sql, sizeof(sql), "created_at_us >=", p, &p_n, SQL_I(f->from_us));
    if (f->to_us > 0)
        filter_add(sql, sizeof(sql), "created_at_us <", p, &p_n, SQL_I(f->to_us));
    size_t len = strlen(sql);
    int w = snprintf(sql + len, sizeof(sql) - len, " ORDER BY row DESC LIMIT $%zu", p_n + 1);
    CF_ASSERT(w > 0 && (size_t)w < sizeof(sql) - len);
    p[p_n++] = SQL_I(max);
    CF_ASSERT(p_n <= sizeof(p) / sizeof(p[0]));
    return recs_query(d, sql, p, p_n, false, out, max, n_out);
}

/* One page of recent_features: rows below *below_row created at or after since_us, into
 * out[*n..] and op_ids[*n..]; *below_row moves to the last row read, *more says whether the page
 * was full. */
static enum cf_err recent_page(struct risk_decisions *d, int64_t since_us, uint64_t *below_row,
                               size_t want, struct risk_features *out,
                               char (*op_ids)[RISK_DECISIONS_OP_BYTES_MAX], size_t *n, bool *more)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(d->db, &tx);
    struct sql_value p[] = {SQL_I(since_us), SQL_I(*below_row), SQL_I(want)};
    if (err == CF_OK) {
        err = sql_query(tx,
                        "SELECT row, op_id, features FROM risk_decisions WHERE created_at_us >= $1 "
                        "AND row < $2 ORDER BY row DESC LIMIT $3",
                        p, 3, &r);
        sql_rollback(tx);
    }
    size_t rows = err == CF_OK ? sql_rows_n(r) : 0;
    CF_ASSERT(rows <= want);
    for (size_t i = 0; i < rows && err == CF_OK; i++) {
        err = features_read(sql_row_text(r, i, 2), &out[*n]);
        risk_text_copy(op_ids[*n], RISK_DECISIONS_OP_BYTES_MAX, sql_row_text(r, i, 1));
        *below_row = (uint64_t)sql_row_int(r, i, 0);
        if (err == CF_OK)
            (*n)++;
    }
    sql_rows_free(r);
    *more = err == CF_OK && rows == want;
    return err;
}

enum cf_err risk_decisions_recent_features(struct risk_decisions *d, int64_t since_us,
                                           struct risk_features *out,
                                           char (*op_ids)[RISK_DECISIONS_OP_BYTES_MAX], size_t max,
                                           size_t *n_out)
{
    CF_ASSERT(d != NULL && max <= RISK_DECISIONS_RECENT_MAX && n_out != NULL);
    CF_ASSERT((out != NULL && op_ids != NULL) || max == 0);
    uint64_t below = (uint64_t)INT64_MAX;
    size_t n = 0;
    bool more = max > 0;
    enum cf_err err = CF_OK;
    while (more && err == CF_OK && n < max) {
        size_t want = max - n < RECENT_PAGE_ROWS ? max - n : RECENT_PAGE_ROWS;
        err = recent_page(d, since_us, &below, want, out, op_ids, &n, &more);
    }
    if (err == CF_OK) {
        CF_ASSERT(n <= max);
        *n_out = n;
    }
    return err;
}

/* Velocity keys ------------------------------------------------------------------------------ */

enum cf_err risk_decisions_counted_set(struct risk_decisions *d, const char *op_id, int64_t at_us)
{
    CF_ASSERT(d != NULL && at_us > 0);
    if (!risk_token_valid(op_id, RISK_DECISIONS_OP_BYTES_MAX, false))
        return CF_ERR_NOT_FOUND;
    struct sqltx *tx = NULL;
    enum cf_err err = sql_begin_relaxed(d->db, &tx); /* a log row, like the one it marks */
    if (err != CF_OK)
        return err;
    struct sql_value p[] = {SQL_T(op_id), SQL_I(at_us)};
    int64_t changed = 0;
    err = sql_exec(tx,
                   "UPDATE risk_decisions SET counted_at_us = $2 "
                   "WHERE op_id = $1 AND counted_at_us = 0",
                   p, 2, &changed);
    struct sql_rows *r = NULL;
    if (err == CF_OK && changed == 0) { /* no such op, or counted already (that stands) */
        err = sql_query(tx, "SELECT row FROM risk_decisions WHERE op_id = $1", p, 1, &r);
        if (err == CF_OK && sql_rows_n(r) == 0)
            err = CF_ERR_NOT_FOUND;
        sql_rows_free(r);
    }
    CF_ASSERT(err != CF_OK || changed <= 1);
    return risk_tx_end(tx, err);
}

/* Row i of a recent_keys query (row, counted_at_us, amount_minor, the four keys) into *out. */
static void counted_from_row(const struct sql_rows *r, size_t i, struct risk_decisions_counted *out)
{
    size_t c = 0;
    memset(out, 0, sizeof(*out));
    out->row = (uint64_t)sql_row_int(r, i, c++);
    out->counted_at_us = sql_row_int(r, i, c++);
    out->amount_minor = sql_row_int(r, i, c++);
    for (size_t k = 0; k < RULES_KEYS_N; k++)
        risk_text_copy(out->keys[k], sizeof(out->keys[k]), sql_row_text(r, i, c++));
    CF_ASSERT(c == sql_rows_cols(r));
}

/* Whether a counted row read back is one put could have written. */
static bool counted_valid(const struct risk_decisions_counted *c)
{
    if (c->counted_at_us <= 0 || c->amount_minor < 0)
        return false;
    for (size_t k = 0; k < RULES_KEYS_N; k++) {
        if (!risk_token_valid(c->keys[k], RISK_DECISIONS_KEY_BYTES_MAX, true))
            return false;
    }
    return true;
}

enum cf_err risk_decisions_recent_keys(struct risk_decisions *d, int64_t since_us,
                                       struct risk_decisions_cursor *cursor,
                                       struct risk_decisions_counted *out, size_t max,
                                       size_t *n_out)
{
    CF_ASSERT(d != NULL && cursor != NULL && out != NULL && n_out != NULL);
    CF_ASSERT(max >= 1 && max <= RISK_DECISIONS_KEYS_PAGE_MAX);
    CF_ASSERT(cursor->at_us >= 0 && cursor->row <= (uint64_t)INT64_MAX);
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    int64_t since = since_us > 1 ? since_us : 1; /* 0 means not counted */
    struct sql_value p[] = {SQL_I(since), SQL_I(cursor->at_us), SQL_I(cursor->row), SQL_I(max)};
    enum cf_err err = sql_begin(d->db, &tx);
    if (err == CF_OK) {
        err = sql_query(tx,
                        "SELECT row, counted_at_us, amount_minor, key_user, key_device, key_ip, "
                        "key_payee FROM risk_decisions WHERE counted_at_us >= $1 AND "
                        "(counted_at_us > $2 OR (counted_at_us = $2 AND row > $3)) "
                        "ORDER BY counted_at_us, row LIMIT $4",
                        p, 4, &r);
        sql_rollback(tx);
    }
    size_t rows = err == CF_OK ? sql_rows_n(r) : 0;
    CF_ASSERT(rows <= max);
    for (size_t i = 0; i < rows && err == CF_OK; i++) {
        counted_from_row(r, i, &out[i]);
        if (!counted_valid(&out[i]))
            err = CF_ERR_CORRUPT;
    }
    sql_rows_free(r);
    if (err != CF_OK)
        return err;
    if (rows > 0) {
        CF_ASSERT(out[rows - 1].counted_at_us >= cursor->at_us);
        cursor->at_us = out[rows - 1].counted_at_us;
        cursor->row = out[rows - 1].row;
    }
    *n_out = rows;
    return CF_OK;
}

enum cf_err risk_decisions_recent_keys_start(struct risk_decisions *d, int64_t since_us,
                                             size_t total_max, struct risk_decisions_cursor *out)
{
    CF_ASSERT(d != NULL && out != NULL && total_max >= 1 && total_max <= (size_t)INT64_MAX);
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    int64_t since = since_us > 1 ? since_us : 1;
    struct sql_value p[] = {SQL_I(since), SQL_I((int64_t)total_max)};
    enum cf_err err = sql_begin(d->db, &tx);
    if (err == CF_OK) {
        /* the newest row beyond the total_max newest: reading starts after it */
        err = sql_query(tx,
                        "SELECT counted_at_us, row FROM risk_decisions WHERE counted_at_us >= $1 "
                        "ORDER BY counted_at_us DESC, row DESC LIMIT 1 OFFSET $2",
                        p, 2, &r);
        sql_rollback(tx);
    }
    if (err != CF_OK)
        return err;
    struct risk_decisions_cursor c = {0, 0};
    if (sql_rows_n(r) == 1) {
        c.at_us = sql_row_int(r, 0, 0);
        c.row = (uint64_t)sql_row_int(r, 0, 1);
    }
    sql_rows_free(r);
    CF_ASSERT(c.at_us >= 0);
    *out = c;
    return CF_OK;
}

enum cf_err risk_decisions_pseudonym(struct risk_decisions *d, const char *domain,
                                     const char *value,
                                     char out[RISK_DECISIONS_PSEUDONYM_HEX_BYTES])
{
    CF_ASSERT(d != NULL && domain != NULL && domain[0] != '\0' && value != NULL && out != NULL);
    size_t n = strnlen(value, VELOCITY_KEY_BYTES_MAX + 1);
    if (n == 0 || n > VELOCITY_KEY_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    const struct vault *v = d->vault(d->vault_ctx, RISK_DECISIONS_PSEUDONYM_KEY_ID);
    if (v == NULL)
        return CF_ERR_CONFIG;
    uint8_t blind[VAULT_BLIND_BYTES];
    enum cf_err err = vault_blind(v, RISK_DECISIONS_PSEUDONYM_KEY_ID, domain, value, n, blind);
    if (err == CF_OK)
        hash_hex(blind, RISK_DECISIONS_PSEUDONYM_BYTES, out);
    CF_ASSERT(err != CF_OK || strlen(out) == RISK_DECISIONS_PSEUDONYM_HEX_BYTES - 1);
    return err;
}

void risk_decisions_features_text(const struct risk_features *f,
                                  char out[RISK_DECISIONS_FEATURES_TEXT_BYTES_MAX])
{
    CF_ASSERT(f != NULL && out != NULL);
    features_write(f, out);
    CF_ASSERT(out[0] == '{');
}
