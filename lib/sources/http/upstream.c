#include "sources/http/upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/breaker.h"
#include "base/retry_budget.h"
#include "base/sockbuf.h"
#include "base/util.h"
#include "ops/log.h"
#include "sources/http/gunzip.h"
#include "sources/http/upstream_impl.h"
#include "json/json.h"

/* Addresses kept of a name: more would only be tried one after another within one connect
 * timeout anyway. */
#define MAX_ADDRS 16
/* Lookups asked for at once (a connect failure, a name not resolved yet) wait this long after
 * the previous one, so that an upstream that is down does not turn every call into a lookup. */
#define MIN_LOOKUP_INTERVAL_MS 1000
/* A cancelled call whose answer is nearly complete keeps its connection: its head has come and
 * at most this many body bytes are missing (a chunked body: at most this many more are read),
 * and they come within DRAIN_TIMEOUT_MS; the connection then goes back to the pool instead of
 * being closed and opened again by the next call. Meanwhile it keeps its slot (max_connections).
 * Otherwise it is closed, as it must be when the answer is far from done (HTTP/1.1 has no other
 * way to abandon a request). */
#define DRAIN_MAX_BYTES  65536
#define DRAIN_TIMEOUT_MS 500

enum attempt_state {
    ATTEMPT_WAITING = 1, /* in line for a connection */
    ATTEMPT_CONNECTING,  /* holds a connection slot, its connection not yet established */
    ATTEMPT_HANDSHAKING, /* connected, the TLS handshake under way (within the connect timeout) */
    ATTEMPT_EXCHANGING,  /* request sent or being sent, reading the answer */
    ATTEMPT_BACKOFF,     /* waiting to begin the next attempt */
    ATTEMPT_ADMITTING,   /* the call waits for a place under max_in_flight */
    ATTEMPT_PACING,      /* waiting for the slot of its rate-limit token */
    ATTEMPT_DONE,
};

/* A connection to the upstream: carrying an attempt of a call, or idle in the keep-alive list. */
struct gd_upstream_conn {
    gd_upstream_t *upstream;
    h2o_socket_t *sock;             /* NULL until a connect is under way */
    gd_upstream_attempt_t *attempt; /* NULL when idle */
    h2o_linklist_t idle_link;       /* in the upstream's idle list while idle */
    h2o_linklist_t lookup_link; /* in the upstream's list waiting for a name's first addresses */
    gd_timer_t idle_timer;
    size_t addr_index; /* the address being tried, an index into upstream->addrs */
    size_t attempts;   /* addresses tried for this connection */
    bool is_reused;    /* it carried a call before: it may have been closed by the upstream since */
    bool is_tls;       /* its handshake succeeded: reads and writes go through TLS */
    gd_tls_conn_t tls;
    /* Draining the rest of a cancelled call's answer (start_drain()): linked by idle_link in
     * the upstream's draining list, idle_timer its deadline. */
    bool is_drain_chunked;
    uint64_t drain_left; /* body bytes still to come; chunked: more that may be read */
    gd_http1_chunked_t drain_chunked;
};
typedef struct gd_upstream_conn conn_t;

struct gd_upstream {
    const gd_upstream_conf_t *conf;
    gd_tls_ctx_t *tls; /* https://: borrowed, shared with the other threads; else NULL */
    uv_loop_t *loop;
    gd_timers_t *timers;
    /* The addresses new connections go to: a numeric host's one, or a name's as last resolved.
     * A name is looked up in the background every dns_refresh_ms and soon after a connect
     * failure; a failed lookup keeps the addresses it had. */
    struct sockaddr_storage addrs[MAX_ADDRS];
    size_t naddrs;
    size_t preferred; /* the address new connections try first: the last one that worked */
    bool is_named, is_resolving, has_lookup_failed;
    uv_getaddrinfo_t lookup; /* while is_resolving */
    uint64_t last_lookup_ms;
    char lookup_error[96]; /* why the last lookup failed */
    gd_timer_t refresh_timer;
    h2o_linklist_t lookup_waiting; /* connections waiting for a name's first addresses */
    uint64_t lookups, lookup_failures;
    size_t max_connections, busy; /* busy: connections carrying a call, connecting included */
    /* The line for a connection slot: a unit is held by each call that carries a connection
     * (busy) and by each call granted one that has not taken its connection yet. A unit given
     * back is granted at once and reported on the next loop iteration (base/gate.h); a
     * keep-alive connection is handed over with its unit in the same turn. Its limit is
     * max_connections, or under a shared budget the budget's units this thread holds. */
    gd_gate_t line;
    /* A cap smaller than the threads is counted for the whole process: every connection of
     * this thread (idle, busy or connecting) stands for a unit of the shared budget, and so
     * does every unit granted to a call that will open one. */
    bool has_budget;
    gd_budget_member_t budget;
    size_t units;        /* of the budget, held by this thread: the line's limit */
    h2o_linklist_t idle; /* most recently used first */
    size_t nidle;
    h2o_linklist_t draining; /* connections reading a cancelled call's answer to its end */
    char *host_header;
    gd_limits_t limits; /* max_in_flight and rate_limit, shared with the other threads */
    bool is_closed;
};

static void acquire(gd_upstream_attempt_t *a);
static void begin_exchange(gd_upstream_attempt_t *a);
static void on_line_end(gd_gate_waiter_t *waiter, bool is_granted);
static void destroy_conn(conn_t *c);
static void unlink_idle(gd_upstream_t *u, conn_t *c);
static void on_idle_read(h2o_socket_t *sock, const char *err);
static void start_lookup(gd_upstream_t *u);

/* Under a shared budget, matches the units this thread holds to what it needs: more while
 * calls wait here (up to max_connections), fewer when units stand for no connection and no
 * call, or for idle connections that another thread waits for. Never reports to a call:
 * grants are heard on the next loop iteration. */
static void rebalance(gd_upstream_t *u)
{
    if (!u->has_budget || u->is_closed)
        return;
    while (u->line.waiting > 0 && u->units < u->max_connections && gd_budget_take(&u->budget))
        u->units++;
    gd_gate_set_limit(&u->line, u->units); /* first: the units just taken are granted */
    while (u->line.waiting == 0 && u->nidle > 0 && gd_budget_is_wanted_elsewhere(&u->budget)) {
        conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, idle_link, u->idle.prev); /* the oldest */
        unlink_idle(u, c);
        destroy_conn(c);
    }
    /* Needed: a unit per call holding one (busy or about to be) and per idle connection; a
     * call about to take an idle one is counted twice, which only keeps a unit a while. */
    size_t needed = u->line.held + u->nidle;
    while (u->units > needed) {
        u->units--;
        gd_budget_give(&u->budget);
    }
    gd_gate_set_limit(&u->line, u->units);
    gd_budget_want(&u->budget, u->line.waiting > 0);
}

/* Takes a slot for a call when one is free and nobody waits for one. Under a shared budget a
 * unit is taken for it at once when the thread holds none spare, so that only a cap that is
 * really reached costs a wait (and its loop iteration). */
static bool take_slot(gd_upstream_t *u)
{
    if (gd_gate_try_acquire(&u->line))
        return true;
    if (!u->has_budget || u->line.waiting > 0 || u->units >= u->max_connections ||
        !gd_budget_take(&u->budget))
        return false;
    u->units++;
    gd_gate_set_limit(&u->line, u->units);
    return gd_gate_try_acquire(&u->line);
}

/* From another thread, on this loop: a unit came back (calls waiting here may get it), or a
 * thread started to wait for one (idle connections here give theirs back). */
static void on_budget(gd_budget_member_t *member)
{
    rebalance(member->data);
}

static void on_refresh_timer(gd_timer_t *timer)
{
    start_lookup(H2O_STRUCT_FROM_MEMBER(gd_upstream_t, refresh_timer, timer));
}

