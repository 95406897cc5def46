/*
 * gateway.c - dispatch to a connector, request checks, the form codec and signatures; see
 * gateway.h.
 *
 * A struct gateway is an ops table and the connector's impl. gateway_submit checks the
 * request, lets the connector answer into a zeroed local result, asserts the result is one a
 * connector may give and only then copies it out. Signatures are HMAC-SHA-256 over
 * "<t>." + body with libsodium; the verifier parses the header strictly, compares MACs with
 * sodium_memcmp and reads the body only after the signature and its age are good.
 */
#include "gateway/gateway.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "gateway/card.h"
#include "money/currency.h"

/* A form key we decode: ours are at most 12 characters ("amount_minor"). */
#define FORM_KEY_BYTES_MAX 32
/* Text of an integer field: 19 digits of INT64_MAX with its NUL, and room. */
#define INT_TEXT_BYTES_MAX 24
/* Text of an outcome name: "insufficient_funds" with its NUL, and room. */
#define OUTCOME_TEXT_BYTES_MAX 24
/* Digits of t in a signature: 19 hold every non-negative int64_t. */
#define SIGNATURE_T_DIGITS_MAX 19
#define MAC_BYTES crypto_auth_hmacsha256_BYTES

_Static_assert(GATEWAY_INSTRUMENT_BYTES_MAX > CARD_PAN_DIGITS_MAX &&
                   GATEWAY_INSTRUMENT_BYTES_MAX > CARD_IBAN_CHARS_MAX,
               "an instrument holds a PAN or an IBAN");
_Static_assert(GATEWAY_SIGNATURE_BYTES_MAX >= 2 + SIGNATURE_T_DIGITS_MAX + 4 + 2 * MAC_BYTES + 1,
               "a signature value fits its bound");

struct gateway {
    const struct gateway_ops *ops;
    void *impl;
};

/* Connectors ----------------------------------------------------------------------------------- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_rc = -1; /* set once, by sodium_start */

static void sodium_start(void) { sodium_rc = sodium_init(); }

enum cf_err gateway_sodium_init(void)
{
    CF_ASSERT(pthread_once(&sodium_once, sodium_start) == 0);
    return sodium_rc < 0 ? CF_ERR_INTERNAL : CF_OK;
}

enum cf_err gateway_connector_create(const struct gateway_ops *ops, void *impl,
                                     struct gateway **out)
{
    CF_ASSERT(ops != NULL && ops->name != NULL && ops->submit != NULL);
    CF_ASSERT(ops->challenge_answer != NULL && ops->destroy != NULL && out != NULL);
    struct gateway *gw = calloc(1, sizeof(*gw));
    if (gw == NULL)
        return CF_ERR_NOMEM;
    gw->ops = ops;
    gw->impl = impl;
    *out = gw;
    return CF_OK;
}

const char *gateway_name(const struct gateway *gw)
{
    CF_ASSERT(gw != NULL && gw->ops != NULL);
    return gw->ops->name;
}

void gateway_destroy(struct gateway *gw)
{
    if (gw == NULL)
        return;
    CF_ASSERT(gw->ops != NULL);
    gw->ops->destroy(gw->impl);
    free(gw);
}

/* Requests ------------------------------------------------------------------------------------- */

bool gateway_token_is_valid(const char *s, size_t bytes)
{
    CF_ASSERT(s != NULL && bytes >= 2);
    size_t n = strnlen(s, bytes);
    if (n == 0 || n == bytes)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return false;
    }
    return true;
}

/* A three-letter ISO 4217 code of the currency table (operator assets are not money a
 * gateway moves). */
static bool currency_is_iso(const char *code, size_t bytes)
{
    if (strnlen(code, bytes) != 3)
        return false;
    const struct currency *c = currency_find(code, 3);
    return c != NULL && !c->is_asset;
}

