#include "gather/outbox.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/ptrcount.h"
#include "base/util.h"
#include "ops/log.h"

/* A larger body goes to h2o in pieces of this size: h2o asks for the next piece (the generator's
 * proceed callback) once the last one is written to the socket (HTTP/1) or framed and flushed
 * (HTTP/2), which is the only sign of a client's progress it gives; each piece restarts the
 * write timeout, so a slow client that keeps reading is not cut off. The piece is the grain of
 * that progress: a client is cut off below 64 KiB per write_timeout_ms (2 KiB/s at the default
 * 30 s), and a 7 MB answer costs 107 writes instead of one. */
#define PIECE_BYTES (64 * 1024)

struct gd_outbox {
    gd_outbox_limits_t limits;
    gd_timers_t *timers;
    gd_metrics_t *metrics;
    atomic_size_t *process_bytes;
    size_t bytes;   /* this thread's */
    size_t peak;    /* the most bytes held since gd_outbox_take_peak() */
    size_t answers; /* tracked now */
    /* The unsent bytes of each HTTP/2 connection that has some. An HTTP/1 connection has one
     * answer at a time: its bytes are that answer's. */
    gd_ptrcount_t *by_connection;
};

/* One answer in flight, in its request's pool. */
struct tracked {
    h2o_generator_t generator; /* h2o's callbacks find the rest from it */
    gd_outbox_t *ob;
    h2o_req_t *req;
    const h2o_conn_t *conn;
    size_t held;
    h2o_iovec_t rest; /* what is still to be handed to h2o */
    const gd_endpoint_conf_t *endpoint;
    char client[INET6_ADDRSTRLEN]; /* empty: the peer's address, looked up for the log line */
    gd_timer_t timer;
    bool is_closing;
};

gd_outbox_t *gd_outbox_new(const gd_outbox_limits_t *limits, gd_timers_t *timers,
                           gd_metrics_t *metrics, atomic_size_t *process_bytes)
{
    gd_outbox_t *ob = gd_xcalloc(1, sizeof(*ob));

    ob->limits = *limits;
    ob->timers = timers;
    ob->metrics = metrics;
    ob->process_bytes = process_bytes;
    ob->by_connection = gd_ptrcount_new();
    return ob;
}

gd_outbox_t *gd_outbox_free(gd_outbox_t *ob)
{
    if (ob == NULL)
        return NULL;
    GD_REQUIRE(ob->answers == 0 && gd_ptrcount_keys(ob->by_connection) == 0);
    gd_ptrcount_free(ob->by_connection);
    free(ob);
    return NULL;
}

size_t gd_outbox_bytes(const gd_outbox_t *ob)
{
    return ob != NULL ? ob->bytes : 0;
}

size_t gd_outbox_take_peak(gd_outbox_t *ob)
{
    size_t peak = ob->peak;

    ob->peak = ob->bytes;
    return peak;
}

static bool is_multiplexed(const h2o_req_t *req)
{
    return req->version >= 0x200;
}

int gd_outbox_check(gd_outbox_t *ob, h2o_req_t *req, size_t len)
{
    if (ob == NULL)
        return 0;
    size_t in_process = atomic_load_explicit(ob->process_bytes, memory_order_relaxed);
    size_t in_conn = is_multiplexed(req) ? gd_ptrcount_get(ob->by_connection, req->conn) : 0;
    int r = 0;

    /* Nothing held yet: the answer goes, however large (the bounds limit what piles up). */
    if (in_conn > 0 && (in_conn >= ob->limits.max_bytes_per_connection ||
                        len > ob->limits.max_bytes_per_connection - in_conn))
        r = GD_OUTBOX_CONNECTION_FULL;
    else if (in_process > 0 &&
             (in_process >= ob->limits.max_bytes || len > ob->limits.max_bytes - in_process))
        r = GD_OUTBOX_PROCESS_FULL;
    if (r != 0 && ob->metrics != NULL)
        gd_metrics_count_unsent_refusal(ob->metrics, r == GD_OUTBOX_PROCESS_FULL);
    return r;
}

/* The client address for the log line: what the request was identified as, else the peer. */
static void describe_client(struct tracked *t, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    char text[INET6_ADDRSTRLEN] = "-";
    socklen_t len;

    if (t->client[0] != '\0') {
        snprintf(buf, cap, "%s", t->client);
        return;
    }
    len = t->req->conn->callbacks->get_peername(t->req->conn, (struct sockaddr *)&ss);
    if (len > 0 && ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, text, sizeof(text));
    else if (len > 0 && ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text, sizeof(text));
    snprintf(buf, cap, "%s", text);
}

/* Whether gatherd has already shut @fd down: the zero linger below is its mark (nothing else
 * in gatherd sets SO_LINGER on a client socket). The streams of one HTTP/2 connection time out
 * together: the connection is logged and counted once. */
