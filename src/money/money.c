/*
 * money.c - checked arithmetic on int64_t minor units, basis-point fees with banker's rounding,
 * and the strict decimal text form of amounts (parse and format). No floating point: every
 * value is an integer count of minor units, and every step that could overflow is checked.
 */
#include "money/money.h"

#include <stdbool.h>
#include <string.h>

/* Basis points in one whole: 10000 bps = 100%. */
#define BPS_PER_UNIT 10000

/* The magnitude of INT64_MIN, the largest magnitude a negative amount may have. */
#define MAGNITUDE_NEGATIVE_MAX ((uint64_t)INT64_MAX + 1u)

/* Longest formatted amount: '-', 19 digits, '.', NUL, rounded up; "32 bytes always suffice". */
#define FORMAT_BYTES_MAX 32

/* The pieces of a syntactically valid amount text; digits point into the caller's text. */
struct amount_text {
    bool negative;
    const char *int_digits;
    size_t int_digits_len;
    const char *frac_digits;
    size_t frac_digits_len;
};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static size_t count_digits(const char *text, size_t len)
{
    size_t n = 0;
    while (n < len && is_digit(text[n]))
        n++;
    return n;
}

enum cf_err money_add(int64_t a, int64_t b, int64_t *out)
{
    CF_ASSERT(out != NULL);
    int64_t sum;
    if (__builtin_add_overflow(a, b, &sum))
        return CF_ERR_AMOUNT_OVERFLOW;
    CF_ASSERT((b >= 0) == (sum >= a)); /* no wrap-around got through */
    *out = sum;
    return CF_OK;
}

enum cf_err money_sub(int64_t a, int64_t b, int64_t *out)
{
    CF_ASSERT(out != NULL);
    int64_t difference;
    if (__builtin_sub_overflow(a, b, &difference))
        return CF_ERR_AMOUNT_OVERFLOW;
    CF_ASSERT((b >= 0) == (difference <= a)); /* no wrap-around got through */
    *out = difference;
    return CF_OK;
}

enum cf_err money_mul_bps_half_even(int64_t amount, int64_t bps, int64_t *out)
{
    CF_ASSERT(out != NULL);
    /* |amount * bps| <= 2^126, so the exact product always fits in 128 bits. */
    __int128 product = (__int128)amount * (__int128)bps;
    bool negative = product < 0;
    unsigned __int128 magnitude =
        negative ? (unsigned __int128)0 - (unsigned __int128)product : (unsigned __int128)product;

    unsigned __int128 quotient = magnitude / BPS_PER_UNIT;
    unsigned __int128 remainder = magnitude % BPS_PER_UNIT;
    CF_ASSERT(remainder < BPS_PER_UNIT);
    /* Half to even on the magnitude is symmetric about zero. */
    if (remainder * 2 > BPS_PER_UNIT || (remainder * 2 == BPS_PER_UNIT && (quotient & 1u) != 0))
        quotient++;

    uint64_t limit = negative ? MAGNITUDE_NEGATIVE_MAX : (uint64_t)INT64_MAX;
    if (quotient > limit)
        return CF_ERR_AMOUNT_OVERFLOW;
    uint64_t result_magnitude = (uint64_t)quotient;
    int64_t result = negative ? (int64_t)(0u - result_magnitude) : (int64_t)result_magnitude;
    CF_ASSERT(negative ? result <= 0 : result >= 0);
    *out = result;
    return CF_OK;
}

/*
 * Splits text into sign, integer digits and fraction digits, enforcing the grammar of
 * money_parse. Returns false for anything malformed; says nothing about magnitude.
 */
static bool amount_text_split(const char *text, size_t len, int scale, struct amount_text *parts)
{
    CF_ASSERT(text != NULL || len == 0);
    CF_ASSERT(scale >= 0 && scale <= MONEY_SCALE_MAX);
    if (len == 0)
        return false; /* "" (and a NULL text, which must not even be offset) */
    size_t pos = 0;
    parts->negative = text[0] == '-';
    if (parts->negative)
        pos++;

    parts->int_digits = text + pos;
    parts->int_digits_len = count_digits(text + pos, len - pos);
    if (parts->int_digits_len == 0)
        return false; /* "", "-", ".5", "-.5", "abc" */
    if (parts->int_digits_len > 1 && parts->int_digits[0] == '0')
        return false; /* leading zeros: "007", "00.5" */
    pos += parts->int_digits_len;

    parts->frac_digits = text + pos;
    parts->frac_digits_len = 0;
    if (pos == len)
        return true;
    if (text[pos] != '.' || scale == 0)
        return false; /* a stray character, or a '.' where no fraction exists */
    pos++;
    parts->frac_digits = text + pos;
    parts->frac_digits_len = count_digits(text + pos, len - pos);
    pos += parts->frac_digits_len;
    if (parts->frac_digits_len == 0 || parts->frac_digits_len > (size_t)scale)
        return false; /* "1." or more digits than the currency has */
    return pos == len;
}

