/*
 * pause.h — stopping every thread of a process for a consistent sample
 * (`record --blocking`), and always letting it go again.
 * Owns PTRACE_SEIZE / PTRACE_INTERRUPT / PTRACE_DETACH of all threads.  A
 * seized thread is detached by the kernel if pyrometer dies, so the target
 * never stays stopped; our own signals only set flags, and every pause is
 * ended by pause_resume before the next one.  Never reads memory, never prints.
 */
#ifndef PYROMETER_PAUSE_H
#define PYROMETER_PAUSE_H

#include <stddef.h>
#include <sys/types.h>

#include "../common/error.h"

struct pause_set;

struct pause_set *pause_new(pid_t pid);
void pause_free(struct pause_set *ps);   /* resumes anything still paused */

/* Stop every thread of the process (threads that exit meanwhile are
 * skipped).  PM_EPERM without ptrace rights, PM_EGONE if the process went. */
int pause_all(struct pause_set *ps, struct pm_error *err);
/* Let every stopped thread run again. */
void pause_resume(struct pause_set *ps);

/* Number of threads stopped by the last pause_all. */
size_t pause_count(const struct pause_set *ps);

#endif
