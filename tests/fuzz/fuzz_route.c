/* libFuzzer driver: route matching and parameter extraction on any request target, against a
 * fixed config with literal and capture segments, int, pattern and optional query parameters,
 * a header parameter, and list parameters (whose array literals are checked for their form, and
 * turned into the JSON array a for_each iterates). The first input byte picks the method and whether the header is
 * sent; the rest is the raw target (path, then the query after a '?'). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"
#include "front/route.h"
#include "gather/foreach.h"
#include "json/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char config_json[] =
    "{\"listen\":[\"127.0.0.1:8080\"],\"upstreams\":{\"u\":{\"url\":\"http://127.0.0.1:1\"}},"
    "\"endpoints\":["
    "{\"path\":\"/users/{id}/profile\",\"params\":{\"id\":\"int\",\"query.limit\":{\"type\":"
    "\"int\",\"required\":false,\"default\":\"10\"},\"header.x-tenant\":{\"pattern\":"
    "\"[a-z0-9-]{1,32}\",\"required\":false}},\"calls\":{\"a\":{\"upstream\":\"u\",\"path\":"
    "\"/u/{id}?l={query.limit}&t={header.x-tenant}\"}}},"
    "{\"path\":\"/users/me/profile\",\"calls\":{\"a\":{\"upstream\":\"u\",\"path\":\"/me\"}}},"
    "{\"method\":\"POST\",\"path\":\"/{x}/{y}/c\",\"params\":{\"query.q\":{\"pattern\":"
    "\"(ab|cd)+x?\"}},\"calls\":{\"a\":{\"upstream\":\"u\",\"path\":\"/{x}/{y}?q={query.q}\"}}},"
    "{\"path\":\"/\",\"calls\":{\"a\":{\"upstream\":\"u\",\"path\":\"/\"}}},"
    "{\"path\":\"/files//x/\",\"calls\":{\"a\":{\"upstream\":\"u\",\"path\":\"/f\"}}},"
    "{\"path\":\"/lists\",\"params\":{\"query.ids\":{\"type\":\"int_list\",\"max_items\":5},"
    "\"query.tags\":{\"type\":\"string_list\",\"required\":false,\"default\":\"a,b\\\"c\"}},"
    "\"calls\":{\"q\":{\"sql\":\"SELECT $1::bigint[], $2::text[]\",\"args\":[\"{query.ids}\","
    "\"{query.tags}\"]}}}"
    "],\"postgres\":{\"conninfo\":\"\"}}";

static gd_config_t *config;
static gd_router_t *router;

static void setup(void)
{
    char err[512];

    if (router != NULL)
        return;
    if (gd_config_load_string(config_json, "fuzz.json", &config, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_route: %s\n", err);
        abort();
    }
    router = gd_router_new(config);
}

/* A list's value is a Postgres array literal: braces around items; an int list's items are
 * ints and commas only, a string list's quoted items have every '"' and '\' escaped. */
static void check_lists(const gd_endpoint_conf_t *ep, const gd_strv_t *values)
{
    for (size_t i = 0; i < ep->nparams; i++) {
        const gd_param_t *p = &ep->params[i];
        const char *v = values[i].base;
        size_t n = values[i].len;
        if (p->type != GD_PARAM_INT_LIST && p->type != GD_PARAM_STRING_LIST)
            continue;
        GD_REQUIRE(n >= 2 && v[0] == '{' && v[n - 1] == '}');
        size_t items = n > 2;
        for (size_t k = 1; k + 1 < n; k++) {
            if (p->type == GD_PARAM_INT_LIST) {
                GD_REQUIRE((v[k] >= '0' && v[k] <= '9') || v[k] == '-' || v[k] == ',');
                items += v[k] == ',';
                continue;
            }
            GD_REQUIRE(v[k] == '"'); /* an item opens */
            for (k++; v[k] != '"'; k++) {
                GD_REQUIRE(k + 1 < n);
                if (v[k] == '\\')
                    k++;
            }
            items += v[k + 1] == ',';
            if (v[k + 1] == ',')
                k++;
        }
        GD_REQUIRE(items <= p->max_items);
        /* what a for_each over it iterates: a valid JSON array of as many items */
        gd_jbuf_t json = {0};
        size_t nitems = 0;
        gd_foreach_list_json(p, v, n, &json);
        GD_REQUIRE(gd_json_is_valid(json.buf, json.len));
        GD_REQUIRE(gd_foreach_items(json.buf, json.len, NULL, 0, &nitems) == 0);
        GD_REQUIRE(nitems == items);
        free(json.buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"};
    const gd_endpoint_conf_t *ep = NULL;
    gd_strv_t captures[GD_ROUTE_MAX_CAPTURES];
    char allow[128], err[256];

    setup();
    if (size < 1)
        return 0;
    const char *method = methods[data[0] % 6];
    const char *target = (const char *)data + 1;
    size_t len = size - 1;
    const char *q = memchr(target, '?', len);
    size_t path_len = q != NULL ? (size_t)(q - target) : len;
    const char *query = q != NULL ? q + 1 : "";
    size_t query_len = q != NULL ? len - path_len - 1 : 0;
    char *scratch = malloc(len + 1), *qscratch = NULL;
    GD_REQUIRE(scratch != NULL);

    int r = gd_router_match(router, method, strlen(method), target, path_len, scratch, captures,
                            &ep, allow, sizeof(allow));
    if (r == 0) {
        gd_strv_t *values = calloc(ep->nparams + 1, sizeof(*values));
        gd_header_view_t header = {{"x-tenant", 8}, {query, query_len}};
        qscratch = malloc(gd_route_scratch_bytes(ep, query_len));
        GD_REQUIRE(values != NULL && qscratch != NULL);
        if (gd_route_extract_params(ep, captures, query, query_len, &header,
                                    (data[0] & 0x80) ? 1 : 0, qscratch, values, err,
                                    sizeof(err)) == 0)
            check_lists(ep, values);
        free(values);
    } else {
        qscratch = malloc(query_len + 1);
        GD_REQUIRE(qscratch != NULL);
    }
    char out[64];
    (void)gd_query_find(query, query_len, "limit", query_len < sizeof(out) ? out : qscratch);
    free(scratch);
    free(qscratch);
    return 0;
}
