#include "base/coro.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/util.h"

/* The hand-written switch needs the SysV x86_64 ABI and ELF assembler directives; everything
 * else (and a build with -DGD_CORO_USE_UCONTEXT, to test the fallback) uses ucontext. */
#if defined(__x86_64__) && defined(__ELF__) && !defined(GD_CORO_USE_UCONTEXT)
#define CORO_SWITCH_X86_64 1
#else
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORO_ASAN 1
#endif
#endif
#ifdef CORO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#ifdef GD_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

/* Released stacks per scheduler that keep their pages: enough for a worker's steady state at
 * the benchmark's load (64 connections over 2 threads); a burst beyond gives its pages back. */
#define WARM_STACKS 64
#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* A saved execution context: the loop stack's or a coroutine's. */
struct coro_ctx {
#ifdef CORO_SWITCH_X86_64
    void *sp; /* the callee-saved registers and the resume address are stored at sp */
#else
    ucontext_t uc;
#endif
#ifdef CORO_ASAN
    void *asan_fake_stack; /* ASan's use-after-return frames while switched away */
    const void *asan_stack_bottom;
    size_t asan_stack_size;
#endif
};

struct coro_stack {
    struct coro_stack *next; /* in the scheduler's pool */
    char *map;               /* one PROT_NONE guard page, then the stack proper */
#ifdef GD_HAVE_VALGRIND_H
    unsigned valgrind_id;
#endif
};

struct gd_sched {
    uv_loop_t *loop;
    gd_timers_t *timers;
    size_t page_size;
    size_t stack_size; /* usable bytes, a multiple of page_size, guard page excluded */
    size_t max_live, live;
    /* Released stacks: up to WARM_STACKS keep their pages (the steady state reuses them); past
     * that, a burst's stacks give their pages back to the kernel and wait, mapped, in cold. */
    struct coro_stack *pool, *cold;
    size_t npooled;
    struct coro_ctx loop_ctx; /* the loop stack, while it has switched into a coroutine */
    /* Step timing (gd_sched_time_steps()): the longest run of a coroutine resumed from the
     * loop stack since gd_sched_take_longest_step() last read it, and its label. */
    bool is_timing_steps;
    uint64_t longest_step_ns;
    const char *longest_step_label;
};

enum coro_state {
    CORO_SUSPENDED, /* yielded: gd_coro_resume() may switch into it */
    CORO_RUNNING,   /* the current coroutine or one of its resumers */
    CORO_DEAD,      /* its function returned; freed by whoever switched into it */
};

enum coro_wait {
    WAIT_NONE,
    WAIT_SLEEP, /* in gd_coro_sleep() */
    WAIT_GROUP, /* in gd_group_wait() */
};

struct gd_coro {
    struct coro_ctx ctx;
    gd_sched_t *sched;
    struct coro_stack *stack;
    gd_coro_fn fn;
    void *arg;
    gd_coro_t *resumer; /* where gd_coro_yield() goes back to; NULL for the loop stack */
    gd_timer_t timer;   /* the sleep, or the wake-up gd_coro_cancel() schedules */
    gd_task_t task;     /* in the group of gd_group_spawn(), if has_task */
    enum coro_state state;
    enum coro_wait wait;
    bool is_cancelled, has_task;
    const char *label; /* what it works on, for the slow-loop log; borrowed */
};

static __thread gd_sched_t *tls_sched;
static __thread gd_coro_t *tls_coro;
#ifdef CORO_ASAN
static __thread struct coro_ctx *tls_switch_from; /* the context the last switch left */
#endif

/* -- context switch ---------------------------------------------------------------------- */

#ifdef CORO_SWITCH_X86_64
/*
 * gd__coro_switch(save_sp, load_sp) pushes the callee-saved registers, the MXCSR and the x87
 * control word on the current stack, stores the stack pointer in *save_sp, loads load_sp and
 * pops the same from there; its ret then continues wherever that context left off. Everything
 * else the ABI lets a call clobber, so the compiler has saved it already.
 */
