#include "config/expr.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define MAX_NAME_LEN 64
#define MAX_STEPS    64

static const char *const reserved_names[] = {"query", "header", "body", "env",
                                             "item",  "errors", NULL};

bool gd_expr_is_reserved_name(const char *name)
{
    for (size_t i = 0; reserved_names[i] != NULL; i++)
        if (strcmp(name, reserved_names[i]) == 0)
            return true;
    return false;
}

static bool is_ident_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The parser's state over one "{...}": @p moves, @start is the '{' for messages. */
struct parser {
    const char *p;
    const char *start;
    const gd_expr_scope_t *scope;
    char *err;
    size_t errlen;
};

/* The reference as written, up to its '}' (or 60 bytes), for messages. */
static void shown(const struct parser *ps, char *out, size_t outlen)
{
    size_t n = strcspn(ps->start, "}");
    bool is_cut = n > 60;

    if (is_cut)
        n = 60;
    else if (ps->start[n] == '}')
        n++;
    snprintf(out, outlen, "%.*s%s", (int)n, ps->start, is_cut ? "..." : "");
    for (char *c = out; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

__attribute__((format(printf, 2, 3))) static int fail(struct parser *ps, const char *fmt, ...)
{
    char what[256], ref[80];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    shown(ps, ref, sizeof(ref));
    snprintf(ps->err, ps->errlen, "\"%s\": %s", ref, what);
    return -EINVAL;
}

static size_t ident_len(const char *p)
{
    size_t n = 0;

    if (!is_ident_start(*p))
        return 0;
    while (is_ident_char(p[n]))
        n++;
    return n;
}

void gd_expr_dispose(gd_expr_t *e)
{
    for (size_t i = 0; i < e->nsteps; i++)
        free(e->steps[i].key);
    free(e->steps);
    e->steps = NULL;
    e->nsteps = 0;
}

static gd_expr_step_t *add_step(gd_expr_t *e)
{
    e->steps = gd_xrealloc(e->steps, (e->nsteps + 1) * sizeof(*e->steps));
    memset(&e->steps[e->nsteps], 0, sizeof(e->steps[0]));
    return &e->steps[e->nsteps++];
}

/* An optional integer: -?[0-9]{1,18}. Returns 1 when one was read, 0 when none, -1 on error. */
static int parse_int(struct parser *ps, int64_t *ret)
{
    const char *p = ps->p;
    bool is_negative = *p == '-';
    int64_t v = 0;
    size_t n = 0;

    if (is_negative)
        p++;
    while (is_digit(p[n])) {
        if (n == 18)
            return fail(ps, "an index has at most 18 digits"), -1;
        v = v * 10 + (p[n] - '0');
        n++;
    }
    if (n == 0) {
        if (is_negative)
            return fail(ps, "a digit must follow \"-\""), -1;
        return 0;
    }
    ps->p = p + n;
    *ret = is_negative ? -v : v;
    return 1;
}

/* A JSON-style string key after '[': "..." with \" \\ \/ \b \f \n \r \t \uXXXX escapes. */
static int parse_key(struct parser *ps, gd_expr_step_t *st)
{
    const char *p = ps->p + 1;
    char *key = NULL;
    size_t len = 0, cap = 0;

    for (;; p++) {
        char c = *p, dec[4];
        size_t n = 1;
        if (c == '\0') {
            free(key);
            return fail(ps, "unterminated string key");
        }
        if (c == '"')
            break;
        if (c == '\\') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *f = p[1] != '\0' ? memchr(from, p[1], 8) : NULL;
            if (f != NULL) {
                dec[0] = to[f - from];
                p++;
            } else if (p[1] == 'u') {
                unsigned cp = 0;
                for (int i = 2; i < 6; i++) {
                    int h = gd_hex_value(p[i]);
                    if (h < 0 || p[i] == '\0') {
                        free(key);
                        return fail(ps, "\\u takes four hex digits");
                    }
                    cp = cp << 4 | (unsigned)h;
                }
                if (cp >= 0xd800 && cp <= 0xdfff) {
                    free(key);
                    return fail(ps, "write a key's non-BMP character as UTF-8, not as surrogates");
                }
                p += 5;
                if (cp < 0x80) {
                    dec[0] = (char)cp;
                } else if (cp < 0x800) {
                    dec[0] = (char)(0xc0 | (cp >> 6));
                    dec[1] = (char)(0x80 | (cp & 0x3f));
                    n = 2;
                } else {
                    dec[0] = (char)(0xe0 | (cp >> 12));
                    dec[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    dec[2] = (char)(0x80 | (cp & 0x3f));
                    n = 3;
                }
            } else {
                free(key);
                return fail(ps, "bad escape in a string key");
            }
        } else {
            dec[0] = c;
        }
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            key = gd_xrealloc(key, cap);
        }
        memcpy(key + len, dec, n);
        len += n;
    }
    st->kind = GD_STEP_FIELD;
    st->key = key != NULL ? key : gd_xstrdup("");
    st->key_len = len;
    ps->p = p + 1;
    return 0;
}

static int parse_steps(struct parser *ps, gd_expr_t *e)
{
    for (;;) {
        char c = *ps->p;
        if (c != '.' && c != '[')
            return 0;
        if (e->nsteps == MAX_STEPS)
            return fail(ps, "a path has at most %d steps", MAX_STEPS);
        gd_expr_step_t *st = add_step(e);
        if (c == '.') {
            size_t n = 0;
            ps->p++;
            while (is_ident_char(ps->p[n]))
                n++;
            if (n == 0)
                return fail(ps, "a field name (A-Z a-z 0-9 _ -) must follow \".\"; write "
                                "[\"...\"] for other keys");
            st->kind = GD_STEP_FIELD;
            st->key = gd_xstrndup(ps->p, n);
            st->key_len = n;
            ps->p += n;
            continue;
        }
        ps->p++; /* '[' */
        int r;
        if (*ps->p == '*') {
            st->kind = GD_STEP_EACH;
            ps->p++;
        } else if (*ps->p == '"') {
            if ((r = parse_key(ps, st)) < 0)
                return r;
        } else {
            int64_t v = 0;
            if ((r = parse_int(ps, &v)) < 0)
                return -EINVAL;
            if (*ps->p == ':') {
                st->kind = GD_STEP_SLICE;
                st->has_lo = r == 1;
                st->lo = v;
                ps->p++;
                if ((r = parse_int(ps, &st->hi)) < 0)
                    return -EINVAL;
                st->has_hi = r == 1;
            } else if (r == 1) {
                st->kind = GD_STEP_INDEX;
                st->index = v;
            } else {
                return fail(ps, "\"[\" takes an index, a slice a:b, \"*\" or a \"key\"");
            }
        }
        if (*ps->p != ']')
            return fail(ps, "\"]\" expected");
        ps->p++;
    }
}

/* A call reference or a capture: NAME then steps. */
static int parse_ref(struct parser *ps, gd_expr_t *e, bool is_counted)
{
    const gd_expr_scope_t *scope = ps->scope;
    size_t n = ident_len(ps->p);
    char name[MAX_NAME_LEN + 1];

    if (n == 0 || n > MAX_NAME_LEN)
        return fail(ps, "a call or parameter name expected");
    memcpy(name, ps->p, n);
    name[n] = '\0';
    if (strcmp(name, "item") == 0 && scope->has_item) {
        ps->p += n;
        e->kind = is_counted ? GD_EXPR_COUNT : GD_EXPR_CALL;
        e->index = scope->ncalls;
        return parse_steps(ps, e);
    }
    if (strcmp(name, "body") == 0 || strcmp(name, "env") == 0)
        return fail(ps, "{%s} is not available in a response template", name);
    if (strcmp(name, "errors") == 0)
        return fail(ps, "{errors} must be a string of its own");
    ps->p += n;
    bool is_int = false;
    int index = scope->resolve_param(scope->ctx, 0, name, &is_int);
    if (index >= 0) {
        if (is_counted)
            return fail(ps, "count() takes a call's result, not the parameter %s", name);
        if (*ps->p == '.' || *ps->p == '[')
            return fail(ps, "the parameter %s is a string: it has no fields or elements", name);
        e->kind = GD_EXPR_PARAM;
        e->index = (size_t)index;
        e->is_int = is_int;
        return 0;
    }
    if (strcmp(name, "item") == 0) /* not a batch endpoint's either (a parameter, above) */
        return fail(ps, "{item} is only available in the templates of a call with \"for_each\" "
                        "or of a batch endpoint");
    for (size_t i = 0; i < scope->ncalls; i++) {
        if (strcmp(scope->call_names[i], name) == 0) {
            e->kind = is_counted ? GD_EXPR_COUNT : GD_EXPR_CALL;
            e->index = i;
            return parse_steps(ps, e);
        }
    }
    return fail(ps,
                "unknown call or source \"%s\" (not a call of this endpoint, nor a path "
                "capture, nor query.NAME or header.NAME)",
                name);
}

/* query.NAME or header.NAME (NAME: 1..64 of A-Z a-z 0-9 - _ ., as in call templates). */
static int parse_param(struct parser *ps, gd_expr_t *e, int src, size_t prefix_len)
{
    char name[MAX_NAME_LEN + 1];
    size_t n = 0;

    ps->p += prefix_len;
    while (is_ident_char(ps->p[n]) || ps->p[n] == '.') {
        if (n == MAX_NAME_LEN)
            return fail(ps, "a parameter name has at most %d characters", MAX_NAME_LEN);
        char c = ps->p[n];
        name[n++] = src == 2 && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    if (n == 0)
        return fail(ps, "a parameter name expected");
    name[n] = '\0';
    ps->p += n;
    bool is_int = false;
    int index = ps->scope->resolve_param(ps->scope->ctx, src, name, &is_int);
    if (index < 0)
        return fail(ps, "unknown parameter");
    e->kind = GD_EXPR_PARAM;
    e->index = (size_t)index;
    e->is_int = is_int;
    return 0;
}

/* One "{...}" at ps->p (on the '{'); on success ps->p is past the '}'. */
static int parse_expr(struct parser *ps, gd_expr_t *e)
{
    int r;

    ps->start = ps->p;
    ps->p++;
    memset(e, 0, sizeof(*e));
    if (strncmp(ps->p, "query.", 6) == 0) {
        r = parse_param(ps, e, 1, 6);
    } else if (strncmp(ps->p, "header.", 7) == 0) {
        r = parse_param(ps, e, 2, 7);
    } else if (strncmp(ps->p, "errors}", 7) == 0) {
        e->kind = GD_EXPR_ERRORS;
        ps->p += 6;
        r = 0;
    } else if (strncmp(ps->p, "count(", 6) == 0) {
        ps->p += 6;
        r = parse_ref(ps, e, true);
        if (r == 0 && *ps->p != ')')
            r = fail(ps, "\")\" expected");
        if (r == 0)
            ps->p++;
    } else {
        r = parse_ref(ps, e, false);
    }
    if (r == 0 && *ps->p != '}')
        r = fail(ps, *ps->p == '\0' ? "unbalanced \"{\" (write \"{{\" for a literal \"{\")"
                                    : "unexpected character after the reference");
    if (r < 0) {
        gd_expr_dispose(e);
        return r;
    }
    ps->p++;
    return 0;
}

static void add_literal(gd_text_template_t *t, const char *s, size_t len)
{
    gd_text_part_t *last = t->nparts > 0 ? &t->parts[t->nparts - 1] : NULL;

    if (last != NULL && last->literal != NULL) {
        last->literal = gd_xrealloc(last->literal, last->literal_len + len + 1);
        memcpy(last->literal + last->literal_len, s, len);
        last->literal_len += len;
        last->literal[last->literal_len] = '\0';
        return;
    }
    t->parts = gd_xrealloc(t->parts, (t->nparts + 1) * sizeof(*t->parts));
    last = &t->parts[t->nparts++];
    memset(last, 0, sizeof(*last));
    last->literal = gd_xstrndup(s, len);
    last->literal_len = len;
}

int gd_text_template_compile(const char *src, const gd_expr_scope_t *scope, gd_text_template_t *ret,
                             char *err, size_t errlen)
{
    gd_text_template_t t = {0};
    struct parser ps = {src, src, scope, err, errlen};
    size_t nrefs = 0;

    while (*ps.p != '\0') {
        const char *p = ps.p;
        if ((p[0] == '{' || p[0] == '}') && p[1] == p[0]) {
            add_literal(&t, p, 1);
            ps.p += 2;
        } else if (*p == '}') {
            snprintf(err, errlen, "unbalanced \"}\" (write \"}}\" for a literal \"}\")");
            goto fail;
        } else if (*p == '{') {
            gd_expr_t e;
            if (parse_expr(&ps, &e) < 0)
                goto fail;
            t.parts = gd_xrealloc(t.parts, (t.nparts + 1) * sizeof(*t.parts));
            t.parts[t.nparts++] = (gd_text_part_t){.expr = e};
            nrefs++;
        } else {
            size_t n = strcspn(p, "{}");
            add_literal(&t, p, n);
            ps.p += n;
        }
    }
    t.is_typed = t.nparts == 1 && nrefs == 1;
    t.is_literal = nrefs == 0;
    for (size_t i = 0; i < t.nparts; i++) {
        if (t.parts[i].literal == NULL && t.parts[i].expr.kind == GD_EXPR_ERRORS && !t.is_typed) {
            snprintf(err, errlen, "{errors} must be a string of its own");
            goto fail;
        }
    }
    *ret = t;
    return 0;

fail:
    gd_text_template_dispose(&t);
    return -EINVAL;
}

void gd_text_template_dispose(gd_text_template_t *t)
{
    for (size_t i = 0; i < t->nparts; i++) {
        free(t->parts[i].literal);
        gd_expr_dispose(&t->parts[i].expr);
    }
    free(t->parts);
    t->parts = NULL;
    t->nparts = 0;
}

int gd_expr_path_compile(const char *src, gd_expr_t *ret, char *err, size_t errlen)
{
    struct parser ps = {src, src, NULL, err, errlen};
    gd_expr_t e = {.kind = GD_EXPR_CALL};
    size_t n = 0;

    /* a leading name is the first field: "data.items" reads as ".data.items" */
    while (is_ident_start(src[0]) && is_ident_char(src[n]))
        n++;
    if (n == 0 && *src != '[') {
        snprintf(err, errlen, "%s",
                 *src == '\0' ? "an empty path (leave the key out to keep the whole result)"
                              : "a path starts with a field name or \"[\"");
        return -EINVAL;
    }
    if (n > 0) {
        gd_expr_step_t *st = add_step(&e);
        st->kind = GD_STEP_FIELD;
        st->key = gd_xstrndup(src, n);
        st->key_len = n;
        ps.p += n;
    }
    int r = parse_steps(&ps, &e);
    if (r == 0 && *ps.p != '\0')
        r = fail(&ps, "unexpected character at offset %zu of the path", (size_t)(ps.p - src));
    if (r < 0) {
        gd_expr_dispose(&e);
        return r;
    }
    *ret = e;
    return 0;
}

gd_response_t *gd_response_free(gd_response_t *r)
{
    if (r == NULL)
        return NULL;
    for (size_t i = 0; i < r->nparts; i++) {
        free(r->parts[i].json);
        gd_text_template_dispose(&r->parts[i].value);
    }
    free(r->parts);
    free(r);
    return NULL;
}
