#include "base/timer.h"

#include <stdlib.h>

#include "base/util.h"

struct gd_timers {
    uv_loop_t *loop;
    uv_timer_t handle;
    gd_timer_t **heap; /* binary min-heap on (_due_ms, _seq) */
    size_t count, capacity;
    uint64_t next_seq;
    uint64_t armed_due_ms; /* when the uv_timer_t fires (uv_now() base), if is_armed */
    bool is_armed, is_dispatching;
    /* libuv before 1.48 runs a zero-timeout uv_timer_t started from inside a timer callback
     * again in the same uv__run_timers() pass (libuv issue #4245), so a callback that keeps
     * restarting a due timer would starve every other handle. */
    bool has_zero_timeout_starvation;
};

static bool timer_less(const gd_timer_t *a, const gd_timer_t *b)
{
    return a->_due_ms < b->_due_ms || (a->_due_ms == b->_due_ms && a->_seq < b->_seq);
}

static void heap_place(gd_timers_t *timers, gd_timer_t *timer, size_t index)
{
    timers->heap[index] = timer;
    timer->_heap_index = index;
}

static void sift_up(gd_timers_t *timers, size_t index)
{
    gd_timer_t *timer = timers->heap[index];

    while (index > 0) {
        size_t parent = (index - 1) / 2;
        if (!timer_less(timer, timers->heap[parent]))
            break;
        heap_place(timers, timers->heap[parent], index);
        index = parent;
    }
    heap_place(timers, timer, index);
}

static void sift_down(gd_timers_t *timers, size_t index)
{
    gd_timer_t *timer = timers->heap[index];

    for (;;) {
        size_t child = 2 * index + 1;
        if (child >= timers->count)
            break;
        if (child + 1 < timers->count && timer_less(timers->heap[child + 1], timers->heap[child]))
            child++;
        if (!timer_less(timers->heap[child], timer))
            break;
        heap_place(timers, timers->heap[child], index);
        index = child;
    }
    heap_place(timers, timer, index);
}

/* Moves the timer at @index to where its (possibly changed) key belongs. */
static void heap_fix(gd_timers_t *timers, size_t index)
{
    if (index > 0 && timer_less(timers->heap[index], timers->heap[(index - 1) / 2]))
        sift_up(timers, index);
    else
        sift_down(timers, index);
}

static void heap_remove(gd_timers_t *timers, gd_timer_t *timer)
{
    size_t index = timer->_heap_index;
    gd_timer_t *last = timers->heap[--timers->count];

    timer->_heap_index = SIZE_MAX;
    if (last == timer)
        return;
    heap_place(timers, last, index);
    heap_fix(timers, index);
}

static void on_uv_timer(uv_timer_t *handle);

/* Points the uv_timer_t at the earliest due time. Starting a timer later than the one armed
 * leaves the uv_timer_t alone (firing early only re-arms it), which keeps the common start
 * and stop of a request's deadline off libuv's heap. */
static void arm(gd_timers_t *timers)
{
    uint64_t now, due, timeout;

    if (timers->is_dispatching || uv_is_closing((uv_handle_t *)&timers->handle))
        return; /* on_uv_timer() arms once its callbacks are done */
    if (timers->count == 0) {
        if (timers->is_armed) {
            uv_timer_stop(&timers->handle);
            timers->is_armed = false;
        }
        return;
    }
    due = timers->heap[0]->_due_ms;
    if (timers->is_armed && due >= timers->armed_due_ms)
        return;
    now = uv_now(timers->loop);
    timeout = due > now ? due - now : 0;
    uv_timer_start(&timers->handle, on_uv_timer, timeout, 0);
    timers->is_armed = true;
    timers->armed_due_ms = now + timeout;
}

