/*
 * gd_h1idle: closes the HTTP/1 connections that are truly idle, for the drain. h2o 2.2.5 keeps
 * every HTTP/1 connection that waits for a request on its context's request-timeout list, and
 * running that list early closes all of them: also the ones accepted a moment ago, whose request
 * is still on its way, and the keep-alive ones whose next request is already in the socket but
 * not yet read (libuv reads it on the loop's next turn), which is how a drain used to reset
 * requests. This closes only a connection that has waited for at least a grace period and has
 * no byte of a request, neither in h2o's buffer nor readable in the kernel.
 */
#ifndef GD_H1IDLE_H
#define GD_H1IDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

/**
 * Closes the HTTP/1 connections of @ctx that have waited for a request since @idle_before_ms
 * (h2o's loop clock, h2o_now()) or earlier with no byte of one received. Others, and requests
 * being read or answered, are left alone. Never call it from an h2o callback. Returns how many
 * HTTP/1 connections are still waiting for a request.
 */
size_t gd_h1idle_close(h2o_context_t *ctx, uint64_t idle_before_ms);

/**
 * Whether @sock, an HTTP/1 connection's socket on @ctx (@http1_callbacks: the callbacks h2o
 * gives every HTTP/1 connection, taken from a request's req->conn->callbacks), waits for its
 * next request with no byte of one in h2o's buffer: between two keep-alive requests, or just
 * accepted. False for anything else, an HTTP/2 connection's socket included.
 */
bool gd_h1idle_is_waiting(h2o_context_t *ctx, h2o_socket_t *sock,
                          const h2o_conn_callbacks_t *http1_callbacks);

#endif
