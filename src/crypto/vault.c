/* vault.c - guarded master keys, XChaCha20-Poly1305 sealing, blind indexes; see vault.h. */
#include "crypto/vault.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The first byte of every sealed value: the format of vault.h. */
#define SEALED_VERSION 0x01
/* Where the parts of a sealed value start. */
#define SEALED_KEY_ID_AT 1
#define SEALED_NONCE_AT 5
/* Key ids are 1..2^31: 0 means "no key" (vault_sealed_key_id), and the bound, far past any
 * rotation schedule, keeps the next id (active + 1) and its text short and inside uint32_t. */
#define KEY_ID_MAX (UINT32_C(1) << 31)
/* Decimal digits of KEY_ID_MAX (2147483648). */
#define KEY_ID_DIGITS_MAX 10
/* The aad is a place label ("user:usr_123:email"); the bound sizes the buffer that joins it
 * to the header as the AEAD's associated data. */
#define AAD_BYTES_MAX 1024
/* Base64 text of one key, with its NUL. */
#define KEY_B64_BYTES sodium_base64_ENCODED_LEN(VAULT_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL)
/* One key file line: "ID:BASE64\n". */
#define KEYFILE_LINE_BYTES_MAX (KEY_ID_DIGITS_MAX + 1 + (KEY_B64_BYTES - 1) + 1)
/* The blind index subkey: crypto_kdf context (8 bytes) and subkey id. */
#define BLIND_CONTEXT "cfblind_"
#define BLIND_SUBKEY_ID 1

static const char keyfile_intro[] =
    "# Coffer master keys: one \"ID:BASE64\" line per 32-byte key (standard base64).\n"
    "# The highest id seals new data; older keys stay so that what they sealed still opens.\n"
    "# Keep this file private (mode 0600) and backed up: data sealed under a lost key is gone.\n";

_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == VAULT_KEY_BYTES, "key size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == VAULT_NONCE_BYTES, "nonce size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == VAULT_TAG_BYTES, "tag size");
_Static_assert(SEALED_NONCE_AT + VAULT_NONCE_BYTES == VAULT_HEADER_BYTES, "header layout");
_Static_assert(crypto_kdf_KEYBYTES == VAULT_KEY_BYTES, "kdf master key size");
_Static_assert(sizeof(BLIND_CONTEXT) - 1 == crypto_kdf_CONTEXTBYTES, "kdf context size");
_Static_assert(crypto_auth_hmacsha256_BYTES == VAULT_BLIND_BYTES, "blind index size");
_Static_assert(sizeof(keyfile_intro) + VAULT_KEYS_MAX * KEYFILE_LINE_BYTES_MAX <
                   VAULT_KEYFILE_BYTES_MAX,
               "a full key file must fit VAULT_KEYFILE_BYTES_MAX");

struct vault_key {
    uint32_t id;
    uint8_t bytes[VAULT_KEY_BYTES];
};

/* One sodium_malloc block (guard pages, locked, wiped by sodium_free), read-only once loaded.
 * keys[0..keys_n) have distinct ids in 1..KEY_ID_MAX, in the order of the text; active_id is
 * the highest of them. */
struct vault {
    uint32_t keys_n;
    uint32_t active_id;
    struct vault_key keys[VAULT_KEYS_MAX];
};

/* libsodium ------------------------------------------------------------------------------------ */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_start(void)
{
    /* sodium_init fails only without a random source, where nothing here can work. */
    CF_ASSERT(sodium_init() >= 0);
}

/* Initialises libsodium on first use; sodium_malloc and randombytes need it. */
static void sodium_ready(void) { CF_ASSERT(pthread_once(&sodium_once, sodium_start) == 0); }

/* Keys ----------------------------------------------------------------------------------------- */

static const struct vault_key *key_find(const struct vault *v, uint32_t id)
{
    for (uint32_t i = 0; i < v->keys_n; i++)
        if (v->keys[i].id == id)
            return &v->keys[i];
    return NULL;
}

