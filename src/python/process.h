/*
 * process.h — the CPython model of one target process: its interpreters,
 * threads and frames, read through a reader.
 *
 * Owns: attaching (locate + pick the layout: generated tables for 2.7 and
 * 3.6–3.12, _Py_DebugOffsets for 3.13), the thread list (from _PyRuntime on
 * 3.7+, from the interp_head static on 2.7 and 3.6), the GIL holder, walking one
 * thread's frames into (code, line) pairs with torn-read detection, and the
 * code-object cache.  Never prints; never decides what to keep (sample/ does).
 */
#ifndef PYROMETER_PROCESS_H
#define PYROMETER_PROCESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"
#include "../target/reader.h"
#include "layout.h"
#include "locate.h"

/* What a decoded code object gives a frame: strings stay valid until the
 * next py_begin_sample() (the cache may be flushed only there). */
struct py_code {
    uint64_t addr;
    const char *name;       /* co_qualname where the version has one, else co_name */
    const char *filename;
    int firstlineno;
    uint64_t serial;        /* unique per decoded code object in this process
                               model (never reused, unlike addr): a key for
                               callers' caches; 0 = none */
};

struct py_frame {
    const struct py_code *code;
    int line;               /* -1 when unknown */
    uint64_t addr;          /* the frame (PyFrameObject / _PyInterpreterFrame) */
    int entry;              /* the first Python frame run by its C-level eval
                               call: native stacks merge here (always 1 before
                               3.11, where every Python call is a C call) */
};

struct py_thread {
    uint64_t tstate;        /* PyThreadState address */
    uint64_t interp;        /* owning PyInterpreterState */
    uint64_t thread_id;     /* threading.get_ident() (pthread_t) */
    pid_t os_tid;           /* kernel TID, 0 if unknown */
    int owns_gil;
    uint64_t top_frame;     /* innermost frame address, 0 if none */
    uint64_t chunk;         /* 3.11+: current _PyStackChunk, 0 if unknown */
    uint64_t stack_top;     /* 3.11+: datastack_top when top_frame was read */
    uint64_t cframe;        /* 3.11, 3.12: the _PyCFrame top_frame was read from */
    int32_t recursion_depth; /* 2.7–3.10: tstate->recursion_depth read with it; -1 unknown */
};

struct py_process;

/* Attach to pid.  Errors: PM_ENOTFOUND, PM_ENOTPYTHON, PM_EUNSUPPORTED (the
 * message names the version), PM_EPERM. */
int py_attach(pid_t pid, struct py_process **out, struct pm_error *err);
/* Attach to the process recorded in an ELF core file (target/core.h): the
 * same model over the core's memory and the files it mapped.  `core` is
 * borrowed and must outlive the result (close it after py_detach). */
struct core_file;
int py_attach_core(struct core_file *core, struct py_process **out, struct pm_error *err);

/* Build the model over any reader with a known layout and location (unit
 * tests drive the walker over synthetic memory this way).  Takes ownership
 * of reader.  pid is 0: no /proc lookups are made for thread ids. */
int py_open_reader(struct reader *reader, const struct py_layout *layout,
                   const struct py_location *loc, struct py_process **out,
                   struct pm_error *err);
void py_detach(struct py_process *py);

pid_t py_pid(const struct py_process *py);
const struct py_version *py_get_version(const struct py_process *py);
const char *py_binary(const struct py_process *py);
struct reader *py_reader(struct py_process *py);
/* Where the interpreter was found and the layout in use (heap.c walks the
 * interpreter list and the GC state with them). */
const struct py_location *py_get_location(const struct py_process *py);
const struct py_layout *py_get_layout(const struct py_process *py);

/* Start a new sample: invalidates the reader's page cache and may flush the
 * code cache (bounded size). */
/* Make the next py_thread_stack read its thread's state afresh even if the
 * thread list has just read it (e.g. when the thread is then stopped, to
 * read its stack at that instant). */
void py_drop_prefetch(struct py_process *py);
void py_begin_sample(struct py_process *py);

/* Every thread of every interpreter, at most cap.  *count is the number
 * found (may exceed cap; only cap are filled).  0 with count 0 when the
 * interpreter is not initialised yet.  PM_ETORN / PM_EREAD on inconsistent
 * lists, PM_EGONE when the process has exited. */
int py_list_threads(struct py_process *py, struct py_thread *out, size_t cap, size_t *count,
                    struct pm_error *err);

/* Re-read t's current frame from the target, bypassing any cache (after a
 * torn walk).  PM_ETORN if the thread state no longer belongs to the same
 * thread. */
int py_thread_refresh(struct py_process *py, struct py_thread *t, struct pm_error *err);

/* Innermost-first frames of thread t, at most cap.  Returns 0, or 1 when the
 * stack was deeper than cap (the innermost cap frames are filled), or -1 with
 * PM_ETORN / PM_EREAD when the stack changed under us (a loop, a bad pointer,
 * a non-code object, or the thread's current frame moved while we walked),
 * PM_EGONE when the process exited. */
int py_thread_stack(struct py_process *py, const struct py_thread *t, struct py_frame *frames,
                    size_t cap, size_t *depth, struct pm_error *err);

/* Statistics for summaries and benchmarks. */
struct py_stats {
    uint64_t code_hits, code_misses, code_flushes;
};
struct py_stats py_get_stats(const struct py_process *py);

#endif
