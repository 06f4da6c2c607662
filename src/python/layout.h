/*
 * layout.h — where CPython keeps what we read, per version.
 *
 * Owns: struct py_layout, one plain table of byte offsets and sizes per
 * CPython minor version. For 2.7 and 3.6–3.12 the tables are generated from each
 * version's own installed headers by tools/gen_layouts.py into
 * layouts_gen.c (committed with its generator); for 3.13+ the table is filled
 * at attach time from _Py_DebugOffsets found at the start of _PyRuntime
 * (python/debug_offsets.c).  An offset of PY_OFF_NONE means "this version does
 * not have that field".  Never reads memory, never prints.
 */
#ifndef PYROMETER_LAYOUT_H
#define PYROMETER_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define PY_OFF_NONE (-1)

/* How a version maps instruction positions to line numbers. */
enum py_linetable_kind {
    PY_LINES_LNOTAB = 1,   /* 3.6–3.9: co_lnotab, byte offsets (f_lasti in bytes) */
    PY_LINES_LINETABLE310, /* 3.10: co_linetable, f_lasti counts code units */
    PY_LINES_LOCATIONS,    /* 3.11+: co_linetable location table, code units */
    PY_LINES_LNOTAB27,     /* 2.7: co_lnotab with unsigned line deltas, byte offsets */
};

/* How a version keeps the current frame of a thread. */
enum py_frame_kind {
    PY_FRAMES_OBJECT = 1,  /* 2.7, 3.6–3.10: tstate->frame, PyFrameObject chain */
    PY_FRAMES_CFRAME,      /* 3.11–3.12: tstate->cframe->current_frame, _PyInterpreterFrame */
    PY_FRAMES_DIRECT,      /* 3.13+: tstate->current_frame, _PyInterpreterFrame */
};

struct py_layout {
    int major, minor;                /* e.g. 3, 12 */
    enum py_linetable_kind lines;
    enum py_frame_kind frames;

    /* _PyRuntimeState (3.7+; 2.7 and 3.6 have none: the interpreter list
     * head and the GIL are statics found in .symtab, see locate.h) */
    int64_t runtime_size;                 /* sizeof(_PyRuntimeState) */
    int64_t runtime_finalizing;           /* _PyRuntime.finalizing (pointer / tstate) */
    int64_t runtime_interpreters_head;    /* _PyRuntime.interpreters.head */
    int64_t runtime_gil_locked;           /* 3.7–3.11: _PyRuntime.ceval.gil.locked (int) */
    int64_t runtime_gil_last_holder;      /* 3.7–3.11: _PyRuntime.ceval.gil.last_holder */

    /* PyInterpreterState */
    int64_t interp_size;
    int64_t interp_next;
    int64_t interp_threads_head;          /* tstate_head (3.8–3.10) / threads.head */
    int64_t interp_id;
    int64_t interp_modules;               /* interp->modules or imports.modules */
    int64_t interp_gil_ptr;               /* 3.12+: interp->ceval.gil (pointer to gil state) */
    int64_t gil_locked;                   /* 3.12+: offset of `locked` in struct _gil_runtime_state */
    int64_t gil_last_holder;              /* 3.12+: offset of `last_holder` in that struct */

    /* PyThreadState */
    int64_t tstate_size;
    int64_t tstate_prev;
    int64_t tstate_next;
    int64_t tstate_interp;
    int64_t tstate_frame;                 /* frame (2.7–3.10) / cframe (3.11–3.12) / current_frame (3.13+) */
    int64_t tstate_thread_id;             /* pthread_t as (unsigned) long */
    int64_t tstate_native_thread_id;      /* 3.11+: OS thread id; PY_OFF_NONE before */
    int64_t cframe_current_frame;         /* 3.11–3.12: _PyCFrame.current_frame */

