#include "base/retry_budget.h"

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
