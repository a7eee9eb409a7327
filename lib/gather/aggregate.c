#include "gather/aggregate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "front/admission.h"
#include "json/json.h"
#include "ops/log.h"
#include "gather/merge.h"
#include "ops/trace.h"
#include "base/util.h"

#define ACCESS_PATH_MAX 256

/* A call of either type; which one is the endpoint's call config's type. */
struct call_slot {
    union {
        gd_upstream_call_t http;
        gd_pgpool_query_t sql;
    };
};

struct gd_request {
    gd_aggregate_ctx_t *actx;
    h2o_req_t *req; /* NULL once h2o has disposed of the request (the client is gone) */
    gd_request_t **dispose_slot; /* lives in req's pool: cleared when we finish first */
    const gd_endpoint_conf_t *endpoint;
    uint64_t started_at_ns;
    uint64_t deadline_ms;
    /* A copy: the access line may be written after h2o has freed the request's pool. */
    char request_id_copy[GD_TRACE_REQUEST_ID_MAX + 1];
    gd_group_t group;
    bool is_gathering;
    h2o_linklist_t in_flight_link; /* in the thread's list of requests in flight */
    gd_call_result_t *results;
    struct call_slot calls[]; /* one per call of the endpoint, in config order */
};

/* A request checked and ready to start: everything that could fail with 400 is done, and what
 * it needs is in req's pool. While no slot is free it waits at the door, in req's pool too. */
struct admission_ticket {
    gd_admission_waiter_t waiter; /* first: the waiter is the ticket */
    gd_aggregate_ctx_t *actx;
    h2o_req_t *req;
    const gd_endpoint_conf_t *endpoint;
    const gd_strv_t *values;
    h2o_iovec_t *header_values; /* every HTTP call's headers, expanded, in config order */
    const char *request_id;
    uint64_t started_at_ns;
};

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 499:
        return "Client Closed Request";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 500 ? "Client Error" : "Server Error";
    }
}

static bool is_head_request(const h2o_req_t *req)
{
    return h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"));
}

/* "user:ok:3,posts:timeout:800" (text) or {"user":{"outcome":"ok","ms":3},...} (JSON). */
static size_t describe_calls(const gd_endpoint_conf_t *ep, const gd_call_result_t *results,
                             char *buf, size_t cap)
{
    size_t len = 0;
    bool is_json = gd_log_is_json();

    if (is_json)
        len += (size_t)snprintf(buf + len, cap - len, "{");
    for (size_t i = 0; i < ep->ncalls && len < cap; i++) {
        const char *outcome =
            results[i].outcome == GD_CALL_OK ? "ok" : gd_call_outcome_name(results[i].outcome);
        if (is_json)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s:{\"outcome\":\"%s\",\"ms\":%" PRIu64 "}",
                                    i == 0 ? "" : ",", ep->calls[i].name_json, outcome,
                                    results[i].elapsed_ms);
        else
            len += (size_t)snprintf(buf + len, cap - len, "%s%s:%s:%" PRIu64, i == 0 ? "" : ",",
                                    ep->calls[i].name, outcome, results[i].elapsed_ms);
    }
    if (is_json && len < cap)
        len += (size_t)snprintf(buf + len, cap - len, "}");
    return len < cap ? len : 0; /* too long to describe: leave it out rather than cut JSON */
}

