/*
 * emvco.c - the EMVCo merchant-presented QR codec; see emvco.h.
 *
 * Parsing reads one level (the payload, or one template's value) into a table indexed by id, so
 * a repeated id is caught once and every later check is a look-up. Lengths count characters,
 * so the reader decodes UTF-8 as it goes and records each value's bytes and characters. The
 * checks then run in a fixed order: frame (tag 00 first, tag 63 last, CRC), character sets,
 * mandatory tags, each field, the templates, and last Coffer's own rules. Each check returns
 * false with a static reason.
 *
 * Building checks the whole struct first, then writes objects in ascending id order into a
 * local buffer and appends the CRC, so the caller's buffer is written only on success.
 */
#include "payments/emvco.h"

#include <string.h>

#include "money/currency.h"
#include "money/money.h"

/* Ids and lengths are two decimal digits. */
#define IDS_N 100
#define HEADER_CHARS 4
/* Tag 63's value: the CRC as 4 hex digits. */
#define CRC_CHARS 4
/* money_format never needs more (money.h). */
#define AMOUNT_TEXT_BYTES 32
/* Tag 61 postal code, tag 62 sub-tag 09 consumer data request, tag 57 percentage ("99.99"). */
#define POSTAL_CHARS_MAX 10
#define CONSUMER_REQUEST_CHARS_MAX 3
#define PERCENT_CHARS_MAX 5
/* Decimal digits of EMVCO_EXPIRES_AT_S_MAX. */
#define EXPIRY_DIGITS_MAX 12

/* Top-level ids. */
enum {
    ID_PFI = 0,
    ID_POI = 1,
    ID_ACCOUNT_FIRST = 2,
    ID_TEMPLATE_FIRST = 26,
    ID_ACCOUNT_LAST = 51,
    ID_MCC = 52,
    ID_CURRENCY = 53,
    ID_AMOUNT = 54,
    ID_TIP = 55,
    ID_FEE_FIXED = 56,
    ID_FEE_PERCENT = 57,
    ID_COUNTRY = 58,
    ID_NAME = 59,
    ID_CITY = 60,
    ID_POSTAL = 61,
    ID_ADDITIONAL = 62,
    ID_CRC = 63,
    ID_LANGUAGE = 64,
    ID_UNRESERVED_FIRST = 80,
    ID_UNRESERVED_LAST = 99,
};

/* Sub-tags: of every account template (00), of Coffer's, of tag 62, of tag 64. */
enum { SUB_GUI = 0, SUB_MERCHANT_ID = 1, SUB_CODE_ID = 2, SUB_EXPIRY = 3 };
enum { SUB_DATA_FIRST = 1, SUB_REFERENCE = 5, SUB_DATA_LAST = 8, SUB_CONSUMER_REQUEST = 9 };
enum { SUB_LANGUAGE = 0, SUB_NAME_ALT = 1, SUB_CITY_ALT = 2 };

_Static_assert(EMVCO_TAG_COFFER >= ID_TEMPLATE_FIRST && EMVCO_TAG_COFFER <= ID_ACCOUNT_LAST,
               "Coffer's template must be a merchant account information template");
/* The longest code build can write: 00, 01, a full tag 26, 52, 53, 54, 58, 59, 60, 62 holding
 * 05, and 63. The bound is far below the spec's, so build never has to refuse on length. */
#define BUILD_BYTES_MAX                                                                            \
    (6 + 6 + (HEADER_CHARS + EMVCO_VALUE_CHARS_MAX) + 8 + 7 +                                      \
     (HEADER_CHARS + EMVCO_AMOUNT_CHARS_MAX) + 6 +                                                 \
     (HEADER_CHARS + EMVCO_MERCHANT_NAME_CHARS_MAX) +                                              \
     (HEADER_CHARS + EMVCO_MERCHANT_CITY_CHARS_MAX) +                                              \
     (2 * HEADER_CHARS + EMVCO_REFERENCE_CHARS_MAX) + (HEADER_CHARS + CRC_CHARS))
_Static_assert(BUILD_BYTES_MAX <= EMVCO_PAYLOAD_BYTES_MAX, "build must always fit the payload");

/* One data object as read: its value, and that value's length in bytes and in characters. */
struct tlv {
    const char *value;
    size_t value_bytes;
    size_t value_chars;
};

/* The objects of one level, by id; first_id and last_id are -1 when the level is empty. */
struct tlv_set {
    bool present[IDS_N];
    struct tlv obj[IDS_N];
    int first_id;
    int last_id;
};

/* Characters and values ------------------------------------------------------------------------ */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static bool is_letter(char c) { return is_upper(c) || (c >= 'a' && c <= 'z'); }

static bool all_digits(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit(v[i]))
            return false;
    return true;
}

/* The spec's "ans" set: printable ASCII, 0x20..0x7E. */
static bool is_ans(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7E)
            return false;
    return true;
}

