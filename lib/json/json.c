#include "json/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "base/util.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static const char *skip_digits(const char *p, const char *end)
{
    while (p < end && is_digit(*p))
        p++;
    return p;
}

bool gd_json_is_number(const char *s, size_t len, bool is_integer)
{
    const char *p = s, *end = s + len, *q;

    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if ((q = skip_digits(p, end)) > p)
        p = q;
    else
        return false;
    if (is_integer)
        return p == end;
    if (p < end && *p == '.') {
        q = skip_digits(p + 1, end);
        if (q == p + 1)
            return false;
        p = q;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        q = skip_digits(p, end);
        if (q == p)
            return false;
        p = q;
    }
    return p == end;
}

static inline const char *skip_ws(const char *p, const char *end)
{
    /* Every whitespace byte is at most ' ', every byte that starts a token above it: one
     * compare settles the usual case, text without whitespace between its tokens. */
    while (p < end && (unsigned char)*p <= ' ' &&
           (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* The end of the UTF-8 sequence starting at @p (its lead byte >= 0x80), or NULL when it is not
 * a valid one (RFC 3629 section 4). */
static const char *scan_utf8(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = *p;
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlong three-byte forms */
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* no overlong four-byte forms */
        else if (c == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        return NULL;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return NULL;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return NULL;
    return (const char *)p + n;
}

/* The bytes of @x (8 of them, in memory order) equal to the byte of @pattern (that byte in all
 * 8): the lowest set bit marks the first one exactly (later ones may be marked wrongly). */
static inline uint64_t bytes_equal(uint64_t x, uint64_t pattern)
{
    uint64_t y = x ^ pattern;

    return (y - UINT64_C(0x0101010101010101)) & ~y & UINT64_C(0x8080808080808080);
}

/* The bytes of @x (8 of them, in memory order) that a JSON string cannot take as they are: a
 * '"', a '\\', a control character (below 0x20) or the start of a UTF-8 sequence (0x80 and up).
 * The lowest set bit marks the first one exactly (later ones may be marked wrongly). */
static inline uint64_t bytes_special(uint64_t x)
{
    uint64_t below_space = (x - UINT64_C(0x2020202020202020)) & ~x;

    return ((x | below_space) & UINT64_C(0x8080808080808080)) |
           bytes_equal(x, UINT64_C(0x2222222222222222)) |
           bytes_equal(x, UINT64_C(0x5c5c5c5c5c5c5c5c));
}

/*
 * The first byte at or after @p, before @end, that a JSON string cannot take as it is (a '"',
 * a '\\', a control character or a byte of 0x80 and up), or @end. Strings are most of an
 * upstream body's bytes and of a row's text: with SSE2 (every x86-64) they are scanned 16 bytes
 * at a time in a few instructions, else 8 at a time in a word, and only the last few one by one
 * (measured on the profile workload: 15.6k instructions per request in the validator's strings
 * with words alone).
 */
static inline const char *find_special(const char *p, const char *end)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(' ');

    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* A signed compare: bytes of 0x80 and up are negative, below ' ' with the controls. */
        __m128i m =
            _mm_or_si128(_mm_cmplt_epi8(v, space),
                         _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits != 0)
            return p + __builtin_ctz(bits);
        p += 16;
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) {
        uint64_t x, m;
        memcpy(&x, p, 8);
        if ((m = bytes_special(x)) != 0)
            return p + __builtin_ctzll(m) / 8;
        p += 8;
    }
#endif
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
            break;
    }
    return p;
}

/* The end of the JSON string starting at @p (on its '"'), or NULL when it is none. */
static const char *scan_string(const char *p, const char *end)
{
    for (p++;;) {
        p = find_special(p, end);
        if (p == end)
            return NULL;
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c >= 0x80) {
            if ((p = scan_utf8((const unsigned char *)p, (const unsigned char *)end)) == NULL)
                return NULL;
            continue;
        }
        if (c < 0x20 || ++p == end)
            return NULL;
        if (*p == 'u') {
            if (end - p < 5)
                return NULL;
            for (int i = 1; i <= 4; i++)
                if (gd_hex_value(p[i]) < 0)
                    return NULL;
            p += 5;
        } else if (memchr("\"\\/bfnrt", *p, 8) != NULL) {
            p++;
        } else {
            return NULL;
        }
    }
}

