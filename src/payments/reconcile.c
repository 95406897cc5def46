/* reconcile.c - the settlement file's reader and the comparator; see reconcile.h.
 *
 * The reader walks the text once, byte by byte, copying each field into a fixed buffer (a field
 * past RECONCILE_FIELD_BYTES_MAX stops it at once). The comparator sorts index arrays (qsort on
 * {string, index} pairs, ties by index so the earliest row wins) and finds by binary search:
 * O(n log n) in rows and operations, with every array sized up front from the inputs. */
#include "payments/reconcile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"

static const char header_text[] = "reference,op_id,type,amount_minor,currency,status";
static const char *const header_names[RECONCILE_COLUMNS] = {"reference",    "op_id",    "type",
                                                            "amount_minor", "currency", "status"};

static enum cf_err fail(struct recon_error *e, const char *field, uint32_t line, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

static enum cf_err fail(struct recon_error *e, const char *field, uint32_t line, const char *fmt,
                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    e->field = field;
    e->line = line;
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return CF_ERR_INVALID_FIELD;
}

/* The reader --------------------------------------------------------------------------------- */

void recon_csv_init(struct recon_csv *c, const char *text, size_t len)
{
    CF_ASSERT(c != NULL && (text != NULL || len == 0));
    c->text = text;
    c->len = len;
    c->pos = 0;
    c->line = 1;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        c->pos = 3; /* a UTF-8 byte order mark */
}

static bool at_crlf(const struct recon_csv *c)
{
    return c->pos + 1 < c->len && c->text[c->pos] == '\r' && c->text[c->pos + 1] == '\n';
}

/* Whether the reader stands at the end of a field: a comma, a line break or the end. */
static bool at_field_end(const struct recon_csv *c)
{
    return c->pos == c->len || c->text[c->pos] == ',' || c->text[c->pos] == '\n' || at_crlf(c);
}

/* Reads a quoted field's content (pos after the opening quote) up to its closing quote. */
static enum cf_err quoted_read(struct recon_csv *c, char *out, size_t *n, struct recon_error *e)
{
    uint32_t first = c->line;
    while (c->pos < c->len) {
        char ch = c->text[c->pos++];
        if (ch == '"') {
            if (c->pos == c->len || c->text[c->pos] != '"')
                return CF_OK; /* the closing quote */
            c->pos++;         /* a doubled quote is one quote */
        } else if (ch == '\n') {
            c->line++;
        } else if (ch == '\0') {
            return fail(e, "csv", c->line, "a NUL byte");
        }
        if (*n == RECONCILE_FIELD_BYTES_MAX)
            return fail(e, "csv", first, "a field longer than %d bytes", RECONCILE_FIELD_BYTES_MAX);
        out[(*n)++] = ch;
    }
    return fail(e, "csv", first, "a quoted field is never closed");
}

/* Reads one field into out (RECONCILE_FIELD_BYTES_MAX + 1 bytes); pos is left at its end. */
static enum cf_err field_read(struct recon_csv *c, char *out, struct recon_error *e)
{
    size_t n = 0;
    uint32_t first = c->line;
    enum cf_err err = CF_OK;
    if (c->pos < c->len && c->text[c->pos] == '"') {
        c->pos++;
        if ((err = quoted_read(c, out, &n, e)) != CF_OK)
            return err;
        if (!at_field_end(c))
            return fail(e, "csv", c->line, "text after a closing quote");
    }
    while (!at_field_end(c)) {
        char ch = c->text[c->pos++];
        if (ch == '"')
            return fail(e, "csv", c->line, "a quote inside a field that is not quoted");
        if (ch == '\r')
            return fail(e, "csv", c->line, "a carriage return without a line feed");
        if (ch == '\0')
            return fail(e, "csv", c->line, "a NUL byte");
        if (n == RECONCILE_FIELD_BYTES_MAX)
            return fail(e, "csv", first, "a field longer than %d bytes", RECONCILE_FIELD_BYTES_MAX);
        out[n++] = ch;
    }
    CF_ASSERT(n <= RECONCILE_FIELD_BYTES_MAX);
    out[n] = '\0';
    return CF_OK;
}

/* Skips blank lines at the start of a record. */
static void blank_lines_skip(struct recon_csv *c)
{
    while (c->pos < c->len && (c->text[c->pos] == '\n' || at_crlf(c))) {
        c->pos += c->text[c->pos] == '\n' ? 1 : 2;
        c->line++;
    }
}

enum cf_err recon_csv_next(struct recon_csv *c, char (*fields)[RECONCILE_FIELD_BYTES_MAX + 1],
                           size_t fields_max, size_t *n_out, uint32_t *line_out,
                           struct recon_error *e)
{
    CF_ASSERT(c != NULL && fields != NULL && fields_max > 0 && e != NULL);
    CF_ASSERT(c->pos <= c->len);
    blank_lines_skip(c);
    uint32_t first = c->line;
    size_t n = 0;
    while (c->pos < c->len) {
        enum cf_err err = field_read(c, fields[n++], e);
        if (err != CF_OK)
            return err;
        if (c->pos == c->len)
            break;
        if (c->text[c->pos] != ',') { /* a line break ends the record */
            c->pos += c->text[c->pos] == '\n' ? 1 : 2;
            c->line++;
            break;
        }
        c->pos++;
        if (n == fields_max)
            return fail(e, "csv", first, "more than %zu columns", fields_max);
        if (c->pos == c->len)
            fields[n++][0] = '\0'; /* "a," at the very end: the empty last field */
    }
    CF_ASSERT(n <= fields_max);
    *n_out = n;
    *line_out = first;
    return CF_OK;
}

/* Rows --------------------------------------------------------------------------------------- */

/* 1..max printable ASCII characters without spaces (0..max when it may be empty). */
static bool token_ok(const char *s, size_t max, bool may_be_empty)
{
    size_t n = strlen(s);
    if (n > max || (n == 0 && !may_be_empty))
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    }
    return true;
}

