#include <stdint.h>

#include "ops/admin.h"
#include "runner.h"

/* A heartbeat published between reading the clock and reading the gauges is "newer than now":
 * its age is 0, never an unsigned wrap-around that would report a healthy worker as stuck. */
static void test_heartbeat_newer_than_now_is_fresh(void)
{
    CHECK_INT_EQ(gd_admin_heartbeat_age_ms(1000, 1003), 0);
    CHECK_INT_EQ(gd_admin_heartbeat_age_ms(1000, 1000), 0);
    CHECK_INT_EQ(gd_admin_heartbeat_age_ms(1000, 900), 100);
    CHECK(gd_admin_heartbeat_age_ms(1000, 1003) <= GD_ADMIN_HEARTBEAT_STALE_MS);
}

const gd_test_case_t gd_test_cases[] = {
    {"heartbeat_newer_than_now_is_fresh", test_heartbeat_newer_than_now_is_fresh},
    {NULL, NULL},
};