/* The key with the smallest id above after_id; NULL when there is none. */
static const struct vault_key *key_next_after(const struct vault *v, uint32_t after_id)
{
    const struct vault_key *next = NULL;
    for (uint32_t i = 0; i < v->keys_n; i++) {
        const struct vault_key *k = &v->keys[i];
        if (k->id > after_id && (next == NULL || k->id < next->id))
            next = k;
    }
    return next;
}

/* Key file text -------------------------------------------------------------------------------- */

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* A decimal key id: digits only, no sign, no leading zero, 1..KEY_ID_MAX. */
static bool key_id_parse(const char *s, size_t len, uint32_t *id_out)
{
    if (len == 0 || len > KEY_ID_DIGITS_MAX || s[0] == '0')
        return false;
    uint64_t id = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        id = id * 10 + (uint64_t)(s[i] - '0');
    }
    if (id > KEY_ID_MAX)
        return false;
    *id_out = (uint32_t)id;
    return true;
}

/* Decodes exactly VAULT_KEY_BYTES of standard, padded base64 (the whole of b64) into key. */
static bool key_b64_decode(const char *b64, size_t b64_len, uint8_t key[VAULT_KEY_BYTES])
{
    size_t bin_len = 0;
    const char *end = NULL;
    if (sodium_base642bin(key, VAULT_KEY_BYTES, b64, b64_len, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return false;
    return end == b64 + b64_len && bin_len == VAULT_KEY_BYTES;
}

/* One line without its '\n': blank, a '#' comment, or "ID:BASE64" (spaces, tabs and a CR
 * around it are ignored). A key is decoded straight into the vault's guarded memory. */
static enum cf_err key_line_parse(struct vault *v, const char *line, size_t len)
{
    CF_ASSERT(v->keys_n <= VAULT_KEYS_MAX);
    while (len > 0 && is_blank(line[0])) {
        line++;
        len--;
    }
    while (len > 0 && is_blank(line[len - 1]))
        len--;
    if (len == 0 || line[0] == '#')
        return CF_OK;
    const char *colon = memchr(line, ':', len);
    uint32_t id = 0;
    if (colon == NULL || !key_id_parse(line, (size_t)(colon - line), &id))
        return CF_ERR_CONFIG;
    if (key_find(v, id) != NULL || v->keys_n == VAULT_KEYS_MAX)
        return CF_ERR_CONFIG;
    struct vault_key *k = &v->keys[v->keys_n];
    const char *b64 = colon + 1;
    if (!key_b64_decode(b64, len - (size_t)(b64 - line), k->bytes))
        return CF_ERR_CONFIG; /* a partial key stays in guarded memory, wiped on free */
    k->id = id;
    v->keys_n++;
    CF_ASSERT(v->keys_n <= VAULT_KEYS_MAX && key_find(v, id) == k);
    return CF_OK;
}

static enum cf_err keys_parse(struct vault *v, const char *text, size_t len)
{
    size_t at = 0;
    while (at < len) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t line_len = nl != NULL ? (size_t)(nl - (text + at)) : len - at;
        enum cf_err err = key_line_parse(v, text + at, line_len);
        if (err != CF_OK)
            return err;
        at += line_len + 1;
    }
    return CF_OK;
}

enum cf_err vault_load(const char *text, size_t len, struct vault **out)
{
    CF_ASSERT(out != NULL);
    CF_ASSERT(text != NULL || len == 0);
    sodium_ready();
    if (len > VAULT_KEYFILE_BYTES_MAX)
        return CF_ERR_CONFIG;
    struct vault *v = sodium_malloc(sizeof(*v));
    if (v == NULL)
        return CF_ERR_NOMEM;
    v->keys_n = 0;
    v->active_id = 0;
    enum cf_err err = keys_parse(v, text, len);
    if (err == CF_OK && v->keys_n == 0)
        err = CF_ERR_CONFIG;
    if (err != CF_OK) {
        sodium_free(v);
        return err;
    }
    for (uint32_t i = 0; i < v->keys_n; i++)
        if (v->keys[i].id > v->active_id)
            v->active_id = v->keys[i].id;
    /* Hardening only: the keys work the same when the pages cannot be made read-only. */
    (void)sodium_mprotect_readonly(v);
    CF_ASSERT(v->keys_n >= 1 && v->keys_n <= VAULT_KEYS_MAX);
    CF_ASSERT(key_find(v, v->active_id) != NULL && key_next_after(v, v->active_id) == NULL);
    *out = v;
    return CF_OK;
}

/* Key file on disk ----------------------------------------------------------------------------- */

/* Checks the open key file (a regular file, private to its owner, not too large) and reads it
 * whole into text (VAULT_KEYFILE_BYTES_MAX + 1 bytes). */
static enum cf_err keyfile_read(int fd, char *text, size_t *len_out)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return CF_ERR_IO;
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0 || st.st_size > VAULT_KEYFILE_BYTES_MAX)
        return CF_ERR_CONFIG;
    size_t len = 0;
    for (;;) {
        ssize_t got = read(fd, text + len, VAULT_KEYFILE_BYTES_MAX + 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return CF_ERR_IO;
        if (got == 0)
            break;
        len += (size_t)got;
        if (len > VAULT_KEYFILE_BYTES_MAX)
            return CF_ERR_CONFIG; /* grew while being read */
    }
    CF_ASSERT(len <= VAULT_KEYFILE_BYTES_MAX);
    *len_out = len;
    return CF_OK;
}

