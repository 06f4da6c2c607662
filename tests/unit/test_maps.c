/*
 * test_maps.c — parsing /proc/PID/maps (target/maps.h).
 *
 * maps_parse on realistic text copied from real maps files (paths with
 * spaces, " (deleted)" suffixes, anonymous mappings, [heap], [vdso],
 * [vsyscall], wide device numbers, a last line without a newline, junk lines
 * that must be skipped), maps_first_of and maps_find at their boundaries, and
 * maps_read on this very process (it must find the test binary and the code
 * of this file), on a reaped child (PM_ENOTFOUND) and on a zombie (PM_EGONE).
 * Every expected value is exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "target/maps.h"

/* A maps file as the kernel writes it (columns padded to 73 characters). */
static const char REAL_MAPS[] =
    "55d0c4a00000-55d0c4a01000 r--p 00000000 fd:01 1317119                    /usr/bin/python3.11\n"
    "55d0c4a01000-55d0c4d5c000 r-xp 00001000 fd:01 1317119                    /usr/bin/python3.11\n"
    "55d0c5e6b000-55d0c5f4e000 rw-p 00000000 00:00 0                          [heap]\n"
    "7f1c2a000000-7f1c2a021000 r--p 00000000 103:02 98765432101               /opt/My Apps/lib/libpython3.12.so.1.0\n"
    "7f1c2a021000-7f1c2a2ff000 r-xp 00021000 103:02 98765432101               /opt/My Apps/lib/libpython3.12.so.1.0\n"
    "7f1c2a400000-7f1c2a401000 rw-s 00000000 00:05 4242                       /dev/shm/stale segment (deleted)\n"
    "7f1c2a500000-7f1c2a600000 rw-p 00000000 00:00 0 \n"
    "7f1c2a600000-7f1c2a700000 ---p 00000000 00:00 0\n"
    "7ffd5e9c5000-7ffd5e9e6000 rw-p 00000000 00:00 0                          [stack]\n"
    "7ffd5e9f1000-7ffd5e9f3000 r-xp 00000000 00:00 0                          [vdso]\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]";

static void expect_entry(const struct map_entry *e, uint64_t start, uint64_t end,
                         uint64_t offset, const char *perms, uint64_t inode, const char *path)
{
    assert_non_null(e);
    assert_int_equal(e->start, start);
    assert_int_equal(e->end, end);
    assert_int_equal(e->offset, offset);
    assert_string_equal(e->perms, perms);
    assert_int_equal(e->inode, inode);
    assert_string_equal(e->path, path);
}

static void test_parse_real_text(void **state)
{
    (void)state;
    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(maps_parse(REAL_MAPS, &m, &err), 0);
    assert_int_equal(m.count, 11);
    expect_entry(&m.entries[0], 0x55d0c4a00000ull, 0x55d0c4a01000ull, 0, "r--p", 1317119,
                 "/usr/bin/python3.11");
    expect_entry(&m.entries[1], 0x55d0c4a01000ull, 0x55d0c4d5c000ull, 0x1000, "r-xp", 1317119,
                 "/usr/bin/python3.11");
    expect_entry(&m.entries[2], 0x55d0c5e6b000ull, 0x55d0c5f4e000ull, 0, "rw-p", 0, "[heap]");
    expect_entry(&m.entries[3], 0x7f1c2a000000ull, 0x7f1c2a021000ull, 0, "r--p", 98765432101ull,
                 "/opt/My Apps/lib/libpython3.12.so.1.0");
    expect_entry(&m.entries[4], 0x7f1c2a021000ull, 0x7f1c2a2ff000ull, 0x21000, "r-xp",
                 98765432101ull, "/opt/My Apps/lib/libpython3.12.so.1.0");
    expect_entry(&m.entries[5], 0x7f1c2a400000ull, 0x7f1c2a401000ull, 0, "rw-s", 4242,
                 "/dev/shm/stale segment (deleted)");
    /* anonymous, with the kernel's trailing space and without it */
    expect_entry(&m.entries[6], 0x7f1c2a500000ull, 0x7f1c2a600000ull, 0, "rw-p", 0, "");
    expect_entry(&m.entries[7], 0x7f1c2a600000ull, 0x7f1c2a700000ull, 0, "---p", 0, "");
    expect_entry(&m.entries[8], 0x7ffd5e9c5000ull, 0x7ffd5e9e6000ull, 0, "rw-p", 0, "[stack]");
    expect_entry(&m.entries[9], 0x7ffd5e9f1000ull, 0x7ffd5e9f3000ull, 0, "r-xp", 0, "[vdso]");
    /* last line has no newline */
    expect_entry(&m.entries[10], 0xffffffffff600000ull, 0xffffffffff601000ull, 0, "--xp", 0,
                 "[vsyscall]");
    maps_free(&m);
    assert_null(m.entries);
    assert_int_equal(m.count, 0);
}

