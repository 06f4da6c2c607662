/*
 * unwind.c — pause one thread, copy its registers and stack, let it go, and
 * unwind the copy with libunwind.
 *
 * Why a copy: libunwind's ptrace accessors (_UPT_*) read the target one word
 * at a time with PTRACE_PEEKDATA and re-open /proc/PID/maps and the ELF file
 * whenever the unwind crosses into another library, all while the thread is
 * stopped.  Everything an x86-64 DWARF unwind reads is either the thread's
 * registers, its stack, or read-only file contents (.eh_frame_hdr,
 * .eh_frame, code bytes for signal-frame detection), which cannot change
 * while mapped.  So the thread is held only for PTRACE_GETREGS and one
 * process_vm_readv of the live part of its stack; the unwind itself runs on
 * the copy afterwards through our own accessors (the scheme perf uses for
 * --call-graph=dwarf):
 *   access_mem     the stack copy; else a cache of read-only file pages
 *                  (kept across samples, flushed when the maps change);
 *                  else a live read (counted: the copy was too small, and
 *                  the next copies are made larger)
 *   access_reg     the registers taken while the thread was held
 *   find_proc_info the module's .eh_frame_hdr (symbols.h) handed to
 *                  libunwind's dwarf_search_unwind_table, as libunwind itself
 *                  does for local unwinding
 * libunwind caches the parsed unwind rules per address (UNW_CACHE_GLOBAL).
 *
 * Pausing: PTRACE_SEIZE + PTRACE_INTERRUPT, wait for the stop, and
 * PTRACE_DETACH after the copy, every time.  Staying attached between
 * samples would save one syscall pair but would route every signal of the
 * target through us (each one stopping the thread until our next sample) and
 * break job control (SIGSTOP/SIGCONT); detaching hands back a signal that
 * arrived during the hold and leaves a stopped process stopped.
 *
 * Never prints; never interprets Python.
 */
#include "unwind.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libunwind.h>

#include "symbols.h"

#define PAGE_SIZE_BYTES 4096u
#define STATIC_PAGES 512u          /* cached read-only pages (2 MiB) */
#define RED_ZONE 128u              /* below the stack pointer, x86-64 ABI */
#define SPIN_WAITS 200             /* waitpid polls with sched_yield before sleeping */

/* libunwind's binary search over an .eh_frame_hdr table; exported by
 * libunwind (perf declares it the same way) but not in its headers. */
extern int UNW_OBJ(dwarf_search_unwind_table)(unw_addr_space_t as, unw_word_t ip,
                                              unw_dyn_info_t *di, unw_proc_info_t *pi,
                                              int need_unwind_info, void *arg);