gd_upstream_t *gd_upstream_new(const gd_upstream_conf_t *conf, uv_loop_t *loop, gd_timers_t *timers,
                               size_t max_connections, gd_budget_t *budget, gd_tls_ctx_t *tls)
{
    gd_upstream_t *u = gd_xcalloc(1, sizeof(*u));
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM},
                    *ai = NULL;
    char port[8], hostport[300];
    bool is_ipv6 = strchr(conf->host, ':') != NULL;

    u->conf = conf;
    u->tls = tls;
    u->loop = loop;
    u->timers = timers;
    u->max_connections = max_connections > 0 ? max_connections : 1;
    gd_gate_init(&u->line, timers, budget != NULL ? 0 : u->max_connections);
    if (budget != NULL) {
        u->budget.data = u;
        GD_REQUIRE(gd_budget_join(budget, &u->budget, loop, on_budget) == 0);
        u->has_budget = true;
    }
    gd_limits_init(&u->limits, conf, loop, timers);
    h2o_linklist_init_anchor(&u->idle);
    h2o_linklist_init_anchor(&u->draining);
    h2o_linklist_init_anchor(&u->lookup_waiting);
    gd_timer_init(&u->refresh_timer, on_refresh_timer);
    snprintf(port, sizeof(port), "%u", (unsigned)conf->port);
    /* AI_NUMERICHOST guarantees that this does not block. */
    if (conf->is_host_numeric && getaddrinfo(conf->host, port, &hints, &ai) == 0) {
        memcpy(&u->addrs[0], ai->ai_addr, ai->ai_addrlen);
        u->naddrs = 1;
        freeaddrinfo(ai);
    }
    u->is_named = !conf->is_host_numeric;
    snprintf(u->lookup_error, sizeof(u->lookup_error), "no address");
    /* Resolved before the first call needs it, so that even that one rarely waits. */
    if (u->is_named)
        start_lookup(u);
    if (conf->host_header != NULL) /* "host": a virtual host behind the URL's address */
        snprintf(hostport, sizeof(hostport), "%s", conf->host_header);
    else if (conf->port == (conf->is_tls ? 443 : 80))
        snprintf(hostport, sizeof(hostport), is_ipv6 ? "[%s]" : "%s", conf->host);
    else
        snprintf(hostport, sizeof(hostport), is_ipv6 ? "[%s]:%u" : "%s:%u", conf->host,
                 (unsigned)conf->port);
    u->host_header = gd_xstrdup(hostport);
    return u;
}

static void unlink_idle(gd_upstream_t *u, conn_t *c)
{
    h2o_linklist_unlink(&c->idle_link);
    u->nidle--;
    gd_timer_stop(u->timers, &c->idle_timer);
}

/* Closes @c and frees it; it carries no call. Its budget unit, if any, stays with the thread
 * until rebalance(). */
static void destroy_conn(conn_t *c)
{
    if (h2o_linklist_is_linked(&c->lookup_link))
        h2o_linklist_unlink(&c->lookup_link);
    gd_tls_conn_detach(&c->tls);
    if (c->sock != NULL)
        h2o_socket_close(c->sock); /* no callback of it runs after this */
    gd_timer_stop(c->upstream->timers, &c->idle_timer);
    free(c);
}

void gd_upstream_use_redis(gd_upstream_t *u, struct gd_redis *redis)
{
    gd_limits_use_redis(&u->limits, redis);
}

static void end_drain(conn_t *c, bool is_reusable);

void gd_upstream_close(gd_upstream_t *u)
{
    while (!h2o_linklist_is_empty(&u->draining))
        end_drain(H2O_STRUCT_FROM_MEMBER(conn_t, idle_link, u->draining.next), false);
    GD_REQUIRE(u->busy == 0 && u->line.waiting == 0);
    if (u->is_closed)
        return;
    u->is_closed = true;
    gd_timer_stop(u->timers, &u->refresh_timer);
    /* A lookup already running on a thread of libuv's pool cannot be stopped: the loop's last
     * run waits for it, and on_lookup() sees is_closed. */
    if (u->is_resolving)
        (void)uv_cancel((uv_req_t *)&u->lookup);
    while (!h2o_linklist_is_empty(&u->idle)) {
        conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, idle_link, u->idle.next);
        unlink_idle(u, c);
        destroy_conn(c);
    }
    gd_gate_dispose(&u->line);
    gd_limits_close(&u->limits);
    if (u->has_budget) {
        for (; u->units > 0; u->units--)
            gd_budget_give(&u->budget);
        gd_budget_leave(&u->budget);
    }
}

bool gd_upstream_is_settled(const gd_upstream_t *u)
{
    return u->is_closed && !u->is_resolving;
}

void gd_upstream_set_conf(gd_upstream_t *u, const gd_upstream_conf_t *conf)
{
    /* The limits and policies the pool holds pointers to are the ones the next config took
     * over (config/carry.h): the same settings give the same objects. */
    GD_REQUIRE(conf->breaker == u->conf->breaker && conf->rate_limit == u->conf->rate_limit &&
               conf->in_flight == u->conf->in_flight &&
               conf->retry_budget == u->conf->retry_budget);
    u->conf = conf;
    gd_limits_set_conf(&u->limits, conf);
}

gd_upstream_t *gd_upstream_free(gd_upstream_t *u)
{
    if (u == NULL)
        return NULL;
    GD_REQUIRE(u->is_closed);
    free(u->host_header);
    free(u);
    return NULL;
}

gd_upstream_stats_t gd_upstream_stats(gd_upstream_t *u)
{
    return (gd_upstream_stats_t){.idle = u->nidle,
                                 .busy = u->busy,
                                 .waiting = u->line.waiting,
                                 .lookups = u->lookups,
                                 .lookup_failures = u->lookup_failures};
}

static void on_idle_timeout(gd_timer_t *timer)
{
    conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, idle_timer, timer);
    gd_upstream_t *u = c->upstream;

    unlink_idle(u, c);
    destroy_conn(c);
    rebalance(u);
}

static void send_request(gd_upstream_attempt_t *a);

/* Gives back connection @c, which carries no attempt any more, and its slot: both handed to the
 * attempt that waited longest when the connection is @is_reusable, else the slot given back (to
 * a waiting call, which opens a connection of its own) and the connection back to the idle list
 * or closed. */
static void recycle_conn(conn_t *c, bool is_reusable)
{
    gd_upstream_t *u = c->upstream;

    /* An upstream may answer before it has read the whole request: a connection with a write
     * still in flight is not reused, or the next call's head would overtake the rest of this
     * one and libuv would send from a freed buffer. Closing it cancels the write. */
    if (!is_reusable || c->sock == NULL || h2o_socket_is_writing(c->sock) || u->is_closed) {
        destroy_conn(c);
        u->busy--;
        gd_gate_release(&u->line);
        rebalance(u);
        return;
    }
    /* What remains of the answer was read in full: the input holds nothing of value, and its
     * buffer goes back while the connection waits for its next answer or idles (at 10,000
     * clients in slow mode, ~6,000 connections each wait 50 ms: 8 KiB each, ~48 MB). */
    h2o_buffer_consume(&c->sock->input, c->sock->input->size);
    (void)gd_sockbuf_release(c->sock); /* false only for an empty prototype: nothing to give */
    c->is_reused = true;
    gd_gate_waiter_t *next = gd_gate_hand_over(&u->line);
    if (next != NULL) {
        /* Straight to the call that waited longest, slot and connection, in this turn: under
         * load a loop iteration is long. */
        gd_upstream_attempt_t *to = H2O_STRUCT_FROM_MEMBER(gd_upstream_attempt_t, waiter, next);
        c->attempt = to;
        to->conn = c;
        rebalance(u);
        send_request(to);
        return;
    }
    u->busy--;
    gd_gate_release(&u->line);
    h2o_linklist_insert(u->idle.next, &c->idle_link);
    u->nidle++;
    /* Still reading: an upstream that closes an idle connection, or sends unasked bytes,
     * retires it at once rather than failing the next call. */
    h2o_socket_read_start(c->sock, on_idle_read);
    gd_timer_start(u->timers, &c->idle_timer,
                   gd_timers_now(u->timers) + u->conf->keepalive_timeout_ms);
    /* Worth more on another thread waiting for a unit than idle here. */
    rebalance(u);
}

/* Takes attempt @a's connection from it, and its slot, and recycles both (recycle_conn()). */
static void release_conn(gd_upstream_attempt_t *a, bool is_reusable)
{
    conn_t *c = a->conn;

    if (c == NULL)
        return;
    a->conn = NULL;
    c->attempt = NULL;
    recycle_conn(c, is_reusable);
}

static void on_idle_read(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    gd_upstream_t *u = c->upstream;

    /* TLS records that carry no application data (TLS 1.3 session tickets, which servers
     * often send after the first answer, key updates) keep the connection; a close_notify,
     * any byte of data, an error or a close retire it. */
    if (c->is_tls && err == NULL && sock->input->size == 0 && !gd_tls_is_closed_by_peer(&c->tls))
        return;

    unlink_idle(u, c);
    destroy_conn(c);
    rebalance(u);
}

static void begin_attempt(gd_upstream_call_t *call, gd_upstream_attempt_t *a, unsigned number);
static bool take_slot(gd_upstream_t *u);
static void wait_for_slot(gd_upstream_attempt_t *a);

