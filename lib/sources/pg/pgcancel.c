#include "sources/pg/pgcancel.h"

#include <pthread.h>
#include <stdlib.h>

#include <h2o/linklist.h>

#include "base/util.h"

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum req_state {
    REQ_QUEUED = 1, /* in shared.queue */
    REQ_SENDING,    /* the thread's */
    REQ_DONE,       /* in shared.done, for the loop */
};

struct gd_pgcancel_req {
    h2o_linklist_t link;  /* in shared.queue or shared.done, under shared.lock */
    enum req_state state; /* under shared.lock */
    PGcancel *cancel;     /* owned */
    gd_pgcancel_cb cb;
    void *data;
    bool is_withdrawn; /* loop only: freed without the callback once done */
    /* written by the thread while REQ_SENDING, read by the loop once REQ_DONE */
    bool is_ok;
    char errbuf[256];
};

/*
 * What the loop and the thread share, under lock. It is reference-counted because the thread
 * may outlive the canceller: a close that gives up waiting leaves the thread to finish its
 * request, and the last of the two frees this.
 */
struct shared {
    uv_mutex_t lock;
    uv_cond_t wake;
    h2o_linklist_t queue; /* requests to send, oldest first */
    size_t queued;
    h2o_linklist_t done; /* requests sent, for the loop */
    bool is_stopping;    /* the thread exits instead of taking the next request */
    bool has_exited;     /* the thread touches nothing of the canceller any more */
    /* The loop has let go (a close that stopped waiting): the thread frees what it finishes
     * and never sends on async, which the loop has closed. */
    bool is_detached;
    uv_async_t *async; /* the canceller's; sent to only while !is_detached, under lock */
    int refs;
};

struct gd_pgcancel {
    uv_loop_t *loop;
    struct shared *sh;
    uv_thread_t thread;
    bool has_thread;
    bool has_start_failed; /* no thread could be made: requests are refused */
    bool is_closing;
    uv_async_t async;      /* the thread's "done" to the loop; open while has_thread */
    uv_timer_t stop_timer; /* bounds the wait for the thread at close */
    size_t handles_open;
};

static void req_free(gd_pgcancel_req_t *req)
{
    PQfreeCancel(req->cancel);
    free(req);
}

/* Drops one reference to @sh, which the caller holds locked; frees it on the last. */
static void shared_release_locked(struct shared *sh)
{
    bool is_last = --sh->refs == 0;

    uv_mutex_unlock(&sh->lock);
    if (!is_last)
        return;
    /* Both sides are gone: whatever is left was never going to be delivered. */
    while (!h2o_linklist_is_empty(&sh->done)) {
        gd_pgcancel_req_t *req = CONTAINER_OF(sh->done.next, gd_pgcancel_req_t, link);
        h2o_linklist_unlink(&req->link);
        req_free(req);
    }
    uv_cond_destroy(&sh->wake);
    uv_mutex_destroy(&sh->lock);
    free(sh);
}

/* -- the thread --------------------------------------------------------------------------- */

static void run_thread(void *arg)
{
    struct shared *sh = arg;

    uv_mutex_lock(&sh->lock);
    while (!sh->is_stopping) {
        if (h2o_linklist_is_empty(&sh->queue)) {
            uv_cond_wait(&sh->wake, &sh->lock);
            continue;
        }
        gd_pgcancel_req_t *req = CONTAINER_OF(sh->queue.next, gd_pgcancel_req_t, link);
        h2o_linklist_unlink(&req->link);
        sh->queued--;
        req->state = REQ_SENDING;
        uv_mutex_unlock(&sh->lock);
        /* Blocks for a round trip on a new connection to the server: why it runs here. */
        req->is_ok = PQcancel(req->cancel, req->errbuf, (int)sizeof(req->errbuf)) == 1;
        uv_mutex_lock(&sh->lock);
        req->state = REQ_DONE;
        if (sh->is_detached) {
            req_free(req);
        } else {
            h2o_linklist_insert(&sh->done, &req->link);
            uv_async_send(sh->async);
        }
    }
    sh->has_exited = true;
    if (!sh->is_detached)
        uv_async_send(sh->async);
    shared_release_locked(sh);
}

/* -- the loop ----------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle)
{
    gd_pgcancel_t *k = handle->data;

    k->handles_open--;
}

/* The thread has exited or been let go: the loop side's handles and reference go. */
static void close_handles(gd_pgcancel_t *k)
{
    uv_timer_stop(&k->stop_timer);
    uv_close((uv_handle_t *)&k->stop_timer, on_handle_closed);
    uv_close((uv_handle_t *)&k->async, on_handle_closed);
    k->has_thread = false;
}

static void on_done(uv_async_t *async)
{
    gd_pgcancel_t *k = async->data;
    struct shared *sh = k->sh;
    h2o_linklist_t done;
    bool has_exited;

    h2o_linklist_init_anchor(&done);
    uv_mutex_lock(&sh->lock);
    h2o_linklist_insert_list(&done, &sh->done);
    has_exited = sh->has_exited;
    uv_mutex_unlock(&sh->lock);
    /* A callback may send or withdraw other requests: the list is ours alone by now. */
    while (!h2o_linklist_is_empty(&done)) {
        gd_pgcancel_req_t *req = CONTAINER_OF(done.next, gd_pgcancel_req_t, link);
        h2o_linklist_unlink(&req->link);
        if (!req->is_withdrawn && !k->is_closing)
            req->cb(req->data, req->is_ok, req->errbuf);
        req_free(req);
    }
    if (has_exited && k->has_thread) {
        /* The thread has left its loop: the join waits at most for its return. */
        uv_thread_join(&k->thread);
        close_handles(k);
        uv_mutex_lock(&sh->lock);
        shared_release_locked(sh);
        k->sh = NULL;
    }
}