/* Counts the answered request in this thread's metrics and writes its access line. */
static void log_access(gd_aggregate_ctx_t *actx, h2o_req_t *req, const char *request_id,
                       const gd_endpoint_conf_t *ep, int status, size_t bytes,
                       uint64_t started_at_ns, const char *complete,
                       const gd_call_result_t *results)
{
    h2o_iovec_t path = req->input.path;
    uint64_t duration_ns = uv_hrtime() - started_at_ns;

    gd_metrics_count_request(actx->metrics, ep, status, duration_ns / 1000);
    for (size_t i = 0; results != NULL && i < ep->ncalls; i++)
        gd_metrics_count_call(actx->metrics, ep, i, results[i].outcome,
                              results[i].elapsed_ms * 1000);
    if (gd_log_max_level < GD_LOG_INFO)
        return;
    char calls[2048];
    size_t calls_len = results != NULL ? describe_calls(ep, results, calls, sizeof(calls)) : 0;
    gd_log_field_t fields[] = {
        {.key = "request_id", .type = GD_LOG_STR, .str = request_id, .str_len = SIZE_MAX},
        {.key = "method", .type = GD_LOG_STR, .str = req->input.method.base,
         .str_len = req->input.method.len},
        {.key = "route", .type = GD_LOG_STR, .str = ep != NULL ? ep->path : "-", .str_len = SIZE_MAX},
        {.key = "path", .type = GD_LOG_STR, .str = path.base,
         .str_len = path.len < ACCESS_PATH_MAX ? path.len : ACCESS_PATH_MAX},
        {.key = "status", .type = GD_LOG_INT, .i = status},
        {.key = "duration_ms", .type = GD_LOG_MS, .ms = (double)duration_ns / 1e6},
        {.key = "bytes", .type = GD_LOG_INT, .i = (long long)bytes},
        {.key = "complete", .type = GD_LOG_STR, .str = complete, .str_len = SIZE_MAX},
        {.key = "calls", .type = GD_LOG_JSON, .str = calls, .str_len = calls_len},
    };

    gd_log_event(GD_LOG_INFO, "access", fields, GD_ARRAY_SIZE(fields) - (calls_len == 0 ? 1 : 0));
}

/* Answers @req with the JSON @body (in req's pool). */
static void send_json(h2o_req_t *req, int status, char *body, size_t len, const char *complete)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t buf = h2o_iovec_init(body, len);

    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    if (complete != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-gatherd-complete"), 0,
                              "X-Gatherd-Complete", complete, strlen(complete));
    h2o_start_response(req, &generator);
    if (is_head_request(req))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

static void send_error_at(gd_aggregate_ctx_t *actx, const gd_endpoint_conf_t *ep, h2o_req_t *req,
                          const char *request_id, uint64_t started_at_ns, int status,
                          const char *code, const char *message, const char *hname,
                          const char *hvalue)
{
    size_t mlen = strlen(message);
    size_t qlen = gd_json_quote(message, mlen, NULL, 0);
    size_t cap = qlen + strlen(code) + 32;
    char *body = h2o_mem_alloc_pool(&req->pool, cap);
    int n = snprintf(body, cap, "{\"error\":\"%s\",\"message\":", code);
    size_t len = (size_t)n + gd_json_quote(message, mlen, body + n, cap - (size_t)n);
    body[len++] = '}';

    if (hname != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, hname, strlen(hname), 1, NULL, hvalue,
                              strlen(hvalue));
    send_json(req, status, body, len, NULL);
    log_access(actx, req, request_id, ep, status, len, started_at_ns, "-", NULL);
}

static void on_req_dispose(void *p)
{
    gd_request_t *rq = *(gd_request_t **)p;

    if (rq == NULL)
        return; /* answered and finished before h2o let go of the request */
    rq->req = NULL;
    rq->dispose_slot = NULL;
    if (rq->is_gathering)
        gd_group_cancel(&rq->group); /* nobody is left to read the answer */
}

void gd_aggregate_ctx_init(gd_aggregate_ctx_t *actx, size_t max_in_flight)
{
    h2o_linklist_init_anchor(&actx->_in_flight);
    actx->in_flight = 0;
    actx->_is_aborting = false;
    gd_admission_init(&actx->admission, gd_sched_timers(actx->sched), max_in_flight);
}

void gd_aggregate_ctx_dispose(gd_aggregate_ctx_t *actx)
{
    gd_admission_dispose(&actx->admission);
}

static void link_in_flight(gd_aggregate_ctx_t *actx, gd_request_t *rq)
{
    h2o_linklist_insert(&actx->_in_flight, &rq->in_flight_link);
    actx->in_flight++;
}

