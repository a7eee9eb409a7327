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