void gd__coro_switch(void **save_sp, void *load_sp) __attribute__((visibility("hidden")));
/*
 * The first return address of a new coroutine: calls r12(rbx), its entry function with the
 * coroutine, on a stack aligned for a call. The entry never returns. CFI marks the outermost
 * frame so that debuggers and unwinders stop here.
 */
void gd__coro_start(void) __attribute__((visibility("hidden")));

__asm__(".text\n"
        ".p2align 4\n"
        ".globl gd__coro_switch\n"
        ".hidden gd__coro_switch\n"
        ".type gd__coro_switch, @function\n"
        "gd__coro_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size gd__coro_switch, .-gd__coro_switch\n"
        "\n"
        ".p2align 4\n"
        ".globl gd__coro_start\n"
        ".hidden gd__coro_start\n"
        ".type gd__coro_start, @function\n"
        "gd__coro_start:\n"
        "    .cfi_startproc\n"
        "    .cfi_undefined rip\n"
        "    movq %rbx, %rdi\n"
        "    callq *%r12\n"
        "    ud2\n"
        "    .cfi_endproc\n"
        ".size gd__coro_start, .-gd__coro_start\n");

/* Words in the frame gd__coro_switch() pops, lowest address first. */
enum {
    FRAME_CSR, /* MXCSR in the low half, x87 control word above it */
    FRAME_R15,
    FRAME_R14,
    FRAME_R13,
    FRAME_R12,
    FRAME_RBX,
    FRAME_RBP,
    FRAME_RET,
    FRAME_WORDS,
};

static void ctx_make(struct coro_ctx *ctx, char *lo, size_t size, gd_coro_t *co,
                     void (*entry)(gd_coro_t *))
{
    /* The top is page-aligned. Two zero words above the return address leave rsp % 16 == 0
     * after the ret into gd__coro_start(), so its call enters @entry with rsp % 16 == 8. */
    uint64_t *frame = (uint64_t *)(void *)(lo + size) - 2 - FRAME_WORDS;
    uint32_t mxcsr;
    uint16_t fpucw;

    /* A new coroutine starts with the spawner's rounding and exception masks, but none of
     * its sticky exception flags (MXCSR bits 0-5). */
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    memset(frame, 0, (FRAME_WORDS + 2) * sizeof(*frame));
    frame[FRAME_CSR] = (mxcsr & ~UINT32_C(0x3f)) | (uint64_t)fpucw << 32;
    frame[FRAME_R12] = (uint64_t)(uintptr_t)entry;
    frame[FRAME_RBX] = (uint64_t)(uintptr_t)co;
    frame[FRAME_RBP] = 0; /* ends frame-pointer backtraces */
    frame[FRAME_RET] = (uint64_t)(uintptr_t)gd__coro_start;
    ctx->sp = frame;
}
#else
static void coro_entry(gd_coro_t *co);

/* makecontext() passes only int arguments: the coroutine is the thread's current one. */
static void coro_entry_ucontext(void)
{
    coro_entry(tls_coro);
}

static void ctx_make(struct coro_ctx *ctx, char *lo, size_t size, gd_coro_t *co,
                     void (*entry)(gd_coro_t *))
{
    (void)co;
    (void)entry;
    GD_REQUIRE(getcontext(&ctx->uc) == 0);
    ctx->uc.uc_stack.ss_sp = lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    makecontext(&ctx->uc, coro_entry_ucontext, 0);
}
#endif

/* Completes the ASan side of a switch, on the stack just switched to. @fake_stack is what
 * this context saved when it left (NULL on a first entry). */
static void asan_switched(void *fake_stack)
{
#ifdef CORO_ASAN
    struct coro_ctx *from = tls_switch_from;
    /* Records the bounds of the stack just left: the loop stack's are learnt this way. */
    __sanitizer_finish_switch_fiber(fake_stack, &from->asan_stack_bottom, &from->asan_stack_size);
#else
    (void)fake_stack;
#endif
}

