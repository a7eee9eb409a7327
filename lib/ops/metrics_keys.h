/*
 * gd_metrics_keys: the names the metrics are kept by across config reloads. An endpoint's
 * series are its method and path, a call's its endpoint's and its own name, an upstream's its
 * name; each name has a slot for the life of the process, so a reload that keeps a name keeps
 * counting in the same counters, and one that brings a removed name back goes on from where
 * it stopped. Owned and used by the thread that loads configs.
 */
#ifndef GD_METRICS_KEYS_H
#define GD_METRICS_KEYS_H

#include "config/config.h"

typedef struct gd_metrics_keys gd_metrics_keys_t;

gd_metrics_keys_t *gd_metrics_keys_new(void);
/** Frees @keys (NULL is a no-op). Returns NULL. */
gd_metrics_keys_t *gd_metrics_keys_free(gd_metrics_keys_t *keys);
/**
 * Writes the metrics_slot of every endpoint, call and upstream of @config (before it is shared
 * with other threads), giving new names the next free slots. Returns 0, or -ENOSPC (slots of
 * @config's new names are then still taken, but @config must not be served) when a kind would
 * pass GD_METRICS_MAX_SLOTS names.
 */
int gd_metrics_keys_assign(gd_metrics_keys_t *keys, gd_config_t *config);

#endif
