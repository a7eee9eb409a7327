#include "base/retry_budget.h"

#include <uv.h>

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

uint64_t gd_retry_backoff_ms(uint64_t base_ms, uint64_t max_ms, unsigned n)
{
    static __thread uint64_t state;
    uint64_t cap = base_ms;

    for (unsigned i = 1; i < n && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    if (cap == 0)
        return 0;
    if (state == 0)
        state = uv_hrtime() ^ (uint64_t)(uintptr_t)&state ^ UINT64_C(0x9E3779B97F4A7C15);
    /* xorshift64* */
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (state * UINT64_C(2685821657736338717)) % (cap + 1);
}
