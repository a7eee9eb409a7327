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

const gd_test_case_t gd_test_cases[] = {
    {"opens_after_consecutive_failures", test_opens_after_consecutive_failures},
    {"half_open_single_probe", test_half_open_single_probe},
    {NULL, NULL},
};
