/*
 * kyc.h - know your customer: each customer's verification tier, the details and identity
 * documents they submit (sealed at rest), the staff's review of them, the append-only history
 * of it all, and the limits and features each tier opens (their configuration and look-up).
 *
 * Tiers:
 *   0  registered: every customer starts here, and a customer this module never saw is at 0;
 *   1  phone verified, legal name and ID number given: reached automatically when details are
 *      put (or, later, read with risk_kyc_tier_refresh) while the caller says the customer's
 *      phone is verified (this module does not know identity: the API asks it and passes
 *      phone_verified in);
 *   2  staff approved a submission holding details and at least one identity document
 *      (passport, id_card or driving_licence).
 * A rejection leaves the tier where it was (0 or 1, never 2, since a customer at tier 2 cannot
 * submit again). A tier goes down only when staff lower it (risk_kyc_tier_lower: documents found
 * forged or expired, a customer to verify again), with a reason; from then on the automatic
 * raise to tier 1 is held until staff approve a submission, so a customer lowered to 0 stays
 * there whatever details they put. A customer lowered below 2 may submit again.
 *
 * Submissions. A customer has at most one open submission ("kys_..."), a draft or a pending
 * one (a unique index on the open ones), and any number of decided ones:
 *
 *   (none) --details_put / document_add--> DRAFT --submit--> PENDING --decide--> APPROVED
 *                                            ^                                `--> REJECTED
 *                                            `-- details_put / document_add after a rejection
 *                                                (a new draft, starting from the latest details)
 *
 * A draft takes details (put again: replaced) and up to RISK_KYC_DOCS_MAX documents; a pending
 * one takes nothing until it is decided (CF_ERR_CONFLICT); a customer at tier 2 takes nothing
 * more (CF_ERR_CONFLICT). Submitting needs details and one identity document at least.
 *
 * The customer's state is the state of their latest submitted submission: NONE before any,
 * then PENDING, APPROVED or REJECTED (a draft in progress does not change it, so a rejection
 * and its customer-facing reason stay visible while the customer prepares the next one).
 *
 * History: every change appends one event ("kye_...") to risk_kyc_events, which is never
 * updated or deleted: details put, document added, submitted, approved, rejected, tier raised.
 * A decision's event holds its staff reason and its customer-facing reason (both sealed) and
 * its idempotency key. Document contents are never in an event.
 *
 * Personal data at rest: details (legal name, ID type and number, date of birth, nationality,
 * country of residence), document contents and reasons are sealed with the master key (the
 * vault callback, as freeze.h does) under aads naming the customer and the row:
 * "risk_kyc:<user>:<submission id>:details", "risk_kyc:<user>:<document id>:content:<i>/<n>"
 * (a document is sealed in chunks of at most VAULT_PLAINTEXT_BYTES_MAX, in order, so a chunk
 * moved, dropped or reordered fails to open), "risk_kyc:<user>:<event id>:reason" and
 * ":customer_reason". Master keys, not a per-customer key: KYC records must outlive the
 * customer's account (record-keeping duties), so closing an account does not shred them.
 * Nothing here logs; never log a field of a details struct, a reason or a document.
 *
 * Idempotency: decisions take an optional key (struct risk_kyc_idem, as freeze.h's): a key
 * already used answers its decision again with *replay_out set, whatever the state is now; the
 * same key for another request (hash) or another customer is CF_ERR_IDEM_KEY_REUSED.
 *
 * Errors: CF_ERR_INVALID_FIELD for malformed input (the *_valid functions say which field and
 * why); CF_ERR_NOT_FOUND for an unknown submission or document (also one of another
 * customer's); CF_ERR_CONFLICT when the state does not allow the change (*detail_out says
 * why); CF_ERR_IDEM_KEY_REUSED as above; CF_ERR_CONFIG when no master key seals; CF_ERR_CORRUPT
 * when a stored value does not open or a row is out of range; the SQL facade's errors
 * (CF_ERR_STORAGE, CF_ERR_STORAGE_CONFLICT, CF_ERR_NOMEM). Every function leaves its outputs
 * untouched on failure unless it says otherwise.
 *
 * Concurrency: every change is one transaction that locks the customer's row first (SELECT ...
 * FOR UPDATE on PostgreSQL; SQLite's transactions are serial), so two changes of one customer
 * never interleave. The handle may be shared by any number of threads. risk_kyc_tier_get
 * answers from a small in-memory cache (RISK_KYC_TIER_CACHE_SLOTS entries, each trusted for
 * RISK_KYC_TIER_CACHE_US): a change made through this handle clears its entry at once; one
 * made by another process is seen within that time (one process serves the API: the
 * payment path and staff's changes share the handle, so a lowering is seen at once).
 * The tables live in the service database (the identity database), schema "risk_kyc".
 *
 * Limits configuration (pure, no database): struct risk_kyc_config holds, per tier, the
 * amounts of a "*" row (every currency) and of up to RISK_KYC_LIMIT_CURRENCIES_MAX currency
 * rows, and the features the tier opens. risk_kyc_config_set reads the two settings (their
 * syntax is in docs/RISK.md and at risk_kyc_config_set below); risk_kyc_limits_for and
 * risk_kyc_feature_open answer the payment path. Amounts are int64 minor units of the currency
 * they are looked up for; RISK_KYC_UNLIMITED (-1) means no limit, 0 means none may be used.
 */
