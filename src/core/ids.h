/*
 * ids.h - public identifiers: a prefix and an opaque 13-character code ("acct_0000000000001").
 *
 * Inside Coffer an account or transfer is a positive uint64_t. Outside it is a string with a
 * type prefix (acct_, tr_) and the number in Crockford base32, upper case, zero padded to 13
 * characters. Clients must treat ids as opaque; decoding is strict (right prefix, exactly 13
 * characters of the alphabet, value > 0) so a malformed id is rejected, never guessed at.
 */
#ifndef COFFER_CORE_IDS_H
#define COFFER_CORE_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

#define ID_PREFIX_ACCOUNT "acct_"
#define ID_PREFIX_TRANSFER "tr_"
#define ID_CODE_CHARS 13
#define ID_TEXT_BYTES_MAX 24 /* prefix (<= 8) + 13 + NUL, rounded up */

/* Writes prefix + code + NUL into buf (ID_TEXT_BYTES_MAX bytes). value must be > 0. */
void id_format(const char *prefix, uint64_t value, char buf[ID_TEXT_BYTES_MAX]);

/* Parses text of length len; CF_ERR_INVALID_ID unless it is prefix + a valid code of a value > 0.
 */
CF_WARN_UNUSED enum cf_err id_parse(const char *prefix, const char *text, size_t len,
                                    uint64_t *out);

/* Cursors for keyset pagination: an opaque code of a position (the same alphabet, no prefix). */
void cursor_format(uint64_t position, char buf[ID_TEXT_BYTES_MAX]);
CF_WARN_UNUSED enum cf_err cursor_parse(const char *text, size_t len, uint64_t *out);

#endif
