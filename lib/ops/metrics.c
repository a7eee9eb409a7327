#include "ops/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/breaker.h"
#include "base/budget.h"
#include "base/pacer.h"
#include "base/redis_stats.h"
#include "base/retry_budget.h"
#include "base/ttlcache.h"
#include "base/util.h"
#include "base/waits.h"

#define NBUCKETS     13
#define MIN_STATUS   100
#define MAX_STATUS   599

/* Upper bounds of the duration buckets, in microseconds (rendered in seconds). */
static const uint64_t bucket_bounds_us[NBUCKETS] = {1000,   2500,    5000,    10000,   25000,
                                                    50000,  100000,  250000,  500000,  1000000,
                                                    2500000, 5000000, 10000000};
static const char *const bucket_labels[NBUCKETS] = {"0.001", "0.0025", "0.005", "0.01", "0.025",
                                                    "0.05",  "0.1",    "0.25",  "0.5",  "1",
                                                    "2.5",   "5",      "10"};

_Static_assert(NBUCKETS == GD_WAITS_NBUCKETS, "the wait histograms share the buckets");

struct histogram {
    uint64_t buckets[NBUCKETS + 1]; /* not cumulative; the last is +Inf */
    uint64_t count;
    uint64_t sum_us;
};

struct endpoint_metrics {
    uint64_t by_status[MAX_STATUS - MIN_STATUS + 1];
    struct histogram duration;
    uint64_t rate_limited;
};

#define NSTATUS (MAX_STATUS - MIN_STATUS + 1)

struct call_metrics {
    struct histogram duration;
    uint64_t by_outcome[GD_METRICS_MAX_OUTCOMES];
    /* Failures of gd_metrics.status_outcome by upstream status: NSTATUS counters, allocated by
     * the owner at the first one and published with a release store (most calls never fail
     * with a status, and 4 KB per call and thread would add up). */
    uint64_t *by_status;
    uint64_t by_cache_use[3]; /* calls with "cache": hit, miss, coalesced */
};

/* An upstream's calls by outcome, whatever endpoints they belong to (a reload that removes an
 * endpoint takes nothing from them). */
struct upstream_call_metrics {
    uint64_t by_outcome[GD_METRICS_MAX_OUTCOMES];
    uint64_t *by_status; /* as call_metrics' */
};

/*
 * Counters by slot (config/metrics_keys.h: one per name for the life of the process), in
 * chunks that the owner allocates when a config first uses them and publishes with a release
 * store; a reader that finds no chunk reads zeros. Chunks are never moved or freed before the
 * metrics, so a reload adds series while scrapes read, without a lock.
 */
#define TABLE_CHUNK  16
#define TABLE_CHUNKS (GD_METRICS_MAX_SLOTS / TABLE_CHUNK)

struct table {
    size_t item_size;
    void *chunks[TABLE_CHUNKS];
};

static struct table *table_new(size_t item_size)
{
    struct table *t = gd_xcalloc(1, sizeof(*t));
    t->item_size = item_size;
    return t;
}

/* The owner's item @slot, its chunk allocated when it is the first of it. */
static void *table_item(struct table *t, size_t slot)
{
    GD_REQUIRE(slot < (size_t)TABLE_CHUNK * TABLE_CHUNKS);
    char *chunk = __atomic_load_n(&t->chunks[slot / TABLE_CHUNK], __ATOMIC_RELAXED);
    if (chunk == NULL) {
        chunk = gd_xcalloc(TABLE_CHUNK, t->item_size);
        __atomic_store_n(&t->chunks[slot / TABLE_CHUNK], chunk, __ATOMIC_RELEASE);
    }
    return chunk + (slot % TABLE_CHUNK) * t->item_size;
}

/* Item @slot for a reader (any thread), or NULL when the owner has not used it yet. */
static const void *table_peek(const struct table *t, size_t slot)
{
    if (slot >= (size_t)TABLE_CHUNK * TABLE_CHUNKS)
        return NULL;
    const char *chunk = __atomic_load_n(&t->chunks[slot / TABLE_CHUNK], __ATOMIC_ACQUIRE);
    return chunk == NULL ? NULL : chunk + (slot % TABLE_CHUNK) * t->item_size;
}

/* Frees @t's chunks; @on_item (may be NULL) frees what an item owns. */
static void table_free(struct table *t, void (*on_item)(void *item))
{
    for (size_t i = 0; i < TABLE_CHUNKS; i++) {
        char *chunk = t->chunks[i];
        for (size_t j = 0; chunk != NULL && on_item != NULL && j < TABLE_CHUNK; j++)
            on_item(chunk + j * t->item_size);
        free(chunk);
    }
    free(t);
}

struct gd_metrics {
    const char *const *outcome_names;
    size_t noutcomes;
    struct endpoint_metrics unmatched; /* requests no endpoint matched */
    struct table *endpoints;           /* of struct endpoint_metrics, by endpoint slot */
    struct table *calls;               /* of struct call_metrics, by call slot */
    struct table *upstream_calls;      /* of struct upstream_call_metrics, by upstream slot */
    int status_outcome; /* the outcome whose failures were counted with a status; -1: none yet */
    struct histogram loop_lag;
    uint64_t accept_backoffs;
    uint64_t write_timeouts;
    uint64_t unsent_refusals[2]; /* [is_process] */
    uint64_t http2_resets, http2_reset_goaways;
    uint64_t slow_loop_turns;
    gd_metrics_gauges_t gauges;
    struct table *upstreams; /* of gd_metrics_upstream_gauges_t, by upstream slot */
};

/* The owner is the only writer: a relaxed load and store make the increment visible to a
 * scraping thread without a locked instruction. */
static void bump(uint64_t *p, uint64_t by)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}

