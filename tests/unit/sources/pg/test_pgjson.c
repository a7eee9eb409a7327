#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "sources/pg/pgjson.h"
#include "runner.h"

/* Type OIDs of the columns these tests describe (pg_type.oid, fixed for built-in types). */
enum {
    T_BOOL = 16,
    T_BYTEA = 17,
    T_INT8 = 20,
    T_INT2 = 21,
    T_INT2VECTOR = 22,
    T_INT4 = 23,
    T_TEXT = 25,
    T_OID = 26,
    T_JSON = 114,
    T_FLOAT4 = 700,
    T_FLOAT8 = 701,
    T_TIMESTAMPTZ = 1184,
    T_NUMERIC = 1700,
    T_UUID = 2950,
    T_JSONB = 3802,
    T_BOOL_ARRAY = 1000,
    T_INT2_ARRAY = 1005,
    T_INT4_ARRAY = 1007,
    T_TEXT_ARRAY = 1009,
    T_VARCHAR_ARRAY = 1015,
    T_INT8_ARRAY = 1016,
    T_POINT_ARRAY = 1017,
    T_BOX_ARRAY = 1020,
    T_FLOAT4_ARRAY = 1021,
    T_FLOAT8_ARRAY = 1022,
    T_OID_ARRAY = 1028,
    T_NUMERIC_ARRAY = 1231,
    T_JSON_ARRAY = 199,
    T_JSONB_ARRAY = 3807,
    T_USER_DEFINED = 16385, /* e.g. an enum's array: its OID is assigned when it is created */
};

/* A 1x1 result of column "v" of type @type holding @len bytes at @value (NULL: SQL NULL). */
static PGresult *one_value(Oid type, const char *value, int len)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attr = {.name = (char *)"v", .typid = type, .typlen = -1, .atttypmod = -1};

    CHECK(res != NULL);
    CHECK(PQsetResultAttrs(res, 1, &attr));
    CHECK(PQsetvalue(res, 0, 0, (char *)value, value ? len : -1));
    return res;
}

/* The JSON of @len bytes at @value as a column of @type, in a static buffer. */
static const char *json_of_len(Oid type, const char *value, int len)
{
    static char text[1 << 16];
    PGresult *res = one_value(type, value, len);
    gd_pgjson_buf_t out = {NULL, 0, 0};

    gd_pgjson_append_value(&out, res, 0, 0);
    PQclear(res);
    CHECK(out.len < sizeof(text));
    memcpy(text, out.base, out.len);
    text[out.len] = '\0';
    free(out.base);
    return text;
}

/* The JSON of the text @value (NULL: SQL NULL) as a column of @type, in a static buffer. */
static const char *json_of(Oid type, const char *value)
{
    return json_of_len(type, value, value ? (int)strlen(value) : -1);
}

/* @s as a JSON string, for inputs without control bytes, in a static buffer. */
static const char *quoted(const char *s)
{
    static char text[1024];
    size_t n = 0;

    text[n++] = '"';
    for (; *s != '\0'; s++) {
        CHECK(n + 3 < sizeof(text));
        if (*s == '"' || *s == '\\')
            text[n++] = '\\';
        text[n++] = *s;
    }
    text[n++] = '"';
    text[n] = '\0';
    return text;
}

static void test_bool(void)
{
    CHECK_STR_EQ(json_of(T_BOOL, "t"), "true");
    CHECK_STR_EQ(json_of(T_BOOL, "f"), "false");
    CHECK_STR_EQ(json_of(T_BOOL, NULL), "null");
    /* Not what a bool promises: a string. */
    CHECK_STR_EQ(json_of(T_BOOL, "true"), "\"true\"");
    CHECK_STR_EQ(json_of(T_BOOL, ""), "\"\"");
}

static void test_integers_copied(void)
{
    CHECK_STR_EQ(json_of(T_INT2, "-32768"), "-32768");
    CHECK_STR_EQ(json_of(T_INT4, "0"), "0");
    CHECK_STR_EQ(json_of(T_INT4, "2147483647"), "2147483647");
    CHECK_STR_EQ(json_of(T_INT8, "9223372036854775807"), "9223372036854775807");
    CHECK_STR_EQ(json_of(T_INT8, "-9223372036854775808"), "-9223372036854775808");
    CHECK_STR_EQ(json_of(T_OID, "4294967295"), "4294967295");
    CHECK_STR_EQ(json_of(T_INT4, NULL), "null");
    /* Not JSON integers: strings. */
    CHECK_STR_EQ(json_of(T_INT4, "007"), "\"007\"");
    CHECK_STR_EQ(json_of(T_INT4, "1.5"), "\"1.5\"");
    CHECK_STR_EQ(json_of(T_INT4, "+1"), "\"+1\"");
    CHECK_STR_EQ(json_of(T_INT4, "-"), "\"-\"");
    CHECK_STR_EQ(json_of(T_INT4, "1 "), "\"1 \"");
    CHECK_STR_EQ(json_of(T_INT8, "NaN"), "\"NaN\"");
    CHECK_STR_EQ(json_of(T_INT2, ""), "\"\"");
}

