#include "gather/eval.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "json/json.h"

void gd_jbuf_put(gd_jbuf_t *b, const char *s, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2 + 64;
        b->buf = gd_xrealloc(b->buf, b->cap);
    }
    if (len != 0)
        memcpy(b->buf + b->len, s, len);
    b->len += len;
}

static void put_null(gd_jbuf_t *out)
{
    gd_jbuf_put(out, "null", 4);
}

/* The number of elements of the array (or members of the object) @s, or -1 for other values. */
static int64_t count_of(const char *s, size_t len)
{
    gd_json_iter_t it;
    const char *k, *v;
    size_t kl, vl;
    int64_t n = 0;
    int type = gd_json_iter_init(&it, s, len);

    if (type != '[' && type != '{')
        return -1;
    while (gd_json_iter_next(&it, &k, &kl, &v, &vl))
        n++;
    return n;
}

/* Python's rule: a negative index counts from the end; clamped to 0..n. */
static int64_t clamp(int64_t i, int64_t n)
{
    if (i < 0)
        i += n;
    return i < 0 ? 0 : i > n ? n : i;
}

/* One FIELD or INDEX step from @s: the member (the last one of that key, as parsers keep) or
 * element. Returns false when it is missing or @s has none. */
static bool step_into(const gd_expr_step_t *st, const char **s, size_t *len)
{
    gd_json_iter_t it;
    const char *k, *v, *found = NULL;
    size_t kl, vl, found_len = 0;
    int type = gd_json_iter_init(&it, *s, *len);

    if (st->kind == GD_STEP_FIELD) {
        if (type != '{')
            return false;
        while (gd_json_iter_next(&it, &k, &kl, &v, &vl))
            if (gd_json_string_equals(k, kl, st->key, st->key_len))
                found = v, found_len = vl;
    } else {
        int64_t i = st->index;
        if (type != '[')
            return false;
        if (i < 0) {
            i += count_of(*s, *len);
            if (i < 0)
                return false;
            gd_json_iter_init(&it, *s, *len);
        }
        for (int64_t n = 0; gd_json_iter_next(&it, &k, &kl, &v, &vl); n++)
            if (n == i) {
                found = v, found_len = vl;
                break;
            }
    }
    if (found == NULL)
        return false;
    *s = found;
    *len = found_len;
    return true;
}

/* Writes the value @steps select in @s (validated JSON) to @out; null, and false returned,
 * when a field or element is missing or a slice or [*] meets something else than an array
 * (missing elements inside a [*] or slice are null there, and do not count). */
static bool eval_path(const char *s, size_t len, const gd_expr_step_t *steps, size_t nsteps,
                      gd_jbuf_t *out)
{
    gd_json_iter_t it;
    const char *k, *v;
    size_t kl, vl;

    for (; nsteps > 0; steps++, nsteps--) {
        if (steps->kind != GD_STEP_FIELD && steps->kind != GD_STEP_INDEX)
            break;
        if (!step_into(steps, &s, &len)) {
            put_null(out);
            return false;
        }
    }
    gd_json_trim(&s, &len);
    if (nsteps == 0) {
        gd_jbuf_put(out, s, len);
        return true;
    }
    if (gd_json_iter_init(&it, s, len) != '[') {
        put_null(out);
        return false;
    }
    if (steps->kind == GD_STEP_EACH) {
        bool is_first = true;
        gd_jbuf_put(out, "[", 1);
        while (gd_json_iter_next(&it, &k, &kl, &v, &vl)) {
            if (!is_first)
                gd_jbuf_put(out, ",", 1);
            is_first = false;
            (void)eval_path(v, vl, steps + 1, nsteps - 1, out); /* a miss is null there */
        }
        gd_jbuf_put(out, "]", 1);
        return true;
    }
    /* A slice: its elements copied into an array, then the rest of the path applied to it. */
    /* The length is counted only when a bound needs it (a negative one, or none at the end). */
    bool needs_n = !steps->has_hi || steps->hi < 0 || (steps->has_lo && steps->lo < 0);
    int64_t n = needs_n ? count_of(s, len) : INT64_MAX;
    int64_t lo = steps->has_lo ? clamp(steps->lo, n) : 0;
    int64_t hi = steps->has_hi ? clamp(steps->hi, n) : n;
    gd_jbuf_t tmp = {0}, *to = nsteps == 1 ? out : &tmp;
    bool is_first = true;
    gd_jbuf_put(to, "[", 1);
    for (int64_t i = 0; i < hi && gd_json_iter_next(&it, &k, &kl, &v, &vl); i++) {
        if (i < lo)
            continue;
        if (!is_first)
            gd_jbuf_put(to, ",", 1);
        is_first = false;
        gd_jbuf_put(to, v, vl);
    }
    gd_jbuf_put(to, "]", 1);
    bool is_found = true;
    if (to == &tmp) {
        is_found = eval_path(tmp.buf, tmp.len, steps + 1, nsteps - 1, out);
        free(tmp.buf);
    }
    return is_found;
}

