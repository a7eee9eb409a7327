#include "sources/http/limits.h"

#include <errno.h>

#include <h2o/memory.h>

#include "base/redis_stats.h"
#include "base/util.h"
#include "base/waits.h"

void gd_limits_init(gd_limits_t *l, const gd_upstream_conf_t *conf, uv_loop_t *loop,
                    gd_timers_t *timers)
{
    *l = (gd_limits_t){._conf = conf, ._timers = timers};
    if (conf->in_flight != NULL) {
        GD_REQUIRE(gd_shared_gate_init(&l->_in_flight, conf->in_flight, loop, timers) == 0);
        l->_has_in_flight = true;
    }
}

void gd_limits_close(gd_limits_t *l)
{
    if (l->_has_in_flight)
        gd_shared_gate_close(&l->_in_flight);
    l->_has_in_flight = false;
}

static void observe(const gd_limits_t *l, gd_wait_kind_t kind, uint64_t us)
{
    if (l->_conf->waits != NULL) /* NULL in tests that make their own conf */
        gd_waits_observe(l->_conf->waits, kind, us);
}

static void on_place(gd_gate_waiter_t *waiter, bool is_granted)
{
    gd_limits_pass_t *pass = H2O_STRUCT_FROM_MEMBER(gd_limits_pass_t, _waiter, waiter);
    gd_limits_t *l = pass->_limits;

    uint64_t now_ms = gd_timers_now(l->_timers);

    /* A place freed at the very deadline (the calls holding them timed out then) is of no use
     * to a call that has no time left: it goes on to the next in line. */
    if (is_granted && now_ms >= pass->_deadline_ms) {
        gd_shared_gate_release(&l->_in_flight);
        is_granted = false;
    }
    if (is_granted) {
        pass->_holds_place = true;
        observe(l, GD_WAIT_IN_FLIGHT, (now_ms - pass->_since_ms) * 1000);
    } else if (l->_conf->waits != NULL) {
        atomic_fetch_add_explicit(&l->_conf->waits->in_flight_refused, 1, memory_order_relaxed);
    }
    pass->_cb(pass, is_granted);
}

int gd_limits_enter(gd_limits_t *l, gd_limits_pass_t *pass, uint64_t deadline_ms, gd_limits_cb cb)
{
    pass->_limits = l;
    if (!l->_has_in_flight)
        return GD_LIMITS_ADMITTED;
    if (gd_shared_gate_try_acquire(&l->_in_flight)) {
        pass->_holds_place = true;
        return GD_LIMITS_ADMITTED;
    }
    pass->_cb = cb;
    pass->_since_ms = gd_timers_now(l->_timers);
    pass->_deadline_ms = deadline_ms;
    gd_shared_gate_wait(&l->_in_flight, &pass->_waiter, deadline_ms, on_place);
    return GD_LIMITS_WAITING;
}

void gd_limits_set_conf(gd_limits_t *l, const gd_upstream_conf_t *conf)
{
    GD_REQUIRE(conf->rate_limit == l->_conf->rate_limit && conf->in_flight == l->_conf->in_flight);
    l->_conf = conf;
}

void gd_limits_use_redis(gd_limits_t *l, gd_redis_t *redis)
{
    l->_redis = redis;
}

bool gd_limits_is_cluster(const gd_limits_t *l)
{
    return l->_conf->is_rate_cluster;
}

/* Reserves a token of pacer @p for @pass (see gd_limits_take_token()). */
static int reserve_local(gd_limits_t *l, gd_limits_pass_t *pass, gd_pacer_t *p,
                         uint64_t earliest_ms, uint64_t deadline_ms, uint64_t *ret_at_ms)
{
    uint64_t now_ms = gd_timers_now(l->_timers);

    if (deadline_ms <= earliest_ms) {
        atomic_fetch_add_explicit(&p->refused, 1, memory_order_relaxed);
        return -EAGAIN;
    }
    /* The pacer's clock is the real one, not the loop's cached milliseconds (see pacer.h); the
     * loop's times are carried over as offsets from now. */
    uint64_t now_us = uv_hrtime() / 1000;
    uint64_t from_us = now_us + (earliest_ms > now_ms ? earliest_ms - now_ms : 0) * 1000;
    /* The latest slot whose wait, rounded up to the loop's milliseconds, still ends before
     * the deadline: at most (deadline - earliest - 1) ms after from_us. */
    uint64_t latest_us = from_us + (deadline_ms - earliest_ms - 1) * 1000 + 1;
    if (!gd_pacer_reserve(p, from_us, latest_us, &pass->_slot))
        return -EAGAIN;
    pass->_has_slot = true;
    pass->_pacer = p;
    uint64_t wait_us = pass->_slot.at_us - from_us;
    if (wait_us > 0)
        observe(l, GD_WAIT_RATE_LIMIT, wait_us);
    /* Rounded up: the loop's timer fires at the slot or after it, never before. */
    *ret_at_ms = earliest_ms + (wait_us + 999) / 1000;
    return 0;
}

