#include <stdint.h>
#include <stdlib.h>

#include <uv.h>

#include "runner.h"
#include "base/timer.h"
#include "base/util.h"

/* A timer that logs its id when it fires, and may run a hook. */
struct probe {
    gd_timer_t timer;
    struct fixture *fx;
    int id;
    uint64_t due_ms;
    uint64_t start_order;
    void (*hook)(struct probe *p);
};

struct fixture {
    uv_loop_t loop;
    uv_check_t check;
    gd_timers_t *timers;
    uint64_t iterations; /* loop iterations so far, counted by a check handle */
    uint64_t starts;
    int fired[2048];
    uint64_t fired_at_iteration[2048];
    size_t nfired;
    struct probe *others[8];
};

static void on_check(uv_check_t *check)
{
    struct fixture *fx = check->data;
    fx->iterations++;
}

static void fixture_init(struct fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    CHECK_INT_EQ(uv_loop_init(&fx->loop), 0);
    CHECK_INT_EQ(uv_check_init(&fx->loop, &fx->check), 0);
    fx->check.data = fx;
    CHECK_INT_EQ(uv_check_start(&fx->check, on_check), 0);
    uv_unref((uv_handle_t *)&fx->check); /* the check alone does not keep the loop running */
    fx->timers = gd_timers_new(&fx->loop);
    CHECK(fx->timers != NULL);
}

/* Frees the timer heap, closes every handle and checks that the loop closes cleanly. */
static void fixture_dispose(struct fixture *fx)
{
    if (fx->timers != NULL) {
        CHECK_INT_EQ(gd_timers_count(fx->timers), 0);
        fx->timers = gd_timers_free(fx->timers);
        CHECK(fx->timers == NULL);
    }
    uv_close((uv_handle_t *)&fx->check, NULL);
    CHECK_INT_EQ(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(uv_loop_close(&fx->loop), 0);
}

static void on_probe(gd_timer_t *timer)
{
    struct probe *p = (struct probe *)timer;
    struct fixture *fx = p->fx;

    CHECK(!gd_timer_is_active(timer));
    CHECK(gd_timers_now(fx->timers) >= p->due_ms);
    CHECK(fx->nfired < GD_ARRAY_SIZE(fx->fired));
    fx->fired_at_iteration[fx->nfired] = fx->iterations;
    fx->fired[fx->nfired++] = p->id;
    if (p->hook != NULL)
        p->hook(p);
}

static void probe_init(struct probe *p, struct fixture *fx, int id)
{
    memset(p, 0, sizeof(*p));
    gd_timer_init(&p->timer, on_probe);
    p->fx = fx;
    p->id = id;
}

static void probe_start(struct probe *p, uint64_t due_ms)
{
    p->due_ms = due_ms;
    p->start_order = p->fx->starts++;
    gd_timer_start(p->fx->timers, &p->timer, due_ms);
}

static void test_fires_in_due_then_start_order(void)
{
    struct fixture fx;
    struct probe p[6];
    uint64_t now;

    fixture_init(&fx);
    now = gd_timers_now(fx.timers);
    CHECK_INT_EQ(now, uv_now(&fx.loop));
    for (int i = 0; i < 6; i++)
        probe_init(&p[i], &fx, i);
    probe_start(&p[0], now + 30);
    probe_start(&p[1], now + 10);
    probe_start(&p[2], now + 20);
    probe_start(&p[3], now + 10); /* same ms as p[1], started later */
    probe_start(&p[4], now - 5);  /* already due: fires first, but not from in here */
    probe_start(&p[5], now);
    CHECK_INT_EQ(gd_timers_count(fx.timers), 6);
    CHECK(gd_timer_is_active(&p[4].timer));
    CHECK_INT_EQ(fx.nfired, 0);

    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    int expected[] = {4, 5, 1, 3, 2, 0};
    CHECK_INT_EQ(fx.nfired, 6);
    for (size_t i = 0; i < 6; i++)
        CHECK_INT_EQ(fx.fired[i], expected[i]);
    CHECK_INT_EQ(gd_timers_count(fx.timers), 0);
    fixture_dispose(&fx);
}

/* Many timers in a scrambled order: the heap must give them back sorted. */
static void test_many_timers_come_out_sorted(void)
{
    enum { N = 2000 };
    struct fixture fx;
    struct probe *p = calloc(N, sizeof(*p));
    uint32_t rnd = 12345;
    uint64_t now;

    CHECK(p != NULL);
    fixture_init(&fx);
    now = gd_timers_now(fx.timers);
    for (int i = 0; i < N; i++) {
        rnd = rnd * 1103515245u + 12345u;
        probe_init(&p[i], &fx, i);
        probe_start(&p[i], now + (rnd >> 16) % 25);
    }
    /* Stop every fifth; restart every seventh to a new time. */
    for (int i = 0; i < N; i += 5)
        gd_timer_stop(fx.timers, &p[i].timer);
    for (int i = 3; i < N; i += 7) {
        rnd = rnd * 1103515245u + 12345u;
        probe_start(&p[i], now + (rnd >> 16) % 25);
    }
    size_t expected_count = gd_timers_count(fx.timers);
    CHECK(expected_count > N / 2);
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(fx.nfired, expected_count);
    for (size_t i = 1; i < fx.nfired; i++) {
        const struct probe *a = &p[fx.fired[i - 1]], *b = &p[fx.fired[i]];
        CHECK(a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->start_order < b->start_order));
    }
    fixture_dispose(&fx);
    free(p);
}

