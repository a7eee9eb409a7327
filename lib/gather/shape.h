/*
 * gd_shape: the answer of an endpoint with a "response" template: the template's JSON with its
 * references evaluated (gather/eval.h) over the call results, and "errors" as the last key of
 * an object answer when calls failed, unless the template places "{errors}" itself.
 */
#ifndef GD_SHAPE_H
#define GD_SHAPE_H

#include <stdbool.h>

#include "config/config.h"
#include "gather/eval.h"
#include "sources/call.h"

/**
 * Appends the answer of @endpoint (which has a response) for @results (one per call, settled)
 * and the request's parameter @values to @out. With @is_detailed, error entries carry each
 * call's own message. The same inputs give the same bytes.
 */
void gd_shape_body(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results,
                   const gd_strv_t *values, bool is_detailed, gd_jbuf_t *out);

#endif
