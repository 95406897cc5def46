/* rules.c - the risk rule language: checks, lexer, compiler, evaluator and sets; see rules.h. */
#include "risk/rules.h"

#include <stdlib.h>
#include <string.h>

#include "money/currency.h"

/*
 * How: the compiler is a recursive-descent parser over a one-token lexer that emits a program
 * for a one-register machine as it parses. Every comparison sets the register; `not` flips it;
 * `a and b` is a's code, a jump past b's code when the register is false, then b's code; `a or
 * b` the same with a jump when true. Jumps of one or-chain (and-chain) go to its end, patched
 * when the chain closes: until then each jump's target field links to the previous pending
 * jump. The evaluator runs the program from its first operation to past its last and the
 * register is the answer; it reads features at byte offsets fixed at compile time.
 */

enum op_code {
    OP_INVALID, /* a zeroed operation is never valid */
    OP_INT_EQ,
    OP_INT_NE,
    OP_INT_LT,
    OP_INT_LE,
    OP_INT_GT,
    OP_INT_GE,
    OP_TEXT_EQ,
    OP_TEXT_NE,
    OP_BOOL_IS,
    OP_IN_INT,
    OP_IN_TEXT,
    OP_NOT,
    OP_JUMP_IF_TRUE,
    OP_JUMP_IF_FALSE,
};

_Static_assert(sizeof(struct risk_features) <= UINT16_MAX, "feature offsets are 16-bit");
_Static_assert(RULES_OPS_MAX < UINT16_MAX, "jump targets are 16-bit");
_Static_assert(RULES_LITERALS_MAX <= UINT8_MAX, "in-list sizes are 8-bit");
_Static_assert(RULES_SET_MAX <= UINT16_MAX, "set indexes are 16-bit");
_Static_assert(RULES_TEXT_BYTES_MAX > 12, "a currency code (MONEY_CODE_BYTES_MAX) must fit");

/* The feature registry ------------------------------------------------------------------------- */

enum text_class { TEXT_NONE, TEXT_CURRENCY, TEXT_COUNTRY, TEXT_KIND, TEXT_PAYEE_KIND };

struct feature_def {
    struct rules_feature_info info;
    size_t offset;
    enum text_class text_class;
};

static const char *const kind_values[] = {"send",   "payment",    "withdrawal", "topup",
                                          "payout", "conversion", "refund",     NULL};
static const char *const payee_kind_values[] = {"user", "merchant", "bank", "none", NULL};

