#!/usr/bin/env python3
"""gen_layouts.py — generate src/python/layouts_gen.c from CPython's own headers.

Owns: the list of which CPython struct member feeds which field of
struct py_layout (src/python/layout.h), per minor version: 2.7 and 3.6–3.12.
Never guesses an offset: for each version it writes a small C program that
includes that version's installed headers (public and internal, with
Py_BUILD_CORE), compiles it with the C compiler ($CC, default gcc), runs it,
and reads back offsetof()/sizeof() values.  A field a version does not have
is PY_OFF_NONE.  If a header set is missing the generator fails, naming it;
the committed output is what the build uses.

Usage (run by hand, from the repository root):
    python3 tools/gen_layouts.py > src/python/layouts_gen.c
    python3 tools/gen_layouts.py -o src/python/layouts_gen.c

It also cross-checks the 3.11 table against Debian's system python3.11
headers (/usr/include/python3.11) when present and reports the result on
stderr (--system-311 DIR to point elsewhere, --no-system-check to skip).
"""

import argparse
import os
import shutil
import sys
import tempfile

import header_probe
from header_probe import PYENV_VERSIONS

REGEN_COMMAND = "python3 tools/gen_layouts.py > src/python/layouts_gen.c"

# The versions this table covers (3.13 on: _Py_DebugOffsets, read at run time).
VERSIONS = header_probe.versions((2, 7), (3, 12))

DEBIAN_311_DIR = "/usr/include/python3.11"

# Internal headers to include, after Python.h, per version.
def internal_includes(major, minor):
    if major == 2 or minor == 6:
        # 2.7 and 3.6 keep PyInterpreterState and PyThreadState public; they
        # have no _PyRuntimeState (the interpreter list head is a static).
        return ["frameobject.h"]
    if minor == 7:
        # 3.7 introduced _PyRuntimeState, in internal/pystate.h.
        return ["internal/pystate.h", "frameobject.h"]
    if minor == 8:
        # 3.8 keeps _PyRuntimeState and PyInterpreterState in pycore_pystate.h.
        return ["internal/pycore_pystate.h", "frameobject.h"]
    if minor in (9, 10):
        return ["internal/pycore_pystate.h", "internal/pycore_runtime.h",
                "internal/pycore_interp.h", "frameobject.h"]
    return ["internal/pycore_runtime.h", "internal/pycore_interp.h",
            "internal/pycore_frame.h", "internal/pycore_code.h"]


NONE = None  # this version lacks the field -> PY_OFF_NONE


