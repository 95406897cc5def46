/*
 * rules.h - the risk rules engine: a small rule language, its compiler, and the evaluator that
 * scores a money movement before it commits.
 *
 * A rule is data: an id, a condition written in the language below, an action, a reason code,
 * an optional description for staff, and an enabled flag. rules_rule_compile checks all of it
 * and turns the condition into a short program in a fixed-size struct (no pointers, no
 * allocation). A rules_set holds up to RULES_SET_MAX compiled rules and a version number; it is
 * built once and never changes, so any number of threads may evaluate it at once while the
 * owner swaps in a new set (publish the pointer with release/acquire, destroy the old set once no
 * evaluation can still hold it). rules_evaluate runs every enabled rule of a set over one
 * feature vector (struct risk_features) and answers the most severe matching action with every
 * matching rule's id and reason. It allocates nothing and reads no clock.
 *
 * Actions, least to most severe: allow < challenge (step-up) < review (held as a pending
 * transfer until an analyst decides) < block. No match means allow. The customer is only ever
 * shown rules_action_customer_message of the decision's action; ids, reasons and descriptions
 * are for staff.
 *
 * The language (also in docs/RISK.md, "Rules language"), as EBNF; whitespace (space, tab, CR,
 * LF) may separate any two tokens, and keywords (and, or, not, in, true, false) are lower case
 * and reserved:
 *
 *   condition   = or_expr ;
 *   or_expr     = and_expr , { "or" , and_expr } ;
 *   and_expr    = not_expr , { "and" , not_expr } ;
 *   not_expr    = { "not" } , primary ;
 *   primary     = "(" , or_expr , ")" | comparison | feature ;   (* bare: boolean features *)
 *   comparison  = feature , compare_op , literal
 *               | feature , "in" , "[" , literal , { "," , literal } , "]" ;
 *   compare_op  = "==" | "!=" | "<" | "<=" | ">" | ">=" ;
 *   literal     = integer | string | "true" | "false" ;
 *   integer     = [ "-" ] , digit , { digit } ;        (* -2^63 .. 2^63-1, decimal *)
 *   string      = '"' , { char } , '"' ;               (* at most 15 chars *)
 *   char        = ? a byte 0x20..0x7E other than '"' and '\' ? ;   (* no escapes *)
 *   feature     = ( letter | "_" ) , { letter | digit | "_" } ;  (* a name of the registry *)
 *
 * Precedence, tightest first: a comparison (an atom: its operands are a feature and literals
 * only), then not, then and, then or; so `not amount_minor > 5 and payee_new or device_new`
 * reads ((not (amount_minor > 5)) and payee_new) or device_new. and/or short-circuit (they have
 * no side effects, so only speed depends on it).
 *
 * Types, checked at compile time with the 1-based byte column of the offending token:
 *   integer features: == != < <= > >= against an integer; in [integers].
 *   text features: == != against a string; in [strings]; the string must be a valid value of
 *     the feature (a known currency code for `currency`, two capital letters or "" for the
 *     countries, one of the listed values for `kind` and `payee_kind`).
 *   boolean features: == != against true or false, or standing alone as a condition.
 * Anything else (a string against an integer feature, < on a text, an unknown feature, a bare
 * integer feature) is refused.
 *
 * Bounds: a condition is 1..RULES_EXPR_BYTES_MAX bytes, nests parentheses at most
 * RULES_DEPTH_MAX deep, compiles to at most RULES_OPS_MAX operations and RULES_LITERALS_MAX
 * literals. The parser recurses only through parentheses, so its depth is bounded by
 * RULES_DEPTH_MAX whatever the input; the program only jumps forward, so it always ends.
 *
 * Errors: CF_ERR_INVALID_FIELD for every malformed rule (with a struct rules_error naming the
 * field, the column and the reason) and for a set with duplicate ids; CF_ERR_NOMEM when a set
 * cannot be allocated. Outputs are untouched on failure, except the error detail, which is
 * written only then.
 *
 * Threads: everything here is pure or works on caller storage and immutable sets; any thread may
 * call anything. rules_rule_compile reads the currency table (currency.h), which must be settled
 * before.
 */
