/*
 * test_freeze.c - unit tests for account freezes (src/risk/freeze.c) driven through freeze.h,
 * against SQLite (a fresh file per test) and, when COFFER_TEST_PG_URL is set, against
 * PostgreSQL (a fresh database per test, coffer_rf_<pid>_<n>, dropped after). Times are passed
 * in; the vault holds one fresh key.
 *
 * A freeze is read back with its reason, setting, author and time; peek and list never open
 * the reason; freezing a frozen party is a conflict and unfreezing one that is not frozen is
 * not found; history keeps every event newest first, an unfreeze naming the freeze it ended;
 * refreezing makes a new freeze. Malformed parties, reasons (empty, 501 characters, invalid
 * UTF-8, control characters; 500 characters of four bytes pass), authors and keys write
 * nothing. A key answers its own event again, also once the state moved on; the same key with
 * another request, or a freeze's key given to an unfreeze, is refused. The reason is sealed at
 * rest under "risk_freeze:<event id>:reason": no plaintext in the row, and a sealed reason
 * moved to another event does not open. The list pages through the current freezes, newest
 * first, each once. Eight threads freezing one party with eight keys make one freeze; eight
 * with one key make one and answer it to all; eight unfreezing make one unfreeze.
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
#include "risk/freeze.h"
#include "store/sql/sql.h"

#define T0_US 1700000000000000LL
#define RAW_BYTES_MAX 4096 /* a sealed reason read back raw */
#define RACE_THREADS 8
#define LIST_PARTIES 7
#define LIST_PAGE 3

#define REASON "chargebacks from three cards in one hour; customer says the phone was stolen"
#define STAFF "usr_000000000000R"

struct fx {
    struct risk_fx b; /* the database and the vault (key 1 only) */
    struct risk_freeze *f;
};

/* Fixture -------------------------------------------------------------------------------------- */

_Static_assert(offsetof(struct fx, b) == 0, "risk_fx_setup allocates a struct fx");

static int fx_setup(void **state)
{
    if (risk_fx_setup(state, sizeof(struct fx), "rf", false, true) != 0)
        return -1;
    struct fx *x = *state;
    return risk_freeze_open(x->b.db, risk_fx_vault, &x->b, &x->f) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    risk_freeze_close(((struct fx *)*state)->f);
    return risk_fx_teardown(state);
}

/* Helpers -------------------------------------------------------------------------------------- */

RISK_FX_IDEM_OF(risk_freeze_idem)

static void put_ok(struct fx *x, const char *p, const char *reason, bool blocks, int64_t at_us,
                   struct risk_freeze_event *out)
{
    bool replay = true;
    assert_int_equal(risk_freeze_put(x->f, p, reason, blocks, STAFF, NULL, at_us, out, &replay),
                     CF_OK);
    assert_false(replay);
}

/* Freeze, read, unfreeze ------------------------------------------------------------------------
 */

