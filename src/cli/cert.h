/*
 * cert.h - TLS material for `coffer serve`: a self-signed development certificate, and a check
 * of the certificate and key an operator hands to serve. Uses OpenSSL's libcrypto.
 *
 * cert_create writes DIR/key.pem (mode 0600, PKCS#8) and DIR/cert.pem (mode 0644): an EC P-256
 * key and an X.509 v3 certificate signed with it (SHA-256), valid CERT_VALIDITY_DAYS from now,
 * with a random 128-bit serial, CN = the first host (default "localhost"), subjectAltName
 * DNS:localhost, IP:127.0.0.1, IP:::1 plus every given host (IP: when it parses as an IPv4 or
 * IPv6 address, else DNS:), basicConstraints CA:FALSE, keyUsage digitalSignature and
 * extendedKeyUsage serverAuth. It is meant for development and tests: no browser trusts it
 * until its cert.pem is installed as a trusted CA.
 *
 * Both functions write their own messages on stderr (prefixed "coffer cert:" or
 * "coffer serve:"), for the command line; they are called from the main thread only.
 */
#ifndef COFFER_CLI_CERT_H
#define COFFER_CLI_CERT_H

#include <stddef.h>

#include "core/assert.h"
#include "core/error.h"

/* The files cert_create writes into its directory. */
#define CERT_CERT_FILE "cert.pem"
#define CERT_KEY_FILE "key.pem"

/* Hosts named with --host: a development certificate rarely needs more than a few names. */
#define CERT_HOSTS_MAX 16

/* A host name: an X.509 CN holds at most 64 characters (RFC 5280 ub-common-name). */
#define CERT_HOST_BYTES_MAX 64

/* A development certificate expires after 90 days, as short-lived certificates should. */
#define CERT_VALIDITY_DAYS 90

/* A PEM file serve reads (certificate chain or key): a few certificates fit many times over. */
#define CERT_PEM_BYTES_MAX (64 * 1024)

/* Creates DIR (mode 0700, last component only) if it does not exist, then DIR/key.pem and
 * DIR/cert.pem for hosts[0..hosts_n). Refuses (CF_ERR_IO) when either file exists: nothing is
 * overwritten. CF_ERR_CONFIG for a malformed host or too many, CF_ERR_IO when a file cannot be
 * written (what was created is removed again), CF_ERR_INTERNAL when OpenSSL fails. */
CF_WARN_UNUSED enum cf_err cert_create(const char *dir, const char *const *hosts, size_t hosts_n);

/* Checks that cert_pem begins with a certificate OpenSSL can parse and that key_pem is an
 * unencrypted private key matching it; warns (log) when the certificate is expired or not yet
 * valid. CF_ERR_CONFIG with a message naming cert_path/key_path otherwise. Reads only. */
CF_WARN_UNUSED enum cf_err cert_pair_check(const char *cert_pem, const char *key_pem,
                                           const char *cert_path, const char *key_path);

#endif
