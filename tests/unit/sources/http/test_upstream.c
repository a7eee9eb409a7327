/*
 * The upstream connection pool's races, made deterministic: the test is the upstream. It owns a
 * listener on 127.0.0.1, accepts gatherd's connections with plain blocking-with-timeout calls
 * and answers byte by byte when it chooses, while the client side runs on a libuv loop that
 * the test turns by hand. No coroutine: a call is started and its task polled until done.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "base/coro.h"
#include "runner.h"
#include "sources/http/upstream.h"

/* An upstream that never reads keeps this little of a request in its receive buffer, so a big
 * head stays in flight in gatherd's send buffer. */
#define SMALL_RCVBUF 4096
/* Larger than any loopback send buffer (tcp_wmem max is 4 MiB by default) plus SMALL_RCVBUF. */
#define HUGE_HEAD (8u << 20)
#define WAIT_MS   3000

struct harness {
    uv_loop_t loop;
    gd_sched_t *sched;
    gd_upstream_conf_t conf;
    gd_upstream_t *u;
    gd_source_t source;
    int lfd;
    char url[64];
};

struct tcall {
    gd_upstream_call_t c;
    gd_group_t g;
};

static void h_init(struct harness *h)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int rcvbuf = SMALL_RCVBUF;

    memset(h, 0, sizeof(*h));
    CHECK_INT_EQ(uv_loop_init(&h->loop), 0);
    h->sched = gd_sched_new(&h->loop, 64 * 1024, 4);
    CHECK((h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    /* set before listen(): accepted sockets inherit it */
    CHECK_INT_EQ(setsockopt(h->lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    CHECK_INT_EQ(bind(h->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    CHECK_INT_EQ(listen(h->lfd, 16), 0);
    CHECK_INT_EQ(getsockname(h->lfd, (struct sockaddr *)&sin, &len), 0);
    snprintf(h->url, sizeof(h->url), "http://127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    h->conf = (gd_upstream_conf_t){.name = (char *)"t",
                                   .url = h->url,
                                   .host = (char *)"127.0.0.1",
                                   .port = ntohs(sin.sin_port),
                                   .base_path = (char *)"",
                                   .is_host_numeric = true,
                                   .max_connections = 4,
                                   .connect_timeout_ms = WAIT_MS,
                                   .keepalive_timeout_ms = 60000,
                                   .dns_refresh_ms = 30000,
                                   .max_body_bytes = 1 << 20};
    h->u = gd_upstream_new(&h->conf, &h->loop, gd_sched_timers(h->sched), 4, NULL, NULL);
    h->source = (gd_source_t){&gd_upstream_call_ops, h->u};
}

static void h_dispose(struct harness *h)
{
    gd_upstream_close(h->u);
    CHECK_INT_EQ(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
    h->sched = gd_sched_free(h->sched);
    CHECK_INT_EQ(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
    h->u = gd_upstream_free(h->u);
    CHECK_INT_EQ(uv_loop_close(&h->loop), 0);
    close(h->lfd);
}

static void start(struct harness *h, struct tcall *t, const char *method, h2o_iovec_t path)
{
    memset(t, 0, sizeof(*t));
    t->c.base.ops = &gd_upstream_call_ops;
    t->c.base.started_at_ns = uv_hrtime();
    t->c.base.timeout_ms = WAIT_MS;
    t->c.base.deadline_ms = gd_timers_now(gd_sched_timers(h->sched)) + WAIT_MS;
    t->c.method = method;
    t->c.path = path;
    /* as prepare() sets them for a call without "idempotent" or "body" */
    t->c.is_idempotent = strcmp(method, "POST") != 0 && strcmp(method, "PATCH") != 0;
    t->c.has_body = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                    strcmp(method, "PATCH") == 0;
    gd_group_init(&t->g, h->sched);
    gd_call_start(&t->c.base, &h->source, &t->g);
}

static bool is_done(struct tcall *t)
{
    return gd_task_is_done(&t->c.base._task);
}

static void finish(struct tcall *t)
{
    gd_group_dispose(&t->g);
    gd_call_dispose(&t->c.base);
}

/* Turns the loop for about @ms (the loop never blocks longer than 1 ms at a time). */
static void run_for(struct harness *h, int ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000;
    while (uv_hrtime() < end) {
        uv_run(&h->loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
}

static void run_until_done(struct harness *h, struct tcall *t)
{
    uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 2 * 1000000;
    while (!is_done(t) && uv_hrtime() < end) {
        uv_run(&h->loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
    CHECK(is_done(t));
}

/* The next connection gatherd made, or -1 when none came within @ms. */
static int accept_within(struct harness *h, int ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000;
    do {
        uv_run(&h->loop, UV_RUN_NOWAIT);
        struct pollfd p = {.fd = h->lfd, .events = POLLIN};
        if (poll(&p, 1, 1) == 1)
            return accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
    } while (uv_hrtime() < end);
    return -1;
}

/* Reads one request head from @fd into @buf (NUL-terminated); the loop turns meanwhile. */
static void read_head(struct harness *h, int fd, char *buf, size_t cap)
{
    size_t len = 0;
    uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 1000000;

    buf[0] = '\0';
    while (strstr(buf, "\r\n\r\n") == NULL) {
        CHECK(uv_hrtime() < end && len + 1 < cap);
        uv_run(&h->loop, UV_RUN_NOWAIT);
        ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
        if (n > 0) {
            len += (size_t)n;
            buf[len] = '\0';
        } else {
            CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            poll(NULL, 0, 1);
        }
    }
}

static void send_str(int fd, const char *s)
{
    CHECK_INT_EQ(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Closes @fd with a reset (SO_LINGER 0) instead of a FIN. */
static void reset(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    CHECK_INT_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
    close(fd);
}

static const char OK_EMPTY[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";

/* One exchange on a new connection, answered with keep-alive: leaves it idle in the pool. */
static int exchange_keepalive(struct harness *h, struct tcall *t, char *buf, size_t cap)
{
    start(h, t, "GET", h2o_iovec_init(H2O_STRLIT("/first")));
    int fd = accept_within(h, WAIT_MS);
    CHECK(fd >= 0);
    read_head(h, fd, buf, cap);
    send_str(fd, OK_EMPTY);
    run_until_done(h, t);
    CHECK_INT_EQ(t->c.base.result.outcome, GD_OUTCOME_OK);
    finish(t);
    CHECK_INT_EQ(gd_upstream_stats(h->u).idle, 1);
    return fd;
}

/* Review problem 8: an upstream answers (complete, keep-alive) before it has read the whole
 * request. The connection still has a write in flight: it must be closed, not pooled, and the
 * next call must get a connection (and an answer) of its own. */
static void test_early_answer_while_writing_is_not_reused(void)
{
    struct harness h;
    struct tcall a, b;
    char buf[4096];
    char *path = malloc(HUGE_HEAD);

    h_init(&h);
    path[0] = '/';
    memset(path + 1, 'a', HUGE_HEAD - 1);
    start(&h, &a, "GET", h2o_iovec_init(path, HUGE_HEAD));
    int s1 = accept_within(&h, WAIT_MS);
    CHECK(s1 >= 0);
    run_for(&h, 20); /* gatherd sends what fits, the rest waits in libuv's write queue */
    CHECK(!is_done(&a));
    send_str(s1, OK_EMPTY);
    run_until_done(&h, &a);
    CHECK_INT_EQ(a.c.base.result.outcome, GD_OUTCOME_OK);
    finish(&a);
    free(path);
    CHECK_INT_EQ(gd_upstream_stats(h.u).idle, 0);
    CHECK_INT_EQ(gd_upstream_stats(h.u).busy, 0);

    start(&h, &b, "GET", h2o_iovec_init(H2O_STRLIT("/next")));
    int s2 = accept_within(&h, WAIT_MS);
    CHECK(s2 >= 0);
    read_head(&h, s2, buf, sizeof(buf));
    CHECK(strncmp(buf, "GET /next HTTP/1.1\r\n", 20) == 0);
    send_str(s2, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n[1]");
    run_until_done(&h, &b);
    CHECK_INT_EQ(b.c.base.result.outcome, GD_OUTCOME_OK);
    CHECK_MEM_EQ(b.c.base.result.body->bytes, b.c.base.result.body->len, "[1]");
    finish(&b);
    close(s1);
    close(s2);
    h_dispose(&h);
}

/* A pooled connection that the upstream resets after reading the next request, before any
 * byte of an answer: a GET is sent once more, on a new connection. */
static void test_stale_connection_reset_retries_a_get_once(void)
{
    struct harness h;
    struct tcall a, b;
    char buf[4096];

    h_init(&h);
    int s1 = exchange_keepalive(&h, &a, buf, sizeof(buf));
    start(&h, &b, "GET", h2o_iovec_init(H2O_STRLIT("/again")));
    read_head(&h, s1, buf, sizeof(buf)); /* on the pooled connection */
    CHECK(strncmp(buf, "GET /again ", 11) == 0);
    reset(s1);
    int s2 = accept_within(&h, WAIT_MS);
    CHECK(s2 >= 0);
    read_head(&h, s2, buf, sizeof(buf));
    CHECK(strncmp(buf, "GET /again ", 11) == 0);
    /* the retry is on a new connection: another reset there is the call's failure */
    reset(s2);
    run_until_done(&h, &b);
    CHECK_INT_EQ(b.c.base.result.outcome, GD_OUTCOME_IO);
    CHECK_INT_EQ(accept_within(&h, 50), -1); /* no third attempt */
    finish(&b);
    h_dispose(&h);
}

/* The same stale connection under a POST: never sent twice, the call fails with kind io. */
static void test_stale_connection_reset_never_retries_a_post(void)
{
    struct harness h;
    struct tcall a, b;
    char buf[4096];

    h_init(&h);
    int s1 = exchange_keepalive(&h, &a, buf, sizeof(buf));
    start(&h, &b, "POST", h2o_iovec_init(H2O_STRLIT("/once")));
    read_head(&h, s1, buf, sizeof(buf));
    CHECK(strncmp(buf, "POST /once ", 11) == 0);
    reset(s1);
    run_until_done(&h, &b);
    CHECK_INT_EQ(b.c.base.result.outcome, GD_OUTCOME_IO);
    CHECK_INT_EQ(accept_within(&h, 100), -1);
    finish(&b);
    h_dispose(&h);
}

/* A body without length or chunking ends with the connection (RFC 9112 section 6.3, rule 8):
 * a FIN ends it, a reset breaks it, even when the bytes so far are valid JSON. */
static void read_until_close(bool is_reset, gd_outcome_t want)
{
    struct harness h;
    struct tcall a;
    char buf[4096];

    h_init(&h);
    start(&h, &a, "GET", h2o_iovec_init(H2O_STRLIT("/stream")));
    int fd = accept_within(&h, WAIT_MS);
    CHECK(fd >= 0);
    read_head(&h, fd, buf, sizeof(buf));
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n123");
    run_for(&h, 20); /* the bytes arrive before the end */
    CHECK(!is_done(&a));
    if (is_reset)
        reset(fd);
    else
        close(fd);
    run_until_done(&h, &a);
    CHECK_INT_EQ(a.c.base.result.outcome, want);
    if (want == GD_OUTCOME_OK)
        CHECK_MEM_EQ(a.c.base.result.body->bytes, a.c.base.result.body->len, "123");
    finish(&a);
    h_dispose(&h);
}

static void test_body_until_close_ends_with_a_fin(void)
{
    read_until_close(false, GD_OUTCOME_OK);
}

static void test_body_until_close_cut_by_a_reset_is_io(void)
{
    read_until_close(true, GD_OUTCOME_IO);
}

const gd_test_case_t gd_test_cases[] = {
    {"early_answer_while_writing_is_not_reused", test_early_answer_while_writing_is_not_reused},
    {"stale_connection_reset_retries_a_get_once", test_stale_connection_reset_retries_a_get_once},
    {"stale_connection_reset_never_retries_a_post",
     test_stale_connection_reset_never_retries_a_post},
    {"body_until_close_ends_with_a_fin", test_body_until_close_ends_with_a_fin},
    {"body_until_close_cut_by_a_reset_is_io", test_body_until_close_cut_by_a_reset_is_io},
    {NULL, NULL},
};
