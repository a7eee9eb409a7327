/*
 * gd_cors: the CORS protocol of the Fetch standard for browsers on other origins: the headers of
 * actual answers, and preflight requests (OPTIONS with Origin and
 * Access-Control-Request-Method), checked against an endpoint's "cors" config.
 */
#ifndef GD_CORS_H
#define GD_CORS_H

#include <stdbool.h>
#include <stddef.h>

#include <h2o.h>

#include "config/config.h"

/* gd_cors_preflight()'s outcomes besides 0 */
enum {
    GD_CORS_REJECTED = 1, /* the origin, the method or a header is not allowed */
};

/**
 * Adds to @req's answer the headers of an actual answer under @cors (NULL: none): Vary: Origin
 * (unless every origin is allowed), and for a matching Origin Access-Control-Allow-Origin,
 * -Allow-Credentials and -Expose-Headers.
 */
void gd_cors_apply(const gd_cors_conf_t *cors, h2o_req_t *req);

/**
 * Whether @req is a CORS preflight: OPTIONS with Origin and Access-Control-Request-Method; that
 * method's value (borrowed from @req) in *@ret_method.
 */
bool gd_cors_is_preflight(h2o_req_t *req, h2o_iovec_t *ret_method);

/**
 * Checks the preflight @req for endpoint @ep under @cors (not NULL); without a "headers" list the
 * endpoint's header parameters may be asked for besides the defaults. Returns 0 after
 * adding the preflight answer's headers (Allow-Origin, -Allow-Methods, -Allow-Headers, -Max-Age,
 * -Allow-Credentials, Vary), or GD_CORS_REJECTED with the reason in @why (@whylen bytes), having
 * added only Vary.
 */
int gd_cors_preflight(const gd_cors_conf_t *cors, const gd_endpoint_conf_t *ep, h2o_req_t *req,
                      h2o_iovec_t method, char *why, size_t whylen);

#endif