static void test_floats(void)
{
    CHECK_STR_EQ(json_of(T_FLOAT4, "1.5"), "1.5");
    CHECK_STR_EQ(json_of(T_FLOAT8, "1e+300"), "1e+300");
    CHECK_STR_EQ(json_of(T_FLOAT8, "1.5e-07"), "1.5e-07");
    CHECK_STR_EQ(json_of(T_FLOAT8, "-0"), "-0");
    CHECK_STR_EQ(json_of(T_FLOAT8, "2.2250738585072014e-308"), "2.2250738585072014e-308");
    CHECK_STR_EQ(json_of(T_FLOAT8, "1E5"), "1E5");
    /* JSON has no NaN or infinities. */
    CHECK_STR_EQ(json_of(T_FLOAT4, "NaN"), "null");
    CHECK_STR_EQ(json_of(T_FLOAT4, "Infinity"), "null");
    CHECK_STR_EQ(json_of(T_FLOAT8, "-Infinity"), "null");
    CHECK_STR_EQ(json_of(T_FLOAT8, NULL), "null");
    /* Not JSON numbers: strings. */
    CHECK_STR_EQ(json_of(T_FLOAT8, "inf"), "\"inf\"");
    CHECK_STR_EQ(json_of(T_FLOAT8, "nan"), "\"nan\"");
    CHECK_STR_EQ(json_of(T_FLOAT8, "1."), "\"1.\"");
    CHECK_STR_EQ(json_of(T_FLOAT8, ".5"), "\".5\"");
    CHECK_STR_EQ(json_of(T_FLOAT8, "1e"), "\"1e\"");
    CHECK_STR_EQ(json_of(T_FLOAT8, "1e+"), "\"1e+\"");
    CHECK_STR_EQ(json_of(T_FLOAT8, "01.5"), "\"01.5\"");
    CHECK_STR_EQ(json_of(T_FLOAT8, "0x10"), "\"0x10\"");
}

static void test_numeric_keeps_the_servers_digits(void)
{
    static char digits[1200];

    CHECK_STR_EQ(json_of(T_NUMERIC, "12345678901234567890.123"), "12345678901234567890.123");
    CHECK_STR_EQ(json_of(T_NUMERIC, "12.50"), "12.50");
    CHECK_STR_EQ(json_of(T_NUMERIC, "-0.000000000000000000001"), "-0.000000000000000000001");
    CHECK_STR_EQ(json_of(T_NUMERIC, "NaN"), "null");
    CHECK_STR_EQ(json_of(T_NUMERIC, "Infinity"), "null");
    CHECK_STR_EQ(json_of(T_NUMERIC, "-Infinity"), "null");
    CHECK_STR_EQ(json_of(T_NUMERIC, NULL), "null");
    CHECK_STR_EQ(json_of(T_NUMERIC, "1,5"), "\"1,5\"");

    /* 1e1000 the way numeric prints it: far past any double. */
    digits[0] = '1';
    memset(digits + 1, '0', 1000);
    memcpy(digits + 1001, ".0001", 6);
    CHECK_STR_EQ(json_of(T_NUMERIC, digits), digits);
}

static void test_json_copied_as_is(void)
{
    static const char *const docs[] = {
        "{\"a\": [1, 2.5e3, null, true, false], \"b\\\"\": \"\xc3\xa9\\u0001\"}",
        "{\"a\":{\"b\":{}},\"c\":[[],[{}]]}",
        "  [ ]  ",
        "\n{\t\"k\" :\r\n\"v\" }\n",
        "\"\\ud83d\\ude00 \\/ \\b\\f\\n\\r\\t\\\\\"",
        "\"\\ud800\"", /* RFC 8259 section 8.2: unpaired, still JSON */
        "null",
        "true",
        "-0.5E-3",
        "0",
        "[]",
        "{}",
    };

    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        CHECK_STR_EQ(json_of(T_JSON, docs[i]), docs[i]);
        CHECK_STR_EQ(json_of(T_JSONB, docs[i]), docs[i]);
    }
    CHECK_STR_EQ(json_of(T_JSONB, NULL), "null");
}

