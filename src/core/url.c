/* url.c - the outbound URL rules of url.h. */
#include "core/url.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

static bool host_is_loopback(const char *host)
{
    struct in_addr a4;
    if (strcasecmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return false;
}

static bool port_is_valid(const char *p, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* The host of an authority ("host", "host:port", "[v6]" or "[v6]:port"; no user info) into
 * host; false when the authority is malformed. */
static bool authority_host(const char *a, size_t n, char host[URL_HOST_BYTES_MAX + 1])
{
    const char *end = a + n;
    const char *h = a, *h_end;
    const char *allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_";
    if (n > 0 && a[0] == '[') {
        h = a + 1;
        h_end = memchr(h, ']', (size_t)(end - h));
        allowed = "0123456789abcdefABCDEF:.";
        if (h_end == NULL)
            return false;
    } else {
        h_end = memchr(a, ':', n);
        if (h_end == NULL)
            h_end = end;
    }
    size_t host_len = (size_t)(h_end - h);
    if (host_len == 0 || host_len > URL_HOST_BYTES_MAX)
        return false;
    for (size_t i = 0; i < host_len; i++) {
        if (strchr(allowed, h[i]) == NULL)
            return false;
    }
    const char *rest = h_end + (a[0] == '[' ? 1 : 0);
    if (rest != end && (*rest != ':' || !port_is_valid(rest + 1, (size_t)(end - rest - 1))))
        return false;
    memcpy(host, h, host_len);
    host[host_len] = '\0';
    return true;
}

bool url_is_allowed(const char *url, size_t bytes_max, bool no_query)
{
    size_t n = strnlen(url, bytes_max + 1);
    if (n == 0 || n > bytes_max)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (url[i] <= 0x20 || url[i] >= 0x7f || url[i] == '\\' ||
            (no_query && (url[i] == '?' || url[i] == '#')))
            return false;
    }
    bool tls = strncasecmp(url, "https://", 8) == 0;
    if (!tls && strncasecmp(url, "http://", 7) != 0)
        return false;
    const char *authority = url + (tls ? 8 : 7);
    size_t authority_len = strcspn(authority, "/?#");
    char host[URL_HOST_BYTES_MAX + 1];
    if (!authority_host(authority, authority_len, host))
        return false; /* also refuses user info ("user:pass@host") */
    return tls || host_is_loopback(host);
}
