/* arena.c - chunked bump allocator; see arena.h. */
#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"

#define ARENA_ALIGN 16
#define ARENA_CHUNK_BYTES_MIN (16 * 1024)

struct chunk {
    struct chunk *next;
    size_t size_bytes;
    size_t used_bytes;
    _Alignas(16) unsigned char data[];
};

struct arena {
    struct chunk *head;  /* current chunk, most recent first */
    size_t bytes_max;    /* total chunk bytes this arena may own */
    size_t owned_bytes;  /* sum of chunk sizes */
    size_t handed_bytes; /* sum of allocations since the last reset */
};

static struct chunk *chunk_new(size_t size_bytes)
{
    struct chunk *c = malloc(sizeof(*c) + size_bytes);
    if (c == NULL)
        return NULL;
    c->next = NULL;
    c->size_bytes = size_bytes;
    c->used_bytes = 0;
    return c;
}

struct arena *arena_create(size_t bytes_max)
{
    CF_ASSERT(bytes_max > 0);
    struct arena *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->bytes_max = bytes_max;
    return a;
}

void arena_destroy(struct arena *a)
{
    if (a == NULL)
        return;
    struct chunk *c = a->head;
    while (c != NULL) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void arena_reset(struct arena *a)
{
    CF_ASSERT(a != NULL);
    struct chunk *keep = NULL;
    struct chunk *c = a->head;
    while (c != NULL) {
        struct chunk *next = c->next;
        if (next == NULL) {
            keep = c; /* the oldest, first chunk */
        } else {
            free(c);
        }
        c = next;
    }
    a->head = keep;
    a->owned_bytes = 0;
    if (keep != NULL) {
        keep->used_bytes = 0;
        a->owned_bytes = keep->size_bytes;
    }
    a->handed_bytes = 0;
}

void *arena_alloc(struct arena *a, size_t bytes)
{
    CF_ASSERT(a != NULL);
    if (bytes == 0)
        bytes = 1;
    if (bytes > SIZE_MAX / 2)
        return NULL;
    size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    struct chunk *c = a->head;
    if (c == NULL || c->size_bytes - c->used_bytes < need) {
        size_t size = need > ARENA_CHUNK_BYTES_MIN ? need : ARENA_CHUNK_BYTES_MIN;
        if (c != NULL && c->size_bytes * 2 > size && c->size_bytes * 2 >= need)
            size = c->size_bytes * 2;
        if (a->owned_bytes + size > a->bytes_max) {
            size = need; /* try the smallest chunk that fits before giving up */
            if (a->owned_bytes + size > a->bytes_max)
                return NULL;
        }
        c = chunk_new(size);
        if (c == NULL)
            return NULL;
        c->next = a->head;
        a->head = c;
        a->owned_bytes += size;
    }
    void *p = c->data + c->used_bytes;
    c->used_bytes += need;
    a->handed_bytes += need;
    CF_ASSERT(c->used_bytes <= c->size_bytes);
    CF_ASSERT(((uintptr_t)p & (ARENA_ALIGN - 1)) == 0);
    return p;
}

void *arena_calloc(struct arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    void *p = arena_alloc(a, n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

size_t arena_used_bytes(const struct arena *a) { return a->handed_bytes; }
