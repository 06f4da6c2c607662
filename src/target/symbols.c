/*
 * symbols.c — address → module and function for native frames, plus where
 * each module's unwind table lives.
 *
 * The maps of the target are cached and re-read only when an address is in
 * no known mapping (a library dlopen'ed since), and then at most once every
 * SYMBOLS_MAPS_MIN_INTERVAL_MS so that code in anonymous memory (a JIT)
 * cannot make every lookup re-read them.  Each mapped file is loaded once,
 * when an address inside it is first asked about: its function symbols are
 * copied into a sorted array and the file is closed again, so no descriptor
 * stays open.  The vDSO has no file: its image is the same in every process
 * on this kernel, so ours is read instead.
 *
 * ELF is read with libelf directly (elf.h answers "where is symbol X", this
 * file needs "which symbol is at address Y"); every offset taken from a file
 * goes through libelf's bounds-checked accessors.  Never reads target memory,
 * never prints.
 */
#include "symbols.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#include "maps.h"
#include "proc.h"

#define DEBUG_ROOT "/usr/lib/debug/.build-id"
/* a size-0 symbol (hand-written assembly) covers at most this much */
#define SIZELESS_SYMBOL_SPAN 4096u

struct symbol {
    uint64_t value;       /* link-time address */
    uint64_t size;
    uint32_t name;        /* offset into module.names */
    uint8_t global;
};

struct module {
    char *path;
    uint64_t inode;
    int loaded;           /* 1: symbols read (maybe none); -1: unreadable */
    uint64_t bias;        /* runtime address - link-time address */
    uint64_t start, end;  /* runtime range of all its mappings */
    int has_eh;
    uint64_t eh_vaddr, eh_len;
    struct symbol *syms;
    size_t nsyms;
    char *names;
};

struct symbols {
    pid_t pid;
    struct proc_maps maps;
    int *entry_module;    /* per maps entry: module index, -1 unknown, -2 none */
    struct module *modules;
    size_t nmodules;
    uint64_t generation;
    uint64_t maps_read_ms;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- maps ------------------------------------------------------------- */

static int read_maps(struct symbols *s, struct pm_error *err)
{
    struct proc_maps fresh;
    if (maps_read(s->pid, &fresh, err) != 0)
        return -1;
    int *index = malloc((fresh.count ? fresh.count : 1) * sizeof *index);
    if (index == NULL) {
        maps_free(&fresh);
        return pm_fail(err, PM_ENOMEM, "out of memory reading maps");
    }
    for (size_t i = 0; i < fresh.count; i++)
        index[i] = -1;
    maps_free(&s->maps);
    free(s->entry_module);
    s->maps = fresh;
    s->entry_module = index;
    s->generation++;
    s->maps_read_ms = now_ms();
    return 0;
}

/* Index of the maps entry containing addr (entries are sorted), or -1. */
static long find_entry(const struct proc_maps *m, uint64_t addr)
{
    size_t lo = 0, hi = m->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (addr < m->entries[mid].start)
            hi = mid;
        else if (addr >= m->entries[mid].end)
            lo = mid + 1;
        else
            return (long)mid;
    }
    return -1;
}

/* find_entry, re-reading the maps once (rate limited) on a miss. */
static long find_entry_refresh(struct symbols *s, uint64_t addr)
{
    long i = find_entry(&s->maps, addr);
    if (i >= 0 || now_ms() - s->maps_read_ms < SYMBOLS_MAPS_MIN_INTERVAL_MS)
        return i;
    if (read_maps(s, NULL) != 0)
        return -1;
    return find_entry(&s->maps, addr);
}

static int is_file_path(const char *path)
{
    return path[0] == '/';
}

/* ---- loading a module ------------------------------------------------- */

static int symbol_order(const void *a, const void *b)
{
    const struct symbol *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    if (x->global != y->global)
        return x->global ? -1 : 1;   /* prefer the exported alias */
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return 0;
}

