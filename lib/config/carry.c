#include "config/carry.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/breaker.h"
#include "base/budget.h"
#include "base/pacer.h"
#include "base/ratelimit.h"
#include "base/retry_budget.h"
#include "base/ttlcache.h"
#include "base/util.h"
#include "base/waits.h"

static bool is_same_listen(const gd_listen_conf_t *a, const gd_listen_conf_t *b)
{
    return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

/* Whether documents @a and @b have equal members @key, or neither has one. */
static bool is_same_member(const json_t *a, const json_t *b, const char *key)
{
    const json_t *x = json_object_get(a, key), *y = json_object_get(b, key);

    return x == y || (x != NULL && y != NULL && json_equal(x, y));
}

size_t gd_config_restart_keys(const gd_config_t *a, const gd_config_t *b, const char **ret_keys)
{
    size_t n = 0;
    bool is_listen_same = a->nlisten == b->nlisten;

    for (size_t i = 0; is_listen_same && i < a->nlisten; i++)
        is_listen_same = is_same_listen(&a->listen[i], &b->listen[i]);
    /* Each is read once, when the server or a worker starts (server.c, admin.c, main.c). */
    const struct {
        const char *key;
        bool is_changed;
    } keys[] = {
        {"listen", !is_listen_same},
        {"admin_listen", a->has_admin != b->has_admin ||
                             (a->has_admin && !is_same_listen(&a->admin_listen, &b->admin_listen))},
        {"threads", a->threads != b->threads},
        {"http2", a->is_http2_enabled != b->is_http2_enabled},
        {"coroutine_stack_kb", a->coroutine_stack_bytes != b->coroutine_stack_bytes},
        {"max_requests_in_flight", a->max_requests_in_flight != b->max_requests_in_flight},
        {"max_client_connections", a->max_client_connections != b->max_client_connections},
        {"max_request_body_bytes", a->max_request_body_bytes != b->max_request_body_bytes},
        {"write_timeout_ms", a->write_timeout_ms != b->write_timeout_ms},
        {"max_unsent_bytes_per_connection",
         a->max_unsent_bytes_per_connection != b->max_unsent_bytes_per_connection},
        {"max_unsent_bytes", a->max_unsent_bytes != b->max_unsent_bytes},
        {"slow_loop_ms", a->slow_loop_ms != b->slow_loop_ms},
        {"shutdown.timeout_ms", a->shutdown_timeout_ms != b->shutdown_timeout_ms},
        {"log", a->log.level != b->log.level || a->log.is_json != b->log.is_json},
        {"redis", !is_same_member(a->document, b->document, "redis")},
    };
    _Static_assert(sizeof(keys) / sizeof(keys[0]) <= GD_CONFIG_MAX_RESTART_KEYS, "room");
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (keys[i].is_changed)
            ret_keys[n++] = keys[i].key;
    return n;
}

const gd_upstream_conf_t *gd_config_find_upstream(const gd_config_t *config, const char *name)
{
    for (size_t i = 0; i < config->nupstreams; i++)
        if (strcmp(config->upstreams[i].name, name) == 0)
            return &config->upstreams[i];
    return NULL;
}

/* upstreams.NAME of @config's document (borrowed), or NULL. */
static json_t *upstream_json(const gd_config_t *config, const gd_upstream_conf_t *u)
{
    return json_object_get(json_object_get(config->document, "upstreams"), u->name);
}

/* Whether @key of two JSON objects is equal (both absent counts as equal). */
static bool is_key_same(json_t *a, json_t *b, const char *key)
{
    json_t *va = json_object_get(a, key), *vb = json_object_get(b, key);
    return (va == NULL && vb == NULL) || (va != NULL && vb != NULL && json_equal(va, vb));
}

bool gd_config_upstream_is_same(const gd_config_t *ca, const gd_upstream_conf_t *a,
                                const gd_config_t *cb, const gd_upstream_conf_t *b)
{
    json_t *ja = upstream_json(ca, a), *jb = upstream_json(cb, b);
    return ja != NULL && jb != NULL && json_equal(ja, jb);
}

bool gd_config_postgres_is_same(const gd_config_t *a, const gd_config_t *b)
{
    if (!is_key_same(a->document, b->document, "postgres") || a->nstatements > b->nstatements)
        return false;
    for (size_t i = 0; i < a->nstatements; i++)
        if (a->statement_nparams[i] != b->statement_nparams[i] ||
            strcmp(a->statements[i], b->statements[i]) != 0)
            return false;
    return true;
}

/* The most statements a config carries that none of its calls runs any more (they come from
 * earlier configs, see carry_statements()); past it the list starts afresh, and so does the
 * Postgres pool. */
#define MAX_UNUSED_STATEMENTS 1024

static uint64_t hash_text(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/*
 * Puts @running's SQL statements first in @next's list, at the positions they have there, then
 * @next's new ones, and renumbers @next's SQL calls: a kept Postgres pool serves both configs,
 * the queries in flight of the one and the new ones of the other, by position, and keeps what
 * its connections have prepared. Statements no call runs any more stay (unprepared on new
 * connections, they cost a string each) up to MAX_UNUSED_STATEMENTS.
 */
static void carry_statements(gd_config_t *next, const gd_config_t *running)
{
    size_t n = running->nstatements, cap = 16;

    if (n == 0 || next->nstatements == 0 ||
        !is_key_same(running->document, next->document, "postgres"))
        return;
    while (cap < 2 * n)
        cap *= 2;
    size_t *table = gd_xmalloc(cap * sizeof(*table)); /* running's positions, SIZE_MAX: free */
    for (size_t i = 0; i < cap; i++)
        table[i] = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t k = hash_text(running->statements[i]) & (cap - 1);
        while (table[k] != SIZE_MAX)
            k = (k + 1) & (cap - 1);
        table[k] = i;
    }
    size_t *map = gd_xmalloc(next->nstatements * sizeof(*map)), total = n;
    for (size_t j = 0; j < next->nstatements; j++) {
        size_t k = hash_text(next->statements[j]) & (cap - 1);
        while (table[k] != SIZE_MAX &&
               strcmp(running->statements[table[k]], next->statements[j]) != 0)
            k = (k + 1) & (cap - 1);
        map[j] = table[k] != SIZE_MAX ? table[k] : total++;
    }
    free(table);
    if (total - next->nstatements > MAX_UNUSED_STATEMENTS) {
        free(map);
        return;
    }
    char **statements = gd_xcalloc(total + 1, sizeof(*statements));
    int *nparams = gd_xcalloc(total + 1, sizeof(*nparams));
    bool *batchable = gd_xcalloc(total + 1, sizeof(*batchable));
    for (size_t i = 0; i < n; i++) {
        statements[i] = gd_xstrdup(running->statements[i]);
        nparams[i] = running->statement_nparams[i];
        batchable[i] = running->statement_is_batchable[i];
    }
    for (size_t j = 0; j < next->nstatements; j++) {
        if (map[j] >= n) {
            statements[map[j]] = next->statements[j]; /* taken */
            nparams[map[j]] = next->statement_nparams[j];
            batchable[map[j]] = next->statement_is_batchable[j];
        } else {
            free(next->statements[j]);
        }
    }
    for (size_t i = 0; i < next->nendpoints; i++)
        for (size_t j = 0; j < next->endpoints[i].ncalls; j++)
            if (next->endpoints[i].calls[j].type == GD_CALL_TYPE_SQL)
                next->endpoints[i].calls[j].statement = map[next->endpoints[i].calls[j].statement];
    free(map);
    free(next->statements);
    free(next->statement_nparams);
    free(next->statement_is_batchable);
    next->statements = statements;
    next->statement_nparams = nparams;
    next->statement_is_batchable = batchable;
    next->nstatements = total;
}

/* @next's upstream @b takes @running's @a's objects whose settings are unchanged. */
static void carry_upstream(gd_config_t *next, gd_upstream_conf_t *b, gd_config_t *running,
                           gd_upstream_conf_t *a)
{
    json_t *ja = upstream_json(running, a), *jb = upstream_json(next, b);

    /* The retry budget and the waits hold counts, no settings: they go on by name. */
    free(b->retry_budget);
    b->retry_budget = a->retry_budget;
    free(b->waits);
    b->waits = a->waits;
    a->_lent |= GD_CONFIG_LENT_RETRY_BUDGET | GD_CONFIG_LENT_WAITS;
    if (a->breaker != NULL && b->breaker != NULL) {
        if (is_key_same(ja, jb, "breaker")) {
            free(b->breaker);
            b->breaker = a->breaker;
            a->_lent |= GD_CONFIG_LENT_BREAKER;
        } else { /* a fresh breaker, whose transition counters go on */
            atomic_store(&b->breaker->opened, atomic_load(&a->breaker->opened));
            atomic_store(&b->breaker->closed, atomic_load(&a->breaker->closed));
            atomic_store(&b->breaker->half_opened, atomic_load(&a->breaker->half_opened));
        }
    }
    if (a->rate_limit != NULL && b->rate_limit != NULL) {
        if (is_key_same(ja, jb, "rate_limit")) {
            free(b->rate_limit);
            b->rate_limit = a->rate_limit;
            a->_lent |= GD_CONFIG_LENT_RATE_LIMIT;
        } else {
            atomic_store(&b->rate_limit->waited, atomic_load(&a->rate_limit->waited));
            atomic_store(&b->rate_limit->refused, atomic_load(&a->rate_limit->refused));
        }
    }
    if (a->in_flight != NULL && b->in_flight != NULL && a->max_in_flight == b->max_in_flight) {
        gd_budget_free(b->in_flight);
        b->in_flight = a->in_flight;
        a->_lent |= GD_CONFIG_LENT_IN_FLIGHT;
    }
}

/* A client_rate_limit of @next takes the buckets of @running's when both are set alike. */
static void carry_rate_limit(gd_rate_limit_conf_t *b, json_t *jb, gd_rate_limit_conf_t *a,
                             json_t *ja)
{
    if (a == NULL || b == NULL || a->_is_lent || !is_key_same(ja, jb, "client_rate_limit"))
        return;
    gd_ratelimit_free(b->limiter);
    b->limiter = a->limiter;
    a->_is_lent = true;
}

static gd_endpoint_conf_t *find_endpoint(gd_config_t *config, const gd_endpoint_conf_t *like)
{
    for (size_t i = 0; i < config->nendpoints; i++)
        if (strcmp(config->endpoints[i].path, like->path) == 0 &&
            strcmp(config->endpoints[i].method, like->method) == 0)
            return &config->endpoints[i];
    return NULL;
}

void gd_config_carry(gd_config_t *next, gd_config_t *running)
{
    carry_statements(next, running);
    for (size_t i = 0; i < next->nupstreams; i++) {
        gd_upstream_conf_t *a =
            (gd_upstream_conf_t *)gd_config_find_upstream(running, next->upstreams[i].name);
        if (a != NULL)
            carry_upstream(next, &next->upstreams[i], running, a);
    }
    if (running->postgres.retry_budget != NULL && next->postgres.retry_budget != NULL) {
        free(next->postgres.retry_budget);
        next->postgres.retry_budget = running->postgres.retry_budget;
        running->postgres._is_retry_budget_lent = true;
    }
    carry_rate_limit(next->rate_limit, next->document, running->rate_limit, running->document);
    json_t *eps_a = json_object_get(running->document, "endpoints");
    json_t *eps_b = json_object_get(next->document, "endpoints");
    for (size_t i = 0; i < next->nendpoints; i++) {
        gd_endpoint_conf_t *b = &next->endpoints[i], *a = find_endpoint(running, b);
        if (a != NULL)
            carry_rate_limit(b->own_rate_limit, json_array_get(eps_b, b->index), a->own_rate_limit,
                             json_array_get(eps_a, a->index));
    }
    if (running->cache_store != NULL && next->cache_store != NULL &&
        running->cache_max_bytes == next->cache_max_bytes &&
        running->cache_max_ttl_ms == next->cache_max_ttl_ms) {
        gd_ttlcache_free(next->cache_store);
        next->cache_store = running->cache_store;
        running->_is_cache_store_lent = true;
    }
    /* Equal (a restart-only key): the workers' Redis connections borrow the running config's
     * object and count into its stats, so the next config takes that one and gives its own,
     * the same settings, to the running config to free. */
    if (running->redis != NULL && next->redis != NULL) {
        gd_redis_conf_t *own = next->redis;
        next->redis = running->redis;
        running->redis = own;
    }
}
