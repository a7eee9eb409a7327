#include "base/retry_budget.h"

/* One-second buckets: the window is GD_RETRY_BUDGET_WINDOW_S seconds. */
#define BUCKET_MS 1000

_Static_assert(GD_RETRY_BUDGET_WINDOW_S == GD_WINDOW_BUCKETS, "a bucket is a second");

void gd_retry_budget_init(gd_retry_budget_t *b)
{
    gd_window_init(&b->_calls);
    gd_window_init(&b->_retries);
    atomic_init(&b->attempts, 0);
    atomic_init(&b->retries, 0);
    atomic_init(&b->refused, 0);
    atomic_init(&b->hedges, 0);
    atomic_init(&b->hedges_won, 0);
}

void gd_retry_budget_note_call(gd_retry_budget_t *b, uint64_t now_ms)
{
    gd_window_add(&b->_calls, BUCKET_MS, now_ms);
}

bool gd_retry_budget_take(gd_retry_budget_t *b, uint64_t now_ms, unsigned percent,
                          unsigned min_per_s)
{
    uint64_t allowed = gd_window_sum(&b->_calls, BUCKET_MS, now_ms) * percent / 100;
    uint64_t floor = (uint64_t)min_per_s * GD_RETRY_BUDGET_WINDOW_S;

    if (allowed < floor)
        allowed = floor;
    if (gd_window_sum(&b->_retries, BUCKET_MS, now_ms) >= allowed)
        return false;
    gd_window_add(&b->_retries, BUCKET_MS, now_ms);
    return true;
}
