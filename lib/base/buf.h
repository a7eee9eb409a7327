/*
 * gd_buf: an immutable, reference-counted byte buffer. A call's result body is one: the call
 * owns a reference, and whoever else keeps the bytes (a merged answer being written, later a
 * cache entry or the followers of a coalesced call) takes a reference of its own instead of a
 * copy. Not thread-safe: a buffer belongs to one event-loop thread.
 */
#ifndef GD_BUF_H
#define GD_BUF_H

#include <stddef.h>

typedef struct gd_buf {
    /* read-only */
    size_t len;
    char *bytes;
    /* private */
    size_t _refcnt; /* 0: a static buffer, never freed */
} gd_buf_t;

/** "null": the document of a call that answered nothing (HEAD, 204, a missing optional row). */
extern gd_buf_t gd_buf_null;

/** A new buffer of @len bytes (the caller fills them before sharing it), one reference. */
gd_buf_t *gd_buf_new(size_t len);
/** A new buffer that takes @bytes (from malloc(); freed with the buffer), one reference. */
gd_buf_t *gd_buf_take(char *bytes, size_t len);
/** A new buffer holding a copy of @bytes, one reference. */
gd_buf_t *gd_buf_new_copy(const void *bytes, size_t len);
/** Takes another reference to @buf (NULL is a no-op) and returns it. */
gd_buf_t *gd_buf_ref(gd_buf_t *buf);
/** Drops a reference to @buf (NULL is a no-op); the last one frees it. Returns NULL. */
gd_buf_t *gd_buf_unref(gd_buf_t *buf);

#endif