static void test_stop(void)
{
    struct fixture fx;
    struct probe a, b, c, never;
    uint64_t now;

    fixture_init(&fx);
    now = gd_timers_now(fx.timers);
    probe_init(&a, &fx, 1);
    probe_init(&b, &fx, 2);
    probe_init(&c, &fx, 3);
    probe_init(&never, &fx, 4);
    CHECK(!gd_timer_is_active(&never.timer));
    gd_timer_stop(fx.timers, &never.timer); /* not started: no-op */
    probe_start(&a, now + 5);
    probe_start(&b, now + 1);
    probe_start(&c, now + 10);
    gd_timer_stop(fx.timers, &b.timer); /* the earliest */
    CHECK(!gd_timer_is_active(&b.timer));
    gd_timer_stop(fx.timers, &b.timer); /* twice: no-op */
    CHECK_INT_EQ(gd_timers_count(fx.timers), 2);
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(fx.nfired, 2);
    CHECK_INT_EQ(fx.fired[0], 1);
    CHECK_INT_EQ(fx.fired[1], 3);

    /* Stopping the only timer lets the loop end at once. */
    probe_start(&a, now + 60000);
    gd_timer_stop(fx.timers, &a.timer);
    uint64_t t0 = uv_hrtime();
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK((uv_hrtime() - t0) / 1000000 < 1000);
    CHECK_INT_EQ(fx.nfired, 2);
    fixture_dispose(&fx);
}

static void test_restart(void)
{
    struct fixture fx;
    struct probe a, b;
    uint64_t now, t0;

    fixture_init(&fx);
    now = gd_timers_now(fx.timers);
    probe_init(&a, &fx, 1);
    probe_init(&b, &fx, 2);
    probe_start(&a, now + 10000);
    probe_start(&b, now + 5);
    probe_start(&a, now + 10); /* earlier: must re-arm */
    probe_start(&b, now + 30); /* later than armed: fires once, late enough */
    CHECK_INT_EQ(gd_timers_count(fx.timers), 2);
    t0 = uv_hrtime();
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK((uv_hrtime() - t0) / 1000000 < 1000);
    CHECK_INT_EQ(fx.nfired, 2);
    CHECK_INT_EQ(fx.fired[0], 1);
    CHECK_INT_EQ(fx.fired[1], 2);
    fixture_dispose(&fx);
}

/* Timer 1 stops timer 2 (same due time, started after it) and timer 3 (later). */
static void stop_others(struct probe *p)
{
    gd_timer_stop(p->fx->timers, &p->fx->others[0]->timer);
    gd_timer_stop(p->fx->timers, &p->fx->others[1]->timer);
}

static void test_stop_from_inside_a_callback(void)
{
    struct fixture fx;
    struct probe a, b, c, d;
    uint64_t now;

    fixture_init(&fx);
    now = gd_timers_now(fx.timers);
    probe_init(&a, &fx, 1);
    probe_init(&b, &fx, 2);
    probe_init(&c, &fx, 3);
    probe_init(&d, &fx, 4);
    a.hook = stop_others;
    fx.others[0] = &b;
    fx.others[1] = &c;
    probe_start(&a, now + 5);
    probe_start(&b, now + 5);
    probe_start(&d, now + 10);
    probe_start(&c, now + 20);
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(fx.nfired, 2);
    CHECK_INT_EQ(fx.fired[0], 1);
    CHECK_INT_EQ(fx.fired[1], 4);
    fixture_dispose(&fx);
}

/* Restarts itself, already due, a few times. */
static void restart_due(struct probe *p)
{
    if (p->fx->nfired < 10)
        probe_start(p, gd_timers_now(p->fx->timers) - 1);
}

