/*
 * gd_sockbuf: gives back the input buffer of an h2o socket that holds nothing. h2o 2.2.5 keeps
 * a socket's input buffer (8 KiB from its first read, more if a message needed more) for the
 * socket's whole life: h2o_buffer_consume() empties it but keeps the allocation. A connection
 * that waits (a pooled upstream connection between calls, a client connection whose reading
 * is paused) needs none; the next read takes one again from h2o's per-thread recycler.
 */
#ifndef GD_SOCKBUF_H
#define GD_SOCKBUF_H

#include <stdbool.h>

#include <h2o.h>

/**
 * Frees @sock's input buffer when it holds no byte (plain or TLS-decoded input; a TLS socket's
 * encrypted input is left alone). Call it only where h2o keeps no pointer into the buffer: no
 * request being parsed or handled on @sock. Returns whether it freed one.
 */
bool gd_sockbuf_release(h2o_socket_t *sock);

#endif
