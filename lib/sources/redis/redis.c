#include "sources/redis/redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "base/redis_stats.h"
#include "base/util.h"
#include "ops/log.h"

/* A connection is made again this long after it failed, doubled on each failure in a row. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* Commands sent on one connection and not yet answered: beyond, the next connection, or none. */
#define MAX_PENDING 512

enum conn_state {
    CONN_IDLE = 0,  /* no context: waiting for the backoff to end (or closed) */
    CONN_RESOLVING, /* the host's address asked of the thread pool */
    CONN_HANDSHAKE, /* connecting; AUTH, SELECT, PING sent, the PING not answered yet */
    CONN_READY,
};

struct conn {
    gd_redis_t *redis;
    redisAsyncContext *ac; /* NULL without a context */
    enum conn_state state;
    uint64_t gen;        /* counts the contexts made: a reply of an older one is stale */
    gd_timer_t timer;    /* the connect timeout, or the end of the backoff */
    uint64_t backoff_ms; /* 0: the next failure waits BACKOFF_MIN_MS */
    size_t pending;      /* commands sent on the context, not yet answered */
    bool is_resolving;   /* gai is in the thread pool (it may outlive a timed-out attempt) */
    unsigned addr_turn;  /* which of a name's addresses the next attempt takes */
    uv_getaddrinfo_t gai;
};

struct gd_redis {
    const gd_redis_conf_t *conf;
    gd_redis_stats_t *stats;
    uv_loop_t *loop;
    gd_timers_t *timers;
    bool is_closing;
    size_t next; /* round robin over the ready connections */
    size_t nconns;
    struct conn conns[];
};

/* One command in flight: owned by hiredis (its privdata) until its reply callback runs, which
 * hiredis guarantees, with a NULL reply when the context goes. The caller's wait may leave
 * before that (timeout, cancel). */
struct gd_redis_cmd {
    struct conn *conn;
    uint64_t gen;
    gd_redis_wait_t *wait; /* NULL once the caller no longer waits */
    gd_timer_t timer;      /* the command's deadline */
    uint64_t sent_ns;
    uint64_t sent_ms; /* gd_timers_now(): its answer is due by sent_ms + timeout_ms */
    const gd_redis_script_t *script; /* NULL for a plain command */
    bool is_eval_retry;
    bool is_detached; /* sent without a wait (gd_redis_command() with NULL): counted only */
    int argc;
    const char **argv; /* in the same allocation, argv[0] "EVALSHA" for a script */
    size_t *lens;
};

static void conn_start(struct conn *c);
static void conn_drop(struct conn *c, const char *why);

void gd_redis_script_init(gd_redis_script_t *s, const char *text)
{
    unsigned char d[SHA_DIGEST_LENGTH];

    s->text = text;
    SHA1((const unsigned char *)text, strlen(text), d);
    gd_hex_encode(d, sizeof(d), s->sha1);
}

/* ---- Connections ------------------------------------------------------------------------ */

static void set_ready(struct conn *c, bool is_ready)
{
    gd_redis_t *r = c->redis;

    if (is_ready) {
        c->state = CONN_READY;
        c->backoff_ms = 0;
        c->addr_turn--; /* the address that answered is tried first next time */
        if (atomic_fetch_add(&r->stats->ready, 1) == 0) {
            atomic_store(&r->stats->is_outage_logged, false);
            gd_log_info("redis %s: connected; cluster limits and the shared cache are in use",
                        r->conf->url);
        }
        return;
    }
    if (atomic_fetch_sub(&r->stats->ready, 1) == 1 && !r->is_closing &&
        !atomic_exchange(&r->stats->is_outage_logged, true))
        gd_log_warn("redis %s: no connection ready; cluster limits are enforced locally at "
                    "local_share %g and shared cache lookups are skipped until it is back",
                    r->conf->url, r->conf->local_share);
}

/* An attempt to connect failed because of @why: logged at debug level, and once per outage as
 * a warning while no connection of the process is ready (Redis unreachable from the start, or
 * not back yet), so that an operator learns why the limits hold locally. */
