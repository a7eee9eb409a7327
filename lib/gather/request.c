#include "gather/request.h"

#include <errno.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/util.h"
#include "gather/access.h"
#include "gather/depend.h"
#include "gather/foreach.h"
#include "gather/h2reset.h"
#include "gather/merge.h"
#include "gather/reshape.h"
#include "gather/respond.h"
#include "gather/shape.h"
#include "json/json.h"
#include "ops/trace.h"

/* How long past its deadline a batch request waits for its runs, which end by the deadline
 * themselves: a bound against a run that would not. */
#define BATCH_GRACE_MS 1000

/* How long a request gathers before its HTTP/1 client's connection is watched for a hang-up:
 * the watch costs two epoll_ctl calls, a tenth of a fast request's CPU (measured on the
 * profile benchmark), and a request answered sooner than this has no use for it. A client
 * that leaves is still noticed within this much of its leaving. */
#define HANGUP_WATCH_DELAY_MS 20

/* Where a call of an endpoint with dependencies stands. */
enum call_state {
    CALL_WAITING = 0, /* for what it needs, or not started before the end */
    CALL_RUNNING,
    CALL_READY,   /* finished with a value that others may use */
    CALL_FAILED,  /* finished without one */
    CALL_SKIPPED, /* never ran: its "when" was false, or it needed a skipped call */
};

/* A "for_each" call under way: its items, each a call of its own once started. */
struct fanout {
    gd_strv_t *items; /* in the arena */
    size_t nitems;
    gd_call_t **calls;         /* by item; NULL until it starts */
    gd_call_result_t *results; /* by item: settled once it has finished */
    bool *is_settled;          /* by item */
    size_t next;               /* the first item not started */
    size_t nrunning;
};

/* What an endpoint whose calls wait for each other keeps while its calls run; in the arena,
 * and absent (NULL) for endpoints without dependencies, whose requests cost what they did. */
struct graph {
    gd_call_input_t in;     /* what the calls are rendered again from when they start */
    gd_traceparent_t trace; /* in.trace points here when the client sent one */
    gd_strv_t *values;      /* the parameters, then the rendered references (in.values) */
    unsigned char *states;  /* enum call_state, by call */
    gd_strv_t *results;     /* by call, then {item}: what references see (gd_eval_env_t.calls) */
    struct fanout **fanouts; /* by call: a started for_each call's; NULL when none has one */
    bool has_started_calls; /* a pass before has started calls: later ones are deferred */
};

/* The runs of a batch request, one per item, each a gd_request_t of its own (heap, with its
 * own arena and calls) whose coroutine is a task of the batch's group. */
struct batch {
    gd_request_t **runs; /* by item, in the batch's arena */
    size_t nruns;
    size_t next; /* the first run not started */
};

/* In h2o's request pool: its dispose callback finds our request (NULL once we finished first)
 * and h2o's, whose HTTP/2 connection counts the resets (gather/h2reset.h). */
struct dispose_slot {
    gd_request_t *rq;
    h2o_req_t *req;
    gd_gather_ctx_t *ctx;
};

struct gd_request {
    gd_gate_waiter_t waiter; /* first: the line's callback gets it */
    gd_gather_ctx_t *ctx;
    gd_gather_view_t *view;      /* the config it started under, and its sources: held to the end */
    h2o_req_t *req;              /* NULL once h2o has disposed of the request (the client left) */
    struct dispose_slot *dispose_slot; /* in req's pool: rq cleared when we finish first */
    const gd_endpoint_conf_t *endpoint;
    gd_arena_t arena;         /* everything the calls borrow; freed with the request */
    const char *request_id;   /* in the arena, like method and path: the access line may be */
    const char *client;       /* the client's address, in the arena too */
    h2o_iovec_t method, path; /* written after h2o has let go of its request */
    uint64_t started_at_ns;
    uint64_t deadline_ms;
    gd_group_t group;
    gd_hangup_watch_t hangup;
    gd_timer_t hangup_delay; /* starts the hang-up watch of a request that gathers long */
    bool is_gathering;
    bool is_half_closed; /* the client had sent its FIN before the request started */
    h2o_linklist_t in_flight_link; /* in the thread's list of requests holding a slot */
    gd_call_result_t *results;     /* in the arena, one per call, filled for the answer */
    const gd_strv_t *values; /* the parameters; borrowed from h2o's request: valid while req is */
    struct graph *graph;     /* NULL when no call waits for another */
    /* A batch endpoint's request runs no call of its own: its runs, one per item, do. */
    struct batch *batch;     /* NULL unless the endpoint is a batch */
    gd_request_t *parent;    /* a run's: the batch request it belongs to (else NULL) */
    gd_jbuf_t doc;           /* a run's: its answer, once it has gathered */
    bool is_doc_complete;
    bool is_run_done;
    gd_call_t *calls[];            /* in the arena, one per call of the endpoint, config order */
};

/* The size of a request's arena (what its calls take, rendered) is learned per endpoint and
 * thread: the first block, allocated with the request, is as big as the biggest earlier
 * request needed plus an eighth, so a request is one allocation. A request that needs more than
 * ARENA_HINT_MAX (a big body copied for its calls) teaches only that much. */
#define ARENA_HINT_MAX (16u << 10)
#define ARENA_HINT_STEP 64u

/* Where the learned size of @ep's requests is kept (@is_run: of its batch runs, which hold
 * calls where the batch request holds its items): in the view, by endpoint. */
static size_t *arena_hint(gd_gather_view_t *view, const gd_endpoint_conf_t *ep, bool is_run)
{
    const gd_config_t *config = view->config;

    if (view->_arena_hints == NULL)
        view->_arena_hints = gd_xcalloc(2 * config->nendpoints, sizeof(*view->_arena_hints));
    return &view->_arena_hints[2 * (size_t)(ep - config->endpoints) + is_run];
}

/* Teaches @rq's endpoint what its arena took, as it is freed. */
static void learn_arena_size(gd_request_t *rq)
{
    size_t *hint = arena_hint(rq->view, rq->endpoint, rq->parent != NULL);
    size_t used = gd_arena_used(&rq->arena);

    used += used / 8 + ARENA_HINT_STEP - 1;
    used -= used % ARENA_HINT_STEP;
    if (used > ARENA_HINT_MAX)
        used = ARENA_HINT_MAX;
    if (used > *hint)
        *hint = used;
}

void gd_gather_view_dispose(gd_gather_view_t *view)
{
    GD_REQUIRE(view->requests == 0);
    free(view->_arena_hints);
    view->_arena_hints = NULL;
}

