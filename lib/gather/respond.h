/*
 * gd_respond: writing an answer to h2o: the merged JSON document, or a JSON error of gatherd's
 * own ({"error":"code","message":"..."}), with the status line, Content-Type and Content-Length,
 * and what the endpoint's config makes of it: gzip for a client that accepts it (RFC 9110
 * section 12.5.3), Cache-Control, a strong ETag and 304 for a matching If-None-Match (section
 * 13.1.2). HEAD is answered like GET, without the body, and never compressed.
 */
#ifndef GD_RESPOND_H
#define GD_RESPOND_H

#include <stdbool.h>
#include <stddef.h>

#include <h2o.h>

#include "config/config.h"
#include "gather/outbox.h"

/* What one event-loop thread keeps for answers: its zlib stream, made on first use, and the
 * outbox its answers are sent through. */
typedef struct gd_responder {
    /* public: set by the owner after gd_responder_init(); NULL: answers go untracked */
    gd_outbox_t *outbox;
    /* private */
    void *_zs; /* z_stream * */
    int _level;
} gd_responder_t;

/* One answer and its config. */
typedef struct gd_answer {
    int status;
    char *body; /* in req's pool, or outliving the request */
    size_t len;
    const char *complete; /* X-Gatherd-Complete: "true" or "false"; NULL: gatherd's own answer */
    const gd_compress_conf_t *compress; /* NULL or disabled: never compressed */
    const char *cache_control;          /* for a complete 2xx answer; NULL: none */
    bool has_etag;                      /* a complete 200 answer gets an ETag */
    /* for the write timeout's log line: the endpoint (NULL: none) and the client (NULL: the
     * peer's address), both borrowed for the call */
    const gd_endpoint_conf_t *endpoint;
    const char *client;
} gd_answer_t;

/** Prepares @rs (caller owns the storage). */
void gd_responder_init(gd_responder_t *rs);
/** Frees what @rs made. */
void gd_responder_dispose(gd_responder_t *rs);

/**
 * Answers @req with @a, on the thread of @rs. A complete 2xx answer gets @a->cache_control, any
 * other (incomplete, an error) "Cache-Control: no-store". Returns the bytes of the body sent
 * (compressed, or 0 for a 304).
 */
size_t gd_respond(gd_responder_t *rs, h2o_req_t *req, const gd_answer_t *a);
/**
 * Answers @req with status @status and the body {"error": @code, "message": @message}, plus the
 * header @hname: @hvalue unless @hname is NULL, compressed under @compress (may be NULL).
 * Returns the bytes of the body sent.
 */
size_t gd_respond_error(gd_responder_t *rs, h2o_req_t *req, const gd_compress_conf_t *compress,
                        int status, const char *code, const char *message, const char *hname,
                        const char *hvalue);
/** Answers @req with @status (204) and no body, no Content-Type. */
void gd_respond_empty(h2o_req_t *req, int status);

#endif
