#include "front/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>

#include "base/coro.h"
#include "base/heaptrim.h"
#include "base/sockbuf.h"
#include "config/carry.h"
#include "base/util.h"
#include "front/dispatch.h"
#include "front/h1idle.h"
#include "front/readbound.h"
#include "gather/outbox.h"
#include "gather/request.h"
#include "ops/log.h"
#include "ops/slowloop.h"
#include "sources/cache.h"
#include "sources/http/upstream.h"
#include "sources/pg/pgpool.h"
#include "sources/redis/redis.h"

#define LISTEN_BACKLOG 4096
/* How often a worker's heartbeat fires: it measures the loop's lag and publishes the gauges
 * that /metrics and /healthz read. */
#define HEARTBEAT_MS 100
#define ACCEPT_BATCH 64
/* How long a listener stops accepting once accept() runs out of descriptors: the poll is level
 * triggered, so retrying at once would spin the loop at 100% CPU (libuv's own accept path has
 * its reserve-descriptor trick for this; gatherd's accept loop replaced it). */
#define ACCEPT_BACKOFF_MS 100
/* During a drain an HTTP/1 connection waiting for a request is closed once it has waited this
 * long with no byte of one received: a connection accepted as the drain starts, or a keep-alive
 * one whose answer has just been written, gets this long for its request to arrive (it is
 * served, with Connection: close). The sweep looks every DRAIN_SWEEP_MS. */
#define DRAIN_IDLE_GRACE_MS 200
#define DRAIN_SWEEP_MS 20
/* At the drain a listener first drops SYNs, then goes on accepting for this long, so that a
 * handshake the kernel answered just before completes (its final ACK still passes) and is
 * served; then it closes. A client whose SYN is dropped retries it after a second and finds the
 * port closed (or another instance behind the load balancer). */
#define LISTENER_CLOSE_GRACE_MS 50
/* The first input buffer of a client connection: h2o's 8 KiB halved, since a request head is
 * rarely above 4 KiB (a longer one, or a body, grows it by doubling, as h2o does). */
#define CLIENT_INPUT_BUFFER_BYTES 4096

struct listener {
    uv_poll_t poll;
    int fd;
    struct worker *worker;
    bool is_open;
    bool is_backing_off; /* accept() ran out of descriptors: the poll is stopped for a while */
    gd_timer_t backoff;
};

/*
 * A config the server runs or ran, and what the workers share for it. Made by the owner's
 * thread at the start and at each reload, and freed there, oldest first (a newer generation
 * may hold what an older one lent it: config/carry.h), once no worker serves it or finishes
 * requests on it.
 */
struct generation {
    gd_config_t *config; /* owned */
    gd_router_t *router; /* owned */
    gd_tls_ctx_t **tls;  /* per upstream, NULL for http://; owned unless lent */
    /* per upstream: the process-wide count of its connections when max_connections is smaller
     * than the threads (then no per-thread share could keep to it), else NULL; owned unless
     * lent */
    gd_budget_t **upstream_budgets;
    /* The process-wide count of Postgres connections when pool_size is smaller than the
     * threads, else NULL (each worker's pool has a share of pool_size); owned unless lent. */
    gd_pgpool_shared_t *pg_shared;
    uint64_t statement_timeout_ms; /* the pools' backstop (backstop_statement_timeout_ms()) */
    /* per upstream: the pools went on into the next generation with their TLS context and
     * connection budget, which it now owns */
    bool *is_upstream_lent;
    bool is_pg_lent;
    /* per upstream: the index of the previous generation's upstream whose pools it keeps, or
     * KEPT_NONE; and whether the previous generation's Postgres pools are kept */
    size_t *kept_from;
    bool is_pg_kept;
    struct generation *older, *newer;
    atomic_size_t refs; /* the workers' views of it, and one while it is the current one */
};

#define KEPT_NONE SIZE_MAX

/* What one worker serves a generation with: its pools and sources for that config. Requests
 * hold it (gd_gather_view_t) until they end; a reload hands the pools it keeps to the next
 * view, and the rest close once the last request on the old one has ended. */
struct view {
    gd_gather_view_t gather; /* first: on_unused gets it */
    struct worker *worker;
    struct generation *gen;
    gd_upstream_t **upstreams;
    bool *is_upstream_given;  /* went on into a newer view */
    gd_pgpool_conf_t pg_conf; /* borrowed by pgpool for its lifetime */
    gd_pgpool_t *pgpool;
    bool is_pg_given;
    gd_flights_t *flights; /* calls with "cache" in flight; NULL when no call has one */
    gd_source_t *sources;  /* the upstreams in config order, then the Postgres pool */
    bool is_closing;       /* retired: its pools are closing */
    struct view *next_retired;
};

struct worker {
    gd_server_t *server;
    size_t index;
    pthread_t thread;
    bool has_thread;
    uv_loop_t loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    /* Client connections' input buffers: a request waiting for its answer keeps its buffer
     * (h2o parses it in place), so this is memory per request in flight or queued. */
    h2o_buffer_prototype_t client_input;
    struct listener *listeners;
    uv_async_t wakeup;
    uv_check_t drain_check;
    gd_readbound_t read_bound;
    uv_timer_t drain_sweep; /* closes idle HTTP/1 connections during the drain */
    bool are_listeners_closing; /* SYNs dropped, closed at listeners_close_at */
    uint64_t listeners_close_at;
    uv_timer_t heartbeat;
    uint64_t heartbeat_due_ns;
    gd_slowloop_t slowloop;
    gd_sched_t *sched;
    struct view *view;    /* what new requests start under */
    struct view *retired; /* views no request holds any more, closing */
    uv_timer_t retire_timer;
    _Atomic(struct generation *) next_gen; /* posted by a reload, taken on the wakeup */
    gd_redis_t *redis;    /* "redis": this worker's connections, for every view; NULL without */
    gd_gather_ctx_t gather;
    gd_outbox_t *outbox; /* the answers of this thread not yet taken by their clients */
    uint64_t trimmed_at_ms; /* the last gd_heap_give_back() (uv_now()) */
    unsigned trims_due;     /* idle trims still to run after a burst (see trim_when_idle()) */
    size_t connections;
    bool is_draining, is_aborted, is_finished;
    bool has_warned_backoff; /* the accept back-off is logged once per worker */
    size_t max_connections;  /* this worker's share of max_client_connections */
    bool is_at_connection_cap; /* the listeners rest until a connection closes */
    bool has_warned_cap;     /* reaching the cap is logged once per worker */
    bool has_pg_been_ready;  /* the Postgres pool had a live connection once */
    bool is_wakeup_closed; /* guarded by the server's wakeup_mutex */
    /* Inspections posted to the worker, answered on its wakeup; guarded by wakeup_mutex. */
    gd_inspection_t *inspections[GD_SERVER_MAX_INSPECTIONS];
    size_t ninspections;
    atomic_bool want_drain, want_abort;
};

struct gd_server {
    struct generation *current; /* the owner's: the config new requests are to use */
    struct generation *oldest;  /* the owner's: generations not yet freed, oldest first */
    size_t nlisten;             /* listen's addresses (a restart-only setting) */
    h2o_globalconf_t globalconf;
    struct worker *workers;
    size_t nworkers;
    gd_metrics_t **metrics; /* one per worker, written by that worker only */
    uv_async_t stopped_async; /* on the owner's loop */
    atomic_size_t nstopped;
    gd_server_stopped_cb on_stopped;
    void *on_stopped_data;
    pthread_mutex_t ready_mutex, wakeup_mutex;
    pthread_cond_t ready_cond;
    size_t nready;
    size_t max_client_connections; /* config's, or the default for the open-files limit */
    uv_async_t retired_async;      /* on the owner's loop: a generation may be freed */
    bool is_retired_async_closed;  /* guarded by wakeup_mutex */
    atomic_size_t unsent_bytes; /* every worker's outbox: max_unsent_bytes bounds it */
};

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct worker *w = H2O_STRUCT_FROM_MEMBER(struct worker, ctx, req->conn->ctx);
    uint64_t unread_ns = gd_readbound_note_request(&w->read_bound, req);
    gd_dispatch(w->view->gen->router, &w->gather, req, unread_ns);
    return 0;
}

