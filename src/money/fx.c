/* fx.c - integer exchange rates, exact 128-bit conversion and the rates table text; see fx.h. */
#include "money/fx.h"

#include <stdbool.h>
#include <string.h>

#include "money/currency.h"
#include "money/money.h"

/* Basis points in one whole: 10000 bps = 100%. */
#define BPS_PER_UNIT 10000

/* Integer digits of the largest rate, 1000000000. */
#define RATE_INT_DIGITS_MAX 10

/* Fields of a rates table line: BASE QUOTE RATE. */
#define RATE_LINE_FIELDS 3

typedef unsigned __int128 u128;

_Static_assert(FX_RATE_E9_MAX / FX_RATE_E9_ONE < 10000000000, "RATE_INT_DIGITS_MAX digits");

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static uint64_t pow10_u64(int exponent)
{
    CF_ASSERT(exponent >= 0 && exponent <= 18);
    uint64_t p = 1;
    for (int i = 0; i < exponent; i++)
        p *= 10;
    return p;
}

/* Rate text ------------------------------------------------------------------------------------ */

static size_t count_digits(const char *text, size_t len)
{
    size_t n = 0;
    while (n < len && is_digit(text[n]))
        n++;
    return n;
}

/* The value of n digits (n <= 18, so no overflow). */
static uint64_t digits_value(const char *digits, size_t n)
{
    CF_ASSERT(n <= 18);
    uint64_t value = 0;
    for (size_t i = 0; i < n; i++)
        value = value * 10 + (uint64_t)(digits[i] - '0');
    return value;
}

enum cf_err fx_rate_parse(const char *text, size_t len, int64_t *rate_e9_out)
{
    CF_ASSERT(text != NULL || len == 0);
    CF_ASSERT(rate_e9_out != NULL);
    if (len == 0)
        return CF_ERR_INVALID_FIELD;
    size_t int_len = count_digits(text, len);
    if (int_len == 0 || int_len > RATE_INT_DIGITS_MAX || (int_len > 1 && text[0] == '0'))
        return CF_ERR_INVALID_FIELD; /* "", ".5", "-1", leading zeros, too many digits */
    size_t frac_len = 0;
    if (int_len < len) {
        if (text[int_len] != '.')
            return CF_ERR_INVALID_FIELD;
        frac_len = count_digits(text + int_len + 1, len - int_len - 1);
        if (frac_len == 0 || frac_len > FX_RATE_SCALE || int_len + 1 + frac_len != len)
            return CF_ERR_INVALID_FIELD; /* "1.", "1.0000000001", "1.5x" */
    }
    uint64_t int_part = digits_value(text, int_len);
    uint64_t frac_part = frac_len == 0 ? 0 : digits_value(text + int_len + 1, frac_len);
    frac_part *= pow10_u64(FX_RATE_SCALE - (int)frac_len);
    /* int_part < 10^10, so the sum is below 10^19 < 2^64. */
    uint64_t rate = int_part * (uint64_t)FX_RATE_E9_ONE + frac_part;
    if (rate == 0 || rate > (uint64_t)FX_RATE_E9_MAX)
        return CF_ERR_INVALID_FIELD;
    *rate_e9_out = (int64_t)rate;
    return CF_OK;
}

