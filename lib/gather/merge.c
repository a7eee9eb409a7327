#include "gather/merge.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/sink.h"
#include "json/json.h"

/* An optional "row": "one" query that found no row answered null, which is not a failure: a
 * missing optional row is data. The same outcome on a required call is a 404. */
static bool is_failure(const gd_call_conf_t *call, const gd_call_result_t *r)
{
    if (r->outcome == GD_OUTCOME_OK || r->outcome == GD_OUTCOME_SKIPPED)
        return false;
    return !(r->outcome == GD_OUTCOME_NOT_FOUND && call->is_optional);
}

void gd_merge_settle(const gd_call_conf_t *call, gd_call_result_t *r)
{
    if (r->outcome != GD_OUTCOME_STATUS)
        return;
    for (size_t i = 0; i < call->nnull_on; i++) {
        if (call->null_on[i] == r->status) {
            r->outcome = GD_OUTCOME_OK; /* the status stays: the access line shows it */
            r->body = &gd_buf_null;
            r->message[0] = '\0';
            return;
        }
    }
}

/* The status @call's "status_map" gives upstream status @status, or 0 when it maps none. */
static int mapped_status(const gd_call_conf_t *call, int status)
{
    for (size_t i = 0; i < call->nstatus_map; i++)
        if (call->status_map[i].upstream_status == status)
            return call->status_map[i].answer_status;
    return 0;
}

int gd_merge_status(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results)
{
    bool has_dependency_failure = false;

    for (size_t i = 0; i < endpoint->ncalls; i++) {
        const gd_call_result_t *r = &results[i];
        if (endpoint->calls[i].is_optional || !is_failure(&endpoint->calls[i], r))
            continue;
        /* A call that could not run because another failed leaves the status to that one (a
         * missing user is a 404, not a 502 for the orders that needed it), wherever it is. */
        if (r->outcome == GD_OUTCOME_DEPENDENCY) {
            has_dependency_failure = true;
            continue;
        }
        switch (r->outcome) {
        case GD_OUTCOME_TIMEOUT:
            return 504;
        case GD_OUTCOME_CIRCUIT_OPEN:
        case GD_OUTCOME_RATE_LIMITED:
        case GD_OUTCOME_IN_FLIGHT_TIMEOUT:
            return 503;
        case GD_OUTCOME_STATUS: {
            /* The operator's map first: a 401 caused by the gateway's own API key is not the
             * browser user's to act on. */
            int mapped = mapped_status(&endpoint->calls[i], r->status);
            if (mapped != 0)
                return mapped;
            /* A missing user upstream is a missing user to the frontend. */
            return r->status >= 400 && r->status <= 499 ? r->status : 502;
        }
        case GD_OUTCOME_NOT_FOUND:
            return 404;
        default:
            return 502;
        }
    }
    return has_dependency_failure ? 502 : 200;
}

/* A "for_each" call that ran: some of its items failed (each is null and an error entry). */
static bool has_failed_items(const gd_call_result_t *r)
{
    return r->outcome == GD_OUTCOME_OK && r->nitems_failed > 0;
}

bool gd_merge_is_complete(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results)
{
    for (size_t i = 0; i < endpoint->ncalls; i++)
        if (is_failure(&endpoint->calls[i], &results[i]) || has_failed_items(&results[i]))
            return false;
    return true;
}

bool gd_merge_is_item_failure(const gd_call_conf_t *call, const gd_call_result_t *r)
{
    return is_failure(call, r);
}


static void put_str(gd_sink_t *o, const char *s)
{
    gd_sink_put(o, s, strlen(s));
}

/* The error entry of @r, keyed by @call's name, or "name[item]" for an item of a for_each
 * (@item SIZE_MAX: the call's own). */
