/* password.c - password policy (libunistring, cracklib) and argon2id storage (libsodium); see
 * password.h. */
#include "crypto/password.h"

#include <crack.h> /* needs size_t: <stddef.h> came with password.h */
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include "core/hash.h"

_Static_assert(PASSWORD_HASH_BYTES == crypto_pwhash_STRBYTES,
               "PASSWORD_HASH_BYTES must be libsodium's crypto_pwhash_STRBYTES");
_Static_assert(PASSWORD_CHARS_MAX * 4 < PASSWORD_BYTES_MAX,
               "an out buffer of PASSWORD_BYTES_MAX holds any accepted password");

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* The prefix libsodium writes for argon2id hashes. */
#define ARGON2ID_PREFIX "$argon2id$"
/* Room for case folding without a heap allocation in the common case (folding may expand:
 * U+00DF becomes "ss"); libunistring allocates when it needs more. */
#define FOLD_BYTES (4 * PASSWORD_BYTES_MAX)

/* libsodium ----------------------------------------------------------------------------------- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_start(void) { CF_ASSERT(sodium_init() >= 0); }

static void sodium_ready(void) { CF_ASSERT(pthread_once(&sodium_once, sodium_start) == 0); }

/* Verdicts ------------------------------------------------------------------------------------ */

const char *password_verdict_text(enum password_verdict v)
{
    switch (v) {
    case PASSWORD_OK:
        return "password is acceptable";
    case PASSWORD_INVALID_UTF8:
        return "password must be valid UTF-8 text";
    case PASSWORD_TOO_SHORT:
        return "password must have at least " STRINGIFY(PASSWORD_CHARS_MIN) " characters";
    case PASSWORD_TOO_LONG:
        return "password must have at most " STRINGIFY(PASSWORD_CHARS_MAX) " characters";
    case PASSWORD_CONTROL_CHARS:
        return "password must not contain control characters";
    case PASSWORD_WEAK:
        return "password is too easy to guess";
    case PASSWORD_CONTAINS_LOGIN:
        return "password must not contain the login";
    }
    return "password is not acceptable";
}

/* Text rules (UTF-8, control characters, length) ---------------------------------------------- */

/* C0 controls, DEL and C1 controls. */
static bool is_control(ucs4_t c) { return c < 0x20 || (c >= 0x7f && c <= 0x9f); }

/* Checks valid UTF-8 s (n bytes) for control characters and its length in code points. */
static enum password_verdict text_verdict(const uint8_t *s, size_t n)
{
    CF_ASSERT(s != NULL || n == 0);
    size_t chars = 0;
    size_t i = 0;
    while (i < n) {
        ucs4_t c = 0;
        int step = u8_mbtouc(&c, s + i, n - i);
        CF_ASSERT(step > 0 && (size_t)step <= n - i); /* callers checked the UTF-8 */
        if (is_control(c))
            return PASSWORD_CONTROL_CHARS;
        i += (size_t)step;
        chars++;
    }
    CF_ASSERT(i == n);
    if (chars < PASSWORD_CHARS_MIN)
        return PASSWORD_TOO_SHORT;
    if (chars > PASSWORD_CHARS_MAX)
        return PASSWORD_TOO_LONG;
    return PASSWORD_OK;
}

/* Frees what libunistring returned unless it is the caller's own buffer, wiping it first. */
static void unistring_release(uint8_t *result, const uint8_t *own, size_t n)
{
    if (result == NULL || result == own)
        return;
    hash_wipe(result, n);
    free(result);
}

/* A NULL result of u8_normalize on checked UTF-8 means the process is out of memory; the
 * verdict has no way to say so, and nothing sensible can go on without memory. */
enum password_verdict password_normalize(const char *pw, size_t len, char *out, size_t out_bytes,
                                         size_t *out_len)
{
    CF_ASSERT(pw != NULL || len == 0);
    CF_ASSERT(out != NULL && out_bytes > 0 && out_len != NULL);
    if (len > PASSWORD_BYTES_MAX)
        return PASSWORD_TOO_LONG;
    if (u8_check((const uint8_t *)pw, len) != NULL)
        return PASSWORD_INVALID_UTF8;
    if (len == 0)
        return PASSWORD_TOO_SHORT;
    uint8_t scratch[PASSWORD_BYTES_MAX];
    size_t n = sizeof(scratch);
    uint8_t *norm = u8_normalize(UNINORM_NFKC, (const uint8_t *)pw, len, scratch, &n);
    CF_ASSERT(norm != NULL);
    enum password_verdict v = text_verdict(norm, n);
    if (v == PASSWORD_OK && n >= out_bytes)
        v = PASSWORD_TOO_LONG;
    if (v == PASSWORD_OK) {
        memcpy(out, norm, n);
        out[n] = '\0';
        *out_len = n;
    }
    unistring_release(norm, scratch, n);
    hash_wipe(scratch, sizeof(scratch));
    CF_ASSERT(v != PASSWORD_OK || (*out_len < out_bytes && out[*out_len] == '\0'));
    return v;
}

