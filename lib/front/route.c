#include "front/route.h"

#include <errno.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/percent.h"
#include "base/util.h"
#include "config/listparam.h"

/* Values up to this length are copied to the stack for regexec(); longer ones to the heap. */
#define PATTERN_STACK_COPY 256

struct route {
    const gd_endpoint_conf_t *endpoint; /* borrowed from the config */
    size_t *literal_lens;               /* per segment: strlen() of a literal */
};

/* The endpoints with a given number of path segments, in config order. */
struct bucket {
    struct route *routes;
    size_t nroutes;
};

struct gd_router {
    const gd_config_t *config;
    struct bucket *buckets; /* indexed by the number of segments */
    size_t nbuckets;
};

gd_router_t *gd_router_new(const gd_config_t *config)
{
    gd_router_t *router = gd_xcalloc(1, sizeof(*router));

    router->config = config;
    for (size_t i = 0; i < config->nendpoints; i++)
        if (config->endpoints[i].nsegments + 1 > router->nbuckets)
            router->nbuckets = config->endpoints[i].nsegments + 1;
    router->buckets = gd_xcalloc(router->nbuckets, sizeof(*router->buckets));
    for (size_t i = 0; i < config->nendpoints; i++) {
        const gd_endpoint_conf_t *ep = &config->endpoints[i];
        struct bucket *b = &router->buckets[ep->nsegments];
        struct route *r;

        /* config.c bounds captures by the same number; callers size their arrays by ours. */
        GD_REQUIRE(ep->ncaptures <= GD_ROUTE_MAX_CAPTURES);
        b->routes = gd_xrealloc(b->routes, (b->nroutes + 1) * sizeof(*b->routes));
        r = &b->routes[b->nroutes++];
        r->endpoint = ep;
        r->literal_lens = gd_xcalloc(ep->nsegments, sizeof(*r->literal_lens));
        for (size_t j = 0; j < ep->nsegments; j++)
            if (!ep->segments[j].is_capture)
                r->literal_lens[j] = strlen(ep->segments[j].text);
    }
    return router;
}

gd_router_t *gd_router_free(gd_router_t *router)
{
    if (router == NULL)
        return NULL;
    for (size_t i = 0; i < router->nbuckets; i++) {
        for (size_t j = 0; j < router->buckets[i].nroutes; j++)
            free(router->buckets[i].routes[j].literal_lens);
        free(router->buckets[i].routes);
    }
    free(router->buckets);
    free(router);
    return NULL;
}

/* Whether @path (starting with '/', with as many segments as @r) matches @r's pattern: raw
 * bytes against literals, any non-empty segment for a capture. */
static bool path_matches(const struct route *r, const char *path, size_t len)
{
    const gd_endpoint_conf_t *ep = r->endpoint;
    size_t pos = 1;

    for (size_t i = 0; i < ep->nsegments; i++) {
        const char *slash = memchr(path + pos, '/', len - pos);
        size_t end = slash != NULL ? (size_t)(slash - path) : len;
        size_t seg_len = end - pos;

        if (ep->segments[i].is_capture) {
            if (seg_len == 0)
                return false;
        } else if (seg_len != r->literal_lens[i] ||
                   memcmp(path + pos, ep->segments[i].text, seg_len) != 0) {
            return false;
        }
        pos = end + 1;
    }
    return true;
}

/* Whether @a takes precedence over @b, both matching the same path: at the first segment where
 * one has a literal and the other a capture, the literal wins. */
static bool beats(const gd_endpoint_conf_t *a, const gd_endpoint_conf_t *b)
{
    for (size_t i = 0; i < a->nsegments; i++)
        if (a->segments[i].is_capture != b->segments[i].is_capture)
            return !a->segments[i].is_capture;
    return false;
}

/* Whether the ", "-separated list @list (@len bytes) holds @method. */
static bool list_has(const char *list, size_t len, const char *method)
{
    size_t mlen = strlen(method), pos = 0;

    while (pos < len) {
        const char *comma = memchr(list + pos, ',', len - pos);
        size_t end = comma != NULL ? (size_t)(comma - list) : len;
        if (end - pos == mlen && memcmp(list + pos, method, mlen) == 0)
            return true;
        pos = end + 2;
    }
    return false;
}

/* Writes the methods of every endpoint of @b matching @path, in config order, once each. A
 * method that does not fit in @allowlen bytes (NUL included) is left off, with those after. */
static void write_allow(const struct bucket *b, const char *path, size_t path_len, char *allow,
                        size_t allowlen)
{
    size_t len = 0;

    if (allowlen == 0)
        return;
    for (size_t i = 0; i < b->nroutes; i++) {
        const char *method = b->routes[i].endpoint->method;
        size_t mlen = strlen(method), need = mlen + (len > 0 ? 2 : 0);

        if (!path_matches(&b->routes[i], path, path_len) || list_has(allow, len, method))
            continue;
        if (len + need + 1 > allowlen)
            break;
        if (len > 0) {
            memcpy(allow + len, ", ", 2);
            len += 2;
        }
        memcpy(allow + len, method, mlen);
        len += mlen;
    }
    allow[len] = '\0';
}

