/* screen.c - name normalization and fuzzy similarity for screening; see screen.h. */
#include "risk/screen.h"

#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

_Static_assert(SCREEN_TOKENS_MAX <= 32, "token sets are 32-bit masks");
_Static_assert(SCREEN_FOLDED_BYTES_MAX <= UINT16_MAX, "spans are 16-bit offsets");
_Static_assert(SCREEN_TOKEN_BYTES_MAX * 2 <= SCREEN_FOLDED_BYTES_MAX, "a folded token fits");

/* Cyrillic transliteration grows a 2-byte letter to at most 4 ASCII bytes (shch). */
#define PREMAP_BYTES (2 * SCREEN_NAME_BYTES_MAX)
/* Decomposition usually keeps the size; libunistring allocates when it needs more (bounded by
 * the input's bound times Unicode's largest expansion). */
#define DECOMPOSED_BYTES (4 * PREMAP_BYTES)
/* Letters of all raw tokens of one name, and how many raw tokens, before noise is dropped. */
#define RAW_BYTES (2 * SCREEN_FOLDED_BYTES_MAX)
#define RAW_TOKENS_MAX (SCREEN_NAME_BYTES_MAX / 2 + 1)
/* Pairs of one name score: single x any plus composite x single. */
#define PAIRS_MAX (2 * SCREEN_TOKENS_MAX * SCREEN_SPANS_MAX)
#define BUCKET_OTHER 26

/* Step b: Cyrillic ------------------------------------------------------------------------- */

/* а..я (U+0430..U+044F) in Latin letters. */
static const char *const cyrillic_latin[32] = {
    "a", "b", "v", "g", "d", "e",  "zh", "z",  "i",  "i",    "k", "l", "m", "n", "o",  "p",
    "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "",  "y", "",  "e", "yu", "ya",
};

/* A code point and the ASCII it becomes. */
struct letter_map {
    ucs4_t c;
    const char *ascii;
};

/* Cyrillic letters outside а..я, both cases: Ё Є І Ї Ґ Ў. */
static const struct letter_map cyrillic_more[] = {
    {0x0401, "e"}, {0x0451, "e"}, {0x0404, "e"}, {0x0454, "e"}, {0x0406, "i"}, {0x0456, "i"},
    {0x0407, "i"}, {0x0457, "i"}, {0x0490, "g"}, {0x0491, "g"}, {0x040E, "u"}, {0x045E, "u"},
};

/* Step d: lower-case Latin letters that do not decompose: ß æ ø ł đ ð þ œ ı ħ ŧ ŋ ĸ. */
static const struct letter_map latin_more[] = {
    {0x00DF, "ss"}, {0x00E6, "ae"}, {0x00F8, "o"},  {0x0142, "l"}, {0x0111, "d"},
    {0x00F0, "d"},  {0x00FE, "th"}, {0x0153, "oe"}, {0x0131, "i"}, {0x0127, "h"},
    {0x0167, "t"},  {0x014B, "n"},  {0x0138, "k"},
};

static const char *letter_find(const struct letter_map *map, size_t n, ucs4_t c)
{
    for (size_t i = 0; i < n; i++)
        if (map[i].c == c)
            return map[i].ascii;
    return NULL;
}

/* The Latin text of Cyrillic letter c, or NULL when c is not one this table knows. */
static const char *cyrillic_to_latin(ucs4_t c)
{
    if (c >= 0x0410 && c <= 0x042F)
        c += 0x20;
    if (c >= 0x0430 && c <= 0x044F)
        return cyrillic_latin[c - 0x0430];
    return letter_find(cyrillic_more, sizeof(cyrillic_more) / sizeof(cyrillic_more[0]), c);
}

static bool is_control(ucs4_t c) { return c < 0x20 || (c >= 0x7f && c <= 0x9f); }

/* Checks s (len bytes, valid UTF-8) for control characters and writes it to out with Cyrillic
 * transliterated. Returns the bytes written, or (size_t)-1 for a control character. */
