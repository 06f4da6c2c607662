/*
 * pause.c — all-thread pauses with ptrace.
 * pause_all seizes each thread listed in /proc/PID/task, interrupts it and
 * waits for it to stop; pause_resume detaches each (which resumes it).
 * Seizing per pause (rather than once) keeps no tracing state between
 * samples: nothing lingers if a sample fails half-way, and threads created
 * between samples are simply seized at the next pause.
 */
#include "pause.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

struct pause_set {
    pid_t pid;
    pid_t *stopped;
    size_t count, cap;
};

struct pause_set *pause_new(pid_t pid)
{
    struct pause_set *ps = calloc(1, sizeof *ps);
    if (ps)
        ps->pid = pid;
    return ps;
}

void pause_free(struct pause_set *ps)
{
    if (ps == NULL)
        return;
    pause_resume(ps);
    free(ps->stopped);
    free(ps);
}

size_t pause_count(const struct pause_set *ps)
{
    return ps->count;
}

static int remember(struct pause_set *ps, pid_t tid)
{
    if (ps->count == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        pid_t *grown = realloc(ps->stopped, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        ps->stopped = grown;
        ps->cap = cap;
    }
    ps->stopped[ps->count++] = tid;
    return 0;
}

/* Seize, interrupt and wait for one thread: 0 stopped, 1 gone, -1 error. */
static int stop_thread(pid_t tid, struct pm_error *err)
{
    if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) != 0) {
        if (errno == ESRCH)
            return 1;
        if (errno == EPERM)
            return pm_fail(err, PM_EPERM,
                           "permission denied pausing thread %d: run as root or grant "
                           "CAP_SYS_PTRACE", (int)tid);
        return pm_fail(err, PM_EINTERNAL, "ptrace(SEIZE, %d): %s", (int)tid, strerror(errno));
    }
    if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) != 0) {
        ptrace(PTRACE_DETACH, tid, NULL, NULL);
        return errno == ESRCH ? 1 : pm_fail(err, PM_EINTERNAL, "ptrace(INTERRUPT, %d): %s",
                                             (int)tid, strerror(errno));
    }
    int status;
    for (;;) {
        pid_t r = waitpid(tid, &status, __WALL);
        if (r == tid)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        return 1;   /* gone */
    }
    if (WIFEXITED(status) || WIFSIGNALED(status))
        return 1;
    return 0;
}

int pause_all(struct pause_set *ps, struct pm_error *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)ps->pid);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return pm_fail(err, PM_EGONE, "process %d has exited", (int)ps->pid);
    struct dirent *d;
    int rc = 0;
    while (rc == 0 && (d = readdir(dir)) != NULL) {
        if (d->d_name[0] < '0' || d->d_name[0] > '9')
            continue;
        pid_t tid = (pid_t)atoi(d->d_name);
        int r = stop_thread(tid, err);
        if (r < 0)
            rc = -1;
        else if (r == 0 && remember(ps, tid) != 0) {
            ptrace(PTRACE_DETACH, tid, NULL, NULL);
            rc = pm_fail(err, PM_ENOMEM, "out of memory");
        }
    }
    closedir(dir);
    if (rc != 0)
        pause_resume(ps);
    return rc;
}

void pause_resume(struct pause_set *ps)
{
    for (size_t i = 0; i < ps->count; i++)
        ptrace(PTRACE_DETACH, ps->stopped[i], NULL, NULL);
    ps->count = 0;
}
