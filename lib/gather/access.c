#include "gather/access.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "base/util.h"
#include "ops/log.h"

/* Counts result @r of call @i of @ep (one item of it, for a for_each). */
static void count_call(gd_metrics_t *metrics, const gd_endpoint_conf_t *ep, size_t i,
                       const gd_call_result_t *r)
{
    if (r->outcome == GD_OUTCOME_SKIPPED)
        return; /* it never ran: nothing to count */
    gd_metrics_count_call(metrics, ep, i, r->outcome,
                          r->outcome == GD_OUTCOME_STATUS ? r->status : 0, r->elapsed_ms * 1000);
    if (r->cache == GD_CALL_CACHE_HIT || r->cache == GD_CALL_CACHE_SHARED_HIT)
        gd_metrics_count_cache_use(metrics, ep, i, GD_METRICS_CACHE_HIT);
    else if (r->cache == GD_CALL_CACHE_MISS)
        gd_metrics_count_cache_use(metrics, ep, i, GD_METRICS_CACHE_MISS);
    else if (r->cache == GD_CALL_COALESCED)
        gd_metrics_count_cache_use(metrics, ep, i, GD_METRICS_CACHE_COALESCED);
}

void gd_access_count_calls(gd_metrics_t *metrics, const gd_endpoint_conf_t *ep,
                           const gd_call_result_t *results)
{
    for (size_t i = 0; results != NULL && i < ep->ncalls; i++) {
        const gd_call_result_t *r = &results[i];
        /* a for_each call that ran: each item was a call to the upstream of its own */
        for (size_t k = 0; k < r->nitems; k++)
            count_call(metrics, ep, i, &r->items[k]);
        if (r->nitems == 0)
            count_call(metrics, ep, i, r);
    }
}

void gd_access_count(gd_metrics_t *metrics, const gd_access_t *a)
{
    uint64_t duration_us = (uv_hrtime() - a->started_at_ns) / 1000;

    gd_metrics_count_request(metrics, a->endpoint, a->status, duration_us);
    gd_access_count_calls(metrics, a->endpoint, a->results);
}

/* How a call with "cache" got its result, for the access line ("" for a call without one, or
 * one that made the exchange). */
static const char *cache_mark(const gd_call_result_t *r)
{
    switch (r->cache) {
    case GD_CALL_CACHE_HIT:
        return "hit";
    case GD_CALL_CACHE_SHARED_HIT:
        return "shared_hit";
    case GD_CALL_COALESCED:
        return "coalesced";
    default:
        return "";
    }
}

/* The upstream status worth showing beside @r's outcome: that of a failure of kind status, or of
 * a success that null_on made of an error status; 0 for none. */
static int shown_status(const gd_call_result_t *r)
{
    if (r->outcome == GD_OUTCOME_STATUS ||
        (r->outcome == GD_OUTCOME_OK && r->status != 0 && (r->status < 200 || r->status > 299)))
        return r->status;
    return 0;
}

/* "user:ok:3,posts:status:503:12:a3,profile:ok:404:2" (text: the upstream status follows the
 * outcome when shown_status() has one; ":aN" ends a call that made N > 1 attempts, ":hit" or
 * ":coalesced" one answered by the cache or by an identical call in flight) or
 * {"user":{"outcome":"ok","ms":3},"posts":{"outcome":"status","status":503,"attempts":3,
 * "ms":12},...} (JSON). */
static size_t describe_calls(const gd_endpoint_conf_t *ep, const gd_call_result_t *results,
                             char *buf, size_t cap)
{
    size_t len = 0;
    bool is_json = gd_log_is_json();

    if (is_json)
        len += (size_t)snprintf(buf + len, cap - len, "{");
    for (size_t i = 0; i < ep->ncalls && len < cap; i++) {
        const char *outcome = gd_outcome_name(results[i].outcome);
        int status = shown_status(&results[i]);
        char st[24] = "";
        if (status != 0)
            snprintf(st, sizeof(st), is_json ? "\"status\":%d," : ":%d", status);
        char at[48] = "";
        size_t atn = 0;
        if (results[i].attempts > 1)
            atn = (size_t)snprintf(at, sizeof(at), is_json ? "\"attempts\":%u," : ":a%u",
                                   results[i].attempts);
        if (*cache_mark(&results[i]) != '\0')
            snprintf(at + atn, sizeof(at) - atn, is_json ? "\"cache\":\"%s\"," : ":%s",
                     cache_mark(&results[i]));
        if (is_json)
            len += (size_t)snprintf(
                buf + len, cap - len, "%s%s:{\"outcome\":\"%s\",%s%s\"ms\":%" PRIu64 "}",
                i == 0 ? "" : ",", ep->calls[i].name_json, outcome, st, at, results[i].elapsed_ms);
        else
            len +=
                (size_t)snprintf(buf + len, cap - len, "%s%s:%s%s:%" PRIu64 "%s", i == 0 ? "" : ",",
                                 ep->calls[i].name, outcome, st, results[i].elapsed_ms, at);
    }
    if (is_json && len < cap)
        len += (size_t)snprintf(buf + len, cap - len, "}");
    return len < cap ? len : 0; /* too long to describe: leave it out rather than cut JSON */
}

