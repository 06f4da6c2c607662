#!/usr/bin/env python3
"""gen_objlayout.py — generate src/python/objlayout_gen.c from CPython's own headers.

Owns: which CPython struct member feeds which field of struct py_objlayout
(src/python/objlayout.h): the object internals that reprs, dict walks,
instance attributes and frame locals need (int digits, float value, tuple
and list items, dict tables, module dicts, managed dicts, code-object local
names, frame local slots) for CPython 3.8–3.13.

Never guesses an offset the headers can tell: for each version it compiles
a small program against that version's installed headers (public and
internal, Py_BUILD_CORE), runs it, and reads back offsetof()/sizeof()
values.  The two facts no installed header declares are written here as
constants, each with its source:
  - 3.8–3.10 PyDictKeysObject and PyDictKeyEntry (Objects/dict-common.h, not
    installed): {Py_ssize_t dk_refcnt; Py_ssize_t dk_size; dict_lookup_func
    dk_lookup; Py_ssize_t dk_usable; Py_ssize_t dk_nentries; char
    dk_indices[];} and {Py_hash_t me_hash; PyObject *me_key, *me_value;};
  - 3.8–3.9 PyModuleObject (Objects/moduleobject.c): {PyObject_HEAD;
    PyObject *md_dict; ...}.

Usage (from the repository root):
    python3 tools/gen_objlayout.py > src/python/objlayout_gen.c
"""

import argparse
import os
import sys
import tempfile

import header_probe

REGEN_COMMAND = "python3 tools/gen_objlayout.py > src/python/objlayout_gen.c"

VERSIONS = header_probe.versions((3, 8), (3, 13))

# Objects/dict-common.h of 3.8–3.10 (see the docstring).
OLD_DICT_KEYS = {
    "keys_size": 8, "keys_log2_size": None, "keys_log2_index_bytes": None,
    "keys_kind": None, "keys_nentries": 32, "keys_indices": 40,
    "entry_size": 24, "unicode_entry_size": None,
}


def includes(minor):
    inc = ["internal/pycore_pystate.h", "frameobject.h", "longintrepr.h"]
    if minor >= 9:
        inc += ["internal/pycore_runtime.h", "internal/pycore_interp.h"]
    if minor >= 10:
        inc += ["internal/pycore_moduleobject.h"]
    if minor >= 11:
        inc = ["internal/pycore_runtime.h", "internal/pycore_interp.h",
               "internal/pycore_frame.h", "internal/pycore_code.h",
               "internal/pycore_dict.h", "internal/pycore_object.h",
               "internal/pycore_moduleobject.h"]
    if minor >= 12:
        inc += ["internal/pycore_long.h"]
    return inc