/* Saves the running context in @from and continues @to. @is_from_done: @from never runs
 * again, so ASan drops its fake stack, and this call does not return. */
static void ctx_switch(struct coro_ctx *from, struct coro_ctx *to, bool is_from_done)
{
#ifdef CORO_ASAN
    tls_switch_from = from;
    __sanitizer_start_switch_fiber(is_from_done ? NULL : &from->asan_fake_stack,
                                   to->asan_stack_bottom, to->asan_stack_size);
#else
    (void)is_from_done;
#endif
#ifdef CORO_SWITCH_X86_64
    gd__coro_switch(&from->sp, to->sp);
#else
    GD_REQUIRE(swapcontext(&from->uc, &to->uc) == 0);
#endif
#ifdef CORO_ASAN
    asan_switched(from->asan_fake_stack);
#endif
}

/* -- stacks ------------------------------------------------------------------------------- */

static int stack_acquire(gd_sched_t *sched, struct coro_stack **ret_stack)
{
    size_t map_size = sched->page_size + sched->stack_size;
    struct coro_stack *stack;
    char *map;

    if (sched->pool != NULL || sched->cold != NULL) {
        struct coro_stack **list = sched->pool != NULL ? &sched->pool : &sched->cold;
        stack = *list;
        *list = stack->next;
        if (list == &sched->pool)
            sched->npooled--;
        *ret_stack = stack;
        return 0;
    }
    map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1,
               0);
    if (map == MAP_FAILED)
        return -ENOMEM;
    /* Fails when the guard page would exceed vm.max_map_count (one more mapping). */
    if (mprotect(map, sched->page_size, PROT_NONE) != 0) {
        (void)munmap(map, map_size); /* nothing to do if even this fails */
        return -ENOMEM;
    }
    stack = gd_xmalloc(sizeof(*stack));
    stack->next = NULL;
    stack->map = map;
#ifdef GD_HAVE_VALGRIND_H
    stack->valgrind_id = VALGRIND_STACK_REGISTER(map + sched->page_size, map + map_size - 1);
#endif
    *ret_stack = stack;
    return 0;
}

static char *stack_lo(const gd_sched_t *sched, const struct coro_stack *stack)
{
    return stack->map + sched->page_size;
}

/* Forgets what ASan knew of a dead coroutine's frames, whose redzones would otherwise stay
 * poisoned for the stack's next user (or for whatever is mapped there next). */
static void stack_unpoison(const gd_sched_t *sched, const struct coro_stack *stack)
{
#ifdef CORO_ASAN
    ASAN_UNPOISON_MEMORY_REGION(stack_lo(sched, stack), sched->stack_size);
#else
    (void)sched;
    (void)stack;
#endif
}

static void stack_release(gd_sched_t *sched, struct coro_stack *stack)
{
    stack_unpoison(sched, stack);
    if (sched->npooled < WARM_STACKS) {
        stack->next = sched->pool;
        sched->pool = stack;
        sched->npooled++;
        return;
    }
    /* The mapping (and its guard page) stays, so reuse costs page faults, not mmap and
     * mprotect; a failure only leaves the pages resident. */
    (void)madvise(stack_lo(sched, stack), sched->stack_size, MADV_DONTNEED);
    stack->next = sched->cold;
    sched->cold = stack;
}

static void stack_unmap(gd_sched_t *sched, struct coro_stack *stack)
{
    stack_unpoison(sched, stack);
#ifdef GD_HAVE_VALGRIND_H
    VALGRIND_STACK_DEREGISTER(stack->valgrind_id);
#endif
    /* munmap() of a range we mapped fails only on invalid arguments. */
    GD_REQUIRE(munmap(stack->map, sched->page_size + sched->stack_size) == 0);
    free(stack);
}

/* -- scheduler ---------------------------------------------------------------------------- */