#ifndef COFFER_RISK_KYC_H
#define COFFER_RISK_KYC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/limits.h"

struct sqldb;
struct vault;

/* Limits ----------------------------------------------------------------------------------------
 */

#define RISK_KYC_TIER_MAX 2
#define RISK_KYC_TIERS (RISK_KYC_TIER_MAX + 1)
#define RISK_KYC_USER_BYTES_MAX 24 /* "usr_" + 13 + NUL: ID_TEXT_BYTES_MAX; also `by` */
#define RISK_KYC_ID_BYTES_MAX 24   /* a "kys_"/"kyd_"/"kye_" id: ID_TEXT_BYTES_MAX */
/* A legal name as written on the document: 1..140 characters of UTF-8, no control characters
 * (the ICAO machine-readable zone holds 39; long names with several given names fit). */
#define RISK_KYC_NAME_CHARS_MAX 140
#define RISK_KYC_NAME_BYTES_MAX (4 * RISK_KYC_NAME_CHARS_MAX + 1)
/* An ID number: 1..40 of A-Z a-z 0-9, space, '-', '/', '.' (passport numbers are <= 9, some
 * national numbers with separators reach ~20). */
#define RISK_KYC_ID_NUMBER_BYTES_MAX 41
#define RISK_KYC_DATE_BYTES 11     /* "YYYY-MM-DD" + NUL */
#define RISK_KYC_COUNTRY_BYTES 3   /* ISO 3166-1 alpha-2 + NUL */
#define RISK_KYC_DOB_YEAR_MIN 1900 /* dates of birth from 1900-01-01 to the day before now */
/* A staff reason: a note for the next analyst (as freeze.h's). */
#define RISK_KYC_REASON_CHARS_MAX 500
#define RISK_KYC_REASON_BYTES_MAX (4 * RISK_KYC_REASON_CHARS_MAX + 1)
/* A customer-facing reason: a sentence or two the customer reads in the app. */
#define RISK_KYC_CUSTOMER_REASON_CHARS_MAX 280
#define RISK_KYC_CUSTOMER_REASON_BYTES_MAX (4 * RISK_KYC_CUSTOMER_REASON_CHARS_MAX + 1)
/* A document's decoded size: a phone photo (JPEG ~2-3 MiB) or a scanned PDF page. Sealed in
 * chunks of VAULT_PLAINTEXT_BYTES_MAX. */
#define RISK_KYC_DOC_BYTES_MAX (4 * 1024 * 1024)
#define RISK_KYC_DOC_BYTES_MIN 16 /* anything smaller is not an image or a PDF */
/* Documents one submission holds: both sides of an ID card, a passport, a proof of address,
 * a selfie, one spare. */
#define RISK_KYC_DOCS_MAX 6
#define RISK_KYC_IDEM_BYTES_MAX 200            /* a namespaced idempotency key, NUL included */
#define RISK_KYC_LIST_MAX 100                  /* rows one queue call returns */
#define RISK_KYC_HISTORY_MAX 100               /* events one history call returns */
#define RISK_KYC_TIER_CACHE_SLOTS 4096         /* a power of two */
#define RISK_KYC_TIER_CACHE_US (5 * 1000000LL) /* as identity's session cache */
/* Limits configuration: currency rows per tier besides "*", the largest amount a limit may
 * name (10^15 minor units: far above any wallet, far below int64 overflow when summed), and
 * the longest value one setting takes. */