struct native_unwinder {
    pid_t pid;
    struct symbols *symbols;
    uint64_t symbols_generation;
#if defined(__x86_64__)
    unw_addr_space_t as;
    struct user_regs_struct regs;
#endif
    /* the stack copy of the thread being unwound */
    uint8_t *stack;
    size_t copy_size;           /* how much to copy next time */
    uint64_t stack_base;
    size_t stack_len;
    int stack_short;            /* the copy ended at unmapped memory */
    int copy_too_small;
    /* read-only file pages, direct mapped; tag = page address + 1 */
    uint64_t *page_tag;
    uint8_t *pages;
    /* threads left seized because they did not stop in time */
    pid_t *pending;
    size_t npending, pending_cap;
    int reaped, reaped_status, reaped_reported;
    struct native_unwind_stats stats;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- reading the target through the copy ------------------------------- */

/* Read len bytes at addr of the target; piecewise from the stack copy, the
 * static page cache, or the live process. */
static int mem_read(struct native_unwinder *u, uint64_t addr, void *buf, size_t len)
{
    uint8_t *dst = buf;
    while (len > 0) {
        size_t n;
        uint64_t static_end;
        if (addr >= u->stack_base && addr - u->stack_base < u->stack_len) {
            n = u->stack_len - (size_t)(addr - u->stack_base);
            if (n > len)
                n = len;
            memcpy(dst, u->stack + (addr - u->stack_base), n);
        } else if (u->pages != NULL && symbols_is_static(u->symbols, addr, &static_end)) {
            uint64_t page = addr & ~(uint64_t)(PAGE_SIZE_BYTES - 1);
            size_t slot = (size_t)(page / PAGE_SIZE_BYTES) % STATIC_PAGES;
            uint8_t *copy = u->pages + slot * PAGE_SIZE_BYTES;
            if (u->page_tag[slot] != page + 1) {
                size_t want = PAGE_SIZE_BYTES;
                if (static_end - page < want)
                    want = (size_t)(static_end - page);
                struct iovec local = {copy, want}, remote = {(void *)(uintptr_t)page, want};
                if (process_vm_readv(u->pid, &local, 1, &remote, 1, 0) != (ssize_t)want) {
                    u->page_tag[slot] = 0;
                    return -1;
                }
                u->page_tag[slot] = page + 1;
            }
            n = PAGE_SIZE_BYTES - (size_t)(addr - page);
            if (n > len)
                n = len;
            memcpy(dst, copy + (addr - page), n);
        } else {
            uint64_t stack_end = u->stack_base + u->stack_len;
            if (!u->stack_short && addr >= stack_end && addr - stack_end < NATIVE_STACK_COPY_MAX)
                u->copy_too_small = 1;
            u->stats.live_reads++;
            n = PAGE_SIZE_BYTES - (size_t)(addr % PAGE_SIZE_BYTES);
            if (n > len)
                n = len;
            struct iovec local = {dst, n}, remote = {(void *)(uintptr_t)addr, n};
            if (process_vm_readv(u->pid, &local, 1, &remote, 1, 0) != (ssize_t)n)
                return -1;
        }
        dst += n;
        addr += n;
        len -= n;
    }
    return 0;
}

#if defined(__x86_64__)

/* ---- libunwind accessors ------------------------------------------------ */

static int acc_access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write,
                          void *arg)
{
    (void)as;
    if (write)
        return -UNW_EINVAL;
    return mem_read(arg, addr, val, sizeof *val) == 0 ? 0 : -UNW_EINVAL;
}

static int acc_access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *val, int write,
                          void *arg)
{
    (void)as;
    const struct user_regs_struct *r = &((struct native_unwinder *)arg)->regs;
    if (write)
        return -UNW_EREADONLYREG;
    switch (reg) {
    case UNW_X86_64_RAX: *val = r->rax; break;
    case UNW_X86_64_RDX: *val = r->rdx; break;
    case UNW_X86_64_RCX: *val = r->rcx; break;
    case UNW_X86_64_RBX: *val = r->rbx; break;
    case UNW_X86_64_RSI: *val = r->rsi; break;
    case UNW_X86_64_RDI: *val = r->rdi; break;
    case UNW_X86_64_RBP: *val = r->rbp; break;
    case UNW_X86_64_RSP: *val = r->rsp; break;
    case UNW_X86_64_R8: *val = r->r8; break;
    case UNW_X86_64_R9: *val = r->r9; break;
    case UNW_X86_64_R10: *val = r->r10; break;
    case UNW_X86_64_R11: *val = r->r11; break;
    case UNW_X86_64_R12: *val = r->r12; break;
    case UNW_X86_64_R13: *val = r->r13; break;
    case UNW_X86_64_R14: *val = r->r14; break;
    case UNW_X86_64_R15: *val = r->r15; break;
    case UNW_X86_64_RIP: *val = r->rip; break;
    default: return -UNW_EBADREG;
    }
    return 0;
}

static int acc_access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write,
                            void *arg)
{
    (void)as, (void)reg, (void)val, (void)write, (void)arg;
    return -UNW_EBADREG;
}

static int acc_resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
    (void)as, (void)c, (void)arg;
    return -UNW_EINVAL;
}

static int acc_get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *addr, void *arg)
{
    (void)as, (void)addr, (void)arg;
    return -UNW_ENOINFO;
}

static void acc_put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
    /* libunwind frees what dwarf_search_unwind_table allocated itself */
    (void)as, (void)pi, (void)arg;
}

