/*
 * gd_call: what every source of data (an upstream HTTP API, a Postgres query) is to the code
 * that gathers a request. A call has a rendered request, a deadline and its own timeout, and,
 * once done, a result (outcome, status, body, elapsed time); it is a task of a gd_group_t and
 * reports with gd_task_done(). Each source implements gd_call_ops_t; nothing above the sources
 * switches on the kind of a call.
 *
 * A call is distinct from its attempts: the connection, parser state and per-attempt timer of
 * an exchange belong to an attempt, which the source keeps inside its own call struct (HTTP:
 * gd_upstream_attempt_t; at most two at once: one, and its hedge).
 *
 * Ownership: a call's storage is the caller's (the request arena), sized by ops->size, with the
 * gd_call_t first. What prepare() renders lives in the arena given to it; the result's body is a
 * reference the call owns until gd_call_dispose(), so a reader that keeps it takes its own.
 *
 * Cancellation rule: a source's cancel (through the task) reports synchronously, before it
 * returns, and never calls into h2o or starts other work from inside the cancel. It is the
 * caller's group, not the source, that defers the waiter's wake-up out of the canceller's stack
 * (gd_group_cancel()), so cancelling from h2o's dispose callbacks re-enters nothing.
 */
#ifndef GD_CALL_H
#define GD_CALL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <h2o/memory.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/coro.h"
#include "config/config.h"
#include "ops/trace.h"

typedef enum gd_outcome {
    GD_OUTCOME_OK = 0,
    GD_OUTCOME_TIMEOUT,      /* the call's timeout or the endpoint deadline passed */
    GD_OUTCOME_CONNECT,      /* refused, unreachable, DNS, connect timeout */
    GD_OUTCOME_IO,           /* the connection broke, or broken HTTP */
    GD_OUTCOME_STATUS,       /* non-2xx status */
    GD_OUTCOME_INVALID_JSON, /* the body is not one JSON document */
    GD_OUTCOME_TOO_LARGE,    /* the body (or the rows) over the call's limits */
    GD_OUTCOME_CANCELLED,    /* stopped because the request went away or the server shut down */
    GD_OUTCOME_POOL_TIMEOUT, /* no Postgres connection became free within acquire_timeout_ms */
    GD_OUTCOME_SQL,          /* the server reported an error (sqlstate set), or a row rule broke */
    GD_OUTCOME_UNAVAILABLE,  /* no Postgres connection is up: failed fast */
    GD_OUTCOME_NOT_FOUND,    /* "row": "one" found no row: null; a 404 when the call is required */
    GD_OUTCOME_TLS,          /* TLS handshake or verification failed, or a TLS alert/bad record */
    GD_OUTCOME_CIRCUIT_OPEN, /* the upstream's breaker is open: refused at once, never retried */
    GD_OUTCOME_RATE_LIMITED, /* no token of the upstream's rate_limit could come in time */
    GD_OUTCOME_IN_FLIGHT_TIMEOUT, /* no place under the upstream's max_in_flight came in time */
    GD_OUTCOME_DEPENDENCY,   /* not run: a call it needs failed, or a value it uses is missing or
                              * cannot go where it is used */
    GD_OUTCOME_SKIPPED,      /* not run: its "when" is false, or a call it needs was skipped;
                              * null, not a failure */
    GD_OUTCOME_SELECT,       /* the call's "select" path found nothing in its result */
    GD_OUTCOME_COUNT
} gd_outcome_t;

#define GD_CALL_MESSAGE_MAX 160

typedef enum gd_call_cache_use {
    GD_CALL_UNCACHED = 0,     /* the call has no "cache" */
    GD_CALL_CACHE_MISS,       /* it made the exchange (it started the flight others joined) */
    GD_CALL_CACHE_HIT,        /* answered from the cache */
    GD_CALL_COALESCED,        /* it joined an identical call already in flight */
    GD_CALL_CACHE_SHARED_HIT, /* answered from the shared cache in Redis ("shared": true) */
} gd_call_cache_use_t;

typedef struct gd_call_result {
    gd_outcome_t outcome;
    int status; /* the upstream's HTTP status when one arrived, else 0 */
    /* GD_OUTCOME_OK (and NOT_FOUND: "null"): the JSON document, a reference the call owns */
    gd_buf_t *body;
    /* What went wrong in detail, for the log: it may name hosts, addresses and server messages,
     * so public answers carry gd_outcome_public_message() instead (unless the operator asked
     * for details with expose_error_details). */
    char message[GD_CALL_MESSAGE_MAX];
    char sqlstate[6]; /* GD_OUTCOME_SQL from the server: its SQLSTATE, else "" */
    uint64_t elapsed_ms;
    unsigned attempts; /* exchanges the call made (HTTP: retries included); 0 or 1: one */
    gd_call_cache_use_t cache; /* how a call with "cache" got its result */
    /* The lifetime the upstream gave its answer (Cache-Control max-age, s-maxage), in ms; 0
     * for no-store, no-cache or private; -1 when it said nothing. Set by the HTTP source. */
    int64_t max_age_ms;
    bool is_shaped; /* its body has had the call's "select"/"fields"/... (gather/reshape.h) */
    /* A "for_each" call's: the result of each item, in item order (in the request's arena), and
     * how many of them failed; each failed item is an entry of the answer's errors. */
    const struct gd_call_result *items;
    size_t nitems, nitems_failed;
} gd_call_result_t;

