#include "sources/http/http1.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/util.h"

/* picohttpparser, as libh2o 2.2.5 exports it (the package installs no header for it, so its API
 * is declared here; libh2o's own HTTP/1 code is its user, which pins it). */
struct phr_header {
    const char *name; /* NULL for the continuation line of a folded field */
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status,
                       const char **msg, size_t *msg_len, struct phr_header *headers,
                       size_t *num_headers, size_t last_len);

/* @s without its leading and trailing spaces and tabs. */
static void trim(const char **s, const char **e)
{
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
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

/* The content coding named by the list @s..@e, added to what earlier fields named (@c). */
static gd_http1_coding_t add_codings(gd_http1_coding_t c, const char *s, const char *e)
{
    while (s < e) {
        const char *comma = memchr(s, ',', (size_t)(e - s)), *item_end = comma ? comma : e;
        const char *a = s, *b = item_end;
        trim(&a, &b);
        size_t n = (size_t)(b - a);
        if (n == 0 || (n == 8 && strncasecmp(a, "identity", 8) == 0))
            ; /* no coding */
        else if (c == GD_HTTP1_IDENTITY && ((n == 4 && strncasecmp(a, "gzip", 4) == 0) ||
                                            (n == 6 && strncasecmp(a, "x-gzip", 6) == 0)))
            c = GD_HTTP1_GZIP;
        else
            c = GD_HTTP1_OTHER;
        s = comma ? comma + 1 : e;
    }
    return c;
}

static bool is_name(const struct phr_header *f, const char *name, size_t len)
{
    return f->name_len == len && strncasecmp(f->name, name, len) == 0;
}

/* Retry-After: delay-seconds (at most a day counts) or an IMF-fixdate, in ms from now; -1 when
 * malformed. */
static int64_t parse_retry_after(const char *v, const char *ve)
{
    char date[64];
    struct tm tm = {0};

    if (v < ve && *v >= '0' && *v <= '9') {
        int64_t s = 0;
        for (const char *c = v; c < ve; c++) {
            if (*c < '0' || *c > '9' || c - v > 9)
                return -1;
            s = s * 10 + (*c - '0');
        }
        return s * 1000;
    }
    if ((size_t)(ve - v) >= sizeof(date))
        return -1;
    memcpy(date, v, (size_t)(ve - v));
    date[ve - v] = '\0';
    const char *end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == NULL || *end != '\0')
        return -1;
    time_t at = timegm(&tm), now = time(NULL);
    return at <= now ? 0 : (int64_t)(at - now) * 1000;
}

/* The delta-seconds after "NAME=" at the start of token [@t, @te), or -1. */
static int64_t directive_seconds(const char *t, const char *te, const char *name, size_t len)
{
    int64_t s = 0;

    if ((size_t)(te - t) <= len || strncasecmp(t, name, len) != 0 || t[len] != '=')
        return -1;
    t += len + 1;
    if (t < te && *t == '"' && te[-1] == '"' && te - t >= 2) { /* a quoted form, tolerated */
        t++;
        te--;
    }
    if (t == te)
        return -1;
    for (; t < te; t++) {
        if (*t < '0' || *t > '9')
            return -1;
        if (s < INT64_C(86400) * 365 * 100) /* beyond a century it makes no difference */
            s = s * 10 + (*t - '0');
    }
    return s;
}

/* Folds the directives of one Cache-Control field [@v, @ve) into what the earlier ones said. */
static void read_cache_control(const char *v, const char *ve, int64_t *max_age_s,
                               int64_t *s_maxage_s, bool *is_forbidden)
{
    while (v < ve) {
        const char *te = memchr(v, ',', (size_t)(ve - v));
        if (te == NULL)
            te = ve;
        const char *t = v, *tend = te;
        trim(&t, &tend);
        size_t n = (size_t)(tend - t);
        int64_t s;
        if ((n == 8 && strncasecmp(t, "no-store", 8) == 0) ||
            (n >= 8 && strncasecmp(t, "no-cache", 8) == 0) ||
            (n >= 7 && strncasecmp(t, "private", 7) == 0))
            *is_forbidden = true;
        else if ((s = directive_seconds(t, tend, "s-maxage", 8)) >= 0)
            *s_maxage_s = s;
        else if ((s = directive_seconds(t, tend, "max-age", 7)) >= 0)
            *max_age_s = s;
        v = te < ve ? te + 1 : ve;
    }
}

