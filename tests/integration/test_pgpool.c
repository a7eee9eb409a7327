/*
 * gd_pgpool against a real PostgreSQL 15 server that this program starts itself
 * (scripts/pg-cluster.sh) in a fresh temporary directory on a free loopback port, and stops on
 * every way out: a normal exit, a failed check, abort(), a sanitizer's report or a signal.
 *
 * Each case gets its own event loop, scheduler and pools, and runs as a coroutine, the way the
 * daemon's request handlers use the pool. Output: one line per case, then "N passed, N failed";
 * the exit status is 1 when any case failed. GD_PGPOOL_DEBUG=1 shows the pool's debug log.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "base/coro.h"
#include "ops/log.h"
#include "sources/pg/pgpool.h"
#include "base/util.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define STACK_SIZE   (256 * 1024)
#define CASE_ALARM_S 120 /* a hung case ends the run (and the clusters) */
#define CONNECT_MS   2000
#define MAX_POOLS    6
#define BODY_MAX     8192

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* -- throwaway clusters, stopped on every way out ----------------------------------------- */

struct cluster {
    char dir[PATH_MAX];
    char port[16];
    volatile sig_atomic_t is_started; /* stop it (and remove its directory) on the way out */
};

static char script[PATH_MAX];
static char tmp_root[256];
static struct cluster clusters[2];

/* Runs the cluster script "@cmd @dir [@arg1 [@arg2]]"; async-signal-safe (fork, execv,
 * waitpid, _exit), so the signal handler can use it too. Returns its exit status, or -1. */
static int run_script(const char *cmd, const char *dir, const char *arg1, const char *arg2)
{
    char bash[] = "bash";
    char *argv[] = {bash, script, (char *)cmd, (char *)dir, (char *)arg1, (char *)arg2, NULL};
    int status;
    pid_t pid = fork();

    if (pid < 0)
        return -1;
    if (pid == 0) {
        execv("/bin/bash", argv);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int cluster_start(struct cluster *c)
{
    c->is_started = 1; /* before: a half-started server is stopped too */
    return run_script("start", c->dir, c->port, NULL);
}

static void cluster_stop(struct cluster *c)
{
    if (!c->is_started)
        return;
    (void)run_script("stop", c->dir, "--rm", NULL); /* nothing more to do if it fails */
    c->is_started = 0;
}

/* Async-signal-safe: atexit, the fatal-signal handler and ASan's death callback call it. */
static void stop_clusters(void)
{
    for (size_t i = 0; i < GD_ARRAY_SIZE(clusters); i++)
        cluster_stop(&clusters[i]);
    if (tmp_root[0] != '\0') {
        char sql[PATH_MAX + 16];
        size_t n = strlen(tmp_root);
        memcpy(sql, tmp_root, n);
        memcpy(sql + n, "/init.sql", sizeof("/init.sql"));
        (void)unlink(sql);
        (void)rmdir(tmp_root);
    }
}

static void on_fatal_signal(int sig)
{
    static const char msg[] = "test_pgpool: fatal signal; stopping the test clusters\n";

    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    stop_clusters();
    raise(sig); /* SA_RESETHAND: the default action now */
}

static void install_cleanup(void)
{
    struct sigaction sa = {.sa_handler = on_fatal_signal, .sa_flags = SA_RESETHAND | SA_NODEFER};
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGALRM, SIGSEGV, SIGBUS};

    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < GD_ARRAY_SIZE(sigs); i++) {
#ifdef TEST_ASAN
        if (sigs[i] == SIGSEGV || sigs[i] == SIGBUS)
            continue; /* ASan reports these itself, then calls the death callback */
#endif
        sigaction(sigs[i], &sa, NULL);
    }
#ifdef TEST_ASAN
    __asan_set_death_callback(stop_clusters);
#endif
    atexit(stop_clusters);
}

