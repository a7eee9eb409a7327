#include "base/retry_budget.h"

#include <uv.h>

#define SEC_SHIFT  32
#define COUNT_MASK ((UINT64_C(1) << SEC_SHIFT) - 1)

void gd_retry_budget_init(gd_retry_budget_t *b)
{
    for (int i = 0; i < GD_RETRY_BUDGET_WINDOW_S; i++) {
        atomic_init(&b->_calls[i], 0);
        atomic_init(&b->_retries[i], 0);
    }
    atomic_init(&b->attempts, 0);
    atomic_init(&b->retries, 0);
    atomic_init(&b->refused, 0);
    atomic_init(&b->hedges, 0);
    atomic_init(&b->hedges_won, 0);
}

/* Second 0 is never a bucket's: an untouched (zero) bucket holds no count of any second. */
static uint64_t second_of(uint64_t now_ms)
{
    return (now_ms / 1000 + 1) & COUNT_MASK;
}

static void add(_Atomic uint64_t *buckets, uint64_t now_ms)
{
    uint64_t sec = second_of(now_ms);
    _Atomic uint64_t *slot = &buckets[sec % GD_RETRY_BUDGET_WINDOW_S];
    uint64_t v = atomic_load_explicit(slot, memory_order_relaxed), next;

    do {
        /* A bucket of an older second starts over. */
        next = (v >> SEC_SHIFT) == sec ? v + 1 : (sec << SEC_SHIFT) | 1;
    } while (!atomic_compare_exchange_weak_explicit(slot, &v, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

static uint64_t sum(_Atomic uint64_t *buckets, uint64_t now_ms)
{
    uint64_t sec = second_of(now_ms), total = 0;

    for (int i = 0; i < GD_RETRY_BUDGET_WINDOW_S; i++) {
        uint64_t v = atomic_load_explicit(&buckets[i], memory_order_relaxed);
        uint64_t at = v >> SEC_SHIFT;
        if (at != 0 && at <= sec && sec - at < GD_RETRY_BUDGET_WINDOW_S)
            total += v & COUNT_MASK;
    }
    return total;
}

void gd_retry_budget_note_call(gd_retry_budget_t *b, uint64_t now_ms)
{
    add(b->_calls, now_ms);
}

bool gd_retry_budget_take(gd_retry_budget_t *b, uint64_t now_ms, unsigned percent,
                          unsigned min_per_s)
{
    uint64_t allowed = sum(b->_calls, now_ms) * percent / 100;
    uint64_t floor = (uint64_t)min_per_s * GD_RETRY_BUDGET_WINDOW_S;

    if (allowed < floor)
        allowed = floor;
    if (sum(b->_retries, now_ms) >= allowed)
        return false;
    add(b->_retries, now_ms);
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
