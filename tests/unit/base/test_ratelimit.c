#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/ratelimit.h"
#include "runner.h"

static bool take(gd_ratelimit_t *rl, const char *key, uint64_t now_ms, gd_ratelimit_result_t *res)
{
    gd_ratelimit_take(rl, key, strlen(key), now_ms, res);
    return res->is_allowed;
}

/* 2 per 1000 ms, burst 4: four at once, then one every 500 ms. */
static void test_bucket(void)
{
    gd_ratelimit_t *rl = gd_ratelimit_new(2, 1000, 4, 1000);
    gd_ratelimit_result_t res;

    for (int i = 0; i < 4; i++) {
        CHECK(take(rl, "a", 10000, &res));
        CHECK_INT_EQ(res.remaining, 3 - i);
    }
    CHECK(!take(rl, "a", 10000, &res));
    CHECK_INT_EQ(res.remaining, 0);
    CHECK_INT_EQ(res.retry_after_ms, 501);
    CHECK_INT_EQ(res.reset_ms, 2000);
    CHECK(take(rl, "b", 10000, &res)); /* another key has its own bucket */
    CHECK(!take(rl, "a", 10499, &res));
    CHECK(take(rl, "a", 10500, &res));
    CHECK(!take(rl, "a", 10500, &res));
    /* a long idle time fills the bucket to the burst, no more */
    for (int i = 0; i < 4; i++)
        CHECK(take(rl, "a", 100000, &res));
    CHECK(!take(rl, "a", 100000, &res));
    /* a clock that goes back adds nothing */
    CHECK(!take(rl, "a", 99000, &res));
    CHECK_INT_EQ(gd_ratelimit_size(rl), 2);
    gd_ratelimit_free(rl);
}

/* A flood of distinct keys never holds more than max_keys buckets; the oldest go first. */
static void test_bounded(void)
{
    gd_ratelimit_t *rl = gd_ratelimit_new(1, 60000, 1, 64 * 4);
    gd_ratelimit_result_t res;
    char key[32];

    CHECK(take(rl, "victim", 0, &res));
    CHECK(!take(rl, "victim", 0, &res));
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        CHECK(take(rl, key, 1, &res));
    }
    CHECK(gd_ratelimit_size(rl) <= 64 * 4);
    CHECK(take(rl, "victim", 2, &res)); /* evicted: a new, full bucket */
    /* keys longer than GD_RATELIMIT_MAX_KEY are told apart by their hash */
    char a[200], b[200];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(a));
    b[150] = 'y';
    CHECK(take(rl, a, 3, &res));
    CHECK(!take(rl, a, 3, &res));
    CHECK(take(rl, b, 3, &res));
    gd_ratelimit_free(rl);
}

struct worker {
    gd_ratelimit_t *rl;
    int allowed;
};

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    gd_ratelimit_result_t res;

    for (int i = 0; i < 200000; i++) {
        gd_ratelimit_take(w->rl, "shared", 6, 1000 + (uint64_t)i / 1000, &res);
        w->allowed += res.is_allowed;
    }
    return NULL;
}

/* Exact across threads: 4 threads taking from one bucket get exactly burst + refill. */
static void test_threads_exact(void)
{
    /* 1 per 10 ms, burst 50; the clock runs from 1000 to 1199 ms: 50 + 19 refills (the last
     * thread's clock decides, and all threads' clocks move the same way) */
    gd_ratelimit_t *rl = gd_ratelimit_new(1, 10, 50, 1000);
    struct worker w[4];
    pthread_t t[4];
    int total = 0;

    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){rl, 0};
        CHECK_INT_EQ(pthread_create(&t[i], NULL, run_worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        CHECK_INT_EQ(pthread_join(t[i], NULL), 0);
        total += w[i].allowed;
    }
    CHECK_INT_EQ(total, 50 + 19);
    gd_ratelimit_free(rl);
}

const gd_test_case_t gd_test_cases[] = {
    {"bucket", test_bucket},
    {"bounded", test_bounded},
    {"threads_exact", test_threads_exact},
    {NULL, NULL},
};
