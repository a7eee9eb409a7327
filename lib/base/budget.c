#include "base/budget.h"

#include <pthread.h>
#include <stdlib.h>

#include "base/util.h"

struct gd_budget {
    atomic_size_t used;
    size_t total;
    atomic_size_t nwanting; /* members that want a unit */
    /* The members, and every send to their handles: a member leaves under it, so no send
     * reaches a closing handle. */
    pthread_mutex_t mutex;
    gd_budget_member_t **members;
    size_t nmembers, max_members;
};

gd_budget_t *gd_budget_new(size_t total, size_t max_members)
{
    gd_budget_t *b = gd_xcalloc(1, sizeof(*b));

    b->total = total > 0 ? total : 1;
    atomic_init(&b->used, 0);
    atomic_init(&b->nwanting, 0);
    pthread_mutex_init(&b->mutex, NULL);
    b->members = gd_xcalloc(max_members + 1, sizeof(*b->members));
    b->max_members = max_members;
    return b;
}

gd_budget_t *gd_budget_free(gd_budget_t *b)
{
    if (b == NULL)
        return NULL;
    GD_REQUIRE(b->nmembers == 0);
    pthread_mutex_destroy(&b->mutex);
    free(b->members);
    free(b);
    return NULL;
}

size_t gd_budget_used(const gd_budget_t *b)
{
    return atomic_load_explicit(&b->used, memory_order_relaxed);
}

size_t gd_budget_total(const gd_budget_t *b)
{
    return b->total;
}

static void on_async(uv_async_t *async)
{
    gd_budget_member_t *m = async->data;
    m->_cb(m);
}

int gd_budget_join(gd_budget_t *b, gd_budget_member_t *m, uv_loop_t *loop, gd_budget_cb cb)
{
    int r = uv_async_init(loop, &m->_async, on_async);
    if (r != 0)
        return r;
    m->_async.data = m;
    m->_budget = b;
    m->_cb = cb;
    m->_wants = false;
    pthread_mutex_lock(&b->mutex);
    GD_REQUIRE(b->nmembers < b->max_members);
    b->members[b->nmembers++] = m;
    pthread_mutex_unlock(&b->mutex);
    return 0;
}

void gd_budget_leave(gd_budget_member_t *m)
{
    gd_budget_t *b = m->_budget;

    gd_budget_want(m, false);
    pthread_mutex_lock(&b->mutex);
    for (size_t i = 0; i < b->nmembers; i++) {
        if (b->members[i] == m) {
            b->members[i] = b->members[--b->nmembers];
            break;
        }
    }
    pthread_mutex_unlock(&b->mutex);
    uv_close((uv_handle_t *)&m->_async, NULL);
    m->_budget = NULL;
}

bool gd_budget_take(gd_budget_member_t *m)
{
    gd_budget_t *b = m->_budget;
    size_t used = atomic_load_explicit(&b->used, memory_order_relaxed);

    while (used < b->total)
        if (atomic_compare_exchange_weak(&b->used, &used, used + 1))
            return true;
    return false;
}

/* Wakes the members other than @except; only those that want a unit when @only_wanting. */
static void tell_members(gd_budget_t *b, const gd_budget_member_t *except, bool only_wanting)
{
    pthread_mutex_lock(&b->mutex);
    for (size_t i = 0; i < b->nmembers; i++) {
        gd_budget_member_t *m = b->members[i];
        /* _wants of another thread's member is read under the mutex it is written under */
        if (m != except && (!only_wanting || m->_wants))
            uv_async_send(&m->_async);
    }
    pthread_mutex_unlock(&b->mutex);
}

void gd_budget_give(gd_budget_member_t *m)
{
    gd_budget_t *b = m->_budget;
    size_t was = atomic_fetch_sub(&b->used, 1);

    GD_REQUIRE(was > 0);
    if (atomic_load(&b->nwanting) > (m->_wants ? 1u : 0u))
        tell_members(b, m, true);
}

void gd_budget_want(gd_budget_member_t *m, bool wants)
{
    gd_budget_t *b = m->_budget;

    if (m->_wants == wants)
        return;
    pthread_mutex_lock(&b->mutex);
    m->_wants = wants;
    pthread_mutex_unlock(&b->mutex);
    if (!wants) {
        atomic_fetch_sub(&b->nwanting, 1);
        return;
    }
    atomic_fetch_add(&b->nwanting, 1);
    /* The others, to give back idle units; and this member itself, since a unit given back
     * between its failed take and now told nobody. */
    tell_members(b, NULL, false);
}

void gd_budget_tell_others(gd_budget_member_t *m)
{
    tell_members(m->_budget, m, false);
}

bool gd_budget_is_wanted_elsewhere(const gd_budget_member_t *m)
{
    return atomic_load(&m->_budget->nwanting) > (m->_wants ? 1u : 0u);
}
