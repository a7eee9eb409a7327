/*
 * gd_aggregate: the life of one request to an endpoint. On the loop stack it matches the route
 * and checks the parameters (answering 404/405/400 at once); then one coroutine starts every
 * call of the endpoint (upstream HTTP and Postgres alike), gathers them at a single point with the endpoint deadline, merges the
 * outcomes and answers. The client going away or the server's shutdown timeout cancels the
 * gather; nothing is leaked either way.
 */
#ifndef GD_AGGREGATE_H
#define GD_AGGREGATE_H

#include <stdbool.h>
#include <stddef.h>

#include <h2o.h>

#include "front/admission.h"
#include "config/config.h"
#include "base/coro.h"
#include "ops/metrics.h"
#include "sources/pg/pgpool.h"
#include "front/route.h"
#include "sources/http/upstream.h"

typedef struct gd_request gd_request_t;
typedef struct gd_aggregate_ctx gd_aggregate_ctx_t;

/* What requests on one event-loop thread share. Owned by the server's thread. */
struct gd_aggregate_ctx {
    /* public: set by the owner before the first request */
    const gd_config_t *config;
    const gd_router_t *router;
    uv_loop_t *loop;
    gd_sched_t *sched;
    gd_upstream_t **upstreams; /* by gd_upstream_conf_t.index */
    gd_pgpool_t *pgpool;       /* NULL when no call uses SQL */
    gd_metrics_t *metrics;     /* this thread's */
    /* public: set when the server drains; HTTP/1 answers then close their connection */
    bool is_draining;
    /* read-only */
    size_t in_flight;         /* requests holding a slot */
    gd_admission_t admission; /* its .waiting: requests queued for a slot */
    /* private */
    h2o_linklist_t _in_flight; /* of gd_request_t */
    bool _is_aborting;
};

/** Prepares the private part of @actx, once its public fields are set. */
/** Prepares @actx, its public fields set: at most @max_in_flight requests gathered at once, the
 * others queued in arrival order until their endpoint deadline. */
void gd_aggregate_ctx_init(gd_aggregate_ctx_t *actx, size_t max_in_flight);
/** Checks that nothing is in flight or queued. */
void gd_aggregate_ctx_dispose(gd_aggregate_ctx_t *actx);
/** Handles @req (an h2o request of this thread); always answers, now or later. */
void gd_aggregate_handle(gd_aggregate_ctx_t *actx, h2o_req_t *req);
/**
 * Cancels every request still gathering and answers each 503 (the shutdown timeout). Requests
 * arriving later are answered 503 too.
 */
void gd_aggregate_abort_all(gd_aggregate_ctx_t *actx);

#endif
