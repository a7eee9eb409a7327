#include "front/dispatch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "front/auth.h"
#include "front/client.h"
#include "front/cors.h"
#include "front/framing.h"
#include "front/limit.h"
#include "gather/access.h"
#include "gather/h2reset.h"
#include "gather/respond.h"
#include "ops/metrics.h"
#include "ops/trace.h"

/* An error of gatherd's own, answered at once, counted and logged. */
static void answer_error(gd_gather_ctx_t *ctx, h2o_req_t *req, const gd_endpoint_conf_t *ep,
                         const char *request_id, const char *client, uint64_t started_at_ns,
                         int status, const char *code, const char *message, const char *hname,
                         const char *hvalue)
{
    gd_access_t a = {.request_id = request_id,
                     .client = client,
                     .method = req->input.method,
                     .path = req->input.path,
                     .endpoint = ep,
                     .status = status,
                     .started_at_ns = started_at_ns,
                     .complete = "-"};

    a.bytes =
        gd_respond_error(&ctx->responder, req, ep != NULL ? &ep->compress : &ctx->config->compress,
                         status, code, message, hname, hvalue);
    gd_access_record(ctx->metrics, &a);
}

/* A CORS preflight that passed: 204 with the headers gd_cors_preflight() added. */
static void answer_preflight(gd_gather_ctx_t *ctx, h2o_req_t *req, const gd_endpoint_conf_t *ep,
                             const char *request_id, const char *client, uint64_t started_at_ns)
{
    gd_access_t a = {.request_id = request_id,
                     .client = client,
                     .method = req->input.method,
                     .path = req->input.path,
                     .endpoint = ep,
                     .status = 204,
                     .started_at_ns = started_at_ns,
                     .complete = "-"};

    gd_respond_empty(req, 204);
    gd_access_record(ctx->metrics, &a);
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

/* Checks the request head against the config's limits: 0, or the status (414, 431) with the
 * error code and message in @code and @err. Counts every field line, as sent. */
static int check_head(const gd_config_t *config, h2o_req_t *req, const char **code, char *err,
                      size_t errlen)
{
    size_t bytes = 0;

    if (req->input.path.len > config->max_url_bytes) {
        *code = "uri_too_long";
        snprintf(err, errlen, "the request target is longer than %zu bytes", config->max_url_bytes);
        return 414; /* RFC 9110 section 15.5.15 */
    }
    if (req->headers.size > config->max_headers) {
        *code = "too_many_headers";
        snprintf(err, errlen, "the request has more than %zu header fields", config->max_headers);
        return 431; /* RFC 6585 section 5 */
    }
    for (size_t i = 0; i < req->headers.size; i++)
        bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    if (bytes > config->max_header_bytes) {
        *code = "headers_too_large";
        snprintf(err, errlen, "the request's header fields are larger than %zu bytes",
                 config->max_header_bytes);
        return 431;
    }
    return 0;
}

/* A routed request past its auth, before its client's rate limit: what the rest needs. */
struct admission {
    gd_gather_ctx_t *ctx;
    h2o_req_t *req;
    const gd_endpoint_conf_t *ep;
    const char *request_id, *client; /* in req's pool */
    uint64_t started_at_ns;
    const char *query; /* in req's pool */
    size_t query_len;
    const gd_strv_t *captures; /* into req's pool: on the stack, or kept_admission's */
    json_t *claims;            /* owned: the verified JWT's, or NULL */
    gd_limit_ask_t ask;        /* of a cluster-scoped client limit */
};

/* An admission that waits for Redis: kept in the request's pool with its captures. */
struct kept_admission {
    struct admission ad;
    gd_strv_t captures[GD_ROUTE_MAX_CAPTURES];
};

/* h2o lets the request go. While Redis was still asked (the client reset its stream), the
 * answer, if it comes, is dropped, and the request is counted and logged as the client gone
 * (499) and noted against its connection's http2_reset_budget; nothing of h2o's is answered
 * or freed here (gd_h2reset_note() is safe in dispose callbacks). The request's pool, which
 * the access line reads, is still whole while its dispose callbacks run. */
static void on_admission_dispose(void *p)
{
    struct admission *ad = &((struct kept_admission *)p)->ad;

    if (gd_limit_is_asking(&ad->ask)) {
        gd_limit_cancel(&ad->ask);
        gd_access_t a = {.request_id = ad->request_id,
                         .client = ad->client,
                         .method = ad->req->input.method,
                         .path = ad->req->input.path,
                         .endpoint = ad->ep,
                         .status = 499,
                         .started_at_ns = ad->started_at_ns,
                         .complete = "-"};
        gd_access_record(ad->ctx->metrics, &a);
        gd_h2reset_note(ad->req, false, ad->ctx->config->http2_reset_budget, ad->client,
                        uv_now(ad->ctx->loop), ad->ctx->metrics);
    }
    json_decref(ad->claims);
    ad->claims = NULL;
}

/* The rest of the front door's work once the client's rate limit decided (@over 1: 429). */
static void admit(struct admission *ad, int over, uint64_t retry_after_s)
{
    gd_gather_ctx_t *ctx = ad->ctx;
    h2o_req_t *req = ad->req;
    const gd_endpoint_conf_t *ep = ad->ep;
    const char *request_id = ad->request_id, *client = ad->client;
    uint64_t started_at_ns = ad->started_at_ns;
    json_t *claims = ad->claims;
    gd_auth_refusal_t refusal;
    char err[512];
    int r;

    ad->claims = NULL; /* taken: released here */
    if (over) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%llu", (unsigned long long)retry_after_s);
        snprintf(err, sizeof(err), "too many requests: at most %s every %llu ms; retry in %s s",
                 ep->rate_limit->limit_header, (unsigned long long)ep->rate_limit->per_ms, ra);
        gd_metrics_count_rate_limited(ctx->metrics, ep);
        answer_error(ctx, req, ep, request_id, client, started_at_ns, 429, "rate_limited", err,
                     "retry-after", ra);
        json_decref(claims);
        return;
    }

    gd_header_view_t *headers =
        h2o_mem_alloc_pool(&req->pool, sizeof(*headers) * (req->headers.size + 1));
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        headers[i] =
            (gd_header_view_t){{h->name->base, h->name->len}, {h->value.base, h->value.len}};
    }
    gd_strv_t *values = h2o_mem_alloc_pool(&req->pool, sizeof(*values) * (ep->nparams + 1));
    char *qscratch = h2o_mem_alloc_pool(&req->pool, gd_route_scratch_bytes(ep, ad->query_len));
    r = gd_route_extract_params(ep, ad->captures, ad->query, ad->query_len, headers,
                                req->headers.size, qscratch, values, err, sizeof(err));
    if (r == -ENOMEM) {
        answer_error(ctx, req, ep, request_id, client, started_at_ns, 503, "overloaded",
                     "out of memory checking parameters", NULL, NULL);
    } else if (r != 0) {
        answer_error(ctx, req, ep, request_id, client, started_at_ns, 400, "invalid_parameter", err,
                     NULL, NULL);
    } else if (claims != NULL && gd_auth_fill_claims(ep, req, claims, values, &refusal) != 0) {
        answer_error(ctx, req, ep, request_id, client, started_at_ns, refusal.status, refusal.code,
                     refusal.message, "www-authenticate", refusal.challenge);
    } else {
        /* The claims' strings are borrowed by values for this call only. */
        gd_gather_start(ctx, req, ep, values, request_id, client, started_at_ns);
    }
    json_decref(claims);
}