/* h2o answers some requests itself, before any handler: a Content-Length or a chunked body over
 * max_request_entity_size (413, without reading the body), a broken chunked body (400). It sends
 * them as plain text through the host's fallback path, which no handler uses, so a filter there
 * makes them JSON errors like gatherd's own. */
struct error_filter {
    h2o_filter_t super;
    size_t max_request_body_bytes;
};

struct error_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
};

static void on_error_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                          h2o_send_state_t state)
{
    struct error_ostream *o = (struct error_ostream *)self;

    /* h2o sends its text in one buffer (none for HEAD): ours replaces it. */
    h2o_ostream_send_next(self, req, bufcnt != 0 ? &o->body : NULL, bufcnt != 0 ? 1 : 0, state);
}

static void on_setup_error_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    struct error_filter *f = (struct error_filter *)self;

    if (req->res.status >= 400) {
        char msg[160];
        const char *code = "bad_request";
        if (req->res.status == 413) {
            code = "too_large";
            snprintf(msg, sizeof(msg), "the request body is larger than %zu bytes",
                     f->max_request_body_bytes);
        } else {
            snprintf(msg, sizeof(msg), "the request is malformed (%d)", req->res.status);
            if (req->res.status != 400)
                code = "error";
        }
        size_t cap = strlen(code) + strlen(msg) + 32;
        char *json = h2o_mem_alloc_pool(&req->pool, cap);
        int n = snprintf(json, cap, "{\"error\":\"%s\",\"message\":\"%s\"}", code, msg);
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                       H2O_STRLIT("application/json"), 1);
        req->res.content_length = (size_t)n;
        struct error_ostream *o =
            (struct error_ostream *)h2o_add_ostream(req, sizeof(*o), slot);
        o->super.do_send = on_error_send;
        o->body = h2o_iovec_init(json, (size_t)n);
        slot = &o->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

/* max_client_connections when the config leaves it to gatherd: half the open-files limit, so
 * that upstream and Postgres connections, and the files of a running process, have the other
 * half. */
static size_t default_max_client_connections(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 65536;
    return rl.rlim_cur / 2 > 0 ? (size_t)(rl.rlim_cur / 2) : 1;
}

/* Added to the longest SQL call's timeout for the server's statement_timeout: gatherd's own
 * timeout and cancel normally come first, and the backstop only stops what they could not. */
#define STATEMENT_TIMEOUT_MARGIN_MS 1000

/* The server's statement_timeout for @config's SQL calls: no call waits for a statement longer
 * than its own timeout, so one running past the longest of them is abandoned work. */
static uint64_t backstop_statement_timeout_ms(const gd_config_t *config)
{
    uint64_t longest = 0;

    for (size_t i = 0; i < config->nendpoints; i++) {
        const gd_endpoint_conf_t *ep = &config->endpoints[i];
        for (size_t j = 0; j < ep->ncalls; j++) {
            if (ep->calls[j].type == GD_CALL_TYPE_SQL && ep->calls[j].timeout_ms > longest)
                longest = ep->calls[j].timeout_ms;
        }
    }
    return longest + STATEMENT_TIMEOUT_MARGIN_MS;
}

/* A generation for @config, @router and @tls (taken), with nothing kept from an older one:
 * the connection budgets of the upstreams and of Postgres are made for it. */
static struct generation *generation_new(gd_server_t *s, gd_config_t *config, gd_router_t *router,
                                         gd_tls_ctx_t **tls)
{
    struct generation *g = gd_xcalloc(1, sizeof(*g));
    size_t n = config->nupstreams + 1;

    g->config = config;
    g->router = router;
    g->tls = tls;
    g->upstream_budgets = gd_xcalloc(n, sizeof(*g->upstream_budgets));
    g->is_upstream_lent = gd_xcalloc(n, sizeof(*g->is_upstream_lent));
    g->kept_from = gd_xcalloc(n, sizeof(*g->kept_from));
    for (size_t i = 0; i < config->nupstreams; i++) {
        g->kept_from[i] = KEPT_NONE;
        if (config->upstreams[i].max_connections < s->nworkers)
            g->upstream_budgets[i] =
                gd_budget_new(config->upstreams[i].max_connections, s->nworkers);
    }
    if (config->nstatements > 0 && config->postgres.pool_size < s->nworkers)
        g->pg_shared = gd_pgpool_shared_new(config->postgres.pool_size, s->nworkers);
    g->statement_timeout_ms = backstop_statement_timeout_ms(config);
    atomic_init(&g->refs, s->nworkers + 1); /* each worker's view, and being the current one */
    return g;
}

static void generation_free(struct generation *g)
{
    const gd_config_t *config = g->config;

    for (size_t i = 0; i < config->nupstreams; i++) {
        if (g->is_upstream_lent[i])
            g->tls[i] = NULL; /* the newer generation frees it */
        else
            gd_budget_free(g->upstream_budgets[i]);
    }
    g->tls = gd_tls_ctxs_free(config, g->tls);
    if (!g->is_pg_lent)
        gd_pgpool_shared_free(g->pg_shared);
    free(g->upstream_budgets);
    free(g->is_upstream_lent);
    free(g->kept_from);
    gd_router_free(g->router);
    gd_config_free(g->config);
    free(g);
}

gd_server_t *gd_server_new(gd_config_t *config, gd_router_t *router, gd_tls_ctx_t **tls)
{
    gd_server_t *s = gd_xcalloc(1, sizeof(*s));

    s->nworkers = config->threads;
    s->nlisten = config->nlisten;
    s->max_client_connections = config->max_client_connections != 0
                                    ? config->max_client_connections
                                    : default_max_client_connections();
    pthread_mutex_init(&s->ready_mutex, NULL);
    pthread_mutex_init(&s->wakeup_mutex, NULL);
    pthread_cond_init(&s->ready_cond, NULL);
    s->workers = gd_xcalloc(s->nworkers, sizeof(*s->workers));

    h2o_config_init(&s->globalconf);
    s->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("gatherd"));
    /* h2o refuses a Content-Length above it before reading the body, and a chunked body once
     * its decoded size reaches it (>=, so one byte more: a body of exactly the limit passes);
     * dispatch answers the one byte over with gatherd's own JSON 413. */
    s->globalconf.max_request_entity_size = config->max_request_body_bytes + 1;
    /* Turns off both HTTP/2 by prior knowledge and the h2c upgrade in h2o's HTTP/1 code. */
    s->globalconf.http1.upgrade_to_http2 = config->is_http2_enabled;
    /* HTTP/2 clients that keep a connection after GOAWAY are closed by the shutdown timeout. */
    s->globalconf.http2.graceful_shutdown_timeout = config->shutdown_timeout_ms;
    h2o_hostconf_t *hostconf =
        h2o_config_register_host(&s->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pathconf, sizeof(*h));
    h->on_req = on_req;
    struct error_filter *ef =
        (struct error_filter *)h2o_create_filter(&hostconf->fallback_path, sizeof(*ef));
    ef->super.on_setup_ostream = on_setup_error_ostream;
    ef->max_request_body_bytes = config->max_request_body_bytes;

    s->current = s->oldest = generation_new(s, config, router, tls);
    s->metrics = gd_xcalloc(s->nworkers, sizeof(*s->metrics));
    for (size_t i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];
        w->server = s;
        w->index = i;
        s->metrics[i] = gd_metrics_new(config, gd_outcome_names, GD_OUTCOME_COUNT);
        w->listeners = gd_xcalloc(config->nlisten, sizeof(*w->listeners));
        for (size_t j = 0; j < config->nlisten; j++)
            w->listeners[j].fd = -1;
    }
    return s;
}

