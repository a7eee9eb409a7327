#include "runner.h"

#include <errno.h>

#include "front/route.h"
#include "base/util.h"

/* An endpoint for load_routes(): its method and path, and the path of its only call. */
struct route_def {
    const char *method;
    const char *path;
    const char *call_path; /* NULL: "/x" */
};

/* Endpoints in an order that does not follow precedence. */
static const struct route_def routes[] = {
    {"GET", "/users/{id}", NULL},                  /* 0 */
    {"POST", "/users/{id}", NULL},                 /* 1 */
    {"DELETE", "/users/me", NULL},                 /* 2 */
    {"GET", "/users/me", NULL},                    /* 3 */
    {"GET", "/users/{id}/profile", "/users/{id}"}, /* 4 */
    {"GET", "/{a}/me/x", NULL},                    /* 5 */
    {"GET", "/users/{id}/x", NULL},                /* 6 */
    {"GET", "/", NULL},                            /* 7 */
    {"GET", "/items/", NULL},                      /* 8 */
    {"GET", "/a//b", NULL},                        /* 9 */
    {"GET", "/files/{name}", NULL},                /* 10 */
    {"GET", "/users/{id}/posts/{post}", NULL},     /* 11 */
    {"GET", "/{x}/{y}", NULL},                     /* 12 */
    {"PUT", "/{x}/me", NULL},                      /* 13 */
    {"GET", "/caf%C3%A9", NULL},                   /* 14 */
};

static char *dq(const char *s)
{
    char *d = strdup(s);

    CHECK(d != NULL);
    for (char *p = d; *p != '\0'; p++)
        if (*p == '\'')
            *p = '"';
    return d;
}

static gd_config_t *load(const char *json)
{
    gd_config_t *cfg = NULL;
    char *text = dq(json), err[512];
    int r = gd_config_load_string(text, "test.json", &cfg, err, sizeof(err));

    free(text);
    if (r != 0)
        gd__test_fail(__FILE__, __LINE__, "config: %s", err);
    return cfg;
}

/* Loads a config with the endpoints @defs, in this order. */
static gd_config_t *load_routes(const struct route_def *defs, size_t n)
{
    char json[8192];
    size_t len = 0;

    len += (size_t)snprintf(json + len, sizeof(json) - len,
                            "{'listen':['*:8080'],'upstreams':{'u':{'url':'http://127.0.0.1:1'}},"
                            "'endpoints':[");
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(json + len, sizeof(json) - len,
                                "%s{'method':'%s','path':'%s',"
                                "'calls':{'c':{'upstream':'u','path':'%s'}}}",
                                i > 0 ? "," : "", defs[i].method, defs[i].path,
                                defs[i].call_path != NULL ? defs[i].call_path : "/x");
    }
    CHECK(len + 3 <= sizeof(json));
    snprintf(json + len, sizeof(json) - len, "]}");
    return load(json);
}

/* The result of one gd_router_match() call, with every buffer sized exactly. */
struct match {
    int r;
    const gd_endpoint_conf_t *ep;
    gd_strv_t captures[GD_ROUTE_MAX_CAPTURES];
    char allow[64];
    char *scratch;
};

static void match_n(const gd_router_t *router, const char *method, const char *path,
                    size_t allowlen, struct match *m)
{
    size_t len = strlen(path);
    char *copy = malloc(len > 0 ? len : 1); /* not NUL-terminated: ASan sees overreads */

    CHECK(copy != NULL);
    memcpy(copy, path, len);
    free(m->scratch);
    memset(m, 0, sizeof(*m));
    memset(m->allow, '#', sizeof(m->allow));
    m->scratch = malloc(len > 0 ? len : 1);
    CHECK(m->scratch != NULL);
    m->ep = (const gd_endpoint_conf_t *)m; /* a sentinel: written only on success */
    m->r = gd_router_match(router, method, strlen(method), copy, len, m->scratch, m->captures,
                           &m->ep, m->allow, allowlen);
    free(copy);
}

static void match(const gd_router_t *router, const char *method, const char *path, struct match *m)
{
    match_n(router, method, path, sizeof(m->allow), m);
}

#define CHECK_MATCH(m, want)                                                                       \
    do {                                                                                           \
        CHECK_INT_EQ((m)->r, 0);                                                                   \
        CHECK_INT_EQ((m)->ep->index, (want));                                                      \
    } while (0)

