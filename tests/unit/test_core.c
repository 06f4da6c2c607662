/*
 * test_core.c — ELF core files as a target (target/core.h).
 *
 * The group setup makes a tiny process with known memory: before forking,
 * this test maps (1) two anonymous pages filled with a known pattern, (2) two
 * pages of a data file at file offset 4096, read-only — memory a core leaves
 * out and the reader must fetch from the file, (3) a copy of an ELF file at
 * offset 0, whose header page the core keeps, and (4) a hole (mapped, then
 * unmapped).  The forked child starts two threads that record their tids and
 * pthread_t in shared memory and block; then gdb's `gcore` writes its core
 * and the child is killed.  The tests check exact bytes at exact addresses
 * (anonymous, file-backed, across both), the rebuilt memory map, the threads
 * (tids, thread pointers = pthread_t), pid, command and executable; then the
 * errors: not a core, missing, truncated, --exe with the wrong binary, and
 * files deleted or changed after the core was written (the last tests, since
 * they damage the fixture's files).  A kernel-written core (SIGABRT) is read
 * too when core_pattern writes plain files.  Children die with this test
 * (PR_SET_PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <elf.h>

#include "target/core.h"
#include "target/maps.h"
#include "target/reader.h"

#define PAGE 4096u
#define WORKERS 2

/* What the child tells the parent through shared memory. */
struct child_facts {
    pid_t tids[WORKERS + 1];           /* main thread first */
    uint64_t pthreads[WORKERS + 1];
    int ready;
};

struct fixture {
    char dir[64];                      /* /tmp/pyrometer-test-core-XXXXXX */
    char data_path[PATH_MAX];          /* 3 pages; pages 1..2 mapped */
    char elf_path[PATH_MAX];           /* a copy of this test binary, mapped at offset 0 */
    char core_path[PATH_MAX];
    char exe[PATH_MAX];                /* this test binary */
    uint8_t *anon;                     /* 2 pages */
    uint8_t *file_map;                 /* 2 pages of data_path from offset PAGE */
    uint8_t *elf_map;                  /* first page of elf_path: the core keeps it */
    uint8_t *elf_map2;                 /* its second page, mapped alone: left out */
    uint8_t elf_head[64];              /* the first bytes as they were (the parent's
                                          private mapping follows later file changes) */
    uint64_t hole;                     /* a page-sized hole */
    struct child_facts *facts;         /* MAP_SHARED */
    pid_t child;
    struct core_file *core;
};

static struct fixture fx;

static uint8_t anon_byte(size_t i) { return (uint8_t)(i * 31u + 7u); }
static uint8_t data_byte(size_t i) { return (uint8_t)(i * 13u + (i >> 12) * 101u + 1u); }

/* ---- making the core ---------------------------------------------------- */

static int write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    ssize_t put = write(fd, buf, len);
    close(fd);
    return put == (ssize_t)len ? 0 : -1;
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
    close(in);
    close(out);
    return n < 0 ? -1 : rc;
}

static void *worker(void *arg)
{
    int slot = (int)(intptr_t)arg;
    fx.facts->tids[slot] = (pid_t)syscall(SYS_gettid);
    fx.facts->pthreads[slot] = (uint64_t)pthread_self();
    __atomic_add_fetch(&fx.facts->ready, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pause();
    return NULL;
}

/* Keep huge mappings out of the child's core: under ASan the allocator's
 * regions run to gigabytes that gcore would copy (the shadow is already
 * MADV_DONTDUMP).  Nothing the tests read is anywhere near this size. */
#define DONTDUMP_ABOVE (64u << 20)

static void shrink_core(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long start, end;
        if (sscanf(line, "%llx-%llx", &start, &end) == 2 && end - start >= DONTDUMP_ABOVE)
            madvise((void *)(uintptr_t)start, (size_t)(end - start), MADV_DONTDUMP);
    }
    fclose(f);
}

/* The child: record the threads, then wait to be dumped and killed. */
static void child_main(int abort_on_signal)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (abort_on_signal) {
        struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
        setrlimit(RLIMIT_CORE, &unlimited);
        if (chdir(fx.dir) != 0)
            _exit(3);
    }
    fx.facts->tids[0] = (pid_t)syscall(SYS_gettid);
    fx.facts->pthreads[0] = (uint64_t)pthread_self();
    for (int i = 1; i <= WORKERS; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)i) != 0)
            _exit(2);
    }
    shrink_core();
    __atomic_add_fetch(&fx.facts->ready, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pause();
}

