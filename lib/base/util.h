/*
 * gd_util: allocation that aborts on failure, invariant checks that stay on in release builds,
 * and small string helpers shared by every module.
 */
#ifndef GD_UTIL_H
#define GD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Aborts with file:line when @expr is false, in every build: a broken invariant that would
 * corrupt state is worse than a restart by the supervisor. */
#define GD_REQUIRE(expr)                                                                           \
    ((expr) ? (void)0 : gd__require_failed(#expr, __FILE__, __LINE__))

_Noreturn void gd__require_failed(const char *expr, const char *file, int line);

/* Allocation that aborts with file:line when memory is exhausted (see STYLE.md section 4). */
#define gd_xmalloc(n) gd__xmalloc((n), __FILE__, __LINE__)
#define gd_xcalloc(n, size) gd__xcalloc((n), (size), __FILE__, __LINE__)
#define gd_xrealloc(p, n) gd__xrealloc((p), (n), __FILE__, __LINE__)
#define gd_xstrdup(s) gd__xstrndup((s), SIZE_MAX, __FILE__, __LINE__)
#define gd_xstrndup(s, n) gd__xstrndup((s), (n), __FILE__, __LINE__)

void *gd__xmalloc(size_t n, const char *file, int line);
void *gd__xcalloc(size_t n, size_t size, const char *file, int line);
void *gd__xrealloc(void *p, size_t n, const char *file, int line);
char *gd__xstrndup(const char *s, size_t n, const char *file, int line);

/** The value of hex digit @c (0-9, A-F, a-f), or -1 when it is none. */
int gd_hex_value(char c);
/** Writes the @n bytes of @src as 2 * @n lower-case hex digits and a NUL into @dst. */
void gd_hex_encode(const unsigned char *src, size_t n, char *dst);
/**
 * Whether @s (@len bytes) is a parameter of type "int": an optional '-' and 1 to 19 digits
 * whose value fits a signed 64-bit integer.
 */
bool gd_is_int64(const char *s, size_t len);
/** Whether @s (of @len bytes) equals the NUL-terminated @lit. */
bool gd_memeq(const char *s, size_t len, const char *lit);

#endif