static void test_invalid_json_becomes_a_string(void)
{
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "}",
        "[1,]",
        "[1 2]",
        "{\"a\"}",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{1:2}",
        "{,}",
        "[,]",
        "01",
        "1.",
        "-",
        "+1",
        ".5",
        "tru",
        "nul",
        "True",
        "NaN",
        "[1]]",
        "[1] x",
        "1 2",
        "\"abc",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "'a'",
        "[\"a\"",
        "{\"a\":}",
        "{\"a\":1 \"b\":2}",
        "[true false]",
        "\"\\\"",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_STR_EQ(json_of(T_JSON, bad[i]), quoted(bad[i]));
        CHECK_STR_EQ(json_of(T_JSONB, bad[i]), quoted(bad[i]));
    }
    /* A raw control byte inside a JSON string is not JSON (RFC 8259 section 7). */
    CHECK_STR_EQ(json_of(T_JSON, "\"a\tb\""), "\"\\\"a\\tb\\\"\"");
    CHECK_STR_EQ(json_of_len(T_JSON, "\"\0\"", 3), "\"\\\"\\u0000\\\"\"");
    CHECK_STR_EQ(json_of_len(T_JSON, "\"\\\0\"", 4), "\"\\\"\\\\\\u0000\\\"\"");
    /* Cut off inside an escape, and after a key. */
    CHECK_STR_EQ(json_of(T_JSON, "\"a\\"), "\"\\\"a\\\\\"");
    CHECK_STR_EQ(json_of(T_JSON, "{\"a\""), "\"{\\\"a\\\"\"");
}

static void test_deeply_nested_json(void)
{
    enum { DEPTH = 10000 };
    char *doc = malloc(2 * DEPTH + 1);
    PGresult *res;
    gd_pgjson_buf_t out = {NULL, 0, 0};

    CHECK(doc != NULL);
    for (int i = 0; i < DEPTH; i++) {
        doc[i] = '[';
        doc[2 * DEPTH - 1 - i] = ']';
    }
    doc[2 * DEPTH] = '\0';
    res = one_value(T_JSONB, doc, 2 * DEPTH);
    gd_pgjson_append_value(&out, res, 0, 0);
    CHECK_MEM_EQ(out.base, out.len, doc);
    PQclear(res);

    /* The same, one bracket short: a string. */
    out.len = 0;
    res = one_value(T_JSONB, doc, 2 * DEPTH - 1);
    gd_pgjson_append_value(&out, res, 0, 0);
    CHECK_INT_EQ(out.len, 2 * DEPTH - 1 + 2);
    CHECK(out.base[0] == '"' && out.base[out.len - 1] == '"');
    PQclear(res);

    /* Objects nested as deep, keys included. */
    out.len = 0;
    {
        size_t n = 0;
        char *obj = malloc(7 * DEPTH + 2);
        CHECK(obj != NULL);
        for (int i = 0; i < DEPTH; i++) {
            memcpy(obj + n, "{\"k\":", 5);
            n += 5;
        }
        obj[n++] = '1';
        memset(obj + n, '}', DEPTH);
        n += DEPTH;
        obj[n] = '\0';
        res = one_value(T_JSON, obj, (int)n);
        gd_pgjson_append_value(&out, res, 0, 0);
        CHECK_MEM_EQ(out.base, out.len, obj);
        PQclear(res);
        free(obj);
    }
    free(out.base);
    free(doc);
}

