/* A call's own shaping ("select", "fields", "omit", "rename"): loaded by the config loader
 * (config/config.c, config/expr.c) and applied to the result's bytes (gather/reshape.c). */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "gather/reshape.h"
#include "runner.h"
#include "json/json.h"

static char err[1024];

/* A config whose one call "user" has the extra keys @keys (",\"select\":..." or ""). */
static int load(const char *keys, gd_config_t **cfg)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "{\"listen\":[\"127.0.0.1:8080\"],\"upstreams\":{\"a\":{\"url\":\"http://"
             "127.0.0.1:1\"}},\"endpoints\":[{\"path\":\"/u\",\"calls\":{\"user\":{"
             "\"upstream\":\"a\",\"path\":\"/u\"%s}}}]}",
             keys);
    return gd_config_load_string(text, "conf/x.json", cfg, err, sizeof(err));
}

/* @doc shaped by a call with @keys: the bytes, or "FAILED" when select found nothing. */
static char *reshaped(const char *keys, const char *doc)
{
    gd_config_t *cfg = NULL;
    gd_jbuf_t out = {0};

    if (load(keys, &cfg) != 0)
        gd__test_fail(__FILE__, __LINE__, "load: %s", err);
    CHECK(cfg->endpoints[0].calls[0].reshape != NULL);
    if (!gd_reshape_apply(cfg->endpoints[0].calls[0].reshape, doc, strlen(doc), &out)) {
        CHECK(out.len == 0);
        gd_jbuf_put(&out, "FAILED", 6);
    } else {
        CHECK(gd_json_is_valid(out.buf, out.len));
    }
    gd_jbuf_put(&out, "", 1);
    gd_config_free(cfg);
    return out.buf;
}

#define CHECK_RESHAPED(keys, doc, want)                                                            \
    do {                                                                                           \
        char *got = reshaped(keys, doc);                                                           \
        CHECK_STR_EQ(got, want);                                                                   \
        free(got);                                                                                 \
    } while (0)

static const char *DOC = " {\"data\": {\"items\": [{\"id\": 1, \"title\": \"a\", \"email\": "
                         "\"x@y\"}, 7, {\"id\": 2, \"userId\": 9}, [{\"id\": 3}]]}, "
                         "\"total\": 2 } ";

static void test_select(void)
{
    CHECK_RESHAPED(",\"select\":\"data.items[0]\"", DOC,
                   "{\"id\": 1, \"title\": \"a\", \"email\": \"x@y\"}");
    CHECK_RESHAPED(",\"select\":\"total\"", DOC, "2");
    CHECK_RESHAPED(",\"select\":\"data.items[-1][0].id\"", DOC, "3");
    CHECK_RESHAPED(",\"select\":\"data.items[*].id\"", DOC, "[1,null,2,null]");
    CHECK_RESHAPED(",\"select\":\"data.items[1:3]\"", DOC, "[7,{\"id\": 2, \"userId\": 9}]");
    CHECK_RESHAPED(",\"select\":\"[\\\"data\\\"].items[1]\"", DOC, "7");
    CHECK_RESHAPED(",\"select\":\"[1]\"", "[0, \"one\"]", "\"one\"");
}

static void test_select_finds_nothing(void)
{
    CHECK_RESHAPED(",\"select\":\"data.nope\"", DOC, "FAILED");
    CHECK_RESHAPED(",\"select\":\"data.items[9]\"", DOC, "FAILED");
    CHECK_RESHAPED(",\"select\":\"total[*]\"", DOC, "FAILED");
    CHECK_RESHAPED(",\"select\":\"total[0:1]\"", DOC, "FAILED");
    CHECK_RESHAPED(",\"select\":\"x\"", "null", "FAILED");
    CHECK_RESHAPED(",\"select\":\"x\",\"fields\":[\"a\"]", "[]", "FAILED");
    /* found, even if null */
    CHECK_RESHAPED(",\"select\":\"x\"", "{\"x\":null}", "null");
}