/*
 * The end of the JSON number or literal starting at @p, or NULL when it is none. A number is
 * read by its grammar in one pass (RFC 8259 section 6). Where it ends before a byte that could
 * continue a number ("01", "1.2.3", "1e5e"), that byte then fails the text in the caller, which
 * takes only whitespace, ',', a closing bracket or the end after a value.
 */
static const char *scan_scalar(const char *p, const char *end)
{
    static const struct {
        const char *text;
        size_t len;
    } literals[] = {{"true", 4}, {"false", 5}, {"null", 4}};
    const char *q;

    if (*p == '-' || is_digit(*p)) {
        if (*p == '-' && ++p == end)
            return NULL;
        if (*p == '0')
            p++;
        else if (is_digit(*p))
            p = skip_digits(p + 1, end);
        else
            return NULL;
        if (p < end && *p == '.') {
            if ((q = skip_digits(p + 1, end)) == p + 1)
                return NULL;
            p = q;
        }
        if (p < end && (*p == 'e' || *p == 'E')) {
            p++;
            if (p < end && (*p == '+' || *p == '-'))
                p++;
            if ((q = skip_digits(p, end)) == p)
                return NULL;
            p = q;
        }
        return p;
    }
    for (size_t i = 0; i < GD_ARRAY_SIZE(literals); i++)
        if ((size_t)(end - p) >= literals[i].len &&
            memcmp(p, literals[i].text, literals[i].len) == 0)
            return p + literals[i].len;
    return NULL;
}

/* Past the ':' of the member key that should start at @p (whitespace before it allowed), or
 * NULL when there is none. */
static const char *scan_key(const char *p, const char *end)
{
    p = skip_ws(p, end);
    if (p == end || *p != '"' || (p = scan_string(p, end)) == NULL)
        return NULL;
    p = skip_ws(p, end);
    if (p == end || *p != ':')
        return NULL;
    return p + 1;
}

/*
 * One pass, each turn of the loop a value and then what follows it: the closing brackets, and
 * a ',' with the next member's key. Keys, values and separators are each read where they must
 * come rather than through a state tested at every token (measured on the profile workload's
 * bodies: 11.3k instructions per request in the loop itself before, the state machine's).
 */
bool gd_json_is_valid(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    char small[64], *stack = small; /* '}' or ']': what closes each open container */
    size_t depth = 0, cap = sizeof(small);
    bool ok = false;

    for (;;) {
        /* A value. */
        p = skip_ws(p, end);
        if (p == end)
            break;
        if (*p == '{' || *p == '[') {
            char close = *p == '{' ? '}' : ']';
            if (depth == cap) {
                GD_REQUIRE(cap <= SIZE_MAX / 2);
                stack = stack == small ? memcpy(gd_xmalloc(cap * 2), small, cap)
                                       : gd_xrealloc(stack, cap * 2);
                cap *= 2;
            }
            stack[depth++] = close;
            p = skip_ws(p + 1, end);
            if (p == end)
                break;
            if (*p != close) {
                if (close == '}' && (p = scan_key(p, end)) == NULL)
                    break;
                continue; /* the first element or member's value */
            }
            depth--;
            p++;
        } else if ((p = *p == '"' ? scan_string(p, end) : scan_scalar(p, end)) == NULL) {
            break;
        }
        /* After it: closing brackets, then a ',' and the next value, or the end. */
        bool is_next = false;
        for (;;) {
            p = skip_ws(p, end);
            if (depth == 0) {
                ok = p == end;
                break;
            }
            if (p == end)
                break;
            if (*p == ',') {
                p++;
                is_next = stack[depth - 1] == ']' || (p = scan_key(p, end)) != NULL;
                break;
            }
            if (*p != stack[depth - 1])
                break;
            depth--;
            p++;
        }
        if (!is_next)
            break;
    }
    if (stack != small)
        free(stack);
    return ok;
}

