#include "sources/pg/pgjson.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json/json.h"
#include "base/util.h"

/*
 * Type OIDs. Every built-in type has an OID fixed in PostgreSQL's catalog (pg_type.dat), the
 * same on every server; catalog/pg_type.h is not installed with libpq, so they are written down
 * here and were checked against a PostgreSQL 15 server with
 *   select a.oid, a.typname, e.typname, a.typdelim from pg_type a join pg_type e
 *     on e.oid = a.typelem where a.typsubscript = 'array_subscript_handler'::regproc
 *     and a.oid < 10000;
 * Types created at run time (enums, composites, extensions) get OIDs >= 16384 that differ from
 * one database to the next, so their arrays cannot be recognised and come out as one string.
 * A domain column needs no entry: the server describes it by its base type.
 */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_JSON = 114,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_NUMERIC = 1700,
    OID_JSONB = 3802,

    /* Arrays whose elements map to something other than a string. */
    OID_BOOL_ARRAY = 1000,
    OID_INT2_ARRAY = 1005,
    OID_INT4_ARRAY = 1007,
    OID_INT8_ARRAY = 1016,
    OID_OID_ARRAY = 1028,
    OID_FLOAT4_ARRAY = 1021,
    OID_FLOAT8_ARRAY = 1022,
    OID_NUMERIC_ARRAY = 1231,
    OID_JSON_ARRAY = 199,
    OID_JSONB_ARRAY = 3807,

    /* The one built-in array whose elements are separated by ';' (typdelim), not ','. */
    OID_BOX_ARRAY = 1020,

    /* Arrays of every other built-in type: JSON arrays of strings. */
    OID_XML_ARRAY = 143,
    OID_PG_TYPE_ARRAY = 210,
    OID_PG_ATTRIBUTE_ARRAY = 270,
    OID_XID8_ARRAY = 271,
    OID_PG_PROC_ARRAY = 272,
    OID_PG_CLASS_ARRAY = 273,
    OID_LINE_ARRAY = 629,
    OID_CIDR_ARRAY = 651,
    OID_CIRCLE_ARRAY = 719,
    OID_MACADDR8_ARRAY = 775,
    OID_MONEY_ARRAY = 791,
    OID_BYTEA_ARRAY = 1001,
    OID_CHAR_ARRAY = 1002,
    OID_NAME_ARRAY = 1003,
    OID_INT2VECTOR_ARRAY = 1006,
    OID_REGPROC_ARRAY = 1008,
    OID_TEXT_ARRAY = 1009,
    OID_TID_ARRAY = 1010,
    OID_XID_ARRAY = 1011,
    OID_CID_ARRAY = 1012,
    OID_OIDVECTOR_ARRAY = 1013,
    OID_BPCHAR_ARRAY = 1014,
    OID_VARCHAR_ARRAY = 1015,
    OID_POINT_ARRAY = 1017,
    OID_LSEG_ARRAY = 1018,
    OID_PATH_ARRAY = 1019,
    OID_POLYGON_ARRAY = 1027,
    OID_ACLITEM_ARRAY = 1034,
    OID_MACADDR_ARRAY = 1040,
    OID_INET_ARRAY = 1041,
    OID_TIMESTAMP_ARRAY = 1115,
    OID_DATE_ARRAY = 1182,
    OID_TIME_ARRAY = 1183,
    OID_TIMESTAMPTZ_ARRAY = 1185,
    OID_INTERVAL_ARRAY = 1187,
    OID_CSTRING_ARRAY = 1263,
    OID_TIMETZ_ARRAY = 1270,
    OID_BIT_ARRAY = 1561,
    OID_VARBIT_ARRAY = 1563,
    OID_REFCURSOR_ARRAY = 2201,
    OID_REGPROCEDURE_ARRAY = 2207,
    OID_REGOPER_ARRAY = 2208,
    OID_REGOPERATOR_ARRAY = 2209,
    OID_REGCLASS_ARRAY = 2210,
    OID_REGTYPE_ARRAY = 2211,
    OID_TXID_SNAPSHOT_ARRAY = 2949,
    OID_UUID_ARRAY = 2951,
    OID_PG_LSN_ARRAY = 3221,
    OID_TSVECTOR_ARRAY = 3643,
    OID_GTSVECTOR_ARRAY = 3644,
    OID_TSQUERY_ARRAY = 3645,
    OID_REGCONFIG_ARRAY = 3735,
    OID_REGDICTIONARY_ARRAY = 3770,
    OID_INT4RANGE_ARRAY = 3905,
    OID_NUMRANGE_ARRAY = 3907,
    OID_TSRANGE_ARRAY = 3909,
    OID_TSTZRANGE_ARRAY = 3911,
    OID_DATERANGE_ARRAY = 3913,
    OID_INT8RANGE_ARRAY = 3927,
    OID_JSONPATH_ARRAY = 4073,
    OID_REGNAMESPACE_ARRAY = 4090,
    OID_REGROLE_ARRAY = 4097,
    OID_REGCOLLATION_ARRAY = 4192,
    OID_PG_SNAPSHOT_ARRAY = 5039,
    OID_RECORD_ARRAY = 2287, /* anonymous rows, row(...) or array_agg(t) */
    OID_INT4MULTIRANGE_ARRAY = 6150,
    OID_NUMMULTIRANGE_ARRAY = 6151,
    OID_TSMULTIRANGE_ARRAY = 6152,
    OID_TSTZMULTIRANGE_ARRAY = 6153,
    OID_DATEMULTIRANGE_ARRAY = 6155,
    OID_INT8MULTIRANGE_ARRAY = 6157,
};

