/*
 * test_vault.c - unit tests for src/crypto/vault.c: loading master keys (valid text, every kind
 * of malformed text refused with nothing handed out, key file permissions and size), sealing and
 * opening with data keys and master keys (round trips, the exact associated data, every
 * single-byte change refused, wrong aad, a swapped key id, a missing key, the plaintext bound),
 * key file generation and rotation, and blind indexes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/hash.h"
#include "crypto/vault.h"

#define B64_BYTES sodium_base64_ENCODED_LEN(VAULT_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL)
#define TEXT_BYTES_MAX (VAULT_KEYFILE_BYTES_MAX + 64)

static const char aad_email[] = "user:usr_123:email";

/* Helpers -------------------------------------------------------------------------------------- */

/* Base64 of n bytes all equal to fill, in the given libsodium variant. */
static void b64_fill(char *out, size_t out_bytes, size_t n, uint8_t fill, int variant)
{
    uint8_t bytes[64];
    assert_true(n <= sizeof(bytes));
    memset(bytes, fill, n);
    assert_non_null(sodium_bin2base64(out, out_bytes, bytes, n, variant));
}

/* Writes "ID:BASE64\n" for a key of 32 bytes equal to fill at the end of text. */
static void text_add_key(char *text, size_t text_bytes, uint32_t id, uint8_t fill)
{
    char b64[B64_BYTES];
    b64_fill(b64, sizeof(b64), VAULT_KEY_BYTES, fill, sodium_base64_VARIANT_ORIGINAL);
    size_t at = strlen(text);
    int n = snprintf(text + at, text_bytes - at, "%u:%s\n", (unsigned)id, b64);
    assert_true(n > 0 && (size_t)n < text_bytes - at);
}

static struct vault *load_ok(const char *text)
{
    struct vault *v = NULL;
    assert_int_equal(vault_load(text, strlen(text), &v), CF_OK);
    assert_non_null(v);
    return v;
}

/* A vault whose keys are ids[i] -> 32 bytes of fills[i]. */
static struct vault *load_keys(const uint32_t *ids, const uint8_t *fills, size_t n)
{
    char text[TEXT_BYTES_MAX] = "";
    for (size_t i = 0; i < n; i++)
        text_add_key(text, sizeof(text), ids[i], fills[i]);
    return load_ok(text);
}

static char sentinel_byte;
#define VAULT_SENTINEL ((struct vault *)(void *)&sentinel_byte)

/* vault_load must refuse text (len bytes) with CF_ERR_CONFIG and leave *out alone. */
static void assert_load_refused(const char *text, size_t len)
{
    struct vault *v = VAULT_SENTINEL;
    enum cf_err err = vault_load(text, len, &v);
    if (err != CF_ERR_CONFIG || v != VAULT_SENTINEL)
        fail_msg("not refused (err %d): \"%.*s\"", (int)err, (int)len, text);
}

/* Replaces each '@' of tmpl by the base64 of a good key (0x11 * 32) and each '^' by that of
 * a 16-byte key, '~' of a 33-byte key, '&' of a good key without padding and '*' of a good
 * key in the URL-safe alphabet; none of these characters is standard base64. */
