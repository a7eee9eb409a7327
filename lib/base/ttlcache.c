#include "base/ttlcache.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/cache.h>
#include <uv.h>

#include "base/util.h"

#define MAX_ENTRY_SHARE 8

struct gd_ttlcache {
    h2o_cache_t *lru;
    uint64_t max_ttl_ms;
    size_t max_entry_bytes;
    _Atomic uint64_t stored, evictions, bytes, entries;
};

struct entry {
    gd_ttlcache_t *cache;   /* the destroy callback gets the value only */
    uint64_t expires_at_ms; /* uv_hrtime() based, like every thread's clock */
    size_t charged;         /* what it counts against the bound */
    size_t head_len, body_len;
    char bytes[]; /* the head, then the body */
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_destroyed(h2o_iovec_t value)
{
    struct entry *e = (struct entry *)value.base;
    gd_ttlcache_t *c = e->cache;

    atomic_fetch_sub_explicit(&c->bytes, e->charged, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
    if (e->expires_at_ms > now_ms())
        atomic_fetch_add_explicit(&c->evictions, 1, memory_order_relaxed);
    free(e);
}

gd_ttlcache_t *gd_ttlcache_new(size_t max_bytes, uint64_t max_ttl_ms)
{
    gd_ttlcache_t *c = gd_xcalloc(1, sizeof(*c));

    c->lru = h2o_cache_create(H2O_CACHE_FLAG_MULTITHREADED, max_bytes, max_ttl_ms, on_destroyed);
    c->max_ttl_ms = max_ttl_ms;
    c->max_entry_bytes = max_bytes / MAX_ENTRY_SHARE;
    return c;
}

gd_ttlcache_t *gd_ttlcache_free(gd_ttlcache_t *c)
{
    if (c == NULL)
        return NULL;
    h2o_cache_destroy(c->lru);
    free(c);
    return NULL;
}

uint32_t gd_ttlcache_hash(const char *key, size_t len)
{
    uint32_t h = h2o_cache_calchash(key, len);
    return h != 0 ? h : 1; /* 0 makes h2o_cache_* hash the key again */
}

bool gd_ttlcache_put(gd_ttlcache_t *c, const char *key, size_t key_len, uint32_t hash,
                     const void *head, size_t head_len, const void *body, size_t body_len,
                     uint64_t ttl_ms)
{
    size_t charged = sizeof(struct entry) + head_len + body_len + key_len;
    uint64_t now = now_ms();

    if (charged > c->max_entry_bytes)
        return false;
    struct entry *e = gd_xmalloc(sizeof(*e) + head_len + body_len);
    e->cache = c;
    e->expires_at_ms = now + (ttl_ms < c->max_ttl_ms ? ttl_ms : c->max_ttl_ms);
    e->charged = charged;
    e->head_len = head_len;
    e->body_len = body_len;
    if (head_len > 0)
        memcpy(e->bytes, head, head_len);
    if (body_len > 0)
        memcpy(e->bytes + head_len, body, body_len);
    atomic_fetch_add_explicit(&c->stored, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->bytes, charged, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->entries, 1, memory_order_relaxed);
    h2o_cache_set(c->lru, now, h2o_iovec_init(key, key_len), hash, h2o_iovec_init(e, charged));
    return true;
}

bool gd_ttlcache_get(gd_ttlcache_t *c, const char *key, size_t key_len, uint32_t hash,
                     gd_ttlcache_read_cb read, void *ctx)
{
    uint64_t now = now_ms();
    h2o_iovec_t k = h2o_iovec_init(key, key_len);
    h2o_cache_ref_t *ref = h2o_cache_fetch(c->lru, now, k, hash);

    if (ref == NULL)
        return false;
    const struct entry *e = (const struct entry *)ref->value.base;
    bool is_live = e->expires_at_ms > now;
    if (is_live)
        read(ctx, e->bytes, e->head_len, e->bytes + e->head_len, e->body_len);
    h2o_cache_release(c->lru, ref);
    if (!is_live)
        h2o_cache_delete(c->lru, now, k, hash);
    return is_live;
}

void gd_ttlcache_stats(gd_ttlcache_t *c, gd_ttlcache_stats_t *ret)
{
    *ret = (gd_ttlcache_stats_t){
        .stored = atomic_load_explicit(&c->stored, memory_order_relaxed),
        .evictions = atomic_load_explicit(&c->evictions, memory_order_relaxed),
        .bytes = atomic_load_explicit(&c->bytes, memory_order_relaxed),
        .entries = atomic_load_explicit(&c->entries, memory_order_relaxed),
    };
}
