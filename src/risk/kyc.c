/*
 * kyc.c - know your customer: names, the limits configuration, validation, the schema, the
 * handle and its tier cache, submissions, documents, decisions and reads; see kyc.h.
 *
 * Four tables: risk_kyc_customers (one row per customer seen: tier, open and latest submission
 * ids; every change locks it first), risk_kyc_submissions (details sealed; a unique partial
 * index keeps one open submission per customer), risk_kyc_documents (contents sealed in
 * chunks), risk_kyc_events (append-only; decisions carry their sealed reasons and idempotency
 * keys). A change that meets a unique index or a serialization failure
 * (CF_ERR_STORAGE_CONFLICT) is tried once more: the second attempt sees what won.
 *
 * The tier cache is direct-mapped: a customer's numeric id picks a slot, which holds the id, the
 * tier and when it was read. Each slot has a generation that every change of a customer in that
 * slot bumps after its commit; a reader stores what it read only when the generation did not
 * move while it read, so a read that raced a change never stores the old tier.
 */
#include "risk/kyc.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/ids.h"
#include "crypto/vault.h"
#include "money/currency.h"
#include "risk/internal.h"
#include "store/sql/sql.h"

/* "1\n<name>\n<id type>\n<id number>\n<dob>\n<nationality>\n<country>" */
#define DETAILS_TEXT_BYTES_MAX 1024
#define DETAILS_SEALED_BYTES_MAX (DETAILS_TEXT_BYTES_MAX + VAULT_OVERHEAD_BYTES)
#define DETAILS_FIELDS 7
#define REASON_SEALED_BYTES_MAX (RISK_KYC_REASON_BYTES_MAX + VAULT_OVERHEAD_BYTES)
/* "risk_kyc:<user>:<id>:customer_reason" or ":content:<i>/<n>" */
#define AAD_BYTES (2 * RISK_KYC_ID_BYTES_MAX + 64)
#define DOC_CHUNK_BYTES VAULT_PLAINTEXT_BYTES_MAX
#define DOC_CHUNKS_MAX ((RISK_KYC_DOC_BYTES_MAX + DOC_CHUNK_BYTES - 1) / DOC_CHUNK_BYTES)
#define DOC_SEALED_BYTES_MAX (RISK_KYC_DOC_BYTES_MAX + DOC_CHUNKS_MAX * VAULT_OVERHEAD_BYTES)
#define USER_PREFIX "usr_" /* identity's users (ID_PREFIX_USER; risk does not include identity) */
#define WHY_FIELD_BYTES 48 /* a clause's token quoted in a configuration error */

_Static_assert((RISK_KYC_TIER_CACHE_SLOTS & (RISK_KYC_TIER_CACHE_SLOTS - 1)) == 0,
               "the tier cache's slot count is a power of two");
_Static_assert(RISK_KYC_DOC_BYTES_MAX <= 64 * DOC_CHUNK_BYTES, "a document's chunks are few");

struct tier_slot {
    uint64_t user; /* the id's number; 0: empty */
    int tier;
    int64_t read_at_us; /* monotonic */
    uint64_t gen;       /* bumped by every change of a customer in this slot */
};

struct risk_kyc {
    struct sqldb *db;
    risk_kyc_vault_fn vault; /* the current master keys (they may be rotated while running) */
    void *vault_ctx;
    struct risk_kyc_config cfg;
    pthread_mutex_t cache_mu;
    struct tier_slot *cache; /* RISK_KYC_TIER_CACHE_SLOTS */
};

/* Names -------------------------------------------------------------------------------------- */

static const char *const state_names[] = {"none", "draft", "pending", "approved", "rejected"};
static const char *const kind_names[] = {
    "", "passport", "id_card", "driving_licence", "proof_of_address", "selfie"};
static const char *const content_names[] = {"", "image/jpeg", "image/png", "application/pdf"};
static const char *const event_names[] = {"",        "details", "document", "submit",
                                          "approve", "reject",  "tier",     "lower"};
static const char *const feature_names[RISK_KYC_FEATURES_N] = {
    "topup", "receive", "payment", "send", "request", "conversion", "withdrawal"};

const char *risk_kyc_state_name(uint8_t state)
{
    return risk_name_of(state_names, RISK_NAMES_N(state_names), state);
}

enum cf_err risk_kyc_state_parse(const char *text, uint8_t *out)
{
    return risk_name_parse(state_names, RISK_NAMES_N(state_names), 0, text, out);
}

const char *risk_kyc_doc_kind_name(uint8_t kind)
{
    return risk_name_of(kind_names, RISK_NAMES_N(kind_names), kind);
}

enum cf_err risk_kyc_doc_kind_parse(const char *text, uint8_t *out)
{
    return risk_name_parse(kind_names, RISK_NAMES_N(kind_names), 1, text, out);
}

bool risk_kyc_doc_kind_is_identity(uint8_t kind)
{
    return kind == RISK_KYC_DOC_PASSPORT || kind == RISK_KYC_DOC_ID_CARD ||
           kind == RISK_KYC_DOC_DRIVING_LICENCE;
}

const char *risk_kyc_content_name(uint8_t content)
{
    return risk_name_of(content_names, RISK_NAMES_N(content_names), content);
}

enum cf_err risk_kyc_content_parse(const char *text, uint8_t *out)
{
    return risk_name_parse(content_names, RISK_NAMES_N(content_names), 1, text, out);
}

const char *risk_kyc_event_name(uint8_t kind)
{
    return risk_name_of(event_names, RISK_NAMES_N(event_names), kind);
}

enum cf_err risk_kyc_feature_parse(const char *name, uint32_t *out)
{
    uint8_t bit = 0;
    enum cf_err err = risk_name_parse(feature_names, RISK_KYC_FEATURES_N, 0, name, &bit);
    if (err == CF_OK)
        *out = 1u << bit;
    return err;
}

const char *risk_kyc_feature_name(uint32_t feature)
{
    for (size_t i = 0; i < RISK_KYC_FEATURES_N; i++) {
        if (feature == 1u << i)
            return feature_names[i];
    }
    return "";
}

/* Limits configuration ----------------------------------------------------------------------- */

/* The fields of struct risk_kyc_limit in order, as the configuration names them. */
static const char *const limit_fields[] = {"max_balance", "single", "daily_out", "monthly_out"};
#define LIMIT_FIELDS_N 4

static int64_t limit_get(const struct risk_kyc_limit *l, size_t i)
{
    const int64_t f[LIMIT_FIELDS_N] = {l->max_balance_minor, l->max_single_minor,
                                       l->daily_out_minor, l->monthly_out_minor};
    CF_ASSERT(i < LIMIT_FIELDS_N);
    return f[i];
}

static int64_t *limit_field(struct risk_kyc_limit *l, size_t i)
{
    int64_t *f[LIMIT_FIELDS_N] = {&l->max_balance_minor, &l->max_single_minor, &l->daily_out_minor,
                                  &l->monthly_out_minor};
    CF_ASSERT(i < LIMIT_FIELDS_N);
    return f[i];
}

void risk_kyc_config_defaults(struct risk_kyc_config *c)
{
    CF_ASSERT(c != NULL);
    memset(c, 0, sizeof(*c));
    c->base[0] = (struct risk_kyc_limit){15000, 5000, 10000, 25000};
    c->base[1] = (struct risk_kyc_limit){500000, 100000, 200000, 1000000};
    c->base[2] = (struct risk_kyc_limit){10000000, 2500000, 5000000, 20000000};
    c->features[0] = RISK_KYC_FEATURE_TOPUP | RISK_KYC_FEATURE_RECEIVE | RISK_KYC_FEATURE_PAYMENT;
    c->features[1] = RISK_KYC_FEATURES_ALL;
    c->features[2] = RISK_KYC_FEATURES_ALL;
}

__attribute__((format(printf, 3, 4))) static void why_set(char *why, size_t why_bytes,
                                                          const char *fmt, ...)
{
    if (why == NULL || why_bytes == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_bytes, fmt, ap);
    va_end(ap);
}

/* The next token of *s (separated by spaces or tabs) into tok (tok_bytes); false at the end or
 * when the token does not fit (*too_long then). */
static bool token_next(const char **s, char *tok, size_t tok_bytes, bool *too_long)
{
    const char *p = *s;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strcspn(p, " \t");
    *s = p + n;
    if (n == 0)
        return false;
    if (n >= tok_bytes) {
        *too_long = true;
        return false;
    }
    memcpy(tok, p, n);
    tok[n] = '\0';
    return true;
}

static enum cf_err tier_token(const char *tok, int *tier_out)
{
    if (strlen(tok) == 5 && strncmp(tok, "tier", 4) == 0 && tok[4] >= '0' &&
        tok[4] <= '0' + RISK_KYC_TIER_MAX) {
        *tier_out = tok[4] - '0';
        return CF_OK;
    }
    return CF_ERR_CONFIG;
}

/* "none" or decimal digits without a leading zero (but "0"), at most RISK_KYC_LIMIT_AMOUNT_MAX. */
static enum cf_err amount_token(const char *text, int64_t *out)
{
    if (strcmp(text, "none") == 0) {
        *out = RISK_KYC_UNLIMITED;
        return CF_OK;
    }
    size_t n = strlen(text);
    if (n == 0 || n > 16 || (n > 1 && text[0] == '0'))
        return CF_ERR_CONFIG;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return CF_ERR_CONFIG;
        v = v * 10 + (text[i] - '0'); /* 16 digits cannot overflow */
    }
    if (v > RISK_KYC_LIMIT_AMOUNT_MAX)
        return CF_ERR_CONFIG;
    *out = v;
    return CF_OK;
}