/* The instrument is the normalized form of a valid card number or IBAN. */
static enum cf_err instrument_check(enum gateway_method method, const char *instrument)
{
    CF_ASSERT(instrument != NULL);
    size_t n = strnlen(instrument, GATEWAY_INSTRUMENT_BYTES_MAX);
    char normal[GATEWAY_INSTRUMENT_BYTES_MAX];
    _Static_assert(sizeof(normal) >= CARD_PAN_BYTES && sizeof(normal) >= CARD_IBAN_BYTES,
                   "normal holds either form");
    enum cf_err err;
    if (method == GATEWAY_METHOD_CARD) {
        err = card_pan_normalize(instrument, n, normal);
        if (err == CF_OK && (n == GATEWAY_INSTRUMENT_BYTES_MAX || strcmp(normal, instrument) != 0))
            err = CF_ERR_INVALID_CARD;
    } else {
        err = card_iban_normalize(instrument, n, normal);
        if (err == CF_OK && (n == GATEWAY_INSTRUMENT_BYTES_MAX || strcmp(normal, instrument) != 0))
            err = CF_ERR_INVALID_BANK_ACCOUNT;
    }
    hash_wipe(normal, sizeof(normal));
    CF_ASSERT(err == CF_OK || err == CF_ERR_INVALID_CARD || err == CF_ERR_INVALID_BANK_ACCOUNT);
    return err;
}

enum cf_err gateway_request_check(const struct gateway_request *req)
{
    CF_ASSERT(req != NULL);
    CF_ASSERT(req->op == GATEWAY_OP_CHARGE || req->op == GATEWAY_OP_PAYOUT);
    CF_ASSERT(req->method == GATEWAY_METHOD_CARD || req->method == GATEWAY_METHOD_BANK);
    if (!gateway_token_is_valid(req->op_id, sizeof(req->op_id)))
        return CF_ERR_INVALID_FIELD;
    if (req->amount_minor <= 0)
        return CF_ERR_INVALID_AMOUNT;
    if (!currency_is_iso(req->currency, sizeof(req->currency)))
        return CF_ERR_UNKNOWN_CURRENCY;
    return instrument_check(req->method, req->instrument);
}

/* What a connector may answer: a known outcome, NUL-terminated texts, a reference unless the
 * outcome is unknown. */
static bool result_is_valid(const struct gateway_result *r)
{
    if (r->outcome < GATEWAY_APPROVED || r->outcome > GATEWAY_TIMEOUT)
        return false;
    if (strnlen(r->decline_code, sizeof(r->decline_code)) == sizeof(r->decline_code))
        return false;
    if (r->outcome == GATEWAY_TIMEOUT)
        return strnlen(r->reference, sizeof(r->reference)) < sizeof(r->reference);
    return gateway_token_is_valid(r->reference, sizeof(r->reference));
}

enum cf_err gateway_submit(struct gateway *gw, const struct gateway_request *req,
                           struct gateway_result *out)
{
    CF_ASSERT(gw != NULL && gw->ops != NULL && req != NULL && out != NULL);
    enum cf_err err = gateway_request_check(req);
    if (err != CF_OK)
        return err;
    struct gateway_result r;
    memset(&r, 0, sizeof(r));
    err = gw->ops->submit(gw->impl, req, &r);
    if (err != CF_OK)
        return err;
    CF_ASSERT(result_is_valid(&r));
    *out = r;
    return CF_OK;
}

/* A challenge code: 1..15 printable ASCII characters without spaces. */
static bool code_is_valid(const char *code)
{
    return gateway_token_is_valid(code, GATEWAY_CHALLENGE_CODE_BYTES_MAX);
}

enum cf_err gateway_challenge_answer(struct gateway *gw, const char *reference, const char *code,
                                     struct gateway_result *out)
{
    CF_ASSERT(gw != NULL && gw->ops != NULL && reference != NULL && code != NULL && out != NULL);
    if (!gateway_token_is_valid(reference, GATEWAY_REF_BYTES_MAX) || !code_is_valid(code))
        return CF_ERR_INVALID_FIELD;
    struct gateway_result r;
    memset(&r, 0, sizeof(r));
    enum cf_err err = gw->ops->challenge_answer(gw->impl, reference, code, &r);
    if (err != CF_OK)
        return err;
    CF_ASSERT(result_is_valid(&r));
    CF_ASSERT(r.outcome == GATEWAY_APPROVED || r.outcome == GATEWAY_DECLINED ||
              r.outcome == GATEWAY_INSUFFICIENT_FUNDS || r.outcome == GATEWAY_TIMEOUT);
    *out = r;
    return CF_OK;
}