#define CHECK_NO_MATCH(m)                                                                          \
    do {                                                                                           \
        CHECK_INT_EQ((m)->r, GD_ROUTE_NO_MATCH);                                                   \
        CHECK((m)->ep == (const gd_endpoint_conf_t *)(m));                                         \
    } while (0)

static void test_literal_beats_capture(void)
{
    gd_config_t *cfg = load_routes(routes, GD_ARRAY_SIZE(routes));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    match(router, "GET", "/users/me", &m);
    CHECK_MATCH(&m, 3);
    match(router, "GET", "/users/42", &m);
    CHECK_MATCH(&m, 0);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "42");
    /* From the left: "users" (literal) decides before "me" does. */
    match(router, "GET", "/users/me/x", &m);
    CHECK_MATCH(&m, 6);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "me");
    match(router, "GET", "/other/me/x", &m);
    CHECK_MATCH(&m, 5);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "other");
    match(router, "GET", "/users/7/posts/9", &m);
    CHECK_MATCH(&m, 11);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "7");
    CHECK_MEM_EQ(m.captures[1].base, m.captures[1].len, "9");
    match(router, "GET", "/x/y", &m);
    CHECK_MATCH(&m, 12);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "x");
    CHECK_MEM_EQ(m.captures[1].base, m.captures[1].len, "y");
    match(router, "GET", "/users/profile", &m);
    CHECK_MATCH(&m, 0); /* "users" literal beats {x} of endpoint 12 */

    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

static void test_precedence_ignores_config_order(void)
{
    /* Some of the routes above, the other way round. */
    static const struct route_def reversed[] = {
        {"GET", "/{x}/{y}", NULL},  {"GET", "/users/{id}/x", NULL}, {"GET", "/{a}/me/x", NULL},
        {"GET", "/users/me", NULL}, {"GET", "/users/{id}", NULL},
    };
    gd_config_t *cfg = load_routes(reversed, GD_ARRAY_SIZE(reversed));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    match(router, "GET", "/users/me", &m);
    CHECK_MATCH(&m, 3);
    match(router, "GET", "/users/42", &m);
    CHECK_MATCH(&m, 4);
    match(router, "GET", "/users/me/x", &m);
    CHECK_MATCH(&m, 1);
    match(router, "GET", "/other/me/x", &m);
    CHECK_MATCH(&m, 2);
    match(router, "GET", "/other/42", &m);
    CHECK_MATCH(&m, 0);

    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

static void test_method_selects_among_matches(void)
{
    gd_config_t *cfg = load_routes(routes, GD_ARRAY_SIZE(routes));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    /* Only endpoints with the request's method compete: POST /users/me is POST /users/{id}. */
    match(router, "POST", "/users/me", &m);
    CHECK_MATCH(&m, 1);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "me");
    match(router, "DELETE", "/users/me", &m);
    CHECK_MATCH(&m, 2);
    match(router, "PUT", "/users/me", &m);
    CHECK_MATCH(&m, 13);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "users");
    match(router, "HEAD", "/users/me", &m); /* methods are exact: no HEAD for GET */
    CHECK_INT_EQ(m.r, GD_ROUTE_BAD_METHOD);

    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