static int open_listener(const gd_listen_conf_t *lc, int *ret_fd)
{
    int fd, on = 1, off = 0;

    fd = socket(lc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* One socket per thread on the same port: the kernel spreads connections evenly. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        (lc->addr.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) != 0) ||
        bind(fd, (const struct sockaddr *)&lc->addr, lc->addrlen) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int gd_server_listen(gd_server_t *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->nworkers; i++) {
        const gd_config_t *config = s->current->config;
        for (size_t j = 0; j < s->nlisten; j++) {
            int r = open_listener(&config->listen[j], &s->workers[i].listeners[j].fd);
            if (r != 0) {
                snprintf(err, errlen, "cannot listen on %s: %s", config->listen[j].text,
                         strerror(-r));
                return r;
            }
        }
    }
    return 0;
}

static void on_drain_check(uv_check_t *check);

/* A client connection's libuv handle. h2o takes the handle's data pointer for itself, so the
 * worker is found from the enclosing struct. */
struct connection {
    uv_tcp_t tcp;
    struct worker *worker;
    gd_readbound_conn_t bound;
};

/* The head of h2o 2.2.5's private struct st_h2o_uv_socket_t (lib/common/socket/uv-binding.c.h):
 * the socket and its libuv stream. A client socket's stream is the tcp handle of a struct
 * connection, which is checked (the stream's data and close callback) before it is used. */
struct uv_socket_head {
    h2o_socket_t super;
    struct {
        uv_stream_t *stream;
        uv_close_cb close_cb;
    } uv;
};

static void on_connection_closed(uv_handle_t *handle);

/* The connection of client socket @sock, or NULL when it is not one of ours. */
static struct connection *connection_of(h2o_socket_t *sock)
{
    struct uv_socket_head *head = (struct uv_socket_head *)sock;
    if (sock == NULL || head->uv.close_cb != on_connection_closed || head->uv.stream == NULL ||
        head->uv.stream->data != sock)
        return NULL;
    return H2O_STRUCT_FROM_MEMBER(struct connection, tcp, (uv_tcp_t *)head->uv.stream);
}

static gd_readbound_conn_t *bound_of(h2o_socket_t *sock)
{
    struct connection *c = connection_of(sock);
    return c != NULL ? &c->bound : NULL;
}

static void set_max_read_pause(struct worker *w)
{
    bool may_pause = !w->is_draining && !w->is_aborted;
    gd_readbound_set_max_pause(&w->read_bound,
                               may_pause ? w->view->gen->config->queue_timeout_ms : 0);
}

static void on_listener_readable(uv_poll_t *poll, int status, int events);

/* A listener accepts again unless something else keeps it resting. */
static void resume_listener(struct listener *l)
{
    struct worker *w = l->worker;
    if (l->is_open && !l->is_backing_off && !w->is_at_connection_cap && !w->is_draining &&
        uv_poll_start(&l->poll, UV_READABLE, on_listener_readable) != 0)
        gd_log_err("worker %zu: cannot resume accepting connections", w->index);
}

/* At max_client_connections the listeners stop polling: new clients wait in the kernel's
 * backlog (and its SYN queue beyond it), where they cost gatherd nothing, until a connection
 * closes. */
static void pause_at_connection_cap(struct worker *w)
{
    w->is_at_connection_cap = true;
    for (size_t i = 0; i < w->server->nlisten; i++)
        if (w->listeners[i].is_open)
            uv_poll_stop(&w->listeners[i].poll);
    if (!w->has_warned_cap)
        gd_log_warn("worker %zu: %zu client connections open (its share of "
                    "max_client_connections): new ones wait in the listen backlog",
                    w->index, w->connections);
    w->has_warned_cap = true;
}

static void resume_below_connection_cap(struct worker *w)
{
    w->is_at_connection_cap = false;
    for (size_t i = 0; i < w->server->nlisten; i++)
        resume_listener(&w->listeners[i]);
}

static void on_connection_closed(uv_handle_t *handle)
{
    struct connection *c = H2O_STRUCT_FROM_MEMBER(struct connection, tcp, (uv_tcp_t *)handle);
    struct worker *w = c->worker;

    gd_readbound_forget(&c->bound);
    w->connections--;
    free(c);
    if (w->is_at_connection_cap && w->connections < w->max_connections)
        resume_below_connection_cap(w);
    /* Close callbacks run after the loop's check phase: look again now rather than one poll
     * timeout later. */
    if (w->is_draining && !w->is_finished)
        on_drain_check(&w->drain_check);
}

static void on_backoff_end(gd_timer_t *timer)
{
    struct listener *l = H2O_STRUCT_FROM_MEMBER(struct listener, backoff, timer);

    l->is_backing_off = false;
    resume_listener(l);
}

/* accept() failed for want of descriptors or memory: the connections wait in the kernel's
 * backlog while the listener rests, and it says so once per episode, not once per turn. */
static void back_off(struct listener *l, int err)
{
    struct worker *w = l->worker;
    gd_timers_t *timers = gd_sched_timers(w->sched);

    if (l->is_backing_off || !l->is_open || w->is_draining)
        return;
    l->is_backing_off = true;
    uv_poll_stop(&l->poll);
    gd_timer_start(timers, &l->backoff, gd_timers_now(timers) + ACCEPT_BACKOFF_MS);
    gd_metrics_count_accept_backoff(w->server->metrics[w->index]);
    if (!w->has_warned_backoff)
        gd_log_warn("worker %zu: cannot accept connections (%s): pausing the listener for %d ms "
                    "each time (counted in gatherd_accept_backoffs_total)",
                    w->index, strerror(err), ACCEPT_BACKOFF_MS);
    w->has_warned_backoff = true;
}

/* Accepts up to @max connections queued on @l; returns how many. */
static size_t accept_some(struct listener *l, size_t max)
{
    struct worker *w = l->worker;
    size_t n = 0;

    for (; n < max; n++) {
        /* A drain accepts whatever is queued: those clients were accepted by the kernel. */
        if (w->connections >= w->max_connections && !w->is_draining) {
            pause_at_connection_cap(w);
            break;
        }
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == ECONNABORTED || errno == EINTR)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                back_off(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                gd_log_warn("accept failed: %s; retrying on the next readiness", strerror(errno));
            break;
        }
        struct connection *c = gd_xcalloc(1, sizeof(*c));
        c->worker = w;
        if (uv_tcp_init(&w->loop, &c->tcp) != 0) {
            gd_log_warn("cannot adopt an accepted connection; closing it");
            close(fd);
            free(c);
            continue;
        }
        if (uv_tcp_open(&c->tcp, fd) != 0) {
            gd_log_warn("cannot adopt an accepted connection; closing it");
            close(fd);
            uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free); /* tcp is c's first member */
            continue;
        }
        (void)uv_tcp_nodelay(&c->tcp, 1); /* best effort: answers are written whole */
        w->connections++;
        gd_readbound_conn_init(&w->read_bound, &c->bound, (uv_stream_t *)&c->tcp);
        h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_connection_closed);
        h2o_buffer_set_prototype(&sock->input, &w->client_input);
        h2o_accept(&w->accept_ctx, sock);
        gd_readbound_note_accepted(&c->bound, sock);
    }
    return n;
}

