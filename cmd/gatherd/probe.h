/*
 * gd_probe: `gatherd --probe URL`, a minimal HTTP GET for container health checks, so that an
 * image needs no curl. Blocking by design: it runs as its own short-lived process, never on a
 * loop.
 */
#ifndef GD_PROBE_H
#define GD_PROBE_H

#include <stddef.h>
#include <stdint.h>

/**
 * GETs @url ("http://HOST:PORT/PATH"; HOST an address or a name) within @timeout_ms. Returns
 * the HTTP status (> 0), or -errno / -EPROTO with a message in @err.
 */
int gd_probe(const char *url, uint64_t timeout_ms, char *err, size_t errlen);

#endif
