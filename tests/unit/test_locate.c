/*
 * test_locate.c — finding CPython in a process (python/locate.h).
 *
 * py_version_parse and py_version_from_hex on exact strings and values, then
 * py_locate against real processes: every installed interpreter (pyenv 2.7,
 * 3.6–3.13, shared libpython builds, and Debian's static
 * /usr/bin/python3.11) is started sleeping, and the located binary, version,
 * _PyRuntime (3.7+) or the statics standing in for it (2.7, 3.6:
 * interp_head, _PyThreadState_Current, 3.6's GIL) and type objects are
 * checked against the truth: the version the interpreter prints itself, the
 * mappings of the child, and sizeof(_PyRuntimeState) from the generated
 * layout tables.  A 2.7 running a stripped copy of its libpython must be
 * refused by py_attach with PM_EUNSUPPORTED naming the version and the
 * stripping.  A missing interpreter skips its own test with a message.
 * Non-Python processes must give PM_ENOTPYTHON.  Children are killed in
 * teardown (and by PR_SET_PDEATHSIG if this test dies).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <glob.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "python/layout.h"
#include "python/locate.h"
#include "python/process.h"
#include "target/maps.h"

/* ---- versions ----------------------------------------------------------- */

static void expect_parse(const char *s, int major, int minor, int micro)
{
    struct py_version v;
    memset(&v, 0x5a, sizeof v);
    if (py_version_parse(s, &v) != 0)
        fail_msg("py_version_parse(\"%s\") refused", s);
    assert_int_equal(v.major, major);
    assert_int_equal(v.minor, minor);
    assert_int_equal(v.micro, micro);
    assert_string_equal(v.text, s);
}

static void expect_reject(const char *s)
{
    struct py_version v;
    if (py_version_parse(s, &v) == 0)
        fail_msg("py_version_parse(\"%s\") accepted as %d.%d.%d \"%s\"", s, v.major, v.minor,
                 v.micro, v.text);
}

static void test_version_parse_accepts(void **state)
{
    (void)state;
    expect_parse("3.12.1", 3, 12, 1);
    expect_parse("3.13.0rc2", 3, 13, 0);
    expect_parse("2.7.18", 2, 7, 18);
    expect_parse("3.9.18+", 3, 9, 18);
    expect_parse("3.8.0", 3, 8, 0);
    expect_parse("3.15.0a1", 3, 15, 0);
    expect_parse("3.11.0b4", 3, 11, 0);
    expect_parse("3.10.13", 3, 10, 13);
}

static void test_version_parse_rejects(void **state)
{
    (void)state;
    expect_reject("3.x");
    expect_reject("3.12");
    expect_reject("3.12.1 (main");
    expect_reject("3.12.1 (main, Dec 18 2023, 12:00:00) [GCC 12.2.0]");
    expect_reject("");
    expect_reject("10.1.1");
    expect_reject("1.5.2");
    expect_reject("3.100.1");
    expect_reject("3");
    expect_reject("3..1");
    expect_reject("x3.12.1");
    expect_reject("3.12.1\n");
    expect_reject("3.12.1-dev");
    /* longer than py_version.text can hold */
    expect_reject("3.12.1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
}

static void expect_hex(uint64_t hex, int major, int minor, int micro, const char *text)
{
    struct py_version v;
    memset(&v, 0x5a, sizeof v);
    py_version_from_hex(hex, &v);
    assert_int_equal(v.major, major);
    assert_int_equal(v.minor, minor);
    assert_int_equal(v.micro, micro);
    assert_string_equal(v.text, text);
}

static void test_version_from_hex(void **state)
{
    (void)state;
    expect_hex(0x030C01F0, 3, 12, 1, "3.12.1");
    expect_hex(0x030D00C2, 3, 13, 0, "3.13.0rc2");
    expect_hex(0x030F00A1, 3, 15, 0, "3.15.0a1");
    expect_hex(0x030B07F0, 3, 11, 7, "3.11.7");
    expect_hex(0x030900B3, 3, 9, 0, "3.9.0b3");
    expect_hex(0x020712F0, 2, 7, 18, "2.7.18");
    expect_hex(0x030D00F0, 3, 13, 0, "3.13.0");
    /* the text always parses back to the same numbers */
    static const uint64_t hexes[] = {0x030C01F0, 0x030D00C2, 0x030F00A1, 0x030900B3};
    for (size_t i = 0; i < sizeof hexes / sizeof hexes[0]; i++) {
        struct py_version a, b;
        py_version_from_hex(hexes[i], &a);
        assert_int_equal(py_version_parse(a.text, &b), 0);
        assert_int_equal(b.major, a.major);
        assert_int_equal(b.minor, a.minor);
        assert_int_equal(b.micro, a.micro);
    }
}

/* ---- live processes ----------------------------------------------------- */

struct child {
    pid_t pid;
    char skip_reason[512];
};

static int child_setup(void **state)
{
    struct child *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    *state = c;
    return 0;
}

static int child_teardown(void **state)
{
    struct child *c = *state;
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
    }
    free(c);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start argv[0] with argv, stdout/stderr to /dev/null, dying with us. */
static pid_t spawn(char *const argv[])
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    execv(argv[0], argv);
    _exit(127);
}

