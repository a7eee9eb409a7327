#include "base/shared_gate.h"

/* Matches the units held to what this thread needs: more from the budget while its calls wait,
 * and every unit not in use back to it, so that no thread sits on a unit another could use. */
static void rebalance(gd_shared_gate_t *sg)
{
    gd_gate_t *line = &sg->line;

    while (sg->_units < line->held + line->waiting && gd_budget_take(&sg->_member))
        sg->_units++;
    gd_gate_set_limit(line, sg->_units); /* first: the units just taken are granted */
    while (sg->_units > line->held) {
        gd_budget_give(&sg->_member);
        sg->_units--;
    }
    gd_gate_set_limit(line, sg->_units);
    gd_budget_want(&sg->_member, line->waiting > 0);
}

static void on_budget(gd_budget_member_t *member)
{
    rebalance(member->data);
}

int gd_shared_gate_init(gd_shared_gate_t *sg, gd_budget_t *budget, uv_loop_t *loop,
                        gd_timers_t *timers)
{
    *sg = (gd_shared_gate_t){0};
    gd_gate_init(&sg->line, timers, 0);
    sg->_member.data = sg;
    return gd_budget_join(budget, &sg->_member, loop, on_budget);
}

void gd_shared_gate_close(gd_shared_gate_t *sg)
{
    gd_gate_dispose(&sg->line);
    while (sg->_units > 0) { /* none in use (gd_gate_dispose checked): all go back */
        gd_budget_give(&sg->_member);
        sg->_units--;
    }
    gd_budget_leave(&sg->_member);
}

bool gd_shared_gate_try_acquire(gd_shared_gate_t *sg)
{
    if (gd_gate_try_acquire(&sg->line))
        return true;
    if (sg->line.waiting > 0 || !gd_budget_take(&sg->_member))
        return false;
    sg->_units++;
    gd_gate_set_limit(&sg->line, sg->_units);
    return gd_gate_try_acquire(&sg->line);
}

void gd_shared_gate_wait(gd_shared_gate_t *sg, gd_gate_waiter_t *waiter, uint64_t deadline_ms,
                         gd_gate_cb cb)
{
    gd_gate_wait(&sg->line, waiter, deadline_ms, cb);
    rebalance(sg);
}

void gd_shared_gate_cancel(gd_shared_gate_t *sg, gd_gate_waiter_t *waiter)
{
    gd_gate_cancel(waiter);
    rebalance(sg);
}

void gd_shared_gate_release(gd_shared_gate_t *sg)
{
    gd_gate_release(&sg->line);
    rebalance(sg);
}
