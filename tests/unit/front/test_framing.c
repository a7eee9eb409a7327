#include "runner.h"

#include "front/framing.h"

static int check(const char *head, const char **why)
{
    *why = NULL;
    return gd_framing_check_head(head, strlen(head), why);
}

static void test_plain_requests_pass(void)
{
    const char *why;

    CHECK_INT_EQ(check("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &why), GD_FRAMING_OK);
    CHECK_INT_EQ(check("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", &why), GD_FRAMING_OK);
    CHECK_INT_EQ(check("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &why),
                 GD_FRAMING_OK);
    CHECK_INT_EQ(check("POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n", &why),
                 GD_FRAMING_OK);
    CHECK_INT_EQ(check("GET / HTTP/1.1\r\nHost: x\r\n", &why), GD_FRAMING_OK); /* no whole head */
}

static void test_ambiguous_framing_refused(void)
{
    const char *why;

    CHECK_INT_EQ(check("POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n", &why),
                 GD_FRAMING_AMBIGUOUS);
    CHECK(why != NULL);
    CHECK_INT_EQ(
        check("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &why),
        GD_FRAMING_AMBIGUOUS);
    CHECK_INT_EQ(
        check("POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\ncontent-length: 5\r\n\r\n", &why),
        GD_FRAMING_AMBIGUOUS);
    CHECK_INT_EQ(check("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
                       "chunked\r\n\r\n",
                       &why),
                 GD_FRAMING_AMBIGUOUS);
    CHECK_INT_EQ(check("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &why),
                 GD_FRAMING_AMBIGUOUS);
}

const gd_test_case_t gd_test_cases[] = {
    {"plain_requests_pass", test_plain_requests_pass},
    {"ambiguous_framing_refused", test_ambiguous_framing_refused},
    {NULL, NULL},
};