#define RISK_KYC_LIMIT_CURRENCIES_MAX 16
#define RISK_KYC_LIMIT_AMOUNT_MAX 1000000000000000LL
#define RISK_KYC_CONFIG_TEXT_BYTES_MAX 4096
#define RISK_KYC_UNLIMITED (-1)

#define RISK_KYC_SUBMISSION_PREFIX "kys_"
#define RISK_KYC_DOCUMENT_PREFIX "kyd_"
#define RISK_KYC_EVENT_PREFIX "kye_"

enum risk_kyc_state {
    RISK_KYC_NONE = 0, /* the customer's state before any submission */
    RISK_KYC_DRAFT = 1,
    RISK_KYC_PENDING = 2,
    RISK_KYC_APPROVED = 3,
    RISK_KYC_REJECTED = 4,
};

enum risk_kyc_doc_kind {
    RISK_KYC_DOC_PASSPORT = 1, /* the first three are identity documents, and ID types */
    RISK_KYC_DOC_ID_CARD = 2,
    RISK_KYC_DOC_DRIVING_LICENCE = 3,
    RISK_KYC_DOC_PROOF_OF_ADDRESS = 4,
    RISK_KYC_DOC_SELFIE = 5,
};

enum risk_kyc_content { RISK_KYC_JPEG = 1, RISK_KYC_PNG = 2, RISK_KYC_PDF = 3 };

enum risk_kyc_event_kind {
    RISK_KYC_EVENT_DETAILS = 1,
    RISK_KYC_EVENT_DOCUMENT = 2,
    RISK_KYC_EVENT_SUBMIT = 3,
    RISK_KYC_EVENT_APPROVE = 4,
    RISK_KYC_EVENT_REJECT = 5,
    RISK_KYC_EVENT_TIER = 6,  /* raised to 1 by risk_kyc_tier_refresh */
    RISK_KYC_EVENT_LOWER = 7, /* lowered by staff (risk_kyc_tier_lower) */
};

/* Names: "none", "draft", "pending", "approved", "rejected"; "passport", "id_card",
 * "driving_licence", "proof_of_address", "selfie"; "image/jpeg", "image/png",
 * "application/pdf"; "details", "document", "submit", "approve", "reject", "tier", "lower".
 * "" for a value out of range. Parsers: exact, lower case; CF_ERR_INVALID_FIELD otherwise. */
const char *risk_kyc_state_name(uint8_t state);
CF_WARN_UNUSED enum cf_err risk_kyc_state_parse(const char *text, uint8_t *out);
const char *risk_kyc_doc_kind_name(uint8_t kind);
CF_WARN_UNUSED enum cf_err risk_kyc_doc_kind_parse(const char *text, uint8_t *out);
bool risk_kyc_doc_kind_is_identity(uint8_t kind);
const char *risk_kyc_content_name(uint8_t content);
CF_WARN_UNUSED enum cf_err risk_kyc_content_parse(const char *text, uint8_t *out);
const char *risk_kyc_event_name(uint8_t kind);

/* Types -----------------------------------------------------------------------------------------
 */

/* What a customer says of themself. Plaintext in memory: wipe it (hash_wipe) when done. */
struct risk_kyc_details {
    char legal_name[RISK_KYC_NAME_BYTES_MAX];
    uint8_t id_type; /* an identity document kind */
    char id_number[RISK_KYC_ID_NUMBER_BYTES_MAX];
    char date_of_birth[RISK_KYC_DATE_BYTES];  /* YYYY-MM-DD */
    char nationality[RISK_KYC_COUNTRY_BYTES]; /* ISO alpha-2, or "" when not given */
    char country[RISK_KYC_COUNTRY_BYTES];     /* of residence, ISO alpha-2 */
};

/* A document's description (its content is read apart, by risk_kyc_document_read). */
struct risk_kyc_document {
    uint64_t row;
    char id[RISK_KYC_ID_BYTES_MAX];
    char submission_id[RISK_KYC_ID_BYTES_MAX];
    char user_id[RISK_KYC_USER_BYTES_MAX];
    uint8_t kind;    /* enum risk_kyc_doc_kind */
    uint8_t content; /* enum risk_kyc_content */
    int64_t size_bytes;
    int64_t at_us;
};

