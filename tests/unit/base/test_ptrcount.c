#include <stdint.h>
#include <stdlib.h>

#include "base/ptrcount.h"
#include "runner.h"

#define NKEYS 1000

static void test_counts_add_and_sub_per_key(void)
{
    gd_ptrcount_t *pc = gd_ptrcount_new();
    int a, b;

    CHECK_INT_EQ(gd_ptrcount_get(pc, &a), 0);
    gd_ptrcount_add(pc, &a, 5);
    gd_ptrcount_add(pc, &a, 7);
    gd_ptrcount_add(pc, &b, 1);
    gd_ptrcount_add(pc, &b, 0);
    CHECK_INT_EQ(gd_ptrcount_get(pc, &a), 12);
    CHECK_INT_EQ(gd_ptrcount_get(pc, &b), 1);
    CHECK_INT_EQ(gd_ptrcount_keys(pc), 2);
    gd_ptrcount_sub(pc, &a, 12);
    CHECK_INT_EQ(gd_ptrcount_get(pc, &a), 0);
    CHECK_INT_EQ(gd_ptrcount_keys(pc), 1); /* at zero a key leaves the table */
    gd_ptrcount_sub(pc, &b, 1);
    CHECK_INT_EQ(gd_ptrcount_keys(pc), 0);
    gd_ptrcount_free(pc);
}

static void test_zero_adds_no_key(void)
{
    gd_ptrcount_t *pc = gd_ptrcount_new();
    int a;

    gd_ptrcount_add(pc, &a, 0);
    CHECK_INT_EQ(gd_ptrcount_keys(pc), 0);
    gd_ptrcount_sub(pc, &a, 0);
    gd_ptrcount_free(pc);
}

/* Keys that come and go in random order, through growth and deletions in long probe runs
 * (keys close together in memory, like connections), always agree with a plain array. */
static void test_random_churn_agrees_with_a_reference(void)
{
    gd_ptrcount_t *pc = gd_ptrcount_new();
    static size_t ref[NKEYS];
    char *base = malloc(NKEYS * 64);
    uint64_t x = 88172645463325252ull;
    size_t live = 0;

    CHECK(base != NULL);
    for (int step = 0; step < 200000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t k = (size_t)(x % NKEYS);
        void *key = base + k * 64;
        size_t n = (size_t)((x >> 20) % 5);
        if ((x >> 40) % 2 == 0 || ref[k] < n) {
            live += ref[k] == 0 && n > 0;
            gd_ptrcount_add(pc, key, n);
            ref[k] += n;
        } else {
            gd_ptrcount_sub(pc, key, n);
            ref[k] -= n;
            live -= n > 0 && ref[k] == 0;
        }
        if (step % 1000 == 0)
            for (size_t i = 0; i < NKEYS; i++)
                CHECK_INT_EQ(gd_ptrcount_get(pc, base + i * 64), ref[i]);
        CHECK_INT_EQ(gd_ptrcount_keys(pc), live);
    }
    for (size_t i = 0; i < NKEYS; i++)
        if (ref[i] != 0)
            gd_ptrcount_sub(pc, base + i * 64, ref[i]);
    CHECK_INT_EQ(gd_ptrcount_keys(pc), 0);
    gd_ptrcount_free(pc);
    free(base);
}

const gd_test_case_t gd_test_cases[] = {
    {"counts_add_and_sub_per_key", test_counts_add_and_sub_per_key},
    {"zero_adds_no_key", test_zero_adds_no_key},
    {"random_churn_agrees_with_a_reference", test_random_churn_agrees_with_a_reference},
    {NULL, NULL},
};
