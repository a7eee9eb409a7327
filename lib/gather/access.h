/*
 * gd_access: what every answered request leaves behind, whatever answered it (the merged answer,
 * an error of gatherd's own, a client that left): its count and duration in the thread's
 * metrics, the outcome of each call, and one access line in the log.
 */
#ifndef GD_ACCESS_H
#define GD_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include <h2o/memory.h>

#include "config/config.h"
#include "ops/metrics.h"
#include "sources/call.h"

#define GD_ACCESS_PATH_MAX 256

/* One answered request, as the access line tells it. Everything is borrowed for the call. */
typedef struct gd_access {
    const char *request_id;
    const char *client; /* the client's address (gd_client_identify()); NULL: "-" */
    h2o_iovec_t method, path;
    const gd_endpoint_conf_t *endpoint; /* NULL when no endpoint matched */
    int status;
    size_t bytes;                    /* of the answer's body */
    uint64_t started_at_ns;          /* uv_hrtime() at arrival */
    const char *complete;            /* "true", "false", or "-" for gatherd's own errors */
    const gd_call_result_t *results; /* one per call of the endpoint, or NULL */
} gd_access_t;

/** Counts @a in @metrics (the thread's), its calls included. */
void gd_access_count(gd_metrics_t *metrics, const gd_access_t *a);
/** Writes @a's access line (at info level), and a warn line per failed call with its detail. */
void gd_access_log(const gd_access_t *a);
/**
 * Counts the calls of @ep with @results (one per call, or NULL: nothing) in @metrics, a for_each
 * call's items one by one: what gd_access_count() does besides the request's own count, and
 * what a batch does for each of its runs.
 */
void gd_access_count_calls(gd_metrics_t *metrics, const gd_endpoint_conf_t *ep,
                           const gd_call_result_t *results);
/**
 * Writes a warn line per failed call of @ep in @results (NULL: none) with its detail and
 * @request_id, a for_each call's failed items as "name[i]": what gd_access_log() writes
 * besides the access line, and what a batch writes for each of its runs.
 */
void gd_access_log_failures(const char *request_id, const gd_endpoint_conf_t *ep,
                            const gd_call_result_t *results);
/** Both: what every answered request does once. */
void gd_access_record(gd_metrics_t *metrics, const gd_access_t *a);

#endif
