/*
 * gd_limits: the outbound limits of one upstream on one thread, which a call passes before it
 * asks for a connection: "max_in_flight" (a place held from the call's start to its end, across
 * its retries, counted for the whole process: base/shared_gate.h) and "rate_limit" (a token
 * per attempt, reserved in a process-wide pacer: base/pacer.h). Both bounded by the call's
 * deadline: a token that cannot come before it is refused at once (nothing waits in vain); a
 * place waits in its thread's FIFO line until the deadline at most. The wait for a token is
 * the caller's own timer (the slot is known when reserved), so this module only decides it.
 * The waits are counted in the upstream's gd_waits_t (base/waits.h).
 *
 * A rate limit of "scope": "cluster" is held in Redis for every replica (sources/redis/gcra.h):
 * gd_limits_ask_token() asks for the slot in one round trip; while Redis is down, or when its
 * answer does not come within redis.timeout_ms, the upstream's local stand-in at
 * redis.local_share of the rate decides instead (counted in gatherd_redis_fallbacks_total).
 */
#ifndef GD_LIMITS_H
#define GD_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "base/gate.h"
#include "base/pacer.h"
#include "base/shared_gate.h"
#include "base/timer.h"
#include "config/config.h"
#include "sources/redis/gcra.h"

typedef struct gd_limits {
    /* private */
    const gd_upstream_conf_t *_conf;
    gd_timers_t *_timers;
    bool _has_in_flight;
    gd_shared_gate_t _in_flight; /* with _has_in_flight */
    gd_redis_t *_redis;          /* the worker's, for a cluster-scoped rate limit; NULL: none */
} gd_limits_t;

typedef struct gd_limits_pass gd_limits_pass_t;
/** Reports the end of a call's wait for a place: @is_granted, or the deadline passed. */
typedef void (*gd_limits_cb)(gd_limits_pass_t *pass, bool is_granted);
/** Reports the token asked by gd_limits_ask_token(): 0 and the time it may go, or -EAGAIN. */
typedef void (*gd_limits_token_cb)(gd_limits_pass_t *pass, int result, uint64_t at_ms);

/* What one call holds of the limits (caller-owned storage inside the call, zeroed). */
struct gd_limits_pass {
    /* private */
    gd_limits_t *_limits;
    gd_gate_waiter_t _waiter;
    gd_limits_cb _cb;
    bool _holds_place;
    bool _has_slot; /* a token reserved for an attempt that has not gone yet */
    gd_pacer_slot_t _slot;
    gd_pacer_t *_pacer;    /* that _slot is of: the upstream's, or its local stand-in */
    uint64_t _since_ms;    /* when the wait for a place (or a connection) began */
    uint64_t _deadline_ms; /* of the wait for a place */
    gd_gcra_ask_t _ask;    /* a cluster token asked of Redis */
    gd_limits_token_cb _token_cb;
    uint64_t _token_deadline_ms;
};

/* What gd_limits_enter() decided. */
enum { GD_LIMITS_ADMITTED = 0, GD_LIMITS_WAITING = 1 };

/**
 * Prepares @l for upstream @conf (borrowed, outlives it) on @loop's thread, timing with
 * @timers. Never fails (GD_REQUIRE on joining the shared budget).
 */
void gd_limits_init(gd_limits_t *l, const gd_upstream_conf_t *conf, uv_loop_t *loop,
                    gd_timers_t *timers);
/**
 * Points @l at @conf, the same upstream of a reloaded config with the same rate_limit and
 * max_in_flight objects (config/carry.h); borrowed from now on.
 */
void gd_limits_set_conf(gd_limits_t *l, const gd_upstream_conf_t *conf);
/** Takes cluster-scoped rate-limit tokens from @redis (borrowed, outlives @l; NULL: none). */
void gd_limits_use_redis(gd_limits_t *l, gd_redis_t *redis);
/** Whether the rate limit is cluster-scoped: tokens come from gd_limits_ask_token() only. */
bool gd_limits_is_cluster(const gd_limits_t *l);
/** Leaves the shared budget: no pass may be held. The loop must then run to close a handle. */
void gd_limits_close(gd_limits_t *l);

/**
 * Takes a place for a call under max_in_flight for @pass. GD_LIMITS_ADMITTED: it holds one now
 * (or there is no cap), no report follows. GD_LIMITS_WAITING: it waits in line; @cb reports,
 * never from inside this call, a place or @deadline_ms (gd_timers_now() base) passed.
 */
int gd_limits_enter(gd_limits_t *l, gd_limits_pass_t *pass, uint64_t deadline_ms, gd_limits_cb cb);
/**
 * Reserves the rate-limit token of an attempt of @pass's call that would start at
 * @earliest_ms and must start before @deadline_ms. Returns 0 with the time it may start in
 * @ret_at_ms (>= @earliest_ms; @earliest_ms itself without a rate limit), or -EAGAIN, nothing
 * reserved, when no token can come in time: the caller fails the call at once (rate_limited).
 */
int gd_limits_take_token(gd_limits_t *l, gd_limits_pass_t *pass, uint64_t earliest_ms,
                         uint64_t deadline_ms, uint64_t *ret_at_ms);
/**
 * Reserves the rate-limit token of an attempt of @pass's call that would start now and must
 * start before @deadline_ms, wherever the limit is held. Returns 0 with the time it may start
 * in @ret_at_ms, or -EAGAIN, nothing reserved: as gd_limits_take_token(), decided at once (a
 * process-scoped limit, or a cluster one while Redis is down: its local share). Or
 * GD_LIMITS_WAITING: Redis is asked, and @cb reports, never from inside this call, by the
 * earlier of @deadline_ms and redis.timeout_ms (then decided by the local share).
 * With a cluster-scoped limit, gd_limits_take_token() reserves nothing (its at is @earliest_ms):
 * the attempt asks here when it is about to go.
 */
int gd_limits_ask_token(gd_limits_t *l, gd_limits_pass_t *pass, uint64_t deadline_ms,
                        gd_limits_token_cb cb, uint64_t *ret_at_ms);
/** The attempt that reserved @pass's token goes now: the token is spent. */
void gd_limits_spend_token(gd_limits_pass_t *pass);
/** The attempt that reserved @pass's token will not go: given back when it still can be. */
void gd_limits_return_token(gd_limits_pass_t *pass);
/**
 * Ends @pass: a token reserved and not spent is given back when it still can be, a wait (for a
 * place, or for Redis's answer) is left, a place held is released. Idempotent; a no-op for a pass
 * never entered.
 */
void gd_limits_leave(gd_limits_pass_t *pass);

/** The waits for a connection slot, counted with the others: one began at @now_ms ... */
void gd_limits_note_line_start(gd_limits_pass_t *pass, uint64_t now_ms);
/** ... and ended with a slot at @now_ms. */
void gd_limits_note_line_end(gd_limits_t *l, gd_limits_pass_t *pass, uint64_t now_ms);

#endif
