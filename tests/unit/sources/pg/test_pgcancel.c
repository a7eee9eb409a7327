#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uv.h>

#include "base/util.h"
#include "runner.h"
#include "sources/pg/pgcancel.h"

/* A listening socket on 127.0.0.1 standing in for the server's cancel port. Connections wait in
 * its backlog until accepted: a listener nobody accepts from is a host that takes the TCP
 * connection and never answers, where PQcancel() hangs. */
static int listen_loopback(int *ret_port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    CHECK(listen(fd, 16) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
    *ret_port = ntohs(sin.sin_port);
    return fd;
}

/* A PGcancel for the server at 127.0.0.1:@port: libpq fills it in once a connect has started,
 * which is all it needs (the address; the backend's key is irrelevant here). With @listen_fd
 * >= 0 the connect's own connection is taken off that listener's backlog and closed. */
static PGcancel *cancel_for(int port, int listen_fd)
{
    char conninfo[128];
    PGconn *pg;
    PGcancel *cancel;

    snprintf(conninfo, sizeof(conninfo), "hostaddr=127.0.0.1 port=%d dbname=x user=x", port);
    pg = PQconnectStart(conninfo);
    CHECK(pg != NULL && PQstatus(pg) != CONNECTION_BAD);
    cancel = PQgetCancel(pg);
    CHECK(cancel != NULL);
    PQfinish(pg);
    if (listen_fd >= 0) {
        int fd = accept(listen_fd, NULL, NULL);
        CHECK(fd >= 0);
        close(fd);
    }
    return cancel;
}

/* Waits (blocking: a test may) until a connection is in @listen_fd's backlog. */
static void wait_connection(int listen_fd)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};

    CHECK(poll(&p, 1, 5000) == 1);
}

struct sent {
    int calls, ok;
};

static void on_sent(void *data, bool is_ok, const char *error)
{
    struct sent *s = data;

    (void)error;
    s->calls++;
    s->ok += is_ok;
}

/* Accepts a connection, reads what comes until EOF or 16 bytes (a CancelRequest), and closes
 * it: what a server does with a cancel request. */
static void on_listener_readable(uv_poll_t *poll, int status, int events)
{
    int *listen_fd = poll->data, fd;
    char buf[16];
    size_t got = 0;
    ssize_t n;

    (void)status, (void)events;
    if ((fd = accept(*listen_fd, NULL, NULL)) < 0)
        return;
    while (got < sizeof(buf) && (n = recv(fd, buf + got, sizeof(buf) - got, 0)) > 0)
        got += (size_t)n;
    close(fd);
}

/* The threads of this process, from /proc/self/task. */
static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void run_until(uv_loop_t *loop, const int *count, int want)
{
    while (*count < want)
        uv_run(loop, UV_RUN_ONCE);
}