static void test_string_escaping(void)
{
    char all[0x20];
    gd_pgjson_buf_t out = {NULL, 0, 0};
    PGresult *res;

    CHECK_STR_EQ(json_of(T_TEXT, "hello \"world\""), "\"hello \\\"world\\\"\"");
    CHECK_STR_EQ(json_of(T_TEXT, "back\\slash / solidus"), "\"back\\\\slash / solidus\"");
    CHECK_STR_EQ(json_of(T_TEXT, "\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\"");
    CHECK_STR_EQ(json_of(T_TEXT, "\x01\x1f\x7f"), "\"\\u0001\\u001f\x7f\"");
    /* UTF-8 (the connection's client_encoding) is copied as it is. */
    CHECK_STR_EQ(json_of(T_TEXT, "\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x80\xa8"),
                 "\"\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x80\xa8\"");
    CHECK_STR_EQ(json_of(T_TEXT, ""), "\"\"");
    CHECK_STR_EQ(json_of(T_TEXT, NULL), "null");

    for (int i = 0; i < 0x20; i++)
        all[i] = (char)i;
    res = one_value(T_TEXT, all, (int)sizeof(all));
    gd_pgjson_append_value(&out, res, 0, 0);
    CHECK_MEM_EQ(out.base, out.len,
                 "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r"
                 "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
                 "\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\"");
    PQclear(res);
    free(out.base);
}

static void test_long_string(void)
{
    enum { N = 300000 };
    char *s = malloc(N + 1), *want = malloc(2 * N + 3);
    gd_pgjson_buf_t out = {NULL, 0, 0};
    PGresult *res;
    size_t n = 0;

    CHECK(s != NULL && want != NULL);
    want[n++] = '"';
    for (int i = 0; i < N; i++) {
        s[i] = i % 3 == 0 ? '"' : 'x';
        if (s[i] == '"')
            want[n++] = '\\';
        want[n++] = s[i];
    }
    s[N] = '\0';
    want[n++] = '"';
    want[n] = '\0';
    res = one_value(T_TEXT, s, N);
    gd_pgjson_append_value(&out, res, 0, 0);
    CHECK_MEM_EQ(out.base, out.len, want);
    CHECK(out.cap >= out.len);
    PQclear(res);
    free(out.base);
    free(want);
    free(s);
}

static void test_other_types_are_strings(void)
{
    CHECK_STR_EQ(json_of(T_TIMESTAMPTZ, "2024-01-01 10:00:00+00"), "\"2024-01-01 10:00:00+00\"");
    CHECK_STR_EQ(json_of(T_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                 "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
    CHECK_STR_EQ(json_of(T_BYTEA, "\\x00ff"), "\"\\\\x00ff\"");
    CHECK_STR_EQ(json_of(T_TEXT, "{1,2}"), "\"{1,2}\"");
    CHECK_STR_EQ(json_of(T_TEXT, "12"), "\"12\"");
    CHECK_STR_EQ(json_of(T_TEXT, "t"), "\"t\"");
    /* int2vector and oidvector print "1 2 3", not array syntax. */
    CHECK_STR_EQ(json_of(T_INT2VECTOR, "1 2 3"), "\"1 2 3\"");
    /* An array of a type created at run time cannot be recognised by its OID. */
    CHECK_STR_EQ(json_of(T_USER_DEFINED, "{red,green}"), "\"{red,green}\"");
    CHECK_STR_EQ(json_of(T_USER_DEFINED, NULL), "null");
}

static void test_arrays_of_numbers_and_bools(void)
{
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "{1,2,NULL}"), "[1,2,null]");
    CHECK_STR_EQ(json_of(T_INT2_ARRAY, "{-32768,32767}"), "[-32768,32767]");
    CHECK_STR_EQ(json_of(T_INT8_ARRAY, "{9223372036854775807}"), "[9223372036854775807]");
    CHECK_STR_EQ(json_of(T_OID_ARRAY, "{0,4294967295}"), "[0,4294967295]");
    CHECK_STR_EQ(json_of(T_FLOAT8_ARRAY, "{NaN,Infinity,-Infinity,1e+300,1.5e-07,-0,NULL}"),
                 "[null,null,null,1e+300,1.5e-07,-0,null]");
    CHECK_STR_EQ(json_of(T_FLOAT4_ARRAY, "{NaN,1.25}"), "[null,1.25]");
    CHECK_STR_EQ(
        json_of(T_NUMERIC_ARRAY, "{NaN,Infinity,-Infinity,12345678901234567890.123,12.50}"),
        "[null,null,null,12345678901234567890.123,12.50]");
    CHECK_STR_EQ(json_of(T_BOOL_ARRAY, "{t,f,NULL}"), "[true,false,null]");
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, NULL), "null");
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "{}"), "[]");
    CHECK_STR_EQ(json_of(T_BOOL_ARRAY, "{}"), "[]");
    /* array_in() reads NULL in any case; the server writes it in capitals. */
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "{null,Null}"), "[null,null]");
    /* Quoting is allowed around any element. */
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "{\"1\",\"2\"}"), "[1,2]");
}

