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
        if (k == GD_OUTCOME_NOT_FOUND)
            continue; /* an optional call's missing row is data, not an error */
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

const gd_test_case_t gd_test_cases[] = {
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
    {"short_buffer_reports_full_length", test_short_buffer_reports_full_length},
    {NULL, NULL},
};
