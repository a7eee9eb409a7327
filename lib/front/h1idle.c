#include "front/h1idle.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>

/* The head of h2o 2.2.5's private struct st_h2o_http1_conn_t (lib/http1.c), which its header
 * does not expose: the connection, its socket, its link in ctx->http1._conns, and its timeout
 * (the request-timeout list while it waits for a request or reads its body). libh2o is pinned
 * to 2.2.5 (Debian's libh2o-dev); each connection's socket is checked against the one its own
 * get_socket callback gives, so a different layout leaves connections open, never misread. */
struct h1conn_head {
    h2o_conn_t super;
    h2o_socket_t *sock;
    h2o_linklist_t _conns;
    h2o_timeout_t *_timeout;
    h2o_timeout_entry_t _timeout_entry;
};

/* Whether the kernel holds bytes (or an end of stream) to read on @sock: h2o has not seen them. */
static bool has_readable(h2o_socket_t *sock)
{
    char c;
    ssize_t n = recv(h2o_socket_get_fd(sock), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Whether @c waits for a request: on the request-timeout list (not being processed or answered). */
static bool waits_for_request(h2o_context_t *ctx, struct h1conn_head *c)
{
    return c->_timeout == &ctx->http1.req_timeout && h2o_timeout_is_linked(&c->_timeout_entry);
}

size_t gd_h1idle_close(h2o_context_t *ctx, uint64_t idle_before_ms)
{
    h2o_linklist_t *anchor = &ctx->http1._conns, *node, *next;
    size_t waiting = 0;

    for (node = anchor->next; node != anchor; node = next) {
        next = node->next; /* closing frees the connection and unlinks it */
        struct h1conn_head *c = H2O_STRUCT_FROM_MEMBER(struct h1conn_head, _conns, node);
        if (c->super.callbacks->get_socket == NULL || c->sock == NULL ||
            c->super.callbacks->get_socket(&c->super) != c->sock)
            continue;
        if (!waits_for_request(ctx, c))
            continue; /* being processed or answered */
        waiting++;
        /* A byte in h2o's buffer is part of a request (or of its body): h2o reads on. */
        if (c->sock->input->size != 0 || c->_timeout_entry.registered_at > idle_before_ms ||
            has_readable(c->sock))
            continue;
        /* What h2o_timeout_run() does for an expired entry: h2o closes the connection. */
        h2o_timeout_entry_t *entry = &c->_timeout_entry;
        h2o_timeout_unlink(entry);
        entry->cb(entry);
        waiting--;
    }
    return waiting;
}

bool gd_h1idle_is_waiting(h2o_context_t *ctx, h2o_socket_t *sock,
                          const h2o_conn_callbacks_t *http1_callbacks)
{
    /* h2o's HTTP/1 connection is the socket's data; HTTP/2's, after an upgrade, is not one. */
    h2o_conn_t *conn = sock->data;
    if (conn == NULL || http1_callbacks == NULL || conn->callbacks != http1_callbacks ||
        conn->callbacks->get_socket(conn) != sock)
        return false;
    struct h1conn_head *c = (struct h1conn_head *)conn;
    /* Waiting for a request: on the request-timeout list, reading, nothing of one buffered
     * (the rest of the request head, or a body, keeps bytes in the buffer until answered). */
    return waits_for_request(ctx, c) && sock->_cb.read != NULL && sock->input->size == 0;
}