static void expand(const char *tmpl, char *out, size_t out_bytes)
{
    char good[B64_BYTES], short16[64], long33[64], unpadded[B64_BYTES], urlsafe[B64_BYTES];
    b64_fill(good, sizeof(good), 32, 0x11, sodium_base64_VARIANT_ORIGINAL);
    b64_fill(short16, sizeof(short16), 16, 0x11, sodium_base64_VARIANT_ORIGINAL);
    b64_fill(long33, sizeof(long33), 33, 0x11, sodium_base64_VARIANT_ORIGINAL);
    b64_fill(unpadded, sizeof(unpadded), 32, 0x11, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    b64_fill(urlsafe, sizeof(urlsafe), 32, 0xFB, sodium_base64_VARIANT_URLSAFE);
    size_t at = 0;
    for (const char *p = tmpl; *p != '\0'; p++) {
        const char *piece = *p == '@'   ? good
                            : *p == '^' ? short16
                            : *p == '~' ? long33
                            : *p == '&' ? unpadded
                            : *p == '*' ? urlsafe
                                        : NULL;
        size_t piece_len = piece != NULL ? strlen(piece) : 1;
        assert_true(at + piece_len < out_bytes);
        memcpy(out + at, piece != NULL ? piece : p, piece_len);
        at += piece_len;
    }
    out[at] = '\0';
}

/* The key of fill bytes. */
static void key_fill(uint8_t key[VAULT_KEY_BYTES], uint8_t fill)
{
    memset(key, fill, VAULT_KEY_BYTES);
}

/* Loading -------------------------------------------------------------------------------------- */

static void test_load_valid_text(void **state)
{
    (void)state;
    char k7[B64_BYTES], k3[B64_BYTES], text[1024];
    b64_fill(k7, sizeof(k7), 32, 0x77, sodium_base64_VARIANT_ORIGINAL);
    b64_fill(k3, sizeof(k3), 32, 0x33, sodium_base64_VARIANT_ORIGINAL);
    /* comments, blank lines, CRLF, spaces around a line, no final newline; highest id first */
    snprintf(text, sizeof(text), "# Coffer master keys\r\n\r\n7:%s\r\n   \n\t# old key\n  3:%s \t",
             k7, k3);
    struct vault *v = load_ok(text);
    assert_int_equal(vault_active_id(v), 7);
    assert_true(vault_has_key(v, 7));
    assert_true(vault_has_key(v, 3));
    assert_false(vault_has_key(v, 0));
    assert_false(vault_has_key(v, 1));
    assert_false(vault_has_key(v, 5));

    /* The active key really is 0x77 * 32: what vault_seal seals opens with it. */
    uint8_t ct[64], pt[16], key[VAULT_KEY_BYTES];
    size_t ct_len = 0, pt_len = 0;
    assert_int_equal(vault_seal(v, "secret", 6, "a", 1, ct, sizeof(ct), &ct_len), CF_OK);
    assert_int_equal(vault_sealed_key_id(ct, ct_len), 7);
    key_fill(key, 0x77);
    assert_int_equal(vault_open_with(key, ct, ct_len, "a", 1, pt, sizeof(pt), &pt_len), CF_OK);
    assert_int_equal(pt_len, 6);
    assert_memory_equal(pt, "secret", 6);
    vault_free(v);
    vault_free(NULL);
}

static void test_load_rejects_malformed(void **state)
{
    (void)state;
    static const char *const cases[] = {
        /* no key at all */
        "",
        "\n",
        "\r\n\r\n",
        "# only a comment\n",
        "   \t\n# x\n",
        /* not "ID:BASE64" */
        "1:",
        ":@",
        "@",
        "1@",
        "1;@",
        "1=@",
        "1 @",
        "1 :@",
        "1:1:@",
        /* ids: zero, leading zeros, signs, other bases, above 2^31 */
        "0:@",
        "00:@",
        "01:@",
        "-1:@",
        "+1:@",
        "1x:@",
        "0x1:@",
        "x:@",
        "2147483649:@",
        "4294967295:@",
        "4294967296:@",
        "4294967297:@",
        "99999999999:@",
        /* key encodings: wrong length, unpadded, URL-safe, junk around or inside */
        "1:^",
        "1:~",
        "1:&",
        "1:*",
        "1: @",
        "1:@@",
        "1:@x",
        "1:@ x",
        "1:@#c",
        "1:@=",
        "1:@:@",
        "1:@\xff",
        /* duplicate ids */
        "1:@\n1:@",
        "2:@\n1:@\n2:@",
        /* a garbage line among good ones */
        "1:@\ngarbage\n",
        "garbage",
        "1:@\n:\n",
        "1:@\r\r\n2:@\rx\n",
    };
    char text[512];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expand(cases[i], text, sizeof(text));
        assert_load_refused(text, strlen(text));
    }

    /* A NUL inside a line or after the key. */
    expand("1:@", text, sizeof(text));
    size_t len = strlen(text);
    text[5] = '\0';
    assert_load_refused(text, len);
    expand("1:@", text, sizeof(text));
    assert_load_refused(text, len + 1);
    /* NULL text of length 0 is empty text. */
    assert_load_refused(NULL, 0);
}

static void test_load_key_count_and_size_bounds(void **state)
{
    (void)state;
    char text[TEXT_BYTES_MAX] = "";
    for (uint32_t id = 1; id <= VAULT_KEYS_MAX; id++)
        text_add_key(text, sizeof(text), id, (uint8_t)id);
    struct vault *v = load_ok(text);
    assert_int_equal(vault_active_id(v), VAULT_KEYS_MAX);
    vault_free(v);
    text_add_key(text, sizeof(text), VAULT_KEYS_MAX + 1, 0xEE);
    assert_load_refused(text, strlen(text));

    /* One key then a comment padding the text to exactly the bound: accepted; one byte more
     * (or the bound passed as length with a byte past it) refused. */
    memset(text, 0, sizeof(text));
    text_add_key(text, sizeof(text), 1, 0x11);
    size_t at = strlen(text);
    memset(text + at, '#', VAULT_KEYFILE_BYTES_MAX - at);
    text[VAULT_KEYFILE_BYTES_MAX - 1] = '\n';
    v = NULL;
    assert_int_equal(vault_load(text, VAULT_KEYFILE_BYTES_MAX, &v), CF_OK);
    vault_free(v);
    text[VAULT_KEYFILE_BYTES_MAX] = '\n';
    assert_load_refused(text, VAULT_KEYFILE_BYTES_MAX + 1);
}

