#include <string.h>

#include "gather/merge.h"
#include "runner.h"

/* The config owns its strings; these tests lend it literals that nothing writes to. */
#define S(lit) ((char *)(lit))

/* An endpoint with calls "user" (required), "posts" and "albums" (optional). */
static gd_call_conf_t calls[] = {
    {.name = S("user"), .name_json = S("\"user\"")},
    {.name = S("posts"), .name_json = S("\"posts\""), .is_optional = true},
    {.name = S("albums"), .name_json = S("\"albums\""), .is_optional = true},
};
static const gd_endpoint_conf_t endpoint = {.calls = calls, .ncalls = 3};

/* Bodies lent as static buffers (never freed), as the sources lend theirs to merge. */
static gd_call_result_t ok(const char *body)
{
    static gd_buf_t bufs[32];
    static size_t n;
    gd_buf_t *b = &bufs[n++ % 32];

    *b = (gd_buf_t){.len = strlen(body), .bytes = (char *)body};
    return (gd_call_result_t){.outcome = GD_OUTCOME_OK, .status = 200, .body = b, .elapsed_ms = 3};
}

static gd_call_result_t failed(gd_outcome_t outcome, int status, const char *message,
                               uint64_t elapsed_ms)
{
    gd_call_result_t r = {.outcome = outcome, .status = status, .elapsed_ms = elapsed_ms};
    strcpy(r.message, message);
    return r;
}

static const char *merged_as(const gd_call_result_t *results, bool is_detailed)
{
    static char buf[4096];
    size_t need = gd_merge_body(&endpoint, results, is_detailed, NULL, 0);
    size_t len = gd_merge_body(&endpoint, results, is_detailed, buf, sizeof(buf) - 1);
    CHECK_INT_EQ(len, need);
    buf[len] = '\0';
    return buf;
}

/* As answers are by default: a fixed text per kind, never the call's own message. */
static const char *merged(const gd_call_result_t *results)
{
    return merged_as(results, false);
}

static void test_all_ok_keeps_order_and_bytes(void)
{
    gd_call_result_t r[] = {ok("{\"id\": 1}"), ok("[1,2]"), ok(" \"x\" ")};
    CHECK_STR_EQ(merged(r), "{\"user\":{\"id\": 1},\"posts\":[1,2],\"albums\": \"x\" }");
    CHECK_INT_EQ(gd_merge_status(&endpoint, r), 200);
    CHECK(gd_merge_is_complete(&endpoint, r));
}

static void test_optional_failure_is_200_and_incomplete(void)
{
    gd_call_result_t r[] = {ok("{}"), failed(GD_OUTCOME_TIMEOUT, 0, "timed out after 800 ms", 801),
                            failed(GD_OUTCOME_STATUS, 503, "upstream answered 503", 12)};
    CHECK_STR_EQ(merged(r),
                 "{\"user\":{},\"posts\":null,\"albums\":null,\"errors\":{"
                 "\"posts\":{\"kind\":\"timeout\",\"message\":\"the call timed out\","
                 "\"elapsed_ms\":801},"
                 "\"albums\":{\"kind\":\"status\",\"message\":\"the service answered with an "
                 "error status\",\"status\":503,\"elapsed_ms\":12}}}");
    CHECK_INT_EQ(gd_merge_status(&endpoint, r), 200);
    CHECK(!gd_merge_is_complete(&endpoint, r));
}

static void test_required_timeout_is_504(void)
{
    gd_call_result_t r[] = {failed(GD_OUTCOME_TIMEOUT, 0, "t", 5), ok("1"), ok("2")};
    CHECK_INT_EQ(gd_merge_status(&endpoint, r), 504);
}

static void test_required_4xx_passes_through(void)
{
    gd_call_result_t r[] = {failed(GD_OUTCOME_STATUS, 404, "upstream answered 404", 5), ok("1"),
                            ok("2")};
    CHECK_INT_EQ(gd_merge_status(&endpoint, r), 404);
    r[0].status = 500;
    CHECK_INT_EQ(gd_merge_status(&endpoint, r), 502);
}

