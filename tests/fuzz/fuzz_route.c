/* libFuzzer driver: route matching and parameter extraction on any request target, against a
 * fixed config with literal and capture segments, int, pattern and optional query parameters,
 * and a header parameter. The first input byte picks the method and whether the header is
 * sent; the rest is the raw target (path, then the query after a '?'). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"
#include "front/route.h"

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
    "{\"path\":\"/files//x/\",\"calls\":{\"a\":{\"upstream\":\"u\",\"path\":\"/f\"}}}"
    "]}";

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
    char *scratch = malloc(len + 1), *qscratch = malloc(query_len + 1);
    GD_REQUIRE(scratch != NULL && qscratch != NULL);

    int r = gd_router_match(router, method, strlen(method), target, path_len, scratch, captures,
                            &ep, allow, sizeof(allow));
    if (r == 0) {
        gd_strv_t *values = calloc(ep->nparams + 1, sizeof(*values));
        gd_header_view_t header = {{"x-tenant", 8}, {query, query_len}};
        GD_REQUIRE(values != NULL);
        (void)gd_route_extract_params(ep, captures, query, query_len, &header,
                                      (data[0] & 0x80) ? 1 : 0, qscratch, values, err,
                                      sizeof(err));
        free(values);
    }
    char out[64];
    (void)gd_query_find(query, query_len, "limit", query_len < sizeof(out) ? out : qscratch);
    free(scratch);
    free(qscratch);
    return 0;
}