def field_exprs(minor):
    old = minor <= 10

    def when(cond, expr):
        return expr if cond else None

    long_digits = ("offsetof(PyLongObject, ob_digit)" if minor <= 11
                   else "offsetof(PyLongObject, long_value.ob_digit)")
    modules = ("offsetof(PyInterpreterState, modules)" if minor <= 11
               else "offsetof(PyInterpreterState, imports.modules)")
    managed = {11: "PY_MANAGED_311", 12: "PY_MANAGED_312", 13: "PY_MANAGED_313"}
    fields = [
        ("ob_type", "offsetof(PyObject, ob_type)"),
        ("ob_size", "offsetof(PyVarObject, ob_size)"),
        ("type_name", "offsetof(PyTypeObject, tp_name)"),
        ("type_basicsize", "offsetof(PyTypeObject, tp_basicsize)"),
        ("type_flags", "offsetof(PyTypeObject, tp_flags)"),
        ("type_dictoffset", "offsetof(PyTypeObject, tp_dictoffset)"),
        ("heaptype_cached_keys", "offsetof(PyHeapTypeObject, ht_cached_keys)"),
        ("flag_heaptype", "Py_TPFLAGS_HEAPTYPE"),
        ("flag_long_subclass", "Py_TPFLAGS_LONG_SUBCLASS"),
        ("flag_list_subclass", "Py_TPFLAGS_LIST_SUBCLASS"),
        ("flag_tuple_subclass", "Py_TPFLAGS_TUPLE_SUBCLASS"),
        ("flag_bytes_subclass", "Py_TPFLAGS_BYTES_SUBCLASS"),
        ("flag_unicode_subclass", "Py_TPFLAGS_UNICODE_SUBCLASS"),
        ("flag_dict_subclass", "Py_TPFLAGS_DICT_SUBCLASS"),
        ("flag_managed_dict", when(minor >= 11, "Py_TPFLAGS_MANAGED_DICT")),
        ("flag_inline_values", when(minor >= 13, "Py_TPFLAGS_INLINE_VALUES")),
        ("managed_kind", managed.get(minor, "PY_MANAGED_NONE")),
        ("managed_dict_offset", when(minor >= 11, "-3 * (long long)sizeof(PyObject *)"
                                     if minor <= 12 else "MANAGED_DICT_OFFSET")),
        ("managed_values_offset", when(minor == 11, "-4 * (long long)sizeof(PyObject *)")),
        ("inline_values_offset", when(minor >= 13, "sizeof(PyObject)")),
        ("long_digits", long_digits),
        ("long_tag", when(minor >= 12, "offsetof(PyLongObject, long_value.lv_tag)")),
        ("long_shift", "PyLong_SHIFT"),
        ("long_digit_size", "sizeof(digit)"),
        ("float_value", "offsetof(PyFloatObject, ob_fval)"),
        ("tuple_items", "offsetof(PyTupleObject, ob_item)"),
        ("list_items", "offsetof(PyListObject, ob_item)"),
        ("cell_ref", "offsetof(PyCellObject, ob_ref)"),
        ("dict_used", "offsetof(PyDictObject, ma_used)"),
        ("dict_keys", "offsetof(PyDictObject, ma_keys)"),
        ("dict_values", "offsetof(PyDictObject, ma_values)"),
        ("values_items", when(minor >= 11, "offsetof(PyDictValues, values)")),
        ("values_valid", when(minor >= 13, "offsetof(PyDictValues, valid)")),
        ("keys_size", None),
        ("keys_log2_size", when(not old, "offsetof(PyDictKeysObject, dk_log2_size)")),
        ("keys_log2_index_bytes",
         when(not old, "offsetof(PyDictKeysObject, dk_log2_index_bytes)")),
        ("keys_kind", when(not old, "offsetof(PyDictKeysObject, dk_kind)")),
        ("keys_nentries", when(not old, "offsetof(PyDictKeysObject, dk_nentries)")),
        ("keys_indices", when(not old, "offsetof(PyDictKeysObject, dk_indices)")),
        ("entry_size", when(not old, "sizeof(PyDictKeyEntry)")),
        ("unicode_entry_size", when(not old, "sizeof(PyDictUnicodeEntry)")),
        ("bytes_sval", "offsetof(PyBytesObject, ob_sval)"),
        ("unicode_length", "offsetof(PyASCIIObject, length)"),
        ("unicode_state", "offsetof(PyASCIIObject, state)"),
        ("unicode_ascii_size", "sizeof(PyASCIIObject)"),
        ("unicode_compact_size", "sizeof(PyCompactUnicodeObject)"),
        ("unicode_legacy_data", "offsetof(PyUnicodeObject, data)"),
        ("module_dict", "offsetof(PyModuleObject, md_dict)" if minor >= 10 else None),
        ("interp_modules", modules),
        ("code_argcount", "offsetof(PyCodeObject, co_argcount)"),
        ("code_posonlyargcount", "offsetof(PyCodeObject, co_posonlyargcount)"),
        ("code_kwonlyargcount", "offsetof(PyCodeObject, co_kwonlyargcount)"),
        ("code_flags", "offsetof(PyCodeObject, co_flags)"),
        ("code_nlocals", when(old, "offsetof(PyCodeObject, co_nlocals)")),
        ("code_varnames", when(old, "offsetof(PyCodeObject, co_varnames)")),
        ("code_cellvars", when(old, "offsetof(PyCodeObject, co_cellvars)")),
        ("code_localsplusnames", when(not old, "offsetof(PyCodeObject, co_localsplusnames)")),
        ("code_localspluskinds", when(not old, "offsetof(PyCodeObject, co_localspluskinds)")),
        ("flag_varargs", "CO_VARARGS"),
        ("flag_varkeywords", "CO_VARKEYWORDS"),
        ("fast_local", when(not old, "CO_FAST_LOCAL")),
        ("fast_cell", when(not old, "CO_FAST_CELL")),
        ("fast_free", when(not old, "CO_FAST_FREE")),
        ("fast_hidden", when(minor >= 12, "CO_FAST_HIDDEN")),
        ("frame_localsplus", when(old, "offsetof(PyFrameObject, f_localsplus)")),
        ("iframe_localsplus", when(not old, "offsetof(_PyInterpreterFrame, localsplus)")),
    ]
    return fields