static void note_failure(struct conn *c, const char *why)
{
    gd_redis_t *r = c->redis;

    gd_log_debug("redis %s: cannot connect: %s", r->conf->url, why);
    if (!r->is_closing && atomic_load(&r->stats->ready) == 0 &&
        !atomic_exchange(&r->stats->is_outage_logged, true))
        gd_log_warn("redis %s: cannot connect (%s); cluster limits are enforced locally at "
                    "local_share %g and shared cache lookups are skipped; trying again",
                    r->conf->url, why, r->conf->local_share);
}

static void start_backoff(struct conn *c)
{
    gd_redis_t *r = c->redis;

    c->state = CONN_IDLE;
    if (r->is_closing)
        return;
    c->backoff_ms = c->backoff_ms == 0 ? BACKOFF_MIN_MS : c->backoff_ms * 2;
    if (c->backoff_ms > BACKOFF_MAX_MS)
        c->backoff_ms = BACKOFF_MAX_MS;
    gd_timer_start(r->timers, &c->timer, gd_timers_now(r->timers) + c->backoff_ms);
}

/* Forgets context @c->ac, which hiredis is freeing (or has freed): its callbacks still to come
 * are stale (gen). */
static void forget_context(struct conn *c)
{
    if (c->state == CONN_READY)
        set_ready(c, false);
    /* Not ready from here on: callbacks that hiredis runs while it frees the context may send
     * commands, which must go elsewhere. */
    c->state = CONN_IDLE;
    c->ac->data = NULL;
    c->ac = NULL;
    c->gen++;
    c->pending = 0;
}

/* Gives up connection @c (its context freed: pending commands report -ECONNRESET now, or as
 * soon as hiredis leaves the callback it is in) and starts the backoff. */
static void conn_drop(struct conn *c, const char *why)
{
    gd_redis_t *r = c->redis;
    redisAsyncContext *ac = c->ac;

    gd_timer_stop(r->timers, &c->timer);
    if (ac != NULL) {
        gd_log_debug("redis %s: connection dropped: %s", r->conf->url, why);
        forget_context(c);
        redisAsyncFree(ac);
    }
    start_backoff(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;

    if (c == NULL || status == REDIS_OK)
        return; /* connected: the PING's answer makes it ready */
    /* hiredis frees the context after this callback. */
    note_failure(c, ac->errstr);
    forget_context(c);
    gd_timer_stop(c->redis->timers, &c->timer);
    start_backoff(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;

    if (c == NULL)
        return; /* dropped by us */
    gd_log_debug("redis %s: connection lost: %s", c->redis->conf->url,
                 ac->err != 0 ? ac->errstr : "closed");
    forget_context(c);
    gd_timer_stop(c->redis->timers, &c->timer);
    start_backoff(c);
}

/* An answer to AUTH, SELECT or PING: an error drops the connection; the PING's makes it ready. */
static void on_handshake_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct conn *c = privdata;
    redisReply *reply = reply_;

    if (reply == NULL || c->ac != ac)
        return; /* the context goes: on_connect / on_disconnect / conn_drop handle it */
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Quoted and capped: it came from the server. Never the password. */
        gd_log_warn("redis %s: connection refused by the server: \"%.200s\"; trying again",
                    c->redis->conf->url, reply->str);
        conn_drop(c, "handshake error");
        return;
    }
    if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0 &&
        c->state == CONN_HANDSHAKE) {
        gd_timer_stop(c->redis->timers, &c->timer);
        set_ready(c, true);
    }
}

/* hiredis 0.14's libuv adapter ignores a poll status other than 0, and libuv reports a socket
 * error (POLLERR: a refused connect, a reset) that way, the poll stopped: hiredis would never
 * learn, and a refused connect would wait for connect_timeout_ms. The adapter is kept, its poll
 * callback wrapped: on an error the write handler (connecting: it reads SO_ERROR and fails the
 * connect) or the read handler (connected: the read fails) tells hiredis. */
