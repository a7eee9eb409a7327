#include "config/callgraph.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/util.h"

/* Depth-first from @start along "needs" edges, looking for a call on the current path. On a
 * cycle, writes it into @ret_cycle (as gd_callgraph_sort() says) and returns true. @state: 0 not
 * seen, 1 on the path, 2 done; @path: the path's calls (n entries), @next: each one's next edge. */
static bool find_cycle(const gd_callgraph_t *g, size_t start, unsigned char *state, size_t *path,
                       size_t *next, size_t *ret_cycle, size_t *ret_cycle_len)
{
    size_t depth = 0;

    path[depth] = start;
    next[depth] = 0;
    state[start] = 1;
    while (depth != (size_t)-1) {
        size_t v = path[depth];
        if (next[depth] == g->nneeds[v]) {
            state[v] = 2;
            depth--;
            continue;
        }
        size_t w = g->needs[v][next[depth]++];
        if (state[w] == 2)
            continue;
        if (state[w] == 1) {
            size_t from = 0, n = 0;
            while (path[from] != w)
                from++;
            for (size_t i = from; i <= depth; i++)
                ret_cycle[n++] = path[i];
            ret_cycle[n++] = w;
            *ret_cycle_len = n;
            return true;
        }
        depth++;
        path[depth] = w;
        next[depth] = 0;
        state[w] = 1;
    }
    return false;
}

int gd_callgraph_sort(const gd_callgraph_t *g, size_t *ret_order, size_t *ret_cycle,
                      size_t *ret_cycle_len)
{
    size_t n = g->n, norder = 0;
    unsigned char *state = gd_xcalloc(n + 1, 1);
    size_t *path = gd_xcalloc(n + 1, sizeof(*path)), *next = gd_xcalloc(n + 1, sizeof(*next));
    int r = 0;

    for (size_t i = 0; i < n; i++) {
        if (state[i] == 0 && find_cycle(g, i, state, path, next, ret_cycle, ret_cycle_len)) {
            r = -ELOOP;
            goto out;
        }
    }
    /* No cycle: repeatedly take the first call in config order whose needs are all placed.
     * Quadratic, and endpoints have a handful of calls. */
    for (size_t i = 0; i < n; i++)
        state[i] = 0;
    while (norder < n) {
        for (size_t i = 0; i < n; i++) {
            bool is_ready = state[i] == 0;
            for (size_t j = 0; is_ready && j < g->nneeds[i]; j++)
                is_ready = state[g->needs[i][j]] != 0;
            if (is_ready) {
                state[i] = 1;
                ret_order[norder++] = i;
                break;
            }
        }
    }
out:
    free(state);
    free(path);
    free(next);
    return r;
}
