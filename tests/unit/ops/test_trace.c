#include <string.h>

#include "runner.h"
#include "ops/trace.h"

static void test_request_id_validation(void)
{
    CHECK(gd_trace_is_valid_request_id("abc-123_X.y:z/+=@", 17));
    CHECK(!gd_trace_is_valid_request_id("", 0));
    CHECK(!gd_trace_is_valid_request_id("a b", 3));
    CHECK(!gd_trace_is_valid_request_id("a\"b", 3));
    CHECK(!gd_trace_is_valid_request_id("a\r\nb", 4));
    char long_id[130];
    memset(long_id, 'a', sizeof(long_id));
    CHECK(gd_trace_is_valid_request_id(long_id, 128));
    CHECK(!gd_trace_is_valid_request_id(long_id, 129));
}

static void test_new_ids_are_hex_and_distinct(void)
{
    char a[33], b[33];
    gd_trace_new_request_id(a);
    gd_trace_new_request_id(b);
    CHECK_INT_EQ(strlen(a), 32);
    CHECK(strspn(a, "0123456789abcdef") == 32);
    CHECK(strcmp(a, b) != 0);
}

static void test_traceparent_child_keeps_trace_and_flags(void)
{
    const char *in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    gd_traceparent_t tp;
    char child[GD_TRACE_TRACEPARENT_LEN + 1], child2[GD_TRACE_TRACEPARENT_LEN + 1];

    CHECK_INT_EQ(gd_trace_parse(in, strlen(in), &tp), 0);
    CHECK_STR_EQ(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    gd_trace_child(&tp, child);
    gd_trace_child(&tp, child2);
    CHECK_INT_EQ(strlen(child), 55);
    CHECK(memcmp(child, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36) == 0);
    CHECK(memcmp(child + 52, "-01", 3) == 0);
    CHECK(memcmp(child + 36, "00f067aa0ba902b7", 16) != 0); /* a new span */
    CHECK(strcmp(child, child2) != 0);
}

static void test_traceparent_rejects_malformed(void)
{
    const char *bad[] = {
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   /* short */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper-case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero parent id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* v00 with more */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    gd_traceparent_t tp;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_INT_EQ(gd_trace_parse(bad[i], strlen(bad[i]), &tp), -22);
    /* a future version may append fields */
    const char *v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
    CHECK_INT_EQ(gd_trace_parse(v1, strlen(v1), &tp), 0);
}

const gd_test_case_t gd_test_cases[] = {
    {"request_id_validation", test_request_id_validation},
    {"new_ids_are_hex_and_distinct", test_new_ids_are_hex_and_distinct},
    {"traceparent_child_keeps_trace_and_flags", test_traceparent_child_keeps_trace_and_flags},
    {"traceparent_rejects_malformed", test_traceparent_rejects_malformed},
    {NULL, NULL},
};