static bool currency_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MONEY_CODE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

/* Digits only, 0..INT64_MAX. *too_big tells an overflow from a malformed number. */
static bool amount_parse(const char *s, int64_t *out, bool *too_big)
{
    *too_big = false;
    if (s[0] == '\0')
        return false;
    int64_t v = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10) {
            *too_big = true;
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static enum cf_err row_parse(char (*f)[RECONCILE_FIELD_BYTES_MAX + 1], size_t n, uint32_t line,
                             struct recon_row *r, struct recon_error *e)
{
    if (n != RECONCILE_COLUMNS)
        return fail(e, "csv", line, "expected %d columns, found %zu", RECONCILE_COLUMNS, n);
    if (!token_ok(f[0], PAY_REF_BYTES_MAX - 1, false))
        return fail(e, "csv", line, "reference must be 1 to %d printable characters, no spaces",
                    PAY_REF_BYTES_MAX - 1);
    if (!token_ok(f[1], PAY_ID_BYTES_MAX - 1, true))
        return fail(e, "csv", line, "op_id must be at most %d printable characters, no spaces",
                    PAY_ID_BYTES_MAX - 1);
    bool charge = strcmp(f[2], "charge") == 0;
    if (!charge && strcmp(f[2], "payout") != 0)
        return fail(e, "csv", line, "type must be charge or payout");
    bool too_big = false;
    if (!amount_parse(f[3], &r->amount_minor, &too_big))
        return fail(e, "csv", line, "amount_minor %s",
                    too_big ? "is larger than 9223372036854775807"
                            : "must be a whole number of minor units, digits only");
    if (!currency_ok(f[4]))
        return fail(e, "csv", line, "currency must be 1 to %d of A-Z, 0-9 and _",
                    MONEY_CODE_BYTES_MAX);
    bool settled = strcmp(f[5], "settled") == 0;
    if (!settled && strcmp(f[5], "failed") != 0)
        return fail(e, "csv", line, "status must be settled or failed");
    snprintf(r->reference, sizeof(r->reference), "%s", f[0]);
    snprintf(r->op_id, sizeof(r->op_id), "%s", f[1]);
    snprintf(r->currency, sizeof(r->currency), "%s", f[4]);
    r->type = charge ? RECON_TYPE_CHARGE : RECON_TYPE_PAYOUT;
    r->state = settled ? RECON_STATE_SETTLED : RECON_STATE_FAILED;
    r->line = line;
    return CF_OK;
}

static enum cf_err header_check(char (*f)[RECONCILE_FIELD_BYTES_MAX + 1], size_t n, uint32_t line,
                                struct recon_error *e)
{
    if (n == 0)
        return fail(e, "csv", line, "the file is empty: it needs the header %s", header_text);
    bool ok = n == RECONCILE_COLUMNS;
    for (size_t i = 0; ok && i < n; i++)
        ok = strcmp(f[i], header_names[i]) == 0;
    return ok ? CF_OK : fail(e, "csv", line, "the header must be %s", header_text);
}

/* An upper bound of the records in text: each but the last ends with a line feed. */
static size_t records_bound(const char *text, size_t len)
{
    size_t n = 1;
    if (len == 0)
        return n;
    const char *p = text, *end = text + len;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

enum cf_err recon_file_parse(const char *text, size_t len, struct arena *arena,
                             struct recon_row **rows_out, size_t *n_out, struct recon_error *e)
{
    CF_ASSERT((text != NULL || len == 0) && arena != NULL && e != NULL);
    if (len > RECONCILE_FILE_BYTES_MAX) {
        fail(e, "csv", 0, "the file is larger than %d bytes", RECONCILE_FILE_BYTES_MAX);
        return CF_ERR_PAYLOAD_TOO_LARGE;
    }
    size_t cap = records_bound(text, len);
    if (cap > RECONCILE_ROWS_MAX)
        cap = RECONCILE_ROWS_MAX;
    struct recon_row *rows = arena_calloc(arena, cap, sizeof(*rows));
    if (rows == NULL)
        return CF_ERR_NOMEM;
    char f[RECONCILE_COLUMNS][RECONCILE_FIELD_BYTES_MAX + 1];
    struct recon_csv c;
    recon_csv_init(&c, text, len);
    size_t n = 0, count = 0;
    uint32_t line = 0;
    enum cf_err err = recon_csv_next(&c, f, RECONCILE_COLUMNS, &n, &line, e);
    if (err == CF_OK)
        err = header_check(f, n, line, e);
    while (err == CF_OK) {
        if ((err = recon_csv_next(&c, f, RECONCILE_COLUMNS, &n, &line, e)) != CF_OK || n == 0)
            break;
        if (count == RECONCILE_ROWS_MAX) {
            err = fail(e, "csv", line, "more than %d rows", RECONCILE_ROWS_MAX);
            break;
        }
        CF_ASSERT(count < cap); /* records_bound counted this record's line */
        err = row_parse(f, n, line, &rows[count], e);
        count += err == CF_OK;
    }
    if (err != CF_OK)
        return err;
    CF_ASSERT(count <= RECONCILE_ROWS_MAX);
    *rows_out = rows;
    *n_out = count;
    return CF_OK;
}

/* Names -------------------------------------------------------------------------------------- */

enum recon_state recon_state_of(uint8_t pay_status)
{
    return pay_status == PAY_STATUS_COMPLETED ? RECON_STATE_SETTLED
           : pay_status == PAY_STATUS_FAILED  ? RECON_STATE_FAILED
                                              : RECON_STATE_OPEN;
}

const char *recon_kind_name(uint8_t kind)
{
    static const char *const names[RECON_KIND_MAX + 1] = {
        "unknown",          "missing_in_coffer", "missing_in_gateway",
        "duplicated",       "type_differs",      "reference_differs",
        "currency_differs", "amount_differs",    "status_differs"};
    return kind <= RECON_KIND_MAX ? names[kind] : "unknown";
}

const char *recon_type_name(uint8_t type)
{
    return type == RECON_TYPE_CHARGE ? "charge" : type == RECON_TYPE_PAYOUT ? "payout" : "unknown";
}

const char *recon_state_name(uint8_t state)
{
    return state == RECON_STATE_SETTLED  ? "settled"
           : state == RECON_STATE_FAILED ? "failed"
                                         : "open";
}

/* Comparison --------------------------------------------------------------------------------- */

/* A string and the index of what it belongs to; sorted by string, then index. */
struct key {
    const char *s;
    uint32_t i;
};

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c != 0 ? c : (x->i > y->i) - (x->i < y->i);
}

/* The index of the first key equal to s, or RECON_NONE. */
static uint32_t keys_find(const struct key *k, size_t n, const char *s)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(k[mid].s, s) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && strcmp(k[lo].s, s) == 0 ? k[lo].i : RECON_NONE;
}

