/*
 * watchlist.h - sanctions and watchlists in memory: loading (OFAC SDN layout, simple CSV) and
 * screening a name against every entry with a prefilter that never loses a hit.
 *
 * A list is a set of entries: {id (the list's own uid), type, primary name, aliases, dates of
 * birth, country, program, list name}; each name is kept as given for display and normalized
 * once (screen.h) for matching. A list is built by one loader and is immutable afterwards, so
 * any number of threads may screen against it at once; watchlist_destroy must not race them.
 *
 * Loaders take the files' bytes (no NUL needed; a NUL byte is refused) and read them as RFC 4180
 * CSV: fields separated by ',', records ended by LF or CRLF (the last may be unterminated), a
 * field that starts with '"' runs to the next lone '"' and may hold ',', CR, LF and doubled
 * quotes ('""' is one '"'); a '"' anywhere else, anything but ',' or the end of the record after
 * a closing quote, a lone CR, an unterminated quote, or a field longer than
 * WATCHLIST_FIELD_BYTES_MAX are errors. Empty lines between records are skipped; a UTF-8 byte
 * order mark at the start, and one SUB byte (0x1A, which sdn.csv ends with) at the very end, are
 * ignored. Every record must have its layout's field count.
 *
 * (a) OFAC SDN (watchlist_sdn_parse). sdn.csv has no header; 12 fields: ent_num, SDN_Name,
 *     SDN_Type, Program, Title, Call_Sign, Vess_type, Tonnage, GRT, Vess_flag, Vess_owner,
 *     Remarks. "-0-" (spaces around it allowed) is an empty field, and fields are trimmed of
 *     ASCII spaces. ent_num is a decimal 1..4294967295, unique, and becomes the entry id;
 *     SDN_Name is required ("LAST, First Middle" for individuals is kept as given: the matcher
 *     ignores word order); SDN_Type is "individual", "vessel", "aircraft" or empty (an entity),
 *     any case. From Remarks: every "DOB" clause up to its ';' ("DOB 12 Jan 1960", "DOB 1960",
 *     "DOB circa 1960", "alt. DOB Jan 1961", "DOB 1958 to 1962") gives a year range (circa widens
 *     it by WATCHLIST_DOB_CIRCA_YEARS); the first clause is kept as the display date of birth; a
 *     clause without a year is ignored (remarks are free text). The first "nationality X;" (or
 *     "citizen X;") clause is the country. The optional alt.csv (5 fields: ent_num, alt_num,
 *     alt_type, alt_name, alt_remarks) adds alt_name as an alias of the entry with that ent_num,
 *     in file order; an ent_num that sdn.csv lacks, or an empty alt_name, is an error. An empty
 *     sdn.csv is an empty list. Names must be UTF-8 (the published files are ASCII).
 * (b) Simple CSV (watchlist_csv_parse). A header line names the columns, in any order: name
 *     (required), and optionally id, aliases, date_of_birth, country, type; an unknown or
 *     repeated column is an error. aliases holds names separated by ';' (blanks around them and
 *     empty pieces are dropped); date_of_birth is empty, "YYYY", "YYYY-MM" or "YYYY-MM-DD";
 *     type is empty or one of the SDN words plus "entity". Without an id column the id is the
 *     record's 1-based number among the data records (it changes when rows are inserted, so
 *     lists that cases will refer to should carry ids); ids must be unique and non-empty.
 *
 * Limits (all errors, never truncation): file bytes, entries, aliases per entry, names in all,
 * field bytes, id and country bytes, and screen.h's bounds on each name (a name
 * screen_name_normalize refuses fails the load at its line). Remarks are free text and are only
 * mined: DOB clauses past WATCHLIST_DOBS_MAX, and a DOB or nationality clause of
 * WATCHLIST_SHORT_TEXT_BYTES_MAX bytes or more, are not kept for display.
 *
 * Screening (watchlist_screen): the query name is normalized; every list name whose
 * screen_name_score against it, adjusted for the date of birth, reaches the threshold is a hit;
 * an entry hits once, on its best name (primary or alias). Date of birth: when the query gives
 * one and the entry has any, the query's year inside one of the entry's ranges AGREES and adds
 * WATCHLIST_DOB_AGREE_BONUS, outside all of them CONFLICTS and subtracts
 * WATCHLIST_DOB_CONFLICT_PENALTY (the score stays in 0..1000); otherwise it is UNKNOWN. Country
 * is reported (agree when equal ignoring ASCII case and blanks around it, conflict when both are
 * given and differ) but does not move the score: a listed nationality and a customer's country
 * of residence differ too often to mean anything alone.
 *
 * Prefilter: every distinct span (screen.h) of every list name is indexed once with its
 * screen_sig, sorted by length, spans some name holds as a single token apart from the
 * composite-only ones. Each query span is tested, through a screen_probe (the same test as
 * screen_sig_bound >= floor, without divisions), against the spans it may pair with: a single
 * query span against every single list span and the composite ones in its length window
 * (screen_composite_lengths), a composite query span against the single list spans in its
 * window; where the bound reaches the floor (the threshold, less the DOB bonus when a date was
 * given) screen_span_similarity decides, and only list names holding a span at or above the
 * floor are scored. This is exact, not a heuristic: a name score never exceeds its best pair's
 * similarity (screen.h) and the bound never falls below the similarity, so no name that could
 * hit is skipped. watchlist_screen_scan scores every name instead; tests check that both give
 * the same hits. Cost, measured by bench_screen on a generated list of 10000 entries (about
 * 13000 names) on a shared 2-core machine: 1.3 ms per query on one thread (the full scan: 17
 * ms), some 440 names scored of the 13000; 100000 customers took 105 s on 2 threads.
 *
 * Version: watchlist_version is a 64-bit FNV-1a over the loaded bytes (for the SDN layout the
 * lengths and bytes of sdn.csv and then alt.csv; for a simple CSV its length and bytes). It
 * tells that a list changed (and everyone must be screened again); it is a change detector, not
 * a security hash: anyone can craft a collision.
 *
 * Errors: CF_ERR_PAYLOAD_TOO_LARGE for a file over WATCHLIST_FILE_BYTES_MAX;
 * CF_ERR_INVALID_FIELD for malformed content or a limit exceeded (with the 1-based line);
 * CF_ERR_NOMEM; for watchlist_file_read CF_ERR_NOT_FOUND and CF_ERR_IO. Outputs are untouched on
 * failure (the bad-line outputs excepted, written only on failure).
 */