static void test_other_required_failures_are_502(void)
{
    gd_outcome_t kinds[] = {GD_OUTCOME_CONNECT, GD_OUTCOME_IO, GD_OUTCOME_INVALID_JSON,
                                 GD_OUTCOME_TOO_LARGE};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        gd_call_result_t r[] = {failed(kinds[i], 0, "m", 1), ok("1"), ok("2")};
        CHECK_INT_EQ(gd_merge_status(&endpoint, r), 502);
    }
}

static void test_first_required_failure_decides(void)
{
    gd_call_conf_t two[] = {{.name = S("a"), .name_json = S("\"a\"")}, {.name = S("b"), .name_json = S("\"b\"")}};
    gd_endpoint_conf_t ep = {.calls = two, .ncalls = 2};
    gd_call_result_t r[] = {failed(GD_OUTCOME_STATUS, 404, "m", 1), failed(GD_OUTCOME_TIMEOUT, 0, "m", 1)};
    CHECK_INT_EQ(gd_merge_status(&ep, r), 404);
    gd_call_result_t s[] = {failed(GD_OUTCOME_TIMEOUT, 0, "m", 1), failed(GD_OUTCOME_STATUS, 404, "m", 1)};
    CHECK_INT_EQ(gd_merge_status(&ep, s), 504);
}

/* A call that could not run because another failed leaves the status to that one, wherever it
 * is in config order; alone it is a 502. Its message, naming only config, is always shown. */
static void test_dependency_failure_defers_to_its_cause(void)
{
    gd_call_conf_t two[] = {{.name = S("orders"), .name_json = S("\"orders\"")},
                            {.name = S("user"), .name_json = S("\"user\"")}};
    gd_endpoint_conf_t ep = {.calls = two, .ncalls = 2};
    gd_call_result_t r[] = {
        failed(GD_OUTCOME_DEPENDENCY, 0, "needs call \"user\", which failed", 1),
        failed(GD_OUTCOME_STATUS, 404, "m", 1)};
    CHECK_INT_EQ(gd_merge_status(&ep, r), 404);
    r[1] = ok("{}");
    CHECK_INT_EQ(gd_merge_status(&ep, r), 502);
    CHECK(!gd_merge_is_complete(&ep, r));
    char buf[512];
    size_t n = gd_merge_body(&ep, r, false, buf, sizeof(buf));
    CHECK_MEM_EQ(buf, n,
                 "{\"orders\":null,\"user\":{},\"errors\":{\"orders\":{\"kind\":\"dependency\","
                 "\"message\":\"needs call \\\"user\\\", which failed\",\"elapsed_ms\":1}}}");
}

/* A skipped call is null, not an error: the answer stays 200 and complete. */
static void test_skipped_call_is_null(void)
{
    gd_call_result_t r[] = {ok("{}"), failed(GD_OUTCOME_SKIPPED, 0, "its \"when\" is false", 0),
                            ok("[]")};
    CHECK_INT_EQ(gd_merge_status(&endpoint, r), 200);
    CHECK(gd_merge_is_complete(&endpoint, r));
    CHECK_STR_EQ(merged(r), "{\"user\":{},\"posts\":null,\"albums\":[]}");
    r[0] = failed(GD_OUTCOME_SKIPPED, 0, "skipped", 0); /* even a required one */
    CHECK_INT_EQ(gd_merge_status(&endpoint, r), 200);
}

static void test_short_buffer_reports_full_length(void)
{
    gd_call_result_t r[] = {ok("{\"id\":1}"), ok("[]"), ok("[]")};
    char small[8];
    size_t full = gd_merge_body(&endpoint, r, false, NULL, 0);
    CHECK_INT_EQ(gd_merge_body(&endpoint, r, false, small, sizeof(small)), full);
    CHECK(memcmp(small, "{\"user\":", 8) == 0);
}

