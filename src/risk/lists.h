/*
 * lists.h - sanctions and watchlist screening at rest: the lists loaded (their files' bytes, so
 * that every process builds the same lists in memory), the history of loads, each subject's last
 * screening and its hits, and the screening block a hit sets until staff clear it.
 *
 * Lists. A list has a name ([a-z0-9_], 1..RISK_LISTS_NAME_BYTES_MAX - 1: "ofac_sdn",
 * "internal"), a kind (the OFAC SDN layout with its optional aliases file, or the simple CSV;
 * watchlist.h reads both), the bytes of its file(s), its version (watchlist_version of those
 * bytes: a change detector) and its entry count, who loaded it and when. Loading a name again
 * replaces its bytes; at most RISK_LISTS_MAX names exist. Every load appends one row ("lld_...")
 * to the load history, which is never updated or deleted; its row number orders loads, and the
 * largest (risk_lists_seq) tells a process that its lists in memory are stale. The caller
 * parses the bytes (and so knows the version and entries) before it stores them: this module
 * never parses a list. List files are published data, not personal data: kept in clear.
 *
 * Screenings. A subject is a customer ("usr_...") or a merchant ("mer_..."). Its last screening
 * replaces the one before: when, why (the trigger: "registration", "kyc", "payee",
 * "merchant_onboarding", "rescreen", "manual"), the list versions it ran against, how many names
 * were screened and how many of them the matcher refused (a name too long or of too many words
 * to screen: a person must look at it, so it counts like a hit), the outcome and its best hits
 * (at most RISK_LISTS_HITS_MAX: list, entry id, the listed name that matched as the list gives
 * it, scores and date-of-birth and country agreement). The subject's own name is personal data
 * and is never stored here; only its id is. Every subject ever screened keeps its row, so the
 * rows are also the register that re-screening walks (risk_lists_subjects).
 *
 * Hit references. A hit is named by a reference, unique per list entry and usable as a case's
 * evidence id (risk_cases_op_valid: 1..47 of [A-Za-z0-9_-]): "<list>-<entry id>" when the entry
 * id is 1..RISK_LISTS_ENTRY_REF_CHARS_MAX of [A-Za-z0-9_-], else "<list>-x<16 hex digits of the
 * SHA-256 of the entry id>"; a refused name is the reference "unscreenable" (risk_lists_hit_ref).
 *
 * The block. A subject is blocked (its payouts and withdrawals refused by the API) from the
 * screening that finds a reference not yet cleared for it, until a clear:
 *
 *     not blocked --screening_put with an uncleared reference--> blocked (event sbk_...)
 *          ^                                                        |
 *          `------ block_clear (event scl_...; the last screening's references and the
 *                  refused-name reference when it had one become cleared for the subject) --'
 *
 * A cleared reference never blocks that subject again (a false positive an analyst reviewed
 * stays reviewed, across list versions, as long as the list keeps the entry's id); a new entry
 * does. A screening that finds nothing does not lift a block: only a clear does. Block and clear
 * events are appended to risk_screen_events, never updated or deleted; a clear's reason is a
 * staff note, sealed with the master key (aad "risk_lists:<event id>:reason"), opened only by
 * risk_lists_events; never log one. A block names the case its hits were filed in once the
 * caller knows it (risk_lists_block_case_set); a clear made for a case (case_id given) clears
 * only a block that names that case.
 *
 * Idempotency: risk_lists_put and risk_lists_block_clear take an optional key (struct
 * risk_lists_idem: a caller-namespaced key and the request's SHA-256). A key already used
 * answers its stored row with *replay_out set; the same key with another request hash, or for
 * another list or subject, is CF_ERR_IDEM_KEY_REUSED. Loads and clears keep their keys apart (a
 * key is scoped to its action, as the caller's route is).
 *
 * Errors: CF_ERR_INVALID_FIELD for a malformed name, kind, subject, trigger, hit, reason, by or
 * key; CF_ERR_CONFLICT for a new list name past RISK_LISTS_MAX, and for a clear for a case when
 * the block names another case; CF_ERR_NOT_FOUND for a list or subject never stored, and for a
 * clear when the subject is not blocked; CF_ERR_IDEM_KEY_REUSED as above; CF_ERR_CONFIG when no
 * master key seals; CF_ERR_CORRUPT when a stored row is out of range or a reason does not open;
 * the SQL facade's errors (CF_ERR_STORAGE, CF_ERR_STORAGE_CONFLICT, CF_ERR_NOMEM). Every
 * function leaves its outputs untouched on failure.
 *
 * Concurrency: every function is one transaction; the handle may be shared by any number of
 * threads. Two screenings of one subject at once lock its row in turn: the later replaces the
 * earlier, and at most one of them records the block. Two loads of one name at once: the later
 * replaces the earlier; each appends its history row. The tables live in the service database
 * (the identity database), schema "risk_lists", through the SQL facade.
 */
