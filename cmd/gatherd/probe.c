#include "probe.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for @events on @fd until @deadline; 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    uint64_t now = now_ms();

    if (now >= deadline)
        return -ETIMEDOUT;
    int r = poll(&p, 1, (int)(deadline - now));
    return r > 0 ? 0 : r == 0 ? -ETIMEDOUT : -errno;
}

/* A lookup on a thread of its own, so that the probe's timeout bounds it too: getaddrinfo()
 * has none, and a dead resolver holds it for its own timeouts and attempts (30 s and more).
 * Shared by the waiter and the thread; the last one to let go frees it. */
struct lookup {
    pthread_mutex_t mutex;
    pthread_cond_t done_cond;
    int refs;
    bool is_done;
    int gai_error;
    char host[256], port[16];
    struct addrinfo *ai;
};

static void lookup_release(struct lookup *l)
{
    pthread_mutex_lock(&l->mutex);
    bool is_last = --l->refs == 0;
    pthread_mutex_unlock(&l->mutex);
    if (!is_last)
        return;
    if (l->ai != NULL)
        freeaddrinfo(l->ai);
    pthread_mutex_destroy(&l->mutex);
    pthread_cond_destroy(&l->done_cond);
    free(l);
}

static void *lookup_main(void *arg)
{
    struct lookup *l = arg;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int r = getaddrinfo(l->host, l->port, &hints, &ai);

    pthread_mutex_lock(&l->mutex);
    l->gai_error = r;
    l->ai = r == 0 ? ai : NULL;
    l->is_done = true;
    pthread_cond_signal(&l->done_cond);
    pthread_mutex_unlock(&l->mutex);
    lookup_release(l);
    return NULL;
}

/* Resolves @host:@port by @deadline: 0 with *@ret_ai (freeaddrinfo() it), -ETIMEDOUT, or
 * -EHOSTUNREACH with the reason in @err. */
static int resolve(const char *host, const char *port, uint64_t deadline, struct addrinfo **ret_ai,
                   char *err, size_t errlen)
{
    struct lookup *l = calloc(1, sizeof(*l));
    pthread_condattr_t attr;
    pthread_t thread;
    int r = 0;

    if (l == NULL)
        return -ENOMEM;
    pthread_mutex_init(&l->mutex, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&l->done_cond, &attr);
    pthread_condattr_destroy(&attr);
    snprintf(l->host, sizeof(l->host), "%s", host);
    snprintf(l->port, sizeof(l->port), "%s", port);
    l->refs = 2;
    if (pthread_create(&thread, NULL, lookup_main, l) != 0) {
        l->refs = 1;
        lookup_release(l);
        return -EAGAIN;
    }
    pthread_detach(thread);
    struct timespec until = {.tv_sec = (time_t)(deadline / 1000),
                             .tv_nsec = (long)(deadline % 1000) * 1000000};
    pthread_mutex_lock(&l->mutex);
    while (!l->is_done && r == 0)
        r = pthread_cond_timedwait(&l->done_cond, &l->mutex, &until);
    if (l->is_done && l->gai_error == 0) {
        *ret_ai = l->ai;
        l->ai = NULL;
        r = 0;
    } else if (l->is_done) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(l->gai_error));
        r = -EHOSTUNREACH;
    } else {
        r = -ETIMEDOUT; /* the thread finishes, or dies with the process, on its own */
    }
    pthread_mutex_unlock(&l->mutex);
    lookup_release(l);
    return r;
}

static int parse_url(const char *url, char *host, size_t hostcap, char *port, size_t portcap,
                     const char **path)
{
    const char *h, *end;

    if (strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    h = url + 7;
    *path = strchr(h, '/');
    if (*path == NULL)
        *path = h + strlen(h);
    if (*h == '[') { /* [IPv6]:port */
        end = memchr(h, ']', (size_t)(*path - h));
        if (end == NULL)
            return -EINVAL;
        snprintf(host, hostcap, "%.*s", (int)(end - h - 1), h + 1);
        end++;
    } else {
        end = memchr(h, ':', (size_t)(*path - h));
        if (end == NULL)
            end = *path;
        snprintf(host, hostcap, "%.*s", (int)(end - h), h);
    }
    if (*end == ':')
        snprintf(port, portcap, "%.*s", (int)(*path - end - 1), end + 1);
    else
        snprintf(port, portcap, "80");
    if (**path == '\0')
        *path = "/";
    return host[0] != '\0' && port[0] != '\0' ? 0 : -EINVAL;
}

int gd_probe(const char *url, uint64_t timeout_ms, char *err, size_t errlen)
{
    uint64_t deadline = now_ms() + timeout_ms;
    struct addrinfo *ai = NULL;
    char host[256], port[16], buf[512];
    const char *path;
    size_t len = 0;
    int fd = -1, r, status;

    if (parse_url(url, host, sizeof(host), port, sizeof(port), &path) != 0) {
        snprintf(err, errlen, "not an http://HOST:PORT/PATH URL: %s", url);
        return -EINVAL;
    }
    if ((r = resolve(host, port, deadline, &ai, err, errlen)) != 0) {
        if (r != -EHOSTUNREACH)
            snprintf(err, errlen, "cannot resolve %s: %s", host,
                     r == -ETIMEDOUT ? "timed out" : strerror(-r));
        return r == -ETIMEDOUT ? r : -EHOSTUNREACH;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        r = -errno;
        goto fail;
    }
    if ((r = wait_fd(fd, POLLOUT, deadline)) != 0)
        goto fail;
    socklen_t sl = sizeof(r);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &r, &sl) != 0 || r != 0) {
        r = -(r != 0 ? r : errno);
        goto fail;
    }
    int n = snprintf(buf, sizeof(buf), "GET %s HTTP/1.0\r\nHost: %s:%s\r\nUser-Agent: gatherd-probe\r\n\r\n",
                     path, host, port);
    if (n < 0 || (size_t)n >= sizeof(buf) || send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n) {
        r = n < 0 || (size_t)n >= sizeof(buf) ? -E2BIG : -errno;
        goto fail;
    }
    while (len < 12) { /* "HTTP/1.x NNN" */
        if ((r = wait_fd(fd, POLLIN, deadline)) != 0)
            goto fail;
        ssize_t got = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (got <= 0) {
            r = got == 0 ? -EPROTO : -errno;
            if (r == -EAGAIN)
                continue;
            goto fail;
        }
        len += (size_t)got;
    }
    buf[len] = '\0';
    if (strncmp(buf, "HTTP/1.", 7) != 0 || sscanf(buf + 9, "%3d", &status) != 1) {
        r = -EPROTO;
        goto fail;
    }
    close(fd);
    freeaddrinfo(ai);
    return status;

fail:
    snprintf(err, errlen, "GET %s failed: %s", url,
             r == -ETIMEDOUT ? "timed out" : r == -EPROTO ? "not an HTTP answer" : strerror(-r));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return r;
}
