/* libFuzzer driver: the upstream response head parser and the chunked decoder. The first
 * byte steers (HEAD request or not, where the decoder's input is split); the rest is what an
 * upstream sent. A body decoded in place never grows, and a split input decodes to the same
 * bytes as a whole one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "sources/http/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes @len bytes at @in in pieces of at most @step bytes into @out; returns the decoded
 * length, or -1 on an error. */
static ssize_t dechunk_all(const char *in, size_t len, size_t step, char *out, bool *is_done)
{
    gd_http1_chunked_t d;
    size_t off = 0, total = 0;

    memset(&d, 0, sizeof(d));
    *is_done = false;
    while (off < len && !*is_done) {
        size_t n = len - off < step ? len - off : step, consumed = 0;
        char *piece = malloc(n + 1);
        GD_REQUIRE(piece != NULL);
        memcpy(piece, in + off, n);
        ssize_t r = gd_http1_dechunk(&d, piece, n, is_done, &consumed);
        if (r < 0) {
            free(piece);
            return -1;
        }
        GD_REQUIRE((size_t)r <= consumed && consumed <= n);
        memcpy(out + total, piece, (size_t)r);
        total += (size_t)r;
        free(piece);
        if (consumed == 0)
            break; /* waits for more than this piece holds */
        off += consumed;
    }
    return (ssize_t)total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gd_http1_head_t head;
    bool is_done_whole = false, is_done_split = false;

    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1, step = 1 + data[0] % 16;
    int r = gd_http1_parse_head(in, len, (data[0] & 0x80) != 0, &head);
    if (r == 0)
        GD_REQUIRE(head.head_len <= len && head.status >= 100 && head.status <= 999);

    char *whole = malloc(len + 1), *split = malloc(len + 1);
    GD_REQUIRE(whole != NULL && split != NULL);
    ssize_t a = dechunk_all(in, len, len + 1, whole, &is_done_whole);
    ssize_t b = dechunk_all(in, len, step, split, &is_done_split);
    /* The same bytes, split anywhere, give the same body up to where the whole one ended. */
    if (a >= 0 && b >= 0 && is_done_whole && is_done_split)
        GD_REQUIRE(a == b && memcmp(whole, split, (size_t)a) == 0);
    free(whole);
    free(split);
    return 0;
}