static void unlink_in_flight(gd_aggregate_ctx_t *actx, gd_request_t *rq)
{
    h2o_linklist_unlink(&rq->in_flight_link);
    actx->in_flight--;
}

static void respond(gd_request_t *rq, int gather_ret)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    h2o_req_t *req = rq->req;

    /* h2o decides keep-alive when it parses a request; one parsed before the drain began would
     * otherwise keep its HTTP/1 connection open (HTTP/2 has had its GOAWAY). */
    if (rq->actx->is_draining)
        req->http1_is_persistent = 0;

    if (rq->actx->_is_aborting) {
        send_error_at(rq->actx, ep, req, rq->request_id_copy, rq->started_at_ns, 503,
                      "shutting_down",
                      "the server is shutting down and this request ran past its shutdown timeout",
                      NULL, NULL);
        return;
    }
    for (size_t i = 0; i < ep->ncalls; i++) {
        gd_call_result_t *r = &rq->results[i];
        *r = ep->calls[i].type == GD_CALL_TYPE_SQL ? rq->calls[i].sql.result
                                                   : rq->calls[i].http.result;
        if (r->outcome == GD_CALL_CANCELLED && gather_ret == -ETIMEDOUT) {
            r->outcome = GD_CALL_TIMEOUT;
            snprintf(r->message, sizeof(r->message),
                     "endpoint deadline of %" PRIu64 " ms passed", ep->timeout_ms);
        }
    }
    int status = gd_merge_status(ep, rq->results);
    const char *complete = gd_merge_is_complete(ep, rq->results) ? "true" : "false";
    size_t len = gd_merge_body(ep, rq->results, NULL, 0);
    char *body = h2o_mem_alloc_pool(&req->pool, len);
    gd_merge_body(ep, rq->results, body, len);
    send_json(req, status, body, len, complete);
    log_access(rq->actx, req, rq->request_id_copy, ep, status, len, rq->started_at_ns, complete,
               rq->results);
}

static void finish_request(gd_request_t *rq)
{
    gd_aggregate_ctx_t *actx = rq->actx;

    if (rq->dispose_slot != NULL)
        *rq->dispose_slot = NULL;
    unlink_in_flight(rq->actx, rq);
    for (size_t i = 0; i < rq->endpoint->ncalls; i++) {
        if (rq->endpoint->calls[i].type == GD_CALL_TYPE_SQL)
            gd_pgpool_query_dispose(&rq->calls[i].sql);
        else
            gd_upstream_call_dispose(&rq->calls[i].http);
    }
    free(rq);
    /* The next request at the door starts here, in this coroutine's last moments: the scheduler
     * has room for one coroutine more than there are slots. */
    gd_admission_release(&actx->admission);
}

/* The request coroutine: fan out, gather at one point, answer. */
static void run_request(void *arg)
{
    gd_request_t *rq = arg;
    gd_aggregate_ctx_t *actx = rq->actx;
    const gd_endpoint_conf_t *ep = rq->endpoint;
    int ret;

    gd_group_init(&rq->group, actx->sched);
    for (size_t i = 0; i < ep->ncalls; i++) {
        if (ep->calls[i].type == GD_CALL_TYPE_SQL)
            gd_pgpool_query_start(actx->pgpool, &rq->group, &rq->calls[i].sql);
        else
            gd_upstream_call_start(actx->upstreams[ep->calls[i].upstream->index], &rq->group,
                                   &rq->calls[i].http);
    }
    rq->is_gathering = true;
    ret = gd_group_wait(&rq->group, rq->deadline_ms); /* the gather point */
    rq->is_gathering = false;
    gd_group_dispose(&rq->group);

    if (rq->req != NULL)
        respond(rq, ret);
    finish_request(rq);
}

/* Expands a header template without percent-encoding; -EINVAL when a value would smuggle a
 * control character (CR LF: a second header) into the upstream request. */
