#include "runner.h"

#include <string.h>

#include "gather/negotiate.h"

static bool gz(const char *v)
{
    return gd_negotiate_accepts_gzip(v, strlen(v));
}

static bool inm(const char *v, const char *etag)
{
    return gd_negotiate_none_match(v, strlen(v), etag, strlen(etag));
}

static void test_accept_encoding(void)
{
    CHECK(gz("gzip"));
    CHECK(gz("GZIP"));
    CHECK(gz("x-gzip"));
    CHECK(gz("gzip, deflate, br"));
    CHECK(gz("br;q=1.0, gzip;q=0.8, *;q=0.1"));
    CHECK(gz("deflate , gzip ; q=0.001"));
    CHECK(gz("gzip;level=1"));
    CHECK(gz("*"));
    CHECK(gz("identity, *;q=0.5"));
    CHECK(gz(",,gzip,"));
    CHECK(gz("gzip;q=1"));
    CHECK(gz("gzip;q=1.000"));
    /* refused */
    CHECK(!gz(""));
    CHECK(!gz("identity"));
    CHECK(!gz("deflate, br"));
    CHECK(!gz("gzip;q=0"));
    CHECK(!gz("gzip;Q=0.000"));
    CHECK(!gz("gzip; q=0.0"));
    CHECK(!gz("gzip;q=0, *")); /* an explicit refusal wins over "*" */
    CHECK(!gz("*, gzip;q=0"));
    CHECK(!gz("*;q=0"));
    CHECK(!gz("gzip;q=0, x-gzip")); /* the most cautious of the two names */
    CHECK(!gz("gzipx"));
    /* malformed members are skipped, the others count */
    CHECK(!gz("gzip;q=2"));
    CHECK(!gz("gzip;q=0.1234"));
    CHECK(!gz("gzip;q="));
    CHECK(!gz("gzip;q"));
    CHECK(!gz("gzip q=1"));
    CHECK(gz("gzip;q=abc, *"));
    CHECK(gz("\"x\", gzip"));
}

static void test_if_none_match(void)
{
    const char *tag = "\"abc\"";

    CHECK(inm("\"abc\"", tag));
    CHECK(inm("W/\"abc\"", tag)); /* weak comparison (RFC 9110 section 13.1.2) */
    CHECK(inm("\"abc\"", "W/\"abc\""));
    CHECK(inm("\"x\", \"abc\"", tag));
    CHECK(inm("\"x\",W/\"abc\" ,\"y\"", tag));
    CHECK(inm(" \"abc\" ", tag));
    CHECK(inm("*", tag));
    CHECK(inm(" * ", tag));
    CHECK(inm("\"a,b\", \"abc\"", tag)); /* a comma inside a tag is part of it */
    CHECK(!inm("\"abcd\"", tag));
    CHECK(!inm("\"ab\"", tag));
    CHECK(!inm("abc", tag)); /* unquoted: malformed */
    CHECK(!inm("\"x\", abc", tag));
    CHECK(!inm("\"abc-gz\"", tag));
    CHECK(inm("\"abc-gz\"", "\"abc-gz\""));
    CHECK(!inm("", tag));
    CHECK(!inm("\"abc", tag));
    CHECK(!inm("w/\"abc\"", tag)); /* W/ is case-sensitive */
    CHECK(!inm("*, \"abc\"", tag));
    CHECK(!inm("\"x\" \"abc\"", tag)); /* no comma between */
}

const gd_test_case_t gd_test_cases[] = {
    {"accept_encoding", test_accept_encoding},
    {"if_none_match", test_if_none_match},
    {NULL, NULL},
};
