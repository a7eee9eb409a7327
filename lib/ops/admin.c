#include "ops/admin.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>

#include "base/breaker.h"
#include "base/redis_stats.h"
#include "base/util.h"
#include "ops/inspect.h"
#include "ops/log.h"
#include "json/json.h"

struct admin_connection {
    uv_tcp_t tcp;
    gd_admin_t *admin;
};

struct gd_admin {
    /* The running config: swapped by a reload (gd_admin_set_config()) under config_mutex,
     * which whatever reads it holds (scrapes and /debug views, never a request path). */
    const gd_config_t *config;
    pthread_mutex_t config_mutex;
    const gd_metrics_reloads_t *reloads; /* NULL: none counted */
    const gd_metrics_t *const *metrics;
    size_t nmetrics;
    int fd;
    pthread_t thread;
    bool has_thread;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop;
    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    size_t connections;
    bool is_stopping;
    atomic_int state;
    /* The live view: questions to the workers (gd_admin_set_inspector()) */
    gd_admin_inspect_fn inspect;
    void *inspect_data;
    uv_async_t inspected; /* a worker's part arrived */
    pthread_mutex_t inspected_mutex; /* guards sending to inspected against its close */
    bool is_inspected_closed;
    h2o_linklist_t pending; /* of struct pending_inspection, waiting for parts */
};

/* A /debug request waiting for the workers' parts. */
struct pending_inspection {
    h2o_linklist_t link;
    gd_admin_t *admin;
    h2o_req_t *req; /* NULL once h2o disposed of it (the client left) */
    struct pending_inspection **slot; /* in req's pool: cleared when the answer goes first */
    gd_inspection_t *inspection;
    uv_timer_t timer; /* the answer goes without the parts not in by then */
};

static void send_text(h2o_req_t *req, int status, const char *reason, const char *type, char *body,
                      size_t len)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t buf = h2o_iovec_init(body, len);

    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    h2o_start_response(req, &generator);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

static void send_json_status(h2o_req_t *req, int status, const char *json)
{
    h2o_iovec_t body = h2o_strdup(&req->pool, json, SIZE_MAX);
    send_text(req, status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Service Unavailable",
              "application/json", body.base, body.len);
}

uint64_t gd_admin_heartbeat_age_ms(uint64_t now_ms, uint64_t heartbeat_ms)
{
    /* A heartbeat published after the clock was read is newer than "now": age 0, not a
     * wrapped-around unsigned difference of 1.8e19 ms. */
    return heartbeat_ms >= now_ms ? 0 : now_ms - heartbeat_ms;
}

/* Why the process is unhealthy, or NULL: a worker loop that stopped turning. */
static const char *health_problem(gd_admin_t *a, char *buf, size_t cap)
{
    for (size_t i = 0; i < a->nmetrics; i++) {
        gd_metrics_gauges_t g;
        gd_metrics_read_gauges(a->metrics[i], &g);
        /* The gauges first, then the clock: a heartbeat is never newer than now but for the
         * race the age function clamps. */
        uint64_t now_ms = uv_hrtime() / 1000000;
        uint64_t age_ms = gd_admin_heartbeat_age_ms(now_ms, g.heartbeat_ms);
        if (g.heartbeat_ms == 0 || age_ms > GD_ADMIN_HEARTBEAT_STALE_MS) {
            snprintf(buf, cap, "worker %zu: event loop has not turned for %llu ms", i,
                     (unsigned long long)(g.heartbeat_ms == 0 ? now_ms : age_ms));
            return buf;
        }
    }
    return NULL;
}

/* What is wrong with Postgres, or NULL: a worker whose pool has no live connection. When
 * @ret_is_blocking is set, the postgres.readiness policy keeps traffic away for it. */
