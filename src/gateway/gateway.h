/*
 * gateway.h - Coffer's one interface to payment gateways: charges and payouts by card or bank.
 *
 * A gateway moves money between Coffer and the outside world. A charge pulls money in (a
 * top-up from a card or a bank account); a payout pushes it out (a withdrawal, a merchant
 * payout). Two connectors sit behind one table of operations (struct gateway_ops):
 *   - "sandbox" (sandbox.c): an in-process fake with the documented test numbers of
 *     src/gateway/README.md, for development and tests; no network;
 *   - "http" (http.c): a provider reached over HTTPS with libcurl.
 * Callers above this folder use gateway_submit, gateway_challenge_answer, gateway_name,
 * gateway_destroy and the callback functions, and never know which connector answers.
 *
 * Outcomes. gateway_submit returns CF_OK with an outcome for everything the gateway said,
 * declines included. An error code means the request never went out (bad input, a full queue)
 * or the answer could not be read (CF_ERR_IO). Of one op_id, at the gateway:
 *
 *   submit -> APPROVED | DECLINED | INSUFFICIENT_FUNDS                       final
 *   submit -> CHALLENGE -> gateway_challenge_answer -> APPROVED | DECLINED   final
 *   submit -> PROCESSING -> signed callback -> APPROVED | DECLINED | INSUFFICIENT_FUNDS
 *   submit -> TIMEOUT: the outcome is UNKNOWN (money may have moved). Submit the same request
 *             again with the same op_id to learn it; never retry under a new op_id.
 *
 * Idempotency. op_id is Coffer's id for the operation and the gateway's idempotency key: the
 * same op_id submitted again answers the first answer and never moves money or sends a
 * callback a second time. A CHALLENGE reference can be answered once.
 *
 * Callbacks. A PROCESSING operation ends with one callback: a POST whose body is
 * application/x-www-form-urlencoded with exactly the keys event_id, op_id, reference, outcome
 * (approved | declined | insufficient_funds), amount_minor, currency and created_at (unix
 * seconds), and whose header is
 *   Coffer-Signature: t=<unix seconds>,v1=<lowercase hex HMAC-SHA-256(secret, t "." body)>
 * The same header, over the request body, signs what the HTTP connector sends. The sandbox
 * hands its callbacks to a gateway_sink_fn exactly as an HTTP route would receive them, so the
 * route and the tests run the same gateway_callback_verify. A callback may arrive before the
 * submit that caused it has returned; the receiver matches it by op_id.
 *
 * Secrets. The instrument (a card number or an IBAN) lives in memory only for the call: no
 * function here logs it, keeps it or puts it in an error, and copies are wiped. The shared
 * secret is copied at create and wiped at destroy. Security codes never reach this interface.
 *
 * Bounds. The limits below size the wire format and the sandbox; they sit here, next to the
 * types they size, and each says why it has its value.
 *
 * Threads. Every function may be called from any thread, concurrently, on the same gateway,
 * except gateway_destroy, which must not race another call on that gateway (nor be called
 * from its sink).
 */
#ifndef COFFER_GATEWAY_GATEWAY_H
#define COFFER_GATEWAY_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/clock.h"
#include "core/error.h"

/* Coffer's operation id with its NUL: a prefixed public id or a UUID, with room. */
#define GATEWAY_OP_ID_BYTES_MAX 48
/* A gateway's reference or event id with its NUL; providers use 20..40 characters. */
#define GATEWAY_REF_BYTES_MAX 64
/* A card number (19 digits) or an IBAN (34 characters), with its NUL and room. */
#define GATEWAY_INSTRUMENT_BYTES_MAX 40
/* A decline code ("insufficient_funds") with its NUL. */
#define GATEWAY_DECLINE_CODE_BYTES_MAX 32
/* A challenge answer (a one-time code) with its NUL; real ones are 4..8 digits. */
#define GATEWAY_CHALLENGE_CODE_BYTES_MAX 16
/* A callback body, an HTTP request body or answer: seven short fields fit ten times over, and
 * a hostile peer cannot make us hold more. */
#define GATEWAY_BODY_BYTES_MAX 4096
/* Fields of one form body; ours have at most seven. */
#define GATEWAY_FORM_FIELDS_MAX 16
/* A Coffer-Signature value "t=<19 digits>,v1=<64 hex>" (90 bytes) with its NUL, rounded up. */
#define GATEWAY_SIGNATURE_BYTES_MAX 96
/* A callback signed more than this far from now (either way) is refused: a replay window
 * that still allows for clock skew and a provider's retry delay. */
