#include "front/readbound.h"

#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "base/sockbuf.h"
#include "base/util.h"
#include "front/h1idle.h"

/* Past this many requests read ahead of the free slots (a quarter of the thread's slots, at
 * least READ_AHEAD_MIN), HTTP/1 connections that wait for their next request are not read. */
#define READ_AHEAD_MIN 16
/* A paused connection is read again after queue_timeout_ms at most, and before h2o's own
 * HTTP/1 request timeout (10 s in 2.2.5, counted from when the connection began to wait)
 * could close it with its request unread. */
#define MAX_READ_PAUSE_MS 5000
/* A connection left reading counts against the bound until its request comes (or GRANT_MS
 * passes: an idle keep-alive client may send nothing for long). Without this, every loop turn
 * of a burst of new connections would let another room's worth read. */
#define GRANT_MS 1000

static void grant(gd_readbound_t *rb, gd_readbound_conn_t *c)
{
    if (h2o_linklist_is_linked(&c->_granted_link))
        h2o_linklist_unlink(&c->_granted_link);
    else
        rb->_ngranted++;
    c->_granted_at_ms = uv_now(rb->_loop);
    h2o_linklist_insert(&rb->_granted, &c->_granted_link);
}

static void ungrant(gd_readbound_t *rb, gd_readbound_conn_t *c)
{
    if (!h2o_linklist_is_linked(&c->_granted_link))
        return;
    h2o_linklist_unlink(&c->_granted_link);
    rb->_ngranted--;
}

/* How many more requests the thread may read now: its free slots, and READ_AHEAD beyond them
 * in the line, less the connections left reading whose request has not come yet. */
static size_t room_now(gd_readbound_t *rb)
{
    const gd_gate_t *line = rb->_line;
    uint64_t now = uv_now(rb->_loop);
    while (!h2o_linklist_is_empty(&rb->_granted)) {
        gd_readbound_conn_t *c =
            H2O_STRUCT_FROM_MEMBER(gd_readbound_conn_t, _granted_link, rb->_granted.next);
        if (now - c->_granted_at_ms < GRANT_MS)
            break;
        ungrant(rb, c);
    }
    size_t ahead = line->limit / 4 > READ_AHEAD_MIN ? line->limit / 4 : READ_AHEAD_MIN;
    size_t room = (line->limit > line->held ? line->limit - line->held : 0) + ahead;
    size_t used = line->waiting + rb->_ngranted;
    return room > used ? room - used : 0;
}

static void pause_reading(gd_readbound_t *rb, gd_readbound_conn_t *c, h2o_socket_t *sock)
{
    ungrant(rb, c);
    /* Once per connection: from now on the kernel stamps each packet with its arrival. */
    if (!c->_is_stamped) {
        int on = 1;
        c->_is_stamped =
            setsockopt(h2o_socket_get_fd(sock), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) == 0;
    }
    c->_read_cb = sock->_cb.read;
    h2o_socket_read_stop(sock);
    /* Nothing of a request is in it: its 8 KiB go back while the request waits in the kernel. */
    (void)gd_sockbuf_release(sock);
    c->_is_paused = true;
    c->_paused_at_ms = uv_now(rb->_loop);
    h2o_linklist_insert(&rb->_paused, &c->_link);
    rb->_npaused++;
}

/* When the first byte waiting in @sock's kernel buffer arrived (uv_hrtime()), or 0 when none
 * waits. Without its stamp (it came before the stamps were on, or they could not be turned
 * on) it came before the pause, which is what is counted then. */