def field_exprs(major, minor):
    """Ordered (field, C expression or NONE) pairs for one version.

    Order follows struct py_layout.  Expressions are evaluated by the probe
    program as long long.
    """
    py2 = major == 2
    if py2:
        minor = 0              # 2.7 sorts before every 3.x below
    old = minor <= 10          # PyFrameObject chain
    new = minor >= 11          # _PyInterpreterFrame
    has_runtime = not py2 and minor >= 7   # _PyRuntime (3.7+)
    gil_in_runtime = has_runtime and minor <= 11

    def when(cond, expr):
        return expr if cond else NONE

    runtime_finalizing = ("offsetof(_PyRuntimeState, finalizing)" if minor in (7, 8)
                          else "offsetof(_PyRuntimeState, _finalizing)")
    threads_head = ("offsetof(PyInterpreterState, tstate_head)" if minor <= 10
                    else "offsetof(PyInterpreterState, threads.head)")
    interp_modules = ("offsetof(PyInterpreterState, modules)" if minor <= 11
                      else "offsetof(PyInterpreterState, imports.modules)")
    tstate_frame = ("offsetof(PyThreadState, frame)" if old
                    else "offsetof(PyThreadState, cframe)")
    code_size = ("sizeof(PyCodeObject)" if old
                 else "offsetof(PyCodeObject, co_code_adaptive)")
    code_linetable = ("offsetof(PyCodeObject, co_lnotab)" if minor <= 9
                      else "offsetof(PyCodeObject, co_linetable)")
    code_varnames = ("offsetof(PyCodeObject, co_varnames)" if old
                     else "offsetof(PyCodeObject, co_localsplusnames)")
    # 2.7's PyBytesObject is a macro for PyStringObject (bytesobject.h)
    bytes_sval = ("offsetof(PyStringObject, ob_sval)" if py2
                  else "offsetof(PyBytesObject, ob_sval)")
    pep393 = not py2

    return [
        # _PyRuntimeState
        ("runtime_size", when(has_runtime, "sizeof(_PyRuntimeState)")),
        ("runtime_finalizing", when(has_runtime, runtime_finalizing)),
        ("runtime_interpreters_head",
         when(has_runtime, "offsetof(_PyRuntimeState, interpreters.head)")),
        ("runtime_gil_locked",
         when(gil_in_runtime, "offsetof(_PyRuntimeState, ceval.gil.locked)")),
        ("runtime_gil_last_holder",
         when(gil_in_runtime, "offsetof(_PyRuntimeState, ceval.gil.last_holder)")),
        # PyInterpreterState
        ("interp_size", "sizeof(PyInterpreterState)"),
        ("interp_next", "offsetof(PyInterpreterState, next)"),
        ("interp_threads_head", threads_head),
        ("interp_id", when(has_runtime, "offsetof(PyInterpreterState, id)")),
        ("interp_modules", interp_modules),
        ("interp_gil_ptr",
         when(minor >= 12, "offsetof(PyInterpreterState, ceval.gil)")),
        ("gil_locked",
         when(minor >= 12, "offsetof(struct _gil_runtime_state, locked)")),
        ("gil_last_holder",
         when(minor >= 12, "offsetof(struct _gil_runtime_state, last_holder)")),
        # PyThreadState
        ("tstate_size", "sizeof(PyThreadState)"),
        ("tstate_prev", when(not py2, "offsetof(PyThreadState, prev)")),
        ("tstate_next", "offsetof(PyThreadState, next)"),
        ("tstate_interp", "offsetof(PyThreadState, interp)"),
        ("tstate_frame", tstate_frame),
        ("tstate_thread_id", "offsetof(PyThreadState, thread_id)"),
        ("tstate_native_thread_id",
         when(new, "offsetof(PyThreadState, native_thread_id)")),
        ("cframe_current_frame",
         when(minor in (11, 12), "offsetof(_PyCFrame, current_frame)")),
        # PyFrameObject (3.8–3.10)
        ("frame_back", when(old, "offsetof(PyFrameObject, f_back)")),
        ("frame_code", when(old, "offsetof(PyFrameObject, f_code)")),
        ("frame_lasti", when(old, "offsetof(PyFrameObject, f_lasti)")),
        ("frame_lineno", when(old, "offsetof(PyFrameObject, f_lineno)")),
        # 3.6–3.9 f_executing (1 while the frame's eval runs, calls included);
        # 3.10 f_state (FRAME_EXECUTING, 0, then); 2.7 has neither
        ("frame_executing", when(old and not py2, "offsetof(PyFrameObject, f_state)"
                                 if minor == 10 else "offsetof(PyFrameObject, f_executing)")),
        # _PyInterpreterFrame (3.11+)
        ("iframe_size", when(new, "offsetof(_PyInterpreterFrame, localsplus)")),
        ("iframe_previous", when(new, "offsetof(_PyInterpreterFrame, previous)")),
        ("iframe_code", when(new, "offsetof(_PyInterpreterFrame, f_code)")),
        ("iframe_instr", when(new, "offsetof(_PyInterpreterFrame, prev_instr)")),
        ("iframe_owner", when(new, "offsetof(_PyInterpreterFrame, owner)")),
        ("iframe_localsplus", when(new, "offsetof(_PyInterpreterFrame, localsplus)")),
        # PyCodeObject
        ("code_size", code_size),
        ("code_filename", "offsetof(PyCodeObject, co_filename)"),
        ("code_name", "offsetof(PyCodeObject, co_name)"),
        ("code_qualname", when(new, "offsetof(PyCodeObject, co_qualname)")),
        ("code_firstlineno", "offsetof(PyCodeObject, co_firstlineno)"),
        ("code_linetable", code_linetable),
        ("code_code", when(old, "offsetof(PyCodeObject, co_code)")),
        ("code_adaptive", when(new, "offsetof(PyCodeObject, co_code_adaptive)")),
        ("code_argcount", "offsetof(PyCodeObject, co_argcount)"),
        ("code_varnames", code_varnames),
        # PyObject / PyVarObject / PyTypeObject
        ("ob_type", "offsetof(PyObject, ob_type)"),
        ("ob_size", "offsetof(PyVarObject, ob_size)"),
        ("type_name", "offsetof(PyTypeObject, tp_name)"),
        ("type_flags", "offsetof(PyTypeObject, tp_flags)"),
        # PyBytesObject
        ("bytes_sval", bytes_sval),
        # PyUnicodeObject (PEP 393, 3.3+; 2.7's unicode is another struct)
        ("unicode_length", when(pep393, "offsetof(PyASCIIObject, length)")),
        # `state` is a struct of bit-fields; its byte offset is what we need.
        ("unicode_state", when(pep393, "offsetof(PyASCIIObject, state)")),
        ("unicode_ascii_size", when(pep393, "sizeof(PyASCIIObject)")),
        ("unicode_compact_size", when(pep393, "sizeof(PyCompactUnicodeObject)")),
        ("unicode_legacy_data", when(pep393, "offsetof(PyUnicodeObject, data)")),
        # _PyStackChunk (3.11+): where a thread's _PyInterpreterFrames live
        ("tstate_datastack_chunk", when(new, "offsetof(PyThreadState, datastack_chunk)")),
        ("tstate_datastack_top", when(new, "offsetof(PyThreadState, datastack_top)")),
        ("chunk_previous", when(new, "offsetof(_PyStackChunk, previous)")),
        ("chunk_size", when(new, "offsetof(_PyStackChunk, size)")),
        ("chunk_top", when(new, "offsetof(_PyStackChunk, top)")),
        ("chunk_data", when(new, "offsetof(_PyStackChunk, data)")),
        # 3.11 marks the first Python frame run by a C-level eval call
        ("iframe_is_entry", when(minor == 11, "offsetof(_PyInterpreterFrame, is_entry)")),
        # 2.7: code names and file names are PyStringObject (bytes-like)
        ("string_sval", when(py2, "offsetof(PyStringObject, ob_sval)")),
        # 2.7–3.10: Python frames being evaluated (each eval of a frame adds
        # one); bounds the length of a frame chain copied while it changed
        ("tstate_recursion_depth", when(old, "offsetof(PyThreadState, recursion_depth)")),
    ]