static void test_put_get_clear(void **state)
{
    struct fx *x = *state;
    char p[ID_TEXT_BYTES_MAX];
    risk_fx_party("usr_", 41, p);
    struct risk_freeze_event fr, got, un, again;
    assert_int_equal(risk_freeze_get(x->f, p, &got), CF_ERR_NOT_FOUND);
    put_ok(x, p, REASON, true, T0_US, &fr);
    assert_int_equal(strncmp(fr.id, RISK_FREEZE_ID_PREFIX, 4), 0);
    assert_int_equal(fr.kind, RISK_FREEZE_EVENT_FREEZE);
    assert_true(fr.row > 0);

    assert_int_equal(risk_freeze_get(x->f, p, &got), CF_OK);
    assert_string_equal(got.id, fr.id);
    assert_string_equal(got.party, p);
    assert_string_equal(got.reason, REASON);
    assert_true(got.blocks_incoming);
    assert_string_equal(got.by, STAFF);
    assert_int_equal(got.at_us, T0_US);
    assert_int_equal(got.row, fr.row);
    assert_string_equal(got.freeze_id, "");

    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(risk_freeze_peek(x->f, p, &got), CF_OK);
    assert_string_equal(got.id, fr.id);
    assert_string_equal(got.reason, ""); /* never opened on the payment path */
    assert_true(got.blocks_incoming);
    assert_int_equal(got.kind, RISK_FREEZE_EVENT_FREEZE); /* from the current row alone */
    assert_string_equal(got.party, p);
    assert_string_equal(got.by, STAFF);
    assert_int_equal(got.at_us, T0_US);
    assert_int_equal(got.row, fr.row);
    assert_string_equal(got.freeze_id, "");

    /* frozen already: a conflict, nothing written */
    assert_int_equal(risk_freeze_put(x->f, p, "again", false, STAFF, NULL, T0_US + 1, &again, NULL),
                     CF_ERR_CONFLICT);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_freeze_events"), 1);

    bool replay = true;
    assert_int_equal(risk_freeze_clear(x->f, p, "cards returned by the bank", "usr_000000000000S",
                                       NULL, T0_US + 5, &un, &replay),
                     CF_OK);
    assert_false(replay);
    assert_int_equal(strncmp(un.id, RISK_UNFREEZE_ID_PREFIX, 4), 0);
    assert_int_equal(un.kind, RISK_FREEZE_EVENT_UNFREEZE);
    assert_string_equal(un.freeze_id, fr.id);
    assert_false(un.blocks_incoming);
    assert_int_equal(risk_freeze_get(x->f, p, &got), CF_ERR_NOT_FOUND);
    assert_int_equal(risk_freeze_peek(x->f, p, &got), CF_ERR_NOT_FOUND);
    assert_int_equal(risk_freeze_clear(x->f, p, "twice", STAFF, NULL, T0_US + 6, &again, NULL),
                     CF_ERR_NOT_FOUND);

    /* frozen again: a new freeze; history newest first */
    struct risk_freeze_event fr2, hist[RISK_FREEZE_HISTORY_MAX];
    put_ok(x, p, "second look", false, T0_US + 9, &fr2);
    assert_string_not_equal(fr2.id, fr.id);
    size_t n = 0;
    assert_int_equal(risk_freeze_history(x->f, p, hist, RISK_FREEZE_HISTORY_MAX, &n), CF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(hist[0].id, fr2.id);
    assert_false(hist[0].blocks_incoming);
    assert_string_equal(hist[1].id, un.id);
    assert_string_equal(hist[1].reason, "cards returned by the bank");
    assert_string_equal(hist[1].by, "usr_000000000000S");
    assert_string_equal(hist[1].freeze_id, fr.id);
    assert_string_equal(hist[2].id, fr.id);
    assert_string_equal(hist[2].reason, REASON);
    assert_true(hist[0].row > hist[1].row && hist[1].row > hist[2].row);
    assert_int_equal(risk_freeze_history(x->f, p, hist, 2, &n), CF_OK);
    assert_int_equal(n, 2);

    /* another party is untouched; a merchant is a party too */
    char m[ID_TEXT_BYTES_MAX];
    risk_fx_party("mer_", 7, m);
    assert_int_equal(risk_freeze_history(x->f, m, hist, RISK_FREEZE_HISTORY_MAX, &n), CF_OK);
    assert_int_equal(n, 0);
    put_ok(x, m, "sanctions list hit, pending review", false, T0_US, &fr);
    assert_int_equal(risk_freeze_peek(x->f, m, &got), CF_OK);
}

/* Validation ----------------------------------------------------------------------------------- */

static enum cf_err put_try(struct fx *x, const char *p, const char *reason, const char *by,
                           const struct risk_freeze_idem *k)
{
    struct risk_freeze_event out;
    return risk_freeze_put(x->f, p, reason, false, by, k, T0_US, &out, NULL);
}

static void test_validation(void **state)
{
    struct fx *x = *state;
    char p[ID_TEXT_BYTES_MAX];
    risk_fx_party("usr_", 42, p);
    static const char *const bad_parties[] = {"",
                                              "usr_",
                                              "usr_x",
                                              "acct_0000000000001",
                                              "usr_000000000000000",
                                              "mer_00000000000O1",
                                              "usr_0000000000000", /* a zero value */
                                              "USR_0000000000001",
                                              " usr_0000000000001"};
    for (size_t i = 0; i < sizeof(bad_parties) / sizeof(bad_parties[0]); i++) {
        assert_false(risk_freeze_party_valid(bad_parties[i]));
        assert_int_equal(put_try(x, bad_parties[i], REASON, STAFF, NULL), CF_ERR_INVALID_FIELD);
    }
    assert_true(risk_freeze_party_valid(p));

    /* reasons: 1..500 characters, counted as characters, not bytes */
    char *r = calloc(1, RISK_FREEZE_REASON_BYTES_MAX + 8);
    assert_non_null(r);
    memset(r, 'a', 501);
    const char *detail = NULL;
    assert_false(risk_freeze_reason_valid(r, &detail));
    assert_string_equal(detail, "reason: 1 to 500 characters");
    assert_int_equal(put_try(x, p, r, STAFF, NULL), CF_ERR_INVALID_FIELD);
    r[500] = '\0';
    assert_true(risk_freeze_reason_valid(r, NULL));
    for (size_t i = 0; i < RISK_FREEZE_REASON_CHARS_MAX; i++)
        memcpy(r + 4 * i, "\xf0\x9f\x94\x92", 4); /* U+1F512, four bytes each */
    r[4 * RISK_FREEZE_REASON_CHARS_MAX] = '\0';
    assert_true(risk_freeze_reason_valid(r, NULL));
    memcpy(r + 4 * RISK_FREEZE_REASON_CHARS_MAX, "a", 2); /* 501 characters */
    assert_false(risk_freeze_reason_valid(r, NULL));
    free(r);
    static const char *const bad_reasons[] = {"",
                                              "bell\a",
                                              "nul-less escape \x1b[0m",
                                              "\xc3",
                                              "\xc0\xaf" /* overlong */,
                                              "\xed\xa0\x80" /* UTF-16 */,
                                              "del\x7f",
                                              "c1 \xc2\x85"};
    for (size_t i = 0; i < sizeof(bad_reasons) / sizeof(bad_reasons[0]); i++) {
        assert_false(risk_freeze_reason_valid(bad_reasons[i], NULL));
        assert_int_equal(put_try(x, p, bad_reasons[i], STAFF, NULL), CF_ERR_INVALID_FIELD);
    }
    assert_false(risk_freeze_reason_valid(NULL, NULL));
    assert_true(risk_freeze_reason_valid("line one\nline two\ttabbed\r\n Zoë, Grüße, 東京", NULL));

    /* authors and keys: printable ASCII tokens */
    assert_int_equal(put_try(x, p, REASON, "", NULL), CF_ERR_INVALID_FIELD);
    assert_int_equal(put_try(x, p, REASON, "two words", NULL), CF_ERR_INVALID_FIELD);
    struct risk_freeze_idem k = idem_of("", "x");
    assert_int_equal(put_try(x, p, REASON, STAFF, &k), CF_ERR_INVALID_FIELD);
    k = idem_of("a key", "x");
    assert_int_equal(put_try(x, p, REASON, STAFF, &k), CF_ERR_INVALID_FIELD);
    struct risk_freeze_event out;
    assert_int_equal(risk_freeze_clear(x->f, "usr_x", REASON, STAFF, NULL, T0_US, &out, NULL),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(risk_freeze_get(x->f, "usr_x", &out), CF_ERR_NOT_FOUND);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_freeze_events"), 0);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_freezes"), 0);

    /* a process may act too */
    assert_int_equal(put_try(x, p, REASON, "aml:case_9", NULL), CF_OK);
}

