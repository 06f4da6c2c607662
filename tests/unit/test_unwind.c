/*
 * test_unwind.c — pausing a thread and unwinding its native stack
 * (target/unwind.h) and naming addresses (target/symbols.h), on real
 * processes: children of this test forked into known call chains.
 *
 *   - a child spinning in level_three <- level_two <- level_one <- main:
 *     the unwind names all four in order, reaches the outermost frame, and
 *     the child is in a ptrace stop ('t') exactly while while_stopped runs
 *     and running again after;
 *   - a child asleep in the kernel (nanosleep): the unwind goes through
 *     libc back to sleeper_loop;
 *   - a child stopped by SIGSTOP stays stopped after an unwind;
 *   - a child that has exited: PM_ETORN/PM_EGONE, never a hang;
 *   - symbols_lookup on this process: a function of this file by name, an
 *     address in libc by module, an unmapped address not at all.
 * Skipped (not failed) where ptrace is not permitted.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "target/symbols.h"
#include "target/unwind.h"

static volatile unsigned long sink;
/* shared with the children: set once they are where the test wants them */
static volatile int *child_ready;
static pid_t children[8];
static size_t nchildren;

__attribute__((noinline)) static void level_three(void)
{
    *child_ready = 1;
    for (;;)
        sink = sink * 7 + 1;
}

__attribute__((noinline)) static void level_two(void)
{
    level_three();
    sink++;   /* not a tail call */
}

__attribute__((noinline)) static void level_one(void)
{
    level_two();
    sink++;
}

__attribute__((noinline)) static void sleeper_loop(void)
{
    *child_ready = 1;
    for (;;) {
        struct timespec ts = {3600, 0};
        nanosleep(&ts, NULL);
        sink++;
    }
}

static void reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (size_t i = 0; i < nchildren; i++)
        if (children[i] == pid)
            children[i] = children[--nchildren];
}

/* Fork a child running fn and wait until it is inside it; it dies with us
 * (and with a failing test: see kill_children). */
static pid_t spawn(void (*fn)(void))
{
    if (child_ready == NULL) {
        void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        assert_true(page != MAP_FAILED);
        child_ready = page;
    }
    *child_ready = 0;
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        fn();
        _exit(0);
    }
    assert_true(nchildren < sizeof children / sizeof *children);
    children[nchildren++] = pid;
    for (int i = 0; i < 5000 && !*child_ready; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_true(*child_ready);
    return pid;
}

static int kill_children(void **state)
{
    (void)state;
    while (nchildren > 0)
        reap(children[nchildren - 1]);
    return 0;
}

static char thread_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *close = strrchr(buf, ')');
    return close && close[1] == ' ' ? close[2] : 0;
}

