/*
 * unwind.h — the native (C) call stack of one thread of a running process.
 *
 * Owns: pausing one thread (ptrace PTRACE_SEIZE + PTRACE_INTERRUPT), taking
 * a copy of its registers and of the live part of its stack, letting it go
 * again (PTRACE_DETACH, which also hands back any signal that arrived while
 * it was held, and leaves a stopped process stopped), and then unwinding the
 * copy with libunwind's DWARF unwinder (.eh_frame through .eh_frame_hdr) after
 * the thread is already running again; frames are named through symbols.h.
 * A thread is held only while its registers and stack are copied (tens of
 * microseconds), never while unwinding.  Never prints; never interprets
 * Python (sample/native.h merges the result with the Python frames).
 *
 * Lifetime: every pause ends in the same call that began it, errors
 * included.  If pyrometer dies while a thread is held, the kernel detaches
 * it and it runs on (PTRACE_SEIZE semantics).  A thread that does not stop
 * within NATIVE_STOP_TIMEOUT_MS (stuck in the kernel, state D) is left
 * seized with its stop pending and released by a later call or by
 * native_unwinder_free().
 *
 * x86-64 only (PM_EUNSUPPORTED elsewhere).
 */
#ifndef PYROMETER_UNWIND_H
#define PYROMETER_UNWIND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"

#define NATIVE_STOP_TIMEOUT_MS 100
#define NATIVE_STACK_COPY_MIN (32u << 10)   /* first copy of a stack */
#define NATIVE_STACK_COPY_MAX (1u << 20)    /* copies grow up to this */

/* One native frame, innermost first.  Strings stay valid until
 * native_unwinder_free(). */
struct native_frame {
    uint64_t ip;          /* program counter; a return address for callers */
    const char *name;     /* function symbol, NULL when unknown */
    const char *module;   /* path of the mapped file ("[vdso]"), NULL when the
                             address is in no file mapping */
    uint64_t offset;      /* from the symbol (or the module base when unnamed) */
};

struct native_unwinder;

/* An unwinder for process pid.  PM_ENOTFOUND, PM_EPERM, PM_EUNSUPPORTED
 * (not x86-64). */
struct native_unwinder *native_unwinder_new(pid_t pid, struct pm_error *err);
/* Releases any thread still seized (waiting briefly for pending stops). */
void native_unwinder_free(struct native_unwinder *u);

/* Called while the thread is held, after its registers and stack are
 * copied: e.g. to read its Python frames at the same instant. */
typedef void (*native_stopped_fn)(void *ctx);

/* Pause thread tid of the unwinder's process, copy its registers and stack,
 * call while_stopped(ctx) if not NULL, resume it, then unwind the copy into
 * out[0..cap) (innermost first; *depth frames filled).
 *
 * Returns 0 when the unwind reached the outermost frame, 1 when it stopped
 * early (cap reached, or no unwind information for some frame: the frames
 * found are still right), -1 on error: PM_ETORN (the thread exited or did
 * not stop in time: skip it this sample), PM_EPERM (cannot ptrace: another
 * tracer such as gdb or strace, or missing CAP_SYS_PTRACE), PM_EGONE (the
 * process exited).  while_stopped is called only when 0 or 1 is returned. */
int native_unwind(struct native_unwinder *u, pid_t tid, struct native_frame *out, size_t cap,
                  size_t *depth, native_stopped_fn while_stopped, void *ctx,
                  struct pm_error *err);

/* The same for a thread the caller already holds in a ptrace-stop (all
 * threads stopped by pause.h for `record --blocking`): no pause of its own;
 * the caller resumes it.  The copy and unwind are as above. */
int native_unwind_held(struct native_unwinder *u, pid_t tid, struct native_frame *out,
                       size_t cap, size_t *depth, struct pm_error *err);

/* In launch mode the target's main thread is our child: if it exits while
 * held, waiting for it reaps it here.  Returns 1 with its waitpid status
 * when that happened (once), else 0. */
int native_unwinder_reaped(struct native_unwinder *u, int *status);

struct native_unwind_stats {
    uint64_t unwinds;          /* pauses that ended in an unwind */
    uint64_t stop_wait_ns_last;/* PTRACE_INTERRUPT until the stop was seen */
    uint64_t pause_ns_last;    /* from the stop seen to PTRACE_DETACH: the time
                                  the thread is held (copy, while_stopped) */
    uint64_t pause_ns_max;
    uint64_t pause_ns_total;
    uint64_t stack_bytes_last; /* bytes of stack copied by the last pause */
    uint64_t stack_copy_size;  /* current size of a stack copy */
    uint64_t live_reads;       /* stack reads beyond the copy (made live) */
    uint64_t stop_timeouts;
};
struct native_unwind_stats native_unwinder_stats(const struct native_unwinder *u);

#endif
