#include "base/percent.h"

#include "base/util.h"

static const char hex_upper[] = "0123456789ABCDEF";

/* RFC 3986 section 2.3: the unreserved characters, the only ones a value keeps as they are. */
static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* "." and ".." are path segments with a meaning of their own (RFC 3986 section 5.2.4), and so
 * would any longer run of dots be to a lenient server: such a value is encoded whole. */
static bool is_only_dots(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] != '.')
            return false;
    return true;
}

size_t gd_percent_encode(const char *in, size_t in_len, char *out, size_t cap)
{
    bool encode_all = is_only_dots(in, in_len);
    size_t n = 0;

    for (size_t i = 0; i < in_len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (!encode_all && is_unreserved(c)) {
            if (n < cap)
                out[n] = (char)c;
            n++;
            continue;
        }
        char esc[3] = {'%', hex_upper[c >> 4], hex_upper[c & 0xf]};
        for (size_t k = 0; k < 3; k++, n++)
            if (n < cap)
                out[n] = esc[k];
    }
    return n;
}

long gd_percent_decode(const char *in, size_t in_len, char *out, bool plus_is_space)
{
    size_t n = 0;

    for (size_t i = 0; i < in_len; i++) {
        char c = in[i];
        if (c == '%') {
            int hi, lo;
            if (in_len - i < 3 || (hi = gd_hex_value(in[i + 1])) < 0 ||
                (lo = gd_hex_value(in[i + 2])) < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            if (c == '\0')
                return -1;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        out[n++] = c;
    }
    return (long)n;
}