enum cf_err vault_load_file(const char *path, struct vault **out)
{
    CF_ASSERT(path != NULL);
    CF_ASSERT(out != NULL);
    sodium_ready();
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return CF_ERR_CONFIG;
    char *text = sodium_malloc(VAULT_KEYFILE_BYTES_MAX + 1); /* guarded: it holds keys */
    size_t len = 0;
    enum cf_err err = text != NULL ? keyfile_read(fd, text, &len) : CF_ERR_NOMEM;
    close(fd);
    if (err == CF_OK)
        err = vault_load(text, len, out);
    if (text != NULL)
        sodium_free(text);
    return err;
}

void vault_free(struct vault *v)
{
    if (v != NULL)
        sodium_free(v); /* makes the block writable again, wipes and unlocks it */
}

/* Appends "ID:BASE64\n" for one key at out[at] and returns the new end (NUL-terminated). */
static size_t keyfile_line_put(char *out, size_t out_bytes, size_t at, uint32_t id,
                               const uint8_t key[VAULT_KEY_BYTES])
{
    CF_ASSERT(at < out_bytes && out_bytes - at > KEYFILE_LINE_BYTES_MAX);
    int n = snprintf(out + at, out_bytes - at, "%" PRIu32 ":", id);
    CF_ASSERT(n > 1 && n <= KEY_ID_DIGITS_MAX + 1);
    at += (size_t)n;
    CF_ASSERT(sodium_bin2base64(out + at, out_bytes - at, key, VAULT_KEY_BYTES,
                                sodium_base64_VARIANT_ORIGINAL) != NULL);
    at += KEY_B64_BYTES - 1;
    out[at++] = '\n';
    out[at] = '\0';
    return at;
}

enum cf_err vault_keyfile_new(const struct vault *existing, char *out, size_t out_bytes)
{
    CF_ASSERT(out != NULL);
    CF_ASSERT(out_bytes >= VAULT_KEYFILE_BYTES_MAX);
    sodium_ready();
    uint32_t new_id = 1;
    if (existing != NULL) {
        if (existing->keys_n == VAULT_KEYS_MAX || existing->active_id == KEY_ID_MAX)
            return CF_ERR_CONFIG;
        new_id = existing->active_id + 1;
    }
    memcpy(out, keyfile_intro, sizeof(keyfile_intro));
    size_t at = sizeof(keyfile_intro) - 1;
    uint32_t prev_id = 0;
    for (uint32_t i = 0; existing != NULL && i < existing->keys_n; i++) {
        const struct vault_key *k = key_next_after(existing, prev_id);
        CF_ASSERT(k != NULL);
        at = keyfile_line_put(out, out_bytes, at, k->id, k->bytes);
        prev_id = k->id;
    }
    uint8_t fresh[VAULT_KEY_BYTES];
    randombytes_buf(fresh, sizeof(fresh));
    at = keyfile_line_put(out, out_bytes, at, new_id, fresh);
    sodium_memzero(fresh, sizeof(fresh));
    CF_ASSERT(at < VAULT_KEYFILE_BYTES_MAX && out[at] == '\0');
    return CF_OK;
}