static size_t name_premap(const uint8_t *s, size_t len, uint8_t *out)
{
    CF_ASSERT(len <= SCREEN_NAME_BYTES_MAX);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        ucs4_t c = 0;
        int step = u8_mbtouc(&c, s + i, len - i);
        CF_ASSERT(step > 0); /* the caller checked the UTF-8 */
        if (is_control(c))
            return (size_t)-1;
        const char *latin = cyrillic_to_latin(c);
        if (latin != NULL) {
            size_t n = strlen(latin);
            memcpy(out + o, latin, n);
            o += n;
        } else {
            memcpy(out + o, s + i, (size_t)step);
            o += (size_t)step;
        }
        i += (size_t)step;
    }
    CF_ASSERT(o <= PREMAP_BYTES);
    return o;
}

/* The ASCII for lower-case letter c when it is one of those, else NULL. */
static const char *latin_fold(ucs4_t c)
{
    return letter_find(latin_more, sizeof(latin_more) / sizeof(latin_more[0]), c);
}

/* Steps c..e: raw tokens ------------------------------------------------------------------- */

struct raw_tokens {
    char bytes[RAW_BYTES];
    size_t bytes_n;
    uint16_t off[RAW_TOKENS_MAX], len[RAW_TOKENS_MAX];
    size_t n;
    bool open; /* the last token is still growing */
};

/* Appends bytes to the current token (opening one when needed); false when a bound is hit. */
static bool raw_append(struct raw_tokens *r, const char *s, size_t n)
{
    if (!r->open) {
        if (r->n == RAW_TOKENS_MAX)
            return false;
        r->off[r->n] = (uint16_t)r->bytes_n;
        r->len[r->n] = 0;
        r->n++;
        r->open = true;
    }
    if (n > RAW_BYTES - r->bytes_n || r->len[r->n - 1] + n > SCREEN_TOKEN_BYTES_MAX)
        return false;
    memcpy(r->bytes + r->bytes_n, s, n);
    r->bytes_n += n;
    r->len[r->n - 1] = (uint16_t)(r->len[r->n - 1] + n);
    return true;
}

/* Feeds one decomposed code point; false when a bound is hit. */
static bool raw_feed(struct raw_tokens *r, ucs4_t c)
{
    if (c < 0x80) {
        char ch = (char)c;
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
            return raw_append(r, &ch, 1);
        r->open = false;
        return true;
    }
    if (uc_is_general_category(c, UC_CATEGORY_M) || uc_is_general_category(c, UC_CATEGORY_Cf))
        return true;
    ucs4_t lower = uc_tolower(c);
    const char *latin = latin_fold(lower);
    if (latin != NULL)
        return raw_append(r, latin, strlen(latin));
    if (uc_is_general_category(c, UC_CATEGORY_L) || uc_is_general_category(c, UC_CATEGORY_Nd)) {
        uint8_t utf8[6];
        int n = u8_uctomb(utf8, lower, (int)sizeof(utf8));
        CF_ASSERT(n > 0);
        return raw_append(r, (const char *)utf8, (size_t)n);
    }
    r->open = false;
    return true;
}

/* Splits decomposed text s[0..len) into raw tokens; false when a bound is hit. */
static bool raw_split(const uint8_t *s, size_t len, struct raw_tokens *r)
{
    r->bytes_n = 0;
    r->n = 0;
    r->open = false;
    for (size_t i = 0; i < len;) {
        ucs4_t c = 0;
        int step = u8_mbtouc(&c, s + i, len - i);
        CF_ASSERT(step > 0);
        if (!raw_feed(r, c))
            return false;
        i += (size_t)step;
    }
    CF_ASSERT(r->bytes_n <= RAW_BYTES && r->n <= RAW_TOKENS_MAX);
    return true;
}

/* Step f: noise and particles -------------------------------------------------------------- */

enum raw_kind { RAW_TOKEN, RAW_NOISE, RAW_PARTICLE, RAW_GENERIC };