static void test_json_arrays(void)
{
    /* As json_out() and jsonb_out() write them: a JSON null is the quoted "null". */
    CHECK_STR_EQ(json_of(T_JSONB_ARRAY,
                         "{1,\"{\\\"a\\\": \\\"b\\\\\\\"c\\\"}\",\"null\",\"\\\"s\\\"\",NULL}"),
                 "[1,{\"a\": \"b\\\"c\"},null,\"s\",null]");
    CHECK_STR_EQ(json_of(T_JSON_ARRAY, "{\"[1, 2]\",\"{}\"}"), "[[1, 2],{}]");
    /* An element that is no JSON makes the whole value a string. */
    CHECK_STR_EQ(json_of(T_JSON_ARRAY, "{\"[1, 2\"}"), "\"{\\\"[1, 2\\\"}\"");
    CHECK_STR_EQ(json_of(T_JSON_ARRAY, "{\"NULL\"}"), "\"{\\\"NULL\\\"}\"");
}

static void test_text_array_quoting(void)
{
    /* As array_out() writes them: quoted when special, backslash escapes inside quotes. */
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{\"a b\",\"x\\\"y\",NULL,\"NULL\",\"null\",\"\","
                                       "\"back\\\\slash\",\"c,d\",\"{x}\",\xc3\xa9,plain}"),
                 "[\"a b\",\"x\\\"y\",null,\"NULL\",\"null\",\"\",\"back\\\\slash\",\"c,d\","
                 "\"{x}\",\"\xc3\xa9\",\"plain\"]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{\"tab\there\n\",\"\x01\"}"),
                 "[\"tab\\there\\n\",\"\\u0001\"]");
    /* What array_in() accepts: escapes outside quotes, whitespace around unquoted elements
     * dropped unless escaped, inner whitespace kept. */
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{a\\,b,a\\\"b}"), "[\"a,b\",\"a\\\"b\"]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{  a b  , c\t}"), "[\"a b\",\"c\"]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{\v\f\r\na\v\f\r\n}"), "[\"a\"]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{ a\\  , \"b\" ,NULL , \\NULL}"),
                 "[\"a \",\"b\",null,\"NULL\"]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{a\\\\ }"), "[\"a\\\\\"]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{NULLx,xNULL}"), "[\"NULLx\",\"xNULL\"]");
    CHECK_STR_EQ(json_of(T_VARCHAR_ARRAY, "{a,\"b c\"}"), "[\"a\",\"b c\"]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{\"\"}"), "[\"\"]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{ }"), "[]");
}

static void test_multidimensional_arrays(void)
{
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "{{1,2},{3,4}}"), "[[1,2],[3,4]]");
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "{{{1}},{{NULL}}}"), "[[[1]],[[null]]]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{{\"a\\\\b\",NULL},{\"NULL\",\"}\"}}"),
                 "[[\"a\\\\b\",null],[\"NULL\",\"}\"]]");
    CHECK_STR_EQ(json_of(T_BOOL_ARRAY, "{{t,f},{NULL,t}}"), "[[true,false],[null,true]]");
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, " { { 1 , 2 } , { 3 , 4 } } "), "[[1,2],[3,4]]");
}

static void test_dimension_decorations_skipped(void)
{
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "[0:2]={1,2,3}"), "[1,2,3]");
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "[0:1][1:2]={{1,2},{3,4}}"), "[[1,2],[3,4]]");
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "[-5:-4]={NULL,7}"), "[null,7]");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "[2:2]={\"[x]\"}"), "[\"[x]\"]");
    /* array_in() also reads "[n]" (lower bound 1) and whitespace between the parts. */
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "[2]={1,2}"), "[1,2]");
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, " [1:1] [+1:+2]= {{1,2}}"), "[[1,2]]");
    CHECK_STR_EQ(json_of(T_INT4_ARRAY, "[0:1] ={1,2} "), "[1,2]");
}

static void test_box_array_uses_semicolons(void)
{
    CHECK_STR_EQ(json_of(T_BOX_ARRAY, "{(1,1),(0,0);(2,2),(1,1);NULL}"),
                 "[\"(1,1),(0,0)\",\"(2,2),(1,1)\",null]");
    CHECK_STR_EQ(json_of(T_POINT_ARRAY, "{\"(1,2)\",NULL}"), "[\"(1,2)\",null]");
}

