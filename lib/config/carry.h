/*
 * gd_config carry: what a config reload (SIGHUP) compares between the running config and the
 * next one. Settings read only at the start (listeners, threads, the workers' fixed sizes) make
 * a reload refused; an upstream or the Postgres section whose settings are unchanged keeps its
 * pool; the mutable state of resilience policies whose settings are unchanged (breakers, rate
 * limits, max_in_flight budgets, client rate limits, the response cache) is taken over by the
 * next config, and the counters behind the metrics always are, by name. Used by the thread that
 * loads configs, never on an event loop.
 */
#ifndef GD_CONFIG_CARRY_H
#define GD_CONFIG_CARRY_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* The most restart-only keys gd_config_restart_keys() names. */
#define GD_CONFIG_MAX_RESTART_KEYS 16

/**
 * Names the settings read only at the start whose values differ between @running and @next
 * ("listen", "threads", "shutdown.timeout_ms", ...): up to GD_CONFIG_MAX_RESTART_KEYS static
 * strings in @ret_keys. Returns how many; 0 when @next may replace @running live.
 */
size_t gd_config_restart_keys(const gd_config_t *running, const gd_config_t *next,
                              const char **ret_keys);
/** The upstream named @name in @config, or NULL. */
const gd_upstream_conf_t *gd_config_find_upstream(const gd_config_t *config, const char *name);
/**
 * Whether upstream @a of config @ca and @b of @cb have the same settings (their JSON objects
 * are equal, defaults not filled in): a pool of @a may serve @b's calls.
 */
bool gd_config_upstream_is_same(const gd_config_t *ca, const gd_upstream_conf_t *a,
                                const gd_config_t *cb, const gd_upstream_conf_t *b);
/**
 * Whether a Postgres pool of @a may serve @b: the "postgres" sections are equal and @b's SQL
 * statements begin with @a's, at the same positions (a pool prepares them by position on its
 * connections; gd_config_carry() orders @b's so).
 */
bool gd_config_postgres_is_same(const gd_config_t *a, const gd_config_t *b);
/**
 * Lets @next take over @running's mutable state where the settings behind it are unchanged:
 * per upstream of the same name its retry budget and wait counters (always: they hold no
 * settings), its breaker ("breaker" equal), rate_limit pacer and max_in_flight budget; the SQL
 * calls' retry budget; each client_rate_limit's buckets (top level, and per endpoint of the
 * same method and path); the response cache (same cache_max_bytes and longest ttl); and, with
 * equal "postgres" sections, the positions of @running's SQL statements (@next's list begins
 * with them, its calls renumbered). @next frees
 * what it replaced of its own and owns what it took; @running borrows it from then on, so
 * @running must be freed before @next. A breaker whose settings changed starts closed, with
 * the old one's count of openings, so that its counter goes on.
 */
void gd_config_carry(gd_config_t *next, gd_config_t *running);

#endif
