/*
 * gd_gunzip: decodes a gzip-coded answer body (RFC 9110 section 8.4.1.3) as its bytes arrive,
 * into a buffer that never grows past a limit: a small body that inflates to gigabytes (a "gzip
 * bomb") fails as soon as the decoded bytes pass the limit, after reading little of it.
 *
 * zlib's inflate directly, not libh2o's gunzip: h2o_compress_gunzip_open() inflates all that a
 * chunk of input holds into buffers of its own, with no limit on the output.
 */
#ifndef GD_GUNZIP_H
#define GD_GUNZIP_H

#include <stddef.h>

#include "base/buf.h"

typedef struct gd_gunzip gd_gunzip_t;

enum {
    GD_GUNZIP_MORE = 0, /* the body is not over: feed more */
    GD_GUNZIP_DONE = 1, /* the last gzip member ended with the input given */
};

/** A decoder whose output may be at most @max_bytes long. Never fails (aborts without memory). */
gd_gunzip_t *gd_gunzip_new(size_t max_bytes);
/** Frees @gz (NULL is a no-op). Returns NULL. */
gd_gunzip_t *gd_gunzip_free(gd_gunzip_t *gz);
/**
 * Decodes the next @len bytes of the coded body. Returns GD_GUNZIP_MORE, GD_GUNZIP_DONE once a
 * member has ended exactly at the end of the input so far (another member may follow: keep
 * feeding, and call gd_gunzip_finish() when the body ends), -E2BIG when the output passed the
 * limit, -EPROTO when the bytes are not gzip.
 */
int gd_gunzip_feed(gd_gunzip_t *gz, const void *bytes, size_t len);
/**
 * The body has ended: returns the decoded bytes as a new buffer (the caller's reference), or
 * NULL when the coded body was cut short (no complete member at its end).
 */
gd_buf_t *gd_gunzip_finish(gd_gunzip_t *gz);
/** Decoded bytes so far. */
size_t gd_gunzip_size(const gd_gunzip_t *gz);

#endif
