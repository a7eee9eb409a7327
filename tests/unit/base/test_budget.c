#include <pthread.h>
#include <stdatomic.h>

#include <uv.h>

#include "base/budget.h"
#include "runner.h"

/* A member on a loop of its own, counting its callbacks. */
struct member {
    uv_loop_t loop;
    gd_budget_member_t m;
    int calls;
};

static void on_budget(gd_budget_member_t *m)
{
    struct member *x = m->data;
    x->calls++;
}

static void member_join(struct member *x, gd_budget_t *b)
{
    CHECK_INT_EQ(uv_loop_init(&x->loop), 0);
    x->m.data = x;
    x->calls = 0;
    CHECK_INT_EQ(gd_budget_join(b, &x->m, &x->loop, on_budget), 0);
}

/* Runs the member's loop once; returns how many callbacks it got. */
static int member_turn(struct member *x)
{
    int before = x->calls;
    uv_run(&x->loop, UV_RUN_NOWAIT);
    return x->calls - before;
}

static void member_leave(struct member *x)
{
    gd_budget_leave(&x->m);
    CHECK_INT_EQ(uv_run(&x->loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(uv_loop_close(&x->loop), 0);
}

static void test_units_are_shared(void)
{
    gd_budget_t *b = gd_budget_new(2, 2);
    struct member a, c;

    member_join(&a, b);
    member_join(&c, b);
    CHECK(gd_budget_take(&a.m));
    CHECK(gd_budget_take(&c.m));
    CHECK(!gd_budget_take(&a.m));
    CHECK(!gd_budget_take(&c.m));
    CHECK_INT_EQ(gd_budget_used(b), 2);
    /* nobody waits: giving back tells nobody */
    gd_budget_give(&c.m);
    CHECK_INT_EQ(member_turn(&a), 0);
    CHECK_INT_EQ(member_turn(&c), 0);
    CHECK(gd_budget_take(&a.m));
    CHECK_INT_EQ(gd_budget_used(b), 2);
    gd_budget_give(&a.m);
    gd_budget_give(&a.m);
    CHECK_INT_EQ(gd_budget_used(b), 0);
    member_leave(&a);
    member_leave(&c);
    gd_budget_free(b);
}

static void test_a_want_reaches_the_others_and_a_give_the_wanting(void)
{
    gd_budget_t *b = gd_budget_new(1, 2);
    struct member a, c;

    member_join(&a, b);
    member_join(&c, b);
    CHECK(gd_budget_take(&a.m)); /* a keeps it idle, say */
    CHECK(!gd_budget_take(&c.m));
    CHECK(!gd_budget_is_wanted_elsewhere(&a.m));
    gd_budget_want(&c.m, true);
    CHECK(gd_budget_is_wanted_elsewhere(&a.m));
    CHECK(!gd_budget_is_wanted_elsewhere(&c.m));
    /* a hears it (to give back its idle unit), and c too (to try again) */
    CHECK_INT_EQ(member_turn(&a), 1);
    CHECK_INT_EQ(member_turn(&c), 1);
    gd_budget_want(&c.m, true); /* already wanting: nothing new */
    CHECK_INT_EQ(member_turn(&a), 0);
    gd_budget_give(&a.m);
    CHECK_INT_EQ(member_turn(&c), 1); /* the wanting member hears of the unit */
    CHECK_INT_EQ(member_turn(&a), 0);
    CHECK(gd_budget_take(&c.m));
    gd_budget_want(&c.m, false);
    CHECK(!gd_budget_is_wanted_elsewhere(&a.m));
    gd_budget_give(&c.m);
    CHECK_INT_EQ(member_turn(&a), 0);
    member_leave(&a);
    member_leave(&c);
    gd_budget_free(b);
}

static void test_a_member_that_leaves_hears_nothing_more(void)
{
    gd_budget_t *b = gd_budget_new(1, 2);
    struct member a, c;

    member_join(&a, b);
    member_join(&c, b);
    CHECK(gd_budget_take(&c.m));
    gd_budget_want(&a.m, true);
    member_leave(&a); /* its want goes with it */
    CHECK(!gd_budget_is_wanted_elsewhere(&c.m));
    gd_budget_give(&c.m);
    CHECK_INT_EQ(member_turn(&c), 1); /* a's want reached c before a left */
    member_leave(&c);
    gd_budget_free(b);
}

static void test_tell_others_wakes_every_other_member(void)
{
    gd_budget_t *b = gd_budget_new(2, 3);
    struct member a, c, d;

    member_join(&a, b);
    member_join(&c, b);
    member_join(&d, b);
    CHECK_INT_EQ(gd_budget_total(b), 2);
    /* nobody wants a unit: the news reaches them all the same, but not the teller */
    gd_budget_tell_others(&a.m);
    CHECK_INT_EQ(member_turn(&a), 0);
    CHECK_INT_EQ(member_turn(&c), 1);
    CHECK_INT_EQ(member_turn(&d), 1);
    member_leave(&a);
    member_leave(&c);
    member_leave(&d);
    gd_budget_free(b);
}

#define NTHREADS 4
#define ROUNDS   100000

struct racer {
    gd_budget_t *budget;
    atomic_size_t *in_use, *peak;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct member x;
    member_join(&x, r->budget);
    for (int i = 0; i < ROUNDS; i++) {
        if (!gd_budget_take(&x.m))
            continue;
        size_t now = atomic_fetch_add(r->in_use, 1) + 1;
        size_t peak = atomic_load(r->peak);
        while (now > peak && !atomic_compare_exchange_weak(r->peak, &peak, now))
            ;
        atomic_fetch_sub(r->in_use, 1);
        gd_budget_give(&x.m);
    }
    member_leave(&x);
    return NULL;
}

/* Threads taking and giving as fast as they can never hold more than the total. */
static void test_threads_never_exceed_the_total(void)
{
    gd_budget_t *b = gd_budget_new(3, NTHREADS);
    atomic_size_t in_use = 0, peak = 0;
    struct racer r = {b, &in_use, &peak};
    pthread_t t[NTHREADS];

    for (int i = 0; i < NTHREADS; i++)
        CHECK_INT_EQ(pthread_create(&t[i], NULL, race, &r), 0);
    for (int i = 0; i < NTHREADS; i++)
        CHECK_INT_EQ(pthread_join(t[i], NULL), 0);
    CHECK(atomic_load(&peak) <= 3);
    CHECK(atomic_load(&peak) >= 1);
    CHECK_INT_EQ(gd_budget_used(b), 0);
    gd_budget_free(b);
}

const gd_test_case_t gd_test_cases[] = {
    {"units_are_shared", test_units_are_shared},
    {"a_want_reaches_the_others_and_a_give_the_wanting",
     test_a_want_reaches_the_others_and_a_give_the_wanting},
    {"a_member_that_leaves_hears_nothing_more", test_a_member_that_leaves_hears_nothing_more},
    {"tell_others_wakes_every_other_member", test_tell_others_wakes_every_other_member},
    {"threads_never_exceed_the_total", test_threads_never_exceed_the_total},
    {NULL, NULL},
};