int fx_rate_format(int64_t rate_e9, char *buf, size_t bytes)
{
    CF_ASSERT(rate_e9 > 0 && rate_e9 <= FX_RATE_E9_MAX);
    CF_ASSERT(buf != NULL || bytes == 0);
    /* Built right to left in a scratch buffer, then copied, so a short buf is never touched. */
    char scratch[FX_RATE_TEXT_BYTES_MAX];
    size_t pos = sizeof(scratch);
    scratch[--pos] = '\0';
    uint64_t int_part = (uint64_t)rate_e9 / (uint64_t)FX_RATE_E9_ONE;
    uint64_t frac_part = (uint64_t)rate_e9 % (uint64_t)FX_RATE_E9_ONE;
    if (frac_part != 0) {
        int frac_len = FX_RATE_SCALE;
        while (frac_part % 10 == 0) { /* drop trailing zeros */
            frac_part /= 10;
            frac_len--;
        }
        for (int i = 0; i < frac_len; i++) {
            scratch[--pos] = (char)('0' + frac_part % 10);
            frac_part /= 10;
        }
        scratch[--pos] = '.';
    }
    do {
        scratch[--pos] = (char)('0' + int_part % 10);
        int_part /= 10;
    } while (int_part != 0);

    size_t text_len = sizeof(scratch) - 1 - pos;
    CF_ASSERT(text_len > 0 && text_len <= RATE_INT_DIGITS_MAX + 1 + FX_RATE_SCALE);
    if (text_len + 1 > bytes)
        return -1;
    memcpy(buf, scratch + pos, text_len + 1);
    return (int)text_len;
}

/* Conversion ----------------------------------------------------------------------------------- */

/*
 * A conversion is floor(amount * rate * num / den) with the spread and the scale difference
 * folded into num and den: num = (10000 - spread) * 10^max(0, to - from) <= 10^8 and
 * den = 10^9 * 10000 * 10^max(0, from - to) <= 10^17.
 */
struct fx_ratio {
    uint64_t num;
    uint64_t den;
};

static enum cf_err fx_args_check(int from_scale, int to_scale, int64_t rate_e9, int64_t spread_bps)
{
    CF_ASSERT(from_scale >= 0 && from_scale <= MONEY_SCALE_MAX);
    CF_ASSERT(to_scale >= 0 && to_scale <= MONEY_SCALE_MAX);
    if (rate_e9 <= 0 || rate_e9 > FX_RATE_E9_MAX)
        return CF_ERR_INVALID_FIELD;
    if (spread_bps < 0 || spread_bps > FX_SPREAD_BPS_MAX)
        return CF_ERR_INVALID_FIELD;
    return CF_OK;
}

static struct fx_ratio fx_ratio_make(int from_scale, int to_scale, int64_t spread_bps)
{
    CF_ASSERT(spread_bps >= 0 && spread_bps <= FX_SPREAD_BPS_MAX);
    struct fx_ratio r = {
        .num = (uint64_t)(BPS_PER_UNIT - spread_bps),
        .den = (uint64_t)FX_RATE_E9_ONE * BPS_PER_UNIT,
    };
    if (to_scale > from_scale)
        r.num *= pow10_u64(to_scale - from_scale);
    else
        r.den *= pow10_u64(from_scale - to_scale);
    CF_ASSERT(r.num > 0 && r.num <= UINT64_C(100000000));
    CF_ASSERT(r.den <= UINT64_C(100000000000000000));
    return r;
}

/*
 * floor(amount * rate * num / den) into *out, false when it exceeds INT64_MAX. amount * rate is
 * below 2^63 * 2^60, exact in 128 bits; times num it may not be, so the product is split as
 * (q * den + rem) * num, where rem * num < 10^25 and q * num is only formed when q fits int64.
 */
static bool convert_floor(uint64_t amount, uint64_t rate_e9, struct fx_ratio r, uint64_t *out)
{
    CF_ASSERT(rate_e9 > 0 && rate_e9 <= (uint64_t)FX_RATE_E9_MAX);
    CF_ASSERT(r.num > 0 && r.den > 0);
    u128 product = (u128)amount * rate_e9;
    u128 q = product / r.den;
    u128 rem = product % r.den;
    if (q > (u128)INT64_MAX)
        return false; /* num >= 1, so the result is at least q */
    u128 result = q * r.num + rem * r.num / r.den;
    if (result > (u128)INT64_MAX)
        return false;
    *out = (uint64_t)result;
    return true;
}