/* A submission. Reasons come from its decision's event. */
struct risk_kyc_submission {
    uint64_t row;
    char id[RISK_KYC_ID_BYTES_MAX];
    char user_id[RISK_KYC_USER_BYTES_MAX];
    uint8_t state; /* DRAFT, PENDING, APPROVED or REJECTED */
    bool has_details;
    struct risk_kyc_details details; /* opened by risk_kyc_view_get only; else zero */
    size_t documents_n;
    int64_t created_at_us;
    int64_t submitted_at_us; /* 0 while a draft */
    int64_t decided_at_us;   /* 0 until decided */
    char decided_by[RISK_KYC_USER_BYTES_MAX];
    char decision_id[RISK_KYC_ID_BYTES_MAX]; /* the decision's event, "" until decided */
    uint64_t queue_row; /* the submit event's row (pending) or the decision's: the list order */
    char reason[RISK_KYC_REASON_BYTES_MAX];                   /* staff views only, else "" */
    char customer_reason[RISK_KYC_CUSTOMER_REASON_BYTES_MAX]; /* "" when none given */
};

/* One event of the history. */
struct risk_kyc_event {
    uint64_t row;
    char id[RISK_KYC_ID_BYTES_MAX];
    char user_id[RISK_KYC_USER_BYTES_MAX];
    char submission_id[RISK_KYC_ID_BYTES_MAX];
    char document_id[RISK_KYC_ID_BYTES_MAX]; /* a document event's, else "" */
    uint8_t kind;                            /* enum risk_kyc_event_kind */
    int tier;                                /* the customer's tier after the event */
    char by[RISK_KYC_USER_BYTES_MAX];        /* the customer, or the deciding staff member */
    int64_t at_us;
    char reason[RISK_KYC_REASON_BYTES_MAX];                   /* decisions, staff views only */
    char customer_reason[RISK_KYC_CUSTOMER_REASON_BYTES_MAX]; /* decisions */
};

/* A customer as a view shows them. current is the open submission when there is one, else
 * the latest submitted; documents are current's. */
struct risk_kyc_view {
    char user_id[RISK_KYC_USER_BYTES_MAX];
    int tier;
    uint8_t state; /* the latest submitted submission's state, or RISK_KYC_NONE */
    bool has_latest;
    struct risk_kyc_submission latest; /* the latest submitted (pending or decided) */
    bool has_current;
    struct risk_kyc_submission current;
    struct risk_kyc_document documents[RISK_KYC_DOCS_MAX];
    size_t documents_n;
};

/* A caller's idempotency key (1..RISK_KYC_IDEM_BYTES_MAX - 1 printable ASCII bytes,
 * namespaced by the caller) and its request's SHA-256. */
struct risk_kyc_idem {
    const char *key;
    uint8_t request_hash[HASH_BYTES];
};

/* Limits configuration -------------------------------------------------------------------------
 */

/* Features a tier may open (a bitmask). Merchants' payouts are not tiered. */
enum risk_kyc_feature {
    RISK_KYC_FEATURE_TOPUP = 1u << 0,      /* money in from a card or bank */
    RISK_KYC_FEATURE_RECEIVE = 1u << 1,    /* money in from another customer */
    RISK_KYC_FEATURE_PAYMENT = 1u << 2,    /* paying a merchant */
    RISK_KYC_FEATURE_SEND = 1u << 3,       /* sending to another customer, paying a request */
    RISK_KYC_FEATURE_REQUEST = 1u << 4,    /* asking another customer for money */
    RISK_KYC_FEATURE_CONVERSION = 1u << 5, /* between one's own currencies */
    RISK_KYC_FEATURE_WITHDRAWAL = 1u << 6, /* money out to a bank account */
};
#define RISK_KYC_FEATURES_N 7
#define RISK_KYC_FEATURES_ALL ((1u << RISK_KYC_FEATURES_N) - 1)

/* The limits that apply to one tier in one currency (RISK_KYC_UNLIMITED: none). */
struct risk_kyc_limit {
    int64_t max_balance_minor; /* a wallet's balance may not go above (incoming refused) */
    int64_t max_single_minor;  /* one outgoing payment, send, withdrawal or conversion */
    int64_t daily_out_minor;   /* outgoing total of a UTC day */
    int64_t monthly_out_minor; /* outgoing total of a UTC calendar month */
};

/* A currency row: the fields it sets (bit i: field i of struct risk_kyc_limit, in order);
 * the others come from the tier's "*" row at look-up. */
struct risk_kyc_limit_row {
    char currency[MONEY_CODE_BYTES_MAX + 1];
    struct risk_kyc_limit limit;
    uint8_t set;
};