static uint64_t peek(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void observe(struct histogram *h, uint64_t us)
{
    size_t i = 0;
    while (i < NBUCKETS && us > bucket_bounds_us[i])
        i++;
    bump(&h->buckets[i], 1);
    bump(&h->count, 1);
    bump(&h->sum_us, us);
}

gd_metrics_t *gd_metrics_new(const gd_config_t *config, const char *const *outcome_names,
                             size_t noutcomes)
{
    gd_metrics_t *m = gd_xcalloc(1, sizeof(*m));

    GD_REQUIRE(noutcomes <= GD_METRICS_MAX_OUTCOMES);
    m->outcome_names = outcome_names;
    m->noutcomes = noutcomes;
    m->endpoints = table_new(sizeof(struct endpoint_metrics));
    m->calls = table_new(sizeof(struct call_metrics));
    m->upstream_calls = table_new(sizeof(struct upstream_call_metrics));
    m->upstreams = table_new(sizeof(gd_metrics_upstream_gauges_t));
    m->status_outcome = -1;
    m->gauges.is_pg_ready = 1;
    m->gauges.has_pg_been_ready = 1;
    gd_metrics_prepare(m, config);
    return m;
}

void gd_metrics_prepare(gd_metrics_t *m, const gd_config_t *config)
{
    for (size_t i = 0; i < config->nendpoints; i++) {
        const gd_endpoint_conf_t *ep = &config->endpoints[i];
        (void)table_item(m->endpoints, ep->metrics_slot); /* allocates; the item is not needed */
        for (size_t j = 0; j < ep->ncalls; j++)
            (void)table_item(m->calls, ep->calls[j].metrics_slot);
    }
    for (size_t i = 0; i < config->nupstreams; i++) {
        (void)table_item(m->upstreams, config->upstreams[i].metrics_slot);
        (void)table_item(m->upstream_calls, config->upstreams[i].metrics_slot);
    }
}

static void free_call_item(void *item)
{
    free(((struct call_metrics *)item)->by_status);
}

static void free_upstream_call_item(void *item)
{
    free(((struct upstream_call_metrics *)item)->by_status);
}

gd_metrics_t *gd_metrics_free(gd_metrics_t *m)
{
    if (m == NULL)
        return NULL;
    table_free(m->endpoints, NULL);
    table_free(m->calls, free_call_item);
    table_free(m->upstream_calls, free_upstream_call_item);
    table_free(m->upstreams, NULL);
    free(m);
    return NULL;
}

/* The endpoint of @config at @i (nendpoints: the unmatched requests) on thread @m, or NULL when
 * that thread has not counted it yet. */
static const struct endpoint_metrics *endpoint_of(const gd_metrics_t *m, const gd_config_t *config,
                                                  size_t i)
{
    if (i == config->nendpoints)
        return &m->unmatched;
    return table_peek(m->endpoints, config->endpoints[i].metrics_slot);
}

static const struct call_metrics *call_of(const gd_metrics_t *m, const gd_call_conf_t *cc)
{
    return table_peek(m->calls, cc->metrics_slot);
}

void gd_metrics_count_rate_limited(gd_metrics_t *m, const gd_endpoint_conf_t *endpoint)
{
    struct endpoint_metrics *em = table_item(m->endpoints, endpoint->metrics_slot);
    bump(&em->rate_limited, 1);
}

void gd_metrics_count_request(gd_metrics_t *m, const gd_endpoint_conf_t *endpoint, int status,
                              uint64_t duration_us)
{
    struct endpoint_metrics *em =
        endpoint != NULL ? table_item(m->endpoints, endpoint->metrics_slot) : &m->unmatched;

    if (status >= MIN_STATUS && status <= MAX_STATUS)
        bump(&em->by_status[status - MIN_STATUS], 1);
    observe(&em->duration, duration_us);
}

void gd_metrics_count_call(gd_metrics_t *m, const gd_endpoint_conf_t *endpoint, size_t call_index,
                           unsigned outcome, int status, uint64_t duration_us)
{
    const gd_call_conf_t *cc = &endpoint->calls[call_index];
    struct call_metrics *cm = table_item(m->calls, cc->metrics_slot);
    struct upstream_call_metrics *um =
        cc->type == GD_CALL_TYPE_HTTP ? table_item(m->upstream_calls, cc->upstream->metrics_slot)
                                      : NULL;

    observe(&cm->duration, duration_us);
    GD_REQUIRE(outcome < m->noutcomes);
    bump(&cm->by_outcome[outcome], 1);
    if (um != NULL)
        bump(&um->by_outcome[outcome], 1);
    if (outcome == 0 || status < MIN_STATUS || status > MAX_STATUS)
        return;
    if (m->status_outcome < 0)
        __atomic_store_n(&m->status_outcome, (int)outcome, __ATOMIC_RELAXED);
    GD_REQUIRE(m->status_outcome == (int)outcome); /* one kind carries statuses */
    if (cm->by_status == NULL)
        __atomic_store_n(&cm->by_status, gd_xcalloc(NSTATUS, sizeof(uint64_t)), __ATOMIC_RELEASE);
    bump(&cm->by_status[status - MIN_STATUS], 1);
    if (um == NULL)
        return;
    if (um->by_status == NULL)
        __atomic_store_n(&um->by_status, gd_xcalloc(NSTATUS, sizeof(uint64_t)), __ATOMIC_RELEASE);
    bump(&um->by_status[status - MIN_STATUS], 1);
}

void gd_metrics_count_cache_use(gd_metrics_t *m, const gd_endpoint_conf_t *endpoint,
                                size_t call_index, gd_metrics_cache_use_t use)
{
    GD_REQUIRE(use < 3);
    struct call_metrics *cm = table_item(m->calls, endpoint->calls[call_index].metrics_slot);
    bump(&cm->by_cache_use[use], 1);
}

void gd_metrics_count_http2_reset(gd_metrics_t *m, bool is_goaway)
{
    bump(is_goaway ? &m->http2_reset_goaways : &m->http2_resets, 1);
}

void gd_metrics_count_accept_backoff(gd_metrics_t *m)
{
    bump(&m->accept_backoffs, 1);
}

void gd_metrics_count_write_timeout(gd_metrics_t *m)
{
    bump(&m->write_timeouts, 1);
}

void gd_metrics_count_unsent_refusal(gd_metrics_t *m, bool is_process)
{
    bump(&m->unsent_refusals[is_process], 1);
}

void gd_metrics_count_slow_loop_turn(gd_metrics_t *m)
{
    bump(&m->slow_loop_turns, 1);
}

void gd_metrics_count_loop_lag(gd_metrics_t *m, uint64_t lag_us)
{
    observe(&m->loop_lag, lag_us);
}

/* Gauges are copied word by word with relaxed atomics: a reader may see a mix of two
 * publications, never a torn word. */
static void copy_words(uint64_t *dst, const uint64_t *src, size_t nwords)
{
    for (size_t i = 0; i < nwords; i++)
        __atomic_store_n(&dst[i], __atomic_load_n(&src[i], __ATOMIC_RELAXED), __ATOMIC_RELAXED);
}

void gd_metrics_publish(gd_metrics_t *m, const gd_metrics_gauges_t *gauges)
{
    _Static_assert(sizeof(gd_metrics_gauges_t) % sizeof(uint64_t) == 0, "gauges are words");
    copy_words((uint64_t *)&m->gauges, (const uint64_t *)gauges,
               sizeof(*gauges) / sizeof(uint64_t));
}

void gd_metrics_read_gauges(const gd_metrics_t *m, gd_metrics_gauges_t *ret)
{
    copy_words((uint64_t *)ret, (const uint64_t *)&m->gauges, sizeof(*ret) / sizeof(uint64_t));
}

void gd_metrics_publish_upstream(gd_metrics_t *m, size_t slot,
                                 const gd_metrics_upstream_gauges_t *g)
{
    copy_words(table_item(m->upstreams, slot), (const uint64_t *)g, sizeof(*g) / sizeof(uint64_t));
}

/* The gauges of the upstream in @slot summed over @n threads (any thread). */
static gd_metrics_upstream_gauges_t sum_upstream(const gd_metrics_t *const *threads, size_t n,
                                                 size_t slot)
{
    gd_metrics_upstream_gauges_t sum = {0}, g;
    for (size_t t = 0; t < n; t++) {
        const uint64_t *mine = table_peek(threads[t]->upstreams, slot);
        if (mine == NULL)
            continue;
        copy_words((uint64_t *)&g, mine, sizeof(g) / sizeof(uint64_t));
        sum.idle += g.idle;
        sum.busy += g.busy;
        sum.waiting += g.waiting;
        sum.lookups += g.lookups;
        sum.lookup_failures += g.lookup_failures;
    }
    return sum;
}

/* The rendering buffer. */
struct out {
    char *buf;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void outf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < o->cap - o->len)
            break;
        o->cap = o->cap * 2 + (n > 0 ? (size_t)n : 0);
        o->buf = gd_xrealloc(o->buf, o->cap);
    }
    o->len += (size_t)n;
}

