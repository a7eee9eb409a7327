#include "base/redis_stats.h"

#include <stddef.h>

const uint64_t gd_redis_bounds_us[GD_REDIS_NBUCKETS] = {100,   250,   500,   1000,   2500,  5000,
                                                        10000, 25000, 50000, 100000, 250000};
const char *const gd_redis_result_names[GD_REDIS_RESULT_COUNT] = {"ok", "error", "timeout", "down"};

void gd_redis_stats_init(gd_redis_stats_t *s)
{
    atomic_init(&s->ready, 0);
    atomic_init(&s->expected, 0);
    for (int i = 0; i < GD_REDIS_RESULT_COUNT; i++)
        atomic_init(&s->results[i], 0);
    atomic_init(&s->fallbacks, 0);
    atomic_init(&s->reconnects, 0);
    atomic_init(&s->is_outage_logged, false);
    atomic_init(&s->cache_hits, 0);
    atomic_init(&s->cache_misses, 0);
    atomic_init(&s->cache_skipped, 0);
    atomic_init(&s->cache_stored, 0);
    atomic_init(&s->cache_too_large, 0);
    for (int i = 0; i <= GD_REDIS_NBUCKETS; i++)
        atomic_init(&s->buckets[i], 0);
    atomic_init(&s->count, 0);
    atomic_init(&s->sum_us, 0);
}

void gd_redis_stats_count(gd_redis_stats_t *s, gd_redis_result_t result, uint64_t us)
{
    size_t b = 0;

    atomic_fetch_add_explicit(&s->results[result], 1, memory_order_relaxed);
    if (result != GD_REDIS_OK)
        return;
    while (b < GD_REDIS_NBUCKETS && us > gd_redis_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, us, memory_order_relaxed);
}
