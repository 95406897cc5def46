/*
 * reconcile.h - reconciliation of a gateway's settlement file with Coffer's gateway operations
 * (top-ups, withdrawals, merchant payouts): a strict CSV reader, the file's rows, and a
 * comparator that lists every mismatch.
 *
 * The file is CSV as RFC 4180 writes it: records end in CRLF or LF (a lone CR is refused, the
 * last record may lack its line break), fields are separated by commas, a field that holds a
 * comma, a quote or a line break is quoted and its quotes doubled. A UTF-8 byte order mark at
 * the very start is skipped (spreadsheets write one); blank lines are skipped; NUL bytes are
 * refused. The first record is the header, exactly
 *
 *     reference,op_id,type,amount_minor,currency,status
 *
 * and every other record has exactly those six fields: reference (the gateway's, 1 to 63
 * printable ASCII characters without spaces), op_id (Coffer's operation id as Coffer sent it,
 * or empty), type (charge | payout), amount_minor (a whole number of minor units, 0 to
 * INT64_MAX, digits only), currency (1 to 12 of A-Z, 0-9, '_') and status (settled | failed).
 * Fewer or more columns, an unknown header, a malformed value: the whole file is refused with
 * the line of the offending record (the line its first character is on; the header is line 1,
 * the byte order mark does not count). At most RECONCILE_ROWS_MAX rows and
 * RECONCILE_FILE_BYTES_MAX bytes.
 *
 * Matching. A row names its operation by op_id when it has one Coffer knows, else by its
 * reference (an operation's gateway_ref). A charge is a top-up; a payout is a withdrawal or a
 * merchant payout. Every mismatch has a kind:
 *
 *   missing_in_coffer   the row names no operation Coffer has (among those compared)
 *   missing_in_gateway  a completed operation created inside the window that no row names
 *                       (failed operations moved nothing and waiting ones have not settled:
 *                       their absence is no mismatch)
 *   duplicated          a row whose reference or op_id an earlier row already has, or that
 *                       names an operation an earlier row already matched; compared no further
 *   type_differs        charge against a withdrawal or payout, or payout against a top-up
 *   reference_differs   the row and the operation disagree on the gateway reference (both
 *                       known), or the row's op_id is unknown but its reference is an
 *                       operation's
 *   currency_differs    the currencies differ (the amounts are then not compared)
 *   amount_differs      same currency, different amounts
 *   status_differs      settled against an operation not completed, failed against one not
 *                       failed (a completed one or one still waiting)
 *
 * A row may have several (type, reference, currency or amount, status); a row with none is
 * matched. Mismatches come in file order (per row in the order above after duplicated), then
 * missing_in_gateway in the order of the operations given.
 *
 * The window. Operations are compared when they were created in [from, to) widened by
 * RECONCILE_MARGIN_US on each side: one settled just after midnight is in the next day's file,
 * so a row may name an operation of the margin, but only those inside [from, to) can be
 * missing_in_gateway. Without from, the window starts at the beginning; without to, it never
 * ends: with neither, the whole history is compared (then a daily file reports every older
 * completed operation missing_in_gateway, so give the file's day).
 *
 * Memory: everything returned lives in the arena the caller passes, and dies with it. The
 * parsing and comparing functions are pure (no clock, no I/O) and may run on any thread.
 *
 * Errors: CF_ERR_INVALID_FIELD for a malformed file or window, with struct recon_error saying
 * which field ("csv", "from", "to"), on which line and why; CF_ERR_PAYLOAD_TOO_LARGE past
 * RECONCILE_FILE_BYTES_MAX; CF_ERR_NOMEM when the arena is full; the storage errors of
 * store/sql/sql.h for the query. Outputs are untouched on error.
 */
#ifndef COFFER_PAYMENTS_RECONCILE_H
#define COFFER_PAYMENTS_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/limits.h"
#include "payments/payments.h"

/* A settlement file: a busy day of a large wallet (100 000 gateway operations) fits, and the
 * rows, the operations and their indexes stay within RECONCILE_ARENA_BYTES_MAX. */
