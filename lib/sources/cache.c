#include "sources/cache.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/linklist.h>
#include <h2o/memory.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <uv.h>

#include "base/redis_stats.h"
#include "base/ttlcache.h"
#include "base/util.h"
#include "sources/redis/redis.h"

#define NBUCKETS 256

/* What an entry's head holds besides the document: the result's other fields. */
struct stored_head {
    gd_outcome_t outcome;
    int status;
    char message[GD_CALL_MESSAGE_MAX];
    char sqlstate[6];
};

/* A thread's exchange for the requesters of one key. */
struct flight {
    struct flight *next_in_bucket;
    h2o_linklist_t link; /* in running, then in ended */
    gd_flights_t *owner;
    uint32_t hash;
    char *key;
    size_t key_len;
    bool is_in_table;
    gd_group_t group;      /* the flight's own: no request owns its exchange */
    gd_arena_t arena;      /* what the copy of the call borrows */
    gd_call_t *call;       /* the copy that makes the exchange */
    h2o_linklist_t waiting; /* of struct requester */
    /* "shared": the Redis key, the lookup made before the source is called, that source */
    char *shared_key;
    gd_redis_wait_t lookup;
    const gd_source_t *source;
};

/* A call waiting for a flight's result. */
struct requester {
    h2o_linklist_t link;
    gd_call_t *call;
    gd_timer_t deadline; /* the requester's own: it leaves then, the flight goes on */
    gd_flights_t *owner;
};

struct gd_flights {
    gd_ttlcache_t *store;
    gd_sched_t *sched;
    gd_timers_t *timers;
    struct flight *buckets[NBUCKETS];
    h2o_linklist_t running, ended;
    gd_timer_t reap; /* frees ended flights on the next loop turn, out of their sources' stacks */
    gd_redis_t *redis; /* for "shared" caches; NULL: none */
    char *key;       /* the key being built */
    size_t key_len, key_cap;
};

static void read_entry(void *ctx, const void *head, size_t head_len, const void *body,
                       size_t body_len)
{
    gd_call_result_t *r = ctx;
    struct stored_head h;

    GD_REQUIRE(head_len == sizeof(h));
    memcpy(&h, head, sizeof(h));
    r->outcome = h.outcome;
    r->status = h.status;
    memcpy(r->message, h.message, sizeof(r->message));
    memcpy(r->sqlstate, h.sqlstate, sizeof(r->sqlstate));
    r->body = body_len > 0 ? gd_buf_new_copy(body, body_len) : NULL;
    r->attempts = 0;
}

/* How long @r may be kept under @cc: 0 when it may not. */
static uint64_t lifetime_ms(const gd_call_cache_conf_t *cc, const gd_call_result_t *r)
{
    switch (r->outcome) {
    case GD_OUTCOME_OK:
        /* The upstream may shorten the lifetime or forbid keeping its answer, never lengthen
         * what the operator allowed. */
        if (cc->honor_cache_control && r->max_age_ms >= 0 && (uint64_t)r->max_age_ms < cc->ttl_ms)
            return (uint64_t)r->max_age_ms;
        return cc->ttl_ms;
    case GD_OUTCOME_STATUS:
    case GD_OUTCOME_NOT_FOUND:
        return cc->negative_ttl_ms; /* an answer the service gave, not a broken exchange */
    default:
        return 0;
    }
}

static void store_result(gd_ttlcache_t *store, const struct flight *fl, const gd_call_result_t *r,
                         uint64_t ttl_ms)
{
    uint64_t ttl = ttl_ms != 0 ? ttl_ms : lifetime_ms(&fl->call->conf->cache, r);
    struct stored_head h = {.outcome = r->outcome, .status = r->status};

    if (ttl == 0)
        return;
    memcpy(h.message, r->message, sizeof(h.message));
    memcpy(h.sqlstate, r->sqlstate, sizeof(h.sqlstate));
    gd_ttlcache_put(store, fl->key, fl->key_len, fl->hash, &h, sizeof(h),
                    r->body != NULL ? r->body->bytes : NULL, r->body != NULL ? r->body->len : 0,
                    ttl);
}

