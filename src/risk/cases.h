/*
 * cases.h - risk cases: alerts of the AML scenarios, sanctions screening and transaction
 * monitoring, deduplicated into cases that analysts assign, annotate, link evidence to and
 * decide.
 *
 * A case is about one subject (a customer "usr_..." or a merchant "mer_...") and one pattern,
 * named by the alert's dedup key. A detector files alerts with risk_cases_alert; the alert
 * opens a case, or adds its evidence (operation ids) to the OPEN case with the same key:
 *
 *     (none) --alert--> open --alert (same key): evidence added--> open
 *                        |  --assign / note / evidence--> open
 *                        `--decide (clear | freeze | report)--> closed (read-only for good)
 *
 * Dedup keys: at most one OPEN case holds a key (the database enforces it). Once that case is
 * closed, the key may open a new case, but only for an alert that brings an operation the
 * newest closed case with the key did not hold: a detector that finds the same pattern again
 * (the AML sweep rescans a subject's recent history whenever the subject moves money) does not
 * reopen a decided case, while the same pattern growing after the decision (more operations
 * under the same anchor) opens a new one. An alert without evidence never reopens a key (a
 * sanctions hit cleared as a false positive stays cleared until the detector changes its key,
 * e.g. with the list's version). An alert that adds nothing to the open case (every operation
 * is evidence already) changes nothing: no event, no new updated_at.
 *
 * Each case keeps:
 *   - its facts: kind, subject, scenario, dedup key, detail (the machine-readable line of the
 *     alert that last added evidence; no personal data), priority (from kind and scenario,
 *     risk_cases_priority), status, assignee (a staff user id or ""), decision and reason,
 *     created and updated times;
 *   - notes: analysts' free text, sealed at rest (aad "risk_case:<note id>:note");
 *   - evidence: operation ids (unique per case), who linked each and when; at most
 *     RISK_CASE_EVIDENCE_MAX (alerts past it add nothing more, a staff link past it is
 *     CF_ERR_RANGE_TOO_LARGE);
 *   - events, append-only: opened, alert_added, assigned, note_added, evidence_added, decided.
 * A decision's reason is sealed too (aad "risk_case:<case id>:reason"). Only risk_cases_get and
 * risk_cases_notes open sealed text; list leaves reason "". Never log notes or reasons.
 *
 * Idempotency: every staff write takes an optional key (struct risk_case_idem: a caller-
 * namespaced key and the request's SHA-256), stored on the event it recorded. A key already used
 * answers that event with *replay_out set, whatever the case's state is now; the same key with
 * another request hash (or for another action or case) is CF_ERR_IDEM_KEY_REUSED.
 *
 * Watermarks: named positions (e.g. "aml_sweep" -> the last payments operation row swept),
 * stored here so that a feeder resumes where it stopped after a restart.
 *
 * Errors: CF_ERR_INVALID_FIELD for a malformed subject, key, scenario, detail, operation id,
 * assignee, by, text or idempotency key (and CF_ERR_RANGE_TOO_LARGE for too much evidence in
 * one alert or on one case); CF_ERR_NOT_FOUND for an unknown case id (also a malformed one);
 * CF_ERR_CONFLICT for a write on a closed case or an operation that is evidence already;
 * CF_ERR_IDEM_KEY_REUSED as above; CF_ERR_CONFIG when no master key seals; CF_ERR_CORRUPT when
 * sealed text does not open; the SQL facade's errors (CF_ERR_STORAGE, CF_ERR_STORAGE_CONFLICT
 * when a concurrent writer kept winning, CF_ERR_NOMEM). Every function leaves its outputs
 * untouched on failure.
 *
 * Concurrency: every function is one transaction; the handle may be shared by any number of
 * threads. Two alerts with one key at once open one case (the other adds to it); two decisions
 * of one case at once: one is recorded, the other is CF_ERR_CONFLICT. The tables live in the
 * service database (the identity database), schema "risk_cases", through the SQL facade.
 */
#ifndef COFFER_RISK_CASES_H
#define COFFER_RISK_CASES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"
#include "risk/aml.h"

struct sqldb;
struct vault;

/* Limits --------------------------------------------------------------------------------------- */