/* What a call's request is rendered from: the request's values, in its arena. */
typedef struct gd_call_input {
    const gd_strv_t *values;       /* the endpoint's parameters, by index */
    const char *request_id;        /* sent upstream as x-request-id */
    const gd_traceparent_t *trace; /* the client's trace context, or NULL */
    const h2o_headers_t *headers;  /* the client's request headers (forward_headers), or NULL */
    gd_arena_t *arena;             /* the request arena: rendered parts are allocated here */
    gd_strv_t body;                /* the client's request body (borrowed from h2o: copy it) */
    gd_strv_t content_type;        /* its Content-Type, {NULL, 0} when it sent none */
} gd_call_input_t;

typedef struct gd_call gd_call_t;

/* What a call in flight is doing, for the operator's live view (/debug/requests). */
typedef struct gd_call_progress {
    const char *state; /* "waiting" (for a connection or slot), "connecting", "sent", ..., "done" */
    unsigned attempt;  /* the attempt under way (1 for the first), or made when done */
} gd_call_progress_t;

typedef struct gd_call_ops {
    const char *kind; /* "http", "sql" */
    size_t size;      /* bytes of the source's call struct, which has a gd_call_t first */
    /**
     * Renders @call's request for @conf from @in into in->arena. Returns 0, or -EINVAL with a
     * message in @err (a 400 for the client: a value, or a forwarded header of the client's,
     * would smuggle a control character).
     */
    int (*prepare)(gd_call_t *call, const gd_call_conf_t *conf, const gd_call_input_t *in,
                   char *err, size_t errlen);
    /** Starts @call (prepared, deadlines set) on @source as a task of @group. */
    void (*start)(void *source, gd_call_t *call, gd_group_t *group);
    /** Frees what a done @call owns besides its result. */
    void (*dispose)(gd_call_t *call);
    /** Tells what a started, not yet done @call is doing (a static state name). */
    void (*progress)(const gd_call_t *call, gd_call_progress_t *ret);
    /**
     * Feeds @add(@ctx, ...) the bytes of @call's rendered request that decide its result
     * (HTTP: method, target, the headers that vary, body; SQL: the arguments), for the cache
     * key; never what differs per request (its id, its trace context).
     */
    void (*cache_key)(const gd_call_t *call, void (*add)(void *ctx, const void *p, size_t n),
                      void *ctx);
    /**
     * Copies what prepare() rendered for @src into @dst (zeroed storage of size bytes, its
     * gd_call_t fields set by the caller), the parts into @arena: a coalesced call's own copy,
     * which outlives the request that rendered it.
     */
    void (*clone)(gd_call_t *dst, const gd_call_t *src, gd_arena_t *arena);
} gd_call_ops_t;

struct gd_flights;

/* One source of calls on one event-loop thread: an upstream, the Postgres pool. */
typedef struct gd_source {
    const gd_call_ops_t *ops;
    void *instance;
    struct gd_flights *flights; /* the thread's calls in flight with "cache"; NULL: no cache */
} gd_source_t;

struct gd_call {
    /* public: set before gd_call_start() */
    const gd_call_ops_t *ops;
    uint64_t started_at_ns; /* uv_hrtime() at the request's start: elapsed_ms counts from it */
    uint64_t deadline_ms;   /* absolute, gd_timers_now() base */
    uint64_t timeout_ms;    /* the call's own budget, for the message */
    /* read-only: set by gd_call_prepare() */
    const gd_call_conf_t *conf;
    /* read-only: valid once the task is done */
    gd_call_result_t result;
    /* private: for the source */
    gd_task_t _task;
    /* private: for the cache (sources/cache.c) */
    void *_cache;          /* a requester's place in its flight, or a flight's own call's flight */
    bool _is_flight_call;  /* the exchange a flight makes for its requesters: reports to it */
};

/** The names of the outcomes, by number, as in the answer ("ok", "timeout", ...). */
extern const char *const gd_outcome_names[GD_OUTCOME_COUNT];
/** The error kind's name as in the answer ("timeout", "connect", ...; "ok"). */
const char *gd_outcome_name(gd_outcome_t outcome);
/** A fixed text for the public answer: says what failed, never where. */
const char *gd_outcome_public_message(gd_outcome_t outcome);

/**
 * Prepares @call (storage of ops->size bytes, zeroed by the caller) for @conf through @ops.
 * Returns what ops->prepare() returns.
 */
int gd_call_prepare(gd_call_t *call, const gd_call_ops_t *ops, const gd_call_conf_t *conf,
                    const gd_call_input_t *in, char *err, size_t errlen);
/** Starts @call on @source (its ops) as a task of @group; its result says "cancelled" until done.
 */
void gd_call_start(gd_call_t *call, const gd_source_t *source, gd_group_t *group);
/** Tells what @call is doing: "pending" before its start, "done" after, the source's between. */
void gd_call_progress(const gd_call_t *call, gd_call_progress_t *ret);
/** Whether @call, started, has reported its result. */
bool gd_call_is_done(const gd_call_t *call);
/** Frees what a done (or never started) @call owns, its result's body included. */
void gd_call_dispose(gd_call_t *call);

/** For sources: milliseconds since the call's request started. */
uint64_t gd_call_elapsed_ms(const gd_call_t *call);
/**
 * For sources: writes the outcome, @status, the elapsed time and the formatted message into
 * @call's result (its body is the caller's to set) and reports the task done. Reporting may
 * switch into the request coroutine, which may free @call: nothing may touch it afterwards.
 */
void gd_call_finish(gd_call_t *call, gd_outcome_t outcome, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/**
 * For sources: reports @call done, its result already written (what gd_call_finish() does
 * last). The same rule: nothing may touch @call afterwards.
 */
void gd_call_report(gd_call_t *call);
void gd_call_vfinish(gd_call_t *call, gd_outcome_t outcome, int status, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

#endif
