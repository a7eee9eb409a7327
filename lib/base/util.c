#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gd__require_failed(const char *expr, const char *file, int line)
{
    fprintf(stderr, "gatherd: %s:%d: invariant broken: %s\n", file, line, expr);
    abort();
}

static _Noreturn void out_of_memory(size_t n, const char *file, int line)
{
    fprintf(stderr, "gatherd: %s:%d: out of memory allocating %zu bytes\n", file, line, n);
    abort();
}

void *gd__xmalloc(size_t n, const char *file, int line)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL)
        out_of_memory(n, file, line);
    return p;
}

void *gd__xcalloc(size_t n, size_t size, const char *file, int line)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL)
        out_of_memory(n * size, file, line);
    return p;
}

void *gd__xrealloc(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    if (q == NULL)
        out_of_memory(n, file, line);
    return q;
}

char *gd__xstrndup(const char *s, size_t n, const char *file, int line)
{
    size_t len = strnlen(s, n);
    char *p = gd__xmalloc(len + 1, file, line);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

bool gd_memeq(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

int gd_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

void gd_hex_encode(const unsigned char *src, size_t n, char *dst)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = digits[src[i] >> 4];
        dst[2 * i + 1] = digits[src[i] & 0xf];
    }
    dst[2 * n] = '\0';
}

bool gd_is_int64(const char *s, size_t len)
{
    size_t i = len > 0 && s[0] == '-' ? 1 : 0;
    uint64_t v = 0;

    if (len - i < 1 || len - i > 19)
        return false;
    for (size_t j = i; j < len; j++) {
        if (s[j] < '0' || s[j] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[j] - '0'); /* 19 digits cannot overflow 64 bits */
    }
    return i == 1 ? v <= (uint64_t)INT64_MAX + 1 : v <= (uint64_t)INT64_MAX;
}