/* Append the function symbols of every section of type `type` in elf. */
static int collect_symbols(Elf *elf, Elf64_Word type, struct module *mod, size_t *cap,
                           size_t *names_len, size_t *names_cap)
{
    int found = 0;
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (gelf_getshdr(scn, &sh) == NULL || sh.sh_type != type || sh.sh_entsize == 0)
            continue;
        Elf_Data *data = elf_getdata(scn, NULL);
        if (data == NULL)
            continue;
        found = 1;
        size_t count = sh.sh_size / sh.sh_entsize;
        for (size_t i = 0; i < count; i++) {
            GElf_Sym sym;
            if (gelf_getsym(data, (int)i, &sym) == NULL)
                break;
            int kind = GELF_ST_TYPE(sym.st_info);
            if ((kind != STT_FUNC && kind != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF ||
                sym.st_value == 0)
                continue;
            const char *name = elf_strptr(elf, sh.sh_link, sym.st_name);
            if (name == NULL || name[0] == '\0')
                continue;
            size_t len = strlen(name) + 1;
            if (*names_len + len > UINT32_MAX)
                return found;
            if (*names_len + len > *names_cap) {
                size_t grown = *names_cap ? *names_cap * 2 : 65536;
                while (grown < *names_len + len)
                    grown *= 2;
                char *n = realloc(mod->names, grown);
                if (n == NULL)
                    return found;
                mod->names = n;
                *names_cap = grown;
            }
            if (mod->nsyms == *cap) {
                size_t grown = *cap ? *cap * 2 : 1024;
                struct symbol *g = realloc(mod->syms, grown * sizeof *g);
                if (g == NULL)
                    return found;
                mod->syms = g;
                *cap = grown;
            }
            memcpy(mod->names + *names_len, name, len);
            mod->syms[mod->nsyms].value = sym.st_value;
            mod->syms[mod->nsyms].size = sym.st_size;
            mod->syms[mod->nsyms].name = (uint32_t)*names_len;
            mod->syms[mod->nsyms].global = GELF_ST_BIND(sym.st_info) != STB_LOCAL;
            mod->nsyms++;
            *names_len += len;
        }
    }
    return found;
}

static int has_section_type(Elf *elf, Elf64_Word type)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (gelf_getshdr(scn, &sh) != NULL && sh.sh_type == type)
            return 1;
    }
    return 0;
}

/* The GNU build-id of elf as lowercase hex, or 0. */
static int build_id_hex(Elf *elf, char *out, size_t cap)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (gelf_getshdr(scn, &sh) == NULL || sh.sh_type != SHT_NOTE)
            continue;
        Elf_Data *data = elf_getdata(scn, NULL);
        if (data == NULL)
            continue;
        size_t off = 0, name_off, desc_off;
        GElf_Nhdr nh;
        while ((off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
            if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 ||
                memcmp((const char *)data->d_buf + name_off, "GNU", 4) != 0)
                continue;
            if (nh.n_descsz < 2 || nh.n_descsz * 2 + 1 > cap)
                return 0;
            const unsigned char *id = (const unsigned char *)data->d_buf + desc_off;
            for (size_t i = 0; i < nh.n_descsz; i++)
                snprintf(out + 2 * i, 3, "%02x", id[i]);
            return 1;
        }
    }
    return 0;
}

/* Symbols from a separate debug file found by build-id (Debian's -dbg
 * packages), in the target's root first, then ours. */
static void load_debug_symbols(struct symbols *s, Elf *elf, struct module *mod, size_t *cap,
                               size_t *names_len, size_t *names_cap)
{
    char id[129];
    if (!build_id_hex(elf, id, sizeof id))
        return;
    char rel[256], path[4096];
    snprintf(rel, sizeof rel, DEBUG_ROOT "/%.2s/%s.debug", id, id + 2);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (attempt == 0)
            proc_root_path(s->pid, rel, path, sizeof path);
        else
            snprintf(path, sizeof path, "%s", rel);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        Elf *dbg = elf_begin(fd, ELF_C_READ_MMAP, NULL);
        int got = 0;
        if (dbg != NULL && elf_kind(dbg) == ELF_K_ELF)
            got = collect_symbols(dbg, SHT_SYMTAB, mod, cap, names_len, names_cap);
        if (dbg)
            elf_end(dbg);
        close(fd);
        if (got)
            return;
    }
}

/* Load bias from the mapping `e` of this file: the PT_LOAD containing the
 * mapping's file offset says which link-time address the mapping starts at. */
static int compute_bias(Elf *elf, const struct map_entry *e, uint64_t *bias)
{
    size_t n;
    if (elf_getphdrnum(elf, &n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) == NULL || ph.p_type != PT_LOAD)
            continue;
        uint64_t page_off = ph.p_offset & ~(uint64_t)0xfff;
        if (e->offset < page_off || e->offset - page_off >= ph.p_filesz + (ph.p_offset - page_off))
            continue;
        uint64_t vaddr_at_start = (ph.p_vaddr - (ph.p_offset - page_off)) + (e->offset - page_off);
        *bias = e->start - vaddr_at_start;
        return 0;
    }
    return -1;
}

