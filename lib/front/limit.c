#include "front/limit.h"

#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/redis_stats.h"
#include "base/util.h"

static void add_field(h2o_req_t *req, const char *name, const char *value)
{
    size_t len = strlen(value);
    char *v = h2o_mem_alloc_pool(&req->pool, len + 1);

    memcpy(v, value, len + 1);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, v, len);
}

static void add_fields(h2o_req_t *req, const gd_rate_limit_conf_t *rl, uint64_t remaining,
                       uint64_t reset_ms)
{
    char n[32];

    add_field(req, "ratelimit-limit", rl->limit_header);
    snprintf(n, sizeof(n), "%llu", (unsigned long long)remaining);
    add_field(req, "ratelimit-remaining", n);
    snprintf(n, sizeof(n), "%llu", (unsigned long long)((reset_ms + 999) / 1000));
    add_field(req, "ratelimit-reset", n);
}

static uint64_t retry_after_s(uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;
    return s == 0 ? 1 : s;
}

/* The bucket's key of @req: into @keybuf (2 * SHA256_DIGEST_LENGTH + 25 bytes) or borrowed
 * from @client / @claims. */
static const char *bucket_key(const gd_endpoint_conf_t *ep, h2o_req_t *req, const char *client,
                              const json_t *claims, char *keybuf, size_t *ret_len)
{
    const gd_rate_limit_conf_t *rl = ep->rate_limit;
    const char *key = client;

    *ret_len = strlen(client);
    if (rl->key == GD_RATE_KEY_API_KEY) {
        /* The key itself is a secret: the table keeps its hash only. */
        ssize_t i = h2o_find_header_by_str(&req->headers, ep->auth->api_key_header,
                                           strlen(ep->auth->api_key_header), -1);
        if (i >= 0) {
            unsigned char d[SHA256_DIGEST_LENGTH];
            SHA256((const unsigned char *)req->headers.entries[i].value.base,
                   req->headers.entries[i].value.len, d);
            gd_hex_encode(d, sizeof(d), keybuf);
            key = keybuf;
            *ret_len = 2 * sizeof(d);
        }
    } else if (rl->key == GD_RATE_KEY_JWT) {
        json_t *c = json_object_get(claims, rl->claim);
        if (json_is_string(c)) {
            key = json_string_value(c);
            *ret_len = json_string_length(c);
        } else if (json_is_integer(c)) {
            *ret_len = (size_t)snprintf(keybuf, 2 * SHA256_DIGEST_LENGTH + 25,
                                        "%" JSON_INTEGER_FORMAT, json_integer_value(c));
            key = keybuf;
        }
        /* else: the token lacks the claim; such tokens share the client address's bucket */
    }
    return key;
}

static int take_local(const gd_rate_limit_conf_t *rl, h2o_req_t *req, const char *key,
                      size_t key_len, uint64_t now_ms, uint64_t *ret_retry_after_s)
{
    gd_ratelimit_result_t res;

    gd_ratelimit_take(rl->limiter, key, key_len, now_ms, &res);
    add_fields(req, rl, res.remaining, res.reset_ms);
    if (res.is_allowed)
        return 0;
    *ret_retry_after_s = retry_after_s(res.retry_after_ms);
    return 1;
}

/* The longest client key put in a Redis key as it is; a longer one goes as its hash. */
#define MAX_PLAIN_KEY 128

static void on_cluster_answer(gd_gcra_ask_t *gcra, int status, const gd_gcra_result_t *res)
{
    gd_limit_ask_t *ask = H2O_STRUCT_FROM_MEMBER(gd_limit_ask_t, _gcra, gcra);
    const gd_rate_limit_conf_t *rl = ask->_rl;
    uint64_t retry = 0;
    int over;

    if (status != 0) {
        atomic_fetch_add_explicit(&ask->_stats->fallbacks, 1, memory_order_relaxed);
        over = take_local(rl, ask->_req, ask->_key, ask->_key_len, ask->_now_ms, &retry);
        ask->_cb(ask, over, retry);
        return;
    }
    /* Whole tokens left: the room before the TAT reaches now + tolerance + one interval. */
    uint64_t room = rl->tolerance_us + rl->interval_us;
    uint64_t remaining = res->tat_us < room ? (room - res->tat_us) / rl->interval_us : 0;
    add_fields(ask->_req, rl, remaining, (res->tat_us + 999) / 1000);
    if (res->is_granted) {
        ask->_cb(ask, 0, 0);
        return;
    }
    ask->_cb(ask, 1, retry_after_s((res->wait_us + 999) / 1000));
}

int gd_limit_check(const gd_endpoint_conf_t *ep, h2o_req_t *req, const char *client,
                   const json_t *claims, uint64_t now_ms, gd_redis_t *redis, uint64_t deadline_ms,
                   gd_limit_ask_t *ask, gd_limit_cb cb, uint64_t *ret_retry_after_s)
{
    const gd_rate_limit_conf_t *rl = ep->rate_limit;
    char keybuf[2 * SHA256_DIGEST_LENGTH + 25];
    size_t key_len;

    if (rl == NULL)
        return 0;
    const char *key = bucket_key(ep, req, client, claims, keybuf, &key_len);
    if (!rl->is_cluster || redis == NULL)
        return take_local(rl, req, key, key_len, now_ms, ret_retry_after_s);

    gd_redis_stats_t *stats = gd_redis_conf(redis)->stats;
    /* Kept in the request's pool: the local stand-in may need it when Redis does not answer. */
    char *kept = h2o_mem_alloc_pool(&req->pool, key_len + 1);
    memcpy(kept, key, key_len);
    kept[key_len] = '\0';
    size_t prefix = strlen(rl->redis_key);
    char *rkey = h2o_mem_alloc_pool(&req->pool, prefix + 2 * SHA256_DIGEST_LENGTH + MAX_PLAIN_KEY);
    memcpy(rkey, rl->redis_key, prefix);
    if (key_len <= MAX_PLAIN_KEY && memchr(key, '\0', key_len) == NULL) {
        memcpy(rkey + prefix, key, key_len);
        rkey[prefix + key_len] = '\0';
    } else {
        unsigned char d[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)key, key_len, d);
        gd_hex_encode(d, sizeof(d), rkey + prefix);
    }
    *ask = (gd_limit_ask_t){._rl = rl,
                            ._req = req,
                            ._key = kept,
                            ._key_len = key_len,
                            ._now_ms = now_ms,
                            ._stats = stats,
                            ._cb = cb};
    /* A token free now only: the request is admitted or refused, it does not wait. */
    if (gd_gcra_ask(redis, &ask->_gcra, rkey, rl->interval_us, rl->tolerance_us, 1, deadline_ms,
                    on_cluster_answer) == 0)
        return GD_LIMIT_ASKING;
    atomic_fetch_add_explicit(&stats->fallbacks, 1, memory_order_relaxed);
    return take_local(rl, req, kept, key_len, now_ms, ret_retry_after_s);
}

void gd_limit_cancel(gd_limit_ask_t *ask)
{
    gd_gcra_cancel(&ask->_gcra);
}

bool gd_limit_is_asking(const gd_limit_ask_t *ask)
{
    return gd_gcra_is_asking(&ask->_gcra);
}