/* How the text of a value (or of an array element) becomes JSON. */
enum value_kind {
    KIND_STRING,
    KIND_BOOL,
    KIND_INT,   /* int2 int4 int8 oid: an integer, copied */
    KIND_FLOAT, /* float4 float8 numeric: a number, copied; NaN and +-Infinity are null */
    KIND_JSON,
};

static void reserve(gd_pgjson_buf_t *out, size_t n)
{
    size_t cap;

    if (out->cap - out->len >= n)
        return;
    cap = out->cap > 0 ? out->cap : 256;
    while (cap - out->len < n) {
        GD_REQUIRE(cap <= SIZE_MAX / 2);
        cap *= 2;
    }
    out->base = gd_xrealloc(out->base, cap);
    out->cap = cap;
}

static void append(gd_pgjson_buf_t *out, const char *s, size_t len)
{
    if (len == 0)
        return; /* out->base may still be NULL */
    reserve(out, len);
    memcpy(out->base + out->len, s, len);
    out->len += len;
}

static void append_char(gd_pgjson_buf_t *out, char c)
{
    reserve(out, 1);
    out->base[out->len++] = c;
}

#define append_lit(out, lit) append((out), (lit), sizeof(lit) - 1)

/* Writes @s (@len bytes) as a JSON string (see gd_json_quote()), in one pass into room reserved
 * for the worst case. */
