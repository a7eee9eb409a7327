#include "front/limit.h"

#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

static void add_field(h2o_req_t *req, const char *name, const char *value)
{
    size_t len = strlen(value);
    char *v = h2o_mem_alloc_pool(&req->pool, len + 1);

    memcpy(v, value, len + 1);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, v, len);
}

int gd_limit_check(const gd_endpoint_conf_t *ep, h2o_req_t *req, const char *client,
                   const json_t *claims, uint64_t now_ms, uint64_t *ret_retry_after_s)
{
    const gd_rate_limit_conf_t *rl = ep->rate_limit;
    char keybuf[2 * SHA256_DIGEST_LENGTH + 1 + 24];
    const char *key = client;
    size_t key_len = strlen(client);
    gd_ratelimit_result_t res;
    char n[32];

    if (rl == NULL)
        return 0;
    if (rl->key == GD_RATE_KEY_API_KEY) {
        /* The key itself is a secret: the table keeps its hash only. */
        ssize_t i = h2o_find_header_by_str(&req->headers, ep->auth->api_key_header,
                                           strlen(ep->auth->api_key_header), -1);
        if (i >= 0) {
            unsigned char d[SHA256_DIGEST_LENGTH];
            SHA256((const unsigned char *)req->headers.entries[i].value.base,
                   req->headers.entries[i].value.len, d);
            for (size_t k = 0; k < sizeof(d); k++)
                snprintf(keybuf + 2 * k, 3, "%02x", d[k]);
            key = keybuf;
            key_len = 2 * sizeof(d);
        }
    } else if (rl->key == GD_RATE_KEY_JWT) {
        json_t *c = json_object_get(claims, rl->claim);
        if (json_is_string(c)) {
            key = json_string_value(c);
            key_len = json_string_length(c);
        } else if (json_is_integer(c)) {
            key_len = (size_t)snprintf(keybuf, sizeof(keybuf), "%" JSON_INTEGER_FORMAT,
                                       json_integer_value(c));
            key = keybuf;
        }
        /* else: the token lacks the claim; such tokens share the client address's bucket */
    }
    gd_ratelimit_take(rl->limiter, key, key_len, now_ms, &res);
    add_field(req, "ratelimit-limit", rl->limit_header);
    snprintf(n, sizeof(n), "%llu", (unsigned long long)res.remaining);
    add_field(req, "ratelimit-remaining", n);
    snprintf(n, sizeof(n), "%llu", (unsigned long long)((res.reset_ms + 999) / 1000));
    add_field(req, "ratelimit-reset", n);
    if (res.is_allowed)
        return 0;
    *ret_retry_after_s = (res.retry_after_ms + 999) / 1000;
    if (*ret_retry_after_s == 0)
        *ret_retry_after_s = 1;
    return 1;
}