    /* PyFrameObject (2.7–3.10) */
    int64_t frame_back;
    int64_t frame_code;
    int64_t frame_lasti;                  /* int */
    int64_t frame_lineno;                 /* int, valid only when tracing */
    int64_t frame_executing;              /* char: 3.6–3.9 f_executing (1 while its eval
                                             runs), 3.10 f_state (0 then); 2.7: none */

    /* _PyInterpreterFrame (3.11+) */
    int64_t iframe_size;                  /* bytes before localsplus */
    int64_t iframe_previous;
    int64_t iframe_code;                  /* f_code (3.11–3.12) / f_executable (3.13+) */
    int64_t iframe_instr;                 /* prev_instr (3.11–3.12) / instr_ptr (3.13+) */
    int64_t iframe_owner;                 /* char */
    int64_t iframe_localsplus;

    /* PyCodeObject */
    int64_t code_size;                    /* bytes worth reading for one code header */
    int64_t code_filename;
    int64_t code_name;
    int64_t code_qualname;                /* 3.11+ */
    int64_t code_firstlineno;             /* int */
    int64_t code_linetable;               /* co_lnotab (<=3.9) / co_linetable (3.10+) */
    int64_t code_code;                    /* <=3.10: co_code (bytes object) */
    int64_t code_adaptive;                /* 3.11+: offsetof(PyCodeObject, co_code_adaptive) */
    int64_t code_argcount;
    int64_t code_varnames;                /* <=3.10 co_varnames; 3.11+ co_localsplusnames */

    /* PyObject / PyVarObject / PyTypeObject */
    int64_t ob_type;
    int64_t ob_size;                      /* PyVarObject.ob_size */
    int64_t type_name;                    /* tp_name (const char *) */
    int64_t type_flags;

    /* PyBytesObject (2.7: PyStringObject, which bytes is an alias of) */
    int64_t bytes_sval;                   /* ob_sval */

    /* PyUnicodeObject (PEP 393, 3.3+; PY_OFF_NONE on 2.7) */
    int64_t unicode_length;               /* PyASCIIObject.length */
    int64_t unicode_state;                /* PyASCIIObject.state (bitfield word) */
    int64_t unicode_ascii_size;           /* sizeof(PyASCIIObject): data of compact ASCII */
    int64_t unicode_compact_size;         /* sizeof(PyCompactUnicodeObject): data of compact non-ASCII */
    int64_t unicode_legacy_data;          /* PyUnicodeObject.data.any (legacy strings) */

    /* _PyStackChunk (3.11+): the thread's frames live in these chunks */
    int64_t tstate_datastack_chunk;       /* PyThreadState.datastack_chunk (current chunk) */
    int64_t tstate_datastack_top;         /* PyThreadState.datastack_top (live end of frames) */
    int64_t chunk_previous;
    int64_t chunk_size;                   /* size_t: bytes in the chunk, header included */
    int64_t chunk_top;                    /* size_t: words in use */
    int64_t chunk_data;                   /* offset of data[] */

    /* 3.11: _PyInterpreterFrame.is_entry (bool); 3.12+ marks entries with a
     * shim frame (owner FRAME_OWNED_BY_CSTACK) below them instead */
    int64_t iframe_is_entry;

    /* 2.7: PyStringObject.ob_sval — code names and file names are byte
     * strings there (ob_size, ob_shash, ob_sstate, then the bytes);
     * PY_OFF_NONE on 3.x, whose names are PEP 393 str */
    int64_t string_sval;

    /* 2.7–3.10: PyThreadState.recursion_depth (int), one per frame being
     * evaluated (and a few C-level recursions): no true frame chain of the
     * thread is longer (see py_thread_stack); PY_OFF_NONE from 3.11 */
    int64_t tstate_recursion_depth;
};

/* The generated tables (layouts_gen.c): NULL-terminated array. */
extern const struct py_layout *const py_generated_layouts[];

/* Look up the generated table for major.minor, or NULL. */
const struct py_layout *py_layout_for(int major, int minor);

#endif