/* Every array type the module knows, by the mapping of its element type. */
static void test_every_known_array_type(void)
{
    static const Oid ints[] = {1005, 1007, 1016, 1028};
    static const Oid floats[] = {1021, 1022, 1231};
    static const Oid strings[] = {
        143,  210,  270,  271,  272,  273,  629,  651,  719,  775,  791,  1001, 1002, 1003, 1006,
        1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015, 1017, 1018, 1019, 1027, 1034, 1040, 1041,
        1115, 1182, 1183, 1185, 1187, 1263, 1270, 1561, 1563, 2201, 2207, 2208, 2209, 2210, 2211,
        2287, 2949, 2951, 3221, 3643, 3644, 3645, 3735, 3770, 3905, 3907, 3909, 3911, 3913, 3927,
        4073, 4090, 4097, 4192, 5039, 6150, 6151, 6152, 6153, 6155, 6157,
    };

    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        CHECK_STR_EQ(json_of(ints[i], "{{1,NULL}}"), "[[1,null]]");
    for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); i++)
        CHECK_STR_EQ(json_of(floats[i], "{1.5,NaN,NULL}"), "[1.5,null,null]");
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        CHECK_STR_EQ(json_of(strings[i], "{{1,\"a b\"},{NULL,\"NULL\"}}"),
                     "[[\"1\",\"a b\"],[null,\"NULL\"]]");
    CHECK_STR_EQ(json_of(1000, "{t,NULL}"), "[true,null]");
    CHECK_STR_EQ(json_of(199, "{1,NULL}"), "[1,null]");
    CHECK_STR_EQ(json_of(3807, "{1,NULL}"), "[1,null]");
    CHECK_STR_EQ(json_of(1020, "{1;NULL}"), "[\"1\",null]");
}

static void test_malformed_arrays_become_strings(void)
{
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "}",
        "{1,2",
        "{1,,2}",
        "{,}",
        "{,1}",
        "{1,}",
        "{1}x",
        "{1}}",
        "x{1}",
        "{{1,2}",
        "{{1},",
        "{\"1}",
        "{\"1\\",
        "{1\\",
        "{1\\}",
        "{\"a\"b}",
        "{a\"b\"}",
        "{a{b}}",
        "{1 2}",
        "{\"1\" 2}",
        "{1;2}",
        "[0:1]{1,2}",
        "[0:1={1,2}",
        "[]={1}",
        "[:1]={1}",
        "[0:1]=",
        "[0:1]={1,2}x",
        "[0:1:2]={1}",
        "[0:1",
        "[",
        "=",
        "{{}",
        "{}{}",
        "{abc}",
        "{1.5}",
        "{NaN}",
        "{\"NULL\"}",
        "{\"\"}",
        "{-}",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_STR_EQ(json_of(T_INT4_ARRAY, bad[i]), quoted(bad[i]));
    CHECK_STR_EQ(json_of(T_BOOL_ARRAY, "{t,x}"), "\"{t,x}\"");
    CHECK_STR_EQ(json_of(T_BOOL_ARRAY, "{true}"), "\"{true}\"");
    CHECK_STR_EQ(json_of(T_FLOAT8_ARRAY, "{1,inf}"), "\"{1,inf}\"");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{a,}"), "\"{a,}\"");
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, "{\"a\n"), "\"{\\\"a\\n\"");
    /* A NUL byte is never part of a value, but must not end the scan early either. */
    CHECK_STR_EQ(json_of_len(T_INT4_ARRAY, "{1}\0", 4), "\"{1}\\u0000\"");
    CHECK_STR_EQ(json_of_len(T_TEXT_ARRAY, "{a\0}", 4), "[\"a\\u0000\"]");
}

/* Every strict prefix of a valid array is malformed and comes out as a string, without reading
 * past its end (the sanitizer builds and valgrind watch that). */
static void test_truncated_arrays_become_strings(void)
{
    static const char *const whole[] = {
        "[0:1][1:2]={{\"a\\\"b\",NULL},{c\\,d,\"e f\"}}",
        "{\"{\\\"k\\\": [1, \\\"}\\\"]}\",NULL,\"null\"}",
    };
    static const Oid types[] = {T_TEXT_ARRAY, T_JSONB_ARRAY};

    for (size_t w = 0; w < sizeof(whole) / sizeof(whole[0]); w++) {
        size_t len = strlen(whole[w]);
        for (size_t n = 0; n < len; n++) {
            char prefix[128];
            char *copy = malloc(n + 1); /* exactly n bytes of value, then the terminator */

            CHECK(n < sizeof(prefix) && copy != NULL);
            memcpy(prefix, whole[w], n);
            prefix[n] = '\0';
            memcpy(copy, whole[w], n);
            copy[n] = '\0';
            CHECK_STR_EQ(json_of_len(types[w], copy, (int)n), quoted(prefix));
            free(copy);
        }
    }
    CHECK_STR_EQ(json_of(T_TEXT_ARRAY, whole[0]), "[[\"a\\\"b\",null],[\"c,d\",\"e f\"]]");
    CHECK_STR_EQ(json_of(T_JSONB_ARRAY, whole[1]), "[{\"k\": [1, \"}\"]},null,null]");
}

