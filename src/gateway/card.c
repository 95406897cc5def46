/* card.c - card numbers, brands, expiry, security codes and IBANs; see card.h. */
#include "gateway/card.h"

#include <string.h>

#include "core/hash.h"

/* The first unix second of year 10000: card_expiry_check's bound on now_s. */
#define UNIX_S_YEAR_10000 253402300800LL

/* Card numbers --------------------------------------------------------------------------------- */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool digits_only(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
    }
    return true;
}

bool card_luhn_is_valid(const char *digits, size_t n)
{
    CF_ASSERT(digits != NULL && n >= 1 && digits_only(digits, n));
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(digits[n - 1 - i] - '0');
        if (i % 2 == 1)
            d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    CF_ASSERT(sum <= 9 * n);
    return sum % 10 == 0;
}

enum cf_err card_pan_normalize(const char *text, size_t len, char pan_out[CARD_PAN_BYTES])
{
    CF_ASSERT(text != NULL && pan_out != NULL);
    if (len > CARD_PAN_TEXT_BYTES_MAX)
        return CF_ERR_INVALID_CARD;
    char digits[CARD_PAN_BYTES];
    size_t n = 0;
    enum cf_err err = CF_OK;
    for (size_t i = 0; i < len && err == CF_OK; i++) {
        if (text[i] == ' ' || text[i] == '-')
            continue;
        if (!is_digit(text[i]) || n == CARD_PAN_DIGITS_MAX)
            err = CF_ERR_INVALID_CARD;
        else
            digits[n++] = text[i];
    }
    if (err == CF_OK && (n < CARD_PAN_DIGITS_MIN || !card_luhn_is_valid(digits, n)))
        err = CF_ERR_INVALID_CARD;
    if (err == CF_OK) {
        memcpy(pan_out, digits, n);
        pan_out[n] = '\0';
        CF_ASSERT(strlen(pan_out) == n && n <= CARD_PAN_DIGITS_MAX);
    }
    hash_wipe(digits, sizeof(digits));
    return err;
}

/* The length of a normalized PAN; asserts it is one. */
static size_t pan_length(const char *pan)
{
    CF_ASSERT(pan != NULL);
    size_t n = strnlen(pan, CARD_PAN_BYTES);
    CF_ASSERT(n >= CARD_PAN_DIGITS_MIN && n <= CARD_PAN_DIGITS_MAX && digits_only(pan, n));
    return n;
}

/* The number made of the first `digits` digits of pan. */
static long pan_prefix(const char *pan, size_t digits)
{
    long v = 0;
    for (size_t i = 0; i < digits; i++)
        v = v * 10 + (pan[i] - '0');
    return v;
}

static bool in_range(long v, long lo, long hi) { return v >= lo && v <= hi; }

enum card_brand card_brand_detect(const char *pan)
{
    size_t n = pan_length(pan);
    long p2 = pan_prefix(pan, 2), p3 = pan_prefix(pan, 3);
    long p4 = pan_prefix(pan, 4), p6 = pan_prefix(pan, 6);
    if (p2 == 34 || p2 == 37)
        return n == 15 ? CARD_BRAND_AMEX : CARD_BRAND_UNKNOWN;
    if (pan[0] == '4')
        return CARD_BRAND_VISA;
    if (in_range(p2, 51, 55) || in_range(p4, 2221, 2720))
        return CARD_BRAND_MASTERCARD;
    if (p4 == 6011 || in_range(p6, 622126, 622925) || in_range(p3, 644, 649) || p2 == 65)
        return CARD_BRAND_DISCOVER;
    if (in_range(p4, 3528, 3589))
        return CARD_BRAND_JCB;
    if (p2 == 62)
        return CARD_BRAND_UNIONPAY;
    CF_ASSERT(p6 >= 0 && p6 <= 999999 && n >= CARD_PAN_DIGITS_MIN);
    return CARD_BRAND_UNKNOWN;
}

const char *card_brand_name(enum card_brand brand)
{
    switch (brand) {
    case CARD_BRAND_VISA:
        return "visa";
    case CARD_BRAND_MASTERCARD:
        return "mastercard";
    case CARD_BRAND_AMEX:
        return "amex";
    case CARD_BRAND_DISCOVER:
        return "discover";
    case CARD_BRAND_JCB:
        return "jcb";
    case CARD_BRAND_UNIONPAY:
        return "unionpay";
    case CARD_BRAND_UNKNOWN:
        break;
    }
    return "unknown";
}

void card_pan_last4(const char *pan, char out[5])
{
    size_t n = pan_length(pan);
    CF_ASSERT(out != NULL);
    memcpy(out, pan + n - 4, 4);
    out[4] = '\0';
}

/* Expiry and security code --------------------------------------------------------------------- */

/* The UTC year and month (1..12) of a unix time: days to civil date (H. Hinnant's algorithm),
 * integers only. */
static void year_month_from_unix(int64_t t_s, int64_t *year, int64_t *month)
{
    CF_ASSERT(t_s >= 0 && t_s < UNIX_S_YEAR_10000);
    int64_t z = t_s / 86400 + 719468; /* days since 0000-03-01 */
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] from March */
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = yoe + era * 400 + (*month <= 2 ? 1 : 0);
    CF_ASSERT(*month >= 1 && *month <= 12 && *year >= 1970 && *year <= CARD_EXPIRY_YEAR_MAX);
}