static void on_uv_timer(uv_timer_t *handle)
{
    gd_timers_t *timers = handle->data;
    uint64_t now = uv_now(timers->loop);
    uint64_t seq_limit = timers->next_seq;

    timers->is_armed = false; /* a uv_timer_t without repeat stops before its callback */
    timers->is_dispatching = true;
    /* Only timers started before this pass fire in it: one started by a callback, even if
     * already due, waits for a later pass, so callbacks cannot keep this loop going. */
    while (timers->count > 0 && !uv_is_closing((uv_handle_t *)handle)) {
        gd_timer_t *timer = timers->heap[0];
        if (timer->_due_ms > now || timer->_seq >= seq_limit)
            break;
        heap_remove(timers, timer);
        timer->_cb(timer); /* may start, stop or free any timer, this one included */
    }
    timers->is_dispatching = false;
    now = uv_now(timers->loop); /* a callback may have called uv_update_time() */
    if (timers->count > 0 && timers->heap[0]->_due_ms <= now &&
        timers->has_zero_timeout_starvation && !uv_is_closing((uv_handle_t *)handle)) {
        /* A timeout of 1 ms makes libuv poll for I/O before the next pass. */
        uv_timer_start(handle, on_uv_timer, 1, 0);
        timers->is_armed = true;
        timers->armed_due_ms = now + 1;
        return;
    }
    arm(timers);
}

gd_timers_t *gd_timers_new(uv_loop_t *loop)
{
    gd_timers_t *timers = gd_xcalloc(1, sizeof(*timers));

    timers->loop = loop;
    timers->has_zero_timeout_starvation = uv_version() < ((1u << 16) | (48u << 8));
    GD_REQUIRE(uv_timer_init(loop, &timers->handle) == 0); /* cannot fail on Unix */
    timers->handle.data = timers;
    return timers;
}

static void on_handle_closed(uv_handle_t *handle)
{
    gd_timers_t *timers = handle->data;

    free(timers->heap);
    free(timers);
}

gd_timers_t *gd_timers_free(gd_timers_t *timers)
{
    if (timers == NULL)
        return NULL;
    GD_REQUIRE(timers->count == 0);
    /* on_handle_closed() runs in a later loop phase, so this is safe from a timer callback. */
    uv_close((uv_handle_t *)&timers->handle, on_handle_closed);
    return NULL;
}

uint64_t gd_timers_now(const gd_timers_t *timers)
{
    return uv_now(timers->loop);
}

size_t gd_timers_count(const gd_timers_t *timers)
{
    return timers->count;
}

void gd_timer_init(gd_timer_t *timer, gd_timer_cb cb)
{
    timer->_due_ms = 0;
    timer->_heap_index = SIZE_MAX;
    timer->_seq = 0;
    timer->_cb = cb;
}

void gd_timer_start(gd_timers_t *timers, gd_timer_t *timer, uint64_t due_ms)
{
    GD_REQUIRE(timer->_cb != NULL);
    GD_REQUIRE(!uv_is_closing((uv_handle_t *)&timers->handle));
    if (timers->is_dispatching) {
        /* Keeps every timer started by a callback behind the ones this pass still has to
         * fire (see on_uv_timer()): among those already due, start order decides. */
        uint64_t now = uv_now(timers->loop);
        if (due_ms < now)
            due_ms = now;
    }
    timer->_due_ms = due_ms;
    timer->_seq = timers->next_seq++;
    if (timer->_heap_index != SIZE_MAX) {
        GD_REQUIRE(timer->_heap_index < timers->count && timers->heap[timer->_heap_index] == timer);
        heap_fix(timers, timer->_heap_index);
    } else {
        if (timers->count == timers->capacity) {
            timers->capacity = timers->capacity == 0 ? 16 : 2 * timers->capacity;
            timers->heap = gd_xrealloc(timers->heap, timers->capacity * sizeof(timers->heap[0]));
        }
        timers->heap[timers->count] = timer;
        timer->_heap_index = timers->count++;
        sift_up(timers, timer->_heap_index);
    }
    arm(timers);
}

void gd_timer_stop(gd_timers_t *timers, gd_timer_t *timer)
{
    if (timer->_heap_index == SIZE_MAX)
        return;
    GD_REQUIRE(timer->_heap_index < timers->count && timers->heap[timer->_heap_index] == timer);
    heap_remove(timers, timer);
    arm(timers);
}

bool gd_timer_is_active(const gd_timer_t *timer)
{
    return timer->_heap_index != SIZE_MAX;
}