static void put_error(gd_sink_t *o, const gd_call_conf_t *call, size_t item,
                      const gd_call_result_t *r, bool is_detailed)
{
    /* A dependency failure's message names only what the config does (a call, a reference):
     * it is always shown, so that a client can tell which value was missing. */
    const char *message = is_detailed || r->outcome == GD_OUTCOME_DEPENDENCY
                              ? r->message
                              : gd_outcome_public_message(r->outcome);
    char num[32];

    if (item == SIZE_MAX) {
        put_str(o, call->name_json);
    } else {
        /* the quoted name without its closing quote, then [i] */
        gd_sink_put(o, call->name_json, strlen(call->name_json) - 1);
        snprintf(num, sizeof(num), "[%zu]\"", item);
        put_str(o, num);
    }
    put_str(o, ":{\"kind\":\"");
    put_str(o, gd_outcome_name(r->outcome));
    put_str(o, "\",\"message\":");
    o->len += gd_json_quote(message, strlen(message), o->len < o->cap ? o->buf + o->len : NULL,
                            o->len < o->cap ? o->cap - o->len : 0);
    if (r->outcome == GD_OUTCOME_STATUS) {
        snprintf(num, sizeof(num), ",\"status\":%d", r->status);
        put_str(o, num);
    }
    if (r->outcome == GD_OUTCOME_SQL && r->sqlstate[0] != '\0') {
        put_str(o, ",\"sqlstate\":");
        o->len += gd_json_quote(r->sqlstate, strlen(r->sqlstate),
                                o->len < o->cap ? o->buf + o->len : NULL,
                                o->len < o->cap ? o->cap - o->len : 0);
    }
    if (r->attempts > 1) {
        snprintf(num, sizeof(num), ",\"attempts\":%u", r->attempts);
        put_str(o, num);
    }
    snprintf(num, sizeof(num), ",\"elapsed_ms\":%" PRIu64 "}", r->elapsed_ms);
    put_str(o, num);
}

size_t gd_merge_body(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results,
                     bool is_detailed, char *buf, size_t cap)
{
    gd_sink_t o = {buf, cap, 0};
    bool has_errors = false;

    gd_sink_put(&o, "{", 1);
    for (size_t i = 0; i < endpoint->ncalls; i++) {
        if (i != 0)
            gd_sink_put(&o, ",", 1);
        put_str(&o, endpoint->calls[i].name_json);
        gd_sink_put(&o, ":", 1);
        if (results[i].outcome == GD_OUTCOME_OK) {
            gd_sink_put(&o, results[i].body->bytes, results[i].body->len);
        } else {
            gd_sink_put(&o, "null", 4);
            has_errors |= is_failure(&endpoint->calls[i], &results[i]);
        }
        has_errors |= has_failed_items(&results[i]);
    }
    if (has_errors) {
        put_str(&o, ",\"errors\":");
        o.len += gd_merge_errors(endpoint, results, is_detailed, o.len < o.cap ? o.buf + o.len : NULL,
                                 o.len < o.cap ? o.cap - o.len : 0);
    }
    gd_sink_put(&o, "}", 1);
    return o.len;
}

size_t gd_merge_errors(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results,
                       bool is_detailed, char *buf, size_t cap)
{
    gd_sink_t o = {buf, cap, 0};
    bool is_first = true;

    gd_sink_put(&o, "{", 1);
    for (size_t i = 0; i < endpoint->ncalls; i++) {
        const gd_call_result_t *r = &results[i];
        for (size_t k = 0; has_failed_items(r) && k < r->nitems; k++) {
            if (!is_failure(&endpoint->calls[i], &r->items[k]))
                continue;
            if (!is_first)
                gd_sink_put(&o, ",", 1);
            is_first = false;
            put_error(&o, &endpoint->calls[i], k, &r->items[k], is_detailed);
        }
        if (!is_failure(&endpoint->calls[i], r))
            continue;
        if (!is_first)
            gd_sink_put(&o, ",", 1);
        is_first = false;
        put_error(&o, &endpoint->calls[i], SIZE_MAX, r, is_detailed);
    }
    gd_sink_put(&o, "}", 1);
    return o.len;
}
