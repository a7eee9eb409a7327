#include "sources/http/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/util.h"

/* Sessions kept per upstream: libh2o keys them by "name:port", one entry per upstream. */
#define SESSION_CACHE_CAPACITY 4
/* A session older than this is not offered (servers' ticket lifetimes are often 2 hours, and
 * a server that no longer takes it only costs a full handshake). */
#define SESSION_CACHE_DURATION_MS (60 * 60 * 1000)

struct gd_tls_ctx {
    SSL_CTX *ssl_ctx;
    char *name; /* the name the certificate must carry: tls.server_name or the URL host */
    bool is_ip; /* name is an IP literal: no SNI, checked against the IP SANs */
    h2o_iovec_t cache_key; /* "name:port", as libh2o keys its client session cache */
    h2o_cache_hashcode_t cache_key_hash;
    /* FNV-1a 64 of the bytes of the files it loaded (CA, client certificate and key); 0 when
     * they changed while it loaded them (then it equals no other context's) */
    uint64_t files_hash;
};

/* Adds the bytes of file @path (NULL: none) to the FNV-1a hash *@h; false when unreadable. */
static bool hash_file(const char *path, uint64_t *h)
{
    unsigned char buf[4096];
    size_t n;
    FILE *f;

    if (path == NULL)
        return true;
    if ((f = fopen(path, "rb")) == NULL)
        return false;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        for (size_t i = 0; i < n; i++)
            *h = (*h ^ buf[i]) * 0x100000001b3ull;
    bool is_ok = !ferror(f);
    fclose(f);
    /* the name too: the same bytes under another file name are another setting */
    for (const char *p = path; *p != '\0'; p++)
        *h = (*h ^ (unsigned char)*p) * 0x100000001b3ull;
    return is_ok;
}

/* The hash of @t's files, or 0 when one cannot be read. */
static uint64_t hash_files(const gd_tls_conf_t *t)
{
    uint64_t h = 0xcbf29ce484222325ull;
    if (!hash_file(t->ca_file, &h) || !hash_file(t->client_cert_file, &h) ||
        !hash_file(t->client_key_file, &h))
        return 0;
    return h != 0 ? h : 1;
}

bool gd_tls_ctx_is_same_files(const gd_tls_ctx_t *a, const gd_tls_ctx_t *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return a->files_hash != 0 && a->files_hash == b->files_hash;
}

static int ctx_index = -1;
static pthread_once_t ctx_index_once = PTHREAD_ONCE_INIT;

/* The connection whose handshake gd_tls_handshake() is starting on this thread: the info
 * callback hands it its SSL object, which libh2o keeps to itself. */
static __thread struct {
    gd_tls_conn_t *tc;
    h2o_socket_t *sock;
} starting;

static void make_ctx_index(void)
{
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* The reason of OpenSSL's last error on this thread, or @def. */
static const char *last_error_reason(const char *def)
{
    unsigned long e = ERR_peek_last_error();
    const char *s = e != 0 ? ERR_reason_error_string(e) : NULL;
    return s != NULL ? s : def;
}

static bool is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void on_info(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_READ_ALERT) && (ret >> 8) == SSL3_AL_FATAL) {
        gd_tls_conn_t *tc = SSL_get_app_data(ssl);
        if (tc != NULL)
            tc->fatal_alert = ret & 0xff;
        return;
    }
    if (!(where & SSL_CB_HANDSHAKE_START) || starting.tc == NULL || starting.tc->ssl != NULL)
        return;
    if (BIO_get_data(SSL_get_rbio(ssl)) != starting.sock)
        return;
    starting.tc->ssl = (SSL *)ssl;
    SSL_set_app_data(starting.tc->ssl, starting.tc);
    gd_tls_ctx_t *ctx = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
    /* libh2o sets SNI to whatever name it is given; an IP literal must not be sent (RFC 6066
     * section 3). The ClientHello is not built yet at this point. */
    if (ctx != NULL && ctx->is_ip)
        (void)SSL_set_tlsext_host_name(starting.tc->ssl, NULL); /* clearing cannot fail */
}