static void write_string(gd_pgjson_buf_t *out, const char *s, size_t len)
{
    reserve(out, GD_JSON_QUOTED_MAX(len));
    out->len += gd_json_quote(s, len, out->base + out->len, GD_JSON_QUOTED_MAX(len));
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The end of the digits starting at @p. */
/*
 * Writes @s (@len bytes, not NULL) as a value of @kind. Returns false, having written nothing,
 * when @s is not what @kind promises.
 */
static bool write_scalar(gd_pgjson_buf_t *out, enum value_kind kind, const char *s, size_t len)
{
    switch (kind) {
    case KIND_STRING:
        write_string(out, s, len);
        return true;
    case KIND_BOOL:
        if (gd_memeq(s, len, "t"))
            append_lit(out, "true");
        else if (gd_memeq(s, len, "f"))
            append_lit(out, "false");
        else
            return false;
        return true;
    case KIND_INT:
        if (!gd_json_is_number(s, len, true))
            return false;
        append(out, s, len);
        return true;
    case KIND_FLOAT:
        /* JSON has no NaN or infinities (RFC 8259 section 6); these are the server's spellings
         * of them for float4, float8 and numeric. */
        if (len > 0 && (s[0] == 'N' || s[0] == 'I' || s[0] == '-') &&
            (gd_memeq(s, len, "NaN") || gd_memeq(s, len, "Infinity") ||
             gd_memeq(s, len, "-Infinity")))
            append_lit(out, "null"); /* the first byte spares three compares to most values */
        else if (gd_json_is_number(s, len, false))
            append(out, s, len);
        else
            return false;
        return true;
    case KIND_JSON:
        if (!gd_json_is_valid(s, len))
            return false;
        append(out, s, len);
        return true;
    }
    return false;
}

/* The kind of a column of non-array type @type. */
static enum value_kind scalar_kind(Oid type)
{
    switch (type) {
    case OID_BOOL:
        return KIND_BOOL;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
        return KIND_INT;
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC:
        return KIND_FLOAT;
    case OID_JSON:
    case OID_JSONB:
        return KIND_JSON;
    default:
        return KIND_STRING;
    }
}

/*
 * Whether @type is an array type this module knows; if so, the kind of its elements and the
 * character between them (its element type's typdelim).
 */
static bool array_kind(Oid type, enum value_kind *ret_kind, char *ret_delim)
{
    *ret_delim = ',';
    switch (type) {
    case OID_BOOL_ARRAY:
        *ret_kind = KIND_BOOL;
        return true;
    case OID_INT2_ARRAY:
    case OID_INT4_ARRAY:
    case OID_INT8_ARRAY:
    case OID_OID_ARRAY:
        *ret_kind = KIND_INT;
        return true;
    case OID_FLOAT4_ARRAY:
    case OID_FLOAT8_ARRAY:
    case OID_NUMERIC_ARRAY:
        *ret_kind = KIND_FLOAT;
        return true;
    case OID_JSON_ARRAY:
    case OID_JSONB_ARRAY:
        *ret_kind = KIND_JSON;
        return true;
    case OID_BOX_ARRAY:
        /* A box is "(1,1),(0,0)": its commas are not delimiters. */
        *ret_kind = KIND_STRING;
        *ret_delim = ';';
        return true;
    case OID_XML_ARRAY:
    case OID_PG_TYPE_ARRAY:
    case OID_PG_ATTRIBUTE_ARRAY:
    case OID_XID8_ARRAY:
    case OID_PG_PROC_ARRAY:
    case OID_PG_CLASS_ARRAY:
    case OID_LINE_ARRAY:
    case OID_CIDR_ARRAY:
    case OID_CIRCLE_ARRAY:
    case OID_MACADDR8_ARRAY:
    case OID_MONEY_ARRAY:
    case OID_BYTEA_ARRAY:
    case OID_CHAR_ARRAY:
    case OID_NAME_ARRAY:
    case OID_INT2VECTOR_ARRAY:
    case OID_REGPROC_ARRAY:
    case OID_TEXT_ARRAY:
    case OID_TID_ARRAY:
    case OID_XID_ARRAY:
    case OID_CID_ARRAY:
    case OID_OIDVECTOR_ARRAY:
    case OID_BPCHAR_ARRAY:
    case OID_VARCHAR_ARRAY:
    case OID_POINT_ARRAY:
    case OID_LSEG_ARRAY:
    case OID_PATH_ARRAY:
    case OID_POLYGON_ARRAY:
    case OID_ACLITEM_ARRAY:
    case OID_MACADDR_ARRAY:
    case OID_INET_ARRAY:
    case OID_TIMESTAMP_ARRAY:
    case OID_DATE_ARRAY:
    case OID_TIME_ARRAY:
    case OID_TIMESTAMPTZ_ARRAY:
    case OID_INTERVAL_ARRAY:
    case OID_CSTRING_ARRAY:
    case OID_TIMETZ_ARRAY:
    case OID_BIT_ARRAY:
    case OID_VARBIT_ARRAY:
    case OID_REFCURSOR_ARRAY:
    case OID_REGPROCEDURE_ARRAY:
    case OID_REGOPER_ARRAY:
    case OID_REGOPERATOR_ARRAY:
    case OID_REGCLASS_ARRAY:
    case OID_REGTYPE_ARRAY:
    case OID_TXID_SNAPSHOT_ARRAY:
    case OID_UUID_ARRAY:
    case OID_PG_LSN_ARRAY:
    case OID_TSVECTOR_ARRAY:
    case OID_GTSVECTOR_ARRAY:
    case OID_TSQUERY_ARRAY:
    case OID_REGCONFIG_ARRAY:
    case OID_REGDICTIONARY_ARRAY:
    case OID_INT4RANGE_ARRAY:
    case OID_NUMRANGE_ARRAY:
    case OID_TSRANGE_ARRAY:
    case OID_TSTZRANGE_ARRAY:
    case OID_DATERANGE_ARRAY:
    case OID_INT8RANGE_ARRAY:
    case OID_JSONPATH_ARRAY:
    case OID_REGNAMESPACE_ARRAY:
    case OID_REGROLE_ARRAY:
    case OID_REGCOLLATION_ARRAY:
    case OID_PG_SNAPSHOT_ARRAY:
    case OID_RECORD_ARRAY:
    case OID_INT4MULTIRANGE_ARRAY:
    case OID_NUMMULTIRANGE_ARRAY:
    case OID_TSMULTIRANGE_ARRAY:
    case OID_TSTZMULTIRANGE_ARRAY:
    case OID_DATEMULTIRANGE_ARRAY:
    case OID_INT8MULTIRANGE_ARRAY:
        *ret_kind = KIND_STRING;
        return true;
    default:
        return false;
    }
}

/* The whitespace the server's array parser skips (array_isspace() in arrayfuncs.c). */
static bool is_array_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static const char *skip_array_space(const char *p, const char *end)
{
    while (p < end && is_array_space(*p))
        p++;
    return p;
}

/*
 * Skips the dimension decoration "[lo:hi][lo:hi]=" (or "[hi]=") that array_out() writes before
 * an array whose lower bounds are not 1, as array_in() reads it: whitespace may come around the
 * brackets and the '=', not inside the brackets. Returns where the '{' should be, or NULL.
 */
static const char *skip_dimensions(const char *p, const char *end)
{
    bool has_dims = false;

    for (;;) {
        const char *q;

        p = skip_array_space(p, end);
        if (p == end || *p != '[')
            break;
        for (int bound = 0; bound < 2; bound++) {
            for (q = ++p; q < end && (is_digit(*q) || *q == '-' || *q == '+');)
                q++;
            if (q == p || q == end)
                return NULL;
            p = q;
            if (*p != ':')
                break;
        }
        if (*p != ']')
            return NULL;
        p++;
        has_dims = true;
    }
    if (!has_dims)
        return p;
    if (p == end || *p != '=')
        return NULL;
    return skip_array_space(p + 1, end);
}

/*
 * Copies the element text [@s, @end) without its backslashes (each escapes the byte after it)
 * into @scratch, and returns the copy.
 */
static const char *unescape_element(gd_pgjson_buf_t *scratch, const char *s, const char *end)
{
    scratch->len = 0;
    reserve(scratch, (size_t)(end - s));
    for (; s < end; s++) {
        if (*s == '\\')
            s++; /* the element's scanner saw a byte after every backslash */
        scratch->base[scratch->len++] = *s;
    }
    return scratch->base;
}

/*
 * Writes the element of a @kind array that starts at @p, as the server's array parser reads it
 * (ReadArrayStr() in arrayfuncs.c): either quoted, "...", or unquoted up to the next unescaped
 * @delim or '}' with the whitespace around it dropped, and in both a backslash makes the byte
 * after it literal. Only an unquoted NULL (in any case, without backslashes) is SQL NULL.
 * Returns where the element ends, or NULL when it is malformed or not what @kind promises.
 */
static const char *write_element(gd_pgjson_buf_t *out, gd_pgjson_buf_t *scratch,
                                 enum value_kind kind, char delim, const char *p, const char *end)
{
    const char *start, *stop, *next;
    bool has_escape = false;

    if (*p == '"') {
        for (start = ++p; p < end && *p != '"'; p++) {
            if (*p == '\\') {
                has_escape = true;
                if (++p == end)
                    return NULL;
            }
        }
        if (p == end)
            return NULL;
        stop = p;
        next = p + 1;
    } else {
        /* The caller skipped the whitespace before it; @stop follows its last byte that is
         * not whitespace or is escaped. */
        for (start = stop = p; p < end && *p != delim && *p != '}'; p++) {
            bool is_escaped = false;

            if (*p == '{' || *p == '"')
                return NULL;
            if (*p == '\\') {
                has_escape = is_escaped = true;
                if (++p == end)
                    return NULL;
            }
            if (is_escaped || !is_array_space(*p))
                stop = p + 1;
        }
        if (p == end)
            return NULL;
        if (stop == start)
            return NULL; /* "{1,,2}": array_in() rejects empty unquoted elements */
        if (!has_escape && stop - start == 4 && strncasecmp(start, "NULL", 4) == 0) {
            append_lit(out, "null");
            return p;
        }
        next = p;
    }
    if (has_escape) {
        start = unescape_element(scratch, start, stop);
        stop = start + scratch->len;
    }
    return write_scalar(out, kind, start, (size_t)(stop - start)) ? next : NULL;
}

/*
 * Writes the PostgreSQL array text @s (@len bytes, as array_out() writes it) as a JSON array
 * of @kind elements, nested like the array's dimensions. Returns false when @s is malformed or
 * an element is not what @kind promises; what was written by then is for the caller to drop.
 * The syntax is checked, the shape is not: "{{1},{2,3}}" or "{{}}", which array_in() rejects
 * and no server sends, still become valid JSON ([[1],[2,3]] and [[]]).
 */
static bool write_array(gd_pgjson_buf_t *out, gd_pgjson_buf_t *scratch, enum value_kind kind,
                        char delim, const char *s, size_t len)
{
    enum { WANT_ITEM_OR_CLOSE, WANT_ITEM, WANT_DELIM_OR_CLOSE } state = WANT_ITEM_OR_CLOSE;
    const char *p = s, *end = s + len;
    size_t depth = 1;

    p = skip_dimensions(p, end);
    if (p == NULL || p == end || *p != '{')
        return false;
    append_char(out, '[');
    p++;
    while (depth > 0) {
        p = skip_array_space(p, end);
        if (p == end)
            return false;
        if (state == WANT_DELIM_OR_CLOSE) {
            if (*p == delim) {
                append_char(out, ',');
                state = WANT_ITEM;
            } else if (*p == '}') {
                append_char(out, ']');
                depth--;
            } else {
                return false;
            }
            p++;
        } else if (*p == '}' && state == WANT_ITEM_OR_CLOSE) {
            append_char(out, ']');
            depth--;
            p++;
            state = WANT_DELIM_OR_CLOSE;
        } else if (*p == '{') {
            append_char(out, '[');
            depth++;
            p++;
            state = WANT_ITEM_OR_CLOSE;
        } else {
            p = write_element(out, scratch, kind, delim, p, end);
            if (p == NULL)
                return false;
            state = WANT_DELIM_OR_CLOSE;
        }
    }
    return skip_array_space(p, end) == end;
}

/* How a column's values map: an array (of elements of @kind, separated by @delim) or a
 * scalar of @kind. */
struct value_map {
    bool is_array;
    enum value_kind kind;
    char delim;
};

static struct value_map map_of(Oid type)
{
    struct value_map m = {false, KIND_STRING, ','};

    m.is_array = array_kind(type, &m.kind, &m.delim);
    if (!m.is_array)
        m.kind = scalar_kind(type);
    return m;
}

/* Writes the value of column @col in row @row, mapped by @m. */
static void write_value(gd_pgjson_buf_t *out, const struct value_map *m, const PGresult *res,
                        int row, int col)
{
    size_t len = (size_t)PQgetlength(res, row, col);

    /* Only an empty text can be NULL (libpq gives NULL a length of 0): one library call less
     * for every other value. */
    if (len == 0 && PQgetisnull(res, row, col)) {
        append_lit(out, "null");
        return;
    }
    const char *s = PQgetvalue(res, row, col);
    if (m->is_array) {
        gd_pgjson_buf_t scratch = {NULL, 0, 0}; /* for elements with backslashes */
        size_t mark = out->len;
        bool ok = write_array(out, &scratch, m->kind, m->delim, s, len);

        free(scratch.base);
        if (ok)
            return;
        out->len = mark;
        write_string(out, s, len);
        return;
    }
    if (!write_scalar(out, m->kind, s, len))
        write_string(out, s, len);
}

void gd_pgjson_append_value(gd_pgjson_buf_t *out, const PGresult *res, int row, int col)
{
    assert(row >= 0 && row < PQntuples(res) && col >= 0 && col < PQnfields(res));
    assert(PQfformat(res, col) == 0);
    struct value_map m = map_of(PQftype(res, col));
    write_value(out, &m, res, row, col);
}

void gd_pgjson_append_row(gd_pgjson_buf_t *out, const PGresult *res, int row)
{
    int nfields = PQnfields(res);

    append_char(out, '{');
    for (int col = 0; col < nfields; col++) {
        const char *name = PQfname(res, col);

        if (col > 0)
            append_char(out, ',');
        write_string(out, name, strlen(name));
        append_char(out, ':');
        gd_pgjson_append_value(out, res, row, col);
    }
    append_char(out, '}');
}

struct column {
    Oid type;
    struct value_map map;
    size_t key_off, key_len; /* in keys: "{\"name\":" for the first column, ",\"name\":" after */
};

struct gd_pgjson_columns {
    size_t refs;
    int nfields;
    char *keys;
    char **names; /* as PQfname() gave them, to tell whether a result has these columns */
    struct column cols[];
};

gd_pgjson_columns_t *gd_pgjson_columns_new(const PGresult *res)
{
    int nfields = PQnfields(res);
    gd_pgjson_columns_t *c =
        gd_xcalloc(1, sizeof(*c) + (size_t)nfields * sizeof(struct column));
    gd_pgjson_buf_t keys = {NULL, 0, 0};

    c->refs = 1;
    c->nfields = nfields;
    c->names = gd_xcalloc((size_t)nfields + 1, sizeof(*c->names));
    for (int i = 0; i < nfields; i++) {
        struct column *col = &c->cols[i];
        const char *name = PQfname(res, i);

        c->names[i] = gd_xstrdup(name);
        col->type = PQftype(res, i);
        col->map = map_of(col->type);
        col->key_off = keys.len;
        append_char(&keys, i == 0 ? '{' : ',');
        write_string(&keys, name, strlen(name));
        append_char(&keys, ':');
        col->key_len = keys.len - col->key_off;
    }
    c->keys = keys.base;
    return c;
}

bool gd_pgjson_columns_match(const gd_pgjson_columns_t *c, const PGresult *res)
{
    if (PQnfields(res) != c->nfields)
        return false;
    for (int i = 0; i < c->nfields; i++)
        if (PQftype(res, i) != c->cols[i].type || strcmp(PQfname(res, i), c->names[i]) != 0)
            return false;
    return true;
}

gd_pgjson_columns_t *gd_pgjson_columns_ref(gd_pgjson_columns_t *c)
{
    c->refs++;
    return c;
}

gd_pgjson_columns_t *gd_pgjson_columns_unref(gd_pgjson_columns_t *c)
{
    if (c == NULL || --c->refs > 0)
        return NULL;
    for (int i = 0; i < c->nfields; i++)
        free(c->names[i]);
    free(c->names);
    free(c->keys);
    free(c);
    return NULL;
}

void gd_pgjson_append_row_as(gd_pgjson_buf_t *out, const gd_pgjson_columns_t *c,
                             const PGresult *res, int row)
{
    if (c->nfields == 0) {
        append_lit(out, "{}");
        return;
    }
    for (int i = 0; i < c->nfields; i++) {
        const struct column *col = &c->cols[i];
        append(out, c->keys + col->key_off, col->key_len);
        write_value(out, &col->map, res, row, i);
    }
    append_char(out, '}');
}

void gd_pgjson_append_raw(gd_pgjson_buf_t *out, const char *text, size_t len)
{
    append(out, text, len);
}

void gd_pgjson_append_rows(gd_pgjson_buf_t *out, const PGresult *res)
{
    int ntuples = PQntuples(res);
    gd_pgjson_columns_t *c = ntuples > 0 ? gd_pgjson_columns_new(res) : NULL;

    append_char(out, '[');
    for (int row = 0; row < ntuples; row++) {
        if (row > 0)
            append_char(out, ',');
        gd_pgjson_append_row_as(out, c, res, row);
    }
    append_char(out, ']');
    gd_pgjson_columns_unref(c);
}