/* Whether @set ("retry.on", "breaker.on") names the failure @outcome / @status. */
static bool is_listed_failure(const gd_failure_set_t *set, gd_outcome_t outcome, int status)
{
    switch (outcome) {
    case GD_OUTCOME_CONNECT:
        return set->connect;
    case GD_OUTCOME_IO:
        return set->io;
    case GD_OUTCOME_TIMEOUT:
        return set->timeout;
    case GD_OUTCOME_TLS:
        return set->tls;
    case GD_OUTCOME_STATUS:
        return gd_failure_set_has_status(set, status);
    default:
        return false;
    }
}

/* Decides whether attempt @a, which failed with @outcome and @status and holds nothing any more,
 * is followed by another: when the policy names the failure, attempts are left, the call is
 * idempotent, the wait (a Retry-After on 429/503, else the backoff) ends before the call's
 * deadline and the upstream's retry budget allows it. Then starts the wait and returns true. */
static bool schedule_retry(gd_upstream_attempt_t *a, gd_outcome_t outcome, int status,
                           int64_t retry_after_ms)
{
    gd_upstream_call_t *call = a->call;
    gd_upstream_t *u = call->_upstream;
    const gd_retry_conf_t *rc = call->retry;
    uint64_t now = gd_timers_now(u->timers), wait;

    if (rc == NULL || call->_started >= rc->attempts || !call->is_idempotent ||
        !is_listed_failure(&rc->on, outcome, status) || now >= call->base.deadline_ms)
        return false;
    if ((status == 429 || status == 503) && retry_after_ms >= 0)
        wait = (uint64_t)retry_after_ms;
    else
        wait = gd_retry_backoff_ms(rc->backoff_ms, rc->max_backoff_ms, a->number);
    /* A wait that cannot end before the deadline is not started: the call fails now. */
    if (now + wait >= call->base.deadline_ms)
        return false;
    /* A retry needs a token too: one that cannot come before the deadline ends the call now,
     * with the last attempt's error (the wait would be in vain). */
    uint64_t due, deadline = call->base.deadline_ms;
    if (gd_limits_take_token(&u->limits, &call->_limits, now + wait, deadline, &due) < 0)
        return false;
    gd_retry_budget_t *b = u->conf->retry_budget;
    if (b != NULL && !gd_retry_budget_take(b, now, rc->budget_percent, rc->min_retries_per_s)) {
        atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
        gd_limits_return_token(&call->_limits);
        return false;
    }
    if (b != NULL)
        atomic_fetch_add_explicit(&b->retries, 1, memory_order_relaxed);
    gd_timer_stop(u->timers, &call->_hedge_timer); /* armed again when the retry has a slot */
    begin_attempt(call, a, ++call->_started);
    a->state = ATTEMPT_BACKOFF;
    gd_timer_start(u->timers, &a->timer, due);
    return true;
}

static void pace_attempt(gd_upstream_attempt_t *a);

/* The backoff of attempt @a is over: it takes its place in the line (or a free slot); under a
 * cluster-scoped rate limit it asks for its token first. */
static void on_backoff_end(gd_upstream_attempt_t *a)
{
    gd_upstream_t *u = a->call->_upstream;

    if (u->conf->retry_budget != NULL)
        atomic_fetch_add_explicit(&u->conf->retry_budget->attempts, 1, memory_order_relaxed);
    if (gd_limits_is_cluster(&u->limits)) {
        pace_attempt(a);
        return;
    }
    begin_exchange(a);
}

/* Tells the upstream's breaker how call @call ended: a failure when "breaker.on" names it
 * (connect, io, timeout, tls and 5xx unless set), a success otherwise (the upstream answered);
 * neither when cancelled or refused by a limit (rate_limited, in_flight_timeout). */
static void report_to_breaker(gd_upstream_call_t *call, gd_outcome_t outcome, int status)
{
    gd_upstream_t *u = call->_upstream;
    gd_breaker_t *b = u->conf->breaker;
    gd_breaker_verdict_t v = (gd_breaker_verdict_t)call->_breaker_verdict;

    if (b == NULL || v == GD_BREAKER_REFUSED)
        return;
    /* Refused by a limit of gatherd's own, the upstream never asked: neither way. */
    if (outcome == GD_OUTCOME_CANCELLED || outcome == GD_OUTCOME_RATE_LIMITED ||
        outcome == GD_OUTCOME_IN_FLIGHT_TIMEOUT) {
        gd_breaker_abandon(b, v);
        return;
    }
    gd_breaker_report(b, v, is_listed_failure(&u->conf->breaker_on, outcome, status),
                      gd_timers_now(u->timers));
}

/* Gives up what attempt @a holds: its place in the line, its connection (unless the caller
 * released it already), its timer and decoder. */
static void let_go(gd_upstream_attempt_t *a)
{
    gd_upstream_t *u = a->call->_upstream;

    gd_timer_stop(u->timers, &a->timer);
    a->gunzip = gd_gunzip_free(a->gunzip);
    if (a->state == ATTEMPT_WAITING) {
        gd_gate_cancel(&a->waiter); /* a slot granted, not yet heard of, passes on */
        rebalance(u);
    }
    release_conn(a, false); /* a no-op when the caller released it already */
}

/* ---- Hedging (retry.hedge_after_ms) ------------------------------------------------------
 * When the one running attempt of an idempotent call has had its connection slot for
 * hedge_after_ms without an answer, a second attempt starts on another connection, if a slot
 * is free at once, attempts are left and the retry budget allows it. The first answer (a
 * success, or a status the policy does not retry) ends the call, and the other attempt is
 * abandoned with its connection closed. A failure of one while the other runs only ends that
 * one; the last one running fails or retries as a lone attempt would. */

static bool is_running(const gd_upstream_attempt_t *a)
{
    return a->state != 0 && a->state != ATTEMPT_DONE;
}

static gd_upstream_attempt_t *other_attempt(gd_upstream_attempt_t *a)
{
    return a == &a->call->_attempt ? &a->call->_hedge : &a->call->_attempt;
}

/* Attempt @a was given a slot: the hedge timer starts when it runs alone and may be hedged. */
static void arm_hedge(gd_upstream_attempt_t *a)
{
    gd_upstream_call_t *call = a->call;
    const gd_retry_conf_t *rc = call->retry;
    gd_timers_t *timers = call->_upstream->timers;

    if (rc == NULL || rc->hedge_after_ms == 0 || !call->is_idempotent ||
        call->_started >= rc->attempts || is_running(other_attempt(a)))
        return;
    gd_timer_start(timers, &call->_hedge_timer, gd_timers_now(timers) + rc->hedge_after_ms);
}

static void on_hedge_timer(gd_timer_t *timer)
{
    gd_upstream_call_t *call = H2O_STRUCT_FROM_MEMBER(gd_upstream_call_t, _hedge_timer, timer);
    gd_upstream_t *u = call->_upstream;
    const gd_retry_conf_t *rc = call->retry;
    gd_retry_budget_t *b = u->conf->retry_budget;
    gd_upstream_attempt_t *a = is_running(&call->_attempt) ? &call->_attempt : &call->_hedge;
    gd_upstream_attempt_t *h = other_attempt(a);
    uint64_t now = gd_timers_now(u->timers);

    /* Only beside an attempt that holds a connection slot (connecting or exchanging). */
    bool has_slot = a->state == ATTEMPT_CONNECTING || a->state == ATTEMPT_HANDSHAKING ||
                    a->state == ATTEMPT_EXCHANGING;
    if (!has_slot || is_running(h) || call->_started >= rc->attempts ||
        now >= call->base.deadline_ms)
        return;
    /* A hedge takes only a token free now, and a cluster token is a round trip away: under a
     * cluster-scoped rate limit no hedge is sent (README, "Shared state in Redis"). */
    if (gd_limits_is_cluster(&u->limits))
        return;
    /* Never in line behind other calls: there it would only add to the wait it is meant to
     * cut, and a slow upstream with its connections all busy is not helped by more. */
    if (!take_slot(u))
        return;
    /* A hedge is an attempt like any other under the rate limit, but it never waits for its
     * token: only one free now is taken (the first attempt's was spent when it went). */
    uint64_t at;
    if (gd_limits_take_token(&u->limits, &call->_limits, now, now + 1, &at) < 0) {
        gd_gate_release(&u->line);
        rebalance(u);
        return;
    }
    if (b != NULL && !gd_retry_budget_take(b, now, rc->budget_percent, rc->min_retries_per_s)) {
        atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
        gd_limits_return_token(&call->_limits);
        gd_gate_release(&u->line);
        rebalance(u);
        return;
    }
    gd_limits_spend_token(&call->_limits);
    if (b != NULL) {
        atomic_fetch_add_explicit(&b->hedges, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->attempts, 1, memory_order_relaxed);
    }
    begin_attempt(call, h, ++call->_started);
    h->is_hedge = true;
    acquire(h);
}

/* Whether attempt @a, failed with @outcome / @status, just ends and leaves its call to the other
 * attempt, still running: unless it brought an answer. */