enum cf_err card_expiry_check(int64_t month, int64_t year, int64_t now_s)
{
    CF_ASSERT(now_s >= 0 && now_s < UNIX_S_YEAR_10000);
    if (month < 1 || month > 12 || year < CARD_EXPIRY_YEAR_MIN || year > CARD_EXPIRY_YEAR_MAX)
        return CF_ERR_INVALID_CARD;
    int64_t now_year = 0, now_month = 0;
    year_month_from_unix(now_s, &now_year, &now_month);
    CF_ASSERT(now_month >= 1 && now_month <= 12);
    if (year * 12 + month < now_year * 12 + now_month)
        return CF_ERR_INVALID_CARD;
    return CF_OK;
}

enum cf_err card_cvc_check(const char *cvc, enum card_brand brand)
{
    CF_ASSERT(cvc != NULL);
    size_t want = brand == CARD_BRAND_AMEX ? 4 : 3;
    size_t n = strnlen(cvc, want + 1);
    if (n != want || !digits_only(cvc, n))
        return CF_ERR_INVALID_CARD;
    return CF_OK;
}

/* IBAN ----------------------------------------------------------------------------------------- */

struct iban_country {
    char code[3];
    unsigned char length;
};

/* Lengths from the SWIFT IBAN registry, for the countries Coffer's operators are likeliest to
 * meet; any other country is held to ISO 13616's 15..34. Sorted by code. */
static const struct iban_country iban_countries[] = {
    {"AD", 24}, {"AT", 20}, {"BE", 16}, {"BG", 22}, {"CH", 21}, {"CY", 28}, {"CZ", 24},
    {"DE", 22}, {"DK", 18}, {"EE", 20}, {"ES", 24}, {"FI", 18}, {"FR", 27}, {"GB", 22},
    {"GR", 27}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IS", 26}, {"IT", 27}, {"LI", 21},
    {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MT", 31}, {"NL", 18}, {"NO", 15},
    {"PL", 28}, {"PT", 25}, {"RO", 24}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27},
};

/* The registry length of the country s[0..2), or 0 when it is not in the table. */
static size_t iban_country_length(const char *s)
{
    for (size_t i = 0; i < sizeof(iban_countries) / sizeof(iban_countries[0]); i++) {
        if (memcmp(iban_countries[i].code, s, 2) == 0)
            return iban_countries[i].length;
    }
    return 0;
}

static bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }

/* ISO 7064 mod 97-10 of the IBAN with its first four characters moved to the end and every
 * letter read as two digits (A = 10 .. Z = 35); s is A-Z 0-9 only. */
static unsigned iban_mod97(const char *s, size_t n)
{
    CF_ASSERT(n >= CARD_IBAN_CHARS_MIN && n <= CARD_IBAN_CHARS_MAX);
    unsigned r = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[(i + 4) % n];
        if (is_digit(c))
            r = (r * 10 + (unsigned)(c - '0')) % 97;
        else
            r = (r * 100 + (unsigned)(c - 'A' + 10)) % 97;
    }
    CF_ASSERT(r < 97);
    return r;
}

/* The checks of card_iban_normalize on normalized text (A-Z 0-9 only). */
static bool iban_is_valid(const char *s, size_t n)
{
    CF_ASSERT(s != NULL && n <= CARD_IBAN_CHARS_MAX);
    if (n < CARD_IBAN_CHARS_MIN)
        return false;
    if (!is_upper(s[0]) || !is_upper(s[1]) || !is_digit(s[2]) || !is_digit(s[3]))
        return false;
    int check = (s[2] - '0') * 10 + (s[3] - '0');
    if (check < 2 || check > 98) /* mod 97-10 makes 02..98; 00, 01 and 99 alias 97, 98, 02 */
        return false;
    size_t want = iban_country_length(s);
    CF_ASSERT(want == 0 || (want >= CARD_IBAN_CHARS_MIN && want <= CARD_IBAN_CHARS_MAX));
    if (want != 0 && want != n)
        return false;
    return iban_mod97(s, n) == 1;
}

enum cf_err card_iban_normalize(const char *text, size_t len, char iban_out[CARD_IBAN_BYTES])
{
    CF_ASSERT(text != NULL && iban_out != NULL);
    if (len > CARD_IBAN_TEXT_BYTES_MAX)
        return CF_ERR_INVALID_BANK_ACCOUNT;
    char s[CARD_IBAN_BYTES];
    size_t n = 0;
    bool ok = true;
    for (size_t i = 0; i < len && ok; i++) {
        char c = text[i];
        if (c == ' ')
            continue;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        ok = (is_upper(c) || is_digit(c)) && n < CARD_IBAN_CHARS_MAX;
        if (ok)
            s[n++] = c;
    }
    ok = ok && iban_is_valid(s, n);
    if (ok) {
        memcpy(iban_out, s, n);
        iban_out[n] = '\0';
        CF_ASSERT(strlen(iban_out) == n && n >= CARD_IBAN_CHARS_MIN);
    }
    hash_wipe(s, sizeof(s));
    return ok ? CF_OK : CF_ERR_INVALID_BANK_ACCOUNT;
}