#define RISK_CASE_ID_BYTES_MAX 24    /* "cas_..." or a note "cnt_...": ID_TEXT_BYTES_MAX */
#define RISK_CASE_PARTY_BYTES_MAX 48 /* a subject, assignee or `by`, NUL included */
#define RISK_CASE_OP_BYTES_MAX 48    /* an operation id ("pay_...", "snd_..."), NUL included */
/* A dedup key, NUL included: an AML key (AML_KEY_BYTES_MAX, 132) or a screening key fits. */
#define RISK_CASE_KEY_BYTES_MAX 200
#define RISK_CASE_SCENARIO_BYTES_MAX 32 /* "dormant_reactivated", "sanctions_hit", NUL included */
#define RISK_CASE_DETAIL_BYTES_MAX 512  /* "name=value" pairs; AML's are 320 at most */
/* A note: a paragraph of an analyst's findings; documents belong in the case file elsewhere. */
#define RISK_CASE_NOTE_CHARS_MAX 2000
#define RISK_CASE_NOTE_BYTES_MAX (4 * RISK_CASE_NOTE_CHARS_MAX + 1) /* UTF-8, NUL */
#define RISK_CASE_REASON_CHARS_MAX 500 /* a decision's reason, like a freeze's */
#define RISK_CASE_REASON_BYTES_MAX (4 * RISK_CASE_REASON_CHARS_MAX + 1)
#define RISK_CASE_IDEM_BYTES_MAX 200     /* a namespaced idempotency key, NUL included */
#define RISK_CASE_ALERT_EVIDENCE_MAX 64  /* operations one alert links (AML sends 32 at most) */
#define RISK_CASE_EVIDENCE_MAX 500       /* operations one case holds: months of a pattern */
#define RISK_CASE_NOTES_MAX 200          /* notes one case holds */
#define RISK_CASE_EVENTS_MAX 1000        /* events one events call returns */
#define RISK_CASE_LIST_MAX 100           /* cases one list call returns */
#define RISK_CASE_REF_BYTES_MAX 64       /* an event's reference (see struct risk_case_event) */
#define RISK_CASE_MARK_NAME_BYTES_MAX 32 /* a watermark's name, NUL included */

#define RISK_CASE_ID_PREFIX "cas_"
#define RISK_CASE_NOTE_ID_PREFIX "cnt_"

enum risk_case_kind {
    RISK_CASE_AML = 1,
    RISK_CASE_SANCTIONS = 2,
    RISK_CASE_MONITORING = 3,
    RISK_CASE_MANUAL = 4
};

enum risk_case_status { RISK_CASE_OPEN = 1, RISK_CASE_CLOSED = 2 };

enum risk_case_priority {
    RISK_CASE_PRIORITY_LOW = 1,
    RISK_CASE_PRIORITY_NORMAL = 2,
    RISK_CASE_PRIORITY_HIGH = 3
};

enum risk_case_decision {
    RISK_CASE_DECISION_NONE = 0,   /* open */
    RISK_CASE_DECISION_CLEAR = 1,  /* nothing suspicious */
    RISK_CASE_DECISION_FREEZE = 2, /* the subject's accounts are frozen (the API does it) */
    RISK_CASE_DECISION_REPORT = 3, /* reported to the authority: the SAR is final */
};

enum risk_case_event_type {
    RISK_CASE_EVENT_OPENED = 1,         /* ref: the scenario; count: evidence linked */
    RISK_CASE_EVENT_ALERT_ADDED = 2,    /* ref: the scenario; count: evidence linked */
    RISK_CASE_EVENT_ASSIGNED = 3,       /* ref: the assignee ("" = unassigned) */
    RISK_CASE_EVENT_NOTE_ADDED = 4,     /* ref: the note id */
    RISK_CASE_EVENT_EVIDENCE_ADDED = 5, /* ref: the operation id */
    RISK_CASE_EVENT_DECIDED = 6,        /* ref: "clear", "freeze" or "report" */
};

/* An alert as a detector files it. Strings are NUL-terminated; none may hold personal data.
 *   kind        enum risk_case_kind
 *   subject     "usr_..." / "mer_..." (risk_cases_party_valid)
 *   dedup_key   1..RISK_CASE_KEY_BYTES_MAX - 1 printable ASCII bytes, namespaced by the detector
 *               ("structuring:usr_...:EUR:pay_...")
 *   scenario    1..RISK_CASE_SCENARIO_BYTES_MAX - 1 of [a-z0-9_]
 *   detail      0..RISK_CASE_DETAIL_BYTES_MAX - 1 printable ASCII bytes (NULL = "")
 *   evidence_ops[0..evidence_n): operation ids, 1..RISK_CASE_OP_BYTES_MAX - 1 of [A-Za-z0-9_-];
 *               evidence_n <= RISK_CASE_ALERT_EVIDENCE_MAX; repeats are linked once */
