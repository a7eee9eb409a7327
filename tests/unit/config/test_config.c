#include "runner.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/pacer.h"
#include "config/config.h"

/*
 * Configs are written with ' for " so that they read as JSON; dq() turns them back. The macros
 * build a valid config around the part under test, so each case changes one thing.
 */
#define LISTEN    "'listen':['127.0.0.1:8080']"
#define UPSTREAMS "'upstreams':{'accounts':{'url':'http://127.0.0.1:18081'}}"
#define CALLS     "'calls':{'user':{'upstream':'accounts','path':'/x'}}"
/* A config with extra top-level members. */
#define ROOT(...) "{" LISTEN "," UPSTREAMS ",'endpoints':[]," __VA_ARGS__ "}"
/* A config with "listen" set to @... */
#define LISTEN_IS(...) "{'listen':" __VA_ARGS__ "," UPSTREAMS ",'endpoints':[]}"
/* A config whose upstream "accounts" is @... */
#define UPSTREAM_IS(...) "{" LISTEN ",'upstreams':{'accounts':" __VA_ARGS__ "},'endpoints':[]}"
/* A config with these endpoints. */
#define ENDPOINTS(...) "{" LISTEN "," UPSTREAMS ",'endpoints':[" __VA_ARGS__ "]}"
/* A config with one endpoint /users/{id} with these members besides its path. */
#define ENDPOINT(...) ENDPOINTS("{'path':'/users/{id}'," __VA_ARGS__ "}")
/* A config with one endpoint /users/{id} whose call "user" has these members. */
#define CALL_IS(...) ENDPOINT("'calls':{'user':{" __VA_ARGS__ "}}")
/* A config with one endpoint /users/{id} with these params. */
#define PARAMS(...) ENDPOINT("'params':{" __VA_ARGS__ "}," CALLS)

static char *dq(const char *s)
{
    char *d = strdup(s);

    CHECK(d != NULL);
    for (char *p = d; *p != '\0'; p++)
        if (*p == '\'')
            *p = '"';
    return d;
}

#define CHECK_CONFIG_ERR(json, want) check_config_err(__FILE__, __LINE__, (json), (want))
#define LOAD_OK(json)                load_ok(__FILE__, __LINE__, (json))

static void check_config_err(const char *file, int line, const char *json, const char *want)
{
    gd_config_t *cfg = NULL;
    char *text = dq(json), err[512];
    int r = gd_config_load_string(text, "conf/x.json", &cfg, err, sizeof(err));

    free(text);
    if (r != -EINVAL)
        gd__test_fail(file, line, "returned %d, expected -EINVAL for \"%s\"", r, want);
    if (cfg != NULL)
        gd__test_fail(file, line, "*ret_config written on error");
    if (strcmp(err, want) != 0)
        gd__test_fail(file, line, "error\n  \"%s\", expected\n  \"%s\"", err, want);
}

static gd_config_t *load_ok(const char *file, int line, const char *json)
{
    gd_config_t *cfg = NULL;
    char *text = dq(json), err[512];
    int r = gd_config_load_string(text, "conf/x.json", &cfg, err, sizeof(err));

    free(text);
    if (r != 0)
        gd__test_fail(file, line, "returned %d: %s", r, err);
    return cfg;
}

/* The valid config the README's sketch describes, with every key set. */
static const char full_config[] =
    "{\n"
    "  'listen': ['127.0.0.1:8080', '[::1]:8081', '*:8082'],\n"
    "  'threads': 3,\n"
    "  'http2': false,\n"
    "  'http2_reset_budget': false,\n"
    "  'max_requests_in_flight': 500,\n"
    "  'queue_timeout_ms': 250,\n"
    "  'coroutine_stack_kb': 128,\n"
    "  'shutdown': {'drain_delay_ms': 250, 'timeout_ms': 10000},\n"
    "  'upstreams': {\n"
    "    'accounts': {'url': 'http://127.0.0.1:18081/v1/', 'max_connections': 8,\n"
    "                 'connect_timeout_ms': 500, 'keepalive_timeout_ms': 3000,\n"
    "                 'max_body_bytes': 1024, 'dns_refresh_ms': 5000},\n"
    "    'posts-api': {'url': 'http://posts.internal'},\n"
    "    'v6': {'url': 'HTTP://[::1]:9000/'}\n"
    "  },\n"
    "  'endpoints': [\n"
    "    {'method': 'GET', 'path': '/users/{id}/profile', 'timeout_ms': 1500,\n"
    "     'params': {\n"
    "       'id': 'int',\n"
    "       'query.limit': {'type': 'int', 'required': false, 'default': '10'},\n"
    "       'header.X-Tenant': {'pattern': '[a-z0-9-]{1,32}', 'required': true}\n"
    "     },\n"
    "     'calls': {\n"
    "       'user': {'upstream': 'accounts', 'path': '/users/{id}', 'timeout_ms': 800},\n"
    "       'posts': {'upstream': 'posts-api', 'method': 'POST', 'timeout_ms': 9000,\n"
    "                 'path': '/posts?userId={id}&limit={query.limit}&q={query.q}',\n"
    "                 'optional': true,\n"
    "                 'headers': {'X-Tenant': '{header.x-tenant}',\n"
    "                             'X-Trace': 't-{header.X-Trace}'}},\n"
    "       'we\\'ird': {'upstream': 'v6', 'path': '/w'}\n"
    "     }},\n"
    "    {'method': 'DELETE', 'path': '/users/{id}/profile',\n"
    "     'calls': {'del': {'upstream': 'accounts', 'path': '/users/{id}', 'method': 'DELETE'}}},\n"
    "    {'path': '/pairs/{a}/{b}/', 'params': {'query.x': 'string', 'b': {'type': 'string'}},\n"
    "     'calls': {'h': {'upstream': 'accounts', 'path': '/h/{b}/{a}'}}}\n"
    "  ]\n"
    "}\n";

static void test_full_config(void)
{
    gd_config_t *cfg = LOAD_OK(full_config);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->listen[0].addr;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&cfg->listen[1].addr;
    const struct sockaddr_in6 *any = (const struct sockaddr_in6 *)&cfg->listen[2].addr;
    const gd_upstream_conf_t *u;
    const gd_endpoint_conf_t *ep;
    const gd_call_conf_t *c;
    const gd_param_t *p;

    CHECK_STR_EQ(cfg->source, "conf/x.json");
    CHECK_INT_EQ(cfg->nlisten, 3);
    CHECK_STR_EQ(cfg->listen[0].text, "127.0.0.1:8080");
    CHECK_INT_EQ(sin->sin_family, AF_INET);
    CHECK_INT_EQ(ntohs(sin->sin_port), 8080);
    CHECK_INT_EQ(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    CHECK_INT_EQ(cfg->listen[0].addrlen, sizeof(struct sockaddr_in));
    CHECK_INT_EQ(sin6->sin6_family, AF_INET6);
    CHECK_INT_EQ(ntohs(sin6->sin6_port), 8081);
    CHECK(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    CHECK_INT_EQ(cfg->listen[1].addrlen, sizeof(struct sockaddr_in6));
    CHECK_INT_EQ(any->sin6_family, AF_INET6);
    CHECK_INT_EQ(ntohs(any->sin6_port), 8082);
    CHECK(IN6_IS_ADDR_UNSPECIFIED(&any->sin6_addr));
    CHECK_INT_EQ(cfg->threads, 3);
    CHECK(!cfg->is_http2_enabled);
    CHECK_INT_EQ(cfg->http2_reset_budget, 0); /* false: no limit */
    CHECK_INT_EQ(cfg->max_requests_in_flight, 500);
    CHECK_INT_EQ(cfg->queue_timeout_ms, 250);
    CHECK_INT_EQ(cfg->coroutine_stack_bytes, 128 * 1024);
    CHECK_INT_EQ(cfg->drain_delay_ms, 250);
    CHECK_INT_EQ(cfg->shutdown_timeout_ms, 10000);

    CHECK_INT_EQ(cfg->nupstreams, 3);
    u = &cfg->upstreams[0];
    CHECK_STR_EQ(u->name, "accounts");
    CHECK_INT_EQ(u->index, 0);
    CHECK_STR_EQ(u->url, "http://127.0.0.1:18081/v1/");
    CHECK_STR_EQ(u->host, "127.0.0.1");
    CHECK_INT_EQ(u->port, 18081);
    CHECK_STR_EQ(u->base_path, "/v1");
    CHECK(u->is_host_numeric);
    CHECK_INT_EQ(u->max_connections, 8);
    CHECK_INT_EQ(u->connect_timeout_ms, 500);
    CHECK_INT_EQ(u->keepalive_timeout_ms, 3000);
    CHECK_INT_EQ(u->dns_refresh_ms, 5000);
    CHECK_INT_EQ(u->max_body_bytes, 1024);
    u = &cfg->upstreams[1];
    CHECK_STR_EQ(u->name, "posts-api");
    CHECK_INT_EQ(u->index, 1);
    CHECK_STR_EQ(u->host, "posts.internal");
    CHECK_INT_EQ(u->port, 80);
    CHECK_STR_EQ(u->base_path, "");
    CHECK(!u->is_host_numeric);
    u = &cfg->upstreams[2];
    CHECK_STR_EQ(u->host, "::1");
    CHECK_INT_EQ(u->port, 9000);
    CHECK_STR_EQ(u->base_path, "");
    CHECK(u->is_host_numeric);

    CHECK_INT_EQ(cfg->nendpoints, 3);
    ep = &cfg->endpoints[0];
    CHECK_INT_EQ(ep->index, 0);
    CHECK_STR_EQ(ep->method, "GET");
    CHECK_STR_EQ(ep->path, "/users/{id}/profile");
    CHECK_INT_EQ(ep->nsegments, 3);
    CHECK(!ep->segments[0].is_capture);
    CHECK_STR_EQ(ep->segments[0].text, "users");
    CHECK(ep->segments[1].is_capture);
    CHECK_STR_EQ(ep->segments[1].text, "id");
    CHECK_STR_EQ(ep->segments[2].text, "profile");
    CHECK_INT_EQ(ep->ncaptures, 1);
    CHECK_INT_EQ(ep->timeout_ms, 1500);

    /* Captures first, then declared parameters, then those only templates use. */
    CHECK_INT_EQ(ep->nparams, 5);
    p = &ep->params[0];
    CHECK_STR_EQ(p->name, "id");
    CHECK_STR_EQ(p->key, "id");
    CHECK_INT_EQ(p->src, GD_SRC_PATH);
    CHECK_INT_EQ(p->path_index, 0);
    CHECK_INT_EQ(p->type, GD_PARAM_INT);
    CHECK(p->is_required);
    CHECK_STR_EQ(p->default_value, "");
    p = &ep->params[1];
    CHECK_STR_EQ(p->name, "query.limit");
    CHECK_STR_EQ(p->key, "limit");
    CHECK_INT_EQ(p->src, GD_SRC_QUERY);
    CHECK_INT_EQ(p->type, GD_PARAM_INT);
    CHECK(!p->is_required);
    CHECK_STR_EQ(p->default_value, "10");
    p = &ep->params[2];
    CHECK_STR_EQ(p->name, "header.x-tenant"); /* lower-cased */
    CHECK_STR_EQ(p->key, "x-tenant");
    CHECK_INT_EQ(p->src, GD_SRC_HEADER);
    CHECK_INT_EQ(p->type, GD_PARAM_PATTERN);
    CHECK_STR_EQ(p->pattern_src, "[a-z0-9-]{1,32}");
    CHECK(p->is_required);
    CHECK_INT_EQ(regexec(&p->pattern, "acme-1", 0, NULL, 0), 0);
    CHECK(regexec(&p->pattern, "ACME", 0, NULL, 0) != 0);
    CHECK(regexec(&p->pattern, "acme corp", 0, NULL, 0) != 0); /* anchored at both ends */
    CHECK(regexec(&p->pattern, "", 0, NULL, 0) != 0);
    p = &ep->params[3];
    CHECK_STR_EQ(p->name, "query.q");
    CHECK_STR_EQ(p->key, "q");
    CHECK_INT_EQ(p->src, GD_SRC_QUERY);
    CHECK_INT_EQ(p->type, GD_PARAM_STRING);
    CHECK(!p->is_required);
    CHECK_STR_EQ(p->default_value, "");
    p = &ep->params[4];
    CHECK_STR_EQ(p->name, "header.x-trace");
    CHECK_INT_EQ(p->src, GD_SRC_HEADER);
    CHECK(!p->is_required);

    /* Calls in config order, not sorted. */
    CHECK_INT_EQ(ep->ncalls, 3);
    c = &ep->calls[0];
    CHECK_STR_EQ(c->name, "user");
    CHECK_STR_EQ(c->name_json, "\"user\"");
    CHECK(c->upstream == &cfg->upstreams[0]);
    CHECK_STR_EQ(c->method, "GET");
    CHECK_INT_EQ(c->path.nparts, 2);
    CHECK_STR_EQ(c->path.parts[0].literal, "/users/");
    CHECK_INT_EQ(c->path.parts[1].value_index, 0);
    CHECK_INT_EQ(c->nheaders, 0);
    CHECK_INT_EQ(c->timeout_ms, 800);
    CHECK(!c->is_optional);
    c = &ep->calls[1];
    CHECK_STR_EQ(c->name, "posts");
    CHECK(c->upstream == &cfg->upstreams[1]);
    CHECK_STR_EQ(c->method, "POST");
    CHECK_INT_EQ(c->path.nparts, 6);
    CHECK_INT_EQ(c->path.parts[1].value_index, 0);
    CHECK_INT_EQ(c->path.parts[3].value_index, 1);
    CHECK_INT_EQ(c->path.parts[5].value_index, 3);
    CHECK_INT_EQ(c->timeout_ms, 1500); /* min(own 9000, endpoint's 1500) */
    CHECK(c->is_optional);
    CHECK_INT_EQ(c->nheaders, 2);
    CHECK_STR_EQ(c->headers[0].name, "X-Tenant");
    CHECK_INT_EQ(c->headers[0].value.nparts, 1);
    CHECK_INT_EQ(c->headers[0].value.parts[0].value_index, 2);
    CHECK_STR_EQ(c->headers[1].name, "X-Trace");
    CHECK_INT_EQ(c->headers[1].value.nparts, 2);
    CHECK_STR_EQ(c->headers[1].value.parts[0].literal, "t-");
    CHECK_INT_EQ(c->headers[1].value.parts[1].value_index, 4);
    c = &ep->calls[2];
    CHECK_STR_EQ(c->name, "we\"ird");
    CHECK_STR_EQ(c->name_json, "\"we\\\"ird\"");
    CHECK(c->upstream == &cfg->upstreams[2]);
    CHECK_INT_EQ(c->timeout_ms, 1500); /* the endpoint's by default */

    /* Same path, another method: not a duplicate. */
    ep = &cfg->endpoints[1];
    CHECK_INT_EQ(ep->index, 1);
    CHECK_STR_EQ(ep->method, "DELETE");
    CHECK_STR_EQ(ep->calls[0].method, "DELETE");

    ep = &cfg->endpoints[2];
    CHECK_STR_EQ(ep->method, "GET");
    CHECK_INT_EQ(ep->timeout_ms, 5000);
    CHECK_INT_EQ(ep->nsegments, 4); /* the trailing slash is an empty last segment */
    CHECK_STR_EQ(ep->segments[3].text, "");
    CHECK(!ep->segments[3].is_capture);
    CHECK_INT_EQ(ep->ncaptures, 2);
    CHECK_INT_EQ(ep->nparams, 3);
    CHECK_STR_EQ(ep->params[0].name, "a");
    CHECK_INT_EQ(ep->params[0].path_index, 0);
    CHECK_STR_EQ(ep->params[1].name, "b");
    CHECK_INT_EQ(ep->params[1].path_index, 1);
    CHECK_STR_EQ(ep->params[2].name, "query.x");
    CHECK_INT_EQ(ep->calls[0].path.parts[1].value_index, 1);
    CHECK_INT_EQ(ep->calls[0].path.parts[3].value_index, 0);
    CHECK_INT_EQ(ep->calls[0].timeout_ms, 5000);

    CHECK(gd_config_free(cfg) == NULL);
    CHECK(gd_config_free(NULL) == NULL);
}

static void test_defaults(void)
{
    gd_config_t *cfg = LOAD_OK(ENDPOINTS("{'path':'/x'," CALLS "}"));
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    const gd_upstream_conf_t *u = &cfg->upstreams[0];
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];

    CHECK_INT_EQ(cfg->threads, ncpu < 1 ? 1 : ncpu);
    CHECK(!cfg->is_http2_enabled); /* off until Rapid Reset is contained (README) */
    CHECK_INT_EQ(cfg->http2_reset_budget, 100);
    CHECK_INT_EQ(cfg->max_requests_in_flight, 2048);
    CHECK_INT_EQ(cfg->queue_timeout_ms, 3000);
    CHECK_INT_EQ(cfg->coroutine_stack_bytes, 64 * 1024);
    CHECK_INT_EQ(cfg->drain_delay_ms, 0);
    CHECK_INT_EQ(cfg->shutdown_timeout_ms, 30000);
    CHECK_INT_EQ(u->max_connections, 256);
    CHECK_INT_EQ(u->connect_timeout_ms, 1000);
    CHECK_INT_EQ(u->keepalive_timeout_ms, 2000);
    CHECK_INT_EQ(u->dns_refresh_ms, 30000);
    CHECK_INT_EQ(u->max_body_bytes, 8388608);
    CHECK_STR_EQ(u->base_path, "");
    CHECK_INT_EQ(u->port, 18081);
    CHECK_STR_EQ(ep->method, "GET");
    CHECK_INT_EQ(ep->timeout_ms, 5000);
    CHECK_INT_EQ(ep->nparams, 0);
    CHECK_INT_EQ(ep->ncaptures, 0);
    CHECK_STR_EQ(ep->calls[0].method, "GET");
    CHECK_INT_EQ(ep->calls[0].timeout_ms, 5000);
    CHECK(!ep->calls[0].is_optional);
    gd_config_free(cfg);

    /* threads 0 explicitly; endpoints and upstreams may be empty. */
    cfg = LOAD_OK("{'listen':['*:1'],'threads':0,'upstreams':{},'endpoints':[]}");
    CHECK_INT_EQ(cfg->threads, ncpu < 1 ? 1 : ncpu);
    CHECK_INT_EQ(cfg->nupstreams, 0);
    CHECK_INT_EQ(cfg->nendpoints, 0);
    gd_config_free(cfg);
}

static void test_limits_accepted(void)
{
    gd_config_t *cfg = LOAD_OK(
        ROOT("'threads':1024,'coroutine_stack_kb':8192,'shutdown':{'drain_delay_ms':86400000,"
             "'timeout_ms':86400000}"));
    CHECK_INT_EQ(cfg->threads, 1024);
    CHECK_INT_EQ(cfg->coroutine_stack_bytes, 8192 * 1024);
    CHECK_INT_EQ(cfg->drain_delay_ms, 86400000);
    gd_config_free(cfg);
    cfg = LOAD_OK(ROOT("'coroutine_stack_kb':16,'shutdown':{'timeout_ms':1}"));
    CHECK_INT_EQ(cfg->coroutine_stack_bytes, 16 * 1024);
    CHECK_INT_EQ(cfg->shutdown_timeout_ms, 1);
    gd_config_free(cfg);
}

static void test_syntax_errors(void)
{
    CHECK_CONFIG_ERR("{\n  'listen': [1,]\n}", "conf/x.json:2:16: unexpected token near ']'");
    CHECK_CONFIG_ERR("{'threads': 1, 'threads': 2}",
                     "conf/x.json:1:24: duplicate object key near '\"threads\"'");
    CHECK_CONFIG_ERR("", "conf/x.json:1:0: '[' or '{' expected near end of file");
    CHECK_CONFIG_ERR("{'a': '\\u0000'}",
                     "conf/x.json:1:14: \\u0000 is not allowed without JSON_ALLOW_NUL near "
                     "'\"\\u0000\"'");
}

static void test_root_errors(void)
{
    CHECK_CONFIG_ERR("['listen']", "conf/x.json: the config must be a JSON object, not an array");
    CHECK_CONFIG_ERR(ROOT("'thread':1"), "conf/x.json: thread: unknown key");
    CHECK_CONFIG_ERR(ROOT("'x-y':1"), "conf/x.json: [\"x-y\"]: unknown key");
    CHECK_CONFIG_ERR("{" UPSTREAMS ",'endpoints':[]}", "conf/x.json: listen: missing required key");
    CHECK_CONFIG_ERR("{" LISTEN ",'endpoints':[]}", "conf/x.json: upstreams: missing required key");
    CHECK_CONFIG_ERR("{" LISTEN "," UPSTREAMS "}", "conf/x.json: endpoints: missing required key");
    CHECK_CONFIG_ERR("{" LISTEN ",'upstreams':[],'endpoints':[]}",
                     "conf/x.json: upstreams: must be an object, not an array");
    CHECK_CONFIG_ERR("{" LISTEN "," UPSTREAMS ",'endpoints':{}}",
                     "conf/x.json: endpoints: must be an array, not an object");
}

static void test_scalar_errors(void)
{
    CHECK_CONFIG_ERR(ROOT("'threads':-1"),
                     "conf/x.json: threads: must be between 0 and 1024, not -1");
    CHECK_CONFIG_ERR(ROOT("'threads':1025"),
                     "conf/x.json: threads: must be between 0 and 1024, not 1025");
    CHECK_CONFIG_ERR(ROOT("'threads':'4'"),
                     "conf/x.json: threads: must be an integer, not a string");
    CHECK_CONFIG_ERR(ROOT("'threads':2.0"),
                     "conf/x.json: threads: must be an integer, not a real number");
    CHECK_CONFIG_ERR(ROOT("'http2':'yes'"), "conf/x.json: http2: must be a boolean, not a string");
    CHECK_CONFIG_ERR(ROOT("'http2':null"), "conf/x.json: http2: must be a boolean, not null");
    CHECK_CONFIG_ERR(ROOT("'http2_reset_budget':true"),
                     "conf/x.json: http2_reset_budget: must be an integer or false, not a boolean");
    CHECK_CONFIG_ERR(ROOT("'http2_reset_budget':0"),
                     "conf/x.json: http2_reset_budget: must be between 1 and 1000000, not 0");
    CHECK_CONFIG_ERR(ROOT("'max_requests_in_flight':0"),
                     "conf/x.json: max_requests_in_flight: must be >= 1, not 0");
    CHECK_CONFIG_ERR(ROOT("'queue_timeout_ms':-1"),
                     "conf/x.json: queue_timeout_ms: must be between 0 and 3600000, not -1");
    CHECK_CONFIG_ERR(ROOT("'queue_timeout_ms':'5s'"),
                     "conf/x.json: queue_timeout_ms: must be an integer, not a string");
    CHECK_CONFIG_ERR(ROOT("'coroutine_stack_kb':15"),
                     "conf/x.json: coroutine_stack_kb: must be between 16 and 8192, not 15");
    CHECK_CONFIG_ERR(ROOT("'coroutine_stack_kb':8193"),
                     "conf/x.json: coroutine_stack_kb: must be between 16 and 8192, not 8193");
}

static void test_shutdown_errors(void)
{
    CHECK_CONFIG_ERR(ROOT("'shutdown':[]"),
                     "conf/x.json: shutdown: must be an object, not an array");
    CHECK_CONFIG_ERR(ROOT("'shutdown':{'drain_ms':1}"),
                     "conf/x.json: shutdown.drain_ms: unknown key");
    CHECK_CONFIG_ERR(
        ROOT("'shutdown':{'drain_delay_ms':-1}"),
        "conf/x.json: shutdown.drain_delay_ms: must be between 0 and 86400000, not -1");
    CHECK_CONFIG_ERR(
        ROOT("'shutdown':{'drain_delay_ms':86400001}"),
        "conf/x.json: shutdown.drain_delay_ms: must be between 0 and 86400000, not 86400001");
    CHECK_CONFIG_ERR(ROOT("'shutdown':{'timeout_ms':0}"),
                     "conf/x.json: shutdown.timeout_ms: must be between 1 and 86400000, not 0");
    CHECK_CONFIG_ERR(ROOT("'shutdown':{'timeout_ms':-5}"),
                     "conf/x.json: shutdown.timeout_ms: must be between 1 and 86400000, not -5");
    CHECK_CONFIG_ERR(
        ROOT("'shutdown':{'timeout_ms':86400001}"),
        "conf/x.json: shutdown.timeout_ms: must be between 1 and 86400000, not 86400001");
    CHECK_CONFIG_ERR(ROOT("'shutdown':{'timeout_ms':1.5}"),
                     "conf/x.json: shutdown.timeout_ms: must be an integer, not a real number");
}

#define LISTEN_FORM_ERR(text)                                                                      \
    "conf/x.json: listen[0]: expected \"IPv4:PORT\", \"[IPv6]:PORT\" or \"*:PORT\" (numeric "      \
    "addresses only), not \"" text "\""

static void test_listen_errors(void)
{
    CHECK_CONFIG_ERR(LISTEN_IS("'127.0.0.1:8080'"),
                     "conf/x.json: listen: must be an array, not a string");
    CHECK_CONFIG_ERR(LISTEN_IS("[]"), "conf/x.json: listen: must not be empty");
    CHECK_CONFIG_ERR(LISTEN_IS("['*:80', 8080]"),
                     "conf/x.json: listen[1]: must be a string, not an integer");
    CHECK_CONFIG_ERR(LISTEN_IS("['localhost:8080']"), LISTEN_FORM_ERR("localhost:8080"));
    CHECK_CONFIG_ERR(LISTEN_IS("['::1:8080']"), LISTEN_FORM_ERR("::1:8080"));
    CHECK_CONFIG_ERR(LISTEN_IS("['8080']"), LISTEN_FORM_ERR("8080"));
    CHECK_CONFIG_ERR(LISTEN_IS("[':8080']"), LISTEN_FORM_ERR(":8080"));
    CHECK_CONFIG_ERR(LISTEN_IS("['[::1]8080']"), LISTEN_FORM_ERR("[::1]8080"));
    CHECK_CONFIG_ERR(LISTEN_IS("['[]:8080']"), LISTEN_FORM_ERR("[]:8080"));
    CHECK_CONFIG_ERR(LISTEN_IS("['[127.0.0.1]:8080']"), LISTEN_FORM_ERR("[127.0.0.1]:8080"));
    CHECK_CONFIG_ERR(LISTEN_IS("['1.2.3:8080']"), LISTEN_FORM_ERR("1.2.3:8080"));
    CHECK_CONFIG_ERR(LISTEN_IS("['127.0.0.1:0']"),
                     "conf/x.json: listen[0]: bad port in \"127.0.0.1:0\" (expected 1 to 65535)");
    CHECK_CONFIG_ERR(LISTEN_IS("['127.0.0.1:65536']"),
                     "conf/x.json: listen[0]: bad port in \"127.0.0.1:65536\" (expected 1 to "
                     "65535)");
    CHECK_CONFIG_ERR(LISTEN_IS("['127.0.0.1:']"),
                     "conf/x.json: listen[0]: bad port in \"127.0.0.1:\" (expected 1 to 65535)");
    CHECK_CONFIG_ERR(LISTEN_IS("['[::1]:8x']"),
                     "conf/x.json: listen[0]: bad port in \"[::1]:8x\" (expected 1 to 65535)");
    CHECK_CONFIG_ERR(LISTEN_IS("['*:-1']"),
                     "conf/x.json: listen[0]: bad port in \"*:-1\" (expected 1 to 65535)");
    CHECK_CONFIG_ERR(LISTEN_IS("['*:8080', '127.0.0.1:8080', '[::]:8080']"),
                     "conf/x.json: listen[2]: same address as listen[0]");
}

static void test_listen_forms(void)
{
    gd_config_t *cfg = LOAD_OK(LISTEN_IS("['0.0.0.0:1', '[::ffff:10.0.0.1]:65535', '*:80']"));
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->listen[0].addr;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&cfg->listen[1].addr;

    CHECK_INT_EQ(sin->sin_family, AF_INET);
    CHECK_INT_EQ(sin->sin_addr.s_addr, INADDR_ANY);
    CHECK_INT_EQ(ntohs(sin->sin_port), 1);
    CHECK_INT_EQ(sin6->sin6_family, AF_INET6);
    CHECK(IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr));
    CHECK_INT_EQ(ntohs(sin6->sin6_port), 65535);
    CHECK_STR_EQ(cfg->listen[2].text, "*:80");
    gd_config_free(cfg);
}

