/*
 * test_cases.c - unit tests for risk cases (src/risk/cases.c) driven through cases.h, against
 * SQLite (a fresh file per test) and, when COFFER_TEST_PG_URL is set, against PostgreSQL (a
 * fresh database per test, coffer_rc_<pid>_<n>, dropped after). Times are passed in; the vault
 * holds one fresh key.
 *
 * An alert opens a case; the same key adds only operations the case does not hold (an alert
 * that brings nothing changes nothing: no event, same updated_at); a repeat inside one alert is
 * linked once. A decided case's key opens a new case only for an alert with an operation the
 * closed case did not hold; an alert without operations never reopens it. Evidence is unique
 * per case (a staff link of a held operation is a conflict) and capped. Staff writes (assign,
 * note, evidence, decide) record their events, refuse a closed case, validate their input, and
 * answer a key's event again (another request under it is refused); notes and reasons are
 * sealed at rest. The list filters by status, kind, subject, assignee (and unassigned),
 * scenario and creation time, and pages newest first, each case once. Watermarks read 0 until
 * set. The sweep's settings parse and refuse bad values. Eight threads filing one key at once
 * open one case.
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
#include "risk/cases.h"
#include "store/sql/sql.h"

#define T0_US 1700000000000000LL
#define RACE_THREADS 8
#define LIST_CASES 7
#define LIST_PAGE 3

#define STAFF "usr_000000000000R"
#define OTHER_STAFF "usr_000000000000S"
#define NOTE "Customer says the deposits are rent collected for her landlord; asked for a lease"
#define REASON "Pattern explained by documents seen on the call; nothing suspicious"

struct fx {
    struct risk_fx b; /* the database and the vault (key 1 only) */
    struct risk_cases *c;
};

/* Fixture -------------------------------------------------------------------------------------- */

static int fx_setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -1;
    *state = x;
    if (risk_fx_open(&x->b, "rc", false, true) != 0)
        return -1;
    return risk_cases_open(x->b.db, risk_fx_vault, &x->b, &x->c) == CF_OK ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *x = *state;
    risk_cases_close(x->c);
    risk_fx_close(&x->b);
    free(x);
    return 0;
}

/* Helpers -------------------------------------------------------------------------------------- */

static struct risk_case_idem idem_of(const char *key, const char *request)
{
    struct risk_case_idem k = {.key = key};
    hash_sha256(request, strlen(request), k.request_hash);
    return k;
}

/* Files an AML alert for subject under key with ops[0..n). */
static enum cf_err alert(struct fx *x, const char *subject, const char *key, const char *scenario,
                         const char *const *ops, size_t n, int64_t at_us, char id[24],
                         bool *existed)
{
    struct risk_case_alert a = {.kind = RISK_CASE_AML,
                                .subject = subject,
                                .dedup_key = key,
                                .scenario = scenario,
                                .detail = "count=3 sum_minor=2850000 currency=EUR",
                                .evidence_ops = ops,
                                .evidence_n = n};
    return risk_cases_alert(x->c, &a, at_us, id, existed);
}

static struct risk_case get(struct fx *x, const char *id)
{
    struct risk_case c;
    assert_int_equal(risk_cases_get(x->c, id, &c), CF_OK);
    return c;
}

static size_t events_of(struct fx *x, const char *id, struct risk_case_event *ev)
{
    size_t n = 0;
    assert_int_equal(risk_cases_events(x->c, id, ev, RISK_CASE_EVENTS_MAX, &n), CF_OK);
    return n;
}

/* Alerts --------------------------------------------------------------------------------------- */