#ifndef COFFER_RISK_RULES_H
#define COFFER_RISK_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "risk/velocity.h"

/* A rule id and a reason code: [a-z0-9_]{1,40}, short enough to show in a list and to index. */
#define RULES_ID_BYTES_MAX 40
#define RULES_REASON_BYTES_MAX 40

/* The staff-facing description: a sentence or two, UTF-8 without control characters. */
#define RULES_DESCRIPTION_BYTES_MAX 280

/* A condition's text: a dozen comparisons with long in-lists fit; a longer one is several
 * rules. */
#define RULES_EXPR_BYTES_MAX 1024

/* Parenthesis nesting: real rules nest two or three deep; 32 bounds the parser's recursion. */
#define RULES_DEPTH_MAX 32

/* Operations of one compiled condition: a comparison or in-list is one, each and/or adds one, a
 * run of nots at most one. 64 comparisons joined by and/or fit; real rules use under 30, and a
 * condition that needs more is several rules. A compiled rule is about 5 KB. */
#define RULES_OPS_MAX 128

/* Literals kept apart from the operations: strings, and the items of in-lists. */
#define RULES_LITERALS_MAX 64

/* A text feature's storage, with its NUL: currency codes (MONEY_CODE_BYTES_MAX = 12), countries
 * and the kind names fit; so a string literal is at most 15 bytes. */
#define RULES_TEXT_BYTES_MAX 16

/* Rules in one set: a few dozen are active in practice; 200 keeps the decision well under the
 * 1 ms budget. */
#define RULES_SET_MAX 200

/* Matching rules listed in a decision; more are counted in matches_omitted_n. */
#define RULES_MATCHES_MAX 16

/* Sample indexes a dry run reports. */
#define RULES_DRY_SAMPLES_MAX 20

enum rules_action {
    RULES_ACTION_ALLOW,
    RULES_ACTION_CHALLENGE,
    RULES_ACTION_REVIEW,
    RULES_ACTION_BLOCK,
    RULES_ACTIONS_N
};

enum rules_type { RULES_TYPE_INT, RULES_TYPE_TEXT, RULES_TYPE_BOOL };

/* The velocity keys, in the order of risk_features.velocity. */
enum rules_key { RULES_KEY_USER, RULES_KEY_DEVICE, RULES_KEY_IP, RULES_KEY_PAYEE, RULES_KEYS_N };

/*
 * The feature vector of one money movement, filled by the caller (docs/RISK.md, "Features",
 * says what each means). Text fields hold at most RULES_TEXT_BYTES_MAX - 1 bytes and a NUL;
 * rules_features_text_set fills one safely. A zeroed struct is a valid (empty) vector.
 * velocity[k] is what velocity_read answers for key k of this operation (currency in the key):
 * velocity features are named count_<window>_<key> and sum_<window>_<key>.
 */
struct risk_features {
    int64_t amount_minor;                /* of `currency` */
    int64_t account_age_s;               /* since the payer's account was opened */
    int64_t failed_signins_24h;          /* the payer's failed sign-ins in the last 24 hours */
    int64_t mcc;                         /* merchant category code 0..9999; 0 when not a merchant */
    int64_t hour_utc;                    /* 0..23 */
    int64_t kyc_tier;                    /* the payer's verification tier, 0 = none */
    char currency[RULES_TEXT_BYTES_MAX]; /* "EUR" */
    char kind[RULES_TEXT_BYTES_MAX];     /* send payment withdrawal topup payout conversion */
    char payee_kind[RULES_TEXT_BYTES_MAX];   /* user merchant bank none */
    char ip_country[RULES_TEXT_BYTES_MAX];   /* ISO 3166 alpha-2, "" when unknown */
    char home_country[RULES_TEXT_BYTES_MAX]; /* ISO 3166 alpha-2, "" when unknown */
    bool payee_new;                          /* first movement to this payee */
    bool device_new;                         /* device first seen for this user recently */
    bool country_mismatch;                   /* ip_country differs from home_country */
    struct velocity_counts velocity[RULES_KEYS_N];
};

