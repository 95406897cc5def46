/*
 * url.h - which outbound URLs Coffer will call (an SMS/email provider, a payment gateway).
 *
 * A URL is allowed when it is at most bytes_max bytes of printable ASCII without spaces or
 * backslashes, its scheme is https:// or http://, its authority is a well-formed host ("name",
 * "1.2.3.4", "[v6]") with an optional port 1..65535 and no user info, and - for plain http -
 * the host is loopback (localhost, 127.0.0.0/8, ::1): secrets and personal data never leave the
 * machine unencrypted. With no_query, a '?' or '#' anywhere refuses it too (a base URL that
 * paths are appended to). Pure; any thread.
 */
#ifndef COFFER_CORE_URL_H
#define COFFER_CORE_URL_H

#include <stdbool.h>
#include <stddef.h>

#define URL_HOST_BYTES_MAX 255 /* a DNS name's longest text form */

bool url_is_allowed(const char *url, size_t bytes_max, bool no_query);

#endif
