#include "ops/inspect.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "base/util.h"

struct gd_inspection {
    gd_inspect_what_t what;
    size_t nworkers, max_items;
    gd_inspection_cb on_part;
    void *data;
    atomic_size_t holds;
    atomic_size_t answered;
    /* [worker]: written by that worker before it sets is_in[worker] with release order */
    json_t **parts;
    atomic_bool *is_in;
};

gd_inspection_t *gd_inspection_new(gd_inspect_what_t what, size_t nworkers, size_t max_items,
                                   gd_inspection_cb on_part, void *data)
{
    gd_inspection_t *in = gd_xcalloc(1, sizeof(*in));

    in->what = what;
    in->nworkers = nworkers;
    in->max_items = max_items;
    in->on_part = on_part;
    in->data = data;
    atomic_init(&in->holds, 1);
    atomic_init(&in->answered, 0);
    in->parts = gd_xcalloc(nworkers, sizeof(*in->parts));
    in->is_in = gd_xcalloc(nworkers, sizeof(*in->is_in));
    for (size_t i = 0; i < nworkers; i++)
        atomic_init(&in->is_in[i], false);
    return in;
}

gd_inspect_what_t gd_inspection_what(const gd_inspection_t *in)
{
    return in->what;
}

size_t gd_inspection_max_items(const gd_inspection_t *in)
{
    return in->max_items;
}

gd_inspection_t *gd_inspection_hold(gd_inspection_t *in)
{
    atomic_fetch_add_explicit(&in->holds, 1, memory_order_relaxed);
    return in;
}

void gd_inspection_release(gd_inspection_t *in)
{
    if (atomic_fetch_sub_explicit(&in->holds, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < in->nworkers; i++)
        if (in->parts[i] != NULL)
            json_decref(in->parts[i]);
    free(in->parts);
    free(in->is_in);
    free(in);
}

void gd_inspection_answer(gd_inspection_t *in, size_t index, json_t *part)
{
    GD_REQUIRE(index < in->nworkers && in->parts[index] == NULL);
    in->parts[index] = part;
    atomic_store_explicit(&in->is_in[index], true, memory_order_release);
    atomic_fetch_add_explicit(&in->answered, 1, memory_order_release);
    in->on_part(in->data);
    gd_inspection_release(in);
}

json_t *gd_inspection_part(const gd_inspection_t *in, size_t index)
{
    return atomic_load_explicit(&in->is_in[index], memory_order_acquire) ? in->parts[index] : NULL;
}

bool gd_inspection_is_complete(const gd_inspection_t *in)
{
    return atomic_load_explicit(&in->answered, memory_order_acquire) == in->nworkers;
}
