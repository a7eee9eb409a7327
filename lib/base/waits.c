#include "base/waits.h"

const uint64_t gd_waits_bounds_us[GD_WAITS_NBUCKETS] = {1000,    2500,    5000,    10000,  25000,
                                                        50000,   100000,  250000,  500000, 1000000,
                                                        2500000, 5000000, 10000000};

const char *const gd_wait_kind_names[GD_WAIT_COUNT] = {
    [GD_WAIT_RATE_LIMIT] = "rate_limit",
    [GD_WAIT_IN_FLIGHT] = "in_flight",
    [GD_WAIT_CONNECTION] = "connection",
};

void gd_waits_init(gd_waits_t *w)
{
    for (int k = 0; k < GD_WAIT_COUNT; k++) {
        for (int i = 0; i <= GD_WAITS_NBUCKETS; i++)
            atomic_init(&w->by_kind[k].buckets[i], 0);
        atomic_init(&w->by_kind[k].count, 0);
        atomic_init(&w->by_kind[k].sum_us, 0);
    }
    atomic_init(&w->in_flight_refused, 0);
}

void gd_waits_observe(gd_waits_t *w, gd_wait_kind_t kind, uint64_t us)
{
    gd_wait_histogram_t *h = &w->by_kind[kind];
    int i = 0;

    while (i < GD_WAITS_NBUCKETS && us > gd_waits_bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}