static pid_t start_child(int abort_on_signal)
{
    memset(fx.facts, 0, sizeof *fx.facts);
    pid_t pid = fork();
    if (pid == 0)
        child_main(abort_on_signal);
    if (pid < 0)
        return -1;
    struct timespec pause_ts = {0, 2000000};
    for (int i = 0; i < 5000; i++) {
        if (__atomic_load_n(&fx.facts->ready, __ATOMIC_SEQ_CST) == WORKERS + 1)
            return pid;
        nanosleep(&pause_ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static int run_gcore(pid_t pid, const char *prefix)
{
    char pid_text[32];
    snprintf(pid_text, sizeof pid_text, "%d", (int)pid);
    pid_t g = fork();
    if (g == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("gcore", "gcore", "-o", prefix, pid_text, (char *)NULL);
        _exit(127);
    }
    int status;
    if (g < 0 || waitpid(g, &status, 0) != g)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void stop_child(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int make_fixture(void)
{
    snprintf(fx.dir, sizeof fx.dir, "/tmp/pyrometer-test-core-XXXXXX");
    if (mkdtemp(fx.dir) == NULL)
        return -1;
    ssize_t n = readlink("/proc/self/exe", fx.exe, sizeof fx.exe - 1);
    if (n <= 0)
        return -1;
    fx.exe[n] = '\0';

    /* (1) anonymous pattern */
    fx.anon = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fx.anon == MAP_FAILED)
        return -1;
    for (size_t i = 0; i < 2 * PAGE; i++)
        fx.anon[i] = anon_byte(i);

    /* (2) a data file, pages 1..2 mapped read-only */
    static uint8_t data[3 * PAGE];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = data_byte(i);
    snprintf(fx.data_path, sizeof fx.data_path, "%s/mapped.bin", fx.dir);
    if (write_file(fx.data_path, data, sizeof data) != 0)
        return -1;
    int fd = open(fx.data_path, O_RDONLY | O_CLOEXEC);
    fx.file_map = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, fd, PAGE);
    close(fd);
    if (fx.file_map == MAP_FAILED)
        return -1;

    /* (3) a copy of an ELF file, its header page mapped */
    snprintf(fx.elf_path, sizeof fx.elf_path, "%s/elf-copy", fx.dir);
    if (copy_file(fx.exe, fx.elf_path) != 0)
        return -1;
    fd = open(fx.elf_path, O_RDONLY | O_CLOEXEC);
    fx.elf_map = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    fx.elf_map2 = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, PAGE);
    close(fd);
    if (fx.elf_map == MAP_FAILED || fx.elf_map2 == MAP_FAILED)
        return -1;
    memcpy(fx.elf_head, fx.elf_map, sizeof fx.elf_head);

    fx.facts = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fx.facts == MAP_FAILED)
        return -1;

    /* (4) a hole, made last: nothing mapped before the fork may fill it
     * (the child's thread stacks are far larger than a page) */
    uint8_t *three = mmap(NULL, 3 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (three == MAP_FAILED)
        return -1;
    munmap(three + PAGE, PAGE);
    fx.hole = (uint64_t)(uintptr_t)(three + PAGE);

    fx.child = start_child(0);
    if (fx.child < 0)
        return -1;
    char prefix[PATH_MAX + 16];
    snprintf(prefix, sizeof prefix, "%s/core", fx.dir);
    int rc = run_gcore(fx.child, prefix);
    stop_child(fx.child);
    if (rc != 0) {
        fprintf(stderr, "gcore failed (is gdb installed?)\n");
        return -1;
    }
    snprintf(fx.core_path, sizeof fx.core_path, "%s/core.%d", fx.dir, (int)fx.child);
    struct pm_error err = {0};
    if (core_open(fx.core_path, NULL, &fx.core, &err) != 0) {
        fprintf(stderr, "core_open: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int remove_fixture(void)
{
    core_close(fx.core);
    fx.core = NULL;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx.dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_setup(void **state)
{
    (void)state;
    if (make_fixture() == 0)
        return 0;
    if (fx.dir[0])
        remove_fixture();
    return -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return remove_fixture();
}

/* ---- reading ------------------------------------------------------------ */

static void expect_read(struct reader *r, const void *addr, size_t len, const uint8_t *expected)
{
    uint8_t buf[3 * PAGE];
    struct pm_error err = {0};
    assert_true(len <= sizeof buf);
    if (reader_read(r, (uint64_t)(uintptr_t)addr, buf, len, &err) != 0)
        fail_msg("read of %zu bytes at %p failed: %s", len, addr, err.msg);
    assert_memory_equal(buf, expected, len);
}

static void test_reads_anonymous_memory(void **state)
{
    (void)state;
    struct pm_error err = {0};
    struct reader *r = core_reader(fx.core, &err);
    assert_non_null(r);
    expect_read(r, fx.anon, 2 * PAGE, fx.anon);
    expect_read(r, fx.anon + PAGE - 3, 7, fx.anon + PAGE - 3);
    uint64_t word;
    assert_int_equal(reader_u64(r, (uint64_t)(uintptr_t)(fx.anon + 8), &word, &err), 0);
    uint64_t want;
    memcpy(&want, fx.anon + 8, sizeof want);
    assert_int_equal(word, want);
    /* the child's view of the shared facts is in the core too */
    struct child_facts facts;
    assert_int_equal(reader_read(r, (uint64_t)(uintptr_t)fx.facts, &facts, sizeof facts, &err), 0);
    assert_memory_equal(facts.tids, fx.facts->tids, sizeof facts.tids);
    reader_close(r);
}

static void test_reads_file_backed_memory(void **state)
{
    (void)state;
    struct pm_error err = {0};
    struct reader *r = core_reader(fx.core, &err);
    expect_read(r, fx.file_map, 2 * PAGE, fx.file_map);
    assert_int_equal(fx.file_map[0], data_byte(PAGE));    /* the mapping's offset is PAGE */
    expect_read(r, fx.file_map + PAGE + 100, 50, fx.file_map + PAGE + 100);
    expect_read(r, fx.elf_map, 64, fx.elf_map);
    expect_read(r, fx.elf_map2, PAGE, fx.elf_map2);
    /* code of this very function, from the executable */
    expect_read(r, (const void *)test_reads_file_backed_memory, 32,
                (const uint8_t *)test_reads_file_backed_memory);
    reader_close(r);
}

static void test_read_failures(void **state)
{
    (void)state;
    struct pm_error err = {0};
    struct reader *r = core_reader(fx.core, &err);
    uint8_t buf[16];
    assert_int_equal(reader_read(r, fx.hole, buf, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_non_null(strstr(err.msg, "not mapped"));
    /* running off the end of a mapping into the hole fails whole */
    assert_int_equal(reader_read(r, fx.hole - 4, buf, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_int_equal(reader_read(r, 0x10, buf, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_int_equal(reader_read(r, UINT64_MAX - 4096, buf, 8, &err), -1);
    reader_close(r);
}

/* ---- the map, threads, process facts ------------------------------------ */

static const struct map_entry *entry_of(const struct proc_maps *m, const void *addr)
{
    return maps_find(m, (uint64_t)(uintptr_t)addr);
}

static void test_maps(void **state)
{
    (void)state;
    struct proc_maps m;
    struct pm_error err = {0};
    assert_int_equal(core_maps(fx.core, &m, &err), 0);
    assert_true(m.count > 10);
    for (size_t i = 0; i < m.count; i++) {
        assert_true(m.entries[i].start < m.entries[i].end);
        if (i > 0)
            assert_true(m.entries[i - 1].end <= m.entries[i].start);
    }
    const struct map_entry *e = entry_of(&m, fx.file_map);
    assert_non_null(e);
    assert_string_equal(e->path, fx.data_path);
    assert_int_equal(e->start, (uint64_t)(uintptr_t)fx.file_map);
    assert_int_equal(e->end, (uint64_t)(uintptr_t)fx.file_map + 2 * PAGE);
    assert_int_equal(e->offset, PAGE);
    assert_int_equal(e->perms[0], 'r');
    assert_int_equal(e->perms[1], '-');

    e = entry_of(&m, fx.anon);
    assert_non_null(e);
    assert_string_equal(e->path, "");
    assert_string_equal(e->perms, "rw-p");

    e = entry_of(&m, fx.elf_map);
    assert_non_null(e);
    assert_string_equal(e->path, fx.elf_path);
    assert_int_equal(e->offset, 0);

    assert_null(maps_find(&m, fx.hole));

    e = entry_of(&m, (const void *)test_maps);
    assert_non_null(e);
    assert_string_equal(e->path, fx.exe);
    assert_non_null(maps_first_of(&m, fx.exe));
    assert_int_equal(maps_first_of(&m, fx.exe)->offset, 0);

    int stack = 0;
    int local;
    for (size_t i = 0; i < m.count; i++)
        if (strcmp(m.entries[i].path, "[stack]") == 0) {
            stack++;
            assert_true(m.entries[i].start <= (uint64_t)(uintptr_t)&local &&
                        (uint64_t)(uintptr_t)&local < m.entries[i].end);
        }
    assert_int_equal(stack, 1);
    maps_free(&m);
}

static void test_threads_and_process(void **state)
{
    (void)state;
    assert_int_equal(core_pid(fx.core), fx.child);
    assert_int_equal(core_thread_count(fx.core), WORKERS + 1);
    for (int i = 0; i <= WORKERS; i++) {
        int found = 0;
        for (size_t j = 0; j < core_thread_count(fx.core); j++) {
            const struct core_thread *t = core_thread_at(fx.core, j);
            if (t->tid != fx.facts->tids[i])
                continue;
            found = 1;
            assert_int_equal(t->thread_pointer, fx.facts->pthreads[i]);
            assert_true(t->sp != 0 && t->pc != 0 && t->nregs > 16);
        }
        if (!found)
            fail_msg("thread %d (tid %d) is not in the core", i, (int)fx.facts->tids[i]);
        assert_int_equal(core_tid_of_pthread(fx.core, fx.facts->pthreads[i]), fx.facts->tids[i]);
    }
    assert_null(core_thread_at(fx.core, WORKERS + 1));
    assert_int_equal(core_tid_of_pthread(fx.core, 0), 0);
    assert_int_equal(core_tid_of_pthread(fx.core, 12345), 0);

    /* the whole command line, as /proc/self/cmdline has it (the child is a fork) */
    char cmdline[1024] = "";
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t len = read(fd, cmdline, sizeof cmdline - 1);
    close(fd);
    assert_true(len > 0);
    for (ssize_t i = 0; i < len - 1; i++)
        if (cmdline[i] == '\0')
            cmdline[i] = ' ';
    assert_string_equal(core_command(fx.core), cmdline);
    assert_string_equal(core_exe(fx.core), fx.exe);
    assert_string_equal(core_exe_host_path(fx.core), fx.exe);
    char host[PATH_MAX];
    assert_int_equal(core_host_path(fx.core, fx.data_path, host, sizeof host), 0);
    assert_string_equal(host, fx.data_path);
    assert_int_equal(core_host_path(fx.core, fx.data_path, host, 4), -1);
    assert_int_equal(core_file_problems(fx.core, NULL, NULL), 0);
}

/* ---- errors --------------------------------------------------------------- */

static void expect_open_fails(const char *core, const char *exe, enum pm_errcode code,
                              const char *words)
{
    struct core_file *c = NULL;
    struct pm_error err = {0};
    if (core_open(core, exe, &c, &err) == 0) {
        core_close(c);
        fail_msg("core_open(%s, %s) succeeded", core, exe ? exe : "NULL");
    }
    if (err.code != code || strstr(err.msg, words) == NULL)
        fail_msg("core_open(%s): code %d, message '%s'; expected code %d with '%s'", core,
                 (int)err.code, err.msg, (int)code, words);
}

struct problems {
    char text[4096];
};

static void collect_problem(const char *path, const char *why, void *ctx)
{
    struct problems *p = ctx;
    size_t used = strlen(p->text);
    snprintf(p->text + used, sizeof p->text - used, "%s: %s\n", path, why);
}

static void test_not_a_core(void **state)
{
    (void)state;
    expect_open_fails(fx.exe, NULL, PM_EFORMAT, "is not a core file: it is");
    expect_open_fails(fx.data_path, NULL, PM_EFORMAT, "not an ELF file");
    expect_open_fails(fx.dir, NULL, PM_EFORMAT, "not a regular file");
    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof missing, "%s/no-such-core", fx.dir);
    expect_open_fails(missing, NULL, PM_ENOTFOUND, "no-such-core");
    char empty[PATH_MAX + 16];
    snprintf(empty, sizeof empty, "%s/empty", fx.dir);
    assert_int_equal(write_file(empty, "", 0), 0);
    expect_open_fails(empty, NULL, PM_EFORMAT, "too short");
}

struct core_layout {
    uint64_t notes_offset;             /* the PT_NOTE segment */
    uint64_t last_load_offset;         /* the PT_LOAD with data furthest into the file */
    uint64_t last_load_size;
};

static void core_layout_of(const char *path, struct core_layout *out)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    Elf64_Ehdr eh;
    assert_int_equal(pread(fd, &eh, sizeof eh, 0), sizeof eh);
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        assert_int_equal(pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)), sizeof ph);
        if (ph.p_type == PT_NOTE)
            out->notes_offset = ph.p_offset;
        if (ph.p_type == PT_LOAD && ph.p_filesz > 0 && ph.p_offset > out->last_load_offset) {
            out->last_load_offset = ph.p_offset;
            out->last_load_size = ph.p_filesz;
        }
    }
    close(fd);
    assert_true(out->notes_offset > 0 && out->last_load_size > 0);
}

static void truncated_copy(const char *to, off_t size)
{
    assert_int_equal(copy_file(fx.core_path, to), 0);
    assert_int_equal(truncate(to, size), 0);
}

static void test_truncated_core(void **state)
{
    (void)state;
    struct core_layout layout;
    core_layout_of(fx.core_path, &layout);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/truncated", fx.dir);

    /* cut inside the notes: nothing can be trusted */
    truncated_copy(path, (off_t)layout.notes_offset + 10);
    expect_open_fails(path, NULL, PM_EFORMAT, "truncated");

    /* cut inside the program headers */
    truncated_copy(path, 100);
    expect_open_fails(path, NULL, PM_EFORMAT, path);

    /* cut inside the last memory segment (when the notes come before it):
     * it opens, says so, and what is left is readable */
    if (layout.notes_offset < layout.last_load_offset) {
        truncated_copy(path, (off_t)(layout.last_load_offset + layout.last_load_size / 2));
        struct core_file *c;
        struct pm_error err = {0};
        if (core_open(path, NULL, &c, &err) != 0)
            fail_msg("core_open of a core cut in its last segment: %s", err.msg);
        struct problems p = {""};
        assert_int_equal(core_file_problems(c, collect_problem, &p), 1);
        if (strstr(p.text, "truncated") == NULL || strstr(p.text, path) == NULL)
            fail_msg("problems: %s", p.text);
        struct reader *r = core_reader(c, &err);
        expect_read(r, fx.anon, 2 * PAGE, fx.anon);
        reader_close(r);
        core_close(c);
    }
}

static void test_wrong_exe(void **state)
{
    (void)state;
    /* a different ELF file in place of the executable */
    expect_open_fails(fx.core_path, "/bin/sh", PM_EFORMAT, "not the executable");
    expect_open_fails(fx.core_path, "/nonexistent/python", PM_ENOTFOUND, "--exe");
    /* the same executable under another name is fine */
    struct core_file *c;
    struct pm_error err = {0};
    assert_int_equal(core_open(fx.core_path, fx.elf_path, &c, &err), 0);
    assert_string_equal(core_exe(c), fx.exe);
    assert_string_equal(core_exe_host_path(c), fx.elf_path);
    char host[PATH_MAX];
    assert_int_equal(core_host_path(c, fx.exe, host, sizeof host), 0);
    assert_string_equal(host, fx.elf_path);
    struct reader *r = core_reader(c, &err);
    expect_read(r, (const void *)test_wrong_exe, 16, (const uint8_t *)test_wrong_exe);
    reader_close(r);
    core_close(c);
}

/* Damages the fixture's files: runs last. */
static void test_changed_and_missing_files(void **state)
{
    (void)state;
    /* the ELF copy's header page changes; the data file disappears */
    int fd = open(fx.elf_path, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\x7f", 1, 12), 1);     /* e_ident padding */
    close(fd);
    assert_int_equal(unlink(fx.data_path), 0);

    struct core_file *c;
    struct pm_error err = {0};
    assert_int_equal(core_open(fx.core_path, NULL, &c, &err), 0);
    struct problems p = {""};
    assert_int_equal(core_file_problems(c, collect_problem, &p), 2);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s: changed since the core was written\n", fx.elf_path);
    if (strstr(p.text, want) == NULL)
        fail_msg("problems:\n%s\nlack '%s'", p.text, want);
    snprintf(want, sizeof want, "%s: missing (No such file or directory)\n", fx.data_path);
    if (strstr(p.text, want) == NULL)
        fail_msg("problems:\n%s\nlack '%s'", p.text, want);

    struct reader *r = core_reader(c, &err);
    uint8_t buf[8];
    assert_int_equal(reader_read(r, (uint64_t)(uintptr_t)fx.file_map, buf, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    if (strstr(err.msg, fx.data_path) == NULL || strstr(err.msg, "missing") == NULL)
        fail_msg("message '%s' should name the missing file", err.msg);
    /* the ELF header page is in the core itself: still readable; the rest
     * of the changed file is not */
    expect_read(r, fx.elf_map, sizeof fx.elf_head, fx.elf_head);
    uint64_t page2 = (uint64_t)(uintptr_t)fx.elf_map2;
    assert_int_equal(reader_read(r, page2, buf, 8, &err), -1);
    if (strstr(err.msg, fx.elf_path) == NULL || strstr(err.msg, "changed") == NULL)
        fail_msg("message '%s' should name the changed file", err.msg);
    /* anonymous memory does not care */
    expect_read(r, fx.anon, 64, fx.anon);
    reader_close(r);
    core_close(c);

    /* the executable changed: open fails, naming it and --exe */
    char exe_copy[PATH_MAX + 16];
    snprintf(exe_copy, sizeof exe_copy, "%s/exe-copy", fx.dir);
    assert_int_equal(copy_file(fx.exe, exe_copy), 0);
    /* (a core of a process whose executable is exe_copy, made by re-running
     * the fixture would cost a gcore; instead --exe points at a changed copy) */
    fd = open(exe_copy, O_WRONLY | O_CLOEXEC);
    assert_int_equal(pwrite(fd, "\x7f", 1, 12), 1);
    close(fd);
    expect_open_fails(fx.core_path, exe_copy, PM_EFORMAT, "not the executable the core");
}

/* ---- a core written by the kernel ---------------------------------------- */

static void test_kernel_core(void **state)
{
    (void)state;
    char pattern[256] = "";
    FILE *f = fopen("/proc/sys/kernel/core_pattern", "r");
    if (f == NULL || fgets(pattern, sizeof pattern, f) == NULL) {
        if (f)
            fclose(f);
        skip();
    }
    fclose(f);
    pattern[strcspn(pattern, "\n")] = '\0';
    if (pattern[0] == '|' || pattern[0] == '/' || strchr(pattern, '%') != NULL) {
        fprintf(stderr, "skipping the kernel core: core_pattern is '%s' (a pipe or elsewhere)\n",
                pattern);
        skip();
    }
    pid_t child = start_child(1);
    assert_true(child > 0);
    kill(child, SIGABRT);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    char path[PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/%s.%d", fx.dir, pattern, (int)child);
    if (access(path, F_OK) != 0)
        snprintf(path, sizeof path, "%s/%s", fx.dir, pattern);
    if (!WCOREDUMP(status) || access(path, F_OK) != 0) {
        fprintf(stderr, "skipping the kernel core: none was written (%s)\n", path);
        skip();
    }
    struct core_file *c;
    struct pm_error err = {0};
    if (core_open(path, NULL, &c, &err) != 0)
        fail_msg("core_open(%s): %s", path, err.msg);
    assert_int_equal(core_pid(c), child);
    assert_int_equal(core_thread_count(c), WORKERS + 1);
    assert_string_equal(core_command(c), core_command(fx.core));
    /* the kernel puts the thread that took the signal first */
    assert_int_equal(core_thread_at(c, 0)->signal, SIGABRT);
    struct reader *r = core_reader(c, &err);
    expect_read(r, fx.anon, 2 * PAGE, fx.anon);
    expect_read(r, fx.file_map, 2 * PAGE, fx.file_map);
    expect_read(r, (const void *)test_kernel_core, 32, (const uint8_t *)test_kernel_core);
    reader_close(r);
    struct proc_maps m;
    assert_int_equal(core_maps(c, &m, &err), 0);
    const struct map_entry *e = entry_of(&m, fx.file_map);
    assert_non_null(e);
    assert_string_equal(e->path, fx.data_path);
    assert_int_equal(e->offset, PAGE);
    maps_free(&m);
    core_close(c);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_anonymous_memory),
        cmocka_unit_test(test_reads_file_backed_memory),
        cmocka_unit_test(test_read_failures),
        cmocka_unit_test(test_maps),
        cmocka_unit_test(test_threads_and_process),
        cmocka_unit_test(test_not_a_core),
        cmocka_unit_test(test_truncated_core),
        cmocka_unit_test(test_wrong_exe),
        cmocka_unit_test(test_kernel_core),
        cmocka_unit_test(test_changed_and_missing_files),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
