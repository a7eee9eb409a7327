/* Renders an HTTP call's request from its config templates: the path (percent-encoded values)
 * and the header lines (request id, trace context, the call's own headers, its upstream's
 * headers it does not set itself, the client's headers it forwards). */
#include "sources/http/upstream_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "json/json.h"

/* RFC 9110 section 5.5: a field value has no control character but HTAB. */
static bool is_clean_value(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return false;
    return true;
}

/* Expands a header template without percent-encoding; -EINVAL when a value would smuggle a
 * control character (CR LF: a second header) into the upstream request. */
static int expand_header_value(const gd_template_t *t, const gd_strv_t *values,
                               gd_arena_t *arena, h2o_iovec_t *ret)
{
    size_t len = gd_template_expand_raw(t, values, NULL, 0);
    char *buf = gd_arena_alloc_text(arena, len + 1);

    gd_template_expand_raw(t, values, buf, len);
    if (!is_clean_value(buf, len))
        return -EINVAL;
    *ret = h2o_iovec_init(buf, len);
    return 0;
}

/* An int parameter's value as a JSON number: leading zeros dropped ("007" is 7, "-0" is 0),
 * and an absent optional value (empty) is null. Into @buf of at least @len + 4 bytes. */
static size_t write_json_int(const gd_strv_t *v, char *buf)
{
    const char *p = v->base, *end = v->base + v->len;
    bool is_negative = p < end && *p == '-';
    size_t n = 0;

    if (v->len == 0) {
        memcpy(buf, "null", 4);
        return 4;
    }
    if (is_negative)
        p++;
    while (p + 1 < end && *p == '0')
        p++;
    if (is_negative && !(end - p == 1 && *p == '0'))
        buf[n++] = '-';
    memcpy(buf + n, p, (size_t)(end - p));
    return n + (size_t)(end - p);
}

/* Renders the call's JSON body template into the arena: literals as compiled, each value that
 * is exactly one int parameter as a number, every other value as a JSON string (valid UTF-8
 * whatever the client sent: gd_json_quote()). */
static h2o_iovec_t render_json_body(const gd_call_conf_t *cc, const gd_strv_t *values,
                                    gd_arena_t *arena)
{
    gd_strv_t *raw = gd_arena_alloc(arena, sizeof(*raw) * cc->nbody_parts);
    size_t len = 0;

    for (size_t i = 0; i < cc->nbody_parts; i++) {
        const gd_body_part_t *part = &cc->body_parts[i];
        len += part->json_len;
        if (!part->has_value)
            continue;
        if (part->is_typed || part->is_json) {
            raw[i] = values[part->value.parts[0].value_index];
            len += raw[i].len + 4;
            continue;
        }
        size_t n = gd_template_expand_raw(&part->value, values, NULL, 0);
        char *buf = gd_arena_alloc_text(arena, n + 1);
        gd_template_expand_raw(&part->value, values, buf, n);
        raw[i] = (gd_strv_t){buf, n};
        len += GD_JSON_QUOTED_MAX(n);
    }
    char *out = gd_arena_alloc_text(arena, len + 1), *p = out;
    for (size_t i = 0; i < cc->nbody_parts; i++) {
        const gd_body_part_t *part = &cc->body_parts[i];
        memcpy(p, part->json, part->json_len);
        p += part->json_len;
        if (!part->has_value)
            continue;
        if (part->is_json) { /* a call's value, rendered as JSON already */
            memcpy(p, raw[i].base, raw[i].len);
            p += raw[i].len;
        } else if (part->is_typed)
            p += write_json_int(&raw[i], p);
        else
            p += gd_json_quote(raw[i].base, raw[i].len, p, GD_JSON_QUOTED_MAX(raw[i].len));
    }
    return h2o_iovec_init(out, (size_t)(p - out));
}

