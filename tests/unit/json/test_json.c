#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json/json.h"
#include "runner.h"

static bool valid(const char *s)
{
    return gd_json_is_valid(s, strlen(s));
}

static void test_accepts_json(void)
{
    const char *ok[] = {
        "{}", "[]", "0", "-0", "1.5e+3", "-12.25E-2", "\"\"", "true", "false", "null",
        " \t\r\n{ \"a\" : [ 1 , 2 , { \"b\" : null } ] , \"c\" : \"d\" } \n",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD834\\uDD1E\\ud800\"", /* unpaired \u is allowed */
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"",
        "[[[[[[[[[[]]]]]]]]]]", "{\"a\":{\"b\":{\"c\":[]}}}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!valid(ok[i]))
            gd__test_fail(__FILE__, __LINE__, "rejected %s", ok[i]);
}

static void test_rejects_what_is_not(void)
{
    const char *bad[] = {
        "", " ", "{", "}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{1:2}", "[1 2]",
        "01", "-", "1.", ".5", "1e", "+1", "0x10", "NaN", "Infinity", "tru", "nul", "True",
        "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"a\tb\"", "\"a\nb\"", "\"\x01\"",
        "{} {}", "1 2", "[]]", "[", "\"\xc0\x80\"" /* overlong NUL */,
        "\"\xe0\x80\x80\"" /* overlong */, "\"\xed\xa0\x80\"" /* a surrogate */,
        "\"\xf4\x90\x80\x80\"" /* above U+10FFFF */, "\"\xc3\"" /* truncated */,
        "\"\xc3(\"", "\"\xff\"", "\"\x80\"", "\xef\xbb\xbf{}" /* a BOM is not JSON text */,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (valid(bad[i]))
            gd__test_fail(__FILE__, __LINE__, "accepted case %zu: %s", i, bad[i]);
    CHECK(!gd_json_is_valid("[1]\0", 4)); /* a NUL byte after the value */
    CHECK(gd_json_is_valid("\"\\u0000\"", 8));
}

static void test_deep_nesting_needs_no_recursion(void)
{
    size_t depth = 200000;
    char *s = malloc(depth * 2 + 1);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[depth * 2] = '\0';
    CHECK(gd_json_is_valid(s, depth * 2));
    s[depth * 2 - 1] = '}';
    CHECK(!gd_json_is_valid(s, depth * 2));
    free(s);
}

static void test_numbers(void)
{
    CHECK(gd_json_is_number("12", 2, true));
    CHECK(!gd_json_is_number("1.5", 3, true));
    CHECK(gd_json_is_number("1.5", 3, false));
    CHECK(!gd_json_is_number("00", 2, false));
    CHECK(!gd_json_is_number("", 0, false));
}

/* A small random JSON document, without what jansson refuses although JSON allows it (numbers
 * it cannot hold, escapes of unpaired surrogates, depth past 2048). */
static void gen(char *buf, size_t *len, size_t cap, int depth, unsigned *seed)
{
    static const char *const atoms[] = {"0", "-1", "2.5", "1e3", "true", "false", "null",
                                        "\"\"", "\"x\\n\\u00e9\"", "\"caf\xc3\xa9\"", "\"a b\""};
    int kind = depth > 4 ? 0 : rand_r(seed) % 3;
    if (*len + 64 >= cap)
        kind = 0;
    if (kind == 0) {
        const char *a = atoms[rand_r(seed) % (sizeof(atoms) / sizeof(atoms[0]))];
        size_t n = strlen(a);
        memcpy(buf + *len, a, n);
        *len += n;
        return;
    }
    buf[(*len)++] = kind == 1 ? '[' : '{';
    int n = rand_r(seed) % 4;
    for (int i = 0; i < n && *len + 64 < cap; i++) {
        if (i)
            buf[(*len)++] = ',';
        if (kind == 2) {
            memcpy(buf + *len, "\"k\":", 4);
            *len += 4;
        }
        gen(buf, len, cap, depth + 1, seed);
    }
    buf[(*len)++] = kind == 1 ? ']' : '}';
}

static void test_agrees_with_jansson(void)
{
    static const char noise[] = "{}[],:\" \\tfnu09-+.eE\x01\xc3\xa9\xff";
    unsigned seed = 12345;
    char buf[1024];
    int mismatches = 0, checked = 0;

    for (int i = 0; i < 40000; i++) {
        size_t len = 0;
        gen(buf, &len, sizeof(buf) - 8, 0, &seed);
        int mutations = rand_r(&seed) % 3;
        for (int m = 0; m < mutations && len > 0; m++) {
            size_t at = (size_t)rand_r(&seed) % len;
            char c = noise[rand_r(&seed) % (sizeof(noise) - 1)];
            switch (rand_r(&seed) % 3) {
            case 0:
                buf[at] = c;
                break;
            case 1:
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            default:
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = c;
                len++;
            }
        }
        /* leave out what jansson refuses for its own reasons: escapes it cannot decode */
        buf[len] = '\0';
        if (strstr(buf, "\\u") != NULL && strstr(buf, "\\u00e9") == NULL)
            continue;
        json_error_t jerr;
        json_t *doc = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        bool theirs = doc != NULL, ours = gd_json_is_valid(buf, len);
        json_decref(doc);
        /* ... and numbers valid in JSON that jansson cannot hold (1e993) */
        if (!theirs && (strstr(jerr.text, "overflow") != NULL || strstr(jerr.text, "too big")))
            continue;
        checked++;
        if (theirs != ours && mismatches++ < 5)
            fprintf(stderr, "jansson %d, gd_json %d: %.*s\n", theirs, ours, (int)len, buf);
    }
    CHECK_INT_EQ(mismatches, 0);
    CHECK(checked > 30000);
}

static void test_json_quote_escapes(void)
{
    char buf[64];
    const char in[] = "a\"b\\c\n\x01z";
    size_t n = gd_json_quote(in, sizeof(in) - 1, buf, sizeof(buf));
    CHECK_MEM_EQ(buf, n, "\"a\\\"b\\\\c\\n\\u0001z\"");
    n = gd_json_quote("\t\r\b\f\x1f\xc3\xa9", 7, buf, sizeof(buf));
    CHECK_MEM_EQ(buf, n, "\"\\t\\r\\b\\f\\u001f\xc3\xa9\"");
    CHECK_INT_EQ(gd_json_quote("ab", 2, NULL, 0), 4); /* sizing call */
    CHECK(gd_json_is_valid(buf, n));
}

/* Whatever bytes come in (a Latin-1 server message, a sequence cut at a length limit), the
 * quoted string is valid UTF-8, and so valid JSON: each stray byte becomes U+FFFD. */
static void test_json_quote_replaces_invalid_utf8(void)
{
    char buf[128];
    size_t n = gd_json_quote("caf\xe9!", 5, buf, sizeof(buf)); /* Latin-1 e-acute */
    CHECK_MEM_EQ(buf, n, "\"caf\xef\xbf\xbd!\"");
    n = gd_json_quote("\xe2\x82", 2, buf, sizeof(buf)); /* a euro sign cut after two bytes */
    CHECK_MEM_EQ(buf, n, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    n = gd_json_quote("\xed\xa0\x80", 3, buf, sizeof(buf)); /* a UTF-16 surrogate, encoded */
    CHECK_MEM_EQ(buf, n, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    n = gd_json_quote("\xe2\x82\xac \xf0\x9f\x98\x80", 8, buf, sizeof(buf)); /* valid: as is */
    CHECK_MEM_EQ(buf, n, "\"\xe2\x82\xac \xf0\x9f\x98\x80\"");
    CHECK(gd_json_is_valid(buf, n));
    for (int b = 0x80; b <= 0xff; b++) { /* every stray byte, checked by the validator */
        char in[3] = {'a', (char)b, 'z'};
        n = gd_json_quote(in, 3, buf, sizeof(buf));
        CHECK(n <= GD_JSON_QUOTED_MAX(3));
        CHECK(gd_json_is_valid(buf, n));
    }
}

static void test_unquote(void)
{
    char out[64];
    const char *s = "\"a\\\"b\\\\c\\u00e9\\ud83d\\ude00\\n\"";
    size_t n = gd_json_unquote(s, strlen(s), out);

    CHECK_MEM_EQ(out, n, "a\"b\\c\xc3\xa9\xf0\x9f\x98\x80\n");
    CHECK_INT_EQ(gd_json_unquote("\"\"", 2, out), 0);
}

static void test_navigate(void)
{
    const char *doc = " { \"a\" : [1, \"x]\", {\"b\":\"}\\\"\"}] ,\"\\ud83d\\ude00\\u00e9\":null, "
                      "\"e\\n\\\\\":-1.5e3 } ";
    gd_json_iter_t it, inner;
    const char *k, *v;
    size_t kl, vl;

    CHECK_INT_EQ(gd_json_iter_init(&it, doc, strlen(doc)), '{');
    CHECK(gd_json_iter_next(&it, &k, &kl, &v, &vl));
    CHECK(gd_json_string_equals(k, kl, "a", 1));
    CHECK_MEM_EQ(v, vl, "[1, \"x]\", {\"b\":\"}\\\"\"}]");
    CHECK_INT_EQ(gd_json_iter_init(&inner, v, vl), '[');
    CHECK(gd_json_iter_next(&inner, &k, &kl, &v, &vl) && k == NULL);
    CHECK_MEM_EQ(v, vl, "1");
    CHECK(gd_json_iter_next(&inner, &k, &kl, &v, &vl));
    CHECK_MEM_EQ(v, vl, "\"x]\"");
    CHECK(gd_json_iter_next(&inner, &k, &kl, &v, &vl));
    CHECK_MEM_EQ(v, vl, "{\"b\":\"}\\\"\"}");
    CHECK(!gd_json_iter_next(&inner, &k, &kl, &v, &vl));
    CHECK(gd_json_iter_next(&it, &k, &kl, &v, &vl));
    CHECK(gd_json_string_equals(k, kl, "\xf0\x9f\x98\x80\xc3\xa9", 6)); /* a surrogate pair */
    CHECK(!gd_json_string_equals(k, kl, "\xf0\x9f\x98\x80", 4));
    CHECK_MEM_EQ(v, vl, "null");
    CHECK(gd_json_iter_next(&it, &k, &kl, &v, &vl));
    CHECK(gd_json_string_equals(k, kl, "e\n\\", 3));
    CHECK_MEM_EQ(v, vl, "-1.5e3");
    CHECK(!gd_json_iter_next(&it, &k, &kl, &v, &vl));
    CHECK_INT_EQ(gd_json_iter_init(&it, " 12 ", 4), '1');
    CHECK_INT_EQ(gd_json_iter_init(&it, "[]", 2), '[');
    CHECK(!gd_json_iter_next(&it, &k, &kl, &v, &vl));
    CHECK_INT_EQ(gd_json_skip("\"a\\\"b\" ,", 8), 6);
}

const gd_test_case_t gd_test_cases[] = {
    {"navigate", test_navigate},
    {"json_quote_replaces_invalid_utf8", test_json_quote_replaces_invalid_utf8},
    {"json_quote_escapes", test_json_quote_escapes},
    {"accepts_json", test_accepts_json},
    {"rejects_what_is_not", test_rejects_what_is_not},
    {"deep_nesting_needs_no_recursion", test_deep_nesting_needs_no_recursion},
    {"numbers", test_numbers},
    {"unquote", test_unquote},
    {"agrees_with_jansson", test_agrees_with_jansson},
    {NULL, NULL},
};