static int acc_get_proc_name(unw_addr_space_t as, unw_word_t addr, char *buf, size_t len,
                             unw_word_t *offp, void *arg)
{
    (void)as;
    struct native_unwinder *u = arg;
    struct native_symbol sym;
    if (len == 0 || symbols_lookup(u->symbols, addr, &sym) != 0 || sym.name == NULL)
        return -UNW_ENOINFO;
    size_t n = strlen(sym.name);
    if (n >= len)
        n = len - 1;
    memcpy(buf, sym.name, n);
    buf[n] = '\0';
    *offp = sym.offset;
    return 0;
}

/* Size in bytes of a DW_EH_PE-encoded value in an .eh_frame_hdr, 0 when
 * the encoding is not one we read. */
static size_t encoded_size(uint8_t enc)
{
    switch (enc & 0x0f) {
    case 0x00: return 8;   /* absptr */
    case 0x03: return 4;   /* udata4 */
    case 0x0b: return 4;   /* sdata4 */
    case 0x04: return 8;   /* udata8 */
    case 0x0c: return 8;   /* sdata8 */
    default: return 0;
    }
}

static int acc_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
                              int need_unwind_info, void *arg)
{
    struct native_unwinder *u = arg;
    struct unwind_table t;
    if (symbols_unwind_table(u->symbols, ip, &t) != 0)
        return -UNW_ENOINFO;
    /* .eh_frame_hdr: version, eh_frame_ptr_enc, fde_count_enc, table_enc,
     * eh_frame_ptr, fde_count, then (initial location, FDE) pairs */
    uint8_t head[4];
    if (mem_read(u, t.hdr_addr, head, sizeof head) != 0 || head[0] != 1)
        return -UNW_ENOINFO;
    size_t ptr_size = encoded_size(head[1]), count_size = encoded_size(head[2]);
    /* libunwind's search reads a table of datarel|sdata4 pairs only */
    if (head[1] == 0xff || ptr_size == 0 || count_size == 0 || head[3] != 0x3b)
        return -UNW_ENOINFO;
    uint64_t count = 0;
    if (mem_read(u, t.hdr_addr + 4 + ptr_size, &count, count_size) != 0)
        return -UNW_ENOINFO;
    if (count_size == 4)
        count = (uint32_t)count;
    uint64_t table = t.hdr_addr + 4 + ptr_size + count_size;
    if (count == 0 || count > (t.hdr_len - (table - t.hdr_addr)) / 8)
        return -UNW_ENOINFO;
    unw_dyn_info_t di;
    memset(&di, 0, sizeof di);
    di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    di.start_ip = t.start;
    di.end_ip = t.end;
    di.u.rti.segbase = t.hdr_addr;
    di.u.rti.table_data = table;
    di.u.rti.table_len = count * 8 / sizeof(unw_word_t);
    return UNW_OBJ(dwarf_search_unwind_table)(as, ip, &di, pi, need_unwind_info, arg);
}

static unw_accessors_t accessors = {
    .find_proc_info = acc_find_proc_info,
    .put_unwind_info = acc_put_unwind_info,
    .get_dyn_info_list_addr = acc_get_dyn_info_list_addr,
    .access_mem = acc_access_mem,
    .access_reg = acc_access_reg,
    .access_fpreg = acc_access_fpreg,
    .resume = acc_resume,
    .get_proc_name = acc_get_proc_name,
};

/* ---- holding a thread --------------------------------------------------- */

enum stop_result { STOPPED, STOP_TIMEOUT, STOP_GONE };

/* Note the exit status when the thread that left was our own child (the
 * main thread of a process we launched): the caller would miss it. */
static void note_exit(struct native_unwinder *u, pid_t tid, int status)
{
    if (tid == u->pid && !u->reaped) {
        u->reaped = 1;
        u->reaped_status = status;
    }
}

/* Wait (bounded) for seized thread tid to stop.  *signal_out: a signal that
 * was being delivered (to hand back on detach), else 0. */
