#include <stdint.h>
#include <string.h>

#include <uv.h>

#include "base/budget.h"
#include "base/shared_gate.h"
#include "base/timer.h"
#include "runner.h"

/* One thread's side: a loop, its timers and its gate, all driven from the test's thread. */
struct side {
    uv_loop_t loop;
    gd_timers_t *timers;
    gd_shared_gate_t sg;
    int granted, refused;
};

struct waiter {
    gd_gate_waiter_t w;
    struct side *side;
    int order;
};

static int next_order;
static int grant_order[16];
static int ngranted;

static void on_end(gd_gate_waiter_t *w, bool is_granted)
{
    struct waiter *x = (struct waiter *)w;

    if (is_granted) {
        x->side->granted++;
        grant_order[ngranted++] = x->order;
    } else {
        x->side->refused++;
    }
}

static void side_init(struct side *s, gd_budget_t *b)
{
    memset(s, 0, sizeof(*s));
    CHECK_INT_EQ(uv_loop_init(&s->loop), 0);
    s->timers = gd_timers_new(&s->loop);
    CHECK_INT_EQ(gd_shared_gate_init(&s->sg, b, &s->loop, s->timers), 0);
}

static void side_close(struct side *s)
{
    gd_shared_gate_close(&s->sg);
    s->timers = gd_timers_free(s->timers);
    CHECK_INT_EQ(uv_run(&s->loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(uv_loop_close(&s->loop), 0);
}

static void turn(struct side *a, struct side *b)
{
    for (int i = 0; i < 3; i++) {
        uv_run(&a->loop, UV_RUN_NOWAIT);
        uv_run(&b->loop, UV_RUN_NOWAIT);
    }
}

static void wait_on(struct side *s, struct waiter *x, uint64_t deadline_ms)
{
    *x = (struct waiter){.side = s, .order = next_order++};
    gd_shared_gate_wait(&s->sg, &x->w, deadline_ms, on_end);
}

/* Two threads share 2 units: never more than 2 held together; a unit freed on one thread goes
 * to a waiter of the other, and units not in use go back to the budget. */
static void test_units_are_shared_by_the_threads(void)
{
    gd_budget_t *b = gd_budget_new(2, 2);
    struct side a, c;
    struct waiter w1, w2;

    side_init(&a, b);
    side_init(&c, b);
    CHECK(gd_shared_gate_try_acquire(&a.sg));
    CHECK(gd_shared_gate_try_acquire(&a.sg));
    CHECK(!gd_shared_gate_try_acquire(&c.sg)); /* both units are a's */
    CHECK_INT_EQ(gd_budget_used(b), 2);
    wait_on(&c, &w1, UINT64_MAX / 2);
    wait_on(&c, &w2, UINT64_MAX / 2);
    turn(&a, &c);
    CHECK_INT_EQ(c.granted, 0);
    gd_shared_gate_release(&a.sg); /* nobody waits on a: back to the budget, c takes it */
    turn(&a, &c);
    CHECK_INT_EQ(c.granted, 1);
    CHECK_INT_EQ(gd_budget_used(b), 2);
    gd_shared_gate_release(&a.sg);
    turn(&a, &c);
    CHECK_INT_EQ(c.granted, 2);
    CHECK_INT_EQ(grant_order[0], w1.order); /* FIFO within c */
    CHECK_INT_EQ(grant_order[1], w2.order);
    gd_shared_gate_release(&c.sg);
    gd_shared_gate_release(&c.sg);
    CHECK_INT_EQ(gd_budget_used(b), 0); /* none kept idle */
    side_close(&a);
    side_close(&c);
    gd_budget_free(b);
}

/* A wait ends at its deadline; a cancelled waiter's granted unit goes on to the next one. */
static void test_deadline_and_cancel(void)
{
    gd_budget_t *b = gd_budget_new(1, 2);
    struct side a, c;
    struct waiter w1, w2;

    side_init(&a, b);
    side_init(&c, b);
    CHECK(gd_shared_gate_try_acquire(&a.sg));
    wait_on(&c, &w1, gd_timers_now(c.timers)); /* already due */
    turn(&a, &c);
    CHECK_INT_EQ(c.refused, 1);
    wait_on(&c, &w1, UINT64_MAX / 2);
    wait_on(&c, &w2, UINT64_MAX / 2);
    gd_shared_gate_release(&a.sg);
    turn(&a, &c);
    CHECK_INT_EQ(c.granted, 1); /* w1 */
    gd_shared_gate_cancel(&c.sg, &w2.w);
    gd_shared_gate_release(&c.sg);
    CHECK_INT_EQ(gd_budget_used(b), 0);
    CHECK(gd_shared_gate_try_acquire(&a.sg));
    gd_shared_gate_release(&a.sg);
    side_close(&a);
    side_close(&c);
    gd_budget_free(b);
}

const gd_test_case_t gd_test_cases[] = {
    {"units_are_shared_by_the_threads", test_units_are_shared_by_the_threads},
    {"deadline_and_cancel", test_deadline_and_cancel},
    {NULL, NULL},
};
