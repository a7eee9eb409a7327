/*
 * gd_client: who the client is. The peer's address, unless the peer is one of the config's
 * "trusted_proxies": then the rightmost address of X-Forwarded-For (else of Forwarded's for=,
 * RFC 7239) that is not itself trusted, since each trusted proxy appends the address it saw
 * and everything left of the first untrusted one may be made up by the client.
 */
#ifndef GD_CLIENT_H
#define GD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <h2o.h>

#include "config/config.h"

/** Whether the address @addr (4 or 16 bytes by @family) is in one of @config's trusted_proxies. */
bool gd_client_is_trusted(const gd_config_t *config, int family, const unsigned char *addr);

/**
 * Returns the client address of @req as text ("192.0.2.1", "2001:db8::1"; "-" when the peer is
 * unknown), in @req's pool.
 */
const char *gd_client_identify(const gd_config_t *config, h2o_req_t *req);

/**
 * The same for a peer @peer (text, as gd_client_identify() gives it) and the header values
 * @xff (X-Forwarded-For fields in order, @nxff of them) and @fwd (Forwarded, @nfwd): the
 * address written to @buf (@cap bytes, at least INET6_ADDRSTRLEN). Exposed for tests.
 */
void gd_client_resolve(const gd_config_t *config, const char *peer, const h2o_iovec_t *xff,
                       size_t nxff, const h2o_iovec_t *fwd, size_t nfwd, char *buf, size_t cap);

#endif
