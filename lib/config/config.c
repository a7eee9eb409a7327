#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "base/b64url.h"
#include "base/breaker.h"
#include "base/budget.h"
#include "base/pacer.h"
#include "base/redis_stats.h"
#include "base/retry_budget.h"
#include "base/ttlcache.h"
#include "base/util.h"
#include "base/waits.h"
#include "config/callgraph.h"
#include "config/listparam.h"

/* Same value as GD_ROUTE_MAX_CAPTURES: config sits below route and cannot include its header.
 * gd_router_new() checks that they agree. */
#define MAX_CAPTURES 32
#define MAX_NAME_LEN 64
/* No machine this runs on needs more event loops; a bound keeps the value in an unsigned. */
#define MAX_THREADS 1024

#define DEFAULT_THREADS                0
#define DEFAULT_MAX_REQUESTS_IN_FLIGHT 2048
#define DEFAULT_MAX_REQUEST_BODY_BYTES 1048576
/* h2o keeps the body in memory: bounded well below what a size_t + 1 could overflow */
#define MAX_MAX_REQUEST_BODY_BYTES     1073741824
#define DEFAULT_QUEUE_TIMEOUT_MS       3000
#define DEFAULT_HTTP2_RESET_BUDGET     100
#define MAX_HTTP2_RESET_BUDGET         1000000
#define MAX_QUEUE_TIMEOUT_MS           3600000
/* An answer no byte of which the client takes for this long closes its connection. */
#define DEFAULT_WRITE_TIMEOUT_MS       30000
#define MAX_WRITE_TIMEOUT_MS           3600000
/* Answer bytes handed to h2o and not yet taken by their clients (README, Limits). */
#define DEFAULT_MAX_UNSENT_BYTES_PER_CONNECTION (32LL << 20)
#define DEFAULT_MAX_UNSENT_BYTES                (256LL << 20)
#define MAX_UNSENT_BYTES                        (1LL << 40)
#define DEFAULT_COROUTINE_STACK_KB     64
#define DEFAULT_SLOW_LOOP_MS           100
#define DEFAULT_CACHE_MAX_BYTES        (64 * 1024 * 1024)
#define MIN_COROUTINE_STACK_KB         16
#define MAX_COROUTINE_STACK_KB         8192
#define DEFAULT_DRAIN_DELAY_MS         0
#define DEFAULT_SHUTDOWN_TIMEOUT_MS    30000
#define DEFAULT_MAX_CONNECTIONS        256
#define DEFAULT_CONNECT_TIMEOUT_MS     1000
#define DEFAULT_KEEPALIVE_TIMEOUT_MS   2000
#define DEFAULT_DNS_REFRESH_MS         30000
#define DEFAULT_MAX_BODY_BYTES         8388608
#define DEFAULT_ENDPOINT_TIMEOUT_MS    5000
#define DEFAULT_ADMIN_LISTEN           "127.0.0.1:9090"
#define MAX_RETRY_ATTEMPTS             10

#define DEFAULT_PG_POOL_SIZE           8
#define DEFAULT_PG_PIPELINE_DEPTH      8
#define DEFAULT_PG_ACQUIRE_TIMEOUT_MS  200
#define DEFAULT_PG_CONNECT_TIMEOUT_MS  2000
#define DEFAULT_PG_MAX_ROWS            10000
#define DEFAULT_PG_MAX_BODY_BYTES      DEFAULT_MAX_BODY_BYTES
#define MAX_SQL_PARAMS                 100
#define DEFAULT_CORS_MAX_AGE_S         600
#define MAX_CORS_MAX_AGE_S             86400
#define DEFAULT_COMPRESS_MIN_BYTES     1024
#define MAX_COMPRESS_MIN_BYTES         1073741824
#define DEFAULT_COMPRESS_LEVEL         1
#define MAX_CACHE_CONTROL_LEN          256

/* A place in the document, kept on the stack while descending and formatted only on error. */
struct jpath {
    const struct jpath *up;
    const char *key; /* NULL: an array element at index */
    size_t index;
};

/* Strings quoted for an error message, freed with the loader. */
struct quoted {
    struct quoted *next;
    char *text;
};

struct loader {
    const char *source;
    char *err;
    size_t errlen;
    struct quoted *quoted;
    /* The endpoints loaded so far, by route shape (open addressing: index + 1, 0 for empty),
     * so that finding a duplicate route costs one probe, not a pass over every endpoint. */
    size_t *routes;
    size_t routes_cap, nroutes;
    /* While a call's templates compile: where its references to other calls go. */
    struct call_scope *calling;
    uint64_t max_cache_ttl_ms; /* the longest lifetime a call's "cache" gives an entry */
    bool allows_list_param;    /* a SQL argument compiles: a list parameter may go there */
    bool has_used_list_param;  /* ... and one did */
    bool has_refused_list_param; /* resolve_var() refused one where it cannot go */
    const gd_redis_conf_t *redis; /* "redis", loaded before the upstreams; NULL: none */
};

/* The call whose templates compile, and what its references to other calls may name. */
struct call_scope {
    gd_call_conf_t *call;
    const char *const *names; /* every call of the endpoint, config order */
    size_t ncalls;
    gd_ref_use_t use; /* of the template compiling now */
};

/* Resolvers give a reference to a call's result the index REF_INDEX_BASE + its index in the
 * endpoint's refs; once every parameter is known, fix_ref_indexes() moves them past the
 * parameters, where the request puts their rendered values. */
#define REF_INDEX_BASE ((size_t)1 << 24)

/* An error message under construction in the caller's buffer, silently truncated. */
struct sbuf {
    char *buf;
    size_t cap;
    size_t len;
};

__attribute__((format(printf, 2, 0))) static void sbuf_vprintf(struct sbuf *s, const char *fmt,
                                                               va_list ap)
{
    int n;

    if (s->len + 1 >= s->cap)
        return;
    n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
    if (n > 0)
        s->len = s->len + (size_t)n < s->cap ? s->len + (size_t)n : s->cap - 1;
}

__attribute__((format(printf, 2, 3))) static void sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sbuf_vprintf(s, fmt, ap);
    va_end(ap);
}

/* Returns @len bytes of @s as a JSON string literal (quotes included, control characters
 * escaped), so that a message stays on one line whatever the config holds. Borrowed from @l. */
static const char *quote_n(struct loader *l, const char *s, size_t len)
{
    json_t *str = json_stringn(s, len);
    char *text = str != NULL ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
    struct quoted *q;

    json_decref(str);
    if (text == NULL)
        text = gd_xstrdup("\"?\""); /* not UTF-8: cannot happen for text jansson parsed */
    q = gd_xmalloc(sizeof(*q));
    q->text = text;
    q->next = l->quoted;
    l->quoted = q;
    return text;
}

static const char *quote(struct loader *l, const char *s)
{
    return quote_n(l, s, strlen(s));
}

static bool is_identifier(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s != '\0'; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static void put_path(struct sbuf *s, struct loader *l, const struct jpath *p)
{
    if (p == NULL)
        return;
    put_path(s, l, p->up);
    if (p->key == NULL)
        sbuf_printf(s, "[%zu]", p->index);
    else if (is_identifier(p->key))
        sbuf_printf(s, "%s%s", p->up != NULL ? "." : "", p->key);
    else
        sbuf_printf(s, "[%s]", quote(l, p->key));
}

/* Writes "SOURCE: PATH: message" to the caller's buffer. Returns -EINVAL. */
__attribute__((format(printf, 3, 4))) static int fail(struct loader *l, const struct jpath *at,
                                                      const char *fmt, ...)
{
    struct sbuf s = {l->err, l->errlen, 0};
    va_list ap;

    if (l->errlen == 0)
        return -EINVAL;
    l->err[0] = '\0';
    sbuf_printf(&s, "%s: ", l->source);
    if (at != NULL) {
        put_path(&s, l, at);
        sbuf_printf(&s, ": ");
    }
    va_start(ap, fmt);
    sbuf_vprintf(&s, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        break;
    }
    return "null";
}

static int fail_type(struct loader *l, const struct jpath *at, const json_t *v, const char *want)
{
    return fail(l, at, "must be %s, not %s", want, type_name(v));
}

static bool is_in(const char *s, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Checks that @v is an object with no key outside @allowed (NULL-terminated). */
static int check_object(struct loader *l, const struct jpath *at, json_t *v,
                        const char *const *allowed)
{
    if (!json_is_object(v))
        return fail_type(l, at, v, "an object");
    for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
        const char *key = json_object_iter_key(it);

        if (!is_in(key, allowed)) {
            struct jpath kp = {at, key, 0};
            return fail(l, &kp, "unknown key");
        }
    }
    return 0;
}

/* Gets member @key of @obj into *@ret: NULL when absent and optional. */
static int get_member(struct loader *l, const struct jpath *at, json_t *obj, const char *key,
                      bool is_required, json_t **ret)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL && is_required) {
        struct jpath kp = {at, key, 0};
        return fail(l, &kp, "missing required key");
    }
    *ret = v;
    return 0;
}

static int get_int(struct loader *l, const struct jpath *at, json_t *obj, const char *key,
                   long long lo, long long hi, long long def, long long *ret)
{
    struct jpath kp = {at, key, 0};
    json_t *v = json_object_get(obj, key);
    long long x = 0;

    if (v == NULL) {
        *ret = def;
        return 0;
    }
    if (!json_is_integer(v))
        return fail_type(l, &kp, v, "an integer");
    x = json_integer_value(v);
    if (x < lo || x > hi) {
        if (hi == LLONG_MAX)
            return fail(l, &kp, "must be >= %lld, not %lld", lo, x);
        return fail(l, &kp, "must be between %lld and %lld, not %lld", lo, hi, x);
    }
    *ret = x;
    return 0;
}

/* A duration in ms: > 0 unless @allow_zero (a stated default of 0), at most a day. */
static int get_duration(struct loader *l, const struct jpath *at, json_t *obj, const char *key,
                        bool allow_zero, uint64_t def, uint64_t *ret)
{
    long long x = 0;
    int r =
        get_int(l, at, obj, key, allow_zero ? 0 : 1, GD_CONFIG_MAX_DURATION_MS, (long long)def, &x);

    if (r < 0)
        return r;
    *ret = (uint64_t)x;
    return 0;
}

static int get_bool(struct loader *l, const struct jpath *at, json_t *obj, const char *key,
                    bool def, bool *ret)
{
    struct jpath kp = {at, key, 0};
    json_t *v = json_object_get(obj, key);

    if (v == NULL) {
        *ret = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail_type(l, &kp, v, "a boolean");
    *ret = json_is_true(v);
    return 0;
}

/* Gets string member @key: *@ret is borrowed from @obj, or @def when absent and optional. */
static int get_string(struct loader *l, const struct jpath *at, json_t *obj, const char *key,
                      bool is_required, const char *def, const char **ret)
{
    struct jpath kp = {at, key, 0};
    json_t *v = NULL;
    int r = get_member(l, at, obj, key, is_required, &v);

    if (r < 0)
        return r;
    if (v == NULL) {
        *ret = def;
        return 0;
    }
    if (!json_is_string(v))
        return fail_type(l, &kp, v, "a string");
    *ret = json_string_value(v);
    return 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_ieq(const char *a, size_t alen, const char *b)
{
    if (strlen(b) != alen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

/* RFC 9110 section 5.6.2: tchar. */
static bool is_tchar(char c)
{
    return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 3986 section 3.3: pchar without pct-encoded ('%' is checked by the caller). */
static bool is_pchar(char c)
{
    return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

/* Describes byte @c for a message: "x" when printable, else 0xNN. */
static const char *describe_byte(char buf[8], char c)
{
    unsigned char u = (unsigned char)c;

    if (u > 0x20 && u < 0x7f && c != '"' && c != '\\')
        snprintf(buf, 8, "\"%c\"", c);
    else
        snprintf(buf, 8, "0x%02X", u);
    return buf;
}

/* Returns the first byte of [@s, @s + @len) that is neither a pchar nor part of a valid
 * percent-escape (nor '/' when @allow_slash), or NULL. */
static const char *find_bad_path_char(const char *s, size_t len, bool allow_slash)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (len - i < 3 || gd_hex_value(s[i + 1]) < 0 || gd_hex_value(s[i + 2]) < 0)
                return &s[i];
            i += 2;
        } else if (!is_pchar(s[i]) && !(allow_slash && s[i] == '/')) {
            return &s[i];
        }
    }
    return NULL;
}

/* A parameter or variable name: 1..64 of A-Z a-z 0-9 - _ and, when @allow_dot, '.'. */
static bool is_valid_name(const char *s, size_t len, bool allow_dot)
{
    if (len == 0 || len > MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!(is_alpha(s[i]) || is_digit(s[i]) || s[i] == '-' || s[i] == '_' ||
              (allow_dot && s[i] == '.')))
            return false;
    return true;
}

static int parse_port(const char *s, size_t len, uint16_t *ret)
{
    unsigned v = 0;

    if (len < 1 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *ret = (uint16_t)v;
    return 0;
}

/* "IPv4:PORT", "[IPv6]:PORT" or "*:PORT" (every interface: the IPv6 any address, which the
 * server binds dual-stack). */
static int parse_listen(struct loader *l, const struct jpath *at, const char *text,
                        gd_listen_conf_t *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *host_start, *host_end, *port;
    bool is_v6;

    if (text[0] == '[') {
        host_start = text + 1;
        host_end = strchr(text, ']');
        if (host_end == NULL || host_end[1] != ':')
            goto bad_form;
        port = host_end + 2;
        is_v6 = true;
    } else if (text[0] == '*' && text[1] == ':') {
        host_start = host_end = NULL;
        port = text + 2;
        is_v6 = true;
    } else {
        host_start = text;
        host_end = strrchr(text, ':');
        if (host_end == NULL || memchr(text, ':', (size_t)(host_end - text)) != NULL)
            goto bad_form;
        port = host_end + 1;
        is_v6 = false;
    }

    memset(&out->addr, 0, sizeof(out->addr));
    if (is_v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_any;
        if (host_start != NULL) {
            size_t len = (size_t)(host_end - host_start);
            if (len == 0 || len >= sizeof(host))
                goto bad_form;
            memcpy(host, host_start, len);
            host[len] = '\0';
            if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
                goto bad_form;
        }
        if (parse_port(port, strlen(port), &sin6->sin6_port) < 0)
            goto bad_port;
        sin6->sin6_port = htons(sin6->sin6_port);
        out->addrlen = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
        size_t len = (size_t)(host_end - host_start);
        sin->sin_family = AF_INET;
        if (len == 0 || len >= sizeof(host))
            goto bad_form;
        memcpy(host, host_start, len);
        host[len] = '\0';
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            goto bad_form;
        if (parse_port(port, strlen(port), &sin->sin_port) < 0)
            goto bad_port;
        sin->sin_port = htons(sin->sin_port);
        out->addrlen = sizeof(*sin);
    }
    out->text = gd_xstrdup(text);
    return 0;

bad_form:
    return fail(l, at,
                "expected \"IPv4:PORT\", \"[IPv6]:PORT\" or \"*:PORT\" (numeric addresses only), "
                "not %s",
                quote(l, text));
bad_port:
    return fail(l, at, "bad port in %s (expected 1 to 65535)", quote(l, text));
}

static int load_listen(struct loader *l, json_t *root, gd_config_t *cfg)
{
    struct jpath at = {NULL, "listen", 0};
    json_t *v = NULL;
    int r = get_member(l, NULL, root, "listen", true, &v);

    if (r < 0)
        return r;
    if (!json_is_array(v))
        return fail_type(l, &at, v, "an array");
    if (json_array_size(v) == 0)
        return fail(l, &at, "must not be empty");
    cfg->nlisten = json_array_size(v);
    cfg->listen = gd_xcalloc(cfg->nlisten, sizeof(*cfg->listen));
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct jpath ip = {&at, NULL, i};
        json_t *item = json_array_get(v, i);

        if (!json_is_string(item))
            return fail_type(l, &ip, item, "a string");
        if ((r = parse_listen(l, &ip, json_string_value(item), &cfg->listen[i])) < 0)
            return r;
        for (size_t j = 0; j < i; j++) {
            if (cfg->listen[j].addrlen == cfg->listen[i].addrlen &&
                memcmp(&cfg->listen[j].addr, &cfg->listen[i].addr, cfg->listen[i].addrlen) == 0)
                return fail(l, &ip, "same address as listen[%zu]", j);
        }
    }
    return 0;
}

static int load_shutdown(struct loader *l, json_t *root, gd_config_t *cfg)
{
    static const char *const keys[] = {"drain_delay_ms", "timeout_ms", NULL};
    struct jpath at = {NULL, "shutdown", 0};
    json_t *v = json_object_get(root, "shutdown");
    int r;

    cfg->drain_delay_ms = DEFAULT_DRAIN_DELAY_MS;
    cfg->shutdown_timeout_ms = DEFAULT_SHUTDOWN_TIMEOUT_MS;
    if (v == NULL)
        return 0;
    if ((r = check_object(l, &at, v, keys)) < 0 ||
        (r = get_duration(l, &at, v, "drain_delay_ms", true, DEFAULT_DRAIN_DELAY_MS,
                          &cfg->drain_delay_ms)) < 0 ||
        (r = get_duration(l, &at, v, "timeout_ms", false, DEFAULT_SHUTDOWN_TIMEOUT_MS,
                          &cfg->shutdown_timeout_ms)) < 0)
        return r;
    return 0;
}

/* "http[s]://HOST[:PORT][/BASE]" (default port 443 for https): @url with its {env.NAME} references substituted, @shown as
 * written, which is the only one messages quote (an env value may be a secret). */
static int parse_url(struct loader *l, const struct jpath *at, const char *url, const char *shown,
                     bool has_env, gd_upstream_conf_t *u)
{
    const char *sep = strstr(url, "://"), *p, *auth_end, *host_start, *host_end, *bad;
    size_t scheme_len, base_len;
    char host[INET6_ADDRSTRLEN], byte[8];

    /* RFC 3986 section 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), case-insensitive. */
    if (sep == NULL || sep == url || !is_alpha(url[0]))
        goto malformed;
    scheme_len = (size_t)(sep - url);
    for (size_t i = 0; i < scheme_len; i++)
        if (!(is_alpha(url[i]) || is_digit(url[i]) || url[i] == '+' || url[i] == '-' ||
              url[i] == '.'))
            goto malformed;
    u->is_tls = is_ieq(url, scheme_len, "https");
    if (!u->is_tls && !is_ieq(url, scheme_len, "http"))
        return fail(l, at, "unsupported scheme %s", quote_n(l, shown, has_env ? strcspn(shown, ":") : scheme_len));

    p = sep + 3;
    if (strpbrk(p, "?#") != NULL)
        return fail(l, at, "URL %s must not have a query or a fragment", quote(l, shown));
    auth_end = p + strcspn(p, "/");
    if (*p == '[') {
        host_start = p + 1;
        host_end = memchr(p, ']', (size_t)(auth_end - p));
        if (host_end == NULL || (size_t)(host_end - host_start) >= sizeof(host))
            goto malformed;
        memcpy(host, host_start, (size_t)(host_end - host_start));
        host[host_end - host_start] = '\0';
        if (inet_pton(AF_INET6, host, &(struct in6_addr){0}) != 1)
            goto malformed;
        u->is_host_numeric = true;
        p = host_end + 1;
        if (p != auth_end && *p != ':')
            goto malformed;
    } else {
        host_start = p;
        host_end = memchr(p, ':', (size_t)(auth_end - p));
        if (host_end == NULL)
            host_end = auth_end;
        if (host_end == host_start)
            goto malformed;
        for (const char *c = host_start; c < host_end; c++)
            if (!(is_alpha(*c) || is_digit(*c) || *c == '-' || *c == '.' || *c == '_'))
                goto malformed;
        if ((size_t)(host_end - host_start) < sizeof(host)) {
            memcpy(host, host_start, (size_t)(host_end - host_start));
            host[host_end - host_start] = '\0';
            u->is_host_numeric = inet_pton(AF_INET, host, &(struct in_addr){0}) == 1;
        }
        p = host_end;
    }
    u->port = u->is_tls ? 443 : 80;
    if (p != auth_end && parse_port(p + 1, (size_t)(auth_end - p - 1), &u->port) < 0)
        return fail(l, at, "bad port in URL %s (expected 1 to 65535)", quote(l, shown));

    base_len = strlen(auth_end);
    if ((bad = find_bad_path_char(auth_end, base_len, true)) != NULL)
        return fail(l, at, "bad character %s in the path of URL %s (percent-encode it)",
                    has_env ? "(in an {env.NAME} value)" : describe_byte(byte, *bad),
                    quote(l, shown));
    while (base_len > 0 && auth_end[base_len - 1] == '/')
        base_len--;
    u->url = gd_xstrdup(shown);
    u->host = gd_xstrndup(host_start, (size_t)(host_end - host_start));
    u->host_shown = gd_xstrdup(has_env ? shown : u->host);
    u->base_path = gd_xstrndup(auth_end, base_len);
    return 0;

malformed:
    return fail(l, at, "malformed URL %s (expected http[s]://HOST[:PORT][/BASE])",
                quote(l, shown));
}

/* upstreams.NAME.tls: the files are only named here; gd_tls_ctx_new() (sources/http/tls.c)
 * loads and checks them, at `gatherd -t` too. */
static int load_tls(struct loader *l, const struct jpath *at, json_t *v, gd_upstream_conf_t *u)
{
    static const char *const keys[] = {"ca_file",         "server_name", "client_cert_file",
                                       "client_key_file", "min_version", NULL};
    struct jpath min_at = {at, "min_version", 0}, name_at = {at, "server_name", 0};
    const char *s[4] = {NULL}, *min = NULL;
    char **dst[4] = {&u->tls.ca_file, &u->tls.server_name, &u->tls.client_cert_file,
                     &u->tls.client_key_file};
    int r;

    if ((r = check_object(l, at, v, keys)) < 0)
        return r;
    for (size_t i = 0; i < 4; i++) {
        struct jpath kp = {at, keys[i], 0};
        if ((r = get_string(l, at, v, keys[i], false, NULL, &s[i])) < 0)
            return r;
        if (s[i] != NULL && s[i][0] == '\0')
            return fail(l, &kp, "must not be empty");
    }
    if (s[1] != NULL) {
        for (const char *c = s[1]; *c != '\0'; c++)
            if (!(is_alpha(*c) || is_digit(*c) || *c == '-' || *c == '.' || *c == '_' || *c == ':'))
                return fail(l, &name_at, "bad server name %s (a host name or an IP address)",
                            quote(l, s[1]));
    }
    if ((s[2] == NULL) != (s[3] == NULL)) {
        struct jpath kp = {at, s[2] == NULL ? "client_key_file" : "client_cert_file", 0};
        return fail(l, &kp, "needs %s too", s[2] == NULL ? "client_cert_file" : "client_key_file");
    }
    if ((r = get_string(l, at, v, "min_version", false, "1.2", &min)) < 0)
        return r;
    if (strcmp(min, "1.2") == 0)
        u->tls.min_version = 12;
    else if (strcmp(min, "1.3") == 0)
        u->tls.min_version = 13;
    else
        return fail(l, &min_at, "must be \"1.2\" or \"1.3\", not %s", quote(l, min));
    for (size_t i = 0; i < 4; i++)
        if (s[i] != NULL)
            *dst[i] = gd_xstrdup(s[i]);
    return 0;
}

static bool is_reserved_header(const char *name);

/* Substitutes the {env.NAME} references of @src (see gd_template_subst_env()); the error names
 * the variable and the place @at. *@ret is new (free()). */
static int subst_env(struct loader *l, const struct jpath *at, const char *src, bool is_template,
                     char **ret, size_t *ret_nsubst)
{
    char msg[512];

    if (gd_template_subst_env(src, is_template, ret, ret_nsubst, msg, sizeof(msg)) < 0)
        return fail(l, at, "%s", msg);
    return 0;
}

/* RFC 9110 section 5.5: no control characters but HTAB in a field value. Returns the first bad
 * byte of [@s, @s + @len), or NULL. */
static const char *find_bad_value_char(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return &s[i];
    }
    return NULL;
}

static int check_header_name(struct loader *l, const struct jpath *at, const char *name)
{
    if (name[0] == '\0')
        return fail(l, at, "bad header name (a header name is an HTTP token)");
    for (const char *p = name; *p != '\0'; p++)
        if (!is_tchar(*p))
            return fail(l, at, "bad header name (a header name is an HTTP token)");
    if (is_reserved_header(name))
        return fail(l, at, "header %s is set by gatherd itself", quote(l, name));
    return 0;
}

/* gd_template_resolve_cb of an upstream's headers: fixed text, no request values. */
static int resolve_nothing(void *ctx, gd_src_t src, const char *name, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "an upstream's header value is fixed text with {env.NAME} references only (request "
             "values go in a call's \"headers\")");
    return -1;
}

/* An upstream's "headers": fixed values, env references substituted. */
static int load_upstream_headers(struct loader *l, const struct jpath *up_at, json_t *up_json,
                                 gd_upstream_conf_t *u)
{
    struct jpath at = {up_at, "headers", 0};
    json_t *v = json_object_get(up_json, "headers");
    char msg[512];
    int r;

    if (v == NULL)
        return 0;
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object");
    u->headers = gd_xcalloc(json_object_size(v) + 1, sizeof(*u->headers));
    for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
        const char *name = json_object_iter_key(it);
        json_t *member = json_object_iter_value(it);
        struct jpath hp = {&at, name, 0};
        gd_header_t *h = &u->headers[u->nheaders];
        gd_template_t t = {0};
        char *text = NULL;
        size_t nsubst = 0, len = 0;

        if ((r = check_header_name(l, &hp, name)) < 0)
            return r;
        for (size_t i = 0; i < u->nheaders; i++)
            if (strcasecmp(u->headers[i].name, name) == 0)
                return fail(l, &hp, "header %s is given twice (header names are case-insensitive)",
                            quote(l, name));
        if (!json_is_string(member))
            return fail_type(l, &hp, member, "a string");
        if ((r = subst_env(l, &hp, json_string_value(member), true, &text, &nsubst)) < 0)
            return r;
        r = gd_template_compile(text, resolve_nothing, NULL, &t, msg, sizeof(msg));
        free(text);
        if (r < 0)
            return fail(l, &hp, "%s", msg);
        for (size_t i = 0; i < t.nparts; i++)
            len += t.parts[i].literal_len;
        h->name = gd_xstrdup(name);
        h->value = gd_xmalloc(len + 1);
        len = 0;
        for (size_t i = 0; i < t.nparts; i++) {
            memcpy(h->value + len, t.parts[i].literal, t.parts[i].literal_len);
            len += t.parts[i].literal_len;
        }
        h->value[len] = '\0';
        gd_template_dispose(&t);
        u->nheaders++;
        if (find_bad_value_char(h->value, len) != NULL || strlen(h->value) != len)
            return fail(l, &hp, "a control character in the header value%s",
                        nsubst > 0 ? " (after {env.NAME} substitution)" : "");
    }
    return 0;
}