static bool leaves_call_to_other(gd_upstream_attempt_t *a, gd_outcome_t outcome, int status)
{
    if (!is_running(other_attempt(a)) || outcome == GD_OUTCOME_OK)
        return false;
    return outcome != GD_OUTCOME_STATUS || is_listed_failure(&a->call->retry->on, outcome, status);
}

/* Attempt @a ends its call with @outcome: the other one, if running, is abandoned (its
 * connection closed: the upstream sees the disconnect), and a hedge's answer is counted. */
static void end_hedging(gd_upstream_attempt_t *a, gd_outcome_t outcome)
{
    gd_upstream_call_t *call = a->call;
    gd_upstream_t *u = call->_upstream;
    gd_upstream_attempt_t *other = other_attempt(a);
    gd_retry_budget_t *b = u->conf->retry_budget;

    gd_timer_stop(u->timers, &call->_hedge_timer);
    if (is_running(other)) {
        let_go(other);
        other->state = ATTEMPT_DONE;
    }
    if (a->is_hedge && b != NULL && (outcome == GD_OUTCOME_OK || outcome == GD_OUTCOME_STATUS))
        atomic_fetch_add_explicit(&b->hedges_won, 1, memory_order_relaxed);
}

/* Ends attempt @a with @outcome, and with it its call unless a retry follows or the other
 * attempt of a hedged call runs on with the call (leaves_call_to_other()): what the attempt
 * holds (its place in the line, its connection, unless the caller released it already, its
 * timer) goes first. Reporting may switch into the request coroutine, which may free the call,
 * so it comes last. */
