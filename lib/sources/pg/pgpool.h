/*
 * gd_pgpool: a fixed pool of fully asynchronous libpq connections on one event-loop thread.
 * Connections are made with PQconnectStartParams/PQconnectPoll driven by uv_poll_t (host names
 * resolved with uv_getaddrinfo off the loop and passed as hostaddr), queries are sent in
 * pipeline mode as prepared statements (prepared once per connection, in the same round trip
 * as their first execution) or, with is_unprepared, each as its own unnamed statement
 * (PQsendQueryParams: parse, bind and execute in one round trip, for PgBouncer's transaction
 * pooling, which keeps no statement across transactions), and results are read as the socket
 * becomes readable: nothing ever blocks the loop. A query is a task of a gd_group_t and
 * reports with gd_task_done().
 *
 * Retries: a query with a retry policy (attempts > 1) that is idempotent runs again after a
 * serialization failure (40001), a deadlock (40P01) or a connection that broke before the
 * query was sent, after a backoff that must end before its deadline and within the pool's
 * retry budget; nothing else is retried.
 *
 * Batches (pipeline_depth > 1): a query that finds every connection busy waits in the pool's
 * line; a connection that comes free takes the first waiter and, when it is idempotent and its
 * statement a plain read (statement_is_batchable), up to pipeline_depth - 1 more such queries
 * from the line, in line order, and sends them in one write
 * ending in one Sync. They share the server's implicit transaction: an error skips the rest of
 * the batch, so the failing query fails alone and the ones behind it are sent again on the
 * same connection, in a new batch, without counting as retries (at most MAX_RESENDS times,
 * each bounded by the query's own deadline). Anything else (a write, a locking read) goes
 * alone with its own Sync, as it did before batches, so another call's failure never rolls it
 * back. A query in a batch holds no unit of the line: its wait for a connection ended when it
 * joined the batch, and what follows is bounded by its deadline and by the at most
 * pipeline_depth - 1 queries ahead of it.
 *
 * Failure handling: a query waits for a free connection at most acquire_timeout_ms
 * (GD_OUTCOME_POOL_TIMEOUT); past its deadline it fails with GD_OUTCOME_TIMEOUT at once and is
 * cancelled on the server from a thread of the pool's own (PQcancel blocks; see pgcancel.h), its
 * connection coming back to the pool only once clean, or re-made when the cancel cannot be sent
 * soon; a dead connection is discarded and re-made in the
 * background with exponential backoff; while no connection is up, queries fail fast with
 * GD_OUTCOME_UNAVAILABLE. Pools of several threads may share one count of connections
 * (gd_pgpool_shared_t).
 */
#ifndef GD_PGPOOL_H
#define GD_PGPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o/linklist.h>
#include <uv.h>

#include "base/budget.h"
#include "base/coro.h"
#include "base/gate.h"
#include "base/timer.h"
#include "sources/call.h"

typedef struct gd_pgpool gd_pgpool_t;

/*
 * The Postgres connections of a whole process counted as one, for a postgres.pool_size smaller
 * than the threads (a share per thread cannot keep 2 connections over 4 threads to 2): a unit
 * of a gd_budget_t per connection, connecting ones included, shared by every thread's pool, and
 * what the pools know together: how many connections are up, and whether the server is known
 * to be down.
 *
 * The rules. A pool with a shared count has conf->size slots, but a slot is connected (or
 * trying to) only while it holds a unit. At start each pool takes one unit if one is left
 * (first come, first served) and connects with it in the background. A pool whose queries
 * wait takes a unit per query waiting beyond the connections it has on their way, up to its
 * slots; one that finds none says it wants one, and a pool that has an idle connection nobody
 * waits for closes its least recently used one and gives the unit back while another wants one
 * and none is free. Idle connections are otherwise kept, and a connection that breaks keeps
 * its unit while it reconnects. The server is known to be down when no connection of the
 * process is up and every connection of some pool holding units has tried and failed: then
 * every pool whose own connections (if any) have all failed too fails its queries at once with
 * GD_OUTCOME_UNAVAILABLE, a pool without units included. Any connection that comes up ends it.
 */
typedef struct gd_pgpool_shared gd_pgpool_shared_t;

/* How a pool connects, and the statements it may run. Borrowed: must outlive the pool. */
typedef struct gd_pgpool_conf {
    const char *conninfo; /* libpq connection string or URI; "" = libpq's PG* environment */
    size_t size;          /* connections of this pool (>= 1) */
    uint64_t acquire_timeout_ms;
    uint64_t connect_timeout_ms;
    const char *const *statements; /* SQL texts; a query names one by index */
    const int *statement_nparams;  /* number of $n parameters of each */
    /* Of each: a plain read, which may share a batch when its call is idempotent too; NULL:
     * none is. */
    const bool *statement_is_batchable;
    size_t nstatements;
    const char *application_name; /* sent to the server; NULL: "gatherd" */
    /* The server's statement_timeout on every connection: a backstop that stops a query
     * whose cancel was never sent. 0: none (the server's own setting stays). */
    uint64_t statement_timeout_ms;
    /* NULL: the pool keeps its size connections. Else borrowed (outlives the pool): the pool
     * has size slots and connects one only while it holds a unit of this count (see above). */
    gd_pgpool_shared_t *shared;
    /* Every query is sent unprepared (postgres.prepared: false). */
    bool is_unprepared;
    /* Borrowed (outlives the pool; any thread may share it): what retries of the pool's queries
     * may add, and their counters. NULL: retries are neither budgeted nor counted. */
    struct gd_retry_budget *retry_budget;
    /* At most this many queries share one write and one Sync on a connection (postgres.
     * pipeline_depth; 0 or 1: one query per Sync, as before batches). See "Batches" above. */
    size_t pipeline_depth;
} gd_pgpool_conf_t;