static void test_bad_method_allow(void)
{
    gd_config_t *cfg = load_routes(routes, GD_ARRAY_SIZE(routes));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    /* Every endpoint whose path matches, in config order, each method once. */
    match(router, "PATCH", "/users/me", &m);
    CHECK_INT_EQ(m.r, GD_ROUTE_BAD_METHOD);
    CHECK(m.ep == (const gd_endpoint_conf_t *)&m);
    CHECK_STR_EQ(m.allow, "GET, POST, DELETE, PUT");
    match(router, "DELETE", "/users/42", &m);
    CHECK_INT_EQ(m.r, GD_ROUTE_BAD_METHOD);
    CHECK_STR_EQ(m.allow, "GET, POST");
    match(router, "get", "/users/42", &m); /* methods are case-sensitive */
    CHECK_INT_EQ(m.r, GD_ROUTE_BAD_METHOD);
    CHECK_STR_EQ(m.allow, "GET, POST");
    match(router, "POST", "/", &m);
    CHECK_INT_EQ(m.r, GD_ROUTE_BAD_METHOD);
    CHECK_STR_EQ(m.allow, "GET");
    match(router, "GE", "/users/42", &m);
    CHECK_INT_EQ(m.r, GD_ROUTE_BAD_METHOD);
    match(router, "GETX", "/users/42", &m);
    CHECK_INT_EQ(m.r, GD_ROUTE_BAD_METHOD);

    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

static void test_allow_truncation(void)
{
    gd_config_t *cfg = load_routes(routes, GD_ARRAY_SIZE(routes));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    /* Whole methods only: what does not fit is left off. */
    match_n(router, "PATCH", "/users/me", 10, &m);
    CHECK_INT_EQ(m.r, GD_ROUTE_BAD_METHOD);
    CHECK_STR_EQ(m.allow, "GET, POST");
    CHECK_INT_EQ(m.allow[10], '#');
    match_n(router, "PATCH", "/users/me", 9, &m);
    CHECK_STR_EQ(m.allow, "GET");
    match_n(router, "PATCH", "/users/me", 3, &m);
    CHECK_STR_EQ(m.allow, "");
    match_n(router, "PATCH", "/users/me", 1, &m);
    CHECK_STR_EQ(m.allow, "");
    match_n(router, "PATCH", "/users/me", 0, &m);
    CHECK_INT_EQ(m.r, GD_ROUTE_BAD_METHOD);
    CHECK_INT_EQ(m.allow[0], '#');

    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

static void test_no_match(void)
{
    gd_config_t *cfg = load_routes(routes, GD_ARRAY_SIZE(routes));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    match(router, "GET", "/nope/a/b", &m);
    CHECK_NO_MATCH(&m);
    match(router, "GET", "/users/1/profile/extra", &m);
    CHECK_NO_MATCH(&m);
    match(router, "GET", "/a/b/c/d/e/f/g/h", &m); /* more segments than any endpoint */
    CHECK_NO_MATCH(&m);
    match(router, "GET", "", &m);
    CHECK_NO_MATCH(&m);
    match(router, "GET", "users/1", &m);
    CHECK_NO_MATCH(&m);
    match(router, "OPTIONS", "*", &m);
    CHECK_NO_MATCH(&m);
    /* Literals are compared raw, never decoded. */
    match(router, "GET", "/us%65rs/1/profile", &m);
    CHECK_NO_MATCH(&m);
    match(router, "GET", "/caf%C3%A9", &m);
    CHECK_MATCH(&m, 14);
    match(router, "GET", "/caf%c3%a9", &m);
    CHECK_NO_MATCH(&m);
    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

static void test_empty_segments(void)
{
    gd_config_t *cfg = load_routes(routes, GD_ARRAY_SIZE(routes));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    match(router, "GET", "/", &m);
    CHECK_MATCH(&m, 7);
    match(router, "GET", "/items/", &m);
    CHECK_MATCH(&m, 8);
    match(router, "GET", "/items", &m);
    CHECK_NO_MATCH(&m);
    /* A trailing slash matches only a pattern that has one. */
    match(router, "GET", "/users/42/", &m);
    CHECK_NO_MATCH(&m);
    match(router, "GET", "/users/me/", &m);
    CHECK_NO_MATCH(&m);
    /* So does an empty segment, and a capture never takes one. */
    match(router, "GET", "/a//b", &m);
    CHECK_MATCH(&m, 9);
    match(router, "GET", "/a/b", &m);
    CHECK_MATCH(&m, 12);
    match(router, "GET", "/users//profile", &m);
    CHECK_NO_MATCH(&m);
    match(router, "GET", "//", &m);
    CHECK_NO_MATCH(&m);
    match(router, "GET", "//me", &m);
    CHECK_NO_MATCH(&m);

    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

static void test_capture_decoding(void)
{
    gd_config_t *cfg = load_routes(routes, GD_ARRAY_SIZE(routes));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    match(router, "GET", "/users/..%2Fadmin/profile", &m);
    CHECK_MATCH(&m, 4);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "../admin");
    match(router, "GET", "/users/%2E%2E/profile", &m);
    CHECK_MATCH(&m, 4);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "..");
    match(router, "GET", "/files/a+b%20c", &m);
    CHECK_MATCH(&m, 10);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "a+b c"); /* '+' is no space in paths */
    match(router, "GET", "/files/caf%C3%A9", &m);
    CHECK_MATCH(&m, 10);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "caf\xc3\xa9");
    match(router, "GET", "/users/%E2%9C%93/posts/%2F%2F", &m);
    CHECK_MATCH(&m, 11);
    CHECK_MEM_EQ(m.captures[0].base, m.captures[0].len, "\xe2\x9c\x93");
    CHECK_MEM_EQ(m.captures[1].base, m.captures[1].len, "//");
    CHECK(m.captures[1].base == m.captures[0].base + 3); /* packed in the scratch buffer */
    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

static void test_capture_decoding_errors(void)
{
    gd_config_t *cfg = load_routes(routes, GD_ARRAY_SIZE(routes));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    match(router, "GET", "/files/%zz", &m);
    CHECK_INT_EQ(m.r, -EINVAL);
    CHECK(m.ep == (const gd_endpoint_conf_t *)&m);
    match(router, "GET", "/files/a%00b", &m);
    CHECK_INT_EQ(m.r, -EINVAL);
    match(router, "GET", "/files/%", &m);
    CHECK_INT_EQ(m.r, -EINVAL);
    match(router, "GET", "/files/%4", &m);
    CHECK_INT_EQ(m.r, -EINVAL);
    match(router, "GET", "/users/1/posts/%G0", &m);
    CHECK_INT_EQ(m.r, -EINVAL);
    CHECK_INT_EQ(m.captures[0].len, 0); /* nothing written on error */
    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

static void test_empty_router(void)
{
    gd_config_t *cfg = load("{'listen':['*:1'],'upstreams':{},'endpoints':[]}");
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};

    match(router, "GET", "/", &m);
    CHECK_NO_MATCH(&m);
    free(m.scratch);
    CHECK(gd_router_free(router) == NULL);
    CHECK(gd_router_free(NULL) == NULL);
    gd_config_free(cfg);
}

/* Looks @name up in @query (copied to an exact-size buffer). Returns the result; the value
 * goes to @out as a NUL-terminated string. */
static long find(const char *query, const char *name, char out[128])
{
    size_t len = strlen(query);
    char *copy = malloc(len > 0 ? len : 1), *dec = malloc(len > 0 ? len : 1);
    long n;

    CHECK(copy != NULL && dec != NULL);
    memcpy(copy, query, len);
    n = gd_query_find(copy, len, name, dec);
    out[0] = '\0';
    if (n >= 0) {
        memcpy(out, dec, (size_t)n);
        out[n] = '\0';
    }
    free(copy);
    free(dec);
    return n;
}

static void test_query_find(void)
{
    char out[128];

    CHECK_INT_EQ(find("a=1&b=22&c=3", "b", out), 2);
    CHECK_STR_EQ(out, "22");
    CHECK_INT_EQ(find("a=1&b=22&c=3", "a", out), 1);
    CHECK_STR_EQ(out, "1");
    CHECK_INT_EQ(find("a=1&b=22&c=3", "c", out), 1);
    CHECK_STR_EQ(out, "3");
    CHECK_INT_EQ(find("a=1&b=22", "d", out), -1);
    CHECK_INT_EQ(find("", "a", out), -1);
    CHECK_INT_EQ(gd_query_find(NULL, 0, "a", NULL), -1);
    /* First occurrence wins. */
    CHECK_INT_EQ(find("a=1&a=2", "a", out), 1);
    CHECK_STR_EQ(out, "1");
    /* No '=' or nothing after it: present and empty. */
    CHECK_INT_EQ(find("flag&x=1", "flag", out), 0);
    CHECK_INT_EQ(find("x=1&flag", "flag", out), 0);
    CHECK_INT_EQ(find("flag=", "flag", out), 0);
    /* Whole names only. */
    CHECK_INT_EQ(find("ab=1&b=2", "a", out), -1);
    CHECK_INT_EQ(find("ab=1&b=2", "b", out), 1);
    CHECK_STR_EQ(out, "2");
    CHECK_INT_EQ(find("a=1", "ab", out), -1);
    /* Empty pairs are skipped; an empty name is a name like any other. */
    CHECK_INT_EQ(find("&&a=1&", "a", out), 1);
    CHECK_INT_EQ(find("=x&a=1", "a", out), 1);
    /* Values are decoded, '+' as space; '=' after the first belongs to the value. */
    CHECK_INT_EQ(find("q=a+b%26c%3Dd&x=1", "q", out), 7);
    CHECK_STR_EQ(out, "a b&c=d");
    CHECK_INT_EQ(find("q=a=b", "q", out), 3);
    CHECK_STR_EQ(out, "a=b");
    CHECK_INT_EQ(find("q=%C3%A9", "q", out), 2);
    CHECK_STR_EQ(out, "\xc3\xa9");
    /* Names are compared raw. */
    CHECK_INT_EQ(find("%61=1", "a", out), -1);
    CHECK_INT_EQ(find("a.b=1", "a.b", out), 1);
    /* Malformed values. */
    CHECK_INT_EQ(find("q=%zz", "q", out), -2);
    CHECK_INT_EQ(find("q=%00", "q", out), -2);
    CHECK_INT_EQ(find("q=%", "q", out), -2);
    CHECK_INT_EQ(find("q=%zz&q=1", "q", out), -2); /* the first occurrence decides */
    CHECK_INT_EQ(find("x=%zz&q=1", "q", out), 1);  /* other pairs are not decoded */
}

static const char params_json[] =
    "{'listen':['*:8080'],'upstreams':{'u':{'url':'http://127.0.0.1:1'}},'endpoints':["
    "{'path':'/users/{id}/profile','params':{"
    "  'id':'int',"
    "  'query.limit':{'type':'int','required':false,'default':'10'},"
    "  'header.X-Tenant':{'pattern':'[a-z0-9-]{1,32}','required':true},"
    "  'query.sort':{'pattern':'asc|desc'},"
    "  'query.need':{'required':true}},"
    " 'calls':{'user':{'upstream':'u','path':'/users/{id}?q={query.q}&limit={query.limit}',"
    "                  'headers':{'x-trace':'{header.x-trace}'}}}},"
    "{'path':'/long',"
    " 'params':{'header.x-long':{'pattern':'[a-z]+'},'query.v':{'pattern':'[a-z]*'}},"
    " 'calls':{'c':{'upstream':'u','path':'/x'}}}"
    "]}";

enum { P_ID, P_LIMIT, P_TENANT, P_SORT, P_NEED, P_Q, P_TRACE, P_COUNT };

struct extract {
    int r;
    char err[256];
    gd_strv_t values[P_COUNT];
    char *scratch;
    char *copies[8];
    size_t ncopies;
};

static const char *copy_exact(struct extract *x, const char *s, size_t len)
{
    char *c = malloc(len > 0 ? len : 1);

    CHECK(c != NULL && x->ncopies < GD_ARRAY_SIZE(x->copies));
    memcpy(c, s, len);
    x->copies[x->ncopies++] = c;
    return c;
}

static void extract_done(struct extract *x)
{
    for (size_t i = 0; i < x->ncopies; i++)
        free(x->copies[i]);
    free(x->scratch);
    memset(x, 0, sizeof(*x));
}

/* Runs gd_route_extract_params() for endpoint @ep with capture @id, @query and up to two
 * headers given as "name", "value" pairs (NULL: none); every input in an exact-size buffer. */
static void extract(const gd_endpoint_conf_t *ep, const char *id, const char *query, const char *h1,
                    const char *v1, size_t v1_len, const char *h2, const char *v2,
                    struct extract *x)
{
    gd_strv_t capture = {NULL, 0};
    gd_header_view_t headers[2];
    size_t nheaders = 0, qlen = strlen(query);
    const char *q;

    extract_done(x);
    CHECK(ep->nparams <= P_COUNT);
    if (id != NULL) {
        capture.base = copy_exact(x, id, strlen(id));
        capture.len = strlen(id);
    }
    q = qlen > 0 ? copy_exact(x, query, qlen) : NULL;
    if (h1 != NULL) {
        headers[nheaders].name = (gd_strv_t){copy_exact(x, h1, strlen(h1)), strlen(h1)};
        headers[nheaders++].value = (gd_strv_t){copy_exact(x, v1, v1_len), v1_len};
    }
    if (h2 != NULL) {
        headers[nheaders].name = (gd_strv_t){copy_exact(x, h2, strlen(h2)), strlen(h2)};
        headers[nheaders++].value = (gd_strv_t){copy_exact(x, v2, strlen(v2)), strlen(v2)};
    }
    x->scratch = qlen > 0 ? malloc(qlen) : NULL;
    x->r = gd_route_extract_params(ep, &capture, q, qlen, headers, nheaders, x->scratch, x->values,
                                   x->err, sizeof(x->err));
}

/* The common case: at most header x-tenant. */
#define EXTRACT(ep, id, query, tenant, x) extract_tenant((ep), (id), (query), (tenant), (x))

static void extract_tenant(const gd_endpoint_conf_t *ep, const char *id, const char *query,
                           const char *tenant, struct extract *x)
{
    if (tenant == NULL)
        extract(ep, id, query, NULL, NULL, 0, NULL, NULL, x);
    else
        extract(ep, id, query, "x-tenant", tenant, strlen(tenant), NULL, NULL, x);
}

#define CHECK_VALUE(x, i, want) CHECK_MEM_EQ((x)->values[i].base, (x)->values[i].len, (want))

#define CHECK_EXTRACT_ERR(x, want)                                                                 \
    do {                                                                                           \
        CHECK_INT_EQ((x)->r, -EINVAL);                                                             \
        CHECK_STR_EQ((x)->err, (want));                                                            \
    } while (0)

static void test_extract_params(void)
{
    gd_config_t *cfg = load(params_json);
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];
    struct extract x = {0};

    CHECK_INT_EQ(ep->nparams, P_COUNT);
    CHECK_STR_EQ(ep->params[P_Q].name, "query.q");
    CHECK_STR_EQ(ep->params[P_TRACE].name, "header.x-trace");

    extract(ep, "42", "need=1&limit=5&sort=asc&q=a+b%26c", "x-tenant", "acme-1", 6, "x-trace",
            "t\t1", &x);
    CHECK_INT_EQ(x.r, 0);
    CHECK_VALUE(&x, P_ID, "42");
    CHECK_VALUE(&x, P_LIMIT, "5");
    CHECK_VALUE(&x, P_TENANT, "acme-1");
    CHECK_VALUE(&x, P_SORT, "asc");
    CHECK_VALUE(&x, P_NEED, "1");
    CHECK_VALUE(&x, P_Q, "a b&c");
    CHECK_VALUE(&x, P_TRACE, "t\t1"); /* header values as they are; a tab is no control char */

    /* Absent optional values: the default, or "" without one. Present but empty: "". */
    EXTRACT(ep, "-7", "need=", "acme", &x);
    CHECK_INT_EQ(x.r, 0);
    CHECK_VALUE(&x, P_ID, "-7");
    CHECK_VALUE(&x, P_LIMIT, "10");
    CHECK_VALUE(&x, P_SORT, "");
    CHECK_VALUE(&x, P_NEED, "");
    CHECK_VALUE(&x, P_Q, "");
    CHECK_VALUE(&x, P_TRACE, "");

    /* Decoded before the pattern check. */
    EXTRACT(ep, "1", "need&sort=%61sc", "acme", &x);
    CHECK_INT_EQ(x.r, 0);
    CHECK_VALUE(&x, P_SORT, "asc");

    /* The first header wins, like the first query parameter. */
    extract(ep, "1", "need", "x-tenant", "acme", 4, "x-tenant", "NOT OK", &x);
    CHECK_INT_EQ(x.r, 0);
    CHECK_VALUE(&x, P_TENANT, "acme");

    extract_done(&x);
    gd_config_free(cfg);
}