/* Idempotency ---------------------------------------------------------------------------------- */

static void test_idempotency(void **state)
{
    struct fx *x = *state;
    char p[ID_TEXT_BYTES_MAX];
    risk_fx_party("mer_", 43, p);
    struct risk_freeze_idem k1 = idem_of(STAFF ":k1", "freeze body 1");
    struct risk_freeze_event fr, again, un, un2;
    bool replay = true;
    assert_int_equal(risk_freeze_put(x->f, p, REASON, true, STAFF, &k1, T0_US, &fr, &replay),
                     CF_OK);
    assert_false(replay);
    /* the same key: the same freeze (whatever the body says now), nothing written */
    assert_int_equal(
        risk_freeze_put(x->f, p, "other text", false, STAFF, &k1, T0_US + 1, &again, &replay),
        CF_OK);
    assert_true(replay);
    assert_string_equal(again.id, fr.id);
    assert_string_equal(again.reason, REASON);
    assert_true(again.blocks_incoming);
    assert_int_equal(again.at_us, T0_US);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_freeze_events"), 1);
    /* the same key for another request */
    struct risk_freeze_idem other = idem_of(STAFF ":k1", "freeze body 2");
    assert_int_equal(risk_freeze_put(x->f, p, REASON, true, STAFF, &other, T0_US, &again, NULL),
                     CF_ERR_IDEM_KEY_REUSED);
    /* the same key and request for another party */
    char q[ID_TEXT_BYTES_MAX];
    risk_fx_party("mer_", 48, q);
    assert_int_equal(risk_freeze_put(x->f, q, REASON, true, STAFF, &k1, T0_US, &again, NULL),
                     CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(risk_freeze_peek(x->f, q, &again), CF_ERR_NOT_FOUND);
    /* a freeze's key given to an unfreeze */
    assert_int_equal(risk_freeze_clear(x->f, p, REASON, STAFF, &k1, T0_US, &un, NULL),
                     CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(risk_freeze_peek(x->f, p, &again), CF_OK); /* still frozen */

    struct risk_freeze_idem k2 = idem_of(STAFF ":k2", "unfreeze body");
    assert_int_equal(risk_freeze_clear(x->f, p, "resolved", STAFF, &k2, T0_US + 2, &un, &replay),
                     CF_OK);
    assert_false(replay);
    assert_int_equal(risk_freeze_clear(x->f, p, "resolved", STAFF, &k2, T0_US + 3, &un2, &replay),
                     CF_OK);
    assert_true(replay);
    assert_string_equal(un2.id, un.id);
    assert_string_equal(un2.freeze_id, fr.id);
    assert_int_equal(risk_freeze_put(x->f, p, REASON, true, STAFF, &k2, T0_US, &again, NULL),
                     CF_ERR_IDEM_KEY_REUSED);
    /* the freeze's key still answers its freeze, though the party is no longer frozen */
    assert_int_equal(risk_freeze_put(x->f, p, REASON, true, STAFF, &k1, T0_US + 4, &again, &replay),
                     CF_OK);
    assert_true(replay);
    assert_string_equal(again.id, fr.id);
    assert_int_equal(risk_freeze_peek(x->f, p, &again), CF_ERR_NOT_FOUND);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_freeze_events"), 2);
}

/* Sealing -------------------------------------------------------------------------------------- */

static bool raw_reason(struct fx *x, const char *id, uint8_t out[RAW_BYTES_MAX], size_t *len)
{
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(id)};
    assert_int_equal(sql_begin(x->b.db, &tx), CF_OK);
    assert_int_equal(
        sql_query(tx, "SELECT reason_sealed FROM risk_freeze_events WHERE id = $1", v, 1, &r),
        CF_OK);
    sql_rollback(tx);
    assert_int_equal(sql_rows_n(r), 1);
    const uint8_t *b = sql_row_blob(r, 0, 0, len);
    bool present = b != NULL && *len <= RAW_BYTES_MAX;
    if (present)
        memcpy(out, b, *len);
    sql_rows_free(r);
    return present;
}

static bool mem_contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; k <= n && i <= n - k; i++) {
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    }
    return false;
}