static enum stop_result wait_for_stop(struct native_unwinder *u, pid_t tid, int *signal_out,
                                      uint64_t timeout_ns)
{
    uint64_t deadline = now_ns() + timeout_ns;
    *signal_out = 0;
    for (int polls = 0;; polls++) {
        int status;
        pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
        if (r == tid) {
            if (WIFSTOPPED(status)) {
                /* a signal-delivery-stop (no event) carries a signal that
                 * must be handed back; a PTRACE_EVENT_STOP (our interrupt or
                 * a group stop) carries nothing to deliver */
                if ((status >> 16) == 0)
                    *signal_out = WSTOPSIG(status);
                return STOPPED;
            }
            if (WIFEXITED(status) || WIFSIGNALED(status)) {
                note_exit(u, tid, status);
                return STOP_GONE;
            }
            continue;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return STOP_GONE;
        }
        if (now_ns() >= deadline)
            return STOP_TIMEOUT;
        if (polls < SPIN_WAITS) {
            sched_yield();
        } else {
            struct timespec pause = {0, 20000};
            nanosleep(&pause, NULL);
        }
    }
}

/* Let go of the threads that timed out earlier, if they have stopped since
 * (waiting up to wait_ns for each). */
static void release_pending(struct native_unwinder *u, uint64_t wait_ns)
{
    size_t kept = 0;
    for (size_t i = 0; i < u->npending; i++) {
        pid_t tid = u->pending[i];
        int sig;
        enum stop_result r = wait_for_stop(u, tid, &sig, wait_ns);
        if (r == STOPPED)
            ptrace(PTRACE_DETACH, tid, 0, (void *)(uintptr_t)sig);
        if (r == STOP_TIMEOUT)
            u->pending[kept++] = tid;
    }
    u->npending = kept;
}

static int is_pending(const struct native_unwinder *u, pid_t tid)
{
    for (size_t i = 0; i < u->npending; i++)
        if (u->pending[i] == tid)
            return 1;
    return 0;
}

static void add_pending(struct native_unwinder *u, pid_t tid)
{
    if (u->npending == u->pending_cap) {
        size_t cap = u->pending_cap ? u->pending_cap * 2 : 8;
        pid_t *grown = realloc(u->pending, cap * sizeof *grown);
        if (grown == NULL)
            return;   /* the kernel releases it when we exit */
        u->pending = grown;
        u->pending_cap = cap;
    }
    u->pending[u->npending++] = tid;
}

/* Copy up to u->copy_size bytes of stack from just below the stack pointer
 * (one iovec per page, so the copy stops cleanly at the end of the mapping). */
static void copy_stack(struct native_unwinder *u, uint64_t sp)
{
    enum { MAX_IOV = NATIVE_STACK_COPY_MAX / PAGE_SIZE_BYTES + 2 };
    struct iovec remote[MAX_IOV];
    uint64_t base = sp >= RED_ZONE ? sp - RED_ZONE : 0;
    size_t want = u->copy_size, n = 0;
    uint64_t at = base;
    while (at - base < want && n < MAX_IOV) {
        size_t piece = PAGE_SIZE_BYTES - (size_t)(at % PAGE_SIZE_BYTES);
        if (piece > want - (at - base))
            piece = want - (size_t)(at - base);
        remote[n].iov_base = (void *)(uintptr_t)at;
        remote[n].iov_len = piece;
        n++;
        at += piece;
    }
    struct iovec local = {u->stack, (size_t)(at - base)};
    ssize_t got = process_vm_readv(u->pid, &local, 1, remote, n, 0);
    u->stack_base = base;
    u->stack_len = got > 0 ? (size_t)got : 0;
    u->stack_short = u->stack_len < (size_t)(at - base);
}

/* Copy the registers and stack of tid, which is in a ptrace-stop of ours. */
static int copy_held(struct native_unwinder *u, pid_t tid, struct pm_error *err)
{
    if (ptrace(PTRACE_GETREGS, tid, 0, &u->regs) != 0)
        return pm_fail(err, PM_ETORN, "cannot read the registers of thread %d: %s", (int)tid,
                       strerror(errno));
    copy_stack(u, u->regs.rsp);
    return 0;
}

