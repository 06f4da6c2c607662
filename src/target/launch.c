/*
 * launch.c — fork/exec of the program to profile.  A close-on-exec pipe
 * tells the parent when exec happened (EOF) or why it failed (errno written
 * by the child).  The child keeps our process group, so the terminal's
 * Ctrl-C reaches it as it would without us, and our stdin/stdout/stderr
 * unless it is started redirected (for a full-screen view that owns them).
 */
#include "launch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* fork/exec argv; out_fd >= 0: the child's stdin is /dev/null and its
 * stdout and stderr go to out_fd; -1: all three inherited. */
static int launch_spawn(char *const argv[], int out_fd, pid_t *pid_out, struct pm_error *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return pm_fail(err, PM_EINTERNAL, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return pm_fail(err, PM_EINTERNAL, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        if (out_fd >= 0) {
            int null_fd = open("/dev/null", O_RDONLY);
            if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 ||
                dup2(out_fd, STDOUT_FILENO) < 0 || dup2(out_fd, STDERR_FILENO) < 0) {
                int e = errno;
                ssize_t unused = write(fds[1], &e, sizeof e);
                (void)unused;
                _exit(127);
            }
        }
        execvp(argv[0], argv);
        int e = errno;
        ssize_t unused = write(fds[1], &e, sizeof e);
        (void)unused;
        _exit(127);
    }
    close(fds[1]);
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(fds[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    close(fds[0]);
    if (n == (ssize_t)sizeof child_errno) {
        waitpid(pid, NULL, 0);
        return pm_fail(err, PM_ENOTFOUND, "cannot run %s: %s", argv[0], strerror(child_errno));
    }
    *pid_out = pid;
    return 0;
}

int launch_start(char *const argv[], pid_t *pid_out, struct pm_error *err)
{
    return launch_spawn(argv, -1, pid_out, err);
}

int launch_start_redirected(char *const argv[], int out_fd, pid_t *pid_out,
                            struct pm_error *err)
{
    return launch_spawn(argv, out_fd, pid_out, err);
}

int launch_poll(pid_t pid, int *status)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
        *status = st;
        return 1;
    }
    if (r < 0 && errno == ECHILD) {
        *status = 0;
        return 1;
    }
    return 0;
}

int launch_wait(pid_t pid, int *status, int timeout_ms)
{
    struct timespec step = {0, 10 * 1000 * 1000};
    for (int waited = 0; timeout_ms < 0 || waited <= timeout_ms; waited += 10) {
        if (launch_poll(pid, status))
            return 1;
        nanosleep(&step, NULL);
    }
    return 0;
}

void launch_describe_status(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, cap, "ended with wait status 0x%x", status);
}