/* What a client header can never be forwarded as: the hop-by-hop and framing headers (RFC 9110
 * section 7.6.1, RFC 9112 section 6.1), and those gatherd sends on every call itself. */
static const char *why_not_forwardable(const char *low)
{
    static const char *const hop[] = {"connection",        "keep-alive", "te",   "trailer",
                                      "transfer-encoding", "upgrade",    "host", "content-length",
                                      "proxy-connection",  NULL};
    static const char *const own[] = {
        "accept",      "accept-encoding", "user-agent", "x-request-id",
        "traceparent", "content-type",    NULL};

    if (is_in(low, hop) || strncmp(low, "proxy-", 6) == 0)
        return "is a hop-by-hop header, which is never forwarded";
    if (is_in(low, own))
        return "is set by gatherd itself";
    return NULL;
}

/* "forward_headers": an allow-list of client header names, stored lower-case. */
static int load_forward_headers(struct loader *l, const struct jpath *obj_at, json_t *obj,
                                bool *ret_present, char ***ret_names, size_t *ret_n)
{
    struct jpath at = {obj_at, "forward_headers", 0};
    json_t *v = json_object_get(obj, "forward_headers");
    char **names;
    size_t n = 0;

    *ret_present = v != NULL;
    if (v == NULL)
        return 0;
    if (!json_is_array(v))
        return fail_type(l, &at, v, "an array of header names");
    names = gd_xcalloc(json_array_size(v) + 1, sizeof(*names));
    *ret_names = names; /* freed with the config, whatever happens below */
    for (size_t i = 0; i < json_array_size(v); i++) {
        struct jpath ip = {&at, NULL, i};
        json_t *item = json_array_get(v, i);
        const char *why;
        char *low;

        if (!json_is_string(item))
            return fail_type(l, &ip, item, "a string");
        const char *name = json_string_value(item);
        if (name[0] == '\0')
            return fail(l, &ip, "bad header name (a header name is an HTTP token)");
        for (const char *p = name; *p != '\0'; p++)
            if (!is_tchar(*p))
                return fail(l, &ip, "bad header name (a header name is an HTTP token)");
        low = gd_xstrdup(name);
        for (char *p = low; *p != '\0'; p++)
            *p = lower(*p);
        names[n++] = low;
        *ret_n = n;
        if ((why = why_not_forwardable(low)) != NULL)
            return fail(l, &ip, "header %s %s", quote(l, name), why);
        for (size_t j = 0; j + 1 < n; j++)
            if (strcmp(names[j], low) == 0)
                return fail(l, &ip, "header %s is listed twice (header names are case-insensitive)",
                            quote(l, name));
    }
    return 0;
}

/* "null_on": upstream statuses that give a null value and count as success. */
static int load_null_on(struct loader *l, const struct jpath *obj_at, json_t *obj,
                        bool *ret_present, int **ret_list, size_t *ret_n)
{
    struct jpath at = {obj_at, "null_on", 0};
    json_t *v = json_object_get(obj, "null_on");
    int *list;

    *ret_present = v != NULL;
    if (v == NULL)
        return 0;
    if (!json_is_array(v))
        return fail_type(l, &at, v, "an array of statuses");
    list = gd_xcalloc(json_array_size(v) + 1, sizeof(*list));
    *ret_list = list;
    for (size_t i = 0; i < json_array_size(v); i++) {
        struct jpath ip = {&at, NULL, i};
        json_t *item = json_array_get(v, i);

        if (!json_is_integer(item))
            return fail_type(l, &ip, item, "an integer");
        json_int_t x = json_integer_value(item);
        /* Only a status outside 2xx fails a call, so only those can be made a null. */
        if (x < 300 || x > 599)
            return fail(l, &ip, "must be an error status between 300 and 599, not %lld",
                        (long long)x);
        for (size_t j = 0; j < *ret_n; j++)
            if (list[j] == (int)x)
                return fail(l, &ip, "status %lld is listed twice", (long long)x);
        list[(*ret_n)++] = (int)x;
    }
    return 0;
}

/* "status_map": {"429": 503, ...}; keys are upstream statuses, values answer statuses. */
static int load_status_map(struct loader *l, const struct jpath *obj_at, json_t *obj,
                           gd_status_map_entry_t **ret_map, size_t *ret_n)
{
    struct jpath at = {obj_at, "status_map", 0};
    json_t *v = json_object_get(obj, "status_map");
    gd_status_map_entry_t *map;
    int r;

    if (v == NULL)
        return 0;
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object");
    map = gd_xcalloc(json_object_size(v) + 1, sizeof(*map));
    *ret_map = map;
    for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
        const char *key = json_object_iter_key(it);
        struct jpath kp = {&at, key, 0};
        long long to = 0;

        if (strlen(key) != 3 || !is_digit(key[0]) || !is_digit(key[1]) || !is_digit(key[2]) ||
            atoi(key) < 100 || atoi(key) > 599)
            return fail(l, &kp, "a key must be an upstream HTTP status, 100 to 599");
        /* The answer's status says why the gateway failed: a client or a server error. */
        if ((r = get_int(l, &at, v, key, 400, 599, 0, &to)) < 0)
            return r;
        map[*ret_n].upstream_status = atoi(key);
        map[*ret_n].answer_status = (int)to;
        (*ret_n)++;
    }
    return 0;
}

/* "host": a Host header value, RFC 9110 section 7.2: uri-host [ ":" port ]. */
static int load_host_header(struct loader *l, const struct jpath *up_at, json_t *up_json,
                            gd_upstream_conf_t *u)
{
    struct jpath at = {up_at, "host", 0};
    const char *host = NULL;
    int r;

    if ((r = get_string(l, up_at, up_json, "host", false, NULL, &host)) < 0 || host == NULL)
        return r;
    if (host[0] == '\0' || strlen(host) > 255)
        return fail(l, &at, "must be 1 to 255 characters");
    for (const char *p = host; *p != '\0'; p++)
        if (!(is_pchar(*p) || *p == '[' || *p == ']' || *p == '%') || *p == '@')
            return fail(l, &at, "%s is not a host[:port]", quote(l, host));
    u->host_header = gd_xstrdup(host);
    return 0;
}

static void failure_set_add_status(gd_failure_set_t *set, int status)
{
    unsigned bit = (unsigned)(status - 400);

    set->statuses[bit / 64] |= UINT64_C(1) << (bit % 64);
}

/* "on" of @obj (a "retry" or a "breaker", at @obj_at) into *@set, which keeps what it holds
 * when there is no "on": ["connect", "io", "timeout", "tls", "5xx", 429, ...]. @what names
 * the policy in messages. */
static int load_failure_set(struct loader *l, const struct jpath *obj_at, json_t *obj,
                            const char *what, gd_failure_set_t *set)
{
    json_t *on = json_object_get(obj, "on");
    struct jpath on_at = {obj_at, "on", 0};

    if (on == NULL)
        return 0;
    if (!json_is_array(on))
        return fail_type(l, &on_at, on, "an array");
    memset(set, 0, sizeof(*set));
    for (size_t i = 0; i < json_array_size(on); i++) {
        json_t *e = json_array_get(on, i);
        struct jpath eat = {&on_at, NULL, i};
        if (json_is_string(e)) {
            const char *k = json_string_value(e);
            if (strcmp(k, "connect") == 0)
                set->connect = true;
            else if (strcmp(k, "io") == 0)
                set->io = true;
            else if (strcmp(k, "timeout") == 0)
                set->timeout = true;
            else if (strcmp(k, "tls") == 0)
                set->tls = true;
            else if (strcmp(k, "5xx") == 0)
                for (int st = 500; st <= 599; st++)
                    failure_set_add_status(set, st);
            else
                return fail(l, &eat,
                            "%s is not a failure for the %s (connect, io, timeout, tls, 5xx or a "
                            "status between 400 and 599)",
                            quote(l, k), what);
            continue;
        }
        if (!json_is_integer(e))
            return fail_type(l, &eat, e, "a string or an integer");
        json_int_t st = json_integer_value(e);
        if (st < 400 || st > 599)
            return fail(l, &eat, "a status for the %s must be between 400 and 599, not %lld", what,
                        (long long)st);
        failure_set_add_status(set, (int)st);
    }
    return 0;
}

/* The retry policy before any "retry": one attempt. Inside a "retry" object each key missing
 * takes the upstream's value (for a call), else the value of the example in the README. */
static const gd_retry_conf_t no_retry = {
    .attempts = 1, .backoff_ms = 25, .max_backoff_ms = 1000, .budget_percent = 20,
    .min_retries_per_s = 3,
    .on = {.connect = true, .io = true, .timeout = true,
           .statuses = {0, UINT64_C(7) << (502 - 400 - 64)}}}; /* 502, 503 and 504 */

/* "retry" of @v into *@out, the keys it lacks from @base; of an upstream when @is_upstream
 * (only there the budget's keys are allowed: the budget is the upstream's). */
static int load_retry(struct loader *l, const struct jpath *at, json_t *v, bool is_upstream,
                      const gd_retry_conf_t *base, gd_retry_conf_t *out)
{
    static const char *const keys[] = {
        "attempts",       "backoff_ms",        "max_backoff_ms", "on", "attempt_timeout_ms",
        "budget_percent", "min_retries_per_s", "hedge_after_ms", NULL};
    struct jpath rat = {at, "retry", 0};
    json_t *r_json = json_object_get(v, "retry");
    long long x = 0;
    int r;

    *out = *base;
    if (r_json == NULL)
        return 0;
    if ((r = check_object(l, &rat, r_json, keys)) < 0)
        return r;
    if (!is_upstream) {
        static const char *const budget_keys[] = {"budget_percent", "min_retries_per_s", NULL};
        for (size_t i = 0; budget_keys[i] != NULL; i++)
            if (json_object_get(r_json, budget_keys[i]) != NULL) {
                struct jpath kp = {&rat, budget_keys[i], 0};
                return fail(l, &kp, "the retry budget is the upstream's: set it in its \"retry\"");
            }
    }
    if ((r = get_int(l, &rat, r_json, "attempts", 1, MAX_RETRY_ATTEMPTS,
                     base->attempts > 1 ? base->attempts : 3, &x)) < 0)
        return r;
    out->attempts = (unsigned)x;
    if ((r = get_duration(l, &rat, r_json, "backoff_ms", true, base->backoff_ms,
                          &out->backoff_ms)) < 0 ||
        (r = get_duration(l, &rat, r_json, "max_backoff_ms", true, base->max_backoff_ms,
                          &out->max_backoff_ms)) < 0 ||
        (r = get_duration(l, &rat, r_json, "attempt_timeout_ms", true, base->attempt_timeout_ms,
                          &out->attempt_timeout_ms)) < 0 ||
        (r = get_duration(l, &rat, r_json, "hedge_after_ms", true, base->hedge_after_ms,
                          &out->hedge_after_ms)) < 0)
        return r;
    if (json_object_get(r_json, "hedge_after_ms") != NULL && out->hedge_after_ms != 0 &&
        out->attempts < 2) {
        struct jpath kp = {&rat, "hedge_after_ms", 0};
        return fail(l, &kp, "a hedge is a second attempt: it needs \"attempts\" of 2 or more");
    }
    if (out->max_backoff_ms < out->backoff_ms) {
        struct jpath kp = {&rat, "max_backoff_ms", 0};
        return fail(l, &kp, "must be >= backoff_ms (%" PRIu64 "), not %" PRIu64, out->backoff_ms,
                    out->max_backoff_ms);
    }
    if ((r = get_int(l, &rat, r_json, "budget_percent", 0, 100, base->budget_percent, &x)) < 0)
        return r;
    out->budget_percent = (unsigned)x;
    if ((r = get_int(l, &rat, r_json, "min_retries_per_s", 0, 1000, base->min_retries_per_s,
                     &x)) < 0)
        return r;
    out->min_retries_per_s = (unsigned)x;
    return load_failure_set(l, &rat, r_json, "retry", &out->on);
}

/* "breaker": {"failures": 5, "open_ms": 5000, "error_rate": 0.5, "min_calls": 20,
 * "window_ms": 10000}, all optional inside it; the last two only with error_rate. */
static int load_breaker(struct loader *l, const struct jpath *at, json_t *v, gd_upstream_conf_t *u)
{
    static const char *const keys[] = {"failures",  "open_ms",   "error_rate",
                                       "min_calls", "window_ms", "on",
                                       NULL};
    struct jpath bat = {at, "breaker", 0};
    json_t *b = json_object_get(v, "breaker");
    long long failures = 0, min_calls = 0, window_ms = 0;
    uint64_t open_ms = 0;
    int r;

    if (b == NULL)
        return 0;
    if ((r = check_object(l, &bat, b, keys)) < 0 ||
        (r = get_int(l, &bat, b, "failures", 1, 1000000, 5, &failures)) < 0 ||
        (r = get_duration(l, &bat, b, "open_ms", false, 5000, &open_ms)) < 0 ||
        (r = get_int(l, &bat, b, "min_calls", 1, 1000000, 20, &min_calls)) < 0 ||
        (r = get_int(l, &bat, b, "window_ms", GD_WINDOW_BUCKETS, GD_CONFIG_MAX_DURATION_MS, 10000,
                     &window_ms)) < 0)
        return r;
    json_t *rate = json_object_get(b, "error_rate");
    struct jpath rat = {&bat, "error_rate", 0};
    if (rate == NULL && (json_object_get(b, "min_calls") || json_object_get(b, "window_ms"))) {
        struct jpath kp = {&bat, json_object_get(b, "min_calls") ? "min_calls" : "window_ms", 0};
        return fail(l, &kp, "only applies with error_rate");
    }
    if (rate != NULL && !json_is_number(rate))
        return fail_type(l, &rat, rate, "a number");
    if (rate != NULL && !(json_number_value(rate) > 0 && json_number_value(rate) <= 1))
        return fail(l, &rat, "must be above 0 and at most 1, not %g", json_number_value(rate));
    u->breaker_on = (gd_failure_set_t){.connect = true, .io = true, .timeout = true, .tls = true};
    for (int st = 500; st <= 599; st++)
        failure_set_add_status(&u->breaker_on, st);
    if ((r = load_failure_set(l, &bat, b, "breaker", &u->breaker_on)) < 0)
        return r;
    u->breaker = gd_xmalloc(sizeof(*u->breaker));
    gd_breaker_init(u->breaker, (unsigned)failures, open_ms);
    if (rate != NULL)
        gd_breaker_set_error_rate(u->breaker, json_number_value(rate), (unsigned)min_calls,
                                  (uint64_t)window_ms);
    return 0;
}

/* "scope" of a rate limit at @at: "process" (the default) or "cluster" (needs "redis"). */
static int load_rate_scope(struct loader *l, const struct jpath *at, json_t *v, bool *ret_cluster)
{
    struct jpath sat = {at, "scope", 0};
    const char *scope = NULL;
    int r = get_string(l, at, v, "scope", false, "process", &scope);

    if (r < 0)
        return r;
    if (strcmp(scope, "process") != 0 && strcmp(scope, "cluster") != 0)
        return fail(l, &sat, "must be \"process\" or \"cluster\", not %s", quote(l, scope));
    *ret_cluster = strcmp(scope, "cluster") == 0;
    if (*ret_cluster && l->redis == NULL)
        return fail(l, &sat, "\"cluster\" needs a top-level \"redis\" to share the limit in");
    return 0;
}

/* The local stand-in of a cluster limit at @share of its rate: the same tokens every @per_ms /
 * @share (rounded; bounded, as a share may be tiny), bursts of @burst × @share, at least 1. */
static void local_share_of(uint64_t per_ms, uint64_t burst, double share, uint64_t *ret_per_ms,
                           uint64_t *ret_burst)
{
    double per = (double)per_ms / share, max = (double)GD_CONFIG_MAX_DURATION_MS * 1000;
    uint64_t b = (uint64_t)((double)burst * share);

    *ret_per_ms = per > max ? (uint64_t)max : (uint64_t)(per + 0.5);
    *ret_burst = b < 1 ? 1 : b;
}

/* "rate_limit": {"calls": 100, "per_ms": 60000, "burst": 1, "scope": "process"}: calls and
 * per_ms required. */
static int load_upstream_rate_limit(struct loader *l, const struct jpath *at, json_t *v,
                                    gd_upstream_conf_t *u)
{
    static const char *const keys[] = {"calls", "per_ms", "burst", "scope", NULL};
    struct jpath rat = {at, "rate_limit", 0};
    json_t *rl = json_object_get(v, "rate_limit");
    long long calls = 0, burst = 0;
    uint64_t per_ms = 0;
    int r;

    if (rl == NULL)
        return 0;
    if ((r = check_object(l, &rat, rl, keys)) < 0 ||
        (r = get_int(l, &rat, rl, "calls", 1, 1000000000, -1, &calls)) < 0 ||
        (r = get_duration(l, &rat, rl, "per_ms", false, 0, &per_ms)) < 0 ||
        (r = get_int(l, &rat, rl, "burst", 1, 1000000, 1, &burst)) < 0)
        return r;
    if (json_object_get(rl, "calls") == NULL || json_object_get(rl, "per_ms") == NULL) {
        struct jpath kp = {&rat, json_object_get(rl, "calls") == NULL ? "calls" : "per_ms", 0};
        return fail(l, &kp, "missing required key");
    }
    if ((r = load_rate_scope(l, &rat, rl, &u->is_rate_cluster)) < 0)
        return r;
    u->rate_limit = gd_xmalloc(sizeof(*u->rate_limit));
    gd_pacer_init(u->rate_limit, (uint64_t)calls, per_ms, (uint64_t)burst);
    if (u->is_rate_cluster) {
        uint64_t local_per_ms, local_burst;
        local_share_of(per_ms, (uint64_t)burst, l->redis->local_share, &local_per_ms, &local_burst);
        u->rate_limit_local = gd_xmalloc(sizeof(*u->rate_limit_local));
        gd_pacer_init(u->rate_limit_local, (uint64_t)calls, local_per_ms, local_burst);
        size_t n = strlen(l->redis->key_prefix) + strlen("rl:upstream:") + strlen(u->name) + 1;
        u->rate_key = gd_xmalloc(n);
        snprintf(u->rate_key, n, "%srl:upstream:%s", l->redis->key_prefix, u->name);
    }
    return 0;
}

static int load_upstream(struct loader *l, const struct jpath *at, json_t *v, gd_upstream_conf_t *u)
{
    static const char *const keys[] = {"url",
                                       "max_connections",
                                       "connect_timeout_ms",
                                       "keepalive_timeout_ms",
                                       "max_body_bytes",
                                       "dns_refresh_ms",
                                       "gzip",
                                       "tls",
                                       "host",
                                       "headers",
                                       "forward_headers",
                                       "null_on",
                                       "status_map",
                                       "retry",
                                       "breaker",
                                       "rate_limit",
                                       "max_in_flight",
                                       NULL};
    struct jpath url_at = {at, "url", 0};
    const char *url;
    char *expanded = NULL;
    size_t nsubst = 0;
    bool is_present = false;
    long long x = 0;
    int r;

    if ((r = check_object(l, at, v, keys)) < 0 ||
        (r = get_string(l, at, v, "url", true, NULL, &url)) < 0 ||
        (r = subst_env(l, &url_at, url, false, &expanded, &nsubst)) < 0)
        return r;
    r = parse_url(l, &url_at, expanded, url, nsubst > 0, u);
    free(expanded);
    if (r < 0)
        return r;
    if ((r = load_host_header(l, at, v, u)) < 0 || (r = load_upstream_headers(l, at, v, u)) < 0 ||
        (r = load_forward_headers(l, at, v, &is_present, &u->forward_headers,
                                  &u->nforward_headers)) < 0 ||
        (r = load_null_on(l, at, v, &is_present, &u->null_on, &u->nnull_on)) < 0 ||
        (r = load_status_map(l, at, v, &u->status_map, &u->nstatus_map)) < 0)
        return r;
    json_t *tls = json_object_get(v, "tls");
    struct jpath tls_at = {at, "tls", 0};
    u->tls.min_version = 12;
    if (tls != NULL && !u->is_tls)
        return fail(l, &tls_at, "only an https:// upstream has TLS settings");
    if (tls != NULL && (r = load_tls(l, &tls_at, tls, u)) < 0)
        return r;
    if ((r = get_int(l, at, v, "max_connections", 1, LLONG_MAX, DEFAULT_MAX_CONNECTIONS, &x)) < 0)
        return r;
    u->max_connections = (size_t)x;
    if ((r = get_duration(l, at, v, "connect_timeout_ms", false, DEFAULT_CONNECT_TIMEOUT_MS,
                          &u->connect_timeout_ms)) < 0 ||
        (r = get_duration(l, at, v, "keepalive_timeout_ms", false, DEFAULT_KEEPALIVE_TIMEOUT_MS,
                          &u->keepalive_timeout_ms)) < 0 ||
        (r = get_duration(l, at, v, "dns_refresh_ms", false, DEFAULT_DNS_REFRESH_MS,
                          &u->dns_refresh_ms)) < 0)
        return r;
    if ((r = get_int(l, at, v, "max_body_bytes", 1, LLONG_MAX, DEFAULT_MAX_BODY_BYTES, &x)) < 0)
        return r;
    u->max_body_bytes = (size_t)x;
    if ((r = get_bool(l, at, v, "gzip", true, &u->accepts_gzip)) < 0 ||
        (r = load_retry(l, at, v, true, &no_retry, &u->retry)) < 0)
        return r;
    u->retry_budget = gd_xmalloc(sizeof(*u->retry_budget));
    gd_retry_budget_init(u->retry_budget);
    u->waits = gd_xmalloc(sizeof(*u->waits));
    gd_waits_init(u->waits);
    if ((r = get_int(l, at, v, "max_in_flight", 0, 1000000, 0, &x)) < 0)
        return r;
    u->max_in_flight = (size_t)x;
    /* One member per pool: MAX_THREADS threads (threads may not be read yet), each with a pool
     * per config its requests still run on, the current one and up to GD_CONFIG_MAX_FINISHING
     * earlier ones, plus the next one a reload brings. */
    if (u->max_in_flight > 0)
        u->in_flight = gd_budget_new(u->max_in_flight, MAX_THREADS * (GD_CONFIG_MAX_FINISHING + 2));
    if ((r = load_upstream_rate_limit(l, at, v, u)) < 0)
        return r;
    return load_breaker(l, at, v, u);
}

static int load_upstreams(struct loader *l, json_t *root, gd_config_t *cfg)
{
    struct jpath at = {NULL, "upstreams", 0};
    json_t *v = NULL;
    size_t i = 0;
    int r = get_member(l, NULL, root, "upstreams", true, &v);

    if (r < 0)
        return r;
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object");
    cfg->nupstreams = json_object_size(v);
    cfg->upstreams = gd_xcalloc(cfg->nupstreams, sizeof(*cfg->upstreams));
    for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
        const char *name = json_object_iter_key(it);
        json_t *member = json_object_iter_value(it);
        struct jpath up = {&at, name, 0};
        gd_upstream_conf_t *u = &cfg->upstreams[i];

        u->metrics_slot = i; /* until gd_metrics_keys_assign(): in config order */
        u->index = i++;
        u->name = gd_xstrdup(name);
        if (name[0] == '\0')
            return fail(l, &up, "an upstream name must not be empty");
        if ((r = load_upstream(l, &up, member, u)) < 0)
            return r;
        char place[512];
        struct sbuf ps = {place, sizeof(place), 0};
        place[0] = '\0';
        put_path(&ps, l, &up);
        u->place = gd_xstrdup(place);
    }
    return 0;
}

static gd_param_t *find_param(gd_endpoint_conf_t *ep, const char *name)
{
    for (size_t i = 0; i < ep->nparams; i++)
        if (strcmp(ep->params[i].name, name) == 0)
            return &ep->params[i];
    return NULL;
}

/* Appends a string parameter, optional with default "", as a template reference makes it. */
static gd_param_t *add_param(gd_endpoint_conf_t *ep, gd_src_t src, const char *key)
{
    const char *prefix = src == GD_SRC_QUERY    ? "query."
                         : src == GD_SRC_HEADER ? "header."
                         : src == GD_SRC_JWT    ? "jwt."
                                                : "";
    size_t plen = strlen(prefix), klen = strlen(key);
    gd_param_t *p;

    ep->params = gd_xrealloc(ep->params, (ep->nparams + 1) * sizeof(*ep->params));
    p = &ep->params[ep->nparams++];
    memset(p, 0, sizeof(*p));
    p->name = gd_xmalloc(plen + klen + 1);
    memcpy(p->name, prefix, plen);
    memcpy(p->name + plen, key, klen + 1);
    p->key = gd_xstrdup(key);
    p->src = src;
    p->type = GD_PARAM_STRING;
    p->is_required = src == GD_SRC_PATH;
    p->default_value = gd_xstrdup("");
    return p;
}

