#include "front/cors.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Header names as h2o sends them over HTTP/1 (lower case, like its own tokens). */
#define ALLOW_ORIGIN      "access-control-allow-origin"
#define ALLOW_CREDENTIALS "access-control-allow-credentials"
#define EXPOSE_HEADERS    "access-control-expose-headers"
#define ALLOW_METHODS     "access-control-allow-methods"
#define ALLOW_HEADERS     "access-control-allow-headers"
#define MAX_AGE           "access-control-max-age"
#define VARY              "vary"

static void add(h2o_req_t *req, const char *name, const char *value, size_t len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, value, len);
}

static void add_str(h2o_req_t *req, const char *name, const char *value)
{
    add(req, name, value, strlen(value));
}

/* The request's single Origin, or NULL. */
static const h2o_iovec_t *find_origin(h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);

    return i >= 0 ? &req->headers.entries[i].value : NULL;
}

/* Whether @origin is allowed: "*", or equal to a listed origin (scheme and host compare
 * case-insensitively, as browsers serialise them in lower case anyway). */
static bool is_allowed_origin(const gd_cors_conf_t *cors, const h2o_iovec_t *origin)
{
    if (cors->is_any_origin)
        return true;
    for (size_t i = 0; i < cors->norigins; i++)
        if (strlen(cors->origins[i]) == origin->len &&
            strncasecmp(cors->origins[i], origin->base, origin->len) == 0)
            return true;
    return false;
}

static void add_vary(const gd_cors_conf_t *cors, h2o_req_t *req)
{
    /* With "*" the answer is the same for every origin; otherwise it names the origin, and a
     * cache must keep one copy per Origin. */
    if (!cors->is_any_origin)
        add(req, VARY, H2O_STRLIT("Origin"));
}

static void add_allow_origin(const gd_cors_conf_t *cors, h2o_req_t *req, const h2o_iovec_t *origin)
{
    if (cors->is_any_origin)
        add(req, ALLOW_ORIGIN, H2O_STRLIT("*"));
    else
        add(req, ALLOW_ORIGIN, origin->base, origin->len);
    if (cors->has_credentials)
        add(req, ALLOW_CREDENTIALS, H2O_STRLIT("true"));
}

void gd_cors_apply(const gd_cors_conf_t *cors, h2o_req_t *req)
{
    const h2o_iovec_t *origin;

    if (cors == NULL)
        return;
    add_vary(cors, req);
    if ((origin = find_origin(req)) == NULL || !is_allowed_origin(cors, origin))
        return;
    add_allow_origin(cors, req, origin);
    if (cors->expose_headers_joined[0] != '\0')
        add_str(req, EXPOSE_HEADERS, cors->expose_headers_joined);
}

bool gd_cors_is_preflight(h2o_req_t *req, h2o_iovec_t *ret_method)
{
    ssize_t i;

    if (!h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("OPTIONS")) ||
        find_origin(req) == NULL)
        return false;
    i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-method"), -1);
    if (i < 0)
        return false;
    *ret_method = req->headers.entries[i].value;
    return true;
}

/* Whether the endpoint's own header parameters count: only with the default "headers". */
static bool has_param_headers(const gd_cors_conf_t *cors, const gd_endpoint_conf_t *ep)
{
    return cors->has_default_headers && ep != NULL;
}

/* The request header the endpoint's auth reads (counts like a header parameter): its API key
 * header, or Authorization for bearer tokens; NULL without auth. */
static const char *auth_header(const gd_endpoint_conf_t *ep)
{
    if (ep == NULL || ep->auth == NULL)
        return NULL;
    return ep->auth->jwt != NULL ? "authorization" : ep->auth->api_key_header;
}

static bool is_allowed_header(const gd_cors_conf_t *cors, const gd_endpoint_conf_t *ep,
                              const char *name, size_t len)
{
    const char *ah = has_param_headers(cors, ep) ? auth_header(ep) : NULL;

    if (ah != NULL && strlen(ah) == len && strncasecmp(ah, name, len) == 0)
        return true;
    for (size_t i = 0; i < cors->nheaders; i++)
        if (strlen(cors->headers[i]) == len && strncasecmp(cors->headers[i], name, len) == 0)
            return true;
    for (size_t i = 0; has_param_headers(cors, ep) && i < ep->nparams; i++)
        if (ep->params[i].src == GD_SRC_HEADER && strlen(ep->params[i].key) == len &&
            strncasecmp(ep->params[i].key, name, len) == 0)
            return true;
    return false;
}