static void on_listener_readable(uv_poll_t *poll, int status, int events)
{
    struct listener *l = poll->data;
    if (status < 0) {
        gd_log_warn("listener poll error: %s", uv_strerror(status));
        return;
    }
    (void)accept_some(l, ACCEPT_BATCH);
}

/* Leaves the worker's loop; worker_main() tears down what h2o owns outside of any callback,
 * since h2o_context_dispose() runs the loop itself. */
static void finish_worker(struct worker *w)
{
    gd_server_t *s = w->server;

    uv_check_stop(&w->drain_check);
    uv_close((uv_handle_t *)&w->drain_check, NULL);
    gd_readbound_close(&w->read_bound);
    uv_close((uv_handle_t *)&w->drain_sweep, NULL);
    uv_close((uv_handle_t *)&w->heartbeat, NULL);
    uv_close((uv_handle_t *)&w->retire_timer, NULL); /* worker_main() frees what is retired */
    gd_slowloop_close(&w->slowloop);
    /* Under the lock, so that gd_server_abort() never signals a closed handle. */
    pthread_mutex_lock(&s->wakeup_mutex);
    w->is_wakeup_closed = true;
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    size_t ninspections = w->ninspections;
    gd_inspection_t *left[GD_SERVER_MAX_INSPECTIONS];
    memcpy(left, w->inspections, ninspections * sizeof(left[0]));
    w->ninspections = 0;
    pthread_mutex_unlock(&s->wakeup_mutex);
    for (size_t i = 0; i < ninspections; i++)
        gd_inspection_answer(left[i], w->index, json_pack("{s:b}", "stopped", 1));
    w->is_finished = true;
    uv_stop(&w->loop);
}

static void on_drain_check(uv_check_t *check)
{
    struct worker *w = check->data;
    /* Slots held include those granted to queued requests not yet told of it. */
    if (!w->is_finished && !w->are_listeners_closing && w->connections == 0 &&
        w->gather.line.held == 0 &&
        w->gather.line.waiting == 0)
        finish_worker(w);
}

/* Closes the HTTP/1 connections that have waited DRAIN_IDLE_GRACE_MS for a request with no byte
 * of one received: one idle for long when the drain began is closed at once (unless bytes are
 * readable), one accepted just now, or whose keep-alive answer was still being written, gets
 * its grace. HTTP/2 connections have had their GOAWAY. */
static void sweep_idle(struct worker *w)
{
    uint64_t now = h2o_now(&w->loop);
    (void)gd_h1idle_close(&w->ctx, now >= DRAIN_IDLE_GRACE_MS ? now - DRAIN_IDLE_GRACE_MS : 0);
}

/* Drops every SYN that reaches the listening socket @fd from now on (a classic BPF program on
 * the TCP header: SYN set, return 0), while the final ACKs of handshakes under way still pass.
 * Returns false when the kernel refuses the filter. */
static bool refuse_new_handshakes(int fd)
{
    /* A TCP socket's filter sees the segment from its TCP header on. */
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),           /* the flags byte */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x02, 0, 1), /* SYN? */
        BPF_STMT(BPF_RET | BPF_K, 0),                     /* dropped */
        BPF_STMT(BPF_RET | BPF_K, 0xffffffff),            /* kept whole */
    };
    struct sock_fprog prog = {GD_ARRAY_SIZE(code), code};

    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) == 0;
}

/* Accepts what the kernel has queued on the listeners, then closes them. Their SYNs have been
 * dropped for LISTENER_CLOSE_GRACE_MS, so that no handshake completes between the last
 * accept() and the close(), which would reset it after the client had sent its request (the
 * drain's last lost requests, about 1 in 16,000 under load). */
static void close_listeners(struct worker *w)
{
    w->are_listeners_closing = false;
    for (size_t i = 0; i < w->server->nlisten; i++) {
        struct listener *l = &w->listeners[i];
        if (!l->is_open)
            continue;
        uv_poll_stop(&l->poll);
        /* Whatever the kernel has already queued was accepted from the client's point of view:
         * it is served, not reset by the close. */
        while (accept_some(l, ACCEPT_BATCH) == ACCEPT_BATCH)
            ;
        l->is_open = false;
        /* Closed at once, not in the close callback: a connection the kernel completed between
         * the last accept and the close would be reset, so the window stays a few system calls
         * wide (and with the SYN filter, empty). uv_close() has already taken the descriptor
         * out of the loop's epoll set. */
        uv_close((uv_handle_t *)&l->poll, NULL);
        close(l->fd);
        l->fd = -1;
    }
}

static void on_drain_sweep(uv_timer_t *timer)
{
    struct worker *w = timer->data;
    if (w->are_listeners_closing && h2o_now(&w->loop) >= w->listeners_close_at)
        close_listeners(w);
    sweep_idle(w);
}

static void start_drain(struct worker *w)
{
    w->is_draining = true;
    w->gather.is_draining = true;
    bool is_filtered = true;
    for (size_t i = 0; i < w->server->nlisten; i++) {
        struct listener *l = &w->listeners[i];
        if (!l->is_open)
            continue;
        gd_timer_stop(gd_sched_timers(w->sched), &l->backoff);
        l->is_backing_off = false;
        if (!refuse_new_handshakes(l->fd)) {
            gd_log_debug("worker %zu: no SYN filter on a listener (%s)", w->index,
                         strerror(errno));
            is_filtered = false;
        }
        /* Accepting goes on, past the connection cap, until the close. */
        if (uv_poll_start(&l->poll, UV_READABLE, on_listener_readable) != 0)
            is_filtered = false;
    }
    if (is_filtered) {
        w->are_listeners_closing = true;
        w->listeners_close_at = h2o_now(&w->loop) + LISTENER_CLOSE_GRACE_MS;
    } else {
        close_listeners(w);
    }
    h2o_context_request_shutdown(&w->ctx);
    /* Paused connections are read again: their requests are served (with Connection: close),
     * and the idle ones among them closed by the sweep. */
    set_max_read_pause(w);
    /* Idle HTTP/1 keep-alive connections are closed now, the others once they are idle. */
    sweep_idle(w);
    GD_REQUIRE(uv_timer_start(&w->drain_sweep, on_drain_sweep, DRAIN_SWEEP_MS, DRAIN_SWEEP_MS) ==
               0);
    /* uv_check_start() fails only on a closing handle, which the drain check is not yet. */
    GD_REQUIRE(uv_check_start(&w->drain_check, on_drain_check) == 0);
}

static json_t *describe_requests(struct worker *w, size_t max_items)
{
    json_t *requests = json_array();
    size_t omitted = gd_gather_describe(&w->gather, requests, max_items);

    return json_pack("{s:I, s:I, s:I, s:o}", "in_flight", (json_int_t)w->gather.in_flight,
                     "queued", (json_int_t)w->gather.line.waiting, "omitted", (json_int_t)omitted,
                     "requests", requests);
}

