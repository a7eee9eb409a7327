#include "util.h"

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
