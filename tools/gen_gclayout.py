#!/usr/bin/env python3
"""gen_gclayout.py — generate src/python/gclayout_gen.c from CPython's own headers.

Owns: which CPython struct member feeds which field of struct py_gclayout
(src/python/gclayout.h): what the heap census (`pyrometer heap`) needs to
walk the garbage collector's generation lists and size what it finds, for
CPython 2.7 and 3.6–3.13: where the GC state lives (the interpreter state
on 3.9+, _PyRuntime on 3.7 and 3.8, a static array on 2.7 and 3.6), the
generations in it, PyGC_Head, and the type-object fields that name and
size an object (tp_name, tp_basicsize, tp_itemsize, tp_flags, tp_dict,
ht_qualname, ob_size).

It is a table of its own, next to layouts_gen.c (2.7, 3.6–3.12, the frame
walk) and objlayout_gen.c (3.8–3.13, reprs): the census is the one reader
that needs 2.7 to 3.13 alike, including 3.13, whose _Py_DebugOffsets name
the interpreter's `gc` member but not the generations inside it.

Method (the same as gen_layouts.py and gen_objlayout.py): for each version
a small C program is compiled against that version's installed headers
(public and internal, Py_BUILD_CORE) and prints offsetof()/sizeof() and
macro values.  One fact no installed header declares is written into the
probe, with its source:
  - 2.7 and 3.6, Modules/gcmodule.c: `struct gc_generation { PyGC_Head head;
    int threshold; int count; };` (its array `generations` is static there;
    the exported `_PyGC_generation0` points at generations[0].head).  3.7+
    declare the same struct in their internal headers.

Usage (from the repository root):
    python3 tools/gen_gclayout.py > src/python/gclayout_gen.c
"""

import argparse
import os
import sys
import tempfile

import header_probe

REGEN_COMMAND = "python3 tools/gen_gclayout.py > src/python/gclayout_gen.c"

VERSIONS = header_probe.versions((2, 7), (3, 13))

# Modules/gcmodule.c of 2.7 and 3.6 (see the docstring).
GCMODULE_GENERATION = """
struct gc_generation {
    PyGC_Head head;
    int threshold;
    int count;
};
"""


def includes(major, minor):
    if major == 2 or minor == 6:
        return []
    if minor == 7:
        return ["internal/pystate.h"]
    if minor == 8:
        return ["internal/pycore_pystate.h"]
    if minor in (9, 10):
        return ["internal/pycore_pystate.h", "internal/pycore_interp.h"]
    inc = ["internal/pycore_runtime.h", "internal/pycore_interp.h", "internal/pycore_gc.h"]
    if minor >= 12:
        inc.append("internal/pycore_long.h")
    return inc


def gc_where(major, minor):
    if major == 2 or minor == 6:
        return "PY_GC_STATIC"
    if minor in (7, 8):
        return "PY_GC_RUNTIME"
    return "PY_GC_INTERP"


def field_exprs(major, minor):
    """Ordered (field, C expression or None) pairs, in struct py_gclayout order."""
    py3 = major == 3
    static = major == 2 or minor == 6
    state = {"PY_GC_RUNTIME": "_PyRuntimeState", "PY_GC_INTERP": "PyInterpreterState"}.get(
        gc_where(major, minor))
    new_head = py3 and minor >= 8      # uintptr_t _gc_next, _gc_prev (flags in prev)

    def when(cond, expr):
        return expr if cond else None

    gen = "struct gc_generation"
    return [
        ("gc_state", when(not static, "offsetof(%s, gc)" % state)),
        ("gc_generations", when(not static, "offsetof(struct _gc_runtime_state, generations)")),
        ("gc_permanent",
         when(not static, "offsetof(struct _gc_runtime_state, permanent_generation)")),
        ("gc_collecting", when(not static, "offsetof(struct _gc_runtime_state, collecting)")),
        ("num_generations", "NUM_GENERATIONS" if not static else "3"),
        ("generation_size", "sizeof(%s)" % gen),
        ("generation_head", "offsetof(%s, head)" % gen),
        ("gchead_size", "sizeof(PyGC_Head)"),
        ("gchead_next", "offsetof(PyGC_Head, _gc_next)" if new_head
         else "offsetof(PyGC_Head, gc.gc_next)"),
        ("gchead_prev", "offsetof(PyGC_Head, _gc_prev)" if new_head
         else "offsetof(PyGC_Head, gc.gc_prev)"),
        ("gchead_prev_shift", "_PyGC_PREV_SHIFT" if new_head else "0"),
        ("ob_type", "offsetof(PyObject, ob_type)"),
        ("ob_size", "offsetof(PyVarObject, ob_size)"),
        ("type_name", "offsetof(PyTypeObject, tp_name)"),
        ("type_basicsize", "offsetof(PyTypeObject, tp_basicsize)"),
        ("type_itemsize", "offsetof(PyTypeObject, tp_itemsize)"),
        ("type_flags", "offsetof(PyTypeObject, tp_flags)"),
        ("type_dict", "offsetof(PyTypeObject, tp_dict)"),
        ("heaptype_qualname", when(py3, "offsetof(PyHeapTypeObject, ht_qualname)")),
        ("flag_heaptype", "Py_TPFLAGS_HEAPTYPE"),
        ("flag_type_subclass", "Py_TPFLAGS_TYPE_SUBCLASS"),
        ("flag_long_subclass", when(py3, "Py_TPFLAGS_LONG_SUBCLASS")),
        ("long_tag", when(py3 and minor >= 12, "offsetof(PyLongObject, long_value.lv_tag)")),
        ("long_non_size_bits", when(py3 and minor >= 12, "_PyLong_NON_SIZE_BITS")),
    ]


