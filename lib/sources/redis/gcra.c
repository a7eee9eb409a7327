#include "sources/redis/gcra.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <h2o/memory.h>
#include <hiredis/hiredis.h>

/* KEYS[1]: the TAT. ARGV: interval, tolerance, the longest wait (all microseconds). Returns
 * {granted 0/1, wait, TAT - now}. Numbers are Lua doubles: microseconds since 1970 (about
 * 2^51) are exact; string.format keeps SET from writing them in exponent form. */
static const char script_text[] = "local t = redis.call('TIME')\n"
                                  "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
                                  "local interval = tonumber(ARGV[1])\n"
                                  "local tolerance = tonumber(ARGV[2])\n"
                                  "local max_wait = tonumber(ARGV[3])\n"
                                  "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
                                  "if tat < now then tat = now end\n"
                                  "local wait = tat - tolerance - now\n"
                                  "if wait < 0 then wait = 0 end\n"
                                  "if wait >= max_wait then return {0, wait, tat - now} end\n"
                                  "local new = tat + interval\n"
                                  "redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX',\n"
                                  "           math.floor((new - now) / 1000) + 1000)\n"
                                  "return {1, wait, new - now}\n";

static gd_redis_script_t script;
static pthread_once_t script_once = PTHREAD_ONCE_INIT;

static void init_script(void)
{
    gd_redis_script_init(&script, script_text);
}

static bool get_u64(const redisReply *r, uint64_t *ret)
{
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        return false;
    *ret = (uint64_t)r->integer;
    return true;
}

static void on_answer(gd_redis_wait_t *wait, int status, const redisReply *reply)
{
    gd_gcra_ask_t *ask = H2O_STRUCT_FROM_MEMBER(gd_gcra_ask_t, _wait, wait);
    gd_gcra_result_t res = {0};
    uint64_t granted = 0;

    if (status != 0 || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        !get_u64(reply->element[0], &granted) || !get_u64(reply->element[1], &res.wait_us) ||
        !get_u64(reply->element[2], &res.tat_us)) {
        ask->_cb(ask, -EIO, NULL);
        return;
    }
    res.is_granted = granted == 1;
    ask->_cb(ask, 0, &res);
}

int gd_gcra_ask(gd_redis_t *r, gd_gcra_ask_t *ask, const char *key, uint64_t interval_us,
                uint64_t tolerance_us, uint64_t max_wait_us, uint64_t deadline_ms, gd_gcra_cb cb)
{
    char a[3][24];
    const char *args[4] = {key, a[0], a[1], a[2]};
    size_t lens[4] = {strlen(key)};

    pthread_once(&script_once, init_script);
    snprintf(a[0], sizeof(a[0]), "%" PRIu64, interval_us);
    snprintf(a[1], sizeof(a[1]), "%" PRIu64, tolerance_us);
    snprintf(a[2], sizeof(a[2]), "%" PRIu64, max_wait_us);
    for (size_t i = 0; i < 3; i++)
        lens[i + 1] = strlen(a[i]);
    ask->_cb = cb;
    return gd_redis_eval(r, &ask->_wait, deadline_ms, &script, 1, 3, args, lens, on_answer);
}

bool gd_gcra_is_asking(const gd_gcra_ask_t *ask)
{
    return gd_redis_is_waiting(&ask->_wait);
}

void gd_gcra_cancel(gd_gcra_ask_t *ask)
{
    gd_redis_cancel(&ask->_wait);
}
