/*
 * paycodes.h - customer-presented payment codes and merchant authorization holds: the devices
 * that show codes, the codes used, failed attempts, and holds (the "payments" schema, version 3).
 *
 * Devices. A customer registers a device (a phone app) and is shown its secret once; the device
 * then computes its codes without a network (crypto/paycode.h). A device has a public number,
 * 1..PAYCODE_DEVICE_NUMBER_MAX, drawn at random and never issued twice (a revoked device keeps
 * its number), a label, a currency and a per-code limit in that currency. Its secret is sealed
 * with the master key (aad "paycode:<device_number>") and erased when the device is revoked. A
 * customer has at most PAY_PAYCODE_DEVICES_MAX active devices.
 *
 * Using a code is two calls, so that the caller can record its operation in between:
 *
 *   payments_paycode_check   the merchant is not throttled, the code is well formed, its
 *                            device is active and not throttled, the code verifies at now
 *                            (the window of paycode.h), its step is after the device's last
 *                            used one, the currency is the device's and the amount is within
 *                            its limit  ->  the match (device, customer, step); nothing written
 *                            except a failed attempt
 *   payments_paycode_claim   records the match as used by an operation, once
 *
 * Single use: a claim raises the device's last used step by a conditional update (a claim of a
 * step at or before the last used one changes nothing and is refused) and inserts (device
 * number, step) into the used codes, whose primary key refuses a second use in any case. Of two
 * claims of one code at once, exactly one succeeds, on SQLite (serial transactions) as on
 * PostgreSQL (the update waits for the first claim's row lock and then finds the step used).
 * Refusing earlier steps also stops an older code, seen but not used, from being used after a
 * newer one.
 *
 * Failed attempts. A 7-digit value can be guessed, so failures that could be guesses (a
 * malformed code, an unknown or revoked device, a wrong value) are counted per merchant and per
 * device number over a fixed window of PAY_PAYCODE_FAILURE_WINDOW_S: a merchant past
 * PAY_PAYCODE_MERCHANT_FAILURES_MAX gets CF_ERR_TOO_MANY_ATTEMPTS, and a device number past
 * PAY_PAYCODE_DEVICE_FAILURES_MAX refuses every code (CF_ERR_INVALID_PAYCODE, so the attempt
 * learns nothing) until the window ends. Replays, a wrong currency and amounts over the limit
 * carry a real code and are not counted.
 *
 * Holds. A hold is an operation of kind PAY_KIND_HOLD (payments.h) plus a row here with what the
 * operation row does not keep: the held amount, the expiry the ledger gave the hold, what was
 * captured and the fee, and the key of the one request that resolves it. Its life:
 *
 *   (operation PROCESSING, no row) --payments_hold_open--> HELD (operation PENDING, hold_seq)
 *   HELD --payments_hold_begin--> CAPTURING --payments_hold_end--> CAPTURED (op COMPLETED)
 *   HELD --payments_hold_begin--> RELEASING --payments_hold_end--> RELEASED (op FAILED)
 *   HELD | CAPTURING | RELEASING --payments_hold_end--> EXPIRED (op FAILED)
 *   CAPTURING | RELEASING --payments_hold_end--> HELD (the ledger refused; op unchanged)
 *
 * payments_hold_begin is a conditional update: of two captures or releases at once one wins,
 * the other gets CF_ERR_CONFLICT (unless it carries the winner's own Idempotency-Key and request,
 * a retry, which gets the hold to finish). On CAPTURED the operation's amount becomes the
 * captured amount, its fee the capture's fee and its ledger_seq the posting entry, so the
 * operation reads as what the customer paid; a RELEASED hold's operation fails with
 * "transfer_already_voided", an EXPIRED one's with "transfer_expired".
 *
 * Errors: CF_ERR_NOT_FOUND for a device or hold that is not the caller's (as for an unknown
 * one), CF_ERR_CONFLICT past PAY_PAYCODE_DEVICES_MAX or for a hold not in a state that allows the
 * change, CF_ERR_STORAGE, CF_ERR_NOMEM. Every function is its own transaction, leaves its
 * outputs untouched on failure and may be called from any thread. Secrets are wiped after use
 * and never returned except by payments_paycode_device_add, once.
 */
#ifndef COFFER_PAYMENTS_PAYCODES_H
#define COFFER_PAYMENTS_PAYCODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/limits.h"
#include "crypto/paycode.h"
#include "payments/payments.h"

