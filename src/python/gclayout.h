/*
 * gclayout.h — where CPython keeps its garbage collector's object lists and
 * what sizes and names an object, per version: the facts the heap census
 * (heap.c) reads, for 2.7 and 3.6–3.13.
 *
 * Owns: struct py_gclayout; the tables are generated from each version's
 * own headers by tools/gen_gclayout.py into gclayout_gen.c (committed with
 * its generator).  PY_OFF_NONE (layout.h): the version has no such field.
 * Never reads memory, never prints.
 */
#ifndef PYROMETER_GCLAYOUT_H
#define PYROMETER_GCLAYOUT_H

#include <stdint.h>

#include "layout.h"

/* Where the GC state (the array of generations) lives. */
enum py_gc_where {
    PY_GC_STATIC = 1,   /* 2.7, 3.6: static array in gcmodule.c; the exported
                           _PyGC_generation0 points at its first head */
    PY_GC_RUNTIME,      /* 3.7, 3.8: _PyRuntime.gc */
    PY_GC_INTERP,       /* 3.9+: each PyInterpreterState's gc */
};

struct py_gclayout {
    int major, minor;
    enum py_gc_where where;

    /* struct _gc_runtime_state: its offset in _PyRuntimeState or
     * PyInterpreterState, then fields inside it (PY_OFF_NONE when static) */
    int64_t gc_state;
    int64_t gc_generations;       /* struct gc_generation generations[num] */
    int64_t gc_permanent;         /* 3.7+: permanent_generation (gc.freeze()) */
    int64_t gc_collecting;        /* int: a collection is running */
    int64_t num_generations;
    int64_t generation_size;      /* sizeof(struct gc_generation) */
    int64_t generation_head;      /* its PyGC_Head (the list head) */

    /* PyGC_Head, just before every GC-tracked object */
    int64_t gchead_size;
    int64_t gchead_next;          /* pointer to the next PyGC_Head */
    int64_t gchead_prev;          /* pointer to the previous one ... */
    int64_t gchead_prev_shift;    /* ... whose low bits are flags (3.8+: 2) */

    /* PyObject, PyVarObject, PyTypeObject, PyHeapTypeObject */
    int64_t ob_type, ob_size;
    int64_t type_name, type_basicsize, type_itemsize, type_flags, type_dict;
    int64_t heaptype_qualname;    /* 3.x: ht_qualname (a str) */
    int64_t flag_heaptype, flag_type_subclass, flag_long_subclass;
    /* 3.12+: ints keep their digit count in lv_tag, not ob_size */
    int64_t long_tag, long_non_size_bits;
};

/* The table for major.minor, or NULL. */
const struct py_gclayout *py_gclayout_for(int major, int minor);

#endif
