/*
 * locate.c — which ELF in the target is CPython, where _PyRuntime is, and
 * which exact version it is.
 *
 * Candidates are the mapped files named libpython* first, then the
 * executable.  2.7 and 3.6 have no _PyRuntime: the statics that stand in for
 * it are looked up in .symtab (find_old_statics).  The version comes from,
 * in order: the exported Py_Version constant (3.11+), else the PY_VERSION
 * string literal in .rodata matching the major.minor named by the file
 * ("libpython3.9.so", "python3.9"), else the major.minor whose
 * sizeof(_PyRuntimeState) equals the symbol's size.  Never walks interpreter
 * state, never prints.
 */
#include "locate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../target/elf.h"
#include "../target/proc.h"
#include "layout.h"

int py_version_parse(const char *s, struct py_version *v)
{
    int major, minor, micro, n = 0;
    if (sscanf(s, "%d.%d.%d%n", &major, &minor, &micro, &n) != 3 || n <= 0)
        return -1;
    /* what follows may only be a release tag like "rc2", "a1", "+" */
    for (const char *p = s + n; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '+')
            return -1;
    if (strlen(s) >= sizeof v->text || major < 2 || major > 3 || minor < 0 || minor > 99)
        return -1;
    v->major = major;
    v->minor = minor;
    v->micro = micro;
    snprintf(v->text, sizeof v->text, "%s", s);
    return 0;
}

void py_version_from_hex(uint64_t hex, struct py_version *v)
{
    static const char *levels[16] = {[0xA] = "a", [0xB] = "b", [0xC] = "rc"};
    v->major = (int)((hex >> 24) & 0xff);
    v->minor = (int)((hex >> 16) & 0xff);
    v->micro = (int)((hex >> 8) & 0xff);
    unsigned level = (hex >> 4) & 0xf, serial = hex & 0xf;
    if (level == 0xF || levels[level] == NULL)
        snprintf(v->text, sizeof v->text, "%d.%d.%d", v->major, v->minor, v->micro);
    else
        snprintf(v->text, sizeof v->text, "%d.%d.%d%s%u", v->major, v->minor, v->micro,
                 levels[level], serial);
}

/* "libpython3.12.so.1.0" / "python3.12" / "libpython2.7.so" → 3, 12. */
static int version_from_name(const char *path, int *major, int *minor)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *p = strstr(base, "python");
    if (p == NULL)
        return -1;
    p += 6;
    if (sscanf(p, "%d.%d", major, minor) != 2)
        return -1;
    return 0;
}

struct rodata_search {
    char prefix[16];        /* "3.9." */
    struct py_version found;
    int quality;            /* 2: a whole string, 1: the tail of one, 0: none */
};

/* PY_VERSION is a string literal; the linker may merge it into the tail of
 * a longer string ending the same way (such as the install prefix
 * ".../versions/3.9.18"), so a version at the end of a string after a
 * character that cannot be part of it counts too, below a whole match. */
static int match_version_literal(const char *s, void *ctx)
{
    struct rodata_search *rs = ctx;
    size_t plen = strlen(rs->prefix);
    for (const char *p = s; (p = strstr(p, rs->prefix)) != NULL; p++) {
        if (p != s && (isdigit((unsigned char)p[-1]) || p[-1] == '.'))
            continue;
        struct py_version v;
        if (!isdigit((unsigned char)p[plen]) || py_version_parse(p, &v) != 0)
            continue;
        int quality = p == s ? 2 : 1;
        if (quality > rs->quality) {
            rs->found = v;
            rs->quality = quality;
        }
        return quality == 2;
    }
    return 0;
}

static int is_python_name(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strncmp(base, "libpython", 9) == 0 || strncmp(base, "python", 6) == 0;
}