static const char *postgres_problem(gd_admin_t *a, char *buf, size_t cap, bool *ret_is_blocking)
{
    pthread_mutex_lock(&a->config_mutex);
    gd_pg_readiness_t readiness = a->config->postgres.readiness;
    pthread_mutex_unlock(&a->config_mutex);
    for (size_t i = 0; i < a->nmetrics; i++) {
        gd_metrics_gauges_t g;
        gd_metrics_read_gauges(a->metrics[i], &g);
        if (g.is_pg_ready)
            continue;
        switch (readiness) {
        case GD_PG_READINESS_FIRST_CONNECT:
            *ret_is_blocking = !g.has_pg_been_ready;
            break;
        case GD_PG_READINESS_CONNECTED:
            *ret_is_blocking = true;
            break;
        case GD_PG_READINESS_IGNORED:
            *ret_is_blocking = false;
            break;
        }
        snprintf(buf, cap, "postgres: worker %zu has no live connection", i);
        return buf;
    }
    return NULL;
}

/* Why the process should not get traffic, or NULL. */
static const char *readiness_problem(gd_admin_t *a, char *buf, size_t cap)
{
    switch ((gd_admin_state_t)atomic_load(&a->state)) {
    case GD_ADMIN_STARTING:
        return "starting";
    case GD_ADMIN_DRAINING:
        return "draining: shutting down";
    case GD_ADMIN_SERVING:
        break;
    }
    if (health_problem(a, buf, cap) != NULL)
        return buf;
    bool is_blocking = false;
    return postgres_problem(a, buf, cap, &is_blocking) != NULL && is_blocking ? buf : NULL;
}

/* A 200 {"@key":@ok_value}, with "degraded": @degraded when that is not NULL (a part is down
 * that the readiness policy does not take traffic away for), or a 503 that says @problem. */
static void answer_probe(h2o_req_t *req, const char *key, const char *ok_value, const char *problem,
                         const char *degraded, const char *extra)
{
    char body[512];
    if (problem == NULL) {
        size_t n = (size_t)snprintf(body, sizeof(body), "{\"%s\":%s", key, ok_value);
        if (degraded != NULL) {
            n += (size_t)snprintf(body + n, sizeof(body) - n, ",\"degraded\":");
            n += gd_json_quote(degraded, strlen(degraded), body + n, sizeof(body) - n - 2);
        }
        if (extra != NULL && n + strlen(extra) + 2 < sizeof(body))
            n += (size_t)snprintf(body + n, sizeof(body) - n, "%s", extra);
        body[n++] = '}';
        body[n] = '\0';
        send_json_status(req, 200, body);
        return;
    }
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"%s\":%s,\"reason\":", key,
                                strcmp(ok_value, "true") == 0 ? "false" : "\"unhealthy\"");
    n += gd_json_quote(problem, strlen(problem), body + n, sizeof(body) - n - 2);
    if (extra != NULL && n + strlen(extra) + 2 < sizeof(body))
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s", extra);
    body[n++] = '}';
    body[n] = '\0';
    send_json_status(req, 503, body);
}

/* The most requests /debug/requests lists (the rest are counted): the view must stay readable
 * and cheap for a worker to write while it is busy. */
#define DEBUG_MAX_REQUESTS 1000
/* How long /debug waits for the workers: a loop that has not answered by then is stuck. */
#define DEBUG_TIMEOUT_MS 1000

static void on_pending_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static json_t *unanswered(const gd_inspection_t *in, size_t nworkers)
{
    json_t *missing = json_array();

    for (size_t i = 0; i < nworkers; i++)
        if (gd_inspection_part(in, i) == NULL)
            json_array_append_new(missing, json_integer((json_int_t)i));
    return missing;
}

