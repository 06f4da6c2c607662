/*
 * proc.h — facts about a process and its threads from /proc.
 * Owns: existence checks, paths inside the target's mount namespace
 * (/proc/PID/root/...), the command line, per-thread run state (with the
 * stat files kept open so a sample costs one pread per thread), and the
 * mapping from a glibc pthread_t to the kernel thread id.  Never interprets
 * Python, never prints.
 */
#ifndef PYROMETER_PROC_H
#define PYROMETER_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"
#include "reader.h"

/* 0 when the process exists (and is not a zombie), PM_ENOTFOUND otherwise. */
int proc_check_alive(pid_t pid, struct pm_error *err);
int proc_is_alive(pid_t pid);

/* "/proc/PID/root" + path, so files are opened in the target's namespace. */
void proc_root_path(pid_t pid, const char *path, char *out, size_t cap);
/* The command line joined with spaces (truncated to cap). */
void proc_cmdline(pid_t pid, char *out, size_t cap);
/* The target's view of its executable (readlink /proc/PID/exe). */
int proc_exe(pid_t pid, char *out, size_t cap);
/* Resident set size in bytes (VmRSS of /proc/PID/status); -1 when gone. */
int proc_rss(pid_t pid, uint64_t *bytes);
/* A "Field:  N kB" line of /proc/PID/status (VmRSS, VmHWM, ...) in bytes;
 * -1 when the file or the field is missing. */
int proc_status_kib(pid_t pid, const char *field, uint64_t *bytes);

/* Per-thread run state, with the /proc files kept open between samples. */
struct thread_states;
struct thread_states *thread_states_new(pid_t pid);
void thread_states_free(struct thread_states *ts);
/* The single-letter state of thread tid ('R', 'S', 'D', ...) or 0 if
 * unknown (thread gone). */
char thread_states_get(struct thread_states *ts, pid_t tid);
/* Read and keep the state of every thread of the process now, before a
 * pause: until the next sweep, thread_states_get answers from these (a
 * paused thread would only say 't'). */
void thread_states_prefetch(struct thread_states *ts);
/* preads made so far (a cost figure), and whether the cheap wchan file is
 * (still) trusted for running/sleeping. */
uint64_t thread_states_reads(const struct thread_states *ts);
int thread_states_using_wchan(const struct thread_states *ts);
/* Forget threads not asked about since the last call (closes their files),
 * and the prefetched states. */
void thread_states_sweep(struct thread_states *ts);

/* Kernel thread id of the glibc thread whose pthread_t is `pthread`, read
 * from the target (glibc keeps the tid inside struct pthread; the offset is
 * found once in our own process).  0 when it cannot be determined or does
 * not name a thread of `pid`. */
pid_t proc_tid_of_pthread(struct reader *r, pid_t pid, uint64_t pthread);

#endif
