/*
 * gd_eval: evaluates compiled references (config/expr.h) against call results and request
 * parameters, writing JSON text. It navigates the results' validated bytes (json/json.h) and
 * copies what it selects, never building a tree. The inputs are plain spans, so dependent calls
 * can evaluate their templates against the results that have arrived.
 */
#ifndef GD_EVAL_H
#define GD_EVAL_H

#include <stdbool.h>
#include <stddef.h>

#include "config/expr.h"
#include "config/template.h"

/* A growing output buffer (heap, gd_xrealloc: outputs are bounded by the calls' max_body_bytes
 * times the references of the template). */
typedef struct gd_jbuf {
    char *buf; /* owned: free() */
    size_t len, cap;
} gd_jbuf_t;

void gd_jbuf_put(gd_jbuf_t *b, const char *s, size_t len);

/* What references see. */
typedef struct gd_eval_env {
    const gd_strv_t *calls; /* per call: its validated JSON result; base NULL: failed (null) */
    size_t ncalls;
    const gd_strv_t *values; /* the endpoint's parameter values, by index */
    gd_strv_t errors;        /* the answer's "errors" object; base NULL: nothing failed */
} gd_eval_env_t;

/**
 * Appends the value of @e as JSON to @out: a parameter as a string (a number for an int one,
 * null when absent), a call's result or the part of it the path selects (null for a failed call
 * or a missing path), count() as a number (null when not an array or object).
 */
void gd_eval_expr(const gd_expr_t *e, const gd_eval_env_t *env, gd_jbuf_t *out);
/**
 * Like gd_eval_expr(), but returns false (having written null) when what @e names is missing:
 * a call without a result, a field or element the path does not find, a slice or [*] of
 * something else than an array, count() of something else than an array or object. Call
 * templates fail on a miss where an answer shows null.
 */
bool gd_eval_ref(const gd_expr_t *e, const gd_eval_env_t *env, gd_jbuf_t *out);
/**
 * Appends @t as JSON: a typed template as its one value, any other as a string in which each
 * value is its text (a string's characters, null as nothing, others as their JSON).
 */
void gd_eval_text(const gd_text_template_t *t, const gd_eval_env_t *env, gd_jbuf_t *out);

#endif
