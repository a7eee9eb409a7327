/*
 * gatherd: command line, config load, signals and the shutdown sequence. Everything a test
 * would want to call lives in lib/.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <h2o.h>
#include <uv.h>

#include "ops/admin.h"
#include "config/carry.h"
#include "config/config.h"
#include "ops/log.h"
#include "ops/metrics_keys.h"
#include "ops/notify.h"
#include "probe.h"
#include "front/route.h"
#include "front/server.h"
#include "sources/http/tls.h"
#include "base/util.h"

/* After the shutdown timeout the remaining requests are answered 503; this is how long those
 * answers get to be written before the process leaves anyway. */
#define ABORT_GRACE_MS 2000
#define PROBE_TIMEOUT_MS 5000

struct daemon {
    const char *config_path; /* read again by a reload (SIGHUP) */
    gd_metrics_keys_t *keys; /* the metrics' names, kept across reloads */
    gd_metrics_reloads_t reloads;
    gd_server_t *server;
    gd_admin_t *admin; /* NULL when admin_listen is null */
    uv_loop_t *loop;
    uv_signal_t signals[8]; /* one per entry of handled_signals */
    uv_timer_t drain_delay, shutdown_timeout;
    bool is_shutting_down, is_aborted;
    int exit_code;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: gatherd -c FILE         run the daemon with the config FILE\n"
                 "       gatherd -t -c FILE      check the config FILE and exit\n"
                 "       gatherd -t -c NEW --running OLD\n"
                 "                               also name the restart-only settings NEW changes\n"
                 "       gatherd --probe URL     GET URL: exit 0 on a 2xx answer (health checks)\n"
                 "       gatherd --version       print the version\n"
                 "       gatherd --help          print this help\n"
                 "options:\n"
                 "  -c, --config FILE       the JSON config (see README.md)\n"
                 "  -t, --test-config       validate the config: exit 0 when valid, 1 otherwise\n"
                 "  -r, --running OLD       with -t: exit 3 when NEW is valid but a reload from\n"
                 "                          OLD would be refused (restart-only settings differ)\n"
                 "  -p, --probe URL         http://HOST:PORT/PATH, answered within 5 s\n"
                 "  -v, --version\n"
                 "  -h, --help\n");
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Every signal whose default action would end the process (or is one a supervisor sends):
 * each is handled on the main loop, so none kills the process without a log line. */
static const int handled_signals[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM};
#define NSIGNALS (sizeof(handled_signals) / sizeof(handled_signals[0]))

static void close_daemon_handles(struct daemon *d)
{
    for (size_t i = 0; i < NSIGNALS; i++)
        close_handle((uv_handle_t *)&d->signals[i]);
    close_handle((uv_handle_t *)&d->drain_delay);
    close_handle((uv_handle_t *)&d->shutdown_timeout);
}

static int inspect_workers(void *server, gd_inspection_t *inspection)
{
    return gd_server_inspect(server, inspection);
}

static void on_server_stopped(gd_server_t *server, void *data)
{
    struct daemon *d = data;

    d->exit_code = d->is_aborted ? 1 : 0;
    gd_log_info("all connections closed; exiting with status %d", d->exit_code);
    close_daemon_handles(d);
}

static void on_abort_grace_passed(uv_timer_t *timer)
{
    gd_log_err("connections still open %d ms after the shutdown timeout; exiting", ABORT_GRACE_MS);
    gd_log_stop();
    _exit(1);
}

static void on_shutdown_timeout(uv_timer_t *timer)
{
    struct daemon *d = timer->data;

    gd_log_warn("shutdown timeout of %llu ms passed with requests in flight; answering them 503",
                (unsigned long long)gd_server_config(d->server)->shutdown_timeout_ms);
    d->is_aborted = true;
    gd_server_abort(d->server);
    uv_timer_start(timer, on_abort_grace_passed, ABORT_GRACE_MS, 0);
}

static void on_drain_delay_passed(uv_timer_t *timer)
{
    struct daemon *d = timer->data;

    uint64_t timeout_ms = gd_server_config(d->server)->shutdown_timeout_ms;

    gd_log_info("closing listeners; waiting up to %llu ms for requests in flight",
                (unsigned long long)timeout_ms);
    gd_server_drain(d->server);
    uv_timer_start(&d->shutdown_timeout, on_shutdown_timeout, timeout_ms, 0);
}

static const char *signal_name(int signum)
{
    switch (signum) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGQUIT:
        return "SIGQUIT";
    case SIGHUP:
        return "SIGHUP";
    case SIGUSR1:
        return "SIGUSR1";
    case SIGUSR2:
        return "SIGUSR2";
    case SIGALRM:
        return "SIGALRM";
    default:
        return "a signal";
    }
}

