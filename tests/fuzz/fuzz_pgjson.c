/* libFuzzer driver: SQL rows to JSON. The input makes a result: the first byte the number of
 * columns (1 to 4), one byte per column choosing its type (numbers, bool, json, text, arrays,
 * box[] with its ';' delimiter), then the values, NUL-separated, row after row (a value that is
 * the single byte 0xff is SQL NULL). Whatever the server's text, the rows render as valid JSON,
 * the same bytes through a statement's cached columns as without. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "base/util.h"
#include "json/json.h"
#include "sources/pg/pgjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const Oid types[] = {
    16,   /* bool */ 20,   /* int8 */ 21,   /* int2 */ 23,   /* int4 */ 26,  /* oid */
    114,  /* json */ 700,  /* float4 */ 701, /* float8 */ 1700, /* numeric */ 3802, /* jsonb */
    25,   /* text */ 1043, /* varchar */ 1114, /* timestamp */ 2950, /* uuid */
    1000, /* bool[] */ 1005, /* int2[] */ 1007, /* int4[] */ 1016, /* int8[] */
    1021, /* float4[] */ 1022, /* float8[] */ 1231, /* numeric[] */ 199, /* json[] */
    3807, /* jsonb[] */ 1009, /* text[] */ 1020, /* box[] */ 1115, /* timestamp[] */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"id", "na\"me", "\xc3\xa9", "tags"};
    PGresAttDesc attrs[4];

    if (size < 2)
        return 0;
    int ncols = 1 + data[0] % 4;
    if (size < (size_t)(1 + ncols))
        return 0;
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    GD_REQUIRE(res != NULL);
    for (int c = 0; c < ncols; c++)
        attrs[c] = (PGresAttDesc){.name = (char *)names[c],
                                  .typid = types[data[1 + c] % GD_ARRAY_SIZE(types)],
                                  .typlen = -1,
                                  .atttypmod = -1};
    GD_REQUIRE(PQsetResultAttrs(res, ncols, attrs));
    const char *p = (const char *)data + 1 + ncols, *end = (const char *)data + size;
    for (int i = 0; p < end && i < 64; i++) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        size_t len = nul != NULL ? (size_t)(nul - p) : (size_t)(end - p);
        bool is_null = len == 1 && (unsigned char)p[0] == 0xff;
        GD_REQUIRE(PQsetvalue(res, i / ncols, i % ncols, is_null ? NULL : (char *)p,
                              is_null ? -1 : (int)len));
        p += len + 1;
    }

    gd_pgjson_buf_t rows = {NULL, 0, 0}, one = {NULL, 0, 0};
    gd_pgjson_append_rows(&rows, res);
    GD_REQUIRE(gd_json_is_valid(rows.base, rows.len));
    /* The cached columns against the row-by-row rendering. */
    gd_pgjson_columns_t *cols = PQntuples(res) > 0 ? gd_pgjson_columns_new(res) : NULL;
    for (int r = 0; r < PQntuples(res); r++) {
        gd_pgjson_buf_t a = {NULL, 0, 0};
        one.len = 0;
        gd_pgjson_append_row(&one, res, r);
        gd_pgjson_append_row_as(&a, cols, res, r);
        GD_REQUIRE(a.len == one.len && memcmp(a.base, one.base, a.len) == 0);
        free(a.base);
    }
    gd_pgjson_columns_unref(cols);
    free(rows.base);
    free(one.base);
    PQclear(res);
    return 0;
}
