/*
 * gd_http1: the parts of HTTP/1.1 (RFC 9112) that the upstream client reads: a response head
 * and its body framing (section 6.3), and chunked transfer coding decoded in place as bytes
 * arrive (section 7.1). Nothing here allocates or does I/O. The head's syntax is checked by the
 * picohttpparser that libh2o exports; the framing rules and the chunked decoder are gatherd's
 * (README, "How upstream calls work", says why).
 */
#ifndef GD_HTTP1_H
#define GD_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GD_HTTP1_MAX_HEAD 65536
/* Header fields a response head may have (more are refused): a typical upstream sends 10. */
#define GD_HTTP1_MAX_FIELDS 128

typedef enum gd_http1_framing {
    GD_HTTP1_NO_BODY,     /* HEAD, 1xx, 204, 304 */
    GD_HTTP1_LENGTH,      /* Content-Length */
    GD_HTTP1_CHUNKED,     /* Transfer-Encoding: chunked */
    GD_HTTP1_UNTIL_CLOSE, /* neither: the body ends when the connection does */
} gd_http1_framing_t;

/* The content coding of the body (Content-Encoding, RFC 9110 section 8.4). */
typedef enum gd_http1_coding {
    GD_HTTP1_IDENTITY, /* none, or "identity" */
    GD_HTTP1_GZIP,     /* "gzip" (or its alias "x-gzip"), once */
    GD_HTTP1_OTHER,    /* anything else, or several codings: not undone by gatherd */
} gd_http1_coding_t;

typedef struct gd_http1_head {
    int minor_version;
    int status;
    size_t head_len; /* bytes of the head, the blank line included */
    gd_http1_framing_t framing;
    uint64_t content_length; /* GD_HTTP1_LENGTH */
    bool is_keepalive;       /* the connection may carry another request afterwards */
    gd_http1_coding_t coding;
    /* Retry-After (RFC 9110 section 10.2.3), delay-seconds or an HTTP-date, in ms from now
     * (0 for a date in the past); -1 when absent or malformed */
    int64_t retry_after_ms;
    /* Cache-Control (RFC 9111 section 5.2.2): s-maxage, else max-age, in ms; 0 for no-store,
     * no-cache or private (a shared cache must not reuse it as it is); -1 when it says neither */
    int64_t max_age_ms;
} gd_http1_head_t;

/**
 * Parses the response head at the start of @buf (@len bytes received so far) to a request
 * whose method was HEAD when @is_head_request. Returns 0 with *@ret filled; -EAGAIN when more
 * bytes are needed; -EPROTO when it is not a valid response head (or longer than
 * GD_HTTP1_MAX_HEAD or GD_HTTP1_MAX_FIELDS, or it has a transfer coding other than chunked,
 * conflicting lengths, a folded field, or a control character in a field).
 * An interim 1xx response (other than 101) parses like any other: the caller skips head_len
 * bytes and parses again.
 */
int gd_http1_parse_head(const char *buf, size_t len, bool is_head_request, gd_http1_head_t *ret);

/* The state of a chunked body being decoded. Zero it before the first call. */
typedef struct gd_http1_chunked {
    /* private */
    int _state;
    uint64_t _left;   /* bytes left in the current chunk, or the size being read */
    int _size_digits;
} gd_http1_chunked_t;

/**
 * Decodes @len bytes at @buf in place: the body's data bytes are moved to the front of @buf.
 * Returns the number of data bytes now at @buf, or -EPROTO on malformed coding. *@is_done
 * becomes true once the last chunk and the trailer section have ended; *@consumed tells how
 * many of the @len bytes belonged to the body (bytes after its end are not part of it).
 */
ssize_t gd_http1_dechunk(gd_http1_chunked_t *d, char *buf, size_t len, bool *is_done,
                         size_t *consumed);

#endif
