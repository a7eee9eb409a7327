#include <stdint.h>
#include <stdlib.h>

#include <uv.h>

#include "base/gate.h"
#include "base/timer.h"
#include "runner.h"

/* A request at the door: records how and when its wait ended. */
struct visitor {
    gd_gate_waiter_t waiter;
    struct fixture *fx;
    int id;
    void (*hook)(struct visitor *v, bool is_granted);
};

struct fixture {
    uv_loop_t loop;
    gd_timers_t *timers;
    gd_gate_t gate;
    int admitted[64], refused[64];
    size_t nadmitted, nrefused;
    uint64_t refused_at_ms[64];
    struct visitor *other;
};

static void fixture_init(struct fixture *fx, size_t limit)
{
    memset(fx, 0, sizeof(*fx));
    CHECK_INT_EQ(uv_loop_init(&fx->loop), 0);
    fx->timers = gd_timers_new(&fx->loop);
    CHECK(fx->timers != NULL);
    gd_gate_init(&fx->gate, fx->timers, limit);
}

static void fixture_dispose(struct fixture *fx)
{
    gd_gate_dispose(&fx->gate);
    CHECK_INT_EQ(gd_timers_count(fx->timers), 0);
    fx->timers = gd_timers_free(fx->timers);
    CHECK_INT_EQ(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(uv_loop_close(&fx->loop), 0);
}

/* One turn of the loop: grants are reported on the iteration after the release. */
static void turn(struct fixture *fx)
{
    uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static void on_wait_end(gd_gate_waiter_t *waiter, bool is_granted)
{
    struct visitor *v = (struct visitor *)waiter;
    struct fixture *fx = v->fx;

    CHECK(!gd_gate_is_waiting(waiter));
    if (is_granted) {
        fx->admitted[fx->nadmitted++] = v->id;
    } else {
        fx->refused_at_ms[fx->nrefused] = gd_timers_now(fx->timers);
        fx->refused[fx->nrefused++] = v->id;
    }
    if (v->hook != NULL)
        v->hook(v, is_granted);
}

static void visit(struct fixture *fx, struct visitor *v, int id, uint64_t wait_ms)
{
    *v = (struct visitor){.fx = fx, .id = id};
    gd_gate_wait(&fx->gate, &v->waiter, gd_timers_now(fx->timers) + wait_ms, on_wait_end);
    CHECK(gd_gate_is_waiting(&v->waiter));
}

static void test_slots_up_to_the_limit(void)
{
    struct fixture fx;

    fixture_init(&fx, 2);
    CHECK(gd_gate_try_acquire(&fx.gate));
    CHECK(gd_gate_try_acquire(&fx.gate));
    CHECK(!gd_gate_try_acquire(&fx.gate));
    CHECK_INT_EQ(fx.gate.held, 2);
    gd_gate_release(&fx.gate);
    CHECK(gd_gate_try_acquire(&fx.gate));
    gd_gate_release(&fx.gate);
    gd_gate_release(&fx.gate);
    CHECK_INT_EQ(fx.gate.held, 0);
    fixture_dispose(&fx);
}

/* Waiters get freed units in arrival order, granted in the release and told on the next turn. */
static void test_release_hands_the_slot_to_the_first_waiter(void)
{
    struct fixture fx;
    struct visitor a, b, c;

    fixture_init(&fx, 1);
    CHECK(gd_gate_try_acquire(&fx.gate));
    visit(&fx, &a, 1, 1000);
    visit(&fx, &b, 2, 1000);
    visit(&fx, &c, 3, 1000);
    CHECK_INT_EQ(fx.gate.waiting, 3);
    gd_gate_release(&fx.gate);
    CHECK_INT_EQ(fx.nadmitted, 0); /* never from inside the release */
    CHECK_INT_EQ(fx.gate.held, 1); /* passed on, never free */
    CHECK_INT_EQ(fx.gate.waiting, 2);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 1);
    CHECK_INT_EQ(fx.admitted[0], 1);
    gd_gate_release(&fx.gate);
    turn(&fx);
    gd_gate_release(&fx.gate);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 3);
    CHECK_INT_EQ(fx.admitted[1], 2);
    CHECK_INT_EQ(fx.admitted[2], 3);
    gd_gate_release(&fx.gate);
    CHECK_INT_EQ(fx.gate.held, 0);
    CHECK_INT_EQ(fx.nrefused, 0);
    fixture_dispose(&fx);
}