/* A label value escaped as the exposition format asks: backslash, quote and newline. */
static const char *label(const char *s, char *buf, size_t cap)
{
    size_t j = 0;
    for (; *s != '\0' && j + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            buf[j++] = '\\';
            buf[j++] = *s;
        } else if (*s == '\n') {
            buf[j++] = '\\';
            buf[j++] = 'n';
        } else {
            buf[j++] = *s;
        }
    }
    buf[j] = '\0';
    return buf;
}

static void header(struct out *o, const char *name, const char *type, const char *help)
{
    outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void add_histogram(struct histogram *sum, const struct histogram *h)
{
    for (size_t i = 0; i <= NBUCKETS; i++)
        sum->buckets[i] += peek(&h->buckets[i]);
    sum->count += peek(&h->count);
    sum->sum_us += peek(&h->sum_us);
}

static void render_histogram(struct out *o, const char *name, const char *labels,
                             const struct histogram *h)
{
    uint64_t cumulative = 0;
    const char *sep = labels[0] != '\0' ? "," : "";

    for (size_t i = 0; i < NBUCKETS; i++) {
        cumulative += h->buckets[i];
        outf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, bucket_labels[i],
             (unsigned long long)cumulative);
    }
    cumulative += h->buckets[NBUCKETS];
    outf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cumulative);
    if (labels[0] != '\0') {
        outf(o, "%s_sum{%s} %.6f\n", name, labels, (double)h->sum_us / 1e6);
        outf(o, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
    } else {
        outf(o, "%s_sum %.6f\n", name, (double)h->sum_us / 1e6);
        outf(o, "%s_count %llu\n", name, (unsigned long long)h->count);
    }
}

