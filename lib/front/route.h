/*
 * gd_route: maps a request's method and raw path to an endpoint of the config, and extracts the
 * request's parameter values (path captures, query parameters, headers) with their declared
 * types checked. Built once from the config and shared read-only by all threads.
 */
#ifndef GD_ROUTE_H
#define GD_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "config/template.h"

typedef struct gd_router gd_router_t;

enum {
    GD_ROUTE_NO_MATCH = 1,   /* no endpoint has this path: 404 */
    GD_ROUTE_BAD_METHOD = 2, /* the path exists with other methods: 405 */
};

/** Builds the router of @config (borrowed; it must outlive the router). Never fails. */
gd_router_t *gd_router_new(const gd_config_t *config);
/** Frees @router (NULL is a no-op). Returns NULL. */
gd_router_t *gd_router_free(gd_router_t *router);

/**
 * Finds the endpoint for @method and @path (the raw request target's path part, before any
 * '?'; not decoded). Path segments are matched literally against literal segments (exactly, no
 * decoding), a capture takes one non-empty segment, percent-decoded into @scratch (room for
 * @path_len bytes) and pointed to by @ret_captures[i] (room for the endpoint's ncaptures; give
 * GD_ROUTE_MAX_CAPTURES entries). At each segment a literal beats a capture. Returns 0 with
 * *@ret_endpoint set; GD_ROUTE_NO_MATCH; GD_ROUTE_BAD_METHOD with the allowed methods written
 * to @allow ("GET, POST", NUL-terminated, at most @allowlen bytes); -EINVAL when a capture has
 * a malformed percent-escape or an encoded NUL.
 */
#define GD_ROUTE_MAX_CAPTURES 32
int gd_router_match(const gd_router_t *router, const char *method, size_t method_len,
                    const char *path, size_t path_len, char *scratch, gd_strv_t *ret_captures,
                    const gd_endpoint_conf_t **ret_endpoint, char *allow, size_t allowlen);

/**
 * Finds query parameter @name (NUL-terminated) in the raw @query (the part after '?', without
 * it). On success the percent-decoded value ('+' as space) is written to @out (room for
 * @query_len bytes) and its length returned. Returns -1 when absent, -2 when its value is
 * malformed. The first occurrence wins.
 */
long gd_query_find(const char *query, size_t query_len, const char *name, char *out);
/** gd_query_find() from *@pos on, which it moves past the pair found (or to the end). */
long gd_query_find_next(const char *query, size_t query_len, const char *name, size_t *pos,
                        char *out);
/** The scratch gd_route_extract_params() needs for @endpoint and a query of @query_len bytes. */
size_t gd_route_scratch_bytes(const gd_endpoint_conf_t *endpoint, size_t query_len);

/* A request header, borrowed. */
typedef struct gd_header_view {
    gd_strv_t name; /* lower-case */
    gd_strv_t value;
} gd_header_view_t;

/**
 * Fills @ret_values (room for endpoint->nparams) with every parameter's value for a request:
 * path captures from @captures, query parameters from @query (raw, may be empty), headers from
 * @headers; absent optional values get their default. Decoded copies live in @scratch (room for
 * @query_len bytes). Checks types. Returns 0, or -EINVAL with a human message in @err naming
 * the parameter ("parameter \"id\" must be an integer", "missing required parameter
 * \"query.limit\"", "header \"x-tenant\" contains a control character"), or -ENOMEM when a
 * long value cannot be copied for its pattern check.
 */
int gd_route_extract_params(const gd_endpoint_conf_t *endpoint, const gd_strv_t *captures,
                            const char *query, size_t query_len, const gd_header_view_t *headers,
                            size_t nheaders, char *scratch, gd_strv_t *ret_values, char *err,
                            size_t errlen);

#endif