/* Outcomes ------------------------------------------------------------------------------------- */

static const char *const outcome_names[] = {
    [GATEWAY_APPROVED] = "approved",
    [GATEWAY_DECLINED] = "declined",
    [GATEWAY_INSUFFICIENT_FUNDS] = "insufficient_funds",
    [GATEWAY_CHALLENGE] = "challenge",
    [GATEWAY_PROCESSING] = "processing",
    [GATEWAY_TIMEOUT] = "timeout",
};

const char *gateway_outcome_name(enum gateway_outcome o)
{
    CF_ASSERT(o >= GATEWAY_APPROVED && o <= GATEWAY_TIMEOUT);
    return outcome_names[o];
}

enum cf_err gateway_outcome_parse(const char *name, enum gateway_outcome *out)
{
    CF_ASSERT(name != NULL && out != NULL);
    for (int o = GATEWAY_APPROVED; o < GATEWAY_TIMEOUT; o++) {
        if (strcmp(name, outcome_names[o]) == 0) {
            *out = (enum gateway_outcome)o;
            return CF_OK;
        }
    }
    return CF_ERR_INVALID_FIELD;
}

/* Forms: encoding ------------------------------------------------------------------------------ */

void gateway_form_init(struct gateway_form *f)
{
    CF_ASSERT(f != NULL);
    f->len = 0;
    f->fields_n = 0;
    f->overflow = false;
    f->text[0] = '\0';
}

void gateway_form_wipe(struct gateway_form *f)
{
    CF_ASSERT(f != NULL);
    hash_wipe(f, sizeof(*f));
}

static void form_byte(struct gateway_form *f, char c)
{
    if (f->len >= GATEWAY_BODY_BYTES_MAX) {
        f->overflow = true;
        return;
    }
    f->text[f->len++] = c;
    f->text[f->len] = '\0';
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static void form_escaped(struct gateway_form *f, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (is_unreserved(c)) {
            form_byte(f, (char)c);
        } else {
            form_byte(f, '%');
            form_byte(f, hex[c >> 4]);
            form_byte(f, hex[c & 15]);
        }
    }
}

void gateway_form_add(struct gateway_form *f, const char *key, const char *value)
{
    CF_ASSERT(f != NULL && key != NULL && key[0] != '\0' && value != NULL);
    CF_ASSERT(f->len <= GATEWAY_BODY_BYTES_MAX);
    if (f->fields_n == GATEWAY_FORM_FIELDS_MAX) {
        f->overflow = true;
        return;
    }
    if (f->fields_n > 0)
        form_byte(f, '&');
    form_escaped(f, key);
    form_byte(f, '=');
    form_escaped(f, value);
    f->fields_n++;
    CF_ASSERT(f->len <= GATEWAY_BODY_BYTES_MAX && f->text[f->len] == '\0');
}

void gateway_form_add_int(struct gateway_form *f, const char *key, int64_t value)
{
    char text[INT_TEXT_BYTES_MAX];
    int n = snprintf(text, sizeof(text), "%lld", (long long)value);
    CF_ASSERT(n > 0 && (size_t)n < sizeof(text));
    gateway_form_add(f, key, text);
}

/* Forms: decoding ------------------------------------------------------------------------------ */

/* One "key=value" of a body, still escaped. */
struct form_pair {
    const char *key, *value;
    size_t key_len, value_len;
};

/* The pair starting at *at (up to the next '&' or the end) into p, and *at past it; false when
 * it is empty, has no '=' or an empty key. */
