#include "ops/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json/json.h"
#include "base/util.h"

#define LOG_BUFFER_BYTES (1024 * 1024)
#define LOG_LINE_MAX 4096

gd_log_level_t gd_log_max_level = GD_LOG_INFO;
static bool is_json_format;

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
        /* Not holding the lock here: the note goes through the formatter like any line. */
        if (dropped != 0)
            gd_log_write(GD_LOG_WARN, "log: %lu lines dropped (stderr too slow)", dropped);
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

void gd_log_set_json(bool is_json)
{
    is_json_format = is_json;
}

bool gd_log_is_json(void)
{
    return is_json_format;
}

/* A line under construction; silently truncated at LOG_LINE_MAX, keeping room for "}\n". A JSON
 * line is cut only between fields (strings may be shortened), so it always stays one valid
 * JSON object. */
struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
};

static size_t line_room(const struct line *l)
{
    return sizeof(l->buf) - 3 - l->len;
}

/* Appends what fits of @s; returns whether all of it did. */
static bool line_put(struct line *l, const char *s, size_t n)
{
    size_t room = line_room(l);
    bool is_whole = n <= room;

    if (!is_whole)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return is_whole;
}

/* Appends what fits of the formatted text; returns whether all of it did. */
__attribute__((format(printf, 2, 3))) static bool line_printf(struct line *l, const char *fmt, ...)
{
    size_t room = line_room(l);
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(l->buf + l->len, room + 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return false;
    l->len += (size_t)n < room ? (size_t)n : room;
    return (size_t)n <= room;
}

/* Appends @s as a JSON string, quotes included, shortened (at a character boundary) to fit the
 * room left; returns false, appending nothing, when not even an empty string fits. */
static bool line_put_json_string(struct line *l, const char *s, size_t n)
{
    size_t room = line_room(l);
    size_t len = gd_json_quote(s, n, NULL, 0);

    while (len > room && n > 0) {
        size_t cut = (size_t)((double)n * (double)room / (double)len);
        n = cut < n ? cut : n - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--; /* s[n] would be the first byte left out: never the middle of a character */
        len = gd_json_quote(s, n, NULL, 0);
    }
    if (len > room)
        return false;
    l->len += gd_json_quote(s, n, l->buf + l->len, room);
    return true;
}

/* Appends a text-format value: bare when it is a plain token, JSON-quoted otherwise. */
static void line_put_text_value(struct line *l, const char *s, size_t n)
{
    bool is_plain = n > 0;
    for (size_t i = 0; i < n && is_plain; i++)
        is_plain = (unsigned char)s[i] > 0x20 && s[i] != '"' && s[i] != '\\' && s[i] != 0x7f;
    if (is_plain)
        line_put(l, s, n);
    else
        line_put_json_string(l, s, n);
}

static void line_start(struct line *l, gd_log_level_t level)
{
    l->len = 0;
    if (!is_json_format) {
        line_printf(l, "gatherd: %s: ", level_names[level]);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    line_printf(l, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                ts.tv_nsec / 1000000, level_names[level]);
}

static void line_finish(struct line *l)
{
    if (is_json_format)
        l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
}

static void emit(const char *line, size_t len);

void gd_log_vwrite(gd_log_level_t level, const char *fmt, va_list ap)
{
    struct line l;

    line_start(&l, level);
    if (is_json_format) {
        char msg[LOG_LINE_MAX];
        int n = vsnprintf(msg, sizeof(msg), fmt, ap);
        line_put_json_string(&l, msg, n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
    } else {
        size_t room = sizeof(l.buf) - 3 - l.len;
        int n = vsnprintf(l.buf + l.len, room + 1, fmt, ap);
        if (n > 0)
            l.len += (size_t)n < room ? (size_t)n : room;
    }
    line_finish(&l);
    emit(l.buf, l.len);
}

void gd_log_event(gd_log_level_t level, const char *msg, const gd_log_field_t *fields,
                  size_t nfields)
{
    struct line l;

    if (level > gd_log_max_level)
        return;
    line_start(&l, level);
    if (is_json_format)
        line_put_json_string(&l, msg, strlen(msg));
    else
        line_put(&l, msg, strlen(msg));
    for (size_t i = 0; i < nfields; i++) {
        const gd_log_field_t *f = &fields[i];
        size_t n = f->str != NULL ? (f->str_len == SIZE_MAX ? strlen(f->str) : f->str_len) : 0;
        size_t field_start = l.len;
        bool is_whole = true;
        if (is_json_format) {
            is_whole = line_put(&l, ",", 1) && line_put_json_string(&l, f->key, strlen(f->key)) &&
                       line_put(&l, ":", 1);
        } else {
            line_printf(&l, " %s=", f->key);
        }
        if (!is_whole) {
            l.len = field_start; /* a field that does not fit whole is left out, with the rest */
            break;
        }
        switch (f->type) {
        case GD_LOG_STR:
            if (is_json_format)
                is_whole = line_put_json_string(&l, f->str != NULL ? f->str : "", n);
            else
                line_put_text_value(&l, f->str != NULL ? f->str : "", n);
            break;
        case GD_LOG_JSON:
            if (is_json_format)
                is_whole = line_put(&l, f->str, n);
            else
                line_put_text_value(&l, f->str, n);
            break;
        case GD_LOG_INT:
            is_whole = line_printf(&l, "%lld", f->i);
            break;
        case GD_LOG_MS:
            is_whole = line_printf(&l, "%.1f", f->ms);
            break;
        }
        if (is_json_format && !is_whole) {
            l.len = field_start; /* a field that does not fit whole is left out, with the rest */
            break;
        }
    }
    line_finish(&l);
    emit(l.buf, l.len);
}

/* Hands a finished line to the writer thread, or writes it when there is none. */
static void emit(const char *line, size_t len)
{
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