static int expand_header_value(const gd_template_t *t, const gd_strv_t *values, h2o_mem_pool_t *pool,
                               h2o_iovec_t *ret)
{
    size_t len = gd_template_expand_raw(t, values, NULL, 0);
    char *buf = h2o_mem_alloc_pool(pool, len + 1);

    gd_template_expand_raw(t, values, buf, len);
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)buf[i] < 0x20 && buf[i] != '\t') || buf[i] == 0x7f)
            return -EINVAL;
    *ret = h2o_iovec_init(buf, len);
    return 0;
}

/* Fills @query from the endpoint's SQL call: each argument a NUL-terminated text value in
 * req's pool (bound as a parameter, never part of the SQL text). */
static void prepare_sql(h2o_req_t *req, const gd_call_conf_t *cc, const gd_strv_t *values,
                        gd_pgpool_query_t *query)
{
    const char **params = h2o_mem_alloc_pool(&req->pool, sizeof(*params) * (cc->nargs + 1));

    for (size_t i = 0; i < cc->nargs; i++) {
        size_t len = gd_template_expand_raw(&cc->args[i], values, NULL, 0);
        char *buf = h2o_mem_alloc_pool(&req->pool, len + 1);
        gd_template_expand_raw(&cc->args[i], values, buf, len);
        buf[len] = '\0';
        params[i] = buf;
    }
    params[cc->nargs] = NULL;
    query->statement = cc->statement;
    query->params = params;
    query->is_one_row = cc->is_one_row;
}

/* Expands the headers of every HTTP call of @ep into req's pool (*@ret, in config order);
 * -EINVAL with @err when a value would smuggle a control character into one. */
static int expand_headers(h2o_req_t *req, const gd_endpoint_conf_t *ep, const gd_strv_t *values,
                          h2o_iovec_t **ret, char *err, size_t errlen)
{
    size_t n = 0;

    for (size_t i = 0; i < ep->ncalls; i++)
        n += ep->calls[i].type == GD_CALL_TYPE_SQL ? 0 : ep->calls[i].nheaders;
    *ret = NULL;
    if (n == 0)
        return 0;
    h2o_iovec_t *out = h2o_mem_alloc_pool(&req->pool, sizeof(*out) * n);
    n = 0;
    for (size_t i = 0; i < ep->ncalls; i++) {
        const gd_call_conf_t *cc = &ep->calls[i];
        for (size_t j = 0; cc->type != GD_CALL_TYPE_SQL && j < cc->nheaders; j++) {
            if (expand_header_value(&cc->headers[j].value, values, &req->pool, &out[n++]) != 0) {
                snprintf(err, errlen,
                         "a value for header \"%s\" of call \"%s\" contains a control character",
                         cc->headers[j].name, cc->name);
                return -EINVAL;
            }
        }
    }
    *ret = out;
    return 0;
}