static void on_limit_answer(gd_limit_ask_t *ask, int over, uint64_t retry_after_s)
{
    admit(H2O_STRUCT_FROM_MEMBER(struct admission, ask, ask), over, retry_after_s);
}

void gd_dispatch(const gd_router_t *router, gd_gather_ctx_t *ctx, h2o_req_t *req,
                 uint64_t unread_ns)
{
    /* Its time counts from its arrival: the client waited while it was unread too. */
    uint64_t started_at_ns = uv_hrtime() - unread_ns;
    h2o_iovec_t target = req->input.path, method = req->input.method;
    const char *qmark = memchr(target.base, '?', target.len);
    size_t path_len = qmark != NULL ? (size_t)(qmark - target.base) : target.len;
    const char *query = qmark != NULL ? qmark + 1 : "";
    size_t query_len = qmark != NULL ? target.len - path_len - 1 : 0;
    gd_strv_t captures[GD_ROUTE_MAX_CAPTURES];
    const gd_endpoint_conf_t *ep;
    char allow[256], err[512];
    const char *request_id = take_request_id(req);
    const char *client = gd_client_identify(ctx->config, req);
    h2o_iovec_t preflight_method;
    int r;

    const char *head_code = NULL;
    int head_status = check_head(ctx->config, req, &head_code, err, sizeof(err));
    if (ctx->is_aborting || head_status != 0 ||
        req->entity.len > ctx->config->max_request_body_bytes)
        gd_cors_apply(ctx->config->cors, req); /* so that a page can read these errors too */
    if (head_status != 0 && !ctx->is_aborting) {
        req->http1_is_persistent = 0;
        answer_error(ctx, req, NULL, request_id, client, started_at_ns, head_status, head_code, err,
                     NULL, NULL);
        return;
    }
    if (ctx->is_aborting) {
        answer_error(ctx, req, NULL, request_id, client, started_at_ns, 503, "shutting_down",
                     "the server is shutting down", NULL, NULL);
        return;
    }
    const char *why;
    if (gd_framing_check(req, &why) == GD_FRAMING_AMBIGUOUS) {
        /* Nothing after it on this connection can be framed for sure: it is closed. */
        req->http1_is_persistent = 0;
        answer_error(ctx, req, NULL, request_id, client, started_at_ns, 400, "bad_request", why, NULL,
                     NULL);
        return;
    }
    if (req->entity.len > ctx->config->max_request_body_bytes) {
        snprintf(err, sizeof(err), "the request body is larger than %zu bytes",
                 ctx->config->max_request_body_bytes);
        req->http1_is_persistent = 0;
        answer_error(ctx, req, NULL, request_id, client, started_at_ns, 413, "too_large", err, NULL,
                     NULL);
        return;
    }
    /* HEAD is answered like GET, without the body. */
    if (h2o_memis(method.base, method.len, H2O_STRLIT("HEAD")))
        method = h2o_iovec_init(H2O_STRLIT("GET"));
    char *scratch = h2o_mem_alloc_pool(&req->pool, path_len + 1);
    /* A CORS preflight asks about the endpoint of the method it names. One to an endpoint
     * without CORS, or to no endpoint, is routed as the OPTIONS request it is (405, 404). */
    if (gd_cors_is_preflight(req, &preflight_method)) {
        h2o_iovec_t m = preflight_method;
        if (h2o_memis(m.base, m.len, H2O_STRLIT("HEAD")))
            m = h2o_iovec_init(H2O_STRLIT("GET"));
        r = gd_router_match(router, m.base, m.len, target.base, path_len, scratch, captures, &ep,
                            allow, sizeof(allow));
        if (r == 0 && ep->cors != NULL) {
            if (gd_cors_preflight(ep->cors, ep, req, preflight_method, err, sizeof(err)) == 0)
                answer_preflight(ctx, req, ep, request_id, client, started_at_ns);
            else
                answer_error(ctx, req, ep, request_id, client, started_at_ns, 403, "cors_rejected",
                             err, NULL, NULL);
            return;
        }
    }
    r = gd_router_match(router, method.base, method.len, target.base, path_len, scratch, captures,
                        &ep, allow, sizeof(allow));
    /* Every answer from here on, errors included, carries the CORS headers of its endpoint (the
     * top level's when none matched), so that a page can read why it failed. */
    gd_cors_apply(r == 0 ? ep->cors : ctx->config->cors, req);
    if (r == GD_ROUTE_NO_MATCH) {
        snprintf(err, sizeof(err), "no endpoint matches %.*s %.*s",
                 (int)(req->input.method.len < 32 ? req->input.method.len : 32),
                 req->input.method.base, (int)(path_len < 200 ? path_len : 200), target.base);
        answer_error(ctx, req, NULL, request_id, client, started_at_ns, 404, "not_found", err, NULL,
                     NULL);
        return;
    }
    if (r == GD_ROUTE_BAD_METHOD) {
        snprintf(err, sizeof(err), "method %.*s is not allowed here; allowed: %s",
                 (int)(req->input.method.len < 32 ? req->input.method.len : 32),
                 req->input.method.base, allow);
        answer_error(ctx, req, NULL, request_id, client, started_at_ns, 405, "method_not_allowed",
                     err, "allow", allow);
        return;
    }
    if (r != 0) {
        answer_error(ctx, req, NULL, request_id, client, started_at_ns, 400, "bad_request",
                     "the path has a malformed percent-encoding", NULL, NULL);
        return;
    }

    /* Before the parameters: a client without credentials learns nothing about them. */
    gd_auth_refusal_t refusal;
    json_t *claims = NULL; /* the verified JWT's, until the values are filled in below */
    if (gd_auth_check(ep->auth, req, &claims, &refusal) != 0) {
        answer_error(ctx, req, ep, request_id, client, started_at_ns, refusal.status, refusal.code,
                     refusal.message, "www-authenticate", refusal.challenge);
        return;
    }

    /* Over its client's rate limit: 429 before any call starts (RFC 6585 section 4). A
     * cluster-scoped limit asks Redis first: the rest follows from its answer (on_limit_answer),
     * the admission kept in the request's pool. */
    struct admission here = {.ctx = ctx,
                             .req = req,
                             .ep = ep,
                             .request_id = request_id,
                             .client = client,
                             .started_at_ns = started_at_ns,
                             .query = query,
                             .query_len = query_len,
                             .captures = captures,
                             .claims = claims};
    struct admission *ad = &here;
    if (ep->rate_limit != NULL && ep->rate_limit->is_cluster && ctx->redis != NULL) {
        struct kept_admission *k =
            h2o_mem_alloc_shared(&req->pool, sizeof(*k), on_admission_dispose);
        k->ad = here;
        memcpy(k->captures, captures, sizeof(captures));
        k->ad.captures = k->captures;
        ad = &k->ad;
    }
    uint64_t retry_after_s = 0, now_ms = uv_now(ctx->loop);
    r = gd_limit_check(ep, req, client, claims, started_at_ns / 1000000, ctx->redis,
                       now_ms + (ep->timeout_ms < 1000 ? ep->timeout_ms : 1000), &ad->ask,
                       on_limit_answer, &retry_after_s);
    if (r == GD_LIMIT_ASKING)
        return; /* the claims go with the admission */
    if (ad != &here)
        ad->claims = NULL; /* decided at once (Redis down): the copy keeps nothing */
    admit(&here, r, retry_after_s);
}