/* Active devices per customer: a handful of phones and watches. */
#define PAY_PAYCODE_DEVICES_MAX 10
/* Devices one list shows (revoked ones included), newest first. */
#define PAY_PAYCODE_DEVICES_LIST_MAX 50
/* A device's label, NUL included: "Anna's phone", not an essay. */
#define PAY_PAYCODE_LABEL_BYTES_MAX 41
/* The secret as base32 without padding (52 characters) and a NUL; base32_encode wants room
 * for 8 * ceil(32 / 5) + 1 bytes. */
#define PAY_PAYCODE_SECRET_TEXT_BYTES 57
/* The largest per-code limit a customer may set: far above any till, below any overflow. */
#define PAY_PAYCODE_LIMIT_MINOR_MAX INT64_C(100000000000)
/* Random draws for a free device number before giving up (a collision is one in 10^9 per
 * device already issued). */
#define PAY_PAYCODE_ALLOCATE_TRIES 16
/* Failed attempts counted per window, and the window. */
#define PAY_PAYCODE_FAILURE_WINDOW_S 600
#define PAY_PAYCODE_MERCHANT_FAILURES_MAX 20
#define PAY_PAYCODE_DEVICE_FAILURES_MAX 10
/* A hold's lifetime when the merchant gives none (a week, as card authorizations), and at most
 * what the ledger allows a pending transfer. */
#define PAY_HOLD_EXPIRES_S_DEFAULT (7 * 24 * 3600)
#define PAY_HOLD_EXPIRES_S_MAX LEDGER_TIMEOUT_S_MAX

/* A registered device as its owner sees it (never its secret). */
struct pay_paycode_device {
    uint64_t device_number;
    char user_id[PAY_PARTY_BYTES_MAX];
    char label[PAY_PAYCODE_LABEL_BYTES_MAX];
    char currency[MONEY_CODE_BYTES_MAX + 1];
    int64_t limit_minor; /* per code, in currency */
    int64_t created_at_us;
    int64_t revoked_at_us; /* 0 while active */
};

/*
 * Registers a device for d->user_id with d->label, d->currency and d->limit_minor (checked by
 * the caller: 1..PAY_PAYCODE_LIMIT_MINOR_MAX; device_number and the times are ignored): draws a
 * free device number and a fresh secret, seals and stores it. *out gets the device and
 * secret_out its secret in base32 (the only time it is ever returned; the caller wipes it).
 * CF_ERR_CONFLICT when the customer has PAY_PAYCODE_DEVICES_MAX active devices.
 */
CF_WARN_UNUSED enum cf_err
payments_paycode_device_add(struct payments *p, const struct pay_paycode_device *d, int64_t now_us,
                            struct pay_paycode_device *out,
                            char secret_out[PAY_PAYCODE_SECRET_TEXT_BYTES]);
/* The customer's devices, newest first, revoked ones included, up to max. */
CF_WARN_UNUSED enum cf_err payments_paycode_devices_list(struct payments *p, const char *user_id,
                                                         struct pay_paycode_device *out, size_t max,
                                                         size_t *n_out);
/* Revokes the customer's active device and erases its secret; CF_ERR_NOT_FOUND when it is
 * unknown, someone else's or revoked already. *out gets the revoked device. */
CF_WARN_UNUSED enum cf_err payments_paycode_device_revoke(struct payments *p,
                                                          uint64_t device_number,
                                                          const char *user_id, int64_t now_us,
                                                          struct pay_paycode_device *out);
/* The code the customer's active device shows at now_us (for a device that is online) and its
 * step. CF_ERR_NOT_FOUND when the device is unknown, someone else's or revoked. */
CF_WARN_UNUSED enum cf_err payments_paycode_current(struct payments *p, uint64_t device_number,
                                                    const char *user_id, int64_t now_us,
                                                    char code_out[PAYCODE_DIGITS + 1],
                                                    int64_t *step_out);

/* What a merchant submits, and what it matched. */
struct pay_paycode_use {
    const char *merchant_id;
    const char *code; /* len bytes, not NUL-terminated */
    size_t len;
    int64_t amount_minor;
    const char *currency; /* the merchant's */
};
struct pay_paycode_match {
    uint64_t device_number;
    char user_id[PAY_PARTY_BYTES_MAX];
    int64_t step;
};

/*
 * Checks a code a merchant submits at now_us (see the top of this file); on success *out is the
 * match to claim. CF_ERR_TOO_MANY_ATTEMPTS when the merchant is past its failures,
 * CF_ERR_INVALID_PAYCODE for every refusal of the code itself (which check refused it is not
 * told). A failure that could be a guess is counted before returning.
 */