static void test_alert_dedup(void **state)
{
    struct fx *x = *state;
    char s[ID_TEXT_BYTES_MAX], id[24], id2[24];
    risk_fx_party("usr_", 11, s);
    const char *first[] = {"snd_A1", "snd_A2", "snd_A2", "snd_A3"}; /* a repeat: linked once */
    bool existed = true;
    assert_int_equal(alert(x, s, "structuring:k1", "structuring", first, 4, T0_US, id, &existed),
                     CF_OK);
    assert_false(existed);
    assert_int_equal(strncmp(id, RISK_CASE_ID_PREFIX, 4), 0);
    struct risk_case c = get(x, id);
    assert_int_equal(c.kind, RISK_CASE_AML);
    assert_int_equal(c.status, RISK_CASE_OPEN);
    assert_int_equal(c.priority, RISK_CASE_PRIORITY_NORMAL);
    assert_int_equal(c.decision, RISK_CASE_DECISION_NONE);
    assert_string_equal(c.subject, s);
    assert_string_equal(c.scenario, "structuring");
    assert_string_equal(c.dedup_key, "structuring:k1");
    assert_string_equal(c.assignee, "");
    assert_int_equal(c.evidence_n, 3);
    assert_int_equal(c.alerts_n, 1);
    assert_int_equal(c.created_at_us, T0_US);

    /* the same pattern again, grown by one operation: the same case */
    const char *second[] = {"snd_A1", "snd_A2", "snd_A3", "snd_A4"};
    assert_int_equal(
        alert(x, s, "structuring:k1", "structuring", second, 4, T0_US + 10, id2, &existed), CF_OK);
    assert_true(existed);
    assert_string_equal(id2, id);
    c = get(x, id);
    assert_int_equal(c.evidence_n, 4);
    assert_int_equal(c.alerts_n, 2);
    assert_int_equal(c.updated_at_us, T0_US + 10);

    /* found again, nothing new: nothing changes */
    assert_int_equal(
        alert(x, s, "structuring:k1", "structuring", second, 4, T0_US + 20, id2, &existed), CF_OK);
    assert_true(existed);
    c = get(x, id);
    assert_int_equal(c.alerts_n, 2);
    assert_int_equal(c.updated_at_us, T0_US + 10);
    struct risk_case_event ev[RISK_CASE_EVENTS_MAX];
    size_t n = events_of(x, id, ev);
    assert_int_equal(n, 2);
    assert_int_equal(ev[0].type, RISK_CASE_EVENT_OPENED);
    assert_int_equal(ev[0].count, 3);
    assert_string_equal(ev[0].by, "aml");
    assert_string_equal(ev[0].ref, "structuring");
    assert_int_equal(ev[1].type, RISK_CASE_EVENT_ALERT_ADDED);
    assert_int_equal(ev[1].count, 1);
    assert_true(ev[1].row > ev[0].row);

    struct risk_case_evidence e[RISK_CASE_EVIDENCE_MAX];
    assert_int_equal(risk_cases_evidence(x->c, id, e, RISK_CASE_EVIDENCE_MAX, &n), CF_OK);
    assert_int_equal(n, 4);
    assert_string_equal(e[0].operation_id, "snd_A1");
    assert_string_equal(e[3].operation_id, "snd_A4");
    assert_string_equal(e[3].by, "aml");
    assert_int_equal(e[3].added_at_us, T0_US + 10);

    /* another key, or another subject's key: another case */
    assert_int_equal(alert(x, s, "fan_in:k1", "fan_in", second, 2, T0_US, id2, &existed), CF_OK);
    assert_false(existed);
    assert_string_not_equal(id2, id);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_cases"), 2);

    /* sanctions hits are high priority, dormancy low */
    struct risk_case_alert hit = {.kind = RISK_CASE_SANCTIONS,
                                  .subject = s,
                                  .dedup_key = "sanctions:list1:" STAFF,
                                  .scenario = "sanctions_hit"};
    assert_int_equal(risk_cases_alert(x->c, &hit, T0_US, id2, &existed), CF_OK);
    assert_int_equal(get(x, id2).priority, RISK_CASE_PRIORITY_HIGH);
    assert_int_equal(get(x, id2).evidence_n, 0);
    assert_int_equal(risk_cases_priority(RISK_CASE_AML, "dormant_reactivated"),
                     RISK_CASE_PRIORITY_LOW);
    assert_int_equal(risk_cases_priority(RISK_CASE_AML, "large_transaction"),
                     RISK_CASE_PRIORITY_HIGH);
}