static void on_poll(uv_poll_t *handle, int status, int events)
{
    redisLibuvEvents *p = handle->data;

    if (status == 0) {
        redisLibuvPoll(handle, status, events);
        return;
    }
    if (p->context == NULL)
        return;
    if (!(p->context->c.flags & REDIS_CONNECTED))
        redisAsyncHandleWrite(p->context);
    else
        redisAsyncHandleRead(p->context);
}

static void repoll(void *privdata)
{
    redisLibuvEvents *p = privdata;

    if (p->events != 0)
        uv_poll_start(&p->handle, p->events, on_poll);
}

static void add_read(void *privdata)
{
    redisLibuvAddRead(privdata);
    repoll(privdata);
}

static void del_read(void *privdata)
{
    redisLibuvDelRead(privdata);
    repoll(privdata);
}

static void add_write(void *privdata)
{
    redisLibuvAddWrite(privdata);
    repoll(privdata);
}

static void del_write(void *privdata)
{
    redisLibuvDelWrite(privdata);
    repoll(privdata);
}

/* Makes a context to @ip (a literal: hiredis's own getaddrinfo() only parses it). */
static void connect_to(struct conn *c, const char *ip)
{
    gd_redis_t *r = c->redis;
    const gd_redis_conf_t *conf = r->conf;
    redisAsyncContext *ac = redisAsyncConnect(ip, conf->port);

    if (ac == NULL) {
        start_backoff(c);
        return;
    }
    if (ac->err != 0 || redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        note_failure(c, ac->err != 0 ? ac->errstr : "event loop");
        redisAsyncFree(ac);
        start_backoff(c);
        return;
    }
    ac->ev.addRead = add_read; /* before the connect callback, which adds the first write */
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    c->ac = ac;
    ac->data = c;
    c->state = CONN_HANDSHAKE;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Queued now, written once connected: a pipeline of one round trip. */
    if (conf->password != NULL) {
        const char *argv[3] = {"AUTH", conf->user, conf->password};
        size_t lens[3] = {4, conf->user != NULL ? strlen(conf->user) : 0, strlen(conf->password)};
        if (conf->user == NULL) {
            argv[1] = conf->password;
            lens[1] = lens[2];
        }
        redisAsyncCommandArgv(ac, on_handshake_reply, c, conf->user != NULL ? 3 : 2, argv, lens);
    }
    if (conf->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%u", conf->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        redisAsyncCommandArgv(ac, on_handshake_reply, c, 2, argv, lens);
    }
    redisAsyncCommand(ac, on_handshake_reply, c, "PING");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct conn *c = req->data;
    char ip[INET6_ADDRSTRLEN] = "";

    c->is_resolving = false;
    if (status == 0 && res != NULL) {
        /* Each attempt takes the next address: "localhost" may give ::1 first while Redis
         * listens on 127.0.0.1 only. */
        unsigned n = 0;
        for (const struct addrinfo *a = res; a != NULL; a = a->ai_next)
            n++;
        const struct addrinfo *a = res;
        for (unsigned k = c->addr_turn++ % n; k > 0; k--)
            a = a->ai_next;
        if (a->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)a->ai_addr, ip, sizeof(ip));
        else
            uv_ip4_name((const struct sockaddr_in *)a->ai_addr, ip, sizeof(ip));
    }
    uv_freeaddrinfo(res);
    if (c->state != CONN_RESOLVING || c->redis->is_closing)
        return; /* timed out meanwhile (the backoff runs), or closing */
    if (ip[0] == '\0') {
        note_failure(c, status != 0 ? uv_strerror(status) : "the host name has no address");
        gd_timer_stop(c->redis->timers, &c->timer);
        start_backoff(c);
        return;
    }
    connect_to(c, ip);
}

/* One attempt to make connection @c, all of it (lookup, connect, handshake) within
 * connect_timeout_ms. */
