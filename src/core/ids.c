/* ids.c - Crockford base32 codes for ids and cursors; see ids.h. */
#include "core/ids.h"

#include <string.h>

static const char ids_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void code_write(uint64_t value, char *out)
{
    for (int i = ID_CODE_CHARS - 1; i >= 0; i--) {
        out[i] = ids_alphabet[value & 31];
        value >>= 5;
    }
    out[ID_CODE_CHARS] = '\0';
}

static int code_digit(char c)
{
    const char *p = strchr(ids_alphabet, c);
    return (c != '\0' && p != NULL) ? (int)(p - ids_alphabet) : -1;
}

static enum cf_err code_read(const char *text, size_t len, uint64_t *out)
{
    if (len != ID_CODE_CHARS)
        return CF_ERR_INVALID_ID;
    /* 13 digits carry 65 bits: the first digit may only hold the top 4 bits of 64. */
    uint64_t value = 0;
    for (size_t i = 0; i < len; i++) {
        int d = code_digit(text[i]);
        if (d < 0 || (i == 0 && d > 15))
            return CF_ERR_INVALID_ID;
        value = (value << 5) | (uint64_t)d;
    }
    *out = value;
    return CF_OK;
}

void id_format(const char *prefix, uint64_t value, char buf[ID_TEXT_BYTES_MAX])
{
    size_t plen = strlen(prefix);
    CF_ASSERT(value > 0);
    CF_ASSERT(plen + ID_CODE_CHARS < ID_TEXT_BYTES_MAX);
    memcpy(buf, prefix, plen);
    code_write(value, buf + plen);
}

enum cf_err id_parse(const char *prefix, const char *text, size_t len, uint64_t *out)
{
    size_t plen = strlen(prefix);
    if (len <= plen || memcmp(text, prefix, plen) != 0)
        return CF_ERR_INVALID_ID;
    uint64_t value;
    if (code_read(text + plen, len - plen, &value) != CF_OK || value == 0)
        return CF_ERR_INVALID_ID;
    *out = value;
    return CF_OK;
}

void cursor_format(uint64_t position, char buf[ID_TEXT_BYTES_MAX]) { code_write(position, buf); }

enum cf_err cursor_parse(const char *text, size_t len, uint64_t *out)
{
    uint64_t value;
    if (code_read(text, len, &value) != CF_OK)
        return CF_ERR_INVALID_CURSOR;
    *out = value;
    return CF_OK;
}
