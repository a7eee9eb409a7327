/*
 * gd_redis_stats: what the Redis connections of the whole process did, for the metrics and
 * /readyz: atomic counters any worker thread adds to, and a latency histogram with bounds
 * fine enough for a loopback round trip (tenths of a millisecond). Kept apart from the client
 * (sources/redis/redis.h) so that the config, which owns it, and ops, which render it, need
 * nothing of hiredis.
 */
#ifndef GD_REDIS_STATS_H
#define GD_REDIS_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define GD_REDIS_NBUCKETS 11

/* How a command ended, as gatherd_redis_commands_total{result} labels it. */
typedef enum gd_redis_result {
    GD_REDIS_OK = 0,  /* an answer (an error reply of the script is an answer too) */
    GD_REDIS_ERROR,   /* an error reply, or the connection lost before the answer */
    GD_REDIS_TIMEOUT, /* no answer within timeout_ms (or the caller's deadline) */
    GD_REDIS_DOWN,    /* not sent: no connection ready, or too many commands pending */
    GD_REDIS_RESULT_COUNT
} gd_redis_result_t;

typedef struct gd_redis_stats {
    /* read-only but for the functions below */
    _Atomic uint64_t ready;    /* connections ready now, all threads */
    _Atomic uint64_t expected; /* connections configured, all threads */
    _Atomic uint64_t results[GD_REDIS_RESULT_COUNT];
    _Atomic uint64_t fallbacks; /* cluster limits decided locally (Redis down or slow) */
    _Atomic uint64_t reconnects;
    _Atomic bool is_outage_logged; /* the warning of the outage under way was logged */
    /* the shared cache ("cache": {"shared": true}): lookups that found an entry, found none,
     * were skipped (no connection ready, or no answer in time); entries stored, results too
     * large for cache_max_entry_bytes */
    _Atomic uint64_t cache_hits, cache_misses, cache_skipped, cache_stored, cache_too_large;
    _Atomic uint64_t buckets[GD_REDIS_NBUCKETS + 1]; /* not cumulative; the last is +Inf */
    _Atomic uint64_t count, sum_us;
} gd_redis_stats_t;

/** Upper bounds of the latency buckets, in microseconds. */
extern const uint64_t gd_redis_bounds_us[GD_REDIS_NBUCKETS];
/** The results' names ("ok", "error", "timeout", "down"). */
extern const char *const gd_redis_result_names[GD_REDIS_RESULT_COUNT];

/** Prepares @s (caller owns the storage): nothing counted. */
void gd_redis_stats_init(gd_redis_stats_t *s);
/** Counts a command that ended with @result; with GD_REDIS_OK, its round trip of @us. */
void gd_redis_stats_count(gd_redis_stats_t *s, gd_redis_result_t result, uint64_t us);

#endif
