#include "config/template.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/percent.h"
#include "base/util.h"

#define MAX_NAME_LEN 64
#define MAX_REF_LEN  256

const char gd_template_null[1] = "";

bool gd_template_is_null(const gd_template_t *t, const gd_strv_t *values)
{
    return t->nparts == 1 && !t->parts[0].is_literal &&
           values[t->parts[0].value_index].base == gd_template_null;
}

static bool is_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

static bool is_valid_name(const char *s, size_t len)
{
    if (len == 0 || len > MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_name_char((unsigned char)s[i]))
            return false;
    return true;
}

/* A growing literal, flushed into a part when a variable or the end is reached. */
struct builder {
    gd_template_part_t *parts;
    size_t nparts;
    char *lit;
    size_t lit_len;
    size_t lit_cap;
};

static void builder_add_char(struct builder *b, char c)
{
    if (b->lit_len + 1 >= b->lit_cap) {
        b->lit_cap = b->lit_cap == 0 ? 32 : b->lit_cap * 2;
        b->lit = gd_xrealloc(b->lit, b->lit_cap);
    }
    b->lit[b->lit_len++] = c;
}

static gd_template_part_t *builder_new_part(struct builder *b)
{
    b->parts = gd_xrealloc(b->parts, (b->nparts + 1) * sizeof(*b->parts));
    memset(&b->parts[b->nparts], 0, sizeof(b->parts[b->nparts]));
    return &b->parts[b->nparts++];
}

static void builder_flush_literal(struct builder *b)
{
    gd_template_part_t *part;

    if (b->lit_len == 0)
        return;
    part = builder_new_part(b);
    part->is_literal = true;
    part->literal = gd_xstrndup(b->lit, b->lit_len);
    part->literal_len = b->lit_len;
    b->lit_len = 0;
}

static void builder_dispose(struct builder *b)
{
    for (size_t i = 0; i < b->nparts; i++)
        free(b->parts[i].literal);
    free(b->parts);
    free(b->lit);
}

/* Copies @len bytes of @s into @out (@outlen bytes) for an error message: control characters
 * become '?' so that the message stays on one line. */
