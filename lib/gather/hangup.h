/*
 * gd_hangup: notices that an HTTP/1 client closed its connection while its request is being
 * gathered. h2o 2.2.5 reads nothing from an HTTP/1 connection while it processes a request, so
 * on its own it learns of the close only when it writes the answer; HTTP/2 needs none of this
 * (a reset stream disposes of the request at once).
 *
 * Each watched socket is registered, for EPOLLRDHUP only and one shot, in an epoll set of the
 * thread's own, which libuv polls as one more descriptor: the socket's registration in libuv's
 * own set is untouched, and a watch costs two epoll_ctl calls (so gather/request.c watches
 * only requests that are still gathering after 20 ms). A client that half-closes
 * (shutdown(SHUT_WR)) while its request gathers counts as gone, as with nginx; one that had
 * half-closed before a queued request started is watched for a reset only (gd_hangup_check()).
 */
#ifndef GD_HANGUP_H
#define GD_HANGUP_H

#include <stdbool.h>

#include <h2o.h>
#include <uv.h>

typedef struct gd_hangup gd_hangup_t;
typedef struct gd_hangup_watch gd_hangup_watch_t;

/** Reports that the client of @watch has gone; the watch is over. It may free @watch, and end
 * other requests (which unwatch, and may free, their own watches) before it returns. */
typedef void (*gd_hangup_cb)(gd_hangup_watch_t *watch);

struct gd_hangup_watch {
    /* private */
    gd_hangup_t *_hangup; /* NULL while not watching */
    int _fd;
    gd_hangup_cb _cb;
};

/** Creates the watcher of @loop. Returns NULL (and logs why) when no epoll set can be made. */
gd_hangup_t *gd_hangup_new(uv_loop_t *loop);
/** Closes the watcher; nothing may be watched. The loop must run before gd_hangup_free(). */
void gd_hangup_close(gd_hangup_t *hangup);
/** Frees @hangup (NULL is a no-op) after gd_hangup_close() and the loop's run. Returns NULL. */
gd_hangup_t *gd_hangup_free(gd_hangup_t *hangup);

/**
 * Starts watching the client of @req (HTTP/1 only: returns false for other requests, or when the
 * socket cannot be watched). @cb runs from the loop, never from inside this call. With
 * @is_reset_only (a client that has half-closed already) only a reset or an error counts.
 */
bool gd_hangup_watch(gd_hangup_t *hangup, h2o_req_t *req, gd_hangup_watch_t *watch,
                     bool is_reset_only, gd_hangup_cb cb);
enum {
    GD_HANGUP_OPEN = 0,
    GD_HANGUP_HALF_CLOSED = 1, /* only the client's FIN arrived (TCP_CLOSE_WAIT): answer it */
    GD_HANGUP_GONE = 2,        /* reset, or an error on the socket */
};
/**
 * How the HTTP/1 client of @req stands, checked now (recv with MSG_PEEK, and on an end of stream
 * SO_ERROR and TCP_INFO; nothing read). A close() without a reset looks like a half-close until
 * an answer is written. GD_HANGUP_OPEN for HTTP/2 requests.
 */
int gd_hangup_check(h2o_req_t *req);
/** Stops watching (the socket must still be open, or closed just now); a no-op when @watch is
 * not watching. */
void gd_hangup_unwatch(gd_hangup_watch_t *watch);

#endif