#define URL_MALFORMED(url)                                                                         \
    "conf/x.json: upstreams.accounts.url: malformed URL \"" url                                    \
    "\" (expected http[s]://HOST[:PORT][/BASE])"
#define URL_BAD_PORT(url)                                                                          \
    "conf/x.json: upstreams.accounts.url: bad port in URL \"" url "\" (expected 1 to 65535)"

static void test_upstream_errors(void)
{
    CHECK_CONFIG_ERR(UPSTREAM_IS("'http://x'"),
                     "conf/x.json: upstreams.accounts: must be an object, not a string");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','max_conns':1}"),
                     "conf/x.json: upstreams.accounts.max_conns: unknown key");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{}"),
                     "conf/x.json: upstreams.accounts.url: missing required key");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':80}"),
                     "conf/x.json: upstreams.accounts.url: must be a string, not an integer");
    CHECK_CONFIG_ERR("{" LISTEN ",'upstreams':{'':{'url':'http://x'}},'endpoints':[]}",
                     "conf/x.json: upstreams[\"\"]: an upstream name must not be empty");
    CHECK_CONFIG_ERR("{" LISTEN ",'upstreams':{'my-api':{}},'endpoints':[]}",
                     "conf/x.json: upstreams[\"my-api\"].url: missing required key");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','max_connections':0}"),
                     "conf/x.json: upstreams.accounts.max_connections: must be >= 1, not 0");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','connect_timeout_ms':0}"),
                     "conf/x.json: upstreams.accounts.connect_timeout_ms: must be between 1 and "
                     "86400000, not 0");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','keepalive_timeout_ms':86400001}"),
                     "conf/x.json: upstreams.accounts.keepalive_timeout_ms: must be between 1 and "
                     "86400000, not 86400001");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','max_body_bytes':0}"),
                     "conf/x.json: upstreams.accounts.max_body_bytes: must be >= 1, not 0");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','max_body_bytes':'1M'}"),
                     "conf/x.json: upstreams.accounts.max_body_bytes: must be an integer, not a "
                     "string");
}

static void test_tls(void)
{
    gd_config_t *cfg = LOAD_OK(UPSTREAM_IS("{'url':'HTTPS://api.example.com/v1'}"));
    const gd_upstream_conf_t *u = &cfg->upstreams[0];

    CHECK(u->is_tls);
    CHECK_INT_EQ(u->port, 443);
    CHECK_STR_EQ(u->host, "api.example.com");
    CHECK_STR_EQ(u->place, "upstreams.accounts");
    CHECK_INT_EQ(u->tls.min_version, 12);
    CHECK(u->tls.ca_file == NULL && u->tls.server_name == NULL);
    gd_config_free(cfg);

    cfg = LOAD_OK(UPSTREAM_IS("{'url':'https://10.0.0.1:8443','tls':{'ca_file':'/ca.pem',"
                              "'server_name':'api.internal','client_cert_file':'/c.pem',"
                              "'client_key_file':'/k.pem','min_version':'1.3'}}"));
    u = &cfg->upstreams[0];
    CHECK(u->is_tls);
    CHECK_INT_EQ(u->port, 8443);
    CHECK_INT_EQ(u->tls.min_version, 13);
    CHECK_STR_EQ(u->tls.ca_file, "/ca.pem");
    CHECK_STR_EQ(u->tls.server_name, "api.internal");
    CHECK_STR_EQ(u->tls.client_cert_file, "/c.pem");
    CHECK_STR_EQ(u->tls.client_key_file, "/k.pem");
    gd_config_free(cfg);

    cfg = LOAD_OK("{" LISTEN ",'upstreams':{'my-api':{'url':'http://x'}},'endpoints':[]}");
    CHECK(!cfg->upstreams[0].is_tls);
    CHECK_INT_EQ(cfg->upstreams[0].port, 80);
    CHECK_STR_EQ(cfg->upstreams[0].place, "upstreams[\"my-api\"]");
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','tls':{}}"),
                     "conf/x.json: upstreams.accounts.tls: only an https:// upstream has TLS "
                     "settings");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'https://x','tls':{'verify':false}}"),
                     "conf/x.json: upstreams.accounts.tls.verify: unknown key");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'https://x','tls':{'min_version':'1.1'}}"),
                     "conf/x.json: upstreams.accounts.tls.min_version: must be \"1.2\" or "
                     "\"1.3\", not \"1.1\"");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'https://x','tls':{'ca_file':''}}"),
                     "conf/x.json: upstreams.accounts.tls.ca_file: must not be empty");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'https://x','tls':{'ca_file':1}}"),
                     "conf/x.json: upstreams.accounts.tls.ca_file: must be a string, not an "
                     "integer");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'https://x','tls':{'client_cert_file':'/c'}}"),
                     "conf/x.json: upstreams.accounts.tls.client_cert_file: needs "
                     "client_key_file too");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'https://x','tls':{'client_key_file':'/k'}}"),
                     "conf/x.json: upstreams.accounts.tls.client_key_file: needs "
                     "client_cert_file too");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'https://x','tls':{'server_name':'a b'}}"),
                     "conf/x.json: upstreams.accounts.tls.server_name: bad server name \"a b\" "
                     "(a host name or an IP address)");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'https://x','tls':[]}"),
                     "conf/x.json: upstreams.accounts.tls: must be an object, not an array");
}

static void test_url_errors(void)
{
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'ftp://files'}"),
                     "conf/x.json: upstreams.accounts.url: unsupported scheme \"ftp\"");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'unix+http://x'}"),
                     "conf/x.json: upstreams.accounts.url: unsupported scheme \"unix+http\"");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'127.0.0.1:8080'}"), URL_MALFORMED("127.0.0.1:8080"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'://x'}"), URL_MALFORMED("://x"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'1http://x'}"), URL_MALFORMED("1http://x"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'ht tp://x'}"), URL_MALFORMED("ht tp://x"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://'}"), URL_MALFORMED("http://"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http:///v1'}"), URL_MALFORMED("http:///v1"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://:80'}"), URL_MALFORMED("http://:80"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://user@host'}"), URL_MALFORMED("http://user@host"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://ho st'}"), URL_MALFORMED("http://ho st"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://[::1'}"), URL_MALFORMED("http://[::1"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://[nope]:80'}"), URL_MALFORMED("http://[nope]:80"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://[::1]x/'}"), URL_MALFORMED("http://[::1]x/"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h:0'}"), URL_BAD_PORT("http://h:0"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h:/x'}"), URL_BAD_PORT("http://h:/x"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h:65536'}"), URL_BAD_PORT("http://h:65536"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h:8x'}"), URL_BAD_PORT("http://h:8x"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://[::1]:'}"), URL_BAD_PORT("http://[::1]:"));
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h/x?a=1'}"),
                     "conf/x.json: upstreams.accounts.url: URL \"http://h/x?a=1\" must not have a "
                     "query or a fragment");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h#top'}"),
                     "conf/x.json: upstreams.accounts.url: URL \"http://h#top\" must not have a "
                     "query or a fragment");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h/a b'}"),
                     "conf/x.json: upstreams.accounts.url: bad character 0x20 in the path of URL "
                     "\"http://h/a b\" (percent-encode it)");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h/a%zz'}"),
                     "conf/x.json: upstreams.accounts.url: bad character \"%\" in the path of URL "
                     "\"http://h/a%zz\" (percent-encode it)");
}

static void test_url_forms(void)
{
    gd_config_t *cfg = LOAD_OK("{" LISTEN ",'upstreams':{"
                               "'a':{'url':'http://api.example.com:8080/v1/users//'},"
                               "'b':{'url':'http://10.1.2.3/'},"
                               "'c':{'url':'http://my_host-1.local'},"
                               "'d':{'url':'http://[2001:db8::1]/base%20x'},"
                               "'e':{'url':'http://300.1.1.1'}"
                               "},'endpoints':[]}");
    const gd_upstream_conf_t *u = cfg->upstreams;

    CHECK_STR_EQ(u[0].host, "api.example.com");
    CHECK_INT_EQ(u[0].port, 8080);
    CHECK_STR_EQ(u[0].base_path, "/v1/users"); /* trailing slashes dropped */
    CHECK(!u[0].is_host_numeric);
    CHECK_STR_EQ(u[1].host, "10.1.2.3");
    CHECK_STR_EQ(u[1].base_path, "");
    CHECK(u[1].is_host_numeric);
    CHECK_STR_EQ(u[2].host, "my_host-1.local");
    CHECK_STR_EQ(u[3].host, "2001:db8::1");
    CHECK_STR_EQ(u[3].base_path, "/base%20x");
    CHECK(u[3].is_host_numeric);
    CHECK_STR_EQ(u[4].host, "300.1.1.1"); /* not an address: left to DNS, which fails it */
    CHECK(!u[4].is_host_numeric);
    gd_config_free(cfg);
}