static void test_sql_error_carries_sqlstate(void)
{
    gd_call_result_t r[] = {ok("{}"), failed(GD_OUTCOME_SQL, 0, "relation \"x\" does not exist", 2),
                            ok("[]")};
    strcpy(r[1].sqlstate, "42P01");
    CHECK_STR_EQ(merged(r), "{\"user\":{},\"posts\":null,\"albums\":[],\"errors\":{\"posts\":{"
                            "\"kind\":\"sql\",\"message\":\"the database reported an error\","
                            "\"sqlstate\":\"42P01\",\"elapsed_ms\":2}}}");
    /* expose_error_details: the server's own message, escaped. */
    CHECK_STR_EQ(merged_as(r, true),
                 "{\"user\":{},\"posts\":null,\"albums\":[],\"errors\":{\"posts\":{"
                 "\"kind\":\"sql\",\"message\":\"relation \\\"x\\\" does not exist\","
                 "\"sqlstate\":\"42P01\",\"elapsed_ms\":2}}}");
}

static void test_missing_row_is_404_when_required_and_data_when_optional(void)
{
    gd_call_result_t r[] = {failed(GD_OUTCOME_NOT_FOUND, 0, "no row", 1), ok("1"),
                            failed(GD_OUTCOME_NOT_FOUND, 0, "no row", 1)};
    CHECK_INT_EQ(gd_merge_status(&endpoint, r), 404);
    CHECK_STR_EQ(merged(r), "{\"user\":null,\"posts\":1,\"albums\":null,\"errors\":{\"user\":{"
                            "\"kind\":\"not_found\",\"message\":\"no row was found\","
                            "\"elapsed_ms\":1}}}");
    r[0] = ok("{}");
    CHECK_INT_EQ(gd_merge_status(&endpoint, r), 200);
    CHECK(gd_merge_is_complete(&endpoint, r));
    CHECK_STR_EQ(merged(r), "{\"user\":{},\"posts\":1,\"albums\":null}");
}

/* No public message names where a call failed, whatever its detail said. */
static void test_public_messages_name_no_place(void)
{
    for (int k = GD_OUTCOME_TIMEOUT; k < GD_OUTCOME_COUNT; k++) {
        if (k == GD_OUTCOME_NOT_FOUND || k == GD_OUTCOME_SKIPPED)
            continue; /* an optional call's missing row is data, a skipped call null */
        if (k == GD_OUTCOME_DEPENDENCY)
            continue; /* its message names config only: always shown (dependency_message) */
        gd_call_result_t r[] = {ok("{}"),
                                failed((gd_outcome_t)k, 0, "cannot connect to http://10.1.2.3:8080", 1),
                                ok("[]")};
        CHECK(strstr(merged(r), "10.1.2.3") == NULL);
        CHECK(strstr(merged_as(r, true), "10.1.2.3") != NULL);
    }
}

static void test_pool_failures_are_502(void)
{
    gd_outcome_t kinds[] = {GD_OUTCOME_POOL_TIMEOUT, GD_OUTCOME_UNAVAILABLE, GD_OUTCOME_SQL};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        gd_call_result_t r[] = {failed(kinds[i], 0, "m", 1), ok("1"), ok("2")};
        CHECK_INT_EQ(gd_merge_status(&endpoint, r), 502);
    }
}