static int hex_value(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool all_hex(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (hex_value(v[i]) < 0)
            return false;
    return true;
}

/*
 * Decodes one UTF-8 character at p (avail > 0 bytes) into *cp_out; returns its byte count, or 0
 * when it is malformed: a stray continuation byte, truncated, overlong, a surrogate or above
 * U+10FFFF.
 */
static size_t utf8_decode(const unsigned char *p, size_t avail, uint32_t *cp_out)
{
    CF_ASSERT(p != NULL && avail > 0);
    size_t n = 0;
    uint32_t cp = 0, cp_min = 0;
    if (p[0] < 0x80) {
        *cp_out = p[0];
        return 1;
    }
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        n = 2;
        cp = p[0] & 0x1Fu;
        cp_min = 0x80;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        cp = p[0] & 0x0Fu;
        cp_min = 0x800;
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        cp = p[0] & 0x07u;
        cp_min = 0x10000;
    } else {
        return 0;
    }
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0u) != 0x80u)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if (cp < cp_min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    CF_ASSERT(n >= 2 && n <= 4);
    *cp_out = cp;
    return n;
}

/* The spec's "S" format: UTF-8 (already validated by the reader) without control characters. */
static bool is_text(const char *v, size_t n)
{
    size_t at = 0;
    while (at < n) {
        uint32_t cp = 0;
        size_t step = utf8_decode((const unsigned char *)v + at, n - at, &cp);
        CF_ASSERT(step > 0);
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return false;
        at += step;
    }
    return true;
}

static bool value_is(const struct tlv *o, const char *text)
{
    size_t n = strlen(text);
    return o->value_bytes == n && memcmp(o->value, text, n) == 0;
}

/* Copies a value that its checks have bounded into a NUL-terminated field. */
static void value_copy(char *dst, size_t dst_bytes, const struct tlv *o)
{
    CF_ASSERT(o->value_bytes < dst_bytes);
    memcpy(dst, o->value, o->value_bytes);
    dst[o->value_bytes] = '\0';
}

/* Reading data objects ------------------------------------------------------------------------- */

static int two_digits(const char *p)
{
    if (!is_digit(p[0]) || !is_digit(p[1]))
        return -1;
    return (p[0] - '0') * 10 + (p[1] - '0');
}

/* Reads the object at text[*at], where *at < bytes; on success *at moves past it. */
static bool tlv_read(const char *text, size_t bytes, size_t *at, int *id_out, struct tlv *obj,
                     const char **why)
{
    CF_ASSERT(text != NULL && *at < bytes);
    if (bytes - *at < HEADER_CHARS) {
        *why = "object header runs past the end";
        return false;
    }
    const char *header = text + *at;
    int id = two_digits(header);
    int chars = two_digits(header + 2);
    if (id < 0 || chars < 0) {
        *why = id < 0 ? "object id is not two digits" : "object length is not two digits";
        return false;
    }
    if (chars == 0) {
        *why = "object length is 00";
        return false;
    }
    size_t start = *at + HEADER_CHARS, pos = start;
    for (int i = 0; i < chars; i++) {
        uint32_t cp = 0;
        size_t step =
            pos < bytes ? utf8_decode((const unsigned char *)text + pos, bytes - pos, &cp) : 0;
        if (step == 0) {
            *why =
                pos < bytes ? "object value is not valid utf-8" : "object value runs past the end";
            return false;
        }
        pos += step;
    }
    obj->value = text + start;
    obj->value_bytes = pos - start;
    obj->value_chars = (size_t)chars;
    *id_out = id;
    *at = pos;
    CF_ASSERT(obj->value_bytes >= obj->value_chars && *at <= bytes);
    return true;
}

/* Reads a whole level into *set; an id seen twice is refused with dup_why. */
static bool tlv_scan(const char *text, size_t bytes, struct tlv_set *set, const char *dup_why,
                     const char **why)
{
    CF_ASSERT(text != NULL || bytes == 0);
    memset(set, 0, sizeof(*set));
    set->first_id = set->last_id = -1;
    size_t at = 0;
    while (at < bytes) {
        int id = -1;
        struct tlv obj;
        if (!tlv_read(text, bytes, &at, &id, &obj, why))
            return false;
        CF_ASSERT(id >= 0 && id < IDS_N);
        if (set->present[id]) {
            *why = dup_why;
            return false;
        }
        set->present[id] = true;
        set->obj[id] = obj;
        if (set->first_id < 0)
            set->first_id = id;
        set->last_id = id;
    }
    CF_ASSERT(at == bytes);
    return true;
}

/* CRC ------------------------------------------------------------------------------------------ */