/* Access-Control-Allow-Headers: the list, and the endpoint's header parameters when they count
 * (in req's pool). */
static h2o_iovec_t allow_headers(const gd_cors_conf_t *cors, const gd_endpoint_conf_t *ep,
                                 h2o_req_t *req)
{
    h2o_iovec_t v = h2o_iovec_init(cors->headers_joined, strlen(cors->headers_joined));

    for (size_t i = 0; has_param_headers(cors, ep) && i < ep->nparams; i++) {
        const gd_param_t *p = &ep->params[i];
        if (p->src != GD_SRC_HEADER || is_allowed_header(cors, NULL, p->key, strlen(p->key)))
            continue;
        v = h2o_concat(&req->pool, v, h2o_iovec_init(v.len > 0 ? ", " : "", v.len > 0 ? 2 : 0),
                       h2o_iovec_init(p->key, strlen(p->key)));
    }
    const char *ah = has_param_headers(cors, ep) ? auth_header(ep) : NULL;
    if (ah != NULL && !is_allowed_header(cors, NULL, ah, strlen(ah)))
        v = h2o_concat(&req->pool, v, h2o_iovec_init(v.len > 0 ? ", " : "", v.len > 0 ? 2 : 0),
                       h2o_iovec_init(ah, strlen(ah)));
    return v;
}

/* Checks each name of the Access-Control-Request-Headers list (Fetch: lower-case names joined
 * by ","); writes the first refused one to @why. */
static bool are_allowed_headers(const gd_cors_conf_t *cors, const gd_endpoint_conf_t *ep,
                                h2o_req_t *req, char *why, size_t whylen)
{
    for (ssize_t i = -1;
         (i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-headers"),
                                     i)) >= 0;) {
        const char *p = req->headers.entries[i].value.base;
        const char *end = p + req->headers.entries[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *name = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > name && !is_allowed_header(cors, ep, name, (size_t)(p - name))) {
                snprintf(why, whylen, "header %.*s is not allowed from another origin",
                         (int)(p - name < 64 ? p - name : 64), name);
                return false;
            }
        }
    }
    return true;
}

static bool is_allowed_method(const gd_cors_conf_t *cors, const char *ep_method, h2o_iovec_t m)
{
    if (cors->methods == NULL)
        return h2o_memis(m.base, m.len, ep_method, strlen(ep_method)) ||
               (strcmp(ep_method, "GET") == 0 && h2o_memis(m.base, m.len, H2O_STRLIT("HEAD")));
    for (size_t i = 0; i < cors->nmethods; i++)
        if (h2o_memis(m.base, m.len, cors->methods[i], strlen(cors->methods[i])))
            return true;
    return false;
}

int gd_cors_preflight(const gd_cors_conf_t *cors, const gd_endpoint_conf_t *ep, h2o_req_t *req,
                      h2o_iovec_t method, char *why, size_t whylen)
{
    const char *ep_method = ep->method;
    const h2o_iovec_t *origin = find_origin(req);
    char max_age[16];

    add_vary(cors, req);
    if (!is_allowed_origin(cors, origin)) {
        snprintf(why, whylen, "origin %.*s is not allowed",
                 (int)(origin->len < 200 ? origin->len : 200), origin->base);
        return GD_CORS_REJECTED;
    }
    if (!is_allowed_method(cors, ep_method, method)) {
        snprintf(why, whylen, "method %.*s is not allowed from another origin",
                 (int)(method.len < 32 ? method.len : 32), method.base);
        return GD_CORS_REJECTED;
    }
    if (!are_allowed_headers(cors, ep, req, why, whylen))
        return GD_CORS_REJECTED;
    add_allow_origin(cors, req, origin);
    if (cors->methods_joined != NULL)
        add_str(req, ALLOW_METHODS, cors->methods_joined);
    else if (strcmp(ep_method, "GET") == 0)
        add(req, ALLOW_METHODS, H2O_STRLIT("GET, HEAD"));
    else
        add_str(req, ALLOW_METHODS, ep_method);
    h2o_iovec_t headers = allow_headers(cors, ep, req);
    if (headers.len > 0)
        add(req, ALLOW_HEADERS, headers.base, headers.len);
    int n = snprintf(max_age, sizeof(max_age), "%u", cors->max_age_s);
    h2o_iovec_t v = h2o_strdup(&req->pool, max_age, (size_t)n); /* h2o keeps the pointer */
    add(req, MAX_AGE, v.base, v.len);
    return 0;
}