static void find_eh_frame(Elf *elf, struct module *mod)
{
    size_t n;
    if (elf_getphdrnum(elf, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) != NULL && ph.p_type == PT_GNU_EH_FRAME &&
            ph.p_memsz >= 4) {
            mod->has_eh = 1;
            mod->eh_vaddr = ph.p_vaddr;
            mod->eh_len = ph.p_memsz;
            return;
        }
    }
}

/* Read everything we need from an open ELF into mod (bias from mapping e). */
static void load_from_elf(struct symbols *s, Elf *elf, const struct map_entry *e,
                          struct module *mod)
{
    if (compute_bias(elf, e, &mod->bias) != 0) {
        mod->loaded = -1;
        return;
    }
    find_eh_frame(elf, mod);
    size_t cap = 0, names_len = 0, names_cap = 0;
    if (has_section_type(elf, SHT_SYMTAB))
        collect_symbols(elf, SHT_SYMTAB, mod, &cap, &names_len, &names_cap);
    else {
        load_debug_symbols(s, elf, mod, &cap, &names_len, &names_cap);
        if (mod->nsyms == 0)
            collect_symbols(elf, SHT_DYNSYM, mod, &cap, &names_len, &names_cap);
    }
    if (mod->nsyms > 1) {
        qsort(mod->syms, mod->nsyms, sizeof *mod->syms, symbol_order);
        size_t kept = 1;
        for (size_t i = 1; i < mod->nsyms; i++)
            if (mod->syms[i].value != mod->syms[kept - 1].value)
                mod->syms[kept++] = mod->syms[i];
        mod->nsyms = kept;
    }
    mod->loaded = 1;
}