static void test_endpoint_errors(void)
{
    CHECK_CONFIG_ERR(ENDPOINTS("'/x'"),
                     "conf/x.json: endpoints[0]: must be an object, not a string");
    CHECK_CONFIG_ERR(ENDPOINT("'timout_ms':5," CALLS),
                     "conf/x.json: endpoints[0].timout_ms: unknown key");
    CHECK_CONFIG_ERR(ENDPOINTS("{" CALLS "}"),
                     "conf/x.json: endpoints[0].path: missing required key");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':1," CALLS "}"),
                     "conf/x.json: endpoints[0].path: must be a string, not an integer");
    CHECK_CONFIG_ERR(ENDPOINT("'method':'get'," CALLS),
                     "conf/x.json: endpoints[0].method: must be an upper-case HTTP method like "
                     "\"GET\", not \"get\"");
    CHECK_CONFIG_ERR(ENDPOINT("'method':''," CALLS),
                     "conf/x.json: endpoints[0].method: must be an upper-case HTTP method like "
                     "\"GET\", not \"\"");
    CHECK_CONFIG_ERR(ENDPOINT("'method':'GE T'," CALLS),
                     "conf/x.json: endpoints[0].method: must be an upper-case HTTP method like "
                     "\"GET\", not \"GE T\"");
    CHECK_CONFIG_ERR(ENDPOINT("'method':5," CALLS),
                     "conf/x.json: endpoints[0].method: must be a string, not an integer");
    CHECK_CONFIG_ERR(ENDPOINT("'timeout_ms':0," CALLS),
                     "conf/x.json: endpoints[0].timeout_ms: must be between 1 and 86400000, not 0");
    CHECK_CONFIG_ERR(ENDPOINT("'timeout_ms':86400001," CALLS),
                     "conf/x.json: endpoints[0].timeout_ms: must be between 1 and 86400000, not "
                     "86400001");
    CHECK_CONFIG_ERR(
        ENDPOINT("'timeout_ms':-1," CALLS),
        "conf/x.json: endpoints[0].timeout_ms: must be between 1 and 86400000, not -1");
}

static void test_custom_method(void)
{
    gd_config_t *cfg = LOAD_OK(ENDPOINT("'method':'PURGE'," CALLS));
    CHECK_STR_EQ(cfg->endpoints[0].method, "PURGE");
    gd_config_free(cfg);
}

static void test_path_errors(void)
{
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'users/{id}'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: must start with \"/\"");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':''," CALLS "}"),
                     "conf/x.json: endpoints[0].path: must start with \"/\"");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/users/x{id}'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: a capture must be a whole path segment, not "
                     "\"x{id}\"");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/users/{id}.json'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: a capture must be a whole path segment, not "
                     "\"{id}.json\"");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/users/{a}{b}'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: a capture must be a whole path segment, not "
                     "\"{a}{b}\"");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/users/{id'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: a capture must be a whole path segment, not "
                     "\"{id\"");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/users/id}'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: a capture must be a whole path segment, not "
                     "\"id}\"");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/users/{}'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: bad capture name \"{}\" (a name is 1 to 64 "
                     "of A-Z a-z 0-9 - _)");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/users/{a.b}'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: bad capture name \"{a.b}\" (a name is 1 to "
                     "64 of A-Z a-z 0-9 - _)");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/{id}/x/{id}'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: capture \"{id}\" appears twice");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/a?b'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: bad character \"?\" in the path "
                     "(percent-encode it)");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/a b'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: bad character 0x20 in the path "
                     "(percent-encode it)");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/caf\xc3\xa9'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: bad character 0xC3 in the path "
                     "(percent-encode it)");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/100%'," CALLS "}"),
                     "conf/x.json: endpoints[0].path: bad character \"%\" in the path "
                     "(percent-encode it)");
}

static void test_too_many_captures(void)
{
    char json[1024], path[512];
    size_t n = 0;

    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(path + n, sizeof(path) - n, "/{c%d}", i);
    snprintf(json, sizeof(json), ENDPOINTS("{'path':'%s'," CALLS "}"), path);
    CHECK_CONFIG_ERR(json, "conf/x.json: endpoints[0].path: too many captures (at most 32)");
    /* 32 are fine. */
    path[n - strlen("/{c32}")] = '\0';
    snprintf(json, sizeof(json), ENDPOINTS("{'path':'%s'," CALLS "}"), path);
    gd_config_free(LOAD_OK(json));
}

static void test_path_forms(void)
{
    gd_config_t *cfg = LOAD_OK(ENDPOINTS("{'path':'/'," CALLS "},{'path':'/a//b/'," CALLS "},"
                                         "{'path':'/caf%C3%A9/:@!$&()*+,;=-._~'," CALLS "}"));
    const gd_endpoint_conf_t *ep = cfg->endpoints;

    CHECK_INT_EQ(ep[0].nsegments, 1);
    CHECK_STR_EQ(ep[0].segments[0].text, "");
    CHECK_INT_EQ(ep[1].nsegments, 4);
    CHECK_STR_EQ(ep[1].segments[0].text, "a");
    CHECK_STR_EQ(ep[1].segments[1].text, "");
    CHECK_STR_EQ(ep[1].segments[2].text, "b");
    CHECK_STR_EQ(ep[1].segments[3].text, "");
    CHECK_INT_EQ(ep[2].nsegments, 2);
    CHECK_STR_EQ(ep[2].segments[0].text, "caf%C3%A9");
    gd_config_free(cfg);
}

static void test_duplicate_routes(void)
{
    CHECK_CONFIG_ERR(ENDPOINTS("{'method':'GET','path':'/users/{id}/profile'," CALLS "},"
                               "{'method':'POST','path':'/users/{id}/profile'," CALLS "},"
                               "{'method':'GET','path':'/users/{uid}/profile'," CALLS "}"),
                     "conf/x.json: endpoints[2]: duplicate route GET /users/{}/profile (same as "
                     "endpoints[0])");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/'," CALLS "},{'method':'GET','path':'/'," CALLS "}"),
                     "conf/x.json: endpoints[1]: duplicate route GET / (same as endpoints[0])");
    CHECK_CONFIG_ERR(
        ENDPOINTS("{'path':'/a/{x}/'," CALLS "},{'path':'/a/{y}/'," CALLS "}"),
        "conf/x.json: endpoints[1]: duplicate route GET /a/{}/ (same as endpoints[0])");
    /* Other shapes, or the same shape with another method, are not duplicates. */
    gd_config_free(LOAD_OK(ENDPOINTS("{'path':'/users/{id}'," CALLS "},"
                                     "{'path':'/users/me'," CALLS "},"
                                     "{'path':'/users/{id}/'," CALLS "},"
                                     "{'path':'/{a}/{b}'," CALLS "},"
                                     "{'path':'/users//'," CALLS "},"
                                     "{'method':'HEAD','path':'/users/{id}'," CALLS "}")));
}

static void test_body_config(void)
{
    gd_config_t *cfg = LOAD_OK(ROOT("'max_request_body_bytes':0"));
    CHECK(cfg->max_request_body_bytes == 0);
    gd_config_free(cfg);
    cfg = LOAD_OK(ENDPOINT("'calls':{'a':{'upstream':'accounts','path':'/x','method':'POST',"
                           "'body':'{body}'},'b':{'upstream':'accounts','path':'/y',"
                           "'method':'PATCH','idempotent':true},'c':{'upstream':'accounts',"
                           "'path':'/z','method':'DELETE'},'d':{'upstream':'accounts',"
                           "'path':'/w','method':'POST'}}"));
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];
    CHECK(cfg->max_request_body_bytes == 1048576);
    CHECK(ep->calls[0].is_body_forwarded && !ep->calls[0].is_idempotent);
    CHECK(!ep->calls[1].is_body_forwarded && ep->calls[1].is_idempotent);
    CHECK(ep->calls[2].is_idempotent && !ep->calls[3].is_idempotent);
    gd_config_free(cfg);

    cfg = LOAD_OK(ENDPOINT("'params':{'id':'int'},'calls':{'a':{'upstream':'accounts','path':'/x',"
                           "'method':'POST','body':{'id':'{id}','s':'u{id}','n':[1,null],"
                           "'q':'{query.q}','lit':'{{x}}'}}}"));
    const gd_call_conf_t *c = &cfg->endpoints[0].calls[0];
    CHECK_INT_EQ(c->nbody_parts, 4);
    CHECK_STR_EQ(c->body_parts[0].json, "{\"id\":");
    CHECK(c->body_parts[0].has_value && c->body_parts[0].is_typed);
    CHECK_STR_EQ(c->body_parts[1].json, ",\"s\":");
    CHECK(c->body_parts[1].has_value && !c->body_parts[1].is_typed);
    CHECK_STR_EQ(c->body_parts[2].json, ",\"n\":[1,null],\"q\":");
    CHECK(c->body_parts[2].has_value && !c->body_parts[2].is_typed);
    CHECK_STR_EQ(c->body_parts[3].json, ",\"lit\":\"{x}\"}");
    CHECK(!c->body_parts[3].has_value);
    gd_config_free(cfg);
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','method':'POST',"
                             "'body':{'a':[1,{'b':'{nope}'}]}"),
                     "conf/x.json: endpoints[0].calls.user.body.a[1].b: no capture {nope} in the "
                     "endpoint path \"/users/{id}\"");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','method':'GET','body':{}"),
                     "conf/x.json: endpoints[0].calls.user.body: a GET call cannot send a body "
                     "(use POST, PUT, PATCH or DELETE)");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','method':'PUT','body':'{body}',"
                             "'headers':{'Content-Type':'text/plain'}"),
                     "conf/x.json: endpoints[0].calls.user.headers[\"Content-Type\"]: header "
                     "\"Content-Type\" is set by gatherd for the call's body");
    CHECK_CONFIG_ERR(ROOT("'max_request_body_bytes':-1"),
                     "conf/x.json: max_request_body_bytes: must be between 0 and 1073741824, not -1");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','method':'POST','body':'{id}'"),
                     "conf/x.json: endpoints[0].calls.user.body: must be \"{body}\" (the client's "
                     "body, forwarded unchanged), not \"{id}\"");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','method':'POST','body':1"),
                     "conf/x.json: endpoints[0].calls.user.body: must be \"{body}\", an object or "
                     "an array, not an integer");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','body':'{body}'"),
                     "conf/x.json: endpoints[0].calls.user.body: a GET call cannot send a body "
                     "(use POST, PUT, PATCH or DELETE)");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','idempotent':1"),
                     "conf/x.json: endpoints[0].calls.user.idempotent: must be a boolean, not an "
                     "integer");
}

static void test_call_errors(void)
{
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/x'}"),
                     "conf/x.json: endpoints[0].calls: missing required key");
    CHECK_CONFIG_ERR(ENDPOINT("'calls':{}"), "conf/x.json: endpoints[0].calls: must not be empty");
    CHECK_CONFIG_ERR(ENDPOINT("'calls':[]"),
                     "conf/x.json: endpoints[0].calls: must be an object, not an array");
    CHECK_CONFIG_ERR(ENDPOINT("'calls':{'errors':{'upstream':'accounts','path':'/x'}}"),
                     "conf/x.json: endpoints[0].calls.errors: a call may not be named \"errors\" "
                     "(the answer uses that key)");
    CHECK_CONFIG_ERR(ENDPOINT("'calls':{'':{'upstream':'accounts','path':'/x'}}"),
                     "conf/x.json: endpoints[0].calls[\"\"]: a call name must not be empty");
    CHECK_CONFIG_ERR(ENDPOINT("'calls':{'user':'accounts'}"),
                     "conf/x.json: endpoints[0].calls.user: must be an object, not a string");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','timout_ms':5"),
                     "conf/x.json: endpoints[0].calls.user.timout_ms: unknown key");
    CHECK_CONFIG_ERR(CALL_IS("'path':'/x'"),
                     "conf/x.json: endpoints[0].calls.user.upstream: missing required key");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts'"),
                     "conf/x.json: endpoints[0].calls.user.path: missing required key");
    CHECK_CONFIG_ERR(ENDPOINTS("{'path':'/a'," CALLS "},"
                               "{'path':'/b','calls':{'user':{'upstream':'acounts','path':'/x'}}}"),
                     "conf/x.json: endpoints[1].calls.user.upstream: unknown upstream \"acounts\"");
    CHECK_CONFIG_ERR(ENDPOINT("'calls':{'user-info':{'upstream':'nope','path':'/x'}}"),
                     "conf/x.json: endpoints[0].calls[\"user-info\"].upstream: unknown upstream "
                     "\"nope\"");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'users/{id}'"),
                     "conf/x.json: endpoints[0].calls.user.path: must start with \"/\"");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'{id}'"),
                     "conf/x.json: endpoints[0].calls.user.path: must start with \"/\"");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/a b'"),
                     "conf/x.json: endpoints[0].calls.user.path: bad character 0x20 in the path "
                     "(percent-encode it)");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/a#b'"),
                     "conf/x.json: endpoints[0].calls.user.path: bad character \"#\" in the path "
                     "(percent-encode it)");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/users/{uid}'"),
                     "conf/x.json: endpoints[0].calls.user.path: no capture {uid} in the endpoint "
                     "path \"/users/{id}\"");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/users/{id'"),
                     "conf/x.json: endpoints[0].calls.user.path: unbalanced \"{\" (write \"{{\" "
                     "for a literal \"{\")");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/users/{query.}'"),
                     "conf/x.json: endpoints[0].calls.user.path: empty variable name in "
                     "\"{query.}\"");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','method':'OPTIONS'"),
                     "conf/x.json: endpoints[0].calls.user.method: unsupported method \"OPTIONS\" "
                     "(expected GET, HEAD, POST, PUT, PATCH or DELETE)");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','method':'get'"),
                     "conf/x.json: endpoints[0].calls.user.method: unsupported method \"get\" "
                     "(expected GET, HEAD, POST, PUT, PATCH or DELETE)");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','timeout_ms':0"),
                     "conf/x.json: endpoints[0].calls.user.timeout_ms: must be between 1 and "
                     "86400000, not 0");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','optional':1"),
                     "conf/x.json: endpoints[0].calls.user.optional: must be a boolean, not an "
                     "integer");
}

static void test_header_errors(void)
{
#define HEADERS(...) CALL_IS("'upstream':'accounts','path':'/x','headers':" __VA_ARGS__)
    CHECK_CONFIG_ERR(HEADERS("[]"),
                     "conf/x.json: endpoints[0].calls.user.headers: must be an object, not an "
                     "array");
    CHECK_CONFIG_ERR(HEADERS("{'x y':'v'}"),
                     "conf/x.json: endpoints[0].calls.user.headers[\"x y\"]: bad header name (a "
                     "header name is an HTTP token)");
    CHECK_CONFIG_ERR(HEADERS("{'':'v'}"),
                     "conf/x.json: endpoints[0].calls.user.headers[\"\"]: bad header name (a "
                     "header name is an HTTP token)");
    CHECK_CONFIG_ERR(HEADERS("{'Host':'v'}"),
                     "conf/x.json: endpoints[0].calls.user.headers.Host: header \"Host\" is set "
                     "by gatherd itself");
    CHECK_CONFIG_ERR(HEADERS("{'Content-Length':'1'}"),
                     "conf/x.json: endpoints[0].calls.user.headers[\"Content-Length\"]: header "
                     "\"Content-Length\" is set by gatherd itself");
    CHECK_CONFIG_ERR(HEADERS("{'X-A':'1','x-a':'2'}"),
                     "conf/x.json: endpoints[0].calls.user.headers[\"x-a\"]: header \"x-a\" is "
                     "given twice (header names are case-insensitive)");
    CHECK_CONFIG_ERR(HEADERS("{'x-a':1}"),
                     "conf/x.json: endpoints[0].calls.user.headers[\"x-a\"]: must be a string, "
                     "not an integer");
    CHECK_CONFIG_ERR(HEADERS("{'x-a':'{header.}'}"),
                     "conf/x.json: endpoints[0].calls.user.headers[\"x-a\"]: empty variable name "
                     "in \"{header.}\"");
    CHECK_CONFIG_ERR(HEADERS("{'x-a':'{nope}'}"),
                     "conf/x.json: endpoints[0].calls.user.headers[\"x-a\"]: no capture {nope} in "
                     "the endpoint path \"/users/{id}\"");
    CHECK_CONFIG_ERR(HEADERS("{'x-a':'a\\r\\nX-Evil: 1'}"),
                     "conf/x.json: endpoints[0].calls.user.headers[\"x-a\"]: bad character 0x0D "
                     "in a header value");
    /* Tabs and non-ASCII bytes are allowed in field values (RFC 9110 section 5.5). */
    gd_config_free(LOAD_OK(HEADERS("{'x-a':'a\\tb \xc3\xa9'}")));
#undef HEADERS
}