uint16_t emvco_crc16_compute(const uint8_t *data, size_t len)
{
    CF_ASSERT(data != NULL || len == 0);
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(data[i] << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* Whether the last CRC_CHARS bytes of text (hex, either case) are the CRC of the rest. */
static bool crc_matches(const char *text, size_t len)
{
    CF_ASSERT(len >= CRC_CHARS);
    unsigned stated = 0;
    for (size_t i = len - CRC_CHARS; i < len; i++) {
        int digit = hex_value(text[i]);
        if (digit < 0)
            return false;
        stated = (stated << 4) | (unsigned)digit;
    }
    return stated == emvco_crc16_compute((const uint8_t *)text, len - CRC_CHARS);
}

/* Parsing: frame, character sets, presence ----------------------------------------------------- */

/* Tag 00 first and "01"; tag 63 last, 4 hex digits, matching. */
static bool check_frame(const char *payload, size_t len, const struct tlv_set *top,
                        const char **why)
{
    CF_ASSERT(top->first_id >= 0 && top->last_id >= 0);
    if (top->first_id != ID_PFI)
        *why = "tag 00 payload format indicator must come first";
    else if (!value_is(&top->obj[ID_PFI], "01"))
        *why = "tag 00 payload format indicator must be 01";
    else if (!top->present[ID_CRC])
        *why = "missing tag 63 crc";
    else if (top->last_id != ID_CRC)
        *why = "tag 63 crc must be the last object";
    else if (top->obj[ID_CRC].value_bytes != CRC_CHARS || top->obj[ID_CRC].value_chars != CRC_CHARS)
        *why = "tag 63 crc must be 4 hex digits";
    else if (!all_hex(payload + len - CRC_CHARS, CRC_CHARS))
        *why = "tag 63 crc must be 4 hex digits";
    else if (!crc_matches(payload, len))
        *why = "crc mismatch";
    else
        return true;
    return false;
}

/* What to say when a top-level value leaves the "ans" set. */
static const char *ans_why(int id)
{
    if (id == ID_NAME)
        return "tag 59 merchant name has a character outside printable ascii";
    if (id == ID_CITY)
        return "tag 60 merchant city has a character outside printable ascii";
    if (id == ID_AMOUNT)
        return "tag 54 amount malformed";
    if (id == ID_ADDITIONAL)
        return "tag 62 additional data has a character outside printable ascii";
    if (id >= ID_ACCOUNT_FIRST && id <= ID_ACCOUNT_LAST)
        return "merchant account information has a character outside printable ascii";
    return "a value has a character outside printable ascii";
}

/* Every top-level value but tag 64's (checked per sub-tag) is "ans". */
static bool check_charset(const struct tlv_set *top, const char **why)
{
    for (int id = 0; id < IDS_N; id++) {
        if (!top->present[id] || id == ID_LANGUAGE)
            continue;
        if (!is_ans(top->obj[id].value, top->obj[id].value_bytes)) {
            *why = ans_why(id);
            return false;
        }
        CF_ASSERT(top->obj[id].value_bytes == top->obj[id].value_chars);
    }
    return true;
}

static bool check_mandatory(const struct tlv_set *top, const char **why)
{
    static const struct {
        int id;
        const char *why;
    } needed[] = {
        {ID_MCC, "missing tag 52 merchant category code"},
        {ID_CURRENCY, "missing tag 53 transaction currency"},
        {ID_COUNTRY, "missing tag 58 country code"},
        {ID_NAME, "missing tag 59 merchant name"},
        {ID_CITY, "missing tag 60 merchant city"},
    };
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        if (!top->present[needed[i].id]) {
            *why = needed[i].why;
            return false;
        }
    }
    for (int id = ID_ACCOUNT_FIRST; id <= ID_ACCOUNT_LAST; id++)
        if (top->present[id])
            return true;
    *why = "missing merchant account information (tags 02 to 51)";
    return false;
}

/* Parsing: fields ------------------------------------------------------------------------------ */

/* Tags 01, 52, 53, 58, 59, 60 and 61 (values already known to be "ans"). */
static bool check_merchant(const struct tlv_set *top, struct emvco_mpm *m, const char **why)
{
    const struct tlv *poi = &top->obj[ID_POI], *mcc = &top->obj[ID_MCC];
    const struct tlv *cur = &top->obj[ID_CURRENCY], *ctry = &top->obj[ID_COUNTRY];
    const struct tlv *name = &top->obj[ID_NAME], *city = &top->obj[ID_CITY];
    if (top->present[ID_POI] && !value_is(poi, "11") && !value_is(poi, "12"))
        *why = "tag 01 point of initiation must be 11 or 12";
    else if (mcc->value_bytes != 4 || !all_digits(mcc->value, 4))
        *why = "tag 52 merchant category code must be 4 digits";
    else if (cur->value_bytes != 3 || !all_digits(cur->value, 3))
        *why = "tag 53 transaction currency must be 3 digits";
    else if (ctry->value_bytes != 2 || !is_upper(ctry->value[0]) || !is_upper(ctry->value[1]))
        *why = "tag 58 country code must be 2 letters A-Z";
    else if (name->value_bytes > EMVCO_MERCHANT_NAME_CHARS_MAX)
        *why = "tag 59 merchant name longer than 25 characters";
    else if (city->value_bytes > EMVCO_MERCHANT_CITY_CHARS_MAX)
        *why = "tag 60 merchant city longer than 15 characters";
    else if (top->present[ID_POSTAL] && top->obj[ID_POSTAL].value_bytes > POSTAL_CHARS_MAX)
        *why = "tag 61 postal code longer than 10 characters";
    else {
        m->dynamic = top->present[ID_POI] && value_is(poi, "12");
        value_copy(m->mcc, sizeof(m->mcc), mcc);
        value_copy(m->currency_numeric, sizeof(m->currency_numeric), cur);
        value_copy(m->country, sizeof(m->country), ctry);
        value_copy(m->merchant_name, sizeof(m->merchant_name), name);
        value_copy(m->merchant_city, sizeof(m->merchant_city), city);
        return true;
    }
    return false;
}

/* The scale of an ISO 4217 numeric code (3 digits) from the currency table; -1 when absent. */
static int scale_of_numeric(const char numeric[3])
{
    CF_ASSERT(all_digits(numeric, 3));
    int code = (numeric[0] - '0') * 100 + (numeric[1] - '0') * 10 + (numeric[2] - '0');
    size_t n = currency_count();
    for (size_t i = 0; i < n; i++) {
        const struct currency *c = currency_at(i);
        if (!c->is_asset && c->numeric == code) {
            CF_ASSERT(c->scale >= 0 && c->scale <= MONEY_SCALE_MAX);
            return c->scale;
        }
    }
    return -1;
}

enum amount_fault { AMOUNT_OK, AMOUNT_MALFORMED, AMOUNT_TOO_PRECISE, AMOUNT_NOT_POSITIVE };

/* Decodes an amount (tags 54, 56): 1..13 characters of digits and at most one '.', in
 * money_parse's grammar, no more fraction digits than scale, above zero. */
static enum amount_fault amount_decode(const char *v, size_t n, int scale, int64_t *out)
{
    CF_ASSERT(scale >= 0 && scale <= MONEY_SCALE_MAX);
    if (n == 0 || n > EMVCO_AMOUNT_CHARS_MAX)
        return AMOUNT_MALFORMED;
    size_t dots = 0, dot_at = n;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '.') {
            dots++;
            dot_at = i;
        } else if (!is_digit(v[i])) {
            return AMOUNT_MALFORMED;
        }
    }
    if (dots > 1)
        return AMOUNT_MALFORMED;
    if (dots == 1 && dot_at > 0 && n - dot_at - 1 > (size_t)scale)
        return AMOUNT_TOO_PRECISE;
    int64_t minor = 0;
    if (money_parse(v, n, scale, &minor) != CF_OK)
        return AMOUNT_MALFORMED;
    if (minor <= 0)
        return AMOUNT_NOT_POSITIVE;
    *out = minor;
    return AMOUNT_OK;
}

