#include "front/framing.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* picohttpparser, as libh2o 2.2.5 exports it (no header is installed; see
 * sources/http/http1.c). Parsing with the very parser h2o used gives the same fields. */
struct phr_header {
    const char *name; /* NULL for the continuation line of a folded field */
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                      const char **path, size_t *path_len, int *minor_version,
                      struct phr_header *headers, size_t *num_headers, size_t last_len);

/* h2o's own bound on the fields of a request (H2O_MAX_HEADERS). */
#define MAX_FIELDS 100

static bool is_name(const struct phr_header *f, const char *name)
{
    size_t len = strlen(name);
    return f->name != NULL && f->name_len == len && strncasecmp(f->name, name, len) == 0;
}

int gd_framing_check_head(const char *buf, size_t len, const char **ret_reason)
{
    struct phr_header fields[MAX_FIELDS];
    size_t nfields = MAX_FIELDS, method_len, path_len;
    const char *method, *path;
    const struct phr_header *length = NULL;
    size_t ncoding = 0;
    int minor;

    if (phr_parse_request(buf, len, &method, &method_len, &path, &path_len, &minor, fields,
                          &nfields, 0) <= 0)
        return GD_FRAMING_OK; /* not a whole head: h2o answered it itself */
    for (size_t i = 0; i < nfields; i++) {
        const struct phr_header *f = &fields[i];
        if (is_name(f, "transfer-encoding")) {
            ncoding++;
        } else if (is_name(f, "content-length")) {
            /* Repeated identical values are allowed (RFC 9110 section 8.6). */
            if (length != NULL && (length->value_len != f->value_len ||
                                   memcmp(length->value, f->value, f->value_len) != 0)) {
                *ret_reason = "the request has two different Content-Length values";
                return GD_FRAMING_AMBIGUOUS;
            }
            length = f;
        }
    }
    if (ncoding > 0 && length != NULL) {
        *ret_reason = "the request has both Transfer-Encoding and Content-Length";
        return GD_FRAMING_AMBIGUOUS;
    }
    if (ncoding > 1) {
        *ret_reason = "the request has more than one Transfer-Encoding field";
        return GD_FRAMING_AMBIGUOUS;
    }
    if (ncoding > 0 && minor == 0) {
        *ret_reason = "an HTTP/1.0 request has Transfer-Encoding";
        return GD_FRAMING_AMBIGUOUS;
    }
    return GD_FRAMING_OK;
}

int gd_framing_check(h2o_req_t *req, const char **ret_reason)
{
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
        return GD_FRAMING_OK;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->input == NULL)
        return GD_FRAMING_OK;
    /* h2o consumes a request's bytes only once its answer is written, so the buffer starts with
     * this request's head (a chunked body is decoded in place after it). */
    return gd_framing_check_head(sock->input->bytes, sock->input->size, ret_reason);
}