/* A port nobody listens on right now: the kernel's choice for 127.0.0.1:0. */
static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    GD_REQUIRE(fd >= 0);
    GD_REQUIRE(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    GD_REQUIRE(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
    port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

/* -- statements ---------------------------------------------------------------------------- */

enum {
    S_SIMPLE,
    S_PID,
    S_PID_SLOW,
    S_ECHO,
    S_ROWS,
    S_BY_ID,
    S_MISSING,
    S_SLEEP,
    S_COUNT_APP,
    S_PREPARED,
    S_COUNT_T,
    S_STATE_OF,
    S_TERMINATE,
    S_CLOCK,
    S_ACTIVE_PID,
    S_COUNT,
};

/* The session's prepared statements, but for this one, which is prepared by then too. */
static const char sql_prepared[] = "SELECT name FROM pg_prepared_statements"
                                   " WHERE strpos(statement, 'pg_prepared') = 0 ORDER BY name";

static const char *const statements[S_COUNT] = {
    [S_SIMPLE] = "SELECT 1 AS one, 'a\"b' AS s, true AS t, NULL::int AS n",
    [S_PID] = "SELECT pg_backend_pid() AS pid",
    [S_PID_SLOW] = "SELECT pg_backend_pid() AS pid FROM pg_sleep(0.05)",
    [S_ECHO] = "SELECT $1::text AS v",
    [S_ROWS] = "SELECT id, name FROM t WHERE id <= $1::int ORDER BY id",
    [S_BY_ID] = "SELECT id, name FROM t WHERE id = $1",
    [S_MISSING] = "SELECT * FROM no_such_table",
    [S_SLEEP] = "SELECT 1 AS x FROM pg_sleep($1::float8)",
    [S_COUNT_APP] = "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1",
    [S_PREPARED] = sql_prepared,
    [S_COUNT_T] = "SELECT count(*)::int AS n FROM t",
    [S_STATE_OF] = "SELECT state, query FROM pg_stat_activity WHERE pid = $1::int",
    [S_TERMINATE] = "SELECT pg_terminate_backend($1::int) AS ok",
    /* The server's clock, in µs: queries on one connection run in the order they took it. */
    [S_ACTIVE_PID] = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
                     " AND state = 'active' ORDER BY pid LIMIT 1",
    [S_CLOCK] = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us",
};
static const int statement_nparams[S_COUNT] = {
    [S_ECHO] = 1,      [S_ROWS] = 1,     [S_BY_ID] = 1,     [S_SLEEP] = 1,
    [S_COUNT_APP] = 1, [S_STATE_OF] = 1, [S_TERMINATE] = 1, [S_ACTIVE_PID] = 1,
};

static const char init_sql[] = "CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL);\n"
                               "INSERT INTO t VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma');\n";

/* -- cases --------------------------------------------------------------------------------- */

struct tpool {
    gd_pgpool_conf_t conf; /* borrowed by the pool until gd_pgpool_free() */
    char conninfo[256];
    char app[64];
    gd_pgpool_t *pool;
};

typedef struct tcase {
    const char *name;
    void (*fn)(struct tcase *t);
    uv_loop_t loop;
    gd_sched_t *sched;
    gd_timers_t *timers;
    struct tpool pools[MAX_POOLS];
    size_t npools;
    gd_pgpool_shared_t *shared; /* freed once the pools are */
    int failures;
    char note[200]; /* figures shown on the case's line */
} tcase_t;

static int passed, failed;

static bool check(tcase_t *t, bool ok, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static bool check(tcase_t *t, bool ok, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;

    if (ok)
        return true;
    t->failures++;
    printf("    check failed at line %d: %s: ", line, expr);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    return false;
}

#define CHECK(t, cond, ...) check((t), (cond), __LINE__, #cond, __VA_ARGS__)

static void note(tcase_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(tcase_t *t, const char *fmt, ...)
{
    size_t len = strlen(t->note);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t->note + len, sizeof(t->note) - len, fmt, ap);
    va_end(ap);
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* A pool of @size on 127.0.0.1:@port; @extra (may be NULL) is appended to the conninfo,
 * where a keyword given again overrides; @extra "" alone: an empty conninfo. With @shared its
 * connections count in that process-wide count, and its application_name is the case's
 * (the same for every pool of the count), else it is the pool's own. */
static gd_pgpool_t *open_pool_ex(tcase_t *t, size_t size, uint64_t acquire_timeout_ms, int port,
                                 const char *extra, gd_pgpool_shared_t *shared)
{
    struct tpool *p;

    GD_REQUIRE(t->npools < MAX_POOLS);
    p = &t->pools[t->npools++];
    if (shared != NULL)
        snprintf(p->app, sizeof(p->app), "gd-test-%s-shared", t->name);
    else
        snprintf(p->app, sizeof(p->app), "gd-test-%s-%zu", t->name, t->npools);
    if (extra != NULL && extra[0] == '\0')
        p->conninfo[0] = '\0';
    else
        snprintf(p->conninfo, sizeof(p->conninfo),
                 "host=127.0.0.1 port=%d dbname=gatherd user=gatherd%s%s", port,
                 extra != NULL ? " " : "", extra != NULL ? extra : "");
    p->conf = (gd_pgpool_conf_t){.conninfo = p->conninfo,
                                 .size = size,
                                 .acquire_timeout_ms = acquire_timeout_ms,
                                 .connect_timeout_ms = CONNECT_MS,
                                 .statements = statements,
                                 .statement_nparams = statement_nparams,
                                 .nstatements = S_COUNT,
                                 .application_name = p->app,
                                 .shared = shared};
    p->pool = gd_pgpool_new(&p->conf, &t->loop, t->timers);
    return p->pool;
}

static gd_pgpool_t *open_pool(tcase_t *t, size_t size, uint64_t acquire_timeout_ms, int port,
                              const char *extra)
{
    return open_pool_ex(t, size, acquire_timeout_ms, port, extra, NULL);
}

/* Yields until every connection of @pool is idle, at most @ms. */
static bool wait_idle(gd_pgpool_t *pool, size_t size, uint64_t ms)
{
    uint64_t end = now_ms() + ms;

    while (gd_pgpool_stats(pool).idle < size) {
        if (now_ms() >= end)
            return false;
        gd_coro_sleep(5);
    }
    return true;
}

/* Starts @q on @pool, as the gatherer starts every call: through the pool's call operations. */
static void start_query(gd_pgpool_t *pool, gd_group_t *g, gd_pgpool_query_t *q)
{
    gd_source_t src = {&gd_pgpool_query_ops, pool};

    q->base.ops = &gd_pgpool_query_ops;
    gd_call_start(&q->base, &src, g);
}

typedef struct tq {
    gd_call_result_t r;
    char body[BODY_MAX]; /* a NUL-terminated copy of result.body ("" when none) */
    uint64_t wall_ms;
    int group_ret;
} tq_t;

static void copy_result(const gd_pgpool_query_t *q, tq_t *out)
{
    out->r = q->base.result;
    out->body[0] = '\0';
    if (q->base.result.body != NULL)
        snprintf(out->body, sizeof(out->body), "%.*s", (int)q->base.result.body->len,
                 q->base.result.body->bytes);
    out->r.body = NULL; /* not valid past gd_call_dispose() */
}

/* Yields. Runs one query with its own deadline @timeout_ms; the group waits @group_ms
 * (0: well past the query's deadline, so that the query's own rules decide). */
static void query_ex(tcase_t *t, gd_pgpool_t *pool, size_t stmt, const char *const *params,
                     bool is_one_row, uint64_t timeout_ms, uint64_t group_ms, tq_t *out)
{
    gd_group_t g;
    uint64_t start = uv_hrtime();
    gd_pgpool_query_t q = {.statement = stmt,
                           .params = params,
                           .is_one_row = is_one_row,
                           .base.started_at_ns = start,
                           .base.deadline_ms = gd_timers_now(t->timers) + timeout_ms,
                           .base.timeout_ms = timeout_ms};

    gd_group_init(&g, t->sched);
    start_query(pool, &g, &q);
    out->group_ret = gd_group_wait(&g, gd_timers_now(t->timers) +
                                           (group_ms > 0 ? group_ms : timeout_ms + 10000));
    gd_group_dispose(&g);
    out->wall_ms = (uv_hrtime() - start) / 1000000;
    copy_result(&q, out);
    gd_call_dispose(&q.base);
}

static void query(tcase_t *t, gd_pgpool_t *pool, size_t stmt, const char *const *params,
                  bool is_one_row, uint64_t timeout_ms, tq_t *out)
{
    query_ex(t, pool, stmt, params, is_one_row, timeout_ms, 0, out);
}

static long body_int(const char *body, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(body, pat);
    return p != NULL ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static const char *outcome(const tq_t *q)
{
    return gd_outcome_name(q->r.outcome);
}

#define CHECK_OK(t, q)                                                                             \
    CHECK((t), (q)->r.outcome == GD_OUTCOME_OK, "outcome %s (%s)", outcome(q), (q)->r.message)

static void case_simple(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 2, 1000, atoi(clusters[0].port), NULL);
    tq_t q;

    query(t, pool, S_SIMPLE, NULL, false, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, "[{\"one\":1,\"s\":\"a\\\"b\",\"t\":true,\"n\":null}]") == 0,
              "body %s", q.body);
    CHECK(t, q.r.elapsed_ms <= q.wall_ms + 1, "elapsed_ms %" PRIu64 ", wall %" PRIu64,
          q.r.elapsed_ms, q.wall_ms);
    query(t, pool, S_SIMPLE, NULL, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, "{\"one\":1,\"s\":\"a\\\"b\",\"t\":true,\"n\":null}") == 0,
              "body %s", q.body);
    CHECK(t, gd_pgpool_is_ready(pool), "not ready after a query");
    note(t, "first query %" PRIu64 " ms (connect included)", q.wall_ms);
}

static void case_host_name(tcase_t *t)
{
    /* "localhost" goes through uv_getaddrinfo() and hostaddr=; libpq tries each address
     * (::1 may come first and be refused: the server listens on 127.0.0.1 only). */
    gd_pgpool_t *pool = open_pool(t, 2, 1000, atoi(clusters[0].port), "host=localhost");
    tq_t q;

    query(t, pool, S_ECHO, (const char *[]){"via dns"}, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, "{\"v\":\"via dns\"}") == 0, "body %s", q.body);
}

static void case_environment(tcase_t *t)
{
    gd_pgpool_t *pool;
    tq_t q;

    /* An empty conninfo leaves libpq's PG* environment in force. */
    setenv("PGHOST", "127.0.0.1", 1);
    setenv("PGPORT", clusters[0].port, 1);
    setenv("PGUSER", "gatherd", 1);
    setenv("PGDATABASE", "gatherd", 1);
    pool = open_pool(t, 1, 1000, 0, "");
    query(t, pool, S_COUNT_T, NULL, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, body_int(q.body, "n") == 3, "table t: %s", q.body);
    unsetenv("PGHOST");
    unsetenv("PGPORT");
    unsetenv("PGUSER");
    unsetenv("PGDATABASE");
}

static void case_concurrent(tcase_t *t)
{
    enum { SIZE = 3, N = 40 };
    gd_pgpool_t *pool = open_pool(t, SIZE, 5000, atoi(clusters[0].port), NULL);
    static gd_pgpool_query_t qs[N]; /* static: 40 queries are large for a coroutine stack */
    long pids[N];
    size_t distinct = 0, ok = 0;
    gd_group_t g;
    gd_pgpool_stats_t s;
    uint64_t start;
    tq_t q;
    const char *app[] = {t->pools[0].app};

    CHECK(t, wait_idle(pool, SIZE, 5000), "connections not up");
    start = uv_hrtime();
    gd_group_init(&g, t->sched);
    for (size_t i = 0; i < N; i++) {
        qs[i] = (gd_pgpool_query_t){.statement = S_PID_SLOW,
                                    .base.started_at_ns = start,
                                    .base.deadline_ms = gd_timers_now(t->timers) + 10000,
                                    .base.timeout_ms = 10000};
        start_query(pool, &g, &qs[i]);
    }
    s = gd_pgpool_stats(pool);
    CHECK(t, s.busy == SIZE && s.waiting == N - SIZE, "busy %zu waiting %zu", s.busy, s.waiting);
    CHECK(t, gd_group_wait(&g, gd_timers_now(t->timers) + 20000) == 0, "group wait");
    gd_group_dispose(&g);
    for (size_t i = 0; i < N; i++) {
        bool is_new = true;
        if (qs[i].base.result.outcome == GD_OUTCOME_OK) {
            tq_t r;
            copy_result(&qs[i], &r);
            pids[ok] = body_int(r.body, "pid");
            for (size_t j = 0; j < ok; j++)
                is_new = is_new && pids[j] != pids[ok];
            distinct += is_new;
            ok++;
        }
        gd_call_dispose(&qs[i].base);
    }
    CHECK(t, ok == N, "%zu of %d succeeded", ok, N);
    CHECK(t, distinct >= 1 && distinct <= SIZE, "%zu distinct backends", distinct);
    note(t, "%d queries of 50 ms on %d connections in %" PRIu64 " ms, %zu backends", N, SIZE,
         (uv_hrtime() - start) / 1000000, distinct);
    query(t, pool, S_COUNT_APP, app, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, body_int(q.body, "n") == SIZE, "server sees %s", q.body);
}

static void case_prepared_once(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 1, 1000, atoi(clusters[0].port), NULL);
    char expected[100];
    long pid = -1;
    tq_t q;

    for (int i = 0; i < 3; i++) {
        query(t, pool, S_PID, NULL, true, 5000, &q);
        if (!CHECK_OK(t, &q))
            return;
        if (pid == -1)
            pid = body_int(q.body, "pid");
        CHECK(t, body_int(q.body, "pid") == pid, "another backend: %s", q.body);
    }
    /* A second prepare of gd_<S_PID> would have failed with 42P05: the session has it once. */
    snprintf(expected, sizeof(expected), "[{\"name\":\"gd_%d\"}]", S_PID);
    query(t, pool, S_PREPARED, NULL, false, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, expected) == 0, "body %s", q.body);
}