/* Hold tid, copy what the unwind needs, run while_stopped, let it go. */
static int hold_and_copy(struct native_unwinder *u, pid_t tid, native_stopped_fn while_stopped,
                         void *ctx, struct pm_error *err)
{
    /* signal 0 through tgkill: does tid still exist, in this process? */
    if (syscall(SYS_tgkill, u->pid, tid, 0) != 0 && errno == ESRCH) {
        if (kill(u->pid, 0) != 0 && errno == ESRCH)
            return pm_fail(err, PM_EGONE, "process %d has exited", (int)u->pid);
        return pm_fail(err, PM_ETORN, "thread %d of process %d has exited", (int)tid,
                       (int)u->pid);
    }
    if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
        if (errno == ESRCH)
            return pm_fail(err, PM_ETORN, "thread %d has exited", (int)tid);
        return pm_fail(err, PM_EPERM, "cannot ptrace thread %d of process %d: %s (another "
                       "tracer such as gdb or strace attached, or no CAP_SYS_PTRACE)",
                       (int)tid, (int)u->pid, strerror(errno));
    }
    uint64_t t0 = now_ns();
    if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) {
        /* only fails when the thread is already gone */
        int sig;
        if (wait_for_stop(u, tid, &sig, 0) == STOPPED)
            ptrace(PTRACE_DETACH, tid, 0, (void *)(uintptr_t)sig);
        return pm_fail(err, PM_ETORN, "thread %d has exited", (int)tid);
    }
    int sig = 0;
    enum stop_result stop = wait_for_stop(u, tid, &sig,
                                          (uint64_t)NATIVE_STOP_TIMEOUT_MS * 1000000u);
    if (stop == STOP_GONE)
        return pm_fail(err, PM_ETORN, "thread %d exited while being stopped", (int)tid);
    if (stop == STOP_TIMEOUT) {
        u->stats.stop_timeouts++;
        add_pending(u, tid);
        return pm_fail(err, PM_ETORN, "thread %d did not stop within %d ms (in the kernel?)",
                       (int)tid, NATIVE_STOP_TIMEOUT_MS);
    }
    /* held: from here every path goes through the detach below */
    uint64_t t_stopped = now_ns();
    int rc = copy_held(u, tid, err);
    if (rc == 0 && while_stopped != NULL)
        while_stopped(ctx);
    /* the thread is runnable from inside this call; its return can come
     * much later when the woken thread takes our CPU, so it is not counted */
    uint64_t pause = now_ns() - t_stopped;
    ptrace(PTRACE_DETACH, tid, 0, (void *)(uintptr_t)sig);
    if (rc == 0) {
        u->stats.unwinds++;
        u->stats.stop_wait_ns_last = t_stopped - t0;
        u->stats.pause_ns_last = pause;
        u->stats.pause_ns_total += pause;
        if (pause > u->stats.pause_ns_max)
            u->stats.pause_ns_max = pause;
        u->stats.stack_bytes_last = u->stack_len;
    }
    return rc;
}

/* Unwind the copy into out; 0 complete, 1 stopped early. */
static int unwind_copy(struct native_unwinder *u, struct native_frame *out, size_t cap,
                       size_t *depth)
{
    uint64_t gen = symbols_generation(u->symbols);
    if (gen != u->symbols_generation) {
        unw_flush_cache(u->as, 0, 0);
        memset(u->page_tag, 0, STATIC_PAGES * sizeof *u->page_tag);
        u->symbols_generation = gen;
    }
    u->copy_too_small = 0;
    unw_cursor_t cursor;
    int complete = 0;
    if (cap == 0)
        return 1;
    if (unw_init_remote(&cursor, u->as, u) < 0) {
        out[0].ip = u->regs.rip;
        *depth = 1;
        return 1;
    }
    /* the address looked up is the call instruction (ip - 1) for callers,
     * except above a signal frame, whose ip is the interrupted instruction */
    int exact = 1;
    while (*depth < cap) {
        unw_word_t ip = 0;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
            break;
        struct native_frame *f = &out[*depth];
        uint64_t lookup = exact ? ip : ip - 1;
        struct native_symbol sym;
        symbols_lookup(u->symbols, lookup, &sym);
        f->ip = ip;
        f->name = sym.name;
        f->module = sym.module;
        f->offset = sym.offset + (ip - lookup);
        (*depth)++;
        exact = unw_is_signal_frame(&cursor) > 0;
        int step = unw_step(&cursor);
        if (step == 0) {
            complete = 1;
            break;
        }
        if (step < 0)
            break;
    }
    if (u->copy_too_small && u->copy_size < NATIVE_STACK_COPY_MAX) {
        u->copy_size *= 2;
        uint8_t *grown = realloc(u->stack, u->copy_size);
        if (grown != NULL)
            u->stack = grown;
        else
            u->copy_size /= 2;
    }
    u->stats.stack_copy_size = u->copy_size;
    return complete ? 0 : 1;
}