/* Fills @call's request from the endpoint's template for it and its expanded @header_values. */
static void prepare_call(h2o_req_t *req, const gd_call_conf_t *cc, const gd_strv_t *values,
                         const h2o_iovec_t *header_values, const char *request_id,
                         const gd_traceparent_t *trace, gd_upstream_call_t *call)
{
    const char *base = cc->upstream->base_path;
    size_t base_len = strlen(base);
    size_t cap = base_len + gd_template_max_len(&cc->path, values);
    char *path = h2o_mem_alloc_pool(&req->pool, cap + 1);

    memcpy(path, base, base_len);
    size_t len = base_len + gd_template_expand(&cc->path, values, path + base_len, cap - base_len);
    call->method = cc->method;
    call->path = h2o_iovec_init(path, len);

    /* Every call carries the request id, and a child span of the client's trace, if any. */
    size_t n = 3, ntrace = trace != NULL ? 3 : 0;
    h2o_iovec_t *lines =
        h2o_mem_alloc_pool(&req->pool, sizeof(*lines) * (n + ntrace + cc->nheaders * 4));
    lines[0] = h2o_iovec_init(H2O_STRLIT("x-request-id: "));
    lines[1] = h2o_iovec_init(request_id, strlen(request_id));
    lines[2] = h2o_iovec_init(H2O_STRLIT("\r\n"));
    if (trace != NULL) {
        char *tp = h2o_mem_alloc_pool(&req->pool, GD_TRACE_TRACEPARENT_LEN + 1);
        gd_trace_child(trace, tp);
        lines[n++] = h2o_iovec_init(H2O_STRLIT("traceparent: "));
        lines[n++] = h2o_iovec_init(tp, GD_TRACE_TRACEPARENT_LEN);
        lines[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
    }
    for (size_t i = 0; i < cc->nheaders; i++) {
        lines[n++] = h2o_iovec_init(cc->headers[i].name, strlen(cc->headers[i].name));
        lines[n++] = h2o_iovec_init(H2O_STRLIT(": "));
        lines[n++] = header_values[i];
        lines[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
    }
    call->extra_headers = h2o_concat_list(&req->pool, lines, n);
}

/* The request's id: the client's X-Request-Id when it is plausible, a new one otherwise;
 * echoed on the answer. In req's pool. */
static const char *take_request_id(h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    char *id;

    if (i >= 0 && gd_trace_is_valid_request_id(req->headers.entries[i].value.base,
                                                req->headers.entries[i].value.len)) {
        h2o_iovec_t v = req->headers.entries[i].value;
        id = h2o_mem_alloc_pool(&req->pool, v.len + 1);
        memcpy(id, v.base, v.len);
        id[v.len] = '\0';
    } else {
        id = h2o_mem_alloc_pool(&req->pool, 33);
        gd_trace_new_request_id(id);
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0,
                          "X-Request-Id", id, strlen(id));
    return id;
}

/* The client's trace context, or NULL when it sent none that is valid. */
static const gd_traceparent_t *take_traceparent(h2o_req_t *req, gd_traceparent_t *buf)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("traceparent"), -1);

    if (i < 0 || gd_trace_parse(req->headers.entries[i].value.base,
                                req->headers.entries[i].value.len, buf) != 0)
        return NULL;
    return buf;
}

/* Starts the request of @ticket, which holds a slot: its calls and its coroutine. */
static void start_request(const struct admission_ticket *ticket)
{
    gd_aggregate_ctx_t *actx = ticket->actx;
    const gd_endpoint_conf_t *ep = ticket->endpoint;
    h2o_req_t *req = ticket->req;
    const h2o_iovec_t *header_values = ticket->header_values;
    int r;

    gd_request_t *rq = gd_xcalloc(1, sizeof(*rq) + ep->ncalls * sizeof(rq->calls[0]) +
                                         ep->ncalls * sizeof(gd_call_result_t));
    rq->results = (gd_call_result_t *)(void *)&rq->calls[ep->ncalls];
    rq->actx = actx;
    rq->req = req;
    rq->endpoint = ep;
    rq->started_at_ns = ticket->started_at_ns;
    snprintf(rq->request_id_copy, sizeof(rq->request_id_copy), "%s", ticket->request_id);
    gd_traceparent_t trace_buf;
    const gd_traceparent_t *trace = take_traceparent(req, &trace_buf);
    /* The loop's clock is cached at the start of its iteration and counts whole ms: refreshed
     * and rounded up, so that no timeout ever fires before its full duration has passed. The
     * deadlines count from here, not from the arrival: time spent queued is bounded apart. */
    uv_update_time(actx->loop);
    uint64_t now_ms = uv_now(actx->loop) + 1;
    rq->deadline_ms = now_ms + ep->timeout_ms;
    for (size_t i = 0; i < ep->ncalls; i++) {
        const gd_call_conf_t *cc = &ep->calls[i];
        if (cc->type == GD_CALL_TYPE_SQL) {
            gd_pgpool_query_t *sql = &rq->calls[i].sql;
            prepare_sql(req, cc, ticket->values, sql);
            sql->started_at_ns = ticket->started_at_ns;
            sql->timeout_ms = cc->timeout_ms;
            sql->deadline_ms = now_ms + cc->timeout_ms;
            continue;
        }
        gd_upstream_call_t *call = &rq->calls[i].http;
        prepare_call(req, cc, ticket->values, header_values, ticket->request_id, trace, call);
        header_values += cc->nheaders;
        call->started_at_ns = ticket->started_at_ns;
        call->timeout_ms = cc->timeout_ms;
        call->deadline_ms = now_ms + cc->timeout_ms;
    }

    rq->dispose_slot = h2o_mem_alloc_shared(&req->pool, sizeof(*rq->dispose_slot), on_req_dispose);
    *rq->dispose_slot = rq;
    link_in_flight(actx, rq);
    if ((r = gd_coro_spawn(actx->sched, run_request, rq, NULL)) != 0) {
        *rq->dispose_slot = NULL;
        unlink_in_flight(actx, rq);
        free(rq);
        send_error_at(actx, ep, req, ticket->request_id, ticket->started_at_ns, 503, "overloaded",
                      r == -EAGAIN ? "no coroutine is free for this request"
                                   : "out of memory for a request coroutine",
                      "retry-after", "1");
        gd_admission_release(&actx->admission);
    }
}

