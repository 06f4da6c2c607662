"""
test_locals.py — the object model `dump` uses for thread names and locals,
against live targets on every interpreter (3.8+).

tests/targets/locals_target.py parks a thread named "worker-1" in
parked(1, 2, 3, x=4) with locals of every kind pyrometer writes reprs for;
its ready line carries Python's own repr() of each.  tests/e2e/locals_probe.c,
built here against build/libpyrometer.a, attaches and prints every thread's
threading name and the frame's locals with their reprs (py_thread_name,
py_frame_locals, py_repr).  Names, order, argument flags and every repr must
equal Python's exactly.
"""

import json
import os
import subprocess

import pytest

from conftest import REPO

BUILD = os.path.join(REPO, "build")
LIBRARY = os.path.join(BUILD, "libpyrometer.a")
PROBE_SOURCE = os.path.join(REPO, "tests", "e2e", "locals_probe.c")
PROBE_TIMEOUT = 60.0
# bound after Python's repr() snapshot was taken, or unreprable alike
NOT_COMPARED = {"inner", "frame_locals", "expected"}


def _makefile_ldlibs():
    """LDLIBS exactly as the Makefile computes it."""
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval=print-ldlibs: ; @echo $(LDLIBS)",
         "print-ldlibs"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert out.returncode == 0, "cannot ask make for LDLIBS:\n%s" % out.stderr.decode()
    return out.stdout.decode().split()


@pytest.fixture(scope="session")
def locals_probe(tmp_path_factory):
    if not os.path.isfile(LIBRARY):
        pytest.fail("%s does not exist (run `make`)" % LIBRARY)
    binary = str(tmp_path_factory.mktemp("probe") / "locals_probe")
    argv = [os.environ.get("CC", "gcc"), "-std=gnu11", "-Wall", "-Wextra", "-Werror",
            "-D_GNU_SOURCE", "-g", "-I" + os.path.join(REPO, "src"), "-o", binary,
            PROBE_SOURCE, LIBRARY] + _makefile_ldlibs()
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert out.returncode == 0, "building the locals probe failed:\n%s\n%s" % (
        " ".join(argv), out.stdout.decode())
    return binary


def run_probe(probe, pid, function):
    out = subprocess.run([probe, str(pid), function], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT)
    assert out.returncode == 0, "locals_probe failed (%d): %s" % (
        out.returncode, out.stderr.decode("utf-8", "replace"))
    return json.loads(out.stdout.decode("utf-8"))["threads"]


def test_names_and_locals(python, spawn, locals_probe):
    if python.version[:2] < (3, 8):
        pytest.skip("object layouts are generated for CPython 3.8+")
    target = spawn(python, "locals_target.py")
    info = target.info
    threads = run_probe(locals_probe, target.pid, "parked")

    by_id = dict((t["thread_id"], t) for t in threads)
    worker = by_id[info["worker"]["ident"]]
    assert worker["name"] == "worker-1"
    assert by_id[info["main"]["ident"]]["name"] == "MainThread"

    assert len(worker["frames"]) == 1, worker
    got = worker["frames"][0]["locals"]
    names = [l["name"] for l in got]
    compared = [n for n in names if n not in NOT_COMPARED]
    assert compared == info["order"], "names or order differ"
    assert [l["name"] for l in got if l["arg"]] == info["args"]
    reprs = dict((l["name"], l["repr"]) for l in got)
    for name in info["order"]:
        assert reprs[name] == info["expected"][name], "repr of %s" % name
    assert reprs["inner"].startswith("<function object at 0x")
