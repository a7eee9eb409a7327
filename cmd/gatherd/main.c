/*
 * gatherd: command line, config load, signals and the shutdown sequence. Everything a test
 * would want to call lives in lib/.
 */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <h2o.h>
#include <uv.h>

#include "ops/admin.h"
#include "config/config.h"
#include "ops/log.h"
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
    const gd_config_t *config;
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
                 "       gatherd --probe URL     GET URL: exit 0 on a 2xx answer (health checks)\n"
                 "       gatherd --version       print the version\n"
                 "       gatherd --help          print this help\n"
                 "options:\n"
                 "  -c, --config FILE       the JSON config (see README.md)\n"
                 "  -t, --test-config       validate the config: exit 0 when valid, 1 otherwise\n"
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
                (unsigned long long)d->config->shutdown_timeout_ms);
    d->is_aborted = true;
    gd_server_abort(d->server);
    uv_timer_start(timer, on_abort_grace_passed, ABORT_GRACE_MS, 0);
}

static void on_drain_delay_passed(uv_timer_t *timer)
{
    struct daemon *d = timer->data;

    gd_log_info("closing listeners; waiting up to %llu ms for requests in flight",
                (unsigned long long)d->config->shutdown_timeout_ms);
    gd_server_drain(d->server);
    uv_timer_start(&d->shutdown_timeout, on_shutdown_timeout, d->config->shutdown_timeout_ms, 0);
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

/*
 * SIGTERM and SIGINT start the drain. During a drain a repeated SIGTERM is ignored (GNU timeout
 * and some supervisors send it twice, and the second must not turn a graceful stop into a lost
 * one), while a second SIGINT (Ctrl-C pressed again) exits at once. SIGQUIT exits at once at
 * any time. SIGHUP (until config reload exists), SIGUSR1, SIGUSR2 and SIGALRM are logged and
 * ignored: their default action would kill the process and every request in flight.
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
        gd_log_warn("received SIGHUP: ignored (config reload is not supported; restart to apply "
                    "a new config)");
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
    gd_log_info("received %s: draining (drain_delay_ms %llu)", signal_name(signum),
                (unsigned long long)d->config->drain_delay_ms);
    uv_timer_start(&d->drain_delay, on_drain_delay_passed, d->config->drain_delay_ms, 0);
}

static int run(const gd_config_t *config, gd_tls_ctx_t *const *tls)
{
    struct daemon d = {.config = config, .exit_code = 1};
    gd_router_t *router = gd_router_new(config);
    char err[512];
    uv_loop_t loop;
    int r;

    d.loop = &loop;
    if ((r = uv_loop_init(&loop)) != 0) {
        fprintf(stderr, "gatherd: cannot create the event loop: %s\n", uv_strerror(r));
        gd_router_free(router);
        return 1;
    }
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

    d.server = gd_server_new(config, router, tls);
    if (gd_server_listen(d.server, err, sizeof(err)) != 0) {
        fprintf(stderr, "gatherd: %s\n", err);
        goto fail;
    }
    if (config->has_admin) {
        size_t nmetrics;
        const gd_metrics_t *const *metrics = gd_server_metrics(d.server, &nmetrics);
        d.admin = gd_admin_new(config, metrics, nmetrics);
        gd_admin_set_inspector(d.admin, inspect_workers, d.server);
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
    gd_router_free(router);
    return d.exit_code;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"test-config", no_argument, NULL, 't'},
                                             {"probe", required_argument, NULL, 'p'},
                                             {"version", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    bool is_test_only = false;
    gd_config_t *config;
    char err[1024];
    int c, code;

    while ((c = getopt_long(argc, argv, "c:tp:vh", longopts, NULL)) != -1) {
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
    if (config_path == NULL || optind != argc) {
        fprintf(stderr, "gatherd: %s\n",
                config_path == NULL ? "no config file given (-c FILE)" : "unexpected argument");
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
        printf("%s: ok\n", config_path);
        gd_tls_ctxs_free(config, tls);
        gd_config_free(config);
        return 0;
    }
    gd_log_max_level = (gd_log_level_t)config->log.level;
    gd_log_set_json(config->log.is_json);
    /* A client or upstream hanging up mid-write must be an error code, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    code = run(config, tls);
    gd_tls_ctxs_free(config, tls);
    gd_config_free(config);
    return code;
}
