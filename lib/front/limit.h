/*
 * gd_limit: per-client rate limits ("client_rate_limit"): which bucket a request takes a token
 * from (the client's address, its API key, or a claim of its JWT), and the RateLimit-Limit,
 * -Remaining and -Reset fields (draft-ietf-httpapi-ratelimit-headers) on its answer.
 */
#ifndef GD_LIMIT_H
#define GD_LIMIT_H

#include <stdint.h>

#include <h2o.h>
#include <jansson.h>

#include "config/config.h"

/**
 * Takes a token for @req under @ep's rate limit (none: 0) at @now_ms, keyed as the limit says:
 * @client, the API key of @req (hashed), or the claim of @claims (the client's address when the
 * token lacks it). Adds the RateLimit-* fields to the answer. Returns 0, or 1 when the request is
 * over the limit, with the seconds to wait in *@ret_retry_after_s (at least 1).
 */
int gd_limit_check(const gd_endpoint_conf_t *ep, h2o_req_t *req, const char *client,
                   const json_t *claims, uint64_t now_ms, uint64_t *ret_retry_after_s);

#endif
