/*
 * gd_inspection: one question of the admin thread to every worker thread, for the live view
 * (/debug/requests, /debug/upstreams). The admin thread makes it; the server posts it to each
 * worker (gd_server_inspect()), which writes its part on its own loop, so nothing reads a
 * structure another thread is changing; the admin answers once every part is in, or after its
 * timeout with a note for each worker that did not answer (a stuck loop is what an operator
 * looks for). An inspection is shared by the threads: whoever lets go of it last frees it.
 */
#ifndef GD_INSPECT_H
#define GD_INSPECT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef enum gd_inspect_what {
    GD_INSPECT_REQUESTS,  /* the requests in flight and queued, with their calls */
    GD_INSPECT_UPSTREAMS, /* the pools: upstream connections, the Postgres pool */
} gd_inspect_what_t;

typedef struct gd_inspection gd_inspection_t;

/* Told on a worker's thread that a part arrived: it must only wake the asker's loop. */
typedef void (*gd_inspection_cb)(void *data);

/**
 * Makes an inspection of @nworkers workers, with @max_items the most items a part may list,
 * held once by the caller. @on_part(@data) runs on the worker's thread after each part.
 */
gd_inspection_t *gd_inspection_new(gd_inspect_what_t what, size_t nworkers, size_t max_items,
                                   gd_inspection_cb on_part, void *data);
gd_inspect_what_t gd_inspection_what(const gd_inspection_t *in);
size_t gd_inspection_max_items(const gd_inspection_t *in);
/** Holds @in once more (any thread): for a worker it is posted to. */
gd_inspection_t *gd_inspection_hold(gd_inspection_t *in);
/** Lets go of @in (any thread); the last one frees it. */
void gd_inspection_release(gd_inspection_t *in);
/**
 * A worker's part: takes @part (a jansson value) as worker @index's answer, tells the asker,
 * and lets go of @in. Each worker answers once.
 */
void gd_inspection_answer(gd_inspection_t *in, size_t index, json_t *part);
/**
 * Worker @index's part if it has arrived (borrowed from @in), else NULL. The asker's thread
 * only.
 */
json_t *gd_inspection_part(const gd_inspection_t *in, size_t index);
/** Whether every worker's part has arrived. */
bool gd_inspection_is_complete(const gd_inspection_t *in);

#endif
