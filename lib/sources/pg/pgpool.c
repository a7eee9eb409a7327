#include "sources/pg/pgpool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "base/gate.h"
#include "base/retry_budget.h"
#include "base/util.h"
#include "ops/log.h"
#include "sources/pg/pgcancel.h"
#include "sources/pg/pgjson.h"

/* Unacknowledged data (or an unanswered connect) on a Postgres socket for this long ends it. */
#define PG_TCP_USER_TIMEOUT_MS "10000"

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum {
    BACKOFF_FIRST_MS = 100, /* the first retry after a failed connect */
    BACKOFF_MAX_MS = 5000,
    /* How long an abandoned query may take to end after its cancel request: a server that
     * honours cancels answers within milliseconds, so a connection still busy after this is
     * better closed than kept out of the pool. */
    DRAIN_TIMEOUT_MS = 2000,
    /* How long a closing pool waits for a cancel still being sent (to a host that may never
     * answer) before it leaves the canceller's thread to finish on its own. */
    CANCEL_STOP_TIMEOUT_MS = 1000,
    /* A server that stops answering cancels makes every timeout drop one: warned about at
     * most this often per pool, the rest at debug level (and counted in the next warning). */
    CANCEL_WARN_INTERVAL_MS = 10000,
    DESC_MAX = 200,
    /* How many times a query skipped by another one's error in its batch is sent again
     * before it fails with that error: each round takes at least the failing query out, so
     * this bound is only reached by a server that keeps cancelling or failing batches. */
    MAX_RESENDS = 3,
    /* postgres.pipeline_depth's bound: a batch of queries is one array on its connection. */
    PIPELINE_DEPTH_MAX = 64,
    /* Waiters a connection looks at for its batch at most: a line of queries that may not
     * share one (writes) is not walked whole for every batch. */
    LINE_SCAN_MAX = 128,
    /* Addresses of a resolved host name handed to libpq, which tries them in order as it
     * would had it resolved the name itself. */
    MAX_ADDRS = 8,
};

/* A connection's life: BACKOFF -> (RESOLVING ->) CONNECTING -> IDLE <-> BUSY, and back to
 * BACKOFF whenever it fails or breaks. Under a shared count a slot starts SPARE, leaves it when
 * it takes a unit and comes back to it (from IDLE) when it gives the unit back. */
enum conn_state {
    CONN_BACKOFF = 1, /* not connected; its timer starts the next attempt */
    CONN_RESOLVING,   /* waiting for uv_getaddrinfo() */
    CONN_CONNECTING,  /* PQconnectPoll() in progress */
    CONN_IDLE,
    CONN_BUSY,   /* a query's pipeline is in flight (perhaps an abandoned one, see is_abandoned) */
    CONN_CLOSED, /* gd_pgpool_close() */
    CONN_SPARE,  /* holds no unit of the shared count: not connected, not trying to */
};

enum query_state {
    QUERY_STARTING = 1, /* inside gd_pgpool_query_start() */
    QUERY_WAITING,      /* in the pool's line for a connection */
    QUERY_RUNNING,      /* its pipeline entry is on a connection */
    QUERY_BACKOFF,      /* between attempts: its timer starts the next */
    QUERY_DONE,
};

/* Where a pipeline entry is in its sequence of results: the prepare's result and NULL (only
 * when the statement is not prepared on the connection yet), then the query's result and NULL.
 * The batch's PGRES_PIPELINE_SYNC follows its last entry. */
enum pipe_phase {
    PHASE_PREPARE = 1,
    PHASE_EXECUTE,
    PHASE_DONE,
};

/* How a query taken off the pool's list of ended ones ends (gd_pgpool_query_t._end). */
enum query_end {
    END_REPORT = 1, /* its result is final */
    END_ATTEMPT,    /* its attempt failed: a retry may follow (end_attempt()) */
};

/*
 * One query of a batch on a connection, from sending to the end of its own results. Entries
 * are read in order; an ERROR skips every entry behind it up to the batch's Sync
 * (PGRES_PIPELINE_ABORTED), and those are sent again once the Sync has come.
 */
struct pipe_entry {
    gd_pgpool_query_t *query; /* NULL once ended or abandoned: the rest is read and dropped */
    size_t statement;
    enum pipe_phase phase;
    bool is_prepare_ok;
    bool is_answered; /* the server answered something of it */
    /* The server skipped it (an earlier entry's error, or a cancel meant for another entry):
     * it never ran, and is sent again. */
    bool is_skipped;
    bool is_abandoned; /* its query left while the server may still run it: the drain's */
    size_t rows; /* rendered into body so far */
    /* The outcome so far; the first error wins (a failed prepare aborts the execute too). */
    gd_outcome_t outcome;
    /* The rows broke the query's row rule or limits: decided without the rest of them, so the
     * query is reported at once and the rest is read and dropped. */
    bool is_rule_broken;
    char message[GD_CALL_MESSAGE_MAX];
    char sqlstate[6];
    gd_pgjson_buf_t body;         /* owned until handed to the query */
    gd_pgjson_columns_t *columns; /* a reference, from the first row on */
};

struct conn;

/* A uv_getaddrinfo() in flight. Outlives its connection attempt when that is abandoned. */
struct resolve_req {
    uv_getaddrinfo_t req;
    struct conn *conn; /* NULL once the attempt is abandoned: the callback then only frees */
};

struct conn {
    gd_pgpool_t *pool;
    size_t index;
    enum conn_state state;
    PGconn *pg;
    /* Heap memory: a handle being closed must stay valid until its close callback, which may
     * come after the connection has moved on to a new socket and a new handle. */
    uv_poll_t *poll;
    int poll_events;
    unsigned poll_errors; /* socket errors reported in a row */
    gd_timer_t timer;     /* connect timeout, backoff, or the drain of an abandoned query */
    struct resolve_req *resolve;
    /* The cancel of an abandoned query, on its way: the connection is not reused before it has
     * been sent, or it could stop the next query. */
    gd_pgcancel_req_t *cancel_req;
    uint64_t backoff_ms;
    uint64_t *prepared;     /* bit i: statement i is prepared as "gd_<i>" on this connection */
    bool has_failed;        /* the last connect attempt failed */
    bool has_been_up;       /* connected at least once: the next connect is a reconnect */
    bool is_abandoned;      /* BUSY with an abandoned query: back to the pool once clean */
    bool holds_unit;        /* BUSY: holds a unit of the pool's line, given back when it leaves */
    uint64_t idle_since_ms; /* IDLE: since when, to give back the least recently used */
    /* The batch in flight: entries[head] is the one whose results are read next; past the
     * last, the Sync is. is_synced: the Sync came (the batch is over; what is left of it waits
     * for a cancel still on its way before it is sent again). */
    struct pipe_entry *entries;
    size_t nentries, head;
    bool is_synced;
    /* A cancel was asked for during this batch (or the one it was re-sent from): a 57014 on an
     * entry nobody abandoned is the cancel meant for another, and that entry is sent again. */
    bool has_cancel;
    /* The batch's messages went to the socket: a connection that breaks from then on may have
     * run them, so only one that broke before is a failure to retry (or one whose write failed,
     * which libpq reports only later: see conn_lost()). */
    bool is_sent;
    bool is_answered; /* the server answered something of the batch */
    /* For a batch with a query that may be retried, over TCP: the bytes of the connection the
     * server had acknowledged before the batch was written, and as of the last read while no
     * answer had come. The same: the server's host never received a byte of it. */
    bool is_ack_tracked;
    uint64_t acked_before, acked_since;
    char last_fatal[GD_CALL_MESSAGE_MAX]; /* the server's last FATAL notice: why it hung up */
};

struct gd_pgpool {
    const gd_pgpool_conf_t *conf;
    uv_loop_t *loop;
    gd_timers_t *timers;
    struct conn *conns;
    size_t prepared_words;
    /* Per statement: how its rows render (quoted column names, value kinds), made from its
     * first result and checked against every query's first row, since a schema change may
     * change the columns of the same SQL. A reference each; NULL until the first rows. */
    gd_pgjson_columns_t **columns;
    /* The line for a connection: a unit per connection up (idle or busy), held by a busy one
     * or by a query granted one that has not taken its idle connection yet. A unit freed is
     * granted at once and reported on the next loop iteration (base/gate.h), never from
     * inside the callback that freed the connection: reporting may switch into a coroutine. */
    gd_gate_t line;
    size_t up; /* connections idle or busy: the line's limit */
    /* Fails the waiting queries once the server is known to be down, on the next loop
     * iteration: reporting a query may switch into its coroutine. */
    gd_timer_t down_timer;
    /* What to add to the conninfo so that libpq never resolves a name itself (blocking). */
    bool is_conninfo_valid;
    char *host;        /* owned; NULL: the conninfo's hosts are used as they are */
    bool is_host_name; /* host must be resolved with uv_getaddrinfo() into hostaddr= */
    char *port;        /* owned; the first port when a list was reduced to its first host */
    char *user;        /* owned; the OS user name when neither conninfo nor PGUSER names one */
    /* owned; options= with statement_timeout ahead of the conninfo's (or PGOPTIONS') own, so
     * that theirs win when they set it too; NULL: no backstop */
    char *options;
    /* "host=... port=... dbname=...": names the server in logs and messages, never with the
     * password (the conninfo itself is never logged). */
    char desc[DESC_MAX];
    bool is_outage_logged;    /* a loss or failure was logged at warn; the recovery will be too */
    gd_pgcancel_t *canceller; /* sends cancel requests from a thread of its own */
    size_t polls_open;
    uint64_t reconnects, cancels, cancels_dropped;
    uint64_t batches, batched_queries, resent_queries;
    size_t depth;        /* queries per batch at most (>= 1) */
    /* Queries whose end is decided, reported by flush_ended() once the code that decided it
     * touches the connection no more: reporting may switch into a coroutine, which may start
     * or cancel queries of the same batch. */
    h2o_linklist_t ended;
    /* The warning for dropped cancels: when it was last logged, and the drops since. */
    bool has_warned_cancels;
    uint64_t cancels_warned_ms;
    size_t cancel_warns_suppressed;
    /* Under a shared count (conf->shared, else NULL): every slot that is not SPARE holds one
     * unit of it (funded of them); rebalance_timer runs rebalance() on the next iteration. */
    gd_pgpool_shared_t *shared;
    gd_budget_member_t member;
    size_t funded;
    gd_timer_t rebalance_timer;
    bool is_closed;
};

struct gd_pgpool_shared {
    gd_budget_t *budget;
    /* The connections up in every pool, times two, plus one while the server is known to be
     * down: one word, so that "down" is never set while a connection is up anywhere. */
    atomic_size_t up2_down;
};

static void conn_start(struct conn *c);
static void schedule_rebalance(gd_pgpool_t *pool);
static void conn_run(struct conn *c, gd_pgpool_query_t *q);
static void begin_attempt(gd_pgpool_query_t *query);
static void on_poll(uv_poll_t *handle, int status, int events);

/* -- small helpers ------------------------------------------------------------------------ */

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Copies the first line of libpq's (often multi-line) message @s into @buf. */
static const char *first_line(const char *s, char *buf, size_t cap)
{
    size_t n = 0;

    if (s == NULL)
        s = "";
    while (s[n] != '\0' && s[n] != '\n' && n + 1 < cap)
        n++;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r'))
        n--;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (n == 0)
        snprintf(buf, cap, "unknown error");
    return buf;
}

/* Where Linux (4.1 on) puts tcpi_bytes_acked in its struct tcp_info: glibc's copy of the
 * struct ends before it (at tcpi_total_retrans), and <linux/tcp.h>, which has it, clashes with
 * <netinet/tcp.h> (included by uv.h). The kernel's struct only ever grows at its end. */
#define TCPI_BYTES_ACKED_OFFSET 120

/* The bytes the peer of TCP socket @fd has acknowledged. Returns false when @fd is not TCP (a
 * Unix socket) or the kernel does not count them. */