/* A session the server gave us: a TLS 1.2 session at the end of a handshake, or a TLS 1.3
 * ticket, which arrives after the handshake (often on an idle connection). Kept in libh2o's
 * client session cache, which h2o_socket_ssl_handshake() consults for the next connection.
 * libh2o stores the session it sees at the end of each handshake too, but under TLS 1.3 that
 * one has no ticket yet: this callback is what makes TLS 1.3 connections resume. */
static int on_new_session(SSL *ssl, SSL_SESSION *session)
{
    gd_tls_ctx_t *ctx = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
    h2o_socket_t *sock = BIO_get_data(SSL_get_rbio(ssl));
    h2o_cache_t *cache = ctx != NULL ? h2o_socket_ssl_get_session_cache(ctx->ssl_ctx) : NULL;

    if (cache == NULL || sock == NULL || !SSL_SESSION_is_resumable(session))
        return 0; /* not kept: OpenSSL frees it */
    h2o_cache_set(cache, h2o_now(h2o_socket_get_loop(sock)), ctx->cache_key, ctx->cache_key_hash,
                  h2o_iovec_init(session, 1));
    return 1; /* the cache owns the reference now */
}

static int fail(char *err, size_t errlen, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, const char *key, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, errlen, "%s: ", key);

    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Checks that @path names a readable regular file, so that the message says so rather than
 * OpenSSL's "system lib". */
static int check_file(const char *path, const char *key, char *err, size_t errlen)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return fail(err, errlen, key, "cannot read %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(err, errlen, key, "%s is not a file", path);
    return 0;
}

/* A key file with a passphrase fails to load instead of OpenSSL asking for one on the
 * terminal (a read that would block a start under systemd, or gatherd -t in a script). */
static int no_passphrase(char *buf, int size, int rwflag, void *data)
{
    return 0;
}

static int load_files(SSL_CTX *sc, const gd_tls_conf_t *t, char *err, size_t errlen)
{
    int r;

    if (t->ca_file != NULL) {
        if ((r = check_file(t->ca_file, "tls.ca_file", err, errlen)) < 0)
            return r;
        ERR_clear_error();
        if (SSL_CTX_load_verify_locations(sc, t->ca_file, NULL) != 1)
            return fail(err, errlen, "tls.ca_file", "cannot load CA certificates from %s (%s)",
                        t->ca_file, last_error_reason("no certificate found"));
    } else if (SSL_CTX_set_default_verify_paths(sc) != 1) {
        return fail(err, errlen, "url", "cannot load the system CA certificates (%s)",
                    last_error_reason("unknown error"));
    }
    if (t->client_cert_file == NULL)
        return 0;
    if ((r = check_file(t->client_cert_file, "tls.client_cert_file", err, errlen)) < 0 ||
        (r = check_file(t->client_key_file, "tls.client_key_file", err, errlen)) < 0)
        return r;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(sc, t->client_cert_file) != 1)
        return fail(err, errlen, "tls.client_cert_file", "cannot load a certificate from %s (%s)",
                    t->client_cert_file, last_error_reason("no certificate found"));
    ERR_clear_error();
    SSL_CTX_set_default_passwd_cb(sc, no_passphrase);
    if (SSL_CTX_use_PrivateKey_file(sc, t->client_key_file, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            return fail(err, errlen, "tls.client_key_file",
                        "the key in %s does not match the certificate in %s", t->client_key_file,
                        t->client_cert_file);
        return fail(err, errlen, "tls.client_key_file", "cannot load a private key from %s (%s)",
                    t->client_key_file, last_error_reason("no key found"));
    }
    if (SSL_CTX_check_private_key(sc) != 1)
        return fail(err, errlen, "tls.client_key_file",
                    "the key in %s does not match the certificate in %s", t->client_key_file,
                    t->client_cert_file);
    return 0;
}