/* {"requests": [...], "in_flight": n, "queued": n, "omitted": n, "unanswered_workers": [...]} */
static json_t *merge_requests(gd_admin_t *a, const gd_inspection_t *in)
{
    json_t *all = json_array();
    json_int_t in_flight = 0, queued = 0, omitted = 0;

    for (size_t i = 0; i < a->nmetrics; i++) {
        json_t *part = gd_inspection_part(in, i), *r;
        size_t k;
        if (part == NULL || json_object_get(part, "stopped") != NULL)
            continue;
        in_flight += json_integer_value(json_object_get(part, "in_flight"));
        queued += json_integer_value(json_object_get(part, "queued"));
        omitted += json_integer_value(json_object_get(part, "omitted"));
        json_array_foreach(json_object_get(part, "requests"), k, r)
        {
            if (json_array_size(all) >= DEBUG_MAX_REQUESTS) {
                omitted++;
                continue;
            }
            json_t *copy = json_pack("{s:I}", "worker", (json_int_t)i);
            json_object_update(copy, r);
            json_array_append_new(all, copy);
        }
    }
    return json_pack("{s:I, s:I, s:I, s:o, s:o}", "in_flight", in_flight, "queued", queued,
                     "omitted", omitted, "requests", all, "unanswered_workers",
                     unanswered(in, a->nmetrics));
}

static const char *const breaker_states[] = {"closed", "open", "half_open"};

/* Adds @from's integer members to @to's. */
static void add_counts(json_t *to, json_t *from)
{
    const char *key;
    json_t *v;

    json_object_foreach(from, key, v)
    {
        if (json_is_integer(v))
            json_object_set_new(to, key,
                                json_integer(json_integer_value(json_object_get(to, key)) +
                                             json_integer_value(v)));
    }
}

/* {"upstreams": [{"name", "idle", "busy", "waiting", "breaker", "workers": [...]}],
 *  "postgres": {..., "workers": [...]}, "redis": {..., "workers": [...]},
 *  "unanswered_workers": [...]} */
static json_t *merge_upstreams_locked(gd_admin_t *a, const gd_inspection_t *in)
{
    static const char *const pools[] = {"postgres", "redis"};
    const gd_config_t *config = a->config;
    json_t *upstreams = json_array(), *sums[2] = {NULL, NULL};
    uint64_t now_ms = uv_hrtime() / 1000000;

    for (size_t u = 0; u < config->nupstreams; u++) {
        const gd_upstream_conf_t *uc = &config->upstreams[u];
        json_t *sum = json_pack("{s:s, s:I, s:I, s:I, s:[]}", "name", uc->name, "idle",
                                (json_int_t)0, "busy", (json_int_t)0, "waiting", (json_int_t)0,
                                "workers");
        json_object_set_new(sum, "breaker",
                            uc->breaker == NULL
                                ? json_null()
                                : json_string(breaker_states[gd_breaker_state(uc->breaker, now_ms)]));
        json_array_append_new(upstreams, sum);
    }
    for (size_t i = 0; i < a->nmetrics; i++) {
        json_t *part = gd_inspection_part(in, i), *list, *w;
        if (part == NULL || (list = json_object_get(part, "upstreams")) == NULL)
            continue;
        /* By name: a worker that has not taken a reload yet answers for the config before. */
        for (size_t k = 0; k < json_array_size(list); k++) {
            json_t *mine = json_array_get(list, k), *sum = NULL;
            const char *name = json_string_value(json_object_get(mine, "name"));
            for (size_t u = 0; name != NULL && sum == NULL && u < config->nupstreams; u++)
                if (strcmp(config->upstreams[u].name, name) == 0)
                    sum = json_array_get(upstreams, u);
            if (sum == NULL)
                continue;
            json_object_del(mine, "name");
            add_counts(sum, mine);
            json_array_append(json_object_get(sum, "workers"), mine);
        }
        for (size_t k = 0; k < 2; k++) {
            if ((w = json_object_get(part, pools[k])) == NULL)
                continue;
            if (sums[k] == NULL)
                sums[k] = json_pack("{s:[]}", "workers");
            add_counts(sums[k], w);
            json_array_append(json_object_get(sums[k], "workers"), w);
        }
    }
    json_t *doc = json_pack("{s:o}", "upstreams", upstreams);
    for (size_t k = 0; k < 2; k++)
        if (sums[k] != NULL)
            json_object_set_new(doc, pools[k], sums[k]);
    json_object_set_new(doc, "unanswered_workers", unanswered(in, a->nmetrics));
    return doc;
}

