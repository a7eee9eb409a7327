#include <string.h>

#include "base/b64url.h"
#include "runner.h"

static void check_decode(const char *in, const char *want, size_t want_len)
{
    unsigned char out[64];
    ssize_t n;

    CHECK(GD_B64URL_DECODED_MAX(strlen(in)) <= sizeof(out));
    n = gd_b64url_decode(in, strlen(in), out);
    CHECK_INT_EQ(n, (ssize_t)want_len);
    CHECK(memcmp(out, want, want_len) == 0);
}

/* RFC 4648 section 10's vectors, without padding, and the two characters of the URL alphabet. */
static void test_decode_vectors(void)
{
    check_decode("", "", 0);
    check_decode("Zg", "f", 1);
    check_decode("Zm8", "fo", 2);
    check_decode("Zm9v", "foo", 3);
    check_decode("Zm9vYg", "foob", 4);
    check_decode("Zm9vYmE", "fooba", 5);
    check_decode("Zm9vYmFy", "foobar", 6);
    check_decode("-_-_", "\xfb\xff\xbf", 3);
    check_decode("eyJhbGciOiJIUzI1NiJ9", "{\"alg\":\"HS256\"}", 15);
}

static void test_decode_errors(void)
{
    unsigned char out[16];

    CHECK_INT_EQ(gd_b64url_decode("Z", 1, out), -1);     /* an impossible length */
    CHECK_INT_EQ(gd_b64url_decode("Zg==", 4, out), -1);  /* padding */
    CHECK_INT_EQ(gd_b64url_decode("Zm+v", 4, out), -1);  /* the standard alphabet's + */
    CHECK_INT_EQ(gd_b64url_decode("Zm/v", 4, out), -1);  /* and / */
    CHECK_INT_EQ(gd_b64url_decode("Zm9v.", 5, out), -1); /* a JWS separator */
    CHECK_INT_EQ(gd_b64url_decode("Zm\0v", 4, out), -1);
}

const gd_test_case_t gd_test_cases[] = {
    {"decode_vectors", test_decode_vectors},
    {"decode_errors", test_decode_errors},
    {NULL, NULL},
};