static void test_extract_int(void)
{
    static const char *const good[] = {
        "0", "-0", "007", "9223372036854775807", "-9223372036854775808", "0000000000000000001"};
    static const char *const bad[] = {"",
                                      "-",
                                      "+1",
                                      "1.0",
                                      "1e3",
                                      " 1",
                                      "1 ",
                                      "0x10",
                                      "abc",
                                      "9223372036854775808",
                                      "-9223372036854775809",
                                      "99999999999999999999",
                                      "00000000000000000001",
                                      "--1"};
    gd_config_t *cfg = load(params_json);
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];
    struct extract x = {0};
    char query[64];

    for (size_t i = 0; i < GD_ARRAY_SIZE(good); i++) {
        EXTRACT(ep, good[i], "need", "acme", &x);
        CHECK_INT_EQ(x.r, 0);
        CHECK_VALUE(&x, P_ID, good[i]);
        snprintf(query, sizeof(query), "need&limit=%s", good[i]);
        EXTRACT(ep, "1", query, "acme", &x);
        CHECK_INT_EQ(x.r, 0);
        CHECK_VALUE(&x, P_LIMIT, good[i]);
    }
    for (size_t i = 0; i < GD_ARRAY_SIZE(bad); i++) {
        if (bad[i][0] != '\0') { /* a capture is never empty */
            EXTRACT(ep, bad[i], "need", "acme", &x);
            CHECK_EXTRACT_ERR(&x, "parameter \"id\" must be an integer");
        }
        snprintf(query, sizeof(query), "need&limit=%s", bad[i]);
        EXTRACT(ep, "1", query, "acme", &x);
        CHECK_EXTRACT_ERR(&x, "parameter \"query.limit\" must be an integer");
    }
    /* "+" decodes to a space in a query. */
    EXTRACT(ep, "1", "need&limit=+1", "acme", &x);
    CHECK_EXTRACT_ERR(&x, "parameter \"query.limit\" must be an integer");
    EXTRACT(ep, "1", "need&limit=%2D1", "acme", &x);
    CHECK_INT_EQ(x.r, 0);
    CHECK_VALUE(&x, P_LIMIT, "-1");

    extract_done(&x);
    gd_config_free(cfg);
}

