/*
 * core.c — ELF core files (gdb's `gcore`, or the kernel's on a fatal signal)
 * as a target: memory, mapped files, threads.
 *
 * A core holds one PT_LOAD segment per mapping of the process.  Its bytes are
 * in the core only up to p_filesz: the kernel (coredump_filter) and gdb leave
 * out memory they can find again on disk — the text and read-only data of
 * mapped files — keeping at most the first page of an ELF mapping.  NT_FILE
 * lists every file-backed mapping (start, end, file offset, path), so the
 * reader serves an address from the core where it was dumped and otherwise
 * from the original file, at the offset the mapping had.
 *
 * Invariants:
 *   - the core is mapped read-only and every offset and size taken from it is
 *     checked against its size (a core is input like any other file);
 *   - a file is trusted only if the pages of it the core kept still match it
 *     (the ELF header page, which holds the build id): a rebuilt or upgraded
 *     file is reported, never silently read;
 *   - a read is whole or fails: PM_EREAD names the address and why (outside
 *     every mapping, not kept by the core, or in a missing file).
 * Never interprets what it reads, never prints.
 */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/procfs.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <unistd.h>

#define CHECK_BYTES 4096u          /* bytes of a kept page compared with its file */
#define MAX_SEGMENTS (1u << 20)
#define MAX_MAPPINGS (1u << 20)
#define MAX_THREADS (1u << 20)

#if defined(__x86_64__)
#define CORE_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define CORE_MACHINE EM_AARCH64
#else
#error "core files: unsupported architecture"
#endif

struct core_segment {
    uint64_t start, end;           /* [p_vaddr, p_vaddr + p_memsz) */
    uint64_t offset;               /* p_offset in the core */
    uint64_t kept;                 /* bytes present in the core from start */
    uint32_t flags;                /* PF_R | PF_W | PF_X */
};

struct core_mapping {              /* one NT_FILE entry */
    uint64_t start, end;
    uint64_t offset;               /* in bytes */
    size_t file;                   /* index into files */
};

struct mapped_file {
    char *path;                    /* as the dumped process named it */
    char *host_path;               /* what this machine opens */
    int fd;                        /* -1 when missing or unreadable */
    uint64_t size;
    int needed;                    /* some of its mapped bytes are not in the core */
    char problem[200];             /* "" when the file is usable */
    /* the file's own PT_LOAD flags by file offset, for mappings the core has
     * no segment for (gdb leaves out whole text segments) */
    struct { uint64_t offset, end; uint32_t flags; } loads[16];
    size_t nloads;
};

struct core_file {
    char *path;
    int fd;
    const uint8_t *image;          /* the whole core, mapped */
    size_t image_size;
    struct core_segment *segs;     /* sorted by start */
    size_t nsegs;
    struct core_mapping *maps;     /* sorted by start */
    size_t nmaps;
    struct mapped_file *files;
    size_t nfiles;
    struct core_thread *threads;
    size_t nthreads;
    pid_t pid;
    char command[1024];            /* argv from the stack, else pr_psargs */
    uint8_t auxv_head[64];         /* the first entries of NT_AUXV, to find it on the stack */
    size_t auxv_head_len;
    char *exe;                     /* "" when unknown */
    char *exe_host;
    int exe_file;                  /* index into files, -1 if none */
    uint64_t at_phdr, at_entry, at_execfn, at_sysinfo_ehdr;
    char truncated[200];           /* "" unless the core is shorter than it says */
};

struct core_reader {
    struct reader base;
    struct core_file *core;
};

/* ---- lookups ------------------------------------------------------------ */

/* The segment containing addr, or NULL; *next_start is the start of the first
 * segment above addr (UINT64_MAX if none). */
