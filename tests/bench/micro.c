/*
 * Micro-benchmarks of gatherd's hot parts, in ns per operation (best of 5 runs of N each):
 * coroutine resume+yield, template expansion, merging the profile answer, SQL rows to JSON,
 * validating an upstream body, and reading an upstream answer (the response head and chunked
 * bodies: gatherd's http1.c against the picohttpparser that libh2o exports, on the same inputs).
 * Run: build-release/tests/bench/bench_micro
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <uv.h>

#include "base/coro.h"
#include "config/config.h"
#include "config/template.h"
#include "gather/merge.h"
#include "gather/shape.h"
#include "sources/http/http1.h"
#include "sources/pg/pgjson.h"
#include "json/json.h"

/* picohttpparser as libh2o 2.2.5 exports it (its header is not installed). The decoder's
 * state is declared with room to spare: later versions added two counters, and the library
 * only ever touches its own fields of the zeroed struct. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
    uint64_t _spare[4];
};
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status,
                       const char **msg, size_t *msg_len, struct phr_header *headers,
                       size_t *num_headers, size_t last_len);
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Runs @fn(@arg, @n) five times and prints the best ns per operation. */
static void report(const char *name, void (*fn)(void *, long), void *arg, long n)
{
    double best = 1e30;
    for (int round = 0; round < 5; round++) {
        uint64_t t = now_ns();
        fn(arg, n);
        double ns = (double)(now_ns() - t) / (double)n;
        if (ns < best)
            best = ns;
    }
    printf("%-44s %10.1f ns/op\n", name, best);
}

/* -- coroutine switch ------------------------------------------------------------------ */
static volatile long sink;

static void yielder(void *arg)
{
    long n = *(long *)arg;
    for (long i = 0; i < n; i++)
        gd_coro_yield();
}

static void bench_switch(void *arg, long n)
{
    gd_sched_t *sched = arg;
    gd_coro_t *c;
    long count = n;
    gd_coro_spawn(sched, yielder, &count, &c);
    for (long i = 0; i < n; i++)
        gd_coro_resume(c); /* the last resume lets it return */
}

/* -- template expansion ------------------------------------------------------------------ */
static int resolve(void *ctx, gd_src_t src, const char *name, char *err, size_t errlen)
{
    return 0;
}

static void bench_template(void *arg, long n)
{
    const gd_template_t *t = arg;
    gd_strv_t values[] = {{"4711", 4}};
    char buf[128];
    for (long i = 0; i < n; i++)
        sink += (long)gd_template_expand(t, values, buf, sizeof(buf));
}

/* -- merge ---------------------------------------------------------------------------------- */
struct merge_input {
    gd_endpoint_conf_t ep;
    gd_call_result_t results[4];
    char *buf;
    size_t cap;
};

static void bench_merge(void *arg, long n)
{
    struct merge_input *m = arg;
    for (long i = 0; i < n; i++)
        sink += (long)gd_merge_body(&m->ep, m->results, false, m->buf, m->cap);
}

/* The same answer through the classic aggregator's response template (gather/shape.c). */
struct shape_input {
    const gd_endpoint_conf_t *ep;
    const gd_call_result_t *results;
    gd_jbuf_t out;
};

static void bench_shape(void *arg, long n)
{
    struct shape_input *s = arg;
    static const gd_strv_t values[] = {{"7", 1}};
    for (long i = 0; i < n; i++) {
        s->out.len = 0; /* the buffer is kept, as a request's arena would be reused */
        gd_shape_body(s->ep, s->results, values, false, &s->out);
        sink += (long)s->out.len;
    }
}

/* -- SQL rows to JSON ------------------------------------------------------------------- */
static void bench_pgjson(void *arg, long n)
{
    const PGresult *res = arg;
    gd_pgjson_buf_t out = {0};
    for (long i = 0; i < n; i++) {
        out.len = 0;
        gd_pgjson_append_rows(&out, res);
    }
    sink += (long)out.len;
    free(out.base);
}

/* -- upstream body validation: gd_json (what the upstream client uses), and jansson (what it
 * used before) for comparison ------------------------------------------------------------- */
static void bench_validate(void *arg, long n)
{
    const char *body = arg;
    size_t len = strlen(body);
    for (long i = 0; i < n; i++)
        sink += gd_json_is_valid(body, len);
}

static void bench_validate_jansson(void *arg, long n)
{
    const char *body = arg;
    size_t len = strlen(body);
    for (long i = 0; i < n; i++) {
        json_t *doc = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        sink += doc != NULL;
        json_decref(doc);
    }
}