/* Splits ep->path into segments; every capture becomes a parameter, in path order. */
static int parse_endpoint_path(struct loader *l, const struct jpath *at, gd_endpoint_conf_t *ep)
{
    const char *path = ep->path, *s;
    size_t n = 0;
    char byte[8];

    if (path[0] != '/')
        return fail(l, at, "must start with \"/\"");
    for (const char *c = path; *c != '\0'; c++)
        n += *c == '/';
    ep->segments = gd_xcalloc(n, sizeof(*ep->segments));
    ep->nsegments = n;
    s = path + 1;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(s, "/");
        gd_path_segment_t *seg = &ep->segments[i];
        bool has_brace = memchr(s, '{', len) != NULL || memchr(s, '}', len) != NULL;

        if (!has_brace) {
            const char *bad = find_bad_path_char(s, len, false);
            if (bad != NULL)
                return fail(l, at, "bad character %s in the path (percent-encode it)",
                            describe_byte(byte, *bad));
            seg->text = gd_xstrndup(s, len);
        } else {
            if (len < 2 || s[0] != '{' || s[len - 1] != '}' ||
                memchr(s + 1, '{', len - 2) != NULL || memchr(s + 1, '}', len - 2) != NULL)
                return fail(l, at, "a capture must be a whole path segment, not %s",
                            quote_n(l, s, len));
            if (!is_valid_name(s + 1, len - 2, false))
                return fail(l, at, "bad capture name %s (a name is 1 to 64 of A-Z a-z 0-9 - _)",
                            quote_n(l, s, len));
            seg->is_capture = true;
            seg->text = gd_xstrndup(s + 1, len - 2);
            if (find_param(ep, seg->text) != NULL)
                return fail(l, at, "capture %s appears twice", quote_n(l, s, len));
            if (ep->ncaptures == MAX_CAPTURES)
                return fail(l, at, "too many captures (at most %d)", MAX_CAPTURES);
            add_param(ep, GD_SRC_PATH, seg->text)->path_index = ep->ncaptures++;
        }
        s += len + 1;
    }
    return 0;
}

static bool is_same_route(const gd_endpoint_conf_t *a, const gd_endpoint_conf_t *b)
{
    if (strcmp(a->method, b->method) != 0 || a->nsegments != b->nsegments)
        return false;
    for (size_t i = 0; i < a->nsegments; i++) {
        if (a->segments[i].is_capture != b->segments[i].is_capture)
            return false;
        if (!a->segments[i].is_capture && strcmp(a->segments[i].text, b->segments[i].text) != 0)
            return false;
    }
    return true;
}

/* FNV-1a of what is_same_route() compares. */
static uint64_t hash_route(const gd_endpoint_conf_t *ep)
{
    uint64_t h = 14695981039346656037ull;

    for (const char *p = ep->method; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (size_t i = 0; i < ep->nsegments; i++) {
        const char *text = ep->segments[i].is_capture ? "\x01" : ep->segments[i].text;
        h = (h ^ '/') * 1099511628211ull;
        for (const char *p = text; *p != '\0'; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    return h;
}

/* Puts endpoint index @index + 1 into the first free slot of its route's probe sequence. */
static void insert_route(size_t *slots, size_t cap, const gd_config_t *cfg, size_t index)
{
    size_t i = (size_t)hash_route(&cfg->endpoints[index]) & (cap - 1);

    while (slots[i] != 0)
        i = (i + 1) & (cap - 1);
    slots[i] = index + 1;
}

static int check_duplicate_route(struct loader *l, const struct jpath *at, const gd_config_t *cfg,
                                 const gd_endpoint_conf_t *ep)
{
    if (2 * (l->nroutes + 1) > l->routes_cap) { /* at most half full */
        size_t cap = l->routes_cap == 0 ? 64 : l->routes_cap * 2;
        size_t *slots = gd_xcalloc(cap, sizeof(*slots));
        for (size_t i = 0; i < l->routes_cap; i++)
            if (l->routes[i] != 0)
                insert_route(slots, cap, cfg, l->routes[i] - 1);
        free(l->routes);
        l->routes = slots;
        l->routes_cap = cap;
    }
    for (size_t i = (size_t)hash_route(ep) & (l->routes_cap - 1); l->routes[i] != 0;
         i = (i + 1) & (l->routes_cap - 1)) {
        size_t j = l->routes[i] - 1;
        char shape[1024];
        struct sbuf s = {shape, sizeof(shape), 0};

        if (!is_same_route(&cfg->endpoints[j], ep))
            continue;
        shape[0] = '\0';
        for (size_t k = 0; k < ep->nsegments; k++)
            sbuf_printf(&s, "/%s", ep->segments[k].is_capture ? "{}" : ep->segments[k].text);
        return fail(l, at, "duplicate route %s %s (same as endpoints[%zu])", ep->method, shape, j);
    }
    insert_route(l->routes, l->routes_cap, cfg, ep->index);
    l->nroutes++;
    return 0;
}

/* Rejects a ')' that would close the group gd_param_t.pattern wraps the source in, so that
 * "a)|(b" cannot turn "^(a)|(b)$" into a pattern that matches a mere prefix. */
static bool has_unmatched_paren(const char *re)
{
    int depth = 0;

    for (const char *p = re; *p != '\0'; p++) {
        if (*p == '\\') {
            if (*++p == '\0')
                break;
        } else if (*p == '[') {
            /* A bracket expression: a leading ']' (after an optional '^') is literal, and
             * "[:", "[." and "[=" open elements that end with ":]", ".]" and "=]". */
            p++;
            if (*p == '^')
                p++;
            if (*p == ']')
                p++;
            while (*p != '\0' && *p != ']') {
                if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                    char end = p[1];
                    p += 2;
                    while (*p != '\0' && !(*p == end && p[1] == ']'))
                        p++;
                    if (*p == '\0')
                        break;
                    p++;
                }
                p++;
            }
            if (*p == '\0')
                break;
        } else if (*p == '(') {
            depth++;
        } else if (*p == ')' && --depth < 0) {
            return true;
        }
    }
    return false;
}

#define PATTERN_MAX_LEN 1024
#define PATTERN_MAX_ELEMENTS 10000

/* glibc's regcomp() copies a group once per repetition of a {m,n} bound, so nested bounds
 * multiply: "(a{1,1000}){1,1000}" takes 30 s and 8 GB. Estimates the elements the compiled
 * pattern holds (an atom is 1; a bound multiplies what it repeats by its largest count; *, +
 * and ? double it), saturating at @limit + 1. Also refuses back-references (glibc accepts "\1"
 * in extended patterns, and matching with them can take exponential time) and repetitions in a
 * row ("a++*": undefined in POSIX, and glibc's closure computation over them took 11 s for a
 * pattern of 40 characters, found by fuzz_config). Returns the estimate, or 0 with the reason
 * in *@ret_problem. */
static size_t pattern_elements(const char *re, size_t limit, const char **ret_problem)
{
    struct level {
        size_t sum;  /* elements of the group so far */
        size_t last; /* those of its last atom, which a quantifier repeats */
    } stack[64] = {{0, 0}};
    size_t depth = 0;
    bool follows_quantifier = false;

#define SAT(x) ((x) > limit ? limit + 1 : (x))
    for (const char *p = re; *p != '\0'; p++) {
        struct level *lv = &stack[depth];
        size_t times = 0;
        bool was_quantifier = follows_quantifier;
        follows_quantifier = false;
        switch (*p) {
        case '\\':
            if (p[1] >= '1' && p[1] <= '9') {
                *ret_problem = "back-references (\\1 to \\9) are not supported";
                return 0;
            }
            if (p[1] != '\0')
                p++;
            lv->last = 1;
            lv->sum = SAT(lv->sum + 1);
            continue;
        case '[': /* a bracket expression, skipped as has_unmatched_paren() does */
            p++;
            if (*p == '^')
                p++;
            if (*p == ']')
                p++;
            while (*p != '\0' && *p != ']') {
                if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                    char end = p[1];
                    for (p += 2; *p != '\0' && !(*p == end && p[1] == ']'); p++)
                        ;
                    if (*p == '\0')
                        break;
                    p++;
                }
                p++;
            }
            if (*p == '\0')
                p--;
            lv->last = 1;
            lv->sum = SAT(lv->sum + 1);
            continue;
        case '(':
            if (depth + 1 == GD_ARRAY_SIZE(stack))
                return limit + 1;
            stack[++depth] = (struct level){0, 0};
            continue;
        case ')':
            if (depth == 0)
                continue; /* has_unmatched_paren() reports it */
            {
                size_t inner = stack[depth].sum > 0 ? stack[depth].sum : 1;
                lv = &stack[--depth];
                lv->last = inner;
                lv->sum = SAT(lv->sum + inner);
            }
            continue;
        case '|':
            lv->last = 0;
            continue;
        case '*':
        case '+':
        case '?':
            times = 2;
            break;
        case '{': {
            unsigned long m = strtoul(p + 1, (char **)&p, 10), n = m;
            if (*p == ',')
                n = p[1] == '}' ? m + 1 : strtoul(p + 1, (char **)&p, 10);
            while (*p != '\0' && *p != '}')
                p++;
            if (*p == '\0')
                p--;
            times = n > m ? n : m;
            if (times == 0)
                times = 1;
            break;
        }
        default:
            lv->last = 1;
            lv->sum = SAT(lv->sum + 1);
            continue;
        }
        /* A quantifier: its atom's elements, repeated. */
        if (was_quantifier) {
            *ret_problem = "two repetition operators in a row (such as \"a+*\" or \"a*{2}\") are "
                           "undefined in POSIX patterns: write one, or group the first";
            return 0;
        }
        follows_quantifier = true;
        size_t repeated = lv->last > limit / times ? limit + 1 : lv->last * times;
        lv->sum = SAT(lv->sum - lv->last + repeated);
        lv->last = repeated;
    }
    /* A group left open counts too: regcomp() expands its repetitions before it finds the
     * missing ")" (an open group of 46 "+" took 2 GB before the error). */
    while (depth > 0) {
        size_t inner = stack[depth].sum;
        depth--;
        stack[depth].sum = SAT(stack[depth].sum + inner);
    }
#undef SAT
    return stack[0].sum > 0 ? stack[0].sum : 1;
}

static int compile_pattern(struct loader *l, const struct jpath *at, const char *src, gd_param_t *p)
{
    size_t len = strlen(src), elements;
    char *wrapped, msg[256];
    regex_t check;
    int rc;

    /* Checked before regcomp() sees it: `gatherd -t` runs in ExecStartPre and must not hang. */
    if (len > PATTERN_MAX_LEN)
        return fail(l, at, "bad pattern: longer than %d characters", PATTERN_MAX_LEN);
    const char *problem = NULL;
    if ((elements = pattern_elements(src, PATTERN_MAX_ELEMENTS, &problem)) == 0)
        return fail(l, at, "bad pattern: %s", problem);
    if (elements > PATTERN_MAX_ELEMENTS)
        return fail(l, at,
                    "bad pattern: too complex (its repetitions expand to more than %d elements; "
                    "nest fewer {m,n} bounds or make them smaller)",
                    PATTERN_MAX_ELEMENTS);

    /* Compiled alone first, so that the error describes what was written. */
    rc = regcomp(&check, src, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, &check, msg, sizeof(msg));
        return fail(l, at, "bad pattern: %s", msg);
    }
    regfree(&check);
    if (has_unmatched_paren(src))
        return fail(l, at, "bad pattern: unmatched \")\"");

    wrapped = gd_xmalloc(len + 5);
    memcpy(wrapped, "^(", 2);
    memcpy(wrapped + 2, src, len);
    memcpy(wrapped + 2 + len, ")$", 3);
    rc = regcomp(&p->pattern, wrapped, REG_EXTENDED | REG_NOSUB);
    free(wrapped);
    if (rc != 0) {
        regerror(rc, &p->pattern, msg, sizeof(msg));
        return fail(l, at, "bad pattern: %s", msg);
    }
    p->type = GD_PARAM_PATTERN; /* from here on gd_config_free() regfree()s it */
    p->pattern_src = gd_xstrdup(src);
    return 0;
}

static int parse_type(struct loader *l, const struct jpath *at, const char *s, gd_param_type_t *ret)
{
    if (strcmp(s, "string") == 0)
        *ret = GD_PARAM_STRING;
    else if (strcmp(s, "int") == 0)
        *ret = GD_PARAM_INT;
    else if (strcmp(s, "pattern") == 0)
        *ret = GD_PARAM_PATTERN;
    else if (strcmp(s, "int_list") == 0)
        *ret = GD_PARAM_INT_LIST;
    else if (strcmp(s, "string_list") == 0)
        *ret = GD_PARAM_STRING_LIST;
    else
        return fail(l, at,
                    "unknown type %s (expected \"string\", \"int\", \"pattern\", \"int_list\" or "
                    "\"string_list\")",
                    quote(l, s));
    return 0;
}

static bool is_list_type(gd_param_type_t t)
{
    return t == GD_PARAM_INT_LIST || t == GD_PARAM_STRING_LIST;
}

/* Loads "params".@name: declares a new parameter or refines a path capture's. */
static int load_param(struct loader *l, const struct jpath *at, const char *name, json_t *v,
                      gd_endpoint_conf_t *ep)
{
    static const char *const keys[] = {"type", "pattern", "required", "default", "max_items", NULL};
    struct jpath type_at = {at, "type", 0}, pattern_at = {at, "pattern", 0};
    struct jpath max_items_at = {at, "max_items", 0};
    long long max_items = GD_PARAM_DEFAULT_MAX_ITEMS;
    struct jpath required_at = {at, "required", 0}, default_at = {at, "default", 0};
    gd_param_type_t type = GD_PARAM_STRING;
    const char *key = name, *type_src = NULL, *pattern_src = NULL, *def = NULL;
    gd_src_t src = GD_SRC_PATH;
    gd_param_t *p;
    char *norm;
    bool is_required;
    int r;

    if (strncmp(name, "query.", 6) == 0) {
        src = GD_SRC_QUERY;
        key = name + 6;
    } else if (strncmp(name, "header.", 7) == 0) {
        src = GD_SRC_HEADER;
        key = name + 7;
    }
    if (!is_valid_name(key, strlen(key), true))
        return fail(l, at,
                    "bad parameter name (expected NAME, query.NAME or header.NAME, NAME being 1 "
                    "to 64 of A-Z a-z 0-9 - _ .)");
    if (src == GD_SRC_PATH) {
        p = find_param(ep, name);
        if (p == NULL || p->src != GD_SRC_PATH)
            return fail(l, at, "no capture {%s} in the endpoint path %s", name, quote(l, ep->path));
    } else {
        /* Header names are case-insensitive (RFC 9110 section 5.1): kept lower-case. */
        norm = gd_xstrdup(name);
        for (char *c = norm; *c != '\0'; c++)
            *c = lower(*c);
        if (find_param(ep, norm) != NULL) {
            r = fail(l, at, "parameter %s is declared twice (header names are case-insensitive)",
                     quote(l, norm));
            free(norm);
            return r;
        }
        p = add_param(ep, src, norm + (src == GD_SRC_QUERY ? 6 : 7));
        free(norm);
    }
    is_required = src == GD_SRC_PATH;

    if (json_is_string(v)) {
        if ((r = parse_type(l, at, json_string_value(v), &type)) < 0)
            return r;
        if (type == GD_PARAM_PATTERN)
            return fail(l, at, "type \"pattern\" needs a pattern: write {\"pattern\": \"...\"}");
    } else if (json_is_object(v)) {
        if ((r = check_object(l, at, v, keys)) < 0 ||
            (r = get_string(l, at, v, "type", false, NULL, &type_src)) < 0 ||
            (type_src != NULL && (r = parse_type(l, &type_at, type_src, &type)) < 0) ||
            (r = get_string(l, at, v, "pattern", false, NULL, &pattern_src)) < 0 ||
            (r = get_bool(l, at, v, "required", is_required, &is_required)) < 0 ||
            (r = get_string(l, at, v, "default", false, NULL, &def)) < 0 ||
            (r = get_int(l, at, v, "max_items", 1, 10000, GD_PARAM_DEFAULT_MAX_ITEMS,
                         &max_items)) < 0)
            return r;
        if (json_object_get(v, "max_items") != NULL && !is_list_type(type))
            return fail(l, &max_items_at, "only a list parameter (\"int_list\", \"string_list\") "
                                          "has max_items");
        if (pattern_src != NULL && type_src != NULL && type != GD_PARAM_PATTERN)
            return fail(l, &pattern_at, "a pattern needs type \"pattern\", not %s",
                        quote(l, type_src));
        if (pattern_src == NULL && type == GD_PARAM_PATTERN)
            return fail(l, &pattern_at, "missing required key");
        if (src == GD_SRC_PATH && !is_required)
            return fail(l, &required_at, "a path capture is always present, it cannot be optional");
        if (def != NULL && is_required)
            return fail(l, &default_at,
                        "only an optional parameter can have a default (\"required\": false)");
    } else {
        return fail_type(l, at, v, "a type name or an object");
    }

    if (is_list_type(type) && src != GD_SRC_QUERY)
        return fail(l, at, "a list parameter comes from the query string: name it query.%s", key);
    p->is_required = is_required;
    p->max_items = (size_t)max_items;
    if (pattern_src != NULL) {
        if ((r = compile_pattern(l, &pattern_at, pattern_src, p)) < 0)
            return r;
    } else {
        p->type = type;
    }
    if (def != NULL) {
        if (p->type == GD_PARAM_INT && !gd_is_int64(def, strlen(def)))
            return fail(l, &default_at,
                        "%s is not an int (an optional \"-\" and 1 to 19 digits, fitting a signed "
                        "64-bit integer)",
                        quote(l, def));
        if (p->type == GD_PARAM_PATTERN && regexec(&p->pattern, def, 0, NULL, 0) != 0)
            return fail(l, &default_at, "%s does not match the pattern", quote(l, def));
        if (is_list_type(p->type)) {
            char err[256];
            if ((r = gd_param_list_literal(p, def, strlen(def), NULL, 0, err, sizeof(err))) < 0)
                return fail(l, &default_at, "%s", err);
            free(p->default_value);
            p->default_value = gd_xmalloc((size_t)r + 1);
            gd_param_list_literal(p, def, strlen(def), p->default_value, (size_t)r + 1, err,
                                  sizeof(err));
        } else {
            free(p->default_value);
            p->default_value = gd_xstrdup(def);
        }
    } else if (is_list_type(p->type)) {
        free(p->default_value);
        p->default_value = gd_xstrdup("{}"); /* absent: an empty array, never a NULL */
    }
    return 0;
}

static int load_params(struct loader *l, const struct jpath *ep_at, json_t *ep_json,
                       gd_endpoint_conf_t *ep)
{
    struct jpath at = {ep_at, "params", 0};
    json_t *v = json_object_get(ep_json, "params");
    int r;

    if (v == NULL)
        return 0;
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object");
    for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
        const char *name = json_object_iter_key(it);
        json_t *member = json_object_iter_value(it);
        struct jpath pp = {&at, name, 0};

        if ((r = load_param(l, &pp, name, member, ep)) < 0)
            return r;
    }
    return 0;
}

struct resolve_ctx {
    struct loader *l;
    gd_endpoint_conf_t *ep;
};

/* gd_expr_scope_t's resolve_param inside a call reference: only captures, so that the message
 * for {id.x} says that a parameter has no fields. */
static int resolve_capture_only(void *ctx, int src, const char *name, bool *ret_is_int)
{
    const gd_endpoint_conf_t *ep = ctx;

    *ret_is_int = false;
    for (size_t i = 0; src == 0 && i < ep->ncaptures; i++)
        if (strcmp(ep->params[i].key, name) == 0)
            return (int)i;
    return -1;
}

static void add_need(gd_call_conf_t *c, size_t call)
{
    for (size_t i = 0; i < c->nneeds; i++)
        if (c->needs[i] == call)
            return;
    c->needs = gd_xrealloc(c->needs, (c->nneeds + 1) * sizeof(*c->needs));
    c->needs[c->nneeds++] = call;
}

/* A reference @text (between the braces) to a call's result in the templates of the call
 * compiling now: parsed as the response's references are, added to the endpoint's refs and to
 * the needs of the call. Returns its index for the template, or -1 with a message in @err. */
static int resolve_call_ref(struct loader *l, gd_endpoint_conf_t *ep, const char *text, char *err,
                            size_t errlen)
{
    struct call_scope *cs = l->calling;
    gd_expr_scope_t scope = {cs->names, cs->ncalls, resolve_capture_only, ep,
                             cs->call->has_for_each};
    size_t len = strlen(text);
    char *src = gd_xmalloc(len + 3);
    gd_text_template_t t;

    src[0] = '{';
    memcpy(src + 1, text, len);
    src[len + 1] = '}';
    src[len + 2] = '\0';
    if (gd_text_template_compile(src, &scope, &t, err, errlen) < 0) {
        free(src);
        return -1;
    }
    if (!t.is_typed ||
        (t.parts[0].expr.kind != GD_EXPR_CALL && t.parts[0].expr.kind != GD_EXPR_COUNT)) {
        snprintf(err, errlen, "\"%s\": a reference to a call's result expected", src);
        gd_text_template_dispose(&t);
        free(src);
        return -1;
    }
    ep->refs = gd_xrealloc(ep->refs, (ep->nrefs + 1) * sizeof(*ep->refs));
    gd_call_ref_t *ref = &ep->refs[ep->nrefs++];
    ref->expr = t.parts[0].expr;
    ref->use = cs->use;
    ref->text = src;
    free(t.parts); /* the expression moved into ref */
    cs->call->nrefs++;
    if (ref->expr.index < cs->ncalls) /* not {item}: that is the call's own, per item */
        add_need(cs->call, ref->expr.index);
    return (int)(REF_INDEX_BASE + ep->nrefs - 1);
}

/* The reference a template's value index stands for while the endpoint compiles, or NULL. */
static gd_call_ref_t *ref_of(gd_endpoint_conf_t *ep, size_t value_index)
{
    return value_index >= REF_INDEX_BASE ? &ep->refs[value_index - REF_INDEX_BASE] : NULL;
}

static void set_ref_use(struct loader *l, gd_ref_use_t use)
{
    if (l->calling != NULL)
        l->calling->use = use;
}

/* gd_template_resolve_cb: a capture must exist; a query or header parameter is added (as an
 * optional string) on first use. */
static int resolve_var(void *ctx, gd_src_t src, const char *name, char *err, size_t errlen)
{
    struct resolve_ctx *rc = ctx;
    gd_endpoint_conf_t *ep = rc->ep;
    struct call_scope *cs = rc->l->calling;

    if (src == GD_SRC_CALL) {
        if (cs == NULL) {
            snprintf(err, errlen, "bad variable name \"{%s}\"", name);
            return -1;
        }
        return resolve_call_ref(rc->l, ep, name, err, errlen);
    }
    if (src == GD_SRC_PATH) {
        for (size_t i = 0; i < ep->ncaptures; i++)
            if (strcmp(ep->params[i].key, name) == 0)
                return (int)i;
        /* a batch's {item}, unless a for_each call's own item hides it */
        if (ep->is_batch && strcmp(name, "item") == 0 && !(cs != NULL && cs->call->has_for_each))
            return (int)ep->batch_item;
        for (size_t i = 0; cs != NULL && i < cs->ncalls; i++)
            if (strcmp(cs->names[i], name) == 0)
                return resolve_call_ref(rc->l, ep, name, err, errlen);
        if (cs != NULL && strcmp(name, "item") == 0) /* its message when there is no for_each */
            return resolve_call_ref(rc->l, ep, name, err, errlen);
        snprintf(err, errlen, "no capture {%s} in the endpoint path %s", name,
                 quote(rc->l, ep->path));
        return -1;
    }
    for (size_t i = ep->ncaptures; i < ep->nparams; i++) {
        if (ep->params[i].src != src || strcmp(ep->params[i].key, name) != 0)
            continue;
        if (is_list_type(ep->params[i].type) && !rc->l->allows_list_param) {
            snprintf(err, errlen,
                     "{%s} is a list parameter: it can only be a whole SQL argument "
                     "(\"args\": [\"{%s}\"], bound as one Postgres array)",
                     ep->params[i].name, ep->params[i].name);
            rc->l->has_refused_list_param = true;
            return -1;
        }
        rc->l->has_used_list_param |= is_list_type(ep->params[i].type);
        return (int)i;
    }
    add_param(ep, src, name);
    return (int)(ep->nparams - 1);
}

static int compile_template(struct loader *l, const struct jpath *at, const char *src,
                            gd_endpoint_conf_t *ep, gd_template_t *ret)
{
    struct resolve_ctx rc = {l, ep};
    char msg[512];

    if (gd_template_compile(src, resolve_var, &rc, ret, msg, sizeof(msg)) < 0)
        return fail(l, at, "%s", msg);
    return 0;
}

static bool is_reserved_header(const char *name)
{
    /* Framing and hop-by-hop headers (RFC 9110 sections 7.2, 7.6.1, 8.6; RFC 9112 section
     * 6.1) belong to the upstream client, not to a call. */
    static const char *const reserved[] = {"host",
                                           "content-length",
                                           "transfer-encoding",
                                           "connection",
                                           "keep-alive",
                                           "upgrade",
                                           "proxy-connection",
                                           "te",
                                           "trailer",
                                           NULL};
    char low[32];
    size_t len = strlen(name);

    if (len >= sizeof(low))
        return false;
    for (size_t i = 0; i <= len; i++)
        low[i] = lower(name[i]);
    return is_in(low, reserved);
}

