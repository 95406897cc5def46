/* cert.c - a self-signed development certificate and the serve-time pair check; see cert.h. */
#include "cli/cert.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/log.h"

#define CERT_VALIDITY_S ((long)CERT_VALIDITY_DAYS * 24 * 3600)
#define SERIAL_BYTES 16        /* 128 random bits */
#define DNS_LABEL_BYTES_MAX 63 /* RFC 1035 */

/* Names every development certificate carries, so https://localhost works as it is. */
static const char *const default_names[] = {"localhost", "127.0.0.1", "::1"};
#define DEFAULT_NAMES_N (sizeof(default_names) / sizeof(default_names[0]))
#define NAMES_MAX (CERT_HOSTS_MAX + DEFAULT_NAMES_N)

static bool host_is_ip(const char *h)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, addr) == 1 || inet_pton(AF_INET6, h, addr) == 1;
}

/* A DNS name: dot-separated labels of letters, digits and inner hyphens; "*." may lead. */
static bool host_is_dns_name(const char *h)
{
    if (strncmp(h, "*.", 2) == 0)
        h += 2;
    size_t label = 0;
    char prev = '.';
    for (const char *p = h;; p++) {
        char ch = *p;
        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > DNS_LABEL_BYTES_MAX || prev == '-')
                return false;
            if (ch == '\0')
                return true;
            label = 0;
        } else if (isalnum((unsigned char)ch) || (ch == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
        prev = ch;
    }
}

/* The subjectAltName entries: the defaults, then each host once. */
static enum cf_err names_collect(const char *const *hosts, size_t hosts_n,
                                 const char *names[NAMES_MAX], size_t *names_n)
{
    if (hosts_n > CERT_HOSTS_MAX) {
        fprintf(stderr, "coffer cert: at most %d --host names\n", CERT_HOSTS_MAX);
        return CF_ERR_CONFIG;
    }
    size_t n = 0;
    for (size_t i = 0; i < DEFAULT_NAMES_N; i++)
        names[n++] = default_names[i];
    for (size_t i = 0; i < hosts_n; i++) {
        const char *h = hosts[i];
        if (strlen(h) > CERT_HOST_BYTES_MAX || !(host_is_ip(h) || host_is_dns_name(h))) {
            fprintf(stderr,
                    "coffer cert: '%s' is neither an IP address nor a DNS name of at "
                    "most %d characters\n",
                    h, CERT_HOST_BYTES_MAX);
            return CF_ERR_CONFIG;
        }
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = strcasecmp(names[j], h) == 0;
        if (!seen)
            names[n++] = h;
    }
    CF_ASSERT(n >= DEFAULT_NAMES_N && n <= NAMES_MAX);
    *names_n = n;
    return CF_OK;
}

static bool san_push(GENERAL_NAMES *san, const char *h)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    if (g == NULL)
        return false;
    if (host_is_ip(h)) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(h);
        if (ip == NULL) {
            GENERAL_NAME_free(g);
            return false;
        }
        GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (dns == NULL || ASN1_STRING_set(dns, h, -1) != 1) {
            ASN1_IA5STRING_free(dns);
            GENERAL_NAME_free(g);
            return false;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, dns);
    }
    if (sk_GENERAL_NAME_push(san, g) <= 0) {
        GENERAL_NAME_free(g);
        return false;
    }
    return true;
}

/* basicConstraints CA:FALSE and keyUsage digitalSignature (both critical), extendedKeyUsage
 * serverAuth, subjectAltName. */
static bool extensions_add(X509 *x, const char *const *names, size_t names_n)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    GENERAL_NAMES *san = sk_GENERAL_NAME_new_null();
    bool ok = bc != NULL && ku != NULL && eku != NULL && san != NULL;
    if (ok) {
        bc->ca = 0;
        ok = ASN1_BIT_STRING_set_bit(ku, 0, 1) == 1 && /* bit 0: digitalSignature */
             sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) > 0;
    }
    for (size_t i = 0; ok && i < names_n; i++)
        ok = san_push(san, names[i]);
    ok = ok && X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) == 1 &&
         X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) == 1 &&
         X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT) == 1 &&
         X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT) == 1;
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(ku);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    GENERAL_NAMES_free(san);
    return ok;
}

