#include <string.h>

#include "runner.h"
#include "sources/pg/pgarray.h"

static const char *encoded(const char *json)
{
    static char buf[512];
    size_t need = gd_pgarray_encode(json, strlen(json), NULL, 0);
    size_t n = gd_pgarray_encode(json, strlen(json), buf, sizeof(buf) - 1);

    CHECK_INT_EQ(n, need);
    buf[n < sizeof(buf) ? n : sizeof(buf) - 1] = '\0';
    return buf;
}

static void test_numbers_and_empty(void)
{
    CHECK_STR_EQ(encoded("[1, 2,3]"), "{1,2,3}");
    CHECK_STR_EQ(encoded("[]"), "{}");
    CHECK_STR_EQ(encoded(" [ -1.5e3 ] "), "{-1.5e3}");
}

/* Strings are always quoted, so "NULL", "" and text with commas or braces stay strings; '"'
 * and '\' are backslash-escaped; JSON escapes are decoded first. */
static void test_strings_are_quoted_and_escaped(void)
{
    CHECK_STR_EQ(encoded("[\"a\", \"NULL\", \"\", \"x,y{z}\"]"),
                 "{\"a\",\"NULL\",\"\",\"x,y{z}\"}");
    CHECK_STR_EQ(encoded("[\"say \\\"hi\\\"\", \"back\\\\slash\", \"\\u00e9\\n\"]"),
                 "{\"say \\\"hi\\\"\",\"back\\\\slash\",\"\xc3\xa9\n\"}");
}

static void test_null_bool_nested_object(void)
{
    CHECK_STR_EQ(encoded("[null, true, false]"), "{NULL,true,false}");
    CHECK_STR_EQ(encoded("[[1,2],[3,null]]"), "{{1,2},{3,NULL}}");
    CHECK_STR_EQ(encoded("[{\"a\":\"b\"}]"), "{\"{\\\"a\\\":\\\"b\\\"}\"}");
}

static void test_not_an_array(void)
{
    CHECK_INT_EQ(gd_pgarray_encode("{}", 2, NULL, 0), 0);
    CHECK_INT_EQ(gd_pgarray_encode("1", 1, NULL, 0), 0);
}

static void test_short_buffer_reports_full_length(void)
{
    char small[4];
    CHECK_INT_EQ(gd_pgarray_encode("[10,20,30]", 10, small, sizeof(small)), 10);
    CHECK(memcmp(small, "{10,", 4) == 0);
}

const gd_test_case_t gd_test_cases[] = {
    {"numbers_and_empty", test_numbers_and_empty},
    {"strings_are_quoted_and_escaped", test_strings_are_quoted_and_escaped},
    {"null_bool_nested_object", test_null_bool_nested_object},
    {"not_an_array", test_not_an_array},
    {"short_buffer_reports_full_length", test_short_buffer_reports_full_length},
    {NULL, NULL},
};
