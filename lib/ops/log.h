/*
 * gd_log: one line per event on stderr. Loop threads never write to stderr themselves: a line is
 * copied into a bounded buffer under a short lock and a writer thread does the write(2), so a
 * slow log consumer (a full pipe) can never stall a request. When the buffer is full, lines are
 * dropped and counted; the count is reported once the writer catches up.
 */
#ifndef GD_LOG_H
#define GD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum gd_log_level {
    GD_LOG_ERR = 0,
    GD_LOG_WARN,
    GD_LOG_INFO,
    GD_LOG_DEBUG,
} gd_log_level_t;

/* Lines above this level are skipped before their arguments are formatted. */
extern gd_log_level_t gd_log_max_level;

/** Chooses the line format: JSON objects ({"time", "level", "msg", fields...}) or text. */
void gd_log_set_json(bool is_json);
/** Whether lines are JSON. */
bool gd_log_is_json(void);

/* A named value of a structured event. */
typedef enum gd_log_field_type {
    GD_LOG_STR,  /* .str, quoted/escaped as needed */
    GD_LOG_INT,  /* .i */
    GD_LOG_MS,   /* .ms: a duration in milliseconds, one decimal */
    GD_LOG_JSON, /* .str: a JSON document written as is in JSON lines, as text in text lines */
} gd_log_field_type_t;

typedef struct gd_log_field {
    const char *key;
    gd_log_field_type_t type;
    const char *str;
    size_t str_len; /* GD_LOG_STR/GD_LOG_JSON: bytes of str (SIZE_MAX: NUL-terminated) */
    long long i;
    double ms;
} gd_log_field_t;

/**
 * Writes one event: @msg and @fields. Text: "gatherd: LEVEL: msg key=value ..."; JSON:
 * {"time":"RFC 3339 with ms","level":"info","msg":"...","key":value,...}.
 */
void gd_log_event(gd_log_level_t level, const char *msg, const gd_log_field_t *fields,
                  size_t nfields);

/**
 * Starts the writer thread. Until it is called (and after gd_log_stop()) lines are written
 * directly, which suits start-up and tests. Returns 0 or -errno.
 */
int gd_log_start(void);
/** Flushes every buffered line and stops the writer thread. */
void gd_log_stop(void);

/** Writes one line "gatherd: LEVEL: message" (a trailing newline is added). */
void gd_log_write(gd_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gd_log_vwrite(gd_log_level_t level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define gd_log_(level, ...)                                                                        \
    do {                                                                                           \
        if ((level) <= gd_log_max_level)                                                           \
            gd_log_write((level), __VA_ARGS__);                                                    \
    } while (0)
#define gd_log_err(...) gd_log_(GD_LOG_ERR, __VA_ARGS__)
#define gd_log_warn(...) gd_log_(GD_LOG_WARN, __VA_ARGS__)
#define gd_log_info(...) gd_log_(GD_LOG_INFO, __VA_ARGS__)
#define gd_log_debug(...) gd_log_(GD_LOG_DEBUG, __VA_ARGS__)

#endif