static void case_args(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 1, 1000, atoi(clusters[0].port), NULL);
    const char *hostile[] = {"1; DROP TABLE t"};
    const char *quotes[] = {"O'Brien \\ \"x\" $1"};
    const char *null[] = {NULL};
    tq_t q;

    query(t, pool, S_ECHO, hostile, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, "{\"v\":\"1; DROP TABLE t\"}") == 0, "body %s", q.body);
    query(t, pool, S_BY_ID, hostile, false, 5000, &q);
    CHECK(t, q.r.outcome == GD_OUTCOME_SQL && strcmp(q.r.sqlstate, "22P02") == 0,
          "outcome %s sqlstate %s (%s)", outcome(&q), q.r.sqlstate, q.r.message);
    query(t, pool, S_ECHO, quotes, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, "{\"v\":\"O'Brien \\\\ \\\"x\\\" $1\"}") == 0, "body %s", q.body);
    query(t, pool, S_ECHO, null, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, "{\"v\":null}") == 0, "body %s", q.body);
    query(t, pool, S_COUNT_T, NULL, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, body_int(q.body, "n") == 3, "table t: %s", q.body);
}

static void case_row_one(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 1, 1000, atoi(clusters[0].port), NULL);
    const char *zero[] = {"0"}, *one[] = {"1"}, *two[] = {"2"};
    tq_t q;

    query(t, pool, S_ROWS, zero, true, 5000, &q);
    CHECK(t,
          q.r.outcome == GD_OUTCOME_NOT_FOUND && strcmp(q.body, "null") == 0 &&
              strcmp(q.r.message, "no row") == 0,
          "outcome %s body %s message %s", outcome(&q), q.body, q.r.message);
    query(t, pool, S_ROWS, one, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, "{\"id\":1,\"name\":\"alpha\"}") == 0, "body %s", q.body);
    query(t, pool, S_ROWS, two, true, 5000, &q);
    CHECK(t,
          q.r.outcome == GD_OUTCOME_SQL && q.r.sqlstate[0] == '\0' &&
              strcmp(q.r.message,
                     "query returned more than one row where \"row\": \"one\" expects at most one") == 0,
          "outcome %s sqlstate '%s' message %s", outcome(&q), q.r.sqlstate, q.r.message);
    query(t, pool, S_ROWS, two, false, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t,
              strcmp(q.body, "[{\"id\":1,\"name\":\"alpha\"},{\"id\":2,\"name\":\"beta\"}]") == 0,
              "body %s", q.body);
    query(t, pool, S_ROWS, zero, false, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, "[]") == 0, "body %s", q.body);
}

static void case_sql_errors(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 1, 1000, atoi(clusters[0].port), NULL);
    const char *bad_int[] = {"abc"};
    long pid;
    tq_t q;

    query(t, pool, S_PID, NULL, true, 5000, &q);
    CHECK_OK(t, &q);
    pid = body_int(q.body, "pid");
    for (int i = 0; i < 2; i++) { /* the failed prepare is not remembered: fails the same */
        query(t, pool, S_MISSING, NULL, false, 5000, &q);
        CHECK(t,
              q.r.outcome == GD_OUTCOME_SQL && strcmp(q.r.sqlstate, "42P01") == 0 &&
                  strcmp(q.r.message, "relation \"no_such_table\" does not exist") == 0,
              "outcome %s sqlstate %s message %s", outcome(&q), q.r.sqlstate, q.r.message);
    }
    query(t, pool, S_BY_ID, bad_int, false, 5000, &q);
    CHECK(t, q.r.outcome == GD_OUTCOME_SQL && strcmp(q.r.sqlstate, "22P02") == 0,
          "outcome %s sqlstate %s (%s)", outcome(&q), q.r.sqlstate, q.r.message);
    CHECK(t, q.body[0] == '\0', "a failure has a body: %s", q.body);
    /* The same connection goes on after errors in its pipeline. */
    query(t, pool, S_PID, NULL, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, body_int(q.body, "pid") == pid, "another backend after the errors");
    CHECK(t, gd_pgpool_stats(pool).reconnects == 0, "reconnected");
}

