/*
 * elf.h — symbols, sections and static data of an ELF file (libelf).
 * Owns: opening an executable or shared library, looking up a symbol in
 * .dynsym and .symtab, finding a section, reading bytes at a virtual address
 * from the file, and the image's link-time base (to turn a mapping address
 * into a load bias).  Never reads target memory, never prints.
 */
#ifndef PYROMETER_ELF_H
#define PYROMETER_ELF_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

struct elf_image;

/* Open `path` (callers pass /proc/PID/root/... so containers work). */
int elf_open(const char *path, struct elf_image **out, struct pm_error *err);
void elf_close(struct elf_image *img);

/* Look up a defined symbol; 0 on success with its st_value and st_size. */
int elf_symbol(const struct elf_image *img, const char *name, uint64_t *value, uint64_t *size);
/* Find a section by name; 0 on success. */
int elf_section(const struct elf_image *img, const char *name, uint64_t *addr, uint64_t *size);
/* Copy len bytes at link-time virtual address vaddr from the file's
 * PT_LOAD segments (0 on success; bytes in .bss read as failure). */
int elf_read_vaddr(const struct elf_image *img, uint64_t vaddr, void *buf, size_t len);
/* p_vaddr (page aligned) of the PT_LOAD segment with file offset 0. */
uint64_t elf_base_vaddr(const struct elf_image *img);
/* ET_DYN (PIE / shared object) vs ET_EXEC. */
int elf_is_dyn(const struct elf_image *img);

/* Call fn for every NUL-terminated string in section `section` whose length
 * is in [min_len, max_len]; stops when fn returns non-zero and returns that. */
int elf_each_string(const struct elf_image *img, const char *section, size_t min_len,
                    size_t max_len, int (*fn)(const char *s, void *ctx), void *ctx);

#endif
