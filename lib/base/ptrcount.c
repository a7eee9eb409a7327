#include "base/ptrcount.h"

#include <stdint.h>
#include <stdlib.h>

#include "base/util.h"

#define INITIAL_SLOTS 16

struct slot {
    const void *key; /* NULL: free */
    size_t count;
};

struct gd_ptrcount {
    struct slot *slots;
    size_t nslots; /* a power of two */
    size_t nkeys;
};

static size_t home_of(const gd_ptrcount_t *pc, const void *key)
{
    uint64_t h = (uint64_t)(uintptr_t)key;
    h ^= h >> 17; /* keys are allocations: their low bits say little */
    h *= 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (pc->nslots - 1);
}

/* The slot of @key, or the free slot where it would go. */
static struct slot *find(const gd_ptrcount_t *pc, const void *key)
{
    for (size_t i = home_of(pc, key);; i = (i + 1) & (pc->nslots - 1))
        if (pc->slots[i].key == key || pc->slots[i].key == NULL)
            return &pc->slots[i];
}

static void grow(gd_ptrcount_t *pc)
{
    struct slot *old = pc->slots;
    size_t nold = pc->nslots;

    pc->nslots = nold * 2;
    pc->slots = gd_xcalloc(pc->nslots, sizeof(*pc->slots));
    for (size_t i = 0; i < nold; i++)
        if (old[i].key != NULL)
            *find(pc, old[i].key) = old[i];
    free(old);
}

/* Frees @s, then moves back each entry after it that probed past the hole, so that every key
 * stays reachable from its home without a tombstone. */
static void remove_slot(gd_ptrcount_t *pc, struct slot *s)
{
    size_t mask = pc->nslots - 1, hole = (size_t)(s - pc->slots);

    pc->slots[hole].key = NULL;
    pc->nkeys--;
    for (size_t i = (hole + 1) & mask; pc->slots[i].key != NULL; i = (i + 1) & mask) {
        size_t home = home_of(pc, pc->slots[i].key);
        /* The entry may move to the hole unless its home lies in (hole, i], cyclically. */
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            pc->slots[hole] = pc->slots[i];
            pc->slots[i].key = NULL;
            hole = i;
        }
    }
}

gd_ptrcount_t *gd_ptrcount_new(void)
{
    gd_ptrcount_t *pc = gd_xcalloc(1, sizeof(*pc));

    pc->nslots = INITIAL_SLOTS;
    pc->slots = gd_xcalloc(pc->nslots, sizeof(*pc->slots));
    return pc;
}

gd_ptrcount_t *gd_ptrcount_free(gd_ptrcount_t *pc)
{
    if (pc == NULL)
        return NULL;
    free(pc->slots);
    free(pc);
    return NULL;
}

size_t gd_ptrcount_get(const gd_ptrcount_t *pc, const void *key)
{
    const struct slot *s = find(pc, key);
    return s->key != NULL ? s->count : 0;
}

void gd_ptrcount_add(gd_ptrcount_t *pc, const void *key, size_t n)
{
    if (n == 0)
        return;
    if (2 * (pc->nkeys + 1) > pc->nslots)
        grow(pc);
    struct slot *s = find(pc, key);
    if (s->key == NULL) {
        s->key = key;
        s->count = 0;
        pc->nkeys++;
    }
    s->count += n;
}

void gd_ptrcount_sub(gd_ptrcount_t *pc, const void *key, size_t n)
{
    if (n == 0)
        return;
    struct slot *s = find(pc, key);
    GD_REQUIRE(s->key == key && s->count >= n);
    s->count -= n;
    if (s->count == 0)
        remove_slot(pc, s);
}

size_t gd_ptrcount_keys(const gd_ptrcount_t *pc)
{
    return pc->nkeys;
}