int gd_router_match(const gd_router_t *router, const char *method, size_t method_len,
                    const char *path, size_t path_len, char *scratch, gd_strv_t *ret_captures,
                    const gd_endpoint_conf_t **ret_endpoint, char *allow, size_t allowlen)
{
    gd_strv_t captures[GD_ROUTE_MAX_CAPTURES];
    const struct route *best = NULL;
    const struct bucket *b;
    bool is_path_known = false;
    size_t nsegments = 0, pos = 1, used = 0, ncaptures = 0;

    if (path_len == 0 || path[0] != '/')
        return GD_ROUTE_NO_MATCH;
    for (size_t i = 0; i < path_len && nsegments < router->nbuckets; i++)
        nsegments += path[i] == '/';
    if (nsegments >= router->nbuckets)
        return GD_ROUTE_NO_MATCH;
    b = &router->buckets[nsegments];

    for (size_t i = 0; i < b->nroutes; i++) {
        const struct route *r = &b->routes[i];
        if (!path_matches(r, path, path_len))
            continue;
        is_path_known = true;
        if (gd_memeq(method, method_len, r->endpoint->method) &&
            (best == NULL || beats(r->endpoint, best->endpoint)))
            best = r;
    }
    if (best == NULL) {
        if (!is_path_known)
            return GD_ROUTE_NO_MATCH;
        write_allow(b, path, path_len, allow, allowlen);
        return GD_ROUTE_BAD_METHOD;
    }

    /* Decoded into a local array first: nothing is written to the outputs on error. */
    for (size_t i = 0; i < best->endpoint->nsegments; i++) {
        const char *slash = memchr(path + pos, '/', path_len - pos);
        size_t end = slash != NULL ? (size_t)(slash - path) : path_len;

        if (best->endpoint->segments[i].is_capture) {
            long n = gd_percent_decode(path + pos, end - pos, scratch + used, false);
            if (n < 0)
                return -EINVAL;
            captures[ncaptures].base = scratch + used;
            captures[ncaptures].len = (size_t)n;
            ncaptures++;
            used += (size_t)n;
        }
        pos = end + 1;
    }
    if (ncaptures > 0)
        memcpy(ret_captures, captures, ncaptures * sizeof(*captures));
    *ret_endpoint = best->endpoint;
    return 0;
}

long gd_query_find_next(const char *query, size_t query_len, const char *name, size_t *pos,
                        char *out)
{
    size_t name_len = strlen(name);

    while (*pos < query_len) {
        const char *amp = memchr(query + *pos, '&', query_len - *pos);
        size_t start = *pos, end = amp != NULL ? (size_t)(amp - query) : query_len;
        const char *eq = memchr(query + start, '=', end - start);
        size_t name_end = eq != NULL ? (size_t)(eq - query) : end;

        *pos = end + 1;
        /* Names are compared raw: names in the config are plain (no byte that needs
         * encoding), and a client encoding one of theirs is not worth a decode per pair. */
        if (name_end - start == name_len && memcmp(query + start, name, name_len) == 0) {
            long n;
            if (eq == NULL)
                return 0; /* "?flag": present, empty */
            n = gd_percent_decode(eq + 1, end - name_end - 1, out, true);
            return n < 0 ? -2 : n;
        }
    }
    return -1;
}

long gd_query_find(const char *query, size_t query_len, const char *name, char *out)
{
    size_t pos = 0;
    return gd_query_find_next(query, query_len, name, &pos, out);
}

size_t gd_route_scratch_bytes(const gd_endpoint_conf_t *endpoint, size_t query_len)
{
    for (size_t i = 0; i < endpoint->nparams; i++) {
        gd_param_type_t t = endpoint->params[i].type;
        /* A literal writes at most 2 bytes per decoded byte and 3 per item (quotes, comma),
         * an item taking at least one raw byte of its own: 5 per raw byte, plus its braces and
         * NUL; the other values at most their raw bytes, which are others. Then the area the
         * occurrences are decoded into, one at a time. */
        if (t == GD_PARAM_INT_LIST || t == GD_PARAM_STRING_LIST)
            return (query_len * 5 + 8 * endpoint->nparams) + (query_len + 1);
    }
    return query_len + 1;
}

/* List parameter @p: every occurrence in @query, as one Postgres array literal at @out, the
 * occurrences decoded one at a time into @tmp (room for @query_len bytes). Returns its length,
 * or -EINVAL with a message. */
static long list_value(const gd_param_t *p, const char *query, size_t query_len, char *out,
                       size_t cap, char *tmp, bool *is_present, char *err, size_t errlen)
{
    gd_list_writer_t w;
    size_t pos = 0;
    long n;

    gd_list_begin(&w, p, out, cap);
    while ((n = gd_query_find_next(query, query_len, p->key, &pos, tmp)) != -1) {
        if (n == -2) {
            snprintf(err, errlen, "parameter \"%s\" is not properly percent-encoded", p->name);
            return -EINVAL;
        }
        *is_present = true;
        int r = gd_list_add(&w, tmp, (size_t)n, err, errlen);
        if (r < 0)
            return r;
    }
    return (long)gd_list_end(&w);
}