#define F_INT(field, doc)                                                                          \
    {                                                                                              \
        {#field, RULES_TYPE_INT, doc}, offsetof(struct risk_features, field), 0                    \
    }
#define F_BOOL(field, doc)                                                                         \
    {                                                                                              \
        {#field, RULES_TYPE_BOOL, doc}, offsetof(struct risk_features, field), 0                   \
    }
#define F_TEXT(field, cls, doc)                                                                    \
    {                                                                                              \
        {#field, RULES_TYPE_TEXT, doc}, offsetof(struct risk_features, field), cls                 \
    }
#define F_VEL(stat, field, w, wname, wdoc, k, kname, kdoc)                                         \
    {                                                                                              \
        {stat "_" wname "_" kname, RULES_TYPE_INT,                                                 \
         stat " of operations in this currency by the same " kdoc " in the last " wdoc},           \
            offsetof(struct risk_features, velocity[k].field[w]), 0                                \
    }
#define F_VEL_KEY(k, kname, kdoc)                                                                  \
    F_VEL("count", count, VELOCITY_WINDOW_1M, "1m", "minute", k, kname, kdoc),                     \
        F_VEL("sum", sum_minor, VELOCITY_WINDOW_1M, "1m", "minute", k, kname, kdoc),               \
        F_VEL("count", count, VELOCITY_WINDOW_1H, "1h", "hour", k, kname, kdoc),                   \
        F_VEL("sum", sum_minor, VELOCITY_WINDOW_1H, "1h", "hour", k, kname, kdoc),                 \
        F_VEL("count", count, VELOCITY_WINDOW_24H, "24h", "24 hours", k, kname, kdoc),             \
        F_VEL("sum", sum_minor, VELOCITY_WINDOW_24H, "24h", "24 hours", k, kname, kdoc)

static const struct feature_def features[] = {
    F_INT(amount_minor, "amount in minor units of currency"),
    F_TEXT(currency, TEXT_CURRENCY, "currency or asset code"),
    F_TEXT(kind, TEXT_KIND, "send, payment, withdrawal, topup, payout, conversion or refund"),
    F_BOOL(payee_new, "first movement from this payer to this payee"),
    F_TEXT(payee_kind, TEXT_PAYEE_KIND, "user, merchant, bank or none"),
    F_INT(account_age_s, "seconds since the payer's account was opened"),
    F_BOOL(device_new, "the device is new for this payer"),
    F_INT(failed_signins_24h, "the payer's failed sign-ins in the last 24 hours"),
    F_TEXT(ip_country, TEXT_COUNTRY, "country of the client IP address, \"\" when unknown"),
    F_TEXT(home_country, TEXT_COUNTRY, "the payer's country of residence, \"\" when unknown"),
    F_BOOL(country_mismatch, "ip_country differs from home_country"),
    F_INT(mcc, "merchant category code, 0 when the payee is not a merchant"),
    F_INT(hour_utc, "hour of the day in UTC, 0 to 23"),
    F_INT(kyc_tier, "the payer's verification tier, 0 when unverified"),
    F_VEL_KEY(RULES_KEY_USER, "user", "user"),
    F_VEL_KEY(RULES_KEY_DEVICE, "device", "device"),
    F_VEL_KEY(RULES_KEY_IP, "ip", "IP address"),
    F_VEL_KEY(RULES_KEY_PAYEE, "payee", "payee"),
};

#define FEATURES_N (sizeof(features) / sizeof(features[0]))
_Static_assert(FEATURES_N == 14 + RULES_KEYS_N * VELOCITY_WINDOWS_N * 2, "the registry");

size_t rules_features_n(void) { return FEATURES_N; }

const struct rules_feature_info *rules_feature_at(size_t i)
{
    CF_ASSERT(i < FEATURES_N);
    return &features[i].info;
}

static const struct feature_def *feature_find(const char *name, size_t len)
{
    for (size_t i = 0; i < FEATURES_N; i++) {
        const char *n = features[i].info.name;
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return &features[i];
    }
    return NULL;
}

enum cf_err rules_features_text_set(char dst[RULES_TEXT_BYTES_MAX], const char *text, size_t len)
{
    CF_ASSERT(dst != NULL && (text != NULL || len == 0));
    if (len >= RULES_TEXT_BYTES_MAX || (len > 0 && memchr(text, '\0', len) != NULL))
        return CF_ERR_INVALID_FIELD;
    memset(dst, 0, RULES_TEXT_BYTES_MAX);
    if (len > 0)
        memcpy(dst, text, len);
    CF_ASSERT(dst[RULES_TEXT_BYTES_MAX - 1] == '\0');
    return CF_OK;
}

/* Actions -------------------------------------------------------------------------------------- */

static const char *const action_names[RULES_ACTIONS_N] = {"allow", "challenge", "review", "block"};

static const char *const action_messages[RULES_ACTIONS_N] = {
    "This payment was accepted.",
    "Please confirm this payment to continue.",
    "This payment is being checked. We will let you know shortly.",
    "This payment could not be completed. Please contact support if you need help.",
};

const char *rules_action_name(enum rules_action action)
{
    CF_ASSERT((unsigned)action < RULES_ACTIONS_N);
    return action_names[action];
}

enum cf_err rules_action_parse(const char *text, size_t len, enum rules_action *out)
{
    CF_ASSERT(out != NULL && (text != NULL || len == 0));
    for (int a = 0; a < RULES_ACTIONS_N; a++) {
        if (strlen(action_names[a]) == len && memcmp(action_names[a], text, len) == 0) {
            *out = (enum rules_action)a;
            return CF_OK;
        }
    }
    return CF_ERR_INVALID_FIELD;
}

const char *rules_action_customer_message(enum rules_action action)
{
    CF_ASSERT((unsigned)action < RULES_ACTIONS_N);
    return action_messages[action];
}

/* Rule texts ----------------------------------------------------------------------------------- */

bool rules_code_valid(const char *text, size_t len, size_t max)
{
    if (text == NULL || len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/* Length of the UTF-8 sequence at s[0..left) that is one code point other than a control
 * (C0, DEL, C1), a surrogate or an overlong form; 0 when there is none. */
static size_t utf8_char_length(const unsigned char *s, size_t left)
{
    CF_ASSERT(left > 0);
    unsigned c = s[0];
    if (c < 0x80)
        return c >= 0x20 && c != 0x7f ? 1 : 0;
    /* the lead byte gives the length, its payload bits and the smallest code point that needs
     * that length (below it the form is overlong) */
    static const struct {
        unsigned mask, lead, payload;
        size_t n;
        uint32_t min;
    } forms[] = {
        {0xe0, 0xc0, 0x1f, 2, 0x80}, {0xf0, 0xe0, 0x0f, 3, 0x800}, {0xf8, 0xf0, 0x07, 4, 0x10000}};
    size_t form = 0;
    while (form < 3 && (c & forms[form].mask) != forms[form].lead)
        form++;
    if (form == 3)
        return 0;
    size_t n = forms[form].n;
    uint32_t cp = c & forms[form].payload, min = forms[form].min;
    if (left < n)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f)
        return 0;
    return n;
}

static bool description_is_valid(const char *text, size_t len)
{
    if (len > RULES_DESCRIPTION_BYTES_MAX)
        return false;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_char_length(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

static bool rule_fail(struct rules_error *e, const char *field, size_t column, const char *message)
{
    e->field = field;
    e->column = column;
    e->message = message;
    return false;
}

/* Checks every part of def but the condition, and copies them into r. */
static bool rule_texts_take(const struct rules_rule_def *def, struct rules_compiled_rule *r,
                            struct rules_error *e)
{
    if (!rules_code_valid(def->id, def->id_len, RULES_ID_BYTES_MAX))
        return rule_fail(e, "id", 0, "must be 1 to 40 characters of a-z, 0-9 and _");
    if ((unsigned)def->action >= RULES_ACTIONS_N)
        return rule_fail(e, "action", 0, "must be allow, challenge, review or block");
    if (!rules_code_valid(def->reason, def->reason_len, RULES_REASON_BYTES_MAX))
        return rule_fail(e, "reason", 0, "must be 1 to 40 characters of a-z, 0-9 and _");
    if (def->description_len > 0 &&
        (def->description == NULL || !description_is_valid(def->description, def->description_len)))
        return rule_fail(e, "description", 0,
                         "must be at most 280 bytes of utf-8 without control characters");
    memcpy(r->id, def->id, def->id_len);
    memcpy(r->reason, def->reason, def->reason_len);
    if (def->description_len > 0)
        memcpy(r->description, def->description, def->description_len);
    r->action = def->action;
    r->enabled = def->enabled;
    return true;
}

/* Lexer ---------------------------------------------------------------------------------------- */

enum tok {
    TOK_END,
    TOK_IDENT,
    TOK_INT,
    TOK_STRING,
    TOK_LPAREN,
    TOK_RPAREN,
    TOK_LBRACK,
    TOK_RBRACK,
    TOK_COMMA,
    TOK_EQ,
    TOK_NE,
    TOK_LT,
    TOK_LE,
    TOK_GT,
    TOK_GE,
    TOK_AND,
    TOK_OR,
    TOK_NOT,
    TOK_IN,
    TOK_TRUE,
    TOK_FALSE,
};

struct token {
    enum tok kind;
    size_t start; /* byte offset in the condition */
    size_t len;   /* of the token; for a string, of its content */
    int64_t value;
};

struct parser {
    const char *text;
    size_t len;
    size_t pos;
    struct token tok;
    int depth;
    struct rules_compiled_rule *rule;
    struct rules_error *error;
};

static bool fail_at(struct parser *p, size_t offset, const char *message)
{
    return rule_fail(p->error, "condition", offset + 1, message);
}

static bool is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool is_ident_char(char c) { return is_ident_start(c) || is_digit(c); }

static const struct {
    const char *word;
    enum tok kind;
} keywords[] = {{"and", TOK_AND}, {"or", TOK_OR},     {"not", TOK_NOT},
                {"in", TOK_IN},   {"true", TOK_TRUE}, {"false", TOK_FALSE}};

static void lex_ident(struct parser *p)
{
    size_t start = p->pos;
    while (p->pos < p->len && is_ident_char(p->text[p->pos]))
        p->pos++;
    p->tok.kind = TOK_IDENT;
    p->tok.len = p->pos - start;
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
        if (strlen(keywords[i].word) == p->tok.len &&
            memcmp(keywords[i].word, p->text + start, p->tok.len) == 0)
            p->tok.kind = keywords[i].kind;
    }
}

/* An integer in -2^63 .. 2^63-1; digits glued to letters ("100k") are malformed. */
static bool lex_int(struct parser *p)
{
    size_t start = p->pos;
    bool negative = p->text[p->pos] == '-';
    if (negative)
        p->pos++;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t magnitude = 0;
    while (p->pos < p->len && is_digit(p->text[p->pos])) {
        uint64_t digit = (uint64_t)(p->text[p->pos] - '0');
        if (magnitude > (limit - digit) / 10)
            return fail_at(p, start, "integer out of range");
        magnitude = magnitude * 10 + digit;
        p->pos++;
    }
    if (p->pos < p->len && is_ident_char(p->text[p->pos]))
        return fail_at(p, start, "malformed number");
    CF_ASSERT(magnitude <= limit);
    p->tok.kind = TOK_INT;
    p->tok.len = p->pos - start;
    if (!negative)
        p->tok.value = (int64_t)magnitude;
    else
        p->tok.value = magnitude == limit ? INT64_MIN : -(int64_t)magnitude;
    return true;
}

static bool lex_string(struct parser *p)
{
    size_t start = p->pos++;
    while (p->pos < p->len && p->text[p->pos] != '"') {
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c < 0x20 || c > 0x7e || c == '\\')
            return fail_at(p, p->pos, "character not allowed in a string");
        p->pos++;
    }
    if (p->pos >= p->len)
        return fail_at(p, start, "unterminated string");
    size_t content = p->pos - start - 1;
    if (content >= RULES_TEXT_BYTES_MAX)
        return fail_at(p, start, "string longer than 15 bytes");
    p->pos++;
    p->tok.kind = TOK_STRING;
    p->tok.len = content;
    return true;
}

/* One- and two-character operators and punctuation. */
static bool lex_punct(struct parser *p)
{
    char c = p->text[p->pos];
    bool eq_next = p->pos + 1 < p->len && p->text[p->pos + 1] == '=';
    static const char singles[] = "()[],";
    static const enum tok single_kinds[] = {TOK_LPAREN, TOK_RPAREN, TOK_LBRACK, TOK_RBRACK,
                                            TOK_COMMA};
    const char *hit = c != '\0' ? strchr(singles, c) : NULL;
    if (hit != NULL)
        p->tok.kind = single_kinds[hit - singles];
    else if (c == '=' && eq_next)
        p->tok.kind = TOK_EQ;
    else if (c == '=')
        return fail_at(p, p->pos, "= is not an operator: use ==");
    else if (c == '!' && eq_next)
        p->tok.kind = TOK_NE;
    else if (c == '<')
        p->tok.kind = eq_next ? TOK_LE : TOK_LT;
    else if (c == '>')
        p->tok.kind = eq_next ? TOK_GE : TOK_GT;
    else
        return fail_at(p, p->pos, "unexpected character");
    p->tok.len = (p->tok.kind == TOK_EQ || p->tok.kind == TOK_NE || p->tok.kind == TOK_LE ||
                  p->tok.kind == TOK_GE)
                     ? 2
                     : 1;
    p->pos += p->tok.len;
    return true;
}

static bool lex_next(struct parser *p)
{
    while (p->pos < p->len && strchr(" \t\r\n", p->text[p->pos]) != NULL && p->text[p->pos] != '\0')
        p->pos++;
    p->tok.start = p->pos;
    p->tok.len = 0;
    p->tok.value = 0;
    if (p->pos >= p->len) {
        p->tok.kind = TOK_END;
        return true;
    }
    char c = p->text[p->pos];
    if (is_ident_start(c)) {
        lex_ident(p);
        return true;
    }
    if (is_digit(c) || (c == '-' && p->pos + 1 < p->len && is_digit(p->text[p->pos + 1])))
        return lex_int(p);
    if (c == '"')
        return lex_string(p);
    return lex_punct(p);
}

/* Emission ------------------------------------------------------------------------------------- */

static bool emit(struct parser *p, struct rules_op op)
{
    struct rules_compiled_rule *r = p->rule;
    if (r->ops_n >= RULES_OPS_MAX)
        return fail_at(p, p->tok.start, "condition too complex");
    r->ops[r->ops_n++] = op;
    return true;
}

/* Emits a jump whose target is patched by patch_jumps; *pending chains the unpatched jumps
 * (index + 1, 0 = none) through their arg fields. */
static bool emit_jump(struct parser *p, uint8_t code, uint16_t *pending)
{
    uint16_t at = p->rule->ops_n;
    struct rules_op op = {.code = code, .arg = *pending};
    if (!emit(p, op))
        return false;
    *pending = (uint16_t)(at + 1);
    return true;
}

/* Points every pending jump at the next operation to be emitted. */
static void patch_jumps(struct parser *p, uint16_t pending)
{
    struct rules_compiled_rule *r = p->rule;
    while (pending != 0) {
        struct rules_op *op = &r->ops[pending - 1];
        CF_ASSERT(op->code == OP_JUMP_IF_TRUE || op->code == OP_JUMP_IF_FALSE);
        CF_ASSERT(op->arg < pending); /* the chain runs backwards */
        uint16_t next = op->arg;
        op->arg = r->ops_n;
        CF_ASSERT(op->arg > pending - 1); /* forward only */
        pending = next;
    }
}

static bool literal_add(struct parser *p, struct rules_literal lit, uint16_t *index_out)
{
    struct rules_compiled_rule *r = p->rule;
    if (r->literals_n >= RULES_LITERALS_MAX)
        return fail_at(p, p->tok.start, "too many literals");
    *index_out = r->literals_n;
    r->literals[r->literals_n++] = lit;
    return true;
}

/* Types ---------------------------------------------------------------------------------------- */

static bool value_in(const char *const *values, const char *text, size_t len)
{
    for (size_t i = 0; values[i] != NULL; i++) {
        if (strlen(values[i]) == len && memcmp(values[i], text, len) == 0)
            return true;
    }
    return false;
}

/* NULL when the string token is a value feature f can take, else why not. */
static const char *text_value_problem(const struct feature_def *f, const char *text, size_t len)
{
    switch (f->text_class) {
    case TEXT_CURRENCY:
        return currency_find(text, len) != NULL ? NULL : "unknown currency";
    case TEXT_COUNTRY:
        if (len == 0 ||
            (len == 2 && text[0] >= 'A' && text[0] <= 'Z' && text[1] >= 'A' && text[1] <= 'Z'))
            return NULL;
        return "a country is two capital letters, or \"\" for unknown";
    case TEXT_KIND:
        return value_in(kind_values, text, len) ? NULL : "unknown kind";
    case TEXT_PAYEE_KIND:
        return value_in(payee_kind_values, text, len) ? NULL : "unknown payee kind";
    case TEXT_NONE:
        break;
    }
    CF_ASSERT(!"a text feature has a text class");
    return NULL;
}

/* Checks that the current token is a literal of f's type and turns it into *out. */
static bool literal_take(struct parser *p, const struct feature_def *f, struct rules_literal *out)
{
    const struct token *t = &p->tok;
    memset(out, 0, sizeof(*out));
    switch (f->info.type) {
    case RULES_TYPE_INT:
        if (t->kind != TOK_INT)
            return fail_at(p, t->start, "integer feature: expected an integer");
        out->value = t->value;
        return true;
    case RULES_TYPE_BOOL:
        if (t->kind != TOK_TRUE && t->kind != TOK_FALSE)
            return fail_at(p, t->start, "boolean feature: expected true or false");
        out->value = t->kind == TOK_TRUE;
        return true;
    case RULES_TYPE_TEXT:
        break;
    }
    if (t->kind != TOK_STRING)
        return fail_at(p, t->start, "text feature: expected a string");
    const char *content = p->text + t->start + 1;
    const char *problem = text_value_problem(f, content, t->len);
    if (problem != NULL)
        return fail_at(p, t->start, problem);
    CF_ASSERT(t->len < RULES_TEXT_BYTES_MAX);
    memcpy(out->text, content, t->len);
    return true;
}

/* Parser --------------------------------------------------------------------------------------- */

static bool parse_or(struct parser *p);

static bool is_compare(enum tok k) { return k >= TOK_EQ && k <= TOK_GE; }

/* The operation code for feature type `type` and comparison token k, or OP_INVALID. */
static uint8_t compare_code(enum rules_type type, enum tok k)
{
    if (type == RULES_TYPE_INT)
        return (uint8_t)(OP_INT_EQ + (k - TOK_EQ)); /* same order: == != < <= > >= */
    if (k != TOK_EQ && k != TOK_NE)
        return OP_INVALID;
    if (type == RULES_TYPE_TEXT)
        return k == TOK_EQ ? OP_TEXT_EQ : OP_TEXT_NE;
    return OP_BOOL_IS;
}

static bool parse_compare(struct parser *p, const struct feature_def *f)
{
    enum tok k = p->tok.kind;
    size_t op_start = p->tok.start;
    struct rules_op op = {.code = compare_code(f->info.type, k), .offset = (uint16_t)f->offset};
    if (op.code == OP_INVALID)
        return fail_at(p, op_start,
                       f->info.type == RULES_TYPE_TEXT ? "text feature: only ==, != and in apply"
                                                       : "boolean feature: only == and != apply");
    struct rules_literal lit;
    if (!lex_next(p) || !literal_take(p, f, &lit))
        return false;
    if (op.code == OP_TEXT_EQ || op.code == OP_TEXT_NE) {
        if (!literal_add(p, lit, &op.arg))
            return false;
    } else if (op.code == OP_BOOL_IS) {
        op.value = (k == TOK_EQ) == (lit.value != 0); /* `!= false` is `== true` */
    } else {
        op.value = lit.value;
    }
    return emit(p, op) && lex_next(p);
}

static bool parse_in(struct parser *p, const struct feature_def *f)
{
    if (f->info.type == RULES_TYPE_BOOL)
        return fail_at(p, p->tok.start, "boolean feature: only == and != apply");
    if (!lex_next(p))
        return false;
    if (p->tok.kind != TOK_LBRACK)
        return fail_at(p, p->tok.start, "expected [");
    struct rules_op op = {.code = f->info.type == RULES_TYPE_INT ? OP_IN_INT : OP_IN_TEXT,
                          .offset = (uint16_t)f->offset,
                          .arg = p->rule->literals_n};
    for (;;) {
        if (!lex_next(p))
            return false;
        if (p->tok.kind == TOK_RBRACK && op.items_n == 0)
            return fail_at(p, p->tok.start, "empty list");
        struct rules_literal lit;
        uint16_t index;
        if (!literal_take(p, f, &lit) || !literal_add(p, lit, &index) || !lex_next(p))
            return false;
        op.items_n++;
        if (p->tok.kind == TOK_RBRACK)
            break;
        if (p->tok.kind != TOK_COMMA)
            return fail_at(p, p->tok.start, "expected , or ]");
    }
    CF_ASSERT(op.items_n >= 1 && op.arg + op.items_n == p->rule->literals_n);
    return emit(p, op) && lex_next(p);
}

static bool parse_feature(struct parser *p)
{
    const struct feature_def *f = feature_find(p->text + p->tok.start, p->tok.len);
    if (f == NULL)
        return fail_at(p, p->tok.start, "unknown feature");
    size_t feature_start = p->tok.start;
    if (!lex_next(p))
        return false;
    if (is_compare(p->tok.kind))
        return parse_compare(p, f);
    if (p->tok.kind == TOK_IN)
        return parse_in(p, f);
    if (f->info.type != RULES_TYPE_BOOL) {
        enum tok k = p->tok.kind;
        if (k == TOK_END || k == TOK_AND || k == TOK_OR || k == TOK_RPAREN)
            return fail_at(p, feature_start,
                           "compare this feature: a bare feature must be boolean");
        return fail_at(p, p->tok.start, "expected a comparison operator or in");
    }
    struct rules_op op = {.code = OP_BOOL_IS, .offset = (uint16_t)f->offset, .value = 1};
    return emit(p, op);
}

static bool parse_primary(struct parser *p)
{
    if (p->tok.kind == TOK_IDENT)
        return parse_feature(p);
    if (p->tok.kind != TOK_LPAREN)
        return fail_at(p, p->tok.start, "expected a feature, ( or not");
    if (p->depth >= RULES_DEPTH_MAX)
        return fail_at(p, p->tok.start, "parentheses nest too deep");
    p->depth++;
    if (!lex_next(p) || !parse_or(p))
        return false;
    if (p->tok.kind != TOK_RPAREN)
        return fail_at(p, p->tok.start, "expected )");
    p->depth--;
    return lex_next(p);
}

static bool parse_not(struct parser *p)
{
    bool negate = false;
    while (p->tok.kind == TOK_NOT) {
        negate = !negate;
        if (!lex_next(p))
            return false;
    }
    if (!parse_primary(p))
        return false;
    struct rules_op op = {.code = OP_NOT};
    return !negate || emit(p, op);
}

static bool parse_and(struct parser *p)
{
    uint16_t pending = 0;
    if (!parse_not(p))
        return false;
    while (p->tok.kind == TOK_AND) {
        if (!emit_jump(p, OP_JUMP_IF_FALSE, &pending) || !lex_next(p) || !parse_not(p))
            return false;
    }
    patch_jumps(p, pending);
    return true;
}

static bool parse_or(struct parser *p)
{
    uint16_t pending = 0;
    if (!parse_and(p))
        return false;
    while (p->tok.kind == TOK_OR) {
        if (!emit_jump(p, OP_JUMP_IF_TRUE, &pending) || !lex_next(p) || !parse_and(p))
            return false;
    }
    patch_jumps(p, pending);
    return true;
}

static bool condition_compile(const char *text, size_t len, struct rules_compiled_rule *r,
                              struct rules_error *e)
{
    if (text == NULL || len == 0)
        return rule_fail(e, "condition", 0, "empty condition");
    if (len > RULES_EXPR_BYTES_MAX)
        return rule_fail(e, "condition", RULES_EXPR_BYTES_MAX + 1, "condition too long");
    struct parser p = {.text = text, .len = len, .rule = r, .error = e};
    if (!lex_next(&p))
        return false;
    if (p.tok.kind == TOK_END)
        return fail_at(&p, 0, "empty condition");
    if (!parse_or(&p))
        return false;
    if (p.tok.kind != TOK_END)
        return fail_at(&p, p.tok.start, "expected and, or, or the end of the condition");
    CF_ASSERT(p.depth == 0);
    CF_ASSERT(r->ops_n >= 1 && r->ops_n <= RULES_OPS_MAX);
    memcpy(r->condition, text, len);
    return true;
}

enum cf_err rules_rule_compile(const struct rules_rule_def *def, struct rules_compiled_rule *out,
                               struct rules_error *error_out)
{
    CF_ASSERT(def != NULL && out != NULL && error_out != NULL);
    struct rules_compiled_rule r;
    memset(&r, 0, sizeof(r));
    struct rules_error e = {0};
    if (!rule_texts_take(def, &r, &e) ||
        !condition_compile(def->condition, def->condition_len, &r, &e)) {
        CF_ASSERT(e.field != NULL && e.message != NULL);
        *error_out = e;
        return CF_ERR_INVALID_FIELD;
    }
    CF_ASSERT(r.id[0] != '\0' && r.reason[0] != '\0');
    memcpy(out, &r, sizeof(r));
    return CF_OK;
}

/* Evaluation ----------------------------------------------------------------------------------- */

static int64_t load_int(const struct risk_features *f, uint16_t offset)
{
    int64_t x;
    memcpy(&x, (const unsigned char *)f + offset, sizeof(x));
    return x;
}

static const char *load_text(const struct risk_features *f, uint16_t offset)
{
    return (const char *)f + offset;
}

static bool load_bool(const struct risk_features *f, uint16_t offset)
{
    bool x;
    memcpy(&x, (const unsigned char *)f + offset, sizeof(x));
    return x;
}

static bool text_equal(const char *feature, const char *literal)
{
    return strncmp(feature, literal, RULES_TEXT_BYTES_MAX) == 0;
}

static bool op_in(const struct rules_compiled_rule *r, const struct rules_op *op,
                  const struct risk_features *f)
{
    const struct rules_literal *lit = &r->literals[op->arg];
    if (op->code == OP_IN_INT) {
        int64_t x = load_int(f, op->offset);
        for (unsigned i = 0; i < op->items_n; i++) {
            if (lit[i].value == x)
                return true;
        }
        return false;
    }
    const char *x = load_text(f, op->offset);
    for (unsigned i = 0; i < op->items_n; i++) {
        if (text_equal(x, lit[i].text))
            return true;
    }
    return false;
}

/* The value of one test operation. */
static bool op_test(const struct rules_compiled_rule *r, const struct rules_op *op,
                    const struct risk_features *f)
{
    switch (op->code) {
    case OP_INT_EQ:
        return load_int(f, op->offset) == op->value;
    case OP_INT_NE:
        return load_int(f, op->offset) != op->value;
    case OP_INT_LT:
        return load_int(f, op->offset) < op->value;
    case OP_INT_LE:
        return load_int(f, op->offset) <= op->value;
    case OP_INT_GT:
        return load_int(f, op->offset) > op->value;
    case OP_INT_GE:
        return load_int(f, op->offset) >= op->value;
    case OP_TEXT_EQ:
        return text_equal(load_text(f, op->offset), r->literals[op->arg].text);
    case OP_TEXT_NE:
        return !text_equal(load_text(f, op->offset), r->literals[op->arg].text);
    case OP_BOOL_IS:
        return load_bool(f, op->offset) == (op->value != 0);
    case OP_IN_INT:
    case OP_IN_TEXT:
        return op_in(r, op, f);
    default:
        break;
    }
    CF_ASSERT(!"a test operation");
    return false;
}

bool rules_rule_matches(const struct rules_compiled_rule *rule, const struct risk_features *f)
{
    CF_ASSERT(rule != NULL && f != NULL);
    CF_ASSERT(rule->ops_n >= 1 && rule->ops_n <= RULES_OPS_MAX);
    bool acc = false;
    size_t pc = 0;
    while (pc < rule->ops_n) {
        const struct rules_op *op = &rule->ops[pc++];
        if (op->code == OP_JUMP_IF_TRUE || op->code == OP_JUMP_IF_FALSE) {
            CF_ASSERT(op->arg >= pc && op->arg <= rule->ops_n); /* forward: always ends */
            if (acc == (op->code == OP_JUMP_IF_TRUE))
                pc = op->arg;
        } else if (op->code == OP_NOT) {
            acc = !acc;
        } else {
            acc = op_test(rule, op, f);
        }
    }
    return acc;
}

/* Sets ----------------------------------------------------------------------------------------- */

struct rules_set {
    uint64_t version;
    size_t rules_n;
    size_t enabled_n;
    uint16_t enabled[RULES_SET_MAX]; /* indexes of the enabled rules, in order */
    struct rules_compiled_rule rules[];
};

/* Asserts that r came from rules_rule_compile (the caller's promise). */
static void rule_assert_compiled(const struct rules_compiled_rule *r)
{
    CF_ASSERT(rules_code_valid(r->id, strnlen(r->id, sizeof(r->id)), RULES_ID_BYTES_MAX));
    CF_ASSERT(
        rules_code_valid(r->reason, strnlen(r->reason, sizeof(r->reason)), RULES_REASON_BYTES_MAX));
    CF_ASSERT((unsigned)r->action < RULES_ACTIONS_N);
    CF_ASSERT(r->ops_n >= 1 && r->ops_n <= RULES_OPS_MAX && r->literals_n <= RULES_LITERALS_MAX);
}

enum cf_err rules_set_create(uint64_t version, const struct rules_compiled_rule *rules, size_t n,
                             struct rules_set **out)
{
    CF_ASSERT(out != NULL && (rules != NULL || n == 0));
    if (n > RULES_SET_MAX)
        return CF_ERR_INVALID_FIELD;
    for (size_t i = 0; i < n; i++) {
        rule_assert_compiled(&rules[i]);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(rules[i].id, rules[j].id) == 0)
                return CF_ERR_INVALID_FIELD;
        }
    }
    struct rules_set *set = malloc(sizeof(*set) + n * sizeof(set->rules[0]));
    if (set == NULL)
        return CF_ERR_NOMEM;
    set->version = version;
    set->rules_n = n;
    set->enabled_n = 0;
    if (n > 0)
        memcpy(set->rules, rules, n * sizeof(rules[0]));
    for (size_t i = 0; i < n; i++) {
        if (set->rules[i].enabled)
            set->enabled[set->enabled_n++] = (uint16_t)i;
    }
    CF_ASSERT(set->enabled_n <= set->rules_n);
    *out = set;
    return CF_OK;
}

void rules_set_destroy(struct rules_set *set) { free(set); }

uint64_t rules_set_version(const struct rules_set *set)
{
    CF_ASSERT(set != NULL);
    return set->version;
}

size_t rules_set_rules_n(const struct rules_set *set)
{
    CF_ASSERT(set != NULL);
    return set->rules_n;
}

const struct rules_compiled_rule *rules_set_rule_at(const struct rules_set *set, size_t i)
{
    CF_ASSERT(set != NULL && i < set->rules_n);
    return &set->rules[i];
}

const struct rules_compiled_rule *rules_set_rule_find(const struct rules_set *set, const char *id,
                                                      size_t len)
{
    CF_ASSERT(set != NULL && (id != NULL || len == 0));
    if (len == 0 || len > RULES_ID_BYTES_MAX)
        return NULL;
    for (size_t i = 0; i < set->rules_n; i++) {
        const char *rid = set->rules[i].id;
        if (strnlen(rid, sizeof(set->rules[i].id)) == len && memcmp(rid, id, len) == 0)
            return &set->rules[i];
    }
    return NULL;
}

/* Lists the matching rules hits[0..hits_n) in out: by severity, then set order. */
static void decision_list(const struct rules_set *set, const uint16_t *hits, size_t hits_n,
                          struct rules_decision *out)
{
    size_t listed = 0;
    for (int a = RULES_ACTIONS_N - 1; a >= 0; a--) {
        for (size_t i = 0; i < hits_n && listed < RULES_MATCHES_MAX; i++) {
            const struct rules_compiled_rule *r = &set->rules[hits[i]];
            if ((int)r->action != a)
                continue;
            struct rules_match *m = &out->matches[listed++];
            m->action = r->action;
            memcpy(m->id, r->id, sizeof(m->id));
            memcpy(m->reason, r->reason, sizeof(m->reason));
        }
    }
    out->matches_n = listed;
    out->matches_omitted_n = hits_n - listed;
    CF_ASSERT(listed == (hits_n < RULES_MATCHES_MAX ? hits_n : RULES_MATCHES_MAX));
}

void rules_evaluate(const struct rules_set *set, const struct risk_features *f,
                    struct rules_decision *out)
{
    CF_ASSERT(set != NULL && f != NULL && out != NULL);
    uint16_t hits[RULES_SET_MAX];
    size_t hits_n = 0;
    enum rules_action action = RULES_ACTION_ALLOW;
    for (size_t i = 0; i < set->enabled_n; i++) {
        const struct rules_compiled_rule *r = &set->rules[set->enabled[i]];
        if (!rules_rule_matches(r, f))
            continue;
        hits[hits_n++] = set->enabled[i];
        if (r->action > action)
            action = r->action;
    }
    out->action = action;
    out->set_version = set->version;
    decision_list(set, hits, hits_n, out);
    CF_ASSERT(out->matches_n == 0 || out->matches[0].action == action);
}

void rules_dry_run(const struct rules_compiled_rule *candidate, const struct risk_features *history,
                   size_t n, struct rules_dry_report *out)
{
    CF_ASSERT(candidate != NULL && out != NULL && (history != NULL || n == 0));
    rule_assert_compiled(candidate);
    struct rules_dry_report rep;
    memset(&rep, 0, sizeof(rep));
    rep.scanned_n = n;
    for (size_t i = 0; i < n; i++) {
        if (!rules_rule_matches(candidate, &history[i]))
            continue;
        if (rep.samples_n < RULES_DRY_SAMPLES_MAX)
            rep.samples[rep.samples_n++] = i;
        rep.matched_n++;
    }
    rep.by_action_n[RULES_ACTION_ALLOW] = n - rep.matched_n;
    rep.by_action_n[candidate->action] += rep.matched_n;
    CF_ASSERT(rep.matched_n <= n && rep.samples_n <= rep.matched_n);
    *out = rep;
}