static void conn_start(struct conn *c)
{
    gd_redis_t *r = c->redis;
    const gd_redis_conf_t *conf = r->conf;

    atomic_fetch_add_explicit(&r->stats->reconnects, 1, memory_order_relaxed);
    gd_timer_start(r->timers, &c->timer, gd_timers_now(r->timers) + conf->connect_timeout_ms);
    if (conf->is_host_numeric) {
        connect_to(c, conf->host);
        return;
    }
    if (c->is_resolving) { /* an earlier lookup still runs: this attempt waits for nothing */
        gd_timer_stop(r->timers, &c->timer);
        start_backoff(c);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    c->gai.data = c;
    c->state = CONN_RESOLVING;
    if (uv_getaddrinfo(r->loop, &c->gai, on_resolved, conf->host, NULL, &hints) != 0) {
        gd_timer_stop(r->timers, &c->timer);
        start_backoff(c);
        return;
    }
    c->is_resolving = true;
}

static void on_conn_timer(gd_timer_t *timer)
{
    struct conn *c = H2O_STRUCT_FROM_MEMBER(struct conn, timer, timer);

    switch (c->state) {
    case CONN_IDLE: /* the backoff is over */
        conn_start(c);
        break;
    case CONN_RESOLVING:
        note_failure(c, "the host name was not resolved within connect_timeout_ms");
        (void)uv_cancel((uv_req_t *)&c->gai); /* may run already: on_resolved ignores it */
        start_backoff(c);
        break;
    case CONN_HANDSHAKE:
        note_failure(c, "not ready within connect_timeout_ms");
        conn_drop(c, "not ready within connect_timeout_ms");
        break;
    case CONN_READY:
        break;
    }
}

gd_redis_t *gd_redis_new(const gd_redis_conf_t *conf, uv_loop_t *loop, gd_timers_t *timers)
{
    gd_redis_t *r = gd_xcalloc(1, sizeof(*r) + conf->pool_size * sizeof(r->conns[0]));

    r->conf = conf;
    r->stats = conf->stats;
    r->loop = loop;
    r->timers = timers;
    r->nconns = conf->pool_size;
    atomic_fetch_add(&r->stats->expected, r->nconns);
    for (size_t i = 0; i < r->nconns; i++) {
        struct conn *c = &r->conns[i];
        c->redis = r;
        gd_timer_init(&c->timer, on_conn_timer);
        conn_start(c);
    }
    return r;
}

void gd_redis_close(gd_redis_t *r)
{
    r->is_closing = true;
    for (size_t i = 0; i < r->nconns; i++) {
        struct conn *c = &r->conns[i];
        if (c->is_resolving)
            (void)uv_cancel((uv_req_t *)&c->gai); /* on_resolved comes in the loop's next run */
        conn_drop(c, "closing");
        gd_timer_stop(r->timers, &c->timer);
    }
    atomic_fetch_sub(&r->stats->expected, r->nconns);
}

gd_redis_t *gd_redis_free(gd_redis_t *r)
{
    free(r);
    return NULL;
}

const gd_redis_conf_t *gd_redis_conf(const gd_redis_t *r)
{
    return r->conf;
}

/* A ready connection with room for a command, round robin; NULL when none. */
static struct conn *pick(gd_redis_t *r)
{
    for (size_t k = 0; k < r->nconns; k++) {
        struct conn *c = &r->conns[(r->next + k) % r->nconns];
        if (c->state == CONN_READY && c->pending < MAX_PENDING) {
            r->next = (r->next + k + 1) % r->nconns;
            return c;
        }
    }
    return NULL;
}

gd_redis_pool_stats_t gd_redis_pool_stats(const gd_redis_t *r)
{
    gd_redis_pool_stats_t st = {0};

    for (size_t k = 0; k < r->nconns; k++) {
        const struct conn *c = &r->conns[k];
        if (c->state == CONN_READY)
            st.ready++;
        else if (c->state == CONN_IDLE)
            st.down++;
        else
            st.connecting++;
        st.pending += c->pending;
    }
    return st;
}

bool gd_redis_is_ready(const gd_redis_t *r)
{
    for (size_t k = 0; k < r->nconns; k++)
        if (r->conns[k].state == CONN_READY)
            return true;
    return false;
}

/* ---- Commands ---------------------------------------------------------------------------- */

/* Tells @cmd's caller, if it still waits, how it ended; it waits no more. */
static void report(struct gd_redis_cmd *cmd, int status, const redisReply *reply)
{
    gd_redis_wait_t *wait = cmd->wait;
    gd_redis_t *r = cmd->conn->redis;

    gd_timer_stop(r->timers, &cmd->timer);
    if (wait == NULL)
        return;
    cmd->wait = NULL;
    wait->_cmd = NULL;
    wait->_cb(wait, status, reply);
}

static bool is_noscript(const redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

static int send_cmd(struct conn *c, struct gd_redis_cmd *cmd);

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct gd_redis_cmd *cmd = privdata;
    struct conn *c = cmd->conn;
    gd_redis_t *r = c->redis;
    redisReply *reply = reply_;

    if (cmd->gen == c->gen && c->pending > 0)
        c->pending--;
    if (reply == NULL) { /* the context goes */
        if (cmd->wait != NULL || cmd->is_detached)
            gd_redis_stats_count(r->stats, GD_REDIS_ERROR, 0);
        report(cmd, -ECONNRESET, NULL);
        free(cmd);
        return;
    }
    /* A restarted Redis knows no script: the same connection runs it with EVAL, once. */
    if (cmd->script != NULL && !cmd->is_eval_retry && is_noscript(reply) && cmd->wait != NULL &&
        cmd->gen == c->gen && c->state == CONN_READY) {
        cmd->is_eval_retry = true;
        cmd->argv[0] = "EVAL";
        cmd->lens[0] = 4;
        cmd->argv[1] = cmd->script->text;
        cmd->lens[1] = strlen(cmd->script->text);
        if (send_cmd(c, cmd) == 0)
            return;
    }
    gd_redis_result_t result = reply->type == REDIS_REPLY_ERROR ? GD_REDIS_ERROR : GD_REDIS_OK;
    if (cmd->wait != NULL || cmd->is_detached)
        gd_redis_stats_count(r->stats, result, (uv_hrtime() - cmd->sent_ns) / 1000);
    if (result == GD_REDIS_ERROR)
        gd_log_debug("redis %s: error reply \"%.200s\"", r->conf->url, reply->str);
    report(cmd, 0, reply);
    free(cmd);
}

static int send_cmd(struct conn *c, struct gd_redis_cmd *cmd)
{
    if (redisAsyncCommandArgv(c->ac, on_reply, cmd, cmd->argc, cmd->argv, cmd->lens) != REDIS_OK)
        return -ENOTCONN;
    cmd->conn = c;
    cmd->gen = c->gen;
    c->pending++;
    return 0;
}

/* The deadline of a command passed: its caller does without, and the connection, which may be
 * stalled, is made again. */
static void on_cmd_timer(gd_timer_t *timer)
{
    struct gd_redis_cmd *cmd = H2O_STRUCT_FROM_MEMBER(struct gd_redis_cmd, timer, timer);
    struct conn *c = cmd->conn;
    gd_redis_t *r = c->redis;
    uint64_t gen = cmd->gen, stall_ms = cmd->sent_ms + r->conf->timeout_ms;

    if (cmd->wait != NULL) {
        gd_redis_stats_count(r->stats, GD_REDIS_TIMEOUT, 0);
        report(cmd, -ETIMEDOUT, NULL);
        if (c->gen != gen)
            return; /* the connection went meanwhile, and cmd with it */
        /* The caller's own deadline came before timeout_ms: that says nothing of Redis. The
         * command is watched on until timeout_ms, nobody waiting for it any more. */
        if (gd_timers_now(r->timers) < stall_ms) {
            gd_timer_start(r->timers, &cmd->timer, stall_ms);
            return;
        }
    }
    /* cmd is freed by the drop (its reply callback runs with NULL): not used after it. */
    if (c->gen == gen && c->ac != NULL)
        conn_drop(c, "a command timed out");
}

static int start_cmd(gd_redis_t *r, gd_redis_wait_t *wait, uint64_t deadline_ms,
                     const gd_redis_script_t *script, int argc, const char *const *argv,
                     const size_t *lens, gd_redis_cb cb)
{
    struct conn *c = pick(r);

    if (c == NULL) {
        gd_redis_stats_count(r->stats, GD_REDIS_DOWN, 0);
        return -ENOTCONN;
    }
    /* A script's arguments are kept (copied: the caller's are borrowed for this call only)
     * for the EVAL that follows a NOSCRIPT; a plain command's are not needed again. */
    size_t bytes = 0;
    int kept = script != NULL ? argc : 0;
    for (int i = 0; i < kept; i++)
        bytes += lens[i];
    struct gd_redis_cmd *cmd =
        gd_xmalloc(sizeof(*cmd) + (size_t)kept * (sizeof(char *) + sizeof(size_t)) + bytes);
    *cmd = (struct gd_redis_cmd){.wait = wait, .script = script, .argc = kept};
    cmd->argv = (const char **)(cmd + 1);
    cmd->lens = (size_t *)(cmd->argv + kept);
    char *p = (char *)(cmd->lens + kept);
    for (int i = 0; i < kept; i++) {
        memcpy(p, argv[i], lens[i]);
        cmd->argv[i] = p;
        cmd->lens[i] = lens[i];
        p += lens[i];
    }
    gd_timer_init(&cmd->timer, on_cmd_timer);
    cmd->sent_ns = uv_hrtime();
    cmd->sent_ms = gd_timers_now(r->timers);
    cmd->conn = c;
    /* hiredis 0.14 declares argv without the inner const; it only reads it. */
    if (redisAsyncCommandArgv(c->ac, on_reply, cmd, argc, (const char **)argv, lens) != REDIS_OK) {
        free(cmd);
        gd_redis_stats_count(r->stats, GD_REDIS_DOWN, 0);
        return -ENOTCONN;
    }
    cmd->gen = c->gen;
    c->pending++;
    if (wait == NULL) {
        /* Nobody waits: no deadline of its own (a stalled connection is dropped by the next
         * command that waits). */
        cmd->is_detached = true;
        return 0;
    }
    uint64_t due = gd_timers_now(r->timers) + r->conf->timeout_ms;
    gd_timer_start(r->timers, &cmd->timer, deadline_ms < due ? deadline_ms : due);
    wait->_cmd = cmd;
    wait->_cb = cb;
    return 0;
}

int gd_redis_command(gd_redis_t *r, gd_redis_wait_t *wait, uint64_t deadline_ms, int argc,
                     const char *const *argv, const size_t *lens, gd_redis_cb cb)
{
    return start_cmd(r, wait, deadline_ms, NULL, argc, argv, lens, cb);
}

#define MAX_EVAL_ARGS 16

int gd_redis_eval(gd_redis_t *r, gd_redis_wait_t *wait, uint64_t deadline_ms,
                  const gd_redis_script_t *script, int nkeys, int nargs, const char *const *args,
                  const size_t *lens, gd_redis_cb cb)
{
    const char *argv[MAX_EVAL_ARGS + 3];
    size_t argl[MAX_EVAL_ARGS + 3];
    char nk[12];
    int n = nkeys + nargs;

    GD_REQUIRE(n <= MAX_EVAL_ARGS);
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    argl[0] = 7;
    argv[1] = script->sha1;
    argl[1] = 40;
    argv[2] = nk;
    argl[2] = strlen(nk);
    memcpy(argv + 3, args, (size_t)n * sizeof(char *));
    memcpy(argl + 3, lens, (size_t)n * sizeof(size_t));
    return start_cmd(r, wait, deadline_ms, script, n + 3, argv, argl, cb);
}

bool gd_redis_is_waiting(const gd_redis_wait_t *wait)
{
    return wait->_cmd != NULL;
}

void gd_redis_cancel(gd_redis_wait_t *wait)
{
    struct gd_redis_cmd *cmd = wait->_cmd;

    if (cmd == NULL)
        return;
    gd_redis_t *r = cmd->conn->redis;
    /* Watched on until timeout_ms: a stalled connection is dropped even when nobody waits. */
    gd_timer_start(r->timers, &cmd->timer, cmd->sent_ms + r->conf->timeout_ms);
    cmd->wait = NULL;
    wait->_cmd = NULL;
}
