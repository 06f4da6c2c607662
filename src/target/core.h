/*
 * core.h — an ELF core file of a crashed or hung process, as a target.
 *
 * Owns: parsing a core (gdb's `gcore` or the kernel's) with libelf: its
 * PT_LOAD segments (the dumped memory), NT_FILE (which file backs each
 * mapping), NT_PRSTATUS (one per thread: tid and registers), NT_PRPSINFO
 * (pid, command) and NT_AUXV (to find the executable); a reader over the
 * dumped memory that falls back to the original files on disk for mappings
 * the core left out; and the memory map rebuilt as /proc/PID/maps would
 * show it.  Never interprets what it reads, never prints: files that are
 * missing or changed are reported through core_file_problems().
 */
#ifndef PYROMETER_CORE_H
#define PYROMETER_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"
#include "maps.h"
#include "reader.h"

struct core_file;

/* General registers of one thread, in the kernel's elf_gregset_t order
 * (x86-64: struct user_regs_struct; aarch64: x0..x30, sp, pc, pstate). */
#define CORE_MAX_REGS 64

struct core_thread {
    pid_t tid;                      /* kernel thread id (pr_pid) */
    int signal;                     /* pr_cursig: the signal being handled, 0 if none */
    uint64_t pc, sp, fp;            /* from regs, for convenience */
    uint64_t thread_pointer;        /* x86-64: fs_base, which glibc makes its
                                       pthread_t (pthread_self()); 0 if unknown */
    size_t nregs;
    uint64_t regs[CORE_MAX_REGS];
};

/* Open the core at core_path.  exe_path (or NULL) names the executable to use
 * in place of the one the core names; without it the executable is the file
 * the core maps at AT_PHDR (else AT_EXECFN).  Errors:
 *   PM_ENOTFOUND  core_path does not exist; or the executable is missing
 *                 (the message names it and suggests --exe)
 *   PM_EPERM      core_path (or the executable) cannot be read
 *   PM_EFORMAT    not an ELF core file, a truncated or malformed one, or the
 *                 executable differs from the one that was running (the
 *                 ELF header page kept in the core does not match)
 *   PM_EUNSUPPORTED a core of another architecture or word size
 * Other mapped files that are missing or changed do not fail the open: reads
 * that need them fail (PM_EREAD naming the file), and core_file_problems()
 * lists them for a warning. */
int core_open(const char *core_path, const char *exe_path, struct core_file **out,
              struct pm_error *err);
void core_close(struct core_file *c);

/* The pid of the dumped process, and its command line: the arguments joined
 * with spaces, read from its initial stack (up to 1023 bytes), else as the
 * core's NT_PRPSINFO kept it (pr_psargs: at most 80 bytes; gdb puts only
 * the program there). */
pid_t core_pid(const struct core_file *c);
const char *core_command(const struct core_file *c);
/* The executable as the dumped process named it (a path in its namespace;
 * "" if unknown), and the path this machine opens for it (exe_path when given). */
const char *core_exe(const struct core_file *c);
const char *core_exe_host_path(const struct core_file *c);

/* Threads in the order of the core's notes (the kernel puts the thread that
 * took the fatal signal first). */
size_t core_thread_count(const struct core_file *c);
const struct core_thread *core_thread_at(const struct core_file *c, size_t i);
/* The signal that stopped thread tid when the core was written (0: none,
 * or no such thread). */
int core_thread_signal(const struct core_file *c, pid_t tid);

/* The kernel thread id of the thread whose glibc pthread_t is `pthread`
 * (matched against each thread's thread pointer), or 0 if none matches —
 * what a live target gets from proc_tid_of_pthread. */
pid_t core_tid_of_pthread(const struct core_file *c, uint64_t pthread);

/* The path to open on this machine for a file the dumped process mapped
 * (`target_path` as it appears in core_maps): the --exe replacement for the
 * executable, else target_path itself.  Writes at most cap bytes; 0 on
 * success, -1 if it does not fit. */
int core_host_path(const struct core_file *c, const char *target_path, char *out, size_t cap);

/* A reader of the dumped memory.  Bytes come from the core where it holds
 * them, else from the mapped file at the right offset; an address outside
 * every mapping, or inside one the core did not keep and no file backs,
 * fails with PM_EREAD.  The reader borrows c: close it (reader_close, or
 * py_detach when a py_process owns it) before core_close(c).  NULL with
 * PM_ENOMEM. */
struct reader *core_reader(struct core_file *c, struct pm_error *err);

/* The memory map as /proc/PID/maps showed it when the core was written:
 * one entry per PT_LOAD segment, sorted by address, with the path and file
 * offset from NT_FILE ("" for anonymous memory, "[vdso]" and "[stack]" where
 * the auxiliary vector tells), perms from p_flags (always private 'p'),
 * inode 0.  Free with maps_free. */
int core_maps(const struct core_file *c, struct proc_maps *out, struct pm_error *err);

/* Mapped files that could not be opened, or no longer match the core: calls
 * fn(path, why) for each; returns how many there are.  `why` is a phrase
 * such as "missing (No such file or directory)" or "changed since the core
 * was written". */
size_t core_file_problems(const struct core_file *c,
                          void (*fn)(const char *path, const char *why, void *ctx), void *ctx);

#endif
