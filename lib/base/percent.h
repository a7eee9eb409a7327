/*
 * gd_percent: the one percent codec (RFC 3986 section 2.1), for values put into upstream URLs
 * and for the path and query of client requests.
 */
#ifndef GD_PERCENT_H
#define GD_PERCENT_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Percent-encodes @in into @out, at most @cap bytes: every byte but A-Z a-z 0-9 - . _ ~ becomes
 * %XX (upper-case hex); a value made only of dots ("." "..") is encoded whole, so it can never
 * act as a path segment of its own. Returns the full length (at most 3 x @in_len), so a first
 * call with @cap 0 (and @out NULL) sizes the buffer; with less room the output is cut.
 */
size_t gd_percent_encode(const char *in, size_t in_len, char *out, size_t cap);
/**
 * Percent-decodes @in into @out (room for @in_len bytes); with @plus_is_space, '+' becomes ' '
 * (query strings). Returns the length written, or -1 on a malformed escape ('%' not followed by
 * two hex digits) or an encoded NUL byte.
 */
long gd_percent_decode(const char *in, size_t in_len, char *out, bool plus_is_space);

#endif
