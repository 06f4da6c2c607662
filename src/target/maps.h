/*
 * maps.h — the memory map of a process, from /proc/PID/maps.
 * Owns parsing of the maps file into plain records.  Never reads target
 * memory, never prints.
 */
#ifndef PYROMETER_MAPS_H
#define PYROMETER_MAPS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"

struct map_entry {
    uint64_t start, end;   /* [start, end) */
    uint64_t offset;       /* file offset of start */
    char perms[5];         /* "r-xp" */
    uint64_t inode;
    char *path;            /* "" for anonymous; "[heap]", "[stack]" ... */
};

struct proc_maps {
    struct map_entry *entries;
    size_t count;
};

/* Parse /proc/PID/maps.  PM_ENOTFOUND if the process does not exist,
 * PM_EPERM if the file cannot be read for lack of permission. */
int maps_read(pid_t pid, struct proc_maps *out, struct pm_error *err);
/* Parse maps text (exposed for tests). */
int maps_parse(const char *text, struct proc_maps *out, struct pm_error *err);
void maps_free(struct proc_maps *m);

/* The lowest-address mapping of `path` (its load base), or NULL. */
const struct map_entry *maps_first_of(const struct proc_maps *m, const char *path);
/* The mapping containing addr, or NULL. */
const struct map_entry *maps_find(const struct proc_maps *m, uint64_t addr);

#endif
