/*
 * gd_limit: per-client rate limits ("client_rate_limit"): which bucket a request takes a token
 * from (the client's address, its API key, or a claim of its JWT), and the RateLimit-Limit,
 * -Remaining and -Reset fields (draft-ietf-httpapi-ratelimit-headers) on its answer.
 *
 * A limit of "scope": "cluster" keeps its buckets in Redis for every replica: a GCRA in one
 * round trip (sources/redis/gcra.h), the request's admission waiting for the answer on the
 * loop. While Redis is down, or when the answer does not come within redis.timeout_ms, the
 * local buckets at redis.local_share of the rate decide instead.
 */
#ifndef GD_LIMIT_H
#define GD_LIMIT_H

#include <stdint.h>

#include <h2o.h>
#include <jansson.h>

#include "config/config.h"
#include "sources/redis/gcra.h"

typedef struct gd_limit_ask gd_limit_ask_t;
/** Reports a cluster decision: @over 0 (go on) or 1 with the seconds to wait (at least 1). */
typedef void (*gd_limit_cb)(gd_limit_ask_t *ask, int over, uint64_t retry_after_s);

/* One request's ask of a cluster limit (caller-owned storage, zeroed, living with the request). */
struct gd_limit_ask {
    /* private */
    gd_gcra_ask_t _gcra;
    const gd_rate_limit_conf_t *_rl;
    h2o_req_t *_req;
    const char *_key; /* the local bucket's key, in the request's pool */
    size_t _key_len;
    uint64_t _now_ms;
    struct gd_redis_stats *_stats;
    gd_limit_cb _cb;
};

/* What gd_limit_check() may return besides 0 and 1. */
enum { GD_LIMIT_ASKING = 2 };

/**
 * Takes a token for @req under @ep's rate limit (none: 0) at @now_ms, keyed as the limit says:
 * @client, the API key of @req (hashed), or the claim of @claims (the client's address when the
 * token lacks it). Adds the RateLimit-* fields to the answer. Returns 0, or 1 when the request is
 * over the limit, with the seconds to wait in *@ret_retry_after_s (at least 1).
 * A cluster-scoped limit with @redis (the worker's; NULL: decided locally) returns
 * GD_LIMIT_ASKING instead: @cb reports through @ask, never from inside this call, by
 * @deadline_ms (gd_timers_now() base) or redis.timeout_ms, whichever comes first.
 */
int gd_limit_check(const gd_endpoint_conf_t *ep, h2o_req_t *req, const char *client,
                   const json_t *claims, uint64_t now_ms, gd_redis_t *redis, uint64_t deadline_ms,
                   gd_limit_ask_t *ask, gd_limit_cb cb, uint64_t *ret_retry_after_s);
/** Whether @ask waits for Redis's answer. */
bool gd_limit_is_asking(const gd_limit_ask_t *ask);
/** Stops @ask's wait, if any: no report follows. */
void gd_limit_cancel(gd_limit_ask_t *ask);

#endif
