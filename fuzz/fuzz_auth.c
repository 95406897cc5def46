/*
 * fuzz_auth.c - libFuzzer target for the decoding of untrusted authentication input, without a
 * database: logins (identity_login_normalize), passwords (password_normalize, and
 * password_check on short texts only, cracklib being slow), base32 TOTP secrets
 * (base32_decode), TOTP codes (totp_check), master key files (vault_load) and sealed values
 * (vault_open_with under a fixed key, vault_open under a fixed vault).
 *
 * Input: the first byte picks the decoder ('l', 'p', 'b', 't', 'k' or 's'; any other byte picks
 * one by its value mod 6); the rest is that decoder's input, described at each function below.
 * Whatever the bytes, every decoder must answer without reading or writing out of bounds, and
 * what it accepts must keep the invariants its header promises; each check below says which.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/hash.h"
#include "crypto/password.h"
#include "crypto/totp.h"
#include "crypto/vault.h"
#include "identity/identity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* password_check runs cracklib, which takes a dictionary look-up per call: only texts this
 * short are checked, so the target keeps its speed. */
#define FUZZ_CHECK_BYTES_MAX 64
/* The aad given to the sealed-value decoders is at most this long (a place label). */
#define FUZZ_AAD_BYTES_MAX 64
/* Sealed plaintexts are opened into at most this much. */
#define FUZZ_OPEN_BYTES_MAX 4096

/* The fixed data key of the 's' decoder: bytes 0, 1, ..., 31; seeds are sealed under it. */
static uint8_t fixed_key[VAULT_KEY_BYTES];
/* A vault whose key 1 is fixed_key, for vault_open. */
static struct vault *fixed_vault;

/* A heap copy of n bytes with a NUL after them, so a read past the input is caught by ASan. */
static char *text_copy(const uint8_t *p, size_t n)
{
    char *t = malloc(n + 1);
    CF_ASSERT(t != NULL);
    if (n > 0)
        memcpy(t, p, n);
    t[n] = '\0';
    return t;
}

/* A heap buffer of exactly n bytes (at least one, so it is never NULL), filled with fill. */
static uint8_t *buffer_new(size_t n, uint8_t fill)
{
    uint8_t *b = malloc(n > 0 ? n : 1);
    CF_ASSERT(b != NULL);
    memset(b, fill, n > 0 ? n : 1);
    return b;
}

/* Logins --------------------------------------------------------------------------------------- */

/* A normalized login: an email of printable lower-case ASCII with one '@' (something each side
 * and a '.' after it), or '+' and 8 to 15 digits, the first not 0. */
static void login_check_shape(const char *out, bool is_email)
{
    size_t len = strlen(out);
    CF_ASSERT(len > 0 && len <= IDENTITY_LOGIN_BYTES_MAX);
    if (!is_email) {
        CF_ASSERT(out[0] == '+' && len >= 9 && len <= 16 && out[1] != '0');
        for (size_t i = 1; i < len; i++)
            CF_ASSERT(out[i] >= '0' && out[i] <= '9');
        return;
    }
    const char *at = strchr(out, '@');
    CF_ASSERT(at != NULL && at > out && strchr(at + 1, '@') == NULL);
    CF_ASSERT(at[1] != '\0' && strchr(at, '.') != NULL);
    for (size_t i = 0; i < len; i++)
        CF_ASSERT(out[i] > ' ' && out[i] < 0x7f && !(out[i] >= 'A' && out[i] <= 'Z'));
}

/* 'l': [out size byte] text. Normalizes into a buffer of the full size and into one of a size
 * picked by the input; what is accepted has the shape above, normalizes to itself, and fits. */