gd_sched_t *gd_sched_new(uv_loop_t *loop, size_t stack_size, size_t max_live)
{
    long page = sysconf(_SC_PAGESIZE);
    gd_sched_t *sched;

    GD_REQUIRE(page > 0);
    GD_REQUIRE(stack_size <= SIZE_MAX - 2 * (size_t)page);
    if (stack_size == 0)
        stack_size = 1;
    sched = gd_xcalloc(1, sizeof(*sched));
    sched->loop = loop;
    sched->page_size = (size_t)page;
    sched->stack_size = (stack_size + sched->page_size - 1) / sched->page_size * sched->page_size;
    sched->max_live = max_live;
    sched->timers = gd_timers_new(loop);
    tls_sched = sched;
    return sched;
}

gd_sched_t *gd_sched_free(gd_sched_t *sched)
{
    if (sched == NULL)
        return NULL;
    GD_REQUIRE(sched->live == 0);
    for (struct coro_stack **list = &sched->pool; list != NULL;
         list = list == &sched->pool ? &sched->cold : NULL) {
        while (*list != NULL) {
            struct coro_stack *stack = *list;
            *list = stack->next;
            stack_unmap(sched, stack);
        }
    }
    sched->timers = gd_timers_free(sched->timers);
    if (tls_sched == sched)
        tls_sched = NULL;
    free(sched);
    return NULL;
}

gd_sched_t *gd_sched_current(void)
{
    return tls_sched;
}

gd_timers_t *gd_sched_timers(gd_sched_t *sched)
{
    return sched->timers;
}

size_t gd_sched_live(const gd_sched_t *sched)
{
    return sched->live;
}

/* -- coroutines --------------------------------------------------------------------------- */

static struct coro_ctx *resumer_ctx(gd_coro_t *co)
{
    return co->resumer != NULL ? &co->resumer->ctx : &co->sched->loop_ctx;
}

/* Runs on the coroutine's own stack, entered by the first switch into it. */
static void coro_entry(gd_coro_t *co)
{
    asan_switched(NULL);
    co->fn(co->arg);
    co->state = CORO_DEAD;
    tls_coro = co->resumer;
    /* The resumer frees the coroutine and its stack once it is off this stack (release()). */
    ctx_switch(&co->ctx, resumer_ctx(co), true);
    abort(); /* a dead coroutine is never switched into */
}

static void on_coro_timer(gd_timer_t *timer);
static void on_child_cancel(gd_task_t *task);

/* Creates a suspended coroutine that has not run yet. */
static int coro_new(gd_sched_t *sched, gd_coro_fn fn, void *arg, gd_coro_t **ret_coro)
{
    struct coro_stack *stack;
    gd_coro_t *co;
    int r;

    if (sched->live >= sched->max_live)
        return -EAGAIN;
    if ((r = stack_acquire(sched, &stack)) != 0)
        return r;
    co = gd_xcalloc(1, sizeof(*co));
    co->sched = sched;
    co->stack = stack;
    co->fn = fn;
    co->arg = arg;
    co->state = CORO_SUSPENDED;
    gd_timer_init(&co->timer, on_coro_timer);
    ctx_make(&co->ctx, stack_lo(sched, stack), sched->stack_size, co, coro_entry);
#ifdef CORO_ASAN
    co->ctx.asan_stack_bottom = stack_lo(sched, stack);
    co->ctx.asan_stack_size = sched->stack_size;
#endif
    sched->live++;
    *ret_coro = co;
    return 0;
}

/* Frees @co, dead, from outside its stack; then reports its group task, if any. */
static void release(gd_coro_t *co)
{
    gd_sched_t *sched = co->sched;

    gd_timer_stop(sched->timers, &co->timer);
    stack_release(sched, co->stack);
    sched->live--;
    if (co->has_task)
        gd_task_done(&co->task); /* may switch into the group's waiter */
    free(co);
}