static json_t *merge_upstreams(gd_admin_t *a, const gd_inspection_t *in)
{
    pthread_mutex_lock(&a->config_mutex);
    json_t *doc = merge_upstreams_locked(a, in);
    pthread_mutex_unlock(&a->config_mutex);
    return doc;
}

static void finish_inspection(struct pending_inspection *p)
{
    gd_admin_t *a = p->admin;

    h2o_linklist_unlink(&p->link);
    if (p->req != NULL) {
        json_t *doc = gd_inspection_what(p->inspection) == GD_INSPECT_REQUESTS
                          ? merge_requests(a, p->inspection)
                          : merge_upstreams(a, p->inspection);
        char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(doc);
        h2o_iovec_t body = h2o_strdup(&p->req->pool, text, SIZE_MAX);
        free(text);
        *p->slot = NULL;
        send_text(p->req, 200, "OK", "application/json", body.base, body.len);
    }
    gd_inspection_release(p->inspection);
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_pending_closed);
}

static void on_inspection_timeout(uv_timer_t *timer)
{
    finish_inspection(timer->data);
}

/* A worker's part arrived: answers the inspections that have all theirs. */
static void on_inspected(uv_async_t *async)
{
    gd_admin_t *a = async->data;

    for (h2o_linklist_t *l = a->pending.next, *next; l != &a->pending; l = next) {
        struct pending_inspection *p = H2O_STRUCT_FROM_MEMBER(struct pending_inspection, link, l);
        next = l->next;
        if (gd_inspection_is_complete(p->inspection))
            finish_inspection(p);
    }
}

/* On a worker's thread: wakes the admin loop (never after its handle closed). */
static void on_part(void *data)
{
    gd_admin_t *a = data;

    pthread_mutex_lock(&a->inspected_mutex);
    if (!a->is_inspected_closed)
        uv_async_send(&a->inspected);
    pthread_mutex_unlock(&a->inspected_mutex);
}

/* h2o disposes of the request (the client left): the answer, when its parts are in, has nobody
 * to go to. Only a pointer is cleared: nothing re-enters h2o from here. */
static void on_debug_req_dispose(void *slot)
{
    struct pending_inspection *p = *(struct pending_inspection **)slot;
    if (p != NULL)
        p->req = NULL;
}

