/* libFuzzer driver: a differential test of the expression evaluator (gather/eval.c) and the
 * per-call shaper (gather/reshape.c) against the same operations done on a jansson tree. The
 * input is a shaping spec, one JSON object with any of "select", "fields", "omit", "rename"
 * (loaded through the config loader, so only valid specs count), a newline, then a document.
 * Both sides' results are parsed and compared with json_equal(); any difference aborts. The
 * "select" path is also evaluated as a response reference, {c.PATH} and {count(c.PATH)}. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/util.h"
#include "config/config.h"
#include "gather/eval.h"
#include "gather/reshape.h"
#include "json/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DECODE_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* Python's rule, as gather/eval.c has it. */
static int64_t clamp(int64_t i, int64_t n)
{
    if (i < 0)
        i += n;
    return i < 0 ? 0 : i > n ? n : i;
}

/* The reference evaluator: a new reference, or NULL for "missing" (written as null). */
static json_t *ref_eval(json_t *v, const gd_expr_step_t *st, size_t n)
{
    for (; n > 0; st++, n--) {
        if (st->kind == GD_STEP_FIELD) {
            v = json_is_object(v) ? json_object_getn(v, st->key, st->key_len) : NULL;
        } else if (st->kind == GD_STEP_INDEX) {
            int64_t i = st->index, size = json_is_array(v) ? (int64_t)json_array_size(v) : 0;
            if (i < 0)
                i += size;
            v = json_is_array(v) && i >= 0 && i < size ? json_array_get(v, (size_t)i) : NULL;
        } else {
            break;
        }
        if (v == NULL)
            return NULL;
    }
    if (n == 0)
        return json_incref(v);
    if (!json_is_array(v))
        return NULL;
    json_t *arr = json_array();
    if (st->kind == GD_STEP_EACH) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = ref_eval(json_array_get(v, i), st + 1, n - 1);
            json_array_append_new(arr, e != NULL ? e : json_null());
        }
        return arr;
    }
    int64_t size = (int64_t)json_array_size(v);
    int64_t lo = st->has_lo ? clamp(st->lo, size) : 0, hi = st->has_hi ? clamp(st->hi, size) : size;
    for (int64_t i = lo; i < hi; i++)
        json_array_append(arr, json_array_get(v, (size_t)i));
    json_t *r = ref_eval(arr, st + 1, n - 1);
    json_decref(arr);
    return r;
}

/* The reference select: NULL when nothing is found (gd_eval_select()'s rule). */
static json_t *ref_select(json_t *v, const gd_expr_t *path)
{
    size_t i = 0;

    for (; i < path->nsteps && (path->steps[i].kind == GD_STEP_FIELD ||
                                path->steps[i].kind == GD_STEP_INDEX);
         i++)
        if ((v = ref_eval(v, &path->steps[i], 1)) == NULL)
            return NULL;
        else
            json_decref(v); /* borrowed from the document all along */
    if (i < path->nsteps && !json_is_array(v))
        return NULL;
    json_t *r = ref_eval(v, path->steps + i, path->nsteps - i);
    return r != NULL ? r : json_null();
}

static bool key_is(const gd_key_conf_t *k, const char *s, size_t len)
{
    return k->len == len && memcmp(k->s, s, len) == 0;
}

static json_t *ref_shape_object(const gd_reshape_conf_t *rs, json_t *obj)
{
    json_t *out = json_object();
    const char *k;
    size_t kl;
    json_t *v;

    json_object_keylen_foreach(obj, k, kl, v)
    {
        bool is_listed = false, is_renamed = false, is_replaced = false;
        for (size_t i = 0; i < rs->nkeys; i++)
            is_listed |= key_is(&rs->keys[i], k, kl);
        if (rs->nkeys > 0 && is_listed == rs->is_omit)
            continue;
        for (size_t i = 0; i < rs->nrenames; i++) {
            is_renamed |= key_is(&rs->renames[i].from, k, kl);
            is_replaced |= key_is(&rs->renames[i].to, k, kl) &&
                           json_object_getn(obj, rs->renames[i].from.s, rs->renames[i].from.len);
        }
        if (!is_renamed && !is_replaced)
            json_object_setn(out, k, kl, v);
    }
    for (size_t i = 0; i < rs->nrenames; i++) {
        json_t *from = json_object_getn(obj, rs->renames[i].from.s, rs->renames[i].from.len);
        if (from != NULL)
            json_object_setn(out, rs->renames[i].to.s, rs->renames[i].to.len, from);
    }
    return out;
}

