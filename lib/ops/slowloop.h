/*
 * gd_slowloop: warns when an event-loop turn keeps its thread busy longer than slow_loop_ms,
 * as asyncio's slow_callback_duration does: a turn that long delays every request of the thread
 * (the usual cause is a large document validated or merged in one go). A uv_check handle runs
 * once a turn, right after the poll; the busy time of a turn is the time since the last check
 * minus what the loop spent blocked in the poll (libuv's idle-time metric). The line names the
 * longest coroutine step of the turn (its endpoint) when one was timed; at most one line a
 * second per thread is written, the turns in between counted in it and in the metrics.
 */
#ifndef GD_SLOWLOOP_H
#define GD_SLOWLOOP_H

#include <stdint.h>

#include <uv.h>

#include "base/coro.h"
#include "ops/metrics.h"

typedef struct gd_slowloop {
    /* private */
    uv_check_t check;
    gd_sched_t *sched;
    gd_metrics_t *metrics;
    uint64_t threshold_ns;
    uint64_t last_check_ns, last_idle_ns;
    uint64_t last_line_ns; /* when the last line was written */
    uint64_t unlogged;     /* slow turns since, not written */
    uint64_t worst_unlogged_ns;
    bool has_turned; /* the first turn is over */
} gd_slowloop_t;

/**
 * Watches @loop (before uv_run(): it turns on the loop's idle-time metric) for turns busier
 * than @threshold_ms (0: off, then nothing is started), counting them in @metrics and timing
 * @sched's coroutine steps to name their cause. All borrowed for the watch's lifetime.
 */
void gd_slowloop_start(gd_slowloop_t *sl, uv_loop_t *loop, gd_sched_t *sched,
                       gd_metrics_t *metrics, uint64_t threshold_ms);
/** Closes the watch's handle (on the loop's thread; a no-op when it was off). */
void gd_slowloop_close(gd_slowloop_t *sl);

#endif
