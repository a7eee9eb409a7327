#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "ops/metrics.h"
#include "runner.h"

static const char config_json[] =
    "{\"listen\": [\"127.0.0.1:18000\"], \"threads\": 2,"
    " \"upstreams\": {\"a\": {\"url\": \"http://127.0.0.1:1\"}},"
    " \"endpoints\": [{\"path\": \"/users/{id}\", \"calls\": {"
    "   \"user\": {\"upstream\": \"a\", \"path\": \"/u/{id}\"},"
    "   \"posts\": {\"upstream\": \"a\", \"path\": \"/p\", \"optional\": true}}}]}";

/* The outcome labels, by number, as the sources name theirs: 0 is success. */
static const char *const outcomes[] = {"ok", "timeout"};
#define OK      0u
#define TIMEOUT 1u

static gd_config_t *load(void)
{
    gd_config_t *c = NULL;
    char err[256];
    CHECK_INT_EQ(gd_config_load_string(config_json, "t.json", &c, err, sizeof(err)), 0);
    return c;
}

static void test_threads_add_up(void)
{
    gd_config_t *c = load();
    gd_metrics_t *t[2] = {gd_metrics_new(c, outcomes, 2), gd_metrics_new(c, outcomes, 2)};
    const gd_endpoint_conf_t *ep = &c->endpoints[0];
    size_t len;

    gd_metrics_count_request(t[0], ep, 200, 1500);
    gd_metrics_count_request(t[1], ep, 200, 30000);
    gd_metrics_count_request(t[1], ep, 504, 800000);
    gd_metrics_count_request(t[0], NULL, 404, 10);
    gd_metrics_count_call(t[0], ep, 1, TIMEOUT, 0, 800000);
    gd_metrics_count_call(t[1], ep, 1, TIMEOUT, 0, 800000);
    gd_metrics_count_call(t[1], ep, 0, OK, 0, 2000);
    char *text = gd_metrics_render((const gd_metrics_t *const *)t, 2, c, NULL, &len);
    CHECK_INT_EQ(strlen(text), len);
    CHECK(strstr(text, "gatherd_requests_total{endpoint=\"/users/{id}\",method=\"GET\",status=\"200\"} 2\n"));
    CHECK(strstr(text, "gatherd_requests_total{endpoint=\"/users/{id}\",method=\"GET\",status=\"504\"} 1\n"));
    CHECK(strstr(text, "gatherd_requests_total{endpoint=\"(unmatched)\",method=\"\",status=\"404\"} 1\n"));
    /* buckets are cumulative: 1.5 ms falls in le=0.0025, 30 ms in le=0.05, 800 ms in le=1 */
    CHECK(strstr(text, "gatherd_request_duration_seconds_bucket{endpoint=\"/users/{id}\",method=\"GET\",le=\"0.001\"} 0\n"));
    CHECK(strstr(text, "gatherd_request_duration_seconds_bucket{endpoint=\"/users/{id}\",method=\"GET\",le=\"0.0025\"} 1\n"));
    CHECK(strstr(text, "gatherd_request_duration_seconds_bucket{endpoint=\"/users/{id}\",method=\"GET\",le=\"0.05\"} 2\n"));
    CHECK(strstr(text, "gatherd_request_duration_seconds_bucket{endpoint=\"/users/{id}\",method=\"GET\",le=\"+Inf\"} 3\n"));
    CHECK(strstr(text, "gatherd_request_duration_seconds_count{endpoint=\"/users/{id}\",method=\"GET\"} 3\n"));
    CHECK(strstr(text, "gatherd_request_duration_seconds_sum{endpoint=\"/users/{id}\",method=\"GET\"} 0.831500\n"));
    CHECK(strstr(text, "gatherd_call_failures_total{endpoint=\"/users/{id}\",call=\"posts\",kind=\"timeout\"} 2\n"));
    CHECK(strstr(text, "call=\"user\",kind=") == NULL);
    CHECK(strstr(text, "gatherd_call_duration_seconds_count{endpoint=\"/users/{id}\",call=\"user\"} 1\n"));
    CHECK(strstr(text, "gatherd_build_info{version=\"" GD_VERSION "\"} 1\n"));
    free(text);
    gd_metrics_free(t[0]);
    gd_metrics_free(t[1]);
    gd_config_free(c);
}

