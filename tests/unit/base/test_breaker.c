#include "base/breaker.h"
#include "runner.h"

static void test_opens_after_consecutive_failures(void)
{
    gd_breaker_t b;
    gd_breaker_init(&b, 3, 100);
    for (int i = 0; i < 2; i++)
        gd_breaker_report(&b, gd_breaker_allow(&b, 0), true, 0);
    gd_breaker_report(&b, gd_breaker_allow(&b, 0), false, 0); /* a success resets the count */
    for (int i = 0; i < 2; i++)
        gd_breaker_report(&b, gd_breaker_allow(&b, 0), true, 0);
    CHECK_INT_EQ(gd_breaker_state(&b, 0), 0);
    gd_breaker_report(&b, gd_breaker_allow(&b, 10), true, 10);
    CHECK_INT_EQ(gd_breaker_state(&b, 10), 1);
    CHECK_INT_EQ(gd_breaker_allow(&b, 109), GD_BREAKER_REFUSED);
    CHECK_INT_EQ(atomic_load(&b.opened), 1);
}

static void test_half_open_single_probe(void)
{
    gd_breaker_t b;
    gd_breaker_init(&b, 1, 100);
    gd_breaker_report(&b, gd_breaker_allow(&b, 0), true, 0);
    CHECK_INT_EQ(gd_breaker_state(&b, 100), 2);
    gd_breaker_verdict_t p = gd_breaker_allow(&b, 100);
    CHECK_INT_EQ(p, GD_BREAKER_PROBE);
    CHECK_INT_EQ(gd_breaker_allow(&b, 100), GD_BREAKER_REFUSED); /* one probe at a time */
    gd_breaker_report(&b, p, true, 150);                         /* fails: open again for open_ms */
    CHECK_INT_EQ(gd_breaker_allow(&b, 249), GD_BREAKER_REFUSED);
    p = gd_breaker_allow(&b, 250);
    CHECK_INT_EQ(p, GD_BREAKER_PROBE);
    gd_breaker_abandon(&b, p); /* cancelled: the next call probes */
    p = gd_breaker_allow(&b, 260);
    CHECK_INT_EQ(p, GD_BREAKER_PROBE);
    gd_breaker_report(&b, p, false, 270);
    CHECK_INT_EQ(gd_breaker_state(&b, 270), 0);
    CHECK_INT_EQ(gd_breaker_allow(&b, 270), GD_BREAKER_ALLOWED);
    CHECK_INT_EQ(atomic_load(&b.opened), 2);
}

/* 50 % of at least 4 calls in a 1 s window: failures that are not consecutive open it too. */
static void test_opens_on_error_rate(void)
{
    gd_breaker_t b;
    gd_breaker_init(&b, 100, 100);
    gd_breaker_set_error_rate(&b, 0.5, 4, 1000);
    gd_breaker_report(&b, gd_breaker_allow(&b, 0), true, 0);
    gd_breaker_report(&b, gd_breaker_allow(&b, 0), false, 0);
    gd_breaker_report(&b, gd_breaker_allow(&b, 0), true, 0); /* 2 of 3: too few calls */
    CHECK_INT_EQ(gd_breaker_state(&b, 0), 0);
    gd_breaker_report(&b, gd_breaker_allow(&b, 0), false, 0);
    gd_breaker_report(&b, gd_breaker_allow(&b, 0), false, 0);
    gd_breaker_report(&b, gd_breaker_allow(&b, 0), true, 0); /* 3 of 6 */
    CHECK_INT_EQ(gd_breaker_state(&b, 0), 1);
    /* half-open, the probe succeeds: closed, the window forgotten */
    gd_breaker_verdict_t p = gd_breaker_allow(&b, 100);
    CHECK_INT_EQ(p, GD_BREAKER_PROBE);
    gd_breaker_report(&b, p, false, 100);
    for (int i = 0; i < 3; i++)
        gd_breaker_report(&b, gd_breaker_allow(&b, 200), false, 200);
    gd_breaker_report(&b, gd_breaker_allow(&b, 200), true, 200); /* 1 of 4 */
    CHECK_INT_EQ(gd_breaker_state(&b, 200), 0);
    /* old calls leave the window: 1 s later only the new ones count */
    gd_breaker_report(&b, gd_breaker_allow(&b, 1300), true, 1300);
    gd_breaker_report(&b, gd_breaker_allow(&b, 1300), false, 1300);
    gd_breaker_report(&b, gd_breaker_allow(&b, 1300), false, 1300);
    CHECK_INT_EQ(gd_breaker_state(&b, 1300), 0); /* 1 of 3: too few */
    gd_breaker_report(&b, gd_breaker_allow(&b, 1300), true, 1300); /* 2 of 4 */
    CHECK_INT_EQ(gd_breaker_state(&b, 1300), 1);
    CHECK_INT_EQ(atomic_load(&b.opened), 2);
    CHECK_INT_EQ(atomic_load(&b.half_opened), 1);
    CHECK_INT_EQ(atomic_load(&b.closed), 1);
}

const gd_test_case_t gd_test_cases[] = {
    {"opens_on_error_rate", test_opens_on_error_rate},
    {"opens_after_consecutive_failures", test_opens_after_consecutive_failures},
    {"half_open_single_probe", test_half_open_single_probe},
    {NULL, NULL},
};
