#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "runner.h"

/* A reference per holder; the last unref frees (valgrind and LSan check that it does). */
static void test_refs(void)
{
    gd_buf_t *b = gd_buf_new_copy("[1,2]", 5);

    CHECK_INT_EQ(b->len, 5);
    CHECK(memcmp(b->bytes, "[1,2]", 5) == 0);
    CHECK(gd_buf_ref(b) == b);
    CHECK(gd_buf_unref(b) == NULL);
    CHECK(memcmp(b->bytes, "[1,2]", 5) == 0); /* still held once */
    CHECK(gd_buf_unref(b) == NULL);
    CHECK(gd_buf_unref(NULL) == NULL);
    CHECK(gd_buf_ref(NULL) == NULL);
}

static void test_take(void)
{
    char *bytes = malloc(3);

    memcpy(bytes, "{}x", 3);
    gd_buf_t *b = gd_buf_take(bytes, 2);
    CHECK(b->bytes == bytes);
    CHECK_INT_EQ(b->len, 2);
    gd_buf_unref(b); /* frees bytes too */
}

static void test_static_null_is_never_freed(void)
{
    CHECK(gd_buf_ref(&gd_buf_null) == &gd_buf_null);
    for (int i = 0; i < 3; i++)
        gd_buf_unref(&gd_buf_null);
    CHECK_INT_EQ(gd_buf_null.len, 4);
    CHECK(memcmp(gd_buf_null.bytes, "null", 4) == 0);
}

static void test_empty(void)
{
    gd_buf_t *b = gd_buf_new(0);

    CHECK_INT_EQ(b->len, 0);
    gd_buf_unref(b);
}

const gd_test_case_t gd_test_cases[] = {
    {"refs", test_refs},
    {"take", test_take},
    {"static_null_is_never_freed", test_static_null_is_never_freed},
    {"empty", test_empty},
    {NULL, NULL},
};
