#include "upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

enum call_state {
    CALL_WAITING = 1, /* in line for a connection */
    CALL_CONNECTING,  /* holds a connection slot, no connection yet */
    CALL_EXCHANGING,  /* request sent or being sent, waiting for the head or reading the body */
    CALL_DONE,
};

struct gd_upstream {
    const gd_upstream_conf_t *conf;
    uv_loop_t *loop;
    gd_timers_t *timers;
    h2o_socketpool_t pool;
    /* h2o's per-phase inactivity timeout: gatherd times every call with its own deadline, so
     * this is only a backstop and set to the longest duration a config allows. */
    h2o_timeout_t io_timeout;
    h2o_http1client_ctx_t client_ctx;
    size_t max_connections, busy;
    gd_upstream_call_t *waiting_head, *waiting_tail;
    size_t waiting;
    char *host_header;
    bool is_closed;
    /* Hands freed connection slots to waiting calls on the next loop iteration, once h2o has
     * put the finished call's connection back in the pool for them to reuse. */
    gd_timer_t dispatch_timer;
};

static void connect_now(gd_upstream_call_t *call);
static void dequeue(gd_upstream_t *u, gd_upstream_call_t *call);

static void on_dispatch_timer(gd_timer_t *timer)
{
    gd_upstream_t *u = H2O_STRUCT_FROM_MEMBER(gd_upstream_t, dispatch_timer, timer);

    while (u->waiting_head != NULL && u->busy < u->max_connections) {
        gd_upstream_call_t *next = u->waiting_head;
        dequeue(u, next);
        connect_now(next);
    }
}

gd_upstream_t *gd_upstream_new(const gd_upstream_conf_t *conf, uv_loop_t *loop,
                               h2o_multithread_receiver_t *getaddr_receiver, gd_timers_t *timers,
                               size_t max_connections)
{
    gd_upstream_t *u = gd_xcalloc(1, sizeof(*u));
    char hostport[300];
    bool is_ipv6 = strchr(conf->host, ':') != NULL;

    u->conf = conf;
    u->loop = loop;
    u->timers = timers;
    u->max_connections = max_connections > 0 ? max_connections : 1;
    gd_timer_init(&u->dispatch_timer, on_dispatch_timer);
    h2o_timeout_init(loop, &u->io_timeout, GD_CONFIG_MAX_DURATION_MS);
    u->client_ctx = (h2o_http1client_ctx_t){.loop = loop,
                                            .getaddr_receiver = getaddr_receiver,
                                            .io_timeout = &u->io_timeout};

    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM},
                    *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)conf->port);
    /* A numeric host needs no resolver, and AI_NUMERICHOST guarantees that this call does not
     * block; a name is resolved by h2o's resolver threads on every new connection. */
    if (conf->is_host_numeric && getaddrinfo(conf->host, port, &hints, &ai) == 0) {
        h2o_socketpool_init_by_address(&u->pool, ai->ai_addr, ai->ai_addrlen, 0, u->max_connections);
        freeaddrinfo(ai);
    } else {
        h2o_socketpool_init_by_hostport(&u->pool, h2o_iovec_init(conf->host, strlen(conf->host)),
                                        conf->port, 0, u->max_connections);
    }
    /* Mandatory in 2.2.5: without it the first pooled request dereferences a NULL loop. */
    h2o_socketpool_set_timeout(&u->pool, loop, conf->keepalive_timeout_ms);

    if (conf->port == 80)
        snprintf(hostport, sizeof(hostport), is_ipv6 ? "[%s]" : "%s", conf->host);
    else
        snprintf(hostport, sizeof(hostport), is_ipv6 ? "[%s]:%u" : "%s:%u", conf->host,
                 (unsigned)conf->port);
    u->host_header = gd_xstrdup(hostport);
    return u;
}

