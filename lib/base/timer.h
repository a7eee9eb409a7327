/*
 * gd_timer: one-shot timers kept in a binary heap per event loop, driven by a single uv_timer_t.
 *
 * Why not a uv_timer_t per call: a libuv handle must be uv_close()d, asynchronously, before its
 * memory may be freed, which ties every request's memory to an extra loop iteration. A gd_timer_t
 * is plain memory embedded in its owner: stopping it is synchronous and it needs no closing.
 * Times are absolute, in milliseconds of the loop's monotonic clock (uv_now()).
 */
#ifndef GD_TIMER_H
#define GD_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct gd_timers gd_timers_t;
typedef struct gd_timer gd_timer_t;
typedef void (*gd_timer_cb)(gd_timer_t *timer);

struct gd_timer {
    /* private */
    uint64_t _due_ms;
    size_t _heap_index; /* SIZE_MAX while not started */
    uint64_t _seq;      /* start order: timers due at the same ms fire in start order */
    gd_timer_cb _cb;
};

/** Creates the timer heap of @loop. Returns NULL only when out of memory. */
gd_timers_t *gd_timers_new(uv_loop_t *loop);
/**
 * Frees @timers (NULL is a no-op); it must have no started timer. Closes its uv_timer_t, so the
 * loop must run once more for the memory to be released. Returns NULL.
 */
gd_timers_t *gd_timers_free(gd_timers_t *timers);
/** The loop's current time in ms (uv_now()). */
uint64_t gd_timers_now(const gd_timers_t *timers);
/** Number of started timers. */
size_t gd_timers_count(const gd_timers_t *timers);

/** Prepares @timer (caller owns the storage) to call @cb when it fires. */
void gd_timer_init(gd_timer_t *timer, gd_timer_cb cb);
/**
 * Starts (or restarts) @timer to fire at @due_ms (absolute, uv_now() base); a due time in the
 * past fires on the next loop iteration, never from inside this call. The callback runs on the
 * loop stack; the timer is already stopped when it runs, so the callback may free it.
 */
void gd_timer_start(gd_timers_t *timers, gd_timer_t *timer, uint64_t due_ms);
/** Stops @timer if started; no-op otherwise. Synchronous: the memory may be freed at once. */
void gd_timer_stop(gd_timers_t *timers, gd_timer_t *timer);
/** Whether @timer is started. */
bool gd_timer_is_active(const gd_timer_t *timer);

#endif
