#include "sources/http/gunzip.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "base/util.h"

/* 16 + the largest window: a gzip header and trailer around deflate data (zlib's manual). */
#define GZIP_WINDOW_BITS (16 + MAX_WBITS)
#define FIRST_CAPACITY 4096

struct gd_gunzip {
    z_stream zs;
    size_t max_bytes;
    char *out;
    size_t len, capacity;
    bool is_member_done; /* the last member fed so far has ended (inflate's Z_STREAM_END) */
};

gd_gunzip_t *gd_gunzip_new(size_t max_bytes)
{
    gd_gunzip_t *gz = gd_xcalloc(1, sizeof(*gz));

    gz->max_bytes = max_bytes;
    GD_REQUIRE(inflateInit2(&gz->zs, GZIP_WINDOW_BITS) == Z_OK); /* fails only without memory */
    return gz;
}

gd_gunzip_t *gd_gunzip_free(gd_gunzip_t *gz)
{
    if (gz == NULL)
        return NULL;
    inflateEnd(&gz->zs);
    free(gz->out);
    free(gz);
    return NULL;
}

size_t gd_gunzip_size(const gd_gunzip_t *gz)
{
    return gz->len;
}

/* Makes room for more output: doubling, but never more than one byte past the limit (the byte
 * that proves the limit passed). Returns false when the limit is passed already. */
static bool grow(gd_gunzip_t *gz)
{
    size_t ceiling = gz->max_bytes + 1;

    if (gz->capacity >= ceiling)
        return false;
    size_t capacity = gz->capacity == 0 ? FIRST_CAPACITY : gz->capacity * 2;
    if (capacity > ceiling)
        capacity = ceiling;
    gz->out = gd_xrealloc(gz->out, capacity);
    gz->capacity = capacity;
    return true;
}

int gd_gunzip_feed(gd_gunzip_t *gz, const void *bytes, size_t len)
{
    gz->zs.next_in = (Bytef *)bytes;
    gz->zs.avail_in = (uInt)len;
    while (gz->zs.avail_in > 0) {
        if (gz->is_member_done) {
            /* Bytes after a member: another member (RFC 1952 allows several), never garbage. */
            if (inflateReset(&gz->zs) != Z_OK)
                return -EPROTO;
            gz->is_member_done = false;
        }
        if (gz->len == gz->capacity && !grow(gz))
            return -E2BIG;
        gz->zs.next_out = (Bytef *)gz->out + gz->len;
        gz->zs.avail_out = (uInt)(gz->capacity - gz->len);
        int r = inflate(&gz->zs, Z_NO_FLUSH);
        gz->len = gz->capacity - gz->zs.avail_out;
        if (gz->len > gz->max_bytes)
            return -E2BIG;
        if (r == Z_STREAM_END)
            gz->is_member_done = true;
        else if (r == Z_BUF_ERROR && gz->zs.avail_out == 0)
            continue; /* output full: grown on the next turn */
        else if (r != Z_OK)
            return -EPROTO;
    }
    return gz->is_member_done ? GD_GUNZIP_DONE : GD_GUNZIP_MORE;
}

gd_buf_t *gd_gunzip_finish(gd_gunzip_t *gz)
{
    if (!gz->is_member_done)
        return NULL;
    gd_buf_t *buf = gd_buf_take(gz->out != NULL ? gz->out : gd_xmalloc(1), gz->len);
    gz->out = NULL;
    gz->len = gz->capacity = 0;
    return buf;
}