static void end_attempt(gd_upstream_attempt_t *a, gd_outcome_t outcome, int status, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

static void end_attempt(gd_upstream_attempt_t *a, gd_outcome_t outcome, int status, const char *fmt,
                        ...)
{
    gd_upstream_call_t *call = a->call;
    int64_t retry_after_ms = a->has_head ? a->response.retry_after_ms : -1;

    /* Refused by a limit (rate_limited, in_flight_timeout): never retried, as circuit_open. */
    bool is_refused_by_limit = a->state == ATTEMPT_ADMITTING || a->state == ATTEMPT_PACING;

    let_go(a);
    if (outcome != GD_OUTCOME_CANCELLED && a->state != ATTEMPT_BACKOFF && !is_refused_by_limit) {
        if (leaves_call_to_other(a, outcome, status)) {
            a->state = ATTEMPT_DONE;
            return;
        }
        if (schedule_retry(a, outcome, status, retry_after_ms))
            return;
    }
    a->state = ATTEMPT_DONE;
    end_hedging(a, outcome);
    gd_limits_leave(&call->_limits); /* the call ends: a token not spent goes back, its place too */
    call->base.result.attempts = call->_started;
    report_to_breaker(call, outcome, status);
    va_list ap;
    va_start(ap, fmt);
    gd_call_vfinish(&call->base, outcome, status, fmt, ap);
    va_end(ap);
}

static void on_timer(gd_timer_t *timer);

/* Makes @a attempt @number (1 for the first) of @call, a fresh one not yet in line for a
 * connection. The one before it in @a, if any, has given its connection back. A stale
 * keep-alive connection's resend keeps the number. */
static void begin_attempt(gd_upstream_call_t *call, gd_upstream_attempt_t *a, unsigned number)
{
    gd_timer_stop(call->_upstream->timers, &a->timer); /* initialized by start_call() */
    a->call = call;
    a->conn = NULL;
    a->waiter = (gd_gate_waiter_t){0};
    a->gunzip = NULL;
    a->number = number;
    a->started_ms = gd_timers_now(call->_upstream->timers);
    a->is_stale_retry = false;
    a->is_hedge = false;
    a->has_head = false;
}

/* When attempt @a must have ended: its attempt_timeout_ms from its start, or the call's
 * deadline if that comes first. */
static uint64_t attempt_due_ms(const gd_upstream_attempt_t *a)
{
    const gd_upstream_call_t *call = a->call;
    uint64_t t = call->retry != NULL ? call->retry->attempt_timeout_ms : 0;

    if (t != 0 && a->started_ms + t < call->base.deadline_ms)
        return a->started_ms + t;
    return call->base.deadline_ms;
}

/* Puts attempt @a at the end of the line for a connection slot, until its deadline. */
static void wait_for_slot(gd_upstream_attempt_t *a)
{
    gd_upstream_call_t *call = a->call;
    gd_upstream_t *u = call->_upstream;

    a->state = ATTEMPT_WAITING;
    gd_limits_note_line_start(&call->_limits, gd_timers_now(u->timers));
    gd_gate_wait(&u->line, &a->waiter, call->base.deadline_ms, on_line_end);
    rebalance(u); /* under a budget: a unit for it, or the other threads told */
}

static void on_line_end(gd_gate_waiter_t *waiter, bool is_granted)
{
    gd_upstream_attempt_t *a = H2O_STRUCT_FROM_MEMBER(gd_upstream_attempt_t, waiter, waiter);
    gd_upstream_call_t *call = a->call;
    gd_upstream_t *u = call->_upstream;

    if (is_granted) {
        gd_limits_note_line_end(&u->limits, &call->_limits, gd_timers_now(u->timers));
        acquire(a);
        return;
    }
    end_attempt(a, GD_OUTCOME_TIMEOUT, 0,
                "timed out after %" PRIu64 " ms waiting for a connection (max_connections %zu)",
                call->base.timeout_ms, u->max_connections);
}

/* A reused connection that the upstream closed just as the call took it fails before any byte
 * of an answer: an idempotent call is sent once more, on another connection. Returns whether
 * it was. */
static bool retry_on_stale_connection(gd_upstream_attempt_t *a)
{
    gd_upstream_call_t *call = a->call;
    conn_t *c = a->conn;

    if (a->is_stale_retry || !c->is_reused || a->has_head || c->sock->input->size != 0 ||
        !call->is_idempotent ||
        gd_timers_now(call->_upstream->timers) >= call->base.deadline_ms)
        return false;
    /* The second attempt keeps the slot (and its budget unit): it closes the stale connection
     * and takes another idle one, or opens a new one. */
    a->conn = NULL;
    c->attempt = NULL;
    destroy_conn(c);
    call->_upstream->busy--;
    uint64_t started_ms = a->started_ms;
    bool is_hedge = a->is_hedge;
    begin_attempt(call, a, a->number);
    a->started_ms = started_ms;
    a->is_hedge = is_hedge;
    a->is_stale_retry = true;
    acquire(a);
    return true;
}

/* Feeds the gzip decoder the body bytes that came since the last time (the first @body_len
 * bytes of the input are the body so far). Returns false after ending the attempt. */
static bool feed_gunzip(gd_upstream_attempt_t *a, size_t body_len)
{
    const char *bytes = a->conn->sock->input->bytes;
    int r = gd_gunzip_feed(a->gunzip, bytes + a->gunzip_fed, body_len - a->gunzip_fed);

    a->gunzip_fed = body_len;
    if (r == -E2BIG) {
        end_attempt(a, GD_OUTCOME_TOO_LARGE, a->response.status,
                    "gzip body decodes to more than max_body_bytes (%zu)",
                    a->call->_upstream->conf->max_body_bytes);
        return false;
    }
    if (r < 0) {
        end_attempt(a, GD_OUTCOME_IO, a->response.status, "malformed gzip body");
        return false;
    }
    return true;
}

/* The answer is complete: its body (decoded) is the first @body_len bytes of the input. */
static void complete(gd_upstream_attempt_t *a, size_t body_len, bool is_reusable)
{
    gd_upstream_call_t *call = a->call;
    h2o_buffer_t *in = a->conn->sock->input;
    int status = a->response.status;

    if (status < 200 || status > 299) {
        release_conn(a, is_reusable);
        end_attempt(a, GD_OUTCOME_STATUS, status, "upstream answered %d", status);
        return;
    }
    if (a->response.framing == GD_HTTP1_NO_BODY) {
        release_conn(a, is_reusable);
        if (strcmp(call->method, "HEAD") == 0 || status == 204) {
            call->base.result.body = &gd_buf_null; /* no document at all */
            end_attempt(a, GD_OUTCOME_OK, status, NULL);
        } else {
            end_attempt(a, GD_OUTCOME_INVALID_JSON, status, "empty body with status %d", status);
        }
        return;
    }
    gd_buf_t *body = NULL;
    if (a->gunzip != NULL) {
        if (!feed_gunzip(a, body_len))
            return;
        if ((body = gd_gunzip_finish(a->gunzip)) == NULL) {
            end_attempt(a, GD_OUTCOME_IO, status, "gzip body cut short");
            return;
        }
    }
    /* Checked without building a tree: the bytes go into the answer as they are. */
    const char *bytes = body != NULL ? body->bytes : in->bytes;
    size_t len = body != NULL ? body->len : body_len;
    if (!gd_json_is_valid(bytes, len)) {
        gd_buf_unref(body);
        release_conn(a, is_reusable);
        end_attempt(a, GD_OUTCOME_INVALID_JSON, status,
                    "the body (%zu bytes%s) is not one valid JSON text", len,
                    a->gunzip != NULL ? ", gzip-decoded" : "");
        return;
    }
    call->base.result.body = body != NULL ? body : gd_buf_new_copy(in->bytes, body_len);
    call->base.result.max_age_ms = a->response.max_age_ms;
    release_conn(a, is_reusable);
    end_attempt(a, GD_OUTCOME_OK, status, NULL);
}

/* What a TLS connection's read reports once the server's close_notify has arrived: the only
 * orderly end of a TLS connection (a FIN without it may be a truncation attack, RFC 8446
 * section 6.1; h2o reports both a FIN and a reset as h2o_socket_error_io on a TLS socket). */
static const char close_notify_received[] = "close_notify received";

/* Whether @sock's peer closed its side in order (a FIN: the socket is in CLOSE_WAIT) rather
 * than with a reset (CLOSED). h2o's libuv binding reports every read error, ECONNRESET
 * included, as h2o_socket_error_closed, so the kernel's state is the only witness. */
static bool is_orderly_close(h2o_socket_t *sock)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    return getsockopt(h2o_socket_get_fd(sock), IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
           ti.tcpi_state == TCP_CLOSE_WAIT;
}

/* Reads the body as it arrives; returns after finishing the call, or to wait for more. */
static void read_body(gd_upstream_attempt_t *a, const char *err)
{
    gd_upstream_call_t *call = a->call;
    const gd_upstream_conf_t *conf = call->_upstream->conf;
    h2o_buffer_t *in = a->conn->sock->input;
    gd_http1_head_t *h = &a->response;

    switch (h->framing) {
    case GD_HTTP1_NO_BODY:
        complete(a, 0, h->is_keepalive && in->size == 0);
        return;
    case GD_HTTP1_LENGTH:
        if (h->content_length > conf->max_body_bytes) {
            end_attempt(a, GD_OUTCOME_TOO_LARGE, h->status,
                        "body of %" PRIu64 " bytes is larger than max_body_bytes (%zu)",
                        h->content_length, conf->max_body_bytes);
            return;
        }
        if (in->size >= h->content_length) {
            /* bytes past the body: the upstream is out of step, don't reuse the connection */
            complete(a, (size_t)h->content_length,
                     h->is_keepalive && in->size == h->content_length);
            return;
        }
        break;
    case GD_HTTP1_CHUNKED: {
        bool is_done;
        size_t consumed;
        ssize_t n = gd_http1_dechunk(&a->chunked, in->bytes + a->decoded_len,
                                     in->size - a->decoded_len, &is_done, &consumed);
        if (n < 0) {
            end_attempt(a, GD_OUTCOME_IO, h->status, "malformed chunked body");
            return;
        }
        /* The decoder takes every byte until the body ends, so what follows the decoded data
         * is either nothing or bytes after the body (which rule out reusing the connection). */
        size_t excess = in->size - a->decoded_len - consumed;
        a->decoded_len += (size_t)n;
        in->size = a->decoded_len;
        if (a->decoded_len > conf->max_body_bytes)
            break; /* reported below */
        if (is_done) {
            complete(a, a->decoded_len, h->is_keepalive && excess == 0);
            return;
        }
        break;
    }
    case GD_HTTP1_UNTIL_CLOSE:
        /* The close is the body's end (RFC 9112 section 6.3, rule 8); a reset is not: the
         * bytes so far may be a truncated answer that still parses (a number). Over TLS only
         * a close_notify is an orderly close. */
        if (a->conn->is_tls) {
            if (err == close_notify_received) {
                complete(a, in->size, false);
                return;
            }
            if (err != NULL) {
                end_attempt(a, GD_OUTCOME_IO, h->status,
                            "connection closed without close_notify while reading the body "
                            "(truncated)");
                return;
            }
            break;
        }
        if (err == h2o_socket_error_closed && is_orderly_close(a->conn->sock)) {
            complete(a, in->size, false);
            return;
        }
        if (err != NULL) {
            end_attempt(a, GD_OUTCOME_IO, h->status, "connection reset while reading the body");
            return;
        }
        break;
    }
    size_t body_so_far = h->framing == GD_HTTP1_CHUNKED ? a->decoded_len : in->size;
    /* A gzip bomb fails here, after little of it was read. */
    if (a->gunzip != NULL && body_so_far <= conf->max_body_bytes && !feed_gunzip(a, body_so_far))
        return;
    if (body_so_far > conf->max_body_bytes) {
        end_attempt(a, GD_OUTCOME_TOO_LARGE, h->status, "body larger than max_body_bytes (%zu)",
                    conf->max_body_bytes);
        return;
    }
    if (err != NULL)
        end_attempt(a, GD_OUTCOME_IO, h->status, "connection broken while reading the body (%s)",
                    err);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    gd_upstream_attempt_t *a = c->attempt;
    gd_upstream_call_t *call = a->call;
    h2o_buffer_t *in = sock->input;

    if (c->is_tls) {
        char why[160];
        if (gd_tls_read_failed(&c->tls, err, why, sizeof(why))) {
            /* A fatal alert from the server (TLS 1.3 reports a refused client certificate
             * only after the handshake, on the first read) or a broken record. */
            end_attempt(a, GD_OUTCOME_TLS, a->has_head ? a->response.status : 0,
                        "TLS error from %s (%s)", call->_upstream->conf->url, why);
            return;
        }
        /* The server's close_notify ends its data (RFC 8446 section 6.1): taken as the close,
         * without waiting for the TCP FIN, which a server may send only after our own. */
        if (err == NULL && gd_tls_has_close_notify(&c->tls))
            err = close_notify_received;
    }

    while (!a->has_head) {
        int r = in->size == 0
                    ? -EAGAIN
                    : gd_http1_parse_head(in->bytes, in->size, strcmp(call->method, "HEAD") == 0,
                                          &a->response);
        if (r == -EAGAIN) {
            if (err == NULL)
                return;
            if (!retry_on_stale_connection(a))
                end_attempt(a, GD_OUTCOME_IO, 0, "connection closed before an answer (%s)", err);
            return;
        }
        if (r != 0) {
            end_attempt(a, GD_OUTCOME_IO, 0, "not a valid HTTP/1.x answer");
            return;
        }
        h2o_buffer_consume(&sock->input, a->response.head_len);
        in = sock->input;
        if (a->response.status >= 100 && a->response.status <= 199 && a->response.status != 101)
            continue; /* an interim answer (100 Continue, 103 Early Hints): the real one follows */
        if (a->response.status == 101) {
            end_attempt(a, GD_OUTCOME_IO, 101, "the upstream switched protocols");
            return;
        }
        a->has_head = true;
        if (a->response.coding == GD_HTTP1_OTHER && a->response.framing != GD_HTTP1_NO_BODY &&
            a->response.status >= 200 && a->response.status <= 299) {
            end_attempt(a, GD_OUTCOME_IO, a->response.status,
                        "the body has a content coding other than gzip");
            return;
        }
        if (a->response.coding == GD_HTTP1_GZIP && a->response.framing != GD_HTTP1_NO_BODY) {
            a->gunzip = gd_gunzip_new(call->_upstream->conf->max_body_bytes);
            a->gunzip_fed = 0;
        }
    }
    read_body(a, err);
}

static void on_written(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    gd_upstream_attempt_t *a = c->attempt;

    /* Over TLS the read side knows more: a server that refuses the connection after the
     * handshake (TLS 1.3 checks a client certificate only then) sends an alert and closes, and
     * the write fails first. The read, still running, reports the alert or the close. */
    if (err != NULL && c->is_tls)
        return;
    if (err != NULL && !retry_on_stale_connection(a))
        end_attempt(a, GD_OUTCOME_IO, 0, "cannot send the request (%s)", err);
}

/* Sends the request of attempt @a on its connection, which is established. */
static void send_request(gd_upstream_attempt_t *a)
{
    gd_upstream_call_t *call = a->call;
    conn_t *c = a->conn;

    a->state = ATTEMPT_EXCHANGING;
    a->has_head = false;
    a->decoded_len = 0;
    memset(&a->chunked, 0, sizeof(a->chunked));
    /* The connect timeout no longer applies: the attempt's or the call's deadline does. */
    gd_timer_start(call->_upstream->timers, &a->timer, attempt_due_ms(a));
    c->sock->data = c;
    h2o_socket_read_start(c->sock, on_read);
    h2o_iovec_t out = h2o_iovec_init(call->_head, call->_head_len);
    if (c->is_tls && gd_tls_seal(&c->tls, call->_head, call->_head_len, &out) != 0) {
        end_attempt(a, GD_OUTCOME_TLS, 0, "cannot encrypt the request for %s",
                    call->_upstream->conf->url);
        return;
    }
    /* A request (TLS records over https://) nearly always fits the socket buffer: sent
     * directly, it skips libuv's write path, whose completion (1.44: uv__drain -> uv__io_stop)
     * re-arms the socket's epoll registration with a system call of its own on every call.
     * Only a remainder goes through h2o. */
    ssize_t n = send(h2o_socket_get_fd(c->sock), out.base, out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == (ssize_t)out.len)
        return;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        if (c->is_tls)
            return; /* the read, still running, reports the alert or the close: on_written() */
        if (!retry_on_stale_connection(a))
            end_attempt(a, GD_OUTCOME_IO, 0, "cannot send the request (%s)", strerror(errno));
        return;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    a->unsent = h2o_iovec_init(out.base + sent, out.len - sent);
    if (c->is_tls)
        gd_tls_write_sealed(c->sock, &a->unsent, on_written);
    else
        h2o_socket_write(c->sock, &a->unsent, 1, on_written);
}

static void connect_next(conn_t *c);

/* The address at @index failed to connect: new connections start at the next one, and the name
 * is looked up again soon (it may have moved). */
static void note_connect_failure(gd_upstream_t *u, size_t index)
{
    if (u->naddrs != 0 && u->preferred == index % u->naddrs)
        u->preferred = (index + 1) % u->naddrs;
    if (u->is_named && !u->is_resolving &&
        gd_timers_now(u->timers) >= u->last_lookup_ms + MIN_LOOKUP_INTERVAL_MS)
        start_lookup(u);
}

static void on_handshake(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    gd_upstream_t *u = c->upstream;
    gd_upstream_attempt_t *a = c->attempt;
    char why[200];

    if (gd_tls_check_peer(u->tls, &c->tls, err, why, sizeof(why)) < 0) {
        end_attempt(a, GD_OUTCOME_TLS, 0, "TLS handshake with %s failed: %s", u->conf->url, why);
        return;
    }
    c->is_tls = true;
    gd_tls_take_writes(&c->tls);
    gd_log_debug("upstream %s: TLS handshake done (%s, %s)", u->conf->name,
                 h2o_socket_get_ssl_protocol_version(sock),
                 gd_tls_is_resumed(&c->tls) ? "resumed" : "full");
    send_request(a);
}

static void on_connect(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    gd_upstream_t *u = c->upstream;
    gd_upstream_attempt_t *a = c->attempt;

    if (err != NULL) {
        note_connect_failure(u, c->addr_index);
        if (c->attempts < u->naddrs) { /* within the same connect timeout */
            h2o_socket_close(c->sock);
            c->sock = NULL;
            c->addr_index++;
            connect_next(c);
            return;
        }
        end_attempt(a, GD_OUTCOME_CONNECT, 0, "cannot connect to %s (%s)", u->conf->url, err);
        return;
    }
    u->preferred = c->addr_index % (u->naddrs != 0 ? u->naddrs : 1);
    /* A request is one write, but a remainder the socket did not take, a body, or a TLS
     * handshake flight would otherwise wait on Nagle for the peer's (delayed) ACK: 40 ms. */
    int one = 1;
    (void)setsockopt(h2o_socket_get_fd(sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (u->tls != NULL) {
        /* Within the same connect timeout (the attempt's timer runs on). */
        a->state = ATTEMPT_HANDSHAKING;
        gd_tls_handshake(u->tls, sock, &c->tls, on_handshake);
        return;
    }
    send_request(a);
}

/* Connects @c to the address at its addr_index (the list may have changed since the last
 * attempt: it wraps around). */
static void connect_next(conn_t *c)
{
    gd_upstream_t *u = c->upstream;
    const struct sockaddr_storage *a = &u->addrs[c->addr_index % u->naddrs];
    socklen_t len =
        a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

    c->attempts++;
    if ((c->sock = h2o_socket_connect(u->loop, (struct sockaddr *)a, len, on_connect)) == NULL) {
        end_attempt(c->attempt, GD_OUTCOME_CONNECT, 0, "cannot connect to %s (no socket)",
                    u->conf->url);
        return;
    }
    c->sock->data = c;
}

/* Starts @c's connect, or puts it in line for the name's first addresses. */
static void connect_new(conn_t *c)
{
    gd_upstream_t *u = c->upstream;

    if (u->naddrs != 0) {
        c->addr_index = u->preferred;
        connect_next(c);
        return;
    }
    /* The name has never resolved. One lookup serves every connection waiting for it; without
     * one under way the call fails at once, with the reason of the last one, and asks for
     * another (MIN_LOOKUP_INTERVAL_MS apart). */
    if (!u->is_resolving && gd_timers_now(u->timers) >= u->last_lookup_ms + MIN_LOOKUP_INTERVAL_MS)
        start_lookup(u);
    if (u->is_resolving) {
        h2o_linklist_insert(&u->lookup_waiting, &c->lookup_link);
        return;
    }
    end_attempt(c->attempt, GD_OUTCOME_CONNECT, 0, "cannot resolve %s (%s)", u->conf->host_shown,
                u->lookup_error);
}

/* Keeps the addresses of @res (at most MAX_ADDRS); returns how many. The preferred address
 * stays when the list is unchanged. */
static size_t keep_addrs(gd_upstream_t *u, const struct addrinfo *res)
{
    struct sockaddr_storage addrs[MAX_ADDRS];
    size_t n = 0;

    for (const struct addrinfo *ai = res; ai != NULL && n < MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(addrs[0]))
            continue;
        memset(&addrs[n], 0, sizeof(addrs[n]));
        memcpy(&addrs[n++], ai->ai_addr, ai->ai_addrlen);
    }
    if (n == 0)
        return 0;
    if (n != u->naddrs || memcmp(addrs, u->addrs, n * sizeof(addrs[0])) != 0) {
        memcpy(u->addrs, addrs, n * sizeof(addrs[0]));
        u->naddrs = n;
        u->preferred = 0;
    }
    return n;
}

static void on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    gd_upstream_t *u = H2O_STRUCT_FROM_MEMBER(gd_upstream_t, lookup, req);
    const char *host = u->conf->host_shown; /* never an {env.NAME} value */

    u->is_resolving = false;
    if (u->is_closed) {
        uv_freeaddrinfo(res);
        return;
    }
    u->lookups++; /* counted when done, so that the metric's failures are a subset */
    if (status == 0 && keep_addrs(u, res) != 0) {
        if (u->has_lookup_failed)
            gd_log_info("upstream %s: %s resolves again (%zu addresses)", u->conf->name, host,
                        u->naddrs);
        u->has_lookup_failed = false;
    } else {
        u->lookup_failures++;
        snprintf(u->lookup_error, sizeof(u->lookup_error), "%s",
                 status != 0 ? uv_strerror(status) : "no IPv4 or IPv6 address");
        /* Logged when the name stops resolving, not at every later attempt. */
        if (!u->has_lookup_failed && u->naddrs != 0)
            gd_log_warn("upstream %s: cannot resolve %s (%s); new connections keep going to its "
                        "%zu last addresses",
                        u->conf->name, host, u->lookup_error, u->naddrs);
        else if (!u->has_lookup_failed)
            gd_log_warn("upstream %s: cannot resolve %s (%s); its calls fail until it resolves",
                        u->conf->name, host, u->lookup_error);
        u->has_lookup_failed = true;
    }
    uv_freeaddrinfo(res);
    gd_timer_start(u->timers, &u->refresh_timer,
                   gd_timers_now(u->timers) + u->conf->dns_refresh_ms);
    /* The connections that waited for the first addresses: each connects, or its call fails.
     * Moved to a list of our own first: a failing call may start others on this upstream,
     * which may start another lookup and wait for that one. */
    h2o_linklist_t ready;
    h2o_linklist_init_anchor(&ready);
    h2o_linklist_insert_list(&ready, &u->lookup_waiting);
    while (!h2o_linklist_is_empty(&ready)) {
        conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, lookup_link, ready.next);
        h2o_linklist_unlink(&c->lookup_link);
        connect_new(c);
    }
}

