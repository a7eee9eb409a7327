/*
 * gd_upstream: outbound HTTP/1.1 to one upstream service from one event-loop thread: keep-alive
 * connections kept live on the loop (h2o_socket_t, an idle LIFO), a connection cap with a FIFO
 * of waiting calls, per-call deadlines with cancellation, body size limit and JSON validation.
 * A call is an asynchronous task of a gd_group_t: it reports with gd_task_done().
 *
 * Why not h2o's http1client + socketpool: the pool detaches a returned socket from the loop and
 * re-attaches it on reuse (dup, close, ioctl, two epoll_ctl) and peeks it first (recv
 * MSG_PEEK): six system calls per call that a live idle connection does not need, 18 of the ~30
 * a profile request made.
 */
#ifndef GD_UPSTREAM_H
#define GD_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "base/budget.h"
#include "base/coro.h"
#include "base/gate.h"
#include "config/config.h"
#include "sources/call.h"
#include "sources/http/http1.h"
#include "sources/http/limits.h"
#include "sources/http/tls.h"

typedef struct gd_upstream gd_upstream_t;

/* Counters of one upstream on one thread. */
typedef struct gd_upstream_stats {
    size_t idle;    /* keep-alive connections waiting in the pool */
    size_t busy;    /* connections carrying a call (connecting included) */
    size_t waiting; /* calls waiting for a connection */
    uint64_t lookups, lookup_failures; /* of a named host, since the start */
} gd_upstream_stats_t;

/**
 * Creates the client of upstream @conf (borrowed, must outlive it) on @loop, timing with
 * @timers, and carrying at most @max_connections calls (and so connections) at once. A host
 * name is looked up at once and then every conf->dns_refresh_ms, on libuv's thread pool; new
 * connections go to the addresses last resolved. With @budget (borrowed, or NULL), every
 * connection also holds one of its units, which the threads share: idle connections are given
 * up when another thread waits for a unit. With @tls (borrowed, or NULL for http://), every
 * connection makes a TLS handshake with that context before its first request. Never fails.
 */
gd_upstream_t *gd_upstream_new(const gd_upstream_conf_t *conf, uv_loop_t *loop, gd_timers_t *timers,
                               size_t max_connections, gd_budget_t *budget, gd_tls_ctx_t *tls);
/**
 * Takes the tokens of a cluster-scoped rate_limit from @redis (borrowed, the worker's, outlives
 * @upstream; NULL: none). Call right after gd_upstream_new().
 */
void gd_upstream_use_redis(gd_upstream_t *upstream, struct gd_redis *redis);
/**
 * Closes @upstream's idle connections and libuv handles; no call may be running. The loop must
 * then run until the handles are closed and a lookup under way has ended (uv_run() returns)
 * before gd_upstream_free().
 */
void gd_upstream_close(gd_upstream_t *upstream);
/** Frees @upstream (NULL is a no-op) after gd_upstream_close() and the loop's run. Returns NULL. */
gd_upstream_t *gd_upstream_free(gd_upstream_t *upstream);
/**
 * Whether @upstream, closed, has finished closing (a DNS lookup on libuv's pool cannot be
 * stopped and is waited for), so that gd_upstream_free() may follow without running the loop
 * to its end (a config reload).
 */
bool gd_upstream_is_settled(const gd_upstream_t *upstream);
/**
 * Points @upstream at @conf (borrowed for its lifetime from now on): the same upstream of a
 * reloaded config, of equal settings (config/carry.h), whose pool and connections are kept.
 */
void gd_upstream_set_conf(gd_upstream_t *upstream, const gd_upstream_conf_t *conf);
/** The upstream's counters. Only the owning thread may call it. */
gd_upstream_stats_t gd_upstream_stats(gd_upstream_t *upstream);

typedef struct gd_upstream_call gd_upstream_call_t;

/*
 * One exchange of a call with the upstream: its place in the line for a connection, the
 * connection, the answer's parser state and the timer (connect timeout, then the call's
 * deadline). A call runs at most two attempts at once: one (its first, a retry, the resend
 * after a keep-alive connection that the upstream had closed) and, when hedged, a second on
 * another connection. Private to the upstream.
 */
typedef struct gd_upstream_attempt {
    gd_upstream_call_t *call;
    struct gd_upstream_conn *conn; /* while it holds one */
    unsigned number;               /* 1 for the first */
    uint64_t started_ms;           /* when it began: attempt_timeout_ms counts from it */
    bool is_stale_retry; /* it resends the request of a stale keep-alive connection (free) */
    bool is_hedge;       /* started by retry.hedge_after_ms beside a running attempt */
    int state;
    gd_timer_t timer; /* connect timeout, then the attempt's or call's deadline; a backoff */
    gd_gate_waiter_t waiter;  /* its place in the line for a connection slot */
    bool has_head;
    gd_http1_head_t response;
    gd_http1_chunked_t chunked;
    size_t decoded_len; /* chunked: body bytes already decoded at the front of the input */
    struct gd_gunzip *gunzip; /* a gzip-coded body's decoder, owned; NULL otherwise */
    size_t gunzip_fed;        /* body bytes at the front of the input fed to it so far */
    h2o_iovec_t unsent; /* the part of the request head that send() did not take */
} gd_upstream_attempt_t;

struct gd_upstream_call {
    gd_call_t base; /* first: the call as the gatherer sees it */
    /* public: set by prepare, borrowed from the request arena until the task is done */
    const char *method;
    h2o_iovec_t path;          /* request target, base path included */
    h2o_iovec_t extra_headers; /* "name: value\r\n" lines, or empty */
    size_t per_request_len;    /* its first bytes, what differs per request: id, trace context */
    h2o_iovec_t body;          /* sent after the head with its content-length, or {NULL, 0} */
    bool has_body;             /* a content-length is sent (0 for an empty body) */
    bool is_idempotent;        /* may be sent again: retries, a stale keep-alive connection */
    const gd_retry_conf_t *retry; /* borrowed from the config */
    /* private */
    gd_upstream_t *_upstream;
    char *_head; /* the request head, owned: every attempt sends it as it is */
    size_t _head_len;
    gd_upstream_attempt_t _attempt; /* the current attempt */
    /* Hedging: the second attempt that may run beside _attempt (a hedge, or a retry after
     * one), the timer that starts it, and the exchanges started so far (the attempts cap). */
    gd_upstream_attempt_t _hedge;
    gd_timer_t _hedge_timer;
    unsigned _started;
    int _breaker_verdict; /* gd_breaker_verdict_t of the upstream's breaker, if it has one */
    gd_limits_pass_t _limits; /* its place under max_in_flight, its attempt's token */
    gd_upstream_attempt_t *_asking; /* the attempt whose cluster token Redis is asked for */
};

/* The calls of an upstream (gd_call_ops_t.start takes the gd_upstream_t as its source). */
extern const gd_call_ops_t gd_upstream_call_ops;

#endif