def lines_kind(major, minor):
    if major == 2:
        return "PY_LINES_LNOTAB27"
    if minor <= 9:
        return "PY_LINES_LNOTAB"
    if minor == 10:
        return "PY_LINES_LINETABLE310"
    return "PY_LINES_LOCATIONS"


def frames_kind(major, minor):
    return "PY_FRAMES_OBJECT" if major == 2 or minor <= 10 else "PY_FRAMES_CFRAME"


def fail(msg):
    header_probe.fail("gen_layouts", msg)


def check_header_dir(inc, major, minor, label):
    """Fail, naming the directory, unless inc holds a usable header set."""
    needed = ["Python.h", "patchlevel.h"] + internal_includes(major, minor)
    for rel in needed:
        if not os.path.isfile(os.path.join(inc, rel)):
            fail("%s: header set for CPython %d.%d is missing or incomplete: "
                 "%s not found" % (label, major, minor, os.path.join(inc, rel)))


def run_probe(cc, inc, major, minor, workdir, label):
    """The probe against header dir inc: (PY_VERSION string, {field: value or None})."""
    return header_probe.probe("gen_layouts", cc, inc, major, minor,
                              internal_includes(major, minor), field_exprs(major, minor),
                              workdir, tag=label)


def emit(out, tables, system_note):
    w = out.write
    w("/* GENERATED FILE, do not edit: regenerate with `%s` (or -o FILE). */\n" % REGEN_COMMAND)
    w("/*\n")
    w(" * layouts_gen.c — CPython 2.7 and 3.6–3.12 struct offsets for x86_64 Linux.\n")
    w(" *\n")
    w(" * Owns: one struct py_layout per minor version, each value an offsetof() or\n")
    w(" * sizeof() computed by compiling against that version's own headers\n")
    w(" * (public and internal, Py_BUILD_CORE).  PY_OFF_NONE: the version has no\n")
    w(" * such field.  Never reads memory, never prints.\n")
    if system_note:
        w(" *\n")
        for line in system_note:
            w(" * %s\n" % line)
    w(" */\n")
    w('#include "layout.h"\n\n')
    w("#include <stddef.h>\n")
    for (major, minor), (inc, version, values) in tables:
        w("\n/* CPython %s, from headers in %s */\n" % (version, inc))
        w("static const struct py_layout layout_%d_%d = {\n" % (major, minor))
        w("    .major = %d,\n" % major)
        w("    .minor = %d,\n" % minor)
        w("    .lines = %s,\n" % lines_kind(major, minor))
        w("    .frames = %s,\n" % frames_kind(major, minor))
        for name, _ in field_exprs(major, minor):
            v = values[name]
            w("    .%s = %s,\n" % (name, "PY_OFF_NONE" if v is None else str(v)))
        w("};\n")
    w("\nconst struct py_layout *const py_generated_layouts[] = {\n")
    for (major, minor), _ in tables:
        w("    &layout_%d_%d,\n" % (major, minor))
    w("    NULL,\n")
    w("};\n")
    w("\n/* The generated table for major.minor, or NULL if none was generated. */\n")
    w("const struct py_layout *py_layout_for(int major, int minor)\n")
    w("{\n")
    w("    for (size_t i = 0; py_generated_layouts[i] != NULL; i++) {\n")
    w("        const struct py_layout *layout = py_generated_layouts[i];\n")
    w("        if (layout->major == major && layout->minor == minor)\n")
    w("            return layout;\n")
    w("    }\n")
    w("    return NULL;\n")
    w("}\n")