/* -- a thread's flights ------------------------------------------------------------------- */

static void on_reap(gd_timer_t *timer);

gd_flights_t *gd_flights_new(gd_ttlcache_t *store, gd_sched_t *sched)
{
    gd_flights_t *f = gd_xcalloc(1, sizeof(*f));

    f->store = store;
    f->sched = sched;
    f->timers = gd_sched_timers(sched);
    h2o_linklist_init_anchor(&f->running);
    h2o_linklist_init_anchor(&f->ended);
    gd_timer_init(&f->reap, on_reap);
    return f;
}

void gd_flights_use_redis(gd_flights_t *f, struct gd_redis *redis)
{
    f->redis = redis;
}

static void free_flight(struct flight *fl)
{
    h2o_linklist_unlink(&fl->link);
    free(fl->shared_key);
    gd_group_dispose(&fl->group);
    gd_call_dispose(fl->call);
    free(fl->call);
    gd_arena_clear(&fl->arena);
    free(fl->key);
    free(fl);
}

static void reap_ended(gd_flights_t *f)
{
    while (!h2o_linklist_is_empty(&f->ended))
        free_flight(H2O_STRUCT_FROM_MEMBER(struct flight, link, f->ended.next));
}

static void on_reap(gd_timer_t *timer)
{
    reap_ended(H2O_STRUCT_FROM_MEMBER(gd_flights_t, reap, timer));
}

static void settle(struct flight *fl, uint64_t ttl_ms, gd_call_cache_use_t use);

void gd_flights_close(gd_flights_t *f)
{
    /* Each cancel reports at once (the sources' rule), which ends its flight; one still looking
     * in the shared cache has not started its call and ends here. */
    while (!h2o_linklist_is_empty(&f->running)) {
        struct flight *fl = H2O_STRUCT_FROM_MEMBER(struct flight, link, f->running.next);
        if (gd_redis_is_waiting(&fl->lookup)) {
            gd_redis_cancel(&fl->lookup);
            settle(fl, 0, GD_CALL_UNCACHED); /* its result says "cancelled" */
            continue;
        }
        gd_group_cancel(&fl->group);
    }
    gd_timer_stop(f->timers, &f->reap);
    reap_ended(f);
}

gd_flights_t *gd_flights_free(gd_flights_t *f)
{
    if (f == NULL)
        return NULL;
    GD_REQUIRE(h2o_linklist_is_empty(&f->running) && h2o_linklist_is_empty(&f->ended));
    free(f->key);
    free(f);
    return NULL;
}

static void key_add(void *ctx, const void *p, size_t n)
{
    gd_flights_t *f = ctx;

    if (f->key_len + n > f->key_cap) {
        f->key_cap = (f->key_len + n) * 2;
        f->key = gd_xrealloc(f->key, f->key_cap);
    }
    if (n > 0)
        memcpy(f->key + f->key_len, p, n);
    f->key_len += n;
}

static struct flight **bucket_of(gd_flights_t *f, uint32_t hash)
{
    return &f->buckets[hash % NBUCKETS];
}

static struct flight *find_flight(gd_flights_t *f, uint32_t hash)
{
    for (struct flight *fl = *bucket_of(f, hash); fl != NULL; fl = fl->next_in_bucket)
        if (fl->hash == hash && fl->key_len == f->key_len && memcmp(fl->key, f->key, f->key_len) == 0)
            return fl;
    return NULL;
}

static void leave_table(struct flight *fl)
{
    if (!fl->is_in_table)
        return;
    for (struct flight **p = bucket_of(fl->owner, fl->hash); *p != NULL; p = &(*p)->next_in_bucket)
        if (*p == fl) {
            *p = fl->next_in_bucket;
            break;
        }
    fl->is_in_table = false;
}

