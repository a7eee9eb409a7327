/*
 * gd_breaker: a circuit breaker shared by every thread of the process (atomics, no lock).
 * Closed, it lets every call through and counts consecutive failures; at @failures it opens for
 * @open_ms: calls are refused at once. Then exactly one call, the probe, is let through
 * (half-open); its success closes the breaker, its failure opens it again for @open_ms, and a
 * probe that ends neither way (cancelled) lets the next call probe.
 *
 * Optionally it also opens on an error rate: when, over a sliding window of @window_ms (ten
 * buckets, base/window.h), at least @min_calls calls ended and the failed share of them
 * reached @error_rate. The window is forgotten when the breaker closes again.
 */
#ifndef GD_BREAKER_H
#define GD_BREAKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/window.h"

typedef enum gd_breaker_verdict {
    GD_BREAKER_REFUSED = 0,
    GD_BREAKER_ALLOWED,
    GD_BREAKER_PROBE, /* allowed as the half-open breaker's one probe: report it as such */
} gd_breaker_verdict_t;

typedef struct gd_breaker {
    /* private */
    unsigned _threshold;
    uint64_t _open_ms;
    _Atomic unsigned _failures;      /* consecutive, while closed */
    _Atomic uint64_t _open_until_ms; /* 0: closed */
    _Atomic bool _is_probing;        /* half-open: the probe is out */
    /* the error-rate trigger: _rate_ppm 0 is none */
    uint64_t _rate_ppm, _min_calls, _bucket_ms;
    gd_window_t _calls, _failed;
    /* read-only: transitions to open, to half-open (a probe let out) and back to closed, for
     * the metrics */
    _Atomic uint64_t opened, half_opened, closed;
} gd_breaker_t;

/** Prepares @b (caller owns the storage), closed. */
void gd_breaker_init(gd_breaker_t *b, unsigned failures, uint64_t open_ms);
/**
 * Adds the error-rate trigger to @b (just initialized): @error_rate in (0, 1], @min_calls >= 1,
 * @window_ms >= GD_WINDOW_BUCKETS.
 */
void gd_breaker_set_error_rate(gd_breaker_t *b, double error_rate, unsigned min_calls,
                               uint64_t window_ms);
/** Whether a call may go at @now_ms (a monotonic ms clock shared by the callers). */
gd_breaker_verdict_t gd_breaker_allow(gd_breaker_t *b, uint64_t now_ms);
/** Reports the end of a call that gd_breaker_allow() let through as @verdict. */
void gd_breaker_report(gd_breaker_t *b, gd_breaker_verdict_t verdict, bool is_failure,
                       uint64_t now_ms);
/** Reports a call let through as @verdict that ended neither in success nor in failure. */
void gd_breaker_abandon(gd_breaker_t *b, gd_breaker_verdict_t verdict);
/** Whether @b is open or half-open at @now_ms (0: closed, 1: open, 2: half-open). */
int gd_breaker_state(gd_breaker_t *b, uint64_t now_ms);

#endif