static void test_load_id_bounds(void **state)
{
    (void)state;
    char text[256] = "";
    text_add_key(text, sizeof(text), 2147483648u, 0x11); /* 2^31, the largest id */
    text_add_key(text, sizeof(text), 2147483647u, 0x22);
    struct vault *v = load_ok(text);
    assert_true(vault_active_id(v) == 2147483648u);
    assert_true(vault_has_key(v, 2147483647u));

    /* No rotation past the largest id; out untouched. */
    static char out[VAULT_KEYFILE_BYTES_MAX];
    memset(out, 'Z', sizeof(out));
    assert_int_equal(vault_keyfile_new(v, out, sizeof(out)), CF_ERR_CONFIG);
    for (size_t i = 0; i < sizeof(out); i++)
        assert_int_equal(out[i], 'Z');
    vault_free(v);
}

/* Key file on disk ----------------------------------------------------------------------------- */

/* Writes len bytes of text to a new temporary file of the given mode; returns its path. */
static void temp_file_write(char path[64], const char *text, size_t len, mode_t mode)
{
    snprintf(path, 64, "/tmp/coffer_test_vault_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, text, len) == (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static void assert_load_file_refused(const char *path)
{
    struct vault *v = VAULT_SENTINEL;
    assert_int_equal(vault_load_file(path, &v), CF_ERR_CONFIG);
    assert_ptr_equal(v, VAULT_SENTINEL);
}

static void test_load_file_permissions(void **state)
{
    (void)state;
    char text[256] = "# keys\n", path[64];
    text_add_key(text, sizeof(text), 1, 0x11);
    text_add_key(text, sizeof(text), 2, 0x22);
    temp_file_write(path, text, strlen(text), 0644);
    assert_load_file_refused(path);
    static const mode_t refused[] = {0640, 0604, 0660, 0601, 0610, 0602, 0620, 0666, 0777};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        assert_int_equal(chmod(path, refused[i]), 0);
        assert_load_file_refused(path);
    }
    static const mode_t accepted[] = {0600, 0400, 0700};
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        assert_int_equal(chmod(path, accepted[i]), 0);
        struct vault *v = NULL;
        assert_int_equal(vault_load_file(path, &v), CF_OK);
        assert_int_equal(vault_active_id(v), 2);
        assert_true(vault_has_key(v, 1));
        vault_free(v);
    }
    assert_int_equal(unlink(path), 0);
    assert_load_file_refused(path); /* gone */

    char dir[] = "/tmp/coffer_test_vault_dir_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_load_file_refused(dir); /* not a regular file */
    assert_int_equal(rmdir(dir), 0);
}

static void test_load_file_size_bound(void **state)
{
    (void)state;
    static char text[VAULT_KEYFILE_BYTES_MAX + 1];
    char path[64];
    memset(text, 0, sizeof(text));
    text_add_key(text, sizeof(text), 1, 0x11);
    size_t at = strlen(text);
    memset(text + at, '#', sizeof(text) - at);
    temp_file_write(path, text, VAULT_KEYFILE_BYTES_MAX, 0600);
    struct vault *v = NULL;
    assert_int_equal(vault_load_file(path, &v), CF_OK);
    vault_free(v);
    assert_int_equal(unlink(path), 0);

    temp_file_write(path, text, VAULT_KEYFILE_BYTES_MAX + 1, 0600);
    assert_load_file_refused(path);
    assert_int_equal(unlink(path), 0);
}

/* Sealing -------------------------------------------------------------------------------------- */

static void test_seal_open_with_dek(void **state)
{
    (void)state;
    uint8_t dek[VAULT_KEY_BYTES], other[VAULT_KEY_BYTES], ct[128], ct2[128], pt[64];
    vault_dek_new(dek);
    vault_dek_new(other);
    assert_memory_not_equal(dek, other, VAULT_KEY_BYTES); /* 2^-256 chance of a false failure */
    static const char msg[] = "+15551234567";
    size_t ct_len = 0, ct2_len = 0, pt_len = 0;
    assert_int_equal(
        vault_seal_with(dek, 42, msg, 12, aad_email, strlen(aad_email), ct, sizeof(ct), &ct_len),
        CF_OK);
    assert_int_equal(ct_len, 12 + VAULT_OVERHEAD_BYTES);
    assert_int_equal(ct[0], 0x01);
    assert_int_equal(vault_sealed_key_id(ct, ct_len), 42);
    assert_int_equal(
        vault_open_with(dek, ct, ct_len, aad_email, strlen(aad_email), pt, sizeof(pt), &pt_len),
        CF_OK);
    assert_int_equal(pt_len, 12);
    assert_memory_equal(pt, msg, 12);

    /* A fresh nonce each time: the same plaintext never seals the same way. */
    assert_int_equal(
        vault_seal_with(dek, 42, msg, 12, aad_email, strlen(aad_email), ct2, sizeof(ct2), &ct2_len),
        CF_OK);
    assert_memory_not_equal(ct + 5, ct2 + 5, VAULT_NONCE_BYTES);
    assert_memory_not_equal(ct + VAULT_HEADER_BYTES, ct2 + VAULT_HEADER_BYTES, 12);

    /* Another key does not open it. */
    pt_len = 999;
    assert_int_equal(
        vault_open_with(other, ct, ct_len, aad_email, strlen(aad_email), pt, sizeof(pt), &pt_len),
        CF_ERR_CORRUPT);
    assert_int_equal(pt_len, 999);

    /* Empty plaintext and no aad. */
    assert_int_equal(vault_seal_with(dek, 1, NULL, 0, NULL, 0, ct, sizeof(ct), &ct_len), CF_OK);
    assert_int_equal(ct_len, VAULT_OVERHEAD_BYTES);
    assert_int_equal(vault_open_with(dek, ct, ct_len, NULL, 0, NULL, 0, &pt_len), CF_OK);
    assert_int_equal(pt_len, 0);
}