static _Noreturn void exit_at_once(const char *why, int signum)
{
    gd_log_warn("%s %s: exiting at once with status 1; requests in flight are lost", why,
                signal_name(signum));
    gd_log_stop();
    _exit(1);
}

static uint64_t wall_clock_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* The restart-only settings @keys (@n of them) as "listen, threads". */
static void join_keys(const char *const *keys, size_t n, char *buf, size_t cap)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i > 0 ? ", " : "", keys[i]);
}

static void count_failed_reload(struct daemon *d, _Atomic uint64_t *counter)
{
    atomic_fetch_add(counter, 1);
    atomic_store(&d->reloads.is_last_ok, 0);
    (void)gd_notify("READY=1"); /* best effort: the reload is over, the old config serves */
}

/*
 * SIGHUP: the config file is read, checked and compiled here on the main thread, never on a
 * worker's loop; a valid one goes to the workers, which take it on their next turn. An
 * invalid one, or one that changes what only a restart can, leaves the running config
 * serving, with one log line saying why.
 */
static void reload_config(struct daemon *d)
{
    const gd_config_t *running = gd_server_config(d->server);
    const char *keys[GD_CONFIG_MAX_RESTART_KEYS];
    gd_config_t *next = NULL;
    gd_tls_ctx_t **tls = NULL;
    char err[1024], changed[512];
    uint64_t t0 = uv_hrtime();
    int r;

    (void)gd_notify("RELOADING=1"); /* best effort, like READY=1 */
    if ((r = gd_config_load_file(d->config_path, &next, err, sizeof(err))) != 0 ||
        (r = gd_tls_ctxs_new(next, &tls, err, sizeof(err))) != 0) {
        gd_log_err("config reload failed; config %s goes on serving: %s", running->hash, err);
        gd_config_free(next);
        count_failed_reload(d, &d->reloads.error);
        return;
    }
    size_t n = gd_config_restart_keys(running, next, keys);
    if (n > 0) {
        join_keys(keys, n, changed, sizeof(changed));
        gd_log_err("config reload refused: %s changed in %s, which takes a restart; config %s "
                   "goes on serving",
                   changed, d->config_path, running->hash);
        gd_tls_ctxs_free(next, tls);
        gd_config_free(next);
        count_failed_reload(d, &d->reloads.refused);
        return;
    }
    if (gd_metrics_keys_assign(d->keys, next) != 0) {
        gd_log_err("config reload refused: the metrics have kept more than %u names of "
                   "endpoints, calls or upstreams since the start, the most they keep; config "
                   "%s goes on serving (a restart forgets the names of earlier configs)",
                   GD_METRICS_MAX_SLOTS, running->hash);
        gd_tls_ctxs_free(next, tls);
        gd_config_free(next);
        count_failed_reload(d, &d->reloads.refused);
        return;
    }
    gd_router_t *router = gd_router_new(next);
    gd_server_reload_t kept;
    char old_hash[sizeof(running->hash)];
    memcpy(old_hash, running->hash, sizeof(old_hash));
    if (gd_server_reload(d->server, next, router, tls, &kept) != 0) {
        gd_log_err("config reload refused: %d earlier configs still have requests in flight; "
                   "config %s goes on serving (send SIGHUP again once they have ended)",
                   GD_CONFIG_MAX_FINISHING, running->hash);
        gd_router_free(router);
        gd_tls_ctxs_free(next, tls);
        gd_config_free(next);
        count_failed_reload(d, &d->reloads.refused);
        return;
    }
    /* The server owns next from here on; the admin view follows it. */
    if (d->admin != NULL)
        gd_admin_set_config(d->admin, next);
    atomic_fetch_add(&d->reloads.ok, 1);
    atomic_store(&d->reloads.loaded_at_ms, wall_clock_ms());
    atomic_store(&d->reloads.is_last_ok, 1);
    gd_log_info("config reloaded from %s in %.1f ms: config %s replaces %s (requests in flight "
                "finish on it); upstreams: %zu kept with their connections, %zu new or changed, "
                "%zu closing once unused; postgres pool %s",
                d->config_path, (double)(uv_hrtime() - t0) / 1e6, next->hash, old_hash,
                kept.upstreams_kept, kept.upstreams_new, kept.upstreams_closed,
                next->nstatements == 0 ? "none"
                : kept.is_pg_kept      ? "kept"
                                       : "new");
    (void)gd_notify("READY=1");
}

