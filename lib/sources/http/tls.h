/*
 * gd_tls: the TLS side of HTTPS upstreams. One context per upstream (an SSL_CTX with the
 * upstream's trust anchors, client certificate, minimum version and expected peer name),
 * created on the main thread before the loops run and shared read-only by every worker thread
 * (OpenSSL allows concurrent SSL_new() on one SSL_CTX; the session cache below has its own
 * lock). The handshake itself is libh2o's (h2o_socket_ssl_handshake()); this module adds what
 * 2.2.5 lacks:
 *
 * - the peer name check on every handshake: the expected name (or IP) is set on the context's
 *   verify parameters, so OpenSSL's chain verification fails on a mismatch, and
 *   gd_tls_check_peer() checks the verify result and the name again after the handshake,
 *   because 2.2.5 skips its own check on TLS 1.3 (and on resumed TLS 1.2 handshakes);
 * - session resumption that works with TLS 1.3, whose tickets arrive after the handshake: a
 *   new-session callback puts every ticket into libh2o's client session cache (one per
 *   context, shared by the threads), from which h2o_socket_ssl_handshake() resumes;
 * - no SNI for IP literals (RFC 6066 section 3), which 2.2.5 would send;
 * - telling a close_notify apart from a truncation (gd_tls_has_close_notify());
 * - requests encrypted into memory and sent by the caller with one send() (gd_tls_seal()).
 */
#ifndef GD_TLS_H
#define GD_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <h2o.h>

#include "config/config.h"

typedef struct gd_tls_ctx gd_tls_ctx_t;

/* One connection's TLS state as gatherd sees it: the SSL object libh2o made for the socket
 * (borrowed: valid while the socket is open). */
typedef struct gd_tls_conn {
    SSL *ssl;
    int fatal_alert; /* the fatal alert the peer sent (its description), or -1 */
    /* gd_tls_take_writes(): libh2o's BIO (still the SSL's read BIO), to which the write BIO of
     * ours passes every write that gd_tls_seal() does not make; NULL before */
    BIO *h2o_bio;
    bool is_sealing;
    char *sealed; /* the records of the last gd_tls_seal(); owned */
    size_t sealed_len, sealed_cap;
} gd_tls_conn_t;

/**
 * Creates the TLS context of HTTPS upstream @conf (read, not kept): loads the CA file
 * (or the system CA store), the client certificate and key (and checks that they match), sets
 * the minimum version. Reads files: call it before the event loops run. Returns the context,
 * or NULL with "KEY: message" in @err (@errlen bytes), KEY being the upstream's key at fault
 * ("tls.ca_file", "tls.client_key_file", ...).
 */
gd_tls_ctx_t *gd_tls_ctx_new(const gd_upstream_conf_t *conf, char *err, size_t errlen);
/** Frees @ctx (NULL is a no-op); no connection may use it any more. Returns NULL. */
gd_tls_ctx_t *gd_tls_ctx_free(gd_tls_ctx_t *ctx);
/**
 * Whether @a and @b (either NULL for http://) loaded the same files with the same bytes: a
 * config reload keeps an upstream's pool (and @a) only then, so that certificates rotated in
 * place are taken by a reload. (The system CA store is not compared.)
 */
bool gd_tls_ctx_is_same_files(const gd_tls_ctx_t *a, const gd_tls_ctx_t *b);

/**
 * The contexts of every upstream of @config (borrowed, must outlive them), indexed like
 * config->upstreams, NULL for http:// ones. Reads files: before the event loops run. Returns
 * 0 with a new array in *@ret (free with gd_tls_ctxs_free()), or -EINVAL with a one-line
 * message that names the file and the config place ("conf.json: upstreams.api.tls.ca_file:
 * ...") in @err.
 */
int gd_tls_ctxs_new(const gd_config_t *config, gd_tls_ctx_t ***ret, char *err, size_t errlen);
/** Frees @ctxs of @config (NULL is a no-op). Returns NULL. */
gd_tls_ctx_t **gd_tls_ctxs_free(const gd_config_t *config, gd_tls_ctx_t **ctxs);

/**
 * Starts the TLS handshake on connected socket @sock with @ctx; @cb is called once it ended
 * (with libh2o's error string, or NULL), possibly before this returns. @tc (the caller's) is
 * filled with the connection's SSL object before @cb runs.
 */
void gd_tls_handshake(gd_tls_ctx_t *ctx, h2o_socket_t *sock, gd_tls_conn_t *tc, h2o_socket_cb cb);

/**
 * After a handshake that libh2o reports with @h2o_err (NULL on success): whether the peer is
 * the one expected. Returns 0, or -EPROTO with the reason (certificate expired, unknown CA,
 * name mismatch, protocol version, ...) in @why (@whylen bytes).
 */
int gd_tls_check_peer(const gd_tls_ctx_t *ctx, const gd_tls_conn_t *tc, const char *h2o_err,
                      char *why, size_t whylen);

/** Whether the peer has sent its close_notify alert on @tc (the end of its data). */
bool gd_tls_has_close_notify(const gd_tls_conn_t *tc);
/** Whether the peer has ended TLS on @tc: a close_notify or a fatal alert. */
bool gd_tls_is_closed_by_peer(const gd_tls_conn_t *tc);

/**
 * Whether a read that libh2o reported with @h2o_err (or NULL) failed at the TLS level: a fatal
 * alert from the peer (TLS 1.3 servers refuse a client certificate only after the handshake,
 * so on the first read) or a record libh2o could not decode. If so, describes it in @why
 * (@whylen bytes) for the log.
 */
bool gd_tls_read_failed(const gd_tls_conn_t *tc, const char *h2o_err, char *why, size_t whylen);

/**
 * After a handshake that gd_tls_check_peer() accepted: puts a write BIO of gatherd's own on the
 * connection, so that gd_tls_seal() can encrypt into memory that the caller sends itself (one
 * send() per call, as for plain connections; libh2o's TLS write goes through libuv's write
 * path, which re-arms the socket's epoll registration with a system call on every write).
 * Every other write (libh2o's own) still goes through libh2o's BIO, unchanged.
 */
void gd_tls_take_writes(gd_tls_conn_t *tc);
/**
 * Encrypts @len bytes at @data into TLS records, returned in *@ret (owned by @tc, valid until the
 * next seal or gd_tls_conn_detach()). Returns 0, or -EIO when OpenSSL refuses (the connection
 * is no longer usable). gd_tls_take_writes() must have run.
 */
int gd_tls_seal(gd_tls_conn_t *tc, const char *data, size_t len, h2o_iovec_t *ret);
/**
 * Writes @buf (records from gd_tls_seal()) through libh2o's plain write path, which queues what
 * the socket cannot take now; @cb runs when it is written. For the remainder of a send() that
 * the socket buffer did not take whole.
 */
void gd_tls_write_sealed(h2o_socket_t *sock, h2o_iovec_t *buf, h2o_socket_cb cb);

/** Cuts @tc from its SSL object, before the connection's memory goes (the socket may close
 * later, while libh2o sends its close_notify). */
void gd_tls_conn_detach(gd_tls_conn_t *tc);

/** Whether the handshake on @tc resumed a session. */
bool gd_tls_is_resumed(const gd_tls_conn_t *tc);

#endif
