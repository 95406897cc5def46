/*
 * test_chain.c - unit tests for src/ledger/chain.c: the journal hash is deterministic, equals an
 * independent encoding of the layout documented in chain.c, changes when any covered field
 * changes (seq, type, ids, amount, currency, code, metadata, idem key, pending_seq, group_seq,
 * expires_at, created_at, the previous hash) and does not change with the mutable state
 * (status, resolved_amount, resolution_seq) or the derived history links.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <string.h>

#include "core/hash.h"
#include "ledger/ledger.h"

static const char base_metadata[] = "{\"order\":\"A-17\"}";
static const char base_key[] = "item-key-1";

static void base_entry(struct ledger_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->seq = 42;
    e->type = LEDGER_ENTRY_PENDING;
    e->debit_id = 7;
    e->credit_id = 9;
    e->amount = 12345;
    strcpy(e->currency, "USD");
    strcpy(e->code, "p2p");
    e->metadata = base_metadata;
    e->metadata_len = strlen(base_metadata);
    e->idem_key = base_key;
    e->idem_key_len = strlen(base_key);
    e->pending_seq = 3;
    e->group_seq = 41;
    e->expires_at_us = 1700000060000000LL;
    e->created_at_us = 1700000000000000LL;
    e->status = LEDGER_STATUS_PENDING;
}

static void base_prev(uint8_t prev[HASH_BYTES])
{
    for (int i = 0; i < HASH_BYTES; i++)
        prev[i] = (uint8_t)(i * 7 + 1);
}

static void hash_of(const uint8_t prev[HASH_BYTES], const struct ledger_entry *e,
                    uint8_t out[HASH_BYTES])
{
    ledger_entry_hash(prev, e, out);
}

/* Independent encoder of the layout in chain.c's header comment. */
struct enc {
    uint8_t buf[4096];
    size_t len;
};

static void put(struct enc *x, const void *p, size_t n)
{
    assert_true(x->len + n <= sizeof(x->buf));
    memcpy(x->buf + x->len, p, n);
    x->len += n;
}

static void put_be(struct enc *x, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        uint8_t b = (uint8_t)(v >> (8 * i));
        put(x, &b, 1);
    }
}

static void reference_hash(const uint8_t prev[HASH_BYTES], const struct ledger_entry *e,
                           uint8_t out[HASH_BYTES])
{
    struct enc x = {.len = 0};
    put(&x, "coffer.journal.v1", 18); /* includes the NUL */
    put(&x, prev, HASH_BYTES);
    put_be(&x, e->seq, 8);
    put_be(&x, e->type, 1);
    put_be(&x, e->debit_id, 8);
    put_be(&x, e->credit_id, 8);
    put_be(&x, (uint64_t)e->amount, 8);
    put_be(&x, strlen(e->currency), 1);
    put(&x, e->currency, strlen(e->currency));
    put_be(&x, strlen(e->code), 1);
    put(&x, e->code, strlen(e->code));
    put_be(&x, e->metadata_len, 4);
    if (e->metadata_len > 0)
        put(&x, e->metadata, e->metadata_len);
    put_be(&x, e->idem_key_len, 1);
    if (e->idem_key_len > 0)
        put(&x, e->idem_key, e->idem_key_len);
    put_be(&x, e->pending_seq, 8);
    put_be(&x, e->group_seq, 8);
    put_be(&x, (uint64_t)e->expires_at_us, 8);
    put_be(&x, (uint64_t)e->created_at_us, 8);
    hash_sha256(x.buf, x.len, out);
}

/* The hash of the base entry after mutate() must differ from the base hash. */
static void assert_covered(void (*mutate)(struct ledger_entry *e))
{
    struct ledger_entry e;
    uint8_t prev[HASH_BYTES], h0[HASH_BYTES], h1[HASH_BYTES], ref[HASH_BYTES];
    base_prev(prev);
    base_entry(&e);
    hash_of(prev, &e, h0);
    mutate(&e);
    hash_of(prev, &e, h1);
    assert_memory_not_equal(h0, h1, HASH_BYTES);
    reference_hash(prev, &e, ref);
    assert_memory_equal(h1, ref, HASH_BYTES);
}