# Symbolic values are printed as written, not probed.
SYMBOLIC = ("PY_MANAGED_",)


def probe(cc, pyenv_root, major, minor, workdir):
    version = header_probe.PYENV_VERSIONS[(major, minor)]
    inc = header_probe.header_dir(pyenv_root, major, minor)
    exprs = [(name, None if expr is None or expr.startswith(SYMBOLIC) else expr)
             for name, expr in field_exprs(minor)]
    _, got = header_probe.probe("gen_objlayout", cc, inc, major, minor, includes(minor), exprs,
                                workdir, expect_version=version)
    values = {}
    for name, expr in field_exprs(minor):
        values[name] = expr if expr is not None and expr.startswith(SYMBOLIC) else got[name]
    if minor <= 10:
        values.update(OLD_DICT_KEYS)
    if minor <= 9:
        values["module_dict"] = 16
    return inc, version, values


def emit(out, tables):
    w = out.write
    w("/* generated by tools/gen_objlayout.py, do not edit: regenerate with `%s`. */\n"
      % REGEN_COMMAND)
    w("/*\n")
    w(" * objlayout_gen.c — CPython 3.8–3.13 object internals for x86_64 Linux.\n")
    w(" *\n")
    w(" * Owns: one struct py_objlayout per minor version, each value an offsetof(),\n")
    w(" * sizeof() or flag computed against that version's installed headers, except\n")
    w(" * 3.8–3.10 dict keys (Objects/dict-common.h) and 3.8–3.9 PyModuleObject\n")
    w(" * (Objects/moduleobject.c), which no installed header declares: those are\n")
    w(" * constants in the generator, with their sources.  PY_OFF_NONE: the version\n")
    w(" * has no such field.  Never reads memory, never prints.\n")
    w(" */\n")
    w('#include "objlayout.h"\n\n#include <stddef.h>\n')
    for (major, minor), (inc, version, values) in tables:
        w("\n/* CPython %s, from headers in %s */\n" % (version, inc))
        w("static const struct py_objlayout objlayout_%d_%d = {\n" % (major, minor))
        w("    .major = %d,\n    .minor = %d,\n" % (major, minor))
        for name, _ in field_exprs(minor):
            v = values[name]
            w("    .%s = %s,\n" % (name, "PY_OFF_NONE" if v is None else str(v)))
        w("};\n")
    w("\nstatic const struct py_objlayout *const objlayouts[] = {\n")
    for (major, minor), _ in tables:
        w("    &objlayout_%d_%d,\n" % (major, minor))
    w("};\n\n")
    w("const struct py_objlayout *py_objlayout_for(int major, int minor)\n{\n")
    w("    for (size_t i = 0; i < sizeof objlayouts / sizeof objlayouts[0]; i++)\n")
    w("        if (objlayouts[i]->major == major && objlayouts[i]->minor == minor)\n")
    w("            return objlayouts[i];\n")
    w("    return NULL;\n}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    header_probe.add_pyenv_root(ap)
    args = ap.parse_args()
    cc = os.environ.get("CC", "gcc")
    tables = []
    with tempfile.TemporaryDirectory(prefix="gen_objlayout.") as workdir:
        for key in VERSIONS:
            tables.append((key, probe(cc, args.pyenv_root, key[0], key[1], workdir)))
    emit(sys.stdout, tables)


if __name__ == "__main__":
    main()
