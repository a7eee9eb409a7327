/*
 * Unit test runner: each test_<module>.c defines gd_test_cases[] and links with runner.c, which
 * supplies main(). Every case runs in a child process with a timeout, so a crash or a hang
 * names its case. Usage: test_<module> [CASE...] (no argument: all cases).
 */
#ifndef GD_TEST_RUNNER_H
#define GD_TEST_RUNNER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gd_test_case {
    const char *name;
    void (*fn)(void);
} gd_test_case_t;

/* Defined by each test file, terminated by {NULL, NULL}. */
extern const gd_test_case_t gd_test_cases[];

_Noreturn void gd__test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(expr)                                                                                \
    ((expr) ? (void)0 : gd__test_fail(__FILE__, __LINE__, "CHECK(%s) failed", #expr))

#define CHECK_INT_EQ(a, b)                                                                         \
    do {                                                                                           \
        long long gd__a = (long long)(a), gd__b = (long long)(b);                                  \
        if (gd__a != gd__b)                                                                        \
            gd__test_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, gd__a, #b,    \
                          gd__b);                                                                  \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *gd__a = (a), *gd__b = (b);                                                     \
        if (gd__a == NULL || gd__b == NULL || strcmp(gd__a, gd__b) != 0)                           \
            gd__test_fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a,                 \
                          gd__a ? gd__a : "(null)", gd__b ? gd__b : "(null)");                     \
    } while (0)

/* Compares @len bytes at @a with the NUL-terminated @b. */
#define CHECK_MEM_EQ(a, len, b)                                                                    \
    do {                                                                                           \
        const char *gd__a = (a), *gd__b = (b);                                                     \
        size_t gd__len = (len);                                                                    \
        if (gd__len != strlen(gd__b) || memcmp(gd__a, gd__b, gd__len) != 0)                        \
            gd__test_fail(__FILE__, __LINE__, "%s == \"%.*s\", expected \"%s\"", #a,               \
                          (int)gd__len, gd__a, gd__b);                                             \
    } while (0)

#endif