/* Nobody overtakes a waiter: a newcomer does not get a slot while someone waits. */
static void test_no_overtaking(void)
{
    struct fixture fx;
    struct visitor a;

    fixture_init(&fx, 1);
    CHECK(gd_gate_try_acquire(&fx.gate));
    visit(&fx, &a, 1, 1000);
    gd_gate_release(&fx.gate); /* to a */
    CHECK(!gd_gate_try_acquire(&fx.gate)); /* granted to a, not yet told: still a's */
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 1);
    gd_gate_release(&fx.gate);
    CHECK(gd_gate_try_acquire(&fx.gate));
    gd_gate_release(&fx.gate);
    fixture_dispose(&fx);
}

/* A waiter whose deadline passes is refused then, not before, and leaves the queue. */
static void test_deadline_refuses(void)
{
    struct fixture fx;
    struct visitor a, b;

    fixture_init(&fx, 1);
    CHECK(gd_gate_try_acquire(&fx.gate));
    uint64_t t0 = gd_timers_now(fx.timers);
    visit(&fx, &a, 1, 30);
    visit(&fx, &b, 2, 5000);
    CHECK_INT_EQ(fx.nrefused, 0); /* never from inside the wait call */
    /* Runs the loop until a's deadline; b keeps the loop alive, so stop by hand after a. */
    while (fx.nrefused == 0)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK_INT_EQ(fx.refused[0], 1);
    CHECK(fx.refused_at_ms[0] >= t0 + 30);
    CHECK(fx.refused_at_ms[0] < t0 + 4000); /* long before b's deadline (valgrind, a loaded machine) */
    CHECK_INT_EQ(fx.gate.waiting, 1);
    gd_gate_release(&fx.gate); /* to b */
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 1);
    CHECK_INT_EQ(fx.admitted[0], 2);
    gd_gate_release(&fx.gate);
    fixture_dispose(&fx);
}

static void test_cancel_leaves_without_a_report(void)
{
    struct fixture fx;
    struct visitor a, b;

    fixture_init(&fx, 1);
    CHECK(gd_gate_try_acquire(&fx.gate));
    visit(&fx, &a, 1, 1000);
    visit(&fx, &b, 2, 1000);
    gd_gate_cancel(&a.waiter);
    CHECK(!gd_gate_is_waiting(&a.waiter));
    gd_gate_cancel(&a.waiter); /* twice is a no-op */
    gd_gate_release(&fx.gate);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 1);
    CHECK_INT_EQ(fx.admitted[0], 2);
    gd_gate_release(&fx.gate);
    CHECK_INT_EQ(fx.nrefused, 0);
    fixture_dispose(&fx);
}

static void test_refuse_all_in_queue_order(void)
{
    struct fixture fx;
    struct visitor v[3];

    fixture_init(&fx, 1);
    CHECK(gd_gate_try_acquire(&fx.gate));
    for (int i = 0; i < 3; i++)
        visit(&fx, &v[i], i + 1, 1000);
    gd_gate_refuse_all(&fx.gate);
    CHECK_INT_EQ(fx.nrefused, 3);
    for (int i = 0; i < 3; i++)
        CHECK_INT_EQ(fx.refused[i], i + 1);
    CHECK_INT_EQ(fx.gate.waiting, 0);
    gd_gate_release(&fx.gate);
    fixture_dispose(&fx);
}

