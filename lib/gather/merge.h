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

typedef enum gd_call_outcome {
    GD_CALL_OK = 0,
    GD_CALL_TIMEOUT,      /* the call's timeout or the endpoint deadline passed */
    GD_CALL_CONNECT,      /* refused, unreachable, DNS, connect timeout */
    GD_CALL_IO,           /* the connection broke, or broken HTTP */
    GD_CALL_STATUS,       /* non-2xx status */
    GD_CALL_INVALID_JSON, /* the body is not one JSON document */
    GD_CALL_TOO_LARGE,    /* the body is over max_body_bytes */
    GD_CALL_CANCELLED,    /* stopped because the request went away or the server shut down */
    GD_CALL_POOL_TIMEOUT, /* no Postgres connection became free within acquire_timeout_ms */
    GD_CALL_SQL,          /* the server reported an error (sqlstate set), or a row-count rule broke */
    GD_CALL_UNAVAILABLE,  /* no Postgres connection is up: failed fast */
    GD_CALL_NOT_FOUND,    /* "row": "one" found no row: null; a 404 when the call is required */
} gd_call_outcome_t;

#define GD_CALL_MESSAGE_MAX 160

typedef struct gd_call_result {
    gd_call_outcome_t outcome;
    int status;           /* the upstream's HTTP status when one arrived, else 0 */
    const char *body;     /* GD_CALL_OK: the validated JSON document, borrowed from the call */
    size_t body_len;
    char message[GD_CALL_MESSAGE_MAX]; /* a human message, for failures */
    char sqlstate[6];     /* GD_CALL_SQL from the server: its SQLSTATE, else "" */
    uint64_t elapsed_ms;
} gd_call_result_t;

/** The error kind's name as in the answer ("timeout", "connect", ...). */
const char *gd_call_outcome_name(gd_call_outcome_t outcome);

/**
 * The status of the answer for @results (one per call of @endpoint, in config order): 200 when
 * every required call succeeded; otherwise the first failed required call decides: 504 for a
 * timeout, the upstream's status for a 4xx, 503 when cancelled, 502 for the rest.
 */
int gd_merge_status(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results);
/** Whether every call, optional or not, succeeded. */
bool gd_merge_is_complete(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results);
/**
 * Writes the merged body into @buf (at most @cap bytes, no NUL) and returns its full length, so
 * a first call with @cap 0 sizes the buffer.
 */
size_t gd_merge_body(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results, char *buf,
                     size_t cap);
#endif