static gd_request_t *new_request(gd_gather_ctx_t *ctx, h2o_req_t *req, const gd_endpoint_conf_t *ep,
                                 const char *request_id, const char *client, uint64_t started_at_ns,
                                 gd_request_t *parent)
{
    size_t head = sizeof(gd_request_t) + ep->ncalls * sizeof(((gd_request_t *)NULL)->calls[0]);
    head = (head + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t);
    size_t first = *arena_hint(ctx->view, ep, parent != NULL);
    gd_request_t *rq = gd_xmalloc(head + first);
    size_t path_len =
        req->input.path.len < GD_ACCESS_PATH_MAX ? req->input.path.len : GD_ACCESS_PATH_MAX;

    memset(rq, 0, head);
    gd_arena_init(&rq->arena, (char *)rq + head, first);
    rq->ctx = ctx;
    rq->view = ctx->view;
    rq->view->requests++;
    rq->req = req;
    rq->endpoint = ep;
    rq->parent = parent;
    rq->started_at_ns = started_at_ns;
    rq->request_id = gd_arena_strdup(&rq->arena, request_id, strlen(request_id)).base;
    rq->client = gd_arena_strdup(&rq->arena, client, strlen(client)).base;
    rq->method = gd_arena_strdup(&rq->arena, req->input.method.base,
                                 req->input.method.len < 32 ? req->input.method.len : 32);
    rq->path = gd_arena_strdup(&rq->arena, req->input.path.base, path_len);
    rq->results = gd_arena_alloc(&rq->arena, sizeof(*rq->results) * (ep->ncalls + 1));
    return rq;
}

/* The state of a request whose calls wait for each other, from its input @in (whose trace is
 * copied: it is on the caller's stack). Returns the values to render the calls with. */
static const gd_strv_t *new_graph(gd_request_t *rq, gd_call_input_t *in)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    struct graph *g = gd_arena_alloc(&rq->arena, sizeof(*g));
    size_t nvalues = ep->nparams + ep->nrefs;

    memset(g, 0, sizeof(*g));
    g->values = gd_arena_alloc(&rq->arena, sizeof(*g->values) * (nvalues + 1));
    memcpy(g->values, in->values, sizeof(*g->values) * ep->nparams);
    gd_depend_stand_in(ep, g->values);
    g->states = gd_arena_alloc(&rq->arena, ep->ncalls);
    memset(g->states, CALL_WAITING, ep->ncalls);
    g->results = gd_arena_alloc(&rq->arena, sizeof(*g->results) * (ep->ncalls + 1));
    memset(g->results, 0, sizeof(*g->results) * (ep->ncalls + 1));
    for (size_t i = 0; i < ep->ncalls && g->fanouts == NULL; i++) {
        if (ep->calls[i].has_for_each) {
            g->fanouts = gd_arena_alloc(&rq->arena, sizeof(*g->fanouts) * ep->ncalls);
            memset(g->fanouts, 0, sizeof(*g->fanouts) * ep->ncalls);
        }
    }
    if (in->trace != NULL) {
        g->trace = *in->trace;
        in->trace = &g->trace;
    }
    in->values = g->values;
    g->in = *in;
    rq->graph = g;
    return g->values;
}

static void free_request(gd_request_t *rq)
{
    for (size_t k = 0; rq->batch != NULL && k < rq->batch->nruns; k++)
        if (rq->batch->runs[k] != NULL)
            free_request(rq->batch->runs[k]);
    free(rq->doc.buf);
    for (size_t i = 0; i < rq->endpoint->ncalls; i++) {
        struct fanout *f = rq->graph != NULL && rq->graph->fanouts != NULL
                               ? rq->graph->fanouts[i]
                               : NULL;
        for (size_t k = 0; f != NULL && k < f->next; k++)
            if (f->calls[k] != NULL)
                gd_call_dispose(f->calls[k]);
        if (rq->calls[i] != NULL)
            gd_call_dispose(rq->calls[i]);
    }
    learn_arena_size(rq);
    gd_arena_clear(&rq->arena);
    gd_gather_view_t *view = rq->view;
    gd_gather_ctx_t *ctx = rq->ctx;
    free(rq);
    if (--view->requests == 0 && view != ctx->view)
        view->on_unused(view);
}

/* Cuts the link from h2o's request to ours: its dispose callback will find nothing. */
static void detach(gd_request_t *rq)
{
    if (rq->dispose_slot != NULL)
        rq->dispose_slot->rq = NULL;
    rq->dispose_slot = NULL;
}

static void record(gd_request_t *rq, int status, size_t bytes, const char *complete,
                   const gd_call_result_t *results)
{
    gd_access_t a = {.request_id = rq->request_id,
                     .client = rq->client,
                     .method = rq->method,
                     .path = rq->path,
                     .endpoint = rq->endpoint,
                     .status = status,
                     .bytes = bytes,
                     .started_at_ns = rq->started_at_ns,
                     .complete = complete,
                     .results = results};

    gd_access_record(rq->ctx->metrics, &a);
}

/* Answers with an error of gatherd's own, counted and logged. */
static void answer_error(gd_request_t *rq, int status, const char *code, const char *message,
                         const char *hname, const char *hvalue)
{
    size_t len = gd_respond_error(&rq->ctx->responder, rq->req, &rq->endpoint->compress, status,
                                  code, message, hname, hvalue);
    record(rq, status, len, "-", NULL);
}

/* Nobody will read the answer, nor can it be written: 499 (nginx's "client closed request")
 * for the log and the metrics, with the outcome of every call that had started. */
static void record_client_gone(gd_request_t *rq, const gd_call_result_t *results)
{
    record(rq, 499, 0, "-", results);
}

static bool fanout_is_done(gd_request_t *rq, size_t i, int gather_ret);

static void collect_results(gd_request_t *rq, int gather_ret)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;

    for (size_t i = 0; rq->graph != NULL && rq->graph->fanouts != NULL && i < ep->ncalls; i++)
        if (rq->graph->states[i] == CALL_RUNNING && rq->graph->fanouts[i] != NULL)
            fanout_is_done(rq, i, gather_ret < 0 ? gather_ret : -ECANCELED); /* its items so far */
    for (size_t i = 0; i < ep->ncalls; i++) {
        gd_call_result_t *r = &rq->results[i];
        /* shaped once, in the call's own result: whatever reads it sees the shaped document */
        gd_reshape_result(ep->calls[i].reshape, &rq->calls[i]->result);
        *r = rq->calls[i]->result; /* the body stays the call's: borrowed until it is disposed */
        gd_merge_settle(&ep->calls[i], r); /* null_on */
        if (r->outcome == GD_OUTCOME_CANCELLED && gather_ret == -ETIMEDOUT) {
            r->outcome = GD_OUTCOME_TIMEOUT;
            snprintf(r->message, sizeof(r->message), "endpoint deadline of %" PRIu64 " ms passed",
                     ep->timeout_ms);
        }
    }
}

/* The answer would take its connection's or the process's unsent bytes past their bound
 * (slow readers hold the rest): 503, and the client may come back once they have drained. */
static void answer_unsent_full(gd_request_t *rq, int full)
{
    const gd_config_t *config = rq->view->config;
    char msg[256];

    if (full == GD_OUTBOX_CONNECTION_FULL)
        snprintf(msg, sizeof(msg),
                 "this connection's answers not yet read reach %zu bytes "
                 "(max_unsent_bytes_per_connection)",
                 config->max_unsent_bytes_per_connection);
    else
        snprintf(msg, sizeof(msg),
                 "answers not yet read by their clients reach %zu bytes (max_unsent_bytes)",
                 config->max_unsent_bytes);
    answer_error(rq, 503, "overloaded", msg, "retry-after", "1");
}