enum cf_err fx_convert(int64_t amount_minor, int from_scale, int to_scale, int64_t rate_e9,
                       int64_t spread_bps, int64_t *out_minor)
{
    CF_ASSERT(out_minor != NULL);
    enum cf_err err = fx_args_check(from_scale, to_scale, rate_e9, spread_bps);
    if (err != CF_OK)
        return err;
    if (amount_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    struct fx_ratio r = fx_ratio_make(from_scale, to_scale, spread_bps);
    uint64_t converted;
    if (!convert_floor((uint64_t)amount_minor, (uint64_t)rate_e9, r, &converted))
        return CF_ERR_AMOUNT_OVERFLOW;
    CF_ASSERT(converted <= (uint64_t)INT64_MAX);
    *out_minor = (int64_t)converted;
    return CF_OK;
}

/*
 * convert(s) >= t  <=>  s * rate * num / den >= t (t is whole)  <=>  s >= t * den / (rate * num),
 * so the answer is ceil(t * den / (rate * num)). t * den < 2^63 * 10^17 < 2^120 and
 * rate * num <= 10^26: both exact in 128 bits.
 */
enum cf_err fx_convert_for_target(int64_t target_minor, int from_scale, int to_scale,
                                  int64_t rate_e9, int64_t spread_bps, int64_t *source_out)
{
    CF_ASSERT(source_out != NULL);
    enum cf_err err = fx_args_check(from_scale, to_scale, rate_e9, spread_bps);
    if (err != CF_OK)
        return err;
    if (target_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    struct fx_ratio r = fx_ratio_make(from_scale, to_scale, spread_bps);
    u128 needed = (u128)(uint64_t)target_minor * r.den;
    u128 per_source = (u128)(uint64_t)rate_e9 * r.num;
    u128 source = (needed + per_source - 1) / per_source;
    if (source > (u128)INT64_MAX)
        return CF_ERR_AMOUNT_OVERFLOW;

    uint64_t reached;
    if (!convert_floor((uint64_t)source, (uint64_t)rate_e9, r, &reached))
        return CF_ERR_AMOUNT_OVERFLOW; /* the payee would be owed more than int64_t */
    uint64_t reached_before = 0;
    CF_ASSERT(source >= 1);
    CF_ASSERT(convert_floor((uint64_t)source - 1, (uint64_t)rate_e9, r, &reached_before));
    CF_ASSERT(reached >= (uint64_t)target_minor && reached_before < (uint64_t)target_minor);
    *source_out = (int64_t)source;
    return CF_OK;
}

/* Rates table ---------------------------------------------------------------------------------- */

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* One line of the table, without its "\n" or "\r\n", its comment, and blanks around it. */
struct rate_line {
    const char *text;
    size_t len;
    size_t number; /* 1-based */
};

/* Cuts a line's comment and surrounding blanks. */
static void rate_line_trim(struct rate_line *line)
{
    const char *hash = memchr(line->text, '#', line->len);
    if (hash != NULL)
        line->len = (size_t)(hash - line->text);
    while (line->len > 0 && is_blank(line->text[line->len - 1]))
        line->len--;
    while (line->len > 0 && is_blank(line->text[0])) {
        line->text++;
        line->len--;
    }
}

/* Splits a trimmed line into exactly RATE_LINE_FIELDS blank-separated fields, else false. */
static bool rate_line_fields(const struct rate_line *line, const char *fields[RATE_LINE_FIELDS],
                             size_t lens[RATE_LINE_FIELDS])
{
    size_t pos = 0;
    size_t n = 0;
    while (pos < line->len) {
        if (n == RATE_LINE_FIELDS)
            return false; /* a fourth field */
        fields[n] = line->text + pos;
        size_t start = pos;
        while (pos < line->len && !is_blank(line->text[pos]))
            pos++;
        lens[n++] = pos - start;
        while (pos < line->len && is_blank(line->text[pos]))
            pos++;
    }
    return n == RATE_LINE_FIELDS;
}

/* Decodes one non-empty trimmed line into *row; rows[0..n) are the pairs before it. */
static enum cf_err rate_line_decode(const struct rate_line *line, const struct fx_rate *rows,
                                    size_t n, struct fx_rate *row)
{
    CF_ASSERT(line->len > 0);
    const char *fields[RATE_LINE_FIELDS];
    size_t lens[RATE_LINE_FIELDS];
    if (!rate_line_fields(line, fields, lens))
        return CF_ERR_INVALID_FIELD;
    const struct currency *base = currency_find(fields[0], lens[0]);
    const struct currency *quote = currency_find(fields[1], lens[1]);
    if (base == NULL || quote == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    if (base == quote)
        return CF_ERR_INVALID_FIELD;
    int64_t rate_e9;
    enum cf_err err = fx_rate_parse(fields[2], lens[2], &rate_e9);
    if (err != CF_OK)
        return err;
    if (fx_rates_find(rows, n, base->code, quote->code) != NULL)
        return CF_ERR_INVALID_FIELD; /* the same pair twice */
    memset(row, 0, sizeof(*row));
    memcpy(row->base, base->code, strlen(base->code) + 1);
    memcpy(row->quote, quote->code, strlen(quote->code) + 1);
    row->rate_e9 = rate_e9;
    CF_ASSERT(row->rate_e9 > 0 && strcmp(row->base, row->quote) != 0);
    return CF_OK;
}

/* The line starting at *pos, which moves past its end; false when the text is exhausted. */
static bool rate_line_next(const char *text, size_t len, size_t *pos, struct rate_line *line)
{
    if (*pos >= len)
        return false;
    const char *start = text + *pos;
    const char *newline = memchr(start, '\n', len - *pos);
    size_t line_len = newline != NULL ? (size_t)(newline - start) : len - *pos;
    *pos += line_len + (newline != NULL ? 1 : 0);
    if (line_len > 0 && start[line_len - 1] == '\r')
        line_len--;
    line->text = start;
    line->len = line_len;
    line->number++;
    return true;
}

enum cf_err fx_rates_parse(const char *text, size_t len, struct fx_rate *out, size_t cap,
                           size_t *n_out, size_t *bad_line_out)
{
    CF_ASSERT(text != NULL || len == 0);
    CF_ASSERT((out != NULL || cap == 0) && n_out != NULL && bad_line_out != NULL);
    size_t rows_max = cap < FX_RATES_MAX ? cap : FX_RATES_MAX;
    struct fx_rate rows[FX_RATES_MAX]; /* decoded here so out stays untouched on failure */
    size_t n = 0;
    size_t pos = 0;
    struct rate_line line = {.text = text, .len = 0, .number = 0};
    while (rate_line_next(text, len, &pos, &line)) {
        bool has_nul = memchr(line.text, '\0', line.len) != NULL; /* even in a comment */
        rate_line_trim(&line);
        if (line.len == 0 && !has_nul)
            continue;
        enum cf_err err = CF_ERR_INVALID_FIELD;
        if (!has_nul && n < rows_max)
            err = rate_line_decode(&line, rows, n, &rows[n]);
        if (err != CF_OK) {
            *bad_line_out = line.number;
            return err;
        }
        n++;
    }
    CF_ASSERT(n <= rows_max && pos == len);
    if (n > 0)
        memcpy(out, rows, n * sizeof(rows[0]));
    *n_out = n;
    return CF_OK;
}

const struct fx_rate *fx_rates_find(const struct fx_rate *rates, size_t n, const char *base,
                                    const char *quote)
{
    CF_ASSERT(rates != NULL || n == 0);
    CF_ASSERT(base != NULL && quote != NULL);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rates[i].base, base) == 0 && strcmp(rates[i].quote, quote) == 0)
            return &rates[i];
    }
    return NULL;
}