static void test_cancel_is_sent_and_reported(void)
{
    uv_loop_t loop;
    uv_poll_t poll;
    int port, fd;
    struct sent s = {0};
    gd_pgcancel_t *k;

    CHECK(uv_loop_init(&loop) == 0);
    fd = listen_loopback(&port);
    CHECK(uv_poll_init(&loop, &poll, fd) == 0);
    poll.data = &fd;
    CHECK(uv_poll_start(&poll, UV_READABLE, on_listener_readable) == 0);
    k = gd_pgcancel_new(&loop);
    CHECK(gd_pgcancel_send(k, cancel_for(port, -1), on_sent, &s) != NULL);
    run_until(&loop, &s.calls, 1);
    CHECK_INT_EQ(s.ok, 1);
    /* The thread is idle: it is joined as soon as it says it has stopped. */
    uint64_t start = uv_hrtime();
    gd_pgcancel_close(k, 5000);
    uv_close((uv_handle_t *)&poll, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK((uv_hrtime() - start) / 1000000 < 1000);
    k = gd_pgcancel_free(k);
    CHECK_INT_EQ(s.calls, 1);
    close(fd);
    CHECK(uv_loop_close(&loop) == 0);
}

static void test_hung_cancel_bounds_the_line_and_the_close(void)
{
    uv_loop_t loop;
    int port, fd;
    struct sent s = {0};
    gd_pgcancel_req_t *reqs[1 + GD_PGCANCEL_QUEUE_MAX];
    PGcancel *cancels[GD_PGCANCEL_QUEUE_MAX + 3];
    gd_pgcancel_t *k;
    uint64_t start, took_ms;

    CHECK(uv_loop_init(&loop) == 0);
    fd = listen_loopback(&port); /* accepted from only by cancel_for(): every cancel hangs */
    for (size_t i = 0; i < GD_ARRAY_SIZE(cancels); i++)
        cancels[i] = cancel_for(port, fd);
    k = gd_pgcancel_new(&loop);
    reqs[0] = gd_pgcancel_send(k, cancels[0], on_sent, &s);
    CHECK(reqs[0] != NULL);
    wait_connection(fd); /* the thread's, for it: it is being sent, and hangs */
    for (size_t i = 1; i <= GD_PGCANCEL_QUEUE_MAX; i++) {
        reqs[i] = gd_pgcancel_send(k, cancels[i], on_sent, &s);
        CHECK(reqs[i] != NULL);
    }
    /* The line is full: refused, and the PGcancel freed all the same. */
    CHECK(gd_pgcancel_send(k, cancels[GD_PGCANCEL_QUEUE_MAX + 1], on_sent, &s) == NULL);
    /* A waiting one is withdrawn unsent, which makes room again. */
    CHECK(gd_pgcancel_withdraw(k, reqs[GD_PGCANCEL_QUEUE_MAX]));
    reqs[GD_PGCANCEL_QUEUE_MAX] =
        gd_pgcancel_send(k, cancels[GD_PGCANCEL_QUEUE_MAX + 2], on_sent, &s);
    CHECK(reqs[GD_PGCANCEL_QUEUE_MAX] != NULL);
    for (size_t i = 1; i <= GD_PGCANCEL_QUEUE_MAX; i++)
        CHECK(gd_pgcancel_withdraw(k, reqs[i]));
    CHECK(!gd_pgcancel_withdraw(k, reqs[0])); /* being sent: it ends on its own, unreported */
    /* The close gives up on the hung one after its timeout, without blocking the loop. */
    start = uv_hrtime();
    gd_pgcancel_close(k, 200);
    uv_run(&loop, UV_RUN_DEFAULT);
    took_ms = (uv_hrtime() - start) / 1000000;
    CHECK(took_ms >= 150 && took_ms < 1000);
    k = gd_pgcancel_free(k);
    CHECK_INT_EQ(s.calls, 0); /* nothing was reported: withdrawn, or still hung at the close */
    CHECK(uv_loop_close(&loop) == 0);
    /* The left thread ends once its cancel does: closing the listener resets the connection it
     * waits on. Waited for (polling, bounded) so that the process ends with no thread but this
     * one, which valgrind would report as a possible leak. */
    close(fd);
    for (int i = 0; i < 5000 && count_threads() > 1; i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    CHECK_INT_EQ(count_threads(), 1);
}

static void test_close_without_requests(void)
{
    uv_loop_t loop;
    gd_pgcancel_t *k;

    CHECK(uv_loop_init(&loop) == 0);
    k = gd_pgcancel_new(&loop);
    gd_pgcancel_close(k, 1000);
    uv_run(&loop, UV_RUN_DEFAULT);
    k = gd_pgcancel_free(k);
    CHECK(k == NULL);
    CHECK(uv_loop_close(&loop) == 0);
}

const gd_test_case_t gd_test_cases[] = {
    {"cancel_is_sent_and_reported", test_cancel_is_sent_and_reported},
    {"hung_cancel_bounds_the_line_and_the_close", test_hung_cancel_bounds_the_line_and_the_close},
    {"close_without_requests", test_close_without_requests},
    {NULL, NULL},
};