static void test_param_errors(void)
{
    CHECK_CONFIG_ERR(ENDPOINT("'params':[]," CALLS),
                     "conf/x.json: endpoints[0].params: must be an object, not an array");
    CHECK_CONFIG_ERR(PARAMS("'query.':'int'"),
                     "conf/x.json: endpoints[0].params[\"query.\"]: bad parameter name (expected "
                     "NAME, query.NAME or header.NAME, NAME being 1 to 64 of A-Z a-z 0-9 - _ .)");
    CHECK_CONFIG_ERR(PARAMS("'query.a b':'int'"),
                     "conf/x.json: endpoints[0].params[\"query.a b\"]: bad parameter name "
                     "(expected NAME, query.NAME or header.NAME, NAME being 1 to 64 of A-Z a-z "
                     "0-9 - _ .)");
    CHECK_CONFIG_ERR(PARAMS("'':'int'"),
                     "conf/x.json: endpoints[0].params[\"\"]: bad parameter name (expected NAME, "
                     "query.NAME or header.NAME, NAME being 1 to 64 of A-Z a-z 0-9 - _ .)");
    CHECK_CONFIG_ERR(PARAMS("'uid':'int'"),
                     "conf/x.json: endpoints[0].params.uid: no capture {uid} in the endpoint path "
                     "\"/users/{id}\"");
    CHECK_CONFIG_ERR(PARAMS("'cookie.sid':'string'"),
                     "conf/x.json: endpoints[0].params[\"cookie.sid\"]: no capture {cookie.sid} in "
                     "the endpoint path \"/users/{id}\"");
    CHECK_CONFIG_ERR(PARAMS("'header.X-A':'string','header.x-a':'int'"),
                     "conf/x.json: endpoints[0].params[\"header.x-a\"]: parameter \"header.x-a\" "
                     "is declared twice (header names are case-insensitive)");
    CHECK_CONFIG_ERR(PARAMS("'id':5"),
                     "conf/x.json: endpoints[0].params.id: must be a type name or an object, not "
                     "an integer");
    CHECK_CONFIG_ERR(PARAMS("'id':'integer'"),
                     "conf/x.json: endpoints[0].params.id: unknown type \"integer\" (expected "
                     "\"string\", \"int\", \"pattern\", \"int_list\" or \"string_list\")");
    CHECK_CONFIG_ERR(PARAMS("'id':{'type':'number'}"),
                     "conf/x.json: endpoints[0].params.id.type: unknown type \"number\" (expected "
                     "\"string\", \"int\", \"pattern\", \"int_list\" or \"string_list\")");
    CHECK_CONFIG_ERR(PARAMS("'id':{'type':1}"),
                     "conf/x.json: endpoints[0].params.id.type: must be a string, not an integer");
    CHECK_CONFIG_ERR(PARAMS("'id':'pattern'"),
                     "conf/x.json: endpoints[0].params.id: type \"pattern\" needs a pattern: "
                     "write {\"pattern\": \"...\"}");
    CHECK_CONFIG_ERR(PARAMS("'id':{'patern':'[0-9]+'}"),
                     "conf/x.json: endpoints[0].params.id.patern: unknown key");
    CHECK_CONFIG_ERR(PARAMS("'id':{'type':'int','pattern':'[0-9]+'}"),
                     "conf/x.json: endpoints[0].params.id.pattern: a pattern needs type "
                     "\"pattern\", not \"int\"");
    CHECK_CONFIG_ERR(PARAMS("'id':{'type':'pattern'}"),
                     "conf/x.json: endpoints[0].params.id.pattern: missing required key");
    CHECK_CONFIG_ERR(PARAMS("'id':{'pattern':5}"),
                     "conf/x.json: endpoints[0].params.id.pattern: must be a string, not an "
                     "integer");
    CHECK_CONFIG_ERR(PARAMS("'id':{'required':false}"),
                     "conf/x.json: endpoints[0].params.id.required: a path capture is always "
                     "present, it cannot be optional");
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'required':'no'}"),
                     "conf/x.json: endpoints[0].params[\"query.a\"].required: must be a boolean, "
                     "not a string");
    CHECK_CONFIG_ERR(PARAMS("'query.limit':{'type':'int','required':true,'default':'10'}"),
                     "conf/x.json: endpoints[0].params[\"query.limit\"].default: only an optional "
                     "parameter can have a default (\"required\": false)");
    CHECK_CONFIG_ERR(PARAMS("'id':{'type':'int','default':'1'}"),
                     "conf/x.json: endpoints[0].params.id.default: only an optional parameter can "
                     "have a default (\"required\": false)");
    CHECK_CONFIG_ERR(PARAMS("'query.limit':{'type':'int','default':10}"),
                     "conf/x.json: endpoints[0].params[\"query.limit\"].default: must be a "
                     "string, not an integer");
}

static void test_param_pattern_errors(void)
{
    CHECK_CONFIG_ERR(PARAMS("'header.x-tenant':{'pattern':'([a-z]+'}"),
                     "conf/x.json: endpoints[0].params[\"header.x-tenant\"].pattern: bad pattern: "
                     "Unmatched ( or \\(");
    CHECK_CONFIG_ERR(PARAMS("'header.x-tenant':{'pattern':'[a-z'}"),
                     "conf/x.json: endpoints[0].params[\"header.x-tenant\"].pattern: bad pattern: "
                     "Unmatched [, [^, [:, [., or [=");
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'a{2,1}'}"),
                     "conf/x.json: endpoints[0].params[\"query.a\"].pattern: bad pattern: Invalid "
                     "content of \\{\\}");
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'a\\\\'}"),
                     "conf/x.json: endpoints[0].params[\"query.a\"].pattern: bad pattern: "
                     "Trailing backslash");
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'a)|(b'}"),
                     "conf/x.json: endpoints[0].params[\"query.a\"].pattern: bad pattern: "
                     "Unmatched ( or \\(");
    /* Alone this compiles, but it would close the anchoring group: "^(a)|(b))$" matches any
     * value that starts with "a". */
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'a)|(b)'}"),
                     "conf/x.json: endpoints[0].params[\"query.a\"].pattern: bad pattern: "
                     "unmatched \")\"");
}

/* `gatherd -t` runs in ExecStartPre: a pattern that glibc would take 30 s and 8 GB to compile
 * is refused before regcomp() sees it. */
#define TOO_COMPLEX                                                                                \
    "conf/x.json: endpoints[0].params[\"query.a\"].pattern: bad pattern: too complex (its "        \
    "repetitions expand to more than 10000 elements; nest fewer {m,n} bounds or make them "        \
    "smaller)"
static void test_pattern_bombs(void)
{
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'(a{1,1000}){1,1000}'}"), TOO_COMPLEX);
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'((a{1,30}){1,30}){1,30}'}"), TOO_COMPLEX);
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'([ab]+x{200}|c){100,}'}"), TOO_COMPLEX);
    /* Found by fuzz_config: repetitions in a row took glibc 11 s to compile. */
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'[1-9]++*+++++++KKKK*K|50'}"),
                     "conf/x.json: endpoints[0].params[\"query.a\"].pattern: bad pattern: two "
                     "repetition operators in a row (such as \"a+*\" or \"a*{2}\") are undefined in "
                     "POSIX patterns: write one, or group the first");
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'a*{2}'}"),
                     "conf/x.json: endpoints[0].params[\"query.a\"].pattern: bad pattern: two "
                     "repetition operators in a row (such as \"a+*\" or \"a*{2}\") are undefined in "
                     "POSIX patterns: write one, or group the first");
    /* Found by fuzz_config: a group left open, its repetitions expanded before the missing
     * ")" is noticed (2 GB). */
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'x((a{1,100}){1,200}'}"), TOO_COMPLEX);
    CHECK_CONFIG_ERR(PARAMS("'query.a':{'pattern':'(a*)*b\\\\1'}"),
                     "conf/x.json: endpoints[0].params[\"query.a\"].pattern: bad pattern: "
                     "back-references (\\1 to \\9) are not supported");
    /* Real-world patterns stay well inside the budget. */
    gd_config_free(LOAD_OK(PARAMS(
        "'query.a':{'pattern':'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'},"
        "'query.b':{'pattern':'(a{1,100}){1,10}'},'query.c':{'pattern':'[a-z]{1,255}'},"
        "'query.d':{'pattern':'[{]x{3}[}]\\\\.'},'query.e':{'pattern':'(a+)*b?'}")));
}

/* 40,000 endpoints took 85 s when each was compared with every other one for duplicates. */
static void test_many_endpoints(void)
{
    enum { N = 50000 };
    size_t cap = (size_t)N * 80 + 256, len = 0;
    char *json = malloc(cap);
    struct timespec t0, t1;
    gd_config_t *cfg = NULL;
    char err[512];

    CHECK(json != NULL);
    len += (size_t)snprintf(json + len, cap - len,
                            "{\"listen\":[\"127.0.0.1:8080\"],\"upstreams\":{\"u\":{\"url\":"
                            "\"http://127.0.0.1:1\"}},\"endpoints\":[");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(json + len, cap - len,
                                "%s{\"path\":\"/e%d/{id}\",\"calls\":{\"a\":{\"upstream\":"
                                "\"u\",\"path\":\"/x\"}}}",
                                i == 0 ? "" : ",", i);
    snprintf(json + len, cap - len, "]}");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(gd_config_load_string(json, "conf/x.json", &cfg, err, sizeof(err)) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(cfg != NULL && cfg->nendpoints == N);
    /* Not a timing assertion: quadratic work takes minutes here, linear work a second even
     * under valgrind; the bound only catches the former. */
    CHECK(t1.tv_sec - t0.tv_sec < 60);
    gd_config_free(cfg);
    free(json);
}

static void test_param_pattern_forms(void)
{
    /* Parentheses inside brackets or escaped do not count as groups. */
    gd_config_t *cfg = LOAD_OK(PARAMS("'query.a':{'pattern':'[)(]+'},"
                                      "'query.b':{'pattern':'\\\\)x\\\\('},"
                                      "'query.c':{'pattern':'[]()]|[[:alpha:])]'},"
                                      "'query.d':{'type':'pattern','pattern':'(a|b)(c)'},"
                                      "'query.e':{'pattern':''}"));
    const gd_param_t *p = cfg->endpoints[0].params;

    CHECK_INT_EQ(cfg->endpoints[0].nparams, 6);
    CHECK_INT_EQ(regexec(&p[1].pattern, ")(", 0, NULL, 0), 0);
    CHECK_INT_EQ(regexec(&p[2].pattern, ")x(", 0, NULL, 0), 0);
    CHECK_INT_EQ(regexec(&p[3].pattern, "]", 0, NULL, 0), 0);
    CHECK_INT_EQ(regexec(&p[3].pattern, "q", 0, NULL, 0), 0);
    CHECK(regexec(&p[3].pattern, "qq", 0, NULL, 0) != 0);
    CHECK_INT_EQ(regexec(&p[4].pattern, "bc", 0, NULL, 0), 0);
    CHECK(regexec(&p[4].pattern, "abc", 0, NULL, 0) != 0);
    CHECK_INT_EQ(regexec(&p[5].pattern, "", 0, NULL, 0), 0); /* the empty pattern: "" only */
    CHECK(regexec(&p[5].pattern, "x", 0, NULL, 0) != 0);
    gd_config_free(cfg);

    /* The alternation is inside the group: "a|b" means ^(a|b)$, not ^a or b$. */
    cfg = LOAD_OK(PARAMS("'query.a':{'pattern':'a|b'}"));
    p = &cfg->endpoints[0].params[1];
    CHECK_INT_EQ(regexec(&p->pattern, "b", 0, NULL, 0), 0);
    CHECK(regexec(&p->pattern, "ab", 0, NULL, 0) != 0);
    CHECK(regexec(&p->pattern, "bx", 0, NULL, 0) != 0);
    gd_config_free(cfg);
}

static void test_param_default_errors(void)
{
    CHECK_CONFIG_ERR(PARAMS("'query.limit':{'type':'int','required':false,'default':'ten'}"),
                     "conf/x.json: endpoints[0].params[\"query.limit\"].default: \"ten\" is not "
                     "an int (an optional \"-\" and 1 to 19 digits, fitting a signed 64-bit "
                     "integer)");
    CHECK_CONFIG_ERR(PARAMS("'query.limit':{'type':'int','default':'9223372036854775808'}"),
                     "conf/x.json: endpoints[0].params[\"query.limit\"].default: "
                     "\"9223372036854775808\" is not an int (an optional \"-\" and 1 to 19 "
                     "digits, fitting a signed 64-bit integer)");
    CHECK_CONFIG_ERR(PARAMS("'query.limit':{'type':'int','default':''}"),
                     "conf/x.json: endpoints[0].params[\"query.limit\"].default: \"\" is not an "
                     "int (an optional \"-\" and 1 to 19 digits, fitting a signed 64-bit "
                     "integer)");
    CHECK_CONFIG_ERR(PARAMS("'query.sort':{'pattern':'asc|desc','default':'up'}"),
                     "conf/x.json: endpoints[0].params[\"query.sort\"].default: \"up\" does not "
                     "match the pattern");
    CHECK_CONFIG_ERR(PARAMS("'query.sort':{'pattern':'asc|desc','default':'ascx'}"),
                     "conf/x.json: endpoints[0].params[\"query.sort\"].default: \"ascx\" does not "
                     "match the pattern");
}

static void test_param_defaults_accepted(void)
{
    gd_config_t *cfg = LOAD_OK(PARAMS("'query.a':{'type':'int','default':'-9223372036854775808'},"
                                      "'query.b':{'type':'int','default':'9223372036854775807'},"
                                      "'query.c':{'pattern':'asc|desc','default':'desc'},"
                                      "'query.d':{'type':'int'},"
                                      "'header.x':'string',"
                                      "'query.e':{'default':''}"));
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];

    CHECK_INT_EQ(ep->nparams, 7);
    CHECK_STR_EQ(ep->params[1].default_value, "-9223372036854775808");
    CHECK_STR_EQ(ep->params[2].default_value, "9223372036854775807");
    CHECK_STR_EQ(ep->params[3].default_value, "desc");
    /* An optional int without a default is "" when absent: no explicit default to check. */
    CHECK_INT_EQ(ep->params[4].type, GD_PARAM_INT);
    CHECK(!ep->params[4].is_required);
    CHECK_STR_EQ(ep->params[4].default_value, "");
    CHECK_STR_EQ(ep->params[5].name, "header.x");
    CHECK(!ep->params[5].is_required);
    CHECK_STR_EQ(ep->params[6].default_value, "");
    gd_config_free(cfg);
}

static void test_template_params_dedup(void)
{
    /* A parameter used by several templates and calls is kept once. */
    gd_config_t *cfg = LOAD_OK(ENDPOINTS(
        "{'path':'/a/{x}/{y}','params':{'query.q':'int'},'calls':{"
        "'one':{'upstream':'accounts','path':'/{y}?q={query.q}&r={query.r}',"
        "'headers':{'x-h':'{header.X-H}{header.x-h}'}},"
        "'two':{'upstream':'accounts','path':'/{x}/{query.r}/{query.q}/{header.x-h}'}}}"));
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];

    CHECK_INT_EQ(ep->nparams, 5);
    CHECK_STR_EQ(ep->params[0].name, "x");
    CHECK_STR_EQ(ep->params[1].name, "y");
    CHECK_STR_EQ(ep->params[2].name, "query.q");
    CHECK_STR_EQ(ep->params[3].name, "query.r");
    CHECK_STR_EQ(ep->params[4].name, "header.x-h");
    CHECK_INT_EQ(ep->calls[0].path.parts[1].value_index, 1);
    CHECK_INT_EQ(ep->calls[0].path.parts[3].value_index, 2);
    CHECK_INT_EQ(ep->calls[0].path.parts[5].value_index, 3);
    CHECK_INT_EQ(ep->calls[0].headers[0].value.parts[0].value_index, 4);
    CHECK_INT_EQ(ep->calls[0].headers[0].value.parts[1].value_index, 4);
    CHECK_INT_EQ(ep->calls[1].path.parts[1].value_index, 0);
    CHECK_INT_EQ(ep->calls[1].path.parts[3].value_index, 3);
    CHECK_INT_EQ(ep->calls[1].path.parts[5].value_index, 2);
    CHECK_INT_EQ(ep->calls[1].path.parts[7].value_index, 4);
    gd_config_free(cfg);
}

static void test_call_order(void)
{
    gd_config_t *cfg = LOAD_OK(ENDPOINT("'calls':{"
                                        "'z':{'upstream':'accounts','path':'/z'},"
                                        "'a':{'upstream':'accounts','path':'/a'},"
                                        "'m':{'upstream':'accounts','path':'/m'}}"));
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];

    CHECK_INT_EQ(ep->ncalls, 3);
    CHECK_STR_EQ(ep->calls[0].name, "z");
    CHECK_STR_EQ(ep->calls[1].name, "a");
    CHECK_STR_EQ(ep->calls[2].name, "m");
    gd_config_free(cfg);
}

static void test_name_json(void)
{
    gd_config_t *cfg = LOAD_OK(ENDPOINT("'calls':{"
                                        "'a\\\\b\\nc':{'upstream':'accounts','path':'/z'},"
                                        "'caf\xc3\xa9':{'upstream':'accounts','path':'/a'}}"));
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];

    CHECK_STR_EQ(ep->calls[0].name, "a\\b\nc");
    CHECK_STR_EQ(ep->calls[0].name_json, "\"a\\\\b\\nc\"");
    CHECK_STR_EQ(ep->calls[1].name_json, "\"caf\xc3\xa9\"");
    gd_config_free(cfg);
}

static void test_messages_stay_on_one_line(void)
{
    /* Strings from the config are quoted JSON-style in messages. */
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'a\\nb','path':'/x'"),
                     "conf/x.json: endpoints[0].calls.user.upstream: unknown upstream \"a\\nb\"");
    CHECK_CONFIG_ERR(ROOT("'a\\nb':1"), "conf/x.json: [\"a\\nb\"]: unknown key");
}

static void test_error_buffer_truncation(void)
{
    gd_config_t *cfg = NULL;
    char *text = dq(ROOT("'thread':1")), err[12];

    memset(err, 'x', sizeof(err));
    CHECK_INT_EQ(gd_config_load_string(text, "conf/x.json", &cfg, err, sizeof(err)), -EINVAL);
    CHECK_STR_EQ(err, "conf/x.json");
    CHECK_INT_EQ(gd_config_load_string(text, "conf/x.json", &cfg, err, 0), -EINVAL);
    CHECK(cfg == NULL);
    free(text);
}

/* Writes @json (with ' for ") to a new temporary file whose name goes to @path. */
static void write_temp(const char *json, char path[64])
{
    char *text = dq(json);
    int fd;

    snprintf(path, 64, "/tmp/gd_test_config_XXXXXX");
    fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_INT_EQ(write(fd, text, strlen(text)), strlen(text));
    close(fd);
    free(text);
}