static bool serial_set(X509 *x)
{
    unsigned char rnd[SERIAL_BYTES];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return false;
    BIGNUM *bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    bool ok =
        bn != NULL && !BN_is_zero(bn) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

/* The self-signed certificate for key; NULL when OpenSSL fails. */
static X509 *cert_build(EVP_PKEY *key, const char *cn, const char *const *names, size_t names_n)
{
    CF_ASSERT(key != NULL && cn != NULL && names_n >= DEFAULT_NAMES_N);
    X509 *x = X509_new();
    if (x == NULL)
        return NULL;
    X509_NAME *subject = X509_get_subject_name(x);
    bool ok = X509_set_version(x, X509_VERSION_3) == 1 && serial_set(x) &&
              X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                         -1, 0) == 1 &&
              X509_set_issuer_name(x, subject) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
              X509_gmtime_adj(X509_getm_notAfter(x), CERT_VALIDITY_S) != NULL &&
              X509_set_pubkey(x, key) == 1 && extensions_add(x, names, names_n) &&
              X509_sign(x, key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    CF_ASSERT(X509_get_version(x) == X509_VERSION_3);
    return x;
}

/* Creates path (which must not exist) with mode and writes the key, or the certificate when
 * x is given, as PEM. Removes the file again when writing fails. */
static enum cf_err pem_file_create(const char *path, mode_t mode, EVP_PKEY *key, X509 *x)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        fprintf(stderr, "coffer cert: cannot create %s: %s\n", path, strerror(errno));
        return CF_ERR_IO;
    }
    BIO *bio = BIO_new_fd(fd, BIO_NOCLOSE); /* unbuffered: no stdio buffer holds the key */
    bool ok = fchmod(fd, mode) == 0 && bio != NULL &&
              (x != NULL ? PEM_write_bio_X509(bio, x) == 1
                         : PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1) &&
              BIO_flush(bio) == 1 && fsync(fd) == 0;
    BIO_free(bio);
    if (close(fd) != 0)
        ok = false;
    if (!ok) {
        fprintf(stderr, "coffer cert: cannot write %s\n", path);
        unlink(path);
        return CF_ERR_IO;
    }
    return CF_OK;
}

/* DIR/key.pem and DIR/cert.pem into key_path and cert_path, creating DIR when missing and
 * refusing when either file exists. */
static enum cf_err paths_prepare(const char *dir, char key_path[CONFIG_PATH_BYTES_MAX],
                                 char cert_path[CONFIG_PATH_BYTES_MAX])
{
    if ((size_t)snprintf(key_path, CONFIG_PATH_BYTES_MAX, "%s/%s", dir, CERT_KEY_FILE) >=
            CONFIG_PATH_BYTES_MAX ||
        (size_t)snprintf(cert_path, CONFIG_PATH_BYTES_MAX, "%s/%s", dir, CERT_CERT_FILE) >=
            CONFIG_PATH_BYTES_MAX) {
        fprintf(stderr, "coffer cert: the directory name is too long\n");
        return CF_ERR_CONFIG;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "coffer cert: cannot create %s: %s\n", dir, strerror(errno));
        return CF_ERR_IO;
    }
    struct stat st;
    const char *exists = lstat(cert_path, &st) == 0  ? cert_path
                         : lstat(key_path, &st) == 0 ? key_path
                                                     : NULL;
    if (exists != NULL) {
        fprintf(stderr, "coffer cert: %s already exists; refusing to overwrite it\n", exists);
        return CF_ERR_IO;
    }
    return CF_OK;
}

enum cf_err cert_create(const char *dir, const char *const *hosts, size_t hosts_n)
{
    CF_ASSERT(dir != NULL && (hosts != NULL || hosts_n == 0));
    const char *names[NAMES_MAX];
    size_t names_n = 0;
    char key_path[CONFIG_PATH_BYTES_MAX], cert_path[CONFIG_PATH_BYTES_MAX];
    enum cf_err err = names_collect(hosts, hosts_n, names, &names_n);
    if (err == CF_OK)
        err = paths_prepare(dir, key_path, cert_path);
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    if (err == CF_OK) {
        key = EVP_EC_gen("P-256");
        x = key != NULL ? cert_build(key, hosts_n > 0 ? hosts[0] : "localhost", names, names_n)
                        : NULL;
        if (x == NULL) {
            fprintf(stderr, "coffer cert: OpenSSL could not create the key or certificate\n");
            err = CF_ERR_INTERNAL;
        }
    }
    if (err == CF_OK)
        err = pem_file_create(key_path, 0600, key, NULL);
    if (err == CF_OK && (err = pem_file_create(cert_path, 0644, NULL, x)) != CF_OK)
        unlink(key_path);
    CF_ASSERT(err != CF_OK || (key != NULL && x != NULL));
    X509_free(x);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return err;
}

/* PEM callback for an encrypted key: serve has no password to give. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

static void validity_warn(const X509 *x, const char *cert_path)
{
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        cf_log(LOG_WARN, "the TLS certificate has expired; clients will refuse it", "file",
               cert_path, NULL);
    else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        cf_log(LOG_WARN, "the TLS certificate is not valid yet; clients will refuse it", "file",
               cert_path, NULL);
}

enum cf_err cert_pair_check(const char *cert_pem, const char *key_pem, const char *cert_path,
                            const char *key_path)
{
    CF_ASSERT(cert_pem != NULL && key_pem != NULL && cert_path != NULL && key_path != NULL);
    BIO *cb = BIO_new_mem_buf(cert_pem, -1);
    BIO *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = cb != NULL ? PEM_read_bio_X509(cb, NULL, no_password, NULL) : NULL;
    EVP_PKEY *key = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL) : NULL;
    enum cf_err err = CF_ERR_CONFIG;
    if (x == NULL)
        fprintf(stderr, "coffer serve: %s holds no PEM certificate that can be read\n", cert_path);
    else if (key == NULL)
        fprintf(stderr, "coffer serve: %s holds no unencrypted PEM private key\n", key_path);
    else if (X509_check_private_key(x, key) != 1)
        fprintf(stderr, "coffer serve: the key in %s does not belong to the certificate in %s\n",
                key_path, cert_path);
    else
        err = CF_OK;
    if (err == CF_OK)
        validity_warn(x, cert_path);
    X509_free(x);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error();
    return err;
}