static void respond_batch(gd_request_t *rq);

/* Writes @rq's answer, @body (@len bytes in h2o's request pool), then counts and logs it with
 * @results (NULL: a batch's). */
static void send_answer(gd_request_t *rq, int status, char *body, size_t len,
                        const char *complete, const gd_call_result_t *results)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    gd_answer_t a = {.status = status,
                     .body = body,
                     .len = len,
                     .complete = complete,
                     .compress = &ep->compress,
                     .cache_control = ep->cache_control,
                     .has_etag = ep->has_etag,
                     .endpoint = ep,
                     .client = rq->client};
    size_t sent = gd_respond(&rq->ctx->responder, rq->req, &a);
    record(rq, rq->req->res.status, sent, complete, results);
}

static void respond(gd_request_t *rq)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    h2o_req_t *req = rq->req;

    /* h2o decides keep-alive when it parses a request; one parsed before the drain began would
     * otherwise keep its HTTP/1 connection open (HTTP/2 has had its GOAWAY). */
    if (rq->ctx->is_draining)
        req->http1_is_persistent = 0;
    if (rq->ctx->is_aborting) {
        answer_error(rq, 503, "shutting_down",
                     "the server is shutting down and this request ran past its shutdown timeout",
                     NULL, NULL);
        return;
    }
    if (rq->batch != NULL) {
        respond_batch(rq);
        return;
    }
    int status = gd_merge_status(ep, rq->results);
    const char *complete = gd_merge_is_complete(ep, rq->results) ? "true" : "false";
    bool is_detailed = rq->view->config->expose_error_details;
    size_t len;
    char *body;
    gd_jbuf_t out = {0};
    if (ep->response != NULL) {
        gd_shape_body(ep, rq->results, rq->values, is_detailed, &out);
        len = out.len;
    } else {
        len = gd_merge_body(ep, rq->results, is_detailed, NULL, 0);
    }
    /* Checked before the body goes into req's pool: a refused answer must not stay there. */
    int full = gd_outbox_check(rq->ctx->responder.outbox, req, len);
    if (full != 0) {
        free(out.buf);
        answer_unsent_full(rq, full);
        return;
    }
    if (ep->response != NULL) {
        body = h2o_mem_alloc_pool(&req->pool, len + 1);
        memcpy(body, out.buf, len);
        free(out.buf);
    } else {
        body = h2o_mem_alloc_pool(&req->pool, len);
        gd_merge_body(ep, rq->results, is_detailed, body, len);
    }
    send_answer(rq, status, body, len, complete, rq->results);
}

/* Answers batch request @rq: the array of its runs' answers in item order, 200 (a run's own
 * failures are in its answer), incomplete when any run is. */
static void respond_batch(gd_request_t *rq)
{
    const struct batch *b = rq->batch;
    h2o_req_t *req = rq->req;
    size_t len = 2;
    bool is_complete = true;

    for (size_t k = 0; k < b->nruns; k++) {
        len += (k > 0 ? 1 : 0) + b->runs[k]->doc.len;
        is_complete &= b->runs[k]->is_doc_complete;
    }
    int full = gd_outbox_check(rq->ctx->responder.outbox, req, len);
    if (full != 0) {
        answer_unsent_full(rq, full);
        return;
    }
    char *body = h2o_mem_alloc_pool(&req->pool, len), *p = body;
    *p++ = '[';
    for (size_t k = 0; k < b->nruns; k++) {
        if (k > 0)
            *p++ = ',';
        memcpy(p, b->runs[k]->doc.buf, b->runs[k]->doc.len);
        p += b->runs[k]->doc.len;
    }
    *p = ']';
    send_answer(rq, 200, body, len, is_complete ? "true" : "false", NULL);
}

static void link_in_flight(gd_gather_ctx_t *ctx, gd_request_t *rq)
{
    h2o_linklist_insert(&ctx->_in_flight, &rq->in_flight_link);
    ctx->in_flight++;
}

static void unlink_in_flight(gd_gather_ctx_t *ctx, gd_request_t *rq)
{
    h2o_linklist_unlink(&rq->in_flight_link);
    ctx->in_flight--;
}

/* Ends a request that held a slot: the slot goes to the next in line (told on a later loop
 * iteration, never in here). */
static void finish_request(gd_request_t *rq)
{
    gd_gather_ctx_t *ctx = rq->ctx;

    detach(rq);
    unlink_in_flight(ctx, rq);
    free_request(rq);
    gd_gate_release(&ctx->line);
}

/* The HTTP/1 client closed its connection mid-gather: like an HTTP/2 reset. */
static void on_hangup(gd_hangup_watch_t *watch)
{
    gd_request_t *rq = H2O_STRUCT_FROM_MEMBER(gd_request_t, hangup, watch);

    if (rq->is_gathering)
        gd_group_cancel(&rq->group); /* the waiter wakes on a later iteration */
}

static void on_hangup_delay(gd_timer_t *timer)
{
    gd_request_t *rq = H2O_STRUCT_FROM_MEMBER(gd_request_t, hangup_delay, timer);

    if (rq->is_gathering && rq->req != NULL)
        gd_hangup_watch(rq->ctx->hangup, rq->req, &rq->hangup, rq->is_half_closed, on_hangup);
}

/*
 * What the calls that need finished call @i see of its result: its JSON (null_on applied, a
 * missing optional row as null), and whether it has one to give. This is the one place where a
 * call's result is made visible to the calls that reference it.
 */
static enum call_state settle_for_dependents(gd_request_t *rq, size_t i, gd_strv_t *ret_value)
{
    /* shaped in the call's own result, once: its dependents and the answer see the same */
    gd_reshape_result(rq->endpoint->calls[i].reshape, &rq->calls[i]->result);
    gd_call_result_t r = rq->calls[i]->result;

    gd_merge_settle(&rq->endpoint->calls[i], &r);
    if (r.outcome == GD_OUTCOME_OK ||
        (r.outcome == GD_OUTCOME_NOT_FOUND && rq->endpoint->calls[i].is_optional)) {
        *ret_value =
            r.body != NULL ? (gd_strv_t){r.body->bytes, r.body->len} : (gd_strv_t){"null", 4};
        return CALL_READY;
    }
    *ret_value = (gd_strv_t){NULL, 0};
    return r.outcome == GD_OUTCOME_SKIPPED ? CALL_SKIPPED : CALL_FAILED;
}

