#include "base/breaker.h"

void gd_breaker_init(gd_breaker_t *b, unsigned failures, uint64_t open_ms)
{
    b->_threshold = failures;
    b->_open_ms = open_ms;
    atomic_init(&b->_failures, 0);
    atomic_init(&b->_open_until_ms, 0);
    atomic_init(&b->_is_probing, false);
    atomic_init(&b->opened, 0);
    atomic_init(&b->half_opened, 0);
    atomic_init(&b->closed, 0);
    b->_rate_ppm = 0;
    gd_window_init(&b->_calls);
    gd_window_init(&b->_failed);
}

void gd_breaker_set_error_rate(gd_breaker_t *b, double error_rate, unsigned min_calls,
                               uint64_t window_ms)
{
    b->_rate_ppm = (uint64_t)(error_rate * 1000000 + 0.5);
    if (b->_rate_ppm == 0)
        b->_rate_ppm = 1;
    b->_min_calls = min_calls;
    b->_bucket_ms = window_ms / GD_WINDOW_BUCKETS;
}

gd_breaker_verdict_t gd_breaker_allow(gd_breaker_t *b, uint64_t now_ms)
{
    uint64_t until = atomic_load(&b->_open_until_ms);
    bool no = false;

    if (until == 0)
        return GD_BREAKER_ALLOWED;
    if (now_ms < until)
        return GD_BREAKER_REFUSED;
    /* Half-open: one caller wins the probe. */
    if (atomic_compare_exchange_strong(&b->_is_probing, &no, true)) {
        atomic_fetch_add_explicit(&b->half_opened, 1, memory_order_relaxed);
        return GD_BREAKER_PROBE;
    }
    return GD_BREAKER_REFUSED;
}

static void open_until(gd_breaker_t *b, uint64_t now_ms)
{
    uint64_t until = now_ms + b->_open_ms;
    atomic_store(&b->_open_until_ms, until != 0 ? until : 1);
    atomic_fetch_add_explicit(&b->opened, 1, memory_order_relaxed);
}

/* Whether the failed share of the window's calls reached the error rate (with enough calls). */
static bool is_rate_reached(gd_breaker_t *b, uint64_t now_ms)
{
    if (b->_rate_ppm == 0)
        return false;
    uint64_t calls = gd_window_sum(&b->_calls, b->_bucket_ms, now_ms);
    uint64_t failed = gd_window_sum(&b->_failed, b->_bucket_ms, now_ms);
    return calls >= b->_min_calls && failed * 1000000 >= b->_rate_ppm * calls;
}

void gd_breaker_report(gd_breaker_t *b, gd_breaker_verdict_t verdict, bool is_failure,
                       uint64_t now_ms)
{
    if (verdict == GD_BREAKER_PROBE) {
        if (is_failure) {
            open_until(b, now_ms);
        } else {
            atomic_store(&b->_failures, 0);
            if (b->_rate_ppm != 0) { /* the failures that opened it are not held against it */
                gd_window_clear(&b->_calls);
                gd_window_clear(&b->_failed);
            }
            atomic_store(&b->_open_until_ms, 0);
            atomic_fetch_add_explicit(&b->closed, 1, memory_order_relaxed);
        }
        atomic_store(&b->_is_probing, false);
        return;
    }
    if (b->_rate_ppm != 0) {
        gd_window_add(&b->_calls, b->_bucket_ms, now_ms);
        if (is_failure)
            gd_window_add(&b->_failed, b->_bucket_ms, now_ms);
    }
    if (!is_failure) {
        atomic_store(&b->_failures, 0);
        return;
    }
    unsigned n = atomic_fetch_add(&b->_failures, 1) + 1;
    uint64_t closed = 0;
    /* The call that reaches a threshold opens it, once: a closed breaker only. */
    if ((n >= b->_threshold || is_rate_reached(b, now_ms)) &&
        atomic_load(&b->_open_until_ms) == 0 &&
        atomic_compare_exchange_strong(&b->_open_until_ms, &closed,
                                       now_ms + b->_open_ms != 0 ? now_ms + b->_open_ms : 1)) {
        atomic_store(&b->_failures, 0);
        atomic_fetch_add_explicit(&b->opened, 1, memory_order_relaxed);
    }
}

void gd_breaker_abandon(gd_breaker_t *b, gd_breaker_verdict_t verdict)
{
    if (verdict == GD_BREAKER_PROBE)
        atomic_store(&b->_is_probing, false);
}

int gd_breaker_state(gd_breaker_t *b, uint64_t now_ms)
{
    uint64_t until = atomic_load(&b->_open_until_ms);
    return until == 0 ? 0 : now_ms < until ? 1 : 2;
}