static bool tcp_bytes_acked(int fd, uint64_t *ret_acked)
{
    unsigned char info[256];
    socklen_t len = sizeof(info);

    _Static_assert(TCPI_BYTES_ACKED_OFFSET >= sizeof(struct tcp_info), "glibc's tcp_info grew");
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, info, &len) != 0 ||
        len < TCPI_BYTES_ACKED_OFFSET + sizeof(uint64_t))
        return false;
    memcpy(ret_acked, info + TCPI_BYTES_ACKED_OFFSET, sizeof(uint64_t));
    return true;
}

static bool is_prepared(const struct conn *c, size_t i)
{
    return (c->prepared[i / 64] >> (i % 64)) & 1;
}

static void set_prepared(struct conn *c, size_t i)
{
    c->prepared[i / 64] |= UINT64_C(1) << (i % 64);
}

static bool is_up(const struct conn *c)
{
    return c->state == CONN_IDLE || c->state == CONN_BUSY;
}

/* No connection of @pool is up and the last connect attempt of each one holding a unit (all,
 * without a shared count) failed. */
static bool have_all_failed(const gd_pgpool_t *pool)
{
    for (size_t i = 0; i < pool->conf->size; i++) {
        const struct conn *c = &pool->conns[i];
        if (is_up(c) || (!c->has_failed && c->state != CONN_SPARE))
            return false;
    }
    return true;
}

static bool is_shared_down(const gd_pgpool_shared_t *sh)
{
    return (atomic_load_explicit(&sh->up2_down, memory_order_relaxed) & 1) != 0;
}

/* The server is known to be down: no connection is up and the last connect attempt of every
 * connection failed. Until each has tried once, queries wait as for a busy pool. Under a shared
 * count, also known so to the process (gd_pgpool_shared_t), which a pool without units or with
 * all its own failed follows. */
static bool is_pool_down(const gd_pgpool_t *pool)
{
    return have_all_failed(pool) && (pool->shared == NULL || is_shared_down(pool->shared));
}

/* Counts a connection of any pool that comes up (which ends "down") or stops being up. */
static void count_shared_up(gd_pgpool_shared_t *sh, bool is_now_up)
{
    size_t v = atomic_load(&sh->up2_down);

    if (!is_now_up) {
        atomic_fetch_sub(&sh->up2_down, 2);
        return;
    }
    while (!atomic_compare_exchange_weak(&sh->up2_down, &v, (v & ~(size_t)1) + 2))
        ;
}

/* Marks the server down unless a connection is up somewhere; returns whether this call did. */
static bool mark_shared_down(gd_pgpool_shared_t *sh)
{
    size_t v = atomic_load(&sh->up2_down);

    while (v == 0)
        if (atomic_compare_exchange_weak(&sh->up2_down, &v, 1))
            return true;
    return false;
}

static struct conn *find_idle(gd_pgpool_t *pool)
{
    /* Lowest index first: under light load the same few connections stay warm, with their
     * statements prepared. */
    for (size_t i = 0; i < pool->conf->size; i++) {
        if (pool->conns[i].state == CONN_IDLE)
            return &pool->conns[i];
    }
    return NULL;
}

/* Moves @c to @state, keeping the line's limit at the connections up, and gives back the unit
 * a busy connection held when it stops being busy (after the limit: a unit freed by a
 * connection that broke must not be granted again). */
static void set_state(struct conn *c, enum conn_state state)
{
    gd_pgpool_t *pool = c->pool;
    bool was_up = is_up(c);

    c->state = state;
    if (was_up != is_up(c)) {
        pool->up = was_up ? pool->up - 1 : pool->up + 1;
        gd_gate_set_limit(&pool->line, pool->up);
        if (pool->shared != NULL)
            count_shared_up(pool->shared, !was_up);
    }
    if (c->holds_unit && state != CONN_BUSY) {
        c->holds_unit = false;
        gd_gate_release(&pool->line);
    }
}

static void on_down_timer(gd_timer_t *timer)
{
    gd_pgpool_t *pool = CONTAINER_OF(timer, gd_pgpool_t, down_timer);

    /* Each report may switch into a coroutine that starts queries or closes the pool. */
    if (!pool->is_closed && is_pool_down(pool))
        gd_gate_refuse_all(&pool->line);
}

/* -- reporting ---------------------------------------------------------------------------- */

/* Ends @q with the result already written into q->base.result. Reporting may switch into the
 * request coroutine, which may dispose of @q, start new queries or close the pool, so callers
 * call this last and touch nothing afterwards. */
static void report(gd_pgpool_query_t *q)
{
    gd_pgpool_t *pool = q->_pool;

    gd_timer_stop(pool->timers, &q->_timer);
    if (pool->shared != NULL && gd_gate_is_waiting(&q->_waiter))
        schedule_rebalance(pool); /* one fewer waiting: perhaps no unit wanted any more */
    gd_gate_cancel(&q->_waiter);  /* a no-op unless it waits */
    q->_state = QUERY_DONE;
    q->_conn = NULL;
    q->base.result.attempts = q->_attempt;
    q->base.result.elapsed_ms = gd_call_elapsed_ms(&q->base);
    gd_call_report(&q->base);
}