static int load_headers(struct loader *l, const struct jpath *call_at, json_t *call_json,
                        gd_endpoint_conf_t *ep, gd_call_conf_t *c)
{
    struct jpath at = {call_at, "headers", 0};
    json_t *v = json_object_get(call_json, "headers");
    char byte[8];
    int r;

    if (v == NULL)
        return 0;
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object");
    c->headers = gd_xcalloc(json_object_size(v), sizeof(*c->headers));
    for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
        const char *name = json_object_iter_key(it);
        json_t *member = json_object_iter_value(it);
        struct jpath hp = {&at, name, 0};
        gd_header_template_t *h = &c->headers[c->nheaders];

        char *text = NULL;
        size_t nsubst = 0;

        if ((r = check_header_name(l, &hp, name)) < 0)
            return r;
        if ((c->is_body_forwarded || c->body_parts != NULL) && strcasecmp(name, "content-type") == 0)
            return fail(l, &hp, "header %s is set by gatherd for the call's body", quote(l, name));
        for (size_t i = 0; i < c->nheaders; i++)
            if (strcasecmp(c->headers[i].name, name) == 0)
                return fail(l, &hp, "header %s is given twice (header names are case-insensitive)",
                            quote(l, name));
        if (!json_is_string(member))
            return fail_type(l, &hp, member, "a string");
        h->name = gd_xstrdup(name);
        c->nheaders++;
        /* {env.NAME} values become literal text of the template, read once, here. */
        if ((r = subst_env(l, &hp, json_string_value(member), true, &text, &nsubst)) < 0)
            return r;
        set_ref_use(l, GD_REF_TEXT);
        r = compile_template(l, &hp, text, ep, &h->value);
        free(text);
        if (r < 0)
            return r;
        /* RFC 9110 section 5.5: no control characters but HTAB in a field value. */
        for (size_t i = 0; i < h->value.nparts; i++) {
            const gd_template_part_t *part = &h->value.parts[i];
            const char *bad;
            if (part->is_literal &&
                (bad = find_bad_value_char(part->literal, part->literal_len)) != NULL) {
                if (nsubst > 0) /* the byte may be part of a secret */
                    return fail(l, &hp,
                                "a control character in the header value (after "
                                "{env.NAME} substitution)");
                return fail(l, &hp, "bad character %s in a header value",
                            describe_byte(byte, *bad));
            }
        }
    }
    return 0;
}

/* The call's header lines from its upstream's "headers", but those it sets itself. */
static void inherit_upstream_headers(gd_call_conf_t *c)
{
    const gd_upstream_conf_t *u = c->upstream;
    size_t len = 0;
    char *p = NULL;

    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < u->nheaders; i++) {
            bool is_overridden = false;
            for (size_t j = 0; j < c->nheaders && !is_overridden; j++)
                is_overridden = strcasecmp(c->headers[j].name, u->headers[i].name) == 0;
            if (is_overridden)
                continue;
            size_t nlen = strlen(u->headers[i].name), vlen = strlen(u->headers[i].value);
            if (pass == 0) {
                len += nlen + 2 + vlen + 2;
                continue;
            }
            memcpy(p, u->headers[i].name, nlen);
            memcpy(p + nlen, ": ", 2);
            memcpy(p + nlen + 2, u->headers[i].value, vlen);
            memcpy(p + nlen + 2 + vlen, "\r\n", 2);
            p += nlen + 2 + vlen + 2;
        }
        if (pass == 0)
            p = c->upstream_header_lines = gd_xmalloc(len + 1);
    }
    *p = '\0';
    c->upstream_header_lines_len = len;
}

/* A forwarded header is the client's: never one the config sets as well (which would send the
 * name twice, or let a client replace what the operator wrote). */
static int check_forward_conflicts(struct loader *l, const struct jpath *at, gd_call_conf_t *c)
{
    const gd_upstream_conf_t *u = c->upstream;

    for (size_t i = 0; i < c->nforward_headers; i++) {
        const char *name = c->forward_headers[i];
        for (size_t j = 0; j < c->nheaders; j++)
            if (strcasecmp(c->headers[j].name, name) == 0)
                return fail(l, at,
                            "header %s is both forwarded (forward_headers) and set by the "
                            "call's \"headers\"",
                            quote(l, name));
        for (size_t j = 0; j < u->nheaders; j++)
            if (strcasecmp(u->headers[j].name, name) == 0)
                return fail(l, at,
                            "header %s is both forwarded (forward_headers) and set by "
                            "upstreams.%s.headers",
                            quote(l, name), u->name);
    }
    return 0;
}

/* The call's own "forward_headers", "null_on" and "status_map", or its upstream's. */
static int load_call_answer_rules(struct loader *l, const struct jpath *at, json_t *v,
                                  gd_call_conf_t *c)
{
    const gd_upstream_conf_t *u = c->upstream;
    bool is_present = false;
    size_t n = 0;
    int r;

    if ((r = load_forward_headers(l, at, v, &is_present, &c->forward_headers,
                                  &c->nforward_headers)) < 0)
        return r;
    if (!is_present) {
        c->forward_headers = gd_xcalloc(u->nforward_headers + 1, sizeof(char *));
        for (size_t i = 0; i < u->nforward_headers; i++)
            c->forward_headers[i] = gd_xstrdup(u->forward_headers[i]);
        c->nforward_headers = u->nforward_headers;
    }
    if ((r = check_forward_conflicts(l, at, c)) < 0)
        return r;
    if ((r = load_null_on(l, at, v, &is_present, &c->null_on, &c->nnull_on)) < 0)
        return r;
    if (!is_present) {
        c->null_on = gd_xcalloc(u->nnull_on + 1, sizeof(int));
        if (u->nnull_on > 0)
            memcpy(c->null_on, u->null_on, u->nnull_on * sizeof(int));
        c->nnull_on = u->nnull_on;
    }
    if ((r = load_status_map(l, at, v, &c->status_map, &n)) < 0)
        return r;
    c->nstatus_map = n;
    c->status_map = gd_xrealloc(c->status_map, (n + u->nstatus_map + 1) * sizeof(*c->status_map));
    for (size_t i = 0; i < u->nstatus_map; i++) {
        bool is_mapped = false;
        for (size_t j = 0; j < n && !is_mapped; j++)
            is_mapped = c->status_map[j].upstream_status == u->status_map[i].upstream_status;
        if (!is_mapped)
            c->status_map[c->nstatus_map++] = u->status_map[i];
    }
    return 0;
}

/* A list of keys of a result ("fields", "omit"): strings, at least one, each once. */
static int load_key_list(struct loader *l, const struct jpath *at, json_t *v, gd_key_conf_t **ret,
                         size_t *ret_n)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 0;

    if (!json_is_array(v))
        return fail_type(l, at, v, "an array of key names");
    if (n == 0)
        return fail(l, at, "an empty list (leave the key out to keep every key)");
    if (n > GD_RESHAPE_MAX_KEYS)
        return fail(l, at, "at most %d keys, not %zu", GD_RESHAPE_MAX_KEYS, n);
    *ret = gd_xcalloc(n, sizeof(**ret));
    for (size_t i = 0; i < n; i++) {
        struct jpath ip = {at, NULL, i};
        json_t *item = json_array_get(v, i);
        if (!json_is_string(item))
            return fail_type(l, &ip, item, "a string");
        const char *s = json_string_value(item);
        size_t len = json_string_length(item);
        for (size_t j = 0; j < *ret_n; j++)
            if ((*ret)[j].len == len && memcmp((*ret)[j].s, s, len) == 0)
                return fail(l, &ip, "key %s is listed twice", quote_n(l, s, len));
        (*ret)[*ret_n].s = memcpy(gd_xmalloc(len + 1), s, len + 1);
        (*ret)[(*ret_n)++].len = len;
    }
    return 0;
}

static bool is_listed(const gd_key_conf_t *keys, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i].len == len && memcmp(keys[i].s, s, len) == 0)
            return true;
    return false;
}

/* "rename": {"from": "to", ...}: each key it renames is kept, and each new name is new. */
static int load_renames(struct loader *l, const struct jpath *at, json_t *v, gd_reshape_conf_t *rs)
{
    size_t n = json_is_object(v) ? json_object_size(v) : 0;

    if (!json_is_object(v))
        return fail_type(l, at, v, "an object of old names to new names");
    if (n == 0)
        return fail(l, at, "an empty object (leave the key out to rename nothing)");
    if (n > GD_RESHAPE_MAX_KEYS)
        return fail(l, at, "at most %d keys, not %zu", GD_RESHAPE_MAX_KEYS, n);
    rs->renames = gd_xcalloc(n, sizeof(*rs->renames));
    for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
        const char *from = json_object_iter_key(it);
        size_t from_len = json_object_iter_key_len(it);
        json_t *to = json_object_iter_value(it);
        struct jpath kp = {at, from, 0};
        if (!json_is_string(to))
            return fail_type(l, &kp, to, "a string (the new name)");
        size_t to_len = json_string_length(to);
        if (to_len == from_len && memcmp(json_string_value(to), from, from_len) == 0)
            return fail(l, &kp, "renames the key to itself");
        if (rs->nkeys > 0 && rs->is_omit && is_listed(rs->keys, rs->nkeys, from, from_len))
            return fail(l, &kp, "renames a key that \"omit\" drops");
        if (rs->nkeys > 0 && !rs->is_omit && !is_listed(rs->keys, rs->nkeys, from, from_len))
            return fail(l, &kp, "renames a key that \"fields\" does not keep");
        gd_rename_conf_t *r = &rs->renames[rs->nrenames];
        r->to_json.s = json_dumps(to, JSON_ENCODE_ANY | JSON_COMPACT);
        GD_REQUIRE(r->to_json.s != NULL); /* only allocation can fail: jansson parsed it */
        r->to_json.len = strlen(r->to_json.s);
        for (size_t j = 0; j < rs->nrenames; j++)
            if (rs->renames[j].to_json.len == r->to_json.len &&
                memcmp(rs->renames[j].to_json.s, r->to_json.s, r->to_json.len) == 0) {
                free(r->to_json.s);
                r->to_json.s = NULL;
                return fail(l, &kp, "renames to %s, which another key is renamed to too",
                            quote_n(l, json_string_value(to), to_len));
            }
        r->from.s = memcpy(gd_xmalloc(from_len + 1), from, from_len + 1);
        r->from.len = from_len;
        r->to.s = memcpy(gd_xmalloc(to_len + 1), json_string_value(to), to_len + 1);
        r->to.len = to_len;
        rs->nrenames++;
    }
    return 0;
}

/* A call's "select", "fields" or "omit", and "rename": c->reshape stays NULL without them. */
static int load_reshape(struct loader *l, const struct jpath *at, json_t *v, gd_call_conf_t *c)
{
    struct jpath select_at = {at, "select", 0}, fields_at = {at, "fields", 0};
    struct jpath omit_at = {at, "omit", 0}, rename_at = {at, "rename", 0};
    json_t *select = json_object_get(v, "select"), *fields = json_object_get(v, "fields");
    json_t *omit = json_object_get(v, "omit"), *rename = json_object_get(v, "rename");
    gd_reshape_conf_t *rs;
    char err[256];
    int r;

    if (select == NULL && fields == NULL && omit == NULL && rename == NULL)
        return 0;
    if (fields != NULL && omit != NULL)
        return fail(l, &omit_at, "a call has either \"fields\" or \"omit\", not both");
    rs = c->reshape = gd_xcalloc(1, sizeof(*rs));
    if (select != NULL) {
        if (!json_is_string(select))
            return fail_type(l, &select_at, select, "a string (a path into the result)");
        if (gd_expr_path_compile(json_string_value(select), &rs->select, err, sizeof(err)) < 0)
            return fail(l, &select_at, "%s", err);
        rs->has_select = true;
        rs->select_text = gd_xstrdup(json_string_value(select));
    }
    rs->is_omit = omit != NULL;
    if ((fields != NULL && (r = load_key_list(l, &fields_at, fields, &rs->keys, &rs->nkeys)) < 0) ||
        (omit != NULL && (r = load_key_list(l, &omit_at, omit, &rs->keys, &rs->nkeys)) < 0) ||
        (rename != NULL && (r = load_renames(l, &rename_at, rename, rs)) < 0))
        return r;
    return 0;
}

gd_reshape_conf_t *gd_reshape_conf_free(gd_reshape_conf_t *rs)
{
    if (rs == NULL)
        return NULL;
    gd_expr_dispose(&rs->select);
    free(rs->select_text);
    for (size_t i = 0; i < rs->nkeys; i++)
        free(rs->keys[i].s);
    free(rs->keys);
    for (size_t i = 0; i < rs->nrenames; i++) {
        free(rs->renames[i].from.s);
        free(rs->renames[i].to.s);
        free(rs->renames[i].to_json.s);
    }
    free(rs->renames);
    free(rs);
    return NULL;
}

static int load_http_call(struct loader *l, const struct jpath *at, json_t *v,
                          const gd_config_t *cfg, gd_endpoint_conf_t *ep, gd_call_conf_t *c);
static int load_sql_call(struct loader *l, const struct jpath *at, json_t *v, gd_config_t *cfg,
                         gd_endpoint_conf_t *ep, gd_call_conf_t *c);

/* "after": calls this one waits for without using their results. */
static int load_after(struct loader *l, const struct jpath *at, json_t *v, gd_call_conf_t *c)
{
    struct jpath after_at = {at, "after", 0};
    json_t *after = json_object_get(v, "after");
    const struct call_scope *cs = l->calling;

    if (after == NULL)
        return 0;
    if (!json_is_array(after))
        return fail_type(l, &after_at, after, "an array of call names");
    for (size_t i = 0; i < json_array_size(after); i++) {
        struct jpath ip = {&after_at, NULL, i};
        json_t *name = json_array_get(after, i);
        size_t j = 0;
        if (!json_is_string(name))
            return fail_type(l, &ip, name, "a call name");
        while (j < cs->ncalls && strcmp(cs->names[j], json_string_value(name)) != 0)
            j++;
        if (j == cs->ncalls)
            return fail(l, &ip, "unknown call %s (not a call of this endpoint)",
                        quote(l, json_string_value(name)));
        add_need(c, j);
    }
    return 0;
}

/* "when": one reference; the call runs only when its value is true. */
static int load_when(struct loader *l, const struct jpath *at, json_t *v, gd_endpoint_conf_t *ep,
                     gd_call_conf_t *c)
{
    struct jpath when_at = {at, "when", 0};
    json_t *when = json_object_get(v, "when");
    int r;

    if (when == NULL)
        return 0;
    if (!json_is_string(when))
        return fail_type(l, &when_at, when, "a string like \"{query.include}\"");
    set_ref_use(l, GD_REF_WHEN);
    if ((r = compile_template(l, &when_at, json_string_value(when), ep, &c->when)) < 0)
        return r;
    c->has_when = true;
    if (c->when.nparts != 1 || c->when.parts[0].is_literal)
        return fail(l, &when_at, "must be exactly one reference like \"{query.include}\", not %s",
                    quote(l, json_string_value(when)));
    const gd_call_ref_t *ref = ref_of(ep, c->when.parts[0].value_index);
    if (ref != NULL && ref->expr.index == l->calling->ncalls)
        return fail(l, &when_at, "{item} cannot go into \"when\": it is decided once for the "
                                 "whole call, before its items run");
    return 0;
}

/* The keys of a call that decide nothing about its result (when and how long it runs, how it
 * is retried): left out of its cache variant. */
static const char *const non_result_keys[] = {"timeout_ms",         "optional",       "cache",
                                              "retry",              "idempotent",     "after",
                                              "when",               "attempt_timeout_ms",
                                              "hedge_after_ms",     "for_each",
                                              "concurrency",        "max_items",      NULL};

static bool is_plain_select(const char *sql);
static bool is_batchable_read(const char *sql);

/* "cache": {"ttl_ms", "negative_ttl_ms", "honor_cache_control"}; its variant is the call's own
 * settings (canonical JSON without the timing keys), with the upstream's name in them. */
static int load_call_cache(struct loader *l, const struct jpath *at, json_t *v, gd_call_conf_t *c)
{
    static const char *const keys[] = {"ttl_ms", "negative_ttl_ms", "honor_cache_control", "shared",
                                       NULL};
    struct jpath cat = {at, "cache", 0}, shared_at = {&cat, "shared", 0};
    json_t *cv = json_object_get(v, "cache");
    int r;

    if (cv == NULL)
        return 0;
    if (!json_is_object(cv))
        return fail_type(l, &cat, cv, "an object");
    if ((r = check_object(l, &cat, cv, keys)) < 0 ||
        (r = get_duration(l, &cat, cv, "ttl_ms", false, 0, &c->cache.ttl_ms)) < 0 ||
        (r = get_duration(l, &cat, cv, "negative_ttl_ms", true, 0, &c->cache.negative_ttl_ms)) <
            0 ||
        (r = get_bool(l, &cat, cv, "honor_cache_control", false, &c->cache.honor_cache_control)) <
            0 ||
        (r = get_bool(l, &cat, cv, "shared", false, &c->cache.is_shared)) < 0)
        return r;
    if (c->cache.is_shared && l->redis == NULL)
        return fail(l, &shared_at, "needs a top-level \"redis\" to share the results in");
    if (json_object_get(cv, "ttl_ms") == NULL)
        return fail(l, &cat, "\"ttl_ms\" is required: how long a result is kept");
    if (c->type == GD_CALL_TYPE_HTTP && !c->is_idempotent)
        return fail(l, &cat,
                    "a %s call changes something: its result is not cached (mark it "
                    "\"idempotent\": true if it only reads)",
                    c->method);
    if (c->type == GD_CALL_TYPE_SQL) {
        bool is_idempotent = false;
        if ((r = get_bool(l, at, v, "idempotent", false, &is_idempotent)) < 0)
            return r;
        if (!is_idempotent && !is_plain_select(json_string_value(json_object_get(v, "sql"))))
            return fail(l, &cat,
                        "only a statement that reads (SELECT, VALUES, TABLE) is cached; mark the "
                        "call \"idempotent\": true if this one does too");
    }
    json_t *shape = json_deep_copy(v);
    for (size_t i = 0; non_result_keys[i] != NULL; i++)
        json_object_del(shape, non_result_keys[i]);
    c->cache.variant = json_dumps(shape, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(shape);
    GD_REQUIRE(c->cache.variant != NULL);
    c->cache.variant_len = strlen(c->cache.variant);
    l->max_cache_ttl_ms = c->cache.ttl_ms > l->max_cache_ttl_ms ? c->cache.ttl_ms : l->max_cache_ttl_ms;
    if (c->cache.negative_ttl_ms > l->max_cache_ttl_ms)
        l->max_cache_ttl_ms = c->cache.negative_ttl_ms;
    return 0;
}

/* gd_expr_scope_t's resolve_param for a "for_each": a parameter by name, so that the message
 * can say which kind it is; only a list parameter is taken (checked by the caller). */
static int resolve_for_each_param(void *ctx, int src, const char *name, bool *ret_is_int)
{
    const gd_endpoint_conf_t *ep = ctx;

    *ret_is_int = false;
    for (size_t i = 0; i < ep->nparams; i++)
        if ((src == 0 ? i < ep->ncaptures : ep->params[i].src == (src == 1 ? GD_SRC_QUERY : GD_SRC_HEADER)) &&
            strcmp(ep->params[i].key, name) == 0)
            return (int)i;
    return -1;
}

/* The "for_each" of @v (a call or an endpoint, at @at) with its "concurrency" and "max_items",
 * which mean nothing without it: its one reference compiled in @scope into *@ret (the caller
 * checks what it may name, and owns *@ret). Returns 1, 0 when there is no "for_each", or an
 * error naming the place. */
static int parse_for_each(struct loader *l, const struct jpath *at, json_t *v,
                          const gd_expr_scope_t *scope, gd_expr_t *ret, size_t *ret_concurrency,
                          size_t *ret_max_items)
{
    struct jpath fe_at = {at, "for_each", 0};
    json_t *fe = json_object_get(v, "for_each");
    long long concurrency = 0, max_items = 0;
    gd_text_template_t t;
    char msg[512];
    int r;

    if (fe == NULL) {
        if (json_object_get(v, "concurrency") != NULL || json_object_get(v, "max_items") != NULL)
            return fail(l, at, "\"concurrency\" and \"max_items\" go with \"for_each\"");
        return 0;
    }
    if (!json_is_string(fe))
        return fail_type(l, &fe_at, fe, "a string like \"{posts[*].id}\" or \"{query.ids}\"");
    if ((r = get_int(l, at, v, "concurrency", 1, GD_FOR_EACH_MAX_ITEMS,
                     GD_FOR_EACH_DEFAULT_CONCURRENCY, &concurrency)) < 0 ||
        (r = get_int(l, at, v, "max_items", 1, GD_FOR_EACH_MAX_ITEMS,
                     GD_FOR_EACH_DEFAULT_MAX_ITEMS, &max_items)) < 0)
        return r;
    if (gd_text_template_compile(json_string_value(fe), scope, &t, msg, sizeof(msg)) < 0)
        return fail(l, &fe_at, "%s", msg);
    if (t.nparts != 1 || !t.is_typed) {
        gd_text_template_dispose(&t);
        *ret = (gd_expr_t){.kind = GD_EXPR_ERRORS}; /* the callers' "not exactly one reference" */
    } else {
        *ret = t.parts[0].expr;
        free(t.parts); /* the expression moved into *ret */
    }
    *ret_concurrency = (size_t)concurrency;
    *ret_max_items = (size_t)max_items;
    return 1;
}

/* "for_each" on a call: one reference, to a call's result or to a list parameter, whose items
 * the call runs for. */
static int load_for_each(struct loader *l, const struct jpath *at, json_t *v,
                         gd_endpoint_conf_t *ep, gd_call_conf_t *c)
{
    struct jpath fe_at = {at, "for_each", 0};
    const struct call_scope *cs = l->calling;
    gd_expr_scope_t scope = {cs->names, cs->ncalls, resolve_for_each_param, ep, false};
    gd_expr_t e;
    int r = parse_for_each(l, at, v, &scope, &e, &c->concurrency, &c->max_items);

    if (r <= 0)
        return r;
    bool is_list = e.kind == GD_EXPR_PARAM && is_list_type(ep->params[e.index].type);
    if (!(e.kind == GD_EXPR_CALL || is_list)) {
        gd_expr_dispose(&e);
        return fail(l, &fe_at,
                    "must be exactly one reference to a call's result (\"{posts[*].id}\") or to "
                    "a list parameter (\"{query.ids}\"), not %s",
                    quote(l, json_string_value(json_object_get(v, "for_each"))));
    }
    c->has_for_each = true;
    c->for_each = e;
    c->for_each_text = gd_xstrdup(json_string_value(json_object_get(v, "for_each")));
    if (c->for_each.kind == GD_EXPR_CALL)
        add_need(c, c->for_each.index);
    return 0;
}

static int load_call(struct loader *l, const struct jpath *at, const char *name, json_t *v,
                     gd_config_t *cfg, gd_endpoint_conf_t *ep, gd_call_conf_t *c)
{
    static const char *const sql_keys[] = {"sql",        "args",     "row",   "timeout_ms",
                                           "optional",   "max_rows", "cache", "max_body_bytes",
                                           "idempotent", "after",    "when",  "retry",
                                           "select",     "fields",   "omit",  "rename",
                                           "for_each",   "concurrency", "max_items", NULL};
    json_t *name_str;
    uint64_t timeout_ms;
    int r;

    c->name = gd_xstrdup(name);
    name_str = json_string(name);
    c->name_json = json_dumps(name_str, JSON_ENCODE_ANY);
    json_decref(name_str);
    GD_REQUIRE(c->name_json != NULL); /* only allocation can fail: the name is valid UTF-8 */
    if (!json_is_object(v))
        return fail_type(l, at, v, "an object");
    if ((r = load_for_each(l, at, v, ep, c)) < 0) /* first: its templates may use {item} */
        return r;
    if (json_object_get(v, "sql") != NULL) {
        if (json_object_get(v, "upstream") != NULL)
            return fail(l, at, "a call has either \"upstream\" or \"sql\", not both");
        if ((r = check_object(l, at, v, sql_keys)) < 0 ||
            (r = load_sql_call(l, at, v, cfg, ep, c)) < 0)
            return r;
    } else if ((r = load_http_call(l, at, v, cfg, ep, c)) < 0) {
        return r;
    }
    if ((r = load_after(l, at, v, c)) < 0 || (r = load_when(l, at, v, ep, c)) < 0)
        return r;
    if ((r = get_duration(l, at, v, "timeout_ms", false, ep->timeout_ms, &timeout_ms)) < 0 ||
        (r = get_bool(l, at, v, "optional", false, &c->is_optional)) < 0 ||
        (r = load_reshape(l, at, v, c)) < 0)
        return r;
    c->timeout_ms = timeout_ms < ep->timeout_ms ? timeout_ms : ep->timeout_ms;
    return load_call_cache(l, at, v, c);
}

/* A JSON template being compiled (a call's "body", an endpoint's "response"): the fixed JSON
 * text since the last value, and what compiles each string of the document. */
struct jtemplate {
    char *lit;
    size_t lit_len, lit_cap;
    /* Compiles the string @v at @at: appends it as fixed text (jtemplate_add_dump()), or ends
     * the fixed text (jtemplate_take_lit()) and records a value part. */
    int (*on_string)(struct loader *l, const struct jpath *at, json_t *v, struct jtemplate *t);
    void *ctx;
};

static void jtemplate_add_lit(struct jtemplate *t, const char *s, size_t len)
{
    if (t->lit_len + len + 1 > t->lit_cap) {
        t->lit_cap = (t->lit_len + len + 1) * 2;
        t->lit = gd_xrealloc(t->lit, t->lit_cap);
    }
    memcpy(t->lit + t->lit_len, s, len);
    t->lit_len += len;
}

static void jtemplate_add_dump(struct jtemplate *t, const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    GD_REQUIRE(text != NULL); /* only allocation can fail: jansson parsed it */
    jtemplate_add_lit(t, text, strlen(text));
    free(text);
}

/* The fixed text since the last value, as a new string (*@ret_len bytes); starts anew. */
static char *jtemplate_take_lit(struct jtemplate *t, size_t *ret_len)
{
    char *lit = gd_xstrndup(t->lit != NULL ? t->lit : "", t->lit_len);
    *ret_len = t->lit_len;
    t->lit_len = 0;
    return lit;
}

/* A string whose templates hold no value: its text as it is meant ("{{" undone), as JSON. */
static void jtemplate_add_text(struct jtemplate *t, const char *text, size_t len)
{
    json_t *s = json_stringn(text, len);
    jtemplate_add_dump(t, s);
    json_decref(s);
}

/* Walks the JSON document @v at @at: keys in order, every non-string as it is, each string
 * through t->on_string. */
static int compile_jtemplate(struct loader *l, const struct jpath *at, json_t *v,
                             struct jtemplate *t)
{
    int r;

    if (json_is_object(v)) {
        bool is_first = true;
        jtemplate_add_lit(t, "{", 1);
        for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
            const char *key = json_object_iter_key(it);
            struct jpath kp = {at, key, 0};
            if (!is_first)
                jtemplate_add_lit(t, ",", 1);
            is_first = false;
            jtemplate_add_text(t, key, strlen(key));
            jtemplate_add_lit(t, ":", 1);
            if ((r = compile_jtemplate(l, &kp, json_object_iter_value(it), t)) < 0)
                return r;
        }
        jtemplate_add_lit(t, "}", 1);
        return 0;
    }
    if (json_is_array(v)) {
        jtemplate_add_lit(t, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            struct jpath ip = {at, NULL, i};
            if (i > 0)
                jtemplate_add_lit(t, ",", 1);
            if ((r = compile_jtemplate(l, &ip, json_array_get(v, i), t)) < 0)
                return r;
        }
        jtemplate_add_lit(t, "]", 1);
        return 0;
    }
    if (!json_is_string(v)) {
        jtemplate_add_dump(t, v);
        return 0;
    }
    return t->on_string(l, at, v, t);
}

