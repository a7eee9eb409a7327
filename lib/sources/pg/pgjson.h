/*
 * gd_pgjson: a PGresult (text format) as JSON text, written directly: column types map to JSON
 * the natural way, and numeric keeps exactly the server's digits (never rounded through a
 * double). The mapping, by column type:
 *   int2 int4 int8 oid                      -> number (the server's text)
 *   float4 float8                           -> number; NaN, Infinity, -Infinity -> null
 *   numeric                                 -> number with the server's digits; NaN, +-Infinity ->
 * null bool                                    -> true / false json jsonb -> the document as is
 *   arrays of any of the above (any depth)  -> JSON arrays of the mapped elements
 *   arrays of other types                   -> JSON arrays of strings
 *   NULL (and NULL array elements)          -> null
 *   everything else (text, timestamps, uuid, bytea's text form, ...) -> string
 */
#ifndef GD_PGJSON_H
#define GD_PGJSON_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* A growable output buffer: heap memory owned by whoever holds it (free(buf.base)). */
typedef struct gd_pgjson_buf {
    char *base;
    size_t len, cap;
} gd_pgjson_buf_t;

/**
 * Appends row @row of @res (PGRES_TUPLES_OK or PGRES_SINGLE_TUPLE, text format) as a JSON
 * object {"column": value, ...}, columns in result order, to @out.
 */
void gd_pgjson_append_row(gd_pgjson_buf_t *out, const PGresult *res, int row);
/*
 * What rendering rows of one shape takes, computed once (per statement: a pool keeps one per
 * statement and checks it against each result): every column's key already quoted, with its
 * separator ("{\"id\":", ",\"name\":"), and how its values map. Reference-counted.
 */
typedef struct gd_pgjson_columns gd_pgjson_columns_t;

/** The columns of @res (one reference). */
gd_pgjson_columns_t *gd_pgjson_columns_new(const PGresult *res);
/** Whether @res has exactly these columns: the same names and types, in the same order. */
bool gd_pgjson_columns_match(const gd_pgjson_columns_t *cols, const PGresult *res);
/** Takes a reference to @cols; returns @cols. */
gd_pgjson_columns_t *gd_pgjson_columns_ref(gd_pgjson_columns_t *cols);
/** Drops a reference (NULL is a no-op), freeing @cols with the last. Returns NULL. */
gd_pgjson_columns_t *gd_pgjson_columns_unref(gd_pgjson_columns_t *cols);
/** gd_pgjson_append_row() for a result that @cols matches. */
void gd_pgjson_append_row_as(gd_pgjson_buf_t *out, const gd_pgjson_columns_t *cols,
                             const PGresult *res, int row);

/** Appends @len bytes of @text as they are (the brackets and commas of rows rendered one by one).
 */
void gd_pgjson_append_raw(gd_pgjson_buf_t *out, const char *text, size_t len);
/** Appends every row of @res as a JSON array of row objects ("[]" when it has none). */
void gd_pgjson_append_rows(gd_pgjson_buf_t *out, const PGresult *res);
/**
 * Appends the value of column @col in row @row as JSON (see the mapping above). A value that
 * is not what its type promises (which a server never sends) is written as a JSON string.
 */
void gd_pgjson_append_value(gd_pgjson_buf_t *out, const PGresult *res, int row, int col);

#endif
