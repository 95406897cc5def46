/*
 * notifier.h - how Coffer sends one-time codes and notices by SMS or email.
 *
 * One interface, two kinds:
 *   - "outbox" (the built-in development notifier): each message is stored in the table
 *     id_outbox, its recipient and text sealed with the master key (vault.h) so the database
 *     holds no phone number, email or code in the clear; the recipient also gets a blind index
 *     so operators and tests can read the messages sent to one address (notifier_outbox_list).
 *   - "http" (a provider): POST of a JSON body {"channel","to","subject","body","id"} to a
 *     configured URL with libcurl, signed with a shared secret: header
 *     "Coffer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>." + body)>";
 *     a 2xx answer is success; timeout NOTIFIER_HTTP_TIMEOUT_MS; redirects not followed;
 *     https required unless the URL's host is loopback.
 *
 * Messages are sent after the transaction that created the code commits; a failure to send
 * is logged (without the recipient or text) and reported to the caller, which answers the
 * same as success when revealing it would tell whether an account exists.
 */
#ifndef COFFER_IDENTITY_NOTIFIER_H
#define COFFER_IDENTITY_NOTIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"
#include "crypto/vault.h"
#include "store/sql/sql.h"

#define NOTIFIER_HTTP_TIMEOUT_MS 5000
#define NOTIFIER_TO_BYTES_MAX 320 /* an email address (RFC 5321 path) or an E.164 number */
#define NOTIFIER_SUBJECT_BYTES_MAX 128
#define NOTIFIER_BODY_BYTES_MAX 1024
#define NOTIFIER_URL_BYTES_MAX 1024
#define NOTIFIER_SECRET_BYTES_MAX 256
#define NOTIFIER_OUTBOX_PAGE_MAX 100
/* The master key id whose index key makes the outbox's blind indexes. Key 1 must stay loaded
 * (rotation adds keys, it never drops 1) or the outbox can no longer be listed. */
#define NOTIFIER_OUTBOX_INDEX_KEY_ID 1

enum notifier_channel { NOTIFIER_SMS = 0, NOTIFIER_EMAIL = 1 };

struct notifier_message {
    enum notifier_channel channel;
    const char *to;      /* normalized phone (E.164) or email */
    const char *subject; /* email only; may be NULL */
    const char *body;
};

struct notifier;

/* The development outbox on db; vault seals the rows (db and vault must outlive it).
 * CF_ERR_CONFIG when the vault lacks key NOTIFIER_OUTBOX_INDEX_KEY_ID. */
CF_WARN_UNUSED enum cf_err notifier_outbox_create(struct sqldb *db, const struct vault *vault,
                                                  struct notifier **out);
/* The HTTP provider. CF_ERR_CONFIG for a bad URL (not http(s), or http to a non-loopback host)
 * or an empty secret. */
CF_WARN_UNUSED enum cf_err notifier_http_create(const char *url, const char *secret,
                                                struct notifier **out);
void notifier_free(struct notifier *n);

/* Sends (or stores) m. CF_ERR_INVALID_FIELD when `to` is empty or a text is over its bound;
 * CF_ERR_IO when the provider fails or answers other than 2xx; the SQL facade's errors for the
 * outbox. Thread-safe: one notifier may be used by several threads at once. */
CF_WARN_UNUSED enum cf_err notifier_send(struct notifier *n, const struct notifier_message *m);

/* The schema migration for id_outbox (include it in the identity schema's list). */
extern const struct sql_migration notifier_outbox_migration;

/* One message read back from the outbox. */
struct notifier_outbox_item {
    uint64_t id;
    int64_t at_us;
    enum notifier_channel channel;
    char to[NOTIFIER_TO_BYTES_MAX + 1];
    char subject[NOTIFIER_SUBJECT_BYTES_MAX + 1];
    char body[NOTIFIER_BODY_BYTES_MAX + 1];
};

/* The newest messages (up to limit <= NOTIFIER_OUTBOX_PAGE_MAX) sent to `to` (exact,
 * normalized), newest first. CF_ERR_NOT_FOUND when n is an HTTP notifier. */
CF_WARN_UNUSED enum cf_err notifier_outbox_list(struct notifier *n, const char *to, size_t limit,
                                                struct notifier_outbox_item *out, size_t *n_out);

/* Deletes every outbox message sent to `to`, inside tx (closing an account). A no-op for the
 * HTTP provider. */
CF_WARN_UNUSED enum cf_err notifier_outbox_erase(struct notifier *n, struct sqltx *tx,
                                                 const char *to);

#endif
