/*
 * The response cache of calls with "cache", and the coalescing of identical calls in flight
 * (Go's singleflight).
 *
 * The store is the process's gd_ttlcache_t (config->cache_store), shared by every thread. It
 * holds its own copy of each document: a hit copies it into a new buffer of the requesting
 * thread (gd_buf_t is not thread-safe, and a copy of a few kilobytes costs less than a shared
 * reference count on every buffer of the hot path).
 *
 * gd_flights_t is one thread's calls in flight. A call with "cache" that misses joins the
 * flight of an identical call (same key: the call's variant and its rendered request) or
 * starts one. The flight makes the exchange with its own copy of the call (ops->clone), in a
 * group of its own, so that no requester owns it: a requester whose deadline passes, or whose
 * client leaves, leaves the flight and the others go on waiting; the flight ends at the call's
 * own timeout at the latest. When it ends, its result is stored (when cacheable) and copied to
 * every requester still waiting. Coalescing is per thread: identical misses on N threads at
 * once make at most N exchanges.
 *
 * A call whose cache is "shared" has a second level in Redis, for every replica: a new flight
 * looks the key up there (GET, its wait bounded by redis.timeout_ms and the call's deadline)
 * before it calls the source, and a success it gets from the source is stored there (SET with
 * PX, the same lifetime, at most redis.cache_max_entry_bytes). A shared hit goes into the
 * process's store for what is left of its lifetime. Redis down or slow: the lookup is skipped.
 */
#ifndef GD_CACHE_H
#define GD_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "base/coro.h"
#include "base/ttlcache.h"
#include "sources/call.h"

typedef struct gd_flights gd_flights_t;
struct gd_redis;

/** Creates a thread's table of flights, running on @sched's loop, storing into @store. */
gd_flights_t *gd_flights_new(gd_ttlcache_t *store, gd_sched_t *sched);
/**
 * Gives @flights the worker's Redis (borrowed, outlives them; NULL: none) for the calls whose
 * cache is "shared": an L1 miss asks Redis before it calls the source (at most redis.timeout_ms,
 * skipped while no connection is ready), and successes are stored there too (SET with PX).
 */
void gd_flights_use_redis(gd_flights_t *flights, struct gd_redis *redis);
/**
 * Cancels every flight still running (each requester still waiting gets "cancelled"); after
 * the loop has run, gd_flights_free() may follow. The flights' sources must still be open.
 */
void gd_flights_close(gd_flights_t *flights);
/** Frees @flights (NULL is a no-op): closed, nothing in flight. Returns NULL. */
gd_flights_t *gd_flights_free(gd_flights_t *flights);

/**
 * gd_call_start() for a call whose conf has a cache: answers @call from the store, or makes
 * it wait for a flight of @source (joined or started) as a task of @group.
 */
void gd_cached_call_start(gd_flights_t *flights, gd_call_t *call, const gd_source_t *source,
                          gd_group_t *group);
/** For gd_call_report(): a flight's own call has ended. */
void gd__flight_done(gd_call_t *call);

#endif
