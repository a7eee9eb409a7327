/*
 * gd_redis: one worker thread's connections to the Redis of "redis" (config.h), fully
 * asynchronous on the worker's own loop: hiredis 0.14's async API with its libuv adapter
 * (hiredis/adapters/libuv.h, a uv_poll_t on the socket).
 *
 * - Connecting never blocks the loop: a host name is resolved with uv_getaddrinfo() (libuv's
 *   thread pool) and hiredis is given the address it found, so its own getaddrinfo() only
 *   parses a literal. AUTH, SELECT and a PING follow; the connection is ready when the PING
 *   answers, all within connect_timeout_ms.
 * - A connection lost, refused or not ready in time is made again after a backoff (100 ms,
 *   doubled up to 5 s), for as long as the worker runs.
 * - Every command has a deadline: the earlier of timeout_ms and the caller's own. Past it the
 *   caller hears -ETIMEDOUT at once. A command still unanswered timeout_ms after it was sent
 *   (whether its caller still waits or not) drops its connection, which is made again: a Redis
 *   that stalls (stopped, swapping, a slow script) would only make every later command on it
 *   wait too. Until one is ready again, commands fail at once (-ENOTCONN) and callers do
 *   without. A caller's deadline shorter than timeout_ms says nothing of Redis: no drop.
 * - hiredis 0.14 has no TLS: "redis.tls" is refused by the config (see the README).
 *
 * Single-threaded: a gd_redis_t is used on its worker's loop only; what the process as a whole
 * saw is counted in the conf's gd_redis_stats_t (base/redis_stats.h).
 */
#ifndef GD_REDIS_H
#define GD_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/timer.h"
#include "config/config.h"

struct redisReply;
typedef struct gd_redis gd_redis_t;
typedef struct gd_redis_wait gd_redis_wait_t;

/**
 * Reports the end of a command to its caller: @status 0 with @reply (borrowed for the call; an
 * error reply is a reply), -ETIMEDOUT (no answer by its deadline) or -ECONNRESET (the
 * connection was lost before the answer). @wait is no longer waiting and may be reused or freed.
 */
typedef void (*gd_redis_cb)(gd_redis_wait_t *wait, int status, const struct redisReply *reply);

/* A caller's wait for one command (caller-owned storage, zeroed, e.g. inside a call). */
struct gd_redis_wait {
    /* private */
    struct gd_redis_cmd *_cmd; /* NULL while not waiting */
    gd_redis_cb _cb;
};

/* A Lua script run with EVALSHA, and with EVAL when Redis does not know it (NOSCRIPT). */
typedef struct gd_redis_script {
    const char *text; /* static */
    char sha1[41];    /* hex, computed by gd_redis_script_init() */
} gd_redis_script_t;

/** Fills @s->sha1 from @text (static storage, outlives @s). */
void gd_redis_script_init(gd_redis_script_t *s, const char *text);

/**
 * Starts the connections of @conf (borrowed, outlives the result) on @loop, timing with
 * @timers (the loop's). Never fails; connecting goes on in the background.
 */
gd_redis_t *gd_redis_new(const gd_redis_conf_t *conf, uv_loop_t *loop, gd_timers_t *timers);
/**
 * Closes every connection: commands still pending report -ECONNRESET to callers still
 * waiting, from inside this call. The loop must then run for the handles to close and a
 * lookup in the thread pool to end; then gd_redis_free().
 */
void gd_redis_close(gd_redis_t *r);
/** Frees @r (NULL is a no-op), closed and its loop run since. Returns NULL. */
gd_redis_t *gd_redis_free(gd_redis_t *r);
/** The conf it was made with (borrowed). */
const gd_redis_conf_t *gd_redis_conf(const gd_redis_t *r);
/** Whether a connection is ready now: a command would be sent. */
bool gd_redis_is_ready(const gd_redis_t *r);

/* What one worker's connections do now, for /debug/upstreams. */
typedef struct gd_redis_pool_stats {
    size_t ready;      /* commands go to these */
    size_t connecting; /* resolving, connecting, or AUTH/SELECT/PING not answered yet */
    size_t down;       /* waiting for the backoff to end */
    size_t pending;    /* commands sent, not answered yet */
} gd_redis_pool_stats_t;

/** The state of @r's connections now. Only the owning thread may call it. */
gd_redis_pool_stats_t gd_redis_pool_stats(const gd_redis_t *r);

/**
 * Sends the command of @argc arguments @argv (lengths @lens; copied) on a ready connection.
 * Returns 0: @cb reports it by @deadline_ms (gd_timers_now() base) at the latest, never from
 * inside this call. Or -ENOTCONN at once, nothing sent, no report: no connection is ready (or
 * all have too many commands pending). @wait must not be waiting already; NULL sends the
 * command with nobody waiting for its answer (a write whose outcome does not matter).
 */
int gd_redis_command(gd_redis_t *r, gd_redis_wait_t *wait, uint64_t deadline_ms, int argc,
                     const char *const *argv, const size_t *lens, gd_redis_cb cb);
/**
 * Runs @script (borrowed, outlives the command) on @nkeys keys and @nargs arguments, given in
 * @args / @lens keys first, as gd_redis_command() runs a command: EVALSHA, then once EVAL on
 * the same connection when Redis answers NOSCRIPT (a restarted Redis has no scripts).
 */
int gd_redis_eval(gd_redis_t *r, gd_redis_wait_t *wait, uint64_t deadline_ms,
                  const gd_redis_script_t *script, int nkeys, int nargs, const char *const *args,
                  const size_t *lens, gd_redis_cb cb);
/** Whether @wait waits for a command's answer. */
bool gd_redis_is_waiting(const gd_redis_wait_t *wait);
/** Stops @wait's wait, if any: no report follows (the answer, if it comes, is dropped). */
void gd_redis_cancel(gd_redis_wait_t *wait);

#endif