def system_check(cc, sysdir, reference, workdir):
    """Compare a system 3.11 header set's offsets with the pyenv 3.11 ones.

    Returns lines describing the result (also written to stderr).
    """
    check_header_dir(sysdir, 3, 11, "system python3.11 (--system-311)")
    version, values = run_probe(cc, sysdir, 3, 11, workdir, "system")
    ref_inc, ref_version, ref_values = reference
    diffs = [(k, ref_values[k], values[k]) for k, _ in field_exprs(3, 11)
             if ref_values[k] != values[k]]
    if not diffs:
        lines = ["Cross-check: CPython %s headers in %s give the same 3.11 offsets"
                 % (version, sysdir),
                 "(all %d fields) as %s." % (len(values), ref_version)]
    else:
        lines = ["Cross-check: CPython %s headers in %s DIFFER from %s:"
                 % (version, sysdir, ref_version)]
        for k, a, b in diffs:
            lines.append("  %s: %s has %s, %s has %s" % (k, ref_version, a, version, b))
    for line in lines:
        sys.stderr.write("gen_layouts: %s\n" % line)
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", help="write here instead of stdout")
    header_probe.add_pyenv_root(
        ap, help="pyenv root holding versions/3.X.Y (default $PYENV_ROOT or ~/.pyenv)")
    ap.add_argument("--system-311", default=DEBIAN_311_DIR,
                    help="system python3.11 header dir to cross-check (default %s)"
                    % DEBIAN_311_DIR)
    ap.add_argument("--no-system-check", action="store_true",
                    help="skip the system python3.11 cross-check")
    args = ap.parse_args()

    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        fail("C compiler %r not found (set CC)" % cc)

    tables = []
    with tempfile.TemporaryDirectory(prefix="gen_layouts.") as workdir:
        for (major, minor) in VERSIONS:
            inc = header_probe.header_dir(args.pyenv_root, major, minor)
            check_header_dir(inc, major, minor, "pyenv %s" % PYENV_VERSIONS[(major, minor)])
            version, values = run_probe(cc, inc, major, minor, workdir, "pyenv")
            if version != PYENV_VERSIONS[(major, minor)]:
                fail("%s reports PY_VERSION %s, expected %s"
                     % (inc, version, PYENV_VERSIONS[(major, minor)]))
            tables.append(((major, minor), (inc, version, values)))

        system_note = None
        if not args.no_system_check:
            if not os.path.isfile(os.path.join(args.system_311, "Python.h")):
                fail("system python3.11 header set not found in %s "
                     "(install python3.11-dev, point --system-311 at it, "
                     "or pass --no-system-check)" % args.system_311)
            ref = dict(tables)[(3, 11)]
            system_note = system_check(cc, args.system_311, ref, workdir)

    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "w") as f:
            emit(f, tables, system_note)
        os.replace(tmp, args.output)
    else:
        emit(sys.stdout, tables, system_note)


if __name__ == "__main__":
    main()
