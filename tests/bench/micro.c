/*
 * Micro-benchmarks of gatherd's hot parts, in ns per operation (best of 5 runs of N each):
 * coroutine resume+yield, template expansion, merging the profile answer, SQL rows to JSON,
 * and validating an upstream body. Run: build-release/tests/bench/bench_micro
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <uv.h>

#include "config/config.h"
#include "json/json.h"
#include "base/coro.h"
#include "gather/merge.h"
#include "sources/pg/pgjson.h"
#include "config/template.h"

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

static PGresult *make_orders(void)
{
    PGresAttDesc cols[] = {
        {.name = "id", .typid = 20, .typlen = 8},
        {.name = "product_name", .typid = 25, .typlen = -1},
        {.name = "quantity", .typid = 23, .typlen = 4},
        {.name = "price", .typid = 1700, .typlen = -1},
        {.name = "order_date", .typid = 1184, .typlen = 8},
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
    report("SQL rows to JSON (10 orders rows)", bench_pgjson, orders, 200000);
    report("validate an upstream body (posts, ~2 KB)", bench_validate, posts, 200000);
    report("validate an upstream body (user, ~130 B)", bench_validate, (void *)user, 2000000);
    report("  the same with jansson (before)", bench_validate_jansson, posts, 50000);

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