/* Yields until backend @pid no longer runs a query (seen through @observer); returns the ms
 * it took, or UINT64_MAX after @max_ms. */
static uint64_t wait_backend_idle(tcase_t *t, gd_pgpool_t *observer, long pid, uint64_t max_ms)
{
    char pidbuf[24];
    const char *params[] = {pidbuf};
    uint64_t start = now_ms();
    tq_t q;

    snprintf(pidbuf, sizeof(pidbuf), "%ld", pid);
    for (;;) {
        query(t, observer, S_STATE_OF, params, true, 1000, &q);
        if (q.r.outcome == GD_OUTCOME_OK && strstr(q.body, "\"state\":\"active\"") == NULL)
            return now_ms() - start;
        if (now_ms() - start >= max_ms)
            return UINT64_MAX;
        gd_coro_sleep(2);
    }
}

static void case_deadline(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 1, 3000, atoi(clusters[0].port), NULL);
    gd_pgpool_t *observer = open_pool(t, 1, 1000, atoi(clusters[0].port), NULL);
    const char *two_s[] = {"2"};
    uint64_t stop_ms;
    long pid;
    tq_t q;

    CHECK(t, wait_idle(pool, 1, 5000) && wait_idle(observer, 1, 5000), "not up");
    query(t, pool, S_PID, NULL, true, 5000, &q);
    CHECK_OK(t, &q);
    pid = body_int(q.body, "pid");
    /* Warm the statement so that the figure is the deadline, not a first prepare. */
    query(t, pool, S_SLEEP, (const char *[]){"0"}, true, 5000, &q);
    CHECK_OK(t, &q);

    query(t, pool, S_SLEEP, two_s, true, 200, &q);
    CHECK(t, q.r.outcome == GD_OUTCOME_TIMEOUT && strcmp(q.r.message, "timed out after 200 ms") == 0,
          "outcome %s message %s", outcome(&q), q.r.message);
    CHECK(t, q.wall_ms >= 195 && q.wall_ms <= 320, "answered after %" PRIu64 " ms", q.wall_ms);
    CHECK(t, q.r.elapsed_ms >= 195 && q.r.elapsed_ms <= 320, "elapsed_ms %" PRIu64, q.r.elapsed_ms);
    stop_ms = wait_backend_idle(t, observer, pid, 1000);
    CHECK(t, stop_ms != UINT64_MAX, "pg_sleep still active on the server after 1 s");
    note(t, "timeout answered after %" PRIu64 " ms; server stopped the query %" PRIu64 " ms later",
         q.wall_ms, stop_ms);
    /* The connection comes back clean: same backend, no reconnect. */
    query(t, pool, S_PID, NULL, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, body_int(q.body, "pid") == pid, "another backend: %s", q.body);
    query(t, pool, S_ECHO, (const char *[]){"after"}, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, strcmp(q.body, "{\"v\":\"after\"}") == 0, "body %s", q.body);
    CHECK(t, gd_pgpool_stats(pool).cancels == 1 && gd_pgpool_stats(pool).reconnects == 0,
          "cancels %" PRIu64 " reconnects %" PRIu64, gd_pgpool_stats(pool).cancels,
          gd_pgpool_stats(pool).reconnects);
}

static void case_task_cancel(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 1, 3000, atoi(clusters[0].port), NULL);
    gd_pgpool_t *observer = open_pool(t, 1, 1000, atoi(clusters[0].port), NULL);
    uint64_t stop_ms, answer_ms;
    long pid;
    tq_t q;

    CHECK(t, wait_idle(pool, 1, 5000) && wait_idle(observer, 1, 5000), "not up");
    query(t, pool, S_PID, NULL, true, 5000, &q);
    CHECK_OK(t, &q);
    pid = body_int(q.body, "pid");
    /* The group's deadline (the endpoint's) comes before the query's own. */
    query_ex(t, pool, S_SLEEP, (const char *[]){"2"}, true, 5000, 150, &q);
    CHECK(t, q.r.outcome == GD_OUTCOME_CANCELLED && strcmp(q.r.message, "cancelled") == 0,
          "outcome %s message %s", outcome(&q), q.r.message);
    CHECK(t, q.group_ret == -ETIMEDOUT, "group wait returned %d", q.group_ret);
    CHECK(t, q.wall_ms >= 145 && q.wall_ms <= 270, "answered after %" PRIu64 " ms", q.wall_ms);
    answer_ms = q.wall_ms;
    stop_ms = wait_backend_idle(t, observer, pid, 1000);
    CHECK(t, stop_ms != UINT64_MAX, "pg_sleep still active on the server after 1 s");
    query(t, pool, S_PID, NULL, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, body_int(q.body, "pid") == pid, "another backend: %s", q.body);
    note(t, "answered after %" PRIu64 " ms; server stopped the query %" PRIu64 " ms later",
         answer_ms, stop_ms);
}

static void case_exhaustion(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 1, 150, atoi(clusters[0].port), NULL);
    gd_pgpool_query_t slow = {.statement = S_SLEEP,
                              .params = (const char *[]){"0.6"},
                              .is_one_row = true,
                              .base.timeout_ms = 3000},
                      waits = {.statement = S_PID, .base.timeout_ms = 3000},
                      short_deadline = {.statement = S_PID, .base.timeout_ms = 80};
    gd_group_t g;
    uint64_t now;

    CHECK(t, wait_idle(pool, 1, 5000), "not up");
    gd_group_init(&g, t->sched);
    now = gd_timers_now(t->timers);
    slow.base.started_at_ns = waits.base.started_at_ns = short_deadline.base.started_at_ns = uv_hrtime();
    slow.base.deadline_ms = waits.base.deadline_ms = now + 3000;
    short_deadline.base.deadline_ms = now + 80; /* before the acquire timeout: the deadline wins */
    start_query(pool, &g, &slow);
    start_query(pool, &g, &waits);
    start_query(pool, &g, &short_deadline);
    CHECK(t, gd_pgpool_stats(pool).waiting == 2, "waiting %zu", gd_pgpool_stats(pool).waiting);
    CHECK(t, gd_group_wait(&g, now + 10000) == 0, "group wait");
    gd_group_dispose(&g);
    CHECK(t,
          waits.base.result.outcome == GD_OUTCOME_POOL_TIMEOUT &&
              strcmp(waits.base.result.message, "no Postgres connection free within 150 ms") == 0,
          "outcome %s message %s", gd_outcome_name(waits.base.result.outcome),
          waits.base.result.message);
    CHECK(t, waits.base.result.elapsed_ms >= 145 && waits.base.result.elapsed_ms <= 300,
          "pool_timeout after %" PRIu64 " ms", waits.base.result.elapsed_ms);
    CHECK(t,
          short_deadline.base.result.outcome == GD_OUTCOME_TIMEOUT &&
              strcmp(short_deadline.base.result.message, "timed out after 80 ms") == 0,
          "outcome %s message %s", gd_outcome_name(short_deadline.base.result.outcome),
          short_deadline.base.result.message);
    CHECK(t, slow.base.result.outcome == GD_OUTCOME_OK, "slow query: %s (%s)",
          gd_outcome_name(slow.base.result.outcome), slow.base.result.message);
    note(t, "pool_timeout after %" PRIu64 " ms", waits.base.result.elapsed_ms);
    gd_call_dispose(&slow.base);
    gd_call_dispose(&waits.base);
    gd_call_dispose(&short_deadline.base);
}

