/*
 * currency.h - the ISO 4217 table and operator-defined assets.
 *
 * A currency is known by its code ("USD", "JPY", "POINTS") and has a scale: how many decimal
 * digits its minor unit has (USD 2, JPY 0, KWD 3, CLF 4). ISO 4217 codes are three upper-case
 * letters; operator assets are 1..12 characters of A-Z, 0-9 and '_' and must not shadow an ISO
 * code. The ISO table is static; assets are registered once at start-up, before any thread reads
 * the table, and never change while the server runs.
 *
 * Errors: CF_ERR_UNKNOWN_CURRENCY for unknown codes, CF_ERR_CONFIG for a bad asset definition.
 */
#ifndef COFFER_MONEY_CURRENCY_H
#define COFFER_MONEY_CURRENCY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/limits.h"

struct currency {
    char code[MONEY_CODE_BYTES_MAX + 1]; /* NUL-terminated */
    int scale;                           /* minor-unit digits, 0..4 */
    int numeric;                         /* ISO numeric code, 0 for operator assets */
    bool is_asset;                       /* operator-defined, not ISO 4217 */
};

/* Finds a currency or asset by code (exact, case-sensitive). NULL when unknown. The pointer is
 * to static or registry storage and stays valid for the life of the process. */
const struct currency *currency_find(const char *code, size_t len);

/* Registers an operator asset. Fails on a malformed code, a scale outside 0..4, a clash with an
 * ISO code (those in the table, and also the ISO codes without minor units such as XAU or XXX),
 * a different scale for an existing asset, or more than MONEY_ASSETS_MAX assets.
 * Registering the same asset twice with the same scale is fine. Not thread-safe: start-up only. */
CF_WARN_UNUSED enum cf_err currency_asset_register(const char *code, int scale);

/* Parses "POINTS:0,MILES:0" and registers each. Empty string registers nothing. Strict: no
 * spaces, no empty items, the scale is one digit. All or nothing: on failure no asset of this
 * spec stays registered (assets registered before the call are kept). */
CF_WARN_UNUSED enum cf_err currency_assets_parse(const char *spec);

/* Number of ISO entries and assets, and the i-th entry (ISO first, then assets), for listings.
 * i must be below currency_count(). */
size_t currency_count(void);
const struct currency *currency_at(size_t i);

/* Forgets every registered asset (tests only). */
void currency_assets_reset(void);

#endif
