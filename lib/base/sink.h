/*
 * gd_sink: writing into a buffer that may be too small, the length counting on regardless, so
 * that a first pass with cap 0 sizes the buffer and a second one fills it (the snprintf()
 * convention, for the writers of merged answers and Postgres array literals).
 */
#ifndef GD_SINK_H
#define GD_SINK_H

#include <stddef.h>
#include <string.h>

typedef struct gd_sink {
    char *buf;
    size_t cap, len;
} gd_sink_t;

/** Appends @n bytes of @s, as many as fit; counts them all. */
static inline void gd_sink_put(gd_sink_t *o, const char *s, size_t n)
{
    if (o->len < o->cap)
        memcpy(o->buf + o->len, s, o->len + n <= o->cap ? n : o->cap - o->len);
    o->len += n;
}

#endif
