/*
 * gd_ttlcache: a byte cache shared by every thread of the process: libh2o's LRU (h2o_cache_t,
 * with its lock), bounded in bytes, each entry with a lifetime of its own (h2o_cache_t has one
 * for all: it is set to the longest, and an entry past its own is a miss and is dropped). An
 * entry is two byte strings, a head and a body, copied in; a hit copies them out under the
 * entry's reference, so no buffer is shared between threads. Entries larger than an eighth of
 * the bound are not kept: one document must not flush everything else out.
 */
#ifndef GD_TTLCACHE_H
#define GD_TTLCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gd_ttlcache gd_ttlcache_t;

typedef struct gd_ttlcache_stats {
    uint64_t stored;    /* entries stored since the start */
    uint64_t evictions; /* entries dropped before their lifetime ended (the bound) */
    uint64_t bytes;     /* held now: heads, bodies, keys and bookkeeping */
    uint64_t entries;   /* held now */
} gd_ttlcache_stats_t;

/* Copies an entry out: its head and body, valid during the call only. */
typedef void (*gd_ttlcache_read_cb)(void *ctx, const void *head, size_t head_len, const void *body,
                                    size_t body_len);

/** A cache of at most @max_bytes whose entries live at most @max_ttl_ms. */
gd_ttlcache_t *gd_ttlcache_new(size_t max_bytes, uint64_t max_ttl_ms);
/** Frees @c (NULL is a no-op) and its entries; no thread may use it any more. Returns NULL. */
gd_ttlcache_t *gd_ttlcache_free(gd_ttlcache_t *c);
/** The hash of @key (@len bytes) that the other calls take. */
uint32_t gd_ttlcache_hash(const char *key, size_t len);
/**
 * Keeps @head and @body (copied) under @key for @ttl_ms (at most the cache's longest), replacing
 * what it held; evicts the least recently used entries beyond the bound. Returns false, keeping
 * nothing, for an entry too large. Any thread.
 */
bool gd_ttlcache_put(gd_ttlcache_t *c, const char *key, size_t key_len, uint32_t hash,
                     const void *head, size_t head_len, const void *body, size_t body_len,
                     uint64_t ttl_ms);
/** Calls @read(@ctx, ...) with the live entry under @key and returns true; false when none. */
bool gd_ttlcache_get(gd_ttlcache_t *c, const char *key, size_t key_len, uint32_t hash,
                     gd_ttlcache_read_cb read, void *ctx);
/** Reads @c's counters (any thread). */
void gd_ttlcache_stats(gd_ttlcache_t *c, gd_ttlcache_stats_t *ret);

#endif