/* Marks dup[i] for every key whose string an earlier (lower index) key has. */
static void keys_mark_repeats(const struct key *k, size_t n, bool *dup)
{
    for (size_t j = 1; j < n; j++) {
        if (strcmp(k[j].s, k[j - 1].s) == 0)
            dup[k[j].i] = true;
    }
}

/* The working state of one comparison (all in the caller's arena). */
struct cmp {
    const struct recon_row *rows;
    size_t rows_n;
    const struct recon_op *ops;
    size_t ops_n;
    struct key *by_id, *by_ref; /* operations by id, by gateway reference (non-empty ones) */
    size_t by_ref_n;
    bool *dup;     /* per row: an earlier row has its reference or op_id */
    bool *matched; /* per operation */
    struct recon_result *out;
    size_t cap;
};

static void emit(struct cmp *c, uint8_t kind, uint32_t row, uint32_t op)
{
    CF_ASSERT(c->out->mismatches_n < c->cap && kind >= 1 && kind <= RECON_KIND_MAX);
    c->out->mismatches[c->out->mismatches_n++] = (struct recon_mismatch){row, op, kind};
    c->out->by_kind[kind]++;
}

static enum cf_err cmp_index(struct cmp *c, struct arena *arena)
{
    struct key *row_refs = arena_calloc(arena, c->rows_n + 1, sizeof(*row_refs));
    struct key *row_ids = arena_calloc(arena, c->rows_n + 1, sizeof(*row_ids));
    c->by_id = arena_calloc(arena, c->ops_n + 1, sizeof(*c->by_id));
    c->by_ref = arena_calloc(arena, c->ops_n + 1, sizeof(*c->by_ref));
    c->dup = arena_calloc(arena, c->rows_n + 1, sizeof(*c->dup));
    c->matched = arena_calloc(arena, c->ops_n + 1, sizeof(*c->matched));
    if (row_refs == NULL || row_ids == NULL || c->by_id == NULL || c->by_ref == NULL ||
        c->dup == NULL || c->matched == NULL)
        return CF_ERR_NOMEM;
    size_t ids_n = 0;
    for (uint32_t i = 0; i < c->rows_n; i++) {
        row_refs[i] = (struct key){c->rows[i].reference, i};
        if (c->rows[i].op_id[0] != '\0')
            row_ids[ids_n++] = (struct key){c->rows[i].op_id, i};
    }
    qsort(row_refs, c->rows_n, sizeof(*row_refs), key_cmp);
    qsort(row_ids, ids_n, sizeof(*row_ids), key_cmp);
    keys_mark_repeats(row_refs, c->rows_n, c->dup);
    keys_mark_repeats(row_ids, ids_n, c->dup);
    for (uint32_t i = 0; i < c->ops_n; i++) {
        c->by_id[i] = (struct key){c->ops[i].id, i};
        if (c->ops[i].gateway_ref[0] != '\0')
            c->by_ref[c->by_ref_n++] = (struct key){c->ops[i].gateway_ref, i};
    }
    qsort(c->by_id, c->ops_n, sizeof(*c->by_id), key_cmp);
    qsort(c->by_ref, c->by_ref_n, sizeof(*c->by_ref), key_cmp);
    return CF_OK;
}

