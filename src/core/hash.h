/*
 * hash.h - SHA-256 and constant-time comparison, through libsodium.
 *
 * The journal's hash chain and token hashes use SHA-256 so that an outsider can check them
 * with any standard tool. hash_equal compares in constant time; use it for every secret.
 */
#ifndef COFFER_CORE_HASH_H
#define COFFER_CORE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HASH_BYTES 32
#define HASH_HEX_BYTES (HASH_BYTES * 2 + 1)

/* Must be called once before any other function here (it initialises libsodium). */
int hash_init(void);

void hash_sha256(const void *data, size_t len, uint8_t out[HASH_BYTES]);

/* Incremental form for hashing several pieces. */
struct hash_state {
    _Alignas(64) unsigned char opaque[128];
};
void hash_sha256_begin(struct hash_state *st);
void hash_sha256_update(struct hash_state *st, const void *data, size_t len);
void hash_sha256_end(struct hash_state *st, uint8_t out[HASH_BYTES]);

bool hash_equal(const uint8_t *a, const uint8_t *b, size_t len);

void hash_hex(const uint8_t *bytes, size_t len, char *out); /* out: 2*len+1 bytes */

/* Overwrites a secret so the compiler cannot skip it. */
void hash_wipe(void *buf, size_t len);

/* SipHash-2-4 of data under a 16-byte key (libsodium's crypto_shorthash), as a little-endian
 * 64-bit number: a keyed hash for placing attacker-chosen strings in tables (velocity keys,
 * caches) without letting them pick collisions. Not a MAC for anything stored. */
#define HASH_SIPHASH_KEY_BYTES 16
uint64_t hash_siphash24(const uint8_t key[HASH_SIPHASH_KEY_BYTES], const void *data, size_t len);

/* Fills buf with len cryptographically random bytes. */
void hash_random(void *buf, size_t len);

#endif
