/* Internals of gd_upstream shared by its files (upstream.c, prepare.c) and its tests. */
#ifndef GD_UPSTREAM_IMPL_H
#define GD_UPSTREAM_IMPL_H

#include "sources/http/upstream.h"

/** gd_upstream_call_ops.prepare: renders the call's path and header lines (prepare.c). */
int gd__upstream_call_prepare(gd_call_t *call, const gd_call_conf_t *conf,
                              const gd_call_input_t *in, char *err, size_t errlen);

#endif