#define GATEWAY_CALLBACK_TOLERANCE_S 300
/* Shared secrets: 16 bytes is the least an HMAC key should have; 256 is any provider's. */
#define GATEWAY_SECRET_BYTES_MIN 16
#define GATEWAY_SECRET_BYTES_MAX 256
/* The HTTP connector's base URL (the path "/charges" is appended). */
#define GATEWAY_URL_BYTES_MAX 1024
/* The HTTP connector's whole-call timeout: long enough for a slow card network, short enough
 * that a request thread is not held for minutes. */
#define GATEWAY_HTTP_TIMEOUT_MS_MAX 60000
/* The sandbox's simulated latency and hang; tests use a few milliseconds. */
#define GATEWAY_SANDBOX_LATENCY_MS_MAX 60000
#define GATEWAY_SANDBOX_TIMEOUT_MS_MAX 120000
/* Operations the sandbox remembers for idempotency; past this the oldest is forgotten. */
#define GATEWAY_SANDBOX_OPS_MAX 4096
/* Callbacks waiting for delivery; past this a PROCESSING submit is refused (CF_ERR_OVERLOADED)
 * before anything is remembered, so the caller may retry. */
#define GATEWAY_SANDBOX_QUEUE_MAX 1024

enum gateway_op {
    GATEWAY_OP_CHARGE = 1, /* pull money in: a top-up */
    GATEWAY_OP_PAYOUT = 2  /* push money out: withdrawal, merchant payout */
};

enum gateway_method { GATEWAY_METHOD_CARD = 1, GATEWAY_METHOD_BANK = 2 };

enum gateway_outcome {
    GATEWAY_APPROVED = 1,
    GATEWAY_DECLINED,
    GATEWAY_INSUFFICIENT_FUNDS,
    GATEWAY_CHALLENGE,  /* 3-D Secure style: the customer must answer */
    GATEWAY_PROCESSING, /* the answer comes later by signed callback */
    GATEWAY_TIMEOUT     /* no answer in time: outcome unknown */
};

struct gateway_request {
    char op_id[GATEWAY_OP_ID_BYTES_MAX]; /* Coffer's id, also the gateway's idempotency key */
    enum gateway_op op;
    enum gateway_method method;
    /* card PAN digits or bank account (IBAN, no spaces); in memory only, never logged */
    char instrument[GATEWAY_INSTRUMENT_BYTES_MAX];
    int64_t amount_minor;
    char currency[4]; /* ISO 4217 code, NUL-terminated */
};

struct gateway_result {
    enum gateway_outcome outcome;
    char reference[GATEWAY_REF_BYTES_MAX]; /* the gateway's id; "" only with GATEWAY_TIMEOUT */
    /* why, with DECLINED and INSUFFICIENT_FUNDS (may be "" from a provider); "" otherwise */
    char decline_code[GATEWAY_DECLINE_CODE_BYTES_MAX];
};

/* A verified callback. */
struct gateway_event {
    char event_id[GATEWAY_REF_BYTES_MAX];
    char op_id[GATEWAY_OP_ID_BYTES_MAX];
    char reference[GATEWAY_REF_BYTES_MAX];
    enum gateway_outcome outcome; /* APPROVED, DECLINED or INSUFFICIENT_FUNDS */
    int64_t amount_minor;         /* > 0 */
    char currency[4];             /* an ISO 4217 code of money/currency.h */
    int64_t created_at_s;
};

/* Receives a signed callback exactly as an HTTP route would: the body (body_len bytes, also
 * NUL-terminated) and the Coffer-Signature header's value (without the name). Both are valid
 * only during the call. Runs on the connector's delivery thread; it must not destroy the
 * gateway. */
typedef void (*gateway_sink_fn)(void *ctx, const char *body, size_t body_len,
                                const char *signature_header);

struct gateway; /* opaque; ops table inside */

/* Checks req as gateway_submit does, without sending it: op_id 1..47 printable ASCII
 * characters without spaces (else CF_ERR_INVALID_FIELD); amount_minor > 0 (else
 * CF_ERR_INVALID_AMOUNT); currency an ISO 4217 code of the currency table, not an operator
 * asset (else CF_ERR_UNKNOWN_CURRENCY); a card instrument 12..19 digits passing Luhn, nothing
 * else (else CF_ERR_INVALID_CARD); a bank instrument a valid IBAN in upper case without spaces
 * (else CF_ERR_INVALID_BANK_ACCOUNT). op and method must be enum values (asserted). */
CF_WARN_UNUSED enum cf_err gateway_request_check(const struct gateway_request *req);

/* Sends req and writes the gateway's answer to out. CF_OK with any outcome, a decline or a
 * TIMEOUT included. Errors, with out untouched: those of gateway_request_check;
 * CF_ERR_IDEM_KEY_REUSED when the op_id was used with another op, method, amount or currency;
 * CF_ERR_OVERLOADED when the sandbox's callback queue is full; CF_ERR_IO when the HTTP
 * provider's answer is malformed or not one it may give; CF_ERR_NOMEM. Blocks for the
 * gateway's latency (at most the connector's timeout). */