/* The reference shaper: a new reference, or NULL when select finds nothing. */
static json_t *ref_reshape(const gd_reshape_conf_t *rs, json_t *doc)
{
    json_t *v = rs->has_select ? ref_select(doc, &rs->select) : json_incref(doc);

    if (v == NULL || (rs->nkeys == 0 && rs->nrenames == 0))
        return v;
    json_t *out;
    if (json_is_object(v)) {
        out = ref_shape_object(rs, v);
    } else if (json_is_array(v)) {
        out = json_array();
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            json_array_append_new(out, json_is_object(e) ? ref_shape_object(rs, e)
                                                         : json_incref(e));
        }
    } else {
        out = json_incref(v);
    }
    json_decref(v);
    return out;
}

/* Aborts unless @got (gatherd's bytes) is valid JSON equal to @want (NULL: null). */
static void check_same(const char *what, const gd_jbuf_t *got, json_t *want)
{
    json_error_t jerr;

    if (!gd_json_is_valid(got->buf, got->len)) {
        fprintf(stderr, "%s: gatherd wrote invalid JSON: %.*s\n", what, (int)got->len, got->buf);
        abort();
    }
    json_t *g = json_loadb(got->buf, got->len, DECODE_FLAGS, &jerr);
    json_t *null = json_null();
    if (g == NULL || !json_equal(g, want != NULL ? want : null)) {
        char *w = json_dumps(want != NULL ? want : null, JSON_ENCODE_ANY);
        fprintf(stderr, "%s: gatherd wrote %.*s, jansson has %s\n", what, (int)got->len, got->buf,
                w != NULL ? w : "?");
        abort();
    }
    json_decref(g);
}

static void check_eval(const gd_expr_t *path, const char *doc, size_t len, json_t *tree,
                       bool has_duplicates)
{
    gd_strv_t call = {doc, len};
    gd_eval_env_t env = {&call, 1, NULL, {NULL, 0}};
    gd_expr_t e = *path;
    gd_jbuf_t out = {0};

    gd_eval_expr(&e, &env, &out);
    json_t *want = ref_eval(tree, path->steps, path->nsteps);
    check_same("eval", &out, want);
    out.len = 0;
    /* count(): an object with equal keys has as many members as it has keys written */
    if (!has_duplicates) {
        e.kind = GD_EXPR_COUNT;
        gd_eval_expr(&e, &env, &out);
        json_t *n = json_is_array(want)    ? json_integer((json_int_t)json_array_size(want))
                    : json_is_object(want) ? json_integer((json_int_t)json_object_size(want))
                                           : NULL;
        check_same("count", &out, n);
        json_decref(n);
    }
    json_decref(want);
    free(out.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    json_error_t jerr;
    gd_config_t *cfg = NULL;
    char err[512];

    if (nl == NULL)
        return 0;
    const char *doc = nl + 1;
    size_t doc_len = size - (size_t)(doc - (const char *)data);
    json_t *spec = json_loadb((const char *)data, (size_t)(nl - (const char *)data), 0, &jerr);
    json_t *tree = json_loadb(doc, doc_len, DECODE_FLAGS, &jerr);
    json_t *strict = json_loadb(doc, doc_len, DECODE_FLAGS | JSON_REJECT_DUPLICATES, &jerr);
    /* jansson refuses some valid texts (lone surrogates, NUL in keys, huge integers): those
     * have nothing to be compared with */
    if (!json_is_object(spec) || tree == NULL || !gd_json_is_valid(doc, doc_len))
        goto done;
    json_t *c = json_pack("{s:s,s:s}", "upstream", "a", "path", "/c");
    json_object_update(c, spec);
    json_t *conf = json_pack("{s:[s],s:{s:{s:s}},s:[{s:s,s:{s:o}}]}", "listen", "127.0.0.1:1",
                             "upstreams", "a", "url", "http://127.0.0.1:1", "endpoints", "path",
                             "/x", "calls", "c", c);
    char *text = json_dumps(conf, 0);
    json_decref(conf);
    int r = text != NULL ? gd_config_load_string(text, "fuzz", &cfg, err, sizeof(err)) : -1;
    free(text);
    if (r != 0)
        goto done;
    const gd_reshape_conf_t *rs = cfg->endpoints[0].calls[0].reshape;
    if (rs != NULL) {
        gd_jbuf_t out = {0};
        json_t *want = ref_reshape(rs, tree);
        bool is_found = gd_reshape_apply(rs, doc, doc_len, &out);
        if (is_found != (want != NULL)) {
            fprintf(stderr, "reshape: gatherd %s, jansson %s\n", is_found ? "found" : "missed",
                    want != NULL ? "found" : "missed");
            abort();
        }
        if (is_found)
            check_same("reshape", &out, want);
        json_decref(want);
        free(out.buf);
        if (rs->has_select)
            check_eval(&rs->select, doc, doc_len, tree, strict == NULL);
    }
    gd_config_free(cfg);
done:
    json_decref(spec);
    json_decref(tree);
    json_decref(strict);
    return 0;
}