/* The format is the documented one: AEAD associated data = header bytes, then the aad. */
static void test_seal_format_matches_libsodium(void **state)
{
    (void)state;
    uint8_t key[VAULT_KEY_BYTES], ct[64], ad[64], pt[16];
    key_fill(key, 0x5A);
    size_t ct_len = 0;
    assert_int_equal(
        vault_seal_with(key, 0x01020304, "hello", 5, "place", 5, ct, sizeof(ct), &ct_len), CF_OK);
    static const uint8_t head[] = {0x01, 0x01, 0x02, 0x03, 0x04};
    assert_memory_equal(ct, head, sizeof(head));
    memcpy(ad, ct, VAULT_HEADER_BYTES);
    memcpy(ad + VAULT_HEADER_BYTES, "place", 5);
    unsigned long long pt_len = 0;
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(
                         pt, &pt_len, NULL, ct + VAULT_HEADER_BYTES, ct_len - VAULT_HEADER_BYTES,
                         ad, VAULT_HEADER_BYTES + 5, ct + 5, key),
                     0);
    assert_int_equal(pt_len, 5);
    assert_memory_equal(pt, "hello", 5);
}

static void test_seal_open_with_master_keys(void **state)
{
    (void)state;
    static const uint32_t ids[] = {1, 2};
    static const uint8_t fills[] = {0x11, 0x22};
    struct vault *v = load_keys(ids, fills, 2);
    uint8_t dek[VAULT_KEY_BYTES], wrapped[VAULT_KEY_BYTES + VAULT_OVERHEAD_BYTES];
    uint8_t unwrapped[VAULT_KEY_BYTES];
    vault_dek_new(dek);
    size_t wrapped_len = 0, unwrapped_len = 0;
    assert_int_equal(
        vault_seal(v, dek, sizeof(dek), "dek:usr_1", 9, wrapped, sizeof(wrapped), &wrapped_len),
        CF_OK);
    assert_int_equal(wrapped_len, sizeof(wrapped));
    assert_int_equal(vault_sealed_key_id(wrapped, wrapped_len), 2);
    assert_int_equal(vault_open(v, wrapped, wrapped_len, "dek:usr_1", 9, unwrapped,
                                sizeof(unwrapped), &unwrapped_len),
                     CF_OK);
    assert_int_equal(unwrapped_len, VAULT_KEY_BYTES);
    assert_memory_equal(unwrapped, dek, VAULT_KEY_BYTES);
    vault_free(v);
}

/* Every byte of out is either still fill or zero: no plaintext leaks from a failed open. */
static void assert_untouched_or_zero(const uint8_t *out, size_t n, uint8_t fill)
{
    for (size_t i = 0; i < n; i++)
        assert_true(out[i] == fill || out[i] == 0);
}