void gd_upstream_close(gd_upstream_t *u)
{
    GD_REQUIRE(u->busy == 0 && u->waiting == 0);
    if (u->is_closed)
        return;
    gd_timer_stop(u->timers, &u->dispatch_timer);
    u->is_closed = true;
    h2o_socketpool_dispose(&u->pool);
    h2o_timeout_dispose(u->loop, &u->io_timeout);
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
    size_t idle = 0;

    if (!u->is_closed) {
        /* The pool's list is h2o's, guarded by its mutex (uncontended: the pool is per thread). */
        pthread_mutex_lock(&u->pool._shared.mutex);
        for (h2o_linklist_t *l = u->pool._shared.sockets.next; l != &u->pool._shared.sockets;
             l = l->next)
            idle++;
        pthread_mutex_unlock(&u->pool._shared.mutex);
    }
    return (gd_upstream_stats_t){.idle = idle, .busy = u->busy, .waiting = u->waiting};
}

static uint64_t elapsed_ms(const gd_upstream_call_t *call)
{
    return (uv_hrtime() - call->started_at_ns) / 1000000;
}

static void enqueue(gd_upstream_t *u, gd_upstream_call_t *call)
{
    call->_next_waiting = NULL;
    call->_prev_waiting = u->waiting_tail;
    if (u->waiting_tail != NULL)
        u->waiting_tail->_next_waiting = call;
    else
        u->waiting_head = call;
    u->waiting_tail = call;
    u->waiting++;
}

static void dequeue(gd_upstream_t *u, gd_upstream_call_t *call)
{
    if (call->_prev_waiting != NULL)
        call->_prev_waiting->_next_waiting = call->_next_waiting;
    else
        u->waiting_head = call->_next_waiting;
    if (call->_next_waiting != NULL)
        call->_next_waiting->_prev_waiting = call->_prev_waiting;
    else
        u->waiting_tail = call->_prev_waiting;
    u->waiting--;
}

/* Ends @call with @outcome: releases its connection slot (handing it to the next call in line)
 * and reports the task. Reporting may switch into the request coroutine, which may free @call,
 * so it comes last. */
static void finish(gd_upstream_call_t *call, gd_call_outcome_t outcome, int status,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void finish(gd_upstream_call_t *call, gd_call_outcome_t outcome, int status,
                   const char *fmt, ...)
{
    gd_upstream_t *u = call->_upstream;
    bool had_slot = call->_state == CALL_CONNECTING || call->_state == CALL_EXCHANGING;

    gd_timer_stop(u->timers, &call->_timer);
    if (call->_state == CALL_WAITING)
        dequeue(u, call);
    call->_state = CALL_DONE;
    call->_client = NULL;
    call->result.outcome = outcome;
    call->result.status = status;
    call->result.elapsed_ms = elapsed_ms(call);
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(call->result.message, sizeof(call->result.message), fmt, ap);
        va_end(ap);
    }
    if (had_slot) {
        u->busy--;
        if (u->waiting_head != NULL && !gd_timer_is_active(&u->dispatch_timer))
            gd_timer_start(u->timers, &u->dispatch_timer, 0);
    }
    gd_task_done(&call->_task);
}

/* Stops whatever @call is doing without any h2o callback following. */
static void abandon(gd_upstream_call_t *call)
{
    if (call->_client != NULL) {
        /* Closes the socket instead of pooling it: a half-read answer must never reach the
         * next call on that connection. */
        h2o_http1client_cancel(call->_client);
        call->_client = NULL;
    }
}

