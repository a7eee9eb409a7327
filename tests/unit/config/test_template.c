#include "runner.h"

#include <errno.h>

#include "config/template.h"

/* Resolver for the tests: captures "id" (0) and "name" (1); any query parameter is 2, any
 * header 3. Records the last variable it saw. */
struct seen {
    gd_src_t src;
    char name[80];
    int calls;
};

static int resolve(void *ctx, gd_src_t src, const char *name, char *err, size_t errlen)
{
    struct seen *seen = ctx;

    seen->src = src;
    snprintf(seen->name, sizeof(seen->name), "%s", name);
    seen->calls++;
    switch (src) {
    case GD_SRC_PATH:
        if (strcmp(name, "id") == 0)
            return 0;
        if (strcmp(name, "name") == 0)
            return 1;
        snprintf(err, errlen, "no capture {%s}", name);
        return -1;
    case GD_SRC_QUERY:
        return 2;
    case GD_SRC_HEADER:
        return 3;
    case GD_SRC_JWT:
        return 4;
    case GD_SRC_CALL:
        return 5;
    case GD_SRC_ITEM:
        break; /* never given to a resolver: the config makes it */
    }
    return -1;
}

static void test_compile_literal(void)
{
    struct seen seen = {0};
    gd_template_t t;
    char err[128];

    CHECK_INT_EQ(gd_template_compile("/users/all", resolve, &seen, &t, err, sizeof(err)), 0);
    CHECK_INT_EQ(t.nparts, 1);
    CHECK(t.parts[0].is_literal);
    CHECK_STR_EQ(t.parts[0].literal, "/users/all");
    CHECK_INT_EQ(t.parts[0].literal_len, 10);
    CHECK_INT_EQ(seen.calls, 0);
    gd_template_dispose(&t);
    gd_template_dispose(&t); /* a disposed template is empty: disposing again is harmless */

    CHECK_INT_EQ(gd_template_compile("", resolve, &seen, &t, err, sizeof(err)), 0);
    CHECK_INT_EQ(t.nparts, 0);
    CHECK_INT_EQ(gd_template_expand(&t, NULL, NULL, 0), 0);
    gd_template_dispose(&t);
}

static void test_compile_vars(void)
{
    struct seen seen = {0};
    gd_template_t t;
    char err[128];

    CHECK_INT_EQ(
        gd_template_compile("/posts?userId={id}&limit={query.limit}&n={name}{header.X-Tenant}",
                            resolve, &seen, &t, err, sizeof(err)),
        0);
    CHECK_INT_EQ(t.nparts, 7);
    CHECK(t.parts[0].is_literal);
    CHECK_STR_EQ(t.parts[0].literal, "/posts?userId=");
    CHECK(!t.parts[1].is_literal);
    CHECK_INT_EQ(t.parts[1].value_index, 0);
    CHECK_STR_EQ(t.parts[2].literal, "&limit=");
    CHECK_INT_EQ(t.parts[3].value_index, 2);
    CHECK_STR_EQ(t.parts[4].literal, "&n=");
    CHECK_INT_EQ(t.parts[5].value_index, 1);
    CHECK(!t.parts[6].is_literal);
    CHECK_INT_EQ(t.parts[6].value_index, 3);
    /* Header names reach the resolver lower-cased. */
    CHECK_INT_EQ(seen.src, GD_SRC_HEADER);
    CHECK_STR_EQ(seen.name, "x-tenant");
    CHECK_INT_EQ(seen.calls, 4);
    gd_template_dispose(&t);
}

static void test_compile_sources(void)
{
    struct seen seen = {0};
    gd_template_t t;
    char err[128];

    CHECK_INT_EQ(gd_template_compile("{query.a.b-c_D}", resolve, &seen, &t, err, sizeof(err)), 0);
    CHECK_INT_EQ(seen.src, GD_SRC_QUERY);
    CHECK_STR_EQ(seen.name, "a.b-c_D"); /* query names keep their case */
    gd_template_dispose(&t);

    CHECK_INT_EQ(gd_template_compile("{jwt.Sub}", resolve, &seen, &t, err, sizeof(err)), 0);
    CHECK_INT_EQ(seen.src, GD_SRC_JWT);
    CHECK_STR_EQ(seen.name, "Sub"); /* claim names keep their case (RFC 7519 section 4) */
    CHECK_INT_EQ(t.parts[0].value_index, 4);
    gd_template_dispose(&t);

    CHECK_INT_EQ(gd_template_compile("{query}", resolve, &seen, &t, err, sizeof(err)), -EINVAL);
    CHECK_INT_EQ(seen.src, GD_SRC_PATH); /* no dot: a capture named "query" */
    CHECK_STR_EQ(seen.name, "query");
    CHECK_STR_EQ(err, "no capture {query}");

    /* Any other prefix is a path into a call's result, for the resolver to parse. */
    CHECK_INT_EQ(gd_template_compile("{headers.x}", resolve, &seen, &t, err, sizeof(err)), 0);
    CHECK_INT_EQ(seen.src, GD_SRC_CALL);
    CHECK_STR_EQ(seen.name, "headers.x");
    gd_template_dispose(&t);
    CHECK_INT_EQ(gd_template_compile("{user[\"k\"][0]}/{count(orders)}", resolve, &seen, &t, err,
                                     sizeof(err)),
                 0);
    CHECK_INT_EQ(seen.src, GD_SRC_CALL);
    CHECK_STR_EQ(seen.name, "count(orders)");
    CHECK_INT_EQ(t.nparts, 3);
    gd_template_dispose(&t);
}

