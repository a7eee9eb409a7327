#include "runner.h"

#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#define CASE_TIMEOUT_S 30

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GD_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define GD_TEST_ASAN 1
#endif
#ifdef GD_TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* A case ends with _exit(), which skips LeakSanitizer's atexit check: the check runs here, so
 * that a leak fails the case that leaked (valgrind checks at any exit by itself). */
static void check_leaks(void)
{
#ifdef GD_TEST_ASAN
    if (__lsan_do_recoverable_leak_check() != 0) {
        fprintf(stderr, "LeakSanitizer found leaks\n");
        fflush(stderr);
        _exit(1);
    }
#endif
}

void gd__test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

static int is_selected(const char *name, int argc, char **argv)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

/* Runs @tc in a child so that a crash or a hang fails only this case, and names it. */
static int run_case(const gd_test_case_t *tc)
{
    int status;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    if ((pid = fork()) < 0) {
        perror("fork");
        return 0;
    }
    if (pid == 0) {
        alarm(CASE_TIMEOUT_S);
        tc->fn();
        check_leaks();
        fflush(stdout);
        _exit(0);
    }
    if (waitpid(pid, &status, 0) < 0) {
        perror("waitpid");
        return 0;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    if (WIFSIGNALED(status))
        fprintf(stderr, "case %s: killed by signal %d%s\n", tc->name, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    else
        fprintf(stderr, "case %s: exit status %d\n", tc->name, WEXITSTATUS(status));
    return 0;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;

    for (const gd_test_case_t *tc = gd_test_cases; tc->name != NULL; tc++) {
        if (!is_selected(tc->name, argc, argv))
            continue;
        if (run_case(tc)) {
            printf("ok %s\n", tc->name);
            passed++;
        } else {
            printf("FAIL %s\n", tc->name);
            failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