/* Version of a CPython ELF that has no Py_Version symbol. */
static int version_from_rodata(const struct elf_image *img, const char *path,
                               uint64_t runtime_size, struct py_version *v)
{
    int major = 0, minor = 0;
    if (version_from_name(path, &major, &minor) != 0 && runtime_size != 0) {
        for (size_t i = 0; py_generated_layouts[i]; i++)
            if ((uint64_t)py_generated_layouts[i]->runtime_size == runtime_size) {
                major = py_generated_layouts[i]->major;
                minor = py_generated_layouts[i]->minor;
            }
    }
    if (major == 0)
        return -1;
    struct rodata_search rs = {.quality = 0};
    snprintf(rs.prefix, sizeof rs.prefix, "%d.%d.", major, minor);
    elf_each_string(img, ".rodata", 5, 4096, match_version_literal, &rs);
    if (rs.quality > 0) {
        *v = rs.found;
        return 0;
    }
    /* Known minor, unknown micro. */
    v->major = major;
    v->minor = minor;
    v->micro = 0;
    snprintf(v->text, sizeof v->text, "%d.%d", major, minor);
    return 0;
}

static uint64_t load_bias(const struct proc_maps *maps, const char *path,
                          const struct elf_image *img)
{
    if (!elf_is_dyn(img))
        return 0;
    const struct map_entry *best = NULL;
    for (size_t i = 0; i < maps->count; i++) {
        const struct map_entry *e = &maps->entries[i];
        if (e->offset == 0 && strcmp(e->path, path) == 0 && (best == NULL || e->start < best->start))
            best = e;
    }
    if (best == NULL)
        best = maps_first_of(maps, path);
    return best ? best->start - elf_base_vaddr(img) : 0;
}

/* 2.7 and 3.6 keep the interpreter list head (`interp_head`, static in
 * Python/pystate.c) and 3.6 its GIL (`gil_locked`, `gil_last_holder`,
 * statics of Python/ceval_gil.h compiled into ceval.c) where only .symtab
 * names them; `_PyThreadState_Current` is exported (in 3.7+ it is a macro
 * over _PyRuntime, so finding it here means an older version).  What is
 * missing stays 0. */
static void find_old_statics(const struct elf_image *img, struct py_location *loc)
{
    uint64_t addr, size, section_addr;
    loc->has_symtab = elf_section(img, ".symtab", &section_addr, &size) == 0;
    if (elf_symbol(img, "interp_head", &addr, &size) == 0 && size == 8)
        loc->interp_head = addr + loc->bias;
    if (elf_symbol(img, "_PyThreadState_Current", &addr, &size) == 0 && size == 8)
        loc->tstate_current = addr + loc->bias;
    if (elf_symbol(img, "gil_locked", &addr, &size) == 0 && size == 4)
        loc->gil_locked = addr + loc->bias;
    if (elf_symbol(img, "gil_last_holder", &addr, &size) == 0 && size == 8)
        loc->gil_last_holder = addr + loc->bias;
    if (elf_symbol(img, "_PyGC_generation0", &addr, &size) == 0 && size == 8)
        loc->gc_generation0 = addr + loc->bias;
}

