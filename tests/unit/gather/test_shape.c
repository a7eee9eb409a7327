/* The response template: compiled by the config loader (config/expr.c), evaluated over call
 * results (gather/eval.c) and written as the answer (gather/shape.c). */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "gather/shape.h"
#include "runner.h"
#include "json/json.h"

static char err[1024];

/* A config with calls user, posts, albums on /users/{id} (id an int), response @resp. */
static int load(const char *resp, gd_config_t **cfg)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "{\"listen\":[\"127.0.0.1:8080\"],\"upstreams\":{\"a\":{\"url\":\"http://"
             "127.0.0.1:1\"}},\"endpoints\":[{\"path\":\"/users/{id}\",\"params\":{\"id\":"
             "\"int\"},\"calls\":{\"user\":{\"upstream\":\"a\",\"path\":\"/u\"},\"posts\":{"
             "\"upstream\":\"a\",\"path\":\"/p\",\"optional\":true},\"albums\":{\"upstream\":"
             "\"a\",\"path\":\"/a\",\"optional\":true}},\"response\":%s}]}",
             resp);
    return gd_config_load_string(text, "conf/x.json", cfg, err, sizeof(err));
}

static gd_buf_t bufs[3];

static gd_call_result_t ok(int i, const char *body)
{
    bufs[i] = (gd_buf_t){.len = strlen(body), .bytes = (char *)body};
    return (gd_call_result_t){.outcome = GD_OUTCOME_OK, .status = 200, .body = &bufs[i]};
}

static const char *USER = " {\"id\": 7, \"name\":\"Ann\", \"address\":{\"city\":\"Oslo\"},"
                          "\"odd key\":[1,2], \"\\u00e9t\\u00e9\":\"summer\", \"dup\":1, "
                          "\"dup\":2, \"q\\\"k\":\"quoted\", \"n\":null, \"s\":\"a\\\"b\"} ";
static const char *POSTS = "[{\"id\":1,\"t\":\"a\"},{\"id\":2,\"t\":\"b\"},{\"id\":3},"
                           "{\"id\":4,\"t\":\"[}\"}, {\"id\":5}, {\"id\":6}]";

/* The answer for @resp with every call ok and id "007". */
static char *shaped_with(const char *resp, gd_call_result_t *r)
{
    gd_config_t *cfg = NULL;
    gd_strv_t values[4] = {{"007", 3}, {"", 0}, {"", 0}, {"", 0}};
    gd_jbuf_t out = {0};

    if (load(resp, &cfg) != 0)
        gd__test_fail(__FILE__, __LINE__, "load: %s", err);
    gd_shape_body(&cfg->endpoints[0], r, values, false, &out);
    gd_jbuf_put(&out, "", 1);
    CHECK(gd_json_is_valid(out.buf, out.len - 1));
    gd_config_free(cfg);
    return out.buf;
}

static char *shaped(const char *resp)
{
    gd_call_result_t r[3] = {ok(0, USER), ok(1, POSTS), ok(2, "[]")};
    return shaped_with(resp, r);
}

#define CHECK_SHAPED(resp, want)                                                                   \
    do {                                                                                           \
        char *got = shaped(resp);                                                                  \
        CHECK_STR_EQ(got, want);                                                                   \
        free(got);                                                                                 \
    } while (0)

static void test_paths(void)
{
    CHECK_SHAPED("{\"c\":\"{user.address.city}\"}", "{\"c\":\"Oslo\"}");
    CHECK_SHAPED("\"{user.id}\"", "7");
    CHECK_SHAPED("\"{posts[0].id}\"", "1");
    CHECK_SHAPED("\"{posts[-1]}\"", "{\"id\":6}");
    CHECK_SHAPED("\"{posts[-6].id}\"", "1");
    CHECK_SHAPED("\"{posts[-7]}\"", "null");
    CHECK_SHAPED("\"{posts[6]}\"", "null");
    CHECK_SHAPED("\"{posts[3].t}\"", "\"[}\"");
    CHECK_SHAPED("\"{user}\"", "{\"id\": 7, \"name\":\"Ann\", \"address\":{\"city\":\"Oslo\"},"
                               "\"odd key\":[1,2], \"\\u00e9t\\u00e9\":\"summer\", \"dup\":1, "
                               "\"dup\":2, \"q\\\"k\":\"quoted\", \"n\":null, \"s\":\"a\\\"b\"}");
}

