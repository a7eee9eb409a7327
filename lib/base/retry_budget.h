/*
 * gd_retry_budget: how many retries a service may add to its calls, for the whole process.
 * Calls and retries are counted in a sliding window of GD_RETRY_BUDGET_WINDOW_S one-second
 * buckets; a retry is allowed while the retries of the window stay under @percent of its calls
 * or under a floor of @min_per_s per second of the window, whichever is larger. Lock-free (the
 * windows are base/window.h's), so any thread may count and ask at once. Approximate only in
 * that threads asking at the same moment may each take the last retry left (at most one too
 * many per thread). A hedge (a second attempt beside a slow one) is taken from the budget
 * like a retry.
 */
#ifndef GD_RETRY_BUDGET_H
#define GD_RETRY_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/window.h"

#define GD_RETRY_BUDGET_WINDOW_S 10

typedef struct gd_retry_budget {
    /* private */
    gd_window_t _calls, _retries; /* one-second buckets */
    /* read-only for all but the counting caller: totals since the start, for the metrics */
    _Atomic uint64_t attempts, retries, refused;
    _Atomic uint64_t hedges, hedges_won; /* hedges started; those whose answer the call took */
} gd_retry_budget_t;

/** Prepares @b (caller owns the storage): an empty window. */
void gd_retry_budget_init(gd_retry_budget_t *b);
/** Counts a call (its first attempt) at @now_ms (any monotonic ms clock shared by the callers). */
void gd_retry_budget_note_call(gd_retry_budget_t *b, uint64_t now_ms);
/**
 * Whether one more retry fits at @now_ms; when it does, it is counted. @percent: retries per
 * 100 calls of the window; @min_per_s: the floor, retries per second of the window.
 */
bool gd_retry_budget_take(gd_retry_budget_t *b, uint64_t now_ms, unsigned percent,
                          unsigned min_per_s);

/**
 * The wait before retry @n (1 for the first): random in [0, min(@max_ms, @base_ms * 2^(n-1))],
 * "full jitter", so that callers failing together do not come back together. Per-thread
 * generator, seeded once; any thread may call it.
 */
uint64_t gd_retry_backoff_ms(uint64_t base_ms, uint64_t max_ms, unsigned n);

#endif
