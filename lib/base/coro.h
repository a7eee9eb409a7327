/*
 * gd_coro: stackful coroutines on an event loop, and the primitives request handlers use:
 * spawn, yield, resume, sleep, and gd_group_t, the gather-with-deadline point.
 *
 * Model: asymmetric coroutines. gd_coro_resume() switches from the caller (the loop stack or
 * another coroutine) into a suspended coroutine; gd_coro_yield() switches back to whoever
 * resumed it. A coroutine never resumes a coroutine that is in its own chain of resumers.
 * One gd_sched_t per event-loop thread owns a pool of stacks (each with a guard page), the
 * timer heap, and a bound on live coroutines. Stacks stay mapped once made; of those released,
 * 64 keep their pages and the rest of a burst give them back to the kernel (MADV_DONTNEED). Nothing here is thread-safe: every call happens
 * on the thread that owns the scheduler. The switch is hand-written for x86_64 (no system call
 * per switch, unlike swapcontext) and falls back to ucontext elsewhere; it is announced to
 * AddressSanitizer and valgrind.
 */
#ifndef GD_CORO_H
#define GD_CORO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/timer.h"

typedef struct gd_sched gd_sched_t;
typedef struct gd_coro gd_coro_t;
typedef void (*gd_coro_fn)(void *arg);

/**
 * Creates the scheduler of @loop: coroutine stacks of @stack_size bytes (rounded up to pages,
 * plus one guard page), at most @max_live coroutines alive at once. Makes the scheduler the
 * current one of the calling thread. Returns NULL only when out of memory.
 */
gd_sched_t *gd_sched_new(uv_loop_t *loop, size_t stack_size, size_t max_live);
/** Frees @sched (NULL is a no-op) and its pooled stacks; no coroutine may be alive. Returns NULL. */
gd_sched_t *gd_sched_free(gd_sched_t *sched);
/** The calling thread's scheduler (the last one gd_sched_new() made on this thread), or NULL. */
gd_sched_t *gd_sched_current(void);
/** The scheduler's timer heap, borrowed for the scheduler's lifetime. */
gd_timers_t *gd_sched_timers(gd_sched_t *sched);
/** Number of coroutines alive (started, not yet returned). */
size_t gd_sched_live(const gd_sched_t *sched);
/**
 * Turns step timing on or off: each run of a coroutine resumed from the loop stack (until it
 * yields or returns) is timed, two clock reads, so that a slow loop turn can name its cause.
 */
void gd_sched_time_steps(gd_sched_t *sched, bool on);
/**
 * The longest step timed since the last call (ns; 0 when none) and the label of its coroutine
 * (NULL when it had none) in @ret_label; starts over.
 */
uint64_t gd_sched_take_longest_step(gd_sched_t *sched, const char **ret_label);

/**
 * Starts @fn(@arg) in a new coroutine and switches into it at once; returns when it first
 * yields or returns. @ret_coro (may be NULL) receives the coroutine, valid until @fn returns
 * (it is freed then, its stack back in the pool). Returns 0, -EAGAIN when @max_live coroutines
 * are alive, -ENOMEM when no stack can be mapped.
 */
int gd_coro_spawn(gd_sched_t *sched, gd_coro_fn fn, void *arg, gd_coro_t **ret_coro);
/** The running coroutine, or NULL on the loop stack. */
gd_coro_t *gd_coro_current(void);
/** Names what @coro works on (borrowed: it must outlive the coroutine), for step timing. */
void gd_coro_set_label(gd_coro_t *coro, const char *label);
/** Yields. Suspends the running coroutine until someone gd_coro_resume()s it. */
void gd_coro_yield(void);
/** Switches into suspended @coro until it yields or returns. */
void gd_coro_resume(gd_coro_t *coro);
/**
 * Yields. Sleeps @ms milliseconds. Returns 0, or -ECANCELED when gd_coro_cancel() woke it early.
 */
int gd_coro_sleep(uint64_t ms);
/**
 * Asks @coro to stop: sets its cancelled flag and, if it is suspended in gd_coro_sleep() or
 * gd_group_wait(), wakes it (the wait cancels its group first). Never switches into @coro from
 * inside this call: the wake-up happens on the next loop iteration.
 */
