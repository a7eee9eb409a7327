/*
 * gd_pgarray: a JSON array as the text of a Postgres array (an array value's external form,
 * "{1,2,3}"), so that a list from one call's result is bound as one parameter of a query
 * (WHERE id = ANY($1::bigint[])) instead of one query per element.
 */
#ifndef GD_PGARRAY_H
#define GD_PGARRAY_H

#include <stddef.h>

/**
 * Writes the Postgres array literal of the JSON array @json (@len bytes that gd_json_is_valid()
 * accepted) into @buf, at most @cap bytes, no NUL; returns the full length, so a first call with
 * @cap 0 sizes the buffer. Elements: null as NULL, numbers as written, true and false as such,
 * strings decoded and always double-quoted with '"' and '\' backslash-escaped (so "NULL" and ""
 * stay strings), arrays as nested arrays, objects as their JSON text in quotes (for jsonb[]).
 * Returns 0 when @json is not an array.
 */
size_t gd_pgarray_encode(const char *json, size_t len, char *buf, size_t cap);

#endif