static void test_tampering_any_byte_fails(void **state)
{
    (void)state;
    static const uint32_t ids[] = {1, 2};
    static const uint8_t fills[] = {0x11, 0x22};
    struct vault *v = load_keys(ids, fills, 2);
    uint8_t key[VAULT_KEY_BYTES], ct[96], bad[96], out[64];
    key_fill(key, 0x22);
    static const char msg[] = "alice@example.com";
    size_t ct_len = 0;
    assert_int_equal(
        vault_seal(v, msg, strlen(msg), aad_email, strlen(aad_email), ct, sizeof(ct), &ct_len),
        CF_OK);
    static const uint8_t masks[] = {0x01, 0x80, 0xFF};
    for (size_t i = 0; i < ct_len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(bad, ct, ct_len);
            bad[i] ^= masks[m];
            size_t out_len = 777;
            memset(out, 0xAA, sizeof(out));
            assert_int_equal(vault_open(v, bad, ct_len, aad_email, strlen(aad_email), out,
                                        sizeof(out), &out_len),
                             CF_ERR_CORRUPT);
            assert_int_equal(out_len, 777);
            assert_untouched_or_zero(out, sizeof(out), 0xAA);
            assert_int_equal(vault_open_with(key, bad, ct_len, aad_email, strlen(aad_email), out,
                                             sizeof(out), &out_len),
                             CF_ERR_CORRUPT);
            assert_int_equal(out_len, 777);
            assert_untouched_or_zero(out, sizeof(out), 0xAA);
        }
    }
    /* Cut short at any length, or one byte longer. */
    for (size_t n = 0; n < ct_len; n++) {
        size_t out_len = 777;
        assert_int_equal(
            vault_open_with(key, ct, n, aad_email, strlen(aad_email), out, sizeof(out), &out_len),
            CF_ERR_CORRUPT);
        assert_int_equal(out_len, 777);
    }
    memcpy(bad, ct, ct_len);
    bad[ct_len] = 0;
    size_t out_len = 777;
    assert_int_equal(
        vault_open(v, bad, ct_len + 1, aad_email, strlen(aad_email), out, sizeof(out), &out_len),
        CF_ERR_CORRUPT);
    /* The untouched value still opens. */
    assert_int_equal(
        vault_open(v, ct, ct_len, aad_email, strlen(aad_email), out, sizeof(out), &out_len), CF_OK);
    assert_int_equal(out_len, strlen(msg));
    vault_free(v);
}

static void test_wrong_aad_fails(void **state)
{
    (void)state;
    uint8_t key[VAULT_KEY_BYTES], ct[96], out[64];
    vault_dek_new(key);
    size_t ct_len = 0, out_len = 777;
    assert_int_equal(
        vault_seal_with(key, 3, "value", 5, aad_email, strlen(aad_email), ct, sizeof(ct), &ct_len),
        CF_OK);
    static const char *const wrong[] = {
        "user:usr_124:email",  "user:usr_123:phone", "user:usr_123:emai",
        "user:usr_123:email ", "USER:usr_123:email", "",
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++)
        assert_int_equal(vault_open_with(key, ct, ct_len, wrong[i], strlen(wrong[i]), out,
                                         sizeof(out), &out_len),
                         CF_ERR_CORRUPT);
    /* The aad's trailing NUL is not part of it. */
    assert_int_equal(
        vault_open_with(key, ct, ct_len, aad_email, sizeof(aad_email), out, sizeof(out), &out_len),
        CF_ERR_CORRUPT);
    assert_int_equal(vault_open_with(key, ct, ct_len, NULL, 0, out, sizeof(out), &out_len),
                     CF_ERR_CORRUPT);
    assert_int_equal(out_len, 777);

    /* Sealed without aad: any aad fails. */
    assert_int_equal(vault_seal_with(key, 3, "value", 5, NULL, 0, ct, sizeof(ct), &ct_len), CF_OK);
    assert_int_equal(vault_open_with(key, ct, ct_len, "x", 1, out, sizeof(out), &out_len),
                     CF_ERR_CORRUPT);
    assert_int_equal(vault_open_with(key, ct, ct_len, NULL, 0, out, sizeof(out), &out_len), CF_OK);
}

static void test_changed_key_id_fails(void **state)
{
    (void)state;
    /* The same key bytes under ids 1 and 2: only the header in the associated data tells a
     * value sealed under id 2 from one under id 1. */
    static const uint32_t ids[] = {1, 2};
    static const uint8_t fills[] = {0x44, 0x44};
    struct vault *v = load_keys(ids, fills, 2);
    uint8_t key[VAULT_KEY_BYTES], ct[64], out[32];
    key_fill(key, 0x44);
    size_t ct_len = 0, out_len = 777;
    assert_int_equal(vault_seal(v, "data", 4, "a", 1, ct, sizeof(ct), &ct_len), CF_OK);
    assert_int_equal(vault_sealed_key_id(ct, ct_len), 2);
    assert_int_equal(vault_open(v, ct, ct_len, "a", 1, out, sizeof(out), &out_len), CF_OK);
    out_len = 777;
    ct[4] = 1; /* the key id's low byte: 2 -> 1 */
    assert_int_equal(vault_sealed_key_id(ct, ct_len), 1);
    assert_int_equal(vault_open(v, ct, ct_len, "a", 1, out, sizeof(out), &out_len), CF_ERR_CORRUPT);
    assert_int_equal(vault_open_with(key, ct, ct_len, "a", 1, out, sizeof(out), &out_len),
                     CF_ERR_CORRUPT);
    assert_int_equal(out_len, 777);
    vault_free(v);
}

