/*
 * Admission: the front door's semaphore. At most @limit requests hold a slot (a coroutine, its
 * calls and their connections); the others wait in arrival order, each until its own deadline,
 * holding nothing but their parsed request. A freed slot goes straight to the first waiter, so
 * nobody overtakes a request that came earlier. One per worker loop; not thread-safe.
 */
#ifndef GD_ADMISSION_H
#define GD_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o/linklist.h>

#include "base/timer.h"

typedef struct gd_admission gd_admission_t;
typedef struct gd_admission_waiter gd_admission_waiter_t;

/**
 * Reports the end of a wait: @is_admitted true when @waiter was given a slot (it holds it now
 * and must gd_admission_release() it), false when its deadline passed or the wait was refused
 * with gd_admission_refuse_all(). @waiter may be freed inside the callback.
 */
typedef void (*gd_admission_cb)(gd_admission_waiter_t *waiter, bool is_admitted);

struct gd_admission {
    /* read-only */
    size_t limit;
    size_t held;    /* slots held now */
    size_t waiting; /* waiters in the queue */
    /* private */
    gd_timers_t *_timers;
    h2o_linklist_t _waiters;
    bool _is_handing_out; /* inside gd_admission_release()'s loop */
};

struct gd_admission_waiter {
    /* private */
    gd_admission_t *_admission; /* NULL while not waiting */
    h2o_linklist_t _link;
    gd_timer_t _deadline;
    gd_admission_cb _cb;
};

/** Prepares @admission: @limit slots (at least 1), deadlines on @timers (borrowed). */
void gd_admission_init(gd_admission_t *admission, gd_timers_t *timers, size_t limit);
/** Checks (GD_REQUIRE) that no slot is held and nobody waits. */
void gd_admission_dispose(gd_admission_t *admission);

/** Takes a slot when one is free and nobody waits for one; returns whether it did. */
bool gd_admission_try_acquire(gd_admission_t *admission);
/**
 * Queues @waiter (caller-owned storage) behind the others until a slot is free for it, or until
 * @deadline_ms (gd_timers_now() base) passes; @cb reports which (never from inside this call).
 */
void gd_admission_wait(gd_admission_t *admission, gd_admission_waiter_t *waiter,
                       uint64_t deadline_ms, gd_admission_cb cb);
/** Leaves the queue without a report; a no-op when @waiter is not waiting. */
void gd_admission_cancel(gd_admission_waiter_t *waiter);
/** Whether @waiter is in a queue. */
bool gd_admission_is_waiting(const gd_admission_waiter_t *waiter);
/**
 * Gives back a slot. The first waiter, if any, gets it at once: its callback runs inside this
 * call. A callback that releases its slot again does not recurse: the outermost call hands
 * the slots out one after the other.
 */
void gd_admission_release(gd_admission_t *admission);
/** Reports every waiter as not admitted, in queue order (at shutdown). */
void gd_admission_refuse_all(gd_admission_t *admission);

#endif