/* Queries waiting for a connection get one in the order they came: on a single connection,
 * their server-side clocks rise in that order. */
static void case_line_order(tcase_t *t)
{
    enum { N = 6 };
    gd_pgpool_t *pool = open_pool(t, 1, 5000, atoi(clusters[0].port), NULL);
    gd_pgpool_query_t slow = {.statement = S_SLEEP,
                              .params = (const char *[]){"0.2"},
                              .is_one_row = true,
                              .base.timeout_ms = 5000},
                      qs[N];
    long us[N];
    gd_group_t g;

    CHECK(t, wait_idle(pool, 1, 5000), "not up");
    gd_group_init(&g, t->sched);
    slow.base.started_at_ns = uv_hrtime();
    slow.base.deadline_ms = gd_timers_now(t->timers) + 5000;
    start_query(pool, &g, &slow);
    for (size_t i = 0; i < N; i++) {
        qs[i] = (gd_pgpool_query_t){.statement = S_CLOCK,
                                    .is_one_row = true,
                                    .base.started_at_ns = uv_hrtime(),
                                    .base.deadline_ms = gd_timers_now(t->timers) + 5000,
                                    .base.timeout_ms = 5000};
        start_query(pool, &g, &qs[i]);
    }
    CHECK(t, gd_pgpool_stats(pool).waiting == N, "waiting %zu", gd_pgpool_stats(pool).waiting);
    CHECK(t, gd_group_wait(&g, gd_timers_now(t->timers) + 10000) == 0, "group wait");
    gd_group_dispose(&g);
    for (size_t i = 0; i < N; i++) {
        tq_t r;
        copy_result(&qs[i], &r);
        us[i] = CHECK_OK(t, &r) ? body_int(r.body, "us") : 0;
        if (i > 0)
            CHECK(t, us[i] > us[i - 1], "query %zu ran before query %zu", i, i - 1);
        gd_call_dispose(&qs[i].base);
    }
    gd_call_dispose(&slow.base);
}

/* A connection lost while queries wait for one: its unit goes with it, the waiting queries
 * are served by the other connection and by its replacement, none is lost or run twice. */
static void case_line_with_a_lost_connection(tcase_t *t)
{
    enum { N = 8 };
    gd_pgpool_t *pool = open_pool(t, 2, 5000, atoi(clusters[0].port), NULL);
    gd_pgpool_t *observer = open_pool(t, 1, 1000, atoi(clusters[0].port), NULL);
    gd_pgpool_query_t slow[2], qs[N];
    const char *app[] = {t->pools[0].app};
    char pidbuf[24];
    const char *pid_param[] = {pidbuf};
    gd_group_t g;
    size_t ok = 0, lost = 0;
    tq_t q;

    CHECK(t, wait_idle(pool, 2, 5000) && wait_idle(observer, 1, 5000), "not up");
    gd_group_init(&g, t->sched);
    for (size_t i = 0; i < 2; i++) {
        slow[i] = (gd_pgpool_query_t){.statement = S_SLEEP,
                                      .params = (const char *[]){"0.3"},
                                      .is_one_row = true,
                                      .base.started_at_ns = uv_hrtime(),
                                      .base.deadline_ms = gd_timers_now(t->timers) + 5000,
                                      .base.timeout_ms = 5000};
        start_query(pool, &g, &slow[i]);
    }
    for (size_t i = 0; i < N; i++) {
        qs[i] = (gd_pgpool_query_t){.statement = S_PID_SLOW,
                                    .is_one_row = true,
                                    .base.started_at_ns = uv_hrtime(),
                                    .base.deadline_ms = gd_timers_now(t->timers) + 5000,
                                    .base.timeout_ms = 5000};
        start_query(pool, &g, &qs[i]);
    }
    /* One of the two busy backends is ended while the others wait. */
    gd_coro_sleep(50);
    query(t, observer, S_ACTIVE_PID, app, true, 5000, &q);
    if (CHECK_OK(t, &q)) {
        snprintf(pidbuf, sizeof(pidbuf), "%ld", body_int(q.body, "pid"));
        query(t, observer, S_TERMINATE, pid_param, true, 5000, &q);
        CHECK_OK(t, &q);
    }
    CHECK(t, gd_group_wait(&g, gd_timers_now(t->timers) + 10000) == 0, "group wait");
    gd_group_dispose(&g);
    for (size_t i = 0; i < 2; i++) {
        lost += slow[i].base.result.outcome == GD_OUTCOME_IO;
        gd_call_dispose(&slow[i].base);
    }
    for (size_t i = 0; i < N; i++) {
        ok += qs[i].base.result.outcome == GD_OUTCOME_OK;
        gd_call_dispose(&qs[i].base);
    }
    CHECK(t, lost == 1, "%zu running queries lost their connection", lost);
    CHECK(t, ok == N, "%zu of %d waiting queries succeeded", ok, N);
    gd_pgpool_stats_t st = gd_pgpool_stats(pool);
    CHECK(t, st.waiting == 0 && st.busy == 0, "waiting %zu busy %zu", st.waiting, st.busy);
    CHECK(t, wait_idle(pool, 2, 5000), "the lost connection was not re-made");
}

static void case_backend_killed(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 1, 3000, atoi(clusters[0].port), NULL);
    gd_pgpool_t *observer = open_pool(t, 1, 1000, atoi(clusters[0].port), NULL);
    gd_pgpool_query_t slow = {.statement = S_SLEEP,
                              .params = (const char *[]){"5"},
                              .is_one_row = true,
                              .base.timeout_ms = 10000};
    char pidbuf[24];
    const char *pid_param[] = {pidbuf};
    gd_group_t g;
    long pid;
    tq_t q;

    CHECK(t, wait_idle(pool, 1, 5000) && wait_idle(observer, 1, 5000), "not up");
    query(t, pool, S_PID, NULL, true, 5000, &q);
    CHECK_OK(t, &q);
    pid = body_int(q.body, "pid");
    snprintf(pidbuf, sizeof(pidbuf), "%ld", pid);
    gd_group_init(&g, t->sched);
    slow.base.started_at_ns = uv_hrtime();
    slow.base.deadline_ms = gd_timers_now(t->timers) + 10000;
    start_query(pool, &g, &slow);
    gd_coro_sleep(50);
    query(t, observer, S_TERMINATE, pid_param, true, 5000, &q);
    CHECK_OK(t, &q);
    CHECK(t, gd_group_wait(&g, gd_timers_now(t->timers) + 10000) == 0, "group wait");
    gd_group_dispose(&g);
    CHECK(t,
          slow.base.result.outcome == GD_OUTCOME_IO &&
              strstr(slow.base.result.message, "terminating connection") != NULL,
          "outcome %s message %s", gd_outcome_name(slow.base.result.outcome), slow.base.result.message);
    CHECK(t, slow.base.result.elapsed_ms < 1000, "the loss took %" PRIu64 " ms to see",
          slow.base.result.elapsed_ms);
    gd_call_dispose(&slow.base);
    /* Re-made in the background: the next query waits for it (acquire timeout 3 s). */
    query(t, pool, S_PID, NULL, true, 5000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, body_int(q.body, "pid") != pid, "the same backend again: %s", q.body);
    CHECK(t, gd_pgpool_stats(pool).reconnects == 1, "reconnects %" PRIu64,
          gd_pgpool_stats(pool).reconnects);
    note(t, "reconnected and answered %" PRIu64 " ms after the loss", q.wall_ms);
}