/* Ends @call, which never ran, with @outcome: nothing in it was started. */
static void settle_unstarted(gd_call_t *call, gd_outcome_t outcome, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void settle_unstarted(gd_call_t *call, gd_outcome_t outcome, const char *fmt, va_list ap)
{
    gd_call_result_t *r = &call->result;

    r->outcome = outcome;
    r->status = 0;
    r->elapsed_ms = gd_call_elapsed_ms(call);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
}

/* Ends call @i of a graph, which never ran, with @outcome. */
__attribute__((format(printf, 4, 5))) static void
settle_unrun(gd_request_t *rq, size_t i, gd_outcome_t outcome, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    settle_unstarted(rq->calls[i], outcome, fmt, ap);
    va_end(ap);
    rq->graph->states[i] = outcome == GD_OUTCOME_SKIPPED ? CALL_SKIPPED : CALL_FAILED;
}

/* Skips @call, whose "when" (of parameters only) is false. */
static void skip_call(gd_call_t *call)
{
    call->result.outcome = GD_OUTCOME_SKIPPED;
    call->result.elapsed_ms = 0;
    snprintf(call->result.message, sizeof(call->result.message), "its \"when\" is false");
}

/* A call that starts now (of @cc): its own timeout counts from now, the endpoint deadline
 * bounds it. */
static void set_deadline(gd_request_t *rq, gd_call_t *call, const gd_call_conf_t *cc)
{
    uv_update_time(rq->ctx->loop);
    uint64_t now_ms = uv_now(rq->ctx->loop) + 1;
    call->started_at_ns = rq->started_at_ns;
    call->timeout_ms = cc->timeout_ms;
    call->deadline_ms =
        now_ms + cc->timeout_ms < rq->deadline_ms ? now_ms + cc->timeout_ms : rq->deadline_ms;
}

/* Item @k of a for_each call that could not start: settled at once with @outcome. */
static void settle_item(struct fanout *f, size_t k, gd_outcome_t outcome, const char *message)
{
    f->results[k] = (gd_call_result_t){.outcome = outcome, .max_age_ms = -1};
    snprintf(f->results[k].message, sizeof(f->results[k].message), "%s", message);
    f->is_settled[k] = true;
}

/* Renders item @k of for_each call @i with {item} bound to it and starts it as a call of its
 * own, with the call's timeout, retries, hedging and cache, through the upstream's gates. */
static void start_item(gd_request_t *rq, size_t i, size_t k)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    const gd_call_conf_t *cc = &ep->calls[i];
    struct graph *g = rq->graph;
    struct fanout *f = g->fanouts[i];
    const gd_source_t *src = &rq->view->sources[cc->source];
    char err[GD_CALL_MESSAGE_MAX];

    g->results[ep->ncalls] = f->items[k];
    gd_eval_env_t env = {g->results, ep->ncalls + 1, g->values, {NULL, 0}};
    if (gd_depend_render(ep, cc, &env, &rq->arena, g->values, err, sizeof(err)) != 0) {
        settle_item(f, k, GD_OUTCOME_DEPENDENCY, err);
        return;
    }
    gd_call_t *call = gd_arena_alloc(&rq->arena, src->ops->size);
    memset(call, 0, src->ops->size);
    call->started_at_ns = rq->started_at_ns;
    if (gd_call_prepare(call, src->ops, cc, &g->in, err, sizeof(err)) != 0) {
        gd_call_dispose(call);
        settle_item(f, k, GD_OUTCOME_DEPENDENCY, err);
        return;
    }
    f->calls[k] = call;
    f->nrunning++;
    set_deadline(rq, call, cc);
    gd_call_start(call, src, &rq->group);
}

/* Whether the client still waits for @rq's answer (a run's: for its batch's). */
static bool is_client_here(const gd_request_t *rq)
{
    return (rq->parent != NULL ? rq->parent : rq)->req != NULL;
}

/* The for_each call @i's fan-out, when it has started. */
static struct fanout *fanout_of(const gd_request_t *rq, size_t i)
{
    return rq->graph->fanouts != NULL ? rq->graph->fanouts[i] : NULL;
}

/* Whether running for_each call @i may start another item now. */
static bool fanout_has_room(const gd_request_t *rq, size_t i)
{
    const struct fanout *f = fanout_of(rq, i);

    return f != NULL && rq->graph->states[i] == CALL_RUNNING && f->next < f->nitems &&
           f->nrunning < rq->endpoint->calls[i].concurrency && is_client_here(rq);
}

/* Starts items of for_each call @i while it has room (its concurrency). */
static void top_up(gd_request_t *rq, size_t i)
{
    struct fanout *f = fanout_of(rq, i);

    while (fanout_has_room(rq, i))
        start_item(rq, i, f->next++);
}

/*
 * Settles the items of running for_each call @i that have finished (shaped, null_on applied);
 * once every one has, writes the call's result (gd_foreach_result()) and returns true. With
 * @gather_ret -ETIMEDOUT (the gather has ended), items never started are settled as timed out
 * and the cancelled ones are too, as calls are.
 */
static bool fanout_is_done(gd_request_t *rq, size_t i, int gather_ret)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    const gd_call_conf_t *cc = &ep->calls[i];
    struct fanout *f = fanout_of(rq, i);
    char msg[GD_CALL_MESSAGE_MAX];

    snprintf(msg, sizeof(msg), "endpoint deadline of %" PRIu64 " ms passed", ep->timeout_ms);
    for (size_t k = 0; k < f->next; k++) {
        if (f->is_settled[k] || !gd_call_is_done(f->calls[k]))
            continue;
        gd_call_result_t *r = &f->calls[k]->result;
        gd_reshape_result(cc->reshape, r); /* each item's document, as a call's would be */
        f->results[k] = *r;
        gd_merge_settle(cc, &f->results[k]);
        f->is_settled[k] = true;
        f->nrunning--;
        if (f->results[k].outcome == GD_OUTCOME_CANCELLED && gather_ret == -ETIMEDOUT)
            settle_item(f, k, GD_OUTCOME_TIMEOUT, msg);
    }
    if (gather_ret != 0) {
        for (; f->next < f->nitems; f->next++)
            settle_item(f, f->next,
                        gather_ret == -ETIMEDOUT ? GD_OUTCOME_TIMEOUT : GD_OUTCOME_CANCELLED,
                        gather_ret == -ETIMEDOUT ? msg : "the request ended before it started");
    }
    if (f->next < f->nitems || f->nrunning > 0)
        return false;
    gd_foreach_result(cc, f->results, f->nitems, gd_call_elapsed_ms(rq->calls[i]),
                     &rq->calls[i]->result);
    return true;
}

/* Whether running call @i of a graph has finished: its items, for a for_each call. */
static bool is_call_done(gd_request_t *rq, size_t i)
{
    return fanout_of(rq, i) != NULL ? fanout_is_done(rq, i, 0) : gd_call_is_done(rq->calls[i]);
}

/* What the first byte of a JSON value says it is, for messages. */
static const char *json_kind(const char *s, size_t len)
{
    gd_json_trim(&s, &len);
    switch (len > 0 ? s[0] : 0) {
    case '{':
        return "an object";
    case '"':
        return "a string";
    case 'n':
        return "null";
    case 't':
    case 'f':
        return "a boolean";
    default:
        return "a number";
    }
}

/* Starts for_each call @i, whose needs have all arrived and whose "when" is true: its list,
 * checked, then as many items as its concurrency allows; or settles it when it cannot run.
 * An empty list is [] at once, with no call made. */