/* Tag 54 at the scale given or found; out->amount_scale gets that scale. */
static bool check_amount(const struct tlv_set *top, int scale_given, struct emvco_mpm *m,
                         const char **why)
{
    int scale = scale_given >= 0 ? scale_given : scale_of_numeric(m->currency_numeric);
    m->amount_scale = scale;
    if (!top->present[ID_AMOUNT])
        return true;
    if (scale < 0) {
        *why = "tag 53 currency is unknown, so tag 54 amount cannot be read";
        return false;
    }
    const struct tlv *o = &top->obj[ID_AMOUNT];
    switch (amount_decode(o->value, o->value_bytes, scale, &m->amount_minor)) {
    case AMOUNT_OK:
        CF_ASSERT(m->amount_minor > 0);
        return true;
    case AMOUNT_TOO_PRECISE:
        *why = "tag 54 amount has more decimals than its currency";
        return false;
    case AMOUNT_NOT_POSITIVE:
        *why = "tag 54 amount must be above zero";
        return false;
    case AMOUNT_MALFORMED:
        break;
    }
    *why = "tag 54 amount malformed";
    return false;
}

/* Tag 57, a percentage: 1..2 integer digits, at most 2 fraction digits, above zero. */
static bool percent_is_valid(const struct tlv *o)
{
    const char *v = o->value;
    size_t n = o->value_bytes, int_digits = 0, frac_digits = 0;
    bool dot = false, nonzero = false;
    if (n == 0 || n > PERCENT_CHARS_MAX || v[0] == '.' || v[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '.' && !dot)
            dot = true;
        else if (!is_digit(v[i]))
            return false;
        else {
            nonzero = nonzero || v[i] != '0';
            if (dot)
                frac_digits++;
            else
                int_digits++;
        }
    }
    return nonzero && int_digits <= 2 && frac_digits <= 2;
}

/* Tags 55..57: the indicator is 01, 02 or 03; 56 comes with 02 only, 57 with 03 only. */
static bool check_tip(const struct tlv_set *top, int scale, const char **why)
{
    const struct tlv *tip = &top->obj[ID_TIP];
    bool fixed = top->present[ID_TIP] && value_is(tip, "02");
    bool percent = top->present[ID_TIP] && value_is(tip, "03");
    int64_t fee_minor = 0;
    if (top->present[ID_TIP] && !value_is(tip, "01") && !fixed && !percent)
        *why = "tag 55 tip or convenience indicator must be 01, 02 or 03";
    else if (fixed != top->present[ID_FEE_FIXED])
        *why = fixed ? "tag 55 is 02 but tag 56 convenience fee is missing"
                     : "tag 56 convenience fee needs tag 55 = 02";
    else if (percent != top->present[ID_FEE_PERCENT])
        *why = percent ? "tag 55 is 03 but tag 57 convenience percentage is missing"
                       : "tag 57 convenience percentage needs tag 55 = 03";
    else if (fixed && scale < 0)
        *why = "tag 53 currency is unknown, so tag 56 convenience fee cannot be read";
    else if (fixed &&
             amount_decode(top->obj[ID_FEE_FIXED].value, top->obj[ID_FEE_FIXED].value_bytes, scale,
                           &fee_minor) != AMOUNT_OK)
        *why = "tag 56 convenience fee malformed";
    else if (percent && !percent_is_valid(&top->obj[ID_FEE_PERCENT]))
        *why = "tag 57 convenience percentage malformed";
    else
        return true;
    return false;
}

/* Parsing: templates --------------------------------------------------------------------------- */