static void case_close_with_cancel(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 1, 1000, atoi(clusters[0].port), NULL);
    tq_t q;

    /* The harness closes the pool right after this returns, with the cancel request most
     * likely still on the canceller's thread: the loop's run must wait for it, and ASan checks
     * that its callback touches no freed memory. */
    query(t, pool, S_SLEEP, (const char *[]){"2"}, true, 100, &q);
    CHECK(t, q.r.outcome == GD_OUTCOME_TIMEOUT, "outcome %s (%s)", outcome(&q), q.r.message);
    CHECK(t, gd_pgpool_stats(pool).cancels == 1, "cancels %" PRIu64, gd_pgpool_stats(pool).cancels);
}

static void case_down_at_start(tcase_t *t)
{
    struct cluster *c = &clusters[1];
    gd_pgpool_t *pool = open_pool(t, 2, 1000, atoi(c->port), "password=secret-pw-123");
    uint64_t start;
    tq_t q;

    query(t, pool, S_PID, NULL, true, 2000, &q);
    CHECK(t, q.r.outcome == GD_OUTCOME_UNAVAILABLE, "outcome %s (%s)", outcome(&q), q.r.message);
    CHECK(t, q.wall_ms <= 300, "unavailable after %" PRIu64 " ms", q.wall_ms);
    CHECK(t, strstr(q.r.message, c->port) != NULL && strstr(q.r.message, "dbname=gatherd") != NULL,
          "message %s", q.r.message);
    CHECK(t, strstr(q.r.message, "secret") == NULL, "the password leaked: %s", q.r.message);
    CHECK(t, !gd_pgpool_is_ready(pool), "ready without a server");
    note(t, "unavailable after %" PRIu64 " ms", q.wall_ms);

    /* The server comes up on that port (blocking the loop while it does: a test may). */
    if (!CHECK(t, cluster_start(c) == 0, "cannot start the second cluster"))
        return;
    start = now_ms();
    do {
        gd_coro_sleep(50);
        query(t, pool, S_PID, NULL, true, 2000, &q);
    } while (q.r.outcome != GD_OUTCOME_OK && now_ms() - start < 15000);
    CHECK_OK(t, &q);
    note(t, "; first success %" PRIu64 " ms after the server was up", now_ms() - start);
}

struct restart {
    uv_process_t process;
    bool is_done;
    int64_t exit_status;
};

static void on_restart_exit(uv_process_t *process, int64_t exit_status, int term_signal)
{
    struct restart *r = CONTAINER_OF(process, struct restart, process);

    (void)term_signal;
    r->exit_status = exit_status;
    r->is_done = true;
    uv_close((uv_handle_t *)process, NULL);
}

struct load {
    tcase_t *t;
    gd_pgpool_t *pool;
    bool is_stopping;
    size_t ok, failed, bad_kind;
    uint64_t last_failure_ms, first_ok_after_restart_ms, restarted_ms;
};

static void load_loop(void *arg)
{
    struct load *l = arg;
    tq_t q;

    while (!l->is_stopping) {
        query(l->t, l->pool, S_PID, NULL, true, 1000, &q);
        if (q.r.outcome == GD_OUTCOME_OK) {
            l->ok++;
            if (l->restarted_ms != 0 && l->first_ok_after_restart_ms == 0)
                l->first_ok_after_restart_ms = now_ms();
        } else {
            l->failed++;
            l->last_failure_ms = now_ms();
            if (q.r.outcome != GD_OUTCOME_IO && q.r.outcome != GD_OUTCOME_UNAVAILABLE &&
                q.r.outcome != GD_OUTCOME_POOL_TIMEOUT && q.r.outcome != GD_OUTCOME_TIMEOUT) {
                l->bad_kind++;
                printf("    unexpected failure kind %s (%s)\n", outcome(&q), q.r.message);
            }
            gd_coro_sleep(10);
        }
    }
}

static void case_restart(tcase_t *t)
{
    gd_pgpool_t *pool = open_pool(t, 2, 1000, atoi(clusters[0].port), NULL);
    struct load load = {.t = t, .pool = pool};
    struct restart r = {0};
    char bash[] = "bash", dash_c[] = "-c";
    char cmd[] = "bash \"$0\" stop \"$1\" && bash \"$0\" start \"$1\" \"$2\"";
    char *args[] = {bash, dash_c, cmd, script, clusters[0].dir, clusters[0].port, NULL};
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = STDERR_FILENO}};
    uv_process_options_t opts = {.file = "/bin/bash",
                                 .args = args,
                                 .exit_cb = on_restart_exit,
                                 .stdio_count = 3,
                                 .stdio = stdio};
    gd_group_t g;
    uint64_t start;
    tq_t q;

    CHECK(t, wait_idle(pool, 2, 5000), "not up");
    gd_group_init(&g, t->sched);
    for (int i = 0; i < 4; i++) /* four clients on two connections */
        GD_REQUIRE(gd_group_spawn(&g, load_loop, &load) == 0);
    gd_coro_sleep(200);
    CHECK(t, load.ok > 0 && load.failed == 0, "before the restart: %zu ok, %zu failed", load.ok,
          load.failed);
    start = now_ms();
    if (!CHECK(t, uv_spawn(&t->loop, &r.process, &opts) == 0, "cannot spawn the restart")) {
        load.is_stopping = true;
        gd_group_wait(&g, gd_timers_now(t->timers) + 10000);
        gd_group_dispose(&g);
        return;
    }
    while (!r.is_done)
        gd_coro_sleep(10);
    load.restarted_ms = now_ms();
    CHECK(t, r.exit_status == 0, "restart script exited with %" PRId64, r.exit_status);
    while (load.first_ok_after_restart_ms == 0 && now_ms() - load.restarted_ms < 15000)
        gd_coro_sleep(10);
    gd_coro_sleep(300); /* some load after the recovery */
    load.is_stopping = true;
    CHECK(t, gd_group_wait(&g, gd_timers_now(t->timers) + 10000) == 0, "load did not stop");
    gd_group_dispose(&g);

    CHECK(t, load.first_ok_after_restart_ms != 0, "no success after the restart");
    CHECK(t, load.failed > 0, "no query failed while the server was down");
    CHECK(t, load.bad_kind == 0, "%zu failures of an unexpected kind", load.bad_kind);
    CHECK(t, gd_pgpool_stats(pool).reconnects >= 1, "reconnects %" PRIu64,
          gd_pgpool_stats(pool).reconnects);
    query(t, pool, S_COUNT_T, NULL, true, 2000, &q);
    if (CHECK_OK(t, &q))
        CHECK(t, body_int(q.body, "n") == 3, "table t: %s", q.body);
    note(t, "restart took %" PRIu64 " ms; first success %" PRIu64 " ms after; %zu ok, %zu failed",
         load.restarted_ms - start,
         load.first_ok_after_restart_ms != 0 ? load.first_ok_after_restart_ms - load.restarted_ms
                                             : 0,
         load.ok, load.failed);
}

