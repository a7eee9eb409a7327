#include "base/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "base/util.h"

#define ARENA_ALIGN alignof(max_align_t)
/* The size of the arena's first own block; each later one is twice the last, or bigger when a
 * single object needs it. */
#define FIRST_BLOCK_BYTES 4096

struct gd_arena_block {
    struct gd_arena_block *next;
    size_t len; /* bytes[] */
    alignas(max_align_t) char bytes[];
};

void gd_arena_init(gd_arena_t *arena, void *first, size_t len)
{
    *arena = (gd_arena_t){._cur = first, ._end = (char *)first + len};
}

/* Takes a block of the arena's own with room for @len bytes at @align. */
static void grow(gd_arena_t *arena, size_t len, size_t align)
{
    size_t want = arena->_blocks != NULL ? arena->_blocks->len * 2 : FIRST_BLOCK_BYTES;

    GD_REQUIRE(len <= SIZE_MAX / 2 - sizeof(struct gd_arena_block) - align);
    if (want < len + align)
        want = len + align;
    struct gd_arena_block *b = gd_xmalloc(sizeof(*b) + want);
    b->next = arena->_blocks;
    b->len = want;
    arena->_blocks = b;
    arena->_cur = b->bytes;
    arena->_end = b->bytes + want;
}

static void *bump(gd_arena_t *arena, size_t len, size_t align)
{
    uintptr_t at = ((uintptr_t)arena->_cur + align - 1) & ~(uintptr_t)(align - 1);

    if (arena->_cur == NULL || at > (uintptr_t)arena->_end || len > (uintptr_t)arena->_end - at) {
        grow(arena, len, align);
        at = ((uintptr_t)arena->_cur + align - 1) & ~(uintptr_t)(align - 1);
    }
    arena->_used += at - (uintptr_t)arena->_cur + len;
    arena->_cur = (char *)at + len;
    return (void *)at;
}

void *gd_arena_alloc(gd_arena_t *arena, size_t len)
{
    return bump(arena, len, ARENA_ALIGN);
}

char *gd_arena_alloc_text(gd_arena_t *arena, size_t len)
{
    return bump(arena, len, 1);
}

h2o_iovec_t gd_arena_strdup(gd_arena_t *arena, const char *s, size_t len)
{
    char *p = bump(arena, len + 1, 1);

    if (len != 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return h2o_iovec_init(p, len);
}

h2o_iovec_t gd_arena_concat(gd_arena_t *arena, const h2o_iovec_t *list, size_t n)
{
    size_t len = 0;

    for (size_t i = 0; i < n; i++)
        len += list[i].len;
    char *p = bump(arena, len + 1, 1), *w = p;
    for (size_t i = 0; i < n; i++) {
        if (list[i].len != 0)
            memcpy(w, list[i].base, list[i].len);
        w += list[i].len;
    }
    *w = '\0';
    return h2o_iovec_init(p, len);
}

size_t gd_arena_used(const gd_arena_t *arena)
{
    return arena->_used;
}

void gd_arena_clear(gd_arena_t *arena)
{
    while (arena->_blocks != NULL) {
        struct gd_arena_block *b = arena->_blocks;
        arena->_blocks = b->next;
        free(b);
    }
    arena->_cur = arena->_end = NULL;
}
