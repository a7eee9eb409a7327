#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "base/util.h"
#include "sources/http/gunzip.h"
#include "runner.h"

/* @len bytes of @bytes gzip-coded, as an upstream would send them; *@out_len set. */
static unsigned char *gzip(const void *bytes, size_t len, size_t *out_len)
{
    z_stream zs = {0};
    size_t cap = len + len / 100 + 64;
    unsigned char *out = gd_xmalloc(cap);

    CHECK_INT_EQ(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 9,
                              Z_DEFAULT_STRATEGY),
                 Z_OK);
    zs.next_in = (Bytef *)bytes;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    CHECK_INT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static const char doc[] = "{\"user\": {\"id\": 42, \"name\": \"Zo\xc3\xab\"}, \"tags\": [\"a\", \"b\"]}";

/* Fed in pieces of every size, down to one byte, the body decodes to the same bytes. */
static void test_decodes_in_any_pieces(void)
{
    size_t clen;
    unsigned char *coded = gzip(doc, strlen(doc), &clen);

    for (size_t step = 1; step <= clen; step++) {
        gd_gunzip_t *gz = gd_gunzip_new(1024);
        int r = GD_GUNZIP_MORE;
        for (size_t off = 0; off < clen; off += step) {
            size_t n = clen - off < step ? clen - off : step;
            r = gd_gunzip_feed(gz, coded + off, n);
            CHECK(r == GD_GUNZIP_MORE || (r == GD_GUNZIP_DONE && off + n == clen));
        }
        CHECK_INT_EQ(r, GD_GUNZIP_DONE);
        gd_buf_t *b = gd_gunzip_finish(gz);
        CHECK(b != NULL);
        CHECK_INT_EQ(b->len, strlen(doc));
        CHECK(memcmp(b->bytes, doc, b->len) == 0);
        gd_buf_unref(b);
        gd_gunzip_free(gz);
    }
    free(coded);
}

/* 64 MiB of zeros code to about 64 KiB; with a limit of 1 MiB the decoder gives up having
 * read a few KiB of them and holding no more than the limit. */
static void test_a_bomb_fails_early(void)
{
    size_t big = 64u << 20, clen, fed = 0;
    char *zeros = calloc(1, big);
    unsigned char *coded = gzip(zeros, big, &clen);
    gd_gunzip_t *gz = gd_gunzip_new(1u << 20);
    int r = GD_GUNZIP_MORE;

    free(zeros);
    while (r == GD_GUNZIP_MORE && fed < clen) {
        size_t n = clen - fed < 1024 ? clen - fed : 1024;
        r = gd_gunzip_feed(gz, coded + fed, n);
        fed += n;
    }
    CHECK_INT_EQ(r, -E2BIG);
    CHECK(fed <= 4096); /* ~1 KiB of zeros' code inflates to 1 MiB */
    CHECK(gd_gunzip_size(gz) <= (1u << 20) + 1);
    gd_gunzip_free(gz);
    free(coded);
}

/* A body exactly at the limit is fine; one byte more is not. */
static void test_the_limit_is_exact(void)
{
    size_t clen;
    unsigned char *coded = gzip(doc, strlen(doc), &clen);
    gd_gunzip_t *gz = gd_gunzip_new(strlen(doc));

    CHECK_INT_EQ(gd_gunzip_feed(gz, coded, clen), GD_GUNZIP_DONE);
    gd_buf_unref(gd_gunzip_finish(gz));
    gd_gunzip_free(gz);
    gz = gd_gunzip_new(strlen(doc) - 1);
    CHECK_INT_EQ(gd_gunzip_feed(gz, coded, clen), -E2BIG);
    gd_gunzip_free(gz);
    free(coded);
}

static void test_not_gzip_and_cut_short(void)
{
    size_t clen;
    unsigned char *coded = gzip(doc, strlen(doc), &clen);
    gd_gunzip_t *gz = gd_gunzip_new(1024);

    CHECK_INT_EQ(gd_gunzip_feed(gz, doc, strlen(doc)), -EPROTO); /* plain JSON */
    gd_gunzip_free(gz);
    gz = gd_gunzip_new(1024);
    CHECK_INT_EQ(gd_gunzip_feed(gz, coded, clen - 4), GD_GUNZIP_MORE); /* no length trailer */
    CHECK(gd_gunzip_finish(gz) == NULL);
    gd_gunzip_free(gz);
    gz = gd_gunzip_new(1024);
    coded[clen - 5] ^= 0xff; /* the CRC is wrong */
    CHECK_INT_EQ(gd_gunzip_feed(gz, coded, clen), -EPROTO);
    gd_gunzip_free(gz);
    free(coded);
}

/* Two members one after the other are one body (RFC 1952); bytes after a member that are not
 * a member are refused. */
static void test_members(void)
{
    size_t alen, blen;
    unsigned char *a = gzip("[1,", 3, &alen), *b = gzip("2]", 2, &blen);
    unsigned char *both = gd_xmalloc(alen + blen);
    gd_gunzip_t *gz = gd_gunzip_new(1024);

    memcpy(both, a, alen);
    memcpy(both + alen, b, blen);
    CHECK_INT_EQ(gd_gunzip_feed(gz, both, alen + blen), GD_GUNZIP_DONE);
    gd_buf_t *out = gd_gunzip_finish(gz);
    CHECK_INT_EQ(out->len, 5);
    CHECK(memcmp(out->bytes, "[1,2]", 5) == 0);
    gd_buf_unref(out);
    gd_gunzip_free(gz);
    gz = gd_gunzip_new(1024);
    CHECK_INT_EQ(gd_gunzip_feed(gz, a, alen), GD_GUNZIP_DONE);
    CHECK_INT_EQ(gd_gunzip_feed(gz, "garbage", 7), -EPROTO);
    gd_gunzip_free(gz);
    free(a);
    free(b);
    free(both);
}

const gd_test_case_t gd_test_cases[] = {
    {"decodes_in_any_pieces", test_decodes_in_any_pieces},
    {"a_bomb_fails_early", test_a_bomb_fails_early},
    {"the_limit_is_exact", test_the_limit_is_exact},
    {"not_gzip_and_cut_short", test_not_gzip_and_cut_short},
    {"members", test_members},
    {NULL, NULL},
};