static bool word_in(const char *s, size_t n, const char *const *words)
{
    for (size_t i = 0; words[i] != NULL; i++)
        if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0)
            return true;
    return false;
}

static enum raw_kind raw_kind_of(const char *s, size_t n)
{
    static const char *const noise[] = {"mr",   "mrs", "ms", "miss", "mx", "dr",
                                        "prof", "sir", "jr", "sr",   NULL};
    static const char *const particles[] = {"al",  "el",    "ul",  "bin", "ibn", "bint", "de",
                                            "del", "della", "der", "den", "di",  "da",   "das",
                                            "dos", "la",    "van", "von", NULL};
    if (word_in(s, n, noise))
        return RAW_NOISE;
    static const char *const generic[] = {
        "company",  "co",  "corporation",   "corp", "limited", "ltd",     "llc",
        "inc",      "plc", "international", "intl", "trading", "holding", "holdings",
        "group",    "sa",  "gmbh",          "ag",   "fze",     "bank",    "shipping",
        "exchange", NULL};
    if (word_in(s, n, particles))
        return RAW_PARTICLE;
    if (word_in(s, n, generic))
        return RAW_GENERIC;
    return RAW_TOKEN;
}

/* Step g: transliteration folding ---------------------------------------------------------- */

static bool is_vowel(char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y';
}

static bool is_consonant(char c) { return c >= 'a' && c <= 'z' && !is_vowel(c); }

/* The one-character replacement of digraph c d, or 0 when it is not folded. */
static char digraph_fold(char c, char d)
{
    static const char rules[][3] = {"phf", "ckk", "khh", "tht", "ouu",
                                    "oou", "eei", "aea", "oeo", "ueu"};
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        if (rules[i][0] == c && rules[i][1] == d)
            return rules[i][2];
    return 0;
}

/* First pass: digraphs, q and x. out has room for 2 * n bytes. */
static size_t fold_digraphs(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char d = i + 1 < n ? in[i + 1] : 0;
        char f = digraph_fold(in[i], d);
        if (f != 0) {
            out[o++] = f;
            i++;
        } else if (in[i] == 'q') {
            out[o++] = 'k';
        } else if (in[i] == 'x') {
            out[o++] = 'k';
            out[o++] = 's';
        } else {
            out[o++] = in[i];
        }
    }
    CF_ASSERT(o <= 2 * n);
    return o;
}

/* Folds token in[0..n) into out (room for 2 * n bytes); returns the folded length (>= 1). */
static size_t fold_token(const char *in, size_t n, char *out)
{
    CF_ASSERT(n >= 1 && n <= SCREEN_TOKEN_BYTES_MAX);
    char tmp[2 * SCREEN_TOKEN_BYTES_MAX];
    size_t m = fold_digraphs(in, n, tmp);
    for (size_t i = 1; i + 1 < m; i++)
        if (tmp[i] == 'y' && is_consonant(tmp[i - 1]) && is_consonant(tmp[i + 1]))
            tmp[i] = 'i';
    if (m >= 3 && tmp[m - 2] == 'e' && (tmp[m - 1] == 'i' || tmp[m - 1] == 'y')) {
        tmp[m - 2] = 'i';
        m--;
    } else if (m >= 2 && tmp[m - 1] == 'y') {
        tmp[m - 1] = 'i';
    }
    size_t o = 0;
    for (size_t i = 0; i < m; i++) {
        bool letter = tmp[i] >= 'a' && tmp[i] <= 'z';
        if (o > 0 && letter && out[o - 1] == tmp[i])
            continue;
        out[o++] = tmp[i];
    }
    CF_ASSERT(o >= 1 && o <= m);
    return o;
}

