/*
 * elf.c — ELF files through libelf (elfutils): symbol lookup in .dynsym and
 * .symtab, sections, file bytes at a virtual address.  The file is mapped
 * read-only by libelf; all offsets taken from the file are bounds-checked
 * against its size, because a target's binaries are input like any other.
 * Never reads target memory, never prints.
 */
#include "elf.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct elf_image {
    int fd;
    Elf *elf;
    const char *raw;     /* whole file */
    size_t raw_size;
    GElf_Ehdr ehdr;
};

int elf_open(const char *path, struct elf_image **out, struct pm_error *err)
{
    static int initialised;
    if (!initialised) {
        if (elf_version(EV_CURRENT) == EV_NONE)
            return pm_fail(err, PM_EINTERNAL, "libelf: %s", elf_errmsg(-1));
        initialised = 1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == EACCES || errno == EPERM)
            return pm_fail(err, PM_EPERM, "permission denied opening %s: run as root or grant "
                           "CAP_SYS_PTRACE", path);
        return pm_fail(err, PM_ENOTFOUND, "cannot open %s: %s", path, strerror(errno));
    }
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    struct elf_image *img = calloc(1, sizeof *img);
    if (elf == NULL || elf_kind(elf) != ELF_K_ELF || img == NULL ||
        gelf_getehdr(elf, &img->ehdr) == NULL) {
        if (elf)
            elf_end(elf);
        free(img);
        close(fd);
        return pm_fail(err, PM_EFORMAT, "%s is not an ELF file", path);
    }
    img->fd = fd;
    img->elf = elf;
    img->raw = elf_rawfile(elf, &img->raw_size);
    *out = img;
    return 0;
}

void elf_close(struct elf_image *img)
{
    if (img == NULL)
        return;
    elf_end(img->elf);
    close(img->fd);
    free(img);
}

static int find_in_symtab(Elf_Scn *scn, const GElf_Shdr *sh, Elf *elf, const char *name,
                          uint64_t *value, uint64_t *size)
{
    Elf_Data *data = elf_getdata(scn, NULL);
    if (data == NULL || sh->sh_entsize == 0)
        return -1;
    size_t count = sh->sh_size / sh->sh_entsize;
    for (size_t i = 0; i < count; i++) {
        GElf_Sym sym;
        if (gelf_getsym(data, (int)i, &sym) == NULL)
            break;
        if (sym.st_shndx == SHN_UNDEF || sym.st_value == 0)
            continue;
        const char *sym_name = elf_strptr(elf, sh->sh_link, sym.st_name);
        if (sym_name && strcmp(sym_name, name) == 0) {
            *value = sym.st_value;
            *size = sym.st_size;
            return 0;
        }
    }
    return -1;
}

int elf_symbol(const struct elf_image *img, const char *name, uint64_t *value, uint64_t *size)
{
    /* .dynsym first (always present in shared objects), then .symtab. */
    static const Elf64_Word kinds[] = {SHT_DYNSYM, SHT_SYMTAB};
    for (size_t k = 0; k < 2; k++) {
        Elf_Scn *scn = NULL;
        while ((scn = elf_nextscn(img->elf, scn)) != NULL) {
            GElf_Shdr sh;
            if (gelf_getshdr(scn, &sh) == NULL || sh.sh_type != kinds[k])
                continue;
            if (find_in_symtab(scn, &sh, img->elf, name, value, size) == 0)
                return 0;
        }
    }
    return -1;
}

static Elf_Scn *section_by_name(const struct elf_image *img, const char *name, GElf_Shdr *sh)
{
    size_t shstrndx;
    if (elf_getshdrstrndx(img->elf, &shstrndx) != 0)
        return NULL;
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(img->elf, scn)) != NULL) {
        if (gelf_getshdr(scn, sh) == NULL)
            continue;
        const char *n = elf_strptr(img->elf, shstrndx, sh->sh_name);
        if (n && strcmp(n, name) == 0)
            return scn;
    }
    return NULL;
}

int elf_section(const struct elf_image *img, const char *name, uint64_t *addr, uint64_t *size)
{
    GElf_Shdr sh;
    if (section_by_name(img, name, &sh) == NULL)
        return -1;
    *addr = sh.sh_addr;
    *size = sh.sh_size;
    return 0;
}

int elf_read_vaddr(const struct elf_image *img, uint64_t vaddr, void *buf, size_t len)
{
    size_t nphdr;
    if (elf_getphdrnum(img->elf, &nphdr) != 0 || img->raw == NULL)
        return -1;
    for (size_t i = 0; i < nphdr; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(img->elf, (int)i, &ph) == NULL || ph.p_type != PT_LOAD)
            continue;
        if (vaddr < ph.p_vaddr || vaddr - ph.p_vaddr >= ph.p_filesz ||
            len > ph.p_filesz - (vaddr - ph.p_vaddr))
            continue;
        uint64_t off = ph.p_offset + (vaddr - ph.p_vaddr);
        if (off > img->raw_size || len > img->raw_size - off)
            return -1;
        memcpy(buf, img->raw + off, len);
        return 0;
    }
    return -1;
}

uint64_t elf_base_vaddr(const struct elf_image *img)
{
    size_t nphdr;
    if (elf_getphdrnum(img->elf, &nphdr) != 0)
        return 0;
    for (size_t i = 0; i < nphdr; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(img->elf, (int)i, &ph) != NULL && ph.p_type == PT_LOAD)
            return ph.p_vaddr - ph.p_offset;  /* the first PT_LOAD maps offset 0 */
    }
    return 0;
}

int elf_is_dyn(const struct elf_image *img)
{
    return img->ehdr.e_type == ET_DYN;
}

int elf_each_string(const struct elf_image *img, const char *section, size_t min_len,
                    size_t max_len, int (*fn)(const char *s, void *ctx), void *ctx)
{
    GElf_Shdr sh;
    if (section_by_name(img, section, &sh) == NULL || sh.sh_type == SHT_NOBITS ||
        img->raw == NULL || sh.sh_offset > img->raw_size ||
        sh.sh_size > img->raw_size - sh.sh_offset)
        return 0;
    const char *p = img->raw + sh.sh_offset;
    const char *end = p + sh.sh_size;
    while (p < end) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        if (nul == NULL)
            break;
        size_t n = (size_t)(nul - p);
        if (n >= min_len && n <= max_len) {
            int rc = fn(p, ctx);
            if (rc)
                return rc;
        }
        p = nul + 1;
    }
    return 0;
}