/* Tag 26..51 / 03: decimal Unix seconds, 1..12 digits, no leading zero, at most the bound. */
static bool expiry_decode(const struct tlv *o, int64_t *out)
{
    if (o->value_bytes > EXPIRY_DIGITS_MAX || o->value[0] == '0' ||
        !all_digits(o->value, o->value_bytes))
        return false;
    int64_t s = 0;
    for (size_t i = 0; i < o->value_bytes; i++)
        s = s * 10 + (o->value[i] - '0');
    if (s > EMVCO_EXPIRES_AT_S_MAX)
        return false;
    CF_ASSERT(s > 0);
    *out = s;
    return true;
}

/* Coffer's template, found by its GUI: 00, 01 mandatory; 02, 03 optional; nothing else. */
static bool coffer_read(const struct tlv_set *sub, struct emvco_mpm *m, const char **why)
{
    CF_ASSERT(sub->present[SUB_GUI]);
    for (int id = SUB_EXPIRY + 1; id < IDS_N; id++) {
        if (sub->present[id]) {
            *why = "coffer template has an unknown sub-tag";
            return false;
        }
    }
    const struct tlv *mid = &sub->obj[SUB_MERCHANT_ID], *code = &sub->obj[SUB_CODE_ID];
    if (!sub->present[SUB_MERCHANT_ID])
        *why = "coffer template lacks sub-tag 01 merchant id";
    else if (mid->value_bytes > EMVCO_MERCHANT_ID_CHARS_MAX)
        *why = "coffer template merchant id longer than 25 characters";
    else if (sub->present[SUB_CODE_ID] && code->value_bytes > EMVCO_CODE_ID_CHARS_MAX)
        *why = "coffer template code id longer than 25 characters";
    else if (sub->present[SUB_EXPIRY] && !expiry_decode(&sub->obj[SUB_EXPIRY], &m->expires_at_s))
        *why = "coffer template expiry malformed";
    else {
        value_copy(m->gui, sizeof(m->gui), &sub->obj[SUB_GUI]);
        value_copy(m->merchant_id, sizeof(m->merchant_id), mid);
        if (sub->present[SUB_CODE_ID])
            value_copy(m->code_id, sizeof(m->code_id), code);
        return true;
    }
    return false;
}

/* A template that must open with a GUI (26..51, 80..99), read into *sub. */
static bool gui_template_scan(const struct tlv *o, struct tlv_set *sub, const char **why)
{
    if (!tlv_scan(o->value, o->value_bytes, sub, "a template has a sub-tag twice", why))
        return false;
    if (!sub->present[SUB_GUI])
        *why = "a template lacks sub-tag 00 globally unique identifier";
    else if (sub->obj[SUB_GUI].value_bytes > EMVCO_GUI_CHARS_MAX)
        *why = "a template's globally unique identifier is longer than 32 characters";
    else
        return true;
    return false;
}

/* Templates 26..51 (Coffer's among them, at most once) and 80..99. */
static bool check_templates(const struct tlv_set *top, const char *gui, struct emvco_mpm *m,
                            const char **why)
{
    bool coffer_seen = false;
    for (int id = ID_TEMPLATE_FIRST; id < IDS_N; id++) {
        bool account = id <= ID_ACCOUNT_LAST;
        if (!top->present[id] || (!account && id < ID_UNRESERVED_FIRST))
            continue;
        struct tlv_set sub;
        if (!gui_template_scan(&top->obj[id], &sub, why))
            return false;
        if (!account || !value_is(&sub.obj[SUB_GUI], gui))
            continue;
        if (coffer_seen) {
            *why = "coffer template appears twice";
            return false;
        }
        coffer_seen = true;
        if (!coffer_read(&sub, m, why))
            return false;
    }
    CF_ASSERT(coffer_seen == (m->merchant_id[0] != '\0'));
    return true;
}

/* Tag 62: sub-tags 01..08 at most 25 characters (05 is the reference), 09 letters A, M, E. */
static bool check_additional(const struct tlv_set *top, struct emvco_mpm *m, const char **why)
{
    if (!top->present[ID_ADDITIONAL])
        return true;
    struct tlv_set sub;
    const struct tlv *o = &top->obj[ID_ADDITIONAL];
    if (!tlv_scan(o->value, o->value_bytes, &sub, "tag 62 has a sub-tag twice", why))
        return false;
    for (int id = SUB_DATA_FIRST; id <= SUB_DATA_LAST; id++) {
        if (sub.present[id] && sub.obj[id].value_bytes > EMVCO_REFERENCE_CHARS_MAX) {
            *why = id == SUB_REFERENCE ? "tag 62 reference label longer than 25 characters"
                                       : "tag 62 additional data longer than 25 characters";
            return false;
        }
    }
    if (sub.present[SUB_CONSUMER_REQUEST]) {
        const struct tlv *req = &sub.obj[SUB_CONSUMER_REQUEST];
        bool ok = req->value_bytes <= CONSUMER_REQUEST_CHARS_MAX;
        for (size_t i = 0; ok && i < req->value_bytes; i++)
            ok = req->value[i] == 'A' || req->value[i] == 'M' || req->value[i] == 'E';
        if (!ok) {
            *why = "tag 62 consumer data request must be up to 3 of the letters A, M, E";
            return false;
        }
    }
    if (sub.present[SUB_REFERENCE])
        value_copy(m->reference, sizeof(m->reference), &sub.obj[SUB_REFERENCE]);
    return true;
}

