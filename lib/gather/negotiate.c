#include "gather/negotiate.h"

#include <string.h>
#include <strings.h>

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 9110 section 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
 * Returns the value in thousandths, or -1 when malformed. */
static int parse_qvalue(const char *p, size_t len)
{
    int q, scale = 100;

    if (len == 0 || (p[0] != '0' && p[0] != '1'))
        return -1;
    q = (p[0] - '0') * 1000;
    if (len == 1)
        return q;
    if (p[1] != '.' || len > 5)
        return -1;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        q += (p[i] - '0') * scale;
    }
    return q <= 1000 ? q : -1;
}

/* One member "coding *( OWS ; OWS name=value )": its coding and qvalue (1000 by default).
 * Returns false when malformed. */
static bool parse_coding(const char *p, const char *end, const char **ret_name,
                         size_t *ret_name_len, int *ret_q)
{
    const char *name = p;
    int q = 1000;

    while (p < end && is_tchar(*p))
        p++;
    if (p == name)
        return false;
    *ret_name = name;
    *ret_name_len = (size_t)(p - name);
    for (;;) {
        while (p < end && is_ows(*p))
            p++;
        if (p == end)
            break;
        if (*p++ != ';')
            return false;
        while (p < end && is_ows(*p))
            p++;
        const char *pname = p;
        while (p < end && is_tchar(*p))
            p++;
        size_t pname_len = (size_t)(p - pname);
        if (pname_len == 0 || p == end || *p++ != '=')
            return false;
        const char *pvalue = p;
        while (p < end && is_tchar(*p))
            p++;
        if (pname_len == 1 && (pname[0] == 'q' || pname[0] == 'Q') &&
            (q = parse_qvalue(pvalue, (size_t)(p - pvalue))) < 0)
            return false;
    }
    *ret_q = q;
    return true;
}

bool gd_negotiate_accepts_gzip(const char *value, size_t len)
{
    const char *p = value, *end = value + len;
    int gzip_q = -1, star_q = -1;

    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *member_end = comma != NULL ? comma : end;
        const char *name;
        size_t name_len;
        int q;

        while (p < member_end && is_ows(*p))
            p++;
        if (p < member_end && parse_coding(p, member_end, &name, &name_len, &q)) {
            if ((name_len == 4 && strncasecmp(name, "gzip", 4) == 0) ||
                (name_len == 6 && strncasecmp(name, "x-gzip", 6) == 0))
                gzip_q = gzip_q < 0 || q < gzip_q ? q : gzip_q; /* the most cautious wins */
            else if (name_len == 1 && name[0] == '*')
                star_q = q;
        }
        p = comma != NULL ? comma + 1 : end;
    }
    if (gzip_q >= 0)
        return gzip_q > 0;
    return star_q > 0;
}

bool gd_negotiate_none_match(const char *value, size_t len, const char *etag, size_t etag_len)
{
    const char *p = value, *end = value + len;
    const char *opaque = etag;
    size_t opaque_len = etag_len;

    if (opaque_len >= 2 && opaque[0] == 'W' && opaque[1] == '/') {
        opaque += 2;
        opaque_len -= 2;
    }
    while (p < end && is_ows(*p))
        p++;
    if (p < end && *p == '*') {
        for (p++; p < end && is_ows(*p); p++)
            ;
        return p == end;
    }
    /* 1#entity-tag, where entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE (section 8.8.3) */
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        if (p == end)
            break;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if (p == end || *p != '"')
            return false;
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (q == NULL)
            return false;
        size_t tag_len = (size_t)(q + 1 - p);
        if (tag_len == opaque_len && memcmp(p, opaque, tag_len) == 0)
            return true;
        p = q + 1;
        while (p < end && is_ows(*p))
            p++;
        if (p < end && *p != ',')
            return false;
    }
    return false;
}
