/*
 * gd_template: call templates such as "/posts?userId={id}&limit={query.limit}" compiled once at
 * config load, expanded per request with every substituted value percent-encoded, so a client
 * can never change an upstream path or add query parameters. Also the percent-encoding codec.
 */
#ifndef GD_TEMPLATE_H
#define GD_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

/* A borrowed byte string (not NUL-terminated). */
typedef struct gd_strv {
    const char *base;
    size_t len;
} gd_strv_t;

/* Where a template variable's value comes from. */
typedef enum gd_src {
    GD_SRC_PATH,   /* {name}: a path capture */
    GD_SRC_QUERY,  /* {query.NAME} */
    GD_SRC_HEADER, /* {header.NAME}; NAME is lower-cased at compile time */
    GD_SRC_JWT,    /* {jwt.NAME}: a claim of the request's verified JWT */
    /* {NAME.path...}, {NAME[...]}, {count(...)}: a reference into a call's result, given to
     * the resolver as written between the braces */
    GD_SRC_CALL,
    /* {item} of a batch endpoint ("for_each" on the endpoint): the item each run is for, filled
     * in by the request, never by the front door */
    GD_SRC_ITEM,
} gd_src_t;

/*
 * Resolves a variable to the index of its value in the array given to gd_template_expand().
 * @name is NUL-terminated, without the source prefix. Returns the index (>= 0), or -1 when the
 * variable is not allowed (e.g. an unknown path capture), with a message in @err (@errlen bytes).
 */
typedef int (*gd_template_resolve_cb)(void *ctx, gd_src_t src, const char *name, char *err,
                                      size_t errlen);

typedef struct gd_template_part {
    /* read-only */
    bool is_literal;
    char *literal; /* is_literal: owned, NUL-terminated */
    size_t literal_len;
    size_t value_index; /* !is_literal: index given by the resolver */
} gd_template_part_t;

typedef struct gd_template {
    /* read-only */
    gd_template_part_t *parts;
    size_t nparts;
} gd_template_t;

/**
 * Compiles @src into @ret. Syntax: literal text and {var}, where var is NAME, query.NAME,
 * header.NAME or jwt.NAME (NAME: 1..64 of A-Z a-z 0-9 - _ .), or a reference into a call's
 * result (any other text without a prefix: GD_SRC_CALL, up to 256 bytes). "{{" and "}}" are literal
 * braces. An {env.NAME} left in @src is an error: those are substituted by gd_template_subst_env()
 * first, where the config allows them. Returns 0, or -EINVAL with a message in @err (unbalanced
 * brace, empty or bad name, the resolver's message). @ret is untouched on error.
 */
int gd_template_compile(const char *src, gd_template_resolve_cb resolve, void *ctx,
                        gd_template_t *ret, char *err, size_t errlen);
/**
 * Substitutes every {env.NAME} in @src with the value of the environment variable NAME, read
 * once, here (config load). NAME is 1 to 128 of A-Z a-z 0-9 _, not starting with a digit.
 * With @is_template, "{{" and "}}" are copied as they are and every brace of a substituted value
 * is doubled, so the result is a template whose other variables are untouched and whose env
 * values are literal text; without, only {env.NAME} is recognised and every other brace is
 * copied as it is (URLs, libpq connection strings).
 * On success *@ret is a new string (caller free()s it) and *@ret_nsubst the number of
 * references substituted. Returns 0, or -EINVAL with a message in @err that names the variable
 * (a bad name, a variable that is not set) and never holds a value; the outputs are untouched.
 */
int gd_template_subst_env(const char *src, bool is_template, char **ret, size_t *ret_nsubst,
                          char *err, size_t errlen);
/** Frees what @t owns (not @t itself). */
void gd_template_dispose(gd_template_t *t);
/**
 * Writes @t with @values substituted (each percent-encoded) into @buf, at most @cap bytes, no
 * NUL. Returns the full length needed, so a caller may size @buf with a first call of @cap 0.
 */
size_t gd_template_expand(const gd_template_t *t, const gd_strv_t *values, char *buf, size_t cap);
/**
 * Like gd_template_expand() but with values inserted as they are, not percent-encoded: for
 * header values and SQL arguments, which are not parts of a URL.
 */
size_t gd_template_expand_raw(const gd_template_t *t, const gd_strv_t *values, char *buf,
                              size_t cap);
/** Upper bound of gd_template_expand()'s length for @values (literals + 3 x each value). */
size_t gd_template_max_len(const gd_template_t *t, const gd_strv_t *values);

/* A value that stands for SQL NULL: its base is this address (and its length 0). */
extern const char gd_template_null[1];
/** Whether @t is exactly one value and that value in @values is gd_template_null. */
bool gd_template_is_null(const gd_template_t *t, const gd_strv_t *values);

#endif
