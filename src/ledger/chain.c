/*
 * chain.c - the journal's hash chain.
 *
 * hash(entry) = SHA-256(domain || prev_hash || canonical(entry)), where domain is the 18 bytes
 * "coffer.journal.v1\0" and canonical(entry) is, in order, big-endian:
 *   u64 seq, u8 type, u64 debit_id, u64 credit_id, i64 amount,
 *   u8 len + currency, u8 len + code, u32 len + metadata, u8 len + idem_key,
 *   u64 pending_seq, u64 group_seq, i64 expires_at_us, i64 created_at_us.
 * The first entry's prev_hash is 32 zero bytes. The mutable status fields are not covered:
 * they are derived from later entries, which are.
 */
#include <string.h>

#include "ledger/ledger.h"

#define CHAIN_DOMAIN "coffer.journal.v1"
#define CHAIN_BUF_BYTES                                                                            \
    (sizeof(CHAIN_DOMAIN) + HASH_BYTES + 8 + 1 + 8 + 8 + 8 + 1 + MONEY_CODE_BYTES_MAX + 1 +        \
     LEDGER_CODE_BYTES_MAX + 4 + LEDGER_METADATA_BYTES_MAX + 1 + IDEM_KEY_BYTES_MAX + 8 * 4)

struct enc {
    uint8_t buf[CHAIN_BUF_BYTES];
    size_t len;
};

static void enc_bytes(struct enc *e, const void *p, size_t n)
{
    CF_ASSERT(e->len + n <= sizeof(e->buf));
    if (n > 0)
        memcpy(e->buf + e->len, p, n);
    e->len += n;
}

static void enc_u64(struct enc *e, uint64_t v)
{
    uint8_t b[8];
    for (int i = 7; i >= 0; i--) {
        b[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
    enc_bytes(e, b, 8);
}

static void enc_short(struct enc *e, const char *s, size_t n)
{
    CF_ASSERT(n <= 255);
    uint8_t l = (uint8_t)n;
    enc_bytes(e, &l, 1);
    enc_bytes(e, s, n);
}

void ledger_entry_hash(const uint8_t prev[HASH_BYTES], const struct ledger_entry *x,
                       uint8_t out[HASH_BYTES])
{
    CF_ASSERT(x->seq > 0 && x->amount > 0);
    CF_ASSERT(x->metadata_len <= LEDGER_METADATA_BYTES_MAX &&
              x->idem_key_len <= IDEM_KEY_BYTES_MAX);
    struct enc e = {.len = 0};
    enc_bytes(&e, CHAIN_DOMAIN, sizeof(CHAIN_DOMAIN));
    enc_bytes(&e, prev, HASH_BYTES);
    enc_u64(&e, x->seq);
    enc_bytes(&e, &x->type, 1);
    enc_u64(&e, x->debit_id);
    enc_u64(&e, x->credit_id);
    enc_u64(&e, (uint64_t)x->amount);
    enc_short(&e, x->currency, strlen(x->currency));
    enc_short(&e, x->code, strlen(x->code));
    uint32_t mlen = (uint32_t)x->metadata_len;
    uint8_t mb[4] = {(uint8_t)(mlen >> 24), (uint8_t)(mlen >> 16), (uint8_t)(mlen >> 8),
                     (uint8_t)mlen};
    enc_bytes(&e, mb, 4);
    enc_bytes(&e, x->metadata, x->metadata_len);
    enc_short(&e, x->idem_key, x->idem_key_len);
    enc_u64(&e, x->pending_seq);
    enc_u64(&e, x->group_seq);
    enc_u64(&e, (uint64_t)x->expires_at_us);
    enc_u64(&e, (uint64_t)x->created_at_us);
    hash_sha256(e.buf, e.len, out);
}
