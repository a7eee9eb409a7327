/*
 * gd_b64url: base64url without padding (RFC 4648 section 5), as JOSE uses it (RFC 7515 section 2).
 */
#ifndef GD_B64URL_H
#define GD_B64URL_H

#include <stddef.h>
#include <sys/types.h>

/** The most bytes gd_b64url_decode() writes for @len characters. */
#define GD_B64URL_DECODED_MAX(len) ((len) / 4 * 3 + 3)

/**
 * Decodes [@s, @s + @len) into @out (GD_B64URL_DECODED_MAX(@len) bytes). Returns the number of
 * bytes written, or -1 for a character outside the alphabet, padding, or an impossible length.
 */
ssize_t gd_b64url_decode(const char *s, size_t len, unsigned char *out);

#endif
