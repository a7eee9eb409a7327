/*
 * gd_request: the life of one request to an endpoint, once the front door has matched it and
 * checked its parameters. Its calls are rendered into the request's own arena (a 400 when a
 * value would smuggle a control character); it then waits in line for one of the thread's
 * request slots (the gate), and once it holds one a coroutine starts every call, gathers them
 * at a single point with the endpoint deadline, merges the outcomes and answers. When some
 * calls need others' results, each starts (rendered again with those results) as soon as what
 * it needs has arrived, within the same deadline.
 *
 * Ownership and h2o: a gd_request_t is heap memory with its own arena, both freed when the
 * request is finished, never by h2o's pool teardown; h2o's request and ours are linked weakly
 * both ways (the idiom of h2o's proxy). When h2o disposes of the request first (an HTTP/2 reset,
 * a closed connection) its dispose callback only cuts the link and cancels: the calls stop at
 * once, the waiter wakes on a later loop iteration, and the request is counted and logged as 499
 * there. A client that closes its HTTP/1 connection mid-gather is noticed (gd_hangup) and treated
 * the same way. Nothing here calls into h2o or starts another request from inside h2o's dispose
 * callbacks.
 */
#ifndef GD_REQUEST_H
#define GD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <jansson.h>

#include "base/coro.h"
#include "base/gate.h"
#include "config/config.h"
#include "gather/hangup.h"
#include "gather/respond.h"
#include "ops/metrics.h"
#include "sources/call.h"

typedef struct gd_request gd_request_t;
typedef struct gd_gather_ctx gd_gather_ctx_t;
typedef struct gd_gather_view gd_gather_view_t;

/*
 * A config and the sources of one thread that serve it. A request holds the view it started
 * under until it ends, so that a config reload (gd_gather_ctx_switch()) lets it finish on the
 * config, pools and policies it began with. Owned by the server's thread.
 */
struct gd_gather_view {
    /* public: set by the owner */
    const gd_config_t *config;
    const gd_source_t *sources; /* by gd_call_conf_t.source */
    /* Called when the view is no longer current and its last request has ended: from the
     * end of a request (deep in a call's or h2o's callback) or from gd_gather_ctx_switch(), so
     * it only marks the view for the owner to close later, on a turn of its own. */
    void (*on_unused)(gd_gather_view_t *view);
    /* read-only */
    size_t requests; /* started under it and not ended (queued ones included) */
    /* private: by endpoint, then its batch runs, the arena size its requests take */
    size_t *_arena_hints;
};

/* What requests on one event-loop thread share. Owned by the server's thread. */
struct gd_gather_ctx {
    /* public: set by the owner through gd_gather_ctx_switch() */
    gd_gather_view_t *view;     /* what new requests start under */
    const gd_config_t *config;  /* view's: the config new requests are routed by */
    const gd_source_t *sources; /* view's */
    /* public: set by the owner before gd_gather_ctx_init() */
    uv_loop_t *loop;
    gd_sched_t *sched;
    gd_metrics_t *metrics;      /* this thread's */
    gd_hangup_t *hangup;        /* may be NULL: HTTP/1 hang-ups are then noticed at the answer */
    struct gd_redis *redis;     /* the worker's, for cluster-scoped client limits; may be NULL */
    /* public: set when the server drains; HTTP/1 answers then close their connection */
    bool is_draining;
    /* read-only */
    size_t in_flight;         /* requests holding a slot */
    gd_gate_t line;           /* the request slots; its .waiting: requests queued for one */
    bool is_aborting;         /* past the shutdown timeout: everything is answered 503 */
    gd_responder_t responder; /* what this thread's answers are written with */
    /* private */
    h2o_linklist_t _in_flight; /* of gd_request_t */
};

/** Frees what @view learned from its requests, once none holds it. */
void gd_gather_view_dispose(gd_gather_view_t *view);

/** Prepares @ctx, its public fields set: at most @max_in_flight requests gathered at once. */
void gd_gather_ctx_init(gd_gather_ctx_t *ctx, size_t max_in_flight);
/**
 * Makes @view the one new requests start under (owning thread). The view it replaces is told
 * through its on_unused once no request holds it: now, when none does.
 */
void gd_gather_ctx_switch(gd_gather_ctx_t *ctx, gd_gather_view_t *view);
/** Checks that nothing is in flight or queued. */
void gd_gather_ctx_dispose(gd_gather_ctx_t *ctx);

/**
 * Gathers @req for endpoint @ep with its checked parameter @values (borrowed for the call),
 * @request_id and @client (the client's address; both borrowed for the call) and
 * @started_at_ns (uv_hrtime() at arrival). Always answers, now or later.
 */
void gd_gather_start(gd_gather_ctx_t *ctx, h2o_req_t *req, const gd_endpoint_conf_t *ep,
                     const gd_strv_t *values, const char *request_id, const char *client,
                     uint64_t started_at_ns);
/**
 * Cancels every request still gathering and answers each 503 (the shutdown timeout); queued
 * ones are refused with 503. Requests arriving later are answered 503 too.
 */
void gd_gather_abort_all(gd_gather_ctx_t *ctx);
/**
 * Appends to the jansson array @out one object per request of @ctx (in flight, then queued:
 * endpoint, path, request id, client, age, and each call's state), while @out has fewer than
 * @max; returns how many were left out. For the live view; owning thread only.
 */
size_t gd_gather_describe(const gd_gather_ctx_t *ctx, json_t *out, size_t max);

#endif