/* *magnitude = *magnitude * 10 + digit, false when it leaves uint64_t. */
static bool magnitude_push_digit(uint64_t *magnitude, unsigned digit)
{
    CF_ASSERT(magnitude != NULL);
    CF_ASSERT(digit <= 9);
    uint64_t shifted;
    if (__builtin_mul_overflow(*magnitude, (uint64_t)10, &shifted))
        return false;
    return !__builtin_add_overflow(shifted, (uint64_t)digit, magnitude);
}

/* The amount's magnitude in minor units, false when it does not fit in uint64_t. */
static bool amount_text_magnitude(const struct amount_text *parts, int scale, uint64_t *magnitude)
{
    CF_ASSERT(scale >= 0 && scale <= MONEY_SCALE_MAX);
    CF_ASSERT(parts->frac_digits_len <= (size_t)scale);
    uint64_t value = 0;
    for (size_t i = 0; i < parts->int_digits_len; i++) {
        if (!magnitude_push_digit(&value, (unsigned)(parts->int_digits[i] - '0')))
            return false;
    }
    for (size_t i = 0; i < (size_t)scale; i++) {
        unsigned digit = 0; /* "12.3" at scale 2 is 12.30 */
        if (i < parts->frac_digits_len)
            digit = (unsigned)(parts->frac_digits[i] - '0');
        if (!magnitude_push_digit(&value, digit))
            return false;
    }
    *magnitude = value;
    return true;
}

enum cf_err money_parse(const char *text, size_t len, int scale, int64_t *out)
{
    CF_ASSERT(out != NULL);
    CF_ASSERT(scale >= 0 && scale <= MONEY_SCALE_MAX);
    struct amount_text parts;
    if (!amount_text_split(text, len, scale, &parts))
        return CF_ERR_INVALID_AMOUNT;

    uint64_t magnitude_minor;
    if (!amount_text_magnitude(&parts, scale, &magnitude_minor))
        return CF_ERR_AMOUNT_OVERFLOW;
    uint64_t limit = parts.negative ? MAGNITUDE_NEGATIVE_MAX : (uint64_t)INT64_MAX;
    if (magnitude_minor > limit)
        return CF_ERR_AMOUNT_OVERFLOW;

    /* Unsigned negation then conversion: exact for every magnitude up to 2^63 (INT64_MIN). */
    *out = parts.negative ? (int64_t)(0u - magnitude_minor) : (int64_t)magnitude_minor;
    return CF_OK;
}

int money_format(int64_t amount_minor, int scale, char *buf, size_t buf_bytes)
{
    CF_ASSERT(scale >= 0 && scale <= MONEY_SCALE_MAX);
    CF_ASSERT(buf != NULL || buf_bytes == 0);
    /* Built right to left in a scratch buffer, then copied, so a short buf is never touched. */
    char scratch[FORMAT_BYTES_MAX];
    size_t pos = sizeof(scratch);
    scratch[--pos] = '\0';

    bool negative = amount_minor < 0;
    uint64_t magnitude = negative ? 0u - (uint64_t)amount_minor : (uint64_t)amount_minor;
    for (int i = 0; i < scale; i++) {
        scratch[--pos] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    }
    if (scale > 0)
        scratch[--pos] = '.';
    do {
        scratch[--pos] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude != 0);
    if (negative)
        scratch[--pos] = '-';

    size_t text_len = sizeof(scratch) - 1 - pos;
    CF_ASSERT(text_len > 0 && text_len < FORMAT_BYTES_MAX);
    if (text_len + 1 > buf_bytes)
        return -1;
    memcpy(buf, scratch + pos, text_len + 1);
    return (int)text_len;
}