#ifndef COFFER_RISK_LISTS_H
#define COFFER_RISK_LISTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"
#include "risk/screen.h"
#include "risk/watchlist.h"

struct sqldb;
struct vault;

/* Limits ----------------------------------------------------------------------------------------
 */

/* Lists loaded at once: the OFAC SDN list, a consolidated list or two, an internal list. */
#define RISK_LISTS_MAX 16
/* A list's name, NUL included: short enough that a hit reference fits a case's evidence id. */
#define RISK_LISTS_NAME_BYTES_MAX 25
#define RISK_LISTS_PARTY_BYTES_MAX 48   /* a subject, or `by`, NUL included */
#define RISK_LISTS_ID_BYTES_MAX 24      /* an event id "lld_"/"sbk_"/"scl_": ID_TEXT_BYTES_MAX */
#define RISK_LISTS_TRIGGER_BYTES_MAX 24 /* "merchant_onboarding" and NUL */
/* Hits one screening keeps, best first: a name that hits more entries than this needs a person
 * anyway, and the count of all is kept (hits_total). */
#define RISK_LISTS_HITS_MAX 32
#define RISK_LISTS_ENTRY_BYTES_MAX (WATCHLIST_ID_BYTES_MAX + 1)  /* an entry id, NUL included */
#define RISK_LISTS_MATCHED_BYTES_MAX (SCREEN_NAME_BYTES_MAX + 1) /* a listed name, NUL included */
/* A hit reference (see the top), NUL included: a case's evidence id holds 47 characters. */
#define RISK_LISTS_REF_BYTES_MAX 48
/* The longest entry id a reference keeps as it is: 47 - 24 (the name) - 1 ('-'). */
#define RISK_LISTS_ENTRY_REF_CHARS_MAX 22
/* A clear's reason: a sentence or two for the next analyst (as a freeze's). */
#define RISK_LISTS_REASON_CHARS_MAX 500
#define RISK_LISTS_REASON_BYTES_MAX (4 * RISK_LISTS_REASON_CHARS_MAX + 1) /* UTF-8, NUL */
#define RISK_LISTS_IDEM_BYTES_MAX 200    /* a namespaced idempotency key, NUL included */
#define RISK_LISTS_SUBJECTS_PAGE_MAX 500 /* subjects one risk_lists_subjects call returns */
#define RISK_LISTS_EVENTS_MAX 100        /* events one risk_lists_events call returns */
/* The lowest hit threshold a server may be configured with (config `screening_threshold`):
 * below it most names hit unrelated entries (screen.h's table starts at 800). */
#define RISK_LISTS_THRESHOLD_MIN 500

#define RISK_LISTS_LOAD_PREFIX "lld_"
#define RISK_LISTS_BLOCK_PREFIX "sbk_"
#define RISK_LISTS_CLEAR_PREFIX "scl_"
#define RISK_LISTS_REF_UNSCREENABLE "unscreenable"

enum risk_lists_kind { RISK_LISTS_SDN = 1, RISK_LISTS_SIMPLE = 2 };

enum risk_lists_outcome {
    RISK_LISTS_CLEAR = 1,  /* every name screened, nothing reached the threshold */
    RISK_LISTS_HIT = 2,    /* at least one hit */
    RISK_LISTS_REVIEW = 3, /* no hit, but a name the matcher refused: a person must look */
};