static void test_open_without_the_key_fails(void **state)
{
    (void)state;
    static const uint32_t ids[] = {1, 2};
    static const uint8_t fills[] = {0x11, 0x22};
    struct vault *both = load_keys(ids, fills, 2);
    struct vault *old = load_keys(ids, fills, 1);
    uint8_t ct[64], out[32];
    size_t ct_len = 0, out_len = 777;
    assert_int_equal(vault_seal(both, "data", 4, NULL, 0, ct, sizeof(ct), &ct_len), CF_OK);
    assert_int_equal(vault_open(old, ct, ct_len, NULL, 0, out, sizeof(out), &out_len),
                     CF_ERR_CORRUPT);
    assert_int_equal(out_len, 777);
    /* Not a sealed value at all. */
    assert_int_equal(vault_open(both, ct, 3, NULL, 0, out, sizeof(out), &out_len), CF_ERR_CORRUPT);
    assert_int_equal(vault_open(both, NULL, 0, NULL, 0, out, sizeof(out), &out_len),
                     CF_ERR_CORRUPT);
    assert_int_equal(vault_open(both, ct, ct_len, NULL, 0, out, sizeof(out), &out_len), CF_OK);
    assert_int_equal(out_len, 4);
    vault_free(both);
    vault_free(old);
}

static void test_sealed_key_id(void **state)
{
    (void)state;
    uint8_t ct[VAULT_OVERHEAD_BYTES + 8] = {0x01, 0x80, 0x00, 0x00, 0x00};
    assert_int_equal(vault_sealed_key_id(NULL, 0), 0);
    assert_int_equal(vault_sealed_key_id(ct, VAULT_OVERHEAD_BYTES - 1), 0);
    assert_true(vault_sealed_key_id(ct, VAULT_OVERHEAD_BYTES) == 0x80000000u);
    ct[0] = 0x02; /* another format */
    assert_int_equal(vault_sealed_key_id(ct, sizeof(ct)), 0);

    uint8_t key[VAULT_KEY_BYTES];
    size_t ct_len = 0;
    vault_dek_new(key);
    assert_int_equal(vault_seal_with(key, 0x00A1B2C3, "x", 1, NULL, 0, ct, sizeof(ct), &ct_len),
                     CF_OK);
    static const uint8_t be[] = {0x00, 0xA1, 0xB2, 0xC3};
    assert_memory_equal(ct + 1, be, 4);
    assert_int_equal(vault_sealed_key_id(ct, ct_len), 0x00A1B2C3);
}

static void test_plaintext_size_bound(void **state)
{
    (void)state;
    uint8_t key[VAULT_KEY_BYTES];
    vault_dek_new(key);
    size_t big_bytes = VAULT_PLAINTEXT_BYTES_MAX + VAULT_OVERHEAD_BYTES + 1;
    uint8_t *pt = calloc(big_bytes, 1);
    uint8_t *ct = calloc(big_bytes, 1);
    assert_non_null(pt);
    assert_non_null(ct);
    size_t ct_len = 777, pt_len = 777;
    assert_int_equal(
        vault_seal_with(key, 1, pt, VAULT_PLAINTEXT_BYTES_MAX + 1, NULL, 0, ct, big_bytes, &ct_len),
        CF_ERR_PAYLOAD_TOO_LARGE);
    assert_int_equal(ct_len, 777);
    assert_int_equal(
        vault_seal_with(key, 1, pt, VAULT_PLAINTEXT_BYTES_MAX, NULL, 0, ct, big_bytes, &ct_len),
        CF_OK);
    assert_int_equal(ct_len, VAULT_PLAINTEXT_BYTES_MAX + VAULT_OVERHEAD_BYTES);
    assert_int_equal(vault_open_with(key, ct, ct_len, NULL, 0, pt, big_bytes, &pt_len), CF_OK);
    assert_int_equal(pt_len, VAULT_PLAINTEXT_BYTES_MAX);

    /* Too small an output for what the value holds: refused, output untouched. */
    pt_len = 777;
    memset(pt, 0xAA, big_bytes);
    assert_int_equal(
        vault_open_with(key, ct, ct_len, NULL, 0, pt, VAULT_PLAINTEXT_BYTES_MAX - 1, &pt_len),
        CF_ERR_CORRUPT);
    assert_int_equal(pt_len, 777);
    assert_int_equal(pt[0], 0xAA);
    /* A value longer than anything sealed is refused before any work. */
    assert_int_equal(vault_open_with(key, ct, big_bytes, NULL, 0, pt, big_bytes, &pt_len),
                     CF_ERR_CORRUPT);
    assert_int_equal(pt_len, 777);
    free(pt);
    free(ct);
}

/* Key files ------------------------------------------------------------------------------------ */

