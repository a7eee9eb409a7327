/* libFuzzer driver: the bounded gzip decoder, fed in pieces; it never holds more than its
 * bound, whatever the stream. */
#include <stdint.h>

#include "base/util.h"
#include "sources/http/gunzip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX = 1 << 16 };
    gd_gunzip_t *gz = gd_gunzip_new(MAX);
    size_t step = size > 0 ? 1 + data[0] % 64 : 1;

    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (gd_gunzip_feed(gz, data + off, n) < 0)
            break;
        GD_REQUIRE(gd_gunzip_size(gz) <= MAX);
    }
    size_t decoded = gd_gunzip_size(gz);
    gd_buf_t *out = gd_gunzip_finish(gz);
    GD_REQUIRE(out == NULL || (out->len == decoded && decoded <= MAX));
    gd_buf_unref(out);
    gd_gunzip_free(gz);
    return 0;
}
