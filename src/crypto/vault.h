/*
 * vault.h - encryption of personal data at rest, and blind indexes for looking it up.
 *
 * Keys:
 *   - master keys (KEKs): 32 bytes each with a small integer id (1, 2, ...). They come from a
 *     key file or the COFFER_MASTER_KEYS environment variable, never from the database. The
 *     format of both is one key per line, "ID:BASE64" (decimal id 1..2^31, standard padded
 *     base64 of 32 bytes); '#' starts a comment line, blank lines, CRLF and spaces or tabs
 *     around a line are allowed. The highest id is the active key: new data is sealed with it.
 *   - data keys (DEKs): 32 random bytes per person (or per record owner), stored only wrapped
 *     (sealed) by a master key. Erasing a person's wrapped DEK makes all their personal data
 *     unreadable (crypto-shredding) without touching other rows.
 *   - the index key: derived from a master key (crypto_kdf, context "cfblind_"), used for
 *     blind indexes, so an equality look-up ("who has this phone number?") never needs the
 *     plaintext in the database.
 *
 * Sealed format (vault_seal): "v1" tag byte 0x01 | key id (4 bytes, big endian) |
 * XChaCha20-Poly1305 nonce (24 random bytes) | ciphertext + 16-byte tag. The AEAD's associated
 * data is the header (version, key id, nonce) followed by the caller's aad, so the key id cannot
 * be changed; the aad binds a sealed value to its place (for example "user:usr_123:email", at
 * most 1024 bytes, asserted), so a value moved to another row or column fails to open.
 *
 * libsodium does the cryptography; keys live in sodium_malloc'ed memory (guarded, locked,
 * read-only once loaded, wiped on free). A loaded vault is never changed: any thread may use
 * it until vault_free. Nothing here logs; no error path hands out key material, and a failed
 * call leaves its outputs untouched (a failed open may zero out instead).
 */
#ifndef COFFER_CRYPTO_VAULT_H
#define COFFER_CRYPTO_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

#define VAULT_KEY_BYTES 32
#define VAULT_KEYS_MAX 32
#define VAULT_NONCE_BYTES 24
#define VAULT_TAG_BYTES 16
#define VAULT_HEADER_BYTES (1 + 4 + VAULT_NONCE_BYTES)
#define VAULT_OVERHEAD_BYTES (VAULT_HEADER_BYTES + VAULT_TAG_BYTES)
/* Plaintext sealed at once: personal data fields and small documents. */
#define VAULT_PLAINTEXT_BYTES_MAX (1024 * 1024)
#define VAULT_BLIND_BYTES 32
#define VAULT_KEYFILE_BYTES_MAX 8192

struct vault;

/* Loads master keys from text in the "ID:BASE64" line format above; the caller frees *out with
 * vault_free. CF_ERR_CONFIG when the text is malformed, has an id out of 1..2^31 or a duplicate
 * id, a key of the wrong length, no key at all, more than VAULT_KEYS_MAX keys, or is longer
 * than VAULT_KEYFILE_BYTES_MAX; CF_ERR_NOMEM when guarded memory cannot be had. */
CF_WARN_UNUSED enum cf_err vault_load(const char *text, size_t len, struct vault **out);
/* Reads the key file and loads it as vault_load. CF_ERR_CONFIG when it cannot be opened, is
 * not a regular file, its mode allows group or others any access (mode & 077), or it is larger
 * than VAULT_KEYFILE_BYTES_MAX; CF_ERR_IO when reading fails. */
CF_WARN_UNUSED enum cf_err vault_load_file(const char *path, struct vault **out);
void vault_free(struct vault *v);

/* A new key file text with one fresh random key of id 1 (for `coffer init`), or, given an
 * existing vault, the same keys plus a new one with the next id (for `coffer keys rotate`),
 * in ascending id order after a comment header. out (out_bytes at least
 * VAULT_KEYFILE_BYTES_MAX, asserted) gets a NUL-terminated text of at most that many bytes.
 * CF_ERR_CONFIG, out untouched, when the vault already holds VAULT_KEYS_MAX keys or its active
 * id is 2^31. */
CF_WARN_UNUSED enum cf_err vault_keyfile_new(const struct vault *existing, char *out,
                                             size_t out_bytes);

uint32_t vault_active_id(const struct vault *v);
bool vault_has_key(const struct vault *v, uint32_t id);

/* Seals pt (n bytes) with the given 32-byte key (a DEK) and key id tag, binding aad.
 * out must hold n + VAULT_OVERHEAD_BYTES (asserted). CF_ERR_PAYLOAD_TOO_LARGE when n is above
 * VAULT_PLAINTEXT_BYTES_MAX. */
CF_WARN_UNUSED enum cf_err vault_seal_with(const uint8_t key[VAULT_KEY_BYTES], uint32_t key_id,
                                           const void *pt, size_t n, const void *aad,
                                           size_t aad_len, uint8_t *out, size_t out_bytes,
                                           size_t *out_len);
/* Opens what vault_seal_with sealed. CF_ERR_CORRUPT when the tag fails, the format is wrong,
 * the aad differs, or the plaintext (n - VAULT_OVERHEAD_BYTES) would not fit out_bytes; on a
 * failed tag out is zeroed. */
CF_WARN_UNUSED enum cf_err vault_open_with(const uint8_t key[VAULT_KEY_BYTES], const uint8_t *ct,
                                           size_t n, const void *aad, size_t aad_len, uint8_t *out,
                                           size_t out_bytes, size_t *out_len);
/* The key id a sealed value names (0 when too short or of another format). */
uint32_t vault_sealed_key_id(const uint8_t *ct, size_t n);

/* Seals / opens with the master key: the active one for sealing, the one named in the value
 * for opening (CF_ERR_CORRUPT when that key is not loaded). Used to wrap DEKs. */
CF_WARN_UNUSED enum cf_err vault_seal(const struct vault *v, const void *pt, size_t n,
                                      const void *aad, size_t aad_len, uint8_t *out,
                                      size_t out_bytes, size_t *out_len);
CF_WARN_UNUSED enum cf_err vault_open(const struct vault *v, const uint8_t *ct, size_t n,
                                      const void *aad, size_t aad_len, uint8_t *out,
                                      size_t out_bytes, size_t *out_len);

/* A fresh random DEK. */
void vault_dek_new(uint8_t dek[VAULT_KEY_BYTES]);

/* The blind index of a normalized value (HMAC-SHA-256 under the index key of the given master
 * key id, over the domain, a 0x00 byte, then the value, so a phone and an email never collide).
 * The index key is crypto_kdf subkey 1 of context "cfblind_" of master key index_key_id:
 * callers keep one id for all indexes and recompute them on rotation. domain is a non-empty
 * constant. CF_ERR_CONFIG, out untouched, when that master key is not loaded. */
CF_WARN_UNUSED enum cf_err vault_blind(const struct vault *v, uint32_t index_key_id,
                                       const char *domain, const void *value, size_t n,
                                       uint8_t out[VAULT_BLIND_BYTES]);

#endif
