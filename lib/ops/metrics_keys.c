#include "ops/metrics_keys.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "ops/metrics.h"

/* An open-addressing table of names (kind byte, then the name's parts) to slots. */
struct entry {
    char *name; /* NULL: free */
    size_t len;
    size_t slot;
};

struct names {
    struct entry *entries;
    size_t cap, count;
};

struct gd_metrics_keys {
    struct names endpoints, calls, upstreams;
};

gd_metrics_keys_t *gd_metrics_keys_new(void)
{
    return gd_xcalloc(1, sizeof(gd_metrics_keys_t));
}

static void names_dispose(struct names *n)
{
    for (size_t i = 0; i < n->cap; i++)
        free(n->entries[i].name);
    free(n->entries);
}

gd_metrics_keys_t *gd_metrics_keys_free(gd_metrics_keys_t *keys)
{
    if (keys == NULL)
        return NULL;
    names_dispose(&keys->endpoints);
    names_dispose(&keys->calls);
    names_dispose(&keys->upstreams);
    free(keys);
    return NULL;
}

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static struct entry *find_entry(struct entry *entries, size_t cap, const char *name, size_t len)
{
    size_t i = hash_bytes(name, len) & (cap - 1);
    while (entries[i].name != NULL &&
           !(entries[i].len == len && memcmp(entries[i].name, name, len) == 0))
        i = (i + 1) & (cap - 1);
    return &entries[i];
}

/* The slot of @name (@len bytes, may hold NULs), a new one when it is new. */
static size_t slot_of(struct names *n, const char *name, size_t len)
{
    if ((n->count + 1) * 2 > n->cap) {
        size_t cap = n->cap == 0 ? 64 : n->cap * 2;
        struct entry *grown = gd_xcalloc(cap, sizeof(*grown));
        for (size_t i = 0; i < n->cap; i++)
            if (n->entries[i].name != NULL)
                *find_entry(grown, cap, n->entries[i].name, n->entries[i].len) = n->entries[i];
        free(n->entries);
        n->entries = grown;
        n->cap = cap;
    }
    struct entry *e = find_entry(n->entries, n->cap, name, len);
    if (e->name == NULL) {
        e->name = gd_xmalloc(len);
        memcpy(e->name, name, len);
        e->len = len;
        e->slot = n->count++;
    }
    return e->slot;
}

/* "a\0b\0c": the parts of a name, so that no two differ only in where a part ends. */
static size_t join(char **buf, size_t *cap, const char *const *parts, size_t nparts)
{
    size_t len = 0;
    for (size_t i = 0; i < nparts; i++) {
        size_t l = strlen(parts[i]) + 1;
        if (len + l > *cap) {
            *cap = (len + l) * 2;
            *buf = gd_xrealloc(*buf, *cap);
        }
        memcpy(*buf + len, parts[i], l);
        len += l;
    }
    return len;
}

int gd_metrics_keys_assign(gd_metrics_keys_t *keys, gd_config_t *config)
{
    char *buf = NULL;
    size_t cap = 0, len;

    for (size_t i = 0; i < config->nupstreams; i++) {
        const char *parts[] = {config->upstreams[i].name};
        len = join(&buf, &cap, parts, 1);
        config->upstreams[i].metrics_slot = slot_of(&keys->upstreams, buf, len);
    }
    for (size_t i = 0; i < config->nendpoints; i++) {
        gd_endpoint_conf_t *ep = &config->endpoints[i];
        const char *parts[] = {ep->method, ep->path, NULL};
        len = join(&buf, &cap, parts, 2);
        ep->metrics_slot = slot_of(&keys->endpoints, buf, len);
        for (size_t j = 0; j < ep->ncalls; j++) {
            parts[2] = ep->calls[j].name;
            len = join(&buf, &cap, parts, 3);
            ep->calls[j].metrics_slot = slot_of(&keys->calls, buf, len);
        }
    }
    free(buf);
    if (keys->endpoints.count > GD_METRICS_MAX_SLOTS || keys->calls.count > GD_METRICS_MAX_SLOTS ||
        keys->upstreams.count > GD_METRICS_MAX_SLOTS)
        return -ENOSPC;
    return 0;
}