static void test_reason_sealed(void **state)
{
    struct fx *x = *state;
    char a[ID_TEXT_BYTES_MAX], b[ID_TEXT_BYTES_MAX];
    risk_fx_party("usr_", 44, a);
    risk_fx_party("usr_", 45, b);
    struct risk_freeze_event fa, fb, got;
    put_ok(x, a, REASON, false, T0_US, &fa);
    put_ok(x, b, "a different note", false, T0_US, &fb);
    uint8_t *raw = malloc(RAW_BYTES_MAX);
    assert_non_null(raw);
    size_t len = 0;
    assert_true(raw_reason(x, fa.id, raw, &len));
    assert_false(mem_contains(raw, len, "chargebacks"));
    assert_false(mem_contains(raw, len, "stolen"));
    char aad[64], text[RISK_FREEZE_REASON_BYTES_MAX];
    snprintf(aad, sizeof(aad), "risk_freeze:%s:reason", fa.id);
    size_t out_len = 0;
    assert_int_equal(vault_open(x->b.vault, raw, len, aad, strlen(aad), (uint8_t *)text,
                                sizeof(text) - 1, &out_len),
                     CF_OK);
    text[out_len] = '\0';
    assert_string_equal(text, REASON);

    /* a's sealed reason moved onto b's event does not open there */
    struct sqltx *tx = NULL;
    struct sql_value v[] = {SQL_B(raw, len), SQL_T(fb.id)};
    int64_t changed = 0;
    assert_int_equal(sql_begin(x->b.db, &tx), CF_OK);
    assert_int_equal(sql_exec(tx, "UPDATE risk_freeze_events SET reason_sealed = $1 WHERE id = $2",
                              v, 2, &changed),
                     CF_OK);
    assert_int_equal(sql_commit(tx), CF_OK);
    assert_int_equal(changed, 1);
    assert_int_equal(risk_freeze_get(x->f, b, &got), CF_ERR_CORRUPT);
    assert_int_equal(risk_freeze_peek(x->f, b, &got), CF_OK); /* the check does not need it */
    assert_int_equal(risk_freeze_get(x->f, a, &got), CF_OK);
    free(raw);
}

