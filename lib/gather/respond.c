#include "gather/respond.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "base/util.h"
#include "gather/negotiate.h"
#include "json/json.h"

/* A 4 KiB window and memLevel 5: the stream's state is 32 KiB instead of zlib's default 256 KiB
 * (window 15, memLevel 8), which stays in cache between answers on a loaded loop. JSON answers
 * come out the same size at level 1 (the profile answer: 809 bytes either way; 10 MB of rows:
 * 1.11 against 1.15 MB), and the profile benchmark's gzip cost fell from +52 to +35 us per
 * request (tests/bench/run-gzip.sh, interleaved windows on the 2-core machine). */
#define GZIP_WINDOW_BITS (12 + 16) /* +16: a gzip header and trailer, not zlib's */
#define GZIP_MEM_LEVEL   5
/* The ETag is the first 16 bytes of the SHA-256 of the identity body, in hex. */
#define ETAG_HASH_BYTES  16
#define ETAG_GZIP_SUFFIX "-gz"

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
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

static bool is_method(const h2o_req_t *req, const char *m, size_t len)
{
    return h2o_memis(req->input.method.base, req->input.method.len, m, len);
}

void gd_responder_init(gd_responder_t *rs)
{
    rs->outbox = NULL;
    rs->_zs = NULL;
    rs->_level = 0;
}

void gd_responder_dispose(gd_responder_t *rs)
{
    if (rs->_zs != NULL) {
        (void)deflateEnd(rs->_zs); /* Z_DATA_ERROR only says a stream was left unfinished */
        free(rs->_zs);
    }
    rs->_zs = NULL;
}

/* Whether every Accept-Encoding field of @req, taken together, accepts gzip. */
static bool accepts_gzip(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, -1);
    ssize_t next;

    if (i < 0)
        return false;
    if ((next = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, i)) < 0)
        return gd_negotiate_accepts_gzip(req->headers.entries[i].value.base,
                                         req->headers.entries[i].value.len);
    /* Several fields are one list (RFC 9110 section 5.3): joined, in the request's pool. */
    h2o_iovec_t joined = req->headers.entries[i].value;
    for (; next >= 0; next = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, next))
        joined = h2o_concat(&req->pool, joined, h2o_iovec_init(H2O_STRLIT(", ")),
                            req->headers.entries[next].value);
    return gd_negotiate_accepts_gzip(joined.base, joined.len);
}

static bool none_match(h2o_req_t *req, const char *etag, size_t etag_len)
{
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, i)) >= 0;)
        if (gd_negotiate_none_match(req->headers.entries[i].value.base,
                                    req->headers.entries[i].value.len, etag, etag_len))
            return true;
    return false;
}

/* The strong ETag of @body, in req's pool: "HEX" for identity, "HEX-gz" for its gzip coding
 * (RFC 9110 section 8.8.3: each representation its own tag). */
static h2o_iovec_t make_etag(h2o_req_t *req, const char *body, size_t len, bool is_gzip)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t cap = 2 + 2 * ETAG_HASH_BYTES + sizeof(ETAG_GZIP_SUFFIX);
    char *s = h2o_mem_alloc_pool(&req->pool, cap), *p = s;

    GD_REQUIRE(EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL) == 1);
    *p++ = '"';
    for (size_t i = 0; i < ETAG_HASH_BYTES; i++) {
        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 15];
    }
    if (is_gzip) {
        memcpy(p, ETAG_GZIP_SUFFIX, strlen(ETAG_GZIP_SUFFIX));
        p += strlen(ETAG_GZIP_SUFFIX);
    }
    *p++ = '"';
    return h2o_iovec_init(s, (size_t)(p - s));
}

/* Compresses @body into req's pool with the thread's stream. Returns false on a zlib failure
 * (then the answer goes out as it is). */