static void start_fanout(gd_request_t *rq, size_t i)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    const gd_call_conf_t *cc = &ep->calls[i];
    struct graph *g = rq->graph;
    gd_eval_env_t env = {g->results, ep->ncalls, g->values, {NULL, 0}};
    gd_jbuf_t list = {0};
    size_t n = 0;

    if (cc->for_each.kind == GD_EXPR_PARAM) {
        const gd_strv_t *v = &g->values[cc->for_each.index];
        gd_foreach_list_json(&ep->params[cc->for_each.index], v->base, v->len, &list);
    } else if (!gd_eval_ref(&cc->for_each, &env, &list)) {
        free(list.buf);
        settle_unrun(rq, i, GD_OUTCOME_DEPENDENCY,
                     "\"for_each\" %s is missing in the result of call \"%s\"",
                     cc->for_each_text, ep->calls[cc->for_each.index].name);
        return;
    }
    h2o_iovec_t text = gd_arena_strdup(&rq->arena, list.buf, list.len);
    free(list.buf);
    if (gd_foreach_items(text.base, text.len, NULL, 0, &n) != 0) {
        settle_unrun(rq, i, GD_OUTCOME_DEPENDENCY, "\"for_each\" %s is %s, not an array",
                     cc->for_each_text, json_kind(text.base, text.len));
        return;
    }
    if (n > cc->max_items) {
        settle_unrun(rq, i, GD_OUTCOME_TOO_LARGE,
                     "\"for_each\" %s has %zu items, more than its max_items (%zu)",
                     cc->for_each_text, n, cc->max_items);
        return;
    }
    struct fanout *f = gd_arena_alloc(&rq->arena, sizeof(*f));
    size_t room = n > 0 ? n : 1;
    *f = (struct fanout){
        .items = gd_arena_alloc(&rq->arena, sizeof(*f->items) * room),
        .nitems = n,
        .calls = gd_arena_alloc(&rq->arena, sizeof(*f->calls) * room),
        .results = gd_arena_alloc(&rq->arena, sizeof(*f->results) * room),
        .is_settled = gd_arena_alloc(&rq->arena, sizeof(*f->is_settled) * room),
    };
    memset(f->calls, 0, sizeof(*f->calls) * room);
    memset(f->is_settled, 0, sizeof(*f->is_settled) * room);
    gd_foreach_items(text.base, text.len, f->items, n, &n);
    g->fanouts[i] = f;
    g->states[i] = CALL_RUNNING;
    top_up(rq, i);
}

/* Renders waiting call @i, whose needs have all arrived, with their values and starts it; or
 * settles it when it cannot or must not run. */
static void start_dependent(gd_request_t *rq, size_t i)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    const gd_call_conf_t *cc = &ep->calls[i];
    struct graph *g = rq->graph;
    gd_eval_env_t env = {g->results, ep->ncalls, g->values, {NULL, 0}};
    char err[GD_CALL_MESSAGE_MAX];

    for (size_t j = 0; j < cc->nneeds; j++) {
        const char *name = ep->calls[cc->needs[j]].name;
        if (g->states[cc->needs[j]] == CALL_FAILED) {
            settle_unrun(rq, i, GD_OUTCOME_DEPENDENCY, "needs call \"%s\", which failed", name);
            return;
        }
        if (g->states[cc->needs[j]] == CALL_SKIPPED) {
            settle_unrun(rq, i, GD_OUTCOME_SKIPPED, "needs call \"%s\", which was skipped", name);
            return;
        }
    }
    /* a for_each call's {item} references keep their stand-ins until each item renders them */
    if (gd_depend_render(ep, cc, &env, &rq->arena, g->values, err, sizeof(err)) != 0) {
        settle_unrun(rq, i, GD_OUTCOME_DEPENDENCY, "%s", err);
        return;
    }
    if (!gd_depend_when(cc, g->values)) {
        settle_unrun(rq, i, GD_OUTCOME_SKIPPED, "its \"when\" is false");
        return;
    }
    if (cc->has_for_each) {
        start_fanout(rq, i);
        return;
    }
    const gd_source_t *src = &rq->view->sources[cc->source];
    gd_call_t *call = rq->calls[i];
    if (cc->nrefs > 0) {
        /* Rendered again, now with the values it references (first with stand-ins). */
        gd_call_dispose(call);
        memset(call, 0, src->ops->size);
        call->started_at_ns = rq->started_at_ns;
        if (gd_call_prepare(call, src->ops, cc, &g->in, err, sizeof(err)) != 0) {
            settle_unrun(rq, i, GD_OUTCOME_DEPENDENCY, "%s", err);
            return;
        }
    }
    set_deadline(rq, call, cc);
    g->states[i] = CALL_RUNNING;
    gd_call_start(call, src, &rq->group);
}

/* Notes the calls that have finished, then starts (in dependency order) each waiting call whose
 * needs are all settled. Returns whether a call is still running. Yields once before it
 * starts calls after the first pass, so that none starts inside the stack of the source that
 * reported the call it needed. */
static bool advance_graph(gd_request_t *rq)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    struct graph *g = rq->graph;
    bool is_running = false, has_deferred = !g->has_started_calls;

    for (size_t i = 0; i < ep->ncalls; i++)
        if (g->states[i] == CALL_RUNNING && is_call_done(rq, i))
            g->states[i] = settle_for_dependents(rq, i, &g->results[i]);
    for (size_t k = 0; k < ep->ncalls; k++) {
        size_t i = ep->call_order[k];
        const gd_call_conf_t *cc = &ep->calls[i];
        bool is_ready = g->states[i] == CALL_WAITING;
        for (size_t j = 0; is_ready && j < cc->nneeds; j++)
            is_ready = g->states[cc->needs[j]] >= CALL_READY;
        bool has_room = fanout_has_room(rq, i); /* a for_each call's items to top up */
        if ((is_ready || has_room) && !has_deferred) {
            has_deferred = true;
            if (gd_coro_sleep(0) != 0)
                return true; /* not now: the group is being cancelled */
        }
        if (is_ready && is_client_here(rq))
            start_dependent(rq, i); /* may settle it at once, for the calls after it */
        else if (has_room)
            top_up(rq, i);
        if (g->states[i] == CALL_RUNNING && is_call_done(rq, i))
            g->states[i] = settle_for_dependents(rq, i, &g->results[i]);
        is_running |= g->states[i] == CALL_RUNNING;
    }
    g->has_started_calls = true;
    return is_running;
}

/* Runs the calls of an endpoint with dependencies: each as soon as what it needs has arrived.
 * Returns what gd_group_wait() would. */
static int run_graph(gd_request_t *rq)
{
    int ret = 0;

    while (advance_graph(rq))
        if ((ret = gd_group_wait_any(&rq->group, rq->deadline_ms)) < 0)
            break; /* every started call has reported; those still waiting never ran */
    return ret;
}

/* Starts the calls of @rq (in its group, initialized) and gathers them: all at once, or as
 * what each needs arrives. Returns what gd_group_wait() would. */