/* Copies text (len bytes, no NUL needed) into a text field, NUL-padded to the end.
 * CF_ERR_INVALID_FIELD, dst untouched, when len >= RULES_TEXT_BYTES_MAX or text has a NUL. */
CF_WARN_UNUSED enum cf_err rules_features_text_set(char dst[RULES_TEXT_BYTES_MAX], const char *text,
                                                   size_t len);

/* One entry of the feature registry. Static storage. */
struct rules_feature_info {
    const char *name;
    enum rules_type type;
    const char *doc; /* one line for staff */
};

/* The registry, in a fixed order, for listings (the API, the documentation). */
size_t rules_features_n(void);
const struct rules_feature_info *rules_feature_at(size_t i); /* i < rules_features_n() */

/* Action names ("allow", "challenge", "review", "block"), static storage; and back:
 * CF_ERR_INVALID_FIELD for any other text (exact, lower case), *out untouched. */
const char *rules_action_name(enum rules_action action);
CF_WARN_UNUSED enum cf_err rules_action_parse(const char *text, size_t len, enum rules_action *out);

/* Whether text[0..len) is a code of the rules language: [a-z0-9_]{1,max} (a rule id or a reason
 * code with max RULES_ID_BYTES_MAX or RULES_REASON_BYTES_MAX). NULL text is not. Pure. */
bool rules_code_valid(const char *text, size_t len, size_t max);

/* What the customer is told for a decision's action: never a rule, reason or threshold.
 * Static storage, never NULL. */
const char *rules_action_customer_message(enum rules_action action);

/* A rule as stored and edited (texts need not be NUL-terminated; description may be NULL when
 * description_len is 0). */
struct rules_rule_def {
    const char *id;
    size_t id_len;
    const char *condition;
    size_t condition_len;
    enum rules_action action;
    const char *reason;
    size_t reason_len;
    const char *description;
    size_t description_len;
    bool enabled;
};

/* Where a rule is wrong. Static strings. */
struct rules_error {
    const char *field;   /* "id", "action", "reason", "description" or "condition" */
    size_t column;       /* 1-based byte column in the condition; 0 when not about a token */
    const char *message; /* lower case, no final period: "unknown feature" */
};

/* One operation of a compiled condition. Internal to rules.c: read-only for everyone else. */
struct rules_op {
    uint8_t code;
    uint8_t items_n;
    uint16_t offset; /* of the feature in struct risk_features */
    uint16_t arg;    /* jump target, or first literal */
    int64_t value;
};

struct rules_literal {
    int64_t value;
    char text[RULES_TEXT_BYTES_MAX];
};

/* A checked and compiled rule: plain data, safe to copy with memcpy. Texts are NUL-terminated
 * and NUL-padded. */
struct rules_compiled_rule {
    char id[RULES_ID_BYTES_MAX + 1];
    char reason[RULES_REASON_BYTES_MAX + 1];
    char description[RULES_DESCRIPTION_BYTES_MAX + 1];
    char condition[RULES_EXPR_BYTES_MAX + 1];
    enum rules_action action;
    bool enabled;
    uint16_t ops_n;      /* 1..RULES_OPS_MAX */
    uint16_t literals_n; /* 0..RULES_LITERALS_MAX */
    struct rules_op ops[RULES_OPS_MAX];
    struct rules_literal literals[RULES_LITERALS_MAX];
};