static json_t *describe_pools(struct worker *w)
{
    const gd_config_t *config = w->view->gen->config;
    json_t *upstreams = json_array();

    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_upstream_stats_t us = gd_upstream_stats(w->view->upstreams[i]);
        json_array_append_new(upstreams,
                              json_pack("{s:s, s:I, s:I, s:I}", "name", config->upstreams[i].name,
                                        "idle", (json_int_t)us.idle, "busy", (json_int_t)us.busy,
                                        "waiting", (json_int_t)us.waiting));
    }
    json_t *part = json_pack("{s:o}", "upstreams", upstreams);
    if (w->view->pgpool != NULL) {
        gd_pgpool_stats_t ps = gd_pgpool_stats(w->view->pgpool);
        json_object_set_new(part, "postgres",
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "idle",
                                      (json_int_t)ps.idle, "busy", (json_int_t)ps.busy,
                                      "connecting", (json_int_t)ps.connecting, "broken",
                                      (json_int_t)ps.broken, "waiting", (json_int_t)ps.waiting,
                                      "batches", (json_int_t)ps.batches, "batched_queries",
                                      (json_int_t)ps.batched_queries, "resent_queries",
                                      (json_int_t)ps.resent_queries));
    }
    if (w->redis != NULL) {
        gd_redis_pool_stats_t rs = gd_redis_pool_stats(w->redis);
        json_object_set_new(part, "redis",
                            json_pack("{s:I, s:I, s:I, s:I}", "ready", (json_int_t)rs.ready,
                                      "connecting", (json_int_t)rs.connecting, "down",
                                      (json_int_t)rs.down, "pending", (json_int_t)rs.pending));
    }
    return part;
}

/* Answers the inspections posted to @w, on its own loop. */
static void answer_inspections(struct worker *w)
{
    gd_inspection_t *todo[GD_SERVER_MAX_INSPECTIONS];
    size_t n;

    pthread_mutex_lock(&w->server->wakeup_mutex);
    n = w->ninspections;
    memcpy(todo, w->inspections, n * sizeof(todo[0]));
    w->ninspections = 0;
    pthread_mutex_unlock(&w->server->wakeup_mutex);
    for (size_t i = 0; i < n; i++) {
        json_t *part = gd_inspection_what(todo[i]) == GD_INSPECT_REQUESTS
                           ? describe_requests(w, gd_inspection_max_items(todo[i]))
                           : describe_pools(w);
        gd_inspection_answer(todo[i], w->index, part);
    }
}

static void take_next_generation(struct worker *w);

static void on_wakeup(uv_async_t *async)
{
    struct worker *w = async->data;

    answer_inspections(w);
    take_next_generation(w);
    if (atomic_load(&w->want_drain) && !w->is_draining)
        start_drain(w);
    if (atomic_load(&w->want_abort) && !w->is_aborted) {
        w->is_aborted = true;
        gd_gather_abort_all(&w->gather);
        set_max_read_pause(w); /* what they send now is refused at once */
    }
}

static void init_worker(struct worker *w);
static size_t share_of(size_t total, size_t n, size_t i);

static void publish_gauges(struct worker *w)
{
    const gd_config_t *config = w->view->gen->config;
    gd_pgpool_t *pgpool = w->view->pgpool;
    bool is_pg_ready = pgpool == NULL || gd_pgpool_is_ready(pgpool);
    w->has_pg_been_ready |= is_pg_ready;
    gd_metrics_gauges_t g = {
        .requests_in_flight = w->gather.in_flight,
        .requests_queued = w->gather.line.waiting,
        .coroutines = gd_sched_live(w->sched),
        .connections = w->connections,
        .max_connections = w->max_connections,
        .unread_connections = gd_readbound_unread(&w->read_bound),
        .heartbeat_ms = uv_hrtime() / 1000000,
        .is_pg_ready = is_pg_ready,
        .has_pg_been_ready = w->has_pg_been_ready,
        .unsent_bytes = gd_outbox_bytes(w->outbox),
    };
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_upstream_stats_t us = gd_upstream_stats(w->view->upstreams[i]);
        gd_metrics_publish_upstream(w->server->metrics[w->index], config->upstreams[i].metrics_slot,
                                    &(gd_metrics_upstream_gauges_t){us.idle, us.busy, us.waiting,
                                                                    us.lookups,
                                                                    us.lookup_failures});
    }
    if (pgpool != NULL) {
        gd_pgpool_stats_t ps = gd_pgpool_stats(pgpool);
        g.pg_idle = ps.idle;
        g.pg_busy = ps.busy;
        g.pg_connecting = ps.connecting;
        g.pg_broken = ps.broken;
        g.pg_waiting = ps.waiting;
        g.pg_reconnects = ps.reconnects;
        g.pg_cancels = ps.cancels;
        g.pg_cancels_dropped = ps.cancels_dropped;
        g.pg_batches = ps.batches;
        g.pg_batched_queries = ps.batched_queries;
        g.pg_resent_queries = ps.resent_queries;
    }
    gd_metrics_publish(w->server->metrics[w->index], &g);
}

/* A thread that is idle after large answers gives their freed memory back to the system. glibc
 * keeps freed heap memory for reuse, and its mmap threshold rises to the size of the blocks
 * freed, so multi-megabyte answers come from the heap after the first one: RSS stayed where a
 * burst took it (after 40 concurrent 7 MB answers, 66 MB against 30 before). The trim
 * (base/heaptrim.c) gives back the free pages of every arena and the free end of this thread's
 * own. It runs when nothing is in flight on this thread, after it held TRIM_AFTER_BYTES of
 * answers at once, at most every TRIM_INTERVAL_MS. After such a burst it took 3 to 10 ms (39 ms
 * once) on the 2-core machine: on an idle loop, where a request that arrives meanwhile waits
 * that long. A low fixed mmap threshold, the other way to the same RSS, cost 25-30% of the
 * throughput of 7 MB answers (mapping and faulting in every large block). */
#define TRIM_AFTER_BYTES (4u << 20)
#define TRIM_INTERVAL_MS 1000

/* A burst is trimmed twice: what its connections and the other threads free after the first
 * trim (buffers of connections that close once their answer is read) is given back an interval
 * later. */
#define TRIMS_PER_BURST 2

static void trim_when_idle(struct worker *w)
{
    uint64_t now_ms = uv_now(&w->loop);

    if (now_ms < w->trimmed_at_ms + TRIM_INTERVAL_MS || w->gather.in_flight != 0 ||
        w->gather.line.waiting != 0 || gd_outbox_bytes(w->outbox) != 0)
        return;
    if (gd_outbox_take_peak(w->outbox) >= TRIM_AFTER_BYTES)
        w->trims_due = TRIMS_PER_BURST;
    if (w->trims_due == 0)
        return;
    w->trims_due--;
    uint64_t t0 = uv_hrtime();
    gd_heap_give_back();
    w->trimmed_at_ms = now_ms;
    gd_log_debug("worker %zu: gave free memory back to the system in %llu us", w->index,
                 (unsigned long long)((uv_hrtime() - t0) / 1000));
}

/* The C counterpart of asyncio's slow-callback warning: a timer that fires late measures how
 * long the loop was kept from looking at its timers. */
static void on_heartbeat(uv_timer_t *timer)
{
    struct worker *w = timer->data;
    uint64_t now = uv_hrtime();

    if (now > w->heartbeat_due_ns)
        gd_metrics_count_loop_lag(w->server->metrics[w->index], (now - w->heartbeat_due_ns) / 1000);
    w->heartbeat_due_ns = now + (uint64_t)HEARTBEAT_MS * 1000000;
    publish_gauges(w);
    trim_when_idle(w);
}

/* Drops a worker's reference to @g; the last one tells the owner, which frees generations
 * oldest first. */