static int run_calls(gd_request_t *rq)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;

    if (rq->graph != NULL)
        return run_graph(rq);
    for (size_t i = 0; i < ep->ncalls; i++) {
        if (!gd_depend_when(&ep->calls[i], rq->values))
            skip_call(rq->calls[i]);
        else
            gd_call_start(rq->calls[i], &rq->view->sources[ep->calls[i].source], &rq->group);
    }
    return gd_group_wait(&rq->group, rq->deadline_ms); /* the gather point */
}

/* The answer of @rq's calls (settled) as a single endpoint's, into rq->doc. */
static void write_doc(gd_request_t *rq)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    bool is_detailed = rq->view->config->expose_error_details;

    rq->is_doc_complete = gd_merge_is_complete(ep, rq->results);
    if (ep->response != NULL) {
        gd_shape_body(ep, rq->results, rq->values, is_detailed, &rq->doc);
        return;
    }
    size_t len = gd_merge_body(ep, rq->results, is_detailed, NULL, 0);
    gd_jbuf_reserve(&rq->doc, len);
    rq->doc.len = gd_merge_body(ep, rq->results, is_detailed, rq->doc.buf, len);
}

/* Sets the deadlines of @rq's calls, from now: the endpoint's is @deadline_ms. */
static void set_deadlines(gd_request_t *rq, uint64_t deadline_ms)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;

    uv_update_time(rq->ctx->loop);
    uint64_t now_ms = uv_now(rq->ctx->loop) + 1;
    rq->deadline_ms = deadline_ms;
    for (size_t i = 0; i < ep->ncalls; i++) {
        gd_call_t *call = rq->calls[i];
        call->started_at_ns = rq->started_at_ns;
        call->timeout_ms = ep->calls[i].timeout_ms;
        call->deadline_ms = now_ms + ep->calls[i].timeout_ms;
    }
}

/* A run's coroutine, a task of its batch's group: the endpoint's calls for one item. */
static void run_item(void *arg)
{
    gd_request_t *run = arg;

    gd_group_init(&run->group, run->ctx->sched);
    int ret = run_calls(run);
    gd_group_dispose(&run->group);
    collect_results(run, ret);
    write_doc(run);
    run->is_run_done = true;
}

/* Runs the items of batch request @rq, at most the endpoint's concurrency at once, each
 * started once another has finished, until all have or the deadline has passed (a run not
 * started by then answers as timed out). Returns what gd_group_wait() would. */
static int run_batch(gd_request_t *rq)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    struct batch *b = rq->batch;
    size_t nrunning = 0;
    bool is_stopped = false;
    int ret = 0;

    for (;;) {
        uv_update_time(rq->ctx->loop);
        is_stopped |= uv_now(rq->ctx->loop) >= rq->deadline_ms || rq->req == NULL;
        while (!is_stopped && b->next < b->nruns && nrunning < ep->batch_concurrency) {
            gd_request_t *run = b->runs[b->next++];
            set_deadlines(run, rq->deadline_ms);
            if (gd_group_spawn(&rq->group, run_item, run) != 0) {
                collect_results(run, -ECANCELED); /* no coroutine: its calls never ran */
                write_doc(run);
                run->is_run_done = true;
                continue;
            }
            nrunning++;
        }
        if (nrunning == 0 && (is_stopped || b->next == b->nruns))
            break;
        /* The runs end by the deadline themselves; this bound only guards against a stuck one. */
        int r = gd_group_wait_any(&rq->group, rq->deadline_ms + BATCH_GRACE_MS);
        nrunning = 0;
        for (size_t k = 0; k < b->next; k++)
            nrunning += !b->runs[k]->is_run_done;
        if (r < 0) {
            ret = r;
            is_stopped = true;
        } else if (!is_stopped && b->next < b->nruns && gd_coro_sleep(0) != 0) {
            is_stopped = true; /* not started inside the stack of the run that just ended */
        }
    }
    for (; b->next < b->nruns; b->next++) {
        gd_request_t *run = b->runs[b->next];
        collect_results(run, ret == -ECANCELED ? -ECANCELED : -ETIMEDOUT);
        write_doc(run);
    }
    return ret;
}

/* The request coroutine: fan out, gather at one point, answer. */
static void run_request(void *arg)
{
    gd_request_t *rq = arg;
    gd_gather_ctx_t *ctx = rq->ctx;
    const gd_endpoint_conf_t *ep = rq->endpoint;
    int ret;

    gd_timers_t *timers = gd_sched_timers(ctx->sched);
    gd_coro_set_label(gd_coro_current(), ep->path);
    gd_group_init(&rq->group, ctx->sched);
    gd_timer_init(&rq->hangup_delay, on_hangup_delay);
    rq->is_gathering = true;
    gd_timer_start(timers, &rq->hangup_delay, gd_timers_now(timers) + HANGUP_WATCH_DELAY_MS);
    ret = rq->batch != NULL ? run_batch(rq) : run_calls(rq);
    rq->is_gathering = false;
    gd_timer_stop(timers, &rq->hangup_delay);
    gd_hangup_unwatch(&rq->hangup);
    gd_group_dispose(&rq->group);

    const gd_call_result_t *results = rq->batch != NULL ? NULL : rq->results;
    if (rq->batch == NULL)
        collect_results(rq, ret);
    for (size_t k = 0; rq->batch != NULL && k < rq->batch->nruns; k++) {
        /* each run's calls, as a single request's are (the batch's access line has none) */
        const gd_request_t *run = rq->batch->runs[k];
        gd_access_count_calls(ctx->metrics, ep, run->results);
        gd_access_log_failures(rq->request_id, ep, run->results);
    }
    if (rq->req == NULL) {
        record_client_gone(rq, results); /* h2o let go of the request: an HTTP/2 reset */
    } else if (ret == -ECANCELED && !ctx->is_aborting) {
        /* The HTTP/1 client hung up: h2o still holds the request and must see it answered,
         * which closes the connection. */
        rq->req->http1_is_persistent = 0;
        size_t len = gd_respond_error(&ctx->responder, rq->req, NULL, 499, "client_closed_request",
                                      "the client closed its connection", NULL, NULL);
        record(rq, 499, len, "-", results);
    } else {
        respond(rq);
    }
    finish_request(rq);
}

/* Starts @rq, which holds a slot: deadlines, then its coroutine. */
static void start_request(gd_request_t *rq)
{
    gd_gather_ctx_t *ctx = rq->ctx;
    const gd_endpoint_conf_t *ep = rq->endpoint;
    int r;

    /* The loop's clock is cached at the start of its iteration and counts whole ms: refreshed
     * and rounded up, so that no timeout ever fires before its full duration has passed. The
     * deadlines count from here, not from the arrival: time spent queued is bounded apart. */
    uv_update_time(ctx->loop);
    uint64_t now_ms = uv_now(ctx->loop) + 1;
    rq->deadline_ms = now_ms + ep->timeout_ms;
    for (size_t i = 0; rq->batch == NULL && i < ep->ncalls; i++) {
        gd_call_t *call = rq->calls[i];
        call->started_at_ns = rq->started_at_ns;
        call->timeout_ms = ep->calls[i].timeout_ms;
        call->deadline_ms = now_ms + ep->calls[i].timeout_ms;
    }
    link_in_flight(ctx, rq);
    if ((r = gd_coro_spawn(ctx->sched, run_request, rq, NULL)) != 0) {
        unlink_in_flight(ctx, rq);
        answer_error(rq, 503, "overloaded",
                     r == -EAGAIN ? "no coroutine is free for this request"
                                  : "out of memory for a request coroutine",
                     "retry-after", "1");
        detach(rq);
        free_request(rq);
        gd_gate_release(&ctx->line);
    }
}