void gd_coro_cancel(gd_coro_t *coro);
/** Whether gd_coro_cancel() was called on the running coroutine. */
bool gd_coro_is_cancelled(void);

/*
 * gd_group_t gathers tasks: asynchronous operations (started with callbacks) and child
 * coroutines. A task is a gd_task_t embedded in the operation's own state. The group is the
 * caller's storage (a request's, in production) and must outlive the wait; tasks report with
 * gd_task_done(), from a callback or a coroutine.
 */
typedef struct gd_group gd_group_t;
typedef struct gd_task gd_task_t;
/**
 * Asks a task to stop at once. It must call gd_task_done() on @task, either inside this call or
 * later from a callback; the group's wait does not return before it has.
 */
typedef void (*gd_task_cancel_cb)(gd_task_t *task);

struct gd_task {
    /* private */
    gd_group_t *_group;
    gd_task_cancel_cb _cancel;
    gd_task_t *_next, *_prev;
    bool _is_done;
};

struct gd_group {
    /* private */
    gd_sched_t *_sched;
    gd_coro_t *_waiter; /* set while gd_group_wait() is suspended */
    size_t _pending;
    gd_task_t _head; /* list of pending tasks */
    gd_timer_t _deadline;
    bool _is_cancelled, _has_timed_out;
    bool _wakes_on_each;        /* in gd_group_wait_any(): every report wakes the waiter */
    size_t _ndone, _ndone_seen; /* reports so far, and as of gd_group_wait_any()'s last return */
};

/** Prepares @group (caller owns the storage: the request's struct, or a test's stack). */
void gd_group_init(gd_group_t *group, gd_sched_t *sched);
/** Registers @task as pending in @group; @cancel stops it (see gd_task_cancel_cb). */
void gd_group_add(gd_group_t *group, gd_task_t *task, gd_task_cancel_cb cancel);
/**
 * Marks @task done. Wakes the waiter when it was the last pending task (switching into it
 * directly when called from the loop stack or from a coroutine that is not the waiter).
 */
void gd_task_done(gd_task_t *task);
/** Whether @task has been marked done. */
bool gd_task_is_done(const gd_task_t *task);
/**
 * Starts @fn(@arg) as a child coroutine belonging to @group. When the group is cancelled or its
 * deadline passes, the child is gd_coro_cancel()ed and the wait lasts until it returns.
 * Returns 0, or the error of gd_coro_spawn() (the task is then not added).
 */
int gd_group_spawn(gd_group_t *group, gd_coro_fn fn, void *arg);
/**
 * Yields. Waits until every task is done, or until @deadline_ms (absolute, gd_timers_now()
 * base): then every pending task is cancelled and the wait lasts until all have reported.
 * Returns 0 when all finished in time, -ETIMEDOUT when the deadline cancelled some,
 * -ECANCELED when gd_group_cancel() or gd_coro_cancel() of the waiter cancelled them.
 * Returns at once when nothing is pending.
 */
int gd_group_wait(gd_group_t *group, uint64_t deadline_ms);
/**
 * Yields. Like gd_group_wait(), but returns as soon as some task has reported since this
 * function last returned (at once when one has already, or when nothing is pending), so that
 * the waiter can add tasks that were waiting for it. Returns 0 then; -ETIMEDOUT or -ECANCELED
 * like gd_group_wait(), once every pending task has reported.
 */
int gd_group_wait_any(gd_group_t *group, uint64_t deadline_ms);
/**
 * Cancels every pending task of @group now (from outside the waiter, e.g. when the client is
 * gone). The waiter wakes with -ECANCELED once all have reported, never from inside this call:
 * when the tasks report synchronously, the wake-up comes on the next loop iteration. So this is
 * safe to call from callbacks that must not re-enter anything (h2o's dispose callbacks).
 */
void gd_group_cancel(gd_group_t *group);
/** Frees nothing; checks (GD_REQUIRE) that no task is pending. */
void gd_group_dispose(gd_group_t *group);

#endif
