/*
 * gd_metrics: counters and histograms for Prometheus (text exposition format 0.0.4). Each
 * event-loop thread owns one gd_metrics_t and is its only writer, with relaxed atomic stores
 * (plain moves on x86_64, no lock prefix, no shared cache line); a scrape reads every thread's
 * copy with relaxed loads and adds them up. Gauges that describe a thread's state (requests in
 * flight, pools) are published by the thread itself a few times a second, so a scrape never
 * touches a structure another thread is changing.
 */
#ifndef GD_METRICS_H
#define GD_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef struct gd_metrics gd_metrics_t;

/* A thread's state, published by gd_metrics_publish(). */
typedef struct gd_metrics_gauges {
    uint64_t requests_in_flight;
    uint64_t requests_queued; /* waiting for a slot (max_requests_in_flight) */
    uint64_t coroutines;
    uint64_t connections; /* client connections */
    uint64_t max_connections; /* the thread's share of max_client_connections */
    uint64_t unread_connections; /* HTTP/1 clients not read now (the read bound) */
    uint64_t loop_lag_us; /* the lateness of the last heartbeat timer */
    uint64_t heartbeat_ms; /* uv_now() of the last heartbeat: proves the loop turns */
    uint64_t is_pg_ready; /* 1: at least one Postgres connection up (or no Postgres) */
    uint64_t has_pg_been_ready; /* 1: is_pg_ready was 1 once since the start */
    uint64_t pg_idle, pg_busy, pg_connecting, pg_broken, pg_waiting, pg_reconnects, pg_cancels;
    uint64_t pg_cancels_dropped;
    uint64_t pg_batches, pg_batched_queries, pg_resent_queries; /* counters, see gd_pgpool_stats_t */
    uint64_t unsent_bytes; /* answer bytes handed to h2o, not yet taken by their clients */
} gd_metrics_gauges_t;

/* One upstream's connections on a thread, published by gd_metrics_publish_upstream(). */
typedef struct gd_metrics_upstream_gauges {
    uint64_t idle, busy, waiting;
    uint64_t lookups, lookup_failures; /* counters: DNS lookups of a named host */
} gd_metrics_upstream_gauges_t;

/* The most names of each kind (endpoints, calls, upstreams) the metrics keep over the life of
 * the process (config/metrics_keys.h); a reload that would need more is refused. */
#define GD_METRICS_MAX_SLOTS (16u * 65536u)

/* Call outcomes are counted by number: 0 is success, the others are failure kinds. */
#define GD_METRICS_MAX_OUTCOMES 24

/**
 * Creates the counters of one thread, with room for @config's series (gd_metrics_prepare();
 * @config is not kept), and @outcome_names[k] the label of outcome k (@noutcomes of them, at
 * most GD_METRICS_MAX_OUTCOMES; borrowed: must outlive the counters).
 */
gd_metrics_t *gd_metrics_new(const gd_config_t *config, const char *const *outcome_names,
                             size_t noutcomes);
/** Frees @m (NULL is a no-op). Returns NULL. */
gd_metrics_t *gd_metrics_free(gd_metrics_t *m);
/**
 * Makes room in @m for the series of @config (its metrics_slot values), so that counting them
 * never allocates; the owning thread calls it before it serves @config (a reload). Series are
 * kept by slot: those of names @config shares with earlier configs go on counting.
 */
void gd_metrics_prepare(gd_metrics_t *m, const gd_config_t *config);

/**
 * Counts an answered request: @endpoint (NULL when no endpoint matched), its @status and
 * duration. Only the owning thread calls it.
 */
void gd_metrics_count_request(gd_metrics_t *m, const gd_endpoint_conf_t *endpoint, int status,
                              uint64_t duration_us);