/* Looks the name up on libuv's thread pool, never on the loop; on_lookup() keeps the result. */
static void start_lookup(gd_upstream_t *u)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_protocol = IPPROTO_TCP,
                             .ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV};
    char serv[8];
    int r;

    if (u->is_resolving || u->is_closed)
        return;
    gd_timer_stop(u->timers, &u->refresh_timer);
    snprintf(serv, sizeof(serv), "%u", (unsigned)u->conf->port);
    u->last_lookup_ms = gd_timers_now(u->timers);
    if ((r = uv_getaddrinfo(u->loop, &u->lookup, on_lookup, u->conf->host, serv, &hints)) != 0) {
        /* Only for invalid arguments or no memory: counted as a failed lookup, retried later. */
        u->lookups++;
        u->lookup_failures++;
        snprintf(u->lookup_error, sizeof(u->lookup_error), "%s", uv_strerror(r));
        gd_timer_start(u->timers, &u->refresh_timer,
                       gd_timers_now(u->timers) + u->conf->dns_refresh_ms);
        return;
    }
    u->is_resolving = true;
}

/* Gives attempt @a a connection: the most recently used idle one, or a new one. @a holds a slot
 * of the line (and so, under a budget, a unit for a new connection). */
static void acquire(gd_upstream_attempt_t *a)
{
    gd_upstream_call_t *call = a->call;
    gd_upstream_t *u = call->_upstream;

    u->busy++;
    arm_hedge(a);
    if (!h2o_linklist_is_empty(&u->idle)) {
        conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, idle_link, u->idle.next);
        unlink_idle(u, c);
        c->attempt = a;
        a->conn = c;
        send_request(a);
        return;
    }
    conn_t *c = gd_xcalloc(1, sizeof(*c));
    c->upstream = u;
    c->attempt = a;
    gd_timer_init(&c->idle_timer, on_idle_timeout);
    a->conn = c;
    a->state = ATTEMPT_CONNECTING;
    uint64_t connect_due = gd_timers_now(u->timers) + u->conf->connect_timeout_ms;
    uint64_t due = attempt_due_ms(a);
    gd_timer_start(u->timers, &a->timer, connect_due < due ? connect_due : due);
    connect_new(c);
}

