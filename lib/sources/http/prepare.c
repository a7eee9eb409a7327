/* Renders an HTTP call's request from its config templates: the path (percent-encoded values)
 * and the header lines (request id, trace context, the call's own headers). */
#include "sources/http/upstream_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Expands a header template without percent-encoding; -EINVAL when a value would smuggle a
 * control character (CR LF: a second header) into the upstream request. */
static int expand_header_value(const gd_template_t *t, const gd_strv_t *values,
                               h2o_mem_pool_t *arena, h2o_iovec_t *ret)
{
    size_t len = gd_template_expand_raw(t, values, NULL, 0);
    char *buf = h2o_mem_alloc_pool(arena, len + 1);

    gd_template_expand_raw(t, values, buf, len);
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)buf[i] < 0x20 && buf[i] != '\t') || buf[i] == 0x7f)
            return -EINVAL;
    *ret = h2o_iovec_init(buf, len);
    return 0;
}

int gd__upstream_call_prepare(gd_call_t *base, const gd_call_conf_t *cc, const gd_call_input_t *in,
                              char *err, size_t errlen)
{
    gd_upstream_call_t *call = (gd_upstream_call_t *)base;
    h2o_mem_pool_t *arena = in->arena;
    const char *upath = cc->upstream->base_path;
    size_t base_len = strlen(upath);
    size_t cap = base_len + gd_template_max_len(&cc->path, in->values);
    char *path = h2o_mem_alloc_pool(arena, cap + 1);

    memcpy(path, upath, base_len);
    size_t len =
        base_len + gd_template_expand(&cc->path, in->values, path + base_len, cap - base_len);
    call->method = cc->method;
    call->path = h2o_iovec_init(path, len);
    call->is_idempotent = cc->is_idempotent;
    call->has_body = strcmp(cc->method, "POST") == 0 || strcmp(cc->method, "PUT") == 0 ||
                     strcmp(cc->method, "PATCH") == 0 || cc->is_body_forwarded;
    if (cc->is_body_forwarded && in->body.len != 0) {
        /* Copied: h2o's request (and the body it holds) may go before the call ends. Its size
         * is bounded by max_request_body_bytes. */
        char *body = h2o_mem_alloc_pool(arena, in->body.len);
        memcpy(body, in->body.base, in->body.len);
        call->body = h2o_iovec_init(body, in->body.len);
    }

    /* Every call carries the request id, and a child span of the client's trace, if any. */
    size_t n = 3, ntrace = in->trace != NULL ? 3 : 0;
    h2o_iovec_t *lines =
        h2o_mem_alloc_pool(arena, sizeof(*lines) * (n + ntrace + 3 + cc->nheaders * 4));
    lines[0] = h2o_iovec_init(H2O_STRLIT("x-request-id: "));
    lines[1] = h2o_iovec_init(in->request_id, strlen(in->request_id));
    lines[2] = h2o_iovec_init(H2O_STRLIT("\r\n"));
    if (in->trace != NULL) {
        char *tp = h2o_mem_alloc_pool(arena, GD_TRACE_TRACEPARENT_LEN + 1);
        gd_trace_child(in->trace, tp);
        lines[n++] = h2o_iovec_init(H2O_STRLIT("traceparent: "));
        lines[n++] = h2o_iovec_init(tp, GD_TRACE_TRACEPARENT_LEN);
        lines[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
    }
    if (cc->is_body_forwarded && in->content_type.len != 0) {
        /* The client's own Content-Type goes with its body; h2o has parsed it as a field
         * value, so it holds no CR or LF. */
        lines[n++] = h2o_iovec_init(H2O_STRLIT("content-type: "));
        lines[n++] = h2o_strdup(arena, in->content_type.base, in->content_type.len);
        lines[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
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
    call->extra_headers = h2o_concat_list(arena, lines, n);
    return 0;
}