static void test_load_file(void)
{
    char path[64], err[512], want[256];
    gd_config_t *cfg = NULL;

    write_temp(full_config, path);
    CHECK_INT_EQ(gd_config_load_file(path, &cfg, err, sizeof(err)), 0);
    CHECK_STR_EQ(cfg->source, path);
    CHECK_INT_EQ(cfg->nendpoints, 3);
    cfg = gd_config_free(cfg);
    unlink(path);

    write_temp("{\n  'listen': ['*:80'],\n  'threads': 1,\n  'threads': 2\n}", path);
    CHECK_INT_EQ(gd_config_load_file(path, &cfg, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s:4:11: duplicate object key near '\"threads\"'", path);
    CHECK_STR_EQ(err, want);
    unlink(path);

    write_temp(ROOT("'threads':-1"), path);
    CHECK_INT_EQ(gd_config_load_file(path, &cfg, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s: threads: must be between 0 and 1024, not -1", path);
    CHECK_STR_EQ(err, want);
    unlink(path);
    CHECK(cfg == NULL);
}

static void test_load_file_errors(void)
{
    gd_config_t *cfg = NULL;
    char path[64], err[512], want[256];
    FILE *f;
    int fd;

    CHECK_INT_EQ(gd_config_load_file("/nonexistent/gatherd.json", &cfg, err, sizeof(err)), -ENOENT);
    CHECK_STR_EQ(err, "/nonexistent/gatherd.json: cannot open: No such file or directory");
    CHECK_INT_EQ(gd_config_load_file("/tmp", &cfg, err, sizeof(err)), -EISDIR);
    CHECK_STR_EQ(err, "/tmp: cannot read: Is a directory");
    CHECK(cfg == NULL);

    /* A NUL byte in the file is an error, not the end of the document. */
    snprintf(path, sizeof(path), "/tmp/gd_test_config_XXXXXX");
    fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK_INT_EQ(fwrite("{\"a\":1}\0x", 1, 9, f), 9);
    fclose(f);
    CHECK_INT_EQ(gd_config_load_file(path, &cfg, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s:1:8: end of file expected near end of file", path);
    CHECK_STR_EQ(err, want);
    unlink(path);

    /* An endless file (`gatherd -t -c /dev/zero` once read 2 GiB and aborted), and one a byte
     * too large, end with an error after reading at most one byte past the limit. */
    CHECK_INT_EQ(gd_config_load_file("/dev/zero", &cfg, err, sizeof(err)), -EFBIG);
    CHECK_STR_EQ(err, "/dev/zero: larger than 16 MiB, the most a config may be");
    snprintf(path, sizeof(path), "/tmp/gd_test_config_XXXXXX");
    fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_INT_EQ(ftruncate(fd, GD_CONFIG_MAX_BYTES + 1), 0);
    close(fd);
    CHECK_INT_EQ(gd_config_load_file(path, &cfg, err, sizeof(err)), -EFBIG);
    CHECK(cfg == NULL);
    unlink(path);
}

/* A config with a postgres section and one endpoint /users/{id} whose call "orders" has these
 * members. */
#define SQL_CALL_IS(...)                                                                           \
    "{" LISTEN "," UPSTREAMS ",'postgres':{'conninfo':'host=/run/postgresql'},"                   \
    "'endpoints':[{'path':'/users/{id}','calls':{'orders':{" __VA_ARGS__ "}}}]}"

static void test_operations_keys(void)
{
    gd_config_t *cfg = LOAD_OK(ROOT("'log':{'format':'json','level':'debug'}"));
    CHECK(cfg->log.is_json);
    CHECK_INT_EQ(cfg->log.level, 3);
    CHECK(cfg->has_admin); /* on by default */
    CHECK_STR_EQ(cfg->admin_listen.text, "127.0.0.1:9090");
    gd_config_free(cfg);
    cfg = LOAD_OK(ROOT("'admin_listen':null"));
    CHECK(!cfg->has_admin);
    CHECK(!cfg->log.is_json);
    CHECK_INT_EQ(cfg->log.level, 2);
    gd_config_free(cfg);
    CHECK_CONFIG_ERR(ROOT("'admin_listen':'127.0.0.1:8080'"),
                     "conf/x.json: admin_listen: same address as listen[0]");
    CHECK_CONFIG_ERR(ROOT("'admin_listen':9090"),
                     "conf/x.json: admin_listen: must be a string or null, not an integer");
    CHECK_CONFIG_ERR(ROOT("'log':{'format':'xml'}"),
                     "conf/x.json: log.format: must be \"text\" or \"json\", not \"xml\"");
    CHECK_CONFIG_ERR(ROOT("'log':{'level':'trace'}"),
                     "conf/x.json: log.level: must be \"error\", \"warn\", \"info\" or \"debug\", "
                     "not \"trace\"");
    CHECK_CONFIG_ERR(ROOT("'log':{'colour':true}"), "conf/x.json: log.colour: unknown key");
}

/* The SQL call "orders" of a config with @pg as the postgres section's extra members. */
#define SQL_CALL_WITH_PG(pg, ...)                                                                  \
    "{" LISTEN "," UPSTREAMS ",'postgres':{'conninfo':'host=/run/postgresql'" pg "},"             \
    "'endpoints':[{'path':'/users/{id}','calls':{'orders':{" __VA_ARGS__ "}}}]}"

static void test_sql_prepared_and_retry(void)
{
    static const struct {
        const char *sql;
        bool is_select;
    } selects[] = {
        {"SELECT 1", true},
        {"  select 1", true},
        {"\\n(SELECT 1) UNION (SELECT 2)", true},
        {"/* a comment */ SELECT 1", true},
        {"-- a line\\nSELECT 1", true},
        {"SELECT(1)", true},
        {"VALUES (1)", true},
        {"selection", false},
        {"SELECT_x", false},
        {"WITH a AS (SELECT 1) SELECT * FROM a", false},
        {"INSERT INTO t VALUES (1)", false},
        {"/* unterminated SELECT 1", false},
    };
    char json[512];
    gd_config_t *cfg = LOAD_OK(SQL_CALL_WITH_PG("", "'sql':'SELECT 1'"));

    CHECK(cfg->postgres.is_prepared); /* the default */
    CHECK_INT_EQ(cfg->postgres.retry.attempts, 1);
    CHECK(cfg->postgres.retry_budget != NULL);
    CHECK_INT_EQ(cfg->endpoints[0].calls[0].retry.attempts, 1);
    gd_config_free(cfg);

    for (size_t i = 0; i < sizeof(selects) / sizeof(selects[0]); i++) {
        snprintf(json, sizeof(json), SQL_CALL_IS("'sql':'%s'"), selects[i].sql);
        cfg = LOAD_OK(json);
        CHECK(cfg != NULL);
        if (cfg == NULL)
            continue;
        if (cfg->endpoints[0].calls[0].is_idempotent != selects[i].is_select)
            fprintf(stderr, "is_idempotent of %s\n", selects[i].sql);
        CHECK(cfg->endpoints[0].calls[0].is_idempotent == selects[i].is_select);
        gd_config_free(cfg);
    }

    /* the section's retry is the default, and holds the budget; a call replaces keys */
    cfg = LOAD_OK(SQL_CALL_WITH_PG(",'prepared':false,'retry':{'budget_percent':5}",
                                   "'sql':'SELECT 1','retry':{'backoff_ms':7}"));
    CHECK(!cfg->postgres.is_prepared);
    CHECK_INT_EQ(cfg->postgres.retry.attempts, 3);
    CHECK_INT_EQ(cfg->postgres.retry.budget_percent, 5);
    CHECK_INT_EQ(cfg->endpoints[0].calls[0].retry.attempts, 3);
    CHECK_INT_EQ(cfg->endpoints[0].calls[0].retry.backoff_ms, 7);
    CHECK_INT_EQ(cfg->endpoints[0].calls[0].retry.budget_percent, 5);
    gd_config_free(cfg);
    /* inherited by an INSERT, which never applies it: not an error */
    cfg = LOAD_OK(SQL_CALL_WITH_PG(",'retry':{}", "'sql':'INSERT INTO t VALUES (1)'"));
    CHECK(!cfg->endpoints[0].calls[0].is_idempotent);
    gd_config_free(cfg);
    cfg = LOAD_OK(SQL_CALL_IS("'sql':'INSERT INTO t VALUES (1)','idempotent':true,"
                              "'retry':{'attempts':2}"));
    CHECK(cfg->endpoints[0].calls[0].is_idempotent);
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'INSERT INTO t VALUES (1)','retry':{'attempts':2}"),
                     "conf/x.json: endpoints[0].calls.orders.retry: a SQL call is never retried "
                     "unless it is a plain SELECT or marked \"idempotent\": true");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1','retry':{'on':['io']}"),
                     "conf/x.json: endpoints[0].calls.orders.retry.on: not for SQL calls: they "
                     "retry serialization failures (40001), deadlocks (40P01) and connections "
                     "broken before the query was sent, nothing else");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1','retry':{'min_retries_per_s':1}"),
                     "conf/x.json: endpoints[0].calls.orders.retry.min_retries_per_s: the retry "
                     "budget is all SQL calls': set it in the postgres section's \"retry\"");
    CHECK_CONFIG_ERR(SQL_CALL_WITH_PG(",'prepared':1", "'sql':'SELECT 1'"),
                     "conf/x.json: postgres.prepared: must be a boolean, not an integer");
}

static void test_postgres_section(void)
{
    gd_config_t *cfg = LOAD_OK(ROOT("'postgres':{}"));
    CHECK(cfg->has_postgres);
    CHECK_STR_EQ(cfg->postgres.conninfo, "");
    CHECK_INT_EQ(cfg->postgres.pool_size, 8);
    CHECK_INT_EQ(cfg->postgres.acquire_timeout_ms, 200);
    CHECK_INT_EQ(cfg->postgres.connect_timeout_ms, 2000);
    CHECK_INT_EQ(cfg->postgres.readiness, GD_PG_READINESS_FIRST_CONNECT);
    gd_config_free(cfg);
    cfg = LOAD_OK(ROOT("'postgres':{'readiness':'connected'}"));
    CHECK_INT_EQ(cfg->postgres.readiness, GD_PG_READINESS_CONNECTED);
    gd_config_free(cfg);
    cfg = LOAD_OK(ROOT("'postgres':{'readiness':'ignored'}"));
    CHECK_INT_EQ(cfg->postgres.readiness, GD_PG_READINESS_IGNORED);
    gd_config_free(cfg);
    CHECK_CONFIG_ERR(ROOT("'postgres':{'readiness':'always'}"),
                     "conf/x.json: postgres.readiness: must be \"first_connect\", \"connected\" or "
                     "\"ignored\", not \"always\"");
    CHECK_CONFIG_ERR(ROOT("'postgres':{'pool_size':0}"),
                     "conf/x.json: postgres.pool_size: must be between 1 and 10000, not 0");
    CHECK_CONFIG_ERR(ROOT("'postgres':{'conninfo':'host'}"),
                     "conf/x.json: postgres.conninfo: not a valid libpq connection string or URI: "
                     "missing \"=\" after \"host\" in connection info string");
    /* libpq's message could quote a password: then it is left out */
    CHECK_CONFIG_ERR(ROOT("'postgres':{'conninfo':'password=s3cret host'}"),
                     "conf/x.json: postgres.conninfo: not a valid libpq connection string or URI");
    CHECK_CONFIG_ERR(ROOT("'postgres':{'acquire_timeout_ms':0}"),
                     "conf/x.json: postgres.acquire_timeout_ms: must be between 1 and 86400000, "
                     "not 0");
    CHECK_CONFIG_ERR(ROOT("'postgres':{'max_rows':0}"),
                     "conf/x.json: postgres.max_rows: must be >= 1, not 0");
    CHECK_CONFIG_ERR(ROOT("'postgres':{'max_body_bytes':'8M'}"),
                     "conf/x.json: postgres.max_body_bytes: must be an integer, not a string");
}

/* Every SQL call is bounded: by the postgres section's limits unless it has its own. */
static void test_sql_call_limits(void)
{
    gd_config_t *cfg = LOAD_OK(SQL_CALL_IS("'sql':'SELECT 1'"));
    CHECK_INT_EQ(cfg->postgres.max_rows, 10000);
    CHECK_INT_EQ(cfg->postgres.max_body_bytes, 8388608);
    CHECK_INT_EQ(cfg->endpoints[0].calls[0].max_rows, 10000);
    CHECK_INT_EQ(cfg->endpoints[0].calls[0].max_body_bytes, 8388608);
    gd_config_free(cfg);
    cfg = LOAD_OK("{" LISTEN "," UPSTREAMS ",'postgres':{'max_rows':50,'max_body_bytes':4096},"
                  "'endpoints':[{'path':'/a','calls':{"
                  "'x':{'sql':'SELECT 1'},"
                  "'y':{'sql':'SELECT 2','max_rows':100000,'max_body_bytes':1}}}]}");
    CHECK_INT_EQ(cfg->endpoints[0].calls[0].max_rows, 50);
    CHECK_INT_EQ(cfg->endpoints[0].calls[0].max_body_bytes, 4096);
    CHECK_INT_EQ(cfg->endpoints[0].calls[1].max_rows, 100000);
    CHECK_INT_EQ(cfg->endpoints[0].calls[1].max_body_bytes, 1);
    gd_config_free(cfg);
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1','max_rows':0"),
                     "conf/x.json: endpoints[0].calls.orders.max_rows: must be >= 1, not 0");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1','max_rows':1.5"),
                     "conf/x.json: endpoints[0].calls.orders.max_rows: must be an integer, not a "
                     "real number");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1','max_body_bytes':-1"),
                     "conf/x.json: endpoints[0].calls.orders.max_body_bytes: must be >= 1, not -1");
    /* an HTTP call's limit is its upstream's */
    CHECK_CONFIG_ERR(SQL_CALL_IS("'upstream':'accounts','path':'/x','max_rows':5"),
                     "conf/x.json: endpoints[0].calls.orders.max_rows: unknown key");
}

/* References to call results: each call's needs, the order, and value indexes past every
 * parameter (the response's query.z included, though it compiles after the calls). */
static void test_call_dependencies(void)
{
    gd_config_t *cfg = LOAD_OK(ENDPOINT(
        "'calls':{'orders':{'upstream':'accounts','path':'/o/{user.company.id}?q={query.q}',"
        "'headers':{'x-a':'{count(user.tags)}'},'after':['first']},"
        "'user':{'upstream':'accounts','path':'/u/{id}','when':'{query.w}'},"
        "'first':{'upstream':'accounts','path':'/f','after':['user','user']}},"
        "'response':{'z':'{query.z}'}"));
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];
    CHECK(ep->has_dependencies);
    CHECK_INT_EQ(ep->nrefs, 2);
    CHECK_INT_EQ(ep->calls[0].nneeds, 2); /* user (once), first */
    CHECK_INT_EQ(ep->calls[0].needs[0], 1);
    CHECK_INT_EQ(ep->calls[0].needs[1], 2);
    CHECK_INT_EQ(ep->calls[2].nneeds, 1);
    CHECK_INT_EQ(ep->calls[0].first_ref, 0);
    CHECK_INT_EQ(ep->calls[0].nrefs, 2);
    CHECK_INT_EQ(ep->refs[0].use, GD_REF_URL);
    CHECK_INT_EQ(ep->refs[1].use, GD_REF_TEXT);
    CHECK_STR_EQ(ep->refs[0].text, "{user.company.id}");
    CHECK_INT_EQ(ep->refs[1].expr.kind, GD_EXPR_COUNT);
    /* user, first, orders */
    CHECK_INT_EQ(ep->call_order[0], 1);
    CHECK_INT_EQ(ep->call_order[1], 2);
    CHECK_INT_EQ(ep->call_order[2], 0);
    /* id, query.q, query.w, query.z: the references come after */
    CHECK_INT_EQ(ep->nparams, 4);
    CHECK_INT_EQ(ep->calls[0].path.parts[1].value_index, 4);
    CHECK_INT_EQ(ep->calls[0].headers[0].value.parts[0].value_index, 5);
    CHECK(ep->calls[1].has_when);
    gd_config_free(cfg);

    /* nothing waits: no order, the old path */
    cfg = LOAD_OK(CALL_IS("'upstream':'accounts','path':'/u/{id}'"));
    CHECK(!cfg->endpoints[0].has_dependencies);
    CHECK(cfg->endpoints[0].call_order == NULL);
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(ENDPOINT("'calls':{'a':{'upstream':'accounts','path':'/{b.x}'},"
                              "'b':{'upstream':'accounts','path':'/','after':['a']}}"),
                     "conf/x.json: endpoints[0].calls.a: the calls depend on each other in a "
                     "cycle: a -> b -> a (a call that references another's result, or names it "
                     "in \"after\", waits for it)");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/{usr.x}'"),
                     "conf/x.json: endpoints[0].calls.user.path: \"{usr.x}\": unknown call or "
                     "source \"usr\" (not a call of this endpoint, nor a path capture, nor "
                     "query.NAME or header.NAME)");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/','after':'user'"),
                     "conf/x.json: endpoints[0].calls.user.after: must be an array of call "
                     "names, not a string");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/','when':'{id} and {id}'"),
                     "conf/x.json: endpoints[0].calls.user.when: must be exactly one reference "
                     "like \"{query.include}\", not \"{id} and {id}\"");
}