static void answer_debug(gd_admin_t *a, h2o_req_t *req, gd_inspect_what_t what)
{
    if (a->inspect == NULL) {
        send_json_status(req, 404, "{\"error\":\"not_found\",\"message\":\"no workers to inspect\"}");
        return;
    }
    struct pending_inspection *p = gd_xcalloc(1, sizeof(*p));
    p->admin = a;
    p->req = req;
    p->inspection = gd_inspection_new(what, a->nmetrics, DEBUG_MAX_REQUESTS, on_part, a);
    if (a->inspect(a->inspect_data, p->inspection) != 0) {
        gd_inspection_release(p->inspection);
        free(p);
        send_json_status(req, 503,
                         "{\"error\":\"busy\",\"message\":\"too many /debug requests at once\"}");
        return;
    }
    p->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*p->slot), on_debug_req_dispose);
    *p->slot = p;
    h2o_linklist_insert(&a->pending, &p->link);
    GD_REQUIRE(uv_timer_init(&a->loop, &p->timer) == 0);
    p->timer.data = p;
    GD_REQUIRE(uv_timer_start(&p->timer, on_inspection_timeout, DEBUG_TIMEOUT_MS, 0) == 0);
    if (gd_inspection_is_complete(p->inspection)) /* every worker had stopped */
        finish_inspection(p);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    gd_admin_t *a = H2O_STRUCT_FROM_MEMBER(gd_admin_t, ctx, req->conn->ctx);
    h2o_iovec_t path = req->path_normalized;
    char buf[256];

    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
        static char body[] = "{\"error\":\"method_not_allowed\",\"message\":\"use GET\"}";
        send_text(req, 405, "Method Not Allowed", "application/json", body, sizeof(body) - 1);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/healthz"))) {
        answer_probe(req, "status", "\"ok\"", health_problem(a, buf, sizeof(buf)), NULL, NULL);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/readyz"))) {
        char why[256];
        bool is_blocking = false;
        const char *problem = readiness_problem(a, buf, sizeof(buf));
        const char *degraded =
            problem == NULL ? postgres_problem(a, why, sizeof(why), &is_blocking) : NULL;
        /* Redis is never a reason to be unready: without it cluster limits hold locally at
         * their share and the shared cache is skipped. The body says which. */
        const char *redis = NULL;
        pthread_mutex_lock(&a->config_mutex); /* a reload replaces a->config */
        const gd_redis_conf_t *rc = a->config->redis;
        bool is_up = rc != NULL && atomic_load(&rc->stats->ready) > 0;
        pthread_mutex_unlock(&a->config_mutex);
        if (rc != NULL) {
            redis = is_up ? ",\"redis\":\"up\"" : ",\"redis\":\"down\"";
            if (!is_up && degraded == NULL)
                degraded = "redis: no connection ready; cluster limits are enforced locally";
        }
        answer_probe(req, "ready", "true", problem, degraded, redis);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/metrics"))) {
        size_t len;
        pthread_mutex_lock(&a->config_mutex);
        char *text = gd_metrics_render(a->metrics, a->nmetrics, a->config, a->reloads, &len);
        pthread_mutex_unlock(&a->config_mutex);
        h2o_iovec_t body = h2o_strdup(&req->pool, text, len);
        free(text);
        send_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body.base, body.len);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/debug/requests"))) {
        answer_debug(a, req, GD_INSPECT_REQUESTS);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/debug/upstreams"))) {
        answer_debug(a, req, GD_INSPECT_UPSTREAMS);
    } else {
        send_json_status(req, 404,
                         "{\"error\":\"not_found\",\"message\":\"admin endpoints: /healthz, "
                         "/readyz, /metrics, /debug/requests, /debug/upstreams\"}");
    }
    return 0;
}

gd_admin_t *gd_admin_new(const gd_config_t *config, const gd_metrics_t *const *metrics, size_t n)
{
    gd_admin_t *a = gd_xcalloc(1, sizeof(*a));

    a->config = config;
    pthread_mutex_init(&a->config_mutex, NULL);
    a->metrics = metrics;
    a->nmetrics = n;
    a->fd = -1;
    atomic_init(&a->state, GD_ADMIN_STARTING);
    pthread_mutex_init(&a->inspected_mutex, NULL);
    h2o_linklist_init_anchor(&a->pending);
    h2o_config_init(&a->globalconf);
    a->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("gatherd-admin"));
    a->globalconf.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *host =
        h2o_config_register_host(&a->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h));
    h->on_req = on_req;
    return a;
}

int gd_admin_listen(gd_admin_t *a, char *err, size_t errlen)
{
    const gd_listen_conf_t *lc = &a->config->admin_listen;
    int on = 1, fd = socket(lc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, (const struct sockaddr *)&lc->addr, lc->addrlen) != 0 || listen(fd, 128) != 0) {
        int r = -errno;
        snprintf(err, errlen, "cannot listen on admin_listen %s: %s", lc->text, strerror(errno));
        if (fd >= 0)
            close(fd);
        return r;
    }
    a->fd = fd;
    return 0;
}

static void on_connection_closed(uv_handle_t *handle)
{
    struct admin_connection *c =
        H2O_STRUCT_FROM_MEMBER(struct admin_connection, tcp, (uv_tcp_t *)handle);
    gd_admin_t *a = c->admin;

    a->connections--;
    free(c);
    /* h2o's context keeps an async handle open: the loop ends only when told to. */
    if (a->is_stopping && a->connections == 0)
        uv_stop(&a->loop);
}