/* The granted waiter's callback may give its unit straight back (an answer that needs no
 * call), which grants the next one, told in the same loop iteration without recursion. */
static void release_at_once(struct visitor *v, bool is_granted)
{
    if (is_granted)
        gd_gate_release(&v->fx->gate);
}

static void test_release_from_inside_a_callback(void)
{
    struct fixture fx;
    struct visitor v[3];

    fixture_init(&fx, 1);
    CHECK(gd_gate_try_acquire(&fx.gate));
    for (int i = 0; i < 3; i++) {
        visit(&fx, &v[i], i + 1, 1000);
        v[i].hook = release_at_once;
    }
    gd_gate_release(&fx.gate);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 3);
    CHECK_INT_EQ(fx.gate.held, 0);
    CHECK_INT_EQ(fx.gate.waiting, 0);
    fixture_dispose(&fx);
}

/* A refused waiter's callback may free another waiter's storage after cancelling it. */
static void cancel_other(struct visitor *v, bool is_granted)
{
    (void)is_granted;
    gd_gate_cancel(&v->fx->other->waiter);
}

static void test_refuse_all_survives_a_callback_cancelling_the_next(void)
{
    struct fixture fx;
    struct visitor a, b, c;

    fixture_init(&fx, 1);
    CHECK(gd_gate_try_acquire(&fx.gate));
    visit(&fx, &a, 1, 1000);
    visit(&fx, &b, 2, 1000);
    visit(&fx, &c, 3, 1000);
    a.hook = cancel_other;
    fx.other = &b;
    gd_gate_refuse_all(&fx.gate);
    CHECK_INT_EQ(fx.nrefused, 2);
    CHECK_INT_EQ(fx.refused[0], 1);
    CHECK_INT_EQ(fx.refused[1], 3);
    gd_gate_release(&fx.gate);
    fixture_dispose(&fx);
}

/* A waiter cancelled after its grant but before it was told gives the unit to the next one. */
static void test_cancel_after_grant_passes_the_unit_on(void)
{
    struct fixture fx;
    struct visitor a, b;

    fixture_init(&fx, 1);
    CHECK(gd_gate_try_acquire(&fx.gate));
    visit(&fx, &a, 1, 1000);
    visit(&fx, &b, 2, 1000);
    gd_gate_release(&fx.gate); /* granted to a */
    CHECK(gd_gate_is_waiting(&a.waiter));
    gd_gate_cancel(&a.waiter); /* a's client left before a heard of it */
    CHECK_INT_EQ(fx.gate.held, 1);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 1);
    CHECK_INT_EQ(fx.admitted[0], 2);
    gd_gate_release(&fx.gate);
    CHECK_INT_EQ(fx.gate.held, 0);
    fixture_dispose(&fx);
}

/* Waiting with a unit free (no try first) grants it like any other: told on the next turn. */
static void test_wait_with_a_free_unit(void)
{
    struct fixture fx;
    struct visitor a;

    fixture_init(&fx, 1);
    visit(&fx, &a, 1, 1000);
    CHECK_INT_EQ(fx.nadmitted, 0);
    CHECK_INT_EQ(fx.gate.held, 1);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 1);
    gd_gate_release(&fx.gate);
    fixture_dispose(&fx);
}

/* A holder hands its unit straight to the first waiter: no report, the line's order kept. */
static void test_hand_over_skips_the_report(void)
{
    struct fixture fx;
    struct visitor a, b;

    fixture_init(&fx, 1);
    CHECK(gd_gate_try_acquire(&fx.gate));
    CHECK(gd_gate_hand_over(&fx.gate) == NULL); /* nobody waits: still the holder's */
    visit(&fx, &a, 1, 1000);
    visit(&fx, &b, 2, 1000);
    CHECK(gd_gate_hand_over(&fx.gate) == &a.waiter);
    CHECK(!gd_gate_is_waiting(&a.waiter));
    CHECK_INT_EQ(fx.gate.held, 1);
    CHECK_INT_EQ(fx.gate.waiting, 1);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 0); /* a is never reported to */
    gd_gate_release(&fx.gate);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 1);
    CHECK_INT_EQ(fx.admitted[0], 2);
    gd_gate_release(&fx.gate);
    CHECK_INT_EQ(fx.nrefused, 0);
    fixture_dispose(&fx);
}