/* The hash after mutate() must be the same as the base hash. */
static void assert_not_covered(void (*mutate)(struct ledger_entry *e))
{
    struct ledger_entry e;
    uint8_t prev[HASH_BYTES], h0[HASH_BYTES], h1[HASH_BYTES];
    base_prev(prev);
    base_entry(&e);
    hash_of(prev, &e, h0);
    mutate(&e);
    hash_of(prev, &e, h1);
    assert_memory_equal(h0, h1, HASH_BYTES);
}

static void m_seq(struct ledger_entry *e) { e->seq++; }
static void m_type(struct ledger_entry *e) { e->type = LEDGER_ENTRY_TRANSFER; }
static void m_debit(struct ledger_entry *e) { e->debit_id = 8; }
static void m_credit(struct ledger_entry *e) { e->credit_id = 10; }
static void m_swap_ids(struct ledger_entry *e)
{
    uint64_t t = e->debit_id;
    e->debit_id = e->credit_id;
    e->credit_id = t;
}
static void m_amount(struct ledger_entry *e) { e->amount = 12346; }
static void m_currency(struct ledger_entry *e) { strcpy(e->currency, "EUR"); }
static void m_code(struct ledger_entry *e) { strcpy(e->code, "p2q"); }
static void m_code_len(struct ledger_entry *e) { strcpy(e->code, "p2p2"); }
static void m_metadata_byte(struct ledger_entry *e) { e->metadata = "{\"order\":\"A-18\"}"; }
static void m_metadata_len(struct ledger_entry *e) { e->metadata_len--; }
static void m_metadata_none(struct ledger_entry *e)
{
    e->metadata = NULL;
    e->metadata_len = 0;
}
static void m_key_byte(struct ledger_entry *e) { e->idem_key = "item-key-2"; }
static void m_key_none(struct ledger_entry *e)
{
    e->idem_key = NULL;
    e->idem_key_len = 0;
}
static void m_pending_seq(struct ledger_entry *e) { e->pending_seq = 4; }
static void m_group_seq(struct ledger_entry *e) { e->group_seq = 42; }
static void m_expires(struct ledger_entry *e) { e->expires_at_us++; }
static void m_created(struct ledger_entry *e) { e->created_at_us++; }
/* Moving a byte between code and metadata must not collide (length prefixes). */
static void m_boundary(struct ledger_entry *e)
{
    strcpy(e->code, "p2");
    e->metadata = "p{\"order\":\"A-17\"}";
    e->metadata_len = strlen(e->metadata);
}

static void m_status(struct ledger_entry *e) { e->status = LEDGER_STATUS_POSTED; }
static void m_resolved(struct ledger_entry *e) { e->resolved_amount = 100; }
static void m_resolution(struct ledger_entry *e) { e->resolution_seq = 99; }
static void m_links(struct ledger_entry *e)
{
    e->debit_prev_seq = 11;
    e->credit_prev_seq = 12;
}
static void m_hash_field(struct ledger_entry *e) { memset(e->hash, 0xEE, HASH_BYTES); }
static void m_metadata_copy(struct ledger_entry *e)
{
    static char copy[sizeof(base_metadata)];
    memcpy(copy, base_metadata, sizeof(copy));
    e->metadata = copy; /* same bytes, other address */
}

static void test_covered_fields(void **state)
{
    (void)state;
    void (*const covered[])(struct ledger_entry *) = {
        m_seq,          m_type,          m_debit,    m_credit,   m_swap_ids,
        m_amount,       m_currency,      m_code,     m_code_len, m_metadata_byte,
        m_metadata_len, m_metadata_none, m_key_byte, m_key_none, m_pending_seq,
        m_group_seq,    m_expires,       m_created,  m_boundary};
    for (size_t i = 0; i < sizeof(covered) / sizeof(covered[0]); i++)
        assert_covered(covered[i]);
}