static void test_alert_validation(void **state)
{
    struct fx *x = *state;
    char s[ID_TEXT_BYTES_MAX], id[24] = "untouched";
    risk_fx_party("mer_", 12, s);
    const char *ops[] = {"pay_1"}, *bad_ops[] = {"pay 1"};
    bool existed = false;
    assert_int_equal(
        alert(x, "acct_0000000000001", "k", "structuring", ops, 1, T0_US, id, &existed),
        CF_ERR_INVALID_FIELD);
    assert_int_equal(alert(x, s, "", "structuring", ops, 1, T0_US, id, &existed),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(alert(x, s, "a key", "structuring", ops, 1, T0_US, id, &existed),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(alert(x, s, "k", "Structuring", ops, 1, T0_US, id, &existed),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(alert(x, s, "k", "structuring", bad_ops, 1, T0_US, id, &existed),
                     CF_ERR_INVALID_FIELD);
    const char *many[RISK_CASE_ALERT_EVIDENCE_MAX + 1];
    for (size_t i = 0; i <= RISK_CASE_ALERT_EVIDENCE_MAX; i++)
        many[i] = "pay_1";
    assert_int_equal(alert(x, s, "k", "structuring", many, RISK_CASE_ALERT_EVIDENCE_MAX + 1, T0_US,
                           id, &existed),
                     CF_ERR_RANGE_TOO_LARGE);
    struct risk_case_alert a = {.kind = 9, .subject = s, .dedup_key = "k", .scenario = "x"};
    assert_int_equal(risk_cases_alert(x->c, &a, T0_US, id, &existed), CF_ERR_INVALID_FIELD);
    assert_string_equal(id, "untouched");
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_cases"), 0);
}

/* A closed case's key -------------------------------------------------------------------------- */

static void decide_ok(struct fx *x, const char *id, uint8_t decision)
{
    struct risk_case_event ev;
    bool replay = true;
    assert_int_equal(
        risk_cases_decide(x->c, id, decision, REASON, STAFF, NULL, T0_US + 100, &ev, &replay),
        CF_OK);
    assert_false(replay);
}

static void test_new_case_after_close(void **state)
{
    struct fx *x = *state;
    char s[ID_TEXT_BYTES_MAX], id[24], again[24];
    risk_fx_party("usr_", 21, s);
    const char *ops[] = {"snd_B1", "snd_B2", "snd_B3"};
    bool existed = true;
    assert_int_equal(alert(x, s, "structuring:k2", "structuring", ops, 3, T0_US, id, &existed),
                     CF_OK);
    decide_ok(x, id, RISK_CASE_DECISION_CLEAR);
    struct risk_case c = get(x, id);
    assert_int_equal(c.status, RISK_CASE_CLOSED);
    assert_int_equal(c.decision, RISK_CASE_DECISION_CLEAR);
    assert_string_equal(c.reason, REASON);
    assert_string_equal(c.decided_by, STAFF);
    assert_int_equal(c.decided_at_us, T0_US + 100);

    /* the decided pattern found again: no new case, the closed one answers */
    assert_int_equal(
        alert(x, s, "structuring:k2", "structuring", ops, 2, T0_US + 200, again, &existed), CF_OK);
    assert_true(existed);
    assert_string_equal(again, id);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_cases"), 1);
    assert_int_equal(get(x, id).evidence_n, 3); /* a closed case takes nothing */

    /* the pattern grew after the decision: a new case, with every operation of the alert */
    const char *grown[] = {"snd_B1", "snd_B2", "snd_B3", "snd_B4"};
    assert_int_equal(
        alert(x, s, "structuring:k2", "structuring", grown, 4, T0_US + 300, again, &existed),
        CF_OK);
    assert_false(existed);
    assert_string_not_equal(again, id);
    assert_int_equal(get(x, again).evidence_n, 4);
    assert_int_equal(get(x, again).status, RISK_CASE_OPEN);
    char third[24];
    assert_int_equal(
        alert(x, s, "structuring:k2", "structuring", grown, 4, T0_US + 400, third, &existed),
        CF_OK);
    assert_true(existed);
    assert_string_equal(third, again); /* the open one again */

    /* an alert without operations never reopens a decided key */
    struct risk_case_alert hit = {.kind = RISK_CASE_SANCTIONS,
                                  .subject = s,
                                  .dedup_key = "sanctions:v1",
                                  .scenario = "sanctions_hit",
                                  .detail = "list=ofac score=97"};
    assert_int_equal(risk_cases_alert(x->c, &hit, T0_US, id, &existed), CF_OK);
    assert_false(existed);
    decide_ok(x, id, RISK_CASE_DECISION_CLEAR);
    assert_int_equal(risk_cases_alert(x->c, &hit, T0_US + 500, again, &existed), CF_OK);
    assert_true(existed);
    assert_string_equal(again, id);
    hit.dedup_key = "sanctions:v2"; /* the detector's new key: a new case */
    assert_int_equal(risk_cases_alert(x->c, &hit, T0_US + 600, again, &existed), CF_OK);
    assert_false(existed);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_cases"), 4);
    assert_int_equal(
        risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_cases WHERE open_key IS NOT NULL"), 2);
}

/* Evidence ------------------------------------------------------------------------------------- */

static void test_evidence_unique(void **state)
{
    struct fx *x = *state;
    char s[ID_TEXT_BYTES_MAX], id[24];
    risk_fx_party("usr_", 31, s);
    const char *ops[] = {"snd_C1"};
    bool existed = true, replay = true;
    assert_int_equal(alert(x, s, "fan_out:k3", "fan_out", ops, 1, T0_US, id, &existed), CF_OK);
    struct risk_case_event ev;
    assert_int_equal(risk_cases_evidence_add(x->c, id, "snd_C1", STAFF, NULL, T0_US, &ev, NULL),
                     CF_ERR_CONFLICT);
    assert_int_equal(
        risk_cases_evidence_add(x->c, id, "wdr_C2", STAFF, NULL, T0_US + 1, &ev, &replay), CF_OK);
    assert_false(replay);
    assert_int_equal(ev.type, RISK_CASE_EVENT_EVIDENCE_ADDED);
    assert_string_equal(ev.ref, "wdr_C2");
    assert_int_equal(risk_cases_evidence_add(x->c, id, "wdr_C2", STAFF, NULL, T0_US, &ev, NULL),
                     CF_ERR_CONFLICT);
    assert_int_equal(risk_cases_evidence_add(x->c, id, "bad op", STAFF, NULL, T0_US, &ev, NULL),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(get(x, id).evidence_n, 2);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_case_evidence"), 2);

    /* the cap: alerts stop adding at RISK_CASE_EVIDENCE_MAX, a staff link is refused */
    static char names[RISK_CASE_EVIDENCE_MAX + RISK_CASE_ALERT_EVIDENCE_MAX][16];
    const char *batch[RISK_CASE_ALERT_EVIDENCE_MAX];
    size_t made = 0;
    while (made < RISK_CASE_EVIDENCE_MAX) {
        for (size_t i = 0; i < RISK_CASE_ALERT_EVIDENCE_MAX; i++, made++) {
            snprintf(names[made], sizeof(names[made]), "snd_M%zu", made);
            batch[i] = names[made];
        }
        char got[24];
        assert_int_equal(alert(x, s, "fan_out:k3", "fan_out", batch, RISK_CASE_ALERT_EVIDENCE_MAX,
                               T0_US + 2, got, &existed),
                         CF_OK);
        assert_string_equal(got, id);
    }
    assert_int_equal(get(x, id).evidence_n, RISK_CASE_EVIDENCE_MAX);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_case_evidence"),
                     RISK_CASE_EVIDENCE_MAX);
    assert_int_equal(risk_cases_evidence_add(x->c, id, "snd_Z9", STAFF, NULL, T0_US, &ev, NULL),
                     CF_ERR_RANGE_TOO_LARGE);
}

/* Staff writes --------------------------------------------------------------------------------- */

static void test_staff_writes(void **state)
{
    struct fx *x = *state;
    char s[ID_TEXT_BYTES_MAX], id[24];
    risk_fx_party("mer_", 41, s);
    const char *ops[] = {"pay_D1"};
    bool existed = true, replay = true;
    assert_int_equal(
        alert(x, s, "large_transaction:k4", "large_transaction", ops, 1, T0_US, id, &existed),
        CF_OK);
    struct risk_case_event ev, ev2;
    assert_int_equal(risk_cases_assign(x->c, id, STAFF, OTHER_STAFF, NULL, T0_US + 1, &ev, &replay),
                     CF_OK);
    assert_false(replay);
    assert_string_equal(ev.ref, STAFF);
    assert_string_equal(ev.by, OTHER_STAFF);
    assert_string_equal(get(x, id).assignee, STAFF);
    assert_int_equal(
        risk_cases_assign(x->c, id, "mer_000000000000A", STAFF, NULL, T0_US, &ev, NULL),
        CF_ERR_INVALID_FIELD);

    assert_int_equal(risk_cases_note_add(x->c, id, NOTE, STAFF, NULL, T0_US + 2, &ev, NULL), CF_OK);
    assert_int_equal(strncmp(ev.ref, RISK_CASE_NOTE_ID_PREFIX, 4), 0);
    const char *detail = NULL;
    assert_false(risk_cases_text_valid("", RISK_CASE_NOTE_CHARS_MAX, "text", &detail));
    assert_string_equal(detail, "text: 1 to 2000 characters");
    assert_false(risk_cases_text_valid("bell\a", RISK_CASE_REASON_CHARS_MAX, "reason", &detail));
    assert_string_equal(detail, "reason: no control characters");
    assert_false(risk_cases_text_valid("\xff", RISK_CASE_NOTE_CHARS_MAX, "text", &detail));
    assert_string_equal(detail, "text: not valid UTF-8");
    assert_int_equal(risk_cases_note_add(x->c, id, "", STAFF, NULL, T0_US, &ev2, NULL),
                     CF_ERR_INVALID_FIELD);

    struct risk_case_note notes[RISK_CASE_NOTES_MAX];
    size_t n = 0;
    assert_int_equal(risk_cases_notes(x->c, id, notes, RISK_CASE_NOTES_MAX, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(notes[0].text, NOTE);
    assert_string_equal(notes[0].id, ev.ref);
    assert_int_equal(notes[0].at_us, T0_US + 2);
    /* sealed at rest: the note's words are nowhere in its row */
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    assert_int_equal(sql_begin(x->b.db, &tx), CF_OK);
    assert_int_equal(sql_query(tx, "SELECT text_sealed FROM risk_case_notes", NULL, 0, &r), CF_OK);
    size_t len = 0;
    const uint8_t *blob = sql_row_blob(r, 0, 0, &len);
    assert_true(len > strlen(NOTE));
    for (size_t i = 0; i + 8 <= len; i++)
        assert_true(memcmp(blob + i, "landlord", 8) != 0);
    sql_rows_free(r);
    sql_rollback(tx);

    assert_int_equal(risk_cases_decide(x->c, id, 0, REASON, STAFF, NULL, T0_US, &ev, NULL),
                     CF_ERR_INVALID_FIELD);
    decide_ok(x, id, RISK_CASE_DECISION_REPORT);
    assert_int_equal(get(x, id).decision, RISK_CASE_DECISION_REPORT);
    /* closed: read-only */
    assert_int_equal(risk_cases_assign(x->c, id, "", STAFF, NULL, T0_US, &ev, NULL),
                     CF_ERR_CONFLICT);
    assert_int_equal(risk_cases_note_add(x->c, id, NOTE, STAFF, NULL, T0_US, &ev, NULL),
                     CF_ERR_CONFLICT);
    assert_int_equal(risk_cases_evidence_add(x->c, id, "pay_D2", STAFF, NULL, T0_US, &ev, NULL),
                     CF_ERR_CONFLICT);
    assert_int_equal(risk_cases_decide(x->c, id, RISK_CASE_DECISION_CLEAR, REASON, STAFF, NULL,
                                       T0_US, &ev, NULL),
                     CF_ERR_CONFLICT);
    assert_int_equal(
        risk_cases_note_add(x->c, "cas_0000000000001", NOTE, STAFF, NULL, T0_US, &ev, NULL),
        CF_ERR_NOT_FOUND);
    assert_int_equal(risk_cases_note_add(x->c, "nonsense", NOTE, STAFF, NULL, T0_US, &ev, NULL),
                     CF_ERR_NOT_FOUND);
    assert_int_equal(risk_cases_notes(x->c, "cas_0000000000001", notes, 1, &n), CF_ERR_NOT_FOUND);

    struct risk_case_event hist[RISK_CASE_EVENTS_MAX];
    n = events_of(x, id, hist);
    assert_int_equal(n, 4);
    assert_int_equal(hist[1].type, RISK_CASE_EVENT_ASSIGNED);
    assert_int_equal(hist[2].type, RISK_CASE_EVENT_NOTE_ADDED);
    assert_int_equal(hist[3].type, RISK_CASE_EVENT_DECIDED);
    assert_string_equal(hist[3].ref, "report");
    /* the reason is sealed too, and only get opens it */
    assert_int_equal(
        risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_cases WHERE reason_sealed IS NULL"), 0);
    struct risk_case_filter f = {0};
    struct risk_case listed[1];
    assert_int_equal(risk_cases_list(x->c, &f, listed, 1, &n), CF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(listed[0].reason, "");
}

static void test_idempotency(void **state)
{
    struct fx *x = *state;
    char s[ID_TEXT_BYTES_MAX], id[24], id2[24];
    risk_fx_party("usr_", 51, s);
    const char *ops[] = {"snd_E1"};
    bool existed = false, replay = false;
    assert_int_equal(alert(x, s, "k5", "structuring", ops, 1, T0_US, id, &existed), CF_OK);
    assert_int_equal(alert(x, s, "k6", "structuring", ops, 1, T0_US, id2, &existed), CF_OK);
    struct risk_case_idem k = idem_of("usr_R:note-1", "note one");
    struct risk_case_event ev, again;
    assert_int_equal(risk_cases_note_add(x->c, id, NOTE, STAFF, &k, T0_US + 1, &ev, &replay),
                     CF_OK);
    assert_false(replay);
    assert_int_equal(risk_cases_note_add(x->c, id, NOTE, STAFF, &k, T0_US + 9, &again, &replay),
                     CF_OK);
    assert_true(replay);
    assert_int_equal(again.row, ev.row);
    assert_string_equal(again.ref, ev.ref);
    assert_int_equal(get(x, id).notes_n, 1);
    struct risk_case_idem other = idem_of("usr_R:note-1", "another note");
    assert_int_equal(risk_cases_note_add(x->c, id, "other", STAFF, &other, T0_US, &again, NULL),
                     CF_ERR_IDEM_KEY_REUSED);
    assert_int_equal(risk_cases_note_add(x->c, id2, NOTE, STAFF, &k, T0_US, &again, NULL),
                     CF_ERR_IDEM_KEY_REUSED); /* another case */
    assert_int_equal(risk_cases_assign(x->c, id, STAFF, STAFF, &k, T0_US, &again, NULL),
                     CF_ERR_IDEM_KEY_REUSED); /* another action */

    /* a decision's key answers it again once the case is closed */
    struct risk_case_idem d = idem_of("usr_R:decide-1", "decide");
    assert_int_equal(risk_cases_decide(x->c, id, RISK_CASE_DECISION_FREEZE, REASON, STAFF, &d,
                                       T0_US + 2, &ev, &replay),
                     CF_OK);
    assert_false(replay);
    assert_int_equal(risk_cases_decide(x->c, id, RISK_CASE_DECISION_FREEZE, REASON, STAFF, &d,
                                       T0_US + 3, &again, &replay),
                     CF_OK);
    assert_true(replay);
    assert_int_equal(again.row, ev.row);
    assert_string_equal(again.ref, "freeze");
    struct risk_case_idem bad = {.key = "has space"};
    assert_int_equal(risk_cases_note_add(x->c, id2, NOTE, STAFF, &bad, T0_US, &again, NULL),
                     CF_ERR_INVALID_FIELD);
    assert_int_equal(
        risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_case_events WHERE idem IS NOT NULL"), 2);
}

/* Lists ---------------------------------------------------------------------------------------- */

static size_t list(struct fx *x, const struct risk_case_filter *f, struct risk_case *out)
{
    size_t n = 0;
    assert_int_equal(risk_cases_list(x->c, f, out, RISK_CASE_LIST_MAX, &n), CF_OK);
    return n;
}

static void test_filters(void **state)
{
    struct fx *x = *state;
    char a[ID_TEXT_BYTES_MAX], b[ID_TEXT_BYTES_MAX], ids[4][24];
    risk_fx_party("usr_", 61, a);
    risk_fx_party("mer_", 62, b);
    const char *ops[] = {"snd_F1"};
    bool existed = false;
    assert_int_equal(alert(x, a, "s1", "structuring", ops, 1, T0_US, ids[0], &existed), CF_OK);
    assert_int_equal(alert(x, a, "f1", "fan_in", ops, 1, T0_US + 1000, ids[1], &existed), CF_OK);
    assert_int_equal(alert(x, b, "s2", "structuring", ops, 1, T0_US + 2000, ids[2], &existed),
                     CF_OK);
    struct risk_case_alert hit = {
        .kind = RISK_CASE_SANCTIONS, .subject = b, .dedup_key = "hit", .scenario = "sanctions_hit"};
    assert_int_equal(risk_cases_alert(x->c, &hit, T0_US + 3000, ids[3], &existed), CF_OK);
    struct risk_case_event ev;
    assert_int_equal(risk_cases_assign(x->c, ids[1], STAFF, STAFF, NULL, T0_US, &ev, NULL), CF_OK);
    decide_ok(x, ids[0], RISK_CASE_DECISION_CLEAR);

    struct risk_case out[RISK_CASE_LIST_MAX];
    struct risk_case_filter f = {0};
    assert_int_equal(list(x, &f, out), 4);
    assert_string_equal(out[0].id, ids[3]); /* newest first */
    f.status = RISK_CASE_CLOSED;
    assert_int_equal(list(x, &f, out), 1);
    assert_string_equal(out[0].id, ids[0]);
    f = (struct risk_case_filter){.status = RISK_CASE_OPEN, .subject = a};
    assert_int_equal(list(x, &f, out), 1);
    assert_string_equal(out[0].id, ids[1]);
    f = (struct risk_case_filter){.kind = RISK_CASE_SANCTIONS};
    assert_int_equal(list(x, &f, out), 1);
    assert_string_equal(out[0].id, ids[3]);
    f = (struct risk_case_filter){.assignee = STAFF};
    assert_int_equal(list(x, &f, out), 1);
    assert_string_equal(out[0].id, ids[1]);
    f = (struct risk_case_filter){.assignee = ""};
    assert_int_equal(list(x, &f, out), 3);
    f = (struct risk_case_filter){.scenario = "structuring"};
    assert_int_equal(list(x, &f, out), 2);
    assert_string_equal(out[0].id, ids[2]);
    assert_string_equal(out[1].id, ids[0]);
    f = (struct risk_case_filter){.created_from_us = T0_US + 1000, .created_to_us = T0_US + 3000};
    assert_int_equal(list(x, &f, out), 2);
    assert_string_equal(out[0].id, ids[2]);
    assert_string_equal(out[1].id, ids[1]);
    f = (struct risk_case_filter){.subject = b, .scenario = "structuring", .kind = RISK_CASE_AML};
    assert_int_equal(list(x, &f, out), 1);
    f = (struct risk_case_filter){.subject = "nobody"};
    size_t n = 9;
    assert_int_equal(risk_cases_list(x->c, &f, out, 1, &n), CF_ERR_INVALID_FIELD);
    assert_int_equal(n, 9);
    f = (struct risk_case_filter){.scenario = "Fan In"};
    assert_int_equal(risk_cases_list(x->c, &f, out, 1, &n), CF_ERR_INVALID_FIELD);
}

static void test_pages(void **state)
{
    struct fx *x = *state;
    char s[ID_TEXT_BYTES_MAX], ids[LIST_CASES][24], key[16];
    risk_fx_party("usr_", 71, s);
    const char *ops[] = {"snd_G1"};
    bool existed = false;
    for (int i = 0; i < LIST_CASES; i++) {
        snprintf(key, sizeof(key), "page:%d", i);
        assert_int_equal(alert(x, s, key, "fan_out", ops, 1, T0_US + i, ids[i], &existed), CF_OK);
    }
    struct risk_case page[LIST_PAGE];
    struct risk_case_filter f = {.subject = s};
    int seen = 0;
    for (;;) {
        size_t n = 0;
        assert_int_equal(risk_cases_list(x->c, &f, page, LIST_PAGE, &n), CF_OK);
        for (size_t i = 0; i < n; i++, seen++)
            assert_string_equal(page[i].id, ids[LIST_CASES - 1 - seen]);
        if (n < LIST_PAGE)
            break;
        f.before_row = page[n - 1].row;
    }
    assert_int_equal(seen, LIST_CASES);
}

/* Watermarks and settings ---------------------------------------------------------------------- */

static void test_marks(void **state)
{
    struct fx *x = *state;
    struct risk_case_mark m = {.at_us = 7, .row = 7};
    assert_int_equal(risk_cases_mark_get(x->c, "aml_sweep", &m), CF_OK);
    assert_int_equal(m.at_us, 0);
    assert_int_equal(m.row, 0);
    struct risk_case_mark set = {.at_us = T0_US, .row = 42};
    assert_int_equal(risk_cases_mark_set(x->c, "aml_sweep", &set, T0_US), CF_OK);
    set.row = 43;
    assert_int_equal(risk_cases_mark_set(x->c, "aml_sweep", &set, T0_US), CF_OK);
    assert_int_equal(risk_cases_mark_get(x->c, "aml_sweep", &m), CF_OK);
    assert_int_equal(m.at_us, T0_US);
    assert_int_equal(m.row, 43);
    assert_int_equal(risk_cases_mark_get(x->c, "other", &m), CF_OK);
    assert_int_equal(m.row, 0);
    assert_int_equal(risk_cases_mark_set(x->c, "Bad Name", &set, T0_US), CF_ERR_INVALID_FIELD);
}

static void test_sweep_config(void **state)
{
    (void)state;
    struct risk_cases_sweep_config s;
    risk_cases_sweep_config_default(&s);
    assert_int_equal(s.period_s, RISK_CASES_SWEEP_PERIOD_S_DEFAULT);
    assert_int_equal(aml_config_check(&s.aml), CF_OK);
    const char *why = NULL;
    assert_int_equal(
        risk_cases_sweep_config_set(&s, "aml_currencies", "USD:10000:5000,EUR:20000", &why), CF_OK);
    assert_int_equal(s.aml.currencies_n, 2);
    assert_string_equal(s.aml.currencies[0].currency, "USD");
    assert_int_equal(s.aml.currencies[0].large_minor, 10000);
    assert_int_equal(s.aml.currencies[0].pass_through_min_minor, 5000);
    assert_int_equal(s.aml.currencies[0].dormant_min_minor, 1000);
    assert_int_equal(s.aml.currencies[1].pass_through_min_minor, 2000);
    assert_int_equal(aml_config_check(&s.aml), CF_OK);
    assert_int_equal(risk_cases_sweep_config_set(&s, "aml_structuring_count_min", "4", &why),
                     CF_OK);
    assert_int_equal(s.aml.structuring_count_min, 4);
    assert_int_equal(risk_cases_sweep_config_set(&s, "aml_fan_in_window_s", "3600", &why), CF_OK);
    assert_int_equal(s.aml.fan_in_window_s, 3600);
    assert_int_equal(risk_cases_sweep_config_set(&s, "aml_sweep_period_s", "0", &why), CF_OK);
    assert_int_equal(s.period_s, 0);
    assert_int_equal(risk_cases_sweep_config_set(&s, "aml_scenarios", "structuring,fan_in", &why),
                     CF_OK);
    assert_int_equal(s.aml.scenarios, AML_SCENARIO_BIT(AML_SCENARIO_STRUCTURING) |
                                          AML_SCENARIO_BIT(AML_SCENARIO_FAN_IN));
    assert_int_equal(risk_cases_sweep_config_set(&s, "operator_name", "Coffer Pay Ltd", &why),
                     CF_OK);
    assert_string_equal(s.operator_name, "Coffer Pay Ltd");

    static const char *const bad[][2] = {
        {"aml_currencies", "USD"},          {"aml_currencies", "USD:-1"},
        {"aml_currencies", "USD:1,USD:2"},  {"aml_currencies", "usd:1"},
        {"aml_currencies", "USD:1:2:3:4"},  {"aml_currencies", ""},
        {"aml_structuring_count_min", "1"}, {"aml_structuring_window_s", "0"},
        {"aml_sweep_period_s", "86401"},    {"aml_scenarios", "structuring,nope"},
        {"aml_dormant_s", "12x"},           {"aml_scenarios", ""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(risk_cases_sweep_config_set(&s, bad[i][0], bad[i][1], &why),
                         CF_ERR_CONFIG);
        assert_non_null(why);
        assert_int_equal(strncmp(why, bad[i][0], strlen(bad[i][0])), 0);
    }
    assert_int_equal(s.aml.currencies_n, 2); /* untouched by the refusals */
    assert_int_equal(risk_cases_sweep_config_set(&s, "gateway", "sandbox", &why), CF_ERR_NOT_FOUND);
}

/* Races ---------------------------------------------------------------------------------------- */

struct race_arg {
    struct fx *x;
    const char *subject;
    pthread_barrier_t *start;
    enum cf_err err;
    bool existed;
    char id[24];
    char op[16];
};

static void *race_run(void *p)
{
    struct race_arg *w = p;
    const char *ops[] = {w->op};
    struct risk_case_alert a = {.kind = RISK_CASE_AML,
                                .subject = w->subject,
                                .dedup_key = "race",
                                .scenario = "fan_in",
                                .evidence_ops = ops,
                                .evidence_n = 1};
    pthread_barrier_wait(w->start);
    w->err = risk_cases_alert(w->x->c, &a, T0_US, w->id, &w->existed);
    return NULL;
}

static void test_race(void **state)
{
    struct fx *x = *state;
    char s[ID_TEXT_BYTES_MAX];
    risk_fx_party("usr_", 81, s);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
    pthread_t th[RACE_THREADS];
    struct race_arg w[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        w[i] = (struct race_arg){.x = x, .subject = s, .start = &start};
        snprintf(w[i].op, sizeof(w[i].op), "snd_R%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, race_run, &w[i]), 0);
    }
    int opened = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].err, CF_OK);
        assert_string_equal(w[i].id, w[0].id);
        opened += w[i].existed ? 0 : 1;
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(opened, 1);
    assert_int_equal(risk_fx_count(&x->b, "SELECT COUNT(*) FROM risk_cases"), 1);
    assert_int_equal(get(x, w[0].id).evidence_n, RACE_THREADS);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    if (hash_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FX(test_alert_dedup),
        FX(test_alert_validation),
        FX(test_new_case_after_close),
        FX(test_evidence_unique),
        FX(test_staff_writes),
        FX(test_idempotency),
        FX(test_filters),
        FX(test_pages),
        FX(test_marks),
        FX(test_sweep_config),
        FX(test_race),
    };
    int failed = cmocka_run_group_tests_name("risk_cases_sqlite", tests, NULL, NULL);
    pg_base_url = getenv("COFFER_TEST_PG_URL");
    if (pg_base_url != NULL && pg_base_url[0] != '\0') {
        use_pg = true;
        failed += cmocka_run_group_tests_name("risk_cases_postgres", tests, NULL, NULL);
    } else {
        printf("risk_cases_postgres: COFFER_TEST_PG_URL is not set; skipped\n");
    }
    return failed;
}