static int on_body(h2o_http1client_t *client, const char *errstr)
{
    gd_upstream_call_t *call = client->data;
    const gd_upstream_conf_t *conf = call->_upstream->conf;
    h2o_buffer_t *in = client->sock->input;

    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        finish(call, GD_CALL_IO, call->result.status, "connection broken while reading the body (%s)",
               errstr);
        return -1;
    }
    if (in->size > conf->max_body_bytes) {
        finish(call, GD_CALL_TOO_LARGE, call->result.status,
               "body larger than max_body_bytes (%zu)", conf->max_body_bytes);
        return -1; /* h2o closes the connection: the rest of the body is never read */
    }
    if (errstr == NULL)
        return 0;

    int status = call->result.status;
    if (status < 200 || status > 299) {
        /* The body was read to the end only to keep the connection reusable. */
        finish(call, GD_CALL_STATUS, status, "upstream answered %d", status);
        return 0;
    }
    /* Checked without building a tree: the bytes go into the answer as they are. */
    if (!gd_json_is_valid(in->bytes, in->size)) {
        finish(call, GD_CALL_INVALID_JSON, status, "the body (%zu bytes) is not one valid JSON text",
               in->size);
        return 0;
    }
    call->_body = gd_xmalloc(in->size);
    memcpy(call->_body, in->bytes, in->size);
    call->result.body = call->_body;
    call->result.body_len = in->size;
    finish(call, GD_CALL_OK, status, NULL);
    return 0;
}

static bool is_idempotent(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
           strcmp(method, "PUT") == 0 || strcmp(method, "DELETE") == 0;
}

static h2o_http1client_body_cb on_head(h2o_http1client_t *client, const char *errstr,
                                       int minor_version, int status, h2o_iovec_t msg,
                                       h2o_header_t *headers, size_t num_headers, int rlen)
{
    gd_upstream_call_t *call = client->data;
    const gd_upstream_conf_t *conf = call->_upstream->conf;

    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        /* A pooled connection that the upstream closed just as it was reused fails before any
         * byte of an answer: an idempotent request is sent once more on a fresh connection. */
        bool is_nothing_received = client->sock == NULL || client->sock->input->size == 0;
        if (!call->_has_retried && is_nothing_received && is_idempotent(call->method) &&
            gd_timers_now(call->_upstream->timers) < call->deadline_ms) {
            call->_has_retried = true;
            call->_client = NULL; /* h2o frees the old client after this callback */
            call->_upstream->busy--;    /* connect_now() takes the slot again */
            connect_now(call);
            return NULL;
        }
        finish(call, GD_CALL_IO, 0, "no valid answer (%s)", errstr);
        return NULL;
    }
    call->result.status = status;
    for (size_t i = 0; i < num_headers; i++) {
        if (headers[i].name == &H2O_TOKEN_CONTENT_LENGTH->buf) {
            size_t len = h2o_strtosize(headers[i].value.base, headers[i].value.len);
            if (len != SIZE_MAX && len > conf->max_body_bytes) {
                finish(call, GD_CALL_TOO_LARGE, status,
                       "body of %zu bytes is larger than max_body_bytes (%zu)", len,
                       conf->max_body_bytes);
                return NULL;
            }
        }
    }
    if (errstr == h2o_http1client_error_is_eos) {
        /* No body at all (HEAD, 204, 304). */
        if (status < 200 || status > 299)
            finish(call, GD_CALL_STATUS, status, "upstream answered %d", status);
        else if (strcmp(call->method, "HEAD") == 0 || status == 204) {
            call->result.body = "null";
            call->result.body_len = 4;
            finish(call, GD_CALL_OK, status, NULL);
        } else {
            finish(call, GD_CALL_INVALID_JSON, status, "empty body with status %d", status);
        }
        return NULL;
    }
    return on_body;
}

static h2o_http1client_head_cb on_connect(h2o_http1client_t *client, const char *errstr,
                                          h2o_iovec_t **reqbufs, size_t *reqbufcnt,
                                          int *method_is_head)
{
    gd_upstream_call_t *call = client->data;

    if (errstr != NULL) {
        finish(call, GD_CALL_CONNECT, 0, "cannot connect to %s (%s)", call->_upstream->conf->url,
               errstr);
        return NULL;
    }
    call->_state = CALL_EXCHANGING;
    /* The connect timeout no longer applies: the call's own deadline does. */
    gd_timer_start(call->_upstream->timers, &call->_timer, call->deadline_ms);
    call->_reqbuf = h2o_iovec_init(call->_head, call->_head_len);
    *reqbufs = &call->_reqbuf;
    *reqbufcnt = 1;
    *method_is_head = strcmp(call->method, "HEAD") == 0;
    return on_head;
}