static void finish(gd_pgpool_query_t *q, gd_outcome_t outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_failure(gd_pgpool_query_t *q, gd_outcome_t outcome, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void set_failure(gd_pgpool_query_t *q, gd_outcome_t outcome, const char *fmt, va_list ap)
{
    q->base.result.outcome = outcome;
    q->base.result.sqlstate[0] = '\0';
    vsnprintf(q->base.result.message, sizeof(q->base.result.message), fmt, ap);
}

static void finish(gd_pgpool_query_t *q, gd_outcome_t outcome, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_failure(q, outcome, fmt, ap);
    va_end(ap);
    report(q);
}

/* Whether the failure in @q's result is one a SQL retry takes: a serialization failure or a
 * deadlock (the transaction was rolled back whole, and running it again may succeed), or a
 * connection that broke before the query left (@is_unsent): the server never saw it. */
static bool is_retried_failure(const gd_pgpool_query_t *q, bool is_unsent)
{
    const gd_call_result_t *r = &q->base.result;

    if (r->outcome == GD_OUTCOME_SQL)
        return strcmp(r->sqlstate, "40001") == 0 || strcmp(r->sqlstate, "40P01") == 0;
    return r->outcome == GD_OUTCOME_IO && is_unsent;
}

/* Decides whether @q, whose attempt failed (result written) and which holds no connection any
 * more, runs again: when its policy has attempts left, it is idempotent, the failure is one
 * to retry, the backoff ends before its deadline (a wait that cannot is not started) and the
 * retry budget allows it. Then starts the backoff and returns true. */
static bool schedule_retry(gd_pgpool_query_t *q, bool is_unsent)
{
    gd_pgpool_t *pool = q->_pool;
    const gd_retry_conf_t *rc = q->retry;
    gd_retry_budget_t *b = pool->conf->retry_budget;
    uint64_t now = gd_timers_now(pool->timers), wait;

    if (rc == NULL || q->_attempt >= rc->attempts || !q->is_idempotent || pool->is_closed ||
        !is_retried_failure(q, is_unsent) || now >= q->base.deadline_ms)
        return false;
    wait = gd_retry_backoff_ms(rc->backoff_ms, rc->max_backoff_ms, q->_attempt);
    if (add_sat(now, wait) >= q->base.deadline_ms)
        return false;
    if (b != NULL && !gd_retry_budget_take(b, now, rc->budget_percent, rc->min_retries_per_s)) {
        atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
        return false;
    }
    if (b != NULL)
        atomic_fetch_add_explicit(&b->retries, 1, memory_order_relaxed);
    gd_log_debug("postgres: attempt %u failed (%s%s%.100s); retry in %" PRIu64 " ms", q->_attempt,
                 q->base.result.sqlstate, q->base.result.sqlstate[0] != '\0' ? ": " : "",
                 q->base.result.message, wait);
    q->_attempt++;
    q->_state = QUERY_BACKOFF;
    q->_conn = NULL;
    gd_timer_start(pool->timers, &q->_timer, now + wait);
    return true;
}

/* Ends @q's attempt, whose failure is in its result, and with it the query unless a retry
 * follows. Reports last, as report(). */
static void end_attempt(gd_pgpool_query_t *q, bool is_unsent)
{
    if (!schedule_retry(q, is_unsent))
        report(q);
}

/* Puts @q, whose result is written, on the pool's list of ended queries: flush_ended() reports
 * it (END_REPORT) or ends its attempt (END_ATTEMPT, @is_unsent as for end_attempt()). Its
 * deadline stops now: it holds no connection any more. */
static void push_ended(gd_pgpool_query_t *q, enum query_end end, bool is_unsent)
{
    gd_timer_stop(q->_pool->timers, &q->_timer);
    q->_conn = NULL;
    q->_end = (int)end;
    q->_is_unsent = is_unsent;
    h2o_linklist_insert(&q->_pool->ended, &q->_ended);
}

static void fail_later(gd_pgpool_query_t *q, bool is_unsent, gd_outcome_t outcome,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* push_ended() of a failed attempt, with the failure written first. */
static void fail_later(gd_pgpool_query_t *q, bool is_unsent, gd_outcome_t outcome,
                       const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_failure(q, outcome, fmt, ap);
    va_end(ap);
    push_ended(q, END_ATTEMPT, is_unsent);
}

/* Reports the ended queries, oldest first. Each report may switch into a coroutine that
 * starts, cancels or ends queries (ending more of them here too); the pool's memory stays
 * until gd_pgpool_free(), which only comes after the loop's run. */
static void flush_ended(gd_pgpool_t *pool)
{
    while (!h2o_linklist_is_empty(&pool->ended)) {
        gd_pgpool_query_t *q = H2O_STRUCT_FROM_MEMBER(gd_pgpool_query_t, _ended, pool->ended.next);
        h2o_linklist_unlink(&q->_ended);
        if (q->_end == END_ATTEMPT)
            end_attempt(q, q->_is_unsent);
        else
            report(q);
    }
}

static void finish_unavailable(gd_pgpool_query_t *q)
{
    finish(q, GD_OUTCOME_UNAVAILABLE, "no Postgres connection is up (%s)", q->_pool->desc);
}

/* -- connections: poll handles, discard, retry -------------------------------------------- */

static void on_poll_closed(uv_handle_t *handle)
{
    struct conn *c = handle->data;

    c->pool->polls_open--;
    free(handle);
}

static void poll_close(struct conn *c)
{
    if (c->poll == NULL)
        return;
    /* Synchronously removes the fd from the loop's epoll set, so PQfinish() or a socket that
     * libpq reopens on the same fd number cannot confuse the loop; the memory goes in
     * on_poll_closed(). */
    uv_close((uv_handle_t *)c->poll, on_poll_closed);
    c->poll = NULL;
    c->poll_events = 0;
}

/* Watches the connection's current socket for @events. Returns 0 or a libuv error. */
static int conn_watch(struct conn *c, int events)
{
    int fd = PQsocket(c->pg);
    int r;

    if (fd < 0)
        return UV_EBADF;
    if (c->poll == NULL) {
        c->poll = gd_xmalloc(sizeof(*c->poll));
        if ((r = uv_poll_init_socket(c->pool->loop, c->poll, fd)) < 0) {
            free(c->poll);
            c->poll = NULL;
            return r;
        }
        c->poll->data = c;
        c->pool->polls_open++;
    }
    if (events != c->poll_events) {
        if ((r = uv_poll_start(c->poll, events, on_poll)) < 0)
            return r;
        c->poll_events = events;
    }
    return 0;
}

static void entry_reset(struct pipe_entry *e)
{
    free(e->body.base);
    gd_pgjson_columns_unref(e->columns);
    memset(e, 0, sizeof(*e));
}

/* Forgets the batch: every entry's query must have been ended or detached before. */
static void batch_reset(struct conn *c)
{
    for (size_t i = 0; i < c->nentries; i++)
        entry_reset(&c->entries[i]);
    c->nentries = 0;
    c->head = 0;
    c->is_synced = false;
    c->has_cancel = false;
    c->is_sent = false;
    c->is_answered = false;
    c->is_ack_tracked = false;
}

/* Closes everything the connection holds; its state is left to the caller. */
static void conn_discard(struct conn *c)
{
    gd_pgpool_t *pool = c->pool;

    gd_timer_stop(pool->timers, &c->timer);
    if (c->resolve != NULL) {
        /* The callback still comes (UV_EAI_CANCELED if uv_cancel() got there first); it sees
         * the request orphaned and only frees it. */
        c->resolve->conn = NULL;
        (void)uv_cancel((uv_req_t *)&c->resolve->req); /* fails once running: nothing to do */
        c->resolve = NULL;
    }
    poll_close(c); /* before PQfinish(): the fd must leave the epoll set while it is ours */
    if (c->cancel_req != NULL) {
        /* Not sent yet: it never will be, the connection it would stop is going. Being sent:
         * it ends on its own, without its callback. */
        if (gd_pgcancel_withdraw(pool->canceller, c->cancel_req))
            pool->cancels_dropped++;
        c->cancel_req = NULL;
    }
    if (c->pg != NULL) {
        /* In non-blocking mode the Terminate message is sent if the socket takes it at once,
         * else dropped: PQfinish() never waits. */
        PQfinish(c->pg);
        c->pg = NULL;
    }
    batch_reset(c);
    c->is_abandoned = false;
    c->poll_errors = 0;
    c->last_fatal[0] = '\0';
}

static void retry_later(struct conn *c)
{
    set_state(c, CONN_BACKOFF);
    gd_timer_start(c->pool->timers, &c->timer,
                   add_sat(gd_timers_now(c->pool->timers), c->backoff_ms));
}

/* A connect attempt failed: retry with exponential backoff. Never reports a query itself. */
static void conn_failed(struct conn *c, const char *reason)
{
    gd_pgpool_t *pool = c->pool;
    char line[GD_CALL_MESSAGE_MAX];

    first_line(reason, line, sizeof(line));
    conn_discard(c);
    if (pool->options != NULL && strstr(line, "unsupported startup parameter: options") != NULL) {
        /* A pooler (PgBouncer) that takes no "options": connecting without the backstop beats
         * not connecting at all. Its own setting of statement_timeout should stand in. */
        gd_log_warn("postgres: %s refuses the startup parameter \"options\" (PgBouncer?); "
                    "connecting without the statement_timeout backstop (set statement_timeout on "
                    "the role, or ignore_startup_parameters = options in PgBouncer)",
                    pool->desc);
        free(pool->options);
        pool->options = NULL;
        set_state(c, CONN_BACKOFF);
        conn_start(c);
        return;
    }
    c->has_failed = true;
    if (!pool->is_outage_logged) {
        pool->is_outage_logged = true;
        gd_log_warn("postgres: cannot connect to %s (%.200s); retrying with backoff", pool->desc,
                    line);
    } else {
        gd_log_debug("postgres: connection %zu: connect to %s failed (%.200s); retry in %" PRIu64
                     " ms",
                     c->index, pool->desc, line, c->backoff_ms);
    }
    retry_later(c);
    c->backoff_ms = c->backoff_ms * 2 < BACKOFF_MAX_MS ? c->backoff_ms * 2 : BACKOFF_MAX_MS;
    /* Under a shared count the other pools hear of it, a pool without units among them, so
     * that their queries fail fast too (on_budget()). */
    if (pool->shared != NULL && have_all_failed(pool) && mark_shared_down(pool->shared)) {
        gd_log_debug("postgres: every connection of this thread to %s failed and none is up in "
                     "the process: the server is taken to be down",
                     pool->desc);
        gd_budget_tell_others(&pool->member);
    }
    /* Queries waiting for a connection fail fast once the server is known to be down. */
    if (is_pool_down(pool) && pool->line.waiting > 0 && !gd_timer_is_active(&pool->down_timer))
        gd_timer_start(pool->timers, &pool->down_timer, gd_timers_now(pool->timers));
}

/* The reason a connection broke, for logs and the IO message of a query it was running. */
static const char *lost_reason(struct conn *c, const char *reason, char *buf, size_t cap)
{
    /* A server that hangs up says why first (FATAL 57P01 on shutdown), but that message may
     * still be unparsed when the EOF is seen. With the socket gone PQgetResult() cannot
     * block, so the results it still holds are read for the server's own words. */
    for (int i = 0;
         i < 4 && c->pg != NULL && PQstatus(c->pg) == CONNECTION_BAD && c->last_fatal[0] == '\0';
         i++) {
        PGresult *res = PQgetResult(c->pg);
        const char *msg;
        if (res == NULL)
            break;
        /* Only the server's errors carry an SQLSTATE; libpq's own do not. */
        if (PQresultErrorField(res, PG_DIAG_SQLSTATE) != NULL &&
            (msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)) != NULL)
            snprintf(c->last_fatal, sizeof(c->last_fatal), "%s", msg);
        PQclear(res);
    }
    if (c->last_fatal[0] != '\0')
        snprintf(buf, cap, "%s", c->last_fatal);
    else
        first_line(reason != NULL ? reason : PQerrorMessage(c->pg), buf, cap);
    return buf;
}

/* Ends with @outcome every query still in @c's batch: the ones the server skipped never ran
 * (@is_unsent for them whatever the batch's). */
static void fail_batch(struct conn *c, bool is_unsent, gd_outcome_t outcome, const char *why)
{
    for (size_t i = 0; i < c->nentries; i++) {
        struct pipe_entry *e = &c->entries[i];
        gd_pgpool_query_t *q = e->query;
        if (q == NULL)
            continue;
        e->query = NULL;
        fail_later(q, is_unsent || e->is_skipped, outcome, "%s", why);
    }
}

/* An established connection broke (or cannot be trusted any more): discard it, re-make it in
 * the background, and fail the queries of its batch (put on the ended list: the caller
 * flushes it). */
static void conn_lost(struct conn *c, const char *reason)
{
    gd_pgpool_t *pool = c->pool;
    /* libpq 15 takes a failed write quietly (it goes on reading, for the server's last words)
     * and names no difference between a write that failed and a server that hung up after it:
     * TCP's own count of acknowledged bytes tells whether any byte of the batch reached the
     * server's host (and a partial message is never executed). */
    bool is_unsent = !c->is_sent || (c->is_ack_tracked && !c->is_answered &&
                                     c->acked_since == c->acked_before);
    /* Over (synced), a batch has left only queries the server skipped, waiting to be re-sent. */
    is_unsent |= c->is_synced;
    char why[GD_CALL_MESSAGE_MAX], msg[GD_CALL_MESSAGE_MAX + 40];

    lost_reason(c, reason, why, sizeof(why));
    snprintf(msg, sizeof(msg), "connection to Postgres lost (%s)", why);
    fail_batch(c, is_unsent, GD_OUTCOME_IO, msg);
    conn_discard(c);
    if (!pool->is_outage_logged) {
        pool->is_outage_logged = true;
        gd_log_warn("postgres: connection to %s lost (%.200s); reconnecting", pool->desc, why);
    } else {
        gd_log_debug("postgres: connection %zu to %s lost (%.200s)", c->index, pool->desc, why);
    }
    /* After a successful connect the backoff is back at its first step, so a server that
     * accepts connections and drops them at once is retried at most every 100 ms. */
    retry_later(c);
}

static void conn_idle(struct conn *c)
{
    int r;

    gd_timer_stop(c->pool->timers, &c->timer);
    set_state(c, CONN_IDLE); /* a waiting query may have it */
    c->is_abandoned = false;
    c->idle_since_ms = gd_timers_now(c->pool->timers);
    if (c->pool->shared != NULL)
        schedule_rebalance(c->pool); /* worth more on a thread that waits for a unit */
    /* An idle connection is still read: the server says why it hangs up (a FATAL notice)
     * and the EOF that follows marks it lost, so no query is ever sent on a dead socket that
     * the pool could have known about. */
    if ((r = conn_watch(c, UV_READABLE)) < 0) {
        conn_lost(c, uv_strerror(r));
        return;
    }
}

/* Notices and errors the server sends outside a result (a FATAL before it hangs up). */
static void on_notice(void *arg, const PGresult *res)
{
    struct conn *c = arg;
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    if (severity == NULL)
        severity = PQresultErrorField(res, PG_DIAG_SEVERITY);
    if (msg == NULL)
        msg = "";
    if (severity != NULL && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
        snprintf(c->last_fatal, sizeof(c->last_fatal), "%s", msg);
    gd_log_debug("postgres: connection %zu: server %s: \"%.200s\"", c->index,
                 severity != NULL ? severity : "notice", msg);
}

/* -- connecting --------------------------------------------------------------------------- */

static void describe(gd_pgpool_t *pool, const char *host, const char *port, const char *dbname)
{
    snprintf(pool->desc, sizeof(pool->desc), "host=%s port=%s dbname=%s",
             host != NULL && *host != '\0' ? host : "(default)",
             port != NULL && *port != '\0' ? port : "(default)",
             dbname != NULL && *dbname != '\0' ? dbname : "(default)");
}

static void conn_up(struct conn *c)
{
    gd_pgpool_t *pool = c->pool;

    gd_timer_stop(pool->timers, &c->timer);
    /* Non-blocking, so that a send never waits for the socket; pipeline mode, so that a
     * statement's prepare and first execution share one round trip. */
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    memset(c->prepared, 0, pool->prepared_words * sizeof(*c->prepared));
    describe(pool, PQhost(c->pg), PQport(c->pg), PQdb(c->pg));
    if (c->has_been_up)
        pool->reconnects++;
    if (pool->is_outage_logged) {
        pool->is_outage_logged = false;
        gd_log_warn("postgres: %s to %s", c->has_been_up ? "reconnected" : "connected", pool->desc);
    } else {
        gd_log_debug("postgres: connection %zu to %s up", c->index, pool->desc);
    }
    c->has_been_up = true;
    c->has_failed = false;
    c->backoff_ms = BACKOFF_FIRST_MS;
    conn_idle(c);
}

static void connect_step(struct conn *c)
{
    int r, events;

    /* A socket error (libuv reports POLLERR as UV_EBADF) is libpq's to read: PQconnectPoll()
     * fetches SO_ERROR, says "Connection refused", and may go on to the next address. */
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_OK:
        conn_up(c);
        return;
    case PGRES_POLLING_FAILED:
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    case PGRES_POLLING_READING:
        events = UV_READABLE;
        break;
    default:
        events = UV_WRITABLE;
        break;
    }
    /* libpq may have closed the socket and opened another (next address, SSL or GSS
     * fallback), quite possibly on the same fd number, where a kept handle would watch a
     * socket that left the epoll set. A fresh handle per step costs a few epoll_ctl calls on
     * a path taken a handful of times per connection. */
    poll_close(c);
    if ((r = conn_watch(c, events)) < 0)
        conn_failed(c, uv_strerror(r));
}

/* Starts libpq's connect. @hosts and @hostaddrs: what name resolution gave (the name once per
 * address, and the addresses), else NULL. */
static void pq_start(struct conn *c, const char *hosts, const char *hostaddrs)
{
    gd_pgpool_t *pool = c->pool;
    const char *keys[16], *values[16];
    size_t n = 0;
    int r;

    /* Before dbname, so that a conninfo that sets them wins. A dead peer (a blackholed host, a
     * failover) is noticed in seconds, not the kernel's minutes: by the connection, and by its
     * PQcancel, which copies exactly these settings and otherwise blocks a thread with no bound
     * (review problem 4). */
    keys[n] = "keepalives", values[n++] = "1";
    keys[n] = "keepalives_idle", values[n++] = "5";
    keys[n] = "keepalives_interval", values[n++] = "2";
    keys[n] = "keepalives_count", values[n++] = "3";
    keys[n] = "tcp_user_timeout", values[n++] = PG_TCP_USER_TIMEOUT_MS;
    /* expand_dbname: the conninfo (a string or a URI) is expanded in place of the first
     * dbname, and the keywords after it override what it says. An empty conninfo is ignored,
     * leaving libpq's PG* environment. */
    keys[n] = "dbname", values[n++] = pool->conf->conninfo;
    keys[n] = "application_name";
    values[n++] = pool->conf->application_name != NULL ? pool->conf->application_name : "gatherd";
    keys[n] = "client_encoding", values[n++] = "UTF8"; /* the JSON we build is UTF-8 */
    if (hosts != NULL || pool->host != NULL) /* kept with hostaddr for TLS (SNI, verify-full) */
        keys[n] = "host", values[n++] = hosts != NULL ? hosts : pool->host;
    if (hostaddrs != NULL)
        keys[n] = "hostaddr", values[n++] = hostaddrs;
    if (pool->port != NULL)
        keys[n] = "port", values[n++] = pool->port;
    if (pool->user != NULL)
        keys[n] = "user", values[n++] = pool->user;
    if (pool->options != NULL)
        keys[n] = "options", values[n++] = pool->options;
    keys[n] = NULL, values[n] = NULL;

    c->pg = PQconnectStartParams(keys, values, 1);
    GD_REQUIRE(c->pg != NULL); /* NULL only when libpq cannot allocate its PGconn */
    PQsetNoticeReceiver(c->pg, on_notice, c);
    if (!c->has_been_up)
        describe(pool, PQhost(c->pg), PQport(c->pg), PQdb(c->pg));
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    set_state(c, CONN_CONNECTING);
    /* PQconnectStart*() behaves as if PQconnectPoll() had returned PGRES_POLLING_WRITING. */
    if ((r = conn_watch(c, UV_WRITABLE)) < 0)
        conn_failed(c, uv_strerror(r));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolve_req *rr = CONTAINER_OF(req, struct resolve_req, req);
    struct conn *c = rr->conn;
    char reason[GD_CALL_MESSAGE_MAX];
    char addrs[MAX_ADDRS * (INET6_ADDRSTRLEN + 1)], addr[INET6_ADDRSTRLEN];
    char *hosts;
    size_t n = 0, len = 0, name_len;

    free(rr);
    if (c == NULL) { /* the attempt timed out, or the pool closed */
        uv_freeaddrinfo(res);
        return;
    }
    c->resolve = NULL;
    addrs[0] = '\0';
    for (const struct addrinfo *ai = res; status == 0 && ai != NULL && n < MAX_ADDRS;
         ai = ai->ai_next) {
        int r = ai->ai_family == AF_INET6
                    ? uv_ip6_name((const struct sockaddr_in6 *)(const void *)ai->ai_addr, addr,
                                  sizeof(addr))
                    : uv_ip4_name((const struct sockaddr_in *)(const void *)ai->ai_addr, addr,
                                  sizeof(addr));
        if (r < 0 || (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
            continue;
        len += (size_t)snprintf(addrs + len, sizeof(addrs) - len, "%s%s", n > 0 ? "," : "", addr);
        n++;
    }
    uv_freeaddrinfo(res);
    if (n == 0) {
        snprintf(reason, sizeof(reason), "cannot resolve \"%s\": %s", c->pool->host,
                 uv_strerror(status < 0 ? status : UV_EAI_NONAME));
        conn_failed(c, reason);
        return;
    }
    /* hostaddr= takes one address per host= entry: the name is repeated for each. */
    name_len = strlen(c->pool->host);
    hosts = gd_xmalloc(n * (name_len + 1));
    for (size_t i = 0; i < n; i++) {
        memcpy(hosts + i * (name_len + 1), c->pool->host, name_len);
        hosts[i * (name_len + 1) + name_len] = i + 1 < n ? ',' : '\0';
    }
    pq_start(c, hosts, addrs); /* libpq copies both */
    free(hosts);
}

/* Starts a connect attempt, bounded by connect_timeout_ms from here (resolution included). */
static void conn_start(struct conn *c)
{
    gd_pgpool_t *pool = c->pool;
    char reason[GD_CALL_MESSAGE_MAX];
    int r;

    if (pool->conf->connect_timeout_ms > 0)
        gd_timer_start(pool->timers, &c->timer,
                       add_sat(gd_timers_now(pool->timers), pool->conf->connect_timeout_ms));
    if (!pool->is_conninfo_valid) {
        conn_failed(c, "the conninfo cannot be parsed");
        return;
    }
    if (!pool->is_host_name) {
        pq_start(c, NULL, NULL);
        return;
    }
    set_state(c, CONN_RESOLVING);
    c->resolve = gd_xcalloc(1, sizeof(*c->resolve));
    c->resolve->conn = c;
    /* No AI_ADDRCONFIG: on a host with only loopback configured it hides "localhost". */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r = uv_getaddrinfo(pool->loop, &c->resolve->req, on_resolved, pool->host, NULL, &hints);
    if (r < 0) {
        free(c->resolve);
        c->resolve = NULL;
        snprintf(reason, sizeof(reason), "cannot resolve \"%s\": %s", pool->host, uv_strerror(r));
        conn_failed(c, reason);
    }
}

/* -- queries on a connection -------------------------------------------------------------- */

static void entry_fail(struct pipe_entry *e, gd_outcome_t outcome, const char *sqlstate,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void entry_fail(struct pipe_entry *e, gd_outcome_t outcome, const char *sqlstate,
                       const char *fmt, ...)
{
    va_list ap;

    if (e->outcome != GD_OUTCOME_OK)
        return; /* the first error is the one that explains the rest */
    e->outcome = outcome;
    snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", sqlstate);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

/* @res is an error of entry @e of @c's batch: the entry fails with it, unless it is the cancel
 * meant for another entry of the batch (57014 on a connection with a cancel on its way, in an
 * entry nobody abandoned): then the entry never ran to its end and is sent again. */
static void entry_error(struct conn *c, struct pipe_entry *e, const PGresult *res)
{
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    char line[GD_CALL_MESSAGE_MAX];

    /* A FATAL error ends the session: it is also why the connection is about to be lost. */
    if (msg != NULL && severity != NULL &&
        (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
        snprintf(c->last_fatal, sizeof(c->last_fatal), "%s", msg);

    /* Errors libpq makes itself (out of memory, a broken connection) have no fields. */
    if (msg == NULL)
        msg = first_line(PQresultErrorMessage(res), line, sizeof(line));
    if (c->has_cancel && e->query != NULL && e->outcome == GD_OUTCOME_OK && sqlstate != NULL &&
        strcmp(sqlstate, "57014") == 0 && !e->is_rule_broken) {
        e->is_skipped = true;
        snprintf(e->message, sizeof(e->message), "%s", msg); /* if it may not be sent again */
        return;
    }
    entry_fail(e, GD_OUTCOME_SQL, sqlstate != NULL ? sqlstate : "", "%s", msg);
}


/* The columns statement @statement's results have, as of @res. */
static gd_pgjson_columns_t *columns_of(gd_pgpool_t *pool, size_t statement, const PGresult *res)
{
    gd_pgjson_columns_t **cached = &pool->columns[statement];

    if (*cached == NULL || !gd_pgjson_columns_match(*cached, res)) {
        gd_pgjson_columns_unref(*cached); /* a query still rendering with it keeps its own */
        *cached = gd_pgjson_columns_new(res);
    }
    return gd_pgjson_columns_ref(*cached);
}

/* Renders row @row of @res into @e's body, or fails @e when the row breaks a rule or limit. */
static void entry_add_row(gd_pgpool_t *pool, struct pipe_entry *e, const PGresult *res, int row)
{
    const gd_pgpool_query_t *q = e->query;

    if (q->is_one_row && e->rows == 1) {
        entry_fail(e, GD_OUTCOME_SQL, "",
                   "query returned more than one row where \"row\": \"one\" expects at most one");
        e->is_rule_broken = true;
        return;
    }
    if (q->max_rows > 0 && e->rows >= q->max_rows) {
        entry_fail(e, GD_OUTCOME_TOO_LARGE, "", "more than %zu rows", q->max_rows);
        e->is_rule_broken = true;
        return;
    }
    if (!q->is_one_row)
        gd_pgjson_append_raw(&e->body, e->rows == 0 ? "[" : ",", 1);
    if (e->columns == NULL) /* the rows of one query are of one result shape */
        e->columns = columns_of(pool, e->statement, res);
    gd_pgjson_append_row_as(&e->body, e->columns, res, row);
    e->rows++;
    /* With the closing bracket still to come. */
    if (q->max_body_bytes > 0 && e->body.len + (q->is_one_row ? 0 : 1) > q->max_body_bytes) {
        entry_fail(e, GD_OUTCOME_TOO_LARGE, "", "rows over %zu bytes of JSON", q->max_body_bytes);
        e->is_rule_broken = true;
    }
}

/* The query's rows have all come: closes the array, or applies the one-row rule. */
static void entry_end_rows(struct pipe_entry *e)
{
    const gd_pgpool_query_t *q = e->query;

    if (q->is_one_row) {
        if (e->rows == 0)
            entry_fail(e, GD_OUTCOME_NOT_FOUND, "", "no row");
        return;
    }
    if (e->rows == 0)
        gd_pgjson_append_raw(&e->body, "[", 1);
    gd_pgjson_append_raw(&e->body, "]", 1);
    if (q->max_body_bytes > 0 && e->body.len > q->max_body_bytes) {
        entry_fail(e, GD_OUTCOME_TOO_LARGE, "", "rows over %zu bytes of JSON", q->max_body_bytes);
        e->is_rule_broken = true;
    }
}

/* A PGRES_PIPELINE_ABORTED for @e: an earlier entry's error made the server skip it, unless
 * @e failed on its own before (its prepare), whose error stands. */
static void entry_aborted(struct pipe_entry *e)
{
    if (e->outcome == GD_OUTCOME_OK)
        e->is_skipped = true;
}

static void entry_rows(struct conn *c, struct pipe_entry *e, const PGresult *res)
{
    ExecStatusType status = PQresultStatus(res);

    switch (status) {
    case PGRES_SINGLE_TUPLE: /* one row; a PGRES_TUPLES_OK without rows ends them */
    case PGRES_TUPLES_OK:    /* the rows at once, when single-row mode could not be set */
    case PGRES_COMMAND_OK:   /* a statement without rows (INSERT without RETURNING): none */
        if (e->outcome != GD_OUTCOME_OK || e->query == NULL || e->is_skipped)
            break; /* failed already, or nobody waits for the rows: dropped unread */
        for (int row = 0, n = PQntuples(res); row < n && e->outcome == GD_OUTCOME_OK; row++)
            entry_add_row(c->pool, e, res, row);
        if (status != PGRES_SINGLE_TUPLE && e->outcome == GD_OUTCOME_OK)
            entry_end_rows(e);
        break;
    case PGRES_PIPELINE_ABORTED:
        entry_aborted(e);
        break;
    case PGRES_EMPTY_QUERY:
        entry_fail(e, GD_OUTCOME_SQL, "", "empty query");
        break;
    default:
        entry_error(c, e, res);
        break;
    }
}

/* Entry @c->head is now at the head of the pipeline with its execute, none of its results
 * parsed yet: the one moment libpq lets it switch to single-row mode, which hands rows over
 * one by one as they are parsed, so a big result is rendered (and bounded) as it arrives,
 * never held whole. */
static void entry_start_execute(struct conn *c)
{
    c->entries[c->head].phase = PHASE_EXECUTE;
    if (!PQsetSingleRowMode(c->pg))
        gd_log_debug("postgres: connection %zu: single-row mode refused; rows come at once",
                     c->index);
}

/* The drain (DRAIN_TIMEOUT_MS, on c->timer) ends once no abandoned query of the batch is still
 * being answered and no cancel is on its way (one that hangs must not stop a later query): the
 * others of the batch may then run as long as they need. */
static void drain_check(struct conn *c)
{
    for (size_t i = c->head; i < c->nentries; i++) {
        if (c->entries[i].is_abandoned && c->entries[i].phase != PHASE_DONE)
            return;
    }
    if (c->cancel_req != NULL)
        return;
    gd_timer_stop(c->pool->timers, &c->timer);
    c->is_abandoned = false;
}

/* The next entry's results come now (or the Sync's, after the last). */
static void batch_advance(struct conn *c)
{
    bool was_abandoned = c->entries[c->head].is_abandoned;

    c->head++;
    if (was_abandoned)
        drain_check(c);
    if (c->head < c->nentries && c->entries[c->head].phase == PHASE_EXECUTE)
        entry_start_execute(c);
}

static bool may_share_batch(const gd_pgpool_t *pool, const gd_pgpool_query_t *q);
static void entry_hand_over(struct pipe_entry *e);

/* Feeds one PQgetResult() answer to the batch and clears it. Returns false when the sequence
 * makes no sense: the connection cannot be trusted any more. */
static bool batch_step(struct conn *c, PGresult *res)
{
    bool is_ok = true;

    /* libpq's own errors (a broken connection) carry no SQLSTATE: only the server's count. */
    bool is_server_answer = res != NULL && (PQresultStatus(res) != PGRES_FATAL_ERROR ||
                                            PQresultErrorField(res, PG_DIAG_SQLSTATE) != NULL);
    if (is_server_answer)
        c->is_answered = true;
    if (c->head == c->nentries) {
        /* After the last entry: the Sync, or an error of the implicit transaction's commit
         * (a deferred constraint, a serialization failure), which undid every entry. */
        if (res == NULL) {
            is_ok = false;
        } else if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            c->is_synced = true;
        } else {
            for (size_t i = 0; i < c->nentries; i++) {
                if (c->entries[i].query != NULL && !c->entries[i].is_skipped)
                    entry_error(c, &c->entries[i], res);
            }
        }
        PQclear(res);
        return is_ok;
    }
    struct pipe_entry *e = &c->entries[c->head];
    if (is_server_answer)
        e->is_answered = true;
    switch (e->phase) {
    case PHASE_PREPARE:
        if (res == NULL) {
            if (e->is_prepare_ok)
                set_prepared(c, e->statement);
            entry_start_execute(c);
        } else if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            e->is_prepare_ok = true;
        } else if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
            entry_aborted(e);
        } else {
            entry_error(c, e, res); /* e.g. 42P01: the statement stays unprepared */
        }
        break;
    case PHASE_EXECUTE:
        if (res == NULL) {
            e->phase = PHASE_DONE;
            /* A plain read is answered as soon as its rows are all in, not at the Sync: the
             * queries ahead of a slow one in its batch are not held up by it. (What the commit
             * at the Sync could still say of a read: only a serialization failure under
             * SERIALIZABLE, see the README.) Anything else went alone and waits for the Sync,
             * which commits it; and a FATAL error (a terminated backend) is the connection's
             * loss, reported as such. */
            if (e->query != NULL && !e->is_skipped && c->last_fatal[0] == '\0' &&
                may_share_batch(c->pool, e->query))
                entry_hand_over(e);
            batch_advance(c);
        } else {
            entry_rows(c, e, res);
        }
        break;
    case PHASE_DONE:
        is_ok = false;
        break;
    }
    PQclear(res); /* no-op on NULL */
    return is_ok;
}

/* Hands @e's result to its query, which is put on the ended list. */
static void entry_hand_over(struct pipe_entry *e)
{
    gd_pgpool_query_t *q = e->query;

    e->query = NULL;
    q->base.result.outcome = e->outcome;
    memcpy(q->base.result.message, e->message, sizeof(q->base.result.message));
    memcpy(q->base.result.sqlstate, e->sqlstate, sizeof(q->base.result.sqlstate));
    if (e->outcome == GD_OUTCOME_OK) {
        q->base.result.body = gd_buf_take(e->body.base, e->body.len); /* the query takes it */
        e->body = (gd_pgjson_buf_t){0};
    } else if (e->outcome == GD_OUTCOME_NOT_FOUND) {
        q->base.result.body = &gd_buf_null;
    }
    push_ended(q, e->outcome == GD_OUTCOME_OK ? END_REPORT : END_ATTEMPT, false);
}

static void batch_send(struct conn *c);
static void batch_go_on(struct conn *c);

/* The batch's Sync came: the implicit transaction is over, so each query's result is final
 * (a write's included) and goes to it. The entries the server skipped stay, moved to the
 * front, to be sent again as a new batch: now, or once a cancel on its way has been sent
 * (it could stop them otherwise). */
static void batch_done(struct conn *c)
{
    gd_pgpool_t *pool = c->pool;
    size_t n = 0;

    for (size_t i = 0; i < c->nentries; i++) {
        struct pipe_entry *e = &c->entries[i];
        gd_pgpool_query_t *q = e->query;
        if (q != NULL && e->is_skipped && q->_resends < MAX_RESENDS) {
            struct pipe_entry kept = {.query = q, .statement = e->statement};
            entry_reset(e);
            c->entries[n++] = kept;
            q->_resends++;
            pool->resent_queries++;
            continue;
        }
        if (q != NULL && e->is_skipped) {
            e->query = NULL;
            fail_later(q, false, GD_OUTCOME_SQL, "skipped %u times by other queries of its batch "
                       "(last: %.200s)", q->_resends + 1,
                       e->message[0] != '\0' ? e->message : "an earlier query failed");
        } else if (q != NULL) {
            entry_hand_over(e);
        }
        entry_reset(e);
    }
    c->nentries = n;
    c->head = 0;
    c->is_synced = true;
    if (c->cancel_req != NULL)
        return; /* on_cancel_sent() goes on */
    batch_go_on(c);
}

static bool detach(gd_pgpool_query_t *q);
static void request_cancel(struct conn *c);

/* The head entry's rows broke its query's rule or limits: the query gets its failure now, not
 * after the rest of a result that may be huge; the connection keeps reading and dropping the
 * rest. The query goes on the ended list, to be reported as it is (no retry). */
static void detach_broken(struct pipe_entry *e)
{
    gd_pgpool_query_t *q = e->query;

    q->base.result.outcome = e->outcome;
    memcpy(q->base.result.message, e->message, sizeof(q->base.result.message));
    memcpy(q->base.result.sqlstate, e->sqlstate, sizeof(q->base.result.sqlstate));
    free(e->body.base); /* the rendering so far is of no use: its memory goes now */
    e->body = (gd_pgjson_buf_t){0};
    detach(q);
    push_ended(q, END_REPORT, false);
}

/* Reads the results libpq has parsed. Ended queries go on the ended list (the caller
 * flushes it). */
static void read_results(struct conn *c)
{
    bool is_broken = false; /* an entry's rows broke its rule: the server is asked to stop */
    size_t broken_at = 0;

    for (;;) {
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            conn_lost(c, NULL);
            return;
        }
        if (c->is_synced) {
            batch_done(c);
            return;
        }
        /* PQgetResult() must never be called while busy: it would block. */
        if (PQisBusy(c->pg))
            break;
        if (!batch_step(c, PQgetResult(c->pg))) {
            conn_lost(c,
                      PQstatus(c->pg) == CONNECTION_BAD ? NULL : "unexpected sequence of results");
            return;
        }
        struct pipe_entry *e = c->head < c->nentries ? &c->entries[c->head] : NULL;
        if (e != NULL && e->is_rule_broken && e->query != NULL) {
            detach_broken(e);
            is_broken = true;
            broken_at = c->head;
        }
    }
    /* The rest of the broken rows is still to come: the server is asked to stop producing it
     * rather than the connection reading all of it. */
    if (is_broken && c->state == CONN_BUSY && !c->is_synced && c->head == broken_at)
        request_cancel(c);
}


/* Sends what libpq holds and watches for what the connection waits on. Returns false when the
 * connection broke (and has been handled). */
static bool flush_and_watch(struct conn *c)
{
    int r = PQflush(c->pg);

    if (r < 0) {
        conn_lost(c, NULL);
        return false;
    }
    /* 1: the socket took only part of it; libpq wants write readiness (and input read, which
     * on_poll() always does, so that the server never blocks on us). */
    if ((r = conn_watch(c, UV_READABLE | (r == 1 ? UV_WRITABLE : 0))) < 0) {
        conn_lost(c, uv_strerror(r));
        return false;
    }
    return true;
}

/* Reads what the server sent. Returns false when the connection broke (and has been
 * handled): libpq failed, or the socket reported an error twice without libpq seeing one. */
static bool consume_input(struct conn *c)
{
    if (!PQconsumeInput(c->pg)) {
        conn_lost(c, NULL);
        return false;
    }
    if (c->poll_errors > 1) {
        conn_lost(c, "socket error");
        return false;
    }
    return true;
}

static void busy_io(struct conn *c)
{
    /* Before the read that may find the connection's end: what the server got of the batch
     * (see conn_lost()). One syscall per read, only for batches that may be retried. */
    if (c->is_ack_tracked && !c->is_answered && !tcp_bytes_acked(PQsocket(c->pg), &c->acked_since))
        c->is_ack_tracked = false;
    /* PQconsumeInput() also flushes in non-blocking mode. */
    if (!consume_input(c))
        return;
    if (!flush_and_watch(c)) /* also re-arms the handle after a socket error */
        return;
    read_results(c);
}

static void idle_io(struct conn *c)
{
    int r;

    /* Parsing while idle hands a server's ERROR or FATAL to on_notice(); the EOF after it
     * makes PQconsumeInput() fail. */
    if (!consume_input(c))
        return;
    (void)PQisBusy(c->pg); /* only for its parsing; nothing is expected while idle */
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, NULL);
        return;
    }
    if ((r = conn_watch(c, UV_READABLE)) < 0) /* re-arms the handle after a socket error */
        conn_lost(c, uv_strerror(r));
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct conn *c = handle->data;

    (void)events; /* every state reads whatever is there; libpq knows what it waits for */
    /* libuv reports POLLERR as UV_EBADF, naming no cause, and stops the handle. The socket's
     * error is libpq's to read (recv() returns it; SO_ERROR while connecting), and libpq's
     * message names the cause; so the handle is re-armed and the event taken as readable.
     * An error again without libpq seeing one ends the connection. */
    if (status < 0) {
        c->poll_events = 0;
        c->poll_errors++;
    } else {
        c->poll_errors = 0;
    }
    switch (c->state) {
    case CONN_CONNECTING:
        connect_step(c);
        break;
    case CONN_IDLE:
        idle_io(c);
        break;
    case CONN_BUSY:
        busy_io(c);
        break;
    default:
        GD_REQUIRE(false); /* other states have no handle open */
    }
    flush_ended(c->pool);
}

/* Writes the name of prepared statement @i, "gd_<i>", into @name (at least 24 bytes). snprintf()
 * cost 685 instructions of every query on the profile workload, this a tenth of it. */
static void statement_name(size_t i, char *name)
{
    char digits[20];
    size_t n = 0;

    do {
        digits[n++] = (char)('0' + i % 10);
        i /= 10;
    } while (i > 0);
    memcpy(name, "gd_", 3);
    for (size_t k = 0; k < n; k++)
        name[3 + k] = digits[n - 1 - k];
    name[3 + n] = '\0';
}

/* Queues entry @e's messages: prepares its statement if neither this connection nor an
 * earlier entry of the batch has, and executes it. Returns false when libpq refused. */
static bool entry_send(struct conn *c, struct pipe_entry *e)
{
    const gd_pgpool_conf_t *conf = c->pool->conf;
    gd_pgpool_query_t *q = e->query;
    size_t i = e->statement;
    int nparams = conf->statement_nparams[i];
    bool needs_prepare = !conf->is_unprepared && !is_prepared(c, i);
    char name[32];

    for (const struct pipe_entry *o = c->entries; o < e && needs_prepare; o++)
        needs_prepare = o->statement != i || o->phase != PHASE_PREPARE;
    e->phase = needs_prepare ? PHASE_PREPARE : PHASE_EXECUTE;
    q->_state = QUERY_RUNNING;
    q->_conn = c;
    gd_timer_start(c->pool->timers, &q->_timer, q->base.deadline_ms);
    /* Parameters are text and untyped: the server infers their types from the statement. A
     * value is never part of the SQL text, whatever it contains. Unprepared, the statement is
     * the unnamed one, parsed again each time, and its parse, bind and execute reach the
     * server before the sync that ends PgBouncer's transaction, all on one server connection. */
    if (conf->is_unprepared)
        return PQsendQueryParams(c->pg, conf->statements[i], nparams, NULL, q->params, NULL, NULL,
                                 0);
    statement_name(i, name);
    return (!needs_prepare || PQsendPrepare(c->pg, name, conf->statements[i], nparams, NULL)) &&
           PQsendQueryPrepared(c->pg, name, nparams, q->params, NULL, NULL, 0);
}

/* Sends the entries of @c's batch (their queries set, the rest zero) in one write ending in
 * one Sync. Ended queries go on the ended list (the caller flushes it). */
static void batch_send(struct conn *c)
{
    gd_pgpool_t *pool = c->pool;
    bool may_retry = false;

    c->head = 0;
    c->is_synced = false;
    c->is_sent = false;
    c->is_answered = false;
    c->is_ack_tracked = false;
    for (size_t k = 0; k < c->nentries; k++) {
        const gd_pgpool_query_t *q = c->entries[k].query;
        may_retry |= q->retry != NULL && q->retry->attempts > q->_attempt && q->is_idempotent;
    }
    if (may_retry && tcp_bytes_acked(PQsocket(c->pg), &c->acked_before)) {
        c->is_ack_tracked = true;
        c->acked_since = c->acked_before;
    }
    for (size_t k = 0; k < c->nentries; k++) {
        if (!entry_send(c, &c->entries[k])) {
            conn_lost(c, NULL); /* nothing was sent: a failure to retry */
            return;
        }
    }
    if (!PQpipelineSync(c->pg)) {
        conn_lost(c, NULL);
        return;
    }
    pool->batches++;
    pool->batched_queries += c->nentries;
    if (c->entries[0].phase == PHASE_EXECUTE)
        entry_start_execute(c);
    if (flush_and_watch(c)) /* on failure it has ended the batch's queries, unsent */
        c->is_sent = true;
}

/* Whether query @q may share a batch: its call is idempotent and its statement a plain read
 * (see pgpool.h). */
static bool may_share_batch(const gd_pgpool_t *pool, const gd_pgpool_query_t *q)
{
    return q->is_idempotent && pool->conf->statement_is_batchable != NULL &&
           pool->conf->statement_is_batchable[q->statement];
}

static void schedule_rebalance(gd_pgpool_t *pool);

/* Runs @q on idle @c with, when @q's statement is a plain read, up to depth - 1 plain reads
 * taken from the line (in its order: they were waiting for a connection, and this is one), in
 * one write ending in one Sync. Ended queries go on the ended list (the caller flushes it). */
static void conn_run(struct conn *c, gd_pgpool_query_t *q)
{
    gd_pgpool_t *pool = c->pool;

    GD_REQUIRE(c->state == CONN_IDLE);
    set_state(c, CONN_BUSY);
    c->holds_unit = true; /* @q's, until the connection is idle again */
    batch_reset(c);
    c->entries[c->nentries++] = (struct pipe_entry){.query = q, .statement = q->statement};
    if (pool->depth > 1 && may_share_batch(pool, q)) {
        const gd_gate_waiter_t *w = gd_gate_first_waiter(&pool->line);
        for (size_t seen = 0; w != NULL && c->nentries < pool->depth && seen < LINE_SCAN_MAX;
             seen++) {
            gd_pgpool_query_t *o = CONTAINER_OF(w, gd_pgpool_query_t, _waiter);
            w = gd_gate_next_waiter(&pool->line, w);
            if (!may_share_batch(pool, o))
                continue;
            gd_gate_cancel(&o->_waiter); /* out of the line, its wait over */
            c->entries[c->nentries++] = (struct pipe_entry){.query = o, .statement = o->statement};
        }
        if (c->nentries > 1 && pool->shared != NULL)
            schedule_rebalance(pool); /* fewer waiting: perhaps no unit wanted any more */
    }
    batch_send(c);
}

/* -- query timers, cancel requests -------------------------------------------------------- */

/* The batch's Sync has come and only a cancel kept @c (batch_done()): what the server skipped
 * is sent again now, else the connection is free. */
static void batch_go_on(struct conn *c)
{
    size_t n = 0;

    /* Those whose query left meanwhile (a deadline, a client gone) are not sent. */
    for (size_t i = 0; i < c->nentries; i++) {
        if (c->entries[i].query != NULL)
            c->entries[n++] = c->entries[i];
    }
    for (size_t i = n; i < c->nentries; i++)
        c->entries[i] = (struct pipe_entry){0}; /* moved or empty: nothing of their own */
    c->nentries = n;
    if (c->nentries == 0) {
        batch_reset(c);
        conn_idle(c);
        return;
    }
    gd_timer_stop(c->pool->timers, &c->timer);
    c->is_abandoned = false;
    batch_send(c); /* has_cancel stays: the cancel just sent may reach the server late */
}

static void on_cancel_sent(void *data, bool is_ok, const char *error)
{
    struct conn *c = data; /* a discarded connection withdraws its request: still this one */
    char line[GD_CALL_MESSAGE_MAX];

    if (is_ok)
        gd_log_debug("postgres: cancel request delivered");
    else
        gd_log_debug("postgres: cancel request failed (%.200s)",
                     first_line(error, line, sizeof(line)));
    c->cancel_req = NULL;
    if (c->state == CONN_BUSY && c->is_synced)
        batch_go_on(c); /* the drain finished first; only the cancel kept it */
    else if (c->state == CONN_BUSY && c->is_abandoned)
        drain_check(c);
    flush_ended(c->pool);
}

/* A draining connection whose query cannot be cancelled is closed and re-made instead: that
 * ends it on our side at once, though the server may run it on until it next writes. The
 * other queries of its batch fail with @why (put on the ended list: the caller flushes it),
 * but for those the server skipped, which never ran and may be retried. */
static void conn_remake(struct conn *c, const char *why)
{
    fail_batch(c, c->is_synced, GD_OUTCOME_IO, why); /* synced: only skipped ones are left */
    conn_discard(c);
    set_state(c, CONN_BACKOFF);
    conn_start(c);
}

/* Detaches the running @q from its connection, which keeps reading the abandoned results
 * and comes back to the pool once its batch ends. Returns whether the server may still be
 * running it (its results have not all come, and the server did not skip it). */
static bool detach(gd_pgpool_query_t *q)
{
    struct conn *c = q->_conn;
    gd_pgpool_t *pool = q->_pool;
    struct pipe_entry *e = NULL;

    for (size_t i = 0; i < c->nentries && e == NULL; i++) {
        if (c->entries[i].query == q)
            e = &c->entries[i];
    }
    GD_REQUIRE(e != NULL);
    e->query = NULL;
    q->_conn = NULL;
    if (e->phase == PHASE_DONE || e->is_skipped || c->is_synced)
        return false;
    e->is_abandoned = true;
    c->is_abandoned = true;
    gd_timer_start(pool->timers, &c->timer, add_sat(gd_timers_now(pool->timers), DRAIN_TIMEOUT_MS));
    return true;
}

/* Asks the server to stop the query a draining @c still reads, so that its results end soon.
 * The cancel stops whatever the connection runs when it arrives, perhaps another query of the
 * batch: that one is then sent again (entry_error()). */
static void request_cancel(struct conn *c)
{
    gd_pgpool_t *pool = c->pool;

    PGcancel *cancel;

    if (c->cancel_req != NULL)
        return;
    c->has_cancel = true;
    /* A copy per request, which the canceller takes: the connection may go while it is sent. */
    if ((cancel = PQgetCancel(c->pg)) != NULL &&
        (c->cancel_req = gd_pgcancel_send(pool->canceller, cancel, on_cancel_sent, c)) != NULL) {
        pool->cancels++;
        return;
    }
    pool->cancels_dropped++;
    uint64_t now = gd_timers_now(pool->timers);
    if (!pool->has_warned_cancels || now - pool->cancels_warned_ms >= CANCEL_WARN_INTERVAL_MS) {
        char more[64] = "";
        if (pool->cancel_warns_suppressed > 0)
            snprintf(more, sizeof(more), " (and %zu times since the last warning)",
                     pool->cancel_warns_suppressed);
        gd_log_warn("postgres: %d cancel requests already wait (a server that does not answer "
                    "them?); closing the connection of an abandoned query on %s and opening a new "
                    "one instead%s",
                    GD_PGCANCEL_QUEUE_MAX, pool->desc, more);
        pool->has_warned_cancels = true;
        pool->cancels_warned_ms = now;
        pool->cancel_warns_suppressed = 0;
    } else {
        pool->cancel_warns_suppressed++;
        gd_log_debug("postgres: %d cancel requests already wait; closing the connection of an "
                     "abandoned query on %s instead (warned about at most every %d ms)",
                     GD_PGCANCEL_QUEUE_MAX, pool->desc, CANCEL_WARN_INTERVAL_MS);
    }
    conn_remake(c, "connection closed: the cancel of another query of its batch could not be "
                   "sent");
}

/* Detaches the running @q and asks the server to stop it, when it may still run. */
static void abandon(gd_pgpool_query_t *q)
{
    struct conn *c = q->_conn;

    if (detach(q))
        request_cancel(c);
}

/* The deadline of a running query (a waiting one has its place in the line's), or the end of
 * the backoff before its next attempt. */
static void on_query_timer(gd_timer_t *timer)
{
    gd_pgpool_query_t *q = CONTAINER_OF(timer, gd_pgpool_query_t, _timer);
    gd_pgpool_t *pool = q->_pool;

    if (q->_state == QUERY_BACKOFF) {
        begin_attempt(q);
        return;
    }
    abandon(q);
    finish(q, GD_OUTCOME_TIMEOUT, "timed out after %" PRIu64 " ms", q->base.timeout_ms);
    flush_ended(pool); /* the others of a batch whose connection was re-made */
}

static void on_task_cancel(gd_task_t *task)
{
    gd_pgpool_query_t *q = CONTAINER_OF(task, gd_pgpool_query_t, base._task);
    gd_pgpool_t *pool = q->_pool;

    if (h2o_linklist_is_linked(&q->_ended))
        h2o_linklist_unlink(&q->_ended); /* ended, not reported yet: it is cancelled instead */
    else if (q->_state == QUERY_RUNNING)
        abandon(q);
    finish(q, GD_OUTCOME_CANCELLED, "cancelled");
    flush_ended(pool);
}

static void on_conn_timer(gd_timer_t *timer)
{
    struct conn *c = CONTAINER_OF(timer, struct conn, timer);
    gd_pgpool_t *pool = c->pool;
    char reason[GD_CALL_MESSAGE_MAX];

    switch (c->state) {
    case CONN_BACKOFF:
        conn_start(c);
        break;
    case CONN_RESOLVING:
    case CONN_CONNECTING:
        snprintf(reason, sizeof(reason), "timed out after %" PRIu64 " ms",
                 pool->conf->connect_timeout_ms);
        conn_failed(c, reason);
        break;
    case CONN_BUSY:
        GD_REQUIRE(c->is_abandoned);
        gd_log_warn("postgres: a cancelled query on %s did not end within %d ms; closing its "
                    "connection and opening a new one",
                    pool->desc, DRAIN_TIMEOUT_MS);
        snprintf(reason, sizeof(reason),
                 "connection closed: a cancelled query of its batch did not end within %d ms",
                 DRAIN_TIMEOUT_MS);
        conn_remake(c, reason);
        break;
    default:
        break;
    }
    flush_ended(pool);
}


/* -- a count shared by the pools of several threads ---------------------------------------- */

gd_pgpool_shared_t *gd_pgpool_shared_new(size_t size, size_t max_pools)
{
    gd_pgpool_shared_t *sh = gd_xcalloc(1, sizeof(*sh));

    sh->budget = gd_budget_new(size, max_pools);
    atomic_init(&sh->up2_down, 0);
    return sh;
}

gd_pgpool_shared_t *gd_pgpool_shared_free(gd_pgpool_shared_t *sh)
{
    if (sh == NULL)
        return NULL;
    GD_REQUIRE(gd_budget_used(sh->budget) == 0 && atomic_load(&sh->up2_down) / 2 == 0);
    gd_budget_free(sh->budget);
    free(sh);
    return NULL;
}

size_t gd_pgpool_shared_used(const gd_pgpool_shared_t *sh)
{
    return gd_budget_used(sh->budget);
}

/* A unit taken: a spare slot starts connecting with it. */
static void fund(gd_pgpool_t *pool)
{
    struct conn *c = NULL;

    for (size_t i = 0; i < pool->conf->size && c == NULL; i++) {
        if (pool->conns[i].state == CONN_SPARE)
            c = &pool->conns[i];
    }
    GD_REQUIRE(c != NULL);
    pool->funded++;
    c->has_failed = false;
    c->backoff_ms = BACKOFF_FIRST_MS;
    set_state(c, CONN_BACKOFF);
    gd_log_debug("postgres: connection %zu: a unit of the process's %zu taken; connecting",
                 c->index, gd_budget_total(pool->shared->budget));
    conn_start(c);
}

/* Closes idle @c and gives its unit back, for another thread. */
static void defund(struct conn *c)
{
    gd_pgpool_t *pool = c->pool;

    gd_log_debug("postgres: connection %zu: closed, its unit goes to a thread that waits for one",
                 c->index);
    conn_discard(c);
    set_state(c, CONN_SPARE);
    c->has_been_up = false; /* made again later it is a new connection, not a reconnect */
    c->has_failed = false;
    pool->funded--;
    gd_budget_give(&pool->member);
}

/*
 * Under a shared count, matches the units this pool holds to what it needs (the rules in
 * pgpool.h): more while queries wait beyond the connections on their way, one fewer idle
 * connection while another thread wants a unit, none is free and nobody waits here. Never
 * reports to a query: a connection that comes up grants its unit on the next iteration.
 */
static void rebalance(gd_pgpool_t *pool)
{
    gd_budget_t *budget = pool->shared->budget;

    if (pool->is_closed)
        return;
    while (pool->line.waiting > pool->funded - pool->up && pool->funded < pool->conf->size &&
           !is_pool_down(pool) && gd_budget_take(&pool->member))
        fund(pool);
    /* line.held: busy connections and queries granted an idle one; the rest are nobody's. */
    while (pool->line.waiting == 0 && pool->line.held < pool->up &&
           gd_budget_is_wanted_elsewhere(&pool->member) &&
           gd_budget_used(budget) >= gd_budget_total(budget)) {
        struct conn *oldest = NULL;
        for (size_t i = 0; i < pool->conf->size; i++) {
            struct conn *c = &pool->conns[i];
            if (c->state == CONN_IDLE &&
                (oldest == NULL || c->idle_since_ms < oldest->idle_since_ms))
                oldest = c;
        }
        if (oldest == NULL)
            break;
        defund(oldest);
    }
    if (is_pool_down(pool)) {
        /* News from another thread: the server is down, and the queries here wait in vain. */
        if (pool->line.waiting > 0 && !gd_timer_is_active(&pool->down_timer))
            gd_timer_start(pool->timers, &pool->down_timer, gd_timers_now(pool->timers));
        gd_budget_want(&pool->member, false);
        return;
    }
    gd_budget_want(&pool->member,
                   pool->line.waiting > pool->funded - pool->up && pool->funded < pool->conf->size);
}

static void on_rebalance_timer(gd_timer_t *timer)
{
    rebalance(CONTAINER_OF(timer, gd_pgpool_t, rebalance_timer));
}

/* Runs rebalance() on the next loop iteration, once for any number of calls in this one. */
static void schedule_rebalance(gd_pgpool_t *pool)
{
    if (!pool->is_closed && !gd_timer_is_active(&pool->rebalance_timer))
        gd_timer_start(pool->timers, &pool->rebalance_timer, gd_timers_now(pool->timers));
}

/* From another thread, on this loop: a unit came back, a thread started to want one, or the
 * server was found down. */
static void on_budget(gd_budget_member_t *member)
{
    rebalance(member->data);
}

/* -- the pool ----------------------------------------------------------------------------- */

static const char *option(const PQconninfoOption *opts, const char *keyword)
{
    for (; opts->keyword != NULL; opts++) {
        if (strcmp(opts->keyword, keyword) == 0)
            return opts->val != NULL && opts->val[0] != '\0' ? opts->val : NULL;
    }
    return NULL;
}

static const char *option_or_env(const PQconninfoOption *opts, const char *keyword, const char *env)
{
    const char *v = option(opts, keyword);

    if (v == NULL && (v = getenv(env)) != NULL && *v == '\0')
        v = NULL;
    return v;
}

/* A host entry libpq uses without a resolver: a socket directory, an abstract socket, or an
 * IP address. */
static bool is_host_literal(const char *host, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];

    if (len == 0 || host[0] == '/' || host[0] == '@')
        return true;
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, host, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

/*
 * Works out, from the conninfo and the PG* environment, whether libpq would resolve a host name
 * itself (getaddrinfo(), blocking the loop), and if so what to pass instead: host= the first
 * host and hostaddr= its address, resolved by uv_getaddrinfo() on libuv's thread pool. A
 * comma list of hosts passes through untouched when every entry is a literal or a path;
 * a list with a name in it is reduced to its first entry (and the port list to its first
 * port), since libpq would resolve the others itself.
 */
static void plan_connect(gd_pgpool_t *pool)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(pool->conf->conninfo, &err);
    const char *host, *hostaddr, *port, *p;
    size_t first_len;
    bool is_all_literal = true;

    if (opts == NULL) {
        /* libpq's message may quote the conninfo, password included: not logged. */
        PQfreemem(err);
        pool->is_conninfo_valid = false;
        pool->is_outage_logged = true; /* this line says it all; the retries log at debug */
        gd_log_err("postgres: the conninfo cannot be parsed; every SQL call fails with "
                   "\"unavailable\"");
        describe(pool, NULL, NULL, NULL);
        return;
    }
    pool->is_conninfo_valid = true;
    host = option_or_env(opts, "host", "PGHOST");
    hostaddr = option_or_env(opts, "hostaddr", "PGHOSTADDR");
    port = option_or_env(opts, "port", "PGPORT");
    describe(pool, host != NULL ? host : hostaddr, port,
             option_or_env(opts, "dbname", "PGDATABASE"));
    if (host != NULL && hostaddr == NULL) {
        for (p = host; is_all_literal; p++) {
            size_t len = strcspn(p, ",");
            is_all_literal = is_host_literal(p, len);
            p += len;
            if (*p == '\0')
                break;
        }
    }
    if (pool->conf->statement_timeout_ms > 0) {
        const char *theirs = option_or_env(opts, "options", "PGOPTIONS");
        char own[64];
        int len = snprintf(own, sizeof(own), "-c statement_timeout=%" PRIu64,
                           pool->conf->statement_timeout_ms);
        size_t cap = (size_t)len + (theirs != NULL ? strlen(theirs) + 1 : 0) + 1;
        pool->options = gd_xmalloc(cap);
        snprintf(pool->options, cap, "%s%s%s", own, theirs != NULL ? " " : "",
                 theirs != NULL ? theirs : "");
    }
    if (option_or_env(opts, "user", "PGUSER") == NULL) {
        /* libpq would look up the OS user (getpwuid_r(), through NSS, perhaps LDAP) on every
         * connect; once, here at start-up, is enough. */
        PQconninfoOption *defaults = PQconndefaults();
        const char *user = defaults != NULL ? option(defaults, "user") : NULL;
        if (user != NULL)
            pool->user = gd_xstrdup(user);
        PQconninfoFree(defaults);
    }
    if (host != NULL && hostaddr == NULL && !is_all_literal) {
        first_len = strcspn(host, ",");
        pool->host = gd_xstrndup(host, first_len);
        pool->is_host_name = !is_host_literal(host, first_len);
        if (host[first_len] != '\0')
            gd_log_warn("postgres: of the hosts \"%.100s\" only the first is used: libpq would "
                        "resolve the other names itself, blocking the event loop",
                        host);
        if (port != NULL && strchr(port, ',') != NULL)
            pool->port = gd_xstrndup(port, strcspn(port, ","));
    }
    PQconninfoFree(opts);
}

gd_pgpool_t *gd_pgpool_new(const gd_pgpool_conf_t *conf, uv_loop_t *loop, gd_timers_t *timers)
{
    gd_pgpool_t *pool;

    GD_REQUIRE(conf->size >= 1);
    pool = gd_xcalloc(1, sizeof(*pool));
    pool->conf = conf;
    pool->loop = loop;
    pool->timers = timers;
    pool->prepared_words = (conf->nstatements + 63) / 64;
    pool->columns = gd_xcalloc(conf->nstatements + 1, sizeof(*pool->columns));
    gd_gate_init(&pool->line, timers, 0);
    gd_timer_init(&pool->down_timer, on_down_timer);
    gd_timer_init(&pool->rebalance_timer, on_rebalance_timer);
    pool->shared = conf->shared;
    pool->canceller = gd_pgcancel_new(loop);
    h2o_linklist_init_anchor(&pool->ended);
    pool->depth = conf->pipeline_depth == 0 ? 1
                  : conf->pipeline_depth > PIPELINE_DEPTH_MAX ? PIPELINE_DEPTH_MAX
                                                              : conf->pipeline_depth;
    plan_connect(pool);
    pool->conns = gd_xcalloc(conf->size, sizeof(*pool->conns));
    for (size_t i = 0; i < conf->size; i++) {
        struct conn *c = &pool->conns[i];
        c->pool = pool;
        c->index = i;
        c->state = pool->shared != NULL ? CONN_SPARE : CONN_BACKOFF;
        c->backoff_ms = BACKOFF_FIRST_MS;
        c->prepared =
            gd_xcalloc(pool->prepared_words > 0 ? pool->prepared_words : 1, sizeof(*c->prepared));
        c->entries = gd_xcalloc(pool->depth, sizeof(*c->entries));
        gd_timer_init(&c->timer, on_conn_timer);
    }
    if (pool->shared != NULL) {
        pool->member.data = pool;
        GD_REQUIRE(gd_budget_join(pool->shared->budget, &pool->member, loop, on_budget) == 0);
        /* One unit, if one is left: the threads that start first connect in the background,
         * so that the process is ready before its first query. */
        if (gd_budget_take(&pool->member))
            fund(pool);
        return pool;
    }
    for (size_t i = 0; i < conf->size; i++)
        conn_start(&pool->conns[i]);
    return pool;
}

void gd_pgpool_close(gd_pgpool_t *pool)
{
    if (pool->is_closed)
        return;
    GD_REQUIRE(pool->line.waiting == 0);
    pool->is_closed = true;
    gd_timer_stop(pool->timers, &pool->down_timer);
    gd_timer_stop(pool->timers, &pool->rebalance_timer);
    for (size_t i = 0; i < pool->conf->size; i++) {
        struct conn *c = &pool->conns[i];
        bool is_funded = c->state != CONN_SPARE;
        for (size_t k = 0; c->state == CONN_BUSY && k < c->nentries; k++)
            GD_REQUIRE(c->entries[k].query == NULL); /* queries must be done */
        conn_discard(c); /* withdraws its cancel request */
        set_state(c, CONN_CLOSED);
        if (pool->shared != NULL && is_funded) {
            pool->funded--;
            gd_budget_give(&pool->member);
        }
    }
    if (pool->shared != NULL)
        gd_budget_leave(&pool->member); /* its handle closes while the loop runs */
    gd_gate_dispose(&pool->line);
    /* A cancel still being sent keeps the loop alive a bounded time: gd_pgpool_free() waits
     * for the loop's run. */
    gd_pgcancel_close(pool->canceller, CANCEL_STOP_TIMEOUT_MS);
}

bool gd_pgpool_is_settled(const gd_pgpool_t *pool)
{
    return pool->is_closed && pool->polls_open == 0 && gd_pgcancel_is_settled(pool->canceller);
}

void gd_pgpool_set_conf(gd_pgpool_t *pool, const gd_pgpool_conf_t *conf)
{
    const gd_pgpool_conf_t *old = pool->conf;
    size_t words = (conf->nstatements + 63) / 64;

    GD_REQUIRE(conf->size == old->size && conf->nstatements >= old->nstatements &&
               conf->shared == old->shared && conf->retry_budget == old->retry_budget);
    /* Queries in flight of the config before name statements by position: those positions
     * hold the same SQL (config/carry.h), and what is prepared on a connection stays so. */
    for (size_t i = 0; i < old->nstatements; i++)
        GD_REQUIRE(strcmp(conf->statements[i], old->statements[i]) == 0);
    if (words > pool->prepared_words) {
        for (size_t i = 0; i < conf->size; i++) {
            struct conn *c = &pool->conns[i];
            c->prepared = gd_xrealloc(c->prepared, words * sizeof(*c->prepared));
            memset(c->prepared + pool->prepared_words, 0,
                   (words - pool->prepared_words) * sizeof(*c->prepared));
        }
        pool->prepared_words = words;
    }
    pool->columns = gd_xrealloc(pool->columns, (conf->nstatements + 1) * sizeof(*pool->columns));
    memset(pool->columns + old->nstatements, 0,
           (conf->nstatements + 1 - old->nstatements) * sizeof(*pool->columns));
    pool->conf = conf;
}

gd_pgpool_t *gd_pgpool_free(gd_pgpool_t *pool)
{
    if (pool == NULL)
        return NULL;
    GD_REQUIRE(pool->is_closed && pool->polls_open == 0);
    pool->canceller = gd_pgcancel_free(pool->canceller);
    for (size_t i = 0; i < pool->conf->size; i++) {
        free(pool->conns[i].prepared);
        free(pool->conns[i].entries);
    }
    free(pool->conns);
    for (size_t i = 0; i < pool->conf->nstatements; i++)
        gd_pgjson_columns_unref(pool->columns[i]);
    free(pool->columns);
    free(pool->host);
    free(pool->port);
    free(pool->user);
    free(pool->options);
    free(pool);
    return NULL;
}

gd_pgpool_stats_t gd_pgpool_stats(const gd_pgpool_t *pool)
{
    gd_pgpool_stats_t s = {
        .waiting = pool->line.waiting,
        .reconnects = pool->reconnects,
        .cancels = pool->cancels,
        .cancels_dropped = pool->cancels_dropped,
        .batches = pool->batches,
        .batched_queries = pool->batched_queries,
        .resent_queries = pool->resent_queries,
    };

    for (size_t i = 0; i < pool->conf->size; i++) {
        switch (pool->conns[i].state) {
        case CONN_IDLE:
            s.idle++;
            break;
        case CONN_BUSY:
            s.busy++;
            break;
        case CONN_RESOLVING:
        case CONN_CONNECTING:
            s.connecting++;
            break;
        case CONN_BACKOFF:
            s.broken++;
            break;
        case CONN_CLOSED:
        case CONN_SPARE:
            break;
        }
    }
    return s;
}

bool gd_pgpool_is_ready(const gd_pgpool_t *pool)
{
    if (pool->shared != NULL)
        return atomic_load_explicit(&pool->shared->up2_down, memory_order_relaxed) / 2 > 0;
    for (size_t i = 0; i < pool->conf->size; i++) {
        if (is_up(&pool->conns[i]))
            return true;
    }
    return false;
}

static void on_line_end(gd_gate_waiter_t *waiter, bool is_granted);

/* Puts @q at the end of the line for a connection, until its acquire timeout or deadline. */
static void wait_in_line(gd_pgpool_query_t *q)
{
    gd_pgpool_t *pool = q->_pool;
    uint64_t acquire_due = add_sat(gd_timers_now(pool->timers), pool->conf->acquire_timeout_ms);

    q->_state = QUERY_WAITING;
    gd_gate_wait(&pool->line, &q->_waiter,
                 acquire_due < q->base.deadline_ms ? acquire_due : q->base.deadline_ms,
                 on_line_end);
    if (pool->shared != NULL)
        rebalance(pool); /* a unit for it, or the other threads told */
}

/* @q holds a unit of the line: it runs on an idle connection, which the unit guarantees unless
 * one broke between the grant and now; then it waits again, at the end of the line. */
static void run_with_unit(gd_pgpool_query_t *q)
{
    gd_pgpool_t *pool = q->_pool;
    struct conn *c = find_idle(pool);

    if (c == NULL) {
        gd_gate_release(&pool->line);
        wait_in_line(q);
        return;
    }
    conn_run(c, q);
    flush_ended(pool);
}

static void on_line_end(gd_gate_waiter_t *waiter, bool is_granted)
{
    gd_pgpool_query_t *q = CONTAINER_OF(waiter, gd_pgpool_query_t, _waiter);
    gd_pgpool_t *pool = q->_pool;

    if (pool->shared != NULL)
        schedule_rebalance(pool); /* one fewer waiting */
    if (is_granted)
        run_with_unit(q);
    else if (is_pool_down(pool))
        finish_unavailable(q);
    else if (gd_timers_now(pool->timers) >= q->base.deadline_ms)
        finish(q, GD_OUTCOME_TIMEOUT, "timed out after %" PRIu64 " ms", q->base.timeout_ms);
    else
        finish(q, GD_OUTCOME_POOL_TIMEOUT, "no Postgres connection free within %" PRIu64 " ms",
               pool->conf->acquire_timeout_ms);
}

static void start_query(void *source, gd_call_t *base, gd_group_t *group)
{
    gd_pgpool_t *pool = source;
    gd_pgpool_query_t *query = (gd_pgpool_query_t *)base;

    GD_REQUIRE(!pool->is_closed && query->statement < pool->conf->nstatements);
    query->_pool = pool;
    query->_conn = NULL;
    query->_waiter = (gd_gate_waiter_t){0};
    query->_state = QUERY_STARTING;
    query->_attempt = 1;
    query->_resends = 0;
    query->_ended = (h2o_linklist_t){NULL, NULL};
    gd_timer_init(&query->_timer, on_query_timer);
    gd_group_add(group, &query->base._task, on_task_cancel);
    if (pool->conf->retry_budget != NULL)
        gd_retry_budget_note_call(pool->conf->retry_budget, gd_timers_now(pool->timers));
    begin_attempt(query);
}

/* Starts @query's attempt: on a free connection, else in the line for one. */
static void begin_attempt(gd_pgpool_query_t *query)
{
    gd_pgpool_t *pool = query->_pool;

    query->_state = QUERY_STARTING;
    if (pool->conf->retry_budget != NULL)
        atomic_fetch_add_explicit(&pool->conf->retry_budget->attempts, 1, memory_order_relaxed);
    if (gd_timers_now(pool->timers) >= query->base.deadline_ms) {
        finish(query, GD_OUTCOME_TIMEOUT, "timed out after %" PRIu64 " ms", query->base.timeout_ms);
        return;
    }
    /* Not while others wait: they were first. */
    if (gd_gate_try_acquire(&pool->line)) {
        run_with_unit(query);
        return;
    }
    if (is_pool_down(pool)) {
        finish_unavailable(query);
        return;
    }
    wait_in_line(query);
}

/* Binds each argument as a NUL-terminated text value in the request arena (a parameter, never
 * part of the SQL text). */
static int prepare_query(gd_call_t *base, const gd_call_conf_t *cc, const gd_call_input_t *in,
                         char *err, size_t errlen)
{
    gd_pgpool_query_t *query = (gd_pgpool_query_t *)base;
    const char **params = gd_arena_alloc(in->arena, sizeof(*params) * (cc->nargs + 1));

    for (size_t i = 0; i < cc->nargs; i++) {
        if (gd_template_is_null(&cc->args[i], in->values)) {
            params[i] = NULL; /* a call's null value: SQL NULL */
            continue;
        }
        size_t len = gd_template_expand_raw(&cc->args[i], in->values, NULL, 0);
        char *buf = gd_arena_alloc_text(in->arena, len + 1);
        gd_template_expand_raw(&cc->args[i], in->values, buf, len);
        buf[len] = '\0';
        params[i] = buf;
    }
    params[cc->nargs] = NULL;
    query->statement = cc->statement;
    query->params = params;
    query->is_one_row = cc->is_one_row;
    query->max_rows = cc->max_rows;
    query->max_body_bytes = cc->max_body_bytes;
    query->retry = &cc->retry;
    query->is_idempotent = cc->is_idempotent;
    return 0;
}

static void dispose_query(gd_call_t *base)
{
    (void)base; /* the result's body is gd_call_dispose()'s */
}

static void query_progress(const gd_call_t *call, gd_call_progress_t *ret)
{
    const gd_pgpool_query_t *q = (const gd_pgpool_query_t *)call;

    ret->attempt = q->_attempt > 0 ? q->_attempt : 1;
    ret->state = q->_state == QUERY_WAITING   ? "waiting"
                 : q->_state == QUERY_RUNNING ? "sent"
                 : q->_state == QUERY_BACKOFF ? "backoff"
                                              : "done";
}

static void query_cache_key(const gd_call_t *call, void (*add)(void *ctx, const void *p, size_t n),
                            void *ctx)
{
    const gd_pgpool_query_t *q = (const gd_pgpool_query_t *)call;

    /* Each argument with its length first: ("ab", "c") and ("a", "bc") differ. */
    for (size_t i = 0; i < call->conf->nargs; i++) {
        uint64_t len = q->params[i] != NULL ? strlen(q->params[i]) : UINT64_MAX;
        add(ctx, &len, sizeof(len));
        if (q->params[i] != NULL)
            add(ctx, q->params[i], (size_t)len);
    }
}

static void query_clone(gd_call_t *dst_base, const gd_call_t *src_base, gd_arena_t *arena)
{
    gd_pgpool_query_t *dst = (gd_pgpool_query_t *)dst_base;
    const gd_pgpool_query_t *src = (const gd_pgpool_query_t *)src_base;
    size_t n = src_base->conf->nargs;
    const char **params = gd_arena_alloc(arena, sizeof(*params) * (n + 1));

    for (size_t i = 0; i < n; i++)
        params[i] = src->params[i] != NULL
                        ? gd_arena_strdup(arena, src->params[i], strlen(src->params[i])).base
                        : NULL;
    params[n] = NULL;
    dst->statement = src->statement;
    dst->params = params;
    dst->is_one_row = src->is_one_row;
    dst->max_rows = src->max_rows;
    dst->max_body_bytes = src->max_body_bytes;
    dst->retry = src->retry; /* borrowed from the config, as the source's */
    dst->is_idempotent = src->is_idempotent;
}

const gd_call_ops_t gd_pgpool_query_ops = {
    .kind = "sql",
    .size = sizeof(gd_pgpool_query_t),
    .prepare = prepare_query,
    .start = start_query,
    .dispose = dispose_query,
    .progress = query_progress,
    .cache_key = query_cache_key,
    .clone = query_clone,
};