static void test_sql_calls(void)
{
    gd_config_t *cfg = LOAD_OK(SQL_CALL_IS(
        "'sql':'SELECT * FROM t WHERE a = $1 AND b = $2 -- $9\\n AND c = \\u0027 $7 \\u0027 AND d = $$ $8 $$',"
        "'args':['{id}','{query.x}'],'row':'one'"));
    const gd_call_conf_t *c = &cfg->endpoints[0].calls[0];
    CHECK_INT_EQ(c->type, GD_CALL_TYPE_SQL);
    CHECK_INT_EQ(c->nargs, 2);
    CHECK(c->is_one_row);
    CHECK_INT_EQ(cfg->nstatements, 1);
    CHECK_INT_EQ(cfg->statement_nparams[0], 2);
    gd_config_free(cfg);
    /* the same SQL text in two calls is one statement */
    cfg = LOAD_OK("{" LISTEN "," UPSTREAMS ",'postgres':{},'endpoints':[{'path':'/a/{id}','calls':{"
                  "'x':{'sql':'SELECT $1::int','args':['{id}']},"
                  "'y':{'sql':'SELECT $1::int','args':['{id}']}}}]}");
    CHECK_INT_EQ(cfg->nstatements, 1);
    CHECK_INT_EQ(cfg->endpoints[0].calls[1].statement, 0);
    gd_config_free(cfg);
    /* which statements may share a batch: plain selects without INTO or a row lock */
    static const struct {
        const char *sql;
        bool is_batchable;
    } batchable[] = {
        {"SELECT id FROM t WHERE a = 1", true},
        {" -- c\\n (VALUES (1))", true},
        {"table t", true},
        {"SELECT \\u0027for update\\u0027 AS x, \\\"into\\\" FROM t", true},
        {"SELECT updated_at, info FROM t -- into", true},
        {"SELECT * FROM t FOR UPDATE", false},
        {"SELECT * FROM t for  no key update", false},
        {"SELECT * FROM t FOR /* x */ SHARE", false},
        {"SELECT * FROM t FOR KEY SHARE", false},
        {"SELECT * INTO t2 FROM t", false},
        {"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", false},
        {"INSERT INTO t VALUES (1)", false},
    };
    for (size_t i = 0; i < sizeof(batchable) / sizeof(batchable[0]); i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 "{" LISTEN "," UPSTREAMS ",'postgres':{},'endpoints':[{'path':'/a','calls':{"
                 "'x':{'sql':'%s'}}}]}",
                 batchable[i].sql);
        cfg = LOAD_OK(json);
        if (cfg->statement_is_batchable[0] != batchable[i].is_batchable)
            gd__test_fail(__FILE__, __LINE__, "%s: batchable %d", batchable[i].sql,
                          (int)cfg->statement_is_batchable[0]);
        gd_config_free(cfg);
    }

    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT $2','args':['{id}']"),
                     "conf/x.json: endpoints[0].calls.orders.args: has 1 value but the SQL's "
                     "highest placeholder is $2");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1','args':['{id}']"),
                     "conf/x.json: endpoints[0].calls.orders.args: has 1 value but the SQL's "
                     "highest placeholder is $0");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'  '"),
                     "conf/x.json: endpoints[0].calls.orders.sql: must not be empty");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1; DROP TABLE t'"),
                     "conf/x.json: endpoints[0].calls.orders.sql: must be one statement (text "
                     "follows a \";\")");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT $1','args':[1]"),
                     "conf/x.json: endpoints[0].calls.orders.args[0]: must be a string, not an "
                     "integer");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT $1','args':['{nope}']"),
                     "conf/x.json: endpoints[0].calls.orders.args[0]: no capture {nope} in the "
                     "endpoint path \"/users/{id}\"");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1','row':'two'"),
                     "conf/x.json: endpoints[0].calls.orders.row: must be \"one\" or \"many\", "
                     "not \"two\"");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1','path':'/x'"),
                     "conf/x.json: endpoints[0].calls.orders.path: unknown key");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'sql':'SELECT 1','upstream':'accounts'"),
                     "conf/x.json: endpoints[0].calls.orders: a call has either \"upstream\" or "
                     "\"sql\", not both");
    CHECK_CONFIG_ERR(SQL_CALL_IS("'upstream':'accounts','path':'/x','args':[]"),
                     "conf/x.json: endpoints[0].calls.orders.args: unknown key");
    CHECK_CONFIG_ERR(ENDPOINT("'calls':{'orders':{'sql':'SELECT 1'}}"),
                     "conf/x.json: endpoints[0].calls.orders.sql: a SQL call needs a \"postgres\" "
                     "section at the top level");
}

/* "cors", "compress", "cache_control", "etag": defaults, inheritance and overrides. */
static void test_front_keys(void)
{
    gd_config_t *cfg = LOAD_OK(ENDPOINTS("{'path':'/x'," CALLS "}"));
    const gd_endpoint_conf_t *ep = &cfg->endpoints[0];

    CHECK(cfg->cors == NULL);
    CHECK(ep->cors == NULL);
    CHECK(cfg->compress.is_enabled);
    CHECK_INT_EQ(cfg->compress.min_bytes, 1024);
    CHECK_INT_EQ(cfg->compress.level, 1);
    CHECK(ep->compress.is_enabled);
    CHECK_INT_EQ(ep->compress.min_bytes, 1024);
    CHECK(ep->cache_control == NULL);
    CHECK(!ep->has_etag);
    gd_config_free(cfg);

    cfg = LOAD_OK("{" LISTEN "," UPSTREAMS ","
                  "'cors':{'origins':['https://app.example.com','http://[::1]:8080']},"
                  "'compress':{'min_bytes':10,'level':6},"
                  "'endpoints':[{'path':'/a'," CALLS "},"
                  "{'path':'/b','cors':false,'compress':false,"
                  " 'cache_control':'private, max-age=30','etag':true," CALLS "},"
                  "{'path':'/c','compress':{'level':9},"
                  " 'cors':{'origins':['*'],'methods':['GET','POST'],'headers':['X-Tenant'],"
                  "  'expose_headers':[],'max_age_s':0}," CALLS "}]}");
    const gd_cors_conf_t *c = cfg->cors;
    CHECK(c != NULL);
    CHECK_INT_EQ(c->norigins, 2);
    CHECK_STR_EQ(c->origins[1], "http://[::1]:8080");
    CHECK(!c->is_any_origin);
    CHECK(!c->has_credentials);
    CHECK(c->methods == NULL);
    CHECK_STR_EQ(c->headers_joined, "content-type, x-request-id, traceparent");
    CHECK(c->has_default_headers);
    CHECK_STR_EQ(c->expose_headers_joined, "X-Gatherd-Complete, X-Request-Id, ETag, Retry-After");
    CHECK_INT_EQ(c->max_age_s, 600);
    CHECK(cfg->endpoints[0].cors == c);
    CHECK_INT_EQ(cfg->endpoints[0].compress.min_bytes, 10);
    CHECK_INT_EQ(cfg->endpoints[0].compress.level, 6);
    CHECK(cfg->endpoints[1].cors == NULL);
    CHECK(!cfg->endpoints[1].compress.is_enabled);
    CHECK_STR_EQ(cfg->endpoints[1].cache_control, "private, max-age=30");
    CHECK(cfg->endpoints[1].has_etag);
    c = cfg->endpoints[2].cors;
    CHECK(c != NULL && c != cfg->cors);
    CHECK(c->is_any_origin);
    CHECK_STR_EQ(c->methods_joined, "GET, POST");
    CHECK_STR_EQ(c->headers_joined, "x-tenant");
    CHECK(!c->has_default_headers);
    CHECK_STR_EQ(c->expose_headers_joined, "");
    CHECK_INT_EQ(c->max_age_s, 0);
    CHECK_INT_EQ(cfg->endpoints[2].compress.min_bytes, 10); /* the top level's */
    CHECK_INT_EQ(cfg->endpoints[2].compress.level, 9);
    gd_config_free(cfg);

    /* compress off at the top level, on again for one endpoint with the defaults */
    cfg = LOAD_OK("{" LISTEN "," UPSTREAMS ",'compress':false,"
                  "'endpoints':[{'path':'/a'," CALLS "},{'path':'/b','compress':{}," CALLS "}]}");
    CHECK(!cfg->compress.is_enabled);
    CHECK(!cfg->endpoints[0].compress.is_enabled);
    CHECK(cfg->endpoints[1].compress.is_enabled);
    CHECK_INT_EQ(cfg->endpoints[1].compress.min_bytes, 1024);
    gd_config_free(cfg);
}

static void test_front_key_errors(void)
{
    CHECK_CONFIG_ERR(ROOT("'cors':{}"), "conf/x.json: cors.origins: missing required key");
    CHECK_CONFIG_ERR(ROOT("'cors':true"), "conf/x.json: cors: must be an object or false, not a "
                                          "boolean");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':[]}"), "conf/x.json: cors.origins: must not be empty");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':'*'}"),
                     "conf/x.json: cors.origins: must be an array of strings, not a string");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['https://a.example','https://b.example/']}"),
                     "conf/x.json: cors.origins[1]: must be an origin like "
                     "\"https://app.example.com\" (scheme, host, optional port, no path) or "
                     "\"*\", not \"https://b.example/\"");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['ftp://a']}"),
                     "conf/x.json: cors.origins[0]: must be an origin like "
                     "\"https://app.example.com\" (scheme, host, optional port, no path) or "
                     "\"*\", not \"ftp://a\"");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['http://a:0']}"),
                     "conf/x.json: cors.origins[0]: must be an origin like "
                     "\"https://app.example.com\" (scheme, host, optional port, no path) or "
                     "\"*\", not \"http://a:0\"");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':[1]}"),
                     "conf/x.json: cors.origins[0]: must be a string, not an integer");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['*'],'credentials':true}"),
                     "conf/x.json: cors.origins[0]: \"*\" cannot be used with \"credentials\": "
                     "true (browsers refuse it): list the origins");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['http://a','*']}"),
                     "conf/x.json: cors.origins[1]: \"*\" must be the only origin");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['*'],'methods':['get']}"),
                     "conf/x.json: cors.methods[0]: must be an upper-case HTTP method like "
                     "\"GET\", not \"get\"");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['*'],'headers':['x y']}"),
                     "conf/x.json: cors.headers[0]: must be a header name, not \"x y\"");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['*'],'expose_headers':['']}"),
                     "conf/x.json: cors.expose_headers[0]: must be a header name, not \"\"");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['*'],'max_age_s':86401}"),
                     "conf/x.json: cors.max_age_s: must be between 0 and 86400, not 86401");
    CHECK_CONFIG_ERR(ROOT("'cors':{'origins':['*'],'credential':false}"),
                     "conf/x.json: cors.credential: unknown key");
    CHECK_CONFIG_ERR(ENDPOINT("'cors':{'origins':['*'],'credentials':1}," CALLS),
                     "conf/x.json: endpoints[0].cors.credentials: must be a boolean, not an "
                     "integer");
    CHECK_CONFIG_ERR(ROOT("'compress':true"),
                     "conf/x.json: compress: must be an object or false, not a boolean");
    CHECK_CONFIG_ERR(ROOT("'compress':{'level':0}"),
                     "conf/x.json: compress.level: must be between 1 and 9, not 0");
    CHECK_CONFIG_ERR(ROOT("'compress':{'min_bytes':-1}"),
                     "conf/x.json: compress.min_bytes: must be between 0 and 1073741824, not -1");
    CHECK_CONFIG_ERR(ENDPOINT("'compress':{'gzip':true}," CALLS),
                     "conf/x.json: endpoints[0].compress.gzip: unknown key");
    CHECK_CONFIG_ERR(ENDPOINT("'cache_control':''," CALLS),
                     "conf/x.json: endpoints[0].cache_control: must be 1 to 256 characters");
    CHECK_CONFIG_ERR(ENDPOINT("'cache_control':'a\\nb'," CALLS),
                     "conf/x.json: endpoints[0].cache_control: must be printable ASCII (a header "
                     "value), not \"a\\nb\"");
    CHECK_CONFIG_ERR(ENDPOINT("'cache_control':30," CALLS),
                     "conf/x.json: endpoints[0].cache_control: must be a string, not an integer");
    CHECK_CONFIG_ERR(ENDPOINT("'etag':'yes'," CALLS),
                     "conf/x.json: endpoints[0].etag: must be a boolean, not a string");
}

/* {env.NAME} is read once at load, in the url, upstream and call headers and the conninfo; a
 * missing variable is an error naming it and its place, and no message ever holds a value. */
static void test_env_references(void)
{
    gd_config_t *cfg;

    CHECK_INT_EQ(setenv("GD_TEST_KEY", "s3cr3t-{v}", 1), 0);
    CHECK_INT_EQ(setenv("GD_TEST_BASE", "/v2", 1), 0);
    CHECK_INT_EQ(setenv("GD_TEST_PORT", "18099", 1), 0);
    CHECK_INT_EQ(setenv("GD_TEST_PW", "pw-xyz", 1), 0);
    CHECK_INT_EQ(unsetenv("GD_TEST_UNSET"), 0);
    cfg = LOAD_OK("{" LISTEN ",'postgres':{'conninfo':'host=db password={env.GD_TEST_PW}'},"
                  "'upstreams':{'a':{'url':'http://127.0.0.1:{env.GD_TEST_PORT}{env.GD_TEST_BASE}',"
                  "'headers':{'x-api-key':'k={env.GD_TEST_KEY} {{lit}}'}}},"
                  "'endpoints':[{'path':'/u/{id}','calls':{'c':{'upstream':'a','path':'/x',"
                  "'headers':{'authorization':'Bearer {env.GD_TEST_KEY}/{id}'}}}}]}");
    CHECK(cfg != NULL);
    /* The URL is kept as written for every message; its parts are the expanded ones. */
    CHECK_STR_EQ(cfg->upstreams[0].url, "http://127.0.0.1:{env.GD_TEST_PORT}{env.GD_TEST_BASE}");
    CHECK_STR_EQ(cfg->upstreams[0].host_shown, cfg->upstreams[0].url);
    CHECK_INT_EQ(cfg->upstreams[0].port, 18099);
    CHECK_STR_EQ(cfg->upstreams[0].base_path, "/v2");
    CHECK_STR_EQ(cfg->upstreams[0].headers[0].value, "k=s3cr3t-{v} {lit}");
    CHECK_STR_EQ(cfg->postgres.conninfo, "host=db password=pw-xyz");
    /* The call header: the env value is literal text (its braces too), {id} a variable. */
    const gd_header_template_t *h = &cfg->endpoints[0].calls[0].headers[0];
    CHECK_INT_EQ(h->value.nparts, 2);
    CHECK_STR_EQ(h->value.parts[0].literal, "Bearer s3cr3t-{v}/");
    CHECK(!h->value.parts[1].is_literal);
    CHECK_STR_EQ(cfg->endpoints[0].calls[0].upstream_header_lines,
                 "x-api-key: k=s3cr3t-{v} {lit}\r\n");
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://{env.GD_TEST_UNSET}/v1'}"),
                     "conf/x.json: upstreams.accounts.url: environment variable GD_TEST_UNSET is "
                     "not set (referenced as {env.GD_TEST_UNSET})");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','headers':{'x-k':'{env.GD_TEST_UNSET}'}}"),
                     "conf/x.json: upstreams.accounts.headers[\"x-k\"]: environment variable "
                     "GD_TEST_UNSET is not set (referenced as {env.GD_TEST_UNSET})");
    CHECK_CONFIG_ERR(
        CALL_IS("'upstream':'accounts','path':'/x','headers':{'x-k':'{env.GD_TEST_UNSET}'}"),
        "conf/x.json: endpoints[0].calls.user.headers[\"x-k\"]: environment variable "
        "GD_TEST_UNSET is not set (referenced as {env.GD_TEST_UNSET})");
    CHECK_CONFIG_ERR(ROOT("'postgres':{'conninfo':'password={env.GD_TEST_UNSET}'}"),
                     "conf/x.json: postgres.conninfo: environment variable GD_TEST_UNSET is not "
                     "set (referenced as {env.GD_TEST_UNSET})");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','headers':{'x-k':'{env.1X}'}}"),
                     "conf/x.json: upstreams.accounts.headers[\"x-k\"]: bad environment variable "
                     "reference \"{env.1X}\" (a name is 1 to 128 of A-Z a-z 0-9 _, not starting "
                     "with a digit, and \"}\" ends it)");
    /* Only where the README allows them. */
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x/{env.GD_TEST_KEY}'"),
                     "conf/x.json: endpoints[0].calls.user.path: \"{env.GD_TEST_KEY}\": {env.NAME} "
                     "is allowed only in an upstream's url and headers, a call's headers and "
                     "postgres.conninfo");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','headers':{'x-k':'{id}'}}"),
                     "conf/x.json: upstreams.accounts.headers[\"x-k\"]: an upstream's header value "
                     "is fixed text with {env.NAME} references only (request values go in a "
                     "call's \"headers\")");
    /* Errors about an expanded value show what was written, never the value. */
    CHECK_INT_EQ(setenv("GD_TEST_BAD", "s3cr3t\r\nx-evil: 1", 1), 0);
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','headers':{'x-k':'{env.GD_TEST_BAD}'}}"),
                     "conf/x.json: upstreams.accounts.headers[\"x-k\"]: a control character in the "
                     "header value (after {env.NAME} substitution)");
    CHECK_CONFIG_ERR(
        CALL_IS("'upstream':'accounts','path':'/x','headers':{'x-k':'{env.GD_TEST_BAD}'}"),
        "conf/x.json: endpoints[0].calls.user.headers[\"x-k\"]: a control character "
        "in the header value (after {env.NAME} substitution)");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h:{env.GD_TEST_KEY}'}"),
                     "conf/x.json: upstreams.accounts.url: bad port in URL "
                     "\"http://h:{env.GD_TEST_KEY}\" (expected 1 to 65535)");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h/{env.GD_TEST_KEY}'}"),
                     "conf/x.json: upstreams.accounts.url: bad character (in an {env.NAME} value) "
                     "in the path of URL \"http://h/{env.GD_TEST_KEY}\" (percent-encode it)");
    CHECK_CONFIG_ERR(ROOT("'postgres':{'conninfo':'host=db port {env.GD_TEST_PW}'}"),
                     "conf/x.json: postgres.conninfo: not a valid libpq connection string or URI");
}

static void test_upstream_headers_and_host(void)
{
    gd_config_t *cfg = LOAD_OK(
        "{" LISTEN ",'upstreams':{'a':{'url':'http://127.0.0.1:1','host':'api.example.com:8443',"
        "'headers':{'X-Api-Key':'k1','x-other':'o'}}},"
        "'endpoints':[{'path':'/u','calls':{'c':{'upstream':'a','path':'/x',"
        "'headers':{'x-api-key':'mine'}},'d':{'upstream':'a','path':'/y'}}}]}");

    CHECK(cfg != NULL);
    CHECK_STR_EQ(cfg->upstreams[0].host_header, "api.example.com:8443");
    CHECK_STR_EQ(cfg->upstreams[0].host_shown, "127.0.0.1");
    /* A call's own header of the same name (any case) wins. */
    CHECK_STR_EQ(cfg->endpoints[0].calls[0].upstream_header_lines, "x-other: o\r\n");
    CHECK_STR_EQ(cfg->endpoints[0].calls[1].upstream_header_lines,
                 "X-Api-Key: k1\r\nx-other: o\r\n");
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','headers':[]}"),
                     "conf/x.json: upstreams.accounts.headers: must be an object, not an array");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','headers':{'Host':'x'}}"),
                     "conf/x.json: upstreams.accounts.headers.Host: header \"Host\" is set by "
                     "gatherd itself");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','headers':{'a':'1','A':'2'}}"),
                     "conf/x.json: upstreams.accounts.headers.A: header \"A\" is given twice "
                     "(header names are case-insensitive)");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','headers':{'a':'x\\ny'}}"),
                     "conf/x.json: upstreams.accounts.headers.a: a control character in the header "
                     "value");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','host':''}"),
                     "conf/x.json: upstreams.accounts.host: must be 1 to 255 characters");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','host':'a b'}"),
                     "conf/x.json: upstreams.accounts.host: \"a b\" is not a host[:port]");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','host':'u@h'}"),
                     "conf/x.json: upstreams.accounts.host: \"u@h\" is not a host[:port]");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','host':1}"),
                     "conf/x.json: upstreams.accounts.host: must be a string, not an integer");
}

