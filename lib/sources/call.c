#include "sources/call.h"

#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "base/util.h"
#include "sources/cache.h"

const char *const gd_outcome_names[GD_OUTCOME_COUNT] = {
    [GD_OUTCOME_OK] = "ok",
    [GD_OUTCOME_TIMEOUT] = "timeout",
    [GD_OUTCOME_CONNECT] = "connect",
    [GD_OUTCOME_IO] = "io",
    [GD_OUTCOME_STATUS] = "status",
    [GD_OUTCOME_INVALID_JSON] = "invalid_json",
    [GD_OUTCOME_TOO_LARGE] = "too_large",
    [GD_OUTCOME_CANCELLED] = "cancelled",
    [GD_OUTCOME_POOL_TIMEOUT] = "pool_timeout",
    [GD_OUTCOME_SQL] = "sql",
    [GD_OUTCOME_UNAVAILABLE] = "unavailable",
    [GD_OUTCOME_NOT_FOUND] = "not_found",
    [GD_OUTCOME_TLS] = "tls",
    [GD_OUTCOME_CIRCUIT_OPEN] = "circuit_open",
    [GD_OUTCOME_RATE_LIMITED] = "rate_limited",
    [GD_OUTCOME_IN_FLIGHT_TIMEOUT] = "in_flight_timeout",
    [GD_OUTCOME_DEPENDENCY] = "dependency",
    [GD_OUTCOME_SKIPPED] = "skipped",
};

static const char *const public_messages[GD_OUTCOME_COUNT] = {
    [GD_OUTCOME_OK] = "ok",
    [GD_OUTCOME_TIMEOUT] = "the call timed out",
    [GD_OUTCOME_CONNECT] = "the service could not be reached",
    [GD_OUTCOME_IO] = "the connection to the service broke",
    [GD_OUTCOME_STATUS] = "the service answered with an error status",
    [GD_OUTCOME_INVALID_JSON] = "the service's answer is not valid JSON",
    [GD_OUTCOME_TOO_LARGE] = "the service's answer is too large",
    [GD_OUTCOME_CANCELLED] = "the call was cancelled",
    [GD_OUTCOME_POOL_TIMEOUT] = "no database connection became free in time",
    [GD_OUTCOME_SQL] = "the database reported an error",
    [GD_OUTCOME_UNAVAILABLE] = "the database is unavailable",
    [GD_OUTCOME_NOT_FOUND] = "no row was found",
    [GD_OUTCOME_TLS] = "the secure connection to the service failed",
    [GD_OUTCOME_CIRCUIT_OPEN] = "the service is failing: calls to it are paused",
    [GD_OUTCOME_RATE_LIMITED] = "the calls to the service are over their rate limit",
    [GD_OUTCOME_IN_FLIGHT_TIMEOUT] = "too many calls to the service are under way",
    [GD_OUTCOME_DEPENDENCY] = "the call could not run: something it needs is missing",
    [GD_OUTCOME_SKIPPED] = "the call was skipped",
};

const char *gd_outcome_name(gd_outcome_t outcome)
{
    return outcome < GD_OUTCOME_COUNT ? gd_outcome_names[outcome] : "unknown";
}

const char *gd_outcome_public_message(gd_outcome_t outcome)
{
    return outcome < GD_OUTCOME_COUNT ? public_messages[outcome] : "the call failed";
}

int gd_call_prepare(gd_call_t *call, const gd_call_ops_t *ops, const gd_call_conf_t *conf,
                    const gd_call_input_t *in, char *err, size_t errlen)
{
    call->ops = ops;
    call->conf = conf;
    call->result = (gd_call_result_t){.outcome = GD_OUTCOME_CANCELLED, .max_age_ms = -1};
    return ops->prepare(call, conf, in, err, errlen);
}

void gd_call_start(gd_call_t *call, const gd_source_t *source, gd_group_t *group)
{
    GD_REQUIRE(call->ops == source->ops);
    call->result = (gd_call_result_t){.outcome = GD_OUTCOME_CANCELLED, .max_age_ms = -1};
    if (source->flights != NULL && call->conf != NULL && call->conf->cache.ttl_ms > 0) {
        gd_cached_call_start(source->flights, call, source, group);
        return;
    }
    source->ops->start(source->instance, call, group);
}

bool gd_call_is_done(const gd_call_t *call)
{
    return gd_task_is_done(&call->_task);
}

void gd_call_report(gd_call_t *call)
{
    if (call->_is_flight_call) {
        gd__flight_done(call);
        return;
    }
    gd_task_done(&call->_task);
}

void gd_call_dispose(gd_call_t *call)
{
    if (call->ops == NULL)
        return; /* never prepared */
    call->ops->dispose(call);
    call->result.body = gd_buf_unref(call->result.body);
}

void gd_call_progress(const gd_call_t *call, gd_call_progress_t *ret)
{
    *ret = (gd_call_progress_t){.state = "pending", .attempt = 0};
    if (call->ops == NULL)
        return;
    if (call->_task._group == NULL) {
        /* never started: pending, unless it was settled without running */
        if (call->result.outcome == GD_OUTCOME_DEPENDENCY ||
            call->result.outcome == GD_OUTCOME_SKIPPED)
            ret->state = "done";
        return;
    }
    if (gd_task_is_done(&call->_task)) {
        ret->state = "done";
        ret->attempt = call->result.attempts > 0 ? call->result.attempts : 1;
        return;
    }
    if (call->ops->progress != NULL)
        call->ops->progress(call, ret);
    else
        ret->state = "running";
}

uint64_t gd_call_elapsed_ms(const gd_call_t *call)
{
    return (uv_hrtime() - call->started_at_ns) / 1000000;
}

/* Cuts a UTF-8 sequence that vsnprintf's limit split at the end of @s, so that the message stays
 * valid UTF-8 wherever it is quoted (a localized server message, a host name). */
static void trim_split_utf8(char *s)
{
    size_t len = strlen(s), i = len, cont = 0;

    while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80 && cont < 3) {
        i--;
        cont++;
    }
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
    if (lead >= 0xc0 && cont < need)
        s[i - 1] = '\0';
}

void gd_call_vfinish(gd_call_t *call, gd_outcome_t outcome, int status, const char *fmt, va_list ap)
{
    call->result.outcome = outcome;
    call->result.status = status;
    call->result.elapsed_ms = gd_call_elapsed_ms(call);
    if (fmt != NULL) {
        vsnprintf(call->result.message, sizeof(call->result.message), fmt, ap);
        trim_split_utf8(call->result.message);
    }
    gd_call_report(call);
}

void gd_call_finish(gd_call_t *call, gd_outcome_t outcome, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    gd_call_vfinish(call, outcome, status, fmt, ap);
    va_end(ap);
}