static void generation_unref(gd_server_t *s, struct generation *g)
{
    if (atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    pthread_mutex_lock(&s->wakeup_mutex);
    if (!s->is_retired_async_closed)
        uv_async_send(&s->retired_async);
    pthread_mutex_unlock(&s->wakeup_mutex);
}

static void on_view_unused(gd_gather_view_t *gv);

/* Worker @w's view of generation @g, keeping the pools of @prev (its current view, or NULL at
 * the start) that @g and the generations between kept: an upstream's when its settings did
 * not change, the Postgres pool when "postgres" and the statements did not. */
static struct view *view_new(struct worker *w, struct generation *g, struct view *prev)
{
    gd_server_t *s = w->server;
    const gd_config_t *config = g->config;
    size_t nthreads = s->nworkers;
    struct view *v = gd_xcalloc(1, sizeof(*v));
    gd_timers_t *timers = gd_sched_timers(w->sched);

    v->worker = w;
    v->gen = g;
    v->upstreams = gd_xcalloc(config->nupstreams + 1, sizeof(*v->upstreams));
    v->is_upstream_given = gd_xcalloc(config->nupstreams + 1, sizeof(*v->is_upstream_given));
    for (size_t i = 0; i < config->nupstreams; i++) {
        const gd_upstream_conf_t *uc = &config->upstreams[i];
        size_t from = prev != NULL ? i : KEPT_NONE;
        for (struct generation *x = g; prev != NULL && x != prev->gen && from != KEPT_NONE;
             x = x->older)
            from = x->kept_from[from];
        if (from != KEPT_NONE) {
            v->upstreams[i] = prev->upstreams[from];
            prev->is_upstream_given[from] = true;
            gd_upstream_set_conf(v->upstreams[i], uc);
            continue;
        }
        gd_budget_t *budget = g->upstream_budgets[i];
        /* Under a budget any thread may hold all of the cap's connections. */
        size_t cap = budget != NULL ? uc->max_connections
                                    : share_of(uc->max_connections, nthreads, w->index);
        v->upstreams[i] = gd_upstream_new(uc, &w->loop, timers, cap, budget, g->tls[i]);
        gd_upstream_use_redis(v->upstreams[i], w->redis);
    }
    if (config->nstatements > 0) {
        v->pg_conf = (gd_pgpool_conf_t){
            .conninfo = config->postgres.conninfo,
            /* Under a shared count any thread may hold all of pool_size's connections. */
            .size = g->pg_shared != NULL ? config->postgres.pool_size
                                         : share_of(config->postgres.pool_size, nthreads, w->index),
            .acquire_timeout_ms = config->postgres.acquire_timeout_ms,
            .connect_timeout_ms = config->postgres.connect_timeout_ms,
            .statements = (const char *const *)config->statements,
            .statement_nparams = config->statement_nparams,
            .statement_is_batchable = config->statement_is_batchable,
            .nstatements = config->nstatements,
            .application_name = "gatherd",
            .statement_timeout_ms = g->statement_timeout_ms,
            .shared = g->pg_shared,
            .is_unprepared = !config->postgres.is_prepared,
            .retry_budget = config->postgres.retry_budget,
            /* Kept through a reload only with the same postgres section (config/carry.c):
             * the pool's batches keep the depth they were made with. */
            .pipeline_depth = config->postgres.pipeline_depth,
        };
        bool is_kept = prev != NULL && prev->pgpool != NULL;
        for (struct generation *x = g; is_kept && x != prev->gen; x = x->older)
            is_kept = x->is_pg_kept;
        if (is_kept) {
            v->pgpool = prev->pgpool;
            prev->is_pg_given = true;
            gd_pgpool_set_conf(v->pgpool, &v->pg_conf);
        } else {
            v->pgpool = gd_pgpool_new(&v->pg_conf, &w->loop, timers);
        }
    }
    /* Flights are not handed on: a call of the new config never waits for one of the old. */
    if (config->cache_store != NULL) {
        v->flights = gd_flights_new(config->cache_store, w->sched);
        gd_flights_use_redis(v->flights, w->redis);
    }
    v->sources = gd_xcalloc(config->nupstreams + 1, sizeof(*v->sources));
    for (size_t i = 0; i < config->nupstreams; i++)
        v->sources[i] = (gd_source_t){&gd_upstream_call_ops, v->upstreams[i], v->flights};
    v->sources[config->nupstreams] = (gd_source_t){&gd_pgpool_query_ops, v->pgpool, v->flights};
    v->gather =
        (gd_gather_view_t){.config = config, .sources = v->sources, .on_unused = on_view_unused};
    gd_metrics_prepare(s->metrics[w->index], config);
    return v;
}

/* Closes what @v owns and did not hand on: its flights first (their exchanges use the pools). */
static void view_close(struct view *v)
{
    const gd_config_t *config = v->gen->config;

    v->is_closing = true;
    if (v->flights != NULL)
        gd_flights_close(v->flights);
    for (size_t i = 0; i < config->nupstreams; i++)
        if (!v->is_upstream_given[i])
            gd_upstream_close(v->upstreams[i]);
    if (v->pgpool != NULL && !v->is_pg_given)
        gd_pgpool_close(v->pgpool);
}

/* Whether @v's closed pools have finished closing (the loop has turned since view_close()). */
static bool view_is_settled(const struct view *v)
{
    const gd_config_t *config = v->gen->config;

    for (size_t i = 0; i < config->nupstreams; i++)
        if (!v->is_upstream_given[i] && !gd_upstream_is_settled(v->upstreams[i]))
            return false;
    return v->pgpool == NULL || v->is_pg_given || gd_pgpool_is_settled(v->pgpool);
}

/* Frees @v, closed and settled, and drops its reference to its generation. */
static void view_free(struct view *v)
{
    const gd_config_t *config = v->gen->config;

    gd_gather_view_dispose(&v->gather);
    v->flights = gd_flights_free(v->flights);
    if (!v->is_pg_given)
        v->pgpool = gd_pgpool_free(v->pgpool);
    for (size_t i = 0; i < config->nupstreams; i++)
        if (!v->is_upstream_given[i])
            v->upstreams[i] = gd_upstream_free(v->upstreams[i]);
    free(v->upstreams);
    free(v->is_upstream_given);
    free(v->sources);
    generation_unref(v->worker->server, v->gen);
    free(v);
}

/* How often the worker looks again at a retired view whose pools are still closing. */
#define RETIRE_POLL_MS 10

/* Closes the retired views on a turn of the loop's own (never from inside a request's end),
 * then frees them once their pools have finished closing. */
static void on_retire_timer(uv_timer_t *timer)
{
    struct worker *w = timer->data;
    struct view **link = &w->retired;

    while (*link != NULL) {
        struct view *v = *link;
        if (!v->is_closing) {
            view_close(v);
            link = &v->next_retired;
        } else if (view_is_settled(v)) {
            *link = v->next_retired;
            view_free(v);
        } else {
            link = &v->next_retired;
        }
    }
    if (w->retired != NULL)
        uv_timer_start(&w->retire_timer, on_retire_timer, RETIRE_POLL_MS, 0);
}

static void on_view_unused(gd_gather_view_t *gv)
{
    struct view *v = (struct view *)gv;
    struct worker *w = v->worker;

    v->next_retired = w->retired;
    w->retired = v;
    if (!uv_is_active((uv_handle_t *)&w->retire_timer) &&
        !uv_is_closing((uv_handle_t *)&w->retire_timer))
        uv_timer_start(&w->retire_timer, on_retire_timer, 0, 0);
}

/* Serves the generation a reload posted, if any: new requests start under the new view,
 * requests in flight finish under theirs. */
static void take_next_generation(struct worker *w)
{
    struct generation *g = atomic_exchange(&w->next_gen, NULL);

    if (g == NULL || w->is_finished)
        return;
    struct generation *old = w->view->gen;
    struct view *v = view_new(w, g, w->view);
    /* Generations posted and replaced before this worker took them: their reference is this
     * worker's to drop (they are newer than old, so none is freed while old is held). */
    for (struct generation *x = g->older; x != old; x = x->older)
        generation_unref(w->server, x);
    w->view = v;
    gd_gather_ctx_switch(&w->gather, &v->gather);
    set_max_read_pause(w);
    publish_gauges(w);
    gd_log_debug("worker %zu: serving config %s", w->index, g->config->hash);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    gd_server_t *s = w->server;

    /* Everything a worker owns is made on its own thread: the scheduler is the thread's. */
    init_worker(w);
    pthread_mutex_lock(&s->ready_mutex);
    s->nready++;
    pthread_cond_signal(&s->ready_cond);
    pthread_mutex_unlock(&s->ready_mutex);

    while (!w->is_finished)
        uv_run(&w->loop, UV_RUN_DEFAULT);

    /* HTTP/2's graceful shutdown leaves its GOAWAY timer linked even when every connection has
     * closed; h2o_context_dispose() asserts that no timer is. */
    if (h2o_timeout_is_linked(&w->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&w->ctx.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&w->ctx);
    /* Every connection is closed and every request disposed of: nothing is tracked. */
    w->gather.responder.outbox = NULL;
    w->outbox = gd_outbox_free(w->outbox);
    /* A generation posted after the last turn, and those it replaced, are this worker's to
     * drop too (newer than the one it serves, so still there). */
    struct generation *posted = atomic_exchange(&w->next_gen, NULL);
    for (; posted != NULL && posted != w->view->gen; posted = posted->older)
        generation_unref(s, posted);
    /* The current view joins the retired ones (none holds a request), and all close. */
    w->view->next_retired = w->retired;
    w->retired = w->view;
    w->view = NULL;
    for (struct view *v = w->retired; v != NULL; v = v->next_retired)
        if (!v->is_closing)
            view_close(v);
    if (w->redis != NULL)
        gd_redis_close(w->redis); /* after the calls that may wait for it */
    gd_hangup_close(w->gather.hangup);
    uv_run(&w->loop, UV_RUN_DEFAULT); /* lets the handles closed above finish closing */
    gd_gather_ctx_dispose(&w->gather);
    w->gather.hangup = gd_hangup_free(w->gather.hangup);
    for (struct view *v = w->retired; v != NULL; v = v->next_retired)
        v->flights = gd_flights_free(v->flights);
    w->sched = gd_sched_free(w->sched);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    while (w->retired != NULL) {
        struct view *v = w->retired;
        w->retired = v->next_retired;
        view_free(v);
    }
    w->redis = gd_redis_free(w->redis);
    gd_sockbuf_prototype_dispose(&w->client_input); /* every client socket is gone */
    int r = uv_loop_close(&w->loop);
    if (r != 0)
        gd_log_warn("worker %zu: event loop closed with handles open (%s)", w->index,
                    uv_strerror(r));
    /* Only the last worker signals: the owner closes the handle once all have stopped, and an
     * earlier worker's send could otherwise land on a closing handle. */
    if (atomic_fetch_add(&s->nstopped, 1) + 1 == s->nworkers)
        uv_async_send(&s->stopped_async);
    return NULL;
}

/* Frees the generations no worker holds any more, oldest first (each may have lent to the next
 * what it still refers to); the current one stays. On the owner's loop. */
static void free_retired_generations(gd_server_t *s)
{
    while (s->oldest != s->current && atomic_load(&s->oldest->refs) == 0) {
        struct generation *g = s->oldest;
        s->oldest = g->newer;
        s->oldest->older = NULL;
        gd_log_info("config %s: its last request has ended; freed", g->config->hash);
        generation_free(g);
    }
}

static void on_retired_async(uv_async_t *async)
{
    free_retired_generations(async->data);
}

static void on_stopped_async(uv_async_t *async)
{
    gd_server_t *s = async->data;
    if (atomic_load(&s->nstopped) == s->nworkers && s->on_stopped != NULL) {
        gd_server_stopped_cb cb = s->on_stopped;
        s->on_stopped = NULL;
        uv_close((uv_handle_t *)&s->stopped_async, NULL);
        pthread_mutex_lock(&s->wakeup_mutex);
        s->is_retired_async_closed = true;
        uv_close((uv_handle_t *)&s->retired_async, NULL);
        pthread_mutex_unlock(&s->wakeup_mutex);
        cb(s, s->on_stopped_data);
    }
}

/* Worker @i's part of a process-wide budget of @total split over @n workers: even shares,
 * the remainder to the first workers, and at least one each (a total smaller than @n is
 * overshot: upstream and Postgres connections then use a process-wide count instead). */
static size_t share_of(size_t total, size_t n, size_t i)
{
    size_t share = total / n + (i < total % n ? 1 : 0);
    return share > 0 ? share : 1;
}

/* Sets up everything a worker owns, on the worker's thread. */
static void init_worker(struct worker *w)
{
    gd_server_t *s = w->server;
    const gd_config_t *config = s->oldest->config; /* the first: nothing reloads before start */
    size_t nthreads = s->nworkers;

    GD_REQUIRE(uv_loop_init(&w->loop) == 0);
    h2o_context_init(&w->ctx, &w->loop, &s->globalconf);
    gd_sockbuf_prototype_init(&w->client_input, CLIENT_INPUT_BUFFER_BYTES);
    w->accept_ctx = (h2o_accept_ctx_t){.ctx = &w->ctx, .hosts = s->globalconf.hosts};

    size_t max_in_flight = share_of(config->max_requests_in_flight, nthreads, w->index);
    w->max_connections = share_of(s->max_client_connections, nthreads, w->index);
    /* One coroutine more than slots: a finishing request starts the next queued one before its
     * own coroutine has returned. */
    w->sched = gd_sched_new(&w->loop, config->coroutine_stack_bytes, max_in_flight + 1);
    GD_REQUIRE(w->sched != NULL);
    /* "redis" is restart-only (config/carry.c): the connections serve every view. */
    if (s->oldest->config->redis != NULL)
        w->redis = gd_redis_new(s->oldest->config->redis, &w->loop, gd_sched_timers(w->sched));
    w->view = view_new(w, s->oldest, NULL);
    GD_REQUIRE(uv_timer_init(&w->loop, &w->retire_timer) == 0);
    w->retire_timer.data = w;
    w->gather = (gd_gather_ctx_t){.metrics = s->metrics[w->index],
                                  .loop = &w->loop,
                                  .sched = w->sched,
                                  .hangup = gd_hangup_new(&w->loop),
                                  .redis = w->redis};
    gd_gather_ctx_switch(&w->gather, &w->view->gather);
    gd_gather_ctx_init(&w->gather, max_in_flight);
    w->outbox = gd_outbox_new(&(gd_outbox_limits_t){config->write_timeout_ms,
                                                    config->max_unsent_bytes_per_connection,
                                                    config->max_unsent_bytes},
                              gd_sched_timers(w->sched), s->metrics[w->index], &s->unsent_bytes);
    w->gather.responder.outbox = w->outbox;

    GD_REQUIRE(uv_async_init(&w->loop, &w->wakeup, on_wakeup) == 0);
    w->wakeup.data = w;
    GD_REQUIRE(uv_check_init(&w->loop, &w->drain_check) == 0);
    w->drain_check.data = w;
    gd_readbound_init(&w->read_bound, &w->loop, &w->ctx, &w->gather.line, bound_of);
    set_max_read_pause(w);
    GD_REQUIRE(uv_timer_init(&w->loop, &w->drain_sweep) == 0);
    w->drain_sweep.data = w;
    GD_REQUIRE(uv_timer_init(&w->loop, &w->heartbeat) == 0);
    w->heartbeat.data = w;
    w->heartbeat_due_ns = uv_hrtime() + (uint64_t)HEARTBEAT_MS * 1000000;
    uv_timer_start(&w->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    gd_slowloop_start(&w->slowloop, &w->loop, w->sched, s->metrics[w->index],
                      config->slow_loop_ms);
    publish_gauges(w);
    for (size_t i = 0; i < s->nlisten; i++) {
        struct listener *l = &w->listeners[i];
        l->worker = w;
        GD_REQUIRE(uv_poll_init(&w->loop, &l->poll, l->fd) == 0);
        l->poll.data = l;
        l->is_open = true;
        gd_timer_init(&l->backoff, on_backoff_end);
        GD_REQUIRE(uv_poll_start(&l->poll, UV_READABLE, on_listener_readable) == 0);
    }
}

int gd_server_start(gd_server_t *s, uv_loop_t *main_loop, gd_server_stopped_cb on_stopped,
                    void *data)
{
    s->on_stopped = on_stopped;
    s->on_stopped_data = data;
    GD_REQUIRE(uv_async_init(main_loop, &s->stopped_async, on_stopped_async) == 0);
    s->stopped_async.data = s;
    GD_REQUIRE(uv_async_init(main_loop, &s->retired_async, on_retired_async) == 0);
    s->retired_async.data = s;

    for (size_t i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];
        int r;
        if ((r = pthread_create(&w->thread, NULL, worker_main, w)) != 0)
            return -r;
        w->has_thread = true;
    }
    /* Drain and abort talk to the workers' async handles: wait until they all exist. */
    pthread_mutex_lock(&s->ready_mutex);
    while (s->nready < s->nworkers)
        pthread_cond_wait(&s->ready_cond, &s->ready_mutex);
    pthread_mutex_unlock(&s->ready_mutex);
    return 0;
}

static void wake_workers(gd_server_t *s)
{
    pthread_mutex_lock(&s->wakeup_mutex);
    for (size_t i = 0; i < s->nworkers; i++)
        if (!s->workers[i].is_wakeup_closed)
            uv_async_send(&s->workers[i].wakeup);
    pthread_mutex_unlock(&s->wakeup_mutex);
}

void gd_server_drain(gd_server_t *s)
{
    for (size_t i = 0; i < s->nworkers; i++)
        atomic_store(&s->workers[i].want_drain, true);
    wake_workers(s);
}

void gd_server_abort(gd_server_t *s)
{
    for (size_t i = 0; i < s->nworkers; i++)
        atomic_store(&s->workers[i].want_abort, true);
    wake_workers(s);
}

int gd_server_inspect(gd_server_t *s, gd_inspection_t *in)
{
    size_t nstopped = 0;
    bool *is_stopped = gd_xcalloc(s->nworkers, sizeof(*is_stopped));

    pthread_mutex_lock(&s->wakeup_mutex);
    for (size_t i = 0; i < s->nworkers; i++) {
        if (s->workers[i].ninspections == GD_SERVER_MAX_INSPECTIONS) {
            pthread_mutex_unlock(&s->wakeup_mutex);
            free(is_stopped);
            return -EBUSY;
        }
    }
    for (size_t i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];
        if (w->is_wakeup_closed) {
            is_stopped[i] = true;
            nstopped++;
            continue;
        }
        w->inspections[w->ninspections++] = gd_inspection_hold(in);
        uv_async_send(&w->wakeup);
    }
    pthread_mutex_unlock(&s->wakeup_mutex);
    /* Outside the lock: the answer tells the asker, which may take locks of its own. */
    for (size_t i = 0; nstopped > 0 && i < s->nworkers; i++)
        if (is_stopped[i])
            gd_inspection_answer(gd_inspection_hold(in), i, json_pack("{s:b}", "stopped", 1));
    free(is_stopped);
    return 0;
}

int gd_server_reload(gd_server_t *s, gd_config_t *config, gd_router_t *router, gd_tls_ctx_t **tls,
                     gd_server_reload_t *ret)
{
    struct generation *cur = s->current;
    size_t finishing = 0;

    for (struct generation *g = s->oldest; g != cur; g = g->newer)
        finishing++;
    if (finishing >= GD_CONFIG_MAX_FINISHING)
        return -EBUSY;
    gd_config_carry(config, cur->config);
    struct generation *g = generation_new(s, config, router, tls);
    *ret = (gd_server_reload_t){0};
    for (size_t i = 0; i < config->nupstreams; i++) {
        const gd_upstream_conf_t *b = &config->upstreams[i];
        const gd_upstream_conf_t *a = gd_config_find_upstream(cur->config, b->name);
        if (a == NULL || !gd_config_upstream_is_same(cur->config, a, config, b) ||
            !gd_tls_ctx_is_same_files(cur->tls[a->index], g->tls[i])) {
            ret->upstreams_new++;
            continue;
        }
        /* The pools go on, with the TLS context and connection budget they use. */
        g->kept_from[i] = a->index;
        gd_tls_ctx_free(g->tls[i]);
        g->tls[i] = cur->tls[a->index];
        gd_budget_free(g->upstream_budgets[i]);
        g->upstream_budgets[i] = cur->upstream_budgets[a->index];
        cur->is_upstream_lent[a->index] = true;
        ret->upstreams_kept++;
    }
    ret->upstreams_closed = cur->config->nupstreams - ret->upstreams_kept;
    if (cur->config->nstatements > 0 && config->nstatements > 0 &&
        gd_config_postgres_is_same(cur->config, config) &&
        cur->statement_timeout_ms == g->statement_timeout_ms) {
        g->is_pg_kept = true;
        gd_pgpool_shared_free(g->pg_shared);
        g->pg_shared = cur->pg_shared;
        cur->is_pg_lent = true;
        ret->is_pg_kept = true;
    }
    g->older = cur;
    cur->newer = g;
    s->current = g;
    for (size_t i = 0; i < s->nworkers; i++) {
        /* A generation posted before and not yet taken is replaced: the worker drops it when
         * it takes this one (take_next_generation()). */
        atomic_store(&s->workers[i].next_gen, g);
    }
    wake_workers(s);
    atomic_fetch_sub(&cur->refs, 1); /* no longer the current one */
    free_retired_generations(s);
    return 0;
}

const gd_config_t *gd_server_config(const gd_server_t *s)
{
    return s->current->config;
}

size_t gd_server_configs_finishing(const gd_server_t *s)
{
    size_t n = 0;
    for (struct generation *g = s->oldest; g != s->current; g = g->newer)
        n++;
    return n;
}

const gd_metrics_t *const *gd_server_metrics(const gd_server_t *s, size_t *ret_n)
{
    *ret_n = s->nworkers;
    return (const gd_metrics_t *const *)s->metrics;
}

gd_server_t *gd_server_free(gd_server_t *s)
{
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];
        if (w->has_thread)
            pthread_join(w->thread, NULL);
        for (size_t j = 0; j < s->nlisten; j++)
            if (w->listeners[j].fd >= 0)
                close(w->listeners[j].fd);
        free(w->listeners);
    }
    free(s->workers);
    /* Every worker has stopped: each generation goes, oldest first. */
    while (s->oldest != NULL) {
        struct generation *g = s->oldest;
        s->oldest = g->newer;
        generation_free(g);
    }
    for (size_t i = 0; i < s->nworkers; i++)
        gd_metrics_free(s->metrics[i]);
    free(s->metrics);
    h2o_config_dispose(&s->globalconf);
    pthread_mutex_destroy(&s->ready_mutex);
    pthread_mutex_destroy(&s->wakeup_mutex);
    pthread_cond_destroy(&s->ready_cond);
    free(s);
    return NULL;
}