struct risk_kyc_config {
    struct risk_kyc_limit base[RISK_KYC_TIERS]; /* the "*" rows: every field set */
    struct risk_kyc_limit_row rows[RISK_KYC_TIERS][RISK_KYC_LIMIT_CURRENCIES_MAX];
    size_t rows_n[RISK_KYC_TIERS];
    uint32_t features[RISK_KYC_TIERS]; /* enum risk_kyc_feature bits */
};

/* The defaults (minor units, "*" rows; docs/RISK.md has the table):
 *   tier 0: balance 15000, single 5000, daily 10000, monthly 25000; topup, receive, payment
 *   tier 1: balance 500000, single 100000, daily 200000, monthly 1000000; all features
 *   tier 2: balance 10000000, single 2500000, daily 5000000, monthly 20000000; all features */
void risk_kyc_config_defaults(struct risk_kyc_config *c);

/* Applies one setting to c: key "kyc_limits" or "kyc_features", value one clause or several
 * separated by ';' (so one environment variable can carry them all):
 *
 *   kyc_limits:   tier<N> <CURRENCY|*> <field>=<amount> [<field>=<amount> ...]
 *                 field: max_balance | single | daily_out | monthly_out (each at most once)
 *                 amount: decimal minor units 0..10^15 without sign or leading zeros, or none
 *   kyc_features: tier<N> <feature>[,<feature>...] | tier<N> none
 *                 feature: topup receive payment send request conversion withdrawal
 *
 * Tokens are separated by spaces or tabs. A limits clause sets the fields it names in its row
 * (created on first mention; the currency's other fields follow the "*" row); a features
 * clause replaces the tier's set. All or nothing: on any error c is unchanged and why (why_bytes
 * > 0) gets a one-line reason naming the clause's problem. CF_ERR_CONFIG for a bad value,
 * CF_ERR_NOT_FOUND for a key that is neither (c unchanged, why untouched). */
CF_WARN_UNUSED enum cf_err risk_kyc_config_set(struct risk_kyc_config *c, const char *key,
                                               const char *value, char *why, size_t why_bytes);
/* Checks what needs the currency table (filled once the assets are registered): every
 * currency row names a known currency. CF_ERR_CONFIG and why otherwise. */
CF_WARN_UNUSED enum cf_err risk_kyc_config_check(const struct risk_kyc_config *c, char *why,
                                                 size_t why_bytes);
/* The limits of tier in currency (NULL or "*": the "*" row). CF_ERR_INVALID_FIELD for a tier
 * outside 0..RISK_KYC_TIER_MAX. */
CF_WARN_UNUSED enum cf_err risk_kyc_limits_for(const struct risk_kyc_config *c, int tier,
                                               const char *currency, struct risk_kyc_limit *out);
/* Whether tier opens feature (one bit); false for a tier out of range. */
bool risk_kyc_feature_open(const struct risk_kyc_config *c, int tier, uint32_t feature);
/* A feature by name; CF_ERR_INVALID_FIELD for an unknown one. */
CF_WARN_UNUSED enum cf_err risk_kyc_feature_parse(const char *name, uint32_t *out);
/* The name of one feature bit; "" otherwise. */
const char *risk_kyc_feature_name(uint32_t feature);
/* Whether amount_minor (>= 0) is within limit_minor (RISK_KYC_UNLIMITED: always). */
bool risk_kyc_within(int64_t amount_minor, int64_t limit_minor);

/* Validation (pure) -----------------------------------------------------------------------------
 */

/* Whether d is details this module takes, now_us deciding what "before today" means for the
 * date of birth. *detail_out (may be NULL) names the field and the rule: "legal_name: 1 to 140
 * characters", "id_number: 1 to 40 of A-Z, a-z, 0-9, space, -, /, .", "date_of_birth: a date
 * YYYY-MM-DD from 1900-01-01 to yesterday", "country: an ISO 3166-1 alpha-2 code", ... */
bool risk_kyc_details_valid(const struct risk_kyc_details *d, int64_t now_us,
                            const char **detail_out);
/* Whether text (exactly 2 bytes) is an assigned ISO 3166-1 alpha-2 code (or XK, Kosovo). */
bool risk_kyc_country_valid(const char *text);
/* Whether text is a staff reason (1..RISK_KYC_REASON_CHARS_MAX characters) or, with customer
 * set, a customer-facing one (1..RISK_KYC_CUSTOMER_REASON_CHARS_MAX): UTF-8 without control
 * characters but tab, CR and LF. *detail_out (may be NULL) says why not. */