uint32_t vault_active_id(const struct vault *v)
{
    CF_ASSERT(v != NULL);
    return v->active_id;
}

bool vault_has_key(const struct vault *v, uint32_t id)
{
    CF_ASSERT(v != NULL);
    return key_find(v, id) != NULL;
}

/* Sealing -------------------------------------------------------------------------------------- */

/* The AEAD's associated data: the sealed value's header, then the caller's aad, so that
 * neither the key id nor the place can change without the tag failing. Returns its length. */
static size_t ad_build(uint8_t ad[VAULT_HEADER_BYTES + AAD_BYTES_MAX],
                       const uint8_t header[VAULT_HEADER_BYTES], const void *aad, size_t aad_len)
{
    CF_ASSERT(aad_len <= AAD_BYTES_MAX);
    memcpy(ad, header, VAULT_HEADER_BYTES);
    if (aad_len > 0)
        memcpy(ad + VAULT_HEADER_BYTES, aad, aad_len);
    return VAULT_HEADER_BYTES + aad_len;
}

enum cf_err vault_seal_with(const uint8_t key[VAULT_KEY_BYTES], uint32_t key_id, const void *pt,
                            size_t n, const void *aad, size_t aad_len, uint8_t *out,
                            size_t out_bytes, size_t *out_len)
{
    CF_ASSERT(key != NULL && out != NULL && out_len != NULL);
    CF_ASSERT(pt != NULL || n == 0);
    CF_ASSERT((aad != NULL || aad_len == 0) && aad_len <= AAD_BYTES_MAX);
    if (n > VAULT_PLAINTEXT_BYTES_MAX)
        return CF_ERR_PAYLOAD_TOO_LARGE;
    CF_ASSERT(out_bytes >= n + VAULT_OVERHEAD_BYTES);
    sodium_ready();
    out[0] = SEALED_VERSION;
    out[SEALED_KEY_ID_AT + 0] = (uint8_t)(key_id >> 24);
    out[SEALED_KEY_ID_AT + 1] = (uint8_t)(key_id >> 16);
    out[SEALED_KEY_ID_AT + 2] = (uint8_t)(key_id >> 8);
    out[SEALED_KEY_ID_AT + 3] = (uint8_t)key_id;
    randombytes_buf(out + SEALED_NONCE_AT, VAULT_NONCE_BYTES);
    uint8_t ad[VAULT_HEADER_BYTES + AAD_BYTES_MAX];
    size_t ad_len = ad_build(ad, out, aad, aad_len);
    unsigned long long tag_len = 0;
    CF_ASSERT(crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
                  out + VAULT_HEADER_BYTES, out + VAULT_HEADER_BYTES + n, &tag_len, pt, n, ad,
                  ad_len, NULL, out + SEALED_NONCE_AT, key) == 0);
    CF_ASSERT(tag_len == VAULT_TAG_BYTES);
    *out_len = n + VAULT_OVERHEAD_BYTES;
    return CF_OK;
}