/* A result of @ncols columns named and typed by @names and @types, and @nrows rows of @values
 * (row-major, NULL: SQL NULL). */
static PGresult *table(int ncols, const char *const *names, const Oid *types, int nrows,
                       const char *const *values)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[8];

    CHECK(res != NULL && ncols <= 8);
    for (int c = 0; c < ncols; c++)
        attrs[c] = (PGresAttDesc){
            .name = (char *)names[c], .typid = types[c], .typlen = -1, .atttypmod = -1};
    CHECK(PQsetResultAttrs(res, ncols, attrs));
    for (int r = 0; r < nrows; r++) {
        for (int c = 0; c < ncols; c++) {
            const char *v = values[r * ncols + c];
            CHECK(PQsetvalue(res, r, c, (char *)v, v ? (int)strlen(v) : -1));
        }
    }
    return res;
}

static void test_rows_in_column_order(void)
{
    static const char *const names[] = {"id", "name", "tags", "meta"};
    static const Oid types[] = {T_INT4, T_TEXT, T_TEXT_ARRAY, T_JSONB};
    static const char *const values[] = {
        "1",
        "Ada",
        "{math,\"first programmer\"}",
        "{\"born\": 1815}",
        "2",
        NULL,
        "{}",
        NULL,
        "3",
        "B\"ob",
        NULL,
        "[]",
    };
    PGresult *res = table(4, names, types, 3, values);
    gd_pgjson_buf_t out = {NULL, 0, 0};

    gd_pgjson_append_rows(&out, res);
    CHECK_MEM_EQ(out.base, out.len,
                 "[{\"id\":1,\"name\":\"Ada\",\"tags\":[\"math\",\"first programmer\"],"
                 "\"meta\":{\"born\": 1815}},"
                 "{\"id\":2,\"name\":null,\"tags\":[],\"meta\":null},"
                 "{\"id\":3,\"name\":\"B\\\"ob\",\"tags\":null,\"meta\":[]}]");

    out.len = 0;
    gd_pgjson_append_row(&out, res, 1);
    CHECK_MEM_EQ(out.base, out.len, "{\"id\":2,\"name\":null,\"tags\":[],\"meta\":null}");
    PQclear(res);
    free(out.base);
}

static void test_column_names_escaped(void)
{
    static const char *const names[] = {"col \"q\"", "a\\b\n", "\xc3\xa9", "?column?"};
    static const Oid types[] = {T_INT4, T_BOOL, T_TEXT, T_INT4};
    static const char *const values[] = {"1", "t", "x", NULL};
    PGresult *res = table(4, names, types, 1, values);
    gd_pgjson_buf_t out = {NULL, 0, 0};

    gd_pgjson_append_row(&out, res, 0);
    CHECK_MEM_EQ(out.base, out.len,
                 "{\"col \\\"q\\\"\":1,\"a\\\\b\\n\":true,\"\xc3\xa9\":\"x\",\"?column?\":null}");
    PQclear(res);
    free(out.base);
}

/* A pool renders every row of a statement with the columns of its first result, checked
 * against each later result: the same bytes as gd_pgjson_append_row(). */