static void test_extract_errors(void)
{
    gd_config_t *cfg = load(params_json);
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];
    struct extract x = {0};

    EXTRACT(ep, "1", "limit=1", "acme", &x);
    CHECK_EXTRACT_ERR(&x, "missing required parameter \"query.need\"");
    EXTRACT(ep, "1", "", "acme", &x);
    CHECK_EXTRACT_ERR(&x, "missing required parameter \"query.need\"");
    EXTRACT(ep, "1", "need", NULL, &x);
    CHECK_EXTRACT_ERR(&x, "missing required parameter \"header.x-tenant\"");
    EXTRACT(ep, "1", "need", "ACME", &x);
    CHECK_EXTRACT_ERR(&x, "parameter \"header.x-tenant\" must match the pattern "
                          "\"[a-z0-9-]{1,32}\"");
    EXTRACT(ep, "1", "need", "", &x);
    CHECK_EXTRACT_ERR(&x, "parameter \"header.x-tenant\" must match the pattern "
                          "\"[a-z0-9-]{1,32}\"");
    EXTRACT(ep, "1", "need", "abcdefghijklmnopqrstuvwxyz0123456", &x); /* 33 characters */
    CHECK_EXTRACT_ERR(&x, "parameter \"header.x-tenant\" must match the pattern "
                          "\"[a-z0-9-]{1,32}\"");
    EXTRACT(ep, "1", "need&sort=up", "acme", &x);
    CHECK_EXTRACT_ERR(&x, "parameter \"query.sort\" must match the pattern \"asc|desc\"");
    EXTRACT(ep, "1", "need&sort=ascdesc", "acme", &x);
    CHECK_EXTRACT_ERR(&x, "parameter \"query.sort\" must match the pattern \"asc|desc\"");
    EXTRACT(ep, "1", "need&limit=%zz", "acme", &x);
    CHECK_EXTRACT_ERR(&x, "parameter \"query.limit\" is not properly percent-encoded");
    EXTRACT(ep, "1", "need&q=%00", "acme", &x);
    CHECK_EXTRACT_ERR(&x, "parameter \"query.q\" is not properly percent-encoded");

    /* Control characters in a header a parameter uses: any but tab, and DEL. */
    extract(ep, "1", "need", "x-tenant", "ac\x01me", 5, NULL, NULL, &x);
    CHECK_EXTRACT_ERR(&x, "header \"x-tenant\" contains a control character");
    extract(ep, "1", "need", "x-tenant", "acme\x7f", 5, NULL, NULL, &x);
    CHECK_EXTRACT_ERR(&x, "header \"x-tenant\" contains a control character");
    extract(ep, "1", "need", "x-tenant", "ac\0me", 5, NULL, NULL, &x);
    CHECK_EXTRACT_ERR(&x, "header \"x-tenant\" contains a control character");
    extract(ep, "1", "need", "x-tenant", "acme", 4, "x-trace", "a\r\nb", &x);
    CHECK_EXTRACT_ERR(&x, "header \"x-trace\" contains a control character");
    /* A header no parameter uses is not looked at. */
    extract(ep, "1", "need", "x-tenant", "acme", 4, "x-other", "a\r\nb", &x);
    CHECK_INT_EQ(x.r, 0);

    extract_done(&x);
    gd_config_free(cfg);
}

