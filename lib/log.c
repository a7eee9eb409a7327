#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define LOG_BUFFER_BYTES (1024 * 1024)
#define LOG_LINE_MAX 4096

gd_log_level_t gd_log_max_level = GD_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* The pending bytes live in a buffer that the writer swaps out whole, so that the lock is held
 * only for a memcpy on the loop side and for a pointer swap on the writer side. */
static struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_t thread;
    bool is_running, is_stopping;
    char *pending, *spare;
    size_t pending_len;
    unsigned long dropped;
} writer = {.mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* stderr is gone: nothing sensible is left to do with a log line */
        }
        buf += n;
        len -= (size_t)n;
    }
}

static void *writer_main(void *arg)
{
    pthread_mutex_lock(&writer.mutex);
    for (;;) {
        while (writer.pending_len == 0 && writer.dropped == 0 && !writer.is_stopping)
            pthread_cond_wait(&writer.cond, &writer.mutex);
        if (writer.pending_len == 0 && writer.dropped == 0 && writer.is_stopping)
            break;
        char *buf = writer.pending;
        size_t len = writer.pending_len;
        unsigned long dropped = writer.dropped;
        writer.pending = writer.spare;
        writer.spare = buf;
        writer.pending_len = 0;
        writer.dropped = 0;
        pthread_mutex_unlock(&writer.mutex);

        write_all(buf, len);
        if (dropped != 0) {
            char note[128];
            int n = snprintf(note, sizeof(note),
                             "gatherd: warn: log: %lu lines dropped (stderr too slow)\n", dropped);
            write_all(note, (size_t)n);
        }
        pthread_mutex_lock(&writer.mutex);
    }
    pthread_mutex_unlock(&writer.mutex);
    return NULL;
}

int gd_log_start(void)
{
    int r;

    GD_REQUIRE(!writer.is_running);
    writer.pending = gd_xmalloc(LOG_BUFFER_BYTES);
    writer.spare = gd_xmalloc(LOG_BUFFER_BYTES);
    writer.is_stopping = false;
    if ((r = pthread_create(&writer.thread, NULL, writer_main, NULL)) != 0) {
        free(writer.pending);
        free(writer.spare);
        writer.pending = writer.spare = NULL;
        return -r;
    }
    pthread_mutex_lock(&writer.mutex);
    writer.is_running = true;
    pthread_mutex_unlock(&writer.mutex);
    return 0;
}

void gd_log_stop(void)
{
    pthread_mutex_lock(&writer.mutex);
    if (!writer.is_running) {
        pthread_mutex_unlock(&writer.mutex);
        return;
    }
    writer.is_stopping = true;
    pthread_cond_signal(&writer.cond);
    pthread_mutex_unlock(&writer.mutex);
    pthread_join(writer.thread, NULL);

    pthread_mutex_lock(&writer.mutex);
    writer.is_running = false;
    free(writer.pending);
    free(writer.spare);
    writer.pending = writer.spare = NULL;
    pthread_mutex_unlock(&writer.mutex);
}

void gd_log_vwrite(gd_log_level_t level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    int prefix, n;

    prefix = snprintf(line, sizeof(line), "gatherd: %s: ", level_names[level]);
    n = vsnprintf(line + prefix, sizeof(line) - (size_t)prefix - 1, fmt, ap);
    if (n < 0)
        n = 0;
    size_t len = (size_t)prefix + (size_t)n;
    if (len > sizeof(line) - 2) /* truncated: keep the line a line */
        len = sizeof(line) - 2;
    line[len++] = '\n';

    pthread_mutex_lock(&writer.mutex);
    if (!writer.is_running) {
        pthread_mutex_unlock(&writer.mutex);
        write_all(line, len);
        return;
    }
    /* The writer sleeps only when nothing is pending: wake it only then, not once a line. */
    bool is_writer_idle = writer.pending_len == 0 && writer.dropped == 0;
    if (writer.pending_len + len <= LOG_BUFFER_BYTES) {
        memcpy(writer.pending + writer.pending_len, line, len);
        writer.pending_len += len;
    } else {
        writer.dropped++;
    }
    if (is_writer_idle)
        pthread_cond_signal(&writer.cond);
    pthread_mutex_unlock(&writer.mutex);
}

void gd_log_write(gd_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gd_log_vwrite(level, fmt, ap);
    va_end(ap);
}
