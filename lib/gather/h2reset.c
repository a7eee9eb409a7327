#include "gather/h2reset.h"

#include <stdatomic.h>
#include <sys/socket.h>

#include <h2o/http2.h>
#include <h2o/http2_internal.h> /* through gather/h2o-compat/khash.h, see there */

#include "base/util.h"
#include "ops/log.h"

/* One connection's budget: made at its first reset, freed with its socket. */
struct conn_budget {
    unsigned left;
    uint64_t refilled_at_ms; /* the time up to which whole seconds have been given back */
    bool is_spent;           /* GOAWAY sent: counted, logged and acted on once */
};

static void on_socket_close(void *data)
{
    free(data);
}

/* The budget of @sock: NULL when it has none yet (full), and with @may_create one is made. NULL
 * too when the socket's on_close hook belongs to someone else: the connection goes unguarded
 * rather than break them. */
static struct conn_budget *budget_of(h2o_socket_t *sock, unsigned budget, uint64_t now_ms,
                                     bool may_create)
{
    if (sock->on_close.cb == on_socket_close)
        return sock->on_close.data;
    if (!may_create || sock->on_close.cb != NULL)
        return NULL;
    struct conn_budget *b = gd_xcalloc(1, sizeof(*b));
    b->left = budget;
    b->refilled_at_ms = now_ms;
    sock->on_close.cb = on_socket_close;
    sock->on_close.data = b;
    return b;
}

/* One reset given back per whole second since the last refill, up to @budget. */
static void refill(struct conn_budget *b, unsigned budget, uint64_t now_ms)
{
    uint64_t seconds = now_ms > b->refilled_at_ms ? (now_ms - b->refilled_at_ms) / 1000 : 0;

    if (seconds == 0)
        return;
    b->refilled_at_ms += seconds * 1000;
    b->left = seconds >= budget - b->left ? budget : b->left + (unsigned)seconds;
}

/* What h2o's own enqueue_goaway() (static in 2.2.5) does on a protocol error: the frame goes
 * into the output buffer, a write is scheduled, and the connection is half-closed, in which
 * state h2o starts no new stream (a HEADERS frame is ignored). Then the socket's read side is
 * shut: h2o reads the end of input on a later loop iteration and closes the connection through
 * its own read-error path, after writing what is buffered (the GOAWAY), with the streams still
 * open on it. */
static void send_goaway_and_close(h2o_http2_conn_t *conn)
{
    static const char why[] = "too many streams reset before their answer";

    h2o_http2_encode_goaway_frame(&conn->_write.buf, conn->pull_stream_ids.max_open,
                                  H2O_HTTP2_ERROR_ENHANCE_YOUR_CALM,
                                  h2o_iovec_init(why, sizeof(why) - 1));
    h2o_http2_conn_request_write(conn);
    conn->state = H2O_HTTP2_CONN_STATE_HALF_CLOSED;
    (void)shutdown(h2o_socket_get_fd(conn->sock), SHUT_RD); /* fails only on a dead socket,
                                                             * whose close h2o sees anyway */
}

/* Once per connection, but at most one line a second for the process: an attacker that
 * reconnects at once would otherwise write hundreds a second. The lines left out are counted
 * in the next one (and all of them in gatherd_http2_reset_goaways_total). */
static void log_goaway(const char *client, unsigned budget, uint64_t now_ms)
{
    static _Atomic uint64_t next_line_ms, left_out;

    uint64_t due = atomic_load(&next_line_ms);
    if (now_ms < due || !atomic_compare_exchange_strong(&next_line_ms, &due, now_ms + 1000)) {
        atomic_fetch_add(&left_out, 1);
        return;
    }
    uint64_t more = atomic_exchange(&left_out, 0);
    if (more == 0)
        gd_log_warn("HTTP/2 client %s reset more streams before their answer than "
                    "http2_reset_budget (%u) allows: GOAWAY (ENHANCE_YOUR_CALM), connection "
                    "closed",
                    client != NULL ? client : "-", budget);
    else
        gd_log_warn("HTTP/2 client %s reset more streams before their answer than "
                    "http2_reset_budget (%u) allows: GOAWAY (ENHANCE_YOUR_CALM), connection "
                    "closed (and %llu more connections since the last such line)",
                    client != NULL ? client : "-", budget, (unsigned long long)more);
}

void gd_h2reset_note(h2o_req_t *req, bool is_answered, unsigned budget, const char *client,
                     uint64_t now_ms, gd_metrics_t *metrics)
{
    static atomic_bool has_warned_layout; /* once per process, whichever thread sees it */

    if (req->version < 0x200)
        return;
    h2o_http2_conn_t *conn = (h2o_http2_conn_t *)req->conn;
    /* The struct comes from a header libh2o installs without its khash.h (see h2o-compat):
     * checked against what libh2o itself says the socket is before anything is touched. */
    if (conn->sock == NULL || conn->sock != req->conn->callbacks->get_socket(req->conn)) {
        if (!atomic_exchange(&has_warned_layout, true))
            gd_log_warn("the HTTP/2 connection of libh2o is not laid out as its header says: "
                        "HTTP/2 stream resets go uncounted (see http2_reset_budget)");
        return;
    }
    /* A closing connection disposes of its streams; a half-closed one starts no more. */
    if (conn->state != H2O_HTTP2_CONN_STATE_OPEN)
        return;
    if (is_answered) {
        struct conn_budget *b = budget_of(conn->sock, budget, now_ms, false);
        if (b != NULL && b->left < budget)
            b->left++;
        return;
    }
    gd_metrics_count_http2_reset(metrics, false);
    if (budget == 0)
        return;
    struct conn_budget *b = budget_of(conn->sock, budget, now_ms, true);
    if (b == NULL || b->is_spent)
        return;
    refill(b, budget, now_ms);
    if (b->left > 0) {
        b->left--;
        return;
    }
    b->is_spent = true;
    gd_metrics_count_http2_reset(metrics, true);
    log_goaway(client, budget, now_ms);
    send_goaway_and_close(conn);
}
