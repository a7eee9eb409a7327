/*
 * gd_trace: request ids (X-Request-Id) and W3C trace context (traceparent). An incoming id is
 * kept when it is plausible, otherwise one is made; a traceparent is passed on to every call
 * with the same trace id and a new span id of its own (W3C Trace Context, section 3.2).
 */
#ifndef GD_TRACE_H
#define GD_TRACE_H

#include <stdbool.h>
#include <stddef.h>

#define GD_TRACE_REQUEST_ID_MAX 128
#define GD_TRACE_TRACEPARENT_LEN 55 /* "00-" 32 hex "-" 16 hex "-" 2 hex */

/**
 * Whether @s (@len bytes) may be used as a request id: 1 to GD_TRACE_REQUEST_ID_MAX of
 * A-Z a-z 0-9 and - _ . : / + = @ (what common generators emit, nothing that could break a
 * header or a log line).
 */
bool gd_trace_is_valid_request_id(const char *s, size_t len);
/** Writes a new random request id of 32 lower-case hex digits and a NUL to @out. */
void gd_trace_new_request_id(char out[33]);

typedef struct gd_traceparent {
    char trace_id[33];
    char flags[3];
} gd_traceparent_t;

/**
 * Parses a traceparent header value (version 00; for a higher version only its first four
 * fields, as the spec asks). Returns 0, or -EINVAL when it is malformed or its ids are all zero.
 */
int gd_trace_parse(const char *s, size_t len, gd_traceparent_t *ret);
/** Writes the traceparent of a new child span of @parent and a NUL to @out. */
void gd_trace_child(const gd_traceparent_t *parent, char out[GD_TRACE_TRACEPARENT_LEN + 1]);

#endif
