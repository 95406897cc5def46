/*
 * card.h - checks of card numbers and bank account numbers before they reach a gateway.
 *
 * For the card vault and the payments layer: a card number (PAN) as a customer types it is
 * normalized to its digits and checked (length, Luhn), its brand read from its prefix, its
 * expiry and security code checked; a bank account (IBAN) is normalized and checked (ISO 13616
 * mod-97, country length). These are format checks only: a number that passes may still be
 * declined by the gateway.
 *
 * Secrets: a PAN and a security code are secrets. Nothing here logs or keeps them; local
 * copies are wiped. The caller checks the security code with card_cvc_check and never stores
 * it; it stores at most the brand and card_pan_last4.
 *
 * Errors: CF_ERR_INVALID_CARD for a bad card number, expiry or security code,
 * CF_ERR_INVALID_BANK_ACCOUNT for a bad IBAN; outputs untouched on error. Everything here is
 * pure and may be called from any thread.
 */
#ifndef COFFER_GATEWAY_CARD_H
#define COFFER_GATEWAY_CARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

/* ISO/IEC 7812 card numbers have 12..19 digits (8-digit issuer ids, up to 19 in total). */
#define CARD_PAN_DIGITS_MIN 12
#define CARD_PAN_DIGITS_MAX 19
#define CARD_PAN_BYTES (CARD_PAN_DIGITS_MAX + 1)
/* A typed card number: 19 digits with a space or dash between every pair, and room. */
#define CARD_PAN_TEXT_BYTES_MAX 64
/* ISO 13616: an IBAN has 15 (Norway) to 34 characters. */
#define CARD_IBAN_CHARS_MIN 15
#define CARD_IBAN_CHARS_MAX 34
#define CARD_IBAN_BYTES (CARD_IBAN_CHARS_MAX + 1)
/* A typed IBAN: 34 characters in groups of four separated by spaces, and room. */
#define CARD_IBAN_TEXT_BYTES_MAX 64
/* Expiry years are written with four digits. */
#define CARD_EXPIRY_YEAR_MIN 1000
#define CARD_EXPIRY_YEAR_MAX 9999

enum card_brand {
    CARD_BRAND_UNKNOWN = 0,
    CARD_BRAND_VISA,
    CARD_BRAND_MASTERCARD,
    CARD_BRAND_AMEX,
    CARD_BRAND_DISCOVER,
    CARD_BRAND_JCB,
    CARD_BRAND_UNIONPAY
};

/* Normalizes a typed card number (len bytes, need not be NUL-terminated): spaces and dashes are
 * dropped; what remains must be 12..19 digits passing the Luhn check. Writes the digits and a
 * NUL to pan_out. CF_ERR_INVALID_CARD otherwise (any other character, too short, too long,
 * longer than CARD_PAN_TEXT_BYTES_MAX as typed, Luhn failure). */
CF_WARN_UNUSED enum cf_err card_pan_normalize(const char *text, size_t len,
                                              char pan_out[CARD_PAN_BYTES]);

/* True when the n digits (asserted: n >= 1, all '0'..'9') pass the Luhn (mod 10) check. */
bool card_luhn_is_valid(const char *digits, size_t n);

/* The brand of a normalized PAN (asserted: 12..19 digits), from its prefix: visa 4;
 * mastercard 51-55 and 2221-2720; amex 34 and 37 with 15 digits (unknown at another length);
 * discover 6011, 622126-622925, 644-649, 65; jcb 3528-3589; unionpay 62 (other than
 * discover's range); unknown otherwise. */
enum card_brand card_brand_detect(const char *pan);

/* "visa", "mastercard", "amex", "discover", "jcb", "unionpay" or "unknown". Static storage. */
const char *card_brand_name(enum card_brand brand);

/* Checks an expiry (month 1..12, year with four digits) against now_s (unix seconds, UTC;
 * asserted 0 <= now_s < year 10000): a card is good through the last day of its expiry
 * month. CF_ERR_INVALID_CARD for a month or year out of range or a past month. */
CF_WARN_UNUSED enum cf_err card_expiry_check(int64_t month, int64_t year, int64_t now_s);

/* Checks a security code (NUL-terminated): exactly 4 digits for amex, 3 for every other
 * brand. CF_ERR_INVALID_CARD otherwise. The code is read, never copied. */
CF_WARN_UNUSED enum cf_err card_cvc_check(const char *cvc, enum card_brand brand);

/* The last four digits of a normalized PAN (asserted) and a NUL into out. */
void card_pan_last4(const char *pan, char out[5]);

/* Normalizes a typed IBAN (len bytes, need not be NUL-terminated): spaces are dropped and
 * letters upper-cased; what remains must be 15..34 characters of A-Z 0-9: a two-letter
 * country, two check digits (02..98), the account; the length of the country where known
 * (AD 24, AT 20, BE 16, BG 22, CH 21, CY 28, CZ 24, DE 22, DK 18, EE 20, ES 24, FI 18, FR 27,
 * GB 22, GR 27, HR 21, HU 28, IE 22, IS 26, IT 27, LI 21, LT 20, LU 20, LV 21, MC 27, MT 31,
 * NL 18, NO 15, PL 28, PT 25, RO 24, SE 24, SI 19, SK 24, SM 27); mod-97 of the rearranged
 * number equal to 1. Writes the IBAN and a NUL to iban_out. CF_ERR_INVALID_BANK_ACCOUNT
 * otherwise (also when longer than CARD_IBAN_TEXT_BYTES_MAX as typed). */
CF_WARN_UNUSED enum cf_err card_iban_normalize(const char *text, size_t len,
                                               char iban_out[CARD_IBAN_BYTES]);

#endif
