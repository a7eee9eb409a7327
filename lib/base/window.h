/*
 * gd_window: a count of events over a sliding window of GD_WINDOW_BUCKETS buckets of a fixed
 * width, lock-free for any number of threads: each bucket is one atomic word, its bucket
 * number in the high half and its count in the low half, so a bucket of an older turn of the
 * ring starts over by itself and a reader skips it. The retry budget counts its calls and
 * retries in such windows, the breaker's error rate its calls and failures.
 */
#ifndef GD_WINDOW_H
#define GD_WINDOW_H

#include <stdatomic.h>
#include <stdint.h>

#define GD_WINDOW_BUCKETS 10

typedef struct gd_window {
    /* private */
    _Atomic uint64_t _buckets[GD_WINDOW_BUCKETS];
} gd_window_t;

/** Prepares @w (caller owns the storage): nothing counted. */
void gd_window_init(gd_window_t *w);
/** Counts one event at @now_ms (a monotonic ms clock shared by the callers), @bucket_ms wide
 * buckets (the same on every call). */
void gd_window_add(gd_window_t *w, uint64_t bucket_ms, uint64_t now_ms);
/** The events of the GD_WINDOW_BUCKETS buckets up to the one of @now_ms. */
uint64_t gd_window_sum(gd_window_t *w, uint64_t bucket_ms, uint64_t now_ms);
/** Forgets every event (any thread; one counted at the same moment may survive). */
void gd_window_clear(gd_window_t *w);

#endif
