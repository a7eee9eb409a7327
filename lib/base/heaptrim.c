#include <malloc.h>
#include <stdlib.h>

#include "base/heaptrim.h"

/* Where glibc's dynamic thresholds end up after large blocks (its DEFAULT_MMAP_THRESHOLD_MAX on
 * 64-bit, and twice that for the trim): blocks below 32 MiB come from the heap, and a free top
 * is kept while a burst goes on. Setting either threshold stops glibc from moving them, so they
 * are set once, at the first trim: a process that never held a large burst keeps glibc's own. */
#define MMAP_THRESHOLD_BYTES (32 << 20)
#define TRIM_THRESHOLD_BYTES (64 << 20)

/* glibc trims an arena's top in a free() of a chunk of 64 KiB or more (its
 * FASTBIN_CONSOLIDATION_THRESHOLD); below the mmap threshold, so it comes from the arena. */
#define TRIGGER_BYTES (64 << 10)

void gd_heap_give_back(void)
{
    (void)malloc_trim(0); /* 1: memory was given back, 0: there was none; both fine */

    /* For the length of one free() in this thread's arena, any free top is too large. Another
     * thread's free() meanwhile trims its own arena's top too, which only gives back more. */
    (void)mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    (void)mallopt(M_TRIM_THRESHOLD, 0);
    void *volatile trigger = malloc(TRIGGER_BYTES); /* volatile: the pair must not be elided */
    free(trigger);
    (void)mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
}