static uint64_t arrival_of_waiting(gd_readbound_t *rb, gd_readbound_conn_t *c, h2o_socket_t *sock)
{
    char byte, control[CMSG_SPACE(sizeof(struct timespec))];
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control,
                         .msg_controllen = sizeof(control)};
    if (recvmsg(h2o_socket_get_fd(sock), &msg, MSG_PEEK | MSG_DONTWAIT) <= 0)
        return 0; /* nothing yet, or the end of the stream (not a request) */
    uint64_t now_ns = uv_hrtime();
    uint64_t paused_ns = (uv_now(rb->_loop) - c->_paused_at_ms) * 1000000;
    uint64_t waited_ns = paused_ns;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h != NULL; h = CMSG_NXTHDR(&msg, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_TIMESTAMPNS)
            continue;
        struct timespec stamp, wall;
        memcpy(&stamp, CMSG_DATA(h), sizeof(stamp));
        clock_gettime(CLOCK_REALTIME, &wall);
        int64_t d =
            (int64_t)(wall.tv_sec - stamp.tv_sec) * 1000000000 + (wall.tv_nsec - stamp.tv_nsec);
        /* A stamp is the wall clock: one set back, or from before the pause, is not believed. */
        if (d >= 0 && (uint64_t)d <= paused_ns)
            waited_ns = (uint64_t)d;
    }
    return now_ns > waited_ns ? now_ns - waited_ns : 1;
}

static void resume_reading(gd_readbound_t *rb, gd_readbound_conn_t *c)
{
    h2o_socket_t *sock = c->_stream->data;
    c->_arrived_ns = arrival_of_waiting(rb, c, sock);
    h2o_linklist_unlink(&c->_link);
    c->_is_paused = false;
    rb->_npaused--;
    /* libuv reads on the next poll: the request, if one waits in the kernel, goes to the line. */
    h2o_socket_read_start(sock, c->_read_cb);
    grant(rb, c);
}

/* Whether @c, whose socket is @sock, waits for its next request and may be paused. */
static bool is_pausable(gd_readbound_t *rb, gd_readbound_conn_t *c, h2o_socket_t *sock)
{
    return rb->_max_pause_ms != 0 && sock != NULL && !uv_is_closing((uv_handle_t *)c->_stream) &&
           gd_h1idle_is_waiting(rb->_ctx, sock, rb->_http1_callbacks);
}

/* Just before the loop polls, so that no read comes between h2o's read_start and our stop. */
static void on_gate(uv_prepare_t *prepare)
{
    gd_readbound_t *rb = prepare->data;
    bool is_pausing = rb->_max_pause_ms != 0;
    size_t room = room_now(rb);

    /* Oldest first: those paused before have their turn before any newcomer is read. */
    uint64_t now = uv_now(rb->_loop);
    while (!h2o_linklist_is_empty(&rb->_paused)) {
        gd_readbound_conn_t *c =
            H2O_STRUCT_FROM_MEMBER(gd_readbound_conn_t, _link, rb->_paused.next);
        if (is_pausing && room == 0 && now - c->_paused_at_ms < rb->_max_pause_ms)
            break;
        resume_reading(rb, c);
        if (room != 0)
            room--;
    }
    while (!h2o_linklist_is_empty(&rb->_rechecks)) {
        gd_readbound_conn_t *c =
            H2O_STRUCT_FROM_MEMBER(gd_readbound_conn_t, _link, rb->_rechecks.next);
        h2o_linklist_unlink(&c->_link);
        h2o_socket_t *sock = c->_stream->data;
        if (!is_pausable(rb, c, sock))
            continue;
        if (room != 0) {
            room--; /* read on: it may bring a request */
            grant(rb, c);
            continue;
        }
        pause_reading(rb, c, sock);
    }
    rb->_room = room;
}

void gd_readbound_init(gd_readbound_t *rb, uv_loop_t *loop, h2o_context_t *ctx,
                       const gd_gate_t *line, gd_readbound_conn_of_cb conn_of)
{
    *rb = (gd_readbound_t){._loop = loop, ._ctx = ctx, ._line = line, ._conn_of = conn_of};
    h2o_linklist_init_anchor(&rb->_rechecks);
    h2o_linklist_init_anchor(&rb->_paused);
    h2o_linklist_init_anchor(&rb->_granted);
    GD_REQUIRE(uv_prepare_init(loop, &rb->_gate) == 0);
    rb->_gate.data = rb;
    GD_REQUIRE(uv_prepare_start(&rb->_gate, on_gate) == 0);
}

