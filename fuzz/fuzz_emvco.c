/*
 * fuzz_emvco.c - libFuzzer target for the EMVCo merchant-presented QR codec (emvco_mpm_parse /
 * emvco_mpm_build).
 *
 * Input: the payload as scanned. It is parsed twice: as given, and with its last 4 bytes
 * replaced by the right CRC (so mutations get past the checksum and reach the field checks).
 * Whatever the bytes, parse answers CF_OK or CF_ERR_INVALID_QR with a reason, without reading
 * past len. When a Coffer code parses, build must succeed, its output must parse back to the
 * very same struct, and building that again gives the very same bytes (build emits its own
 * canonical order, so build(parse(x)) need not equal x). When the code is not Coffer's, build
 * must refuse it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "payments/emvco.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool mpm_equal(const struct emvco_mpm *a, const struct emvco_mpm *b)
{
    return a->dynamic == b->dynamic && strcmp(a->mcc, b->mcc) == 0 &&
           strcmp(a->currency_numeric, b->currency_numeric) == 0 &&
           strcmp(a->country, b->country) == 0 && strcmp(a->merchant_name, b->merchant_name) == 0 &&
           strcmp(a->merchant_city, b->merchant_city) == 0 && strcmp(a->gui, b->gui) == 0 &&
           strcmp(a->merchant_id, b->merchant_id) == 0 && strcmp(a->code_id, b->code_id) == 0 &&
           a->expires_at_s == b->expires_at_s && a->amount_minor == b->amount_minor &&
           a->amount_scale == b->amount_scale && strcmp(a->reference, b->reference) == 0;
}

/* The invariants of a parsed code, and what build must do with it. */
static void check_parsed(const struct emvco_mpm *m)
{
    CF_ASSERT(strlen(m->mcc) == 4 && strlen(m->currency_numeric) == 3 && strlen(m->country) == 2);
    CF_ASSERT(m->dynamic == (m->amount_minor > 0));
    CF_ASSERT(m->expires_at_s >= 0 && m->expires_at_s <= EMVCO_EXPIRES_AT_S_MAX);
    enum cf_err expiry = emvco_expiry_check(m, 0);
    CF_ASSERT(expiry == CF_OK || expiry == CF_ERR_QR_EXPIRED);

    char first[EMVCO_PAYLOAD_BUF_BYTES];
    size_t first_len = 0;
    const char *detail = NULL;
    enum cf_err err = emvco_mpm_build(m, first, sizeof(first), &first_len, &detail);
    if (m->merchant_id[0] == '\0') {
        CF_ASSERT(err == CF_ERR_INVALID_FIELD && detail != NULL);
        return;
    }
    CF_ASSERT(err == CF_OK);
    CF_ASSERT(first_len <= EMVCO_PAYLOAD_BYTES_MAX && strlen(first) == first_len);

    struct emvco_mpm again;
    CF_ASSERT(emvco_mpm_parse(first, first_len, m->gui, -1, &again, NULL) == CF_OK);
    CF_ASSERT(mpm_equal(&again, m));

    char second[EMVCO_PAYLOAD_BUF_BYTES];
    size_t second_len = 0;
    CF_ASSERT(emvco_mpm_build(&again, second, sizeof(second), &second_len, NULL) == CF_OK);
    CF_ASSERT(second_len == first_len && memcmp(first, second, first_len) == 0);
}

static void parse_one(const char *text, size_t len)
{
    struct emvco_mpm m;
    memset(&m, 0x5A, sizeof(m));
    struct emvco_mpm before = m;
    const char *detail = NULL;
    enum cf_err err = emvco_mpm_parse(text, len, NULL, -1, &m, &detail);
    if (err != CF_OK) {
        CF_ASSERT(err == CF_ERR_INVALID_QR && detail != NULL && detail[0] != '\0');
        CF_ASSERT(memcmp(&m, &before, sizeof(m)) == 0);
        return;
    }
    check_parsed(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so a read past size is caught by ASan rather than hitting data[]. */
    char *text = size > 0 ? malloc(size) : NULL;
    if (size > 0 && text == NULL)
        return 0;
    if (size > 0)
        memcpy(text, data, size);
    parse_one(text, size);

    if (size >= 8) {
        static const char hex[] = "0123456789ABCDEF";
        uint16_t crc = emvco_crc16_compute((const uint8_t *)text, size - 4);
        for (int i = 0; i < 4; i++)
            text[size - 4 + (size_t)i] = hex[(crc >> (12 - 4 * i)) & 0xF];
        parse_one(text, size);
    }
    free(text);
    return 0;
}
