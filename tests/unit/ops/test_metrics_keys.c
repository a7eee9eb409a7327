#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "ops/metrics.h"
#include "ops/metrics_keys.h"
#include "runner.h"

static gd_config_t *load(const char *endpoints)
{
    char json[2048], err[256];
    gd_config_t *c = NULL;

    snprintf(json, sizeof(json),
             "{\"listen\": [\"127.0.0.1:18000\"], \"upstreams\": {"
             " \"a\": {\"url\": \"http://127.0.0.1:1\"}, \"b\": {\"url\": \"http://127.0.0.1:2\"}},"
             " \"endpoints\": [%s]}",
             endpoints);
    CHECK_INT_EQ(gd_config_load_string(json, "t.json", &c, err, sizeof(err)), 0);
    return c;
}

#define EP(path, call)                                                                             \
    "{\"path\": \"" path "\", \"calls\": {\"" call "\": {\"upstream\": \"a\", \"path\": \"/\"}}}"

static void test_names_keep_their_slots(void)
{
    gd_metrics_keys_t *keys = gd_metrics_keys_new();
    gd_config_t *first = load(EP("/x", "c") "," EP("/y", "c"));
    gd_config_t *next = load(EP("/z", "c") "," EP("/y", "c") "," EP("/x", "d"));

    CHECK_INT_EQ(gd_metrics_keys_assign(keys, first), 0);
    /* a first config gets the slots the loader gave it: config order */
    CHECK_INT_EQ(first->endpoints[0].metrics_slot, 0);
    CHECK_INT_EQ(first->endpoints[1].metrics_slot, 1);
    CHECK_INT_EQ(first->endpoints[1].calls[0].metrics_slot, 1);
    CHECK_INT_EQ(first->upstreams[1].metrics_slot, 1);
    CHECK_INT_EQ(gd_metrics_keys_assign(keys, next), 0);
    CHECK_INT_EQ(next->endpoints[0].metrics_slot, 2); /* /z is new */
    CHECK_INT_EQ(next->endpoints[1].metrics_slot, 1); /* /y kept */
    CHECK_INT_EQ(next->endpoints[2].metrics_slot, 0); /* /x kept */
    CHECK_INT_EQ(next->endpoints[1].calls[0].metrics_slot, 1);
    CHECK_INT_EQ(next->endpoints[2].calls[0].metrics_slot, 3); /* /x's call d is new */
    CHECK_INT_EQ(next->upstreams[0].metrics_slot, 0);
    gd_config_free(first);
    gd_config_free(next);
    gd_metrics_keys_free(keys);
}

static const char *const outcomes[] = {"ok", "timeout"};

/* Counters go on across configs by name, and a removed name's series leaves the output. */
static void test_counters_go_on_across_configs(void)
{
    gd_metrics_keys_t *keys = gd_metrics_keys_new();
    gd_config_t *first = load(EP("/x", "c") "," EP("/y", "c"));
    gd_config_t *next = load(EP("/y", "c"));
    size_t len;

    CHECK_INT_EQ(gd_metrics_keys_assign(keys, first), 0);
    CHECK_INT_EQ(gd_metrics_keys_assign(keys, next), 0);
    gd_metrics_t *m = gd_metrics_new(first, outcomes, 2);
    gd_metrics_count_request(m, &first->endpoints[1], 200, 10);
    gd_metrics_count_call(m, &first->endpoints[1], 0, 0, 0, 10);
    gd_metrics_count_request(m, &first->endpoints[0], 200, 10);
    gd_metrics_prepare(m, next);
    gd_metrics_count_request(m, &next->endpoints[0], 200, 10); /* a request of the new config */
    gd_metrics_count_call(m, &next->endpoints[0], 0, 0, 0, 10);
    char *text = gd_metrics_render((const gd_metrics_t *const *)&m, 1, next, NULL, &len);
    CHECK(
        strstr(text, "gatherd_requests_total{endpoint=\"/y\",method=\"GET\",status=\"200\"} 2\n"));
    CHECK(strstr(text, "endpoint=\"/x\"") == NULL);
    CHECK(strstr(text, "gatherd_upstream_calls_total{upstream=\"a\",outcome=\"ok\"} 2\n"));
    CHECK(strstr(text, "gatherd_config_info{hash=\""));
    free(text);
    gd_metrics_free(m);
    gd_config_free(first);
    gd_config_free(next);
    gd_metrics_keys_free(keys);
}

const gd_test_case_t gd_test_cases[] = {
    {"names_keep_their_slots", test_names_keep_their_slots},
    {"counters_go_on_across_configs", test_counters_go_on_across_configs},
    {NULL, NULL},
};