gd_tls_ctx_t *gd_tls_ctx_new(const gd_upstream_conf_t *conf, char *err, size_t errlen)
{
    const gd_tls_conf_t *t = &conf->tls;
    gd_tls_ctx_t *ctx = gd_xcalloc(1, sizeof(*ctx));
    SSL_CTX *sc;
    X509_VERIFY_PARAM *param;
    char port[8];
    static const unsigned char alpn[] = "\x08http/1.1";

    GD_REQUIRE(pthread_once(&ctx_index_once, make_ctx_index) == 0 && ctx_index >= 0);
    ctx->name = gd_xstrdup(t->server_name != NULL ? t->server_name : conf->host);
    ctx->is_ip = is_ip_literal(ctx->name);
    snprintf(port, sizeof(port), "%u", (unsigned)conf->port);
    ctx->cache_key.len = strlen(ctx->name) + 1 + strlen(port);
    ctx->cache_key.base = gd_xmalloc(ctx->cache_key.len + 1);
    snprintf(ctx->cache_key.base, ctx->cache_key.len + 1, "%s:%s", ctx->name, port);
    ctx->cache_key_hash = h2o_cache_calchash(ctx->cache_key.base, ctx->cache_key.len);

    if ((sc = ctx->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        fail(err, errlen, "url", "cannot create a TLS context (%s)",
             last_error_reason("no memory"));
        return gd_tls_ctx_free(ctx);
    }
    SSL_CTX_set_ex_data(sc, ctx_index, ctx);
    GD_REQUIRE(SSL_CTX_set_min_proto_version(sc, t->min_version == 13 ? TLS1_3_VERSION
                                                                      : TLS1_2_VERSION) == 1);
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Always verified, there is no switch to turn it off. */
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
    param = SSL_CTX_get0_param(sc);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if ((ctx->is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, ctx->name)
                    : X509_VERIFY_PARAM_set1_host(param, ctx->name, 0)) != 1) {
        fail(err, errlen, t->server_name != NULL ? "tls.server_name" : "url",
             "%s cannot be checked against a certificate", ctx->name);
        return gd_tls_ctx_free(ctx);
    }
    /* Hashed before and after OpenSSL reads them: a file replaced meanwhile makes a hash that
     * matches nothing, so the next reload cannot mistake this context for one of the new
     * files. */
    uint64_t before = hash_files(t);
    if (load_files(sc, t, err, errlen) < 0)
        return gd_tls_ctx_free(ctx);
    ctx->files_hash = hash_files(t) == before ? before : 0;
    /* Upstream calls are HTTP/1.1 only: a server that picks by ALPN must not choose h2. */
    GD_REQUIRE(SSL_CTX_set_alpn_protos(sc, alpn, sizeof(alpn) - 1) == 0);
    SSL_CTX_set_info_callback(sc, on_info);
    /* Client sessions go to libh2o's cache (NO_INTERNAL_STORE: OpenSSL's own client cache
     * would only grow), a cache shared by the worker threads behind its own lock. */
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(sc, on_new_session);
    h2o_socket_ssl_set_session_cache(
        sc,
        h2o_cache_create(H2O_CACHE_FLAG_MULTITHREADED, SESSION_CACHE_CAPACITY,
                         SESSION_CACHE_DURATION_MS, h2o_socket_ssl_destroy_session_cache_entry));
    return ctx;
}

gd_tls_ctx_t *gd_tls_ctx_free(gd_tls_ctx_t *ctx)
{
    if (ctx == NULL)
        return NULL;
    SSL_CTX_free(ctx->ssl_ctx); /* and libh2o's session cache with it */
    free(ctx->name);
    free(ctx->cache_key.base);
    free(ctx);
    return NULL;
}

int gd_tls_ctxs_new(const gd_config_t *config, gd_tls_ctx_t ***ret, char *err, size_t errlen)
{
    gd_tls_ctx_t **ctxs = gd_xcalloc(config->nupstreams + 1, sizeof(*ctxs));
    char why[768];

    for (size_t i = 0; i < config->nupstreams; i++) {
        const gd_upstream_conf_t *u = &config->upstreams[i];
        if (!u->is_tls)
            continue;
        if ((ctxs[i] = gd_tls_ctx_new(u, why, sizeof(why))) == NULL) {
            snprintf(err, errlen, "%s: %s.%s", config->source, u->place, why);
            gd_tls_ctxs_free(config, ctxs);
            return -EINVAL;
        }
    }
    *ret = ctxs;
    return 0;
}

gd_tls_ctx_t **gd_tls_ctxs_free(const gd_config_t *config, gd_tls_ctx_t **ctxs)
{
    if (ctxs == NULL)
        return NULL;
    for (size_t i = 0; i < config->nupstreams; i++)
        gd_tls_ctx_free(ctxs[i]);
    free(ctxs);
    return NULL;
}

