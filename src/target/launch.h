/*
 * launch.h — starting a program to profile, and waiting for it.
 * Owns fork/exec of the command (stdin/stdout/stderr inherited, or
 * redirected for a full-screen view), knowing when
 * exec has happened, and collecting the child's exit status.  Never
 * interprets Python, never prints.
 */
#ifndef PYROMETER_LAUNCH_H
#define PYROMETER_LAUNCH_H

#include <sys/types.h>

#include "../common/error.h"

/* Start argv[0] (PATH search) with the given arguments; returns after the
 * exec succeeded (or failed: PM_ENOTFOUND with the reason). */
int launch_start(char *const argv[], pid_t *pid_out, struct pm_error *err);

/* The same, but the child's stdin is /dev/null and its stdout and stderr
 * go to out_fd (which stays open in the caller; the child gets a copy). */
int launch_start_redirected(char *const argv[], int out_fd, pid_t *pid_out,
                            struct pm_error *err);

/* Non-blocking: 1 and *status filled (waitpid status) if the child has
 * exited and been reaped, 0 if it is still running. */
int launch_poll(pid_t pid, int *status);

/* Wait for the child to exit, at most timeout_ms (then 0 is returned and the
 * child keeps running); 1 with *status when it exited. */
int launch_wait(pid_t pid, int *status, int timeout_ms);

/* Describe a waitpid status: "exited with status 3", "was killed by signal 9 (Killed)". */
void launch_describe_status(int status, char *out, size_t cap);

#endif
