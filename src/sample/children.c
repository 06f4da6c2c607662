/*
 * children.c — descendants of a process through /proc/PID/task/TID/children
 * (each line lists a thread's direct children).  Breadth-first, bounded, and
 * a pid seen twice is kept once (pids cannot form cycles, but a reused pid
 * could appear under two parents while we walk).
 */
#include "children.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int seen(const pid_t *list, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == pid)
            return 1;
    return 0;
}

/* Append the direct children of pid (all its threads) to out. */
static size_t add_direct_children(pid_t pid, pid_t root, pid_t *out, size_t n, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *tasks = opendir(path);
    if (tasks == NULL)
        return n;
    struct dirent *d;
    while ((d = readdir(tasks)) != NULL && n < cap) {
        if (d->d_name[0] < '0' || d->d_name[0] > '9')
            continue;
        char children_path[320];
        snprintf(children_path, sizeof children_path, "/proc/%d/task/%s/children", (int)pid,
                 d->d_name);
        FILE *f = fopen(children_path, "r");
        if (f == NULL)
            continue;
        int child;
        while (n < cap && fscanf(f, "%d", &child) == 1)
            if (child > 0 && child != root && !seen(out, n, child))
                out[n++] = child;
        fclose(f);
    }
    closedir(tasks);
    return n;
}

size_t children_of(pid_t root, pid_t *out, size_t cap)
{
    size_t n = add_direct_children(root, root, out, 0, cap);
    for (size_t next = 0; next < n; next++)
        n = add_direct_children(out[next], root, out, n, cap);
    return n;
}