#ifndef COFFER_RISK_WATCHLIST_H
#define COFFER_RISK_WATCHLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "risk/screen.h"

/* One list file: the published sdn.csv is about 3 MiB and alt.csv smaller; room for growth. */
#define WATCHLIST_FILE_BYTES_MAX (64 * 1024 * 1024)

/* Entries of one list: the SDN list has about 16000, consolidated lists a few thousand. */
#define WATCHLIST_ENTRIES_MAX 50000

/* Aliases of one entry: large networks on the SDN list carry several dozen. */
#define WATCHLIST_ALIASES_MAX 256

/* Names (primary and aliases) of one list: each costs about 100 bytes of index. */
#define WATCHLIST_NAMES_MAX 400000

/* One CSV field: SDN remarks run to a few KiB. */
#define WATCHLIST_FIELD_BYTES_MAX 8192

/* Fields of one CSV record: the SDN layout has 12. */
#define WATCHLIST_CSV_FIELDS_MAX 16

/* Unquoted bytes of one CSV record (all its fields). */
#define WATCHLIST_RECORD_BYTES_MAX (WATCHLIST_CSV_FIELDS_MAX * WATCHLIST_FIELD_BYTES_MAX)

/* The text of one list: each name as given and folded, ids, remarks we keep; the files' bytes
 * bound it well below this. Offsets into it are 32-bit. */
#define WATCHLIST_POOL_BYTES_MAX (1024u * 1024 * 1024)

/* An entry id, and the short texts kept for display (longer is an error). */
#define WATCHLIST_ID_BYTES_MAX 64
#define WATCHLIST_LIST_NAME_BYTES_MAX 64
#define WATCHLIST_SHORT_TEXT_BYTES_MAX 128

/* Date-of-birth year ranges kept per entry; further "alt. DOB" clauses are ignored. */
#define WATCHLIST_DOBS_MAX 4

/* "DOB circa 1960" covers 1958..1962. */
#define WATCHLIST_DOB_CIRCA_YEARS 2

/* Score moves for a date of birth (thousandths): an agreeing year is a little more evidence, a
 * conflicting one much less likely the same person, so a fuzzy name (900) with another year
 * drops below the default threshold while an exact name (1000) stays a hit for a person to see. */
#define WATCHLIST_DOB_AGREE_BONUS 20
#define WATCHLIST_DOB_CONFLICT_PENALTY 100

struct watchlist;

enum watchlist_type {
    WATCHLIST_TYPE_UNKNOWN,
    WATCHLIST_TYPE_INDIVIDUAL,
    WATCHLIST_TYPE_ENTITY,
    WATCHLIST_TYPE_VESSEL,
    WATCHLIST_TYPE_AIRCRAFT,
};

enum watchlist_agreement {
    WATCHLIST_UNKNOWN, /* a side did not say */
    WATCHLIST_AGREE,
    WATCHLIST_CONFLICT,
};

/* An entry for display. Strings are NUL-terminated, owned by the list, "" when absent. */
struct watchlist_entry_view {
    const char *id;
    const char *name; /* the primary name as given */
    const char *dob;  /* the first date of birth as given */
    const char *country;
    const char *program;
    const char *list_name;
    enum watchlist_type type;
    size_t aliases_n;
};

struct watchlist_query {
    const char *name; /* UTF-8, name_len bytes */
    size_t name_len;
    const char *dob;     /* NULL, "" or "YYYY", "YYYY-MM", "YYYY-MM-DD" */
    const char *country; /* NULL, "" or text */
    int threshold;       /* 0..SCREEN_SCORE_MAX; SCREEN_THRESHOLD_DEFAULT unless tuned */
};