/* A call's JSON body template ------------------------------------------------------------- */

struct body_ctx {
    gd_endpoint_conf_t *ep;
    gd_call_conf_t *c;
};

/* Ends the current literal in a new part of the call's body; returns the part. */
static gd_body_part_t *body_flush(struct jtemplate *t)
{
    gd_call_conf_t *c = ((struct body_ctx *)t->ctx)->c;
    gd_body_part_t *part;

    c->body_parts = gd_xrealloc(c->body_parts, (c->nbody_parts + 1) * sizeof(*c->body_parts));
    part = &c->body_parts[c->nbody_parts++];
    memset(part, 0, sizeof(*part));
    part->json = jtemplate_take_lit(t, &part->json_len);
    return part;
}

static int compile_body_string(struct loader *l, const struct jpath *at, json_t *v,
                               struct jtemplate *jt)
{
    gd_endpoint_conf_t *ep = ((struct body_ctx *)jt->ctx)->ep;
    gd_template_t t = {0};
    int r;

    set_ref_use(l, GD_REF_TEXT);
    if ((r = compile_template(l, at, json_string_value(v), ep, &t)) < 0)
        return r;
    bool has_var = false;
    for (size_t i = 0; i < t.nparts; i++)
        has_var |= !t.parts[i].is_literal;
    if (!has_var) {
        jtemplate_add_text(jt, t.nparts == 1 ? t.parts[0].literal : "",
                           t.nparts == 1 ? t.parts[0].literal_len : 0);
        gd_template_dispose(&t);
        return 0;
    }
    gd_body_part_t *part = body_flush(jt);
    part->has_value = true;
    gd_call_ref_t *ref = t.nparts == 1 ? ref_of(ep, t.parts[0].value_index) : NULL;
    part->is_json = ref != NULL;
    if (ref != NULL)
        ref->use = GD_REF_JSON; /* exactly one reference: it keeps its JSON type */
    part->is_typed =
        t.nparts == 1 && ref == NULL && ep->params[t.parts[0].value_index].type == GD_PARAM_INT;
    part->value = t;
    return 0;
}

/* "body" and "idempotent" of an HTTP call whose method is set. */
static int load_body(struct loader *l, const struct jpath *at, json_t *v, gd_endpoint_conf_t *ep,
                     gd_call_conf_t *c)
{
    struct jpath body_at = {at, "body", 0};
    json_t *body = json_object_get(v, "body");
    /* RFC 9110 section 9.2.2: PUT and DELETE may be repeated, POST and PATCH not. */
    bool is_idempotent = strcmp(c->method, "POST") != 0 && strcmp(c->method, "PATCH") != 0;
    int r;

    if (body != NULL && (json_is_object(body) || json_is_array(body))) {
        struct body_ctx ctx = {ep, c};
        struct jtemplate b = {.on_string = compile_body_string, .ctx = &ctx};
        if (strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0)
            return fail(l, &body_at, "a %s call cannot send a body (use POST, PUT, PATCH or DELETE)",
                        c->method);
        r = compile_jtemplate(l, &body_at, body, &b);
        if (r == 0)
            body_flush(&b);
        free(b.lit);
        if (r < 0)
            return r;
    } else if (body != NULL) {
        if (!json_is_string(body))
            return fail_type(l, &body_at, body, "\"{body}\", an object or an array");
        if (strcmp(json_string_value(body), "{body}") != 0)
            return fail(l, &body_at,
                        "must be \"{body}\" (the client's body, forwarded unchanged), not %s",
                        quote(l, json_string_value(body)));
        if (strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0)
            return fail(l, &body_at, "a %s call cannot send a body (use POST, PUT, PATCH or DELETE)",
                        c->method);
        c->is_body_forwarded = true;
    }
    if ((r = get_bool(l, at, v, "idempotent", is_idempotent, &c->is_idempotent)) < 0)
        return r;
    return 0;
}

static int load_http_call(struct loader *l, const struct jpath *at, json_t *v,
                          const gd_config_t *cfg, gd_endpoint_conf_t *ep, gd_call_conf_t *c)
{
    static const char *const keys[] = {
        "upstream",        "path",    "method",     "headers", "timeout_ms", "optional",
        "forward_headers", "null_on", "status_map", "body",    "idempotent", "retry",
        "after",           "when",    "cache",      "select", "fields", "omit", "rename",
        "for_each",        "concurrency", "max_items", NULL};
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", NULL};
    struct jpath upstream_at = {at, "upstream", 0}, path_at = {at, "path", 0};
    struct jpath method_at = {at, "method", 0};
    const char *upstream, *path, *method;
    char byte[8];
    int r;

    c->type = GD_CALL_TYPE_HTTP;
    if ((r = check_object(l, at, v, keys)) < 0 ||
        (r = get_string(l, at, v, "upstream", true, NULL, &upstream)) < 0)
        return r;
    for (size_t i = 0; i < cfg->nupstreams && c->upstream == NULL; i++)
        if (strcmp(cfg->upstreams[i].name, upstream) == 0)
            c->upstream = &cfg->upstreams[i];
    if (c->upstream == NULL)
        return fail(l, &upstream_at, "unknown upstream %s", quote(l, upstream));
    c->source = c->upstream->index;

    if ((r = get_string(l, at, v, "path", true, NULL, &path)) < 0)
        return r;
    if (path[0] != '/')
        return fail(l, &path_at, "must start with \"/\"");
    set_ref_use(l, GD_REF_URL);
    if ((r = compile_template(l, &path_at, path, ep, &c->path)) < 0)
        return r;
    /* Values are percent-encoded when expanded; literals must already be valid in a request
     * target (RFC 9112 section 3.2). */
    for (size_t i = 0; i < c->path.nparts; i++) {
        const gd_template_part_t *part = &c->path.parts[i];
        for (size_t j = 0; part->is_literal && j < part->literal_len; j++) {
            unsigned char ch = (unsigned char)part->literal[j];
            if (ch <= 0x20 || ch >= 0x7f || ch == '#')
                return fail(l, &path_at, "bad character %s in the path (percent-encode it)",
                            describe_byte(byte, (char)ch));
        }
    }

    if ((r = get_string(l, at, v, "method", false, "GET", &method)) < 0)
        return r;
    if (!is_in(method, methods))
        return fail(l, &method_at,
                    "unsupported method %s (expected GET, HEAD, POST, PUT, PATCH or DELETE)",
                    quote(l, method));
    c->method = gd_xstrdup(method);
    if ((r = load_body(l, at, v, ep, c)) < 0 ||
        (r = load_retry(l, at, v, false, &c->upstream->retry, &c->retry)) < 0)
        return r;
    json_t *own_retry = json_object_get(v, "retry");
    if (own_retry != NULL && json_object_get(own_retry, "hedge_after_ms") != NULL &&
        c->retry.hedge_after_ms != 0 && !c->is_idempotent) {
        struct jpath rat = {at, "retry", 0}, hat = {&rat, "hedge_after_ms", 0};
        return fail(l, &hat, "a %s call is never hedged unless it is marked \"idempotent\": true",
                    c->method);
    }
    if (own_retry != NULL && c->retry.attempts > 1 && !c->is_idempotent) {
        struct jpath rat = {at, "retry", 0};
        return fail(l, &rat, "a %s call is never retried unless it is marked \"idempotent\": true",
                    c->method);
    }

    if ((r = load_headers(l, at, v, ep, c)) < 0)
        return r;
    inherit_upstream_headers(c);
    return load_call_answer_rules(l, at, v, c);
}

/* "admin_listen": an address, or null to turn the admin listener off. */
/* "redis": {"url": "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]", ...}. The URL's password,
 * if any, is overridden by "password"; neither is ever logged (the URL is kept masked). */
static int parse_redis_url(struct loader *l, const struct jpath *at, const char *url,
                           const char *shown, gd_redis_conf_t *rc)
{
    const char *p, *at_sign, *host_start, *host_end, *end;
    char host[256];

    if (strncmp(url, "rediss://", 9) == 0)
        return fail(l, at,
                    "rediss:// (TLS) is not supported: Debian 12's hiredis 0.14 has no "
                    "TLS; reach a TLS Redis through a local tunnel (stunnel, spiped)");
    if (strncmp(url, "redis://", 8) != 0)
        return fail(l, at, "malformed URL (expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])");
    p = url + 8;
    end = p + strcspn(p, "/");
    at_sign = memchr(p, '@', (size_t)(end - p));
    if (at_sign != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at_sign - p));
        if (colon == NULL)
            return fail(l, at, "the URL's user info must be [USER]:PASSWORD");
        if (colon > p)
            rc->user = gd_xstrndup(p, (size_t)(colon - p));
        if (at_sign > colon + 1)
            rc->password = gd_xstrndup(colon + 1, (size_t)(at_sign - colon - 1));
        p = at_sign + 1;
    }
    if (*p == '[') {
        host_start = p + 1;
        host_end = memchr(p, ']', (size_t)(end - p));
        if (host_end == NULL)
            goto malformed;
        p = host_end + 1;
    } else {
        host_start = p;
        host_end = memchr(p, ':', (size_t)(end - p));
        if (host_end == NULL)
            host_end = end;
        p = host_end;
    }
    if (host_end == host_start || (size_t)(host_end - host_start) >= sizeof(host))
        goto malformed;
    memcpy(host, host_start, (size_t)(host_end - host_start));
    host[host_end - host_start] = '\0';
    for (const char *c = host; *c != '\0'; c++)
        if (!(is_alpha(*c) || is_digit(*c) || *c == '-' || *c == '.' || *c == '_' || *c == ':'))
            goto malformed;
    rc->is_host_numeric = inet_pton(AF_INET, host, &(struct in_addr){0}) == 1 ||
                          inet_pton(AF_INET6, host, &(struct in6_addr){0}) == 1;
    if (host_start[-1] == '[' && inet_pton(AF_INET6, host, &(struct in6_addr){0}) != 1)
        goto malformed;
    rc->port = 6379;
    if (p != end && (*p != ':' || parse_port(p + 1, (size_t)(end - p - 1), &rc->port) < 0))
        return fail(l, at, "bad port in URL %s (expected 1 to 65535)", quote(l, shown));
    if (*end == '/' && end[1] != '\0') {
        unsigned db = 0;
        for (const char *c = end + 1; *c != '\0'; c++) {
            if (!is_digit(*c) || db > 100000)
                return fail(l, at, "the URL's /DB must be a database number, in %s",
                            quote(l, shown));
            db = db * 10 + (unsigned)(*c - '0');
        }
        rc->db = db;
    }
    rc->host = gd_xstrdup(host);
    return 0;

malformed:
    return fail(l, at, "malformed URL %s (expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])",
                quote(l, shown));
}

static void free_redis(gd_redis_conf_t *rc)
{
    if (rc == NULL)
        return;
    free(rc->url);
    free(rc->host);
    free(rc->user);
    free(rc->password);
    free(rc->key_prefix);
    free(rc->stats);
    free(rc);
}

static int load_redis(struct loader *l, json_t *root, gd_config_t *cfg)
{
    static const char *const keys[] = {
        "url",        "password",    "timeout_ms", "connect_timeout_ms",    "pool_size",
        "key_prefix", "local_share", "tls",        "cache_max_entry_bytes", NULL};
    struct jpath at = {NULL, "redis", 0}, url_at = {&at, "url", 0}, pw_at = {&at, "password", 0},
                 share_at = {&at, "local_share", 0}, tls_at = {&at, "tls", 0};
    json_t *v = json_object_get(root, "redis");
    const char *url, *password, *prefix;
    char *expanded = NULL;
    size_t nsubst = 0;
    long long x = 0;
    int r;

    if (v == NULL)
        return 0;
    if ((r = check_object(l, &at, v, keys)) < 0)
        return r;
    if (json_object_get(v, "tls") != NULL)
        return fail(l, &tls_at,
                    "not supported: Debian 12's hiredis 0.14 has no TLS; reach a TLS "
                    "Redis through a local tunnel (stunnel, spiped) on 127.0.0.1");
    gd_redis_conf_t *rc = gd_xcalloc(1, sizeof(*rc));
    cfg->redis = rc;
    if ((r = get_string(l, &at, v, "url", true, NULL, &url)) < 0 ||
        (r = subst_env(l, &url_at, url, false, &expanded, &nsubst)) < 0)
        return r;
    r = parse_redis_url(l, &url_at, expanded, url, rc);
    free(expanded);
    if (r < 0)
        return r;
    /* Shown with its user info masked: a literal password must not reach a log line. */
    const char *info_end = strchr(url + 8, '@');
    if (info_end != NULL && info_end < url + 8 + strcspn(url + 8, "/")) {
        size_t n = strlen(url) + 8;
        rc->url = gd_xmalloc(n);
        snprintf(rc->url, n, "redis://***@%s", info_end + 1);
    } else {
        rc->url = gd_xstrdup(url);
    }
    if ((r = get_string(l, &at, v, "password", false, NULL, &password)) < 0)
        return r;
    if (password != NULL) {
        if ((r = subst_env(l, &pw_at, password, false, &expanded, &nsubst)) < 0)
            return r;
        free(rc->password);
        rc->password = expanded;
        if (rc->password[0] == '\0')
            return fail(l, &pw_at, "must not be empty (leave it out for no AUTH)");
    }
    if ((r = get_duration(l, &at, v, "timeout_ms", false, 50, &rc->timeout_ms)) < 0 ||
        (r = get_duration(l, &at, v, "connect_timeout_ms", false, 1000, &rc->connect_timeout_ms)) <
            0 ||
        (r = get_int(l, &at, v, "pool_size", 1, 16, 1, &x)) < 0)
        return r;
    rc->pool_size = (size_t)x;
    if ((r = get_string(l, &at, v, "key_prefix", false, "gatherd:", &prefix)) < 0)
        return r;
    if (strlen(prefix) > 200) {
        struct jpath kp = {&at, "key_prefix", 0};
        return fail(l, &kp, "must be at most 200 bytes");
    }
    rc->key_prefix = gd_xstrdup(prefix);
    if ((r = get_int(l, &at, v, "cache_max_entry_bytes", 1, 64 << 20, 1 << 20, &x)) < 0)
        return r;
    rc->cache_max_entry_bytes = (size_t)x;
    rc->local_share = 0.5;
    json_t *share = json_object_get(v, "local_share");
    if (share != NULL && !json_is_number(share))
        return fail_type(l, &share_at, share, "a number");
    if (share != NULL && !(json_number_value(share) > 0 && json_number_value(share) <= 1))
        return fail(l, &share_at, "must be above 0 and at most 1, not %g",
                    json_number_value(share));
    if (share != NULL)
        rc->local_share = json_number_value(share);
    rc->stats = gd_xmalloc(sizeof(*rc->stats));
    gd_redis_stats_init(rc->stats);
    l->redis = rc;
    return 0;
}

static int load_admin(struct loader *l, json_t *root, gd_config_t *cfg)
{
    struct jpath at = {NULL, "admin_listen", 0};
    json_t *v = json_object_get(root, "admin_listen");
    const char *text = DEFAULT_ADMIN_LISTEN;
    int r;

    if (json_is_null(v))
        return 0;
    if (v != NULL) {
        if (!json_is_string(v))
            return fail_type(l, &at, v, "a string or null");
        text = json_string_value(v);
    }
    if ((r = parse_listen(l, &at, text, &cfg->admin_listen)) < 0)
        return r;
    cfg->has_admin = true;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (cfg->listen[i].addrlen == cfg->admin_listen.addrlen &&
            memcmp(&cfg->listen[i].addr, &cfg->admin_listen.addr, cfg->admin_listen.addrlen) == 0) {
            return fail(l, &at, "same address as listen[%zu]", i);
        }
    }
    return 0;
}

static int load_log(struct loader *l, json_t *root, gd_config_t *cfg)
{
    static const char *const keys[] = {"format", "level", NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    struct jpath at = {NULL, "log", 0}, format_at = {&at, "format", 0}, level_at = {&at, "level", 0};
    json_t *v = json_object_get(root, "log");
    const char *format, *level;
    int r;

    cfg->log = (gd_log_conf_t){.is_json = false, .level = 2};
    if (v == NULL)
        return 0;
    if ((r = check_object(l, &at, v, keys)) < 0 ||
        (r = get_string(l, &at, v, "format", false, "text", &format)) < 0 ||
        (r = get_string(l, &at, v, "level", false, "info", &level)) < 0)
        return r;
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0)
        return fail(l, &format_at, "must be \"text\" or \"json\", not %s", quote(l, format));
    cfg->log.is_json = strcmp(format, "json") == 0;
    for (cfg->log.level = 0; levels[cfg->log.level] != NULL; cfg->log.level++)
        if (strcmp(levels[cfg->log.level], level) == 0)
            return 0;
    return fail(l, &level_at, "must be \"error\", \"warn\", \"info\" or \"debug\", not %s",
                quote(l, level));
}

/* "retry" of the postgres section (@is_section: the budget's keys allowed) or of a SQL call:
 * the HTTP "retry" without "on", "attempt_timeout_ms" and "hedge_after_ms", since what a SQL
 * call retries is fixed (40001, 40P01, a connection broken before the query was sent), and a
 * slow or timed-out query is never run a second time. */
static int load_sql_retry(struct loader *l, const struct jpath *at, json_t *v, bool is_section,
                          const gd_retry_conf_t *base, gd_retry_conf_t *out)
{
    static const char *const http_only[] = {"on", "attempt_timeout_ms", "hedge_after_ms", NULL};
    static const char *const budget_keys[] = {"budget_percent", "min_retries_per_s", NULL};
    struct jpath rat = {at, "retry", 0};
    json_t *r_json = json_object_get(v, "retry");

    for (size_t i = 0; json_is_object(r_json) && !is_section && budget_keys[i] != NULL; i++)
        if (json_object_get(r_json, budget_keys[i]) != NULL) {
            struct jpath kp = {&rat, budget_keys[i], 0};
            return fail(l, &kp,
                        "the retry budget is all SQL calls': set it in the postgres "
                        "section's \"retry\"");
        }

    for (size_t i = 0; json_is_object(r_json) && http_only[i] != NULL; i++)
        if (json_object_get(r_json, http_only[i]) != NULL) {
            struct jpath kp = {&rat, http_only[i], 0};
            return fail(l, &kp,
                        "not for SQL calls: they retry serialization failures (40001), deadlocks "
                        "(40P01) and connections broken before the query was sent, nothing else");
        }
    return load_retry(l, at, v, is_section, base, out);
}

static int load_pg_readiness(struct loader *l, const struct jpath *at, json_t *v,
                             gd_postgres_conf_t *pg)
{
    /* in the order of gd_pg_readiness_t */
    static const char *const names[] = {"first_connect", "connected", "ignored", NULL};
    struct jpath readiness_at = {at, "readiness", 0};
    const char *name;
    int r;

    if ((r = get_string(l, at, v, "readiness", false, names[0], &name)) < 0)
        return r;
    for (size_t i = 0; names[i] != NULL; i++) {
        if (strcmp(names[i], name) == 0) {
            pg->readiness = (gd_pg_readiness_t)i;
            return 0;
        }
    }
    return fail(l, &readiness_at, "must be \"first_connect\", \"connected\" or \"ignored\", not %s",
                quote(l, name));
}

static int load_postgres(struct loader *l, json_t *root, gd_config_t *cfg)
{
    static const char *const keys[] = {"conninfo",           "pool_size",
                                       "acquire_timeout_ms", "connect_timeout_ms",
                                       "max_rows",           "max_body_bytes",
                                       "readiness",          "prepared",
                                       "retry",              "pipeline_depth",
                                       NULL};
    struct jpath at = {NULL, "postgres", 0}, conninfo_at = {&at, "conninfo", 0};
    json_t *v = json_object_get(root, "postgres");
    gd_postgres_conf_t *pg = &cfg->postgres;
    const char *conninfo;
    char *perr = NULL;
    size_t nsubst = 0;
    long long x = 0;
    int r;

    if (v == NULL)
        return 0;
    cfg->has_postgres = true;
    if ((r = check_object(l, &at, v, keys)) < 0 ||
        (r = get_string(l, &at, v, "conninfo", false, "", &conninfo)) < 0 ||
        (r = subst_env(l, &conninfo_at, conninfo, false, &pg->conninfo, &nsubst)) < 0)
        return r;
    conninfo = pg->conninfo; /* expanded: it is never logged */
    /* Parsing is all that is checked: gatherd -t must not need the database. */
    if (conninfo[0] != '\0') {
        PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
        if (opts == NULL) {
            /* libpq's message ends with a newline; gatherd's are one line (found by fuzzing). */
            if (perr != NULL)
                perr[strcspn(perr, "\r\n")] = '\0';
            /* libpq quotes the offending part, which may be a password: say so only when none
             * can be in it. */
            bool may_hold_password =
                strstr(conninfo, "password") != NULL || strchr(conninfo, '@') != NULL || nsubst > 0;
            r = fail(l, &conninfo_at, "not a valid libpq connection string or URI%s%s",
                     may_hold_password || perr == NULL ? "" : ": ",
                     may_hold_password || perr == NULL ? "" : perr);
            PQfreemem(perr);
            return r;
        }
        PQconninfoFree(opts);
    }
    if ((r = get_int(l, &at, v, "pool_size", 1, 10000, DEFAULT_PG_POOL_SIZE, &x)) < 0)
        return r;
    pg->pool_size = (size_t)x;
    if ((r = get_int(l, &at, v, "pipeline_depth", 1, 64, DEFAULT_PG_PIPELINE_DEPTH, &x)) < 0)
        return r;
    pg->pipeline_depth = (size_t)x;
    if ((r = get_duration(l, &at, v, "acquire_timeout_ms", false, DEFAULT_PG_ACQUIRE_TIMEOUT_MS,
                          &pg->acquire_timeout_ms)) < 0 ||
        (r = get_duration(l, &at, v, "connect_timeout_ms", false, DEFAULT_PG_CONNECT_TIMEOUT_MS,
                          &pg->connect_timeout_ms)) < 0)
        return r;
    if ((r = get_int(l, &at, v, "max_rows", 1, LLONG_MAX, DEFAULT_PG_MAX_ROWS, &x)) < 0)
        return r;
    pg->max_rows = (size_t)x;
    if ((r = get_int(l, &at, v, "max_body_bytes", 1, LLONG_MAX, DEFAULT_PG_MAX_BODY_BYTES, &x)) < 0)
        return r;
    pg->max_body_bytes = (size_t)x;
    if ((r = get_bool(l, &at, v, "prepared", true, &pg->is_prepared)) < 0 ||
        (r = load_sql_retry(l, &at, v, true, &no_retry, &pg->retry)) < 0)
        return r;
    pg->retry_budget = gd_xmalloc(sizeof(*pg->retry_budget));
    gd_retry_budget_init(pg->retry_budget);
    return load_pg_readiness(l, &at, v, pg);
}

/* Skips what in SQL text cannot hold a placeholder: quoted strings and identifiers, comments,
 * dollar-quoted bodies. Returns the position after it, or @p when none starts there. */