/* The detail of each failed call, which the public answer leaves out: hosts, addresses,
 * server messages. One warn line per failure, with the request id to find the access line. */
static void log_failure(const char *request_id, const gd_endpoint_conf_t *ep, const char *call,
                        const gd_call_result_t *r)
{
    if (r->outcome == GD_OUTCOME_OK || r->outcome == GD_OUTCOME_CANCELLED ||
        r->outcome == GD_OUTCOME_SKIPPED)
        return;
    gd_log_field_t fields[] = {
        {.key = "request_id", .type = GD_LOG_STR, .str = request_id, .str_len = SIZE_MAX},
        {.key = "route", .type = GD_LOG_STR, .str = ep->path, .str_len = SIZE_MAX},
        {.key = "call", .type = GD_LOG_STR, .str = call, .str_len = SIZE_MAX},
        {.key = "kind", .type = GD_LOG_STR, .str = gd_outcome_name(r->outcome), .str_len = SIZE_MAX},
        {.key = "status", .type = GD_LOG_INT, .i = r->status},
        {.key = "sqlstate", .type = GD_LOG_STR, .str = r->sqlstate, .str_len = SIZE_MAX},
        {.key = "elapsed_ms", .type = GD_LOG_INT, .i = (long long)r->elapsed_ms},
        {.key = "detail", .type = GD_LOG_STR, .str = r->message, .str_len = SIZE_MAX},
    };
    gd_log_event(GD_LOG_WARN, "call failed", fields, GD_ARRAY_SIZE(fields));
}

void gd_access_log_failures(const char *request_id, const gd_endpoint_conf_t *ep,
                            const gd_call_result_t *results)
{
    char name[160];

    for (size_t i = 0; results != NULL && gd_log_max_level >= GD_LOG_WARN && i < ep->ncalls; i++) {
        const gd_call_result_t *r = &results[i];
        /* a for_each call's failed items, each as "name[i]", as the answer's errors say */
        for (size_t k = 0; k < r->nitems; k++) {
            snprintf(name, sizeof(name), "%s[%zu]", ep->calls[i].name, k);
            log_failure(request_id, ep, name, &r->items[k]);
        }
        if (r->nitems == 0)
            log_failure(request_id, ep, ep->calls[i].name, r);
    }
}

void gd_access_log(const gd_access_t *a)
{
    const gd_endpoint_conf_t *ep = a->endpoint;

    gd_access_log_failures(a->request_id, ep, a->results);
    if (gd_log_max_level < GD_LOG_INFO)
        return;
    char calls[2048];
    size_t calls_len =
        a->results != NULL ? describe_calls(ep, a->results, calls, sizeof(calls)) : 0;
    double duration_ms = (double)(uv_hrtime() - a->started_at_ns) / 1e6;
    /* Both come from the client: cut to a length that keeps a line a line. */
    size_t method_len = a->method.len < 32 ? a->method.len : 32;
    size_t path_len = a->path.len < GD_ACCESS_PATH_MAX ? a->path.len : GD_ACCESS_PATH_MAX;
    gd_log_field_t fields[] = {
        {.key = "request_id", .type = GD_LOG_STR, .str = a->request_id, .str_len = SIZE_MAX},
        {.key = "method", .type = GD_LOG_STR, .str = a->method.base, .str_len = method_len},
        {.key = "route",
         .type = GD_LOG_STR,
         .str = ep != NULL ? ep->path : "-",
         .str_len = SIZE_MAX},
        {.key = "path", .type = GD_LOG_STR, .str = a->path.base, .str_len = path_len},
        {.key = "client",
         .type = GD_LOG_STR,
         .str = a->client != NULL ? a->client : "-",
         .str_len = SIZE_MAX},
        {.key = "status", .type = GD_LOG_INT, .i = a->status},
        {.key = "duration_ms", .type = GD_LOG_MS, .ms = duration_ms},
        {.key = "bytes", .type = GD_LOG_INT, .i = (long long)a->bytes},
        {.key = "complete", .type = GD_LOG_STR, .str = a->complete, .str_len = SIZE_MAX},
        {.key = "calls", .type = GD_LOG_JSON, .str = calls, .str_len = calls_len},
    };

    gd_log_event(GD_LOG_INFO, "access", fields, GD_ARRAY_SIZE(fields) - (calls_len == 0 ? 1 : 0));
}

void gd_access_record(gd_metrics_t *metrics, const gd_access_t *a)
{
    gd_access_count(metrics, a);
    gd_access_log(a);
}
