/*
 * fuzz_request.c - libFuzzer target for transfer request decoding (api_decode_leg).
 *
 * Input: any bytes, taken as a request body. They are parsed with jansson as the API does
 * (JSON_REJECT_DUPLICATES); an object is decoded as a single transfer and as a batch item, and
 * each element of its "legs" array (as legs) and "transfers" array (as batch items) is decoded
 * too. Whatever the input, decoding must answer a 4xx error code or a leg that keeps every
 * invariant the ledger relies on: amount > 0, both account ids > 0, a known currency, a code of
 * 1..LEDGER_CODE_BYTES_MAX characters, metadata that is a JSON object of at most
 * LEDGER_METADATA_BYTES_MAX bytes, a timeout only on a pending leg, and an idempotency key on
 * batch items only. A decoded leg must also pass ledger_leg_check (except for naming the same
 * account twice, which the writer refuses later). The strict body reader api_json_object is
 * run over the same bytes and must agree with the plain parse.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/arena.h"
#include "core/assert.h"
#include "core/hash.h"
#include "core/limits.h"
#include "ledger/ledger.h"
#include "money/currency.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Room for the decoded legs of one input: the request arena's share, much smaller than a real
 * batch needs, so running out of arena is exercised too (decoding must then say NOMEM). */
#define FUZZ_ARENA_BYTES_MAX (256u * 1024)

static bool text_in_range(const char *s, size_t len, char lo, char hi)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] < lo || s[i] > hi)
            return false;
    }
    return true;
}

/* Aborts unless leg is a leg the writer may be given. */
static void leg_check_invariants(const struct ledger_leg *leg, bool batch_item)
{
    CF_ASSERT(leg->amount > 0);
    CF_ASSERT(leg->debit_id > 0 && leg->credit_id > 0);
    size_t cur_len = strnlen(leg->currency, sizeof(leg->currency));
    CF_ASSERT(cur_len > 0 && cur_len <= MONEY_CODE_BYTES_MAX);
    CF_ASSERT(currency_find(leg->currency, cur_len) != NULL);
    size_t code_len = strnlen(leg->code, sizeof(leg->code));
    CF_ASSERT(code_len > 0 && code_len <= LEDGER_CODE_BYTES_MAX);
    CF_ASSERT(leg->metadata_len <= LEDGER_METADATA_BYTES_MAX);
    CF_ASSERT((leg->metadata == NULL) == (leg->metadata_len == 0));
    CF_ASSERT(leg->timeout_s >= 0 && leg->timeout_s <= LEDGER_TIMEOUT_S_MAX);
    CF_ASSERT(leg->timeout_s == 0 || leg->pending);
    if (batch_item) {
        CF_ASSERT(leg->idem_key != NULL);
        CF_ASSERT(leg->idem_key_len > 0 && leg->idem_key_len <= IDEM_KEY_BYTES_MAX);
        CF_ASSERT(text_in_range(leg->idem_key, leg->idem_key_len, 0x21, 0x7e));
    } else {
        CF_ASSERT(leg->idem_key == NULL && leg->idem_key_len == 0);
    }
    enum cf_err err = ledger_leg_check(leg);
    CF_ASSERT(err == CF_OK || err == CF_ERR_SAME_ACCOUNT);
    CF_ASSERT(err == CF_OK || leg->debit_id == leg->credit_id);
}

/* Metadata is stored as compact JSON; it must read back as an object. */
static void metadata_check(const struct ledger_leg *leg)
{
    if (leg->metadata == NULL)
        return;
    CF_ASSERT(strlen(leg->metadata) == leg->metadata_len);
    json_error_t e;
    json_t *m = json_loadb(leg->metadata, leg->metadata_len, JSON_REJECT_DUPLICATES, &e);
    CF_ASSERT(m != NULL);
    CF_ASSERT(json_is_object(m));
    json_decref(m);
}

/* Decodes obj once; checks the answer either way. */
static void decode_one(json_t *obj, struct arena *arena, bool batch_item)
{
    struct ledger_leg leg;
    const char *detail = NULL;
    enum cf_err err = api_decode_leg(obj, arena, batch_item, &leg, &detail);
    if (err != CF_OK) {
        /* bad input is a client error; only the arena running out may be anything else */
        CF_ASSERT(cf_err_http_status(err) == 400 || err == CF_ERR_NOMEM);
        CF_ASSERT(detail == NULL || strlen(detail) < 4096);
        return;
    }
    CF_ASSERT(detail == NULL);
    leg_check_invariants(&leg, batch_item);
    metadata_check(&leg);
}

/* Decodes every element of root[key], as the legs and batch handlers do. */
static void decode_array(json_t *root, const char *key, struct arena *arena, bool batch_item)
{
    json_t *items = json_object_get(root, key);
    if (!json_is_array(items))
        return;
    size_t n = json_array_size(items);
    size_t max = batch_item ? LEDGER_BATCH_ITEMS_MAX : LEDGER_LEGS_MAX;
    for (size_t i = 0; i < n && i < max; i++)
        decode_one(json_array_get(items, i), arena, batch_item);
}

/* The strict body reader must accept exactly the objects jansson accepts, up to the depth cap. */
static void body_reader_check(const uint8_t *data, size_t size, const json_t *plain,
                              struct arena *arena)
{
    struct http_request req;
    memset(&req, 0, sizeof(req));
    req.body = (const char *)data;
    req.body_len = size;
    req.arena = arena;
    json_t *strict = NULL;
    const char *detail = NULL;
    enum cf_err err = api_json_object(&req, &strict, &detail);
    if (err == CF_OK) {
        CF_ASSERT(strict != NULL && json_is_object(strict));
        CF_ASSERT(plain != NULL && json_is_object(plain));
        CF_ASSERT(json_equal(strict, plain));
        json_decref(strict);
        return;
    }
    CF_ASSERT(cf_err_http_status(err) == 400);
    if (plain != NULL && json_is_object(plain))
        CF_ASSERT(err == CF_ERR_JSON_TOO_DEEP);
}

static void fuzz_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    CF_ASSERT(hash_init() == 0);
    /* the server's default asset plus one with a scale, so asset codes decode too */
    CF_ASSERT(currency_assets_parse("POINTS:0,MILES:2") == CF_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    /* A private copy, so a read past size is caught by ASan rather than hitting data[]. */
    char *body = size > 0 ? malloc(size) : NULL;
    if (size > 0 && body == NULL)
        return 0;
    if (size > 0)
        memcpy(body, data, size);
    struct arena *arena = arena_create(FUZZ_ARENA_BYTES_MAX);
    CF_ASSERT(arena != NULL);
    json_error_t e;
    json_t *root = json_loadb(body, size, JSON_REJECT_DUPLICATES, &e);
    body_reader_check((const uint8_t *)body, size, root, arena);
    if (root != NULL && json_is_object(root)) {
        decode_one(root, arena, false);
        decode_one(root, arena, true);
        decode_array(root, "legs", arena, false);
        decode_array(root, "transfers", arena, true);
    }
    json_decref(root);
    arena_destroy(arena);
    free(body);
    return 0;
}
