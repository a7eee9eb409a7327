#include <errno.h>
#include <string.h>

#include "config/callgraph.h"
#include "runner.h"

/* The graph of @n calls whose needs are given as strings of digits: "" none, "02" calls 0, 2. */
struct graph {
    size_t needs_buf[8][8];
    const size_t *needs[8];
    size_t nneeds[8];
    gd_callgraph_t g;
};

static void build(struct graph *gr, size_t n, const char *const *needs)
{
    memset(gr, 0, sizeof(*gr));
    for (size_t i = 0; i < n; i++) {
        for (const char *p = needs[i]; *p != '\0'; p++)
            gr->needs_buf[i][gr->nneeds[i]++] = (size_t)(*p - '0');
        gr->needs[i] = gr->needs_buf[i];
    }
    gr->g = (gd_callgraph_t){n, gr->needs, gr->nneeds};
}

static const char *order_of(size_t n, const char *const *needs)
{
    static char out[16];
    struct graph gr;
    size_t order[8], cycle[9], ncycle = 0;

    build(&gr, n, needs);
    CHECK_INT_EQ(gd_callgraph_sort(&gr.g, order, cycle, &ncycle), 0);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)('0' + order[i]);
    out[n] = '\0';
    return out;
}

static const char *cycle_of(size_t n, const char *const *needs)
{
    static char out[32];
    struct graph gr;
    size_t order[8], cycle[9], ncycle = 0;

    build(&gr, n, needs);
    CHECK_INT_EQ(gd_callgraph_sort(&gr.g, order, cycle, &ncycle), -ELOOP);
    for (size_t i = 0; i < ncycle; i++)
        out[i] = (char)('0' + cycle[i]);
    out[ncycle] = '\0';
    return out;
}

static void test_no_edges_keep_config_order(void)
{
    const char *const needs[] = {"", "", ""};
    CHECK_STR_EQ(order_of(3, needs), "012");
}

/* Each call after what it needs; among free ones, config order. */
static void test_needs_come_first(void)
{
    const char *const chain[] = {"1", "2", ""};
    CHECK_STR_EQ(order_of(3, chain), "210");
    const char *const diamond[] = {"12", "3", "3", ""};
    CHECK_STR_EQ(order_of(4, diamond), "3120");
    const char *const mixed[] = {"", "0", ""}; /* A -> B, and C independent */
    CHECK_STR_EQ(order_of(3, mixed), "012");
}

static void test_cycles_are_named(void)
{
    const char *const self[] = {"0"};
    CHECK_STR_EQ(cycle_of(1, self), "00");
    const char *const two[] = {"1", "0"};
    CHECK_STR_EQ(cycle_of(2, two), "010");
    /* 0 is fine; 1 -> 2 -> 3 -> 1 is the cycle, without the call that leads into it */
    const char *const three[] = {"1", "2", "3", "1"};
    CHECK_STR_EQ(cycle_of(4, three), "1231");
}

const gd_test_case_t gd_test_cases[] = {
    {"no_edges_keep_config_order", test_no_edges_keep_config_order},
    {"needs_come_first", test_needs_come_first},
    {"cycles_are_named", test_cycles_are_named},
    {NULL, NULL},
};
