/*
 * arena.h - bump allocation tied to one unit of work (an HTTP request, a writer batch).
 *
 * Everything allocated from an arena is freed at once by arena_reset or arena_destroy; nothing
 * is freed one by one. Allocations are 16-byte aligned. An arena refuses to grow past its
 * bytes_max and returns NULL instead, so a hostile request cannot take unbounded memory.
 *
 * Ownership: arena_create returns an arena the caller frees with arena_destroy. Pointers from
 * arena_alloc belong to the arena and die with its next reset.
 */
#ifndef COFFER_CORE_ARENA_H
#define COFFER_CORE_ARENA_H

#include <stddef.h>

struct arena;

/* A new arena that may hold up to bytes_max bytes of allocations. NULL on out of memory. */
struct arena *arena_create(size_t bytes_max);
void arena_destroy(struct arena *a);

/* Frees every allocation but keeps the first chunk for reuse. */
void arena_reset(struct arena *a);

/* bytes of uninitialised memory, or NULL when the arena is full or memory is out. */
void *arena_alloc(struct arena *a, size_t bytes);
void *arena_calloc(struct arena *a, size_t n, size_t size);

/* A NUL-terminated copy of the first len bytes of s. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

/* Bytes currently handed out (for tests and metrics). */
size_t arena_used_bytes(const struct arena *a);

#endif
