/*
 * An LD_PRELOAD shim (built for tests only, never installed) that breaks a connection just as
 * a chosen message is sent, before any byte of it leaves: a send() whose buffer holds the
 * bytes of GD_SENDFAIL_MARKER shuts the socket's reading side and fails with EPIPE, the first
 * GD_SENDFAIL_TIMES times (default 1) in the process. The sender reads EOF after the failed
 * write, as after a peer that hung up; the peer never gets the message and sees the connection
 * end when the sender closes it. Only the reading side: a FIN sent here would be acknowledged,
 * and the acknowledged byte count (tcpi_bytes_acked) would then say something was sent.
 * test_sql_retries: a SQL call whose connection broke before its query was sent.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef ssize_t (*send_fn)(int, const void *, size_t, int);

static atomic_int failed;

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    static send_fn real_send;
    const char *marker = getenv("GD_SENDFAIL_MARKER");
    const char *times = getenv("GD_SENDFAIL_TIMES");
    int limit = times != NULL ? atoi(times) : 1;

    if (real_send == NULL)
        real_send = (send_fn)dlsym(RTLD_NEXT, "send");
    if (marker != NULL && *marker != '\0' && memmem(buf, len, marker, strlen(marker)) != NULL &&
        atomic_fetch_add(&failed, 1) < limit) {
        shutdown(fd, SHUT_RD);
        errno = EPIPE;
        return -1;
    }
    return real_send(fd, buf, len, flags);
}
