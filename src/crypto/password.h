/*
 * password.h - password policy and storage: argon2id through libsodium.
 *
 * Policy (password_check): valid UTF-8, normalized to Unicode NFKC (libunistring) so that the
 * same passphrase typed on two keyboards is the same password; 12 to 128 characters (code
 * points) after normalization; no control characters; refused when cracklib (Debian's
 * cracklib-runtime dictionary) calls it weak or dictionary-based (the text, and the text without
 * the ASCII digits, punctuation and spaces at its ends, since cracklib alone misses a word with
 * four or more added: "password12345"), or when it is one character repeated or contains the
 * user's own login.
 *
 * Storage (password_hash / password_verify): libsodium's crypto_pwhash_str with argon2id13 at
 * PASSWORD_OPSLIMIT iterations and PASSWORD_MEMLIMIT_BYTES memory (OWASP's minimum: 19 MiB,
 * t=2, p=1), over the normalized text. The stored string carries its own parameters, so the
 * cost can rise later; password_needs_rehash tells when a stored hash was made with another
 * algorithm or other parameters than the current ones (libsodium's rule: higher counts too).
 *
 * password_verify_dummy spends the same time as a real verification, for sign-ins of unknown
 * logins (responses must not reveal whether an account exists).
 */
#ifndef COFFER_CRYPTO_PASSWORD_H
#define COFFER_CRYPTO_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#include "core/assert.h"
#include "core/error.h"

#define PASSWORD_CHARS_MIN 12
#define PASSWORD_CHARS_MAX 128
/* 128 code points of at most 4 bytes each, and NFKC may expand: bound the input bytes. */
#define PASSWORD_BYTES_MAX 1024
#define PASSWORD_OPSLIMIT 2ULL
#define PASSWORD_MEMLIMIT_BYTES (19ULL * 1024 * 1024)
/* crypto_pwhash_STRBYTES is 128. */
#define PASSWORD_HASH_BYTES 128

/* Why a password was refused, for the 400 answer's detail. */
enum password_verdict {
    PASSWORD_OK = 0,
    PASSWORD_INVALID_UTF8,
    PASSWORD_TOO_SHORT,
    PASSWORD_TOO_LONG,
    PASSWORD_CONTROL_CHARS,
    PASSWORD_WEAK, /* cracklib: dictionary word, too simple, ... */
    PASSWORD_CONTAINS_LOGIN,
};
const char *password_verdict_text(enum password_verdict v);

/* Normalizes pw (len bytes) to NFKC into out (NUL-terminated, *out_len bytes). Returns
 * PASSWORD_OK or why the text cannot be a password (UTF-8, length, control characters); out and
 * *out_len are untouched unless PASSWORD_OK. An out of PASSWORD_BYTES_MAX bytes holds every
 * acceptable password; a result that does not fit a smaller out is PASSWORD_TOO_LONG. */
enum password_verdict password_normalize(const char *pw, size_t len, char *out, size_t out_bytes,
                                         size_t *out_len);

/* The whole policy, on the normalized text; login (may be NULL) is the user's phone or email. */
enum password_verdict password_check(const char *normalized, const char *login);

/* Hashes the normalized password into out (NUL-terminated string of < PASSWORD_HASH_BYTES). */
CF_WARN_UNUSED enum cf_err password_hash(const char *normalized, char out[PASSWORD_HASH_BYTES]);
/* true when normalized matches the stored hash. */
bool password_verify(const char *stored, const char *normalized);
void password_verify_dummy(const char *normalized);
bool password_needs_rehash(const char *stored);

#endif
