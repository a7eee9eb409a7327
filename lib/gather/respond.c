#include "gather/respond.h"

#include <stdio.h>
#include <string.h>

#include "json/json.h"

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 499:
        return "Client Closed Request";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 500 ? "Client Error" : "Server Error";
    }
}

static bool is_head_request(const h2o_req_t *req)
{
    return h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"));
}

void gd_respond_json(h2o_req_t *req, int status, char *body, size_t len, const char *complete)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t buf = h2o_iovec_init(body, len);

    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    if (complete != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-gatherd-complete"), 0,
                              "X-Gatherd-Complete", complete, strlen(complete));
    h2o_start_response(req, &generator);
    if (is_head_request(req))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

size_t gd_respond_error(h2o_req_t *req, int status, const char *code, const char *message,
                        const char *hname, const char *hvalue)
{
    size_t mlen = strlen(message);
    size_t qlen = gd_json_quote(message, mlen, NULL, 0);
    size_t cap = qlen + strlen(code) + 32;
    char *body = h2o_mem_alloc_pool(&req->pool, cap);
    int n = snprintf(body, cap, "{\"error\":\"%s\",\"message\":", code);
    size_t len = (size_t)n + gd_json_quote(message, mlen, body + n, cap - (size_t)n);

    body[len++] = '}';
    if (hname != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, hname, strlen(hname), 1, NULL, hvalue,
                              strlen(hvalue));
    gd_respond_json(req, status, body, len, NULL);
    return len;
}