/* A flight for the key being built, with its own copy of @call; in the table, not started. */
static struct flight *new_flight(gd_flights_t *f, uint32_t hash, const gd_call_t *call)
{
    struct flight *fl = gd_xcalloc(1, sizeof(*fl));
    const gd_call_ops_t *ops = call->ops;

    fl->owner = f;
    fl->hash = hash;
    fl->key = gd_xmalloc(f->key_len);
    memcpy(fl->key, f->key, f->key_len);
    fl->key_len = f->key_len;
    h2o_linklist_init_anchor(&fl->waiting);
    gd_arena_init(&fl->arena, NULL, 0);
    gd_group_init(&fl->group, f->sched);
    fl->call = gd_xcalloc(1, ops->size);
    fl->call->ops = ops;
    fl->call->conf = call->conf;
    /* Its own clock: the call's timeout from now, whichever requester's deadline comes first. */
    fl->call->started_at_ns = uv_hrtime();
    fl->call->timeout_ms = call->conf->timeout_ms;
    fl->call->deadline_ms = gd_timers_now(f->timers) + call->conf->timeout_ms;
    fl->call->result = (gd_call_result_t){.outcome = GD_OUTCOME_CANCELLED, .max_age_ms = -1};
    fl->call->_is_flight_call = true;
    fl->call->_cache = fl;
    ops->clone(fl->call, call, &fl->arena);
    if (call->conf->cache.is_shared && f->redis != NULL) {
        /* The key's hash: the rendered request may be long and hold what a key should not. */
        const char *prefix = gd_redis_conf(f->redis)->key_prefix;
        size_t plen = strlen(prefix);
        unsigned char d[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)f->key, f->key_len, d);
        fl->shared_key = gd_xmalloc(plen + 6 + 2 * sizeof(d) + 1);
        memcpy(fl->shared_key, prefix, plen);
        memcpy(fl->shared_key + plen, "cache:", 6);
        gd_hex_encode(d, sizeof(d), fl->shared_key + plen + 6);
    }
    fl->next_in_bucket = *bucket_of(f, hash);
    *bucket_of(f, hash) = fl;
    fl->is_in_table = true;
    h2o_linklist_insert(&f->running, &fl->link);
    return fl;
}

static void take_requester(gd_call_t *call)
{
    struct requester *rq = call->_cache;

    h2o_linklist_unlink(&rq->link);
    gd_timer_stop(rq->owner->timers, &rq->deadline);
    call->_cache = NULL;
    free(rq);
}

/* The requester's client left, or its request's deadline passed: it leaves the flight. Reports
 * at once and starts nothing (the cancellation rule). */
static void on_requester_cancel(gd_task_t *task)
{
    gd_call_t *call = H2O_STRUCT_FROM_MEMBER(gd_call_t, _task, task);

    take_requester(call);
    gd_call_finish(call, GD_OUTCOME_CANCELLED, 0, "cancelled");
}

static void on_requester_deadline(gd_timer_t *timer)
{
    struct requester *rq = H2O_STRUCT_FROM_MEMBER(struct requester, deadline, timer);
    gd_call_t *call = rq->call;

    take_requester(call);
    gd_call_finish(call, GD_OUTCOME_TIMEOUT, 0, "timed out after %" PRIu64 " ms", call->timeout_ms);
}

/* -- the shared cache in Redis ------------------------------------------------------------ */

/* An entry in Redis: magic, when it expires (ms since 1970, big-endian: Redis's PX already
 * removes it then; kept to give the process's store what is left of it), the status, the
 * document. Only successes are shared. */
#define SHARED_MAGIC "GDC1"
#define SHARED_HEAD  16

