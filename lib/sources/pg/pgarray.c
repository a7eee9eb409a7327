#include "sources/pg/pgarray.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "json/json.h"

/* An output that may be too small: the length keeps counting. */
struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len < o->cap)
        memcpy(o->buf + o->len, s, o->len + n <= o->cap ? n : o->cap - o->len);
    o->len += n;
}

/* PostgreSQL's array_in: inside double quotes, a backslash escapes the next character. */
static void put_quoted(struct out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            put(o, "\\", 1);
        put(o, &s[i], 1);
    }
    put(o, "\"", 1);
}

static void put_array(struct out *o, const char *json, size_t len)
{
    gd_json_iter_t it;
    const char *k, *v;
    size_t kl, vl;
    bool is_first = true;

    gd_json_iter_init(&it, json, len);
    put(o, "{", 1);
    while (gd_json_iter_next(&it, &k, &kl, &v, &vl)) {
        if (!is_first)
            put(o, ",", 1);
        is_first = false;
        switch (v[0]) {
        case '[':
            put_array(o, v, vl);
            break;
        case '{':
            put_quoted(o, v, vl);
            break;
        case 'n':
            put(o, "NULL", 4);
            break;
        case '"': {
            char *dec = gd_xmalloc(vl);
            size_t n = gd_json_unquote(v, vl, dec);
            put_quoted(o, dec, n);
            free(dec);
            break;
        }
        default: /* a number, true or false: the same text in Postgres */
            put(o, v, vl);
        }
    }
    put(o, "}", 1);
}

size_t gd_pgarray_encode(const char *json, size_t len, char *buf, size_t cap)
{
    gd_json_iter_t it;
    struct out o = {buf, cap, 0};

    if (gd_json_iter_init(&it, json, len) != '[')
        return 0;
    put_array(&o, json, len);
    return o.len;
}