/* Tag 64: 00 language (2 letters) and 01 name (<= 25) mandatory, 02 city (<= 15); UTF-8 text. */
static bool check_language(const struct tlv_set *top, const char **why)
{
    if (!top->present[ID_LANGUAGE])
        return true;
    struct tlv_set sub;
    const struct tlv *o = &top->obj[ID_LANGUAGE];
    if (!tlv_scan(o->value, o->value_bytes, &sub, "tag 64 has a sub-tag twice", why))
        return false;
    for (int id = 0; id < IDS_N; id++) {
        if (sub.present[id] && !is_text(sub.obj[id].value, sub.obj[id].value_bytes)) {
            *why = "tag 64 has a control character";
            return false;
        }
    }
    const struct tlv *lang = &sub.obj[SUB_LANGUAGE];
    if (!sub.present[SUB_LANGUAGE] || lang->value_bytes != 2 || !is_letter(lang->value[0]) ||
        !is_letter(lang->value[1]))
        *why = "tag 64 language preference must be 2 letters";
    else if (!sub.present[SUB_NAME_ALT])
        *why = "tag 64 lacks sub-tag 01 alternate merchant name";
    else if (sub.obj[SUB_NAME_ALT].value_chars > EMVCO_MERCHANT_NAME_CHARS_MAX)
        *why = "tag 64 alternate merchant name longer than 25 characters";
    else if (sub.present[SUB_CITY_ALT] &&
             sub.obj[SUB_CITY_ALT].value_chars > EMVCO_MERCHANT_CITY_CHARS_MAX)
        *why = "tag 64 alternate merchant city longer than 15 characters";
    else
        return true;
    return false;
}

/* Coffer's model: static codes carry no amount, dynamic ones do, and Coffer's have a code id. */
static bool check_model(const struct emvco_mpm *m, const char **why)
{
    if (!m->dynamic && m->amount_minor > 0)
        *why = "a static code (tag 01 = 11) must not carry tag 54 amount";
    else if (m->dynamic && m->amount_minor == 0)
        *why = "a dynamic code (tag 01 = 12) lacks tag 54 amount";
    else if (m->dynamic && m->merchant_id[0] != '\0' && m->code_id[0] == '\0')
        *why = "a dynamic coffer code lacks sub-tag 02 code id";
    else
        return true;
    return false;
}

/* The invariants of every struct parse returns. */
static bool mpm_is_coherent(const struct emvco_mpm *m)
{
    return strlen(m->mcc) == 4 && strlen(m->currency_numeric) == 3 && strlen(m->country) == 2 &&
           m->merchant_name[0] != '\0' && m->merchant_city[0] != '\0' &&
           (m->merchant_id[0] != '\0') == (m->gui[0] != '\0') && m->expires_at_s >= 0 &&
           m->expires_at_s <= EMVCO_EXPIRES_AT_S_MAX && m->amount_minor >= 0 &&
           m->dynamic == (m->amount_minor > 0) && m->amount_scale >= -1 &&
           m->amount_scale <= MONEY_SCALE_MAX && (m->amount_minor == 0 || m->amount_scale >= 0);
}

static bool mpm_decode(const char *payload, size_t len, const char *gui, int amount_scale,
                       struct emvco_mpm *m, const char **why)
{
    struct tlv_set top;
    if (len == 0) {
        *why = "payload is empty";
        return false;
    }
    if (len > EMVCO_PAYLOAD_BYTES_MAX) {
        *why = "payload longer than 512 bytes";
        return false;
    }
    if (!tlv_scan(payload, len, &top, "a tag appears twice", why))
        return false;
    return check_frame(payload, len, &top, why) && check_charset(&top, why) &&
           check_mandatory(&top, why) && check_merchant(&top, m, why) &&
           check_amount(&top, amount_scale, m, why) && check_tip(&top, m->amount_scale, why) &&
           check_templates(&top, gui, m, why) && check_additional(&top, m, why) &&
           check_language(&top, why) && check_model(m, why);
}

enum cf_err emvco_mpm_parse(const char *payload, size_t len, const char *gui, int amount_scale,
                            struct emvco_mpm *out, const char **detail_out)
{
    CF_ASSERT(out != NULL && (payload != NULL || len == 0));
    CF_ASSERT(amount_scale >= -1 && amount_scale <= MONEY_SCALE_MAX);
    if (gui == NULL)
        gui = EMVCO_GUI_COFFER;
    CF_ASSERT(gui[0] != '\0' && strlen(gui) <= EMVCO_GUI_CHARS_MAX);

    struct emvco_mpm m;
    memset(&m, 0, sizeof(m));
    const char *why = NULL;
    if (!mpm_decode(payload, len, gui, amount_scale, &m, &why)) {
        CF_ASSERT(why != NULL);
        if (detail_out != NULL)
            *detail_out = why;
        return CF_ERR_INVALID_QR;
    }
    CF_ASSERT(mpm_is_coherent(&m));
    *out = m;
    return CF_OK;
}

/* Building ------------------------------------------------------------------------------------- */

/* A bounded payload being written; overflow is sticky and checked once. */
struct writer {
    char text[EMVCO_PAYLOAD_BUF_BYTES];
    size_t len;
    bool overflow;
};