static uint64_t unix_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void on_shared_answer(gd_redis_wait_t *wait, int status, const redisReply *reply)
{
    struct flight *fl = H2O_STRUCT_FROM_MEMBER(struct flight, lookup, wait);
    gd_redis_stats_t *stats = gd_redis_conf(fl->owner->redis)->stats;

    if (status == 0 && reply->type == REDIS_REPLY_STRING && reply->len >= SHARED_HEAD &&
        memcmp(reply->str, SHARED_MAGIC, 4) == 0) {
        const unsigned char *h = (const unsigned char *)reply->str;
        uint64_t expires = get_be(h + 4, 8), now = unix_now_ms();
        if (expires > now) {
            atomic_fetch_add_explicit(&stats->cache_hits, 1, memory_order_relaxed);
            uint64_t ttl = expires - now, cap = fl->call->conf->cache.ttl_ms;
            gd_call_result_t *r = &fl->call->result;
            r->outcome = GD_OUTCOME_OK;
            r->status = (int)get_be(h + 12, 4);
            r->message[0] = '\0';
            r->sqlstate[0] = '\0';
            r->body = gd_buf_new_copy(reply->str + SHARED_HEAD, reply->len - SHARED_HEAD);
            settle(fl, ttl < cap ? ttl : cap, GD_CALL_CACHE_SHARED_HIT);
            return;
        }
    }
    atomic_fetch_add_explicit(status == 0 ? &stats->cache_misses : &stats->cache_skipped, 1,
                              memory_order_relaxed);
    fl->source->ops->start(fl->source->instance, fl->call, &fl->group);
}

/* Asks Redis for the entry of flight @fl, whose call goes to @source when there is none (or no
 * answer in time). Returns false when no lookup was started: the caller starts the call. */
static bool look_up_shared(struct flight *fl, const gd_source_t *source)
{
    gd_flights_t *f = fl->owner;

    if (fl->shared_key == NULL)
        return false;
    const char *argv[2] = {"GET", fl->shared_key};
    size_t lens[2] = {3, strlen(fl->shared_key)};
    fl->source = source;
    /* The call's own deadline bounds the wait too (gd_redis caps it at redis.timeout_ms). */
    if (gd_redis_command(f->redis, &fl->lookup, fl->call->deadline_ms, 2, argv, lens,
                         on_shared_answer) == 0)
        return true;
    atomic_fetch_add_explicit(&gd_redis_conf(f->redis)->stats->cache_skipped, 1,
                              memory_order_relaxed);
    return false;
}

/* Stores the success @r of flight @fl in Redis for @ttl_ms, nobody waiting for the answer. */
static void store_shared(struct flight *fl, const gd_call_result_t *r, uint64_t ttl_ms)
{
    gd_redis_t *redis = fl->owner->redis;
    const gd_redis_conf_t *rc = gd_redis_conf(redis);
    size_t body_len = r->body != NULL ? r->body->len : 0;

    if (body_len > rc->cache_max_entry_bytes) {
        atomic_fetch_add_explicit(&rc->stats->cache_too_large, 1, memory_order_relaxed);
        return;
    }
    if (!gd_redis_is_ready(redis))
        return;
    unsigned char *v = gd_xmalloc(SHARED_HEAD + body_len);
    memcpy(v, SHARED_MAGIC, 4);
    put_be(v + 4, unix_now_ms() + ttl_ms, 8);
    put_be(v + 12, (uint64_t)r->status, 4);
    if (body_len > 0)
        memcpy(v + SHARED_HEAD, r->body->bytes, body_len);
    char px[24];
    snprintf(px, sizeof(px), "%" PRIu64, ttl_ms);
    const char *argv[5] = {"SET", fl->shared_key, (const char *)v, "PX", px};
    size_t lens[5] = {3, strlen(fl->shared_key), SHARED_HEAD + body_len, 2, strlen(px)};
    if (gd_redis_command(redis, NULL, 0, 5, argv, lens, NULL) == 0)
        atomic_fetch_add_explicit(&rc->stats->cache_stored, 1, memory_order_relaxed);
    free(v); /* hiredis copied it into its output buffer */
}