/* The line of key id in text ("ID:BASE64\n" after a newline), copied into line. */
static void keyfile_line(const char *text, uint32_t id, char *line, size_t line_bytes)
{
    char head[16];
    snprintf(head, sizeof(head), "\n%u:", (unsigned)id);
    const char *p = strstr(text, head);
    assert_non_null(p);
    const char *end = strchr(p + 1, '\n');
    assert_non_null(end);
    assert_true((size_t)(end - p) < line_bytes);
    memcpy(line, p + 1, (size_t)(end - p));
    line[end - p] = '\0';
}

static void test_keyfile_new_round_trip(void **state)
{
    (void)state;
    static char text1[VAULT_KEYFILE_BYTES_MAX], other[VAULT_KEYFILE_BYTES_MAX];
    static char text2[VAULT_KEYFILE_BYTES_MAX], text3[VAULT_KEYFILE_BYTES_MAX];
    assert_int_equal(vault_keyfile_new(NULL, text1, sizeof(text1)), CF_OK);
    assert_true(strncmp(text1, "# Coffer master keys", 20) == 0);
    assert_true(strlen(text1) < VAULT_KEYFILE_BYTES_MAX);
    assert_int_equal(text1[strlen(text1) - 1], '\n');
    assert_int_equal(vault_keyfile_new(NULL, other, sizeof(other)), CF_OK);
    assert_string_not_equal(text1, other); /* a fresh key each time */

    struct vault *v1 = load_ok(text1);
    assert_int_equal(vault_active_id(v1), 1);
    assert_false(vault_has_key(v1, 2));
    uint8_t old_ct[64], new_ct[64], out[32];
    size_t old_len = 0, new_len = 0, out_len = 0;
    assert_int_equal(vault_seal(v1, "old", 3, "a", 1, old_ct, sizeof(old_ct), &old_len), CF_OK);

    /* Rotation keeps key 1 as it was and adds key 2, which seals from then on. */
    assert_int_equal(vault_keyfile_new(v1, text2, sizeof(text2)), CF_OK);
    char line1[128], line1_again[128];
    keyfile_line(text1, 1, line1, sizeof(line1));
    keyfile_line(text2, 1, line1_again, sizeof(line1_again));
    assert_string_equal(line1, line1_again);
    struct vault *v2 = load_ok(text2);
    assert_int_equal(vault_active_id(v2), 2);
    assert_true(vault_has_key(v2, 1));
    assert_int_equal(vault_open(v2, old_ct, old_len, "a", 1, out, sizeof(out), &out_len), CF_OK);
    assert_memory_equal(out, "old", 3);
    assert_int_equal(vault_seal(v2, "new", 3, "a", 1, new_ct, sizeof(new_ct), &new_len), CF_OK);
    assert_int_equal(vault_sealed_key_id(new_ct, new_len), 2);
    assert_int_equal(vault_open(v1, new_ct, new_len, "a", 1, out, sizeof(out), &out_len),
                     CF_ERR_CORRUPT);

    /* Once more: 3 is added, 1 and 2 stay. */
    assert_int_equal(vault_keyfile_new(v2, text3, sizeof(text3)), CF_OK);
    struct vault *v3 = load_ok(text3);
    assert_int_equal(vault_active_id(v3), 3);
    assert_true(vault_has_key(v3, 1) && vault_has_key(v3, 2));
    assert_int_equal(vault_open(v3, old_ct, old_len, "a", 1, out, sizeof(out), &out_len), CF_OK);
    assert_int_equal(vault_open(v3, new_ct, new_len, "a", 1, out, sizeof(out), &out_len), CF_OK);
    vault_free(v1);
    vault_free(v2);
    vault_free(v3);
}

static void test_keyfile_new_order_and_limit(void **state)
{
    (void)state;
    static const uint32_t ids[] = {5, 3, 9};
    static const uint8_t fills[] = {0x55, 0x33, 0x99};
    struct vault *v = load_keys(ids, fills, 3);
    static char text[VAULT_KEYFILE_BYTES_MAX];
    assert_int_equal(vault_keyfile_new(v, text, sizeof(text)), CF_OK);
    const char *p3 = strstr(text, "\n3:"), *p5 = strstr(text, "\n5:");
    const char *p9 = strstr(text, "\n9:"), *p10 = strstr(text, "\n10:");
    assert_true(p3 != NULL && p5 != NULL && p9 != NULL && p10 != NULL);
    assert_true(p3 < p5 && p5 < p9 && p9 < p10); /* ascending ids, the new one last */
    vault_free(v);

    /* A vault with VAULT_KEYS_MAX keys cannot take another; out stays untouched. */
    char full[TEXT_BYTES_MAX] = "";
    for (uint32_t id = 1; id <= VAULT_KEYS_MAX; id++)
        text_add_key(full, sizeof(full), id, (uint8_t)id);
    v = load_ok(full);
    memset(text, 'Z', sizeof(text));
    assert_int_equal(vault_keyfile_new(v, text, sizeof(text)), CF_ERR_CONFIG);
    for (size_t i = 0; i < sizeof(text); i++)
        assert_int_equal(text[i], 'Z');
    vault_free(v);
}