static void fuzz_login(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    size_t small_bytes = 1 + data[0] % (IDENTITY_LOGIN_BYTES_MAX + 1);
    char *text = text_copy(data + 1, size - 1);
    char out[IDENTITY_LOGIN_BYTES_MAX + 1];
    bool is_email = false;
    enum cf_err err = identity_login_normalize(text, out, sizeof(out), &is_email);
    CF_ASSERT(err == CF_OK || err == CF_ERR_INVALID_FIELD);
    if (err == CF_OK) {
        login_check_shape(out, is_email);
        CF_ASSERT(is_email == (strchr(text, '@') != NULL));
        char again[IDENTITY_LOGIN_BYTES_MAX + 1];
        bool again_email = !is_email;
        CF_ASSERT(identity_login_normalize(out, again, sizeof(again), &again_email) == CF_OK);
        CF_ASSERT(again_email == is_email && strcmp(again, out) == 0);
    }
    char *small = (char *)buffer_new(small_bytes, 0x5a);
    bool small_email = false;
    enum cf_err small_err = identity_login_normalize(text, small, small_bytes, &small_email);
    CF_ASSERT(small_err == CF_OK || small_err == CF_ERR_INVALID_FIELD);
    if (small_err == CF_OK) {
        /* a smaller buffer never accepts what the full one refused, nor changes the answer */
        CF_ASSERT(err == CF_OK && small_email == is_email && strcmp(small, out) == 0);
        CF_ASSERT(strlen(small) < small_bytes);
    }
    free(small);
    free(text);
}

/* Passwords ------------------------------------------------------------------------------------ */

static bool verdict_known(enum password_verdict v)
{
    return v == PASSWORD_OK || v == PASSWORD_INVALID_UTF8 || v == PASSWORD_TOO_SHORT ||
           v == PASSWORD_TOO_LONG || v == PASSWORD_CONTROL_CHARS || v == PASSWORD_WEAK ||
           v == PASSWORD_CONTAINS_LOGIN;
}

/* 'p': [out size byte] [login byte] password bytes (NULs included). Normalizes into a buffer
 * of PASSWORD_BYTES_MAX and into a smaller one; an accepted text is NUL-terminated, of the
 * length said, and NFKC is a fixed point. Short accepted texts go through the whole policy,
 * which may then refuse only for policy reasons, never for the text rules already passed. */
static void fuzz_password(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    size_t small_bytes = 1 + data[0] % 64;
    const char *login = data[1] % 2 == 0 ? NULL : "alice@example.com";
    size_t len = size - 2;
    char *pw = text_copy(data + 2, len);
    char *out = (char *)buffer_new(PASSWORD_BYTES_MAX, 0x5a);
    size_t out_len = 12345;
    enum password_verdict v = password_normalize(pw, len, out, PASSWORD_BYTES_MAX, &out_len);
    CF_ASSERT(verdict_known(v) && v != PASSWORD_WEAK && v != PASSWORD_CONTAINS_LOGIN);
    if (v != PASSWORD_OK) {
        CF_ASSERT(out_len == 12345); /* untouched */
    } else {
        CF_ASSERT(out_len < PASSWORD_BYTES_MAX && out[out_len] == '\0');
        CF_ASSERT(strlen(out) == out_len);
        char *again = (char *)buffer_new(PASSWORD_BYTES_MAX, 0);
        size_t again_len = 0;
        CF_ASSERT(password_normalize(out, out_len, again, PASSWORD_BYTES_MAX, &again_len) ==
                  PASSWORD_OK);
        CF_ASSERT(again_len == out_len && memcmp(again, out, out_len) == 0);
        free(again);
        if (out_len <= FUZZ_CHECK_BYTES_MAX) {
            enum password_verdict c = password_check(out, login);
            CF_ASSERT(c == PASSWORD_OK || c == PASSWORD_WEAK || c == PASSWORD_CONTAINS_LOGIN);
        }
    }
    char *small = (char *)buffer_new(small_bytes, 0x5a);
    size_t small_len = 0;
    enum password_verdict sv = password_normalize(pw, len, small, small_bytes, &small_len);
    if (sv == PASSWORD_OK)
        CF_ASSERT(v == PASSWORD_OK && small_len == out_len && memcmp(small, out, out_len) == 0);
    else
        CF_ASSERT(sv == v || (v == PASSWORD_OK && sv == PASSWORD_TOO_LONG));
    free(small);
    free(out);
    free(pw);
}

/* base32 --------------------------------------------------------------------------------------- */

/* 'b': [out size byte] text. A decoded secret fits the buffer, and encoding it again gives the
 * text back without its spaces and padding, in upper case (only canonical text is accepted). */