/* Writes the kept raw tokens, folded, into out; false when a bound of screen_name is hit. */
static bool name_assemble(const struct raw_tokens *r, struct screen_name *out)
{
    enum raw_kind kind[RAW_TOKENS_MAX];
    size_t real = 0;
    for (size_t i = 0; i < r->n; i++) {
        kind[i] = raw_kind_of(r->bytes + r->off[i], r->len[i]);
        real += kind[i] == RAW_TOKEN || kind[i] == RAW_GENERIC;
    }
    out->text_len = 0;
    out->tokens_n = 0;
    out->generic = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (real > 0 && kind[i] == RAW_NOISE)
            continue;
        char folded[2 * SCREEN_TOKEN_BYTES_MAX];
        size_t n = fold_token(r->bytes + r->off[i], r->len[i], folded);
        if (n > SCREEN_TOKEN_BYTES_MAX || n > SCREEN_FOLDED_BYTES_MAX - out->text_len)
            return false;
        if (real == 0 || kind[i] == RAW_TOKEN || kind[i] == RAW_GENERIC) {
            if (out->tokens_n == SCREEN_TOKENS_MAX)
                return false;
            if (kind[i] == RAW_GENERIC)
                out->generic |= UINT32_C(1) << out->tokens_n;
            out->tok_off[out->tokens_n] = (uint16_t)out->text_len;
            out->tok_len[out->tokens_n] = (uint16_t)n;
            out->tokens_n++;
        }
        memcpy(out->text + out->text_len, folded, n);
        out->text_len += n;
    }
    return out->tokens_n > 0;
}

enum cf_err screen_name_normalize(const char *name, size_t len, struct screen_name *out)
{
    CF_ASSERT(name != NULL || len == 0);
    CF_ASSERT(out != NULL);
    if (len == 0 || len > SCREEN_NAME_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    if (u8_check((const uint8_t *)name, len) != NULL)
        return CF_ERR_INVALID_FIELD;
    uint8_t pre[PREMAP_BYTES];
    size_t pre_n = name_premap((const uint8_t *)name, len, pre);
    if (pre_n == (size_t)-1)
        return CF_ERR_INVALID_FIELD;
    uint8_t scratch[DECOMPOSED_BYTES];
    size_t dec_n = sizeof(scratch);
    uint8_t *dec = u8_normalize(UNINORM_NFKD, pre, pre_n, scratch, &dec_n);
    if (dec == NULL)
        return CF_ERR_NOMEM;
    struct raw_tokens raw;
    bool ok = raw_split(dec, dec_n, &raw);
    if (dec != scratch)
        free(dec);
    struct screen_name tmp;
    if (!ok || !name_assemble(&raw, &tmp))
        return CF_ERR_INVALID_FIELD;
    CF_ASSERT(tmp.tokens_n >= 1 && tmp.text_len >= 1);
    memcpy(out, &tmp, sizeof(tmp));
    return CF_OK;
}

/* Jaro-Winkler --------------------------------------------------------------------------- */

int screen_jw_from_counts(size_t a_len, size_t b_len, size_t m, size_t half_t, size_t l)
{
    CF_ASSERT(a_len >= 1 && b_len >= 1);
    CF_ASSERT(a_len <= SCREEN_FOLDED_BYTES_MAX && b_len <= SCREEN_FOLDED_BYTES_MAX);
    CF_ASSERT(m <= a_len && m <= b_len && half_t <= m && l <= 4);
    if (m == 0)
        return 0;
    /* jaro = n / d exactly, with t = half_t / 2 */
    uint64_t a = a_len, b = b_len, mm = m;
    uint64_t n = 2 * mm * mm * (a + b) + a * b * (2 * mm - half_t);
    uint64_t d = 6 * a * b * mm;
    uint64_t num = n, den = d;
    if (10 * n >= 7 * d) {
        num = n * (10 - l) + l * d;
        den = 10 * d;
    }
    uint64_t score = (2000 * num + den) / (2 * den);
    CF_ASSERT(score <= SCREEN_SCORE_MAX);
    return (int)score;
}

static size_t common_prefix(const void *a, size_t a_len, const void *b, size_t b_len)
{
    const uint8_t *x = a, *y = b;
    size_t l = 0;
    while (l < 4 && l < a_len && l < b_len && x[l] == y[l])
        l++;
    return l;
}

int screen_jaro_winkler(const char *a, size_t a_len, const char *b, size_t b_len)
{
    CF_ASSERT(a_len <= SCREEN_FOLDED_BYTES_MAX && b_len <= SCREEN_FOLDED_BYTES_MAX);
    CF_ASSERT((a != NULL || a_len == 0) && (b != NULL || b_len == 0));
    if (a_len == 0 || b_len == 0)
        return 0;
    size_t longer = a_len > b_len ? a_len : b_len;
    size_t window = longer / 2 >= 1 ? longer / 2 - 1 : 0;
    bool b_used[SCREEN_FOLDED_BYTES_MAX];
    char a_matched[SCREEN_FOLDED_BYTES_MAX];
    memset(b_used, 0, b_len);
    size_t m = 0;
    for (size_t i = 0; i < a_len; i++) {
        size_t lo = i > window ? i - window : 0;
        size_t hi = i + window + 1 < b_len ? i + window + 1 : b_len;
        for (size_t j = lo; j < hi; j++) {
            if (!b_used[j] && b[j] == a[i]) {
                b_used[j] = true;
                a_matched[m++] = a[i];
                break;
            }
        }
    }
    size_t half_t = 0, k = 0;
    for (size_t j = 0; j < b_len && k < m; j++) {
        if (b_used[j])
            half_t += b[j] != a_matched[k++];
    }
    CF_ASSERT(k == m);
    return screen_jw_from_counts(a_len, b_len, m, half_t, common_prefix(a, a_len, b, b_len));
}

/* Span similarity ------------------------------------------------------------------------- */

size_t screen_skeleton(const char *s, size_t len, char *out)
{
    CF_ASSERT(s != NULL || len == 0);
    if (len == 0)
        return 0;
    size_t o = 0;
    out[o++] = s[0];
    for (size_t i = 1; i < len; i++)
        if (!is_vowel(s[i]))
            out[o++] = s[i];
    CF_ASSERT(o >= 1 && o <= len);
    return o;
}

/* The index of the next skeleton character of s[0..n) after position i (n when none). */
static size_t skeleton_next(const char *s, size_t n, size_t i)
{
    i++;
    while (i < n && is_vowel(s[i]))
        i++;
    return i;
}

/* Whether a and b have the same skeleton of at least SCREEN_SKELETON_CHARS_MIN characters,
 * walking both without building them. */
static bool skeleton_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
    size_t i = 0, j = 0, n = 0;
    for (; i < a_len && j < b_len; n++) {
        if (a[i] != b[j])
            return false;
        i = skeleton_next(a, a_len, i);
        j = skeleton_next(b, b_len, j);
    }
    return i == a_len && j == b_len && n >= SCREEN_SKELETON_CHARS_MIN;
}