/* An int parameter's value as a JSON number: leading zeros dropped, empty as null. */
static void put_int(const gd_strv_t *v, gd_jbuf_t *out)
{
    const char *p = v->base, *end = v->base + v->len;
    bool is_negative = p < end && *p == '-';

    if (v->len == 0) {
        put_null(out);
        return;
    }
    if (is_negative)
        p++;
    while (p + 1 < end && *p == '0')
        p++;
    if (is_negative && !(end - p == 1 && *p == '0'))
        gd_jbuf_put(out, "-", 1);
    gd_jbuf_put(out, p, (size_t)(end - p));
}

static void put_quoted(const char *s, size_t len, gd_jbuf_t *out)
{
    size_t need = gd_json_quote(s, len, NULL, 0);

    if (out->len + need > out->cap) {
        out->cap = (out->len + need) * 2 + 64;
        out->buf = gd_xrealloc(out->buf, out->cap);
    }
    out->len += gd_json_quote(s, len, out->buf + out->len, need);
}

void gd_eval_expr(const gd_expr_t *e, const gd_eval_env_t *env, gd_jbuf_t *out)
{
    (void)gd_eval_ref(e, env, out); /* a miss is null in an answer */
}

bool gd_eval_ref(const gd_expr_t *e, const gd_eval_env_t *env, gd_jbuf_t *out)
{
    const gd_strv_t *v;

    switch (e->kind) {
    case GD_EXPR_PARAM:
        v = &env->values[e->index];
        if (e->is_int)
            put_int(v, out);
        else
            put_quoted(v->base, v->len, out);
        return true;
    case GD_EXPR_ERRORS:
        if (env->errors.base == NULL)
            put_null(out);
        else
            gd_jbuf_put(out, env->errors.base, env->errors.len);
        return true;
    case GD_EXPR_CALL:
        v = e->index < env->ncalls ? &env->calls[e->index] : NULL;
        if (v == NULL || v->base == NULL) {
            put_null(out);
            return false;
        }
        return eval_path(v->base, v->len, e->steps, e->nsteps, out);
    case GD_EXPR_COUNT: {
        gd_jbuf_t tmp = {0};
        gd_expr_t ref = *e;
        const char *s = NULL;
        size_t len = 0, i = 0;
        int64_t n = -1;
        v = e->index < env->ncalls ? &env->calls[e->index] : NULL;
        if (v != NULL && v->base != NULL) {
            /* a path of fields and indexes only: counted in place, nothing copied */
            s = v->base;
            len = v->len;
            for (; i < e->nsteps; i++)
                if ((e->steps[i].kind != GD_STEP_FIELD && e->steps[i].kind != GD_STEP_INDEX) ||
                    !step_into(&e->steps[i], &s, &len))
                    break;
        }
        if (s != NULL && i == e->nsteps) {
            n = count_of(s, len);
        } else if (s != NULL && e->steps[i].kind != GD_STEP_FIELD &&
                   e->steps[i].kind != GD_STEP_INDEX) {
            ref.kind = GD_EXPR_CALL;
            gd_eval_expr(&ref, env, &tmp);
            n = count_of(tmp.buf, tmp.len);
        }
        free(tmp.buf);
        if (n < 0) {
            put_null(out);
            return false;
        }
        char num[24];
        gd_jbuf_put(out, num, (size_t)snprintf(num, sizeof(num), "%lld", (long long)n));
        return true;
    }
    }
    return false;
}

void gd_eval_text(const gd_text_template_t *t, const gd_eval_env_t *env, gd_jbuf_t *out)
{
    if (t->is_typed) {
        gd_eval_expr(&t->parts[0].expr, env, out);
        return;
    }
    gd_jbuf_put(out, "\"", 1);
    for (size_t i = 0; i < t->nparts; i++) {
        const gd_text_part_t *part = &t->parts[i];
        const char *s = part->literal;
        size_t len = part->literal_len;
        gd_jbuf_t tmp = {0};
        bool is_raw = false; /* a JSON string's inside: already escaped */

        if (s == NULL && part->expr.kind == GD_EXPR_PARAM) {
            s = env->values[part->expr.index].base;
            len = env->values[part->expr.index].len;
        } else if (s == NULL) {
            gd_eval_expr(&part->expr, env, &tmp);
            s = tmp.buf;
            len = tmp.len;
            if (len == 4 && memcmp(s, "null", 4) == 0) {
                len = 0;
            } else if (len >= 2 && s[0] == '"') {
                s++;
                len -= 2;
                is_raw = true;
            }
        }
        if (is_raw) {
            gd_jbuf_put(out, s, len);
        } else if (len > 0) {
            size_t before = out->len;
            put_quoted(s, len, out);
            /* drop the quotes gd_json_quote() put around this piece */
            memmove(out->buf + before, out->buf + before + 1, out->len - before - 2);
            out->len -= 2;
        }
        free(tmp.buf);
    }
    gd_jbuf_put(out, "\"", 1);
}