bool risk_kyc_reason_valid(const char *text, bool customer, const char **detail_out);
/* The content type bytes (n of them) are, by their magic bytes: JPEG (FF D8 FF), PNG (the
 * 8-byte signature), PDF ("%PDF-"). CF_ERR_INVALID_FIELD for anything else or fewer than
 * RISK_KYC_DOC_BYTES_MIN bytes. */
CF_WARN_UNUSED enum cf_err risk_kyc_content_sniff(const uint8_t *bytes, size_t n, uint8_t *out);
/* Decodes standard base64 (RFC 4648 section 4: A-Z a-z 0-9 + /, padded with '=' to a multiple
 * of 4, no line breaks or spaces, unused bits zero) of text (len bytes) into out (out_bytes).
 * CF_ERR_INVALID_FIELD for anything else, CF_ERR_PAYLOAD_TOO_LARGE when the result would not
 * fit out_bytes. */
CF_WARN_UNUSED enum cf_err risk_kyc_base64_decode(const char *text, size_t len, uint8_t *out,
                                                  size_t out_bytes, size_t *n_out);

/* The store -------------------------------------------------------------------------------------
 */

struct risk_kyc;

/* The current master keys: key_id 0 for the active set (sealing), else a set holding key_id
 * (opening); NULL when none holds it (payments_vault_fn's contract). */
typedef const struct vault *(*risk_kyc_vault_fn)(void *ctx, uint32_t key_id);

/* Applies the "risk_kyc" schema to db and returns the handle (risk_kyc_close frees it), which
 * keeps a copy of cfg (NULL: the defaults). db and the vault's owner must outlive it. */
CF_WARN_UNUSED enum cf_err risk_kyc_open(struct sqldb *db, risk_kyc_vault_fn vault, void *vault_ctx,
                                         const struct risk_kyc_config *cfg, struct risk_kyc **out);
void risk_kyc_close(struct risk_kyc *k); /* NULL ok */
/* The handle's limits configuration (lives as long as the handle). */
const struct risk_kyc_config *risk_kyc_config_of(const struct risk_kyc *k);

/* The customer's tier: 0 for one never seen (and for a malformed id). Fast: from the cache, else
 * one primary-key read. */
CF_WARN_UNUSED enum cf_err risk_kyc_tier_get(struct risk_kyc *k, const char *user_id,
                                             int *tier_out);
/* Raises a tier-0 customer to 1 when phone_verified and their current submission holds details
 * (the phone was verified after the details were given); *tier_out gets the tier now and
 * *raised_out (may be NULL) whether this call raised it. */
CF_WARN_UNUSED enum cf_err risk_kyc_tier_refresh(struct risk_kyc *k, const char *user_id,
                                                 bool phone_verified, int64_t now_us, int *tier_out,
                                                 bool *raised_out);

/* Puts the customer's details into their draft (made when there is none, from the latest
 * submission's details when there was one). Raises the tier to 1 when phone_verified.
 * *draft_out gets the draft (details not copied: zero), *tier_out the tier after.
 * CF_ERR_INVALID_FIELD for details risk_kyc_details_valid refuses; CF_ERR_CONFLICT, with
 * *detail_out (may be NULL), while a submission is pending or once the customer is at tier 2. */
CF_WARN_UNUSED enum cf_err risk_kyc_details_put(struct risk_kyc *k, const char *user_id,
                                                const struct risk_kyc_details *d,
                                                bool phone_verified, int64_t now_us,
                                                struct risk_kyc_submission *draft_out,
                                                int *tier_out, const char **detail_out);
/* Adds a document to the customer's draft (made as details_put makes it): content is checked
 * by its magic bytes against content (CF_ERR_INVALID_FIELD when they differ, *detail_out
 * says so), its size against RISK_KYC_DOC_BYTES_MIN..RISK_KYC_DOC_BYTES_MAX
 * (CF_ERR_PAYLOAD_TOO_LARGE above). CF_ERR_CONFLICT as details_put, and when the draft holds
 * RISK_KYC_DOCS_MAX documents. *out gets the document's description. */
CF_WARN_UNUSED enum cf_err risk_kyc_document_add(struct risk_kyc *k, const char *user_id,
                                                 uint8_t kind, uint8_t content,
                                                 const uint8_t *bytes, size_t n, int64_t now_us,
                                                 struct risk_kyc_document *out,
                                                 const char **detail_out);
