/*
 * gd_respond: writing an answer to h2o: the merged JSON document, or a JSON error of gatherd's
 * own ({"error":"code","message":"..."}), with the status line, Content-Type and Content-Length.
 * HEAD is answered like GET, without the body.
 */
#ifndef GD_RESPOND_H
#define GD_RESPOND_H

#include <stddef.h>

#include <h2o.h>

/**
 * Answers @req with the JSON @body (in req's pool, or outliving the request), adding
 * X-Gatherd-Complete: @complete unless it is NULL.
 */
void gd_respond_json(h2o_req_t *req, int status, char *body, size_t len, const char *complete);
/**
 * Answers @req with status @status and the body {"error": @code, "message": @message}, plus the
 * header @hname: @hvalue unless @hname is NULL. Returns the body's length.
 */
size_t gd_respond_error(h2o_req_t *req, int status, const char *code, const char *message,
                        const char *hname, const char *hvalue);

#endif