/* Switches into suspended @co; back here when it yields or returns. */
static uint64_t monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void run(gd_coro_t *co)
{
    gd_coro_t *self = tls_coro;
    gd_sched_t *sched = co->sched;
    /* Only steps taken from the loop stack are timed: a nested resume is part of its resumer's. */
    bool is_timed = self == NULL && sched->is_timing_steps;
    uint64_t began_ns = is_timed ? monotonic_ns() : 0;

    co->resumer = self;
    co->state = CORO_RUNNING;
    tls_coro = co;
    ctx_switch(self != NULL ? &self->ctx : &sched->loop_ctx, &co->ctx, false);
    /* tls_coro == self again: whoever switched back here restored it. */
    if (is_timed) {
        uint64_t took_ns = monotonic_ns() - began_ns;
        if (took_ns > sched->longest_step_ns) {
            sched->longest_step_ns = took_ns;
            sched->longest_step_label = co->label; /* read before a dead coroutine is freed */
        }
    }
    if (co->state == CORO_DEAD)
        release(co);
}

void gd_sched_time_steps(gd_sched_t *sched, bool on)
{
    sched->is_timing_steps = on;
}

uint64_t gd_sched_take_longest_step(gd_sched_t *sched, const char **ret_label)
{
    uint64_t ns = sched->longest_step_ns;

    *ret_label = sched->longest_step_label;
    sched->longest_step_ns = 0;
    sched->longest_step_label = NULL;
    return ns;
}

void gd_coro_set_label(gd_coro_t *coro, const char *label)
{
    coro->label = label;
}

int gd_coro_spawn(gd_sched_t *sched, gd_coro_fn fn, void *arg, gd_coro_t **ret_coro)
{
    gd_coro_t *co;
    int r;

    if ((r = coro_new(sched, fn, arg, &co)) != 0)
        return r;
    /* Written before @fn runs, so that it can read it through @arg; @co may be gone by the
     * time run() returns, together with the memory @ret_coro points to. */
    if (ret_coro != NULL)
        *ret_coro = co;
    run(co);
    return 0;
}

gd_coro_t *gd_coro_current(void)
{
    return tls_coro;
}

void gd_coro_yield(void)
{
    gd_coro_t *self = tls_coro;

    GD_REQUIRE(self != NULL);
    self->state = CORO_SUSPENDED;
    tls_coro = self->resumer;
    ctx_switch(&self->ctx, resumer_ctx(self), false);
}

void gd_coro_resume(gd_coro_t *coro)
{
    /* Also refuses a coroutine in the caller's own chain of resumers: those are running. */
    GD_REQUIRE(coro->state == CORO_SUSPENDED);
    run(coro);
}