static void copy_printable(char *out, size_t outlen, const char *s, size_t len)
{
    size_t n = 0;

    if (outlen == 0)
        return;
    for (size_t i = 0; i < len && n + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[n] = '\0';
}

/* Whether @var (@len bytes, no prefix) is a path into a call's result: an identifier, then
 * ".", "[" or "(" (count(...)). */
static bool is_call_ref(const char *var, size_t len)
{
    size_t n = 0;

    if (len == 0 ||
        !((var[0] >= 'A' && var[0] <= 'Z') || (var[0] >= 'a' && var[0] <= 'z') || var[0] == '_'))
        return false;
    while (n < len && is_name_char((unsigned char)var[n]) && var[n] != '.')
        n++;
    if (n == 3 && memcmp(var, "env", 3) == 0)
        return false;
    return n < len && (var[n] == '.' || var[n] == '[' || var[n] == '(');
}

/* Parses the variable @var (@len bytes, the text between the braces) and asks the resolver for
 * its index. Returns the index, or -1 with a message in @err. */
static int resolve_var(const char *var, size_t len, gd_template_resolve_cb resolve, void *ctx,
                       char *err, size_t errlen)
{
    char shown[MAX_NAME_LEN + 16], name[MAX_NAME_LEN + 1];
    gd_src_t src = GD_SRC_PATH;
    const char *key = var;
    size_t key_len = len;

    if (len >= 6 && memcmp(var, "query.", 6) == 0) {
        src = GD_SRC_QUERY;
        key += 6;
        key_len -= 6;
    } else if (len >= 7 && memcmp(var, "header.", 7) == 0) {
        src = GD_SRC_HEADER;
        key += 7;
        key_len -= 7;
    } else if (len >= 4 && memcmp(var, "jwt.", 4) == 0) {
        src = GD_SRC_JWT;
        key += 4;
        key_len -= 4;
    }
    copy_printable(shown, sizeof(shown), var, len);
    if (src == GD_SRC_PATH && is_call_ref(var, len)) {
        /* Not a parameter: a path into a call's result, parsed by the resolver. */
        char ref[MAX_REF_LEN + 1];
        if (len > MAX_REF_LEN) {
            snprintf(err, errlen, "\"{%s...\": a reference has at most %d characters", shown,
                     MAX_REF_LEN);
            return -1;
        }
        copy_printable(ref, sizeof(ref), var, len);
        return resolve(ctx, GD_SRC_CALL, ref, err, errlen);
    }
    if (len >= 4 && memcmp(var, "env.", 4) == 0) {
        snprintf(err, errlen,
                 "\"{%s%s}\": {env.NAME} is allowed only in an upstream's url and headers, a "
                 "call's headers and postgres.conninfo",
                 shown, len >= sizeof(shown) ? "..." : "");
        return -1;
    }
    if (key_len == 0) {
        snprintf(err, errlen, "empty variable name in \"{%s}\"", shown);
        return -1;
    }
    if (!is_valid_name(key, key_len)) {
        snprintf(err, errlen,
                 "bad variable name \"{%s%s}\" (a name is 1 to 64 of A-Z a-z 0-9 - _ .)", shown,
                 len >= sizeof(shown) ? "..." : "");
        return -1;
    }
    for (size_t i = 0; i < key_len; i++) {
        char c = key[i];
        /* Header names are case-insensitive (RFC 9110 section 5.1). */
        name[i] = src == GD_SRC_HEADER && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    name[key_len] = '\0';
    return resolve(ctx, src, name, err, errlen);
}

int gd_template_compile(const char *src, gd_template_resolve_cb resolve, void *ctx,
                        gd_template_t *ret, char *err, size_t errlen)
{
    struct builder b = {0};
    const char *p = src;

    while (*p != '\0') {
        if (*p == '{' && p[1] == '{') {
            builder_add_char(&b, '{');
            p += 2;
        } else if (*p == '}' && p[1] == '}') {
            builder_add_char(&b, '}');
            p += 2;
        } else if (*p == '}') {
            snprintf(err, errlen, "unbalanced \"}\" (write \"}}\" for a literal \"}\")");
            goto fail;
        } else if (*p == '{') {
            const char *end = strchr(p + 1, '}');
            gd_template_part_t *part;
            int index;

            if (end == NULL) {
                snprintf(err, errlen, "unbalanced \"{\" (write \"{{\" for a literal \"{\")");
                goto fail;
            }
            index = resolve_var(p + 1, (size_t)(end - p - 1), resolve, ctx, err, errlen);
            if (index < 0)
                goto fail;
            builder_flush_literal(&b);
            part = builder_new_part(&b);
            part->is_literal = false;
            part->value_index = (size_t)index;
            p = end + 1;
        } else {
            builder_add_char(&b, *p);
            p++;
        }
    }
    builder_flush_literal(&b);
    free(b.lit);
    ret->parts = b.parts;
    ret->nparts = b.nparts;
    return 0;

fail:
    builder_dispose(&b);
    return -EINVAL;
}

#define MAX_ENV_NAME_LEN 128

/* The length of the environment variable name at @s, ended by '}'; 0 when it is not a valid
 * name (or not ended by '}'). */
static size_t env_name_len(const char *s)
{
    size_t n = 0;

    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    while ((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z') ||
           (s[n] >= '0' && s[n] <= '9') || s[n] == '_')
        n++;
    return s[n] == '}' && n <= MAX_ENV_NAME_LEN ? n : 0;
}

int gd_template_subst_env(const char *src, bool is_template, char **ret, size_t *ret_nsubst,
                          char *err, size_t errlen)
{
    struct builder b = {0};
    size_t nsubst = 0;

    for (const char *p = src; *p != '\0';) {
        if (is_template && (p[0] == '{' || p[0] == '}') && p[1] == p[0]) {
            builder_add_char(&b, p[0]);
            builder_add_char(&b, p[1]);
            p += 2;
            continue;
        }
        if (strncmp(p, "{env.", 5) != 0) {
            builder_add_char(&b, *p++);
            continue;
        }
        size_t n = env_name_len(p + 5);
        if (n == 0) {
            char shown[MAX_ENV_NAME_LEN + 8];
            size_t len = strcspn(p + 5, "}");
            copy_printable(shown, sizeof(shown), p + 5, len);
            snprintf(err, errlen,
                     "bad environment variable reference \"{env.%s%s\" (a name is 1 to %d of "
                     "A-Z a-z 0-9 _, not starting with a digit, and \"}\" ends it)",
                     shown,
                     len >= sizeof(shown) ? "..."
                     : p[5 + len] == '}'  ? "}"
                                          : "",
                     MAX_ENV_NAME_LEN);
            free(b.lit);
            return -EINVAL;
        }
        char name[MAX_ENV_NAME_LEN + 1];
        memcpy(name, p + 5, n);
        name[n] = '\0';
        const char *value = getenv(name);
        if (value == NULL) {
            snprintf(err, errlen, "environment variable %s is not set (referenced as {env.%s})",
                     name, name);
            free(b.lit);
            return -EINVAL;
        }
        for (const char *v = value; *v != '\0'; v++) {
            builder_add_char(&b, *v);
            if (is_template && (*v == '{' || *v == '}'))
                builder_add_char(&b, *v); /* literal text of the template */
        }
        nsubst++;
        p += 5 + n + 1;
    }
    *ret = gd_xstrndup(b.lit != NULL ? b.lit : "", b.lit_len);
    *ret_nsubst = nsubst;
    free(b.lit);
    return 0;
}

void gd_template_dispose(gd_template_t *t)
{
    for (size_t i = 0; i < t->nparts; i++)
        free(t->parts[i].literal);
    free(t->parts);
    t->parts = NULL;
    t->nparts = 0;
}

/* Appends @len bytes to @buf when they fit in @cap; @pos counts every byte, written or not. */
static void put(char *buf, size_t cap, size_t *pos, const char *s, size_t len)
{
    if (*pos < cap) {
        size_t room = cap - *pos;
        memcpy(buf + *pos, s, len < room ? len : room);
    }
    *pos += len;
}

size_t gd_template_expand(const gd_template_t *t, const gd_strv_t *values, char *buf, size_t cap)
{
    size_t pos = 0;

    for (size_t i = 0; i < t->nparts; i++) {
        const gd_template_part_t *part = &t->parts[i];
        const gd_strv_t *v;

        if (part->is_literal) {
            put(buf, cap, &pos, part->literal, part->literal_len);
            continue;
        }
        v = &values[part->value_index];
        pos += gd_percent_encode(v->base, v->len, pos < cap ? buf + pos : NULL,
                                 pos < cap ? cap - pos : 0);
    }
    return pos;
}

size_t gd_template_max_len(const gd_template_t *t, const gd_strv_t *values)
{
    size_t len = 0;

    for (size_t i = 0; i < t->nparts; i++) {
        const gd_template_part_t *part = &t->parts[i];
        len += part->is_literal ? part->literal_len : 3 * values[part->value_index].len;
    }
    return len;
}

size_t gd_template_expand_raw(const gd_template_t *t, const gd_strv_t *values, char *buf,
                              size_t cap)
{
    size_t len = 0;

    for (size_t i = 0; i < t->nparts; i++) {
        const gd_template_part_t *p = &t->parts[i];
        const char *s = p->is_literal ? p->literal : values[p->value_index].base;
        size_t n = p->is_literal ? p->literal_len : values[p->value_index].len;
        if (len < cap)
            memcpy(buf + len, s, len + n <= cap ? n : cap - len);
        len += n;
    }
    return len;
}