static bool form_pair_next(const char *body, size_t body_len, size_t *at, struct form_pair *p)
{
    CF_ASSERT(*at < body_len);
    const char *start = body + *at;
    const char *amp = memchr(start, '&', body_len - *at);
    size_t n = amp != NULL ? (size_t)(amp - start) : body_len - *at;
    const char *eq = memchr(start, '=', n);
    *at += n + (amp != NULL ? 1 : 0);
    CF_ASSERT(*at <= body_len);
    if (eq == NULL || eq == start)
        return false;
    p->key = start;
    p->key_len = (size_t)(eq - start);
    p->value = eq + 1;
    p->value_len = n - p->key_len - 1;
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (out_bytes with its NUL; NULL only checks); false on a bad
 * escape, a decoded control byte, or more than out_bytes - 1 bytes. */
static bool form_unescape(const char *s, size_t n, char *out, size_t out_bytes)
{
    CF_ASSERT(s != NULL && out_bytes >= 1);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
            if (lo < 0)
                return false;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c < 0x20 || c == 0x7f || len + 1 >= out_bytes)
            return false;
        if (out != NULL)
            out[len] = (char)c;
        len++;
    }
    CF_ASSERT(len < out_bytes && len <= n);
    if (out != NULL)
        out[len] = '\0';
    return true;
}

/* The index in fields of p's key, or fields_n when the key is malformed or unknown. */
static size_t form_field_find(const struct form_pair *p, const struct gateway_form_field *fields,
                              size_t fields_n)
{
    char key[FORM_KEY_BYTES_MAX];
    if (!form_unescape(p->key, p->key_len, key, sizeof(key)))
        return fields_n;
    for (size_t i = 0; i < fields_n; i++) {
        if (strcmp(key, fields[i].key) == 0)
            return i;
    }
    return fields_n;
}

/* One pass over body: checks every rule when write is false, stores the values when true. */
static bool form_pass(const char *body, size_t body_len, struct gateway_form_field *fields,
                      size_t fields_n, bool write)
{
    CF_ASSERT(fields_n <= GATEWAY_FORM_FIELDS_MAX && body_len <= GATEWAY_BODY_BYTES_MAX);
    bool seen[GATEWAY_FORM_FIELDS_MAX] = {false};
    size_t at = 0, pairs_n = 0;
    while (at < body_len) {
        struct form_pair p;
        if (++pairs_n > GATEWAY_FORM_FIELDS_MAX || !form_pair_next(body, body_len, &at, &p))
            return false;
        size_t i = form_field_find(&p, fields, fields_n);
        if (i == fields_n || seen[i])
            return false;
        seen[i] = true;
        char *value = write ? fields[i].value : NULL;
        if (!form_unescape(p.value, p.value_len, value, fields[i].value_bytes))
            return false;
        if (at == body_len && body[body_len - 1] == '&')
            return false; /* a trailing '&' is an empty last pair */
    }
    CF_ASSERT(at == body_len && pairs_n <= GATEWAY_FORM_FIELDS_MAX);
    for (size_t i = 0; i < fields_n; i++) {
        if (fields[i].required && !seen[i])
            return false;
        if (write)
            fields[i].seen = seen[i];
    }
    return true;
}

enum cf_err gateway_form_decode(const char *body, size_t body_len,
                                struct gateway_form_field *fields, size_t fields_n)
{
    CF_ASSERT(body != NULL && fields != NULL);
    CF_ASSERT(fields_n >= 1 && fields_n <= GATEWAY_FORM_FIELDS_MAX);
    for (size_t i = 0; i < fields_n; i++)
        CF_ASSERT(fields[i].key != NULL && fields[i].value != NULL && fields[i].value_bytes > 0);
    if (body_len > GATEWAY_BODY_BYTES_MAX || memchr(body, '\0', body_len) != NULL)
        return CF_ERR_INVALID_FIELD;
    if (!form_pass(body, body_len, fields, fields_n, false))
        return CF_ERR_INVALID_FIELD;
    bool written = form_pass(body, body_len, fields, fields_n, true); /* the same, writing */
    CF_ASSERT(written);
    return CF_OK;
}

/* Signatures ----------------------------------------------------------------------------------- */

static bool secret_is_valid(const uint8_t *secret, size_t secret_len)
{
    return secret != NULL && secret_len >= GATEWAY_SECRET_BYTES_MIN &&
           secret_len <= GATEWAY_SECRET_BYTES_MAX;
}

/* HMAC-SHA-256(secret, t_text "." body) into mac. */
static void signature_mac(const uint8_t *secret, size_t secret_len, const char *t_text,
                          size_t t_len, const char *body, size_t body_len, uint8_t mac[MAC_BYTES])
{
    crypto_auth_hmacsha256_state st;
    CF_ASSERT(crypto_auth_hmacsha256_init(&st, secret, secret_len) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_update(&st, (const uint8_t *)t_text, t_len) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_update(&st, (const uint8_t *)body, body_len) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_final(&st, mac) == 0);
    hash_wipe(&st, sizeof(st));
}