static void test_columns_reused(void)
{
    static const char *const names[] = {"col \"q\"", "a\\b\n", "\xc3\xa9", "tags"};
    static const char *const other_names[] = {"col \"q\"", "a\\b\n", "\xc3\xa9", "tag"};
    static const Oid types[] = {T_INT4, T_BOOL, T_TEXT, T_TEXT_ARRAY};
    static const Oid other_types[] = {T_INT4, T_BOOL, T_TEXT, T_TEXT};
    static const char *const values[] = {"1", "t", "x", "{a,b}", NULL, "f", "y\"", NULL};
    PGresult *res = table(4, names, types, 2, values);
    PGresult *renamed = table(4, other_names, types, 2, values);
    PGresult *retyped = table(4, names, other_types, 2, values);
    PGresult *fewer = table(3, names, types, 2, values);
    gd_pgjson_columns_t *cols = gd_pgjson_columns_new(res);
    gd_pgjson_buf_t out = {NULL, 0, 0}, want = {NULL, 0, 0};

    for (int row = 0; row < 2; row++) {
        out.len = want.len = 0;
        gd_pgjson_append_row_as(&out, cols, res, row);
        gd_pgjson_append_row(&want, res, row);
        gd_pgjson_append_raw(&want, "", 1); /* a C string, for CHECK_MEM_EQ */
        CHECK_MEM_EQ(out.base, out.len, want.base);
    }
    CHECK(gd_pgjson_columns_match(cols, res));
    CHECK(!gd_pgjson_columns_match(cols, renamed));
    CHECK(!gd_pgjson_columns_match(cols, retyped));
    CHECK(!gd_pgjson_columns_match(cols, fewer));
    CHECK(gd_pgjson_columns_ref(cols) == cols);
    CHECK(gd_pgjson_columns_unref(cols) == NULL);
    CHECK(gd_pgjson_columns_match(cols, res)); /* one reference left */
    gd_pgjson_columns_unref(cols);
    PQclear(res);
    PQclear(renamed);
    PQclear(retyped);
    PQclear(fewer);
    free(out.base);
    free(want.base);
}

static void test_empty_results(void)
{
    static const char *const names[] = {"a"};
    static const Oid types[] = {T_INT4};
    PGresult *res = table(1, names, types, 0, NULL);
    gd_pgjson_buf_t out = {NULL, 0, 0};

    gd_pgjson_append_rows(&out, res);
    CHECK_MEM_EQ(out.base, out.len, "[]");
    PQclear(res);

    /* No columns at all. */
    res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    CHECK(res != NULL);
    out.len = 0;
    gd_pgjson_append_rows(&out, res);
    CHECK_MEM_EQ(out.base, out.len, "[]");
    PQclear(res);
    free(out.base);
}

static void test_appends_to_what_the_buffer_holds(void)
{
    static const char *const names[] = {"n"};
    static const Oid types[] = {T_NUMERIC};
    static const char *const values[] = {"1.0", "2.0"};
    PGresult *res = table(1, names, types, 2, values);
    gd_pgjson_buf_t out = {malloc(1), 1, 1}; /* full: the first append must grow it */
    char want[4096];
    size_t n;

    CHECK(out.base != NULL);
    out.base[0] = '>';
    gd_pgjson_append_rows(&out, res);
    CHECK_MEM_EQ(out.base, out.len, ">[{\"n\":1.0},{\"n\":2.0}]");
    CHECK(out.cap >= out.len);

    /* Many appends to one buffer: each lands after the last. */
    n = (size_t)snprintf(want, sizeof(want), "%.*s", (int)out.len, out.base);
    for (int i = 0; i < 100; i++) {
        gd_pgjson_append_value(&out, res, i % 2, 0);
        n += (size_t)snprintf(want + n, sizeof(want) - n, "%s", i % 2 ? "2.0" : "1.0");
    }
    CHECK_MEM_EQ(out.base, out.len, want);
    PQclear(res);
    free(out.base);
}

const gd_test_case_t gd_test_cases[] = {
    {"bool", test_bool},
    {"integers_copied", test_integers_copied},
    {"floats", test_floats},
    {"numeric_keeps_the_servers_digits", test_numeric_keeps_the_servers_digits},
    {"json_copied_as_is", test_json_copied_as_is},
    {"invalid_json_becomes_a_string", test_invalid_json_becomes_a_string},
    {"deeply_nested_json", test_deeply_nested_json},
    {"string_escaping", test_string_escaping},
    {"long_string", test_long_string},
    {"other_types_are_strings", test_other_types_are_strings},
    {"arrays_of_numbers_and_bools", test_arrays_of_numbers_and_bools},
    {"json_arrays", test_json_arrays},
    {"text_array_quoting", test_text_array_quoting},
    {"multidimensional_arrays", test_multidimensional_arrays},
    {"dimension_decorations_skipped", test_dimension_decorations_skipped},
    {"box_array_uses_semicolons", test_box_array_uses_semicolons},
    {"every_known_array_type", test_every_known_array_type},
    {"malformed_arrays_become_strings", test_malformed_arrays_become_strings},
    {"truncated_arrays_become_strings", test_truncated_arrays_become_strings},
    {"rows_in_column_order", test_rows_in_column_order},
    {"column_names_escaped", test_column_names_escaped},
    {"columns_reused", test_columns_reused},
    {"empty_results", test_empty_results},
    {"appends_to_what_the_buffer_holds", test_appends_to_what_the_buffer_holds},
    {NULL, NULL},
};