/* Blind indexes -------------------------------------------------------------------------------- */

static void test_blind_index(void **state)
{
    (void)state;
    static const uint32_t ids[] = {1, 2};
    static const uint8_t fills[] = {0x11, 0x22};
    struct vault *v = load_keys(ids, fills, 2);
    static const char phone[] = "+15551234567";
    uint8_t a[VAULT_BLIND_BYTES], b[VAULT_BLIND_BYTES];
    assert_int_equal(vault_blind(v, 1, "phone", phone, strlen(phone), a), CF_OK);
    assert_int_equal(vault_blind(v, 1, "phone", phone, strlen(phone), b), CF_OK);
    assert_memory_equal(a, b, VAULT_BLIND_BYTES); /* deterministic */
    assert_int_equal(vault_blind(v, 1, "email", phone, strlen(phone), b), CF_OK);
    assert_memory_not_equal(a, b, VAULT_BLIND_BYTES); /* by domain */
    assert_int_equal(vault_blind(v, 2, "phone", phone, strlen(phone), b), CF_OK);
    assert_memory_not_equal(a, b, VAULT_BLIND_BYTES); /* by key */
    assert_int_equal(vault_blind(v, 1, "phone", phone, strlen(phone) - 1, b), CF_OK);
    assert_memory_not_equal(a, b, VAULT_BLIND_BYTES); /* by value */
    /* The separator keeps the domain and the value apart. */
    assert_int_equal(vault_blind(v, 1, "ab", "c", 1, a), CF_OK);
    assert_int_equal(vault_blind(v, 1, "a", "bc", 2, b), CF_OK);
    assert_memory_not_equal(a, b, VAULT_BLIND_BYTES);
    assert_int_equal(vault_blind(v, 1, "phone", NULL, 0, a), CF_OK); /* empty value */

    /* A key that is not loaded: refused, out untouched. */
    memset(a, 0xAA, sizeof(a));
    assert_int_equal(vault_blind(v, 3, "phone", phone, strlen(phone), a), CF_ERR_CONFIG);
    assert_int_equal(vault_blind(v, 0, "phone", phone, strlen(phone), a), CF_ERR_CONFIG);
    for (size_t i = 0; i < sizeof(a); i++)
        assert_int_equal(a[i], 0xAA);
    vault_free(v);
}

/* The construction is the documented one: HMAC-SHA-256 under crypto_kdf subkey 1 of context
 * "cfblind_", over domain, 0x00, value. */
static void test_blind_index_construction(void **state)
{
    (void)state;
    static const uint32_t ids[] = {4};
    static const uint8_t fills[] = {0x42};
    struct vault *v = load_keys(ids, fills, 1);
    uint8_t master[VAULT_KEY_BYTES], subkey[32], expect[VAULT_BLIND_BYTES];
    uint8_t got[VAULT_BLIND_BYTES];
    key_fill(master, 0x42);
    assert_int_equal(crypto_kdf_derive_from_key(subkey, sizeof(subkey), 1, "cfblind_", master), 0);
    static const uint8_t msg[] = "email\0alice@example.com";
    assert_int_equal(crypto_auth_hmacsha256(expect, msg, sizeof(msg) - 1, subkey), 0);
    assert_int_equal(vault_blind(v, 4, "email", "alice@example.com", 17, got), CF_OK);
    assert_memory_equal(got, expect, VAULT_BLIND_BYTES);
    vault_free(v);
}

static int group_setup(void **state)
{
    (void)state;
    return hash_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_valid_text),
        cmocka_unit_test(test_load_rejects_malformed),
        cmocka_unit_test(test_load_key_count_and_size_bounds),
        cmocka_unit_test(test_load_id_bounds),
        cmocka_unit_test(test_load_file_permissions),
        cmocka_unit_test(test_load_file_size_bound),
        cmocka_unit_test(test_seal_open_with_dek),
        cmocka_unit_test(test_seal_format_matches_libsodium),
        cmocka_unit_test(test_seal_open_with_master_keys),
        cmocka_unit_test(test_tampering_any_byte_fails),
        cmocka_unit_test(test_wrong_aad_fails),
        cmocka_unit_test(test_changed_key_id_fails),
        cmocka_unit_test(test_open_without_the_key_fails),
        cmocka_unit_test(test_sealed_key_id),
        cmocka_unit_test(test_plaintext_size_bound),
        cmocka_unit_test(test_keyfile_new_round_trip),
        cmocka_unit_test(test_keyfile_new_order_and_limit),
        cmocka_unit_test(test_blind_index),
        cmocka_unit_test(test_blind_index_construction),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
