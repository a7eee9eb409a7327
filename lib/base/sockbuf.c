#include "base/sockbuf.h"

bool gd_sockbuf_release(h2o_socket_t *sock)
{
    h2o_buffer_t *in = sock->input;

    /* bytes == NULL: the prototype itself, nothing allocated (h2o_buffer_reserve() allocates on
     * the next read). The prototype an allocated buffer came from is the one it goes back to. */
    if (in == NULL || in->bytes == NULL || in->size != 0)
        return false;
    h2o_buffer_prototype_t *proto = in->_prototype;
    h2o_buffer_dispose(&sock->input);
    h2o_buffer_init(&sock->input, proto);
    return true;
}

void gd_sockbuf_prototype_init(h2o_buffer_prototype_t *proto, size_t capacity)
{
    *proto = (h2o_buffer_prototype_t){
        .allocator = {.max = h2o_socket_buffer_prototype.allocator.max},
        ._initial_buf = {.capacity = capacity},
        .mmap_settings = h2o_socket_buffer_prototype.mmap_settings,
    };
}

void gd_sockbuf_prototype_dispose(h2o_buffer_prototype_t *proto)
{
    /* h2o 2.2.5 has no call that empties a recycler: each one taken back is freed instead. */
    while (proto->allocator.cnt != 0)
        free(h2o_mem_alloc_recycle(&proto->allocator, 0));
}
