"""Generate tests/unit/linetable_cases.h: real line tables and the answers of
the interpreters that wrote them.

Run with any python3:

    python3 tests/unit/gen_linetable_cases.py > tests/unit/linetable_cases.h
    python3 tests/unit/gen_linetable_cases.py --corpus tests/fuzz/corpus/fuzz_linetable

It runs itself with `--dump` under every interpreter in VERSIONS (from
$PYENV_ROOT, default /root/.pyenv), where it compiles SOURCE, and for every
code object dumps co_firstlineno, the raw table (co_lnotab before 3.10,
co_linetable after) and, for every position (byte offset up to 3.10, code unit
from 3.11), the interpreter's own PyCode_Addr2Line answer, called through
ctypes.  Those answers are cross-checked against dis.findlinestarts (<= 3.9)
and co_lines() (3.10+) before they are written.  3.11+ is also run with
-X no_debug_ranges, which writes tables of "no column" entries.

The --dump half must stay valid Python 2.7.
"""
import json
import os
import subprocess
import sys

VERSIONS = ["2.7.18", "3.6.15", "3.7.16", "3.8.18", "3.9.18",
            "3.10.13", "3.11.7", "3.12.1", "3.13.0"]


def build_source():
    """Functions chosen to hit every table feature: multi-line expressions,
    loops and comprehensions (negative line deltas), line jumps over 127 and
    255, a 300-line gap, one line with > 256 bytes of code, long columns,
    exception handling (3.11+ no-location entries)."""
    parts = []
    parts.append("def simple(a, b):\n    c = a + b\n    return c * 2\n")
    parts.append(
        "def multiline(a, b, call):\n"
        "    x = (a +\n"
        "         b +\n"
        "         a * b)\n"
        "    y = call(\n"
        "        a,\n"
        "        b,\n"
        "    )\n"
        "    return x + y\n")
    parts.append(
        "def loops(n):\n"
        "    total = 0\n"
        "    for i in range(n):\n"
        "        if i % 2:\n"
        "            total += i\n"
        "        else:\n"
        "            total -= 1\n"
        "    while total > 10:\n"
        "        total //= 2\n"
        "    return total\n")
    parts.append(
        "def jumps(a):\n"
        "    b = a\n" + "\n" * 130 +
        "    c = b\n" + "\n" * 200 +
        "    d = c\n" + "\n" * 300 +
        "    return d\n")
    parts.append(
        "def gap300(a):\n"
        "    a += 1\n" + "\n" * 300 +
        "    return a\n")
    parts.append(
        "def far_comprehension(xs):\n"
        "    return [x * 2\n" + "\n" * 200 +
        "            for x in xs\n" + "\n" * 140 +
        "            if x]\n")
    parts.append(
        "def far_loop(n):\n"
        "    i = 0\n"
        "    while (i <\n" + "\n" * 150 +
        "           n):\n" + "\n" * 260 +
        "        i += 1\n"
        "    return i\n")
    parts.append(
        "def far_args(f, a):\n"
        "    return f(a,\n" + "\n" * 140 +
        "             a,\n" + "\n" * 270 +
        "             a)\n")
    parts.append(
        "def long_line(a):\n"
        "    b = [" + ", ".join(["a"] * 200) + "]\n"
        "    return " + " + ".join(["a"] * 60) + "\n")
    parts.append(
        "def handlers(a, f):\n"
        "    try:\n"
        "        a = f(a)\n"
        "    except ValueError:\n"
        "        a = 0\n"
        "    finally:\n"
        "        a += 1\n"
        "    with f as g:\n"
        "        a = g\n"
        "    return a\n")
    parts.append(
        "def gen(xs):\n"
        "    for x in xs:\n"
        "        yield x\n"
        "    yield (lambda y:\n"
        "           y + 1)\n")
    parts.append(
        "class Klass(object):\n"
        "    attr = 1\n"
        "    def method(self):\n"
        "        return self.attr\n")
    parts.append("def empty():\n    pass\n")
    body = ""
    for part in parts:
        body += part + "\n\n"
    return body


def code_objects(code):
    yield code
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            for inner in code_objects(const):
                yield inner


def addr2line_function():
    import ctypes
    func = ctypes.pythonapi.PyCode_Addr2Line
    func.argtypes = [ctypes.py_object, ctypes.c_int]
    func.restype = ctypes.c_int
    return func


