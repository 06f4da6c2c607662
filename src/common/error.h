/*
 * error.h — how failures travel through pyrometer.
 *
 * Owns: the error categories, the message buffer filled by the lowest layer
 * that knows why something failed, and the single table that maps an error
 * category to a process exit code (VISION.md: 0 ok, 1 usage, 2 target not
 * found / gone, 3 not Python / unsupported, 4 permission, 5 output I/O).
 * Never prints: commands print an error once, with error_print().
 */
#ifndef PYROMETER_ERROR_H
#define PYROMETER_ERROR_H

#include <stdarg.h>

enum pm_errcode {
    PM_OK = 0,
    PM_EUSAGE,        /* bad command line */
    PM_ENOTFOUND,     /* no such process */
    PM_EGONE,         /* the target exited while we were reading it */
    PM_ENOTPYTHON,    /* not a Python process */
    PM_EUNSUPPORTED,  /* a Python we cannot read (version named in message) */
    PM_EPERM,         /* permission denied reading the target */
    PM_EOUTPUT,       /* could not write an output file */
    PM_EREAD,         /* a read from the target failed (bad pointer): retryable */
    PM_ETORN,         /* inconsistent data read from a running target: retryable */
    PM_EFORMAT,       /* malformed input file (ELF, core, capture) */
    PM_ENOMEM,
    PM_EINTERNAL,
};

struct pm_error {
    enum pm_errcode code;
    char msg[512];
};

/* Fill *err (if not NULL) with code and a printf-style message; returns -1 so
 * callers can `return pm_fail(err, ...)`. */
int pm_fail(struct pm_error *err, enum pm_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message with more context ("reading thread 3: ..."). */
int pm_wrap(struct pm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void pm_clear(struct pm_error *err);

/* The one table from error category to exit code. */
int pm_exit_code(enum pm_errcode code);

/* Exit codes, as promised in VISION.md. */
enum {
    PM_EXIT_OK = 0,
    PM_EXIT_USAGE = 1,
    PM_EXIT_NOTFOUND = 2,
    PM_EXIT_NOTPYTHON = 3,
    PM_EXIT_PERM = 4,
    PM_EXIT_IO = 5,
    PM_EXIT_INTERNAL = 70,
};

#endif
