/*
 * gd_outbox: answers handed to h2o whose bytes the client has not taken yet. h2o 2.2.5 keeps an
 * answer (the body in the request's pool) until its last byte is written, and has no timeout for
 * a client that stops reading: an HTTP/1 client with a full receive window, an HTTP/2 client
 * that never opens its flow-control window, pin the answer for as long as they keep the
 * connection (issue 15). The outbox bounds that:
 *
 * - the write timeout: an answer that makes no progress for write_timeout_ms (no byte of it
 *   taken: a large answer goes out in pieces and each piece taken restarts the clock) closes its
 *   connection, logged once and counted;
 * - the unsent bytes, per connection (HTTP/2 streams share one) and for the whole process (an
 *   atomic count all threads share): an answer that would take either past its bound is refused
 *   with 503 before it is handed to h2o (gd_outbox_check()), unless nothing is held there yet, so
 *   that one answer, however large, is always served.
 *
 * Every answer of gd_respond() is tracked (gd_outbox_track()); the tracking record lives in the
 * request's pool and is dropped by its dispose callback, which only does bookkeeping: nothing
 * re-enters h2o from there. Closing a connection is a shutdown(2) of its socket: h2o sees the
 * failed write or the end of stream on its own next turn and closes it the usual way.
 */
#ifndef GD_OUTBOX_H
#define GD_OUTBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "base/timer.h"
#include "config/config.h"
#include "ops/metrics.h"

typedef struct gd_outbox gd_outbox_t;

/* What gd_outbox_check() refuses, by the bound that would be passed. */
enum {
    GD_OUTBOX_CONNECTION_FULL = 1, /* max_unsent_bytes_per_connection */
    GD_OUTBOX_PROCESS_FULL = 2,    /* max_unsent_bytes */
};

/* The bounds; borrowed from the config. */
typedef struct gd_outbox_limits {
    uint64_t write_timeout_ms;
    size_t max_bytes_per_connection;
    size_t max_bytes; /* for the process: *process_bytes is shared by every thread's outbox */
} gd_outbox_limits_t;

/**
 * Creates a thread's outbox. @timers, @metrics (may be NULL: nothing counted) and
 * @process_bytes (the process-wide count of unsent bytes; borrowed, shared with the other
 * threads) must outlive it.
 */
gd_outbox_t *gd_outbox_new(const gd_outbox_limits_t *limits, gd_timers_t *timers,
                           gd_metrics_t *metrics, atomic_size_t *process_bytes);
/** Frees @ob (NULL is a no-op); it must track no answer (every request disposed of). Returns NULL.
 */
gd_outbox_t *gd_outbox_free(gd_outbox_t *ob);

/**
 * Whether an answer of @len bytes to @req fits its connection's and the process's bounds: 0, or
 * GD_OUTBOX_CONNECTION_FULL / GD_OUTBOX_PROCESS_FULL (counted; the caller answers 503). With
 * @len 0, at a request's arrival: whether any room is left at all.
 */
int gd_outbox_check(gd_outbox_t *ob, h2o_req_t *req, size_t len);

/* What gd_outbox_track() needs of an answer. */
typedef struct gd_outbox_answer {
    size_t held;        /* bytes it keeps in req's pool until the request is disposed of */
    h2o_iovec_t body;   /* what is sent (borrowed: in req's pool); empty for HEAD, 304 */
    const char *client; /* for the log line (copied); NULL: the peer's address */
    const gd_endpoint_conf_t *endpoint; /* for the log line; NULL: none matched */
} gd_outbox_answer_t;

/**
 * Starts the answer of @req, whose head is ready (status, headers, content_length), and sends
 * @a->body through h2o, in pieces when it is large, under the write timeout; its bytes count
 * against the bounds until h2o disposes of the request. @ob may be NULL: the answer is sent in
 * one piece, untracked.
 */
void gd_outbox_send(gd_outbox_t *ob, h2o_req_t *req, const gd_outbox_answer_t *a);

/** The bytes held by this thread's answers (for its gauges). */
size_t gd_outbox_bytes(const gd_outbox_t *ob);
/** The most bytes held at once since the last call (or the start); starts a new period. */
size_t gd_outbox_take_peak(gd_outbox_t *ob);

#endif