/* The framing fields of the head (RFC 9112 section 6.3) into *@h; -EPROTO when they conflict. */
static int read_framing(const struct phr_header *fields, size_t nfields, bool is_head_request,
                        gd_http1_head_t *h)
{
    bool has_length = false, is_chunked = false, has_other_coding = false, has_close = false,
         has_keepalive = false, is_uncacheable = false;
    int64_t max_age_s = -1, s_maxage_s = -1;

    for (size_t i = 0; i < nfields; i++) {
        const struct phr_header *f = &fields[i];
        if (f->name == NULL)
            return -EPROTO; /* obs-fold: a gateway may refuse it (RFC 9112 section 5.2) */
        const char *v = f->value, *ve = f->value + f->value_len;
        trim(&v, &ve);
        if (is_name(f, "content-length", 14)) {
            uint64_t n = 0;
            if (v == ve || ve - v > 19)
                return -EPROTO;
            for (const char *c = v; c < ve; c++) {
                if (*c < '0' || *c > '9')
                    return -EPROTO; /* a list too, even of equal values */
                n = n * 10 + (uint64_t)(*c - '0');
            }
            if (has_length && n != h->content_length)
                return -EPROTO; /* conflicting lengths: a smuggling attempt (section 6.3) */
            has_length = true;
            h->content_length = n;
        } else if (is_name(f, "transfer-encoding", 17)) {
            is_chunked = ends_chunked(v, ve, &has_other_coding);
        } else if (is_name(f, "connection", 10)) {
            has_close |= has_token(v, ve, "close");
            has_keepalive |= has_token(v, ve, "keep-alive");
        } else if (is_name(f, "content-encoding", 16)) {
            h->coding = add_codings(h->coding, v, ve);
        } else if (is_name(f, "retry-after", 11)) {
            h->retry_after_ms = parse_retry_after(v, ve);
        } else if (is_name(f, "cache-control", 13)) {
            read_cache_control(v, ve, &max_age_s, &s_maxage_s, &is_uncacheable);
        }
    }
    /* A shared cache prefers s-maxage (RFC 9111 section 5.2.2.10). */
    h->max_age_ms = is_uncacheable ? 0
                    : s_maxage_s >= 0 ? s_maxage_s * 1000
                    : max_age_s >= 0  ? max_age_s * 1000
                                      : -1;
    if (is_head_request || (h->status >= 100 && h->status <= 199) || h->status == 204 ||
        h->status == 304) {
        h->framing = GD_HTTP1_NO_BODY;
    } else if (is_chunked || has_other_coding) {
        if (has_other_coding && !is_chunked)
            return -EPROTO; /* a coding we cannot undo, with no way to find the body's end */
        if (has_other_coding)
            return -EPROTO; /* e.g. gzip, chunked: the body would not be JSON as sent */
        h->framing = GD_HTTP1_CHUNKED;
    } else if (has_length) {
        h->framing = GD_HTTP1_LENGTH;
    } else {
        h->framing = GD_HTTP1_UNTIL_CLOSE;
    }
    h->is_keepalive = h->framing != GD_HTTP1_UNTIL_CLOSE && !has_close &&
                      (h->minor_version >= 1 || has_keepalive) &&
                      !(is_chunked && has_length); /* both: the length lied; don't trust more */
    return 0;
}

/* The syntax is picohttpparser's (it was as fast as gatherd's own reader and refuses more:
 * control characters in names and values, bare CRs, a status line without its SP); the framing
 * rules on top are gatherd's (README, "How upstream calls work"). */
int gd_http1_parse_head(const char *buf, size_t len, bool is_head_request, gd_http1_head_t *ret)
{
    struct phr_header fields[GD_HTTP1_MAX_FIELDS];
    size_t nfields = GD_HTTP1_MAX_FIELDS, msg_len;
    size_t n = len < GD_HTTP1_MAX_HEAD ? len : GD_HTTP1_MAX_HEAD;
    gd_http1_head_t h = {.retry_after_ms = -1, .max_age_ms = -1};
    const char *msg;
    int r;

    /* Not an answer at all: known from the first bytes, not only once a line has ended. */
    if (len >= 5 && memcmp(buf, "HTTP/", 5) != 0)
        return -EPROTO;
    r = phr_parse_response(buf, n, &h.minor_version, &h.status, &msg, &msg_len, fields, &nfields,
                           0);
    if (r == -2)
        return len >= GD_HTTP1_MAX_HEAD ? -EPROTO : -EAGAIN;
    if (r < 0 || h.minor_version > 1 || h.status < 100 || h.status > 599)
        return -EPROTO; /* also more than GD_HTTP1_MAX_FIELDS fields */
    h.head_len = (size_t)r;
    if ((r = read_framing(fields, nfields, is_head_request, &h)) != 0)
        return r;
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
