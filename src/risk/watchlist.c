/* watchlist.c - in-memory watchlists: CSV reading, the two loaders, the span index and
 * screening; see watchlist.h. */
#include "risk/watchlist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Static_assert(WATCHLIST_NAMES_MAX <= UINT32_MAX / SCREEN_SPANS_MAX, "span items fit uint32_t");
_Static_assert(WATCHLIST_POOL_BYTES_MAX <= UINT32_MAX, "pool offsets are uint32_t");
_Static_assert(WATCHLIST_CSV_FIELDS_MAX >= 12, "the SDN layout fits a record");

#define FNV_OFFSET UINT64_C(14695981039346656037)
#define FNV_PRIME UINT64_C(1099511628211)
#define SUB_BYTE 0x1A
#define SDN_FIELDS 12
#define ALT_FIELDS 5
/* Distinct spans of one list: every name's spans at worst. */
#define STRS_MAX ((size_t)WATCHLIST_NAMES_MAX * SCREEN_SPANS_MAX)

struct dob_range {
    uint16_t lo, hi;
};

struct wl_entry {
    uint32_t id, name, dob, country, program; /* pool offsets of NUL-terminated text */
    uint32_t names_first, names_n;            /* names[names_first..+names_n), primary first */
    struct dob_range dobs[WATCHLIST_DOBS_MAX];
    uint8_t dobs_n, type;
};

struct wl_name {
    uint32_t entry;
    uint32_t display; /* pool offset, NUL-terminated */
    uint32_t text;    /* pool offset of the folded text */
    uint32_t tok_first;
    uint32_t generic; /* screen_name.generic */
    uint16_t text_len;
    uint8_t tokens_n;
};

struct wl_tok {
    uint16_t off, len;
};

/* A distinct span of the list's names: its text (first occurrence) and the names holding it. */
struct wl_str {
    uint32_t text, len;
    uint32_t post_first, post_n;
    uint32_t last_name; /* while building: the last name counted, plus one */
    bool single;        /* some name holds it as a single token */
};

/* A name waiting to be normalized: loaders add them in any order, entry by entry later. */
struct pending {
    uint32_t entry, display, line;
    bool in_alt;
};

struct watchlist {
    char *pool;
    size_t pool_n, pool_cap;
    struct wl_entry *entries;
    size_t entries_n, entries_cap;
    struct wl_name *names;
    size_t names_n;
    struct wl_tok *toks;
    size_t toks_n, toks_cap;
    struct wl_str *strs;
    struct screen_sig *sigs;
    size_t strs_n, strs_cap, sigs_cap;
    size_t singles_n; /* strs[0..singles_n) are the spans some name holds as a single token */
    /* strs of part p (0 singles, 1 the others) with length b: [by_len[p][b], by_len[p][b + 1]) */
    uint32_t by_len[2][SCREEN_FOLDED_BYTES_MAX + 2];
    size_t len_max; /* of any indexed span */
    uint32_t *posts;
    size_t posts_n;
    uint32_t list_name;
    uint64_t version;
};

/* Bounded growth ------------------------------------------------------------------------------ */

/* Makes room for need elements of elem bytes in *p (capacity *cap), never beyond max:
 * CF_ERR_INVALID_FIELD past max, CF_ERR_NOMEM when realloc fails (*p is then unchanged). */
static enum cf_err grow(void **p, size_t *cap, size_t need, size_t elem, size_t max)
{
    CF_ASSERT(elem > 0 && max <= SIZE_MAX / elem);
    if (need <= *cap)
        return CF_OK;
    if (need > max)
        return CF_ERR_INVALID_FIELD;
    size_t n = *cap < 16 ? 16 : *cap;
    while (n < need)
        n = n > max / 2 ? max : n * 2;
    void *q = realloc(*p, n * elem);
    if (q == NULL)
        return CF_ERR_NOMEM;
    *p = q;
    *cap = n;
    CF_ASSERT(*cap >= need && *cap <= max);
    return CF_OK;
}

/* Copies s[0..n) and a NUL into the pool; *off_out is where. */
static enum cf_err pool_add(struct watchlist *l, const char *s, size_t n, uint32_t *off_out)
{
    enum cf_err err =
        grow((void **)&l->pool, &l->pool_cap, l->pool_n + n + 1, 1, WATCHLIST_POOL_BYTES_MAX);
    if (err != CF_OK)
        return err;
    if (n > 0)
        memcpy(l->pool + l->pool_n, s, n);
    l->pool[l->pool_n + n] = '\0';
    *off_out = (uint32_t)l->pool_n;
    l->pool_n += n + 1;
    return CF_OK;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Hashes a file's length (8 bytes, little-endian) and bytes, as the version does. */
static uint64_t fnv1a_file(uint64_t h, const char *text, size_t len)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)((uint64_t)len >> (8 * i));
    return fnv1a(fnv1a(h, le, sizeof(le)), text, len);
}

/* CSV ----------------------------------------------------------------------------------------- */

void watchlist_csv_init(struct watchlist_csv *r, const char *text, size_t len, char *buf,
                        size_t buf_bytes)
{
    CF_ASSERT(r != NULL && (text != NULL || len == 0) && buf != NULL && buf_bytes > 0);
    r->text = text;
    r->len = len;
    r->pos = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    r->line = 1;
    r->buf = buf;
    r->buf_bytes = buf_bytes;
}

/* Steps over empty lines and the final SUB byte. */
static void csv_skip_blank(struct watchlist_csv *r)
{
    for (;;) {
        const char *t = r->text + r->pos;
        size_t left = r->len - r->pos;
        if (left >= 1 && t[0] == '\n') {
            r->pos++;
        } else if (left >= 2 && t[0] == '\r' && t[1] == '\n') {
            r->pos += 2;
        } else {
            if (left == 1 && t[0] == SUB_BYTE)
                r->pos++;
            return;
        }
        r->line++;
    }
}

/* Ends a field at r->pos: 1 when a record end was consumed (or the input ended), 0 after a ',',
 * -1 for anything else. */
static int csv_field_end(struct watchlist_csv *r)
{
    if (r->pos == r->len)
        return 1;
    char c = r->text[r->pos];
    if (c == ',') {
        r->pos++;
        return 0;
    }
    if (c == '\n' || (c == '\r' && r->pos + 1 < r->len && r->text[r->pos + 1] == '\n')) {
        r->pos += c == '\n' ? 1 : 2;
        r->line++;
        return 1;
    }
    return -1;
}

/* Appends c to the record buffer at *b; false when the field or the buffer is full. */
static bool csv_put(struct watchlist_csv *r, size_t *b, size_t field_start, char c)
{
    if (*b == r->buf_bytes || *b - field_start == WATCHLIST_FIELD_BYTES_MAX)
        return false;
    r->buf[(*b)++] = c;
    return true;
}

/* Reads a quoted field (r->pos at its opening quote) into the buffer; false on a fault. */
static bool csv_quoted(struct watchlist_csv *r, size_t *b, size_t field_start)
{
    CF_ASSERT(r->pos < r->len && r->text[r->pos] == '"' && *b == field_start);
    r->pos++;
    for (;;) {
        if (r->pos == r->len)
            return false;
        char c = r->text[r->pos];
        if (c == '"') {
            if (r->pos + 1 < r->len && r->text[r->pos + 1] == '"') {
                r->pos += 2;
                if (!csv_put(r, b, field_start, '"'))
                    return false;
                continue;
            }
            r->pos++;
            return true;
        }
        if (c == '\0' || !csv_put(r, b, field_start, c))
            return false;
        r->line += c == '\n';
        r->pos++;
    }
}