static void test_forward_headers(void)
{
    gd_config_t *cfg =
        LOAD_OK("{" LISTEN ",'upstreams':{'a':{'url':'http://h','forward_headers':['Authorization',"
                "'accept-language']}},'endpoints':[{'path':'/u','calls':{"
                "'c':{'upstream':'a','path':'/x'},"
                "'d':{'upstream':'a','path':'/y','forward_headers':['x-tenant']},"
                "'e':{'upstream':'a','path':'/z','forward_headers':[]}}}]}");

    CHECK(cfg != NULL);
    CHECK_INT_EQ(cfg->upstreams[0].nforward_headers, 2);
    CHECK_STR_EQ(cfg->upstreams[0].forward_headers[0], "authorization");
    /* The call's own list replaces the upstream's; [] forwards nothing. */
    CHECK_INT_EQ(cfg->endpoints[0].calls[0].nforward_headers, 2);
    CHECK_STR_EQ(cfg->endpoints[0].calls[0].forward_headers[1], "accept-language");
    CHECK_INT_EQ(cfg->endpoints[0].calls[1].nforward_headers, 1);
    CHECK_STR_EQ(cfg->endpoints[0].calls[1].forward_headers[0], "x-tenant");
    CHECK_INT_EQ(cfg->endpoints[0].calls[2].nforward_headers, 0);
    gd_config_free(cfg);

#define FWD(list) CALL_IS("'upstream':'accounts','path':'/x','forward_headers':" list)
    CHECK_CONFIG_ERR(FWD("'authorization'"),
                     "conf/x.json: endpoints[0].calls.user.forward_headers: must be an array of "
                     "header names, not a string");
    CHECK_CONFIG_ERR(
        FWD("[1]"),
        "conf/x.json: endpoints[0].calls.user.forward_headers[0]: must be a string, not "
        "an integer");
    CHECK_CONFIG_ERR(FWD("['a b']"),
                     "conf/x.json: endpoints[0].calls.user.forward_headers[0]: bad header name (a "
                     "header name is an HTTP token)");
    CHECK_CONFIG_ERR(FWD("['x','X']"),
                     "conf/x.json: endpoints[0].calls.user.forward_headers[1]: header \"X\" is "
                     "listed twice (header names are case-insensitive)");
    static const char *const hop[] = {
        "Connection",          "keep-alive",       "TE",   "trailer",
        "transfer-encoding",   "upgrade",          "Host", "content-length",
        "proxy-authorization", "Proxy-Connection", NULL};
    for (size_t i = 0; hop[i] != NULL; i++) {
        char json[512], want[512];
        snprintf(json, sizeof(json), UPSTREAM_IS("{'url':'http://h','forward_headers':['%s']}"),
                 hop[i]);
        snprintf(want, sizeof(want),
                 "conf/x.json: upstreams.accounts.forward_headers[0]: header \"%s\" is a "
                 "hop-by-hop header, which is never forwarded",
                 hop[i]);
        CHECK_CONFIG_ERR(json, want);
    }
    CHECK_CONFIG_ERR(FWD("['accept-encoding']"),
                     "conf/x.json: endpoints[0].calls.user.forward_headers[0]: header "
                     "\"accept-encoding\" is set by gatherd itself");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','headers':{'Authorization':'x'},"
                             "'forward_headers':['authorization']"),
                     "conf/x.json: endpoints[0].calls.user: header \"authorization\" is both "
                     "forwarded (forward_headers) and set by the call's \"headers\"");
    CHECK_CONFIG_ERR(
        "{" LISTEN ",'upstreams':{'a':{'url':'http://h','headers':{'authorization':"
        "'k'}}},'endpoints':[{'path':'/u','calls':{'c':{'upstream':'a','path':'/x',"
        "'forward_headers':['authorization']}}}]}",
        "conf/x.json: endpoints[0].calls.c: header \"authorization\" is both forwarded "
        "(forward_headers) and set by upstreams.a.headers");
#undef FWD
}

static void test_retry(void)
{
    gd_config_t *cfg = LOAD_OK(
        "{" LISTEN ",'upstreams':{'a':{'url':'http://h','retry':{'attempts':4,'backoff_ms':10,"
        "'on':['io',503],'budget_percent':50}},'b':{'url':'http://h'}},"
        "'endpoints':[{'path':'/u','calls':{"
        "'c':{'upstream':'a','path':'/x'},"
        "'d':{'upstream':'a','path':'/y','retry':{'attempts':2,'attempt_timeout_ms':30}},"
        "'e':{'upstream':'b','path':'/z'},"
        "'f':{'upstream':'b','path':'/p','method':'POST'},"
        "'g':{'upstream':'b','path':'/q','method':'POST','idempotent':true,'retry':{}}}}]}");
    CHECK(cfg != NULL);
    const gd_call_conf_t *calls = cfg->endpoints[0].calls;
    const gd_retry_conf_t *c = &calls[0].retry, *d = &calls[1].retry, *e = &calls[2].retry;
    CHECK_INT_EQ(c->attempts, 4);
    CHECK_INT_EQ(c->backoff_ms, 10);
    CHECK_INT_EQ(c->max_backoff_ms, 1000);
    CHECK_INT_EQ(c->budget_percent, 50);
    CHECK_INT_EQ(c->min_retries_per_s, 3);
    CHECK(c->on.io && !c->on.connect && !c->on.timeout && !c->on.tls);
    CHECK(gd_failure_set_has_status(&c->on, 503) && !gd_failure_set_has_status(&c->on, 502));
    /* a call's keys override the upstream's one by one */
    CHECK_INT_EQ(d->attempts, 2);
    CHECK_INT_EQ(d->backoff_ms, 10);
    CHECK_INT_EQ(d->attempt_timeout_ms, 30);
    CHECK(d->on.io && !d->on.connect);
    /* no "retry" anywhere: one attempt */
    CHECK_INT_EQ(e->attempts, 1);
    CHECK_INT_EQ(calls[3].retry.attempts, 1);
    /* "retry": {} means the README's example */
    CHECK_INT_EQ(calls[4].retry.attempts, 3);
    CHECK_INT_EQ(calls[4].retry.backoff_ms, 25);
    CHECK(calls[4].retry.on.connect && calls[4].retry.on.timeout && !calls[4].retry.on.tls);
    for (int st = 400; st <= 599; st++)
        CHECK(gd_failure_set_has_status(&calls[4].retry.on, st) == (st >= 502 && st <= 504));
    CHECK(cfg->upstreams[0].retry_budget != NULL);
    CHECK(cfg->upstreams[0].breaker == NULL);
    gd_config_free(cfg);
    cfg = LOAD_OK(UPSTREAM_IS("{'url':'http://x','breaker':{}}"));
    CHECK(cfg != NULL && cfg->upstreams[0].breaker != NULL);
    /* by default a breaker counts connect, io, timeout, tls and every 5xx, never a 4xx */
    const gd_failure_set_t *bon = &cfg->upstreams[0].breaker_on;
    CHECK(bon->connect && bon->io && bon->timeout && bon->tls);
    for (int st = 400; st <= 599; st++)
        CHECK(gd_failure_set_has_status(bon, st) == (st >= 500));
    gd_config_free(cfg);
    cfg = LOAD_OK(UPSTREAM_IS("{'url':'http://x','breaker':{'on':['timeout',429,'5xx']}}"));
    CHECK(cfg != NULL);
    bon = &cfg->upstreams[0].breaker_on;
    CHECK(bon->timeout && !bon->connect && !bon->io && !bon->tls);
    CHECK(gd_failure_set_has_status(bon, 429) && gd_failure_set_has_status(bon, 599) &&
          !gd_failure_set_has_status(bon, 404));
    gd_config_free(cfg);
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','breaker':{'on':['4xx']}}"),
                     "conf/x.json: upstreams.accounts.breaker.on[0]: \"4xx\" is not a failure for "
                     "the breaker (connect, io, timeout, tls, 5xx or a status between 400 and "
                     "599)");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','breaker':{'on':[302]}}"),
                     "conf/x.json: upstreams.accounts.breaker.on[0]: a status for the breaker "
                     "must be between 400 and 599, not 302");

    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','breaker':{'failures':0}}"),
                     "conf/x.json: upstreams.accounts.breaker.failures: must be between 1 and "
                     "1000000, not 0");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','breaker':{'window_ms':10}}"),
                     "conf/x.json: upstreams.accounts.breaker.window_ms: only applies with "
                     "error_rate");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','breaker':{'error_rate':1.5}}"),
                     "conf/x.json: upstreams.accounts.breaker.error_rate: must be above 0 and at "
                     "most 1, not 1.5");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','breaker':{'error_rate':'x'}}"),
                     "conf/x.json: upstreams.accounts.breaker.error_rate: must be a number, not a "
                     "string");
    CHECK_CONFIG_ERR(
        UPSTREAM_IS("{'url':'http://x','breaker':{'error_rate':0.5,'window_ms':5}}"),
        "conf/x.json: upstreams.accounts.breaker.window_ms: must be between 10 and 86400000, "
        "not 5");
    cfg = LOAD_OK(UPSTREAM_IS("{'url':'http://x','breaker':{'error_rate':0.25,'min_calls':4}}"));
    CHECK(cfg != NULL && cfg->upstreams[0].breaker != NULL);
    gd_config_free(cfg);
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','rate_limit':{'calls':5}}"),
                     "conf/x.json: upstreams.accounts.rate_limit.per_ms: missing required key");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','rate_limit':{'calls':5,'per_ms':1,'x':1}}"),
                     "conf/x.json: upstreams.accounts.rate_limit.x: unknown key");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','max_in_flight':-1}"),
                     "conf/x.json: upstreams.accounts.max_in_flight: must be between 0 and "
                     "1000000, not -1");
    cfg = LOAD_OK(UPSTREAM_IS(
        "{'url':'http://x','rate_limit':{'calls':5,'per_ms':1000,'burst':2},'max_in_flight':3}"));
    CHECK(cfg != NULL && cfg->upstreams[0].rate_limit != NULL);
    CHECK(cfg->upstreams[0].max_in_flight == 3 && cfg->upstreams[0].in_flight != NULL);
    gd_config_free(cfg);
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','breaker':[]}"),
                     "conf/x.json: upstreams.accounts.breaker: must be an object, not an array");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':3}"),
                     "conf/x.json: upstreams.accounts.retry: must be an object, not an integer");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':{'tries':3}}"),
                     "conf/x.json: upstreams.accounts.retry.tries: unknown key");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':{'attempts':0}}"),
                     "conf/x.json: upstreams.accounts.retry.attempts: must be between 1 and 10, "
                     "not 0");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':{'backoff_ms':50,'max_backoff_ms':"
                                 "20}}"),
                     "conf/x.json: upstreams.accounts.retry.max_backoff_ms: must be >= backoff_ms "
                     "(50), not 20");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':{'on':['io','reset']}}"),
                     "conf/x.json: upstreams.accounts.retry.on[1]: \"reset\" is not a failure for "
                     "the retry (connect, io, timeout, tls, 5xx or a status between 400 and "
                     "599)");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':{'on':[200]}}"),
                     "conf/x.json: upstreams.accounts.retry.on[0]: a status for the retry must be "
                     "between 400 and 599, not 200");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':{'on':'io'}}"),
                     "conf/x.json: upstreams.accounts.retry.on: must be an array, not a string");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':{'budget_percent':101}}"),
                     "conf/x.json: upstreams.accounts.retry.budget_percent: must be between 0 "
                     "and 100, not 101");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','retry':{'budget_percent':5}"),
                     "conf/x.json: endpoints[0].calls.user.retry.budget_percent: the retry budget "
                     "is the upstream's: set it in its \"retry\"");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','method':'POST','retry':{}"),
                     "conf/x.json: endpoints[0].calls.user.retry: a POST call is never retried "
                     "unless it is marked \"idempotent\": true");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','retry':{'attempt_timeout_ms':-1}"),
                     "conf/x.json: endpoints[0].calls.user.retry.attempt_timeout_ms: must be "
                     "between 0 and 86400000, not -1");
}

static void test_hedge(void)
{
    gd_config_t *cfg =
        LOAD_OK("{" LISTEN ",'upstreams':{'a':{'url':'http://h','retry':{'hedge_after_ms':30}},"
                "'b':{'url':'http://h'}},'endpoints':[{'path':'/u','calls':{"
                "'c':{'upstream':'a','path':'/x'},"
                "'d':{'upstream':'a','path':'/y','retry':{'hedge_after_ms':0}},"
                "'e':{'upstream':'a','path':'/z','retry':{'attempts':1}},"
                "'f':{'upstream':'a','path':'/p','method':'POST'},"
                "'g':{'upstream':'b','path':'/q','retry':{'attempts':2,'hedge_after_ms':15}},"
                "'h':{'upstream':'b','path':'/r'}}}]}");
    CHECK(cfg != NULL);
    const gd_call_conf_t *calls = cfg->endpoints[0].calls;
    /* the upstream's, with the attempts a "retry" object gives: the first, a hedge, a retry */
    CHECK_INT_EQ(calls[0].retry.hedge_after_ms, 30);
    CHECK_INT_EQ(calls[0].retry.attempts, 3);
    /* a call turns it off, or leaves no attempt for it (not an error: the upstream's) */
    CHECK_INT_EQ(calls[1].retry.hedge_after_ms, 0);
    CHECK_INT_EQ(calls[2].retry.attempts, 1);
    /* inherited by a POST, where the upstream never applies it (not idempotent) */
    CHECK(!calls[3].is_idempotent);
    CHECK_INT_EQ(calls[4].retry.hedge_after_ms, 15);
    CHECK_INT_EQ(calls[5].retry.hedge_after_ms, 0);
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':{'attempts':1,'hedge_after_ms':5}}"),
                     "conf/x.json: upstreams.accounts.retry.hedge_after_ms: a hedge is a second "
                     "attempt: it needs \"attempts\" of 2 or more");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','retry':{'hedge_after_ms':-1}}"),
                     "conf/x.json: upstreams.accounts.retry.hedge_after_ms: must be between 0 and "
                     "86400000, not -1");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','method':'PATCH',"
                             "'retry':{'hedge_after_ms':20}"),
                     "conf/x.json: endpoints[0].calls.user.retry.hedge_after_ms: a PATCH call is "
                     "never hedged unless it is marked \"idempotent\": true");
}

static void test_null_on_and_status_map(void)
{
    gd_config_t *cfg = LOAD_OK(
        "{" LISTEN ",'upstreams':{'a':{'url':'http://h','null_on':[404,410],"
        "'status_map':{'401':502,'429':503}}},'endpoints':[{'path':'/u','calls':{"
        "'c':{'upstream':'a','path':'/x'},"
        "'d':{'upstream':'a','path':'/y','null_on':[],'status_map':{'429':429,'403':502}}}}]}");
    const gd_call_conf_t *c, *d;

    CHECK(cfg != NULL);
    c = &cfg->endpoints[0].calls[0];
    d = &cfg->endpoints[0].calls[1];
    CHECK_INT_EQ(c->nnull_on, 2);
    CHECK_INT_EQ(c->null_on[1], 410);
    CHECK_INT_EQ(d->nnull_on, 0);
    CHECK_INT_EQ(c->nstatus_map, 2);
    /* The call's map wins per status; the upstream's fills in the others. */
    CHECK_INT_EQ(d->nstatus_map, 3);
    CHECK_INT_EQ(d->status_map[0].upstream_status, 429);
    CHECK_INT_EQ(d->status_map[0].answer_status, 429);
    CHECK_INT_EQ(d->status_map[1].upstream_status, 403);
    CHECK_INT_EQ(d->status_map[2].upstream_status, 401);
    CHECK_INT_EQ(d->status_map[2].answer_status, 502);
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(
        UPSTREAM_IS("{'url':'http://h','null_on':404}"),
        "conf/x.json: upstreams.accounts.null_on: must be an array of statuses, not an "
        "integer");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','null_on':[404,'410']"),
                     "conf/x.json: endpoints[0].calls.user.null_on[1]: must be an integer, not a "
                     "string");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','null_on':[200]"),
                     "conf/x.json: endpoints[0].calls.user.null_on[0]: must be an error status "
                     "between 300 and 599, not 200");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','null_on':[404,600]"),
                     "conf/x.json: endpoints[0].calls.user.null_on[1]: must be an error status "
                     "between 300 and 599, not 600");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/x','null_on':[404,404]"),
                     "conf/x.json: endpoints[0].calls.user.null_on[1]: status 404 is listed twice");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','status_map':[]}"),
                     "conf/x.json: upstreams.accounts.status_map: must be an object, not an array");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','status_map':{'4xx':502}}"),
                     "conf/x.json: upstreams.accounts.status_map[\"4xx\"]: a key must be an "
                     "upstream HTTP status, 100 to 599");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','status_map':{'600':502}}"),
                     "conf/x.json: upstreams.accounts.status_map[\"600\"]: a key must be an "
                     "upstream HTTP status, 100 to 599");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://h','status_map':{'099':502}}"),
                     "conf/x.json: upstreams.accounts.status_map[\"099\"]: a key must be an "
                     "upstream HTTP status, 100 to 599");
    CHECK_CONFIG_ERR(
        CALL_IS("'upstream':'accounts','path':'/x','status_map':{'401':200}"),
        "conf/x.json: endpoints[0].calls.user.status_map[\"401\"]: must be between 400 "
        "and 599, not 200");
    CHECK_CONFIG_ERR(
        CALL_IS("'upstream':'accounts','path':'/x','status_map':{'401':'502'}"),
        "conf/x.json: endpoints[0].calls.user.status_map[\"401\"]: must be an integer, "
        "not a string");
    /* SQL calls have no statuses. */
    CHECK_CONFIG_ERR("{" LISTEN "," UPSTREAMS ",'postgres':{},'endpoints':[{'path':'/u','calls':"
                     "{'q':{'sql':'SELECT 1','null_on':[404]}}}]}",
                     "conf/x.json: endpoints[0].calls.q.null_on: unknown key");
}