static void writer_put(struct writer *w, const char *bytes, size_t n)
{
    CF_ASSERT(w->len <= EMVCO_PAYLOAD_BYTES_MAX);
    if (w->overflow || n > EMVCO_PAYLOAD_BYTES_MAX - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->text + w->len, bytes, n);
    w->len += n;
    w->text[w->len] = '\0';
}

/* Writes one object; value is "ans", so its characters are its bytes. */
static void writer_object(struct writer *w, int id, const char *value, size_t chars)
{
    CF_ASSERT(id >= 0 && id < IDS_N);
    CF_ASSERT(chars >= 1 && chars <= EMVCO_VALUE_CHARS_MAX && is_ans(value, chars));
    char header[HEADER_CHARS] = {(char)('0' + id / 10), (char)('0' + id % 10),
                                 (char)('0' + (int)chars / 10), (char)('0' + (int)chars % 10)};
    writer_put(w, header, HEADER_CHARS);
    writer_put(w, value, chars);
}

/* Whether a field is NUL-terminated within its array, min..max "ans" characters long. */
static bool field_ok(const char *field, size_t field_bytes, size_t min, size_t max)
{
    size_t n = strnlen(field, field_bytes);
    return n < field_bytes && n >= min && n <= max && is_ans(field, n);
}
#define FIELD_OK(f, min, max) field_ok((f), sizeof(f), (min), (max))

static bool build_check_fields(const struct emvco_mpm *m, const char **why)
{
    if (!FIELD_OK(m->mcc, 4, 4) || !all_digits(m->mcc, 4))
        *why = "mcc must be 4 digits";
    else if (!FIELD_OK(m->currency_numeric, 3, 3) || !all_digits(m->currency_numeric, 3))
        *why = "currency_numeric must be 3 digits";
    else if (!FIELD_OK(m->country, 2, 2) || !is_upper(m->country[0]) || !is_upper(m->country[1]))
        *why = "country must be 2 letters A-Z";
    else if (!FIELD_OK(m->merchant_name, 1, EMVCO_MERCHANT_NAME_CHARS_MAX))
        *why = "merchant_name must be 1 to 25 printable ascii characters";
    else if (!FIELD_OK(m->merchant_city, 1, EMVCO_MERCHANT_CITY_CHARS_MAX))
        *why = "merchant_city must be 1 to 15 printable ascii characters";
    else if (!FIELD_OK(m->gui, 1, EMVCO_GUI_CHARS_MAX))
        *why = "gui must be 1 to 32 printable ascii characters";
    else if (!FIELD_OK(m->merchant_id, 1, EMVCO_MERCHANT_ID_CHARS_MAX))
        *why = "merchant_id must be 1 to 25 printable ascii characters";
    else if (!FIELD_OK(m->code_id, 0, EMVCO_CODE_ID_CHARS_MAX))
        *why = "code_id must be at most 25 printable ascii characters";
    else if (!FIELD_OK(m->reference, 0, EMVCO_REFERENCE_CHARS_MAX))
        *why = "reference must be at most 25 printable ascii characters";
    else if (m->expires_at_s < 0 || m->expires_at_s > EMVCO_EXPIRES_AT_S_MAX)
        *why = "expires_at_s must be 0 or a time before the year 10000";
    else if (m->amount_minor < 0)
        *why = "amount_minor must not be negative";
    else if (!m->dynamic && m->amount_minor > 0)
        *why = "a static code must not carry an amount";
    else if (m->dynamic && m->amount_minor == 0)
        *why = "a dynamic code needs an amount above zero";
    else if (m->dynamic && m->code_id[0] == '\0')
        *why = "a dynamic code needs a code_id";
    else if (m->amount_scale < -1 || m->amount_scale > MONEY_SCALE_MAX)
        *why = "amount_scale must be -1 or 0 to 4";
    else
        return true;
    return false;
}

/* Tag 54's text: the amount with all its fraction digits, or, when that passes 13 characters,
 * without trailing fraction zeros (EMVCo reads "10.5" and "10" as 10.50 and 10.00). */
static bool build_amount_text(const struct emvco_mpm *m, char text[AMOUNT_TEXT_BYTES],
                              size_t *len_out, const char **why)
{
    CF_ASSERT(m->amount_minor > 0);
    int scale = m->amount_scale >= 0 ? m->amount_scale : scale_of_numeric(m->currency_numeric);
    if (scale < 0) {
        *why = "currency_numeric is not in the currency table; give amount_scale";
        return false;
    }
    int n = money_format(m->amount_minor, scale, text, AMOUNT_TEXT_BYTES);
    CF_ASSERT(n > 0 && n < AMOUNT_TEXT_BYTES);
    size_t len = (size_t)n;
    if (scale > 0 && len > EMVCO_AMOUNT_CHARS_MAX) {
        while (text[len - 1] == '0')
            len--;
        if (text[len - 1] == '.')
            len--;
    }
    if (len > EMVCO_AMOUNT_CHARS_MAX) {
        *why = "amount is longer than tag 54's 13 characters";
        return false;
    }
    text[len] = '\0';
    *len_out = len;
    return true;
}

