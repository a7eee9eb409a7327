/*
 * gd_merge: turns the outcomes of an endpoint's calls into the answer: the status (required vs
 * optional calls, 504/502/4xx rules), completeness, and the merged JSON body with one key per
 * call in config order and "errors" last, so the same inputs always give the same bytes.
 */
#ifndef GD_MERGE_H
#define GD_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "sources/call.h"

/**
 * Applies @call's "null_on" to its result @r: a failure of kind status with one of those
 * statuses becomes a success whose value is null (the body gd_buf_null, borrowed), the status
 * kept. @r is a copy the caller owns (the call keeps its own result and body).
 */
void gd_merge_settle(const gd_call_conf_t *call, gd_call_result_t *r);
/**
 * The status of the answer for @results (one per call of @endpoint, in config order): 200 when
 * every required call succeeded; otherwise the first failed required call decides: for kind
 * status the call's "status_map" entry of the upstream's status if any, else that status for a
 * 4xx and 502 for others; 504 for a timeout, 404 for a missing row, 502 for the rest. Calls of
 * kind dependency decide only when no other required call failed (502).
 */
int gd_merge_status(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results);
/**
 * Whether @r, the result of one item of @call's "for_each", failed: as a call's would (an
 * optional call's missing row, and a skipped item, are not failures).
 */
bool gd_merge_is_item_failure(const gd_call_conf_t *call, const gd_call_result_t *r);
/** Whether every call, optional or not, succeeded, and every item of every for_each call. */
bool gd_merge_is_complete(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results);
/**
 * Writes the merged body into @buf (at most @cap bytes, no NUL) and returns its full length, so
 * a first call with @cap 0 sizes the buffer. Each error says what failed with a fixed text per
 * kind; with @is_detailed (expose_error_details) it carries the call's own message instead,
 * which may name hosts and server messages.
 */
size_t gd_merge_body(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results,
                     bool is_detailed, char *buf, size_t cap);
/**
 * Writes the "errors" object of @results ({"call":{"kind":...},...}, failed calls in config
 * order, a for_each call's failed items as "call[i]" in item order; {} when none failed) into @buf like gd_merge_body(), and returns its full length.
 */
size_t gd_merge_errors(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results,
                       bool is_detailed, char *buf, size_t cap);
#endif