static bool type_agrees(uint8_t type, uint8_t kind)
{
    return type == RECON_TYPE_CHARGE ? kind == PAY_KIND_TOPUP
                                     : kind == PAY_KIND_WITHDRAWAL || kind == PAY_KIND_PAYOUT;
}

/* Compares row i with the operation it names. */
static void cmp_row(struct cmp *c, uint32_t i)
{
    const struct recon_row *r = &c->rows[i];
    if (c->dup[i]) {
        emit(c, RECON_DUPLICATED, i, RECON_NONE);
        return;
    }
    uint32_t o = r->op_id[0] != '\0' ? keys_find(c->by_id, c->ops_n, r->op_id) : RECON_NONE;
    bool by_ref = o == RECON_NONE;
    if (by_ref)
        o = keys_find(c->by_ref, c->by_ref_n, r->reference);
    if (o == RECON_NONE) {
        emit(c, RECON_MISSING_IN_COFFER, i, RECON_NONE);
        return;
    }
    if (c->matched[o]) {
        emit(c, RECON_DUPLICATED, i, o);
        return;
    }
    c->matched[o] = true;
    const struct recon_op *op = &c->ops[o];
    size_t before = c->out->mismatches_n;
    if (!type_agrees(r->type, op->kind))
        emit(c, RECON_TYPE_DIFFERS, i, o);
    if (by_ref ? r->op_id[0] != '\0'
               : op->gateway_ref[0] != '\0' && strcmp(op->gateway_ref, r->reference) != 0)
        emit(c, RECON_REFERENCE_DIFFERS, i, o);
    if (strcmp(r->currency, op->currency) != 0)
        emit(c, RECON_CURRENCY_DIFFERS, i, o);
    else if (r->amount_minor != op->amount_minor)
        emit(c, RECON_AMOUNT_DIFFERS, i, o);
    if ((enum recon_state)r->state != recon_state_of(op->status))
        emit(c, RECON_STATUS_DIFFERS, i, o);
    if (c->out->mismatches_n == before)
        c->out->matched++;
}