void gd_tls_handshake(gd_tls_ctx_t *ctx, h2o_socket_t *sock, gd_tls_conn_t *tc, h2o_socket_cb cb)
{
    *tc = (gd_tls_conn_t){.fatal_alert = -1};
    starting.tc = tc;
    starting.sock = sock;
    /* libh2o needs a name, and sends it as SNI (cleared for an IP by on_info()). */
    h2o_socket_ssl_handshake(sock, ctx->ssl_ctx, ctx->name, cb);
    starting.tc = NULL;
    starting.sock = NULL;
}

int gd_tls_check_peer(const gd_tls_ctx_t *ctx, const gd_tls_conn_t *tc, const char *h2o_err,
                      char *why, size_t whylen)
{
    long v = tc->ssl != NULL ? SSL_get_verify_result(tc->ssl) : X509_V_OK;
    X509 *cert;
    int ok;

    /* libh2o's own name check (the ssl-conservatory one, DNS names only) is superseded by the
     * one below, which knows IP SANs; its other errors stand. */
    if (h2o_err != NULL && h2o_err != h2o_socket_error_ssl_cert_name_mismatch) {
        if (v != X509_V_OK)
            snprintf(why, whylen, "%s", X509_verify_cert_error_string(v));
        else if (h2o_err == h2o_socket_error_io || h2o_err == h2o_socket_error_closed)
            snprintf(why, whylen, "the connection closed during the handshake");
        else
            snprintf(why, whylen, "%s", last_error_reason(h2o_err));
        return -EPROTO;
    }
    if (tc->ssl == NULL) {
        snprintf(why, whylen, "no TLS state");
        return -EPROTO;
    }
    if (v != X509_V_OK) {
        snprintf(why, whylen, "%s", X509_verify_cert_error_string(v));
        goto forget;
    }
    if ((cert = SSL_get1_peer_certificate(tc->ssl)) == NULL) {
        snprintf(why, whylen, "the server sent no certificate");
        goto forget;
    }
    ok = ctx->is_ip
             ? X509_check_ip_asc(cert, ctx->name, 0)
             : X509_check_host(cert, ctx->name, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL);
    X509_free(cert);
    if (ok != 1) {
        snprintf(why, whylen, "certificate name mismatch (not valid for %s)", ctx->name);
        goto forget;
    }
    return 0;

forget:
    /* A session of a peer refused must not be offered again. */
    if (h2o_socket_ssl_get_session_cache(ctx->ssl_ctx) != NULL)
        h2o_cache_delete(h2o_socket_ssl_get_session_cache(ctx->ssl_ctx), 0, ctx->cache_key,
                         ctx->cache_key_hash);
    return -EPROTO;
}

bool gd_tls_is_closed_by_peer(const gd_tls_conn_t *tc)
{
    /* OpenSSL marks the shutdown received for a close_notify and for a fatal alert alike. */
    return tc->ssl != NULL && (SSL_get_shutdown(tc->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
}

bool gd_tls_has_close_notify(const gd_tls_conn_t *tc)
{
    return tc->fatal_alert < 0 && gd_tls_is_closed_by_peer(tc);
}

bool gd_tls_read_failed(const gd_tls_conn_t *tc, const char *h2o_err, char *why, size_t whylen)
{
    if (tc->fatal_alert >= 0) {
        snprintf(why, whylen, "alert from the server: %s",
                 SSL_alert_desc_string_long(SSL3_AL_FATAL << 8 | tc->fatal_alert));
        return true;
    }
    if (h2o_err == h2o_socket_error_ssl_decode) {
        snprintf(why, whylen, "%s", last_error_reason("bad TLS record"));
        return true;
    }
    return false;
}

/* The write BIO of gd_tls_take_writes(). Its data is the connection's gd_tls_conn_t. */
static int write_to_sealed(BIO *b, const char *in, int len)
{
    gd_tls_conn_t *tc = BIO_get_data(b);

    if (!tc->is_sealing) /* libh2o's own write (a close_notify, an answer to the peer) */
        return BIO_write(tc->h2o_bio, in, len);
    if (len <= 0)
        return 0;
    if (tc->sealed_len + (size_t)len > tc->sealed_cap) {
        tc->sealed_cap = (tc->sealed_len + (size_t)len) * 2;
        tc->sealed = gd_xrealloc(tc->sealed, tc->sealed_cap);
    }
    memcpy(tc->sealed + tc->sealed_len, in, (size_t)len);
    tc->sealed_len += (size_t)len;
    return len;
}

static long ctrl_sealed(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_CTRL_FLUSH: /* nothing is buffered here */
        return 1;
    case BIO_CTRL_GET_CLOSE:
        return BIO_get_shutdown(b);
    case BIO_CTRL_SET_CLOSE:
        BIO_set_shutdown(b, (int)num);
        return 1;
    default:
        return 0;
    }
}

static BIO_METHOD *sealed_method;
static pthread_once_t sealed_method_once = PTHREAD_ONCE_INIT;

static void make_sealed_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "gatherd sealed");

    /* Fails only without memory: aborts, as gd_xmalloc() does. */
    GD_REQUIRE(m != NULL && BIO_meth_set_write(m, write_to_sealed) == 1 &&
               BIO_meth_set_ctrl(m, ctrl_sealed) == 1);
    sealed_method = m;
}