CF_WARN_UNUSED enum cf_err gateway_submit(struct gateway *gw, const struct gateway_request *req,
                                          struct gateway_result *out);

/* Answers the CHALLENGE whose result carried `reference` with the customer's `code` (3DS
 * answer): out becomes APPROVED, or DECLINED with decline_code "authentication_failed" (or
 * TIMEOUT from the HTTP connector when the provider did not answer). Errors, with out
 * untouched: CF_ERR_INVALID_FIELD for a malformed reference or a code that is empty, longer
 * than GATEWAY_CHALLENGE_CODE_BYTES_MAX - 1 or not printable ASCII; CF_ERR_NOT_FOUND when no
 * challenge has this reference; CF_ERR_CONFLICT when it was already answered; CF_ERR_IO. */
CF_WARN_UNUSED enum cf_err gateway_challenge_answer(struct gateway *gw, const char *reference,
                                                    const char *code, struct gateway_result *out);

/* "sandbox" or "http". Static storage. */
const char *gateway_name(const struct gateway *gw);

/* Stops the connector (the sandbox joins its delivery thread and drops undelivered callbacks),
 * wipes its secret and frees it. NULL is a no-op. */
void gateway_destroy(struct gateway *gw);

struct gateway_sandbox_config {
    int64_t latency_ms; /* added to every answer and callback; 0..GATEWAY_SANDBOX_LATENCY_MS_MAX */
    int64_t timeout_ms; /* how long a "timeout" card hangs before GATEWAY_TIMEOUT;
                           0..GATEWAY_SANDBOX_TIMEOUT_MS_MAX */
    const uint8_t *secret; /* signs callbacks; GATEWAY_SECRET_BYTES_MIN..MAX bytes, copied */
    size_t secret_len;
    struct cf_clock *clock; /* callback timestamps (created_at, t); NULL is cf_clock_real */
};

/* The sandbox: answers from the test-number table of README.md after latency_ms, and delivers
 * the callbacks of PROCESSING numbers to sink (with sink_ctx) on its own thread, latency_ms
 * after the answer. Waiting uses real time whatever the clock. CF_ERR_CONFIG for a latency,
 * timeout or secret out of bounds; CF_ERR_NOMEM; CF_ERR_INTERNAL when the thread cannot start.
 * sink must outlive the gateway. */
CF_WARN_UNUSED enum cf_err gateway_sandbox_create(const struct gateway_sandbox_config *cfg,
                                                  gateway_sink_fn sink, void *sink_ctx,
                                                  struct gateway **out);

struct gateway_http_config {
    const char *base_url;  /* https, or http on loopback only; no query, fragment or user info */
    const uint8_t *secret; /* signs requests; GATEWAY_SECRET_BYTES_MIN..MAX bytes, copied */
    size_t secret_len;
    int64_t timeout_ms; /* the whole call; 1..GATEWAY_HTTP_TIMEOUT_MS_MAX */
};

/* The HTTP connector: POST <base_url>/charges or /payouts, form-encoded (op_id, method
 * "card"|"bank", instrument, amount_minor, currency), signed with Coffer-Signature over the
 * body, Idempotency-Key: op_id; answers to challenges go to <base_url>/challenges (reference,
 * code; Idempotency-Key: reference). Calls take at most timeout_ms. A 200 answer is form-encoded
 * "outcome=...&reference=...&decline_code=..." (decline_code optional). No answer, a transport
 * failure, a timeout or a 5xx status is GATEWAY_TIMEOUT with CF_OK (the outcome is unknown);
 * a malformed 200 or another status is CF_ERR_IO (for answers, 404 is CF_ERR_NOT_FOUND and
 * 409 CF_ERR_CONFLICT). Redirects are not followed. CF_ERR_CONFIG for a URL that is not https
 * (or http to 127.0.0.0/8, ::1 or localhost), or a secret or timeout out of bounds. */
CF_WARN_UNUSED enum cf_err gateway_http_create(const struct gateway_http_config *cfg,
                                               struct gateway **out);

/* Writes the Coffer-Signature value "t=<t_s>,v1=<hex>" for body into header_out (at least
 * GATEWAY_SIGNATURE_BYTES_MAX bytes, asserted; t_s >= 0, asserted). CF_ERR_CONFIG for a
 * secret outside GATEWAY_SECRET_BYTES_MIN..MAX; CF_ERR_PAYLOAD_TOO_LARGE for a body over
 * GATEWAY_BODY_BYTES_MAX. header_out untouched on error. */
CF_WARN_UNUSED enum cf_err gateway_callback_sign(const uint8_t *secret, size_t secret_len,
                                                 const char *body, size_t body_len, int64_t t_s,
                                                 char *header_out, size_t header_bytes);