enum risk_lists_event_kind { RISK_LISTS_EVENT_BLOCK = 1, RISK_LISTS_EVENT_CLEAR = 2 };

/* Names: "sdn", "simple"; "clear", "hit", "review"; "block", "clear". "" out of range. The
 * kind's parser answers 0 for an unknown name. */
const char *risk_lists_kind_name(uint8_t kind);
uint8_t risk_lists_kind_parse(const char *name);
const char *risk_lists_outcome_name(uint8_t outcome);
const char *risk_lists_event_name(uint8_t kind);

/* Types -----------------------------------------------------------------------------------------
 */

/* A list as loaded (the current state of a name, or one load of the history). */
struct risk_list {
    uint64_t row; /* the load's row: the history's order */
    char load_id[RISK_LISTS_ID_BYTES_MAX];
    char name[RISK_LISTS_NAME_BYTES_MAX];
    uint8_t kind; /* enum risk_lists_kind */
    uint64_t version;
    uint32_t entries;
    uint64_t content_bytes;
    uint64_t alt_bytes; /* 0 when no aliases file */
    bool changed;       /* this load's version differed from the name's before it (or it was new) */
    char loaded_by[RISK_LISTS_PARTY_BYTES_MAX];
    int64_t loaded_at_us;
};

/* What a load stores: the name, kind, the file(s) (alt: the SDN aliases file, NULL for none)
 * and what parsing them found. */
struct risk_list_load {
    const char *name;
    uint8_t kind;
    const char *content;
    size_t content_len; /* 0..WATCHLIST_FILE_BYTES_MAX */
    const char *alt;
    size_t alt_len;
    uint64_t version;
    uint32_t entries; /* 0..WATCHLIST_ENTRIES_MAX */
};

/* A list's name and version, as a screening ran against it. */
struct risk_list_version {
    char name[RISK_LISTS_NAME_BYTES_MAX];
    uint64_t version;
};

/* One hit of a screening. */
struct risk_screen_hit {
    char list[RISK_LISTS_NAME_BYTES_MAX];
    char entry_id[RISK_LISTS_ENTRY_BYTES_MAX];
    char ref[RISK_LISTS_REF_BYTES_MAX];              /* filled by risk_lists_screening_put/get */
    char matched_name[RISK_LISTS_MATCHED_BYTES_MAX]; /* the listed name, as the list gives it */
    int score;       /* 0..SCREEN_SCORE_MAX, after the date-of-birth move */
    int name_score;  /* 0..SCREEN_SCORE_MAX */
    uint8_t dob;     /* enum watchlist_agreement */
    uint8_t country; /* enum watchlist_agreement */
};

/* A subject's last screening (its hits apart). */
struct risk_screening {
    char subject[RISK_LISTS_PARTY_BYTES_MAX];
    char trigger[RISK_LISTS_TRIGGER_BYTES_MAX];
    uint8_t outcome; /* enum risk_lists_outcome */
    int64_t at_us;
    struct risk_list_version lists[RISK_LISTS_MAX]; /* the lists it ran against */
    size_t lists_n;
    uint32_t names_n;        /* names screened (the matcher's refusals included) */
    uint32_t unscreenable_n; /* names the matcher refused */
    uint32_t hits_total;     /* hits found; hits_n of them kept */
    uint32_t hits_n;         /* 0..RISK_LISTS_HITS_MAX */
};

/* A subject's block as it stands. */
struct risk_screen_block {
    bool blocked;
    char event_id[RISK_LISTS_ID_BYTES_MAX]; /* the block event, "" when not blocked */
    char case_id[RISK_LISTS_ID_BYTES_MAX];  /* the case its hits went to, "" when none yet */
    int64_t since_us;                       /* 0 when not blocked */
    int64_t screened_at_us;                 /* the last screening's time */
};

