#include "base/retry_budget.h"
#include "runner.h"

/* The floor alone: min_per_s per second of the window, whatever the calls. */
static void test_floor(void)
{
    gd_retry_budget_t b;
    gd_retry_budget_init(&b);
    for (int i = 0; i < 2 * GD_RETRY_BUDGET_WINDOW_S; i++)
        CHECK(gd_retry_budget_take(&b, 5000, 0, 2));
    CHECK(!gd_retry_budget_take(&b, 5000, 0, 2));
}

/* A share of the window's calls; older seconds leave the window. */
static void test_percent_and_window(void)
{
    gd_retry_budget_t b;
    gd_retry_budget_init(&b);
    CHECK(!gd_retry_budget_take(&b, 1000, 20, 0)); /* no calls: nothing to add to */
    for (int i = 0; i < 50; i++)
        gd_retry_budget_note_call(&b, 1000);
    for (int i = 0; i < 10; i++)
        CHECK(gd_retry_budget_take(&b, 1500, 20, 0));
    CHECK(!gd_retry_budget_take(&b, 1999, 20, 0));
    /* 9 s later the calls still count, and so do the retries */
    CHECK(!gd_retry_budget_take(&b, 10999, 20, 0));
    /* 10 s later both have left the window */
    CHECK(!gd_retry_budget_take(&b, 11000, 20, 0));
    for (int i = 0; i < 5; i++)
        gd_retry_budget_note_call(&b, 11000);
    CHECK(gd_retry_budget_take(&b, 11000, 20, 0));
    CHECK(!gd_retry_budget_take(&b, 11000, 20, 0));
}

const gd_test_case_t gd_test_cases[] = {
    {"floor", test_floor},
    {"percent_and_window", test_percent_and_window},
    {NULL, NULL},
};