/*
 * SIGTERM and SIGINT start the drain. During a drain a repeated SIGTERM is ignored (GNU timeout
 * and some supervisors send it twice, and the second must not turn a graceful stop into a lost
 * one), while a second SIGINT (Ctrl-C pressed again) exits at once. SIGQUIT exits at once at
 * any time. SIGHUP reloads the config (not during a drain). SIGUSR1, SIGUSR2 and SIGALRM are
 * logged and ignored: their default action would kill the process and every request in flight.
 */
static void on_signal(uv_signal_t *handle, int signum)
{
    struct daemon *d = handle->data;

    switch (signum) {
    case SIGQUIT:
        exit_at_once("received", signum);
    case SIGTERM:
    case SIGINT:
        break;
    case SIGHUP:
        if (d->is_shutting_down) {
            gd_log_warn("received SIGHUP while draining: ignored, the drain goes on");
            return;
        }
        gd_log_info("received SIGHUP: reloading %s", d->config_path);
        reload_config(d);
        return;
    default:
        gd_log_warn("received %s: ignored", signal_name(signum));
        return;
    }
    if (d->is_shutting_down) {
        if (signum == SIGINT)
            exit_at_once("second", signum);
        gd_log_warn("received SIGTERM again: ignored, the drain goes on (SIGINT or SIGQUIT exit "
                    "at once)");
        return;
    }
    d->is_shutting_down = true;
    /* Not ready from this moment, so the load balancer stops routing before listeners close. */
    if (d->admin != NULL)
        gd_admin_set_state(d->admin, GD_ADMIN_DRAINING);
    (void)gd_notify("STOPPING=1"); /* best effort: systemd learns it from the exit too */
    uint64_t drain_delay_ms = gd_server_config(d->server)->drain_delay_ms;
    gd_log_info("received %s: draining (drain_delay_ms %llu)", signal_name(signum),
                (unsigned long long)drain_delay_ms);
    uv_timer_start(&d->drain_delay, on_drain_delay_passed, drain_delay_ms, 0);
}

/* Runs the daemon of @config and @tls, loaded from @path (all taken). */
static int run(gd_config_t *config, gd_tls_ctx_t **tls, const char *path)
{
    struct daemon d = {.config_path = path, .exit_code = 1};
    char err[512];
    uv_loop_t loop;
    int r;

    d.loop = &loop;
    if ((r = uv_loop_init(&loop)) != 0) {
        fprintf(stderr, "gatherd: cannot create the event loop: %s\n", uv_strerror(r));
        gd_tls_ctxs_free(config, tls);
        gd_config_free(config);
        return 1;
    }
    d.keys = gd_metrics_keys_new();
    /* A first config cannot pass the bound: the largest file holds far fewer names. */
    GD_REQUIRE(gd_metrics_keys_assign(d.keys, config) == 0);
    atomic_store(&d.reloads.loaded_at_ms, wall_clock_ms());
    atomic_store(&d.reloads.is_last_ok, 1);
    /* Handlers first: a SIGTERM that arrives once the port accepts must drain, not kill. */
    _Static_assert(NSIGNALS <= sizeof(d.signals) / sizeof(d.signals[0]), "signal handles");
    for (size_t i = 0; i < NSIGNALS; i++) {
        GD_REQUIRE(uv_signal_init(&loop, &d.signals[i]) == 0);
        d.signals[i].data = &d;
        GD_REQUIRE(uv_signal_start(&d.signals[i], on_signal, handled_signals[i]) == 0);
    }
    GD_REQUIRE(uv_timer_init(&loop, &d.drain_delay) == 0);
    GD_REQUIRE(uv_timer_init(&loop, &d.shutdown_timeout) == 0);
    d.drain_delay.data = d.shutdown_timeout.data = &d;

    d.server = gd_server_new(config, gd_router_new(config), tls); /* takes them */
    if (gd_server_listen(d.server, err, sizeof(err)) != 0) {
        fprintf(stderr, "gatherd: %s\n", err);
        goto fail;
    }
    if (config->has_admin) {
        size_t nmetrics;
        const gd_metrics_t *const *metrics = gd_server_metrics(d.server, &nmetrics);
        d.admin = gd_admin_new(config, metrics, nmetrics);
        gd_admin_set_inspector(d.admin, inspect_workers, d.server);
        gd_admin_set_reloads(d.admin, &d.reloads);
        if (gd_admin_listen(d.admin, err, sizeof(err)) != 0) {
            fprintf(stderr, "gatherd: %s\n", err);
            goto fail;
        }
    }
    if ((r = gd_log_start()) != 0) {
        fprintf(stderr, "gatherd: cannot start the log writer: %s\n", strerror(-r));
        goto fail;
    }

    if ((r = gd_server_start(d.server, &loop, on_server_stopped, &d)) != 0) {
        gd_log_err("cannot start worker threads: %s", strerror(-r));
        _exit(1);
    }
    if (d.admin != NULL && (r = gd_admin_start(d.admin)) != 0) {
        gd_log_err("cannot start the admin listener: %s", strerror(r < 0 ? -r : r));
        _exit(1);
    }
    for (size_t i = 0; i < config->nlisten; i++)
        gd_log_info("listening on %s (%u threads, http2 %s)", config->listen[i].text,
                    config->threads, config->is_http2_enabled ? "on" : "off");
    if (d.admin != NULL) {
        gd_log_info("admin listening on %s (/healthz /readyz /metrics)", config->admin_listen.text);
        gd_admin_set_state(d.admin, d.is_shutting_down ? GD_ADMIN_DRAINING : GD_ADMIN_SERVING);
    }
    (void)gd_notify("READY=1"); /* best effort: without systemd there is no one to tell */
    uv_run(&loop, UV_RUN_DEFAULT);
    gd_log_stop();
    goto exit;

fail:
    close_daemon_handles(&d);
    uv_run(&loop, UV_RUN_DEFAULT); /* lets the handles finish closing */
exit:
    d.admin = gd_admin_free(d.admin);
    d.server = gd_server_free(d.server);
    (void)uv_loop_close(&loop); /* at exit: a handle left open is no reason to fail now */
    d.keys = gd_metrics_keys_free(d.keys);
    return d.exit_code;
}