/* Reads an unquoted field into the buffer; false on a fault. */
static bool csv_plain(struct watchlist_csv *r, size_t *b, size_t field_start)
{
    CF_ASSERT(*b == field_start && r->pos <= r->len);
    while (r->pos < r->len) {
        char c = r->text[r->pos];
        if (c == ',' || c == '\n' || c == '\r')
            return true;
        if (c == '"' || c == '\0' || !csv_put(r, b, field_start, c))
            return false;
        r->pos++;
    }
    return true;
}

enum cf_err watchlist_csv_next(struct watchlist_csv *r, struct watchlist_field *fields, size_t cap,
                               size_t *n_out, size_t *line_out)
{
    CF_ASSERT(r != NULL && fields != NULL && n_out != NULL && line_out != NULL);
    CF_ASSERT(cap >= 1 && cap <= WATCHLIST_CSV_FIELDS_MAX && r->pos <= r->len);
    csv_skip_blank(r);
    if (r->pos == r->len) {
        *n_out = 0;
        *line_out = r->line;
        return CF_OK;
    }
    size_t start_line = r->line, b = 0, n = 0;
    struct watchlist_field tmp[WATCHLIST_CSV_FIELDS_MAX];
    for (int end = 0; end == 0;) {
        size_t field_start = b;
        bool ok =
            n < cap && (r->pos < r->len && r->text[r->pos] == '"' ? csv_quoted(r, &b, field_start)
                                                                  : csv_plain(r, &b, field_start));
        end = ok ? csv_field_end(r) : -1;
        if (end < 0) {
            *line_out = r->line;
            return CF_ERR_INVALID_FIELD;
        }
        tmp[n].text = r->buf + field_start;
        tmp[n].len = b - field_start;
        n++;
    }
    CF_ASSERT(n >= 1 && n <= cap && b <= r->buf_bytes);
    memcpy(fields, tmp, n * sizeof(tmp[0]));
    *n_out = n;
    *line_out = start_line;
    return CF_OK;
}

/* Small text helpers -------------------------------------------------------------------------- */

static struct watchlist_field field_trim(struct watchlist_field f)
{
    while (f.len > 0 && f.text[0] == ' ') {
        f.text++;
        f.len--;
    }
    while (f.len > 0 && f.text[f.len - 1] == ' ')
        f.len--;
    return f;
}

