#include "gather/reshape.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "json/json.h"

/* A key of the result as written (quotes included), and whether it has no escape: then it
 * means its bytes, and comparing is a length check and a memcmp(). */
struct key {
    const char *s;
    size_t len;
    bool is_plain;
};

static struct key key_of(const char *k, size_t kl)
{
    struct key key = {k, kl, true};

    for (size_t i = 1; i + 1 < kl && key.is_plain; i++)
        key.is_plain = k[i] != '\\';
    return key;
}

/* Whether @k means @want. */
static inline bool key_is(const struct key *k, const gd_key_conf_t *want)
{
    if (k->is_plain)
        return k->len == want->len + 2 && memcmp(k->s + 1, want->s, want->len) == 0;
    return gd_json_string_equals(k->s, k->len, want->s, want->len);
}

/* The index of the rename of key @k, or -1. */
static int find_rename(const gd_reshape_conf_t *conf, const struct key *k)
{
    for (size_t i = 0; i < conf->nrenames; i++)
        if (key_is(k, &conf->renames[i].from))
            return (int)i;
    return -1;
}

/* Whether "fields" keeps (or "omit" does not drop) key @k. */
static bool is_kept(const gd_reshape_conf_t *conf, const struct key *k)
{
    bool is_listed = false;

    if (conf->nkeys == 0)
        return true;
    for (size_t i = 0; i < conf->nkeys && !is_listed; i++)
        is_listed = key_is(k, &conf->keys[i]);
    return is_listed != conf->is_omit;
}

/* Whether key @k, not renamed itself, is the new name of a key the object has: the renamed
 * member replaces it, as a parser that keeps the last of equal keys would not reliably do. */
static bool is_replaced(const gd_reshape_conf_t *conf, const uint64_t *present,
                        const struct key *k)
{
    for (size_t i = 0; i < conf->nrenames; i++)
        if ((present[i / 64] >> (i % 64) & 1) &&
            key_is(k, &conf->renames[i].to))
            return true;
    return false;
}

/* Writes the object that starts at @s (the text may go on after it) shaped by the keys' part
 * of @conf; returns the end of the object in @s. Each member kept is copied as written, from
 * its key to the end of its value, in one piece. */
static const char *put_object(const gd_reshape_conf_t *conf, const char *s, size_t len,
                              gd_jbuf_t *out)
{
    uint64_t present[(GD_RESHAPE_MAX_KEYS + 63) / 64] = {0};
    gd_json_iter_t it;
    const char *k, *v;
    size_t kl, vl;
    bool is_first = true;

    if (conf->nrenames > 0) {
        gd_json_iter_init(&it, s, len);
        while (gd_json_iter_next(&it, &k, &kl, &v, &vl)) {
            struct key key = key_of(k, kl);
            int i = find_rename(conf, &key);
            if (i >= 0)
                present[i / 64] |= UINT64_C(1) << (i % 64);
        }
    }
    gd_json_iter_init(&it, s, len);
    gd_jbuf_put(out, "{", 1);
    while (gd_json_iter_next(&it, &k, &kl, &v, &vl)) {
        struct key key = key_of(k, kl);
        if (!is_kept(conf, &key))
            continue;
        int i = conf->nrenames > 0 ? find_rename(conf, &key) : -1;
        if (i < 0 && conf->nrenames > 0 && is_replaced(conf, present, &key))
            continue;
        if (!is_first)
            gd_jbuf_put(out, ",", 1);
        is_first = false;
        if (i < 0) {
            gd_jbuf_put(out, k, (size_t)(v + vl - k));
            continue;
        }
        gd_jbuf_put(out, conf->renames[i].to_json.s, conf->renames[i].to_json.len);
        gd_jbuf_put(out, ":", 1);
        gd_jbuf_put(out, v, vl);
    }
    gd_jbuf_put(out, "}", 1);
    return gd_json_iter_end(&it);
}

/* The keys' part of the shaping: an object, or each object of an array; other values as they
 * are. An array's objects are walked once: the object's own walk tells where it ends. */
static void put_keyed(const gd_reshape_conf_t *conf, const char *s, size_t len, gd_jbuf_t *out)
{
    gd_json_iter_t it;
    const char *k, *v;
    size_t kl, vl;
    bool is_first = true;
    int type = gd_json_iter_init(&it, s, len);

    if (type == '{') {
        put_object(conf, s, len, out);
        return;
    }
    if (type != '[') {
        gd_jbuf_put(out, s, len);
        return;
    }
    gd_jbuf_put(out, "[", 1);
    while (gd_json_iter_next_open(&it, &k, &kl, &v, &vl)) {
        if (!is_first)
            gd_jbuf_put(out, ",", 1);
        is_first = false;
        if (*v == '{') {
            gd_json_iter_skip_to(&it, put_object(conf, v, vl, out));
        } else {
            vl = gd_json_skip(v, vl);
            gd_jbuf_put(out, v, vl);
            gd_json_iter_skip_to(&it, v + vl);
        }
    }
    gd_jbuf_put(out, "]", 1);
}

bool gd_reshape_apply(const gd_reshape_conf_t *conf, const char *s, size_t len, gd_jbuf_t *out)
{
    gd_jbuf_t selected = {0};
    bool has_keys = conf->nkeys > 0 || conf->nrenames > 0;
    size_t before = out->len;

    gd_json_trim(&s, &len);
    /* A selection that has to be written (a [*] or a slice) goes straight to @out, or to a
     * buffer of its own when keys are shaped next. */
    if (conf->has_select &&
        !gd_eval_select(&conf->select, s, len, has_keys ? &selected : out, &s, &len)) {
        free(selected.buf);
        return false;
    }
    if (has_keys)
        put_keyed(conf, s, len, out);
    else if (out->len == before)
        gd_jbuf_put(out, s, len); /* a span of the input: copied once */
    free(selected.buf);
    return true;
}

void gd_reshape_result(const gd_reshape_conf_t *conf, gd_call_result_t *r)
{
    gd_jbuf_t out = {0};

    if (conf == NULL || r->is_shaped || r->outcome != GD_OUTCOME_OK || r->body == NULL)
        return;
    r->is_shaped = true; /* dependents see the result first, the answer later: shaped once */
    /* Shaping mostly drops bytes: room for the whole input is one allocation, and renames that
     * lengthen keys rarely need a second. */
    out.cap = r->body->len + 64;
    out.buf = gd_xmalloc(out.cap);
    if (!gd_reshape_apply(conf, r->body->bytes, r->body->len, &out)) {
        free(out.buf);
        r->body = gd_buf_unref(r->body);
        r->outcome = GD_OUTCOME_SELECT;
        snprintf(r->message, sizeof(r->message), "\"select\": %.120s found nothing in the result",
                 conf->select_text);
        return;
    }
    gd_buf_unref(r->body);
    r->body = gd_buf_take(out.buf, out.len);
}