int screen_span_similarity(const char *a, size_t a_len, const char *b, size_t b_len)
{
    CF_ASSERT(a_len >= 1 && a_len <= SCREEN_FOLDED_BYTES_MAX);
    CF_ASSERT(b_len >= 1 && b_len <= SCREEN_FOLDED_BYTES_MAX);
    if (a_len == b_len && memcmp(a, b, a_len) == 0)
        return SCREEN_SCORE_MAX;
    int best = screen_jaro_winkler(a, a_len, b, b_len);
    if (best < SCREEN_SCORE_MAX - SCREEN_SKELETON_PENALTY && skeleton_equal(a, a_len, b, b_len))
        best = SCREEN_SCORE_MAX - SCREEN_SKELETON_PENALTY;
    CF_ASSERT(best >= 0 && best <= SCREEN_SCORE_MAX);
    return best;
}

/* Signatures and their bound -------------------------------------------------------------- */

static size_t bucket_of(char c) { return c >= 'a' && c <= 'z' ? (size_t)(c - 'a') : BUCKET_OTHER; }

static uint32_t skeleton_hash(const char *s, size_t n)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= UINT64_C(1099511628211);
    }
    return (uint32_t)(h ^ (h >> 32));
}

void screen_sig_compute(const char *s, size_t len, struct screen_sig *out)
{
    CF_ASSERT(s != NULL && len >= 1 && len <= SCREEN_FOLDED_BYTES_MAX);
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < len; i++) {
        uint8_t *h = &out->hist[bucket_of(s[i])];
        if (*h == UINT8_MAX)
            out->saturated = true;
        else
            (*h)++;
    }
    char skel[SCREEN_FOLDED_BYTES_MAX];
    size_t skel_len = screen_skeleton(s, len, skel);
    out->len = (uint16_t)len;
    out->skel_len = (uint16_t)skel_len;
    out->skel_hash = skeleton_hash(skel, skel_len);
    memcpy(out->prefix, s, len < 4 ? len : 4);
    CF_ASSERT(out->skel_len >= 1 && out->skel_len <= out->len);
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* Letters a and b share at most (the histogram intersection), capped by both lengths. */
static size_t sig_shared(const struct screen_sig *a, const struct screen_sig *b)
{
    if (a->saturated || b->saturated)
        return min_size(a->len, b->len);
    unsigned m = 0;
    for (size_t k = 0; k < SCREEN_SIG_BUCKETS; k++)
        m += a->hist[k] < b->hist[k] ? a->hist[k] : b->hist[k];
    return min_size(m, min_size(a->len, b->len));
}