int gd_limits_take_token(gd_limits_t *l, gd_limits_pass_t *pass, uint64_t earliest_ms,
                         uint64_t deadline_ms, uint64_t *ret_at_ms)
{
    gd_pacer_t *p = l->_conf->rate_limit;

    pass->_limits = l;
    if (p == NULL || l->_conf->is_rate_cluster) {
        *ret_at_ms = earliest_ms; /* a cluster token is asked when the attempt goes */
        return 0;
    }
    return reserve_local(l, pass, p, earliest_ms, deadline_ms, ret_at_ms);
}

/* Redis is down or slow: the local share of a cluster limit decides. */
static int fall_back(gd_limits_t *l, gd_limits_pass_t *pass, uint64_t deadline_ms,
                     uint64_t *ret_at_ms)
{
    gd_redis_stats_t *stats = l->_conf->rate_limit_local != NULL && l->_redis != NULL
                                  ? gd_redis_conf(l->_redis)->stats
                                  : NULL;

    if (stats != NULL)
        atomic_fetch_add_explicit(&stats->fallbacks, 1, memory_order_relaxed);
    return reserve_local(l, pass, l->_conf->rate_limit_local, gd_timers_now(l->_timers),
                         deadline_ms, ret_at_ms);
}

static void on_cluster_token(gd_gcra_ask_t *ask, int status, const gd_gcra_result_t *res)
{
    gd_limits_pass_t *pass = H2O_STRUCT_FROM_MEMBER(gd_limits_pass_t, _ask, ask);
    gd_limits_t *l = pass->_limits;
    gd_pacer_t *p = l->_conf->rate_limit;
    uint64_t now_ms = gd_timers_now(l->_timers), at_ms = 0;
    int r = 0;

    if (status != 0) {
        r = fall_back(l, pass, pass->_token_deadline_ms, &at_ms);
    } else if (!res->is_granted) {
        atomic_fetch_add_explicit(&p->refused, 1, memory_order_relaxed);
        r = -EAGAIN;
    } else {
        /* The wait counts from Redis's decision; the answer's way back only shortens it, so
         * the slot is kept or a little late, never early. */
        at_ms = now_ms + (res->wait_us + 999) / 1000;
        if (at_ms >= pass->_token_deadline_ms) {
            atomic_fetch_add_explicit(&p->refused, 1, memory_order_relaxed);
            r = -EAGAIN; /* the token is lost: the rate stays a bound */
        } else if (res->wait_us > 0) {
            atomic_fetch_add_explicit(&p->waited, 1, memory_order_relaxed);
            observe(l, GD_WAIT_RATE_LIMIT, res->wait_us);
        }
    }
    pass->_token_cb(pass, r, at_ms);
}

int gd_limits_ask_token(gd_limits_t *l, gd_limits_pass_t *pass, uint64_t deadline_ms,
                        gd_limits_token_cb cb, uint64_t *ret_at_ms)
{
    const gd_upstream_conf_t *conf = l->_conf;
    uint64_t now_ms = gd_timers_now(l->_timers);

    pass->_limits = l;
    if (!conf->is_rate_cluster)
        return gd_limits_take_token(l, pass, now_ms, deadline_ms, ret_at_ms);
    if (deadline_ms <= now_ms) {
        atomic_fetch_add_explicit(&conf->rate_limit->refused, 1, memory_order_relaxed);
        return -EAGAIN;
    }
    if (l->_redis != NULL) {
        gd_pacer_t *p = conf->rate_limit;
        /* As reserve_local(): a slot whose wait, rounded up, ends before the deadline. */
        uint64_t max_wait_us = (deadline_ms - now_ms - 1) * 1000 + 1;
        pass->_token_cb = cb;
        pass->_token_deadline_ms = deadline_ms;
        if (gd_gcra_ask(l->_redis, &pass->_ask, conf->rate_key, gd_pacer_interval_us(p),
                        gd_pacer_tolerance_us(p), max_wait_us, deadline_ms, on_cluster_token) == 0)
            return GD_LIMITS_WAITING;
    }
    return fall_back(l, pass, deadline_ms, ret_at_ms);
}

void gd_limits_spend_token(gd_limits_pass_t *pass)
{
    pass->_has_slot = false;
}

void gd_limits_return_token(gd_limits_pass_t *pass)
{
    if (pass->_has_slot)
        gd_pacer_unreserve(pass->_pacer, &pass->_slot);
    pass->_has_slot = false;
}

void gd_limits_leave(gd_limits_pass_t *pass)
{
    gd_limits_t *l = pass->_limits;

    if (l == NULL)
        return;
    gd_limits_return_token(pass);
    gd_gcra_cancel(&pass->_ask);
    if (l->_has_in_flight && gd_gate_is_waiting(&pass->_waiter))
        gd_shared_gate_cancel(&l->_in_flight, &pass->_waiter);
    if (pass->_holds_place) {
        pass->_holds_place = false;
        gd_shared_gate_release(&l->_in_flight);
    }
}

void gd_limits_note_line_start(gd_limits_pass_t *pass, uint64_t now_ms)
{
    pass->_since_ms = now_ms;
}

void gd_limits_note_line_end(gd_limits_t *l, gd_limits_pass_t *pass, uint64_t now_ms)
{
    observe(l, GD_WAIT_CONNECTION, (now_ms - pass->_since_ms) * 1000);
}
