/*
 * requests.h - payment requests ("collect money") and bill splits, in the payments tables.
 *
 * A customer (the requester) asks another (the payer) for an amount; the payer pays it with a
 * send from payer to requester, or declines it; the requester may cancel it; unpaid, it expires.
 * A bill split is several requests made in one transaction, sharing a split id.
 *
 * A request's life (the status a read returns; see "Status" below):
 *
 *     payments_requests_put: PENDING
 *        |--(its reserved send operation COMPLETED)----------------> PAID (payments_request_settle)
 *        |--(payments_request_close by the payer)------------------> DECLINED
 *        |--(payments_request_close by the requester)--------------> CANCELLED
 *        |--(now > expires_at_us, no payment in flight)-------------> EXPIRED (on read only)
 *        `--(its reserved operation FAILED: insufficient funds, ...) -> PENDING again, with a new
 *            reserved operation id                                     (payments_request_release)
 *
 * Paid at most once: each row reserves the id of the operation that will pay it (paid_op_id,
 * drawn when the request is made). A payment records its send operation under exactly that id,
 * so of two payments started at once only one can record it (pay_ops.id is unique: the other's
 * payments_op_begin fails with CF_ERR_STORAGE_CONFLICT). A new id is reserved only once the
 * reserved operation has FAILED, so at most one operation per request ever completes; this
 * holds across crashes and recovery, since it rests on the unique key alone.
 *
 * Claims: before its ledger command first runs, a payment claims the request
 * (payments_request_claim): in one transaction with the row locked, the request must still be
 * pending, unexpired and reserved for that operation; the claim is recorded, so a later retry of
 * the same operation passes it again (a claimed operation may already have moved money and must
 * be finished, never abandoned). A request with an operation in flight (recorded, not failed)
 * cannot be declined or cancelled. If the process dies between recording an operation and its
 * claim, recovery still runs that operation: the request is then paid even if it was cancelled,
 * declined or expired in between (once, as the payer asked); a double payment stays impossible.
 *
 * Status: the stored status is PENDING, PAID, DECLINED or CANCELLED; reads return the effective
 * one: PAID whenever the reserved operation COMPLETED (the money is the truth, even before
 * payments_request_settle ran), else the stored status when it is not PENDING, else PENDING
 * while an operation is in flight, else EXPIRED once now_us > expires_at_us, else PENDING.
 * List filters use the same rule.
 *
 * Personal data: notes are sealed with the master key (aad "req:<id>:note") and never logged.
 * Rows hold user ids, never names or logins.
 *
 * Concurrency: every function is one transaction and may be called from any thread; rows that
 * two requests change together are read FOR UPDATE. Errors: CF_ERR_NOT_FOUND for a request that
 * does not exist or is not the given party's, CF_ERR_CONFLICT for a state that does not allow the
 * change, CF_ERR_STORAGE* from the database; outputs are untouched on error.
 */
#ifndef COFFER_PAYMENTS_REQUESTS_H
#define COFFER_PAYMENTS_REQUESTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "payments/payments.h"

#define PAY_SPLIT_PEOPLE_MAX 20               /* requests one split makes (a table's bill) */
#define PAY_REQUESTS_PENDING_MAX 100          /* a requester's unexpired pending requests (spam) */
#define PAY_REQUEST_TTL_S_DEFAULT (7 * 86400) /* a request's life when the client names none */
#define PAY_REQUEST_TTL_S_MIN 1               /* clients may ask for very short ones */
#define PAY_REQUEST_TTL_S_MAX (30 * 86400)    /* nobody should owe a stale request for longer */

enum pay_request_status {
    PAY_REQUEST_PENDING = 0,
    PAY_REQUEST_PAID = 1,
    PAY_REQUEST_DECLINED = 2,
    PAY_REQUEST_CANCELLED = 3,
    PAY_REQUEST_EXPIRED = 4, /* read only: never stored */
    PAY_REQUEST_STATUS_MAX = 4,
};

/* Filters of payments_requests_list. */
enum pay_request_direction {
    PAY_REQUEST_BOTH = 0,
    PAY_REQUEST_INCOMING = 1, /* the party is the payer */
    PAY_REQUEST_OUTGOING = 2, /* the party is the requester */
};

struct pay_request {
    char id[PAY_ID_BYTES_MAX];           /* req_... */
    char requester[PAY_PARTY_BYTES_MAX]; /* usr_...: who is owed */
    char payer[PAY_PARTY_BYTES_MAX];     /* usr_...: who is asked */
    int64_t amount_minor;                /* > 0 */
    char currency[MONEY_CODE_BYTES_MAX + 1];
    char note[PAY_NOTE_BYTES_MAX];     /* plaintext in memory; sealed at rest */
    uint8_t status;                    /* enum pay_request_status, effective (see above) */
    char split_id[PAY_ID_BYTES_MAX];   /* spl_... or "" */
    char paid_op_id[PAY_ID_BYTES_MAX]; /* the reserved (once PAID: the paying) send */
    int paid_op_status;                /* that operation's enum pay_status; -1: none yet */
    bool claimed;                      /* a payment claimed it (see "Claims") */
    int64_t expires_at_us;
    int64_t created_at_us;
    int64_t updated_at_us;
    uint64_t row; /* list order and cursor */
};