static void test_missing_is_null(void)
{
    CHECK_SHAPED("[\"{user.nope}\",\"{user.address.zip}\",\"{user.id.x}\",\"{user[0]}\","
                 "\"{posts.id}\",\"{posts[2].t}\",\"{user.n}\"]",
                 "[null,null,null,null,null,null,null]");
}

static void test_odd_and_escaped_keys(void)
{
    CHECK_SHAPED("\"{user[\\\"odd key\\\"][1]}\"", "2");
    CHECK_SHAPED("\"{user[\\\"\\u00e9t\\u00e9\\\"]}\"", "\"summer\"");
    CHECK_SHAPED("\"{user[\\\"été\\\"]}\"", "\"summer\"");
    CHECK_SHAPED("\"{user[\\\"q\\\\\\\"k\\\"]}\"", "\"quoted\"");
    CHECK_SHAPED("\"{user.dup}\"", "2"); /* the last of duplicate keys, as parsers keep */
}

static void test_slices_and_each(void)
{
    CHECK_SHAPED("\"{posts[0:2]}\"", "[{\"id\":1,\"t\":\"a\"},{\"id\":2,\"t\":\"b\"}]");
    CHECK_SHAPED("\"{posts[4:]}\"", "[{\"id\":5},{\"id\":6}]");
    CHECK_SHAPED("\"{posts[:1]}\"", "[{\"id\":1,\"t\":\"a\"}]");
    CHECK_SHAPED("\"{posts[-2:]}\"", "[{\"id\":5},{\"id\":6}]");
    CHECK_SHAPED("\"{posts[3:1]}\"", "[]");
    CHECK_SHAPED("\"{posts[0:100][*].id}\"", "[1,2,3,4,5,6]");
    CHECK_SHAPED("\"{posts[*].id}\"", "[1,2,3,4,5,6]");
    CHECK_SHAPED("\"{posts[*].t}\"", "[\"a\",\"b\",null,\"[}\",null,null]");
    CHECK_SHAPED("\"{posts[1:3][0]}\"", "{\"id\":2,\"t\":\"b\"}");
    CHECK_SHAPED("\"{user[*]}\"", "null");
    CHECK_SHAPED("\"{user[0:1]}\"", "null");
}

static void test_count_and_types(void)
{
    CHECK_SHAPED("{\"n\":\"{count(posts)}\",\"u\":\"{count(user)}\",\"a\":\"{count(albums)}\","
                 "\"x\":\"{count(user.name)}\",\"s\":\"{count(posts[1:])}\"}",
                 "{\"n\":6,\"u\":10,\"a\":0,\"x\":null,\"s\":5}");
    CHECK_SHAPED("{\"id\":\"{id}\",\"text\":\"user {id}\",\"q\":\"{query.q}\",\"lit\":\"{{x}}\","
                 "\"k\":[1,true,null,{\"z\":2.5}]}",
                 "{\"id\":7,\"text\":\"user 007\",\"q\":\"\",\"lit\":\"{x}\",\"k\":[1,true,null,{"
                 "\"z\":2.5}]}");
    CHECK_SHAPED("\"{user.name} of {user.address.city}: {count(posts)} {user.nope}{user.s} "
                 "{user.address}\"",
                 "\"Ann of Oslo: 6 a\\\"b {\\\"city\\\":\\\"Oslo\\\"}\"");
}

