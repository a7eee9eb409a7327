/*
 * gd_negotiate: the request headers that choose the form of an answer, parsed by their RFC 9110
 * grammar: Accept-Encoding (section 12.5.3) and If-None-Match (section 13.1.2).
 */
#ifndef GD_NEGOTIATE_H
#define GD_NEGOTIATE_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Whether the Accept-Encoding field value @value (@len bytes; several fields joined by ", ")
 * accepts gzip: "gzip" (or "x-gzip") with a qvalue above 0, or "*" above 0 when gzip is not
 * listed itself. "gzip;q=0" refuses it, whatever "*" says. A malformed member is skipped.
 */
bool gd_negotiate_accepts_gzip(const char *value, size_t len);

/**
 * Whether the If-None-Match field value @value (@len bytes) matches the entity tag @etag
 * (quotes included, e.g. "\"abc\""), by the weak comparison: "*", or any tag in the list whose
 * opaque part equals @etag's, with or without W/. A malformed list matches nothing.
 */
bool gd_negotiate_none_match(const char *value, size_t len, const char *etag, size_t etag_len);

#endif