/* -- pools of several threads sharing one count ---------------------------------------------- */

enum { SHARED_POOLS = 4, SHARED_SIZE = 2 };

/* Connections up or on their way in @t's first @n pools, by the pools' own counters. */
static size_t shared_conns(tcase_t *t, size_t n)
{
    size_t sum = 0;

    for (size_t i = 0; i < n; i++) {
        gd_pgpool_stats_t s = gd_pgpool_stats(t->pools[i].pool);
        sum += s.idle + s.busy + s.connecting + s.broken;
    }
    return sum;
}

struct sampler {
    tcase_t *t;
    gd_pgpool_t *observer;
    bool is_stopping;
    long server_peak;  /* backends of the shared pools the server saw at most */
    size_t local_peak; /* connections of the shared pools by their own counters */
    size_t used_peak;  /* units of the count in use */
    size_t samples, failed;
};

/* Counts, until told to stop, what the server and the pools see of the shared pools. */
static void sample_loop(void *arg)
{
    struct sampler *sa = arg;
    const char *app[] = {sa->t->pools[0].app};
    tq_t q;

    while (!sa->is_stopping) {
        size_t local = shared_conns(sa->t, SHARED_POOLS),
               used = gd_pgpool_shared_used(sa->t->shared);
        sa->local_peak = local > sa->local_peak ? local : sa->local_peak;
        sa->used_peak = used > sa->used_peak ? used : sa->used_peak;
        query(sa->t, sa->observer, S_COUNT_APP, app, true, 2000, &q);
        if (q.r.outcome == GD_OUTCOME_OK) {
            long n = body_int(q.body, "n");
            sa->server_peak = n > sa->server_peak ? n : sa->server_peak;
            sa->samples++;
        } else {
            sa->failed++;
        }
        gd_coro_sleep(1);
    }
}

/* pool_size 2 over 4 threads: at most 2 connections in the process, whichever threads hold
 * them, while every thread's queries are served; idle ones are kept while nobody else waits. */
static void case_shared_count(tcase_t *t)
{
    enum { N = 48 };
    int port = atoi(clusters[0].port);
    static gd_pgpool_query_t qs[N]; /* static: 48 queries are large for a coroutine stack */
    gd_pgpool_t *pools[SHARED_POOLS];
    size_t ok = 0, with_conn = 0, served[SHARED_POOLS] = {0};
    struct sampler sa = {.t = t};
    gd_group_t g, gs;
    long pid = -1;
    uint64_t start;
    tq_t q;

    t->shared = gd_pgpool_shared_new(SHARED_SIZE, SHARED_POOLS);
    for (size_t i = 0; i < SHARED_POOLS; i++)
        pools[i] = open_pool_ex(t, SHARED_SIZE, 5000, port, NULL, t->shared);
    sa.observer = open_pool(t, 1, 2000, port, NULL);
    /* At start, one unit each to the first pools, connected in the background. */
    start = now_ms();
    while (shared_conns(t, SHARED_POOLS) < SHARED_SIZE && now_ms() - start < 5000)
        gd_coro_sleep(5);
    while (gd_pgpool_stats(pools[0]).idle + gd_pgpool_stats(pools[1]).idle < SHARED_SIZE &&
           now_ms() - start < 5000)
        gd_coro_sleep(5);
    for (size_t i = 0; i < SHARED_POOLS; i++) {
        gd_pgpool_stats_t s = gd_pgpool_stats(pools[i]);
        with_conn += s.idle > 0;
        CHECK(t, s.idle <= 1, "pool %zu opened %zu connections at start", i, s.idle);
        CHECK(t, gd_pgpool_is_ready(pools[i]), "pool %zu not ready with the process's up", i);
    }
    CHECK(t, with_conn == SHARED_SIZE, "%zu pools connected at start", with_conn);
    CHECK(t, gd_pgpool_shared_used(t->shared) == SHARED_SIZE, "units used %zu",
          gd_pgpool_shared_used(t->shared));
    /* Steady state: a pool that has its connection keeps it, query after query. */
    for (int i = 0; i < 5; i++) {
        query(t, pools[0], S_PID, NULL, true, 5000, &q);
        if (!CHECK_OK(t, &q))
            break;
        CHECK(t, pid == -1 || body_int(q.body, "pid") == pid, "another backend: %s", q.body);
        pid = body_int(q.body, "pid");
    }
    CHECK(t, gd_pgpool_stats(pools[0]).reconnects == 0, "reconnected");

    /* Queries on every pool at once, sampled by the server and the pools as they run. */
    gd_group_init(&gs, t->sched);
    GD_REQUIRE(gd_group_spawn(&gs, sample_loop, &sa) == 0);
    start = uv_hrtime();
    gd_group_init(&g, t->sched);
    for (size_t i = 0; i < N; i++) {
        qs[i] = (gd_pgpool_query_t){.statement = S_PID_SLOW,
                                    .base.started_at_ns = start,
                                    .base.deadline_ms = gd_timers_now(t->timers) + 20000,
                                    .base.timeout_ms = 20000};
        start_query(pools[i % SHARED_POOLS], &g, &qs[i]);
        if (i % 8 == 7)
            gd_coro_sleep(20); /* in waves, so that units move while queries run */
    }
    CHECK(t, gd_group_wait(&g, gd_timers_now(t->timers) + 30000) == 0, "group wait");
    gd_group_dispose(&g);
    for (size_t i = 0; i < N; i++) {
        if (qs[i].base.result.outcome == GD_OUTCOME_OK) {
            ok++;
            served[i % SHARED_POOLS]++;
        } else {
            printf("    query %zu on pool %zu: %s (%s)\n", i, i % SHARED_POOLS,
                   gd_outcome_name(qs[i].base.result.outcome), qs[i].base.result.message);
        }
        gd_call_dispose(&qs[i].base);
    }
    sa.is_stopping = true;
    CHECK(t, gd_group_wait(&gs, gd_timers_now(t->timers) + 5000) == 0, "sampler did not stop");
    gd_group_dispose(&gs);
    CHECK(t, ok == N, "%zu of %d succeeded", ok, N);
    for (size_t i = 0; i < SHARED_POOLS; i++)
        CHECK(t, served[i] == N / SHARED_POOLS, "pool %zu served %zu", i, served[i]);
    CHECK(t, sa.samples > 10, "%zu samples (%zu failed)", sa.samples, sa.failed);
    CHECK(t, sa.server_peak >= 1 && sa.server_peak <= SHARED_SIZE, "the server saw %ld backends",
          sa.server_peak);
    CHECK(t, sa.local_peak <= SHARED_SIZE, "the pools had %zu connections", sa.local_peak);
    CHECK(t, sa.used_peak <= SHARED_SIZE, "%zu units used", sa.used_peak);
    note(t, "%d queries of 50 ms over %d pools in %" PRIu64 " ms; peak backends %ld (%zu samples)",
         N, SHARED_POOLS, (uv_hrtime() - start) / 1000000, sa.server_peak, sa.samples);
    /* Quiet again: the connections stay, idle, wherever they are. */
    gd_coro_sleep(100);
    CHECK(t,
          shared_conns(t, SHARED_POOLS) == SHARED_SIZE &&
              gd_pgpool_shared_used(t->shared) == SHARED_SIZE,
          "after the load: %zu connections, %zu units", shared_conns(t, SHARED_POOLS),
          gd_pgpool_shared_used(t->shared));
}