static void render_requests(struct out *o, const gd_metrics_t *const *threads, size_t n,
                            const gd_config_t *config)
{
    char e[512], labels[1024];

    header(o, "gatherd_requests_total", "counter",
           "Requests answered, by endpoint (path template), method and status.");
    for (size_t i = 0; i <= config->nendpoints; i++) {
        const char *path = i < config->nendpoints ? config->endpoints[i].path : "(unmatched)";
        const char *method = i < config->nendpoints ? config->endpoints[i].method : "";
        label(path, e, sizeof(e));
        for (int s = MIN_STATUS; s <= MAX_STATUS; s++) {
            uint64_t count = 0;
            for (size_t t = 0; t < n; t++) {
                const struct endpoint_metrics *em = endpoint_of(threads[t], config, i);
                count += em == NULL ? 0 : peek(&em->by_status[s - MIN_STATUS]);
            }
            if (count != 0)
                outf(o, "gatherd_requests_total{endpoint=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                     e, method, s, (unsigned long long)count);
        }
    }
    header(o, "gatherd_rate_limited_total", "counter",
           "Requests answered 429 by their client_rate_limit, by endpoint.");
    for (size_t i = 0; i < config->nendpoints; i++) {
        uint64_t count = 0;
        if (config->endpoints[i].rate_limit == NULL)
            continue;
        for (size_t t = 0; t < n; t++) {
            const struct endpoint_metrics *em = endpoint_of(threads[t], config, i);
            count += em == NULL ? 0 : peek(&em->rate_limited);
        }
        label(config->endpoints[i].path, e, sizeof(e));
        outf(o, "gatherd_rate_limited_total{endpoint=\"%s\",method=\"%s\"} %llu\n", e,
             config->endpoints[i].method, (unsigned long long)count);
    }
    header(o, "gatherd_rate_limit_keys", "gauge",
           "Clients (keys) with a bucket in a client_rate_limit's table, at most its max_keys; "
           "endpoint=\"(top level)\" for the top level's, shared by the endpoints without one.");
    if (config->rate_limit != NULL)
        outf(o, "gatherd_rate_limit_keys{endpoint=\"(top level)\"} %zu\n",
             gd_ratelimit_size(config->rate_limit->limiter));
    for (size_t i = 0; i < config->nendpoints; i++) {
        if (config->endpoints[i].own_rate_limit == NULL)
            continue;
        label(config->endpoints[i].path, e, sizeof(e));
        outf(o, "gatherd_rate_limit_keys{endpoint=\"%s\",method=\"%s\"} %zu\n", e,
             config->endpoints[i].method,
             gd_ratelimit_size(config->endpoints[i].own_rate_limit->limiter));
    }
    header(o, "gatherd_request_duration_seconds", "histogram",
           "Time from a request's arrival to its answer, by endpoint.");
    for (size_t i = 0; i <= config->nendpoints; i++) {
        struct histogram sum = {{0}};
        for (size_t t = 0; t < n; t++) {
            const struct endpoint_metrics *em = endpoint_of(threads[t], config, i);
            if (em != NULL)
                add_histogram(&sum, &em->duration);
        }
        if (sum.count == 0 && i == config->nendpoints)
            continue;
        snprintf(labels, sizeof(labels), "endpoint=\"%s\",method=\"%s\"",
                 label(i < config->nendpoints ? config->endpoints[i].path : "(unmatched)", e,
                       sizeof(e)),
                 i < config->nendpoints ? config->endpoints[i].method : "");
        render_histogram(o, "gatherd_request_duration_seconds", labels, &sum);
    }
}

static void render_calls(struct out *o, const gd_metrics_t *const *threads, size_t n,
                         const gd_config_t *config)
{
    char e[512], c[256], labels[1024];

    header(o, "gatherd_call_duration_seconds", "histogram",
           "Duration of each call of an endpoint, successful or not.");
    for (size_t i = 0; i < config->nendpoints; i++) {
        const gd_endpoint_conf_t *ep = &config->endpoints[i];
        for (size_t j = 0; j < ep->ncalls; j++) {
            struct histogram sum = {{0}};
            for (size_t t = 0; t < n; t++) {
                const struct call_metrics *cm = call_of(threads[t], &ep->calls[j]);
                if (cm != NULL)
                    add_histogram(&sum, &cm->duration);
            }
            snprintf(labels, sizeof(labels), "endpoint=\"%s\",call=\"%s\"",
                     label(ep->path, e, sizeof(e)), label(ep->calls[j].name, c, sizeof(c)));
            render_histogram(o, "gatherd_call_duration_seconds", labels, &sum);
        }
    }
    header(o, "gatherd_call_failures_total", "counter",
           "Calls that failed, by endpoint, call and kind (as in the answer's errors), and for "
           "kind status by the upstream's status.");
    for (size_t i = 0; i < config->nendpoints; i++) {
        const gd_endpoint_conf_t *ep = &config->endpoints[i];
        for (size_t j = 0; j < ep->ncalls; j++) {
            for (size_t k = 1; n > 0 && k < threads[0]->noutcomes; k++) {
                uint64_t count = 0;
                bool is_split = false;
                for (size_t t = 0; t < n; t++) {
                    const struct call_metrics *cm = call_of(threads[t], &ep->calls[j]);
                    count += cm == NULL ? 0 : peek(&cm->by_outcome[k]);
                    is_split |=
                        __atomic_load_n(&threads[t]->status_outcome, __ATOMIC_RELAXED) == (int)k;
                }
                if (count == 0)
                    continue;
                label(ep->path, e, sizeof(e));
                label(ep->calls[j].name, c, sizeof(c));
                if (!is_split) {
                    outf(o,
                         "gatherd_call_failures_total{endpoint=\"%s\",call=\"%s\",kind=\"%s\"} "
                         "%llu\n",
                         e, c, threads[0]->outcome_names[k], (unsigned long long)count);
                    continue;
                }
                /* The kind that carries an upstream status (every failure of it has one) is
                 * split by it: at most the 500 values 100..599, and only those seen. */
                for (int st = MIN_STATUS; st <= MAX_STATUS; st++) {
                    uint64_t by = 0;
                    for (size_t t = 0; t < n; t++) {
                        const struct call_metrics *cm = call_of(threads[t], &ep->calls[j]);
                        const uint64_t *bs =
                            cm == NULL ? NULL : __atomic_load_n(&cm->by_status, __ATOMIC_ACQUIRE);
                        if (bs != NULL)
                            by += peek(&bs[st - MIN_STATUS]);
                    }
                    if (by != 0)
                        outf(o,
                             "gatherd_call_failures_total{endpoint=\"%s\",call=\"%s\","
                             "kind=\"%s\",status=\"%d\"} %llu\n",
                             e, c, threads[0]->outcome_names[k], st, (unsigned long long)by);
                }
            }
        }
    }
    static const char *const uses[] = {"hit", "miss", "coalesced"};
    header(o, "gatherd_call_cache_total", "counter",
           "Calls with a cache, by how they got their result: hit (the cache), miss (they made "
           "the exchange), coalesced (they waited for an identical call in flight).");
    for (size_t i = 0; i < config->nendpoints; i++) {
        const gd_endpoint_conf_t *ep = &config->endpoints[i];
        for (size_t j = 0; j < ep->ncalls; j++) {
            if (ep->calls[j].cache.ttl_ms == 0)
                continue;
            label(ep->path, e, sizeof(e));
            label(ep->calls[j].name, c, sizeof(c));
            for (size_t k = 0; k < 3; k++) {
                uint64_t count = 0;
                for (size_t t = 0; t < n; t++) {
                    const struct call_metrics *cm = call_of(threads[t], &ep->calls[j]);
                    count += cm == NULL ? 0 : peek(&cm->by_cache_use[k]);
                }
                outf(o, "gatherd_call_cache_total{endpoint=\"%s\",call=\"%s\",result=\"%s\"} %llu\n",
                     e, c, uses[k], (unsigned long long)count);
            }
        }
    }
}

/* The Redis of "redis": connections, commands by result, local decisions, round trips. */
static void render_redis(struct out *o, const gd_redis_stats_t *st)
{
    uint64_t ready = atomic_load(&st->ready), cumulative = 0;

    header(o, "gatherd_redis_up", "gauge",
           "1 when a connection to Redis is ready (on any worker thread), else 0: cluster "
           "limits are then enforced locally at local_share and shared cache lookups skipped.");
    outf(o, "gatherd_redis_up %d\n", ready > 0 ? 1 : 0);
    header(o, "gatherd_redis_connections", "gauge",
           "Connections to Redis ready now, of redis.pool_size per worker thread.");
    outf(o, "gatherd_redis_connections{state=\"ready\"} %llu\n", (unsigned long long)ready);
    outf(o, "gatherd_redis_connections{state=\"configured\"} %llu\n",
         (unsigned long long)atomic_load(&st->expected));
    header(o, "gatherd_redis_connects_total", "counter",
           "Attempts to connect to Redis (the first ones and every reconnect after a backoff).");
    outf(o, "gatherd_redis_connects_total %llu\n",
         (unsigned long long)atomic_load(&st->reconnects));
    header(o, "gatherd_redis_commands_total", "counter",
           "Redis commands by result: ok (answered), error (an error reply, or the connection "
           "lost), timeout (no answer within redis.timeout_ms or the call's deadline), down "
           "(not sent: no connection ready).");
    for (int i = 0; i < GD_REDIS_RESULT_COUNT; i++)
        outf(o, "gatherd_redis_commands_total{result=\"%s\"} %llu\n", gd_redis_result_names[i],
             (unsigned long long)atomic_load(&st->results[i]));
    header(o, "gatherd_redis_fallbacks_total", "counter",
           "Cluster-scoped rate-limit decisions made locally (at local_share) because Redis was "
           "down or did not answer in time.");
    outf(o, "gatherd_redis_fallbacks_total %llu\n",
         (unsigned long long)atomic_load(&st->fallbacks));
    header(o, "gatherd_redis_cache_total", "counter",
           "The shared response cache in Redis: lookups by result (hit, miss, skipped: Redis "
           "down or slow), entries stored, results too large to store (cache_max_entry_bytes).");
    const _Atomic uint64_t *cache[5] = {&st->cache_hits, &st->cache_misses, &st->cache_skipped,
                                        &st->cache_stored, &st->cache_too_large};
    const char *const cache_names[5] = {"hit", "miss", "skipped", "stored", "too_large"};
    for (size_t i = 0; i < 5; i++)
        outf(o, "gatherd_redis_cache_total{result=\"%s\"} %llu\n", cache_names[i],
             (unsigned long long)atomic_load(cache[i]));
    header(o, "gatherd_redis_command_duration_seconds", "histogram",
           "Round trips of the Redis commands answered.");
    for (size_t i = 0; i < GD_REDIS_NBUCKETS; i++) {
        cumulative += atomic_load(&st->buckets[i]);
        outf(o, "gatherd_redis_command_duration_seconds_bucket{le=\"%g\"} %llu\n",
             (double)gd_redis_bounds_us[i] / 1e6, (unsigned long long)cumulative);
    }
    cumulative += atomic_load(&st->buckets[GD_REDIS_NBUCKETS]);
    outf(o, "gatherd_redis_command_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
         (unsigned long long)cumulative);
    outf(o, "gatherd_redis_command_duration_seconds_sum %.6f\n",
         (double)atomic_load(&st->sum_us) / 1e6);
    outf(o, "gatherd_redis_command_duration_seconds_count %llu\n",
         (unsigned long long)atomic_load(&st->count));
}

/* The process's response cache: what it holds and what left it. */
static void render_cache(struct out *o, gd_ttlcache_t *store)
{
    gd_ttlcache_stats_t st;

    gd_ttlcache_stats(store, &st);
    header(o, "gatherd_cache_bytes", "gauge",
           "Bytes the response cache holds (documents, keys and bookkeeping), at most "
           "cache_max_bytes.");
    outf(o, "gatherd_cache_bytes %llu\n", (unsigned long long)st.bytes);
    header(o, "gatherd_cache_entries", "gauge", "Results the response cache holds.");
    outf(o, "gatherd_cache_entries %llu\n", (unsigned long long)st.entries);
    header(o, "gatherd_cache_stored_total", "counter", "Results stored in the response cache.");
    outf(o, "gatherd_cache_stored_total %llu\n", (unsigned long long)st.stored);
    header(o, "gatherd_cache_evictions_total", "counter",
           "Results dropped from the response cache before their lifetime ended, to keep it "
           "within cache_max_bytes.");
    outf(o, "gatherd_cache_evictions_total %llu\n", (unsigned long long)st.evictions);
}

/* Each upstream's calls by outcome (and, for kind status, by the upstream's status), counted
 * by upstream name apart from the endpoints' call counters, so that a reload that removes an
 * endpoint takes nothing from them (one relaxed increment more per call). */
static void render_upstream_calls(struct out *o, const gd_metrics_t *const *threads, size_t n,
                                  const gd_config_t *config)
{
    char u[256];

    if (n == 0)
        return;
    header(o, "gatherd_upstream_calls_total", "counter",
           "Calls to each upstream by outcome (ok, or the kind of failure as in the answer's "
           "errors), and for kind status by the upstream's status.");
    for (size_t up = 0; up < config->nupstreams; up++) {
        size_t slot = config->upstreams[up].metrics_slot;
        label(config->upstreams[up].name, u, sizeof(u));
        for (size_t k = 0; k < threads[0]->noutcomes; k++) {
            uint64_t count = 0;
            bool is_split = false;
            for (size_t t = 0; t < n; t++)
                is_split |= __atomic_load_n(&threads[t]->status_outcome, __ATOMIC_RELAXED) == (int)k;
            uint64_t *by_status = is_split ? gd_xcalloc(NSTATUS, sizeof(uint64_t)) : NULL;
            for (size_t t = 0; t < n; t++) {
                const struct upstream_call_metrics *um =
                    table_peek(threads[t]->upstream_calls, slot);
                if (um == NULL)
                    continue;
                count += peek(&um->by_outcome[k]);
                const uint64_t *bs = __atomic_load_n(&um->by_status, __ATOMIC_ACQUIRE);
                for (size_t st = 0; by_status != NULL && bs != NULL && st < NSTATUS; st++)
                    by_status[st] += peek(&bs[st]);
            }
            if (by_status != NULL) {
                for (size_t st = 0; st < NSTATUS; st++)
                    if (by_status[st] != 0)
                        outf(o,
                             "gatherd_upstream_calls_total{upstream=\"%s\",outcome=\"%s\","
                             "status=\"%d\"} %llu\n",
                             u, threads[0]->outcome_names[k], (int)st + MIN_STATUS,
                             (unsigned long long)by_status[st]);
                free(by_status);
            } else if (count != 0 || k == 0) {
                outf(o, "gatherd_upstream_calls_total{upstream=\"%s\",outcome=\"%s\"} %llu\n", u,
                     threads[0]->outcome_names[k], (unsigned long long)count);
            }
        }
    }
}

/* The upstreams' gauges, each summed over the threads once, so that the three families show
 * one reading. */
/* The breakers' states and transitions, the rate limits and max_in_flight: process-wide
 * atomics kept beside the state they describe, read here from any thread. */
static void render_outbound_limits(struct out *o, const gd_config_t *config)
{
    static const char *const states[] = {"closed", "open", "half_open"};
    uint64_t now_ms = uv_hrtime() / 1000000; /* the loops' clock (uv_now()), not cached */
    char u[256], labels[512];

    header(o, "gatherd_upstream_breaker_state", "gauge",
           "1 for the state each upstream's circuit breaker is in (closed, open, half_open), 0 "
           "for the others; upstreams with a breaker only.");
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_breaker_t *b = config->upstreams[i].breaker;
        if (b == NULL)
            continue;
        int st = gd_breaker_state(b, now_ms);
        label(config->upstreams[i].name, u, sizeof(u));
        for (int k = 0; k < 3; k++)
            outf(o, "gatherd_upstream_breaker_state{upstream=\"%s\",state=\"%s\"} %d\n", u,
                 states[k], st == k);
    }
    header(o, "gatherd_upstream_breaker_transitions_total", "counter",
           "Transitions of each upstream's circuit breaker, by the state entered (half_open: a "
           "probe let through); upstreams with a breaker only.");
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_breaker_t *b = config->upstreams[i].breaker;
        if (b == NULL)
            continue;
        label(config->upstreams[i].name, u, sizeof(u));
        uint64_t to[3] = {atomic_load(&b->closed), atomic_load(&b->opened),
                          atomic_load(&b->half_opened)};
        for (int k = 0; k < 3; k++)
            outf(o, "gatherd_upstream_breaker_transitions_total{upstream=\"%s\",to=\"%s\"} %llu\n",
                 u, states[k], (unsigned long long)to[k]);
    }
    header(o, "gatherd_upstream_rate_limit_waits_total", "counter",
           "Attempts that waited for a token of their upstream's rate_limit.");
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_pacer_t *p = config->upstreams[i].rate_limit;
        outf(o, "gatherd_upstream_rate_limit_waits_total{upstream=\"%s\"} %llu\n",
             label(config->upstreams[i].name, u, sizeof(u)),
             (unsigned long long)(p == NULL ? 0 : atomic_load(&p->waited)));
    }
    header(o, "gatherd_upstream_rate_limit_refused_total", "counter",
           "Attempts refused at once because no token of their upstream's rate_limit could come "
           "before their deadline (the call fails with kind rate_limited, a retry is not made).");
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_pacer_t *p = config->upstreams[i].rate_limit;
        outf(o, "gatherd_upstream_rate_limit_refused_total{upstream=\"%s\"} %llu\n",
             label(config->upstreams[i].name, u, sizeof(u)),
             (unsigned long long)(p == NULL ? 0 : atomic_load(&p->refused)));
    }
    header(o, "gatherd_upstream_in_flight_calls", "gauge",
           "Calls under way to each upstream with a max_in_flight, for the whole process.");
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_budget_t *b = config->upstreams[i].in_flight;
        if (b != NULL)
            outf(o, "gatherd_upstream_in_flight_calls{upstream=\"%s\"} %zu\n",
                 label(config->upstreams[i].name, u, sizeof(u)), gd_budget_used(b));
    }
    header(o, "gatherd_upstream_in_flight_refused_total", "counter",
           "Calls that waited for a place under their upstream's max_in_flight until their "
           "deadline (kind in_flight_timeout).");
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_waits_t *w = config->upstreams[i].waits;
        outf(o, "gatherd_upstream_in_flight_refused_total{upstream=\"%s\"} %llu\n",
             label(config->upstreams[i].name, u, sizeof(u)),
             (unsigned long long)(w == NULL ? 0 : atomic_load(&w->in_flight_refused)));
    }
    header(o, "gatherd_upstream_wait_seconds", "histogram",
           "Time calls waited before going to each upstream, by resource: a rate_limit token, a "
           "place under max_in_flight, a connection (max_connections); calls that waited only.");
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_waits_t *w = config->upstreams[i].waits;
        if (w == NULL)
            continue;
        label(config->upstreams[i].name, u, sizeof(u));
        for (int k = 0; k < GD_WAIT_COUNT; k++) {
            struct histogram h = {{0}};
            for (size_t j = 0; j <= NBUCKETS; j++)
                h.buckets[j] = atomic_load_explicit(&w->by_kind[k].buckets[j],
                                                    memory_order_relaxed);
            h.count = atomic_load_explicit(&w->by_kind[k].count, memory_order_relaxed);
            h.sum_us = atomic_load_explicit(&w->by_kind[k].sum_us, memory_order_relaxed);
            snprintf(labels, sizeof(labels), "upstream=\"%s\",resource=\"%s\"", u,
                     gd_wait_kind_names[k]);
            render_histogram(o, "gatherd_upstream_wait_seconds", labels, &h);
        }
    }
}