struct risk_case_alert {
    uint8_t kind;
    const char *subject; /* usr_/mer_ */
    const char *dedup_key;
    const char *scenario; /* e.g. "structuring", "sanctions_hit" */
    const char *detail;   /* machine-readable, no personal data */
    const char *const *evidence_ops;
    size_t evidence_n; /* operation ids */
};

struct risk_case {
    uint64_t row; /* creation order; the list's cursor */
    char id[RISK_CASE_ID_BYTES_MAX];
    uint8_t kind;     /* enum risk_case_kind */
    uint8_t status;   /* enum risk_case_status */
    uint8_t priority; /* enum risk_case_priority */
    uint8_t decision; /* enum risk_case_decision; NONE while open */
    char subject[RISK_CASE_PARTY_BYTES_MAX];
    char scenario[RISK_CASE_SCENARIO_BYTES_MAX];
    char dedup_key[RISK_CASE_KEY_BYTES_MAX];
    char detail[RISK_CASE_DETAIL_BYTES_MAX];
    char assignee[RISK_CASE_PARTY_BYTES_MAX]; /* "" when unassigned */
    char reason[RISK_CASE_REASON_BYTES_MAX];  /* the decision's, opened by get; else "" */
    char decided_by[RISK_CASE_PARTY_BYTES_MAX];
    int64_t decided_at_us; /* 0 while open */
    uint32_t alerts_n;     /* alerts that opened it or added evidence */
    uint32_t evidence_n;
    uint32_t notes_n;
    int64_t created_at_us;
    int64_t updated_at_us;
};

struct risk_case_note {
    uint64_t row;
    char id[RISK_CASE_ID_BYTES_MAX];
    char text[RISK_CASE_NOTE_BYTES_MAX]; /* plaintext in memory */
    char by[RISK_CASE_PARTY_BYTES_MAX];
    int64_t at_us;
};

struct risk_case_evidence {
    uint64_t row;
    char operation_id[RISK_CASE_OP_BYTES_MAX];
    char by[RISK_CASE_PARTY_BYTES_MAX]; /* a staff id, or the detector ("aml", "sanctions") */
    int64_t added_at_us;
};

struct risk_case_event {
    uint64_t row; /* history order */
    char case_id[RISK_CASE_ID_BYTES_MAX];
    uint8_t type; /* enum risk_case_event_type */
    char ref[RISK_CASE_REF_BYTES_MAX];
    uint32_t count;
    char by[RISK_CASE_PARTY_BYTES_MAX];
    int64_t at_us;
};

/* A list's filters; zero / NULL fields do not filter. */
struct risk_case_filter {
    uint8_t status;          /* enum risk_case_status */
    uint8_t kind;            /* enum risk_case_kind */
    const char *subject;     /* exact */
    const char *assignee;    /* exact; "" = unassigned cases */
    const char *scenario;    /* exact */
    int64_t created_from_us; /* created_at_us >= this (0: no bound) */
    int64_t created_to_us;   /* created_at_us < this (0: no bound) */
    uint64_t before_row;     /* the cursor: rows below it (0: from the newest) */
};

/* A caller's idempotency key (1..RISK_CASE_IDEM_BYTES_MAX - 1 printable ASCII bytes, namespaced
 * by the caller: "usr_1:key") and its request's SHA-256. */
struct risk_case_idem {
    const char *key;
    uint8_t request_hash[HASH_BYTES];
};

struct risk_cases;

/* The current master keys: key_id 0 for the active set (sealing), else a set holding key_id
 * (opening); NULL when none holds it (payments_vault_fn's contract). */
typedef const struct vault *(*risk_cases_vault_fn)(void *ctx, uint32_t key_id);

/* Applies the "risk_cases" schema to db and returns the handle (risk_cases_close frees it).
 * db and the vault's owner must outlive the handle. */
CF_WARN_UNUSED enum cf_err risk_cases_open(struct sqldb *db, risk_cases_vault_fn vault,
                                           void *vault_ctx, struct risk_cases **out);
void risk_cases_close(struct risk_cases *c); /* NULL ok */

/* Names: "aml", "sanctions", "monitoring", "manual"; "open", "closed"; "low", "normal", "high";
 * "", "clear", "freeze", "report"; "opened", "alert_added", ... Static storage; "" for a value
 * out of range. The *_parse functions answer 0 for an unknown name. */