/* One block or clear event. */
struct risk_screen_event {
    uint64_t row;
    char id[RISK_LISTS_ID_BYTES_MAX];
    uint8_t kind; /* enum risk_lists_event_kind */
    char subject[RISK_LISTS_PARTY_BYTES_MAX];
    char case_id[RISK_LISTS_ID_BYTES_MAX];    /* a clear for a case: the case; else "" */
    char block_id[RISK_LISTS_ID_BYTES_MAX];   /* a clear: the block it lifted */
    char reason[RISK_LISTS_REASON_BYTES_MAX]; /* a clear's, opened by risk_lists_events; else "" */
    char by[RISK_LISTS_PARTY_BYTES_MAX];      /* a staff id, or "sanctions" for a block */
    int64_t at_us;
};

/* A caller's idempotency key (1..RISK_LISTS_IDEM_BYTES_MAX - 1 printable ASCII bytes,
 * namespaced by the caller: "usr_1:key", "case:cas_9:screening_clear") and its request's
 * SHA-256. */
struct risk_lists_idem {
    const char *key;
    uint8_t request_hash[HASH_BYTES];
};

struct risk_lists;

/* The current master keys: key_id 0 for the active set (sealing), else a set holding key_id
 * (opening); NULL when none holds it (payments_vault_fn's contract). */
typedef const struct vault *(*risk_lists_vault_fn)(void *ctx, uint32_t key_id);

/* Applies the "risk_lists" schema to db and returns the handle (risk_lists_close frees it).
 * db and the vault's owner must outlive the handle. */
CF_WARN_UNUSED enum cf_err risk_lists_open(struct sqldb *db, risk_lists_vault_fn vault,
                                           void *vault_ctx, struct risk_lists **out);
void risk_lists_close(struct risk_lists *l); /* NULL ok */

/* Validation (pure) ----------------------------------------------------------------------------
 */

/* Whether text is a list name: 1..RISK_LISTS_NAME_BYTES_MAX - 1 of [a-z0-9_]. */
bool risk_lists_name_valid(const char *text);
/* Whether text is a subject: "usr_" or "mer_" and a valid id code. */
bool risk_lists_party_valid(const char *text);
/* Whether text is a trigger: "registration", "kyc", "payee", "merchant_onboarding",
 * "rescreen" or "manual". */
bool risk_lists_trigger_valid(const char *text);
/* Whether text is a clear's reason (1..RISK_LISTS_REASON_CHARS_MAX characters of UTF-8 without
 * control characters but tab, CR and LF); *detail_out (may be NULL) says why not. */
bool risk_lists_reason_valid(const char *text, const char **detail_out);
/* The reference of a hit on entry_id of list (a valid name; entry_id 1..WATCHLIST_ID_BYTES_MAX
 * bytes, else a caller bug), as the top of this file says. */
void risk_lists_hit_ref(const char *list, const char *entry_id, char out[RISK_LISTS_REF_BYTES_MAX]);

/* Lists ----------------------------------------------------------------------------------------
 */

/* Stores a load: replaces the name's bytes (or adds the name) and appends the history row, by
 * `by` (1..RISK_LISTS_PARTY_BYTES_MAX - 1 printable ASCII bytes) at now_us. idem may be NULL.
 * *out gets the load (the stored one on a replay: its bytes may have been replaced since) and
 * *replay_out whether idem's key had made it. CF_ERR_CONFLICT for a new name when
 * RISK_LISTS_MAX lists exist. */
CF_WARN_UNUSED enum cf_err risk_lists_put(struct risk_lists *l, const struct risk_list_load *in,
                                          const char *by, const struct risk_lists_idem *idem,
                                          int64_t now_us, struct risk_list *out, bool *replay_out);
/* The load idem's key made: CF_OK (*out), CF_ERR_NOT_FOUND for a new key, or
 * CF_ERR_IDEM_KEY_REUSED when it made a load of another request or name (name NULL: any). */
CF_WARN_UNUSED enum cf_err risk_lists_load_by_idem(struct risk_lists *l,
                                                   const struct risk_lists_idem *idem,
                                                   const char *name, struct risk_list *out);
/* The current lists, by name, at most max (<= RISK_LISTS_MAX); *n_out may be 0. */
CF_WARN_UNUSED enum cf_err risk_lists_all(struct risk_lists *l, struct risk_list *out, size_t max,
                                          size_t *n_out);