static void connect_now(gd_upstream_call_t *call)
{
    gd_upstream_t *u = call->_upstream;
    uint64_t connect_due = gd_timers_now(u->timers) + u->conf->connect_timeout_ms;

    u->busy++;
    call->_state = CALL_CONNECTING;
    gd_timer_start(u->timers, &call->_timer,
                   connect_due < call->deadline_ms ? connect_due : call->deadline_ms);
    /* May call on_connect at once when an idle pooled connection is available. */
    h2o_http1client_connect_with_pool(&call->_client, call, &u->client_ctx, &u->pool, on_connect);
}

static void on_timer(gd_timer_t *timer)
{
    gd_upstream_call_t *call = H2O_STRUCT_FROM_MEMBER(gd_upstream_call_t, _timer, timer);
    gd_upstream_t *u = call->_upstream;
    bool is_deadline = gd_timers_now(u->timers) >= call->deadline_ms;

    abandon(call);
    if (call->_state == CALL_WAITING)
        finish(call, GD_CALL_TIMEOUT, 0,
               "timed out after %" PRIu64 " ms waiting for a connection (max_connections %zu)",
               call->timeout_ms, u->max_connections);
    else if (call->_state == CALL_CONNECTING && !is_deadline)
        finish(call, GD_CALL_CONNECT, 0, "connect to %s timed out after %" PRIu64 " ms",
               u->conf->url, u->conf->connect_timeout_ms);
    else
        finish(call, GD_CALL_TIMEOUT, call->result.status, "timed out after %" PRIu64 " ms",
               call->timeout_ms);
}

static void on_cancel(gd_task_t *task)
{
    gd_upstream_call_t *call = H2O_STRUCT_FROM_MEMBER(gd_upstream_call_t, _task, task);

    abandon(call);
    finish(call, GD_CALL_CANCELLED, call->result.status, "cancelled");
}

static void build_head(gd_upstream_t *u, gd_upstream_call_t *call)
{
    bool has_body = strcmp(call->method, "POST") == 0 || strcmp(call->method, "PUT") == 0 ||
                    strcmp(call->method, "PATCH") == 0;
    static const char fmt[] = "%s %.*s HTTP/1.1\r\nhost: %s\r\naccept: application/json\r\n"
                              "user-agent: gatherd/" GD_VERSION "\r\n%s%.*s\r\n";
    const char *length = has_body ? "content-length: 0\r\n" : "";
    int n = snprintf(NULL, 0, fmt, call->method, (int)call->path.len, call->path.base,
                     u->host_header, length, (int)call->extra_headers.len,
                     call->extra_headers.base);

    call->_head = gd_xmalloc((size_t)n + 1);
    call->_head_len = (size_t)snprintf(call->_head, (size_t)n + 1, fmt, call->method,
                                       (int)call->path.len, call->path.base, u->host_header,
                                       length, (int)call->extra_headers.len,
                                       call->extra_headers.base);
}

void gd_upstream_call_start(gd_upstream_t *u, gd_group_t *group, gd_upstream_call_t *call)
{
    call->result = (gd_call_result_t){.outcome = GD_CALL_CANCELLED};
    call->_upstream = u;
    call->_client = NULL;
    call->_has_retried = false;
    call->_body = NULL;
    gd_timer_init(&call->_timer, on_timer);
    build_head(u, call);
    gd_group_add(group, &call->_task, on_cancel);

    if (u->busy < u->max_connections && u->waiting == 0) {
        connect_now(call);
    } else {
        call->_state = CALL_WAITING;
        enqueue(u, call);
        gd_timer_start(u->timers, &call->_timer, call->deadline_ms);
    }
}

void gd_upstream_call_dispose(gd_upstream_call_t *call)
{
    free(call->_head);
    free(call->_body);
    call->_head = NULL;
    call->_body = NULL;
}