/* The thread is still sending a cancel when the close stops waiting for it. */
static void on_stop_timeout(uv_timer_t *timer)
{
    gd_pgcancel_t *k = timer->data;
    struct shared *sh = k->sh;

    uv_mutex_lock(&sh->lock);
    sh->is_detached = true;
    while (!h2o_linklist_is_empty(&sh->done)) {
        gd_pgcancel_req_t *req = CONTAINER_OF(sh->done.next, gd_pgcancel_req_t, link);
        h2o_linklist_unlink(&req->link);
        req_free(req);
    }
    /* The thread frees its request and exits once PQcancel() returns (or with the process). */
    (void)pthread_detach(k->thread); /* uv_thread_t is a pthread_t; fails only if joined */
    shared_release_locked(sh);
    k->sh = NULL;
    close_handles(k);
}

static bool start_thread(gd_pgcancel_t *k)
{
    k->has_start_failed = true; /* until it has worked */
    if (uv_async_init(k->loop, &k->async, on_done) != 0)
        return false;
    k->async.data = k;
    k->handles_open++;
    GD_REQUIRE(uv_timer_init(k->loop, &k->stop_timer) == 0); /* cannot fail on Unix */
    k->stop_timer.data = k;
    k->handles_open++;
    k->sh->refs++; /* the thread's */
    if (uv_thread_create(&k->thread, run_thread, k->sh) != 0) {
        k->sh->refs--;
        uv_close((uv_handle_t *)&k->stop_timer, on_handle_closed);
        uv_close((uv_handle_t *)&k->async, on_handle_closed);
        return false;
    }
    k->has_thread = true;
    k->has_start_failed = false;
    return true;
}

gd_pgcancel_t *gd_pgcancel_new(uv_loop_t *loop)
{
    gd_pgcancel_t *k = gd_xcalloc(1, sizeof(*k));
    struct shared *sh = gd_xcalloc(1, sizeof(*sh));

    GD_REQUIRE(uv_mutex_init(&sh->lock) == 0 && uv_cond_init(&sh->wake) == 0);
    h2o_linklist_init_anchor(&sh->queue);
    h2o_linklist_init_anchor(&sh->done);
    sh->async = &k->async;
    sh->refs = 1; /* the canceller's */
    k->loop = loop;
    k->sh = sh;
    return k;
}

gd_pgcancel_req_t *gd_pgcancel_send(gd_pgcancel_t *k, PGcancel *cancel, gd_pgcancel_cb cb,
                                    void *data)
{
    struct shared *sh = k->sh;
    gd_pgcancel_req_t *req;

    GD_REQUIRE(!k->is_closing);
    uv_mutex_lock(&sh->lock);
    bool is_full = sh->queued >= GD_PGCANCEL_QUEUE_MAX;
    uv_mutex_unlock(&sh->lock);
    if (is_full || k->has_start_failed || (!k->has_thread && !start_thread(k))) {
        PQfreeCancel(cancel);
        return NULL;
    }
    req = gd_xcalloc(1, sizeof(*req));
    req->cancel = cancel;
    req->cb = cb;
    req->data = data;
    uv_mutex_lock(&sh->lock);
    req->state = REQ_QUEUED;
    h2o_linklist_insert(&sh->queue, &req->link);
    sh->queued++;
    uv_cond_signal(&sh->wake);
    uv_mutex_unlock(&sh->lock);
    return req;
}

bool gd_pgcancel_withdraw(gd_pgcancel_t *k, gd_pgcancel_req_t *req)
{
    struct shared *sh = k->sh;
    bool is_queued;

    uv_mutex_lock(&sh->lock);
    is_queued = req->state == REQ_QUEUED;
    if (is_queued) {
        h2o_linklist_unlink(&req->link);
        sh->queued--;
    }
    uv_mutex_unlock(&sh->lock);
    if (is_queued) {
        req_free(req);
        return true;
    }
    req->is_withdrawn = true; /* being sent, or done and not yet delivered: freed by on_done() */
    return false;
}

void gd_pgcancel_close(gd_pgcancel_t *k, uint64_t timeout_ms)
{
    struct shared *sh = k->sh;

    if (k->is_closing)
        return;
    k->is_closing = true;
    uv_mutex_lock(&sh->lock);
    sh->is_stopping = true;
    while (!h2o_linklist_is_empty(&sh->queue)) {
        gd_pgcancel_req_t *req = CONTAINER_OF(sh->queue.next, gd_pgcancel_req_t, link);
        h2o_linklist_unlink(&req->link);
        req_free(req);
    }
    sh->queued = 0;
    uv_cond_signal(&sh->wake);
    uv_mutex_unlock(&sh->lock);
    if (k->has_thread) {
        /* on_done() joins the thread when it says it has exited; the timer bounds that. The
         * loop may not have run for a while (a close after uv_run() returned): the timer counts
         * from now, not from the loop's last look at the clock. */
        uv_update_time(k->loop);
        GD_REQUIRE(uv_timer_start(&k->stop_timer, on_stop_timeout, timeout_ms, 0) == 0);
        return;
    }
    uv_mutex_lock(&sh->lock);
    shared_release_locked(sh);
    k->sh = NULL;
}

bool gd_pgcancel_is_settled(const gd_pgcancel_t *k)
{
    return k->is_closing && k->sh == NULL && k->handles_open == 0;
}

gd_pgcancel_t *gd_pgcancel_free(gd_pgcancel_t *k)
{
    if (k == NULL)
        return NULL;
    GD_REQUIRE(k->is_closing && k->sh == NULL && k->handles_open == 0);
    free(k);
    return NULL;
}
