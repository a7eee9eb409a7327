/* libFuzzer driver: template compilation and expansion, and {env.NAME} substitution. The input
 * is a template, a NUL, then the values its variables take (NUL-separated). Expansion never
 * needs more than gd_template_max_len() promised, and sizing with a first call holds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_VARS = 8 };

struct vars {
    char names[MAX_VARS][80];
    size_t n;
};

static int resolve(void *ctx, gd_src_t src, const char *name, char *err, size_t errlen)
{
    struct vars *v = ctx;

    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->names[i], name) == 0)
            return (int)i;
    if (v->n == MAX_VARS || strlen(name) >= sizeof(v->names[0])) {
        snprintf(err, errlen, "too many variables");
        return -1;
    }
    snprintf(v->names[v->n], sizeof(v->names[0]), "%s", name);
    return (int)v->n++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = malloc(size + 1), err[256], *subst = NULL;
    struct vars vars = {.n = 0};
    gd_strv_t values[MAX_VARS];
    gd_template_t t;
    size_t nsubst = 0;

    GD_REQUIRE(src != NULL);
    memcpy(src, data, size);
    src[size] = '\0';
    /* The values follow the template's NUL. */
    const char *p = src + strlen(src) + 1, *end = src + size + 1;
    for (size_t i = 0; i < MAX_VARS; i++) {
        const char *v = p < end ? p : "";
        values[i] = (gd_strv_t){v, strlen(v)};
        p = p < end ? p + strlen(p) + 1 : p;
    }
    if (gd_template_subst_env(src, true, &subst, &nsubst, err, sizeof(err)) == 0)
        free(subst);
    if (gd_template_compile(src, resolve, &vars, &t, err, sizeof(err)) == 0) {
        size_t cap = gd_template_max_len(&t, values);
        char *buf = malloc(cap + 1);
        GD_REQUIRE(buf != NULL);
        size_t n = gd_template_expand(&t, values, buf, cap);
        GD_REQUIRE(n <= cap);
        size_t raw = gd_template_expand_raw(&t, values, NULL, 0);
        char *rbuf = malloc(raw + 1);
        GD_REQUIRE(rbuf != NULL);
        GD_REQUIRE(gd_template_expand_raw(&t, values, rbuf, raw) == raw);
        free(rbuf);
        free(buf);
        gd_template_dispose(&t);
    }
    free(src);
    return 0;
}
