#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/arena.h"
#include "runner.h"

static bool is_inside(const void *p, size_t len, const char *block, size_t block_len)
{
    return (const char *)p >= block && (const char *)p + len <= block + block_len;
}

/* What fits the owner's block comes from it, objects aligned, texts packed; used counts both. */
static void test_first_block_is_used_first(void)
{
    alignas(max_align_t) char block[256];
    gd_arena_t a;

    gd_arena_init(&a, block, sizeof(block));
    h2o_iovec_t s = gd_arena_strdup(&a, "abc", 3);
    CHECK(is_inside(s.base, 4, block, sizeof(block)));
    CHECK_STR_EQ(s.base, "abc");
    CHECK_INT_EQ(s.len, 3);
    void *o = gd_arena_alloc(&a, 40);
    CHECK(is_inside(o, 40, block, sizeof(block)));
    CHECK_INT_EQ((uintptr_t)o % alignof(max_align_t), 0);
    CHECK_INT_EQ(gd_arena_used(&a), 16 + 40); /* "abc\0", padding to 16, the object */
    char *t = gd_arena_alloc_text(&a, 5);
    CHECK(t == (char *)o + 40); /* texts are not aligned */
    gd_arena_clear(&a);
}

/* What does not fit goes to blocks of the arena's own, however big; clear frees them (LSan and
 * valgrind check that it does). */
static void test_overflow_takes_own_blocks(void)
{
    alignas(max_align_t) char block[64];
    gd_arena_t a;

    gd_arena_init(&a, block, sizeof(block));
    char *p = gd_arena_alloc(&a, 48);
    CHECK(is_inside(p, 48, block, sizeof(block)));
    char *q = gd_arena_alloc(&a, 32);
    CHECK(!is_inside(q, 32, block, sizeof(block)));
    memset(q, 'q', 32);
    char *big = gd_arena_alloc(&a, 100000);
    memset(big, 'b', 100000);
    CHECK_INT_EQ((uintptr_t)big % alignof(max_align_t), 0);
    CHECK(q[31] == 'q');
    CHECK_INT_EQ(gd_arena_used(&a), 48 + 32 + 100000);
    gd_arena_clear(&a);
}

/* An arena with no block of the owner's starts with one of its own, even for nothing. */
static void test_no_first_block(void)
{
    gd_arena_t a;

    gd_arena_init(&a, NULL, 0);
    CHECK(gd_arena_alloc(&a, 0) != NULL);
    h2o_iovec_t parts[] = {{(char *)"x-id: ", 6}, {NULL, 0}, {(char *)"42\r\n", 4}};
    h2o_iovec_t joined = gd_arena_concat(&a, parts, 3);
    CHECK_STR_EQ(joined.base, "x-id: 42\r\n");
    CHECK_INT_EQ(joined.len, 10);
    h2o_iovec_t empty = gd_arena_strdup(&a, NULL, 0);
    CHECK_STR_EQ(empty.base, "");
    gd_arena_clear(&a);
}

const gd_test_case_t gd_test_cases[] = {
    {"first_block_is_used_first", test_first_block_is_used_first},
    {"overflow_takes_own_blocks", test_overflow_takes_own_blocks},
    {"no_first_block", test_no_first_block},
    {NULL, NULL},
};