/* Copies what fits of @n bytes at @s to @buf (@cap bytes) at offset @len; returns @len + @n. */
static size_t put(char *buf, size_t cap, size_t len, const char *s, size_t n)
{
    if (len < cap)
        memcpy(buf + len, s, len + n <= cap ? n : cap - len);
    return len + n;
}

size_t gd_json_quote(const char *in, size_t in_len, char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = put(buf, cap, 0, "\"", 1), run = 0; /* run: start of bytes not yet copied */

    for (size_t i = 0; i < in_len; i++) {
        /* The plain bytes up to the next special one are copied later as one run. */
        i = (size_t)(find_special(in + i, in + in_len) - in);
        if (i == in_len)
            break;
        unsigned char c = (unsigned char)in[i];
        char esc[6] = {'\\', (char)c};
        size_t esc_len = 2;

        if (c >= 0x80) {
            const unsigned char *u = (const unsigned char *)in + i;
            const char *next = scan_utf8(u, (const unsigned char *)in + in_len);
            if (next != NULL) {
                i = (size_t)(next - in) - 1; /* a whole, valid sequence: copied as it is */
                continue;
            }
            /* Not UTF-8 (a cut sequence, Latin-1 from a server): U+FFFD keeps the output
             * valid JSON text, which must be UTF-8 (RFC 8259, section 8.1). */
            len = put(buf, cap, len, in + run, i - run);
            run = i + 1;
            len = put(buf, cap, len, "\xef\xbf\xbd", 3);
            continue;
        }
        /* Here @c is a '"', a '\\' or a control byte: it is escaped. */
        len = put(buf, cap, len, in + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
        case '\\':
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            esc_len = 6;
        }
        len = put(buf, cap, len, esc, esc_len);
    }
    len = put(buf, cap, len, in + run, in_len - run);
    return put(buf, cap, len, "\"", 1);
}

void gd_json_trim(const char **s, size_t *len)
{
    const char *p = skip_ws(*s, *s + *len), *end = *s + *len;

    while (end > p && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\t'))
        end--;
    *s = p;
    *len = (size_t)(end - p);
}

/* The end of the valid string starting at @p (on its '"'). Keys and short values are scanned
 * 8 bytes at a time for '"' or '\\' (a call of memchr() costs more than their few bytes); past
 * 32 bytes memchr() finds each quote, fast over long values, and a quote is the end unless an
 * odd run of backslashes escapes it (the scan only ever resumes after a whole escape, so a run
 * never reaches back past where it resumed). */
static const char *skip_string(const char *p, const char *end)
{
    const char *stop = end - p > 32 ? p + 32 : end;

    p++;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8 && p < stop) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t m = bytes_equal(x, UINT64_C(0x2222222222222222)) |
                     bytes_equal(x, UINT64_C(0x5c5c5c5c5c5c5c5c));
        if (m == 0) {
            p += 8;
            continue;
        }
        p += __builtin_ctzll(m) / 8;
        if (*p == '"')
            return p + 1;
        p += 2; /* a backslash and the byte it escapes */
    }
#endif
    for (; p < stop; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p)), *b;
        if (q == NULL)
            return end;
        for (b = q; b > p && b[-1] == '\\'; b--)
            ;
        if ((q - b) % 2 == 0)
            return q + 1;
        p = q + 1;
    }
    return end;
}

size_t gd_json_skip(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    size_t depth = 0;

    if (p == end)
        return 0;
    if (*p == '"')
        return (size_t)(skip_string(p, end) - s);
    if (*p != '{' && *p != '[') {
        while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
               *p != '\r' && *p != '\t')
            p++;
        return (size_t)(p - s);
    }
    /* Brackets inside strings do not count: valid text needs no stack to be skipped. */
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = skip_string(p, end);
            continue;
        }
        p++;
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0)
                break;
        }
    }
    return (size_t)(p - s);
}

int gd_json_iter_init(gd_json_iter_t *it, const char *s, size_t len)
{
    gd_json_trim(&s, &len);
    if (len == 0)
        return 0;
    if (*s != '{' && *s != '[')
        return (unsigned char)*s;
    it->_p = s + 1;
    it->_end = s + len;
    it->_after = s + len;
    it->_close = *s == '{' ? '}' : ']';
    return *s;
}

