/*
 * gd_callgraph: the order of an endpoint's calls when some need others (a reference to a call's
 * result, or "after"). Pure graph logic, checked at config load: a topological order, or the
 * cycle that prevents one, for the error message.
 */
#ifndef GD_CALLGRAPH_H
#define GD_CALLGRAPH_H

#include <stddef.h>

/* Call i needs the nneeds[i] calls needs[i][0..] (indices below n) to finish before it starts. */
typedef struct gd_callgraph {
    size_t n;
    const size_t *const *needs;
    const size_t *nneeds;
} gd_callgraph_t;

/**
 * Writes into @ret_order (n entries) an order of the calls in which each comes after all it
 * needs; among calls free to go, the one first in config order goes first, so a graph without
 * edges keeps config order. Returns 0; or -ELOOP when the calls depend on each other in a
 * cycle, with the cycle in @ret_cycle (n + 1 entries: c0, c1, ..., c0, where each needs the
 * next) and its length, the repeated first call included, in *@ret_cycle_len. @ret_order is
 * undefined then.
 */
int gd_callgraph_sort(const gd_callgraph_t *g, size_t *ret_order, size_t *ret_cycle,
                      size_t *ret_cycle_len);

#endif
