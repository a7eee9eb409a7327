/*
 * gd_admin: the admin listener, on a thread and loop of its own so that probes and scrapes are
 * answered however busy the workers are:
 *   GET /healthz  200 while the process lives and every worker loop turns (its heartbeat is
 *                 younger than GD_ADMIN_HEARTBEAT_STALE_MS), 503 otherwise;
 *   GET /readyz   200 when ready for traffic (started, not draining, and where SQL calls are
 *                 configured every worker's Postgres pool has a live connection), 503 with a
 *                 JSON reason otherwise; 503 from the first moment of a drain;
 *   GET /metrics  Prometheus text format 0.0.4;
 *   GET /debug/requests   the requests in flight and queued on every worker, with each call's
 *                 state (at most 1000 listed);
 *   GET /debug/upstreams  the upstream pools, their breakers and the Postgres pool.
 * The /debug views are written by each worker on its own loop (gd_inspection_t) and answered
 * when all have written theirs, or after 1 s without the workers that did not.
 */
#ifndef GD_ADMIN_H
#define GD_ADMIN_H

#include <stddef.h>

#include "config/config.h"
#include "ops/inspect.h"
#include "ops/metrics.h"

#define GD_ADMIN_HEARTBEAT_STALE_MS 2000

typedef struct gd_admin gd_admin_t;

/* Posts an inspection to the workers (gd_server_inspect()): 0, or -EBUSY. */
typedef int (*gd_admin_inspect_fn)(void *data, gd_inspection_t *inspection);

typedef enum gd_admin_state {
    GD_ADMIN_STARTING,
    GD_ADMIN_SERVING,
    GD_ADMIN_DRAINING,
} gd_admin_state_t;

/**
 * Creates the admin listener of @config (which has_admin), reading the workers' @metrics
 * (@n of them; all borrowed, they must outlive it).
 */
gd_admin_t *gd_admin_new(const gd_config_t *config, const gd_metrics_t *const *metrics, size_t n);
/** Opens the listening socket. Returns 0, or -errno with a message naming the address in @err. */
int gd_admin_listen(gd_admin_t *admin, char *err, size_t errlen);
/** Starts the admin thread. Returns 0 or -errno. */
int gd_admin_start(gd_admin_t *admin);
/** Lets the /debug views ask the workers through @inspect(@data, ...); before gd_admin_start(). */
void gd_admin_set_inspector(gd_admin_t *admin, gd_admin_inspect_fn inspect, void *data);
/**
 * Makes @config (borrowed until the next call or gd_admin_free()) the one /metrics and the
 * /debug views describe: a config reload, on the owner's thread. Returns once no scrape reads
 * the one it replaces.
 */
void gd_admin_set_config(gd_admin_t *admin, const gd_config_t *config);
/** Lets /metrics show @reloads (borrowed, must outlive @admin); before gd_admin_start(). */
void gd_admin_set_reloads(gd_admin_t *admin, const gd_metrics_reloads_t *reloads);
/** Sets the state /readyz reports (any thread). */
void gd_admin_set_state(gd_admin_t *admin, gd_admin_state_t state);
/** Stops the admin thread (closing its connections) and frees @admin (NULL is a no-op). */
gd_admin_t *gd_admin_free(gd_admin_t *admin);

/**
 * How long ago (ms) a worker published @heartbeat_ms, at @now_ms (both uv_hrtime() in ms); 0 when
 * the heartbeat is newer than @now_ms (published after the clock was read).
 */
uint64_t gd_admin_heartbeat_age_ms(uint64_t now_ms, uint64_t heartbeat_ms);

#endif
