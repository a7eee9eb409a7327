/*
 * gd_framing: refuses HTTP/1.1 requests whose message framing is ambiguous. h2o 2.2.5's parser
 * takes the first of two different Content-Length values and takes chunked when
 * Transfer-Encoding comes with Content-Length, then serves the next pipelined request; a proxy in
 * front that reads the other length sees a different next request (request smuggling).
 * RFC 9112 section 6.3 wants such a message refused and the connection closed, which h2o leaves
 * to gatherd: h2o keeps the framing fields out of req->headers, so the request head is parsed
 * once more from the connection's input buffer, where h2o keeps it until the answer is written.
 */
#ifndef GD_FRAMING_H
#define GD_FRAMING_H

#include <stddef.h>

#include <h2o.h>

enum {
    GD_FRAMING_OK = 0,
    GD_FRAMING_AMBIGUOUS = 1, /* refuse with 400 and close the connection */
};

/**
 * Checks the framing fields of the HTTP/1 request head at the start of @buf (@len bytes; what
 * follows the head is ignored). Returns GD_FRAMING_OK (also when @buf holds no whole head), or
 * GD_FRAMING_AMBIGUOUS with a static text saying why in @ret_reason: two Content-Length values
 * that differ, Transfer-Encoding with Content-Length, Transfer-Encoding twice, or
 * Transfer-Encoding in an HTTP/1.0 request (RFC 9112 section 6.1).
 */
int gd_framing_check_head(const char *buf, size_t len, const char **ret_reason);

/**
 * gd_framing_check_head() on the head of @req, an HTTP/1 request h2o has parsed; GD_FRAMING_OK
 * for HTTP/2 requests (their frames carry the framing).
 */
int gd_framing_check(h2o_req_t *req, const char **ret_reason);

#endif
