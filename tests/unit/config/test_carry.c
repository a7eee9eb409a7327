#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/breaker.h"
#include "base/pacer.h"
#include "base/ratelimit.h"
#include "config/carry.h"
#include "config/config.h"
#include "runner.h"

/* The config of @json; the test fails, naming the error, when it does not load. */
static gd_config_t *load_text(const char *json)
{
    gd_config_t *c = NULL;
    char err[512];

    if (gd_config_load_string(json, "t.json", &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        CHECK(0);
    }
    return c;
}

/* A config of upstreams "a" (breaker, rate_limit, max_in_flight) and "b", SQL, a top-level
 * client_rate_limit and a cache; @extra is spliced in at the top level, @a_extra into "a". */
static gd_config_t *load(const char *extra, const char *a_extra, const char *sql)
{
    char json[4096];

    snprintf(json, sizeof(json),
             "{\"listen\": [\"127.0.0.1:18000\"], \"threads\": 2, %s"
             " \"postgres\": {\"conninfo\": \"\", \"pool_size\": 4},"
             " \"client_rate_limit\": {\"requests\": 10, \"per_ms\": 1000},"
             " \"upstreams\": {"
             "   \"a\": {\"url\": \"http://127.0.0.1:1\", \"breaker\": {\"failures\": 3},"
             "          \"rate_limit\": {\"calls\": 5, \"per_ms\": 1000}, \"max_in_flight\": 4 %s},"
             "   \"b\": {\"url\": \"http://127.0.0.1:2\"}},"
             " \"endpoints\": [{\"path\": \"/x\", \"calls\": {"
             "   \"u\": {\"upstream\": \"a\", \"path\": \"/u\", \"cache\": {\"ttl_ms\": 1000}},"
             "   \"q\": {\"sql\": \"%s\"}}}]}",
             extra, a_extra, sql);
    return load_text(json);
}

static void free_three(gd_config_t *a, gd_config_t *b, gd_config_t *c)
{
    gd_config_free(a);
    gd_config_free(b);
    gd_config_free(c);
}

static void test_restart_keys_are_named(void)
{
    gd_config_t *a = load("", "", "SELECT 1");
    gd_config_t *same =
        load("\"expose_error_details\": true, \"queue_timeout_ms\": 10,", "", "SELECT 2");
    gd_config_t *b = load("\"http2\": true, \"coroutine_stack_kb\": 128, \"log\": {\"level\": "
                          "\"debug\"}, \"shutdown\": {\"timeout_ms\": 5},",
                          "", "SELECT 1");
    const char *keys[GD_CONFIG_MAX_RESTART_KEYS];

    CHECK_INT_EQ(gd_config_restart_keys(a, same, keys), 0);
    CHECK_INT_EQ(gd_config_restart_keys(a, b, keys), 4);
    CHECK_STR_EQ(keys[0], "http2");
    CHECK_STR_EQ(keys[1], "coroutine_stack_kb");
    CHECK_STR_EQ(keys[2], "shutdown.timeout_ms");
    CHECK_STR_EQ(keys[3], "log");
    free_three(a, same, b);
}

static void test_upstreams_and_postgres_compare_by_settings(void)
{
    gd_config_t *a = load("", "", "SELECT 1");
    gd_config_t *b = load("", ", \"connect_timeout_ms\": 50", "SELECT 1");
    gd_config_t *c = load("\"expose_error_details\": true,", "", "SELECT 2");

    CHECK(gd_config_upstream_is_same(a, gd_config_find_upstream(a, "a"), c,
                                     gd_config_find_upstream(c, "a")));
    CHECK(!gd_config_upstream_is_same(a, gd_config_find_upstream(a, "a"), b,
                                      gd_config_find_upstream(b, "a")));
    CHECK(gd_config_upstream_is_same(a, gd_config_find_upstream(a, "b"), b,
                                     gd_config_find_upstream(b, "b")));
    CHECK(gd_config_find_upstream(a, "nope") == NULL);
    CHECK(gd_config_postgres_is_same(a, b));
    CHECK(!gd_config_postgres_is_same(a, c)); /* another statement */
    free_three(a, b, c);
}

static void test_unchanged_policies_are_carried(void)
{
    gd_config_t *old = load("", "", "SELECT 1");
    gd_config_t *next = load("", ", \"connect_timeout_ms\": 50", "SELECT 1");
    gd_upstream_conf_t *oa = &old->upstreams[0], *na = &next->upstreams[0];

    CHECK_STR_EQ(oa->name, "a");
    gd_config_carry(next, old);
    /* "a" changed, but not its policies: their state goes on */
    CHECK(na->breaker == oa->breaker);
    CHECK(na->rate_limit == oa->rate_limit);
    CHECK(na->in_flight == oa->in_flight);
    CHECK(na->retry_budget == oa->retry_budget);
    CHECK(na->waits == oa->waits);
    CHECK(next->postgres.retry_budget == old->postgres.retry_budget);
    CHECK(next->rate_limit->limiter == old->rate_limit->limiter);
    CHECK(next->cache_store == old->cache_store);
    /* old borrows them now: freeing it first leaves next whole (ASan checks the rest) */
    gd_config_free(old);
    CHECK_INT_EQ(gd_breaker_state(na->breaker, 0), 0);
    gd_config_free(next);
}

static void test_changed_policies_start_afresh_with_their_counters(void)
{
    gd_config_t *old = load("", "", "SELECT 1");
    const char *json =
        "{\"listen\": [\"127.0.0.1:18000\"], \"cache_max_bytes\": 8192,"
        " \"client_rate_limit\": {\"requests\": 11, \"per_ms\": 1000},"
        " \"upstreams\": {\"a\": {\"url\": \"http://127.0.0.1:1\", \"breaker\": {\"failures\": 9},"
        "   \"rate_limit\": {\"calls\": 6, \"per_ms\": 1000}, \"max_in_flight\": 8}},"
        " \"endpoints\": [{\"path\": \"/x\", \"calls\": {"
        "   \"u\": {\"upstream\": \"a\", \"path\": \"/u\", \"cache\": {\"ttl_ms\": 1000}}}}]}";
    gd_config_t *next = load_text(json);
    atomic_store(&old->upstreams[0].breaker->opened, 7);
    atomic_store(&old->upstreams[0].rate_limit->refused, 3);
    gd_config_carry(next, old);
    gd_upstream_conf_t *oa = &old->upstreams[0], *na = &next->upstreams[0];
    CHECK(na->breaker != oa->breaker);
    CHECK_INT_EQ(atomic_load(&na->breaker->opened), 7);
    CHECK(na->rate_limit != oa->rate_limit);
    CHECK_INT_EQ(atomic_load(&na->rate_limit->refused), 3);
    CHECK(na->in_flight != oa->in_flight);
    CHECK(na->retry_budget == oa->retry_budget); /* no settings: always carried */
    CHECK(next->rate_limit->limiter != old->rate_limit->limiter);
    CHECK(next->cache_store != old->cache_store);
    gd_config_free(old);
    gd_config_free(next);
}

static void test_statements_keep_their_positions(void)
{
    gd_config_t *old = load("", "", "SELECT 1"), *next;
    const char *json =
        "{\"listen\": [\"127.0.0.1:18000\"], \"threads\": 2,"
        " \"postgres\": {\"conninfo\": \"\", \"pool_size\": 4},"
        " \"upstreams\": {},"
        " \"endpoints\": [{\"path\": \"/y/{id}\", \"calls\": {\"q\": {\"sql\": \"SELECT $1::int\","
        "   \"args\": [\"{id}\"]}}},"
        "  {\"path\": \"/x\", \"calls\": {\"q\": {\"sql\": \"SELECT 1\"}}}]}";

    next = load_text(json);
    CHECK(!gd_config_postgres_is_same(old, next)); /* SELECT 1 is second in next's own list */
    gd_config_carry(next, old);
    CHECK_INT_EQ(next->nstatements, 2);
    CHECK_STR_EQ(next->statements[0], "SELECT 1");
    CHECK_STR_EQ(next->statements[1], "SELECT $1::int");
    CHECK_INT_EQ(next->statement_nparams[1], 1);
    CHECK_INT_EQ(next->endpoints[0].calls[0].statement, 1);
    CHECK_INT_EQ(next->endpoints[1].calls[0].statement, 0);
    CHECK(gd_config_postgres_is_same(old, next));
    gd_config_free(old);
    gd_config_free(next);
}

const gd_test_case_t gd_test_cases[] = {
    {"statements_keep_their_positions", test_statements_keep_their_positions},
    {"restart_keys_are_named", test_restart_keys_are_named},
    {"upstreams_and_postgres_compare_by_settings", test_upstreams_and_postgres_compare_by_settings},
    {"unchanged_policies_are_carried", test_unchanged_policies_are_carried},
    {"changed_policies_start_afresh_with_their_counters",
     test_changed_policies_start_afresh_with_their_counters},
    {NULL, NULL},
};
