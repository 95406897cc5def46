/*
 * buf.h - a growable byte buffer with a hard maximum, backed by an arena.
 *
 * Used to build response bodies and metrics text. Appends past bytes_max (or past the arena's
 * own limit) set the buffer's `overflow` flag and are dropped; callers check buf_ok() once at
 * the end instead of after every append. data is always NUL-terminated.
 */
#ifndef COFFER_CORE_BUF_H
#define COFFER_CORE_BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "core/arena.h"

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t bytes_max;
    bool overflow;
    struct arena *arena;
};

void buf_init(struct buf *b, struct arena *arena, size_t bytes_max);
void buf_append(struct buf *b, const char *s, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool buf_ok(const struct buf *b) { return !b->overflow; }

#endif