static void test_uncovered_fields(void **state)
{
    (void)state;
    void (*const uncovered[])(struct ledger_entry *) = {m_status, m_resolved,   m_resolution,
                                                        m_links,  m_hash_field, m_metadata_copy};
    for (size_t i = 0; i < sizeof(uncovered) / sizeof(uncovered[0]); i++)
        assert_not_covered(uncovered[i]);
}

static void test_prev_hash_covered(void **state)
{
    (void)state;
    struct ledger_entry e;
    uint8_t prev[HASH_BYTES], h0[HASH_BYTES], h1[HASH_BYTES];
    base_entry(&e);
    base_prev(prev);
    hash_of(prev, &e, h0);
    for (int i = 0; i < HASH_BYTES; i += 7) {
        prev[i] ^= 0x01;
        hash_of(prev, &e, h1);
        assert_memory_not_equal(h0, h1, HASH_BYTES);
        prev[i] ^= 0x01;
    }
    hash_of(prev, &e, h1);
    assert_memory_equal(h0, h1, HASH_BYTES);
}

static void test_deterministic_and_matches_layout(void **state)
{
    (void)state;
    struct ledger_entry a, b;
    uint8_t prev[HASH_BYTES], ha[HASH_BYTES], hb[HASH_BYTES], ref[HASH_BYTES];
    base_prev(prev);
    base_entry(&a);
    base_entry(&b);
    hash_of(prev, &a, ha);
    hash_of(prev, &b, hb);
    assert_memory_equal(ha, hb, HASH_BYTES);
    hash_of(prev, &a, hb);
    assert_memory_equal(ha, hb, HASH_BYTES);
    reference_hash(prev, &a, ref);
    assert_memory_equal(ha, ref, HASH_BYTES);
}

static void test_first_entry_zero_prev_and_chain(void **state)
{
    (void)state;
    uint8_t zero[HASH_BYTES] = {0}, h1[HASH_BYTES], h2[HASH_BYTES], ref[HASH_BYTES];
    struct ledger_entry e1, e2;
    base_entry(&e1);
    e1.seq = 1;
    e1.metadata = NULL;
    e1.metadata_len = 0;
    e1.idem_key = NULL;
    e1.idem_key_len = 0;
    hash_of(zero, &e1, h1);
    reference_hash(zero, &e1, ref);
    assert_memory_equal(h1, ref, HASH_BYTES);
    base_entry(&e2);
    e2.seq = 2;
    hash_of(h1, &e2, h2);
    reference_hash(h1, &e2, ref);
    assert_memory_equal(h2, ref, HASH_BYTES);
    assert_memory_not_equal(h1, h2, HASH_BYTES);
}

static void test_limits_accepted(void **state)
{
    (void)state;
    static char meta[LEDGER_METADATA_BYTES_MAX];
    static char key[IDEM_KEY_BYTES_MAX];
    memset(meta, 'm', sizeof(meta));
    memset(key, 'k', sizeof(key));
    struct ledger_entry e;
    base_entry(&e);
    e.metadata = meta;
    e.metadata_len = sizeof(meta);
    e.idem_key = key;
    e.idem_key_len = sizeof(key);
    memset(e.code, 'c', LEDGER_CODE_BYTES_MAX);
    e.code[LEDGER_CODE_BYTES_MAX] = '\0';
    strcpy(e.currency, "ABCDEFGHIJKL");
    e.seq = UINT64_MAX;
    e.amount = INT64_MAX;
    uint8_t prev[HASH_BYTES], h[HASH_BYTES], ref[HASH_BYTES];
    base_prev(prev);
    hash_of(prev, &e, h);
    reference_hash(prev, &e, ref);
    assert_memory_equal(h, ref, HASH_BYTES);
}

static int group_setup(void **state)
{
    (void)state;
    return hash_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_covered_fields),
        cmocka_unit_test(test_uncovered_fields),
        cmocka_unit_test(test_prev_hash_covered),
        cmocka_unit_test(test_deterministic_and_matches_layout),
        cmocka_unit_test(test_first_entry_zero_prev_and_chain),
        cmocka_unit_test(test_limits_accepted),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
