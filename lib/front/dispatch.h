/*
 * gd_dispatch: the front door's work on every request, on the loop stack: its id (the client's
 * X-Request-Id when plausible), the route (404, 405 with Allow), the parameters (400), then the
 * hand-over to gather. Everything answered here is answered at once, counted and logged.
 */
#ifndef GD_DISPATCH_H
#define GD_DISPATCH_H

#include <h2o.h>

#include "front/route.h"
#include "gather/request.h"

/**
 * Handles @req (an h2o request of the thread of @ctx), which waited @unread_ns in the kernel
 * before it was read (the read bound); always answers, now or later.
 */
void gd_dispatch(const gd_router_t *router, gd_gather_ctx_t *ctx, h2o_req_t *req,
                 uint64_t unread_ns);

#endif