static bool is_shut_down(int fd)
{
    struct linger lg;
    socklen_t len = sizeof(lg);
    return getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff != 0 &&
           lg.l_linger == 0;
}

/* No byte taken for write_timeout_ms: the connection goes, with all its streams. Its socket is
 * shut down, not closed: h2o owns the descriptor, and sees a failed write (HTTP/1, HTTP/2 with a
 * write pending) or the end of stream (HTTP/2 reading on) at its next turn, then closes the
 * connection and disposes of its requests. A zero linger makes that close a reset, so the kernel
 * drops what it still holds for the client at once instead of probing a zero window for
 * minutes. */
static void on_write_timeout(gd_timer_t *timer)
{
    struct tracked *t = H2O_STRUCT_FROM_MEMBER(struct tracked, timer, timer);
    h2o_socket_t *sock = t->req->conn->callbacks->get_socket != NULL
                             ? t->req->conn->callbacks->get_socket(t->req->conn)
                             : NULL;
    char client[INET6_ADDRSTRLEN + 8];

    t->is_closing = true;
    if (sock == NULL)
        return;
    int fd = h2o_socket_get_fd(sock);
    if (is_shut_down(fd))
        return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    /* Errors: the socket is already broken, and h2o closes it anyway. */
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    (void)shutdown(fd, SHUT_RDWR);
    if (t->ob->metrics != NULL)
        gd_metrics_count_write_timeout(t->ob->metrics);
    describe_client(t, client, sizeof(client));
    char what[160] = "an error answer";
    if (t->endpoint != NULL)
        snprintf(what, sizeof(what), "endpoint %s %s", t->endpoint->method, t->endpoint->path);
    gd_log_warn("client %s took no byte of its answer (%s, %zu bytes) for %llu ms "
                "(write_timeout_ms): closing its HTTP/%d connection",
                client, what, t->held, (unsigned long long)t->ob->limits.write_timeout_ms,
                is_multiplexed(t->req) ? 2 : 1);
}

static void restart_timer(struct tracked *t)
{
    gd_timer_start(t->ob->timers, &t->timer,
                   gd_timers_now(t->ob->timers) + t->ob->limits.write_timeout_ms);
}

/* Hands the next piece to h2o; the last one ends the answer. */
static void send_piece(struct tracked *t)
{
    h2o_iovec_t piece = t->rest;

    if (piece.len > PIECE_BYTES)
        piece.len = PIECE_BYTES;
    t->rest.base += piece.len;
    t->rest.len -= piece.len;
    h2o_send(t->req, &piece, 1,
             t->rest.len == 0 ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

/* h2o took the last piece: the client is reading. */
static void on_proceed(h2o_generator_t *generator, h2o_req_t *req)
{
    struct tracked *t = (struct tracked *)generator;

    if (t->is_closing)
        return; /* the connection is going: h2o disposes of the request */
    restart_timer(t);
    send_piece(t);
}

/* h2o disposes of the request: the answer is sent, or its connection gone. Bookkeeping only. */
static void on_tracked_dispose(void *p)
{
    struct tracked *t = p;
    gd_outbox_t *ob = t->ob;

    gd_timer_stop(ob->timers, &t->timer);
    ob->answers--;
    ob->bytes -= t->held;
    atomic_fetch_sub_explicit(ob->process_bytes, t->held, memory_order_relaxed);
    if (t->conn != NULL)
        gd_ptrcount_sub(ob->by_connection, t->conn, t->held);
}

void gd_outbox_send(gd_outbox_t *ob, h2o_req_t *req, const gd_outbox_answer_t *a)
{
    static h2o_generator_t untracked = {NULL, NULL};

    if (ob == NULL) {
        h2o_iovec_t body = a->body;
        h2o_start_response(req, &untracked);
        h2o_send(req, body.len != 0 ? &body : NULL, body.len != 0 ? 1 : 0, H2O_SEND_STATE_FINAL);
        return;
    }
    struct tracked *t = h2o_mem_alloc_shared(&req->pool, sizeof(*t), on_tracked_dispose);
    *t = (struct tracked){.generator = {on_proceed, NULL},
                          .ob = ob,
                          .req = req,
                          .conn = is_multiplexed(req) && a->held > 0 ? req->conn : NULL,
                          .held = a->held,
                          .rest = a->body,
                          .endpoint = a->endpoint};
    if (a->client != NULL)
        snprintf(t->client, sizeof(t->client), "%s", a->client);
    gd_timer_init(&t->timer, on_write_timeout);
    ob->answers++;
    ob->bytes += t->held;
    if (ob->bytes > ob->peak)
        ob->peak = ob->bytes;
    atomic_fetch_add_explicit(ob->process_bytes, t->held, memory_order_relaxed);
    if (t->conn != NULL)
        gd_ptrcount_add(ob->by_connection, t->conn, t->held);
    restart_timer(t);
    h2o_start_response(req, &t->generator);
    if (t->rest.len == 0)
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        send_piece(t);
}