def probe(cc, pyenv_root, major, minor, workdir):
    version = header_probe.PYENV_VERSIONS[(major, minor)]
    inc = header_probe.header_dir(pyenv_root, major, minor)
    prelude = GCMODULE_GENERATION if gc_where(major, minor) == "PY_GC_STATIC" else ""
    _, values = header_probe.probe("gen_gclayout", cc, inc, major, minor, includes(major, minor),
                                   field_exprs(major, minor), workdir, prelude=prelude,
                                   expect_version=version)
    return inc, version, values


def emit(out, tables):
    w = out.write
    w("/* generated by tools/gen_gclayout.py, do not edit: regenerate with `%s`. */\n"
      % REGEN_COMMAND)
    w("/*\n")
    w(" * gclayout_gen.c — CPython 2.7 and 3.6–3.13 garbage-collector lists and\n")
    w(" * type sizes for x86_64 Linux (the heap census).\n")
    w(" *\n")
    w(" * Owns: one struct py_gclayout per minor version, each value an offsetof(),\n")
    w(" * sizeof() or macro computed against that version's installed headers\n")
    w(" * (2.7 and 3.6: struct gc_generation as Modules/gcmodule.c declares it).\n")
    w(" * PY_OFF_NONE: the version has no such field.  Never reads memory, never\n")
    w(" * prints.\n")
    w(" */\n")
    w('#include "gclayout.h"\n\n#include <stddef.h>\n')
    for (major, minor), (inc, version, values) in tables:
        w("\n/* CPython %s, from headers in %s */\n" % (version, inc))
        w("static const struct py_gclayout gclayout_%d_%d = {\n" % (major, minor))
        w("    .major = %d,\n    .minor = %d,\n" % (major, minor))
        w("    .where = %s,\n" % gc_where(major, minor))
        for name, _ in field_exprs(major, minor):
            v = values[name]
            w("    .%s = %s,\n" % (name, "PY_OFF_NONE" if v is None else str(v)))
        w("};\n")
    w("\nstatic const struct py_gclayout *const gclayouts[] = {\n")
    for (major, minor), _ in tables:
        w("    &gclayout_%d_%d,\n" % (major, minor))
    w("};\n\n")
    w("const struct py_gclayout *py_gclayout_for(int major, int minor)\n{\n")
    w("    for (size_t i = 0; i < sizeof gclayouts / sizeof gclayouts[0]; i++)\n")
    w("        if (gclayouts[i]->major == major && gclayouts[i]->minor == minor)\n")
    w("            return gclayouts[i];\n")
    w("    return NULL;\n}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    header_probe.add_pyenv_root(ap)
    args = ap.parse_args()
    cc = os.environ.get("CC", "gcc")
    tables = []
    with tempfile.TemporaryDirectory(prefix="gen_gclayout.") as workdir:
        for key in VERSIONS:
            tables.append((key, probe(cc, args.pyenv_root, key[0], key[1], workdir)))
    emit(sys.stdout, tables)


if __name__ == "__main__":
    main()
