#include "base/buf.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* Never written through: a static buffer is read-only to every holder. */
static char null_bytes[] = "null";
gd_buf_t gd_buf_null = {.len = 4, .bytes = null_bytes, ._refcnt = 0};

gd_buf_t *gd_buf_new(size_t len)
{
    /* One allocation: the header, then the bytes. */
    gd_buf_t *buf = gd_xmalloc(sizeof(*buf) + (len > 0 ? len : 1));

    buf->len = len;
    buf->bytes = (char *)(buf + 1);
    buf->_refcnt = 1;
    return buf;
}

gd_buf_t *gd_buf_take(char *bytes, size_t len)
{
    gd_buf_t *buf = gd_xmalloc(sizeof(*buf));

    *buf = (gd_buf_t){.len = len, .bytes = bytes, ._refcnt = 1};
    return buf;
}

gd_buf_t *gd_buf_new_copy(const void *bytes, size_t len)
{
    gd_buf_t *buf = gd_buf_new(len);

    if (len != 0)
        memcpy(buf->bytes, bytes, len);
    return buf;
}

gd_buf_t *gd_buf_ref(gd_buf_t *buf)
{
    if (buf != NULL && buf->_refcnt != 0)
        buf->_refcnt++;
    return buf;
}

gd_buf_t *gd_buf_unref(gd_buf_t *buf)
{
    if (buf == NULL || buf->_refcnt == 0)
        return NULL;
    if (--buf->_refcnt == 0) {
        if (buf->bytes != (char *)(buf + 1))
            free(buf->bytes); /* taken with gd_buf_take() */
        free(buf);
    }
    return NULL;
}
