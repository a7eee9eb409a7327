/*
 * gd_foreach: the pure parts of a "for_each" call, which runs once per item of a list: the list
 * as JSON (a list parameter's Postgres array literal turned into a JSON array), its items as
 * spans, and the one result the call gives once its items have finished: the array of their
 * documents in item order, a failed item as null. Running the items (bounded by the call's
 * concurrency, topped up as each finishes) is the request's graph loop (gather/request.c).
 */
#ifndef GD_FOREACH_H
#define GD_FOREACH_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "gather/eval.h"
#include "sources/call.h"

/**
 * Appends to @out the JSON array of the items of @lit (@len bytes), the Postgres array literal a
 * list parameter @p holds (config/listparam.h): numbers for an "int_list", strings for a
 * "string_list".
 */
void gd_foreach_list_json(const gd_param_t *p, const char *lit, size_t len, gd_jbuf_t *out);
/**
 * Counts the elements of the JSON value @s (@len bytes, validated) into *@ret_n and writes the
 * first @max of them into @ret (spans inside @s; @ret may be NULL when @max is 0). Returns 0, or
 * -EINVAL when @s is not an array (*@ret_n is then 0).
 */
int gd_foreach_items(const char *s, size_t len, gd_strv_t *ret, size_t max, size_t *ret_n);
/**
 * The result of for_each call @call whose @n items have the settled results @items (null_on
 * and shaping applied; borrowed: kept in *@ret, they must outlive it), into *@ret: outcome OK
 * with a new body (the array, a failed item as null) and @items attached, unless every item
 * failed (and there was at least one), when the call has failed as the first item did, with a
 * message that says so and no body (its items still attached, for the log and the metrics; the
 * answer's errors then have the call's entry only). @elapsed_ms is the call's.
 */
void gd_foreach_result(const gd_call_conf_t *call, const gd_call_result_t *items, size_t n,
                      uint64_t elapsed_ms, gd_call_result_t *ret);

#endif
