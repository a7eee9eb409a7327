/*
 * gd_expr: the value references of templates that produce JSON (the endpoint's "response"),
 * compiled once at config load. Inside "{...}": a path capture (id), query.NAME, header.NAME,
 * a call's result by name with a path into it (user.address.city, orders[0].id, posts[-1],
 * user["odd key"], posts[1:3], posts[*].id), count(REF), and errors. Evaluation is in
 * gather/eval.h; this module only parses and resolves names.
 */
#ifndef GD_EXPR_H
#define GD_EXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum gd_step_kind {
    GD_STEP_FIELD, /* .name or ["key"] */
    GD_STEP_INDEX, /* [n], negative from the end */
    GD_STEP_SLICE, /* [a:b], either side optional, negative from the end */
    GD_STEP_EACH,  /* [*]: the rest of the path applied to each element of an array */
} gd_step_kind_t;

typedef struct gd_expr_step {
    /* read-only */
    gd_step_kind_t kind;
    char *key; /* GD_STEP_FIELD: owned, decoded (UTF-8), key_len bytes */
    size_t key_len;
    int64_t index;       /* GD_STEP_INDEX */
    bool has_lo, has_hi; /* GD_STEP_SLICE */
    int64_t lo, hi;
} gd_expr_step_t;

typedef enum gd_expr_kind {
    GD_EXPR_PARAM,  /* a request parameter: a JSON string, or a number when is_int */
    GD_EXPR_CALL,   /* a call's result, then steps */
    GD_EXPR_COUNT,  /* count(): the length of the array or object a call reference gives */
    GD_EXPR_ERRORS, /* the "errors" object of the answer, null when nothing failed */
} gd_expr_kind_t;

typedef struct gd_expr {
    /* read-only */
    gd_expr_kind_t kind;
    size_t index; /* GD_EXPR_PARAM: the parameter's; GD_EXPR_CALL, _COUNT: the call's */
    bool is_int;  /* GD_EXPR_PARAM: declared "int" */
    gd_expr_step_t *steps;
    size_t nsteps;
} gd_expr_t;

/* A string template: literal text and references. */
typedef struct gd_text_part {
    /* read-only */
    char *literal; /* owned, literal_len bytes; NULL for a reference */
    size_t literal_len;
    gd_expr_t expr; /* !literal */
} gd_text_part_t;

typedef struct gd_text_template {
    /* read-only */
    gd_text_part_t *parts;
    size_t nparts;
    /* exactly one reference and nothing else: the value keeps its JSON type */
    bool is_typed;
    /* no reference at all: literal text only */
    bool is_literal;
} gd_text_template_t;

/* A piece of the endpoint's "response" template: literal JSON text, then a value. */
typedef struct gd_response_part {
    /* read-only */
    char *json; /* owned literal JSON text written before the value */
    size_t json_len;
    bool has_value; /* false for the last part only */
    gd_text_template_t value;
} gd_response_part_t;

/* The endpoint's "response": the answer's JSON template, compiled. */
typedef struct gd_response {
    /* read-only */
    gd_response_part_t *parts;
    size_t nparts;
    bool is_object;     /* the template is an object: "errors" goes in as its last key */
    bool places_errors; /* some string is "{errors}": nothing is added */
} gd_response_t;

/** Frees @r and what it owns (NULL is a no-op). Returns NULL. */
gd_response_t *gd_response_free(gd_response_t *r);

/* What names mean where a template is compiled. */
typedef struct gd_expr_scope {
    /* the calls that may be referenced, by name (in config order: the index is the call's) */
    const char *const *call_names;
    size_t ncalls;
    /*
     * Resolves a parameter: @src is 0 for a path capture, 1 for query.NAME, 2 for header.NAME
     * (NAME lower-cased); returns its index and sets *@ret_is_int, or -1 when there is none
     * (only possible for a capture).
     */
    int (*resolve_param)(void *ctx, int src, const char *name, bool *ret_is_int);
    void *ctx;
    /* {item} (and paths into it) may be referenced: the templates of a call with "for_each".
     * It compiles as a call reference (GD_EXPR_CALL) of index ncalls, one past the calls. */
    bool has_item;
} gd_expr_scope_t;

/**
 * Compiles the template string @src into @ret: literal text, "{{" and "}}" for braces, and
 * "{EXPR}" references. Returns 0, or -EINVAL with a one-line message in @err (a syntax error,
 * an unknown call or source, a source not available in responses); @ret untouched on error.
 */
int gd_text_template_compile(const char *src, const gd_expr_scope_t *scope, gd_text_template_t *ret,
                             char *err, size_t errlen);
/** Frees what @e owns (not @e). */
void gd_expr_dispose(gd_expr_t *e);
/** Frees what @t owns (not @t). */
void gd_text_template_dispose(gd_text_template_t *t);
/**
 * Compiles @src, a path into a document without a name before it ("data.items", "[0].id",
 * "items[*].id", "[\"odd key\"]"), into @ret (kind GD_EXPR_CALL, index 0). Returns 0, or
 * -EINVAL with a one-line message in @err (empty, a syntax error); @ret untouched on error.
 */
int gd_expr_path_compile(const char *src, gd_expr_t *ret, char *err, size_t errlen);
/** Frees what @e owns (not @e). */
void gd_expr_dispose(gd_expr_t *e);
/** Whether @name may not name a call: query, header, body, env, item, errors. */
bool gd_expr_is_reserved_name(const char *name);

#endif
