/*
 * objlayout.h — where CPython keeps the insides of ordinary objects, per
 * version: int digits, float values, tuple/list items, dict tables, module
 * dicts, instance (managed) dicts, code-object local names and frame local
 * slots.  What struct py_layout (layout.h) has for the frame walk is not
 * repeated there; this table stands alone so reprs and locals need nothing
 * else.
 *
 * Owns: struct py_objlayout; the tables are generated from each version's
 * own headers by tools/gen_objlayout.py into objlayout_gen.c (committed with
 * its generator).  PY_OFF_NONE (layout.h): the version has no such field.
 * Never reads memory, never prints.
 */
#ifndef PYROMETER_OBJLAYOUT_H
#define PYROMETER_OBJLAYOUT_H

#include <stdint.h>

#include "layout.h"

/* How instances of a type with Py_TPFLAGS_MANAGED_DICT keep attributes. */
enum py_managed_kind {
    PY_MANAGED_NONE = 0,  /* ≤3.10: only tp_dictoffset */
    PY_MANAGED_311,       /* dict pointer and values pointer before the object */
    PY_MANAGED_312,       /* one word before the object: dict, or values-1 (tagged) */
    PY_MANAGED_313,       /* dict pointer before; inline values after the header */
};

struct py_objlayout {
    int major, minor;

    /* PyObject / PyVarObject / PyTypeObject / PyHeapTypeObject */
    int64_t ob_type, ob_size;
    int64_t type_name, type_basicsize, type_flags, type_dictoffset;
    int64_t heaptype_cached_keys;                 /* ht_cached_keys (shared keys) */
    int64_t flag_heaptype;
    int64_t flag_long_subclass, flag_list_subclass, flag_tuple_subclass;
    int64_t flag_bytes_subclass, flag_unicode_subclass, flag_dict_subclass;
    int64_t flag_managed_dict, flag_inline_values;          /* 3.11+, 3.13+ */
    int64_t managed_kind;                         /* enum py_managed_kind */
    int64_t managed_dict_offset;                  /* signed: relative to the object */
    int64_t managed_values_offset;                /* 3.11: PyDictValues ** before the object */
    int64_t inline_values_offset;                 /* 3.13: PyDictValues after the header */

    /* int: ≤3.11 sign and digit count in ob_size; 3.12+ in lv_tag */
    int64_t long_digits, long_tag, long_shift, long_digit_size;
    int64_t float_value;
    int64_t tuple_items, list_items;
    int64_t cell_ref;

    /* PyDictObject, PyDictValues, PyDictKeysObject and its entries */
    int64_t dict_used, dict_keys, dict_values;
    int64_t values_items;                         /* 3.11+: PyDictValues.values */
    int64_t values_valid;                         /* 3.13+: PyDictValues.valid (uint8_t) */
    int64_t keys_size;                            /* ≤3.10: Py_ssize_t dk_size */
    int64_t keys_log2_size, keys_log2_index_bytes, keys_kind;  /* 3.11+: uint8_t */
    int64_t keys_nentries, keys_indices;
    int64_t entry_size;                           /* {hash, key, value} */
    int64_t unicode_entry_size;                   /* 3.11+: {key, value} */

    /* bytes and str (PEP 393) */
    int64_t bytes_sval;
    int64_t unicode_length, unicode_state, unicode_ascii_size, unicode_compact_size;
    int64_t unicode_legacy_data;

    int64_t module_dict;                          /* PyModuleObject.md_dict */
    int64_t interp_modules;                       /* sys.modules of an interpreter */

    /* PyCodeObject: local names */
    int64_t code_argcount, code_posonlyargcount, code_kwonlyargcount, code_flags;
    int64_t code_nlocals, code_varnames, code_cellvars;       /* ≤3.10 */
    int64_t code_localsplusnames, code_localspluskinds;       /* 3.11+ */
    int64_t flag_varargs, flag_varkeywords;                   /* co_flags bits */
    int64_t fast_local, fast_cell, fast_free, fast_hidden;    /* 3.11+ kind bits */

    /* where a frame's local slots start */
    int64_t frame_localsplus;                     /* ≤3.10: PyFrameObject.f_localsplus */
    int64_t iframe_localsplus;                    /* 3.11+: _PyInterpreterFrame.localsplus */
};

/* The table for major.minor, or NULL. */
const struct py_objlayout *py_objlayout_for(int major, int minor);

#endif
