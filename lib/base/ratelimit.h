/*
 * gd_ratelimit: token buckets by key, shared by every thread and exact across them: a table
 * split in shards by the key's hash, each behind its own mutex (one short lock per request).
 * Memory is bounded: each shard holds at most its share of @max_keys buckets, and a new key in
 * a full shard takes the bucket used least recently (a doubly linked LRU list per shard), so a
 * flood of distinct keys evicts only the idle buckets first and never grows the table.
 */
#ifndef GD_RATELIMIT_H
#define GD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gd_ratelimit gd_ratelimit_t;

/* What one take decided. */
typedef struct gd_ratelimit_result {
    bool is_allowed;
    uint64_t remaining;      /* whole tokens left after this request */
    uint64_t retry_after_ms; /* !is_allowed: when the next token is there */
    uint64_t reset_ms;       /* when the bucket is full again */
} gd_ratelimit_result_t;

/** The longest key kept as it is; longer keys are kept as their hash (see gd_ratelimit_take()). */
#define GD_RATELIMIT_MAX_KEY 64

/**
 * A new limiter: buckets of @burst tokens, refilled with @requests tokens every @per_ms, for at
 * most @max_keys keys (at least 1 per shard). Free with gd_ratelimit_free().
 */
gd_ratelimit_t *gd_ratelimit_new(uint64_t requests, uint64_t per_ms, uint64_t burst,
                                 size_t max_keys);
/** Frees @rl (NULL is a no-op). Returns NULL. No thread may use it any more. */
gd_ratelimit_t *gd_ratelimit_free(gd_ratelimit_t *rl);

/**
 * Takes one token from the bucket of key [@key, @key + @len) at @now_ms (monotonic), making the
 * bucket (full) when the key is new. Thread-safe; never blocks for longer than a shard's lock.
 * A key longer than GD_RATELIMIT_MAX_KEY bytes is identified by its length and a 64-bit hash.
 */
void gd_ratelimit_take(gd_ratelimit_t *rl, const char *key, size_t len, uint64_t now_ms,
                       gd_ratelimit_result_t *ret);

/** The number of keys held now (for tests; takes every shard's lock in turn). */
size_t gd_ratelimit_size(gd_ratelimit_t *rl);

#endif