static void render_upstream_gauges(struct out *o, const gd_metrics_t *const *threads, size_t n,
                                   const gd_config_t *config)
{
    gd_metrics_upstream_gauges_t *sums = gd_xcalloc(config->nupstreams + 1, sizeof(*sums));
    char u[256];

    for (size_t i = 0; i < config->nupstreams; i++)
        sums[i] = sum_upstream(threads, n, config->upstreams[i].metrics_slot);
    header(o, "gatherd_upstream_connections", "gauge",
           "Connections to each upstream, by state (idle in the keep-alive pool, or busy).");
    for (size_t i = 0; i < config->nupstreams; i++) {
        label(config->upstreams[i].name, u, sizeof(u));
        outf(o, "gatherd_upstream_connections{upstream=\"%s\",state=\"idle\"} %llu\n", u,
             (unsigned long long)sums[i].idle);
        outf(o, "gatherd_upstream_connections{upstream=\"%s\",state=\"busy\"} %llu\n", u,
             (unsigned long long)sums[i].busy);
    }
    header(o, "gatherd_upstream_waiting_calls", "gauge",
           "Calls waiting for a connection to each upstream (max_connections reached).");
    for (size_t i = 0; i < config->nupstreams; i++)
        outf(o, "gatherd_upstream_waiting_calls{upstream=\"%s\"} %llu\n",
             label(config->upstreams[i].name, u, sizeof(u)), (unsigned long long)sums[i].waiting);
    header(o, "gatherd_upstream_dns_lookups_total", "counter",
           "DNS lookups of each upstream's host name (0 for an address), by result.");
    for (size_t i = 0; i < config->nupstreams; i++) {
        label(config->upstreams[i].name, u, sizeof(u));
        outf(o, "gatherd_upstream_dns_lookups_total{upstream=\"%s\",result=\"ok\"} %llu\n", u,
             (unsigned long long)(sums[i].lookups - sums[i].lookup_failures));
        outf(o, "gatherd_upstream_dns_lookups_total{upstream=\"%s\",result=\"failed\"} %llu\n", u,
             (unsigned long long)sums[i].lookup_failures);
    }
    free(sums);
    /* Process-wide counters of the retry budget (atomics, read here from any thread). */
    static const struct {
        const char *name, *help;
        size_t offset;
    } retry_counters[] = {
        {"gatherd_upstream_attempts_total",
         "Attempts of HTTP calls to each upstream, first tries, retries and hedges (not the "
         "resends of a stale keep-alive connection).",
         offsetof(gd_retry_budget_t, attempts)},
        {"gatherd_upstream_retries_total", "Retries granted (their backoff started) per upstream.",
         offsetof(gd_retry_budget_t, retries)},
        {"gatherd_upstream_retries_refused_total",
         "Failures the retry policy would have retried, and hedges, that the upstream's retry "
         "budget refused.",
         offsetof(gd_retry_budget_t, refused)},
        {"gatherd_upstream_hedges_total",
         "Hedges started per upstream: second attempts beside one with no answer after "
         "hedge_after_ms.",
         offsetof(gd_retry_budget_t, hedges)},
        {"gatherd_upstream_hedges_won_total",
         "Hedges whose answer the call took (a success or an upstream status) per upstream.",
         offsetof(gd_retry_budget_t, hedges_won)},
    };
    for (size_t k = 0; k < GD_ARRAY_SIZE(retry_counters); k++) {
        header(o, retry_counters[k].name, "counter", retry_counters[k].help);
        for (size_t i = 0; i < config->nupstreams; i++) {
            gd_retry_budget_t *b = config->upstreams[i].retry_budget;
            uint64_t v = b == NULL ? 0
                                   : atomic_load_explicit(
                                         (_Atomic uint64_t *)((char *)b + retry_counters[k].offset),
                                         memory_order_relaxed);
            outf(o, "%s{upstream=\"%s\"} %llu\n", retry_counters[k].name,
                 label(config->upstreams[i].name, u, sizeof(u)), (unsigned long long)v);
        }
    }
    header(o, "gatherd_upstream_breaker_opened_total", "counter",
           "Times each upstream's circuit breaker opened (0 without a breaker).");
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_breaker_t *b = config->upstreams[i].breaker;
        outf(o, "gatherd_upstream_breaker_opened_total{upstream=\"%s\"} %llu\n",
             label(config->upstreams[i].name, u, sizeof(u)),
             (unsigned long long)(b == NULL ? 0 : atomic_load(&b->opened)));
    }
    render_outbound_limits(o, config);
}

