/*
 * test_lists.c - unit tests for screening at rest (src/risk/lists.c) driven through lists.h,
 * against SQLite (a fresh file per test) and, when COFFER_TEST_PG_URL is set, against
 * PostgreSQL (a fresh database per test, coffer_rl_<pid>_<n>, with a non-bytewise collation when
 * the server has ICU, dropped after). Times are passed in; the vault holds one fresh key.
 *
 * Lists: a load stores the bytes (an SDN pair, a simple CSV) and reads them back exactly; a
 * reload of a name replaces them, says whether the version changed and appends to the history
 * whose last row is the sequence; a 17th name is a conflict while reloading one of the 16 is
 * not; malformed names, kinds, an aliases file on a simple list, authors and keys write
 * nothing. A key answers its load again, also after the name was reloaded; the same key for
 * another request or name is refused.
 *
 * Screenings: the last one replaces the one before, hits best first with their references; a
 * hit blocks once (a second screening finds it blocked), a screening without hits does not lift
 * a block, a clear does and makes the hit's reference cleared (the same hit never blocks again,
 * a new entry does), a refused name blocks as "unscreenable" likewise; a clear for a case lifts
 * only a block that names that case; clearing what is not blocked is not found; the clear's
 * reason is sealed under "risk_lists:<event id>:reason" (no plaintext in the row, and moved to
 * another event it does not open); events read newest first. Malformed screenings write
 * nothing. References: plain ids kept, others hashed, always a valid case evidence id. The
 * subjects page in id order, each once. Races: eight threads screening one new subject with a
 * hit record one block; eight clearing with one key make one clear and answer it to all; eight
 * loads with one key make one load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "risk_fixture.h" /* the throwaway database and the vault */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/ids.h"
#include "crypto/vault.h"
#include "risk/lists.h"
#include "store/sql/sql.h"

#define T0_US 1700000000000000LL
#define RAW_BYTES_MAX 8192
#define RACE_THREADS 8
#define PAGE_SUBJECTS 7
#define PAGE 3

#define STAFF "usr_000000000000R"
#define REASON "same name, other date of birth and nationality: a namesake, not the person"
#define SIMPLE "id,name\nA1,Ivan Petrov\nA2,Maria Lopez\n"
#define SDN "1,\"DOE, John\",\"individual\",\"X\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n"
#define ALT "1,2,\"aka\",\"DOE, Johnny\",-0- \n"

struct fx {
    struct risk_fx b; /* the database and the vault (key 1 only) */
    struct risk_lists *l;
};

/* Fixture -------------------------------------------------------------------------------------- */

_Static_assert(offsetof(struct fx, b) == 0, "risk_fx_setup allocates a struct fx");

static int fx_setup(void **state)
{
    if (risk_fx_setup(state, sizeof(struct fx), "rl", true, true) != 0)
        return -1;
    struct fx *x = *state;
    return risk_lists_open(x->b.db, risk_fx_vault, &x->b, &x->l) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    risk_lists_close(((struct fx *)*state)->l);
    return risk_fx_teardown(state);
}

/* Helpers -------------------------------------------------------------------------------------- */

RISK_FX_IDEM_OF(risk_lists_idem)

static struct risk_list_load simple_load(const char *name, const char *text, uint64_t version)
{
    return (struct risk_list_load){.name = name,
                                   .kind = RISK_LISTS_SIMPLE,
                                   .content = text,
                                   .content_len = strlen(text),
                                   .version = version,
                                   .entries = 2};
}

static void load_ok(struct fx *x, const struct risk_list_load *in, int64_t at_us,
                    struct risk_list *out)
{
    bool replay = true;
    assert_int_equal(risk_lists_put(x->l, in, STAFF, NULL, at_us, out, &replay), CF_OK);
    assert_false(replay);
}

static struct risk_screen_hit hit_of(const char *list, const char *entry, const char *name,
                                     int score)
{
    struct risk_screen_hit h;
    memset(&h, 0, sizeof(h));
    snprintf(h.list, sizeof(h.list), "%s", list);
    snprintf(h.entry_id, sizeof(h.entry_id), "%s", entry);
    snprintf(h.matched_name, sizeof(h.matched_name), "%s", name);
    h.score = score;
    h.name_score = score;
    h.dob = WATCHLIST_UNKNOWN;
    h.country = WATCHLIST_AGREE;
    return h;
}