void gd_cached_call_start(gd_flights_t *f, gd_call_t *call, const gd_source_t *source,
                          gd_group_t *group)
{
    const gd_call_cache_conf_t *cc = &call->conf->cache;
    uint32_t hash;

    f->key_len = 0;
    key_add(f, cc->variant, cc->variant_len);
    key_add(f, "", 1);
    call->ops->cache_key(call, key_add, f);
    hash = gd_ttlcache_hash(f->key, f->key_len);

    if (gd_ttlcache_get(f->store, f->key, f->key_len, hash, read_entry, &call->result)) {
        call->result.cache = GD_CALL_CACHE_HIT;
        call->result.elapsed_ms = gd_call_elapsed_ms(call);
        gd_group_add(group, &call->_task, NULL);
        gd_task_done(&call->_task);
        return;
    }
    struct flight *fl = find_flight(f, hash);
    bool is_new = fl == NULL;
    if (is_new)
        fl = new_flight(f, hash, call);
    call->result.cache = is_new ? GD_CALL_CACHE_MISS : GD_CALL_COALESCED;
    struct requester *rq = gd_xcalloc(1, sizeof(*rq));
    rq->call = call;
    rq->owner = f;
    gd_timer_init(&rq->deadline, on_requester_deadline);
    h2o_linklist_insert(&fl->waiting, &rq->link);
    call->_cache = rq;
    gd_group_add(group, &call->_task, on_requester_cancel);
    gd_timer_start(f->timers, &rq->deadline, call->deadline_ms);
    /* Started once its first requester waits: a source that reports at once (an open breaker)
     * ends the flight with it. A shared cache is asked first. */
    if (is_new && !look_up_shared(fl, source))
        source->ops->start(source->instance, fl->call, &fl->group);
}

/* Flight @fl has its result (its call's): stored for @ttl_ms (0: the lifetime its conf
 * gives it) and copied to every requester still waiting, marked @use (GD_CALL_UNCACHED: as
 * they joined). Then the flight ends, freed on the reap. */
static void settle(struct flight *fl, uint64_t ttl_ms, gd_call_cache_use_t use)
{
    gd_flights_t *f = fl->owner;
    const gd_call_result_t *r = &fl->call->result;

    leave_table(fl); /* a call started from here on makes a flight of its own */
    store_result(f->store, fl, r, ttl_ms);
    while (!h2o_linklist_is_empty(&fl->waiting)) {
        struct requester *rq = H2O_STRUCT_FROM_MEMBER(struct requester, link, fl->waiting.next);
        gd_call_t *call = rq->call;
        take_requester(call);
        gd_call_result_t *mine = &call->result;
        gd_call_cache_use_t joined = mine->cache;
        *mine = *r;
        mine->cache = use != GD_CALL_UNCACHED ? use : joined;
        mine->body = gd_buf_ref(r->body);
        mine->elapsed_ms = gd_call_elapsed_ms(call);
        /* May switch into the requester's coroutine; the flight stays until the reap. */
        gd_task_done(&call->_task);
    }
    h2o_linklist_unlink(&fl->link);
    h2o_linklist_insert(&f->ended, &fl->link);
    if (!gd_timer_is_active(&f->reap))
        gd_timer_start(f->timers, &f->reap, gd_timers_now(f->timers));
}

void gd__flight_done(gd_call_t *flight_call)
{
    struct flight *fl = flight_call->_cache;
    const gd_call_result_t *r = &flight_call->result;

    if (fl->shared_key != NULL && r->outcome == GD_OUTCOME_OK) {
        uint64_t ttl = lifetime_ms(&flight_call->conf->cache, r);
        if (ttl > 0)
            store_shared(fl, r, ttl);
    }
    settle(fl, 0, GD_CALL_UNCACHED);
    gd_task_done(&flight_call->_task); /* its own group, which nobody waits on */
}
