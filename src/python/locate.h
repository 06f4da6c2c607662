/*
 * locate.h — finding the interpreter inside a target process.
 * Owns: choosing the ELF that holds CPython (a mapped libpython or the
 * executable itself, as in Debian's static python3.11), the load bias, the
 * address of _PyRuntime (3.7+) or of the statics that stand in for it (2.7,
 * 3.6), of a few type objects, and the exact version X.Y.Z.  Reads ELF files
 * through target/elf.h; never walks interpreter state, never prints.
 */
#ifndef PYROMETER_LOCATE_H
#define PYROMETER_LOCATE_H

#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"
#include "../target/maps.h"

struct py_version {
    int major, minor, micro;
    char text[32];          /* "3.12.1", "3.13.0rc2" */
};

struct py_location {
    char binary[4096];      /* path of the ELF in the target's namespace */
    uint64_t bias;          /* load bias of that ELF */
    uint64_t runtime_addr;  /* &_PyRuntime in the target (0 for <3.7) */
    uint64_t runtime_size;  /* st_size of _PyRuntime */
    uint64_t code_type;     /* &PyCode_Type in the target, 0 if unknown */
    uint64_t frame_type;    /* &PyFrame_Type in the target, 0 if unknown */
    uint64_t unicode_type;  /* &PyUnicode_Type in the target, 0 if unknown */
    uint64_t bytes_type;    /* &PyBytes_Type in the target, 0 if unknown */
    struct py_version version;
    /* 2.7 and 3.6 have no _PyRuntime: their interpreter list head and GIL
     * are C statics, found by name in .symtab (local symbols; 0 when the
     * binary is stripped).  _PyThreadState_Current is exported.  Looked
     * up only when the ELF has no _PyRuntime. */
    int has_symtab;         /* the ELF has a .symtab section */
    uint64_t interp_head;   /* &interp_head (Python/pystate.c), 0 if unknown */
    uint64_t tstate_current;/* &_PyThreadState_Current (2.7: PyThreadState *;
                               3.6: _Py_atomic_address), 0 if unknown */
    uint64_t gil_locked;    /* 3.6: &gil_locked (Python/ceval_gil.h, an int) */
    uint64_t gil_last_holder; /* 3.6: &gil_last_holder (a PyThreadState *) */
    uint64_t string_type;   /* 2.7: &PyString_Type, 0 if unknown */
    uint64_t gc_generation0;/* 2.7, 3.6: &_PyGC_generation0 (exported; points at
                               the first GC generation's list head), 0 if unknown */
};

/* Where the ELF files a target mapped can be opened from, and how to name
 * the target in messages: a live process (/proc/PID/root/...) or a core
 * file (the files on this machine, or --exe). */
struct py_files {
    /* host path for a path as the target named it; 0, or -1 if unavailable */
    int (*resolve)(void *ctx, const char *target_path, char *out, size_t cap);
    void *ctx;
    char exe[4096];     /* the target's executable as it names it; "" if unknown */
    char what[300];     /* "process 1234 (cmd)" / "the core's process 1234 (cmd)" */
};

/* Find CPython among the files mapped in `maps`, opening them through
 * `files`.  Errors as py_locate. */
int py_locate_in(const struct proc_maps *maps, const struct py_files *files,
                 struct py_location *loc, struct pm_error *err);

/* Find CPython in process `pid` with memory map `maps`.  Errors:
 * PM_ENOTPYTHON (nothing that looks like CPython), PM_EPERM, PM_ENOTFOUND.
 * Versions are not judged here: a 2.7 or 3.6 target is located with
 * runtime_addr 0 and its statics (interp_head ...) filled when .symtab has
 * them; a stripped one is left for the caller to refuse. */
int py_locate(pid_t pid, const struct proc_maps *maps, struct py_location *loc,
              struct pm_error *err);

/* Parse "3.12.1" / "3.13.0rc2" into v; 0 on success (exposed for tests). */
int py_version_parse(const char *s, struct py_version *v);
/* Fill v from a PY_VERSION_HEX value. */
void py_version_from_hex(uint64_t hex, struct py_version *v);

#endif
