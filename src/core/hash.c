/* hash.c - SHA-256, random bytes and constant-time compare over libsodium; see hash.h. */
#include "core/hash.h"

#include <sodium.h>

#include "core/assert.h"

_Static_assert(sizeof(struct hash_state) >= sizeof(crypto_hash_sha256_state),
               "hash_state too small for libsodium's state");

int hash_init(void) { return sodium_init() < 0 ? -1 : 0; }

void hash_sha256(const void *data, size_t len, uint8_t out[HASH_BYTES])
{
    CF_ASSERT(crypto_hash_sha256(out, data, len) == 0);
}

void hash_sha256_begin(struct hash_state *st)
{
    CF_ASSERT(crypto_hash_sha256_init((crypto_hash_sha256_state *)st->opaque) == 0);
}

void hash_sha256_update(struct hash_state *st, const void *data, size_t len)
{
    CF_ASSERT(crypto_hash_sha256_update((crypto_hash_sha256_state *)st->opaque, data, len) == 0);
}

void hash_sha256_end(struct hash_state *st, uint8_t out[HASH_BYTES])
{
    CF_ASSERT(crypto_hash_sha256_final((crypto_hash_sha256_state *)st->opaque, out) == 0);
}

bool hash_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}

void hash_hex(const uint8_t *bytes, size_t len, char *out)
{
    CF_ASSERT(sodium_bin2hex(out, len * 2 + 1, bytes, len) != NULL);
}

void hash_random(void *buf, size_t len) { randombytes_buf(buf, len); }

void hash_wipe(void *buf, size_t len) { sodium_memzero(buf, len); }

_Static_assert(HASH_SIPHASH_KEY_BYTES == crypto_shorthash_siphash24_KEYBYTES, "SipHash key");

uint64_t hash_siphash24(const uint8_t key[HASH_SIPHASH_KEY_BYTES], const void *data, size_t len)
{
    uint8_t out[crypto_shorthash_siphash24_BYTES];
    CF_ASSERT(crypto_shorthash_siphash24(out, data, len, key) == 0);
    uint64_t v = 0;
    for (int i = (int)sizeof(out) - 1; i >= 0; i--)
        v = (v << 8) | out[i];
    return v;
}