/* Whether @v matches @p's pattern whole. regexec() needs a NUL-terminated string: the value
 * is copied. Returns 1, 0, or -ENOMEM. */
static int matches_pattern(const gd_param_t *p, gd_strv_t v)
{
    char stack_copy[PATTERN_STACK_COPY], *copy = stack_copy;
    int rc;

    /* A NUL byte cannot come from gd_percent_decode() or from a header that passed the control
     * character check; one from elsewhere would hide the rest of the value, so it fails. */
    if (v.len > 0 && memchr(v.base, '\0', v.len) != NULL)
        return 0;
    if (v.len >= sizeof(stack_copy) && (copy = malloc(v.len + 1)) == NULL)
        return -ENOMEM; /* the length is the client's: no abort */
    if (v.len > 0)
        memcpy(copy, v.base, v.len);
    copy[v.len] = '\0';
    rc = regexec(&p->pattern, copy, 0, NULL, 0);
    if (copy != stack_copy)
        free(copy);
    return rc == 0;
}

static bool has_control_char(gd_strv_t v)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.base[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return true;
    }
    return false;
}

int gd_route_extract_params(const gd_endpoint_conf_t *endpoint, const gd_strv_t *captures,
                            const char *query, size_t query_len, const gd_header_view_t *headers,
                            size_t nheaders, char *scratch, gd_strv_t *ret_values, char *err,
                            size_t errlen)
{
    size_t used = 0;

    for (size_t i = 0; i < endpoint->nparams; i++) {
        const gd_param_t *p = &endpoint->params[i];
        gd_strv_t v = {NULL, 0};
        bool is_present = false;
        int r;

        switch (p->src) {
        case GD_SRC_PATH:
            v = captures[p->path_index];
            is_present = true;
            break;
        case GD_SRC_QUERY: {
            if (p->type == GD_PARAM_INT_LIST || p->type == GD_PARAM_STRING_LIST) {
                /* gd_route_scratch_bytes() made room: the literals and the other values
                 * first, a decoding area of query_len + 1 bytes at the end. */
                size_t cap = gd_route_scratch_bytes(endpoint, query_len) - (query_len + 1);
                long n = list_value(p, query, query_len, scratch + used, cap - used,
                                    scratch + cap, &is_present, err, errlen);
                char *out = scratch + used;
                if (n < 0)
                    return (int)n;
                v.base = out;
                v.len = (size_t)n;
                used += (size_t)n + 1;
                break;
            }
            /* Distinct names find distinct pairs, each decoding to at most its raw length:
             * the values together fit in @query_len bytes. */
            char *out = scratch != NULL ? scratch + used : NULL;
            long n = gd_query_find(query, query_len, p->key, out);
            if (n == -2) {
                snprintf(err, errlen, "parameter \"%s\" is not properly percent-encoded", p->name);
                return -EINVAL;
            }
            if (n >= 0) {
                v.base = out;
                v.len = (size_t)n;
                used += (size_t)n;
                is_present = true;
            }
            break;
        }
        case GD_SRC_JWT:
            break; /* a claim: the front door fills it in once the token is verified */
        case GD_SRC_CALL:
            break; /* a reference to a call's result is never a parameter */
        case GD_SRC_ITEM:
            break; /* a batch endpoint's item: the request fills it in for each run */
        case GD_SRC_HEADER:
            /* The first occurrence wins, as for query parameters. */
            for (size_t j = 0; j < nheaders && !is_present; j++) {
                if (gd_memeq(headers[j].name.base, headers[j].name.len, p->key)) {
                    v = headers[j].value;
                    is_present = true;
                }
            }
            if (is_present && has_control_char(v)) {
                snprintf(err, errlen, "header \"%s\" contains a control character", p->key);
                return -EINVAL;
            }
            break;
        }

        if (!is_present) {
            if (p->is_required) {
                snprintf(err, errlen, "missing required parameter \"%s\"", p->name);
                return -EINVAL;
            }
            /* The default passed its type check at config load; "" (no default) is exempt. */
            v.base = p->default_value;
            v.len = strlen(p->default_value);
        } else if (p->type == GD_PARAM_INT && !gd_is_int64(v.base, v.len)) {
            snprintf(err, errlen, "parameter \"%s\" must be an integer", p->name);
            return -EINVAL;
        } else if (p->type == GD_PARAM_PATTERN && (r = matches_pattern(p, v)) <= 0) {
            if (r < 0) {
                snprintf(err, errlen, "out of memory checking parameter \"%s\"", p->name);
                return r;
            }
            snprintf(err, errlen, "parameter \"%s\" must match the pattern \"%s\"", p->name,
                     p->pattern_src);
            return -EINVAL;
        }
        ret_values[i] = v;
    }
    return 0;
}
