#include "front/admission.h"

#include <h2o/memory.h>

#include "base/util.h"

void gd_admission_init(gd_admission_t *admission, gd_timers_t *timers, size_t limit)
{
    *admission = (gd_admission_t){.limit = limit > 0 ? limit : 1, ._timers = timers};
    h2o_linklist_init_anchor(&admission->_waiters);
}

void gd_admission_dispose(gd_admission_t *admission)
{
    GD_REQUIRE(admission->held == 0 && admission->waiting == 0);
}

bool gd_admission_try_acquire(gd_admission_t *admission)
{
    if (admission->held >= admission->limit || admission->waiting > 0)
        return false;
    admission->held++;
    return true;
}

bool gd_admission_is_waiting(const gd_admission_waiter_t *waiter)
{
    return waiter->_admission != NULL;
}

/* Takes @waiter out of its queue and stops its deadline; the caller reports to it. */
static void unlink_waiter(gd_admission_waiter_t *waiter)
{
    gd_admission_t *admission = waiter->_admission;

    h2o_linklist_unlink(&waiter->_link);
    gd_timer_stop(admission->_timers, &waiter->_deadline);
    admission->waiting--;
    waiter->_admission = NULL;
}

static void on_deadline(gd_timer_t *timer)
{
    gd_admission_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(gd_admission_waiter_t, _deadline, timer);

    unlink_waiter(waiter);
    waiter->_cb(waiter, false);
}

void gd_admission_wait(gd_admission_t *admission, gd_admission_waiter_t *waiter,
                       uint64_t deadline_ms, gd_admission_cb cb)
{
    GD_REQUIRE(waiter->_admission == NULL);
    waiter->_admission = admission;
    waiter->_cb = cb;
    waiter->_link = (h2o_linklist_t){NULL, NULL};
    h2o_linklist_insert(&admission->_waiters, &waiter->_link);
    admission->waiting++;
    gd_timer_init(&waiter->_deadline, on_deadline);
    /* A deadline already past still fires from the timer heap, never from inside this call. */
    gd_timer_start(admission->_timers, &waiter->_deadline, deadline_ms);
}

void gd_admission_cancel(gd_admission_waiter_t *waiter)
{
    if (waiter->_admission != NULL)
        unlink_waiter(waiter);
}

void gd_admission_release(gd_admission_t *admission)
{
    GD_REQUIRE(admission->held > 0);
    admission->held--;
    if (admission->_is_handing_out)
        return; /* the loop below, further up the stack, hands this slot out */
    admission->_is_handing_out = true;
    /* A slot passes to the first waiter before anyone else can take it: no overtaking. */
    while (admission->held < admission->limit && !h2o_linklist_is_empty(&admission->_waiters)) {
        gd_admission_waiter_t *first =
            H2O_STRUCT_FROM_MEMBER(gd_admission_waiter_t, _link, admission->_waiters.next);
        unlink_waiter(first);
        admission->held++;
        first->_cb(first, true);
    }
    admission->_is_handing_out = false;
}

void gd_admission_refuse_all(gd_admission_t *admission)
{
    while (!h2o_linklist_is_empty(&admission->_waiters)) {
        gd_admission_waiter_t *first =
            H2O_STRUCT_FROM_MEMBER(gd_admission_waiter_t, _link, admission->_waiters.next);
        unlink_waiter(first);
        first->_cb(first, false);
    }
}