const char *risk_cases_kind_name(uint8_t kind);
const char *risk_cases_status_name(uint8_t status);
const char *risk_cases_priority_name(uint8_t priority);
const char *risk_cases_decision_name(uint8_t decision);
const char *risk_cases_event_name(uint8_t type);
uint8_t risk_cases_kind_parse(const char *name);
uint8_t risk_cases_status_parse(const char *name);
uint8_t risk_cases_decision_parse(const char *name);

/* The priority a new case gets: high for sanctions hits and for large transactions and rapid
 * pass-through, low for dormant reactivation, normal otherwise. */
uint8_t risk_cases_priority(uint8_t kind, const char *scenario);

/* Whether text is a subject this module takes: "usr_" or "mer_" and a valid id code. */
bool risk_cases_party_valid(const char *text);
/* Whether text is an operation id this module takes (1..47 of [A-Za-z0-9_-]). */
bool risk_cases_op_valid(const char *text);
/* Whether text is a note (max_chars RISK_CASE_NOTE_CHARS_MAX) or a reason (max_chars
 * RISK_CASE_REASON_CHARS_MAX): 1..max_chars characters of UTF-8 without control characters
 * (tab, CR and LF allowed). *detail_out (may be NULL) says why not, naming `field`. */
bool risk_cases_text_valid(const char *text, size_t max_chars, const char *field,
                           const char **detail_out);

/* Opens a case, or adds the alert's evidence to the OPEN case with the same dedup_key
 * (*existed). See the top of this file for a closed case's key. case_id_out gets the case's id
 * (when the alert neither opened nor added to a case because the newest closed case with the key
 * held all of it, that closed case's id with *existed set). The new case's events: opened (by
 * the kind's name), count = the evidence linked. */
CF_WARN_UNUSED enum cf_err risk_cases_alert(struct risk_cases *c, const struct risk_case_alert *a,
                                            int64_t now_us,
                                            char case_id_out[RISK_CASE_ID_BYTES_MAX],
                                            bool *existed);

/* The case, its reason opened. CF_ERR_NOT_FOUND for an unknown or malformed id. */
CF_WARN_UNUSED enum cf_err risk_cases_get(struct risk_cases *c, const char *id,
                                          struct risk_case *out);
/* The cases matching f, newest first, at most max (1..RISK_CASE_LIST_MAX), reasons not opened;
 * *n_out may be 0. The last row's `row` is the next page's before_row. */
CF_WARN_UNUSED enum cf_err risk_cases_list(struct risk_cases *c, const struct risk_case_filter *f,
                                           struct risk_case *out, size_t max, size_t *n_out);

/* Staff writes on an OPEN case (CF_ERR_CONFLICT when closed), each recording one event by `by`
 * (1..RISK_CASE_PARTY_BYTES_MAX - 1 printable ASCII bytes) at now_us; idem may be NULL; *out
 * gets the event (the stored one on a replay) and *replay_out (may be NULL) whether idem's key
 * had recorded it before. */

/* Sets the assignee: a staff user id (risk_cases_party_valid's form with "usr_") or "" to
 * unassign. Assigning the current assignee again records the event again (a reassignment). */
CF_WARN_UNUSED enum cf_err risk_cases_assign(struct risk_cases *c, const char *id,
                                             const char *assignee, const char *by,
                                             const struct risk_case_idem *idem, int64_t now_us,
                                             struct risk_case_event *out, bool *replay_out);
/* Adds a note (risk_cases_text_valid with RISK_CASE_NOTE_CHARS_MAX), sealed; the event's ref is
 * the note's id. CF_ERR_RANGE_TOO_LARGE past RISK_CASE_NOTES_MAX notes. */
CF_WARN_UNUSED enum cf_err risk_cases_note_add(struct risk_cases *c, const char *id,
                                               const char *text, const char *by,
                                               const struct risk_case_idem *idem, int64_t now_us,
                                               struct risk_case_event *out, bool *replay_out);
/* Links an operation as evidence (the caller checked it exists and concerns the subject).
 * CF_ERR_CONFLICT when it is evidence of this case already, CF_ERR_RANGE_TOO_LARGE past
 * RISK_CASE_EVIDENCE_MAX. */
CF_WARN_UNUSED enum cf_err risk_cases_evidence_add(struct risk_cases *c, const char *id,
                                                   const char *operation_id, const char *by,
                                                   const struct risk_case_idem *idem,
                                                   int64_t now_us, struct risk_case_event *out,
                                                   bool *replay_out);