/* Whether a and b may have the same skeleton, long enough to count. */
static bool sig_skeleton_may_equal(const struct screen_sig *a, const struct screen_sig *b)
{
    return a->skel_len >= SCREEN_SKELETON_CHARS_MIN && a->skel_len == b->skel_len &&
           a->skel_hash == b->skel_hash;
}

int screen_sig_bound(const struct screen_sig *a, const struct screen_sig *b)
{
    CF_ASSERT(a->len >= 1 && b->len >= 1);
    size_t l = common_prefix(a->prefix, a->len, b->prefix, b->len);
    int best = screen_jw_from_counts(a->len, b->len, sig_shared(a, b), 0, l);
    if (best < SCREEN_SCORE_MAX - SCREEN_SKELETON_PENALTY && sig_skeleton_may_equal(a, b))
        best = SCREEN_SCORE_MAX - SCREEN_SKELETON_PENALTY;
    CF_ASSERT(best >= 0 && best <= SCREEN_SCORE_MAX);
    return best;
}

void screen_probe_init(struct screen_probe *p, const struct screen_sig *sig, int floor,
                       size_t len_max)
{
    CF_ASSERT(sig->len >= 1 && floor >= 0 && floor <= SCREEN_SCORE_MAX);
    CF_ASSERT(len_max >= 1 && len_max <= SCREEN_FOLDED_BYTES_MAX);
    p->sig = *sig;
    p->floor = floor;
    p->len_max = len_max;
    size_t a = sig->len;
    for (size_t l = 0; l <= 4; l++) {
        /* the fewest letters reaching the floor never decreases as b grows (jaro falls) */
        size_t m = 0;
        p->m_min[l][0] = SCREEN_PROBE_NEVER;
        for (size_t b = 1; b <= len_max; b++) {
            size_t cap = min_size(a, b);
            while (m <= cap && screen_jw_from_counts(a, b, m, 0, min_size(l, cap)) < floor)
                m++;
            p->m_min[l][b] = m <= cap && l <= cap ? (uint16_t)m : SCREEN_PROBE_NEVER;
        }
    }
}

bool screen_probe_passes(const struct screen_probe *p, const struct screen_sig *s)
{
    CF_ASSERT(s->len >= 1 && s->len <= p->len_max);
    size_t l = common_prefix(p->sig.prefix, p->sig.len, s->prefix, s->len);
    uint16_t need = p->m_min[l][s->len];
    if (need != SCREEN_PROBE_NEVER && sig_shared(&p->sig, s) >= need)
        return true;
    return p->floor <= SCREEN_SCORE_MAX - SCREEN_SKELETON_PENALTY &&
           sig_skeleton_may_equal(&p->sig, s);
}