struct watchlist_hit {
    size_t entry;   /* index for watchlist_entry_get */
    size_t name;    /* 0 = the primary name, k = alias k (watchlist_name_get) */
    int score;      /* after the date-of-birth move, >= threshold */
    int name_score; /* screen_name_score of the best name */
    enum watchlist_agreement dob, country;
};

struct watchlist_result {
    size_t hits_n;       /* written to hits[] */
    size_t hits_total;   /* found; more than hits_n when hits_max was too small */
    size_t names_scored; /* list names the full score ran on (prefilter survivors) */
};

/*
 * Parses the OFAC SDN layout: sdn[0..sdn_len) and, when alt is not NULL, alt[0..alt_len). On
 * success *out is a new list (free with watchlist_destroy). On failure *out is untouched and,
 * for CF_ERR_INVALID_FIELD, *bad_line_out is the 1-based line and *bad_in_alt_out says whether
 * it is in alt.csv. list_name (1..WATCHLIST_LIST_NAME_BYTES_MAX bytes, a caller bug otherwise)
 * names the list in hits ("ofac-sdn").
 */
CF_WARN_UNUSED enum cf_err watchlist_sdn_parse(const char *sdn, size_t sdn_len, const char *alt,
                                               size_t alt_len, const char *list_name,
                                               struct watchlist **out, size_t *bad_line_out,
                                               bool *bad_in_alt_out);

/* Parses a simple CSV list text[0..len); as watchlist_sdn_parse otherwise. */
CF_WARN_UNUSED enum cf_err watchlist_csv_parse(const char *text, size_t len, const char *list_name,
                                               struct watchlist **out, size_t *bad_line_out);

/*
 * Reads the file at path whole into a new buffer (*text_out, *len_out; free with free()). The
 * module's only I/O. CF_ERR_NOT_FOUND when it does not exist, CF_ERR_PAYLOAD_TOO_LARGE above
 * WATCHLIST_FILE_BYTES_MAX, CF_ERR_IO for any other failure, CF_ERR_NOMEM.
 */
CF_WARN_UNUSED enum cf_err watchlist_file_read(const char *path, char **text_out, size_t *len_out);

/* Frees a list (NULL is fine). No screening may run on it any more. */
void watchlist_destroy(struct watchlist *list);

size_t watchlist_entries_n(const struct watchlist *list);

/* The change detector of the loaded bytes (header). */
uint64_t watchlist_version(const struct watchlist *list);

/* Entry i (< watchlist_entries_n, else a caller bug) for display. */
void watchlist_entry_get(const struct watchlist *list, size_t i, struct watchlist_entry_view *out);

/* Name k of entry i as given: 0 the primary name, 1..aliases_n the aliases (else a caller bug). */
const char *watchlist_name_get(const struct watchlist *list, size_t i, size_t k);

/*
 * Screens q against the list. On success hits[0..result->hits_n) hold the hits with the highest
 * scores, best first (ties by entry index), at most hits_max of them, and *result says how many
 * were found in all. CF_ERR_INVALID_FIELD when the name is refused by screen_name_normalize or
 * the date of birth is malformed; CF_ERR_NOMEM. A threshold outside 0..SCREEN_SCORE_MAX is a
 * caller bug. Thread-safe on a shared list; hits and result are untouched on failure.
 */
CF_WARN_UNUSED enum cf_err watchlist_screen(const struct watchlist *list,
                                            const struct watchlist_query *q,
                                            struct watchlist_hit *hits, size_t hits_max,
                                            struct watchlist_result *result);

/* The same, scoring every list name without the prefilter: the reference the prefilter is
 * tested against, and a fallback to measure it. */
CF_WARN_UNUSED enum cf_err watchlist_screen_scan(const struct watchlist *list,
                                                 const struct watchlist_query *q,
                                                 struct watchlist_hit *hits, size_t hits_max,
                                                 struct watchlist_result *result);

/* The CSV reader the loaders use, for other CSV inputs (test data, imports). ------------------ */

struct watchlist_field {
    const char *text; /* in the reader's buffer; not NUL-terminated */
    size_t len;
};

struct watchlist_csv {
    const char *text;
    size_t len, pos, line;
    char *buf; /* unquoted fields; valid until the next call */
    size_t buf_bytes;
};

/* Starts reading text[0..len) (a leading byte order mark is skipped) with buf[0..buf_bytes) as
 * room for one record's unquoted fields. */
void watchlist_csv_init(struct watchlist_csv *r, const char *text, size_t len, char *buf,
                        size_t buf_bytes);

/*
 * Reads the next record into fields[0..*n_out) (at most cap, WATCHLIST_CSV_FIELDS_MAX at most);
 * *n_out is 0 at the end of the input. *line_out is the 1-based line the record starts on, or on
 * failure the line of the fault. CF_ERR_INVALID_FIELD for anything the header comment refuses,
 * more than cap fields, or fields that do not fit buf.
 */
CF_WARN_UNUSED enum cf_err watchlist_csv_next(struct watchlist_csv *r,
                                              struct watchlist_field *fields, size_t cap,
                                              size_t *n_out, size_t *line_out);

#endif
