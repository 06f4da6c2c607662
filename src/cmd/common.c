/*
 * common.c — what the subcommands share: error printing (once, one line),
 * number parsing, attaching with retries for a program we just launched,
 * and the stop-signal handlers.
 */
#include "cmd.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "../target/launch.h"
#include "../target/proc.h"

int cmd_report_error(const struct pm_error *err)
{
    fprintf(stderr, "pyrometer: error: %s\n", err->msg[0] ? err->msg : "unknown error");
    return pm_exit_code(err->code);
}

int cmd_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pyrometer: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see: pyrometer %s --help)\n", command);
    va_end(ap);
    return PM_EXIT_USAGE;
}

int cmd_parse_pid(const char *s, pid_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v <= 0 || v > INT_MAX)
        return -1;
    *out = (pid_t)v;
    return 0;
}

int cmd_parse_positive(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *s == '\0' || *end != '\0' || !(v > 0) || v > 1e9)
        return -1;
    *out = v;
    return 0;
}

int cmd_attach(pid_t pid, pid_t child, double timeout_s, struct py_process **out,
               struct pm_error *err)
{
    struct timespec step = {0, 5 * 1000 * 1000};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (py_attach(pid, out, err) == 0)
            return 0;
        if (child <= 0)
            return -1;
        /* A program we launched may still be loading (or be a wrapper that
         * execs Python later): retry while it lives and time remains. */
        if (err->code != PM_ENOTPYTHON && err->code != PM_EREAD && err->code != PM_ETORN &&
            err->code != PM_EGONE)
            return -1;
        int status;
        if (waitpid(child, &status, WNOHANG) == child) {
            char how[128];
            launch_describe_status(status, how, sizeof how);
            return pm_fail(err, PM_EGONE, "the program %s before Python started", how);
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
        if (waited > timeout_s)
            return -1;
        nanosleep(&step, NULL);
    }
}

static volatile sig_atomic_t *stop_flag;
static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    stop_signal = sig;
    if (stop_flag)
        *stop_flag = 1;
}

void cmd_install_stop_handlers(volatile sig_atomic_t *flag)
{
    stop_flag = flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cmd_stop_signal(void)
{
    return stop_signal;
}

int cmd_stop_child(pid_t child, int first_signal)
{
    int status = 0;
    const int signals[] = {first_signal, SIGTERM, SIGKILL};
    const int waits_ms[] = {3000, 2000, -1};
    for (int i = 0; i < 3; i++) {
        if (launch_poll(child, &status))
            return status;
        kill(child, signals[i]);
        if (launch_wait(child, &status, waits_ms[i]))
            return status;
    }
    return status;
}