static void test_gauges_are_summed(void)
{
    gd_config_t *c = load();
    gd_metrics_t *t[2] = {gd_metrics_new(c, outcomes, 2), gd_metrics_new(c, outcomes, 2)};
    gd_metrics_gauges_t g = {.requests_in_flight = 3, .coroutines = 3, .connections = 7};
    size_t len;

    gd_metrics_publish(t[0], &g);
    gd_metrics_publish(t[1], &g);
    gd_metrics_publish_upstream(t[0], 0, &(gd_metrics_upstream_gauges_t){.idle = 2, .busy = 1});
    gd_metrics_publish_upstream(t[1], 0, &(gd_metrics_upstream_gauges_t){.idle = 2, .busy = 1});
    gd_metrics_count_loop_lag(t[0], 250);
    char *text = gd_metrics_render((const gd_metrics_t *const *)t, 2, c, NULL, &len);
    CHECK(strstr(text, "gatherd_requests_in_flight 6\n"));
    CHECK(strstr(text, "gatherd_client_connections 14\n"));
    CHECK(strstr(text, "gatherd_upstream_connections{upstream=\"a\",state=\"idle\"} 4\n"));
    CHECK(strstr(text, "gatherd_upstream_connections{upstream=\"a\",state=\"busy\"} 2\n"));
    CHECK(strstr(text, "gatherd_event_loop_lag_seconds_count 1\n"));
    CHECK(strstr(text, "gatherd_postgres") == NULL); /* no SQL calls configured */
    free(text);
    gd_metrics_free(t[0]);
    gd_metrics_free(t[1]);
    gd_config_free(c);
}

/* Gauges once stopped at the 64th upstream: the 100th is rendered like the first. */
static void test_every_upstream_has_gauges(void)
{
    char json[16384];
    size_t n = (size_t)snprintf(json, sizeof(json), "{\"listen\": [\"127.0.0.1:18000\"], \"upstreams\": {");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n,
                              "%s\"u%d\": {\"url\": \"http://127.0.0.1:1\"}", i ? "," : "", i);
    snprintf(json + n, sizeof(json) - n,
             "}, \"endpoints\": [{\"path\": \"/x\", \"calls\": {"
             "\"a\": {\"upstream\": \"u99\", \"path\": \"/\"}}}]}");
    gd_config_t *c = NULL;
    char err[256];
    int r = gd_config_load_string(json, "t.json", &c, err, sizeof(err));
    if (r != 0)
        fprintf(stderr, "%s\n", err);
    CHECK_INT_EQ(r, 0);
    CHECK_INT_EQ(c->nupstreams, 100);
    gd_metrics_t *t = gd_metrics_new(c, outcomes, 2);
    size_t last = 0;
    for (size_t i = 0; i < c->nupstreams; i++)
        if (strcmp(c->upstreams[i].name, "u99") == 0)
            last = i;
    gd_metrics_publish_upstream(t, last, &(gd_metrics_upstream_gauges_t){3, 4, 5});
    size_t len;
    char *text = gd_metrics_render((const gd_metrics_t *const *)&t, 1, c, NULL, &len);
    CHECK(strstr(text, "gatherd_upstream_connections{upstream=\"u99\",state=\"idle\"} 3\n"));
    CHECK(strstr(text, "gatherd_upstream_connections{upstream=\"u99\",state=\"busy\"} 4\n"));
    CHECK(strstr(text, "gatherd_upstream_waiting_calls{upstream=\"u99\"} 5\n"));
    CHECK(strstr(text, "gatherd_upstream_waiting_calls{upstream=\"u64\"} 0\n"));
    free(text);
    gd_metrics_free(t);
    gd_config_free(c);
}

/* Failures of the kind that carries an upstream status are split by it, over threads. */
static void test_call_failures_by_status(void)
{
    static const char *const names[] = {"ok", "timeout", "status"};
    gd_config_t *c = load();
    gd_metrics_t *t[2] = {gd_metrics_new(c, names, 3), gd_metrics_new(c, names, 3)};
    const gd_endpoint_conf_t *ep = &c->endpoints[0];
    size_t len;

    gd_metrics_count_call(t[0], ep, 0, 2, 429, 1000);
    gd_metrics_count_call(t[1], ep, 0, 2, 429, 1000);
    gd_metrics_count_call(t[1], ep, 0, 2, 503, 1000);
    gd_metrics_count_call(t[1], ep, 0, TIMEOUT, 0, 1000);
    gd_metrics_count_call(t[1], ep, 0, OK, 200, 1000); /* a success is never split */
    char *text = gd_metrics_render((const gd_metrics_t *const *)t, 2, c, NULL, &len);
    CHECK(strstr(text, "gatherd_call_failures_total{endpoint=\"/users/"
                       "{id}\",call=\"user\",kind=\"status\",status=\"429\"} 2\n"));
    CHECK(strstr(text, "gatherd_call_failures_total{endpoint=\"/users/"
                       "{id}\",call=\"user\",kind=\"status\",status=\"503\"} 1\n"));
    CHECK(strstr(text, "gatherd_call_failures_total{endpoint=\"/users/"
                       "{id}\",call=\"user\",kind=\"timeout\"} 1\n"));
    CHECK(strstr(text, "kind=\"status\"} ") == NULL);
    CHECK(strstr(text, "kind=\"ok\"") == NULL);
    free(text);
    gd_metrics_free(t[0]);
    gd_metrics_free(t[1]);
    gd_config_free(c);
}

const gd_test_case_t gd_test_cases[] = {
    {"call_failures_by_status", test_call_failures_by_status},
    {"threads_add_up", test_threads_add_up},
    {"gauges_are_summed", test_gauges_are_summed},
    {"every_upstream_has_gauges", test_every_upstream_has_gauges},
    {NULL, NULL},
};