static void on_timer(gd_timer_t *timer)
{
    gd_upstream_attempt_t *a = H2O_STRUCT_FROM_MEMBER(gd_upstream_attempt_t, timer, timer);
    gd_upstream_call_t *call = a->call;
    gd_upstream_t *u = call->_upstream;
    uint64_t now = gd_timers_now(u->timers);
    bool is_deadline = now >= call->base.deadline_ms;
    bool is_attempt_due = !is_deadline && now >= attempt_due_ms(a);

    if (a->state == ATTEMPT_BACKOFF) {
        on_backoff_end(a);
        return;
    }
    if (a->state == ATTEMPT_PACING) {
        begin_exchange(a);
        return;
    }
    /* end_attempt() closes the connection: a half-read answer must never reach the next call. A
     * call waiting for a slot has its deadline in the line (on_line_end()). */
    if (a->state == ATTEMPT_HANDSHAKING && !is_deadline && !is_attempt_due) {
        end_attempt(a, GD_OUTCOME_TLS, 0,
                    "TLS handshake with %s timed out (connect_timeout_ms %" PRIu64 ")",
                    u->conf->url, u->conf->connect_timeout_ms);
    } else if (a->state == ATTEMPT_CONNECTING && !is_deadline && !is_attempt_due) {
        if (a->conn->sock != NULL) /* a connect under way, not a wait for a lookup */
            note_connect_failure(u, a->conn->addr_index);
        end_attempt(a, GD_OUTCOME_CONNECT, 0, "connect to %s timed out after %" PRIu64 " ms",
                    u->conf->url, u->conf->connect_timeout_ms);
    } else if (is_attempt_due) {
        end_attempt(a, GD_OUTCOME_TIMEOUT, a->has_head ? a->response.status : 0,
                    "attempt %u timed out after %" PRIu64 " ms (attempt_timeout_ms)", a->number,
                    call->retry->attempt_timeout_ms);
    } else
        end_attempt(a, GD_OUTCOME_TIMEOUT, a->has_head ? a->response.status : 0,
                    "timed out after %" PRIu64 " ms", call->base.timeout_ms);
}

/* The drain of @c ends: the answer was read to its end (@is_reusable), or it failed, broke the
 * rules or took too long (closed). Either way the slot is given back. */
static void end_drain(conn_t *c, bool is_reusable)
{
    gd_upstream_t *u = c->upstream;

    h2o_linklist_unlink(&c->idle_link);
    gd_timer_stop(u->timers, &c->idle_timer);
    gd_timer_init(&c->idle_timer, on_idle_timeout);
    recycle_conn(c, is_reusable);
}

static void on_drain_timeout(gd_timer_t *timer)
{
    end_drain(H2O_STRUCT_FROM_MEMBER(conn_t, idle_timer, timer), false);
}

static void on_drain_read(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    h2o_buffer_t *in = sock->input;

    if (err != NULL || (c->is_tls && gd_tls_is_closed_by_peer(&c->tls))) {
        end_drain(c, false);
        return;
    }
    if (c->is_drain_chunked) {
        bool is_done;
        size_t consumed;
        ssize_t n = gd_http1_dechunk(&c->drain_chunked, in->bytes, in->size, &is_done, &consumed);
        if (n < 0 || in->size > c->drain_left) {
            end_drain(c, false);
            return;
        }
        if (is_done) {
            end_drain(c, consumed == in->size); /* bytes past the body: out of step */
            return;
        }
        c->drain_left -= in->size;
    } else {
        if (in->size >= c->drain_left) {
            end_drain(c, in->size == c->drain_left);
            return;
        }
        c->drain_left -= in->size;
    }
    h2o_buffer_consume(&sock->input, in->size);
}

/* Whether attempt @a, being cancelled, may leave its connection to read the rest of the answer
 * (see DRAIN_MAX_BYTES), and if so starts that: the connection is the attempt's no more. */
static void start_drain(gd_upstream_attempt_t *a)
{
    conn_t *c = a->conn;
    const gd_http1_head_t *h = &a->response;

    if (a->state != ATTEMPT_EXCHANGING || c == NULL || c->sock == NULL || !a->has_head ||
        !h->is_keepalive || h2o_socket_is_writing(c->sock) || c->upstream->is_closed)
        return;
    h2o_buffer_t *in = c->sock->input;
    if (h->framing == GD_HTTP1_LENGTH && h->content_length > in->size &&
        h->content_length - in->size <= DRAIN_MAX_BYTES) {
        c->is_drain_chunked = false;
        c->drain_left = h->content_length - in->size;
    } else if (h->framing == GD_HTTP1_CHUNKED) {
        c->is_drain_chunked = true;
        c->drain_left = DRAIN_MAX_BYTES;
        c->drain_chunked = a->chunked; /* the input holds only decoded data, all of it read */
    } else {
        return;
    }
    a->conn = NULL;
    c->attempt = NULL;
    h2o_buffer_consume(&c->sock->input, in->size);
    h2o_linklist_insert(&c->upstream->draining, &c->idle_link);
    gd_timer_init(&c->idle_timer, on_drain_timeout);
    gd_timer_start(c->upstream->timers, &c->idle_timer,
                   gd_timers_now(c->upstream->timers) + DRAIN_TIMEOUT_MS);
    h2o_socket_read_start(c->sock, on_drain_read);
}

static void on_cancel(gd_task_t *task)
{
    gd_upstream_call_t *call = H2O_STRUCT_FROM_MEMBER(gd_upstream_call_t, base._task, task);
    gd_upstream_attempt_t *a = is_running(&call->_hedge) ? &call->_hedge : &call->_attempt;
    /* a nearly complete answer keeps its connection, whichever attempt it came on */
    start_drain(&call->_attempt);
    start_drain(&call->_hedge);
    end_attempt(a, GD_OUTCOME_CANCELLED, 0, "cancelled"); /* the other goes with it */
}

/* The request head and body, written once into one buffer: sent again as they are on a retry,
 * and by one send() when they fit the socket buffer. */