static void on_req_dispose(void *p)
{
    struct dispose_slot *slot = p;
    gd_request_t *rq = slot->rq;
    gd_gather_ctx_t *ctx = slot->ctx;

    gd_h2reset_note(slot->req, rq == NULL, ctx->config->http2_reset_budget,
                    rq != NULL ? rq->client : NULL, uv_now(ctx->loop), ctx->metrics);
    if (rq == NULL)
        return; /* answered and finished before h2o let go of the request */
    rq->req = NULL;
    rq->dispose_slot = NULL;
    if (rq->is_gathering) {
        /* The calls stop now; the coroutine wakes on a later iteration to count and log. */
        gd_timer_stop(gd_sched_timers(rq->ctx->sched), &rq->hangup_delay);
        gd_hangup_unwatch(&rq->hangup);
        gd_group_cancel(&rq->group);
        return;
    }
    if (gd_gate_is_waiting(&rq->waiter)) {
        /* Gone while queued: it leaves the line (a slot granted to it goes to the next). */
        gd_gate_cancel(&rq->waiter);
        record_client_gone(rq, NULL);
        free_request(rq);
    }
}

/* Every slot stayed taken for as long as the request may wait (queue_timeout_ms). */
static void answer_overloaded(gd_request_t *rq)
{
    char msg[256];

    snprintf(msg, sizeof(msg),
             "all %zu request slots of this thread (max_requests_in_flight) stayed taken for "
             "%" PRIu64 " ms (queue_timeout_ms)",
             rq->ctx->line.limit, rq->view->config->queue_timeout_ms);
    answer_error(rq, 503, "overloaded", msg, "retry-after", "1");
}

static void on_line_end(gd_gate_waiter_t *waiter, bool is_granted)
{
    gd_request_t *rq = (gd_request_t *)waiter;
    gd_gather_ctx_t *ctx = rq->ctx;

    /* h2o reads nothing while it processes a request, so it cannot tell that an HTTP/1 client
     * left while queued: checked before the request uses its slot. */
    int state = is_granted ? gd_hangup_check(rq->req) : GD_HANGUP_OPEN;
    /* A half-closed client still reads: it is answered like the others (issue 15). */
    rq->is_half_closed = state == GD_HANGUP_HALF_CLOSED;
    if (state == GD_HANGUP_GONE) {
        /* Nobody will read the answer: the slot goes to the next in line. */
        answer_error(rq, 499, "client_closed_request",
                     "the client closed its connection while the request was queued", NULL, NULL);
        detach(rq);
        free_request(rq);
        gd_gate_release(&ctx->line);
        return;
    }
    if (is_granted) {
        start_request(rq);
        return;
    }
    if (ctx->is_aborting)
        answer_error(rq, 503, "shutting_down", "the server is shutting down", NULL, NULL);
    else
        answer_overloaded(rq);
    detach(rq);
    free_request(rq);
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

/* Renders the calls of @rq from @in (its values, its arena). Returns 0, or -EINVAL with the
 * client's error in @err. */
static int prepare_calls(gd_request_t *rq, gd_call_input_t *in, char *err, size_t errlen)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;

    if (ep->has_dependencies)
        in->values = new_graph(rq, in);
    for (size_t i = 0; i < ep->ncalls; i++) {
        const gd_source_t *src = &rq->view->sources[ep->calls[i].source];
        gd_call_t *call = gd_arena_alloc(&rq->arena, src->ops->size);
        memset(call, 0, src->ops->size);
        rq->calls[i] = call;
        if (gd_call_prepare(call, src->ops, &ep->calls[i], in, err, errlen) != 0)
            return -EINVAL;
    }
    return 0;
}

/* Makes batch request @rq's runs, one per item of its list, each with {item} bound and its
 * calls rendered from @in. Returns 0, or -EINVAL with the client's error in @err (more items
 * than the endpoint's max_items, a value that cannot go where it is used). */
static int prepare_batch(gd_request_t *rq, const gd_call_input_t *in, char *err, size_t errlen)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    const gd_param_t *list = &ep->params[ep->batch_list];
    const gd_strv_t *lit = &rq->values[ep->batch_list];
    gd_jbuf_t json = {0};
    size_t n = 0;

    gd_foreach_list_json(list, lit->base, lit->len, &json);
    h2o_iovec_t text = gd_arena_strdup(&rq->arena, json.buf, json.len);
    free(json.buf);
    gd_foreach_items(text.base, text.len, NULL, 0, &n);
    if (n > ep->batch_max_items) {
        snprintf(err, errlen, "parameter \"%s\" has %zu items; this endpoint takes at most %zu "
                 "(its max_items)", list->name, n, ep->batch_max_items);
        return -EINVAL;
    }
    struct batch *b = gd_arena_alloc(&rq->arena, sizeof(*b));
    gd_strv_t *items = gd_arena_alloc(&rq->arena, sizeof(*items) * (n + 1));
    *b = (struct batch){.runs = gd_arena_alloc(&rq->arena, sizeof(*b->runs) * (n + 1))};
    memset(b->runs, 0, sizeof(*b->runs) * (n + 1));
    gd_foreach_items(text.base, text.len, items, n, &n);
    rq->batch = b;
    for (size_t k = 0; k < n; k++) {
        gd_request_t *run = new_request(rq->ctx, rq->req, ep, rq->request_id, rq->client,
                                        rq->started_at_ns, rq);
        b->runs[b->nruns++] = run; /* freed with the batch from here on */
        gd_strv_t *values = gd_arena_alloc(&run->arena, sizeof(*values) * (ep->nparams + 1));
        memcpy(values, rq->values, sizeof(*values) * ep->nparams);
        gd_strv_t item = items[k];
        if (item.base[0] == '"') { /* a string_list's: its text */
            char *p = gd_arena_alloc_text(&run->arena, item.len + 1);
            item.len = gd_json_unquote(item.base, item.len, p);
            p[item.len] = '\0';
            item.base = p;
        }
        values[ep->batch_item] = item;
        run->values = values;
        gd_call_input_t run_in = *in;
        run_in.values = values;
        run_in.arena = &run->arena;
        if (prepare_calls(run, &run_in, err, errlen) != 0)
            return -EINVAL;
    }
    return 0;
}