/* List ----------------------------------------------------------------------------------------- */

static void test_list_pages(void **state)
{
    struct fx *x = *state;
    char ids[LIST_PARTIES][ID_TEXT_BYTES_MAX];
    struct risk_freeze_event ev;
    for (int i = 0; i < LIST_PARTIES; i++) {
        risk_fx_party(i % 2 == 0 ? "usr_" : "mer_", 100 + (uint64_t)i, ids[i]);
        put_ok(x, ids[i], REASON, i == 3, T0_US + i, &ev);
    }
    /* one unfrozen: not listed */
    assert_int_equal(risk_freeze_clear(x->f, ids[2], "done", STAFF, NULL, T0_US + 50, &ev, NULL),
                     CF_OK);
    struct risk_freeze_event page[LIST_PAGE];
    bool seen[LIST_PARTIES] = {false};
    uint64_t before = 0, last_row = UINT64_MAX;
    size_t total = 0, n = 0;
    do {
        assert_int_equal(risk_freeze_list(x->f, before, page, LIST_PAGE, &n), CF_OK);
        for (size_t i = 0; i < n; i++) {
            assert_true(page[i].row < last_row); /* newest first */
            last_row = page[i].row;
            assert_string_equal(page[i].reason, "");
            assert_int_equal(page[i].kind, RISK_FREEZE_EVENT_FREEZE);
            int found = -1;
            for (int j = 0; j < LIST_PARTIES; j++)
                found = strcmp(ids[j], page[i].party) == 0 ? j : found;
            assert_true(found >= 0 && found != 2 && !seen[found]);
            seen[found] = true;
            assert_int_equal(page[i].blocks_incoming, found == 3);
            assert_int_equal(page[i].at_us, T0_US + found);
        }
        total += n;
        if (n > 0)
            before = page[n - 1].row;
    } while (n == LIST_PAGE);
    assert_int_equal(total, LIST_PARTIES - 1);
    assert_int_equal(risk_freeze_list(x->f, 1, page, LIST_PAGE, &n), CF_OK);
    assert_int_equal(n, 0);
}

