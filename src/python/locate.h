/*
 * locate.h — finding the interpreter inside a target process.
 * Owns: choosing the ELF that holds CPython (a mapped libpython or the
 * executable itself, as in Debian's static python3.11), the load bias, the
 * address of _PyRuntime and of a few type objects, and the exact version
 * X.Y.Z.  Reads ELF files through target/elf.h; never walks interpreter
 * state, never prints.
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
};

/* Find CPython in process `pid` with memory map `maps`.  Errors:
 * PM_ENOTPYTHON (nothing that looks like CPython), PM_EPERM, PM_ENOTFOUND.
 * Versions are not judged here: a 2.7 target is located (runtime_addr 0). */
int py_locate(pid_t pid, const struct proc_maps *maps, struct py_location *loc,
              struct pm_error *err);

/* Parse "3.12.1" / "3.13.0rc2" into v; 0 on success (exposed for tests). */
int py_version_parse(const char *s, struct py_version *v);
/* Fill v from a PY_VERSION_HEX value. */
void py_version_from_hex(uint64_t hex, struct py_version *v);

#endif