void screen_composite_lengths(size_t len, size_t *lo_out, size_t *hi_out)
{
    CF_ASSERT(len >= 1 && len <= SCREEN_FOLDED_BYTES_MAX);
    /* shorter * 1000 >= longer * ratio, both ways */
    *lo_out = (len * SCREEN_COMPOSITE_RATIO_MIN + 999) / 1000;
    *hi_out = len * 1000 / SCREEN_COMPOSITE_RATIO_MIN;
    CF_ASSERT(*lo_out >= 1 && *lo_out <= len && *hi_out >= len);
}

/* Spans and the name score --------------------------------------------------------------- */

static size_t span_push(struct screen_span *out, size_t n, size_t from, size_t to, uint32_t tokens,
                        bool composite)
{
    CF_ASSERT(n < SCREEN_SPANS_MAX && to > from && to <= SCREEN_FOLDED_BYTES_MAX);
    out[n].off = (uint16_t)from;
    out[n].len = (uint16_t)(to - from);
    out[n].tokens = tokens;
    out[n].composite = composite;
    return n + 1;
}

size_t screen_name_spans(const struct screen_name *name, struct screen_span *out)
{
    size_t t = name->tokens_n;
    CF_ASSERT(t >= 1 && t <= SCREEN_TOKENS_MAX);
    size_t n = 0;
    for (size_t i = 0; i < t; i++)
        n = span_push(out, n, name->tok_off[i], name->tok_off[i] + name->tok_len[i],
                      UINT32_C(1) << i, false);
    for (size_t i = 0; i < t; i++) {
        size_t seg = i == 0 ? 0 : (size_t)name->tok_off[i - 1] + name->tok_len[i - 1];
        uint32_t tokens = 0;
        for (size_t j = i; j < t && j < i + SCREEN_SPAN_TOKENS_MAX; j++) {
            size_t end = (size_t)name->tok_off[j] + name->tok_len[j];
            tokens |= UINT32_C(1) << j;
            if (j > i)
                n = span_push(out, n, name->tok_off[i], end, tokens, true);
            if (seg < name->tok_off[i])
                n = span_push(out, n, seg, end, tokens, true);
        }
    }
    CF_ASSERT(n >= t && n <= SCREEN_SPANS_MAX);
    return n;
}

struct pair {
    int16_t sim;
    uint8_t q, l;
};

/* Whether spans a and b may pair: not both composite, and a composite pair of similar lengths. */
static bool pair_allowed(const struct screen_span *a, const struct screen_span *b)
{
    if (a->composite && b->composite)
        return false;
    if (!a->composite && !b->composite)
        return true;
    size_t shorter = a->len < b->len ? a->len : b->len, longer = a->len ^ b->len ^ shorter;
    return (uint64_t)shorter * 1000 >= (uint64_t)longer * SCREEN_COMPOSITE_RATIO_MIN;
}

/* Scores the allowed pairs of spans q x l into out, single pairs first; returns how many. */
static size_t pairs_score(const struct screen_name *qn, const struct screen_span *q, size_t q_n,
                          const struct screen_name *ln, const struct screen_span *l, size_t l_n,
                          struct pair *out)
{
    size_t n = 0;
    for (int singles = 1; singles >= 0; singles--) {
        for (size_t i = 0; i < q_n; i++) {
            for (size_t j = 0; j < l_n; j++) {
                bool single = !q[i].composite && !l[j].composite;
                if (single != (singles == 1) || !pair_allowed(&q[i], &l[j]))
                    continue;
                CF_ASSERT(n < PAIRS_MAX);
                out[n].sim = (int16_t)screen_span_similarity(qn->text + q[i].off, q[i].len,
                                                             ln->text + l[j].off, l[j].len);
                out[n].q = (uint8_t)i;
                out[n].l = (uint8_t)j;
                n++;
            }
        }
    }
    return n;
}

/* The weight (thousandths) of a span of name: generic when all its tokens are. */
static uint64_t span_weight(const struct screen_name *name, const struct screen_span *s)
{
    return (s->tokens & ~name->generic) == 0 ? SCREEN_GENERIC_WEIGHT : 1000;
}