/* The vDSO: the same image in every process on this kernel, so parse ours. */
static void load_vdso(struct symbols *s, const struct map_entry *e, struct module *mod)
{
    mod->loaded = -1;
    const unsigned char *base = (const unsigned char *)(uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (base == NULL || memcmp(base, ELFMAG, SELFMAG) != 0 || base[EI_CLASS] != ELFCLASS64)
        return;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    uint64_t size = eh->e_shoff + (uint64_t)eh->e_shnum * eh->e_shentsize;
    if (size > e->end - e->start || size < sizeof *eh)
        return;
    char *copy = malloc(size);
    if (copy == NULL)
        return;
    memcpy(copy, base, size);
    Elf *elf = elf_memory(copy, size);
    if (elf != NULL && elf_kind(elf) == ELF_K_ELF) {
        struct map_entry whole = *e;
        whole.offset = 0;
        load_from_elf(s, elf, &whole, mod);
    }
    if (elf)
        elf_end(elf);
    free(copy);
}

static void load_module(struct symbols *s, const struct map_entry *e, struct module *mod)
{
    mod->loaded = -1;
    /* the lowest mapping of the file fixes the bias; all give the range */
    const struct map_entry *first = e;
    mod->start = e->start;
    mod->end = e->end;
    for (size_t i = 0; i < s->maps.count; i++) {
        const struct map_entry *m = &s->maps.entries[i];
        if (m->inode != e->inode || strcmp(m->path, e->path) != 0)
            continue;
        if (m->start < first->start)
            first = m;
        if (m->start < mod->start)
            mod->start = m->start;
        if (m->end > mod->end)
            mod->end = m->end;
    }
    if (strcmp(e->path, "[vdso]") == 0) {
        load_vdso(s, e, mod);
        return;
    }
    if (!is_file_path(e->path) || strstr(e->path, " (deleted)") != NULL)
        return;
    char path[4096];
    proc_root_path(s->pid, e->path, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    if (elf != NULL && elf_kind(elf) == ELF_K_ELF)
        load_from_elf(s, elf, first, mod);
    if (elf)
        elf_end(elf);
    close(fd);
}

/* The module of maps entry i, loading it on first use; NULL if none. */
static struct module *entry_module(struct symbols *s, long i)
{
    const struct map_entry *e = &s->maps.entries[i];
    int idx = s->entry_module[i];
    if (idx == -2)
        return NULL;
    if (idx >= 0)
        return &s->modules[idx];
    if (!is_file_path(e->path) && strcmp(e->path, "[vdso]") != 0) {
        s->entry_module[i] = -2;
        return NULL;
    }
    for (size_t m = 0; m < s->nmodules; m++) {
        if (s->modules[m].inode == e->inode && strcmp(s->modules[m].path, e->path) == 0 &&
            e->start >= s->modules[m].start && e->end <= s->modules[m].end) {
            s->entry_module[i] = (int)m;
            return &s->modules[m];
        }
    }
    if (s->nmodules >= SYMBOLS_MAX_MODULES) {
        s->entry_module[i] = -2;
        return NULL;
    }
    struct module *grown = realloc(s->modules, (s->nmodules + 1) * sizeof *grown);
    if (grown == NULL)
        return NULL;
    s->modules = grown;
    struct module *mod = &s->modules[s->nmodules];
    memset(mod, 0, sizeof *mod);
    mod->path = strdup(e->path);
    mod->inode = e->inode;
    if (mod->path == NULL)
        return NULL;
    load_module(s, e, mod);
    s->entry_module[i] = (int)s->nmodules;
    s->nmodules++;
    return mod;
}

/* ---- the public side -------------------------------------------------- */

int symbols_open(pid_t pid, struct symbols **out, struct pm_error *err)
{
    if (elf_version(EV_CURRENT) == EV_NONE)
        return pm_fail(err, PM_EINTERNAL, "libelf: %s", elf_errmsg(-1));
    struct symbols *s = calloc(1, sizeof *s);
    if (s == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    s->pid = pid;
    if (read_maps(s, err) != 0) {
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void symbols_close(struct symbols *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nmodules; i++) {
        free(s->modules[i].path);
        free(s->modules[i].syms);
        free(s->modules[i].names);
    }
    free(s->modules);
    free(s->entry_module);
    maps_free(&s->maps);
    free(s);
}

static const struct symbol *module_symbol(const struct module *mod, uint64_t vaddr)
{
    size_t lo = 0, hi = mod->nsyms;
    while (lo < hi) {   /* first symbol with value > vaddr */
        size_t mid = lo + (hi - lo) / 2;
        if (mod->syms[mid].value <= vaddr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const struct symbol *sym = &mod->syms[lo - 1];
    uint64_t span = sym->size;
    if (span == 0) {
        span = SIZELESS_SYMBOL_SPAN;
        if (lo < mod->nsyms && mod->syms[lo].value - sym->value < span)
            span = mod->syms[lo].value - sym->value;
    }
    return vaddr - sym->value < span ? sym : NULL;
}

int symbols_lookup(struct symbols *s, uint64_t addr, struct native_symbol *out)
{
    memset(out, 0, sizeof *out);
    long i = find_entry_refresh(s, addr);
    if (i < 0)
        return -1;
    struct module *mod = entry_module(s, i);
    if (mod == NULL)
        return -1;
    out->module = mod->path;
    if (mod->loaded != 1) {
        out->offset = addr - mod->start;
        return 0;
    }
    const struct symbol *sym = module_symbol(mod, addr - mod->bias);
    if (sym == NULL) {
        out->offset = addr - mod->bias;
        return 0;
    }
    out->name = mod->names + sym->name;
    out->offset = addr - mod->bias - sym->value;
    return 0;
}

int symbols_unwind_table(struct symbols *s, uint64_t addr, struct unwind_table *out)
{
    long i = find_entry_refresh(s, addr);
    if (i < 0)
        return -1;
    struct module *mod = entry_module(s, i);
    if (mod == NULL || mod->loaded != 1 || !mod->has_eh)
        return -1;
    out->hdr_addr = mod->bias + mod->eh_vaddr;
    out->hdr_len = mod->eh_len;
    out->start = mod->start;
    out->end = mod->end;
    return 0;
}

int symbols_is_static(struct symbols *s, uint64_t addr, uint64_t *end)
{
    long i = find_entry(&s->maps, addr);
    if (i < 0)
        return 0;
    const struct map_entry *e = &s->maps.entries[i];
    if (e->perms[0] != 'r' || e->perms[1] == 'w' ||
        (!is_file_path(e->path) && strcmp(e->path, "[vdso]") != 0) ||
        strstr(e->path, " (deleted)") != NULL)
        return 0;
    *end = e->end;
    return 1;
}

uint64_t symbols_generation(const struct symbols *s)
{
    return s->generation;
}