static bool gzip_body(gd_responder_t *rs, h2o_req_t *req, int level, const char *body, size_t len,
                      h2o_iovec_t *ret)
{
    z_stream *zs = rs->_zs;

    if (zs == NULL) {
        zs = gd_xcalloc(1, sizeof(*zs));
        if (deflateInit2(zs, level, Z_DEFLATED, GZIP_WINDOW_BITS, GZIP_MEM_LEVEL,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            free(zs);
            return false;
        }
        rs->_zs = zs;
        rs->_level = level;
    } else {
        (void)deflateReset(zs); /* Z_OK on a stream deflateInit2 made */
        if (level != rs->_level) {
            if (deflateParams(zs, level, Z_DEFAULT_STRATEGY) != Z_OK)
                return false;
            rs->_level = level;
        }
    }
    size_t cap = deflateBound(zs, len);
    unsigned char *out = h2o_mem_alloc_pool(&req->pool, cap);
    /* zlib counts in uInt: a body past 4 GiB is fed in pieces */
    zs->next_out = out;
    zs->avail_out = 0;
    const unsigned char *in = (const unsigned char *)body;
    size_t in_left = len, out_left = cap;
    int zr;
    do {
        uInt in_chunk = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
        uInt out_chunk = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
        zs->next_in = (unsigned char *)in;
        zs->avail_in = in_chunk;
        zs->avail_out = out_chunk;
        zr = deflate(zs, in_chunk == in_left ? Z_FINISH : Z_NO_FLUSH);
        in += in_chunk - zs->avail_in;
        in_left -= in_chunk - zs->avail_in;
        out_left -= out_chunk - zs->avail_out;
    } while (zr == Z_OK && out_left > 0);
    if (zr != Z_STREAM_END)
        return false;
    *ret = h2o_iovec_init(out, cap - out_left);
    return true;
}

static void add_header(h2o_req_t *req, const h2o_token_t *token, const char *value)
{
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, strlen(value));
}

size_t gd_respond(gd_responder_t *rs, h2o_req_t *req, const gd_answer_t *a)
{
    bool is_head = is_method(req, H2O_STRLIT("HEAD"));
    bool is_get = is_method(req, H2O_STRLIT("GET"));
    bool is_complete = a->complete != NULL && strcmp(a->complete, "true") == 0;
    bool is_cacheable = is_complete && a->status >= 200 && a->status < 300;
    bool may_compress = a->compress != NULL && a->compress->is_enabled;
    bool is_gzip = may_compress && !is_head && a->len >= a->compress->min_bytes &&
                   a->status != 204 && a->status != 304 && accepts_gzip(req);
    h2o_iovec_t buf = h2o_iovec_init(a->body, a->len);

    req->res.status = a->status;
    req->res.reason = reason_phrase(a->status);
    if (a->complete != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-gatherd-complete"), 0,
                              "X-Gatherd-Complete", a->complete, strlen(a->complete));
    /* Whether a gzip answer is given depends on the request's Accept-Encoding, for every
     * answer of an endpoint that compresses, small ones included (a cache must not hand a gzip
     * copy to a client that cannot read it, nor keep identity copies needlessly). */
    if (may_compress)
        add_header(req, H2O_TOKEN_VARY, "Accept-Encoding");
    if (is_cacheable && a->cache_control != NULL)
        add_header(req, H2O_TOKEN_CACHE_CONTROL, a->cache_control);
    else if (!is_cacheable)
        add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
    if (a->has_etag && is_complete && a->status == 200) {
        h2o_iovec_t etag = make_etag(req, a->body, a->len, is_gzip);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, etag.base, etag.len);
        /* RFC 9110 section 13.1.2: a GET or HEAD whose If-None-Match matches gets 304, with
         * the ETag, Cache-Control and Vary a 200 would have had, and no body. */
        if ((is_get || is_head) && none_match(req, etag.base, etag.len)) {
            req->res.status = 304;
            req->res.reason = reason_phrase(304);
            req->res.content_length = SIZE_MAX; /* no Content-Length, no chunks */
            gd_outbox_send(rs->outbox, req,
                           &(gd_outbox_answer_t){.held = a->len,
                                                 .client = a->client,
                                                 .endpoint = a->endpoint});
            return 0;
        }
    }
    if (is_gzip && gzip_body(rs, req, a->compress->level, a->body, a->len, &buf))
        add_header(req, H2O_TOKEN_CONTENT_ENCODING, "gzip");
    else
        buf = h2o_iovec_init(a->body, a->len);
    req->res.content_length = buf.len;
    add_header(req, H2O_TOKEN_CONTENT_TYPE, "application/json");
    /* The body stays in req's pool until h2o disposes of the request, and its gzip copy too. */
    gd_outbox_answer_t out = {.held = a->len + (buf.base != a->body ? buf.len : 0),
                              .body = is_head ? h2o_iovec_init(NULL, 0) : buf,
                              .client = a->client,
                              .endpoint = a->endpoint};
    gd_outbox_send(rs->outbox, req, &out);
    return buf.len; /* for HEAD too: what the body is, as the access line says */
}

size_t gd_respond_error(gd_responder_t *rs, h2o_req_t *req, const gd_compress_conf_t *compress,
                        int status, const char *code, const char *message, const char *hname,
                        const char *hvalue)
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
    gd_answer_t a = {.status = status, .body = body, .len = len, .compress = compress};
    return gd_respond(rs, req, &a);
}

void gd_respond_empty(h2o_req_t *req, int status)
{
    static h2o_generator_t generator = {NULL, NULL};

    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = SIZE_MAX; /* 204: no Content-Length (RFC 9110 section 8.6) */
    h2o_start_response(req, &generator);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
}