/* A screening of subject at at_us with hits_n hits and unscreenable refused names. */
static struct risk_screening screening_of(const char *subject, int64_t at_us, size_t hits_n,
                                          uint32_t unscreenable)
{
    struct risk_screening s;
    memset(&s, 0, sizeof(s));
    snprintf(s.subject, sizeof(s.subject), "%s", subject);
    snprintf(s.trigger, sizeof(s.trigger), "rescreen");
    s.outcome = hits_n > 0         ? RISK_LISTS_HIT
                : unscreenable > 0 ? RISK_LISTS_REVIEW
                                   : RISK_LISTS_CLEAR;
    s.at_us = at_us;
    s.lists_n = 2;
    snprintf(s.lists[0].name, sizeof(s.lists[0].name), "internal");
    s.lists[0].version = 0x0123456789abcdefULL;
    snprintf(s.lists[1].name, sizeof(s.lists[1].name), "ofac_sdn");
    s.lists[1].version = UINT64_MAX;
    s.names_n = 2;
    s.unscreenable_n = unscreenable;
    s.hits_total = (uint32_t)hits_n;
    s.hits_n = (uint32_t)hits_n;
    return s;
}

/* Records a screening and answers whether it blocked now; *b gets the block. */
static bool screen(struct fx *x, const char *subject, int64_t at_us,
                   const struct risk_screen_hit *hits, size_t n, uint32_t unscreenable,
                   struct risk_screen_block *b)
{
    struct risk_screening s = screening_of(subject, at_us, n, unscreenable);
    bool now = false;
    assert_int_equal(risk_lists_screening_put(x->l, &s, hits, n, b, &now), CF_OK);
    return now;
}

static void clear_ok(struct fx *x, const char *subject, const char *case_id, int64_t at_us,
                     struct risk_screen_event *out)
{
    bool replay = true;
    assert_int_equal(
        risk_lists_block_clear(x->l, subject, REASON, STAFF, case_id, NULL, at_us, out, &replay),
        CF_OK);
    assert_false(replay);
}

/* Lists ---------------------------------------------------------------------------------------- */

static void test_lists_load(void **state)
{
    struct fx *x = *state;
    uint64_t seq = 99;
    assert_int_equal(risk_lists_seq(x->l, &seq), CF_OK);
    assert_int_equal(seq, 0);
    struct risk_list a, b, all[RISK_LISTS_MAX];
    struct risk_list_load in = simple_load("internal", SIMPLE, 7);
    load_ok(x, &in, T0_US, &a);
    assert_int_equal(strncmp(a.load_id, RISK_LISTS_LOAD_PREFIX, 4), 0);
    assert_true(a.changed);
    assert_int_equal(a.content_bytes, strlen(SIMPLE));
    assert_int_equal(a.alt_bytes, 0);

    struct risk_list_load sdn = {.name = "ofac_sdn",
                                 .kind = RISK_LISTS_SDN,
                                 .content = SDN,
                                 .content_len = strlen(SDN),
                                 .alt = ALT,
                                 .alt_len = strlen(ALT),
                                 .version = UINT64_MAX,
                                 .entries = 1};
    load_ok(x, &sdn, T0_US + 1, &b);
    assert_true(b.row > a.row);
    assert_int_equal(risk_lists_seq(x->l, &seq), CF_OK);
    assert_int_equal(seq, b.row);

    size_t n = 0;
    assert_int_equal(risk_lists_all(x->l, all, RISK_LISTS_MAX, &n), CF_OK);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].name, "internal"); /* by name */
    assert_int_equal(all[0].kind, RISK_LISTS_SIMPLE);
    assert_int_equal(all[0].version, 7);
    assert_int_equal(all[0].entries, 2);
    assert_string_equal(all[0].loaded_by, STAFF);
    assert_int_equal(all[0].loaded_at_us, T0_US);
    assert_string_equal(all[1].name, "ofac_sdn");
    assert_true(all[1].version == UINT64_MAX); /* all 64 bits survive the round trip */

    struct risk_list meta;
    char *content = NULL, *alt = NULL;
    size_t content_len = 0, alt_len = 0;
    assert_int_equal(
        risk_lists_bytes(x->l, "ofac_sdn", &meta, &content, &content_len, &alt, &alt_len), CF_OK);
    assert_int_equal(content_len, strlen(SDN));
    assert_memory_equal(content, SDN, content_len);
    assert_non_null(alt);
    assert_int_equal(alt_len, strlen(ALT));
    assert_memory_equal(alt, ALT, alt_len);
    free(content);
    free(alt);
    assert_int_equal(
        risk_lists_bytes(x->l, "internal", &meta, &content, &content_len, &alt, &alt_len), CF_OK);
    assert_null(alt);
    assert_int_equal(alt_len, 0);
    free(content);
    assert_int_equal(
        risk_lists_bytes(x->l, "nothing", &meta, &content, &content_len, &alt, &alt_len),
        CF_ERR_NOT_FOUND);

    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_list_loads"), 2);
}

