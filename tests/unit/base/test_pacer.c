#include "base/pacer.h"

#include <pthread.h>

#include "base/util.h"

#include "runner.h"

/* 100 a minute, bursts of 10: the first 10 go at once, then one every 600 ms. */
static void test_burst_then_one_per_interval(void)
{
    gd_pacer_t p;
    gd_pacer_slot_t s;
    uint64_t now = 1000000, far = UINT64_MAX;

    gd_pacer_init(&p, 100, 60000, 10);
    CHECK_INT_EQ(gd_pacer_interval_us(&p), 600000);
    for (int i = 0; i < 10; i++) {
        CHECK(gd_pacer_reserve(&p, now, far, &s));
        CHECK_INT_EQ(s.at_us, now);
    }
    for (int i = 1; i <= 5; i++) {
        CHECK(gd_pacer_reserve(&p, now, far, &s));
        CHECK_INT_EQ(s.at_us, now + (uint64_t)i * 600000);
    }
    CHECK_INT_EQ(atomic_load(&p.waited), 5);
    CHECK_INT_EQ(atomic_load(&p.refused), 0);
}

/* A slot at or after the latest moment is not reserved: the next caller gets it. */
static void test_refuses_a_slot_too_late_without_reserving(void)
{
    gd_pacer_t p;
    gd_pacer_slot_t s;

    gd_pacer_init(&p, 1, 1000, 1);
    CHECK(gd_pacer_reserve(&p, 0, 1, &s));
    CHECK_INT_EQ(s.at_us, 0);
    CHECK(!gd_pacer_reserve(&p, 0, 1000000, &s)); /* its slot is at 1 s: not before it */
    CHECK(!gd_pacer_reserve(&p, 0, 500000, &s));
    CHECK(gd_pacer_reserve(&p, 0, 1000001, &s));
    CHECK_INT_EQ(s.at_us, 1000000);
    CHECK_INT_EQ(atomic_load(&p.refused), 2);
}

/* Unused time does not pile up beyond the burst; the rate counts from the idle call. */
static void test_idle_refills_to_the_burst_only(void)
{
    gd_pacer_t p;
    gd_pacer_slot_t s;
    uint64_t t = 10000000;

    gd_pacer_init(&p, 10, 1000, 3); /* 100 ms apart */
    for (int i = 0; i < 3; i++)
        CHECK(gd_pacer_reserve(&p, t, UINT64_MAX, &s) && s.at_us == t);
    t += 60000000; /* a minute idle: 600 tokens' worth, but the bucket holds 3 */
    for (int i = 0; i < 3; i++)
        CHECK(gd_pacer_reserve(&p, t, UINT64_MAX, &s) && s.at_us == t);
    CHECK(gd_pacer_reserve(&p, t, UINT64_MAX, &s));
    CHECK_INT_EQ(s.at_us, t + 100000);
}

/* Intervals that do not divide evenly round up: never above the rate. */
static void test_interval_rounds_up(void)
{
    gd_pacer_t p;

    gd_pacer_init(&p, 3, 1000, 1);
    CHECK_INT_EQ(gd_pacer_interval_us(&p), 333334);
    gd_pacer_init(&p, 1000000, 1, 1);
    CHECK_INT_EQ(gd_pacer_interval_us(&p), 1);
}

/* Only the last reservation is given back; an earlier one is lost (the rate stays a bound). */
static void test_unreserve_gives_back_the_last_slot_only(void)
{
    gd_pacer_t p;
    gd_pacer_slot_t a, b, c;

    gd_pacer_init(&p, 1, 100, 1); /* 100 ms apart */
    CHECK(gd_pacer_reserve(&p, 0, UINT64_MAX, &a));
    CHECK(gd_pacer_reserve(&p, 0, UINT64_MAX, &b));
    CHECK_INT_EQ(b.at_us, 100000);
    gd_pacer_unreserve(&p, &b);
    CHECK(gd_pacer_reserve(&p, 0, UINT64_MAX, &c));
    CHECK_INT_EQ(c.at_us, 100000); /* b's slot again */
    CHECK(gd_pacer_reserve(&p, 0, UINT64_MAX, &b));
    gd_pacer_unreserve(&p, &c); /* not the last any more: nothing changes */
    CHECK(gd_pacer_reserve(&p, 0, UINT64_MAX, &c));
    CHECK_INT_EQ(c.at_us, 300000);
    (void)a;
}

#define NTHREADS   8
#define PER_THREAD 5000

struct racer {
    gd_pacer_t *p;
    uint64_t slots[PER_THREAD];
};

static void *race(void *arg)
{
    struct racer *r = arg;
    gd_pacer_slot_t s;

    for (int i = 0; i < PER_THREAD; i++) {
        GD_REQUIRE(gd_pacer_reserve(r->p, 0, UINT64_MAX, &s));
        r->slots[i] = s.at_us;
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Threads racing for tokens get every slot exactly once: 4 at 0, then one per interval. */
static void test_exact_across_threads(void)
{
    static struct racer racers[NTHREADS];
    static uint64_t all[NTHREADS * PER_THREAD];
    pthread_t th[NTHREADS];
    gd_pacer_t p;

    gd_pacer_init(&p, 1, 1, 4); /* 1000 us apart, bursts of 4 */
    for (int i = 0; i < NTHREADS; i++) {
        racers[i].p = &p;
        CHECK_INT_EQ(pthread_create(&th[i], NULL, race, &racers[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NTHREADS; i++)
        memcpy(&all[i * PER_THREAD], racers[i].slots, sizeof(racers[i].slots));
    qsort(all, NTHREADS * PER_THREAD, sizeof(all[0]), cmp_u64);
    for (size_t k = 0; k < NTHREADS * PER_THREAD; k++)
        CHECK_INT_EQ(all[k], k < 4 ? 0 : (k - 3) * 1000);
    /* and within a thread in the order it asked */
    for (int i = 0; i < NTHREADS; i++)
        for (int k = 1; k < PER_THREAD; k++)
            CHECK(racers[i].slots[k] >= racers[i].slots[k - 1]);
}

const gd_test_case_t gd_test_cases[] = {
    {"burst_then_one_per_interval", test_burst_then_one_per_interval},
    {"refuses_a_slot_too_late_without_reserving", test_refuses_a_slot_too_late_without_reserving},
    {"idle_refills_to_the_burst_only", test_idle_refills_to_the_burst_only},
    {"interval_rounds_up", test_interval_rounds_up},
    {"unreserve_gives_back_the_last_slot_only", test_unreserve_gives_back_the_last_slot_only},
    {"exact_across_threads", test_exact_across_threads},
    {NULL, NULL},
};
