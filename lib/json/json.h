/*
 * gd_json: checking JSON text without building it. Upstream bodies are validated and then
 * copied into the answer byte for byte; a parser that builds a tree (jansson) spent ~29 us on a
 * 2 KB body here, this single pass with no allocation a small fraction of that.
 */
#ifndef GD_JSON_H
#define GD_JSON_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Whether @s (@len bytes) is exactly one JSON text (RFC 8259 section 2): one value with
 * optional whitespace around it, nested to any depth (containers past 64 levels are tracked on
 * the heap). Strings must be valid UTF-8 (RFC 8259 section 8.1: no overlong forms, no
 * surrogates, nothing above U+10FFFF) and contain no control byte; \u escapes may be any four
 * hex digits (unpaired surrogates included, as section 8.2 allows).
 */
bool gd_json_is_valid(const char *s, size_t len);
/**
 * Whether @s (@len bytes) is a JSON number (RFC 8259 section 6), or with @is_integer an integer
 * one: -?(0|[1-9][0-9]*) and, unless @is_integer, (\.[0-9]+)?([eE][+-]?[0-9]+)?.
 */
bool gd_json_is_number(const char *s, size_t len, bool is_integer);

/* The most bytes gd_json_quote() writes for @len input bytes: every byte as \u00XX, and quotes. */
#define GD_JSON_QUOTED_MAX(len) ((len) * 6 + 2)

/**
 * Writes @in (@in_len bytes) as a JSON string (RFC 8259 section 7) into @buf, at most @cap
 * bytes, no NUL: quotes around it, '"' and '\\' escaped, control bytes as their short forms
 * (\b \f \n \r \t) or \u00xx, valid UTF-8 sequences as they are, and each byte that is not
 * part of one as U+FFFD, so that the output is valid UTF-8 whatever the input. Returns the full
 * length, so a first call with @cap 0 sizes the buffer; with less room the output is cut.
 */
size_t gd_json_quote(const char *in, size_t in_len, char *buf, size_t cap);

/*
 * Navigating text that gd_json_is_valid() accepted, without building anything: skipping values,
 * walking the members of an object or the elements of an array, comparing keys. Every function
 * below assumes valid text; on other text it stays in bounds but its answers mean nothing.
 */

/* Walks one object or array. */
typedef struct gd_json_iter {
    /* private */
    const char *_p, *_end;
    char _close; /* '}' or ']' */
} gd_json_iter_t;

/** The @len bytes at @s without the JSON whitespace around them. */
void gd_json_trim(const char **s, size_t *len);
/** The length of the value that starts at @s (no whitespace before it), in @len bytes. */
size_t gd_json_skip(const char *s, size_t len);
/**
 * Starts walking the value @s (@len bytes, whitespace around allowed). Returns '{' for an
 * object, '[' for an array (then @it is ready), or the value's first byte for any other
 * ('"', 'n', 't', 'f', a digit or '-'; 0 when empty), leaving @it unusable.
 */
int gd_json_iter_init(gd_json_iter_t *it, const char *s, size_t len);
/**
 * The next member or element: *@ret_key (with its quotes, escapes as written) and *@ret_key_len
 * for an object's member (NULL and 0 for an array's element), *@ret_value and *@ret_value_len
 * for the value (no whitespace around). Returns false after the last one.
 */
bool gd_json_iter_next(gd_json_iter_t *it, const char **ret_key, size_t *ret_key_len,
                       const char **ret_value, size_t *ret_value_len);
/**
 * Whether the JSON string @s (@len bytes, quotes included, as gd_json_iter_next() gives keys)
 * means the @want_len bytes at @want once its escapes are decoded (\uXXXX to UTF-8, a pair of
 * surrogates to one code point).
 */
bool gd_json_string_equals(const char *s, size_t len, const char *want, size_t want_len);
/**
 * Decodes the JSON string @s (@len bytes, quotes included) into @out, which has room for @len
 * bytes (decoding never lengthens a string); returns the decoded length. A lone surrogate
 * escape gives its three-byte encoding, as gd_json_string_equals() compares it.
 */
size_t gd_json_unquote(const char *s, size_t len, char *out);

#endif
