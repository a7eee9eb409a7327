/*
 * gd_depend: what a call that needs others' results is rendered with. Its templates' references
 * to call results (config.h's gd_call_ref_t) are evaluated once those calls have finished, and
 * each value is checked against where it goes: the values array its request is expanded with
 * then holds them after the endpoint's parameters. Also the truth of a "when".
 */
#ifndef GD_DEPEND_H
#define GD_DEPEND_H

#include <stdbool.h>
#include <stddef.h>

#include <h2o/memory.h>

#include "base/arena.h"

#include "config/config.h"
#include "gather/eval.h"

/**
 * Writes a stand-in for every reference of @ep into @values (ep->nparams + ep->nrefs entries;
 * the parameters already there): "null" where JSON goes, "" elsewhere, so that the calls can
 * be rendered once before their inputs have arrived and a client's bad value is a 400 at once.
 */
void gd_depend_stand_in(const gd_endpoint_conf_t *ep, gd_strv_t *values);
/**
 * Renders the references of @call (of @ep) from @env, the results of the calls it needs, into
 * @values (as gd_depend_stand_in()), the texts in @arena. Its {item} references (expr.index
 * ep->ncalls) are rendered only when @env has one more entry than the calls, the item. Returns 0, or -EINVAL with a message
 * in @err that names the reference: a field that is missing, or a value of a type that cannot
 * go where it is used (an object in a URL).
 */
int gd_depend_render(const gd_endpoint_conf_t *ep, const gd_call_conf_t *call,
                     const gd_eval_env_t *env, gd_arena_t *arena, gd_strv_t *values, char *err,
                     size_t errlen);
/**
 * Whether @call may run: it has no "when", or its value in @values (rendered) is present and
 * not false, null, "", 0 or empty (for a parameter's text: not "", "false", "0" or "null").
 */
bool gd_depend_when(const gd_call_conf_t *call, const gd_strv_t *values);

#endif