/* Wait until the child is in state `want` (bounded). */
static void wait_state(pid_t pid, const char *want)
{
    for (int i = 0; i < 2000; i++) {
        char s = thread_state(pid);
        if (s && strchr(want, s))
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("child %d never reached state [%s] (is %c)", (int)pid, want, thread_state(pid));
}

static int index_of(const struct native_frame *f, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].name && strcmp(f[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void dump_frames(const struct native_frame *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        print_message("  #%zu 0x%llx %s (%s)\n", i, (unsigned long long)f[i].ip,
                      f[i].name ? f[i].name : "?", f[i].module ? f[i].module : "?");
}

/* Unwind pid's main thread; skips the test when ptrace is not allowed. */
static int unwind_or_skip(struct native_unwinder *u, pid_t pid, struct native_frame *out,
                          size_t cap, size_t *depth, native_stopped_fn fn, void *ctx)
{
    struct pm_error err = {0};
    int rc = native_unwind(u, pid, out, cap, depth, fn, ctx, &err);
    if (rc < 0 && err.code == PM_EPERM) {
        print_message("ptrace not permitted here: %s\n", err.msg);
        skip();
    }
    if (rc < 0)
        fail_msg("native_unwind: %s", err.msg);
    return rc;
}

struct held_check {
    pid_t pid;
    char state;
    int calls;
};

static void check_held(void *ctx)
{
    struct held_check *h = ctx;
    h->state = thread_state(h->pid);
    h->calls++;
}

static void test_unwind_spinning_child(void **state)
{
    (void)state;
    pid_t pid = spawn(level_one);
    wait_state(pid, "R");
    struct pm_error err = {0};
    struct native_unwinder *u = native_unwinder_new(pid, &err);
    assert_non_null(u);
    for (int round = 0; round < 20; round++) {
        struct native_frame frames[128];
        size_t depth = 0;
        struct held_check held = {pid, 0, 0};
        int rc = unwind_or_skip(u, pid, frames, 128, &depth, check_held, &held);
        assert_int_equal(held.calls, 1);
        assert_int_equal(held.state, 't');
        int three = index_of(frames, depth, "level_three");
        int two = index_of(frames, depth, "level_two");
        int one = index_of(frames, depth, "level_one");
        int main_at = index_of(frames, depth, "main");
        if (rc != 0 || three != 0 || two != 1 || one != 2 || main_at < 3) {
            dump_frames(frames, depth);
            fail_msg("round %d: rc %d, level_three at %d, level_two at %d, level_one at %d, "
                     "main at %d", round, rc, three, two, one, main_at);
        }
        for (int i = 0; i <= 2; i++)
            assert_non_null(strstr(frames[i].module, "test_unwind"));
        char after = thread_state(pid);
        assert_true(after == 'R' || after == 'S');
    }
    struct native_unwind_stats st = native_unwinder_stats(u);
    assert_int_equal(st.unwinds, 20);
    assert_true(st.pause_ns_max > 0);
    assert_int_equal(st.stop_timeouts, 0);
    native_unwinder_free(u);
    /* released: never left traced */
    char s = thread_state(pid);
    assert_true(s == 'R' || s == 'S');
    reap(pid);
}

static void test_unwind_sleeping_child(void **state)
{
    (void)state;
    pid_t pid = spawn(sleeper_loop);
    wait_state(pid, "S");
    struct pm_error err = {0};
    struct native_unwinder *u = native_unwinder_new(pid, &err);
    assert_non_null(u);
    struct native_frame frames[128];
    size_t depth = 0;
    int rc = unwind_or_skip(u, pid, frames, 128, &depth, NULL, NULL);
    int loop = index_of(frames, depth, "sleeper_loop");
    if (rc != 0 || loop < 1 || index_of(frames, depth, "main") <= loop) {
        dump_frames(frames, depth);
        fail_msg("rc %d, sleeper_loop at %d", rc, loop);
    }
    /* the innermost frame is in libc (the nanosleep system call) */
    assert_non_null(frames[0].module);
    assert_non_null(strstr(frames[0].module, "libc"));
    native_unwinder_free(u);
    /* the interrupted sleep goes on: still asleep, not woken for good */
    wait_state(pid, "S");
    reap(pid);
}

static void test_unwind_stopped_child_stays_stopped(void **state)
{
    (void)state;
    pid_t pid = spawn(level_one);
    wait_state(pid, "R");
    kill(pid, SIGSTOP);
    wait_state(pid, "T");
    struct pm_error err = {0};
    struct native_unwinder *u = native_unwinder_new(pid, &err);
    assert_non_null(u);
    struct native_frame frames[128];
    size_t depth = 0;
    unwind_or_skip(u, pid, frames, 128, &depth, NULL, NULL);
    assert_int_equal(index_of(frames, depth, "level_three"), 0);
    native_unwinder_free(u);
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    assert_int_equal(thread_state(pid), 'T');
    kill(pid, SIGCONT);
    wait_state(pid, "R");
    reap(pid);
}

static void test_unwind_exited_thread(void **state)
{
    (void)state;
    pid_t pid = spawn(level_one);
    wait_state(pid, "R");
    struct pm_error err = {0};
    struct native_unwinder *u = native_unwinder_new(pid, &err);
    assert_non_null(u);
    reap(pid);
    struct native_frame frames[16];
    size_t depth = 7;
    assert_int_equal(native_unwind(u, pid, frames, 16, &depth, NULL, NULL, &err), -1);
    assert_true(err.code == PM_ETORN || err.code == PM_EGONE);
    assert_int_equal(depth, 0);
    native_unwinder_free(u);
}

static void test_symbols_self(void **state)
{
    (void)state;
    struct symbols *s = NULL;
    struct pm_error err = {0};
    assert_int_equal(symbols_open(getpid(), &s, &err), 0);
    struct native_symbol sym;
    uint64_t addr = (uint64_t)(uintptr_t)&level_two;
    assert_int_equal(symbols_lookup(s, addr + 1, &sym), 0);
    assert_non_null(sym.name);
    assert_string_equal(sym.name, "level_two");
    assert_int_equal(sym.offset, 1);
    assert_non_null(strstr(sym.module, "test_unwind"));
    /* a libc function: named by its module at least */
    assert_int_equal(symbols_lookup(s, (uint64_t)(uintptr_t)&nanosleep, &sym), 0);
    assert_non_null(strstr(sym.module, "libc"));
    assert_non_null(sym.name);
    /* page 0 is never mapped */
    assert_int_equal(symbols_lookup(s, 16, &sym), -1);
    assert_null(sym.module);
    assert_null(sym.name);
    /* code is static (cacheable), the stack is not */
    uint64_t end = 0;
    assert_int_equal(symbols_is_static(s, addr, &end), 1);
    assert_true(end > addr);
    int local = 0;
    assert_int_equal(symbols_is_static(s, (uint64_t)(uintptr_t)&local, &end), 0);
    /* this binary has an .eh_frame_hdr */
    struct unwind_table t;
    assert_int_equal(symbols_unwind_table(s, addr, &t), 0);
    assert_true(t.start <= addr && addr < t.end && t.hdr_len >= 4);
    symbols_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_unwind_spinning_child, kill_children),
        cmocka_unit_test_teardown(test_unwind_sleeping_child, kill_children),
        cmocka_unit_test_teardown(test_unwind_stopped_child_stays_stopped, kill_children),
        cmocka_unit_test_teardown(test_unwind_exited_thread, kill_children),
        cmocka_unit_test(test_symbols_self),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
