/*
 * gd_gcra: a rate limit held in Redis for every replica at once: the generic cell rate
 * algorithm of base/pacer.h, run by a Lua script (EVALSHA, EVAL on NOSCRIPT) in one round trip
 * and atomically (Redis runs a script alone). The script keeps one key per limit, the
 * theoretical arrival time (TAT) of the next call in microseconds of Redis's own clock (TIME:
 * one clock for all replicas, whatever theirs say), expiring once the bucket is full again.
 *
 * A reservation is a slot: the call may go after a wait (0: now), and the TAT moves on by one
 * interval; a slot that would come later than the caller can wait reserves nothing. Slots are
 * handed out in the order the scripts ran, so replicas' callers wait in one FIFO order. A
 * reserved slot is never given back (a cancelled call's token is lost: the limit stays a bound).
 */
#ifndef GD_GCRA_H
#define GD_GCRA_H

#include <stdbool.h>
#include <stdint.h>

#include "sources/redis/redis.h"

typedef struct gd_gcra_ask gd_gcra_ask_t;

/* What Redis decided. */
typedef struct gd_gcra_result {
    bool is_granted;
    uint64_t wait_us; /* granted: until the slot; refused: until the next slot would be */
    uint64_t tat_us;  /* from now until the TAT it left: until the bucket is full again */
} gd_gcra_result_t;

/**
 * Reports an ask: @status 0 with @res, or -EIO: Redis did not answer (in time), the caller
 * decides without it. @ask is no longer asking.
 */
typedef void (*gd_gcra_cb)(gd_gcra_ask_t *ask, int status, const gd_gcra_result_t *res);

/* One caller's ask (caller-owned storage, zeroed). */
struct gd_gcra_ask {
    /* private */
    gd_redis_wait_t _wait;
    gd_gcra_cb _cb;
};

/**
 * Reserves a slot of the limit at @key (copied) with @interval_us between two calls and a
 * @tolerance_us ((burst - 1) intervals), for a caller that waits at most @max_wait_us (1: only
 * a token free now), asking Redis by @deadline_ms at the latest. Returns 0: @cb reports, never
 * from inside this call; or -ENOTCONN at once (no connection ready), no report.
 */
int gd_gcra_ask(gd_redis_t *r, gd_gcra_ask_t *ask, const char *key, uint64_t interval_us,
                uint64_t tolerance_us, uint64_t max_wait_us, uint64_t deadline_ms, gd_gcra_cb cb);
/** Whether @ask waits for Redis. */
bool gd_gcra_is_asking(const gd_gcra_ask_t *ask);
/** Stops @ask's wait (no report follows). A slot Redis reserves meanwhile is lost. */
void gd_gcra_cancel(gd_gcra_ask_t *ask);

#endif
