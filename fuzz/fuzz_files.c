/*
 * fuzz_files.c - libFuzzer target for the two operator files Coffer reads: a gateway's
 * settlement file (payments/reconcile.h, recon_file_parse) and an exchange-rates table
 * (money/fx.h, fx_rates_parse).
 *
 * Input: the first byte picks the parser (even: settlement file, odd: rates table); the rest is
 * the file. Whatever the bytes, each parser must answer CF_OK or its documented refusal without
 * reading past the end; what it accepts must hold its invariants: settlement rows have a known
 * type and status, an amount >= 0 and a currency code's shape (whether Coffer knows it is
 * the comparison's business: currency_differs); rates are positive, between two different
 * known currencies, and every pair appears once.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/assert.h"
#include "money/currency.h"
#include "money/fx.h"
#include "payments/reconcile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void settlement_check(const char *text, size_t len)
{
    struct arena *arena = arena_create(64 * 1024 * 1024);
    CF_ASSERT(arena != NULL);
    struct recon_row *rows = NULL;
    size_t n = 0;
    struct recon_error e;
    memset(&e, 0, sizeof(e));
    enum cf_err err = recon_file_parse(text, len, arena, &rows, &n, &e);
    CF_ASSERT(err == CF_OK || err == CF_ERR_INVALID_FIELD || err == CF_ERR_UNKNOWN_CURRENCY ||
              err == CF_ERR_INVALID_AMOUNT || err == CF_ERR_PAYLOAD_TOO_LARGE ||
              err == CF_ERR_NOMEM);
    if (err != CF_OK)
        CF_ASSERT(e.field != NULL && strlen(e.message) < sizeof(e.message));
    for (size_t i = 0; err == CF_OK && i < n; i++) {
        CF_ASSERT(rows[i].amount_minor >= 0); /* 0 allowed: a zero-amount settlement line */
        size_t cur = strlen(rows[i].currency); /* a code's shape: the comparison judges it */
        CF_ASSERT(cur >= 1 && cur <= MONEY_CODE_BYTES_MAX &&
                  strspn(rows[i].currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == cur);
        CF_ASSERT(rows[i].type == RECON_TYPE_CHARGE || rows[i].type == RECON_TYPE_PAYOUT);
        CF_ASSERT(rows[i].state == RECON_STATE_SETTLED || rows[i].state == RECON_STATE_FAILED);
        CF_ASSERT(rows[i].line >= 2);
    }
    arena_destroy(arena);
}

static void rates_check(const char *text, size_t len)
{
    static struct fx_rate rates[FX_RATES_MAX];
    size_t n = 0, bad_line = 0;
    enum cf_err err = fx_rates_parse(text, len, rates, FX_RATES_MAX, &n, &bad_line);
    CF_ASSERT(err == CF_OK || err == CF_ERR_INVALID_FIELD || err == CF_ERR_UNKNOWN_CURRENCY);
    if (err != CF_OK) {
        CF_ASSERT(bad_line >= 1);
        return;
    }
    CF_ASSERT(n <= FX_RATES_MAX);
    for (size_t i = 0; i < n; i++) {
        CF_ASSERT(rates[i].rate_e9 > 0);
        CF_ASSERT(strcmp(rates[i].base, rates[i].quote) != 0);
        CF_ASSERT(currency_find(rates[i].base, strlen(rates[i].base)) != NULL);
        for (size_t j = 0; j < i; j++)
            CF_ASSERT(strcmp(rates[i].base, rates[j].base) != 0 ||
                      strcmp(rates[i].quote, rates[j].quote) != 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *text = malloc(size - 1 + 1); /* an exact copy: reading past it is caught by ASan */
    CF_ASSERT(text != NULL);
    memcpy(text, data + 1, size - 1);
    if (data[0] % 2 == 0)
        settlement_check(text, size - 1);
    else
        rates_check(text, size - 1);
    free(text);
    return 0;
}
