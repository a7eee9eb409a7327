/*
 * gd_server: the HTTP front. One worker thread per configured thread, each with its own libuv
 * loop, h2o context, coroutine scheduler, upstream pools and SO_REUSEPORT listening sockets, so
 * workers share nothing on the request path but the log writer's buffer (one short mutex per
 * line written, see ops/log.c) and the relaxed atomics of their own metrics. Graceful shutdown happens in two steps the owner
 * drives from its own loop: stop accepting (drain), and, if the drain takes too long, abort.
 */
#ifndef GD_SERVER_H
#define GD_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "config/config.h"
#include "front/route.h"
#include "ops/inspect.h"

/* Inspections waiting at one worker at most (the live view is for a person, not a poller). */
#define GD_SERVER_MAX_INSPECTIONS 8
#include "ops/metrics.h"
#include "sources/http/tls.h"

typedef struct gd_server gd_server_t;
typedef void (*gd_server_stopped_cb)(gd_server_t *server, void *data);

/**
 * Creates the server of @config and @router, with the TLS contexts @tls of its upstreams (see
 * gd_tls_ctxs_new()); takes all three (gd_server_free() frees them, or a reload once no
 * request uses them). Metrics are kept by @config's metrics_slot values.
 */
gd_server_t *gd_server_new(gd_config_t *config, gd_router_t *router, gd_tls_ctx_t **tls);
/**
 * Opens every listening socket (one per address per thread). Returns 0, or -errno with a
 * message naming the address in @err.
 */
int gd_server_listen(gd_server_t *server, char *err, size_t errlen);
/**
 * Starts the worker threads. @on_stopped runs on @main_loop once every worker has finished
 * (after gd_server_drain()). Returns 0 or -errno.
 */
int gd_server_start(gd_server_t *server, uv_loop_t *main_loop, gd_server_stopped_cb on_stopped,
                    void *data);
/**
 * Stops accepting: every worker accepts what is already queued, closes its listeners, lets the
 * requests in flight finish, closes idle keep-alive connections, answers the rest with
 * "Connection: close" (HTTP/2: GOAWAY) and finishes once it has no connection left.
 */
void gd_server_drain(gd_server_t *server);
/** Answers 503 to every request still in flight (the shutdown timeout passed). */
void gd_server_abort(gd_server_t *server);
/* What a reload kept and made anew. */
typedef struct gd_server_reload {
    size_t upstreams_kept;   /* their pools and connections go on */
    size_t upstreams_new;    /* new, or changed: new pools */
    size_t upstreams_closed; /* of the old config, changed or removed: close once unused */
    bool is_pg_kept;
} gd_server_reload_t;

/**
 * A config reload, on the owner's thread (after gd_server_start()): @config, valid, whose
 * restart-only settings equal the running ones' (config/carry.h), with its @router and @tls;
 * takes all three. New requests use it as soon as each worker has taken it (its next loop
 * turn); requests in flight finish on the config they began with, which is freed once the last
 * of them has ended. Pools of unchanged upstreams and of unchanged Postgres settings go on with
 * their connections; the mutable state of unchanged policies is carried (gd_config_carry()).
 * Returns 0 with what was kept in *@ret, or -EBUSY (nothing taken, the caller frees them) when
 * GD_CONFIG_MAX_FINISHING earlier configs still have requests in flight.
 */
int gd_server_reload(gd_server_t *server, gd_config_t *config, gd_router_t *router,
                     gd_tls_ctx_t **tls, gd_server_reload_t *ret);
/** The config of the latest reload (or the first); the owner's thread only. */
const gd_config_t *gd_server_config(const gd_server_t *server);
/** How many earlier configs still have requests in flight; the owner's thread only. */
size_t gd_server_configs_finishing(const gd_server_t *server);
/** The workers' metrics, one per thread, valid until gd_server_free(). */
/**
 * Posts @inspection to every worker (any thread): each answers its part on its own loop; a
 * worker that has stopped answers {"stopped": true} at once. At most GD_SERVER_MAX_INSPECTIONS
 * wait at a worker: returns -EBUSY (posting nothing) when a worker has that many, else 0.
 */
int gd_server_inspect(gd_server_t *server, gd_inspection_t *inspection);
const gd_metrics_t *const *gd_server_metrics(const gd_server_t *server, size_t *ret_n);
/** Joins the workers (after on_stopped) and frees @server (NULL is a no-op). Returns NULL. */
gd_server_t *gd_server_free(gd_server_t *server);

#endif