/* The client went away while its request waited at the door. */
static void on_ticket_dispose(void *p)
{
    gd_admission_cancel(&((struct admission_ticket *)p)->waiter);
}

/* Every slot stayed taken for as long as the request may wait (queue_timeout_ms). */
static void send_overloaded(gd_aggregate_ctx_t *actx, const struct admission_ticket *ticket)
{
    char msg[256];

    snprintf(msg, sizeof(msg),
             "all %zu request slots of this thread (max_requests_in_flight) stayed taken for "
             "%" PRIu64 " ms (queue_timeout_ms)",
             actx->admission.limit, actx->config->queue_timeout_ms);
    send_error_at(actx, ticket->endpoint, ticket->req, ticket->request_id, ticket->started_at_ns,
                  503, "overloaded", msg, "retry-after", "1");
}

/* Whether the HTTP/1 client of @req has closed its connection. h2o reads nothing while it
 * processes a request, so it cannot tell; a queued request checks before it uses a slot. */
static bool is_client_gone(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
        return false; /* HTTP/2 reads on and disposes of requests whose stream is reset */
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
    char c;

    if (fd < 0)
        return false;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE));
}

static void on_admission_end(gd_admission_waiter_t *waiter, bool is_admitted)
{
    const struct admission_ticket *ticket = (const struct admission_ticket *)waiter;
    gd_aggregate_ctx_t *actx = ticket->actx;

    if (is_admitted && is_client_gone(ticket->req)) {
        /* Nobody will read the answer: the slot goes to the next in line. The 499 (nginx's
         * "client closed request") is for the access log and the metrics. */
        send_error_at(actx, ticket->endpoint, ticket->req, ticket->request_id,
                      ticket->started_at_ns, 499, "client_closed_request",
                      "the client closed its connection while the request was queued", NULL, NULL);
        gd_admission_release(&actx->admission);
        return;
    }
    if (is_admitted) {
        start_request(ticket);
        return;
    }
    if (actx->_is_aborting) {
        send_error_at(actx, ticket->endpoint, ticket->req, ticket->request_id,
                      ticket->started_at_ns, 503, "shutting_down",
                      "the server is shutting down", NULL, NULL);
        return;
    }
    send_overloaded(actx, ticket);
}

