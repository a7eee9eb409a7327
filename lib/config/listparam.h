/*
 * A list parameter's value ("int_list", "string_list"): the items of every occurrence in the
 * query string, each split at commas (?ids=1,2,3 and ?ids=1&ids=2&ids=3 are the same list),
 * written as one Postgres array literal, "{1,2,3}" or "{"a","b\"c"}", which a SQL call binds
 * as one parameter (WHERE id = ANY($1::bigint[])). An empty value is no item; an empty item
 * between commas, an int item that is not a signed 64-bit integer, or more than the
 * parameter's max_items items is the client's error.
 */
#ifndef GD_LISTPARAM_H
#define GD_LISTPARAM_H

#include <stddef.h>

#include "base/sink.h"
#include "config/config.h"

typedef struct gd_list_writer {
    /* private */
    const gd_param_t *_param;
    gd_sink_t _out;
    size_t _nitems;
} gd_list_writer_t;

/** Starts the literal of @p into @buf (@cap bytes; 0 to size it first). */
void gd_list_begin(gd_list_writer_t *w, const gd_param_t *p, char *buf, size_t cap);
/**
 * Adds the items of one occurrence, @text (@len bytes, percent-decoded). Returns 0, or -EINVAL
 * with a message for the client in @err.
 */
int gd_list_add(gd_list_writer_t *w, const char *text, size_t len, char *err, size_t errlen);
/** Ends the literal; returns its full length (what @cap needed, without a NUL, which it adds when there is room). */
size_t gd_list_end(gd_list_writer_t *w);
/** One occurrence's literal, into @buf: its length, or -EINVAL with @err (a default's check). */
long gd_param_list_literal(const gd_param_t *p, const char *text, size_t len, char *buf, size_t cap,
                           char *err, size_t errlen);

#endif
