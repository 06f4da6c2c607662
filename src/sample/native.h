/*
 * native.h — one stack out of a thread's native (C) frames and its Python
 * frames, for `record -n` / `dump -n`.
 *
 * Owns the merge rule: each native frame that is the interpreter's eval loop
 * (_PyEval_EvalFrameDefault; PyEval_EvalFrameEx on interpreters where that is
 * the loop) stands for one C-level eval call and is replaced by the Python
 * frames that call ran; other native frames stay, except (by default) the
 * interpreter's own plumbing.  Never reads memory, never prints.
 *
 * Which Python frames belong to which eval call: py_thread_stack marks with
 * `entry` the first Python frame each C-level eval call ran.  Walking the
 * Python frames from the innermost, a run ends at (and includes) an entry
 * frame; the i-th run from the inside belongs to the i-th eval frame from the
 * inside.  Before 3.11 every frame is an entry (one eval call per Python
 * call); from 3.11 one eval call runs many Python frames.
 *
 * Hidden by default (NATIVE_MERGE_ALL keeps everything):
 *   - native frames outside the outermost eval frame (main, Py_RunMain,
 *     thread bootstrap...), when there is one;
 *   - frames in the interpreter's own module (the module holding the eval
 *     loop: libpython or the python executable) that are call plumbing
 *     (_PyFunction_Vectorcall, PyObject_Call, cfunction_vectorcall_*, ...,
 *     see native.c) or have no symbol.
 * Everything else stays, so the C function a Python line called (zlib's
 * `zlib_compress` and `deflate`, a builtin such as `builtin_sorted`, a C
 * extension's function) appears right under that Python frame.
 */
#ifndef PYROMETER_NATIVE_H
#define PYROMETER_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "../python/process.h"
#include "../target/unwind.h"

enum merged_kind { MERGED_PYTHON = 0, MERGED_NATIVE = 1 };

struct merged_frame {
    int kind;              /* enum merged_kind */
    const char *name;      /* Python: the code's name; native: the symbol, or
                              "[unknown]" */
    const char *filename;  /* Python: the code's file; native: the module path
                              ("" when not in a file) */
    int line;              /* Python: the line (-1 unknown); native: -1 */
    size_t index;          /* Python: index into py[]; native: into native[] */
    uint64_t ip;           /* native only */
};

/* Flags for native_merge. */
#define NATIVE_MERGE_ALL 1u      /* keep the interpreter's plumbing frames */
#define NATIVE_MERGE_PARTIAL 2u  /* the native stack may lack its outermost
                                    frames (native_unwind returned 1): Python
                                    runs beyond its eval frames go on top */

/* Merge native[0..n_native) and py[0..n_py) (both innermost first, py
 * complete up to the thread's first frame) into out[0..cap), innermost
 * first; *n_out frames written.  Returns 0, or 1 when cap cut the stack
 * short (the innermost cap frames are kept), or -1 with PM_ETORN when the
 * two stacks disagree on the number of C-level eval calls (taken at
 * different moments: count the sample as torn). */
int native_merge(const struct native_frame *native, size_t n_native, const struct py_frame *py,
                 size_t n_py, unsigned flags, struct merged_frame *out, size_t cap,
                 size_t *n_out, struct pm_error *err);

/* Is this symbol the eval loop / interpreter plumbing?  (Exposed for tests
 * and for renderers that want to mark such frames.) */
int native_is_eval_symbol(const char *name);
int native_is_plumbing_symbol(const char *name);

#endif
