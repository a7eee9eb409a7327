#include "gather/foreach.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "gather/merge.h"
#include "json/json.h"

/* One item of an int_list as a JSON number: its digits without leading zeros. */
static void put_int_item(const char *s, size_t n, gd_jbuf_t *out)
{
    size_t i = 0;

    if (i < n && s[i] == '-') {
        gd_jbuf_put(out, "-", 1);
        i++;
    }
    while (i + 1 < n && s[i] == '0')
        i++;
    gd_jbuf_put(out, s + i, n - i);
}

/* One item of a string_list, between its double quotes, with '\' escapes (array_in's). */
static void put_string_item(const char *s, size_t n, gd_jbuf_t *out)
{
    char small[256];
    char *text = n <= sizeof(small) ? small : gd_xmalloc(n);
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n)
            i++;
        text[len++] = s[i];
    }
    size_t need = gd_json_quote(text, len, NULL, 0);
    gd_jbuf_reserve(out, need);
    out->len += gd_json_quote(text, len, out->buf + out->len, need);
    if (text != small)
        free(text);
}

void gd_foreach_list_json(const gd_param_t *p, const char *lit, size_t len, gd_jbuf_t *out)
{
    /* "{}", "{1,2}" or "{"a","b\"c"}": what gd_list_end() wrote, so well formed */
    const char *s = lit + 1, *end = lit + (len >= 2 ? len - 1 : 1);
    bool is_first = true;

    gd_jbuf_put(out, "[", 1);
    while (s < end) {
        const char *item = s;
        if (p->type == GD_PARAM_STRING_LIST) {
            s++; /* the opening quote */
            while (s < end && *s != '"')
                s += *s == '\\' ? 2 : 1;
            s++; /* the closing one */
        } else {
            while (s < end && *s != ',')
                s++;
        }
        if (!is_first)
            gd_jbuf_put(out, ",", 1);
        is_first = false;
        if (p->type == GD_PARAM_STRING_LIST)
            put_string_item(item + 1, (size_t)(s - item) - 2, out);
        else
            put_int_item(item, (size_t)(s - item), out);
        if (s < end && *s == ',')
            s++;
    }
    gd_jbuf_put(out, "]", 1);
}

int gd_foreach_items(const char *s, size_t len, gd_strv_t *ret, size_t max, size_t *ret_n)
{
    gd_json_iter_t it;
    const char *k, *v;
    size_t kl, vl, n = 0;

    *ret_n = 0;
    if (gd_json_iter_init(&it, s, len) != '[')
        return -EINVAL;
    while (gd_json_iter_next(&it, &k, &kl, &v, &vl)) {
        if (n < max)
            ret[n] = (gd_strv_t){v, vl};
        n++;
    }
    *ret_n = n;
    return 0;
}

void gd_foreach_result(const gd_call_conf_t *call, const gd_call_result_t *items, size_t n,
                      uint64_t elapsed_ms, gd_call_result_t *ret)
{
    size_t nfailed = 0, first_failed = 0, len = 2;

    for (size_t i = n; i-- > 0;) {
        const gd_call_result_t *r = &items[i];
        if (gd_merge_is_item_failure(call, r)) {
            nfailed++;
            first_failed = i;
        }
        len += (i > 0 ? 1 : 0) +
               (r->outcome == GD_OUTCOME_OK && r->body != NULL ? r->body->len : 4);
    }
    *ret = (gd_call_result_t){.outcome = GD_OUTCOME_OK, .elapsed_ms = elapsed_ms,
                              .max_age_ms = -1, .is_shaped = true, .items = items,
                              .nitems = n, .nitems_failed = nfailed};
    if (n > 0 && nfailed == n) {
        /* nothing ran well: the call failed, as its first item did */
        const gd_call_result_t *f = &items[first_failed];
        ret->outcome = f->outcome;
        ret->status = f->status;
        memcpy(ret->sqlstate, f->sqlstate, sizeof(ret->sqlstate));
        snprintf(ret->message, sizeof(ret->message), "all %zu items failed; the first: %.100s", n,
                 f->message);
        return; /* the items stay, for the log and the metrics: the answer has the call's error */
    }
    gd_buf_t *body = gd_buf_new(len);
    char *p = body->bytes;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        const gd_call_result_t *r = &items[i];
        if (i > 0)
            *p++ = ',';
        if (r->outcome == GD_OUTCOME_OK && r->body != NULL) {
            memcpy(p, r->body->bytes, r->body->len);
            p += r->body->len;
        } else {
            memcpy(p, "null", 4);
            p += 4;
        }
    }
    *p++ = ']';
    ret->body = body;
}