static void test_fields_and_omit(void)
{
    CHECK_RESHAPED(",\"fields\":[\"id\",\"title\"]", "{\"id\":1,\"title\":\"t\",\"body\":\"b\"}",
                   "{\"id\":1,\"title\":\"t\"}");
    CHECK_RESHAPED(",\"omit\":[\"email\"]", "{ \"id\" : 1 , \"email\" : \"e\" , \"n\" : [ 1 ] }",
                   "{\"id\" : 1,\"n\" : [ 1 ]}"); /* each member as written */
    CHECK_RESHAPED(",\"select\":\"data.items\",\"fields\":[\"id\",\"title\"]", DOC,
                   "[{\"id\": 1,\"title\": \"a\"},7,{\"id\": 2},[{\"id\": 3}]]");
    CHECK_RESHAPED(",\"omit\":[\"email\",\"userId\"]", "[{\"email\":1},{\"userId\":2,\"k\":3}]",
                   "[{},{\"k\":3}]");
    /* keys compared decoded; duplicates kept in order, as parsers keep the last */
    CHECK_RESHAPED(",\"fields\":[\"\\u00e9\",\"a\\\"b\"]",
                   "{\"\\u00e9\":1,\"a\\\"b\":2,\"\xc3\xa9\":3,\"z\":4}",
                   "{\"\\u00e9\":1,\"a\\\"b\":2,\"\xc3\xa9\":3}");
    /* scalars are left as they are */
    CHECK_RESHAPED(",\"fields\":[\"id\"]", " \"text\" ", "\"text\"");
    CHECK_RESHAPED(",\"fields\":[\"id\"]", "{}", "{}");
}

static void test_rename(void)
{
    CHECK_RESHAPED(",\"rename\":{\"userId\":\"user_id\"}", "{\"id\":1,\"userId\":2}",
                   "{\"id\":1,\"user_id\":2}");
    CHECK_RESHAPED(",\"fields\":[\"userId\"],\"rename\":{\"userId\":\"user \\\"id\\\"\"}",
                   "[{\"id\":1,\"userId\":2},{\"userId\":3}]",
                   "[{\"user \\\"id\\\"\":2},{\"user \\\"id\\\"\":3}]");
    /* a renamed member replaces the one already named so, wherever it stands */
    CHECK_RESHAPED(",\"rename\":{\"a\":\"b\"}", "{\"b\":0,\"a\":1}", "{\"b\":1}");
    CHECK_RESHAPED(",\"rename\":{\"a\":\"b\"}", "{\"a\":1,\"b\":0}", "{\"b\":1}");
    /* ... but only when the object has the renamed key */
    CHECK_RESHAPED(",\"rename\":{\"a\":\"b\"}", "{\"b\":0}", "{\"b\":0}");
    /* renames apply together: a swap swaps */
    CHECK_RESHAPED(",\"rename\":{\"a\":\"b\",\"b\":\"a\"}", "{\"a\":1,\"b\":2,\"c\":3}",
                   "{\"b\":1,\"a\":2,\"c\":3}");
    CHECK_RESHAPED(",\"omit\":[\"x\"],\"rename\":{\"a\":\"x\"}", "{\"x\":0,\"a\":1}", "{\"x\":1}");
}

