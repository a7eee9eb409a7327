/*
 * gd_shared_gate: a gate (base/gate.h: units, a FIFO line of waiters with deadlines) whose units
 * are counted for the whole process: an asyncio.Semaphore shared by the event-loop threads.
 * Each thread has its own gd_shared_gate_t, a member of one gd_budget_t: a unit is taken from
 * the budget when a call of this thread needs one and given back to it as soon as no call of
 * this thread waits, so at most the budget's total are held at once by all threads together.
 * The line is the thread's own (FIFO); a unit freed on a thread whose line is not empty goes to
 * its first waiter at once. Other threads' waiters get units given back to the budget, woken
 * on their own loops (uv_async, see base/budget.h): FIFO within a thread, first come across
 * threads.
 */
#ifndef GD_SHARED_GATE_H
#define GD_SHARED_GATE_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "base/budget.h"
#include "base/gate.h"
#include "base/timer.h"

typedef struct gd_shared_gate {
    /* read-only: line.held are this thread's units in use, line.waiting its waiters */
    gd_gate_t line;
    /* private */
    gd_budget_member_t _member;
    size_t _units; /* taken from the budget: the line's limit */
} gd_shared_gate_t;

/**
 * Joins @sg (caller-owned storage) to @budget (borrowed, outlives it) on @loop's thread, with
 * deadlines on @timers. Returns 0, or a libuv error.
 */
int gd_shared_gate_init(gd_shared_gate_t *sg, gd_budget_t *budget, uv_loop_t *loop,
                        gd_timers_t *timers);
/**
 * Leaves the budget; no unit may be held and nobody may wait. The loop must then run for the
 * handle to close before @sg's storage goes.
 */
void gd_shared_gate_close(gd_shared_gate_t *sg);
/** Takes a unit when one is free (here or in the budget) and nobody here waits for one. */
bool gd_shared_gate_try_acquire(gd_shared_gate_t *sg);
/** As gd_gate_wait(): @cb reports a unit granted or @deadline_ms passed, never from inside. */
void gd_shared_gate_wait(gd_shared_gate_t *sg, gd_gate_waiter_t *waiter, uint64_t deadline_ms,
                         gd_gate_cb cb);
/** As gd_gate_cancel(); a unit granted but not yet reported goes back as by a release. */
void gd_shared_gate_cancel(gd_shared_gate_t *sg, gd_gate_waiter_t *waiter);
/** Gives back a unit: to the first waiter of this thread, else to the budget. */
void gd_shared_gate_release(gd_shared_gate_t *sg);

#endif
