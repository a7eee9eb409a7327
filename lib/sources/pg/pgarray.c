#include "sources/pg/pgarray.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/sink.h"
#include "base/util.h"
#include "json/json.h"


/* PostgreSQL's array_in: inside double quotes, a backslash escapes the next character. */
static void put_quoted(gd_sink_t *o, const char *s, size_t n)
{
    gd_sink_put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            gd_sink_put(o, "\\", 1);
        gd_sink_put(o, &s[i], 1);
    }
    gd_sink_put(o, "\"", 1);
}

static void put_array(gd_sink_t *o, const char *json, size_t len)
{
    gd_json_iter_t it;
    const char *k, *v;
    size_t kl, vl;
    bool is_first = true;

    gd_json_iter_init(&it, json, len);
    gd_sink_put(o, "{", 1);
    while (gd_json_iter_next(&it, &k, &kl, &v, &vl)) {
        if (!is_first)
            gd_sink_put(o, ",", 1);
        is_first = false;
        switch (v[0]) {
        case '[':
            put_array(o, v, vl);
            break;
        case '{':
            put_quoted(o, v, vl);
            break;
        case 'n':
            gd_sink_put(o, "NULL", 4);
            break;
        case '"': {
            char *dec = gd_xmalloc(vl);
            size_t n = gd_json_unquote(v, vl, dec);
            put_quoted(o, dec, n);
            free(dec);
            break;
        }
        default: /* a number, true or false: the same text in Postgres */
            gd_sink_put(o, v, vl);
        }
    }
    gd_sink_put(o, "}", 1);
}

size_t gd_pgarray_encode(const char *json, size_t len, char *buf, size_t cap)
{
    gd_json_iter_t it;
    gd_sink_t o = {buf, cap, 0};

    if (gd_json_iter_init(&it, json, len) != '[')
        return 0;
    put_array(&o, json, len);
    return o.len;
}