/* Decimal text of a positive number. */
static size_t decimal_format(int64_t value, char text[EXPIRY_DIGITS_MAX + 1])
{
    CF_ASSERT(value > 0 && value <= EMVCO_EXPIRES_AT_S_MAX);
    char reversed[EXPIRY_DIGITS_MAX];
    size_t n = 0;
    for (; value > 0; value /= 10)
        reversed[n++] = (char)('0' + value % 10);
    for (size_t i = 0; i < n; i++)
        text[i] = reversed[n - 1 - i];
    text[n] = '\0';
    CF_ASSERT(n >= 1 && n <= EXPIRY_DIGITS_MAX);
    return n;
}

/* Coffer's template (tag 26): 00 gui, 01 merchant id, 02 code id, 03 expiry. */
static bool build_coffer_template(const struct emvco_mpm *m, struct writer *t, const char **why)
{
    writer_object(t, SUB_GUI, m->gui, strlen(m->gui));
    writer_object(t, SUB_MERCHANT_ID, m->merchant_id, strlen(m->merchant_id));
    if (m->code_id[0] != '\0')
        writer_object(t, SUB_CODE_ID, m->code_id, strlen(m->code_id));
    if (m->expires_at_s > 0) {
        char expiry[EXPIRY_DIGITS_MAX + 1];
        writer_object(t, SUB_EXPIRY, expiry, decimal_format(m->expires_at_s, expiry));
    }
    if (t->overflow || t->len > EMVCO_VALUE_CHARS_MAX) {
        *why = "gui, merchant_id, code_id and expiry do not fit tag 26's 99 characters";
        return false;
    }
    return true;
}

static bool build_payload(const struct emvco_mpm *m, struct writer *w, const char **why)
{
    char amount[AMOUNT_TEXT_BYTES];
    size_t amount_len = 0;
    struct writer coffer = {.len = 0, .overflow = false};
    if (!build_check_fields(m, why) ||
        (m->amount_minor > 0 && !build_amount_text(m, amount, &amount_len, why)) ||
        !build_coffer_template(m, &coffer, why))
        return false;

    writer_object(w, ID_PFI, "01", 2);
    writer_object(w, ID_POI, m->dynamic ? "12" : "11", 2);
    writer_object(w, EMVCO_TAG_COFFER, coffer.text, coffer.len);
    writer_object(w, ID_MCC, m->mcc, 4);
    writer_object(w, ID_CURRENCY, m->currency_numeric, 3);
    if (amount_len > 0)
        writer_object(w, ID_AMOUNT, amount, amount_len);
    writer_object(w, ID_COUNTRY, m->country, 2);
    writer_object(w, ID_NAME, m->merchant_name, strlen(m->merchant_name));
    writer_object(w, ID_CITY, m->merchant_city, strlen(m->merchant_city));
    if (m->reference[0] != '\0') {
        struct writer data = {.len = 0, .overflow = false};
        writer_object(&data, SUB_REFERENCE, m->reference, strlen(m->reference));
        writer_object(w, ID_ADDITIONAL, data.text, data.len);
    }
    writer_put(w, "6304", HEADER_CHARS);
    static const char hex[] = "0123456789ABCDEF";
    uint16_t crc = emvco_crc16_compute((const uint8_t *)w->text, w->len);
    char crc_text[CRC_CHARS] = {hex[(crc >> 12) & 0xF], hex[(crc >> 8) & 0xF],
                                hex[(crc >> 4) & 0xF], hex[crc & 0xF]};
    writer_put(w, crc_text, CRC_CHARS);
    CF_ASSERT(!w->overflow && w->len <= BUILD_BYTES_MAX);
    return true;
}

enum cf_err emvco_mpm_build(const struct emvco_mpm *m, char *out, size_t out_bytes, size_t *len_out,
                            const char **detail_out)
{
    CF_ASSERT(m != NULL && out != NULL && len_out != NULL);
    CF_ASSERT(out_bytes >= EMVCO_PAYLOAD_BUF_BYTES);
    struct writer w = {.len = 0, .overflow = false};
    const char *why = NULL;
    if (!build_payload(m, &w, &why)) {
        CF_ASSERT(why != NULL);
        if (detail_out != NULL)
            *detail_out = why;
        return CF_ERR_INVALID_FIELD;
    }
    CF_ASSERT(!w.overflow && w.len > CRC_CHARS && w.len <= EMVCO_PAYLOAD_BYTES_MAX);
    CF_ASSERT(crc_matches(w.text, w.len) && strlen(w.text) == w.len);
    memcpy(out, w.text, w.len + 1);
    *len_out = w.len;
    return CF_OK;
}

/* Init and expiry ------------------------------------------------------------------------------ */

void emvco_mpm_init(struct emvco_mpm *m)
{
    CF_ASSERT(m != NULL);
    memset(m, 0, sizeof(*m));
    memcpy(m->gui, EMVCO_GUI_COFFER, sizeof(EMVCO_GUI_COFFER));
    m->amount_scale = -1;
    CF_ASSERT(strlen(m->gui) <= EMVCO_GUI_CHARS_MAX);
}

enum cf_err emvco_expiry_check(const struct emvco_mpm *m, int64_t now_s)
{
    CF_ASSERT(m != NULL);
    CF_ASSERT(m->expires_at_s >= 0 && m->expires_at_s <= EMVCO_EXPIRES_AT_S_MAX);
    if (m->expires_at_s == 0 || now_s < m->expires_at_s)
        return CF_OK;
    return CF_ERR_QR_EXPIRED;
}