static const char *skip_sql_literal(const char *p)
{
    if (*p == '\'' || *p == '"') {
        char q = *p++;
        for (; *p != '\0'; p++) {
            if (*p == q && p[1] == q)
                p++; /* a doubled quote stands for itself */
            else if (*p == q)
                return p + 1;
        }
        return p;
    }
    if (p[0] == '-' && p[1] == '-') {
        const char *nl = strchr(p, '\n');
        return nl != NULL ? nl + 1 : p + strlen(p);
    }
    if (p[0] == '/' && p[1] == '*') {
        const char *end = strstr(p + 2, "*/");
        return end != NULL ? end + 2 : p + strlen(p);
    }
    if (p[0] == '$' && !is_digit(p[1])) {
        /* $tag$ ... $tag$ (the tag may be empty) */
        const char *t = p + 1;
        while (is_alpha(*t) || is_digit(*t) || *t == '_')
            t++;
        if (*t == '$') {
            size_t taglen = (size_t)(t - p) + 1;
            for (const char *q = t + 1; *q != '\0'; q++)
                if (strncmp(q, p, taglen) == 0)
                    return q + taglen;
            return p + strlen(p);
        }
    }
    return p;
}

/* Finds the highest $n placeholder of @sql; -1 with a message when it is not one statement. */
static int scan_sql(struct loader *l, const struct jpath *at, const char *sql, int *ret_max)
{
    int max = 0;
    bool has_ended = false; /* a ';' was seen */

    for (const char *p = sql; *p != '\0';) {
        const char *q = skip_sql_literal(p);
        if (q != p) {
            p = q;
            continue;
        }
        if (*p == ';') {
            has_ended = true;
        } else if (has_ended && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            return fail(l, at, "must be one statement (text follows a \";\")");
        } else if (*p == '$' && is_digit(p[1])) {
            long n = strtol(p + 1, (char **)&q, 10);
            if (n < 1 || n > MAX_SQL_PARAMS)
                return fail(l, at, "placeholder $%ld is out of range (1 to %d)", n, MAX_SQL_PARAMS);
            if (n > max)
                max = (int)n;
            p = q;
            continue;
        }
        p++;
    }
    *ret_max = max;
    return 0;
}

/* The index of @sql among the config's statements, added when new. */
static size_t intern_statement(gd_config_t *cfg, const char *sql, int nparams)
{
    for (size_t i = 0; i < cfg->nstatements; i++)
        if (strcmp(cfg->statements[i], sql) == 0)
            return i;
    cfg->statements = gd_xrealloc(cfg->statements, (cfg->nstatements + 1) * sizeof(char *));
    cfg->statement_nparams =
        gd_xrealloc(cfg->statement_nparams, (cfg->nstatements + 1) * sizeof(int));
    cfg->statement_is_batchable =
        gd_xrealloc(cfg->statement_is_batchable, (cfg->nstatements + 1) * sizeof(bool));
    cfg->statements[cfg->nstatements] = gd_xstrdup(sql);
    cfg->statement_nparams[cfg->nstatements] = nparams;
    cfg->statement_is_batchable[cfg->nstatements] = is_batchable_read(sql);
    return cfg->nstatements++;
}

/* Whether SQL text @sql reads only, as far as its first keyword tells, after blanks, comments
 * and opening parentheses: SELECT, VALUES, TABLE, so that running it again changes nothing
 * (unless a function it calls writes: such a call says "idempotent": false). WITH is not
 * taken: its parts may write. */
static bool is_plain_select(const char *sql)
{
    static const char *const words[] = {"select", "values", "table", NULL};
    const char *p = sql, *q;

    for (;;) {
        p += strspn(p, " \t\r\n(");
        if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*')) {
            q = skip_sql_literal(p);
            if (q == p)
                return false;
            p = q;
            continue;
        }
        break;
    }
    for (size_t i = 0; words[i] != NULL; i++) {
        size_t n = strlen(words[i]);
        if (strncasecmp(p, words[i], n) == 0 && !is_alpha(p[n]) && !is_digit(p[n]) && p[n] != '_')
            return true;
    }
    return false;
}

/* Whether plain select @sql may share a batch of queries, one implicit transaction, with
 * others (postgres.pipeline_depth): it makes no table (SELECT ... INTO) and locks no row (FOR
 * UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE: the lock would last to the batch's
 * end). Words are compared outside literals and comments, upper-cased, cut at 7 letters. */
static bool is_batchable_read(const char *sql)
{
    char word[8], prev[8] = "";

    if (!is_plain_select(sql))
        return false;
    for (const char *p = sql; *p != '\0';) {
        const char *q = skip_sql_literal(p);
        size_t n = 0;
        if (q != p) {
            p = q;
            continue;
        }
        if (!is_alpha(*p) && *p != '_') {
            p += is_digit(*p) ? strspn(p, "0123456789") : 1; /* 1x is no word x */
            continue;
        }
        while (is_alpha(*p) || is_digit(*p) || *p == '_' || (unsigned char)*p >= 0x80) {
            if (n + 1 < sizeof(word))
                word[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
            p++;
        }
        word[n] = '\0';
        if (strcmp(word, "INTO") == 0)
            return false;
        if (strcmp(prev, "FOR") == 0 && (strcmp(word, "UPDATE") == 0 || strcmp(word, "SHARE") == 0 ||
                                         strcmp(word, "NO") == 0 || strcmp(word, "KEY") == 0))
            return false;
        memcpy(prev, word, sizeof(prev));
    }
    return true;
}

static int load_sql_call(struct loader *l, const struct jpath *at, json_t *v, gd_config_t *cfg,
                         gd_endpoint_conf_t *ep, gd_call_conf_t *c)
{
    struct jpath sql_at = {at, "sql", 0}, args_at = {at, "args", 0}, row_at = {at, "row", 0};
    const char *sql, *row;
    json_t *args = json_object_get(v, "args");
    long long x = 0;
    int nparams = 0, r;

    c->type = GD_CALL_TYPE_SQL;
    c->source = cfg->nupstreams; /* the Postgres pool comes after the upstreams */
    if ((r = get_string(l, at, v, "sql", true, NULL, &sql)) < 0)
        return r;
    if (!cfg->has_postgres)
        return fail(l, &sql_at, "a SQL call needs a \"postgres\" section at the top level");
    if (strspn(sql, " \t\r\n") == strlen(sql))
        return fail(l, &sql_at, "must not be empty");
    if ((r = scan_sql(l, &sql_at, sql, &nparams)) < 0)
        return r;
    if (args != NULL && !json_is_array(args))
        return fail_type(l, &args_at, args, "an array of strings");
    c->nargs = args != NULL ? json_array_size(args) : 0;
    if ((int)c->nargs != nparams)
        return fail(l, &args_at, "has %zu value%s but the SQL's highest placeholder is $%d", c->nargs,
                    c->nargs == 1 ? "" : "s", nparams);
    c->args = gd_xcalloc(c->nargs + 1, sizeof(*c->args));
    for (size_t i = 0; i < c->nargs; i++) {
        struct jpath ap = {&args_at, NULL, i};
        json_t *a = json_array_get(args, i);
        if (!json_is_string(a))
            return fail_type(l, &ap, a, "a string");
        set_ref_use(l, GD_REF_TEXT);
        l->allows_list_param = true;
        l->has_used_list_param = false;
        r = compile_template(l, &ap, json_string_value(a), ep, &c->args[i]);
        l->allows_list_param = false;
        if (r < 0)
            return r;
        if (l->has_used_list_param && c->args[i].nparts != 1)
            return fail(l, &ap, "a list parameter must be the whole argument, like \"{query.ids}\", "
                                "not part of %s",
                        quote(l, json_string_value(a)));
        /* An argument that is exactly one reference binds its value: an array as one Postgres
         * array, null as NULL. */
        gd_call_ref_t *ref =
            c->args[i].nparts == 1 ? ref_of(ep, c->args[i].parts[0].value_index) : NULL;
        if (ref != NULL)
            ref->use = GD_REF_SQL_VALUE;
    }
    if ((r = get_string(l, at, v, "row", false, "many", &row)) < 0)
        return r;
    if (strcmp(row, "one") != 0 && strcmp(row, "many") != 0)
        return fail(l, &row_at, "must be \"one\" or \"many\", not %s", quote(l, row));
    c->is_one_row = strcmp(row, "one") == 0;
    /* The postgres section is loaded first: its limits are every SQL call's defaults. */
    if ((r = get_int(l, at, v, "max_rows", 1, LLONG_MAX, (long long)cfg->postgres.max_rows, &x)) <
        0)
        return r;
    c->max_rows = (size_t)x;
    if ((r = get_int(l, at, v, "max_body_bytes", 1, LLONG_MAX,
                     (long long)cfg->postgres.max_body_bytes, &x)) < 0)
        return r;
    c->max_body_bytes = (size_t)x;
    if ((r = get_bool(l, at, v, "idempotent", is_plain_select(sql), &c->is_idempotent)) < 0 ||
        (r = load_sql_retry(l, at, v, false, &cfg->postgres.retry, &c->retry)) < 0)
        return r;
    if (json_object_get(v, "retry") != NULL && c->retry.attempts > 1 && !c->is_idempotent) {
        struct jpath rat = {at, "retry", 0};
        return fail(l, &rat,
                    "a SQL call is never retried unless it is a plain SELECT or marked "
                    "\"idempotent\": true");
    }
    c->statement = intern_statement(cfg, sql, nparams);
    return 0;
}

/* The endpoint's "response" template ------------------------------------------------------ */

struct response_ctx {
    const gd_expr_scope_t *scope;
    gd_response_t *resp;
};

/* Ends the current literal in a new part of the response; returns the part. */
static gd_response_part_t *response_flush(struct jtemplate *t)
{
    gd_response_t *r = ((struct response_ctx *)t->ctx)->resp;
    gd_response_part_t *part;

    r->parts = gd_xrealloc(r->parts, (r->nparts + 1) * sizeof(*r->parts));
    part = &r->parts[r->nparts++];
    memset(part, 0, sizeof(*part));
    part->json = jtemplate_take_lit(t, &part->json_len);
    return part;
}

struct response_scope {
    struct loader *l;
    gd_endpoint_conf_t *ep;
    char refusal[256]; /* why resolve_var() refused a parameter it knows (a list), or "" */
};

/* gd_expr_scope_t's resolve_param: as call templates resolve them. */
static int resolve_response_param(void *ctx, int src, const char *name, bool *ret_is_int)
{
    struct response_scope *rs = ctx;
    struct resolve_ctx rc = {rs->l, rs->ep};
    char err[256];
    int i = resolve_var(&rc, src == 0 ? GD_SRC_PATH : src == 1 ? GD_SRC_QUERY : GD_SRC_HEADER,
                        name, err, sizeof(err));

    if (i < 0 && rs->l->has_refused_list_param) /* more telling than "unknown parameter" */
        snprintf(rs->refusal, sizeof(rs->refusal), "%s", err);
    rs->l->has_refused_list_param = false;

    if (i >= 0)
        *ret_is_int = rs->ep->params[i].type == GD_PARAM_INT;
    return i;
}

static int compile_response_string(struct loader *l, const struct jpath *at, json_t *v,
                                   struct jtemplate *jt)
{
    struct response_ctx *rc = jt->ctx;
    gd_text_template_t t;
    char msg[512];

    struct response_scope *rs = rc->scope->ctx;
    rs->refusal[0] = '\0';
    if (gd_text_template_compile(json_string_value(v), rc->scope, &t, msg, sizeof(msg)) < 0)
        return fail(l, at, "%s", rs->refusal[0] != '\0' ? rs->refusal : msg);
    if (t.is_literal) {
        jtemplate_add_text(jt, t.nparts == 1 ? t.parts[0].literal : "",
                           t.nparts == 1 ? t.parts[0].literal_len : 0);
        gd_text_template_dispose(&t);
        return 0;
    }
    if (t.is_typed && t.parts[0].expr.kind == GD_EXPR_ERRORS)
        rc->resp->places_errors = true;
    gd_response_part_t *part = response_flush(jt);
    part->has_value = true;
    part->value = t;
    return 0;
}

/* "response": compiled after the calls, whose names it may reference. */
static int load_response(struct loader *l, const struct jpath *ep_at, json_t *ep_json,
                         gd_endpoint_conf_t *ep)
{
    struct jpath at = {ep_at, "response", 0};
    json_t *v = json_object_get(ep_json, "response");
    const char **names;
    struct response_scope rs = {l, ep};
    struct response_ctx ctx = {NULL, NULL};
    struct jtemplate b = {.on_string = compile_response_string, .ctx = &ctx};
    int r;

    if (v == NULL)
        return 0;
    names = gd_xcalloc(ep->ncalls + 1, sizeof(*names));
    for (size_t i = 0; i < ep->ncalls; i++)
        names[i] = ep->calls[i].name;
    gd_expr_scope_t scope = {names, ep->ncalls, resolve_response_param, &rs};
    ctx.scope = &scope;
    ctx.resp = gd_xcalloc(1, sizeof(*ctx.resp));
    ctx.resp->is_object = json_is_object(v);
    r = compile_jtemplate(l, &at, v, &b);
    if (r == 0)
        response_flush(&b);
    free(b.lit);
    free(names);
    if (r < 0) {
        gd_response_free(ctx.resp);
        return r;
    }
    ep->response = ctx.resp;
    return 0;
}

/* A call's name must not hide a source of the response template's references. */
static int check_call_name(struct loader *l, const struct jpath *at, const gd_endpoint_conf_t *ep,
                           const char *name)
{
    if (gd_expr_is_reserved_name(name) && strcmp(name, "errors") != 0)
        return fail(l, at, "a call may not be named %s (a reserved name of templates: query, "
                           "header, body, env, item)",
                    quote(l, name));
    for (size_t i = 0; i < ep->ncaptures; i++)
        if (strcmp(ep->params[i].key, name) == 0)
            return fail(l, at, "a call may not be named %s like a capture of the endpoint path",
                        quote(l, name));
    return 0;
}

/* Once every call is loaded: whether any waits for another, the order they may start in, and
 * no cycle. */
static int order_calls(struct loader *l, const struct jpath *at, gd_endpoint_conf_t *ep)
{
    const size_t **needs = gd_xcalloc(ep->ncalls, sizeof(*needs));
    size_t *nneeds = gd_xcalloc(ep->ncalls, sizeof(*nneeds));
    size_t *order = gd_xcalloc(ep->ncalls, sizeof(*order));
    size_t *cycle = gd_xcalloc(ep->ncalls + 1, sizeof(*cycle)), ncycle = 0;
    int r = 0;

    for (size_t i = 0; i < ep->ncalls; i++) {
        needs[i] = ep->calls[i].needs;
        nneeds[i] = ep->calls[i].nneeds;
        /* a for_each runs in the graph, which tops its items up as they finish */
        ep->has_dependencies |= ep->calls[i].nneeds > 0 || ep->calls[i].has_for_each;
    }
    gd_callgraph_t g = {ep->ncalls, needs, nneeds};
    if (gd_callgraph_sort(&g, order, cycle, &ncycle) < 0) {
        char text[512];
        size_t len = 0;
        struct jpath cp = {at, ep->calls[cycle[0]].name, 0};
        text[0] = '\0';
        for (size_t i = 0; i < ncycle && len < sizeof(text); i++)
            len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%s", i > 0 ? " -> " : "",
                                    ep->calls[cycle[i]].name);
        r = fail(l, &cp,
                 "the calls depend on each other in a cycle: %s (a call that references "
                 "another's result, or names it in \"after\", waits for it)",
                 text);
    } else if (ep->has_dependencies) {
        ep->call_order = order;
        order = NULL;
    }
    free(needs);
    free(nneeds);
    free(order);
    free(cycle);
    return r;
}

static void fix_template_refs(const gd_endpoint_conf_t *ep, gd_template_t *t)
{
    for (size_t i = 0; i < t->nparts; i++)
        if (!t->parts[i].is_literal && t->parts[i].value_index >= REF_INDEX_BASE)
            t->parts[i].value_index = ep->nparams + t->parts[i].value_index - REF_INDEX_BASE;
}

/* Once every parameter is known: references to call results take the value indexes after them. */
static void fix_ref_indexes(gd_endpoint_conf_t *ep)
{
    for (size_t i = 0; ep->nrefs > 0 && i < ep->ncalls; i++) {
        gd_call_conf_t *c = &ep->calls[i];
        fix_template_refs(ep, &c->path);
        for (size_t j = 0; j < c->nheaders; j++)
            fix_template_refs(ep, &c->headers[j].value);
        for (size_t j = 0; j < c->nbody_parts; j++)
            fix_template_refs(ep, &c->body_parts[j].value);
        for (size_t j = 0; j < c->nargs; j++)
            fix_template_refs(ep, &c->args[j]);
        fix_template_refs(ep, &c->when);
    }
}

static int load_calls(struct loader *l, const struct jpath *ep_at, json_t *ep_json,
                      gd_config_t *cfg, gd_endpoint_conf_t *ep)
{
    struct jpath at = {ep_at, "calls", 0};
    json_t *v = NULL;
    int r = get_member(l, ep_at, ep_json, "calls", true, &v);

    if (r < 0)
        return r;
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object");
    if (json_object_size(v) == 0)
        return fail(l, &at, "must not be empty");
    ep->calls = gd_xcalloc(json_object_size(v), sizeof(*ep->calls));
    /* Every name first: a call may reference one that comes after it. */
    const char **names = gd_xcalloc(json_object_size(v) + 1, sizeof(*names));
    struct call_scope cs = {.names = names, .ncalls = json_object_size(v)};
    size_t n = 0;
    for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it))
        names[n++] = json_object_iter_key(it);
    for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
        const char *name = json_object_iter_key(it);
        json_t *member = json_object_iter_value(it);
        struct jpath cp = {&at, name, 0};
        gd_call_conf_t *c = &ep->calls[ep->ncalls++];

        if (name[0] == '\0')
            r = fail(l, &cp, "a call name must not be empty");
        else if (strcmp(name, "errors") == 0)
            r = fail(l, &cp, "a call may not be named \"errors\" (the answer uses that key)");
        else
            r = check_call_name(l, &cp, ep, name);
        if (r == 0) {
            c->first_ref = ep->nrefs;
            cs.call = c;
            l->calling = &cs;
            r = load_call(l, &cp, name, member, cfg, ep, c);
            l->calling = NULL;
        }
        if (r < 0) {
            free(names);
            return r;
        }
    }
    free(names);
    return order_calls(l, &at, ep);
}

/* RFC 9110 section 9.1: a method is a token, case-sensitive; ours are written upper-case. */
static bool is_upper_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!is_tchar(*s) || (*s >= 'a' && *s <= 'z'))
            return false;
    return true;
}

/* What a browser may send without a config: a JSON body's type, and the ids gatherd passes on. */
static const char *const default_cors_headers[] = {"content-type", "x-request-id", "traceparent",
                                                   NULL};
/* gatherd's own answer headers that a page may want to read (the CORS-safelisted ones, like
 * Content-Type and Cache-Control, are readable anyway). */
static const char *const default_cors_expose[] = {"X-Gatherd-Complete", "X-Request-Id", "ETag",
                                                  "Retry-After", NULL};

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

static void free_cors(gd_cors_conf_t *c)
{
    if (c == NULL)
        return;
    free_strv(c->origins, c->norigins);
    free_strv(c->methods, c->nmethods);
    free(c->methods_joined);
    free_strv(c->headers, c->nheaders);
    free(c->headers_joined);
    free(c->expose_headers_joined);
    free(c);
}

static char *join_strv(char *const *v, size_t n)
{
    size_t len = 1;
    char *s, *p;

    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 2;
    s = p = gd_xmalloc(len);
    *p = '\0';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%s", i > 0 ? ", " : "", v[i]);
    return s;
}

/* An origin as a browser serialises it (RFC 6454 section 6.2): "http(s)://host[:port]". */
static bool is_valid_origin(const char *s)
{
    const char *p;

    if (strncasecmp(s, "https://", 8) == 0)
        p = s + 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        p = s + 7;
    else
        return false;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (end == NULL || end == p + 1)
            return false;
        for (const char *q = p + 1; q < end; q++)
            if (!(is_digit(*q) || strchr("abcdefABCDEF:.", *q) != NULL))
                return false;
        p = end + 1;
    } else {
        const char *start = p;
        while (is_alpha(*p) || is_digit(*p) || *p == '-' || *p == '.')
            p++;
        if (p == start)
            return false;
    }
    if (*p == ':') {
        uint16_t port;
        const char *digits = ++p;
        while (is_digit(*p))
            p++;
        if (parse_port(digits, (size_t)(p - digits), &port) < 0)
            return false;
    }
    return *p == '\0';
}

/* Reads the array of strings @key of @obj into a new vector (@lower: lower-cased), each passing
 * @check; NULL in *ret when absent. */
static int get_token_list(struct loader *l, const struct jpath *at, json_t *obj, const char *key,
                          bool (*check)(const char *), const char *want, bool lower_case,
                          bool allow_empty, char ***ret, size_t *ret_n)
{
    struct jpath kp = {at, key, 0};
    json_t *v = json_object_get(obj, key);
    char **out;
    size_t n;

    *ret = NULL;
    *ret_n = 0;
    if (v == NULL)
        return 0;
    if (!json_is_array(v))
        return fail_type(l, &kp, v, "an array of strings");
    n = json_array_size(v);
    if (n == 0 && !allow_empty)
        return fail(l, &kp, "must not be empty");
    out = gd_xcalloc(n + 1, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        struct jpath ip = {&kp, NULL, i};
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) {
            free_strv(out, n);
            return fail_type(l, &ip, e, "a string");
        }
        if (!check(json_string_value(e))) {
            int r = fail(l, &ip, "must be %s, not %s", want, quote(l, json_string_value(e)));
            free_strv(out, n);
            return r;
        }
        out[i] = gd_xstrdup(json_string_value(e));
        if (lower_case)
            for (char *p = out[i]; *p != '\0'; p++)
                *p = lower(*p);
    }
    *ret = out;
    *ret_n = n;
    return 0;
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!is_tchar(*s))
            return false;
    return true;
}

static bool is_origin_or_star(const char *s)
{
    return strcmp(s, "*") == 0 || is_valid_origin(s);
}

static int load_cors_object(struct loader *l, const struct jpath *at, json_t *v, gd_cors_conf_t *c)
{
    static const char *const keys[] = {"origins",     "methods",   "headers", "expose_headers",
                                       "credentials", "max_age_s", NULL};
    struct jpath origins_at = {at, "origins", 0};
    char **expose = NULL;
    size_t nexpose = 0;
    long long x = 0;
    json_t *member = NULL;
    int r;

    if ((r = check_object(l, at, v, keys)) < 0 ||
        (r = get_member(l, at, v, "origins", true, &member)) < 0 ||
        (r = get_token_list(l, at, v, "origins", is_origin_or_star,
                            "an origin like \"https://app.example.com\" (scheme, host, optional "
                            "port, no path) or \"*\"",
                            false, false, &c->origins, &c->norigins)) < 0 ||
        (r = get_bool(l, at, v, "credentials", false, &c->has_credentials)) < 0)
        return r;
    for (size_t i = 0; i < c->norigins; i++) {
        struct jpath ip = {&origins_at, NULL, i};
        if (strcmp(c->origins[i], "*") != 0)
            continue;
        if (c->norigins > 1)
            return fail(l, &ip, "\"*\" must be the only origin");
        if (c->has_credentials)
            return fail(l, &ip,
                        "\"*\" cannot be used with \"credentials\": true (browsers refuse "
                        "it): list the origins");
        c->is_any_origin = true;
    }
    if ((r = get_token_list(l, at, v, "methods", is_upper_token,
                            "an upper-case HTTP method like \"GET\"", false, false, &c->methods,
                            &c->nmethods)) < 0 ||
        (r = get_token_list(l, at, v, "headers", is_token, "a header name", true, true, &c->headers,
                            &c->nheaders)) < 0 ||
        (r = get_token_list(l, at, v, "expose_headers", is_token, "a header name", false, true,
                            &expose, &nexpose)) < 0 ||
        (r = get_int(l, at, v, "max_age_s", 0, MAX_CORS_MAX_AGE_S, DEFAULT_CORS_MAX_AGE_S, &x)) <
            0) {
        free_strv(expose, nexpose);
        return r;
    }
    c->max_age_s = (unsigned)x;
    if (c->methods != NULL)
        c->methods_joined = join_strv(c->methods, c->nmethods);
    if (c->headers == NULL) {
        c->has_default_headers = true;
        for (c->nheaders = 0; default_cors_headers[c->nheaders] != NULL; c->nheaders++)
            ;
        c->headers = gd_xcalloc(c->nheaders + 1, sizeof(*c->headers));
        for (size_t i = 0; i < c->nheaders; i++)
            c->headers[i] = gd_xstrdup(default_cors_headers[i]);
    }
    c->headers_joined = join_strv(c->headers, c->nheaders);
    if (json_object_get(v, "expose_headers") == NULL) {
        size_t n = 0;
        while (default_cors_expose[n] != NULL)
            n++;
        c->expose_headers_joined = join_strv((char *const *)default_cors_expose, n);
    } else {
        c->expose_headers_joined = join_strv(expose, nexpose);
        free_strv(expose, nexpose);
    }
    return 0;
}

/* "cors": an object, or false (none; for an endpoint: not the top level's either). */
static int load_cors(struct loader *l, const struct jpath *parent, json_t *obj, bool *ret_present,
                     gd_cors_conf_t **ret)
{
    struct jpath at = {parent, "cors", 0};
    json_t *v = json_object_get(obj, "cors");
    gd_cors_conf_t *c;
    int r;

    *ret = NULL;
    *ret_present = v != NULL;
    if (v == NULL || json_is_false(v))
        return 0;
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object or false");
    c = gd_xcalloc(1, sizeof(*c));
    if ((r = load_cors_object(l, &at, v, c)) < 0) {
        free_cors(c);
        return r;
    }
    *ret = c;
    return 0;
}

