/*
 * filenames.c — "function (short_file:line)": the short_file part.
 * Pseudo-files such as "<string>" or "<frozen importlib._bootstrap>" are kept
 * as they are.  Never prints.
 */
#include "filenames.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct name_entry {
    char *path, *short_name;
};

struct filenames {
    pid_t pid;
    struct name_entry *entries;   /* open addressing */
    size_t cap, used;
};

struct filenames *filenames_new(pid_t pid)
{
    struct filenames *fn = calloc(1, sizeof *fn);
    if (fn == NULL)
        return NULL;
    fn->pid = pid;
    fn->cap = 256;
    fn->entries = calloc(fn->cap, sizeof *fn->entries);
    if (fn->entries == NULL) {
        free(fn);
        return NULL;
    }
    return fn;
}

void filenames_free(struct filenames *fn)
{
    if (fn == NULL)
        return;
    for (size_t i = 0; i < fn->cap; i++) {
        free(fn->entries[i].path);
        free(fn->entries[i].short_name);
    }
    free(fn->entries);
    free(fn);
}

void filenames_shorten(const char *path, int (*is_package)(const char *dir, void *ctx),
                       void *ctx, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (path[0] == '<' || slash == NULL) {
        snprintf(out, cap, "%s", path);
        return;
    }
    /* start = beginning of the kept part; move it up while the directory
     * above is a package. */
    char dir[PATH_MAX];
    size_t start = (size_t)(slash - path) + 1;
    size_t dir_end = (size_t)(slash - path);
    for (int levels = 0; levels < 64 && dir_end > 0; levels++) {
        if (dir_end >= sizeof dir)
            break;
        memcpy(dir, path, dir_end);
        dir[dir_end] = '\0';
        if (!is_package(dir, ctx))
            break;
        /* dir is a package: keep it in the short name */
        const char *up = memrchr(path, '/', dir_end);
        if (up == NULL) {
            start = 0;
            break;
        }
        start = (size_t)(up - path) + 1;
        dir_end = (size_t)(up - path);
    }
    snprintf(out, cap, "%s", path + start);
}

struct package_ctx {
    pid_t pid;
};

static int target_dir_is_package(const char *dir, void *ctx)
{
    const struct package_ctx *pc = ctx;
    char probe[PATH_MAX + 64];
    if (pc->pid == 0)   /* no live process (a core file): this machine's files */
        snprintf(probe, sizeof probe, "%s/__init__.py", dir);
    else if (dir[0] == '/')
        snprintf(probe, sizeof probe, "/proc/%d/root%s/__init__.py", (int)pc->pid, dir);
    else
        snprintf(probe, sizeof probe, "/proc/%d/cwd/%s/__init__.py", (int)pc->pid, dir);
    return access(probe, F_OK) == 0;
}

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static int grow(struct filenames *fn)
{
    size_t cap = fn->cap * 2;
    struct name_entry *grown = calloc(cap, sizeof *grown);
    if (grown == NULL)
        return -1;
    for (size_t i = 0; i < fn->cap; i++) {
        if (fn->entries[i].path == NULL)
            continue;
        size_t s = name_hash(fn->entries[i].path) & (cap - 1);
        while (grown[s].path)
            s = (s + 1) & (cap - 1);
        grown[s] = fn->entries[i];
    }
    free(fn->entries);
    fn->entries = grown;
    fn->cap = cap;
    return 0;
}

const char *filenames_short(struct filenames *fn, const char *path)
{
    size_t s = name_hash(path) & (fn->cap - 1);
    while (fn->entries[s].path) {
        if (strcmp(fn->entries[s].path, path) == 0)
            return fn->entries[s].short_name;
        s = (s + 1) & (fn->cap - 1);
    }
    char short_name[PATH_MAX];
    struct package_ctx ctx = {fn->pid};
    filenames_shorten(path, target_dir_is_package, &ctx, short_name, sizeof short_name);
    if ((fn->used + 1) * 2 > fn->cap) {
        if (grow(fn) != 0)
            return path;
        s = name_hash(path) & (fn->cap - 1);
        while (fn->entries[s].path)
            s = (s + 1) & (fn->cap - 1);
    }
    char *p = strdup(path), *sn = strdup(short_name);
    if (p == NULL || sn == NULL) {
        free(p);
        free(sn);
        return path;
    }
    fn->entries[s].path = p;
    fn->entries[s].short_name = sn;
    fn->used++;
    return sn;
}
