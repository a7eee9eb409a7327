#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/coro.h"
#include "runner.h"
#include "sources/call.h"

/* A source of the tests' own: its calls finish when the test says so, or when cancelled. */
struct fake_call {
    gd_call_t base;
    const char *rendered; /* what prepare wrote, in the arena */
    bool is_started, is_disposed;
};

static int fake_prepare(gd_call_t *call, const gd_call_conf_t *conf, const gd_call_input_t *in,
                        char *err, size_t errlen)
{
    struct fake_call *fc = (struct fake_call *)call;
    char *s = gd_arena_alloc_text(in->arena, 8);

    memcpy(s, "/x/", 3);
    memcpy(s + 3, in->values[0].base, in->values[0].len);
    s[3 + in->values[0].len] = '\0';
    fc->rendered = s;
    if (strcmp(in->values[0].base, "bad") == 0) {
        snprintf(err, errlen, "bad value");
        return -EINVAL;
    }
    return 0;
}

static void on_fake_cancel(gd_task_t *task)
{
    gd_call_t *call = H2O_STRUCT_FROM_MEMBER(gd_call_t, _task, task);
    gd_call_finish(call, GD_OUTCOME_CANCELLED, 0, "cancelled");
}

static void fake_start(void *source, gd_call_t *call, gd_group_t *group)
{
    ((struct fake_call *)call)->is_started = true;
    gd_group_add(group, &call->_task, on_fake_cancel);
}

static void fake_dispose(gd_call_t *call)
{
    ((struct fake_call *)call)->is_disposed = true;
}

static const gd_call_ops_t fake_ops = {
    .kind = "fake",
    .size = sizeof(struct fake_call),
    .prepare = fake_prepare,
    .start = fake_start,
    .dispose = fake_dispose,
};

static void test_outcome_names(void)
{
    CHECK_STR_EQ(gd_outcome_name(GD_OUTCOME_OK), "ok");
    CHECK_STR_EQ(gd_outcome_name(GD_OUTCOME_POOL_TIMEOUT), "pool_timeout");
    CHECK_STR_EQ(gd_outcome_name(GD_OUTCOME_TLS), "tls");
    CHECK_STR_EQ(gd_outcome_public_message(GD_OUTCOME_TLS),
                 "the secure connection to the service failed");
    for (int k = 0; k < GD_OUTCOME_COUNT; k++) {
        CHECK(gd_outcome_names[k] != NULL);
        CHECK(gd_outcome_public_message((gd_outcome_t)k)[0] != '\0');
    }
    CHECK_STR_EQ(gd_outcome_name(GD_OUTCOME_COUNT), "unknown");
}

/* prepare renders into the arena, start goes through the source's operations, the result says
 * "cancelled" until the call finishes, and dispose drops the body's reference. */
static void test_lifecycle(void)
{
    uv_loop_t loop;
    gd_arena_t arena;
    gd_strv_t values[] = {{"7", 1}};
    gd_call_input_t in = {.values = values, .request_id = "r", .arena = &arena};
    gd_call_conf_t conf = {0};
    gd_source_t src = {&fake_ops, NULL};
    struct fake_call fc = {0};
    gd_group_t group;
    char err[64];

    CHECK_INT_EQ(uv_loop_init(&loop), 0);
    gd_sched_t *sched = gd_sched_new(&loop, 64 * 1024, 2);
    gd_arena_init(&arena, NULL, 0);
    CHECK_INT_EQ(gd_call_prepare(&fc.base, &fake_ops, &conf, &in, err, sizeof(err)), 0);
    CHECK_STR_EQ(fc.rendered, "/x/7");
    gd_group_init(&group, sched);
    fc.base.started_at_ns = uv_hrtime();
    gd_call_start(&fc.base, &src, &group);
    CHECK(fc.is_started);
    CHECK_INT_EQ(fc.base.result.outcome, GD_OUTCOME_CANCELLED);
    fc.base.result.body = gd_buf_new_copy("[1]", 3);
    gd_call_finish(&fc.base, GD_OUTCOME_OK, 200, NULL);
    CHECK(gd_task_is_done(&fc.base._task));
    CHECK_INT_EQ(fc.base.result.status, 200);
    gd_group_dispose(&group);
    gd_call_dispose(&fc.base); /* the body's last reference: LSan and valgrind check */
    CHECK(fc.is_disposed);
    CHECK(fc.base.result.body == NULL);
    gd_arena_clear(&arena);
    gd_sched_free(sched);
    CHECK_INT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(uv_loop_close(&loop), 0);
}

static void test_prepare_error_and_dispose_of_a_call_never_started(void)
{
    gd_arena_t arena;
    gd_strv_t values[] = {{"bad", 3}};
    gd_call_input_t in = {.values = values, .request_id = "r", .arena = &arena};
    gd_call_conf_t conf = {0};
    struct fake_call fc = {0}, never = {0};
    char err[64];

    gd_arena_init(&arena, NULL, 0);
    CHECK_INT_EQ(gd_call_prepare(&fc.base, &fake_ops, &conf, &in, err, sizeof(err)), -EINVAL);
    CHECK_STR_EQ(err, "bad value");
    gd_call_dispose(&fc.base);
    CHECK(fc.is_disposed);
    gd_call_dispose(&never.base); /* never prepared: nothing to do */
    CHECK(!never.is_disposed);
    gd_arena_clear(&arena);
}

/* A message cut by its size limit never ends in the middle of a UTF-8 character. */
static void test_finish_message_cut_keeps_utf8_whole(void)
{
    uv_loop_t loop;
    struct fake_call fc = {0};
    gd_source_t src = {&fake_ops, NULL};
    gd_group_t group;
    char detail[401];

    for (size_t i = 0; i < 400; i += 2)
        memcpy(detail + i, "\xc3\xa9", 2);
    detail[400] = '\0';
    CHECK_INT_EQ(uv_loop_init(&loop), 0);
    gd_sched_t *sched = gd_sched_new(&loop, 64 * 1024, 2);
    for (int shift = 0; shift < 2; shift++) {
        fc.base.ops = &fake_ops;
        gd_group_init(&group, sched);
        gd_call_start(&fc.base, &src, &group);
        gd_call_finish(&fc.base, GD_OUTCOME_SQL, 0, "%.*s%s", shift, "x", detail);
        size_t len = strlen(fc.base.result.message);
        CHECK(len >= GD_CALL_MESSAGE_MAX - 3 && len < GD_CALL_MESSAGE_MAX);
        CHECK((len - (size_t)shift) % 2 == 0); /* whole two-byte characters only */
        gd_group_dispose(&group);
    }
    gd_sched_free(sched);
    CHECK_INT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_INT_EQ(uv_loop_close(&loop), 0);
}

const gd_test_case_t gd_test_cases[] = {
    {"outcome_names", test_outcome_names},
    {"lifecycle", test_lifecycle},
    {"prepare_error_and_dispose_of_a_call_never_started",
     test_prepare_error_and_dispose_of_a_call_never_started},
    {"finish_message_cut_keeps_utf8_whole", test_finish_message_cut_keeps_utf8_whole},
    {NULL, NULL},
};