void gd_tls_take_writes(gd_tls_conn_t *tc)
{
    BIO *b;

    GD_REQUIRE(tc->ssl != NULL && tc->h2o_bio == NULL);
    pthread_once(&sealed_method_once, make_sealed_method);
    GD_REQUIRE((b = BIO_new(sealed_method)) != NULL); /* out of memory */
    BIO_set_data(b, tc);
    BIO_set_init(b, 1);
    /* libh2o's BIO is both the read and the write BIO, holding a reference for each: it stays
     * the read BIO, and SSL_set0_wbio() drops the write BIO's reference. */
    tc->h2o_bio = SSL_get_wbio(tc->ssl);
    SSL_set0_wbio(tc->ssl, b);
}

int gd_tls_seal(gd_tls_conn_t *tc, const char *data, size_t len, h2o_iovec_t *ret)
{
    /* Full-size records: a request head or body is sent at once, not streamed. */
    static const size_t record_max = 16384;
    int r = 1;

    GD_REQUIRE(tc->h2o_bio != NULL);
    tc->sealed_len = 0;
    tc->is_sealing = true;
    ERR_clear_error();
    for (size_t off = 0; off < len && r > 0; off += (size_t)r) {
        size_t n = len - off < record_max ? len - off : record_max;
        r = SSL_write(tc->ssl, data + off, (int)n);
    }
    tc->is_sealing = false;
    if (r <= 0)
        return -EIO;
    *ret = h2o_iovec_init(tc->sealed, tc->sealed_len);
    return 0;
}

void gd_tls_write_sealed(h2o_socket_t *sock, h2o_iovec_t *buf, h2o_socket_cb cb)
{
    /* With no SSL state h2o_socket_write() hands the bytes to libuv as they are (2.2.5:
     * do_write()); the state is only looked at again when the write completes, to clear
     * libh2o's own output, which is empty. */
    struct st_h2o_socket_ssl_t *ssl = sock->ssl;

    sock->ssl = NULL;
    h2o_socket_write(sock, buf, 1, cb);
    sock->ssl = ssl;
}

void gd_tls_conn_detach(gd_tls_conn_t *tc)
{
    if (tc->ssl != NULL && tc->h2o_bio != NULL) {
        /* Back to libh2o's BIO for its close_notify, which it sends after this. */
        BIO_up_ref(tc->h2o_bio);
        SSL_set0_wbio(tc->ssl, tc->h2o_bio);
    }
    if (tc->ssl != NULL)
        SSL_set_app_data(tc->ssl, NULL);
    tc->ssl = NULL;
    tc->h2o_bio = NULL;
    free(tc->sealed);
    tc->sealed = NULL;
    tc->sealed_len = tc->sealed_cap = 0;
}

bool gd_tls_is_resumed(const gd_tls_conn_t *tc)
{
    return tc->ssl != NULL && SSL_session_reused(tc->ssl) == 1;
}