static void free_jwt(gd_jwt_conf_t *j)
{
    if (j == NULL)
        return;
    free_strv(j->algorithms, j->nalgorithms);
    for (size_t i = 0; i < j->nkeys; i++) {
        OPENSSL_cleanse(j->keys[i].key, j->keys[i].key_len);
        free(j->keys[i].key);
        free(j->keys[i].kid);
    }
    free(j->keys);
    free(j->issuer);
    free(j->audience);
    for (size_t i = 0; i < j->nrequired_claims; i++) {
        free(j->required_claims[i].name);
        free(j->required_claims[i].value);
    }
    free(j->required_claims);
    free(j);
}

static void free_auth(gd_auth_conf_t *a)
{
    if (a == NULL)
        return;
    free_jwt(a->jwt);
    free(a->api_key_header);
    if (a->api_key_hashes != NULL)
        OPENSSL_cleanse(a->api_key_hashes, a->napi_keys * sizeof(*a->api_key_hashes));
    free(a->api_key_hashes);
    free(a->api_key_challenge);
    free(a);
}

#define MAX_API_KEY_LEN        4096
#define MAX_API_KEYS           100000
#define MAX_KEYS_FILE_BYTES    (16 << 20)
#define DEFAULT_API_KEY_HEADER "x-api-key"

/* Adds the key [@k, @k + @len) to @a as its SHA-256. Keys are header values: printable ASCII
 * without spaces. Error messages give the key's number, never its text. */
static int add_api_key(struct loader *l, const struct jpath *at, gd_auth_conf_t *a, const char *k,
                       size_t len, const char *where, size_t number)
{
    if (len > MAX_API_KEY_LEN)
        return fail(l, at, "%s: key %zu is longer than %d bytes", where, number, MAX_API_KEY_LEN);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
            return fail(l, at, "%s: key %zu has a byte that is not printable ASCII", where, number);
    if (a->napi_keys == MAX_API_KEYS)
        return fail(l, at, "%s: more than %d keys", where, MAX_API_KEYS);
    a->api_key_hashes =
        gd_xrealloc(a->api_key_hashes, (a->napi_keys + 1) * sizeof(*a->api_key_hashes));
    SHA256((const unsigned char *)k, len, a->api_key_hashes[a->napi_keys++]);
    return 0;
}

/* Adds every key of @text: one per line (LF or CRLF), or with @is_list also separated by
 * commas and blanks; blank lines and lines starting with '#' are skipped. */
static int add_api_keys(struct loader *l, const struct jpath *at, gd_auth_conf_t *a,
                        const char *text, size_t len, bool is_list, const char *where)
{
    size_t i = 0, number = 0;
    int r;

    while (i < len) {
        size_t end = i;
        while (end < len && text[end] != '\n' &&
               !(is_list && (text[end] == ',' || text[end] == ' ')))
            end++;
        size_t s = i, e = end;
        while (s < e && (text[s] == ' ' || text[s] == '\t' || text[s] == '\r'))
            s++;
        while (e > s && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r'))
            e--;
        if (e > s && text[s] != '#' &&
            (r = add_api_key(l, at, a, text + s, e - s, where, ++number)) < 0)
            return r;
        i = end + 1;
    }
    return 0;
}

/* Reads the keys file @path (config load only: a blocking read before any loop runs). */
static int read_keys_file(struct loader *l, const struct jpath *at, gd_auth_conf_t *a,
                          const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int r;

    if (f == NULL)
        return fail(l, at, "cannot open %s: %s", quote(l, path), strerror(errno));
    while (len <= MAX_KEYS_FILE_BYTES) {
        size_t n;
        if (len == cap) {
            cap = cap == 0 ? 4096 : cap * 2;
            buf = gd_xrealloc(buf, cap);
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f))
        r = fail(l, at, "cannot read %s", quote(l, path));
    else if (len > MAX_KEYS_FILE_BYTES)
        r = fail(l, at, "%s is larger than %d MiB", quote(l, path), MAX_KEYS_FILE_BYTES >> 20);
    else
        r = add_api_keys(l, at, a, buf, len, false, path);
    fclose(f);
    if (buf != NULL)
        OPENSSL_cleanse(buf, cap);
    free(buf);
    return r;
}

/* "api_keys": {"header": NAME, "keys_file": PATH} or {"header": NAME, "keys": "{env.NAME}"}. */
static int load_api_keys(struct loader *l, const struct jpath *at, json_t *v, gd_auth_conf_t *a)
{
    static const char *const keys[] = {"header", "keys_file", "keys", NULL};
    struct jpath header_at = {at, "header", 0}, file_at = {at, "keys_file", 0},
                 keys_at = {at, "keys", 0};
    const char *header, *file = NULL, *env = NULL;
    char challenge[256];
    int r;

    if ((r = check_object(l, at, v, keys)) < 0 ||
        (r = get_string(l, at, v, "header", false, DEFAULT_API_KEY_HEADER, &header)) < 0 ||
        (r = get_string(l, at, v, "keys_file", false, NULL, &file)) < 0 ||
        (r = get_string(l, at, v, "keys", false, NULL, &env)) < 0)
        return r;
    if (!is_token(header) || strlen(header) > 64)
        return fail(l, &header_at, "must be a header name, not %s", quote(l, header));
    if (strcasecmp(header, "authorization") == 0 || strcasecmp(header, "cookie") == 0 ||
        is_reserved_header(header))
        return fail(l, &header_at, "cannot be %s", quote(l, header));
    a->api_key_header = gd_xstrdup(header);
    for (char *p = a->api_key_header; *p != '\0'; p++)
        *p = lower(*p);
    snprintf(challenge, sizeof(challenge), "ApiKey realm=\"gatherd\", header=\"%s\"",
             a->api_key_header);
    a->api_key_challenge = gd_xstrdup(challenge);
    if ((file == NULL) == (env == NULL))
        return fail(l, at, "needs exactly one of \"keys_file\" and \"keys\"");
    if (file != NULL) {
        if ((r = read_keys_file(l, &file_at, a, file)) < 0)
            return r;
        if (a->napi_keys == 0)
            return fail(l, &file_at, "%s holds no key", quote(l, file));
        return 0;
    }
    /* Keys are secrets: never written in the config itself, only referenced. */
    size_t elen = strlen(env), nsubst = 0;
    if (elen < 7 || strncmp(env, "{env.", 5) != 0 || env[elen - 1] != '}' ||
        strchr(env + 1, '{') != NULL)
        return fail(l, &keys_at,
                    "must be one {env.NAME} reference (keys are never written in the config; "
                    "or use \"keys_file\")");
    char *value = NULL;
    if ((r = subst_env(l, &keys_at, env, false, &value, &nsubst)) < 0)
        return r;
    r = add_api_keys(l, &keys_at, a, value, strlen(value), true, env);
    OPENSSL_cleanse(value, strlen(value));
    free(value);
    if (r == 0 && a->napi_keys == 0)
        r = fail(l, &keys_at, "%s holds no key", env);
    return r;
}

#define DEFAULT_JWT_LEEWAY_S 30
#define MAX_JWT_LEEWAY_S     600
#define MAX_JWT_KEY_BYTES    (1 << 20)

static bool is_jwt_algorithm(const char *s)
{
    static const char *const algs[] = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                       "RS512", "ES256", "ES384", NULL};
    for (size_t i = 0; algs[i] != NULL; i++)
        if (strcmp(s, algs[i]) == 0)
            return true;
    return false;
}

/* Reads the key or JWKS file @path whole (config load only). An HMAC secret loses one trailing
 * newline. *@ret_buf is new (NUL-terminated; free() it after OPENSSL_cleanse). */
static int read_jwt_file(struct loader *l, const struct jpath *at, const char *path, bool is_hmac,
                         unsigned char **ret_buf, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t len;

    if (f == NULL)
        return fail(l, at, "cannot open %s: %s", quote(l, path), strerror(errno));
    buf = gd_xmalloc(MAX_JWT_KEY_BYTES + 2);
    len = fread(buf, 1, MAX_JWT_KEY_BYTES + 1, f);
    bool is_error = ferror(f) != 0;
    fclose(f);
    if (is_error || len > MAX_JWT_KEY_BYTES || len == 0) {
        OPENSSL_cleanse(buf, MAX_JWT_KEY_BYTES + 2);
        free(buf);
        return fail(l, at, "%s is %s", quote(l, path),
                    is_error   ? "unreadable"
                    : len == 0 ? "empty"
                               : "larger than 1 MiB");
    }
    if (is_hmac && buf[len - 1] == '\n')
        len--;
    if (is_hmac && len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    *ret_buf = buf;
    *ret_len = len;
    return 0;
}

/* A PEM public key of the type the algorithms need: RSA for RS*, EC P-256/P-384 for ES*. */
static int check_jwt_pem(struct loader *l, const struct jpath *at, const unsigned char *pem,
                         size_t len, const char *path, char family)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pk = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    int r = 0;

    BIO_free(bio);
    if (pk == NULL)
        return fail(l, at, "%s holds no PEM public key (\"-----BEGIN PUBLIC KEY-----\")",
                    quote(l, path));
    if (family == 'R' && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA)
        r = fail(l, at, "%s is not an RSA public key, which RS* algorithms need", quote(l, path));
    else if (family == 'E' && EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC)
        r = fail(l, at, "%s is not an EC public key, which ES* algorithms need", quote(l, path));
    EVP_PKEY_free(pk);
    return r;
}

static void add_jwt_key(gd_jwt_conf_t *j, const char *kid, unsigned char *key, size_t len)
{
    j->keys = gd_xrealloc(j->keys, (j->nkeys + 1) * sizeof(*j->keys));
    j->keys[j->nkeys++] = (gd_jwt_key_t){kid != NULL ? gd_xstrdup(kid) : NULL, key, len};
}

/* The base64url member @name of the JWK @k, decoded into a new BIGNUM or octets. */
static unsigned char *jwk_bytes(const json_t *k, const char *name, size_t *ret_len)
{
    const char *s = json_string_value(json_object_get(k, name));
    unsigned char *out;
    ssize_t n;

    if (s == NULL || *s == '\0')
        return NULL;
    out = gd_xmalloc(GD_B64URL_DECODED_MAX(strlen(s)) + 1);
    if ((n = gd_b64url_decode(s, strlen(s), out)) <= 0) {
        free(out);
        return NULL;
    }
    *ret_len = (size_t)n;
    return out;
}

/* The public key of the JWK @k (RFC 7518 section 6: RSA n/e, EC crv/x/y) as PEM text. */
static int jwk_to_pem(const json_t *k, char family, unsigned char **ret_pem, size_t *ret_len,
                      const char **why)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    BIGNUM *n = NULL, *e = NULL;
    unsigned char *a = NULL, *b = NULL, *point = NULL;
    size_t alen = 0, blen = 0;
    BIO *bio = NULL;
    int r = -EINVAL;

    *why = "its key parameters are missing or not base64url";
    if (bld == NULL)
        goto out;
    if (family == 'R') {
        if ((a = jwk_bytes(k, "n", &alen)) == NULL || (b = jwk_bytes(k, "e", &blen)) == NULL)
            goto out;
        n = BN_bin2bn(a, (int)alen, NULL);
        e = BN_bin2bn(b, (int)blen, NULL);
        if (n == NULL || e == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    } else {
        const char *crv = json_string_value(json_object_get(k, "crv"));
        size_t size = crv == NULL                 ? 0
                      : strcmp(crv, "P-256") == 0 ? 32
                      : strcmp(crv, "P-384") == 0 ? 48
                                                  : 0;
        if (size == 0) {
            *why = "its \"crv\" is not \"P-256\" or \"P-384\"";
            goto out;
        }
        if ((a = jwk_bytes(k, "x", &alen)) == NULL || (b = jwk_bytes(k, "y", &blen)) == NULL ||
            alen != size || blen != size)
            goto out;
        point = gd_xmalloc(1 + 2 * size);
        point[0] = 0x04; /* uncompressed (SEC 1 section 2.3.3) */
        memcpy(point + 1, a, size);
        memcpy(point + 1 + size, b, size);
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, crv, 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * size))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    }
    *why = "its key is not valid";
    if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL || ctx == NULL ||
        EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        goto out;
    char *mem;
    long mlen;
    if ((bio = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_PUBKEY(bio, pk) ||
        (mlen = BIO_get_mem_data(bio, &mem)) <= 0)
        goto out;
    *ret_pem = gd_xmalloc((size_t)mlen + 1);
    memcpy(*ret_pem, mem, (size_t)mlen);
    (*ret_pem)[mlen] = '\0';
    *ret_len = (size_t)mlen;
    r = 0;
out:
    BIO_free(bio);
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(a);
    free(b);
    free(point);
    return r;
}

/* "jwks_file": a JWK Set (RFC 7517 section 5); the keys of the algorithms' family are kept by
 * "kid", the others (and "use": "enc" ones) skipped. */
static int load_jwks(struct loader *l, const struct jpath *at, gd_jwt_conf_t *j, const char *path,
                     char family)
{
    static const char *const kty_of[] = {"oct", "RSA", "EC"};
    const char *want = kty_of[family == 'H' ? 0 : family == 'R' ? 1 : 2];
    unsigned char *buf = NULL;
    size_t len = 0, i;
    json_error_t jerr;
    json_t *doc, *keys, *k;
    int r;

    if ((r = read_jwt_file(l, at, path, false, &buf, &len)) < 0)
        return r;
    doc = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
    OPENSSL_cleanse(buf, len);
    free(buf);
    keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        json_decref(doc);
        return fail(l, at, "%s is not a JWK Set (a JSON object with a \"keys\" array)",
                    quote(l, path));
    }
    json_array_foreach(keys, i, k)
    {
        const char *kty = json_string_value(json_object_get(k, "kty"));
        const char *kid = json_string_value(json_object_get(k, "kid"));
        const char *use = json_string_value(json_object_get(k, "use"));
        const char *why = NULL;
        unsigned char *key = NULL;
        size_t klen = 0;

        if (kty == NULL || strcmp(kty, want) != 0 || (use != NULL && strcmp(use, "sig") != 0))
            continue;
        if (kid == NULL || *kid == '\0') {
            r = fail(l, at, "%s: key %zu has no \"kid\"", quote(l, path), i);
            break;
        }
        for (size_t m = 0; m < j->nkeys; m++)
            if (strcmp(j->keys[m].kid, kid) == 0)
                why = "its \"kid\" is that of another key";
        if (why == NULL && family == 'H') {
            if ((key = jwk_bytes(k, "k", &klen)) == NULL)
                why = "its \"k\" is missing or not base64url";
            else if (klen < 32)
                why = "an HMAC secret must have at least 32 bytes";
        } else if (why == NULL) {
            (void)jwk_to_pem(k, family, &key, &klen, &why); /* why is set on failure */
            if (key != NULL)
                why = NULL;
        }
        if (why != NULL) {
            if (key != NULL)
                OPENSSL_cleanse(key, klen);
            free(key);
            r = fail(l, at, "%s: key %zu (kid %s): %s", quote(l, path), i, quote(l, kid), why);
            break;
        }
        add_jwt_key(j, kid, key, klen);
    }
    json_decref(doc);
    if (r == 0 && j->nkeys == 0)
        r = fail(l, at, "%s holds no %s key for %s", quote(l, path), want, j->algorithms[0]);
    return r;
}

static int load_jwt(struct loader *l, const struct jpath *at, json_t *v, gd_jwt_conf_t *j)
{
    static const char *const keys[] = {"algorithms", "key_file", "jwks_file",       "issuer",
                                       "audience",   "leeway_s", "required_claims", NULL};
    struct jpath algs_at = {at, "algorithms", 0}, key_at = {at, "key_file", 0},
                 jwks_at = {at, "jwks_file", 0}, claims_at = {at, "required_claims", 0};
    const char *key_file = NULL, *jwks_file = NULL, *issuer = NULL, *audience = NULL;
    json_t *member = NULL, *claims;
    long long x = 0;
    int r;

    if ((r = check_object(l, at, v, keys)) < 0 ||
        (r = get_member(l, at, v, "algorithms", true, &member)) < 0 ||
        (r = get_token_list(l, at, v, "algorithms", is_jwt_algorithm,
                            "one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384", false,
                            false, &j->algorithms, &j->nalgorithms)) < 0 ||
        (r = get_string(l, at, v, "key_file", false, NULL, &key_file)) < 0 ||
        (r = get_string(l, at, v, "jwks_file", false, NULL, &jwks_file)) < 0 ||
        (r = get_string(l, at, v, "issuer", false, NULL, &issuer)) < 0 ||
        (r = get_string(l, at, v, "audience", false, NULL, &audience)) < 0 ||
        (r = get_int(l, at, v, "leeway_s", 0, MAX_JWT_LEEWAY_S, DEFAULT_JWT_LEEWAY_S, &x)) < 0)
        return r;
    j->leeway_s = (unsigned)x;
    /* One family per key: a token may never choose how its own signature is checked (an RSA
     * public key taken as an HMAC secret, RFC 8725 section 2.1). */
    char family = j->algorithms[0][0];
    for (size_t i = 1; i < j->nalgorithms; i++)
        if (j->algorithms[i][0] != family) {
            struct jpath ip = {&algs_at, NULL, i};
            return fail(l, &ip, "must be of the same family as %s (one key serves one family)",
                        j->algorithms[0]);
        }
    if ((key_file == NULL) == (jwks_file == NULL))
        return fail(l, at, "needs exactly one of \"key_file\" and \"jwks_file\"");
    if (jwks_file != NULL) {
        if ((r = load_jwks(l, &jwks_at, j, jwks_file, family)) < 0)
            return r;
    } else {
        unsigned char *key = NULL;
        size_t klen = 0;
        if ((r = read_jwt_file(l, &key_at, key_file, family == 'H', &key, &klen)) < 0)
            return r;
        add_jwt_key(j, NULL, key, klen); /* the config owns it from here, errors included */
        if (family != 'H' && (r = check_jwt_pem(l, &key_at, key, klen, key_file, family)) < 0)
            return r;
        if (family == 'H' && klen < 32)
            return fail(l, &key_at,
                        "%s: an HMAC secret must have at least 32 bytes (RFC 7518 section 3.2)",
                        quote(l, key_file));
    }
    j->issuer = issuer != NULL ? gd_xstrdup(issuer) : NULL;
    j->audience = audience != NULL ? gd_xstrdup(audience) : NULL;
    claims = json_object_get(v, "required_claims");
    if (claims != NULL) {
        const char *name;
        json_t *cv;
        if (!json_is_object(claims))
            return fail_type(l, &claims_at, claims, "an object of strings");
        j->required_claims = gd_xcalloc(json_object_size(claims) + 1, sizeof(*j->required_claims));
        json_object_foreach(claims, name, cv)
        {
            struct jpath cp = {&claims_at, name, 0};
            if (!json_is_string(cv))
                return fail_type(l, &cp, cv, "a string");
            j->required_claims[j->nrequired_claims].name = gd_xstrdup(name);
            j->required_claims[j->nrequired_claims++].value = gd_xstrdup(json_string_value(cv));
        }
    }
    return 0;
}

/* "auth": an object, or false (for an endpoint: open, not the top level's either). */
static int load_auth(struct loader *l, const struct jpath *parent, json_t *obj, bool *ret_present,
                     gd_auth_conf_t **ret)
{
    static const char *const keys[] = {"api_keys", "jwt", NULL};
    struct jpath at = {parent, "auth", 0}, api_at = {&at, "api_keys", 0}, jwt_at = {&at, "jwt", 0};
    json_t *v = json_object_get(obj, "auth"), *api, *jwt;
    gd_auth_conf_t *a;
    int r;

    *ret = NULL;
    *ret_present = v != NULL;
    if (v == NULL || json_is_false(v))
        return 0;
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object or false");
    if ((r = check_object(l, &at, v, keys)) < 0)
        return r;
    api = json_object_get(v, "api_keys");
    jwt = json_object_get(v, "jwt");
    if ((api == NULL) == (jwt == NULL))
        return fail(l, &at, "needs exactly one of \"api_keys\" and \"jwt\"");
    a = gd_xcalloc(1, sizeof(*a));
    if (api != NULL)
        r = load_api_keys(l, &api_at, api, a);
    else if (!json_is_object(jwt))
        r = fail_type(l, &jwt_at, jwt, "an object");
    else
        r = load_jwt(l, &jwt_at, jwt, a->jwt = gd_xcalloc(1, sizeof(*a->jwt)));
    if (r < 0) {
        free_auth(a);
        return r;
    }
    *ret = a;
    return 0;
}

/* "compress": an object, or false; the keys an object leaves out are @def's. */
static int load_compress(struct loader *l, const struct jpath *parent, json_t *obj,
                         const gd_compress_conf_t *def, gd_compress_conf_t *ret)
{
    static const char *const keys[] = {"min_bytes", "level", NULL};
    struct jpath at = {parent, "compress", 0};
    json_t *v = json_object_get(obj, "compress");
    long long min_bytes = 0, level = 0;
    int r;

    *ret = *def;
    if (v == NULL)
        return 0;
    if (json_is_false(v)) {
        ret->is_enabled = false;
        return 0;
    }
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object or false");
    if ((r = check_object(l, &at, v, keys)) < 0 ||
        (r = get_int(l, &at, v, "min_bytes", 0, MAX_COMPRESS_MIN_BYTES, (long long)def->min_bytes,
                     &min_bytes)) < 0 ||
        (r = get_int(l, &at, v, "level", 1, 9, def->level, &level)) < 0)
        return r;
    *ret = (gd_compress_conf_t){
        .is_enabled = true, .min_bytes = (size_t)min_bytes, .level = (int)level};
    return 0;
}

static int load_cache_control(struct loader *l, const struct jpath *at, json_t *obj,
                              gd_endpoint_conf_t *ep)
{
    struct jpath kp = {at, "cache_control", 0};
    const char *s = NULL;
    size_t len;
    int r;

    if ((r = get_string(l, at, obj, "cache_control", false, NULL, &s)) < 0 || s == NULL)
        return r;
    len = strlen(s);
    if (len == 0 || len > MAX_CACHE_CONTROL_LEN)
        return fail(l, &kp, "must be 1 to %d characters", MAX_CACHE_CONTROL_LEN);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return fail(l, &kp, "must be printable ASCII (a header value), not %s", quote(l, s));
    ep->cache_control = gd_xstrdup(s);
    return 0;
}

#define DEFAULT_RATE_MAX_KEYS 100000
#define MAX_RATE_MAX_KEYS     10000000

static void free_rate_limit(gd_rate_limit_conf_t *rl)
{
    if (rl == NULL)
        return;
    if (!rl->_is_lent)
        gd_ratelimit_free(rl->limiter);
    free(rl->redis_key);
    free(rl->claim);
    free(rl->limit_header);
    free(rl);
}

/* "client_rate_limit": an object, or false (for an endpoint: none, not the top level's). */
static int load_rate_limit(struct loader *l, const struct jpath *parent, json_t *obj,
                           bool *ret_present, gd_rate_limit_conf_t **ret)
{
    static const char *const keys[] = {"requests", "per_ms", "burst", "key",
                                       "max_keys", "scope",  NULL};
    struct jpath at = {parent, "client_rate_limit", 0}, key_at = {&at, "key", 0};
    json_t *v = json_object_get(obj, "client_rate_limit");
    gd_rate_limit_conf_t *rl;
    const char *key = NULL;
    long long x = 0;
    int r;

    *ret = NULL;
    *ret_present = v != NULL;
    if (v == NULL || json_is_false(v))
        return 0;
    if (!json_is_object(v))
        return fail_type(l, &at, v, "an object or false");
    rl = gd_xcalloc(1, sizeof(*rl));
    if ((r = check_object(l, &at, v, keys)) < 0 ||
        (r = get_int(l, &at, v, "requests", 1, 1000000000, 0, &x)) < 0)
        goto err;
    if (x == 0) {
        r = fail(l, &(struct jpath){&at, "requests", 0}, "missing required key");
        goto err;
    }
    rl->requests = (uint64_t)x;
    if ((r = get_duration(l, &at, v, "per_ms", false, 1000, &rl->per_ms)) < 0 ||
        (r = get_int(l, &at, v, "burst", 1, 1000000000, (long long)rl->requests, &x)) < 0)
        goto err;
    rl->burst = (uint64_t)x;
    if ((r = get_int(l, &at, v, "max_keys", 64, MAX_RATE_MAX_KEYS, DEFAULT_RATE_MAX_KEYS, &x)) <
            0 ||
        (r = get_string(l, &at, v, "key", false, "client", &key)) < 0)
        goto err;
    rl->max_keys = (size_t)x;
    if (strcmp(key, "client") == 0) {
        rl->key = GD_RATE_KEY_CLIENT;
    } else if (strcmp(key, "api_key") == 0) {
        rl->key = GD_RATE_KEY_API_KEY;
    } else if (strncmp(key, "jwt.", 4) == 0 && key[4] != '\0') {
        rl->key = GD_RATE_KEY_JWT;
        rl->claim = gd_xstrdup(key + 4);
    } else {
        r = fail(l, &key_at, "must be \"client\", \"api_key\" or \"jwt.CLAIM\", not %s",
                 quote(l, key));
        goto err;
    }
    char n[32];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)rl->requests);
    rl->limit_header = gd_xstrdup(n);
    if ((r = load_rate_scope(l, &at, v, &rl->is_cluster)) < 0)
        goto err;
    if (!rl->is_cluster) {
        rl->limiter = gd_ratelimit_new(rl->requests, rl->per_ms, rl->burst, rl->max_keys);
        *ret = rl;
        return 0;
    }
    /* The GCRA of the token bucket: one token every interval, burst tokens at once. */
    rl->interval_us = (rl->per_ms * 1000 + rl->requests - 1) / rl->requests;
    rl->tolerance_us = (rl->burst - 1) * rl->interval_us;
    uint64_t local_per_ms, local_burst;
    local_share_of(rl->per_ms, rl->burst, l->redis->local_share, &local_per_ms, &local_burst);
    rl->limiter = gd_ratelimit_new(rl->requests, local_per_ms, local_burst, rl->max_keys);
    /* Named by its endpoint's method and path (the top level's: "*"), as every replica's
     * config names it. */
    json_t *m = parent != NULL ? json_object_get(obj, "method") : NULL;
    json_t *p = parent != NULL ? json_object_get(obj, "path") : NULL;
    const char *owner_m = json_is_string(m) ? json_string_value(m) : "GET";
    const char *owner_p = json_is_string(p) ? json_string_value(p) : "";
    size_t kn = strlen(l->redis->key_prefix) + strlen(owner_m) + strlen(owner_p) + 16;
    rl->redis_key = gd_xmalloc(kn);
    if (parent == NULL)
        snprintf(rl->redis_key, kn, "%srl:client:*:", l->redis->key_prefix);
    else
        snprintf(rl->redis_key, kn, "%srl:client:%s %s:", l->redis->key_prefix, owner_m, owner_p);
    *ret = rl;
    return 0;