/** Counts a request of @endpoint refused by its client_rate_limit. Only the owning thread. */
void gd_metrics_count_rate_limited(gd_metrics_t *m, const gd_endpoint_conf_t *endpoint);
/**
 * Counts the outcome and duration of call @call_index of @endpoint. @status (100..599, else 0)
 * is the upstream status a failure is counted under too (the label status="429" of its kind);
 * the caller gives one only for the one kind that carries it (status), which bounds the labels.
 * Owning thread only.
 */
void gd_metrics_count_call(gd_metrics_t *m, const gd_endpoint_conf_t *endpoint, size_t call_index,
                           unsigned outcome, int status, uint64_t duration_us);
/* How a call with "cache" got its result (the order of gd_call_cache_use_t, less one). */
typedef enum gd_metrics_cache_use {
    GD_METRICS_CACHE_HIT = 0,
    GD_METRICS_CACHE_MISS,
    GD_METRICS_CACHE_COALESCED,
} gd_metrics_cache_use_t;

/** Counts how call @call_index of @endpoint, which has a cache, got its result. Owner only. */
void gd_metrics_count_cache_use(gd_metrics_t *m, const gd_endpoint_conf_t *endpoint,
                                size_t call_index, gd_metrics_cache_use_t use);
/**
 * Counts an HTTP/2 stream that its client reset before its answer, or (@is_goaway) a connection
 * closed for resetting more than http2_reset_budget allows. Owning thread only.
 */
void gd_metrics_count_http2_reset(gd_metrics_t *m, bool is_goaway);
/** Counts a listener's back-off after accept() ran out of descriptors. Owning thread only. */
void gd_metrics_count_accept_backoff(gd_metrics_t *m);
/** Counts a connection closed by the write timeout. Owning thread only. */
void gd_metrics_count_write_timeout(gd_metrics_t *m);
/**
 * Counts an answer refused with 503 because it would pass max_unsent_bytes (@is_process) or
 * max_unsent_bytes_per_connection. Owning thread only.
 */
void gd_metrics_count_unsent_refusal(gd_metrics_t *m, bool is_process);
/** Counts an event-loop turn busier than slow_loop_ms. Owning thread only. */
void gd_metrics_count_slow_loop_turn(gd_metrics_t *m);
/** Records an event-loop lag sample (how late a timer fired). Owning thread only. */
void gd_metrics_count_loop_lag(gd_metrics_t *m, uint64_t lag_us);
/** Publishes the owning thread's gauges. Owning thread only. */
void gd_metrics_publish(gd_metrics_t *m, const gd_metrics_gauges_t *gauges);
/** Reads the gauges last published (any thread). */
void gd_metrics_read_gauges(const gd_metrics_t *m, gd_metrics_gauges_t *ret);
/** Publishes the gauges of the upstream whose metrics_slot is @slot. Owning thread only. */
void gd_metrics_publish_upstream(gd_metrics_t *m, size_t slot,
                                 const gd_metrics_upstream_gauges_t *g);

/* Config reloads, counted by the thread that loads configs (atomics, read by scrapes). */
typedef struct gd_metrics_reloads {
    _Atomic uint64_t ok;           /* taken: new requests use the new config */
    _Atomic uint64_t error;        /* the file was unreadable or invalid */
    _Atomic uint64_t refused;      /* valid, but a restart-only setting changed, or too many
                                    * earlier configs were still finishing */
    _Atomic uint64_t loaded_at_ms; /* wall clock (ms since the epoch) the running config loaded */
    _Atomic uint64_t is_last_ok;   /* 1: the last reload (or the start) was taken */
} gd_metrics_reloads_t;

/**
 * Renders the sum of @n threads' metrics as Prometheus text (any thread), with the reload
 * counters @reloads (NULL: none) and the hash of @config. The result is a new heap string
 * (caller free()s); *@ret_len its length.
 */
char *gd_metrics_render(const gd_metrics_t *const *threads, size_t n, const gd_config_t *config,
                        const gd_metrics_reloads_t *reloads, size_t *ret_len);

#endif
