/*
 * gd_readbound: the read bound of one worker thread (see "Overload" in README). Under overload
 * a request read from a client joins the line of requests waiting for a slot, where it holds
 * h2o's 8 KiB input buffer and a pool chunk. Past the free slots and a quarter of them more
 * (at least READ_AHEAD_MIN), HTTP/1 connections that wait for their next request are not read:
 * their requests wait in the kernel, where they cost gatherd nothing, and their empty input
 * buffer goes back meanwhile. They are read again oldest first as the line shortens, or after
 * the longest pause (queue_timeout_ms, at most MAX_READ_PAUSE_MS). The kernel stamps what a
 * paused connection receives, so that the time its request waited unread counts against the
 * request's queue_timeout_ms once it is read.
 *
 * HTTP/2 connections are always read. The worker owns the connections; this
 * only starts and stops their reading, just before the loop polls (a uv_prepare_t), so that no
 * read comes between h2o's read_start and a pause.
 */
#ifndef GD_READBOUND_H
#define GD_READBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <uv.h>

#include "base/gate.h"

typedef struct gd_readbound gd_readbound_t;
typedef struct gd_readbound_conn gd_readbound_conn_t;

/** The read-bound state of a client connection @sock, or NULL when @sock is not the worker's. */
typedef gd_readbound_conn_t *(*gd_readbound_conn_of_cb)(h2o_socket_t *sock);

/* Part of a client connection (caller-owned, gd_readbound_conn_init()). */
struct gd_readbound_conn {
    /* private */
    gd_readbound_t *_rb;
    uv_stream_t *_stream; /* the client's: its data is h2o's socket */
    h2o_linklist_t _link; /* in the rechecks or paused list, or in neither */
    bool _is_paused;
    uint64_t _paused_at_ms;       /* uv_now() */
    h2o_socket_cb _read_cb;       /* h2o's, while paused */
    h2o_linklist_t _granted_link; /* in the granted list */
    uint64_t _granted_at_ms;      /* uv_now() */
    bool _is_stamped;             /* the kernel stamps what it receives (SO_TIMESTAMPNS) */
    /* uv_hrtime() when the bytes found waiting at the last resume reached the kernel; 0: none */
    uint64_t _arrived_ns;
};

struct gd_readbound {
    /* private */
    uv_loop_t *_loop;
    h2o_context_t *_ctx;
    const gd_gate_t *_line; /* the worker's request slots */
    gd_readbound_conn_of_cb _conn_of;
    uint64_t _max_pause_ms;                       /* 0: connections are always read */
    const h2o_conn_callbacks_t *_http1_callbacks; /* h2o's, seen on the first HTTP/1 request */
    uv_prepare_t _gate;
    h2o_linklist_t _rechecks; /* may just have begun waiting for a request */
    h2o_linklist_t _paused;   /* not read, oldest first */
    size_t _npaused;
    size_t _room;            /* what the gate left of the room for this loop turn */
    h2o_linklist_t _granted; /* left reading, no request from them yet */
    size_t _ngranted;
};

/** Starts the bound on @loop for the requests of @ctx, which wait for a slot of @line. */
void gd_readbound_init(gd_readbound_t *rb, uv_loop_t *loop, h2o_context_t *ctx,
                       const gd_gate_t *line, gd_readbound_conn_of_cb conn_of);
/** Stops it and closes its handle; every connection must have been forgotten or be closing. */
void gd_readbound_close(gd_readbound_t *rb);
/**
 * A connection is paused for @max_pause_ms at most (capped at MAX_READ_PAUSE_MS); 0 turns the
 * bound off and reads every paused connection again (a drain, an abort, queue_timeout_ms 0).
 */
void gd_readbound_set_max_pause(gd_readbound_t *rb, uint64_t max_pause_ms);
/** How many connections are not read now. */
size_t gd_readbound_unread(const gd_readbound_t *rb);

void gd_readbound_conn_init(gd_readbound_t *rb, gd_readbound_conn_t *c, uv_stream_t *stream);
/** @c has been accepted, its socket @sock given to h2o: it waits behind the paused ones. */
void gd_readbound_note_accepted(gd_readbound_conn_t *c, h2o_socket_t *sock);
/**
 * A request @req has been read (any version): its connection is looked at again once h2o is
 * done with it. Returns how long (ns) the request waited unread in the kernel before it was
 * read: 0 unless its connection was paused when it came.
 */
uint64_t gd_readbound_note_request(gd_readbound_t *rb, h2o_req_t *req);
/** @c's connection is closing: the bound lets go of it. */
void gd_readbound_forget(gd_readbound_conn_t *c);

#endif
