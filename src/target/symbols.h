/*
 * symbols.h — what code lives at an address of a process: the mapped file
 * (a "module"), the function whose symbol covers the address, and where the
 * module's unwind table (.eh_frame_hdr) sits in the target's memory.
 *
 * Owns: a cache of /proc/PID/maps (re-read on a miss, at most once per
 * SYMBOLS_MAPS_MIN_INTERVAL_MS) and, per mapped file, its sorted function
 * symbols (.symtab, else a build-id debug file's .symtab, else .dynsym) and
 * its PT_GNU_EH_FRAME segment.  Files are opened through /proc/PID/root so
 * containers work.  Never reads target memory, never prints, never pauses.
 *
 * Strings handed out stay valid until symbols_close(): modules are never
 * evicted (their number is bounded by SYMBOLS_MAX_MODULES).
 */
#ifndef PYROMETER_SYMBOLS_H
#define PYROMETER_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"

#define SYMBOLS_MAX_MODULES 1024u
#define SYMBOLS_MAPS_MIN_INTERVAL_MS 50

struct symbols;

/* What symbols_lookup found at an address. */
struct native_symbol {
    const char *name;     /* function name, NULL when no symbol covers the address */
    const char *module;   /* path of the mapped file, NULL when the address is in
                             no file mapping ("[vdso]" for the vDSO) */
    uint64_t offset;      /* address - symbol start (or - module load bias when
                             name is NULL) */
};

/* Where a module's binary-search table of FDEs lives in the target. */
struct unwind_table {
    uint64_t hdr_addr;    /* runtime address of .eh_frame_hdr */
    uint64_t hdr_len;
    uint64_t start, end;  /* the module's runtime address range [start, end) */
};

/* Open the cache for process pid (reads its maps once).  PM_ENOTFOUND,
 * PM_EPERM. */
int symbols_open(pid_t pid, struct symbols **out, struct pm_error *err);
void symbols_close(struct symbols *s);

/* 0 with *out filled when addr is in a file mapping (out->name may still be
 * NULL), -1 when it is in no known file mapping (out is zeroed). */
int symbols_lookup(struct symbols *s, uint64_t addr, struct native_symbol *out);

/* 0 with *out filled when the module containing addr has an .eh_frame_hdr,
 * -1 otherwise. */
int symbols_unwind_table(struct symbols *s, uint64_t addr, struct unwind_table *out);

/* 1 when addr lies in a read-only file mapping (its bytes cannot change while
 * mapped, so they may be cached), with *end the end of that mapping; 0
 * otherwise.  Uses the cached maps only (never re-reads them). */
int symbols_is_static(struct symbols *s, uint64_t addr, uint64_t *end);

/* Bumped whenever the maps are re-read (callers caching anything derived
 * from the address space flush it when this changes). */
uint64_t symbols_generation(const struct symbols *s);

#endif
