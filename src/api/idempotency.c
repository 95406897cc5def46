/*
 * idempotency.c - the Idempotency-Key header: validation, request hashing, and the set of keys
 * in flight in this process (the 409 rule). Stored responses live in the store and are written
 * by the ledger writer in the same transaction as the change they answer.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/ids.h"
#include "core/limits.h"

#define INFLIGHT_SLOTS (IDEM_INFLIGHT_MAX * 2)

struct inflight_slot {
    uint8_t digest[HASH_BYTES];
    bool used;
};

struct api_inflight {
    pthread_mutex_t mu;
    size_t n;
    struct inflight_slot slots[INFLIGHT_SLOTS];
};

enum cf_err api_inflight_create(struct api_inflight **out)
{
    struct api_inflight *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CF_ERR_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return CF_OK;
}

void api_inflight_destroy(struct api_inflight *s)
{
    if (s == NULL)
        return;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static bool key_valid(const char *k, size_t len)
{
    if (len == 0 || len > IDEM_KEY_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (k[i] < 0x21 || k[i] > 0x7e)
            return false;
    }
    return true;
}

enum cf_err api_idem_prepare(struct http_request *req, struct writer_cmd *cmd, bool required)
{
    const char *k = req->idempotency_key;
    if (k == NULL)
        return required ? CF_ERR_IDEM_KEY_MISSING : CF_OK;
    size_t len = strlen(k);
    if (!key_valid(k, len))
        return CF_ERR_IDEM_KEY_INVALID;
    /* Keys are scoped by principal: one caller's key never meets another's stored answer. */
    char ns_buf[ID_TEXT_BYTES_MAX + 4];
    snprintf(ns_buf, sizeof(ns_buf), "%s:", api_actor(req));
    size_t ns = strlen(ns_buf);
    CF_ASSERT(ns + IDEM_KEY_BYTES_MAX <= IDEM_STORED_KEY_BYTES_MAX);
    char *full = arena_alloc(req->arena, ns + len + 1);
    if (full == NULL)
        return CF_ERR_NOMEM;
    memcpy(full, ns_buf, ns);
    memcpy(full + ns, k, len + 1);
    cmd->idem_key = full;
    cmd->idem_key_len = ns + len;
    struct hash_state st;
    hash_sha256_begin(&st);
    const char *method = http_method_name(req->method);
    hash_sha256_update(&st, method, strlen(method) + 1);
    hash_sha256_update(&st, req->path, strlen(req->path) + 1);
    hash_sha256_update(&st, req->body, req->body_len);
    hash_sha256_end(&st, cmd->request_hash);
    return CF_OK;
}

static size_t slot_start(const uint8_t digest[HASH_BYTES])
{
    uint64_t h;
    memcpy(&h, digest, sizeof(h));
    return (size_t)(h % INFLIGHT_SLOTS);
}

enum cf_err api_inflight_acquire(struct api *api, const struct writer_cmd *cmd)
{
    struct api_inflight *s = api->inflight;
    uint8_t d[HASH_BYTES];
    hash_sha256(cmd->idem_key, cmd->idem_key_len, d);
    enum cf_err err = CF_OK;
    pthread_mutex_lock(&s->mu);
    size_t i = slot_start(d), free_slot = INFLIGHT_SLOTS;
    for (size_t probes = 0; probes < INFLIGHT_SLOTS; probes++, i = (i + 1) % INFLIGHT_SLOTS) {
        if (!s->slots[i].used) {
            free_slot = i;
            break;
        }
        if (memcmp(s->slots[i].digest, d, HASH_BYTES) == 0) {
            err = CF_ERR_IDEM_KEY_IN_FLIGHT;
            break;
        }
    }
    if (err == CF_OK && (free_slot == INFLIGHT_SLOTS || s->n >= IDEM_INFLIGHT_MAX))
        err = CF_ERR_OVERLOADED;
    if (err == CF_OK) {
        memcpy(s->slots[free_slot].digest, d, HASH_BYTES);
        s->slots[free_slot].used = true;
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
    return err;
}

/* Removes slot i and shifts later members of its probe run back (no tombstones). */
static void slot_remove(struct api_inflight *s, size_t i)
{
    s->slots[i].used = false;
    for (size_t j = (i + 1) % INFLIGHT_SLOTS; s->slots[j].used; j = (j + 1) % INFLIGHT_SLOTS) {
        size_t home = slot_start(s->slots[j].digest);
        bool between = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (between) {
            s->slots[i] = s->slots[j];
            s->slots[j].used = false;
            i = j;
        }
    }
}

void api_inflight_release(struct api *api, const struct writer_cmd *cmd)
{
    struct api_inflight *s = api->inflight;
    uint8_t d[HASH_BYTES];
    hash_sha256(cmd->idem_key, cmd->idem_key_len, d);
    pthread_mutex_lock(&s->mu);
    size_t i = slot_start(d);
    for (size_t probes = 0; probes < INFLIGHT_SLOTS && s->slots[i].used;
         probes++, i = (i + 1) % INFLIGHT_SLOTS) {
        if (memcmp(s->slots[i].digest, d, HASH_BYTES) == 0) {
            slot_remove(s, i);
            CF_ASSERT(s->n > 0);
            s->n--;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
}