enum cf_err gateway_callback_sign(const uint8_t *secret, size_t secret_len, const char *body,
                                  size_t body_len, int64_t t_s, char *header_out,
                                  size_t header_bytes)
{
    CF_ASSERT(body != NULL && header_out != NULL && header_bytes >= GATEWAY_SIGNATURE_BYTES_MAX);
    CF_ASSERT(t_s >= 0);
    if (!secret_is_valid(secret, secret_len))
        return CF_ERR_CONFIG;
    if (body_len > GATEWAY_BODY_BYTES_MAX)
        return CF_ERR_PAYLOAD_TOO_LARGE;
    char t_text[INT_TEXT_BYTES_MAX];
    int t_len = snprintf(t_text, sizeof(t_text), "%lld", (long long)t_s);
    CF_ASSERT(t_len > 0 && t_len <= SIGNATURE_T_DIGITS_MAX);
    uint8_t mac[MAC_BYTES];
    char mac_hex[2 * MAC_BYTES + 1];
    signature_mac(secret, secret_len, t_text, (size_t)t_len, body, body_len, mac);
    hash_hex(mac, sizeof(mac), mac_hex);
    int w = snprintf(header_out, header_bytes, "t=%s,v1=%s", t_text, mac_hex);
    CF_ASSERT(w > 0 && (size_t)w < GATEWAY_SIGNATURE_BYTES_MAX);
    hash_wipe(mac, sizeof(mac));
    hash_wipe(mac_hex, sizeof(mac_hex));
    return CF_OK;
}

/* A parsed Coffer-Signature value. */
struct signature {
    char t_text[SIGNATURE_T_DIGITS_MAX + 1];
    size_t t_len;
    int64_t t_s;
    uint8_t mac[MAC_BYTES];
};

/* Canonical decimal digits s[0..n) (no sign, no leading zero) within [0, max] into *out. */
static bool decimal_parse(const char *s, size_t n, int64_t max, int64_t *out)
{
    CF_ASSERT(s != NULL && out != NULL && max >= 0);
    if (n == 0 || (n > 1 && s[0] == '0'))
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || __builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, s[i] - '0', &v))
            return false;
    }
    if (v > max)
        return false;
    CF_ASSERT(v >= 0);
    *out = v;
    return true;
}

/* "t=<digits>,v1=<64 lowercase hex>" and nothing else. */
static bool signature_parse(const char *header, struct signature *sig)
{
    CF_ASSERT(header != NULL && sig != NULL);
    size_t n = strnlen(header, GATEWAY_SIGNATURE_BYTES_MAX);
    if (n == GATEWAY_SIGNATURE_BYTES_MAX || strncmp(header, "t=", 2) != 0)
        return false;
    const char *t = header + 2;
    const char *comma = memchr(t, ',', n - 2);
    if (comma == NULL || (size_t)(comma - t) > SIGNATURE_T_DIGITS_MAX)
        return false;
    sig->t_len = (size_t)(comma - t);
    CF_ASSERT(sig->t_len < sizeof(sig->t_text));
    if (!decimal_parse(t, sig->t_len, INT64_MAX, &sig->t_s))
        return false;
    memcpy(sig->t_text, t, sig->t_len);
    sig->t_text[sig->t_len] = '\0';
    const char *hex = comma + 4;
    if (strncmp(comma, ",v1=", 4) != 0 || strlen(hex) != 2 * MAC_BYTES ||
        strspn(hex, "0123456789abcdef") != 2 * MAC_BYTES)
        return false;
    size_t mac_len = 0;
    return sodium_hex2bin(sig->mac, sizeof(sig->mac), hex, 2 * MAC_BYTES, NULL, &mac_len, NULL) ==
               0 &&
           mac_len == MAC_BYTES;
}