#define RECONCILE_ROWS_MAX 100000
/* 100 000 rows of ~150 bytes (quoted long references) with room. */
#define RECONCILE_FILE_BYTES_MAX (16 * 1024 * 1024)
/* Coffer's side: the gateway operations of one window, as many as a file may have rows. */
#define RECONCILE_OPS_MAX RECONCILE_ROWS_MAX
/* A field as read: the longest valid one is a reference (PAY_REF_BYTES_MAX - 1 = 63 bytes);
 * one longer is refused as soon as it passes this, however long it goes on. */
#define RECONCILE_FIELD_BYTES_MAX 64
/* Columns of the file. */
#define RECONCILE_COLUMNS 6
/* The window's margin: a gateway settles an operation within a day of its creation. */
#define RECONCILE_MARGIN_US (24LL * 3600 * 1000000)
/* What one reconciliation may allocate: the rows and the operations (~150 bytes each), their
 * sorted indexes and the mismatches at their bounds, with room for the arena's growth. */
#define RECONCILE_ARENA_BYTES_MAX (128 * 1024 * 1024)
/* An error's message. */
#define RECONCILE_ERROR_BYTES_MAX 160

/* No row or no operation in a mismatch. */
#define RECON_NONE UINT32_MAX

enum recon_type {
    RECON_TYPE_CHARGE = 1, /* money in: a top-up */
    RECON_TYPE_PAYOUT = 2, /* money out: a withdrawal or a merchant payout */
};

/* Where money stands, on either side. */
enum recon_state {
    RECON_STATE_OPEN = 0,    /* Coffer only: processing, pending or waiting for a challenge */
    RECON_STATE_SETTLED = 1, /* the gateway's settled, Coffer's completed */
    RECON_STATE_FAILED = 2,
};

enum recon_kind {
    RECON_MISSING_IN_COFFER = 1,
    RECON_MISSING_IN_GATEWAY = 2,
    RECON_DUPLICATED = 3,
    RECON_TYPE_DIFFERS = 4,
    RECON_REFERENCE_DIFFERS = 5,
    RECON_CURRENCY_DIFFERS = 6,
    RECON_AMOUNT_DIFFERS = 7,
    RECON_STATUS_DIFFERS = 8,
    RECON_KIND_MAX = 8,
};

/* One row of the file. */
struct recon_row {
    char reference[PAY_REF_BYTES_MAX];
    char op_id[PAY_ID_BYTES_MAX]; /* "" when the gateway gave none */
    uint8_t type;                 /* enum recon_type */
    uint8_t state;                /* RECON_STATE_SETTLED or RECON_STATE_FAILED */
    int64_t amount_minor;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    uint32_t line; /* where the record starts; the header is line 1 */
};

/* One gateway operation of Coffer's. */
struct recon_op {
    char id[PAY_ID_BYTES_MAX];
    char gateway_ref[PAY_REF_BYTES_MAX]; /* "" while the gateway has not answered */
    uint8_t kind;                        /* PAY_KIND_TOPUP, _WITHDRAWAL or _PAYOUT */
    uint8_t status;                      /* enum pay_status */
    int64_t amount_minor;
    char currency[MONEY_CODE_BYTES_MAX + 1];
    int64_t created_at_us;
};

struct recon_mismatch {
    uint32_t row; /* index into the rows, or RECON_NONE */
    uint32_t op;  /* index into the operations, or RECON_NONE */
    uint8_t kind; /* enum recon_kind */
};

struct recon_result {
    struct recon_mismatch *mismatches; /* in the arena */
    size_t mismatches_n;
    size_t matched;                     /* rows that matched with nothing differing */
    size_t by_kind[RECON_KIND_MAX + 1]; /* mismatches of each kind */
};

/* Why a file or a window was refused. */
struct recon_error {
    const char *field; /* "csv", "from" or "to" (static) */
    uint32_t line;     /* the file's line, 0 when it is not about a line */
    char message[RECONCILE_ERROR_BYTES_MAX];
};

/* The CSV reader ------------------------------------------------------------------------------ */

/* A reader over text[0..len) (which need not be NUL-terminated); set it with recon_csv_init. */
struct recon_csv {
    const char *text;
    size_t len;
    size_t pos;
    uint32_t line; /* of the character at pos */
};
void recon_csv_init(struct recon_csv *c, const char *text, size_t len);
/*
 * Reads the next record into fields (NUL-terminated, each RECONCILE_FIELD_BYTES_MAX + 1
 * bytes): *n_out fields, *line_out the line it starts on. At the end of the text *n_out is 0.
 * Blank lines are skipped. CF_ERR_INVALID_FIELD (with *e filled) for a record of more than
 * fields_max fields, a field longer than RECONCILE_FIELD_BYTES_MAX bytes, a quote inside an
 * unquoted field, text after a closing quote, a quote left open, a lone CR or a NUL byte; the
 * reader must not be used after an error.
 */