static void test_extract_long_pattern_value(void)
{
    gd_config_t *cfg = load(params_json);
    const gd_endpoint_conf_t *ep = &cfg->endpoints[1];
    struct extract x = {0};
    char value[2000], query[2100];

    /* Longer than the stack copy: the value is copied to the heap for regexec(). */
    memset(value, 'a', sizeof(value));
    extract(ep, NULL, "", "x-long", value, sizeof(value), NULL, NULL, &x);
    CHECK_INT_EQ(x.r, 0);
    CHECK_INT_EQ(x.values[0].len, sizeof(value));
    value[sizeof(value) - 1] = 'B';
    extract(ep, NULL, "", "x-long", value, sizeof(value), NULL, NULL, &x);
    CHECK_EXTRACT_ERR(&x, "parameter \"header.x-long\" must match the pattern \"[a-z]+\"");
    /* Exactly at the boundary of the stack copy. */
    extract(ep, NULL, "", "x-long", value, 255, NULL, NULL, &x);
    CHECK_INT_EQ(x.r, 0);
    extract(ep, NULL, "", "x-long", value, 256, NULL, NULL, &x);
    CHECK_INT_EQ(x.r, 0);

    /* A raw NUL byte in a query value (HTTP parsers refuse it) cannot hide the rest. */
    memcpy(query, "v=ab\0CD", 7);
    query[7] = '\0';
    {
        char *q = malloc(7), *scratch = malloc(7);
        gd_strv_t values[2];
        char err[128];
        gd_header_view_t h = {{"x-long", 6}, {"a", 1}};

        CHECK(q != NULL && scratch != NULL);
        memcpy(q, query, 7);
        CHECK_INT_EQ(
            gd_route_extract_params(ep, NULL, q, 7, &h, 1, scratch, values, err, sizeof(err)),
            -EINVAL);
        CHECK_STR_EQ(err, "parameter \"query.v\" must match the pattern \"[a-z]*\"");
        free(q);
        free(scratch);
    }

    extract_done(&x);
    gd_config_free(cfg);
}

