/*
 * gd_reshape: a call's own shaping of its result ("select", "fields" or "omit", "rename"),
 * applied once when the result is stored, so that the merged answer, the response template and
 * other calls' references all see the shaped document. It works on the validated bytes
 * (json/json.h) and writes the shaped document once, never building a tree; a call without
 * shaping keeps its document as it arrived, untouched.
 */
#ifndef GD_RESHAPE_H
#define GD_RESHAPE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "gather/eval.h"
#include "sources/call.h"

/**
 * Appends the document @s (@len bytes of validated JSON) shaped by @conf to @out: the value at
 * its "select" path; then, when that is an object or an array, the object or each object of the
 * array with only the "fields" (or without the "omit") keys and with the "rename" keys renamed.
 * A renamed member replaces the members already named as it is renamed to. Returns false (and
 * writes nothing) when "select" finds nothing (gd_eval_select()).
 */
bool gd_reshape_apply(const gd_reshape_conf_t *conf, const char *s, size_t len, gd_jbuf_t *out);
/**
 * Shapes the body of @r, a call's result, by @conf (NULL: nothing happens): an OK result's body
 * is replaced with a new buffer holding the shaped document (the old reference dropped). When
 * "select" finds nothing, the call fails: GD_OUTCOME_SELECT, no body, a message naming the path.
 * Other outcomes stay as they are. A result already shaped (r->is_shaped) is left alone.
 */
void gd_reshape_result(const gd_reshape_conf_t *conf, gd_call_result_t *r);

#endif