/* The sleep is over, or gd_coro_cancel() wants the coroutine awake. */
static void on_coro_timer(gd_timer_t *timer)
{
    gd_coro_t *co = CONTAINER_OF(timer, gd_coro_t, timer);

    /* Timers fire on the loop stack, where no coroutine is running. */
    GD_REQUIRE(co->state == CORO_SUSPENDED && co->wait != WAIT_NONE);
    run(co);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int gd_coro_sleep(uint64_t ms)
{
    gd_coro_t *self = tls_coro;
    gd_timers_t *timers;
    uint64_t end_ns, now_ns, wait_ms = ms;

    GD_REQUIRE(self != NULL);
    if (self->is_cancelled)
        return -ECANCELED;
    timers = self->sched->timers;
    end_ns = add_sat(uv_hrtime(), ms > UINT64_MAX / 1000000 ? UINT64_MAX : ms * 1000000);
    self->wait = WAIT_SLEEP;
    for (;;) {
        gd_timer_start(timers, &self->timer, add_sat(gd_timers_now(timers), wait_ms));
        while (gd_timer_is_active(&self->timer))
            gd_coro_yield(); /* loops when resumed by anything but the timer */
        if (self->is_cancelled)
            break;
        /* The loop's clock counts whole ms and lags uv_hrtime() by up to a tick, so the timer
         * can fire slightly early; never sleep less than asked. */
        now_ns = uv_hrtime();
        if (now_ns >= end_ns)
            break;
        wait_ms = (end_ns - now_ns + 999999) / 1000000;
    }
    self->wait = WAIT_NONE;
    return self->is_cancelled ? -ECANCELED : 0;
}

void gd_coro_cancel(gd_coro_t *coro)
{
    GD_REQUIRE(coro->state != CORO_DEAD);
    if (coro->is_cancelled)
        return;
    coro->is_cancelled = true;
    if (coro->wait != WAIT_NONE) {
        /* Due now, so it fires on the next loop iteration: never a switch from in here. A
         * sleep's own timer is simply moved forward. */
        gd_timers_t *timers = coro->sched->timers;
        gd_timer_start(timers, &coro->timer, gd_timers_now(timers));
    }
}

bool gd_coro_is_cancelled(void)
{
    return tls_coro != NULL && tls_coro->is_cancelled;
}

/* -- groups ------------------------------------------------------------------------------- */

static void task_unlink(gd_task_t *task)
{
    task->_prev->_next = task->_next;
    task->_next->_prev = task->_prev;
    task->_next = task->_prev = NULL;
}

static void task_link_after(gd_task_t *pos, gd_task_t *task)
{
    task->_prev = pos;
    task->_next = pos->_next;
    pos->_next->_prev = task;
    pos->_next = task;
}

static void on_group_deadline(gd_timer_t *timer);

void gd_group_init(gd_group_t *group, gd_sched_t *sched)
{
    memset(group, 0, sizeof(*group));
    group->_sched = sched;
    group->_head._next = group->_head._prev = &group->_head;
    gd_timer_init(&group->_deadline, on_group_deadline);
}

void gd_group_add(gd_group_t *group, gd_task_t *task, gd_task_cancel_cb cancel)
{
    task->_group = group;
    task->_cancel = cancel;
    task->_is_done = false;
    /* Tasks still to be asked to stop come first, those asked already (or that cannot be)
     * last: cancel_pending() relies on it. */
    task_link_after(cancel != NULL ? &group->_head : group->_head._prev, task);
    group->_pending++;
}

/* Switches into the waiter if it waits and nothing is pending. Touches @group no more
 * afterwards: the waiter may have disposed of it. */
static void wake_waiter_if_done(gd_group_t *group)
{
    gd_coro_t *waiter = group->_waiter;

    if ((group->_pending > 0 && !group->_wakes_on_each) || waiter == NULL)
        return;
    group->_waiter = NULL;
    gd_coro_resume(waiter);
}

/* Calls the cancel callback of every pending task not yet asked to stop. */
static void cancel_pending(gd_group_t *group)
{
    gd_coro_t *waiter = group->_waiter;
    gd_task_t *task;

    /* A task may report from inside its callback: the waiter must not run (and perhaps
     * dispose of the group) before this loop is done with it. The caller wakes it after. */
    group->_waiter = NULL;
    while ((task = group->_head._next) != &group->_head && task->_cancel != NULL) {
        gd_task_cancel_cb cancel = task->_cancel;
        task->_cancel = NULL;
        task_unlink(task);
        task_link_after(group->_head._prev, task);
        cancel(task);
    }
    group->_waiter = waiter;
}

/* Cancels @group for good: its pending tasks now, those added later at the next wait. */
static void cancel_group(gd_group_t *group)
{
    if (!group->_is_cancelled) {
        group->_is_cancelled = true;
        gd_timer_stop(group->_sched->timers, &group->_deadline);
    }
    cancel_pending(group);
}

static void on_group_deadline(gd_timer_t *timer)
{
    gd_group_t *group = CONTAINER_OF(timer, gd_group_t, _deadline);

    /* A cancelled group's deadline is stopped: the timer firing then is the wake-up that
     * gd_group_cancel() deferred. */
    if (!group->_is_cancelled) {
        group->_has_timed_out = true;
        cancel_pending(group);
    }
    wake_waiter_if_done(group);
}

void gd_task_done(gd_task_t *task)
{
    gd_group_t *group = task->_group;

    GD_REQUIRE(group != NULL && !task->_is_done && group->_pending > 0);
    task_unlink(task);
    task->_cancel = NULL;
    task->_is_done = true;
    group->_pending--;
    group->_ndone++;
    wake_waiter_if_done(group);
}

bool gd_task_is_done(const gd_task_t *task)
{
    return task->_is_done;
}

static void on_child_cancel(gd_task_t *task)
{
    gd_coro_cancel(CONTAINER_OF(task, gd_coro_t, task));
}

int gd_group_spawn(gd_group_t *group, gd_coro_fn fn, void *arg)
{
    gd_coro_t *co;
    int r;

    if ((r = coro_new(group->_sched, fn, arg, &co)) != 0)
        return r;
    /* Added before the child runs: it may return, and report, before run() does. */
    co->has_task = true;
    gd_group_add(group, &co->task, on_child_cancel);
    run(co);
    return 0;
}

int gd_group_wait(gd_group_t *group, uint64_t deadline_ms)
{
    gd_coro_t *self = tls_coro;
    gd_timers_t *timers = group->_sched->timers;

    GD_REQUIRE(self != NULL && group->_waiter == NULL);
    group->_has_timed_out = false;
    if (self->is_cancelled || group->_is_cancelled)
        cancel_group(group); /* also stops tasks added since a gd_group_cancel() */
    else if (group->_pending > 0)
        gd_timer_start(timers, &group->_deadline, deadline_ms);
    self->wait = WAIT_GROUP;
    while (group->_pending > 0) {
        group->_waiter = self;
        gd_coro_yield(); /* until the last task reports, or gd_coro_cancel() */
        group->_waiter = NULL;
        if (self->is_cancelled && !group->_is_cancelled)
            cancel_group(group);
    }
    self->wait = WAIT_NONE;
    gd_timer_stop(timers, &self->timer); /* a gd_coro_cancel() wake-up not yet fired */
    gd_timer_stop(timers, &group->_deadline);
    if (group->_has_timed_out)
        return -ETIMEDOUT;
    return group->_is_cancelled ? -ECANCELED : 0;
}

int gd_group_wait_any(gd_group_t *group, uint64_t deadline_ms)
{
    gd_coro_t *self = tls_coro;
    gd_timers_t *timers = group->_sched->timers;

    GD_REQUIRE(self != NULL && group->_waiter == NULL);
    group->_has_timed_out = false;
    if (self->is_cancelled || group->_is_cancelled)
        cancel_group(group);
    else if (group->_pending > 0 && group->_ndone == group->_ndone_seen)
        gd_timer_start(timers, &group->_deadline, deadline_ms);
    self->wait = WAIT_GROUP;
    group->_wakes_on_each = true;
    /* Once cancelled or past the deadline, the wait lasts until every task has reported. */
    while (group->_pending > 0 &&
           (group->_ndone == group->_ndone_seen || group->_is_cancelled || group->_has_timed_out)) {
        group->_waiter = self;
        gd_coro_yield();
        group->_waiter = NULL;
        if (self->is_cancelled && !group->_is_cancelled)
            cancel_group(group);
    }
    group->_wakes_on_each = false;
    group->_ndone_seen = group->_ndone;
    self->wait = WAIT_NONE;
    gd_timer_stop(timers, &self->timer);
    gd_timer_stop(timers, &group->_deadline);
    if (group->_has_timed_out)
        return -ETIMEDOUT;
    return group->_is_cancelled ? -ECANCELED : 0;
}

void gd_group_cancel(gd_group_t *group)
{
    cancel_group(group);
    /* Never a switch into the waiter from in here: the caller may be h2o's dispose callback,
     * and the waiter would answer, log and start the next request inside it. */
    if (group->_waiter != NULL && group->_pending == 0) {
        gd_timers_t *timers = group->_sched->timers;
        gd_timer_start(timers, &group->_deadline, gd_timers_now(timers));
    }
}

void gd_group_dispose(gd_group_t *group)
{
    GD_REQUIRE(group->_pending == 0 && group->_waiter == NULL);
    gd_timer_stop(group->_sched->timers, &group->_deadline);
}
