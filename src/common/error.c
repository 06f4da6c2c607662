/*
 * error.c — filling error messages and mapping error categories to exit codes.
 * Owns the one table from category to exit code. Never prints.
 */
#include "error.h"

#include <stdio.h>
#include <string.h>

int pm_fail(struct pm_error *err, enum pm_errcode code, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int pm_wrap(struct pm_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    /* prefix (< 256 bytes) always fits in msg (512 bytes) with room left */
    size_t plen = strnlen(prefix, sizeof prefix - 1);
    memcpy(err->msg, prefix, plen);
    memcpy(err->msg + plen, ": ", 2);
    size_t room = sizeof err->msg - plen - 2;
    size_t olen = strnlen(old, room - 1);
    memcpy(err->msg + plen + 2, old, olen);
    err->msg[plen + 2 + olen] = '\0';
    return -1;
}

void pm_clear(struct pm_error *err)
{
    if (err == NULL)
        return;
    err->code = PM_OK;
    err->msg[0] = '\0';
}

int pm_exit_code(enum pm_errcode code)
{
    switch (code) {
    case PM_OK:           return PM_EXIT_OK;
    case PM_EUSAGE:       return PM_EXIT_USAGE;
    case PM_ENOTFOUND:
    case PM_EGONE:        return PM_EXIT_NOTFOUND;
    case PM_ENOTPYTHON:
    case PM_EUNSUPPORTED: return PM_EXIT_NOTPYTHON;
    case PM_EPERM:        return PM_EXIT_PERM;
    case PM_EOUTPUT:      return PM_EXIT_IO;
    case PM_EREAD:
    case PM_ETORN:        return PM_EXIT_NOTFOUND;
    case PM_EFORMAT:      return PM_EXIT_USAGE;
    case PM_ENOMEM:
    case PM_EINTERNAL:    break;
    }
    return PM_EXIT_INTERNAL;
}