def check_against_dis(code, answers, unit):
    """Cross-check PyCode_Addr2Line with the interpreter's Python-level view."""
    if hasattr(code, "co_lines"):
        for start, end, line in code.co_lines():
            for offset in range(start, end, 2):
                want = -1 if line is None else line
                got = answers[offset // unit]
                if got != want:
                    raise SystemExit("%s: co_lines %d says %d, Addr2Line %d"
                                     % (code.co_name, offset, want, got))
    else:
        import dis
        for offset, line in dis.findlinestarts(code):
            if answers[offset] != line:
                raise SystemExit("%s: findlinestarts %d says %d, Addr2Line %d"
                                 % (code.co_name, offset, line, answers[offset]))


def dump():
    addr2line = addr2line_function()
    version = sys.version_info
    if version >= (3, 11):
        kind, unit = "PY_LINES_LOCATIONS", 2
    elif version >= (3, 10):
        kind, unit = "PY_LINES_LINETABLE310", 1
    elif version >= (3, 0):
        kind, unit = "PY_LINES_LNOTAB", 1
    else:
        kind, unit = "PY_LINES_LNOTAB27", 1
    module = compile(build_source(), "<cases>", "exec")
    codes = []
    for code in code_objects(module):
        table = code.co_linetable if version >= (3, 10) else code.co_lnotab
        npos = len(code.co_code) // unit
        answers = [addr2line(code, pos * unit) for pos in range(npos)]
        check_against_dis(code, answers, unit)
        codes.append({"name": code.co_name, "firstlineno": code.co_firstlineno,
                      "table": list(bytearray(table)), "lines": answers})
    json.dump({"kind": kind, "codes": codes}, sys.stdout)


def run_versions():
    root = os.environ.get("PYENV_ROOT", "/root/.pyenv")
    runs = []
    for version in VERSIONS:
        python = os.path.join(root, "versions", version, "bin", "python")
        flag_sets = [[]]
        if tuple(int(x) for x in version.split(".")[:2]) >= (3, 11):
            flag_sets.append(["-X", "no_debug_ranges"])
        for flags in flag_sets:
            out = subprocess.check_output([python] + flags + [__file__, "--dump"])
            label = version + (" " + " ".join(flags) if flags else "")
            runs.append((label, json.loads(out.decode("ascii"))))
    return runs


def c_array(ctype, name, values):
    """A C array; one dummy element when empty (C has no empty arrays)."""
    items = [str(v) for v in values] or ["0"]
    lines = []
    for start in range(0, len(items), 16):
        lines.append("    " + ", ".join(items[start:start + 16]) + ",")
    return "static const %s %s[] = {\n%s\n};\n" % (ctype, name, "\n".join(lines))


def write_header(runs):
    out = sys.stdout
    out.write("/* generated by tests/unit/gen_linetable_cases.py; regenerate with: "
              "python3 tests/unit/gen_linetable_cases.py > tests/unit/linetable_cases.h */\n")
    out.write("#ifndef PYROMETER_LINETABLE_CASES_H\n#define PYROMETER_LINETABLE_CASES_H\n\n")
    out.write("#include <stddef.h>\n#include <stdint.h>\n\n#include \"python/layout.h\"\n\n")
    out.write("struct linetable_case {\n"
              "    const char *version;\n    const char *name;\n"
              "    enum py_linetable_kind kind;\n    int firstlineno;\n"
              "    const uint8_t *table;\n    size_t len;\n"
              "    const int *lines;    /* interpreter's answer per position */\n"
              "    size_t npos;\n};\n\n")
    entries = []
    index = 0
    for label, run in runs:
        for code in run["codes"]:
            out.write(c_array("uint8_t", "case_table_%d" % index, code["table"]))
            out.write(c_array("int", "case_lines_%d" % index, code["lines"]))
            entries.append('    { "%s", "%s", %s, %d, case_table_%d, %d, case_lines_%d, %d },\n'
                           % (label, code["name"], run["kind"], code["firstlineno"],
                              index, len(code["table"]), index, len(code["lines"])))
            index += 1
    out.write("\nstatic const struct linetable_case linetable_cases[] = {\n")
    out.write("".join(entries))
    out.write("};\n\n#endif\n")


# (run label, code name) of the tables written as fuzzer seeds.
CORPUS_SEEDS = [("2.7.18", "jumps"), ("3.8.18", "far_comprehension"), ("3.9.18", "loops"),
                ("3.10.13", "handlers"), ("3.10.13", "far_loop"), ("3.11.7", "multiline"),
                ("3.12.1", "long_line"), ("3.13.0", "handlers"),
                ("3.13.0 -X no_debug_ranges", "jumps")]

# Kind byte of tests/fuzz/fuzz_linetable.c: enum value - 1.
FUZZ_KIND_BYTE = {"PY_LINES_LNOTAB": 0, "PY_LINES_LINETABLE310": 1,
                  "PY_LINES_LOCATIONS": 2, "PY_LINES_LNOTAB27": 3}


def write_corpus(directory, runs):
    """Seeds for fuzz_linetable: kind byte, firstlineno and a middle
    position (little-endian int32), then the table."""
    import struct
    for label, run in runs:
        for code in run["codes"]:
            if (label, code["name"]) not in CORPUS_SEEDS:
                continue
            seed = struct.pack("<Bii", FUZZ_KIND_BYTE[run["kind"]], code["firstlineno"],
                               len(code["lines"]) // 2) + bytes(bytearray(code["table"]))
            name = "%s_%s" % (label.split()[0] + ("_nocols" if " " in label else ""), code["name"])
            with open(os.path.join(directory, name), "wb") as seed_file:
                seed_file.write(seed)


if __name__ == "__main__":
    if sys.argv[1:] == ["--dump"]:
        dump()
    elif sys.argv[1:2] == ["--corpus"] and len(sys.argv) == 3:
        write_corpus(sys.argv[2], run_versions())
    else:
        write_header(run_versions())
