/*
 * gd_sockbuf: the input buffers of h2o sockets. h2o 2.2.5 takes a socket's input buffer from
 * a per-thread prototype (8 KiB, more if a message needs more) when libuv is about to read, and
 * frees it once every byte is consumed; a read that finds nothing leaves it allocated and
 * empty. A connection that waits (a pooled upstream connection between calls, a client
 * connection whose reading is paused) needs none.
 */
#ifndef GD_SOCKBUF_H
#define GD_SOCKBUF_H

#include <stdbool.h>
#include <stddef.h>

#include <h2o.h>

/**
 * Frees @sock's input buffer when it holds no byte (plain or TLS-decoded input; a TLS socket's
 * encrypted input is left alone). Call it only where h2o keeps no pointer into the buffer: no
 * request being parsed or handled on @sock. Returns whether it freed one.
 */
bool gd_sockbuf_release(h2o_socket_t *sock);

/**
 * Makes @proto a prototype like h2o's own (same recycling, same switch to a file mapping for
 * huge buffers) whose buffers start at @capacity bytes. Set a socket's input to it with
 * h2o_buffer_set_prototype() before its first read; a buffer that needs more grows by doubling.
 */
void gd_sockbuf_prototype_init(h2o_buffer_prototype_t *proto, size_t capacity);

/**
 * Frees the buffers @proto keeps for reuse. Call it once no socket uses @proto.
 */
void gd_sockbuf_prototype_dispose(h2o_buffer_prototype_t *proto);

#endif