/* The penalty (thousandths of weighted bytes) of the tokens of name that used leaves out: all
 * at SCREEN_UNMATCHED_FULL but the longest, which is at partial when partial is set. */
static uint64_t unused_weight(const struct screen_name *name, uint32_t used, bool partial)
{
    uint64_t total = 0, longest = 0;
    for (size_t i = 0; i < name->tokens_n; i++) {
        if (used & (UINT32_C(1) << i))
            continue;
        uint64_t w =
            (uint64_t)name->tok_len[i] * ((name->generic >> i) & 1 ? SCREEN_GENERIC_WEIGHT : 1000);
        total += w;
        longest = w > longest ? w : longest;
    }
    if (!partial)
        return total * SCREEN_UNMATCHED_FULL;
    return (total - longest) * SCREEN_UNMATCHED_FULL + longest * SCREEN_UNMATCHED_PARTIAL;
}

/* Takes pairs greedily (header, point 3) into the sums; returns the used token sets. */
static void pairs_take(const struct screen_name *qn, const struct screen_span *q,
                       const struct screen_name *ln, const struct screen_span *l,
                       const struct pair *pairs, size_t pairs_n, uint32_t *q_used, uint32_t *l_used,
                       uint64_t *sum_sw, uint64_t *sum_w)
{
    for (;;) {
        const struct pair *best = NULL;
        for (size_t i = 0; i < pairs_n; i++) {
            const struct pair *p = &pairs[i];
            if ((q[p->q].tokens & *q_used) || (l[p->l].tokens & *l_used))
                continue;
            if (best == NULL || p->sim > best->sim)
                best = p;
        }
        if (best == NULL)
            return;
        *q_used |= q[best->q].tokens;
        *l_used |= l[best->l].tokens;
        uint64_t wq = span_weight(qn, &q[best->q]), wl = span_weight(ln, &l[best->l]);
        uint64_t w = ((uint64_t)q[best->q].len + l[best->l].len) * (wq < wl ? wq : wl);
        *sum_sw += (uint64_t)(best->sim >= SCREEN_TOKEN_SIM_MIN ? best->sim : 0) * w;
        *sum_w += w;
    }
}

static size_t bits_count(uint32_t x)
{
    size_t n = 0;
    for (; x != 0; x &= x - 1)
        n++;
    return n;
}

int screen_name_score(const struct screen_name *query, const struct screen_name *listed)
{
    CF_ASSERT(query->tokens_n >= 1 && listed->tokens_n >= 1);
    struct screen_span q[SCREEN_SPANS_MAX], l[SCREEN_SPANS_MAX];
    size_t q_n = screen_name_spans(query, q), l_n = screen_name_spans(listed, l);
    struct pair pairs[PAIRS_MAX];
    size_t pairs_n = pairs_score(query, q, q_n, listed, l, l_n, pairs);
    int best_sim = 0;
    for (size_t i = 0; i < pairs_n; i++)
        best_sim = pairs[i].sim > best_sim ? pairs[i].sim : best_sim;
    uint32_t q_used = 0, l_used = 0;
    uint64_t sum_sw = 0, sum_w = 0;
    pairs_take(query, q, listed, l, pairs, pairs_n, &q_used, &l_used, &sum_sw, &sum_w);
    CF_ASSERT(sum_w > 0 && (q_used == (UINT32_C(1) << query->tokens_n) - 1 ||
                            l_used == (UINT32_C(1) << listed->tokens_n) - 1));
    /* only one side can have tokens left, so only one side gets the partial rate */
    bool several = bits_count(q_used) >= 2 || bits_count(l_used) >= 2;
    uint64_t den = 1000 * sum_w + unused_weight(query, q_used, several) +
                   unused_weight(listed, l_used, several);
    uint64_t score = (2 * 1000 * sum_sw + den) / (2 * den);
    CF_ASSERT(score <= (uint64_t)best_sim);
    return (int)score;
}
