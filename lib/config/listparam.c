#include "config/listparam.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"

void gd_list_begin(gd_list_writer_t *w, const gd_param_t *p, char *buf, size_t cap)
{
    *w = (gd_list_writer_t){._param = p, ._out = {buf, cap, 0}};
    gd_sink_put(&w->_out, "{", 1);
}

/* One item: an int as it is (checked), a string in double quotes with '"' and '\' escaped
 * (PostgreSQL's array_in). */
static int add_item(gd_list_writer_t *w, const char *s, size_t n, char *err, size_t errlen)
{
    const gd_param_t *p = w->_param;

    if (n == 0) {
        snprintf(err, errlen, "parameter \"%s\" has an empty item", p->name);
        return -EINVAL;
    }
    if (++w->_nitems > p->max_items) {
        snprintf(err, errlen, "parameter \"%s\" has more than %zu items", p->name, p->max_items);
        return -EINVAL;
    }
    if (w->_nitems > 1)
        gd_sink_put(&w->_out, ",", 1);
    if (p->type == GD_PARAM_INT_LIST) {
        if (!gd_is_int64(s, n)) {
            snprintf(err, errlen, "parameter \"%s\" must be a list of integers", p->name);
            return -EINVAL;
        }
        gd_sink_put(&w->_out, s, n);
        return 0;
    }
    gd_sink_put(&w->_out, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            gd_sink_put(&w->_out, "\\", 1);
        gd_sink_put(&w->_out, &s[i], 1);
    }
    gd_sink_put(&w->_out, "\"", 1);
    return 0;
}

int gd_list_add(gd_list_writer_t *w, const char *text, size_t len, char *err, size_t errlen)
{
    if (len == 0)
        return 0; /* ?ids= : no item */
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "parameter \"%s\" contains a NUL byte", w->_param->name);
        return -EINVAL;
    }
    for (size_t start = 0;;) {
        const char *comma = memchr(text + start, ',', len - start);
        size_t end = comma != NULL ? (size_t)(comma - text) : len;
        int r = add_item(w, text + start, end - start, err, errlen);
        if (r < 0)
            return r;
        if (comma == NULL)
            return 0;
        start = end + 1;
    }
}

size_t gd_list_end(gd_list_writer_t *w)
{
    gd_sink_put(&w->_out, "}", 1);
    if (w->_out.len < w->_out.cap)
        w->_out.buf[w->_out.len] = '\0';
    return w->_out.len;
}

long gd_param_list_literal(const gd_param_t *p, const char *text, size_t len, char *buf, size_t cap,
                           char *err, size_t errlen)
{
    gd_list_writer_t w;
    int r;

    gd_list_begin(&w, p, buf, cap);
    if ((r = gd_list_add(&w, text, len, err, errlen)) < 0)
        return r;
    return (long)gd_list_end(&w);
}
