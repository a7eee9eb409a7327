#include "base/window.h"

#define NUM_SHIFT  32
#define COUNT_MASK ((UINT64_C(1) << NUM_SHIFT) - 1)

void gd_window_init(gd_window_t *w)
{
    for (int i = 0; i < GD_WINDOW_BUCKETS; i++)
        atomic_init(&w->_buckets[i], 0);
}

/* Bucket number 0 is never a bucket's: an untouched (zero) word holds no count of any. */
static uint64_t bucket_of(uint64_t bucket_ms, uint64_t now_ms)
{
    return (now_ms / bucket_ms + 1) & COUNT_MASK;
}

void gd_window_add(gd_window_t *w, uint64_t bucket_ms, uint64_t now_ms)
{
    uint64_t n = bucket_of(bucket_ms, now_ms);
    _Atomic uint64_t *slot = &w->_buckets[n % GD_WINDOW_BUCKETS];
    uint64_t v = atomic_load_explicit(slot, memory_order_relaxed), next;

    do {
        /* A bucket of an older turn starts over. */
        next = (v >> NUM_SHIFT) == n ? v + 1 : (n << NUM_SHIFT) | 1;
    } while (!atomic_compare_exchange_weak_explicit(slot, &v, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

uint64_t gd_window_sum(gd_window_t *w, uint64_t bucket_ms, uint64_t now_ms)
{
    uint64_t n = bucket_of(bucket_ms, now_ms), total = 0;

    for (int i = 0; i < GD_WINDOW_BUCKETS; i++) {
        uint64_t v = atomic_load_explicit(&w->_buckets[i], memory_order_relaxed);
        uint64_t at = v >> NUM_SHIFT;
        if (at != 0 && at <= n && n - at < GD_WINDOW_BUCKETS)
            total += v & COUNT_MASK;
    }
    return total;
}

void gd_window_clear(gd_window_t *w)
{
    for (int i = 0; i < GD_WINDOW_BUCKETS; i++)
        atomic_store_explicit(&w->_buckets[i], 0, memory_order_relaxed);
}