/* A gate may start with no unit; a raised limit grants to waiters in order, a lowered one
 * grants nothing until the units held are below it, and a hand-over is refused meanwhile. */
static void test_limit_changes(void)
{
    struct fixture fx;
    struct visitor a, b, c;

    fixture_init(&fx, 0);
    CHECK(!gd_gate_try_acquire(&fx.gate));
    visit(&fx, &a, 1, 1000);
    visit(&fx, &b, 2, 1000);
    visit(&fx, &c, 3, 1000);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 0);
    gd_gate_set_limit(&fx.gate, 2);
    CHECK_INT_EQ(fx.gate.held, 2);
    CHECK_INT_EQ(fx.nadmitted, 0); /* never from inside the call */
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 2);
    CHECK_INT_EQ(fx.admitted[0], 1);
    CHECK_INT_EQ(fx.admitted[1], 2);
    gd_gate_set_limit(&fx.gate, 1);
    CHECK(gd_gate_hand_over(&fx.gate) == NULL); /* over the limit: the unit goes back */
    gd_gate_release(&fx.gate);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 2); /* held 1 of 1 */
    gd_gate_release(&fx.gate);
    turn(&fx);
    CHECK_INT_EQ(fx.nadmitted, 3);
    CHECK_INT_EQ(fx.admitted[2], 3);
    gd_gate_release(&fx.gate);
    CHECK_INT_EQ(fx.gate.held, 0);
    fixture_dispose(&fx);
}

/* The live view walks the line oldest first. */
static void test_waiters_in_order(void)
{
    struct fixture fx;
    struct visitor v[3];

    fixture_init(&fx, 0);
    CHECK(gd_gate_first_waiter(&fx.gate) == NULL);
    for (int i = 0; i < 3; i++)
        visit(&fx, &v[i], i, 1000);
    const gd_gate_waiter_t *w = gd_gate_first_waiter(&fx.gate);
    for (int i = 0; i < 3; i++, w = gd_gate_next_waiter(&fx.gate, w))
        CHECK(w == &v[i].waiter);
    CHECK(w == NULL);
    gd_gate_cancel(&v[1].waiter);
    w = gd_gate_first_waiter(&fx.gate);
    CHECK(w == &v[0].waiter);
    CHECK(gd_gate_next_waiter(&fx.gate, w) == &v[2].waiter);
    gd_gate_cancel(&v[0].waiter);
    gd_gate_cancel(&v[2].waiter);
    fixture_dispose(&fx);
}

const gd_test_case_t gd_test_cases[] = {
    {"hand_over_skips_the_report", test_hand_over_skips_the_report},
    {"limit_changes", test_limit_changes},
    {"cancel_after_grant_passes_the_unit_on", test_cancel_after_grant_passes_the_unit_on},
    {"wait_with_a_free_unit", test_wait_with_a_free_unit},
    {"slots_up_to_the_limit", test_slots_up_to_the_limit},
    {"release_hands_the_slot_to_the_first_waiter", test_release_hands_the_slot_to_the_first_waiter},
    {"no_overtaking", test_no_overtaking},
    {"deadline_refuses", test_deadline_refuses},
    {"cancel_leaves_without_a_report", test_cancel_leaves_without_a_report},
    {"refuse_all_in_queue_order", test_refuse_all_in_queue_order},
    {"release_from_inside_a_callback", test_release_from_inside_a_callback},
    {"refuse_all_survives_a_callback_cancelling_the_next",
     test_refuse_all_survives_a_callback_cancelling_the_next},
    {"waiters_in_order", test_waiters_in_order},
    {NULL, NULL},
};
