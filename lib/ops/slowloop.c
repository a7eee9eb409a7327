#include "ops/slowloop.h"

#include <stddef.h>

#include "base/util.h"
#include "ops/log.h"

#define LINE_INTERVAL_NS 1000000000u

static void write_line(gd_slowloop_t *sl, uint64_t busy_ns, uint64_t step_ns, const char *label)
{
    gd_log_field_t fields[4] = {
        {.key = "busy_ms", .type = GD_LOG_MS, .ms = (double)busy_ns / 1e6},
        {.key = "slow_loop_ms", .type = GD_LOG_INT, .i = (long long)(sl->threshold_ns / 1000000)},
    };
    size_t n = 2;

    if (step_ns > 0) {
        fields[n++] = (gd_log_field_t){.key = "longest_step_ms", .type = GD_LOG_MS,
                                       .ms = (double)step_ns / 1e6};
        fields[n++] = (gd_log_field_t){.key = "route", .type = GD_LOG_STR,
                                       .str = label != NULL ? label : "-", .str_len = SIZE_MAX};
    }
    gd_log_event(GD_LOG_WARN, "slow event-loop turn", fields, n);
    if (sl->unlogged > 0) {
        gd_log_field_t more[] = {
            {.key = "turns", .type = GD_LOG_INT, .i = (long long)sl->unlogged},
            {.key = "worst_busy_ms", .type = GD_LOG_MS, .ms = (double)sl->worst_unlogged_ns / 1e6},
        };
        gd_log_event(GD_LOG_WARN, "more slow event-loop turns in the last second", more,
                     GD_ARRAY_SIZE(more));
        sl->unlogged = 0;
        sl->worst_unlogged_ns = 0;
    }
}

static void on_check(uv_check_t *check)
{
    gd_slowloop_t *sl = check->data;
    uint64_t now_ns = uv_hrtime(), idle_ns = uv_metrics_idle_time(check->loop);
    uint64_t turn_ns = now_ns - sl->last_check_ns, blocked_ns = idle_ns - sl->last_idle_ns;
    uint64_t busy_ns = turn_ns > blocked_ns ? turn_ns - blocked_ns : 0;
    const char *label;
    uint64_t step_ns = gd_sched_take_longest_step(sl->sched, &label);

    sl->last_check_ns = now_ns;
    sl->last_idle_ns = idle_ns;
    if (!sl->has_turned) { /* the first turn ran the worker's set-up: not a request's delay */
        sl->has_turned = true;
        return;
    }
    if (busy_ns <= sl->threshold_ns)
        return;
    gd_metrics_count_slow_loop_turn(sl->metrics);
    if (now_ns - sl->last_line_ns < LINE_INTERVAL_NS) {
        sl->unlogged++;
        if (busy_ns > sl->worst_unlogged_ns)
            sl->worst_unlogged_ns = busy_ns;
        return;
    }
    sl->last_line_ns = now_ns;
    /* A step shorter than a tenth of the turn did not make it slow: naming it would mislead. */
    write_line(sl, busy_ns, step_ns * 10 >= busy_ns ? step_ns : 0, label);
}

void gd_slowloop_start(gd_slowloop_t *sl, uv_loop_t *loop, gd_sched_t *sched,
                       gd_metrics_t *metrics, uint64_t threshold_ms)
{
    *sl = (gd_slowloop_t){.sched = sched, .metrics = metrics, .threshold_ns = threshold_ms * 1000000};
    if (threshold_ms == 0)
        return;
    GD_REQUIRE(uv_loop_configure(loop, UV_METRICS_IDLE_TIME) == 0);
    GD_REQUIRE(uv_check_init(loop, &sl->check) == 0);
    sl->check.data = sl;
    GD_REQUIRE(uv_check_start(&sl->check, on_check) == 0);
    /* The check handle keeps no loop alive by itself: the workers' loops end when their
     * handles close, and this one must not hold them. */
    uv_unref((uv_handle_t *)&sl->check);
    sl->last_check_ns = uv_hrtime();
    sl->last_idle_ns = uv_metrics_idle_time(loop);
    sl->last_line_ns = sl->last_check_ns - LINE_INTERVAL_NS;
    gd_sched_time_steps(sched, true);
}

void gd_slowloop_close(gd_slowloop_t *sl)
{
    if (sl->threshold_ns == 0)
        return;
    gd_sched_time_steps(sl->sched, false);
    uv_close((uv_handle_t *)&sl->check, NULL);
}
