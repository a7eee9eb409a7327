/*
 * gd_pacer: an outbound rate limit ("calls" per "per_ms", bursts of "burst") for the whole
 * process, exact across threads without a lock: the generic cell rate algorithm (GCRA) kept
 * as one atomic word, the theoretical arrival time (TAT) of the next call. A call reserves the
 * next free slot with one compare-and-swap: it may go at max(now, TAT - tolerance), and the
 * TAT moves on by one interval. Slots are handed out in the order the reservations were made,
 * whatever thread made them, so calls that wait go in FIFO order; a waiting caller sleeps on
 * its own loop's timer until its slot, so nothing wakes another thread. A call whose slot
 * would come after the latest moment it may go reserves nothing and is refused at once.
 *
 * Times are microseconds of one monotonic clock shared by the callers (uv_hrtime() / 1000):
 * the loops' cached milliseconds differ between threads by up to an iteration, which would
 * let two threads' slots come closer than the interval.
 */
#ifndef GD_PACER_H
#define GD_PACER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct gd_pacer {
    /* private */
    uint64_t _interval_us;  /* between two tokens: per_ms / calls, rounded up */
    uint64_t _tolerance_us; /* (burst - 1) intervals: how far ahead of the TAT a call may go */
    _Atomic uint64_t _tat_us;
    /* read-only: totals since the start, for the metrics */
    _Atomic uint64_t waited, refused;
} gd_pacer_t;

/* One token reserved by gd_pacer_reserve(). */
typedef struct gd_pacer_slot {
    uint64_t at_us;   /* when the call may go: at or after the time it asked */
    uint64_t _tat_us; /* private: the TAT this reservation left, for gd_pacer_unreserve() */
} gd_pacer_slot_t;

/**
 * Prepares @p (caller owns the storage): @calls tokens every @per_ms, at most @burst at once
 * (all >= 1), the bucket full.
 */
void gd_pacer_init(gd_pacer_t *p, uint64_t calls, uint64_t per_ms, uint64_t burst);
/** The time between two tokens, in microseconds. */
uint64_t gd_pacer_interval_us(const gd_pacer_t *p);
/** How far ahead of its TAT a call may go ((burst - 1) intervals), in microseconds. */
uint64_t gd_pacer_tolerance_us(const gd_pacer_t *p);

/**
 * Reserves the next token for a call asking at @now_us that must go before @latest_us. Returns
 * true with its slot in @ret (at_us in [@now_us, @latest_us)), or false, reserving nothing,
 * when the next slot comes too late. Thread-safe, lock-free; counts waits and refusals.
 */
bool gd_pacer_reserve(gd_pacer_t *p, uint64_t now_us, uint64_t latest_us, gd_pacer_slot_t *ret);
/**
 * Gives back the token of @slot, whose call will not go (cancelled while it waited), when no
 * later reservation was made since; otherwise the token is lost (the rate stays a bound).
 */
void gd_pacer_unreserve(gd_pacer_t *p, const gd_pacer_slot_t *slot);

#endif
