/*
 * throttle.h - slowing down password guessing without letting anyone lock a person out.
 *
 * Failures are counted per key; a key is a 32-byte digest (the caller hashes the login's blind
 * index, or the client IP, into it, with a domain so the two never collide). After
 * THROTTLE_FREE_FAILURES failures within THROTTLE_WINDOW_S, each further attempt must wait
 * 2^(failures - free) seconds from the last failure, capped at THROTTLE_DELAY_MAX_S: the
 * exponential delay, which at the cap is the temporary lock. A success clears the key. A key
 * forgets its failures THROTTLE_WINDOW_S after the last one.
 *
 * Per-login keys use the login as typed (existing or not), so throttling tells nothing about
 * whether an account exists. The cap keeps a lock short (an attacker cannot lock a person out
 * for longer than THROTTLE_DELAY_MAX_S at a time), and a password reset by code clears it.
 * Per-IP keys have a larger allowance (THROTTLE_IP_FREE_FAILURES).
 *
 * State is in memory, per server process, bounded to THROTTLE_KEYS_MAX keys (the oldest are
 * evicted first). Thread-safe.
 */
#ifndef COFFER_IDENTITY_THROTTLE_H
#define COFFER_IDENTITY_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"

#define THROTTLE_FREE_FAILURES 5
#define THROTTLE_IP_FREE_FAILURES 50
#define THROTTLE_FREE_FAILURES_MAX 1000 /* the largest allowance a caller may give */
#define THROTTLE_DELAY_MAX_S 900
#define THROTTLE_WINDOW_S 3600
#define THROTTLE_KEYS_MAX 100000

struct throttle;

CF_WARN_UNUSED enum cf_err throttle_create(struct throttle **out);
void throttle_free(struct throttle *t);

/* 0 when an attempt under key may go ahead at now_s; else the seconds to wait. free_failures
 * (1..THROTTLE_FREE_FAILURES_MAX) is the key's allowance: THROTTLE_FREE_FAILURES for a login,
 * THROTTLE_IP_FREE_FAILURES for an address, or a caller's own (code sends). */
int64_t throttle_wait_s(struct throttle *t, const uint8_t key[HASH_BYTES], unsigned free_failures,
                        int64_t now_s);
void throttle_failure(struct throttle *t, const uint8_t key[HASH_BYTES], int64_t now_s);
void throttle_success(struct throttle *t, const uint8_t key[HASH_BYTES]);

#endif
