/*
 * filenames.h — short file names for frame labels.
 * Owns the rule "drop the directories above the package root": walk up from
 * the file's directory while it holds an __init__.py (looked up in the
 * target's mount namespace, /proc/PID/root, relative paths against
 * /proc/PID/cwd); the short name starts at the outermost package.  A module
 * outside any package is its base name.  Results are cached per file name.
 * pid 0 (a core file) looks at this machine's files directly.
 * Never prints.
 */
#ifndef PYROMETER_FILENAMES_H
#define PYROMETER_FILENAMES_H

#include <sys/types.h>

struct filenames;
struct filenames *filenames_new(pid_t pid);
void filenames_free(struct filenames *fn);
/* The short name of `path` (valid for the life of fn). */
const char *filenames_short(struct filenames *fn, const char *path);

/* The rule itself, given a predicate "does this directory hold __init__.py"
 * (exposed for tests).  Writes into out. */
void filenames_shorten(const char *path, int (*is_package)(const char *dir, void *ctx),
                       void *ctx, char *out, size_t cap);

#endif