/* Start argv with stdout on a pipe and wait (bounded, 20 s) for the line it
 * prints once its interpreter runs: mappings are final by then. */
static pid_t spawn_ready(char *const argv[])
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        close(fds[0]);
        dup2(fds[1], 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    char buf[16] = {0};
    int ok = pid > 0 && poll(&pfd, 1, 20000) == 1 && read(fds[0], buf, sizeof buf - 1) > 0 &&
             strncmp(buf, "ready", 5) == 0;
    close(fds[0]);
    if (!ok && pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

/* Wait (bounded) until the child runs `exe` and, when shared is set, has a
 * libpython mapped.  0 when ready. */
static int wait_mapped(pid_t pid, const char *exe, int shared)
{
    char link[64], got[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    for (int tries = 0; tries < 3000; tries++) {
        ssize_t n = readlink(link, got, sizeof got - 1);
        if (n > 0) {
            got[n] = '\0';
            if (strcmp(got, exe) == 0) {
                if (!shared)
                    return 0;
                struct proc_maps m;
                if (maps_read(pid, &m, NULL) == 0) {
                    int found = 0;
                    for (size_t i = 0; i < m.count && !found; i++)
                        found = strstr(m.entries[i].path, "/libpython") != NULL;
                    maps_free(&m);
                    if (found)
                        return 0;
                }
            }
        }
        sleep_ms(1);
    }
    return -1;
}

/* What the interpreter says its version is. */
static int version_of(const char *python, char *out, size_t cap)
{
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import platform; print(platform.python_version())'",
             python);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    if (fgets(out, (int)cap, p) == NULL)
        out[0] = '\0';
    int rc = pclose(p);
    out[strcspn(out, "\n")] = '\0';
    return rc == 0 && out[0] ? 0 : -1;
}

/* The python<major>.<minor> of pyenv, or NULL. */
static int find_pyenv(int major, int minor, char *out, size_t cap)
{
    char pattern[128];
    snprintf(pattern, sizeof pattern, "/root/.pyenv/versions/%d.%d.*/bin/python%d.%d", major,
             minor, major, minor);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0)
        return -1;
    snprintf(out, cap, "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
    return 0;
}

/* addr must be in a mapping of `binary`, or in the anonymous mapping that
 * continues its last one (.bss past the file's end: 3.8 and 3.9 keep a
 * zero-initialised _PyRuntime there). */
static const struct map_entry *expect_in_binary(const struct proc_maps *m, uint64_t addr,
                                                const char *binary, const char *what)
{
    if (addr == 0)
        fail_msg("%s is 0", what);
    const struct map_entry *e = maps_find(m, addr);
    if (e == NULL)
        fail_msg("%s 0x%llx is in no mapping", what, (unsigned long long)addr);
    if (strcmp(e->path, binary) == 0)
        return e;
    const struct map_entry *before = e->start > 0 ? maps_find(m, e->start - 1) : NULL;
    if (e->inode == 0 && e->offset == 0 && before != NULL && strcmp(before->path, binary) == 0 &&
        before->perms[1] == 'w')
        return e;
    fail_msg("%s 0x%llx is in %llx-%llx (%s), not in %s", what, (unsigned long long)addr,
             (unsigned long long)e->start, (unsigned long long)e->end, e->path, binary);
    return NULL;
}

/* 2.7 and 3.6: no _PyRuntime; the statics that stand in for it are found
 * in .symtab and lie in the binary's writable data. */
static void check_old_statics(const struct proc_maps *m, const struct py_location *loc,
                              int expect_major, int expect_minor)
{
    assert_int_equal(loc->runtime_addr, 0);
    assert_int_equal(loc->runtime_size, 0);
    assert_int_equal(loc->has_symtab, 1);
    const struct map_entry *e = expect_in_binary(m, loc->interp_head, loc->binary,
                                                 "interp_head");
    assert_int_equal(e->perms[1], 'w');
    e = expect_in_binary(m, loc->tstate_current, loc->binary, "_PyThreadState_Current");
    assert_int_equal(e->perms[1], 'w');
    assert_true(loc->interp_head != loc->tstate_current);
    if (expect_major == 3 && expect_minor == 6) {
        expect_in_binary(m, loc->gil_locked, loc->binary, "gil_locked");
        expect_in_binary(m, loc->gil_last_holder, loc->binary, "gil_last_holder");
        assert_true(loc->gil_locked != loc->gil_last_holder);
        assert_int_equal(loc->string_type, 0);
    } else {
        /* 2.7's GIL is a bare lock: no holder to find */
        assert_int_equal(loc->gil_locked, 0);
        assert_int_equal(loc->gil_last_holder, 0);
        expect_in_binary(m, loc->string_type, loc->binary, "PyString_Type");
        /* bytes is str in 2.7 */
        assert_int_equal(loc->bytes_type, loc->string_type);
    }
}

/* Locate `python` (a real file) running in a child and check everything. */
static void check_interpreter(struct child *c, const char *python, int shared,
                              int expect_major, int expect_minor)
{
    char truth[64];
    if (version_of(python, truth, sizeof truth) != 0)
        fail_msg("%s does not run", python);

    char exe[PATH_MAX];
    if (realpath(python, exe) == NULL)
        fail_msg("realpath(%s) failed", python);
    char *argv[] = {exe, "-c",
                    "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); "
                    "time.sleep(30)",
                    NULL};
    c->pid = spawn_ready(argv);
    if (c->pid <= 0)
        fail_msg("%s never said it was ready", exe);
    if (wait_mapped(c->pid, exe, shared) != 0)
        fail_msg("%s (pid %d) never mapped its interpreter", exe, (int)c->pid);

    struct proc_maps m;
    struct pm_error err = {0};
    if (maps_read(c->pid, &m, &err) != 0)
        fail_msg("maps_read: %s", err.msg);
    struct py_location loc;
    memset(&loc, 0x5a, sizeof loc);
    if (py_locate(c->pid, &m, &loc, &err) != 0) {
        maps_free(&m);
        fail_msg("py_locate(%s): %s", exe, err.msg);
    }

    /* the binary: the mapped libpython, or the executable itself */
    if (shared) {
        char lib[PATH_MAX];
        const char *slash = strrchr(exe, '/');
        /* 3.6 and 3.7 carry the pymalloc ABI tag: libpython3.7m.so */
        const char *abi = expect_major == 3 && expect_minor <= 7 ? "m" : "";
        snprintf(lib, sizeof lib, "%.*s/../lib/libpython%d.%d%s.so.1.0", (int)(slash - exe),
                 exe, expect_major, expect_minor, abi);
        char lib_real[PATH_MAX];
        assert_non_null(realpath(lib, lib_real));
        assert_string_equal(loc.binary, lib_real);
    } else {
        assert_string_equal(loc.binary, exe);
    }
    assert_non_null(maps_first_of(&m, loc.binary));

    /* the version, exactly as the interpreter says it */
    assert_string_equal(loc.version.text, truth);
    assert_int_equal(loc.version.major, expect_major);
    assert_int_equal(loc.version.minor, expect_minor);

    /* the load bias: the first mapping of the file is where its base went */
    const struct map_entry *first = maps_first_of(&m, loc.binary);
    assert_int_equal(loc.bias & 0xfff, 0);
    assert_true(loc.bias <= first->start);

    /* _PyRuntime (or the statics of 2.7 and 3.6) and the type objects live
     * in the binary's own mappings, in writable data */
    int old = expect_major == 2 || expect_minor < 7;
    if (old) {
        check_old_statics(&m, &loc, expect_major, expect_minor);
    } else {
        const struct map_entry *rt = expect_in_binary(&m, loc.runtime_addr, loc.binary,
                                                      "_PyRuntime");
        assert_int_equal(rt->perms[1], 'w');
        assert_true(loc.runtime_addr + loc.runtime_size <= rt->end);
    }
    expect_in_binary(&m, loc.code_type, loc.binary, "PyCode_Type");
    expect_in_binary(&m, loc.frame_type, loc.binary, "PyFrame_Type");
    expect_in_binary(&m, loc.unicode_type, loc.binary, "PyUnicode_Type");
    expect_in_binary(&m, loc.bytes_type, loc.binary, "PyBytes_Type");
    assert_true(loc.code_type != loc.frame_type && loc.unicode_type != loc.bytes_type &&
                loc.code_type != loc.unicode_type);

    /* sizeof(_PyRuntimeState) agrees with the headers of that version */
    const struct py_layout *layout = py_layout_for(expect_major, expect_minor);
    if (old)
        assert_non_null(layout);
    else if (layout != NULL)
        assert_int_equal(loc.runtime_size, (uint64_t)layout->runtime_size);
    else if (expect_minor == 13)
        assert_int_equal(loc.runtime_size, 283320);   /* 3.13.0, see test_debug_offsets.c */
    maps_free(&m);
}

static void run_pyenv_version(void **state, int major, int minor)
{
    struct child *c = *state;
    char python[PATH_MAX];
    if (find_pyenv(major, minor, python, sizeof python) != 0) {
        print_message("skipped: no /root/.pyenv/versions/%d.%d.*/bin/python%d.%d\n", major,
                      minor, major, minor);
        skip();
    }
    check_interpreter(c, python, 1, major, minor);
}

static void run_pyenv(void **state, int minor) { run_pyenv_version(state, 3, minor); }

static void test_locate_pyenv_2_7(void **state) { run_pyenv_version(state, 2, 7); }
static void test_locate_pyenv_3_6(void **state) { run_pyenv(state, 6); }
static void test_locate_pyenv_3_7(void **state) { run_pyenv(state, 7); }

static void test_locate_pyenv_3_8(void **state) { run_pyenv(state, 8); }
static void test_locate_pyenv_3_9(void **state) { run_pyenv(state, 9); }
static void test_locate_pyenv_3_10(void **state) { run_pyenv(state, 10); }
static void test_locate_pyenv_3_11(void **state) { run_pyenv(state, 11); }
static void test_locate_pyenv_3_12(void **state) { run_pyenv(state, 12); }
static void test_locate_pyenv_3_13(void **state) { run_pyenv(state, 13); }

/* Debian's python3.11 links libpython statically into the executable. */
static void test_locate_debian_static_3_11(void **state)
{
    struct child *c = *state;
    if (access("/usr/bin/python3.11", X_OK) != 0) {
        print_message("skipped: no /usr/bin/python3.11\n");
        skip();
    }
    check_interpreter(c, "/usr/bin/python3.11", 0, 3, 11);
}

/* 2.7 against a copy of its libpython without .symtab (strip, then
 * LD_LIBRARY_PATH, which wins over the executable's RUNPATH): located, but
 * refused by py_attach, naming the version and why. */
static void test_attach_stripped_2_7(void **state)
{
    struct child *c = *state;
    char python[PATH_MAX], exe[PATH_MAX];
    if (find_pyenv(2, 7, python, sizeof python) != 0 || realpath(python, exe) == NULL) {
        print_message("skipped: no /root/.pyenv/versions/2.7.*/bin/python2.7\n");
        skip();
    }
    if (access("/usr/bin/strip", X_OK) != 0) {
        print_message("skipped: no /usr/bin/strip\n");
        skip();
    }
    char dir[] = "/tmp/pyrometer-stripped.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char lib[PATH_MAX + 64], cmd[3 * PATH_MAX], env[PATH_MAX + 64];
    snprintf(lib, sizeof lib, "%s/libpython2.7.so.1.0", dir);
    const char *slash = strrchr(exe, '/');
    snprintf(cmd, sizeof cmd, "strip -o '%s' '%.*s/../lib/libpython2.7.so.1.0'", lib,
             (int)(slash - exe), exe);
    assert_int_equal(system(cmd), 0);
    snprintf(env, sizeof env, "LD_LIBRARY_PATH=%s", dir);
    char *argv[] = {"/usr/bin/env", env, exe, "-c",
                    "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); "
                    "time.sleep(30)",
                    NULL};
    c->pid = spawn_ready(argv);
    int ready = c->pid > 0 && wait_mapped(c->pid, exe, 1) == 0;

    struct proc_maps m;
    struct pm_error err = {0};
    struct py_location loc;
    int located = ready && maps_read(c->pid, &m, &err) == 0;
    if (located) {
        located = py_locate(c->pid, &m, &loc, &err) == 0;
        maps_free(&m);
    }
    struct py_process *py = NULL;
    int attached = located ? py_attach(c->pid, &py, &err) : -1;
    py_detach(py);
    unlink(lib);
    rmdir(dir);

    if (!ready)
        fail_msg("%s with a stripped libpython never became ready", exe);
    if (!located)
        fail_msg("py_locate: %s", err.msg);
    assert_string_equal(loc.binary, lib);
    assert_string_equal(loc.version.text, "2.7.18");
    assert_int_equal(loc.has_symtab, 0);
    assert_int_equal(loc.interp_head, 0);
    assert_int_equal(attached, -1);
    assert_int_equal(err.code, PM_EUNSUPPORTED);
    if (strstr(err.msg, "2.7.18") == NULL || strstr(err.msg, "stripped") == NULL)
        fail_msg("message must name the version and say the binary is stripped: %s", err.msg);
}

static void test_locate_not_python(void **state)
{
    struct child *c = *state;
    char sleep_exe[PATH_MAX];
    if (realpath("/bin/sleep", sleep_exe) == NULL) {
        print_message("skipped: no /bin/sleep\n");
        skip();
    }
    char *argv[] = {sleep_exe, "30", NULL};
    c->pid = spawn(argv);
    assert_true(c->pid > 0);
    assert_int_equal(wait_mapped(c->pid, sleep_exe, 0), 0);
    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(maps_read(c->pid, &m, &err), 0);
    struct py_location loc;
    assert_int_equal(py_locate(c->pid, &m, &loc, &err), -1);
    maps_free(&m);
    assert_int_equal(err.code, PM_ENOTPYTHON);
    assert_non_null(strstr(err.msg, "not a Python process"));
    assert_non_null(strstr(err.msg, "sleep"));
}

/* This test binary has no libpython either. */
static void test_locate_self_not_python(void **state)
{
    (void)state;
    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(maps_read(getpid(), &m, &err), 0);
    struct py_location loc;
    assert_int_equal(py_locate(getpid(), &m, &loc, &err), -1);
    maps_free(&m);
    assert_int_equal(err.code, PM_ENOTPYTHON);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_parse_accepts),
        cmocka_unit_test(test_version_parse_rejects),
        cmocka_unit_test(test_version_from_hex),
        cmocka_unit_test_setup_teardown(test_locate_pyenv_2_7, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_pyenv_3_6, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_pyenv_3_7, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_pyenv_3_8, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_pyenv_3_9, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_pyenv_3_10, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_pyenv_3_11, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_pyenv_3_12, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_pyenv_3_13, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_debian_static_3_11, child_setup,
                                        child_teardown),
        cmocka_unit_test_setup_teardown(test_attach_stripped_2_7, child_setup, child_teardown),
        cmocka_unit_test_setup_teardown(test_locate_not_python, child_setup, child_teardown),
        cmocka_unit_test(test_locate_self_not_python),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