/* The signature is well formed, made with secret over body, and made within the tolerance. */
static bool signature_is_good(const uint8_t *secret, size_t secret_len, const char *body,
                              size_t body_len, const char *header, int64_t now_s)
{
    CF_ASSERT(secret != NULL && body != NULL && now_s >= 0);
    struct signature sig;
    if (header == NULL || !signature_parse(header, &sig))
        return false;
    CF_ASSERT(sig.t_s >= 0 && sig.t_len >= 1);
    uint8_t mac[MAC_BYTES];
    signature_mac(secret, secret_len, sig.t_text, sig.t_len, body, body_len, mac);
    bool good = sodium_memcmp(mac, sig.mac, MAC_BYTES) == 0;
    hash_wipe(mac, sizeof(mac));
    /* both are >= 0, so the difference cannot overflow */
    int64_t age_s = now_s - sig.t_s;
    return good && age_s <= GATEWAY_CALLBACK_TOLERANCE_S && age_s >= -GATEWAY_CALLBACK_TOLERANCE_S;
}

/* The text fields of a callback before their checks. */
struct event_text {
    char outcome[OUTCOME_TEXT_BYTES_MAX];
    char amount[INT_TEXT_BYTES_MAX];
    char created_at[INT_TEXT_BYTES_MAX];
};

/* The field checks of a decoded callback; fills e's outcome and numbers. */
static bool event_fields_check(const struct event_text *t, struct gateway_event *e)
{
    CF_ASSERT(t != NULL && e != NULL);
    if (!gateway_token_is_valid(e->event_id, sizeof(e->event_id)) ||
        !gateway_token_is_valid(e->op_id, sizeof(e->op_id)) ||
        !gateway_token_is_valid(e->reference, sizeof(e->reference)))
        return false;
    if (gateway_outcome_parse(t->outcome, &e->outcome) != CF_OK ||
        (e->outcome != GATEWAY_APPROVED && e->outcome != GATEWAY_DECLINED &&
         e->outcome != GATEWAY_INSUFFICIENT_FUNDS))
        return false;
    if (!decimal_parse(t->amount, strlen(t->amount), INT64_MAX, &e->amount_minor) ||
        e->amount_minor == 0)
        return false;
    if (!decimal_parse(t->created_at, strlen(t->created_at), INT64_MAX, &e->created_at_s))
        return false;
    CF_ASSERT(e->amount_minor > 0 && e->created_at_s >= 0);
    return currency_is_iso(e->currency, sizeof(e->currency));
}

static enum cf_err event_decode(const char *body, size_t body_len, struct gateway_event *out)
{
    CF_ASSERT(body != NULL && out != NULL);
    struct gateway_event e;
    struct event_text t;
    memset(&e, 0, sizeof(e));
    memset(&t, 0, sizeof(t));
    struct gateway_form_field f[] = {
        {"event_id", e.event_id, sizeof(e.event_id), true, false},
        {"op_id", e.op_id, sizeof(e.op_id), true, false},
        {"reference", e.reference, sizeof(e.reference), true, false},
        {"outcome", t.outcome, sizeof(t.outcome), true, false},
        {"amount_minor", t.amount, sizeof(t.amount), true, false},
        {"currency", e.currency, sizeof(e.currency), true, false},
        {"created_at", t.created_at, sizeof(t.created_at), true, false},
    };
    enum cf_err err = gateway_form_decode(body, body_len, f, sizeof(f) / sizeof(f[0]));
    if (err != CF_OK)
        return err;
    if (!event_fields_check(&t, &e))
        return CF_ERR_INVALID_FIELD;
    CF_ASSERT(e.amount_minor > 0 && e.created_at_s >= 0);
    *out = e;
    return CF_OK;
}

enum cf_err gateway_callback_verify(const uint8_t *secret, size_t secret_len, const char *body,
                                    size_t body_len, const char *signature_header, int64_t now_s,
                                    struct gateway_event *out)
{
    CF_ASSERT(body != NULL && out != NULL && now_s >= 0);
    if (!secret_is_valid(secret, secret_len))
        return CF_ERR_CONFIG;
    if (!signature_is_good(secret, secret_len, body, body_len, signature_header, now_s))
        return CF_ERR_BAD_SIGNATURE;
    return event_decode(body, body_len, out);
}