static void on_accept(uv_stream_t *listener, int status)
{
    gd_admin_t *a = listener->data;
    struct admin_connection *c;

    if (status != 0)
        return;
    c = gd_xmalloc(sizeof(*c));
    c->admin = a;
    if (uv_tcp_init(&a->loop, &c->tcp) != 0) {
        free(c); /* the connection stays in the backlog until the next accept */
        return;
    }
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free); /* tcp is c's first member */
        return;
    }
    a->connections++;
    h2o_accept(&a->accept_ctx, h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_connection_closed));
}

static void on_stop(uv_async_t *async)
{
    gd_admin_t *a = async->data;

    a->is_stopping = true;
    uv_close((uv_handle_t *)&a->listener, NULL);
    uv_close((uv_handle_t *)&a->stop, NULL);
    /* Waiting /debug answers still go at their timeout. */
    pthread_mutex_lock(&a->inspected_mutex);
    a->is_inspected_closed = true;
    uv_close((uv_handle_t *)&a->inspected, NULL);
    pthread_mutex_unlock(&a->inspected_mutex);
    /* Probes and scrapes are short: idle keep-alive connections are closed, busy ones finish.
     * (No h2o_context_request_shutdown(): this listener speaks HTTP/1 only, and the call would
     * leave HTTP/2's GOAWAY timer linked, which h2o_context_dispose() asserts against.) */
    h2o_timeout_run(&a->loop, &a->ctx.http1.req_timeout, UINT64_MAX);
    if (a->connections == 0)
        uv_stop(&a->loop);
}

static void *admin_main(void *arg)
{
    gd_admin_t *a = arg;

    uv_run(&a->loop, UV_RUN_DEFAULT); /* until on_stop() or the last connection stops it */
    h2o_context_dispose(&a->ctx);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&a->loop); /* at exit: nothing to do about a handle left open */
    return NULL;
}

int gd_admin_start(gd_admin_t *a)
{
    int r;

    GD_REQUIRE(uv_loop_init(&a->loop) == 0);
    h2o_context_init(&a->ctx, &a->loop, &a->globalconf);
    a->accept_ctx = (h2o_accept_ctx_t){.ctx = &a->ctx, .hosts = a->globalconf.hosts};
    GD_REQUIRE(uv_async_init(&a->loop, &a->stop, on_stop) == 0);
    a->stop.data = a;
    GD_REQUIRE(uv_async_init(&a->loop, &a->inspected, on_inspected) == 0);
    a->inspected.data = a;
    GD_REQUIRE(uv_tcp_init(&a->loop, &a->listener) == 0);
    a->listener.data = a;
    if ((r = uv_tcp_open(&a->listener, a->fd)) != 0 ||
        (r = uv_listen((uv_stream_t *)&a->listener, 128, on_accept)) != 0)
        return r;
    a->fd = -1; /* the listener owns it now */
    if ((r = pthread_create(&a->thread, NULL, admin_main, a)) != 0)
        return -r;
    a->has_thread = true;
    return 0;
}

void gd_admin_set_inspector(gd_admin_t *a, gd_admin_inspect_fn inspect, void *data)
{
    a->inspect = inspect;
    a->inspect_data = data;
}

void gd_admin_set_config(gd_admin_t *a, const gd_config_t *config)
{
    pthread_mutex_lock(&a->config_mutex);
    a->config = config;
    pthread_mutex_unlock(&a->config_mutex);
}

void gd_admin_set_reloads(gd_admin_t *a, const gd_metrics_reloads_t *reloads)
{
    a->reloads = reloads;
}

void gd_admin_set_state(gd_admin_t *a, gd_admin_state_t state)
{
    atomic_store(&a->state, (int)state);
}

gd_admin_t *gd_admin_free(gd_admin_t *a)
{
    if (a == NULL)
        return NULL;
    if (a->has_thread) {
        uv_async_send(&a->stop);
        pthread_join(a->thread, NULL);
    }
    if (a->fd >= 0)
        close(a->fd);
    h2o_config_dispose(&a->globalconf);
    pthread_mutex_destroy(&a->inspected_mutex);
    pthread_mutex_destroy(&a->config_mutex);
    free(a);
    return NULL;
}