static void test_parse_skips_junk_lines(void **state)
{
    (void)state;
    static const char text[] =
        "\n"
        "garbage line\n"
        "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n"
        "zzzz-yyyy r-xp 00000000 08:02 1 /nope\n"
        "00651000-00652000 r--p\n"                   /* cut short: no offset, no inode */
        "00652000-00655000 rw-p 00052000 08:02 173521      /usr/bin/dbus-daemon\n"
        "   \n";
    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(maps_parse(text, &m, &err), 0);
    assert_int_equal(m.count, 2);
    expect_entry(&m.entries[0], 0x400000, 0x452000, 0, "r-xp", 173521, "/usr/bin/dbus-daemon");
    expect_entry(&m.entries[1], 0x652000, 0x655000, 0x52000, "rw-p", 173521,
                 "/usr/bin/dbus-daemon");
    maps_free(&m);
}

static void test_parse_empty(void **state)
{
    (void)state;
    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(maps_parse("", &m, &err), 0);
    assert_int_equal(m.count, 0);
    assert_null(maps_first_of(&m, "/usr/bin/python3.11"));
    assert_null(maps_find(&m, 0x1000));
    maps_free(&m);
}

/* More lines than the first allocation (64) holds. */
static void test_parse_many_lines(void **state)
{
    (void)state;
    size_t n = 1000, cap = n * 100 + 1, used = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(text + used, cap - used,
                                 "%llx-%llx r--p %08zx fd:01 %zu /lib/file%zu.so\n",
                                 0x10000000ull + i * 0x2000ull, 0x10001000ull + i * 0x2000ull,
                                 i * 0x1000, i + 1, i % 7);
    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(maps_parse(text, &m, &err), 0);
    free(text);
    assert_int_equal(m.count, n);
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "/lib/file%zu.so", i % 7);
        expect_entry(&m.entries[i], 0x10000000ull + i * 0x2000ull, 0x10001000ull + i * 0x2000ull,
                     i * 0x1000, "r--p", i + 1, path);
    }
    /* lowest of the mappings of file3: entry 3 */
    const struct map_entry *first = maps_first_of(&m, "/lib/file3.so");
    assert_ptr_equal(first, &m.entries[3]);
    /* a gap between mappings belongs to nobody */
    assert_null(maps_find(&m, 0x10001000ull));
    assert_ptr_equal(maps_find(&m, 0x10000000ull + 999 * 0x2000ull + 0xfff), &m.entries[999]);
    maps_free(&m);
}

static void test_first_of_picks_lowest_address(void **state)
{
    (void)state;
    /* out of address order on purpose */
    static const char text[] =
        "7f0000003000-7f0000004000 rw-p 00003000 fd:01 7 /usr/lib/libpython3.10.so.1.0\n"
        "7f0000001000-7f0000002000 r-xp 00001000 fd:01 7 /usr/lib/libpython3.10.so.1.0\n"
        "7f0000000000-7f0000001000 r--p 00000000 fd:01 7 /usr/lib/libpython3.10.so.1.0\n"
        "7f0000005000-7f0000006000 r--p 00000000 fd:01 8 /usr/lib/libpython3.10.so.1.0.bak\n"
        "7e0000000000-7e0000001000 r--p 00000000 fd:01 9 /usr/lib/libpython3.10.so\n";
    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(maps_parse(text, &m, &err), 0);
    assert_int_equal(m.count, 5);
    /* exact path match only: neither the .bak nor the shorter name */
    assert_ptr_equal(maps_first_of(&m, "/usr/lib/libpython3.10.so.1.0"), &m.entries[2]);
    assert_ptr_equal(maps_first_of(&m, "/usr/lib/libpython3.10.so"), &m.entries[4]);
    assert_ptr_equal(maps_first_of(&m, "/usr/lib/libpython3.10.so.1.0.bak"), &m.entries[3]);
    assert_null(maps_first_of(&m, "/usr/lib/libpython3.10"));
    assert_null(maps_first_of(&m, "libpython3.10.so.1.0"));
    assert_null(maps_first_of(&m, ""));
    maps_free(&m);
}

