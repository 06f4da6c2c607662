/*
 * cmd.h — the subcommands and what they share: each subcommand lives in its
 * own file with a cmd_<name>(argc, argv) entry; main.c only dispatches.
 * Shared here: printing an error once and turning it into the exit code,
 * parsing numbers from the command line, attaching to -p PID or launching
 * `-- COMMAND`.
 */
#ifndef PYROMETER_CMD_H
#define PYROMETER_CMD_H

#include <signal.h>
#include <sys/types.h>

#include "../common/error.h"
#include "../python/process.h"

#define PYROMETER_VERSION "0.1.0"

int cmd_record(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_heap(int argc, char **argv);
int cmd_mem(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_requests(int argc, char **argv);

/* Print "pyrometer: error: MSG" once and return the exit code for it. */
int cmd_report_error(const struct pm_error *err);
/* Print a usage error with a hint to --help; returns PM_EXIT_USAGE. */
int cmd_usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

int cmd_parse_pid(const char *s, pid_t *out);
int cmd_parse_positive(const char *s, double *out);

/* Attach to pid; in launch mode (child > 0) keep trying while the child
 * starts its interpreter, up to timeout_s. */
int cmd_attach(pid_t pid, pid_t child, double timeout_s, struct py_process **out,
               struct pm_error *err);

/* Set *flag on SIGINT/SIGTERM/SIGHUP (no SA_RESTART) and ignore SIGPIPE. */
void cmd_install_stop_handlers(volatile sig_atomic_t *flag);
/* The signal that set the flag (0 if none). */
int cmd_stop_signal(void);

/* Stop a launched child gently (the signal, then SIGTERM, then SIGKILL);
 * returns its waitpid status. */
int cmd_stop_child(pid_t child, int first_signal);

#endif