/* A due time in the past fires on a later loop iteration, never from inside gd_timer_start()
 * and never in the pass that started it, so a callback restarting itself cannot starve the
 * loop. */
static void test_started_due_from_a_callback_fires_on_a_later_iteration(void)
{
    struct fixture fx;
    struct probe a;

    fixture_init(&fx);
    probe_init(&a, &fx, 1);
    a.hook = restart_due;
    probe_start(&a, gd_timers_now(fx.timers));
    CHECK_INT_EQ(fx.nfired, 0);
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(fx.nfired, 10);
    for (size_t i = 1; i < fx.nfired; i++)
        CHECK(fx.fired_at_iteration[i] > fx.fired_at_iteration[i - 1]);
    fixture_dispose(&fx);
}

/* Starts others[0] due long ago from a callback: it must still fire after the timers this
 * pass already had due (started before it). */
static void start_overdue_other(struct probe *p)
{
    probe_start(p->fx->others[0], 1);
}

static void test_started_from_a_callback_runs_after_the_pass(void)
{
    struct fixture fx;
    struct probe a, b, late;
    uint64_t now;

    fixture_init(&fx);
    now = gd_timers_now(fx.timers);
    probe_init(&a, &fx, 1);
    probe_init(&b, &fx, 2);
    probe_init(&late, &fx, 9);
    a.hook = start_overdue_other;
    fx.others[0] = &late;
    probe_start(&a, now);
    probe_start(&b, now);
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(fx.nfired, 3);
    CHECK_INT_EQ(fx.fired[0], 1);
    CHECK_INT_EQ(fx.fired[1], 2);
    CHECK_INT_EQ(fx.fired[2], 9);
    fixture_dispose(&fx);
}

static int freed_count;

static void on_free_me(gd_timer_t *timer)
{
    freed_count++;
    free(timer); /* the timer is stopped already: its memory is the callback's to free */
}

static void test_callback_may_free_its_timer(void)
{
    struct fixture fx;
    uint64_t now;

    fixture_init(&fx);
    now = gd_timers_now(fx.timers);
    for (int i = 0; i < 100; i++) {
        gd_timer_t *t = malloc(sizeof(*t));
        CHECK(t != NULL);
        gd_timer_init(t, on_free_me);
        gd_timer_start(fx.timers, t, now + (uint64_t)(i % 3));
    }
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(freed_count, 100);
    fixture_dispose(&fx);
}

static void free_timers(struct probe *p)
{
    p->fx->timers = gd_timers_free(p->fx->timers);
}

static void test_free(void)
{
    struct fixture fx;
    struct probe a;

    CHECK(gd_timers_free(NULL) == NULL);

    /* Unused. */
    fixture_init(&fx);
    fixture_dispose(&fx);

    /* Freed by the callback of its last timer. */
    fixture_init(&fx);
    probe_init(&a, &fx, 1);
    a.hook = free_timers;
    probe_start(&a, gd_timers_now(fx.timers) + 1);
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(fx.nfired, 1);
    CHECK(fx.timers == NULL);
    fixture_dispose(&fx);
}

/* The largest due time must not confuse the arming of the uv_timer_t. */
static void stop_far(struct probe *p)
{
    gd_timer_stop(p->fx->timers, &p->fx->others[0]->timer);
}

static void test_far_future(void)
{
    struct fixture fx;
    struct probe far, near;

    fixture_init(&fx);
    probe_init(&far, &fx, 1);
    probe_init(&near, &fx, 2);
    near.hook = stop_far;
    fx.others[0] = &far;
    probe_start(&far, UINT64_MAX);
    probe_start(&near, gd_timers_now(fx.timers) + 2);
    CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(fx.nfired, 1);
    CHECK_INT_EQ(fx.fired[0], 2);
    fixture_dispose(&fx);
}

const gd_test_case_t gd_test_cases[] = {
    {"fires_in_due_then_start_order", test_fires_in_due_then_start_order},
    {"many_timers_come_out_sorted", test_many_timers_come_out_sorted},
    {"stop", test_stop},
    {"restart", test_restart},
    {"stop_from_inside_a_callback", test_stop_from_inside_a_callback},
    {"started_due_from_a_callback_fires_on_a_later_iteration",
     test_started_due_from_a_callback_fires_on_a_later_iteration},
    {"started_from_a_callback_runs_after_the_pass",
     test_started_from_a_callback_runs_after_the_pass},
    {"callback_may_free_its_timer", test_callback_may_free_its_timer},
    {"free", test_free},
    {"far_future", test_far_future},
    {NULL, NULL},
};