/* Decides and closes the case: decision CLEAR, FREEZE or REPORT, reason as a note's text with
 * RISK_CASE_REASON_CHARS_MAX, sealed. Acting on the decision (freezing) is the caller's. */
CF_WARN_UNUSED enum cf_err risk_cases_decide(struct risk_cases *c, const char *id, uint8_t decision,
                                             const char *reason, const char *by,
                                             const struct risk_case_idem *idem, int64_t now_us,
                                             struct risk_case_event *out, bool *replay_out);

/* The case's notes (opened, oldest first), evidence (in linking order) and events (oldest
 * first), at most max each (notes <= RISK_CASE_NOTES_MAX, evidence <= RISK_CASE_EVIDENCE_MAX,
 * events <= RISK_CASE_EVENTS_MAX); *n_out may be 0. CF_ERR_NOT_FOUND for an unknown case. */
CF_WARN_UNUSED enum cf_err risk_cases_notes(struct risk_cases *c, const char *id,
                                            struct risk_case_note *out, size_t max, size_t *n_out);
CF_WARN_UNUSED enum cf_err risk_cases_evidence(struct risk_cases *c, const char *id,
                                               struct risk_case_evidence *out, size_t max,
                                               size_t *n_out);
CF_WARN_UNUSED enum cf_err risk_cases_events(struct risk_cases *c, const char *id,
                                             struct risk_case_event *out, size_t max,
                                             size_t *n_out);

/* A feeder's watermark: how far it has read another table, as (time, row) so that a feeder
 * reading in (time, row) order resumes after the last row it handled. name is 1..
 * RISK_CASE_MARK_NAME_BYTES_MAX - 1 of [a-z0-9_]. get answers {0, 0} for a name never set; set
 * stores the position (it may move backwards: a rescan). */
struct risk_case_mark {
    int64_t at_us;
    uint64_t row;
};
CF_WARN_UNUSED enum cf_err risk_cases_mark_get(struct risk_cases *c, const char *name,
                                               struct risk_case_mark *out);
CF_WARN_UNUSED enum cf_err risk_cases_mark_set(struct risk_cases *c, const char *name,
                                               const struct risk_case_mark *mark, int64_t now_us);

/* Settings of the AML sweep that feeds cases (src/api/risk_cases.h runs it) --------------------
 *
 * Configuration keys (src/cli/config.c forwards each to risk_cases_sweep_config_set; the
 * environment variable is COFFER_ and the key in upper case):
 *   aml_scenarios              "all", "none" or names: "structuring,fan_in"
 *   aml_currencies             CODE:LARGE[:PASS_THROUGH_MIN[:DORMANT_MIN]],...  minor units; it
 *                              replaces the default table; a part left out is LARGE / 10
 *   aml_structuring_band_bps   aml_structuring_count_min   aml_structuring_window_s
 *   aml_pass_through_out_bps   aml_pass_through_window_s
 *   aml_dormant_s              aml_dormant_wake_window_s
 *   aml_fan_in_count_min       aml_fan_in_window_s
 *   aml_fan_out_count_min      aml_fan_out_window_s
 *   aml_sweep_period_s         seconds between sweeps, 0 = no timer (on demand only); 60
 *   operator_name              the reporting entity a suspicious-activity report names
 * Ranges are aml.h's; the whole is checked by aml_config_check when the sweep starts (currency
 * codes need the currency table, settled only then). */

#define RISK_CASES_SWEEP_PERIOD_S_DEFAULT 60
#define RISK_CASES_SWEEP_PERIOD_S_MAX 86400
#define RISK_CASES_OPERATOR_NAME_BYTES_MAX 128 /* a legal name, NUL included */

struct risk_cases_sweep_config {
    struct aml_config aml;
    uint32_t period_s; /* 0..RISK_CASES_SWEEP_PERIOD_S_MAX; 0: no timer */
    char operator_name[RISK_CASES_OPERATOR_NAME_BYTES_MAX]; /* "" when not configured */
};

/* aml_config_default, a 60 s period, no operator name. */
void risk_cases_sweep_config_default(struct risk_cases_sweep_config *out);
/* Applies one key above. CF_ERR_NOT_FOUND for a key that is none of these (s untouched);
 * CF_ERR_CONFIG for a malformed or out-of-range value, *detail_out (may be NULL) then naming
 * the key and the expected form (static text). */
CF_WARN_UNUSED enum cf_err risk_cases_sweep_config_set(struct risk_cases_sweep_config *s,
                                                       const char *key, const char *value,
                                                       const char **detail_out);

#endif