enum cf_err vault_open_with(const uint8_t key[VAULT_KEY_BYTES], const uint8_t *ct, size_t n,
                            const void *aad, size_t aad_len, uint8_t *out, size_t out_bytes,
                            size_t *out_len)
{
    CF_ASSERT(key != NULL && out_len != NULL);
    CF_ASSERT((ct != NULL || n == 0) && (out != NULL || out_bytes == 0));
    CF_ASSERT((aad != NULL || aad_len == 0) && aad_len <= AAD_BYTES_MAX);
    if (n < VAULT_OVERHEAD_BYTES || ct[0] != SEALED_VERSION)
        return CF_ERR_CORRUPT;
    size_t pt_n = n - VAULT_OVERHEAD_BYTES;
    if (pt_n > VAULT_PLAINTEXT_BYTES_MAX || pt_n > out_bytes)
        return CF_ERR_CORRUPT;
    sodium_ready();
    uint8_t ad[VAULT_HEADER_BYTES + AAD_BYTES_MAX];
    size_t ad_len = ad_build(ad, ct, aad, aad_len);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
            out, NULL, ct + VAULT_HEADER_BYTES, pt_n, ct + n - VAULT_TAG_BYTES, ad, ad_len,
            ct + SEALED_NONCE_AT, key) != 0) {
        if (pt_n > 0)
            sodium_memzero(out, pt_n);
        return CF_ERR_CORRUPT;
    }
    *out_len = pt_n;
    CF_ASSERT(*out_len + VAULT_OVERHEAD_BYTES == n);
    return CF_OK;
}

uint32_t vault_sealed_key_id(const uint8_t *ct, size_t n)
{
    if (ct == NULL || n < VAULT_OVERHEAD_BYTES || ct[0] != SEALED_VERSION)
        return 0;
    const uint8_t *p = ct + SEALED_KEY_ID_AT;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

enum cf_err vault_seal(const struct vault *v, const void *pt, size_t n, const void *aad,
                       size_t aad_len, uint8_t *out, size_t out_bytes, size_t *out_len)
{
    CF_ASSERT(v != NULL);
    const struct vault_key *k = key_find(v, v->active_id);
    CF_ASSERT(k != NULL);
    return vault_seal_with(k->bytes, k->id, pt, n, aad, aad_len, out, out_bytes, out_len);
}

enum cf_err vault_open(const struct vault *v, const uint8_t *ct, size_t n, const void *aad,
                       size_t aad_len, uint8_t *out, size_t out_bytes, size_t *out_len)
{
    CF_ASSERT(v != NULL);
    CF_ASSERT(ct != NULL || n == 0);
    const struct vault_key *k = key_find(v, vault_sealed_key_id(ct, n));
    if (k == NULL)
        return CF_ERR_CORRUPT; /* not a sealed value, or its key is not loaded */
    return vault_open_with(k->bytes, ct, n, aad, aad_len, out, out_bytes, out_len);
}

void vault_dek_new(uint8_t dek[VAULT_KEY_BYTES])
{
    CF_ASSERT(dek != NULL);
    sodium_ready();
    randombytes_buf(dek, VAULT_KEY_BYTES);
}

/* Blind indexes -------------------------------------------------------------------------------- */

enum cf_err vault_blind(const struct vault *v, uint32_t index_key_id, const char *domain,
                        const void *value, size_t n, uint8_t out[VAULT_BLIND_BYTES])
{
    CF_ASSERT(v != NULL && out != NULL);
    CF_ASSERT(domain != NULL && domain[0] != '\0');
    CF_ASSERT(value != NULL || n == 0);
    const struct vault_key *k = key_find(v, index_key_id);
    if (k == NULL)
        return CF_ERR_CONFIG;
    uint8_t subkey[VAULT_KEY_BYTES];
    CF_ASSERT(crypto_kdf_derive_from_key(subkey, sizeof(subkey), BLIND_SUBKEY_ID, BLIND_CONTEXT,
                                         k->bytes) == 0);
    crypto_auth_hmacsha256_state st;
    CF_ASSERT(crypto_auth_hmacsha256_init(&st, subkey, sizeof(subkey)) == 0);
    sodium_memzero(subkey, sizeof(subkey));
    static const uint8_t separator = 0x00; /* a domain never contains it, so no ambiguity */
    CF_ASSERT(crypto_auth_hmacsha256_update(&st, (const uint8_t *)domain, strlen(domain)) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_update(&st, &separator, 1) == 0);
    if (n > 0)
        CF_ASSERT(crypto_auth_hmacsha256_update(&st, value, n) == 0);
    CF_ASSERT(crypto_auth_hmacsha256_final(&st, out) == 0);
    sodium_memzero(&st, sizeof(st));
    return CF_OK;
}