/* "auth": API keys from a file or the environment, inheritance, errors without the keys. */
static void test_auth_keys(void)
{
    char path[] = "/tmp/gd-test-keys-XXXXXX", json[1024];
    int fd = mkstemp(path);
    const char *text = "# keys\nfirst-key\r\n\n  second-key \n";
    gd_config_t *cfg;

    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    CHECK_INT_EQ(setenv("GD_TEST_API_KEYS", "a-key,b-key c-key", 1), 0);
    snprintf(json, sizeof(json),
             ENDPOINTS("{'path':'/a'," CALLS "},"
                       "{'path':'/b','auth':false," CALLS "},"
                       "{'path':'/c','auth':{'api_keys':{'header':'X-Key',"
                       "'keys':'{env.GD_TEST_API_KEYS}'}}," CALLS "}"));
    /* the top-level "auth" goes in front of "endpoints" */
    char *at = strstr(json, "'endpoints'");
    char with_auth[1200];
    snprintf(with_auth, sizeof(with_auth), "%.*s'auth':{'api_keys':{'keys_file':'%s'}},%s",
             (int)(at - json), json, path, at);
    cfg = LOAD_OK(with_auth);
    CHECK(cfg->auth != NULL);
    CHECK_STR_EQ(cfg->auth->api_key_header, "x-api-key");
    CHECK_INT_EQ(cfg->auth->napi_keys, 2);
    CHECK(cfg->endpoints[0].auth == cfg->auth);
    CHECK(cfg->endpoints[1].auth == NULL);
    CHECK(cfg->endpoints[2].auth != NULL && cfg->endpoints[2].auth != cfg->auth);
    CHECK_STR_EQ(cfg->endpoints[2].auth->api_key_header, "x-key");
    CHECK_INT_EQ(cfg->endpoints[2].auth->napi_keys, 3);
    gd_config_free(cfg);
    cfg = LOAD_OK(ROOT("'cors':false"));
    CHECK(cfg->auth == NULL);
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(ROOT("'auth':true"),
                     "conf/x.json: auth: must be an object or false, not a boolean");
    CHECK_CONFIG_ERR(ROOT("'auth':{}"),
                     "conf/x.json: auth: needs exactly one of \"api_keys\" and \"jwt\"");
    CHECK_CONFIG_ERR(ROOT("'auth':{'api_keys':{}}"),
                     "conf/x.json: auth.api_keys: needs exactly one of \"keys_file\" and \"keys\"");
    CHECK_CONFIG_ERR(ROOT("'auth':{'api_keys':{'keys':'s3cret'}}"),
                     "conf/x.json: auth.api_keys.keys: must be one {env.NAME} reference (keys "
                     "are never written in the config; or use \"keys_file\")");
    CHECK_CONFIG_ERR(ROOT("'auth':{'api_keys':{'keys':'{env.GD_TEST_API_KEYS}x'}}"),
                     "conf/x.json: auth.api_keys.keys: must be one {env.NAME} reference (keys "
                     "are never written in the config; or use \"keys_file\")");
    CHECK_CONFIG_ERR(ROOT("'auth':{'api_keys':{'header':'authorization','keys':'{env.X}'}}"),
                     "conf/x.json: auth.api_keys.header: cannot be \"authorization\"");
    CHECK_CONFIG_ERR(ROOT("'auth':{'api_keys':{'keys_file':'/nonexistent/keys'}}"),
                     "conf/x.json: auth.api_keys.keys_file: cannot open \"/nonexistent/keys\": "
                     "No such file or directory");
    CHECK_CONFIG_ERR(ROOT("'auth':{'api_keys':{'keys':'{env.GD_TEST_UNSET_KEYS}'}}"),
                     "conf/x.json: auth.api_keys.keys: environment variable GD_TEST_UNSET_KEYS "
                     "is not set (referenced as {env.GD_TEST_UNSET_KEYS})");
    CHECK_CONFIG_ERR(ENDPOINT("'auth':{'api_keys':{'keys':'{env.GD_TEST_API_KEYS}','x':1}}," CALLS),
                     "conf/x.json: endpoints[0].auth.api_keys.x: unknown key");
    CHECK_INT_EQ(setenv("GD_TEST_API_KEYS", " , ", 1), 0);
    CHECK_CONFIG_ERR(ROOT("'auth':{'api_keys':{'keys':'{env.GD_TEST_API_KEYS}'}}"),
                     "conf/x.json: auth.api_keys.keys: {env.GD_TEST_API_KEYS} holds no key");
    unlink(path);
}

/* "auth.jwt": an HMAC secret from a file, defaults, and errors that never show the secret. */
static void test_auth_jwt(void)
{
    char path[] = "/tmp/gd-test-jwt-XXXXXX", json[1024];
    int fd = mkstemp(path);
    const char *secret = "0123456789abcdef0123456789abcdef\n";
    gd_config_t *cfg;

    CHECK(fd >= 0);
    CHECK(write(fd, secret, strlen(secret)) == (ssize_t)strlen(secret));
    close(fd);
    snprintf(json, sizeof(json),
             ENDPOINT("'auth':{'jwt':{'algorithms':['HS256','HS512'],'key_file':'%s',"
                      "'required_claims':{'scope':'a:b'}}}," CALLS),
             path);
    cfg = LOAD_OK(json);
    const gd_jwt_conf_t *j = cfg->endpoints[0].auth->jwt;
    CHECK(j != NULL);
    CHECK_INT_EQ(j->nkeys, 1);
    CHECK(j->keys[0].kid == NULL);
    CHECK_INT_EQ(j->keys[0].key_len, 32); /* the trailing newline is not part of the secret */
    CHECK_INT_EQ(j->nalgorithms, 2);
    CHECK_INT_EQ(j->leeway_s, 30);
    CHECK(j->issuer == NULL && j->audience == NULL);
    CHECK_INT_EQ(j->nrequired_claims, 1);
    CHECK_STR_EQ(j->required_claims[0].value, "a:b");
    gd_config_free(cfg);
    snprintf(json, sizeof(json), ROOT("'auth':{'jwt':{'algorithms':['RS256'],'key_file':'%s'}}"),
             path);
    char *want = NULL;
    CHECK(asprintf(&want,
                   "conf/x.json: auth.jwt.key_file: \"%s\" holds no PEM public key "
                   "(\"-----BEGIN PUBLIC KEY-----\")",
                   path) > 0);
    CHECK_CONFIG_ERR(json, want);
    free(want);
    CHECK_CONFIG_ERR(ROOT("'auth':{'jwt':{'algorithms':[],'key_file':'/x'}}"),
                     "conf/x.json: auth.jwt.algorithms: must not be empty");
    CHECK_CONFIG_ERR(CALL_IS("'upstream':'accounts','path':'/u/{jwt.sub}'"),
                     "conf/x.json: endpoints[0]: uses {jwt.sub}, but has no \"auth\": "
                     "{\"jwt\": ...} (its own or the top level's)");
    snprintf(json, sizeof(json),
             ENDPOINT("'auth':{'jwt':{'algorithms':['HS256'],'key_file':'%s'}},"
                      "'calls':{'user':{'upstream':'accounts','path':'/u/{jwt.sub}'}}"),
             path);
    cfg = LOAD_OK(json);
    const gd_param_t *p = &cfg->endpoints[0].params[1];
    CHECK_INT_EQ(p->src, GD_SRC_JWT);
    CHECK_STR_EQ(p->name, "jwt.sub");
    CHECK_STR_EQ(p->key, "sub");
    gd_config_free(cfg);
    CHECK_CONFIG_ERR(ROOT("'auth':{'jwt':true}"), "conf/x.json: auth.jwt: must be an object, not a "
                                                  "boolean");
    unlink(path);
}

/* "trusted_proxies", "client_rate_limit", the request head limits: defaults and errors. */
static void test_edge_keys(void)
{
    gd_config_t *cfg = LOAD_OK(ROOT("'trusted_proxies':['10.0.0.0/8','::1','192.168.1.0/24']"));

    CHECK_INT_EQ(cfg->ntrusted_proxies, 3);
    CHECK_INT_EQ(cfg->trusted_proxies[0].family, AF_INET);
    CHECK_INT_EQ(cfg->trusted_proxies[0].prefix_len, 8);
    CHECK_INT_EQ(cfg->trusted_proxies[1].family, AF_INET6);
    CHECK_INT_EQ(cfg->trusted_proxies[1].prefix_len, 128);
    CHECK(cfg->rate_limit == NULL);
    CHECK_INT_EQ(cfg->max_url_bytes, 8192);
    CHECK_INT_EQ(cfg->max_headers, 64);
    CHECK_INT_EQ(cfg->max_header_bytes, 32768);
    gd_config_free(cfg);
    cfg = LOAD_OK(ENDPOINTS("{'path':'/a'," CALLS "},"
                            "{'path':'/b','client_rate_limit':false," CALLS "},"
                            "{'path':'/c','client_rate_limit':{'requests':3}," CALLS "}"));
    CHECK(cfg->endpoints[0].rate_limit == NULL);
    const gd_rate_limit_conf_t *rl = cfg->endpoints[2].rate_limit;
    CHECK(rl != NULL && rl->limiter != NULL);
    CHECK_INT_EQ(rl->requests, 3);
    CHECK_INT_EQ(rl->per_ms, 1000);
    CHECK_INT_EQ(rl->burst, 3);
    CHECK_INT_EQ(rl->key, GD_RATE_KEY_CLIENT);
    CHECK_INT_EQ(rl->max_keys, 100000);
    CHECK_STR_EQ(rl->limit_header, "3");
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(ROOT("'trusted_proxies':['10.0.0.0/8','10.1.0.0/8']"),
                     "conf/x.json: trusted_proxies[1]: \"10.1.0.0/8\" has host bits set beyond "
                     "its prefix /8");
    CHECK_CONFIG_ERR(ROOT("'trusted_proxies':['10.0.0.0/x']"),
                     "conf/x.json: trusted_proxies[0]: must be an IPv4 or IPv6 address with an "
                     "optional prefix length, like \"10.0.0.0/8\" or \"::1\", not \"10.0.0.0/x\"");
    CHECK_CONFIG_ERR(ROOT("'client_rate_limit':{'requests':1,'key':'ip'}"),
                     "conf/x.json: client_rate_limit.key: must be \"client\", \"api_key\" or "
                     "\"jwt.CLAIM\", not \"ip\"");
    CHECK_CONFIG_ERR(ROOT("'client_rate_limit':{'per_ms':10}"),
                     "conf/x.json: client_rate_limit.requests: missing required key");
    CHECK_CONFIG_ERR(ENDPOINT("'client_rate_limit':{'requests':1,'key':'jwt.sub'}," CALLS),
                     "conf/x.json: endpoints[0]: client_rate_limit.key \"jwt.sub\" needs "
                     "\"auth\": {\"jwt\": ...}");
    CHECK_CONFIG_ERR(ROOT("'max_headers':100"),
                     "conf/x.json: max_headers: must be between 1 and 99, not 100");
}

/* "redis" and the "scope": "cluster" of rate limits: URL forms, the masked URL, defaults, the
 * keys of the limits and their local stand-ins, errors. */
static void test_redis(void)
{
    CHECK_INT_EQ(setenv("GD_TEST_REDIS_PW", "pw-r", 1), 0);
    gd_config_t *cfg = LOAD_OK(
        "{" LISTEN ",'redis':{'url':'redis://app:lit@10.0.0.5:6380/3','local_share':0.25,"
        "'key_prefix':'gd1:'},'upstreams':{'accounts':{'url':'http://x','rate_limit':"
        "{'calls':100,'per_ms':60000,'burst':8,'scope':'cluster'}}},"
        "'client_rate_limit':{'requests':10,'burst':4,'scope':'cluster'},"
        "'endpoints':[{'method':'POST','path':'/o','client_rate_limit':{'requests':2,"
        "'scope':'cluster'},'calls':{'u':{'upstream':'accounts','path':'/x'}}}]}");
    const gd_redis_conf_t *rc = cfg->redis;
    CHECK(rc != NULL);
    CHECK_STR_EQ(rc->url, "redis://***@10.0.0.5:6380/3"); /* the password never shown */
    CHECK_STR_EQ(rc->host, "10.0.0.5");
    CHECK(rc->is_host_numeric);
    CHECK_INT_EQ(rc->port, 6380);
    CHECK_INT_EQ(rc->db, 3);
    CHECK_STR_EQ(rc->user, "app");
    CHECK_STR_EQ(rc->password, "lit");
    CHECK_INT_EQ(rc->timeout_ms, 50);
    CHECK_INT_EQ(rc->connect_timeout_ms, 1000);
    CHECK_INT_EQ(rc->pool_size, 1);
    CHECK_INT_EQ(rc->cache_max_entry_bytes, 1 << 20);
    const gd_upstream_conf_t *u = &cfg->upstreams[0];
    CHECK(u->is_rate_cluster);
    CHECK_STR_EQ(u->rate_key, "gd1:rl:upstream:accounts");
    CHECK_INT_EQ(gd_pacer_interval_us(u->rate_limit), 600000);
    CHECK_INT_EQ(gd_pacer_tolerance_us(u->rate_limit), 7 * 600000);
    /* a quarter of the rate: one call every 2.4 s, bursts of 2 */
    CHECK_INT_EQ(gd_pacer_interval_us(u->rate_limit_local), 2400000);
    CHECK_INT_EQ(gd_pacer_tolerance_us(u->rate_limit_local), 2400000);
    CHECK(cfg->rate_limit->is_cluster);
    CHECK_STR_EQ(cfg->rate_limit->redis_key, "gd1:rl:client:*:");
    CHECK_INT_EQ(cfg->rate_limit->interval_us, 100000);
    CHECK_INT_EQ(cfg->rate_limit->tolerance_us, 300000);
    CHECK_STR_EQ(cfg->endpoints[0].rate_limit->redis_key, "gd1:rl:client:POST /o:");
    gd_config_free(cfg);

    cfg = LOAD_OK(ROOT("'redis':{'url':'redis://cache.internal','password':'{env.GD_TEST_REDIS_PW}',"
                       "'pool_size':4,'timeout_ms':20}"));
    CHECK_STR_EQ(cfg->redis->url, "redis://cache.internal");
    CHECK(!cfg->redis->is_host_numeric);
    CHECK_INT_EQ(cfg->redis->port, 6379);
    CHECK_INT_EQ(cfg->redis->db, 0);
    CHECK(cfg->redis->user == NULL);
    CHECK_STR_EQ(cfg->redis->password, "pw-r");
    CHECK_STR_EQ(cfg->redis->key_prefix, "gatherd:");
    CHECK_INT_EQ(cfg->redis->pool_size, 4);
    CHECK(cfg->redis->local_share == 0.5);
    gd_config_free(cfg);
    cfg = LOAD_OK(ROOT("'redis':{'url':'redis://[::1]:7000'}"));
    CHECK_STR_EQ(cfg->redis->host, "::1");
    CHECK(cfg->redis->is_host_numeric);
    CHECK_INT_EQ(cfg->redis->port, 7000);
    gd_config_free(cfg);

    CHECK_CONFIG_ERR(ROOT("'redis':{'url':'redis://[x]:1'}"),
                     "conf/x.json: redis.url: malformed URL \"redis://[x]:1\" (expected "
                     "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])");
    CHECK_CONFIG_ERR(ROOT("'redis':{'url':'redis://pw@h'}"),
                     "conf/x.json: redis.url: the URL's user info must be [USER]:PASSWORD");
    CHECK_CONFIG_ERR(ROOT("'redis':{'url':'redis://h','password':''}"),
                     "conf/x.json: redis.password: must not be empty (leave it out for no AUTH)");
    CHECK_CONFIG_ERR(ROOT("'redis':{'url':'redis://h','local_share':1.5}"),
                     "conf/x.json: redis.local_share: must be above 0 and at most 1, not 1.5");
    CHECK_CONFIG_ERR(UPSTREAM_IS("{'url':'http://x','rate_limit':{'calls':5,'per_ms':1,"
                                 "'scope':'cluster'}}"),
                     "conf/x.json: upstreams.accounts.rate_limit.scope: \"cluster\" needs a "
                     "top-level \"redis\" to share the limit in");
    CHECK_CONFIG_ERR(ENDPOINT("'calls':{'u':{'upstream':'accounts','path':'/x','cache':"
                              "{'ttl_ms':5,'shared':true}}}"),
                     "conf/x.json: endpoints[0].calls.u.cache.shared: needs a top-level "
                     "\"redis\" to share the results in");
}

const gd_test_case_t gd_test_cases[] = {
    {"redis", test_redis},
    {"front_keys", test_front_keys},
    {"front_key_errors", test_front_key_errors},
    {"auth_keys", test_auth_keys},
    {"auth_jwt", test_auth_jwt},
    {"edge_keys", test_edge_keys},
    {"operations_keys", test_operations_keys},
    {"postgres_section", test_postgres_section},
    {"sql_prepared_and_retry", test_sql_prepared_and_retry},
    {"sql_calls", test_sql_calls},
    {"call_dependencies", test_call_dependencies},
    {"sql_call_limits", test_sql_call_limits},

    {"full_config", test_full_config},
    {"defaults", test_defaults},
    {"limits_accepted", test_limits_accepted},
    {"syntax_errors", test_syntax_errors},
    {"root_errors", test_root_errors},
    {"scalar_errors", test_scalar_errors},
    {"shutdown_errors", test_shutdown_errors},
    {"listen_errors", test_listen_errors},
    {"listen_forms", test_listen_forms},
    {"upstream_errors", test_upstream_errors},
    {"url_errors", test_url_errors},
    {"tls", test_tls},
    {"url_forms", test_url_forms},
    {"endpoint_errors", test_endpoint_errors},
    {"custom_method", test_custom_method},
    {"path_errors", test_path_errors},
    {"too_many_captures", test_too_many_captures},
    {"path_forms", test_path_forms},
    {"duplicate_routes", test_duplicate_routes},
    {"call_errors", test_call_errors},
    {"body_config", test_body_config},
    {"header_errors", test_header_errors},
    {"env_references", test_env_references},
    {"upstream_headers_and_host", test_upstream_headers_and_host},
    {"forward_headers", test_forward_headers},
    {"null_on_and_status_map", test_null_on_and_status_map},
    {"retry", test_retry},
    {"hedge", test_hedge},
    {"param_errors", test_param_errors},
    {"param_pattern_errors", test_param_pattern_errors},
    {"pattern_bombs", test_pattern_bombs},
    {"many_endpoints", test_many_endpoints},
    {"param_pattern_forms", test_param_pattern_forms},
    {"param_default_errors", test_param_default_errors},
    {"param_defaults_accepted", test_param_defaults_accepted},
    {"template_params_dedup", test_template_params_dedup},
    {"call_order", test_call_order},
    {"name_json", test_name_json},
    {"messages_stay_on_one_line", test_messages_stay_on_one_line},
    {"error_buffer_truncation", test_error_buffer_truncation},
    {"load_file", test_load_file},
    {"load_file_errors", test_load_file_errors},
    {NULL, NULL},
};