static void build_head(gd_upstream_t *u, gd_upstream_call_t *call)
{
    static const char accept_ua[] = " HTTP/1.1\r\naccept: application/json\r\n"
                                    "user-agent: gatherd/" GD_VERSION "\r\nhost: ";
    static const char accept_gzip[] = "accept-encoding: gzip\r\n";
    bool has_body = call->has_body;
    char clen[48];
    int clen_len = has_body ? snprintf(clen, sizeof(clen), "content-length: %zu\r\n",
                                       call->body.len)
                            : 0;
    size_t mlen = strlen(call->method), hlen = strlen(u->host_header);
    size_t cap = mlen + 1 + call->path.len + sizeof(accept_ua) + hlen + 2 + sizeof(accept_gzip) +
                 (size_t)clen_len + call->extra_headers.len + 2 + call->body.len;
    char *p = call->_head = gd_xmalloc(cap);

    /* Plain copies: formatting with printf was a visible share of the request path. */
    memcpy(p, call->method, mlen);
    p += mlen;
    *p++ = ' ';
    memcpy(p, call->path.base, call->path.len);
    p += call->path.len;
    memcpy(p, accept_ua, sizeof(accept_ua) - 1);
    p += sizeof(accept_ua) - 1;
    memcpy(p, u->host_header, hlen);
    p += hlen;
    memcpy(p, "\r\n", 2);
    p += 2;
    if (u->conf->accepts_gzip) {
        memcpy(p, accept_gzip, sizeof(accept_gzip) - 1);
        p += sizeof(accept_gzip) - 1;
    }
    if (has_body) {
        memcpy(p, clen, (size_t)clen_len);
        p += clen_len;
    }
    if (call->extra_headers.len != 0)
        memcpy(p, call->extra_headers.base, call->extra_headers.len);
    p += call->extra_headers.len;
    memcpy(p, "\r\n", 2);
    p += 2;
    if (call->body.len != 0)
        memcpy(p, call->body.base, call->body.len);
    p += call->body.len;
    call->_head_len = (size_t)(p - call->_head);
    GD_REQUIRE(call->_head_len <= cap);
}

/* Attempt @a, its token's slot come (or no rate limit), asks for a connection slot. */
static void begin_exchange(gd_upstream_attempt_t *a)
{
    gd_upstream_t *u = a->call->_upstream;

    gd_limits_spend_token(&a->call->_limits);
    a->started_ms = gd_timers_now(u->timers);
    /* Not while others wait: they were first. */
    if (take_slot(u))
        acquire(a);
    else
        wait_for_slot(a);
}

/* Attempt @a, pacing, has its token (@result 0) to go at @at, or none could come in time. */
static void on_token(gd_upstream_attempt_t *a, int result, uint64_t at)
{
    gd_upstream_call_t *call = a->call;
    gd_upstream_t *u = call->_upstream;

    if (result < 0) {
        end_attempt(a, GD_OUTCOME_RATE_LIMITED, 0,
                    "no token of the rate limit of %s could come within %" PRIu64 " ms",
                    u->conf->url, call->base.timeout_ms);
        return;
    }
    if (at <= gd_timers_now(u->timers)) {
        begin_exchange(a);
        return;
    }
    gd_timer_start(u->timers, &a->timer, at);
}

static void on_cluster_token(gd_limits_pass_t *pass, int result, uint64_t at)
{
    gd_upstream_call_t *call = H2O_STRUCT_FROM_MEMBER(gd_upstream_call_t, _limits, pass);
    gd_upstream_attempt_t *a = call->_asking;

    call->_asking = NULL;
    on_token(a, result, at);
}

/* Attempt @a takes its rate-limit token: at once, after a wait on its own timer, or, when none
 * can come before the deadline, not at all. The first attempt of a call does it once admitted
 * under max_in_flight; a retry under a cluster-scoped limit when its backoff ends. */
static void pace_attempt(gd_upstream_attempt_t *a)
{
    gd_upstream_call_t *call = a->call;
    gd_upstream_t *u = call->_upstream;
    uint64_t at = 0;

    a->state = ATTEMPT_PACING;
    int r = gd_limits_ask_token(&u->limits, &call->_limits, call->base.deadline_ms,
                                on_cluster_token, &at);
    if (r == GD_LIMITS_WAITING) {
        call->_asking = a; /* Redis answers, or its timeout falls back (on_cluster_token) */
        return;
    }
    on_token(a, r, at);
}

static void on_admitted(gd_limits_pass_t *pass, bool is_granted)
{
    gd_upstream_call_t *call = H2O_STRUCT_FROM_MEMBER(gd_upstream_call_t, _limits, pass);
    gd_upstream_t *u = call->_upstream;

    if (is_granted) {
        pace_attempt(&call->_attempt);
        return;
    }
    end_attempt(&call->_attempt, GD_OUTCOME_IN_FLIGHT_TIMEOUT, 0,
                "timed out after %" PRIu64 " ms waiting for a place (max_in_flight %zu)",
                call->base.timeout_ms, u->conf->max_in_flight);
}

static void start_call(void *source, gd_call_t *base, gd_group_t *group)
{
    gd_upstream_t *u = source;
    gd_upstream_call_t *call = (gd_upstream_call_t *)base;

    call->_upstream = u;
    gd_timer_init(&call->_attempt.timer, on_timer);
    gd_timer_init(&call->_hedge.timer, on_timer);
    gd_timer_init(&call->_hedge_timer, on_hedge_timer);
    call->_started = 1;
    begin_attempt(call, &call->_attempt, 1);
    if (u->conf->retry_budget != NULL) { /* NULL in tests that make their own conf */
        gd_retry_budget_note_call(u->conf->retry_budget, gd_timers_now(u->timers));
        atomic_fetch_add_explicit(&u->conf->retry_budget->attempts, 1, memory_order_relaxed);
    }
    build_head(u, call);
    gd_group_add(group, &call->base._task, on_cancel);
    call->_breaker_verdict = GD_BREAKER_ALLOWED;
    if (u->conf->breaker != NULL) {
        call->_breaker_verdict = gd_breaker_allow(u->conf->breaker, gd_timers_now(u->timers));
        if (call->_breaker_verdict == GD_BREAKER_REFUSED) {
            /* No connection, no wait, no retry (is_listed_failure() knows no circuit_open). */
            end_attempt(&call->_attempt, GD_OUTCOME_CIRCUIT_OPEN, 0,
                        "the circuit breaker of %s is open", u->conf->url);
            return;
        }
    }

    if (gd_limits_enter(&u->limits, &call->_limits, call->base.deadline_ms, on_admitted) ==
        GD_LIMITS_WAITING) {
        call->_attempt.state = ATTEMPT_ADMITTING;
        return;
    }
    pace_attempt(&call->_attempt);
}

static void dispose_call(gd_call_t *base)
{
    gd_upstream_call_t *call = (gd_upstream_call_t *)base;

    free(call->_head);
    call->_head = NULL;
}

static void call_progress(const gd_call_t *base, gd_call_progress_t *ret)
{
    const gd_upstream_attempt_t *a = &((const gd_upstream_call_t *)base)->_attempt;

    ret->attempt = a->number;
    switch (a->state) {
    case ATTEMPT_WAITING:
        ret->state = "waiting";
        break;
    case ATTEMPT_CONNECTING:
        ret->state = "connecting";
        break;
    case ATTEMPT_HANDSHAKING:
        ret->state = "handshaking";
        break;
    case ATTEMPT_EXCHANGING:
        ret->state = a->has_head ? "receiving" : "sent";
        break;
    case ATTEMPT_BACKOFF:
        ret->state = "backoff";
        break;
    case ATTEMPT_ADMITTING:
        ret->state = "admitting";
        break;
    case ATTEMPT_PACING:
        ret->state = "pacing";
        break;
    default:
        ret->state = "done";
    }
}

static void call_cache_key(const gd_call_t *base, void (*add)(void *ctx, const void *p, size_t n),
                           void *ctx)
{
    const gd_upstream_call_t *call = (const gd_upstream_call_t *)base;
    const h2o_iovec_t *h = &call->extra_headers;

    add(ctx, call->method, strlen(call->method) + 1);
    add(ctx, call->path.base, call->path.len);
    add(ctx, "\n", 1);
    add(ctx, h->base + call->per_request_len, h->len - call->per_request_len);
    add(ctx, "\n", 1);
    if (call->has_body)
        add(ctx, call->body.base, call->body.len);
}

static void call_clone(gd_call_t *dst_base, const gd_call_t *src_base, gd_arena_t *arena)
{
    gd_upstream_call_t *dst = (gd_upstream_call_t *)dst_base;
    const gd_upstream_call_t *src = (const gd_upstream_call_t *)src_base;

    dst->method = src->method; /* the config's */
    dst->path = gd_arena_strdup(arena, src->path.base, src->path.len);
    dst->extra_headers = gd_arena_strdup(arena, src->extra_headers.base, src->extra_headers.len);
    dst->per_request_len = src->per_request_len;
    dst->body = src->body.base != NULL ? gd_arena_strdup(arena, src->body.base, src->body.len)
                                       : src->body;
    dst->has_body = src->has_body;
    dst->is_idempotent = src->is_idempotent;
    dst->retry = src->retry;
}

const gd_call_ops_t gd_upstream_call_ops = {
    .kind = "http",
    .size = sizeof(gd_upstream_call_t),
    .prepare = gd__upstream_call_prepare,
    .start = start_call,
    .dispose = dispose_call,
    .progress = call_progress,
    .cache_key = call_cache_key,
    .clone = call_clone,
};
