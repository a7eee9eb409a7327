/*
 * gd_h2reset: contains HTTP/2 Rapid Reset (CVE-2023-44487), which libh2o 2.2.5 does not. A
 * client that opens a stream and resets it at once costs gatherd a request, its calls and, for
 * an HTTP/1.1 upstream, a connection opened and closed (the only way to abandon a request sent
 * on it); one connection doing that without pause made gatherd open 26,152 upstream connections
 * in 10 s (issue 15).
 *
 * Each HTTP/2 connection has a budget of resets (config "http2_reset_budget"): a stream that the
 * client resets while gatherd is still gathering or queueing its request spends one; a gathered
 * request that is answered, and each second that passes, gives one back, up to the budget (the
 * rule of h2o's own later fix, with time added so that a client whose every stream is cancelled,
 * slowly, is not cut off). A reset with the budget spent ends the connection: GOAWAY with
 * ENHANCE_YOUR_CALM (RFC 9113 section 5.4.1), no new stream started, and the connection closed
 * with the streams still open on it. Counted in gatherd_http2_resets_total and
 * gatherd_http2_reset_goaways_total; logged once per connection (at most a line a second).
 *
 * The count lives in a small object made at a connection's first reset and freed when h2o closes
 * the connection's socket (the socket's on_close hook, which libh2o uses for pooled client
 * sockets only); connections that never reset a stream cost nothing.
 */
#ifndef GD_H2RESET_H
#define GD_H2RESET_H

#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>

#include "ops/metrics.h"

/**
 * Notes how gathered request @req ended, from h2o's dispose of it: @is_answered when gatherd had
 * answered it, else the client left before its answer. Only HTTP/2 requests count, and only a
 * reset of their stream (a connection that closes disposes of its requests too, and is gone
 * anyway). @budget is the config's http2_reset_budget (0: no limit; resets are still counted),
 * @client the client's address for the log (borrowed for the call), @now_ms the loop's clock,
 * @metrics the thread's. When the budget is spent, sends GOAWAY and
 * closes the connection: it writes only into the connection's output buffer and its state, as
 * h2o does itself while it reads frames, and half-closes the socket, whose end of input h2o then
 * reads on a later loop iteration and closes the connection from its own read callback. So it is
 * safe from inside h2o's dispose callbacks: it answers, frees or disposes of nothing of h2o's.
 */
void gd_h2reset_note(h2o_req_t *req, bool is_answered, unsigned budget, const char *client,
                     uint64_t now_ms, gd_metrics_t *metrics);

#endif