/*
 * gatherd -t -c NEW --running OLD: whether a reload from OLD to NEW (valid) would be taken.
 * Returns 0 when it would, 3 when restart-only settings differ (named on stdout), 1 when OLD
 * cannot be loaded.
 */
static int check_against_running(const gd_config_t *next, const char *path,
                                 const char *running_path)
{
    const char *keys[GD_CONFIG_MAX_RESTART_KEYS];
    gd_config_t *running;
    char err[1024], changed[512];

    if (gd_config_load_file(running_path, &running, err, sizeof(err)) != 0) {
        fprintf(stderr, "gatherd: --running: %s\n", err);
        return 1;
    }
    size_t n = gd_config_restart_keys(running, next, keys);
    gd_config_free(running);
    if (n == 0)
        return 0;
    join_keys(keys, n, changed, sizeof(changed));
    printf("%s: ok, but a reload from %s would be refused: %s changed, which takes a restart\n",
           path, running_path, changed);
    return 3;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"test-config", no_argument, NULL, 't'},
                                             {"running", required_argument, NULL, 'r'},
                                             {"probe", required_argument, NULL, 'p'},
                                             {"version", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *running_path = NULL;
    bool is_test_only = false;
    gd_config_t *config;
    char err[1024];
    int c, code;

    while ((c = getopt_long(argc, argv, "c:tr:p:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': {
            int status = gd_probe(optarg, PROBE_TIMEOUT_MS, err, sizeof(err));
            if (status >= 200 && status <= 299)
                return 0;
            if (status > 0)
                fprintf(stderr, "gatherd: probe %s: status %d\n", optarg, status);
            else
                fprintf(stderr, "gatherd: probe: %s\n", err);
            return 1;
        }
        case 'c':
            config_path = optarg;
            break;
        case 't':
            is_test_only = true;
            break;
        case 'r':
            running_path = optarg;
            break;
        case 'v':
            printf("gatherd %s\n", GD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (config_path == NULL || optind != argc || (running_path != NULL && !is_test_only)) {
        fprintf(stderr, "gatherd: %s\n",
                config_path == NULL ? "no config file given (-c FILE)"
                : optind != argc    ? "unexpected argument"
                                    : "--running is an option of -t");
        usage(stderr);
        return 1;
    }
    if (gd_config_load_file(config_path, &config, err, sizeof(err)) != 0) {
        fprintf(stderr, "gatherd: %s\n", err);
        return 1;
    }
    /* The upstreams' TLS files are read and checked here, for -t too. */
    gd_tls_ctx_t **tls = NULL;
    if (gd_tls_ctxs_new(config, &tls, err, sizeof(err)) != 0) {
        fprintf(stderr, "gatherd: %s\n", err);
        gd_config_free(config);
        return 1;
    }
    if (is_test_only) {
        code = running_path != NULL ? check_against_running(config, config_path, running_path) : 0;
        if (code == 0)
            printf("%s: ok\n", config_path);
        gd_tls_ctxs_free(config, tls);
        gd_config_free(config);
        return code;
    }
    gd_log_max_level = (gd_log_level_t)config->log.level;
    gd_log_set_json(config->log.is_json);
    /* A client or upstream hanging up mid-write must be an error code, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    return run(config, tls, config_path);
}