void gd_readbound_close(gd_readbound_t *rb)
{
    uv_prepare_stop(&rb->_gate);
    uv_close((uv_handle_t *)&rb->_gate, NULL);
}

void gd_readbound_set_max_pause(gd_readbound_t *rb, uint64_t max_pause_ms)
{
    rb->_max_pause_ms = max_pause_ms < MAX_READ_PAUSE_MS ? max_pause_ms : MAX_READ_PAUSE_MS;
    if (rb->_max_pause_ms == 0)
        while (!h2o_linklist_is_empty(&rb->_paused))
            resume_reading(rb,
                           H2O_STRUCT_FROM_MEMBER(gd_readbound_conn_t, _link, rb->_paused.next));
}

size_t gd_readbound_unread(const gd_readbound_t *rb)
{
    return rb->_npaused;
}

void gd_readbound_conn_init(gd_readbound_t *rb, gd_readbound_conn_t *c, uv_stream_t *stream)
{
    *c = (gd_readbound_conn_t){._rb = rb, ._stream = stream};
}

void gd_readbound_note_accepted(gd_readbound_conn_t *c, h2o_socket_t *sock)
{
    gd_readbound_t *rb = c->_rb;
    if (sock->ssl == NULL && sock->data != NULL) /* plain: h2o's HTTP/1 connection */
        rb->_http1_callbacks = ((h2o_conn_t *)sock->data)->callbacks;
    /* A new client waits behind the paused ones, if any, from now on: libuv polls again within
     * this turn while events keep coming, and would read it before the gate runs. */
    if (!is_pausable(rb, c, sock))
        return;
    if (rb->_room == 0 || !h2o_linklist_is_empty(&rb->_paused)) {
        pause_reading(rb, c, sock);
    } else {
        rb->_room--;
        grant(rb, c);
    }
}

/* h2o disposes of an HTTP/1 request: before it reads the connection again (keep-alive) or
 * closes it. The connection is looked at just before the loop polls. */
struct disposal_note {
    gd_readbound_t *rb;
    h2o_socket_t *sock;
};

static void on_request_disposed(void *p)
{
    struct disposal_note *note = p;
    gd_readbound_t *rb = note->rb;
    gd_readbound_conn_t *c = rb->_conn_of(note->sock);
    if (c == NULL || h2o_linklist_is_linked(&c->_link))
        return;
    h2o_linklist_insert(&rb->_rechecks, &c->_link);
}

uint64_t gd_readbound_note_request(gd_readbound_t *rb, h2o_req_t *req)
{
    if (req->version >= 0x200)
        return 0; /* HTTP/2 is always read */
    rb->_http1_callbacks = req->conn->callbacks;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    struct disposal_note *note =
        h2o_mem_alloc_shared(&req->pool, sizeof(*note), on_request_disposed);
    *note = (struct disposal_note){rb, sock};
    gd_readbound_conn_t *c = rb->_conn_of(sock);
    if (c == NULL)
        return 0;
    ungrant(rb, c);
    uint64_t arrived_ns = c->_arrived_ns;
    c->_arrived_ns = 0; /* what comes after it on the connection was read at once */
    if (arrived_ns == 0)
        return 0;
    uint64_t now_ns = uv_hrtime();
    return now_ns > arrived_ns ? now_ns - arrived_ns : 0;
}

void gd_readbound_forget(gd_readbound_conn_t *c)
{
    gd_readbound_t *rb = c->_rb;
    if (h2o_linklist_is_linked(&c->_link)) {
        if (c->_is_paused)
            rb->_npaused--;
        h2o_linklist_unlink(&c->_link);
    }
    ungrant(rb, c);
}
