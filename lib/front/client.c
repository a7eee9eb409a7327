#include "front/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define MAX_HOPS 64 /* addresses of a header examined, from the right */

bool gd_client_is_trusted(const gd_config_t *config, int family, const unsigned char *addr)
{
    for (size_t i = 0; i < config->ntrusted_proxies; i++) {
        const gd_cidr_t *c = &config->trusted_proxies[i];
        unsigned full = c->prefix_len / 8, rest = c->prefix_len % 8;
        if (c->family != family || memcmp(c->addr, addr, full) != 0)
            continue;
        if (rest == 0 || ((addr[full] ^ c->addr[full]) & (0xff << (8 - rest)) & 0xff) == 0)
            return true;
    }
    return false;
}

/* Parses one address of a header: "192.0.2.1", "192.0.2.1:8080", "2001:db8::1",
 * "[2001:db8::1]" or "[2001:db8::1]:8080", surrounding blanks and quotes dropped. An IPv4-mapped
 * IPv6 address is taken as the IPv4 one. */
static bool parse_hop(const char *s, size_t len, int *ret_family, unsigned char *ret_addr)
{
    char text[INET6_ADDRSTRLEN + 1];

    while (len > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '"'))
        s++, len--;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '"'))
        len--;
    if (len > 0 && s[0] == '[') {
        const char *end = memchr(s, ']', len);
        if (end == NULL)
            return false;
        s++;
        len = (size_t)(end - s);
    } else if (len > 0 && memchr(s, '.', len) != NULL) {
        const char *colon = memchr(s, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) == NULL)
            len = (size_t)(colon - s); /* IPv4 with a port */
    }
    if (len == 0 || len >= sizeof(text))
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    if (inet_pton(AF_INET, text, ret_addr) == 1) {
        *ret_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, ret_addr) != 1)
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(ret_addr, mapped, 12) == 0) {
        memmove(ret_addr, ret_addr + 12, 4);
        *ret_family = AF_INET;
    } else {
        *ret_family = AF_INET6;
    }
    return true;
}

/* The hops of @values (list fields, in order), rightmost first: for X-Forwarded-For each
 * element; for Forwarded each element's for= parameter (an element without one counts as a hop
 * that cannot be parsed). Returns the number found, at most @max, in @ret. */
static size_t list_hops(const h2o_iovec_t *values, size_t n, bool is_forwarded, h2o_iovec_t *ret,
                        size_t max)
{
    size_t count = 0;

    for (size_t f = n; f-- > 0 && count < max;) {
        const char *base = values[f].base;
        size_t end = values[f].len;
        while (count < max) {
            size_t start = end;
            while (start > 0 && base[start - 1] != ',')
                start--;
            h2o_iovec_t elem = h2o_iovec_init(base + start, end - start);
            if (is_forwarded) {
                /* "for=192.0.2.60;proto=http;by=203.0.113.43" (RFC 7239 section 4) */
                h2o_iovec_t found = {NULL, 0};
                size_t i = 0;
                while (i < elem.len) {
                    size_t j = i;
                    while (j < elem.len && elem.base[j] != ';')
                        j++;
                    const char *p = elem.base + i;
                    size_t plen = j - i;
                    while (plen > 0 && (*p == ' ' || *p == '\t'))
                        p++, plen--;
                    if (plen >= 4 && strncasecmp(p, "for=", 4) == 0)
                        found = h2o_iovec_init(p + 4, plen - 4);
                    i = j + 1;
                }
                elem = found;
            }
            bool is_blank = true;
            for (size_t i = 0; i < elem.len; i++)
                if (elem.base[i] != ' ' && elem.base[i] != '\t')
                    is_blank = false;
            if (!(is_blank && !is_forwarded)) /* empty list elements are allowed (RFC 9110 5.6.1) */
                ret[count++] = elem;
            if (start == 0)
                break;
            end = start - 1;
        }
    }
    return count;
}

void gd_client_resolve(const gd_config_t *config, const char *peer, const h2o_iovec_t *xff,
                       size_t nxff, const h2o_iovec_t *fwd, size_t nfwd, char *buf, size_t cap)
{
    unsigned char addr[16];
    int family;
    h2o_iovec_t hops[MAX_HOPS];
    size_t nhops;

    snprintf(buf, cap, "%s", peer);
    if (!parse_hop(peer, strlen(peer), &family, addr) ||
        !gd_client_is_trusted(config, family, addr))
        return;
    nhops = nxff > 0 ? list_hops(xff, nxff, false, hops, MAX_HOPS)
                     : list_hops(fwd, nfwd, true, hops, MAX_HOPS);
    /* From the right: the first address that is not a trusted proxy is the client. A hop that
     * does not parse ("unknown", an obfuscated name) ends the walk at the last address that
     * did: what is left of it cannot be told apart from what the client made up. */
    for (size_t i = 0; i < nhops; i++) {
        if (!parse_hop(hops[i].base, hops[i].len, &family, addr))
            break;
        char text[INET6_ADDRSTRLEN];
        inet_ntop(family, addr, text, sizeof(text));
        snprintf(buf, cap, "%s", text);
        if (!gd_client_is_trusted(config, family, addr))
            break;
    }
}

/* Writes @a (4 bytes, network order) as "a.b.c.d" with a NUL into @out (INET_ADDRSTRLEN bytes),
 * as inet_ntop() does, which goes through sprintf(): 1.9k instructions of every request on the
 * profile workload, these a tenth of it. */
static void format_ipv4(const unsigned char *a, char *out)
{
    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100)
            *out++ = (char)('0' + v / 100);
        if (v >= 10)
            *out++ = (char)('0' + v / 10 % 10);
        *out++ = (char)('0' + v % 10);
        *out++ = i < 3 ? '.' : '\0';
    }
}

const char *gd_client_identify(const gd_config_t *config, h2o_req_t *req)
{
    struct sockaddr_storage ss;
    char peer[INET6_ADDRSTRLEN] = "-";
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    char *out = h2o_mem_alloc_pool(&req->pool, INET6_ADDRSTRLEN);

    if (len > 0 && ss.ss_family == AF_INET)
        format_ipv4((const unsigned char *)&((struct sockaddr_in *)&ss)->sin_addr, peer);
    else if (len > 0 && ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, peer, sizeof(peer));
    if (config->ntrusted_proxies == 0) {
        memcpy(out, peer, strlen(peer) + 1);
        return out;
    }
    h2o_iovec_t xff[16], fwd[16];
    size_t nxff = 0, nfwd = 0;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        if (h2o_memis(h->name->base, h->name->len, H2O_STRLIT("x-forwarded-for")) && nxff < 16)
            xff[nxff++] = h->value;
        else if (h2o_memis(h->name->base, h->name->len, H2O_STRLIT("forwarded")) && nfwd < 16)
            fwd[nfwd++] = h->value;
    }
    gd_client_resolve(config, peer, xff, nxff, fwd, nfwd, out, INET6_ADDRSTRLEN);
    return out;
}
