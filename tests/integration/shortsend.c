/*
 * An LD_PRELOAD shim (built for tests only, never installed) that makes send() take fewer bytes
 * than it is given, as a full socket buffer would: GD_SHORTSEND_MAX=N caps each send() at N
 * bytes. gatherd sends request heads with send() and the rest through libuv (write/writev),
 * so this forces the path of a remainder, which loopback's large buffers never take.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef ssize_t (*send_fn)(int, const void *, size_t, int);

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    static send_fn real_send;
    const char *max = getenv("GD_SHORTSEND_MAX");

    if (real_send == NULL)
        real_send = (send_fn)dlsym(RTLD_NEXT, "send");
    if (max != NULL && (size_t)atol(max) < len)
        len = (size_t)atol(max);
    return real_send(fd, buf, len, flags);
}
