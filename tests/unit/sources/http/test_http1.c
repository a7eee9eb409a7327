#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sources/http/http1.h"
#include "runner.h"

static int parse(const char *s, bool is_head, gd_http1_head_t *h)
{
    return gd_http1_parse_head(s, strlen(s), is_head, h);
}

static void test_heads(void)
{
    gd_http1_head_t h;
    const char *r = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{}";
    CHECK_INT_EQ(parse(r, false, &h), 0);
    CHECK_INT_EQ(h.status, 200);
    CHECK_INT_EQ(h.minor_version, 1);
    CHECK_INT_EQ(h.framing, GD_HTTP1_LENGTH);
    CHECK_INT_EQ(h.content_length, 12);
    CHECK(h.is_keepalive);
    CHECK_INT_EQ(h.head_len, strlen(r) - 2);
    /* every prefix of a head is incomplete, never an error */
    for (size_t n = 0; n < h.head_len; n++) {
        gd_http1_head_t x;
        int rr = gd_http1_parse_head(r, n, false, &x);
        if (rr != -EAGAIN)
            gd__test_fail(__FILE__, __LINE__, "prefix of %zu bytes gave %d", n, rr);
    }
    CHECK_INT_EQ(parse("HTTP/1.1 404 \r\ntransfer-encoding: chunked\r\n\r\n", false, &h), 0);
    CHECK_INT_EQ(h.status, 404);
    CHECK_INT_EQ(h.framing, GD_HTTP1_CHUNKED);
    CHECK_INT_EQ(parse("HTTP/1.1 200 \nContent-Length: 0\n\n", false, &h), 0); /* bare LF */
    CHECK_INT_EQ(h.content_length, 0);
    /* the SP before an empty reason phrase is not optional (RFC 9112 section 4) */
    CHECK_INT_EQ(parse("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, &h), -EPROTO);
    CHECK_INT_EQ(parse("HTTP/1.1 204 No Content\r\n\r\n", false, &h), 0);
    CHECK_INT_EQ(h.framing, GD_HTTP1_NO_BODY);
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, &h), 0);
    CHECK_INT_EQ(h.framing, GD_HTTP1_NO_BODY); /* HEAD */
    CHECK_INT_EQ(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", false, &h), 0);
    CHECK_INT_EQ(h.status, 100);
    CHECK_INT_EQ(h.head_len, 25);
}

static void test_keepalive_rules(void)
{
    gd_http1_head_t h;
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false, &h), 0);
    CHECK(!h.is_keepalive);
    CHECK_INT_EQ(parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, &h), 0);
    CHECK(!h.is_keepalive);
    CHECK_INT_EQ(parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n", false, &h), 0);
    CHECK(h.is_keepalive);
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\n\r\n", false, &h), 0);
    CHECK_INT_EQ(h.framing, GD_HTTP1_UNTIL_CLOSE);
    CHECK(!h.is_keepalive);
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 1\r\n\r\n", false, &h), 0);
    CHECK(!h.is_keepalive);
    /* both framings: chunked wins, and the connection is not trusted further */
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", false, &h), 0);
    CHECK_INT_EQ(h.framing, GD_HTTP1_CHUNKED);
    CHECK(!h.is_keepalive);
}

static void test_bad_heads(void)
{
    gd_http1_head_t h;
    const char *bad[] = {
        "GARBAGE\r\n\r\n", "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 600 X\r\n\r\n", "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad name: x\r\n\r\n", "HTTP/1.1 200 OK\r\n: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = parse(bad[i], false, &h);
        if (r != -EPROTO)
            gd__test_fail(__FILE__, __LINE__, "case %zu gave %d: %s", i, r, bad[i]);
    }
    CHECK_INT_EQ(parse("GARB", false, &h), -EAGAIN); /* too short to tell yet */
    /* the same length twice is fine */
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n", false, &h), 0);
}

static void test_dechunk_every_split(void)
{
    const char coded[] = "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n"
                         "X-Trailer: 1\r\n\r\nNEXT";
    const char want[] = "Wikipedia in\r\n\r\nchunks.";
    size_t body_len = strlen(coded) - 4; /* NEXT is not part of the body */

    for (size_t split = 0; split <= strlen(coded); split++) {
        char buf[sizeof(coded)], out[sizeof(coded)];
        gd_http1_chunked_t d = {0};
        size_t outlen = 0, consumed_total = 0;
        bool done = false;
        memcpy(buf, coded, sizeof(coded));
        size_t parts[2] = {split, strlen(coded) - split};
        char *p = buf;
        for (int i = 0; i < 2 && !done; i++) {
            size_t consumed;
            ssize_t n = gd_http1_dechunk(&d, p, parts[i], &done, &consumed);
            CHECK(n >= 0);
            memcpy(out + outlen, p, (size_t)n);
            outlen += (size_t)n;
            consumed_total += consumed;
            p += parts[i];
        }
        CHECK(done);
        CHECK_INT_EQ(consumed_total, body_len);
        CHECK_MEM_EQ(out, outlen, want);
    }
}