const char *pay_request_status_name(uint8_t status);
int pay_request_status_parse(const char *text); /* -1 when unknown */
/*
 * The shares of a bill: total_minor split among people (1..PAY_SPLIT_PEOPLE_MAX + 1) so that
 * they add up to it exactly. Every share is total / people (integer division); the remainder's
 * minor units go one each to the first shares (100 among 3: 34, 33, 33). shares_out gets people
 * values. CF_ERR_INVALID_AMOUNT, shares_out untouched, when total_minor < people (a share of
 * nothing).
 */
CF_WARN_UNUSED enum cf_err payments_split_shares(int64_t total_minor, size_t people,
                                                 int64_t *shares_out);
/* Fresh ids: "req_..." for a request, "spl_..." for a split. */
void payments_request_id_new(char out[PAY_ID_BYTES_MAX]);
void payments_split_id_new(char out[PAY_ID_BYTES_MAX]);

/*
 * Records n (1..PAY_SPLIT_PEOPLE_MAX) new PENDING requests in one transaction: all or none.
 * Read from each: id, requester, payer, amount_minor, currency, note, split_id, expires_at_us;
 * the rest is set here (a reserved operation id, times now_us). Every request of one call has
 * the same requester; CF_ERR_CONFLICT when the requester would then have more than
 * PAY_REQUESTS_PENDING_MAX unexpired pending requests (counted without a lock: concurrent calls
 * under PostgreSQL may pass it by a few).
 */
CF_WARN_UNUSED enum cf_err payments_requests_put(struct payments *p, const struct pay_request *r,
                                                 size_t n, int64_t now_us);
/* The request with its effective status at now_us. */
CF_WARN_UNUSED enum cf_err payments_request_get(struct payments *p, const char *id, int64_t now_us,
                                                struct pay_request *out);

struct pay_request_filter {
    const char *party;   /* required: a user id */
    uint8_t direction;   /* enum pay_request_direction */
    int status;          /* enum pay_request_status (effective), or -1 for any */
    uint64_t before_row; /* cursor: rows older than this one; 0 for the newest */
};
/* The party's requests, newest first, up to max (at most PAY_LIST_MAX). */
CF_WARN_UNUSED enum cf_err payments_requests_list(struct payments *p,
                                                  const struct pay_request_filter *f,
                                                  int64_t now_us, struct pay_request *out,
                                                  size_t max, size_t *n_out);

/*
 * Claims request id for op_id, paid by payer: CF_OK when op_id claimed it before, or when the
 * request is PENDING, unexpired at now_us and reserved for op_id (the claim is then recorded).
 * CF_ERR_NOT_FOUND when it is not payer's; CF_ERR_CONFLICT otherwise (nothing changes).
 */
CF_WARN_UNUSED enum cf_err payments_request_claim(struct payments *p, const char *id,
                                                  const char *payer, const char *op_id,
                                                  int64_t now_us);
/* Marks the request PAID by op_id (its reserved operation, which the caller saw COMPLETED).
 * CF_ERR_CONFLICT when op_id is not the request's reserved operation or did not complete. */
CF_WARN_UNUSED enum cf_err payments_request_settle(struct payments *p, const char *id,
                                                   const char *op_id, int64_t now_us);
/* After op_id, the request's reserved operation, FAILED: reserves a fresh operation id and
 * clears the claim, so the request can be paid again (it stays as it is otherwise).
 * CF_ERR_CONFLICT when op_id is not the reserved one or has not failed. */
CF_WARN_UNUSED enum cf_err payments_request_release(struct payments *p, const char *id,
                                                    const char *op_id, int64_t now_us);
/*
 * Declines (to = PAY_REQUEST_DECLINED; party must be the payer) or cancels (to =
 * PAY_REQUEST_CANCELLED; party must be the requester) a request. CF_OK without a change when it
 * already has that status; CF_ERR_NOT_FOUND when party is not its payer (declining) or
 * requester (cancelling); CF_ERR_CONFLICT when it is paid, otherwise closed, expired, or has a
 * payment in flight. *out gets the request as it then stands.
 */
CF_WARN_UNUSED enum cf_err payments_request_close(struct payments *p, const char *id,
                                                  const char *party, uint8_t to, int64_t now_us,
                                                  struct pay_request *out);

#endif
