#include "gather/shape.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "gather/merge.h"

#define MAX_STACK_CALLS 16

void gd_shape_body(const gd_endpoint_conf_t *endpoint, const gd_call_result_t *results,
                   const gd_strv_t *values, bool is_detailed, gd_jbuf_t *out)
{
    const gd_response_t *resp = endpoint->response;
    gd_strv_t small[MAX_STACK_CALLS], *calls = small;
    char *errors = NULL;
    bool is_complete = gd_merge_is_complete(endpoint, results);

    if (endpoint->ncalls > MAX_STACK_CALLS)
        calls = gd_xcalloc(endpoint->ncalls, sizeof(*calls));
    for (size_t i = 0; i < endpoint->ncalls; i++)
        calls[i] = results[i].outcome == GD_OUTCOME_OK
                       ? (gd_strv_t){results[i].body->bytes, results[i].body->len}
                       : (gd_strv_t){NULL, 0};
    gd_eval_env_t env = {calls, endpoint->ncalls, values, {NULL, 0}};
    if (!is_complete) {
        size_t len = gd_merge_errors(endpoint, results, is_detailed, NULL, 0);
        errors = gd_xmalloc(len);
        gd_merge_errors(endpoint, results, is_detailed, errors, len);
        env.errors = (gd_strv_t){errors, len};
    }
    for (size_t i = 0; i < resp->nparts; i++) {
        const gd_response_part_t *part = &resp->parts[i];
        size_t n = part->json_len;
        bool is_last = i + 1 == resp->nparts;
        if (is_last && resp->is_object && !is_complete && !resp->places_errors) {
            /* before the object's closing brace; a comma unless the object is empty */
            n--;
            gd_jbuf_put(out, part->json, n);
            if (out->len > 0 && out->buf[out->len - 1] != '{')
                gd_jbuf_put(out, ",", 1);
            gd_jbuf_put(out, "\"errors\":", 9);
            gd_jbuf_put(out, errors, env.errors.len);
            gd_jbuf_put(out, "}", 1);
            continue;
        }
        gd_jbuf_put(out, part->json, n);
        if (part->has_value)
            gd_eval_text(&part->value, &env, out);
    }
    free(errors);
    if (calls != small)
        free(calls);
}