#endif /* __x86_64__ */

/* ---- the public side ---------------------------------------------------- */

struct native_unwinder *native_unwinder_new(pid_t pid, struct pm_error *err)
{
#if !defined(__x86_64__)
    (void)pid;
    pm_fail(err, PM_EUNSUPPORTED, "native unwinding is only implemented for x86-64");
    return NULL;
#else
    struct native_unwinder *u = calloc(1, sizeof *u);
    if (u == NULL) {
        pm_fail(err, PM_ENOMEM, "out of memory");
        return NULL;
    }
    u->pid = pid;
    u->copy_size = NATIVE_STACK_COPY_MIN;
    u->stack = malloc(u->copy_size);
    u->page_tag = calloc(STATIC_PAGES, sizeof *u->page_tag);
    u->pages = malloc((size_t)STATIC_PAGES * PAGE_SIZE_BYTES);
    if (u->stack == NULL || u->page_tag == NULL || u->pages == NULL) {
        pm_fail(err, PM_ENOMEM, "out of memory");
        native_unwinder_free(u);
        return NULL;
    }
    if (symbols_open(pid, &u->symbols, err) != 0) {
        native_unwinder_free(u);
        return NULL;
    }
    u->symbols_generation = symbols_generation(u->symbols);
    u->as = unw_create_addr_space(&accessors, 0);
    if (u->as == NULL) {
        pm_fail(err, PM_EINTERNAL, "libunwind: cannot create an address space");
        native_unwinder_free(u);
        return NULL;
    }
    unw_set_caching_policy(u->as, UNW_CACHE_GLOBAL);
    return u;
#endif
}

void native_unwinder_free(struct native_unwinder *u)
{
    if (u == NULL)
        return;
#if defined(__x86_64__)
    if (u->npending > 0)
        release_pending(u, (uint64_t)NATIVE_STOP_TIMEOUT_MS * 1000000u);
    if (u->as != NULL)
        unw_destroy_addr_space(u->as);
#endif
    symbols_close(u->symbols);
    free(u->pending);
    free(u->stack);
    free(u->page_tag);
    free(u->pages);
    free(u);
}

int native_unwind(struct native_unwinder *u, pid_t tid, struct native_frame *out, size_t cap,
                  size_t *depth, native_stopped_fn while_stopped, void *ctx,
                  struct pm_error *err)
{
    *depth = 0;
#if !defined(__x86_64__)
    (void)u, (void)tid, (void)out, (void)cap, (void)while_stopped, (void)ctx;
    return pm_fail(err, PM_EUNSUPPORTED, "native unwinding is only implemented for x86-64");
#else
    if (u->npending > 0) {
        release_pending(u, 0);
        if (is_pending(u, tid))
            return pm_fail(err, PM_ETORN, "thread %d has still not stopped", (int)tid);
    }
    if (hold_and_copy(u, tid, while_stopped, ctx, err) != 0)
        return -1;
    return unwind_copy(u, out, cap, depth);
#endif
}

int native_unwind_held(struct native_unwinder *u, pid_t tid, struct native_frame *out,
                       size_t cap, size_t *depth, struct pm_error *err)
{
    *depth = 0;
#if !defined(__x86_64__)
    (void)u, (void)tid, (void)out, (void)cap;
    return pm_fail(err, PM_EUNSUPPORTED, "native unwinding is only implemented for x86-64");
#else
    if (copy_held(u, tid, err) != 0)
        return -1;
    u->stats.stack_bytes_last = u->stack_len;
    return unwind_copy(u, out, cap, depth);
#endif
}

int native_unwinder_reaped(struct native_unwinder *u, int *status)
{
    if (!u->reaped || u->reaped_reported)
        return 0;
    u->reaped_reported = 1;
    *status = u->reaped_status;
    return 1;
}

struct native_unwind_stats native_unwinder_stats(const struct native_unwinder *u)
{
    return u->stats;
}