static void test_failed_call_and_errors(void)
{
    gd_call_result_t r[3] = {
        ok(0, USER), {.outcome = GD_OUTCOME_TIMEOUT, .elapsed_ms = 9}, ok(2, "[1]")};
    char *got = shaped_with("{\"p\":\"{posts[0]}\",\"n\":\"{count(posts)}\"}", r);
    CHECK_STR_EQ(got, "{\"p\":null,\"n\":null,\"errors\":{\"posts\":{\"kind\":\"timeout\","
                      "\"message\":\"the call timed out\",\"elapsed_ms\":9}}}");
    free(got);
    got = shaped_with("{}", r);
    CHECK_STR_EQ(got, "{\"errors\":{\"posts\":{\"kind\":\"timeout\",\"message\":\"the call timed "
                      "out\",\"elapsed_ms\":9}}}");
    free(got);
    got = shaped_with("{\"problems\":\"{errors}\",\"a\":\"{albums}\"}", r);
    CHECK_STR_EQ(got, "{\"problems\":{\"posts\":{\"kind\":\"timeout\",\"message\":\"the call "
                      "timed out\",\"elapsed_ms\":9}},\"a\":[1]}");
    free(got);
    got = shaped_with("[\"{albums}\"]", r); /* not an object: no errors key */
    CHECK_STR_EQ(got, "[[1]]");
    free(got);
    gd_call_result_t all[3] = {ok(0, USER), ok(1, "[]"), ok(2, "[]")};
    got = shaped_with("{\"e\":\"{errors}\"}", all);
    CHECK_STR_EQ(got, "{\"e\":null}");
    free(got);
}

static void test_classic_aggregator(void)
{
    CHECK_SHAPED("{\"user_id\":\"{id}\",\"user_info\":\"{user.name}\",\"posts_count\":"
                 "\"{count(posts)}\",\"albums_count\":\"{count(albums)}\",\"posts\":"
                 "\"{posts[0:2]}\",\"albums\":\"{albums[0:3]}\"}",
                 "{\"user_id\":7,\"user_info\":\"Ann\",\"posts_count\":6,\"albums_count\":0,"
                 "\"posts\":[{\"id\":1,\"t\":\"a\"},{\"id\":2,\"t\":\"b\"}],\"albums\":[]}");
}

static void check_error(const char *resp, const char *want)
{
    gd_config_t *cfg = NULL;
    CHECK(load(resp, &cfg) != 0);
    if (strstr(err, want) == NULL)
        gd__test_fail(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", err, want);
}

static void test_config_errors(void)
{
    check_error("{\"a\":{\"b\":[\"x\",\"{usr}\"]}}",
                "endpoints[0].response.a.b[1]: \"{usr}\": unknown call or source \"usr\"");
    check_error("\"{user.}\"", "endpoints[0].response: \"{user.}\": a field name");
    check_error("\"{user[1}\"", "\"]\" expected");
    check_error("\"{user[x]}\"", "\"[\" takes an index");
    check_error("\"{user\"", "unbalanced");
    check_error("\"a}\"", "unbalanced \"}\"");
    check_error("\"{count(id)}\"", "count() takes a call's result");
    check_error("\"{id.x}\"", "has no fields");
    check_error("\"{body}\"", "not available in a response template");
    check_error("\"{env.X}\"", "not available in a response template");
    check_error("\"x {errors}\"", "{errors} must be a string of its own");
    check_error("\"{user[\\\"a]}\"", "unterminated string key");
}

static void test_reserved_call_names(void)
{
    static const char *const names[] = {"query", "header", "body", "env", "item", "id"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char text[1024];
        gd_config_t *cfg = NULL;
        snprintf(text, sizeof(text),
                 "{\"listen\":[\"127.0.0.1:8080\"],\"upstreams\":{\"a\":{\"url\":\"http://"
                 "127.0.0.1:1\"}},\"endpoints\":[{\"path\":\"/users/{id}\",\"calls\":{\"%s\":{"
                 "\"upstream\":\"a\",\"path\":\"/u\"}}}]}",
                 names[i]);
        CHECK(gd_config_load_string(text, "conf/x.json", &cfg, err, sizeof(err)) != 0);
        CHECK(strstr(err, "endpoints[0].calls.") != NULL);
        CHECK(strstr(err, "a call may not be named") != NULL);
    }
}

const gd_test_case_t gd_test_cases[] = {
    {"paths", test_paths},
    {"missing_is_null", test_missing_is_null},
    {"odd_and_escaped_keys", test_odd_and_escaped_keys},
    {"slices_and_each", test_slices_and_each},
    {"count_and_types", test_count_and_types},
    {"failed_call_and_errors", test_failed_call_and_errors},
    {"classic_aggregator", test_classic_aggregator},
    {"config_errors", test_config_errors},
    {"reserved_call_names", test_reserved_call_names},
    {NULL, NULL},
};
