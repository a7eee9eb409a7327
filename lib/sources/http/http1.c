#include "sources/http/http1.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"

/* The end of the line starting at @p (past its LF), or NULL when it is not complete. A bare
 * LF ends a line too, as RFC 9112 section 2.2 lets a recipient accept. */
static const char *line_end(const char *p, const char *end)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    return lf != NULL ? lf + 1 : NULL;
}

/* @s without its leading and trailing spaces and tabs, and the line ending. */
static void trim(const char **s, const char **e)
{
    while (*e > *s && ((*e)[-1] == '\n' || (*e)[-1] == '\r' || (*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Whether the comma-separated list @s..@e holds @token (case-insensitive). */
static bool has_token(const char *s, const char *e, const char *token)
{
    size_t n = strlen(token);
    while (s < e) {
        const char *comma = memchr(s, ',', (size_t)(e - s)), *item_end = comma ? comma : e;
        const char *a = s, *b = item_end;
        trim(&a, &b);
        if ((size_t)(b - a) == n && strncasecmp(a, token, n) == 0)
            return true;
        s = comma ? comma + 1 : e;
    }
    return false;
}

/* Whether the last coding of the list @s..@e is "chunked"; *@has_other when another is named. */
static bool ends_chunked(const char *s, const char *e, bool *has_other)
{
    bool last_is_chunked = false;
    while (s < e) {
        const char *comma = memchr(s, ',', (size_t)(e - s)), *item_end = comma ? comma : e;
        const char *a = s, *b = item_end;
        trim(&a, &b);
        if (b > a) {
            last_is_chunked = (size_t)(b - a) == 7 && strncasecmp(a, "chunked", 7) == 0;
            if (!last_is_chunked)
                *has_other = true;
        }
        s = comma ? comma + 1 : e;
    }
    return last_is_chunked;
}

int gd_http1_parse_head(const char *buf, size_t len, bool is_head_request, gd_http1_head_t *ret)
{
    const char *p = buf, *end = buf + (len < GD_HTTP1_MAX_HEAD ? len : GD_HTTP1_MAX_HEAD), *eol;
    gd_http1_head_t h = {0};
    bool has_length = false, is_chunked = false, has_other_coding = false, has_close = false,
         has_keepalive = false;

    /* status-line = HTTP-version SP status-code SP [ reason-phrase ] */
    if ((eol = line_end(p, end)) == NULL)
        return len >= GD_HTTP1_MAX_HEAD ? -EPROTO : (len >= 5 && memcmp(buf, "HTTP/", 5) != 0)
                                                        ? -EPROTO
                                                        : -EAGAIN;
    if (eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
        p[8] != ' ' || !(p[9] >= '1' && p[9] <= '5') || p[10] < '0' || p[10] > '9' ||
        p[11] < '0' || p[11] > '9' || (p[12] != ' ' && p[12] != '\r' && p[12] != '\n'))
        return -EPROTO;
    h.minor_version = p[7] - '0';
    h.status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    p = eol;

    for (;;) {
        if ((eol = line_end(p, end)) == NULL)
            return len >= GD_HTTP1_MAX_HEAD ? -EPROTO : -EAGAIN;
        if (eol - p == 1 || (eol - p == 2 && *p == '\r'))
            break; /* the blank line ending the head */
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL || colon == p)
            return -EPROTO;
        for (const char *c = p; c < colon; c++)
            if (!is_tchar(*c))
                return -EPROTO; /* no space before the colon either (section 5.1) */
        const char *v = colon + 1, *ve = eol;
        trim(&v, &ve);
        size_t nlen = (size_t)(colon - p);
        if (nlen == 14 && strncasecmp(p, "content-length", 14) == 0) {
            uint64_t n = 0;
            if (v == ve || ve - v > 19)
                return -EPROTO;
            for (const char *c = v; c < ve; c++) {
                if (*c < '0' || *c > '9')
                    return -EPROTO;
                n = n * 10 + (uint64_t)(*c - '0');
            }
            if (has_length && n != h.content_length)
                return -EPROTO; /* conflicting lengths: a smuggling attempt (section 6.3) */
            has_length = true;
            h.content_length = n;
        } else if (nlen == 17 && strncasecmp(p, "transfer-encoding", 17) == 0) {
            is_chunked = ends_chunked(v, ve, &has_other_coding);
        } else if (nlen == 10 && strncasecmp(p, "connection", 10) == 0) {
            has_close |= has_token(v, ve, "close");
            has_keepalive |= has_token(v, ve, "keep-alive");
        }
        p = eol;
    }
    h.head_len = (size_t)(eol - buf);

    if (is_head_request || (h.status >= 100 && h.status <= 199) || h.status == 204 ||
        h.status == 304) {
        h.framing = GD_HTTP1_NO_BODY;
    } else if (is_chunked || has_other_coding) {
        if (has_other_coding && !is_chunked)
            return -EPROTO; /* a coding we cannot undo, with no way to find the body's end */
        if (has_other_coding)
            return -EPROTO; /* e.g. gzip, chunked: the body would not be JSON as sent */
        h.framing = GD_HTTP1_CHUNKED;
    } else if (has_length) {
        h.framing = GD_HTTP1_LENGTH;
    } else {
        h.framing = GD_HTTP1_UNTIL_CLOSE;
    }
    h.is_keepalive = h.framing != GD_HTTP1_UNTIL_CLOSE && !has_close &&
                     (h.minor_version >= 1 || has_keepalive) &&
                     !(is_chunked && has_length); /* both: the length lied; don't trust more */
    *ret = h;
    return 0;
}

enum {
    CHUNK_SIZE = 0, /* reading hex digits */
    CHUNK_EXT,      /* skipping an extension up to the line's end */
    CHUNK_DATA,
    CHUNK_DATA_END, /* the CRLF after a chunk's data */
    CHUNK_TRAILER,  /* lines of the trailer section, until an empty one */
    CHUNK_TRAILER_LINE,
    CHUNK_DONE,
};

ssize_t gd_http1_dechunk(gd_http1_chunked_t *d, char *buf, size_t len, bool *is_done,
                         size_t *consumed)
{
    size_t in = 0, out = 0;

    *is_done = d->_state == CHUNK_DONE;
    while (in < len && d->_state != CHUNK_DONE) {
        char c = buf[in];
        switch (d->_state) {
        case CHUNK_SIZE: {
            int v = gd_hex_value(c);
            if (v >= 0) {
                if (++d->_size_digits > 15)
                    return -EPROTO; /* larger than any body we would accept */
                d->_left = d->_left * 16 + (uint64_t)v;
                in++;
            } else if (d->_size_digits == 0) {
                return -EPROTO;
            } else if (c == ';' || c == ' ' || c == '\t' || c == '\r') {
                d->_state = CHUNK_EXT;
                in++;
            } else if (c == '\n') {
                in++;
                d->_size_digits = 0;
                d->_state = d->_left == 0 ? CHUNK_TRAILER : CHUNK_DATA;
            } else {
                return -EPROTO;
            }
            break;
        }
        case CHUNK_EXT:
            if (c == '\n') {
                d->_size_digits = 0;
                d->_state = d->_left == 0 ? CHUNK_TRAILER : CHUNK_DATA;
            }
            in++;
            break;
        case CHUNK_DATA: {
            size_t n = len - in < d->_left ? len - in : (size_t)d->_left;
            memmove(buf + out, buf + in, n);
            out += n;
            in += n;
            d->_left -= n;
            if (d->_left == 0)
                d->_state = CHUNK_DATA_END;
            break;
        }
        case CHUNK_DATA_END:
            if (c == '\n')
                d->_state = CHUNK_SIZE;
            else if (c != '\r')
                return -EPROTO;
            in++;
            break;
        case CHUNK_TRAILER: /* at the start of a trailer line */
            if (c == '\n') {
                d->_state = CHUNK_DONE;
            } else if (c != '\r') {
                d->_state = CHUNK_TRAILER_LINE;
            }
            in++;
            break;
        case CHUNK_TRAILER_LINE:
            if (c == '\n')
                d->_state = CHUNK_TRAILER;
            in++;
            break;
        }
    }
    *is_done = d->_state == CHUNK_DONE;
    *consumed = in;
    return (ssize_t)out;
}