static void test_lists_reload(void **state)
{
    struct fx *x = *state;
    struct risk_list a, c, d, meta;
    struct risk_list_load in = simple_load("internal", SIMPLE, 7);
    struct risk_list_load sdn = {.name = "ofac_sdn",
                                 .kind = RISK_LISTS_SDN,
                                 .content = SDN,
                                 .content_len = strlen(SDN),
                                 .version = 1,
                                 .entries = 1};
    load_ok(x, &in, T0_US, &a);
    load_ok(x, &sdn, T0_US + 1, &a);
    char *content = NULL, *alt = NULL;
    size_t content_len = 0, alt_len = 0;

    /* the same bytes again: recorded, not changed; other bytes: changed and replaced */
    load_ok(x, &in, T0_US + 2, &c);
    assert_false(c.changed);
    struct risk_list_load in2 = simple_load("internal", "id,name\nA1,Ivan Petrov\n", 8);
    in2.entries = 1;
    load_ok(x, &in2, T0_US + 3, &d);
    assert_true(d.changed);
    assert_int_equal(
        risk_lists_bytes(x->l, "internal", &meta, &content, &content_len, &alt, &alt_len), CF_OK);
    assert_int_equal(content_len, strlen(in2.content));
    assert_int_equal(meta.version, 8);
    assert_int_equal(meta.entries, 1);
    assert_string_equal(meta.load_id, d.load_id);
    free(content);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_list_loads"), 4);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_lists"), 2);
}

static void test_lists_limit_and_validation(void **state)
{
    struct fx *x = *state;
    struct risk_list got;
    char name[RISK_LISTS_NAME_BYTES_MAX];
    for (int i = 0; i < RISK_LISTS_MAX; i++) {
        snprintf(name, sizeof(name), "list_%02d", i);
        struct risk_list_load in = simple_load(name, SIMPLE, (uint64_t)i);
        load_ok(x, &in, T0_US + i, &got);
    }
    struct risk_list_load extra = simple_load("one_too_many", SIMPLE, 1);
    assert_int_equal(risk_lists_put(x->l, &extra, STAFF, NULL, T0_US, &got, NULL), CF_ERR_CONFLICT);
    struct risk_list_load again = simple_load("list_03", SIMPLE, 99);
    load_ok(x, &again, T0_US + 99, &got); /* reloading one of them is fine */

    const char *bad_names[] = {"", "Upper", "with-dash", "with space", "a_name_of_twenty_five_chr"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        struct risk_list_load in = simple_load(bad_names[i], SIMPLE, 1);
        assert_int_equal(risk_lists_put(x->l, &in, STAFF, NULL, T0_US, &got, NULL),
                         CF_ERR_INVALID_FIELD);
    }
    assert_true(risk_lists_name_valid("a_name_of_twenty_four_ch"));
    struct risk_list_load in = simple_load("list_00", SIMPLE, 1);
    in.kind = 3;
    assert_int_equal(risk_lists_put(x->l, &in, STAFF, NULL, T0_US, &got, NULL),
                     CF_ERR_INVALID_FIELD);
    in = simple_load("list_00", SIMPLE, 1);
    in.alt = ALT; /* an aliases file belongs to the SDN layout only */
    in.alt_len = strlen(ALT);
    assert_int_equal(risk_lists_put(x->l, &in, STAFF, NULL, T0_US, &got, NULL),
                     CF_ERR_INVALID_FIELD);
    in = simple_load("list_00", SIMPLE, 1);
    assert_int_equal(risk_lists_put(x->l, &in, "has space", NULL, T0_US, &got, NULL),
                     CF_ERR_INVALID_FIELD);
    struct risk_lists_idem bad_key = idem_of("", "r");
    assert_int_equal(risk_lists_put(x->l, &in, STAFF, &bad_key, T0_US, &got, NULL),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_list_loads"),
                     RISK_LISTS_MAX + 1);
    assert_int_equal(risk_lists_kind_parse("sdn"), RISK_LISTS_SDN);
    assert_int_equal(risk_lists_kind_parse("simple"), RISK_LISTS_SIMPLE);
    assert_int_equal(risk_lists_kind_parse("csv"), 0);
}