static void test_dechunk_errors(void)
{
    const char *bad[] = {"x\r\n", "4\r\nWikiX\r\n", "\r\n", "1000000000000000\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char buf[64];
        gd_http1_chunked_t d = {0};
        bool done;
        size_t consumed;
        strcpy(buf, bad[i]);
        CHECK_INT_EQ(gd_http1_dechunk(&d, buf, strlen(buf), &done, &consumed), -EPROTO);
    }
}

/* Inputs a hostile or broken upstream sends, each refused (-EPROTO) rather than guessed at. */
static void test_hostile_heads(void)
{
    gd_http1_head_t h;
    const char *bad[] = {
        /* obs-fold: a gateway may refuse it (RFC 9112 section 5.2) */
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n\tContent-Length: 2\r\n\r\n",
        /* a Content-Length list, even of equal values */
        "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 02x\r\n\r\n",
        /* a length that does not fit 64 bits */
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        /* whitespace between the name and the colon (section 5.1) */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n",
        /* chunked not last: the body's end cannot be found */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = parse(bad[i], false, &h);
        if (r != -EPROTO)
            gd__test_fail(__FILE__, __LINE__, "case %zu gave %d: %s", i, r, bad[i]);
    }
    /* a NUL in a field value (RFC 9110 section 5.5) */
    static const char nul[] = "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\n";
    CHECK_INT_EQ(gd_http1_parse_head(nul, sizeof(nul) - 1, false, &h), -EPROTO);
    /* both framings: chunked wins and the connection is not reused (test_keepalive_rules), in
     * either order */
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                       false, &h),
                 0);
    CHECK_INT_EQ(h.framing, GD_HTTP1_CHUNKED);
    CHECK(!h.is_keepalive);
    /* a head that never ends is refused at GD_HTTP1_MAX_HEAD, not buffered without bound */
    size_t n = GD_HTTP1_MAX_HEAD + 100;
    char *big = malloc(n);
    memcpy(big, "HTTP/1.1 200 OK\r\nX-A: ", 23);
    memset(big + 23, 'a', n - 23);
    CHECK_INT_EQ(gd_http1_parse_head(big, n, false, &h), -EPROTO);
    free(big);
}

/* Decodes @coded (in one piece); returns what gd_http1_dechunk() returned. */
static ssize_t dechunk_str(const char *coded, bool *is_done, char *out, size_t cap)
{
    gd_http1_chunked_t d = {0};
    size_t len = strlen(coded), consumed;
    CHECK(len < cap);
    memcpy(out, coded, len);
    return gd_http1_dechunk(&d, out, len, is_done, &consumed);
}