/* The server down: a pool holding no unit knows it from the pools that do, and fails its
 * queries at once, the one already waiting included; none is ready. */
static void case_shared_down(tcase_t *t)
{
    int port = free_port(); /* nobody listens there */
    gd_pgpool_t *pools[SHARED_POOLS];
    gd_pgpool_query_t early = {.statement = S_PID, .base.timeout_ms = 3000};
    gd_group_t g;
    tq_t q;

    t->shared = gd_pgpool_shared_new(SHARED_SIZE, SHARED_POOLS);
    for (size_t i = 0; i < SHARED_POOLS; i++)
        pools[i] = open_pool_ex(t, SHARED_SIZE, 3000, port, NULL, t->shared);
    /* Before any connect has failed: it waits as for a busy pool, then hears the news. */
    gd_group_init(&g, t->sched);
    early.base.started_at_ns = uv_hrtime();
    early.base.deadline_ms = gd_timers_now(t->timers) + 3000;
    start_query(pools[SHARED_POOLS - 1], &g, &early);
    CHECK(t, gd_group_wait(&g, gd_timers_now(t->timers) + 10000) == 0, "group wait");
    gd_group_dispose(&g);
    uint64_t early_ms = (uv_hrtime() - early.base.started_at_ns) / 1000000;
    CHECK(t, early.base.result.outcome == GD_OUTCOME_UNAVAILABLE && early_ms <= 1000,
          "waiting query: %s after %" PRIu64 " ms (%s)", gd_outcome_name(early.base.result.outcome),
          early_ms, early.base.result.message);
    gd_call_dispose(&early.base);
    for (size_t i = 0; i < SHARED_POOLS; i++) {
        query(t, pools[i], S_PID, NULL, true, 3000, &q);
        CHECK(t, q.r.outcome == GD_OUTCOME_UNAVAILABLE && q.wall_ms <= 100,
              "pool %zu: %s after %" PRIu64 " ms (%s)", i, outcome(&q), q.wall_ms, q.r.message);
        CHECK(t, !gd_pgpool_is_ready(pools[i]), "pool %zu ready without a server", i);
    }
    CHECK(t, gd_pgpool_shared_used(t->shared) == SHARED_SIZE, "units used %zu",
          gd_pgpool_shared_used(t->shared));
    note(t, "the waiting query failed after %" PRIu64 " ms", early_ms);
}

/* -- the harness --------------------------------------------------------------------------- */

static void case_main(void *arg)
{
    tcase_t *t = arg;

    t->fn(t);
    /* Queries are all done: the pools close from here, the loop then runs dry. */
    for (size_t i = 0; i < t->npools; i++)
        gd_pgpool_close(t->pools[i].pool);
}

static void run_case(const char *name, void (*fn)(tcase_t *))
{
    const char *only = getenv("GD_PGPOOL_CASE"); /* runs just that case, for debugging */
    tcase_t *t;
    uint64_t start = now_ms();

    if (only != NULL && strcmp(only, name) != 0)
        return;
    t = gd_xcalloc(1, sizeof(*t));
    t->name = name;
    t->fn = fn;
    alarm(CASE_ALARM_S);
    GD_REQUIRE(uv_loop_init(&t->loop) == 0);
    t->sched = gd_sched_new(&t->loop, STACK_SIZE, 64);
    t->timers = gd_sched_timers(t->sched);
    GD_REQUIRE(gd_coro_spawn(t->sched, case_main, t, NULL) == 0);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    CHECK(t, gd_sched_live(t->sched) == 0, "the case's coroutine did not finish");
    for (size_t i = 0; i < t->npools; i++)
        t->pools[i].pool = gd_pgpool_free(t->pools[i].pool);
    t->shared = gd_pgpool_shared_free(t->shared);
    t->sched = gd_sched_free(t->sched);
    uv_run(&t->loop, UV_RUN_DEFAULT); /* the timer heap's handle closes */
    CHECK(t, uv_loop_close(&t->loop) == 0, "handles left open on the loop");
    alarm(0);
    if (t->failures == 0)
        passed++;
    else
        failed++;
    printf("%s - %s (%" PRIu64 " ms)%s%s\n", t->failures == 0 ? "ok" : "FAIL", name,
           now_ms() - start, t->note[0] != '\0' ? ": " : "", t->note);
    free(t);
}

int main(void)
{
    const char *root = getenv("GD_SOURCE_ROOT");
    char sql[PATH_MAX + 16];
    FILE *f;

    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    gd_log_max_level = getenv("GD_PGPOOL_DEBUG") != NULL ? GD_LOG_DEBUG : GD_LOG_WARN;
    snprintf(script, sizeof(script), "%s/scripts/pg-cluster.sh", root != NULL ? root : ".");
    if (access(script, R_OK) != 0) {
        fprintf(stderr, "test_pgpool: %s not found (set GD_SOURCE_ROOT)\n", script);
        return 1;
    }
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/gd-test-pgpool-XXXXXX");
    if (mkdtemp(tmp_root) == NULL) {
        tmp_root[0] = '\0';
        perror("test_pgpool: mkdtemp");
        return 1;
    }
    install_cleanup();
    snprintf(sql, sizeof(sql), "%s/init.sql", tmp_root);
    GD_REQUIRE((f = fopen(sql, "w")) != NULL);
    fputs(init_sql, f);
    fclose(f);
    for (size_t i = 0; i < GD_ARRAY_SIZE(clusters); i++) {
        snprintf(clusters[i].dir, sizeof(clusters[i].dir), "%s/cluster%zu", tmp_root, i);
        snprintf(clusters[i].port, sizeof(clusters[i].port), "%d", free_port());
    }
    clusters[0].is_started = 1;
    if (run_script("start", clusters[0].dir, clusters[0].port, sql) != 0) {
        fprintf(stderr, "test_pgpool: cannot start PostgreSQL with %s\n", script);
        return 1;
    }

    run_case("simple", case_simple);
    run_case("host_name", case_host_name);
    run_case("environment", case_environment);
    run_case("concurrent", case_concurrent);
    run_case("prepared_once", case_prepared_once);
    run_case("args", case_args);
    run_case("row_one", case_row_one);
    run_case("sql_errors", case_sql_errors);
    run_case("deadline", case_deadline);
    run_case("task_cancel", case_task_cancel);
    run_case("exhaustion", case_exhaustion);
    run_case("line_order", case_line_order);
    run_case("line_with_a_lost_connection", case_line_with_a_lost_connection);
    run_case("backend_killed", case_backend_killed);
    run_case("close_with_cancel", case_close_with_cancel);
    run_case("shared_count", case_shared_count);
    run_case("shared_down", case_shared_down);
    run_case("down_at_start", case_down_at_start);
    cluster_stop(&clusters[1]);
    run_case("restart", case_restart);

    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0 ? 1 : 0; /* stop_clusters() runs at exit */
}