/* Submits the customer's draft for review: DRAFT -> PENDING. CF_ERR_CONFLICT (*detail_out says
 * why) when there is no draft, it is pending already, it lacks details or an identity
 * document, or the customer is at tier 2. *out gets the submission. */
CF_WARN_UNUSED enum cf_err risk_kyc_submit(struct risk_kyc *k, const char *user_id, int64_t now_us,
                                           struct risk_kyc_submission *out,
                                           const char **detail_out);
/* Decides the customer's pending submission (submission_id NULL or "": whichever is pending;
 * else it must be that one): approve raises the tier to 2, reject leaves it. reason is the
 * staff's (required), customer_reason (NULL or "": none) what the customer is shown. by is the
 * staff member (1..RISK_KYC_USER_BYTES_MAX - 1 printable ASCII bytes). idem may be NULL.
 * *out gets the decision's event (reasons opened), *tier_out the tier now, *replay_out whether
 * idem's key had made it before. CF_ERR_CONFLICT (*detail_out) when nothing is pending or the
 * pending one is another than submission_id; CF_ERR_NOT_FOUND for a customer never seen. */
CF_WARN_UNUSED enum cf_err
risk_kyc_decide(struct risk_kyc *k, const char *user_id, const char *submission_id, bool approve,
                const char *reason, const char *customer_reason, const char *by,
                const struct risk_kyc_idem *idem, int64_t now_us, struct risk_kyc_event *out,
                int *tier_out, bool *replay_out, const char **detail_out);

/* Lowers the customer's tier to tier (0 or 1, below the tier now) and holds the automatic raise
 * to tier 1 until a submission is approved. reason, customer_reason, by and idem as
 * risk_kyc_decide's; *out gets the event (kind LOWER), *tier_out the tier now, *replay_out
 * whether idem's key had made it before (a key that made a decision is CF_ERR_IDEM_KEY_REUSED,
 * and the other way round). CF_ERR_INVALID_FIELD for a tier out of range; CF_ERR_CONFLICT
 * (*detail_out) when the customer is at that tier or below already. */
CF_WARN_UNUSED enum cf_err risk_kyc_tier_lower(struct risk_kyc *k, const char *user_id, int tier,
                                               const char *reason, const char *customer_reason,
                                               const char *by, const struct risk_kyc_idem *idem,
                                               int64_t now_us, struct risk_kyc_event *out,
                                               int *tier_out, bool *replay_out,
                                               const char **detail_out);

/* The customer as a view shows them: details of latest and current opened; staff set opens the
 * staff reasons too (customers see customer_reason only). A customer never seen answers tier
 * 0, state NONE and nothing else (CF_OK). */
CF_WARN_UNUSED enum cf_err risk_kyc_view_get(struct risk_kyc *k, const char *user_id, bool staff,
                                             struct risk_kyc_view *out);
/* The customer's events, newest first, at most max (<= RISK_KYC_HISTORY_MAX); staff set opens
 * the staff reasons. *n_out may be 0. */
CF_WARN_UNUSED enum cf_err risk_kyc_history(struct risk_kyc *k, const char *user_id, bool staff,
                                            struct risk_kyc_event *out, size_t max, size_t *n_out);
/* The submissions in state (PENDING: oldest submitted first, rows after cursor; APPROVED,
 * REJECTED: newest decided first, rows before cursor; 0: from the start), at most max
 * (<= RISK_KYC_LIST_MAX), nothing opened. The last one's queue_row is the next cursor.
 * CF_ERR_INVALID_FIELD for another state. */
CF_WARN_UNUSED enum cf_err risk_kyc_list(struct risk_kyc *k, uint8_t state, uint64_t cursor,
                                         struct risk_kyc_submission *out, size_t max,
                                         size_t *n_out);
/* The document doc_id of user_id: *meta_out its description, *content_out its bytes
 * (malloc'd, *n_out of them: the caller wipes and frees them). CF_ERR_NOT_FOUND for an unknown
 * document or another customer's. */
CF_WARN_UNUSED enum cf_err risk_kyc_document_read(struct risk_kyc *k, const char *user_id,
                                                  const char *doc_id,
                                                  struct risk_kyc_document *meta_out,
                                                  uint8_t **content_out, size_t *n_out);

#endif