static void test_find_boundaries(void **state)
{
    (void)state;
    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(maps_parse(REAL_MAPS, &m, &err), 0);
    /* start is inside, end is not: [start, end) */
    assert_ptr_equal(maps_find(&m, 0x55d0c4a00000ull), &m.entries[0]);
    assert_ptr_equal(maps_find(&m, 0x55d0c4a00fffull), &m.entries[0]);
    assert_ptr_equal(maps_find(&m, 0x55d0c4a01000ull), &m.entries[1]);
    assert_ptr_equal(maps_find(&m, 0x55d0c4d5bfffull), &m.entries[1]);
    assert_null(maps_find(&m, 0x55d0c4d5c000ull));
    assert_null(maps_find(&m, 0x55d0c49fffffull));
    assert_null(maps_find(&m, 0));
    assert_ptr_equal(maps_find(&m, 0x7f1c2a021000ull + 5), &m.entries[4]);
    assert_ptr_equal(maps_find(&m, 0x7f1c2a5fffffull), &m.entries[6]);
    assert_ptr_equal(maps_find(&m, 0xffffffffff600800ull), &m.entries[10]);
    assert_null(maps_find(&m, 0xffffffffff601000ull));
    assert_null(maps_find(&m, UINT64_MAX));
    maps_free(&m);
}

/* ---- live processes ----------------------------------------------------- */

static void test_read_self_finds_test_binary(void **state)
{
    (void)state;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';

    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(maps_read(getpid(), &m, &err), 0);
    assert_true(m.count > 5);

    const struct map_entry *first = maps_first_of(&m, exe);
    assert_non_null(first);
    assert_int_equal(first->offset, 0);
    /* the code of this very function lives in an executable mapping of exe */
    uint64_t code = (uint64_t)(uintptr_t)&test_read_self_finds_test_binary;
    const struct map_entry *text = maps_find(&m, code);
    assert_non_null(text);
    assert_string_equal(text->path, exe);
    assert_int_equal(text->perms[2], 'x');
    assert_true(text->start <= code && code < text->end);
    assert_true(first->start <= text->start);
    assert_int_equal(text->inode, first->inode);
    assert_true(text->inode != 0);

    /* the vdso is always there, anonymous and named */
    int vdso = 0;
    for (size_t i = 0; i < m.count; i++) {
        assert_true(m.entries[i].start < m.entries[i].end);
        assert_int_equal(strlen(m.entries[i].perms), 4);
        if (strcmp(m.entries[i].path, "[vdso]") == 0)
            vdso++;
        /* the kernel ends an anonymous line with "0 \n": that must not
         * pull the next line in as a path */
        const char *path = m.entries[i].path;
        if (path[0] != '\0' && path[0] != '/' && path[0] != '[')
            fail_msg("entry %zu at 0x%llx has path \"%s\"", i,
                     (unsigned long long)m.entries[i].start, path);
        if (i > 0)
            assert_true(m.entries[i - 1].end <= m.entries[i].start);
    }
    assert_int_equal(vdso, 1);
    maps_free(&m);
}

static void test_read_dead_pid_not_found(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);

    struct proc_maps m = {0};
    struct pm_error err = {0};
    assert_int_equal(maps_read(child, &m, &err), -1);
    assert_int_equal(err.code, PM_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no process"));
    assert_int_equal(m.count, 0);
}

static void test_read_absurd_pid_not_found(void **state)
{
    (void)state;
    struct proc_maps m = {0};
    struct pm_error err = {0};
    assert_int_equal(maps_read(-1, &m, &err), -1);
    assert_int_equal(err.code, PM_ENOTFOUND);
    assert_int_equal(maps_read(0x7ffffff0, &m, &err), -1);
    assert_int_equal(err.code, PM_ENOTFOUND);
}

/* A zombie still has /proc/PID but an empty map. */
static void test_read_zombie_is_gone(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    char path[64], stat[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)child);
    int zombie = 0;
    for (int tries = 0; tries < 2000 && !zombie; tries++) {
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            size_t got = fread(stat, 1, sizeof stat - 1, f);
            stat[got] = '\0';
            fclose(f);
            const char *paren = strrchr(stat, ')');
            zombie = paren != NULL && paren[1] == ' ' && paren[2] == 'Z';
        }
        if (!zombie)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    struct proc_maps m = {0};
    struct pm_error err = {0};
    int rc = maps_read(child, &m, &err);
    int status;
    waitpid(child, &status, 0);
    assert_true(zombie);
    assert_int_equal(rc, -1);
    assert_int_equal(err.code, PM_EGONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_real_text),
        cmocka_unit_test(test_parse_skips_junk_lines),
        cmocka_unit_test(test_parse_empty),
        cmocka_unit_test(test_parse_many_lines),
        cmocka_unit_test(test_first_of_picks_lowest_address),
        cmocka_unit_test(test_find_boundaries),
        cmocka_unit_test(test_read_self_finds_test_binary),
        cmocka_unit_test(test_read_dead_pid_not_found),
        cmocka_unit_test(test_read_absurd_pid_not_found),
        cmocka_unit_test(test_read_zombie_is_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
