/*
 * gd_waits: how long the calls to one upstream waited before they could go, for the whole
 * process: for a rate-limit token, for a place under max_in_flight, for a connection. A
 * histogram of atomic counters that any thread adds to (waits are the slow path: the
 * contention of a shared cache line costs nothing beside the wait itself) and the metrics
 * render. The bucket bounds are those of the other duration histograms (ops/metrics.c).
 */
#ifndef GD_WAITS_H
#define GD_WAITS_H

#include <stdatomic.h>
#include <stdint.h>

#define GD_WAITS_NBUCKETS 13

typedef enum gd_wait_kind {
    GD_WAIT_RATE_LIMIT = 0,
    GD_WAIT_IN_FLIGHT,
    GD_WAIT_CONNECTION,
    GD_WAIT_COUNT
} gd_wait_kind_t;

typedef struct gd_wait_histogram {
    _Atomic uint64_t buckets[GD_WAITS_NBUCKETS + 1]; /* not cumulative; the last is +Inf */
    _Atomic uint64_t count, sum_us;
} gd_wait_histogram_t;

typedef struct gd_waits {
    /* read-only but for gd_waits_observe() */
    gd_wait_histogram_t by_kind[GD_WAIT_COUNT];
    _Atomic uint64_t in_flight_refused; /* calls whose wait for a place could not end in time */
} gd_waits_t;

/** Upper bounds of the buckets, in microseconds. */
extern const uint64_t gd_waits_bounds_us[GD_WAITS_NBUCKETS];
/** The kinds' names, as the metrics label them ("rate_limit", "in_flight", "connection"). */
extern const char *const gd_wait_kind_names[GD_WAIT_COUNT];

/** Prepares @w (caller owns the storage): nothing counted. */
void gd_waits_init(gd_waits_t *w);
/** Counts one wait of @kind that lasted @us. Any thread. */
void gd_waits_observe(gd_waits_t *w, gd_wait_kind_t kind, uint64_t us);

#endif