enum cf_err recon_compare(const struct recon_row *rows, size_t rows_n, const struct recon_op *ops,
                          size_t ops_n, int64_t from_us, int64_t to_us, struct arena *arena,
                          struct recon_result *out)
{
    CF_ASSERT(rows_n <= RECONCILE_ROWS_MAX && ops_n <= RECONCILE_OPS_MAX);
    CF_ASSERT((rows != NULL || rows_n == 0) && (ops != NULL || ops_n == 0) && arena != NULL);
    struct recon_result res;
    memset(&res, 0, sizeof(res));
    struct cmp c = {.rows = rows, .rows_n = rows_n, .ops = ops, .ops_n = ops_n, .out = &res};
    c.cap = 4 * rows_n + ops_n; /* a row has at most 4 mismatches, an operation 1 */
    res.mismatches = arena_calloc(arena, c.cap + 1, sizeof(*res.mismatches));
    enum cf_err err = res.mismatches == NULL ? CF_ERR_NOMEM : cmp_index(&c, arena);
    if (err != CF_OK)
        return err;
    for (uint32_t i = 0; i < rows_n; i++)
        cmp_row(&c, i);
    for (uint32_t o = 0; o < ops_n; o++) {
        const struct recon_op *op = &ops[o];
        if (!c.matched[o] && recon_state_of(op->status) == RECON_STATE_SETTLED &&
            op->created_at_us >= from_us && op->created_at_us < to_us)
            emit(&c, RECON_MISSING_IN_GATEWAY, RECON_NONE, o);
    }
    size_t sum = 0;
    for (size_t k = 0; k <= RECON_KIND_MAX; k++)
        sum += res.by_kind[k];
    CF_ASSERT(sum == res.mismatches_n && res.matched <= rows_n);
    *out = res;
    return CF_OK;
}

/* Text --------------------------------------------------------------------------------------- */

int recon_mismatch_format(const struct recon_mismatch *m, const struct recon_row *rows,
                          const struct recon_op *ops, char *out, size_t out_bytes)
{
    CF_ASSERT(m != NULL && out != NULL && out_bytes > 0);
    const struct recon_row *r = m->row != RECON_NONE ? &rows[m->row] : NULL;
    const struct recon_op *o = m->op != RECON_NONE ? &ops[m->op] : NULL;
    CF_ASSERT(r != NULL || o != NULL);
    char line[24] = "", gw[192] = "", cf[256] = "";
    const char *ref = r != NULL ? r->reference : o->gateway_ref;
    const char *id = o != NULL ? o->id : r->op_id;
    if (r != NULL) {
        snprintf(line, sizeof(line), " line=%u", (unsigned)r->line);
        snprintf(gw, sizeof(gw),
                 " gateway_type=%s gateway_amount_minor=%lld gateway_currency=%s "
                 "gateway_status=%s",
                 recon_type_name(r->type), (long long)r->amount_minor, r->currency,
                 recon_state_name(r->state));
    }
    if (o != NULL)
        snprintf(cf, sizeof(cf),
                 " coffer_type=%s coffer_amount_minor=%lld coffer_currency=%s coffer_status=%s"
                 "%s%s",
                 pay_kind_name(o->kind), (long long)o->amount_minor, o->currency,
                 pay_status_name(o->status), o->gateway_ref[0] != '\0' ? " coffer_reference=" : "",
                 o->gateway_ref);
    return snprintf(out, out_bytes, "%s%s%s%s%s%s%s%s", recon_kind_name(m->kind), line,
                    ref[0] != '\0' ? " reference=" : "", ref, id[0] != '\0' ? " op_id=" : "", id,
                    gw, cf);
}

/* The window --------------------------------------------------------------------------------- */

static enum cf_err bound_parse(const char *text, const char *field, int64_t *out,
                               struct recon_error *e)
{
    if (text == NULL || text[0] == '\0')
        return CF_OK;
    if (cf_time_parse_rfc3339(text, out) != CF_OK)
        return fail(e, field, 0, "%s must be a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM:SSZ",
                    field);
    return CF_OK;
}

enum cf_err recon_window_parse(const char *from, const char *to, int64_t *from_us, int64_t *to_us,
                               struct recon_error *e)
{
    CF_ASSERT(from_us != NULL && to_us != NULL && e != NULL);
    int64_t f = 0, t = INT64_MAX;
    enum cf_err err = bound_parse(from, "from", &f, e);
    if (err == CF_OK)
        err = bound_parse(to, "to", &t, e);
    if (err == CF_OK && f >= t)
        err = fail(e, "to", 0, "to must come after from");
    if (err != CF_OK)
        return err;
    CF_ASSERT(f >= 0 && f < t);
    *from_us = f;
    *to_us = t;
    return CF_OK;
}