static void fuzz_base32(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    size_t out_bytes = data[0] % (TOTP_SECRET_B32_BYTES_MAX + 1);
    char *text = text_copy(data + 1, size - 1);
    uint8_t *out = buffer_new(out_bytes, 0x5a);
    size_t len = 12345;
    enum cf_err err = base32_decode(text, out_bytes > 0 ? out : NULL, out_bytes, &len);
    CF_ASSERT(err == CF_OK || err == CF_ERR_INVALID_FIELD);
    if (err != CF_OK) {
        CF_ASSERT(len == 12345);
    } else {
        CF_ASSERT(len <= out_bytes);
        size_t text_len = strlen(text);
        char *expect = text_copy((const uint8_t *)text, text_len);
        size_t k = 0;
        for (size_t i = 0; i < text_len; i++) {
            char c = text[i];
            if (c == ' ' || c == '=')
                continue;
            expect[k++] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
        }
        expect[k] = '\0';
        size_t enc_bytes = 8 * ((len + 4) / 5) + 1;
        char *enc = (char *)buffer_new(enc_bytes, 0);
        size_t enc_len = base32_encode(out, len, enc, enc_bytes);
        CF_ASSERT(enc_len == k && strcmp(enc, expect) == 0);
        free(enc);
        free(expect);
    }
    free(out);
    free(text);
}

/* TOTP ----------------------------------------------------------------------------------------- */

/* 't': 8 bytes of time (big endian, top bit dropped) then the code text. totp_check must agree
 * with the codes computed here for the steps around that time: a match only for exactly six
 * digits equal to one of them, reporting the latest step that gives it. */
static void fuzz_totp(const uint8_t *data, size_t size)
{
    if (size < 8)
        return;
    uint64_t t = 0;
    for (size_t i = 0; i < 8; i++)
        t = t << 8 | data[i];
    int64_t unix_s = (int64_t)(t & (UINT64_MAX >> 1));
    char *code = text_copy(data + 8, size - 8);
    uint64_t step = 777;
    bool ok = totp_check(fixed_key, TOTP_SECRET_BYTES, unix_s, code, &step);
    uint64_t now = totp_step(unix_s);
    bool expect = false;
    uint64_t expect_step = 777;
    bool digits = strlen(code) == TOTP_DIGITS && strspn(code, "0123456789") == TOTP_DIGITS;
    uint64_t first = now >= TOTP_DRIFT_STEPS ? now - TOTP_DRIFT_STEPS : 0;
    uint32_t given = digits ? (uint32_t)strtoul(code, NULL, 10) : 0;
    for (uint64_t s = first; digits && s <= now + TOTP_DRIFT_STEPS; s++) {
        if (hotp(fixed_key, TOTP_SECRET_BYTES, s, TOTP_DIGITS) == given) {
            expect = true;
            expect_step = s;
        }
    }
    CF_ASSERT(ok == expect && step == expect_step);
    free(code);
}

/* Key files ------------------------------------------------------------------------------------ */

/* 'k': key file text. A loaded vault's active key is the highest id; a rotated file written
 * from it loads again with the next id active, and a value sealed by the first opens with it
 * (so every key was read exactly). A refused text hands nothing out. */
static void fuzz_keyfile(const uint8_t *data, size_t size)
{
    char *text = text_copy(data, size);
    struct vault *v = NULL;
    enum cf_err err = vault_load(text, size, &v);
    CF_ASSERT(err == CF_OK || err == CF_ERR_CONFIG);
    if (err != CF_OK) {
        CF_ASSERT(v == NULL);
        free(text);
        return;
    }
    uint32_t active = vault_active_id(v);
    CF_ASSERT(active >= 1 && vault_has_key(v, active) && !vault_has_key(v, 0));
    char *next_text = malloc(VAULT_KEYFILE_BYTES_MAX);
    CF_ASSERT(next_text != NULL);
    if (vault_keyfile_new(v, next_text, VAULT_KEYFILE_BYTES_MAX) == CF_OK) {
        struct vault *next = NULL;
        CF_ASSERT(vault_load(next_text, strlen(next_text), &next) == CF_OK);
        CF_ASSERT(vault_active_id(next) == active + 1 && vault_has_key(next, active));
        static const char pt[] = "personal data";
        uint8_t sealed[sizeof(pt) + VAULT_OVERHEAD_BYTES], opened[sizeof(pt)];
        size_t sealed_len = 0, opened_len = 0;
        CF_ASSERT(vault_seal(v, pt, sizeof(pt), "k", 1, sealed, sizeof(sealed), &sealed_len) ==
                  CF_OK);
        CF_ASSERT(vault_sealed_key_id(sealed, sealed_len) == active);
        CF_ASSERT(vault_open(next, sealed, sealed_len, "k", 1, opened, sizeof(opened),
                             &opened_len) == CF_OK);
        CF_ASSERT(opened_len == sizeof(pt) && memcmp(opened, pt, sizeof(pt)) == 0);
        vault_free(next);
    }
    hash_wipe(next_text, VAULT_KEYFILE_BYTES_MAX);
    free(next_text);
    vault_free(v);
    free(text);
}