/* "*" or 1..MONEY_CODE_BYTES_MAX of A-Z, 0-9, '_' (checked against the table later). */
static bool currency_token(const char *tok)
{
    size_t n = strlen(tok);
    if (strcmp(tok, "*") == 0)
        return true;
    if (n == 0 || n > MONEY_CODE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = tok[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

/* The row of currency in tier (made when missing); NULL when the tier is full. */
static struct risk_kyc_limit_row *row_of(struct risk_kyc_config *c, int tier, const char *cur)
{
    for (size_t i = 0; i < c->rows_n[tier]; i++) {
        if (strcmp(c->rows[tier][i].currency, cur) == 0)
            return &c->rows[tier][i];
    }
    if (c->rows_n[tier] >= RISK_KYC_LIMIT_CURRENCIES_MAX)
        return NULL;
    struct risk_kyc_limit_row *r = &c->rows[tier][c->rows_n[tier]++];
    memset(r, 0, sizeof(*r));
    size_t n = strnlen(cur, MONEY_CODE_BYTES_MAX + 1);
    CF_ASSERT(n <= MONEY_CODE_BYTES_MAX); /* currency_token checked it */
    memcpy(r->currency, cur, n);
    return r;
}

/* One "field=amount" of a limits clause into *l, marking it in *set. */
static enum cf_err limit_assign(const char *tok, struct risk_kyc_limit *l, uint8_t *set, char *why,
                                size_t why_bytes)
{
    const char *eq = strchr(tok, '=');
    size_t name_n = eq != NULL ? (size_t)(eq - tok) : 0;
    for (size_t f = 0; eq != NULL && f < LIMIT_FIELDS_N; f++) {
        if (strlen(limit_fields[f]) != name_n || strncmp(tok, limit_fields[f], name_n) != 0)
            continue;
        if ((*set & (1u << f)) != 0) {
            why_set(why, why_bytes, "%s given twice in one clause", limit_fields[f]);
            return CF_ERR_CONFIG;
        }
        if (amount_token(eq + 1, limit_field(l, f)) != CF_OK) {
            why_set(why, why_bytes, "%s: expected minor units 0 to 10^15 or none", limit_fields[f]);
            return CF_ERR_CONFIG;
        }
        *set = (uint8_t)(*set | (1u << f));
        return CF_OK;
    }
    why_set(why, why_bytes,
            "'%.40s': expected max_balance=, single=, daily_out= or monthly_out=", tok);
    return CF_ERR_CONFIG;
}

/* One limits clause: "tier<N> <CUR|*> field=amount ...". */
static enum cf_err limits_clause(struct risk_kyc_config *c, const char *clause, char *why,
                                 size_t why_bytes)
{
    char tok[WHY_FIELD_BYTES + 32];
    bool too_long = false;
    int tier = 0;
    if (!token_next(&clause, tok, sizeof(tok), &too_long) || tier_token(tok, &tier) != CF_OK) {
        why_set(why, why_bytes, "expected tier0, tier1 or tier2 first");
        return CF_ERR_CONFIG;
    }
    char cur[MONEY_CODE_BYTES_MAX + 2];
    if (!token_next(&clause, cur, sizeof(cur), &too_long) || !currency_token(cur)) {
        why_set(why, why_bytes, "expected a currency code or * after the tier");
        return CF_ERR_CONFIG;
    }
    struct risk_kyc_limit l = strcmp(cur, "*") == 0 ? c->base[tier] : (struct risk_kyc_limit){0};
    uint8_t set = 0;
    while (token_next(&clause, tok, sizeof(tok), &too_long)) {
        if (limit_assign(tok, &l, &set, why, why_bytes) != CF_OK)
            return CF_ERR_CONFIG;
    }
    if (too_long || set == 0) {
        why_set(why, why_bytes, "%s", too_long ? "a token is too long" : "no limit given");
        return CF_ERR_CONFIG;
    }
    if (strcmp(cur, "*") == 0) {
        c->base[tier] = l;
        return CF_OK;
    }
    struct risk_kyc_limit_row *r = row_of(c, tier, cur);
    if (r == NULL) {
        why_set(why, why_bytes, "more than 16 currencies in one tier");
        return CF_ERR_CONFIG;
    }
    for (size_t f = 0; f < LIMIT_FIELDS_N; f++) {
        if ((set & (1u << f)) != 0)
            *limit_field(&r->limit, f) = limit_get(&l, f);
    }
    r->set = (uint8_t)(r->set | set);
    return CF_OK;
}

/* One features clause: "tier<N> a,b,c" or "tier<N> none". */
static enum cf_err features_clause(struct risk_kyc_config *c, const char *clause, char *why,
                                   size_t why_bytes)
{
    char tok[RISK_KYC_FEATURES_N * 12 + 8], extra[8];
    bool too_long = false;
    int tier = 0;
    if (!token_next(&clause, tok, sizeof(tok), &too_long) || tier_token(tok, &tier) != CF_OK) {
        why_set(why, why_bytes, "expected tier0, tier1 or tier2 first");
        return CF_ERR_CONFIG;
    }
    if (!token_next(&clause, tok, sizeof(tok), &too_long) ||
        token_next(&clause, extra, sizeof(extra), &too_long) || too_long) {
        why_set(why, why_bytes, "expected one comma-separated list of features or none");
        return CF_ERR_CONFIG;
    }
    uint32_t set = 0;
    if (strcmp(tok, "none") != 0) {
        char *save = NULL;
        size_t items = 0, commas = 0;
        for (const char *p = tok; *p != '\0'; p++)
            commas += *p == ',';
        for (char *item = strtok_r(tok, ",", &save); item != NULL;
             item = strtok_r(NULL, ",", &save), items++) {
            uint32_t f = 0;
            if (risk_kyc_feature_parse(item, &f) != CF_OK || (set & f) != 0) {
                why_set(why, why_bytes, "'%.24s': unknown or repeated feature", item);
                return CF_ERR_CONFIG;
            }
            set |= f;
        }
        if (items != commas + 1) {
            why_set(why, why_bytes, "an empty item in the list of features");
            return CF_ERR_CONFIG;
        }
    }
    c->features[tier] = set;
    return CF_OK;
}

enum cf_err risk_kyc_config_set(struct risk_kyc_config *c, const char *key, const char *value,
                                char *why, size_t why_bytes)
{
    CF_ASSERT(c != NULL && key != NULL && value != NULL);
    bool limits = strcmp(key, "kyc_limits") == 0;
    if (!limits && strcmp(key, "kyc_features") != 0)
        return CF_ERR_NOT_FOUND;
    size_t n = strnlen(value, RISK_KYC_CONFIG_TEXT_BYTES_MAX);
    if (n == 0 || n >= RISK_KYC_CONFIG_TEXT_BYTES_MAX) {
        why_set(why, why_bytes, "empty, or longer than 4095 bytes");
        return CF_ERR_CONFIG;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)value[i] < 0x20 && value[i] != '\t') {
            why_set(why, why_bytes, "a control character");
            return CF_ERR_CONFIG;
        }
    }
    struct risk_kyc_config *next = malloc(sizeof(*next)); /* all or nothing */
    char *text = malloc(n + 1);
    enum cf_err err = next == NULL || text == NULL ? CF_ERR_NOMEM : CF_OK;
    if (err == CF_OK) {
        *next = *c;
        memcpy(text, value, n + 1);
    }
    for (char *p = text; err == CF_OK && p != NULL;) {
        char *semi = strchr(p, ';');
        if (semi != NULL)
            *semi = '\0';
        err = limits ? limits_clause(next, p, why, why_bytes)
                     : features_clause(next, p, why, why_bytes);
        p = semi != NULL ? semi + 1 : NULL;
    }
    if (err == CF_OK)
        *c = *next;
    free(next);
    free(text);
    return err;
}

enum cf_err risk_kyc_config_check(const struct risk_kyc_config *c, char *why, size_t why_bytes)
{
    CF_ASSERT(c != NULL);
    for (int t = 0; t < RISK_KYC_TIERS; t++) {
        CF_ASSERT(c->rows_n[t] <= RISK_KYC_LIMIT_CURRENCIES_MAX);
        for (size_t i = 0; i < c->rows_n[t]; i++) {
            const char *cur = c->rows[t][i].currency;
            if (currency_find(cur, strlen(cur)) == NULL) {
                why_set(why, why_bytes, "unknown currency %s", cur);
                return CF_ERR_CONFIG;
            }
        }
    }
    return CF_OK;
}

enum cf_err risk_kyc_limits_for(const struct risk_kyc_config *c, int tier, const char *currency,
                                struct risk_kyc_limit *out)
{
    CF_ASSERT(c != NULL && out != NULL);
    if (tier < 0 || tier > RISK_KYC_TIER_MAX)
        return CF_ERR_INVALID_FIELD;
    struct risk_kyc_limit l = c->base[tier];
    for (size_t i = 0; currency != NULL && i < c->rows_n[tier]; i++) {
        const struct risk_kyc_limit_row *r = &c->rows[tier][i];
        if (strcmp(r->currency, currency) != 0)
            continue;
        for (size_t f = 0; f < LIMIT_FIELDS_N; f++) {
            if ((r->set & (1u << f)) != 0)
                *limit_field(&l, f) = limit_get(&r->limit, f);
        }
        break;
    }
    CF_ASSERT(l.max_single_minor >= RISK_KYC_UNLIMITED &&
              l.max_balance_minor >= RISK_KYC_UNLIMITED);
    *out = l;
    return CF_OK;
}

bool risk_kyc_feature_open(const struct risk_kyc_config *c, int tier, uint32_t feature)
{
    CF_ASSERT(c != NULL);
    if (tier < 0 || tier > RISK_KYC_TIER_MAX)
        return false;
    return feature != 0 && (c->features[tier] & feature) == feature;
}

bool risk_kyc_within(int64_t amount_minor, int64_t limit_minor)
{
    return limit_minor == RISK_KYC_UNLIMITED || amount_minor <= limit_minor;
}

/* Validation --------------------------------------------------------------------------------- */

/* Whether text is 1..chars_max characters of UTF-8 without C0 and C1 controls (but tab, CR, LF
 * when lines is set) and without the invisible format characters that can make a name read as
 * another in a staff screen (zero widths, bidi overrides). */
static bool text_valid(const char *text, size_t chars_max, bool lines)
{
    unsigned flags = RISK_TEXT_INVISIBLE | (lines ? RISK_TEXT_LINES : 0);
    return risk_text_check(text, 4 * chars_max + 1, chars_max, flags, NULL) == RISK_TEXT_OK;
}

bool risk_kyc_reason_valid(const char *text, bool customer, const char **detail_out)
{
    size_t max = customer ? RISK_KYC_CUSTOMER_REASON_CHARS_MAX : RISK_KYC_REASON_CHARS_MAX;
    bool ok = text_valid(text, max, true);
    if (!ok && detail_out != NULL)
        *detail_out = customer ? "customer_reason: 1 to 280 characters, no control characters"
                               : "reason: 1 to 500 characters, no control characters";
    return ok;
}

static bool name_valid(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    return text_valid(name, RISK_KYC_NAME_CHARS_MAX, false) && name[0] != ' ' && name[n - 1] != ' ';
}

static bool id_number_valid(const char *s)
{
    size_t n = s != NULL ? strnlen(s, RISK_KYC_ID_NUMBER_BYTES_MAX) : 0;
    if (n == 0 || n >= RISK_KYC_ID_NUMBER_BYTES_MAX || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alnum =
            (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != ' ' && ch != '-' && ch != '/' && ch != '.')
            return false;
    }
    return true;
}

/* The civil date of a day count since 1970-01-01 (H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* Whether text is a real date YYYY-MM-DD from RISK_KYC_DOB_YEAR_MIN-01-01 to the day before
 * now_us's UTC day. */
static bool dob_valid(const char *text, int64_t now_us)
{
    static const int days_in[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (text == NULL || strlen(text) != 10 || text[4] != '-' || text[7] != '-')
        return false;
    int v[3] = {0, 0, 0}, widths[3] = {4, 2, 2}, at[3] = {0, 5, 8};
    for (int f = 0; f < 3; f++) {
        for (int i = 0; i < widths[f]; i++) {
            char ch = text[at[f] + i];
            if (ch < '0' || ch > '9')
                return false;
            v[f] = v[f] * 10 + (ch - '0');
        }
    }
    bool leap = (v[0] % 4 == 0 && v[0] % 100 != 0) || v[0] % 400 == 0;
    if (v[0] < RISK_KYC_DOB_YEAR_MIN || v[1] < 1 || v[1] > 12 || v[2] < 1 ||
        v[2] > days_in[v[1] - 1] + (v[1] == 2 && leap))
        return false;
    int y = 0, m = 0, d = 0;
    civil_from_days(now_us / (86400LL * 1000000LL), &y, &m, &d);
    char today[48];
    snprintf(today, sizeof(today), "%04d-%02d-%02d", y, m, d);
    return strcmp(text, today) < 0;
}

/* ISO 3166-1 alpha-2, officially assigned (249), and XK (Kosovo), which identity documents
 * carry though it is user-assigned. */
static const char country_codes[] =
    "ADAEAFAGAIALAMAOAQARASATAUAWAXAZBABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZCACCCDCFCGCHCI"
    "CKCLCMCNCOCRCUCVCWCXCYCZDEDJDKDMDODZECEEEGEHERESETFIFJFKFMFOFRGAGBGDGEGFGGGHGIGLGMGNGPGQ"
    "GRGSGTGUGWGYHKHMHNHRHTHUIDIEILIMINIOIQIRISITJEJMJOJPKEKGKHKIKMKNKPKRKWKYKZLALBLCLILKLRLS"
    "LTLULVLYMAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNGNINLNONPNRNUNZOMPAPEPFPG"
    "PHPKPLPMPNPRPSPTPWPYQARERORSRURWSASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZTCTDTFTGTHTJTK"
    "TLTMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVEVGVIVNVUWFWSXKYEYTZAZMZW";
_Static_assert(sizeof(country_codes) - 1 == 2 * 250, "249 ISO codes and XK");

bool risk_kyc_country_valid(const char *text)
{
    if (text == NULL || strlen(text) != 2 || text[0] < 'A' || text[0] > 'Z' || text[1] < 'A' ||
        text[1] > 'Z')
        return false;
    for (size_t i = 0; i + 1 < sizeof(country_codes); i += 2) {
        if (country_codes[i] == text[0] && country_codes[i + 1] == text[1])
            return true;
    }
    return false;
}

bool risk_kyc_details_valid(const struct risk_kyc_details *d, int64_t now_us,
                            const char **detail_out)
{
    CF_ASSERT(d != NULL);
    const char *why = NULL;
    if (!name_valid(d->legal_name))
        why = "legal_name: 1 to 140 characters, no control characters, no outer spaces";
    else if (!risk_kyc_doc_kind_is_identity(d->id_type))
        why = "id_type: passport, id_card or driving_licence";
    else if (!id_number_valid(d->id_number))
        why = "id_number: 1 to 40 of A-Z, a-z, 0-9, space, -, /, . (no outer spaces)";
    else if (!dob_valid(d->date_of_birth, now_us))
        why = "date_of_birth: a date YYYY-MM-DD from 1900-01-01 to yesterday";
    else if (d->nationality[0] != '\0' && !risk_kyc_country_valid(d->nationality))
        why = "nationality: an ISO 3166-1 alpha-2 code";
    else if (!risk_kyc_country_valid(d->country))
        why = "country: an ISO 3166-1 alpha-2 code";
    if (why != NULL && detail_out != NULL)
        *detail_out = why;
    return why == NULL;
}

enum cf_err risk_kyc_content_sniff(const uint8_t *bytes, size_t n, uint8_t *out)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    CF_ASSERT(out != NULL && (bytes != NULL || n == 0));
    if (n < RISK_KYC_DOC_BYTES_MIN)
        return CF_ERR_INVALID_FIELD;
    if (bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff)
        *out = RISK_KYC_JPEG;
    else if (memcmp(bytes, png, sizeof(png)) == 0)
        *out = RISK_KYC_PNG;
    else if (memcmp(bytes, "%PDF-", 5) == 0)
        *out = RISK_KYC_PDF;
    else
        return CF_ERR_INVALID_FIELD;
    return CF_OK;
}

/* The 6-bit value of a base64 character, or -1. */
static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

enum cf_err risk_kyc_base64_decode(const char *text, size_t len, uint8_t *out, size_t out_bytes,
                                   size_t *n_out)
{
    CF_ASSERT((text != NULL || len == 0) && n_out != NULL);
    if (len % 4 != 0)
        return CF_ERR_INVALID_FIELD;
    size_t pad = len == 0 ? 0 : (text[len - 1] == '=') + (len > 1 && text[len - 2] == '=');
    size_t n = len / 4 * 3 - pad;
    if (n > out_bytes)
        return CF_ERR_PAYLOAD_TOO_LARGE;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v[4];
        for (size_t j = 0; j < 4; j++) {
            bool pad_here = last && j >= 4 - pad;
            v[j] = pad_here ? 0 : b64_value((unsigned char)text[i + j]);
            if (v[j] < 0 || (pad_here && text[i + j] != '='))
                return CF_ERR_INVALID_FIELD;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        size_t take = last ? 3 - pad : 3;
        if (last && ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0)))
            return CF_ERR_INVALID_FIELD; /* bits that padding leaves unused must be zero */
        for (size_t j = 0; j < take; j++)
            out[o++] = (uint8_t)(w >> (16 - 8 * j));
    }
    CF_ASSERT(o == n);
    *n_out = n;
    return CF_OK;
}