err:
    free_rate_limit(rl);
    return r;
}

/* A rate limit by API key or JWT claim needs that kind of auth on the endpoint. */
static int check_rate_limit_key(struct loader *l, const struct jpath *at,
                                const gd_endpoint_conf_t *ep)
{
    const gd_rate_limit_conf_t *rl = ep->rate_limit;

    if (rl == NULL)
        return 0;
    if (rl->key == GD_RATE_KEY_API_KEY && (ep->auth == NULL || ep->auth->api_key_header == NULL))
        return fail(l, at, "client_rate_limit.key \"api_key\" needs \"auth\": {\"api_keys\": ...}");
    if (rl->key == GD_RATE_KEY_JWT && (ep->auth == NULL || ep->auth->jwt == NULL))
        return fail(l, at, "client_rate_limit.key \"jwt.%s\" needs \"auth\": {\"jwt\": ...}",
                    rl->claim);
    return 0;
}

/* "for_each" on the endpoint: a batch endpoint over a list parameter; {item} becomes a
 * parameter of its own, which each run fills in. */
static int load_batch(struct loader *l, const struct jpath *at, json_t *v, gd_endpoint_conf_t *ep)
{
    struct jpath fe_at = {at, "for_each", 0};
    gd_expr_scope_t scope = {NULL, 0, resolve_for_each_param, ep, false};
    gd_expr_t e;
    int r = parse_for_each(l, at, v, &scope, &e, &ep->batch_concurrency, &ep->batch_max_items);

    if (r <= 0)
        return r;
    bool is_list = e.kind == GD_EXPR_PARAM && is_list_type(ep->params[e.index].type);
    size_t list = e.index;
    gd_expr_dispose(&e);
    if (!is_list)
        return fail(l, &fe_at,
                    "must be exactly one list parameter like \"{query.ids}\" (declared "
                    "\"int_list\" or \"string_list\"), not %s",
                    quote(l, json_string_value(json_object_get(v, "for_each"))));
    for (size_t i = 0; i < ep->ncaptures; i++)
        if (strcmp(ep->params[i].key, "item") == 0)
            return fail(l, &fe_at, "the path capture {item} would hide the batch's {item}");
    gd_param_t *p = add_param(ep, GD_SRC_ITEM, "item");
    p->type = ep->params[list].type == GD_PARAM_INT_LIST ? GD_PARAM_INT : GD_PARAM_STRING;
    ep->is_batch = true;
    ep->batch_list = list;
    ep->batch_item = ep->nparams - 1;
    return 0;
}

static int load_endpoint(struct loader *l, const struct jpath *at, json_t *v, gd_config_t *cfg,
                         gd_endpoint_conf_t *ep)
{
    static const char *const keys[] = {"method",   "path", "timeout_ms",        "params",
                                       "calls",    "cors", "compress",          "cache_control",
                                       "etag",     "auth", "client_rate_limit", "response",
                                       "for_each", "concurrency", "max_items", NULL};
    struct jpath method_at = {at, "method", 0}, path_at = {at, "path", 0};
    const char *method, *path;
    bool has_cors = false, has_auth = false, has_rate = false;
    int r;

    if ((r = check_object(l, at, v, keys)) < 0 ||
        (r = get_string(l, at, v, "method", false, "GET", &method)) < 0)
        return r;
    if (!is_upper_token(method))
        return fail(l, &method_at, "must be an upper-case HTTP method like \"GET\", not %s",
                    quote(l, method));
    ep->method = gd_xstrdup(method);
    if ((r = get_string(l, at, v, "path", true, NULL, &path)) < 0)
        return r;
    ep->path = gd_xstrdup(path);
    if ((r = parse_endpoint_path(l, &path_at, ep)) < 0 ||
        (r = check_duplicate_route(l, at, cfg, ep)) < 0 ||
        (r = get_duration(l, at, v, "timeout_ms", false, DEFAULT_ENDPOINT_TIMEOUT_MS,
                          &ep->timeout_ms)) < 0 ||
        (r = load_params(l, at, v, ep)) < 0 || (r = load_batch(l, at, v, ep)) < 0 ||
        (r = load_calls(l, at, v, cfg, ep)) < 0 ||
        (r = load_cors(l, at, v, &has_cors, &ep->own_cors)) < 0 ||
        (r = load_compress(l, at, v, &cfg->compress, &ep->compress)) < 0 ||
        (r = load_cache_control(l, at, v, ep)) < 0 ||
        (r = get_bool(l, at, v, "etag", false, &ep->has_etag)) < 0 ||
        (r = load_auth(l, at, v, &has_auth, &ep->own_auth)) < 0 ||
        (r = load_rate_limit(l, at, v, &has_rate, &ep->own_rate_limit)) < 0 ||
        (r = load_response(l, at, v, ep)) < 0)
        return r;
    fix_ref_indexes(ep);
    ep->rate_limit = has_rate ? ep->own_rate_limit : cfg->rate_limit;
    ep->cors = has_cors ? ep->own_cors : cfg->cors;
    ep->auth = has_auth ? ep->own_auth : cfg->auth;
    /* A claim is only known once a token was verified. */
    for (size_t i = 0; i < ep->nparams; i++)
        if (ep->params[i].src == GD_SRC_JWT && (ep->auth == NULL || ep->auth->jwt == NULL))
            return fail(l, at,
                        "uses {%s}, but has no \"auth\": {\"jwt\": ...} (its own or the "
                        "top level's)",
                        ep->params[i].name);
    if ((r = check_rate_limit_key(l, at, ep)) < 0)
        return r;
    return 0;
}

static int load_endpoints(struct loader *l, json_t *root, gd_config_t *cfg)
{
    struct jpath at = {NULL, "endpoints", 0};
    json_t *v = NULL;
    int r = get_member(l, NULL, root, "endpoints", true, &v);

    if (r < 0)
        return r;
    if (!json_is_array(v))
        return fail_type(l, &at, v, "an array");
    cfg->nendpoints = json_array_size(v);
    cfg->endpoints = gd_xcalloc(cfg->nendpoints, sizeof(*cfg->endpoints));
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        struct jpath ep_at = {&at, NULL, i};
        cfg->endpoints[i].index = i;
        if ((r = load_endpoint(l, &ep_at, json_array_get(v, i), cfg, &cfg->endpoints[i])) < 0)
            return r;
    }
    /* Until gd_metrics_keys_assign(): the series in config order, as a first config gets. */
    for (size_t i = 0, ncalls = 0; i < cfg->nendpoints; i++) {
        cfg->endpoints[i].metrics_slot = i;
        for (size_t j = 0; j < cfg->endpoints[i].ncalls; j++)
            cfg->endpoints[i].calls[j].metrics_slot = ncalls++;
    }
    return 0;
}

/* "trusted_proxies": ["10.0.0.0/8", "::1/128", "127.0.0.1"] (an address alone is a /32 or /128). */
static int load_trusted_proxies(struct loader *l, json_t *root, gd_config_t *cfg)
{
    struct jpath at = {NULL, "trusted_proxies", 0};
    json_t *v = json_object_get(root, "trusted_proxies");

    if (v == NULL)
        return 0;
    if (!json_is_array(v))
        return fail_type(l, &at, v, "an array of strings");
    cfg->ntrusted_proxies = json_array_size(v);
    cfg->trusted_proxies = gd_xcalloc(cfg->ntrusted_proxies + 1, sizeof(*cfg->trusted_proxies));
    for (size_t i = 0; i < cfg->ntrusted_proxies; i++) {
        struct jpath ip = {&at, NULL, i};
        json_t *e = json_array_get(v, i);
        gd_cidr_t *c = &cfg->trusted_proxies[i];
        char text[64];
        const char *s, *slash;
        size_t len;

        if (!json_is_string(e))
            return fail_type(l, &ip, e, "a string");
        s = json_string_value(e);
        len = strlen(s);
        slash = strchr(s, '/');
        size_t alen = slash != NULL ? (size_t)(slash - s) : len;
        if (alen == 0 || alen >= sizeof(text))
            goto bad;
        memcpy(text, s, alen);
        text[alen] = '\0';
        if (inet_pton(AF_INET, text, c->addr) == 1)
            c->family = AF_INET;
        else if (inet_pton(AF_INET6, text, c->addr) == 1)
            c->family = AF_INET6;
        else
            goto bad;
        unsigned max = c->family == AF_INET ? 32 : 128;
        c->prefix_len = max;
        if (slash != NULL) {
            char *end;
            if (slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 3)
                goto bad;
            unsigned long n = strtoul(slash + 1, &end, 10);
            if (*end != '\0' || n > max)
                goto bad;
            c->prefix_len = (unsigned)n;
        }
        for (unsigned b = c->prefix_len; b < max; b++)
            if (c->addr[b / 8] & (0x80 >> (b % 8)))
                return fail(l, &ip, "%s has host bits set beyond its prefix /%u", quote(l, s),
                            c->prefix_len);
        continue;
    bad:
        return fail(l, &ip,
                    "must be an IPv4 or IPv6 address with an optional prefix length, like "
                    "\"10.0.0.0/8\" or \"::1\", not %s",
                    quote(l, s));
    }
    return 0;
}

/* "http2_reset_budget": an integer, or false for no limit (0). The default is the streams h2o
 * runs at once per connection (max_concurrent_requests_per_connection), so that a client may
 * cancel everything it has in flight (gather/h2reset.h). */
static int load_http2_reset_budget(struct loader *l, json_t *root, gd_config_t *cfg)
{
    json_t *v = json_object_get(root, "http2_reset_budget");
    long long x = 0;
    int r;

    if (v != NULL && json_is_false(v)) {
        cfg->http2_reset_budget = 0;
        return 0;
    }
    if (v != NULL && !json_is_integer(v))
        return fail_type(l, &(struct jpath){NULL, "http2_reset_budget", 0}, v,
                         "an integer or false");
    if ((r = get_int(l, NULL, root, "http2_reset_budget", 1, MAX_HTTP2_RESET_BUDGET,
                     DEFAULT_HTTP2_RESET_BUDGET, &x)) < 0)
        return r;
    cfg->http2_reset_budget = (unsigned)x;
    return 0;
}

static int load_root(struct loader *l, json_t *root, gd_config_t *cfg)
{
    static const char *const keys[] = {"listen",
                                       "admin_listen",
                                       "log",
                                       "postgres",
                                       "threads",
                                       "http2",
                                       "http2_reset_budget",
                                       "max_requests_in_flight",
                                       "max_client_connections",
                                       "queue_timeout_ms",
                                       "coroutine_stack_kb",
                                       "shutdown",
                                       "upstreams",
                                       "endpoints",
                                       "expose_error_details",
                                       "max_request_body_bytes",
                                       "cors",
                                       "compress",
                                       "auth",
                                       "trusted_proxies",
                                       "client_rate_limit",
                                       "max_url_bytes",
                                       "max_header_bytes",
                                       "max_headers",
                                       "write_timeout_ms",
                                       "max_unsent_bytes_per_connection",
                                       "max_unsent_bytes",
                                       "slow_loop_ms",
                                       "cache_max_bytes",
                                       "redis",
                                       NULL};
    static const gd_compress_conf_t default_compress = {.is_enabled = true,
                                                        .min_bytes = DEFAULT_COMPRESS_MIN_BYTES,
                                                        .level = DEFAULT_COMPRESS_LEVEL};
    bool has_cors = false, has_auth = false, has_rate = false;
    long long x = 0;
    int r;

    if (!json_is_object(root))
        return fail(l, NULL, "the config must be a JSON object, not %s", type_name(root));
    if ((r = check_object(l, NULL, root, keys)) < 0 || (r = load_listen(l, root, cfg)) < 0 ||
        (r = get_int(l, NULL, root, "threads", 0, MAX_THREADS, DEFAULT_THREADS, &x)) < 0)
        return r;
    if (x == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        x = ncpu < 1 ? 1 : ncpu;
    }
    cfg->threads = (unsigned)x;
    if ((r = get_bool(l, NULL, root, "expose_error_details", false, &cfg->expose_error_details)) <
        0)
        return r;
    if ((r = load_http2_reset_budget(l, root, cfg)) < 0 ||
        (r = get_bool(l, NULL, root, "http2", false, &cfg->is_http2_enabled)) < 0 ||
        (r = get_int(l, NULL, root, "max_requests_in_flight", 1, LLONG_MAX,
                     DEFAULT_MAX_REQUESTS_IN_FLIGHT, &x)) < 0)
        return r;
    cfg->max_requests_in_flight = (size_t)x;
    if ((r = get_int(l, NULL, root, "max_request_body_bytes", 0, MAX_MAX_REQUEST_BODY_BYTES,
                     DEFAULT_MAX_REQUEST_BODY_BYTES, &x)) < 0)
        return r;
    cfg->max_request_body_bytes = (size_t)x;
    /* h2o 2.2.5 itself refuses a head of more than 100 fields or about 408 KiB with a plain-text
     * 400: these limits stay below, so that the answer is gatherd's JSON one. */
    if ((r = get_int(l, NULL, root, "max_url_bytes", 256, 65536, 8192, &x)) < 0)
        return r;
    cfg->max_url_bytes = (size_t)x;
    if ((r = get_int(l, NULL, root, "max_header_bytes", 1024, 262144, 32768, &x)) < 0)
        return r;
    cfg->max_header_bytes = (size_t)x;
    if ((r = get_int(l, NULL, root, "max_headers", 1, 99, 64, &x)) < 0)
        return r;
    cfg->max_headers = (size_t)x;
    if ((r = get_int(l, NULL, root, "slow_loop_ms", 0, 60000, DEFAULT_SLOW_LOOP_MS, &x)) < 0)
        return r;
    cfg->slow_loop_ms = (uint64_t)x;
    if ((r = get_int(l, NULL, root, "cache_max_bytes", 4096, LLONG_MAX, DEFAULT_CACHE_MAX_BYTES,
                     &x)) < 0)
        return r;
    cfg->cache_max_bytes = (size_t)x;
    if ((r = get_int(l, NULL, root, "max_client_connections", 1, LLONG_MAX, 0, &x)) < 0)
        return r;
    cfg->max_client_connections = (size_t)x; /* 0: sized by the server for the open-files limit */
    if ((r = get_int(l, NULL, root, "queue_timeout_ms", 0, MAX_QUEUE_TIMEOUT_MS,
                     DEFAULT_QUEUE_TIMEOUT_MS, &x)) < 0)
        return r;
    cfg->queue_timeout_ms = (uint64_t)x;
    if ((r = get_int(l, NULL, root, "write_timeout_ms", 1, MAX_WRITE_TIMEOUT_MS,
                     DEFAULT_WRITE_TIMEOUT_MS, &x)) < 0)
        return r;
    cfg->write_timeout_ms = (uint64_t)x;
    if ((r = get_int(l, NULL, root, "max_unsent_bytes_per_connection", 1, MAX_UNSENT_BYTES,
                     DEFAULT_MAX_UNSENT_BYTES_PER_CONNECTION, &x)) < 0)
        return r;
    cfg->max_unsent_bytes_per_connection = (size_t)x;
    if ((r = get_int(l, NULL, root, "max_unsent_bytes", 1, MAX_UNSENT_BYTES,
                     DEFAULT_MAX_UNSENT_BYTES, &x)) < 0)
        return r;
    cfg->max_unsent_bytes = (size_t)x;
    if ((r = get_int(l, NULL, root, "coroutine_stack_kb", MIN_COROUTINE_STACK_KB,
                     MAX_COROUTINE_STACK_KB, DEFAULT_COROUTINE_STACK_KB, &x)) < 0)
        return r;
    cfg->coroutine_stack_bytes = (size_t)x * 1024;
    /* "redis" first: the rate limits that follow may be held there ("scope": "cluster"). */
    if ((r = load_redis(l, root, cfg)) < 0 || (r = load_admin(l, root, cfg)) < 0 ||
        (r = load_log(l, root, cfg)) < 0 || (r = load_shutdown(l, root, cfg)) < 0 ||
        (r = load_postgres(l, root, cfg)) < 0 ||
        (r = load_cors(l, NULL, root, &has_cors, &cfg->cors)) < 0 ||
        (r = load_auth(l, NULL, root, &has_auth, &cfg->auth)) < 0 ||
        (r = load_trusted_proxies(l, root, cfg)) < 0 ||
        (r = load_rate_limit(l, NULL, root, &has_rate, &cfg->rate_limit)) < 0 ||
        (r = load_compress(l, NULL, root, &default_compress, &cfg->compress)) < 0 ||
        (r = load_upstreams(l, root, cfg)) < 0 || (r = load_endpoints(l, root, cfg)) < 0)
        return r;
    return 0;
}

/* The document's identity for the metrics and the logs: FNV-1a 64 of its canonical text
 * (sorted keys, no spaces), so that reformatting a file does not change it. */
static void hash_document(const json_t *root, char out[17])
{
    char *text = json_dumps(root, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
    uint64_t h = 0xcbf29ce484222325ull;

    GD_REQUIRE(text != NULL);
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    free(text);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* Validates the parsed document @root (or reports @jerr when it is NULL). */
static int load_json(json_t *root, const json_error_t *jerr, const char *name,
                     gd_config_t **ret_config, char *err, size_t errlen)
{
    struct loader l = {name, err, errlen, NULL, NULL, 0, 0};
    gd_config_t *cfg;
    int r;

    if (root == NULL) {
        /* jansson quotes the token it stopped at, which may hold a control character: the
         * message stays on one line (found by fuzzing). */
        char text[sizeof(jerr->text) * 4];
        size_t n = 0;
        for (const char *p = jerr->text; *p != '\0' && n + 5 < sizeof(text); p++) {
            unsigned char ch = (unsigned char)*p;
            if (ch < 0x20 || ch == 0x7f)
                n += (size_t)snprintf(text + n, sizeof(text) - n, "\\x%02x", ch);
            else
                text[n++] = (char)ch;
        }
        text[n] = '\0';
        if (jerr->line > 0)
            snprintf(err, errlen, "%s:%d:%d: %s", name, jerr->line, jerr->column, text);
        else
            snprintf(err, errlen, "%s: %s", name, text);
        return -EINVAL;
    }
    cfg = gd_xcalloc(1, sizeof(*cfg));
    cfg->source = gd_xstrdup(name);
    r = load_root(&l, root, cfg);
    free(l.routes);
    while (l.quoted != NULL) {
        struct quoted *q = l.quoted;
        l.quoted = q->next;
        free(q->text);
        free(q);
    }
    cfg->document = root; /* a reload compares what the next config keeps (config/carry.h) */
    if (r < 0) {
        gd_config_free(cfg);
        return r;
    }
    hash_document(root, cfg->hash);
    cfg->cache_max_ttl_ms = l.max_cache_ttl_ms;
    if (l.max_cache_ttl_ms > 0)
        cfg->cache_store = gd_ttlcache_new(cfg->cache_max_bytes, l.max_cache_ttl_ms);
    *ret_config = cfg;
    return 0;
}

int gd_config_load_string(const char *json, const char *name, gd_config_t **ret_config, char *err,
                          size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);

    return load_json(root, &jerr, name, ret_config, err, errlen);
}

int gd_config_load_file(const char *path, gd_config_t **ret_config, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    json_error_t jerr;
    json_t *root;

    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    /* Read up to one byte past the limit: "-c /dev/zero" must end with an error, not with all
     * memory. */
    while (len <= GD_CONFIG_MAX_BYTES) {
        size_t n;
        if (len == cap) {
            cap = cap == 0 ? 16384 : cap * 2;
            buf = gd_xrealloc(buf, cap);
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (len > GD_CONFIG_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %d MiB, the most a config may be", path,
                 GD_CONFIG_MAX_BYTES >> 20);
        fclose(f);
        free(buf);
        return -EFBIG;
    }
    if (ferror(f)) {
        int e = errno != 0 ? errno : EIO;
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(e));
        fclose(f);
        free(buf);
        return -e;
    }
    fclose(f);
    /* json_loadb(), not json_loads(): an embedded NUL byte is a syntax error, not the end. */
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    return load_json(root, &jerr, path, ret_config, err, errlen);
}

static void free_template_header(gd_header_template_t *h)
{
    free(h->name);
    gd_template_dispose(&h->value);
}

gd_config_t *gd_config_free(gd_config_t *config)
{
    if (config == NULL)
        return NULL;
    for (size_t i = 0; i < config->nlisten; i++)
        free(config->listen[i].text);
    free(config->listen);
    for (size_t i = 0; i < config->nupstreams; i++) {
        gd_upstream_conf_t *u = &config->upstreams[i];
        free(u->name);
        free(u->url);
        free(u->host);
        free(u->host_shown);
        free(u->base_path);
        free(u->place);
        free(u->tls.ca_file);
        free(u->tls.server_name);
        free(u->tls.client_cert_file);
        free(u->tls.client_key_file);
        free(u->host_header);
        for (size_t j = 0; j < u->nheaders; j++) {
            free(u->headers[j].name);
            free(u->headers[j].value);
        }
        free(u->headers);
        for (size_t j = 0; u->forward_headers != NULL && u->forward_headers[j] != NULL; j++)
            free(u->forward_headers[j]);
        free(u->forward_headers);
        free(u->null_on);
        free(u->status_map);
        if (!(u->_lent & GD_CONFIG_LENT_RETRY_BUDGET))
            free(u->retry_budget);
        if (!(u->_lent & GD_CONFIG_LENT_BREAKER))
            free(u->breaker);
        if (!(u->_lent & GD_CONFIG_LENT_RATE_LIMIT))
            free(u->rate_limit);
        if (!(u->_lent & GD_CONFIG_LENT_WAITS))
            free(u->waits);
        if (!(u->_lent & GD_CONFIG_LENT_IN_FLIGHT))
            u->in_flight = gd_budget_free(u->in_flight);
        free(u->rate_limit_local); /* the local share of a cluster rate_limit: never carried */
        free(u->rate_key);
    }
    free(config->upstreams);
    for (size_t i = 0; i < config->nendpoints; i++) {
        gd_endpoint_conf_t *ep = &config->endpoints[i];
        for (size_t j = 0; j < ep->nsegments; j++)
            free(ep->segments[j].text);
        free(ep->segments);
        for (size_t j = 0; j < ep->nparams; j++) {
            gd_param_t *p = &ep->params[j];
            if (p->type == GD_PARAM_PATTERN)
                regfree(&p->pattern);
            free(p->name);
            free(p->key);
            free(p->pattern_src);
            free(p->default_value);
        }
        free(ep->params);
        for (size_t j = 0; j < ep->ncalls; j++) {
            gd_call_conf_t *c = &ep->calls[j];
            free(c->name);
            free(c->name_json);
            free(c->method);
            gd_template_dispose(&c->path);
            for (size_t k = 0; k < c->nheaders; k++)
                free_template_header(&c->headers[k]);
            free(c->headers);
            for (size_t k = 0; k < c->nbody_parts; k++) {
                free(c->body_parts[k].json);
                gd_template_dispose(&c->body_parts[k].value);
            }
            free(c->body_parts);
            free(c->needs);
            gd_template_dispose(&c->when);
            free(c->upstream_header_lines);
            for (size_t k = 0; c->forward_headers != NULL && c->forward_headers[k] != NULL; k++)
                free(c->forward_headers[k]);
            free(c->forward_headers);
            free(c->null_on);
            free(c->status_map);
            gd_reshape_conf_free(c->reshape);
            gd_expr_dispose(&c->for_each);
            free(c->for_each_text);
            for (size_t k = 0; c->args != NULL && k < c->nargs; k++)
                gd_template_dispose(&c->args[k]);
            free(c->args);
            free(c->cache.variant);
        }
        free(ep->calls);
        gd_response_free(ep->response);
        for (size_t j = 0; j < ep->nrefs; j++) {
            gd_expr_dispose(&ep->refs[j].expr);
            free(ep->refs[j].text);
        }
        free(ep->refs);
        free(ep->call_order);
        free(ep->method);
        free(ep->path);
        free_cors(ep->own_cors);
        free_auth(ep->own_auth);
        free_rate_limit(ep->own_rate_limit);
        free(ep->cache_control);
    }
    free_cors(config->cors);
    free_auth(config->auth);
    if (!config->_is_cache_store_lent)
        config->cache_store = gd_ttlcache_free(config->cache_store);
    free(config->trusted_proxies);
    free_rate_limit(config->rate_limit);
    free_redis(config->redis);
    free(config->endpoints);
    for (size_t i = 0; i < config->nstatements; i++)
        free(config->statements[i]);
    free(config->statements);
    free(config->statement_nparams);
    free(config->statement_is_batchable);
    free(config->postgres.conninfo);
    if (!config->postgres._is_retry_budget_lent)
        free(config->postgres.retry_budget);
    free(config->admin_listen.text);
    json_decref(config->document);
    free(config->source);
    free(config);
    return NULL;
}
