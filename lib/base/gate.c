#include "base/gate.h"

#include <h2o/memory.h>

#include "base/util.h"

static void on_report(gd_timer_t *timer);
static void grant_free_units(gd_gate_t *gate);

void gd_gate_init(gd_gate_t *gate, gd_timers_t *timers, size_t limit)
{
    *gate = (gd_gate_t){.limit = limit, ._timers = timers};
    h2o_linklist_init_anchor(&gate->_waiters);
    h2o_linklist_init_anchor(&gate->_granted);
    gd_timer_init(&gate->_report, on_report);
}

void gd_gate_dispose(gd_gate_t *gate)
{
    GD_REQUIRE(gate->held == 0 && gate->waiting == 0 && h2o_linklist_is_empty(&gate->_granted));
    gd_timer_stop(gate->_timers, &gate->_report);
}

bool gd_gate_try_acquire(gd_gate_t *gate)
{
    if (gate->held >= gate->limit || gate->waiting > 0)
        return false;
    gate->held++;
    return true;
}

bool gd_gate_is_waiting(const gd_gate_waiter_t *waiter)
{
    return waiter->_gate != NULL;
}

/* Takes @waiter out of its list and stops its deadline; the caller reports to it. */
static void unlink_waiter(gd_gate_waiter_t *waiter)
{
    gd_gate_t *gate = waiter->_gate;

    h2o_linklist_unlink(&waiter->_link);
    gd_timer_stop(gate->_timers, &waiter->_deadline);
    if (!waiter->_is_granted)
        gate->waiting--;
    waiter->_gate = NULL;
}

static void on_deadline(gd_timer_t *timer)
{
    gd_gate_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(gd_gate_waiter_t, _deadline, timer);

    unlink_waiter(waiter);
    waiter->_cb(waiter, false);
}

static void on_report(gd_timer_t *timer)
{
    gd_gate_t *gate = H2O_STRUCT_FROM_MEMBER(gd_gate_t, _report, timer);

    /* A callback may release (granting the next waiter, appended here) or cancel others. */
    while (!h2o_linklist_is_empty(&gate->_granted)) {
        gd_gate_waiter_t *w = H2O_STRUCT_FROM_MEMBER(gd_gate_waiter_t, _link, gate->_granted.next);
        unlink_waiter(w);
        w->_cb(w, true);
    }
}

void gd_gate_wait(gd_gate_t *gate, gd_gate_waiter_t *waiter, uint64_t deadline_ms, gd_gate_cb cb)
{
    GD_REQUIRE(waiter->_gate == NULL);
    waiter->_gate = gate;
    waiter->_cb = cb;
    waiter->_is_granted = false;
    waiter->_link = (h2o_linklist_t){NULL, NULL};
    h2o_linklist_insert(&gate->_waiters, &waiter->_link);
    gate->waiting++;
    gd_timer_init(&waiter->_deadline, on_deadline);
    /* A deadline already past still fires from the timer heap, never from inside this call. */
    gd_timer_start(gate->_timers, &waiter->_deadline, deadline_ms);
    /* A unit is free (the caller did not try first): granted like any other, reported later. */
    grant_free_units(gate);
}

void gd_gate_cancel(gd_gate_waiter_t *waiter)
{
    gd_gate_t *gate = waiter->_gate;

    if (gate == NULL)
        return;
    bool was_granted = waiter->_is_granted;
    unlink_waiter(waiter);
    if (was_granted)
        gd_gate_release(gate); /* the unit it never heard of goes to the next in line */
}

/* Takes the first waiter out of the line, its deadline stopped. */
static gd_gate_waiter_t *take_first(gd_gate_t *gate)
{
    gd_gate_waiter_t *first = H2O_STRUCT_FROM_MEMBER(gd_gate_waiter_t, _link, gate->_waiters.next);

    h2o_linklist_unlink(&first->_link);
    gd_timer_stop(gate->_timers, &first->_deadline);
    gate->waiting--;
    return first;
}

/* Grants free units to the first waiters, to be reported on the next loop iteration. */
static void grant_free_units(gd_gate_t *gate)
{
    while (gate->held < gate->limit && !h2o_linklist_is_empty(&gate->_waiters)) {
        gd_gate_waiter_t *first = take_first(gate);
        gate->held++;
        first->_is_granted = true;
        h2o_linklist_insert(&gate->_granted, &first->_link);
    }
    if (!h2o_linklist_is_empty(&gate->_granted) && !gd_timer_is_active(&gate->_report))
        gd_timer_start(gate->_timers, &gate->_report, gd_timers_now(gate->_timers));
}

void gd_gate_release(gd_gate_t *gate)
{
    GD_REQUIRE(gate->held > 0);
    /* Given back and granted again at once: the unit is never seen free by a newcomer. */
    gate->held--;
    grant_free_units(gate);
}

gd_gate_waiter_t *gd_gate_hand_over(gd_gate_t *gate)
{
    GD_REQUIRE(gate->held > 0);
    if (h2o_linklist_is_empty(&gate->_waiters) || gate->held > gate->limit)
        return NULL;
    gd_gate_waiter_t *first = H2O_STRUCT_FROM_MEMBER(gd_gate_waiter_t, _link, gate->_waiters.next);
    unlink_waiter(first); /* out of the line as a deadline or a cancel takes it */
    return first;
}

void gd_gate_set_limit(gd_gate_t *gate, size_t limit)
{
    gate->limit = limit;
    grant_free_units(gate);
}

void gd_gate_refuse_all(gd_gate_t *gate)
{
    while (!h2o_linklist_is_empty(&gate->_waiters)) {
        gd_gate_waiter_t *first =
            H2O_STRUCT_FROM_MEMBER(gd_gate_waiter_t, _link, gate->_waiters.next);
        unlink_waiter(first);
        first->_cb(first, false);
    }
}

const gd_gate_waiter_t *gd_gate_first_waiter(const gd_gate_t *gate)
{
    const h2o_linklist_t *first = gate->_waiters.next;
    return first == &gate->_waiters ? NULL : H2O_STRUCT_FROM_MEMBER(gd_gate_waiter_t, _link, first);
}

const gd_gate_waiter_t *gd_gate_next_waiter(const gd_gate_t *gate, const gd_gate_waiter_t *waiter)
{
    const h2o_linklist_t *next = waiter->_link.next;
    return next == &gate->_waiters ? NULL : H2O_STRUCT_FROM_MEMBER(gd_gate_waiter_t, _link, next);
}