/* Schema ------------------------------------------------------------------------------------- */

/* %1$s: the blob type; %2$s: the row key (an auto-incrementing integer primary key). */
#define KYC_SCHEMA                                                                                 \
    "CREATE TABLE risk_kyc_customers (user_id TEXT PRIMARY KEY, tier INTEGER NOT NULL, "           \
    "open_id TEXT NOT NULL, latest_id TEXT NOT NULL, updated_at_us BIGINT NOT NULL);"              \
    "CREATE TABLE risk_kyc_submissions (row %2$s, id TEXT NOT NULL UNIQUE, "                       \
    "user_id TEXT NOT NULL, state INTEGER NOT NULL, details_sealed %1$s, "                         \
    "created_at_us BIGINT NOT NULL, submitted_at_us BIGINT NOT NULL, "                             \
    "decided_at_us BIGINT NOT NULL, decided_by TEXT NOT NULL, decision_id TEXT NOT NULL, "         \
    "queue_row BIGINT NOT NULL);"                                                                  \
    "CREATE UNIQUE INDEX risk_kyc_submissions_open ON risk_kyc_submissions(user_id) "              \
    "WHERE state <= 2;"                                                                            \
    "CREATE INDEX risk_kyc_submissions_queue ON risk_kyc_submissions(state, queue_row);"           \
    "CREATE TABLE risk_kyc_documents (row %2$s, id TEXT NOT NULL UNIQUE, "                         \
    "submission_id TEXT NOT NULL, user_id TEXT NOT NULL, kind INTEGER NOT NULL, "                  \
    "content INTEGER NOT NULL, size_bytes BIGINT NOT NULL, content_sealed %1$s NOT NULL, "         \
    "at_us BIGINT NOT NULL);"                                                                      \
    "CREATE INDEX risk_kyc_documents_submission ON risk_kyc_documents(submission_id, row);"        \
    "CREATE TABLE risk_kyc_events (row %2$s, id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL, "     \
    "submission_id TEXT NOT NULL, document_id TEXT NOT NULL, kind INTEGER NOT NULL, "              \
    "tier INTEGER NOT NULL, by_user TEXT NOT NULL, at_us BIGINT NOT NULL, "                        \
    "reason_sealed %1$s, customer_reason_sealed %1$s, idem TEXT UNIQUE, request_hash %1$s);"       \
    "CREATE INDEX risk_kyc_events_user ON risk_kyc_events(user_id, row);"

/* Version 2: staff lowered the tier; the automatic raise to tier 1 waits for an approval. */
static const char *const kyc_schema_later[] = {
    "ALTER TABLE risk_kyc_customers ADD COLUMN raise_held INTEGER NOT NULL DEFAULT 0;",
};

enum cf_err risk_kyc_open(struct sqldb *db, risk_kyc_vault_fn vault, void *vault_ctx,
                          const struct risk_kyc_config *cfg, struct risk_kyc **out)
{
    CF_ASSERT(db != NULL && vault != NULL && out != NULL);
    enum cf_err err =
        risk_schema_migrate_steps(db, "risk_kyc", KYC_SCHEMA, kyc_schema_later,
                                  sizeof(kyc_schema_later) / sizeof(kyc_schema_later[0]));
    if (err != CF_OK)
        return err;
    struct risk_kyc *k = calloc(1, sizeof(*k));
    struct tier_slot *cache = calloc(RISK_KYC_TIER_CACHE_SLOTS, sizeof(*cache));
    if (k == NULL || cache == NULL) {
        free(k);
        free(cache);
        return CF_ERR_NOMEM;
    }
    k->db = db;
    k->vault = vault;
    k->vault_ctx = vault_ctx;
    if (cfg != NULL)
        k->cfg = *cfg;
    else
        risk_kyc_config_defaults(&k->cfg);
    k->cache = cache;
    CF_ASSERT(pthread_mutex_init(&k->cache_mu, NULL) == 0);
    *out = k;
    return CF_OK;
}

void risk_kyc_close(struct risk_kyc *k)
{
    if (k == NULL)
        return;
    pthread_mutex_destroy(&k->cache_mu);
    free(k->cache);
    free(k);
}

const struct risk_kyc_config *risk_kyc_config_of(const struct risk_kyc *k)
{
    CF_ASSERT(k != NULL);
    return &k->cfg;
}

/* The tier cache ----------------------------------------------------------------------------- */

/* The number of a well-formed "usr_" id, else 0. */
static uint64_t user_number(const char *user_id)
{
    uint64_t v = 0;
    if (user_id == NULL || id_parse(USER_PREFIX, user_id, strlen(user_id), &v) != CF_OK)
        return 0;
    return v;
}

static struct tier_slot *slot_of(struct risk_kyc *k, uint64_t user)
{
    uint64_t h = user * 0x9e3779b97f4a7c15ULL;
    return &k->cache[(h >> 40) & (RISK_KYC_TIER_CACHE_SLOTS - 1)];
}

/* After a change of user committed: its slot forgets it, and readers in flight do not store. */
static void cache_forget(struct risk_kyc *k, const char *user_id)
{
    uint64_t user = user_number(user_id);
    if (user == 0)
        return;
    CF_ASSERT(pthread_mutex_lock(&k->cache_mu) == 0);
    struct tier_slot *s = slot_of(k, user);
    s->gen++;
    s->user = 0;
    CF_ASSERT(pthread_mutex_unlock(&k->cache_mu) == 0);
}

/* Shared helpers ----------------------------------------------------------------------------- */

static void aad_make(char aad[AAD_BYTES], const char *user, const char *id, const char *what)
{
    int n = snprintf(aad, AAD_BYTES, "risk_kyc:%s:%s:%s", user, id, what);
    CF_ASSERT(n > 0 && n < AAD_BYTES);
}

/* Details: text form --------------------------------------------------------------------------- */

static size_t details_format(const struct risk_kyc_details *d, char out[DETAILS_TEXT_BYTES_MAX])
{
    int n = snprintf(out, DETAILS_TEXT_BYTES_MAX, "1\n%s\n%d\n%s\n%s\n%s\n%s", d->legal_name,
                     d->id_type, d->id_number, d->date_of_birth, d->nationality, d->country);
    CF_ASSERT(n > 0 && n < DETAILS_TEXT_BYTES_MAX);
    return (size_t)n;
}

/* The text form back into *d; CF_ERR_CORRUPT when it is not one. */
static enum cf_err details_parse(char *text, struct risk_kyc_details *d)
{
    char *f[DETAILS_FIELDS];
    size_t n = 0;
    for (char *p = text; p != NULL && n < DETAILS_FIELDS; n++) {
        f[n] = p;
        p = strchr(p, '\n');
        if (p != NULL)
            *p++ = '\0';
        else if (n + 1 < DETAILS_FIELDS)
            return CF_ERR_CORRUPT;
    }
    if (n != DETAILS_FIELDS || strcmp(f[0], "1") != 0 || strlen(f[2]) != 1 ||
        strlen(f[1]) >= sizeof(d->legal_name) || strlen(f[3]) >= sizeof(d->id_number) ||
        strlen(f[4]) >= sizeof(d->date_of_birth) || strlen(f[5]) >= sizeof(d->nationality) ||
        strlen(f[6]) >= sizeof(d->country))
        return CF_ERR_CORRUPT;
    memset(d, 0, sizeof(*d));
    risk_text_copy(d->legal_name, sizeof(d->legal_name), f[1]);
    d->id_type = (uint8_t)(f[2][0] - '0');
    risk_text_copy(d->id_number, sizeof(d->id_number), f[3]);
    risk_text_copy(d->date_of_birth, sizeof(d->date_of_birth), f[4]);
    risk_text_copy(d->nationality, sizeof(d->nationality), f[5]);
    risk_text_copy(d->country, sizeof(d->country), f[6]);
    return risk_kyc_doc_kind_is_identity(d->id_type) ? CF_OK : CF_ERR_CORRUPT;
}

static enum cf_err details_seal(struct risk_kyc *k, const char *user, const char *sub_id,
                                const struct risk_kyc_details *d,
                                uint8_t out[DETAILS_SEALED_BYTES_MAX], size_t *len_out)
{
    char text[DETAILS_TEXT_BYTES_MAX], aad[AAD_BYTES];
    size_t n = details_format(d, text);
    aad_make(aad, user, sub_id, "details");
    enum cf_err err =
        risk_seal(k->vault, k->vault_ctx, aad, text, n, out, DETAILS_SEALED_BYTES_MAX, len_out);
    hash_wipe(text, sizeof(text));
    return err;
}

static enum cf_err details_open(struct risk_kyc *k, const char *user, const char *sub_id,
                                const uint8_t *ct, size_t ct_len, struct risk_kyc_details *out)
{
    char text[DETAILS_TEXT_BYTES_MAX], aad[AAD_BYTES];
    aad_make(aad, user, sub_id, "details");
    enum cf_err err = risk_unseal_text(k->vault, k->vault_ctx, aad, ct, ct_len, text, sizeof(text));
    if (err == CF_OK)
        err = details_parse(text, out);
    hash_wipe(text, sizeof(text));
    return err;
}

