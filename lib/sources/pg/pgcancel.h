/*
 * gd_pgcancel: sends Postgres cancel requests from a thread of its own, one per event loop.
 *
 * Why a thread of its own: PQcancel() opens a new connection to the server, sends the request
 * and waits for the server to close it, blocking all the while, with no bound of its own
 * against a host that takes the connection and never answers (only the TCP settings it copies
 * from the connection). On libuv's shared thread pool a few such cancels would hold every
 * thread, and uv_getaddrinfo() (how the pool re-resolves a moved server) waits behind them. Here
 * a hung cancel holds only this thread; at most GD_PGCANCEL_QUEUE_MAX requests wait behind it,
 * and a caller that finds the line full does without the cancel (pgpool re-makes the
 * connection instead). Closing never blocks the loop: a cancel still being sent is waited for
 * a bounded time, on the loop, and then left to finish on its own.
 */
#ifndef GD_PGCANCEL_H
#define GD_PGCANCEL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

/* Requests that may wait for the thread while it sends another. */
#define GD_PGCANCEL_QUEUE_MAX 4

typedef struct gd_pgcancel gd_pgcancel_t;
typedef struct gd_pgcancel_req gd_pgcancel_req_t;

/* Called on the loop once the request was sent: @is_ok when the server took it, else @error
 * says why not (libpq's words). */
typedef void (*gd_pgcancel_cb)(void *data, bool is_ok, const char *error);

/** A canceller on @loop; its thread starts with the first request. Never fails. */
gd_pgcancel_t *gd_pgcancel_new(uv_loop_t *loop);
/**
 * Queues a cancel request for @cancel, which it takes (freed once sent or dropped, on every
 * path). Returns the request, valid until its callback or gd_pgcancel_withdraw(), or NULL when
 * GD_PGCANCEL_QUEUE_MAX requests already wait or the thread cannot be started: nothing is sent
 * then and @cb is never called.
 */
gd_pgcancel_req_t *gd_pgcancel_send(gd_pgcancel_t *k, PGcancel *cancel, gd_pgcancel_cb cb,
                                    void *data);
/**
 * Withdraws @req: its callback is never called. Returns true when it had not started (nothing
 * is sent), false when it is being sent (it ends on its own).
 */
bool gd_pgcancel_withdraw(gd_pgcancel_t *k, gd_pgcancel_req_t *req);
/**
 * Drops the requests still waiting (no callbacks) and stops the thread once the one being sent
 * is done, waiting for that at most @timeout_ms, on the loop, never blocking it; past that the
 * thread is left to finish its request on its own and exit. Every request must have been
 * withdrawn. The loop must then run until uv_run() returns before gd_pgcancel_free().
 */
void gd_pgcancel_close(gd_pgcancel_t *k, uint64_t timeout_ms);
/** Frees @k (NULL is a no-op) after gd_pgcancel_close() and the loop's run. Returns NULL. */
gd_pgcancel_t *gd_pgcancel_free(gd_pgcancel_t *k);
/** Whether @k, closed, has finished closing: gd_pgcancel_free() may follow. */
bool gd_pgcancel_is_settled(const gd_pgcancel_t *k);

#endif