/* Policy rules ------------------------------------------------------------------------------- */

/* true when s (n bytes of valid UTF-8) is one code point repeated. */
static bool is_one_char_repeated(const uint8_t *s, size_t n)
{
    int first = u8_mblen(s, n);
    CF_ASSERT(first > 0);
    size_t w = (size_t)first;
    for (size_t i = w; i < n; i += w) {
        if (n - i < w || memcmp(s + i, s, w) != 0)
            return false;
    }
    return true;
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static bool ascii_contains_nocase(const char *hay, size_t hay_n, const char *needle,
                                  size_t needle_n)
{
    CF_ASSERT(needle_n > 0);
    for (size_t i = 0; i + needle_n <= hay_n; i++) {
        size_t j = 0;
        while (j < needle_n && ascii_lower(hay[i + j]) == ascii_lower(needle[j]))
            j++;
        if (j == needle_n)
            return true;
    }
    return false;
}

/* Case folding (Unicode full folding, then NFKC) of both texts, then a byte search. A login
 * that is not valid UTF-8 (it comes from stored data) falls back to ASCII case folding. */
static bool contains_login(const char *pw, size_t pw_n, const char *login)
{
    size_t login_n = strnlen(login, PASSWORD_BYTES_MAX + 1);
    if (login_n == 0 || login_n > PASSWORD_BYTES_MAX)
        return false;
    uint8_t pw_buf[FOLD_BYTES], login_buf[FOLD_BYTES];
    size_t pw_fold_n = sizeof(pw_buf), login_fold_n = sizeof(login_buf);
    uint8_t *pw_fold =
        u8_casefold((const uint8_t *)pw, pw_n, NULL, UNINORM_NFKC, pw_buf, &pw_fold_n);
    uint8_t *login_fold = u8_check((const uint8_t *)login, login_n) != NULL
                              ? NULL
                              : u8_casefold((const uint8_t *)login, login_n, NULL, UNINORM_NFKC,
                                            login_buf, &login_fold_n);
    bool found;
    if (pw_fold != NULL && login_fold != NULL && login_fold_n > 0)
        found = memmem(pw_fold, pw_fold_n, login_fold, login_fold_n) != NULL;
    else
        found = ascii_contains_nocase(pw, pw_n, login, login_n);
    unistring_release(pw_fold, pw_buf, pw_fold_n);
    unistring_release(login_fold, login_buf, login_fold_n);
    hash_wipe(pw_buf, sizeof(pw_buf));
    return found;
}

/* cracklib keeps static state between the calls of one check: one check at a time. A missing
 * dictionary makes FascistCheck answer an error message, so every password is refused: the
 * policy fails closed. */
static pthread_mutex_t cracklib_lock = PTHREAD_MUTEX_INITIALIZER;

static bool cracklib_refuses(const char *pw)
{
    CF_ASSERT(pthread_mutex_lock(&cracklib_lock) == 0);
    const char *why = FascistCheck(pw, GetDefaultCracklibDict());
    CF_ASSERT(pthread_mutex_unlock(&cracklib_lock) == 0);
    return why != NULL;
}

/* ASCII digits, punctuation and space: what people pad a word with ("password12345!"). */
static bool is_padding(unsigned char c)
{
    return (c >= ' ' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

/* cracklib's rules see through at most three added characters ("password123" is refused,
 * "password1234" is not), so the core of the text, its padding stripped from both ends, is
 * looked up too. A core shorter than cracklib's own minimum (6) is not a word worth looking
 * up: cracklib would call it too short, which says nothing of the whole. */
#define CORE_BYTES_MIN 6

static bool core_refused(const char *pw, size_t n)
{
    size_t start = 0, end = n;
    while (start < end && is_padding((unsigned char)pw[start]))
        start++;
    while (end > start && is_padding((unsigned char)pw[end - 1]))
        end--;
    CF_ASSERT(start <= end && end <= n);
    if ((start == 0 && end == n) || end - start < CORE_BYTES_MIN)
        return false;
    char core[PASSWORD_BYTES_MAX + 1];
    memcpy(core, pw + start, end - start);
    core[end - start] = '\0';
    bool refused = cracklib_refuses(core);
    hash_wipe(core, sizeof(core));
    return refused;
}

enum password_verdict password_check(const char *normalized, const char *login)
{
    CF_ASSERT(normalized != NULL);
    size_t n = strnlen(normalized, PASSWORD_BYTES_MAX + 1);
    if (n > PASSWORD_BYTES_MAX)
        return PASSWORD_TOO_LONG;
    const uint8_t *s = (const uint8_t *)normalized;
    if (u8_check(s, n) != NULL)
        return PASSWORD_INVALID_UTF8;
    enum password_verdict v = text_verdict(s, n);
    if (v != PASSWORD_OK)
        return v;
    CF_ASSERT(n > 0);
    if (is_one_char_repeated(s, n))
        return PASSWORD_WEAK;
    if (login != NULL && contains_login(normalized, n, login))
        return PASSWORD_CONTAINS_LOGIN;
    if (cracklib_refuses(normalized) || core_refused(normalized, n))
        return PASSWORD_WEAK;
    return PASSWORD_OK;
}

/* Storage ----------------------------------------------------------------------------------- */

/* The length of a stored hash string, or PASSWORD_HASH_BYTES when it is not terminated in
 * time (then it is not one of ours). */
static size_t stored_len(const char *stored) { return strnlen(stored, PASSWORD_HASH_BYTES); }

enum cf_err password_hash(const char *normalized, char out[PASSWORD_HASH_BYTES])
{
    CF_ASSERT(normalized != NULL && out != NULL);
    size_t n = strnlen(normalized, PASSWORD_BYTES_MAX + 1);
    CF_ASSERT(n <= PASSWORD_BYTES_MAX);
    sodium_ready();
    char hashed[PASSWORD_HASH_BYTES];
    if (crypto_pwhash_str_alg(hashed, normalized, n, PASSWORD_OPSLIMIT, PASSWORD_MEMLIMIT_BYTES,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return CF_ERR_NOMEM;
    CF_ASSERT(stored_len(hashed) < PASSWORD_HASH_BYTES);
    CF_ASSERT(strncmp(hashed, ARGON2ID_PREFIX, strlen(ARGON2ID_PREFIX)) == 0);
    memcpy(out, hashed, stored_len(hashed) + 1);
    return CF_OK;
}

bool password_verify(const char *stored, const char *normalized)
{
    CF_ASSERT(stored != NULL && normalized != NULL);
    size_t n = strnlen(normalized, PASSWORD_BYTES_MAX + 1);
    CF_ASSERT(n <= PASSWORD_BYTES_MAX);
    if (stored_len(stored) >= PASSWORD_HASH_BYTES)
        return false;
    sodium_ready();
    return crypto_pwhash_str_verify(stored, normalized, n) == 0;
}

/* The dummy hash: a fixed text hashed once at the current cost, on first use. */
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[PASSWORD_HASH_BYTES];
static bool dummy_ready;

static void dummy_make(void)
{
    static const char text[] = "coffer dummy password for unknown logins";
    dummy_ready = password_hash(text, dummy_hash) == CF_OK;
}

/* Should the dummy hash be missing (no memory at first use), hashing the given text costs the
 * same as verifying it, so the time still matches. */
void password_verify_dummy(const char *normalized)
{
    CF_ASSERT(normalized != NULL);
    CF_ASSERT(pthread_once(&dummy_once, dummy_make) == 0);
    if (dummy_ready) {
        (void)password_verify(dummy_hash, normalized);
        return;
    }
    char scratch[PASSWORD_HASH_BYTES];
    if (password_hash(normalized, scratch) == CF_OK)
        hash_wipe(scratch, sizeof(scratch));
}

/* libsodium's rule: a hash needs redoing when its algorithm or any of its parameters differs
 * from the current ones. A string that is not an argon2id hash of ours needs it too. */
bool password_needs_rehash(const char *stored)
{
    CF_ASSERT(stored != NULL);
    if (stored_len(stored) >= PASSWORD_HASH_BYTES)
        return true;
    if (strncmp(stored, ARGON2ID_PREFIX, strlen(ARGON2ID_PREFIX)) != 0)
        return true;
    sodium_ready();
    return crypto_pwhash_str_needs_rehash(stored, PASSWORD_OPSLIMIT, PASSWORD_MEMLIMIT_BYTES) != 0;
}