/* Races ---------------------------------------------------------------------------------------- */

struct race_worker {
    struct fx *x;
    const char *party;
    bool same_key, clear;
    int index;
    pthread_barrier_t *start;
    enum cf_err err;
    bool replay;
    struct risk_freeze_event ev;
};

static void *race_run(void *arg)
{
    struct race_worker *w = arg;
    char key[64];
    snprintf(key, sizeof(key), STAFF ":race-%s-%s-%d", w->party, w->clear ? "un" : "fr",
             w->same_key ? 0 : w->index);
    struct risk_freeze_idem k = idem_of(key, "the same request");
    pthread_barrier_wait(w->start);
    if (w->clear)
        w->err = risk_freeze_clear(w->x->f, w->party, "lifted", STAFF, w->same_key ? &k : NULL,
                                   T0_US + 10, &w->ev, &w->replay);
    else
        w->err = risk_freeze_put(w->x->f, w->party, REASON, false, STAFF, &k, T0_US + w->index,
                                 &w->ev, &w->replay);
    return NULL;
}

/* Runs RACE_THREADS workers; returns how many made a new event (the rest are checked). */
static int race(struct fx *x, const char *p, bool same_key, bool clear, char made_id[24])
{
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
    pthread_t th[RACE_THREADS];
    struct race_worker *w = calloc(RACE_THREADS, sizeof(*w));
    assert_non_null(w);
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct race_worker){
            .x = x, .party = p, .same_key = same_key, .clear = clear, .index = i, .start = &start};
        assert_int_equal(pthread_create(&th[i], NULL, race_run, &w[i]), 0);
    }
    int made = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (w[i].err == CF_OK && !w[i].replay) {
            made++;
            snprintf(made_id, 24, "%s", w[i].ev.id);
        }
    }
    for (int i = 0; i < RACE_THREADS; i++) {
        enum cf_err loser = clear ? CF_ERR_NOT_FOUND : CF_ERR_CONFLICT;
        if (same_key) /* every one answers the one event */
            assert_true(w[i].err == CF_OK && strcmp(w[i].ev.id, made_id) == 0);
        else if (w[i].err != CF_OK || w[i].replay)
            assert_int_equal(w[i].err, loser);
    }
    pthread_barrier_destroy(&start);
    free(w);
    return made;
}

static void test_races(void **state)
{
    struct fx *x = *state;
    char p[ID_TEXT_BYTES_MAX], q[ID_TEXT_BYTES_MAX], made[24] = "";
    risk_fx_party("usr_", 46, p);
    risk_fx_party("mer_", 47, q);
    assert_int_equal(race(x, p, false, false, made), 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_freeze_events"), 1);
    struct risk_freeze_event got;
    assert_int_equal(risk_freeze_peek(x->f, p, &got), CF_OK);
    assert_string_equal(got.id, made);

    assert_int_equal(race(x, q, true, false, made), 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_freeze_events"), 2);

    assert_int_equal(race(x, p, false, true, made), 1);
    assert_int_equal(risk_freeze_peek(x->f, p, &got), CF_ERR_NOT_FOUND);
    assert_int_equal(race(x, q, true, true, made), 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_freeze_events"), 4);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_freezes"), 0);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_put_get_clear), FX(test_validation), FX(test_idempotency),
        FX(test_reason_sealed), FX(test_list_pages), FX(test_races),
    };
    int failed = cmocka_run_group_tests_name("risk_freeze_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("risk_freeze_postgres", tests, NULL, NULL);
    } else {
        printf("risk_freeze_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