static void test_compile_braces(void)
{
    struct seen seen = {0};
    gd_template_t t;
    char err[128], out[64];
    gd_strv_t values[] = {{"7", 1}};
    size_t n;

    CHECK_INT_EQ(gd_template_compile("/a{{b}}/{{{id}}}", resolve, &seen, &t, err, sizeof(err)), 0);
    CHECK_INT_EQ(t.nparts, 3);
    CHECK_STR_EQ(t.parts[0].literal, "/a{b}/{");
    CHECK_INT_EQ(t.parts[1].value_index, 0);
    CHECK_STR_EQ(t.parts[2].literal, "}");
    n = gd_template_expand(&t, values, out, sizeof(out));
    CHECK_MEM_EQ(out, n, "/a{b}/{7}");
    gd_template_dispose(&t);
}

static void check_compile_error(const char *src, const char *want)
{
    struct seen seen = {0};
    gd_template_t t = {(gd_template_part_t *)&seen, 42};
    char err[256];

    CHECK_INT_EQ(gd_template_compile(src, resolve, &seen, &t, err, sizeof(err)), -EINVAL);
    CHECK_STR_EQ(err, want);
    /* @ret is untouched on error. */
    CHECK(t.parts == (gd_template_part_t *)&seen);
    CHECK_INT_EQ(t.nparts, 42);
}

static void test_compile_errors(void)
{
    check_compile_error("/users/{id", "unbalanced \"{\" (write \"{{\" for a literal \"{\")");
    check_compile_error("/users/{", "unbalanced \"{\" (write \"{{\" for a literal \"{\")");
    check_compile_error("/users/id}", "unbalanced \"}\" (write \"}}\" for a literal \"}\")");
    check_compile_error("/a/{id}}", "unbalanced \"}\" (write \"}}\" for a literal \"}\")");
    check_compile_error("/users/{}", "empty variable name in \"{}\"");
    check_compile_error("/users/{query.}", "empty variable name in \"{query.}\"");
    check_compile_error("/users/{header.}", "empty variable name in \"{header.}\"");
    check_compile_error("/users/{a b}",
                        "bad variable name \"{a b}\" (a name is 1 to 64 of A-Z a-z 0-9 - _ .)");
    check_compile_error("/users/{a{b}",
                        "bad variable name \"{a{b}\" (a name is 1 to 64 of A-Z a-z 0-9 - _ .)");
    check_compile_error(
        "{query.a/b}",
        "bad variable name \"{query.a/b}\" (a name is 1 to 64 of A-Z a-z 0-9 - _ .)");
    check_compile_error("{a\nb}",
                        "bad variable name \"{a?b}\" (a name is 1 to 64 of A-Z a-z 0-9 - _ .)");
    check_compile_error("/users/{uid}", "no capture {uid}");
    /* The resolver is asked only after the syntax was checked, and its message is kept. */
    check_compile_error("/{id}/{nope}", "no capture {nope}");
}

static void test_compile_name_length(void)
{
    struct seen seen = {0};
    char src[128], err[256];
    gd_template_t t;

    /* 64 characters are allowed, 65 are not. */
    snprintf(src, sizeof(src), "{query.%064d}", 0);
    CHECK_INT_EQ(gd_template_compile(src, resolve, &seen, &t, err, sizeof(err)), 0);
    CHECK_INT_EQ(strlen(seen.name), 64);
    gd_template_dispose(&t);
    snprintf(src, sizeof(src), "{query.%065d}", 0);
    CHECK_INT_EQ(gd_template_compile(src, resolve, &seen, &t, err, sizeof(err)), -EINVAL);
    CHECK(strncmp(err, "bad variable name \"{query.000", 29) == 0);
}

/* Expands @src with @values into a buffer of exactly the needed size (so ASan sees overruns). */
static void check_expand(const char *src, const gd_strv_t *values, const char *want)
{
    struct seen seen = {0};
    gd_template_t t;
    char err[128], *buf;
    size_t need, n;

    CHECK_INT_EQ(gd_template_compile(src, resolve, &seen, &t, err, sizeof(err)), 0);
    need = gd_template_expand(&t, values, NULL, 0);
    CHECK_INT_EQ(need, strlen(want));
    CHECK(need <= gd_template_max_len(&t, values));
    buf = malloc(need + 1);
    CHECK(buf != NULL);
    n = gd_template_expand(&t, values, buf, need);
    CHECK_MEM_EQ(buf, n, want);
    free(buf);
    gd_template_dispose(&t);
}

