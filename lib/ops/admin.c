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

#include "json/json.h"
#include "ops/log.h"
#include "base/util.h"

struct admin_connection {
    uv_tcp_t tcp;
    gd_admin_t *admin;
};

struct gd_admin {
    const gd_config_t *config;
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
    for (size_t i = 0; i < a->nmetrics; i++) {
        gd_metrics_gauges_t g;
        gd_metrics_read_gauges(a->metrics[i], &g);
        if (g.is_pg_ready)
            continue;
        switch (a->config->postgres.readiness) {
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
                         const char *degraded)
{
    char body[512];
    if (problem == NULL) {
        size_t n = (size_t)snprintf(body, sizeof(body), "{\"%s\":%s", key, ok_value);
        if (degraded != NULL) {
            n += (size_t)snprintf(body + n, sizeof(body) - n, ",\"degraded\":");
            n += gd_json_quote(degraded, strlen(degraded), body + n, sizeof(body) - n - 2);
        }
        body[n++] = '}';
        body[n] = '\0';
        send_json_status(req, 200, body);
        return;
    }
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"%s\":%s,\"reason\":", key,
                                strcmp(ok_value, "true") == 0 ? "false" : "\"unhealthy\"");
    n += gd_json_quote(problem, strlen(problem), body + n, sizeof(body) - n - 2);
    body[n++] = '}';
    body[n] = '\0';
    send_json_status(req, 503, body);
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
        answer_probe(req, "status", "\"ok\"", health_problem(a, buf, sizeof(buf)), NULL);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/readyz"))) {
        char why[256];
        bool is_blocking = false;
        const char *problem = readiness_problem(a, buf, sizeof(buf));
        answer_probe(req, "ready", "true", problem,
                     problem == NULL ? postgres_problem(a, why, sizeof(why), &is_blocking) : NULL);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/metrics"))) {
        size_t len;
        char *text = gd_metrics_render(a->metrics, a->nmetrics, a->config, &len);
        h2o_iovec_t body = h2o_strdup(&req->pool, text, len);
        free(text);
        send_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body.base, body.len);
    } else {
        send_json_status(req, 404,
                         "{\"error\":\"not_found\",\"message\":\"admin endpoints: /healthz, "
                         "/readyz, /metrics\"}");
    }
    return 0;
}

gd_admin_t *gd_admin_new(const gd_config_t *config, const gd_metrics_t *const *metrics, size_t n)
{
    gd_admin_t *a = gd_xcalloc(1, sizeof(*a));

    a->config = config;
    a->metrics = metrics;
    a->nmetrics = n;
    a->fd = -1;
    atomic_init(&a->state, GD_ADMIN_STARTING);
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
    free(a);
    return NULL;
}