static void render_gauges(struct out *o, const gd_metrics_t *const *threads, size_t n,
                          const gd_config_t *config)
{
    gd_metrics_gauges_t sum = {0}, g;
    uint64_t pg_ready_workers = 0;

    for (size_t t = 0; t < n; t++) {
        gd_metrics_read_gauges(threads[t], &g);
        sum.requests_in_flight += g.requests_in_flight;
        sum.requests_queued += g.requests_queued;
        sum.coroutines += g.coroutines;
        sum.connections += g.connections;
        sum.max_connections += g.max_connections;
        sum.unread_connections += g.unread_connections;
        pg_ready_workers += g.is_pg_ready != 0;
        sum.pg_idle += g.pg_idle;
        sum.pg_busy += g.pg_busy;
        sum.pg_connecting += g.pg_connecting;
        sum.pg_broken += g.pg_broken;
        sum.pg_waiting += g.pg_waiting;
        sum.pg_reconnects += g.pg_reconnects;
        sum.pg_cancels += g.pg_cancels;
        sum.pg_cancels_dropped += g.pg_cancels_dropped;
        sum.pg_batches += g.pg_batches;
        sum.pg_batched_queries += g.pg_batched_queries;
        sum.pg_resent_queries += g.pg_resent_queries;
        sum.unsent_bytes += g.unsent_bytes;
    }
    header(o, "gatherd_requests_in_flight", "gauge", "Requests being gathered now.");
    outf(o, "gatherd_requests_in_flight %llu\n", (unsigned long long)sum.requests_in_flight);
    header(o, "gatherd_requests_queued", "gauge",
           "Requests waiting for a slot: max_requests_in_flight are being gathered.");
    outf(o, "gatherd_requests_queued %llu\n", (unsigned long long)sum.requests_queued);
    header(o, "gatherd_coroutines", "gauge", "Request coroutines alive now.");
    outf(o, "gatherd_coroutines %llu\n", (unsigned long long)sum.coroutines);
    header(o, "gatherd_client_connections", "gauge", "Client connections open now.");
    outf(o, "gatherd_client_connections %llu\n", (unsigned long long)sum.connections);
    header(o, "gatherd_client_connections_max", "gauge",
           "max_client_connections: at it, new clients wait in the listen backlog.");
    outf(o, "gatherd_client_connections_max %llu\n", (unsigned long long)sum.max_connections);
    header(o, "gatherd_client_connections_unread", "gauge",
           "HTTP/1 client connections not read now: their requests wait in the kernel while "
           "the requests read ahead of the free slots are at the read bound.");
    outf(o, "gatherd_client_connections_unread %llu\n", (unsigned long long)sum.unread_connections);
    header(o, "gatherd_unsent_answer_bytes", "gauge",
           "Answer bytes handed to the HTTP layer and not yet taken by their clients "
           "(bounded by max_unsent_bytes).");
    outf(o, "gatherd_unsent_answer_bytes %llu\n", (unsigned long long)sum.unsent_bytes);

    render_upstream_gauges(o, threads, n, config);

    if (config->nstatements > 0) {
        header(o, "gatherd_postgres_up", "gauge",
               "1 when every worker's Postgres pool has a live connection (with pool_size "
               "below threads: when the process has one), else 0.");
        outf(o, "gatherd_postgres_up %d\n", pg_ready_workers == n ? 1 : 0);
        header(o, "gatherd_postgres_connections", "gauge", "Postgres connections by state.");
        outf(o, "gatherd_postgres_connections{state=\"idle\"} %llu\n",
             (unsigned long long)sum.pg_idle);
        outf(o, "gatherd_postgres_connections{state=\"busy\"} %llu\n",
             (unsigned long long)sum.pg_busy);
        outf(o, "gatherd_postgres_connections{state=\"connecting\"} %llu\n",
             (unsigned long long)sum.pg_connecting);
        outf(o, "gatherd_postgres_connections{state=\"broken\"} %llu\n",
             (unsigned long long)sum.pg_broken);
        header(o, "gatherd_postgres_waiting_queries", "gauge",
               "Queries waiting for a free Postgres connection.");
        outf(o, "gatherd_postgres_waiting_queries %llu\n", (unsigned long long)sum.pg_waiting);
        header(o, "gatherd_postgres_reconnects_total", "counter",
               "Postgres connections re-made after a failure.");
        outf(o, "gatherd_postgres_reconnects_total %llu\n", (unsigned long long)sum.pg_reconnects);
        header(o, "gatherd_postgres_cancels_total", "counter",
               "Queries cancelled on the server after their timeout.");
        outf(o, "gatherd_postgres_cancels_total %llu\n", (unsigned long long)sum.pg_cancels);
        header(o, "gatherd_postgres_cancels_dropped_total", "counter",
               "Cancels not sent (too many waiting, or one did not start in time); their "
               "connections were re-made instead.");
        outf(o, "gatherd_postgres_cancels_dropped_total %llu\n",
             (unsigned long long)sum.pg_cancels_dropped);
        header(o, "gatherd_postgres_batches_total", "counter",
               "Batches of queries sent to Postgres, one write and one Sync each "
               "(postgres.pipeline_depth).");
        outf(o, "gatherd_postgres_batches_total %llu\n", (unsigned long long)sum.pg_batches);
        header(o, "gatherd_postgres_batched_queries_total", "counter",
               "Queries sent in those batches, re-sent ones included; divided by the batches: "
               "queries per batch.");
        outf(o, "gatherd_postgres_batched_queries_total %llu\n",
             (unsigned long long)sum.pg_batched_queries);
        header(o, "gatherd_postgres_resent_queries_total", "counter",
               "Queries sent again because another query of their batch failed or was "
               "cancelled (not retries: they had not run).");
        outf(o, "gatherd_postgres_resent_queries_total %llu\n",
             (unsigned long long)sum.pg_resent_queries);
        /* Process-wide counters of the SQL calls' retry budget (atomics). */
        gd_retry_budget_t *rb = config->postgres.retry_budget;
        header(o, "gatherd_postgres_attempts_total", "counter",
               "Attempts of SQL calls, first tries and retries.");
        outf(o, "gatherd_postgres_attempts_total %llu\n",
             (unsigned long long)(rb == NULL ? 0 : atomic_load(&rb->attempts)));
        header(o, "gatherd_postgres_retries_total", "counter",
               "Retries of SQL calls granted (their backoff started): after a serialization "
               "failure, a deadlock, or a connection broken before the query was sent.");
        outf(o, "gatherd_postgres_retries_total %llu\n",
             (unsigned long long)(rb == NULL ? 0 : atomic_load(&rb->retries)));
        header(o, "gatherd_postgres_retries_refused_total", "counter",
               "Failures of SQL calls a retry would have taken but the retry budget refused.");
        outf(o, "gatherd_postgres_retries_refused_total %llu\n",
             (unsigned long long)(rb == NULL ? 0 : atomic_load(&rb->refused)));
    }
}