CF_WARN_UNUSED enum cf_err recon_csv_next(struct recon_csv *c,
                                          char (*fields)[RECONCILE_FIELD_BYTES_MAX + 1],
                                          size_t fields_max, size_t *n_out, uint32_t *line_out,
                                          struct recon_error *e);

/* The file, the comparison ------------------------------------------------------------------- */

/* Parses a settlement file (text[0..len)) into *rows_out (in arena), *n_out of them. */
CF_WARN_UNUSED enum cf_err recon_file_parse(const char *text, size_t len, struct arena *arena,
                                            struct recon_row **rows_out, size_t *n_out,
                                            struct recon_error *e);

/* Where Coffer's pay_status puts an operation. */
enum recon_state recon_state_of(uint8_t pay_status);
const char *recon_kind_name(uint8_t kind);
const char *recon_type_name(uint8_t type);
/* "settled" / "failed" for a row. */
const char *recon_state_name(uint8_t state);

/*
 * Compares rows (at most RECONCILE_ROWS_MAX) with ops (at most RECONCILE_OPS_MAX; operation
 * ids unique) for the window [from_us, to_us) (operations outside it are matched when named but
 * never missing_in_gateway). *out gets the mismatches (in arena) and the counts. CF_ERR_NOMEM
 * when the arena is full.
 */
CF_WARN_UNUSED enum cf_err recon_compare(const struct recon_row *rows, size_t rows_n,
                                         const struct recon_op *ops, size_t ops_n, int64_t from_us,
                                         int64_t to_us, struct arena *arena,
                                         struct recon_result *out);

/* One mismatch as a line of text (no line break), for the command line:
 *   amount_differs line=4 reference=sbx_.. op_id=top_.. gateway=1000 USD settled
 *   coffer=900 USD completed
 * Fields without a value are left out. Returns what snprintf returns. */
int recon_mismatch_format(const struct recon_mismatch *m, const struct recon_row *rows,
                          const struct recon_op *ops, char *out, size_t out_bytes);

/* The window ---------------------------------------------------------------------------------- */

/* [from, to) from two optional texts (NULL or "" for none): "YYYY-MM-DD" (midnight UTC) or
 * "YYYY-MM-DDTHH:MM:SSZ". No from: 0; no to: INT64_MAX. CF_ERR_INVALID_FIELD for a malformed
 * one or from >= to. */
CF_WARN_UNUSED enum cf_err recon_window_parse(const char *from, const char *to, int64_t *from_us,
                                              int64_t *to_us, struct recon_error *e);

/* Coffer's side (recon_query.c) --------------------------------------------------------------- */

/*
 * The gateway operations (top-ups, withdrawals, payouts) created in [from_us, to_us), in the
 * order they were made, into *out (in arena): all of them, read a page of at most SQL_ROWS_MAX
 * at a time, from the set that existed when the call began. More than max of them:
 * *more is set and the first max are returned.
 */
CF_WARN_UNUSED enum cf_err payments_recon_ops(struct payments *p, int64_t from_us, int64_t to_us,
                                              size_t max, struct arena *arena,
                                              struct recon_op **out, size_t *n_out, bool *more);

/* A whole reconciliation: the file parsed, the operations of the window (with its margin)
 * read, the two compared. */
struct recon_report {
    struct recon_row *rows;
    size_t rows_n;
    struct recon_op *ops;
    size_t ops_n;
    int64_t from_us, to_us; /* the window (without the margin) */
    struct recon_result result;
};
/* Runs it for text[0..len) and the window [from_us, to_us). CF_ERR_INVALID_FIELD with *e for a
 * malformed file, or (field "from") for a window of more than RECONCILE_OPS_MAX operations. */
CF_WARN_UNUSED enum cf_err payments_reconcile(struct payments *p, const char *text, size_t len,
                                              int64_t from_us, int64_t to_us, struct arena *arena,
                                              struct recon_report *out, struct recon_error *e);

#endif
