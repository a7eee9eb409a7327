/*
 * gd_gate: a waiting line in front of a limited resource: request slots, connections to an
 * upstream, Postgres connections (and later rate-limit tokens). At most @limit units are held;
 * whoever finds none free waits in arrival order, each until its own deadline.
 *
 * The hand-off rule, the same for every line: a unit given back while somebody waits is
 * granted to the first waiter at once (so nobody who comes later overtakes it; `held` does not
 * drop), and the waiter hears of it on the next loop iteration, never from inside the call that
 * gave the unit back. So a release from any callback (h2o's dispose callbacks included) starts
 * nothing inside it, and a long chain of hand-offs never grows the stack.
 *
 * One variant keeps the order and skips the wait for the next iteration: a holder whose unit
 * stands for something it can pass on as it is (a keep-alive connection), and that is not
 * inside a callback that must start nothing, may hand the unit over with gd_gate_hand_over():
 * the first waiter gets it, with no report, and the holder goes on with that waiter at once.
 *
 * The limit may change while units are held (the Postgres connections up now): a lower one
 * grants nothing until enough units come back, a higher one grants to waiters at once.
 *
 * One gate belongs to one event-loop thread; nothing here is thread-safe.
 */
#ifndef GD_GATE_H
#define GD_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o/linklist.h>

#include "base/timer.h"

typedef struct gd_gate gd_gate_t;
typedef struct gd_gate_waiter gd_gate_waiter_t;

/**
 * Reports the end of a wait: @is_granted true when @waiter holds a unit now (it must
 * gd_gate_release() it), false when its deadline passed or gd_gate_refuse_all() refused it.
 * @waiter may be freed inside the callback.
 */
typedef void (*gd_gate_cb)(gd_gate_waiter_t *waiter, bool is_granted);

struct gd_gate {
    /* read-only */
    size_t limit;
    size_t held;    /* units held now, granted ones not yet reported included */
    size_t waiting; /* waiters in the line (not yet granted) */
    /* private */
    gd_timers_t *_timers;
    h2o_linklist_t _waiters; /* oldest first */
    h2o_linklist_t _granted; /* granted, to be reported, in grant order */
    gd_timer_t _report;      /* reports the granted ones on the next loop iteration */
};

struct gd_gate_waiter {
    /* private */
    gd_gate_t *_gate; /* NULL while neither waiting nor granted */
    h2o_linklist_t _link;
    gd_timer_t _deadline;
    gd_gate_cb _cb;
    bool _is_granted;
};

/** The oldest waiter of @gate still waiting, or NULL. */
const gd_gate_waiter_t *gd_gate_first_waiter(const gd_gate_t *gate);
/** The waiter after @waiter in @gate's line, or NULL. */
const gd_gate_waiter_t *gd_gate_next_waiter(const gd_gate_t *gate, const gd_gate_waiter_t *waiter);

/** Prepares @gate: @limit units (0: none until gd_gate_set_limit()), deadlines on @timers. */
void gd_gate_init(gd_gate_t *gate, gd_timers_t *timers, size_t limit);
/** Checks (GD_REQUIRE) that no unit is held and nobody waits. */
void gd_gate_dispose(gd_gate_t *gate);

/** Takes a unit when one is free and nobody waits for one; returns whether it did. */
bool gd_gate_try_acquire(gd_gate_t *gate);
/**
 * Queues @waiter (caller-owned storage) behind the others until a unit is granted to it, or
 * until @deadline_ms (gd_timers_now() base) passes; @cb reports which, never from inside this
 * call.
 */
void gd_gate_wait(gd_gate_t *gate, gd_gate_waiter_t *waiter, uint64_t deadline_ms, gd_gate_cb cb);
/**
 * Leaves the line without a report; a unit already granted to @waiter (not yet reported) is
 * given back. A no-op when @waiter is not waiting.
 */
void gd_gate_cancel(gd_gate_waiter_t *waiter);
/** Whether @waiter is in a line, granted or not yet. */
bool gd_gate_is_waiting(const gd_gate_waiter_t *waiter);
/** Gives back a unit: granted to the first waiter, if any (see the hand-off rule above). */
void gd_gate_release(gd_gate_t *gate);
/**
 * Hands the unit the caller holds to the first waiter, which is not reported to: it is
 * returned, taken out of the line (its deadline stopped), for the caller to go on with it at
 * once. NULL (the unit still the caller's) when nobody waits or the limit was lowered below
 * the units held.
 */
gd_gate_waiter_t *gd_gate_hand_over(gd_gate_t *gate);
/** Sets the number of units to @limit (0 allowed); free ones go to waiters (see above). */
void gd_gate_set_limit(gd_gate_t *gate, size_t limit);
/** Reports every waiter not yet granted as refused, in line order, from inside this call. */
void gd_gate_refuse_all(gd_gate_t *gate);

#endif