static void test_end_to_end_encoding(void)
{
    /* A client's "/users/..%2Fadmin/profile" reaches the upstream as one segment. */
    gd_config_t *cfg = load_routes(routes, GD_ARRAY_SIZE(routes));
    gd_router_t *router = gd_router_new(cfg);
    struct match m = {0};
    gd_strv_t values[1];
    char err[128], out[64];
    size_t n;

    match(router, "GET", "/users/..%2Fadmin/profile", &m);
    CHECK_MATCH(&m, 4);
    CHECK_INT_EQ(m.ep->nparams, 1);
    CHECK_INT_EQ(
        gd_route_extract_params(m.ep, m.captures, NULL, 0, NULL, 0, NULL, values, err, sizeof(err)),
        0);
    n = gd_template_expand(&m.ep->calls[0].path, values, out, sizeof(out));
    CHECK_MEM_EQ(out, n, "/users/..%2Fadmin");

    match(router, "GET", "/users/../profile", &m);
    CHECK_MATCH(&m, 4);
    CHECK_INT_EQ(
        gd_route_extract_params(m.ep, m.captures, NULL, 0, NULL, 0, NULL, values, err, sizeof(err)),
        0);
    n = gd_template_expand(&m.ep->calls[0].path, values, out, sizeof(out));
    CHECK_MEM_EQ(out, n, "/users/%2E%2E");

    free(m.scratch);
    gd_router_free(router);
    gd_config_free(cfg);
}

const gd_test_case_t gd_test_cases[] = {
    {"literal_beats_capture", test_literal_beats_capture},
    {"precedence_ignores_config_order", test_precedence_ignores_config_order},
    {"method_selects_among_matches", test_method_selects_among_matches},
    {"bad_method_allow", test_bad_method_allow},
    {"allow_truncation", test_allow_truncation},
    {"no_match", test_no_match},
    {"empty_segments", test_empty_segments},
    {"capture_decoding", test_capture_decoding},
    {"capture_decoding_errors", test_capture_decoding_errors},
    {"empty_router", test_empty_router},
    {"query_find", test_query_find},
    {"extract_params", test_extract_params},
    {"extract_int", test_extract_int},
    {"extract_errors", test_extract_errors},
    {"extract_long_pattern_value", test_extract_long_pattern_value},
    {"end_to_end_encoding", test_end_to_end_encoding},
    {NULL, NULL},
};