static void test_expand_encodes(void)
{
    gd_strv_t v[4] = {{"../admin", 8}, {"x", 1}, {"a&b=c", 5}, {"acme corp", 9}};

    /* "/users/..%2Fadmin/profile" decoded as a capture is "../admin": it stays one segment. */
    check_expand("/users/{id}", v, "/users/..%2Fadmin");
    check_expand("/posts?userId={name}&q={query.q}", v, "/posts?userId=x&q=a%26b%3Dc");
    check_expand("{header.x-tenant}", v, "acme%20corp");
    check_expand("/{id}/{id}", v, "/..%2Fadmin/..%2Fadmin");
}

static void test_expand_dots_and_utf8(void)
{
    gd_strv_t dots[] = {{"..", 2}, {".", 1}, {"", 0}, {"\xc3\xa9t\xc3\xa9", 5}};

    check_expand("/users/{id}", dots, "/users/%2E%2E");
    check_expand("/users/{name}/x", dots, "/users/%2E/x");
    check_expand("/users/{query.x}/x", dots, "/users//x"); /* empty value: nothing */
    check_expand("/q?s={header.s}", dots, "/q?s=%C3%A9t%C3%A9");
}

static void test_expand_truncates(void)
{
    struct seen seen = {0};
    gd_strv_t v[] = {{"a b", 3}};
    gd_template_t t;
    char err[128], buf[16];
    size_t n;

    CHECK_INT_EQ(gd_template_compile("/x/{id}/y", resolve, &seen, &t, err, sizeof(err)), 0);
    CHECK_INT_EQ(gd_template_max_len(&t, v), 3 + 9 + 2);
    memset(buf, '#', sizeof(buf));
    /* The full length is returned; only @cap bytes are written, cut mid-escape if need be. */
    n = gd_template_expand(&t, v, buf, 5);
    CHECK_INT_EQ(n, 10);
    CHECK_MEM_EQ(buf, 6, "/x/a%#");
    n = gd_template_expand(&t, v, buf, 2);
    CHECK_INT_EQ(n, 10);
    CHECK_MEM_EQ(buf, 6, "/x/a%#");
    n = gd_template_expand(&t, v, buf, sizeof(buf));
    CHECK_MEM_EQ(buf, n, "/x/a%20b/y");
    gd_template_dispose(&t);
}

/* {env.NAME}: values read once; braces of a value are literal in a template; other braces kept. */
static void test_subst_env(void)
{
    char *out = NULL, err[256];
    size_t n = 9;

    CHECK_INT_EQ(setenv("GD_T_A", "x{y}z", 1), 0);
    CHECK_INT_EQ(setenv("GD_T_EMPTY", "", 1), 0);
    CHECK_INT_EQ(unsetenv("GD_T_UNSET"), 0);
    CHECK_INT_EQ(
        gd_template_subst_env("a{env.GD_T_A}b{id}{{env.GD_T_A}}", true, &out, &n, err, sizeof(err)),
        0);
    CHECK_STR_EQ(out, "ax{{y}}zb{id}{{env.GD_T_A}}");
    CHECK_INT_EQ(n, 1);
    free(out);
    CHECK_INT_EQ(gd_template_subst_env("p={a}{env.GD_T_A}{env.GD_T_EMPTY}", false, &out, &n, err,
                                       sizeof(err)),
                 0);
    CHECK_STR_EQ(out, "p={a}x{y}z");
    CHECK_INT_EQ(n, 2);
    free(out);
    CHECK_INT_EQ(gd_template_subst_env("none", false, &out, &n, err, sizeof(err)), 0);
    CHECK_STR_EQ(out, "none");
    CHECK_INT_EQ(n, 0);
    free(out);
    out = NULL;
    CHECK_INT_EQ(gd_template_subst_env("{env.GD_T_UNSET}", true, &out, &n, err, sizeof(err)),
                 -EINVAL);
    CHECK_STR_EQ(err,
                 "environment variable GD_T_UNSET is not set (referenced as {env.GD_T_UNSET})");
    CHECK(out == NULL);
    CHECK_INT_EQ(gd_template_subst_env("{env.A-B}", true, &out, &n, err, sizeof(err)), -EINVAL);
    CHECK_STR_EQ(err, "bad environment variable reference \"{env.A-B}\" (a name is 1 to 128 of "
                      "A-Z a-z 0-9 _, not starting with a digit, and \"}\" ends it)");
    CHECK_INT_EQ(gd_template_subst_env("{env.A", true, &out, &n, err, sizeof(err)), -EINVAL);
    CHECK_INT_EQ(gd_template_subst_env("{env.}", true, &out, &n, err, sizeof(err)), -EINVAL);
}

const gd_test_case_t gd_test_cases[] = {
    {"subst_env", test_subst_env},
    {"compile_literal", test_compile_literal},
    {"compile_vars", test_compile_vars},
    {"compile_sources", test_compile_sources},
    {"compile_braces", test_compile_braces},
    {"compile_errors", test_compile_errors},
    {"compile_name_length", test_compile_name_length},
    {"expand_encodes", test_expand_encodes},
    {"expand_dots_and_utf8", test_expand_dots_and_utf8},
    {"expand_truncates", test_expand_truncates},
    {NULL, NULL},
};
