/*
 * children.h — the descendants of a process, from /proc.
 * Owns walking /proc/PID/task/TID/children breadth-first (every thread can
 * have children) with a bound on the tree size.  Never reads memory of the
 * processes, never prints.
 */
#ifndef PYROMETER_CHILDREN_H
#define PYROMETER_CHILDREN_H

#include <stddef.h>
#include <sys/types.h>

#define CHILDREN_MAX 4096

/* Fill out[] with the live descendants of root (not root itself), parents
 * before children; returns how many (at most cap). */
size_t children_of(pid_t root, pid_t *out, size_t cap);

#endif