/* The running config's identity and the reloads. */
static void render_config(struct out *o, const gd_config_t *config,
                          const gd_metrics_reloads_t *reloads)
{
    header(o, "gatherd_config_info", "gauge",
           "The running config: hash is FNV-1a 64 of its canonical JSON (sorted keys, no "
           "spaces), as the reload log lines name it; always 1.");
    outf(o, "gatherd_config_info{hash=\"%s\"} 1\n", config->hash);
    if (reloads == NULL)
        return;
    header(o, "gatherd_config_loaded_timestamp_seconds", "gauge",
           "When the running config was loaded (at the start or by the last reload taken), in "
           "seconds since the epoch.");
    outf(o, "gatherd_config_loaded_timestamp_seconds %.3f\n",
         (double)atomic_load(&reloads->loaded_at_ms) / 1000.0);
    header(o, "gatherd_config_last_reload_successful", "gauge",
           "1 when the last reload (SIGHUP) was taken, or none was asked for; 0 when it failed "
           "or was refused and the config before goes on serving.");
    outf(o, "gatherd_config_last_reload_successful %llu\n",
         (unsigned long long)atomic_load(&reloads->is_last_ok));
    header(o, "gatherd_config_reloads_total", "counter",
           "Config reloads (SIGHUP) by result: ok (taken), error (unreadable or invalid file), "
           "refused (a restart-only setting changed, or earlier configs still finishing).");
    outf(o, "gatherd_config_reloads_total{result=\"ok\"} %llu\n",
         (unsigned long long)atomic_load(&reloads->ok));
    outf(o, "gatherd_config_reloads_total{result=\"error\"} %llu\n",
         (unsigned long long)atomic_load(&reloads->error));
    outf(o, "gatherd_config_reloads_total{result=\"refused\"} %llu\n",
         (unsigned long long)atomic_load(&reloads->refused));
}