static char *make_posts(void)
{
    char *s = malloc(4096);
    size_t len = 0;
    len += (size_t)sprintf(s + len, "[");
    for (int i = 0; i < 10; i++)
        len += (size_t)sprintf(s + len,
                               "%s{\"userId\":7,\"id\":%d,\"title\":\"post %d of user 7, a title "
                               "of some length\",\"body\":\"lorem ipsum dolor sit amet, consectetur "
                               "adipiscing elit, sed do eiusmod tempor incididunt ut labore\"}",
                               i ? "," : "", 70 + i, i);
    sprintf(s + len, "]");
    return s;
}

/* -- reading an upstream answer ------------------------------------------------------------ */
/* A typical upstream response head: status line and 10 header fields. */
static const char RESPONSE_HEAD[] = "HTTP/1.1 200 OK\r\n"
                                    "Date: Wed, 02 Dec 2026 16:00:00 GMT\r\n"
                                    "Content-Type: application/json; charset=utf-8\r\n"
                                    "Content-Length: 2143\r\n"
                                    "Connection: keep-alive\r\n"
                                    "Cache-Control: no-cache, no-store, must-revalidate\r\n"
                                    "X-Request-Id: 9f2c4e1a-7b3d-4c8e-9a1f-2e6b8d0c4f7a\r\n"
                                    "Vary: Accept-Encoding, Origin\r\n"
                                    "ETag: W/\"85f-m0Xy3k4A9nQe2Zr7\"\r\n"
                                    "Server: envoy\r\n"
                                    "X-Envoy-Upstream-Service-Time: 3\r\n"
                                    "\r\n";

static void bench_head_gd(void *arg, long n)
{
    const char *s = arg;
    size_t len = strlen(s);
    gd_http1_head_t h;
    for (long i = 0; i < n; i++)
        sink += gd_http1_parse_head(s, len, false, &h) + (long)h.content_length;
}

static void bench_head_phr(void *arg, long n)
{
    const char *s = arg;
    size_t len = strlen(s);
    for (long i = 0; i < n; i++) {
        struct phr_header hs[32];
        size_t nh = 32, msg_len;
        int minor, status;
        const char *msg;
        sink += phr_parse_response(s, len, &minor, &status, &msg, &msg_len, hs, &nh, 0) + status;
    }
}

struct chunked_input {
    char *coded, *work;
    size_t len;
};

/* @body_len bytes of JSON-ish text in chunks of @chunk bytes, then the last chunk. */
static struct chunked_input make_chunked(size_t body_len, size_t chunk)
{
    struct chunked_input c = {.coded = malloc(body_len * 2 + 64),
                              .work = malloc(body_len * 2 + 64)};
    for (size_t off = 0; off < body_len; off += chunk) {
        size_t k = body_len - off < chunk ? body_len - off : chunk;
        c.len += (size_t)sprintf(c.coded + c.len, "%zx\r\n", k);
        for (size_t j = 0; j < k; j++)
            c.coded[c.len++] = "{\"id\":7,\"title\":\"lorem ipsum\"},"[(off + j) % 32];
        memcpy(c.coded + c.len, "\r\n", 2);
        c.len += 2;
    }
    memcpy(c.coded + c.len, "0\r\n\r\n", 5);
    c.len += 5;
    return c;
}

/* Both decoders work in place: every round starts from a fresh copy (timed on its own). */
static void bench_copy(void *arg, long n)
{
    struct chunked_input *c = arg;
    for (long i = 0; i < n; i++) {
        memcpy(c->work, c->coded, c->len);
        sink += c->work[i % (long)c->len];
    }
}

static void bench_dechunk_gd(void *arg, long n)
{
    struct chunked_input *c = arg;
    for (long i = 0; i < n; i++) {
        gd_http1_chunked_t d = {0};
        bool is_done;
        size_t consumed;
        memcpy(c->work, c->coded, c->len);
        sink += gd_http1_dechunk(&d, c->work, c->len, &is_done, &consumed) + is_done;
    }
}

static void bench_dechunk_phr(void *arg, long n)
{
    struct chunked_input *c = arg;
    for (long i = 0; i < n; i++) {
        struct phr_chunked_decoder d = {.consume_trailer = 1};
        size_t size = c->len;
        memcpy(c->work, c->coded, c->len);
        sink += phr_decode_chunked(&d, c->work, &size) + (long)size;
    }
}