/* Verifies a callback and decodes it into out. The signature is checked first, in constant
 * time, before the body is read: a missing (NULL) or malformed header, a wrong MAC, or a t
 * more than GATEWAY_CALLBACK_TOLERANCE_S from now_s is CF_ERR_BAD_SIGNATURE. With a good
 * signature, a malformed body is CF_ERR_INVALID_FIELD: over GATEWAY_BODY_BYTES_MAX, a bad
 * escape, a missing, unknown or duplicate key, an over-long or non-printable id, an outcome
 * other than approved/declined/insufficient_funds, an amount that is not a positive integer, an
 * unknown currency, a bad created_at. CF_ERR_CONFIG for a secret out of bounds. out untouched
 * on error. */
CF_WARN_UNUSED enum cf_err gateway_callback_verify(const uint8_t *secret, size_t secret_len,
                                                   const char *body, size_t body_len,
                                                   const char *signature_header, int64_t now_s,
                                                   struct gateway_event *out);

/* "approved", "declined", "insufficient_funds", "challenge", "processing", "timeout".
 * o must be an enum value (asserted). Static storage. */
const char *gateway_outcome_name(enum gateway_outcome o);

/* Connectors ------------------------------------------------------------------------------------
 * What sandbox.c and http.c plug in with, and the helpers they share with the callback
 * verifier. Callers above src/gateway use only the functions above. */

struct gateway_ops {
    const char *name;
    /* req has passed gateway_request_check; out starts zeroed. */
    enum cf_err (*submit)(void *impl, const struct gateway_request *req,
                          struct gateway_result *out);
    /* reference and code have passed the checks of gateway_challenge_answer. */
    enum cf_err (*challenge_answer)(void *impl, const char *reference, const char *code,
                                    struct gateway_result *out);
    void (*destroy)(void *impl);
};

/* Wraps a connector's impl behind ops into *out; on CF_ERR_NOMEM the caller still owns impl. */
CF_WARN_UNUSED enum cf_err gateway_connector_create(const struct gateway_ops *ops, void *impl,
                                                    struct gateway **out);

/* Initializes libsodium once per process; CF_ERR_INTERNAL when it cannot. */
CF_WARN_UNUSED enum cf_err gateway_sodium_init(void);

/* True when s is NUL-terminated within bytes and has 1..bytes-1 characters, each printable
 * ASCII other than space (ids, references, decline codes). */
bool gateway_token_is_valid(const char *s, size_t bytes);

/* The outcome named `name` (any of gateway_outcome_name's but "timeout"); CF_ERR_INVALID_FIELD
 * when it names none, *out untouched. */
CF_WARN_UNUSED enum cf_err gateway_outcome_parse(const char *name, enum gateway_outcome *out);

/* A form body under construction: keys and values percent-encoded (all but A-Z a-z 0-9 - . _ ~),
 * joined by '=' and '&'. An append past GATEWAY_BODY_BYTES_MAX or GATEWAY_FORM_FIELDS_MAX
 * sets `overflow` and is dropped; check gateway_form_ok once at the end. text is always
 * NUL-terminated. A form that held an instrument is wiped with gateway_form_wipe. */
struct gateway_form {
    char text[GATEWAY_BODY_BYTES_MAX + 1];
    size_t len;
    size_t fields_n;
    bool overflow;
};

void gateway_form_init(struct gateway_form *f);
void gateway_form_add(struct gateway_form *f, const char *key, const char *value);
void gateway_form_add_int(struct gateway_form *f, const char *key, int64_t value);
static inline bool gateway_form_ok(const struct gateway_form *f) { return !f->overflow; }
void gateway_form_wipe(struct gateway_form *f);

/* One expected key of a form body and where its decoded value goes. */
struct gateway_form_field {
    const char *key;
    char *value;        /* receives the decoded value, NUL-terminated */
    size_t value_bytes; /* value's size with its NUL: a longer value is refused */
    bool required;
    bool seen; /* out: the key was present */
};

/* Decodes body (body_len bytes; '&'-separated key=value pairs, %XX escapes, '+' for space)
 * into fields (fields_n <= GATEWAY_FORM_FIELDS_MAX). Strict: CF_ERR_INVALID_FIELD for a body
 * over GATEWAY_BODY_BYTES_MAX, more than GATEWAY_FORM_FIELDS_MAX pairs, an empty pair, a pair
 * without '=', an empty, unknown or repeated key, a bad escape, a decoded control byte, a value
 * longer than its field takes, or a required key missing. On error no value or `seen` is
 * written. */
CF_WARN_UNUSED enum cf_err gateway_form_decode(const char *body, size_t body_len,
                                               struct gateway_form_field *fields, size_t fields_n);

#endif
