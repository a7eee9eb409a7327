#include <errno.h>
#include <string.h>

#include "config/listparam.h"
#include "runner.h"

static char name[] = "query.ids", key[] = "ids";

static gd_param_t list_param(gd_param_type_t type, size_t max_items)
{
    return (gd_param_t){.name = name, .key = key, .type = type, .max_items = max_items};
}

/* The literal of the occurrences @texts (NULL-terminated), or the error message. */
static const char *literal(const gd_param_t *p, const char *const *texts)
{
    static char out[256];
    char err[128];
    gd_list_writer_t w;

    gd_list_begin(&w, p, out, sizeof(out));
    for (size_t i = 0; texts[i] != NULL; i++)
        if (gd_list_add(&w, texts[i], strlen(texts[i]), err, sizeof(err)) != 0) {
            snprintf(out, sizeof(out), "error: %s", err);
            return out;
        }
    size_t n = gd_list_end(&w);
    CHECK(n < sizeof(out) && strlen(out) == n);
    return out;
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_int_lists(void)
{
    gd_param_t p = list_param(GD_PARAM_INT_LIST, 4);

    CHECK_STR_EQ(literal(&p, L("1,2,3")), "{1,2,3}");
    CHECK_STR_EQ(literal(&p, L("1", "-2", "3")), "{1,-2,3}");
    CHECK_STR_EQ(literal(&p, L("", "7")), "{7}"); /* ?ids=&ids=7 */
    CHECK_STR_EQ(literal(&p, L("")), "{}");
    CHECK_STR_EQ(literal(&p, L("1,x")), "error: parameter \"query.ids\" must be a list of integers");
    CHECK_STR_EQ(literal(&p, L("1,,2")), "error: parameter \"query.ids\" has an empty item");
    CHECK_STR_EQ(literal(&p, L("1,")), "error: parameter \"query.ids\" has an empty item");
    CHECK_STR_EQ(literal(&p, L("1,2", "3,4", "5")),
                 "error: parameter \"query.ids\" has more than 4 items");
    CHECK_STR_EQ(literal(&p, L("9223372036854775808")),
                 "error: parameter \"query.ids\" must be a list of integers");
}

static void test_string_lists_are_quoted_and_escaped(void)
{
    gd_param_t p = list_param(GD_PARAM_STRING_LIST, 100);

    CHECK_STR_EQ(literal(&p, L("a,b")), "{\"a\",\"b\"}");
    CHECK_STR_EQ(literal(&p, L("say \"hi\"", "c:\\d", "{x}", "NULL")),
                 "{\"say \\\"hi\\\"\",\"c:\\\\d\",\"{x}\",\"NULL\"}");
}

/* A first pass with no room sizes the buffer, as gd_route_scratch_bytes() assumes. */
static void test_sizing_pass(void)
{
    gd_param_t p = list_param(GD_PARAM_STRING_LIST, 100);
    char err[64], buf[8];

    CHECK_INT_EQ(gd_param_list_literal(&p, "ab,\"", 4, NULL, 0, err, sizeof(err)), 11);
    CHECK_INT_EQ(gd_param_list_literal(&p, "ab,\"", 4, buf, sizeof(buf), err, sizeof(err)), 11);
    CHECK(memcmp(buf, "{\"ab\",\"\\", 8) == 0); /* cut, never past the buffer */
    CHECK_INT_EQ(gd_param_list_literal(&p, "a,,b", 4, NULL, 0, err, sizeof(err)), -EINVAL);
}

const gd_test_case_t gd_test_cases[] = {
    {"int_lists", test_int_lists},
    {"string_lists_are_quoted_and_escaped", test_string_lists_are_quoted_and_escaped},
    {"sizing_pass", test_sizing_pass},
    {NULL, NULL},
};