static const struct core_segment *find_segment(const struct core_file *c, uint64_t addr,
                                               uint64_t *next_start)
{
    size_t lo = 0, hi = c->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->segs[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* lo = first segment starting above addr */
    *next_start = lo < c->nsegs ? c->segs[lo].start : UINT64_MAX;
    if (lo > 0 && addr < c->segs[lo - 1].end)
        return &c->segs[lo - 1];
    return NULL;
}

static const struct core_mapping *find_mapping(const struct core_file *c, uint64_t addr)
{
    size_t lo = 0, hi = c->nmaps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->maps[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0 && addr < c->maps[lo - 1].end)
        return &c->maps[lo - 1];
    return NULL;
}

/* ---- reading ------------------------------------------------------------ */

static int read_from_file(const struct core_file *c, const struct core_mapping *m, uint64_t addr,
                          uint8_t *out, size_t len, struct pm_error *err)
{
    const struct mapped_file *f = &c->files[m->file];
    if (f->fd < 0)
        return pm_fail(err, PM_EREAD,
                       "cannot read 0x%llx: the core does not hold it and its file %s is %s",
                       (unsigned long long)addr, f->path, f->problem);
    uint64_t off = m->offset + (addr - m->start);
    size_t done = 0;
    while (done < len) {
        ssize_t got = pread(f->fd, out + done, len - done, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return pm_fail(err, PM_EREAD, "cannot read %zu bytes at 0x%llx from %s (offset 0x%llx)%s",
                           len, (unsigned long long)addr, f->host_path,
                           (unsigned long long)off, got < 0 ? ": I/O error" : ": past its end");
        done += (size_t)got;
    }
    return 0;
}

/* Copy len bytes at addr of the dumped process, piece by piece across
 * segments: from the core where it holds them, else from the mapped file. */
static int core_read_bytes(const struct core_file *c, uint64_t addr, void *buf, size_t len,
                           struct pm_error *err)
{
    uint8_t *out = buf;
    while (len > 0) {
        uint64_t next_start;
        const struct core_segment *s = find_segment(c, addr, &next_start);
        size_t n;
        if (s != NULL && addr - s->start < s->kept) {
            uint64_t avail = s->kept - (addr - s->start);
            n = avail < len ? (size_t)avail : len;
            memcpy(out, c->image + s->offset + (addr - s->start), n);
        } else {
            const struct core_mapping *m = find_mapping(c, addr);
            if (m == NULL) {
                if (s == NULL)
                    return pm_fail(err, PM_EREAD, "cannot read 0x%llx: not mapped in the core",
                                   (unsigned long long)addr);
                return pm_fail(err, PM_EREAD,
                               "cannot read 0x%llx: memory the core did not keep",
                               (unsigned long long)addr);
            }
            uint64_t limit = m->end;
            if (s != NULL && s->end < limit)
                limit = s->end;     /* the next segment may keep the bytes */
            if (s == NULL && next_start < limit)
                limit = next_start;
            n = limit - addr < len ? (size_t)(limit - addr) : len;
            if (read_from_file(c, m, addr, out, n, err) != 0)
                return -1;
        }
        out += n;
        addr += n;
        len -= n;
    }
    return 0;
}

static int core_reader_read(struct reader *r, uint64_t addr, void *buf, size_t len,
                            struct pm_error *err)
{
    return core_read_bytes(((struct core_reader *)r)->core, addr, buf, len, err);
}

static void core_reader_close(struct reader *r)
{
    free(r);
}

static const struct reader_ops core_reader_ops = {core_reader_read, NULL, core_reader_close};

struct reader *core_reader(struct core_file *c, struct pm_error *err)
{
    struct core_reader *cr = calloc(1, sizeof *cr);
    if (cr == NULL) {
        pm_fail(err, PM_ENOMEM, "out of memory");
        return NULL;
    }
    cr->base.ops = &core_reader_ops;
    cr->core = c;
    return &cr->base;
}

/* ---- notes -------------------------------------------------------------- */

static int add_file(struct core_file *c, const char *path, size_t *index)
{
    for (size_t i = 0; i < c->nfiles; i++)
        if (strcmp(c->files[i].path, path) == 0) {
            *index = i;
            return 0;
        }
    struct mapped_file *grown = realloc(c->files, (c->nfiles + 1) * sizeof *grown);
    if (grown == NULL)
        return -1;
    c->files = grown;
    struct mapped_file *f = &c->files[c->nfiles];
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = strdup(path);
    if (f->path == NULL)
        return -1;
    *index = c->nfiles++;
    return 0;
}

/* NT_FILE: count, page size, count × (start, end, page offset), then count
 * NUL-terminated paths. */
static int parse_nt_file(struct core_file *c, const uint8_t *desc, size_t size,
                         struct pm_error *err)
{
    uint64_t count, page;
    if (size < 16)
        return pm_fail(err, PM_EFORMAT, "%s: NT_FILE note too short", c->path);
    memcpy(&count, desc, 8);
    memcpy(&page, desc + 8, 8);
    if (count > MAX_MAPPINGS || 16 + count * 24 > size || page == 0 || page > (1u << 30))
        return pm_fail(err, PM_EFORMAT, "%s: malformed NT_FILE note", c->path);
    const char *name = (const char *)desc + 16 + count * 24;
    const char *end = (const char *)desc + size;
    c->maps = calloc(count ? count : 1, sizeof *c->maps);
    if (c->maps == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < count; i++) {
        uint64_t v[3];
        memcpy(v, desc + 16 + i * 24, sizeof v);
        const char *nul = memchr(name, '\0', (size_t)(end - name));
        if (nul == NULL || v[1] < v[0] || v[2] > UINT64_MAX / page)
            return pm_fail(err, PM_EFORMAT, "%s: malformed NT_FILE note", c->path);
        struct core_mapping *m = &c->maps[c->nmaps];
        m->start = v[0];
        m->end = v[1];
        m->offset = v[2] * page;
        if (add_file(c, name, &m->file) != 0)
            return pm_fail(err, PM_ENOMEM, "out of memory");
        c->nmaps++;
        name = nul + 1;
    }
    return 0;
}

static uint64_t greg(const elf_gregset_t regs, size_t index)
{
    return (uint64_t)regs[index];
}

static int parse_prstatus(struct core_file *c, const uint8_t *desc, size_t size,
                          struct pm_error *err)
{
    struct elf_prstatus st;
    if (size < sizeof st)
        return pm_fail(err, PM_EFORMAT, "%s: NT_PRSTATUS note of %zu bytes (expected %zu)",
                       c->path, size, sizeof st);
    if (c->nthreads >= MAX_THREADS)
        return pm_fail(err, PM_EFORMAT, "%s: too many threads", c->path);
    memcpy(&st, desc, sizeof st);
    struct core_thread *grown = realloc(c->threads, (c->nthreads + 1) * sizeof *grown);
    if (grown == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    c->threads = grown;
    struct core_thread *t = &c->threads[c->nthreads++];
    memset(t, 0, sizeof *t);
    t->tid = st.pr_pid;
    /* The kernel writes the thread that took the fatal signal first (its
     * record is the one followed by NT_SIGINFO) and copies the signal into
     * every thread's pr_cursig: only the first record's is its own. */
    t->signal = c->nthreads == 1 ? st.pr_cursig : 0;
    size_t n = sizeof st.pr_reg / sizeof st.pr_reg[0];
    t->nregs = n < CORE_MAX_REGS ? n : CORE_MAX_REGS;
    for (size_t i = 0; i < t->nregs; i++)
        t->regs[i] = greg(st.pr_reg, i);
#if defined(__x86_64__)
    t->pc = greg(st.pr_reg, offsetof(struct user_regs_struct, rip) / sizeof(elf_greg_t));
    t->sp = greg(st.pr_reg, offsetof(struct user_regs_struct, rsp) / sizeof(elf_greg_t));
    t->fp = greg(st.pr_reg, offsetof(struct user_regs_struct, rbp) / sizeof(elf_greg_t));
    t->thread_pointer =
        greg(st.pr_reg, offsetof(struct user_regs_struct, fs_base) / sizeof(elf_greg_t));
#elif defined(__aarch64__)
    t->fp = greg(st.pr_reg, 29);
    t->sp = greg(st.pr_reg, 31);
    t->pc = greg(st.pr_reg, 32);
#endif
    return 0;
}

static void parse_prpsinfo(struct core_file *c, const uint8_t *desc, size_t size)
{
    struct elf_prpsinfo ps;
    if (size < sizeof ps)
        return;
    memcpy(&ps, desc, sizeof ps);
    c->pid = ps.pr_pid;
    size_t n = strnlen(ps.pr_psargs, sizeof ps.pr_psargs);
    if (n == 0)
        n = strnlen(ps.pr_fname, sizeof ps.pr_fname);
    memcpy(c->command, n && ps.pr_psargs[0] ? ps.pr_psargs : ps.pr_fname, n);
    while (n > 0 && c->command[n - 1] == ' ')
        n--;
    c->command[n] = '\0';
}

static void parse_auxv(struct core_file *c, const uint8_t *desc, size_t size)
{
    c->auxv_head_len = size < sizeof c->auxv_head ? size & ~(size_t)15 : sizeof c->auxv_head;
    memcpy(c->auxv_head, desc, c->auxv_head_len);
    for (size_t off = 0; off + 16 <= size; off += 16) {
        uint64_t type, value;
        memcpy(&type, desc + off, 8);
        memcpy(&value, desc + off + 8, 8);
        switch (type) {
        case AT_PHDR: c->at_phdr = value; break;
        case AT_ENTRY: c->at_entry = value; break;
        case AT_EXECFN: c->at_execfn = value; break;
        case AT_SYSINFO_EHDR: c->at_sysinfo_ehdr = value; break;
        default: break;
        }
        if (type == AT_NULL)
            break;
    }
}

static int parse_notes(struct core_file *c, Elf *elf, const GElf_Phdr *ph, struct pm_error *err)
{
    if (ph->p_offset > c->image_size || ph->p_filesz > c->image_size - ph->p_offset)
        return pm_fail(err, PM_EFORMAT, "%s is truncated: its notes are cut off", c->path);
    Elf_Data *data = elf_getdata_rawchunk(elf, (int64_t)ph->p_offset, ph->p_filesz, ELF_T_NHDR);
    if (data == NULL)
        return pm_fail(err, PM_EFORMAT, "%s: unreadable notes: %s", c->path, elf_errmsg(-1));
    int have_files = c->nmaps > 0;
    size_t off = 0, next;
    GElf_Nhdr nh;
    size_t name_off, desc_off;
    while (off < data->d_size &&
           (next = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
        const char *name = (const char *)data->d_buf + name_off;
        const uint8_t *desc = (const uint8_t *)data->d_buf + desc_off;
        off = next;
        if (nh.n_namesz != sizeof "CORE" || memcmp(name, "CORE", sizeof "CORE") != 0)
            continue;
        switch (nh.n_type) {
        case NT_PRSTATUS:
            if (parse_prstatus(c, desc, nh.n_descsz, err) != 0)
                return -1;
            break;
        case NT_PRPSINFO:
            parse_prpsinfo(c, desc, nh.n_descsz);
            break;
        case NT_AUXV:
            parse_auxv(c, desc, nh.n_descsz);
            break;
        case NT_FILE:
            if (!have_files && parse_nt_file(c, desc, nh.n_descsz, err) != 0)
                return -1;
            have_files = 1;
            break;
        default:
            break;
        }
    }
    return 0;
}

/* ---- segments ----------------------------------------------------------- */

static int by_segment_start(const void *a, const void *b)
{
    const struct core_segment *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int by_mapping_start(const void *a, const void *b)
{
    const struct core_mapping *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int add_segment(struct core_file *c, const GElf_Phdr *ph, uint64_t *missing,
                       struct pm_error *err)
{
    if (ph->p_memsz == 0)
        return 0;
    if (ph->p_vaddr + ph->p_memsz < ph->p_vaddr || ph->p_filesz > ph->p_memsz)
        return pm_fail(err, PM_EFORMAT, "%s: malformed PT_LOAD segment at 0x%llx", c->path,
                       (unsigned long long)ph->p_vaddr);
    if (c->nsegs >= MAX_SEGMENTS)
        return pm_fail(err, PM_EFORMAT, "%s: too many segments", c->path);
    struct core_segment *s = &c->segs[c->nsegs++];
    s->start = ph->p_vaddr;
    s->end = ph->p_vaddr + ph->p_memsz;
    s->offset = ph->p_offset;
    s->flags = ph->p_flags;
    s->kept = ph->p_filesz;
    if (ph->p_filesz > 0) {
        uint64_t have = ph->p_offset >= c->image_size ? 0 : c->image_size - ph->p_offset;
        if (have < s->kept) {
            *missing += s->kept - have;
            s->kept = have;
        }
    }
    return 0;
}

/* ---- files -------------------------------------------------------------- */

static const char *host_path_of(const struct core_file *c, size_t file, const char *exe_path)
{
    if (exe_path != NULL && (int)file == c->exe_file)
        return exe_path;
    return c->files[file].path;
}

/* Compare the first page of f the core kept (its ELF header page, where the
 * build id is) with the file today; also, no mapping may start past its end. */
static int file_matches(const struct core_file *c, size_t file)
{
    const struct mapped_file *f = &c->files[file];
    for (size_t i = 0; i < c->nmaps; i++) {
        const struct core_mapping *m = &c->maps[i];
        if (m->file != file)
            continue;
        if (m->offset >= f->size && m->end > m->start)
            return 0;   /* mapped past the end of today's file */
        uint64_t next;
        const struct core_segment *s = find_segment(c, m->start, &next);
        /* only the ELF header page: later read-only pages may have been
         * written (RELRO is relocated, then made read-only) */
        if (m->offset != 0 || s == NULL || s->start != m->start || (s->flags & PF_W) ||
            s->kept == 0)
            continue;
        size_t n = s->kept < CHECK_BYTES ? (size_t)s->kept : CHECK_BYTES;
        if (m->end - m->start < n)
            n = (size_t)(m->end - m->start);
        uint8_t buf[CHECK_BYTES];
        ssize_t got = pread(f->fd, buf, n, (off_t)m->offset);
        if (got < 0)
            continue;
        /* bytes past the end of the file read as zero in memory */
        memset(buf + got, 0, n - (size_t)got);
        if (memcmp(buf, c->image + s->offset, n) != 0)
            return 0;
    }
    return 1;
}

/* Whether every byte of m is kept in the core. */
static int mapping_kept(const struct core_file *c, const struct core_mapping *m)
{
    uint64_t addr = m->start;
    while (addr < m->end) {
        uint64_t next;
        const struct core_segment *s = find_segment(c, addr, &next);
        if (s == NULL || addr - s->start >= s->kept)
            return 0;
        addr = s->start + s->kept;
    }
    return 1;
}

/* Remember the PT_LOAD flags of an ELF file (without libelf: only the
 * program headers are needed, and a non-ELF file simply has none). */
static void read_load_flags(struct mapped_file *f)
{
    Elf64_Ehdr eh;
    if (pread(f->fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 64)
        return;
    Elf64_Phdr ph[64];
    size_t bytes = eh.e_phnum * sizeof(Elf64_Phdr);
    if (pread(f->fd, ph, bytes, (off_t)eh.e_phoff) != (ssize_t)bytes)
        return;
    for (size_t i = 0; i < eh.e_phnum && f->nloads < sizeof f->loads / sizeof f->loads[0]; i++) {
        if (ph[i].p_type != PT_LOAD)
            continue;
        uint64_t align = ph[i].p_align > 1 ? ph[i].p_align : 1;
        f->loads[f->nloads].offset = ph[i].p_offset & ~(align - 1);
        f->loads[f->nloads].end = ph[i].p_offset + ph[i].p_filesz;
        f->loads[f->nloads].flags = ph[i].p_flags;
        f->nloads++;
    }
}

static void open_files(struct core_file *c, const char *exe_path)
{
    for (size_t i = 0; i < c->nmaps; i++)
        if (!mapping_kept(c, &c->maps[i]))
            c->files[c->maps[i].file].needed = 1;
    if (c->exe_file >= 0)
        c->files[c->exe_file].needed = 1;
    for (size_t i = 0; i < c->nfiles; i++) {
        struct mapped_file *f = &c->files[i];
        const char *host = host_path_of(c, i, exe_path);
        f->host_path = strdup(host);
        if (f->host_path == NULL) {
            snprintf(f->problem, sizeof f->problem, "not opened (out of memory)");
            continue;
        }
        if (host[0] != '/') {
            snprintf(f->problem, sizeof f->problem, "not a file");
            continue;
        }
        int fd = open(host, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(f->problem, sizeof f->problem, "%s (%s)",
                     errno == EACCES || errno == EPERM ? "unreadable" : "missing",
                     strerror(errno));
            continue;
        }
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            snprintf(f->problem, sizeof f->problem, "not a regular file");
            continue;
        }
        f->fd = fd;
        f->size = (uint64_t)st.st_size;
        read_load_flags(f);
        if (!file_matches(c, i)) {
            close(fd);
            f->fd = -1;
            snprintf(f->problem, sizeof f->problem, "changed since the core was written");
        }
    }
}

/* The whole command line, from the initial stack the kernel built at exec:
 * argc, argv[], NULL, envp[], NULL, auxv[].  The auxv is found by its
 * contents (NT_AUXV is a copy of it); from there the walk goes down over
 * envp to argv, whose first word below is argc.  0 if anything does not fit
 * (pr_psargs, 80 bytes, stays the answer then). */
static int command_from_stack(struct core_file *c)
{
    if (c->auxv_head_len < 32 || c->at_execfn == 0)
        return -1;
    uint64_t next;
    const struct core_segment *s = find_segment(c, c->at_execfn, &next);
    if (s == NULL || s->kept < c->auxv_head_len)
        return -1;
    const uint8_t *base = c->image + s->offset;
    const uint8_t *hit = memmem(base, (size_t)s->kept, c->auxv_head, c->auxv_head_len);
    while (hit != NULL && (hit - base) % 8 != 0)
        hit = memmem(hit + 1, (size_t)(s->kept - (uint64_t)(hit + 1 - base)), c->auxv_head,
                     c->auxv_head_len);
    if (hit == NULL || hit - base < 16)
        return -1;
    uint64_t auxv = s->start + (uint64_t)(hit - base), word, p = auxv - 8;
    if (core_read_bytes(c, p, &word, 8, NULL) != 0 || word != 0)
        return -1;
    /* envp, down to argv's terminating NULL */
    for (size_t n = 0;; n++) {
        p -= 8;
        if (n > 100000 || p < s->start || core_read_bytes(c, p, &word, 8, NULL) != 0)
            return -1;
        if (word == 0)
            break;
    }
    uint64_t argv_end = p;
    size_t argc = 0;
    for (;;) {
        p -= 8;
        if (argc > 4096 || p < s->start || core_read_bytes(c, p, &word, 8, NULL) != 0)
            return -1;
        if (word == argc && argc > 0)
            break;
        argc++;
    }
    size_t used = 0;
    for (uint64_t a = p + 8; a < argv_end && used + 1 < sizeof c->command; a += 8) {
        uint64_t str;
        if (core_read_bytes(c, a, &str, 8, NULL) != 0)
            return -1;
        if (used > 0)
            c->command[used++] = ' ';
        while (used + 1 < sizeof c->command &&
               core_read_bytes(c, str, &c->command[used], 1, NULL) == 0 && c->command[used])
            used++, str++;
    }
    c->command[used] = '\0';
    return used > 0 ? 0 : -1;
}

/* The executable: the file mapped at AT_PHDR (else AT_ENTRY), else the
 * AT_EXECFN string when it is an absolute path. */
static int find_executable(struct core_file *c, struct pm_error *err)
{
    c->exe_file = -1;
    const struct core_mapping *m = NULL;
    if (c->at_phdr)
        m = find_mapping(c, c->at_phdr);
    if (m == NULL && c->at_entry)
        m = find_mapping(c, c->at_entry);
    char execfn[4096] = "";
    if (m != NULL) {
        c->exe_file = (int)m->file;
        snprintf(execfn, sizeof execfn, "%s", c->files[m->file].path);
    } else if (c->at_execfn) {
        /* no file is known yet: only the core's own bytes can answer */
        size_t i = 0;
        while (i + 1 < sizeof execfn &&
               core_read_bytes(c, c->at_execfn + i, &execfn[i], 1, NULL) == 0 && execfn[i])
            i++;
        execfn[i] = '\0';
        if (execfn[0] != '/')
            execfn[0] = '\0';
    }
    c->exe = strdup(execfn);
    if (c->exe == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    return 0;
}

/* The executable must be there and be the one that ran. */
static int check_executable(struct core_file *c, const char *exe_path, struct pm_error *err)
{
    if (c->exe_file < 0) {
        c->exe_host = strdup(exe_path ? exe_path : c->exe);
        if (c->exe_host == NULL)
            return pm_fail(err, PM_ENOMEM, "out of memory");
        return 0;
    }
    const struct mapped_file *f = &c->files[c->exe_file];
    c->exe_host = strdup(f->host_path ? f->host_path : f->path);
    if (c->exe_host == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    if (f->fd >= 0)
        return 0;
    if (exe_path != NULL) {
        if (strncmp(f->problem, "changed", 7) == 0)
            return pm_fail(err, PM_EFORMAT,
                           "%s is not the executable the core %s was written from (%s)",
                           exe_path, c->path, f->path);
        return pm_fail(err, strstr(f->problem, "unreadable") ? PM_EPERM : PM_ENOTFOUND,
                       "cannot use --exe %s: %s", exe_path, f->problem);
    }
    if (strncmp(f->problem, "changed", 7) == 0)
        return pm_fail(err, PM_EFORMAT,
                       "the executable of the core %s, %s, has changed since the core was "
                       "written: give the original with --exe",
                       c->path, f->path);
    return pm_fail(err, strstr(f->problem, "unreadable") ? PM_EPERM : PM_ENOTFOUND,
                   "the executable of the core %s, %s, is %s: give a copy with --exe", c->path,
                   f->path, f->problem);
}

/* ---- open --------------------------------------------------------------- */

static int map_core(struct core_file *c, struct pm_error *err)
{
    c->fd = open(c->path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0) {
        if (errno == EACCES || errno == EPERM)
            return pm_fail(err, PM_EPERM, "permission denied opening core file %s", c->path);
        return pm_fail(err, PM_ENOTFOUND, "cannot open core file %s: %s", c->path,
                       strerror(errno));
    }
    struct stat st;
    if (fstat(c->fd, &st) != 0 || !S_ISREG(st.st_mode))
        return pm_fail(err, PM_EFORMAT, "%s is not a core file (not a regular file)", c->path);
    if (st.st_size < (off_t)sizeof(Elf64_Ehdr))
        return pm_fail(err, PM_EFORMAT, "%s is not a core file (too short for an ELF header)",
                       c->path);
    c->image_size = (size_t)st.st_size;
    void *image = mmap(NULL, c->image_size, PROT_READ, MAP_PRIVATE, c->fd, 0);
    if (image == MAP_FAILED) {
        c->image_size = 0;
        return pm_fail(err, PM_EFORMAT, "cannot map core file %s: %s", c->path, strerror(errno));
    }
    c->image = image;
    return 0;
}

static const char *elf_type_name(unsigned type)
{
    switch (type) {
    case ET_EXEC: return "an executable";
    case ET_DYN: return "a shared object or PIE executable";
    case ET_REL: return "an object file";
    default: return "an ELF file of another kind";
    }
}

static int parse_core(struct core_file *c, struct pm_error *err)
{
    if (elf_version(EV_CURRENT) == EV_NONE)
        return pm_fail(err, PM_EINTERNAL, "libelf: %s", elf_errmsg(-1));
    if (memcmp(c->image, ELFMAG, SELFMAG) != 0)
        return pm_fail(err, PM_EFORMAT, "%s is not a core file (not an ELF file)", c->path);
    Elf *elf = elf_begin(c->fd, ELF_C_READ_MMAP, NULL);
    GElf_Ehdr eh;
    if (elf == NULL || elf_kind(elf) != ELF_K_ELF || gelf_getehdr(elf, &eh) == NULL) {
        if (elf)
            elf_end(elf);
        return pm_fail(err, PM_EFORMAT, "%s is not a core file (a malformed ELF file)", c->path);
    }
    int rc = -1;
    size_t nphdr;
    if (eh.e_type != ET_CORE) {
        pm_fail(err, PM_EFORMAT, "%s is not a core file: it is %s", c->path,
                elf_type_name(eh.e_type));
        goto out;
    }
    if (gelf_getclass(elf) != ELFCLASS64 || eh.e_machine != CORE_MACHINE) {
        pm_fail(err, PM_EUNSUPPORTED,
                "%s is a core of another architecture (ELF machine %u, class %d)", c->path,
                (unsigned)eh.e_machine, gelf_getclass(elf));
        goto out;
    }
    if (elf_getphdrnum(elf, &nphdr) != 0 || nphdr > MAX_SEGMENTS) {
        pm_fail(err, PM_EFORMAT, "%s: malformed program headers", c->path);
        goto out;
    }
    c->segs = calloc(nphdr ? nphdr : 1, sizeof *c->segs);
    if (c->segs == NULL) {
        pm_fail(err, PM_ENOMEM, "out of memory");
        goto out;
    }
    uint64_t missing = 0;
    for (size_t i = 0; i < nphdr; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) == NULL) {
            pm_fail(err, PM_EFORMAT, "%s: malformed program header %zu", c->path, i);
            goto out;
        }
        if (ph.p_type == PT_NOTE && parse_notes(c, elf, &ph, err) != 0)
            goto out;
        if (ph.p_type == PT_LOAD && add_segment(c, &ph, &missing, err) != 0)
            goto out;
    }
    if (c->nthreads == 0) {
        pm_fail(err, PM_EFORMAT, "%s: a core file without threads (no NT_PRSTATUS note)",
                c->path);
        goto out;
    }
    if (c->pid == 0)
        c->pid = c->threads[0].tid;
    if (c->command[0] == '\0')
        snprintf(c->command, sizeof c->command, "?");
    if (missing)
        snprintf(c->truncated, sizeof c->truncated,
                 "truncated: %llu bytes of memory it should hold are missing",
                 (unsigned long long)missing);
    qsort(c->segs, c->nsegs, sizeof *c->segs, by_segment_start);
    if (c->nmaps)
        qsort(c->maps, c->nmaps, sizeof *c->maps, by_mapping_start);
    rc = 0;
out:
    elf_end(elf);
    return rc;
}

int core_open(const char *core_path, const char *exe_path, struct core_file **out,
              struct pm_error *err)
{
    struct core_file *c = calloc(1, sizeof *c);
    if (c == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    c->fd = -1;
    c->exe_file = -1;
    c->path = strdup(core_path);
    if (c->path == NULL) {
        pm_fail(err, PM_ENOMEM, "out of memory");
        goto fail;
    }
    if (map_core(c, err) != 0 || parse_core(c, err) != 0 || find_executable(c, err) != 0)
        goto fail;
    char psargs[sizeof c->command];
    memcpy(psargs, c->command, sizeof psargs);
    if (command_from_stack(c) != 0)
        memcpy(c->command, psargs, sizeof psargs);
    open_files(c, exe_path);
    if (check_executable(c, exe_path, err) != 0)
        goto fail;
    *out = c;
    return 0;
fail:
    core_close(c);
    return -1;
}

void core_close(struct core_file *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nfiles; i++) {
        if (c->files[i].fd >= 0)
            close(c->files[i].fd);
        free(c->files[i].path);
        free(c->files[i].host_path);
    }
    free(c->files);
    free(c->maps);
    free(c->segs);
    free(c->threads);
    free(c->exe);
    free(c->exe_host);
    if (c->image)
        munmap((void *)c->image, c->image_size);
    if (c->fd >= 0)
        close(c->fd);
    free(c->path);
    free(c);
}

/* ---- accessors ---------------------------------------------------------- */

pid_t core_pid(const struct core_file *c) { return c->pid; }
const char *core_command(const struct core_file *c) { return c->command; }
const char *core_exe(const struct core_file *c) { return c->exe; }
const char *core_exe_host_path(const struct core_file *c) { return c->exe_host; }
size_t core_thread_count(const struct core_file *c) { return c->nthreads; }

const struct core_thread *core_thread_at(const struct core_file *c, size_t i)
{
    return i < c->nthreads ? &c->threads[i] : NULL;
}

pid_t core_tid_of_pthread(const struct core_file *c, uint64_t pthread)
{
    if (pthread == 0)
        return 0;
    for (size_t i = 0; i < c->nthreads; i++)
        if (c->threads[i].thread_pointer == pthread)
            return c->threads[i].tid;
    return 0;
}

int core_host_path(const struct core_file *c, const char *target_path, char *out, size_t cap)
{
    const char *host = target_path;
    if (c->exe_file >= 0 && strcmp(target_path, c->files[c->exe_file].path) == 0)
        host = c->exe_host;
    else if (c->exe[0] && strcmp(target_path, c->exe) == 0)
        host = c->exe_host;
    int n = snprintf(out, cap, "%s", host);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

size_t core_file_problems(const struct core_file *c,
                          void (*fn)(const char *path, const char *why, void *ctx), void *ctx)
{
    size_t n = 0;
    if (c->truncated[0]) {
        n++;
        if (fn)
            fn(c->path, c->truncated, ctx);
    }
    for (size_t i = 0; i < c->nfiles; i++) {
        if (c->files[i].problem[0] == '\0' || !c->files[i].needed)
            continue;
        n++;
        if (fn)
            fn(c->files[i].path, c->files[i].problem, ctx);
    }
    return n;
}

/* ---- the memory map ----------------------------------------------------- */

static int maps_append(struct proc_maps *out, size_t *cap, uint64_t start, uint64_t end,
                       uint64_t offset, const char *perms, const char *path)
{
    if (out->count == *cap) {
        size_t new_cap = *cap ? *cap * 2 : 64;
        struct map_entry *grown = realloc(out->entries, new_cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        out->entries = grown;
        *cap = new_cap;
    }
    struct map_entry *e = &out->entries[out->count];
    e->path = strdup(path);
    if (e->path == NULL)
        return -1;
    e->start = start;
    e->end = end;
    e->offset = offset;
    e->inode = 0;
    snprintf(e->perms, sizeof e->perms, "%s", perms);
    out->count++;
    return 0;
}

static int by_entry_start(const void *a, const void *b)
{
    const struct map_entry *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Perms of a mapping the core has no segment for: the flags of the file's
 * PT_LOAD at that offset, else read-only. */
static const char *file_perms(const struct mapped_file *f, uint64_t offset)
{
    static const char *const perms[8] = {"---p", "--xp", "-w-p", "-wxp",
                                         "r--p", "r-xp", "rw-p", "rwxp"};
    for (size_t i = 0; i < f->nloads; i++)
        if (offset >= f->loads[i].offset && offset < f->loads[i].end)
            return perms[f->loads[i].flags & 7];
    return "r--p";
}

static const char *anonymous_name(const struct core_file *c, const struct core_segment *s)
{
    if (c->at_sysinfo_ehdr && c->at_sysinfo_ehdr >= s->start && c->at_sysinfo_ehdr < s->end)
        return "[vdso]";
    if (c->at_execfn && c->at_execfn >= s->start && c->at_execfn < s->end)
        return "[stack]";
    if (s->start == 0xffffffffff600000ull)
        return "[vsyscall]";
    return "";
}

int core_maps(const struct core_file *c, struct proc_maps *out, struct pm_error *err)
{
    out->entries = NULL;
    out->count = 0;
    size_t cap = 0;
    /* segments, split where NT_FILE mappings begin and end inside them */
    for (size_t i = 0; i < c->nsegs; i++) {
        const struct core_segment *s = &c->segs[i];
        char perms[5] = {s->flags & PF_R ? 'r' : '-', s->flags & PF_W ? 'w' : '-',
                         s->flags & PF_X ? 'x' : '-', 'p', '\0'};
        uint64_t addr = s->start;
        while (addr < s->end) {
            const struct core_mapping *m = find_mapping(c, addr);
            uint64_t end = s->end, offset = 0;
            const char *path;
            if (m != NULL) {
                if (m->end < end)
                    end = m->end;
                offset = m->offset + (addr - m->start);
                path = c->files[m->file].path;
            } else {
                /* anonymous up to the next file mapping */
                for (size_t j = 0; j < c->nmaps; j++)
                    if (c->maps[j].start > addr && c->maps[j].start < end)
                        end = c->maps[j].start;
                path = anonymous_name(c, s);
            }
            if (maps_append(out, &cap, addr, end, offset, perms, path) != 0)
                goto oom;
            addr = end;
        }
    }
    /* file mappings the core has no segment for (readable from the file) */
    for (size_t i = 0; i < c->nmaps; i++) {
        const struct core_mapping *m = &c->maps[i];
        uint64_t next;
        if (m->end <= m->start || find_segment(c, m->start, &next) != NULL)
            continue;
        uint64_t end = next < m->end ? next : m->end;
        if (maps_append(out, &cap, m->start, end, m->offset, file_perms(&c->files[m->file], m->offset),
                        c->files[m->file].path) != 0)
            goto oom;
    }
    qsort(out->entries, out->count, sizeof *out->entries, by_entry_start);
    return 0;
oom:
    maps_free(out);
    return pm_fail(err, PM_ENOMEM, "out of memory");
}

int core_thread_signal(const struct core_file *c, pid_t tid)
{
    for (size_t i = 0; i < core_thread_count(c); i++) {
        const struct core_thread *t = core_thread_at(c, i);
        if (t->tid == tid)
            return t->signal;
    }
    return 0;
}