/* Documents: chunked sealing ------------------------------------------------------------------ */

static size_t doc_chunks(size_t n)
{
    return n == 0 ? 1 : (n + DOC_CHUNK_BYTES - 1) / DOC_CHUNK_BYTES;
}

static void chunk_aad(char aad[AAD_BYTES], const char *user, const char *doc_id, size_t i,
                      size_t chunks)
{
    char what[48];
    snprintf(what, sizeof(what), "content:%zu/%zu", i, chunks);
    aad_make(aad, user, doc_id, what);
}

/* Seals n bytes as doc_id's content: chunk after chunk, into a malloc'd *out (*len_out). */
static enum cf_err doc_seal(struct risk_kyc *k, const char *user, const char *doc_id,
                            const uint8_t *bytes, size_t n, uint8_t **out, size_t *len_out)
{
    CF_ASSERT(n <= RISK_KYC_DOC_BYTES_MAX);
    size_t chunks = doc_chunks(n), total = n + chunks * VAULT_OVERHEAD_BYTES, at = 0;
    uint8_t *buf = malloc(total);
    if (buf == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = CF_OK;
    for (size_t i = 0; i < chunks && err == CF_OK; i++) {
        size_t part =
            n - i * DOC_CHUNK_BYTES < DOC_CHUNK_BYTES ? n - i * DOC_CHUNK_BYTES : DOC_CHUNK_BYTES;
        char aad[AAD_BYTES];
        size_t len = 0;
        chunk_aad(aad, user, doc_id, i, chunks);
        err = risk_seal(k->vault, k->vault_ctx, aad, bytes + i * DOC_CHUNK_BYTES, part, buf + at,
                        total - at, &len);
        at += len;
    }
    if (err != CF_OK) {
        free(buf);
        return err;
    }
    CF_ASSERT(at == total);
    *out = buf;
    *len_out = total;
    return CF_OK;
}

/* Opens doc_id's content of size bytes into a malloc'd *out. */
static enum cf_err doc_open(struct risk_kyc *k, const char *user, const char *doc_id,
                            const uint8_t *ct, size_t ct_len, int64_t size, uint8_t **out)
{
    if (size < 0 || size > RISK_KYC_DOC_BYTES_MAX)
        return CF_ERR_CORRUPT;
    size_t n = (size_t)size, chunks = doc_chunks(n), at = 0;
    if (ct == NULL || ct_len != n + chunks * VAULT_OVERHEAD_BYTES)
        return CF_ERR_CORRUPT;
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = CF_OK;
    for (size_t i = 0; i < chunks && err == CF_OK; i++) {
        size_t part =
            n - i * DOC_CHUNK_BYTES < DOC_CHUNK_BYTES ? n - i * DOC_CHUNK_BYTES : DOC_CHUNK_BYTES;
        char aad[AAD_BYTES];
        size_t len = 0;
        chunk_aad(aad, user, doc_id, i, chunks);
        err = risk_unseal(k->vault, k->vault_ctx, aad, ct + at, part + VAULT_OVERHEAD_BYTES,
                          buf + i * DOC_CHUNK_BYTES, part, &len);
        if (err == CF_OK && len != part)
            err = CF_ERR_CORRUPT;
        at += part + VAULT_OVERHEAD_BYTES;
    }
    if (err != CF_OK) {
        hash_wipe(buf, n > 0 ? n : 1);
        free(buf);
        return err;
    }
    *out = buf;
    return CF_OK;
}

/* Rows --------------------------------------------------------------------------------------- */

struct customer_row {
    int tier;
    char open_id[RISK_KYC_ID_BYTES_MAX];
    char latest_id[RISK_KYC_ID_BYTES_MAX];
    bool raise_held; /* staff lowered the tier: no automatic raise until an approval */
};

static enum cf_err customer_from(const struct sql_rows *r, struct customer_row *out)
{
    int64_t tier = sql_row_int(r, 0, 0);
    if (tier < 0 || tier > RISK_KYC_TIER_MAX)
        return CF_ERR_CORRUPT;
    out->tier = (int)tier;
    risk_text_copy(out->open_id, sizeof(out->open_id), sql_row_text(r, 0, 1));
    risk_text_copy(out->latest_id, sizeof(out->latest_id), sql_row_text(r, 0, 2));
    out->raise_held = sql_row_int(r, 0, 3) != 0;
    return CF_OK;
}

/* Reads the customer's row (FOR UPDATE when lock); CF_ERR_NOT_FOUND when there is none. */
static enum cf_err customer_read(struct sqltx *tx, const char *user, bool lock,
                                 struct customer_row *out)
{
    struct sql_value v[] = {SQL_T(user)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                lock ? "SELECT tier, open_id, latest_id, raise_held FROM "
                                       "risk_kyc_customers WHERE user_id = $1 FOR UPDATE"
                                     : "SELECT tier, open_id, latest_id, raise_held FROM "
                                       "risk_kyc_customers WHERE user_id = $1",
                                v, 1, &r);
    if (err == CF_OK)
        err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : customer_from(r, out);
    sql_rows_free(r);
    return err;
}

/* Locks the customer's row, making it (tier 0) when missing. */
static enum cf_err customer_lock(struct sqltx *tx, const char *user, int64_t now_us,
                                 struct customer_row *out)
{
    struct sql_value v[] = {SQL_T(user), SQL_I(now_us)};
    enum cf_err err = sql_exec(tx,
                               "INSERT INTO risk_kyc_customers (user_id, tier, open_id, "
                               "latest_id, updated_at_us) VALUES ($1, 0, '', '', $2) "
                               "ON CONFLICT DO NOTHING",
                               v, 2, NULL);
    return err == CF_OK ? customer_read(tx, user, true, out) : err;
}

static enum cf_err customer_update(struct sqltx *tx, const char *user, const struct customer_row *c,
                                   int64_t now_us)
{
    struct sql_value v[] = {SQL_T(user),         SQL_I(c->tier),  SQL_T(c->open_id),
                            SQL_T(c->latest_id), SQL_I(now_us), SQL_I(c->raise_held ? 1 : 0)};
    int64_t changed = 0;
    enum cf_err err = sql_exec(tx,
                               "UPDATE risk_kyc_customers SET tier = $2, open_id = $3, "
                               "latest_id = $4, updated_at_us = $5, raise_held = $6 "
                               "WHERE user_id = $1",
                               v, 6, &changed);
    return err == CF_OK && changed != 1 ? CF_ERR_INTERNAL : err;
}

#define SUB_COLS                                                                                   \
    "s.row, s.id, s.user_id, s.state, s.details_sealed, s.created_at_us, s.submitted_at_us, "      \
    "s.decided_at_us, s.decided_by, s.decision_id, s.queue_row, "                                  \
    "(SELECT COUNT(*) FROM risk_kyc_documents d WHERE d.submission_id = s.id)"

/* Row i of a SUB_COLS query; details opened when open is set. */
static enum cf_err sub_from(struct risk_kyc *k, const struct sql_rows *r, size_t i, bool open,
                            struct risk_kyc_submission *out)
{
    size_t c = 0, sealed_len = 0;
    memset(out, 0, sizeof(*out));
    out->row = (uint64_t)sql_row_int(r, i, c++);
    risk_text_copy(out->id, sizeof(out->id), sql_row_text(r, i, c++));
    risk_text_copy(out->user_id, sizeof(out->user_id), sql_row_text(r, i, c++));
    int64_t state = sql_row_int(r, i, c++);
    const uint8_t *sealed = sql_row_blob(r, i, c++, &sealed_len);
    out->created_at_us = sql_row_int(r, i, c++);
    out->submitted_at_us = sql_row_int(r, i, c++);
    out->decided_at_us = sql_row_int(r, i, c++);
    risk_text_copy(out->decided_by, sizeof(out->decided_by), sql_row_text(r, i, c++));
    risk_text_copy(out->decision_id, sizeof(out->decision_id), sql_row_text(r, i, c++));
    out->queue_row = (uint64_t)sql_row_int(r, i, c++);
    int64_t docs = sql_row_int(r, i, c++);
    CF_ASSERT(c == sql_rows_cols(r));
    if (state < RISK_KYC_DRAFT || state > RISK_KYC_REJECTED || docs < 0 || docs > RISK_KYC_DOCS_MAX)
        return CF_ERR_CORRUPT;
    out->state = (uint8_t)state;
    out->documents_n = (size_t)docs;
    out->has_details = sealed != NULL;
    if (!open || sealed == NULL)
        return CF_OK;
    return details_open(k, out->user_id, out->id, sealed, sealed_len, &out->details);
}

/* The submission id of user (FOR UPDATE when lock); CF_ERR_NOT_FOUND when none. */
static enum cf_err sub_read(struct risk_kyc *k, struct sqltx *tx, const char *user, const char *id,
                            bool open, struct risk_kyc_submission *out)
{
    struct sql_value v[] = {SQL_T(id), SQL_T(user)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT " SUB_COLS " FROM risk_kyc_submissions s "
                                "WHERE s.id = $1 AND s.user_id = $2",
                                v, 2, &r);
    if (err == CF_OK)
        err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : sub_from(k, r, 0, open, out);
    sql_rows_free(r);
    return err;
}

/* Events ------------------------------------------------------------------------------------- */

#define EV_COLS                                                                                    \
    "row, id, user_id, submission_id, document_id, kind, tier, by_user, at_us, reason_sealed, "    \
    "customer_reason_sealed, request_hash"

/* An event as read, with what idempotency needs. */
struct event_read {
    struct risk_kyc_event ev;
    uint8_t request_hash[HASH_BYTES]; /* zero when the event has no key */
};

/* The reasons of an event: customer_reason always, reason when staff. */
static enum cf_err event_reasons_open(struct risk_kyc *k, const struct sql_rows *r, size_t i,
                                      size_t col, bool staff, struct risk_kyc_event *ev)
{
    size_t len = 0;
    char aad[AAD_BYTES];
    const uint8_t *ct = sql_row_blob(r, i, col, &len);
    enum cf_err err = CF_OK;
    if (ct != NULL && staff) {
        aad_make(aad, ev->user_id, ev->id, "reason");
        err =
            risk_unseal_text(k->vault, k->vault_ctx, aad, ct, len, ev->reason, sizeof(ev->reason));
    }
    ct = sql_row_blob(r, i, col + 1, &len);
    if (ct != NULL && err == CF_OK) {
        aad_make(aad, ev->user_id, ev->id, "customer_reason");
        err = risk_unseal_text(k->vault, k->vault_ctx, aad, ct, len, ev->customer_reason,
                               sizeof(ev->customer_reason));
    }
    return err;
}

static enum cf_err event_from(struct risk_kyc *k, const struct sql_rows *r, size_t i, bool staff,
                              struct event_read *out)
{
    struct risk_kyc_event *ev = &out->ev;
    size_t c = 0, hash_len = 0;
    memset(out, 0, sizeof(*out));
    ev->row = (uint64_t)sql_row_int(r, i, c++);
    risk_text_copy(ev->id, sizeof(ev->id), sql_row_text(r, i, c++));
    risk_text_copy(ev->user_id, sizeof(ev->user_id), sql_row_text(r, i, c++));
    risk_text_copy(ev->submission_id, sizeof(ev->submission_id), sql_row_text(r, i, c++));
    risk_text_copy(ev->document_id, sizeof(ev->document_id), sql_row_text(r, i, c++));
    int64_t kind = sql_row_int(r, i, c++), tier = sql_row_int(r, i, c++);
    risk_text_copy(ev->by, sizeof(ev->by), sql_row_text(r, i, c++));
    ev->at_us = sql_row_int(r, i, c++);
    size_t reasons_col = c;
    c += 2;
    const uint8_t *h = sql_row_blob(r, i, c++, &hash_len);
    if (h != NULL && hash_len == HASH_BYTES)
        memcpy(out->request_hash, h, HASH_BYTES);
    CF_ASSERT(c == sql_rows_cols(r));
    if (kind < RISK_KYC_EVENT_DETAILS || kind > RISK_KYC_EVENT_LOWER || tier < 0 ||
        tier > RISK_KYC_TIER_MAX)
        return CF_ERR_CORRUPT;
    ev->kind = (uint8_t)kind;
    ev->tier = (int)tier;
    return event_reasons_open(k, r, i, reasons_col, staff, ev);
}

/* The first event of a query ($1 = key); CF_ERR_NOT_FOUND when none. */
static enum cf_err event_select(struct risk_kyc *k, struct sqltx *tx, const char *sql,
                                const char *key, bool staff, struct event_read *out)
{
    struct sql_value v[] = {SQL_T(key)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx, sql, v, 1, &r);
    if (err == CF_OK)
        err = sql_rows_n(r) == 0 ? CF_ERR_NOT_FOUND : event_from(k, r, 0, staff, out);
    sql_rows_free(r);
    return err;
}

/* A new event's fields, reasons in plaintext ("" for none). */
struct event_new {
    struct risk_kyc_event ev;
    const struct risk_kyc_idem *idem;
};

static void event_init(struct event_new *e, uint8_t kind, const char *user, const char *sub_id,
                       const char *by, int tier, int64_t now_us)
{
    memset(e, 0, sizeof(*e));
    risk_id_new(RISK_KYC_EVENT_PREFIX, e->ev.id, RISK_KYC_ID_BYTES_MAX);
    e->ev.kind = kind;
    risk_text_copy(e->ev.user_id, sizeof(e->ev.user_id), user);
    risk_text_copy(e->ev.submission_id, sizeof(e->ev.submission_id), sub_id);
    risk_text_copy(e->ev.by, sizeof(e->ev.by), by);
    e->ev.tier = tier;
    e->ev.at_us = now_us;
}

/* Seals a reason ("" leaves *len_out 0: stored NULL). */
static enum cf_err reason_seal(struct risk_kyc *k, const struct risk_kyc_event *ev,
                               const char *what, const char *text, uint8_t *out, size_t *len_out)
{
    *len_out = 0;
    if (text[0] == '\0')
        return CF_OK;
    char aad[AAD_BYTES];
    aad_make(aad, ev->user_id, ev->id, what);
    return risk_seal(k->vault, k->vault_ctx, aad, text, strlen(text), out, REASON_SEALED_BYTES_MAX,
                     len_out);
}

/* Appends e and reads back its row into e->ev.row. */
static enum cf_err event_insert(struct risk_kyc *k, struct sqltx *tx, struct event_new *e)
{
    struct risk_kyc_event *ev = &e->ev;
    uint8_t *sealed = malloc(2 * REASON_SEALED_BYTES_MAX);
    if (sealed == NULL)
        return CF_ERR_NOMEM;
    size_t r_len = 0, c_len = 0;
    enum cf_err err = reason_seal(k, ev, "reason", ev->reason, sealed, &r_len);
    if (err == CF_OK)
        err = reason_seal(k, ev, "customer_reason", ev->customer_reason,
                          sealed + REASON_SEALED_BYTES_MAX, &c_len);
    struct sql_value v[] = {
        SQL_T(ev->id),
        SQL_T(ev->user_id),
        SQL_T(ev->submission_id),
        SQL_T(ev->document_id),
        SQL_I(ev->kind),
        SQL_I(ev->tier),
        SQL_T(ev->by),
        SQL_I(ev->at_us),
        r_len > 0 ? SQL_B(sealed, r_len) : SQL_NUL,
        c_len > 0 ? SQL_B(sealed + REASON_SEALED_BYTES_MAX, c_len) : SQL_NUL,
        e->idem != NULL ? SQL_T(e->idem->key) : SQL_NUL,
        e->idem != NULL ? SQL_B(e->idem->request_hash, HASH_BYTES) : SQL_NUL,
    };
    if (err == CF_OK)
        err = sql_exec(tx,
                       "INSERT INTO risk_kyc_events (id, user_id, submission_id, document_id, "
                       "kind, tier, by_user, at_us, reason_sealed, customer_reason_sealed, idem, "
                       "request_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                       v, 12, NULL);
    free(sealed);
    return risk_row_of(tx, err, "SELECT row FROM risk_kyc_events WHERE id = $1", ev->id, &ev->row);
}

/* Drafts ------------------------------------------------------------------------------------- */

/* The latest submission's details re-sealed for a new draft; *len_out 0 when there are none. */
static enum cf_err details_carry(struct risk_kyc *k, struct sqltx *tx, const char *user,
                                 const char *latest_id, const char *draft_id,
                                 uint8_t out[DETAILS_SEALED_BYTES_MAX], size_t *len_out)
{
    *len_out = 0;
    if (latest_id[0] == '\0')
        return CF_OK;
    struct risk_kyc_submission *prev = malloc(sizeof(*prev));
    if (prev == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = sub_read(k, tx, user, latest_id, true, prev);
    if (err == CF_OK && prev->has_details)
        err = details_seal(k, user, draft_id, &prev->details, out, len_out);
    hash_wipe(prev, sizeof(*prev));
    free(prev);
    return err;
}

/* The customer's draft, made when there is none; CF_ERR_CONFLICT (*detail) while a submission
 * is pending or once the customer is at tier 2. c->open_id is set to the draft. */
static enum cf_err draft_ensure(struct risk_kyc *k, struct sqltx *tx, const char *user,
                                struct customer_row *c, int64_t now_us,
                                struct risk_kyc_submission *out, const char **detail)
{
    if (c->tier >= RISK_KYC_TIER_MAX) {
        *detail = "the identity is verified already (tier 2): nothing more to submit";
        return CF_ERR_CONFLICT;
    }
    if (c->open_id[0] != '\0') {
        enum cf_err err = sub_read(k, tx, user, c->open_id, false, out);
        if (err == CF_ERR_NOT_FOUND)
            err = CF_ERR_CORRUPT; /* the customer's row names it */
        if (err == CF_OK && out->state == RISK_KYC_PENDING) {
            *detail = "a submission is under review: wait for its outcome";
            err = CF_ERR_CONFLICT;
        }
        return err;
    }
    char id[RISK_KYC_ID_BYTES_MAX];
    uint8_t sealed[DETAILS_SEALED_BYTES_MAX];
    size_t sealed_len = 0;
    risk_id_new(RISK_KYC_SUBMISSION_PREFIX, id, RISK_KYC_ID_BYTES_MAX);
    enum cf_err err = details_carry(k, tx, user, c->latest_id, id, sealed, &sealed_len);
    struct sql_value v[] = {SQL_T(id), SQL_T(user), SQL_I(RISK_KYC_DRAFT),
                            sealed_len > 0 ? SQL_B(sealed, sealed_len) : SQL_NUL, SQL_I(now_us)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "INSERT INTO risk_kyc_submissions (id, user_id, state, details_sealed, "
                       "created_at_us, submitted_at_us, decided_at_us, decided_by, decision_id, "
                       "queue_row) VALUES ($1, $2, $3, $4, $5, 0, 0, '', '', 0)",
                       v, 5, NULL);
    if (err == CF_OK)
        err = sub_read(k, tx, user, id, false, out);
    if (err == CF_OK)
        risk_text_copy(c->open_id, sizeof(c->open_id), id);
    CF_ASSERT(err != CF_OK || out->state == RISK_KYC_DRAFT);
    return err;
}

/* Details -------------------------------------------------------------------------------------- */

struct details_job {
    const char *user;
    const struct risk_kyc_details *d;
    bool phone_verified;
    int64_t now_us;
    struct risk_kyc_submission draft;
    int tier;
    const char *detail;
};

static enum cf_err details_tx(struct risk_kyc *k, struct details_job *j)
{
    struct sqltx *tx = NULL;
    struct customer_row c;
    uint8_t sealed[DETAILS_SEALED_BYTES_MAX];
    size_t sealed_len = 0;
    enum cf_err err = sql_begin(k->db, &tx);
    if (err != CF_OK)
        return err;
    err = customer_lock(tx, j->user, j->now_us, &c);
    if (err == CF_OK)
        err = draft_ensure(k, tx, j->user, &c, j->now_us, &j->draft, &j->detail);
    if (err == CF_OK)
        err = details_seal(k, j->user, j->draft.id, j->d, sealed, &sealed_len);
    struct sql_value v[] = {SQL_T(j->draft.id), SQL_B(sealed, sealed_len)};
    if (err == CF_OK)
        err = sql_exec(tx, "UPDATE risk_kyc_submissions SET details_sealed = $2 WHERE id = $1", v,
                       2, NULL);
    if (err == CF_OK && j->phone_verified && c.tier == 0 && !c.raise_held)
        c.tier = 1; /* phone verified, legal name and ID number given */
    if (err == CF_OK)
        err = customer_update(tx, j->user, &c, j->now_us);
    struct event_new *e = malloc(sizeof(*e));
    if (err == CF_OK && e == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK) {
        event_init(e, RISK_KYC_EVENT_DETAILS, j->user, j->draft.id, j->user, c.tier, j->now_us);
        err = event_insert(k, tx, e);
    }
    free(e);
    j->tier = c.tier;
    j->draft.has_details = true;
    return risk_tx_end(tx, err);
}

enum cf_err risk_kyc_details_put(struct risk_kyc *k, const char *user_id,
                                 const struct risk_kyc_details *d, bool phone_verified,
                                 int64_t now_us, struct risk_kyc_submission *draft_out,
                                 int *tier_out, const char **detail_out)
{
    CF_ASSERT(k != NULL && d != NULL && draft_out != NULL && tier_out != NULL);
    if (user_number(user_id) == 0 || !risk_kyc_details_valid(d, now_us, detail_out))
        return CF_ERR_INVALID_FIELD;
    struct details_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return CF_ERR_NOMEM;
    *j = (struct details_job){
        .user = user_id, .d = d, .phone_verified = phone_verified, .now_us = now_us};
    enum cf_err err = details_tx(k, j);
    if (err == CF_ERR_STORAGE_CONFLICT)
        err = details_tx(k, j);
    cache_forget(k, user_id);
    if (err == CF_OK) {
        *draft_out = j->draft;
        *tier_out = j->tier;
        CF_ASSERT(draft_out->state == RISK_KYC_DRAFT && j->tier <= 1);
    } else if (err == CF_ERR_CONFLICT && detail_out != NULL) {
        *detail_out = j->detail;
    }
    free(j);
    return err;
}

/* Documents ---------------------------------------------------------------------------------- */

struct doc_job {
    const char *user;
    struct risk_kyc_document doc;
    const uint8_t *sealed;
    size_t sealed_len;
    const char *detail;
};

static enum cf_err doc_tx(struct risk_kyc *k, struct doc_job *j)
{
    struct sqltx *tx = NULL;
    struct customer_row c;
    struct risk_kyc_submission *draft = malloc(sizeof(*draft));
    enum cf_err err = draft == NULL ? CF_ERR_NOMEM : sql_begin(k->db, &tx);
    if (err != CF_OK) {
        free(draft);
        return err;
    }
    err = customer_lock(tx, j->user, j->doc.at_us, &c);
    if (err == CF_OK)
        err = draft_ensure(k, tx, j->user, &c, j->doc.at_us, draft, &j->detail);
    if (err == CF_OK && draft->documents_n >= RISK_KYC_DOCS_MAX) {
        j->detail = "a submission holds at most 6 documents";
        err = CF_ERR_CONFLICT;
    }
    if (err == CF_OK) {
        struct risk_kyc_document *d = &j->doc;
        risk_text_copy(d->submission_id, sizeof(d->submission_id), draft->id);
        struct sql_value v[] = {SQL_T(d->id),
                                SQL_T(d->submission_id),
                                SQL_T(d->user_id),
                                SQL_I(d->kind),
                                SQL_I(d->content),
                                SQL_I(d->size_bytes),
                                SQL_B(j->sealed, j->sealed_len),
                                SQL_I(d->at_us)};
        err = sql_exec(tx,
                       "INSERT INTO risk_kyc_documents (id, submission_id, user_id, kind, "
                       "content, size_bytes, content_sealed, at_us) VALUES ($1, $2, $3, $4, $5, "
                       "$6, $7, $8)",
                       v, 8, NULL);
    }
    if (err == CF_OK)
        err = customer_update(tx, j->user, &c, j->doc.at_us);
    struct event_new *e = err == CF_OK ? malloc(sizeof(*e)) : NULL;
    if (err == CF_OK && e == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK) {
        event_init(e, RISK_KYC_EVENT_DOCUMENT, j->user, draft->id, j->user, c.tier, j->doc.at_us);
        risk_text_copy(e->ev.document_id, sizeof(e->ev.document_id), j->doc.id);
        err = event_insert(k, tx, e);
    }
    free(e);
    free(draft);
    return risk_tx_end(tx, err);
}

/* Checks a document's kind, content type and bytes. */
static enum cf_err doc_check(uint8_t kind, uint8_t content, const uint8_t *bytes, size_t n,
                             const char **detail_out)
{
    uint8_t sniffed = 0;
    const char *why = NULL;
    enum cf_err err = CF_ERR_INVALID_FIELD;
    if (risk_kyc_doc_kind_name(kind)[0] == '\0' || kind == 0)
        why = "kind: passport, id_card, driving_licence, proof_of_address or selfie";
    else if (risk_kyc_content_name(content)[0] == '\0' || content == 0)
        why = "content_type: image/jpeg, image/png or application/pdf";
    else if (n > RISK_KYC_DOC_BYTES_MAX) {
        why = "content: at most 4 MiB once decoded";
        err = CF_ERR_PAYLOAD_TOO_LARGE;
    } else if (risk_kyc_content_sniff(bytes, n, &sniffed) != CF_OK)
        why = "content: not a JPEG, PNG or PDF file";
    else if (sniffed != content)
        why = "content: its bytes are not of the content_type given";
    if (why == NULL)
        return CF_OK;
    if (detail_out != NULL)
        *detail_out = why;
    return err;
}

enum cf_err risk_kyc_document_add(struct risk_kyc *k, const char *user_id, uint8_t kind,
                                  uint8_t content, const uint8_t *bytes, size_t n, int64_t now_us,
                                  struct risk_kyc_document *out, const char **detail_out)
{
    CF_ASSERT(k != NULL && out != NULL && (bytes != NULL || n == 0));
    if (user_number(user_id) == 0)
        return CF_ERR_INVALID_FIELD;
    enum cf_err err = doc_check(kind, content, bytes, n, detail_out);
    if (err != CF_OK)
        return err;
    struct doc_job j = {.user = user_id};
    risk_id_new(RISK_KYC_DOCUMENT_PREFIX, j.doc.id, RISK_KYC_ID_BYTES_MAX);
    risk_text_copy(j.doc.user_id, sizeof(j.doc.user_id), user_id);
    j.doc.kind = kind;
    j.doc.content = content;
    j.doc.size_bytes = (int64_t)n;
    j.doc.at_us = now_us;
    uint8_t *sealed = NULL; /* sealed before the transaction: it takes a few milliseconds */
    err = doc_seal(k, user_id, j.doc.id, bytes, n, &sealed, &j.sealed_len);
    j.sealed = sealed;
    if (err == CF_OK)
        err = doc_tx(k, &j);
    if (err == CF_ERR_STORAGE_CONFLICT)
        err = doc_tx(k, &j);
    free(sealed);
    cache_forget(k, user_id);
    if (err == CF_OK) {
        *out = j.doc;
        CF_ASSERT(out->submission_id[0] != '\0' && out->size_bytes == (int64_t)n);
    } else if (err == CF_ERR_CONFLICT && detail_out != NULL) {
        *detail_out = j.detail;
    }
    return err;
}

/* Submitting --------------------------------------------------------------------------------- */

/* Whether submission id holds an identity document. */
static enum cf_err has_identity_doc(struct sqltx *tx, const char *id, bool *out)
{
    struct sql_value v[] = {SQL_T(id), SQL_I(RISK_KYC_DOC_PASSPORT),
                            SQL_I(RISK_KYC_DOC_DRIVING_LICENCE)};
    struct sql_rows *r = NULL;
    enum cf_err err = sql_query(tx,
                                "SELECT COUNT(*) FROM risk_kyc_documents WHERE submission_id = $1 "
                                "AND kind >= $2 AND kind <= $3",
                                v, 3, &r);
    if (err == CF_OK)
        *out = sql_row_int(r, 0, 0) > 0;
    sql_rows_free(r);
    return err;
}

/* Why the customer's open submission (read into *s) cannot be submitted; NULL when it can. */
static enum cf_err submit_check(struct risk_kyc *k, struct sqltx *tx, const char *user,
                                const struct customer_row *c, struct risk_kyc_submission *s,
                                const char **detail)
{
    bool identity = false;
    *detail = NULL;
    if (c->tier >= RISK_KYC_TIER_MAX)
        *detail = "the identity is verified already (tier 2): nothing more to submit";
    else if (c->open_id[0] == '\0')
        *detail = "nothing to submit: give your details and add an identity document first";
    if (*detail != NULL)
        return CF_ERR_CONFLICT;
    enum cf_err err = sub_read(k, tx, user, c->open_id, false, s);
    if (err == CF_ERR_NOT_FOUND)
        return CF_ERR_CORRUPT;
    if (err == CF_OK)
        err = has_identity_doc(tx, s->id, &identity);
    if (err != CF_OK)
        return err;
    if (s->state == RISK_KYC_PENDING)
        *detail = "the submission is under review already";
    else if (!s->has_details)
        *detail = "details missing: give your legal name, ID type and number, date of birth "
                  "and country first";
    else if (!identity)
        *detail = "add an identity document (passport, id_card or driving_licence) first";
    return *detail != NULL ? CF_ERR_CONFLICT : CF_OK;
}

static enum cf_err submit_tx(struct risk_kyc *k, const char *user, int64_t now_us,
                             struct risk_kyc_submission *s, const char **detail)
{
    struct sqltx *tx = NULL;
    struct customer_row c;
    struct event_new *e = calloc(1, sizeof(*e));
    enum cf_err err = e == NULL ? CF_ERR_NOMEM : sql_begin(k->db, &tx);
    if (err != CF_OK) {
        free(e);
        return err;
    }
    err = customer_lock(tx, user, now_us, &c);
    if (err == CF_OK)
        err = submit_check(k, tx, user, &c, s, detail);
    if (err == CF_OK) {
        event_init(e, RISK_KYC_EVENT_SUBMIT, user, s->id, user, c.tier, now_us);
        err = event_insert(k, tx, e);
    }
    if (err == CF_OK) {
        struct sql_value v[] = {SQL_T(s->id), SQL_I(RISK_KYC_PENDING), SQL_I(now_us),
                                SQL_I(e->ev.row)};
        err = sql_exec(tx,
                       "UPDATE risk_kyc_submissions SET state = $2, submitted_at_us = $3, "
                       "queue_row = $4 WHERE id = $1",
                       v, 4, NULL);
    }
    if (err == CF_OK) {
        risk_text_copy(c.latest_id, sizeof(c.latest_id), s->id);
        err = customer_update(tx, user, &c, now_us);
    }
    if (err == CF_OK)
        err = sub_read(k, tx, user, s->id, false, s);
    free(e);
    return risk_tx_end(tx, err);
}

enum cf_err risk_kyc_submit(struct risk_kyc *k, const char *user_id, int64_t now_us,
                            struct risk_kyc_submission *out, const char **detail_out)
{
    CF_ASSERT(k != NULL && out != NULL);
    if (user_number(user_id) == 0)
        return CF_ERR_INVALID_FIELD;
    struct risk_kyc_submission *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CF_ERR_NOMEM;
    const char *detail = NULL;
    enum cf_err err = submit_tx(k, user_id, now_us, s, &detail);
    if (err == CF_ERR_STORAGE_CONFLICT)
        err = submit_tx(k, user_id, now_us, s, &detail);
    cache_forget(k, user_id);
    if (err == CF_OK) {
        *out = *s;
        CF_ASSERT(out->state == RISK_KYC_PENDING && out->queue_row > 0);
    } else if (err == CF_ERR_CONFLICT && detail_out != NULL) {
        *detail_out = detail;
    }
    free(s);
    return err;
}

/* Deciding ----------------------------------------------------------------------------------- */

struct decide_job {
    const char *user;
    const char *submission_id;
    bool approve;
    struct event_new e;      /* the decision to record */
    struct event_read found; /* a replay's */
    bool replay;
    int tier;
    int target; /* lowering: the tier to lower to */
    const char *detail;
};

/* A staff change (a decision, a lowering): its event's fields. */
static void staff_job_init(struct decide_job *j, uint8_t kind, const char *user, int tier,
                           const char *reason, const char *customer_reason, const char *by,
                           const struct risk_kyc_idem *idem, int64_t now_us)
{
    j->user = user;
    event_init(&j->e, kind, user, "", by, tier, now_us);
    risk_text_copy(j->e.ev.reason, sizeof(j->e.ev.reason), reason);
    risk_text_copy(j->e.ev.customer_reason, sizeof(j->e.ev.customer_reason), customer_reason);
    j->e.idem = idem;
}

/* Where a staff change's outcome goes (the public functions' out parameters). */
struct staff_out {
    struct risk_kyc_event *event;
    int *tier;
    bool *replay; /* may be NULL */
    const char **detail; /* may be NULL */
};

/* Whether a replayed key's event is of the same change as j's (a decision either way). */
static bool staff_same_change(uint8_t found, uint8_t asked)
{
    bool decision = asked == RISK_KYC_EVENT_APPROVE || asked == RISK_KYC_EVENT_REJECT;
    return decision ? found == RISK_KYC_EVENT_APPROVE || found == RISK_KYC_EVENT_REJECT
                    : found == asked;
}

/* Runs a staff change's transaction (once more on a storage conflict: two requests with one
 * key, the second replays), forgets the cached tier and hands the outcome to o. A key that made
 * another kind of change is CF_ERR_IDEM_KEY_REUSED. Wipes and frees j. */
static enum cf_err staff_job_run(struct risk_kyc *k, struct decide_job *j,
                                 enum cf_err (*tx)(struct risk_kyc *, struct decide_job *),
                                 const struct staff_out *o)
{
    enum cf_err err = tx(k, j);
    if (err == CF_ERR_STORAGE_CONFLICT)
        err = tx(k, j);
    cache_forget(k, j->user);
    if (err == CF_OK && j->replay && !staff_same_change(j->found.ev.kind, j->e.ev.kind))
        err = CF_ERR_IDEM_KEY_REUSED;
    if (err == CF_OK) {
        *o->event = j->replay ? j->found.ev : j->e.ev;
        *o->tier = j->tier;
        if (o->replay != NULL)
            *o->replay = j->replay;
    } else if (err == CF_ERR_CONFLICT && o->detail != NULL) {
        *o->detail = j->detail;
    }
    hash_wipe(j, sizeof(*j));
    free(j);
    return err;
}

/* The decision idem's key made: CF_OK (a replay, *tier_out the tier now), CF_ERR_NOT_FOUND (a
 * new key) or CF_ERR_IDEM_KEY_REUSED. */
static enum cf_err decision_by_idem(struct risk_kyc *k, struct sqltx *tx, struct decide_job *j)
{
    const struct risk_kyc_idem *idem = j->e.idem;
    enum cf_err err = event_select(k, tx, "SELECT " EV_COLS " FROM risk_kyc_events WHERE idem = $1",
                                   idem->key, true, &j->found);
    if (err == CF_OK && (strcmp(j->found.ev.user_id, j->user) != 0 ||
                         !hash_equal(j->found.request_hash, idem->request_hash, HASH_BYTES)))
        return CF_ERR_IDEM_KEY_REUSED;
    struct customer_row c;
    if (err == CF_OK && (err = customer_read(tx, j->user, false, &c)) == CF_OK) {
        j->tier = c.tier;
        j->replay = true;
    }
    return err;
}

/* What stops the decision: nothing pending, or another one than named. */
static enum cf_err decide_check(struct risk_kyc *k, struct sqltx *tx, struct decide_job *j,
                                const struct customer_row *c, struct risk_kyc_submission *s)
{
    enum cf_err err =
        c->open_id[0] != '\0' ? sub_read(k, tx, j->user, c->open_id, false, s) : CF_ERR_NOT_FOUND;
    if (err == CF_OK && s->state != RISK_KYC_PENDING)
        err = CF_ERR_NOT_FOUND;
    if (err == CF_ERR_NOT_FOUND) {
        j->detail = "no submission of this customer is pending review";
        return CF_ERR_CONFLICT;
    }
    if (err == CF_OK && j->submission_id != NULL && j->submission_id[0] != '\0' &&
        strcmp(j->submission_id, s->id) != 0) {
        j->detail = "submission_id: the pending submission is another one";
        return CF_ERR_CONFLICT;
    }
    return err;
}

/* Records the decision of submission s. */
static enum cf_err decide_apply(struct risk_kyc *k, struct sqltx *tx, struct decide_job *j,
                                struct customer_row *c, const struct risk_kyc_submission *s)
{
    struct risk_kyc_event *ev = &j->e.ev;
    c->tier = j->approve ? RISK_KYC_TIER_MAX : c->tier;
    c->raise_held = c->raise_held && !j->approve; /* staff verified them again */
    ev->tier = c->tier;
    risk_text_copy(ev->submission_id, sizeof(ev->submission_id), s->id);
    enum cf_err err = event_insert(k, tx, &j->e);
    struct sql_value v[] = {
        SQL_T(s->id),     SQL_I(j->approve ? RISK_KYC_APPROVED : RISK_KYC_REJECTED),
        SQL_I(ev->at_us), SQL_T(ev->by),
        SQL_T(ev->id),    SQL_I(ev->row)};
    if (err == CF_OK)
        err = sql_exec(tx,
                       "UPDATE risk_kyc_submissions SET state = $2, decided_at_us = $3, "
                       "decided_by = $4, decision_id = $5, queue_row = $6 WHERE id = $1",
                       v, 6, NULL);
    if (err == CF_OK) {
        c->open_id[0] = '\0';
        risk_text_copy(c->latest_id, sizeof(c->latest_id), s->id);
        err = customer_update(tx, j->user, c, ev->at_us);
    }
    j->tier = c->tier;
    return err;
}

static enum cf_err decide_tx(struct risk_kyc *k, struct decide_job *j)
{
    struct sqltx *tx = NULL;
    struct customer_row c;
    struct risk_kyc_submission *s = malloc(sizeof(*s));
    enum cf_err err = s == NULL ? CF_ERR_NOMEM : sql_begin(k->db, &tx);
    if (err != CF_OK) {
        free(s);
        return err;
    }
    if (j->e.idem != NULL && (err = decision_by_idem(k, tx, j)) != CF_ERR_NOT_FOUND) {
        sql_rollback(tx);
        free(s);
        return err;
    }
    err = customer_read(tx, j->user, true, &c);
    if (err == CF_ERR_NOT_FOUND) {
        j->detail = "no submission of this customer is pending review";
        err = CF_ERR_CONFLICT;
    }
    if (err == CF_OK)
        err = decide_check(k, tx, j, &c, s);
    if (err == CF_ERR_CONFLICT && j->e.idem != NULL) {
        /* the row lock waited for a decision that committed meanwhile: was it this key's? */
        enum cf_err again = decision_by_idem(k, tx, j);
        err = again == CF_ERR_NOT_FOUND ? CF_ERR_CONFLICT : again;
        sql_rollback(tx);
        free(s);
        return err;
    }
    if (err == CF_OK)
        err = decide_apply(k, tx, j, &c, s);
    free(s);
    return risk_tx_end(tx, err);
}

static enum cf_err decide_args(const char *user_id, const char *reason, const char *customer_reason,
                               const char *by, const struct risk_kyc_idem *idem,
                               const char **detail_out)
{
    if (user_number(user_id) == 0 || !risk_token_valid(by, RISK_KYC_USER_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    if (!risk_kyc_reason_valid(reason, false, detail_out))
        return CF_ERR_INVALID_FIELD;
    if (customer_reason != NULL && customer_reason[0] != '\0' &&
        !risk_kyc_reason_valid(customer_reason, true, detail_out))
        return CF_ERR_INVALID_FIELD;
    if (idem != NULL && !risk_token_valid(idem->key, RISK_KYC_IDEM_BYTES_MAX, false))
        return CF_ERR_INVALID_FIELD;
    return CF_OK;
}

enum cf_err risk_kyc_decide(struct risk_kyc *k, const char *user_id, const char *submission_id,
                            bool approve, const char *reason, const char *customer_reason,
                            const char *by, const struct risk_kyc_idem *idem, int64_t now_us,
                            struct risk_kyc_event *out, int *tier_out, bool *replay_out,
                            const char **detail_out)
{
    CF_ASSERT(k != NULL && out != NULL && tier_out != NULL);
    enum cf_err err = decide_args(user_id, reason, customer_reason, by, idem, detail_out);
    if (err != CF_OK)
        return err;
    struct decide_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return CF_ERR_NOMEM;
    j->submission_id = submission_id;
    j->approve = approve;
    staff_job_init(j, approve ? RISK_KYC_EVENT_APPROVE : RISK_KYC_EVENT_REJECT, user_id, 0, reason,
                   customer_reason, by, idem, now_us);
    struct staff_out o = {out, tier_out, replay_out, detail_out};
    return staff_job_run(k, j, decide_tx, &o);
}

/* Lowering ------------------------------------------------------------------------------------ */

/* Lowers the customer to j->target (below the tier now), holding the automatic raise. */
static enum cf_err lower_apply(struct risk_kyc *k, struct sqltx *tx, struct decide_job *j,
                               struct customer_row *c)
{
    if (c->tier <= j->target) {
        j->detail = "tier: the customer is at this tier or below it already; staff can only lower";
        return CF_ERR_CONFLICT;
    }
    c->tier = j->target;
    c->raise_held = true;
    j->e.ev.tier = c->tier;
    risk_text_copy(j->e.ev.submission_id, sizeof(j->e.ev.submission_id), c->latest_id);
    enum cf_err err = event_insert(k, tx, &j->e);
    if (err == CF_OK)
        err = customer_update(tx, j->user, c, j->e.ev.at_us);
    j->tier = c->tier;
    return err;
}

static enum cf_err lower_tx(struct risk_kyc *k, struct decide_job *j)
{
    struct sqltx *tx = NULL;
    struct customer_row c;
    enum cf_err err = sql_begin(k->db, &tx);
    if (err != CF_OK)
        return err;
    if (j->e.idem != NULL && (err = decision_by_idem(k, tx, j)) != CF_ERR_NOT_FOUND) {
        sql_rollback(tx);
        return err;
    }
    err = customer_read(tx, j->user, true, &c);
    if (err == CF_ERR_NOT_FOUND) {
        j->detail = "tier: the customer is at tier 0";
        err = CF_ERR_CONFLICT;
    }
    if (err == CF_OK)
        err = lower_apply(k, tx, j, &c);
    return risk_tx_end(tx, err);
}

enum cf_err risk_kyc_tier_lower(struct risk_kyc *k, const char *user_id, int tier,
                                const char *reason, const char *customer_reason, const char *by,
                                const struct risk_kyc_idem *idem, int64_t now_us,
                                struct risk_kyc_event *out, int *tier_out, bool *replay_out,
                                const char **detail_out)
{
    CF_ASSERT(k != NULL && out != NULL && tier_out != NULL);
    enum cf_err err = decide_args(user_id, reason, customer_reason, by, idem, detail_out);
    if (err == CF_OK && (tier < 0 || tier >= RISK_KYC_TIER_MAX)) {
        if (detail_out != NULL)
            *detail_out = "tier: 0 or 1 (below the highest tier)";
        err = CF_ERR_INVALID_FIELD;
    }
    struct decide_job *j = err == CF_OK ? calloc(1, sizeof(*j)) : NULL;
    if (err == CF_OK && j == NULL)
        err = CF_ERR_NOMEM;
    if (err != CF_OK)
        return err;
    j->target = tier;
    staff_job_init(j, RISK_KYC_EVENT_LOWER, user_id, tier, reason, customer_reason, by, idem,
                   now_us);
    struct staff_out o = {out, tier_out, replay_out, detail_out};
    return staff_job_run(k, j, lower_tx, &o);
}

/* Tiers -------------------------------------------------------------------------------------- */

/* The tier in the database (0 for a customer never seen). */
static enum cf_err tier_read(struct risk_kyc *k, const char *user_id, int *tier_out)
{
    struct sqltx *tx = NULL;
    struct customer_row c;
    enum cf_err err = sql_begin(k->db, &tx);
    if (err != CF_OK)
        return err;
    err = customer_read(tx, user_id, false, &c);
    sql_rollback(tx);
    if (err == CF_ERR_NOT_FOUND) {
        c.tier = 0;
        err = CF_OK;
    }
    if (err == CF_OK)
        *tier_out = c.tier;
    return err;
}

enum cf_err risk_kyc_tier_get(struct risk_kyc *k, const char *user_id, int *tier_out)
{
    CF_ASSERT(k != NULL && tier_out != NULL);
    uint64_t user = user_number(user_id);
    if (user == 0) {
        *tier_out = 0;
        return CF_OK;
    }
    int64_t now = cf_monotonic_us();
    CF_ASSERT(pthread_mutex_lock(&k->cache_mu) == 0);
    struct tier_slot *s = slot_of(k, user);
    bool hit = s->user == user && now - s->read_at_us < RISK_KYC_TIER_CACHE_US;
    int tier = s->tier;
    uint64_t gen = s->gen;
    CF_ASSERT(pthread_mutex_unlock(&k->cache_mu) == 0);
    if (hit) {
        *tier_out = tier;
        return CF_OK;
    }
    enum cf_err err = tier_read(k, user_id, &tier);
    if (err != CF_OK)
        return err;
    CF_ASSERT(tier >= 0 && tier <= RISK_KYC_TIER_MAX);
    CF_ASSERT(pthread_mutex_lock(&k->cache_mu) == 0);
    if (s->gen == gen) { /* no change of this slot's customers committed while reading */
        s->user = user;
        s->tier = tier;
        s->read_at_us = now;
    }
    CF_ASSERT(pthread_mutex_unlock(&k->cache_mu) == 0);
    *tier_out = tier;
    return CF_OK;
}

/* Whether the customer's current submission (open, else latest) holds details. */
static enum cf_err current_has_details(struct risk_kyc *k, struct sqltx *tx, const char *user,
                                       const struct customer_row *c, bool *out)
{
    const char *id = c->open_id[0] != '\0' ? c->open_id : c->latest_id;
    *out = false;
    if (id[0] == '\0')
        return CF_OK;
    struct risk_kyc_submission *s = malloc(sizeof(*s));
    if (s == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = sub_read(k, tx, user, id, false, s);
    if (err == CF_OK)
        *out = s->has_details;
    free(s);
    return err == CF_ERR_NOT_FOUND ? CF_ERR_CORRUPT : err;
}

static enum cf_err refresh_tx(struct risk_kyc *k, const char *user, int64_t now_us, int *tier,
                              bool *raised)
{
    struct sqltx *tx = NULL;
    struct customer_row c;
    bool details = false;
    enum cf_err err = sql_begin(k->db, &tx);
    if (err != CF_OK)
        return err;
    err = customer_read(tx, user, true, &c);
    if (err == CF_OK && c.tier == 0 && !c.raise_held)
        err = current_has_details(k, tx, user, &c, &details);
    *raised = err == CF_OK && c.tier == 0 && !c.raise_held && details;
    struct event_new *e = *raised ? malloc(sizeof(*e)) : NULL;
    if (*raised && e == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK && *raised) {
        c.tier = 1;
        err = customer_update(tx, user, &c, now_us);
        event_init(e, RISK_KYC_EVENT_TIER, user, c.open_id[0] != '\0' ? c.open_id : c.latest_id,
                   user, 1, now_us);
        if (err == CF_OK)
            err = event_insert(k, tx, e);
    }
    free(e);
    *tier = err == CF_OK ? c.tier : 0;
    return risk_tx_end(tx, err == CF_ERR_NOT_FOUND ? CF_OK : err);
}

enum cf_err risk_kyc_tier_refresh(struct risk_kyc *k, const char *user_id, bool phone_verified,
                                  int64_t now_us, int *tier_out, bool *raised_out)
{
    CF_ASSERT(k != NULL && tier_out != NULL);
    int tier = 0;
    bool raised = false;
    enum cf_err err = tier_read(k, user_id, &tier);
    if (err == CF_OK && tier == 0 && phone_verified && user_number(user_id) != 0) {
        err = refresh_tx(k, user_id, now_us, &tier, &raised);
        if (err == CF_ERR_STORAGE_CONFLICT)
            err = refresh_tx(k, user_id, now_us, &tier, &raised);
        cache_forget(k, user_id);
    }
    if (err != CF_OK)
        return err;
    CF_ASSERT(tier >= 0 && tier <= RISK_KYC_TIER_MAX && (!raised || tier == 1));
    *tier_out = tier;
    if (raised_out != NULL)
        *raised_out = raised;
    return CF_OK;
}

/* Reads -------------------------------------------------------------------------------------- */

/* The reasons of submission s's decision (its event), opened for staff or the customer. */
static enum cf_err sub_reasons(struct risk_kyc *k, struct sqltx *tx, bool staff,
                               struct risk_kyc_submission *s)
{
    if (s->decision_id[0] == '\0')
        return CF_OK;
    struct event_read *got = malloc(sizeof(*got));
    if (got == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = event_select(k, tx, "SELECT " EV_COLS " FROM risk_kyc_events WHERE id = $1",
                                   s->decision_id, staff, got);
    if (err == CF_OK && strcmp(got->ev.user_id, s->user_id) != 0)
        err = CF_ERR_CORRUPT;
    if (err == CF_OK) {
        risk_text_copy(s->reason, sizeof(s->reason), got->ev.reason);
        risk_text_copy(s->customer_reason, sizeof(s->customer_reason), got->ev.customer_reason);
    }
    hash_wipe(got, sizeof(*got));
    free(got);
    return err == CF_ERR_NOT_FOUND ? CF_ERR_CORRUPT : err;
}

/* The documents of submission id (at most RISK_KYC_DOCS_MAX), oldest first. */
static enum cf_err docs_list(struct sqltx *tx, const char *id, struct risk_kyc_document *out,
                             size_t *n_out)
{
    struct sql_value v[] = {SQL_T(id), SQL_I(RISK_KYC_DOCS_MAX)};
    struct sql_rows *r = NULL;
    enum cf_err err =
        sql_query(tx,
                  "SELECT row, id, submission_id, user_id, kind, content, size_bytes, "
                  "at_us FROM risk_kyc_documents WHERE submission_id = $1 "
                  "ORDER BY row LIMIT $2",
                  v, 2, &r);
    size_t n = err == CF_OK ? sql_rows_n(r) : 0;
    for (size_t i = 0; i < n && err == CF_OK; i++) {
        struct risk_kyc_document *d = &out[i];
        memset(d, 0, sizeof(*d));
        d->row = (uint64_t)sql_row_int(r, i, 0);
        risk_text_copy(d->id, sizeof(d->id), sql_row_text(r, i, 1));
        risk_text_copy(d->submission_id, sizeof(d->submission_id), sql_row_text(r, i, 2));
        risk_text_copy(d->user_id, sizeof(d->user_id), sql_row_text(r, i, 3));
        int64_t kind = sql_row_int(r, i, 4), content = sql_row_int(r, i, 5);
        d->size_bytes = sql_row_int(r, i, 6);
        d->at_us = sql_row_int(r, i, 7);
        if (kind < RISK_KYC_DOC_PASSPORT || kind > RISK_KYC_DOC_SELFIE || content < RISK_KYC_JPEG ||
            content > RISK_KYC_PDF)
            err = CF_ERR_CORRUPT;
        d->kind = (uint8_t)kind;
        d->content = (uint8_t)content;
    }
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

/* Fills a view in one read transaction. */
static enum cf_err view_tx(struct risk_kyc *k, struct sqltx *tx, const char *user, bool staff,
                           struct risk_kyc_view *v)
{
    struct customer_row c;
    enum cf_err err = customer_read(tx, user, false, &c);
    if (err == CF_ERR_NOT_FOUND)
        return CF_OK; /* never seen: tier 0, nothing submitted */
    if (err != CF_OK)
        return err;
    v->tier = c.tier;
    if (c.latest_id[0] != '\0') {
        err = sub_read(k, tx, user, c.latest_id, true, &v->latest);
        if (err == CF_OK)
            err = sub_reasons(k, tx, staff, &v->latest);
        v->has_latest = err == CF_OK;
        v->state = err == CF_OK ? v->latest.state : RISK_KYC_NONE;
    }
    const char *cur = c.open_id[0] != '\0' ? c.open_id : c.latest_id;
    if (err == CF_OK && cur[0] != '\0') {
        if (strcmp(cur, c.latest_id) == 0) /* the latest (pending, or nothing open): read above */
            v->current = v->latest;
        else /* a draft: no decision to read reasons from */
            err = sub_read(k, tx, user, cur, true, &v->current);
        if (err == CF_OK)
            err = docs_list(tx, cur, v->documents, &v->documents_n);
        v->has_current = err == CF_OK;
    }
    return err == CF_ERR_NOT_FOUND ? CF_ERR_CORRUPT : err;
}

enum cf_err risk_kyc_view_get(struct risk_kyc *k, const char *user_id, bool staff,
                              struct risk_kyc_view *out)
{
    CF_ASSERT(k != NULL && out != NULL);
    struct risk_kyc_view *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return CF_ERR_NOMEM;
    risk_text_copy(v->user_id, sizeof(v->user_id), user_id);
    enum cf_err err = CF_OK;
    if (user_number(user_id) != 0) {
        struct sqltx *tx = NULL;
        err = sql_begin(k->db, &tx);
        if (err == CF_OK) {
            err = view_tx(k, tx, user_id, staff, v);
            sql_rollback(tx);
        }
    }
    if (err == CF_OK) {
        *out = *v;
        CF_ASSERT(out->tier >= 0 && out->tier <= RISK_KYC_TIER_MAX);
    }
    hash_wipe(v, sizeof(*v));
    free(v);
    return err;
}

enum cf_err risk_kyc_history(struct risk_kyc *k, const char *user_id, bool staff,
                             struct risk_kyc_event *out, size_t max, size_t *n_out)
{
    CF_ASSERT(k != NULL && max <= RISK_KYC_HISTORY_MAX && n_out != NULL);
    if (user_number(user_id) == 0) {
        *n_out = 0;
        return CF_OK;
    }
    struct event_read *one = malloc(sizeof(*one));
    if (one == NULL)
        return CF_ERR_NOMEM;
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    struct sql_value v[] = {SQL_T(user_id), SQL_I(max)};
    enum cf_err err = sql_begin(k->db, &tx);
    if (err == CF_OK) {
        err = sql_query(tx,
                        "SELECT " EV_COLS " FROM risk_kyc_events WHERE user_id = $1 "
                        "ORDER BY row DESC LIMIT $2",
                        v, 2, &r);
        sql_rollback(tx);
    }
    size_t rows = err == CF_OK ? sql_rows_n(r) : 0, n = 0;
    for (size_t i = 0; i < rows && i < max && err == CF_OK; i++) {
        if ((err = event_from(k, r, i, staff, one)) == CF_OK)
            out[n++] = one->ev;
    }
    sql_rows_free(r);
    hash_wipe(one, sizeof(*one));
    free(one);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

enum cf_err risk_kyc_list(struct risk_kyc *k, uint8_t state, uint64_t cursor,
                          struct risk_kyc_submission *out, size_t max, size_t *n_out)
{
    CF_ASSERT(k != NULL && max <= RISK_KYC_LIST_MAX && n_out != NULL);
    if (state != RISK_KYC_PENDING && state != RISK_KYC_APPROVED && state != RISK_KYC_REJECTED)
        return CF_ERR_INVALID_FIELD;
    bool queue = state == RISK_KYC_PENDING;
    int64_t c = cursor <= (uint64_t)INT64_MAX ? (int64_t)cursor : INT64_MAX;
    if (!queue && c == 0)
        c = INT64_MAX;
    struct sql_value v[] = {SQL_I(state), SQL_I(c), SQL_I(max)};
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(k->db, &tx);
    if (err == CF_OK) {
        err = sql_query(tx,
                        queue ? "SELECT " SUB_COLS " FROM risk_kyc_submissions s WHERE s.state = "
                                "$1 AND s.queue_row > $2 ORDER BY s.queue_row LIMIT $3"
                              : "SELECT " SUB_COLS " FROM risk_kyc_submissions s WHERE s.state = "
                                "$1 AND s.queue_row < $2 ORDER BY s.queue_row DESC LIMIT $3",
                        v, 3, &r);
        sql_rollback(tx);
    }
    size_t rows = err == CF_OK ? sql_rows_n(r) : 0, n = 0;
    for (size_t i = 0; i < rows && i < max && err == CF_OK; i++) {
        if ((err = sub_from(k, r, i, false, &out[n])) == CF_OK)
            n++;
    }
    sql_rows_free(r);
    if (err == CF_OK)
        *n_out = n;
    return err;
}

enum cf_err risk_kyc_document_read(struct risk_kyc *k, const char *user_id, const char *doc_id,
                                   struct risk_kyc_document *meta_out, uint8_t **content_out,
                                   size_t *n_out)
{
    CF_ASSERT(k != NULL && meta_out != NULL && content_out != NULL && n_out != NULL);
    uint64_t v_doc = 0;
    if (user_number(user_id) == 0 || doc_id == NULL ||
        id_parse(RISK_KYC_DOCUMENT_PREFIX, doc_id, strlen(doc_id), &v_doc) != CF_OK)
        return CF_ERR_NOT_FOUND;
    struct sql_value v[] = {SQL_T(doc_id), SQL_T(user_id)};
    struct sqltx *tx = NULL;
    struct sql_rows *r = NULL;
    enum cf_err err = sql_begin(k->db, &tx);
    if (err == CF_OK) {
        err = sql_query(tx,
                        "SELECT row, id, submission_id, user_id, kind, content, size_bytes, "
                        "at_us, content_sealed FROM risk_kyc_documents WHERE id = $1 AND "
                        "user_id = $2",
                        v, 2, &r);
        sql_rollback(tx);
    }
    if (err == CF_OK && sql_rows_n(r) == 0)
        err = CF_ERR_NOT_FOUND;
    struct risk_kyc_document d;
    uint8_t *content = NULL;
    if (err == CF_OK) {
        memset(&d, 0, sizeof(d));
        d.row = (uint64_t)sql_row_int(r, 0, 0);
        risk_text_copy(d.id, sizeof(d.id), sql_row_text(r, 0, 1));
        risk_text_copy(d.submission_id, sizeof(d.submission_id), sql_row_text(r, 0, 2));
        risk_text_copy(d.user_id, sizeof(d.user_id), sql_row_text(r, 0, 3));
        d.kind = (uint8_t)sql_row_int(r, 0, 4);
        d.content = (uint8_t)sql_row_int(r, 0, 5);
        d.size_bytes = sql_row_int(r, 0, 6);
        d.at_us = sql_row_int(r, 0, 7);
        size_t ct_len = 0;
        const uint8_t *ct = sql_row_blob(r, 0, 8, &ct_len);
        err = risk_kyc_content_name(d.content)[0] == '\0'
                  ? CF_ERR_CORRUPT
                  : doc_open(k, user_id, d.id, ct, ct_len, d.size_bytes, &content);
    }
    sql_rows_free(r);
    if (err == CF_OK) {
        *meta_out = d;
        *content_out = content;
        *n_out = (size_t)d.size_bytes;
    }
    return err;
}
