/*
 * gd_arena: a bump allocator for memory that lives exactly as long as its owner, a request:
 * its calls, their rendered texts, the state of its dependencies. Everything is freed at once
 * by gd_arena_clear().
 *
 * Its first block is memory the owner provides, usually allocated together with the owner and
 * sized from what owners of the same kind needed before, so that an owner costs one allocation.
 * What does not fit goes to blocks of the arena's own (4 KiB, or more as they go). h2o's pool,
 * which this replaces for requests, takes a 4 KiB chunk for the first byte and a malloc() of
 * its own for each object of 1 KiB or more: a request of the profile workload used 9.5 KB in
 * six allocations for 6.2 KB of objects.
 *
 * Not thread-safe: an arena belongs to one thread.
 */
#ifndef GD_ARENA_H
#define GD_ARENA_H

#include <stddef.h>

#include <h2o/memory.h>

struct gd_arena_block;

typedef struct gd_arena {
    /* private */
    char *_cur, *_end;               /* the free part of the block in use */
    struct gd_arena_block *_blocks;  /* the arena's own blocks, newest first */
    size_t _used;                    /* bytes handed out, alignment padding included */
} gd_arena_t;

/** Makes @arena empty, with @first (@len bytes; may be NULL when @len is 0) as its first block. */
void gd_arena_init(gd_arena_t *arena, void *first, size_t len);
/** @len bytes aligned for any object; never NULL (dies when memory is out, as gd_xmalloc). */
void *gd_arena_alloc(gd_arena_t *arena, size_t len);
/** @len bytes for text, unaligned; never NULL. */
char *gd_arena_alloc_text(gd_arena_t *arena, size_t len);
/** A NUL-terminated copy of the @len bytes at @s (the length excludes the NUL). */
h2o_iovec_t gd_arena_strdup(gd_arena_t *arena, const char *s, size_t len);
/** The @n texts of @list one after the other, NUL-terminated. */
h2o_iovec_t gd_arena_concat(gd_arena_t *arena, const h2o_iovec_t *list, size_t n);
/** What the arena has handed out since gd_arena_init(), alignment included: the first block an
 * owner like this one would have needed to allocate nothing more. */
size_t gd_arena_used(const gd_arena_t *arena);
/** Frees the arena's own blocks; the first block stays the owner's. The arena is then unusable
 * until gd_arena_init(). */
void gd_arena_clear(gd_arena_t *arena);

#endif
