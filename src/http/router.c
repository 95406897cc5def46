/* router.c - matches a method and path against the route table; see http.h. */
#include <string.h>

#include "core/assert.h"
#include "http/http.h"

const char *http_method_name(enum http_method m)
{
    CF_ASSERT(m < HTTP_METHOD_COUNT);
    return m == HTTP_GET ? "GET" : "POST";
}

/* Matches one pattern; fills params (pointers into arena copies) when req != NULL. */
static bool pattern_match(const char *pattern, const char *path, struct http_request *req)
{
    size_t params_n = 0;
    const char *p = pattern, *s = path;
    while (*p != '\0' && *s != '\0') {
        if (*p == '{') {
            const char *pend = strchr(p, '}');
            const char *send = strchr(s, '/');
            CF_ASSERT(pend != NULL);
            size_t len = send != NULL ? (size_t)(send - s) : strlen(s);
            if (len == 0 || params_n == HTTP_PATH_SEGMENTS_MAX)
                return false;
            if (req != NULL) {
                req->params[params_n] = arena_strndup(req->arena, s, len);
                if (req->params[params_n] == NULL)
                    return false;
            }
            params_n++;
            p = pend + 1;
            s += len;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    if (*p != '\0' || *s != '\0')
        return false;
    if (req != NULL)
        req->params_n = params_n;
    return true;
}

int http_route_match(const struct http_route *routes, size_t n, enum http_method method,
                     const char *path, struct http_request *req, bool *path_known)
{
    CF_ASSERT(n <= HTTP_ROUTES_MAX);
    *path_known = false;
    for (size_t i = 0; i < n; i++) {
        if (!pattern_match(routes[i].pattern, path, NULL))
            continue;
        *path_known = true;
        if (routes[i].method == method) {
            if (!pattern_match(routes[i].pattern, path, req))
                return -1;
            return (int)i;
        }
    }
    return -1;
}

void http_route_allow(const struct http_route *routes, size_t n, const char *path, char *buf,
                      size_t buf_bytes)
{
    CF_ASSERT(buf_bytes >= 16);
    buf[0] = '\0';
    bool seen[HTTP_METHOD_COUNT] = {false};
    for (size_t i = 0; i < n; i++) {
        if (pattern_match(routes[i].pattern, path, NULL) && !seen[routes[i].method]) {
            seen[routes[i].method] = true;
            if (buf[0] != '\0')
                strncat(buf, ", ", buf_bytes - strlen(buf) - 1);
            strncat(buf, http_method_name(routes[i].method), buf_bytes - strlen(buf) - 1);
        }
    }
}