/* How each reader takes hostile input: accepted or refused, printed as a table. */
static void compare_hostile(void)
{
    static const char *const heads[][2] = {
        {"obs-fold (header folding)",
         "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\n"},
        {"duplicate Content-Length, different",
         "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\n"},
        {"Content-Length list \"2, 2\"", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n"},
        {"Content-Length and chunked",
         "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"},
        {"space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n"},
        {"NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\n"},
        {"status 2000", "HTTP/1.1 2000 OK\r\n\r\n"},
    };
    static const char *const bodies[][2] = {
        {"chunk size of 16 hex digits", "ffffffffffffffff\r\nabc"},
        {"chunk size of 17 hex digits", "10000000000000000\r\nabc"},
        {"chunk extension with a bare CR", "3;a=\rb\r\nabc\r\n0\r\n\r\n"},
        {"chunk extension, quoted, with LF", "3;a=\"x\nabc\r\n0\r\n\r\n"},
        {"no CRLF after the data", "3\r\nabcX\r\n0\r\n\r\n"},
        {"negative size", "-3\r\nabc\r\n0\r\n\r\n"},
        {"junk after the size digits (0x3)", "0x3\r\nabc\r\n0\r\n\r\n"},
    };
    printf("\nhostile input                              http1.c    picohttpparser\n");
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        const char *s = heads[i][1];
        size_t len = strlen(s) + (strstr(heads[i][0], "NUL") ? strlen(s + strlen(s) + 1) + 1 : 0);
        gd_http1_head_t h;
        struct phr_header hs[32];
        size_t nh = 32, msg_len;
        int minor, status;
        const char *msg;
        int g = gd_http1_parse_head(s, len, false, &h);
        int p = phr_parse_response(s, len, &minor, &status, &msg, &msg_len, hs, &nh, 0);
        printf("%-42s %-10s %s\n", heads[i][0],
               g == 0         ? "accepts"
               : g == -EAGAIN ? "waits"
                              : "refuses",
               p > 0     ? "accepts"
               : p == -2 ? "waits"
                         : "refuses");
    }
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char a[64], b[64];
        size_t len = strlen(bodies[i][1]), size = len, consumed;
        gd_http1_chunked_t d = {0};
        struct phr_chunked_decoder pd = {.consume_trailer = 1};
        bool is_done;
        memcpy(a, bodies[i][1], len);
        memcpy(b, bodies[i][1], len);
        ssize_t g = gd_http1_dechunk(&d, a, len, &is_done, &consumed);
        ssize_t p = phr_decode_chunked(&pd, b, &size);
        printf("%-42s %-10s %s\n", bodies[i][0],
               g < 0     ? "refuses"
               : is_done ? "accepts"
                         : "waits",
               p == -1   ? "refuses"
               : p == -2 ? "waits"
                         : "accepts");
    }
}

static PGresult *make_orders(void)
{
    PGresAttDesc cols[] = {
        {.name = (char *)"id", .typid = 20, .typlen = 8},
        {.name = (char *)"product_name", .typid = 25, .typlen = -1},
        {.name = (char *)"quantity", .typid = 23, .typlen = 4},
        {.name = (char *)"price", .typid = 1700, .typlen = -1},
        {.name = (char *)"order_date", .typid = 1184, .typlen = 8},
    };
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PQsetResultAttrs(res, 5, cols);
    for (int r = 0; r < 10; r++) {
        char id[16], qty[8];
        snprintf(id, sizeof(id), "%d", 140 + r);
        snprintf(qty, sizeof(qty), "%d", 1 + r % 5);
        PQsetvalue(res, r, 0, id, (int)strlen(id));
        PQsetvalue(res, r, 1, (char *)"Widget 123", 10);
        PQsetvalue(res, r, 2, qty, (int)strlen(qty));
        PQsetvalue(res, r, 3, (char *)"123.45", 6);
        PQsetvalue(res, r, 4, (char *)"2024-03-01 12:34:00+00", 22);
    }
    return res;
}