void gd_aggregate_handle(gd_aggregate_ctx_t *actx, h2o_req_t *req)
{
    uint64_t started_at_ns = uv_hrtime();
    h2o_iovec_t target = req->input.path, method = req->input.method;
    const char *qmark = memchr(target.base, '?', target.len);
    size_t path_len = qmark != NULL ? (size_t)(qmark - target.base) : target.len;
    const char *query = qmark != NULL ? qmark + 1 : "";
    size_t query_len = qmark != NULL ? target.len - path_len - 1 : 0;
    gd_strv_t captures[GD_ROUTE_MAX_CAPTURES];
    const gd_endpoint_conf_t *ep;
    char allow[256], err[512];
    const char *request_id = take_request_id(req);
    int r;

    if (actx->_is_aborting) {
        send_error_at(actx, NULL, req, request_id, started_at_ns, 503, "shutting_down",
                      "the server is shutting down", NULL, NULL);
        return;
    }
    /* HEAD is answered like GET, without the body. */
    if (is_head_request(req))
        method = h2o_iovec_init(H2O_STRLIT("GET"));
    char *scratch = h2o_mem_alloc_pool(&req->pool, path_len + 1);
    r = gd_router_match(actx->router, method.base, method.len, target.base, path_len, scratch,
                        captures, &ep, allow, sizeof(allow));
    if (r == GD_ROUTE_NO_MATCH) {
        snprintf(err, sizeof(err), "no endpoint matches %.*s %.*s", (int)req->input.method.len,
                 req->input.method.base, (int)(path_len < 200 ? path_len : 200), target.base);
        send_error_at(actx, NULL, req, request_id, started_at_ns, 404, "not_found", err, NULL, NULL);
        return;
    }
    if (r == GD_ROUTE_BAD_METHOD) {
        snprintf(err, sizeof(err), "method %.*s is not allowed here; allowed: %s",
                 (int)req->input.method.len, req->input.method.base, allow);
        send_error_at(actx, NULL, req, request_id, started_at_ns, 405, "method_not_allowed", err, "allow", allow);
        return;
    }
    if (r != 0) {
        send_error_at(actx, NULL, req, request_id, started_at_ns, 400, "bad_request",
                      "the path has a malformed percent-encoding", NULL, NULL);
        return;
    }

    gd_header_view_t *headers = h2o_mem_alloc_pool(&req->pool, sizeof(*headers) * (req->headers.size + 1));
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        headers[i] = (gd_header_view_t){{h->name->base, h->name->len}, {h->value.base, h->value.len}};
    }
    gd_strv_t *values = h2o_mem_alloc_pool(&req->pool, sizeof(*values) * (ep->nparams + 1));
    char *qscratch = h2o_mem_alloc_pool(&req->pool, query_len + 1);
    r = gd_route_extract_params(ep, captures, query, query_len, headers, req->headers.size,
                                qscratch, values, err, sizeof(err));
    if (r == -ENOMEM) {
        send_error_at(actx, ep, req, request_id, started_at_ns, 503, "overloaded", "out of memory checking parameters",
                      NULL, NULL);
        return;
    }
    if (r != 0) {
        send_error_at(actx, ep, req, request_id, started_at_ns, 400, "invalid_parameter", err, NULL, NULL);
        return;
    }

    struct admission_ticket ticket = {.actx = actx, .req = req, .endpoint = ep, .values = values,
                                      .request_id = request_id, .started_at_ns = started_at_ns};
    if (expand_headers(req, ep, values, &ticket.header_values, err, sizeof(err)) != 0) {
        send_error_at(actx, ep, req, request_id, started_at_ns, 400, "invalid_parameter", err, NULL, NULL);
        return;
    }
    if (gd_admission_try_acquire(&actx->admission)) {
        start_request(&ticket);
        return;
    }
    if (actx->config->queue_timeout_ms == 0) {
        send_overloaded(actx, &ticket);
        return;
    }
    uv_update_time(actx->loop);
    struct admission_ticket *waiting = h2o_mem_alloc_shared(&req->pool, sizeof(*waiting), on_ticket_dispose);
    *waiting = ticket;
    gd_admission_wait(&actx->admission, &waiting->waiter,
                      uv_now(actx->loop) + 1 + actx->config->queue_timeout_ms, on_admission_end);
}

void gd_aggregate_abort_all(gd_aggregate_ctx_t *actx)
{
    actx->_is_aborting = true;
    gd_admission_refuse_all(&actx->admission);
    for (h2o_linklist_t *l = actx->_in_flight.next, *next; l != &actx->_in_flight; l = next) {
        gd_request_t *rq = H2O_STRUCT_FROM_MEMBER(gd_request_t, in_flight_link, l);
        next = l->next;
        if (rq->is_gathering)
            gd_group_cancel(&rq->group); /* may finish and free rq right here */
    }
}