/* Sealed values -------------------------------------------------------------------------------- */

/* 's': [aad length byte] [out size byte] aad, then the sealed value. Opened under the fixed key
 * (and under the fixed vault, whose key 1 it is): a value opens only when whole, and then to
 * exactly its length minus the overhead; both opens agree when the value names key 1. */
static void fuzz_sealed(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    size_t aad_len = data[0] % (FUZZ_AAD_BYTES_MAX + 1);
    size_t out_bytes = (size_t)data[1] * (FUZZ_OPEN_BYTES_MAX / 255);
    data += 2;
    size -= 2;
    if (aad_len > size)
        aad_len = size;
    uint8_t *aad = buffer_new(aad_len, 0);
    if (aad_len > 0)
        memcpy(aad, data, aad_len);
    size_t n = size - aad_len;
    uint8_t *ct = buffer_new(n, 0);
    if (n > 0)
        memcpy(ct, data + aad_len, n);
    uint8_t *out = buffer_new(out_bytes, 0x5a);
    size_t out_len = 12345;
    enum cf_err err = vault_open_with(fixed_key, n > 0 ? ct : NULL, n, aad_len > 0 ? aad : NULL,
                                      aad_len, out_bytes > 0 ? out : NULL, out_bytes, &out_len);
    CF_ASSERT(err == CF_OK || err == CF_ERR_CORRUPT);
    uint32_t key_id = vault_sealed_key_id(n > 0 ? ct : NULL, n);
    if (err == CF_OK) {
        CF_ASSERT(n >= VAULT_OVERHEAD_BYTES && ct[0] == 0x01);
        CF_ASSERT(out_len + VAULT_OVERHEAD_BYTES == n && out_len <= out_bytes);
    } else {
        CF_ASSERT(out_len == 12345);
    }
    CF_ASSERT(n >= VAULT_OVERHEAD_BYTES || key_id == 0);
    uint8_t *again = buffer_new(out_bytes, 0);
    size_t again_len = 54321;
    enum cf_err again_err =
        vault_open(fixed_vault, n > 0 ? ct : NULL, n, aad_len > 0 ? aad : NULL, aad_len,
                   out_bytes > 0 ? again : NULL, out_bytes, &again_len);
    CF_ASSERT(again_err == CF_OK || again_err == CF_ERR_CORRUPT);
    if (key_id == 1)
        CF_ASSERT(again_err == err);
    else
        CF_ASSERT(again_err == CF_ERR_CORRUPT);
    if (err == CF_OK && again_err == CF_OK)
        CF_ASSERT(again_len == out_len && memcmp(again, out, out_len) == 0);
    free(again);
    free(out);
    free(ct);
    free(aad);
}

/* Entry ---------------------------------------------------------------------------------------- */

static void fuzz_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    CF_ASSERT(hash_init() == 0);
    for (size_t i = 0; i < VAULT_KEY_BYTES; i++)
        fixed_key[i] = (uint8_t)i;
    /* base64 of the bytes 0..31 */
    static const char text[] = "1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
    CF_ASSERT(vault_load(text, strlen(text), &fixed_vault) == CF_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char modes[] = "lpbtks";
    fuzz_init();
    if (size == 0)
        return 0;
    const char *m = memchr(modes, data[0], sizeof(modes) - 1);
    size_t mode = m != NULL ? (size_t)(m - modes) : data[0] % (sizeof(modes) - 1);
    /* A private copy, so a read past size is caught by ASan rather than hitting data[]. */
    uint8_t *in = buffer_new(size - 1, 0);
    if (size > 1)
        memcpy(in, data + 1, size - 1);
    switch (mode) {
    case 0:
        fuzz_login(in, size - 1);
        break;
    case 1:
        fuzz_password(in, size - 1);
        break;
    case 2:
        fuzz_base32(in, size - 1);
        break;
    case 3:
        fuzz_totp(in, size - 1);
        break;
    case 4:
        fuzz_keyfile(in, size - 1);
        break;
    default:
        fuzz_sealed(in, size - 1);
        break;
    }
    free(in);
    return 0;
}
