#include "gather/depend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/pg/pgarray.h"
#include "json/json.h"

void gd_depend_stand_in(const gd_endpoint_conf_t *ep, gd_strv_t *values)
{
    for (size_t i = 0; i < ep->nrefs; i++)
        values[ep->nparams + i] =
            ep->refs[i].use == GD_REF_JSON ? (gd_strv_t){"null", 4} : (gd_strv_t){"", 0};
}

static const char *type_name(char first)
{
    switch (first) {
    case '{':
        return "an object";
    case '[':
        return "an array";
    default:
        return "null";
    }
}

/* A JSON value's truth for "when": false, null, "", 0 and empty arrays and objects are false. */
static bool is_true_json(const char *s, size_t len)
{
    gd_json_iter_t it;
    const char *k, *v;
    size_t kl, vl;
    int type = gd_json_iter_init(&it, s, len);

    gd_json_trim(&s, &len);
    if (type == '{' || type == '[')
        return gd_json_iter_next(&it, &k, &kl, &v, &vl);
    if (type == '"')
        return len > 2;
    if (type == 'n' || type == 'f')
        return false;
    if (type == '-' || (type >= '0' && type <= '9')) {
        /* zero unless a digit of the mantissa is not 0 */
        for (size_t i = 0; i < len && s[i] != 'e' && s[i] != 'E'; i++)
            if (s[i] >= '1' && s[i] <= '9')
                return true;
        return false;
    }
    return type == 't';
}

/* The value @json (trimmed) of @ref as the text its use takes, into @arena. */
static int render_value(const gd_call_ref_t *ref, const char *json, size_t len,
                        gd_arena_t *arena, gd_strv_t *ret, char *err, size_t errlen)
{
    char first = json[0];
    h2o_iovec_t v;

    if (ref->use == GD_REF_JSON) {
        v = gd_arena_strdup(arena, json, len);
    } else if (first == '"') {
        char *p = gd_arena_alloc_text(arena, len + 1);
        size_t n = gd_json_unquote(json, len, p);
        p[n] = '\0';
        v = h2o_iovec_init(p, n);
    } else if (first != '{' && first != '[' && first != 'n') {
        v = gd_arena_strdup(arena, json, len); /* a number, true or false: as written */
    } else if (ref->use == GD_REF_SQL_VALUE && first == 'n') {
        *ret = (gd_strv_t){gd_template_null, 0};
        return 0;
    } else if (ref->use == GD_REF_SQL_VALUE && first == '[') {
        size_t n = gd_pgarray_encode(json, len, NULL, 0);
        char *p = gd_arena_alloc_text(arena, n + 1);
        gd_pgarray_encode(json, len, p, n);
        p[n] = '\0';
        v = h2o_iovec_init(p, n);
    } else if (ref->use == GD_REF_SQL_VALUE) {
        /* an object as its JSON text, for a jsonb parameter */
        v = gd_arena_strdup(arena, json, len);
    } else {
        snprintf(err, errlen, "%s is %s, which cannot go into %s", ref->text, type_name(first),
                 ref->use == GD_REF_URL ? "a URL" : "a text");
        return -EINVAL;
    }
    *ret = (gd_strv_t){v.base, v.len};
    return 0;
}

int gd_depend_render(const gd_endpoint_conf_t *ep, const gd_call_conf_t *call,
                     const gd_eval_env_t *env, gd_arena_t *arena, gd_strv_t *values, char *err,
                     size_t errlen)
{
    gd_jbuf_t out = {0};
    int r = 0;

    for (size_t i = call->first_ref; i < call->first_ref + call->nrefs && r == 0; i++) {
        const gd_call_ref_t *ref = &ep->refs[i];
        gd_strv_t *slot = &values[ep->nparams + i];
        if (ref->expr.index >= env->ncalls)
            continue; /* {item} before the items of a for_each run: its stand-in stays */
        out.len = 0;
        bool is_found = gd_eval_ref(&ref->expr, env, &out);
        const char *s = out.buf;
        size_t len = out.len;
        gd_json_trim(&s, &len);
        if (ref->use == GD_REF_WHEN) {
            *slot = is_found && is_true_json(s, len) ? (gd_strv_t){"1", 1} : (gd_strv_t){"", 0};
        } else if (!is_found) {
            if (ref->expr.index == ep->ncalls)
                snprintf(err, errlen, "%s is missing in the item", ref->text);
            else
                snprintf(err, errlen, "%s is missing in the result of call \"%s\"", ref->text,
                         ep->calls[ref->expr.index].name);
            r = -EINVAL;
        } else {
            r = render_value(ref, s, len, arena, slot, err, errlen);
        }
    }
    free(out.buf);
    return r;
}

bool gd_depend_when(const gd_call_conf_t *call, const gd_strv_t *values)
{
    if (!call->has_when)
        return true;
    const gd_strv_t *v = &values[call->when.parts[0].value_index];
    static const char *const falsy[] = {"false", "0", "null"};
    if (v->len == 0)
        return false;
    for (size_t i = 0; i < sizeof(falsy) / sizeof(falsy[0]); i++)
        if (v->len == strlen(falsy[i]) && memcmp(v->base, falsy[i], v->len) == 0)
            return false;
    return true;
}
