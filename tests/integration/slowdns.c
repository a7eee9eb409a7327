/*
 * An LD_PRELOAD shim for the DNS tests (built for tests only, never installed): getaddrinfo()
 * of a name (not of an address) is counted, slowed down, and can be made to fail or to answer
 * an extra address first. Steered by environment variables, read at each call:
 *   GD_SLOWDNS_COUNT=FILE     one byte is appended to FILE per lookup of a name (its size is
 *                             the count, whichever thread looked up)
 *   GD_SLOWDNS_DELAY_MS=N     each lookup of a name takes N ms longer
 *   GD_SLOWDNS_FAIL=FILE      while FILE exists, lookups of names fail with EAI_NONAME
 *   GD_SLOWDNS_FIRST=ADDR     an IPv4 or IPv6 address answered before the real ones
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res);

static int is_address(const char *node)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, node, buf) == 1 || inet_pton(AF_INET6, node, buf) == 1;
}

static void count(void)
{
    const char *path = getenv("GD_SLOWDNS_COUNT");
    if (path == NULL)
        return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    (void)!write(fd, "x", 1); /* a lost count only makes the test's bound looser */
    close(fd);
}

static void delay(void)
{
    const char *ms = getenv("GD_SLOWDNS_DELAY_MS");
    long n = ms != NULL ? strtol(ms, NULL, 10) : 0;
    struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
    while (n > 0 && nanosleep(&ts, &ts) != 0)
        ;
}

/* An addrinfo for @addr and @service, allocated the way glibc's freeaddrinfo() frees it: one
 * block holding the node and its address, no canonical name. */
static struct addrinfo *make_first(const char *addr, const char *service)
{
    struct addrinfo *ai = calloc(1, sizeof(*ai) + sizeof(struct sockaddr_in6));
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(ai + 1);
    struct sockaddr_in *sin = (struct sockaddr_in *)(ai + 1);
    unsigned short port = htons((unsigned short)(service != NULL ? atoi(service) : 0));

    if (ai == NULL)
        return NULL;
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_protocol = IPPROTO_TCP;
    ai->ai_addr = (struct sockaddr *)(ai + 1);
    if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        ai->ai_family = sin6->sin6_family = AF_INET6;
        sin6->sin6_port = port;
        ai->ai_addrlen = sizeof(*sin6);
    } else if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        ai->ai_family = sin->sin_family = AF_INET;
        sin->sin_port = port;
        ai->ai_addrlen = sizeof(*sin);
    } else {
        free(ai);
        return NULL;
    }
    return ai;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    const char *fail = getenv("GD_SLOWDNS_FAIL"), *first = getenv("GD_SLOWDNS_FIRST");

    if (node == NULL || (hints != NULL && (hints->ai_flags & AI_NUMERICHOST)) || is_address(node))
        return real(node, service, hints, res);
    count();
    delay();
    if (fail != NULL && access(fail, F_OK) == 0)
        return EAI_NONAME;
    int r = real(node, service, hints, res);
    struct addrinfo *ai;
    if (r == 0 && first != NULL && (ai = make_first(first, service)) != NULL) {
        ai->ai_next = *res;
        *res = ai;
    }
    return r;
}
