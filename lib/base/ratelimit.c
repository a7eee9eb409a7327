#include "base/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define NSHARDS 64

struct bucket {
    struct bucket *hnext;       /* the shard's hash chain */
    struct bucket *prev, *next; /* the shard's LRU list, most recent first */
    uint64_t hash;
    size_t key_len; /* the key's length; > GD_RATELIMIT_MAX_KEY: only hashed */
    char key[GD_RATELIMIT_MAX_KEY];
    double tokens;
    uint64_t at_ms; /* when tokens was computed */
};

struct shard {
    pthread_mutex_t lock;
    struct bucket **table; /* nbuckets chains */
    size_t nbuckets;
    struct bucket *slab; /* max buckets, taken in order, then reused from the LRU tail */
    size_t used, max;
    struct bucket *head, *tail;
    char pad[64]; /* keeps two shards' locks off one cache line */
};

struct gd_ratelimit {
    double per_ms_rate; /* tokens per ms */
    double burst;
    uint64_t requests, per_ms;
    struct shard shards[NSHARDS];
};

/* FNV-1a, then a final mix: keys are client-controlled, but a shard's chains are short by
 * construction (the table has as many chains as the shard has buckets) and the shard lock is
 * held only for one walk, so a collision-flood costs its sender, not the table's bound. */
static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

gd_ratelimit_t *gd_ratelimit_new(uint64_t requests, uint64_t per_ms, uint64_t burst,
                                 size_t max_keys)
{
    gd_ratelimit_t *rl = gd_xcalloc(1, sizeof(*rl));
    size_t per_shard = max_keys / NSHARDS > 0 ? max_keys / NSHARDS : 1;

    rl->requests = requests;
    rl->per_ms = per_ms;
    rl->per_ms_rate = (double)requests / (double)per_ms;
    rl->burst = (double)burst;
    for (size_t i = 0; i < NSHARDS; i++) {
        struct shard *s = &rl->shards[i];
        GD_REQUIRE(pthread_mutex_init(&s->lock, NULL) == 0);
        s->max = per_shard;
        s->nbuckets = per_shard;
        s->table = gd_xcalloc(s->nbuckets, sizeof(*s->table));
        /* The slab is allocated on first use of the shard, at its full size. */
    }
    return rl;
}

gd_ratelimit_t *gd_ratelimit_free(gd_ratelimit_t *rl)
{
    if (rl == NULL)
        return NULL;
    for (size_t i = 0; i < NSHARDS; i++) {
        pthread_mutex_destroy(&rl->shards[i].lock);
        free(rl->shards[i].table);
        free(rl->shards[i].slab);
    }
    free(rl);
    return NULL;
}

static void lru_unlink(struct shard *s, struct bucket *b)
{
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        s->head = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    else
        s->tail = b->prev;
    b->prev = b->next = NULL;
}

static void lru_push_front(struct shard *s, struct bucket *b)
{
    b->prev = NULL;
    b->next = s->head;
    if (s->head != NULL)
        s->head->prev = b;
    s->head = b;
    if (s->tail == NULL)
        s->tail = b;
}

static void chain_remove(struct shard *s, struct bucket *b)
{
    struct bucket **pp = &s->table[b->hash % s->nbuckets];
    while (*pp != b)
        pp = &(*pp)->hnext;
    *pp = b->hnext;
}

static bool same_key(const struct bucket *b, uint64_t hash, const char *key, size_t len)
{
    if (b->hash != hash || b->key_len != len)
        return false;
    return len > GD_RATELIMIT_MAX_KEY || memcmp(b->key, key, len) == 0;
}

void gd_ratelimit_take(gd_ratelimit_t *rl, const char *key, size_t len, uint64_t now_ms,
                       gd_ratelimit_result_t *ret)
{
    uint64_t hash = hash_key(key, len);
    struct shard *s = &rl->shards[(hash >> 58) % NSHARDS];
    struct bucket *b;

    pthread_mutex_lock(&s->lock);
    for (b = s->table[hash % s->nbuckets]; b != NULL; b = b->hnext)
        if (same_key(b, hash, key, len))
            break;
    if (b != NULL) {
        lru_unlink(s, b);
    } else {
        if (s->slab == NULL)
            s->slab = gd_xcalloc(s->max, sizeof(*s->slab));
        if (s->used < s->max) {
            b = &s->slab[s->used++];
        } else { /* full: the least recently used bucket is taken over */
            b = s->tail;
            lru_unlink(s, b);
            chain_remove(s, b);
        }
        b->hash = hash;
        b->key_len = len;
        if (len <= GD_RATELIMIT_MAX_KEY)
            memcpy(b->key, key, len);
        b->tokens = rl->burst;
        b->at_ms = now_ms;
        b->hnext = s->table[hash % s->nbuckets];
        s->table[hash % s->nbuckets] = b;
    }
    lru_push_front(s, b);
    if (now_ms > b->at_ms) {
        b->tokens += (double)(now_ms - b->at_ms) * rl->per_ms_rate;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
        b->at_ms = now_ms;
    }
    ret->is_allowed = b->tokens >= 1.0;
    if (ret->is_allowed)
        b->tokens -= 1.0;
    ret->remaining = (uint64_t)b->tokens;
    ret->retry_after_ms = ret->is_allowed ? 0 : (uint64_t)((1.0 - b->tokens) / rl->per_ms_rate) + 1;
    ret->reset_ms = (uint64_t)((rl->burst - b->tokens) / rl->per_ms_rate + 0.999);
    pthread_mutex_unlock(&s->lock);
}

size_t gd_ratelimit_size(gd_ratelimit_t *rl)
{
    size_t n = 0;

    for (size_t i = 0; i < NSHARDS; i++) {
        pthread_mutex_lock(&rl->shards[i].lock);
        n += rl->shards[i].used;
        pthread_mutex_unlock(&rl->shards[i].lock);
    }
    return n;
}
