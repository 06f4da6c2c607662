/*
 * maps.c — parsing /proc/PID/maps.  Lines look like
 *   7f1c2a000000-7f1c2a021000 r-xp 00000000 fd:01 1234   /usr/lib/libpython3.12.so.1.0
 * Paths may contain spaces; " (deleted)" suffixes are kept as they are.
 * Never reads target memory, never prints.
 */
#include "maps.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_line(const char *line, struct map_entry *e)
{
    unsigned long long start, end, offset, inode;
    char perms[8];
    int consumed = 0;
    if (sscanf(line, "%llx-%llx %7s %llx %*x:%*x %llu%n", &start, &end, perms, &offset,
               &inode, &consumed) < 5)
        return -1;
    const char *path = line + consumed;
    while (*path == ' ')
        path++;
    size_t len = strcspn(path, "\n");
    e->path = strndup(path, len);
    if (e->path == NULL)
        return -1;
    e->start = start;
    e->end = end;
    e->offset = offset;
    e->inode = inode;
    snprintf(e->perms, sizeof e->perms, "%.4s", perms);
    return 0;
}

int maps_parse(const char *text, struct proc_maps *out, struct pm_error *err)
{
    out->entries = NULL;
    out->count = 0;
    size_t cap = 0;
    const char *line = text;
    while (*line) {
        const char *next = strchr(line, '\n');
        if (out->count == cap) {
            cap = cap ? cap * 2 : 64;
            struct map_entry *grown = realloc(out->entries, cap * sizeof *grown);
            if (grown == NULL) {
                maps_free(out);
                return pm_fail(err, PM_ENOMEM, "out of memory");
            }
            out->entries = grown;
        }
        if (parse_line(line, &out->entries[out->count]) == 0)
            out->count++;
        if (next == NULL)
            break;
        line = next + 1;
    }
    return 0;
}

int maps_read(pid_t pid, struct proc_maps *out, struct pm_error *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == EACCES || errno == EPERM)
            return pm_fail(err, PM_EPERM,
                           "permission denied reading %s: run as root or grant CAP_SYS_PTRACE",
                           path);
        return pm_fail(err, PM_ENOTFOUND, "no process with pid %d", (int)pid);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    char buf[65536];
    size_t n;
    int failed = mem == NULL;
    while (!failed && (n = fread(buf, 1, sizeof buf, f)) > 0)
        failed = fwrite(buf, 1, n, mem) != n;
    int read_error = ferror(f) ? errno : 0;
    fclose(f);
    if (mem)
        fclose(mem);
    if (failed) {
        free(text);
        return pm_fail(err, PM_ENOMEM, "out of memory reading %s", path);
    }
    if (read_error == EACCES || read_error == EPERM) {
        free(text);
        return pm_fail(err, PM_EPERM,
                       "permission denied reading %s: run as root or grant CAP_SYS_PTRACE", path);
    }
    if (len == 0) {
        free(text);
        /* A zombie or a process that just exited has an empty map. */
        return pm_fail(err, PM_EGONE, "process %d has no memory map (exited?)", (int)pid);
    }
    int rc = maps_parse(text, out, err);
    free(text);
    return rc;
}

void maps_free(struct proc_maps *m)
{
    for (size_t i = 0; i < m->count; i++)
        free(m->entries[i].path);
    free(m->entries);
    m->entries = NULL;
    m->count = 0;
}

const struct map_entry *maps_first_of(const struct proc_maps *m, const char *path)
{
    const struct map_entry *best = NULL;
    for (size_t i = 0; i < m->count; i++)
        if (strcmp(m->entries[i].path, path) == 0 &&
            (best == NULL || m->entries[i].start < best->start))
            best = &m->entries[i];
    return best;
}

const struct map_entry *maps_find(const struct proc_maps *m, uint64_t addr)
{
    for (size_t i = 0; i < m->count; i++)
        if (addr >= m->entries[i].start && addr < m->entries[i].end)
            return &m->entries[i];
    return NULL;
}
