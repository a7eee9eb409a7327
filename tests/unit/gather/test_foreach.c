/* The pure parts of a "for_each" (gather/foreach.c): a list parameter's Postgres array literal
 * as a JSON array, a JSON array's items, and the one result a call makes of its items. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "config/config.h"
#include "gather/foreach.h"
#include "runner.h"
#include "json/json.h"

/* The JSON of the list literal @lit of a parameter of @type, NUL-terminated (caller frees). */
static char *list_json(gd_param_type_t type, const char *lit)
{
    gd_param_t p = {.name = (char *)"query.ids", .type = type};
    gd_jbuf_t out = {0};

    gd_foreach_list_json(&p, lit, strlen(lit), &out);
    CHECK(gd_json_is_valid(out.buf, out.len));
    gd_jbuf_put(&out, "", 1);
    return out.buf;
}

static void check_list(gd_param_type_t type, const char *lit, const char *want)
{
    char *got = list_json(type, lit);
    CHECK_STR_EQ(got, want);
    free(got);
}

static void test_list_json(void)
{
    check_list(GD_PARAM_INT_LIST, "{}", "[]");
    check_list(GD_PARAM_INT_LIST, "{1}", "[1]");
    check_list(GD_PARAM_INT_LIST, "{1,-2,007,0,-00}", "[1,-2,7,0,-0]");
    check_list(GD_PARAM_INT_LIST, "{9223372036854775807}", "[9223372036854775807]");
    check_list(GD_PARAM_STRING_LIST, "{}", "[]");
    check_list(GD_PARAM_STRING_LIST, "{\"a\"}", "[\"a\"]");
    /* array_in's escapes undone, JSON's made: a quote, a backslash, a comma, braces, a control */
    check_list(GD_PARAM_STRING_LIST, "{\"a\\\"b\",\"c\\\\d\",\"e,f\",\"{}\",\"\x01\"}",
               "[\"a\\\"b\",\"c\\\\d\",\"e,f\",\"{}\",\"\\u0001\"]");
    check_list(GD_PARAM_STRING_LIST, "{\"\xc3\xa9\",\"\"}", "[\"\xc3\xa9\",\"\"]");
}

static void test_items(void)
{
    gd_strv_t items[4];
    size_t n = 99;
    const char *doc = " [ 1, {\"a\": [2, 3]} ,\"x\" ,null] ";

    CHECK_INT_EQ(gd_foreach_items(doc, strlen(doc), items, 4, &n), 0);
    CHECK_INT_EQ(n, 4);
    CHECK_MEM_EQ(items[0].base, items[0].len, "1");
    CHECK_MEM_EQ(items[1].base, items[1].len, "{\"a\": [2, 3]}");
    CHECK_MEM_EQ(items[2].base, items[2].len, "\"x\"");
    CHECK_MEM_EQ(items[3].base, items[3].len, "null");
    /* counted past what is written */
    CHECK_INT_EQ(gd_foreach_items(doc, strlen(doc), items, 1, &n), 0);
    CHECK_INT_EQ(n, 4);
    CHECK_INT_EQ(gd_foreach_items(doc, strlen(doc), NULL, 0, &n), 0);
    CHECK_INT_EQ(n, 4);
    CHECK_INT_EQ(gd_foreach_items("[]", 2, NULL, 0, &n), 0);
    CHECK_INT_EQ(n, 0);
    static const char *const others[] = {"{}", "{\"a\":[1]}", "\"[1]\"", "null", "1", "true"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        n = 99;
        CHECK_INT_EQ(gd_foreach_items(others[i], strlen(others[i]), NULL, 0, &n), -EINVAL);
        CHECK_INT_EQ(n, 0);
    }
}

static gd_call_result_t ok(gd_buf_t *body)
{
    return (gd_call_result_t){.outcome = GD_OUTCOME_OK, .body = body, .max_age_ms = -1};
}

static gd_call_result_t failed(gd_outcome_t outcome, int status, const char *message)
{
    gd_call_result_t r = {.outcome = outcome, .status = status, .max_age_ms = -1};
    snprintf(r.message, sizeof(r.message), "%s", message);
    return r;
}

static void check_body(const gd_call_result_t *r, const char *want)
{
    CHECK(r->body != NULL);
    CHECK_MEM_EQ(r->body->bytes, r->body->len, want);
}

static void test_result(void)
{
    gd_call_conf_t required = {.name = (char *)"c"};
    gd_call_conf_t optional = {.name = (char *)"c", .is_optional = true};
    gd_buf_t *a = gd_buf_new_copy("{\"n\":1}", 7), *b = gd_buf_new_copy("[2]", 3);
    gd_call_result_t items[4] = {ok(a), failed(GD_OUTCOME_STATUS, 500, "HTTP 500"), ok(b),
                                 failed(GD_OUTCOME_NOT_FOUND, 0, "no row")};
    gd_call_result_t r;

    /* in item order, a failed item null; an optional call's missing row is no failure */
    gd_foreach_result(&optional, items, 4, 12, &r);
    CHECK_INT_EQ(r.outcome, GD_OUTCOME_OK);
    check_body(&r, "[{\"n\":1},null,[2],null]");
    CHECK(r.is_shaped);
    CHECK(r.items == items);
    CHECK_INT_EQ(r.nitems, 4);
    CHECK_INT_EQ(r.nitems_failed, 1);
    CHECK_INT_EQ(r.elapsed_ms, 12);
    r.body = gd_buf_unref(r.body);
    gd_foreach_result(&required, items, 4, 12, &r);
    CHECK_INT_EQ(r.nitems_failed, 2);
    r.body = gd_buf_unref(r.body);
    /* no item: [] */
    gd_foreach_result(&required, items, 0, 0, &r);
    CHECK_INT_EQ(r.outcome, GD_OUTCOME_OK);
    check_body(&r, "[]");
    r.body = gd_buf_unref(r.body);
    /* every item failed: the call failed as its first item did */
    gd_foreach_result(&required, items + 1, 1, 5, &r);
    CHECK_INT_EQ(r.outcome, GD_OUTCOME_STATUS);
    CHECK_INT_EQ(r.status, 500);
    CHECK(r.body == NULL);
    CHECK(r.items == items + 1); /* for the log and the metrics */
    CHECK_INT_EQ(r.nitems_failed, 1);
    CHECK_STR_EQ(r.message, "all 1 items failed; the first: HTTP 500");
    gd_call_result_t two[2] = {failed(GD_OUTCOME_NOT_FOUND, 0, "no row"),
                               failed(GD_OUTCOME_TIMEOUT, 0, "late")};
    gd_foreach_result(&required, two, 2, 5, &r);
    CHECK_INT_EQ(r.outcome, GD_OUTCOME_NOT_FOUND);
    /* ... but an optional call's missing rows are nulls, its timeout the only failure */
    gd_foreach_result(&optional, two, 2, 5, &r);
    CHECK_INT_EQ(r.outcome, GD_OUTCOME_OK);
    check_body(&r, "[null,null]");
    CHECK_INT_EQ(r.nitems_failed, 1);
    r.body = gd_buf_unref(r.body);
    gd_buf_unref(a);
    gd_buf_unref(b);
}

const gd_test_case_t gd_test_cases[] = {
    {"list_json", test_list_json},
    {"items", test_items},
    {"result", test_result},
    {NULL, NULL},
};
