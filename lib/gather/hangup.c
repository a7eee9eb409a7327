#include "gather/hangup.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/util.h"
#include "ops/log.h"

#define EVENTS_PER_TURN 64

struct gd_hangup {
    int epfd;
    uv_poll_t poll;
    bool is_closed;
};

static void on_ready(uv_poll_t *poll, int status, int events)
{
    gd_hangup_t *h = poll->data;
    struct epoll_event ev;

    /* One event per epoll_wait(): a callback may end other requests before it returns (a
     * cancelled call fails the Postgres batch it shared with other requests, whose coroutines
     * finish and unwatch), and an event fetched before that would point at a freed watch (seen
     * under ASan at 10,000 connections). An unwatched socket leaves the ready list at once. */
    for (int i = 0; i < EVENTS_PER_TURN && epoll_wait(h->epfd, &ev, 1, 0) == 1; i++) {
        gd_hangup_watch_t *w = ev.data.ptr;
        /* One shot: the socket is disarmed; it is removed in full by the unwatch. */
        gd_hangup_cb cb = w->_cb;
        gd_hangup_unwatch(w);
        cb(w); /* may free w, and end other requests */
    }
}

gd_hangup_t *gd_hangup_new(uv_loop_t *loop)
{
    gd_hangup_t *h = gd_xcalloc(1, sizeof(*h));

    if ((h->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        gd_log_warn("cannot create an epoll set to notice HTTP/1 clients that leave: %s",
                    strerror(errno));
        free(h);
        return NULL;
    }
    GD_REQUIRE(uv_poll_init(loop, &h->poll, h->epfd) == 0);
    h->poll.data = h;
    GD_REQUIRE(uv_poll_start(&h->poll, UV_READABLE, on_ready) == 0);
    return h;
}

void gd_hangup_close(gd_hangup_t *h)
{
    if (h == NULL || h->is_closed)
        return;
    h->is_closed = true;
    uv_close((uv_handle_t *)&h->poll, NULL);
}

gd_hangup_t *gd_hangup_free(gd_hangup_t *h)
{
    if (h == NULL)
        return NULL;
    GD_REQUIRE(h->is_closed);
    close(h->epfd);
    free(h);
    return NULL;
}

/* The socket of @req's HTTP/1 connection, or -1 (HTTP/2: h2o reads on and disposes of the
 * requests of a reset stream itself). */
static int http1_client_fd(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
        return -1;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    return sock != NULL ? h2o_socket_get_fd(sock) : -1;
}

int gd_hangup_check(h2o_req_t *req)
{
    int fd = http1_client_fd(req), err = 0;
    socklen_t len = sizeof(err);
    char c;

    if (fd < 0)
        return GD_HANGUP_OPEN;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
        return GD_HANGUP_GONE;
    if (n != 0)
        return GD_HANGUP_OPEN;
    /* An end of stream is the client's FIN, from shutdown(SHUT_WR) or from close(): the two look
     * the same until the answer is written, so only a reset, or an error on the socket, is
     * certainly a client gone; a FIN alone (TCP_CLOSE_WAIT) is a half-close, answered. */
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
        return GD_HANGUP_GONE;
    struct tcp_info ti;
    len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state != TCP_CLOSE_WAIT)
        return GD_HANGUP_GONE;
    return GD_HANGUP_HALF_CLOSED;
}

bool gd_hangup_watch(gd_hangup_t *h, h2o_req_t *req, gd_hangup_watch_t *w, bool is_reset_only,
                     gd_hangup_cb cb)
{
    int fd;

    w->_hangup = NULL;
    if (h == NULL || (fd = http1_client_fd(req)) < 0)
        return false;
    /* EPOLLHUP and EPOLLERR (a reset) are reported whatever the mask asks. */
    struct epoll_event ev = {.events = (is_reset_only ? 0 : EPOLLRDHUP) | EPOLLONESHOT,
                             .data.ptr = w};
    if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return false;
    w->_hangup = h;
    w->_fd = fd;
    w->_cb = cb;
    return true;
}

void gd_hangup_unwatch(gd_hangup_watch_t *w)
{
    if (w->_hangup == NULL)
        return;
    /* The socket is still open: h2o closes it only after the request is disposed of. */
    (void)epoll_ctl(w->_hangup->epfd, EPOLL_CTL_DEL, w->_fd, NULL);
    w->_hangup = NULL;
}