bool gd_json_iter_next_open(gd_json_iter_t *it, const char **ret_key, size_t *ret_key_len,
                            const char **ret_value, size_t *ret_value_len)
{
    const char *p = skip_ws(it->_p, it->_end), *end = it->_end;

    if (p < end && *p == ',')
        p = skip_ws(p + 1, end);
    if (p >= end || *p == it->_close) {
        if (p < end)
            it->_after = p + 1;
        it->_p = end;
        return false;
    }
    *ret_key = NULL;
    *ret_key_len = 0;
    if (it->_close == '}') {
        const char *k = p;
        p = skip_string(p, end);
        *ret_key = k;
        *ret_key_len = (size_t)(p - k);
        p = skip_ws(p, end);
        p = skip_ws(p + 1, end); /* the ':' */
    }
    *ret_value = p;
    *ret_value_len = (size_t)(end - p);
    it->_p = p;
    return true;
}

void gd_json_iter_skip_to(gd_json_iter_t *it, const char *p)
{
    it->_p = p;
}

bool gd_json_iter_next(gd_json_iter_t *it, const char **ret_key, size_t *ret_key_len,
                       const char **ret_value, size_t *ret_value_len)
{
    if (!gd_json_iter_next_open(it, ret_key, ret_key_len, ret_value, ret_value_len))
        return false;
    *ret_value_len = gd_json_skip(*ret_value, *ret_value_len);
    it->_p = *ret_value + *ret_value_len;
    return true;
}

const char *gd_json_iter_end(const gd_json_iter_t *it)
{
    return it->_after;
}

/* Writes code point @cp as UTF-8 into @out (4 bytes of room); returns the length. */
static size_t put_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static uint32_t hex4(const char *p)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++)
        v = v << 4 | (uint32_t)gd_hex_value(p[i]);
    return v;
}

/* Decodes the next character of a JSON string's inside at *@p (before @end) into @dec (8 bytes
 * of room); returns its length. */
static size_t decode_char(const char **p, const char *end, char *dec)
{
    const char *q = *p;
    size_t n = 1;

    if (*q != '\\') {
        dec[0] = *q++;
    } else if (q[1] != 'u') {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *f = memchr(from, q[1], 8);
        dec[0] = f != NULL ? to[f - from] : q[1];
        q += 2;
    } else {
        uint32_t cp = hex4(q + 2);
        q += 6;
        if (cp >= 0xd800 && cp <= 0xdbff && end - q >= 6 && q[0] == '\\' && q[1] == 'u') {
            uint32_t lo = hex4(q + 2);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                q += 6;
            }
        }
        n = put_utf8(cp, dec); /* a lone surrogate gives bytes no wanted key has */
    }
    *p = q;
    return n;
}

bool gd_json_string_equals(const char *s, size_t len, const char *want, size_t want_len)
{
    const char *p = s + 1, *end = s + len - 1; /* inside the quotes */
    size_t i = 0;

    if (len < 2)
        return false;
    /* Every escape is longer than what it decodes to: a key written shorter than @want_len
     * cannot mean it, and one of the same length means it only when it has no escape. */
    size_t raw = (size_t)(end - p);
    if (raw <= want_len)
        return raw == want_len && memcmp(p, want, want_len) == 0 && memchr(p, '\\', raw) == NULL;
    if (memchr(p, '\\', raw) == NULL)
        return false;
    while (p < end) {
        char dec[8];
        size_t n = decode_char(&p, end, dec);
        if (i + n > want_len || memcmp(want + i, dec, n) != 0)
            return false;
        i += n;
    }
    return i == want_len;
}

size_t gd_json_unquote(const char *s, size_t len, char *out)
{
    const char *p = s + 1, *end = s + len - 1;
    size_t i = 0;

    if (len < 2)
        return 0;
    while (p < end) {
        char dec[8];
        size_t n = decode_char(&p, end, dec);
        memcpy(out + i, dec, n);
        i += n;
    }
    return i;
}