char *gd_metrics_render(const gd_metrics_t *const *threads, size_t n, const gd_config_t *config,
                        const gd_metrics_reloads_t *reloads, size_t *ret_len)
{
    struct out o = {gd_xmalloc(16384), 0, 16384};
    struct histogram lag = {{0}};

    header(&o, "gatherd_build_info", "gauge", "Version of this gatherd; always 1.");
    outf(&o, "gatherd_build_info{version=\"%s\"} 1\n", GD_VERSION);
    render_config(&o, config, reloads);
    render_requests(&o, threads, n, config);
    render_calls(&o, threads, n, config);
    render_upstream_calls(&o, threads, n, config);
    render_gauges(&o, threads, n, config);
    if (config->cache_store != NULL)
        render_cache(&o, config->cache_store);
    if (config->redis != NULL)
        render_redis(&o, config->redis->stats);
    for (size_t t = 0; t < n; t++)
        add_histogram(&lag, &threads[t]->loop_lag);
    header(&o, "gatherd_event_loop_lag_seconds", "histogram",
           "How late the event loops' heartbeat timers fired: time a loop spent busy before it "
           "could look at its timers.");
    render_histogram(&o, "gatherd_event_loop_lag_seconds", "", &lag);
    uint64_t backoffs = 0;
    for (size_t t = 0; t < n; t++)
        backoffs += peek(&threads[t]->accept_backoffs);
    header(&o, "gatherd_accept_backoffs_total", "counter",
           "Times a listener stopped accepting for 100 ms because the process or the system ran "
           "out of file descriptors (EMFILE, ENFILE) or memory.");
    outf(&o, "gatherd_accept_backoffs_total %llu\n", (unsigned long long)backoffs);
    uint64_t write_timeouts = 0, refusals[2] = {0, 0};
    for (size_t t = 0; t < n; t++) {
        write_timeouts += peek(&threads[t]->write_timeouts);
        refusals[0] += peek(&threads[t]->unsent_refusals[0]);
        refusals[1] += peek(&threads[t]->unsent_refusals[1]);
    }
    header(&o, "gatherd_write_timeouts_total", "counter",
           "Client connections closed because an answer took no progress for write_timeout_ms.");
    outf(&o, "gatherd_write_timeouts_total %llu\n", (unsigned long long)write_timeouts);
    header(&o, "gatherd_unsent_refusals_total", "counter",
           "Answers refused with 503 because the bytes not yet taken by clients reached "
           "max_unsent_bytes_per_connection (bound=\"connection\") or max_unsent_bytes "
           "(bound=\"process\").");
    outf(&o, "gatherd_unsent_refusals_total{bound=\"connection\"} %llu\n",
         (unsigned long long)refusals[0]);
    outf(&o, "gatherd_unsent_refusals_total{bound=\"process\"} %llu\n",
         (unsigned long long)refusals[1]);
    uint64_t resets = 0, goaways = 0;
    for (size_t t = 0; t < n; t++) {
        resets += peek(&threads[t]->http2_resets);
        goaways += peek(&threads[t]->http2_reset_goaways);
    }
    header(&o, "gatherd_http2_resets_total", "counter",
           "HTTP/2 streams that the client reset while their request was being gathered or "
           "queued.");
    outf(&o, "gatherd_http2_resets_total %llu\n", (unsigned long long)resets);
    header(&o, "gatherd_http2_reset_goaways_total", "counter",
           "HTTP/2 connections sent GOAWAY (ENHANCE_YOUR_CALM) and closed for resetting more "
           "streams than http2_reset_budget allows.");
    outf(&o, "gatherd_http2_reset_goaways_total %llu\n", (unsigned long long)goaways);
    uint64_t slow_turns = 0;
    for (size_t t = 0; t < n; t++)
        slow_turns += peek(&threads[t]->slow_loop_turns);
    header(&o, "gatherd_slow_loop_turns_total", "counter",
           "Event-loop turns that kept their thread busy longer than slow_loop_ms (each is "
           "logged, at most once a second per thread).");
    outf(&o, "gatherd_slow_loop_turns_total %llu\n", (unsigned long long)slow_turns);
    *ret_len = o.len;
    return o.buf;
}