/* The result of a call: shaped in place, a failed select turns it into a failure. */
static void test_result(void)
{
    gd_config_t *cfg = NULL;
    const char *doc = "{\"a\":{\"b\":[1,2]}}";

    if (load(",\"select\":\"a.b\"", &cfg) != 0)
        gd__test_fail(__FILE__, __LINE__, "load: %s", err);
    const gd_reshape_conf_t *rs = cfg->endpoints[0].calls[0].reshape;
    gd_call_result_t r = {.outcome = GD_OUTCOME_OK, .body = gd_buf_new_copy(doc, strlen(doc))};
    gd_reshape_result(rs, &r);
    CHECK_INT_EQ(r.outcome, GD_OUTCOME_OK);
    CHECK_MEM_EQ(r.body->bytes, r.body->len, "[1,2]");
    gd_buf_unref(r.body);

    r = (gd_call_result_t){.outcome = GD_OUTCOME_OK, .body = gd_buf_new_copy("{}", 2)};
    gd_reshape_result(rs, &r);
    CHECK_INT_EQ(r.outcome, GD_OUTCOME_SELECT);
    CHECK(r.body == NULL);
    CHECK_STR_EQ(r.message, "\"select\": a.b found nothing in the result");

    /* a null_on null, a 204, is a document like any other; failures are left alone */
    r = (gd_call_result_t){.outcome = GD_OUTCOME_TIMEOUT};
    gd_reshape_result(rs, &r);
    CHECK_INT_EQ(r.outcome, GD_OUTCOME_TIMEOUT);

    /* no shaping: the very buffer stays */
    gd_buf_t *b = gd_buf_new_copy(doc, strlen(doc));
    r = (gd_call_result_t){.outcome = GD_OUTCOME_OK, .body = b};
    gd_reshape_result(NULL, &r);
    CHECK(r.body == b);
    gd_buf_unref(b);
    gd_config_free(cfg);
}

static void check_error(const char *keys, const char *want)
{
    gd_config_t *cfg = NULL;

    CHECK_INT_EQ(load(keys, &cfg), -EINVAL);
    if (strstr(err, want) == NULL)
        gd__test_fail(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", err, want);
}

static void test_config_errors(void)
{
    gd_config_t *cfg = NULL;

    check_error(",\"fields\":[\"a\"],\"omit\":[\"b\"]",
                "endpoints[0].calls.user.omit: a call has either \"fields\" or \"omit\", not both");
    check_error(",\"fields\":[]", "endpoints[0].calls.user.fields: an empty list");
    check_error(",\"omit\":[]", "endpoints[0].calls.user.omit: an empty list");
    check_error(",\"fields\":[\"a\",1]", "endpoints[0].calls.user.fields[1]: must be a string, "
                                         "not an integer");
    check_error(",\"fields\":\"a\"", "calls.user.fields: must be an array of key names");
    check_error(",\"fields\":[\"a\",\"a\"]", "calls.user.fields[1]: key \"a\" is listed twice");
    check_error(",\"select\":5", "calls.user.select: must be a string");
    check_error(",\"select\":\"\"", "calls.user.select: an empty path");
    check_error(",\"select\":\"a..b\"", "calls.user.select: \"a..b\": a field name");
    check_error(",\"select\":\"a[\"", "calls.user.select: \"a[\": ");
    check_error(",\"select\":\"a b\"", "calls.user.select: \"a b\": unexpected character");
    check_error(",\"select\":\".a\"", "calls.user.select: a path starts with a field name");
    check_error(",\"rename\":{}", "calls.user.rename: an empty object");
    check_error(",\"rename\":[]", "calls.user.rename: must be an object");
    check_error(",\"rename\":{\"a\":1}", "calls.user.rename.a: must be a string");
    check_error(",\"rename\":{\"a\":\"a\"}", "calls.user.rename.a: renames the key to itself");
    check_error(",\"rename\":{\"a\":\"c\",\"b\":\"c\"}",
                "calls.user.rename.b: renames to \"c\", which another key is renamed to too");
    check_error(",\"fields\":[\"a\"],\"rename\":{\"b\":\"c\"}",
                "calls.user.rename.b: renames a key that \"fields\" does not keep");
    check_error(",\"omit\":[\"b\"],\"rename\":{\"b\":\"c\"}",
                "calls.user.rename.b: renames a key that \"omit\" drops");
    check_error(",\"selects\":\"a\"", "calls.user.selects: unknown key");
    /* none of them: no shaping at all */
    CHECK_INT_EQ(load("", &cfg), 0);
    CHECK(cfg->endpoints[0].calls[0].reshape == NULL);
    gd_config_free(cfg);
}

const gd_test_case_t gd_test_cases[] = {
    {"select", test_select},
    {"select_finds_nothing", test_select_finds_nothing},
    {"fields_and_omit", test_fields_and_omit},
    {"rename", test_rename},
    {"result", test_result},
    {"config_errors", test_config_errors},
    {NULL, NULL},
};
