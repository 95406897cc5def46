/*
 * fuzz_amount.c - libFuzzer target for the amount text form (money_parse / money_format).
 *
 * Input: the first byte mod (MONEY_SCALE_MAX + 1) is the scale; the rest is the text. Whatever
 * the text, money_parse must return a known answer without reading past len. When it parses,
 * money_format must give text that parses back, at the same scale, to the very same amount, and
 * formatting is a fixed point (format(parse(format(x))) == format(x)).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "money/money.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks that amount_minor survives format -> parse at scale; aborts when it does not. */
static void check_round_trip(int64_t amount_minor, int scale)
{
    char text[32];
    int text_len = money_format(amount_minor, scale, text, sizeof(text));
    CF_ASSERT(text_len > 0 && (size_t)text_len < sizeof(text));
    CF_ASSERT(strlen(text) == (size_t)text_len);

    int64_t reparsed = 0;
    CF_ASSERT(money_parse(text, (size_t)text_len, scale, &reparsed) == CF_OK);
    CF_ASSERT(reparsed == amount_minor);

    char again[32];
    int again_len = money_format(reparsed, scale, again, sizeof(again));
    CF_ASSERT(again_len == text_len && memcmp(again, text, (size_t)text_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int scale = data[0] % (MONEY_SCALE_MAX + 1);
    size_t text_len = size - 1;
    /* A private copy, so a read past text_len is caught by ASan rather than hitting data[]. */
    char *text = text_len > 0 ? malloc(text_len) : NULL;
    if (text_len > 0 && text == NULL)
        return 0;
    if (text_len > 0)
        memcpy(text, data + 1, text_len);

    int64_t amount_minor = 0;
    enum cf_err err = money_parse(text, text_len, scale, &amount_minor);
    CF_ASSERT(err == CF_OK || err == CF_ERR_INVALID_AMOUNT || err == CF_ERR_AMOUNT_OVERFLOW);
    if (err == CF_OK)
        check_round_trip(amount_minor, scale);
    free(text);
    return 0;
}