static void test_hostile_chunks(void)
{
    char buf[256];
    bool done;
    const char *bad[] = {
        "ffffffffffffffff\r\nabc",  /* 2^64 - 1: larger than any body we accept */
        "10000000000000000\r\nabc", /* does not even fit 64 bits */
        "1000000000000000\r\nabc",  /* 2^60 */
        "-3\r\nabc\r\n0\r\n\r\n",   /* no sign */
        "0x3\r\nabc\r\n0\r\n\r\n",  /* no prefix */
        "3\r\nabcX\r\n0\r\n\r\n",   /* data longer than its size */
        "3\r\nab\r\n\r\n0\r\n\r\n", /* shorter: the CRLF after the data is missing */
        " 3\r\nabc\r\n0\r\n\r\n",   /* leading space */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ssize_t r = dechunk_str(bad[i], &done, buf, sizeof(buf));
        if (r != -EPROTO)
            gd__test_fail(__FILE__, __LINE__, "case %zu gave %zd", i, r);
    }
    /* extensions are skipped, whatever they hold up to the line's end */
    CHECK_INT_EQ(dechunk_str("3;a=b;c=\"x;y\"\r\nabc\r\n0;last\r\n\r\n", &done, buf, sizeof(buf)),
                 3);
    CHECK(done);
    CHECK_MEM_EQ(buf, 3, "abc");
    CHECK_INT_EQ(dechunk_str("3 ; a=b\r\nabc\r\n0\r\n\r\n", &done, buf, sizeof(buf)), 3);
    CHECK(done);
    /* an extension still open: waits for the line's end, nothing decoded yet */
    CHECK_INT_EQ(dechunk_str("3;aaaaaaaaaaaaaaaaaaaaaaaa", &done, buf, sizeof(buf)), 0);
    CHECK(!done);
    /* the largest size accepted: 15 hex digits, waiting for its data */
    CHECK_INT_EQ(dechunk_str("fffffffffffffff\r\nabc", &done, buf, sizeof(buf)), 3);
    CHECK(!done);
    /* trailer fields are skipped; what follows the body is not part of it */
    gd_http1_chunked_t d = {0};
    size_t consumed;
    strcpy(buf, "1\r\nx\r\n0\r\nA: 1\r\nB: 2\r\n\r\nHTTP/1.1");
    CHECK_INT_EQ(gd_http1_dechunk(&d, buf, strlen(buf), &done, &consumed), 1);
    CHECK(done);
    CHECK_INT_EQ(consumed, strlen(buf) - 8);
    /* once done, more input is not part of the body */
    CHECK_INT_EQ(gd_http1_dechunk(&d, buf, 4, &done, &consumed), 0);
    CHECK(done);
    CHECK_INT_EQ(consumed, 0);
}

static void test_content_codings(void)
{
    gd_http1_head_t h;

    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", false, &h), 0);
    CHECK_INT_EQ(h.coding, GD_HTTP1_IDENTITY);
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Encoding: GZip\r\n\r\n", false, &h), 0);
    CHECK_INT_EQ(h.coding, GD_HTTP1_GZIP);
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Encoding: x-gzip, identity\r\n\r\n", false, &h),
                 0);
    CHECK_INT_EQ(h.coding, GD_HTTP1_GZIP);
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\n\r\n", false, &h), 0);
    CHECK_INT_EQ(h.coding, GD_HTTP1_IDENTITY);
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n", false, &h), 0);
    CHECK_INT_EQ(h.coding, GD_HTTP1_OTHER);
    /* twice, in one field or two: not undone */
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\n\r\n", false, &h), 0);
    CHECK_INT_EQ(h.coding, GD_HTTP1_OTHER);
    CHECK_INT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\n\r\n",
                       false, &h),
                 0);
    CHECK_INT_EQ(h.coding, GD_HTTP1_OTHER);
}

/* Retry-After: delay-seconds or an IMF-fixdate, in ms from now; -1 when absent or malformed. */
static void test_retry_after(void)
{
    gd_http1_head_t h;
    char buf[256], date[64];
    time_t later = time(NULL) + 30;
    struct tm tm;

    CHECK_INT_EQ(parse("HTTP/1.1 503 x\r\ncontent-length: 0\r\n\r\n", false, &h), 0);
    CHECK(h.retry_after_ms == -1);
    CHECK_INT_EQ(parse("HTTP/1.1 503 x\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n", false,
                       &h),
                 0);
    CHECK(h.retry_after_ms == 2000);
    CHECK_INT_EQ(parse("HTTP/1.1 429 x\r\nRetry-After: soon\r\ncontent-length: 0\r\n\r\n", false,
                       &h),
                 0);
    CHECK(h.retry_after_ms == -1);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&later, &tm));
    snprintf(buf, sizeof(buf), "HTTP/1.1 503 x\r\nretry-after: %s\r\ncontent-length: 0\r\n\r\n",
             date);
    CHECK_INT_EQ(parse(buf, false, &h), 0);
    CHECK(h.retry_after_ms >= 28000 && h.retry_after_ms <= 30000);
    CHECK_INT_EQ(parse("HTTP/1.1 503 x\r\nretry-after: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                       "content-length: 0\r\n\r\n",
                       false, &h),
                 0);
    CHECK(h.retry_after_ms == 0); /* in the past: now */
}

const gd_test_case_t gd_test_cases[] = {
    {"retry_after", test_retry_after},
    {"content_codings", test_content_codings},
    {"heads", test_heads},
    {"keepalive_rules", test_keepalive_rules},
    {"bad_heads", test_bad_heads},
    {"dechunk_every_split", test_dechunk_every_split},
    {"dechunk_errors", test_dechunk_errors},
    {"hostile_heads", test_hostile_heads},
    {"hostile_chunks", test_hostile_chunks},
    {NULL, NULL},
};
