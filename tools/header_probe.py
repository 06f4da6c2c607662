"""header_probe.py — what the layout generators share: reading offsets from CPython's headers.

Owns: the pyenv CPython versions the committed tables are generated from,
where each one's headers are installed, and the probe itself: a small C
program compiled against one version's headers (public and internal, with
Py_BUILD_CORE) that prints offsetof()/sizeof()/macro values, run, and read
back.  Used by gen_layouts.py (the frame walk), gen_objlayout.py (reprs and
locals) and gen_gclayout.py (the heap census); each of them owns its own
list of fields and its own output.
"""

import os
import subprocess
import sys

# The pyenv version directory of each minor version the tables come from.
PYENV_VERSIONS = {
    (2, 7): "2.7.18",
    (3, 6): "3.6.15",
    (3, 7): "3.7.16",
    (3, 8): "3.8.18",
    (3, 9): "3.9.18",
    (3, 10): "3.10.13",
    (3, 11): "3.11.7",
    (3, 12): "3.12.1",
    (3, 13): "3.13.0",
}


def versions(first, last):
    """The (major, minor) keys from first to last, in order."""
    return [k for k in sorted(PYENV_VERSIONS) if first <= k <= last]


def fail(tool, msg):
    sys.stderr.write("%s: error: %s\n" % (tool, msg))
    sys.exit(1)


def add_pyenv_root(ap, **kwargs):
    ap.add_argument("--pyenv-root",
                    default=os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")),
                    **kwargs)


def header_dir(pyenv_root, major, minor):
    """The version's include dir: python3.X, or python3.Xm for the pymalloc
    ABI tag 3.7 and older carry (3.6.15 installs include/python3.6m)."""
    base = os.path.join(pyenv_root, "versions", PYENV_VERSIONS[(major, minor)], "include")
    plain = os.path.join(base, "python%d.%d" % (major, minor))
    if not os.path.isdir(plain) and os.path.isdir(plain + "m"):
        return plain + "m"
    return plain


def probe(tool, cc, inc, major, minor, includes, exprs, workdir, tag="pyenv", prelude="",
          expect_version=None):
    """Compile and run a probe of exprs ((name, C expression or None), in
    order) against the headers in inc.  Returns (PY_VERSION, {name: int, or
    None where the expression is None}); fails, naming what went wrong,
    when the headers are not major.minor (or not expect_version), do not
    compile, or a value is missing."""
    if not os.path.isfile(os.path.join(inc, "Python.h")):
        fail(tool, "headers of CPython %d.%d not found in %s" % (major, minor, inc))
    lines = ["/* probe for CPython %d.%d, written by tools/%s.py */" % (major, minor, tool),
             "#define Py_BUILD_CORE 1", '#include "Python.h"']
    lines += ['#include "%s"' % h for h in includes]
    lines += ["#include <stddef.h>", "#include <stdio.h>",
              "#if PY_MAJOR_VERSION != %d || PY_MINOR_VERSION != %d" % (major, minor),
              '#error "headers are not CPython %d.%d"' % (major, minor), "#endif"]
    if prelude:
        lines.append(prelude)
    lines += ["int main(void)", "{", '    printf("version %s\\n", PY_VERSION);']
    for name, expr in exprs:
        if expr is not None:
            lines.append('    printf("%s %%lld\\n", (long long)(%s));' % (name, expr))
    lines += ["    return 0;", "}"]
    stem = os.path.join(workdir, "probe_%s_%d_%d" % (tag, major, minor))
    with open(stem + ".c", "w") as f:
        f.write("\n".join(lines) + "\n")
    cmd = [cc, "-std=gnu11", "-w", "-I", inc, "-I", os.path.join(inc, "internal"), stem + ".c",
           "-o", stem]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    if res.returncode != 0:
        fail(tool, "compiling the %d.%d probe against %s failed:\n  %s\n%s"
             % (major, minor, inc, " ".join(cmd), res.stdout))
    res = subprocess.run([stem], stdout=subprocess.PIPE, universal_newlines=True)
    if res.returncode != 0:
        fail(tool, "the %d.%d probe (%s) exited with %d" % (major, minor, stem, res.returncode))
    got = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    version = got.pop("version", None)
    if expect_version is not None and version != expect_version:
        fail(tool, "%s reports PY_VERSION %s, expected %s" % (inc, version, expect_version))
    values = {}
    for name, expr in exprs:
        if expr is None:
            values[name] = None
        elif name not in got:
            fail(tool, "the %d.%d probe printed no value for %s" % (major, minor, name))
        else:
            values[name] = int(got[name])
    return version, values