static bool field_is(struct watchlist_field f, const char *word)
{
    size_t n = strlen(word);
    if (f.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = f.text[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != word[i])
            return false;
    }
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Reads a date "YYYY", "YYYY-MM" or "YYYY-MM-DD" (month 1..12, day 1..31); false otherwise. */
static bool dob_parse(const char *s, size_t n, uint16_t *year_out)
{
    if (n != 4 && n != 7 && n != 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 4 || i == 7;
        if (dash ? s[i] != '-' : !is_digit(s[i]))
            return false;
    }
    CF_ASSERT(s != NULL && year_out != NULL);
    int month = n >= 7 ? (s[5] - '0') * 10 + (s[6] - '0') : 1;
    int day = n == 10 ? (s[8] - '0') * 10 + (s[9] - '0') : 1;
    if (month < 1 || month > 12 || day < 1 || day > 31)
        return false;
    *year_out =
        (uint16_t)((s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0'));
    return true;
}

static enum watchlist_type type_parse(struct watchlist_field f, bool *ok)
{
    *ok = true;
    if (f.len == 0 || field_is(f, "entity"))
        return WATCHLIST_TYPE_ENTITY;
    if (field_is(f, "individual"))
        return WATCHLIST_TYPE_INDIVIDUAL;
    if (field_is(f, "vessel"))
        return WATCHLIST_TYPE_VESSEL;
    if (field_is(f, "aircraft"))
        return WATCHLIST_TYPE_AIRCRAFT;
    *ok = false;
    return WATCHLIST_TYPE_UNKNOWN;
}

/* Building ------------------------------------------------------------------------------------ */

/* The loaders' shared state: the list being built and the names waiting for normalization. */
struct builder {
    struct watchlist *list;
    struct pending *pend;
    size_t pend_n, pend_cap;
    size_t bad_line;
    bool bad_in_alt;
};

static enum cf_err builder_start(struct builder *bld, const char *list_name)
{
    size_t n = strlen(list_name);
    CF_ASSERT(n >= 1 && n <= WATCHLIST_LIST_NAME_BYTES_MAX);
    memset(bld, 0, sizeof(*bld));
    bld->list = calloc(1, sizeof(*bld->list));
    if (bld->list == NULL)
        return CF_ERR_NOMEM;
    return pool_add(bld->list, list_name, n, &bld->list->list_name);
}

static void builder_abandon(struct builder *bld)
{
    watchlist_destroy(bld->list);
    free(bld->pend);
    bld->list = NULL;
    bld->pend = NULL;
}

/* Fails the load at line (of alt.csv when in_alt). */
static enum cf_err builder_fail(struct builder *bld, size_t line, bool in_alt)
{
    bld->bad_line = line;
    bld->bad_in_alt = in_alt;
    return CF_ERR_INVALID_FIELD;
}

/* Adds an entry with empty texts; *index_out is its index. */
static enum cf_err entry_add(struct builder *bld, size_t line, size_t *index_out)
{
    struct watchlist *l = bld->list;
    enum cf_err err = grow((void **)&l->entries, &l->entries_cap, l->entries_n + 1,
                           sizeof(*l->entries), WATCHLIST_ENTRIES_MAX);
    if (err == CF_ERR_INVALID_FIELD)
        return builder_fail(bld, line, false);
    if (err != CF_OK)
        return err;
    struct wl_entry *e = &l->entries[l->entries_n];
    memset(e, 0, sizeof(*e));
    uint32_t empty = 0;
    err = pool_add(l, "", 0, &empty);
    e->id = e->name = e->dob = e->country = e->program = empty;
    *index_out = l->entries_n++;
    return err;
}

/* Queues name f (trimmed, non-empty) of entry e. */
static enum cf_err name_queue(struct builder *bld, size_t e, struct watchlist_field f, size_t line,
                              bool in_alt)
{
    CF_ASSERT(e < bld->list->entries_n && line >= 1);
    f = field_trim(f);
    if (f.len == 0 || f.len > SCREEN_NAME_BYTES_MAX)
        return builder_fail(bld, line, in_alt);
    enum cf_err err = grow((void **)&bld->pend, &bld->pend_cap, bld->pend_n + 1, sizeof(*bld->pend),
                           WATCHLIST_NAMES_MAX);
    if (err == CF_ERR_INVALID_FIELD)
        return builder_fail(bld, line, in_alt);
    struct pending p = {(uint32_t)e, 0, (uint32_t)line, in_alt};
    if (err == CF_OK)
        err = pool_add(bld->list, f.text, f.len, &p.display);
    if (err == CF_OK)
        bld->pend[bld->pend_n++] = p;
    return err;
}

/* Orders the pending names entry by entry (stable), checking the per-entry alias limit. */
static enum cf_err pending_order(struct builder *bld, struct pending **sorted_out)
{
    struct watchlist *l = bld->list;
    uint32_t *count = calloc(l->entries_n + 1, sizeof(*count));
    struct pending *sorted = malloc((bld->pend_n + 1) * sizeof(*sorted));
    enum cf_err err = count == NULL || sorted == NULL ? CF_ERR_NOMEM : CF_OK;
    for (size_t i = 0; err == CF_OK && i < bld->pend_n; i++) {
        if (++count[bld->pend[i].entry + 1] > WATCHLIST_ALIASES_MAX + 1)
            err = builder_fail(bld, bld->pend[i].line, bld->pend[i].in_alt);
    }
    for (size_t e = 0; err == CF_OK && e < l->entries_n; e++) {
        l->entries[e].names_first = count[e];
        l->entries[e].names_n = count[e + 1];
        CF_ASSERT(count[e + 1] >= 1); /* every entry queued its primary name */
        count[e + 1] += count[e];
    }
    for (size_t i = 0; err == CF_OK && i < bld->pend_n; i++)
        sorted[count[bld->pend[i].entry]++] = bld->pend[i];
    free(count);
    if (err != CF_OK) {
        free(sorted);
        return err;
    }
    *sorted_out = sorted;
    return CF_OK;
}

/* The index of distinct spans ----------------------------------------------------------------- */

struct index_build {
    uint32_t *slots; /* open addressing: sid + 1, 0 empty */
    size_t slots_n;  /* a power of two */
    uint32_t *items; /* (sid, name) pairs, two uint32_t each */
    size_t items_n, items_cap;
};

static enum cf_err index_rehash(struct watchlist *l, struct index_build *ib)
{
    size_t n = ib->slots_n == 0 ? 1024 : ib->slots_n * 2;
    uint32_t *slots = calloc(n, sizeof(*slots));
    if (slots == NULL)
        return CF_ERR_NOMEM;
    for (size_t s = 0; s < l->strs_n; s++) {
        size_t h = (size_t)fnv1a(FNV_OFFSET, l->pool + l->strs[s].text, l->strs[s].len);
        while (slots[h & (n - 1)] != 0)
            h++;
        slots[h & (n - 1)] = (uint32_t)s + 1;
    }
    free(ib->slots);
    ib->slots = slots;
    ib->slots_n = n;
    return CF_OK;
}

/* Finds or adds the span pool[text..+len) and returns its id in *sid_out. */
static enum cf_err index_intern(struct watchlist *l, struct index_build *ib, uint32_t text,
                                size_t len, uint32_t *sid_out)
{
    if (2 * (l->strs_n + 1) > ib->slots_n) {
        enum cf_err err = index_rehash(l, ib);
        if (err != CF_OK)
            return err;
    }
    size_t h = (size_t)fnv1a(FNV_OFFSET, l->pool + text, len);
    for (;; h++) {
        uint32_t slot = ib->slots[h & (ib->slots_n - 1)];
        if (slot == 0)
            break;
        const struct wl_str *s = &l->strs[slot - 1];
        if (s->len == len && memcmp(l->pool + s->text, l->pool + text, len) == 0) {
            *sid_out = slot - 1;
            return CF_OK;
        }
    }
    enum cf_err err =
        grow((void **)&l->strs, &l->strs_cap, l->strs_n + 1, sizeof(*l->strs), STRS_MAX);
    if (err == CF_OK)
        err = grow((void **)&l->sigs, &l->sigs_cap, l->strs_n + 1, sizeof(*l->sigs), STRS_MAX);
    if (err != CF_OK)
        return err;
    struct wl_str *s = &l->strs[l->strs_n];
    memset(s, 0, sizeof(*s));
    s->text = text;
    s->len = (uint32_t)len;
    screen_sig_compute(l->pool + text, len, &l->sigs[l->strs_n]);
    ib->slots[h & (ib->slots_n - 1)] = (uint32_t)l->strs_n + 1;
    *sid_out = (uint32_t)l->strs_n++;
    return CF_OK;
}

/* Indexes the spans of name k (normalized as n, its text at pool offset text). */
static enum cf_err index_name(struct watchlist *l, struct index_build *ib, size_t k,
                              const struct screen_name *n, uint32_t text)
{
    struct screen_span spans[SCREEN_SPANS_MAX];
    size_t spans_n = screen_name_spans(n, spans);
    for (size_t i = 0; i < spans_n; i++) {
        uint32_t sid = 0;
        enum cf_err err = index_intern(l, ib, text + spans[i].off, spans[i].len, &sid);
        if (err != CF_OK)
            return err;
        struct wl_str *s = &l->strs[sid];
        s->single = s->single || !spans[i].composite;
        if (s->last_name == k + 1)
            continue;
        s->last_name = (uint32_t)k + 1;
        err = grow((void **)&ib->items, &ib->items_cap, 2 * (ib->items_n + 1), sizeof(uint32_t),
                   2 * STRS_MAX);
        if (err != CF_OK)
            return err;
        ib->items[2 * ib->items_n] = sid;
        ib->items[2 * ib->items_n + 1] = (uint32_t)k;
        ib->items_n++;
    }
    return CF_OK;
}

/* Orders the spans: the single ones first, each part by length, and fills by_len; returns the
 * old-to-new id map in *map_out. */
static enum cf_err index_partition(struct watchlist *l, uint32_t **map_out)
{
    uint32_t *map = malloc((l->strs_n + 1) * sizeof(*map));
    struct wl_str *strs = malloc((l->strs_n + 1) * sizeof(*strs));
    struct screen_sig *sigs = malloc((l->strs_n + 1) * sizeof(*sigs));
    if (map == NULL || strs == NULL || sigs == NULL) {
        free(map);
        free(strs);
        free(sigs);
        return CF_ERR_NOMEM;
    }
    memset(l->by_len, 0, sizeof(l->by_len));
    for (size_t s = 0; s < l->strs_n; s++) {
        l->by_len[l->strs[s].single ? 0 : 1][l->strs[s].len + 1]++;
        l->len_max = l->strs[s].len > l->len_max ? l->strs[s].len : l->len_max;
    }
    uint32_t base = 0; /* counts of length b sit at b + 1: make them starts, part 0 first */
    for (size_t p = 0; p < 2; p++) {
        l->by_len[p][0] = base;
        for (size_t b = 0; b <= SCREEN_FOLDED_BYTES_MAX; b++)
            l->by_len[p][b + 1] += l->by_len[p][b];
        base = l->by_len[p][SCREEN_FOLDED_BYTES_MAX + 1];
    }
    CF_ASSERT(base == l->strs_n);
    uint32_t next[2][SCREEN_FOLDED_BYTES_MAX + 1];
    for (size_t p = 0; p < 2; p++)
        memcpy(next[p], l->by_len[p], sizeof(next[p]));
    for (size_t s = 0; s < l->strs_n; s++) {
        uint32_t n = next[l->strs[s].single ? 0 : 1][l->strs[s].len]++;
        map[s] = n;
        strs[n] = l->strs[s];
        sigs[n] = l->sigs[s];
    }
    l->singles_n = l->by_len[1][0];
    free(l->strs);
    free(l->sigs);
    l->strs = strs;
    l->sigs = sigs;
    l->strs_cap = l->sigs_cap = l->strs_n + 1;
    *map_out = map;
    return CF_OK;
}

/* Turns the (span, name) items into posting lists. */
static enum cf_err index_postings(struct watchlist *l, struct index_build *ib)
{
    uint32_t *map = NULL;
    enum cf_err err = index_partition(l, &map);
    if (err != CF_OK)
        return err;
    l->posts = malloc((ib->items_n + 1) * sizeof(*l->posts));
    if (l->posts == NULL) {
        free(map);
        return CF_ERR_NOMEM;
    }
    for (size_t s = 0; s < l->strs_n; s++)
        l->strs[s].post_n = 0;
    for (size_t i = 0; i < ib->items_n; i++)
        l->strs[map[ib->items[2 * i]]].post_n++;
    size_t at = 0;
    for (size_t s = 0; s < l->strs_n; s++) {
        l->strs[s].post_first = (uint32_t)at;
        at += l->strs[s].post_n;
        l->strs[s].post_n = 0;
    }
    CF_ASSERT(at == ib->items_n);
    for (size_t i = 0; i < ib->items_n; i++) {
        struct wl_str *s = &l->strs[map[ib->items[2 * i]]];
        l->posts[s->post_first + s->post_n++] = ib->items[2 * i + 1];
    }
    l->posts_n = ib->items_n;
    free(map);
    return CF_OK;
}

/* Normalizing the names ----------------------------------------------------------------------- */

/* Normalizes pending name p as name k of the list and indexes it. */
static enum cf_err name_build(struct builder *bld, struct index_build *ib, size_t k,
                              const struct pending *p)
{
    struct watchlist *l = bld->list;
    CF_ASSERT(k < bld->pend_n && p->entry < l->entries_n);
    const char *display = l->pool + p->display;
    struct screen_name n;
    enum cf_err err = screen_name_normalize(display, strlen(display), &n);
    if (err == CF_ERR_INVALID_FIELD)
        return builder_fail(bld, p->line, p->in_alt);
    if (err != CF_OK)
        return err;
    struct wl_name *w = &l->names[k];
    w->entry = p->entry;
    w->display = p->display;
    w->text_len = (uint16_t)n.text_len;
    w->tokens_n = (uint8_t)n.tokens_n;
    w->generic = n.generic;
    w->tok_first = (uint32_t)l->toks_n;
    err = pool_add(l, n.text, n.text_len, &w->text);
    if (err == CF_OK)
        err = grow((void **)&l->toks, &l->toks_cap, l->toks_n + n.tokens_n, sizeof(*l->toks),
                   (size_t)WATCHLIST_NAMES_MAX * SCREEN_TOKENS_MAX);
    if (err != CF_OK)
        return err;
    for (size_t i = 0; i < n.tokens_n; i++)
        l->toks[l->toks_n++] = (struct wl_tok){n.tok_off[i], n.tok_len[i]};
    return index_name(l, ib, k, &n, w->text);
}

/* Normalizes and indexes every pending name; the list is then complete. */
static enum cf_err builder_finish(struct builder *bld)
{
    struct watchlist *l = bld->list;
    struct pending *sorted = NULL;
    enum cf_err err = pending_order(bld, &sorted);
    if (err != CF_OK)
        return err;
    struct index_build ib = {0};
    l->names = calloc(bld->pend_n + 1, sizeof(*l->names));
    if (l->names == NULL)
        err = CF_ERR_NOMEM;
    for (size_t k = 0; err == CF_OK && k < bld->pend_n; k++)
        err = name_build(bld, &ib, k, &sorted[k]);
    if (err == CF_OK) {
        l->names_n = bld->pend_n;
        err = index_postings(l, &ib);
    }
    free(ib.slots);
    free(ib.items);
    free(sorted);
    CF_ASSERT(err != CF_OK || l->names_n >= l->entries_n);
    return err;
}

/* The SDN layout ------------------------------------------------------------------------------ */

/* Parses ent_num (digits only, 1..UINT32_MAX). */
static bool ent_num_parse(struct watchlist_field f, uint32_t *out)
{
    if (f.len == 0 || f.len > 10)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < f.len; i++) {
        if (!is_digit(f.text[i]))
            return false;
        v = v * 10 + (uint64_t)(f.text[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* An SDN field: trimmed, and "-0-" is empty. */
static struct watchlist_field sdn_field(struct watchlist_field f)
{
    f = field_trim(f);
    if (f.len == 3 && memcmp(f.text, "-0-", 3) == 0)
        f.len = 0;
    return f;
}

static bool is_alnum(char c)
{
    char lower = (char)(c | 0x20);
    return is_digit(c) || (lower >= 'a' && lower <= 'z');
}

/* Whether word starts at s[i] (s has n bytes) and not inside another word. */
static bool word_at(const char *s, size_t n, size_t i, const char *word)
{
    size_t w = strlen(word);
    if (i + w > n || memcmp(s + i, word, w) != 0)
        return false;
    return i == 0 || !is_alnum(s[i - 1]);
}

/* The clause of remarks s[0..n) starting at i: up to the next ';', trimmed, without the '.' that
 * ends the remarks. */
static struct watchlist_field clause_at(const char *s, size_t n, size_t i)
{
    size_t end = i;
    while (end < n && s[end] != ';')
        end++;
    struct watchlist_field c = field_trim((struct watchlist_field){s + i, end - i});
    if (end == n && c.len > 0 && c.text[c.len - 1] == '.')
        c = field_trim((struct watchlist_field){c.text, c.len - 1});
    return c;
}

/* The year range of a DOB clause ("12 Jan 1960", "circa 1960", "1958 to 1962"); false when it
 * names no year. */
static bool dob_clause_range(struct watchlist_field c, struct dob_range *out)
{
    unsigned lo = 10000, hi = 0;
    for (size_t i = 0; i < c.len;) {
        size_t j = i;
        while (j < c.len && is_digit(c.text[j]))
            j++;
        if (j - i == 4) {
            unsigned y = (unsigned)((c.text[i] - '0') * 1000 + (c.text[i + 1] - '0') * 100 +
                                    (c.text[i + 2] - '0') * 10 + (c.text[i + 3] - '0'));
            if (y >= 1000) {
                lo = y < lo ? y : lo;
                hi = y > hi ? y : hi;
            }
        }
        i = j > i ? j : i + 1;
    }
    if (hi == 0)
        return false;
    bool circa = c.len >= 5 && memcmp(c.text, "circa", 5) == 0;
    unsigned d = circa ? WATCHLIST_DOB_CIRCA_YEARS : 0;
    out->lo = (uint16_t)(lo - d);
    out->hi = (uint16_t)(hi + d);
    return true;
}

/* Reads DOB and nationality clauses of remarks into entry e. */
static enum cf_err sdn_remarks(struct watchlist *l, size_t e, struct watchlist_field r)
{
    struct wl_entry *ent = &l->entries[e];
    bool have_dob_text = false, have_country = false;
    enum cf_err err = CF_OK;
    for (size_t i = 0; err == CF_OK && i < r.len; i++) {
        if (word_at(r.text, r.len, i, "DOB ")) {
            struct watchlist_field c = clause_at(r.text, r.len, i + 4);
            struct dob_range range;
            if (!dob_clause_range(c, &range))
                continue;
            if (ent->dobs_n < WATCHLIST_DOBS_MAX)
                ent->dobs[ent->dobs_n++] = range;
            if (!have_dob_text && c.len < WATCHLIST_SHORT_TEXT_BYTES_MAX) {
                err = pool_add(l, c.text, c.len, &l->entries[e].dob);
                have_dob_text = true;
            }
        } else if (!have_country && (word_at(r.text, r.len, i, "nationality ") ||
                                     word_at(r.text, r.len, i, "citizen "))) {
            size_t skip = r.text[i] == 'n' ? strlen("nationality ") : strlen("citizen ");
            struct watchlist_field c = clause_at(r.text, r.len, i + skip);
            if (c.len > 0 && c.len < WATCHLIST_SHORT_TEXT_BYTES_MAX) {
                err = pool_add(l, c.text, c.len, &l->entries[e].country);
                have_country = true;
            }
        }
    }
    return err;
}

/* One sdn.csv record. ent_nums[e] receives its ent_num. */
static enum cf_err sdn_record(struct builder *bld, const struct watchlist_field *f, size_t n,
                              size_t line, uint32_t *ent_nums)
{
    struct watchlist *l = bld->list;
    uint32_t num = 0;
    bool type_ok = false;
    if (n != SDN_FIELDS)
        return builder_fail(bld, line, false);
    enum watchlist_type type = type_parse(sdn_field(f[2]), &type_ok);
    if (!ent_num_parse(sdn_field(f[0]), &num) || !type_ok || sdn_field(f[1]).len == 0)
        return builder_fail(bld, line, false);
    size_t e = 0;
    enum cf_err err = entry_add(bld, line, &e);
    if (err != CF_OK)
        return err;
    ent_nums[e] = num;
    struct wl_entry *ent = &l->entries[e];
    ent->type = (uint8_t)type;
    struct watchlist_field id = sdn_field(f[0]), program = sdn_field(f[3]);
    err = pool_add(l, id.text, id.len, &ent->id);
    if (err == CF_OK)
        err = pool_add(l, program.text, program.len, &l->entries[e].program);
    if (err == CF_OK)
        err = name_queue(bld, e, sdn_field(f[1]), line, false);
    if (err == CF_OK)
        l->entries[e].name = bld->pend[bld->pend_n - 1].display;
    if (err == CF_OK)
        err = sdn_remarks(l, e, sdn_field(f[11]));
    return err;
}

struct ent_ref {
    uint32_t num, entry, line;
};

static int ent_ref_cmp(const void *a, const void *b)
{
    const struct ent_ref *x = a, *y = b;
    if (x->num != y->num)
        return x->num < y->num ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* Sorts the entries' ent_nums into refs and refuses a repeated one. */
static enum cf_err sdn_refs(struct builder *bld, const uint32_t *nums, const uint32_t *lines,
                            struct ent_ref **refs_out)
{
    size_t n = bld->list->entries_n;
    struct ent_ref *refs = malloc((n + 1) * sizeof(*refs));
    if (refs == NULL)
        return CF_ERR_NOMEM;
    for (size_t e = 0; e < n; e++)
        refs[e] = (struct ent_ref){nums[e], (uint32_t)e, lines[e]};
    qsort(refs, n, sizeof(*refs), ent_ref_cmp);
    for (size_t i = 1; i < n; i++) {
        if (refs[i].num == refs[i - 1].num) {
            size_t line = refs[i].line;
            free(refs);
            return builder_fail(bld, line, false);
        }
    }
    *refs_out = refs;
    return CF_OK;
}

/* Reads sdn.csv; nums_out and lines_out (WATCHLIST_ENTRIES_MAX each) receive per entry. */
static enum cf_err sdn_read(struct builder *bld, const char *text, size_t len, char *buf,
                            uint32_t *nums, uint32_t *lines)
{
    struct watchlist_csv r;
    watchlist_csv_init(&r, text, len, buf, WATCHLIST_RECORD_BYTES_MAX);
    for (;;) {
        struct watchlist_field f[WATCHLIST_CSV_FIELDS_MAX];
        size_t n = 0, line = 0;
        if (watchlist_csv_next(&r, f, WATCHLIST_CSV_FIELDS_MAX, &n, &line) != CF_OK)
            return builder_fail(bld, line, false);
        if (n == 0)
            return CF_OK;
        if (bld->list->entries_n == WATCHLIST_ENTRIES_MAX)
            return builder_fail(bld, line, false);
        lines[bld->list->entries_n] = (uint32_t)line;
        enum cf_err err = sdn_record(bld, f, n, line, nums);
        if (err != CF_OK)
            return err;
    }
}

/* Reads alt.csv, queueing each alias on the entry its ent_num names. */
static enum cf_err alt_read(struct builder *bld, const char *text, size_t len, char *buf,
                            const struct ent_ref *refs)
{
    struct watchlist_csv r;
    watchlist_csv_init(&r, text, len, buf, WATCHLIST_RECORD_BYTES_MAX);
    for (;;) {
        struct watchlist_field f[WATCHLIST_CSV_FIELDS_MAX];
        size_t n = 0, line = 0;
        if (watchlist_csv_next(&r, f, WATCHLIST_CSV_FIELDS_MAX, &n, &line) != CF_OK)
            return builder_fail(bld, line, true);
        if (n == 0)
            return CF_OK;
        struct ent_ref key = {0, 0, 0};
        if (n != ALT_FIELDS || !ent_num_parse(sdn_field(f[0]), &key.num))
            return builder_fail(bld, line, true);
        size_t lo = 0, hi = bld->list->entries_n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (refs[mid].num < key.num)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == bld->list->entries_n || refs[lo].num != key.num)
            return builder_fail(bld, line, true);
        enum cf_err err = name_queue(bld, refs[lo].entry, sdn_field(f[3]), line, true);
        if (err != CF_OK)
            return err;
    }
}

static enum cf_err sdn_load(struct builder *bld, const char *sdn, size_t sdn_len, const char *alt,
                            size_t alt_len)
{
    char *buf = malloc(WATCHLIST_RECORD_BYTES_MAX);
    uint32_t *nums = malloc(WATCHLIST_ENTRIES_MAX * sizeof(*nums));
    uint32_t *lines = malloc(WATCHLIST_ENTRIES_MAX * sizeof(*lines));
    struct ent_ref *refs = NULL;
    enum cf_err err = buf == NULL || nums == NULL || lines == NULL ? CF_ERR_NOMEM : CF_OK;
    if (err == CF_OK)
        err = sdn_read(bld, sdn, sdn_len, buf, nums, lines);
    if (err == CF_OK)
        err = sdn_refs(bld, nums, lines, &refs);
    if (err == CF_OK && alt != NULL)
        err = alt_read(bld, alt, alt_len, buf, refs);
    free(refs);
    free(lines);
    free(nums);
    free(buf);
    return err;
}

enum cf_err watchlist_sdn_parse(const char *sdn, size_t sdn_len, const char *alt, size_t alt_len,
                                const char *list_name, struct watchlist **out, size_t *bad_line_out,
                                bool *bad_in_alt_out)
{
    CF_ASSERT((sdn != NULL || sdn_len == 0) && (alt != NULL || alt_len == 0));
    CF_ASSERT(list_name != NULL && out != NULL && bad_line_out != NULL && bad_in_alt_out != NULL);
    if (sdn_len > WATCHLIST_FILE_BYTES_MAX || alt_len > WATCHLIST_FILE_BYTES_MAX)
        return CF_ERR_PAYLOAD_TOO_LARGE;
    struct builder bld;
    enum cf_err err = builder_start(&bld, list_name);
    if (err == CF_OK)
        err = sdn_load(&bld, sdn != NULL ? sdn : "", sdn_len, alt, alt_len);
    if (err == CF_OK)
        err = builder_finish(&bld);
    if (err != CF_OK) {
        if (err == CF_ERR_INVALID_FIELD) {
            *bad_line_out = bld.bad_line;
            *bad_in_alt_out = bld.bad_in_alt;
        }
        builder_abandon(&bld);
        return err;
    }
    uint64_t h = fnv1a_file(FNV_OFFSET, sdn != NULL ? sdn : "", sdn_len);
    bld.list->version = fnv1a_file(h, alt != NULL ? alt : "", alt_len);
    free(bld.pend);
    CF_ASSERT(bld.list->names_n >= bld.list->entries_n);
    *out = bld.list;
    return CF_OK;
}

/* The simple CSV layout ----------------------------------------------------------------------- */

enum csv_col { COL_NAME, COL_ID, COL_ALIASES, COL_DOB, COL_COUNTRY, COL_TYPE, COL_N };

static const char *const csv_col_names[COL_N] = {"name",          "id",      "aliases",
                                                 "date_of_birth", "country", "type"};

/* Maps the header's fields to columns: col[c] is the field index of column c, or -1. */
static bool csv_header(const struct watchlist_field *f, size_t n, int *col)
{
    for (size_t c = 0; c < COL_N; c++)
        col[c] = -1;
    for (size_t i = 0; i < n; i++) {
        size_t c = 0;
        while (c < COL_N && !field_is(field_trim(f[i]), csv_col_names[c]))
            c++;
        if (c == COL_N || col[c] >= 0)
            return false;
        col[c] = (int)i;
    }
    return col[COL_NAME] >= 0;
}

static struct watchlist_field csv_col(const struct watchlist_field *f, const int *col,
                                      enum csv_col c)
{
    if (col[c] < 0)
        return (struct watchlist_field){"", 0};
    return field_trim(f[col[c]]);
}

/* Queues each ';'-separated alias of field a. */
static enum cf_err csv_aliases(struct builder *bld, size_t e, struct watchlist_field a, size_t line)
{
    size_t start = 0;
    for (size_t i = 0; i <= a.len; i++) {
        if (i < a.len && a.text[i] != ';')
            continue;
        struct watchlist_field piece =
            field_trim((struct watchlist_field){a.text + start, i - start});
        start = i + 1;
        if (piece.len == 0)
            continue;
        enum cf_err err = name_queue(bld, e, piece, line, false);
        if (err != CF_OK)
            return err;
    }
    return CF_OK;
}

/* Stores the id, date of birth, country and type of entry e from its record. */
static enum cf_err csv_entry_fields(struct builder *bld, size_t e, const struct watchlist_field *f,
                                    const int *col, size_t line, size_t record)
{
    struct watchlist *l = bld->list;
    struct watchlist_field id = csv_col(f, col, COL_ID), dob = csv_col(f, col, COL_DOB);
    struct watchlist_field country = csv_col(f, col, COL_COUNTRY);
    char number[24];
    if (col[COL_ID] < 0) {
        id.len = (size_t)snprintf(number, sizeof(number), "%zu", record);
        id.text = number;
    }
    bool type_ok = false;
    enum watchlist_type type = type_parse(csv_col(f, col, COL_TYPE), &type_ok);
    uint16_t year = 0;
    if (id.len == 0 || id.len > WATCHLIST_ID_BYTES_MAX || !type_ok ||
        country.len >= WATCHLIST_SHORT_TEXT_BYTES_MAX ||
        (dob.len > 0 && !dob_parse(dob.text, dob.len, &year)))
        return builder_fail(bld, line, false);
    l->entries[e].type = (uint8_t)(col[COL_TYPE] < 0 ? WATCHLIST_TYPE_UNKNOWN : type);
    if (dob.len > 0) {
        l->entries[e].dobs[0] = (struct dob_range){year, year};
        l->entries[e].dobs_n = 1;
    }
    enum cf_err err = pool_add(l, id.text, id.len, &l->entries[e].id);
    if (err == CF_OK)
        err = pool_add(l, dob.text, dob.len, &l->entries[e].dob);
    if (err == CF_OK)
        err = pool_add(l, country.text, country.len, &l->entries[e].country);
    return err;
}

/* One data record of a simple CSV list. */
static enum cf_err csv_record(struct builder *bld, const struct watchlist_field *f, size_t n,
                              const int *col, size_t fields_n, size_t line, size_t record)
{
    if (n != fields_n)
        return builder_fail(bld, line, false);
    size_t e = 0;
    enum cf_err err = entry_add(bld, line, &e);
    if (err == CF_OK)
        err = csv_entry_fields(bld, e, f, col, line, record);
    if (err == CF_OK)
        err = name_queue(bld, e, csv_col(f, col, COL_NAME), line, false);
    if (err == CF_OK)
        bld->list->entries[e].name = bld->pend[bld->pend_n - 1].display;
    if (err == CF_OK)
        err = csv_aliases(bld, e, csv_col(f, col, COL_ALIASES), line);
    return err;
}

struct id_ref {
    const char *id;
    size_t line;
};

static int id_ref_cmp(const void *a, const void *b)
{
    const struct id_ref *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c != 0 ? c : (x->line < y->line ? -1 : x->line > y->line);
}

/* Refuses a repeated id (at the later line). */
static enum cf_err csv_ids_unique(struct builder *bld, const uint32_t *lines)
{
    struct watchlist *l = bld->list;
    struct id_ref *refs = malloc((l->entries_n + 1) * sizeof(*refs));
    if (refs == NULL)
        return CF_ERR_NOMEM;
    for (size_t e = 0; e < l->entries_n; e++)
        refs[e] = (struct id_ref){l->pool + l->entries[e].id, lines[e]};
    qsort(refs, l->entries_n, sizeof(*refs), id_ref_cmp);
    enum cf_err err = CF_OK;
    for (size_t i = 1; err == CF_OK && i < l->entries_n; i++)
        if (strcmp(refs[i].id, refs[i - 1].id) == 0)
            err = builder_fail(bld, refs[i].line, false);
    free(refs);
    return err;
}

static enum cf_err csv_load(struct builder *bld, const char *text, size_t len, char *buf,
                            uint32_t *lines)
{
    struct watchlist_csv r;
    watchlist_csv_init(&r, text, len, buf, WATCHLIST_RECORD_BYTES_MAX);
    struct watchlist_field f[WATCHLIST_CSV_FIELDS_MAX];
    size_t fields_n = 0, line = 0;
    int col[COL_N];
    if (watchlist_csv_next(&r, f, WATCHLIST_CSV_FIELDS_MAX, &fields_n, &line) != CF_OK ||
        fields_n == 0 || !csv_header(f, fields_n, col))
        return builder_fail(bld, line, false);
    for (size_t record = 1;; record++) {
        size_t n = 0;
        if (watchlist_csv_next(&r, f, WATCHLIST_CSV_FIELDS_MAX, &n, &line) != CF_OK)
            return builder_fail(bld, line, false);
        if (n == 0)
            return csv_ids_unique(bld, lines);
        if (bld->list->entries_n == WATCHLIST_ENTRIES_MAX)
            return builder_fail(bld, line, false);
        lines[bld->list->entries_n] = (uint32_t)line;
        enum cf_err err = csv_record(bld, f, n, col, fields_n, line, record);
        if (err != CF_OK)
            return err;
    }
}

enum cf_err watchlist_csv_parse(const char *text, size_t len, const char *list_name,
                                struct watchlist **out, size_t *bad_line_out)
{
    CF_ASSERT((text != NULL || len == 0) && list_name != NULL && out != NULL);
    CF_ASSERT(bad_line_out != NULL);
    if (len > WATCHLIST_FILE_BYTES_MAX)
        return CF_ERR_PAYLOAD_TOO_LARGE;
    struct builder bld;
    enum cf_err err = builder_start(&bld, list_name);
    char *buf = malloc(WATCHLIST_RECORD_BYTES_MAX);
    uint32_t *lines = malloc(WATCHLIST_ENTRIES_MAX * sizeof(*lines));
    if (err == CF_OK && (buf == NULL || lines == NULL))
        err = CF_ERR_NOMEM;
    if (err == CF_OK)
        err = csv_load(&bld, text != NULL ? text : "", len, buf, lines);
    free(buf);
    free(lines);
    if (err == CF_OK)
        err = builder_finish(&bld);
    if (err != CF_OK) {
        if (err == CF_ERR_INVALID_FIELD)
            *bad_line_out = bld.bad_line;
        builder_abandon(&bld);
        return err;
    }
    bld.list->version = fnv1a_file(FNV_OFFSET, text != NULL ? text : "", len);
    free(bld.pend);
    CF_ASSERT(bld.list->names_n >= bld.list->entries_n);
    *out = bld.list;
    return CF_OK;
}

/* Files and accessors ------------------------------------------------------------------------- */

enum cf_err watchlist_file_read(const char *path, char **text_out, size_t *len_out)
{
    CF_ASSERT(path != NULL && text_out != NULL && len_out != NULL);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errno == ENOENT ? CF_ERR_NOT_FOUND : CF_ERR_IO;
    struct stat st;
    enum cf_err err = fstat(fileno(f), &st) == 0 ? CF_OK : CF_ERR_IO;
    if (err == CF_OK && (uint64_t)st.st_size > WATCHLIST_FILE_BYTES_MAX)
        err = CF_ERR_PAYLOAD_TOO_LARGE;
    size_t size = err == CF_OK ? (size_t)st.st_size : 0;
    char *text = err == CF_OK ? malloc(size + 1) : NULL;
    if (err == CF_OK && text == NULL)
        err = CF_ERR_NOMEM;
    /* one byte more than the size tells a file that grew while being read */
    if (err == CF_OK && fread(text, 1, size + 1, f) != size)
        err = ferror(f) ? CF_ERR_IO : CF_ERR_PAYLOAD_TOO_LARGE;
    fclose(f);
    if (err != CF_OK) {
        free(text);
        return err;
    }
    *text_out = text;
    *len_out = size;
    return CF_OK;
}

void watchlist_destroy(struct watchlist *list)
{
    if (list == NULL)
        return;
    free(list->pool);
    free(list->entries);
    free(list->names);
    free(list->toks);
    free(list->strs);
    free(list->sigs);
    free(list->posts);
    free(list);
}

size_t watchlist_entries_n(const struct watchlist *list) { return list->entries_n; }

uint64_t watchlist_version(const struct watchlist *list) { return list->version; }

void watchlist_entry_get(const struct watchlist *list, size_t i, struct watchlist_entry_view *out)
{
    CF_ASSERT(list != NULL && out != NULL && i < list->entries_n);
    const struct wl_entry *e = &list->entries[i];
    CF_ASSERT(e->names_n >= 1);
    out->id = list->pool + e->id;
    out->name = list->pool + e->name;
    out->dob = list->pool + e->dob;
    out->country = list->pool + e->country;
    out->program = list->pool + e->program;
    out->list_name = list->pool + list->list_name;
    out->type = (enum watchlist_type)e->type;
    out->aliases_n = e->names_n - 1;
}

const char *watchlist_name_get(const struct watchlist *list, size_t i, size_t k)
{
    CF_ASSERT(list != NULL && i < list->entries_n && k < list->entries[i].names_n);
    return list->pool + list->names[list->entries[i].names_first + k].display;
}

/* Screening ----------------------------------------------------------------------------------- */

/* What one screening call needs besides the list. */
struct screen_run {
    const struct watchlist *list;
    const struct watchlist_query *q;
    struct screen_name name;
    bool have_year;
    uint16_t year;
    int floor;       /* the lowest name score that can still hit */
    uint64_t *marks; /* candidate names, one bit each */
    struct screen_probe probe;
};

static void mark_postings(struct screen_run *run, const struct wl_str *s)
{
    const uint32_t *p = run->list->posts + s->post_first;
    for (size_t i = 0; i < s->post_n; i++)
        run->marks[p[i] / 64] |= UINT64_C(1) << (p[i] % 64);
}

/* Marks, among strs of part p with lengths lo..hi, those that reach the probe's floor. */
static void prefilter_range(struct screen_run *run, const struct screen_probe *probe,
                            const char *text, size_t p, size_t lo, size_t hi)
{
    const struct watchlist *l = run->list;
    hi = hi < l->len_max ? hi : l->len_max;
    if (lo > hi)
        return;
    for (size_t s = l->by_len[p][lo]; s < l->by_len[p][hi + 1]; s++) {
        if (!screen_probe_passes(probe, &l->sigs[s]))
            continue;
        const struct wl_str *str = &l->strs[s];
        if (screen_span_similarity(text, probe->sig.len, l->pool + str->text, str->len) >=
            run->floor)
            mark_postings(run, str);
    }
}

/* Marks the names holding a span whose similarity with some span of the query reaches the
 * floor (watchlist.h, Prefilter): a single query span against every single list span and the
 * composite ones of a pairable length, a composite one against single list spans of a pairable
 * length. */
static void prefilter_mark(struct screen_run *run)
{
    const struct watchlist *l = run->list;
    if (l->strs_n == 0)
        return;
    struct screen_span spans[SCREEN_SPANS_MAX];
    size_t spans_n = screen_name_spans(&run->name, spans);
    for (size_t i = 0; i < spans_n; i++) {
        const char *text = run->name.text + spans[i].off;
        struct screen_sig sig;
        screen_sig_compute(text, spans[i].len, &sig);
        screen_probe_init(&run->probe, &sig, run->floor, l->len_max);
        size_t lo = 0, hi = 0;
        screen_composite_lengths(spans[i].len, &lo, &hi);
        if (spans[i].composite) {
            prefilter_range(run, &run->probe, text, 0, lo, hi);
        } else {
            prefilter_range(run, &run->probe, text, 0, 1, l->len_max);
            prefilter_range(run, &run->probe, text, 1, lo, hi);
        }
    }
}

/* Loads list name k as a screen_name. */
static void name_load(const struct watchlist *l, size_t k, struct screen_name *out)
{
    const struct wl_name *w = &l->names[k];
    CF_ASSERT(w->tokens_n >= 1 && w->tokens_n <= SCREEN_TOKENS_MAX);
    memcpy(out->text, l->pool + w->text, w->text_len);
    out->text_len = w->text_len;
    out->tokens_n = w->tokens_n;
    out->generic = w->generic;
    for (size_t i = 0; i < w->tokens_n; i++) {
        out->tok_off[i] = l->toks[w->tok_first + i].off;
        out->tok_len[i] = l->toks[w->tok_first + i].len;
    }
}

/* Whether a and b are equal ignoring ASCII case and blanks around them. */
static bool text_equal_folded(const char *a, const char *b)
{
    struct watchlist_field x = field_trim((struct watchlist_field){a, strlen(a)});
    struct watchlist_field y = field_trim((struct watchlist_field){b, strlen(b)});
    if (x.len != y.len)
        return false;
    for (size_t i = 0; i < x.len; i++) {
        char c = x.text[i], d = y.text[i];
        c = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        d = d >= 'A' && d <= 'Z' ? (char)(d - 'A' + 'a') : d;
        if (c != d)
            return false;
    }
    return true;
}

static bool text_given(const char *s)
{
    return s != NULL && field_trim((struct watchlist_field){s, strlen(s)}).len > 0;
}

/* Fills hit h for entry e, best name k (of the list) scoring name_score. */
static void hit_build(const struct screen_run *run, size_t e, size_t k, int name_score,
                      struct watchlist_hit *h)
{
    const struct watchlist *l = run->list;
    CF_ASSERT(e < l->entries_n && l->names[k].entry == e);
    const struct wl_entry *ent = &l->entries[e];
    h->entry = e;
    h->name = k - ent->names_first;
    h->name_score = name_score;
    h->score = name_score;
    h->dob = WATCHLIST_UNKNOWN;
    if (run->have_year && ent->dobs_n > 0) {
        h->dob = WATCHLIST_CONFLICT;
        for (size_t i = 0; i < ent->dobs_n; i++)
            if (run->year >= ent->dobs[i].lo && run->year <= ent->dobs[i].hi)
                h->dob = WATCHLIST_AGREE;
        h->score +=
            h->dob == WATCHLIST_AGREE ? WATCHLIST_DOB_AGREE_BONUS : -WATCHLIST_DOB_CONFLICT_PENALTY;
        h->score = h->score < 0 ? 0 : h->score > SCREEN_SCORE_MAX ? SCREEN_SCORE_MAX : h->score;
    }
    CF_ASSERT(h->score >= 0 && h->score <= SCREEN_SCORE_MAX);
    h->country = WATCHLIST_UNKNOWN;
    const char *country = l->pool + ent->country;
    if (text_given(run->q->country) && country[0] != '\0')
        h->country =
            text_equal_folded(run->q->country, country) ? WATCHLIST_AGREE : WATCHLIST_CONFLICT;
}

/* Inserts h into the sorted hits[0..*n) (at most max), best first, ties in entry order. */
static void hit_insert(struct watchlist_hit *hits, size_t max, size_t *n,
                       const struct watchlist_hit *h)
{
    size_t at = *n;
    while (at > 0 && hits[at - 1].score < h->score)
        at--;
    if (at == max)
        return;
    size_t keep = *n < max ? *n : max - 1;
    memmove(hits + at + 1, hits + at, (keep - at) * sizeof(*hits));
    hits[at] = *h;
    *n = keep + 1;
    CF_ASSERT(*n <= max);
}

/* Adds entry e as a hit when its best name score, moved for the date of birth, reaches the
 * threshold. */
static void entry_flush(const struct screen_run *run, size_t e, size_t best_k, int best,
                        struct watchlist_hit *hits, size_t hits_max, struct watchlist_result *res)
{
    CF_ASSERT(best >= 0 && best <= SCREEN_SCORE_MAX);
    struct watchlist_hit h;
    hit_build(run, e, best_k, best, &h);
    if (h.score < run->q->threshold)
        return;
    res->hits_total++;
    hit_insert(hits, hits_max, &res->hits_n, &h);
}

/* The index of the lowest set bit of x (not 0). */
static size_t bit_lowest(uint64_t x)
{
    CF_ASSERT(x != 0);
    size_t i = 0;
    for (; (x & 0xFF) == 0; x >>= 8)
        i += 8;
    for (; (x & 1) == 0; x >>= 1)
        i++;
    return i;
}

/* Scores the marked names entry by entry (names of one entry are adjacent) and collects the
 * hits. */
static void score_marked(struct screen_run *run, struct watchlist_hit *hits, size_t hits_max,
                         struct watchlist_result *res)
{
    const struct watchlist *l = run->list;
    size_t cur = SIZE_MAX, best_k = 0;
    int best = -1;
    for (size_t w = 0; w < (l->names_n + 63) / 64; w++) {
        for (uint64_t bits = run->marks[w]; bits != 0; bits &= bits - 1) {
            size_t k = w * 64 + bit_lowest(bits);
            CF_ASSERT(k < l->names_n);
            size_t e = l->names[k].entry;
            if (e != cur && cur != SIZE_MAX)
                entry_flush(run, cur, best_k, best, hits, hits_max, res);
            if (e != cur) {
                cur = e;
                best = -1;
            }
            struct screen_name n;
            name_load(l, k, &n);
            int s = screen_name_score(&run->name, &n);
            res->names_scored++;
            if (s > best) {
                best = s;
                best_k = k;
            }
        }
    }
    if (cur != SIZE_MAX)
        entry_flush(run, cur, best_k, best, hits, hits_max, res);
}

static enum cf_err screen_run_do(const struct watchlist *list, const struct watchlist_query *q,
                                 struct watchlist_hit *hits, size_t hits_max,
                                 struct watchlist_result *result, bool prefilter)
{
    CF_ASSERT(list != NULL && q != NULL && result != NULL && (hits != NULL || hits_max == 0));
    CF_ASSERT(q->threshold >= 0 && q->threshold <= SCREEN_SCORE_MAX);
    struct screen_run *run = malloc(sizeof(*run));
    if (run == NULL)
        return CF_ERR_NOMEM;
    run->list = list;
    run->q = q;
    run->have_year = text_given(q->dob);
    enum cf_err err = screen_name_normalize(q->name, q->name_len, &run->name);
    if (err == CF_OK && run->have_year && !dob_parse(q->dob, strlen(q->dob), &run->year))
        err = CF_ERR_INVALID_FIELD;
    run->marks = err == CF_OK ? calloc((list->names_n + 63) / 64 + 1, sizeof(uint64_t)) : NULL;
    if (err == CF_OK && run->marks == NULL)
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        free(run);
        return err;
    }
    int bonus = run->have_year ? WATCHLIST_DOB_AGREE_BONUS : 0;
    run->floor = q->threshold > bonus ? q->threshold - bonus : 0;
    if (prefilter)
        prefilter_mark(run);
    else
        memset(run->marks, 0xFF, (list->names_n + 63) / 64 * sizeof(uint64_t));
    if (!prefilter && list->names_n % 64 != 0)
        run->marks[list->names_n / 64] = (UINT64_C(1) << (list->names_n % 64)) - 1;
    struct watchlist_result res = {0, 0, 0};
    score_marked(run, hits, hits_max, &res);
    CF_ASSERT(res.hits_n <= hits_max && res.hits_n <= res.hits_total);
    *result = res;
    free(run->marks);
    free(run);
    return CF_OK;
}

enum cf_err watchlist_screen(const struct watchlist *list, const struct watchlist_query *q,
                             struct watchlist_hit *hits, size_t hits_max,
                             struct watchlist_result *result)
{
    return screen_run_do(list, q, hits, hits_max, result, true);
}

enum cf_err watchlist_screen_scan(const struct watchlist *list, const struct watchlist_query *q,
                                  struct watchlist_hit *hits, size_t hits_max,
                                  struct watchlist_result *result)
{
    return screen_run_do(list, q, hits, hits_max, result, false);
}
