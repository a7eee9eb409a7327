#include "base/pacer.h"

void gd_pacer_init(gd_pacer_t *p, uint64_t calls, uint64_t per_ms, uint64_t burst)
{
    /* Rounded up: the limit may be met a hair below the rate asked for, never above it. */
    p->_interval_us = (per_ms * 1000 + calls - 1) / calls;
    if (p->_interval_us == 0)
        p->_interval_us = 1;
    p->_tolerance_us = (burst - 1) * p->_interval_us;
    atomic_init(&p->_tat_us, 0);
    atomic_init(&p->waited, 0);
    atomic_init(&p->refused, 0);
}

uint64_t gd_pacer_interval_us(const gd_pacer_t *p)
{
    return p->_interval_us;
}

uint64_t gd_pacer_tolerance_us(const gd_pacer_t *p)
{
    return p->_tolerance_us;
}

bool gd_pacer_reserve(gd_pacer_t *p, uint64_t now_us, uint64_t latest_us, gd_pacer_slot_t *ret)
{
    uint64_t tat = atomic_load_explicit(&p->_tat_us, memory_order_relaxed), at, next;

    do {
        /* A TAT in the past is a full bucket: the call goes now, the next interval counts
         * from now (unused tokens do not pile up beyond the burst). */
        uint64_t base = tat > now_us ? tat : now_us;
        at = tat > now_us + p->_tolerance_us ? tat - p->_tolerance_us : now_us;
        if (at >= latest_us) {
            atomic_fetch_add_explicit(&p->refused, 1, memory_order_relaxed);
            return false;
        }
        next = base + p->_interval_us;
    } while (!atomic_compare_exchange_weak_explicit(&p->_tat_us, &tat, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    if (at > now_us)
        atomic_fetch_add_explicit(&p->waited, 1, memory_order_relaxed);
    *ret = (gd_pacer_slot_t){.at_us = at, ._tat_us = next};
    return true;
}

void gd_pacer_unreserve(gd_pacer_t *p, const gd_pacer_slot_t *slot)
{
    uint64_t expected = slot->_tat_us;

    /* Only the last reservation can be taken back: an earlier one's slot has been built on. */
    (void)atomic_compare_exchange_strong_explicit(&p->_tat_us, &expected,
                                                  slot->_tat_us - p->_interval_us,
                                                  memory_order_relaxed, memory_order_relaxed);
}
