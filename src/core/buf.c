/* buf.c - arena-backed bounded buffer; see buf.h. */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/assert.h"

void buf_init(struct buf *b, struct arena *arena, size_t bytes_max)
{
    CF_ASSERT(arena != NULL && bytes_max > 0);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->bytes_max = bytes_max;
    b->overflow = false;
    b->arena = arena;
}

static bool buf_reserve(struct buf *b, size_t extra)
{
    if (b->overflow || b->len + extra + 1 > b->bytes_max) {
        b->overflow = true;
        return false;
    }
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap == 0 ? 1024 : b->cap * 2;
    while (cap < b->len + extra + 1)
        cap *= 2;
    if (cap > b->bytes_max)
        cap = b->bytes_max;
    char *p = arena_alloc(b->arena, cap);
    if (p == NULL) {
        b->overflow = true;
        return false;
    }
    if (b->len > 0)
        memcpy(p, b->data, b->len);
    b->data = p;
    b->cap = cap;
    return true;
}

void buf_append(struct buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    CF_ASSERT(b->len < b->cap);
}

void buf_puts(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_printf(struct buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->overflow = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        buf_append(b, small, (size_t)n);
        return;
    }
    if (!buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}