void gd_gather_start(gd_gather_ctx_t *ctx, h2o_req_t *req, const gd_endpoint_conf_t *ep,
                     const gd_strv_t *values, const char *request_id, const char *client,
                     uint64_t started_at_ns)
{
    gd_request_t *rq = new_request(ctx, req, ep, request_id, client, started_at_ns, NULL);
    gd_traceparent_t trace_buf;
    rq->values = values;
    gd_call_input_t in = {.values = values,
                          .request_id = rq->request_id,
                          .trace = take_traceparent(req, &trace_buf),
                          .headers = &req->headers,
                          .arena = &rq->arena,
                          .body = {req->entity.base, req->entity.base != NULL ? req->entity.len : 0}};
    ssize_t ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    char err[512];

    if (ct >= 0)
        in.content_type = (gd_strv_t){req->headers.entries[ct].value.base,
                                      req->headers.entries[ct].value.len};
    /* Slow readers already hold all the room there is: no call is made for an answer that
     * could only be refused. */
    int full = gd_outbox_check(ctx->responder.outbox, req, 0);
    if (full != 0) {
        answer_unsent_full(rq, full);
        free_request(rq);
        return;
    }
    /* Rendered now, before the request waits: a 400 is never deferred, and what a queued
     * request holds is its own. */
    if ((ep->is_batch ? prepare_batch(rq, &in, err, sizeof(err))
                      : prepare_calls(rq, &in, err, sizeof(err))) != 0) {
        answer_error(rq, 400, "invalid_parameter", err, NULL, NULL);
        free_request(rq);
        return;
    }
    rq->dispose_slot = h2o_mem_alloc_shared(&req->pool, sizeof(*rq->dispose_slot), on_req_dispose);
    *rq->dispose_slot = (struct dispose_slot){.rq = rq, .req = req, .ctx = ctx};

    /* An HTTP/2 request takes its slot through the line even when one is free, which starts it
     * on the next loop iteration rather than now: h2o reads a connection's frames in batches,
     * so a stream reset in the same batch as its HEADERS (the Rapid Reset attack sends them
     * together) leaves the line before any of its calls starts, and costs no upstream
     * connection. It is still counted against the connection's http2_reset_budget. */
    bool is_http2 = req->version >= 0x200;
    if (!is_http2 && gd_gate_try_acquire(&ctx->line)) {
        start_request(rq);
        return;
    }
    bool is_slot_free = ctx->line.held < ctx->line.limit && ctx->line.waiting == 0;
    /* queue_timeout_ms counts from its arrival: a request that waited unread in the kernel
     * (the read bound) has that much less to wait in the line, none left at the timeout. */
    uint64_t waited_ms = (uv_hrtime() - started_at_ns) / 1000000;
    uint64_t timeout_ms = ctx->config->queue_timeout_ms;
    if ((timeout_ms == 0 || waited_ms >= timeout_ms) && !(is_http2 && is_slot_free)) {
        answer_overloaded(rq);
        detach(rq);
        free_request(rq);
        return;
    }
    uv_update_time(ctx->loop);
    gd_gate_wait(&ctx->line, &rq->waiter, uv_now(ctx->loop) + 1 + timeout_ms - waited_ms,
                 on_line_end);
}

void gd_gather_ctx_init(gd_gather_ctx_t *ctx, size_t max_in_flight)
{
    h2o_linklist_init_anchor(&ctx->_in_flight);
    ctx->in_flight = 0;
    ctx->is_aborting = false;
    gd_responder_init(&ctx->responder);
    gd_gate_init(&ctx->line, gd_sched_timers(ctx->sched), max_in_flight);
}

void gd_gather_ctx_switch(gd_gather_ctx_t *ctx, gd_gather_view_t *view)
{
    gd_gather_view_t *old = ctx->view;

    ctx->view = view;
    ctx->config = view->config;
    ctx->sources = view->sources;
    if (old != NULL && old->requests == 0)
        old->on_unused(old);
}

void gd_gather_ctx_dispose(gd_gather_ctx_t *ctx)
{
    gd_gate_dispose(&ctx->line);
    gd_responder_dispose(&ctx->responder);
}

void gd_gather_abort_all(gd_gather_ctx_t *ctx)
{
    ctx->is_aborting = true;
    gd_gate_refuse_all(&ctx->line);
    for (h2o_linklist_t *l = ctx->_in_flight.next; l != &ctx->_in_flight; l = l->next) {
        gd_request_t *rq = H2O_STRUCT_FROM_MEMBER(gd_request_t, in_flight_link, l);
        if (rq->is_gathering)
            gd_group_cancel(&rq->group); /* wakes it on a later iteration: nothing is freed here */
    }
}

static json_t *describe_request(const gd_request_t *rq, const char *state, uint64_t now_ns)
{
    const gd_endpoint_conf_t *ep = rq->endpoint;
    json_t *calls = json_array();

    for (size_t i = 0; rq->batch == NULL && i < ep->ncalls; i++) { /* a batch: in its runs */
        const gd_call_conf_t *cc = &ep->calls[i];
        gd_call_progress_t p;
        gd_call_progress(rq->calls[i], &p);
        const struct fanout *f = rq->graph != NULL ? fanout_of(rq, i) : NULL;
        if (f != NULL) /* a for_each: its items are calls of their own; "attempt": started */
            p = (gd_call_progress_t){rq->graph->states[i] == CALL_RUNNING ? "running" : "done",
                                     (unsigned)f->next};
        json_array_append_new(
            calls, json_pack("{s:s, s:s, s:s, s:s, s:I}", "name", cc->name, "kind",
                             cc->type == GD_CALL_TYPE_SQL ? "sql" : "http", "source",
                             cc->type == GD_CALL_TYPE_SQL ? "postgres" : cc->upstream->name,
                             "state", p.state, "attempt", (json_int_t)p.attempt));
    }
    return json_pack("{s:s, s:s, s:s%, s:s, s:s, s:I, s:s, s:o}", "method", ep->method, "endpoint",
                     ep->path, "path", rq->path.base, rq->path.len, "request_id",
                     rq->request_id, "client", rq->client, "age_ms",
                     (json_int_t)((now_ns - rq->started_at_ns) / 1000000), "state", state,
                     "calls", calls);
}

size_t gd_gather_describe(const gd_gather_ctx_t *ctx, json_t *out, size_t max)
{
    uint64_t now_ns = uv_hrtime();
    size_t omitted = 0;

    for (const h2o_linklist_t *l = ctx->_in_flight.next; l != &ctx->_in_flight; l = l->next) {
        const gd_request_t *rq = H2O_STRUCT_FROM_MEMBER(gd_request_t, in_flight_link, l);
        if (json_array_size(out) >= max) {
            omitted++;
            continue;
        }
        json_array_append_new(out,
                              describe_request(rq, rq->is_gathering ? "gathering" : "answering", now_ns));
    }
    for (const gd_gate_waiter_t *w = gd_gate_first_waiter(&ctx->line); w != NULL;
         w = gd_gate_next_waiter(&ctx->line, w)) {
        /* The line's waiters are requests: the waiter is a request's first member. */
        const gd_request_t *rq = (const gd_request_t *)w;
        if (json_array_size(out) >= max) {
            omitted++;
            continue;
        }
        json_array_append_new(out, describe_request(rq, "queued", now_ns));
    }
    return omitted;
}