/* Try one candidate ELF; 1 = it is CPython (loc filled), 0 = not, -1 = error. */
static int try_candidate(const struct py_files *files, const struct proc_maps *maps,
                         const char *path, struct py_location *loc, struct pm_error *err)
{
    char host_path[4200];
    if (files->resolve(files->ctx, path, host_path, sizeof host_path) != 0)
        return 0;
    struct elf_image *img;
    struct pm_error open_err;
    if (elf_open(host_path, &img, &open_err) != 0) {
        if (open_err.code == PM_EPERM) {
            *err = open_err;
            return -1;
        }
        return 0;
    }
    uint64_t runtime = 0, runtime_size = 0, size;
    int has_runtime = elf_symbol(img, "_PyRuntime", &runtime, &runtime_size) == 0;
    uint64_t dummy;
    int has_python = has_runtime || elf_symbol(img, "Py_Initialize", &dummy, &size) == 0 ||
                     elf_symbol(img, "Py_InitializeEx", &dummy, &size) == 0;
    if (!has_python) {
        elf_close(img);
        return 0;
    }
    memset(loc, 0, sizeof *loc);
    snprintf(loc->binary, sizeof loc->binary, "%s", path);
    loc->bias = load_bias(maps, path, img);
    if (has_runtime) {
        loc->runtime_addr = runtime + loc->bias;
        loc->runtime_size = runtime_size;
    }
    uint64_t addr;
    if (elf_symbol(img, "PyCode_Type", &addr, &size) == 0)
        loc->code_type = addr + loc->bias;
    if (elf_symbol(img, "PyFrame_Type", &addr, &size) == 0)
        loc->frame_type = addr + loc->bias;
    if (elf_symbol(img, "PyUnicode_Type", &addr, &size) == 0)
        loc->unicode_type = addr + loc->bias;
    if (elf_symbol(img, "PyBytes_Type", &addr, &size) == 0)
        loc->bytes_type = addr + loc->bias;
    if (elf_symbol(img, "PyString_Type", &addr, &size) == 0) {
        /* 2.7: str is a byte string, and bytes is only another name for it */
        loc->string_type = addr + loc->bias;
        if (loc->bytes_type == 0)
            loc->bytes_type = loc->string_type;
    }
    if (!has_runtime)
        find_old_statics(img, loc);

    uint64_t version_addr, version_hex = 0;
    uint32_t hex32;
    if (elf_symbol(img, "Py_Version", &version_addr, &size) == 0 &&
        elf_read_vaddr(img, version_addr, &hex32, sizeof hex32) == 0) {
        version_hex = hex32;
        py_version_from_hex(version_hex, &loc->version);
    } else if (version_from_rodata(img, path, runtime_size, &loc->version) != 0) {
        elf_close(img);
        pm_fail(err, PM_EUNSUPPORTED, "%s runs a CPython whose version cannot be determined (%s)",
                files->what, path);
        return -1;
    }
    elf_close(img);
    return 1;
}

static int seen_before(const struct proc_maps *maps, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(maps->entries[j].path, maps->entries[i].path) == 0)
            return 1;
    return 0;
}

int py_locate_in(const struct proc_maps *maps, const struct py_files *files,
                 struct py_location *loc, struct pm_error *err)
{
    /* 1. mapped libpython* (and, for odd names, any python-named file) */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < maps->count; i++) {
            const char *path = maps->entries[i].path;
            if (path[0] != '/' || seen_before(maps, i))
                continue;
            const char *base = strrchr(path, '/') + 1;
            int wanted = pass == 0 ? strncmp(base, "libpython", 9) == 0 : is_python_name(path);
            if (!wanted)
                continue;
            int rc = try_candidate(files, maps, path, loc, err);
            if (rc != 0)
                return rc > 0 ? 0 : -1;
        }
        /* 2. the executable (static builds) */
        if (pass == 0 && files->exe[0]) {
            int rc = try_candidate(files, maps, files->exe, loc, err);
            if (rc != 0)
                return rc > 0 ? 0 : -1;
        }
    }
    return pm_fail(err, PM_ENOTPYTHON,
                   "%s is not a Python process: no libpython mapped and no _PyRuntime in %s",
                   files->what, files->exe[0] ? files->exe : "its executable");
}

static int process_resolve(void *ctx, const char *target_path, char *out, size_t cap)
{
    proc_root_path(*(const pid_t *)ctx, target_path, out, cap);
    return 0;
}

int py_locate(pid_t pid, const struct proc_maps *maps, struct py_location *loc,
              struct pm_error *err)
{
    struct py_files files = {.resolve = process_resolve, .ctx = &pid};
    char cmd[256];
    proc_cmdline(pid, cmd, sizeof cmd);
    snprintf(files.what, sizeof files.what, "process %d (%s)", (int)pid, cmd[0] ? cmd : "?");
    if (proc_exe(pid, files.exe, sizeof files.exe) != 0)
        files.exe[0] = '\0';
    return py_locate_in(maps, &files, loc, err);
}
