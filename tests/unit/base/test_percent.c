#include <string.h>

#include "base/percent.h"
#include "runner.h"

static void check_encode(const char *in, size_t len, const char *want)
{
    char out[256];
    size_t n;

    CHECK(3 * len <= sizeof(out));
    CHECK_INT_EQ(gd_percent_encode(in, len, NULL, 0), strlen(want)); /* the sizing call */
    n = gd_percent_encode(in, len, out, sizeof(out));
    CHECK_MEM_EQ(out, n, want);
}

static void test_encode_unreserved(void)
{
    const char *all = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    check_encode(all, strlen(all), all);
    check_encode("", 0, "");
    check_encode("a..", 3, "a..");
    check_encode(".a", 2, ".a");
}

static void test_encode_reserved(void)
{
    check_encode("a b/c?d&e=f#g%h+i", 17, "a%20b%2Fc%3Fd%26e%3Df%23g%25h%2Bi");
    check_encode("{}[]:@!$'()*,;\"\\", 16, "%7B%7D%5B%5D%3A%40%21%24%27%28%29%2A%2C%3B%22%5C");
    check_encode("\r\n\t", 3, "%0D%0A%09");
    check_encode("\0x", 2, "%00x");
    check_encode("\x7f\x80\xff", 3, "%7F%80%FF");
}

static void test_encode_utf8(void)
{
    /* "é" and "日" are encoded byte by byte, upper-case hex. */
    check_encode("caf\xc3\xa9", 5, "caf%C3%A9");
    check_encode("\xe6\x97\xa5", 3, "%E6%97%A5");
}

static void test_encode_only_dots(void)
{
    check_encode(".", 1, "%2E");
    check_encode("..", 2, "%2E%2E");
    check_encode("...", 3, "%2E%2E%2E");
    check_encode("../admin", 8, "..%2Fadmin");
}

static void check_decode(const char *in, bool plus, const char *want)
{
    char out[128];
    long n = gd_percent_decode(in, strlen(in), out, plus);

    CHECK(n >= 0);
    CHECK_MEM_EQ(out, (size_t)n, want);
}

static void test_decode(void)
{
    char buf[16];

    check_decode("", false, "");
    check_decode("abc", false, "abc");
    check_decode("a%20b", false, "a b");
    check_decode("..%2Fadmin", false, "../admin");
    check_decode("..%2fadmin", false, "../admin");
    check_decode("%C3%A9", false, "\xc3\xa9");
    check_decode("a+b", false, "a+b");
    check_decode("a+b", true, "a b");
    check_decode("a%2Bb", true, "a+b");
    check_decode("%25%32%30", false, "%20"); /* decoded once only */

    /* Decoding in place works: the output never overtakes the input. */
    memcpy(buf, "x%41%42y", 9);
    CHECK_INT_EQ(gd_percent_decode(buf, 8, buf, false), 4);
    CHECK_MEM_EQ(buf, 4, "xABy");
}

static void test_decode_errors(void)
{
    char out[16];

    CHECK_INT_EQ(gd_percent_decode("%", 1, out, false), -1);
    CHECK_INT_EQ(gd_percent_decode("a%2", 3, out, false), -1);
    CHECK_INT_EQ(gd_percent_decode("%zz", 3, out, false), -1);
    CHECK_INT_EQ(gd_percent_decode("%2g", 3, out, false), -1);
    CHECK_INT_EQ(gd_percent_decode("%g2", 3, out, false), -1);
    CHECK_INT_EQ(gd_percent_decode("a%00b", 5, out, false), -1);
    CHECK_INT_EQ(gd_percent_decode("a%00b", 5, out, true), -1);
    /* The length bounds the input: "%4" followed by more bytes that are not part of it. */
    CHECK_INT_EQ(gd_percent_decode("%41", 2, out, false), -1);
}

/* With less room the output is cut, and the full length still returned. */
static void test_encode_cut(void)
{
    char out[4] = {'x', 'x', 'x', 'x'};

    CHECK_INT_EQ(gd_percent_encode("a/b", 3, out, 2), 5);
    CHECK_MEM_EQ(out, 2, "a%");
    CHECK(out[2] == 'x');
}

const gd_test_case_t gd_test_cases[] = {
    {"encode_unreserved", test_encode_unreserved},
    {"encode_reserved", test_encode_reserved},
    {"encode_utf8", test_encode_utf8},
    {"encode_only_dots", test_encode_only_dots},
    {"encode_cut", test_encode_cut},
    {"decode", test_decode},
    {"decode_errors", test_decode_errors},
    {NULL, NULL},
};