/* The current bytes of list `name`: *content_out and *alt_out (NULL when none) are malloc'd
 * (the caller frees them), *meta_out the list. CF_ERR_NOT_FOUND for a name never loaded. */
CF_WARN_UNUSED enum cf_err risk_lists_bytes(struct risk_lists *l, const char *name,
                                            struct risk_list *meta_out, char **content_out,
                                            size_t *content_len_out, char **alt_out,
                                            size_t *alt_len_out);
/* The last load's row (0 before any): it grows with every load, in every process. */
CF_WARN_UNUSED enum cf_err risk_lists_seq(struct risk_lists *l, uint64_t *seq_out);

/* Screenings -----------------------------------------------------------------------------------
 */

/* Records s (subject, trigger, outcome, time, lists, counts; hits_n = n) and its hits[0..n)
 * (n <= RISK_LISTS_HITS_MAX; list, entry_id, matched_name, scores, agreements set; their refs are
 * computed here), replacing the subject's last screening, and blocks the subject when a hit's
 * reference (or, with unscreenable_n > 0, "unscreenable") is not cleared for it and it is not
 * blocked already. *block_out gets the block as it stands after, *blocked_now_out (may be NULL)
 * whether this call recorded the block event. */
CF_WARN_UNUSED enum cf_err risk_lists_screening_put(struct risk_lists *l,
                                                    const struct risk_screening *s,
                                                    const struct risk_screen_hit *hits, size_t n,
                                                    struct risk_screen_block *block_out,
                                                    bool *blocked_now_out);
/* The subject's last screening, its hits (at most max, best first) and its block.
 * CF_ERR_NOT_FOUND for a subject never screened (also a malformed one). */
CF_WARN_UNUSED enum cf_err risk_lists_screening_get(struct risk_lists *l, const char *subject,
                                                    struct risk_screening *out,
                                                    struct risk_screen_hit *hits, size_t max,
                                                    struct risk_screen_block *block_out);
/* The subject's block (one primary-key read, for the payment path). CF_ERR_NOT_FOUND for a
 * subject never screened (also a malformed one). */
CF_WARN_UNUSED enum cf_err risk_lists_block_peek(struct risk_lists *l, const char *subject,
                                                 struct risk_screen_block *out);
/* Names the case of the subject's current block (event_id: the block it must still be): CF_OK
 * also when the block was cleared meanwhile (nothing changes then). */
CF_WARN_UNUSED enum cf_err risk_lists_block_case_set(struct risk_lists *l, const char *subject,
                                                     const char *event_id, const char *case_id);
/* Clears the subject's block: records the clear event (reason as risk_lists_reason_valid, by as
 * for risk_lists_put, case_id NULL for a staff clear, else the case whose decision cleared it),
 * marks the last screening's references cleared for the subject and lifts the block, in one
 * transaction. *out gets the event (reason opened), *replay_out whether idem's key made it.
 * CF_ERR_NOT_FOUND when the subject is not blocked; CF_ERR_CONFLICT when case_id is given and
 * the block names another case. */
CF_WARN_UNUSED enum cf_err
risk_lists_block_clear(struct risk_lists *l, const char *subject, const char *reason,
                       const char *by, const char *case_id, const struct risk_lists_idem *idem,
                       int64_t now_us, struct risk_screen_event *out, bool *replay_out);
/* The subject's block and clear events, newest first, at most max (<= RISK_LISTS_EVENTS_MAX),
 * reasons opened; *n_out may be 0. */
CF_WARN_UNUSED enum cf_err risk_lists_events(struct risk_lists *l, const char *subject,
                                             struct risk_screen_event *out, size_t max,
                                             size_t *n_out);
/* The subjects ever screened whose id sorts after `after` ("" or NULL: from the first), in id
 * order, at most max (<= RISK_LISTS_SUBJECTS_PAGE_MAX); the last one is the next page's after. */
CF_WARN_UNUSED enum cf_err risk_lists_subjects(struct risk_lists *l, const char *after,
                                               char (*out)[RISK_LISTS_PARTY_BYTES_MAX], size_t max,
                                               size_t *n_out);

#endif