CF_WARN_UNUSED enum cf_err payments_paycode_check(struct payments *p,
                                                  const struct pay_paycode_use *use, int64_t now_us,
                                                  struct pay_paycode_match *out);
/* Records m as used by op_id: CF_ERR_INVALID_PAYCODE when the step (or a later one) is used
 * already or the device was revoked since the check. */
CF_WARN_UNUSED enum cf_err payments_paycode_claim(struct payments *p,
                                                  const struct pay_paycode_match *m,
                                                  const char *op_id, const char *merchant_id,
                                                  int64_t now_us);

/* Holds --------------------------------------------------------------------------------------- */

enum pay_hold_state {
    PAY_HOLD_HELD = 1,
    PAY_HOLD_CAPTURING = 2,
    PAY_HOLD_CAPTURED = 3,
    PAY_HOLD_RELEASING = 4,
    PAY_HOLD_RELEASED = 5,
    PAY_HOLD_EXPIRED = 6,
};

struct pay_hold {
    char op_id[PAY_ID_BYTES_MAX]; /* hld_..., the operation */
    char merchant_id[PAY_PARTY_BYTES_MAX];
    uint8_t state; /* enum pay_hold_state */
    int64_t held_minor;
    int64_t captured_minor;                /* set when a capture begins */
    int64_t fee_minor;                     /* the capture's fee */
    int64_t expires_at_us;                 /* the ledger's expiry of the pending transfer */
    char resolve_idem[PAY_IDEM_BYTES_MAX]; /* the capture's or release's namespaced key */
    uint8_t resolve_hash[HASH_BYTES];
    uint64_t fee_seq; /* the fee's transfer once captured (0: no fee) */
    int64_t created_at_us;
    int64_t updated_at_us;
};

const char *pay_hold_state_name(uint8_t state);

/* Records that h's operation (PROCESSING) holds h->held_minor under ledger entry hold_seq until
 * h->expires_at_us: the hold row in HELD and the operation PENDING, in one transaction.
 * CF_ERR_CONFLICT when the operation is not a PROCESSING hold. */
CF_WARN_UNUSED enum cf_err payments_hold_open(struct payments *p, const struct pay_hold *h,
                                              uint64_t hold_seq, int64_t now_us);
/* The hold of operation op_id; CF_ERR_NOT_FOUND when there is none. */
CF_WARN_UNUSED enum cf_err payments_hold_get(struct payments *p, const char *op_id,
                                             struct pay_hold *out);

/* A capture or release about to run. */
struct pay_hold_resolve {
    uint8_t to;             /* PAY_HOLD_CAPTURING or PAY_HOLD_RELEASING */
    int64_t captured_minor; /* capture: 1..held_minor */
    int64_t fee_minor;      /* capture: 0..captured_minor */
    const char *idem;       /* the request's namespaced Idempotency-Key */
    const uint8_t *request_hash;
};
/*
 * Moves a HELD hold to r->to, recording r. When the hold has left HELD already: the same key
 * and request (a retry) answer CF_OK with the hold as it is, for the caller to finish or answer;
 * the same key with another request is CF_ERR_IDEM_KEY_REUSED; anything else CF_ERR_CONFLICT.
 * *out gets the hold after the change.
 */
CF_WARN_UNUSED enum cf_err payments_hold_begin(struct payments *p, const char *op_id,
                                               const struct pay_hold_resolve *r, int64_t now_us,
                                               struct pay_hold *out);

/* How a capture or release ended (fields left 0 are not used). */
struct pay_hold_outcome {
    uint8_t to;          /* CAPTURED, RELEASED, EXPIRED, or HELD (refused: back to held) */
    uint64_t ledger_seq; /* CAPTURED: the posting entry */
    uint64_t fee_seq;    /* CAPTURED: the fee's transfer, 0 when none */
    int64_t fee_minor;   /* CAPTURED: the fee actually booked */
};
/*
 * Ends a hold's capture or release (or its life, when the ledger says it expired): from_mask
 * (bit 1 << state) names the states it may end from; the hold and its operation change in one
 * transaction (see the top of this file). CF_ERR_CONFLICT when the hold is in none of them.
 */
CF_WARN_UNUSED enum cf_err payments_hold_end(struct payments *p, const char *op_id,
                                             uint32_t from_mask, const struct pay_hold_outcome *o,
                                             int64_t now_us);

#endif