/* Counters of one pool. */
typedef struct gd_pgpool_stats {
    size_t idle, busy, connecting, broken; /* connections by state */
    size_t waiting;                        /* queries waiting for a connection */
    uint64_t reconnects, cancels;          /* since start */
    /* Cancels not sent (too many waiting for the canceller's thread, or it could not start in
     * time): each connection was closed and re-made instead. */
    uint64_t cancels_dropped;
    /* Since start: batches sent (one Sync each), the queries they carried (re-sends included),
     * and the queries sent again after another query of their batch failed or was cancelled. */
    uint64_t batches, batched_queries, resent_queries;
} gd_pgpool_stats_t;

/** Creates the shared count of @size connections (at least 1) for up to @max_pools pools. */
gd_pgpool_shared_t *gd_pgpool_shared_new(size_t size, size_t max_pools);
/**
 * Frees @shared (NULL is a no-op) once every pool using it is closed and the pools' loops have
 * run. Returns NULL.
 */
gd_pgpool_shared_t *gd_pgpool_shared_free(gd_pgpool_shared_t *shared);
/** Connections of the pools using @shared that hold a unit now (connecting ones included). */
size_t gd_pgpool_shared_used(const gd_pgpool_shared_t *shared);

/**
 * Creates a pool on @loop using @timers and starts connecting every connection in the
 * background. Never fails: a server that is down is retried with backoff.
 */
gd_pgpool_t *gd_pgpool_new(const gd_pgpool_conf_t *conf, uv_loop_t *loop, gd_timers_t *timers);
/**
 * Closes every connection (queries must all be done) and the pool's handles; a cancel still
 * being sent is waited for at most a second, on the loop. The loop must then run until uv_run()
 * returns before gd_pgpool_free().
 */
void gd_pgpool_close(gd_pgpool_t *pool);
/** Frees @pool (NULL is a no-op) after gd_pgpool_close() and the loop's run. Returns NULL. */
gd_pgpool_t *gd_pgpool_free(gd_pgpool_t *pool);
/**
 * Whether @pool, closed, has finished closing (its sockets' polls and cancel requests), so
 * that gd_pgpool_free() may follow without running the loop to its end (a config reload).
 */
bool gd_pgpool_is_settled(const gd_pgpool_t *pool);
/**
 * Points @pool at @conf (borrowed for its lifetime from now on), of the same settings as the
 * one it has, and statements that begin with the ones it has, at the same positions (more may
 * follow): a config reload keeps the pool, and what its connections have prepared, when
 * "postgres" did not change.
 */
void gd_pgpool_set_conf(gd_pgpool_t *pool, const gd_pgpool_conf_t *conf);
/** The pool's counters. */
gd_pgpool_stats_t gd_pgpool_stats(const gd_pgpool_t *pool);
/**
 * Whether at least one connection is up (idle or busy): one of this pool's, or with a shared
 * count one of any pool using it, since this pool can then take a unit for its queries.
 */
bool gd_pgpool_is_ready(const gd_pgpool_t *pool);

typedef struct gd_pgpool_query {
    gd_call_t base; /* first: the call as the gatherer sees it */
    /* public: set by prepare, borrowed from the request arena until the task is done */
    size_t statement;             /* index into the pool's statements */
    const char *const *params;    /* text values of $1..$n, NUL-terminated; NULL entry = SQL NULL */
    bool is_one_row;              /* "row": "one": the single row as an object */
    size_t max_rows;              /* more rows: GD_OUTCOME_TOO_LARGE; 0: no limit */
    size_t max_body_bytes;        /* a larger rendering of the rows: the same; 0: no limit */
    const gd_retry_conf_t *retry; /* NULL (or attempts 1): one attempt */
    bool is_idempotent;           /* may run again: without it retry is ignored */
    /* private */
    unsigned _attempt; /* 1 for the first */
    gd_pgpool_t *_pool;
    void *_conn;
    gd_timer_t _timer;        /* the deadline while it runs */
    gd_gate_waiter_t _waiter; /* its place in the pool's line for a connection */
    int _state;
    unsigned _resends;         /* sent again after its batch was aborted by another query */
    int _end;                  /* how it ends once taken off the pool's list of ended ones */
    bool _is_unsent;           /* with _end: the failure happened before it reached the server */
    h2o_linklist_t _ended;     /* in the pool's list of queries to report */
} gd_pgpool_query_t;

/*
 * The queries of a pool (gd_call_ops_t.start takes the gd_pgpool_t as its source). On success
 * result.body is the rows as a JSON array of objects, or with is_one_row the single row as an
 * object; no row with is_one_row gives GD_OUTCOME_NOT_FOUND (body "null"), more than one a
 * GD_OUTCOME_SQL failure. Rows are read one at a time (libpq's single-row mode) and rendered as
 * they come, so a result is never held whole in memory; more than max_rows rows, or a rendering
 * over max_body_bytes, fail the query with GD_OUTCOME_TOO_LARGE as soon as they are seen. A
 * query that fails that way, or breaks the one-row rule, is reported at once; its connection
 * reads and drops the rest (the server is asked to stop) and returns to the pool once clean.
 */
extern const gd_call_ops_t gd_pgpool_query_ops;

#endif