int gd__upstream_call_prepare(gd_call_t *base, const gd_call_conf_t *cc, const gd_call_input_t *in,
                              char *err, size_t errlen)
{
    gd_upstream_call_t *call = (gd_upstream_call_t *)base;
    gd_arena_t *arena = in->arena;
    const char *upath = cc->upstream->base_path;
    size_t base_len = strlen(upath);
    size_t cap = base_len + gd_template_max_len(&cc->path, in->values);
    char *path = gd_arena_alloc_text(arena, cap + 1);

    memcpy(path, upath, base_len);
    size_t len =
        base_len + gd_template_expand(&cc->path, in->values, path + base_len, cap - base_len);
    call->method = cc->method;
    call->path = h2o_iovec_init(path, len);
    call->is_idempotent = cc->is_idempotent;
    call->retry = &cc->retry;
    call->has_body = strcmp(cc->method, "POST") == 0 || strcmp(cc->method, "PUT") == 0 ||
                     strcmp(cc->method, "PATCH") == 0 || cc->is_body_forwarded;
    if (cc->is_body_forwarded && in->body.len != 0) {
        /* Copied: h2o's request (and the body it holds) may go before the call ends. Its size
         * is bounded by max_request_body_bytes. */
        char *body = gd_arena_alloc_text(arena, in->body.len);
        memcpy(body, in->body.base, in->body.len);
        call->body = h2o_iovec_init(body, in->body.len);
    }
    if (cc->body_parts != NULL) {
        call->has_body = true;
        call->body = render_json_body(cc, in->values, arena);
    }

    /* Every occurrence of a forwarded header is copied (a list header may come in several
     * lines), so they are counted first. */
    size_t nforward = 0;
    for (size_t i = 0; in->headers != NULL && i < in->headers->size; i++) {
        const h2o_header_t *h = &in->headers->entries[i];
        for (size_t j = 0; j < cc->nforward_headers; j++)
            if (h2o_lcstris(h->name->base, h->name->len, cc->forward_headers[j],
                            strlen(cc->forward_headers[j])))
                nforward++;
    }

    /* Every call carries the request id, and a child span of the client's trace, if any. */
    size_t n = 3, ntrace = in->trace != NULL ? 3 : 0;
    size_t nlines = n + ntrace + 3 + cc->nheaders * 4 + 1 + nforward * 4;
    /* The pieces are only joined: on the stack unless there are many (the arena keeps what
     * it gives until the request ends). */
    h2o_iovec_t few[32];
    h2o_iovec_t *lines =
        nlines <= GD_ARRAY_SIZE(few) ? few : gd_arena_alloc(arena, sizeof(*lines) * nlines);
    lines[0] = h2o_iovec_init(H2O_STRLIT("x-request-id: "));
    lines[1] = h2o_iovec_init(in->request_id, strlen(in->request_id));
    lines[2] = h2o_iovec_init(H2O_STRLIT("\r\n"));
    if (in->trace != NULL) {
        char *tp = gd_arena_alloc_text(arena, GD_TRACE_TRACEPARENT_LEN + 1);
        gd_trace_child(in->trace, tp);
        lines[n++] = h2o_iovec_init(H2O_STRLIT("traceparent: "));
        lines[n++] = h2o_iovec_init(tp, GD_TRACE_TRACEPARENT_LEN);
        lines[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
    }
    size_t per_request_lines = n;
    if (cc->is_body_forwarded && in->content_type.len != 0) {
        /* The client's own Content-Type goes with its body; h2o has parsed it as a field
         * value, so it holds no CR or LF. */
        lines[n++] = h2o_iovec_init(H2O_STRLIT("content-type: "));
        lines[n++] = gd_arena_strdup(arena, in->content_type.base, in->content_type.len);
        lines[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
    }
    if (cc->body_parts != NULL) {
        lines[n++] = h2o_iovec_init(H2O_STRLIT("content-type: application/json\r\n"));
    }
    for (size_t i = 0; i < cc->nheaders; i++) {
        h2o_iovec_t value;
        if (expand_header_value(&cc->headers[i].value, in->values, arena, &value) != 0) {
            snprintf(err, errlen,
                     "a value for header \"%s\" of call \"%s\" contains a control character",
                     cc->headers[i].name, cc->name);
            return -EINVAL;
        }
        lines[n++] = h2o_iovec_init(cc->headers[i].name, strlen(cc->headers[i].name));
        lines[n++] = h2o_iovec_init(H2O_STRLIT(": "));
        lines[n++] = value;
        lines[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
    }
    if (cc->upstream_header_lines_len != 0)
        lines[n++] = h2o_iovec_init(cc->upstream_header_lines, cc->upstream_header_lines_len);
    for (size_t i = 0; nforward != 0 && i < in->headers->size; i++) {
        const h2o_header_t *h = &in->headers->entries[i];
        for (size_t j = 0; j < cc->nforward_headers; j++) {
            if (!h2o_lcstris(h->name->base, h->name->len, cc->forward_headers[j],
                             strlen(cc->forward_headers[j])))
                continue;
            /* h2o's HTTP/1 parser refuses these bytes, but an HTTP/2 client's HPACK strings
             * may hold any byte: a CR LF would add a header to the upstream request. */
            if (!is_clean_value(h->value.base, h->value.len)) {
                snprintf(err, errlen, "the value of header \"%s\" contains a control character",
                         cc->forward_headers[j]);
                return -EINVAL;
            }
            lines[n++] = h2o_iovec_init(cc->forward_headers[j], strlen(cc->forward_headers[j]));
            lines[n++] = h2o_iovec_init(H2O_STRLIT(": "));
            lines[n++] = h->value;
            lines[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
        }
    }
    call->extra_headers = gd_arena_concat(arena, lines, n);
    call->per_request_len = 0;
    for (size_t i = 0; i < per_request_lines; i++)
        call->per_request_len += lines[i].len;
    return 0;
}