/* null_on: those statuses are a null value and a success; status_map: the answer's status. */
static void test_null_on_and_status_map(void)
{
    static int null_on[] = {404};
    static gd_status_map_entry_t map[] = {{401, 502}, {429, 503}};
    static gd_call_conf_t mcalls[] = {
        {.name = S("user"),
         .name_json = S("\"user\""),
         .null_on = null_on,
         .nnull_on = 1,
         .status_map = map,
         .nstatus_map = 2},
        {.name = S("posts"),
         .name_json = S("\"posts\""),
         .is_optional = true,
         .status_map = map,
         .nstatus_map = 2},
    };
    static const gd_endpoint_conf_t mep = {.calls = mcalls, .ncalls = 2};
    gd_call_result_t r[2];
    char buf[512];
    size_t len;

    r[0] = failed(GD_OUTCOME_STATUS, 404, "upstream answered 404", 4);
    r[1] = ok("[1]");
    gd_merge_settle(&mcalls[0], &r[0]);
    gd_merge_settle(&mcalls[1], &r[1]);
    CHECK_INT_EQ(r[0].outcome, GD_OUTCOME_OK);
    CHECK_INT_EQ(r[0].status, 404); /* kept for the access line */
    CHECK_INT_EQ(gd_merge_status(&mep, r), 200);
    CHECK(gd_merge_is_complete(&mep, r));
    len = gd_merge_body(&mep, r, false, buf, sizeof(buf) - 1);
    buf[len] = '\0';
    CHECK_STR_EQ(buf, "{\"user\":null,\"posts\":[1]}");

    /* A status the call does not null is a failure; the map gives the answer's status. */
    r[0] = failed(GD_OUTCOME_STATUS, 429, "upstream answered 429", 4);
    gd_merge_settle(&mcalls[0], &r[0]);
    CHECK_INT_EQ(r[0].outcome, GD_OUTCOME_STATUS);
    CHECK_INT_EQ(gd_merge_status(&mep, r), 503);
    len = gd_merge_body(&mep, r, false, buf, sizeof(buf) - 1);
    buf[len] = '\0';
    CHECK_STR_EQ(buf, "{\"user\":null,\"posts\":[1],\"errors\":{\"user\":{\"kind\":\"status\","
                      "\"message\":\"the service answered with an error status\",\"status\":429,"
                      "\"elapsed_ms\":4}}}");
    r[0] = failed(GD_OUTCOME_STATUS, 401, "upstream answered 401", 4);
    CHECK_INT_EQ(gd_merge_status(&mep, r), 502);
    /* Unmapped statuses keep today's rules: a 4xx is passed on, others are 502. */
    r[0] = failed(GD_OUTCOME_STATUS, 403, "upstream answered 403", 4);
    CHECK_INT_EQ(gd_merge_status(&mep, r), 403);
    r[0] = failed(GD_OUTCOME_STATUS, 500, "upstream answered 500", 4);
    CHECK_INT_EQ(gd_merge_status(&mep, r), 502);
    /* Other kinds are never mapped, nor null. */
    r[0] = failed(GD_OUTCOME_TIMEOUT, 0, "timed out", 4);
    gd_merge_settle(&mcalls[0], &r[0]);
    CHECK_INT_EQ(gd_merge_status(&mep, r), 504);
    /* An optional call's mapped failure never changes the status. */
    r[0] = ok("{}");
    r[1] = failed(GD_OUTCOME_STATUS, 429, "upstream answered 429", 4);
    CHECK_INT_EQ(gd_merge_status(&mep, r), 200);
}

const gd_test_case_t gd_test_cases[] = {
    {"null_on_and_status_map", test_null_on_and_status_map},
    {"sql_error_carries_sqlstate", test_sql_error_carries_sqlstate},
    {"missing_row_is_404_when_required_and_data_when_optional",
     test_missing_row_is_404_when_required_and_data_when_optional},
    {"pool_failures_are_502", test_pool_failures_are_502},
    {"public_messages_name_no_place", test_public_messages_name_no_place},
    {"all_ok_keeps_order_and_bytes", test_all_ok_keeps_order_and_bytes},
    {"optional_failure_is_200_and_incomplete", test_optional_failure_is_200_and_incomplete},
    {"required_timeout_is_504", test_required_timeout_is_504},
    {"required_4xx_passes_through", test_required_4xx_passes_through},
    {"other_required_failures_are_502", test_other_required_failures_are_502},
    {"first_required_failure_decides", test_first_required_failure_decides},
    {"dependency_failure_defers_to_its_cause", test_dependency_failure_defers_to_its_cause},
    {"skipped_call_is_null", test_skipped_call_is_null},
    {"short_buffer_reports_full_length", test_short_buffer_reports_full_length},
    {NULL, NULL},
};