static void test_lists_idempotency(void **state)
{
    struct fx *x = *state;
    struct risk_lists_idem k = idem_of(STAFF ":load-1", "request one");
    struct risk_list first, again, found;
    struct risk_list_load in = simple_load("internal", SIMPLE, 7);
    bool replay = true;
    assert_int_equal(risk_lists_load_by_idem(x->l, &k, "internal", &found), CF_ERR_NOT_FOUND);
    assert_int_equal(risk_lists_put(x->l, &in, STAFF, &k, T0_US, &first, &replay), CF_OK);
    assert_false(replay);
    struct risk_list_load other = simple_load("internal", "id,name\nB,Other Name\n", 9);
    struct risk_list later;
    load_ok(x, &other, T0_US + 1, &later); /* the name moves on */
    assert_int_equal(risk_lists_put(x->l, &in, STAFF, &k, T0_US + 2, &again, &replay), CF_OK);
    assert_true(replay);
    assert_string_equal(again.load_id, first.load_id);
    assert_int_equal(again.version, 7);
    assert_int_equal(again.loaded_at_us, T0_US);
    assert_int_equal(risk_lists_load_by_idem(x->l, &k, "internal", &found), CF_OK);
    assert_string_equal(found.load_id, first.load_id);
    assert_int_equal(risk_lists_load_by_idem(x->l, &k, "elsewhere", &found),
                     CF_ERR_IDEM_KEY_REUSED);
    struct risk_lists_idem k2 = idem_of(STAFF ":load-1", "request two");
    assert_int_equal(risk_lists_put(x->l, &in, STAFF, &k2, T0_US + 3, &again, &replay),
                     CF_ERR_IDEM_KEY_REUSED);
    struct risk_list_load named = simple_load("another", SIMPLE, 7);
    assert_int_equal(risk_lists_put(x->l, &named, STAFF, &k, T0_US + 3, &again, &replay),
                     CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_list_loads"), 2);
    struct risk_list meta;
    char *content = NULL, *alt = NULL;
    size_t content_len = 0, alt_len = 0;
    assert_int_equal(
        risk_lists_bytes(x->l, "internal", &meta, &content, &content_len, &alt, &alt_len), CF_OK);
    assert_int_equal(meta.version, 9); /* a replay stores nothing */
    free(content);
}

/* Screenings ----------------------------------------------------------------------------------- */

static void test_screening_block(void **state)
{
    struct fx *x = *state;
    char p[ID_TEXT_BYTES_MAX];
    risk_fx_party("usr_", 41, p);
    struct risk_screening s;
    struct risk_screen_hit got[RISK_LISTS_HITS_MAX];
    struct risk_screen_block b;
    assert_int_equal(risk_lists_screening_get(x->l, p, &s, got, RISK_LISTS_HITS_MAX, &b),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(risk_lists_block_peek(x->l, p, &b), CF_ERR_NOT_FOUND);

    /* clear: no block */
    assert_false(screen(x, p, T0_US, NULL, 0, 0, &b));
    assert_false(b.blocked);
    assert_int_equal(risk_lists_screening_get(x->l, p, &s, got, RISK_LISTS_HITS_MAX, &b), CF_OK);
    assert_int_equal(s.outcome, RISK_LISTS_CLEAR);
    assert_string_equal(s.trigger, "rescreen");
    assert_int_equal(s.lists_n, 2);
    assert_string_equal(s.lists[1].name, "ofac_sdn");
    assert_true(s.lists[1].version == UINT64_MAX);
    assert_true(s.lists[0].version == 0x0123456789abcdefULL);

    /* a hit blocks once */
    struct risk_screen_hit hits[2] = {hit_of("ofac_sdn", "90001", "HADDAD, Mohammed Yusuf", 940),
                                      hit_of("internal", "C-001", "José Álvarez Núñez", 870)};
    assert_true(screen(x, p, T0_US + 1, hits, 2, 0, &b));
    assert_true(b.blocked);
    assert_int_equal(strncmp(b.event_id, RISK_LISTS_BLOCK_PREFIX, 4), 0);
    assert_int_equal(b.since_us, T0_US + 1);
    assert_string_equal(b.case_id, "");
    char block_id[RISK_LISTS_ID_BYTES_MAX];
    snprintf(block_id, sizeof(block_id), "%s", b.event_id);
    assert_false(screen(x, p, T0_US + 2, hits, 2, 0, &b)); /* blocked already */
    assert_string_equal(b.event_id, block_id);
    assert_false(screen(x, p, T0_US + 3, NULL, 0, 0, &b)); /* nothing found: still blocked */
    assert_true(b.blocked);
    assert_true(screen(x, p, T0_US + 4, hits, 2, 0, &b) == false);

    assert_int_equal(risk_lists_screening_get(x->l, p, &s, got, RISK_LISTS_HITS_MAX, &b), CF_OK);
    assert_int_equal(s.outcome, RISK_LISTS_HIT);
    assert_int_equal(s.hits_n, 2);
    assert_string_equal(got[0].ref, "ofac_sdn-90001");
    assert_string_equal(got[0].matched_name, "HADDAD, Mohammed Yusuf");
    assert_int_equal(got[0].score, 940);
    assert_string_equal(got[1].ref, "internal-C-001");
    assert_string_equal(got[1].matched_name, "José Álvarez Núñez");
    assert_int_equal(got[1].country, WATCHLIST_AGREE);
}

/* Blocks p with two hits (hits[0..2) filled); block_id gets the block. */
static void block_two(struct fx *x, const char *p, struct risk_screen_hit hits[2],
                      char block_id[RISK_LISTS_ID_BYTES_MAX])
{
    struct risk_screen_block b;
    hits[0] = hit_of("ofac_sdn", "90001", "HADDAD, Mohammed Yusuf", 940);
    hits[1] = hit_of("internal", "C-001", "José Álvarez Núñez", 870);
    assert_true(screen(x, p, T0_US + 1, hits, 2, 0, &b));
    snprintf(block_id, RISK_LISTS_ID_BYTES_MAX, "%s", b.event_id);
}

static void test_screening_clear(void **state)
{
    struct fx *x = *state;
    char p[ID_TEXT_BYTES_MAX], block_id[RISK_LISTS_ID_BYTES_MAX];
    risk_fx_party("usr_", 41, p);
    struct risk_screening s;
    struct risk_screen_hit got[RISK_LISTS_HITS_MAX], hits[2];
    struct risk_screen_block b;
    block_two(x, p, hits, block_id);

    /* the case is named; a clear for another case is refused, for this one it lifts */
    assert_int_equal(risk_lists_block_case_set(x->l, p, block_id, "cas_0000000000001"), CF_OK);
    assert_int_equal(risk_lists_block_case_set(x->l, p, "sbk_000000000000Z", "cas_0000000000002"),
                     CF_OK); /* another block: nothing changes */
    assert_int_equal(risk_lists_block_peek(x->l, p, &b), CF_OK);
    assert_string_equal(b.case_id, "cas_0000000000001");
    struct risk_screen_event ev;
    assert_int_equal(risk_lists_block_clear(x->l, p, REASON, STAFF, "cas_0000000000002", NULL,
                                            T0_US + 5, &ev, NULL),
                     CF_ERR_CONFLICT);
    clear_ok(x, p, "cas_0000000000001", T0_US + 6, &ev);
    assert_int_equal(strncmp(ev.id, RISK_LISTS_CLEAR_PREFIX, 4), 0);
    assert_string_equal(ev.block_id, block_id);
    assert_string_equal(ev.case_id, "cas_0000000000001");
    assert_string_equal(ev.reason, REASON);
    assert_int_equal(risk_lists_block_peek(x->l, p, &b), CF_OK);
    assert_false(b.blocked);
    assert_int_equal(
        risk_lists_block_clear(x->l, p, REASON, STAFF, NULL, NULL, T0_US + 7, &ev, NULL),
        CF_ERR_NOT_FOUND);

    /* the reviewed hits never block again; a new entry does */
    assert_false(screen(x, p, T0_US + 8, hits, 2, 0, &b));
    assert_false(b.blocked);
    struct risk_screen_hit more[3] = {hits[0], hits[1],
                                      hit_of("ofac_sdn", "90002", "AL-RASHIDI, Abd", 900)};
    assert_true(screen(x, p, T0_US + 9, more, 3, 0, &b));
    clear_ok(x, p, NULL, T0_US + 10, &ev); /* a staff clear lifts any block */

    /* a refused name blocks as "unscreenable", once */
    assert_true(screen(x, p, T0_US + 11, NULL, 0, 1, &b));
    assert_int_equal(risk_lists_screening_get(x->l, p, &s, got, RISK_LISTS_HITS_MAX, &b), CF_OK);
    assert_int_equal(s.outcome, RISK_LISTS_REVIEW);
    clear_ok(x, p, NULL, T0_US + 12, &ev);
    assert_false(screen(x, p, T0_US + 13, NULL, 0, 1, &b));
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_screen_cleared"), 4);

    struct risk_screen_event evs[RISK_LISTS_EVENTS_MAX];
    size_t n = 0;
    assert_int_equal(risk_lists_events(x->l, p, evs, RISK_LISTS_EVENTS_MAX, &n), CF_OK);
    assert_int_equal(n, 6);
    assert_int_equal(evs[0].kind, RISK_LISTS_EVENT_CLEAR); /* newest first */
    assert_string_equal(evs[0].reason, REASON);
    assert_int_equal(evs[5].kind, RISK_LISTS_EVENT_BLOCK);
    assert_string_equal(evs[5].id, block_id);
    assert_string_equal(evs[5].by, "sanctions");
    assert_string_equal(evs[5].reason, "");
}

static void test_screening_validation(void **state)
{
    struct fx *x = *state;
    char p[ID_TEXT_BYTES_MAX];
    risk_fx_party("mer_", 42, p);
    struct risk_screen_hit h = hit_of("ofac_sdn", "90001", "HADDAD", 940);
    struct risk_screen_block b;
    struct risk_screening s = screening_of("usr_bad", T0_US, 1, 0);
    assert_int_equal(risk_lists_screening_put(x->l, &s, &h, 1, &b, NULL), CF_ERR_INVALID_FIELD);
    s = screening_of(p, T0_US, 1, 0);
    snprintf(s.trigger, sizeof(s.trigger), "whenever");
    assert_int_equal(risk_lists_screening_put(x->l, &s, &h, 1, &b, NULL), CF_ERR_INVALID_FIELD);
    s = screening_of(p, T0_US, 1, 0);
    s.outcome = RISK_LISTS_CLEAR; /* a hit is not clear */
    assert_int_equal(risk_lists_screening_put(x->l, &s, &h, 1, &b, NULL), CF_ERR_INVALID_FIELD);
    s = screening_of(p, T0_US, 1, 0);
    s.hits_n = 2;
    assert_int_equal(risk_lists_screening_put(x->l, &s, &h, 1, &b, NULL), CF_ERR_INVALID_FIELD);
    s = screening_of(p, T0_US, 1, 0);
    struct risk_screen_hit bad = h;
    snprintf(bad.entry_id, sizeof(bad.entry_id), "\xff\xfe");
    assert_int_equal(risk_lists_screening_put(x->l, &s, &bad, 1, &b, NULL), CF_ERR_INVALID_FIELD);
    bad = h;
    bad.score = SCREEN_SCORE_MAX + 1;
    assert_int_equal(risk_lists_screening_put(x->l, &s, &bad, 1, &b, NULL), CF_ERR_INVALID_FIELD);
    bad = h;
    snprintf(bad.list, sizeof(bad.list), "Bad List");
    assert_int_equal(risk_lists_screening_put(x->l, &s, &bad, 1, &b, NULL), CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_screenings"), 0);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_screen_events"), 0);

    assert_true(risk_lists_trigger_valid("merchant_onboarding"));
    assert_false(risk_lists_trigger_valid("Registration"));
    const char *why = NULL;
    assert_false(risk_lists_reason_valid("", &why));
    assert_non_null(why);
    assert_false(risk_lists_reason_valid("bell\a", NULL));
    assert_true(risk_lists_reason_valid("two\nlines\tand a tab", NULL));
    char *long_reason = malloc(RISK_LISTS_REASON_CHARS_MAX * 4 + 8);
    assert_non_null(long_reason);
    for (int i = 0; i < RISK_LISTS_REASON_CHARS_MAX; i++)
        memcpy(long_reason + 4 * i, "\xf0\x9f\x98\x80", 4); /* 500 characters of four bytes */
    long_reason[RISK_LISTS_REASON_CHARS_MAX * 4] = '\0';
    assert_true(risk_lists_reason_valid(long_reason, NULL));
    memcpy(long_reason + RISK_LISTS_REASON_CHARS_MAX * 4, "x", 2);
    assert_false(risk_lists_reason_valid(long_reason, NULL));
    free(long_reason);
}

static void test_clear_idempotency_and_sealing(void **state)
{
    struct fx *x = *state;
    char p[ID_TEXT_BYTES_MAX], q[ID_TEXT_BYTES_MAX];
    risk_fx_party("usr_", 43, p);
    risk_fx_party("usr_", 44, q);
    struct risk_screen_hit h = hit_of("ofac_sdn", "90001", "HADDAD", 940);
    struct risk_screen_block b;
    assert_true(screen(x, p, T0_US, &h, 1, 0, &b));
    assert_true(screen(x, q, T0_US, &h, 1, 0, &b));
    struct risk_lists_idem k = idem_of(STAFF ":clear-1", "clear p");
    struct risk_screen_event first, again;
    bool replay = true;
    assert_int_equal(
        risk_lists_block_clear(x->l, p, REASON, STAFF, NULL, &k, T0_US + 1, &first, &replay),
        CF_OK);
    assert_false(replay);
    assert_int_equal(
        risk_lists_block_clear(x->l, p, REASON, STAFF, NULL, &k, T0_US + 2, &again, &replay),
        CF_OK);
    assert_true(replay);
    assert_string_equal(again.id, first.id);
    assert_string_equal(again.reason, REASON);
    struct risk_lists_idem k2 = idem_of(STAFF ":clear-1", "another request");
    assert_int_equal(
        risk_lists_block_clear(x->l, p, REASON, STAFF, NULL, &k2, T0_US + 3, &again, NULL),
        CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(
        risk_lists_block_clear(x->l, q, REASON, STAFF, NULL, &k, T0_US + 3, &again, NULL),
        CF_ERR_IDEM_KEY_REUSED); /* the key cleared another subject */
    assert_int_equal(risk_lists_block_peek(x->l, q, &b), CF_OK);
    assert_true(b.blocked);

    /* sealed at rest: the row holds no plaintext, and moved to another event it does not open */
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(first.id)};
    assert_int_equal(sql_begin(x->b.db, &tx), CF_OK);
    assert_int_equal(
        sql_query(tx, "SELECT reason_sealed FROM risk_screen_events WHERE id = $1", v, 1, &r),
        CF_OK);
    size_t len = 0;
    const uint8_t *raw = sql_row_blob(r, 0, 0, &len);
    assert_true(len > 0 && len < RAW_BYTES_MAX);
    uint8_t copy[RAW_BYTES_MAX];
    memcpy(copy, raw, len);
    sql_rows_free(r);
    sql_rollback(tx);
    assert_null(memmem(copy, len, "namesake", 8));
    struct risk_screen_event other;
    clear_ok(x, q, NULL, T0_US + 4, &other);
    struct sql_value w[] = {SQL_B(copy, len), SQL_T(other.id)};
    assert_int_equal(sql_begin(x->b.db, &tx), CF_OK);
    assert_int_equal(
        sql_exec(tx, "UPDATE risk_screen_events SET reason_sealed = $1 WHERE id = $2", w, 2, NULL),
        CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    struct risk_screen_event evs[RISK_LISTS_EVENTS_MAX];
    size_t n = 0;
    assert_int_equal(risk_lists_events(x->l, q, evs, RISK_LISTS_EVENTS_MAX, &n), CF_ERR_CORRUPT);
    assert_int_equal(risk_lists_events(x->l, p, evs, RISK_LISTS_EVENTS_MAX, &n), CF_OK);
    assert_int_equal(n, 2);
}

static void test_hit_refs(void **state)
{
    (void)state;
    char ref[RISK_LISTS_REF_BYTES_MAX];
    risk_lists_hit_ref("ofac_sdn", "36", ref);
    assert_string_equal(ref, "ofac_sdn-36");
    risk_lists_hit_ref("internal", "C-001_x", ref);
    assert_string_equal(ref, "internal-C-001_x");
    const char *odd[] = {"id with space", "Ünïcode", "a_very_long_entry_id_beyond_22",
                         "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        risk_lists_hit_ref("a_name_of_twenty_four_ch", odd[i], ref);
        assert_true(strlen(ref) <= 47);
        assert_int_equal(strncmp(ref, "a_name_of_twenty_four_ch-x", 26), 0);
        for (const char *c = ref; *c != '\0'; c++)
            assert_true((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' ||
                        *c == '-');
    }
    char other[RISK_LISTS_REF_BYTES_MAX];
    risk_lists_hit_ref("a_name_of_twenty_four_ch", "id with spacE", other);
    risk_lists_hit_ref("a_name_of_twenty_four_ch", "id with space", ref);
    assert_string_not_equal(ref, other);
    risk_lists_hit_ref("l", "0123456789012345678901", ref); /* 22 characters: kept */
    assert_string_equal(ref, "l-0123456789012345678901");
}

static void test_subject_pages(void **state)
{
    struct fx *x = *state;
    struct risk_screen_block b;
    char want[PAGE_SUBJECTS][ID_TEXT_BYTES_MAX];
    for (int i = 0; i < PAGE_SUBJECTS; i++) {
        risk_fx_party(i % 2 == 0 ? "usr_" : "mer_", 100 + (uint64_t)i, want[i]);
        screen(x, want[i], T0_US + i, NULL, 0, 0, &b);
    }
    char page[PAGE][RISK_LISTS_PARTY_BYTES_MAX], after[RISK_LISTS_PARTY_BYTES_MAX] = "";
    char seen[PAGE_SUBJECTS][RISK_LISTS_PARTY_BYTES_MAX];
    size_t seen_n = 0, n = 0;
    do {
        assert_int_equal(risk_lists_subjects(x->l, after, page, PAGE, &n), CF_OK);
        for (size_t i = 0; i < n; i++) {
            assert_true(seen_n < PAGE_SUBJECTS);
            memcpy(seen[seen_n++], page[i], RISK_LISTS_PARTY_BYTES_MAX);
        }
        if (n > 0)
            memcpy(after, page[n - 1], sizeof(after));
    } while (n == PAGE);
    assert_int_equal(seen_n, PAGE_SUBJECTS);
    for (int i = 0; i < PAGE_SUBJECTS; i++) {
        int found = 0;
        for (size_t k = 0; k < seen_n; k++)
            found += strcmp(seen[k], want[i]) == 0;
        assert_int_equal(found, 1);
    }
}

/* Races ---------------------------------------------------------------------------------------- */

enum race_kind { RACE_SCREEN, RACE_CLEAR, RACE_LOAD };

struct race_worker {
    struct fx *x;
    const char *party;
    enum race_kind kind;
    pthread_barrier_t *start;
    enum cf_err err;
    bool flag; /* blocked now, or a replay */
    char id[RISK_LISTS_ID_BYTES_MAX];
};

static void *race_run(void *arg)
{
    struct race_worker *w = arg;
    struct risk_lists_idem k = idem_of(STAFF ":race", "the same request");
    struct risk_screen_hit h = hit_of("ofac_sdn", "90001", "HADDAD", 940);
    pthread_barrier_wait(w->start);
    if (w->kind == RACE_SCREEN) {
        struct risk_screening s = screening_of(w->party, T0_US, 1, 0);
        struct risk_screen_block b;
        w->err = risk_lists_screening_put(w->x->l, &s, &h, 1, &b, &w->flag);
    } else if (w->kind == RACE_CLEAR) {
        struct risk_screen_event ev;
        w->err = risk_lists_block_clear(w->x->l, w->party, REASON, STAFF, NULL, &k, T0_US + 1, &ev,
                                        &w->flag);
        snprintf(w->id, sizeof(w->id), "%s", ev.id);
    } else {
        struct risk_list_load in = simple_load("internal", SIMPLE, 7);
        struct risk_list got;
        w->err = risk_lists_put(w->x->l, &in, STAFF, &k, T0_US, &got, &w->flag);
        snprintf(w->id, sizeof(w->id), "%s", got.load_id);
    }
    return NULL;
}

/* Runs RACE_THREADS workers of kind at once; answers how many made something (not a replay,
 * blocked now). Every worker must succeed and, for clears and loads, answer the same id. */
static int race(struct fx *x, const char *p, enum race_kind kind)
{
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
    pthread_t th[RACE_THREADS];
    struct race_worker *w = calloc(RACE_THREADS, sizeof(*w));
    assert_non_null(w);
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct race_worker){.x = x, .party = p, .kind = kind, .start = &start};
        assert_int_equal(pthread_create(&th[i], NULL, race_run, &w[i]), 0);
    }
    int made = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].err, CF_OK);
        made += kind == RACE_SCREEN ? w[i].flag : !w[i].flag;
        if (kind != RACE_SCREEN)
            assert_string_equal(w[i].id, w[0].id);
    }
    pthread_barrier_destroy(&start);
    free(w);
    return made;
}

static void test_races(void **state)
{
    struct fx *x = *state;
    char p[ID_TEXT_BYTES_MAX];
    risk_fx_party("usr_", 45, p);
    assert_int_equal(race(x, p, RACE_SCREEN), 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_screen_events"), 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_screenings"), 1);
    assert_int_equal(race(x, p, RACE_CLEAR), 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_screen_events"), 2);
    assert_int_equal(race(x, p, RACE_LOAD), 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_list_loads"), 1);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_lists_load),
        FX(test_lists_reload),
        FX(test_lists_limit_and_validation),
        FX(test_lists_idempotency),
        FX(test_screening_block),
        FX(test_screening_clear),
        FX(test_screening_validation),
        FX(test_clear_idempotency_and_sealing),
        cmocka_unit_test(test_hit_refs),
        FX(test_subject_pages),
        FX(test_races),
    };
    int failed = cmocka_run_group_tests_name("risk_lists_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("risk_lists_postgres", tests, NULL, NULL);
    } else {
        printf("risk_lists_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