/*
 * Checks and compiles def into *out. In order: id and reason ([a-z0-9_]{1,40}), action (a value
 * of enum rules_action), description (0..RULES_DESCRIPTION_BYTES_MAX bytes of UTF-8 without
 * control characters), then the condition (the grammar, types and bounds above).
 * CF_ERR_INVALID_FIELD with *error_out filled on the first problem; *out is untouched then.
 */
CF_WARN_UNUSED enum cf_err rules_rule_compile(const struct rules_rule_def *def,
                                              struct rules_compiled_rule *out,
                                              struct rules_error *error_out);

/* true when rule's condition holds for f (whether or not the rule is enabled). */
bool rules_rule_matches(const struct rules_compiled_rule *rule, const struct risk_features *f);

struct rules_set;

/*
 * Builds an immutable set of version `version` from n (0..RULES_SET_MAX) compiled rules, copied
 * in the given order (the order of matches listed at equal severity). CF_ERR_INVALID_FIELD
 * when two rules share an id or n > RULES_SET_MAX; CF_ERR_NOMEM; *out untouched on failure.
 * *out is the caller's, freed with rules_set_destroy.
 */
CF_WARN_UNUSED enum cf_err rules_set_create(uint64_t version,
                                            const struct rules_compiled_rule *rules, size_t n,
                                            struct rules_set **out);
void rules_set_destroy(struct rules_set *set); /* NULL is ignored */

uint64_t rules_set_version(const struct rules_set *set);
size_t rules_set_rules_n(const struct rules_set *set);
const struct rules_compiled_rule *rules_set_rule_at(const struct rules_set *set, size_t i);
/* The rule with this id (len bytes), or NULL. The pointer lives as long as the set. */
const struct rules_compiled_rule *rules_set_rule_find(const struct rules_set *set, const char *id,
                                                      size_t len);

struct rules_match {
    enum rules_action action;
    char id[RULES_ID_BYTES_MAX + 1];
    char reason[RULES_REASON_BYTES_MAX + 1];
};

/* The outcome of one evaluation: copies, so it outlives the set. */
struct rules_decision {
    enum rules_action action; /* the most severe matching action; allow when none matched */
    uint64_t set_version;
    size_t matches_n;         /* 0..RULES_MATCHES_MAX listed below */
    size_t matches_omitted_n; /* matching rules not listed */
    struct rules_match matches[RULES_MATCHES_MAX];
};

/*
 * Runs every enabled rule of set over f and fills *out: the most severe matching action, and
 * the matching rules ordered by severity (block first), then by their order in the set; when
 * more than RULES_MATCHES_MAX match, the first RULES_MATCHES_MAX of that order are listed (so
 * the rules that decided are always there) and the rest counted. matches[matches_n..] are left
 * as they were. Disabled rules are never run. Allocates nothing; cannot fail.
 */
void rules_evaluate(const struct rules_set *set, const struct risk_features *f,
                    struct rules_decision *out);

/* What a candidate rule would have done to recorded feature vectors. */
struct rules_dry_report {
    size_t scanned_n; /* = n */
    size_t matched_n; /* vectors whose condition holds */
    /* The decision the candidate alone gives each vector: its action when it matches, allow
     * when not. Sums to scanned_n. */
    size_t by_action_n[RULES_ACTIONS_N];
    size_t samples_n;                      /* 0..RULES_DRY_SAMPLES_MAX */
    size_t samples[RULES_DRY_SAMPLES_MAX]; /* indexes of the first matching vectors, rising */
};

/*
 * Replays candidate over history[0..n) (history may be NULL when n is 0) and fills *out. The
 * candidate's enabled flag is ignored: a dry run is how a rule is tried before it is enabled.
 * Cannot fail; takes time in proportion to n (about what n decisions of one rule take).
 */
void rules_dry_run(const struct rules_compiled_rule *candidate, const struct risk_features *history,
                   size_t n, struct rules_dry_report *out);

#endif