int main(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    gd_sched_t *sched = gd_sched_new(&loop, 64 * 1024, 16);
    report("coroutine resume + yield", bench_switch, sched, 2000000);

    gd_template_t t;
    char err[128];
    gd_template_compile("/posts?userId={id}", resolve, NULL, &t, err, sizeof(err));
    report("template expand /posts?userId={id}", bench_template, &t, 2000000);

    char *posts = make_posts();
    static const char user[] = "{\"id\":7,\"name\":\"User 7\",\"username\":\"user7\",\"email\":"
                               "\"user7@example.com\",\"address\":{\"city\":\"Gwenborough\"}}";
    PGresult *orders = make_orders();
    gd_pgjson_buf_t ordersjson = {0};
    gd_pgjson_append_rows(&ordersjson, orders);
    static gd_call_conf_t calls[] = {{.name = (char *)"user", .name_json = (char *)"\"user\""},
                                     {.name = (char *)"posts", .name_json = (char *)"\"posts\""},
                                     {.name = (char *)"albums", .name_json = (char *)"\"albums\""},
                                     {.name = (char *)"orders", .name_json = (char *)"\"orders\""}};
    struct merge_input m = {.ep = {.calls = calls, .ncalls = 4}, .cap = 65536};
    const char *bodies[] = {user, posts, posts, NULL};
    gd_buf_t bufs[4];
    for (int i = 0; i < 4; i++) {
        bufs[i] = (gd_buf_t){.bytes = i < 3 ? (char *)bodies[i] : ordersjson.base,
                             .len = i < 3 ? strlen(bodies[i]) : ordersjson.len};
        m.results[i].outcome = GD_OUTCOME_OK;
        m.results[i].body = &bufs[i];
    }
    m.buf = malloc(m.cap);
    report("merge the profile answer (4 calls, ~6 KB)", bench_merge, &m, 200000);
    gd_config_t *cfg = NULL;
    char cerr[512];
    const char *shaped_conf =
        "{\"listen\":[\"127.0.0.1:8080\"],\"postgres\":{},\"upstreams\":{\"a\":{\"url\":"
        "\"http://127.0.0.1:1\"}},\"endpoints\":[{\"path\":\"/users/{id}/summary\",\"params\":"
        "{\"id\":\"int\"},\"calls\":{\"user\":{\"upstream\":\"a\",\"path\":\"/u\"},\"posts\":"
        "{\"upstream\":\"a\",\"path\":\"/p\"},\"albums\":{\"upstream\":\"a\",\"path\":"
        "\"/a\"},\"orders\":{\"sql\":\"SELECT 1\"}},\"response\":{\"user_id\":\"{id}\","
        "\"user_info\":\"{user}\",\"posts_count\":\"{count(posts)}\",\"albums_count\":"
        "\"{count(albums)}\",\"posts\":\"{posts[0:5]}\",\"albums\":\"{albums[0:3]}\","
        "\"orders\":\"{orders}\"}}]}";
    if (gd_config_load_string(shaped_conf, "bench", &cfg, cerr, sizeof(cerr)) != 0) {
        fprintf(stderr, "%s\n", cerr);
        return 1;
    }
    struct shape_input sh = {&cfg->endpoints[0], m.results, {0}};
    report("  shaped: the classic aggregator's response template", bench_shape, &sh, 200000);
    free(sh.out.buf);
    gd_config_free(cfg);
    report("SQL rows to JSON (10 orders rows)", bench_pgjson, orders, 200000);
    report("validate an upstream body (posts, ~2 KB)", bench_validate, posts, 200000);
    report("validate an upstream body (user, ~130 B)", bench_validate, (void *)user, 2000000);
    report("  the same with jansson (before)", bench_validate_jansson, posts, 50000);

    report("response head, 10 fields: gd_http1_parse_head", bench_head_gd, (void *)RESPONSE_HEAD,
           2000000);
    report("  phr_parse_response alone (its syntax part)", bench_head_phr, (void *)RESPONSE_HEAD,
           2000000);
    struct chunked_input big = make_chunked(16384, 4096), small = make_chunked(2048, 32);
    report("copy of a 16 KiB body in 4 KiB chunks", bench_copy, &big, 200000);
    report("  dechunk 16 KiB (copy included): http1.c", bench_dechunk_gd, &big, 200000);
    report("  dechunk 16 KiB: phr_decode_chunked", bench_dechunk_phr, &big, 200000);
    report("copy of a 2 KiB body in 32 B chunks", bench_copy, &small, 200000);
    report("  dechunk 2 KiB (copy included): http1.c", bench_dechunk_gd, &small, 200000);
    report("  dechunk 2 KiB: phr_decode_chunked", bench_dechunk_phr, &small, 200000);
    compare_hostile();
    free(big.coded);
    free(big.work);
    free(small.coded);
    free(small.work);

    free(m.buf);
    free(posts);
    free(ordersjson.base);
    PQclear(orders);
    gd_template_dispose(&t);
    gd_sched_free(sched);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return (int)(sink & 0);
}
